//! Kiln's pure quorum pieces against a live Apache ZooKeeper 3.8 ensemble, byte for byte.
//!
//! Two Apache servers (Debian's `zookeeper` package) run as real processes on 127.0.0.1 and
//! 127.0.0.2; their zoo.cfg lists a third server, an observer on 127.0.0.3, which this test
//! plays with Kiln's code only, over blocking sockets:
//! - on the election port, [`wire::Hello`] and [`wire::Notification`] frames drive
//!   [`Election`] in observer mode until it decides who leads;
//! - on the leader's quorum port, [`wire::QuorumPacket`]s drive [`Learner`] (an observer)
//!   through LEADERINFO, the SNAP or DIFF sync, NEWLEADER, UPTODATE and then INFORMs; SNAP
//!   streams go through [`SnapDecoder`], txns through [`decode_apache_txn`] into a [`ZkState`],
//!   and after every txn Kiln's [`tree_digest`] must equal the digest Apache's leader attached.
//!
//! Client traffic comes from kazoo (`apache_quorum_traffic.py`): writes before the observer
//! joins, then every kind of write while it serves. At the end the observer's `/kiln` subtree
//! (data, stat, ACL) must equal what Apache serves.
//!
//! Needs `java`, `/usr/share/java/zookeeper.jar`, `/etc/zookeeper/conf` and a Python with kazoo
//! (`KILN_PYTHON`, else the repository's `.venv`); a missing prerequisite fails the test with
//! a message saying what is missing.

// Real processes and sockets: every deadline is on the real clock, not the engine's.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kiln_zk::proto::op;
use kiln_zk::quorum::atxn::{ApacheTxn, decode_apache_txn};
use kiln_zk::quorum::digest::tree_digest;
use kiln_zk::quorum::election::{Election, ElectionTiming, Notice, Out, ServerState};
use kiln_zk::quorum::packets;
use kiln_zk::quorum::snapstream::{SnapDecoder, SnapLimits, decode_snap};
use kiln_zk::quorum::wire::{self, Hello, Notification, PeerState, QuorumPacket, packet};
use kiln_zk::quorum::zab::{Effect, Learner, LearnerKind, Msg, Persisted, Timing};
use kiln_zk::session::Sessions;
use kiln_zk::state::{StateConfig, ZkState};
use kiln_zk::tree::DataTree;
use kiln_zk::txn::TxnOp;

const CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const REQUIRED_FILES: [&str; 2] = ["/usr/share/java/zookeeper.jar", "/etc/zookeeper/conf"];
const MY_ID: i64 = 3;
const TICK_MS: u64 = 500;
const INIT_LIMIT: u64 = 10;
const SYNC_LIMIT: u64 = 5;
/// Bounds every packet, txn and SNAP field (ZooKeeper's default `jute.maxbuffer` is 1 MiB).
const FIELD_MAX: usize = 4 << 20;
/// The session this observer forwards a createSession for, in its own id space (high byte 3).
const MY_SESSION: i64 = (MY_ID << 56) | 0x1234;
const MY_SESSION_TIMEOUT_MS: i32 = 30_000;
/// A read on a quorum or election socket returns after this long without bytes, so the loops
/// can tick the machines and check their deadlines.
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// The Apache ensemble.

struct Ports {
    client: u16,
    quorum: u16,
    election: u16,
}

fn host(sid: i64) -> String {
    format!("127.0.0.{sid}")
}

/// Free ports on each server's own address, all chosen before any is released.
fn free_ports() -> [Ports; 3] {
    let mut held = Vec::new();
    let mut take = |sid: i64| -> u16 {
        let l = TcpListener::bind((host(sid).as_str(), 0))
            .unwrap_or_else(|e| panic!("bind {}:0: {e}", host(sid)));
        let port = l.local_addr().expect("local addr").port();
        held.push(l);
        port
    };
    let mut ports = Vec::new();
    for sid in 1..=3 {
        ports.push(Ports {
            client: take(sid),
            quorum: take(sid),
            election: take(sid),
        });
    }
    drop(held);
    ports.try_into().unwrap_or_else(|_| unreachable!())
}

/// The two Apache servers; killed, and their directory deleted, when dropped (also on a panic,
/// after printing the tail of their logs).
struct Ensemble {
    dir: tempfile::TempDir,
    ports: [Ports; 3],
    procs: Vec<(i64, Child)>,
}

impl Ensemble {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kiln-apache-quorum")
            .tempdir()
            .expect("tempdir");
        let ports = free_ports();
        let mut ens = Ensemble {
            dir,
            ports,
            procs: Vec::new(),
        };
        let mut servers = String::new();
        for sid in 1..=3i64 {
            let p = ens.port(sid);
            let role = if sid == MY_ID { ":observer" } else { "" };
            writeln!(
                servers,
                "server.{sid}={}:{}:{}{role}",
                host(sid),
                p.quorum,
                p.election
            )
            .expect("string");
        }
        for sid in 1..=2i64 {
            let sdir = ens.server_dir(sid);
            let data = sdir.join("data");
            std::fs::create_dir_all(&data).expect("data dir");
            std::fs::write(data.join("myid"), format!("{sid}\n")).expect("myid");
            let p = ens.port(sid);
            let cfg = format!(
                "tickTime={TICK_MS}\ninitLimit={INIT_LIMIT}\nsyncLimit={SYNC_LIMIT}\n\
                 dataDir={}\nclientPort={}\nclientPortAddress={}\n\
                 4lw.commands.whitelist=*\nadmin.enableServer=false\n{servers}",
                data.display(),
                p.client,
                host(sid),
            );
            let cfg_path = sdir.join("zoo.cfg");
            std::fs::write(&cfg_path, cfg).expect("zoo.cfg");
            let out = std::fs::File::create(sdir.join("stdout.log")).expect("stdout.log");
            let err = out.try_clone().expect("clone");
            let child = Command::new("java")
                .args([
                    "-Xmx256m",
                    &format!("-Dzookeeper.log.dir={}", sdir.display()),
                    "-Dzookeeper.root.logger=INFO,ROLLINGFILE",
                    // The leader deletes emptied containers every half second, not every minute.
                    "-Dznode.container.checkIntervalMs=500",
                    "-cp",
                    CLASSPATH,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ])
                .arg(&cfg_path)
                .current_dir(&sdir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("start java for server {sid}: {e}"));
            ens.procs.push((sid, child));
        }
        ens
    }

    fn port(&self, sid: i64) -> &Ports {
        let i = usize::try_from(sid - 1).expect("sid 1..=3");
        &self.ports[i]
    }

    fn server_dir(&self, sid: i64) -> PathBuf {
        self.dir.path().join(format!("s{sid}"))
    }

    fn client_addr(&self, sid: i64) -> String {
        format!("{}:{}", host(sid), self.port(sid).client)
    }

    fn hosts(&self) -> String {
        format!("{},{}", self.client_addr(1), self.client_addr(2))
    }

    /// Waits until both servers serve (`srvr` reports a mode), at most `limit`.
    fn wait_serving(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for sid in 1..=2 {
            loop {
                if let Some((_, c)) = self.procs.iter_mut().find(|(s, _)| *s == sid)
                    && let Ok(Some(status)) = c.try_wait()
                {
                    panic!("Apache server {sid} exited with {status}");
                }
                if let Ok(out) = four_letter(&self.client_addr(sid), "srvr")
                    && out.contains("Mode: ")
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Apache server {sid} did not serve within {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The leader's last zxid, from `srvr`.
    fn zxid_of(&self, sid: i64) -> i64 {
        let out = four_letter(&self.client_addr(sid), "srvr")
            .unwrap_or_else(|e| panic!("srvr on server {sid}: {e}"));
        let hex = out
            .lines()
            .find_map(|l| l.strip_prefix("Zxid: 0x"))
            .unwrap_or_else(|| panic!("no Zxid in srvr of server {sid}: {out}"));
        i64::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("zxid {hex:?}: {e}"))
    }

    fn log_tail(&self, sid: i64, lines: usize) -> String {
        let mut text = String::new();
        for name in ["stdout.log", "zookeeper.log"] {
            if let Ok(t) = std::fs::read_to_string(self.server_dir(sid).join(name)) {
                let all: Vec<&str> = t.lines().collect();
                let from = all.len().saturating_sub(lines);
                writeln!(text, "--- server {sid} {name} (last {lines} lines)").expect("string");
                for l in &all[from..] {
                    writeln!(text, "{l}").expect("string");
                }
            }
        }
        text
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for sid in 1..=2 {
                eprintln!("{}", self.log_tail(sid, 40));
            }
        }
        for (_, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The TempDir field deletes the data directories after this.
    }
}

/// A four-letter-word command; bounded by socket timeouts.
fn four_letter(addr: &str, cmd: &str) -> std::io::Result<String> {
    let sock = addr
        .parse()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Prerequisites and the traffic helper.

fn check_prerequisites() -> PathBuf {
    for f in REQUIRED_FILES {
        assert!(
            Path::new(f).exists(),
            "Apache ZooKeeper is not installed: {f} is missing (install Debian's `zookeeper` \
             package)"
        );
    }
    let java = Command::new("java").arg("-version").output();
    assert!(
        java.as_ref().is_ok_and(|o| o.status.success()),
        "`java -version` failed ({java:?}): a Java runtime is needed to run Apache ZooKeeper"
    );
    let python = python_with_kazoo();
    for addr in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        assert!(
            TcpListener::bind((addr, 0)).is_ok(),
            "cannot bind {addr}: the test needs the loopback addresses 127.0.0.1-3"
        );
    }
    python
}

/// A Python with kazoo: `KILN_PYTHON`, else the `.venv` of this worktree or of the main one.
fn python_with_kazoo() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("KILN_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    candidates.push(manifest.join("../.venv/bin/python"));
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .current_dir(manifest)
        .output()
        && out.status.success()
    {
        let common = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(root) = common.parent() {
            candidates.push(root.join(".venv/bin/python"));
        }
    }
    for c in &candidates {
        if Command::new(c)
            .args(["-c", "import kazoo"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.clone();
        }
    }
    panic!("no Python with kazoo found (tried {candidates:?}); set KILN_PYTHON");
}

fn traffic_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apache_quorum_traffic.py")
}

fn spawn_traffic(python: &Path, cmd: &str, hosts: &str) -> Child {
    Command::new(python)
        .arg(traffic_script())
        .args([cmd, hosts])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start the traffic helper ({cmd}): {e}"))
}

/// The helper's stdout once it exits successfully.
fn traffic_output(child: Child, cmd: &str) -> String {
    let out = child.wait_with_output().expect("traffic helper output");
    assert!(
        out.status.success(),
        "traffic helper `{cmd}` failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run_traffic(python: &Path, cmd: &str, hosts: &str, limit: Duration) -> String {
    let mut child = spawn_traffic(python, cmd, hosts);
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("traffic helper `{cmd}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    traffic_output(child, cmd)
}

fn last_zxid_line(out: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix("last_zxid "))
        .and_then(|z| z.trim().parse().ok())
        .unwrap_or_else(|| panic!("no last_zxid in helper output:\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// Election: who leads, as Kiln's Election (observer mode) decides from Apache's notifications.

fn to_peer_state(s: ServerState) -> PeerState {
    match s {
        ServerState::Looking => PeerState::Looking,
        ServerState::Following => PeerState::Following,
        ServerState::Leading => PeerState::Leading,
        ServerState::Observing => PeerState::Observing,
    }
}

fn to_server_state(s: PeerState) -> ServerState {
    match s {
        PeerState::Looking => ServerState::Looking,
        PeerState::Following => ServerState::Following,
        PeerState::Leading => ServerState::Leading,
        PeerState::Observing => ServerState::Observing,
    }
}

fn elect(ens: &Ensemble, limit: Duration) -> i64 {
    let voters: BTreeSet<i64> = [1, 2].into();
    let observers: BTreeSet<i64> = [MY_ID].into();
    let mut election = Election::new(
        MY_ID,
        voters.clone(),
        observers,
        true,
        0,
        0,
        ElectionTiming::default(),
    )
    .expect("election config");
    let my_addr = format!("{}:{}", host(MY_ID), ens.port(MY_ID).election);
    let mut conns: BTreeMap<i64, (TcpStream, Vec<u8>)> = BTreeMap::new();
    for &sid in &voters {
        let addr = format!("{}:{}", host(sid), ens.port(sid).election);
        let mut s =
            TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect to the election port {addr}: {e}"));
        s.set_read_timeout(Some(POLL)).expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Our sid is larger than both of theirs, so this connection is the one that survives.
        s.write_all(&Hello::v1(MY_ID, &my_addr).encode())
            .expect("send the election header");
        conns.insert(sid, (s, Vec::new()));
    }
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut seen = Vec::new();
    let mut outs: VecDeque<Out> = election.start(now()).into();
    loop {
        while let Some(out) = outs.pop_front() {
            match out {
                Out::Send { to, notice } => {
                    let n = Notification {
                        state: to_peer_state(notice.state),
                        leader: notice.leader,
                        zxid: notice.zxid,
                        election_epoch: notice.election_epoch,
                        peer_epoch: notice.peer_epoch,
                        version: wire::NOTIFICATION_VERSION,
                        // Never a config version newer than the ensemble's (static: 0).
                        config: Some("version=0".into()),
                    };
                    let (s, _) = conns.get_mut(&to).expect("a voter");
                    s.write_all(&wire::encode_frame(&n.encode()))
                        .unwrap_or_else(|e| panic!("send a notification to {to}: {e}"));
                }
                Out::Decided {
                    state,
                    vote,
                    support,
                } => {
                    println!(
                        "election: decided {state:?} under leader {} (support {support:?}); \
                         notifications received: {seen:#?}",
                        vote.leader
                    );
                    assert_eq!(state, ServerState::Observing, "an observer ends OBSERVING");
                    return vote.leader;
                }
            }
        }
        assert!(
            start.elapsed() < limit,
            "no election decision within {limit:?}; notifications received: {seen:#?}"
        );
        for (&sid, (s, buf)) in &mut conns {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => panic!("server {sid} closed the election connection"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read the election connection of {sid}: {e}"),
            }
            while let Some((payload, used)) =
                wire::decode_frame(buf).unwrap_or_else(|e| panic!("frame from {sid}: {e}"))
            {
                let n = Notification::decode(payload)
                    .unwrap_or_else(|e| panic!("notification from {sid}: {e}"));
                let notice = Notice {
                    state: to_server_state(n.state),
                    leader: n.leader,
                    zxid: n.zxid,
                    election_epoch: n.election_epoch,
                    peer_epoch: n.peer_epoch,
                };
                seen.push((sid, n));
                buf.drain(..used);
                outs.extend(election.receive(now(), sid, notice));
            }
        }
        if election.next_deadline_ms().is_some_and(|d| now() >= d) {
            outs.extend(election.tick(now()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quorum port: zab::Msg <-> QuorumPacket.

/// The leader's packet as a `Msg` (Kiln's own mapping, `quorum::packets`); `snap` is the stream
/// read after a SNAP packet.
fn from_packet(p: QuorumPacket, snap: Option<Vec<u8>>) -> Msg {
    match packets::from_leader(p).expect("a packet a leader sends") {
        Msg::Snap { zxid, .. } => Msg::Snap {
            zxid,
            stream: Rc::from(snap.expect("SNAP stream")),
        },
        m => m,
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: a Learner, its socket, its (memory-only) log and its ZkState.

/// Per-kind counts of the txns the observer applied.
type Kinds = BTreeMap<&'static str, usize>;

struct Observer {
    learner: Learner,
    stream: TcpStream,
    buf: Vec<u8>,
    start: Instant,
    state: ZkState,
    /// The txn log: no disk in this test, so a txn counts as durable once its batch of effects
    /// has been performed (see `perform`).
    log: Vec<(i64, Rc<[u8]>)>,
    sync_kind: Option<&'static str>,
    /// The SNAP this observer installed (its zxid and stream); `log` holds what came after it.
    snap: Option<(i64, Rc<[u8]>)>,
    snap_nodes: usize,
    up_to_date: bool,
    session_requested: bool,
    session_closed: bool,
    txns_applied: usize,
    digests_checked: usize,
    txns_without_digest: usize,
    kinds: Kinds,
    packets_in: BTreeMap<&'static str, usize>,
}

fn state_config() -> StateConfig {
    StateConfig {
        extended_types: true,
        server_id: MY_ID,
    }
}

impl Observer {
    /// Connects to `leader` as a learner that has `persisted` on disk and `state` in memory.
    fn connect(ens: &Ensemble, leader: i64, persisted: Persisted, state: ZkState) -> Self {
        let addr = format!("{}:{}", host(leader), ens.port(leader).quorum);
        let stream =
            TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect to the leader's quorum port {addr}: {e}"));
        stream.set_read_timeout(Some(POLL)).expect("timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let timing = Timing {
            tick_ms: TICK_MS,
            init_limit: INIT_LIMIT,
            sync_limit: SYNC_LIMIT,
        };
        let learner = Learner::new(MY_ID, leader, LearnerKind::Observer, timing, persisted, 0);
        let mut o = Observer {
            learner,
            stream,
            buf: Vec::new(),
            start: Instant::now(),
            state,
            log: Vec::new(),
            sync_kind: None,
            snap: None,
            snap_nodes: 0,
            up_to_date: false,
            session_requested: false,
            session_closed: false,
            txns_applied: 0,
            digests_checked: 0,
            txns_without_digest: 0,
            kinds: Kinds::new(),
            packets_in: BTreeMap::new(),
        };
        let first = o.learner.start();
        o.perform(first);
        o
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn send(&mut self, msg: &Msg) {
        let bytes = packets::to_packet(msg).to_bytes();
        self.stream
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("send {msg:?} to the leader: {e}"));
    }

    /// Reads what the socket has within one poll interval; false if nothing came.
    fn read_some(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!(
                "the leader closed the quorum connection (learner applied {:#x})",
                self.learner.applied()
            ),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("read the quorum connection: {e}"),
        }
    }

    /// The raw SNAP stream after a SNAP packet: as many bytes as Kiln's SnapDecoder consumes up
    /// to and including the signature; what follows stays in the buffer (the next packets).
    fn read_snap_stream(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut dec = SnapDecoder::new(SnapLimits::new(FIELD_MAX));
        let mut raw = Vec::new();
        loop {
            let used = dec
                .feed(&self.buf)
                .unwrap_or_else(|e| panic!("SNAP stream after {} bytes: {e}", raw.len()));
            raw.extend(self.buf.drain(..used));
            if dec.is_done() {
                let contents = dec.finish().expect("a finished stream");
                println!(
                    "SNAP stream: {} bytes, {} sessions, {} nodes",
                    raw.len(),
                    contents.sessions.len(),
                    contents.nodes.len()
                );
                return raw;
            }
            assert!(
                Instant::now() < deadline,
                "the SNAP stream did not complete within {limit:?} ({} bytes so far)",
                raw.len()
            );
            self.read_some();
        }
    }

    /// Handles every whole packet in the buffer.
    fn handle_packets(&mut self) {
        loop {
            let Some((p, used)) = QuorumPacket::decode(&self.buf, FIELD_MAX)
                .unwrap_or_else(|e| panic!("packet from the leader: {e}"))
            else {
                return;
            };
            self.buf.drain(..used);
            let name = packet::name(p.kind).unwrap_or("unknown");
            *self.packets_in.entry(name).or_default() += 1;
            let snap = if p.kind == packet::SNAP {
                Some(self.read_snap_stream(Duration::from_secs(10)))
            } else {
                None
            };
            match p.kind {
                packet::SNAP => self.sync_kind = Some("SNAP"),
                packet::DIFF => self.sync_kind = Some("DIFF"),
                packet::TRUNC => self.sync_kind = Some("TRUNC"),
                _ => {}
            }
            let msg = from_packet(p, snap);
            let now = self.now();
            let effects = self.learner.receive(now, msg);
            self.perform(effects);
        }
    }

    /// Performs effects in order. `Append` keeps the txn in `log`; once the whole batch is done,
    /// `durable` reports the appended txns durable (this test has no disk: a real shell reports
    /// it after its group commit), and the effects that releases are performed in turn.
    fn perform(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        loop {
            let mut appended = None;
            while let Some(e) = queue.pop_front() {
                match e {
                    Effect::Send { to, msg } => {
                        assert_eq!(to, self.learner.leader(), "a learner talks to its leader");
                        self.send(&msg);
                    }
                    // No disk: the epochs live in the Learner only.
                    Effect::SaveEpochs { .. } => {}
                    Effect::Append { zxid, txn } => {
                        self.log.push((zxid, txn));
                        appended = Some(zxid);
                    }
                    Effect::Truncate { zxid } => {
                        assert!(
                            self.state.last_zxid() <= zxid,
                            "TRUNC {zxid:#x} below the applied {:#x}",
                            self.state.last_zxid()
                        );
                        self.log.retain(|(z, _)| *z <= zxid);
                    }
                    Effect::InstallSnapshot { zxid, stream } => {
                        self.install(zxid, &stream);
                        self.snap = Some((zxid, stream));
                    }
                    Effect::Commit { zxid, txn } => self.apply(zxid, &txn),
                    Effect::Serving { epoch } => {
                        println!("observer: UPTODATE, serving in epoch {epoch}");
                        self.up_to_date = true;
                    }
                    Effect::PingFromLeader => {
                        let touches = if self.session_requested && !self.session_closed {
                            vec![(MY_SESSION, MY_SESSION_TIMEOUT_MS)]
                        } else {
                            Vec::new()
                        };
                        queue.push_back(self.learner.ping_reply(touches));
                    }
                    Effect::SyncDone | Effect::Revalidated { .. } => {}
                    Effect::Lost(why) => panic!(
                        "the observer lost the leader: {why:?} (applied {:#x})",
                        self.learner.applied()
                    ),
                    other => panic!("a learner does not emit {other:?}"),
                }
            }
            match appended {
                Some(z) => queue.extend(self.learner.durable(z)),
                None => return,
            }
        }
    }

    fn install(&mut self, zxid: i64, stream: &[u8]) {
        let (contents, used) = decode_snap(stream, SnapLimits::new(FIELD_MAX))
            .unwrap_or_else(|e| panic!("SNAP {zxid:#x}: {e}"));
        assert_eq!(used, stream.len(), "the SNAP stream is consumed exactly");
        self.snap_nodes = contents.nodes.len();
        let tree = DataTree::from_nodes(contents.nodes);
        let mut sessions = Sessions::default();
        for (id, meta) in contents.sessions {
            sessions.insert(id, meta);
        }
        self.state = ZkState::restore(state_config(), 0, tree, sessions, zxid);
        self.log.clear();
        println!(
            "observer: installed the SNAP at {zxid:#x}, {} nodes, digest {:#x}",
            self.snap_nodes,
            tree_digest(&self.state.tree)
        );
    }

    fn apply(&mut self, zxid: i64, bytes: &[u8]) {
        let at = decode_apache_txn(bytes, FIELD_MAX)
            .unwrap_or_else(|e| panic!("txn {zxid:#x}: {e}; bytes {}", hex(bytes)));
        assert_eq!(at.txn.zxid, zxid, "the txn header's zxid is the packet's");
        if let TxnOp::CloseSession = at.txn.op {
            let kiln: BTreeSet<String> = self
                .state
                .tree
                .ephemerals_of(at.txn.session)
                .into_iter()
                .collect();
            if let Some(paths) = &at.close_paths {
                let apache: BTreeSet<String> = paths.iter().cloned().collect();
                assert_eq!(
                    kiln, apache,
                    "closeSession {zxid:#x}: Kiln would delete other ephemerals than Apache"
                );
            }
            if !kiln.is_empty() {
                *self
                    .kinds
                    .entry("closeSession deleting ephemerals")
                    .or_default() += 1;
            }
        }
        for k in classify(&at) {
            *self.kinds.entry(k).or_default() += 1;
        }
        let applied = self
            .state
            .apply(&at.txn)
            .unwrap_or_else(|| panic!("txn {zxid:#x} at or below the state's zxid"));
        self.txns_applied += 1;
        assert!(
            !applied.diverged(),
            "txn {zxid:#x} did not apply (error {}): {:?}",
            applied.err,
            at.txn
        );
        match at.digest {
            Some(d) => {
                let kiln = tree_digest(&self.state.tree);
                assert!(
                    kiln == d.tree_digest,
                    "digest mismatch after txn {zxid:#x} (header type {}): Apache {:#x}, Kiln \
                     {kiln:#x}\ntxn: {:?}\nbytes: {}",
                    at.header_type,
                    d.tree_digest,
                    at.txn,
                    hex(bytes)
                );
                self.digests_checked += 1;
            }
            None => {
                // ZooKeeper's PrepRequestProcessor attaches the digest to every txn it prepared,
                // but not to the ErrorTxn a failed single request becomes.
                assert_eq!(
                    at.header_type,
                    op::ERROR,
                    "txn {zxid:#x} carries no digest: {:?}",
                    at.txn
                );
                self.txns_without_digest += 1;
            }
        }
    }

    /// Pumps the connection until `done` holds, at most `limit`; also while `child` runs, if
    /// any (then `done` is checked only once it has exited).
    fn pump_until(
        &mut self,
        what: &str,
        limit: Duration,
        mut child: Option<&mut Child>,
        done: impl Fn(&Observer) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let child_running = match child.as_deref_mut() {
                Some(c) => c.try_wait().expect("try_wait").is_none(),
                None => false,
            };
            if !child_running && done(self) {
                return;
            }
            if Instant::now() > deadline {
                if let Some(c) = child {
                    let _ = c.kill();
                }
                panic!(
                    "{what}: not within {limit:?} (applied {:#x}, up to date {}, packets {:?})",
                    self.learner.applied(),
                    self.up_to_date,
                    self.packets_in
                );
            }
            if self.read_some() {
                self.handle_packets();
            }
            if self.up_to_date && !self.session_requested {
                self.session_requested = true;
                let fwd = self
                    .learner
                    .forward(
                        MY_SESSION,
                        0,
                        op::CREATE_SESSION,
                        MY_SESSION_TIMEOUT_MS.to_be_bytes().to_vec(),
                    )
                    .expect("a serving learner forwards");
                self.perform(vec![fwd]);
            }
            let now = self.now();
            let effects = self.learner.tick(now);
            self.perform(effects);
        }
    }

    fn close_session(&mut self) {
        let fwd = self
            .learner
            .forward(MY_SESSION, 1, op::CLOSE_SESSION, Vec::new())
            .expect("a serving learner forwards");
        self.session_closed = true;
        self.perform(vec![fwd]);
    }
}

/// The state a learner rebuilds from its snapshot (if any) and its log, as after a restart.
/// The digests of these txns were checked when they first arrived.
fn replay(snap: Option<&(i64, Rc<[u8]>)>, txns: &[(i64, Rc<[u8]>)]) -> ZkState {
    let mut state = match snap {
        None => ZkState::new(state_config(), 0),
        Some((zxid, stream)) => {
            let (contents, _) =
                decode_snap(stream, SnapLimits::new(FIELD_MAX)).expect("the SNAP decoded before");
            let mut sessions = Sessions::default();
            for (id, meta) in contents.sessions {
                sessions.insert(id, meta);
            }
            let tree = DataTree::from_nodes(contents.nodes);
            ZkState::restore(state_config(), 0, tree, sessions, *zxid)
        }
    };
    for (zxid, bytes) in txns {
        let at = decode_apache_txn(bytes, FIELD_MAX).expect("the txn decoded before");
        let applied = state.apply(&at.txn).expect("txns in zxid order");
        assert!(!applied.diverged(), "replaying {zxid:#x}");
    }
    state
}

/// The kinds a txn counts as (a multi also counts its sub-ops).
fn classify(at: &ApacheTxn) -> Vec<&'static str> {
    let mut out = Vec::new();
    match &at.txn.op {
        TxnOp::Multi(ops) => {
            if ops.iter().all(|o| matches!(o, TxnOp::Error { .. })) {
                out.push("multi (failed)");
            } else {
                out.push("multi (successful)");
                for o in ops {
                    op_kinds(o, at.txn.session, at.header_type, &mut out);
                }
            }
        }
        o => op_kinds(o, at.txn.session, at.header_type, &mut out),
    }
    out
}

fn op_kinds(o: &TxnOp, session: i64, header_type: i32, out: &mut Vec<&'static str>) {
    match o {
        TxnOp::CreateSession { .. } => out.push("createSession"),
        TxnOp::CloseSession => out.push("closeSession"),
        TxnOp::Create { path, owner, .. } => {
            out.push("create");
            if header_type == op::CREATE_CONTAINER || *owner == kiln_zk::tree::CONTAINER_OWNER {
                out.push("create container");
            }
            if *owner == session && session != 0 {
                out.push("create ephemeral");
            }
            let name = path.rsplit('/').next().unwrap_or("");
            if name.len() >= 10 && name[name.len() - 10..].bytes().all(|b| b.is_ascii_digit()) {
                out.push("create sequential");
            }
        }
        TxnOp::Delete { .. } => out.push(if header_type == op::DELETE_CONTAINER {
            "deleteContainer"
        } else {
            "delete"
        }),
        TxnOp::SetData { .. } => out.push("setData"),
        TxnOp::SetAcl { .. } => out.push("setACL"),
        TxnOp::Check { .. } => out.push("check"),
        TxnOp::Error { .. } => out.push("error"),
        TxnOp::Multi(_) => out.push("nested multi"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").expect("string");
        s
    })
}

// ---------------------------------------------------------------------------------------------
// The final comparison.

/// The `/kiln` subtree as the observer holds it, in the helper's `dump` format.
fn kiln_dump(state: &ZkState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (path, node) in state.tree.sorted_nodes() {
        if path != "/kiln" && !path.starts_with("/kiln/") {
            continue;
        }
        let s = node.stat();
        let data = match &node.data {
            None => "-".to_string(),
            Some(d) if d.is_empty() => ".".to_string(),
            Some(d) => hex(d),
        };
        let acl: Vec<String> = node
            .acl
            .iter()
            .map(|a| format!("{}:{}:{}", a.perms, a.id.scheme, a.id.id))
            .collect();
        let line = [
            path.to_string(),
            data,
            s.czxid.to_string(),
            s.mzxid.to_string(),
            s.pzxid.to_string(),
            s.ctime.to_string(),
            s.mtime.to_string(),
            s.version.to_string(),
            s.cversion.to_string(),
            s.aversion.to_string(),
            s.ephemeral_owner.to_string(),
            s.num_children.to_string(),
            s.data_length.to_string(),
            acl.join(","),
        ]
        .join("\t");
        out.insert(path.to_string(), line);
    }
    out
}

fn apache_dump(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter(|l| l.starts_with('/'))
        .map(|l| {
            let path = l.split('\t').next().expect("a path").to_string();
            (path, l.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn kiln_observer_follows_an_apache_ensemble() {
    let python = check_prerequisites();
    let mut ens = Ensemble::start();
    ens.wait_serving(Duration::from_secs(40));

    // Writes before the observer exists: it has to learn them from the sync.
    let pre = run_traffic(&python, "pre", &ens.hosts(), Duration::from_secs(30));
    let pre_zxid = last_zxid_line(&pre);
    println!("before the observer: last write {pre_zxid:#x}");

    let leader = elect(&ens, Duration::from_secs(20));
    assert!(
        [1, 2].contains(&leader),
        "the election chose {leader}, not an Apache server"
    );
    let srvr = four_letter(&ens.client_addr(leader), "srvr").expect("srvr of the leader");
    assert!(
        srvr.contains("Mode: leader"),
        "Kiln's election chose {leader}, but it says:\n{srvr}"
    );

    let fresh = Persisted {
        accepted_epoch: 0,
        current_epoch: 0,
        last_zxid: 0,
    };
    let mut obs = Observer::connect(&ens, leader, fresh, ZkState::new(state_config(), 0));
    obs.pump_until("UPTODATE", Duration::from_secs(15), None, |o| {
        o.up_to_date && o.learner.applied() >= pre_zxid
    });
    println!(
        "observer: synchronised by {:?}, applied {:#x}",
        obs.sync_kind,
        obs.learner.applied()
    );
    // The forwarded createSession comes back as an INFORM.
    obs.pump_until("our createSession", Duration::from_secs(10), None, |o| {
        o.state.sessions.get(MY_SESSION).is_some()
    });

    // Every kind of write, while the observer serves.
    let mut post = spawn_traffic(&python, "post", &ens.hosts());
    obs.pump_until(
        "the post traffic",
        Duration::from_secs(45),
        Some(&mut post),
        |_| true,
    );
    let post_out = traffic_output(post, "post");
    let post_zxid = last_zxid_line(&post_out);
    println!("traffic helper:\n{post_out}");
    obs.pump_until("the last write", Duration::from_secs(10), None, |o| {
        o.learner.applied() >= post_zxid
    });

    obs.close_session();
    obs.pump_until("our closeSession", Duration::from_secs(10), None, |o| {
        o.state.sessions.get(MY_SESSION).is_none()
    });
    let final_zxid = ens.zxid_of(leader);
    obs.pump_until(
        "the leader's last zxid",
        Duration::from_secs(10),
        None,
        |o| o.learner.applied() >= final_zxid,
    );

    let kiln = kiln_dump(&obs.state);

    // The tree: what Apache serves under /kiln, read while the observer keeps answering pings.
    // The helper's own session (createSession, closeSession) is the only write meanwhile.
    let mut dump = spawn_traffic(&python, "dump", &ens.client_addr(leader));
    obs.pump_until("the dump", Duration::from_secs(30), Some(&mut dump), |_| {
        true
    });
    let apache = apache_dump(&traffic_output(dump, "dump"));
    let final_zxid = ens.zxid_of(leader);
    obs.pump_until("the dump's session", Duration::from_secs(10), None, |o| {
        o.learner.applied() >= final_zxid
    });
    assert_eq!(
        kiln,
        kiln_dump(&obs.state),
        "only session txns came after the traffic"
    );

    println!(
        "observer: sync {:?} ({} SNAP nodes), {} txns with a digest checked, {} without, \
         applied {:#x}\npackets received: {:?}\ntxn kinds: {:#?}",
        obs.sync_kind,
        obs.snap_nodes,
        obs.digests_checked,
        obs.txns_without_digest,
        obs.learner.applied(),
        obs.packets_in,
        obs.kinds
    );

    assert!(obs.up_to_date, "the observer reached UPTODATE");
    assert!(obs.sync_kind.is_some(), "the leader chose a sync");
    assert_eq!(
        obs.state.last_zxid(),
        final_zxid,
        "the observer applied up to the leader's zxid"
    );
    let kiln_paths: BTreeSet<&String> = kiln.keys().collect();
    let apache_paths: BTreeSet<&String> = apache.keys().collect();
    assert_eq!(kiln_paths, apache_paths, "the /kiln paths differ");
    for (path, line) in &apache {
        assert_eq!(
            &kiln[path], line,
            "{path}: Kiln's node (left) differs from Apache's (right); fields: path data czxid \
             mzxid pzxid ctime mtime version cversion aversion ephemeralOwner numChildren \
             dataLength acl"
        );
    }
    assert!(
        apache.len() >= 15,
        "the dump holds the test's nodes: {apache:#?}"
    );
    // Every txn but the error txns carries a digest (zookeeper.digest.enabled defaults to true).
    assert_eq!(
        obs.txns_without_digest,
        obs.kinds.get("error").copied().unwrap_or(0),
        "txns without a digest"
    );
    assert!(obs.digests_checked >= 40, "{} digests", obs.digests_checked);
    let at_least: [(&str, usize); 13] = [
        ("create", 15),
        ("create ephemeral", 4),
        ("create sequential", 5),
        ("create container", 1),
        ("setData", 6),
        ("setACL", 3),
        ("delete", 3),
        ("deleteContainer", 1),
        ("multi (successful)", 2),
        ("multi (failed)", 1),
        ("error", 3),
        ("createSession", 3),
        ("closeSession deleting ephemerals", 1),
    ];
    for (kind, n) in at_least {
        let have = obs.kinds.get(kind).copied().unwrap_or(0);
        assert!(
            have >= n,
            "only {have} txns of kind {kind:?} applied, expected at least {n}: {:#?}",
            obs.kinds
        );
    }
    assert!(
        obs.kinds.get("closeSession").copied().unwrap_or(0) >= 3,
        "closeSession txns: {:#?}",
        obs.kinds
    );

    // A second join, as this server after a restart with only the first half of its log: the
    // leader's committed log covers the rest, so the sync is a DIFF with PROPOSAL/COMMIT pairs.
    let first_digests = obs.digests_checked;
    let first_txns = obs.txns_applied;
    let snap = obs.snap.clone();
    let log = obs.log.clone();
    drop(obs);
    assert!(log.len() >= 20, "the log holds {} txns", log.len());
    let kept = log.len() / 2;
    let mid = log[kept - 1].0;
    let epoch = wire::epoch_of(final_zxid);
    let restarted = Persisted {
        accepted_epoch: epoch,
        current_epoch: epoch,
        last_zxid: mid,
    };
    let mut again = Observer::connect(&ens, leader, restarted, replay(snap.as_ref(), &log[..kept]));
    // Its session is closed already; it only follows.
    again.session_requested = true;
    again.session_closed = true;
    again.pump_until("the second sync", Duration::from_secs(15), None, |o| {
        o.up_to_date && o.learner.applied() >= final_zxid
    });
    println!(
        "second join from {mid:#x}: sync {:?}, {} txns, {} digests, packets {:?}",
        again.sync_kind, again.txns_applied, again.digests_checked, again.packets_in
    );
    assert_eq!(
        again.sync_kind,
        Some("DIFF"),
        "a learner inside the committed log"
    );
    assert_eq!(again.state.last_zxid(), final_zxid);
    assert_eq!(
        again.packets_in.get("PROPOSAL").copied().unwrap_or(0),
        log.len() - kept,
        "one PROPOSAL per missing txn"
    );
    assert_eq!(again.txns_applied, log.len() - kept);
    assert!(again.digests_checked > 0);
    assert_eq!(kiln_dump(&again.state), kiln, "the DIFF-synced tree");
    println!(
        "PASS: {} digests compared ({first_digests} after the SNAP sync over {first_txns} txns, \
         {} after the DIFF sync over {} txns)",
        first_digests + again.digests_checked,
        again.digests_checked,
        again.txns_applied
    );
}
