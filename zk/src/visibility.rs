//! What a client may see of writes that are not yet committed (on a single node: durable).
//!
//! The server applies a write to its tree when it sequences it (the leader's speculative state,
//! ZooKeeper's `outstandingChanges`: sequential names and versions must see in-flight writes),
//! but nothing of it may reach a client before the write is committed: a crash could take it
//! back. This module holds that rule; it is pure, and the server and the simulator share it.
//!
//! 1. [`Dirty::mark`] records, for each sequenced txn, the paths whose reads it changes (the
//!    node and its parent; every path for closeSession, which deletes ephemerals anywhere).
//! 2. [`Dirty::read_wait`]: a read's reply (and the watch it set) waits until the newest write
//!    to any path it looks at is committed. A read of clean paths answers at once: its answer is
//!    the same in the committed and the speculative tree.
//! 3. [`reply_zxid`]: a reply's header carries a committed zxid only, so a client never records
//!    a zxid a crash could take back (it would then be refused by the restarted server, whose
//!    last zxid is lower than the one the client saw), and never one below its previous reply's.
//!
//! Notifications and write replies wait for their own txn's zxid (see the server's dispatch).

use std::collections::HashMap;

use crate::proto::Request;
use crate::tree::{Zxid, parent_of};
use crate::txn::TxnOp;

/// Entries kept before committed ones are pruned (the in-flight writes bound the rest).
const PRUNE_AT: usize = 4096;

/// Paths whose latest write is not yet known committed, so reads of them wait for it.
#[derive(Default, Debug)]
pub struct Dirty {
    paths: HashMap<String, Zxid>,
    /// A txn that may have touched any path (closeSession).
    all: Zxid,
    /// The newest zxid marked; once it is committed, nothing here makes a read wait.
    newest: Zxid,
}

impl Dirty {
    /// Records txn `op` at zxid `z`, sequenced while `committed` is the committed zxid.
    pub fn mark(&mut self, op: &TxnOp, z: Zxid, committed: Zxid) {
        if self.newest <= committed {
            self.paths.clear();
        } else if self.paths.len() > PRUNE_AT {
            self.paths.retain(|_, v| *v > committed);
        }
        self.mark_op(op, z);
        self.newest = self.newest.max(z);
    }

    fn mark_op(&mut self, op: &TxnOp, z: Zxid) {
        let mut mark = |p: &str| match self.paths.get_mut(p) {
            Some(v) => *v = z,
            None => {
                self.paths.insert(p.to_string(), z);
            }
        };
        match op {
            TxnOp::Create { path, .. } | TxnOp::Delete { path } => {
                mark(path);
                mark(parent_of(path));
            }
            TxnOp::SetData { path, .. }
            | TxnOp::SetAcl { path, .. }
            | TxnOp::Check { path, .. } => mark(path),
            TxnOp::Multi(ops) => {
                for o in ops {
                    self.mark_op(o, z);
                }
            }
            TxnOp::CloseSession => self.all = z,
            TxnOp::CreateSession { .. } | TxnOp::Error { .. } => {}
        }
    }

    /// The zxid a read must wait for (the newest uncommitted write to a path it looks at), or
    /// `None` when it may be answered now. `last` is the newest sequenced zxid.
    pub fn read_wait(&self, req: &Request, last: Zxid, committed: Zxid) -> Option<Zxid> {
        if self.newest <= committed {
            // Every sequenced txn is committed (the common case for reads): no lookups.
            return None;
        }
        let of = |p: &str| self.paths.get(p).copied().unwrap_or(0).max(self.all);
        let z = match req {
            Request::Exists { path, .. }
            | Request::GetData { path, .. }
            | Request::GetAcl { path }
            | Request::GetChildren { path, .. }
            | Request::GetChildren2 { path, .. } => of(path),
            Request::MultiRead(ops) => ops
                .iter()
                .map(|o| match o {
                    Request::GetData { path, .. } | Request::GetChildren { path, .. } => of(path),
                    _ => last,
                })
                .max()
                .unwrap_or(0),
            // Whole-tree reads, and sync (which promises every earlier write).
            Request::Sync { .. }
            | Request::GetEphemerals { .. }
            | Request::GetAllChildrenNumber { .. }
            | Request::SetWatches(_) => last,
            _ => 0,
        };
        (z > committed).then_some(z)
    }
}

/// The zxid in the header of a reply that is not a write's: the newest zxid that is committed
/// when the reply leaves. `speculative` is the state's last zxid when the request was
/// processed, `wait` what the reply waits for, `committed` the committed zxid then, and
/// `previous` the header zxid of the connection's previous reply (it leaves first, so it is
/// committed by then, and a session's zxids never go backwards).
#[must_use]
pub fn reply_zxid(speculative: Zxid, wait: Option<Zxid>, committed: Zxid, previous: Zxid) -> Zxid {
    speculative
        .min(committed.max(wait.unwrap_or(0)))
        .max(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(path: &str) -> TxnOp {
        TxnOp::SetData {
            path: path.into(),
            data: None,
            version: 1,
        }
    }

    fn get(path: &str) -> Request {
        Request::GetData {
            path: path.into(),
            watch: false,
        }
    }

    #[test]
    fn reads_of_an_uncommitted_path_wait_for_its_newest_write() {
        let mut d = Dirty::default();
        d.mark(&set("/a"), 5, 4);
        d.mark(&set("/a"), 6, 4);
        d.mark(&set("/b"), 7, 4);
        assert_eq!(d.read_wait(&get("/a"), 7, 4), Some(6));
        assert_eq!(d.read_wait(&get("/b"), 7, 6), Some(7));
        assert_eq!(
            d.read_wait(&get("/c"), 7, 4),
            None,
            "a clean path answers now"
        );
        assert_eq!(d.read_wait(&get("/a"), 7, 7), None, "all committed");
        let sync = Request::Sync { path: "/".into() };
        assert_eq!(d.read_wait(&sync, 7, 5), Some(7));
    }

    #[test]
    fn close_session_dirties_every_path() {
        let mut d = Dirty::default();
        d.mark(&TxnOp::CloseSession, 9, 8);
        assert_eq!(d.read_wait(&get("/anything"), 9, 8), Some(9));
    }

    #[test]
    fn a_reply_header_never_carries_an_uncommitted_zxid() {
        assert_eq!(reply_zxid(10, None, 7, 0), 7);
        assert_eq!(reply_zxid(10, Some(9), 7, 0), 9, "sent once 9 is committed");
        assert_eq!(reply_zxid(10, None, 10, 0), 10);
        assert_eq!(
            reply_zxid(10, None, 7, 8),
            8,
            "after the reply to write 8, which leaves first"
        );
    }
}
