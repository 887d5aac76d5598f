//! Process shutdown: SIGINT/SIGTERM turn into a cloneable [`Shutdown`] token.
//!
//! # Lifecycle
//!
//! 1. `main` creates a [`Shutdown`] and calls [`Shutdown::install_signal_handlers`] once. The
//!    handler only writes one byte to a pipe (the only async-signal-safe thing it needs to do);
//!    a small watcher thread reads the pipe and calls [`Shutdown::request`].
//! 2. Shards and accept loops poll [`Shutdown::is_requested`] or await [`Shutdown::wait`] and
//!    stop taking new work.
//! 3. Each shard, after its entry future returns, flushes its commit group (pending appends become
//!    durable; see [`crate::commit::CommitGroup::close`]) before its runtime is dropped.
//! 4. A second signal while shutting down exits at once with status 130: an operator who presses
//!    Ctrl-C twice means it.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};

#[derive(Default)]
struct Inner {
    requested: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

/// A cloneable, thread-safe shutdown flag with async waiting.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish()
    }
}

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static REGISTERED: OnceLock<Mutex<Vec<Shutdown>>> = OnceLock::new();

extern "C" fn on_signal(_sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe {
            libc::write(fd, (&raw const b).cast(), 1);
        }
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything holding this token to stop. Idempotent; callable from any thread.
    pub fn request(&self) {
        if !self.inner.requested.swap(true, Ordering::SeqCst) {
            let wakers = match self.inner.wakers.lock() {
                Ok(mut w) => std::mem::take(&mut *w),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            };
            for w in wakers {
                w.wake();
            }
        }
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested. Works from any shard's runtime.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_requested() {
                return Poll::Ready(());
            }
            match self.inner.wakers.lock() {
                Ok(mut w) => w.push(cx.waker().clone()),
                Err(poisoned) => poisoned.into_inner().push(cx.waker().clone()),
            }
            // Re-check: a request between the first check and the push would be missed.
            if self.is_requested() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Routes SIGINT and SIGTERM to this token (and to every token installed before).
    pub fn install_signal_handlers(&self) -> io::Result<()> {
        let list = REGISTERED.get_or_init(|| Mutex::new(Vec::new()));
        let first = {
            let mut l = match list.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            l.push(self.clone());
            l.len() == 1
        };
        if !first {
            return Ok(());
        }
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        PIPE_WRITE.store(fds[1], Ordering::SeqCst);
        let read_fd = fds[0];
        std::thread::Builder::new()
            .name("kiln-signals".into())
            .spawn(move || {
                let mut seen = 0u32;
                loop {
                    let mut b = 0u8;
                    // SAFETY: reading one byte into a local from our own pipe.
                    let n = unsafe { libc::read(read_fd, (&raw mut b).cast(), 1) };
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if n <= 0 {
                        return;
                    }
                    seen += 1;
                    if seen > 1 {
                        crate::fatal::say(format_args!("kiln: second signal, exiting now"));
                        std::process::exit(130);
                    }
                    tracing::info!("signal received, shutting down (send again to exit at once)");
                    let tokens = match REGISTERED.get().map(|l| l.lock()) {
                        Some(Ok(l)) => l.clone(),
                        Some(Err(p)) => p.into_inner().clone(),
                        None => Vec::new(),
                    };
                    for t in tokens {
                        t.request();
                    }
                }
            })?;
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: installing a handler that only calls write(2).
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            // SAFETY: sa is fully initialised; a null old-action pointer is allowed.
            if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wakes_waiters_on_other_threads() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t =
            std::thread::spawn(move || crate::rt::block_on(async move { s2.wait().await }).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!s.is_requested());
        s.request();
        assert!(t.join().unwrap());
        assert!(s.is_requested());
    }

    #[test]
    fn sigterm_requests_shutdown() {
        let s = Shutdown::new();
        s.install_signal_handlers().unwrap();
        // SAFETY: raising a signal whose handler we just installed.
        unsafe { libc::raise(libc::SIGTERM) };
        for _ in 0..200 {
            if s.is_requested() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("SIGTERM did not request shutdown");
    }
}
