//! kiln-zk: a ZooKeeper wire-compatible server.
pub mod acl;
pub mod config;
pub mod fourlw;
pub mod jute;
pub mod proto;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod state;
pub mod tree;
pub mod txn;
pub mod watch;
