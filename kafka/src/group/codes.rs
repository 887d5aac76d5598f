//! Kafka error codes the group coordinator answers with (Apache Kafka's `Errors` enum numbering).

/// No error.
pub const NONE: i16 = 0;
/// The topic or partition does not exist on this broker.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The committed metadata string is longer than `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
/// Unexpected failure on the broker (a bug).
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// The coordinator is not available: a group being deleted at that instant, the offsets log
/// busy, or the coordinator stopping. Retriable.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// This broker is not (or no longer) the group's coordinator: its offsets log failed, as Kafka
/// answers after a storage error. The client finds the coordinator again.
pub const NOT_COORDINATOR: i16 = 16;
/// The generation id in the request is not the group's current generation.
pub const ILLEGAL_GENERATION: i16 = 22;
/// The member's protocol type or protocols do not match the group's.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
/// The group id is empty or otherwise unusable.
pub const INVALID_GROUP_ID: i16 = 24;
/// The member id is not known to the group.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// The session timeout is outside `group.min.session.timeout.ms..=group.max.session.timeout.ms`.
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
/// The group is rebalancing; the member must rejoin.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// The request is malformed or asks for something this coordinator does not do.
pub const INVALID_REQUEST: i16 = 42;
/// The group still has members.
pub const NON_EMPTY_GROUP: i16 = 68;
/// The group does not exist.
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// JoinGroup v4+: the first join must be repeated with the member id in the response.
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// The group already has `group.max.size` members (or the coordinator holds its maximum of groups).
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
/// Another member with the same `group.instance.id` replaced this one.
pub const FENCED_INSTANCE_ID: i16 = 82;
/// OffsetDelete: the group's members are still subscribed to the topic.
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
