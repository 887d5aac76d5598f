//! The ZooKeeper server: sockets, the transaction log, snapshots and timers around the pure
//! [`ZkState`]. This is the only module of the crate that does I/O.
//!
//! # Threads and tasks
//! Everything runs on one shard thread (one runtime): the accept loop, one reader and one writer
//! task per connection, the log sequencer, and the timers (session expiry, container GC,
//! autopurge). A snapshot costs the shard O(sessions): the tree is frozen in O(1) (a persistent
//! map) and encoded and written by a blocking-pool thread while writes go on.
//!
//! # The path of a write (numbered steps; correctness argument in brackets)
//! 1. A connection's reader decodes the request and calls [`ZkState::process`], which validates it,
//!    assigns the next zxid and applies it to the in-memory tree. [One thread, so zxid order is
//!    arrival order and every later request sees the result.]
//! 2. The txn is queued for the log sequencer in zxid order, and the reply (and any watch
//!    notifications, queued first) are queued on the connections' writers tagged with that zxid.
//! 3. The sequencer appends every queued txn as the records of one batch to the engine's
//!    `SegmentedLog`; the engine's group commit covers all appended batches with one fdatasync.
//! 4. When the fsync covering a txn completes, the durable-zxid watermark advances.
//! 5. Each writer sends its queued frames in order, waiting before a frame until the watermark
//!    reaches the frame's zxid. [Persist, then send: no reply or notification ever reveals a write
//!    that is not durable, and a session's replies leave in its request order.]
//!
//! Reads are answered from the tree at once, but a read that looks at a path changed by a write
//! whose fsync is still in flight is tagged with that write's zxid, so it waits for that fsync
//! only; reads of other paths are not held back by unrelated writes. The header zxid of a reply
//! that is not a write's (reads, pings) is the durable zxid, never a speculative one. The rule
//! is [`crate::visibility`], which the simulator drives too.
//!
//! # Recovery
//! Start-up loads the newest snapshot whose checksum verifies, then replays the log from the
//! offset recorded in it, skipping txns the snapshot already contains (zxid order).
//! Snapshots are taken after `snapCount` txns (randomised in `[snapCount/2+1, snapCount]`), once
//! the txns they contain are durable. With `autopurge.purgeInterval` > 0, a timer (first at
//! start-up, then every interval) deletes snapshots beyond the newest `autopurge.snapRetainCount`
//! and the log before the oldest kept one ([`crate::datadir`]). `dataDir` and `dataLogDir` are
//! locked for the life of the server, so a second server on them refuses to start.
//!
//! # Shutdown
//! When the stop future completes: stop accepting, close every connection, flush the log through
//! the commit group, return. Sessions survive in the log and are expired after a restart if their
//! clients do not come back within their timeout.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use kiln_engine::clock;
use kiln_engine::commit::Durability;
use kiln_engine::log::{AppendOptions, LogConfig, LogError, SegmentedLog};
use kiln_engine::rt;
use kiln_engine::rt::BufResult;
use kiln_engine::rt::buf::{IntoInner, IoBuf};
use kiln_engine::rt::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use kiln_engine::shutdown::Shutdown;
use kiln_engine::snapshot::SnapshotStore;
use kiln_engine::{shard, uring_check};
use thiserror::Error;
use tracing::{debug, error, info, warn};

use crate::acl;
use crate::config::ZkConfig;
use crate::datadir::{self, DirLock};
use crate::fourlw::{self, ConnInfo, Report};
use crate::jute::{Reader, Writer};
use crate::proto::{
    Code, ConnectRequest, ConnectResponse, Id, ReplyHeader, Request, RequestHeader, op, xid,
};
use crate::session::{ExpiryTracker, password};
use crate::snapshot;
use crate::state::{Client, Outcome, StateConfig, ZkState};
use crate::tree::{SessionId, Zxid};
use crate::txn::Txn;
use crate::txnlog;
use crate::visibility::{self, Dirty};
use crate::watch::Notification;

#[path = "observer.rs"]
mod observer;

/// Directory (under `dataDir`) holding snapshots.
pub const SNAPSHOT_DIR: &str = "kiln-zk-snapshots";
/// Directory (under `dataLogDir`) holding the transaction log.
pub const TXN_LOG_DIR: &str = "kiln-zk-txnlog";
/// Largest log batch the sequencer builds from queued txns.
const LOG_BATCH_BYTES_MAX: usize = 16 << 20;
/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// How long a new connection may take to send its connect request (or four-letter word): the
/// reference server's default sessionless-connection timeout.
const SESSIONLESS_DEADLINE: Duration = Duration::from_millis(10_000);
/// A connection's spare output buffer is dropped after a write larger than this (a big reply
/// should not pin its memory for the connection's lifetime).
const OUT_BUFFER_KEEP_BYTES: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum ZkError {
    #[error("{op} {target}: {source}")]
    Io {
        op: &'static str,
        target: String,
        source: std::io::Error,
    },
    #[error("transaction log: {0}")]
    Log(#[from] LogError),
    #[error("transaction log record at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("{0}")]
    Fatal(String),
}

fn io_err(
    op: &'static str,
    target: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> ZkError {
    let target = target.to_string();
    move |source| ZkError::Io { op, target, source }
}

fn now_ms() -> i64 {
    clock::wall_ms()
}

/// A value that only grows, with tasks waiting for it to reach a target (the durable zxid).
#[derive(Default)]
struct Watermark {
    value: Cell<i64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Watermark {
    fn get(&self) -> i64 {
        self.value.get()
    }

    fn advance(&self, v: i64) {
        if v > self.value.get() {
            self.value.set(v);
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    async fn wait(&self, target: i64) {
        poll_fn(|cx| {
            if self.value.get() >= target {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures; returns the first output (the other is dropped, cancelling its I/O).
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(x));
        }
        if let Poll::Ready(y) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(y));
        }
        Poll::Pending
    })
    .await
}

/// A frame in a connection's output buffer.
struct OutFrame {
    /// End of the frame in [`OutBuf::bytes`].
    end: usize,
    /// The zxid that must be durable before the frame may go out.
    wait: Option<Zxid>,
    /// When the request it answers arrived (None for notifications and handshake replies).
    started: Option<Instant>,
}

/// Frames encoded in place for a connection's writer, which sends every frame that may go out
/// in one write: replies to requests that arrived together leave together, without a copy or an
/// allocation per reply.
#[derive(Default)]
struct OutBuf {
    bytes: Vec<u8>,
    frames: VecDeque<OutFrame>,
    /// No more frames are queued; the writer sends what is there and shuts the socket.
    closed: bool,
    writer: Option<Waker>,
}

/// What a connection's reader waits on besides its socket: room for another outstanding request
/// (replies return it) and a request to stop.
#[derive(Default)]
struct ReaderGate {
    stopped: Cell<bool>,
    outstanding: Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

impl ReaderGate {
    fn wake(&self) {
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    fn register(&self, cx: &std::task::Context<'_>) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
    }

    fn stop(&self) {
        self.stopped.set(true);
        self.wake();
    }

    /// A reply went out: its request no longer counts against the limit.
    fn release(&self) {
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        self.wake();
    }

    /// Waits for room for one more outstanding request; false once stopped.
    async fn acquire(&self, max: usize) -> bool {
        poll_fn(|cx| {
            if self.stopped.get() {
                Poll::Ready(false)
            } else if self.outstanding.get() < max {
                self.outstanding.set(self.outstanding.get() + 1);
                Poll::Ready(true)
            } else {
                self.register(cx);
                Poll::Pending
            }
        })
        .await
    }

    /// Completes once stopped.
    async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopped.get() {
                Poll::Ready(())
            } else {
                self.register(cx);
                Poll::Pending
            }
        })
        .await;
    }
}

/// Request-to-reply latencies of one connection, in ms (ZooKeeper's `cons` figures).
#[derive(Clone, Copy)]
struct ConnLatency {
    last: u64,
    min: u64,
    max: u64,
    sum: u64,
    count: u64,
}

impl Default for ConnLatency {
    fn default() -> Self {
        Self {
            last: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
            count: 0,
        }
    }
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    out: RefCell<OutBuf>,
    gate: Rc<ReaderGate>,
    session: Cell<SessionId>,
    timeout_ms: Cell<i32>,
    auth: RefCell<Vec<Id>>,
    received: Cell<u64>,
    sent: Cell<u64>,
    queued: Cell<u64>,
    last_op: Cell<i32>,
    last_cxid: Cell<i32>,
    last_zxid: Cell<i64>,
    /// The header zxid of the newest reply queued (never reset): the next may not be lower.
    reply_zxid: Cell<Zxid>,
    established_ms: i64,
    last_response_ms: Cell<i64>,
    latency: Cell<ConnLatency>,
}

impl Conn {
    /// Encodes a frame straight into the output buffer and wakes the writer.
    fn push(&self, wait: Option<Zxid>, started: Option<Instant>, encode: impl FnOnce(&mut Writer)) {
        let waker = {
            let mut o = self.out.borrow_mut();
            if o.closed {
                return;
            }
            let mut w = Writer::from_vec(std::mem::take(&mut o.bytes));
            let start = w.begin_frame();
            encode(&mut w);
            w.end_frame(start);
            o.bytes = w.into_inner();
            let end = o.bytes.len();
            o.frames.push_back(OutFrame { end, wait, started });
            o.writer.take()
        };
        self.queued.set(self.queued.get() + 1);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues bytes as they are (a four-letter word's answer), then closes.
    fn push_raw_and_close(&self, bytes: &[u8]) {
        let waker = {
            let mut o = self.out.borrow_mut();
            if !o.closed {
                o.bytes.extend_from_slice(bytes);
                let end = o.bytes.len();
                o.frames.push_back(OutFrame {
                    end,
                    wait: None,
                    started: None,
                });
                o.closed = true;
            }
            o.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn reply(
        &self,
        h: ReplyHeader,
        body: Option<&crate::proto::Response>,
        wait: Option<Zxid>,
        started: Instant,
    ) {
        self.last_zxid.set(h.zxid);
        self.reply_zxid.set(self.reply_zxid.get().max(h.zxid));
        self.push(wait, Some(started), |w| {
            h.encode(w);
            if let Some(b) = body {
                b.encode(w);
            }
        });
    }

    fn notify(&self, n: &Notification, wait: Option<Zxid>) {
        self.push(wait, None, |w| {
            // 3.8 sends -1 as the zxid of a notification; clients ignore it.
            ReplyHeader {
                xid: xid::NOTIFICATION,
                zxid: -1,
                err: 0,
            }
            .encode(w);
            n.event.encode(w);
        });
    }

    /// Lets the writer send what is queued, then shut the socket; later frames are dropped.
    fn close_output(&self) {
        let waker = {
            let mut o = self.out.borrow_mut();
            o.closed = true;
            o.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn shut(&self) {
        self.close_output();
        self.gate.stop();
    }
}

#[derive(Default)]
struct Stats {
    received: u64,
    sent: u64,
    latency_min_ms: u64,
    latency_max_ms: u64,
    latency_sum_ms: u64,
    latency_count: u64,
}

struct Server {
    cfg: ZkConfig,
    state: RefCell<ZkState>,
    log: SegmentedLog,
    durable: Rc<Watermark>,
    snapshots: Rc<SnapshotStore>,
    pending_log: RefCell<VecDeque<Txn>>,
    log_signal: (flume::Sender<()>, flume::Receiver<()>),
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    by_session: RefCell<HashMap<SessionId, u64>>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    expiry: RefCell<ExpiryTracker>,
    dirty: RefCell<Dirty>,
    stats: RefCell<Stats>,
    next_conn_id: Cell<u64>,
    txns_since_snapshot: Cell<u64>,
    snapshot_threshold: Cell<u64>,
    snapshot_running: Rc<Cell<bool>>,
    started: Instant,
    /// Budget for repeated warnings (a flood of bad clients logs a burst, then a count).
    log_limit: RefCell<kiln_engine::ratelog::LogLimiter>,
    fatal: RefCell<Option<String>>,
    fatal_signal: (flume::Sender<()>, flume::Receiver<()>),
    /// Present when this server is an ensemble's observer ([`observer`]).
    observer: Option<Rc<observer::Observer>>,
}

fn mono_ms(start: Instant) -> u64 {
    clock::ms_since(start)
}

fn snapshot_threshold(snap_count: u64) -> u64 {
    // ZooKeeper randomises the point in [snapCount/2 + 1, snapCount] so servers of an ensemble do
    // not all snapshot at once.
    let half = snap_count / 2;
    let jitter = (now_ms() as u64) % (snap_count - half).max(1);
    half + 1 + jitter
}

/// Logs a warning that a [`kiln_engine::ratelog::LogLimiter`] let through.
fn log_admitted(admit: kiln_engine::ratelog::Admit, line: std::fmt::Arguments<'_>) {
    match admit.logged() {
        Some(0) => warn!("{line}"),
        Some(n) => warn!("{line} ({n} similar lines suppressed)"),
        None => {}
    }
}

impl Server {
    /// Logs a warning under the per-key rate limit.
    fn log_limited(&self, key: &'static str, line: std::fmt::Arguments<'_>) {
        let admit = self
            .log_limit
            .borrow_mut()
            .admit(key, mono_ms(self.started));
        log_admitted(admit, line);
    }

    fn report(&self) -> Report {
        let st = self.state.borrow();
        let stats = self.stats.borrow();
        let (dw, cw) = st.watches.counts();
        let by_path = st.watches.by_path();
        let conns: Vec<ConnInfo> = self
            .conns
            .borrow()
            .values()
            .map(|c| ConnInfo {
                peer: format!("/{}", c.peer),
                received: c.received.get(),
                sent: c.sent.get(),
                session: c.session.get(),
                timeout_ms: c.timeout_ms.get(),
                last_op: op_name(c.last_op.get()).to_string(),
                last_cxid: c.last_cxid.get(),
                last_zxid: c.last_zxid.get(),
                queued: c.queued.get().saturating_sub(c.sent.get()),
                established_ms: c.established_ms,
                last_response_ms: c.last_response_ms.get(),
                last_latency_ms: c.latency.get().last,
                min_latency_ms: match c.latency.get() {
                    l if l.count == 0 => 0,
                    l => l.min,
                },
                avg_latency_ms: match c.latency.get() {
                    l if l.count == 0 => 0,
                    l => l.sum / l.count,
                },
                max_latency_ms: c.latency.get().max,
            })
            .collect();
        let ephemerals = st.ephemeral_summary();
        Report {
            latency_min_ms: stats.latency_min_ms,
            latency_avg_ms: if stats.latency_count == 0 {
                0.0
            } else {
                stats.latency_sum_ms as f64 / stats.latency_count as f64
            },
            latency_max_ms: stats.latency_max_ms,
            received: stats.received,
            sent: stats.sent,
            outstanding: conns.iter().map(|c| c.queued).sum(),
            zxid: st.last_zxid(),
            node_count: st.tree.node_count(),
            watch_count: dw + cw,
            watched_paths: by_path.len(),
            watching_sessions: st.watches.session_watch_count(),
            ephemerals_count: ephemerals.iter().map(|(_, p)| p.len()).sum(),
            data_bytes: st.tree.data_bytes(),
            conns,
            conf: vec![
                ("clientPort".into(), self.cfg.client_port.to_string()),
                ("secureClientPort".into(), "-1".into()),
                ("dataDir".into(), self.cfg.data_dir.display().to_string()),
                (
                    "dataDirSize".into(),
                    dir_size(&self.cfg.data_dir.join(SNAPSHOT_DIR)).to_string(),
                ),
                (
                    "dataLogDir".into(),
                    self.cfg.data_log_dir.display().to_string(),
                ),
                (
                    "dataLogSize".into(),
                    dir_size(&self.cfg.data_log_dir.join(TXN_LOG_DIR)).to_string(),
                ),
                ("tickTime".into(), self.cfg.tick_time_ms.to_string()),
                (
                    "maxClientCnxns".into(),
                    self.cfg.max_client_cnxns.to_string(),
                ),
                (
                    "minSessionTimeout".into(),
                    self.cfg.min_session_timeout_ms.to_string(),
                ),
                (
                    "maxSessionTimeout".into(),
                    self.cfg.max_session_timeout_ms.to_string(),
                ),
                ("clientPortListenBacklog".into(), "-1".into()),
                ("serverId".into(), self.cfg.server_id.to_string()),
            ],
            sessions: st.sessions.iter().map(|(s, m)| (s, m.timeout_ms)).collect(),
            ephemerals,
            watches_by_session: st.watches.by_session(),
            watches_by_path: by_path,
            data_dir_bytes: dir_size(&self.cfg.data_dir.join(SNAPSHOT_DIR)),
            log_dir_bytes: dir_size(&self.cfg.data_log_dir.join(TXN_LOG_DIR)),
            mode: if self.observer.is_some() {
                "observer"
            } else {
                "standalone"
            },
            digest_mismatches: self
                .observer
                .as_ref()
                .map_or(0, |o| o.digest_mismatches.get()),
        }
    }

    fn fail(&self, why: String) {
        error!("zk: fatal: {why}");
        if self.fatal.borrow().is_none() {
            *self.fatal.borrow_mut() = Some(why);
        }
        let _ = self.fatal_signal.0.try_send(());
    }

    /// Step 2 of a write: queue the txn for the log and mark the paths it touched.
    fn sequence(&self, txn: Txn) -> Zxid {
        let z = txn.zxid;
        {
            self.dirty.borrow_mut().mark(&txn.op, z, self.durable.get());
        }
        self.pending_log.borrow_mut().push_back(txn);
        let _ = self.log_signal.0.try_send(());
        let n = self.txns_since_snapshot.get() + 1;
        self.txns_since_snapshot.set(n);
        z
    }

    /// The zxid a read must wait for: the newest non-durable write to a path it looks at.
    fn read_wait(&self, req: &Request) -> Option<Zxid> {
        let last = self.state.borrow().last_zxid();
        self.dirty.borrow().read_wait(req, last, self.durable.get())
    }

    /// The zxid a reply header of `conn` that no write waits for may carry (pings).
    fn visible_zxid(&self, conn: &Conn) -> Zxid {
        visibility::reply_zxid(
            self.state.borrow().last_zxid(),
            None,
            self.durable.get(),
            conn.reply_zxid.get(),
        )
    }

    /// Sends an outcome: notifications first (a watch fired by a session's own write reaches it
    /// before the write's reply, as in ZooKeeper), then the reply to `origin`.
    fn dispatch(
        &self,
        origin: Option<(&Conn, i32, Instant)>,
        outcome: Outcome,
        read_wait: Option<Zxid>,
    ) {
        let previous = origin.map_or(0, |(c, _, _)| c.reply_zxid.get());
        let (wait, zxid) = match outcome.txn {
            Some(txn) => (Some(self.sequence(txn)), outcome.zxid),
            None => (
                read_wait,
                visibility::reply_zxid(outcome.zxid, read_wait, self.durable.get(), previous),
            ),
        };
        if !outcome.notifications.is_empty() {
            let conns = self.conns.borrow();
            let by_session = self.by_session.borrow();
            for n in &outcome.notifications {
                if let Some(c) = by_session.get(&n.session).and_then(|id| conns.get(id)) {
                    c.notify(n, wait);
                }
            }
        }
        if let Some((c, xid, started)) = origin {
            let h = ReplyHeader {
                xid,
                zxid,
                err: outcome.err,
            };
            let body = (outcome.err == 0).then_some(&outcome.response);
            c.reply(h, body, wait, started);
        }
        self.maybe_snapshot();
    }

    fn maybe_snapshot(&self) {
        if self.txns_since_snapshot.get() < self.snapshot_threshold.get()
            || self.snapshot_running.get()
        {
            return;
        }
        self.txns_since_snapshot.set(0);
        self.snapshot_threshold
            .set(snapshot_threshold(self.cfg.snap_count));
        // Replay starts at the log end as it is now: every txn above this snapshot's zxid is still
        // queued for the sequencer or comes later, so it lands at or after this offset.
        let frozen = snapshot::Frozen::capture(&self.state.borrow(), self.log.log_end_offset());
        let zxid = frozen.last_zxid;
        self.snapshot_running.set(true);
        let running = self.snapshot_running.clone();
        let durable = self.durable.clone();
        let store = self.snapshots.clone();
        rt::spawn(async move {
            // The snapshot may contain txns whose fsync is in flight; write it only once they are
            // durable, so a snapshot never holds a write that the log could still lose.
            durable.wait(zxid).await;
            match datadir::write_snapshot(&store, frozen).await {
                Ok(path) => info!(
                    "zk: snapshot at zxid 0x{zxid:x} written to {}",
                    path.display()
                ),
                Err(e) => warn!("zk: snapshot at zxid 0x{zxid:x} failed: {e}"),
            }
            running.set(false);
        })
        .detach();
    }
}

fn op_name(op: i32) -> &'static str {
    match op {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => "CREA",
        op::DELETE => "DELE",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_DATA => "SETD",
        op::GET_ACL => "GETA",
        op::SET_ACL => "SETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::SYNC => "SYNC",
        op::PING => "PING",
        op::MULTI => "MULT",
        op::CLOSE_SESSION => "CLOS",
        op::AUTH => "AUTH",
        op::SET_WATCHES | op::SET_WATCHES2 => "SETW",
        _ => "NA",
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A server on its own thread; for `kiln up`, embedding and tests.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<Result<(), ZkError>>>,
}

impl ServerHandle {
    /// Binds `config.client_port` (0 = any free port), recovers, and serves on a new thread until
    /// [`ServerHandle::stop`] or until `shutdown` is requested (pass the process's token so that
    /// SIGINT/SIGTERM stop it too). Returns once the server accepts connections.
    pub fn start_with(config: ZkConfig, shutdown: Shutdown) -> Result<Self, ZkError> {
        check_uring()?;
        check_standalone(&config)?;
        let lock = lock_dirs(&config)?;
        let listener = bind(&config)?;
        let addr = listener
            .local_addr()
            .map_err(io_err("local_addr", config.client_port))?;
        let (ready_tx, ready_rx) = flume::bounded::<Result<(), String>>(1);
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-zk".into())
            .spawn(move || {
                let r = run_with_listener(config, listener, stop, Some(ready_tx));
                drop(lock);
                r
            })
            .map_err(io_err("spawn thread", "kiln-zk"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                addr,
                shutdown,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(ZkError::Fatal(e))
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(ZkError::Fatal("server thread ended during start-up".into())),
            },
        }
    }

    /// [`ServerHandle::start_with`] with a token of its own.
    pub fn start(config: ZkConfig) -> Result<Self, ZkError> {
        Self::start_with(config, Shutdown::new())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server stops on its own (its shutdown token was requested, for example by
    /// SIGTERM, or it failed).
    pub fn wait(mut self) -> Result<(), ZkError> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ZkError::Fatal("server thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Stops the server and waits for it (the log is flushed first).
    pub fn stop(mut self) -> Result<(), ZkError> {
        self.shutdown_and_join()
    }

    fn shutdown_and_join(&mut self) -> Result<(), ZkError> {
        self.shutdown.request();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ZkError::Fatal("server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_and_join();
    }
}

fn check_uring() -> Result<(), ZkError> {
    uring_check::check().map_err(|e| ZkError::Fatal(e.to_string()))
}

fn bind(cfg: &ZkConfig) -> Result<std::net::TcpListener, ZkError> {
    let ip = cfg
        .client_port_address
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let addr = SocketAddr::new(ip, cfg.client_port);
    // A server restarted right after a kill -9 can find its port still held: the dead process's
    // io_uring instance (and the accept it had in flight) is torn down by the kernel after the
    // process is gone. Wait for that briefly rather than fail a restart.
    let deadline = clock::now() + BIND_IN_USE_WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && clock::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r.map_err(io_err("bind", addr)),
        }
    }
}

/// How long [`bind`] waits for a port still held by a process that just died.
const BIND_IN_USE_WAIT: Duration = Duration::from_secs(5);

/// Runs the server on the current thread until `shutdown` is requested. Blocks.
///
/// Binds `clientPort`, recovers state from `dataDir`/`dataLogDir`, serves clients, and on
/// shutdown closes connections and flushes the log. A failed fsync stops the server with an
/// error (it is never retried). `kiln zk` passes a token with SIGINT/SIGTERM handlers installed.
pub fn run(config: ZkConfig, shutdown: Shutdown) -> Result<(), ZkError> {
    check_uring()?;
    check_standalone(&config)?;
    let _lock = lock_dirs(&config)?;
    let listener = bind(&config)?;
    run_with_listener(config, listener, shutdown, None)
}

/// This server runs standalone or as an observer; a voting member's configuration is refused
/// rather than served as a standalone server, which would split the ensemble's data.
fn check_standalone(cfg: &ZkConfig) -> Result<(), ZkError> {
    match (&cfg.quorum, cfg.me()) {
        (Some(_), Some(me)) if me.role == crate::config::LearnerType::Observer => Ok(()),
        (Some(q), Some(me)) => Err(ZkError::Fatal(format!(
            "this zoo.cfg makes server {} a voting member of an ensemble of {} ({}); Kiln joins \
             an ensemble as an observer only for now: mark its line server.{}=...:observer (and \
             peerType=observer), or give it a single server.N line to run standalone",
            me.id,
            q.servers.len(),
            q.ids(),
            me.id
        ))),
        _ => Ok(()),
    }
}

/// Locks `dataDir` and `dataLogDir` for as long as the returned guard lives.
fn lock_dirs(cfg: &ZkConfig) -> Result<DirLock, ZkError> {
    DirLock::acquire(&[&cfg.data_dir, &cfg.data_log_dir]).map_err(|e| ZkError::Fatal(e.to_string()))
}

fn run_with_listener(
    config: ZkConfig,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
    ready: Option<flume::Sender<Result<(), String>>>,
) -> Result<(), ZkError> {
    // The shard helper flushes this thread's commit group after the future returns.
    let result = shard::run_on_current_thread(move || async move {
        let srv = match start_server(config).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(r) = &ready {
                    let _ = r.send(Err(e.to_string()));
                }
                return Err(e);
            }
        };
        let listener =
            rt::TcpListener::from_std(listener).map_err(io_err("listen", "client port"))?;
        if let Some(r) = ready {
            let _ = r.send(Ok(()));
        }
        info!(
            "zk: serving on {:?}, last zxid 0x{:x}",
            listener.local_addr().ok(),
            srv.state.borrow().last_zxid()
        );
        spawn_background(&srv);
        if let Some(obs) = &srv.observer {
            rt::spawn(observer::run(srv.clone(), obs.clone())).detach();
        }
        if srv.cfg.admin_enable {
            spawn_admin(&srv);
        }
        if let Some(port) = srv.cfg.metrics_http_port {
            spawn_metrics(&srv, port);
        }
        let fatal_rx = srv.fatal_signal.1.clone();
        let accept_srv = srv.clone();
        let accept = async move {
            let mut backoff = kiln_engine::accept::AcceptBackoff::default();
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        backoff.on_success();
                        let s = accept_srv.clone();
                        rt::spawn(serve_conn(s, stream, peer)).detach();
                    }
                    Err(e) => {
                        // Out of descriptors, the connection waits in the backlog; connections
                        // without a session close at their handshake deadline and free some.
                        let after = backoff.on_error(&e, mono_ms(accept_srv.started));
                        log_admitted(
                            after.log,
                            format_args!(
                                "zk: accept: {e}; retrying in {} ms",
                                after.delay.as_millis()
                            ),
                        );
                        clock::sleep(after.delay).await;
                    }
                }
            }
        };
        let stopped = async move {
            let _ = race(shutdown.wait(), fatal_rx.recv_async()).await;
        };
        let _ = race(accept, stopped).await;
        info!("zk: stopping");
        for c in srv.conns.borrow().values() {
            c.shut();
        }
        // Let writers drain what is already durable; the log is flushed after this returns.
        clock::sleep(Duration::from_millis(50)).await;
        let fatal = srv.fatal.borrow().clone();
        match fatal {
            Some(why) => Err(ZkError::Fatal(why)),
            None => Ok(()),
        }
    });
    match result {
        Ok(r) => r,
        Err(e) => Err(ZkError::Io {
            op: "start runtime (io_uring)",
            target: "kiln-zk".into(),
            source: e,
        }),
    }
}

async fn start_server(mut cfg: ZkConfig) -> Result<Rc<Server>, ZkError> {
    let observer = cfg
        .me()
        .filter(|me| me.role == crate::config::LearnerType::Observer)
        .map(|_| Rc::new(observer::Observer::new(cfg.server_id)));
    if observer.is_some() {
        // An observer keeps nothing of its own (observer.rs, "Durability"): its scratch log and
        // snapshots live apart from a standalone server's data, which it never reads or changes.
        let scratch = cfg.data_dir.join("kiln-zk-observer");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(io_err("create directory", scratch.display()))?;
        cfg.data_dir = scratch.clone();
        cfg.data_log_dir = scratch;
    }
    let snap_dir = cfg.data_dir.join(SNAPSHOT_DIR);
    let log_dir = cfg.data_log_dir.join(TXN_LOG_DIR);
    std::fs::create_dir_all(&log_dir).map_err(io_err("create directory", log_dir.display()))?;
    // Snapshots are deleted only by autopurge, on its timer (spawn_background).
    let snapshots = SnapshotStore::open(&snap_dir, "zk", usize::MAX)
        .await
        .map_err(|e| ZkError::Fatal(format!("snapshot store {}: {e}", snap_dir.display())))?;
    let state_cfg = StateConfig {
        extended_types: cfg.extended_types,
        server_id: cfg.server_id,
    };
    let now = now_ms();
    let loaded = snapshots
        .load_newest()
        .await
        .map_err(|e| ZkError::Fatal(format!("snapshot store {}: {e}", snap_dir.display())))?;
    let (replay_from, mut state) = match loaded {
        Some((id, payload)) => {
            let s = snapshot::decode(&payload).map_err(|e| {
                ZkError::Fatal(format!("snapshot {id} in {}: {e}", snap_dir.display()))
            })?;
            info!(
                "zk: loaded snapshot 0x{id:x} ({} nodes, {} sessions)",
                s.tree.node_count(),
                s.sessions.len()
            );
            (
                s.log_offset,
                ZkState::restore(state_cfg, now, s.tree, s.sessions, s.last_zxid),
            )
        }
        None => (0, ZkState::new(state_cfg, now)),
    };
    let log_cfg = LogConfig {
        segment_bytes: 64 << 20,
        segment_ms: None,
        retention_bytes: None,
        retention_ms: None,
        durability: if cfg.force_sync {
            Durability::Durable
        } else {
            Durability::Interval {
                messages: u64::MAX,
                ms: 1000,
            }
        },
        batch_bytes_max: LOG_BATCH_BYTES_MAX + (1 << 20),
        // Zeros ahead of the writes, as ZooKeeper pads its log: fdatasync then has no block
        // allocation or size change to record (about half the latency on ext4).
        zero_fill: cfg.pre_alloc_kb > 0,
        reserve_ahead_bytes: if cfg.pre_alloc_kb > 0 {
            cfg.pre_alloc_kb << 10
        } else {
            LogConfig::default().reserve_ahead_bytes
        },
        ..LogConfig::default()
    };
    let log = SegmentedLog::open(&log_dir, log_cfg).await?;
    if replay_from < log.log_start_offset() {
        // Autopurge removed the log below the oldest snapshot it kept; without one of those
        // snapshots the state cannot be rebuilt, and starting from less would lose writes.
        return Err(ZkError::Fatal(format!(
            "the transaction log in {} starts at offset {} (older records were purged), but no \
             valid snapshot in {} covers it (replay would start at {replay_from}); restore the \
             snapshots or the log",
            log_dir.display(),
            log.log_start_offset(),
            snap_dir.display()
        )));
    }
    let replayed = txnlog::replay(&log, replay_from, &mut state)
        .await
        .map_err(|e| match e {
            txnlog::ReplayError::Log(e) => ZkError::Log(e),
            txnlog::ReplayError::Corrupt { offset, reason } => ZkError::Corrupt { offset, reason },
        })?;
    info!(
        "zk: replayed {replayed} txns; last zxid 0x{:x}",
        state.last_zxid()
    );
    let started = clock::now();
    let mut expiry = ExpiryTracker::default();
    for (s, meta) in state.sessions.iter() {
        expiry.touch(s, 0, meta.timeout_ms);
    }
    let durable = Rc::new(Watermark::default());
    durable.advance(state.last_zxid());
    Ok(Rc::new(Server {
        log_limit: RefCell::new(kiln_engine::ratelog::LogLimiter::default()),
        snapshots: Rc::new(snapshots),
        snapshot_threshold: Cell::new(snapshot_threshold(cfg.snap_count)),
        cfg,
        state: RefCell::new(state),
        log,
        durable,
        pending_log: RefCell::new(VecDeque::new()),
        log_signal: flume::bounded(1),
        conns: RefCell::new(HashMap::new()),
        by_session: RefCell::new(HashMap::new()),
        per_ip: RefCell::new(HashMap::new()),
        expiry: RefCell::new(expiry),
        dirty: RefCell::new(Dirty::default()),
        stats: RefCell::new(Stats::default()),
        next_conn_id: Cell::new(1),
        txns_since_snapshot: Cell::new(0),
        snapshot_running: Rc::new(Cell::new(false)),
        started,
        fatal: RefCell::new(None),
        fatal_signal: flume::bounded(1),
        observer,
    }))
}

fn spawn_background(srv: &Rc<Server>) {
    // Log sequencer: steps 3 and 4 of a write.
    let s = srv.clone();
    rt::spawn(async move {
        let signal = s.log_signal.1.clone();
        // One txn's bytes at a time, reused: no allocation per txn.
        let mut scratch: Vec<u8> = Vec::with_capacity(4096);
        let mut txns: VecDeque<Txn> = VecDeque::new();
        loop {
            if s.pending_log.borrow().is_empty() && signal.recv_async().await.is_err() {
                return;
            }
            // Take the queued txns by swapping buffers (the queue keeps its capacity).
            std::mem::swap(&mut txns, &mut *s.pending_log.borrow_mut());
            if txns.is_empty() {
                continue;
            }
            let mut last_end = 0;
            let mut last_zxid = 0;
            while !txns.is_empty() {
                let (batch, zxid) = match txnlog::encode_batch(&mut txns, &mut scratch, LOG_BATCH_BYTES_MAX) {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => {
                        s.fail(format!("building a log batch: {e}"));
                        return;
                    }
                };
                last_zxid = zxid;
                loop {
                    match s.log.append_buffered(&batch, AppendOptions::default()) {
                        Ok(info) => {
                            last_end = info.last_offset + 1;
                            break;
                        }
                        Err(LogError::Failed { .. } | LogError::Io { .. }) | Err(LogError::InvalidBatch(_)) => {
                            s.fail("the transaction log failed; stopping (a failed fsync is never retried)".into());
                            return;
                        }
                        Err(_) => {
                            // Busy. Over the pending-bytes limit: wait for the writer, then retry
                            // (backpressure). Everything written: autopurge holds the log for its
                            // delete_records; wait a moment, never spin without yielding.
                            let end = s.log.log_end_offset();
                            if s.log.written_offset() >= end {
                                clock::sleep(Duration::from_millis(1)).await;
                            } else if s.log.wait_written(end).await.is_err() {
                                s.fail("the transaction log failed while waiting for writes".into());
                                return;
                            }
                        }
                    }
                }
            }
            let s2 = s.clone();
            rt::spawn(async move {
                let r = if s2.cfg.force_sync {
                    s2.log.wait_durable(last_end).await
                } else {
                    s2.log.wait_written(last_end).await
                };
                match r {
                    Ok(()) => s2.durable.advance(last_zxid),
                    Err(e) => s2.fail(format!("transaction log: {e}")),
                }
            })
            .detach();
        }
    })
    .detach();

    // Session expiry and container collection are the leader's when this server observes.
    if srv.observer.is_some() {
        return;
    }
    // Session expiry.
    let s = srv.clone();
    rt::spawn(async move {
        let period = Duration::from_millis(u64::from(s.cfg.tick_time_ms / 2).clamp(20, 1000));
        loop {
            clock::sleep(period).await;
            let now = mono_ms(s.started);
            let expired = s.expiry.borrow().expired(now);
            for sid in expired {
                s.expiry.borrow_mut().remove(sid);
                info!("zk: expiring session 0x{sid:x}");
                let conn_id = s.by_session.borrow_mut().remove(&sid);
                if let Some(c) = conn_id.and_then(|id| s.conns.borrow().get(&id).cloned()) {
                    c.shut();
                }
                if s.state.borrow().sessions.get(sid).is_none() {
                    continue;
                }
                let outcome = s.state.borrow_mut().close_session(sid, 0, now_ms());
                s.dispatch(None, outcome, None);
            }
        }
    })
    .detach();

    // Autopurge: at start-up, then every purgeInterval hours (0 = never), as ZooKeeper.
    if srv.cfg.purge_interval_hours > 0 {
        let s = srv.clone();
        rt::spawn(async move {
            let period = Duration::from_secs(u64::from(s.cfg.purge_interval_hours) * 3600);
            loop {
                let retain = s.cfg.snap_retain_count as usize;
                match datadir::purge(&s.snapshots, &s.log, retain).await {
                    Ok(r) => info!(
                        "zk: autopurge deleted {} snapshot(s) and {} txn log segment(s) (log now starts at {})",
                        r.snapshots_deleted,
                        r.log_segments_deleted,
                        s.log.log_start_offset()
                    ),
                    Err(e) => warn!("zk: autopurge: {e}"),
                }
                clock::sleep(period).await;
            }
        })
        .detach();
    }

    // Container and TTL garbage collection.
    let s = srv.clone();
    rt::spawn(async move {
        let period = Duration::from_millis(s.cfg.container_check_interval_ms.max(10));
        loop {
            clock::sleep(period).await;
            let now = now_ms();
            let candidates = s.state.borrow().gc_candidates(now);
            for p in candidates {
                let outcome = s.state.borrow_mut().delete_container(&p, now);
                if let Some(o) = outcome {
                    debug!("zk: deleting container/TTL node {p}");
                    s.dispatch(None, o, None);
                }
            }
        }
    })
    .detach();
}

/// Buffered reads of length-prefixed frames.
struct FrameReader {
    stream: rt::TcpStream,
    buf: Vec<u8>,
    pos: usize,
    gate: Rc<ReaderGate>,
}

impl FrameReader {
    /// Ensures `n` unread bytes are buffered; false on EOF, error or close request.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() - self.pos < n {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let want = n.max(READ_CHUNK_BYTES);
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            let buf = std::mem::take(&mut self.buf);
            let len = buf.len();
            let read = self.stream.read(buf.slice(len..));
            match race(read, self.gate.stopped()).await {
                Either::Left(BufResult(res, slice)) => {
                    self.buf = slice.into_inner();
                    match res {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
                Either::Right(_) => return false,
            }
        }
        true
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let range = self.skip(n);
        kiln_engine::invariant::bytes(&self.buf, range)
    }

    /// Consumes `n` buffered bytes; returns where they are in `buf` (valid until the next fill).
    fn skip(&mut self, n: usize) -> std::ops::Range<usize> {
        let start = self.pos;
        self.pos += n;
        start..self.pos
    }

    fn frame(&self, range: std::ops::Range<usize>) -> &[u8] {
        kiln_engine::invariant::bytes(&self.buf, range)
    }
}

async fn serve_conn(srv: Rc<Server>, stream: rt::TcpStream, peer: SocketAddr) {
    let ip = peer.ip();
    {
        let mut per_ip = srv.per_ip.borrow_mut();
        let n = per_ip.entry(ip).or_insert(0);
        if srv.cfg.max_client_cnxns > 0 && *n >= srv.cfg.max_client_cnxns {
            srv.log_limited(
                "too-many-connections",
                format_args!(
                    "zk: too many connections from {ip} - max is {}",
                    srv.cfg.max_client_cnxns
                ),
            );
            return;
        }
        *n += 1;
    }
    let _ = stream.set_nodelay(true);
    let id = srv.next_conn_id.get();
    srv.next_conn_id.set(id + 1);
    let gate = Rc::new(ReaderGate::default());
    let conn = Rc::new(Conn {
        id,
        peer,
        out: RefCell::new(OutBuf::default()),
        gate: gate.clone(),
        session: Cell::new(0),
        timeout_ms: Cell::new(0),
        auth: RefCell::new(vec![Id::new("ip", &ip.to_string())]),
        received: Cell::new(0),
        sent: Cell::new(0),
        queued: Cell::new(0),
        last_op: Cell::new(-1),
        last_cxid: Cell::new(-1),
        last_zxid: Cell::new(0),
        reply_zxid: Cell::new(0),
        established_ms: now_ms(),
        last_response_ms: Cell::new(0),
        latency: Cell::new(ConnLatency::default()),
    });
    let (rd, wr) = stream.into_split();
    srv.conns.borrow_mut().insert(id, conn.clone());
    let writer = rt::spawn(write_loop(srv.clone(), wr, conn.clone()));
    let mut reader = FrameReader {
        stream: rd,
        buf: Vec::with_capacity(READ_CHUNK_BYTES),
        pos: 0,
        gate,
    };
    read_loop(&srv, &conn, &mut reader).await;
    // Connection gone: its watches go with it; the session lives on until it expires.
    srv.conns.borrow_mut().remove(&id);
    let sid = conn.session.get();
    let owned = srv.by_session.borrow().get(&sid) == Some(&id);
    if owned {
        srv.by_session.borrow_mut().remove(&sid);
        srv.state.borrow_mut().watches.remove_session(sid);
    }
    conn.close_output();
    let _ = writer.await;
    if let Some(n) = srv.per_ip.borrow_mut().get_mut(&ip) {
        *n = n.saturating_sub(1);
    }
    debug!("zk: connection {peer} closed");
}

async fn write_loop(srv: Rc<Server>, mut wr: rt::TcpStream, conn: Rc<Conn>) {
    // Two buffers take turns: the connection encodes into one while the other is on the wire.
    let mut spare: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut started: Vec<Option<Instant>> = Vec::new();
    loop {
        let front = poll_fn(|cx| {
            let mut o = conn.out.borrow_mut();
            match o.frames.front() {
                Some(f) => Poll::Ready(Some(f.wait)),
                None if o.closed => Poll::Ready(None),
                None => {
                    o.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let Some(wait) = front else {
            let _ = wr.shutdown().await;
            return;
        };
        if let Some(z) = wait {
            srv.durable.wait(z).await;
        }
        // Every frame that may go out now, in order: up to the first that waits for a later
        // fsync than the durable zxid.
        let durable = srv.durable.get();
        {
            let mut o = conn.out.borrow_mut();
            let mut end = 0;
            while let Some(f) = o.frames.front() {
                if f.wait.is_some_and(|z| z > durable) {
                    break;
                }
                end = f.end;
                started.push(f.started);
                o.frames.pop_front();
            }
            spare.clear();
            spare.extend_from_slice(o.bytes.get(end..).unwrap_or_default());
            std::mem::swap(&mut o.bytes, &mut spare);
            spare.truncate(end);
            for f in o.frames.iter_mut() {
                f.end = f.end.saturating_sub(end);
            }
        }
        let BufResult(r, b) = wr.write_all(std::mem::take(&mut spare)).await;
        spare = if b.capacity() > OUT_BUFFER_KEEP_BYTES {
            Vec::with_capacity(READ_CHUNK_BYTES)
        } else {
            b
        };
        if r.is_err() {
            // The peer is gone: drop what is queued and take no more.
            let mut o = conn.out.borrow_mut();
            o.closed = true;
            o.frames.clear();
            o.bytes = Vec::new();
            drop(o);
            conn.gate.stop();
            return;
        }
        flush_stats(&srv, &conn, &mut started);
    }
}

/// Counts the frames just written; a reply frees its request's place and records its latency.
fn flush_stats(srv: &Server, conn: &Conn, started: &mut Vec<Option<Instant>>) {
    let now = clock::now();
    let mut stats = srv.stats.borrow_mut();
    let mut lat = conn.latency.get();
    let mut replied = false;
    for s in started.drain(..) {
        conn.sent.set(conn.sent.get() + 1);
        stats.sent += 1;
        if let Some(t) = s {
            conn.gate.release();
            let ms = now.saturating_duration_since(t).as_millis() as u64;
            if stats.latency_count == 0 || ms < stats.latency_min_ms {
                stats.latency_min_ms = ms;
            }
            stats.latency_max_ms = stats.latency_max_ms.max(ms);
            stats.latency_sum_ms += ms;
            stats.latency_count += 1;
            lat.last = ms;
            lat.min = lat.min.min(ms);
            lat.max = lat.max.max(ms);
            lat.sum += ms;
            lat.count += 1;
            replied = true;
        }
    }
    if replied {
        conn.latency.set(lat);
        conn.last_response_ms.set(now_ms());
    }
}

/// Reads a 4-byte length prefix and the frame; returns where the frame is in the reader's
/// buffer, or `None` when the connection should end.
async fn read_frame(
    srv: &Server,
    r: &mut FrameReader,
    peer: SocketAddr,
) -> Option<std::ops::Range<usize>> {
    if !r.fill(4).await {
        return None;
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(r.take(4));
    let len = i32::from_be_bytes(len4);
    let max = srv.cfg.jute_maxbuffer;
    let Some(len) = usize::try_from(len).ok().filter(|l| *l <= max) else {
        warn!("zk: closing {peer}: packet length {len} is out of range (jute.maxbuffer = {max})");
        return None;
    };
    if !r.fill(len).await {
        return None;
    }
    Some(r.skip(len))
}

async fn read_loop(srv: &Rc<Server>, conn: &Rc<Conn>, r: &mut FrameReader) {
    // A connection without a session holds a descriptor and a slot of its address's
    // maxClientCnxns: it gets a deadline for its connect request (or four-letter word), as the
    // reference server closes sessionless connections.
    let handshake = async {
        // A new connection may send a four-letter word instead of a length prefix.
        if !r.fill(4).await {
            return None;
        }
        let first: [u8; 4] = r
            .buf
            .get(r.pos..r.pos + 4)
            .and_then(|s| s.try_into().ok())?;
        if let Some(cmd) = fourlw::command_of(first) {
            let text = run_four_letter(srv, cmd);
            conn.push_raw_and_close(text.as_bytes());
            return None;
        }
        let range = read_frame(srv, r, conn.peer).await?;
        let payload = r.frame(range);
        match ConnectRequest::decode(&mut Reader::new(payload, srv.cfg.jute_maxbuffer)) {
            Ok(c) => Some(c),
            Err(e) => {
                srv.log_limited(
                    "malformed-connect",
                    format_args!("zk: closing {}: malformed connect request: {e}", conn.peer),
                );
                None
            }
        }
    };
    let connect = match clock::timeout(SESSIONLESS_DEADLINE, handshake).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(_) => {
            srv.log_limited(
                "handshake-deadline",
                format_args!(
                    "zk: closing {}: no connect request within {} ms",
                    conn.peer,
                    SESSIONLESS_DEADLINE.as_millis()
                ),
            );
            return;
        }
    };
    if !handle_connect(srv, conn, &connect) {
        return;
    }
    loop {
        let Some(range) = read_frame(srv, r, conn.peer).await else {
            return;
        };
        if !r.gate.acquire(srv.cfg.outstanding_per_connection_max).await {
            return;
        }
        if !handle_request(srv, conn, r.frame(range)) {
            return;
        }
    }
}

fn run_four_letter(srv: &Server, cmd: &str) -> String {
    let allowed = srv.cfg.four_letter_allowed(cmd);
    // An ensemble member that is not synchronised with a leader answers what ZooKeeper's does
    // (so `zkServer.sh status` and `kiln zk status` report it as not running).
    if allowed && cmd != "ruok" && srv.observer.as_ref().is_some_and(|o| !o.serving.get()) {
        return "This ZooKeeper instance is not currently serving requests\n".to_string();
    }
    if allowed {
        run_four_letter_side_effects(srv, cmd);
    }
    fourlw::render(cmd, allowed, &srv.report())
}

fn connect_reply(conn: &Conn, resp: &ConnectResponse, wait: Option<Zxid>) {
    conn.push(wait, None, |w| resp.encode(w));
}

/// Handles the handshake; false when the connection must close.
fn handle_connect(srv: &Rc<Server>, conn: &Rc<Conn>, req: &ConnectRequest) -> bool {
    if let Some(obs) = &srv.observer
        && !obs.serving.get()
    {
        // Not synchronised with a leader: ZooKeeper closes such connections too.
        return false;
    }
    let last = srv.state.borrow().last_zxid();
    if req.last_zxid_seen > last {
        warn!(
            "zk: refusing session request for client {} as it has seen zxid 0x{:x} our last zxid is 0x{:x} client must try another server",
            conn.peer, req.last_zxid_seen, last
        );
        return false;
    }
    let timeout = srv.cfg.negotiate_timeout(req.timeout_ms);
    let read_only = req.read_only.map(|_| false);
    let now = mono_ms(srv.started);
    if req.session_id == 0
        && let Some(obs) = &srv.observer
    {
        return observer::open_session(srv, obs, conn, timeout, read_only);
    }
    if req.session_id == 0 {
        let (sid, txn) = srv.state.borrow_mut().create_session(timeout, now_ms());
        let wait = srv.sequence(txn);
        bind_session(srv, conn, sid, timeout, now);
        info!(
            "zk: established session 0x{sid:x} with negotiated timeout {timeout} for client {}",
            conn.peer
        );
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: timeout,
            session_id: sid,
            passwd: password(sid).to_vec(),
            read_only,
        };
        connect_reply(conn, &resp, Some(wait));
        return true;
    }
    let sid = req.session_id;
    let valid = srv.state.borrow().sessions.get(sid).is_some()
        && (srv.observer.is_some() || srv.expiry.borrow().contains(sid))
        && req.passwd == password(sid);
    if !valid {
        info!(
            "zk: invalid session 0x{sid:x} for client {}, probably expired",
            conn.peer
        );
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: vec![0; 16],
            read_only,
        };
        connect_reply(conn, &resp, None);
        conn.close_output();
        return false;
    }
    if let Some(obs) = &srv.observer {
        // The session may be owned by another server: the leader moves it here first (REVALIDATE),
        // and the connect response waits for its answer.
        return observer::revalidate(obs, conn, sid, timeout, read_only);
    }
    let previous = srv.by_session.borrow().get(&sid).copied();
    if let Some(prev) = previous.filter(|p| *p != conn.id) {
        if let Some(c) = srv.conns.borrow().get(&prev) {
            c.shut();
        }
        srv.state.borrow_mut().watches.remove_session(sid);
    }
    bind_session(srv, conn, sid, timeout, now);
    info!("zk: revalidated session 0x{sid:x} for client {}", conn.peer);
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: timeout,
        session_id: sid,
        passwd: password(sid).to_vec(),
        read_only,
    };
    let wait = srv.read_wait(&Request::Sync { path: "/".into() });
    connect_reply(conn, &resp, wait);
    true
}

fn bind_session(srv: &Server, conn: &Conn, sid: SessionId, timeout: i32, now: u64) {
    conn.session.set(sid);
    conn.timeout_ms.set(timeout);
    srv.by_session.borrow_mut().insert(sid, conn.id);
    srv.expiry.borrow_mut().touch(sid, now, timeout);
}

/// Handles one request frame; false when the connection must close.
fn handle_request(srv: &Rc<Server>, conn: &Rc<Conn>, payload: &[u8]) -> bool {
    let started = clock::now();
    let sid = conn.session.get();
    let mono = started.saturating_duration_since(srv.started).as_millis() as u64;
    srv.expiry
        .borrow_mut()
        .touch(sid, mono, conn.timeout_ms.get());
    conn.received.set(conn.received.get() + 1);
    srv.stats.borrow_mut().received += 1;
    let mut r = Reader::new(payload, srv.cfg.jute_maxbuffer);
    let header = match RequestHeader::decode(&mut r) {
        Ok(h) => h,
        Err(e) => {
            warn!("zk: closing {}: malformed request header: {e}", conn.peer);
            return false;
        }
    };
    conn.last_op.set(header.op);
    if header.xid >= 0 {
        conn.last_cxid.set(header.xid);
    }
    if let Some(obs) = &srv.observer {
        obs.touch(sid, conn.timeout_ms.get());
        let forwarded = header.op == op::CLOSE_SESSION
            || header.op == op::SYNC
            || (op::is_write(header.op) && op::is_request(header.op));
        if forwarded {
            let body = payload.get(r.offset()..).unwrap_or_default();
            let req = match Request::decode(header.op, &mut r) {
                Ok(req) => Some(req),
                Err(_) if header.op == op::CLOSE_SESSION => None,
                Err(e) => {
                    srv.log_limited(
                        "malformed-request",
                        format_args!(
                            "zk: malformed request (op {}) from {}: {e}",
                            header.op, conn.peer
                        ),
                    );
                    None
                }
            };
            if !observer::forward(obs, conn, header.xid, header.op, body, req, started) {
                warn!("zk: closing {}: the leader is not reachable", conn.peer);
                return false;
            }
            return true;
        }
    }
    match header.op {
        op::PING => {
            let zxid = srv.visible_zxid(conn);
            conn.reply(
                ReplyHeader {
                    xid: header.xid,
                    zxid,
                    err: 0,
                },
                None,
                None,
                started,
            );
            true
        }
        op::AUTH => {
            let (scheme, auth) = match Request::decode(op::AUTH, &mut r) {
                Ok(Request::Auth { scheme, auth, .. }) => (scheme, auth),
                _ => {
                    warn!("zk: closing {}: malformed auth packet", conn.peer);
                    return false;
                }
            };
            let ip = conn.peer.ip().to_string();
            match acl::authenticate(&scheme, &auth, &ip, srv.cfg.super_digest.as_deref()) {
                Some(ids) => {
                    let mut mine = conn.auth.borrow_mut();
                    for id in ids {
                        if !mine.contains(&id) {
                            mine.push(id);
                        }
                    }
                    conn.reply(
                        ReplyHeader {
                            xid: header.xid,
                            zxid: 0,
                            err: 0,
                        },
                        None,
                        None,
                        started,
                    );
                    true
                }
                None => {
                    warn!(
                        "zk: authentication failed for scheme {scheme} from {}",
                        conn.peer
                    );
                    let h = ReplyHeader {
                        xid: header.xid,
                        zxid: 0,
                        err: Code::AuthFailed.as_i32(),
                    };
                    conn.reply(h, None, None, started);
                    conn.close_output();
                    false
                }
            }
        }
        op::CLOSE_SESSION => {
            srv.expiry.borrow_mut().remove(sid);
            let outcome = srv
                .state
                .borrow_mut()
                .close_session(sid, header.xid, now_ms());
            srv.by_session.borrow_mut().remove(&sid);
            info!("zk: closed session 0x{sid:x} for client {}", conn.peer);
            srv.dispatch(Some((conn, header.xid, started)), outcome, None);
            conn.close_output();
            false
        }
        opcode if !op::is_request(opcode) => {
            // The reference server answers UNIMPLEMENTED and closes the connection.
            srv.log_limited(
                "unknown-opcode",
                format_args!("zk: closing {}: unknown request type {opcode}", conn.peer),
            );
            let h = ReplyHeader {
                xid: header.xid,
                zxid: srv.visible_zxid(conn),
                err: Code::Unimplemented.as_i32(),
            };
            conn.reply(h, None, None, started);
            conn.close_output();
            false
        }
        opcode => {
            let decoded = Request::decode(opcode, &mut r);
            if let Err(e) = &decoded {
                // The reference server answers MARSHALLINGERROR and keeps the connection.
                srv.log_limited(
                    "malformed-request",
                    format_args!(
                        "zk: malformed request (op {opcode}) from {}: {e}",
                        conn.peer
                    ),
                );
            }
            let outcome = {
                let auth = conn.auth.borrow();
                let client = Client {
                    session: sid,
                    auth: &auth,
                };
                let mut state = srv.state.borrow_mut();
                match &decoded {
                    Ok(req) => state.process(&client, header.xid, req, now_ms()),
                    Err(_) => state.malformed(&client, header.xid, opcode, now_ms()),
                }
            };
            let wait = match &decoded {
                Ok(req) if outcome.txn.is_none() => srv.read_wait(req),
                _ => None,
            };
            srv.dispatch(Some((conn, header.xid, started)), outcome, wait);
            true
        }
    }
}

/// Largest HTTP request head the AdminServer and the metrics endpoint read; a longer head is
/// answered from its first `HTTP_REQUEST_BYTES_MAX` bytes.
const HTTP_REQUEST_BYTES_MAX: usize = 8 << 10;

/// The Content-Type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An HTTP reply: status line, Content-Type, body.
type HttpReply = (&'static str, &'static str, String);

/// The AdminServer: `GET /commands/<name>` answers JSON (see [`fourlw::render_admin`]).
/// A port that cannot be bound is reported and the client port keeps serving, as in ZooKeeper.
fn spawn_admin(srv: &Rc<Server>) {
    let ip = srv
        .cfg
        .admin_server_address
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let addr = SocketAddr::new(ip, srv.cfg.admin_server_port);
    spawn_http(srv, addr, "AdminServer", |s, target| {
        let (status, body) = admin_response(s, target);
        (status, "application/json", body)
    });
}

/// The Prometheus endpoint (`metricsProvider.httpPort`): `GET /metrics` (or `/`) answers the
/// text exposition of [`fourlw::render_prometheus`]. A port that cannot be bound is reported
/// and the client port keeps serving, as in ZooKeeper.
fn spawn_metrics(srv: &Rc<Server>, port: u16) {
    let ip = srv
        .cfg
        .metrics_http_host
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    spawn_http(
        srv,
        SocketAddr::new(ip, port),
        "metrics endpoint",
        metrics_response,
    );
}

fn metrics_response(srv: &Server, target: &str) -> HttpReply {
    let path = target.split('?').next().unwrap_or("/");
    match path.trim_end_matches('/') {
        "" | "/metrics" => (
            "200 OK",
            PROMETHEUS_CONTENT_TYPE,
            fourlw::render_prometheus(&srv.report()),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}

/// A one-request-per-connection HTTP/1.1 server on this shard: reads the request head (at most
/// [`HTTP_REQUEST_BYTES_MAX`] bytes), answers `respond(server, target)` and closes.
fn spawn_http(
    srv: &Rc<Server>,
    addr: SocketAddr,
    what: &'static str,
    respond: fn(&Server, &str) -> HttpReply,
) {
    let listener = match std::net::TcpListener::bind(addr).and_then(rt::TcpListener::from_std) {
        Ok(l) => l,
        Err(e) => {
            warn!("zk: {what} not started: bind {addr}: {e}");
            return;
        }
    };
    info!("zk: {what} on {addr}");
    let s = srv.clone();
    rt::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                clock::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let s = s.clone();
            rt::spawn(async move {
                let mut stream = stream;
                let head = read_http_head(&mut stream).await;
                let text = String::from_utf8_lossy(&head);
                let target = text
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("/");
                let (status, content_type, body) = respond(&s, target);
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.into_bytes()).await;
                let _ = stream.shutdown().await;
            })
            .detach();
        }
    })
    .detach();
}

/// Reads until the blank line that ends an HTTP request head, EOF, an error, or
/// [`HTTP_REQUEST_BYTES_MAX`] bytes.
async fn read_http_head(stream: &mut rt::TcpStream) -> Vec<u8> {
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HTTP_REQUEST_BYTES_MAX {
        let len = head.len();
        if head.capacity() - len < 512 {
            head.reserve(1024);
        }
        let want = (head.capacity() - len).min(HTTP_REQUEST_BYTES_MAX - len);
        let BufResult(r, b) = stream.read(head.slice(len..len + want)).await;
        head = b.into_inner();
        if !matches!(r, Ok(n) if n > 0) {
            break;
        }
    }
    head
}

fn admin_response(srv: &Server, target: &str) -> (&'static str, String) {
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_end_matches('/');
    if path == "/commands" {
        let names: Vec<String> = fourlw::ADMIN_COMMANDS
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect();
        return (
            "200 OK",
            format!("{{\"commands\":[{}],\"error\":null}}", names.join(",")),
        );
    }
    let Some(name) = path.strip_prefix("/commands/") else {
        return ("404 Not Found", "{\"error\":\"not found\"}".to_string());
    };
    let Some((_, word)) = fourlw::ADMIN_COMMANDS.iter().find(|(n, _)| *n == name) else {
        return (
            "404 Not Found",
            format!(
                "{{\"command\":\"{}\",\"error\":\"Unknown command\"}}",
                name.escape_default()
            ),
        );
    };
    // Resets go through the same path as their four-letter words.
    let _ = run_four_letter_side_effects(srv, word);
    match fourlw::render_admin(name, &srv.report()) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", "{\"error\":\"not found\"}".to_string()),
    }
}

fn run_four_letter_side_effects(srv: &Server, cmd: &str) -> bool {
    match cmd {
        "srst" => *srv.stats.borrow_mut() = Stats::default(),
        "crst" => {
            for c in srv.conns.borrow().values() {
                c.received.set(0);
                c.sent.set(0);
                c.queued.set(0);
                c.last_cxid.set(-1);
                c.last_zxid.set(-1);
                c.last_response_ms.set(0);
                c.latency.set(ConnLatency::default());
            }
        }
        _ => return false,
    }
    true
}
