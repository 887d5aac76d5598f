//! kiln-zk: a ZooKeeper wire-compatible server.
pub mod jute;
pub mod proto;
