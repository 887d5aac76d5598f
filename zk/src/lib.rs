//! kiln-zk: a ZooKeeper wire-compatible server.
pub mod acl;
pub mod jute;
pub mod proto;
pub mod session;
pub mod state;
pub mod tree;
pub mod txn;
pub mod watch;
