//! Group-coordinator APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete): the body is
//! forwarded untouched to the `GroupService` on shard 0, which returns the encoded response body;
//! this module adds the response header.
//!
//! Before its first request the service creates `__consumer_offsets` with the broker's
//! `offsets.topic.num.partitions` (as Kafka creates it on the first FindCoordinator) and the
//! count is published in the catalog for Metadata.
//!
//! The service's answer may wait (JoinGroup waits for the rebalance, commits for their fsync), so
//! the reply is deferred: later requests of the connection keep being read meanwhile, and the
//! responses still leave in order.

use std::rc::Rc;

use bytes::Bytes;

use super::{Ctx, Reply, frame_body};
use crate::conn::ConnError;
use crate::group::service::OffsetsTopicSettings;
use crate::shard::ShardState;

/// The shard that owns the group coordinator.
pub const GROUP_SHARD: usize = 0;

/// `client_id` and `client_host` (Kafka's `/127.0.0.1` form) are recorded by JoinGroup for
/// DescribeGroups.
pub async fn handle(
    shard: &Rc<ShardState>,
    ctx: Ctx,
    body: Bytes,
    client_id: String,
    client_host: String,
) -> Result<Reply, ConnError> {
    let me = shard.clone();
    let fut = async move {
        let result = me
            .call(GROUP_SHARD, move |s| {
                Box::pin(async move {
                    let service = s.group.borrow().clone();
                    let Some(g) = service else {
                        // Not open (yet, or any more): retriable, as Kafka answers it.
                        let mut out = Vec::new();
                        crate::group::error_response::encode(
                            ctx.api_key,
                            ctx.version,
                            body,
                            crate::group::codes::COORDINATOR_NOT_AVAILABLE,
                            "the group coordinator is not running",
                            &mut out,
                        )
                        .map_err(|e| e.to_string())?;
                        return Ok(out);
                    };
                    if g.offsets_partitions() == 0 {
                        let c = &s.shared.config;
                        let settings = OffsetsTopicSettings {
                            partitions: c.offsets_topic_num_partitions,
                            segment_bytes: c.offsets_topic_segment_bytes,
                        };
                        // A failure here is answered by `handle_with_client`, which tries again
                        // and turns it into the request's error response.
                        if let Ok((count, _)) = g.ensure_offsets_topic(settings).await {
                            s.shared.catalog().offsets_partitions = Some(count);
                        }
                    }
                    g.handle_with_client(ctx.api_key, ctx.version, body, &client_id, &client_host)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .await
            .map_err(|_| ConnError::Stopping)?;
        match result {
            Ok(encoded) => frame_body(ctx, &encoded).map(Some),
            Err(e) => Err(ConnError::Malformed(e)),
        }
    };
    Ok(Reply::Deferred(Box::pin(fut)))
}
