//! Shard-local async notification primitives (no locks: everything runs on one thread).
//!
//! - [`Watermark`]: a monotonically advancing `u64` (e.g. "offsets below this are written") that
//!   tasks wait on; it can be marked failed, which wakes every waiter with an error.
//! - [`Signal`]: a single-consumer wake-up flag for the commit tasks.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Watermark {
    value: Cell<u64>,
    failed: Cell<bool>,
    /// Bumped on every change so `changed()` can tell one wake-up from the next.
    version: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Watermark {
    pub(crate) fn new(value: u64) -> Self {
        Watermark {
            value: Cell::new(value),
            ..Default::default()
        }
    }
    pub(crate) fn get(&self) -> u64 {
        self.value.get()
    }
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.get()
    }
    fn wake(&self) {
        self.version.set(self.version.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
    /// Raises the value (never lowers it) and wakes waiters.
    pub(crate) fn advance(&self, value: u64) {
        if value > self.value.get() {
            self.value.set(value);
            self.wake();
        }
    }
    /// Sets the value, possibly lowering it (truncation), and wakes waiters.
    pub(crate) fn set(&self, value: u64) {
        self.value.set(value);
        self.wake();
    }
    pub(crate) fn fail(&self) {
        self.failed.set(true);
        self.wake();
    }
    /// Wakes waiters without changing the value (they re-check their own conditions).
    pub(crate) fn notify(&self) {
        self.wake();
    }
    /// Resolves with `Ok` once `value >= target`, or `Err` once failed.
    pub(crate) async fn wait_for(&self, target: u64) -> Result<(), ()> {
        poll_fn(|cx| {
            if self.value.get() >= target {
                return Poll::Ready(Ok(()));
            }
            if self.failed.get() {
                return Poll::Ready(Err(()));
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
    /// Resolves at the next change (advance, set, fail or notify).
    pub(crate) async fn changed(&self) {
        let seen = self.version.get();
        poll_fn(|cx| {
            if self.version.get() != seen {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub(crate) fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
    /// Waits until raised, then lowers it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
