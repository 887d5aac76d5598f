//! kiln-zk
