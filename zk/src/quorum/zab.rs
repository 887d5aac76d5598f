//! ZAB 1.0 after the election: discovery, synchronisation and broadcast, for the leader and for a
//! learner (follower or observer), as two pure state machines.
//!
//! Neither does I/O nor reads a clock: time arrives as `now_ms`, messages as [`Msg`], and every
//! effect leaves as an [`Effect`] in a list the caller performs **in order**. The contract with
//! the caller (the I/O shell, or the simulator):
//!
//! 1. [`Effect::SaveEpochs`], [`Effect::Truncate`] and [`Effect::InstallSnapshot`] are durable
//!    before the caller performs the next effect of the list. They are rare (once per election),
//!    so the caller does them synchronously.
//! 2. [`Effect::Append`] only queues a txn for the log; the caller reports when its group commit
//!    has made txns durable with `durable(zxid)`. Everything that depends on that durability
//!    (a learner's ACK, the NEWLEADER ACK, the leader's own vote for a proposal, applying a
//!    commit) is emitted only after that report. So sends never need to wait for anything.
//! 3. [`Effect::Commit`] hands out committed txns strictly in zxid order and only once they are
//!    durable locally: a learner applies them to its tree, the leader (whose tree already holds
//!    them speculatively) makes them visible and replies.
//! 4. [`Effect::Lost`] ends the machine: the caller closes the quorum connections and goes back
//!    to the election. Nothing the machine said before is taken back; the caller rebuilds its
//!    tree from its durable log before it runs the next machine.
//!
//! The rules follow ZooKeeper's Leader, LearnerHandler and Learner, including the orderings that
//! ZooKeeper itself once got wrong and fixed: a learner persists every txn it was sent during
//! synchronisation, then its current epoch, and only then ACKs NEWLEADER; a SNAP is durable
//! before that ACK; each proposal needs its own quorum of ACKs and commits strictly in zxid order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use crate::tree::Zxid;

/// A server id (`myid`).
pub type Sid = i64;
/// A txn in ZooKeeper's record form (header, record, digest): what a PROPOSAL carries and the
/// log stores. Shared, because the leader sends the same bytes to every follower.
pub type TxnBytes = Rc<[u8]>;

/// `zookeeper.commitLogCount`: committed txns the leader keeps in memory for DIFF syncs.
pub const COMMITTED_LOG_MAX: usize = 500;

/// Zxid arithmetic is the wire module's (one definition of the epoch/counter split).
pub use crate::quorum::wire::{counter_of, epoch_of, make_zxid};

/// One quorum-port message, typed. [`crate::quorum::wire`] maps each to its `QuorumPacket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// FOLLOWERINFO (11) or OBSERVERINFO (16); zxid = `make_zxid(accepted_epoch, 0)`.
    LearnerInfo {
        observer: bool,
        sid: Sid,
        accepted_epoch: u32,
    },
    /// LEADERINFO (17); zxid = `make_zxid(new_epoch, 0)`.
    LeaderInfo {
        new_epoch: u32,
    },
    /// ACKEPOCH (18): the learner's last logged zxid and current epoch (-1: it had already
    /// accepted this epoch).
    AckEpoch {
        last_zxid: Zxid,
        current_epoch: i64,
    },
    /// DIFF (13): the PROPOSAL/COMMIT pairs that follow bring the learner to `zxid`.
    Diff {
        zxid: Zxid,
    },
    /// TRUNC (14): drop every txn above `zxid`.
    Trunc {
        zxid: Zxid,
    },
    /// SNAP (15) and the stream after it: the leader's tree at `zxid`.
    Snap {
        zxid: Zxid,
        stream: TxnBytes,
    },
    Proposal {
        zxid: Zxid,
        txn: TxnBytes,
    },
    Ack {
        zxid: Zxid,
    },
    Commit {
        zxid: Zxid,
    },
    /// INFORM (8): a committed txn, for observers.
    Inform {
        zxid: Zxid,
        txn: TxnBytes,
    },
    /// NEWLEADER (10); zxid = `make_zxid(new_epoch, 0)`, data = the quorum config string.
    NewLeader {
        zxid: Zxid,
        config: Vec<u8>,
    },
    /// UPTODATE (12): the learner may serve.
    UpToDate,
    /// PING (5): from the leader with its last proposed zxid; back with the learner's session
    /// touch table.
    Ping {
        zxid: Zxid,
        touches: Vec<(i64, i32)>,
    },
    /// REQUEST (1): a client request forwarded by a learner.
    Request {
        session: i64,
        cxid: i32,
        op: i32,
        body: Vec<u8>,
    },
    /// REVALIDATE (6), learner → leader.
    Revalidate {
        session: i64,
        timeout_ms: i32,
    },
    /// REVALIDATE (6), leader → learner.
    Revalidated {
        session: i64,
        valid: bool,
    },
    /// SYNC (7): the oldest sync the learner forwarded is answered.
    Sync,
}

/// Which kind of learner is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerKind {
    Follower,
    Observer,
}

/// Why a machine gave up; the caller goes back to the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// No quorum formed within `initLimit` ticks (epoch, epoch ACK or NEWLEADER ACK).
    InitTimeout(&'static str),
    /// The leader heard from fewer than a quorum within `syncLimit` ticks.
    QuorumLost,
    /// A learner has a more recent history than this leader: it should lead.
    LearnerAhead { sid: Sid },
    /// Nothing from the leader within the limit.
    LeaderSilent,
    /// The leader's connection broke.
    Disconnected,
    /// The leader proposed an epoch older than one this learner accepted.
    StaleEpoch { offered: u32, accepted: u32 },
    /// A message that the protocol does not allow here.
    Protocol(String),
    /// The zxid counter of this epoch is exhausted; a new election starts a new epoch.
    ZxidRollover,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        to: Sid,
        msg: Msg,
    },
    /// Write `acceptedEpoch` and `currentEpoch` durably (contract rule 1).
    SaveEpochs {
        accepted: u32,
        current: u32,
    },
    /// Queue a txn for the log (contract rule 2).
    Append {
        zxid: Zxid,
        txn: TxnBytes,
    },
    /// Durably drop every logged txn above `zxid` (rule 1).
    Truncate {
        zxid: Zxid,
    },
    /// Durably replace the tree and log with the leader's snapshot at `zxid` (rule 1).
    InstallSnapshot {
        zxid: Zxid,
        stream: TxnBytes,
    },
    /// Leader: send `to` a SNAP of the committed tree, which is at `zxid` exactly when the caller
    /// performs this effect (every earlier Commit has been applied).
    SendSnapshot {
        to: Sid,
        zxid: Zxid,
    },
    /// A committed txn, in zxid order, durable here (rule 3).
    Commit {
        zxid: Zxid,
        txn: TxnBytes,
    },
    /// Leader: the quorum is formed; the caller starts serving clients, and its next proposal
    /// is `make_zxid(epoch, 1)`.
    Established {
        epoch: u32,
    },
    /// Learner: synchronised; the caller serves clients from its tree.
    Serving {
        epoch: u32,
    },
    /// Leader: a learner forwarded a client request.
    Request {
        from: Sid,
        session: i64,
        cxid: i32,
        op: i32,
        body: Vec<u8>,
    },
    /// Leader: session touches carried by a learner's ping.
    Touch {
        sessions: Vec<(i64, i32)>,
    },
    /// Leader: a learner asks whether a session may move to it; answer with `revalidated`.
    Revalidate {
        from: Sid,
        session: i64,
        timeout_ms: i32,
    },
    /// Learner: answer to a REVALIDATE this server forwarded.
    Revalidated {
        session: i64,
        valid: bool,
    },
    /// Learner: the leader answered the oldest forwarded sync (the caller keeps them in order).
    SyncDone,
    /// Learner: the leader pinged; reply with [`Learner::ping_reply`] and the touch table.
    PingFromLeader,
    /// Leader: close this learner's connection (it broke the protocol or fell silent).
    DropLearner {
        sid: Sid,
    },
    /// The machine stopped (rule 4).
    Lost(LostReason),
}

/// Timing, from `tickTime`, `initLimit`, `syncLimit`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub tick_ms: u64,
    pub init_limit: u64,
    pub sync_limit: u64,
}

impl Timing {
    pub fn init_ms(&self) -> u64 {
        self.tick_ms.saturating_mul(self.init_limit)
    }

    pub fn sync_ms(&self) -> u64 {
        self.tick_ms.saturating_mul(self.sync_limit)
    }
}

/// What a server keeps on disk across elections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The last zxid in the durable log (or of the snapshot when the log is empty).
    pub last_zxid: Zxid,
}

/// Strict majority of `voters`.
fn is_quorum(voters: &BTreeSet<Sid>, acks: &BTreeSet<Sid>) -> bool {
    acks.iter().filter(|s| voters.contains(s)).count() * 2 > voters.len()
}

// ---------------------------------------------------------------------------------------------
// Leader

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a quorum of LearnerInfo to fix the new epoch.
    Discovery,
    /// Epoch fixed; waiting for a quorum of ACKEPOCH.
    EpochAck,
    /// Waiting for a quorum of NEWLEADER ACKs.
    NewLeader,
    /// Serving: proposals and commits.
    Broadcast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerStage {
    /// Sent LearnerInfo, waiting for the epoch.
    Connected,
    /// Sent LEADERINFO; waiting for ACKEPOCH.
    EpochSent,
    /// ACKEPOCH received; waiting for the epoch-ACK quorum before the sync is chosen.
    AwaitSync {
        last_zxid: Zxid,
    },
    /// Sync sent and NEWLEADER queued; forwarding; waiting for the NEWLEADER ACK.
    Synced,
    /// NEWLEADER ACKed; UPTODATE sent (or pending the quorum).
    Acked,
    UpToDate,
}

#[derive(Debug, Clone)]
struct LearnerPeer {
    kind: LearnerKind,
    stage: LearnerStage,
    last_heard_ms: u64,
    /// Whether proposals and commits are forwarded to it (from the sync on).
    forwarding: bool,
}

#[derive(Debug, Clone)]
struct Proposal {
    zxid: Zxid,
    txn: TxnBytes,
    acks: BTreeSet<Sid>,
}

/// The leader's side: LearnerHandler for every learner plus the broadcast.
#[derive(Debug)]
pub struct Leader {
    myid: Sid,
    voters: BTreeSet<Sid>,
    timing: Timing,
    persisted: Persisted,
    config: Vec<u8>,
    phase: Phase,
    started_ms: u64,
    epoch: u32,
    /// Largest accepted epoch among the connecting participants (self included).
    epoch_candidates: BTreeMap<Sid, u32>,
    epoch_acks: BTreeSet<Sid>,
    newleader_acks: BTreeSet<Sid>,
    learners: BTreeMap<Sid, LearnerPeer>,
    /// The leader's history: every txn it holds, committed or (before establishment) about to be;
    /// the last `COMMITTED_LOG_MAX` are kept for DIFF.
    committed_log: VecDeque<(Zxid, TxnBytes)>,
    /// Zxid of the leader's own tree once everything before the new epoch is committed.
    last_committed: Zxid,
    outstanding: BTreeMap<Zxid, Proposal>,
    last_proposed: Zxid,
    durable: Zxid,
    /// Syncs forwarded by learners, answered when `last_proposed` at their arrival commits.
    pending_syncs: BTreeMap<Zxid, Vec<Sid>>,
    /// Proposals durable and quorum-acked whose commit waits for an earlier zxid.
    lost: bool,
    last_ping_ms: u64,
}

impl Leader {
    /// A leader elected with `persisted` state and `history`, the txns of its log still inside
    /// the window (ascending, ending at `persisted.last_zxid`; the tree already reflects them).
    pub fn new(
        myid: Sid,
        voters: BTreeSet<Sid>,
        timing: Timing,
        persisted: Persisted,
        history: Vec<(Zxid, TxnBytes)>,
        config: Vec<u8>,
        now_ms: u64,
    ) -> Self {
        assert!(voters.contains(&myid), "a leader must be a voter");
        let mut committed_log: VecDeque<(Zxid, TxnBytes)> = history.into_iter().collect();
        while committed_log.len() > COMMITTED_LOG_MAX {
            committed_log.pop_front();
        }
        if let Some((z, _)) = committed_log.back() {
            assert_eq!(
                *z, persisted.last_zxid,
                "history must end at the last logged zxid"
            );
        }
        let mut epoch_candidates = BTreeMap::new();
        epoch_candidates.insert(myid, persisted.accepted_epoch);
        Self {
            myid,
            voters,
            timing,
            persisted,
            config,
            phase: Phase::Discovery,
            started_ms: now_ms,
            epoch: 0,
            epoch_candidates,
            epoch_acks: BTreeSet::new(),
            newleader_acks: BTreeSet::new(),
            learners: BTreeMap::new(),
            committed_log,
            last_committed: persisted.last_zxid,
            outstanding: BTreeMap::new(),
            last_proposed: persisted.last_zxid,
            durable: persisted.last_zxid,
            pending_syncs: BTreeMap::new(),
            lost: false,
            last_ping_ms: now_ms,
        }
    }

    /// Call once after `new`: a leader alone in a one-voter ensemble is established at once.
    pub fn start(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.try_fix_epoch(now_ms, &mut out);
        out
    }

    pub fn epoch(&self) -> Option<u32> {
        (self.phase != Phase::Discovery).then_some(self.epoch)
    }

    pub fn is_established(&self) -> bool {
        self.phase == Phase::Broadcast && !self.lost
    }

    pub fn last_committed(&self) -> Zxid {
        self.last_committed
    }

    pub fn last_proposed(&self) -> Zxid {
        self.last_proposed
    }

    /// Learners that are up to date (for `mntr`'s synced followers).
    pub fn synced_learners(&self) -> impl Iterator<Item = (Sid, LearnerKind)> + '_ {
        self.learners
            .iter()
            .filter(|(_, l)| l.stage == LearnerStage::UpToDate)
            .map(|(s, l)| (*s, l.kind))
    }

    pub fn outstanding_count(&self) -> usize {
        self.outstanding.len()
    }

    /// A learner's connection closed.
    pub fn disconnected(&mut self, sid: Sid) {
        self.learners.remove(&sid);
    }

    /// A message from learner `from`.
    pub fn receive(&mut self, now_ms: u64, from: Sid, msg: Msg) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.lost {
            return out;
        }
        if let Some(l) = self.learners.get_mut(&from) {
            l.last_heard_ms = now_ms;
        }
        match msg {
            Msg::LearnerInfo {
                observer,
                sid,
                accepted_epoch,
            } => {
                // The caller names a quorum connection by the sid its LearnerInfo gave.
                debug_assert_eq!(sid, from, "a learner is known by the sid it announced");
                let kind = if observer || !self.voters.contains(&from) {
                    LearnerKind::Observer
                } else {
                    LearnerKind::Follower
                };
                self.learners.insert(
                    from,
                    LearnerPeer {
                        kind,
                        stage: LearnerStage::Connected,
                        last_heard_ms: now_ms,
                        forwarding: false,
                    },
                );
                if self.phase == Phase::Discovery {
                    if kind == LearnerKind::Follower {
                        self.epoch_candidates.insert(from, accepted_epoch);
                    }
                    self.try_fix_epoch(now_ms, &mut out);
                } else {
                    self.send_leader_info(from, &mut out);
                }
            }
            Msg::AckEpoch {
                last_zxid,
                current_epoch,
            } => self.on_ack_epoch(now_ms, from, last_zxid, current_epoch, &mut out),
            Msg::Ack { zxid } => self.on_ack(from, zxid, &mut out),
            Msg::Ping { touches, .. } => {
                if !touches.is_empty() {
                    out.push(Effect::Touch { sessions: touches });
                }
            }
            Msg::Request {
                session,
                cxid,
                op,
                body,
            } => {
                if self.learner_ready(from) {
                    out.push(Effect::Request {
                        from,
                        session,
                        cxid,
                        op,
                        body,
                    });
                }
            }
            Msg::Revalidate {
                session,
                timeout_ms,
            } => out.push(Effect::Revalidate {
                from,
                session,
                timeout_ms,
            }),
            _ => {
                // A learner sends only the messages above; anything else ends that learner's
                // connection (not the leadership): it is forgotten and must register again.
                out.push(Effect::DropLearner { sid: from });
                self.learners.remove(&from);
            }
        }
        out
    }

    fn learner_ready(&self, sid: Sid) -> bool {
        self.learners.get(&sid).is_some_and(|l| l.forwarding)
    }

    fn send_leader_info(&mut self, to: Sid, out: &mut Vec<Effect>) {
        if let Some(l) = self.learners.get_mut(&to)
            && l.stage == LearnerStage::Connected
        {
            l.stage = LearnerStage::EpochSent;
            out.push(Effect::Send {
                to,
                msg: Msg::LeaderInfo {
                    new_epoch: self.epoch,
                },
            });
        }
    }

    fn try_fix_epoch(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.phase != Phase::Discovery {
            return;
        }
        let connected: BTreeSet<Sid> = self.epoch_candidates.keys().copied().collect();
        if !is_quorum(&self.voters, &connected) {
            return;
        }
        let max = self.epoch_candidates.values().copied().max().unwrap_or(0);
        // A learner's accepted epoch comes off the wire: u32::MAX is refused, not a panic.
        let Some(epoch) = max.checked_add(1) else {
            self.lose(
                LostReason::Protocol(format!("accepted epoch {max} leaves no next epoch")),
                out,
            );
            return;
        };
        self.epoch = epoch;
        self.phase = Phase::EpochAck;
        self.started_ms = now_ms;
        self.persisted.accepted_epoch = self.epoch;
        out.push(Effect::SaveEpochs {
            accepted: self.epoch,
            current: self.persisted.current_epoch,
        });
        let waiting: Vec<Sid> = self.learners.keys().copied().collect();
        for sid in waiting {
            self.send_leader_info(sid, out);
        }
        // The leader's own epoch ACK.
        self.epoch_acks.insert(self.myid);
        self.try_finish_epoch_ack(now_ms, out);
    }

    fn on_ack_epoch(
        &mut self,
        now_ms: u64,
        from: Sid,
        last_zxid: Zxid,
        current_epoch: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(l) = self.learners.get_mut(&from) else {
            return;
        };
        if l.stage != LearnerStage::EpochSent {
            self.learners.remove(&from);
            return;
        }
        l.stage = LearnerStage::AwaitSync { last_zxid };
        let kind = l.kind;
        if self.phase == Phase::EpochAck && current_epoch != -1 {
            let mine = (
                i64::from(self.persisted.current_epoch),
                self.persisted.last_zxid,
            );
            if (current_epoch, last_zxid) > mine {
                self.lose(LostReason::LearnerAhead { sid: from }, out);
                return;
            }
            if kind == LearnerKind::Follower {
                self.epoch_acks.insert(from);
            }
        }
        if self.phase == Phase::EpochAck {
            self.try_finish_epoch_ack(now_ms, out);
        } else {
            self.sync_learner(from, out);
        }
    }

    fn try_finish_epoch_ack(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.phase != Phase::EpochAck || !is_quorum(&self.voters, &self.epoch_acks) {
            return;
        }
        self.phase = Phase::NewLeader;
        self.started_ms = now_ms;
        self.persisted.current_epoch = self.epoch;
        out.push(Effect::SaveEpochs {
            accepted: self.epoch,
            current: self.epoch,
        });
        // The whole history of the new leader is what the new epoch starts from.
        self.last_proposed = make_zxid(self.epoch, 0);
        let waiting: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, l)| matches!(l.stage, LearnerStage::AwaitSync { .. }))
            .map(|(s, _)| *s)
            .collect();
        for sid in waiting {
            self.sync_learner(sid, out);
        }
        self.newleader_acks.insert(self.myid);
        self.try_establish(out);
    }

    /// Chooses DIFF, TRUNC or SNAP for a learner whose last zxid is known, queues the txns it
    /// lacks, starts forwarding to it and queues NEWLEADER.
    fn sync_learner(&mut self, sid: Sid, out: &mut Vec<Effect>) {
        let Some(l) = self.learners.get(&sid) else {
            return;
        };
        let LearnerStage::AwaitSync { last_zxid: peer } = l.stage else {
            return;
        };
        let kind = l.kind;
        let last = self.last_committed;
        let window: Vec<Zxid> = self.committed_log.iter().map(|(z, _)| *z).collect();
        let new_epoch_zxid = counter_of(peer) == 0;
        let in_window = window.first().is_some_and(|min| *min <= peer) && peer <= last;
        let send = |msg: Msg, out: &mut Vec<Effect>| out.push(Effect::Send { to: sid, msg });
        if peer == last {
            send(Msg::Diff { zxid: last }, out);
        } else if peer > last && !new_epoch_zxid {
            send(Msg::Trunc { zxid: last }, out);
        } else if in_window && (window.contains(&peer) || new_epoch_zxid) {
            send(Msg::Diff { zxid: last }, out);
            self.queue_after(sid, peer, out);
        } else if let (true, Some(prev), Some(next)) = (
            in_window,
            window.iter().copied().rfind(|z| *z < peer),
            window.iter().copied().find(|z| *z > peer),
        ) && epoch_of(next) == epoch_of(peer)
        {
            // The learner holds txns of this epoch that this leader never had (an uncommitted
            // tail of a leader that failed): cut it back to the last zxid both hold, then send
            // the rest. Across an epoch boundary a SNAP is sent instead, as learners cannot
            // truncate there.
            send(Msg::Trunc { zxid: prev }, out);
            self.queue_after(sid, prev, out);
        } else {
            out.push(Effect::SendSnapshot {
                to: sid,
                zxid: last,
            });
        }
        // Proposals in flight (broadcast phase) follow, then NEWLEADER.
        if kind == LearnerKind::Follower {
            for p in self.outstanding.values() {
                out.push(Effect::Send {
                    to: sid,
                    msg: Msg::Proposal {
                        zxid: p.zxid,
                        txn: p.txn.clone(),
                    },
                });
            }
        }
        out.push(Effect::Send {
            to: sid,
            msg: Msg::NewLeader {
                zxid: make_zxid(self.epoch, 0),
                config: self.config.clone(),
            },
        });
        if let Some(l) = self.learners.get_mut(&sid) {
            l.stage = LearnerStage::Synced;
            l.forwarding = true;
        }
    }

    fn queue_after(&self, sid: Sid, after: Zxid, out: &mut Vec<Effect>) {
        // Followers and observers alike get PROPOSAL + COMMIT pairs during the sync.
        for (z, txn) in self.committed_log.iter().filter(|(z, _)| *z > after) {
            out.push(Effect::Send {
                to: sid,
                msg: Msg::Proposal {
                    zxid: *z,
                    txn: txn.clone(),
                },
            });
            out.push(Effect::Send {
                to: sid,
                msg: Msg::Commit { zxid: *z },
            });
        }
    }

    fn on_ack(&mut self, from: Sid, zxid: Zxid, out: &mut Vec<Effect>) {
        let Some(l) = self.learners.get_mut(&from) else {
            return;
        };
        if counter_of(zxid) == 0 {
            // NEWLEADER's ACK (or the ACK after UPTODATE, which carries the same zxid).
            if l.stage == LearnerStage::Synced && zxid == make_zxid(self.epoch, 0) {
                l.stage = LearnerStage::Acked;
                if l.kind == LearnerKind::Follower && self.phase == Phase::NewLeader {
                    self.newleader_acks.insert(from);
                    self.try_establish(out);
                } else if self.phase == Phase::Broadcast {
                    self.send_uptodate(from, out);
                }
            }
            return;
        }
        if l.kind != LearnerKind::Follower {
            return;
        }
        if zxid <= self.last_committed {
            return;
        }
        if let Some(p) = self.outstanding.get_mut(&zxid) {
            p.acks.insert(from);
        }
        self.try_commit(out);
    }

    fn send_uptodate(&mut self, sid: Sid, out: &mut Vec<Effect>) {
        if let Some(l) = self.learners.get_mut(&sid)
            && l.stage == LearnerStage::Acked
        {
            l.stage = LearnerStage::UpToDate;
            out.push(Effect::Send {
                to: sid,
                msg: Msg::UpToDate,
            });
        }
    }

    fn try_establish(&mut self, out: &mut Vec<Effect>) {
        if self.phase != Phase::NewLeader || !is_quorum(&self.voters, &self.newleader_acks) {
            return;
        }
        self.phase = Phase::Broadcast;
        out.push(Effect::Established { epoch: self.epoch });
        let acked: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, l)| l.stage == LearnerStage::Acked)
            .map(|(s, _)| *s)
            .collect();
        for sid in acked {
            self.send_uptodate(sid, out);
        }
    }

    /// Proposes the next txn (zxid `last_proposed + 1`, made by the caller's state machine).
    /// The caller appends it to its own log (the returned effects say so) and reports its
    /// durability with [`Leader::durable`]; the leader's own ACK counts only from then.
    pub fn propose(&mut self, zxid: Zxid, txn: TxnBytes) -> Vec<Effect> {
        let mut out = Vec::new();
        assert!(self.is_established(), "proposal before the quorum formed");
        assert_eq!(zxid, self.last_proposed + 1, "proposals are contiguous");
        if counter_of(zxid) == u32::MAX {
            self.lose(LostReason::ZxidRollover, &mut out);
            return out;
        }
        self.last_proposed = zxid;
        out.push(Effect::Append {
            zxid,
            txn: txn.clone(),
        });
        for (sid, l) in &self.learners {
            if l.forwarding && l.kind == LearnerKind::Follower {
                out.push(Effect::Send {
                    to: *sid,
                    msg: Msg::Proposal {
                        zxid,
                        txn: txn.clone(),
                    },
                });
            }
        }
        self.outstanding.insert(
            zxid,
            Proposal {
                zxid,
                txn,
                acks: BTreeSet::new(),
            },
        );
        out
    }

    /// The caller's log has made every txn up to `zxid` durable.
    pub fn durable(&mut self, zxid: Zxid) -> Vec<Effect> {
        let mut out = Vec::new();
        if zxid <= self.durable || self.lost {
            return out;
        }
        self.durable = zxid;
        let me = self.myid;
        for p in self.outstanding.range_mut(..=zxid) {
            p.1.acks.insert(me);
        }
        self.try_commit(&mut out);
        out
    }

    fn try_commit(&mut self, out: &mut Vec<Effect>) {
        while let Some(entry) = self.outstanding.first_entry() {
            // A commit needs a quorum of ACKs that includes the leader's own durable write
            // (its ACK is added only once its log is durable), so nothing is visible to a
            // client before the leader has it on disk, whichever followers answered first.
            let acks = &entry.get().acks;
            if !acks.contains(&self.myid) || !is_quorum(&self.voters, acks) {
                break;
            }
            let p = entry.remove();
            assert_eq!(
                p.zxid,
                self.last_committed.max(make_zxid(self.epoch, 0)) + 1,
                "commits are in zxid order"
            );
            self.last_committed = p.zxid;
            self.committed_log.push_back((p.zxid, p.txn.clone()));
            if self.committed_log.len() > COMMITTED_LOG_MAX {
                self.committed_log.pop_front();
            }
            for (sid, l) in &self.learners {
                if !l.forwarding {
                    continue;
                }
                let msg = match l.kind {
                    LearnerKind::Follower => Msg::Commit { zxid: p.zxid },
                    LearnerKind::Observer => Msg::Inform {
                        zxid: p.zxid,
                        txn: p.txn.clone(),
                    },
                };
                out.push(Effect::Send { to: *sid, msg });
            }
            out.push(Effect::Commit {
                zxid: p.zxid,
                txn: p.txn,
            });
            if let Some(waiting) = self.pending_syncs.remove(&p.zxid) {
                for sid in waiting {
                    out.push(Effect::Send {
                        to: sid,
                        msg: Msg::Sync,
                    });
                }
            }
        }
    }

    /// A learner's forwarded `sync`, after every request it forwarded before it has been
    /// proposed: answered once what is proposed now is committed.
    pub fn sync_request(&mut self, from: Sid) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.outstanding.is_empty() {
            out.push(Effect::Send {
                to: from,
                msg: Msg::Sync,
            });
        } else {
            self.pending_syncs
                .entry(self.last_proposed)
                .or_default()
                .push(from);
        }
        out
    }

    pub fn revalidated(&mut self, to: Sid, session: i64, valid: bool) -> Vec<Effect> {
        vec![Effect::Send {
            to,
            msg: Msg::Revalidated { session, valid },
        }]
    }

    /// Timers: initLimit for the phases before broadcast; syncLimit for each learner and for the
    /// quorum; a PING to every learner each half tick.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.lost {
            return out;
        }
        if self.phase != Phase::Broadcast {
            if now_ms.saturating_sub(self.started_ms) > self.timing.init_ms() {
                let what = match self.phase {
                    Phase::Discovery => "a quorum to agree on the epoch",
                    Phase::EpochAck => "a quorum to acknowledge the epoch",
                    _ => "a quorum to acknowledge NEWLEADER",
                };
                self.lose(LostReason::InitTimeout(what), &mut out);
            }
            return out;
        }
        let sync_ms = self.timing.sync_ms();
        let stale: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, l)| now_ms.saturating_sub(l.last_heard_ms) > sync_ms)
            .map(|(s, _)| *s)
            .collect();
        for sid in stale {
            self.learners.remove(&sid);
        }
        let mut synced: BTreeSet<Sid> = self
            .learners
            .iter()
            .filter(|(_, l)| l.kind == LearnerKind::Follower && l.stage == LearnerStage::UpToDate)
            .map(|(s, _)| *s)
            .collect();
        synced.insert(self.myid);
        if !is_quorum(&self.voters, &synced) {
            self.lose(LostReason::QuorumLost, &mut out);
            return out;
        }
        if now_ms.saturating_sub(self.last_ping_ms) >= self.timing.tick_ms / 2 {
            self.last_ping_ms = now_ms;
            for (sid, l) in &self.learners {
                if l.forwarding {
                    out.push(Effect::Send {
                        to: *sid,
                        msg: Msg::Ping {
                            zxid: self.last_proposed,
                            touches: Vec::new(),
                        },
                    });
                }
            }
        }
        out
    }

    fn lose(&mut self, why: LostReason, out: &mut Vec<Effect>) {
        if !self.lost {
            self.lost = true;
            out.push(Effect::Lost(why));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Learner

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LStage {
    /// Sent LearnerInfo; waiting for LEADERINFO.
    Registering,
    /// Sent ACKEPOCH; waiting for DIFF, TRUNC or SNAP.
    AwaitSyncKind,
    /// Receiving the sync txns; waiting for NEWLEADER.
    Syncing,
    /// NEWLEADER received; its ACK waits for durability.
    NewLeaderPending {
        zxid: Zxid,
    },
    /// NEWLEADER ACKed; waiting for UPTODATE.
    AwaitUpToDate,
    Serving,
}

#[derive(Debug, Clone)]
struct Pending {
    zxid: Zxid,
    txn: TxnBytes,
    committed: bool,
    /// Received before UPTODATE: ACKed after it (the leader waits for those ACKs).
    acked: bool,
}

/// A follower's or observer's side of its connection to the leader.
#[derive(Debug)]
pub struct Learner {
    myid: Sid,
    leader: Sid,
    kind: LearnerKind,
    timing: Timing,
    persisted: Persisted,
    stage: LStage,
    new_epoch: u32,
    /// Logged (or queued) txns not yet handed out as commits, ascending.
    pending: VecDeque<Pending>,
    /// Highest zxid appended (the log's tail, durable or not).
    appended: Zxid,
    durable: Zxid,
    /// Highest zxid handed out as a commit.
    applied: Zxid,
    last_heard_ms: u64,
    lost: bool,
}

impl Learner {
    pub fn new(
        myid: Sid,
        leader: Sid,
        kind: LearnerKind,
        timing: Timing,
        persisted: Persisted,
        now_ms: u64,
    ) -> Self {
        assert_ne!(myid, leader, "a learner does not learn from itself");
        Self {
            myid,
            leader,
            kind,
            timing,
            persisted,
            stage: LStage::Registering,
            new_epoch: 0,
            pending: VecDeque::new(),
            appended: persisted.last_zxid,
            durable: persisted.last_zxid,
            applied: persisted.last_zxid,
            last_heard_ms: now_ms,
            lost: false,
        }
    }

    /// The first message, once the quorum connection is up.
    pub fn start(&mut self) -> Vec<Effect> {
        vec![self.send(Msg::LearnerInfo {
            observer: self.kind == LearnerKind::Observer,
            sid: self.myid,
            accepted_epoch: self.persisted.accepted_epoch,
        })]
    }

    pub fn leader(&self) -> Sid {
        self.leader
    }

    pub fn is_serving(&self) -> bool {
        self.stage == LStage::Serving && !self.lost
    }

    pub fn applied(&self) -> Zxid {
        self.applied
    }

    pub fn persisted(&self) -> Persisted {
        self.persisted
    }

    fn send(&self, msg: Msg) -> Effect {
        Effect::Send {
            to: self.leader,
            msg,
        }
    }

    pub fn disconnected(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.lose(LostReason::Disconnected, &mut out);
        out
    }

    pub fn receive(&mut self, now_ms: u64, msg: Msg) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.lost {
            return out;
        }
        self.last_heard_ms = now_ms;
        match (self.stage, msg) {
            (LStage::Registering, Msg::LeaderInfo { new_epoch }) => {
                let accepted = self.persisted.accepted_epoch;
                let current_epoch = if new_epoch > accepted {
                    self.persisted.accepted_epoch = new_epoch;
                    out.push(Effect::SaveEpochs {
                        accepted: new_epoch,
                        current: self.persisted.current_epoch,
                    });
                    i64::from(self.persisted.current_epoch)
                } else if new_epoch == accepted {
                    -1
                } else {
                    self.lose(
                        LostReason::StaleEpoch {
                            offered: new_epoch,
                            accepted,
                        },
                        &mut out,
                    );
                    return out;
                };
                self.new_epoch = new_epoch;
                self.stage = LStage::AwaitSyncKind;
                out.push(self.send(Msg::AckEpoch {
                    last_zxid: self.persisted.last_zxid,
                    current_epoch,
                }));
            }
            (LStage::AwaitSyncKind, Msg::Diff { .. }) => self.stage = LStage::Syncing,
            (LStage::AwaitSyncKind, Msg::Trunc { zxid }) => {
                out.push(Effect::Truncate { zxid });
                self.appended = zxid;
                self.durable = self.durable.min(zxid);
                self.applied = self.applied.min(zxid);
                self.persisted.last_zxid = zxid;
                self.stage = LStage::Syncing;
            }
            (LStage::AwaitSyncKind, Msg::Snap { zxid, stream }) => {
                out.push(Effect::InstallSnapshot { zxid, stream });
                self.appended = zxid;
                self.durable = zxid;
                self.applied = zxid;
                self.persisted.last_zxid = zxid;
                self.stage = LStage::Syncing;
            }
            (stage, Msg::Proposal { zxid, txn }) if self.takes_pairs(stage) => {
                if !self.accept_txn(zxid, txn, &mut out) {
                    return out;
                }
                // During sync the ACK waits for UPTODATE; afterwards for durability.
                if self.stage == LStage::Serving {
                    self.release_acks(&mut out);
                }
            }
            (stage, Msg::Commit { zxid }) if self.takes_pairs(stage) => {
                let Some(p) = self.pending.iter_mut().find(|p| !p.committed) else {
                    self.lose(
                        LostReason::Protocol(format!("COMMIT {zxid:#x} without a proposal")),
                        &mut out,
                    );
                    return out;
                };
                if p.zxid != zxid {
                    let next = p.zxid;
                    self.lose(
                        LostReason::Protocol(format!(
                            "COMMIT {zxid:#x} but the next proposal is {next:#x}"
                        )),
                        &mut out,
                    );
                    return out;
                }
                p.committed = true;
                self.release_commits(&mut out);
            }
            (stage, Msg::Inform { zxid, txn })
                if self.kind == LearnerKind::Observer && stage_synced(stage) =>
            {
                // An INFORM may commit a txn the sync already sent as a PROPOSAL.
                if let Some(p) = self.pending.iter_mut().find(|p| p.zxid == zxid) {
                    p.committed = true;
                } else {
                    if !self.accept_txn(zxid, txn, &mut out) {
                        return out;
                    }
                    if let Some(p) = self.pending.back_mut() {
                        p.committed = true;
                    }
                }
                self.release_commits(&mut out);
            }
            (LStage::Syncing, Msg::NewLeader { zxid, .. }) => {
                if epoch_of(zxid) != self.new_epoch {
                    self.lose(
                        LostReason::Protocol(format!("NEWLEADER {zxid:#x} of another epoch")),
                        &mut out,
                    );
                    return out;
                }
                self.stage = LStage::NewLeaderPending { zxid };
                self.try_ack_newleader(&mut out);
            }
            (LStage::AwaitUpToDate, Msg::UpToDate) => {
                self.stage = LStage::Serving;
                out.push(self.send(Msg::Ack {
                    zxid: make_zxid(self.new_epoch, 0),
                }));
                out.push(Effect::Serving {
                    epoch: self.new_epoch,
                });
                // Proposals logged during the sync are durable already (NEWLEADER's ACK waited
                // for them); the leader still counts their ACKs.
                self.release_acks(&mut out);
                self.release_commits(&mut out);
            }
            (_, Msg::Ping { .. }) => out.push(Effect::PingFromLeader),
            (LStage::Serving, Msg::Revalidated { session, valid }) => {
                out.push(Effect::Revalidated { session, valid });
            }
            // The caller keeps the forwarded syncs (it forwards requests itself) and treats a
            // SYNC with none outstanding as the protocol error it is.
            (LStage::Serving, Msg::Sync) => out.push(Effect::SyncDone),
            (stage, msg) => {
                self.lose(
                    LostReason::Protocol(format!("{} in {stage:?}", msg_name(&msg))),
                    &mut out,
                );
            }
        }
        out
    }

    /// Followers take PROPOSAL/COMMIT pairs from the sync on; observers only during the sync
    /// (afterwards they learn committed txns from INFORM).
    fn takes_pairs(&self, stage: LStage) -> bool {
        stage_synced(stage) && (self.kind == LearnerKind::Follower || stage != LStage::Serving)
    }

    /// Queues a txn for the log; false (and Lost) when it does not follow the last one.
    fn accept_txn(&mut self, zxid: Zxid, txn: TxnBytes, out: &mut Vec<Effect>) -> bool {
        if zxid <= self.appended {
            self.lose(
                LostReason::Protocol(format!("txn {zxid:#x} not after {:#x}", self.appended)),
                out,
            );
            return false;
        }
        self.appended = zxid;
        out.push(Effect::Append {
            zxid,
            txn: txn.clone(),
        });
        let acked = self.kind == LearnerKind::Observer;
        self.pending.push_back(Pending {
            zxid,
            txn,
            committed: false,
            acked,
        });
        true
    }

    /// The log made every txn up to `zxid` durable.
    pub fn durable(&mut self, zxid: Zxid) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.lost || zxid <= self.durable {
            return out;
        }
        assert!(zxid <= self.appended, "durable beyond what was appended");
        self.durable = zxid;
        self.persisted.last_zxid = zxid;
        if self.stage == LStage::Serving {
            self.release_acks(&mut out);
        }
        self.release_commits(&mut out);
        self.try_ack_newleader(&mut out);
        out
    }

    fn release_acks(&mut self, out: &mut Vec<Effect>) {
        if self.kind != LearnerKind::Follower {
            return;
        }
        let leader = self.leader;
        for p in self
            .pending
            .iter_mut()
            .filter(|p| !p.acked && p.zxid <= self.durable)
        {
            // Never an ACK for a txn that is not on disk: this is what makes a quorum's ACKs
            // mean "on a quorum's disks".
            assert!(p.zxid <= self.durable);
            p.acked = true;
            out.push(Effect::Send {
                to: leader,
                msg: Msg::Ack { zxid: p.zxid },
            });
        }
    }

    fn release_commits(&mut self, out: &mut Vec<Effect>) {
        while let Some(p) = self.pending.front() {
            if !(p.committed && p.zxid <= self.durable) {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            assert!(p.zxid > self.applied, "commits are applied once, in order");
            self.applied = p.zxid;
            out.push(Effect::Commit {
                zxid: p.zxid,
                txn: p.txn,
            });
        }
    }

    fn try_ack_newleader(&mut self, out: &mut Vec<Effect>) {
        let LStage::NewLeaderPending { zxid } = self.stage else {
            return;
        };
        if self.durable < self.appended {
            return;
        }
        // Every txn of the sync is on disk; now the epoch, then the ACK.
        self.persisted.current_epoch = self.new_epoch;
        out.push(Effect::SaveEpochs {
            accepted: self.persisted.accepted_epoch,
            current: self.new_epoch,
        });
        out.push(self.send(Msg::Ack { zxid }));
        self.stage = LStage::AwaitUpToDate;
    }

    /// The reply to the leader's PING, with this server's session touches.
    pub fn ping_reply(&self, touches: Vec<(i64, i32)>) -> Effect {
        self.send(Msg::Ping {
            zxid: self.applied,
            touches,
        })
    }

    /// Forwards a client request (a write, createSession, closeSession or sync).
    pub fn forward(&mut self, session: i64, cxid: i32, op: i32, body: Vec<u8>) -> Option<Effect> {
        if !self.is_serving() {
            return None;
        }
        Some(self.send(Msg::Request {
            session,
            cxid,
            op,
            body,
        }))
    }

    pub fn revalidate(&self, session: i64, timeout_ms: i32) -> Effect {
        self.send(Msg::Revalidate {
            session,
            timeout_ms,
        })
    }

    /// The leader must be heard within initLimit ticks while synchronising and syncLimit ticks
    /// after.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let limit = if self.stage == LStage::Serving {
            self.timing.sync_ms()
        } else {
            self.timing.init_ms()
        };
        if now_ms.saturating_sub(self.last_heard_ms) > limit {
            self.lose(LostReason::LeaderSilent, &mut out);
        }
        out
    }

    fn lose(&mut self, why: LostReason, out: &mut Vec<Effect>) {
        if !self.lost {
            self.lost = true;
            out.push(Effect::Lost(why));
        }
    }
}

/// From the DIFF, TRUNC or SNAP on.
fn stage_synced(stage: LStage) -> bool {
    !matches!(stage, LStage::Registering | LStage::AwaitSyncKind)
}

fn msg_name(m: &Msg) -> &'static str {
    match m {
        Msg::LearnerInfo { .. } => "LEARNERINFO",
        Msg::LeaderInfo { .. } => "LEADERINFO",
        Msg::AckEpoch { .. } => "ACKEPOCH",
        Msg::Diff { .. } => "DIFF",
        Msg::Trunc { .. } => "TRUNC",
        Msg::Snap { .. } => "SNAP",
        Msg::Proposal { .. } => "PROPOSAL",
        Msg::Ack { .. } => "ACK",
        Msg::Commit { .. } => "COMMIT",
        Msg::Inform { .. } => "INFORM",
        Msg::NewLeader { .. } => "NEWLEADER",
        Msg::UpToDate => "UPTODATE",
        Msg::Ping { .. } => "PING",
        Msg::Request { .. } => "REQUEST",
        Msg::Revalidate { .. } | Msg::Revalidated { .. } => "REVALIDATE",
        Msg::Sync => "SYNC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        tick_ms: 100,
        init_limit: 10,
        sync_limit: 5,
    };

    fn txn(b: u8) -> TxnBytes {
        Rc::from(vec![b])
    }

    fn sends(fx: &[Effect]) -> Vec<(Sid, Msg)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send { to, msg } => Some((*to, msg.clone())),
                _ => None,
            })
            .collect()
    }

    fn p(accepted: u32, current: u32, last: Zxid) -> Persisted {
        Persisted {
            accepted_epoch: accepted,
            current_epoch: current,
            last_zxid: last,
        }
    }

    /// A follower synchronised by `leader` through a DIFF, serving.
    fn serving_follower() -> Learner {
        let mut l = Learner::new(2, 1, LearnerKind::Follower, T, p(1, 1, 0), 0);
        l.start();
        l.receive(1, Msg::LeaderInfo { new_epoch: 2 });
        l.receive(1, Msg::Diff { zxid: 0 });
        let fx = l.receive(
            1,
            Msg::NewLeader {
                zxid: make_zxid(2, 0),
                config: Vec::new(),
            },
        );
        assert!(sends(&fx).contains(&(
            1,
            Msg::Ack {
                zxid: make_zxid(2, 0)
            }
        )));
        l.receive(1, Msg::UpToDate);
        assert!(l.is_serving());
        l
    }

    #[test]
    fn a_follower_acks_a_proposal_only_after_it_is_durable() {
        let mut l = serving_follower();
        let z = make_zxid(2, 1);
        let fx = l.receive(
            2,
            Msg::Proposal {
                zxid: z,
                txn: txn(1),
            },
        );
        assert!(matches!(fx[0], Effect::Append { zxid, .. } if zxid == z));
        assert!(sends(&fx).is_empty(), "no ACK before the fsync: {fx:?}");
        let fx = l.durable(z);
        assert_eq!(sends(&fx), vec![(1, Msg::Ack { zxid: z })]);
        // COMMIT applies it, once.
        let fx = l.receive(3, Msg::Commit { zxid: z });
        assert!(matches!(fx.as_slice(), [Effect::Commit { zxid, .. }] if *zxid == z));
    }

    #[test]
    fn a_commit_waits_for_the_txn_to_be_durable_here() {
        let mut l = serving_follower();
        let z = make_zxid(2, 1);
        l.receive(
            2,
            Msg::Proposal {
                zxid: z,
                txn: txn(1),
            },
        );
        let fx = l.receive(3, Msg::Commit { zxid: z });
        assert!(
            fx.iter().all(|e| !matches!(e, Effect::Commit { .. })),
            "{fx:?}"
        );
        let fx = l.durable(z);
        assert!(
            fx.iter()
                .any(|e| matches!(e, Effect::Commit { zxid, .. } if *zxid == z))
        );
    }

    #[test]
    fn newleader_is_acked_after_the_sync_txns_are_durable_and_the_epoch_is_saved() {
        let mut l = Learner::new(2, 1, LearnerKind::Follower, T, p(1, 1, 0), 0);
        l.start();
        let fx = l.receive(1, Msg::LeaderInfo { new_epoch: 2 });
        assert_eq!(
            fx[0],
            Effect::SaveEpochs {
                accepted: 2,
                current: 1
            }
        );
        assert_eq!(
            sends(&fx),
            vec![(
                1,
                Msg::AckEpoch {
                    last_zxid: 0,
                    current_epoch: 1
                }
            )]
        );
        l.receive(
            1,
            Msg::Diff {
                zxid: make_zxid(1, 1),
            },
        );
        l.receive(
            1,
            Msg::Proposal {
                zxid: make_zxid(1, 1),
                txn: txn(1),
            },
        );
        l.receive(
            1,
            Msg::Commit {
                zxid: make_zxid(1, 1),
            },
        );
        let fx = l.receive(
            1,
            Msg::NewLeader {
                zxid: make_zxid(2, 0),
                config: Vec::new(),
            },
        );
        assert!(
            sends(&fx).is_empty(),
            "the sync txn is not durable yet: {fx:?}"
        );
        let fx = l.durable(make_zxid(1, 1));
        let save = fx
            .iter()
            .position(|e| matches!(e, Effect::SaveEpochs { current: 2, .. }));
        let ack = fx
            .iter()
            .position(|e| matches!(e, Effect::Send { msg: Msg::Ack { zxid }, .. } if *zxid == make_zxid(2, 0)));
        assert!(save.is_some() && ack.is_some() && save < ack, "{fx:?}");
    }

    #[test]
    fn a_stale_epoch_is_refused() {
        let mut l = Learner::new(2, 1, LearnerKind::Follower, T, p(5, 4, 0), 0);
        l.start();
        let fx = l.receive(1, Msg::LeaderInfo { new_epoch: 3 });
        assert!(matches!(
            fx.as_slice(),
            [Effect::Lost(LostReason::StaleEpoch {
                offered: 3,
                accepted: 5
            })]
        ));
    }

    /// A leader of {1,2,3} established with follower 2 and history up to `last`.
    fn leader_with_follower(last: Zxid, history: Vec<(Zxid, TxnBytes)>) -> Leader {
        let voters: BTreeSet<Sid> = [1, 2, 3].into_iter().collect();
        let mut ld = Leader::new(1, voters, T, p(1, 1, last), history, Vec::new(), 0);
        ld.start(0);
        ld.receive(
            1,
            2,
            Msg::LearnerInfo {
                observer: false,
                sid: 2,
                accepted_epoch: 1,
            },
        );
        ld.receive(
            1,
            2,
            Msg::AckEpoch {
                last_zxid: last,
                current_epoch: 1,
            },
        );
        ld.receive(
            2,
            2,
            Msg::Ack {
                zxid: make_zxid(2, 0),
            },
        );
        assert!(ld.is_established());
        ld
    }

    #[test]
    fn the_leader_commits_only_with_its_own_durable_write_and_a_quorum() {
        let mut ld = leader_with_follower(0, Vec::new());
        let z = make_zxid(2, 1);
        let fx = ld.propose(z, txn(7));
        assert!(sends(&fx).contains(&(
            2,
            Msg::Proposal {
                zxid: z,
                txn: txn(7)
            }
        )));
        // The follower's ACK alone is a majority with... nobody: the leader's own write counts
        // only once durable.
        let fx = ld.receive(3, 2, Msg::Ack { zxid: z });
        assert!(
            fx.iter().all(|e| !matches!(e, Effect::Commit { .. })),
            "{fx:?}"
        );
        let fx = ld.durable(z);
        assert!(
            fx.iter()
                .any(|e| matches!(e, Effect::Commit { zxid, .. } if *zxid == z))
        );
        assert!(sends(&fx).contains(&(2, Msg::Commit { zxid: z })));
        assert_eq!(ld.last_committed(), z);
    }

    #[test]
    fn proposals_commit_in_zxid_order() {
        let mut ld = leader_with_follower(0, Vec::new());
        let (a, b) = (make_zxid(2, 1), make_zxid(2, 2));
        ld.propose(a, txn(1));
        ld.propose(b, txn(2));
        ld.durable(b);
        let fx = ld.receive(3, 2, Msg::Ack { zxid: b });
        assert!(
            fx.iter().all(|e| !matches!(e, Effect::Commit { .. })),
            "b waits for a: {fx:?}"
        );
        let fx = ld.receive(3, 2, Msg::Ack { zxid: a });
        let commits: Vec<Zxid> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Commit { zxid, .. } => Some(*zxid),
                _ => None,
            })
            .collect();
        assert_eq!(commits, vec![a, b]);
    }

    #[test]
    fn an_exhausted_epoch_from_a_learner_is_refused_not_a_panic() {
        let voters: BTreeSet<Sid> = [1, 2, 3].into_iter().collect();
        let mut ld = Leader::new(1, voters, T, p(1, 1, 0), Vec::new(), Vec::new(), 0);
        ld.start(0);
        let fx = ld.receive(
            1,
            2,
            Msg::LearnerInfo {
                observer: false,
                sid: 2,
                accepted_epoch: u32::MAX,
            },
        );
        assert!(
            matches!(fx.as_slice(), [Effect::Lost(LostReason::Protocol(_))]),
            "{fx:?}"
        );
    }

    #[test]
    fn a_learner_with_a_more_recent_history_stops_the_leader() {
        let voters: BTreeSet<Sid> = [1, 2, 3].into_iter().collect();
        let mut ld = Leader::new(
            1,
            voters,
            T,
            p(1, 1, make_zxid(1, 3)),
            Vec::new(),
            Vec::new(),
            0,
        );
        ld.start(0);
        ld.receive(
            1,
            2,
            Msg::LearnerInfo {
                observer: false,
                sid: 2,
                accepted_epoch: 1,
            },
        );
        let fx = ld.receive(
            1,
            2,
            Msg::AckEpoch {
                last_zxid: make_zxid(1, 9),
                current_epoch: 1,
            },
        );
        assert!(
            fx.contains(&Effect::Lost(LostReason::LearnerAhead { sid: 2 })),
            "{fx:?}"
        );
    }

    #[test]
    fn sync_is_diff_trunc_or_snap_by_the_learners_zxid() {
        let history: Vec<(Zxid, TxnBytes)> =
            (1..=5).map(|c| (make_zxid(1, c), txn(c as u8))).collect();
        let last = make_zxid(1, 5);
        // The learner's current epoch is older than the leader's, as for a learner that missed
        // the last NEWLEADER (otherwise a longer history in the same epoch would stop this
        // leader: see the test above).
        let first_of = |peer: Zxid| {
            let voters: BTreeSet<Sid> = [1, 2, 3].into_iter().collect();
            let mut ld = Leader::new(1, voters, T, p(1, 1, last), history.clone(), Vec::new(), 0);
            ld.start(0);
            ld.receive(
                1,
                2,
                Msg::LearnerInfo {
                    observer: false,
                    sid: 2,
                    accepted_epoch: 1,
                },
            );
            let fx = ld.receive(
                1,
                2,
                Msg::AckEpoch {
                    last_zxid: peer,
                    current_epoch: 0,
                },
            );
            fx.into_iter()
                .find_map(|e| match e {
                    Effect::Send { to: 2, msg } => Some(msg),
                    Effect::SendSnapshot { .. } => Some(Msg::Snap {
                        zxid: 0,
                        stream: Rc::from(Vec::new()),
                    }),
                    _ => None,
                })
                .expect("a sync message")
        };
        assert_eq!(first_of(last), Msg::Diff { zxid: last });
        assert_eq!(first_of(make_zxid(1, 3)), Msg::Diff { zxid: last });
        assert_eq!(first_of(make_zxid(1, 9)), Msg::Trunc { zxid: last });
        assert!(matches!(first_of(0), Msg::Snap { .. }));
    }
}
