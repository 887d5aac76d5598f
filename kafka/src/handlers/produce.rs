//! Produce (key 0): append record batches, with the acknowledgement the client asked for.
//!
//! Per partition, on the owning shard:
//! 1. the topic and partition must exist (UNKNOWN_TOPIC_OR_PARTITION);
//! 2. each batch's framing is checked (CORRUPT_MESSAGE) and its size against `max.message.bytes`
//!    (MESSAGE_TOO_LARGE); v3+ requests carry exactly one batch per partition when idempotent
//!    (INVALID_RECORD otherwise); transactional and control batches are refused (INVALID_RECORD);
//! 3. the idempotent-producer state decides: append, duplicate (answer with the original offset),
//!    or OUT_OF_ORDER_SEQUENCE_NUMBER / DUPLICATE_SEQUENCE_NUMBER / INVALID_PRODUCER_EPOCH;
//! 4. compressed batches are decompressed (bounded) and their records validated, and a batch
//!    whose codec is not the topic's `compression.type` is rebuilt with it (`crate::recompress`);
//!    with `message.timestamp.type=LogAppendTime` the batch's MaxTimestamp and timestamp-type bit
//!    are set and its CRC recomputed (the only other case where the batch is rewritten);
//! 5. the log appends it: CRC-32C checked once (CORRUPT_MESSAGE), base offset and leader epoch
//!    stamped in place, no re-encoding;
//! 6. acknowledgement: acks=0 sends no response (a failure closes the connection, as Kafka does);
//!    acks=1 answers once the batch is written to the page cache; acks=-1 answers after the
//!    fdatasync covering it (the shard's group commit), see ARCHITECTURE.md.
//!
//! Steps 1-5 run before the connection reads its next request, so a producer's pipelined batches
//! are appended in order; only the wait of step 6 overlaps with later requests.

use std::rc::Rc;

use bytes::Bytes;
use kiln_engine::batch::{self, Batches};
use kiln_engine::log::{AppendOptions, LogError};
use kiln_engine::rt;
use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::produce_request::ProduceRequest;
use kiln_kafka_codec::generated::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};

use super::{Ctx, Reply};
use crate::config::topic::TimestampType;
use crate::conn::ConnError;
use crate::error_code;
use crate::partition::{LEADER_EPOCH, Partition};
use crate::producer_state::{BatchProducer, Decision, SequenceError};
use crate::shard::ShardState;

/// Attribute bit of LogAppendTime timestamps.
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// The outcome for one partition (Send: it crosses shards).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl Outcome {
    fn error(code: i16, message: impl Into<String>) -> Self {
        Outcome {
            error_code: code,
            error_message: Some(message.into()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// A partition's outcome and, for acks=-1, the receiver that says when it is durable.
type Pending = (Outcome, Option<flume::Receiver<Result<(), String>>>);

/// An item routed to its owning shard: (position, topic, partition, records).
type Routed = (usize, String, i32, Option<Bytes>);

struct Item {
    topic_index: usize,
    topic: String,
    partition: i32,
    records: Option<Bytes>,
}

pub async fn handle(
    shard: &Rc<ShardState>,
    ctx: Ctx,
    req: ProduceRequest,
) -> Result<Reply, ConnError> {
    let acks = req.acks;
    let mut topics: Vec<TopicProduceResponse> = Vec::with_capacity(req.topic_data.len());
    let mut items: Vec<Item> = Vec::new();
    for (topic_index, t) in req.topic_data.into_iter().enumerate() {
        topics.push(TopicProduceResponse {
            name: t.name.clone(),
            topic_id: t.topic_id,
            partition_responses: Vec::with_capacity(t.partition_data.len()),
        });
        for p in t.partition_data {
            items.push(Item {
                topic_index,
                topic: t.name.clone(),
                partition: p.index,
                records: p.records,
            });
        }
    }
    let refuse_all = if !matches!(acks, -1..=1) {
        Some((error_code::INVALID_REQUIRED_ACKS, "acks must be -1, 0 or 1"))
    } else if req.transactional_id.is_some() {
        Some((
            error_code::INVALID_REQUEST,
            "transactions are not supported",
        ))
    } else {
        None
    };
    let mut results: Vec<Option<Pending>> = (0..items.len()).map(|_| None).collect();
    if let Some((code, msg)) = refuse_all {
        for r in results.iter_mut() {
            *r = Some((Outcome::error(code, msg), None));
        }
    } else {
        // Group by owning shard, keeping each item's position.
        let shards = shard.shared.shard_count();
        let mut groups: Vec<Vec<Routed>> = vec![Vec::new(); shards];
        for (i, it) in items.iter().enumerate() {
            let owner = shard.shared.owner(&it.topic, it.partition);
            if let Some(g) = groups.get_mut(owner) {
                g.push((i, it.topic.clone(), it.partition, it.records.clone()));
            }
        }
        for (target, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let positions: Vec<usize> = group.iter().map(|g| g.0).collect();
            let outcomes = shard
                .call(target, move |s| {
                    Box::pin(async move {
                        let mut out = Vec::with_capacity(group.len());
                        for (_, topic, partition, records) in group {
                            out.push(append_local(&s, &topic, partition, records, acks).await);
                        }
                        out
                    })
                })
                .await;
            match outcomes {
                Ok(list) => {
                    for (pos, pending) in positions.into_iter().zip(list) {
                        if let Some(slot) = results.get_mut(pos) {
                            *slot = Some(pending);
                        }
                    }
                }
                Err(_) => return Err(ConnError::Stopping),
            }
        }
    }
    let any_error = results.iter().any(|r| {
        r.as_ref()
            .is_some_and(|(o, _)| o.error_code != error_code::NONE)
    });
    if acks == 0 {
        return if any_error {
            Err(ConnError::AcksZeroFailure)
        } else {
            Ok(Reply::None)
        };
    }
    let fut = async move {
        for (it, pending) in items.iter().zip(results) {
            let (mut outcome, waiter) = pending.unwrap_or_else(|| {
                (
                    Outcome::error(error_code::UNKNOWN_SERVER_ERROR, "not processed"),
                    None,
                )
            });
            if let Some(rx) = waiter {
                match rx.recv_async().await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => outcome = Outcome::error(error_code::KAFKA_STORAGE_ERROR, e),
                    Err(_) => {
                        outcome = Outcome::error(
                            error_code::KAFKA_STORAGE_ERROR,
                            "the shard stopped before the fsync",
                        );
                    }
                }
            }
            if let Some(t) = topics.get_mut(it.topic_index) {
                t.partition_responses.push(PartitionProduceResponse {
                    index: it.partition,
                    error_code: outcome.error_code,
                    base_offset: outcome.base_offset,
                    log_append_time_ms: outcome.log_append_time_ms,
                    log_start_offset: outcome.log_start_offset,
                    error_message: outcome.error_message,
                    ..Default::default()
                });
            }
        }
        let body = ResponseBody::Produce(ProduceResponse {
            responses: topics,
            ..Default::default()
        });
        super::encode(ctx, &body).map(Some)
    };
    Ok(Reply::Deferred(Box::pin(fut)))
}

/// Steps 1-5 for one partition on its owning shard; for acks=-1 also starts the durability wait.
async fn append_local(
    shard: &Rc<ShardState>,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> Pending {
    if topic == crate::catalog::INTERNAL_OFFSETS_TOPIC {
        return (
            Outcome::error(
                error_code::INVALID_TOPIC_EXCEPTION,
                "cannot append to an internal topic",
            ),
            None,
        );
    }
    let Some(part) = shard.partition(topic, partition) else {
        return (
            Outcome::error(
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("{topic}-{partition} is not on this broker"),
            ),
            None,
        );
    };
    let records = records.unwrap_or_default();
    let log_start = part.log.log_start_offset() as i64;
    let checked = match check_batches(&part, &records) {
        Ok(c) => c,
        Err((code, msg)) => {
            return (
                Outcome {
                    log_start_offset: log_start,
                    ..Outcome::error(code, msg)
                },
                None,
            );
        }
    };
    // Compressed batches are validated and converted to the topic's compression.type.
    let converted = crate::recompress::validate(&records, &part.config.borrow());
    let records = match converted {
        Ok(None) => records,
        Ok(Some(bytes)) => Bytes::from(bytes),
        Err(e) => {
            return (
                Outcome {
                    log_start_offset: log_start,
                    ..Outcome::error(e.code(), e.to_string())
                },
                None,
            );
        }
    };
    let timestamp_type = part.config.borrow().message_timestamp_type;
    let mut append_time = -1;
    let records = if timestamp_type == TimestampType::LogAppendTime {
        append_time = now_ms();
        let mut owned = records.to_vec();
        stamp_log_append_time(&mut owned, append_time);
        Bytes::from(owned)
    } else {
        records
    };
    let storage_error = |e: LogError| {
        let code = match &e {
            LogError::InvalidBatch(_) => error_code::CORRUPT_MESSAGE,
            LogError::BatchTooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
            LogError::Empty => error_code::INVALID_RECORD,
            _ => error_code::KAFKA_STORAGE_ERROR,
        };
        if code == error_code::KAFKA_STORAGE_ERROR {
            tracing::error!(topic, partition, error = %e, "append failed");
        }
        (
            Outcome {
                log_start_offset: log_start,
                ..Outcome::error(code, e.to_string())
            },
            None,
        )
    };
    if let Err(e) = part.log.ready().await {
        return storage_error(e);
    }
    // From here to `try_accept` there is no `.await`: the sequence check, the offset assignment
    // and the recording of the producer's state happen as one step on this shard, so a retry of
    // the same batch (say, on another connection) sees this one as a duplicate.
    if let Some(p) = &checked.producer {
        // The borrow ends here: a duplicate waits below, and other batches must get at the table.
        let decision = part.producers.borrow().check(p);
        match decision {
            Ok(Decision::Append) => {}
            Ok(Decision::Duplicate { base_offset }) => {
                let end = base_offset + i64::from(p.last_offset_delta) + 1;
                // The original may still be in flight: answer once it is where an answer to it
                // would wait (written; on the media for acks=-1).
                if let Err(e) = part.log.wait_written(end.max(0) as u64).await {
                    return storage_error(e);
                }
                let outcome = Outcome {
                    error_code: error_code::NONE,
                    error_message: None,
                    base_offset,
                    log_append_time_ms: -1,
                    log_start_offset: log_start,
                };
                return (outcome, durable_waiter(&part, end, acks));
            }
            Err(e) => {
                let code = match e {
                    SequenceError::InvalidProducerEpoch { .. } => {
                        error_code::INVALID_PRODUCER_EPOCH
                    }
                    SequenceError::OutOfOrder { .. } => error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    SequenceError::DuplicateSequence { .. } => {
                        error_code::DUPLICATE_SEQUENCE_NUMBER
                    }
                };
                return (
                    Outcome {
                        log_start_offset: log_start,
                        ..Outcome::error(code, e.to_string())
                    },
                    None,
                );
            }
        }
    }
    let opts = AppendOptions {
        leader_epoch: Some(LEADER_EPOCH),
        keep_offsets: false,
    };
    let accepted = match part.log.try_accept(&records, opts) {
        Ok(a) => a,
        Err(e) => return storage_error(e),
    };
    if let Some(p) = &checked.producer {
        part.producers
            .borrow_mut()
            .record(p, accepted.info.base_offset as i64);
    }
    match part.log.complete(accepted).await {
        Ok(info) => {
            let outcome = Outcome {
                error_code: error_code::NONE,
                error_message: None,
                base_offset: info.base_offset as i64,
                log_append_time_ms: append_time,
                log_start_offset: part.log.log_start_offset() as i64,
            };
            (
                outcome,
                durable_waiter(&part, info.last_offset as i64 + 1, acks),
            )
        }
        Err(e) => storage_error(e),
    }
}

/// For acks=-1, a receiver completed when offsets below `end` are on the media.
fn durable_waiter(
    part: &Rc<Partition>,
    end: i64,
    acks: i16,
) -> Option<flume::Receiver<Result<(), String>>> {
    if acks != -1 {
        return None;
    }
    let (tx, rx) = flume::bounded(1);
    let log = part.log.clone();
    rt::spawn(async move {
        let r = log
            .wait_durable(end.max(0) as u64)
            .await
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    })
    .detach();
    Some(rx)
}

struct Checked {
    /// The producer of the single batch, when it has a producer id.
    producer: Option<BatchProducer>,
}

/// Step 2: framing, size, batch count and flags (the CRC is checked once, by the log).
fn check_batches(part: &Partition, records: &[u8]) -> Result<Checked, (i16, String)> {
    if records.is_empty() {
        return Err((error_code::INVALID_RECORD, "no record batch".to_string()));
    }
    let max = part.config.borrow().max_message_bytes.max(0) as usize;
    let mut producer = None;
    let mut count = 0usize;
    let mut idempotent = false;
    for b in Batches::new(records, false) {
        let b = b.map_err(|e| (error_code::CORRUPT_MESSAGE, e.to_string()))?;
        count += 1;
        if b.size() > max {
            return Err((
                error_code::MESSAGE_TOO_LARGE,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max}",
                    b.size()
                ),
            ));
        }
        if b.attributes() & (TRANSACTIONAL_BIT | CONTROL_BIT) != 0 {
            return Err((
                error_code::INVALID_RECORD,
                "transactional batches are not supported".to_string(),
            ));
        }
        if b.producer_id() >= 0 {
            idempotent = true;
            producer = Some(BatchProducer {
                producer_id: b.producer_id(),
                producer_epoch: b.producer_epoch(),
                base_sequence: b.base_sequence(),
                last_offset_delta: b.last_offset_delta(),
            });
        }
    }
    if count > 1 && idempotent {
        return Err((
            error_code::INVALID_RECORD,
            "an idempotent produce must carry exactly one batch per partition".to_string(),
        ));
    }
    Ok(Checked { producer })
}

/// Step 4: LogAppendTime. Sets the timestamp-type attribute bit and MaxTimestamp of every batch
/// and recomputes their CRCs (both fields are covered by the CRC).
fn stamp_log_append_time(bytes: &mut [u8], now: i64) {
    let mut pos = 0usize;
    while let Some(rest) = bytes.get_mut(pos..) {
        let Some((_, length)) = batch::peek_offset_and_length(rest) else {
            break;
        };
        let size = batch::LOG_OVERHEAD + length.max(0) as usize;
        let Some(b) = rest.get_mut(..size) else { break };
        if size < batch::HEADER_LEN {
            break;
        }
        let attrs = i16::from_be_bytes([b[21], b[22]]) | TIMESTAMP_TYPE_BIT;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        b[35..43].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&b[batch::CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        pos += size;
    }
}

fn now_ms() -> i64 {
    kiln_engine::clock::wall_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::batch::{BatchBuilder, BatchView, Record};

    #[test]
    fn log_append_time_rewrites_timestamp_and_keeps_crc_valid() {
        let mut b = BatchBuilder::new();
        b.push(Record {
            value: Some(b"v"),
            timestamp: 5,
            ..Default::default()
        })
        .expect("push");
        let mut bytes = b.finish().expect("finish");
        stamp_log_append_time(&mut bytes, 1234);
        let v = BatchView::parse(&bytes).expect("valid CRC");
        assert!(v.is_log_append_time());
        assert_eq!(v.max_timestamp(), 1234);
    }
}
