//! The transaction log's format on the engine's `SegmentedLog`: each txn is one record (its
//! jute encoding) of a record batch, batches in zxid order. Shared by the server, recovery and
//! the simulator, over any [`Disk`].
//!
//! Offsets are dense (the log assigns one per record, and nothing here compacts), and zxids grow
//! strictly with offsets; [`truncate_after`] and [`last_zxid`] rely on both, and report as
//! corrupt a batch they read whose offsets are not one per txn or whose zxids do not grow
//! (the binary search reads only O(log n) batches, so it cannot check the whole log).

use std::collections::VecDeque;

use kiln_engine::batch::{self, BatchBuilder, BatchError, Record};
use kiln_engine::disk::Disk;
use kiln_engine::log::{LogError, SegmentedLog};

use crate::jute::Writer;
use crate::state::ZkState;
use crate::tree::Zxid;
use crate::txn::Txn;

/// Why replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("transaction log: {0}")]
    Log(#[from] LogError),
    #[error("transaction log record at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
}

/// Takes txns from the front of `txns` into one batch of at most about `max_bytes` (at least
/// one txn). Returns the batch and the zxid of its last txn; `None` when `txns` is empty.
/// `scratch` is reused for each txn's encoding.
pub fn encode_batch(
    txns: &mut VecDeque<Txn>,
    scratch: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<Option<(Vec<u8>, Zxid)>, BatchError> {
    let mut b = BatchBuilder::new();
    let mut bytes = 0;
    let mut last_zxid = None;
    while let Some(t) = txns.pop_front() {
        let mut w = Writer::from_vec(std::mem::take(scratch));
        t.encode(&mut w);
        *scratch = w.into_inner();
        bytes += scratch.len();
        b.push(Record {
            key: None,
            value: Some(scratch),
            headers: &[],
            timestamp: t.time,
        })?;
        scratch.clear();
        last_zxid = Some(t.zxid);
        if bytes >= max_bytes {
            break;
        }
    }
    match last_zxid {
        Some(z) => Ok(Some((b.finish()?, z))),
        None => Ok(None),
    }
}

/// Applies every txn of `log` from offset `from` to `state` (txns the state already holds are
/// skipped by [`ZkState::apply`]). Returns how many records were read.
pub async fn replay<D: Disk>(
    log: &SegmentedLog<D>,
    from: u64,
    state: &mut ZkState,
) -> Result<u64, ReplayError> {
    let corrupt = |offset: u64, e: &dyn std::fmt::Display| ReplayError::Corrupt {
        offset,
        reason: e.to_string(),
    };
    let mut offset = from;
    let end = log.log_end_offset();
    let mut replayed = 0u64;
    while offset < end {
        let read = log.read(offset, 8 << 20).await?;
        if read.next_offset <= offset {
            break;
        }
        for b in batch::Batches::new(&read.records, true) {
            let b = b.map_err(|e| corrupt(offset, &e))?;
            let records = b.records().map_err(|e| corrupt(offset, &e))?;
            for r in records {
                let r = r.map_err(|e| corrupt(offset, &e))?;
                if (r.offset as u64) < offset {
                    continue;
                }
                let Some(value) = r.value else {
                    return Err(corrupt(r.offset as u64, &"a record without a value"));
                };
                let txn = Txn::from_bytes(value).map_err(|e| corrupt(r.offset as u64, &e))?;
                if let Some(a) = state.apply(&txn)
                    && a.diverged()
                {
                    return Err(corrupt(
                        r.offset as u64,
                        &format_args!(
                            "txn 0x{:x} was logged as successful but fails on the recovered \
                             state (code {})",
                            txn.zxid, a.err
                        ),
                    ));
                }
                replayed += 1;
            }
        }
        offset = read.next_offset;
    }
    Ok(replayed)
}

/// Why [`truncate_after`] or [`last_zxid`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TxnLogError {
    #[error("transaction log: {0}")]
    Log(#[from] LogError),
    #[error("transaction log record at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("re-encoding the txns kept from a cut batch: {0}")]
    Encode(#[from] BatchError),
}

/// What [`truncate_after`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncateOutcome {
    /// Txns removed (all of them above the target zxid).
    pub dropped: u64,
    /// The zxid of the log's last txn now; `None` when the log holds no txn at or below the
    /// target (it may still start later than offset 0, after a purge).
    pub last_zxid: Option<Zxid>,
    /// The log end offset now.
    pub log_end_offset: u64,
}

/// One batch of the log, decoded.
struct LoggedBatch {
    base: u64,
    /// Offset after the batch.
    next: u64,
    /// The batch's txns in offset order; never empty.
    txns: Vec<Txn>,
}

impl LoggedBatch {
    fn first_zxid(&self) -> Zxid {
        self.txns.first().map_or(Zxid::MIN, |t| t.zxid)
    }
    fn last_zxid(&self) -> Zxid {
        self.txns.last().map_or(Zxid::MIN, |t| t.zxid)
    }
}

/// Reads and decodes the whole batch containing `offset` (which must be written).
async fn read_batch<D: Disk>(
    log: &SegmentedLog<D>,
    offset: u64,
) -> Result<LoggedBatch, TxnLogError> {
    let corrupt = |offset: u64, e: &dyn std::fmt::Display| TxnLogError::Corrupt {
        offset,
        reason: e.to_string(),
    };
    // At least one whole batch is returned, however small the limit.
    let read = log.read(offset, 1).await?;
    let Some(b) = batch::Batches::new(&read.records, true).next() else {
        return Err(corrupt(offset, &"no batch holds this written offset"));
    };
    let b = b.map_err(|e| corrupt(offset, &e))?;
    let base = u64::try_from(b.base_offset()).map_err(|e| corrupt(offset, &e))?;
    let mut txns: Vec<Txn> = Vec::new();
    for r in b.records().map_err(|e| corrupt(base, &e))? {
        let r = r.map_err(|e| corrupt(base, &e))?;
        let at = u64::try_from(r.offset).map_err(|e| corrupt(base, &e))?;
        let Some(value) = r.value else {
            return Err(corrupt(at, &"a record without a value"));
        };
        let txn = Txn::from_bytes(value).map_err(|e| corrupt(at, &e))?;
        if let Some(prev) = txns.last()
            && prev.zxid >= txn.zxid
        {
            return Err(corrupt(
                at,
                &format_args!("zxid 0x{:x} follows 0x{:x}", txn.zxid, prev.zxid),
            ));
        }
        txns.push(txn);
    }
    let next = base + b.offset_count();
    if txns.is_empty() || !(base..next).contains(&offset) {
        return Err(corrupt(offset, &"the batch read does not hold this offset"));
    }
    if txns.len() as u64 != next - base {
        return Err(corrupt(base, &"the batch's offsets are not one per txn"));
    }
    Ok(LoggedBatch { base, next, txns })
}

/// The zxid of the last written txn at an offset `>= from`; `None` when there is none.
pub async fn last_zxid<D: Disk>(
    log: &SegmentedLog<D>,
    from: u64,
) -> Result<Option<Zxid>, TxnLogError> {
    let end = log.written_offset();
    if end <= from.max(log.log_start_offset()) {
        return Ok(None);
    }
    Ok(Some(read_batch(log, end - 1).await?.last_zxid()))
}

/// Makes the log end right after its last txn with a zxid `<= zxid` (ZAB's TRUNC, and the
/// learner's side of [`crate::quorum::zab::Effect::Truncate`]). A no-op when no txn is above
/// `zxid`. The caller appends nothing to `log` until this returns.
///
/// **Durable when it returns**, in these steps:
/// 1. flush, so every accepted append is written and can be searched;
/// 2. binary-search the batches (zxids grow with offsets) for the first one holding a txn above
///    `zxid`: O(log n) batch reads, not a scan of the whole log;
/// 3. `truncate_to` that batch's base offset (the engine truncates and syncs the segment file,
///    removes later segments and syncs the directory before returning);
/// 4. when that batch also held txns `<= zxid`, append them back as one batch and flush it.
///
/// Crash window: a batch is the engine's unit of truncation, so a batch that straddles `zxid`
/// is removed whole in step 3 and its kept txns are rewritten in step 4. A crash between the
/// two leaves the log ending at that batch's base, below `zxid`: the server restarts with fewer
/// txns than it had, some of which it may have acknowledged. A target on a batch boundary (the
/// common case: the uncommitted tail of a former leader's last proposals) has no such window.
pub async fn truncate_after<D: Disk>(
    log: &SegmentedLog<D>,
    zxid: Zxid,
) -> Result<TruncateOutcome, TxnLogError> {
    log.flush().await?;
    let end = log.log_end_offset();
    // Invariant of the search: every txn below `lo` is <= zxid, every txn at or above `hi` is
    // above it; both are batch boundaries. `kept_last` is the last zxid below `lo` seen.
    let (mut lo, mut hi) = (log.log_start_offset(), end);
    let mut kept_last = None;
    let mut straddling = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let b = read_batch(log, mid).await?;
        if b.base < lo || b.next > hi {
            return Err(TxnLogError::Corrupt {
                offset: b.base,
                reason: format!(
                    "batch [{}, {}) crosses the searched range [{lo}, {hi})",
                    b.base, b.next
                ),
            });
        }
        if b.last_zxid() <= zxid {
            lo = b.next;
            kept_last = Some(b.last_zxid());
        } else if b.first_zxid() > zxid {
            hi = b.base;
        } else {
            straddling = Some(b);
            break;
        }
    }
    let (cut, kept) = match straddling {
        Some(b) => {
            let kept: VecDeque<Txn> = b.txns.into_iter().take_while(|t| t.zxid <= zxid).collect();
            kept_last = kept.back().map(|t| t.zxid);
            (b.base, kept)
        }
        None => (lo, VecDeque::new()),
    };
    if cut >= end {
        return Ok(TruncateOutcome {
            dropped: 0,
            last_zxid: kept_last,
            log_end_offset: end,
        });
    }
    let new_end = log.truncate_to(cut).await?;
    // `cut` is a batch base (or the log start), so nothing below it went.
    assert_eq!(new_end, cut, "truncate_to({cut}) ended the log elsewhere");
    let kept_count = kept.len() as u64;
    let mut kept = kept;
    let mut scratch = Vec::new();
    if let Some((batch, _)) = encode_batch(&mut kept, &mut scratch, usize::MAX)? {
        log.append(&batch).await?;
        log.flush().await?;
    }
    let log_end_offset = log.log_end_offset();
    assert_eq!(
        log_end_offset,
        cut + kept_count,
        "the kept txns were not appended whole"
    );
    Ok(TruncateOutcome {
        dropped: end - cut - kept_count,
        last_zxid: kept_last,
        log_end_offset,
    })
}

#[cfg(test)]
mod tests {
    use kiln_engine::commit::{CommitGroup, Durability};
    use kiln_engine::disk::SimDisk;
    use kiln_engine::log::LogConfig;

    use super::*;
    use crate::state::StateConfig;
    use crate::txn::TxnOp;

    const LOG_DIR: &str = "/zk/version-2";

    fn config() -> LogConfig {
        LogConfig {
            // Small segments, so that truncations also remove whole segments.
            segment_bytes: 1 << 10,
            durability: Durability::Durable,
            ..LogConfig::default()
        }
    }

    async fn open(disk: &SimDisk) -> SegmentedLog<SimDisk> {
        SegmentedLog::open_with(CommitGroup::new(disk.clone()), LOG_DIR, config())
            .await
            .unwrap()
    }

    fn txn(zxid: Zxid) -> Txn {
        Txn {
            session: 0x100 + zxid,
            cxid: 0,
            zxid,
            time: 1_000 + zxid,
            op: TxnOp::CreateSession { timeout_ms: 30_000 },
        }
    }

    /// Appends one batch per slice of `batches`, each txn named by its zxid.
    async fn append(log: &SegmentedLog<SimDisk>, batches: &[&[Zxid]]) {
        let mut scratch = Vec::new();
        for zxids in batches {
            let mut txns: VecDeque<Txn> = zxids.iter().map(|z| txn(*z)).collect();
            let (bytes, _) = encode_batch(&mut txns, &mut scratch, usize::MAX)
                .unwrap()
                .unwrap();
            log.append(&bytes).await.unwrap();
        }
    }

    /// Every zxid in the log, in offset order.
    async fn zxids(log: &SegmentedLog<SimDisk>) -> Vec<Zxid> {
        let mut state = ZkState::new(
            StateConfig {
                extended_types: false,
                server_id: 1,
            },
            1_000,
        );
        let mut out = Vec::new();
        let mut at = log.log_start_offset();
        while at < log.written_offset() {
            let b = read_batch(log, at).await.unwrap();
            out.extend(b.txns.iter().map(|t| t.zxid));
            at = b.next;
        }
        // Replay agrees with the scan.
        replay(log, log.log_start_offset(), &mut state)
            .await
            .unwrap();
        assert_eq!(state.last_zxid(), out.last().copied().unwrap_or(0));
        out
    }

    /// Three batches: zxids 1-3, 4-6, 7-9; the log holds offsets 0..9.
    async fn three_batches(disk: &SimDisk) -> SegmentedLog<SimDisk> {
        let log = open(disk).await;
        append(&log, &[&[1, 2, 3], &[4, 5, 6], &[7, 8, 9]]).await;
        log
    }

    fn run(f: impl std::future::Future<Output = ()>) {
        kiln_engine::rt::block_on(f).unwrap();
    }

    #[test]
    fn truncating_inside_a_batch_keeps_its_lower_txns() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = three_batches(&disk).await;
            let out = truncate_after(&log, 5).await.unwrap();
            assert_eq!(
                out,
                TruncateOutcome {
                    dropped: 4,
                    last_zxid: Some(5),
                    log_end_offset: 5,
                }
            );
            assert_eq!(zxids(&log).await, [1, 2, 3, 4, 5]);
            assert_eq!(log.durable_offset(), 5);
            assert_eq!(last_zxid(&log, 0).await.unwrap(), Some(5));
            // The log goes on from the cut.
            append(&log, &[&[6, 7]]).await;
            assert_eq!(zxids(&log).await, [1, 2, 3, 4, 5, 6, 7]);
        });
    }

    #[test]
    fn truncating_at_a_batch_boundary_rewrites_nothing() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = three_batches(&disk).await;
            let out = truncate_after(&log, 6).await.unwrap();
            assert_eq!(out.dropped, 3);
            assert_eq!(out.last_zxid, Some(6));
            assert_eq!(zxids(&log).await, [1, 2, 3, 4, 5, 6]);
            // The first batch and the boundary below a gap in the zxids.
            let out = truncate_after(&log, 3).await.unwrap();
            assert_eq!((out.dropped, out.last_zxid), (3, Some(3)));
            assert_eq!(zxids(&log).await, [1, 2, 3]);
        });
    }

    #[test]
    fn truncating_at_or_beyond_the_end_changes_nothing() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = three_batches(&disk).await;
            for z in [9, 10, Zxid::MAX] {
                let out = truncate_after(&log, z).await.unwrap();
                assert_eq!(
                    out,
                    TruncateOutcome {
                        dropped: 0,
                        last_zxid: Some(9),
                        log_end_offset: 9,
                    }
                );
            }
            assert_eq!(zxids(&log).await, (1..=9).collect::<Vec<_>>());
        });
    }

    #[test]
    fn truncating_below_the_first_txn_empties_the_log() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = three_batches(&disk).await;
            let out = truncate_after(&log, 0).await.unwrap();
            assert_eq!(
                out,
                TruncateOutcome {
                    dropped: 9,
                    last_zxid: None,
                    log_end_offset: 0,
                }
            );
            assert!(zxids(&log).await.is_empty());
            assert_eq!(last_zxid(&log, 0).await.unwrap(), None);
            // An empty log: nothing to do.
            let out = truncate_after(&log, 0).await.unwrap();
            assert_eq!((out.dropped, out.last_zxid), (0, None));
            append(&log, &[&[1]]).await;
            assert_eq!(zxids(&log).await, [1]);
        });
    }

    #[test]
    fn a_truncation_survives_a_crash() {
        run(async {
            let mut seed = 7u64;
            let mut rng = move |n: u64| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 33) % n.max(1)
            };
            for target in [0, 2, 3, 5, 8, 9] {
                let disk = SimDisk::new(1_000);
                let log = three_batches(&disk).await;
                let out = truncate_after(&log, target).await.unwrap();
                drop(log);
                disk.crash(&mut rng);
                let log = open(&disk.fork()).await;
                let want: Vec<Zxid> = (1..=target.min(9)).collect();
                assert_eq!(zxids(&log).await, want, "target {target}");
                assert_eq!(log.log_end_offset(), out.log_end_offset);
                assert_eq!(last_zxid(&log, 0).await.unwrap(), out.last_zxid);
            }
        });
    }

    #[test]
    fn replay_after_a_truncation_ends_at_the_target() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = open(&disk).await;
            // Many batches over several segments, zxids with gaps (an epoch change).
            let mut batches: Vec<Vec<Zxid>> = Vec::new();
            let mut z = 0;
            for i in 0..40 {
                let n = 1 + i % 4;
                batches.push(
                    (0..n)
                        .map(|_| {
                            z += 1 + i % 3;
                            z
                        })
                        .collect(),
                );
            }
            let refs: Vec<&[Zxid]> = batches.iter().map(Vec::as_slice).collect();
            append(&log, &refs).await;
            assert!(log.segment_bases().len() > 2, "{:?}", log.segment_bases());
            let all: Vec<Zxid> = batches.concat();
            let mut kept = all.clone();
            for target in [all[all.len() - 2], all[50], all[31] + 1, all[3]] {
                let out = truncate_after(&log, target).await.unwrap();
                let before = kept.len();
                kept.retain(|z| *z <= target);
                assert_eq!(out.dropped, (before - kept.len()) as u64, "target {target}");
                assert_eq!(out.last_zxid, kept.last().copied());
                let mut state = ZkState::new(
                    StateConfig {
                        extended_types: false,
                        server_id: 1,
                    },
                    1_000,
                );
                replay(&log, log.log_start_offset(), &mut state)
                    .await
                    .unwrap();
                assert_eq!(Some(state.last_zxid()), kept.last().copied());
                assert_eq!(zxids(&log).await, kept);
            }
        });
    }

    #[test]
    fn last_zxid_ignores_offsets_below_from() {
        run(async {
            let disk = SimDisk::new(1_000);
            let log = three_batches(&disk).await;
            assert_eq!(last_zxid(&log, 0).await.unwrap(), Some(9));
            assert_eq!(last_zxid(&log, 8).await.unwrap(), Some(9));
            assert_eq!(last_zxid(&log, 9).await.unwrap(), None);
        });
    }
}
