//! Broker configuration: Kafka's `server.properties`, with Kafka's defaults.
//!
//! [`BrokerConfig::from_properties`] reads every key the seed deployment uses plus the keys Kiln
//! honours; a value that does not parse or is out of range is refused with an error naming the key
//! and the value. Keys Kiln does not know are kept (so `DescribeConfigs` can echo them) and logged,
//! as Kafka does, because operators' files carry many keys for features a single node does not need
//! (`transaction.state.log.*`, `controller.quorum.voters`, ...).
//!
//! # Threads
//! Kafka sizes separate network and request-handler thread pools. Kiln runs one shard per core,
//! each doing its own network and disk I/O, so those keys are mapped onto shards:
//! - `num.io.threads` (default 8) caps the shard count: `shards = min(num.io.threads,
//!   available cores)`; `kiln.shards` overrides it exactly.
//! - `num.network.threads` (default 3) and `num.recovery.threads.per.data.dir` (default 1) are
//!   validated (>= 1) and otherwise have no effect: every shard accepts connections and recovers
//!   its own partitions.
//!
//! Pure: reading the file is the caller's business ([`BrokerConfig::load`] is a thin wrapper).

pub mod properties;
pub mod topic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use topic::{TopicConfig, TopicConfigError};

/// A bad configuration, naming the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Where the broker listens or what it advertises: `PLAINTEXT://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name (`PLAINTEXT`).
    pub name: String,
    /// Host; empty means all interfaces for a listener.
    pub host: String,
    pub port: u16,
}

/// Everything the broker reads from `server.properties`. Field names follow the Kafka key with units
/// last; limits end in `_max`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `broker.id` (or `node.id`); default 0 on a single node.
    pub broker_id: i32,
    /// `listeners`; default `PLAINTEXT://:9092`.
    pub listener: Endpoint,
    /// `advertised.listeners`; default the listener with an empty host replaced by 127.0.0.1.
    pub advertised: Endpoint,
    /// `num.network.threads` (validated, mapped onto shards).
    pub num_network_threads: u32,
    /// `num.io.threads` (caps the shard count).
    pub num_io_threads: u32,
    /// `kiln.shards`: exact shard count, overriding the mapping above.
    pub shards: Option<u32>,
    /// `socket.send.buffer.bytes`; -1 keeps the OS default.
    pub socket_send_buffer_bytes: i32,
    /// `socket.receive.buffer.bytes`; -1 keeps the OS default.
    pub socket_receive_buffer_bytes: i32,
    /// `socket.request.max.bytes`: a frame longer than this closes the connection.
    pub request_bytes_max: i32,
    /// `max.connections`: accepted connections beyond this are closed at once.
    pub connections_max: u32,
    /// `connections.max.idle.ms`: a connection that sends nothing for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `kiln.connection.first.request.timeout.ms`: a new connection that sends no request within
    /// this long is closed (it holds a descriptor and a `max.connections` slot).
    pub first_request_timeout_ms: u64,
    /// `queued.max.requests`: pipelined requests one connection may have in flight.
    pub queued_requests_max: u32,
    /// `fetch.max.bytes`: cap on one Fetch response, whatever the client asks.
    pub fetch_bytes_max: i32,
    /// `kiln.fetch.memory.bytes.max`: record bytes all in-flight fetches of one shard may hold.
    pub fetch_memory_bytes_max: u64,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions (KIP-227) the broker keeps.
    pub fetch_session_cache_slots: u32,
    /// `log.dirs` (or `log.dir`).
    pub log_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `num.recovery.threads.per.data.dir` (validated, no effect).
    pub num_recovery_threads_per_data_dir: u32,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `zookeeper.connect` (kept for compatibility; a single node does not use it).
    pub zookeeper_connect: Option<String>,
    /// `zookeeper.connection.timeout.ms`.
    pub zookeeper_connection_timeout_ms: i64,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `offsets.retention.minutes` (group coordinator).
    pub offsets_retention_minutes: i64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created
    /// (an existing one keeps its count).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (validated; one broker keeps one replica).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`: segment size of the `__consumer_offsets` partitions.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i64,
    /// Broker-level defaults of every topic config (`log.retention.ms`, `message.max.bytes`, ...).
    pub topic_defaults: TopicConfig,
    /// Every key as written in the file, for `DescribeConfigs`.
    pub raw: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// Reads and parses a `server.properties` file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_properties(properties::parse(&text))
    }

    /// Kafka's defaults with data under `data_dir`, listening on 127.0.0.1:9092: what `kiln up`
    /// starts.
    pub fn default_embedded(data_dir: &Path) -> Self {
        let mut props = BTreeMap::new();
        props.insert("log.dirs".to_string(), data_dir.display().to_string());
        props.insert(
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:9092".to_string(),
        );
        match Self::from_properties(props) {
            Ok(c) => c,
            // The inputs above are constants that parse; a failure is a bug.
            Err(e) => panic!("built-in configuration is invalid: {e}"),
        }
    }

    /// Builds the configuration from parsed properties, applying Kafka's defaults.
    pub fn from_properties(raw: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let r = Reader { raw: &raw };
        let broker_id = match r.get("node.id") {
            Some(_) => r.int("node.id", 0, 0, i32::MAX as i64)? as i32,
            None => r.int("broker.id", 0, 0, i32::MAX as i64)? as i32,
        };
        let listener_text = r.get("listeners").unwrap_or("PLAINTEXT://:9092");
        let listener = parse_listener("listeners", listener_text)?;
        let advertised = match r.get("advertised.listeners") {
            Some(v) => parse_listener("advertised.listeners", v)?,
            None => {
                let mut a = listener.clone();
                if a.host.is_empty() || a.host == "0.0.0.0" || a.host == "::" {
                    a.host = "127.0.0.1".to_string();
                }
                a
            }
        };
        if advertised.host.is_empty() {
            return Err(invalid(
                "advertised.listeners",
                r.get("advertised.listeners").unwrap_or(""),
                "the advertised host must not be empty",
            ));
        }
        let log_dirs = r
            .get("log.dirs")
            .or_else(|| r.get("log.dir"))
            .unwrap_or("/tmp/kafka-logs");
        let dirs: Vec<&str> = log_dirs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let log_dir = match dirs.as_slice() {
            [one] => PathBuf::from(one),
            [] => return Err(invalid("log.dirs", log_dirs, "no directory given")),
            _ => {
                return Err(invalid(
                    "log.dirs",
                    log_dirs,
                    "several data directories (JBOD) are not supported yet; give one",
                ));
            }
        };
        let shards = match r.get("kiln.shards") {
            Some(_) => Some(r.int("kiln.shards", 1, 1, 1024)? as u32),
            None => None,
        };
        let topic_defaults = TopicConfig::broker_defaults(&raw)?;
        let cfg = BrokerConfig {
            broker_id,
            listener,
            advertised,
            num_network_threads: r.int("num.network.threads", 3, 1, 1024)? as u32,
            num_io_threads: r.int("num.io.threads", 8, 1, 1024)? as u32,
            shards,
            socket_send_buffer_bytes: r.int(
                "socket.send.buffer.bytes",
                102_400,
                -1,
                i32::MAX as i64,
            )? as i32,
            socket_receive_buffer_bytes: r.int(
                "socket.receive.buffer.bytes",
                102_400,
                -1,
                i32::MAX as i64,
            )? as i32,
            request_bytes_max: r.int(
                "socket.request.max.bytes",
                104_857_600,
                1024,
                i32::MAX as i64,
            )? as i32,
            connections_max: r.int("max.connections", 10_000, 1, i32::MAX as i64)? as u32,
            connections_max_idle_ms: r.int("connections.max.idle.ms", 600_000, 1, i64::MAX)? as u64,
            first_request_timeout_ms: r.int(
                "kiln.connection.first.request.timeout.ms",
                10_000,
                1,
                i64::MAX,
            )? as u64,
            queued_requests_max: r.int("queued.max.requests", 500, 1, 100_000)? as u32,
            fetch_bytes_max: r.int("fetch.max.bytes", 57_671_680, 1024, i32::MAX as i64)? as i32,
            fetch_memory_bytes_max: r.int(
                "kiln.fetch.memory.bytes.max",
                256 * 1024 * 1024,
                1024 * 1024,
                i64::MAX,
            )? as u64,
            fetch_session_cache_slots: r.int(
                "max.incremental.fetch.session.cache.slots",
                1000,
                0,
                1_000_000,
            )? as u32,
            log_dir,
            num_partitions: r.int("num.partitions", 1, 1, 1_000_000)? as i32,
            default_replication_factor: r.int(
                "default.replication.factor",
                1,
                1,
                i16::MAX as i64,
            )? as i16,
            num_recovery_threads_per_data_dir: r.int(
                "num.recovery.threads.per.data.dir",
                1,
                1,
                1024,
            )? as u32,
            retention_check_interval_ms: r.int(
                "log.retention.check.interval.ms",
                300_000,
                1,
                i64::MAX,
            )?,
            zookeeper_connect: r.get("zookeeper.connect").map(str::to_string),
            zookeeper_connection_timeout_ms: r.int(
                "zookeeper.connection.timeout.ms",
                18_000,
                0,
                i32::MAX as i64,
            )?,
            auto_create_topics_enable: r.bool("auto.create.topics.enable", true)?,
            delete_topic_enable: r.bool("delete.topic.enable", true)?,
            offsets_retention_minutes: r.int(
                "offsets.retention.minutes",
                10_080,
                1,
                i32::MAX as i64,
            )?,
            offsets_topic_num_partitions: r.int(
                "offsets.topic.num.partitions",
                i64::from(crate::catalog::OFFSETS_TOPIC_PARTITIONS_DEFAULT),
                1,
                i64::from(crate::catalog::PARTITIONS_PER_TOPIC_MAX),
            )? as i32,
            offsets_topic_replication_factor: r.int(
                "offsets.topic.replication.factor",
                3,
                1,
                i16::MAX as i64,
            )? as i16,
            offsets_topic_segment_bytes: r.int(
                "offsets.topic.segment.bytes",
                104_857_600,
                1024,
                i32::MAX as i64,
            )? as u64,
            offsets_retention_check_interval_ms: r.int(
                "offsets.retention.check.interval.ms",
                600_000,
                1,
                i64::MAX,
            )?,
            group_initial_rebalance_delay_ms: r.int(
                "group.initial.rebalance.delay.ms",
                3_000,
                0,
                i32::MAX as i64,
            )?,
            group_min_session_timeout_ms: r.int(
                "group.min.session.timeout.ms",
                6_000,
                0,
                i32::MAX as i64,
            )?,
            group_max_session_timeout_ms: r.int(
                "group.max.session.timeout.ms",
                1_800_000,
                0,
                i32::MAX as i64,
            )?,
            topic_defaults,
            raw,
        };
        if cfg.group_min_session_timeout_ms > cfg.group_max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &cfg.group_min_session_timeout_ms.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        for key in cfg.raw.keys() {
            if !is_known_key(key) {
                tracing::warn!(key = %key, "configuration key is not used by Kiln");
            }
        }
        Ok(cfg)
    }

    /// Number of shards this configuration asks for on a machine with `cores` cores.
    pub fn shard_count(&self, cores: usize) -> usize {
        match self.shards {
            Some(n) => n as usize,
            None => (self.num_io_threads as usize).min(cores.max(1)),
        }
    }
}

/// Keys read above or by [`TopicConfig::broker_defaults`].
fn is_known_key(key: &str) -> bool {
    const KNOWN: &[&str] = &[
        "node.id",
        "broker.id",
        "listeners",
        "advertised.listeners",
        "log.dirs",
        "log.dir",
        "kiln.shards",
        "num.network.threads",
        "num.io.threads",
        "socket.send.buffer.bytes",
        "socket.receive.buffer.bytes",
        "socket.request.max.bytes",
        "max.connections",
        "connections.max.idle.ms",
        "kiln.connection.first.request.timeout.ms",
        "queued.max.requests",
        "fetch.max.bytes",
        "kiln.fetch.memory.bytes.max",
        "max.incremental.fetch.session.cache.slots",
        "num.partitions",
        "default.replication.factor",
        "num.recovery.threads.per.data.dir",
        "log.retention.check.interval.ms",
        "zookeeper.connect",
        "zookeeper.connection.timeout.ms",
        "auto.create.topics.enable",
        "delete.topic.enable",
        "offsets.retention.minutes",
        "offsets.topic.num.partitions",
        "offsets.topic.replication.factor",
        "offsets.topic.segment.bytes",
        "offsets.retention.check.interval.ms",
        "group.initial.rebalance.delay.ms",
        "group.min.session.timeout.ms",
        "group.max.session.timeout.ms",
    ];
    KNOWN.contains(&key) || topic::broker_key_known(key)
}

fn parse_listener(key: &str, value: &str) -> Result<Endpoint, ConfigError> {
    let first = value.split(',').map(str::trim).find(|s| !s.is_empty());
    let Some(first) = first else {
        return Err(invalid(key, value, "no listener given"));
    };
    if value.split(',').filter(|s| !s.trim().is_empty()).count() > 1 {
        return Err(invalid(
            key,
            value,
            "only one PLAINTEXT listener is supported on a single node",
        ));
    }
    let Some((name, rest)) = first.split_once("://") else {
        return Err(invalid(key, value, "expected NAME://host:port"));
    };
    if name != "PLAINTEXT" {
        return Err(invalid(
            key,
            value,
            "only PLAINTEXT listeners are supported (no TLS or SASL yet)",
        ));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(invalid(key, value, "expected NAME://host:port"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, value, "port is not a number in 0..=65535"))?;
    Ok(Endpoint {
        name: name.to_string(),
        host: host.to_string(),
        port,
    })
}

/// Typed access to the raw map, refusing bad values with the key named.
pub(crate) struct Reader<'a> {
    pub(crate) raw: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(|s| s.trim())
    }

    pub(crate) fn int(
        &self,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_int(key, v, min, max),
        }
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_bool(key, v),
        }
    }
}

pub(crate) fn parse_int(key: &str, v: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "not an integer"))?;
    if n < min || n > max {
        return Err(invalid(key, v, format!("must be in {min}..={max}")));
    }
    Ok(n)
}

pub(crate) fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> BTreeMap<String, String> {
        properties::parse(text)
    }

    #[test]
    fn seed_server_properties_parse_with_kafka_defaults() {
        let cfg = BrokerConfig::from_properties(props(
            "broker.id=0\nlisteners=PLAINTEXT://node1:9092\nnum.network.threads=3\n\
             num.io.threads=8\nsocket.send.buffer.bytes=102400\nsocket.receive.buffer.bytes=102400\n\
             socket.request.max.bytes=104857600\nlog.dirs=/data/kafka\nnum.partitions=1\n\
             default.replication.factor=3\nnum.recovery.threads.per.data.dir=1\n\
             log.flush.interval.messages=10000\nlog.flush.interval.ms=1000\nlog.retention.hours=168\n\
             log.segment.bytes=1073741824\nlog.retention.check.interval.ms=300000\n\
             zookeeper.connect=h1:2181,h2:2181,h3:2181\nzookeeper.connection.timeout.ms=6000\n",
        ))
        .expect("seed config parses");
        assert_eq!(cfg.broker_id, 0);
        assert_eq!(cfg.listener.host, "node1");
        assert_eq!(cfg.advertised.host, "node1");
        assert_eq!(cfg.advertised.port, 9092);
        assert_eq!(cfg.log_dir, PathBuf::from("/data/kafka"));
        assert_eq!(cfg.request_bytes_max, 104_857_600);
        assert_eq!(cfg.default_replication_factor, 3);
        assert_eq!(cfg.topic_defaults.flush_messages, 10_000);
        assert_eq!(cfg.topic_defaults.flush_ms, 1_000);
        assert_eq!(cfg.topic_defaults.retention_ms, 168 * 3_600_000);
        assert!(cfg.auto_create_topics_enable);
        assert_eq!(cfg.shard_count(2), 2);
        assert_eq!(cfg.shard_count(64), 8);
    }

    #[test]
    fn empty_file_gives_kafka_defaults() {
        let cfg = BrokerConfig::from_properties(BTreeMap::new()).expect("defaults");
        assert_eq!(cfg.listener.port, 9092);
        assert_eq!(cfg.advertised.host, "127.0.0.1");
        assert_eq!(cfg.num_partitions, 1);
        assert_eq!(cfg.topic_defaults.max_message_bytes, 1_048_588);
        assert_eq!(cfg.topic_defaults.segment_bytes, 1_073_741_824);
        assert_eq!(cfg.topic_defaults.retention_ms, 604_800_000);
        assert_eq!(cfg.topic_defaults.flush_messages, i64::MAX);
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let err = BrokerConfig::from_properties(props("num.partitions=lots\n"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("num.partitions") && err.contains("lots"),
            "{err}"
        );
        let err = BrokerConfig::from_properties(props("listeners=SSL://:9093\n"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("listeners") && err.contains("SSL://:9093"),
            "{err}"
        );
        let err = BrokerConfig::from_properties(props("auto.create.topics.enable=yes\n"))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("auto.create.topics.enable"), "{err}");
        let err = BrokerConfig::from_properties(props("log.retention.hours=-5\n"))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("log.retention.hours"), "{err}");
    }

    #[test]
    fn offsets_topic_keys_parse_with_kafka_defaults() {
        let cfg = BrokerConfig::from_properties(BTreeMap::new()).expect("defaults");
        assert_eq!(cfg.offsets_topic_num_partitions, 50);
        assert_eq!(cfg.offsets_topic_replication_factor, 3);
        assert_eq!(cfg.offsets_topic_segment_bytes, 104_857_600);
        assert_eq!(cfg.offsets_retention_check_interval_ms, 600_000);
        let cfg = BrokerConfig::from_properties(props(
            "offsets.topic.num.partitions=7\noffsets.topic.replication.factor=1\n\
             offsets.topic.segment.bytes=1048576\noffsets.retention.check.interval.ms=1000\n",
        ))
        .expect("parses");
        assert_eq!(cfg.offsets_topic_num_partitions, 7);
        assert_eq!(cfg.offsets_topic_replication_factor, 1);
        assert_eq!(cfg.offsets_topic_segment_bytes, 1_048_576);
        assert_eq!(cfg.offsets_retention_check_interval_ms, 1000);
        for bad in [
            "offsets.topic.num.partitions=0",
            "offsets.topic.replication.factor=0",
            "offsets.topic.segment.bytes=x",
        ] {
            let err = BrokerConfig::from_properties(props(bad))
                .expect_err("refused")
                .to_string();
            let key = bad.split('=').next().unwrap_or_default();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn retention_precedence_is_ms_then_minutes_then_hours() {
        let cfg = BrokerConfig::from_properties(props(
            "log.retention.hours=1\nlog.retention.minutes=2\n",
        ))
        .expect("parses");
        assert_eq!(cfg.topic_defaults.retention_ms, 120_000);
        let cfg = BrokerConfig::from_properties(props(
            "log.retention.hours=1\nlog.retention.minutes=2\nlog.retention.ms=5\n",
        ))
        .expect("parses");
        assert_eq!(cfg.topic_defaults.retention_ms, 5);
    }

    #[test]
    fn embedded_default_listens_on_loopback() {
        let cfg = BrokerConfig::default_embedded(Path::new("/tmp/x"));
        assert_eq!(cfg.listener.host, "127.0.0.1");
        assert_eq!(cfg.advertised.host, "127.0.0.1");
        assert_eq!(cfg.log_dir, PathBuf::from("/tmp/x"));
    }
}
