//! DeleteTopics (key 20): by name, or by id (v6+). Refused when `delete.topic.enable=false`.

use std::rc::Rc;

use kiln_kafka_codec::generated::delete_topics_request::DeleteTopicsRequest;
use kiln_kafka_codec::generated::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kiln_kafka_codec::{ResponseBody, Uuid};

use super::Ctx;
use crate::admin;
use crate::error_code;
use crate::shard::ShardState;

pub async fn handle(shard: &Rc<ShardState>, _ctx: Ctx, req: DeleteTopicsRequest) -> ResponseBody {
    let mut wanted: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.clone()), Uuid::ZERO))
        .collect();
    wanted.extend(req.topics.iter().map(|t| (t.name.clone(), t.topic_id)));
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => shard
                .shared
                .catalog()
                .topics
                .values()
                .find(|m| m.topic_id == id.0)
                .map(|m| m.name.clone()),
        };
        let mut r = DeletableTopicResult {
            name: name.clone(),
            topic_id: id,
            ..Default::default()
        };
        match resolved {
            None => r.error_code = error_code::UNKNOWN_TOPIC_ID,
            Some(_) if !shard.shared.config.delete_topic_enable => {
                r.error_code = error_code::TOPIC_DELETION_DISABLED
            }
            Some(n) => match admin::delete_topic(shard, &n).await {
                Ok(meta) => {
                    r.name = Some(meta.name);
                    r.topic_id = Uuid(meta.topic_id);
                }
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(e.to_string());
                }
            },
        }
        responses.push(r);
    }
    ResponseBody::DeleteTopics(DeleteTopicsResponse {
        responses,
        ..Default::default()
    })
}
