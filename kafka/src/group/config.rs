//! The group coordinator's configuration, with Kafka's names and defaults.

/// Settings of the group coordinator. Kafka's property names are given per field; limits that
/// Kafka does not have are Kiln's own and named `*_max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000): how long the first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes` (10080), in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (4096): longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_bytes_max: usize,
    /// `group.max.size`: members (and pending members) per group; Kafka's default is unlimited,
    /// Kiln's 10000. Beyond it JoinGroup gets GROUP_MAX_SIZE_REACHED.
    pub group_max_size: usize,
    /// Groups held by the coordinator (100000); a new group beyond it is refused.
    pub groups_max: usize,
    /// Protocols one member may offer in JoinGroup (64).
    pub protocols_max: usize,
    /// Bytes of one protocol's member metadata (1 MiB).
    pub member_metadata_bytes_max: usize,
    /// Bytes of one member's assignment in SyncGroup (1 MiB).
    pub member_assignment_bytes_max: usize,
    /// `offsets.topic.num.partitions` (50): partitions of `__consumer_offsets` when the
    /// coordinator creates it. A topic found on disk keeps the count it was created with.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.segment.bytes` (104857600): segment size of each offsets partition.
    pub offsets_segment_bytes: u64,
    /// The offsets log is compacted at open when it holds at least this many records and more
    /// than twice as many as are live (10000).
    pub offsets_compact_records_min: u64,
    /// This broker, as FindCoordinator reports it: `broker.id` / `node.id`.
    pub node_id: i32,
    /// The advertised host of this broker.
    pub host: String,
    /// The advertised port of this broker.
    pub port: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_bytes_max: 4_096,
            group_max_size: 10_000,
            groups_max: 100_000,
            protocols_max: 64,
            member_metadata_bytes_max: 1 << 20,
            member_assignment_bytes_max: 1 << 20,
            offsets_topic_partitions: crate::catalog::OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            offsets_segment_bytes: 100 << 20,
            offsets_compact_records_min: 10_000,
            node_id: 0,
            host: "127.0.0.1".to_owned(),
            port: 9092,
        }
    }
}
