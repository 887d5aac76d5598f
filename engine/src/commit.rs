//! Group commit: per shard, one writer task and one syncer task serve every log of the shard.
//!
//! # Durability contract
//!
//! Each [`crate::log::SegmentedLog`] has a [`Durability`] policy (per topic in Kafka, the
//! transaction log in ZooKeeper). What is true when each write API returns `Ok`:
//!
//! | API | in memory | in the page cache (survives a process crash) | on the media (survives power loss) |
//! |---|---|---|---|
//! | `append_buffered` | yes | not yet | not yet |
//! | `append` with `Durability::Interval` / `wait_written` | yes | yes | only after the next sync |
//! | `append` with `Durability::Durable` / `wait_durable` / `flush` | yes | yes | yes |
//! | `truncate_to`, `delete_records`, retention | yes | yes | yes (files and directory synced) |
//!
//! The path of one append, in order:
//!
//! 1. `append` validates every batch (framing, CRC-32C) once, assigns offsets and copies the bytes
//!    into the log's tail buffer, stamping the base offset in place. Offsets follow call order.
//! 2. The shard's writer task takes the tail buffers of every log with pending bytes and writes
//!    each with one positional write (io_uring), then the new sparse index entries. When a write
//!    completes, the log's *written* watermark advances: readers can see those offsets, and
//!    `Interval` appends complete. Everything appended while a log's write was in flight goes out
//!    next, as back-to-back writes of runs of at most 1 MiB, so pipelined appends become
//!    sequential writes without a round trip each. Under `Interval`,
//!    each 4 MiB written to a segment starts write-back of those bytes (no durability promise;
//!    it keeps the device busy and the dirty page cache small, see `DiskFile::write_back`).
//! 3. The shard's syncer task runs whenever any log has written-but-unsynced bytes that must be
//!    made durable (every `Durable` log; an `Interval` log when `messages` or `ms` is reached or
//!    `flush`/`wait_durable` asked). It captures each such log's written watermark, then issues
//!    **one fdatasync per dirty file, all concurrently, as one pass** over the shard, plus an
//!    fsync of the log directory when a segment was created since the last pass.
//! 4. When every sync of a log's pass succeeded, the log's *durable* watermark advances to the
//!    captured value and `Durable` appends up to it complete. The next pass starts as soon as this
//!    one ends and covers everything written meanwhile: that is the batching.
//! 5. If any write or sync fails, the log is marked failed: every waiting and later write returns
//!    [`crate::log::LogError::Failed`]. A failed fsync is never retried (the kernel may already
//!    have dropped the dirty pages, so a retry could report success for lost data); the process
//!    should stop and recover from disk.
//!
//! # Direct I/O (`LogConfig::direct_io`)
//!
//! With direct I/O, step 2 writes the active segment with `O_DIRECT` instead of through the page
//! cache (`crate::log`'s `write_pending_direct`):
//!
//! 1. pending runs are copied into block-aligned buffers of up to `direct_write_bytes`; each write
//!    starts at the block holding the segment's current end, beginning with that block's bytes
//!    (kept in memory; read back from the file after a reopen or a truncation);
//! 2. up to `direct_write_depth` writes are in flight per log. While more bytes follow, a write
//!    ends at a block boundary and the partial block opens the next write; the last write of a
//!    burst is zero-padded to a whole block, and the next write (which rewrites that block with
//!    the same bytes plus more) is issued only after it completed, so writes never overlap.
//!    While other writes are in flight, the partial block is held back for the next write
//!    instead; a burst shorter than `direct_write_bytes` with nothing behind it, and a held-back
//!    partial block, are written through the page cache (their bytes only, no padding), and the
//!    next write of that block waits for them too. Blocks are allocated ahead of the writes with
//!    `fallocate` mode 0 (the size grows over zeros): ext4 serializes, and completes
//!    synchronously, every direct write that extends the file;
//! 3. a run is released (written watermark, tail cache) in order, once every byte of it is in
//!    the file: what step 2 promises (readable, survives a process crash) is unchanged. Reads of
//!    the file still go through the page cache (Linux keeps it coherent with direct writes);
//! 4. the active segment's file may end with zeros (padding, blocks allocated ahead). They are
//!    cut (and the size synced by the next pass) when the writer moves to the next segment and by
//!    `close`; recovery cuts them like a torn tail, but a tail of zeros at the end of an older
//!    segment (a cut that did not reach the disk) does not make it drop the later segments;
//! 5. durability is still only step 3's fdatasync (the device's cache, the file size).
//!
//! Runs written through the page cache start write-back as in the buffered path. A
//! file system refusing `O_DIRECT` at open (tmpfs answers EINVAL) gets buffered writes for that
//! segment, with a warning; a direct write refused later (EINVAL) is written again through the
//! page cache, and so is everything after it in that log (with a warning). Other write errors
//! fail the log as in step 5.
//!
//! # Lifecycle and shutdown
//!
//! 1. The group of a shard is created on first use ([`CommitGroup::current`]); its two tasks run
//!    on that shard's runtime.
//! 2. Logs register when opened and unregister when their last handle drops.
//! 3. On shutdown, [`CommitGroup::close`] flushes every registered log (waits until each one's
//!    durable watermark reaches its end offset, or it failed), writes and syncs the index entries
//!    not yet on disk (with the active segment's final time index entry, as Kafka does on close)
//!    and then stops the tasks.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::disk::{Disk, UringDisk};
use crate::log::LogShared;
use crate::rt;
use crate::tail_cache::TailCacheBudget;
use crate::watermark::Signal;

/// When an append is acknowledged relative to fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append completes after the fdatasync covering it.
    Durable,
    /// Kafka's `log.flush.interval.messages` / `log.flush.interval.ms`: an append completes when
    /// written to the page cache; a sync runs after `messages` records or `ms` milliseconds.
    /// `u64::MAX` for both (Kafka's default) leaves syncing to the OS, except on `flush`.
    Interval { messages: u64, ms: u64 },
}

impl Durability {
    /// Kafka's defaults: never sync explicitly.
    pub const KAFKA_DEFAULT: Durability = Durability::Interval {
        messages: u64::MAX,
        ms: u64::MAX,
    };
}

pub(crate) struct GroupInner<D: Disk> {
    pub(crate) disk: D,
    logs: RefCell<Vec<Weak<LogShared<D>>>>,
    write_queue: RefCell<Vec<Rc<LogShared<D>>>>,
    write_signal: Signal,
    sync_signal: Signal,
    /// Number of live tasks (writer, syncer): both are spawned together when none runs.
    live_tasks: Cell<u8>,
    stopping: Cell<bool>,
    sync_passes: Cell<u64>,
    /// Shared by the tail caches of this group's logs.
    pub(crate) tail_budget: Rc<TailCacheBudget>,
}

/// A shard's group committer. Cheap to clone (shared handle); not `Send`.
pub struct CommitGroup<D: Disk = UringDisk> {
    pub(crate) inner: Rc<GroupInner<D>>,
}

impl<D: Disk> Clone for CommitGroup<D> {
    fn clone(&self) -> Self {
        CommitGroup {
            inner: self.inner.clone(),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CommitGroup<UringDisk>>> = const { RefCell::new(None) };
}

impl CommitGroup<UringDisk> {
    /// The current shard's group (created on first use). Must be called inside a runtime.
    pub fn current() -> CommitGroup<UringDisk> {
        CURRENT.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| CommitGroup::new(UringDisk))
                .clone()
        })
    }

    /// Flushes and stops the current shard's group, if one was created.
    pub async fn close_current() {
        let group = CURRENT.with(|c| c.borrow_mut().take());
        if let Some(g) = group {
            g.close().await;
        }
    }
}

impl<D: Disk> CommitGroup<D> {
    /// A new group over `disk`. Its tasks start on the current runtime at the first log.
    pub fn new(disk: D) -> Self {
        CommitGroup {
            inner: Rc::new(GroupInner {
                disk,
                logs: RefCell::new(Vec::new()),
                write_queue: RefCell::new(Vec::new()),
                write_signal: Signal::default(),
                sync_signal: Signal::default(),
                live_tasks: Cell::new(0),
                stopping: Cell::new(false),
                sync_passes: Cell::new(0),
                tail_budget: Rc::new(TailCacheBudget::default()),
            }),
        }
    }

    pub fn disk(&self) -> &D {
        &self.inner.disk
    }

    /// The budget shared by the tail caches of this group's logs (one group per shard; see
    /// [`crate::tail_cache`]).
    pub fn tail_cache_budget(&self) -> Rc<TailCacheBudget> {
        self.inner.tail_budget.clone()
    }

    /// Sets the shard's tail cache budget in bytes (default
    /// [`crate::tail_cache::SHARD_TAIL_CACHE_BYTES`]); applies at the next insertion.
    pub fn set_tail_cache_budget(&self, bytes: usize) {
        self.inner.tail_budget.set_limit(bytes);
    }

    /// Number of completed sync passes (each pass = one fdatasync per dirty file).
    pub fn sync_passes(&self) -> u64 {
        self.inner.sync_passes.get()
    }

    /// Logs of this group still alive (a dropped log must not be kept open by the group's
    /// tasks).
    #[cfg(test)]
    pub(crate) fn live_logs(&self) -> usize {
        self.inner
            .logs
            .borrow()
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    pub(crate) fn register(&self, log: &Rc<LogShared<D>>) {
        let mut logs = self.inner.logs.borrow_mut();
        logs.retain(|w| w.strong_count() > 0);
        logs.push(Rc::downgrade(log));
        drop(logs);
        self.ensure_tasks();
    }

    /// Starts the writer and syncer tasks on the current runtime unless they are running. They
    /// stop when their runtime is dropped (a guard counts them out), so a group outliving a
    /// runtime (a test calling `block_on` twice on one thread) restarts them on the next use.
    fn ensure_tasks(&self) {
        if self.inner.live_tasks.get() == 0 {
            self.inner.live_tasks.set(2);
            self.inner.stopping.set(false);
            rt::spawn(writer_loop(self.inner.clone())).detach();
            rt::spawn(syncer_loop(self.inner.clone())).detach();
        }
    }

    /// Queues a log that has pending (unwritten) bytes for the writer task.
    pub(crate) fn queue_write(&self, log: &Rc<LogShared<D>>) {
        self.ensure_tasks();
        if !log.write_queued.replace(true) {
            self.inner.write_queue.borrow_mut().push(log.clone());
            self.inner.write_signal.raise();
        }
    }

    /// Wakes the syncer (after an explicit flush request).
    pub(crate) fn request_sync(&self) {
        self.ensure_tasks();
        self.inner.sync_signal.raise();
    }

    /// Wakes the syncer for another pass without starting tasks (a pass that found a log busy
    /// skipped it; see `ExclusiveGuard`).
    pub(crate) fn wake_syncer(&self) {
        self.inner.sync_signal.raise();
    }

    /// Flushes every registered log, then stops the group's tasks.
    pub async fn close(&self) {
        let logs: Vec<Rc<LogShared<D>>> = self
            .inner
            .logs
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for log in logs {
            // A failed log cannot be flushed; its error was reported to its writers already.
            if LogShared::flush(&log, self).await.is_ok()
                && let Err(e) = LogShared::finish_indexes(&log).await
            {
                // Indexes are hints that recovery rebuilds; the data is already durable.
                tracing::warn!(error = %e, "could not complete a log's indexes on close");
            }
        }
        self.inner.stopping.set(true);
        self.inner.write_signal.raise();
        self.inner.sync_signal.raise();
    }
}

/// Counts a task out when it ends or is dropped with its runtime.
struct TaskGuard<D: Disk>(Rc<GroupInner<D>>);

impl<D: Disk> Drop for TaskGuard<D> {
    fn drop(&mut self) {
        self.0
            .live_tasks
            .set(self.0.live_tasks.get().saturating_sub(1));
    }
}

async fn writer_loop<D: Disk>(g: Rc<GroupInner<D>>) {
    let _guard = TaskGuard(g.clone());
    loop {
        let batch: Vec<Rc<LogShared<D>>> = std::mem::take(&mut *g.write_queue.borrow_mut());
        if batch.is_empty() {
            if g.stopping.get() {
                return;
            }
            g.write_signal.wait().await;
            continue;
        }
        for log in &batch {
            log.write_queued.set(false);
        }
        // Every log's pending bytes are written concurrently (one write per log and segment).
        futures_util::future::join_all(batch.iter().map(|log| LogShared::write_pending(log))).await;
        g.sync_signal.raise();
    }
}

async fn syncer_loop<D: Disk>(g: Rc<GroupInner<D>>) {
    let _guard = TaskGuard(g.clone());
    loop {
        let now = g.disk.now_ms();
        let mut work = Vec::new();
        let mut next_deadline: Option<i64> = None;
        // Only logs with work stay referenced across the waits below: holding every log while
        // idle kept a dropped log (and its open files) alive until the next wake-up, which then
        // paid for closing it (evicting a deleted file's cached pages) inside someone's flush.
        for log in g.logs.borrow().iter().filter_map(Weak::upgrade) {
            match log.sync_work(now) {
                crate::log::SyncDecision::Sync(w) => work.push((log, w)),
                crate::log::SyncDecision::At(t) => {
                    next_deadline = Some(next_deadline.map_or(t, |d| d.min(t)));
                }
                crate::log::SyncDecision::Idle => {}
            }
        }
        if work.is_empty() {
            if g.stopping.get() {
                return;
            }
            match next_deadline {
                Some(t) => {
                    let ms = u64::try_from(t.saturating_sub(now).max(1)).unwrap_or(1);
                    let _ = rt::timeout(Duration::from_millis(ms), g.sync_signal.wait()).await;
                }
                None => g.sync_signal.wait().await,
            }
            continue;
        }
        // One pass: every dirty file of every log, concurrently.
        futures_util::future::join_all(work.into_iter().map(|(log, w)| {
            let disk = g.disk.clone();
            async move { LogShared::run_sync(&log, &disk, w).await }
        }))
        .await;
        g.sync_passes.set(g.sync_passes.get() + 1);
    }
}
