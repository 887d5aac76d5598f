//! Fetch (key 1): whole record batches, long poll, byte limits, incremental sessions.
//!
//! 1. Fetch sessions (KIP-227, [`session`]): the request's `(session_id, epoch)` selects a full
//!    fetch without a session, a full fetch opening one, or an incremental fetch of an existing
//!    session (its partitions updated by the request's, minus the forgotten ones). Session errors
//!    answer with the top-level error code and no partitions. New sessions live on this shard;
//!    a session of another shard is read and updated there, through its mailbox.
//! 2. Topics are resolved by name (v4-v12) or id (v13+, UNKNOWN_TOPIC_ID when unknown).
//! 3. Each partition is read on its owning shard: whole batches starting with the one that holds
//!    `fetch_offset` (the client skips the records before it), up to `partition_max_bytes`, while
//!    the response stays under `min(max_bytes, fetch.max.bytes)`; at least one batch is returned
//!    for the first partition with data even when it is larger (KIP-74). Offsets outside
//!    `[log_start_offset, log_end_offset]` are OFFSET_OUT_OF_RANGE.
//! 4. Long poll: when fewer than `min_bytes` were found and `max_wait_ms > 0`, every owning shard
//!    watches its partitions' written watermarks; the first new data (or the deadline) wakes the
//!    request, which then reads again.
//! 5. The response lists every requested partition (full fetch; a session is then created with
//!    what was sent) or, for an incremental fetch, only the session's partitions with records,
//!    an error, or a changed high watermark or log start offset.
//! 6. Memory: record bytes held by responses being sent are counted per shard against
//!    `kiln.fetch.memory.bytes.max`; over that, partitions are answered empty until bytes drain.

pub mod session;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kiln_engine::rt;
use kiln_kafka_codec::generated::fetch_request::FetchRequest;
use kiln_kafka_codec::generated::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kiln_kafka_codec::{ResponseBody, Uuid};

use self::session::{
    CachedPartition, Context, FetchPosition, Outcome, PartitionKey, RequestMeta, must_respond,
};
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

impl Got {
    fn error(code: i16) -> Self {
        Got {
            error_code: code,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            error_code: self.error_code,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            records_bytes: self.records.len(),
        }
    }
}

fn wall_clock_ms() -> u64 {
    u64::try_from(kiln_engine::clock::wall_ms()).unwrap_or(0)
}

fn error_response(code: i16) -> (ResponseBody, u64) {
    let body = ResponseBody::Fetch(FetchResponse {
        error_code: code,
        session_id: session::INVALID_SESSION_ID,
        ..Default::default()
    });
    (body, 0)
}

/// Returns the response and the record bytes it holds (for the shard's fetch memory).
pub async fn handle(
    shard: &Rc<ShardState>,
    ctx: Ctx,
    req: FetchRequest,
) -> Result<(ResponseBody, u64), ConnError> {
    let uses_topic_ids = ctx.version >= 13;
    let key_of = |topic: &str, topic_id: Uuid, partition: i32| PartitionKey {
        topic_id: if uses_topic_ids { topic_id.0 } else { [0; 16] },
        topic: if uses_topic_ids {
            String::new()
        } else {
            topic.to_string()
        },
        partition,
    };
    // 1. Session.
    let mut updates: Vec<(PartitionKey, FetchPosition)> = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            updates.push((
                key_of(&t.topic, t.topic_id, p.partition),
                FetchPosition {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                },
            ));
        }
    }
    let forgotten: Vec<PartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| key_of(&t.topic, t.topic_id, p))
        })
        .collect();
    let meta = if ctx.version < 7 {
        RequestMeta::sessionless()
    } else {
        RequestMeta {
            session_id: req.session_id,
            epoch: req.session_epoch,
            uses_topic_ids,
        }
    };
    let context = match session_shard(shard, meta.session_id) {
        None => shard.fetch_sessions.borrow_mut().begin(
            meta,
            updates.clone(),
            &forgotten,
            wall_clock_ms(),
        ),
        Some(owner) => {
            let updates = updates.clone();
            shard
                .call(owner, move |s| {
                    Box::pin(async move {
                        s.fetch_sessions.borrow_mut().begin(
                            meta,
                            updates,
                            &forgotten,
                            wall_clock_ms(),
                        )
                    })
                })
                .await
                .map_err(|_| ConnError::Stopping)?
        }
    };
    let parts: Vec<CachedPartition> = match &context {
        Context::Error(code) => {
            tracing::debug!(
                session_id = req.session_id,
                epoch = req.session_epoch,
                error_code = code,
                "fetch session refused"
            );
            return Ok(error_response(*code));
        }
        Context::Incremental { partitions, .. } => partitions.clone(),
        Context::Sessionless | Context::Full => updates
            .into_iter()
            .map(|(k, p)| CachedPartition::new(k, p))
            .collect(),
    };

    // 2. Resolve topics.
    let mut gots: Vec<Option<Got>> = vec![None; parts.len()];
    let mut wants: Vec<Want> = Vec::new();
    {
        let catalog = shard.shared.catalog();
        for (pos, p) in parts.iter().enumerate() {
            let name = if uses_topic_ids {
                catalog
                    .topics
                    .values()
                    .find(|m| m.topic_id == p.key.topic_id)
                    .map(|m| m.name.clone())
            } else {
                Some(p.key.topic.clone())
            };
            match name {
                None => {
                    if let Some(g) = gots.get_mut(pos) {
                        *g = Some(Got::error(error_code::UNKNOWN_TOPIC_ID));
                    }
                }
                Some(n) => wants.push(Want {
                    pos,
                    topic: n,
                    partition: p.key.partition,
                    offset: p.position.fetch_offset,
                    max_bytes: p.position.max_bytes,
                    current_leader_epoch: p.position.current_leader_epoch,
                }),
            }
        }
    }
    let budget = req
        .max_bytes
        .min(shard.shared.config.fetch_bytes_max)
        .max(0) as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = kiln_engine::clock::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);

    // 3. Read; 4. wait and read again when there is not enough.
    let mut results = read_all(shard, &wants, budget).await?;
    let total: usize = results.iter().map(|(_, g)| g.records.len()).sum();
    let any_error = results
        .iter()
        .any(|(_, g)| g.error_code != error_code::NONE);
    if total < min_bytes.max(1) && !any_error && req.max_wait_ms > 0 && !wants.is_empty() {
        wait_for_data(shard, &wants, &results, deadline).await;
        results = read_all(shard, &wants, budget).await?;
    }
    for (pos, got) in results {
        if let Some(g) = gots.get_mut(pos) {
            *g = Some(got);
        }
    }
    let gots: Vec<Got> = gots
        .into_iter()
        .map(|g| g.unwrap_or_else(|| Got::error(error_code::UNKNOWN_SERVER_ERROR)))
        .collect();

    // 5. Which partitions to answer; the session learns what was sent.
    let (session_id, answer): (i32, Vec<bool>) = match context {
        Context::Error(_) | Context::Sessionless => {
            (session::INVALID_SESSION_ID, vec![true; parts.len()])
        }
        Context::Full => {
            let created: Vec<(PartitionKey, FetchPosition, Outcome)> = parts
                .iter()
                .zip(&gots)
                .map(|(p, g)| (p.key.clone(), p.position, g.outcome()))
                .collect();
            let n = created.len();
            let (me, shards) = (shard.id, shard.shared.shard_count());
            let id = shard.fetch_sessions.borrow_mut().create(
                uses_topic_ids,
                created,
                wall_clock_ms(),
                || {
                    session::session_id_on(
                        i32::from_le_bytes(kiln_engine::prng::bytes()),
                        me,
                        shards,
                    )
                },
            );
            tracing::debug!(session_id = id, partitions = n, "fetch session created");
            (id, vec![true; parts.len()])
        }
        Context::Incremental {
            session_id, epoch, ..
        } => {
            let outcomes: Vec<Outcome> = gots.iter().map(Got::outcome).collect();
            let answer: Vec<bool> = parts
                .iter()
                .zip(&outcomes)
                .map(|(p, o)| must_respond(p, o))
                .collect();
            let current = match session_shard(shard, session_id) {
                None => shard
                    .fetch_sessions
                    .borrow_mut()
                    .complete(session_id, epoch, &parts, &outcomes),
                Some(owner) => {
                    let (p, o) = (parts.clone(), outcomes.clone());
                    shard
                        .call(owner, move |s| {
                            Box::pin(async move {
                                s.fetch_sessions
                                    .borrow_mut()
                                    .complete(session_id, epoch, &p, &o)
                            })
                        })
                        .await
                        .map_err(|_| ConnError::Stopping)?
                }
            };
            if !current {
                return Ok(error_response(error_code::INVALID_FETCH_SESSION_EPOCH));
            }
            tracing::debug!(
                session_id,
                epoch,
                partitions = parts.len(),
                answered = answer.iter().filter(|a| **a).count(),
                "incremental fetch"
            );
            (session_id, answer)
        }
    };

    // Consecutive partitions of one topic share a topic entry.
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut held = 0usize;
    for ((p, got), answered) in parts.into_iter().zip(gots).zip(answer) {
        if !answered {
            continue;
        }
        held += got.records.len();
        let data = PartitionData {
            partition_index: p.key.partition,
            error_code: got.error_code,
            high_watermark: got.high_watermark,
            last_stable_offset: got.high_watermark,
            log_start_offset: got.log_start_offset,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: Some(got.records),
            ..Default::default()
        };
        let topic_id = Uuid(p.key.topic_id);
        match topics.last_mut() {
            Some(t) if t.topic == p.key.topic && t.topic_id == topic_id => t.partitions.push(data),
            _ => topics.push(FetchableTopicResponse {
                topic: p.key.topic,
                topic_id,
                partitions: vec![data],
            }),
        }
    }
    let body = ResponseBody::Fetch(FetchResponse {
        error_code: error_code::NONE,
        session_id,
        responses: topics,
        ..Default::default()
    });
    Ok((body, held as u64))
}

/// The other shard that holds session `id`; None when it is this one's (or `id` names none).
fn session_shard(shard: &ShardState, id: i32) -> Option<usize> {
    session::owner_shard(id, shard.shared.shard_count()).filter(|&owner| owner != shard.id)
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
    let left = deadline.saturating_duration_since(kiln_engine::clock::now());
    let _ = kiln_engine::clock::timeout(left, rx.recv_async()).await;
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
    let left = deadline.saturating_duration_since(kiln_engine::clock::now());
    // Ends at the deadline or when the requester stopped listening.
    let closed = async {
        while !tx.is_disconnected() {
            kiln_engine::clock::sleep(Duration::from_millis(50)).await;
            if tx.is_full() {
                break;
            }
        }
    };
    let _ = kiln_engine::clock::timeout(left, closed).await;
    drop(tasks);
}
