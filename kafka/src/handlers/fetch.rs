//! Fetch (key 1): whole record batches, long poll, byte limits.
//!
//! 1. Topics are resolved by name (v4-v12) or id (v13+, UNKNOWN_TOPIC_ID when unknown).
//! 2. Fetch sessions (KIP-227): this broker declines to create sessions and answers
//!    `session_id = 0`, which every client handles by sending full fetch requests (Kafka does
//!    the same when its session cache is full). A request naming a session id is answered with
//!    FETCH_SESSION_ID_NOT_FOUND, so the client starts over with a full fetch.
//! 3. Each partition is read on its owning shard: whole batches starting with the one that holds
//!    `fetch_offset` (the client skips the records before it), up to `partition_max_bytes`, while
//!    the response stays under `min(max_bytes, fetch.max.bytes)`; at least one batch is returned
//!    for the first partition with data even when it is larger (KIP-74). Offsets outside
//!    `[log_start_offset, log_end_offset]` are OFFSET_OUT_OF_RANGE.
//! 4. Long poll: when fewer than `min_bytes` were found and `max_wait_ms > 0`, every owning shard
//!    watches its partitions' written watermarks; the first new data (or the deadline) wakes the
//!    request, which then reads again.
//! 5. Memory: record bytes held by responses being sent are counted per shard against
//!    `kiln.fetch.memory.bytes.max`; over that, partitions are answered empty until bytes drain.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kiln_engine::rt;
use kiln_kafka_codec::generated::fetch_request::FetchRequest;
use kiln_kafka_codec::generated::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kiln_kafka_codec::{ResponseBody, Uuid};

use super::Ctx;
use crate::conn::ConnError;
use crate::error_code;
use crate::partition::LEADER_EPOCH;
use crate::shard::ShardState;

/// One partition to read (Send: it crosses shards).
#[derive(Debug, Clone)]
struct Want {
    pos: usize,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
}

/// What was read for one partition.
#[derive(Debug, Clone, Default)]
struct Got {
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

/// The response being assembled, keyed by position.
struct Slot {
    topic_index: usize,
    partition: i32,
    got: Option<Got>,
}

/// Returns the response and the record bytes it holds (for the shard's fetch memory).
pub async fn handle(
    shard: &Rc<ShardState>,
    ctx: Ctx,
    req: FetchRequest,
) -> Result<(ResponseBody, u64), ConnError> {
    if req.session_id != 0 {
        let body = ResponseBody::Fetch(FetchResponse {
            error_code: error_code::FETCH_SESSION_ID_NOT_FOUND,
            session_id: 0,
            ..Default::default()
        });
        return Ok((body, 0));
    }
    // 1. Resolve topics.
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut slots: Vec<Slot> = Vec::new();
    let mut wants: Vec<Want> = Vec::new();
    {
        let catalog = shard.shared.catalog();
        for (topic_index, t) in req.topics.iter().enumerate() {
            let name = if ctx.version >= 13 {
                catalog
                    .topics
                    .values()
                    .find(|m| m.topic_id == t.topic_id.0)
                    .map(|m| m.name.clone())
            } else {
                Some(t.topic.clone())
            };
            topics.push(FetchableTopicResponse {
                topic: t.topic.clone(),
                topic_id: t.topic_id,
                partitions: Vec::with_capacity(t.partitions.len()),
            });
            for p in &t.partitions {
                let pos = slots.len();
                let mut slot = Slot {
                    topic_index,
                    partition: p.partition,
                    got: None,
                };
                match &name {
                    None => {
                        slot.got = Some(Got {
                            error_code: error_code::UNKNOWN_TOPIC_ID,
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Bytes::new(),
                        })
                    }
                    Some(n) => wants.push(Want {
                        pos,
                        topic: n.clone(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                    }),
                }
                slots.push(slot);
            }
        }
    }
    let budget = req
        .max_bytes
        .min(shard.shared.config.fetch_bytes_max)
        .max(0) as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = std::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);

    // 3. Read; 4. wait and read again when there is not enough.
    let mut results = read_all(shard, &wants, budget).await?;
    let mut total: usize = results.iter().map(|(_, g)| g.records.len()).sum();
    let any_error = results
        .iter()
        .any(|(_, g)| g.error_code != error_code::NONE);
    if total < min_bytes.max(1) && !any_error && req.max_wait_ms > 0 && !wants.is_empty() {
        wait_for_data(shard, &wants, &results, deadline).await;
        results = read_all(shard, &wants, budget).await?;
        total = results.iter().map(|(_, g)| g.records.len()).sum();
    }
    for (pos, got) in results {
        if let Some(s) = slots.get_mut(pos) {
            s.got = Some(got);
        }
    }
    for s in slots {
        let got = s.got.unwrap_or(Got {
            error_code: error_code::UNKNOWN_SERVER_ERROR,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
        });
        if let Some(t) = topics.get_mut(s.topic_index) {
            t.partitions.push(PartitionData {
                partition_index: s.partition,
                error_code: got.error_code,
                high_watermark: got.high_watermark,
                last_stable_offset: got.high_watermark,
                log_start_offset: got.log_start_offset,
                aborted_transactions: None,
                preferred_read_replica: -1,
                records: Some(got.records),
                ..Default::default()
            });
        }
    }
    if ctx.version < 13 {
        for t in topics.iter_mut() {
            t.topic_id = Uuid::ZERO;
        }
    }
    let body = ResponseBody::Fetch(FetchResponse {
        error_code: error_code::NONE,
        session_id: 0,
        responses: topics,
        ..Default::default()
    });
    Ok((body, total as u64))
}

/// Reads every wanted partition on its shard, shard by shard, within `budget` response bytes.
async fn read_all(
    shard: &Rc<ShardState>,
    wants: &[Want],
    budget: usize,
) -> Result<Vec<(usize, Got)>, ConnError> {
    let shards = shard.shared.shard_count();
    let mut by_shard: Vec<Vec<Want>> = vec![Vec::new(); shards];
    for w in wants {
        if let Some(g) = by_shard.get_mut(shard.shared.owner(&w.topic, w.partition)) {
            g.push(w.clone());
        }
    }
    let memory_max = shard.shared.config.fetch_memory_bytes_max;
    let memory_left = memory_max.saturating_sub(shard.fetch_memory_bytes.get()) as usize;
    let mut remaining = budget.min(memory_left);
    let mut out = Vec::with_capacity(wants.len());
    for (target, group) in by_shard.into_iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let start_remaining = remaining;
        let got = shard
            .call(target, move |s| {
                Box::pin(async move { read_local(&s, group, start_remaining).await })
            })
            .await
            .map_err(|_| ConnError::Stopping)?;
        for (pos, g) in got {
            remaining = remaining.saturating_sub(g.records.len());
            out.push((pos, g));
        }
    }
    Ok(out)
}

async fn read_local(
    shard: &Rc<ShardState>,
    wants: Vec<Want>,
    mut remaining: usize,
) -> Vec<(usize, Got)> {
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        let Some(part) = shard.partition(&w.topic, w.partition) else {
            out.push((
                w.pos,
                Got {
                    error_code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Bytes::new(),
                },
            ));
            continue;
        };
        let st = part.state();
        let mut got = Got {
            error_code: error_code::NONE,
            high_watermark: st.high_watermark,
            log_start_offset: st.log_start_offset,
            records: Bytes::new(),
        };
        if w.current_leader_epoch > LEADER_EPOCH {
            got.error_code = error_code::UNKNOWN_LEADER_EPOCH;
        } else if (0..LEADER_EPOCH).contains(&w.current_leader_epoch) {
            got.error_code = error_code::FENCED_LEADER_EPOCH;
        } else if w.offset < st.log_start_offset || w.offset > st.log_end_offset {
            got.error_code = error_code::OFFSET_OUT_OF_RANGE;
        } else if w.offset < st.high_watermark && remaining > 0 && w.max_bytes > 0 {
            let max = (w.max_bytes as usize).min(remaining);
            match part.read(w.offset, max).await {
                Ok(bytes) => {
                    remaining = remaining.saturating_sub(bytes.len());
                    got.records = bytes;
                }
                Err(kiln_engine::log::LogError::OffsetOutOfRange { .. }) => {
                    got.error_code = error_code::OFFSET_OUT_OF_RANGE;
                }
                Err(e) => {
                    tracing::error!(topic = %w.topic, partition = w.partition, error = %e, "fetch read failed");
                    got.error_code = error_code::KAFKA_STORAGE_ERROR;
                }
            }
        }
        out.push((w.pos, got));
    }
    out
}

/// Waits until any wanted partition has data past what was read, or the deadline.
async fn wait_for_data(
    shard: &Rc<ShardState>,
    wants: &[Want],
    results: &[(usize, Got)],
    deadline: std::time::Instant,
) {
    let (tx, rx) = flume::bounded::<()>(1);
    let shards = shard.shared.shard_count();
    let mut by_shard: Vec<Vec<(String, i32, i64)>> = vec![Vec::new(); shards];
    for w in wants {
        // Wait past the high watermark seen (or the fetch offset when it is ahead).
        let hw = results
            .iter()
            .find(|(p, _)| *p == w.pos)
            .map_or(w.offset, |(_, g)| g.high_watermark.max(w.offset));
        if let Some(g) = by_shard.get_mut(shard.shared.owner(&w.topic, w.partition)) {
            g.push((w.topic.clone(), w.partition, hw));
        }
    }
    let mut handles = Vec::new();
    for (target, group) in by_shard.into_iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let tx = tx.clone();
        let me = shard.clone();
        handles.push(rt::spawn(async move {
            let _ = me
                .call(target, move |s| {
                    Box::pin(async move { watch_local(&s, group, tx, deadline).await })
                })
                .await;
        }));
    }
    drop(tx);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let _ = rt::timeout(left, rx.recv_async()).await;
    // Dropping the handles cancels local watchers; remote ones end at the deadline.
    drop(handles);
}

async fn watch_local(
    shard: &Rc<ShardState>,
    parts: Vec<(String, i32, i64)>,
    tx: flume::Sender<()>,
    deadline: std::time::Instant,
) {
    let mut tasks = Vec::new();
    for (topic, partition, hw) in parts {
        let Some(part) = shard.partition(&topic, partition) else {
            continue;
        };
        let log = part.log.clone();
        let tx = tx.clone();
        tasks.push(rt::spawn(async move {
            if log.wait_written(hw.max(0) as u64 + 1).await.is_ok() {
                let _ = tx.try_send(());
            }
        }));
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    // Ends at the deadline or when the requester stopped listening.
    let closed = async {
        while !tx.is_disconnected() {
            rt::sleep(Duration::from_millis(50)).await;
            if tx.is_full() {
                break;
            }
        }
    };
    let _ = rt::timeout(left, closed).await;
    drop(tasks);
}
