//! The async runtime seam: the only module in Kiln that names `compio`.
//!
//! Every other module and crate does its I/O through these re-exports, so the runtime can be
//! replaced in one place. What is here:
//! - networking: [`TcpListener`], [`TcpStream`] (and the rest of [`net`]);
//! - the async I/O traits and buffer types: [`io`] (`AsyncRead`, `AsyncWrite`, `AsyncReadExt`,
//!   `AsyncWriteExt`, `AsyncReadAt`, `AsyncWriteAt`), [`buf`] (`IoBuf`, `IoBufMut`, `BufResult`, ...);
//! - files: [`fs`] (positional `File`, `OpenOptions`);
//! - timers: [`sleep`], [`timeout`], [`interval`], [`Elapsed`];
//! - tasks: [`spawn`] (returns a [`JoinHandle`]; **dropping the handle cancels the task**, call
//!   [`JoinHandle::detach`] to let it run in the background), [`spawn_blocking`];
//! - runtimes: [`Runtime`], [`block_on`] (a fresh runtime on the current thread).
//!
//! compio is completion-based: buffers are passed by value and come back in a [`BufResult`],
//! because the kernel owns them while an operation is in flight.
//!
//! ```
//! use kiln_engine::rt;
//! let n = rt::block_on(async {
//!     let task = rt::spawn(async { 40 + 2 });
//!     task.await.unwrap_or(0)
//! })
//! .unwrap();
//! assert_eq!(n, 42);
//! ```

use std::future::Future;

pub use compio::BufResult;
pub use compio::buf;
pub use compio::fs;
pub use compio::io;
pub use compio::net;
pub use compio::net::{TcpListener, TcpStream};
pub use compio::runtime::{JoinError, JoinHandle, Runtime, RuntimeBuilder, spawn, spawn_blocking};
pub use compio::time::{Elapsed, Interval, interval, sleep, sleep_until, timeout};

/// Builds a runtime on the current thread and runs `future` to completion on it.
///
/// Fails (without panicking) when the runtime cannot be built, most often because io_uring is
/// unavailable; [`crate::uring_check::check`] explains why in a message meant for operators.
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = Runtime::new()?;
    Ok(runtime.block_on(future))
}

/// Builds a runtime for the current thread (one per shard).
pub fn build_runtime() -> std::io::Result<Runtime> {
    Runtime::new()
}
