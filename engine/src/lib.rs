//! kiln-engine: Kiln's thread-per-core storage engine.
//!
//! What it is: shards (one pinned thread and io_uring runtime per core) with bounded mailboxes;
//! segmented logs in Kafka's on-disk layout with group commit; an atomic snapshot store; the
//! RecordBatch v2 format; shutdown on signals; an io_uring availability check.
//! What it is not: it knows nothing of the Kafka or ZooKeeper protocols (above it) and does no
//! networking of its own (it re-exports the runtime's networking in [`rt`]).
//!
//! # Modules
//!
//! | module | what |
//! |---|---|
//! | [`rt`] | the ONLY place naming `compio`: TCP, async I/O traits, buffers, fs, timers, `spawn`, `block_on` |
//! | [`shard`] | `ShardSet::start(&ShardConfig, Shutdown, entry)`, `ShardCtx { id, count, shutdown, mailboxes }`, `placement`, `placement_partition`, `run_on_current_thread` |
//! | [`shutdown`] | `Shutdown` token: `install_signal_handlers`, `request`, `is_requested`, async `wait` |
//! | [`uring_check`] | `check()` -> `Err(UringUnavailable)` whose message says what to change |
//! | [`batch`] | RecordBatch v2: `BatchView` (parse/validate/CRC, header fields), `Batches` iterator, `records()`, `BatchBuilder`, stamping |
//! | [`log`] | `SegmentedLog`: open/recover, append, read, truncate, retention, delete-records, live `set_config`, `offset_for_timestamp` / `max_timestamp` (ListOffsets) |
//! | [`clock`] | wall and monotonic time and sleeps for the servers; a thread can switch to simulated time |
//! | [`prng`] | random bytes for the servers (ids); a thread can make them a seeded sequence |
//! | [`invariant`] | ranges the caller has checked: a panic in tests, a safe default in release |
//! | [`accept`] | `AcceptBackoff`: back-off and rate-limited logging for a failing accept loop (EMFILE) |
//! | [`ratelog`] | `LogLimiter`: a per-key budget for repeated log lines (pure; the caller passes the time) |
//! | [`commit`] | group commit per shard (`CommitGroup`), `Durability`, **the durability contract** |
//! | [`tail_cache`] | a log's recently written batches as shared buffers: tail reads without a system call |
//! | [`snapshot`] | `SnapshotStore`: atomic save, keep newest N, load newest valid |
//! | [`fatal`] | fail-stop: `fatal(reason)` logs and exits; `capture` records instead, for tests |
//! | [`disk`] | the storage seam: `Disk`/`DiskFile` traits, `UringDisk` (real), `SimDisk` (crash simulation) |
//!
//! # Using it from a server
//!
//! ```no_run
//! use kiln_engine::{shard, shutdown::Shutdown, uring_check};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! uring_check::check()?; // clear message when io_uring is blocked
//! let stop = Shutdown::new();
//! stop.install_signal_handlers()?;
//! let cfg = shard::ShardConfig { count: None, ..Default::default() }; // one shard per core
//! let set = shard::ShardSet::start(&cfg, stop, |ctx: shard::ShardCtx<String>| async move {
//!     // accept connections with kiln_engine::rt::TcpListener, own partitions placed here
//!     // (shard::placement_partition(topic, p, ctx.count) == ctx.id), talk via ctx.send/recv.
//!     ctx.shutdown.wait().await;
//! })?;
//! set.join()?; // each shard flushes its logs before exiting
//! # Ok(()) }
//! ```
//!
//! A single-threaded server (the ZooKeeper server) can instead call
//! `shard::run_on_current_thread(|| async { ... })`.
//!
//! # Logs
//!
//! ```no_run
//! use kiln_engine::{batch, commit::Durability, log::{LogConfig, SegmentedLog}};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = LogConfig { durability: Durability::Durable, ..Default::default() };
//! let log = SegmentedLog::open("/data/topic-0", cfg).await?; // recovers the tail
//! let bytes = batch::single_record(Some(b"k"), Some(b"v"), 1_700_000_000_000)?;
//! let info = log.append(&bytes).await?; // Durable: returns after the covering fdatasync
//! let read = log.read(info.base_offset, 1 << 20).await?; // whole batches, zero-copy Bytes
//! # let _ = read; Ok(()) }
//! ```
//!
//! Write APIs and what holds when they return (details in [`commit`]):
//! - `append_buffered(bytes, opts)`: sync, no I/O; offsets assigned, bytes in memory only;
//! - `append(bytes)` / `append_with(bytes, opts)`: per the log's `Durability`: `Interval` -> written
//!   to the page cache; `Durable` -> fdatasync'ed;
//! - `wait_written(offset)`, `wait_durable(offset)`, `flush()`: wait for offsets below `offset`
//!   (everything, for `flush`) to reach the page cache / the media;
//! - `truncate_to`, `delete_records`, `apply_retention`: durable on return.
//!
//! Logs are shard-local (`!Send`); open them on the shard that owns them. Handles are cheap
//! clones. Errors are typed (`LogError`, `BatchError`, `SnapshotError`, `ShardError`) with the
//! operation and path. A failed fsync is fatal: the process logs the path and errno and exits (see [`fatal`]);
//! it is never retried.

pub mod accept;
pub mod batch;
pub mod clock;
pub mod commit;
pub mod disk;
pub mod fatal;
pub mod invariant;
pub mod log;
pub mod prng;
pub mod ratelog;
pub mod rt;
pub mod shard;
pub mod shutdown;
pub mod snapshot;
pub mod tail_cache;
pub mod uring_check;
mod watermark;
