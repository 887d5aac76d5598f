//! DeleteRecords (key 21): advance a partition's log start offset. Offset -1 means the high
//! watermark; an offset above it is OFFSET_OUT_OF_RANGE. The new start is checkpointed durably
//! before the reply (see `SegmentedLog::delete_records`).

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::delete_records_request::DeleteRecordsRequest;
use kiln_kafka_codec::generated::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};

use super::{Ctx, per_partition};
use crate::error_code;
use crate::shard::{LocalFuture, ShardState};

pub async fn handle(shard: &Rc<ShardState>, _ctx: Ctx, req: DeleteRecordsRequest) -> ResponseBody {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((t.name.clone(), p.partition_index, p.offset));
        }
    }
    let mut answers = per_partition(shard, items, delete)
        .await
        .unwrap_or_default()
        .into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| DeleteRecordsTopicResult {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let (code, low) = answers
                        .next()
                        .unwrap_or((error_code::UNKNOWN_SERVER_ERROR, -1));
                    DeleteRecordsPartitionResult {
                        partition_index: p.partition_index,
                        low_watermark: low,
                        error_code: code,
                    }
                })
                .collect(),
        })
        .collect();
    ResponseBody::DeleteRecords(DeleteRecordsResponse {
        topics,
        ..Default::default()
    })
}

fn delete(
    shard: Rc<ShardState>,
    topic: String,
    partition: i32,
    offset: i64,
) -> LocalFuture<(i16, i64)> {
    Box::pin(async move {
        let Some(part) = shard.partition(&topic, partition) else {
            return (error_code::UNKNOWN_TOPIC_OR_PARTITION, -1);
        };
        let st = part.state();
        let target = if offset == -1 {
            st.high_watermark
        } else {
            offset
        };
        if target < 0 || target > st.high_watermark {
            return (error_code::OFFSET_OUT_OF_RANGE, -1);
        }
        if target <= st.log_start_offset {
            return (error_code::NONE, st.log_start_offset);
        }
        match part.log.delete_records(target as u64).await {
            // Producer state is kept: a retried batch below the new start is still a duplicate.
            Ok(outcome) => (error_code::NONE, outcome.log_start_offset as i64),
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "delete records");
                (error_code::KAFKA_STORAGE_ERROR, -1)
            }
        }
    })
}
