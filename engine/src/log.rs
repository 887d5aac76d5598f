//! Segmented log: the storage of a Kafka partition and of the ZooKeeper transaction log.
//!
//! A log is a directory of segments in Kafka's on-disk layout, so Kafka's own
//! `kafka.tools.DumpLogSegments` reads a Kiln segment. It is shard-local (`!Send`): the shard that
//! opened it owns it; other shards reach it through mailboxes.
//!
//! # Files
//!
//! ```text
//! <dir>/00000000000000000000.log        record batches, verbatim (see crate::batch), back to back
//! <dir>/00000000000000000000.index      sparse offset index
//! <dir>/00000000000000000000.timeindex  sparse time index
//! <dir>/00000000000000001234.log        next segment: name = base offset, 20 digits
//! <dir>/log-start-offset                 checkpoint of the log start offset (delete-records)
//! <dir>/recovery-point                   every offset below it was made durable (see Lifecycle)
//! ```
//!
//! `.index` entry (8 bytes, big-endian), one per `index_interval_bytes` of log (Kafka's rule: an
//! entry is added before a batch once more than `index_interval_bytes` were appended since the
//! last entry); it names the batch's **last** offset and the batch's **start** position:
//!
//! ```text
//! 0      4 relative_offset   (batch last offset - segment base offset), u32
//! 4      4 position          byte position of the batch in the .log file, u32
//! ```
//!
//! `.timeindex` entry (12 bytes, big-endian), added with an index entry when the segment's max
//! timestamp grew, and once more when the segment is rolled:
//!
//! ```text
//! 0      8 timestamp         largest timestamp so far in the segment, i64
//! 8      4 relative_offset   offset of that batch's last record - segment base offset, u32
//! ```
//!
//! Index files are written exactly to their entry count (no preallocated zeros), so Kafka's tools
//! and Kiln read them the same way.
//!
//! # Lifecycle
//!
//! 1. [`SegmentedLog::open`] lists the directory, reads the log start checkpoint, and recovers
//!    every segment in base-offset order: the last segment is scanned batch by batch (framing,
//!    CRC-32C, contiguous offsets) and cut at the first invalid byte; an older segment is checked
//!    from its last index entry to its end (a torn tail can only be at the end of a file), with a
//!    full scan when its index is missing or inconsistent. A cut segment drops every later segment
//!    (they cannot continue a log with a hole). Indexes are rebuilt where needed.
//!    **The recovery point bounds what recovery may cut.** `recovery-point` holds an offset below
//!    which a completed fsync covered every byte: it is written when a clean close made the
//!    whole log durable (so after a clean stop it is the log end: nothing may be cut) and when
//!    a rolled segment became durable (its base offset), and lowered durably before a truncation.
//!    Invalid bytes, a gap or a missing segment below it are damage, not a torn tail: `open` fails
//!    with [`LogError::Corrupt`] naming the file, byte position and offset, and deletes nothing.
//! 2. Appends: see [`crate::commit`] for the write and sync steps and the durability contract.
//! 3. Segments roll when the next batch would exceed `segment_bytes`, when `segment_ms` passed
//!    since the segment's first batch, when the index is full, or when relative offsets would
//!    overflow u32. The writer creates the new files; the syncer fsyncs the directory.
//! 4. Retention and delete-records delete whole segments (never the active one) after
//!    checkpointing the new log start offset.
//! 5. Dropping the last handle closes the files; call `flush` (or close the commit group) first
//!    for pending bytes to be made durable.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{self, BatchError, BatchView, HEADER_LEN, LOG_OVERHEAD};
use crate::commit::{CommitGroup, Durability};
use crate::disk::{AlignedBuf, DIRECT_BLOCK, Disk, DiskFile, UringDisk};
use crate::tail_cache::{TailCache, TailCacheStats};
use crate::watermark::Watermark;

/// Kafka's `log.start.offset` checkpoint file name inside a log directory.
pub const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// The recovery point file name inside a log directory (see the module's Lifecycle).
pub const RECOVERY_POINT: &str = "recovery-point";
/// The files of one segment, by extension.
const SEGMENT_FILES: [&str; 3] = ["log", "index", "timeindex"];
const INDEX_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;
/// Bytes read at a time while scanning a segment during recovery.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Index entries of the active segment are written to its files in groups of this many.
const INDEX_WRITE_ENTRIES: usize = 64;
/// A run of pending bytes is closed at this size and a new one started: the writer then writes
/// the runs back to back, one write each (see [`crate::disk::WRITE_PIECE_BYTES`] for why runs
/// are this large).
const CHUNK_BYTES_MAX: usize = 1 << 20;
/// Most zeros [`LogConfig::zero_fill`] writes before one write (a bounded pause of the writer).
pub const ZERO_FILL_STEP_BYTES: u64 = 1 << 20;
/// Under `Durability::Interval`, write-back of a segment's written bytes is started every this
/// many bytes (see [`crate::disk::DiskFile::write_back`]), so the device works while appends go on
/// and the page cache holds little dirty data when a sync or the kernel's flusher comes.
const WRITE_BEHIND_BYTES: u64 = 4 << 20;
/// Write-back requests of one log that may run at once. Deeper queues (4 x 1 MiB, 8 x 512 KiB)
/// were measured on the benchmark machine: the extra blocking-pool threads slowed the appends
/// more than they shortened the final flush.
const WRITE_BEHIND_DEPTH: u32 = 1;

/// Per-log configuration, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes` (default 1 GiB); at most `i32::MAX` (index positions are 4 bytes).
    pub segment_bytes: u64,
    /// `segment.ms` (default 7 days); `None` disables time-based rolls.
    pub segment_ms: Option<i64>,
    /// `segment.index.bytes` (default 10 MiB): a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes` (default 4096).
    pub index_interval_bytes: u64,
    /// `retention.bytes` (default `None` = unlimited).
    pub retention_bytes: Option<u64>,
    /// `retention.ms` (default 7 days); `None` = unlimited.
    pub retention_ms: Option<i64>,
    /// `preallocate`: reserve `segment_bytes` blocks when creating a segment.
    pub preallocate: bool,
    /// Without `preallocate`, the writer still reserves blocks this far ahead of the write
    /// position (`fallocate` with `KEEP_SIZE`: the file size and contents are unchanged), so the
    /// file system allocates a few large extents instead of one per write-back; 0 disables it.
    /// The reservation never runs further ahead than the segment is already long, so a log that
    /// receives little data reserves little.
    /// Measured on the benchmark machine (ext4 on virtio): buffered 128 KiB writes + fdatasync
    /// to a reserved file ran about twice as fast as to a growing one. Default 16 MiB.
    pub reserve_ahead_bytes: u64,
    /// Instead of reserving blocks, write zeros ahead of the write position (up to
    /// `reserve_ahead_bytes` ahead, [`ZERO_FILL_STEP_BYTES`] per write at most), as ZooKeeper
    /// pads its transaction log. A later fdatasync of data written over synced zeros records no
    /// block allocation, extent conversion or size change: measured on the benchmark machine
    /// (ext4 on virtio), fdatasync of 40 KB writes took p50 ~190 us over zeros against ~330-370
    /// us appending, into a `KEEP_SIZE` reservation or into `fallocate`d blocks. Costs one write
    /// of zeros per byte of log, so it suits small durable writes (a transaction log), not
    /// bulk data. The zero tail is cut when the segment is rolled or the log closed, and
    /// recovery cuts it after a crash. Buffered writes only (direct writes allocate blocks
    /// their own way). Default off.
    pub zero_fill: bool,
    /// When appends are acknowledged (see [`crate::commit`]).
    pub durability: Durability,
    /// Largest accepted batch (`message.max.bytes`, default 1 MiB + overhead).
    pub batch_bytes_max: usize,
    /// Bytes accepted but not yet written before `append` waits (backpressure).
    pub pending_bytes_max: usize,
    /// Memory for recently written batches kept to answer reads at the tail without a file read
    /// (see [`crate::tail_cache`]); 0 disables the cache. Default 4 MiB.
    pub tail_cache_bytes: usize,
    /// Write the active segment with direct I/O (`O_DIRECT`): whole 4 KiB blocks from aligned
    /// buffers, `direct_write_depth` writes of up to `direct_write_bytes` in flight, bypassing
    /// the page cache (see "Direct I/O" in [`crate::commit`]). A file system that refuses direct
    /// I/O gets buffered writes instead (with a warning). Default off: on the benchmark machine
    /// it did not win reliably (`bench/results/2026-11-28-engine-direct.md`).
    pub direct_io: bool,
    /// Largest direct write (rounded to whole blocks). Default 512 KiB.
    pub direct_write_bytes: usize,
    /// Direct writes of one log in flight at once. Default 8.
    pub direct_write_depth: usize,
}

impl LogConfig {
    /// Checks the limits every log needs (used by `open` and `set_config`).
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes < batch::HEADER_LEN as u64 || self.segment_bytes > i32::MAX as u64 {
            return Err(LogError::Config("segment_bytes must be in 61..=2147483647"));
        }
        if self.segment_index_bytes < INDEX_ENTRY as u64 {
            return Err(LogError::Config("segment_index_bytes must be at least 8"));
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            preallocate: false,
            reserve_ahead_bytes: 16 << 20,
            zero_fill: false,
            durability: Durability::KAFKA_DEFAULT,
            batch_bytes_max: 1_048_588,
            pending_bytes_max: 64 << 20,
            tail_cache_bytes: 4 << 20,
            direct_io: false,
            direct_write_bytes: 512 << 10,
            direct_write_depth: 8,
        }
    }
}

/// Where and why a log failed its check below the recovery point (see [`LogError::Corrupt`]).
#[derive(Debug, Error)]
#[error(
    "{path}: damaged at byte {position} (offset {offset}): {reason}; every offset below the \
     recovery point {recovery_point} was made durable, so this is not a torn write and \
     nothing was cut. Inspect it with `kiln inspect log {dir}`; restore the segment from a \
     replica or a backup, or move the log directory away to start it empty"
)]
pub struct Corruption {
    pub path: PathBuf,
    pub dir: String,
    pub position: u64,
    pub offset: u64,
    pub recovery_point: u64,
    pub reason: String,
}

/// Errors of log operations. I/O errors carry the operation and the path.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("empty append")]
    Empty,
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start: u64,
        log_end: u64,
    },
    #[error("batch base offset {got} does not match the log end offset {expected}")]
    NonContiguous { expected: u64, got: i64 },
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The log cannot accept a batch without waiting (a truncation or deletion is running, or the
    /// pending bytes are over `pending_bytes_max`): retriable.
    #[error("log busy: {0}")]
    Busy(&'static str),
    /// An internal invariant does not hold (a bug): the operation is refused, nothing changed.
    #[error("internal error: {0}")]
    Invariant(&'static str),
    #[error("log {dir} failed earlier and accepts no more writes: {reason}")]
    Failed { dir: PathBuf, reason: String },
    #[error("offsets from {offset} were truncated before the append completed")]
    Truncated { offset: u64 },
    /// Damage below the recovery point: bytes a completed fsync covered no longer read back as
    /// valid batches. Nothing was deleted.
    #[error("{0}")]
    Corrupt(Box<Corruption>),
    #[error("{path} is not a valid {what} file ({found:?})")]
    BadCheckpoint {
        path: PathBuf,
        what: &'static str,
        found: String,
    },
}

/// Operations whose failure leaves durability unknown: fatal (see [`crate::fatal`]).
const SYNC_OPS: [&str; 2] = ["fdatasync", "fsync directory"];

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| {
        if SYNC_OPS.contains(&op) {
            crate::fatal::fatal(&format!("{op} {}: {source}", path.display()));
        }
        LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An append accepted by [`SegmentedLog::try_accept`]: offsets assigned, bytes queued.
#[derive(Debug, Clone, Copy)]
#[must_use = "an accepted append is complete only after `complete`"]
pub struct Accepted {
    pub info: AppendInfo,
    truncations: u64,
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset of the first batch.
    pub base_offset: u64,
    /// Last offset of the last batch.
    pub last_offset: u64,
    /// Byte position of the first batch in its segment.
    pub position: u64,
    /// Base offset of the segment holding the first batch.
    pub segment_base: u64,
    pub batches: u32,
    pub bytes: u64,
    /// Largest `max_timestamp` among the batches.
    pub max_timestamp: i64,
}

/// Options of one append.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Stamp this partition leader epoch into every batch.
    pub leader_epoch: Option<i32>,
    /// Keep the batches' base offsets (a follower copying the leader's log); they must continue
    /// the log exactly. When false (the default) the log assigns offsets.
    pub keep_offsets: bool,
}

/// Bytes of whole batches returned by [`SegmentedLog::read`].
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, the one containing the requested offset first. Zero-copy slice of one read.
    pub records: Bytes,
    /// Offset after the last returned batch (= requested offset when nothing was returned).
    pub next_offset: u64,
    pub log_start_offset: u64,
    /// Offsets below this are written (readable).
    pub log_end_offset: u64,
}

/// What retention or delete-records removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: Vec<u64>,
    pub log_start_offset: u64,
}

struct Segment<F> {
    base: u64,
    /// Files; `None` until the writer created them.
    log: Option<F>,
    index_file: Option<F>,
    time_file: Option<F>,
    /// End offset (exclusive) of the batches accepted into this segment.
    end_offset: u64,
    /// Bytes accepted (written + pending).
    size: u64,
    written_len: u64,
    synced_len: u64,
    /// Write-back was started for bytes below this (Interval logs; no durability meaning).
    writeback_len: u64,
    /// Blocks are reserved (or were asked for) below this position.
    reserved_len: u64,
    /// The file may be longer than `written_len` up to here: the zero padding of a direct write's
    /// partial last block, or zeros written ahead ([`LogConfig::zero_fill`]); cut when the
    /// segment is rolled or the log closed.
    padded_len: u64,
    index: Vec<(u32, u32)>,
    index_written: usize,
    time_index: Vec<(i64, u32)>,
    time_written: usize,
    bytes_since_index: u64,
    max_timestamp: i64,
    max_timestamp_offset: u64,
    /// Basis of `segment.ms` rolls (Kafka's rule): the first batch's max timestamp when it has
    /// one; then a batch whose timestamp is `segment.ms` later rolls. Without timestamps, the
    /// segment's creation time (wall clock) is compared with now.
    first_batch_ts: Option<i64>,
    created_ms: i64,
    /// Index files need a sync (set when rolled).
    index_sync_pending: bool,
}

impl<F> Segment<F> {
    fn new(base: u64, created_ms: i64) -> Self {
        Segment {
            base,
            log: None,
            index_file: None,
            time_file: None,
            end_offset: base,
            size: 0,
            written_len: 0,
            synced_len: 0,
            writeback_len: 0,
            reserved_len: 0,
            padded_len: 0,
            index: Vec::new(),
            index_written: 0,
            time_index: Vec::new(),
            time_written: 0,
            bytes_since_index: 0,
            max_timestamp: -1,
            max_timestamp_offset: base,
            first_batch_ts: None,
            created_ms,
            index_sync_pending: false,
        }
    }

    /// Position of the last indexed batch at or before `offset` (0 when none).
    fn index_lookup(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base);
        let i = self.index.partition_point(|&(r, _)| u64::from(r) <= rel);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(&(_, pos)) => u64::from(pos),
            None => 0,
        }
    }

    fn index_bytes(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.index.len().saturating_sub(from) * INDEX_ENTRY);
        for (r, p) in self.index.iter().skip(from) {
            out.extend_from_slice(&r.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    fn time_bytes(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.time_index.len().saturating_sub(from) * TIME_ENTRY);
        for (t, r) in self.time_index.iter().skip(from) {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&r.to_be_bytes());
        }
        out
    }

    /// Adds a final time index entry when the segment's max timestamp is newer than the last one.
    fn seal_time_index(&mut self) {
        let last = self.time_index.last().map_or(-1, |e| e.0);
        if self.max_timestamp > last && self.end_offset > self.base {
            let rel = (self.max_timestamp_offset - self.base) as u32;
            self.time_index.push((self.max_timestamp, rel));
        }
    }
}

/// A run of accepted bytes for one segment, waiting for the writer.
struct Chunk {
    segment: u64,
    pos: u64,
    data: Vec<u8>,
    /// Base offset of the first batch.
    base_offset: u64,
    end_offset: u64,
}

/// Offset index and time index entries loaded from files.
type LoadedIndexes = (Vec<(u32, u32)>, Vec<(i64, u32)>);

pub(crate) enum SyncDecision {
    Sync(SyncWork),
    /// Nothing now; an interval sync is due at this time (ms).
    At(i64),
    Idle,
}

pub(crate) struct SyncWork<F = ()> {
    target: u64,
    files: Vec<(u64, u64, bool)>,
    sync_dir: bool,
    _f: std::marker::PhantomData<F>,
}

struct LogState<D: Disk> {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<u64, Segment<D::File>>,
    log_start: u64,
    /// Next offset to assign (log end offset, including pending bytes).
    next_offset: u64,
    pending: Vec<Chunk>,
    pending_bytes: usize,
    spare: Vec<Vec<u8>>,
    failed: Option<String>,
    /// A segment was created since the last directory sync.
    dir_dirty: bool,
    /// Records written since the last sync and the time of the last sync (interval policy).
    unsynced_messages: u64,
    last_sync_ms: i64,
    /// `flush`/`wait_durable` asked for durability up to here.
    sync_requested: u64,
    /// A truncation or deletion is running: appends wait.
    exclusive: bool,
    /// The recovery point on disk: every offset below it is durable.
    recovery_point: u64,
    /// Recently written batches (reads at the tail).
    cache: TailCache,
    /// Direct writes: the written bytes of the active segment's partial last block.
    direct_tail: Option<DirectTail>,
    /// Aligned buffers of finished direct writes, for reuse.
    direct_spare: Vec<AlignedBuf>,
    /// A direct write was refused (EINVAL) after the file opened with `O_DIRECT`: this log
    /// writes through the page cache from then on.
    direct_refused: bool,
}

/// The bytes `[end - end % DIRECT_BLOCK, end)` of a segment, last written (padded) or about to
/// be: the next direct write starts with them, rewriting that block.
struct DirectTail {
    segment: u64,
    end: u64,
    bytes: Vec<u8>,
}

/// One direct write in flight: `buf` at `pos` of segment `segment`; when it completes, the
/// segment's bytes below `covered` are in the file.
struct DirectWrite {
    segment: u64,
    path: PathBuf,
    covered: u64,
    /// The write ends with a zero-padded partial block (or is buffered): the next write of the
    /// segment waits for it.
    padded: bool,
    /// Written through the page cache: its runs start write-back like buffered writes.
    buffered: bool,
    /// File position of the write.
    at: u64,
}

/// What [`LogShared::start_direct_write`] starts: the write (buffer, position, bookkeeping) if
/// any, the chunks taken, and whether the partial block's bytes are left unwritten.
type DirectStart = (Option<(WriteBuf, u64, DirectWrite)>, Vec<Chunk>, bool);

/// The buffer of a write on the direct path: aligned whole blocks, or (a short burst, a held-back
/// partial block) bytes written through the page cache.
enum WriteBuf {
    Direct(AlignedBuf),
    Buffered(Vec<u8>),
}

/// Index entries to write: (file, bytes, position, path).
type IndexWrites<F> = Vec<(Option<F>, Vec<u8>, u64, PathBuf)>;

/// State shared by a log's handles and the commit group's tasks.
pub(crate) struct LogShared<D: Disk> {
    state: RefCell<LogState<D>>,
    disk: D,
    /// Offsets below are written (page cache) and readable.
    written: Watermark,
    /// Offsets below are on the media.
    durable: Watermark,
    /// Changes when an exclusive operation ends or pending bytes drain.
    progress: Watermark,
    pub(crate) write_queued: Cell<bool>,
    /// Write-back requests of this log running (at most `WRITE_BEHIND_DEPTH`).
    writeback_running: Rc<Cell<u32>>,
    /// Bumped by every truncation: an append waiting across one must not be acknowledged.
    truncations: Cell<u64>,
}

/// A segmented log. Cheap to clone (shared handle); shard-local.
pub struct SegmentedLog<D: Disk = UringDisk> {
    shared: Rc<LogShared<D>>,
    group: CommitGroup<D>,
}

impl<D: Disk> Clone for SegmentedLog<D> {
    fn clone(&self) -> Self {
        SegmentedLog {
            shared: self.shared.clone(),
            group: self.group.clone(),
        }
    }
}

/// The file name of a segment's file: 20-digit zero-padded base offset and `ext` (e.g. `log`).
pub fn segment_file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Parses `00000000000000001234.log` into `(1234, "log")`.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Outcome of scanning a segment's bytes: the valid prefix and what it contains.
#[derive(Debug, Default, Clone)]
pub struct ScanOutcome {
    /// Bytes `..valid_len` are whole, valid, contiguous batches.
    pub valid_len: u64,
    /// End offset (exclusive) of the valid batches; the start offset when none.
    pub end_offset: u64,
    pub batches: u64,
    pub max_timestamp: i64,
    pub max_timestamp_offset: u64,
    pub first_max_timestamp: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub stop_reason: Option<String>,
    index: Vec<(u32, u32)>,
    time_index: Vec<(i64, u32)>,
}

/// Incremental scanner (a pure core over byte chunks) used by recovery and `kiln inspect`.
struct Scanner {
    base: u64,
    interval: u64,
    expected: Option<u64>,
    out: ScanOutcome,
    bytes_since_index: u64,
}

impl Scanner {
    fn new(base: u64, start_pos: u64, expected: Option<u64>, interval: u64) -> Self {
        Scanner {
            base,
            interval,
            expected,
            out: ScanOutcome {
                valid_len: start_pos,
                end_offset: expected.unwrap_or(base),
                max_timestamp: -1,
                max_timestamp_offset: base,
                ..Default::default()
            },
            bytes_since_index: 0,
        }
    }

    /// Consumes whole batches from `buf` (which starts at `valid_len`). Returns bytes consumed;
    /// sets `stop_reason` on an invalid batch. A partial batch at the end returns without a reason.
    fn feed(&mut self, buf: &[u8], at_eof: bool) -> usize {
        let mut i = 0usize;
        loop {
            let rest = buf.get(i..).unwrap_or(&[]);
            if rest.is_empty() {
                return i;
            }
            let pos = self.out.valid_len;
            let view = match BatchView::parse_at(rest, pos as usize) {
                Ok(v) => v,
                Err(BatchError::Truncated { .. }) if !at_eof => return i,
                Err(e) => {
                    self.out.stop_reason = Some(e.to_string());
                    return i;
                }
            };
            let base = view.base_offset() as u64;
            let expected = self.expected.unwrap_or(base);
            if base != expected
                || base < self.base
                || view.last_offset() as u64 - self.base > u64::from(u32::MAX)
            {
                self.out.stop_reason = Some(format!(
                    "batch at byte {pos}: base offset {base}, expected {expected}"
                ));
                return i;
            }
            let last = view.last_offset() as u64;
            if self.bytes_since_index > self.interval {
                let rel = (last - self.base) as u32;
                self.out.index.push((rel, pos as u32));
                if view.max_timestamp() > self.out.time_index.last().map_or(-1, |e| e.0)
                    && self.out.max_timestamp.max(view.max_timestamp()) > -1
                {
                    let ts = self.out.max_timestamp.max(view.max_timestamp());
                    let off = if view.max_timestamp() >= self.out.max_timestamp {
                        last
                    } else {
                        self.out.max_timestamp_offset
                    };
                    self.out.time_index.push((ts, (off - self.base) as u32));
                }
                self.bytes_since_index = 0;
            }
            self.bytes_since_index += view.size() as u64;
            if view.max_timestamp() > self.out.max_timestamp {
                self.out.max_timestamp = view.max_timestamp();
                self.out.max_timestamp_offset = last;
            }
            if self.out.first_max_timestamp.is_none() {
                self.out.first_max_timestamp = Some(view.max_timestamp());
            }
            self.out.batches += 1;
            self.out.valid_len += view.size() as u64;
            self.out.end_offset = last + 1;
            self.expected = Some(last + 1);
            i += view.size();
        }
    }
}

/// Scans a segment file from `start_pos`; `expected` is the base offset the first batch must
/// have (`None` = any). Reads in chunks of `SCAN_CHUNK_BYTES`.
async fn scan_file<F: DiskFile>(
    file: &F,
    base: u64,
    start_pos: u64,
    expected: Option<u64>,
    interval: u64,
    len: u64,
) -> io::Result<ScanOutcome> {
    let mut s = Scanner::new(base, start_pos, expected, interval);
    let mut pos = start_pos;
    let mut carry: Vec<u8> = Vec::new();
    while pos < len && s.out.stop_reason.is_none() {
        let want = SCAN_CHUNK_BYTES.min((len - pos) as usize);
        let chunk = file.read_at(want, pos).await?;
        if chunk.is_empty() {
            break;
        }
        pos += chunk.len() as u64;
        let at_eof = pos >= len;
        carry.extend_from_slice(&chunk);
        let used = s.feed(&carry, at_eof);
        carry.drain(..used);
        if at_eof {
            break;
        }
        // A batch larger than one chunk: keep reading into `carry`.
    }
    if s.out.stop_reason.is_none() && !carry.is_empty() {
        s.out.stop_reason = Some(format!(
            "{} trailing bytes at byte {}: incomplete batch",
            carry.len(),
            s.out.valid_len
        ));
    }
    Ok(s.out)
}

/// Scans a whole segment held in memory (used by `kiln inspect` and tests).
pub fn scan_segment_bytes(base: u64, bytes: &[u8]) -> ScanOutcome {
    let mut s = Scanner::new(base, 0, Some(base), 4096);
    let used = s.feed(bytes, true);
    if s.out.stop_reason.is_none() && used < bytes.len() {
        s.out.stop_reason = Some(format!(
            "{} trailing bytes at byte {used}",
            bytes.len() - used
        ));
    }
    s.out
}

/// `(base_offset, last_offset, size)` from the first 27 bytes of a batch header (no CRC check,
/// no need for the whole batch): used to walk batches in a file.
fn header_fields(h: &[u8]) -> Option<(u64, u64, u64)> {
    let (base, len) = batch::peek_offset_and_length(h)?;
    let delta = i32::from_be_bytes(h.get(23..27)?.try_into().ok()?);
    if base < 0 || delta < 0 || len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some((
        base as u64,
        base as u64 + u64::from(delta.unsigned_abs()),
        LOG_OVERHEAD as u64 + u64::from(len.unsigned_abs()),
    ))
}

/// Header fields of a batch met while walking a segment file.
struct WalkHeader {
    pos: u64,
    last: u64,
    size: u64,
    max_timestamp: i64,
}

/// Walks the batches of a segment file from a position, reading windows of
/// `SCAN_CHUNK_BYTES / 16` and looking at headers only until asked for a whole batch.
struct BatchWalk<'a, F> {
    file: &'a F,
    path: &'a Path,
    pos: u64,
    limit: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

impl<'a, F: DiskFile> BatchWalk<'a, F> {
    const WINDOW: u64 = (SCAN_CHUNK_BYTES / 16) as u64;

    fn new(file: &'a F, path: &'a Path, pos: u64, limit: u64) -> Self {
        BatchWalk {
            file,
            path,
            pos,
            limit,
            buf: Vec::new(),
            buf_at: pos,
        }
    }

    /// The header of the batch at the current position; `None` at the end of the written bytes.
    async fn next_header(&mut self) -> Result<Option<WalkHeader>, LogError> {
        loop {
            if self.pos.saturating_add(HEADER_LEN as u64) > self.limit {
                return Ok(None);
            }
            let rel = (self.pos - self.buf_at) as usize;
            let have = self.buf.get(rel..).unwrap_or(&[]);
            if have.len() < HEADER_LEN {
                let len = (self.limit - self.pos).min(Self::WINDOW) as usize;
                self.buf = self
                    .file
                    .read_at(len, self.pos)
                    .await
                    .map_err(io_err("read", self.path))?;
                self.buf_at = self.pos;
                if self.buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                continue;
            }
            let fields = header_fields(have);
            let max_ts = have
                .get(35..43)
                .and_then(|s| s.try_into().ok())
                .map(i64::from_be_bytes);
            let (Some((_, last, size)), Some(max_timestamp)) = (fields, max_ts) else {
                return Err(LogError::InvalidBatch(BatchError::BadLength {
                    at: self.pos as usize,
                    length: -1,
                }));
            };
            return Ok(Some(WalkHeader {
                pos: self.pos,
                last,
                size,
                max_timestamp,
            }));
        }
    }

    fn skip(&mut self, h: &WalkHeader) {
        self.pos = h.pos + h.size;
    }

    /// The whole batch whose header is `h` (from the window, or one exact read).
    async fn whole_batch(&mut self, h: &WalkHeader) -> Result<Vec<u8>, LogError> {
        let rel = (h.pos - self.buf_at) as usize;
        let end = rel.saturating_add(h.size as usize);
        if let Some(b) = self.buf.get(rel..end) {
            return Ok(b.to_vec());
        }
        self.file
            .read_at(h.size as usize, h.pos)
            .await
            .map_err(io_err("read", self.path))
    }
}

/// The first record of `batch` at or above `log_start` whose timestamp is `>= ts`, as
/// `(offset, timestamp)`. Compressed and `LogAppendTime` batches answer with the batch (see
/// [`SegmentedLog::offset_for_timestamp`]); so does a batch whose records do not decode (its
/// max timestamp, checked by the caller, is `>= ts`).
fn find_record_at_or_after(batch: &[u8], ts: i64, log_start: u64) -> Result<(u64, i64), LogError> {
    let view = BatchView::parse_header(batch)?;
    let first = (view.base_offset() as u64).max(log_start);
    let fallback = (first, view.max_timestamp());
    if view.is_log_append_time() {
        return Ok(fallback);
    }
    let Ok(records) = view.records() else {
        return Ok(fallback);
    };
    for r in records {
        let Ok(r) = r else {
            return Ok(fallback);
        };
        if r.timestamp >= ts && r.offset >= 0 && r.offset as u64 >= log_start {
            return Ok((r.offset as u64, r.timestamp));
        }
    }
    Ok(fallback)
}

fn parse_index(bytes: &[u8]) -> Option<Vec<(u32, u32)>> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / INDEX_ENTRY);
    for e in bytes.chunks_exact(INDEX_ENTRY) {
        let r = u32::from_be_bytes(e.get(..4)?.try_into().ok()?);
        let p = u32::from_be_bytes(e.get(4..)?.try_into().ok()?);
        if let Some(&(pr, pp)) = out.last()
            && (r <= pr || p <= pp)
        {
            return None;
        }
        out.push((r, p));
    }
    Some(out)
}

fn parse_time_index(bytes: &[u8]) -> Option<Vec<(i64, u32)>> {
    if !bytes.len().is_multiple_of(TIME_ENTRY) {
        return None;
    }
    let mut out: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / TIME_ENTRY);
    for e in bytes.chunks_exact(TIME_ENTRY) {
        let t = i64::from_be_bytes(e.get(..8)?.try_into().ok()?);
        let r = u32::from_be_bytes(e.get(8..)?.try_into().ok()?);
        if let Some(&(pt, pr)) = out.last()
            && (t < pt || r < pr)
        {
            return None;
        }
        out.push((t, r));
    }
    Some(out)
}

impl<D: Disk> LogState<D> {
    fn path(&self, base: u64, ext: &str) -> PathBuf {
        self.dir.join(segment_file_name(base, ext))
    }

    fn check_failed(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(reason) => Err(LogError::Failed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn active_mut(&mut self) -> Option<&mut Segment<D::File>> {
        self.segments.values_mut().next_back()
    }

    fn needs_roll(&self, size: u64, last_offset: u64, batch_ts: i64, now_ms: i64) -> bool {
        let Some(seg) = self.segments.values().next_back() else {
            return true;
        };
        if seg.size == 0 {
            return false;
        }
        let cfg = &self.config;
        seg.size + size > cfg.segment_bytes
            || last_offset - seg.base > u64::from(u32::MAX >> 1)
            || (seg.index.len() as u64 + 1) * INDEX_ENTRY as u64 > cfg.segment_index_bytes
            || cfg.segment_ms.is_some_and(|ms| {
                let waited = match seg.first_batch_ts {
                    Some(first) if first >= 0 => batch_ts.saturating_sub(first),
                    _ => now_ms.saturating_sub(seg.created_ms),
                };
                waited > ms
            })
    }

    fn roll(&mut self, base: u64, now_ms: i64) {
        if let Some(old) = self.active_mut() {
            old.seal_time_index();
            old.index_sync_pending = true;
        }
        self.segments.insert(base, Segment::new(base, now_ms));
    }

    /// Step 1 of an append (no I/O): validate, assign offsets, copy into the tail buffer.
    fn append_sync(
        &mut self,
        records: &[u8],
        opts: AppendOptions,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_failed()?;
        if records.is_empty() {
            return Err(LogError::Empty);
        }
        // Validate everything before changing anything: an append is all or nothing.
        let mut count = 0u32;
        let mut expected = self.next_offset;
        for b in batch::Batches::new(records, true) {
            let b = b?;
            if b.size() > self.config.batch_bytes_max {
                return Err(LogError::BatchTooLarge {
                    size: b.size(),
                    max: self.config.batch_bytes_max,
                });
            }
            if opts.keep_offsets {
                if b.base_offset() as u64 != expected {
                    return Err(LogError::NonContiguous {
                        expected,
                        got: b.base_offset(),
                    });
                }
                expected = b.last_offset() as u64 + 1;
            }
            count += 1;
        }
        let mut info = AppendInfo {
            base_offset: self.next_offset,
            last_offset: self.next_offset,
            position: 0,
            segment_base: 0,
            batches: count,
            bytes: records.len() as u64,
            max_timestamp: -1,
        };
        let mut at = 0usize;
        for i in 0..count {
            let Ok(view) = BatchView::parse_header(records.get(at..).unwrap_or(&[])) else {
                return Err(LogError::Empty); // unreachable: validated above
            };
            let size = view.size();
            let base = self.next_offset;
            let last = base + view.offset_count() - 1;
            let max_ts = view.max_timestamp();
            if self.needs_roll(size as u64, last, max_ts, now_ms) {
                self.roll(base, now_ms);
            }
            let interval = self.config.index_interval_bytes;
            let Some(seg) = self.segments.values_mut().next_back() else {
                return Err(LogError::Invariant("log has no segment"));
            };
            let pos = seg.size;
            if i == 0 {
                info.position = pos;
                info.segment_base = seg.base;
                info.base_offset = base;
            }
            if seg.bytes_since_index > interval {
                seg.index.push(((last - seg.base) as u32, pos as u32));
                let ts = seg.max_timestamp.max(max_ts);
                if ts > seg.time_index.last().map_or(-1, |e| e.0) {
                    let off = if max_ts >= seg.max_timestamp {
                        last
                    } else {
                        seg.max_timestamp_offset
                    };
                    seg.time_index.push((ts, (off - seg.base) as u32));
                }
                seg.bytes_since_index = 0;
            }
            seg.bytes_since_index += size as u64;
            if max_ts > seg.max_timestamp {
                seg.max_timestamp = max_ts;
                seg.max_timestamp_offset = last;
            }
            if seg.first_batch_ts.is_none() {
                seg.first_batch_ts = Some(max_ts);
            }
            seg.size += size as u64;
            seg.end_offset = last + 1;
            let seg_base = seg.base;
            // Copy once into the tail buffer; stamp offsets there.
            let src = records.get(at..at + size).unwrap_or(&[]);
            let chunk = match self.pending.last_mut() {
                Some(c) if c.segment == seg_base && c.data.len() < CHUNK_BYTES_MAX => c,
                _ => {
                    let mut data = self.spare.pop().unwrap_or_default();
                    data.clear();
                    self.pending.push(Chunk {
                        segment: seg_base,
                        pos,
                        data,
                        base_offset: base,
                        end_offset: base,
                    });
                    let Some(c) = self.pending.last_mut() else {
                        unreachable!("just pushed")
                    };
                    c
                }
            };
            let start = chunk.data.len();
            chunk.data.extend_from_slice(src);
            if let Some(stamped) = chunk.data.get_mut(start..) {
                batch::stamp_base_offset(stamped, base as i64);
                if let Some(epoch) = opts.leader_epoch {
                    batch::stamp_leader_epoch(stamped, epoch);
                }
            }
            chunk.end_offset = last + 1;
            self.pending_bytes += size;
            self.unsynced_messages += u64::from(view.records_count().unsigned_abs());
            self.next_offset = last + 1;
            info.last_offset = last;
            info.max_timestamp = info.max_timestamp.max(max_ts);
            at += size;
        }
        Ok(info)
    }
}

impl<D: Disk> LogShared<D> {
    fn fail(&self, reason: String) {
        let mut st = self.state.borrow_mut();
        if st.failed.is_none() {
            tracing::error!(dir = %st.dir.display(), %reason, "log failed; it accepts no more writes");
            st.failed = Some(reason);
        }
        drop(st);
        self.written.fail();
        self.durable.fail();
        self.progress.fail();
    }

    /// A failed sync: fatal for the process ([`crate::fatal`]); when a test captures fatal
    /// errors, the log fails as [`Self::fail`] does.
    fn fail_sync(&self, reason: String) {
        crate::fatal::fatal(&reason);
        self.fail(reason);
    }

    fn failed_error(&self) -> LogError {
        let st = self.state.borrow();
        LogError::Failed {
            dir: st.dir.clone(),
            reason: st.failed.clone().unwrap_or_else(|| "unknown".into()),
        }
    }

    /// Step 2 (writer task): writes every pending chunk of this log, in order.
    pub(crate) async fn write_pending(self: &Rc<Self>) {
        if self.state.borrow().config.direct_io {
            self.write_pending_direct().await;
            return;
        }
        self.state.borrow_mut().direct_tail = None;
        loop {
            let (chunk, dir) = {
                let mut st = self.state.borrow_mut();
                if st.failed.is_some() || st.pending.is_empty() {
                    return;
                }
                let c = st.pending.remove(0);
                (c, st.dir.clone())
            };
            if let Err(e) = self.write_chunk(chunk, &dir).await {
                self.fail(e.to_string());
                return;
            }
        }
    }

    /// The segment's `.log` file (created on first write: a roll decided in `append_sync`), or
    /// `None` when the segment was deleted (truncated) while its bytes waited.
    async fn segment_file(
        &self,
        seg_base: u64,
        dir: &Path,
    ) -> Result<Option<(D::File, PathBuf)>, LogError> {
        let needs_files = self
            .state
            .borrow()
            .segments
            .get(&seg_base)
            .is_some_and(|s| s.log.is_none());
        if needs_files {
            // A roll: the segment before may end in zeros written ahead of its writes.
            let prev = self
                .state
                .borrow()
                .segments
                .range(..seg_base)
                .next_back()
                .map(|(b, _)| *b);
            if let Some(old) = prev {
                self.cut_padding(old).await?;
            }
            self.create_segment_files(seg_base, dir).await?;
        }
        let st = self.state.borrow();
        let file = st.segments.get(&seg_base).and_then(|s| s.log.clone());
        Ok(file.map(|f| (f, st.path(seg_base, "log"))))
    }

    /// A buffered write of one chunk.
    async fn write_chunk(&self, mut chunk: Chunk, dir: &Path) -> Result<(), LogError> {
        let seg_base = chunk.segment;
        let Some((file, path)) = self.segment_file(seg_base, dir).await? else {
            // The segment was deleted (truncated) while the chunk waited: nothing to write.
            return Ok(());
        };
        let len = chunk.data.len();
        self.reserve_ahead(seg_base, &file, chunk.pos + len as u64);
        let data = std::mem::take(&mut chunk.data);
        let (res, buf) = file.write_all_at(data, chunk.pos).await;
        res.map_err(io_err("write", &path))?;
        chunk.data = buf;
        let writes = self.finish_chunk(chunk, true);
        self.write_indexes(writes).await
    }

    /// After a chunk's bytes are all in the file: accounting, tail cache, write-back (buffered
    /// writes of `Interval` logs), the written watermark, and the index entries now due.
    fn finish_chunk(&self, chunk: Chunk, write_back: bool) -> IndexWrites<D::File> {
        let seg_base = chunk.segment;
        let len = chunk.data.len();
        let end_pos = chunk.pos + len as u64;
        let end_offset = chunk.end_offset;
        // Index entries are written in groups (they are hints that recovery validates against
        // the log, so losing the newest ones costs only a longer scan): the active segment's once
        // `INDEX_WRITE_ENTRIES` accumulated, a rolled segment's remainder at once.
        let index_writes = {
            let mut st = self.state.borrow_mut();
            st.pending_bytes = st.pending_bytes.saturating_sub(len);
            // The written run becomes the newest cached run (no copy); otherwise its buffer is
            // kept for reuse.
            let limit = st.config.tail_cache_bytes;
            let unused = if st.segments.contains_key(&seg_base) {
                st.cache.insert(
                    seg_base,
                    chunk.pos,
                    chunk.base_offset,
                    chunk.end_offset,
                    chunk.data,
                    limit,
                )
            } else {
                Some(chunk.data)
            };
            if let Some(buf) = unused
                && st.spare.len() < 2
                && buf.capacity() <= 4 << 20
            {
                st.spare.push(buf);
            }
            let interval = matches!(st.config.durability, Durability::Interval { .. });
            if let Some(seg) = st.segments.get_mut(&seg_base) {
                seg.written_len = seg.written_len.max(end_pos);
                if write_back
                    && interval
                    && self.writeback_running.get() < WRITE_BEHIND_DEPTH
                    && seg.written_len.saturating_sub(seg.writeback_len) >= WRITE_BEHIND_BYTES
                    && let Some(f) = seg.log.clone()
                {
                    let (from, n) = (seg.writeback_len, seg.written_len - seg.writeback_len);
                    seg.writeback_len = seg.written_len;
                    self.writeback_running.set(self.writeback_running.get() + 1);
                    let running = self.writeback_running.clone();
                    crate::rt::spawn(async move {
                        // Best effort: a failure here shows up at the next fdatasync.
                        let _ = f.write_back(from, n).await;
                        running.set(running.get().saturating_sub(1));
                    })
                    .detach();
                }
            }
            let last_base = st.segments.keys().next_back().copied();
            let mut writes = Vec::new();
            let dir = st.dir.clone();
            for (base, seg) in st.segments.iter_mut() {
                let active = Some(*base) == last_base;
                if seg.index.len() > seg.index_written
                    && (!active || seg.index.len() - seg.index_written >= INDEX_WRITE_ENTRIES)
                {
                    let b = seg.index_bytes(seg.index_written);
                    let at = seg.index_written as u64 * INDEX_ENTRY as u64;
                    seg.index_written = seg.index.len();
                    let p = dir.join(segment_file_name(*base, "index"));
                    writes.push((seg.index_file.clone(), b, at, p));
                }
                if seg.time_index.len() > seg.time_written
                    && (!active || seg.time_index.len() - seg.time_written >= INDEX_WRITE_ENTRIES)
                {
                    let b = seg.time_bytes(seg.time_written);
                    let at = seg.time_written as u64 * TIME_ENTRY as u64;
                    seg.time_written = seg.time_index.len();
                    let p = dir.join(segment_file_name(*base, "timeindex"));
                    writes.push((seg.time_file.clone(), b, at, p));
                }
            }
            writes
        };
        self.written.advance(end_offset);
        self.progress.notify();
        index_writes
    }

    async fn write_indexes(&self, index_writes: IndexWrites<D::File>) -> Result<(), LogError> {
        if !index_writes.is_empty() {
            let results = futures_util::future::join_all(index_writes.into_iter().map(
                |(f, b, at, p)| async move {
                    match f {
                        Some(f) => f.write_all_at(b, at).await.0.map_err(io_err("write", &p)),
                        None => Ok(()),
                    }
                },
            ))
            .await;
            for r in results {
                r?;
            }
        }
        Ok(())
    }

    /// Step 2 with direct I/O: the pending chunks are copied into aligned buffers of whole
    /// blocks, each starting with the segment's partial last block (kept in memory), and up to
    /// `direct_write_depth` such writes run at once. While more bytes follow, a write stops at a
    /// block boundary and the partial block's bytes open the next write; the last write of a
    /// burst is zero-padded to a whole block, and the next write (which rewrites that block)
    /// waits for it. Chunks are released (written watermark, tail cache) in order, once every
    /// byte of them is in the file. Before the writer moves to a new segment, the previous one's
    /// padding is cut, so a rolled segment ends exactly at its last batch.
    async fn write_pending_direct(self: &Rc<Self>) {
        use futures_util::StreamExt;
        let mut inflight = futures_util::stream::FuturesOrdered::new();
        let mut taken: std::collections::VecDeque<Chunk> = std::collections::VecDeque::new();
        // Segment of the writes in flight; whether the newest ends with a padded block.
        let mut current: Option<u64> = None;
        let mut barrier = false;
        // The partial block's bytes (`direct_tail`) are not in the file yet: they wait to open
        // the next write, or are written padded once nothing else is in flight.
        let mut tail_unwritten = false;
        loop {
            let (next, depth, dir, refused) = {
                let st = self.state.borrow();
                let next = match st.failed {
                    Some(_) => None,
                    None => st.pending.first().map(|c| c.segment),
                };
                let depth = st.config.direct_write_depth.max(1);
                (next, depth, st.dir.clone(), st.direct_refused)
            };
            let must_wait = match next {
                None => true,
                Some(seg) => {
                    barrier
                        || refused
                        || current.is_some_and(|c| c != seg)
                        || inflight.len() >= depth
                }
            };
            // Nothing else in flight and no more bytes for this segment: write the held-back
            // partial block (before moving to the next segment or to buffered writes, too).
            if tail_unwritten && inflight.is_empty() && (next != current || refused) {
                tail_unwritten = false;
                let Some(seg) = current else {
                    return;
                };
                match self.start_tail_write(seg, &dir).await {
                    Ok(Some((file, buf, at, w))) => {
                        barrier = true;
                        inflight.push_back(run_direct_write(file, buf, at, w));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.fail(e.to_string());
                        return;
                    }
                }
                continue;
            }
            if must_wait && !inflight.is_empty() {
                let Some((res, buf, w)) = inflight.next().await else {
                    continue;
                };
                if inflight.is_empty() {
                    barrier = false;
                }
                if let Err(e) = self.direct_done(res, buf, w, &mut taken).await {
                    self.fail(e.to_string());
                    return;
                }
                continue;
            }
            let Some(seg) = next else {
                return;
            };
            if current != Some(seg) {
                // Writes only go to the newest segment: the one before it may still end with
                // padding (its last write was padded before the roll).
                let prev = self
                    .state
                    .borrow()
                    .segments
                    .range(..seg)
                    .next_back()
                    .map(|(b, _)| *b);
                if let Some(old) = prev
                    && let Err(e) = self.cut_padding(old).await
                {
                    self.fail(e.to_string());
                    return;
                }
                current = Some(seg);
                barrier = false;
            }
            let file = match self.segment_file(seg, &dir).await {
                Ok(Some((f, _))) => f,
                Ok(None) => {
                    // Deleted while waiting: nothing to write (as in the buffered path).
                    let mut st = self.state.borrow_mut();
                    if st.pending.first().is_some_and(|c| c.segment == seg) {
                        st.pending.remove(0);
                    }
                    continue;
                }
                Err(e) => {
                    self.fail(e.to_string());
                    return;
                }
            };
            if !file.is_direct() || refused {
                // A segment opened without direct I/O (refused by the file system, or opened
                // before direct I/O was configured), or whose direct writes were refused, is
                // written through the page cache.
                let chunk = {
                    let mut st = self.state.borrow_mut();
                    st.direct_tail = None;
                    st.pending.remove(0)
                };
                if let Err(e) = self.write_chunk(chunk, &dir).await {
                    self.fail(e.to_string());
                    return;
                }
                continue;
            }
            match self
                .start_direct_write(seg, &file, !inflight.is_empty())
                .await
            {
                Ok(Some((write, chunks, unwritten))) => {
                    taken.extend(chunks);
                    tail_unwritten = unwritten;
                    if let Some((buf, at, w)) = write {
                        barrier = w.padded;
                        inflight.push_back(run_direct_write(file.clone(), buf, at, w));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.fail(e.to_string());
                    return;
                }
            }
        }
    }

    /// Builds the next direct write of segment `seg` from the pending chunks: the buffer, its
    /// file position and its bookkeeping (none when every byte taken stays in the partial
    /// block), the chunks it takes (released when written), and whether the partial block's
    /// bytes are left unwritten. With `others` (writes in flight), a write without more bytes
    /// behind it is not padded: it stops at a block boundary and the partial block waits for the
    /// next bytes (or for the writes in flight to end), so writes need not wait for each other.
    async fn start_direct_write(
        &self,
        seg: u64,
        file: &D::File,
        others: bool,
    ) -> Result<Option<DirectStart>, LogError> {
        let block = DIRECT_BLOCK as u64;
        let (first_pos, path, have_tail) = {
            let st = self.state.borrow();
            let Some(first) = st.pending.first() else {
                return Ok(None);
            };
            let have = st
                .direct_tail
                .as_ref()
                .is_some_and(|t| t.segment == seg && t.end == first.pos);
            (first.pos, st.path(seg, "log"), have)
        };
        let start = first_pos - first_pos % block;
        // The written bytes of the partial block this write starts in: kept from the previous
        // write, or read back from the file (after a reopen or a truncation).
        if first_pos > start && !have_tail {
            let bytes = file
                .read_at((first_pos - start) as usize, start)
                .await
                .map_err(io_err("read", &path))?;
            if bytes.len() as u64 != first_pos - start {
                return Err(LogError::Io {
                    op: "read the partial last block of",
                    path,
                    source: io::Error::from(io::ErrorKind::UnexpectedEof),
                });
            }
            self.state.borrow_mut().direct_tail = Some(DirectTail {
                segment: seg,
                end: first_pos,
                bytes,
            });
        }
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let prefix = match st.direct_tail.take() {
            Some(t) if t.segment == seg && t.end == first_pos => t.bytes,
            _ => Vec::new(),
        };
        let target = st.config.direct_write_bytes.max(DIRECT_BLOCK);
        let first_len = st.pending.first().map_or(0, |c| c.data.len());
        let need = target.max(prefix.len() + first_len) + DIRECT_BLOCK;
        let mut buf = match st.direct_spare.pop() {
            Some(b) if b.capacity() >= need => b,
            _ => AlignedBuf::with_capacity(need),
        };
        buf.clear();
        let mut ok = buf.extend_from_slice(&prefix);
        let mut end = first_pos;
        let mut taken = Vec::new();
        while let Some(c) = st.pending.first() {
            let fits = taken.is_empty() || buf.len() + c.data.len() <= target;
            if c.segment != seg || c.pos != end || !fits {
                break;
            }
            ok &= buf.extend_from_slice(&c.data);
            end += c.data.len() as u64;
            taken.push(st.pending.remove(0));
        }
        let more = st
            .pending
            .first()
            .is_some_and(|c| c.segment == seg && c.pos == end);
        let aligned_end = end - end % block;
        let (covered, padded) = if end % block == 0 {
            (end, false)
        } else if (more || others) && aligned_end > start {
            (aligned_end, false)
        } else if others {
            (start, false)
        } else {
            (end, true)
        };
        // A short burst with nothing behind it is written through the page cache (its bytes
        // only, no padding): a direct write would make the appenders wait for the device. The
        // next direct write rewrites the block after this one completed (the kernel writes the
        // cached page back first), so the file stays coherent.
        let buffered = padded && end - first_pos < target as u64;
        let unwritten = end % block != 0 && !padded;
        // The partial block after `covered` (or of `end`, when padded) opens the next write.
        let tail_from = (aligned_end - start) as usize;
        let tail = buf.as_slice().get(tail_from..).unwrap_or(&[]).to_vec();
        st.direct_tail = Some(DirectTail {
            segment: seg,
            end,
            bytes: tail,
        });
        if padded {
            ok &= buf.pad_to_block();
        } else {
            buf.truncate((covered - start) as usize);
        }
        if !ok {
            return Err(LogError::Config("direct write buffer too small"));
        }
        if buf.is_empty() {
            // Everything stays in the partial block for now.
            st.direct_spare.push(buf);
            return Ok(Some((None, taken, unwritten)));
        }
        let w = DirectWrite {
            segment: seg,
            path,
            covered,
            padded,
            buffered,
            at: if buffered { first_pos } else { start },
        };
        if buffered {
            let from = (first_pos - start) as usize;
            let bytes = buf
                .as_slice()
                .get(from..from + (end - first_pos) as usize)
                .unwrap_or(&[])
                .to_vec();
            st.direct_spare.push(buf);
            drop(guard);
            self.reserve(seg, file, end, true);
            return Ok(Some((
                Some((WriteBuf::Buffered(bytes), first_pos, w)),
                taken,
                false,
            )));
        }
        let file_end = start + buf.len() as u64;
        drop(guard);
        // Inside the file's size, the write can run concurrently with the others.
        let file_end = file_end.max(self.reserve(seg, file, file_end, true));
        if let Some(s) = self.state.borrow_mut().segments.get_mut(&seg) {
            s.padded_len = s.padded_len.max(file_end);
        }
        Ok(Some((
            Some((WriteBuf::Direct(buf), start, w)),
            taken,
            unwritten,
        )))
    }

    /// The padded write of the partial block's bytes held back by [`Self::start_direct_write`],
    /// once nothing else is in flight and no more bytes came.
    async fn start_tail_write(
        &self,
        seg: u64,
        dir: &Path,
    ) -> Result<Option<(D::File, WriteBuf, u64, DirectWrite)>, LogError> {
        let Some((file, path)) = self.segment_file(seg, dir).await? else {
            return Ok(None);
        };
        let block = DIRECT_BLOCK as u64;
        let (bytes, start, end) = {
            let st = self.state.borrow();
            let Some(t) = st.direct_tail.as_ref().filter(|t| t.segment == seg) else {
                return Ok(None);
            };
            (t.bytes.clone(), t.end - t.end % block, t.end)
        };
        self.reserve(seg, &file, end, true);
        let w = DirectWrite {
            segment: seg,
            path,
            covered: end,
            padded: true,
            buffered: true,
            at: start,
        };
        Ok(Some((file, WriteBuf::Buffered(bytes), start, w)))
    }

    /// A direct write completed: on success, releases (in order) every taken chunk whose bytes
    /// are now all in the file, and keeps the buffer for reuse.
    async fn direct_done(
        &self,
        res: io::Result<()>,
        buf: Option<AlignedBuf>,
        w: DirectWrite,
        taken: &mut std::collections::VecDeque<Chunk>,
    ) -> Result<(), LogError> {
        let buf = match (res, buf) {
            (Ok(()), buf) => buf,
            // Opened with O_DIRECT but the write refused (a file system that accepts the flag
            // and not the I/O): the same bytes go through the page cache, and so does every
            // later write of this log.
            (Err(e), Some(buf)) if e.raw_os_error() == Some(libc::EINVAL) => {
                let file = {
                    let mut st = self.state.borrow_mut();
                    if !st.direct_refused {
                        tracing::warn!(
                            path = %w.path.display(),
                            error = %e,
                            "direct write refused; this log writes through the page cache"
                        );
                    }
                    st.direct_refused = true;
                    st.segments.get(&w.segment).and_then(|s| s.log.clone())
                };
                if let Some(file) = file {
                    let bytes = buf.as_slice().to_vec();
                    file.write_all_at(bytes, w.at)
                        .await
                        .0
                        .map_err(io_err("write", &w.path))?;
                }
                Some(buf)
            }
            (Err(e), _) => {
                return Err(LogError::Io {
                    op: "write",
                    path: w.path,
                    source: e,
                });
            }
        };
        let mut writes = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let keep = st.config.direct_write_depth.clamp(1, 16);
            if let Some(buf) = buf
                && st.direct_spare.len() < keep
            {
                st.direct_spare.push(buf);
            }
        }
        while let Some(c) = taken.front() {
            if c.segment != w.segment || c.pos + c.data.len() as u64 > w.covered {
                break;
            }
            let Some(c) = taken.pop_front() else {
                break;
            };
            // Runs written (partly) through the page cache start write-back as in the buffered
            // path, so dirty pages do not pile up (and throttle the writer) between syncs.
            writes.extend(self.finish_chunk(c, w.buffered));
        }
        self.write_indexes(writes).await
    }

    /// Cuts the zero padding after a segment's last batch (a direct write's partial block, blocks
    /// allocated ahead of direct writes, or zeros written ahead by [`LogConfig::zero_fill`]), so
    /// the file ends exactly at its last batch; the next sync pass syncs the new size.
    async fn cut_padding(&self, seg_base: u64) -> Result<(), LogError> {
        let (file, len, path) = {
            let st = self.state.borrow();
            let Some(seg) = st.segments.get(&seg_base) else {
                return Ok(());
            };
            if seg.padded_len <= seg.written_len || seg.size != seg.written_len {
                return Ok(());
            }
            (seg.log.clone(), seg.written_len, st.path(seg_base, "log"))
        };
        let Some(file) = file else {
            return Ok(());
        };
        file.set_len(len).await.map_err(io_err("truncate", &path))?;
        let mut st = self.state.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&seg_base) {
            seg.padded_len = len;
            // Makes the next sync pass include this file (the size changed).
            seg.index_sync_pending = true;
        }
        Ok(())
    }

    /// Reserves blocks `reserve_ahead_bytes` beyond `end` when the reservation falls short of it
    /// (see [`LogConfig::reserve_ahead_bytes`]), or writes zeros there with
    /// [`LogConfig::zero_fill`]. Best effort: a file system without `fallocate` is asked once per
    /// step and the write goes on regardless.
    fn reserve_ahead(&self, seg_base: u64, file: &D::File, end: u64) {
        if self.state.borrow().config.zero_fill {
            self.zero_fill_ahead(seg_base, file, end);
        } else {
            self.reserve(seg_base, file, end, false);
        }
    }

    /// [`LogConfig::zero_fill`]: keeps zeros written ahead of `end` (the end of the write about
    /// to be made), at most [`ZERO_FILL_STEP_BYTES`] per call so no single write waits long.
    /// A failure is not fatal (the write goes on, only slower to sync).
    fn zero_fill_ahead(&self, seg_base: u64, file: &D::File, end: u64) {
        let mut st = self.state.borrow_mut();
        let (ahead, seg_bytes) = (st.config.reserve_ahead_bytes, st.config.segment_bytes);
        let Some(seg) = st.segments.get_mut(&seg_base) else {
            return;
        };
        // As far ahead as the segment already is long, at most `ahead`, never past the segment.
        let dist = ahead.min(end);
        let target = end.saturating_add(dist).min(seg_bytes.max(end));
        // Refill once less than half the distance is left.
        if ahead == 0 || seg.reserved_len >= end.saturating_add(dist / 2).min(target) {
            return;
        }
        let from = seg.reserved_len.max(end);
        let to = target.min(from.saturating_add(ZERO_FILL_STEP_BYTES));
        if to <= from {
            return;
        }
        if let Err(e) = file.write_zeros(from, to - from) {
            // Not asked again below `to`: the writes there simply extend the file.
            tracing::debug!(error = %e, "could not write zeros ahead of the writes");
        }
        seg.reserved_len = to;
        // The file may now end at `to`: cut back to the last batch at roll and close.
        seg.padded_len = seg.padded_len.max(to);
    }

    /// [`LogShared::reserve_ahead`]; with `extend` (direct writes) the reservation also extends
    /// the file size (see [`DiskFile::allocate`]), and the segment's zero tail is cut when it is
    /// rolled or closed, like padding. Returns where the file may now end.
    fn reserve(&self, seg_base: u64, file: &D::File, end: u64, extend: bool) -> u64 {
        let mut st = self.state.borrow_mut();
        let (ahead, seg_bytes) = (st.config.reserve_ahead_bytes, st.config.segment_bytes);
        let Some(seg) = st.segments.get_mut(&seg_base) else {
            return end;
        };
        if ahead == 0 || end <= seg.reserved_len {
            return end;
        }
        let from = seg.reserved_len.max(seg.written_len);
        // As far ahead as the segment already is long, at most `ahead`: a log that gets little
        // data reserves little.
        let to = end.saturating_add(ahead.min(end)).min(seg_bytes.max(end));
        seg.reserved_len = to;
        if to > from {
            let r = if extend {
                file.allocate(from, to - from)
            } else {
                file.preallocate(from, to - from)
            };
            match r {
                Ok(()) if extend => {
                    // The file now ends at `to`: cut back to the last batch at roll and close.
                    seg.padded_len = seg.padded_len.max(to);
                    return to;
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "could not reserve blocks ahead of the writes")
                }
            }
        }
        end
    }

    async fn create_segment_files(&self, base: u64, dir: &Path) -> Result<(), LogError> {
        let (lp, ip, tp, prealloc, seg_bytes, direct) = {
            let st = self.state.borrow();
            (
                st.path(base, "log"),
                st.path(base, "index"),
                st.path(base, "timeindex"),
                st.config.preallocate,
                st.config.segment_bytes,
                st.config.direct_io,
            )
        };
        let _ = dir;
        let log = open_log_file(&self.disk, &lp, true, direct).await?;
        let index = self
            .disk
            .open(&ip, true)
            .await
            .map_err(io_err("create", &ip))?;
        let time = self
            .disk
            .open(&tp, true)
            .await
            .map_err(io_err("create", &tp))?;
        if prealloc && let Err(e) = log.preallocate(0, seg_bytes) {
            tracing::debug!(path = %lp.display(), error = %e, "preallocation not supported");
        }
        let mut st = self.state.borrow_mut();
        st.dir_dirty = true;
        if let Some(seg) = st.segments.get_mut(&base) {
            seg.log = Some(log);
            seg.index_file = Some(index);
            seg.time_file = Some(time);
            if prealloc {
                seg.reserved_len = seg_bytes;
            }
        }
        Ok(())
    }

    /// Step 3 (syncer task): what this log needs synced now, if anything.
    pub(crate) fn sync_work(&self, now_ms: i64) -> SyncDecision {
        let mut st = self.state.borrow_mut();
        if st.failed.is_some() || st.exclusive {
            return SyncDecision::Idle;
        }
        let written = self.written.get();
        let durable = self.durable.get();
        let has_files = st
            .segments
            .values()
            .any(|s| s.synced_len < s.written_len || s.index_sync_pending);
        if written <= durable && !st.dir_dirty && !has_files {
            return SyncDecision::Idle;
        }
        let requested = st.sync_requested > durable;
        let due = match st.config.durability {
            Durability::Durable => true,
            Durability::Interval { messages, ms } => {
                let deadline = st
                    .last_sync_ms
                    .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
                if requested || st.unsynced_messages >= messages || now_ms >= deadline {
                    true
                } else if written > durable && ms != u64::MAX {
                    return SyncDecision::At(deadline);
                } else {
                    false
                }
            }
        };
        if !(due || requested) || written <= durable && !requested && !has_files {
            return SyncDecision::Idle;
        }
        let files: Vec<(u64, u64, bool)> = st
            .segments
            .values()
            .filter(|s| s.synced_len < s.written_len || s.index_sync_pending)
            .map(|s| (s.base, s.written_len, s.index_sync_pending))
            .collect();
        let sync_dir = std::mem::take(&mut st.dir_dirty);
        st.unsynced_messages = 0;
        st.last_sync_ms = now_ms;
        SyncDecision::Sync(SyncWork {
            target: written,
            files,
            sync_dir,
            _f: std::marker::PhantomData,
        })
    }

    /// Steps 3-5: runs one log's part of a sync pass.
    pub(crate) async fn run_sync(self: &Rc<Self>, disk: &D, work: SyncWork) {
        let mut jobs = Vec::new();
        {
            let st = self.state.borrow();
            for &(base, _, idx) in &work.files {
                if let Some(seg) = st.segments.get(&base) {
                    if let Some(f) = seg.log.clone() {
                        jobs.push((f, st.path(base, "log")));
                    }
                    if idx {
                        if let Some(f) = seg.index_file.clone() {
                            jobs.push((f, st.path(base, "index")));
                        }
                        if let Some(f) = seg.time_file.clone() {
                            jobs.push((f, st.path(base, "timeindex")));
                        }
                    }
                }
            }
        }
        let dir = self.state.borrow().dir.clone();
        let results = futures_util::future::join_all(jobs.iter().map(|(f, _)| f.sync_data())).await;
        for (r, (_, path)) in results.into_iter().zip(&jobs) {
            if let Err(e) = r {
                self.fail_sync(format!("fdatasync {}: {e}", path.display()));
                return;
            }
        }
        if work.sync_dir
            && let Err(e) = disk.sync_dir(&dir).await
        {
            self.fail_sync(format!("fsync directory {}: {e}", dir.display()));
            return;
        }
        {
            let mut st = self.state.borrow_mut();
            for &(base, len, idx) in &work.files {
                if let Some(seg) = st.segments.get_mut(&base) {
                    seg.synced_len = seg.synced_len.max(len);
                    if idx {
                        seg.index_sync_pending = false;
                    }
                }
            }
        }
        self.durable.advance(work.target);
        // Every segment below the active one is now durable: raise the recovery point to the
        // active segment's base (once per roll).
        let active_base = {
            let st = self.state.borrow();
            st.segments.keys().next_back().copied().unwrap_or(0)
        };
        if active_base <= self.durable.get()
            && let Err(e) = self.advance_recovery_point(active_base).await
        {
            self.fail(e.to_string());
        }
    }

    /// On close (after a flush): adds the active segment's final time index entry (as Kafka does
    /// when it closes a segment) and writes and syncs every index entry not yet on disk, so the
    /// files of a cleanly stopped log are complete for Kafka's tools. Recovery rebuilds the active
    /// segment's indexes from its batches anyway.
    pub(crate) async fn finish_indexes(self: &Rc<Self>) -> Result<(), LogError> {
        let mut cuts = Vec::new();
        let writes = {
            let mut st = self.state.borrow_mut();
            st.check_failed()?;
            if !st.pending.is_empty() {
                return Ok(()); // not flushed: leave the indexes to recovery
            }
            let dir = st.dir.clone();
            if let Some(active) = st.active_mut() {
                active.seal_time_index();
            }
            let mut writes = Vec::new();
            for (base, seg) in st.segments.iter_mut() {
                if seg.padded_len > seg.written_len {
                    cuts.push((
                        seg.log.clone(),
                        seg.written_len,
                        dir.join(segment_file_name(*base, "log")),
                    ));
                    seg.padded_len = seg.written_len;
                }
                if seg.index.len() > seg.index_written {
                    let b = seg.index_bytes(seg.index_written);
                    let at = seg.index_written as u64 * INDEX_ENTRY as u64;
                    seg.index_written = seg.index.len();
                    let p = dir.join(segment_file_name(*base, "index"));
                    writes.push((seg.index_file.clone(), b, at, p));
                }
                if seg.time_index.len() > seg.time_written {
                    let b = seg.time_bytes(seg.time_written);
                    let at = seg.time_written as u64 * TIME_ENTRY as u64;
                    seg.time_written = seg.time_index.len();
                    let p = dir.join(segment_file_name(*base, "timeindex"));
                    writes.push((seg.time_file.clone(), b, at, p));
                }
            }
            writes
        };
        // Direct writes' padding goes first: a closed segment ends exactly at its last batch.
        for (f, len, p) in cuts {
            if let Some(f) = f {
                f.set_len(len).await.map_err(io_err("truncate", &p))?;
                f.sync_data().await.map_err(io_err("fdatasync", &p))?;
            }
        }
        for (f, b, at, p) in writes {
            if let Some(f) = f {
                f.write_all_at(b, at).await.0.map_err(io_err("write", &p))?;
                f.sync_data().await.map_err(io_err("fdatasync", &p))?;
            }
        }
        // Flushed: every written offset is durable, so the whole log is the recovery point.
        let end = self.durable.get().min(self.written.get());
        self.advance_recovery_point(end).await
    }

    /// Raises the recovery point on disk to `offset` (every offset below it must be durable).
    async fn advance_recovery_point(&self, offset: u64) -> Result<(), LogError> {
        let dir = {
            let st = self.state.borrow();
            if offset <= st.recovery_point {
                return Ok(());
            }
            st.dir.clone()
        };
        debug_assert!(
            offset <= self.durable.get(),
            "recovery point above the durable offset"
        );
        write_recovery_point(&self.disk, &dir, offset).await?;
        let mut st = self.state.borrow_mut();
        st.recovery_point = st.recovery_point.max(offset);
        Ok(())
    }

    /// Lowers the recovery point on disk to `offset` before offsets at or above it are removed.
    async fn lower_recovery_point(&self, offset: u64) -> Result<(), LogError> {
        let dir = {
            let st = self.state.borrow();
            if offset >= st.recovery_point {
                return Ok(());
            }
            st.dir.clone()
        };
        write_recovery_point(&self.disk, &dir, offset).await?;
        self.state.borrow_mut().recovery_point = offset;
        Ok(())
    }

    pub(crate) async fn flush(self: &Rc<Self>, group: &CommitGroup<D>) -> Result<(), LogError> {
        let end = self.state.borrow().next_offset;
        self.wait_durable(group, end).await
    }

    async fn wait_durable(
        self: &Rc<Self>,
        group: &CommitGroup<D>,
        offset: u64,
    ) -> Result<(), LogError> {
        {
            let mut st = self.state.borrow_mut();
            st.check_failed()?;
            st.sync_requested = st.sync_requested.max(offset);
        }
        let epoch = self.truncations.get();
        loop {
            if self.truncations.get() != epoch {
                return Err(LogError::Truncated { offset });
            }
            if self.durable.get() >= offset {
                return Ok(());
            }
            if self.durable.is_failed() {
                return Err(self.failed_error());
            }
            // Raised on every round: a write may have landed after the syncer last looked. The
            // durable watermark changes after each sync pass and on truncation.
            group.request_sync();
            self.durable.changed().await;
        }
    }
}

impl SegmentedLog<UringDisk> {
    /// Opens (or creates) the log in `dir` on the real disk, using the current shard's commit
    /// group. Recovers the tail (see the module docs).
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self, LogError> {
        Self::open_with(CommitGroup::current(), dir, config).await
    }
}

impl<D: Disk> SegmentedLog<D> {
    /// Opens the log in `dir` on the group's disk, committed by `group`.
    pub async fn open_with(
        group: CommitGroup<D>,
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        config.validate()?;
        let disk = group.disk().clone();
        disk.create_dir_all(&dir)
            .map_err(io_err("create directory", &dir))?;
        let mut state = recover(&disk, &dir, config).await?;
        state.cache.set_budget(group.tail_cache_budget());
        let end = state.next_offset;
        let shared = Rc::new(LogShared {
            state: RefCell::new(state),
            disk,
            written: Watermark::new(end),
            durable: Watermark::new(end),
            progress: Watermark::new(0),
            write_queued: Cell::new(false),
            writeback_running: Rc::new(Cell::new(0)),
            truncations: Cell::new(0),
        });
        group.register(&shared);
        Ok(SegmentedLog { shared, group })
    }

    pub fn dir(&self) -> PathBuf {
        self.shared.state.borrow().dir.clone()
    }
    pub fn config(&self) -> LogConfig {
        self.shared.state.borrow().config.clone()
    }
    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.shared.state.borrow().log_start
    }
    /// Next offset to be assigned (includes accepted but unwritten appends).
    pub fn log_end_offset(&self) -> u64 {
        self.shared.state.borrow().next_offset
    }
    /// Offsets below are written to the page cache and readable.
    pub fn written_offset(&self) -> u64 {
        self.shared.written.get()
    }
    /// Offsets below are on the media.
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable.get()
    }
    /// Total bytes of all segments (including accepted, unwritten bytes).
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.size)
            .sum()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.shared
            .state
            .borrow()
            .segments
            .keys()
            .copied()
            .collect()
    }
    /// Replaces the configuration of a running log (Kafka's dynamic topic configs) without
    /// reopening it. Every field is live; when each takes effect:
    ///
    /// | field | takes effect |
    /// |---|---|
    /// | `segment_bytes`, `segment_ms`, `segment_index_bytes` | the roll check of the next appended batch (the active segment keeps its bytes; a smaller size rolls it at the next append) |
    /// | `index_interval_bytes` | the next appended batch |
    /// | `retention_bytes`, `retention_ms` | the next `apply_retention` |
    /// | `preallocate` | the next segment created |
    /// | `durability` (`flush.messages`, `flush.ms`) | appends that start after the call, and the syncer's next decision (woken here) |
    /// | `batch_bytes_max`, `pending_bytes_max` | the next append |
    ///
    /// Fails with [`LogError::Config`] (and changes nothing) when `config` is invalid.
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        let mut st = self.shared.state.borrow_mut();
        let _ = st.cache.evict_to(config.tail_cache_bytes);
        st.config = config;
        drop(st);
        // A shorter flush interval or a switch to `Durable` must not wait for the old deadline.
        self.group.request_sync();
        // Appenders waiting on `pending_bytes_max` re-check the new limit.
        self.shared.progress.notify();
        Ok(())
    }

    /// Kafka's ListOffsets by timestamp: the earliest offset (at or above the log start) whose
    /// record timestamp is `>= ts`, with that record's timestamp; `None` when no written record is
    /// that new.
    ///
    /// How: the first segment whose max timestamp is `>= ts`; in it, the time index gives the last
    /// entry older than `ts`, the offset index the position to start from; batches are then walked
    /// (headers only) to the first one whose max timestamp is `>= ts`, and its records are decoded
    /// to find the exact record (like Kafka). Two cases return the batch, not the record:
    /// a **compressed** batch (the engine does not decompress) gives its base offset (or the log
    /// start, if higher) and its max timestamp; a `LogAppendTime` batch gives its first offset and
    /// its max timestamp (every record of it has that timestamp). Only written offsets are seen.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(u64, i64)>, LogError> {
        let candidates: Vec<(D::File, PathBuf, u64, u64)> = {
            let st = self.shared.state.borrow();
            let log_start = st.log_start;
            st.segments
                .values()
                .filter(|s| s.max_timestamp >= ts && s.end_offset > log_start)
                .filter_map(|s| {
                    let file = s.log.clone()?;
                    // Every time index entry before the first one at or above `ts` names an
                    // offset whose batch and all before it are older than `ts`.
                    let i = s.time_index.partition_point(|&(t, _)| t < ts);
                    let from_time = i
                        .checked_sub(1)
                        .and_then(|i| s.time_index.get(i))
                        .map_or(s.base, |&(_, r)| s.base + u64::from(r));
                    let pos = s.index_lookup(from_time.max(log_start));
                    Some((file, st.path(s.base, "log"), pos, s.written_len))
                })
                .collect()
        };
        let log_start = self.log_start_offset();
        for (file, path, pos, limit) in candidates {
            let mut walk = BatchWalk::new(&file, &path, pos, limit);
            while let Some(h) = walk.next_header().await? {
                if h.max_timestamp < ts || h.last < log_start {
                    walk.skip(&h);
                    continue;
                }
                let bytes = walk.whole_batch(&h).await?;
                return Ok(Some(find_record_at_or_after(&bytes, ts, log_start)?));
            }
        }
        Ok(None)
    }

    /// Kafka's ListOffsets `MAX_TIMESTAMP` (-3): the largest timestamp in the log and the offset
    /// of the first record carrying it (the batch's base offset for a compressed batch, see
    /// [`SegmentedLog::offset_for_timestamp`]); `None` when the log holds no timestamped batch.
    /// A maximum in a batch not yet written is reported with that batch's last offset.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, u64)>, LogError> {
        let found = {
            let st = self.shared.state.borrow();
            st.segments
                .values()
                .filter(|s| s.end_offset > st.log_start && s.max_timestamp >= 0)
                .fold(None::<&Segment<D::File>>, |best, s| match best {
                    Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                    _ => Some(s),
                })
                .map(|s| {
                    (
                        s.max_timestamp,
                        s.max_timestamp_offset,
                        s.log.clone(),
                        st.path(s.base, "log"),
                        s.index_lookup(s.max_timestamp_offset),
                        s.written_len,
                    )
                })
        };
        let Some((ts, offset, file, path, pos, limit)) = found else {
            return Ok(None);
        };
        if offset < self.shared.written.get()
            && let Some(file) = file
        {
            let log_start = self.log_start_offset();
            let mut walk = BatchWalk::new(&file, &path, pos, limit);
            while let Some(h) = walk.next_header().await? {
                if h.max_timestamp != ts || h.last < log_start {
                    walk.skip(&h);
                    continue;
                }
                let bytes = walk.whole_batch(&h).await?;
                let (o, _) = find_record_at_or_after(&bytes, ts, log_start)?;
                return Ok(Some((ts, o)));
            }
        }
        Ok(Some((ts, offset)))
    }

    /// Whether a write or sync failed (the log then rejects writes).
    /// Hits, misses and memory of the tail cache (see [`crate::tail_cache`]).
    pub fn tail_cache_stats(&self) -> TailCacheStats {
        self.shared.state.borrow().cache.stats()
    }

    pub fn failure(&self) -> Option<String> {
        self.shared.state.borrow().failed.clone()
    }

    async fn wait_not_exclusive(&self) -> Result<(), LogError> {
        loop {
            let (excl, over) = {
                let st = self.shared.state.borrow();
                st.check_failed()?;
                (st.exclusive, st.pending_bytes > st.config.pending_bytes_max)
            };
            if !excl && !over {
                return Ok(());
            }
            self.shared.progress.changed().await;
        }
    }

    /// Accepts `records` (one or more whole batches) without waiting for any I/O: validates them
    /// (CRC once), assigns offsets in call order and queues them for the writer. When it returns,
    /// the batches are only in memory; use `wait_written`/`wait_durable` to wait for more.
    /// Fails (without waiting) when the pending-bytes limit is reached.
    pub fn append_buffered(
        &self,
        records: &[u8],
        opts: AppendOptions,
    ) -> Result<AppendInfo, LogError> {
        self.try_accept(records, opts).map(|a| a.info)
    }

    /// Waits until the log can accept a batch without waiting: no truncation or deletion is
    /// running and the pending bytes are under `pending_bytes_max`. Until the caller's next
    /// `.await`, [`Self::try_accept`] then fails only on an invalid batch or a failed log.
    pub async fn ready(&self) -> Result<(), LogError> {
        self.wait_not_exclusive().await
    }

    /// The synchronous part of an append: validates `records`, assigns their offsets and queues
    /// them, with no I/O and no waiting. A caller that must decide and record something at the
    /// moment offsets are assigned (the idempotent-producer check) does it around this call, with
    /// no `.await` in between, then waits with [`Self::complete`].
    pub fn try_accept(&self, records: &[u8], opts: AppendOptions) -> Result<Accepted, LogError> {
        let now = self.shared.disk.now_ms();
        let info = {
            let mut st = self.shared.state.borrow_mut();
            st.check_failed()?;
            if st.exclusive {
                return Err(LogError::Busy("a truncation or deletion is running"));
            }
            if st.pending_bytes > st.config.pending_bytes_max {
                return Err(LogError::Busy("pending bytes over pending_bytes_max"));
            }
            st.append_sync(records, opts, now)?
        };
        let truncations = self.shared.truncations.get();
        self.group.queue_write(&self.shared);
        Ok(Accepted { info, truncations })
    }

    /// Waits for an accepted append according to the log's [`Durability`], as
    /// [`Self::append_with`] does after accepting.
    pub async fn complete(&self, accepted: Accepted) -> Result<AppendInfo, LogError> {
        let Accepted { info, truncations } = accepted;
        let durability = self.shared.state.borrow().config.durability;
        match durability {
            Durability::Durable => {}
            Durability::Interval { .. } => {
                self.wait_written(info.last_offset + 1).await?;
                self.check_not_truncated(truncations, info.base_offset)?;
                // An interval threshold may have been reached: let the syncer look.
                self.group.request_sync();
                return Ok(info);
            }
        }
        self.wait_durable(info.last_offset + 1).await?;
        self.check_not_truncated(truncations, info.base_offset)?;
        Ok(info)
    }

    /// Appends `records` and returns according to the log's [`Durability`]: `Durable` after the
    /// fdatasync covering them; `Interval` once written to the page cache. See [`crate::commit`].
    pub async fn append(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.append_with(records, AppendOptions::default()).await
    }

    /// [`SegmentedLog::append`] with options.
    pub async fn append_with(
        &self,
        records: &[u8],
        opts: AppendOptions,
    ) -> Result<AppendInfo, LogError> {
        self.ready().await?;
        let accepted = self.try_accept(records, opts)?;
        self.complete(accepted).await
    }

    fn check_not_truncated(&self, epoch: u64, offset: u64) -> Result<(), LogError> {
        if self.shared.truncations.get() != epoch {
            return Err(LogError::Truncated { offset });
        }
        Ok(())
    }

    /// Waits until offsets below `offset` are written to the page cache.
    pub async fn wait_written(&self, offset: u64) -> Result<(), LogError> {
        self.shared
            .written
            .wait_for(offset)
            .await
            .map_err(|()| self.shared.failed_error())
    }

    /// Waits until offsets below `offset` are on the media (requests a sync under `Interval`).
    pub async fn wait_durable(&self, offset: u64) -> Result<(), LogError> {
        self.shared.wait_durable(&self.group, offset).await
    }

    /// Makes everything accepted so far durable.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.shared.flush(&self.group).await
    }

    /// A clean close, for a log about to be dropped: `flush`, then write and sync the index
    /// entries not yet on disk, with the active segment's final time index entry (Kafka's
    /// `LogSegment.close`), so the files are complete for Kafka's tools. The handle stays usable.
    /// [`CommitGroup::close`] does the same for every log still open at shutdown.
    pub async fn close(&self) -> Result<(), LogError> {
        self.flush().await?;
        self.shared.finish_indexes().await
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes` (at
    /// least one whole batch when any is available, like Kafka since KIP-74). Only written
    /// offsets are returned. One file read in the common case; no per-record work.
    pub async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let (file, path, mut pos, limit, start, written, interval) = {
            let st = self.shared.state.borrow();
            let written = self.shared.written.get();
            if offset < st.log_start || offset > st.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start,
                    log_end: st.next_offset,
                });
            }
            let empty = ReadResult {
                records: Bytes::new(),
                next_offset: offset,
                log_start_offset: st.log_start,
                log_end_offset: written,
            };
            if offset >= written {
                return Ok(empty);
            }
            let Some(seg) = st.segments.range(..=offset).next_back().map(|(_, s)| s) else {
                return Ok(empty);
            };
            if let Some((records, next_offset, segment)) = st.cache.read(offset, max_bytes)
                && segment == seg.base
            {
                drop(st);
                self.shared.state.borrow_mut().cache.hits += 1;
                return Ok(ReadResult {
                    records,
                    next_offset,
                    ..empty
                });
            }
            let Some(file) = seg.log.clone() else {
                return Ok(empty);
            };
            (
                file,
                st.path(seg.base, "log"),
                seg.index_lookup(offset),
                seg.written_len,
                st.log_start,
                written,
                st.config.index_interval_bytes,
            )
        };
        self.shared.state.borrow_mut().cache.misses += 1;
        let empty = ReadResult {
            records: Bytes::new(),
            next_offset: offset,
            log_start_offset: start,
            log_end_offset: written,
        };
        let window = (max_bytes.max(HEADER_LEN) as u64)
            .saturating_add(interval)
            .saturating_add(HEADER_LEN as u64);
        // Find the batch containing `offset`, reading windows from the indexed position.
        let (mut buf, mut buf_at) = (Vec::new(), pos);
        let found = loop {
            if pos >= limit {
                return Ok(empty);
            }
            let rel = (pos - buf_at) as usize;
            let have = buf.get(rel..).unwrap_or(&[]);
            if have.len() < HEADER_LEN {
                let len = (limit - pos).min(window) as usize;
                buf = self.shared_read(&file, &path, len, pos).await?;
                buf_at = pos;
                // Batches are at least HEADER_LEN bytes: a shorter remainder means the file
                // changed under us (truncation); there is nothing whole to return.
                if buf.len() < HEADER_LEN {
                    return Ok(empty);
                }
                continue;
            }
            let Some((_, last, size)) = header_fields(have) else {
                return Err(LogError::InvalidBatch(BatchError::BadLength {
                    at: pos as usize,
                    length: -1,
                }));
            };
            if last >= offset {
                break (pos, size);
            }
            pos += size;
        };
        let (first_pos, first_size) = found;
        // Collect whole batches from `first_pos` within the buffer, up to max_bytes.
        let mut end = first_pos;
        let mut next_offset = offset;
        loop {
            let rel = (end - buf_at) as usize;
            let Some((base, len)) = buf.get(rel..).and_then(batch::peek_offset_and_length) else {
                break;
            };
            let size = LOG_OVERHEAD as u64 + u64::from(len.unsigned_abs());
            let total = end + size - first_pos;
            if end + size > limit
                || (end > first_pos && total > max_bytes as u64)
                || rel as u64 + size > buf.len() as u64
            {
                break;
            }
            let delta = buf
                .get(rel + 23..rel + 27)
                .and_then(|s| s.try_into().ok())
                .map_or(0, i32::from_be_bytes);
            next_offset = base as u64 + u64::from(delta.unsigned_abs()) + 1;
            end += size;
        }
        if end == first_pos {
            // The first batch is larger than the buffer: read exactly it.
            buf = self
                .shared_read(&file, &path, first_size as usize, first_pos)
                .await?;
            buf_at = first_pos;
            let Ok(v) = BatchView::parse_header(&buf) else {
                return Ok(empty);
            };
            next_offset = v.last_offset() as u64 + 1;
            end = first_pos + v.size() as u64;
        }
        let records =
            Bytes::from(buf).slice((first_pos - buf_at) as usize..(end - buf_at) as usize);
        Ok(ReadResult {
            records,
            next_offset,
            log_start_offset: start,
            log_end_offset: written,
        })
    }

    async fn shared_read(
        &self,
        file: &D::File,
        path: &Path,
        len: usize,
        pos: u64,
    ) -> Result<Vec<u8>, LogError> {
        file.read_at(len, pos).await.map_err(io_err("read", path))
    }

    /// Takes exclusive use of the log: waits until nothing is pending, blocks new appends.
    async fn begin_exclusive(&self) -> Result<ExclusiveGuard<'_, D>, LogError> {
        loop {
            {
                let mut st = self.shared.state.borrow_mut();
                st.check_failed()?;
                if !st.exclusive
                    && st.pending.is_empty()
                    && self.shared.written.get() >= st.next_offset
                {
                    st.exclusive = true;
                    return Ok(ExclusiveGuard { log: self });
                }
            }
            self.shared.progress.changed().await;
        }
    }

    /// Removes every offset `>= offset` (Kafka's truncateTo): the batch containing `offset` and
    /// all later ones. Returns the new log end offset, which is `offset` when it falls on a batch
    /// boundary. Durable when it returns (file truncated and synced, later segments removed and
    /// the directory synced). Truncating below the log start empties the log and restarts it at
    /// `offset`.
    pub async fn truncate_to(&self, offset: u64) -> Result<u64, LogError> {
        let _guard = self.begin_exclusive().await?;
        // Whatever happens below, cached batches may no longer be the log's, and the partial
        // block of the next direct write is read back from the file.
        {
            let mut st = self.shared.state.borrow_mut();
            st.cache.clear();
            st.direct_tail = None;
        }
        let (end, start) = {
            let st = self.shared.state.borrow();
            (st.next_offset, st.log_start)
        };
        if offset >= end {
            return Ok(end);
        }
        if offset <= start {
            self.truncate_fully(offset).await?;
            return Ok(offset);
        }
        // Later segments go first, then the containing segment is cut.
        let (doomed, seg_base) = {
            let st = self.shared.state.borrow();
            let seg_base = st
                .segments
                .range(..=offset)
                .next_back()
                .map_or(start, |(b, _)| *b);
            (
                st.segments
                    .range(seg_base + 1..)
                    .map(|(b, _)| *b)
                    .collect::<Vec<_>>(),
                seg_base,
            )
        };
        // The recovery point first drops below everything that may go (the containing segment's
        // base: the cut may fall below `offset`), and is raised again once the cut is durable.
        let old_recovery_point = self.shared.state.borrow().recovery_point;
        self.shared.lower_recovery_point(seg_base).await?;
        self.remove_segment_files(&doomed).await?;
        let (file, path, from, limit) = {
            let st = self.shared.state.borrow();
            let Some(seg) = st.segments.get(&seg_base) else {
                return Err(LogError::Invariant("segment vanished"));
            };
            (
                seg.log.clone(),
                st.path(seg_base, "log"),
                seg.index_lookup(offset),
                seg.written_len,
            )
        };
        // Find the first batch whose last offset is >= offset.
        let mut cut = from;
        let mut new_end = offset;
        if let Some(f) = &file {
            let mut pos = from;
            while pos < limit {
                let h = f
                    .read_at(HEADER_LEN, pos)
                    .await
                    .map_err(io_err("read", &path))?;
                let Some((base, last, size)) = header_fields(&h) else {
                    break;
                };
                if last >= offset {
                    new_end = base;
                    break;
                }
                pos += size;
            }
            cut = pos.min(limit);
            f.set_len(cut).await.map_err(io_err("truncate", &path))?;
            f.sync_data().await.map_err(io_err("fdatasync", &path))?;
        }
        // Fix the in-memory segment and rewrite its indexes.
        let (idx_file, idx_bytes, time_file, time_bytes) = {
            let mut st = self.shared.state.borrow_mut();
            for b in &doomed {
                st.segments.remove(b);
            }
            let Some(seg) = st.segments.get_mut(&seg_base) else {
                return Err(LogError::Invariant("segment vanished"));
            };
            seg.index.retain(|&(_, p)| u64::from(p) < cut);
            let end_rel = new_end.saturating_sub(seg_base);
            seg.time_index.retain(|&(_, r)| u64::from(r) < end_rel);
            seg.size = cut;
            seg.written_len = cut;
            seg.synced_len = cut;
            seg.writeback_len = seg.writeback_len.min(cut);
            seg.padded_len = cut;
            seg.reserved_len = seg.reserved_len.min(cut);
            seg.end_offset = new_end;
            seg.index_written = seg.index.len();
            seg.time_written = seg.time_index.len();
            seg.bytes_since_index = 0;
            let (ts, tso) = seg
                .time_index
                .last()
                .map_or((-1, seg_base), |&(t, r)| (t, seg_base + u64::from(r)));
            seg.max_timestamp = ts;
            seg.max_timestamp_offset = tso;
            let r = (
                seg.index_file.clone(),
                seg.index_bytes(0),
                seg.time_file.clone(),
                seg.time_bytes(0),
            );
            st.next_offset = new_end;
            r
        };
        let ip = self.shared.state.borrow().path(seg_base, "index");
        let tp = self.shared.state.borrow().path(seg_base, "timeindex");
        for (f, b, p) in [(idx_file, idx_bytes, ip), (time_file, time_bytes, tp)] {
            if let Some(f) = f {
                let n = b.len() as u64;
                f.set_len(n).await.map_err(io_err("truncate", &p))?;
                f.write_all_at(b, 0).await.0.map_err(io_err("write", &p))?;
            }
        }
        self.sync_dir().await?;
        // Cutting the batch containing `offset` can end the log below its start: keep
        // log_start <= log_end, durably (Kafka lowers the start to the truncation point too).
        if new_end < start {
            self.write_checkpoint(new_end).await?;
            self.shared.state.borrow_mut().log_start = new_end;
        }
        self.shared
            .truncations
            .set(self.shared.truncations.get() + 1);
        self.shared.written.set(new_end);
        self.shared
            .durable
            .set(self.shared.durable.get().min(new_end));
        self.shared
            .advance_recovery_point(old_recovery_point.min(new_end))
            .await?;
        let mut st = self.shared.state.borrow_mut();
        st.sync_requested = st.sync_requested.min(new_end);
        Ok(new_end)
    }

    async fn truncate_fully(&self, offset: u64) -> Result<(), LogError> {
        self.shared.lower_recovery_point(offset).await?;
        self.remove_segment_files(&self.segment_bases()).await?;
        {
            let mut st = self.shared.state.borrow_mut();
            st.direct_tail = None;
            st.segments.clear();
            let now = self.shared.disk.now_ms();
            st.segments.insert(offset, Segment::new(offset, now));
            st.next_offset = offset;
            st.log_start = offset;
        }
        self.write_checkpoint(offset).await?;
        self.create_empty_active(offset).await?;
        self.sync_dir().await?;
        self.shared
            .truncations
            .set(self.shared.truncations.get() + 1);
        self.shared.written.set(offset);
        self.shared.durable.set(offset);
        Ok(())
    }

    async fn create_empty_active(&self, base: u64) -> Result<(), LogError> {
        let dir = self.dir();
        self.shared.create_segment_files(base, &dir).await
    }

    /// Removes the files of the segments at `bases` (see [`Disk::remove_files`]: off the shard
    /// thread; a missing file is not an error).
    async fn remove_segment_files(&self, bases: &[u64]) -> Result<(), LogError> {
        let paths = {
            let st = self.shared.state.borrow();
            let mut paths = Vec::with_capacity(bases.len() * SEGMENT_FILES.len());
            for b in bases {
                paths.extend(SEGMENT_FILES.map(|ext| st.path(*b, ext)));
            }
            paths
        };
        self.shared
            .disk
            .remove_files(paths)
            .await
            .map_err(|(path, source)| LogError::Io {
                op: "remove",
                path,
                source,
            })
    }

    async fn sync_dir(&self) -> Result<(), LogError> {
        let dir = self.dir();
        match self.shared.disk.sync_dir(&dir).await {
            Ok(()) => {
                self.shared.state.borrow_mut().dir_dirty = false;
                Ok(())
            }
            Err(e) => {
                self.shared
                    .fail(format!("fsync directory {}: {e}", dir.display()));
                Err(LogError::Io {
                    op: "fsync directory",
                    path: dir,
                    source: e,
                })
            }
        }
    }

    async fn write_checkpoint(&self, log_start: u64) -> Result<(), LogError> {
        let dir = self.dir();
        write_checkpoint(&self.shared.disk, &dir, log_start).await
    }

    /// Kafka's DeleteRecords: advances the log start offset to `offset` (at most the log end),
    /// makes the log durable up to it, checkpoints it durably, then deletes segments entirely below
    /// it. Returns the outcome.
    pub async fn delete_records(&self, offset: u64) -> Result<RetentionOutcome, LogError> {
        // The new start must never be above what survives a crash: make it durable first.
        if offset > self.durable_offset() {
            self.flush().await?;
        }
        let _guard = self.begin_exclusive().await?;
        let (start, end) = {
            let st = self.shared.state.borrow();
            (st.log_start, st.next_offset)
        };
        if offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        if offset > start {
            self.write_checkpoint(offset).await?;
            self.shared.state.borrow_mut().log_start = offset;
        }
        self.delete_segments_below_start().await
    }

    /// Deletes segments whose offsets are all below the log start (never the active segment).
    async fn delete_segments_below_start(&self) -> Result<RetentionOutcome, LogError> {
        let (doomed, start) = {
            let st = self.shared.state.borrow();
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            let doomed: Vec<u64> = bases
                .windows(2)
                .filter(|w| w[1] <= st.log_start)
                .map(|w| w[0])
                .collect();
            (doomed, st.log_start)
        };
        self.delete_segments(&doomed).await?;
        Ok(RetentionOutcome {
            deleted_segments: doomed,
            log_start_offset: start,
        })
    }

    async fn delete_segments(&self, doomed: &[u64]) -> Result<(), LogError> {
        if doomed.is_empty() {
            return Ok(());
        }
        // Close first, unlink after, off the shard thread: the unlink of a closed file is where
        // the kernel frees its cached pages (see `Disk::remove_files`). A segment left on disk
        // by a failure here lies below the checkpointed log start, and recovery removes it.
        {
            let mut st = self.shared.state.borrow_mut();
            st.cache.drop_segments(doomed);
            for b in doomed {
                st.segments.remove(b);
            }
        }
        self.remove_segment_files(doomed).await?;
        self.sync_dir().await
    }

    /// Applies `retention.ms` (segments whose newest timestamp is older) and `retention.bytes`
    /// (oldest segments while the log stays at least that large without them), deleting whole
    /// segments, never the active one. The new log start is checkpointed before any deletion.
    pub async fn apply_retention(&self) -> Result<RetentionOutcome, LogError> {
        let _guard = self.begin_exclusive().await?;
        let now = self.shared.disk.now_ms();
        let (doomed, new_start) = {
            let st = self.shared.state.borrow();
            let segs: Vec<&Segment<D::File>> = st.segments.values().collect();
            let mut total: u64 = segs.iter().map(|s| s.size).sum();
            let mut doomed = Vec::new();
            let mut new_start = st.log_start;
            for pair in segs.windows(2) {
                let (s, next) = (pair[0], pair[1]);
                let by_time = st.config.retention_ms.is_some_and(|ms| {
                    s.max_timestamp >= 0 && now.saturating_sub(s.max_timestamp) > ms
                });
                let by_size = st
                    .config
                    .retention_bytes
                    .is_some_and(|max| total.saturating_sub(s.size) >= max);
                let below_start = next.base <= st.log_start;
                if !(by_time || by_size || below_start) {
                    break;
                }
                total -= s.size;
                doomed.push(s.base);
                new_start = new_start.max(next.base);
            }
            (doomed, new_start)
        };
        if doomed.is_empty() {
            return Ok(RetentionOutcome {
                deleted_segments: doomed,
                log_start_offset: new_start,
            });
        }
        if new_start > self.log_start_offset() {
            self.write_checkpoint(new_start).await?;
            self.shared.state.borrow_mut().log_start = new_start;
        }
        self.delete_segments(&doomed).await?;
        Ok(RetentionOutcome {
            deleted_segments: doomed,
            log_start_offset: new_start,
        })
    }
}

struct ExclusiveGuard<'a, D: Disk> {
    log: &'a SegmentedLog<D>,
}

impl<D: Disk> Drop for ExclusiveGuard<'_, D> {
    fn drop(&mut self) {
        self.log.shared.state.borrow_mut().exclusive = false;
        self.log.shared.progress.notify();
        // A sync pass that ran meanwhile skipped this log (`sync_work` is idle while exclusive):
        // without another pass, bytes written before the operation would wait for the next write
        // to wake the syncer, and under `durable` their appenders would wait with them.
        self.log.group.wake_syncer();
    }
}

fn corrupt(
    path: &Path,
    dir: &Path,
    position: u64,
    offset: u64,
    recovery_point: u64,
    reason: String,
) -> LogError {
    LogError::Corrupt(Box::new(Corruption {
        path: path.to_path_buf(),
        dir: dir.display().to_string(),
        position,
        offset,
        recovery_point,
        reason,
    }))
}

/// The recovery point on disk, if the file exists. A file that exists but does not parse fails:
/// it is written by rename, so it is never torn, and guessing could cut durable data.
async fn read_recovery_point<D: Disk>(disk: &D, dir: &Path) -> Result<Option<u64>, LogError> {
    let path = dir.join(RECOVERY_POINT);
    if !disk
        .list_dir(dir)
        .map_err(io_err("list", dir))?
        .iter()
        .any(|n| n == RECOVERY_POINT)
    {
        return Ok(None);
    }
    let f = disk
        .open(&path, false)
        .await
        .map_err(io_err("open", &path))?;
    let bytes = f.read_at(64, 0).await.map_err(io_err("read", &path))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.split('\n');
    let parsed = match (lines.next(), lines.next(), lines.next(), lines.next()) {
        (Some("0"), Some(n), Some(""), None)
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            n.parse::<u64>().ok()
        }
        _ => None,
    };
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(LogError::BadCheckpoint {
            path,
            what: "recovery point",
            found: text.chars().take(64).collect(),
        }),
    }
}

async fn write_recovery_point<D: Disk>(disk: &D, dir: &Path, offset: u64) -> Result<(), LogError> {
    write_small_file(disk, dir, RECOVERY_POINT, format!("0\n{offset}\n")).await
}

async fn write_checkpoint<D: Disk>(disk: &D, dir: &Path, log_start: u64) -> Result<(), LogError> {
    write_small_file(disk, dir, LOG_START_CHECKPOINT, format!("0\n{log_start}\n")).await
}

/// Replaces `dir/name` with `body` atomically and durably (write a temporary file, fdatasync,
/// rename, fsync the directory).
async fn write_small_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    body: String,
) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let f = disk
        .open(&tmp, true)
        .await
        .map_err(io_err("create", &tmp))?;
    f.set_len(0).await.map_err(io_err("truncate", &tmp))?;
    f.write_all_at(body.into_bytes(), 0)
        .await
        .0
        .map_err(io_err("write", &tmp))?;
    f.sync_data().await.map_err(io_err("fdatasync", &tmp))?;
    disk.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    disk.sync_dir(dir)
        .await
        .map_err(io_err("fsync directory", dir))?;
    Ok(())
}

async fn read_checkpoint<D: Disk>(disk: &D, dir: &Path) -> Option<u64> {
    let f = disk
        .open(&dir.join(LOG_START_CHECKPOINT), false)
        .await
        .ok()?;
    let bytes = f.read_at(64, 0).await.ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// Step 1 of the lifecycle: rebuilds the in-memory state from the directory.
/// Replaces both index files of a segment with its in-memory indexes (recovery rebuilds them
/// after a scan or after cutting a torn tail). Not synced here: the caller marks the segment.
async fn rewrite_indexes<F: DiskFile>(
    seg: &mut Segment<F>,
    index_file: &F,
    ip: &Path,
    time_file: &F,
    tp: &Path,
) -> Result<(), LogError> {
    for (file, path, bytes) in [
        (index_file, ip, seg.index_bytes(0)),
        (time_file, tp, seg.time_bytes(0)),
    ] {
        file.set_len(0).await.map_err(io_err("truncate", path))?;
        file.write_all_at(bytes, 0)
            .await
            .0
            .map_err(io_err("write", path))?;
    }
    seg.index_written = seg.index.len();
    seg.time_written = seg.time_index.len();
    Ok(())
}

/// One direct write, as the future the writer keeps in flight.
async fn run_direct_write<F: DiskFile>(
    file: F,
    buf: WriteBuf,
    at: u64,
    w: DirectWrite,
) -> (io::Result<()>, Option<AlignedBuf>, DirectWrite) {
    match buf {
        WriteBuf::Direct(buf) => {
            let (res, buf) = file.write_direct_at(buf, at).await;
            (res, Some(buf), w)
        }
        WriteBuf::Buffered(buf) => (file.write_all_at(buf, at).await.0, None, w),
    }
}

/// Opens a segment's `.log` file, for direct writes when `direct` and the file system allows it
/// (otherwise buffered, with a log line).
async fn open_log_file<D: Disk>(
    disk: &D,
    path: &Path,
    create: bool,
    direct: bool,
) -> Result<D::File, LogError> {
    if direct {
        match disk.open_direct(path, create).await {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io_err("open", path)(e));
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "direct I/O refused by the file system; writing this segment through the page cache"
            ),
        }
    }
    disk.open(path, create)
        .await
        .map_err(io_err(if create { "create" } else { "open" }, path))
}

/// Whether `log`'s bytes `from..len` are all zero: the padding of a direct write's partial block,
/// blocks allocated ahead of direct writes, or zeros written ahead ([`LogConfig::zero_fill`]).
/// Cutting them loses nothing.
async fn is_padding<F: DiskFile>(log: &F, mut from: u64, len: u64) -> bool {
    if len <= from {
        return false;
    }
    while from < len {
        let n = (len - from).min(SCAN_CHUNK_BYTES as u64);
        match log.read_at(n as usize, from).await {
            Ok(b) if b.len() as u64 == n && b.iter().all(|&x| x == 0) => from += n,
            _ => return false,
        }
    }
    true
}

async fn recover<D: Disk>(
    disk: &D,
    dir: &Path,
    config: LogConfig,
) -> Result<LogState<D>, LogError> {
    let names = disk.list_dir(dir).map_err(io_err("list", dir))?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .filter(|(_, e)| *e == "log")
        .map(|(b, _)| b)
        .collect();
    bases.sort_unstable();
    let checkpoint = read_checkpoint(disk, dir).await;
    let mut state = LogState {
        dir: dir.to_path_buf(),
        config,
        segments: BTreeMap::new(),
        log_start: 0,
        next_offset: 0,
        pending: Vec::new(),
        cache: TailCache::default(),
        direct_tail: None,
        direct_spare: Vec::new(),
        direct_refused: false,
        pending_bytes: 0,
        spare: Vec::new(),
        failed: None,
        dir_dirty: false,
        unsynced_messages: 0,
        last_sync_ms: disk.now_ms(),
        sync_requested: 0,
        exclusive: false,
        recovery_point: 0,
    };
    let recovery_point = read_recovery_point(disk, dir).await?.unwrap_or(0);
    state.recovery_point = recovery_point;
    let interval = state.config.index_interval_bytes;
    // Segments wholly below the checkpointed start are leftovers of an interrupted deletion.
    if let Some(start) = checkpoint {
        let keep_from = bases.iter().rposition(|&b| b <= start).unwrap_or(0);
        for &b in bases.iter().take(keep_from) {
            for ext in SEGMENT_FILES {
                let _ = disk.remove_file(&state.path(b, ext));
            }
        }
        bases.drain(..keep_from);
    }
    let mut expected: Option<u64> = None;
    let mut cut_rest = false;
    let count = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == count;
        if cut_rest || expected.is_some_and(|e| e != base) {
            let hole_at = expected.unwrap_or(base);
            if hole_at < recovery_point && !cut_rest {
                return Err(corrupt(
                    &state.path(base, "log"),
                    dir,
                    0,
                    hole_at,
                    recovery_point,
                    format!("offsets {hole_at}..{base} are missing before this segment"),
                ));
            }
            // A hole before this segment: it cannot continue the log.
            tracing::warn!(dir = %dir.display(), base, "removing segment after a gap in the log");
            for ext in SEGMENT_FILES {
                let _ = disk.remove_file(&state.path(base, ext));
            }
            cut_rest = true;
            state.dir_dirty = true;
            continue;
        }
        let lp = state.path(base, "log");
        let ip = state.path(base, "index");
        let tp = state.path(base, "timeindex");
        let log = open_log_file(disk, &lp, false, is_last && state.config.direct_io).await?;
        let index_file = disk.open(&ip, true).await.map_err(io_err("open", &ip))?;
        let time_file = disk.open(&tp, true).await.map_err(io_err("open", &tp))?;
        let len = log.len().await.map_err(io_err("stat", &lp))?;
        let mut seg: Segment<D::File> = Segment::new(base, disk.now_ms());
        // Older segments: trust a consistent index and check only from its last entry.
        let mut loaded: Option<LoadedIndexes> = None;
        if !is_last {
            let ilen = index_file.len().await.map_err(io_err("stat", &ip))?;
            let tlen = time_file.len().await.map_err(io_err("stat", &tp))?;
            let ib = index_file
                .read_at(ilen as usize, 0)
                .await
                .map_err(io_err("read", &ip))?;
            let tb = time_file
                .read_at(tlen as usize, 0)
                .await
                .map_err(io_err("read", &tp))?;
            if let (Some(idx), Some(tim)) = (parse_index(&ib), parse_time_index(&tb))
                && idx.last().is_none_or(|&(_, p)| u64::from(p) < len)
            {
                loaded = Some((idx, tim));
            }
        }
        let outcome = match &loaded {
            Some((idx, _)) if !idx.is_empty() => {
                let &(rel, pos) = idx.last().unwrap_or(&(0, 0));
                let o = scan_file(&log, base, u64::from(pos), None, u64::MAX, len)
                    .await
                    .map_err(io_err("read", &lp))?;
                // The batch at the last index entry must be the one the entry names.
                let first_ok = o.batches > 0 && o.stop_reason.is_none() && o.valid_len == len;
                if first_ok {
                    let h = log
                        .read_at(HEADER_LEN, u64::from(pos))
                        .await
                        .map_err(io_err("read", &lp))?;
                    let delta = h
                        .get(23..27)
                        .and_then(|s| s.try_into().ok())
                        .map_or(-1, i32::from_be_bytes);
                    let b = batch::peek_offset_and_length(&h).map_or(-1, |x| x.0);
                    if b >= 0
                        && delta >= 0
                        && b as u64 + u64::from(delta.unsigned_abs()) == base + u64::from(rel)
                    {
                        Some(o)
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        let outcome = match outcome {
            Some(o) => {
                let (idx, tim) = loaded.unwrap_or_default();
                seg.index = idx;
                seg.time_index = tim;
                seg.max_timestamp = o
                    .max_timestamp
                    .max(seg.time_index.last().map_or(-1, |e| e.0));
                seg.max_timestamp_offset = seg
                    .time_index
                    .last()
                    .map_or(o.max_timestamp_offset, |e| base + u64::from(e.1));
                seg.index_written = seg.index.len();
                seg.time_written = seg.time_index.len();
                o
            }
            None => {
                let o = scan_file(&log, base, 0, Some(base), interval, len)
                    .await
                    .map_err(io_err("read", &lp))?;
                seg.index = o.index.clone();
                seg.time_index = o.time_index.clone();
                seg.max_timestamp = o.max_timestamp;
                seg.max_timestamp_offset = o.max_timestamp_offset;
                // Rewrite both indexes from the scan.
                rewrite_indexes(&mut seg, &index_file, &ip, &time_file, &tp).await?;
                seg.index_sync_pending = true;
                o
            }
        };
        // A direct write's zero padding at the end of an older segment (its cut was interrupted):
        // cutting it loses nothing, so the later segments stay (the offsets check still drops
        // them after a real hole).
        let padding = outcome.valid_len < len && is_padding(&log, outcome.valid_len, len).await;
        if padding {
            tracing::debug!(path = %lp.display(), valid = outcome.valid_len, len, "cutting padding");
            log.set_len(outcome.valid_len)
                .await
                .map_err(io_err("truncate", &lp))?;
            log.sync_data().await.map_err(io_err("fdatasync", &lp))?;
        } else if outcome.valid_len < len {
            if outcome.end_offset.max(base) < recovery_point {
                return Err(corrupt(
                    &lp,
                    dir,
                    outcome.valid_len,
                    outcome.end_offset.max(base),
                    recovery_point,
                    outcome
                        .stop_reason
                        .clone()
                        .unwrap_or_else(|| "incomplete batch".into()),
                ));
            }
            tracing::warn!(
                path = %lp.display(),
                valid = outcome.valid_len,
                len,
                reason = outcome.stop_reason.as_deref().unwrap_or("incomplete batch"),
                "cutting the invalid tail of a segment"
            );
            log.set_len(outcome.valid_len)
                .await
                .map_err(io_err("truncate", &lp))?;
            log.sync_data().await.map_err(io_err("fdatasync", &lp))?;
            seg.index.retain(|&(_, p)| u64::from(p) < outcome.valid_len);
            let end_rel = outcome.end_offset.saturating_sub(base);
            seg.time_index.retain(|&(_, r)| u64::from(r) < end_rel);
            rewrite_indexes(&mut seg, &index_file, &ip, &time_file, &tp).await?;
            cut_rest = true;
        }
        seg.size = outcome.valid_len;
        seg.written_len = outcome.valid_len;
        seg.synced_len = outcome.valid_len;
        seg.writeback_len = outcome.valid_len;
        seg.padded_len = outcome.valid_len;
        seg.end_offset = outcome.end_offset.max(base);
        seg.first_batch_ts = outcome.first_max_timestamp;
        seg.created_ms = disk.now_ms();
        if !is_last && !cut_rest {
            seg.seal_time_index();
        }
        seg.log = Some(log);
        seg.index_file = Some(index_file);
        seg.time_file = Some(time_file);
        expected = Some(seg.end_offset);
        state.segments.insert(base, seg);
    }
    // Segments missing at the end, below the recovery point: deleted by hand or lost.
    let end = state.segments.values().next_back().map(|s| s.end_offset);
    if let Some(end) = end
        && end < recovery_point
    {
        return Err(corrupt(
            &state.path(end, "log"),
            dir,
            0,
            end,
            recovery_point,
            format!("the log ends at offset {end}; the segments after it are missing"),
        ));
    }
    // Empty older segments (everything cut) would confuse reads; a log needs an active segment.
    let start = checkpoint.unwrap_or(0);
    match state.segments.values().next_back() {
        Some(last) => {
            state.next_offset = last.end_offset;
            let first = state.segments.keys().next().copied().unwrap_or(0);
            state.log_start = start.max(first).min(state.next_offset);
        }
        None => {
            let base = start;
            let mut seg = Segment::new(base, disk.now_ms());
            for (ext, slot) in [("log", 0), ("index", 1), ("timeindex", 2)] {
                let p = state.path(base, ext);
                let f = if slot == 0 {
                    open_log_file(disk, &p, true, state.config.direct_io).await?
                } else {
                    disk.open(&p, true).await.map_err(io_err("create", &p))?
                };
                match slot {
                    0 => seg.log = Some(f),
                    1 => seg.index_file = Some(f),
                    _ => seg.time_file = Some(f),
                }
            }
            state.segments.insert(base, seg);
            state.next_offset = base;
            state.log_start = base;
            state.dir_dirty = true;
        }
    }
    if state.dir_dirty {
        disk.sync_dir(dir)
            .await
            .map_err(io_err("fsync directory", dir))?;
        state.dir_dirty = false;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;

    fn rec(i: u64, ts: i64) -> Vec<u8> {
        batch::single_record(
            Some(&i.to_be_bytes()),
            Some(format!("value-{i}").as_bytes()),
            ts,
        )
        .unwrap()
    }

    fn cfg(durability: Durability) -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 100,
            durability,
            ..Default::default()
        }
    }

    /// Where the unit tests' log lives on the simulated disk.
    const LOG_DIR: &str = "/d/t-0";

    /// A fresh simulated disk whose clock reads `now_ms`, its commit group, and the log
    /// [`LOG_DIR`] opened on it with `c`.
    async fn sim_log(
        now_ms: i64,
        c: LogConfig,
    ) -> (SimDisk, CommitGroup<SimDisk>, SegmentedLog<SimDisk>) {
        let disk = SimDisk::new(now_ms);
        let group = CommitGroup::new(disk.clone());
        let log = reopen(&group, c).await;
        (disk, group, log)
    }

    /// Opens [`LOG_DIR`] again in `group` (after the previous handle was dropped, or a crash).
    async fn reopen(group: &CommitGroup<SimDisk>, c: LogConfig) -> SegmentedLog<SimDisk> {
        SegmentedLog::open_with(group.clone(), LOG_DIR, c)
            .await
            .unwrap()
    }

    fn run<F: std::future::Future<Output = ()>>(f: F) {
        crate::rt::block_on(f).unwrap();
    }

    async fn read_all<D: Disk>(log: &SegmentedLog<D>) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = log.log_start_offset();
        loop {
            let r = log.read(at, 300).await.unwrap();
            if r.records.is_empty() {
                return out;
            }
            for b in batch::Batches::new(&r.records, true) {
                let b = b.unwrap();
                let v = b.records().unwrap().next().unwrap().unwrap();
                out.push((b.base_offset() as u64, v.value.unwrap().to_vec()));
            }
            at = r.next_offset;
        }
    }

    #[test]
    fn append_read_roll_and_reopen() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..40 {
                let info = log.append(&rec(i, 1000 + i as i64)).await.unwrap();
                assert_eq!(info.base_offset, i);
            }
            assert!(
                log.segment_bases().len() > 2,
                "rolled: {:?}",
                log.segment_bases()
            );
            assert_eq!(log.durable_offset(), 40);
            let all = read_all(&log).await;
            assert_eq!(all.len(), 40);
            for (i, (o, v)) in all.iter().enumerate() {
                assert_eq!(*o, i as u64);
                assert_eq!(v, format!("value-{i}").as_bytes());
            }
            // Read from the middle of the log returns the batch containing the offset first.
            let r = log.read(17, 1).await.unwrap();
            let first = BatchView::parse(&r.records).unwrap();
            assert_eq!(first.base_offset(), 17);
            assert_eq!(r.next_offset, 18);
            drop(log);
            let log = reopen(&group, cfg(Durability::Durable)).await;
            assert_eq!(log.log_end_offset(), 40);
            assert_eq!(read_all(&log).await.len(), 40);
            // Index files match Kafka's entry sizes.
            for b in log.segment_bases() {
                let idx = disk
                    .contents(&log.dir().join(segment_file_name(b, "index")))
                    .unwrap();
                assert_eq!(idx.len() % 8, 0);
            }
        });
    }

    /// Flips 16 bytes inside the last batch of `segment` (the part recovery scans of an older
    /// segment: from its last index entry to its end).
    fn damage_last_batch(disk: &SimDisk, path: &Path) -> u64 {
        let mut bytes = disk.contents(path).unwrap();
        let mut pos = 0usize;
        let mut last = 0usize;
        while pos < bytes.len() {
            last = pos;
            pos += BatchView::parse_header(&bytes[pos..]).unwrap().size();
        }
        for b in &mut bytes[last + 30..last + 46] {
            *b ^= 0xff;
        }
        disk.overwrite(path, bytes);
        last as u64
    }

    #[test]
    fn damage_below_the_recovery_point_stops_open_and_deletes_nothing() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..80 {
                log.append(&rec(i, 1000 + i as i64)).await.unwrap();
            }
            let bases = log.segment_bases();
            assert!(bases.len() >= 7, "{bases:?}");
            log.close().await.unwrap();
            drop(log);
            let victim = log_path(bases[1]);
            let position = damage_last_batch(&disk, &victim);
            let files_before = disk.list_dir(Path::new(LOG_DIR)).unwrap();
            let err = SegmentedLog::open_with(group.clone(), LOG_DIR, cfg(Durability::Durable))
                .await
                .map(|_| ())
                .unwrap_err();
            let msg = err.to_string();
            match &err {
                LogError::Corrupt(c) => {
                    assert_eq!(c.path, victim, "{msg}");
                    assert_eq!(c.position, position, "{msg}");
                    assert_eq!(c.recovery_point, 80, "{msg}");
                }
                other => panic!("expected Corrupt, got {other}"),
            }
            assert!(msg.contains(&victim.display().to_string()), "{msg}");
            // Nothing was cut or deleted: every segment is still there, byte for byte.
            let mut after = disk.list_dir(Path::new(LOG_DIR)).unwrap();
            let mut before = files_before.clone();
            after.sort();
            before.sort();
            assert_eq!(before, after);
            for b in &bases[2..] {
                assert!(!disk.contents(&log_path(*b)).unwrap().is_empty());
            }
        });
    }

    #[test]
    fn missing_segments_below_the_recovery_point_stop_open() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..40 {
                log.append(&rec(i, 1000 + i as i64)).await.unwrap();
            }
            let bases = log.segment_bases();
            log.close().await.unwrap();
            drop(log);
            let last = *bases.last().unwrap();
            for ext in SEGMENT_FILES {
                disk.remove_file(&Path::new(LOG_DIR).join(segment_file_name(last, ext)))
                    .unwrap();
            }
            let err = SegmentedLog::open_with(group.clone(), LOG_DIR, cfg(Durability::Durable))
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(err, LogError::Corrupt(_)), "{err}");
        });
    }

    #[test]
    fn a_torn_tail_above_the_recovery_point_is_still_cut() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..40 {
                log.append(&rec(i, 1000 + i as i64)).await.unwrap();
            }
            let bases = log.segment_bases();
            drop(log); // no clean close: the recovery point is the active segment's base
            let active = *bases.last().unwrap();
            assert!(active < 40 && active > 0, "{bases:?}");
            damage_last_batch(&disk, &log_path(active));
            let log = reopen(&group, cfg(Durability::Durable)).await;
            assert_eq!(log.log_end_offset(), 39);
            assert_eq!(read_all(&log).await.len(), 39);
        });
    }

    #[test]
    fn truncation_lowers_the_recovery_point_first() {
        run(async {
            let (_disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..40 {
                log.append(&rec(i, 1000 + i as i64)).await.unwrap();
            }
            log.close().await.unwrap();
            assert_eq!(log.truncate_to(12).await.unwrap(), 12);
            drop(log);
            let log = reopen(&group, cfg(Durability::Durable)).await;
            assert_eq!(log.log_end_offset(), 12);
            log.close().await.unwrap();
            assert_eq!(log.truncate_to(0).await.unwrap(), 0);
            drop(log);
            let log = reopen(&group, cfg(Durability::Durable)).await;
            assert_eq!(log.log_end_offset(), 0);
        });
    }

    #[test]
    fn a_garbled_recovery_point_file_stops_open() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            log.append(&rec(0, 1000)).await.unwrap();
            log.close().await.unwrap();
            drop(log);
            disk.overwrite(
                &Path::new(LOG_DIR).join(RECOVERY_POINT),
                b"0\n12x\n".to_vec(),
            );
            let err = SegmentedLog::open_with(group.clone(), LOG_DIR, cfg(Durability::Durable))
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(err.to_string().contains(RECOVERY_POINT), "{err}");
        });
    }

    fn log_path(base: u64) -> PathBuf {
        Path::new(LOG_DIR).join(segment_file_name(base, "log"))
    }

    /// Reads every offset with several `max_bytes` from `a` (tail cache) and `b` (same appends,
    /// cache off): the same first batch, whole batches, and `b`'s answer a prefix of `a`'s (a
    /// file read may stop early at the end of its read window; the cache never does).
    async fn assert_cache_reads_match_file_reads(
        a: &SegmentedLog<SimDisk>,
        b: &SegmentedLog<SimDisk>,
    ) {
        assert_eq!(a.log_end_offset(), b.log_end_offset());
        for at in a.log_start_offset()..a.log_end_offset() {
            for max in [1usize, 150, 400, 5_000] {
                let (x, y) = (
                    a.read(at, max).await.unwrap(),
                    b.read(at, max).await.unwrap(),
                );
                assert!(x.records.starts_with(&y.records), "at {at} max {max}");
                assert!(!y.records.is_empty());
                let first = BatchView::parse(&x.records).unwrap();
                assert!(first.base_offset() as u64 <= at && at <= first.last_offset() as u64);
                assert!(
                    x.records.len() <= max.max(first.size()),
                    "at {at} max {max}"
                );
                for b in batch::Batches::new(&x.records, true) {
                    b.unwrap();
                }
                if x.records.len() == y.records.len() {
                    assert_eq!(x.next_offset, y.next_offset);
                }
            }
        }
        // Stepping through the whole log gives the same bytes either way.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (log, out) in [(a, &mut x), (b, &mut y)] {
            let mut at = log.log_start_offset();
            while at < log.log_end_offset() {
                let r = log.read(at, 700).await.unwrap();
                out.extend_from_slice(&r.records);
                at = r.next_offset;
            }
        }
        assert_eq!(x, y);
    }

    #[test]
    fn tail_cache_reads_equal_file_reads_across_truncate_retention_and_crash() {
        run(async {
            let mut cached = cfg(Durability::KAFKA_DEFAULT);
            cached.tail_cache_bytes = 1 << 20;
            cached.retention_ms = None;
            let mut plain = cached.clone();
            plain.tail_cache_bytes = 0;
            let (disk, group, a) = sim_log(1_000, cached.clone()).await;
            let b = SegmentedLog::open_with(group.clone(), "/d/t-1", plain.clone())
                .await
                .unwrap();
            let append = |i: u64| {
                let (a, b) = (a.clone(), b.clone());
                async move {
                    // Several batches per append now and then: one run holds many batches.
                    let mut bytes = rec(i, 1_000 + i as i64);
                    if i.is_multiple_of(3) {
                        let mut second = rec(i + 1, 1_000);
                        batch::stamp_base_offset(&mut second, 1);
                        bytes.extend_from_slice(&second);
                    }
                    a.append(&bytes).await.unwrap();
                    b.append(&bytes).await.unwrap();
                }
            };
            for i in 0..40 {
                append(i).await;
            }
            assert!(a.segment_bases().len() > 3);
            assert_cache_reads_match_file_reads(&a, &b).await;
            let s = a.tail_cache_stats();
            assert!(s.hits > 0 && s.runs > 0, "{s:?}");
            assert_eq!(b.tail_cache_stats().hits, 0);
            // Truncation: the cache must not answer for cut batches, and refills afterwards.
            let end = a.truncate_to(30).await.unwrap();
            assert_eq!(b.truncate_to(30).await.unwrap(), end);
            assert_eq!(a.tail_cache_stats().runs, 0);
            assert!(a.read(end, 100).await.unwrap().records.is_empty());
            for i in 100..110 {
                append(i).await;
            }
            assert_cache_reads_match_file_reads(&a, &b).await;
            // Retention and delete-records drop whole segments; the rest still matches.
            let doomed = a.segment_bases()[2];
            a.delete_records(doomed).await.unwrap();
            b.delete_records(doomed).await.unwrap();
            assert!(a.read(0, 100).await.is_err());
            assert_cache_reads_match_file_reads(&a, &b).await;
            // A small cache evicts oldest first and still answers the newest offsets.
            let mut small = cached.clone();
            small.tail_cache_bytes = 700;
            a.set_config(small).unwrap();
            assert!(a.tail_cache_stats().bytes <= 700);
            for i in 200..220 {
                append(i).await;
            }
            assert!(a.tail_cache_stats().bytes <= 700);
            let hits = a.tail_cache_stats().hits;
            a.read(a.log_end_offset() - 1, 100).await.unwrap();
            assert_eq!(a.tail_cache_stats().hits, hits + 1);
            assert_cache_reads_match_file_reads(&a, &b).await;
            // A crash and recovery: the reopened log starts with an empty cache and reads what
            // survived; appends after it are cached again.
            drop((a, b));
            disk.crash(&mut |n| n / 2);
            let a = reopen(&group, cached).await;
            let b = SegmentedLog::open_with(group.clone(), "/d/t-1", plain)
                .await
                .unwrap();
            assert_eq!(a.tail_cache_stats().runs, 0);
            let end = a.log_end_offset().min(b.log_end_offset());
            a.truncate_to(end).await.unwrap();
            b.truncate_to(end).await.unwrap();
            assert_cache_reads_match_file_reads(&a, &b).await;
            for i in 300..310 {
                let bytes = rec(i, 5_000);
                a.append(&bytes).await.unwrap();
                b.append(&bytes).await.unwrap();
            }
            assert!(a.tail_cache_stats().runs > 0);
            assert_cache_reads_match_file_reads(&a, &b).await;
        });
    }

    #[test]
    fn crash_keeps_durable_appends_and_cuts_torn_tail() {
        run(async {
            let (disk, group, log) = sim_log(1000, cfg(Durability::Durable)).await;
            for i in 0..10 {
                log.append(&rec(i, 1)).await.unwrap();
            }
            // Not durable: buffered and written only.
            let lazy = cfg(Durability::KAFKA_DEFAULT);
            drop(log);
            let log = reopen(&group, lazy).await;
            for i in 10..20 {
                log.append(&rec(i, 1)).await.unwrap();
            }
            drop(log);
            let mut seed = 99u64;
            disk.crash(&mut |n| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n.max(1)
            });
            let log = SegmentedLog::open_with(
                CommitGroup::new(disk.clone()),
                LOG_DIR,
                cfg(Durability::Durable),
            )
            .await
            .unwrap();
            let end = log.log_end_offset();
            assert!((10..=20).contains(&end), "end {end}");
            let all = read_all(&log).await;
            assert_eq!(all.len() as u64, end);
            // The log keeps working after recovery.
            let info = log.append(&rec(end, 1)).await.unwrap();
            assert_eq!(info.base_offset, end);
        });
    }

    fn direct_cfg(durability: Durability) -> LogConfig {
        LogConfig {
            segment_bytes: 6000,
            direct_io: true,
            direct_write_bytes: 4096,
            direct_write_depth: 3,
            ..cfg(durability)
        }
    }

    fn assert_values(all: &[(u64, Vec<u8>)], n: u64) {
        assert_eq!(all.len() as u64, n);
        for (i, (o, v)) in all.iter().enumerate() {
            assert_eq!(*o, i as u64);
            assert_eq!(v, format!("value-{i}").as_bytes());
        }
    }

    #[test]
    fn direct_writes_are_whole_blocks_and_rolled_or_closed_segments_end_at_their_last_batch() {
        run(async {
            let c = direct_cfg(Durability::KAFKA_DEFAULT);
            let (disk, group, log) = sim_log(1000, c.clone()).await;
            // Pipelined: several writes in flight, partial blocks carried from one to the next.
            for i in 0..300u64 {
                log.append_buffered(&rec(i, 1000), AppendOptions::default())
                    .unwrap();
            }
            log.wait_written(300).await.unwrap();
            // One at a time: each a short burst, written through the page cache; the next direct
            // write rewrites that block.
            for i in 300..340u64 {
                log.append(&rec(i, 1000)).await.unwrap();
            }
            assert!(disk.direct_write_count() > 0);
            let bases = log.segment_bases();
            assert!(bases.len() > 2, "{bases:?}");
            assert_values(&read_all(&log).await, 340);
            // Rolled segments end exactly at their last batch (their padding was cut).
            let seg_bytes = |b: u64| {
                disk.contents(&Path::new(LOG_DIR).join(segment_file_name(b, "log")))
                    .unwrap()
            };
            for w in bases.windows(2) {
                let data = seg_bytes(w[0]);
                let scan = scan_segment_bytes(w[0], &data);
                assert_eq!(scan.valid_len, data.len() as u64);
                assert_eq!(scan.end_offset, w[1]);
            }
            // The active segment may run past its last batch (padding, blocks allocated ahead)
            // until the log is closed.
            let last = *bases.last().unwrap();
            assert!(seg_bytes(last).len() as u64 >= log.shared.state.borrow().segments[&last].size);
            log.close().await.unwrap();
            let data = seg_bytes(last);
            let scan = scan_segment_bytes(last, &data);
            assert_eq!(scan.valid_len, data.len() as u64);
            assert_eq!(scan.end_offset, 340);
            // Reopened: the partial last block is read back and rewritten by the next append.
            drop(log);
            let log = reopen(&group, c.clone()).await;
            for i in 340..350u64 {
                log.append(&rec(i, 1000)).await.unwrap();
            }
            log.flush().await.unwrap();
            assert_values(&read_all(&log).await, 350);
            // Truncation, then appends over the cut block.
            assert_eq!(log.truncate_to(345).await.unwrap(), 345);
            for i in 345..350u64 {
                log.append(&rec(i, 1000)).await.unwrap();
            }
            log.close().await.unwrap();
            drop(log);
            let log = reopen(&group, c).await;
            assert_values(&read_all(&log).await, 350);
        });
    }

    #[test]
    fn direct_io_falls_back_to_buffered_writes_when_refused() {
        run(async {
            let disk = SimDisk::new(1000);
            disk.set_refuse_direct(true);
            let group = CommitGroup::new(disk.clone());
            let c = direct_cfg(Durability::Durable);
            let log = SegmentedLog::open_with(group.clone(), LOG_DIR, c.clone())
                .await
                .unwrap();
            for i in 0..100u64 {
                log.append(&rec(i, 1000)).await.unwrap();
            }
            assert_eq!(disk.direct_write_count(), 0);
            assert_values(&read_all(&log).await, 100);
            // Allowed again: new segments are written directly, after the buffered ones.
            disk.set_refuse_direct(false);
            for i in 100..200u64 {
                log.append_buffered(&rec(i, 1000), AppendOptions::default())
                    .unwrap();
            }
            log.flush().await.unwrap();
            assert!(disk.direct_write_count() > 0);
            log.close().await.unwrap();
            drop(log);
            let log = reopen(&group, c).await;
            assert_values(&read_all(&log).await, 200);
        });
    }

    #[test]
    fn direct_writes_refused_after_open_fall_back_to_buffered_writes() {
        run(async {
            let c = direct_cfg(Durability::KAFKA_DEFAULT);
            let (disk, group, log) = sim_log(1000, c.clone()).await;
            for i in 0..100u64 {
                log.append_buffered(&rec(i, 1000), AppendOptions::default())
                    .unwrap();
            }
            log.wait_written(100).await.unwrap();
            assert!(
                disk.direct_write_count() > 0,
                "{:?} {:?}",
                log.segment_bases(),
                log.size_bytes()
            );
            disk.set_fail_direct_writes(true);
            for i in 100..300u64 {
                log.append_buffered(&rec(i, 1000), AppendOptions::default())
                    .unwrap();
            }
            log.flush().await.unwrap();
            assert_eq!(log.failure(), None);
            assert_values(&read_all(&log).await, 300);
            log.close().await.unwrap();
            drop(log);
            let log = reopen(&group, c).await;
            assert_values(&read_all(&log).await, 300);
        });
    }

    #[test]
    fn direct_crash_keeps_durable_appends_and_cuts_padding_and_torn_tails() {
        for seed in 1..40u64 {
            run(async move {
                let c = direct_cfg(Durability::Durable);
                let (disk, _group, log) = sim_log(1000, c.clone()).await;
                for i in 0..30u64 {
                    log.append(&rec(i, 1)).await.unwrap();
                }
                // Written (rewriting the durable partial block), not synced.
                let lazy = LogConfig {
                    durability: Durability::KAFKA_DEFAULT,
                    ..c.clone()
                };
                log.set_config(lazy).unwrap();
                for i in 30..60u64 {
                    log.append(&rec(i, 1)).await.unwrap();
                }
                drop(log);
                let mut s = seed;
                disk.crash(&mut |n| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 33) % n.max(1)
                });
                let log = SegmentedLog::open_with(CommitGroup::new(disk.clone()), LOG_DIR, c)
                    .await
                    .unwrap();
                let end = log.log_end_offset();
                assert!((30..=60).contains(&end), "seed {seed}: end {end}");
                assert_values(&read_all(&log).await, end);
                let info = log.append(&rec(end, 1)).await.unwrap();
                assert_eq!(info.base_offset, end);
                assert_values(&read_all(&log).await, end + 1);
            });
        }
    }

    #[test]
    fn logs_of_a_group_share_the_tail_cache_budget() {
        run(async {
            let disk = SimDisk::new(1000);
            let group = CommitGroup::new(disk.clone());
            let limit = 64 << 10;
            group.set_tail_cache_budget(limit);
            let c = LogConfig {
                segment_bytes: 1 << 20,
                ..cfg(Durability::KAFKA_DEFAULT)
            };
            let mut logs = Vec::new();
            for t in 0..8 {
                let dir = format!("/d/t-{t}");
                logs.push(
                    SegmentedLog::open_with(group.clone(), dir, c.clone())
                        .await
                        .unwrap(),
                );
            }
            let value = vec![1u8; 4000];
            for round in 0..40i64 {
                for log in &logs {
                    let b = batch::single_record(None, Some(&value), round).unwrap();
                    log.append(&b).await.unwrap();
                }
            }
            // Without the budget the caches would hold 8 x 40 runs of about 4 KiB.
            let held = group.tail_cache_budget().held();
            let per_log: usize = logs.iter().map(|l| l.tail_cache_stats().bytes).sum();
            assert_eq!(held, per_log);
            let largest_run = logs
                .iter()
                .map(|l| l.tail_cache_stats().bytes / l.tail_cache_stats().runs.max(1))
                .max()
                .unwrap();
            assert!(held <= limit + 8 * largest_run, "held {held}");
            // Every log still reads whole: the newest runs from the cache, the rest from the file.
            for log in &logs {
                let mut at = 0;
                while at < 40 {
                    let r = log.read(at, 1 << 20).await.unwrap();
                    assert!(!r.records.is_empty());
                    at = r.next_offset;
                }
            }
        });
    }

    #[test]
    fn failed_fsync_is_fatal_and_never_retried() {
        let ((), reasons) = crate::fatal::capture(|| {
            run(async {
                let (disk, _group, log) = sim_log(1000, cfg(Durability::Durable)).await;
                log.append(&rec(0, 1)).await.unwrap();
                disk.set_fail_syncs(true);
                let e = log.append(&rec(1, 1)).await.unwrap_err();
                assert!(matches!(e, LogError::Failed { .. }), "{e}");
                disk.set_fail_syncs(false);
                // Not retried: the disk works again, the log still refuses.
                let e = log.append(&rec(2, 1)).await.unwrap_err();
                assert!(e.to_string().contains("fdatasync"), "{e}");
                assert!(log.failure().is_some());
                assert_eq!(log.durable_offset(), 1);
            })
        });
        // Outside a capture this exits the process; the reason names the file and the errno.
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("fdatasync "), "{reasons:?}");
        assert!(
            reasons[0].contains("00000000000000000000.log"),
            "{reasons:?}"
        );
        assert!(reasons[0].contains("EIO"), "{reasons:?}");
    }

    #[test]
    fn truncate_retention_and_delete_records() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.retention_ms = Some(5_000);
            let (disk, group, log) = sim_log(10_000, c.clone()).await;
            for i in 0..40 {
                log.append(&rec(i, 10_000 + i as i64 * 100)).await.unwrap();
            }
            assert_eq!(log.truncate_to(35).await.unwrap(), 35);
            assert_eq!(log.log_end_offset(), 35);
            assert_eq!(read_all(&log).await.len(), 35);
            assert_eq!(log.append(&rec(35, 20_000)).await.unwrap().base_offset, 35);
            let segs = log.segment_bases();
            assert!(segs.len() >= 3, "{segs:?}");
            // Time retention: the segments before the last two are old.
            let newest_old = read_all(&log).await.len() as i64; // keeps the borrow checker simple
            let _ = newest_old;
            disk.set_now_ms(10_000 + 100 * (segs[2] as i64 - 1) + 5_001);
            let out = log.apply_retention().await.unwrap();
            assert_eq!(out.deleted_segments, segs[..2].to_vec());
            assert_eq!(out.log_start_offset, segs[2]);
            assert!(matches!(
                log.read(0, 100).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            let out = log.delete_records(34).await.unwrap();
            assert_eq!(out.log_start_offset, 34);
            assert_eq!(log.read(34, 10).await.unwrap().next_offset, 35);
            drop(log);
            let log = reopen(&group, c).await;
            assert_eq!(log.log_start_offset(), out.log_start_offset);
            assert_eq!(log.log_end_offset(), 36);
            assert_eq!(log.truncate_to(0).await.unwrap(), 0);
            assert_eq!(log.log_end_offset(), 0);
            assert_eq!(log.append(&rec(0, 1)).await.unwrap().base_offset, 0);
        });
    }

    #[test]
    fn deleted_segments_are_closed_before_they_are_unlinked() {
        // The last close of an unlinked file frees its cached pages in the closing thread: the
        // shard closes deleted segments first, so the unlink (on the blocking pool) is last.
        run(async {
            let mut c = cfg(Durability::Durable);
            c.retention_ms = Some(5_000);
            let (disk, _group, log) = sim_log(10_000, c).await;
            for i in 0..40 {
                log.append(&rec(i, 10_000 + i as i64 * 100)).await.unwrap();
            }
            // Reads leave nothing open behind them either.
            assert_eq!(read_all(&log).await.len(), 40);
            let segs = log.segment_bases();
            assert!(segs.len() >= 4, "{segs:?}");
            disk.set_now_ms(10_000 + 100 * (segs[2] as i64 - 1) + 5_001);
            let out = log.apply_retention().await.unwrap();
            assert_eq!(out.deleted_segments, segs[..2].to_vec());
            let out = log.delete_records(segs[3]).await.unwrap();
            assert_eq!(out.deleted_segments, vec![segs[2]]);
            for b in &segs[..3] {
                let p = log.dir().join(format!("{b:020}.log"));
                assert!(disk.contents(&p).is_none(), "{} still exists", p.display());
            }
            assert_eq!(disk.unlinked_while_open(), 0);
        });
    }

    #[test]
    fn bytes_written_before_an_exclusive_operation_still_become_durable() {
        // A write completes just before a truncation, retention or delete_records pass takes the
        // log, and the syncer's pass runs while the log is exclusive (it skips busy logs). Nothing
        // else wakes the syncer afterwards unless the end of the exclusive operation does.
        run(async {
            let (_disk, _group, log) = sim_log(1000, cfg(Durability::KAFKA_DEFAULT)).await;
            for i in 0..5u64 {
                let info = log
                    .append_buffered(&rec(i, 1000), AppendOptions::default())
                    .unwrap();
                // Written, and the syncer has looked (nothing due under this policy).
                log.wait_written(info.last_offset + 1).await.unwrap();
                // The appender waits (asking for a sync) before the exclusive operation starts.
                let waiter = crate::rt::timeout(
                    std::time::Duration::from_secs(10),
                    log.wait_durable(info.last_offset + 1),
                );
                let exclusive = async {
                    let guard = log.begin_exclusive().await.unwrap();
                    crate::rt::sleep(std::time::Duration::from_millis(20)).await;
                    drop(guard);
                };
                let (durable, ()) = futures_util::join!(waiter, exclusive);
                assert!(
                    matches!(durable, Ok(Ok(()))),
                    "append {i} never became durable"
                );
            }
        });
    }

    #[test]
    fn segment_ms_rolls_by_batch_timestamp() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 1 << 20;
            c.segment_ms = Some(1_000);
            let (_disk, _group, log) = sim_log(1_000, c).await;
            log.append(&rec(0, 5_000)).await.unwrap();
            log.append(&rec(1, 5_900)).await.unwrap();
            assert_eq!(log.segment_bases(), vec![0]);
            // More than segment.ms after the segment's first batch: roll.
            log.append(&rec(2, 6_001)).await.unwrap();
            assert_eq!(log.segment_bases(), vec![0, 2]);
        });
    }

    #[test]
    fn interval_policy_syncs_after_messages_or_ms() {
        run(async {
            let c = cfg(Durability::Interval {
                messages: 3,
                ms: 50,
            });
            let (disk, _group, log) = sim_log(1_000, c).await;
            log.append(&rec(0, 1)).await.unwrap();
            log.append(&rec(1, 1)).await.unwrap();
            crate::rt::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(log.durable_offset(), 0, "below both thresholds");
            log.append(&rec(2, 1)).await.unwrap();
            for _ in 0..100 {
                if log.durable_offset() == 3 {
                    break;
                }
                crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert_eq!(log.durable_offset(), 3, "messages threshold");
            log.append(&rec(3, 1)).await.unwrap();
            disk.advance_ms(51);
            for _ in 0..100 {
                if log.durable_offset() == 4 {
                    break;
                }
                crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert_eq!(log.durable_offset(), 4, "ms threshold");
        });
    }

    #[test]
    fn shard_group_restarts_its_tasks_on_a_new_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let c = || LogConfig {
            durability: Durability::Durable,
            ..Default::default()
        };
        let d = dir.clone();
        crate::rt::block_on(async move {
            let log = SegmentedLog::open(&d, c()).await.unwrap();
            log.append(&rec(0, 1)).await.unwrap();
        })
        .unwrap();
        // Same thread, same thread-local group, a new runtime: appends must still complete.
        crate::rt::block_on(async move {
            let log = SegmentedLog::open(&dir, c()).await.unwrap();
            assert_eq!(log.append(&rec(1, 1)).await.unwrap().base_offset, 1);
            crate::commit::CommitGroup::close_current().await;
        })
        .unwrap();
    }

    #[test]
    fn read_returns_a_whole_first_batch_larger_than_max_bytes() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 1 << 20;
            let (_disk, _group, log) = sim_log(1_000, c).await;
            let big = batch::single_record(None, Some(&[7u8; 20_000]), 1).unwrap();
            log.append(&rec(0, 1)).await.unwrap();
            log.append(&big).await.unwrap();
            log.append(&rec(2, 1)).await.unwrap();
            let r = log.read(1, 100).await.unwrap();
            assert_eq!(r.records.len(), big.len());
            assert_eq!(r.next_offset, 2);
            let v = BatchView::parse(&r.records).unwrap();
            assert_eq!(v.base_offset(), 1);
            // Reading past the end is empty; beyond it is out of range.
            assert!(log.read(3, 100).await.unwrap().records.is_empty());
            assert!(matches!(
                log.read(4, 100).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            // A corrupt batch is refused on append, and nothing is assigned.
            let mut bad = rec(3, 1);
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(matches!(
                log.append(&bad).await,
                Err(LogError::InvalidBatch(_))
            ));
            assert_eq!(log.log_end_offset(), 3);
        });
    }

    #[test]
    fn concurrent_appenders_share_syncs() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 1 << 20;
            let (_disk, group, log) = sim_log(1000, c).await;
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let log = log.clone();
                    crate::rt::spawn(async move { log.append(&rec(i, 1)).await.unwrap() })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(log.durable_offset(), 64);
            assert!(group.sync_passes() < 10, "passes {}", group.sync_passes());
        });
    }

    /// A batch of records with the given timestamps.
    fn batch_with_ts(tss: &[i64]) -> Vec<u8> {
        let mut b = batch::BatchBuilder::new();
        for (i, &ts) in tss.iter().enumerate() {
            b.push(batch::Record {
                value: Some(format!("v{i}-{ts}").as_bytes()),
                timestamp: ts,
                ..Default::default()
            })
            .unwrap();
        }
        b.finish().unwrap()
    }

    /// Sets attribute bits (compression codec, LogAppendTime) and recomputes the CRC.
    fn with_attributes(mut b: Vec<u8>, bits: u8) -> Vec<u8> {
        b[22] |= bits;
        let crc = crc32c::crc32c(&b[batch::CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn set_config_applies_segment_size_at_the_next_roll_and_retention_at_the_next_pass() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 1 << 20;
            c.retention_ms = None;
            let (disk, _group, log) = sim_log(1_000_000, c.clone()).await;
            for i in 0..10 {
                log.append(&rec(i, 1_000_000)).await.unwrap();
            }
            assert_eq!(log.segment_bases(), vec![0]);
            // Invalid settings are refused and change nothing.
            let mut bad = c.clone();
            bad.segment_bytes = 10;
            assert!(matches!(log.set_config(bad), Err(LogError::Config(_))));
            assert_eq!(log.config().segment_bytes, 1 << 20);
            // A smaller segment size rolls at the next append.
            let one = rec(10, 1_000_000).len() as u64;
            c.segment_bytes = 2 * one;
            log.set_config(c.clone()).unwrap();
            for i in 10..16 {
                log.append(&rec(i, 1_000_000)).await.unwrap();
            }
            assert_eq!(log.segment_bases(), vec![0, 10, 12, 14]);
            // Retention by time applies at the next apply_retention.
            disk.advance_ms(10_000);
            assert!(
                log.apply_retention()
                    .await
                    .unwrap()
                    .deleted_segments
                    .is_empty()
            );
            c.retention_ms = Some(5_000);
            log.set_config(c.clone()).unwrap();
            let out = log.apply_retention().await.unwrap();
            assert_eq!(out.deleted_segments, vec![0, 10, 12]);
            assert_eq!(log.log_start_offset(), 14);
            // Switching the flush policy to `Durable` takes effect for the next append.
            c.durability = Durability::KAFKA_DEFAULT;
            log.set_config(c.clone()).unwrap();
            log.append(&rec(16, 1_000_000)).await.unwrap();
            c.durability = Durability::Durable;
            log.set_config(c).unwrap();
            log.append(&rec(17, 1_000_000)).await.unwrap();
            assert_eq!(log.durable_offset(), 18);
        });
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_record_at_or_after() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 600;
            c.index_interval_bytes = 50;
            c.segment_ms = None;
            let (_disk, group, log) = sim_log(1_000, c.clone()).await;
            assert_eq!(log.offset_for_timestamp(0).await.unwrap(), None);
            assert_eq!(log.max_timestamp().await.unwrap(), None);
            // Timestamps that mostly grow, with some going back, several records per batch.
            let mut model: Vec<i64> = Vec::new();
            let mut rng = 12345u64;
            for b in 0..60 {
                let n = 1 + (b % 4) as usize;
                let tss: Vec<i64> = (0..n)
                    .map(|_| {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                        100 * b + ((rng >> 33) % 250) as i64
                    })
                    .collect();
                model.extend(&tss);
                log.append(&batch_with_ts(&tss)).await.unwrap();
            }
            assert!(log.segment_bases().len() > 5);
            let check = |model: &[i64], start: u64, ts: i64| -> Option<(u64, i64)> {
                model
                    .iter()
                    .enumerate()
                    .skip(start as usize)
                    .find(|(_, t)| **t >= ts)
                    .map(|(o, t)| (o as u64, *t))
            };
            let max = *model.iter().max().unwrap();
            for ts in (-5..max + 5).step_by(7) {
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    check(&model, 0, ts),
                    "ts {ts}"
                );
            }
            let first_max = model.iter().position(|t| *t == max).unwrap() as u64;
            assert_eq!(log.max_timestamp().await.unwrap(), Some((max, first_max)));
            // The same answers after reopening (indexes loaded or rebuilt from the files).
            drop(log);
            let log = reopen(&group, c).await;
            for ts in (-5..max + 5).step_by(11) {
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    check(&model, 0, ts),
                    "ts {ts} after reopen"
                );
            }
            assert_eq!(log.max_timestamp().await.unwrap(), Some((max, first_max)));
            // Nothing below the log start is returned.
            log.delete_records(40).await.unwrap();
            for ts in (-5..max + 5).step_by(13) {
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    check(&model, 40, ts),
                    "ts {ts} after delete_records"
                );
            }
        });
    }

    #[test]
    fn offset_for_timestamp_answers_compressed_and_log_append_time_batches_with_the_batch() {
        run(async {
            let (_disk, _group, log) = sim_log(1_000, cfg(Durability::Durable)).await;
            log.append(&batch_with_ts(&[10, 20])).await.unwrap(); // offsets 0-1
            // "gzip" (codec 1): framing and CRC valid; the records are not decoded.
            log.append(&with_attributes(batch_with_ts(&[30, 40, 50]), 0x01))
                .await
                .unwrap(); // 2-4
            // LogAppendTime: every record has the batch's max timestamp.
            log.append(&with_attributes(batch_with_ts(&[60, 70]), 0x08))
                .await
                .unwrap(); // 5-6
            assert_eq!(log.offset_for_timestamp(15).await.unwrap(), Some((1, 20)));
            assert_eq!(log.offset_for_timestamp(45).await.unwrap(), Some((2, 50)));
            assert_eq!(log.offset_for_timestamp(61).await.unwrap(), Some((5, 70)));
            assert_eq!(log.offset_for_timestamp(71).await.unwrap(), None);
            assert_eq!(log.max_timestamp().await.unwrap(), Some((70, 5)));
        });
    }

    #[test]
    fn interval_logs_start_write_back_without_claiming_durability() {
        run(async {
            let mut c = cfg(Durability::KAFKA_DEFAULT);
            c.segment_bytes = 64 << 20;
            c.index_interval_bytes = 4096;
            let (disk, _group, log) = sim_log(1_000, c).await;
            let big = batch::single_record(None, Some(&[3u8; 60_000]), 1).unwrap();
            let n = (3 * WRITE_BEHIND_BYTES) / big.len() as u64;
            for _ in 0..n {
                log.append(&big).await.unwrap();
            }
            // Let the detached write-back tasks run.
            crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            assert!(disk.writeback_count() >= 2, "{}", disk.writeback_count());
            assert_eq!(log.written_offset(), n);
            assert_eq!(log.durable_offset(), 0, "write-back is not a sync");
            // A crash now may lose anything after the last sync: write-back promised nothing.
            log.flush().await.unwrap();
            assert_eq!(log.durable_offset(), n);
        });
    }

    #[test]
    fn writer_reserves_blocks_ahead_in_proportion_to_the_segment() {
        run(async {
            let mut c = cfg(Durability::KAFKA_DEFAULT);
            c.segment_bytes = 64 << 20;
            c.reserve_ahead_bytes = 1 << 20;
            let (disk, _group, log) = sim_log(1_000, c.clone()).await;
            let big = batch::single_record(None, Some(&[3u8; 60_000]), 1).unwrap();
            log.append(&big).await.unwrap();
            // One batch written: reserved as far ahead as the segment is long.
            let first = disk.preallocated_bytes();
            assert_eq!(first, big.len() as u64 * 2);
            for _ in 0..40 {
                log.append(&big).await.unwrap();
            }
            // 2.4 MB written: reserved in steps of at most 1 MiB ahead, never far beyond.
            let reserved = disk.preallocated_bytes();
            let written = 41 * big.len() as u64;
            assert!(reserved >= written && reserved <= written + (1 << 20) + big.len() as u64);
            // Off: nothing reserved.
            let mut off = c;
            off.reserve_ahead_bytes = 0;
            let (disk, _group, log) = sim_log(1_000, off).await;
            log.append(&big).await.unwrap();
            assert_eq!(disk.preallocated_bytes(), 0);
        });
    }

    #[test]
    fn zero_fill_writes_zeros_ahead_and_cuts_them_at_roll_close_and_recovery() {
        run(async {
            let mut c = cfg(Durability::Durable);
            c.segment_bytes = 300_000;
            c.reserve_ahead_bytes = 100_000;
            c.zero_fill = true;
            let (disk, group, log) = sim_log(1_000, c.clone()).await;
            let big = batch::single_record(None, Some(&[3u8; 20_000]), 1).unwrap();
            let seg_bytes = |b: u64| {
                disk.contents(&Path::new(LOG_DIR).join(segment_file_name(b, "log")))
                    .unwrap()
            };
            for _ in 0..8 {
                log.append(&big).await.unwrap();
            }
            // The active segment's file runs ahead of its batches, over zeros.
            let size = 8 * big.len() as u64;
            let data = seg_bytes(0);
            assert!(data.len() as u64 > size + 50_000, "{} {size}", data.len());
            assert!(data.len() as u64 <= size + 100_000 + big.len() as u64);
            assert!(data[size as usize..].iter().all(|&b| b == 0));
            assert!(disk.zero_filled_bytes() >= data.len() as u64 - size);
            // Past the segment size: rolled, and the old segment ends exactly at its last batch.
            for _ in 0..20 {
                log.append(&big).await.unwrap();
            }
            let bases = log.segment_bases();
            assert!(bases.len() >= 2, "{bases:?}");
            for w in bases.windows(2) {
                let data = seg_bytes(w[0]);
                let scan = scan_segment_bytes(w[0], &data);
                assert_eq!(scan.valid_len, data.len() as u64);
                assert_eq!(scan.end_offset, w[1]);
            }
            let last = *bases.last().unwrap();
            // A crash keeps the synced zeros: recovery cuts them and loses no batch.
            log.flush().await.unwrap();
            assert!(seg_bytes(last).len() as u64 > log.shared.state.borrow().segments[&last].size);
            drop(log);
            disk.crash(&mut |n| n / 2);
            let log = reopen(&group, c.clone()).await;
            assert_eq!(log.log_end_offset(), 28);
            let data = seg_bytes(last);
            assert_eq!(scan_segment_bytes(last, &data).valid_len, data.len() as u64);
            // Writing again zero-fills again; close cuts the zeros.
            log.append(&big).await.unwrap();
            let last = *log.segment_bases().last().unwrap();
            assert!(seg_bytes(last).len() as u64 > log.shared.state.borrow().segments[&last].size);
            log.close().await.unwrap();
            for b in log.segment_bases() {
                let data = seg_bytes(b);
                assert_eq!(scan_segment_bytes(b, &data).valid_len, data.len() as u64);
            }
            assert_eq!(read_all(&log).await.len(), 29);
        });
    }

    #[test]
    fn a_dropped_log_is_not_kept_open_by_the_idle_syncer() {
        run(async {
            let (_disk, group, log) = sim_log(1_000, cfg(Durability::Durable)).await;
            log.append(&rec(0, 1_000)).await.unwrap();
            // The syncer has gone idle, waiting for the next request.
            crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(group.live_logs(), 1);
            drop(log);
            crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            // Closed now, not at the syncer's next wake-up (inside some other log's flush).
            assert_eq!(group.live_logs(), 0);
        });
    }

    #[test]
    fn close_completes_the_active_segments_indexes() {
        run(async {
            let mut c = cfg(Durability::KAFKA_DEFAULT);
            c.segment_bytes = 1 << 20;
            c.index_interval_bytes = 10;
            let (disk, _group, log) = sim_log(1_000, c).await;
            for i in 0..20 {
                log.append(&rec(i, 1_000 + i as i64)).await.unwrap();
            }
            let ip = log.dir().join(segment_file_name(0, "index"));
            let tp = log.dir().join(segment_file_name(0, "timeindex"));
            // Fewer than INDEX_WRITE_ENTRIES entries: none written yet.
            assert_eq!(disk.contents(&ip).unwrap().len(), 0);
            log.close().await.unwrap();
            let idx = parse_index(&disk.contents(&ip).unwrap()).unwrap();
            assert_eq!(idx.len(), 19, "one entry before every batch but the first");
            let tim = parse_time_index(&disk.contents(&tp).unwrap()).unwrap();
            assert_eq!(
                tim.last(),
                Some(&(1_019, 19)),
                "final entry: the segment's max"
            );
            assert_eq!(log.durable_offset(), 20);
            // Still usable, and a crash now keeps everything.
            log.append(&rec(20, 2_000)).await.unwrap();
            log.flush().await.unwrap();
            disk.crash(&mut |n| n.saturating_sub(1));
        });
    }
}
