//! Per-topic configuration: Kafka's topic-level keys, their broker-level synonyms and defaults.
//!
//! A topic's effective configuration is the broker default (from `server.properties`, else Kafka's
//! default) overridden by the topic's own keys (set by CreateTopics or AlterConfigs). The table
//! [`SPECS`] lists every topic key Kiln reports in `DescribeConfigs`; the ones marked `supported`
//! change behaviour and may be altered, the others are reported with their default and refuse any
//! other value (Kiln does not implement compaction, tiered storage or throttling yet). Pure.

use std::collections::BTreeMap;

use kiln_kafka_codec::compression::Codec;

use super::{ConfigError, Reader, parse_int};

/// Kafka's `ConfigType` in DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic-level key.
#[derive(Debug)]
pub struct ConfigSpec {
    /// Topic-level name (`retention.ms`).
    pub name: &'static str,
    /// Broker-level synonyms, highest precedence first (`log.retention.ms`, ...).
    pub broker_keys: &'static [&'static str],
    /// Kafka's default, as text.
    pub default: &'static str,
    pub kind: ConfigType,
    /// Whether Kiln honours the key (and so accepts values other than the default).
    pub supported: bool,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic key reported by DescribeConfigs.
pub const SPECS: &[ConfigSpec] = &[
    spec(
        "cleanup.policy",
        &["log.cleanup.policy"],
        "delete",
        ConfigType::List,
        true,
    ),
    spec(
        "compression.type",
        &["compression.type"],
        "producer",
        ConfigType::String,
        true,
    ),
    spec(
        "compression.gzip.level",
        &["compression.gzip.level"],
        "-1",
        ConfigType::Int,
        true,
    ),
    spec(
        "compression.lz4.level",
        &["compression.lz4.level"],
        "9",
        ConfigType::Int,
        true,
    ),
    spec(
        "compression.zstd.level",
        &["compression.zstd.level"],
        "3",
        ConfigType::Int,
        true,
    ),
    spec(
        "delete.retention.ms",
        &["log.cleaner.delete.retention.ms"],
        "86400000",
        ConfigType::Long,
        false,
    ),
    spec(
        "file.delete.delay.ms",
        &["log.segment.delete.delay.ms"],
        "60000",
        ConfigType::Long,
        false,
    ),
    spec(
        "flush.messages",
        &["log.flush.interval.messages"],
        LONG_MAX,
        ConfigType::Long,
        true,
    ),
    spec(
        "flush.ms",
        &["log.flush.interval.ms"],
        LONG_MAX,
        ConfigType::Long,
        true,
    ),
    spec(
        "index.interval.bytes",
        &["log.index.interval.bytes"],
        "4096",
        ConfigType::Int,
        false,
    ),
    spec(
        "max.compaction.lag.ms",
        &["log.cleaner.max.compaction.lag.ms"],
        LONG_MAX,
        ConfigType::Long,
        false,
    ),
    spec(
        "max.message.bytes",
        &["message.max.bytes"],
        "1048588",
        ConfigType::Int,
        true,
    ),
    spec(
        "message.timestamp.after.max.ms",
        &["log.message.timestamp.after.max.ms"],
        LONG_MAX,
        ConfigType::Long,
        false,
    ),
    spec(
        "message.timestamp.before.max.ms",
        &["log.message.timestamp.before.max.ms"],
        LONG_MAX,
        ConfigType::Long,
        false,
    ),
    spec(
        "message.timestamp.type",
        &["log.message.timestamp.type"],
        "CreateTime",
        ConfigType::String,
        true,
    ),
    spec(
        "min.cleanable.dirty.ratio",
        &["log.cleaner.min.cleanable.ratio"],
        "0.5",
        ConfigType::Double,
        false,
    ),
    spec(
        "min.compaction.lag.ms",
        &["log.cleaner.min.compaction.lag.ms"],
        "0",
        ConfigType::Long,
        false,
    ),
    spec(
        "min.insync.replicas",
        &["min.insync.replicas"],
        "1",
        ConfigType::Int,
        true,
    ),
    spec(
        "preallocate",
        &["log.preallocate"],
        "false",
        ConfigType::Boolean,
        false,
    ),
    spec(
        "retention.bytes",
        &["log.retention.bytes"],
        "-1",
        ConfigType::Long,
        true,
    ),
    spec(
        "retention.ms",
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "604800000",
        ConfigType::Long,
        true,
    ),
    spec(
        "segment.bytes",
        &["log.segment.bytes"],
        "1073741824",
        ConfigType::Int,
        true,
    ),
    spec(
        "segment.index.bytes",
        &["log.index.size.max.bytes"],
        "10485760",
        ConfigType::Int,
        false,
    ),
    spec(
        "segment.jitter.ms",
        &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        "0",
        ConfigType::Long,
        false,
    ),
    spec(
        "segment.ms",
        &["log.roll.ms", "log.roll.hours"],
        "604800000",
        ConfigType::Long,
        true,
    ),
    spec(
        "unclean.leader.election.enable",
        &["unclean.leader.election.enable"],
        "false",
        ConfigType::Boolean,
        false,
    ),
];

const fn spec(
    name: &'static str,
    broker_keys: &'static [&'static str],
    default: &'static str,
    kind: ConfigType,
    supported: bool,
) -> ConfigSpec {
    ConfigSpec {
        name,
        broker_keys,
        default,
        kind,
        supported,
    }
}

/// Looks up a topic key.
pub fn spec_of(name: &str) -> Option<&'static ConfigSpec> {
    SPECS.iter().find(|s| s.name == name)
}

pub(super) fn broker_key_known(key: &str) -> bool {
    SPECS.iter().any(|s| s.broker_keys.contains(&key))
}

/// A refused topic configuration (turned into INVALID_CONFIG at the protocol boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("unknown topic config {0}")]
    Unknown(String),
    #[error("invalid value {value:?} for topic config {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// How record timestamps are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// The broker stamps its clock on every batch (MaxTimestamp, attribute bit 3).
    LogAppendTime,
}

/// `compression.type`: how stored batches are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Store batches with the codec the producer used (Kafka's default).
    Producer,
    /// Store every batch with this codec, recompressing batches that use another one.
    Codec(Codec),
}

/// Parses a `compression.type` value (Kafka's names, lower case).
pub fn parse_compression_type(v: &str) -> Option<CompressionType> {
    match v {
        "producer" => Some(CompressionType::Producer),
        "none" => None,
        other => Codec::from_name(other).map(CompressionType::Codec),
    }
}

/// A topic's effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i32,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub min_insync_replicas: i32,
    pub message_timestamp_type: TimestampType,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub compression_type: CompressionType,
    /// `compression.gzip.level`; -1 is the codec's default.
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
}

impl TopicConfig {
    /// The codec batches are stored with when it is not the producer's, and its level.
    pub fn target_codec(&self) -> Option<(Codec, Option<i32>)> {
        match self.compression_type {
            CompressionType::Producer => None,
            CompressionType::Codec(c) => {
                let level = match c {
                    Codec::Gzip if self.compression_gzip_level != -1 => {
                        Some(self.compression_gzip_level)
                    }
                    Codec::Lz4 => Some(self.compression_lz4_level),
                    Codec::Zstd => Some(self.compression_zstd_level),
                    _ => None,
                };
                Some((c, level))
            }
        }
    }
}

impl TopicConfig {
    /// Broker-level defaults: each topic key's broker synonyms from `server.properties`, else
    /// Kafka's default.
    pub fn broker_defaults(raw: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut c = Self::kafka_defaults();
        let r = Reader { raw };
        // retention: ms, then minutes, then hours (Kafka's precedence).
        if r.get("log.retention.ms").is_some() {
            c.retention_ms = r.int("log.retention.ms", 0, -1, i64::MAX)?;
        } else if r.get("log.retention.minutes").is_some() {
            c.retention_ms = minutes_or_unlimited(
                r.int("log.retention.minutes", 0, -1, i64::MAX / 60_000)?,
                60_000,
            );
        } else if r.get("log.retention.hours").is_some() {
            c.retention_ms = minutes_or_unlimited(
                r.int("log.retention.hours", 0, -1, i64::MAX / 3_600_000)?,
                3_600_000,
            );
        }
        if r.get("log.roll.ms").is_some() {
            c.segment_ms = r.int("log.roll.ms", 0, 1, i64::MAX)?;
        } else if r.get("log.roll.hours").is_some() {
            c.segment_ms = r.int("log.roll.hours", 0, 1, i64::MAX / 3_600_000)? * 3_600_000;
        }
        c.retention_bytes = r.int("log.retention.bytes", c.retention_bytes, -1, i64::MAX)?;
        c.segment_bytes = r.int(
            "log.segment.bytes",
            c.segment_bytes as i64,
            14,
            i32::MAX as i64,
        )? as i32;
        c.max_message_bytes = r.int(
            "message.max.bytes",
            c.max_message_bytes as i64,
            0,
            i32::MAX as i64,
        )? as i32;
        c.min_insync_replicas = r.int("min.insync.replicas", 1, 1, i32::MAX as i64)? as i32;
        c.flush_messages = r.int("log.flush.interval.messages", c.flush_messages, 1, i64::MAX)?;
        c.flush_ms = r.int("log.flush.interval.ms", c.flush_ms, 0, i64::MAX)?;
        // Validate the remaining synonyms the same way topic values are validated.
        for s in SPECS {
            for key in s.broker_keys {
                if let Some(v) = r.get(key) {
                    check_value(s, v).map_err(|e| match e {
                        TopicConfigError::Invalid { reason, .. } => ConfigError::Invalid {
                            key: (*key).to_string(),
                            value: v.to_string(),
                            reason,
                        },
                        TopicConfigError::Unknown(k) => ConfigError::Invalid {
                            key: k,
                            value: v.to_string(),
                            reason: "unknown".to_string(),
                        },
                    })?;
                    if s.name == "message.timestamp.type" {
                        c.message_timestamp_type =
                            parse_timestamp_type(v).unwrap_or(TimestampType::CreateTime);
                    }
                    c.apply_compression_key(s.name, v.trim());
                }
            }
        }
        Ok(c)
    }

    /// Kafka's built-in defaults.
    pub fn kafka_defaults() -> Self {
        TopicConfig {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            compression_type: CompressionType::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: kiln_kafka_codec::compression::LZ4_LEVEL_DEFAULT,
            compression_zstd_level: kiln_kafka_codec::compression::ZSTD_LEVEL_DEFAULT,
        }
    }

    /// This configuration with a topic's overrides applied; refuses unknown keys and bad values.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TopicConfigError> {
        let mut c = self.clone();
        for (k, v) in overrides {
            let s = spec_of(k).ok_or_else(|| TopicConfigError::Unknown(k.clone()))?;
            check_value(s, v)?;
            let num = |min: i64, max: i64| -> Result<i64, TopicConfigError> {
                parse_int(k, v, min, max).map_err(|e| TopicConfigError::Invalid {
                    key: k.clone(),
                    value: v.clone(),
                    reason: e.to_string(),
                })
            };
            match s.name {
                "retention.ms" => c.retention_ms = num(-1, i64::MAX)?,
                "retention.bytes" => c.retention_bytes = num(-1, i64::MAX)?,
                "segment.bytes" => c.segment_bytes = num(14, i32::MAX as i64)? as i32,
                "segment.ms" => c.segment_ms = num(1, i64::MAX)?,
                "max.message.bytes" => c.max_message_bytes = num(0, i32::MAX as i64)? as i32,
                "min.insync.replicas" => c.min_insync_replicas = num(1, i32::MAX as i64)? as i32,
                "flush.messages" => c.flush_messages = num(1, i64::MAX)?,
                "flush.ms" => c.flush_ms = num(0, i64::MAX)?,
                "message.timestamp.type" => {
                    c.message_timestamp_type =
                        parse_timestamp_type(v).unwrap_or(TimestampType::CreateTime)
                }
                _ => c.apply_compression_key(s.name, v.trim()),
            }
        }
        Ok(c)
    }
}

impl TopicConfig {
    /// Sets a compression key from a value [`check_value`] accepted.
    fn apply_compression_key(&mut self, key: &str, v: &str) {
        let level = || v.parse::<i32>().ok();
        match key {
            "compression.type" => {
                if let Some(t) = parse_compression_type(v) {
                    self.compression_type = t;
                }
            }
            "compression.gzip.level" => {
                self.compression_gzip_level = level().unwrap_or(self.compression_gzip_level);
            }
            "compression.lz4.level" => {
                self.compression_lz4_level = level().unwrap_or(self.compression_lz4_level);
            }
            "compression.zstd.level" => {
                self.compression_zstd_level = level().unwrap_or(self.compression_zstd_level);
            }
            _ => {}
        }
    }
}

fn minutes_or_unlimited(n: i64, unit_ms: i64) -> i64 {
    if n < 0 { -1 } else { n * unit_ms }
}

fn parse_timestamp_type(v: &str) -> Option<TimestampType> {
    match v {
        "CreateTime" => Some(TimestampType::CreateTime),
        "LogAppendTime" => Some(TimestampType::LogAppendTime),
        _ => None,
    }
}

/// Checks one value against its key: type, range, and for unsupported keys equality with the default.
pub fn check_value(s: &ConfigSpec, v: &str) -> Result<(), TopicConfigError> {
    let bad = |reason: &str| TopicConfigError::Invalid {
        key: s.name.to_string(),
        value: v.to_string(),
        reason: reason.to_string(),
    };
    let v = v.trim();
    match s.kind {
        ConfigType::Long | ConfigType::Int => {
            let n: i64 = v.parse().map_err(|_| bad("not an integer"))?;
            if s.kind == ConfigType::Int && (n < i32::MIN as i64 || n > i32::MAX as i64) {
                return Err(bad("out of range for an int"));
            }
        }
        ConfigType::Boolean => {
            if v != "true" && v != "false" {
                return Err(bad("expected true or false"));
            }
        }
        ConfigType::Double => {
            v.parse::<f64>().map_err(|_| bad("not a number"))?;
        }
        ConfigType::String | ConfigType::List => {}
    }
    match s.name {
        "cleanup.policy" if v != "delete" => {
            return Err(bad(
                "only cleanup.policy=delete is supported (no compaction yet)",
            ));
        }
        "compression.type" if parse_compression_type(v).is_none() => {
            return Err(bad(
                "expected one of uncompressed, zstd, lz4, snappy, gzip, producer",
            ));
        }
        "compression.gzip.level" if !(v == "-1" || in_range(v, 1, 9)) => {
            return Err(bad("expected -1 or a level in [1, 9]"));
        }
        "compression.lz4.level" if !in_range(v, 1, 17) => {
            return Err(bad("expected a level in [1, 17]"));
        }
        "compression.zstd.level" if !in_range(v, -131_072, 22) => {
            return Err(bad("expected a level in [-131072, 22]"));
        }
        "message.timestamp.type" if parse_timestamp_type(v).is_none() => {
            return Err(bad("expected CreateTime or LogAppendTime"));
        }
        _ => {}
    }
    if !s.supported && v != s.default {
        return Err(bad(
            "not supported by Kiln yet; only the default is accepted",
        ));
    }
    Ok(())
}

fn in_range(v: &str, min: i64, max: i64) -> bool {
    v.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n))
}

/// Where a reported value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// One row of DescribeConfigs for a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub kind: ConfigType,
    /// (name, value, source), most specific first, as Kafka reports synonyms.
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Every topic config with its effective value and source.
pub fn describe_topic(
    broker_raw: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    SPECS
        .iter()
        .map(|s| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(s.name) {
                synonyms.push((s.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            for key in s.broker_keys {
                if let Some(v) = broker_raw.get(*key) {
                    let v = broker_value(s, key, v);
                    synonyms.push(((*key).to_string(), v, ConfigSource::StaticBroker));
                }
            }
            synonyms.push((
                s.broker_keys.first().copied().unwrap_or(s.name).to_string(),
                s.default.to_string(),
                ConfigSource::Default,
            ));
            let (_, value, source) = synonyms[0].clone();
            DescribedConfig {
                name: s.name,
                value,
                source,
                read_only: false,
                kind: s.kind,
                synonyms,
            }
        })
        .collect()
}

/// Converts a broker synonym's value to the topic key's unit (hours and minutes to ms).
fn broker_value(s: &ConfigSpec, key: &str, v: &str) -> String {
    let scale = if key.ends_with(".hours") {
        3_600_000
    } else if key.ends_with(".minutes") {
        60_000
    } else {
        return v.trim().to_string();
    };
    match v.trim().parse::<i64>() {
        Ok(n) if n < 0 && s.name == "retention.ms" => "-1".to_string(),
        Ok(n) => n.saturating_mul(scale).to_string(),
        Err(_) => v.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_are_refused() {
        let base = TopicConfig::kafka_defaults();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = base.with_overrides(&o).expect("valid");
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);

        o.insert("segment.bytes".to_string(), "ten".to_string());
        assert!(matches!(
            base.with_overrides(&o),
            Err(TopicConfigError::Invalid { .. })
        ));
        let mut o = BTreeMap::new();
        o.insert("no.such.key".to_string(), "1".to_string());
        assert_eq!(
            base.with_overrides(&o),
            Err(TopicConfigError::Unknown("no.such.key".to_string()))
        );
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        assert!(base.with_overrides(&o).is_err());
        for bad in ["brotli", "none", "GZIP", ""] {
            let mut o = BTreeMap::new();
            o.insert("compression.type".to_string(), bad.to_string());
            assert!(base.with_overrides(&o).is_err(), "{bad}");
        }
        for (key, bad) in [
            ("compression.gzip.level", "10"),
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
        ] {
            let mut o = BTreeMap::new();
            o.insert(key.to_string(), bad.to_string());
            assert!(base.with_overrides(&o).is_err(), "{key}={bad}");
        }
        let mut o = BTreeMap::new();
        o.insert("compression.type".to_string(), "zstd".to_string());
        o.insert("compression.zstd.level".to_string(), "-5".to_string());
        let c = base.with_overrides(&o).expect("valid");
        assert_eq!(c.target_codec(), Some((Codec::Zstd, Some(-5))));
        o.insert("compression.type".to_string(), "uncompressed".to_string());
        let c = base.with_overrides(&o).expect("valid");
        assert_eq!(c.target_codec(), Some((Codec::None, None)));
        let mut raw = BTreeMap::new();
        raw.insert("compression.type".to_string(), "gzip".to_string());
        let c = TopicConfig::broker_defaults(&raw).expect("valid");
        assert_eq!(c.compression_type, CompressionType::Codec(Codec::Gzip));
        raw.insert("compression.type".to_string(), "brotli".to_string());
        assert!(TopicConfig::broker_defaults(&raw).is_err());
        let mut o = BTreeMap::new();
        o.insert("preallocate".to_string(), "false".to_string());
        assert!(
            base.with_overrides(&o).is_ok(),
            "an unsupported key at its default is fine"
        );
    }

    #[test]
    fn describe_reports_every_key_with_source() {
        let mut broker = BTreeMap::new();
        broker.insert("log.retention.hours".to_string(), "1".to_string());
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "1048576".to_string());
        let rows = describe_topic(&broker, &o);
        assert_eq!(rows.len(), SPECS.len());
        let get = |n: &str| rows.iter().find(|r| r.name == n).expect("present");
        assert_eq!(get("retention.ms").value, "3600000");
        assert_eq!(get("retention.ms").source, ConfigSource::StaticBroker);
        assert_eq!(get("segment.bytes").value, "1048576");
        assert_eq!(get("segment.bytes").source, ConfigSource::DynamicTopic);
        assert_eq!(get("max.message.bytes").value, "1048588");
        assert_eq!(get("max.message.bytes").source, ConfigSource::Default);
    }
}
