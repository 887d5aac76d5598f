//! The transaction log's format on the engine's `SegmentedLog`: each txn is one record (its
//! jute encoding) of a record batch, batches in zxid order. Shared by the server, recovery and
//! the simulator, over any [`Disk`].

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
