//! CreateTopics (key 19), including `validate_only`.
//!
//! `num_partitions = -1` means `num.partitions`; `replication_factor = -1` means
//! `default.replication.factor` capped at the live brokers (see [`crate::admin`]). Manual replica
//! assignments are refused (INVALID_REPLICA_ASSIGNMENT) unless they name only this broker.

use std::collections::BTreeMap;
use std::rc::Rc;

use kiln_kafka_codec::generated::create_topics_request::CreateTopicsRequest;
use kiln_kafka_codec::generated::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kiln_kafka_codec::{ResponseBody, Uuid};

use super::Ctx;
use crate::admin::{self, AdminError};
use crate::catalog::{CatalogError, TopicMeta};
use crate::config::topic::describe_topic;
use crate::shard::ShardState;

pub async fn handle(shard: &Rc<ShardState>, ctx: Ctx, req: CreateTopicsRequest) -> ResponseBody {
    let mut results = Vec::with_capacity(req.topics.len());
    let node = shard.shared.config.broker_id;
    for t in req.topics {
        let mut r = CreatableTopicResult {
            name: t.name.clone(),
            ..Default::default()
        };
        let partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                shard.shared.config.num_partitions
            } else {
                t.assignments.len() as i32
            }
        } else {
            t.num_partitions
        };
        let rf = admin::effective_replication_factor(shard, t.replication_factor);
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.clone(), v.clone());
            }
        }
        let bad_assignment = t
            .assignments
            .iter()
            .any(|a| a.broker_ids.as_slice() != [node]);
        let outcome: Result<TopicMeta, AdminError> = if bad_assignment {
            Err(CatalogError::InvalidReplicaAssignment.into())
        } else if req.validate_only {
            let catalog = shard.shared.catalog();
            catalog
                .check_create(
                    &t.name,
                    partitions,
                    rf,
                    &configs,
                    &shard.shared.config.topic_defaults,
                )
                .map(|()| TopicMeta {
                    name: t.name.clone(),
                    topic_id: [0; 16],
                    partitions,
                    replication_factor: rf,
                    configs: configs.clone(),
                })
                .map_err(AdminError::from)
        } else {
            admin::create_topic(shard, &t.name, partitions, rf, configs).await
        };
        match outcome {
            Ok(meta) => {
                r.topic_id = Uuid(meta.topic_id);
                r.num_partitions = meta.partitions;
                r.replication_factor = meta.replication_factor;
                if ctx.version >= 5 {
                    let described = describe_topic(&shard.shared.config.raw, &meta.configs);
                    r.configs = Some(
                        described
                            .into_iter()
                            .map(|d| CreatableTopicConfigs {
                                name: d.name.to_string(),
                                value: Some(d.value),
                                read_only: d.read_only,
                                config_source: d.source as i8,
                                is_sensitive: false,
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                r.error_code = e.code();
                r.error_message = Some(e.to_string());
                r.num_partitions = -1;
                r.replication_factor = -1;
                r.configs = None;
            }
        }
        results.push(r);
    }
    ResponseBody::CreateTopics(CreateTopicsResponse {
        topics: results,
        ..Default::default()
    })
}
