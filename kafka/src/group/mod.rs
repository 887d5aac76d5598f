//! Kafka's classic consumer-group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and
//! OffsetDelete, with committed offsets stored durably in an internal `__consumer_offsets` log.
//!
//! What it is not: the KIP-848 consumer protocol (ConsumerGroupHeartbeat), share groups, or
//! transactional offset commits; none of them is advertised.
//!
//! # Layout
//! - [`coordinator`]: the pure state machine ([`GroupCoordinator`]). No I/O, no clock, no async:
//!   requests and `tick(now_ms)` in; responses, deferred replies and records to persist out.
//! - [`service`]: the async shell ([`GroupService`]) on shard 0: decodes with
//!   `kiln-kafka-codec`, applies to the core, persists records, resolves waiting JoinGroup and
//!   SyncGroup requests, runs the timer task.
//! - [`record`]: the offsets log's record keys and values (Kafka's own `__consumer_offsets`
//!   schemas), with byte diagrams.
//! - [`subscription`]: reads subscribed topics from consumer-protocol member metadata.
//! - [`codes`]: the Kafka error codes used.
//!
//! # Durability
//! The offsets log lives in `<dir>/__consumer_offsets-0` (a Kiln segmented log with
//! `Durability::Durable`). An OffsetCommit, OffsetDelete or DeleteGroups response is sent only
//! after the fdatasync covering its records. On open, the log is replayed from its start, so
//! committed offsets (and each group's generation and protocol type) survive a restart; members
//! are not persisted and simply rejoin. The log is compacted by rewriting: when the records
//! appended since the last compaction reach `offsets_compact_records_min` and twice the live
//! state, a snapshot of the live state is appended and made durable, then the log start moves to
//! it (DeleteRecords), which deletes the older segments. Records produced during a compaction are
//! held back, appended right after it, and their requests wait for them.
//!
//! # Limits
//! Every count that grows with client input is bounded by [`GroupConfig`]: groups
//! (`groups_max`), members per group (`group_max_size`), protocols per member, bytes of member
//! metadata and assignments, bytes of commit metadata. Offsets of empty groups expire after
//! `offsets.retention.minutes` (KIP-211).

pub mod codes;
pub mod config;
pub mod coordinator;
pub mod record;
pub mod service;
pub mod subscription;

#[cfg(test)]
mod coordinator_tests;
#[cfg(test)]
mod service_tests;

use std::path::PathBuf;

pub use config::GroupConfig;
pub use coordinator::GroupCoordinator;
pub use service::GroupService;

/// `(api_key, min_version, max_version)` of every API the group coordinator implements, for
/// ApiVersions. OffsetCommit and OffsetFetch stop at v9: v10 names topics by id (KIP-848).
pub const GROUP_API_VERSIONS: &[(i16, i16, i16)] = &[
    (8, 2, 9),  // OffsetCommit
    (9, 1, 9),  // OffsetFetch
    (10, 0, 6), // FindCoordinator
    (11, 0, 9), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 6), // DescribeGroups
    (16, 0, 5), // ListGroups
    (42, 0, 2), // DeleteGroups
    (47, 0, 0), // OffsetDelete
];

/// Errors of the group service. Protocol-level failures (unknown member, bad generation, ...)
/// are not errors: they are Kafka error codes inside the response.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The API key or version is not one the group coordinator implements.
    #[error("API key {api_key} version {api_version} is not a group coordinator API")]
    UnsupportedApi { api_key: i16, api_version: i16 },
    /// The request body does not decode.
    #[error("malformed group request: {0}")]
    Decode(#[from] kiln_kafka_codec::DecodeError),
    /// The response does not encode at the request's version (a bug).
    #[error("group response does not encode: {0}")]
    Encode(#[from] kiln_kafka_codec::EncodeError),
    /// The offsets log failed; the broker should stop (a failed fsync is never retried).
    #[error("offsets log {op} in {dir}: {source}")]
    Storage {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: kiln_engine::log::LogError,
    },
    /// A batch of the offsets log could not be built or read.
    #[error("offsets log batch: {0}")]
    Batch(String),
    /// The offsets log failed while this request's records waited behind a compaction.
    #[error("offsets log write after compaction failed: {0}")]
    DeferredWrite(String),
    /// A record of the offsets log is not an offsets-log record.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// The service stopped while the request waited.
    #[error("group coordinator stopped")]
    Closed,
}
