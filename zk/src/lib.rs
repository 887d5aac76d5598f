//! kiln-zk: a ZooKeeper wire-compatible server (standalone).
//!
//! What it is: Apache ZooKeeper's client protocol (jute framing, the connect handshake, every
//! opcode clients of 3.4–3.9 send, exact error codes and Stat fields, watches including
//! persistent and recursive ones, ACLs with the world/auth/digest/ip schemes and a super digest,
//! containers, TTL nodes, four-letter words), configured from an unchanged `zoo.cfg`, with a
//! durable transaction log (a reply leaves only after its txn is fsynced, group-committed) and
//! snapshots.
//!
//! An ensemble's observer too: ZooKeeper's quorum protocol ([`quorum`], pure) and its I/O shell
//! (`observer.rs`, inside [`server`]) let it join an Apache ZooKeeper or Kiln ensemble.
//!
//! What it is not (yet): a voting ensemble member (follower or leader; such a configuration is
//! refused with a message), a reader of Apache ZooKeeper's on-disk files (Kiln keeps its own log and
//! snapshot formats), a SASL/Kerberos/TLS endpoint, or a quota enforcer (`/zookeeper/quota`
//! exists but limits are not checked).
//!
//! # Codemap
//! | module | role | I/O |
//! |---|---|---|
//! | [`jute`] | bounded big-endian codec primitives | none |
//! | [`proto`] | records, opcodes, error codes, request decoding, reply encoding | none |
//! | [`tree`] | znodes, Stat fields, ephemeral/container/TTL indexes, undo journal | none |
//! | [`acl`] | ACL schemes and permission checks | none |
//! | [`watch`] | one-shot and persistent watches, notification fan-out | none |
//! | [`session`] | replicated session table, expiry deadlines | none |
//! | [`txn`] | transactions (the unit of the log and of future replication) | none |
//! | [`state`] | the state machine: request → txn → apply → reply + notifications | none |
//! | [`snapshot`] | snapshot file format | none |
//! | [`datadir`] | data-dir lock, off-shard snapshot writes, autopurge | files |
//! | [`quorum`] | the quorum protocol: election, ZAB leader and learner, wire, txn records, digest, SNAP | none |
//! | [`config`] | `zoo.cfg` parsing and validation, `server.N` lines | reads the file and `myid` |
//! | [`fourlw`] | four-letter-word texts | none |
//! | [`server`] | sockets, log sequencer, snapshots, timers, the observer's quorum task: everything with I/O | all of it |
//!
//! # Running it
//! ```no_run
//! use kiln_engine::shutdown::Shutdown;
//! use kiln_zk::config::ZkConfig;
//! use kiln_zk::server;
//!
//! // `kiln up`: port 2181, data under ./kiln-data/zk, on its own thread, stopped by the
//! // process's shutdown token (or by `handle.stop()`).
//! let shutdown = Shutdown::new();
//! shutdown.install_signal_handlers().expect("signal handlers");
//! let handle = server::ServerHandle::start_with(ZkConfig::default_embedded("./kiln-data/zk"), shutdown.clone())?;
//! println!("ZooKeeper on {}", handle.addr());
//! handle.stop()?; // closes connections, flushes the log
//!
//! // `kiln zk`: block the current thread until SIGINT/SIGTERM.
//! let (config, _warnings) = ZkConfig::load("zoo.cfg".as_ref()).expect("valid zoo.cfg");
//! server::run(config, shutdown)?;
//! # Ok::<(), server::ZkError>(())
//! ```
pub mod acl;
pub mod config;
pub mod datadir;
pub mod fourlw;
pub mod jute;
pub mod proto;
pub mod quorum;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod state;
pub mod tree;
pub mod txn;
pub mod txnlog;
pub mod visibility;
pub mod watch;
