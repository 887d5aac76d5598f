//! A minimal blocking Kafka client over kiln-kafka-codec: version negotiation, topic set-up
//! and request/response calls. The load loops in [`super::load`] pipeline on their own.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_kafka_codec::generated::api_versions_request::ApiVersionsRequest;
use kiln_kafka_codec::generated::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kiln_kafka_codec::generated::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kiln_kafka_codec::generated::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kiln_kafka_codec::{ApiKey, RequestBody, ResponseBody, frame};

use crate::error::{LoadError, Result};
use crate::net::{FrameReader, connect};

pub const CLIENT_ID: &str = "kiln-load";
/// Largest response accepted (a Fetch may carry up to fetch.max.bytes plus overhead).
pub const FRAME_MAX: usize = 128 << 20;
/// Kafka's error code for an existing topic.
const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNSUPPORTED_VERSION: i16 = 35;

/// Highest versions the load generator uses (newer ones add nothing it needs; Fetch 13+ and
/// Produce 13 name topics by id).
const CAP: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 11),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::Metadata, 12),
    (ApiKey::CreateTopics, 7),
];

/// Frames requests with increasing correlation ids (one per connection).
#[derive(Debug, Default)]
pub struct Encoder {
    correlation: i32,
}

impl Encoder {
    /// Encodes `body` at `version` as a frame into `out` and returns its correlation id.
    pub fn encode(&mut self, body: &RequestBody, version: i16, out: &mut Vec<u8>) -> Result<i32> {
        self.correlation = self.correlation.wrapping_add(1);
        let corr = self.correlation;
        frame::encode_request_frame(corr, Some(CLIENT_ID), version, body, out)
            .map_err(|e| LoadError::Protocol(format!("encode {:?}: {e}", body.api_key())))?;
        Ok(corr)
    }
}

/// One connection with negotiated versions.
pub struct Client {
    pub stream: TcpStream,
    pub reader: FrameReader,
    pub versions: HashMap<i16, i16>,
    pub addr: String,
    encoder: Encoder,
}

impl Client {
    pub fn connect(addr: &str) -> Result<Self> {
        let stream = connect(addr, Duration::from_secs(10))
            .map_err(LoadError::io(format!("connect {addr}")))?;
        let read_half = stream.try_clone().map_err(LoadError::io("clone socket"))?;
        // Set-up calls time out (a broker that accepts but never answers must not hang the
        // run); the load loops block without a limit.
        read_half
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(LoadError::io("set timeout"))?;
        let mut c = Client {
            stream,
            reader: FrameReader::new(read_half, FRAME_MAX),
            versions: HashMap::new(),
            addr: addr.to_owned(),
            encoder: Encoder::default(),
        };
        c.negotiate()?;
        Ok(c)
    }

    /// Removes the set-up read timeout before the socket is used by a load loop.
    pub fn unlimited(self) -> Result<Self> {
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(LoadError::io("set timeout"))?;
        Ok(self)
    }

    fn negotiate(&mut self) -> Result<()> {
        let req = RequestBody::ApiVersions(ApiVersionsRequest {
            client_software_name: "kiln-load".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
        });
        let mut resp = self.call_at(&req, 3)?;
        if let ResponseBody::ApiVersions(r) = &resp
            && r.error_code == UNSUPPORTED_VERSION
        {
            resp = self.call_at(&req, 0)?;
        }
        let ResponseBody::ApiVersions(r) = resp else {
            return Err(LoadError::Protocol(
                "ApiVersions: unexpected response".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(LoadError::Server(format!(
                "ApiVersions error {}",
                r.error_code
            )));
        }
        for k in r.api_keys {
            let Some(key) = ApiKey::from_i16(k.api_key) else {
                continue;
            };
            let mut v = k.max_version.min(key.max_version());
            if let Some((_, cap)) = CAP.iter().find(|(c, _)| *c == key) {
                v = v.min(*cap);
            }
            if v >= k.min_version.max(key.min_version()) {
                self.versions.insert(k.api_key, v);
            }
        }
        Ok(())
    }

    /// The version to use for `key`, or an error naming the API the broker lacks.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        self.versions.get(&key.key()).copied().ok_or_else(|| {
            LoadError::Server(format!(
                "{} {}: API {key:?} not offered at a usable version",
                self.addr,
                key.key()
            ))
        })
    }

    /// Encodes `body` at `version` as a frame into `out` and returns its correlation id.
    pub fn encode(&mut self, body: &RequestBody, version: i16, out: &mut Vec<u8>) -> Result<i32> {
        self.encoder.encode(body, version, out)
    }

    fn call_at(&mut self, body: &RequestBody, version: i16) -> Result<ResponseBody> {
        let mut out = Vec::new();
        let corr = self.encode(body, version, &mut out)?;
        self.stream.write_all(&out).map_err(LoadError::io("send"))?;
        let f = self
            .reader
            .next_frame_owned()
            .map_err(LoadError::io("read response"))?;
        let (h, resp) = frame::decode_response_frame(body.api_key().key(), version, Bytes::from(f))
            .map_err(|e| LoadError::Protocol(format!("{:?} response: {e}", body.api_key())))?;
        if h.correlation_id != corr {
            return Err(LoadError::Protocol(format!(
                "correlation {} for request {corr}",
                h.correlation_id
            )));
        }
        Ok(resp)
    }

    /// One request, one response, at the negotiated version.
    pub fn call(&mut self, body: &RequestBody) -> Result<ResponseBody> {
        let v = self.version(body.api_key())?;
        self.call_at(body, v)
    }
}

/// Where a topic's partitions live.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    /// partition -> leader address.
    pub leaders: Vec<(i32, String)>,
}

/// Creates `topic` with `partitions` (RF 1, or whatever the broker does on auto-create), waits
/// until every partition has a leader and returns where they are.
pub fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> Result<TopicLayout> {
    let mut c = Client::connect(bootstrap)?;
    if c.version(ApiKey::CreateTopics).is_ok() {
        let req = RequestBody::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: topic.to_owned(),
                num_partitions: partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| {
                        kiln_kafka_codec::generated::create_topics_request::CreatableTopicConfig {
                            name: k.clone(),
                            value: Some(v.clone()),
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            timeout_ms: 30_000,
            validate_only: false,
        });
        if let ResponseBody::CreateTopics(r) = c.call(&req)? {
            for t in r.topics {
                if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
                    return Err(LoadError::Server(format!(
                        "CreateTopics {topic}: error {} {}",
                        t.error_code,
                        t.error_message.unwrap_or_default()
                    )));
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = RequestBody::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some(topic.to_owned()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: true,
            ..Default::default()
        });
        if let ResponseBody::Metadata(m) = c.call(&req)? {
            let brokers: HashMap<i32, String> = m
                .brokers
                .iter()
                .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
                .collect();
            if let Some(t) = m.topics.iter().find(|t| t.name.as_deref() == Some(topic)) {
                let mut leaders: Vec<(i32, String)> = t
                    .partitions
                    .iter()
                    .filter(|p| p.error_code == 0 && p.leader_id >= 0)
                    .filter_map(|p| {
                        brokers
                            .get(&p.leader_id)
                            .map(|a| (p.partition_index, a.clone()))
                    })
                    .collect();
                leaders.sort();
                if t.error_code == 0 && !leaders.is_empty() && leaders.len() == t.partitions.len() {
                    // Metadata can name a leader before that broker serves the partition:
                    // ListOffsets (retried on NOT_LEADER and friends) proves it does.
                    let ids: Vec<i32> = leaders.iter().map(|l| l.0).collect();
                    list_offsets(&mut c, topic, &ids, -1)?;
                    return Ok(TopicLayout { leaders });
                }
            }
        }
        if Instant::now() > deadline {
            return Err(LoadError::Server(format!(
                "topic {topic}: partitions have no leader after 30s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The offset at `timestamp` (-1 latest, -2 earliest) of each partition, retrying for a while
/// on retriable errors (a just-created partition's leader may not be ready yet).
pub fn list_offsets(
    c: &mut Client,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<HashMap<i32, i64>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match list_offsets_once(c, topic, partitions, timestamp) {
            Err(LoadError::Server(msg))
                if Instant::now() < deadline && msg.contains("retriable") =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
/// REPLICA_NOT_AVAILABLE, OFFSET_NOT_AVAILABLE.
const RETRIABLE: &[i16] = &[6, 3, 5, 9, 78];

fn list_offsets_once(
    c: &mut Client,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<HashMap<i32, i64>> {
    let req = RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.to_owned(),
            partitions: partitions
                .iter()
                .map(|&p| ListOffsetsPartition {
                    partition_index: p,
                    timestamp,
                    ..Default::default()
                })
                .collect(),
        }],
        ..Default::default()
    });
    let ResponseBody::ListOffsets(r) = c.call(&req)? else {
        return Err(LoadError::Protocol(
            "ListOffsets: unexpected response".into(),
        ));
    };
    let mut out = HashMap::new();
    for t in r.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                let kind = if RETRIABLE.contains(&p.error_code) {
                    " (retriable)"
                } else {
                    ""
                };
                return Err(LoadError::Server(format!(
                    "ListOffsets {topic}/{}: error {}{kind}",
                    p.partition_index, p.error_code
                )));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}
