//! A ZooKeeper single node under seeded schedules of requests, log appends, fsyncs, crashes and
//! clean restarts.
//!
//! Driven for real: [`ZkState::process`] decides and applies every request, the transaction log
//! is the engine's `SegmentedLog` on [`SimDisk`] in the server's format ([`txnlog`]), recovery
//! is [`txnlog::replay`], and what a client may see is [`visibility`]. The simulator plays the
//! server's shell: it queues replies per client in request order and releases each once its
//! wait zxid is committed (here: durable), as the server's connection writers do.
//!
//! Checkers:
//! - no acknowledged write is lost, and no zxid a client saw (in a reply header or a stat) is
//!   above the last zxid recovered after a crash: a client never saw what a crash took back;
//! - the recovered tree equals the model (every sequenced txn up to the recovered zxid applied
//!   in order to an empty state): the log is a prefix of what was sequenced, nothing reordered;
//! - per client, replies arrive in request order and their header zxids never go backwards.

use std::collections::VecDeque;
use std::fmt::Write as _;

use kiln_engine::commit::Durability;
use kiln_engine::disk::SimDisk;
use kiln_engine::log::{AppendOptions, LogConfig, SegmentedLog};
use kiln_zk::proto::{Acl, CreateRequest, Request, Response, op};
use kiln_zk::state::{Client, StateConfig, ZkState};
use kiln_zk::tree::{SessionId, Zxid};
use kiln_zk::txn::Txn;
use kiln_zk::txnlog;
use kiln_zk::visibility::{self, Dirty};

use crate::Failure;
use crate::rng::Rng;

/// A defect the simulator can inject, to show that its checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkBug {
    /// Write replies leave before the txn is durable.
    AckBeforeFsync,
    /// Reads of a path with an uncommitted write answer at once.
    NoReadGate,
    /// Read replies carry the speculative last zxid in their header.
    SpeculativeReplyZxid,
}

impl ZkBug {
    pub fn parse(s: &str) -> Option<ZkBug> {
        match s {
            "ack-before-fsync" => Some(ZkBug::AckBeforeFsync),
            "no-read-gate" => Some(ZkBug::NoReadGate),
            "speculative-reply-zxid" => Some(ZkBug::SpeculativeReplyZxid),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ZkOptions {
    pub steps: u32,
    pub bug: Option<ZkBug>,
}

impl Default for ZkOptions {
    fn default() -> Self {
        ZkOptions {
            steps: 300,
            bug: None,
        }
    }
}

/// What one seed did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ZkReport {
    /// Writes that succeeded when processed (the schedule does real work).
    pub writes_ok: u64,
    /// Reads answered with a stat (of a node that exists).
    pub reads_with_stat: u64,
    pub writes_acked: u64,
    pub reads_delivered: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub txns_lost_unacknowledged: u64,
    /// A digest of the schedule and its results: equal for equal seeds.
    pub trace: u64,
}

const CLIENTS: usize = 3;
const PATHS: [&str; 7] = ["/a", "/b", "/a/x", "/a/y", "/b/z", "/c", "/a/x/q"];
const LOG_DIR: &str = "/sim/zk/version-2";

struct Reply {
    wait: Option<Zxid>,
    header_zxid: Zxid,
    /// The newest zxid in the reply's stat (0 without one).
    observed: Zxid,
    write: bool,
}

struct SimClient {
    session: SessionId,
    cxid: i32,
    queue: VecDeque<Reply>,
    last_seen: Zxid,
    /// The header zxid of the newest queued reply (the server's per-connection `last_zxid`).
    last_queued: Zxid,
}

struct Node {
    disk: SimDisk,
    log: SegmentedLog<SimDisk>,
    state: ZkState,
    dirty: Dirty,
    committed: Zxid,
    unappended: VecDeque<Txn>,
    last_appended: Option<(u64, Zxid)>,
    /// Every txn sequenced in this timeline, in order (cut back to the recovered zxid at a
    /// crash: the zxids above it are reused).
    history: Vec<Txn>,
}

fn state_config() -> StateConfig {
    StateConfig {
        extended_types: false,
        server_id: 1,
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        durability: Durability::Durable,
        ..LogConfig::default()
    }
}

struct Sim {
    rng: Rng,
    opts: ZkOptions,
    seed: u64,
    step: u32,
    now_ms: i64,
    node: Node,
    clients: Vec<SimClient>,
    /// The newest zxid any client saw.
    exposed: Zxid,
    /// The newest zxid of an acknowledged write.
    acked: Zxid,
    report: ZkReport,
}

/// Runs one seed. Deterministic: the same seed and options give the same report.
pub fn run(seed: u64, opts: ZkOptions) -> Result<ZkReport, Failure> {
    crate::run_seed(seed, run_async(seed, opts))
}

async fn recover(disk: &SimDisk, now_ms: i64) -> Result<(SegmentedLog<SimDisk>, ZkState), String> {
    let log = crate::open_log(disk, LOG_DIR, log_config()).await?;
    let mut state = ZkState::new(state_config(), now_ms);
    txnlog::replay(&log, log.log_start_offset(), &mut state)
        .await
        .map_err(|e| format!("replay: {e}"))?;
    Ok((log, state))
}

async fn run_async(seed: u64, opts: ZkOptions) -> Result<ZkReport, Failure> {
    let disk = SimDisk::new(1_000_000);
    let now_ms = 1_000_000;
    let (log, state) = recover(&disk, now_ms).await.map_err(|what| Failure {
        seed,
        step: 0,
        what,
    })?;
    let mut sim = Sim {
        rng: Rng::new(seed),
        opts,
        seed,
        step: 0,
        now_ms,
        node: Node {
            disk,
            log,
            state,
            dirty: Dirty::default(),
            committed: 0,
            unappended: VecDeque::new(),
            last_appended: None,
            history: Vec::new(),
        },
        clients: Vec::new(),
        exposed: 0,
        acked: 0,
        report: ZkReport::default(),
    };
    sim.connect_clients();
    for step in 1..=opts.steps {
        sim.step = step;
        sim.now_ms += 1 + sim.rng.below(5) as i64;
        let roll = sim.rng.below(100);
        let r = match roll {
            0..=39 => {
                sim.write();
                Ok(())
            }
            40..=64 => {
                sim.read();
                Ok(())
            }
            65..=79 => sim.append(),
            80..=89 => sim.sync().await,
            90..=94 => {
                crate::yield_now(1 + sim.rng.below(4) as u32).await;
                Ok(())
            }
            95..=97 => sim.crash(true).await,
            _ => sim.crash(false).await,
        };
        r.map_err(|what| sim.failure(what))?;
        sim.deliver().map_err(|what| sim.failure(what))?;
        sim.trace(roll);
    }
    sim.step += 1;
    sim.crash(true).await.map_err(|what| sim.failure(what))?;
    Ok(sim.report)
}

impl Sim {
    fn failure(&self, what: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            what,
        }
    }

    fn trace(&mut self, roll: u64) {
        let values = [
            roll,
            self.node.state.last_zxid() as u64,
            self.node.committed as u64,
            self.exposed as u64,
        ];
        crate::fold_trace(&mut self.report.trace, &values);
    }

    fn connect_clients(&mut self) {
        self.clients.clear();
        for _ in 0..CLIENTS {
            let (session, txn) = self.node.state.create_session(10_000, self.now_ms);
            let z = self.sequence(txn);
            let wait = (self.opts.bug != Some(ZkBug::AckBeforeFsync)).then_some(z);
            self.clients.push(SimClient {
                session,
                cxid: 0,
                // The connect response carries no zxid; it waits for the session's txn.
                queue: VecDeque::from([Reply {
                    wait,
                    header_zxid: 0,
                    observed: 0,
                    write: false,
                }]),
                last_seen: 0,
                last_queued: 0,
            });
        }
    }

    fn sequence(&mut self, txn: Txn) -> Zxid {
        let z = txn.zxid;
        self.node.dirty.mark(&txn.op, z, self.node.committed);
        self.node.history.push(txn.clone());
        self.node.unappended.push_back(txn);
        z
    }

    fn path(&mut self) -> String {
        PATHS[self.rng.below(PATHS.len() as u64) as usize].to_string()
    }

    fn write(&mut self) {
        let c = self.rng.below(CLIENTS as u64) as usize;
        let path = self.path();
        let req = match self.rng.below(5) {
            0 | 1 => Request::Create {
                op: op::CREATE2,
                req: CreateRequest {
                    path,
                    data: Some(format!("v{}", self.step).into_bytes()),
                    acl: Acl::open_unsafe(),
                    // persistent, ephemeral, sequential, ephemeral sequential
                    flags: self.rng.below(4) as i32,
                    ttl: -1,
                },
            },
            2 | 3 => Request::SetData {
                path,
                data: Some(format!("s{}", self.step).into_bytes()),
                version: -1,
            },
            _ => Request::Delete { path, version: -1 },
        };
        self.submit(c, &req);
    }

    fn read(&mut self) {
        let c = self.rng.below(CLIENTS as u64) as usize;
        let path = self.path();
        let req = match self.rng.below(4) {
            0 => Request::Exists { path, watch: false },
            1 => Request::GetChildren2 { path, watch: false },
            2 => Request::Sync { path },
            _ => Request::GetData { path, watch: false },
        };
        self.submit(c, &req);
    }

    fn submit(&mut self, c: usize, req: &Request) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        client.cxid += 1;
        let (session, cxid, previous) = (client.session, client.cxid, client.last_queued);
        let out = self
            .node
            .state
            .process(&Client { session, auth: &[] }, cxid, req, self.now_ms);
        let committed = self.node.committed;
        if out.txn.is_some() && out.err == 0 {
            self.report.writes_ok += 1;
        }
        let reply = match out.txn {
            Some(txn) => {
                let z = self.sequence(txn);
                Reply {
                    wait: (self.opts.bug != Some(ZkBug::AckBeforeFsync)).then_some(z),
                    header_zxid: out.zxid,
                    observed: observed(&out.response),
                    write: true,
                }
            }
            None => {
                if out.err == 0 && observed(&out.response) > 0 {
                    self.report.reads_with_stat += 1;
                }
                let wait = if self.opts.bug == Some(ZkBug::NoReadGate) {
                    None
                } else {
                    self.node
                        .dirty
                        .read_wait(req, self.node.state.last_zxid(), committed)
                };
                let header_zxid = if self.opts.bug == Some(ZkBug::SpeculativeReplyZxid) {
                    out.zxid
                } else {
                    visibility::reply_zxid(out.zxid, wait, committed, previous)
                };
                Reply {
                    wait,
                    header_zxid,
                    observed: observed(&out.response),
                    write: false,
                }
            }
        };
        if let Some(client) = self.clients.get_mut(c) {
            client.last_queued = reply.header_zxid;
            client.queue.push_back(reply);
        }
    }

    /// The server's sequencer: every queued txn into the log as batches (not waiting).
    fn append(&mut self) -> Result<(), String> {
        let mut scratch = Vec::new();
        while let Some((batch, z)) =
            txnlog::encode_batch(&mut self.node.unappended, &mut scratch, 4 << 10)
                .map_err(|e| format!("encoding a batch: {e}"))?
        {
            let info = self
                .node
                .log
                .append_buffered(&batch, AppendOptions::default())
                .map_err(|e| format!("append: {e}"))?;
            self.node.last_appended = Some((info.last_offset + 1, z));
        }
        Ok(())
    }

    /// Waits for the fsync of everything appended; the committed zxid follows.
    async fn sync(&mut self) -> Result<(), String> {
        if let Some((end, z)) = self.node.last_appended {
            self.node
                .log
                .wait_durable(end)
                .await
                .map_err(|e| format!("wait_durable({end}): {e}"))?;
            self.node.committed = self.node.committed.max(z);
        }
        Ok(())
    }

    /// Releases each client's replies, in order, while the front one may leave.
    fn deliver(&mut self) -> Result<(), String> {
        let committed = self.node.committed;
        for (i, c) in self.clients.iter_mut().enumerate() {
            while c
                .queue
                .front()
                .is_some_and(|r| r.wait.is_none_or(|w| w <= committed))
            {
                let Some(r) = c.queue.pop_front() else { break };
                if r.header_zxid < c.last_seen {
                    return Err(format!(
                        "client {i}: reply zxid 0x{:x} after 0x{:x}: zxids went backwards",
                        r.header_zxid, c.last_seen
                    ));
                }
                c.last_seen = r.header_zxid;
                self.exposed = self.exposed.max(r.header_zxid).max(r.observed);
                if r.write {
                    self.acked = self.acked.max(r.header_zxid);
                    self.report.writes_acked += 1;
                } else {
                    self.report.reads_delivered += 1;
                }
            }
        }
        Ok(())
    }

    /// Power loss (`crash`) or a clean stop (everything appended and synced first), then
    /// recovery on the same disk and the checks.
    async fn crash(&mut self, crash: bool) -> Result<(), String> {
        if !crash {
            self.report.restarts += 1;
            self.append()?;
            self.sync().await?;
            self.deliver()?;
        }
        if crash {
            self.report.crashes += 1;
        }
        let disk = crate::restarted_disk(&self.node.disk, crash, &mut self.rng);
        let (log, state) = recover(&disk, self.now_ms).await?;
        let recovered = state.last_zxid();
        if recovered < self.acked {
            return Err(format!(
                "acknowledged write lost: acknowledged up to zxid 0x{:x}, recovered 0x{recovered:x}",
                self.acked
            ));
        }
        if recovered < self.exposed {
            return Err(format!(
                "a client saw zxid 0x{:x}, but only 0x{recovered:x} survived the crash",
                self.exposed
            ));
        }
        let sequenced = self.node.history.last().map_or(0, |t| t.zxid);
        if !crash && recovered != sequenced {
            return Err(format!(
                "a clean restart recovered 0x{recovered:x} of 0x{sequenced:x} sequenced"
            ));
        }
        self.node.history.retain(|t| t.zxid <= recovered);
        self.report.txns_lost_unacknowledged += (sequenced - recovered).max(0) as u64;
        check_model(&self.node.history, &state)?;
        self.node = Node {
            disk,
            log,
            state,
            dirty: Dirty::default(),
            committed: recovered,
            unappended: VecDeque::new(),
            last_appended: None,
            history: std::mem::take(&mut self.node.history),
        };
        self.connect_clients();
        Ok(())
    }
}

/// The newest zxid a response's stat shows.
fn observed(r: &Response) -> Zxid {
    match r {
        Response::Stat(s)
        | Response::GetData { stat: s, .. }
        | Response::Create2 { stat: s, .. }
        | Response::Children2 { stat: s, .. } => s.mzxid.max(s.czxid).max(s.pzxid),
        _ => 0,
    }
}

/// The recovered state must equal the history applied in order to an empty state.
fn check_model(history: &[Txn], recovered: &ZkState) -> Result<(), String> {
    let mut model = ZkState::new(state_config(), 0);
    for t in history {
        model.apply(t);
    }
    if model.last_zxid() != recovered.last_zxid() {
        return Err(format!(
            "model at 0x{:x}, recovered at 0x{:x}",
            model.last_zxid(),
            recovered.last_zxid()
        ));
    }
    let (mp, rp) = (model.paths(), recovered.paths());
    if mp != rp {
        let mut why = String::from("recovered tree differs from the model:");
        for p in mp.symmetric_difference(&rp) {
            let _ = write!(why, " {p}");
        }
        return Err(why);
    }
    for p in &mp {
        let (Some(m), Some(r)) = (model.tree.get(p), recovered.tree.get(p)) else {
            return Err(format!("{p} vanished while comparing"));
        };
        if m.stat() != r.stat() || m.data != r.data {
            return Err(format!(
                "{p}: model {:?} {:?}, recovered {:?} {:?}",
                m.stat(),
                m.data,
                r.stat(),
                r.data
            ));
        }
    }
    let ids = |s: &ZkState| s.sessions.iter().map(|(id, _)| id).collect::<Vec<_>>();
    if ids(&model) != ids(recovered) {
        return Err("recovered sessions differ from the model".into());
    }
    Ok(())
}
