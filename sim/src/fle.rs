//! Fast leader election among 3 or 5 voters (and sometimes an observer), each server running
//! the real [`Election`] core, over a simulated network with faults.
//!
//! The network follows `QuorumCnxManager`: one connection per pair, FIFO with a random delay;
//! while a pair is disconnected each direction holds one unsent notice (a newer one replaces
//! it); on reconnection each side sends that notice or else replays the last one it sent, which
//! is how stale notices reach a peer first. Faults during the first part of a seed: single
//! notices lost, connections broken (reconnecting after a while), a random minority isolated and
//! later healed, servers crashed and restarted (a fresh process: round 1, the persisted zxid and
//! epoch). A stand-in for ZAB sends a decided server back to LOOKING the way a real one would: a
//! follower at once when its leader died, after 4 s when it cannot reach a leading leader; a
//! leader after 4 s without a quorum of followers.
//!
//! Checkers:
//! - (a) whenever a server decides LEADING, the decision rests on a quorum of voters, and the
//!   leader's vote beats or equals (by ZooKeeper's order) the initial vote of every supporter
//!   that voted for it while LOOKING: the agreement was real;
//! - (b) once the faults stop (all healed, all restarted), every server decides within 180 s of
//!   simulated time and all agree on one voter that says LEADING; then the whole ensemble is
//!   restarted at once on a clean network, and the leader must be the voter with the greatest
//!   (epoch, zxid, sid) initial vote;
//! - (c) no observer leads (also asserted inside the core).
//!
//! FLE alone does not give one leader under partitions (ZAB's epoch quorum does), so uniqueness
//! is checked only after the heal.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use kiln_zk::quorum::election::{
    Election, ElectionTiming, Notice, Out, ServerState, Sid, Vote, VoteOrder,
};

use crate::Failure;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleBug {
    /// Votes compared by (zxid, sid) only, ignoring the peer epoch.
    IgnoreEpoch,
}

impl FleBug {
    pub fn parse(s: &str) -> Option<FleBug> {
        match s {
            "fle-ignore-epoch" => Some(FleBug::IgnoreEpoch),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FleOptions {
    pub bug: Option<FleBug>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FleReport {
    pub servers: u64,
    pub decisions: u64,
    pub leader_decisions: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub notices_delivered: u64,
    /// Simulated time from the heal until all agreed.
    pub heal_to_agreement_ms: u64,
    /// Digest of the schedule: equal for equal runs.
    pub trace: u64,
}

/// How long a decided server tolerates an unreachable leader (or a leader too few followers).
const ZAB_GRACE_MS: u64 = 4_000;
/// Supervision period of the ZAB stand-in and the agreement check.
const SUPERVISE_MS: u64 = 250;
/// After the heal, everyone must agree within this long.
const HEAL_BOUND_MS: u64 = 180_000;
/// Agreement held this long ends the heal phase early.
const STABLE_MS: u64 = 10_000;
/// The clean restart runs this long.
const CLEAN_MS: u64 = 30_000;
/// The most events one seed may schedule (a runaway schedule is a failure, not a hang).
const EVENTS_MAX: u64 = 5_000_000;
const OBSERVER_SID: Sid = 100;

#[derive(Debug, Clone)]
enum Event {
    Start(Sid),
    Deliver {
        from: Sid,
        to: Sid,
        generation: u64,
        notice: Notice,
    },
    Tick(Sid, u64),
    Reconnect(Sid, Sid),
    EndPartition,
    Fault,
    Supervise,
    Heal,
    CleanRestart,
    End,
}

#[derive(Debug, Default)]
struct Conn {
    up: bool,
    generation: u64,
    reconnect_pending: bool,
}

#[derive(Debug, Default)]
struct Direction {
    last_sent: Option<Notice>,
    queued: Option<Notice>,
    last_delivery_ms: u64,
}

struct Node {
    election: Option<Election>,
    alive: bool,
    incarnation: u64,
    observer: bool,
    /// The persisted (zxid, current epoch).
    zxid: i64,
    epoch: i64,
    lost_since: Option<u64>,
    ticks: BTreeSet<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Healed,
    Clean,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, usize)>>,
    payloads: Vec<Option<Event>>,
    nodes: BTreeMap<Sid, Node>,
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
    conns: BTreeMap<(Sid, Sid), Conn>,
    dirs: BTreeMap<(Sid, Sid), Direction>,
    isolated: BTreeSet<Sid>,
    phase: Phase,
    heal_at: u64,
    agreed_since: Option<u64>,
    order: VoteOrder,
    report: FleReport,
    step: u32,
}

fn pair(a: Sid, b: Sid) -> (Sid, Sid) {
    (a.min(b), a.max(b))
}

/// ZooKeeper's vote order, whatever order the servers were built with.
fn fle_key(leader: Sid, zxid: i64, epoch: i64) -> (i64, i64, Sid) {
    (epoch, zxid, leader)
}

pub fn run(seed: u64, opts: FleOptions) -> Result<FleReport, Failure> {
    let mut rng = Rng::new(seed);
    let n_voters: i64 = if rng.chance(50) { 3 } else { 5 };
    let voters: BTreeSet<Sid> = (1..=n_voters).collect();
    let observers: BTreeSet<Sid> = if rng.chance(40) {
        [OBSERVER_SID].into_iter().collect()
    } else {
        BTreeSet::new()
    };
    let mut nodes = BTreeMap::new();
    for &sid in voters.iter().chain(observers.iter()) {
        // Small ranges, so that ties and epoch-ahead-of-zxid cases are common.
        let epoch = 1 + i64::try_from(rng.below(3)).unwrap_or(0);
        let zxid_epoch = epoch - i64::try_from(rng.below(2)).unwrap_or(0);
        let zxid = (zxid_epoch << 32) | i64::try_from(rng.below(4)).unwrap_or(0);
        nodes.insert(
            sid,
            Node {
                election: None,
                alive: false,
                incarnation: 0,
                observer: observers.contains(&sid),
                zxid,
                epoch,
                lost_since: None,
                ticks: BTreeSet::new(),
            },
        );
    }
    let mut sim = Sim {
        seed,
        rng,
        now: 0,
        seq: 0,
        events: BinaryHeap::new(),
        payloads: Vec::new(),
        nodes,
        voters,
        observers,
        conns: BTreeMap::new(),
        dirs: BTreeMap::new(),
        isolated: BTreeSet::new(),
        phase: Phase::Faults,
        heal_at: 0,
        agreed_since: None,
        order: match opts.bug {
            Some(FleBug::IgnoreEpoch) => VoteOrder::ZxidThenSid,
            None => VoteOrder::Fle,
        },
        report: FleReport {
            servers: u64::try_from(n_voters).unwrap_or(0),
            ..FleReport::default()
        },
        step: 0,
    };
    sim.run()?;
    Ok(sim.report)
}

impl Sim {
    fn fail(&self, what: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            what: format!("fle at {} ms: {what}", self.now),
        }
    }

    fn at(&mut self, time: u64, e: Event) {
        self.seq += 1;
        self.payloads.push(Some(e));
        self.events
            .push(Reverse((time, self.seq, self.payloads.len() - 1)));
    }

    fn sids(&self) -> Vec<Sid> {
        self.nodes.keys().copied().collect()
    }

    fn blocked(&self, a: Sid, b: Sid) -> bool {
        self.isolated.contains(&a) != self.isolated.contains(&b)
    }

    fn alive(&self, sid: Sid) -> bool {
        self.nodes.get(&sid).is_some_and(|n| n.alive)
    }

    fn run(&mut self) -> Result<(), Failure> {
        let sids = self.sids();
        for sid in sids {
            let t = self.rng.below(2_000);
            self.at(t, Event::Start(sid));
        }
        let faults_ms = 5_000 + self.rng.below(25_000);
        self.at(100, Event::Fault);
        self.at(SUPERVISE_MS, Event::Supervise);
        self.at(faults_ms, Event::Heal);
        while let Some(Reverse((time, _, idx))) = self.events.pop() {
            debug_assert!(time >= self.now);
            self.now = time;
            self.step = self.step.wrapping_add(1);
            if u64::from(self.step) > EVENTS_MAX {
                return Err(self.fail("runaway schedule".into()));
            }
            let Some(e) = self.payloads.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            match e {
                Event::Start(sid) => self.start(sid)?,
                Event::Deliver {
                    from,
                    to,
                    generation,
                    notice,
                } => self.deliver(from, to, generation, notice)?,
                Event::Tick(sid, inc) => self.tick(sid, inc)?,
                Event::Reconnect(a, b) => self.reconnect(a, b),
                Event::EndPartition => self.end_partition(),
                Event::Fault => self.fault(),
                Event::Supervise => self.supervise()?,
                Event::Heal => self.heal(),
                Event::CleanRestart => self.clean_restart(),
                Event::End => return self.check_clean_end(),
            }
        }
        Err(self.fail("the schedule ran dry".into()))
    }

    // ---- servers ----

    fn start(&mut self, sid: Sid) -> Result<(), Failure> {
        let voters = self.voters.clone();
        let observers = self.observers.clone();
        let order = self.order;
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return Ok(());
        };
        if node.alive {
            return Ok(());
        }
        let election = Election::new(
            sid,
            voters,
            observers,
            node.observer,
            node.zxid,
            node.epoch,
            ElectionTiming::default(),
        )
        .map_err(|e| format!("{e}"));
        let mut election = match election {
            Ok(e) => e.with_vote_order(order),
            Err(e) => return Err(self.fail(e)),
        };
        node.alive = true;
        node.lost_since = None;
        node.ticks.clear();
        let outs = election.start(now);
        node.election = Some(election);
        crate::fold_trace(&mut self.report.trace, &[1, sid as u64, now]);
        for peer in self.sids() {
            if peer != sid {
                self.ensure_reconnect(sid, peer);
            }
        }
        self.handle(sid, outs)
    }

    fn crash(&mut self, sid: Sid) {
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        if !node.alive {
            return;
        }
        node.alive = false;
        node.incarnation += 1;
        node.election = None;
        node.ticks.clear();
        self.report.crashes += 1;
        crate::fold_trace(&mut self.report.trace, &[2, sid as u64, self.now]);
        for peer in self.sids() {
            if peer == sid {
                continue;
            }
            let c = self.conns.entry(pair(sid, peer)).or_default();
            c.up = false;
            c.generation += 1;
            // A fresh process remembers nothing it sent; its peers still do.
            self.dirs.remove(&(sid, peer));
        }
    }

    fn handle(&mut self, sid: Sid, outs: Vec<Out>) -> Result<(), Failure> {
        for o in outs {
            match o {
                Out::Send { to, notice } => self.send(sid, to, notice),
                Out::Decided {
                    state,
                    vote,
                    support,
                } => self.decided(sid, state, vote, &support)?,
            }
        }
        self.schedule_tick(sid);
        Ok(())
    }

    fn schedule_tick(&mut self, sid: Sid) {
        let Some(node) = self.nodes.get_mut(&sid) else {
            return;
        };
        let Some(at) = node.election.as_ref().and_then(Election::next_deadline_ms) else {
            return;
        };
        if node.ticks.insert(at) {
            let inc = node.incarnation;
            self.at(at.max(self.now), Event::Tick(sid, inc));
        }
    }

    fn tick(&mut self, sid: Sid, inc: u64) -> Result<(), Failure> {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return Ok(());
        };
        if !node.alive || node.incarnation != inc {
            return Ok(());
        }
        node.ticks.remove(&now);
        let outs = match node.election.as_mut() {
            Some(e) => e.tick(now),
            None => return Ok(()),
        };
        self.handle(sid, outs)
    }

    fn decided(
        &mut self,
        sid: Sid,
        state: ServerState,
        vote: Vote,
        support: &BTreeMap<Sid, ServerState>,
    ) -> Result<(), Failure> {
        self.report.decisions += 1;
        crate::fold_trace(
            &mut self.report.trace,
            &[3, sid as u64, vote.leader as u64, self.now],
        );
        let observer = self.observers.contains(&sid);
        // (c)
        if observer && state == ServerState::Leading {
            return Err(self.fail(format!("observer {sid} leads")));
        }
        if !self.voters.contains(&vote.leader) {
            return Err(self.fail(format!("{sid} decided for non-voter {}", vote.leader)));
        }
        if state != ServerState::Leading {
            return Ok(());
        }
        // (a)
        self.report.leader_decisions += 1;
        let quorum = support.keys().filter(|s| self.voters.contains(s)).count();
        if quorum * 2 <= self.voters.len() || support.len() != quorum {
            return Err(self.fail(format!(
                "{sid} leads on support {support:?}, not a quorum of voters"
            )));
        }
        let Some(me) = self.nodes.get(&sid) else {
            return Ok(());
        };
        if vote.leader != sid || (vote.zxid, vote.peer_epoch) != (me.zxid, me.epoch) {
            return Err(self.fail(format!(
                "{sid} leads under {vote:?}, not its own vote (zxid {:#x}, epoch {})",
                me.zxid, me.epoch
            )));
        }
        let mine = fle_key(sid, vote.zxid, vote.peer_epoch);
        for (&t, &how) in support {
            if how != ServerState::Looking {
                continue;
            }
            let Some(n) = self.nodes.get(&t) else {
                continue;
            };
            if mine < fle_key(t, n.zxid, n.epoch) {
                return Err(self.fail(format!(
                    "{sid} leads with (epoch {}, zxid {:#x}) but supporter {t} has (epoch {}, \
                     zxid {:#x}): agreement on a vote worse than a supporter's own",
                    vote.peer_epoch, vote.zxid, n.epoch, n.zxid
                )));
            }
        }
        Ok(())
    }

    // ---- network ----

    fn send(&mut self, from: Sid, to: Sid, notice: Notice) {
        let up = self.conns.get(&pair(from, to)).is_some_and(|c| c.up);
        let dir = self.dirs.entry((from, to)).or_default();
        if up {
            dir.last_sent = Some(notice);
            if self.phase == Phase::Faults && self.rng.chance(5) {
                return;
            }
            self.transmit(from, to, notice);
        } else {
            dir.queued = Some(notice);
            self.ensure_reconnect(from, to);
        }
    }

    fn transmit(&mut self, from: Sid, to: Sid, notice: Notice) {
        let delay = match self.phase {
            Phase::Clean => 1 + self.rng.below(50),
            _ if self.rng.chance(10) => 1 + self.rng.below(400),
            _ => 1 + self.rng.below(30),
        };
        let generation = self.conns.get(&pair(from, to)).map_or(0, |c| c.generation);
        let now = self.now;
        let dir = self.dirs.entry((from, to)).or_default();
        let at = (now + delay).max(dir.last_delivery_ms);
        dir.last_delivery_ms = at;
        self.at(
            at,
            Event::Deliver {
                from,
                to,
                generation,
                notice,
            },
        );
    }

    fn deliver(
        &mut self,
        from: Sid,
        to: Sid,
        generation: u64,
        notice: Notice,
    ) -> Result<(), Failure> {
        let live = self
            .conns
            .get(&pair(from, to))
            .is_some_and(|c| c.up && c.generation == generation);
        if !live || !self.alive(to) {
            return Ok(());
        }
        self.report.notices_delivered += 1;
        crate::fold_trace(
            &mut self.report.trace,
            &[4, from as u64, to as u64, notice.leader as u64, self.now],
        );
        let now = self.now;
        let outs = match self.nodes.get_mut(&to).and_then(|n| n.election.as_mut()) {
            Some(e) => e.receive(now, from, notice),
            None => return Ok(()),
        };
        self.handle(to, outs)
    }

    fn ensure_reconnect(&mut self, a: Sid, b: Sid) {
        if !self.alive(a) || !self.alive(b) || self.blocked(a, b) {
            return;
        }
        let c = self.conns.entry(pair(a, b)).or_default();
        if c.up || c.reconnect_pending {
            return;
        }
        c.reconnect_pending = true;
        let after = match self.phase {
            Phase::Clean => 1 + self.rng.below(20),
            _ => 10 + self.rng.below(1_000),
        };
        let (x, y) = pair(a, b);
        self.at(self.now + after, Event::Reconnect(x, y));
    }

    fn reconnect(&mut self, a: Sid, b: Sid) {
        let ok = self.alive(a) && self.alive(b) && !self.blocked(a, b);
        let c = self.conns.entry(pair(a, b)).or_default();
        c.reconnect_pending = false;
        if !ok || c.up {
            return;
        }
        c.up = true;
        c.generation += 1;
        // Each side sends its unsent notice, or else replays the last one it sent.
        for (from, to) in [(a, b), (b, a)] {
            let dir = self.dirs.entry((from, to)).or_default();
            let msg = dir.queued.take().or(dir.last_sent);
            if let Some(m) = msg {
                dir.last_sent = Some(m);
                self.transmit(from, to, m);
            }
        }
    }

    fn break_conn(&mut self, a: Sid, b: Sid) {
        let c = self.conns.entry(pair(a, b)).or_default();
        if c.up {
            c.up = false;
            c.generation += 1;
        }
        self.ensure_reconnect(a, b);
    }

    // ---- faults ----

    fn fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let sids = self.sids();
        let pick = |rng: &mut Rng| {
            sids.get(usize::try_from(rng.below(sids.len() as u64)).unwrap_or(0))
                .copied()
                .unwrap_or(1)
        };
        match self.rng.below(10) {
            0..=3 => {
                let (a, b) = (pick(&mut self.rng), pick(&mut self.rng));
                if a != b {
                    self.break_conn(a, b);
                }
            }
            4..=5 => {
                let s = pick(&mut self.rng);
                if self.alive(s) {
                    self.crash(s);
                    let after = 100 + self.rng.below(5_000);
                    self.at(self.now + after, Event::Start(s));
                }
            }
            6..=7 if self.isolated.is_empty() => {
                let minority = (self.voters.len() - 1) / 2;
                let k = 1 + self.rng.below(minority as u64);
                while (self.isolated.len() as u64) < k {
                    let s = pick(&mut self.rng);
                    self.isolated.insert(s);
                }
                self.report.partitions += 1;
                for a in self.sids() {
                    for b in self.sids() {
                        if a < b && self.blocked(a, b) {
                            self.break_conn(a, b);
                        }
                    }
                }
                let after = 500 + self.rng.below(8_000);
                self.at(self.now + after, Event::EndPartition);
            }
            _ => {}
        }
        let next = 50 + self.rng.below(1_500);
        self.at(self.now + next, Event::Fault);
    }

    fn end_partition(&mut self) {
        self.isolated.clear();
        for a in self.sids() {
            for b in self.sids() {
                if a < b {
                    self.ensure_reconnect(a, b);
                }
            }
        }
    }

    fn heal(&mut self) {
        self.phase = Phase::Healed;
        self.heal_at = self.now;
        self.end_partition();
        for sid in self.sids() {
            if !self.alive(sid) {
                self.at(self.now, Event::Start(sid));
            }
        }
    }

    // ---- the ZAB stand-in and the agreement checks ----

    fn supervise(&mut self) -> Result<(), Failure> {
        if self.phase == Phase::Clean {
            return Ok(());
        }
        self.at(self.now + SUPERVISE_MS, Event::Supervise);
        let now = self.now;
        for sid in self.sids() {
            let Some(node) = self.nodes.get(&sid) else {
                continue;
            };
            let Some(e) = node.election.as_ref() else {
                continue;
            };
            let state = e.state();
            let leader = e.current_vote().leader;
            let lost = match state {
                ServerState::Looking => {
                    continue;
                }
                ServerState::Following | ServerState::Observing => {
                    let leading = self.nodes.get(&leader).and_then(|l| l.election.as_ref());
                    let Some(l) = leading else {
                        // The leader's process died: the connection to it closed at once.
                        self.look_again(sid)?;
                        continue;
                    };
                    let reachable = self.conns.get(&pair(sid, leader)).is_some_and(|c| c.up);
                    !(reachable
                        && l.state() == ServerState::Leading
                        && l.current_vote().leader == leader)
                }
                ServerState::Leading => {
                    let followers = self
                        .voters
                        .iter()
                        .filter(|&&f| {
                            f == sid
                                || self.conns.get(&pair(sid, f)).is_some_and(|c| c.up)
                                    && self
                                        .nodes
                                        .get(&f)
                                        .and_then(|n| n.election.as_ref())
                                        .is_some_and(|fe| {
                                            fe.state() == ServerState::Following
                                                && fe.current_vote().leader == sid
                                        })
                        })
                        .count();
                    followers * 2 <= self.voters.len()
                }
            };
            let Some(node) = self.nodes.get_mut(&sid) else {
                continue;
            };
            if !lost {
                node.lost_since = None;
            } else {
                let since = *node.lost_since.get_or_insert(now);
                if now - since >= ZAB_GRACE_MS {
                    self.look_again(sid)?;
                }
            }
        }
        if self.phase != Phase::Healed {
            return Ok(());
        }
        match self.agreement() {
            Ok(_) => {
                let since = *self.agreed_since.get_or_insert(now);
                if now - since >= STABLE_MS {
                    self.report.heal_to_agreement_ms = since - self.heal_at;
                    self.at(now, Event::CleanRestart);
                }
            }
            Err(why) => {
                self.agreed_since = None;
                if now - self.heal_at > HEAL_BOUND_MS {
                    return Err(self.fail(format!(
                        "(b) {} s after the heal: {why}",
                        HEAL_BOUND_MS / 1000
                    )));
                }
            }
        }
        Ok(())
    }

    fn look_again(&mut self, sid: Sid) -> Result<(), Failure> {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&sid) else {
            return Ok(());
        };
        node.lost_since = None;
        let (zxid, epoch) = (node.zxid, node.epoch);
        let outs = match node.election.as_mut() {
            Some(e) => e.resume_looking(now, zxid, epoch),
            None => return Ok(()),
        };
        crate::fold_trace(&mut self.report.trace, &[5, sid as u64, now]);
        self.handle(sid, outs)
    }

    /// Everyone alive and decided, on one leader that says LEADING; returns the leader.
    fn agreement(&self) -> Result<Sid, String> {
        let mut leaders = BTreeSet::new();
        for (&sid, node) in &self.nodes {
            let Some(e) = node.election.as_ref().filter(|_| node.alive) else {
                return Err(format!("server {sid} is down"));
            };
            let want = if node.observer {
                ServerState::Observing
            } else if e.current_vote().leader == sid {
                ServerState::Leading
            } else {
                ServerState::Following
            };
            if e.state() != want {
                return Err(format!("server {sid} is {:?}", e.state()));
            }
            leaders.insert(e.current_vote().leader);
        }
        let mut it = leaders.iter();
        match (it.next(), it.next()) {
            (Some(&l), None) if self.voters.contains(&l) => Ok(l),
            _ => Err(format!("leaders {leaders:?}")),
        }
    }

    fn clean_restart(&mut self) {
        self.phase = Phase::Clean;
        for sid in self.sids() {
            self.crash(sid);
        }
        self.report.crashes = self.report.crashes.saturating_sub(self.nodes.len() as u64);
        for sid in self.sids() {
            let t = self.rng.below(50);
            self.at(self.now + t, Event::Start(sid));
        }
        self.at(self.now + CLEAN_MS, Event::End);
    }

    fn check_clean_end(&self) -> Result<(), Failure> {
        let leader = self
            .agreement()
            .map_err(|why| self.fail(format!("(b) after the clean restart: {why}")))?;
        let best = self
            .voters
            .iter()
            .filter_map(|&s| self.nodes.get(&s).map(|n| (fle_key(s, n.zxid, n.epoch), s)))
            .max()
            .map(|(_, s)| s);
        if best != Some(leader) {
            return Err(self.fail(format!(
                "(b) after the clean restart {leader} leads, but {best:?} has the greatest vote \
                 (initial votes: {})",
                self.describe()
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|(s, n)| format!("{s}: epoch {} zxid {:#x}", n.epoch, n.zxid))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_seeds_pass_and_replay() {
        for seed in 0..20 {
            let a = run(seed, FleOptions::default()).unwrap_or_else(|f| panic!("{f}"));
            assert_eq!(Ok(a), run(seed, FleOptions::default()));
        }
    }
}
