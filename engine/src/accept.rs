//! What an accept loop does when `accept(2)` fails: back off, then try again; say so in the log
//! without flooding it.
//!
//! Out of file descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), the pending
//! connection stays in the listen backlog and accepting again at once fails again: the loop
//! would spin and log thousands of lines a second. Instead the delay doubles from
//! [`BACKOFF_MIN_MS`] to [`BACKOFF_MAX_MS`] while errors repeat and resets on the first success;
//! lines go through a [`LogLimiter`]. Other errors (the peer reset before accept, say) retry at
//! the minimum delay. Pure: the caller passes the time and does the sleeping.

use std::io;
use std::time::Duration;

use crate::ratelog::{Admit, LogLimiter};

pub const BACKOFF_MIN_MS: u64 = 10;
pub const BACKOFF_MAX_MS: u64 = 1_000;

/// One accept loop's error state.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay_ms: u64,
    limiter: LogLimiter,
}

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterError {
    /// Sleep this long before accepting again.
    pub delay: Duration,
    /// Whether to log this error (and how many were not).
    pub log: Admit,
    /// Whether the error is resource exhaustion (file descriptors or memory).
    pub exhausted: bool,
}

/// Whether `e` means the process or the system ran out of descriptors or memory.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl AcceptBackoff {
    /// A connection was accepted: the next error starts from the minimum delay again.
    pub fn on_success(&mut self) {
        self.delay_ms = 0;
    }

    /// An accept failed with `e` at `now_ms` (monotonic).
    pub fn on_error(&mut self, e: &io::Error, now_ms: u64) -> AfterError {
        let exhausted = is_exhaustion(e);
        self.delay_ms = if exhausted {
            (self.delay_ms * 2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS)
        } else {
            BACKOFF_MIN_MS
        };
        let key = if exhausted {
            "accept-exhausted"
        } else {
            "accept-error"
        };
        AfterError {
            delay: Duration::from_millis(self.delay_ms),
            log: self.limiter.admit(key, now_ms),
            exhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn exhaustion_backs_off_to_the_maximum_and_resets_on_success() {
        let mut b = AcceptBackoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|i| b.on_error(&emfile(), i).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.on_success();
        assert_eq!(b.on_error(&emfile(), 20).delay, Duration::from_millis(10));
    }

    #[test]
    fn other_errors_retry_soon() {
        let mut b = AcceptBackoff::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        for i in 0..5 {
            let a = b.on_error(&reset, i);
            assert_eq!(a.delay, Duration::from_millis(BACKOFF_MIN_MS));
            assert!(!a.exhausted);
        }
    }

    #[test]
    fn a_minute_of_exhaustion_logs_a_bounded_number_of_lines() {
        // A loop that retries at the backed-off delay for 60 s of EMFILE.
        let mut b = AcceptBackoff::default();
        let (mut now, mut logged, mut attempts) = (0u64, 0, 0);
        while now < 60_000 {
            let a = b.on_error(&emfile(), now);
            attempts += 1;
            if a.log != Admit::Drop {
                logged += 1;
            }
            now += a.delay.as_millis() as u64;
        }
        assert!(attempts < 80, "{attempts} accept attempts in a minute");
        // Ten lines per ten-second window at most.
        assert!(logged <= 60, "{logged} lines in a minute");
    }
}
