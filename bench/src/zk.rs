//! `kiln load zk`: a pipelining ZooKeeper load generator over Kiln's jute codec.
//!
//! Each session is one TCP connection. With a target rate it has two threads: the sender picks
//! operations from the mix at the session's share of the rate and writes them; the receiver
//! matches replies to requests (ZooKeeper answers a session's requests in order) and records
//! latency from the intended send time. A bounded channel between them holds the requests in
//! flight: when it is full the sender waits, and the waiting is charged to latency (see
//! [`crate::rate`]). As fast as possible (`--rate 0`, a closed loop) one thread per session does
//! both: it keeps `--in-flight` requests outstanding, writes every new request of a round in one
//! write, then reads whatever replies have arrived in one read and issues one new request per
//! reply. Replies that arrive together cost one wake-up and two system calls, not two thread
//! hand-offs per reply, so the generator spends its core on requests rather than on scheduling.
//!
//! Layout under `--root` (default `/kiln-bench`): `p<k>` pool nodes (`--keys`, created first,
//! read and written by get/set/exists/multi/watch), `s<session>-<n>` nodes made by `create`
//! and removed again by `delete`, and `hot`, the node whose changes watch fan-out measures.
//!
//! Watch fan-out (`--watchers N`): one writer sets `hot` at `--rate`, writing the sequence
//! number `i` into the data; each watcher reads `hot` with a watch, learns `i`, and waits for
//! the notification, which belongs to set `i + 1`: latency = arrival - intended time of set
//! `i + 1` (writer and watchers share the schedule's start).

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use kiln_zk::jute::{Reader, Writer};
use kiln_zk::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, ReplyHeader, Request, op,
};

use crate::error::{FastRng, LoadError, Result};
use crate::net::{FrameReader, connect};
use crate::procstat::{add_window_cpu, server_cpu};
use crate::rate::{Budget, Schedule, Window, wait_until};
use crate::stats::{Live, Recorder, RunResult, spawn_progress};

/// Replies larger than this are a protocol error (ZooKeeper's jute.maxbuffer is ~1 MiB).
const FRAME_MAX: usize = 16 << 20;
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// `NodeDataChanged`.
const EVENT_NODE_DATA_CHANGED: i32 = 3;

/// The operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZkOp {
    Create,
    Set,
    Get,
    Exists,
    Delete,
    Multi,
    Watch,
}

impl ZkOp {
    pub const ALL: [ZkOp; 7] = [
        ZkOp::Create,
        ZkOp::Set,
        ZkOp::Get,
        ZkOp::Exists,
        ZkOp::Delete,
        ZkOp::Multi,
        ZkOp::Watch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ZkOp::Create => "create",
            ZkOp::Set => "set",
            ZkOp::Get => "get",
            ZkOp::Exists => "exists",
            ZkOp::Delete => "delete",
            ZkOp::Multi => "multi",
            ZkOp::Watch => "watch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Parses `get=50,set=30,create=10,delete=10` (weights, any positive integers).
pub fn parse_mix(s: &str) -> Result<Vec<(ZkOp, u32)>> {
    let mut mix = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let op = ZkOp::ALL
            .into_iter()
            .find(|o| o.name() == name.trim())
            .ok_or_else(|| LoadError::Config(format!("unknown zk op {name:?} in mix {s:?}")))?;
        let w: u32 = weight
            .trim()
            .parse()
            .map_err(|_| LoadError::Config(format!("bad weight {weight:?} in mix {s:?}")))?;
        if w > 0 {
            mix.push((op, w));
        }
    }
    if mix.is_empty() {
        return Err(LoadError::Config(format!("empty op mix {s:?}")));
    }
    Ok(mix)
}

/// What `kiln load zk` runs.
#[derive(Debug, Clone)]
pub struct ZkLoad {
    /// `host:port`.
    pub server: String,
    pub sessions: usize,
    pub in_flight: usize,
    pub mix: Vec<(ZkOp, u32)>,
    pub value_size: usize,
    pub keys: usize,
    /// Ops/s over all sessions (0 = as fast as possible); for watch fan-out, sets/s.
    pub rate: f64,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub warmup: Duration,
    /// > 0: watch fan-out mode with this many watcher sessions.
    pub watchers: usize,
    pub root: String,
    pub quiet: bool,
    /// The server's process id on this machine, for its CPU over the measured window (None:
    /// the process listening on `server`'s port, when visible).
    pub server_pid: Option<u32>,
}

/// One ZooKeeper session: the socket, after the handshake.
struct Session {
    stream: TcpStream,
    reader: FrameReader,
}

fn open_session(server: &str) -> Result<Session> {
    let mut stream = connect(server, Duration::from_secs(10))
        .map_err(LoadError::io(format!("connect {server}")))?;
    let mut w = Writer::framed();
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: SESSION_TIMEOUT_MS,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: Some(false),
    }
    .encode(&mut w);
    stream
        .write_all(&w.finish_frame())
        .map_err(LoadError::io("send ConnectRequest"))?;
    let read_half = stream.try_clone().map_err(LoadError::io("clone socket"))?;
    // A server that accepts but never answers must not hang the run.
    read_half
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(LoadError::io("set timeout"))?;
    let mut reader = FrameReader::new(read_half, FRAME_MAX);
    let frame = reader
        .next_frame()
        .map_err(LoadError::io("read ConnectResponse"))?;
    let resp = ConnectResponse::decode(&mut Reader::new(frame, FRAME_MAX))
        .map_err(|e| LoadError::Protocol(format!("ConnectResponse: {e}")))?;
    if resp.session_id == 0 || resp.timeout_ms <= 0 {
        return Err(LoadError::Server(format!("session refused: {resp:?}")));
    }
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(LoadError::io("set timeout"))?;
    Ok(Session { stream, reader })
}

/// Whether a session can be opened on `server` (the server is up and serving).
pub fn session_works(server: &str) -> bool {
    match open_session(server) {
        Ok(mut s) => {
            let _ = call_many(&mut s, &[Request::CloseSession]);
            true
        }
        Err(_) => false,
    }
}

/// Appends one request frame (size prefix, header, body) to `out`.
fn encode_request(xid: i32, req: &Request, out: &mut Vec<u8>) {
    let mut w = Writer::from_vec(std::mem::take(out));
    let start = w.begin_frame();
    w.write_i32(xid);
    w.write_i32(req.opcode());
    req.encode(&mut w);
    w.end_frame(start);
    *out = w.into_inner();
}

/// Sends `reqs` pipelined (up to 512 at a time) and returns each reply's error code.
fn call_many(s: &mut Session, reqs: &[Request]) -> Result<Vec<i32>> {
    let mut codes = Vec::with_capacity(reqs.len());
    let mut xid = 1i32;
    for chunk in reqs.chunks(512) {
        let mut out = Vec::new();
        for r in chunk {
            encode_request(xid, r, &mut out);
            xid += 1;
        }
        s.stream.write_all(&out).map_err(LoadError::io("send"))?;
        let mut got = 0;
        while got < chunk.len() {
            let frame = s.reader.next_frame().map_err(LoadError::io("read reply"))?;
            let h = ReplyHeader::decode(&mut Reader::new(frame, FRAME_MAX))
                .map_err(|e| LoadError::Protocol(format!("reply header: {e}")))?;
            if h.xid < 0 {
                continue; // notification or ping
            }
            codes.push(h.err);
            got += 1;
        }
    }
    Ok(codes)
}

fn create(path: &str, data: Vec<u8>) -> Request {
    Request::Create {
        op: op::CREATE,
        req: CreateRequest {
            path: path.to_owned(),
            data: Some(data),
            acl: Acl::open_unsafe(),
            flags: 0,
            ttl: -1,
        },
    }
}

/// Creates the root, the pool and `hot` (existing nodes are fine).
fn prepare(cfg: &ZkLoad) -> Result<()> {
    let mut s = open_session(&cfg.server)?;
    let value = vec![b'v'; cfg.value_size];
    let mut reqs = vec![
        create(&cfg.root, Vec::new()),
        create(&format!("{}/hot", cfg.root), 0u64.to_be_bytes().to_vec()),
    ];
    for k in 0..cfg.keys {
        reqs.push(create(&format!("{}/p{k}", cfg.root), value.clone()));
    }
    let codes = call_many(&mut s, &reqs)?;
    // 0 = created, -110 = NODEEXISTS (a previous run's pool): both leave the node in place.
    if let Some(bad) = codes.iter().find(|&&c| c != 0 && c != -110) {
        return Err(LoadError::Server(format!(
            "creating the pool under {} failed with code {bad}",
            cfg.root
        )));
    }
    let _ = call_many(&mut s, &[Request::CloseSession]);
    Ok(())
}

/// Removes what [`prepare`] and the run created (best effort).
fn cleanup(cfg: &ZkLoad, leftovers: Vec<String>) -> Result<()> {
    let mut s = open_session(&cfg.server)?;
    let mut reqs: Vec<Request> = leftovers
        .into_iter()
        .map(|path| Request::Delete { path, version: -1 })
        .collect();
    for k in 0..cfg.keys {
        reqs.push(Request::Delete {
            path: format!("{}/p{k}", cfg.root),
            version: -1,
        });
    }
    reqs.push(Request::Delete {
        path: format!("{}/hot", cfg.root),
        version: -1,
    });
    reqs.push(Request::Delete {
        path: cfg.root.clone(),
        version: -1,
    });
    call_many(&mut s, &reqs)?;
    let _ = call_many(&mut s, &[Request::CloseSession]);
    Ok(())
}

/// An op in flight: its xid, intended send time and kind.
struct Pending {
    xid: i32,
    intended: Instant,
    op: ZkOp,
}

struct SenderState {
    rng: FastRng,
    created: std::collections::VecDeque<String>,
    next_name: u64,
    session: usize,
}

impl SenderState {
    fn new(session: usize) -> Self {
        SenderState {
            rng: FastRng::new(0x5eed + session as u64),
            created: Default::default(),
            next_name: 0,
            session,
        }
    }
}

fn pick(mix: &[(ZkOp, u32)], total: u32, rng: &mut FastRng) -> ZkOp {
    let mut r = rng.below(u64::from(total)) as u32;
    for &(op, w) in mix {
        if r < w {
            return op;
        }
        r -= w;
    }
    mix.first().map_or(ZkOp::Get, |m| m.0)
}

fn build_op(cfg: &ZkLoad, st: &mut SenderState, mut op: ZkOp, value: &[u8]) -> (ZkOp, Request) {
    if op == ZkOp::Delete && st.created.is_empty() {
        op = ZkOp::Create; // nothing of ours to delete yet
    }
    let keys = cfg.keys.max(1) as u64;
    let pool = |rng: &mut FastRng| format!("{}/p{}", cfg.root, rng.below(keys));
    let req = match op {
        ZkOp::Create => {
            let path = format!("{}/s{}-{}", cfg.root, st.session, st.next_name);
            st.next_name += 1;
            st.created.push_back(path.clone());
            create(&path, value.to_vec())
        }
        ZkOp::Delete => Request::Delete {
            path: st.created.pop_front().unwrap_or_default(),
            version: -1,
        },
        ZkOp::Set => Request::SetData {
            path: pool(&mut st.rng),
            data: Some(value.to_vec()),
            version: -1,
        },
        ZkOp::Get => Request::GetData {
            path: pool(&mut st.rng),
            watch: false,
        },
        ZkOp::Watch => Request::GetData {
            path: pool(&mut st.rng),
            watch: true,
        },
        ZkOp::Exists => Request::Exists {
            path: pool(&mut st.rng),
            watch: false,
        },
        ZkOp::Multi => Request::Multi(vec![
            Request::SetData {
                path: pool(&mut st.rng),
                data: Some(value.to_vec()),
                version: -1,
            },
            Request::SetData {
                path: pool(&mut st.rng),
                data: Some(value.to_vec()),
                version: -1,
            },
        ]),
    };
    (op, req)
}

/// The sender half of a mix session. Returns the paths it created that were not deleted.
#[allow(clippy::too_many_arguments)]
fn run_sender(
    cfg: &ZkLoad,
    session: usize,
    stream: TcpStream,
    pending: SyncSender<Pending>,
    schedule: Schedule,
    window: Window,
    budget: &Budget,
    live: &Live,
) -> Result<Vec<String>> {
    let total: u32 = cfg.mix.iter().map(|m| m.1).sum();
    let value = vec![b'x'; cfg.value_size];
    let mut st = SenderState::new(session);
    let mut out = BufWriter::with_capacity(64 * 1024, stream);
    let mut frame = Vec::with_capacity(256 + cfg.value_size);
    let mut i: u64 = 0;
    let mut xid: i32 = 1;
    loop {
        if live.stopped() || budget.take(1) == 0 {
            break;
        }
        let intended = schedule.intended(i);
        if window.over(intended) {
            break;
        }
        if schedule.is_paced() && intended > Instant::now() {
            out.flush().map_err(LoadError::io("send"))?;
            wait_until(intended);
        }
        let chosen = pick(&cfg.mix, total, &mut st.rng);
        let (op, req) = build_op(cfg, &mut st, chosen, &value);
        frame.clear();
        encode_request(xid, &req, &mut frame);
        let p = Pending { xid, intended, op };
        match pending.try_send(p) {
            Ok(()) => {}
            Err(TrySendError::Full(p)) => {
                // Everything in flight must be on the wire before we wait for its replies.
                out.flush().map_err(LoadError::io("send"))?;
                if pending.send(p).is_err() {
                    break;
                }
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
        out.write_all(&frame).map_err(LoadError::io("send"))?;
        xid = xid.wrapping_add(1).max(1);
        i += 1;
    }
    out.flush().map_err(LoadError::io("send"))?;
    Ok(st.created.into_iter().collect())
}

/// Bytes asked of the socket per read in the closed loop (a whole round of replies fits).
const READ_BYTES: usize = 256 << 10;

/// A closed-loop session on one thread: keeps `cfg.in_flight` requests outstanding until the
/// run ends, then drains the replies. Returns the paths it created that were not deleted.
fn run_closed(
    cfg: &ZkLoad,
    session: usize,
    s: Session,
    window: Window,
    budget: &Budget,
    live: &Live,
) -> Result<(Vec<String>, ZkRecorder)> {
    use std::io::Read;
    // Only the ConnectResponse was read through `s.reader`, and the server sends nothing else
    // before the first request, so nothing is left in its buffer: read the socket directly.
    let mut stream = s.stream;
    drop(s.reader);
    let total: u32 = cfg.mix.iter().map(|m| m.1).sum();
    let value = vec![b'x'; cfg.value_size];
    let mut st = SenderState::new(session);
    let mut rec = ZkRecorder::new();
    let mut pending: std::collections::VecDeque<Pending> =
        std::collections::VecDeque::with_capacity(cfg.in_flight);
    let mut out: Vec<u8> = Vec::with_capacity(cfg.in_flight * (64 + cfg.value_size));
    let mut buf: Vec<u8> = vec![0; READ_BYTES];
    // Unparsed reply bytes are buf[lo..hi].
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut xid: i32 = 1;
    let mut stopping = false;
    loop {
        while !stopping && pending.len() < cfg.in_flight {
            let intended = Instant::now();
            if live.stopped() || window.over(intended) || budget.take(1) == 0 {
                stopping = true;
                break;
            }
            let chosen = pick(&cfg.mix, total, &mut st.rng);
            let (op, req) = build_op(cfg, &mut st, chosen, &value);
            encode_request(xid, &req, &mut out);
            pending.push_back(Pending { xid, intended, op });
            xid = xid.wrapping_add(1).max(1);
        }
        if !out.is_empty() {
            stream.write_all(&out).map_err(LoadError::io("send"))?;
            out.clear();
        }
        if pending.is_empty() {
            break;
        }
        // Room for at least a frame header, and for the whole of a large frame.
        if lo == hi {
            (lo, hi) = (0, 0);
        } else if buf.len() - hi < 4096 {
            buf.copy_within(lo..hi, 0);
            (lo, hi) = (0, hi - lo);
        }
        let n = stream
            .read(buf.get_mut(hi..).unwrap_or_default())
            .map_err(LoadError::io("read reply"))?;
        if n == 0 {
            return Err(LoadError::Server("the server closed the connection".into()));
        }
        hi += n;
        let now = Instant::now();
        while let Some(head) = buf.get(lo..hi).and_then(|b| b.get(..4)) {
            let mut len4 = [0u8; 4];
            len4.copy_from_slice(head);
            let len = usize::try_from(i32::from_be_bytes(len4))
                .ok()
                .filter(|&l| l <= FRAME_MAX)
                .ok_or_else(|| {
                    LoadError::Protocol(format!("reply frame size outside 0..={FRAME_MAX}"))
                })?;
            let Some(frame) = buf.get(lo + 4..lo + 4 + len).filter(|_| lo + 4 + len <= hi) else {
                if lo + 4 + len > buf.len() {
                    buf.resize(lo + 4 + len, 0);
                }
                break;
            };
            let h = ReplyHeader::decode(&mut Reader::new(frame, FRAME_MAX))
                .map_err(|e| LoadError::Protocol(format!("reply header: {e}")))?;
            lo += 4 + len;
            if h.xid == -1 {
                rec.notifications += 1;
                continue;
            }
            if h.xid < 0 {
                continue;
            }
            let p = pending.pop_front().ok_or_else(|| {
                LoadError::Protocol(format!("reply xid {} with no request in flight", h.xid))
            })?;
            account_reply(&p, &h, now, window, live, &mut rec)?;
        }
    }
    Ok((st.created.into_iter().collect(), rec))
}

/// Counts the reply `h` to the request `p`: checks they match, then records the outcome and,
/// inside the measured window, the latency from the intended send time.
fn account_reply(
    p: &Pending,
    h: &ReplyHeader,
    now: Instant,
    window: Window,
    live: &Live,
    rec: &mut ZkRecorder,
) -> Result<()> {
    if h.xid != p.xid {
        return Err(LoadError::Protocol(format!(
            "reply xid {} for request xid {}",
            h.xid, p.xid
        )));
    }
    let ok = h.err == 0;
    if ok {
        live.add(1, 0);
    } else {
        live.error();
    }
    if window.measured(p.intended) {
        let ns = now.saturating_duration_since(p.intended).as_nanos() as u64;
        rec.record(p.op, ns, ok, h.err);
    }
    Ok(())
}

/// The receiver half: matches replies to `pending` until the sender is done.
fn run_receiver(
    mut reader: FrameReader,
    pending: Receiver<Pending>,
    window: Window,
    live: &Live,
) -> Result<ZkRecorder> {
    let mut rec = ZkRecorder::new();
    while let Ok(p) = pending.recv() {
        let h = loop {
            let frame = reader.next_frame().map_err(LoadError::io("read reply"))?;
            let h = ReplyHeader::decode(&mut Reader::new(frame, FRAME_MAX))
                .map_err(|e| LoadError::Protocol(format!("reply header: {e}")))?;
            if h.xid == -1 {
                rec.notifications += 1;
                continue;
            }
            if h.xid < 0 {
                continue;
            }
            break h;
        };
        account_reply(&p, &h, Instant::now(), window, live, &mut rec)?;
    }
    Ok(rec)
}

/// Measurements of one session, per op.
pub struct ZkRecorder {
    total: Recorder,
    per_op: Vec<Recorder>,
    error_codes: std::collections::BTreeMap<i32, u64>,
    notifications: u64,
}

impl ZkRecorder {
    fn new() -> Self {
        Self {
            total: Recorder::new(),
            per_op: ZkOp::ALL.iter().map(|_| Recorder::new()).collect(),
            error_codes: Default::default(),
            notifications: 0,
        }
    }

    fn record(&mut self, op: ZkOp, ns: u64, ok: bool, code: i32) {
        self.total.record_ns(ns);
        let r = self.per_op.get_mut(op.index());
        if ok {
            self.total.ops += 1;
            if let Some(r) = r {
                r.ops += 1;
                r.record_ns(ns);
            }
        } else {
            self.total.errors += 1;
            *self.error_codes.entry(code).or_default() += 1;
        }
    }

    fn merge(&mut self, o: &ZkRecorder) {
        self.total.merge(&o.total);
        for (a, b) in self.per_op.iter_mut().zip(&o.per_op) {
            a.merge(b);
        }
        for (k, v) in &o.error_codes {
            *self.error_codes.entry(*k).or_default() += v;
        }
        self.notifications += o.notifications;
    }
}

/// Runs the workload and returns its result.
pub fn run(cfg: &ZkLoad) -> Result<RunResult> {
    if cfg.sessions == 0 || cfg.in_flight == 0 {
        return Err(LoadError::Config(
            "sessions and in-flight must be at least 1".into(),
        ));
    }
    if cfg.duration.is_none() && cfg.ops.is_none() {
        return Err(LoadError::Config("give --duration or --ops".into()));
    }
    // Checked before anything is created, so a wrong --server-pid fails the run at once.
    let server = server_cpu::resolve(&cfg.server, cfg.server_pid)?;
    prepare(cfg)?;
    let result = if cfg.watchers > 0 {
        run_watch(cfg, server)?
    } else {
        run_mix(cfg, server)?
    };
    Ok(result)
}

fn run_mix(cfg: &ZkLoad, server: Option<server_cpu::ServerPid>) -> Result<RunResult> {
    let live = Live::new();
    let budget = Arc::new(Budget::new(cfg.ops));
    let mut sessions = Vec::with_capacity(cfg.sessions);
    for _ in 0..cfg.sessions {
        sessions.push(open_session(&cfg.server)?);
    }
    let progress = spawn_progress(live.clone(), "ops", cfg.quiet);
    let window = Window::new(cfg.warmup, cfg.duration);
    let window_cpu = server_cpu::WindowCpu::start(server, window.measure_from, window.end);
    let per_session_rate = cfg.rate / cfg.sessions as f64;
    let mut handles = Vec::new();
    let closed = !Schedule::new(window.start, per_session_rate).is_paced();
    let mut closed_handles = Vec::new();
    for (n, s) in sessions.into_iter().enumerate() {
        if closed {
            let (cfg_s, live_s, budget_s) = (cfg.clone(), live.clone(), budget.clone());
            closed_handles.push(std::thread::spawn(move || {
                let r = run_closed(&cfg_s, n, s, window, &budget_s, &live_s);
                if r.is_err() {
                    live_s.request_stop();
                }
                r
            }));
            continue;
        }
        let (tx, rx) = sync_channel::<Pending>(cfg.in_flight);
        let schedule = Schedule::new(window.start, per_session_rate);
        let (cfg_s, live_s, budget_s) = (cfg.clone(), live.clone(), budget.clone());
        let sender = std::thread::spawn(move || {
            let r = run_sender(
                &cfg_s, n, s.stream, tx, schedule, window, &budget_s, &live_s,
            );
            if r.is_err() {
                live_s.request_stop();
            }
            r
        });
        let live_r = live.clone();
        let receiver = std::thread::spawn(move || {
            let r = run_receiver(s.reader, rx, window, &live_r);
            if r.is_err() {
                live_r.request_stop();
            }
            r
        });
        handles.push((sender, receiver));
    }
    let mut total = ZkRecorder::new();
    let mut leftovers = Vec::new();
    let mut first_err = None;
    for h in closed_handles {
        match h.join() {
            Ok(Ok((left, rec))) => {
                leftovers.extend(left);
                total.merge(&rec);
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(LoadError::Protocol("session panicked".into())))
            }
        }
    }
    for (s, r) in handles {
        match s.join() {
            Ok(Ok(left)) => leftovers.extend(left),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(LoadError::Protocol("sender panicked".into()))),
        }
        match r.join() {
            Ok(Ok(rec)) => total.merge(&rec),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(LoadError::Protocol("receiver panicked".into())))
            }
        }
    }
    let end = Instant::now();
    live.request_stop();
    let _ = progress.join();
    if let Some(e) = first_err {
        return Err(e);
    }
    let measured = end.saturating_duration_since(window.measure_from);
    let mut res = RunResult::new("zk", "ops", &total.total, measured, cfg.rate);
    res.latency_of = "intended send -> reply".into();
    for op in ZkOp::ALL {
        if let Some(r) = total.per_op.get(op.index()).filter(|r| r.ops > 0) {
            let p = crate::stats::Percentiles::from_histogram(&r.latency);
            res.extra.insert(
                format!("{}_latency_us", op.name()),
                serde_json::json!({"ops": r.ops, "p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max}),
            );
        }
    }
    if !total.error_codes.is_empty() {
        res.extra
            .insert("error_codes".into(), serde_json::json!(total.error_codes));
    }
    if total.notifications > 0 {
        res.extra.insert(
            "notifications".into(),
            serde_json::json!(total.notifications),
        );
    }
    fill_params(cfg, &mut res);
    add_window_cpu(&mut res, window_cpu);
    if let Err(e) = cleanup(cfg, leftovers) {
        eprintln!("kiln load zk: cleanup: {e}");
    }
    Ok(res)
}

fn fill_params(cfg: &ZkLoad, res: &mut RunResult) {
    let mix: Vec<String> = cfg
        .mix
        .iter()
        .map(|(o, w)| format!("{}={w}", o.name()))
        .collect();
    res.params = serde_json::json!({
        "server": cfg.server, "sessions": cfg.sessions, "in_flight": cfg.in_flight,
        "mix": mix.join(","), "value_size": cfg.value_size, "keys": cfg.keys, "rate": cfg.rate,
        "watchers": cfg.watchers, "warmup_s": cfg.warmup.as_secs_f64(),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
}

/// Watch fan-out: one writer, `cfg.watchers` watcher sessions.
fn run_watch(cfg: &ZkLoad, server: Option<server_cpu::ServerPid>) -> Result<RunResult> {
    if cfg.rate <= 0.0 {
        return Err(LoadError::Config(
            "watch fan-out needs --rate (sets per second)".into(),
        ));
    }
    let live = Live::new();
    let hot = format!("{}/hot", cfg.root);
    let mut watchers = Vec::with_capacity(cfg.watchers);
    for _ in 0..cfg.watchers {
        watchers.push(open_session(&cfg.server)?);
    }
    let writer = open_session(&cfg.server)?;
    let progress = spawn_progress(live.clone(), "notifications", cfg.quiet);
    let window = Window::new(cfg.warmup, cfg.duration);
    let window_cpu = server_cpu::WindowCpu::start(server, window.measure_from, window.end);
    let schedule = Schedule::new(window.start, cfg.rate);
    let mut handles = Vec::new();
    for s in watchers {
        let (hot, live) = (hot.clone(), live.clone());
        s.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(LoadError::io("set timeout"))?;
        handles.push(std::thread::spawn(move || {
            watch_loop(s, &hot, schedule, window, &live)
        }));
    }
    // The writer: open loop, sets `hot` to `i` at set `i`'s intended time without waiting for
    // earlier replies (a closed-loop writer falls behind its schedule whenever one set is slow,
    // and every later notification would be charged that lag). A reader thread drains the
    // replies so errors show.
    let Session {
        stream: mut wstream,
        reader: wreader,
    } = writer;
    wreader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(LoadError::io("set timeout"))?;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writing_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replies = {
        let (sent, writing_done, hot) = (sent.clone(), writing_done.clone(), hot.clone());
        std::thread::spawn(move || set_replies(wreader, &hot, &sent, &writing_done))
    };
    let budget = Budget::new(cfg.ops);
    let mut sets = 0u64;
    let mut value = vec![0u8; cfg.value_size.max(8)];
    let mut i: u64 = 1;
    let mut xid = 1;
    let mut err = None;
    while !live.stopped() && budget.take(1) > 0 {
        let t = schedule.intended(i);
        if window.over(t) {
            break;
        }
        wait_until(t);
        if let Some(head) = value.get_mut(0..8) {
            head.copy_from_slice(&i.to_be_bytes());
        }
        let mut frame = Vec::new();
        encode_request(
            xid,
            &Request::SetData {
                path: hot.clone(),
                data: Some(value.clone()),
                version: -1,
            },
            &mut frame,
        );
        xid += 1;
        if let Err(e) = wstream.write_all(&frame) {
            err = Some(LoadError::io("send set")(e));
            break;
        }
        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if replies.is_finished() {
            break; // the reply reader failed; its error is reported below
        }
        if window.measured(t) {
            sets += 1;
        }
        i += 1;
    }
    writing_done.store(true, std::sync::atomic::Ordering::Release);
    match replies.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => err = err.or(Some(e)),
        Err(_) => err = err.or(Some(LoadError::Protocol("set reader panicked".into()))),
    }
    let end = Instant::now();
    live.request_stop();
    let mut total = Recorder::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => total.merge(&r),
            Ok(Err(e)) => err = err.or(Some(e)),
            Err(_) => err = err.or(Some(LoadError::Protocol("watcher panicked".into()))),
        }
    }
    let _ = progress.join();
    if let Some(e) = err {
        return Err(e);
    }
    let measured = end.saturating_duration_since(window.measure_from);
    let mut res = RunResult::new(
        "zk-watch",
        "notifications",
        &total,
        measured,
        cfg.rate * cfg.watchers as f64,
    );
    res.latency_of = "intended set -> notification".into();
    res.extra.insert("sets".into(), serde_json::json!(sets));
    res.extra.insert(
        "notifications_per_set".into(),
        serde_json::json!(if sets > 0 {
            total.ops as f64 / sets as f64
        } else {
            0.0
        }),
    );
    fill_params(cfg, &mut res);
    // Per notification, like the run's throughput.
    add_window_cpu(&mut res, window_cpu);
    if let Err(e) = cleanup(cfg, Vec::new()) {
        eprintln!("kiln load zk: cleanup: {e}");
    }
    Ok(res)
}

/// Reads the fan-out writer's set replies until every sent set is answered after the writer
/// stopped (or 10 s pass); any error code fails the run.
fn set_replies(
    mut reader: FrameReader,
    hot: &str,
    sent: &std::sync::atomic::AtomicU64,
    writing_done: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    let mut got = 0u64;
    let mut done_at: Option<Instant> = None;
    loop {
        if writing_done.load(Ordering::Acquire) {
            if got >= sent.load(Ordering::Relaxed) {
                return Ok(());
            }
            let at = *done_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(10) {
                return Err(LoadError::Server(format!(
                    "{} of {} sets of {hot} unanswered 10 s after the last",
                    sent.load(Ordering::Relaxed) - got,
                    sent.load(Ordering::Relaxed)
                )));
            }
        }
        let f = match reader.next_frame() {
            Ok(f) => f,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(LoadError::io("read set reply")(e)),
        };
        let h = ReplyHeader::decode(&mut Reader::new(f, FRAME_MAX))
            .map_err(|e| LoadError::Protocol(format!("reply header: {e}")))?;
        if h.xid < 0 {
            continue;
        }
        if h.err != 0 {
            return Err(LoadError::Server(format!(
                "set {hot} failed with code {}",
                h.err
            )));
        }
        got += 1;
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn watch_loop(
    mut s: Session,
    hot: &str,
    schedule: Schedule,
    window: Window,
    live: &Live,
) -> Result<Recorder> {
    let mut rec = Recorder::new();
    let mut xid = 1;
    'arm: while !live.stopped() {
        let mut frame = Vec::new();
        encode_request(
            xid,
            &Request::GetData {
                path: hot.to_owned(),
                watch: true,
            },
            &mut frame,
        );
        xid += 1;
        s.stream
            .write_all(&frame)
            .map_err(LoadError::io("send getData"))?;
        let mut seen: Option<u64> = None;
        loop {
            let f = match s.reader.next_frame() {
                Ok(f) => f,
                Err(e) if is_timeout(&e) => {
                    if live.stopped() {
                        break 'arm;
                    }
                    continue;
                }
                Err(e) => return Err(LoadError::io("read")(e)),
            };
            let mut r = Reader::new(f, FRAME_MAX);
            let h = ReplyHeader::decode(&mut r)
                .map_err(|e| LoadError::Protocol(format!("reply header: {e}")))?;
            if h.xid == -1 {
                let kind = r
                    .read_i32()
                    .map_err(|e| LoadError::Protocol(format!("event: {e}")))?;
                if kind != EVENT_NODE_DATA_CHANGED {
                    continue;
                }
                let now = Instant::now();
                // The watch was armed on data `i`: this notification is set `i + 1`'s.
                if let Some(i) = seen {
                    let intended = schedule.intended(i + 1);
                    live.add(1, 0);
                    if window.measured(intended) {
                        rec.ops += 1;
                        rec.record_ns(now.saturating_duration_since(intended).as_nanos() as u64);
                    }
                }
                continue 'arm;
            }
            if h.xid < 0 {
                continue;
            }
            if h.err != 0 {
                return Err(LoadError::Server(format!(
                    "getData {hot} failed with code {}",
                    h.err
                )));
            }
            let data = r
                .read_buffer()
                .map_err(|e| LoadError::Protocol(format!("getData reply: {e}")))?
                .unwrap_or_default();
            let mut head = [0u8; 8];
            if let Some(d) = data.get(0..8) {
                head.copy_from_slice(d);
            }
            seen = Some(u64::from_be_bytes(head));
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_process_listening_on_a_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert_eq!(server_cpu::listener_pid(&addr), Some(std::process::id()));
        drop(l);
        assert_eq!(server_cpu::listener_pid(&addr), None);
    }

    #[test]
    fn a_given_server_pid_is_used_and_checked() {
        let me = std::process::id();
        // Given: used as it is, without looking at sockets (nothing listens on port 1 here).
        let got = server_cpu::resolve("127.0.0.1:1", Some(me)).unwrap();
        assert_eq!(
            got,
            Some(server_cpu::ServerPid {
                pid: me,
                given: true
            })
        );
        // A pid with no process is a configuration error, not a silent fallback.
        let e = server_cpu::resolve("127.0.0.1:1", Some(u32::MAX)).unwrap_err();
        assert!(
            matches!(&e, LoadError::Config(m) if m.contains("--server-pid")),
            "{e}"
        );
        // Without it: the listening process, or none.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert_eq!(
            server_cpu::resolve(&addr, None).unwrap(),
            Some(server_cpu::ServerPid {
                pid: me,
                given: false
            })
        );
        drop(l);
        assert_eq!(server_cpu::resolve(&addr, None).unwrap(), None);
    }

    #[test]
    fn mix_parses_weights_and_rejects_unknown_ops() {
        let m = parse_mix("get=50, set=30,create").unwrap();
        assert_eq!(m, vec![(ZkOp::Get, 50), (ZkOp::Set, 30), (ZkOp::Create, 1)]);
        assert!(parse_mix("get=50,frobnicate=1").is_err());
        assert!(parse_mix("get=0").is_err());
    }

    #[test]
    fn pick_follows_the_weights() {
        let mix = parse_mix("get=90,set=10").unwrap();
        let mut rng = FastRng::new(1);
        let gets = (0..10_000)
            .filter(|_| pick(&mix, 100, &mut rng) == ZkOp::Get)
            .count();
        assert!((8_700..9_300).contains(&gets), "{gets}");
    }

    #[test]
    fn delete_without_creations_becomes_create() {
        let cfg = ZkLoad {
            server: String::new(),
            sessions: 1,
            in_flight: 1,
            mix: vec![(ZkOp::Delete, 1)],
            value_size: 4,
            keys: 2,
            rate: 0.0,
            duration: None,
            ops: Some(1),
            warmup: Duration::ZERO,
            watchers: 0,
            root: "/r".into(),
            quiet: true,
            server_pid: None,
        };
        let mut st = SenderState {
            rng: FastRng::new(3),
            created: Default::default(),
            next_name: 0,
            session: 7,
        };
        let (op, req) = build_op(&cfg, &mut st, ZkOp::Delete, b"abcd");
        assert_eq!(op, ZkOp::Create);
        assert_eq!(req.opcode(), op::CREATE);
        let (op, req) = build_op(&cfg, &mut st, ZkOp::Delete, b"abcd");
        assert_eq!(op, ZkOp::Delete);
        assert_eq!(
            req,
            Request::Delete {
                path: "/r/s7-0".into(),
                version: -1
            }
        );
    }
}
