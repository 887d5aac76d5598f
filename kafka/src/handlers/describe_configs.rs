//! DescribeConfigs (key 32): every config of a topic or of the broker, with value, default and
//! source (DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG from server.properties, DEFAULT_CONFIG),
//! plus synonyms when asked (v1+) and the config type (v3+).

use std::collections::BTreeMap;
use std::rc::Rc;

use kiln_kafka_codec::ResponseBody;
use kiln_kafka_codec::generated::describe_configs_request::DescribeConfigsRequest;
use kiln_kafka_codec::generated::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};

use super::Ctx;
use crate::config::topic::{ConfigSource, ConfigType, SPECS, describe_topic};
use crate::error_code;
use crate::shard::ShardState;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Broker-only keys reported for the BROKER resource, with Kafka's defaults.
const BROKER_KEYS: &[(&str, &str, ConfigType)] = &[
    ("broker.id", "0", ConfigType::Int),
    ("listeners", "PLAINTEXT://:9092", ConfigType::List),
    ("advertised.listeners", "", ConfigType::List),
    ("num.network.threads", "3", ConfigType::Int),
    ("num.io.threads", "8", ConfigType::Int),
    ("socket.send.buffer.bytes", "102400", ConfigType::Int),
    ("socket.receive.buffer.bytes", "102400", ConfigType::Int),
    ("socket.request.max.bytes", "104857600", ConfigType::Int),
    ("log.dirs", "/tmp/kafka-logs", ConfigType::String),
    ("num.partitions", "1", ConfigType::Int),
    ("default.replication.factor", "1", ConfigType::Int),
    ("num.recovery.threads.per.data.dir", "1", ConfigType::Int),
    (
        "log.retention.check.interval.ms",
        "300000",
        ConfigType::Long,
    ),
    ("zookeeper.connect", "", ConfigType::String),
    ("zookeeper.connection.timeout.ms", "18000", ConfigType::Int),
    ("auto.create.topics.enable", "true", ConfigType::Boolean),
    ("delete.topic.enable", "true", ConfigType::Boolean),
    ("offsets.retention.minutes", "10080", ConfigType::Int),
    ("group.initial.rebalance.delay.ms", "3000", ConfigType::Int),
    ("group.min.session.timeout.ms", "6000", ConfigType::Int),
    ("group.max.session.timeout.ms", "1800000", ConfigType::Int),
    ("max.connections", "10000", ConfigType::Int),
    ("queued.max.requests", "500", ConfigType::Int),
    ("fetch.max.bytes", "57671680", ConfigType::Int),
];

pub fn handle(shard: &Rc<ShardState>, ctx: Ctx, req: DescribeConfigsRequest) -> ResponseBody {
    let shared = &shard.shared;
    let results = req
        .resources
        .iter()
        .map(|res| {
            let mut out = DescribeConfigsResult {
                resource_type: res.resource_type,
                resource_name: res.resource_name.clone(),
                ..Default::default()
            };
            let rows: Vec<DescribeConfigsResourceResult> = match res.resource_type {
                RESOURCE_TOPIC => {
                    let overrides = shared
                        .catalog()
                        .topics
                        .get(&res.resource_name)
                        .map(|m| m.configs.clone());
                    let Some(overrides) = overrides else {
                        out.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message =
                            Some(format!("topic {} does not exist", res.resource_name));
                        return out;
                    };
                    topic_rows(
                        &shared.config.raw,
                        &overrides,
                        req.include_synonyms,
                        ctx.version,
                    )
                }
                RESOURCE_BROKER => {
                    let me = shared.config.broker_id.to_string();
                    if !res.resource_name.is_empty() && res.resource_name != me {
                        out.error_code = error_code::INVALID_REQUEST;
                        out.error_message = Some(format!("this broker is {me}"));
                        return out;
                    }
                    broker_rows(&shared.config.raw, req.include_synonyms, ctx.version)
                }
                RESOURCE_BROKER_LOGGER => Vec::new(),
                other => {
                    out.error_code = error_code::INVALID_REQUEST;
                    out.error_message = Some(format!("resource type {other} is not supported"));
                    return out;
                }
            };
            out.configs = match &res.configuration_keys {
                Some(keys) => rows
                    .into_iter()
                    .filter(|r| keys.contains(&r.name))
                    .collect(),
                None => rows,
            };
            out
        })
        .collect();
    ResponseBody::DescribeConfigs(DescribeConfigsResponse {
        results,
        ..Default::default()
    })
}

fn topic_rows(
    raw: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    synonyms: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    describe_topic(raw, overrides)
        .into_iter()
        .map(|d| DescribeConfigsResourceResult {
            name: d.name.to_string(),
            value: Some(d.value),
            read_only: d.read_only,
            config_source: d.source as i8,
            // IsDefault exists only in v0 (and is not ignorable); v1+ carries the source.
            is_default: version == 0 && d.source == ConfigSource::Default,
            is_sensitive: false,
            synonyms: if synonyms && version >= 1 {
                d.synonyms
                    .into_iter()
                    .map(|(name, value, source)| DescribeConfigsSynonym {
                        name,
                        value: Some(value),
                        source: source as i8,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            config_type: d.kind as i8,
            documentation: None,
        })
        .collect()
}

fn broker_rows(
    raw: &BTreeMap<String, String>,
    synonyms: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    let mut rows = Vec::new();
    let mut row = |name: &str, default: &str, kind: ConfigType| {
        let (value, source) = match raw.get(name) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (default.to_string(), ConfigSource::Default),
        };
        let syn = if synonyms && version >= 1 {
            vec![DescribeConfigsSynonym {
                name: name.to_string(),
                value: Some(value.clone()),
                source: source as i8,
            }]
        } else {
            Vec::new()
        };
        rows.push(DescribeConfigsResourceResult {
            name: name.to_string(),
            value: Some(value),
            read_only: true,
            config_source: source as i8,
            is_default: version == 0 && source == ConfigSource::Default,
            is_sensitive: false,
            synonyms: syn,
            config_type: kind as i8,
            documentation: None,
        });
    };
    for (name, default, kind) in BROKER_KEYS {
        row(name, default, *kind);
    }
    for s in SPECS {
        if let Some(key) = s.broker_keys.first() {
            row(key, s.default, s.kind);
        }
    }
    rows
}
