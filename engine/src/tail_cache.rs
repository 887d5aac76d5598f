//! The tail cache of a log: the most recently written runs of whole batches, held as shared
//! [`Bytes`], so that a read at the tail of a log (a consumer or follower keeping up with the
//! producers) is answered by slicing memory, with no system call and no copy.
//!
//! # How it is filled and emptied
//!
//! 1. The writer task writes a run of pending batches (see [`crate::commit`]); when that write
//!    completes, the run's buffer itself (the one the appender copied the batches into) becomes a
//!    cached run: no copy is made to fill the cache. A run holds whole batches of one segment.
//! 2. Runs are kept in offset order; the oldest are evicted first once the cached bytes (buffer
//!    capacities, i.e. the memory really held) exceed the log's `tail_cache_bytes`. A run larger
//!    than the limit is not cached. A limit of 0 disables the cache.
//! 3. A read whose offset falls in a cached run is answered from the cache: the same whole batches
//!    a read of the segment file returns (the batch holding the offset first; more whole batches
//!    of the same segment while they fit in `max_bytes`). When the answer lies within one run it is
//!    a slice of that run's buffer; when it spans runs, the runs' slices are joined into one
//!    buffer (one copy per read, as the kernel's copy of a file read would be).
//! 4. Truncation empties the cache; deleting segments (retention, delete-records) drops their
//!    runs; a reopened log starts empty. A reader holding a returned buffer keeps it valid
//!    however the cache changes afterwards (it shares the buffer).
//!
//! Memory held is therefore at most `tail_cache_bytes` per log, plus buffers still held by
//! readers.
//!
//! # Shard budget
//!
//! The logs of a shard also share a [`TailCacheBudget`] (one per commit group, default
//! [`SHARD_TAIL_CACHE_BYTES`], see `CommitGroup::set_tail_cache_budget`): the bytes every cache of
//! the shard holds. When a log inserts a run and the shard is over budget, that log evicts its
//! own oldest runs (keeping its newest one) until the shard is within budget or nothing older is
//! left. A log that stopped receiving writes keeps what it holds until it is written, truncated or
//! closed, so the shard holds at most about the budget plus one run per written log.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

/// One written run of whole batches of one segment.
#[derive(Debug)]
struct Run {
    segment: u64,
    /// Byte position of the run in the segment's `.log` file.
    pos: u64,
    /// Base offset of the first batch.
    base_offset: u64,
    /// Offset after the last batch.
    end_offset: u64,
    data: Bytes,
    /// Memory held by `data`'s buffer (its capacity).
    held: usize,
}

/// Hit and miss counts and memory held, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailCacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the segment file.
    pub misses: u64,
    /// Bytes held by cached runs.
    pub bytes: usize,
    /// Cached runs.
    pub runs: usize,
}

/// Default shard budget of the tail caches: 256 MiB (64 logs with full 4 MiB caches).
pub const SHARD_TAIL_CACHE_BYTES: usize = 256 << 20;

/// Bytes held by the tail caches of one shard and their limit (see the module docs).
#[derive(Debug)]
pub struct TailCacheBudget {
    limit: Cell<usize>,
    held: Cell<usize>,
}

impl Default for TailCacheBudget {
    fn default() -> Self {
        TailCacheBudget {
            limit: Cell::new(SHARD_TAIL_CACHE_BYTES),
            held: Cell::new(0),
        }
    }
}

impl TailCacheBudget {
    pub fn limit(&self) -> usize {
        self.limit.get()
    }
    pub fn set_limit(&self, bytes: usize) {
        self.limit.set(bytes);
    }
    /// Bytes held by every cache sharing this budget.
    pub fn held(&self) -> usize {
        self.held.get()
    }
}

/// A log's tail cache (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    runs: VecDeque<Run>,
    held: usize,
    budget: Option<Rc<TailCacheBudget>>,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.set_held(0);
    }
}

/// `(last_offset, size)` of the batch starting at `h`, from its header fields.
fn batch_bounds(h: &[u8]) -> Option<(u64, usize)> {
    let (base, len) = crate::batch::peek_offset_and_length(h)?;
    let delta = i32::from_be_bytes(h.get(23..27)?.try_into().ok()?);
    if base < 0 || delta < 0 || len < 0 {
        return None;
    }
    let size = crate::batch::LOG_OVERHEAD + len.unsigned_abs() as usize;
    (size <= h.len()).then_some((base as u64 + u64::from(delta.unsigned_abs()), size))
}

impl TailCache {
    /// Shares `budget` with the other caches of the shard (counting what this one holds).
    pub(crate) fn set_budget(&mut self, budget: Rc<TailCacheBudget>) {
        let held = self.held;
        self.set_held(0);
        self.budget = Some(budget);
        self.set_held(held);
    }

    /// Updates the bytes held, here and in the shard budget.
    fn set_held(&mut self, held: usize) {
        if let Some(b) = &self.budget {
            b.held
                .set(b.held.get().saturating_sub(self.held).saturating_add(held));
        }
        self.held = held;
    }

    pub(crate) fn stats(&self) -> TailCacheStats {
        TailCacheStats {
            hits: self.hits,
            misses: self.misses,
            bytes: self.held,
            runs: self.runs.len(),
        }
    }

    /// Adds a just-written run (whole batches `base_offset..end_offset` at `pos` of `segment`),
    /// then evicts the oldest runs beyond `limit` bytes. Gives back a buffer for reuse: this one
    /// when it is not cached (disabled, or larger than the limit), else an evicted run's buffer
    /// that no reader holds any more (emptied), if any.
    pub(crate) fn insert(
        &mut self,
        segment: u64,
        pos: u64,
        base_offset: u64,
        end_offset: u64,
        data: Vec<u8>,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let held = data.capacity();
        if limit == 0 || held > limit || data.is_empty() || end_offset <= base_offset {
            return Some(data);
        }
        // Runs are written in offset order; anything else (a run written after a truncation
        // emptied the cache is fine) means the cache no longer describes the log's tail.
        if self
            .runs
            .back()
            .is_some_and(|r| r.end_offset != base_offset)
        {
            self.clear();
        }
        self.runs.push_back(Run {
            segment,
            pos,
            base_offset,
            end_offset,
            data: Bytes::from(data),
            held,
        });
        self.set_held(self.held + held);
        let reclaimed = self.evict_to(limit);
        // Over the shard's budget: this log gives back its own oldest runs, keeping the newest.
        let mut over = self
            .budget
            .as_ref()
            .is_some_and(|b| b.held.get() > b.limit.get());
        while over && self.runs.len() > 1 {
            let Some(r) = self.runs.pop_front() else {
                break;
            };
            self.set_held(self.held - r.held);
            over = self
                .budget
                .as_ref()
                .is_some_and(|b| b.held.get() > b.limit.get());
        }
        reclaimed
    }

    /// Evicts the oldest runs until at most `limit` bytes are held; returns the buffer of one of
    /// them (emptied) when no reader shares it any more.
    pub(crate) fn evict_to(&mut self, limit: usize) -> Option<Vec<u8>> {
        let mut reclaimed = None;
        while self.held > limit {
            let Some(r) = self.runs.pop_front() else {
                break;
            };
            self.set_held(self.held - r.held);
            if reclaimed.is_none()
                && let Ok(mut b) = r.data.try_into_mut()
            {
                b.clear();
                reclaimed = Some(Vec::from(b));
            }
        }
        reclaimed
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.set_held(0);
    }

    /// Drops every run of the given segments (deleted by retention or delete-records).
    pub(crate) fn drop_segments(&mut self, segments: &[u64]) {
        self.runs.retain(|r| !segments.contains(&r.segment));
        let held = self.runs.iter().map(|r| r.held).sum();
        self.set_held(held);
    }

    /// Whole batches from the batch holding `offset`, as a read of the segment file returns
    /// them, or `None` when `offset` is not in the cache. Returns the bytes, the offset after
    /// the last returned batch and the segment they belong to.
    pub(crate) fn read(&self, offset: u64, max_bytes: usize) -> Option<(Bytes, u64, u64)> {
        let i = self.runs.partition_point(|r| r.end_offset <= offset);
        let first = self.runs.get(i)?;
        if first.base_offset > offset {
            return None;
        }
        // The batch holding `offset` within the first run.
        let mut at = 0usize;
        loop {
            let (last, size) = batch_bounds(first.data.get(at..)?)?;
            if last >= offset {
                break;
            }
            at += size;
        }
        // Whole batches from there, across contiguous runs of the same segment.
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut next_offset = offset;
        let mut expect_pos = first.pos;
        'runs: for run in self.runs.range(i..) {
            if run.segment != first.segment || run.pos != expect_pos {
                break;
            }
            let start = at;
            while let Some((last, size)) = run.data.get(at..).and_then(batch_bounds) {
                if total > 0 && total + size > max_bytes {
                    if at > start {
                        pieces.push(run.data.slice(start..at));
                    }
                    break 'runs;
                }
                total += size;
                next_offset = last + 1;
                at += size;
            }
            if at > start {
                pieces.push(run.data.slice(start..at));
            }
            if at != run.data.len() {
                break;
            }
            expect_pos = run.pos + run.data.len() as u64;
            at = 0;
        }
        let bytes = match pieces.len() {
            0 => return None,
            1 => pieces.pop()?,
            _ => {
                let mut joined = BytesMut::with_capacity(total);
                for p in &pieces {
                    joined.extend_from_slice(p);
                }
                joined.freeze()
            }
        };
        Some((bytes, next_offset, first.segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Record};

    fn batch(base: i64, records: usize, value: usize) -> Vec<u8> {
        let v = vec![7u8; value];
        let mut b = BatchBuilder::new();
        for _ in 0..records {
            b.push(Record {
                value: Some(&v),
                timestamp: 1,
                ..Default::default()
            })
            .unwrap();
        }
        let mut out = b.finish().unwrap();
        crate::batch::stamp_base_offset(&mut out, base);
        out
    }

    /// Runs of `per_run` batches of 2 records each, starting at offset 0, position 0.
    fn fill(cache: &mut TailCache, runs: usize, per_run: usize, limit: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut off = 0u64;
        for _ in 0..runs {
            let (base, pos) = (off, all.len() as u64);
            let mut data = Vec::new();
            for _ in 0..per_run {
                data.extend(batch(off as i64, 2, 100));
                off += 2;
            }
            all.extend_from_slice(&data);
            data.shrink_to_fit();
            cache.insert(0, pos, base, off, data, limit);
        }
        all
    }

    #[test]
    fn reads_whole_batches_across_runs_and_within_max_bytes() {
        let mut c = TailCache::default();
        let all = fill(&mut c, 3, 4, 1 << 20);
        let size = all.len() / 12;
        // Offset 3 lies in the second batch; everything fits.
        let (b, next, seg) = c.read(3, 1 << 20).unwrap();
        assert_eq!((next, seg), (24, 0));
        assert_eq!(&b[..], &all[size..]);
        // Two and a half batches of room: two whole batches.
        let (b, next, _) = c.read(0, size * 5 / 2).unwrap();
        assert_eq!((b.len(), next), (2 * size, 4));
        // Less room than one batch: still the whole first batch.
        let (b, next, _) = c.read(9, 1).unwrap();
        assert_eq!((&b[..], next), (&all[4 * size..5 * size], 10));
        assert!(c.read(24, 100).is_none());
    }

    #[test]
    fn evicts_oldest_first_and_drops_on_truncate_and_segment_deletion() {
        let mut c = TailCache::default();
        let all = fill(&mut c, 1, 4, 1 << 20);
        let run = all.len();
        let mut c = TailCache::default();
        fill(&mut c, 5, 4, 2 * run);
        assert_eq!(c.stats().runs, 2);
        assert!(c.read(0, 1 << 20).is_none());
        assert!(c.read(23, 1 << 20).is_none());
        assert_eq!(c.read(24, 1 << 20).unwrap().1, 40);
        c.drop_segments(&[0]);
        assert_eq!(c.stats(), TailCacheStats::default());
        fill(&mut c, 2, 4, 2 * run);
        c.clear();
        assert!(c.read(0, 1 << 20).is_none());
        // Disabled, or larger than the limit: given back.
        assert!(c.insert(0, 0, 0, 1, vec![0; 10], 0).is_some());
        assert!(c.insert(0, 0, 0, 1, vec![0; 10], 5).is_some());
    }

    #[test]
    fn a_shard_budget_bounds_the_caches_sharing_it() {
        let mut one = TailCache::default();
        let run = fill(&mut one, 1, 4, 1 << 20).len();
        drop(one);
        let budget = Rc::new(TailCacheBudget::default());
        budget.set_limit(5 * run);
        let (mut a, mut b) = (TailCache::default(), TailCache::default());
        a.set_budget(budget.clone());
        b.set_budget(budget.clone());
        // Each log's own limit allows 4 runs; together they would hold 8.
        fill(&mut a, 4, 4, 4 * run);
        assert_eq!((a.stats().runs, budget.held()), (4, 4 * run));
        fill(&mut b, 4, 4, 4 * run);
        // b, inserting over budget, gave back its own oldest runs (keeping its newest).
        assert_eq!(a.stats().runs, 4);
        assert_eq!(b.stats().runs, 1);
        assert_eq!(budget.held(), 5 * run);
        // The newest run of b is still readable; a's oldest too.
        assert_eq!(b.read(24, 1 << 20).unwrap().1, 32);
        assert!(a.read(0, 1 << 20).is_some());
        // Writing to a now shrinks a, to within the budget.
        let pos = (4 * run) as u64;
        let mut data = Vec::new();
        for i in 0..4 {
            data.extend(batch(32 + 2 * i, 2, 100));
        }
        data.shrink_to_fit();
        a.insert(0, pos, 32, 40, data, 4 * run);
        assert!(budget.held() <= 5 * run, "{}", budget.held());
        // Clearing and dropping give the bytes back.
        a.clear();
        assert_eq!(budget.held(), b.stats().bytes);
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
