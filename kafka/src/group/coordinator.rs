//! The classic group protocol as a pure state machine.
//!
//! [`GroupCoordinator`] does no I/O and reads no clock: every call takes `now_ms`, and every
//! effect comes back as data.
//!
//! - Requests that answer at once (Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//!   DescribeGroups, ListGroups, DeleteGroups, OffsetDelete) return their response.
//! - JoinGroup and SyncGroup take a [`Token`] and may answer later: their responses, and those of
//!   any other waiting request they complete, are queued and drained with
//!   [`GroupCoordinator::take_replies`]. A JoinGroup waits until the rebalance completes; a
//!   follower's SyncGroup waits for the leader's assignment.
//! - Changes to durable state (committed offsets, offset tombstones, group generations) are queued
//!   as [`LogRecord`]s and drained with [`GroupCoordinator::take_records`]. The shell must make
//!   them durable BEFORE it sends the response of the request that produced them.
//! - [`GroupCoordinator::tick`] advances timers: session expiry, pending-member expiry, the initial
//!   rebalance delay, rebalance and sync timeouts, and offsets retention.
//!
//! The states follow Apache Kafka's classic coordinator:
//!
//! ```text
//!            join                  all joined / timeout         leader SyncGroup
//!   Empty ---------> PreparingRebalance ----------> CompletingRebalance ----------> Stable
//!     ^                  ^   |  (no member left)           |                          |
//!     |                  |   +---> Empty                   | member joins/leaves/     |
//!     |                  +---------------------------------+ expires                  |
//!     |                  +--------------------------------------------------------- --+
//!     +-- DeleteGroups / retention removes Empty groups (they become Dead and vanish)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::GroupConfig;
use super::codes;
use super::record::{GroupValue, LogRecord};
use super::subscription;

/// Identifies a waiting JoinGroup or SyncGroup request; chosen by the caller.
pub type Token = u64;

/// Longest group id, protocol type or protocol name accepted: the offsets log stores them as
/// Kafka `string`s, whose length is an i16.
pub const NAME_BYTES_MAX: usize = i16::MAX as usize;
/// Bytes of the client id kept at the front of a generated member id.
const CLIENT_ID_IN_MEMBER_ID_MAX: usize = 1024;

/// The protocol type of Kafka consumers; only such groups have subscriptions the coordinator reads.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group's state, named as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group does not exist (reported for unknown groups).
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and responses, independent of wire versions.

/// A JoinGroup request.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The wire version; v4+ requires a known member id, v9+ supports skipping assignment.
    pub version: i16,
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// Already defaulted to the session timeout by the caller when absent (v0) or -1.
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub client_id: String,
    pub client_host: String,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment); only the leader's are used.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: i16) -> Self {
        Self {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A deferred response, ready for the request that waits under its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

/// A Heartbeat request.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving; LeaveGroup v0-2 carry exactly one, without an instance id.
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// The outcome for one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: i16,
}

/// A LeaveGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    /// The top-level error; v0-2 report a member's error here.
    pub error: i16,
    pub members: Vec<LeftMember>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, Default)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The wire version; v9+ answers GROUP_ID_NOT_FOUND where older versions say ILLEGAL_GENERATION.
    pub version: i16,
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Per-topic, per-partition error codes, in request order.
pub type PartitionErrors = Vec<(String, Vec<(i32, i16)>)>;

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

/// One group's OffsetFetch result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedGroup {
    pub group_id: String,
    pub error: i16,
    pub topics: Vec<(String, Vec<FetchedPartition>)>,
}

/// One member in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One group in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error: i16,
    pub error_message: Option<String>,
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

/// One group in a ListGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// An OffsetDelete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    pub error: i16,
    pub topics: PartitionErrors,
}

// ---------------------------------------------------------------------------------------------
// State.

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug)]
struct Member {
    /// Join order; the earliest joined member becomes leader when one must be chosen.
    seq: u64,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// The waiting JoinGroup (token, wire version).
    awaiting_join: Option<(Token, i16)>,
    awaiting_sync: Option<Token>,
    /// The member is removed when no heartbeat arrives by then (unless it waits for a join or sync).
    session_deadline_ms: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// The timer that completes a PreparingRebalance.
#[derive(Debug, Clone, Copy)]
enum JoinTimer {
    /// Kafka's InitialDelayedJoin: the first rebalance of an empty group waits
    /// `group.initial.rebalance.delay.ms`, extended while new members keep arriving, up to the
    /// rebalance timeout in total (`end_ms`). It completes only when the timer fires, never
    /// inside a JoinGroup: with a zero delay, members arriving before the next tick still join
    /// the first generation, as they do in Kafka, whose timer fires on another thread.
    Initial {
        deadline_ms: u64,
        delay_ms: u64,
        end_ms: u64,
    },
    /// Kafka's DelayedJoin: completes when every member has rejoined, or at the rebalance timeout.
    Rebalance { deadline_ms: u64 },
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    state_since_ms: u64,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, u64>,
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    /// CompletingRebalance gives up on members that do not SyncGroup by then.
    sync_deadline_ms: Option<u64>,
    /// Topics the members subscribe to, when every member's subscription could be read.
    subscribed_topics: Option<BTreeSet<String>>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    fn new(now_ms: u64) -> Self {
        Self {
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            new_member_added: false,
            join_timer: None,
            sync_deadline_ms: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: u64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Kafka's `isStaticMemberFenced` and `validateMember` in one: `Err(code)` when the request's
    /// identity does not name a current member.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(codes::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => Err(codes::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(codes::UNKNOWN_MEMBER_ID),
        }
    }

    /// Protocols every member (and the candidate, when given) supports, in the order of the first
    /// member's preference.
    fn candidate_protocols(&self, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut lists = self
            .members
            .values()
            .map(|m| m.protocols.as_slice())
            .chain(extra);
        let Some(first) = lists.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
        for list in lists {
            candidates.retain(|c| list.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && !self.candidate_protocols(Some(protocols)).is_empty()
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol among those all
    /// members support; the most votes win, ties going to the earlier candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None);
        let mut votes = vec![0_usize; candidates.len()];
        for member in self.members.values() {
            if let Some(i) = member
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|(_, bv)| *v > bv) {
                best = Some((i, *v));
            }
        }
        best.and_then(|(i, _)| candidates.get(i).cloned())
    }

    fn members_in_join_order(&self) -> Vec<(&String, &Member)> {
        let mut members: Vec<_> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.seq);
        members
    }

    fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| u64::try_from(m.rebalance_timeout_ms).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// The earliest timer of this group: a session, a pending member, a join or sync deadline.
    fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline_ms);
        let join = match self.join_timer {
            Some(JoinTimer::Initial { deadline_ms, .. } | JoinTimer::Rebalance { deadline_ms }) => {
                Some(deadline_ms)
            }
            None => None,
        };
        sessions
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(self.sync_deadline_ms)
            .min()
    }

    fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    fn is_subscribed_to(&self, topic: &str) -> bool {
        // Unknown subscriptions count as subscribed, so nothing a member reads is deleted.
        self.subscribed_topics
            .as_ref()
            .is_none_or(|t| t.contains(topic))
    }

    fn current_join_response(&self, member_id: &str) -> JoinResponse {
        let is_leader = self.is_leader(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            self.members_in_join_order()
                .into_iter()
                .map(|(id, m)| JoinMember {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: codes::NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members,
        }
    }
}

/// The classic group coordinator of one broker: every group, its members and committed offsets.
#[derive(Debug)]
pub struct GroupCoordinator {
    cfg: GroupConfig,
    groups: BTreeMap<String, Group>,
    member_seq: u64,
    id_state: u64,
    replies: Vec<(Token, Reply)>,
    records: Vec<LogRecord>,
    next_retention_check_ms: u64,
}

impl GroupCoordinator {
    /// An empty coordinator; `seed` makes generated member ids unique across restarts.
    #[must_use]
    pub fn new(cfg: GroupConfig, seed: u64) -> Self {
        Self {
            cfg,
            groups: BTreeMap::new(),
            member_seq: 0,
            id_state: seed,
            replies: Vec::new(),
            records: Vec::new(),
            next_retention_check_ms: 0,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// Deferred responses completed since the last call.
    pub fn take_replies(&mut self) -> Vec<(Token, Reply)> {
        std::mem::take(&mut self.replies)
    }

    /// Records to make durable, in order, since the last call.
    pub fn take_records(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.records)
    }

    /// Number of groups held.
    #[must_use]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Records that restate everything durable the coordinator holds: each group's metadata,
    /// then its committed offsets. Appended to the offsets log, they make every earlier record
    /// redundant, so the log can drop the segments before them.
    #[must_use]
    pub fn snapshot_records(&self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for (group_id, group) in &self.groups {
            out.push(LogRecord::Group {
                group_id: group_id.clone(),
                value: Some(GroupValue {
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    generation_id: group.generation_id,
                    protocol_name: group.protocol_name.clone(),
                    leader: group.leader_id.clone(),
                    state_timestamp_ms: i64::try_from(group.state_since_ms).unwrap_or(i64::MAX),
                }),
            });
            for ((topic, partition), value) in &group.offsets {
                out.push(LogRecord::Offset {
                    group_id: group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(value.clone()),
                });
            }
        }
        out
    }

    // -- Recovery ---------------------------------------------------------------------------

    /// Replays one record of the offsets log (recovery); later records win.
    pub fn replay(&mut self, record: &LogRecord, now_ms: u64) {
        match record {
            LogRecord::Offset {
                group_id,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => {
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(now_ms));
                    group.offsets.insert((topic.clone(), *partition), v.clone());
                }
                None => {
                    if let Some(group) = self.groups.get_mut(group_id) {
                        group.offsets.remove(&(topic.clone(), *partition));
                    }
                }
            },
            LogRecord::Group { group_id, value } => match value {
                Some(v) => {
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(now_ms));
                    group.generation_id = v.generation_id;
                    group.protocol_type = if v.protocol_type.is_empty() {
                        None
                    } else {
                        Some(v.protocol_type.clone())
                    };
                }
                None => {
                    self.groups.remove(group_id);
                }
            },
        }
    }

    // -- JoinGroup --------------------------------------------------------------------------

    /// JoinGroup. The response arrives through [`Self::take_replies`] under `token`, now or when
    /// the rebalance completes.
    pub fn join(&mut self, now_ms: u64, token: Token, req: JoinRequest) {
        tracing::debug!(group = %req.group_id, member = %req.member_id, token, "JoinGroup");
        if let Err(code) = self.validate_join(&req) {
            self.reply_join(token, JoinResponse::error(code, &req.member_id));
            return;
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                self.reply_join(
                    token,
                    JoinResponse::error(codes::UNKNOWN_MEMBER_ID, &req.member_id),
                );
                return;
            }
            if self.groups.len() >= self.cfg.groups_max {
                tracing::warn!(group = %req.group_id, max = self.cfg.groups_max, "refusing a new group: groups_max reached");
                self.reply_join(
                    token,
                    JoinResponse::error(codes::GROUP_MAX_SIZE_REACHED, ""),
                );
                return;
            }
            self.groups.insert(req.group_id.clone(), Group::new(now_ms));
        }
        let group_id = req.group_id.clone();
        let Some(group) = self.groups.get(&group_id) else {
            return;
        };
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            self.reply_join(
                token,
                JoinResponse::error(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id),
            );
            return;
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(now_ms, token, req);
        } else {
            self.join_known_member(now_ms, token, req);
        }
        self.try_complete_join(&group_id, now_ms, false);
    }

    fn validate_join(&self, req: &JoinRequest) -> Result<(), i16> {
        if req.group_id.is_empty() || req.group_id.len() > NAME_BYTES_MAX {
            return Err(codes::INVALID_GROUP_ID);
        }
        if req.session_timeout_ms < self.cfg.min_session_timeout_ms
            || req.session_timeout_ms > self.cfg.max_session_timeout_ms
        {
            return Err(codes::INVALID_SESSION_TIMEOUT);
        }
        if req.protocols.len() > self.cfg.protocols_max
            || req.protocol_type.len() > NAME_BYTES_MAX
            || req.protocols.iter().any(|(name, m)| {
                name.len() > NAME_BYTES_MAX || m.len() > self.cfg.member_metadata_bytes_max
            })
        {
            return Err(codes::INVALID_REQUEST);
        }
        Ok(())
    }

    fn join_unknown_member(&mut self, now_ms: u64, token: Token, req: JoinRequest) {
        let new_id = self.new_member_id(&req.client_id);
        let group_max = self.cfg.group_max_size;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if let Some(old_id) = req
            .group_instance_id
            .as_ref()
            .and_then(|i| group.static_members.get(i))
            .cloned()
        {
            self.replace_static_member(now_ms, token, req, &old_id, new_id);
            return;
        }
        if group.members.len() + group.pending_members.len() >= group_max {
            self.reply_join(
                token,
                JoinResponse::error(codes::GROUP_MAX_SIZE_REACHED, ""),
            );
            return;
        }
        if req.group_instance_id.is_none() && req.version >= 4 {
            // KIP-394: hand out the id first, so a client that never sees a response leaves no
            // orphan member behind. The pending id expires after one session timeout.
            let deadline = now_ms + timeout_u64(req.session_timeout_ms);
            group.pending_members.insert(new_id.clone(), deadline);
            self.reply_join(
                token,
                JoinResponse::error(codes::MEMBER_ID_REQUIRED, &new_id),
            );
            return;
        }
        self.add_member_and_rebalance(now_ms, token, req, new_id);
    }

    fn join_known_member(&mut self, now_ms: u64, token: Token, req: JoinRequest) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if group.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            self.add_member_and_rebalance(now_ms, token, req, id);
            return;
        }
        if let Err(code) = group.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            self.reply_join(token, JoinResponse::error(code, &req.member_id));
            return;
        }
        let Some(member) = group.members.get(&req.member_id) else {
            return;
        };
        let unchanged = member.protocols == req.protocols;
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                self.reply_join(
                    token,
                    JoinResponse::error(codes::UNKNOWN_MEMBER_ID, &req.member_id),
                );
            }
            GroupState::PreparingRebalance => self.update_member_and_rebalance(now_ms, token, req),
            GroupState::CompletingRebalance => {
                if unchanged {
                    // The member missed its JoinGroup response: send it again.
                    let resp = group.current_join_response(&req.member_id);
                    touch_session(group, &req.member_id, now_ms);
                    self.reply_join(token, resp);
                } else {
                    self.update_member_and_rebalance(now_ms, token, req);
                }
            }
            GroupState::Stable => {
                if unchanged && !group.is_leader(&req.member_id) {
                    let resp = group.current_join_response(&req.member_id);
                    touch_session(group, &req.member_id, now_ms);
                    self.reply_join(token, resp);
                } else {
                    // The leader rejoining, or changed metadata, starts a rebalance.
                    self.update_member_and_rebalance(now_ms, token, req);
                }
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: u64,
        token: Token,
        req: JoinRequest,
        member_id: String,
    ) {
        self.member_seq += 1;
        let seq = self.member_seq;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if group.state == GroupState::PreparingRebalance
            && matches!(group.join_timer, Some(JoinTimer::Initial { .. }))
        {
            group.new_member_added = true;
        }
        if let Some(instance) = &req.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if group.leader_id.is_none() {
            group.leader_id = Some(member_id.clone());
        }
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        group.members.insert(
            member_id,
            Member {
                seq,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some((token, req.version)),
                awaiting_sync: None,
                session_deadline_ms: now_ms + timeout_u64(req.session_timeout_ms),
            },
        );
        self.maybe_prepare_rebalance(&req.group_id, now_ms);
    }

    fn update_member_and_rebalance(&mut self, now_ms: u64, token: Token, req: JoinRequest) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return;
        };
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_deadline_ms = now_ms + timeout_u64(req.session_timeout_ms);
        // A member that joins again while an earlier join still waits has given up on the earlier.
        let superseded = member.awaiting_join.replace((token, req.version));
        if let Some((old, _)) = superseded {
            self.reply_join(
                old,
                JoinResponse::error(codes::REBALANCE_IN_PROGRESS, &req.member_id),
            );
        }
        self.maybe_prepare_rebalance(&req.group_id, now_ms);
    }

    fn replace_static_member(
        &mut self,
        now_ms: u64,
        token: Token,
        req: JoinRequest,
        old_id: &str,
        new_id: String,
    ) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let Some(mut member) = group.members.remove(old_id) else {
            return;
        };
        let mut fenced = Vec::new();
        if let Some((t, _)) = member.awaiting_join.take() {
            fenced.push(
                Reply::Join(JoinResponse::error(codes::FENCED_INSTANCE_ID, old_id)).with_token(t),
            );
        }
        if let Some(t) = member.awaiting_sync.take() {
            fenced.push(Reply::Sync(SyncResponse::error(codes::FENCED_INSTANCE_ID)).with_token(t));
        }
        let old_protocols = std::mem::replace(&mut member.protocols, req.protocols);
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_deadline_ms = now_ms + timeout_u64(req.session_timeout_ms);
        if group.is_leader(old_id) {
            group.leader_id = Some(new_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        let unchanged = old_protocols == member.protocols;
        group.members.insert(new_id.clone(), member);
        self.replies.extend(fenced);
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance
                if unchanged || group.select_protocol() == group.protocol_name =>
            {
                // KIP-345: a static member that restarts gets its old place without a rebalance.
                let mut resp = group.current_join_response(&new_id);
                // A v9+ leader keeps the current assignment; older leaders compute one that
                // SyncGroup in Stable ignores in favour of the current assignment.
                resp.skip_assignment = group.is_leader(&new_id) && req.version >= 9;
                self.reply_join(token, resp);
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.awaiting_join = Some((token, req.version));
                }
                self.maybe_prepare_rebalance(&req.group_id, now_ms);
            }
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.awaiting_join = Some((token, req.version));
                }
                self.maybe_prepare_rebalance(&req.group_id, now_ms);
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, group_id: &str, now_ms: u64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if matches!(
            group.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(group_id, now_ms);
        }
    }

    fn prepare_rebalance(&mut self, group_id: &str, now_ms: u64) {
        let initial_delay = timeout_u64(self.cfg.initial_rebalance_delay_ms);
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance {
            // The assignment being computed is void: members waiting in SyncGroup must rejoin.
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(t) = member.awaiting_sync.take() {
                    self.replies.push((
                        t,
                        Reply::Sync(SyncResponse::error(codes::REBALANCE_IN_PROGRESS)),
                    ));
                }
            }
        }
        group.sync_deadline_ms = None;
        let rebalance_timeout = group.max_rebalance_timeout_ms();
        group.join_timer = Some(if group.state == GroupState::Empty {
            Some(JoinTimer::Initial {
                deadline_ms: now_ms + initial_delay,
                delay_ms: initial_delay,
                end_ms: now_ms + rebalance_timeout.max(initial_delay),
            })
        } else {
            Some(JoinTimer::Rebalance {
                deadline_ms: now_ms + rebalance_timeout,
            })
        })
        .flatten();
        group.transition(GroupState::PreparingRebalance, now_ms);
    }

    /// Completes the PreparingRebalance of `group_id` if its timer allows it at `now_ms`.
    /// `from_timer` is false when a request (JoinGroup, LeaveGroup) asks: an initial rebalance
    /// then waits for the timer (Kafka's `maybeCompleteJoinPhase` skips groups that were Empty).
    fn try_complete_join(&mut self, group_id: &str, now_ms: u64, from_timer: bool) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        match group.join_timer {
            Some(JoinTimer::Initial {
                deadline_ms,
                delay_ms,
                end_ms,
            }) => {
                if !from_timer || now_ms < deadline_ms {
                    return;
                }
                if group.new_member_added && now_ms < end_ms {
                    // Members arrived during the delay: wait once more for stragglers. A zero
                    // delay waits until the next tick; `end_ms` bounds the extensions.
                    group.new_member_added = false;
                    group.join_timer = Some(JoinTimer::Initial {
                        deadline_ms: (now_ms + delay_ms).min(end_ms),
                        delay_ms,
                        end_ms,
                    });
                    return;
                }
            }
            Some(JoinTimer::Rebalance { deadline_ms })
                if now_ms < deadline_ms && !group.all_members_joined() =>
            {
                return;
            }
            Some(JoinTimer::Rebalance { .. }) => {}
            None => {}
        }
        self.complete_join(group_id, now_ms);
    }

    fn complete_join(&mut self, group_id: &str, now_ms: u64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.join_timer = None;
        group.new_member_added = false;
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            if let Some(m) = group.members.remove(id) {
                if let Some(instance) = &m.group_instance_id {
                    group.static_members.remove(instance);
                }
                if let Some(t) = m.awaiting_sync {
                    self.replies.push((
                        t,
                        Reply::Sync(SyncResponse::error(codes::UNKNOWN_MEMBER_ID)),
                    ));
                }
            }
        }
        if !group
            .leader_id
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader_id = group
                .members_in_join_order()
                .first()
                .map(|(id, _)| (*id).clone());
        }
        group.generation_id = group.generation_id.wrapping_add(1).max(1);
        tracing::debug!(group = group_id, generation = group.generation_id, members = ?group.members.keys().collect::<Vec<_>>(), removed = ?gone, "join phase complete");
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader_id = None;
            group.subscribed_topics = None;
            group.transition(GroupState::Empty, now_ms);
        } else {
            group.protocol_name = group.select_protocol();
            group.subscribed_topics = compute_subscriptions(group);
            group.transition(GroupState::CompletingRebalance, now_ms);
            group.sync_deadline_ms = Some(now_ms + group.max_rebalance_timeout_ms());
            let ids: Vec<String> = group.members.keys().cloned().collect();
            for id in ids {
                let Some(m) = group.members.get_mut(&id) else {
                    continue;
                };
                let Some((token, _version)) = m.awaiting_join.take() else {
                    continue;
                };
                m.session_deadline_ms = now_ms + timeout_u64(m.session_timeout_ms);
                let resp = group.current_join_response(&id);
                self.replies.push((token, Reply::Join(resp)));
            }
        }
        let value = GroupValue {
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            generation_id: group.generation_id,
            protocol_name: group.protocol_name.clone(),
            leader: group.leader_id.clone(),
            state_timestamp_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
        };
        self.records.push(LogRecord::Group {
            group_id: group_id.to_owned(),
            value: Some(value),
        });
    }

    // -- SyncGroup --------------------------------------------------------------------------

    /// SyncGroup. The response arrives through [`Self::take_replies`] under `token`.
    pub fn sync(&mut self, now_ms: u64, token: Token, req: SyncRequest) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            self.replies.push((
                token,
                Reply::Sync(SyncResponse::error(codes::UNKNOWN_MEMBER_ID)),
            ));
            return;
        };
        let error = if let Err(code) =
            group.validate_member(&req.member_id, req.group_instance_id.as_deref())
        {
            code
        } else if req.generation_id != group.generation_id {
            codes::ILLEGAL_GENERATION
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != group.protocol_name.as_ref())
        {
            codes::INCONSISTENT_GROUP_PROTOCOL
        } else if req
            .assignments
            .iter()
            .any(|(_, a)| a.len() > self.cfg.member_assignment_bytes_max)
        {
            codes::INVALID_REQUEST
        } else {
            codes::NONE
        };
        tracing::debug!(group = %req.group_id, member = %req.member_id, generation = req.generation_id, error, state = ?group.state, "SyncGroup");
        if error != codes::NONE {
            self.replies
                .push((token, Reply::Sync(SyncResponse::error(error))));
            return;
        }
        touch_session(group, &req.member_id, now_ms);
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                self.replies.push((
                    token,
                    Reply::Sync(SyncResponse::error(codes::UNKNOWN_MEMBER_ID)),
                ));
            }
            GroupState::PreparingRebalance => {
                self.replies.push((
                    token,
                    Reply::Sync(SyncResponse::error(codes::REBALANCE_IN_PROGRESS)),
                ));
            }
            GroupState::Stable => {
                let assignment = group
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let resp = SyncResponse {
                    error: codes::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                };
                self.replies.push((token, Reply::Sync(resp)));
            }
            GroupState::CompletingRebalance => {
                let Some(member) = group.members.get_mut(&req.member_id) else {
                    return;
                };
                if let Some(old) = member.awaiting_sync.replace(token) {
                    self.replies.push((
                        old,
                        Reply::Sync(SyncResponse::error(codes::REBALANCE_IN_PROGRESS)),
                    ));
                }
                if group.is_leader(&req.member_id) {
                    let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for (id, m) in &mut group.members {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    group.sync_deadline_ms = None;
                    group.transition(GroupState::Stable, now_ms);
                    for m in group.members.values_mut() {
                        if let Some(t) = m.awaiting_sync.take() {
                            let resp = SyncResponse {
                                error: codes::NONE,
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            };
                            self.replies.push((t, Reply::Sync(resp)));
                        }
                    }
                }
            }
        }
    }

    // -- Heartbeat --------------------------------------------------------------------------

    /// Heartbeat; returns the error code.
    pub fn heartbeat(&mut self, now_ms: u64, req: &HeartbeatRequest) -> i16 {
        let code = self.heartbeat_inner(now_ms, req);
        if code != codes::NONE {
            tracing::debug!(group = %req.group_id, member = %req.member_id, generation = req.generation_id, code, "Heartbeat");
        }
        code
    }

    fn heartbeat_inner(&mut self, now_ms: u64, req: &HeartbeatRequest) -> i16 {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        if let Err(code) = group.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return code;
        }
        if req.generation_id != group.generation_id {
            return codes::ILLEGAL_GENERATION;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => codes::UNKNOWN_MEMBER_ID,
            GroupState::CompletingRebalance | GroupState::Stable => {
                touch_session(group, &req.member_id, now_ms);
                codes::NONE
            }
            GroupState::PreparingRebalance => {
                touch_session(group, &req.member_id, now_ms);
                codes::REBALANCE_IN_PROGRESS
            }
        }
    }

    // -- LeaveGroup -------------------------------------------------------------------------

    /// LeaveGroup for one or more members.
    pub fn leave(
        &mut self,
        now_ms: u64,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> LeaveResponse {
        let Some(group) = self.groups.get_mut(group_id) else {
            return LeaveResponse {
                error: codes::UNKNOWN_MEMBER_ID,
                members: Vec::new(),
            };
        };
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = Vec::new();
        for who in leaving {
            let error = if let Some(instance) = &who.group_instance_id {
                match group.static_members.get(instance) {
                    None => codes::UNKNOWN_MEMBER_ID,
                    Some(current) if !who.member_id.is_empty() && *current != who.member_id => {
                        codes::FENCED_INSTANCE_ID
                    }
                    Some(current) => {
                        removed.push(current.clone());
                        codes::NONE
                    }
                }
            } else if group.pending_members.remove(&who.member_id).is_some() {
                codes::NONE
            } else if group.members.contains_key(&who.member_id) {
                removed.push(who.member_id.clone());
                codes::NONE
            } else {
                codes::UNKNOWN_MEMBER_ID
            };
            results.push(LeftMember {
                member_id: who.member_id.clone(),
                group_instance_id: who.group_instance_id.clone(),
                error,
            });
        }
        tracing::debug!(group = group_id, ?results, "LeaveGroup");
        for id in removed {
            self.remove_member(group_id, &id, now_ms);
        }
        LeaveResponse {
            error: codes::NONE,
            members: results,
        }
    }

    /// Removes a member and moves the group on: Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member(&mut self, group_id: &str, member_id: &str, now_ms: u64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(member) = group.members.remove(member_id) else {
            return;
        };
        tracing::debug!(group = group_id, member = member_id, state = ?group.state, "member removed");
        if let Some(instance) = &member.group_instance_id
            && group.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            group.static_members.remove(instance);
        }
        if let Some((t, _)) = member.awaiting_join {
            self.replies.push((
                t,
                Reply::Join(JoinResponse::error(codes::UNKNOWN_MEMBER_ID, member_id)),
            ));
        }
        if let Some(t) = member.awaiting_sync {
            self.replies.push((
                t,
                Reply::Sync(SyncResponse::error(codes::UNKNOWN_MEMBER_ID)),
            ));
        }
        if group.is_leader(member_id) {
            group.leader_id = group
                .members_in_join_order()
                .first()
                .map(|(id, _)| (*id).clone());
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group_id, now_ms)
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => return,
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.members.is_empty() {
            // Nobody is left to wait for.
            group.join_timer = None;
        }
        self.try_complete_join(group_id, now_ms, false);
    }

    // -- Timers -----------------------------------------------------------------------------

    /// Advances every timer to `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        // Only groups with a timer due are visited mutably; idle groups cost one scan.
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline_ms().is_some_and(|d| d <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.tick_group(id, now_ms);
        }
        if self.next_retention_check_ms == 0 {
            // The first check runs one interval after start, as Kafka's cleanup task does.
            self.next_retention_check_ms = now_ms + self.cfg.offsets_retention_check_interval_ms;
        }
        if now_ms >= self.next_retention_check_ms {
            self.next_retention_check_ms = now_ms + self.cfg.offsets_retention_check_interval_ms;
            self.expire_offsets(now_ms);
        }
    }

    fn tick_group(&mut self, group_id: &str, now_ms: u64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group
            .pending_members
            .retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| {
                m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
                    && m.session_deadline_ms <= now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::debug!(group = group_id, member = %id, "session expired");
            self.remove_member(group_id, &id, now_ms);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance
            && group.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            // KAFKA-13079: members that never sent SyncGroup are removed so the others can move on.
            let lagging: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| m.awaiting_sync.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            group.sync_deadline_ms = None;
            for id in lagging {
                self.remove_member(group_id, &id, now_ms);
            }
        }
        self.try_complete_join(group_id, now_ms, true);
    }

    /// The earliest instant at which [`Self::tick`] has something to do, if any.
    #[must_use]
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups
            .values()
            .filter_map(Group::next_deadline_ms)
            .chain(std::iter::once(self.next_retention_check_ms))
            .min()
    }

    /// Kafka's offsets retention (KIP-211): a group with a protocol type loses its offsets once it
    /// has been Empty for `offsets.retention.minutes`; a simple (standalone) group loses each
    /// offset that long after its commit. Empty groups without offsets are then removed.
    fn expire_offsets(&mut self, now_ms: u64) {
        let retention = self.cfg.offsets_retention_ms;
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut dead = Vec::new();
        for (group_id, group) in &mut self.groups {
            if group.state != GroupState::Empty {
                continue;
            }
            let empty_since = i64::try_from(group.state_since_ms).unwrap_or(0);
            let expired: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, o)| {
                    let base = if group.protocol_type.is_some() {
                        empty_since
                    } else {
                        o.commit_timestamp_ms
                    };
                    base.saturating_add(retention) <= now
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (topic, partition) in expired {
                group.offsets.remove(&(topic.clone(), partition));
                self.records.push(LogRecord::Offset {
                    group_id: group_id.clone(),
                    topic,
                    partition,
                    value: None,
                });
            }
            // Like Kafka's cleanup, an Empty group without offsets is removed (it becomes Dead).
            if group.offsets.is_empty() && group.pending_members.is_empty() {
                dead.push(group_id.clone());
            }
        }
        for group_id in dead {
            self.groups.remove(&group_id);
            self.records.push(LogRecord::Group {
                group_id,
                value: None,
            });
        }
    }

    // -- Offsets ----------------------------------------------------------------------------

    /// OffsetCommit. `partition_exists` says whether a topic partition exists on the broker.
    pub fn commit(
        &mut self,
        now_ms: u64,
        req: CommitRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> PartitionErrors {
        let all = |code: i16, req: &CommitRequest| -> PartitionErrors {
            req.topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.partition, code)).collect()))
                .collect()
        };
        if req.group_id.is_empty() || req.group_id.len() > NAME_BYTES_MAX {
            return all(codes::INVALID_GROUP_ID, &req);
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0
                || !req.member_id.is_empty()
                || req.group_instance_id.is_some()
            {
                let code = if req.version >= 9 {
                    codes::GROUP_ID_NOT_FOUND
                } else {
                    codes::ILLEGAL_GENERATION
                };
                return all(code, &req);
            }
            if self.groups.len() >= self.cfg.groups_max {
                return all(codes::GROUP_MAX_SIZE_REACHED, &req);
            }
            // A standalone consumer or an admin client: a "simple" group holds its offsets.
            self.groups.insert(req.group_id.clone(), Group::new(now_ms));
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return Vec::new();
        };
        if let Err(code) = validate_commit(group, &req) {
            tracing::debug!(group = %req.group_id, member = %req.member_id, generation = req.generation_id, code, state = ?group.state, "OffsetCommit refused");
            return all(code, &req);
        }
        if !req.member_id.is_empty() {
            touch_session(group, &req.member_id, now_ms);
        }
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut out = Vec::with_capacity(req.topics.len());
        for (topic, partitions) in req.topics {
            let mut results = Vec::with_capacity(partitions.len());
            for p in partitions {
                let metadata = p.metadata.unwrap_or_default();
                let code = if metadata.len() > self.cfg.offset_metadata_bytes_max {
                    codes::OFFSET_METADATA_TOO_LARGE
                } else if !partition_exists(&topic, p.partition) {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    let value = CommittedOffset {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata,
                        commit_timestamp_ms: now,
                    };
                    group
                        .offsets
                        .insert((topic.clone(), p.partition), value.clone());
                    self.records.push(LogRecord::Offset {
                        group_id: req.group_id.clone(),
                        topic: topic.clone(),
                        partition: p.partition,
                        value: Some(value),
                    });
                    codes::NONE
                };
                results.push((p.partition, code));
            }
            out.push((topic, results));
        }
        out
    }

    /// OffsetFetch for one group; `topics: None` asks for every committed offset.
    #[must_use]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> FetchedGroup {
        let group = self.groups.get(group_id);
        let topics = match topics {
            Some(requested) => requested
                .iter()
                .map(|(topic, partitions)| {
                    let parts = partitions
                        .iter()
                        .map(
                            |p| match group.and_then(|g| g.offsets.get(&(topic.clone(), *p))) {
                                Some(o) => fetched(*p, o),
                                None => FetchedPartition {
                                    partition: *p,
                                    offset: -1,
                                    leader_epoch: -1,
                                    metadata: Some(String::new()),
                                    error: codes::NONE,
                                },
                            },
                        )
                        .collect();
                    (topic.clone(), parts)
                })
                .collect(),
            None => {
                let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
                for ((topic, p), o) in group.map(|g| &g.offsets).into_iter().flatten() {
                    match out.last_mut() {
                        Some((t, parts)) if t == topic => parts.push(fetched(*p, o)),
                        _ => out.push((topic.clone(), vec![fetched(*p, o)])),
                    }
                }
                out
            }
        };
        FetchedGroup {
            group_id: group_id.to_owned(),
            error: codes::NONE,
            topics,
        }
    }

    /// OffsetDelete.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> OffsetDeleteResponse {
        let Some(group) = self.groups.get_mut(group_id) else {
            return OffsetDeleteResponse {
                error: codes::GROUP_ID_NOT_FOUND,
                topics: Vec::new(),
            };
        };
        if group.state != GroupState::Empty && !group.uses_consumer_protocol() {
            return OffsetDeleteResponse {
                error: codes::NON_EMPTY_GROUP,
                topics: Vec::new(),
            };
        }
        let mut out = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            let subscribed = group.state != GroupState::Empty && group.is_subscribed_to(topic);
            let mut results = Vec::with_capacity(partitions.len());
            for p in partitions {
                if subscribed {
                    results.push((*p, codes::GROUP_SUBSCRIBED_TO_TOPIC));
                    continue;
                }
                if group.offsets.remove(&(topic.clone(), *p)).is_some() {
                    self.records.push(LogRecord::Offset {
                        group_id: group_id.to_owned(),
                        topic: topic.clone(),
                        partition: *p,
                        value: None,
                    });
                }
                results.push((*p, codes::NONE));
            }
            out.push((topic.clone(), results));
        }
        OffsetDeleteResponse {
            error: codes::NONE,
            topics: out,
        }
    }

    // -- Administration ---------------------------------------------------------------------

    /// DescribeGroups for one group; `version` >= 6 reports unknown groups as GROUP_ID_NOT_FOUND.
    #[must_use]
    pub fn describe(&self, group_id: &str, version: i16) -> DescribedGroup {
        let Some(group) = self.groups.get(group_id) else {
            let (error, error_message) = if version >= 6 {
                (
                    codes::GROUP_ID_NOT_FOUND,
                    Some(format!("Group {group_id} not found.")),
                )
            } else {
                (codes::NONE, None)
            };
            return DescribedGroup {
                error,
                error_message,
                group_id: group_id.to_owned(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_data: String::new(),
                members: Vec::new(),
            };
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members_in_join_order()
            .into_iter()
            .map(|(id, m)| DescribedMember {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata_for(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        DescribedGroup {
            error: codes::NONE,
            error_message: None,
            group_id: group_id.to_owned(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol } else { String::new() },
            members,
        }
    }

    /// ListGroups; empty filters match everything, states compare case-insensitively, and every
    /// group here is of type "classic".
    #[must_use]
    pub fn list(&self, states_filter: &[String], types_filter: &[String]) -> Vec<ListedGroup> {
        if !types_filter.is_empty()
            && !types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case("classic"))
        {
            return Vec::new();
        }
        self.groups
            .iter()
            .filter(|(_, g)| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|(id, g)| ListedGroup {
                group_id: id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect()
    }

    /// DeleteGroups for one group; returns the error code.
    pub fn delete_group(&mut self, group_id: &str) -> i16 {
        if group_id.is_empty() {
            return codes::INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get(group_id) else {
            return codes::GROUP_ID_NOT_FOUND;
        };
        if group.state != GroupState::Empty {
            return codes::NON_EMPTY_GROUP;
        }
        if let Some(group) = self.groups.remove(group_id) {
            for (topic, partition) in group.offsets.into_keys() {
                self.records.push(LogRecord::Offset {
                    group_id: group_id.to_owned(),
                    topic,
                    partition,
                    value: None,
                });
            }
            self.records.push(LogRecord::Group {
                group_id: group_id.to_owned(),
                value: None,
            });
        }
        codes::NONE
    }

    /// The state of a group, for tests and metrics.
    #[must_use]
    pub fn state(&self, group_id: &str) -> GroupState {
        self.groups
            .get(group_id)
            .map_or(GroupState::Dead, |g| g.state)
    }

    // -- Helpers ----------------------------------------------------------------------------

    fn reply_join(&mut self, token: Token, resp: JoinResponse) {
        tracing::debug!(token, error = resp.error, member = %resp.member_id, generation = resp.generation_id, "JoinGroup answered");
        self.replies.push((token, Reply::Join(resp)));
    }

    /// A member id as Kafka makes them: `<client id>-<uuid>`.
    fn new_member_id(&mut self, client_id: &str) -> String {
        // Member ids are stored as a group's leader in the offsets log, as an i16-sized string.
        let mut cut = client_id.len().min(CLIENT_ID_IN_MEMBER_ID_MAX);
        while !client_id.is_char_boundary(cut) {
            cut -= 1;
        }
        let client_id = client_id.get(..cut).unwrap_or_default();
        let a = splitmix64(&mut self.id_state);
        let b = splitmix64(&mut self.id_state);
        format!(
            "{client_id}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

impl Reply {
    fn with_token(self, token: Token) -> (Token, Reply) {
        (token, self)
    }
}

/// Kafka's `ClassicGroup.validateOffsetCommit`.
fn validate_commit(group: &Group, req: &CommitRequest) -> Result<(), i16> {
    if req.generation_id < 0 && group.state == GroupState::Empty {
        // Standalone consumers and admin clients commit to empty groups.
        return Ok(());
    }
    if req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some() {
        group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != group.generation_id {
            return Err(codes::ILLEGAL_GENERATION);
        }
    } else if group.state != GroupState::Empty {
        return Err(codes::UNKNOWN_MEMBER_ID);
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(codes::REBALANCE_IN_PROGRESS);
    }
    Ok(())
}

fn fetched(partition: i32, o: &CommittedOffset) -> FetchedPartition {
    FetchedPartition {
        partition,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: Some(o.metadata.clone()),
        error: codes::NONE,
    }
}

fn touch_session(group: &mut Group, member_id: &str, now_ms: u64) {
    if let Some(m) = group.members.get_mut(member_id) {
        m.session_deadline_ms = now_ms + timeout_u64(m.session_timeout_ms);
    }
}

fn compute_subscriptions(group: &Group) -> Option<BTreeSet<String>> {
    if !group.uses_consumer_protocol() {
        return None;
    }
    let protocol = group.protocol_name.as_deref()?;
    let mut topics = BTreeSet::new();
    for m in group.members.values() {
        topics.extend(subscription::topics(&m.metadata_for(protocol))?);
    }
    Some(topics)
}

fn timeout_u64(ms: i32) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
