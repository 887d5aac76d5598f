//! CreatePartitions (key 37): grow a topic's partition count (validate-only too).

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::create_partitions_request::CreatePartitionsRequest;
use kiln_kafka_codec::generated::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};

use super::Ctx;
use crate::admin::{self, AdminError};
use crate::catalog::CatalogError;
use crate::error_code;
use crate::shard::ShardState;

pub async fn handle(
    shard: &Rc<ShardState>,
    _ctx: Ctx,
    req: CreatePartitionsRequest,
) -> ResponseBody {
    let node = shard.shared.config.broker_id;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let bad_assignment = t
            .assignments
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x.broker_ids.as_slice() != [node]));
        let outcome: Result<(), AdminError> = if bad_assignment {
            Err(CatalogError::InvalidReplicaAssignment.into())
        } else if req.validate_only {
            shard
                .shared
                .catalog()
                .check_partitions(&t.name, t.count)
                .map(|_| ())
                .map_err(AdminError::from)
        } else {
            admin::add_partitions(shard, &t.name, t.count).await
        };
        let (code, msg) = match outcome {
            Ok(()) => (error_code::NONE, None),
            Err(e) => (e.code(), Some(e.to_string())),
        };
        results.push(CreatePartitionsTopicResult {
            name: t.name,
            error_code: code,
            error_message: msg,
        });
    }
    ResponseBody::CreatePartitions(CreatePartitionsResponse {
        results,
        ..Default::default()
    })
}
