//! End-to-end tests over TCP with a small blocking jute client: handshake, CRUD, watches,
//! ephemerals, session expiry, restart durability, four-letter words and hostile frames.

// Real processes and sockets on real time: the clock seam is for the servers' code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_zk::config::ZkConfig;
use kiln_zk::jute::{Reader, Writer};
use kiln_zk::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, ReplyHeader, Request, RequestHeader, Stat,
    WatcherEvent, op,
};
use kiln_zk::server::ServerHandle;

fn config(dir: &Path) -> ZkConfig {
    let mut c = ZkConfig::default_embedded(dir);
    c.client_port = 0;
    c.tick_time_ms = 100;
    c.min_session_timeout_ms = 200;
    c.max_session_timeout_ms = 10_000;
    c.four_letter_whitelist = ["*".to_string()].into_iter().collect();
    c
}

struct Client {
    s: TcpStream,
    session: i64,
    passwd: Vec<u8>,
    xid: i32,
    events: Vec<WatcherEvent>,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn send_frame(s: &mut TcpStream, body: Writer) {
    s.write_all(&body.finish_frame()).unwrap();
}

impl Client {
    fn connect(
        addr: SocketAddr,
        session: i64,
        passwd: Vec<u8>,
        timeout_ms: i32,
    ) -> Result<Client, ConnectResponse> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = Writer::framed();
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms,
            session_id: session,
            passwd,
            read_only: Some(false),
        }
        .encode(&mut w);
        send_frame(&mut s, w);
        let resp = ConnectResponse::decode(&mut Reader::new(&read_frame(&mut s).unwrap(), 1 << 20))
            .unwrap();
        if resp.session_id == 0 {
            return Err(resp);
        }
        Ok(Client {
            s,
            session: resp.session_id,
            passwd: resp.passwd,
            xid: 0,
            events: Vec::new(),
        })
    }

    /// Sends a request and returns (header, body bytes) of its reply, collecting notifications.
    fn call(&mut self, req: &Request) -> (ReplyHeader, Vec<u8>) {
        self.xid += 1;
        let mut w = Writer::framed();
        RequestHeader {
            xid: self.xid,
            op: req.opcode(),
        }
        .encode(&mut w);
        req.encode(&mut w);
        send_frame(&mut self.s, w);
        loop {
            let frame = read_frame(&mut self.s).unwrap();
            let mut r = Reader::new(&frame, 1 << 20);
            let h = ReplyHeader::decode(&mut r).unwrap();
            let rest = frame[16..].to_vec();
            if h.xid == -1 {
                self.events
                    .push(WatcherEvent::decode(&mut Reader::new(&rest, 1 << 20)).unwrap());
                continue;
            }
            assert_eq!(h.xid, self.xid, "replies come back in request order");
            return (h, rest);
        }
    }

    fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<String, i32> {
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            flags,
            ttl: -1,
        };
        let (h, body) = self.call(&Request::Create {
            op: op::CREATE,
            req,
        });
        if h.err != 0 {
            return Err(h.err);
        }
        Ok(Reader::new(&body, 1 << 20).read_ustring().unwrap())
    }

    fn get(&mut self, path: &str, watch: bool) -> Result<(Option<Vec<u8>>, Stat), i32> {
        let (h, body) = self.call(&Request::GetData {
            path: path.into(),
            watch,
        });
        if h.err != 0 {
            return Err(h.err);
        }
        let mut r = Reader::new(&body, 1 << 20);
        Ok((r.read_buffer().unwrap(), Stat::decode(&mut r).unwrap()))
    }

    fn set(&mut self, path: &str, data: &[u8], version: i32) -> Result<Stat, i32> {
        let (h, body) = self.call(&Request::SetData {
            path: path.into(),
            data: Some(data.to_vec()),
            version,
        });
        if h.err != 0 {
            return Err(h.err);
        }
        Ok(Stat::decode(&mut Reader::new(&body, 1 << 20)).unwrap())
    }

    fn exists(&mut self, path: &str, watch: bool) -> i32 {
        self.call(&Request::Exists {
            path: path.into(),
            watch,
        })
        .0
        .err
    }

    fn close(mut self) {
        let mut w = Writer::framed();
        RequestHeader {
            xid: 99,
            op: op::CLOSE_SESSION,
        }
        .encode(&mut w);
        send_frame(&mut self.s, w);
        let _ = read_frame(&mut self.s);
    }
}

#[test]
fn create_get_set_delete_with_exact_stats() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerHandle::start(config(dir.path())).unwrap();
    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    assert_eq!(c.create("/a", b"hello", 0), Ok("/a".into()));
    assert_eq!(c.create("/a", b"x", 0), Err(-110));
    let (data, stat) = c.get("/a", false).unwrap();
    assert_eq!(data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        (stat.version, stat.data_length, stat.num_children),
        (0, 5, 0)
    );
    assert_eq!(stat.czxid, stat.mzxid);
    let s2 = c.set("/a", b"bye", 0).unwrap();
    assert_eq!((s2.version, s2.czxid), (1, stat.czxid));
    assert!(s2.mzxid > stat.mzxid);
    assert_eq!(c.set("/a", b"z", 0), Err(-103));
    assert_eq!(c.create("/a/s-", b"", 2), Ok("/a/s-0000000000".into()));
    let (h, _) = c.call(&Request::Delete {
        path: "/a".into(),
        version: -1,
    });
    assert_eq!(h.err, -111);
    let (h, _) = c.call(&Request::Unimplemented(9999));
    assert_eq!(h.err, -6, "unknown opcodes get UNIMPLEMENTED");
    // Then the connection closes, as the reference server closes it; the session lives on.
    let mut rest = Vec::new();
    let n = std::io::Read::read_to_end(&mut c.s, &mut rest).unwrap_or(0);
    assert_eq!(n, 0, "nothing after UNIMPLEMENTED, then end of stream");
    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    assert_eq!(c.exists("/a", false), 0);
    c.close();
    srv.stop().unwrap();
}

#[test]
fn watches_fire_and_ephemerals_vanish_with_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerHandle::start(config(dir.path())).unwrap();
    let mut a = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    let mut b = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    a.create("/e", b"", 1).unwrap();
    assert_eq!(b.exists("/e", true), 0);
    assert_eq!(b.exists("/new", true), -101);
    a.create("/new", b"", 0).unwrap();
    a.close();
    // b sees both events before the reply to its next request (sync flushes them).
    b.call(&Request::Sync { path: "/".into() });
    let kinds: Vec<(i32, String)> = b.events.iter().map(|e| (e.kind, e.path.clone())).collect();
    assert_eq!(kinds, vec![(1, "/new".to_string()), (2, "/e".to_string())]);
    assert_eq!(b.exists("/e", false), -101);
    srv.stop().unwrap();
}

#[test]
fn sessions_expire_and_reconnects_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerHandle::start(config(dir.path())).unwrap();
    let mut a = Client::connect(srv.addr(), 0, vec![0; 16], 300).unwrap();
    a.create("/eph", b"", 1).unwrap();
    let (sid, pw) = (a.session, a.passwd.clone());
    // Reconnect with a wrong password is refused.
    assert!(Client::connect(srv.addr(), sid, vec![1; 16], 300).is_err());
    // Reconnect with the right one takes the session over.
    let mut a2 = Client::connect(srv.addr(), sid, pw.clone(), 300).unwrap();
    assert_eq!(a2.exists("/eph", false), 0);
    drop(a);
    drop(a2);
    let mut b = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.exists("/eph", false) == 0 {
        assert!(
            Instant::now() < deadline,
            "ephemeral not removed after session expiry"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        Client::connect(srv.addr(), sid, pw, 300).is_err(),
        "expired session cannot be resumed"
    );
    srv.stop().unwrap();
}

#[test]
fn writes_and_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snap_count = 10;
    let srv = ServerHandle::start(cfg.clone()).unwrap();
    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 10_000).unwrap();
    c.create("/d", b"", 0).unwrap();
    for i in 0..40 {
        c.create(&format!("/d/n{i}"), format!("v{i}").as_bytes(), 0)
            .unwrap();
    }
    c.set("/d/n3", b"changed", -1).unwrap();
    c.create("/d/eph", b"", 1).unwrap();
    let (sid, pw) = (c.session, c.passwd.clone());
    drop(c);
    srv.stop().unwrap();
    assert!(
        std::fs::read_dir(dir.path().join("kiln-zk-snapshots"))
            .unwrap()
            .count()
            > 0,
        "a snapshot was taken"
    );

    let srv = ServerHandle::start(cfg).unwrap();
    let mut c = Client::connect(srv.addr(), sid, pw, 10_000).expect("session survives a restart");
    let (data, stat) = c.get("/d/n3", false).unwrap();
    assert_eq!(data.as_deref(), Some(&b"changed"[..]));
    assert_eq!(stat.version, 1);
    assert_eq!(c.get("/d", false).unwrap().1.num_children, 41);
    assert_eq!(c.exists("/d/eph", false), 0);
    c.close();
    srv.stop().unwrap();
}

fn snapshot_ids(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("kiln-zk-snapshots"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    v.sort();
    v
}

#[test]
fn autopurge_runs_on_its_timer_and_keeps_what_recovery_needs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snap_count = 10;
    cfg.purge_interval_hours = 0;
    let srv = ServerHandle::start(cfg.clone()).unwrap();
    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 10_000).unwrap();
    c.create("/p", b"", 0).unwrap();
    let mut i = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot_ids(dir.path()).len() < 6 {
        assert!(Instant::now() < deadline, "snapshots are taken");
        c.create(&format!("/p/n{i}"), format!("v{i}").as_bytes(), 0)
            .unwrap();
        i += 1;
    }
    c.close();
    srv.stop().unwrap();
    // purgeInterval 0: nothing was ever deleted.
    let before = snapshot_ids(dir.path());
    assert!(before.len() >= 6, "{before:?}");

    // With autopurge on, the first run comes at start-up: the newest 3 stay.
    cfg.purge_interval_hours = 1;
    cfg.snap_retain_count = 3;
    let srv = ServerHandle::start(cfg.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshot_ids(dir.path()).len() > 3 {
        assert!(Instant::now() < deadline, "autopurge ran at start-up");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        snapshot_ids(dir.path()),
        before[before.len() - 3..].to_vec()
    );
    srv.stop().unwrap();

    // Everything is still there after another restart.
    cfg.purge_interval_hours = 0;
    let srv = ServerHandle::start(cfg.clone()).unwrap();
    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 10_000).unwrap();
    assert_eq!(c.get("/p", false).unwrap().1.num_children, i);
    let last = i - 1;
    assert_eq!(
        c.get(&format!("/p/n{last}"), false).unwrap().0.as_deref(),
        Some(format!("v{last}").as_bytes())
    );
    c.close();
    srv.stop().unwrap();

    // Without the snapshots that the purged log relied on, start-up refuses instead of starting
    // from a partial state.
    for name in snapshot_ids(dir.path()) {
        std::fs::remove_file(dir.path().join("kiln-zk-snapshots").join(name)).unwrap();
    }
    let err = match ServerHandle::start(cfg) {
        Ok(_) => panic!("started without the snapshots the purged log needs"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("purged"), "{err}");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let first = ServerHandle::start(cfg.clone()).unwrap();
    let err = match ServerHandle::start(cfg.clone()) {
        Ok(_) => panic!("a second server started on the same dataDir"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("in use"), "{err}");
    // Another dataDir but the same dataLogDir is refused too.
    let other = tempfile::tempdir().unwrap();
    let mut shared_log = config(other.path());
    shared_log.data_log_dir = dir.path().to_path_buf();
    assert!(ServerHandle::start(shared_log).is_err());
    first.stop().unwrap();
    // Released on stop.
    ServerHandle::start(cfg).unwrap().stop().unwrap();
}

#[test]
fn four_letter_words_and_oversized_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.four_letter_whitelist = ["ruok".to_string(), "envi".to_string()]
        .into_iter()
        .collect();
    let srv = ServerHandle::start(cfg).unwrap();
    let ask = |cmd: &[u8]| {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(cmd).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert_eq!(ask(b"ruok"), "imok");
    assert!(ask(b"envi").contains("zookeeper.version=3.8.4-"));
    assert_eq!(
        ask(b"dump"),
        "dump is not executed because it is not in the whitelist.\n"
    );

    let mut c = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    c.s.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        c.s.read(&mut buf).unwrap_or(0),
        0,
        "an oversized frame closes the connection"
    );
    let mut d = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    assert_eq!(
        d.create("/still-serving", b"", 0),
        Ok("/still-serving".into())
    );
    srv.stop().unwrap();
}

#[test]
fn connections_per_ip_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_client_cnxns = 2;
    let srv = ServerHandle::start(cfg).unwrap();
    let a = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    let _b = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    let mut third = TcpStream::connect(srv.addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        third.read(&mut buf).unwrap_or(0),
        0,
        "the third connection from one IP is closed"
    );
    a.close();
    // A slot frees up once a connection goes away.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"ruok").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        if out == "imok" {
            break;
        }
        assert!(Instant::now() < deadline, "slot not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.stop().unwrap();
}

#[test]
fn digest_auth_and_acls_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerHandle::start(config(dir.path())).unwrap();
    let mut owner = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    let (h, _) = owner.call(&Request::Auth {
        kind: 0,
        scheme: "digest".into(),
        auth: b"u1:pw".to_vec(),
    });
    assert_eq!(h.err, 0);
    let acl = vec![Acl {
        perms: 31,
        id: kiln_zk::proto::Id::new("auth", ""),
    }];
    let req = CreateRequest {
        path: "/private".into(),
        data: Some(b"s".to_vec()),
        acl,
        flags: 0,
        ttl: -1,
    };
    let (h, _) = owner.call(&Request::Create {
        op: op::CREATE,
        req,
    });
    assert_eq!(h.err, 0);
    assert!(owner.get("/private", false).is_ok());
    let mut other = Client::connect(srv.addr(), 0, vec![0; 16], 5000).unwrap();
    assert_eq!(other.get("/private", false), Err(-102));
    assert_eq!(
        other.exists("/private", false),
        0,
        "exists needs no permission"
    );
    let (h, _) = other.call(&Request::Auth {
        kind: 0,
        scheme: "nope".into(),
        auth: vec![],
    });
    assert_eq!((h.xid, h.err), (other.xid, -115));
    srv.stop().unwrap();
}
