//! Fast leader election (ZooKeeper's `FastLeaderElection`), as a pure state machine: one
//! [`Election`] per server, fed notifications and clock ticks, returning the notifications to
//! send and, once, the decision. No I/O, no clock, no randomness: `now_ms` is a parameter.
//!
//! What it is not: it does not dial peers, frame bytes or decide which TCP connection of a pair
//! survives (the I/O layer does that, see `wire`), and it does not run ZAB. A decision is only
//! the election's; ZAB's epoch quorum is what makes a leader established.
//!
//! ## Lifecycle
//! 1. [`Election::new`] with the static membership and the persisted `last_logged_zxid` and
//!    `current_epoch`.
//! 2. [`Election::start`] begins round 1 (the logical clock starts at 0 in every process): vote
//!    for ourselves and send that vote to every voter.
//! 3. [`Election::receive`] for every notification that arrives and [`Election::tick`] whenever
//!    [`Election::next_deadline_ms`] has passed. They return [`Out::Send`]s and at most one
//!    [`Out::Decided`] per election.
//! 4. Once decided, the same value keeps answering LOOKING peers with the decided vote (the
//!    "not looking" path), until ZAB gives up on the leader and calls
//!    [`Election::resume_looking`], which starts the next round with the logical clock kept.
//!
//! ## The rules, as ZooKeeper 3.8/3.9 run them
//! - Votes are ordered by (peer epoch, zxid, server id), see [`Election::beats`].
//! - A LOOKING notice from a higher round makes us adopt that round, forget the votes received so
//!   far, vote for the better of it and our own initial vote, and broadcast. Notices from older
//!   rounds are ignored by the election but answered at once with our current proposal, so the
//!   lagging sender catches up.
//! - When the votes received in this round that equal our proposal form a quorum (strict
//!   majority of voters), we wait until `finalize_wait_ms` pass without any notice; a notice that
//!   is not better than our proposal is dropped and restarts that wait, a better one ends it and
//!   is processed normally. A quiet `finalize_wait_ms` decides.
//! - FOLLOWING and LEADING notices are counted in two sets: the votes of this round, and the
//!   "out of election" votes of any round. A quorum of either, agreeing on a leader that has
//!   itself said LEADING (unless the leader is us), makes us join it.
//! - Non-voters (observers) get an immediate answer with our current vote; they run the same
//!   election, never propose themselves, and finish OBSERVING.
//! - Without any notice for the notification interval (from `initial_interval_ms`, doubling up
//!   to `max_notification_interval_ms`), we send our proposal to every voter again.
//!
//! Apache's sender puts a notice to itself into its own receive queue; here that self-notice is
//! processed right after the input that caused the broadcast, which is where it lands in
//! Apache's queue too (behind what was already received).
//!
//! All peers are assumed to send notification version 2 (every ZooKeeper since 3.5; 3.4.6 and
//! later send 1); vote equality for FOLLOWING/LEADING notices follows that assumption.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

/// A server id (`myid`).
pub type Sid = i64;

/// The most servers an ensemble may list; bounds every per-peer table here.
pub const SERVERS_MAX: usize = 1024;

/// A server's state as notifications carry it (`QuorumPeer.ServerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// One election notification, without transport details: the sender's sid comes from the
/// connection, the format version and the quorum config are the wire layer's. Field for field
/// the meaning of `wire::Notification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The sender's state.
    pub state: ServerState,
    /// The proposed (or decided) leader.
    pub leader: Sid,
    /// The proposed leader's last logged zxid, as the vote says.
    pub zxid: i64,
    /// The round (`logicalclock`) the vote belongs to.
    pub election_epoch: i64,
    /// The proposed leader's current epoch, as the vote says.
    pub peer_epoch: i64,
}

/// A vote: who leads, with which zxid and epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    pub leader: Sid,
    pub zxid: i64,
    pub election_epoch: i64,
    pub peer_epoch: i64,
}

/// How votes are ordered. [`VoteOrder::Fle`] is ZooKeeper's; the other is Kiln's standalone
/// rule ("largest zxid, then largest myid"), which differs when a server has moved to a new epoch
/// before logging in it. It is kept so that the simulator can show that its checker tells them
/// apart; an ensemble member must use `Fle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoteOrder {
    #[default]
    Fle,
    ZxidThenSid,
}

/// The election's timers, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionTiming {
    /// How long a quorum on our proposal must stay unchallenged before we decide (`finalizeWait`).
    pub finalize_wait_ms: u64,
    /// The ceiling of the doubling rebroadcast interval (`maxNotificationInterval`).
    pub max_notification_interval_ms: u64,
    /// The first rebroadcast interval (`minNotificationInterval`).
    pub initial_interval_ms: u64,
}

impl Default for ElectionTiming {
    fn default() -> Self {
        ElectionTiming {
            finalize_wait_ms: 200,
            max_notification_interval_ms: 60_000,
            initial_interval_ms: 200,
        }
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `notice` to server `to` (queued on that peer's connection; a newer notice to the same
    /// peer may replace an unsent older one, as Apache's one-slot send queue does).
    Send { to: Sid, notice: Notice },
    /// The election is over: we are `state` (FOLLOWING, LEADING or OBSERVING) under `vote`.
    /// `support` is the quorum of voters whose votes carried it, each with the state its counted
    /// notice was sent in (LOOKING: it voted so in our round; FOLLOWING/LEADING: it had decided).
    Decided {
        state: ServerState,
        vote: Vote,
        support: BTreeMap<Sid, ServerState>,
    },
}

/// A configuration the election cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ElectionError {
    #[error("the ensemble lists no voters")]
    NoVoters,
    #[error("the ensemble lists {count} servers, more than {max}")]
    TooManyServers { count: usize, max: usize },
    #[error("server {sid} is listed both as a voter and as an observer")]
    VoterAndObserver { sid: Sid },
    #[error("server {sid} is not listed as a {role}")]
    NotListed { sid: Sid, role: &'static str },
    #[error("timing {name} = {value} ms is out of range")]
    Timing { name: &'static str, value: u64 },
}

/// A vote as recorded in one of the election's tallies. `modern` is whether the notice's format
/// version is above 0, which decides how FOLLOWING/LEADING votes compare (see [`Recorded::matches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    vote: Vote,
    state: ServerState,
    modern: bool,
}

impl Recorded {
    /// Apache's `Vote.equals`: LOOKING votes must agree on everything; FOLLOWING/LEADING votes
    /// only on the leader and the peer epoch (their zxid and round go stale after sync,
    /// ZOOKEEPER-1805), and only on the leader when one side predates the version field.
    fn matches(&self, other: &Recorded) -> bool {
        if self.state == ServerState::Looking || other.state == ServerState::Looking {
            self.vote == other.vote
        } else if self.modern != other.modern {
            self.vote.leader == other.vote.leader
        } else {
            self.vote.leader == other.vote.leader && self.vote.peer_epoch == other.vote.peer_epoch
        }
    }
}

/// One server's fast leader election.
#[derive(Debug, Clone)]
pub struct Election {
    my_sid: Sid,
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
    i_am_observer: bool,
    timing: ElectionTiming,
    order: VoteOrder,
    last_logged_zxid: i64,
    current_epoch: i64,

    state: ServerState,
    /// The round (`logicalclock`); 0 before the first election of this process.
    logical_clock: i64,
    /// Our proposal: (leader, zxid, peer epoch).
    proposal: (Sid, i64, i64),
    /// `QuorumPeer.currentVote`: the last decision (or our own vote at process start). This is
    /// what non-voters are told, and what a decided server tells LOOKING peers.
    current_vote: Vote,
    /// The votes of this round, by sender (`recvset`).
    recv: BTreeMap<Sid, Recorded>,
    /// FOLLOWING/LEADING votes of any round, by sender (`outofelection`).
    out_of_election: BTreeMap<Sid, Recorded>,
    /// The rebroadcast interval now in force.
    not_timeout_ms: u64,
    /// When we rebroadcast unless a notice arrives first.
    notify_deadline_ms: u64,
    /// While a quorum agrees with our proposal: when we decide, and the voters of that quorum.
    finalizing: Option<(u64, BTreeMap<Sid, ServerState>)>,
    /// Set by a broadcast: our own copy of the notice is still to be processed.
    self_notice_pending: bool,
}

impl Election {
    /// An election for server `my_sid` of the ensemble `voters` ∪ `observers`, with the
    /// persisted `last_logged_zxid` and `current_epoch`. Nothing is sent until [`Election::start`].
    pub fn new(
        my_sid: Sid,
        voters: BTreeSet<Sid>,
        observers: BTreeSet<Sid>,
        i_am_observer: bool,
        last_logged_zxid: i64,
        current_epoch: i64,
        timing: ElectionTiming,
    ) -> Result<Election, ElectionError> {
        if voters.is_empty() {
            return Err(ElectionError::NoVoters);
        }
        let count = voters.len() + observers.len();
        if count > SERVERS_MAX {
            return Err(ElectionError::TooManyServers {
                count,
                max: SERVERS_MAX,
            });
        }
        if let Some(&sid) = voters.intersection(&observers).next() {
            return Err(ElectionError::VoterAndObserver { sid });
        }
        let (set, role) = if i_am_observer {
            (&observers, "observer")
        } else {
            (&voters, "voter")
        };
        if !set.contains(&my_sid) {
            return Err(ElectionError::NotListed { sid: my_sid, role });
        }
        for (name, value) in [
            ("finalize_wait_ms", timing.finalize_wait_ms),
            ("initial_interval_ms", timing.initial_interval_ms),
            (
                "max_notification_interval_ms",
                timing.max_notification_interval_ms,
            ),
        ] {
            // A zero timer would spin; an interval above a day is a configuration mistake.
            if value == 0 || value > 86_400_000 {
                return Err(ElectionError::Timing { name, value });
            }
        }
        if timing.max_notification_interval_ms < timing.initial_interval_ms {
            return Err(ElectionError::Timing {
                name: "max_notification_interval_ms",
                value: timing.max_notification_interval_ms,
            });
        }
        Ok(Election {
            my_sid,
            voters,
            observers,
            i_am_observer,
            timing,
            order: VoteOrder::Fle,
            last_logged_zxid,
            current_epoch,
            state: ServerState::Looking,
            logical_clock: 0,
            proposal: (my_sid, last_logged_zxid, current_epoch),
            // As `QuorumPeer.startLeaderElection`: our own id even for an observer, round -1.
            current_vote: Vote {
                leader: my_sid,
                zxid: last_logged_zxid,
                election_epoch: -1,
                peer_epoch: current_epoch,
            },
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            not_timeout_ms: timing.initial_interval_ms,
            notify_deadline_ms: 0,
            finalizing: None,
            self_notice_pending: false,
        })
    }

    /// Replaces the vote order (see [`VoteOrder`]).
    #[must_use]
    pub fn with_vote_order(mut self, order: VoteOrder) -> Election {
        self.order = order;
        self
    }

    pub fn my_sid(&self) -> Sid {
        self.my_sid
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The round (`logicalclock`).
    pub fn round(&self) -> i64 {
        self.logical_clock
    }

    /// Our proposal in this round (meaningful while LOOKING).
    pub fn proposal(&self) -> Vote {
        Vote {
            leader: self.proposal.0,
            zxid: self.proposal.1,
            election_epoch: self.logical_clock,
            peer_epoch: self.proposal.2,
        }
    }

    /// `QuorumPeer.currentVote`: the decided vote once decided.
    pub fn current_vote(&self) -> Vote {
        self.current_vote
    }

    /// Our initial vote: ourselves with our persisted zxid and epoch, or, for a non-voter, a
    /// vote every voter's beats (`getInitId`, `getInitLastLoggedZxid`, `getPeerEpoch`).
    pub fn initial_vote(&self) -> (Sid, i64, i64) {
        if self.i_am_observer {
            (i64::MIN, i64::MIN, i64::MIN)
        } else {
            (self.my_sid, self.last_logged_zxid, self.current_epoch)
        }
    }

    /// When [`Election::tick`] next has something to do, if anything.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.state != ServerState::Looking || self.logical_clock == 0 {
            return None;
        }
        Some(match &self.finalizing {
            Some((at, _)) => *at,
            None => self.notify_deadline_ms,
        })
    }

    /// Whether a strict majority of the voters is in `acks` (`QuorumMaj.containsQuorum`; only
    /// voters are ever recorded in the tallies).
    pub fn is_quorum(&self, acks: &BTreeMap<Sid, ServerState>) -> bool {
        debug_assert!(acks.keys().all(|s| self.voters.contains(s)));
        acks.len() > self.voters.len() / 2
    }

    /// `totalOrderPredicate`: whether the vote (`new_leader`, `new_zxid`, `new_epoch`) beats the
    /// vote (`cur_leader`, `cur_zxid`, `cur_epoch`): a higher peer epoch; equal epochs and a
    /// higher zxid; both equal and a higher server id. A server of weight zero never wins; every
    /// voter has weight one here (majority quorums), a non-voter zero.
    pub fn beats(&self, new: (Sid, i64, i64), cur: (Sid, i64, i64)) -> bool {
        let (new_leader, new_zxid, new_epoch) = new;
        let (cur_leader, cur_zxid, cur_epoch) = cur;
        if !self.voters.contains(&new_leader) {
            return false;
        }
        match self.order {
            VoteOrder::Fle => (new_epoch, new_zxid, new_leader) > (cur_epoch, cur_zxid, cur_leader),
            VoteOrder::ZxidThenSid => (new_zxid, new_leader) > (cur_zxid, cur_leader),
        }
    }

    /// Begins this process's first election (`lookForLeader` after start-up).
    pub fn start(&mut self, now_ms: u64) -> Vec<Out> {
        assert!(self.logical_clock == 0, "start is called once per process");
        self.look(now_ms)
    }

    /// Begins the next election after ZAB gave up on the leader, with the zxid and epoch now on
    /// disk. The round and the last decided vote are kept, as a running ZooKeeper keeps them.
    pub fn resume_looking(
        &mut self,
        now_ms: u64,
        last_logged_zxid: i64,
        current_epoch: i64,
    ) -> Vec<Out> {
        assert!(self.logical_clock > 0, "resume_looking after start");
        self.last_logged_zxid = last_logged_zxid;
        self.current_epoch = current_epoch;
        self.look(now_ms)
    }

    /// ZOOKEEPER-1732: after syncing with the leader, the epoch we report for the decided vote
    /// becomes the new epoch; its zxid and round stay those of the election.
    pub fn update_election_vote(&mut self, peer_epoch: i64) {
        self.current_vote.peer_epoch = peer_epoch;
    }

    fn look(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.state = ServerState::Looking;
        self.logical_clock = self.logical_clock.saturating_add(1);
        self.proposal = self.initial_vote();
        self.recv.clear();
        self.out_of_election.clear();
        self.finalizing = None;
        self.not_timeout_ms = self.timing.initial_interval_ms;
        self.notify_deadline_ms = now_ms.saturating_add(self.not_timeout_ms);
        self.broadcast(&mut out);
        self.drain_self_notice(now_ms, &mut out);
        out
    }

    /// A notice from `from_sid`.
    pub fn receive(&mut self, now_ms: u64, from_sid: Sid, notice: Notice) -> Vec<Out> {
        let mut out = Vec::new();
        if from_sid == self.my_sid || self.logical_clock == 0 {
            // Our own notices never travel the network; before start there is nothing to say.
            return out;
        }
        if !self.voters.contains(&from_sid) {
            // A non-voter gets our current vote right away and never enters the tally. A sid the
            // configuration does not know cannot have connected; ignore it.
            if self.observers.contains(&from_sid) {
                out.push(Out::Send {
                    to: from_sid,
                    notice: Notice {
                        state: self.state,
                        leader: self.current_vote.leader,
                        zxid: self.current_vote.zxid,
                        election_epoch: self.logical_clock,
                        peer_epoch: self.current_vote.peer_epoch,
                    },
                });
            }
            return out;
        }
        if self.state == ServerState::Looking {
            if notice.state == ServerState::Looking && notice.election_epoch < self.logical_clock {
                // The sender lags: tell it our round and proposal.
                out.push(Out::Send {
                    to: from_sid,
                    notice: self.proposal_notice(),
                });
            }
            self.process(now_ms, from_sid, notice, &mut out);
            self.drain_self_notice(now_ms, &mut out);
        } else if notice.state == ServerState::Looking {
            // Not looking: answer a LOOKING peer with the decided vote, election-time zxid and
            // round, and the (possibly updated) epoch.
            out.push(Out::Send {
                to: from_sid,
                notice: Notice {
                    state: self.state,
                    leader: self.current_vote.leader,
                    zxid: self.current_vote.zxid,
                    election_epoch: self.current_vote.election_epoch,
                    peer_epoch: self.current_vote.peer_epoch,
                },
            });
        }
        out
    }

    /// Advances the timers: decides after a quiet finalize wait, rebroadcasts after a quiet
    /// notification interval (and doubles it).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.state != ServerState::Looking || self.logical_clock == 0 {
            return out;
        }
        if let Some((at, _)) = &self.finalizing {
            if now_ms >= *at {
                let support = self.finalizing.take().map(|(_, s)| s).unwrap_or_default();
                let vote = self.proposal();
                self.decide(vote, support, &mut out);
            }
            return out;
        }
        if now_ms >= self.notify_deadline_ms {
            self.broadcast(&mut out);
            self.not_timeout_ms = self
                .not_timeout_ms
                .saturating_mul(2)
                .min(self.timing.max_notification_interval_ms);
            self.notify_deadline_ms = now_ms.saturating_add(self.not_timeout_ms);
            self.drain_self_notice(now_ms, &mut out);
        }
        out
    }

    fn proposal_notice(&self) -> Notice {
        Notice {
            state: ServerState::Looking,
            leader: self.proposal.0,
            zxid: self.proposal.1,
            election_epoch: self.logical_clock,
            peer_epoch: self.proposal.2,
        }
    }

    /// `sendNotifications`: our proposal to every voter, ourselves included (processed later by
    /// [`Election::drain_self_notice`]).
    fn broadcast(&mut self, out: &mut Vec<Out>) {
        let notice = self.proposal_notice();
        for &to in &self.voters {
            if to == self.my_sid {
                self.self_notice_pending = true;
            } else {
                out.push(Out::Send { to, notice });
            }
        }
    }

    fn drain_self_notice(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        // Processing our own notice never broadcasts (it cannot beat our proposal), so one pass.
        if self.self_notice_pending && self.state == ServerState::Looking {
            self.self_notice_pending = false;
            let notice = self.proposal_notice();
            self.process(now_ms, self.my_sid, notice, out);
            debug_assert!(!self.self_notice_pending);
        }
        self.self_notice_pending = false;
    }

    /// One notice taken from the receive queue by `lookForLeader`.
    fn process(&mut self, now_ms: u64, from: Sid, n: Notice, out: &mut Vec<Out>) {
        debug_assert!(self.voters.contains(&from));
        let theirs = (n.leader, n.zxid, n.peer_epoch);
        // A better notice ends the finalize wait and is processed as usual; any other is dropped
        // and the quiet period starts again.
        if let Some((_, support)) = self.finalizing.take()
            && !self.beats(theirs, self.proposal)
        {
            self.finalizing = Some((now_ms.saturating_add(self.timing.finalize_wait_ms), support));
            return;
        }
        self.notify_deadline_ms = now_ms.saturating_add(self.not_timeout_ms);
        if !self.voters.contains(&n.leader) {
            return;
        }
        match n.state {
            ServerState::Looking => self.process_looking(now_ms, from, n, out),
            ServerState::Observing => {}
            ServerState::Following | ServerState::Leading => self.process_decided(from, n, out),
        }
    }

    fn process_looking(&mut self, now_ms: u64, from: Sid, n: Notice, out: &mut Vec<Out>) {
        let theirs = (n.leader, n.zxid, n.peer_epoch);
        if self.initial_vote().1 == -1 || n.zxid == -1 {
            // A server that could not read its log takes no part.
            return;
        }
        if n.election_epoch > self.logical_clock {
            self.logical_clock = n.election_epoch;
            self.recv.clear();
            let init = self.initial_vote();
            self.proposal = if self.beats(theirs, init) {
                theirs
            } else {
                init
            };
            self.broadcast(out);
        } else if n.election_epoch < self.logical_clock {
            return;
        } else if self.beats(theirs, self.proposal) {
            self.proposal = theirs;
            self.broadcast(out);
        }
        self.recv.insert(
            from,
            Recorded {
                vote: Vote {
                    leader: n.leader,
                    zxid: n.zxid,
                    election_epoch: n.election_epoch,
                    peer_epoch: n.peer_epoch,
                },
                state: ServerState::Looking,
                modern: false,
            },
        );
        let target = Recorded {
            vote: self.proposal(),
            state: ServerState::Looking,
            modern: false,
        };
        let acks = agreeing(&self.recv, &target);
        if self.is_quorum(&acks) {
            self.finalizing = Some((now_ms.saturating_add(self.timing.finalize_wait_ms), acks));
        }
    }

    /// A FOLLOWING or LEADING notice (`receivedFollowingNotification`).
    fn process_decided(&mut self, from: Sid, n: Notice, out: &mut Vec<Out>) {
        let vote = Vote {
            leader: n.leader,
            zxid: n.zxid,
            election_epoch: n.election_epoch,
            peer_epoch: n.peer_epoch,
        };
        let target = Recorded {
            vote,
            state: n.state,
            modern: true,
        };
        if n.election_epoch == self.logical_clock {
            self.recv.insert(
                from,
                Recorded {
                    vote,
                    state: n.state,
                    modern: false,
                },
            );
            let acks = agreeing(&self.recv, &target);
            if self.is_quorum(&acks)
                && self.leader_confirmed(&self.recv, n.leader, n.election_epoch)
            {
                self.decide(vote, acks, out);
                return;
            }
        }
        // Joining an established ensemble: a quorum of any round must follow the same leader.
        self.out_of_election.insert(from, target);
        let acks = agreeing(&self.out_of_election, &target);
        if self.is_quorum(&acks)
            && self.leader_confirmed(&self.out_of_election, n.leader, n.election_epoch)
        {
            self.logical_clock = n.election_epoch;
            self.decide(vote, acks, out);
        }
    }

    /// `checkLeader`: another leader must itself have said LEADING; we may lead only on votes of
    /// our own round.
    fn leader_confirmed(
        &self,
        votes: &BTreeMap<Sid, Recorded>,
        leader: Sid,
        election_epoch: i64,
    ) -> bool {
        if leader == self.my_sid {
            self.logical_clock == election_epoch
        } else {
            votes
                .get(&leader)
                .is_some_and(|r| r.state == ServerState::Leading)
        }
    }

    fn decide(&mut self, vote: Vote, support: BTreeMap<Sid, ServerState>, out: &mut Vec<Out>) {
        let state = if vote.leader == self.my_sid {
            ServerState::Leading
        } else if self.i_am_observer {
            ServerState::Observing
        } else {
            ServerState::Following
        };
        assert!(
            self.voters.contains(&vote.leader),
            "decided leader {} is not a voter",
            vote.leader
        );
        assert!(
            !(self.i_am_observer && state == ServerState::Leading),
            "an observer cannot lead"
        );
        assert!(
            self.is_quorum(&support),
            "decided without a quorum: {support:?}"
        );
        self.state = state;
        self.current_vote = vote;
        self.recv.clear();
        self.out_of_election.clear();
        self.finalizing = None;
        self.self_notice_pending = false;
        out.push(Out::Decided {
            state,
            vote,
            support,
        });
    }
}

/// The senders whose recorded vote matches `target`.
fn agreeing(votes: &BTreeMap<Sid, Recorded>, target: &Recorded) -> BTreeMap<Sid, ServerState> {
    votes
        .iter()
        .filter(|(_, r)| r.matches(target))
        .map(|(&s, r)| (s, r.state))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny in-order network: every message is delivered after `delay` ms, in send order.
    struct Net {
        nodes: BTreeMap<Sid, Election>,
        now: u64,
        queue: std::collections::VecDeque<(u64, Sid, Sid, Notice)>,
        decided: BTreeMap<Sid, (ServerState, Vote)>,
        delay: u64,
        down: BTreeSet<Sid>,
    }

    fn set(s: &[Sid]) -> BTreeSet<Sid> {
        s.iter().copied().collect()
    }

    impl Net {
        fn new(voters: &[(Sid, i64, i64)], observers: &[Sid]) -> Net {
            let v = set(&voters.iter().map(|x| x.0).collect::<Vec<_>>());
            let o = set(observers);
            let mut nodes = BTreeMap::new();
            for &(sid, zxid, epoch) in voters {
                let e = Election::new(
                    sid,
                    v.clone(),
                    o.clone(),
                    false,
                    zxid,
                    epoch,
                    ElectionTiming::default(),
                )
                .unwrap();
                nodes.insert(sid, e);
            }
            for &sid in observers {
                let e = Election::new(
                    sid,
                    v.clone(),
                    o.clone(),
                    true,
                    0,
                    0,
                    ElectionTiming::default(),
                )
                .unwrap();
                nodes.insert(sid, e);
            }
            Net {
                nodes,
                now: 0,
                queue: Default::default(),
                decided: BTreeMap::new(),
                delay: 5,
                down: BTreeSet::new(),
            }
        }

        fn handle(&mut self, from: Sid, outs: Vec<Out>) {
            for o in outs {
                match o {
                    Out::Send { to, notice } => {
                        self.queue
                            .push_back((self.now + self.delay, from, to, notice))
                    }
                    Out::Decided {
                        state,
                        vote,
                        support,
                    } => {
                        assert!(!support.is_empty());
                        self.decided.insert(from, (state, vote));
                    }
                }
            }
        }

        fn start(&mut self, sid: Sid) {
            let outs = self.nodes.get_mut(&sid).unwrap().start(self.now);
            self.handle(sid, outs);
        }

        fn deliver(&mut self, from: Sid, to: Sid, n: Notice) {
            if self.down.contains(&to) || self.down.contains(&from) {
                return;
            }
            let outs = self.nodes.get_mut(&to).unwrap().receive(self.now, from, n);
            self.handle(to, outs);
        }

        /// Runs until `until` ms, 1 ms steps.
        fn run(&mut self, until: u64) {
            while self.now < until {
                while self.queue.front().is_some_and(|m| m.0 <= self.now) {
                    let (_, from, to, n) = self.queue.pop_front().unwrap();
                    self.deliver(from, to, n);
                }
                let sids: Vec<Sid> = self.nodes.keys().copied().collect();
                for sid in sids {
                    if self.down.contains(&sid) {
                        continue;
                    }
                    let outs = self.nodes.get_mut(&sid).unwrap().tick(self.now);
                    self.handle(sid, outs);
                }
                self.now += 1;
            }
        }

        fn leader_of(&self, sid: Sid) -> Option<Sid> {
            self.decided.get(&sid).map(|d| d.1.leader)
        }
    }

    #[test]
    fn three_servers_with_equal_zxid_elect_the_highest_sid() {
        let mut net = Net::new(&[(1, 5, 1), (2, 5, 1), (3, 5, 1)], &[]);
        for s in [1, 2, 3] {
            net.start(s);
        }
        net.run(2_000);
        for s in [1, 2, 3] {
            assert_eq!(net.leader_of(s), Some(3));
        }
        assert_eq!(net.decided[&3].0, ServerState::Leading);
        assert_eq!(net.decided[&1].0, ServerState::Following);
    }

    #[test]
    fn a_higher_zxid_wins_over_a_higher_sid() {
        let mut net = Net::new(&[(1, 9, 1), (2, 5, 1), (3, 5, 1)], &[]);
        for s in [3, 2, 1] {
            net.start(s);
        }
        net.run(2_000);
        for s in [1, 2, 3] {
            assert_eq!(net.leader_of(s), Some(1));
        }
        assert_eq!(net.decided[&1].1.zxid, 9);
    }

    #[test]
    fn a_higher_peer_epoch_wins_over_a_higher_zxid() {
        // Server 2 moved to epoch 3 before logging in it; server 3 logged more in epoch 2.
        let z = |e: i64, c: i64| (e << 32) | c;
        let mut net = Net::new(&[(1, z(2, 1), 2), (2, z(2, 1), 3), (3, z(2, 7), 2)], &[]);
        for s in [1, 2, 3] {
            net.start(s);
        }
        net.run(2_000);
        for s in [1, 2, 3] {
            assert_eq!(net.leader_of(s), Some(2));
        }
        assert_eq!(net.decided[&2].1.peer_epoch, 3);
    }

    #[test]
    fn the_zxid_then_sid_order_picks_differently_when_epochs_differ() {
        let z = |e: i64, c: i64| (e << 32) | c;
        let v = set(&[1, 2, 3]);
        let e = Election::new(
            1,
            v,
            BTreeSet::new(),
            false,
            0,
            0,
            ElectionTiming::default(),
        )
        .unwrap();
        assert!(e.beats((2, z(2, 1), 3), (3, z(2, 7), 2)));
        let e = e.with_vote_order(VoteOrder::ZxidThenSid);
        assert!(!e.beats((2, z(2, 1), 3), (3, z(2, 7), 2)));
    }

    #[test]
    fn a_late_joiner_learns_the_established_leader_from_following_and_leading_replies() {
        let mut net = Net::new(&[(1, 5, 1), (2, 5, 1), (3, 4, 1)], &[]);
        net.start(1);
        net.start(2);
        net.run(2_000);
        assert_eq!(net.leader_of(1), Some(2));
        assert_eq!(net.decided[&2].0, ServerState::Leading);
        // Server 3 starts late with round 1 and a vote for itself; 1 and 2 answer FOLLOWING and
        // LEADING with their round-1 vote, and 3 joins through the out-of-election tally.
        net.start(3);
        net.run(4_000);
        assert_eq!(net.leader_of(3), Some(2));
        assert_eq!(net.decided[&3].0, ServerState::Following);
    }

    #[test]
    fn a_late_joiner_does_not_follow_a_leader_that_never_said_leading() {
        // Only server 1 answers, FOLLOWING 2; 2 is down. A quorum (1 and 3) agrees, but checkLeader
        // wants 2's own LEADING notice.
        let mut net = Net::new(&[(1, 5, 1), (2, 5, 1), (3, 4, 1)], &[]);
        net.start(1);
        net.start(2);
        net.run(2_000);
        net.down.insert(2);
        net.start(3);
        net.run(6_000);
        assert_eq!(net.leader_of(3), None);
        assert_eq!(net.nodes[&3].state(), ServerState::Looking);
    }

    #[test]
    fn an_observer_ends_observing_and_never_leads() {
        let mut net = Net::new(&[(1, 5, 1), (2, 5, 1), (3, 5, 1)], &[9]);
        for s in [9, 1, 2, 3] {
            net.start(s);
        }
        net.run(5_000);
        assert_eq!(net.decided[&9], (ServerState::Observing, net.decided[&3].1));
        assert_eq!(net.leader_of(9), Some(3));
        let obs = &net.nodes[&9];
        assert_eq!(obs.initial_vote(), (i64::MIN, i64::MIN, i64::MIN));
    }

    #[test]
    fn an_observer_proposes_nobody_and_sends_only_to_voters() {
        let v = set(&[1, 2, 3]);
        let mut e =
            Election::new(9, v, set(&[8, 9]), true, 7, 1, ElectionTiming::default()).unwrap();
        let outs = e.start(0);
        let tos: Vec<Sid> = outs
            .iter()
            .map(|o| match o {
                Out::Send { to, notice } => {
                    assert_eq!(
                        (notice.leader, notice.zxid, notice.peer_epoch),
                        (i64::MIN, i64::MIN, i64::MIN)
                    );
                    *to
                }
                Out::Decided { .. } => panic!("decided at start"),
            })
            .collect();
        assert_eq!(tos, vec![1, 2, 3]);
    }

    #[test]
    fn a_minority_never_decides() {
        let mut net = Net::new(&[(1, 5, 1), (2, 5, 1), (3, 5, 1)], &[]);
        net.down.insert(1);
        net.down.insert(2);
        net.start(3);
        net.run(200_000);
        assert!(net.decided.is_empty());
        // The rebroadcast interval doubled up to its ceiling.
        assert_eq!(net.nodes[&3].not_timeout_ms, 60_000);
    }

    #[test]
    fn stale_round_notices_are_ignored_and_answered_with_our_round() {
        let v = set(&[1, 2, 3]);
        let mut e = Election::new(
            1,
            v,
            BTreeSet::new(),
            false,
            5,
            1,
            ElectionTiming::default(),
        )
        .unwrap();
        e.start(0);
        // Jump to round 4 through a LOOKING notice from 2.
        let n = |leader, round| Notice {
            state: ServerState::Looking,
            leader,
            zxid: 5,
            election_epoch: round,
            peer_epoch: 1,
        };
        e.receive(1, 2, n(1, 4));
        assert_eq!(e.round(), 4);
        // A round-2 vote for 3 (which would beat our proposal) changes nothing but is answered.
        let outs = e.receive(2, 3, n(3, 2));
        assert_eq!(e.proposal().leader, 1);
        assert_eq!(
            outs,
            vec![Out::Send {
                to: 3,
                notice: n(1, 4)
            }]
        );
        assert!(!e.recv.contains_key(&3));
    }

    #[test]
    fn a_higher_round_clears_the_votes_received() {
        let v = set(&[1, 2, 3, 4, 5]);
        let mut e = Election::new(
            1,
            v,
            BTreeSet::new(),
            false,
            5,
            1,
            ElectionTiming::default(),
        )
        .unwrap();
        e.start(0);
        let n = |leader, round| Notice {
            state: ServerState::Looking,
            leader,
            zxid: 5,
            election_epoch: round,
            peer_epoch: 1,
        };
        e.receive(1, 4, n(4, 1));
        assert_eq!(e.recv.len(), 2);
        e.receive(2, 2, n(2, 3));
        // Our init (1) loses to 2; votes for round 1 are gone; ours for round 3 is in.
        assert_eq!(e.round(), 3);
        assert_eq!(e.proposal().leader, 2);
        assert_eq!(e.recv.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn finalize_wait_lets_a_better_vote_within_200_ms_change_the_outcome() {
        let v = set(&[1, 2, 3]);
        let mut e = Election::new(
            1,
            v,
            BTreeSet::new(),
            false,
            5,
            1,
            ElectionTiming::default(),
        )
        .unwrap();
        e.start(0);
        let n = |leader, zxid| Notice {
            state: ServerState::Looking,
            leader,
            zxid,
            election_epoch: 1,
            peer_epoch: 1,
        };
        // 2 votes for 2: we adopt 2, and {1, 2} is a quorum; the finalize wait starts.
        e.receive(10, 2, n(2, 5));
        assert_eq!(e.next_deadline_ms(), Some(210));
        assert!(e.tick(100).is_empty());
        // 3's better vote arrives at 150 ms: we switch to 3, and {1, 3} now agree on 3.
        e.receive(150, 3, n(3, 5));
        assert_eq!(e.proposal().leader, 3);
        assert_eq!(e.next_deadline_ms(), Some(350));
        let outs = e.tick(350);
        assert!(matches!(
            outs.as_slice(),
            [Out::Decided { state: ServerState::Following, vote, support }]
                if vote.leader == 3 && support.keys().copied().collect::<BTreeSet<_>>() == set(&[1, 3])
        ));
    }

    #[test]
    fn without_a_better_vote_the_finalize_wait_decides() {
        let v = set(&[1, 2, 3]);
        let mut e = Election::new(
            3,
            v,
            BTreeSet::new(),
            false,
            5,
            1,
            ElectionTiming::default(),
        )
        .unwrap();
        e.start(0);
        let n = Notice {
            state: ServerState::Looking,
            leader: 3,
            zxid: 5,
            election_epoch: 1,
            peer_epoch: 1,
        };
        e.receive(10, 1, n);
        // A worse vote during the wait is dropped and restarts the quiet period.
        e.receive(100, 2, Notice { leader: 2, ..n });
        assert!(e.tick(299).is_empty());
        let outs = e.tick(300);
        assert!(matches!(
            outs.as_slice(),
            [Out::Decided { state: ServerState::Leading, support, .. }] if support.keys().copied().collect::<BTreeSet<_>>() == set(&[1, 3])
        ));
        // Decided: a LOOKING peer gets our vote with the election's round.
        let outs = e.receive(
            400,
            2,
            Notice {
                election_epoch: 7,
                ..n
            },
        );
        assert_eq!(
            outs,
            vec![Out::Send {
                to: 2,
                notice: Notice {
                    state: ServerState::Leading,
                    ..n
                }
            }]
        );
    }

    #[test]
    fn non_voters_are_answered_at_once_with_the_current_vote() {
        let v = set(&[1, 2, 3]);
        let mut e = Election::new(1, v, set(&[9]), false, 5, 1, ElectionTiming::default()).unwrap();
        e.start(0);
        let outs = e.receive(
            1,
            9,
            Notice {
                state: ServerState::Looking,
                leader: i64::MIN,
                zxid: i64::MIN,
                election_epoch: 1,
                peer_epoch: i64::MIN,
            },
        );
        assert_eq!(
            outs,
            vec![Out::Send {
                to: 9,
                notice: Notice {
                    state: ServerState::Looking,
                    leader: 1,
                    zxid: 5,
                    election_epoch: 1,
                    peer_epoch: 1
                }
            }]
        );
        // Unknown sids are ignored.
        assert!(
            e.receive(
                2,
                77,
                Notice {
                    state: ServerState::Looking,
                    leader: 1,
                    zxid: 0,
                    election_epoch: 1,
                    peer_epoch: 0
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let t = ElectionTiming::default();
        assert_eq!(
            Election::new(1, set(&[]), set(&[]), false, 0, 0, t).unwrap_err(),
            ElectionError::NoVoters
        );
        assert!(matches!(
            Election::new(1, set(&[1, 2]), set(&[2]), false, 0, 0, t),
            Err(ElectionError::VoterAndObserver { sid: 2 })
        ));
        assert!(matches!(
            Election::new(1, set(&[1, 2]), set(&[3]), true, 0, 0, t),
            Err(ElectionError::NotListed { sid: 1, .. })
        ));
        let zero = ElectionTiming {
            finalize_wait_ms: 0,
            ..t
        };
        assert!(matches!(
            Election::new(1, set(&[1]), set(&[]), false, 0, 0, zero),
            Err(ElectionError::Timing { .. })
        ));
    }

    #[test]
    fn a_single_voter_elects_itself() {
        let mut e = Election::new(
            1,
            set(&[1]),
            BTreeSet::new(),
            false,
            5,
            1,
            ElectionTiming::default(),
        )
        .unwrap();
        assert!(e.start(0).is_empty());
        let outs = e.tick(200);
        assert!(matches!(
            outs.as_slice(),
            [Out::Decided {
                state: ServerState::Leading,
                ..
            }]
        ));
    }
}
