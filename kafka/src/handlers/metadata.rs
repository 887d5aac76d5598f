//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.
//!
//! Topics named in the request that do not exist are created when the request allows it (v4+,
//! always for v0-v3) and `auto.create.topics.enable` is on, with `num.partitions` partitions;
//! otherwise they are reported as UNKNOWN_TOPIC_OR_PARTITION. Topics asked for by id (v10+) that
//! do not exist are UNKNOWN_TOPIC_ID. Every partition is led by this broker, epoch 0.

use std::collections::BTreeMap;
use std::rc::Rc;

use kiln_kafka_codec::generated::metadata_request::MetadataRequest;
use kiln_kafka_codec::generated::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kiln_kafka_codec::{ResponseBody, Uuid};

use super::Ctx;
use crate::admin;
use crate::catalog::{INTERNAL_OFFSETS_TOPIC, TopicMeta, validate_topic_name};
use crate::error_code;
use crate::partition::LEADER_EPOCH;
use crate::shard::ShardState;

/// Kafka's "authorized operations not requested" marker.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(shard: &Rc<ShardState>, ctx: Ctx, req: MetadataRequest) -> ResponseBody {
    let shared = &shard.shared;
    let node = shared.config.broker_id;
    let allow_create = (ctx.version < 4 || req.allow_auto_topic_creation)
        && shared.config.auto_create_topics_enable;
    let mut topics = Vec::new();
    match req.topics {
        // v0: an empty list means all topics; v1+: null means all topics.
        None => topics.extend(all_topics(shard)),
        Some(list) if list.is_empty() && ctx.version == 0 => topics.extend(all_topics(shard)),
        Some(list) => {
            for t in list {
                topics.push(lookup(shard, t.name, t.topic_id, allow_create).await);
            }
        }
    }
    let ep = shared.advertised();
    ResponseBody::Metadata(MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: node,
            host: ep.host,
            port: i32::from(ep.port),
            rack: None,
        }],
        cluster_id: Some(shared.cluster_id.clone()),
        controller_id: node,
        topics,
        cluster_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    })
}

fn all_topics(shard: &ShardState) -> Vec<MetadataResponseTopic> {
    let catalog = shard.shared.catalog();
    let mut out: Vec<MetadataResponseTopic> = catalog
        .topics
        .values()
        .map(|m| describe(shard, m))
        .collect();
    drop(catalog);
    out.push(describe(shard, &offsets_topic(shard)));
    out
}

/// The group coordinator's internal topic, listed as Kafka lists it (`is_internal`), with its
/// partition count (the one on disk, or `offsets.topic.num.partitions` until the coordinator
/// creates it). Its id is derived from the cluster id, so it is stable.
fn offsets_topic(shard: &ShardState) -> TopicMeta {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in shard
        .shared
        .cluster_id
        .bytes()
        .chain(INTERNAL_OFFSETS_TOPIC.bytes())
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    TopicMeta {
        name: INTERNAL_OFFSETS_TOPIC.to_string(),
        topic_id: h.max(1).to_be_bytes(),
        partitions: shard
            .shared
            .catalog()
            .offsets_topic_partitions(shard.shared.config.offsets_topic_num_partitions),
        replication_factor: 1,
        configs: Default::default(),
    }
}

async fn lookup(
    shard: &Rc<ShardState>,
    name: Option<String>,
    id: Uuid,
    allow_create: bool,
) -> MetadataResponseTopic {
    let found = {
        let catalog = shard.shared.catalog();
        match &name {
            Some(n) => catalog.topics.get(n).cloned(),
            None => catalog
                .topics
                .values()
                .find(|m| m.topic_id == id.0)
                .cloned(),
        }
    };
    if let Some(meta) = found {
        return describe(shard, &meta);
    }
    let internal = offsets_topic(shard);
    if name.as_deref() == Some(INTERNAL_OFFSETS_TOPIC)
        || (name.is_none() && id.0 == internal.topic_id)
    {
        return describe(shard, &internal);
    }
    let Some(name) = name else {
        return error_topic(None, id, error_code::UNKNOWN_TOPIC_ID);
    };
    if let Err(e) = validate_topic_name(&name) {
        return error_topic(Some(name), id, admin::catalog_code(&e));
    }
    if !allow_create {
        return error_topic(Some(name), id, error_code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let partitions = shard.shared.config.num_partitions;
    let rf = admin::effective_replication_factor(shard, -1);
    match admin::create_topic(shard, &name, partitions, rf, BTreeMap::new()).await {
        Ok(meta) => describe(shard, &meta),
        Err(admin::AdminError::Catalog(crate::catalog::CatalogError::TopicExists(_))) => {
            // Created concurrently by another request: describe what is there now.
            let meta = shard.shared.catalog().topics.get(&name).cloned();
            match meta {
                Some(m) => describe(shard, &m),
                None => error_topic(Some(name), id, error_code::LEADER_NOT_AVAILABLE),
            }
        }
        Err(e) => {
            tracing::warn!(topic = %name, error = %e, "auto-creating a topic");
            error_topic(Some(name), id, e.code())
        }
    }
}

fn error_topic(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code,
        name,
        topic_id: id,
        topic_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    }
}

/// The metadata of an existing topic.
pub fn describe(shard: &ShardState, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = shard.shared.config.broker_id;
    MetadataResponseTopic {
        error_code: error_code::NONE,
        name: Some(meta.name.clone()),
        topic_id: Uuid(meta.topic_id),
        is_internal: meta.name == INTERNAL_OFFSETS_TOPIC,
        partitions: (0..meta.partitions)
            .map(|p| MetadataResponsePartition {
                error_code: error_code::NONE,
                partition_index: p,
                leader_id: node,
                leader_epoch: LEADER_EPOCH,
                replica_nodes: vec![node],
                isr_nodes: vec![node],
                offline_replicas: Vec::new(),
            })
            .collect(),
        topic_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
    }
}
