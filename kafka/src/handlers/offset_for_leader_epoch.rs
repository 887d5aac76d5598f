//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch (KIP-320 truncation checks).
//!
//! Every partition has had one epoch, 0, since it was created, so epoch 0 (or any older epoch)
//! ends at the log end offset; a newer epoch is unknown (UNDEFINED: epoch -1, offset -1).

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kiln_kafka_codec::generated::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use super::{Ctx, per_partition};
use crate::error_code;
use crate::partition::LEADER_EPOCH;
use crate::shard::{LocalFuture, ShardState};

pub async fn handle(
    shard: &Rc<ShardState>,
    _ctx: Ctx,
    req: OffsetForLeaderEpochRequest,
) -> ResponseBody {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((
                t.topic.clone(),
                p.partition,
                (p.current_leader_epoch, p.leader_epoch),
            ));
        }
    }
    let mut answers = per_partition(shard, items, end_offset)
        .await
        .unwrap_or_default()
        .into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| OffsetForLeaderTopicResult {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let (code, epoch, end) =
                        answers
                            .next()
                            .unwrap_or((error_code::UNKNOWN_SERVER_ERROR, -1, -1));
                    EpochEndOffset {
                        error_code: code,
                        partition: p.partition,
                        leader_epoch: epoch,
                        end_offset: end,
                    }
                })
                .collect(),
        })
        .collect();
    ResponseBody::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    })
}

fn end_offset(
    shard: Rc<ShardState>,
    topic: String,
    partition: i32,
    w: (i32, i32),
) -> LocalFuture<(i16, i32, i64)> {
    Box::pin(async move {
        let (current, wanted) = w;
        let Some(part) = shard.partition(&topic, partition) else {
            return (error_code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
        };
        if current > LEADER_EPOCH {
            return (error_code::UNKNOWN_LEADER_EPOCH, -1, -1);
        }
        if (0..LEADER_EPOCH).contains(&current) {
            return (error_code::FENCED_LEADER_EPOCH, -1, -1);
        }
        if wanted > LEADER_EPOCH {
            return (error_code::NONE, -1, -1);
        }
        (error_code::NONE, LEADER_EPOCH, part.state().log_end_offset)
    })
}
