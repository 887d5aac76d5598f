//! Kafka's classic consumer-group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and
//! OffsetDelete, with committed offsets stored durably in the internal `__consumer_offsets` topic.
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
//! # Partitions of `__consumer_offsets`
//! The offsets topic has `offsets.topic.num.partitions` partitions (Kafka's default 50), each a
//! directory `<dir>/__consumer_offsets-<n>` holding a Kiln segmented log with
//! `Durability::Durable`. A group's records all go to partition [`offsets_partition_for`]
//! (Kafka's `Utils.abs(groupId.hashCode()) % partitions`), so they stay in order. The topic is
//! created on the coordinator's first request (as Kafka creates it on the first
//! FindCoordinator) and its partition count is fixed from then on: at open, the partitions found
//! on disk are recovered whatever the configuration says (a data directory written with one
//! partition keeps one).
//!
//! # Durability
//! An OffsetCommit, OffsetDelete or DeleteGroups response is sent only after the fdatasync
//! covering its records. On open, every partition is replayed from its start, so committed
//! offsets (and each group's generation and protocol type) survive a restart; members are not
//! persisted and simply rejoin. Each partition is compacted by rewriting: when the records
//! appended to it since its last compaction reach `offsets_compact_records_min` and twice the
//! live state of its groups, a snapshot of that state is appended and made durable, then the log
//! start moves to it (DeleteRecords), which deletes the older segments. Records produced during
//! a compaction are held back, appended right after it, and their requests wait for them.
//!
//! # Limits
//! Every count that grows with client input is bounded by [`GroupConfig`]: groups
//! (`groups_max`), members per group (`group_max_size`), protocols per member, bytes of member
//! metadata and assignments, bytes of commit metadata. Offsets of empty groups expire after
//! `offsets.retention.minutes` (KIP-211).

pub mod codes;
pub mod config;
pub mod coordinator;
pub mod error_response;
pub mod record;
pub mod service;
pub mod subscription;

#[cfg(test)]
mod coordinator_tests;
#[cfg(test)]
mod service_tests;

#[cfg(test)]
mod partition_tests {
    use super::{java_string_hash, offsets_partition_for};

    #[test]
    fn hash_matches_java_string_hash_code() {
        // Values printed by Java 17's String.hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("group-1"), 293_427_299);
        assert_eq!(java_string_hash("test-group"), 627_841_412);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("consumer-group-\u{e9}"), 147_483_204);
        // A character outside the BMP counts as two UTF-16 code units.
        assert_eq!(java_string_hash("\u{1f600}grp"), 1_276_929_186);
    }

    #[test]
    fn partition_matches_kafka_partition_for() {
        // Kafka's Utils.abs(groupId.hashCode()) % 50, computed with Java 17.
        assert_eq!(offsets_partition_for("", 50), 0);
        // Math.abs, not `& 0x7fffffff` (which would give 36).
        assert_eq!(offsets_partition_for("my-group", 50), 12);
        assert_eq!(offsets_partition_for("group-1", 50), 49);
        assert_eq!(offsets_partition_for("test-group", 50), 12);
        // Utils.abs(Integer.MIN_VALUE) is 0.
        assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition_for("DESIGNING WORKHOUSES", 50), 0);
        assert_eq!(offsets_partition_for("consumer-group-\u{e9}", 50), 4);
        assert_eq!(offsets_partition_for("\u{1f600}grp", 50), 36);
        assert_eq!(offsets_partition_for("my-group", 7), 1);
        assert_eq!(offsets_partition_for("my-group", 1), 0);
        assert_eq!(offsets_partition_for("my-group", 0), 0);
    }
}

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

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, with
/// 32-bit wrap-around.
#[must_use]
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it:
/// `Utils.abs(groupId.hashCode()) % partitions`, where `Utils.abs` maps `i32::MIN` to 0 and is
/// `Math.abs` otherwise. `partitions` below 1 counts as 1.
#[must_use]
pub fn offsets_partition_for(group_id: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

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
    /// The log directory could not be listed for partitions of `__consumer_offsets`.
    #[error("listing {dir} for offsets partitions: {source}")]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `__consumer_offsets` does not exist yet and was not created.
    #[error("the offsets topic has not been created")]
    NoOffsetsTopic,
    /// The service stopped while the request waited.
    #[error("group coordinator stopped")]
    Closed,
}
