//! AlterConfigs (key 33): replace a topic's config overrides (validate-only too). Broker configs
//! are static (server.properties) and cannot be altered.
//!
//! A change applies at once, in order: the catalog is persisted, then every shard hands the new
//! configuration to its partitions of the topic ([`crate::partition::Partition::set_config`]):
//! Produce's checks (`max.message.bytes`, timestamps) from the next request, `segment.bytes` /
//! `segment.ms` from the next append's roll check, `flush.*` from the next append,
//! `retention.*` at the next retention check (`log.retention.check.interval.ms`).

use std::collections::BTreeMap;
use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::alter_configs_request::AlterConfigsRequest;
use kiln_kafka_codec::generated::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};

use super::Ctx;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::admin::{self, AdminError};
use crate::error_code;
use crate::shard::ShardState;

pub async fn handle(shard: &Rc<ShardState>, _ctx: Ctx, req: AlterConfigsRequest) -> ResponseBody {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let new: BTreeMap<String, String> = res
            .configs
            .iter()
            .filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v)))
            .collect();
        let (code, msg) = apply(
            shard,
            res.resource_type,
            &res.resource_name,
            new,
            req.validate_only,
        )
        .await;
        out.error_code = code;
        out.error_message = msg;
        responses.push(out);
    }
    ResponseBody::AlterConfigs(AlterConfigsResponse {
        responses,
        ..Default::default()
    })
}

/// Validates and (unless `validate_only`) applies a topic's complete override set.
pub async fn apply(
    shard: &Rc<ShardState>,
    resource_type: i8,
    name: &str,
    new: BTreeMap<String, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return (
                error_code::INVALID_REQUEST,
                Some("broker configs are static: edit server.properties and restart".to_string()),
            );
        }
        other => {
            return (
                error_code::INVALID_REQUEST,
                Some(format!("resource type {other} cannot be altered")),
            );
        }
    }
    let r: Result<(), AdminError> = if validate_only {
        shard
            .shared
            .catalog()
            .check_configs(name, &new, &shard.shared.config.topic_defaults)
            .map_err(AdminError::from)
    } else {
        match admin::set_topic_configs(shard, name, new).await {
            Ok(()) => apply_live(shard, name).await,
            Err(e) => Err(e),
        }
    };
    match r {
        Ok(()) => (error_code::NONE, None),
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

/// Hands each partition of `topic` its current configuration on its owning shard, so the log's
/// roll, retention and flush settings change without a restart.
async fn apply_live(shard: &Rc<ShardState>, topic: &str) -> Result<(), AdminError> {
    for target in 0..shard.shared.shard_count() {
        let topic = topic.to_string();
        shard
            .call(target, move |s| {
                Box::pin(async move {
                    let parts: Vec<_> = s
                        .partitions
                        .borrow()
                        .iter()
                        .filter(|((t, _), _)| **t == *topic)
                        .map(|(_, p)| p.clone())
                        .collect();
                    for p in parts {
                        let config = p.config.borrow().clone();
                        if let Err(e) = p.set_config(config) {
                            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "applying a topic config to the log");
                        }
                    }
                })
            })
            .await?;
    }
    Ok(())
}
