//! Time for the servers: the one place that reads the clocks or sleeps.
//!
//! `zk/` and `kafka/` call [`wall_ms`], [`now`] and [`sleep`] instead of `SystemTime::now`,
//! `Instant::now` and the runtime's sleep (their `clippy.toml` disallows those), so that a
//! simulator can run them on simulated time. A thread that calls [`install_sim`] gets a
//! [`SimClock`]: every read on that thread returns simulated time and every sleep waits until
//! [`SimClock::advance`] passes its deadline. Without one, the real clocks are used.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

thread_local! {
    static SIM: RefCell<Option<Rc<SimClock>>> = const { RefCell::new(None) };
}

fn sim() -> Option<Rc<SimClock>> {
    SIM.with(|s| s.borrow().clone())
}

/// Milliseconds since the Unix epoch (wall clock: timestamps, ctime/mtime, session ids).
#[must_use]
pub fn wall_ms() -> i64 {
    if let Some(c) = sim() {
        return c.wall_ms.get() + c.elapsed.get().as_millis() as i64;
    }
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The monotonic clock (timeouts, deadlines, latencies).
#[must_use]
pub fn now() -> Instant {
    if let Some(c) = sim() {
        return c.base + c.elapsed.get();
    }
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// Milliseconds of the monotonic clock since `since`.
#[must_use]
pub fn ms_since(since: Instant) -> u64 {
    now().saturating_duration_since(since).as_millis() as u64
}

/// Waits `d` (of simulated time under a [`SimClock`]).
pub async fn sleep(d: Duration) {
    match sim() {
        Some(c) => {
            SimSleep {
                clock: c.clone(),
                deadline: c.elapsed.get() + d,
            }
            .await
        }
        #[allow(clippy::disallowed_methods)]
        None => crate::rt::sleep(d).await,
    }
}

/// The deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Runs `fut` for at most `d` (of simulated time under a [`SimClock`]).
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, TimedOut> {
    use futures_util::future::{Either, select};
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(sleep(d));
    match select(fut, timer).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right(((), _)) => Err(TimedOut),
    }
}

/// Simulated time for one thread.
#[derive(Debug)]
pub struct SimClock {
    base: Instant,
    wall_ms: Cell<i64>,
    elapsed: Cell<Duration>,
    sleepers: RefCell<Vec<(Duration, Waker)>>,
}

impl SimClock {
    /// Advances simulated time by `d` and wakes every sleep whose deadline passed.
    pub fn advance(&self, d: Duration) {
        self.elapsed.set(self.elapsed.get() + d);
        let now = self.elapsed.get();
        let due: Vec<Waker> = {
            let mut s = self.sleepers.borrow_mut();
            let (due, rest): (Vec<_>, Vec<_>) = s.drain(..).partition(|(at, _)| *at <= now);
            *s = rest;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
    }

    /// Simulated time since [`install_sim`].
    pub fn elapsed(&self) -> Duration {
        self.elapsed.get()
    }

    /// Sleeps not yet due.
    pub fn sleepers(&self) -> usize {
        self.sleepers.borrow().len()
    }
}

/// Makes this thread's clock simulated, starting at `wall_ms` on the wall clock. Returns the
/// handle that advances it.
pub fn install_sim(wall_ms: i64) -> Rc<SimClock> {
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let c = Rc::new(SimClock {
        base,
        wall_ms: Cell::new(wall_ms),
        elapsed: Cell::new(Duration::ZERO),
        sleepers: RefCell::new(Vec::new()),
    });
    SIM.with(|s| *s.borrow_mut() = Some(c.clone()));
    c
}

/// Returns this thread to the real clocks.
pub fn uninstall_sim() {
    SIM.with(|s| *s.borrow_mut() = None);
}

struct SimSleep {
    clock: Rc<SimClock>,
    deadline: Duration,
}

impl Future for SimSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.elapsed.get() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock
            .sleepers
            .borrow_mut()
            .push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_time_moves_only_when_advanced_and_wakes_sleeps() {
        let c = install_sim(1_000_000);
        let t0 = now();
        assert_eq!(wall_ms(), 1_000_000);
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        crate::rt::block_on(async move {
            let sleeper = crate::rt::spawn(async move {
                sleep(Duration::from_millis(500)).await;
                flag.set(true);
            });
            // Let the sleeper register.
            for _ in 0..3 {
                yield_once().await;
            }
            assert!(!done.get());
            c.advance(Duration::from_millis(499));
            yield_once().await;
            assert!(!done.get(), "not due yet");
            c.advance(Duration::from_millis(1));
            sleeper.await.unwrap_or(());
            assert!(done.get());
            assert_eq!(ms_since(t0), 500);
            assert_eq!(wall_ms(), 1_000_500);
        })
        .unwrap();
        uninstall_sim();
        assert!(wall_ms() > 1_700_000_000_000, "real wall clock again");
    }

    #[test]
    fn a_timeout_fires_on_simulated_time_only() {
        let c = install_sim(0);
        crate::rt::block_on(async move {
            let never = std::future::pending::<()>();
            let t = crate::rt::spawn(timeout(Duration::from_secs(30), never));
            for _ in 0..3 {
                yield_once().await;
            }
            assert_eq!(c.sleepers(), 1);
            c.advance(Duration::from_secs(30));
            assert_eq!(t.await.unwrap_or(Ok(())), Err(TimedOut));
            assert_eq!(timeout(Duration::from_secs(1), async { 7 }).await, Ok(7));
        })
        .unwrap();
        uninstall_sim();
    }

    async fn yield_once() {
        let mut y = false;
        std::future::poll_fn(|cx| {
            if y {
                Poll::Ready(())
            } else {
                y = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }
}
