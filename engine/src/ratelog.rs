//! Rate limits for repeated log lines: a flood of bad connections must not become a flood of
//! log lines (the disk fills, the one useful line drowns).
//!
//! Pure: the caller passes the time. Per key, at most [`LogLimiter::burst`] lines per
//! [`LogLimiter::window_ms`]; the first line after a window in which lines were dropped says how
//! many were.

use std::collections::HashMap;

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it.
    Log,
    /// Log it, and say that `suppressed` lines of this key were dropped before it.
    LogAfterSuppressed(u64),
    /// Drop it.
    Drop,
}

impl Admit {
    /// `Some(suppressed)` when the line is to be logged (with how many of its key were dropped
    /// before it, 0 for none); `None` when it is dropped.
    #[must_use]
    pub fn logged(self) -> Option<u64> {
        match self {
            Admit::Log => Some(0),
            Admit::LogAfterSuppressed(n) => Some(n),
            Admit::Drop => None,
        }
    }
}

/// Most keys tracked; a new key beyond this is logged without tracking (keys are static names
/// of call sites, so this bound is never reached in practice).
const KEYS_MAX: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    count: u32,
    suppressed: u64,
}

/// Per-key line budget.
#[derive(Debug)]
pub struct LogLimiter {
    pub window_ms: u64,
    pub burst: u32,
    keys: HashMap<&'static str, Window>,
}

impl Default for LogLimiter {
    /// Ten lines per key per ten seconds.
    fn default() -> Self {
        LogLimiter::new(10_000, 10)
    }
}

impl LogLimiter {
    pub fn new(window_ms: u64, burst: u32) -> Self {
        assert!(window_ms > 0 && burst > 0, "a limiter must admit something");
        LogLimiter {
            window_ms,
            burst,
            keys: HashMap::new(),
        }
    }

    /// Decides for one line of `key` at `now_ms` (a monotonic clock).
    pub fn admit(&mut self, key: &'static str, now_ms: u64) -> Admit {
        if !self.keys.contains_key(key) && self.keys.len() >= KEYS_MAX {
            return Admit::Log;
        }
        let w = self.keys.entry(key).or_insert(Window {
            start_ms: now_ms,
            count: 0,
            suppressed: 0,
        });
        if now_ms.saturating_sub(w.start_ms) >= self.window_ms {
            w.start_ms = now_ms;
            w.count = 0;
        }
        if w.count >= self.burst {
            w.suppressed += 1;
            return Admit::Drop;
        }
        w.count += 1;
        match std::mem::take(&mut w.suppressed) {
            0 => Admit::Log,
            n => Admit::LogAfterSuppressed(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_burst_per_window_and_counts_the_rest() {
        let mut l = LogLimiter::new(1000, 3);
        let got: Vec<Admit> = (0..10).map(|i| l.admit("accept", i)).collect();
        assert_eq!(&got[..3], &[Admit::Log; 3]);
        assert!(got[3..].iter().all(|a| *a == Admit::Drop));
        assert_eq!(l.admit("accept", 1000), Admit::LogAfterSuppressed(7));
        assert_eq!(l.admit("accept", 1001), Admit::Log);
        // Keys are independent.
        assert_eq!(l.admit("other", 5), Admit::Log);
    }

    #[test]
    fn two_thousand_lines_in_a_second_become_at_most_a_burst() {
        let mut l = LogLimiter::default();
        let logged = (0..2000u64)
            .filter(|i| l.admit("flood", i / 2) != Admit::Drop)
            .count();
        assert_eq!(logged, 10);
    }
}
