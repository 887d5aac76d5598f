//! Property tests of the segmented log against an in-memory model, on a simulated disk that loses
//! un-synced bytes and tears the last write on crash.
//!
//! Each generated case is a sequence of operations. A "process" lives between restarts: it runs on
//! its own runtime, so a crash also drops everything in flight (unwritten tail buffers, tasks).
//! Invariants checked after every restart:
//! 1. every offset acknowledged as durable before the crash is present, with the same bytes;
//! 2. everything the log returns is a valid, contiguous batch that was appended at that offset
//!    (nothing after a torn point is returned as valid);
//! 3. truncation and delete-records, once returned, survive the crash.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::path::Path;

use kiln_engine::batch;
use kiln_engine::commit::{CommitGroup, Durability};
use kiln_engine::disk::SimDisk;
use kiln_engine::log::{AppendOptions, LogConfig, SegmentedLog};
use kiln_engine::rt;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` single-record batches of `size` value bytes, waiting per the log's policy.
    Append {
        n: u8,
        size: u16,
    },
    /// Append one batch of `records` records.
    AppendMulti {
        records: u8,
    },
    /// Accept without waiting (lost on crash unless later written).
    AppendBuffered {
        size: u16,
    },
    Flush,
    Read {
        at: u16,
        max: u16,
    },
    Truncate {
        back: u8,
    },
    DeleteRecords {
        fwd: u8,
    },
    Restart,
    Crash {
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6, 0u16..400).prop_map(|(n, size)| Op::Append { n, size }),
        1 => (1u8..20).prop_map(|records| Op::AppendMulti { records }),
        2 => (0u16..300).prop_map(|size| Op::AppendBuffered { size }),
        1 => Just(Op::Flush),
        3 => (any::<u16>(), 1u16..2000).prop_map(|(at, max)| Op::Read { at, max }),
        1 => (0u8..8).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..8).prop_map(|fwd| Op::DeleteRecords { fwd }),
        1 => Just(Op::Restart),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
    ]
}

/// Value bytes for `offset` in generation `generation` (changes after each truncation).
fn value(offset: u64, generation: u32, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 12);
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&generation.to_be_bytes());
    v.extend((0..size).map(|i| (offset as usize * 31 + i * 7 + generation as usize) as u8));
    v
}

#[derive(Default, Debug)]
struct Model {
    /// Value of each record at its offset (index = offset).
    records: Vec<Vec<u8>>,
    log_start: u64,
    /// Offsets below were acknowledged durable.
    durable: u64,
    generation: u32,
}

/// Direct writes: off, or on with this largest write and depth.
#[derive(Debug, Clone, Copy)]
struct Direct {
    on: bool,
    /// Buffered writes with zeros written ahead ([`LogConfig::zero_fill`]).
    zero: bool,
    bytes: usize,
    depth: usize,
}

const BUFFERED: Direct = Direct {
    on: false,
    zero: false,
    bytes: 0,
    depth: 0,
};

const ZERO_FILL: Direct = Direct {
    zero: true,
    ..BUFFERED
};

fn direct() -> impl Strategy<Value = Direct> {
    (
        prop_oneof![Just(4096usize), Just(8192), Just(512 << 10)],
        1usize..5,
    )
        .prop_map(|(bytes, depth)| Direct {
            on: true,
            zero: false,
            bytes,
            depth,
        })
}

fn config(durable: bool, segment_bytes: u64, tail_cache_bytes: usize, d: Direct) -> LogConfig {
    let base = LogConfig::default();
    LogConfig {
        segment_bytes,
        tail_cache_bytes,
        direct_io: d.on,
        zero_fill: d.zero,
        // Small enough that zero filling runs many steps within the tiny segments.
        reserve_ahead_bytes: if d.zero {
            700
        } else {
            base.reserve_ahead_bytes
        },
        direct_write_bytes: if d.on {
            d.bytes
        } else {
            base.direct_write_bytes
        },
        direct_write_depth: if d.on {
            d.depth
        } else {
            base.direct_write_depth
        },
        index_interval_bytes: 200,
        durability: if durable {
            Durability::Durable
        } else {
            Durability::Interval {
                messages: 7,
                ms: u64::MAX,
            }
        },
        ..Default::default()
    }
}

/// Reads the whole log and checks it against the model; returns the log end offset seen.
async fn check_against_model(
    log: &SegmentedLog<SimDisk>,
    model: &Model,
) -> Result<(), TestCaseError> {
    let end = log.log_end_offset();
    prop_assert!(
        end <= model.records.len() as u64,
        "log end {} beyond model {}",
        end,
        model.records.len()
    );
    prop_assert_eq!(log.log_start_offset(), model.log_start);
    let mut at = log.log_start_offset();
    while at < end {
        let r = log
            .read(at, 700)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            !r.records.is_empty(),
            "empty read at {} below end {}",
            at,
            end
        );
        let mut first = true;
        for b in batch::Batches::new(&r.records, true) {
            let b = b.map_err(|e| TestCaseError::fail(format!("invalid batch returned: {e}")))?;
            if first {
                prop_assert!(b.base_offset() as u64 <= at && b.last_offset() as u64 >= at);
                first = false;
            }
            for rec in b
                .records()
                .map_err(|e| TestCaseError::fail(e.to_string()))?
            {
                let rec = rec.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let o = rec.offset as u64;
                if o < at {
                    continue;
                }
                prop_assert_eq!(o, at, "offsets must be contiguous");
                prop_assert_eq!(
                    rec.value,
                    Some(&model.records[o as usize][..]),
                    "bytes at offset {}",
                    o
                );
                at += 1;
            }
        }
        prop_assert_eq!(at, r.next_offset);
    }
    Ok(())
}

/// Tail cache sizes: off (every read from the file), a few batches (eviction), all of it.
fn tail_cache() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(600usize), Just(4usize << 20)]
}

fn run_case(
    ops: Vec<Op>,
    durable: bool,
    segment_bytes: u64,
    cache: usize,
    d: Direct,
) -> Result<(), TestCaseError> {
    let disk = SimDisk::new(1_000_000);
    let dir = Path::new("/data/topic-0");
    let mut model = Model::default();
    let mut ops = ops.into_iter().peekable();
    let mut processes = 0;
    while processes == 0 || ops.peek().is_some() {
        processes += 1;
        let disk2 = disk.clone();
        // One process: open, recover, check, run ops until a restart or crash.
        let outcome: Result<Option<u64>, TestCaseError> = rt::block_on(async {
            let group = CommitGroup::new(disk2.clone());
            let log = SegmentedLog::open_with(group, dir, config(durable, segment_bytes, cache, d))
                .await
                .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
            // Recovery: durable prefix kept, rest may be lost; the model follows the log.
            let end = log.log_end_offset();
            prop_assert!(
                end >= model.durable,
                "lost durable offsets: end {} < durable {}",
                end,
                model.durable
            );
            check_against_model(&log, &model).await?;
            model.records.truncate(end as usize);
            model.durable = end;
            for op in ops.by_ref() {
                match op {
                    Op::Append { n, size } => {
                        for _ in 0..n {
                            let o = log.log_end_offset();
                            let v = value(o, model.generation, size as usize);
                            let b =
                                batch::single_record(None, Some(&v), 1_000_000 + o as i64).unwrap();
                            let info = log
                                .append(&b)
                                .await
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            prop_assert_eq!(info.base_offset, o);
                            model.records.push(v);
                            if durable {
                                model.durable = info.last_offset + 1;
                            }
                        }
                    }
                    Op::AppendMulti { records } => {
                        let o = log.log_end_offset();
                        let values: Vec<Vec<u8>> = (0..records as u64)
                            .map(|i| value(o + i, model.generation, 20))
                            .collect();
                        let mut bb = batch::BatchBuilder::new();
                        for v in &values {
                            bb.push(batch::Record {
                                value: Some(v),
                                timestamp: 5,
                                ..Default::default()
                            })
                            .unwrap();
                        }
                        let info = log
                            .append(&bb.finish().unwrap())
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(info.last_offset, o + records as u64 - 1);
                        model.records.extend(values);
                        if durable {
                            model.durable = info.last_offset + 1;
                        }
                    }
                    Op::AppendBuffered { size } => {
                        let o = log.log_end_offset();
                        let v = value(o, model.generation, size as usize);
                        let b = batch::single_record(Some(b"k"), Some(&v), 7).unwrap();
                        let info = log
                            .append_buffered(&b, AppendOptions::default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(info.base_offset, o);
                        model.records.push(v);
                    }
                    Op::Flush => {
                        log.flush()
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        model.durable = model.records.len() as u64;
                        prop_assert_eq!(log.durable_offset(), model.durable);
                    }
                    Op::Read { at, max } => {
                        let end = log.log_end_offset();
                        let start = log.log_start_offset();
                        if end > start {
                            let at = start + u64::from(at) % (end - start);
                            log.wait_written(at + 1)
                                .await
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            let r = log
                                .read(at, max as usize)
                                .await
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            let first = batch::BatchView::parse(&r.records)
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            prop_assert!(
                                first.base_offset() as u64 <= at
                                    && at <= first.last_offset() as u64
                            );
                            prop_assert!(r.records.len() <= (max as usize).max(first.size()));
                            // Every returned record is the model's, whether the tail cache or
                            // the file answered.
                            for b in batch::Batches::new(&r.records, true) {
                                let b = b.map_err(|e| TestCaseError::fail(e.to_string()))?;
                                for rec in b
                                    .records()
                                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                                {
                                    let rec =
                                        rec.map_err(|e| TestCaseError::fail(e.to_string()))?;
                                    prop_assert_eq!(
                                        rec.value,
                                        Some(&model.records[rec.offset as usize][..]),
                                        "bytes at offset {} read from {}",
                                        rec.offset,
                                        at
                                    );
                                }
                            }
                        }
                    }
                    Op::Truncate { back } => {
                        let end = log.log_end_offset();
                        let target = end.saturating_sub(u64::from(back)).max(model.log_start);
                        let new_end = log
                            .truncate_to(target)
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(new_end <= target);
                        // Multi-record batches are cut whole; the model follows.
                        model.records.truncate(new_end as usize);
                        model.durable = model.durable.min(new_end);
                        model.log_start = log.log_start_offset();
                        model.generation += 1;
                        // Reads right after a truncation (the tail cache was warm) see the cut.
                        check_against_model(&log, &model).await?;
                    }
                    Op::DeleteRecords { fwd } => {
                        let target = (model.log_start + u64::from(fwd)).min(log.log_end_offset());
                        let out = log
                            .delete_records(target)
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        model.log_start = model.log_start.max(target);
                        prop_assert_eq!(out.log_start_offset, model.log_start);
                    }
                    Op::Restart => {
                        log.flush()
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        model.durable = model.records.len() as u64;
                        return Ok(None);
                    }
                    Op::Crash { seed } => return Ok(Some(seed)),
                }
            }
            Ok(None)
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(seed) = outcome? {
            let mut s = seed | 1;
            disk.crash(&mut |n| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % n.max(1)
            });
        }
    }
    // A final recovery after the last operation.
    rt::block_on(async {
        let log = SegmentedLog::open_with(
            CommitGroup::new(disk.clone()),
            dir,
            config(durable, segment_bytes, cache, d),
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        prop_assert!(log.log_end_offset() >= model.durable);
        check_against_model(&log, &model).await
    })
    .map_err(|e| TestCaseError::fail(e.to_string()))?
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn durable_log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40), seg in 300u64..3000, cache in tail_cache()) {
        run_case(ops, true, seg, cache, BUFFERED)?;
    }

    #[test]
    fn interval_log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40), seg in 300u64..3000, cache in tail_cache()) {
        run_case(ops, false, seg, cache, BUFFERED)?;
    }

    /// Zeros written ahead of buffered writes: crashes keep a random (possibly torn) part of
    /// the unsynced zeros and data; recovery and rolls cut the zero tail.
    #[test]
    fn zero_filled_log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40), durable in any::<bool>(), seg in 300u64..3000, cache in tail_cache()) {
        run_case(ops, durable, seg, cache, ZERO_FILL)?;
    }

    /// Direct writes: partial blocks rewritten and padded, several writes in flight; crashes
    /// keep a random (possibly torn) part of what was not synced, padding included.
    #[test]
    fn direct_log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40), durable in any::<bool>(), seg in 300u64..20000, cache in tail_cache(), d in direct()) {
        run_case(ops, durable, seg, cache, d)?;
    }
}
