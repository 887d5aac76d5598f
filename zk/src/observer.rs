//! An observer: an ensemble member that does not vote. It finds the leader with fast leader
//! election on the voters' election ports, learns every committed txn from it over ZooKeeper's
//! quorum protocol ([`crate::quorum::zab::Learner`]), serves reads and watches from them, and
//! forwards writes, session opens and closes, and `sync` to the leader; a forwarded request is
//! answered when its txn arrives committed. The leader may be Apache ZooKeeper or Kiln.
//!
//! # Lifecycle (numbered; the quorum task runs on the server's shard)
//! 1. Election: dial every voter's election port, send this server's notification (an observer
//!    proposes nobody), and feed the answers to [`Election`] until it decides (observing the
//!    leader a quorum follows).
//! 2. Synchronisation: connect to the leader's quorum port, OBSERVERINFO, LEADERINFO/ACKEPOCH,
//!    then DIFF (the txns after this server's zxid) or SNAP (the leader's tree, which replaces
//!    this server's), NEWLEADER, UPTODATE. Client connections are accepted from UPTODATE on.
//! 3. Broadcast: INFORM packets carry committed txns; each is applied to the tree, its watches
//!    fire, a forwarded request it answers gets its reply, and the tree digest it carries is
//!    compared with this server's: a mismatch is logged as an error and counted (`mntr`).
//! 4. Loss (the leader fell silent, the connection broke, a protocol error): every client
//!    connection is closed (clients move to another server or come back), the tree is dropped,
//!    and the server goes back to step 1.
//!
//! # Durability
//! An observer holds no vote, so nothing the ensemble acknowledges depends on its disk. This one
//! keeps nothing on disk: it starts empty and synchronises from the leader at every start and
//! after every loss (a SNAP when the leader's history window does not reach zxid 0). `syncEnabled`
//! is accepted and has no effect.
//!
//! # Sessions
//! Session ids carry this server's id in their top byte, as every ZooKeeper server allocates
//! them. Expiry is the leader's: this server reports the sessions it saw activity on in its PING
//! replies and runs no expiry timer or container collector of its own.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kiln_engine::clock;
use kiln_engine::rt;
use kiln_engine::rt::BufResult;
use kiln_engine::rt::io::{AsyncRead, AsyncWriteExt};
use tracing::{error, info, warn};

use super::{Conn, Server, bind_session, connect_reply, mono_ms, now_ms};
use crate::config::LearnerType;
use crate::proto::{ConnectResponse, ReplyHeader, Request, Response, op};
use crate::quorum::atxn::decode_apache_txn;
use crate::quorum::digest::TreeDigest;
use crate::quorum::election::{Election, ElectionTiming, Notice, Out, ServerState};
use crate::quorum::packets;
use crate::quorum::snapstream::{SnapDecoder, SnapLimits, decode_snap};
use crate::quorum::wire::{self, Hello, Notification, PeerState, QuorumPacket};
use crate::quorum::zab::{Effect, Learner, LearnerKind, Msg, Persisted, Sid, Timing};
use crate::session::{Sessions, initial_session_id, password};
use crate::state::{Outcome, StateConfig, ZkState};
use crate::tree::{DataTree, SessionId, Zxid, parent_of};
use crate::txn::{Txn, TxnOp};

/// How long one election may take before it starts over.
const ELECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connecting to a peer's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarded requests awaiting their commit, per server.
const FORWARDED_MAX: usize = 100_000;
/// Bytes read from the leader at a time.
const READ_CHUNK: usize = 256 << 10;

/// An accepted election connection and the bytes read after its hello.
type Inbound = (rt::TcpStream, Vec<u8>);

/// A forwarded request waiting for its committed txn.
struct Forwarded {
    conn: u64,
    req: Option<Request>,
    started: Instant,
}

/// A new session waiting for its createSession txn.
struct Opening {
    conn: u64,
    read_only: Option<bool>,
}

/// The observer's part of the server.
pub(super) struct Observer {
    pub(super) serving: Cell<bool>,
    pub(super) leader: Cell<Sid>,
    to_leader: RefCell<Option<flume::Sender<Vec<u8>>>>,
    forwarded: RefCell<HashMap<(SessionId, i32), Forwarded>>,
    opening: RefCell<HashMap<SessionId, Opening>>,
    /// Reconnecting sessions waiting for the leader's REVALIDATE answer.
    revalidating: RefCell<HashMap<SessionId, (Opening, i32)>>,
    /// Forwarded syncs, answered in order by the leader's SYNC packets.
    syncs: RefCell<VecDeque<(u64, i32, String, Instant)>>,
    digest: RefCell<Option<TreeDigest>>,
    next_session: Cell<SessionId>,
    /// Sessions with client activity since the last PING reply, with their timeouts.
    touched: RefCell<BTreeMap<SessionId, i32>>,
    pub(super) digest_mismatches: Cell<u64>,
    pub(super) txns_applied: Cell<u64>,
    /// During an election: where the election listener hands a connection from a voter with a
    /// larger id (which keeps the connection it initiates, by ZooKeeper's rule).
    inbound: RefCell<HashMap<Sid, flume::Sender<Inbound>>>,
}

impl Observer {
    pub(super) fn new(server_id: i64) -> Self {
        Self {
            serving: Cell::new(false),
            leader: Cell::new(-1),
            to_leader: RefCell::new(None),
            forwarded: RefCell::new(HashMap::new()),
            opening: RefCell::new(HashMap::new()),
            revalidating: RefCell::new(HashMap::new()),
            syncs: RefCell::new(VecDeque::new()),
            digest: RefCell::new(None),
            next_session: Cell::new(initial_session_id(now_ms(), server_id)),
            touched: RefCell::new(BTreeMap::new()),
            digest_mismatches: Cell::new(0),
            txns_applied: Cell::new(0),
            inbound: RefCell::new(HashMap::new()),
        }
    }

    fn send(&self, msg: &Msg) -> bool {
        let bytes = packets::to_packet(msg).to_bytes();
        match &*self.to_leader.borrow() {
            Some(tx) => tx.try_send(bytes).is_ok(),
            None => false,
        }
    }

    pub(super) fn touch(&self, session: SessionId, timeout_ms: i32) {
        if session != 0 {
            self.touched.borrow_mut().insert(session, timeout_ms);
        }
    }
}

/// Forwards a client request to the leader as REQUEST, with the connection's authenticated ids
/// (the leader checks ACLs against them, as ZooKeeper's learners send them).
fn send_request(
    obs: &Observer,
    conn: &Conn,
    session: SessionId,
    cxid: i32,
    opcode: i32,
    body: &[u8],
) -> bool {
    let mut packet = packets::to_packet(&Msg::Request {
        session,
        cxid,
        op: opcode,
        body: body.to_vec(),
    });
    packet.authinfo = Some(conn.auth.borrow().clone());
    match &*obs.to_leader.borrow() {
        Some(tx) => tx.try_send(packet.to_bytes()).is_ok(),
        None => false,
    }
}

/// A new session: forward createSession; the connect response leaves when it commits.
pub(super) fn open_session(
    srv: &Rc<Server>,
    obs: &Observer,
    conn: &Conn,
    timeout_ms: i32,
    read_only: Option<bool>,
) -> bool {
    let sid = obs.next_session.get();
    obs.next_session.set(sid + 1);
    if obs.opening.borrow().len() >= FORWARDED_MAX {
        return false;
    }
    obs.opening.borrow_mut().insert(
        sid,
        Opening {
            conn: conn.id,
            read_only,
        },
    );
    let sent = send_request(
        obs,
        conn,
        sid,
        0,
        op::CREATE_SESSION,
        &timeout_ms.to_be_bytes(),
    );
    if !sent {
        obs.opening.borrow_mut().remove(&sid);
    }
    let _ = srv;
    sent
}

/// A client reconnecting with a session this server knows: REVALIDATE moves its ownership here
/// (the leader answers whether it is still valid); the connect response waits for the answer.
pub(super) fn revalidate(
    obs: &Observer,
    conn: &Conn,
    session: SessionId,
    timeout_ms: i32,
    read_only: Option<bool>,
) -> bool {
    if obs.revalidating.borrow().len() >= FORWARDED_MAX {
        return false;
    }
    obs.revalidating.borrow_mut().insert(
        session,
        (
            Opening {
                conn: conn.id,
                read_only,
            },
            timeout_ms,
        ),
    );
    let sent = obs.send(&Msg::Revalidate {
        session,
        timeout_ms,
    });
    if !sent {
        obs.revalidating.borrow_mut().remove(&session);
    }
    sent
}

/// The leader's answer to a REVALIDATE: bind the session here, or tell the client it expired.
fn revalidated(srv: &Rc<Server>, obs: &Observer, session: SessionId, valid: bool) {
    let Some((o, timeout_ms)) = obs.revalidating.borrow_mut().remove(&session) else {
        return;
    };
    let Some(conn) = srv.conns.borrow().get(&o.conn).cloned() else {
        return;
    };
    if !valid {
        info!(
            "zk: invalid session 0x{session:x} for client {}, probably expired",
            conn.peer
        );
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: o.read_only,
        };
        connect_reply(&conn, &resp, None);
        conn.close_output();
        return;
    }
    let previous = srv.by_session.borrow().get(&session).copied();
    if let Some(prev) = previous.filter(|p| *p != conn.id) {
        if let Some(c) = srv.conns.borrow().get(&prev) {
            c.shut();
        }
        srv.state.borrow_mut().watches.remove_session(session);
    }
    bind_session(srv, &conn, session, timeout_ms, mono_ms(srv.started));
    obs.touch(session, timeout_ms);
    info!(
        "zk: revalidated session 0x{session:x} for client {}",
        conn.peer
    );
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms,
        session_id: session,
        passwd: password(session).to_vec(),
        read_only: o.read_only,
    };
    connect_reply(&conn, &resp, None);
}

/// A client write, closeSession or sync: forwarded to the leader, answered on commit.
pub(super) fn forward(
    obs: &Observer,
    conn: &Conn,
    xid: i32,
    opcode: i32,
    body: &[u8],
    req: Option<Request>,
    started: Instant,
) -> bool {
    let session = conn.session.get();
    if obs.forwarded.borrow().len() >= FORWARDED_MAX || obs.syncs.borrow().len() >= FORWARDED_MAX {
        return false;
    }
    if opcode == op::SYNC {
        let path = match &req {
            Some(Request::Sync { path }) => path.clone(),
            _ => "/".to_string(),
        };
        obs.syncs
            .borrow_mut()
            .push_back((conn.id, xid, path, started));
    } else {
        obs.forwarded.borrow_mut().insert(
            (session, xid),
            Forwarded {
                conn: conn.id,
                req,
                started,
            },
        );
    }
    send_request(obs, conn, session, xid, opcode, body)
}

/// The quorum task: election, synchronisation, broadcast, and again after every loss.
pub(super) async fn run(srv: Rc<Server>, obs: Rc<Observer>) {
    rt::spawn(election_listener(srv.clone(), obs.clone())).detach();
    loop {
        let leader = match elect(&srv, &obs).await {
            Some(l) => l,
            None => {
                clock::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        obs.leader.set(leader);
        match learn(&srv, &obs, leader).await {
            Ok(()) => {}
            Err(why) => warn!("zk: observer: lost leader {leader}: {why}"),
        }
        reset(&srv, &obs);
        clock::sleep(Duration::from_millis(200)).await;
    }
}

/// Drops everything learnt from the last leader: clients go, the tree goes.
fn reset(srv: &Rc<Server>, obs: &Observer) {
    obs.serving.set(false);
    obs.leader.set(-1);
    *obs.to_leader.borrow_mut() = None;
    obs.forwarded.borrow_mut().clear();
    obs.opening.borrow_mut().clear();
    obs.revalidating.borrow_mut().clear();
    obs.syncs.borrow_mut().clear();
    *obs.digest.borrow_mut() = None;
    obs.touched.borrow_mut().clear();
    for c in srv.conns.borrow().values() {
        c.shut();
    }
    srv.by_session.borrow_mut().clear();
    *srv.state.borrow_mut() = ZkState::new(state_config(srv), now_ms());
}

fn state_config(srv: &Server) -> StateConfig {
    StateConfig {
        extended_types: srv.cfg.extended_types,
        server_id: srv.cfg.server_id,
    }
}

fn timing(srv: &Server) -> Timing {
    Timing {
        tick_ms: u64::from(srv.cfg.tick_time_ms),
        init_limit: u64::from(srv.cfg.init_limit),
        sync_limit: u64::from(srv.cfg.sync_limit),
    }
}

// ---------------------------------------------------------------------------------------------
// Election

fn to_wire(n: &Notice, config: &str) -> Notification {
    Notification {
        state: match n.state {
            ServerState::Looking => PeerState::Looking,
            ServerState::Following => PeerState::Following,
            ServerState::Leading => PeerState::Leading,
            ServerState::Observing => PeerState::Observing,
        },
        leader: n.leader,
        zxid: n.zxid,
        election_epoch: n.election_epoch,
        peer_epoch: n.peer_epoch,
        version: wire::NOTIFICATION_VERSION,
        config: Some(config.to_string()),
    }
}

fn from_wire(n: &Notification) -> Notice {
    Notice {
        state: match n.state {
            PeerState::Looking => ServerState::Looking,
            PeerState::Following => ServerState::Following,
            PeerState::Leading => ServerState::Leading,
            PeerState::Observing => ServerState::Observing,
        },
        leader: n.leader,
        zxid: n.zxid,
        election_epoch: n.election_epoch,
        peer_epoch: n.peer_epoch,
    }
}

/// One election: returns the leader a quorum follows, or None after the deadline.
async fn elect(srv: &Rc<Server>, obs: &Observer) -> Option<Sid> {
    let q = srv.cfg.quorum.as_ref()?;
    let me = srv.cfg.me()?;
    let voters: BTreeSet<Sid> = q.voters().map(|s| s.id).collect();
    let observers: BTreeSet<Sid> = q
        .servers
        .iter()
        .filter(|s| s.role == LearnerType::Observer)
        .map(|s| s.id)
        .collect();
    let mut election = match Election::new(
        me.id,
        voters.clone(),
        observers,
        true,
        0,
        0,
        ElectionTiming::default(),
    ) {
        Ok(e) => e,
        Err(e) => {
            error!("zk: observer: election configuration: {e}");
            return None;
        }
    };
    let config = q.config_string();
    let my_addr = format!("{}:{}", me.host, me.election_port);
    let (in_tx, in_rx) = flume::unbounded::<(Sid, Notification)>();
    let mut outs: HashMap<Sid, flume::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = Vec::new();
    for v in q.voters() {
        let (tx, rx) = flume::unbounded::<Vec<u8>>();
        outs.insert(v.id, tx);
        let source = if v.id > me.id {
            let (itx, irx) = flume::bounded(4);
            obs.inbound.borrow_mut().insert(v.id, itx);
            LinkSource::Accept {
                addr: format!("{}:{}", v.host, v.election_port),
                hello: Hello::v1(me.id, &my_addr).encode(),
                inbound: irx,
            }
        } else {
            LinkSource::Dial {
                addr: format!("{}:{}", v.host, v.election_port),
                hello: Hello::v1(me.id, &my_addr).encode(),
            }
        };
        tasks.push(rt::spawn(election_link(v.id, source, rx, in_tx.clone())));
    }
    let t0 = clock::now();
    let now = || clock::ms_since(t0);
    let mut pending: Vec<Out> = election.start(now());
    let deadline = clock::now() + ELECTION_DEADLINE;
    let decided = loop {
        for out in pending.drain(..) {
            match out {
                Out::Send { to, notice } => {
                    if let Some(tx) = outs.get(&to) {
                        let payload = to_wire(&notice, &config).encode();
                        let _ = tx.send(wire::encode_frame(&payload));
                    }
                }
                Out::Decided { vote, state, .. } => {
                    info!(
                        "zk: observer: election decided: leader {} ({state:?})",
                        vote.leader
                    );
                    break;
                }
            }
        }
        if election.state() != ServerState::Looking {
            break Some(election.current_vote().leader);
        }
        if clock::now() >= deadline {
            break None;
        }
        let wait = election
            .next_deadline_ms()
            .map_or(200, |d| d.saturating_sub(now()).clamp(1, 200));
        match clock::timeout(Duration::from_millis(wait), in_rx.recv_async()).await {
            Ok(Ok((from, n))) => pending = election.receive(now(), from, from_wire(&n)),
            Ok(Err(_)) => break None,
            Err(_) => pending = election.tick(now()),
        }
    };
    drop(outs);
    obs.inbound.borrow_mut().clear();
    for t in tasks {
        let _ = t.cancel().await;
    }
    decided
}

/// How an election connection to one voter comes about: only the larger id's connection survives
/// (ZooKeeper's rule), so this server dials voters with smaller ids and waits for the others.
enum LinkSource {
    Dial {
        addr: String,
        hello: Vec<u8>,
    },
    /// A voter with a larger id: say hello (it closes that connection and dials back, as
    /// ZooKeeper's connection manager does), then take its connection from the listener.
    Accept {
        addr: String,
        hello: Vec<u8>,
        inbound: flume::Receiver<Inbound>,
    },
}

/// One election connection: connect (or take the one the listener accepted), send what the
/// election sends, deliver what arrives; again after it breaks.
async fn election_link(
    peer: Sid,
    source: LinkSource,
    rx: flume::Receiver<Vec<u8>>,
    deliver: flume::Sender<(Sid, Notification)>,
) {
    loop {
        let (stream, mut buf, first) = match &source {
            LinkSource::Dial { addr, hello } => {
                match clock::timeout(CONNECT_TIMEOUT, rt::TcpStream::connect(addr.as_str())).await {
                    Ok(Ok(s)) => (s, Vec::new(), hello.clone()),
                    _ => {
                        clock::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            LinkSource::Accept {
                addr,
                hello,
                inbound,
            } => {
                if let Ok(Ok(mut s)) =
                    clock::timeout(CONNECT_TIMEOUT, rt::TcpStream::connect(addr.as_str())).await
                {
                    let _ = s.write_all(hello.clone()).await;
                }
                match clock::timeout(Duration::from_secs(2), inbound.recv_async()).await {
                    Ok(Ok((s, leftover))) => (s, leftover, Vec::new()),
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
        };
        let (mut rd, mut wr) = stream.into_split();
        if !first.is_empty() && wr.write_all(first).await.0.is_err() {
            clock::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let writer = {
            let rx = rx.clone();
            rt::spawn(async move {
                while let Ok(frame) = rx.recv_async().await {
                    if wr.write_all(frame).await.0.is_err() {
                        return;
                    }
                }
            })
        };
        'read: loop {
            loop {
                match wire::decode_frame(&buf) {
                    Ok(Some((payload, used))) => {
                        if let Ok(n) = Notification::decode(payload) {
                            let _ = deliver.send((peer, n));
                        }
                        buf.drain(..used);
                    }
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
            let chunk = Vec::with_capacity(4096);
            let BufResult(r, chunk) = rd.read(chunk).await;
            match r {
                Ok(0) | Err(_) => break,
                Ok(_) => buf.extend_from_slice(&chunk),
            }
        }
        let _ = writer.cancel().await;
        clock::sleep(Duration::from_millis(500)).await;
    }
}

/// Accepts election connections on this server's election port for the life of the server and
/// hands those from voters with larger ids to the running election; others are closed (this
/// server dials them). `electionPortBindRetry` bounds the attempts to bind (0: forever).
async fn election_listener(srv: Rc<Server>, obs: Rc<Observer>) {
    let Some(me) = srv.cfg.me().cloned() else {
        return;
    };
    let q = srv.cfg.quorum.clone();
    let all_ips = q.as_ref().is_some_and(|q| q.quorum_listen_on_all_ips);
    let retries = q.as_ref().map_or(3, |q| q.election_port_bind_retry);
    let host = if all_ips {
        "0.0.0.0".to_string()
    } else {
        me.host.clone()
    };
    let addr = format!("{host}:{}", me.election_port);
    let mut attempt = 0u32;
    let listener = loop {
        attempt += 1;
        match std::net::TcpListener::bind(addr.as_str()).and_then(rt::TcpListener::from_std) {
            Ok(l) => break l,
            Err(e) if retries == 0 || attempt < retries => {
                warn!("zk: observer: binding the election port {addr}: {e}; retrying");
                clock::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                error!(
                    "zk: observer: cannot bind the election port {addr}: {e}; voters with a larger id than {} cannot reach this server",
                    me.id
                );
                return;
            }
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            clock::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let obs = obs.clone();
        rt::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            let mut stream = stream;
            let hello = loop {
                match wire::decode_hello(&buf) {
                    Ok(Some((h, used))) => {
                        buf.drain(..used);
                        break h;
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
                let chunk = Vec::with_capacity(4096);
                match clock::timeout(CONNECT_TIMEOUT, stream.read(chunk)).await {
                    Ok(BufResult(Ok(n), chunk)) if n > 0 => buf.extend_from_slice(&chunk),
                    _ => return,
                }
            };
            let tx = obs.inbound.borrow().get(&hello.sid).cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send((stream, buf));
            }
        })
        .detach();
    }
}

// ---------------------------------------------------------------------------------------------
// Learning from the leader

async fn learn(srv: &Rc<Server>, obs: &Rc<Observer>, leader: Sid) -> Result<(), String> {
    let q = srv.cfg.quorum.as_ref().ok_or("no quorum configuration")?;
    let l = q
        .server(leader)
        .ok_or(format!("leader {leader} is not in the configuration"))?;
    let addr = format!("{}:{}", l.host, l.quorum_port);
    let stream = clock::timeout(CONNECT_TIMEOUT, rt::TcpStream::connect(addr.as_str()))
        .await
        .map_err(|_| format!("connecting to {addr}: timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, rx) = flume::unbounded::<Vec<u8>>();
    *obs.to_leader.borrow_mut() = Some(tx);
    let writer = rt::spawn(async move {
        while let Ok(bytes) = rx.recv_async().await {
            if wr.write_all(bytes).await.0.is_err() {
                return;
            }
        }
    });
    let t0 = clock::now();
    let now = || clock::ms_since(t0);
    let mut learner = Learner::new(
        srv.cfg.server_id,
        leader,
        LearnerKind::Observer,
        timing(srv),
        Persisted {
            accepted_epoch: 0,
            current_epoch: 0,
            last_zxid: 0,
        },
        now(),
    );
    let result = async {
        let fx = learner.start();
        perform(srv, obs, &mut learner, fx)?;
        let data_max = srv.cfg.jute_maxbuffer.saturating_add(1 << 20);
        let limits = SnapLimits::new(srv.cfg.jute_maxbuffer);
        // Bytes read from the leader; `pos` is how far they are decoded. The decoded prefix is
        // dropped once per read rather than once per packet (a read holds thousands of INFORMs).
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut pos = 0usize;
        let mut chunk: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut snap: Option<(Zxid, SnapDecoder, Vec<u8>)> = None;
        let tick = Duration::from_millis(u64::from(srv.cfg.tick_time_ms / 2).max(10));
        let mut last_tick = clock::now();
        loop {
            // Decode what is buffered.
            loop {
                if let Some((_, dec, raw)) = &mut snap {
                    let rest = buf.get(pos..).unwrap_or_default();
                    let used = dec.feed(rest).map_err(|e| format!("SNAP stream: {e}"))?;
                    raw.extend_from_slice(rest.get(..used).unwrap_or_default());
                    pos += used;
                    if !dec.is_done() {
                        break;
                    }
                    let (zxid, _, raw) = snap.take().ok_or("snapshot state")?;
                    let msg = Msg::Snap {
                        zxid,
                        stream: Rc::from(raw),
                    };
                    let fx = learner.receive(now(), msg);
                    perform(srv, obs, &mut learner, fx)?;
                    continue;
                }
                let Some((p, used)) =
                    QuorumPacket::decode(buf.get(pos..).unwrap_or_default(), data_max)
                        .map_err(|e| format!("quorum packet: {e}"))?
                else {
                    break;
                };
                pos += used;
                if p.kind == wire::packet::SNAP {
                    snap = Some((p.zxid, SnapDecoder::new(limits), Vec::new()));
                    continue;
                }
                let msg = packets::from_leader(p).map_err(|e| e.to_string())?;
                let fx = learner.receive(now(), msg);
                perform(srv, obs, &mut learner, fx)?;
            }
            if clock::ms_since(last_tick) >= tick.as_millis() as u64 {
                last_tick = clock::now();
                let fx = learner.tick(now());
                perform(srv, obs, &mut learner, fx)?;
            }
            buf.drain(..pos);
            pos = 0;
            chunk.clear();
            let read = std::mem::take(&mut chunk);
            match clock::timeout(tick, rd.read(read)).await {
                Ok(BufResult(Ok(0), _)) => {
                    return Err("the leader closed the connection".to_string());
                }
                Ok(BufResult(Err(e), _)) => return Err(format!("reading from the leader: {e}")),
                Ok(BufResult(Ok(_), read)) => {
                    buf.extend_from_slice(&read);
                    chunk = read;
                }
                // A read cut by the tick took its buffer with it.
                Err(_) => chunk = Vec::with_capacity(READ_CHUNK),
            }
        }
    }
    .await;
    *obs.to_leader.borrow_mut() = None;
    let _ = writer.cancel().await;
    result
}

/// Performs a learner's effects in order (the contract of [`crate::quorum::zab`]).
fn perform(
    srv: &Rc<Server>,
    obs: &Rc<Observer>,
    learner: &mut Learner,
    effects: Vec<Effect>,
) -> Result<(), String> {
    let mut queue: VecDeque<Effect> = effects.into();
    while let Some(e) = queue.pop_front() {
        match e {
            Effect::Send { msg, .. } => {
                obs.send(&msg);
            }
            // An observer keeps no durable state (module docs): its epochs are not saved, and a
            // txn is "durable" as soon as it is queued.
            Effect::SaveEpochs { .. } => {}
            Effect::Append { zxid, .. } => queue.extend(learner.durable(zxid)),
            Effect::Truncate { zxid } => {
                if zxid != srv.state.borrow().last_zxid() {
                    return Err(format!(
                        "TRUNC to {zxid:#x}: this observer resynchronises instead"
                    ));
                }
            }
            Effect::InstallSnapshot { zxid, stream } => install(srv, obs, zxid, &stream)?,
            Effect::SendSnapshot { .. } | Effect::Established { .. } => {
                return Err("a learner was asked to lead".to_string());
            }
            Effect::Commit { zxid, txn } => apply(srv, obs, zxid, &txn)?,
            Effect::Serving { epoch } => {
                if obs.digest.borrow().is_none() {
                    *obs.digest.borrow_mut() = Some(TreeDigest::of(&srv.state.borrow().tree));
                }
                obs.serving.set(true);
                info!(
                    "zk: observer: observing leader {} in epoch {epoch} at zxid 0x{:x}",
                    learner.leader(),
                    srv.state.borrow().last_zxid()
                );
            }
            Effect::PingFromLeader => {
                let touches: Vec<(i64, i32)> = std::mem::take(&mut *obs.touched.borrow_mut())
                    .into_iter()
                    .collect();
                if let Effect::Send { msg, .. } = learner.ping_reply(touches) {
                    obs.send(&msg);
                }
            }
            Effect::SyncDone => {
                let front = obs.syncs.borrow_mut().pop_front();
                let Some((conn, xid, path, started)) = front else {
                    return Err("SYNC without a forwarded sync".to_string());
                };
                let zxid = srv.state.borrow().last_zxid();
                reply(srv, conn, xid, zxid, &Response::Path(path), started);
            }
            Effect::Revalidated { session, valid } => revalidated(srv, obs, session, valid),
            Effect::Request { .. }
            | Effect::Touch { .. }
            | Effect::Revalidate { .. }
            | Effect::DropLearner { .. } => {}
            Effect::Lost(why) => return Err(format!("{why:?}")),
        }
    }
    Ok(())
}

/// SNAP: the leader's tree replaces this server's.
fn install(srv: &Rc<Server>, obs: &Observer, zxid: Zxid, stream: &[u8]) -> Result<(), String> {
    let limits = SnapLimits::new(srv.cfg.jute_maxbuffer);
    let (contents, _) = decode_snap(stream, limits).map_err(|e| format!("SNAP stream: {e}"))?;
    let mut sessions = Sessions::default();
    for (s, meta) in contents.sessions {
        sessions.insert(s, meta);
    }
    let tree = DataTree::from_nodes(contents.nodes);
    *obs.digest.borrow_mut() = Some(TreeDigest::of(&tree));
    let state = ZkState::restore(state_config(srv), now_ms(), tree, sessions, zxid);
    info!(
        "zk: observer: installed the leader's snapshot at zxid 0x{zxid:x} ({} nodes)",
        state.tree.node_count()
    );
    *srv.state.borrow_mut() = state;
    srv.durable.advance(zxid);
    Ok(())
}

/// The paths a txn may change, for the incremental digest.
fn touched_paths(state: &ZkState, txn: &Txn) -> Vec<String> {
    fn add(op: &TxnOp, session: SessionId, state: &ZkState, out: &mut Vec<String>) {
        match op {
            TxnOp::Create { path, .. } | TxnOp::Delete { path } => {
                out.push(path.clone());
                out.push(parent_of(path).to_string());
            }
            TxnOp::SetData { path, .. } | TxnOp::SetAcl { path, .. } => out.push(path.clone()),
            TxnOp::CloseSession => {
                for p in state.tree.ephemerals_of(session) {
                    out.push(parent_of(&p).to_string());
                    out.push(p);
                }
            }
            TxnOp::Multi(ops) => {
                for o in ops {
                    add(o, session, state, out);
                }
            }
            TxnOp::CreateSession { .. } | TxnOp::Check { .. } | TxnOp::Error { .. } => {}
        }
    }
    let mut out = Vec::new();
    add(&txn.op, txn.session, state, &mut out);
    out.sort();
    out.dedup();
    out
}

/// A committed txn: apply, check the digest, fire watches, answer the request it settles.
fn apply(srv: &Rc<Server>, obs: &Observer, zxid: Zxid, bytes: &[u8]) -> Result<(), String> {
    let a = decode_apache_txn(bytes, srv.cfg.jute_maxbuffer.saturating_add(1 << 20))
        .map_err(|e| format!("txn 0x{zxid:x}: {e}"))?;
    let txn = a.txn;
    if txn.zxid != zxid {
        return Err(format!(
            "txn header zxid 0x{:x} in a packet for 0x{zxid:x}",
            txn.zxid
        ));
    }
    let key = (txn.session, txn.cxid);
    let forwarded = match txn.op {
        TxnOp::CreateSession { .. } => None,
        _ => obs.forwarded.borrow_mut().remove(&key),
    };
    let paths = touched_paths(&srv.state.borrow(), &txn);
    let before: Vec<Option<crate::tree::Node>> = {
        let st = srv.state.borrow();
        paths.iter().map(|p| st.tree.get(p).cloned()).collect()
    };
    let applied = srv
        .state
        .borrow_mut()
        .apply_answering(&txn, forwarded.as_ref().and_then(|f| f.req.as_ref()));
    let Some((applied, response)) = applied else {
        return Ok(()); // at or below the tree's zxid (a txn the SNAP already held)
    };
    obs.txns_applied.set(obs.txns_applied.get() + 1);
    if applied.diverged() {
        error!(
            "zk: observer: txn 0x{zxid:x} did not apply here (error {}); this server's tree differs from the leader's",
            applied.err
        );
    }
    {
        let st = srv.state.borrow();
        let mut d = obs.digest.borrow_mut();
        if let Some(d) = d.as_mut() {
            for (p, b) in paths.iter().zip(&before) {
                d.replace(p, b.as_ref(), st.tree.get(p));
            }
            if let Some(theirs) = a.digest {
                let ours = d.value();
                if ours != theirs.tree_digest {
                    obs.digest_mismatches.set(obs.digest_mismatches.get() + 1);
                    error!(
                        "zk: observer: tree digest mismatch after txn 0x{zxid:x}: leader 0x{:x}, here 0x{ours:x} ({} mismatches)",
                        theirs.tree_digest,
                        obs.digest_mismatches.get()
                    );
                }
            }
        }
    }
    srv.durable.advance(zxid);
    match txn.op {
        TxnOp::CreateSession { timeout_ms } => {
            let opening = obs.opening.borrow_mut().remove(&txn.session);
            dispatch(srv, None, zxid, 0, Response::Empty, applied.notifications);
            if let Some(o) = opening {
                let conn = srv.conns.borrow().get(&o.conn).cloned();
                if let Some(conn) = conn {
                    let now = mono_ms(srv.started);
                    bind_session(srv, &conn, txn.session, timeout_ms, now);
                    obs.touch(txn.session, timeout_ms);
                    info!(
                        "zk: established session 0x{:x} with negotiated timeout {timeout_ms} for client {}",
                        txn.session, conn.peer
                    );
                    let resp = ConnectResponse {
                        protocol_version: 0,
                        timeout_ms,
                        session_id: txn.session,
                        passwd: password(txn.session).to_vec(),
                        read_only: o.read_only,
                    };
                    connect_reply(&conn, &resp, None);
                }
            }
        }
        TxnOp::CloseSession => {
            srv.state.borrow_mut().watches.remove_session(txn.session);
            let conn_id = srv.by_session.borrow_mut().remove(&txn.session);
            let target = forwarded.as_ref().map(|f| (f.conn, f.started));
            dispatch(
                srv,
                target.map(|(c, s)| (c, txn.cxid, s)),
                zxid,
                0,
                Response::Empty,
                applied.notifications,
            );
            // An expired session's client (the leader closed it) is disconnected too.
            if let Some(c) = conn_id.and_then(|id| srv.conns.borrow().get(&id).cloned()) {
                c.close_output();
            }
        }
        _ => {
            let target = forwarded.map(|f| (f.conn, txn.cxid, f.started));
            dispatch(
                srv,
                target,
                zxid,
                applied.err,
                response,
                applied.notifications,
            );
        }
    }
    Ok(())
}

fn dispatch(
    srv: &Server,
    target: Option<(u64, i32, Instant)>,
    zxid: Zxid,
    err: i32,
    response: Response,
    notifications: Vec<crate::watch::Notification>,
) {
    let conn = target.and_then(|(c, _, _)| srv.conns.borrow().get(&c).cloned());
    let outcome = Outcome {
        zxid,
        err,
        response,
        txn: None,
        notifications,
    };
    match (conn, target) {
        (Some(c), Some((_, xid, started))) => srv.dispatch(Some((&c, xid, started)), outcome, None),
        _ => srv.dispatch(None, outcome, None),
    }
}

fn reply(srv: &Server, conn: u64, xid: i32, zxid: Zxid, response: &Response, started: Instant) {
    if let Some(c) = srv.conns.borrow().get(&conn) {
        c.reply(
            ReplyHeader { xid, zxid, err: 0 },
            Some(response),
            None,
            started,
        );
    }
}
