//! Open-loop rate control.
//!
//! With a target rate, operation `i` of a worker is *intended* to start at
//! `start + i / rate`, whatever happened to the operations before it. The worker sleeps until
//! that instant (or sends at once when it is late) and latency is measured from the intended
//! instant, not from the moment the bytes left: when the server stalls, every operation that
//! should have been sent during the stall is charged the stall. This is the correction for
//! coordinated omission (Gil Tene): a closed-loop tester that measures from the actual send
//! time reports only the one slow request and hides the queue behind it.
//!
//! Without a target rate (as fast as possible) the intended time is the send time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The intended send times of one worker.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between operations; `None` = as fast as possible.
    interval_ns: Option<f64>,
}

impl Schedule {
    /// `rate` in operations per second; `rate <= 0` means as fast as possible.
    pub fn new(start: Instant, rate: f64) -> Self {
        let interval_ns = (rate > 0.0 && rate.is_finite()).then(|| 1e9 / rate);
        Self { start, interval_ns }
    }

    pub fn is_paced(&self) -> bool {
        self.interval_ns.is_some()
    }

    /// When operation `i` is meant to start (now, when unpaced).
    pub fn intended(&self, i: u64) -> Instant {
        match self.interval_ns {
            Some(ns) => self.start + Duration::from_nanos((ns * i as f64) as u64),
            None => Instant::now(),
        }
    }

    /// How many operations are due by `t` (operations `0..n` have intended times `<= t`).
    pub fn due_by(&self, t: Instant) -> u64 {
        match self.interval_ns {
            Some(ns) => (t.saturating_duration_since(self.start).as_nanos() as f64 / ns) as u64 + 1,
            None => u64::MAX,
        }
    }
}

/// Sleeps until `t`: coarse sleep while far away, then yields, since `thread::sleep` overshoots
/// by tens of microseconds.
pub fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(300) {
            std::thread::sleep(left - Duration::from_micros(200));
        } else {
            std::thread::yield_now();
        }
    }
}

/// A shared budget of operations (`--records` / `--ops`): workers take chunks from it and stop
/// when it is empty.
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
}

impl Budget {
    /// `None` = unlimited.
    pub fn new(total: Option<u64>) -> Self {
        Self {
            left: AtomicU64::new(total.unwrap_or(u64::MAX)),
        }
    }

    /// True once a bounded budget has been taken in full.
    pub fn spent(&self) -> bool {
        self.left.load(Ordering::Relaxed) == 0
    }

    /// Takes up to `n` operations; returns how many were granted (0 = budget spent).
    pub fn take(&self, n: u64) -> u64 {
        let mut cur = self.left.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return 0;
            }
            let grant = n.min(cur);
            let next = if cur == u64::MAX { cur } else { cur - grant };
            match self
                .left
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return grant,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// The phases of a run: warm-up (sent, not measured), then the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub measure_from: Instant,
    /// End of the run by time; `None` = until the budget is spent.
    pub end: Option<Instant>,
}

impl Window {
    pub fn new(warmup: Duration, duration: Option<Duration>) -> Self {
        let start = Instant::now();
        let measure_from = start + warmup;
        Self {
            start,
            measure_from,
            end: duration.map(|d| measure_from + d),
        }
    }

    pub fn measured(&self, intended: Instant) -> bool {
        intended >= self.measure_from
    }

    pub fn over(&self, now: Instant) -> bool {
        self.end.is_some_and(|e| now >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_schedule_spaces_intended_times_by_the_interval() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0);
        assert!(s.is_paced());
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(10) - t0, Duration::from_millis(10));
        assert_eq!(s.due_by(t0 + Duration::from_micros(4500)), 5);
    }

    #[test]
    fn unpaced_schedule_is_always_due() {
        let s = Schedule::new(Instant::now(), 0.0);
        assert!(!s.is_paced());
        assert_eq!(s.due_by(Instant::now()), u64::MAX);
    }

    #[test]
    fn budget_grants_until_spent() {
        let b = Budget::new(Some(25));
        assert_eq!(b.take(10), 10);
        assert_eq!(b.take(10), 10);
        assert_eq!(b.take(10), 5);
        assert_eq!(b.take(10), 0);
        assert!(b.spent());
        let exact = Budget::new(Some(20));
        assert_eq!(exact.take(20), 20);
        assert!(exact.spent());
        let unlimited = Budget::new(None);
        assert!(!unlimited.spent());
        assert_eq!(unlimited.take(7), 7);
        assert_eq!(unlimited.take(7), 7);
    }

    #[test]
    fn wait_until_does_not_return_early() {
        let t = Instant::now() + Duration::from_millis(2);
        wait_until(t);
        assert!(Instant::now() >= t);
    }
}
