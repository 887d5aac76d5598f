//! The async shell around [`GroupCoordinator`]: decode, call the core, persist, reply.
//!
//! One [`GroupService`] lives on shard 0 and is shard-local (`!Send`). Each request runs in
//! these steps:
//!
//! 1. Decode the body with `kiln-kafka-codec` at the request's version.
//! 2. Borrow the core, apply the request at the wall-clock `now_ms`, drain the deferred replies
//!    it completed and the records it produced, release the borrow. No borrow is ever held
//!    across an `.await`.
//! 3. Hand each record to its group's partition of the offsets topic, in core order
//!    (`append_buffered`, no await), then hand the completed deferred replies to their waiters.
//! 4. For OffsetCommit, OffsetDelete and DeleteGroups, wait until the log is durable up to the
//!    last record (the shard's group commit fsyncs it) BEFORE encoding the response: a client
//!    never hears of a commit a crash could lose. If the log failed (a write or fsync error), the
//!    request fails with [`GroupError::Storage`]; the log refuses all later writes and the broker
//!    should stop, since a failed fsync is never retried.
//! 5. JoinGroup and SyncGroup register a one-shot waiter under a fresh token before step 2 and
//!    await it after step 3; a timer task ticks the core every [`TICK_MS`] for session and
//!    rebalance timeouts, resolving waiters the same way.
//!
//! Group metadata records (generations) are appended without waiting: they become durable with
//! the next sync pass, and losing the last one in a crash only lowers the generation that a
//! restarted broker continues from, which members rejoining ignore.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use kiln_engine::batch::{BatchBuilder, Batches, Record};
use kiln_engine::commit::Durability;
use kiln_engine::log::{AppendOptions, LogConfig, SegmentedLog};
use kiln_engine::rt;
use kiln_kafka_codec::Reader;
use kiln_kafka_codec::generated::{
    delete_groups_request, delete_groups_response, describe_groups_request,
    describe_groups_response, find_coordinator_request, find_coordinator_response,
    heartbeat_request, heartbeat_response, join_group_request, join_group_response,
    leave_group_request, leave_group_response, list_groups_request, list_groups_response,
    offset_commit_request, offset_commit_response, offset_delete_request, offset_delete_response,
    offset_fetch_request, offset_fetch_response, sync_group_request, sync_group_response,
};

use super::codes;
use super::coordinator::{
    CommitPartition, CommitRequest, GroupCoordinator, HeartbeatRequest, JoinRequest, LeavingMember,
    Reply, SyncRequest, Token,
};
use super::record::LogRecord;
use super::{GROUP_API_VERSIONS, GroupConfig, GroupError, offsets_partition_for};
use crate::catalog::{offsets_partition_dir, offsets_partitions_on_disk};

/// How often the timer task advances session and rebalance timeouts.
pub const TICK_MS: u64 = 100;
/// Bytes of records per batch written to the offsets log.
const BATCH_TARGET_BYTES: usize = 256 << 10;
/// Bytes read at a time while replaying the offsets log.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// `kafka-acls` operation bits of a group (READ, DELETE, DESCRIBE), reported when a client asks
/// for authorized operations; Kiln has no authorizer, so everything is allowed.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Whether a topic partition exists on the broker (OffsetCommit answers
/// UNKNOWN_TOPIC_OR_PARTITION otherwise).
pub type PartitionExists = Rc<dyn Fn(&str, i32) -> bool>;

type Waiters = RefCell<HashMap<Token, flume::Sender<Reply>>>;

/// How `__consumer_offsets` is created: the broker's `offsets.topic.*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsTopicSettings {
    /// `offsets.topic.num.partitions`.
    pub partitions: i32,
    /// `offsets.topic.segment.bytes`.
    pub segment_bytes: u64,
}

/// One partition of `__consumer_offsets`: its log and its compaction state.
struct OffsetsPartition {
    index: i32,
    log: SegmentedLog,
    /// Records appended since the last compaction, and live records at that compaction.
    appended: Cell<u64>,
    live_at_compaction: Cell<u64>,
    /// While the log is compacted, new records wait here (in order) and are appended after it;
    /// requests that must wait for them to be durable wait on `compaction_waiters`.
    compacting: Cell<bool>,
    deferred: RefCell<Vec<LogRecord>>,
    compaction_waiters: RefCell<Vec<flume::Sender<Persisted>>>,
}

struct Inner {
    core: RefCell<GroupCoordinator>,
    /// The broker's log directory (partitions are `__consumer_offsets-<n>` under it).
    dir: PathBuf,
    /// The partitions of `__consumer_offsets`; empty until the topic exists.
    partitions: RefCell<Rc<[Rc<OffsetsPartition>]>>,
    /// While the topic is being created: requests waiting for it.
    creating: RefCell<Option<Vec<flume::Sender<()>>>>,
    waiters: Waiters,
    next_token: Cell<Token>,
    partition_exists: PartitionExists,
    /// Budget for the warning logged with each error response (a failed log fails every request).
    log_limit: RefCell<kiln_engine::ratelog::LogLimiter>,
    started: std::time::Instant,
}

/// Where the records of one request went, in one partition.
#[derive(Debug)]
enum Persisted {
    /// There were none.
    Nothing,
    /// Durable once the log is durable below this offset.
    Below(u64),
    /// Queued behind a running compaction; the final place arrives on the channel.
    AfterCompaction(flume::Receiver<Persisted>),
    /// The log failed while they waited.
    Failed(String),
}

/// Where the records of one request went: per partition touched.
struct Pending(Vec<(Rc<OffsetsPartition>, Persisted)>);

/// The classic group coordinator service of one broker (see the module docs).
pub struct GroupService {
    inner: Rc<Inner>,
}

fn now_ms() -> u64 {
    u64::try_from(kiln_engine::clock::wall_ms()).unwrap_or(0)
}

impl GroupService {
    /// Recovers the partitions of `__consumer_offsets` found under `dir` (none on a new broker:
    /// the topic is created by [`Self::ensure_offsets_topic`]), replays them, and starts the
    /// timer task.
    ///
    /// # Errors
    /// [`GroupError::Storage`] when a log cannot be listed, opened or read;
    /// [`GroupError::Record`] when a record in it is not an offsets-log record.
    pub async fn open(
        dir: &Path,
        cfg: GroupConfig,
        partition_exists: PartitionExists,
    ) -> Result<Self, GroupError> {
        let now = now_ms();
        let on_disk = offsets_partitions_on_disk(dir).map_err(|source| GroupError::ListDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let segment_bytes = cfg.offsets_segment_bytes;
        let mut core =
            GroupCoordinator::new(cfg, now ^ u64::from(std::process::id()).rotate_left(32));
        let mut partitions = Vec::new();
        let mut replayed = Vec::new();
        for index in 0..on_disk.unwrap_or(0) {
            let part = OffsetsPartition::open(dir, index, segment_bytes).await?;
            replayed.push(replay(&part.log, &mut core, now).await?);
            partitions.push(part);
        }
        let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        tracing::info!(
            dir = %dir.display(),
            partitions = count,
            records = replayed.iter().sum::<u64>(),
            groups = core.group_count(),
            "group coordinator recovered"
        );
        for (part, replayed) in partitions.iter().zip(replayed) {
            let (live, appended) = compact(part, &core, count, replayed).await?;
            part.live_at_compaction.set(live);
            part.appended.set(appended);
        }
        let partitions: Vec<Rc<OffsetsPartition>> = partitions.into_iter().map(Rc::new).collect();
        let inner = Rc::new(Inner {
            core: RefCell::new(core),
            dir: dir.to_path_buf(),
            partitions: RefCell::new(partitions.into()),
            creating: RefCell::new(None),
            waiters: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            partition_exists,
            log_limit: RefCell::new(kiln_engine::ratelog::LogLimiter::default()),
            started: kiln_engine::clock::now(),
        });
        rt::spawn(timer_loop(Rc::downgrade(&inner))).detach();
        Ok(Self { inner })
    }

    /// Partitions of `__consumer_offsets`, 0 while it does not exist.
    #[must_use]
    pub fn offsets_partitions(&self) -> i32 {
        i32::try_from(self.inner.partitions.borrow().len()).unwrap_or(i32::MAX)
    }

    /// Creates `__consumer_offsets` with `settings.partitions` partitions unless it exists
    /// (Kafka creates it on the first FindCoordinator); concurrent callers wait for one
    /// creation. Returns the partition count and whether this call created the topic.
    ///
    /// # Errors
    /// [`GroupError::Storage`] when a partition log cannot be created.
    pub async fn ensure_offsets_topic(
        &self,
        settings: OffsetsTopicSettings,
    ) -> Result<(i32, bool), GroupError> {
        loop {
            let existing = self.offsets_partitions();
            if existing > 0 {
                return Ok((existing, false));
            }
            let wait = {
                let mut creating = self.inner.creating.borrow_mut();
                match creating.as_mut() {
                    Some(waiting) => {
                        let (tx, rx) = flume::bounded(1);
                        waiting.push(tx);
                        Some(rx)
                    }
                    None => {
                        *creating = Some(Vec::new());
                        None
                    }
                }
            };
            if let Some(rx) = wait {
                // Woken (or the creator gone) either way: look again.
                let _ = rx.recv_async().await;
                continue;
            }
            let count = settings.partitions.max(1);
            let mut created = Vec::new();
            let mut result = Ok(());
            for index in 0..count {
                match OffsetsPartition::open(&self.inner.dir, index, settings.segment_bytes).await {
                    Ok(p) => created.push(Rc::new(p)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_ok() {
                *self.inner.partitions.borrow_mut() = created.into();
                tracing::info!(
                    dir = %self.inner.dir.display(),
                    partitions = count,
                    "created the offsets topic"
                );
            }
            let waiting = self.inner.creating.borrow_mut().take();
            for tx in waiting.into_iter().flatten() {
                let _ = tx.try_send(());
            }
            result?;
            return Ok((count, true));
        }
    }

    /// Handles one group request. `body` is the request body after the request header; the
    /// result is the encoded response BODY. Client id and host are unknown here; the broker
    /// passes them with [`Self::handle_with_client`].
    ///
    /// # Errors
    /// See [`Self::handle_with_client`].
    pub async fn handle(
        &self,
        api_key: i16,
        api_version: i16,
        body: Bytes,
    ) -> Result<Vec<u8>, GroupError> {
        self.handle_with_client(api_key, api_version, body, "", "")
            .await
    }

    /// [`Self::handle`] with the request header's client id and the peer's host (Kafka shows
    /// it as `/127.0.0.1`), which JoinGroup records for DescribeGroups and member ids.
    ///
    /// A failure that is not the request's fault (the offsets log failed or is busy, the
    /// service stopped) is answered with the Kafka error code for it in every group, partition
    /// and member the request names (see [`super::error_response`]), as Kafka answers.
    ///
    /// # Errors
    /// [`GroupError::UnsupportedApi`] for an API or version not in [`GROUP_API_VERSIONS`];
    /// [`GroupError::Decode`] for a body that does not decode: the connection is closed.
    pub async fn handle_with_client(
        &self,
        api_key: i16,
        api_version: i16,
        body: Bytes,
        client_id: &str,
        client_host: &str,
    ) -> Result<Vec<u8>, GroupError> {
        let served = self
            .serve(api_key, api_version, body.clone(), client_id, client_host)
            .await;
        let e = match served {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        let Some(code) = e.kafka_code() else {
            return Err(e);
        };
        let now = kiln_engine::clock::ms_since(self.inner.started);
        let admit = self
            .inner
            .log_limit
            .borrow_mut()
            .admit("error-response", now);
        if let Some(suppressed) = admit.logged() {
            tracing::warn!(api_key, code, suppressed, error = %e, "group request failed");
        }
        let mut out = Vec::with_capacity(64);
        super::error_response::encode(api_key, api_version, body, code, &e.to_string(), &mut out)?;
        Ok(out)
    }

    async fn serve(
        &self,
        api_key: i16,
        api_version: i16,
        body: Bytes,
        client_id: &str,
        client_host: &str,
    ) -> Result<Vec<u8>, GroupError> {
        if !GROUP_API_VERSIONS
            .iter()
            .any(|(k, min, max)| *k == api_key && (*min..=*max).contains(&api_version))
        {
            return Err(GroupError::UnsupportedApi {
                api_key,
                api_version,
            });
        }
        if self.offsets_partitions() == 0 {
            let settings = {
                let core = self.inner.core.borrow();
                let cfg = core.config();
                OffsetsTopicSettings {
                    partitions: cfg.offsets_topic_partitions,
                    segment_bytes: cfg.offsets_segment_bytes,
                }
            };
            self.ensure_offsets_topic(settings).await?;
        }
        let v = api_version;
        let mut r = Reader::new(body);
        let mut out = Vec::with_capacity(64);
        match api_key {
            10 => self.find_coordinator(
                find_coordinator_request::FindCoordinatorRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            11 => {
                let req = join_group_request::JoinGroupRequest::decode(&mut r, v)?;
                self.join(req, v, client_id, client_host, &mut out).await?;
            }
            14 => {
                self.sync(
                    sync_group_request::SyncGroupRequest::decode(&mut r, v)?,
                    v,
                    &mut out,
                )
                .await?
            }
            12 => self.heartbeat(
                &heartbeat_request::HeartbeatRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            13 => self.leave(
                leave_group_request::LeaveGroupRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            8 => {
                self.commit(
                    offset_commit_request::OffsetCommitRequest::decode(&mut r, v)?,
                    v,
                    &mut out,
                )
                .await?
            }
            9 => self.fetch(
                offset_fetch_request::OffsetFetchRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            15 => self.describe(
                &describe_groups_request::DescribeGroupsRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            16 => self.list(
                &list_groups_request::ListGroupsRequest::decode(&mut r, v)?,
                v,
                &mut out,
            )?,
            42 => {
                self.delete_groups(
                    delete_groups_request::DeleteGroupsRequest::decode(&mut r, v)?,
                    v,
                    &mut out,
                )
                .await?
            }
            47 => {
                self.delete_offsets(
                    offset_delete_request::OffsetDeleteRequest::decode(&mut r, v)?,
                    v,
                    &mut out,
                )
                .await?
            }
            _ => {
                return Err(GroupError::UnsupportedApi {
                    api_key,
                    api_version,
                });
            }
        }
        Ok(out)
    }

    /// Flushes every partition of the offsets topic (for an orderly shutdown).
    ///
    /// # Errors
    /// [`GroupError::Storage`] when a log failed.
    pub async fn flush(&self) -> Result<(), GroupError> {
        let partitions = self.inner.partitions.borrow().clone();
        for part in partitions.iter() {
            let dir = part.log.dir();
            part.log.flush().await.map_err(storage("flush", &dir))?;
        }
        Ok(())
    }

    // -- Plumbing ---------------------------------------------------------------------------

    /// Runs `f` on the core, then persists its records (without waiting) and resolves the
    /// deferred replies it completed. Returns `f`'s result and where the records went.
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut GroupCoordinator, u64) -> T,
    ) -> Result<(T, Pending), GroupError> {
        self.inner.apply(f)
    }

    async fn wait_durable(&self, pending: Pending) -> Result<(), GroupError> {
        for (part, mut persisted) in pending.0 {
            let dir = part.log.dir();
            loop {
                match persisted {
                    Persisted::Nothing => break,
                    Persisted::Below(end) => {
                        part.log
                            .wait_durable(end)
                            .await
                            .map_err(storage("sync", &dir))?;
                        break;
                    }
                    Persisted::AfterCompaction(rx) => {
                        persisted = rx.recv_async().await.map_err(|_| GroupError::Closed)?;
                    }
                    Persisted::Failed(reason) => return Err(GroupError::DeferredWrite(reason)),
                }
            }
        }
        Ok(())
    }

    fn register_waiter(&self) -> (Token, flume::Receiver<Reply>) {
        let token = self.inner.next_token.get();
        self.inner.next_token.set(token.wrapping_add(1));
        let (tx, rx) = flume::bounded(1);
        self.inner.waiters.borrow_mut().insert(token, tx);
        (token, rx)
    }

    // -- APIs -------------------------------------------------------------------------------

    fn find_coordinator(
        &self,
        req: find_coordinator_request::FindCoordinatorRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        use find_coordinator_response::{Coordinator, FindCoordinatorResponse};
        let cfg = self.inner.core.borrow().config().clone();
        let (error, message) = match req.key_type {
            0 => (codes::NONE, None),
            1 => (
                codes::INVALID_REQUEST,
                Some("transactions are not supported".to_owned()),
            ),
            other => (
                codes::INVALID_REQUEST,
                Some(format!("unsupported coordinator key type {other}")),
            ),
        };
        let (node_id, host, port) = if error == codes::NONE {
            (cfg.node_id, cfg.host.clone(), cfg.port)
        } else {
            (-1, String::new(), -1)
        };
        let mut resp = FindCoordinatorResponse::default();
        if v >= 4 {
            resp.coordinators = req
                .coordinator_keys
                .into_iter()
                .map(|key| Coordinator {
                    key,
                    node_id,
                    host: host.clone(),
                    port,
                    error_code: error,
                    error_message: message.clone(),
                })
                .collect();
        } else {
            resp.error_code = error;
            resp.error_message = if v >= 1 { message } else { None };
            resp.node_id = node_id;
            resp.host = host;
            resp.port = port;
        }
        resp.encode(out, v)?;
        Ok(())
    }

    async fn join(
        &self,
        req: join_group_request::JoinGroupRequest,
        v: i16,
        client_id: &str,
        client_host: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let rebalance_timeout_ms = if v == 0 || req.rebalance_timeout_ms < 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        };
        let core_req = JoinRequest {
            version: v,
            group_id: req.group_id,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            protocol_type: req.protocol_type,
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
        };
        let (token, rx) = self.register_waiter();
        self.apply(|core, now| core.join(now, token, core_req))?;
        let reply = rx.recv_async().await.map_err(|_| GroupError::Closed)?;
        let Reply::Join(j) = reply else {
            return Err(GroupError::Closed);
        };
        let resp = join_group_response::JoinGroupResponse {
            throttle_time_ms: 0,
            error_code: j.error,
            generation_id: j.generation_id,
            protocol_type: if v >= 7 { j.protocol_type } else { None },
            protocol_name: if v >= 7 {
                j.protocol_name
            } else {
                Some(j.protocol_name.unwrap_or_default())
            },
            leader: j.leader,
            skip_assignment: v >= 9 && j.skip_assignment,
            member_id: j.member_id,
            members: j
                .members
                .into_iter()
                .map(|m| join_group_response::JoinGroupResponseMember {
                    member_id: m.member_id,
                    group_instance_id: if v >= 5 { m.group_instance_id } else { None },
                    metadata: m.metadata,
                })
                .collect(),
        };
        resp.encode(out, v)?;
        Ok(())
    }

    async fn sync(
        &self,
        req: sync_group_request::SyncGroupRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let core_req = SyncRequest {
            group_id: req.group_id,
            generation_id: req.generation_id,
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            protocol_type: req.protocol_type,
            protocol_name: req.protocol_name,
            assignments: req
                .assignments
                .into_iter()
                .map(|a| (a.member_id, a.assignment))
                .collect(),
        };
        let (token, rx) = self.register_waiter();
        self.apply(|core, now| core.sync(now, token, core_req))?;
        let reply = rx.recv_async().await.map_err(|_| GroupError::Closed)?;
        let Reply::Sync(s) = reply else {
            return Err(GroupError::Closed);
        };
        let resp = sync_group_response::SyncGroupResponse {
            throttle_time_ms: 0,
            error_code: s.error,
            protocol_type: if v >= 5 { s.protocol_type } else { None },
            protocol_name: if v >= 5 { s.protocol_name } else { None },
            assignment: s.assignment,
        };
        resp.encode(out, v)?;
        Ok(())
    }

    fn heartbeat(
        &self,
        req: &heartbeat_request::HeartbeatRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let core_req = HeartbeatRequest {
            group_id: req.group_id.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
        };
        let (error, _) = self.apply(|core, now| core.heartbeat(now, &core_req))?;
        heartbeat_response::HeartbeatResponse {
            throttle_time_ms: 0,
            error_code: error,
        }
        .encode(out, v)?;
        Ok(())
    }

    fn leave(
        &self,
        req: leave_group_request::LeaveGroupRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let leaving: Vec<LeavingMember> = if v >= 3 {
            req.members
                .into_iter()
                .map(|m| LeavingMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                })
                .collect()
        } else {
            vec![LeavingMember {
                member_id: req.member_id,
                group_instance_id: None,
            }]
        };
        let group_id = req.group_id;
        let (resp, _) = self.apply(|core, now| core.leave(now, &group_id, &leaving))?;
        let mut wire = leave_group_response::LeaveGroupResponse {
            throttle_time_ms: 0,
            error_code: resp.error,
            members: Vec::new(),
        };
        if v >= 3 {
            wire.members = resp
                .members
                .into_iter()
                .map(|m| leave_group_response::MemberResponse {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    error_code: m.error,
                })
                .collect();
        } else if wire.error_code == codes::NONE {
            // v0-2 leave one member and report its error at the top level.
            wire.error_code = resp.members.first().map_or(codes::NONE, |m| m.error);
        }
        wire.encode(out, v)?;
        Ok(())
    }

    async fn commit(
        &self,
        req: offset_commit_request::OffsetCommitRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let core_req = CommitRequest {
            version: v,
            group_id: req.group_id,
            generation_id: req.generation_id_or_member_epoch,
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            topics: req
                .topics
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .into_iter()
                        .map(|p| CommitPartition {
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata,
                        })
                        .collect();
                    (t.name, parts)
                })
                .collect(),
        };
        let exists = self.inner.partition_exists.clone();
        let (errors, end) = self.apply(|core, now| core.commit(now, core_req, &*exists))?;
        // Persist BEFORE replying: the response promises the offsets survive a crash.
        self.wait_durable(end).await?;
        let resp = offset_commit_response::OffsetCommitResponse {
            throttle_time_ms: 0,
            topics: errors
                .into_iter()
                .map(
                    |(name, parts)| offset_commit_response::OffsetCommitResponseTopic {
                        name,
                        partitions: parts
                            .into_iter()
                            .map(|(partition_index, error_code)| {
                                offset_commit_response::OffsetCommitResponsePartition {
                                    partition_index,
                                    error_code,
                                }
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
                .collect(),
        };
        resp.encode(out, v)?;
        Ok(())
    }

    fn fetch(
        &self,
        req: offset_fetch_request::OffsetFetchRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        use offset_fetch_response as w;
        let core = self.inner.core.borrow();
        let mut resp = w::OffsetFetchResponse::default();
        if v >= 8 {
            for g in req.groups {
                let topics: Option<Vec<(String, Vec<i32>)>> = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let fetched = core.fetch_offsets(&g.group_id, topics.as_deref());
                resp.groups.push(w::OffsetFetchResponseGroup {
                    group_id: fetched.group_id,
                    error_code: fetched.error,
                    topics: fetched
                        .topics
                        .into_iter()
                        .map(|(name, parts)| w::OffsetFetchResponseTopics {
                            name,
                            partitions: parts
                                .into_iter()
                                .map(|p| w::OffsetFetchResponsePartitions {
                                    partition_index: p.partition,
                                    committed_offset: p.offset,
                                    committed_leader_epoch: p.leader_epoch,
                                    metadata: p.metadata,
                                    error_code: p.error,
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                });
            }
        } else {
            // v0-1 cannot ask for all topics; a null array only decodes from v2.
            let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let fetched = core.fetch_offsets(&req.group_id, topics.as_deref());
            if v >= 2 {
                resp.error_code = fetched.error;
            }
            resp.topics = fetched
                .topics
                .into_iter()
                .map(|(name, parts)| w::OffsetFetchResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|p| w::OffsetFetchResponsePartition {
                            partition_index: p.partition,
                            committed_offset: p.offset,
                            committed_leader_epoch: if v >= 5 { p.leader_epoch } else { -1 },
                            metadata: p.metadata,
                            error_code: p.error,
                        })
                        .collect(),
                })
                .collect();
        }
        drop(core);
        resp.encode(out, v)?;
        Ok(())
    }

    fn describe(
        &self,
        req: &describe_groups_request::DescribeGroupsRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        use describe_groups_response as w;
        let core = self.inner.core.borrow();
        let groups = req
            .groups
            .iter()
            .map(|id| {
                let d = core.describe(id, v);
                w::DescribedGroup {
                    error_code: d.error,
                    error_message: if v >= 6 { d.error_message } else { None },
                    group_id: d.group_id,
                    group_state: d.state.to_owned(),
                    protocol_type: d.protocol_type,
                    protocol_data: d.protocol_data,
                    members: d
                        .members
                        .into_iter()
                        .map(|m| w::DescribedGroupMember {
                            member_id: m.member_id,
                            group_instance_id: if v >= 4 { m.group_instance_id } else { None },
                            client_id: m.client_id,
                            client_host: m.client_host,
                            member_metadata: m.metadata,
                            member_assignment: m.assignment,
                        })
                        .collect(),
                    authorized_operations: if v >= 3 && req.include_authorized_operations {
                        GROUP_AUTHORIZED_OPERATIONS
                    } else {
                        i32::MIN
                    },
                }
            })
            .collect();
        drop(core);
        w::DescribeGroupsResponse {
            throttle_time_ms: 0,
            groups,
        }
        .encode(out, v)?;
        Ok(())
    }

    fn list(
        &self,
        req: &list_groups_request::ListGroupsRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        use list_groups_response as w;
        let listed = self
            .inner
            .core
            .borrow()
            .list(&req.states_filter, &req.types_filter);
        let groups = listed
            .into_iter()
            .map(|g| w::ListedGroup {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                group_state: if v >= 4 {
                    g.state.to_owned()
                } else {
                    String::new()
                },
                group_type: if v >= 5 {
                    "classic".to_owned()
                } else {
                    String::new()
                },
            })
            .collect();
        w::ListGroupsResponse {
            throttle_time_ms: 0,
            error_code: codes::NONE,
            groups,
        }
        .encode(out, v)?;
        Ok(())
    }

    async fn delete_groups(
        &self,
        req: delete_groups_request::DeleteGroupsRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        let names = req.groups_names;
        let (results, end) = self.apply(|core, _| {
            names
                .into_iter()
                .map(|g| {
                    let error_code = core.delete_group(&g);
                    delete_groups_response::DeletableGroupResult {
                        group_id: g,
                        error_code,
                    }
                })
                .collect::<Vec<_>>()
        })?;
        self.wait_durable(end).await?;
        delete_groups_response::DeleteGroupsResponse {
            throttle_time_ms: 0,
            results,
        }
        .encode(out, v)?;
        Ok(())
    }

    async fn delete_offsets(
        &self,
        req: offset_delete_request::OffsetDeleteRequest,
        v: i16,
        out: &mut Vec<u8>,
    ) -> Result<(), GroupError> {
        use offset_delete_response as w;
        let topics: Vec<(String, Vec<i32>)> = req
            .topics
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    t.partitions
                        .into_iter()
                        .map(|p| p.partition_index)
                        .collect(),
                )
            })
            .collect();
        let group_id = req.group_id;
        let (resp, end) = self.apply(|core, _| core.delete_offsets(&group_id, &topics))?;
        self.wait_durable(end).await?;
        let wire = w::OffsetDeleteResponse {
            error_code: resp.error,
            throttle_time_ms: 0,
            topics: resp
                .topics
                .into_iter()
                .map(|(name, parts)| w::OffsetDeleteResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(
                            |(partition_index, error_code)| w::OffsetDeleteResponsePartition {
                                partition_index,
                                error_code,
                            },
                        )
                        .collect(),
                })
                .collect(),
        };
        wire.encode(out, v)?;
        Ok(())
    }
}

impl OffsetsPartition {
    async fn open(dir: &Path, index: i32, segment_bytes: u64) -> Result<Self, GroupError> {
        let log_dir = offsets_partition_dir(dir, index);
        let log_cfg = LogConfig {
            segment_bytes,
            segment_ms: None,
            retention_bytes: None,
            retention_ms: None,
            durability: Durability::Durable,
            batch_bytes_max: 16 << 20,
            ..LogConfig::default()
        };
        let log = SegmentedLog::open(&log_dir, log_cfg)
            .await
            .map_err(storage("open", &log_dir))?;
        Ok(Self {
            index,
            log,
            appended: Cell::new(0),
            live_at_compaction: Cell::new(0),
            compacting: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            compaction_waiters: RefCell::new(Vec::new()),
        })
    }

    fn persist(&self, records: Vec<LogRecord>) -> Result<Persisted, GroupError> {
        if records.is_empty() {
            return Ok(Persisted::Nothing);
        }
        self.appended
            .set(self.appended.get().saturating_add(records.len() as u64));
        if self.compacting.get() {
            self.deferred.borrow_mut().extend(records);
            let (tx, rx) = flume::bounded(1);
            self.compaction_waiters.borrow_mut().push(tx);
            return Ok(Persisted::AfterCompaction(rx));
        }
        Ok(persist_to(&self.log, &records)?.map_or(Persisted::Nothing, Persisted::Below))
    }

    /// Whether enough superseded records piled up to compact the log while running.
    fn wants_compaction(&self, min: u64) -> bool {
        let appended = self.appended.get();
        appended >= min && appended >= self.live_at_compaction.get().saturating_mul(2)
    }

    /// Compacts the log while serving: see [`compact`]. Records produced meanwhile are held
    /// back and appended, in order, right after.
    async fn compact_running(&self, snapshot: Vec<LogRecord>) -> Result<(), GroupError> {
        self.compacting.set(true);
        let dir = self.log.dir();
        let start = self.log.log_end_offset();
        let result: Result<(), GroupError> = async {
            if let Some(end) = persist_to(&self.log, &snapshot)? {
                self.log
                    .wait_durable(end)
                    .await
                    .map_err(storage("sync", &dir))?;
            }
            self.log
                .delete_records(start)
                .await
                .map_err(storage("compact", &dir))?;
            Ok(())
        }
        .await;
        self.compacting.set(false);
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        let outcome = match persist_to(&self.log, &deferred) {
            Ok(end) => end,
            Err(e) => {
                for tx in self.compaction_waiters.borrow_mut().drain(..) {
                    let _ = tx.try_send(Persisted::Failed(e.to_string()));
                }
                return Err(e);
            }
        };
        for tx in self.compaction_waiters.borrow_mut().drain(..) {
            let _ = tx.try_send(outcome.map_or(Persisted::Nothing, Persisted::Below));
        }
        let live = snapshot.len() as u64;
        self.live_at_compaction.set(live);
        self.appended.set(deferred.len() as u64);
        tracing::info!(dir = %dir.display(), live, "offsets log compacted");
        result
    }
}

impl Inner {
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut GroupCoordinator, u64) -> T,
    ) -> Result<(T, Pending), GroupError> {
        let (result, replies, records) = {
            let mut core = self.core.borrow_mut();
            let result = f(&mut core, now_ms());
            (result, core.take_replies(), core.take_records())
        };
        let pending = self.persist(records)?;
        let mut waiters = self.waiters.borrow_mut();
        for (token, reply) in replies {
            if let Some(tx) = waiters.remove(&token) {
                // The requester may have gone (connection closed); nobody is left to tell.
                let _ = tx.try_send(reply);
            }
        }
        Ok((result, pending))
    }

    /// Hands each record to its group's partition, keeping the core's order within a partition
    /// (a group's records all go to one partition).
    fn persist(&self, records: Vec<LogRecord>) -> Result<Pending, GroupError> {
        if records.is_empty() {
            return Ok(Pending(Vec::new()));
        }
        let partitions = self.partitions.borrow().clone();
        let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        if count == 0 {
            return Err(GroupError::NoOffsetsTopic);
        }
        let mut by_partition: Vec<(usize, Vec<LogRecord>)> = Vec::new();
        for record in records {
            let index = usize::try_from(offsets_partition_for(record.group_id(), count))
                .unwrap_or(0)
                .min(partitions.len() - 1);
            match by_partition.iter_mut().find(|(i, _)| *i == index) {
                Some((_, v)) => v.push(record),
                None => by_partition.push((index, vec![record])),
            }
        }
        let mut pending = Vec::with_capacity(by_partition.len());
        for (index, records) in by_partition {
            let part = partitions[index].clone();
            let persisted = part.persist(records)?;
            pending.push((part, persisted));
        }
        Ok(Pending(pending))
    }

    /// The live records of the groups that live in partition `index` of `count`.
    fn snapshot_of(&self, index: i32, count: i32) -> Vec<LogRecord> {
        snapshot_of(&self.core.borrow(), index, count)
    }

    fn tick(&self) {
        if let Err(e) = self.apply(|core, now| core.tick(now)) {
            tracing::error!(error = %e, "group coordinator could not persist timer effects");
        }
    }
}

fn snapshot_of(core: &GroupCoordinator, index: i32, count: i32) -> Vec<LogRecord> {
    let mut records = core.snapshot_records();
    records.retain(|r| offsets_partition_for(r.group_id(), count) == index);
    records
}

/// Queues `records` on the offsets log in order; returns the offset after the last one.
fn persist_to(log: &SegmentedLog, records: &[LogRecord]) -> Result<Option<u64>, GroupError> {
    if records.is_empty() {
        return Ok(None);
    }
    let dir = log.dir();
    let timestamp = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let mut bytes = Vec::new();
    let mut builder = BatchBuilder::new();
    let mut encoded = Vec::with_capacity(records.len());
    for r in records {
        encoded.push((r.encode_key(), r.encode_value()));
    }
    for (key, value) in &encoded {
        if builder.size() >= BATCH_TARGET_BYTES {
            let full = std::mem::take(&mut builder);
            bytes.extend_from_slice(
                &full
                    .finish()
                    .map_err(|e| GroupError::Batch(e.to_string()))?,
            );
        }
        builder
            .push(Record {
                key: Some(key),
                value: value.as_deref(),
                headers: &[],
                timestamp,
            })
            .map_err(|e| GroupError::Batch(e.to_string()))?;
    }
    bytes.extend_from_slice(
        &builder
            .finish()
            .map_err(|e| GroupError::Batch(e.to_string()))?,
    );
    let info = log
        .append_buffered(&bytes, AppendOptions::default())
        .map_err(storage("append", &dir))?;
    Ok(Some(info.last_offset + 1))
}

/// Rewrites a partition of the offsets log when most of its records are superseded: appends a
/// snapshot of its groups' live state, waits until it is durable, then moves the log start to
/// the snapshot (Kafka's DeleteRecords), which deletes the older segments. A crash before the
/// log start moves leaves old records followed by the snapshot, which replays to the same
/// state. Returns (live records, records appended since the last compaction).
async fn compact(
    part: &OffsetsPartition,
    core: &GroupCoordinator,
    count: i32,
    replayed: u64,
) -> Result<(u64, u64), GroupError> {
    let snapshot = snapshot_of(core, part.index, count);
    let live = u64::try_from(snapshot.len()).unwrap_or(u64::MAX);
    if replayed < core.config().offsets_compact_records_min || replayed < live.saturating_mul(2) {
        return Ok((live, replayed));
    }
    let log = &part.log;
    let dir = log.dir();
    let start = log.log_end_offset();
    if let Some(end) = persist_to(log, &snapshot)? {
        log.wait_durable(end).await.map_err(storage("sync", &dir))?;
    }
    log.delete_records(start)
        .await
        .map_err(storage("compact", &dir))?;
    tracing::info!(dir = %dir.display(), replayed, live, "offsets log compacted");
    Ok((live, 0))
}

async fn timer_loop(inner: Weak<Inner>) {
    loop {
        kiln_engine::clock::sleep(Duration::from_millis(TICK_MS)).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.tick();
        let min = inner.core.borrow().config().offsets_compact_records_min;
        let partitions = inner.partitions.borrow().clone();
        let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        for part in partitions.iter() {
            if part.compacting.get() || !part.wants_compaction(min) {
                continue;
            }
            let snapshot = inner.snapshot_of(part.index, count);
            if let Err(e) = part.compact_running(snapshot).await {
                tracing::error!(error = %e, "offsets log compaction failed");
            }
        }
    }
}

/// Replays every record of the offsets log into `core`; returns the number of records.
async fn replay(
    log: &SegmentedLog,
    core: &mut GroupCoordinator,
    now: u64,
) -> Result<u64, GroupError> {
    let dir = log.dir();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut count = 0;
    while offset < end {
        let read = log
            .read(offset, REPLAY_READ_BYTES)
            .await
            .map_err(storage("read", &dir))?;
        if read.next_offset <= offset {
            break;
        }
        for batch in Batches::new(&read.records, true) {
            let batch = batch.map_err(|e| GroupError::Batch(e.to_string()))?;
            for record in batch
                .records()
                .map_err(|e| GroupError::Batch(e.to_string()))?
            {
                let record = record.map_err(|e| GroupError::Batch(e.to_string()))?;
                let Some(key) = record.key else { continue };
                core.replay(&LogRecord::decode(key, record.value)?, now);
                count += 1;
            }
        }
        offset = read.next_offset;
    }
    Ok(count)
}

fn storage(
    op: &'static str,
    dir: &Path,
) -> impl FnOnce(kiln_engine::log::LogError) -> GroupError + use<> {
    let dir = dir.to_path_buf();
    move |source| GroupError::Storage { op, dir, source }
}
