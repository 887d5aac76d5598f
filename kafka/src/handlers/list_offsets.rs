//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), or by timestamp.
//!
//! Latest is the high watermark (read_uncommitted and read_committed agree: no transactions).
//! By timestamp answers the first offset whose timestamp is at least the one asked, or -1 when
//! every record is older; see [`crate::partition::Partition::offset_for_timestamp`]. The log
//! answers a compressed batch with its base offset; as Kafka does, the batch is then read and
//! decompressed (bounded by [`crate::recompress::decompressed_limit`]) to find the exact record.
//! The same holds for max timestamp: the first record carrying it.

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::list_offsets_request::ListOffsetsRequest;
use kiln_kafka_codec::generated::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use kiln_engine::batch::BatchView;
use kiln_kafka_codec::compression::Codec;

use super::{Ctx, per_partition};
use crate::error_code;
use crate::partition::{LEADER_EPOCH, Partition};
use crate::shard::{LocalFuture, ShardState};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;

/// (error, timestamp, offset)
type Answer = (i16, i64, i64);

pub async fn handle(shard: &Rc<ShardState>, ctx: Ctx, req: ListOffsetsRequest) -> ResponseBody {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((
                t.name.clone(),
                p.partition_index,
                (p.timestamp, p.current_leader_epoch),
            ));
        }
    }
    let answers = per_partition(shard, items, lookup)
        .await
        .unwrap_or_default();
    let mut answers = answers.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| ListOffsetsTopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let (code, timestamp, offset) =
                        answers
                            .next()
                            .unwrap_or((error_code::UNKNOWN_SERVER_ERROR, -1, -1));
                    ListOffsetsPartitionResponse {
                        partition_index: p.partition_index,
                        error_code: code,
                        old_style_offsets: Vec::new(),
                        timestamp,
                        offset,
                        leader_epoch: if code == error_code::NONE && ctx.version >= 4 {
                            LEADER_EPOCH
                        } else {
                            -1
                        },
                    }
                })
                .collect(),
        })
        .collect();
    ResponseBody::ListOffsets(ListOffsetsResponse {
        topics,
        ..Default::default()
    })
}

fn lookup(
    shard: Rc<ShardState>,
    topic: String,
    partition: i32,
    w: (i64, i32),
) -> LocalFuture<Answer> {
    Box::pin(async move {
        let (ts, current_epoch) = w;
        let Some(part) = shard.partition(&topic, partition) else {
            return (error_code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
        };
        if current_epoch > LEADER_EPOCH {
            return (error_code::UNKNOWN_LEADER_EPOCH, -1, -1);
        }
        let st = part.state();
        let r = match ts {
            LATEST => Ok(Some((-1, st.high_watermark))),
            EARLIEST => Ok(Some((-1, st.log_start_offset))),
            MAX_TIMESTAMP => match part.max_timestamp().await {
                Ok(Some((off, t))) => Ok(Some(inside_compressed(&part, off, t, t).await)),
                other => other.map(|o| o.map(|(off, t)| (t, off))),
            },
            t if t >= 0 => match part.offset_for_timestamp(t).await {
                Ok(Some((off, found))) => Ok(Some(inside_compressed(&part, off, found, t).await)),
                other => other.map(|o| o.map(|(off, t)| (t, off))),
            },
            // -4 (earliest local) and -5 (earliest tiered): no tiered storage, so earliest.
            _ => Ok(Some((-1, st.log_start_offset))),
        };
        match r {
            Ok(Some((t, off))) => (error_code::NONE, t, off),
            Ok(None) => (error_code::NONE, -1, -1),
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "list offsets");
                (error_code::KAFKA_STORAGE_ERROR, -1, -1)
            }
        }
    })
}

/// Refines the log's answer `(offset, timestamp)` for target `ts` when `offset` falls in a
/// compressed CreateTime batch: the first record at or after the log start whose timestamp is
/// `>= ts`. Returns `(timestamp, offset)`; the log's answer when the batch is not compressed or
/// cannot be read or decompressed.
async fn inside_compressed(part: &Partition, offset: i64, found: i64, ts: i64) -> (i64, i64) {
    let fallback = (found, offset);
    let Ok(start) = u64::try_from(offset) else {
        return fallback;
    };
    let Ok(read) = part.log.read(start, 1).await else {
        return fallback;
    };
    let Ok(view) = BatchView::parse_header(&read.records) else {
        return fallback;
    };
    if Codec::from_attributes(view.attributes()).is_none_or(|c| c == Codec::None)
        || view.is_log_append_time()
    {
        return fallback;
    }
    let limit = crate::recompress::decompressed_limit(part.config.borrow().max_message_bytes);
    let plain = match crate::recompress::plain_records(&view, limit) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(topic = %part.topic, partition = part.index, offset, error = %e, "list offsets: stored batch does not decompress");
            return fallback;
        }
    };
    let Ok(records) = BatchView::parse_header(&plain).and_then(|v| v.records()) else {
        return fallback;
    };
    let log_start = read.log_start_offset;
    for r in records {
        let Ok(r) = r else { return fallback };
        if r.timestamp >= ts && u64::try_from(r.offset).is_ok_and(|o| o >= log_start) {
            return (r.timestamp, r.offset);
        }
    }
    fallback
}
