//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on a topic's overrides.

use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kiln_kafka_codec::generated::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};

use super::Ctx;
use super::alter_configs::apply;
use super::describe_configs::RESOURCE_TOPIC;
use crate::config::topic::spec_of;
use crate::error_code;
use crate::shard::ShardState;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    shard: &Rc<ShardState>,
    _ctx: Ctx,
    req: IncrementalAlterConfigsRequest,
) -> ResponseBody {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let current = if res.resource_type == RESOURCE_TOPIC {
            shard
                .shared
                .catalog()
                .topics
                .get(&res.resource_name)
                .map(|m| m.configs.clone())
        } else {
            Some(Default::default())
        };
        let Some(mut new) = current else {
            out.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION;
            out.error_message = Some(format!("topic {} does not exist", res.resource_name));
            responses.push(out);
            continue;
        };
        let mut bad = None;
        for c in &res.configs {
            match c.config_operation {
                SET => {
                    new.insert(c.name.clone(), c.value.clone().unwrap_or_default());
                }
                DELETE => {
                    new.remove(&c.name);
                }
                APPEND | SUBTRACT => {
                    let base = new
                        .get(&c.name)
                        .cloned()
                        .or_else(|| spec_of(&c.name).map(|s| s.default.to_string()))
                        .unwrap_or_default();
                    let mut items: Vec<String> = base
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    let arg: Vec<String> = c
                        .value
                        .clone()
                        .unwrap_or_default()
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if c.config_operation == APPEND {
                        for a in arg {
                            if !items.contains(&a) {
                                items.push(a);
                            }
                        }
                    } else {
                        items.retain(|i| !arg.contains(i));
                    }
                    new.insert(c.name.clone(), items.join(","));
                }
                other => bad = Some(format!("unknown config operation {other}")),
            }
        }
        let (code, msg) = match bad {
            Some(m) => (error_code::INVALID_REQUEST, Some(m)),
            None => {
                apply(
                    shard,
                    res.resource_type,
                    &res.resource_name,
                    new,
                    req.validate_only,
                )
                .await
            }
        };
        out.error_code = code;
        out.error_message = msg;
        responses.push(out);
    }
    ResponseBody::IncrementalAlterConfigs(IncrementalAlterConfigsResponse {
        responses,
        ..Default::default()
    })
}
