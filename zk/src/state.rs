//! The ZooKeeper state machine: requests in; replies, transactions and watch notifications out.
//!
//! Every write becomes a [`Txn`] with the next zxid, in the order requests arrive (the single
//! sequencer). The txn is applied to the in-memory tree at once, and [`Outcome::txn`] tells the
//! caller it must be made durable before the reply and the notifications of that write are sent;
//! reads are answered from the tree as it stands. Replaying the same txns through
//! [`ZkState::apply`] rebuilds the same state, which is how start-up recovery works and how an
//! ensemble will replicate.
//!
//! Validation order and error codes follow ZooKeeper's `PrepRequestProcessor` (writes) and
//! `FinalRequestProcessor` (reads). No I/O; the clock is a parameter.

use std::collections::BTreeSet;

use crate::acl;
use crate::proto::{
    Code, Id, OpResult, Request, Response, SetWatches, WatcherEvent, event, op, perms,
};
use crate::session::{SessionMeta, Sessions, initial_session_id};
use crate::tree::{
    CONTAINER_OWNER, DataTree, Journal, NodeKind, SessionId, TTL_MS_MAX, TreeEvent, Zxid,
    is_special, node_kind, parent_of, ttl_owner,
};
use crate::txn::{Txn, TxnOp};
use crate::watch::{
    ADD_WATCH_PERSISTENT, ADD_WATCH_PERSISTENT_RECURSIVE, Notification, WatchTable,
};

#[derive(Debug, Clone, Default)]
pub struct StateConfig {
    /// `zookeeper.extendedTypesEnabled`: allows TTL nodes.
    pub extended_types: bool,
    /// `myid`; the high byte of session ids.
    pub server_id: i64,
}

/// Who is asking: the session and the ids its connection has authenticated as.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub session: SessionId,
    pub auth: &'a [Id],
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply header's zxid: the txn's for writes, the last applied for reads.
    pub zxid: Zxid,
    pub err: i32,
    pub response: Response,
    /// Present for writes: must be durable before the reply and `notifications` go out.
    pub txn: Option<Txn>,
    pub notifications: Vec<Notification>,
}

impl Outcome {
    fn read(zxid: Zxid, r: Result<Response, Code>) -> Self {
        match r {
            Ok(response) => Self {
                zxid,
                err: 0,
                response,
                txn: None,
                notifications: Vec::new(),
            },
            Err(c) => Self {
                zxid,
                err: c.as_i32(),
                response: Response::Empty,
                txn: None,
                notifications: Vec::new(),
            },
        }
    }
}

/// What applying a committed txn did ([`ZkState::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// 0, or the error code the txn carries (an error txn) or met.
    pub err: i32,
    /// The txn is an error txn: its code was decided when it was sequenced.
    pub logged_error: bool,
    /// Watch events for the sessions that set the watches.
    pub notifications: Vec<Notification>,
}

impl Applied {
    /// A txn that was logged as successful but did not apply: the state diverged from the one
    /// that sequenced it.
    pub fn diverged(&self) -> bool {
        self.err != 0 && !self.logged_error
    }
}

/// What applying one txn op did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpApplied {
    Create {
        path: String,
        stat: crate::proto::Stat,
    },
    Delete,
    SetData(crate::proto::Stat),
    SetAcl(crate::proto::Stat),
    Check,
    Session,
    Multi(Vec<OpApplied>),
    Error(i32),
}

/// `PathUtils.validatePath`.
pub fn validate_path(path: &str) -> Result<(), Code> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Code::BadArguments);
    };
    if rest.is_empty() {
        return Ok(());
    }
    // Every name between slashes must be non-empty (no "//", no trailing "/"), must not be "."
    // or "..", and must not hold a character ZooKeeper's PathUtils refuses.
    for name in rest.split('/') {
        if name.is_empty() || name == "." || name == ".." {
            return Err(Code::BadArguments);
        }
        let bad_char = |c: char| {
            c == '\0'
                || ('\u{1}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || ('\u{e000}'..='\u{f8ff}').contains(&c)
                || ('\u{fff0}'..='\u{ffff}').contains(&c)
        };
        // Printable ASCII (the common case) is always allowed.
        if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) && name.chars().any(bad_char) {
            return Err(Code::BadArguments);
        }
    }
    Ok(())
}

fn check_version(current: i32, expected: i32) -> Result<i32, Code> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

pub struct ZkState {
    pub tree: DataTree,
    pub sessions: Sessions,
    pub watches: WatchTable,
    last_zxid: Zxid,
    next_session_id: SessionId,
    cfg: StateConfig,
}

impl ZkState {
    pub fn new(cfg: StateConfig, now_ms: i64) -> Self {
        Self {
            tree: DataTree::new(),
            sessions: Sessions::default(),
            watches: WatchTable::default(),
            last_zxid: 0,
            next_session_id: initial_session_id(now_ms, cfg.server_id),
            cfg,
        }
    }

    /// State restored from a snapshot taken at `last_zxid`.
    pub fn restore(
        cfg: StateConfig,
        now_ms: i64,
        tree: DataTree,
        sessions: Sessions,
        last_zxid: Zxid,
    ) -> Self {
        let mut s = Self::new(cfg, now_ms);
        s.tree = tree;
        for (id, _) in sessions.iter() {
            s.next_session_id = s.next_session_id.max(id + 1);
        }
        s.sessions = sessions;
        s.last_zxid = last_zxid;
        s
    }

    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    fn next_zxid(&mut self) -> Zxid {
        self.last_zxid += 1;
        self.last_zxid
    }

    /// Applies a committed txn: the one path for replay at start-up and (with an ensemble) for
    /// followers. Fires the watches it triggers and returns what it did; `None` for a txn at or
    /// below the current zxid (skipped). [`Self::process`] is "prepare + speculative apply" and
    /// runs on the leader (or a single node) only.
    pub fn apply(&mut self, txn: &Txn) -> Option<Applied> {
        self.apply_answering(txn, None).map(|(a, _)| a)
    }

    /// [`Self::apply`] for a txn that answers `req`, a request this server forwarded to the
    /// leader: also builds the reply the request gets (what the server that sequenced it would
    /// have answered). A reply with a non-zero `Applied::err` carries no body.
    pub fn apply_answering(
        &mut self,
        txn: &Txn,
        req: Option<&Request>,
    ) -> Option<(Applied, Response)> {
        if txn.zxid <= self.last_zxid {
            return None;
        }
        let mut events = Vec::new();
        let result = self.apply_op(txn.session, &txn.op, txn.zxid, txn.time, None, &mut events);
        self.last_zxid = txn.zxid;
        if let TxnOp::CreateSession { .. } = txn.op {
            self.next_session_id = self.next_session_id.max(txn.session + 1);
        }
        let mut notifications = Vec::new();
        self.watches.trigger(&events, &mut notifications);
        let err = match &result {
            Ok(OpApplied::Error(code)) => *code,
            Ok(_) => 0,
            Err(code) => code.as_i32(),
        };
        let response = match (req, result) {
            (Some(req), Ok(a)) if err == 0 => Self::response_for(req, a),
            _ => Response::Empty,
        };
        Some((
            Applied {
                err,
                logged_error: matches!(txn.op, TxnOp::Error { .. }),
                notifications,
            },
            response,
        ))
    }

    /// The reply body of a write request, from what its txn did.
    fn response_for(req: &Request, a: OpApplied) -> Response {
        match (req, a) {
            (Request::Create { op: opcode, .. }, OpApplied::Create { path, stat }) => {
                if *opcode == op::CREATE {
                    Response::Create { path }
                } else {
                    Response::Create2 { path, stat }
                }
            }
            (_, OpApplied::SetData(stat) | OpApplied::SetAcl(stat)) => Response::Stat(stat),
            (Request::Multi(ops), OpApplied::Multi(subs)) => Response::Multi(
                ops.iter()
                    .zip(subs)
                    .map(|(o, a)| Self::op_result(o.opcode(), a))
                    .collect(),
            ),
            _ => Response::Empty,
        }
    }

    fn apply_op(
        &mut self,
        session: SessionId,
        op: &TxnOp,
        zxid: Zxid,
        time: i64,
        mut journal: Option<&mut Journal>,
        events: &mut Vec<TreeEvent>,
    ) -> Result<OpApplied, Code> {
        match op {
            TxnOp::CreateSession { timeout_ms } => {
                self.sessions.insert(
                    session,
                    SessionMeta {
                        timeout_ms: *timeout_ms,
                    },
                );
                Ok(OpApplied::Session)
            }
            TxnOp::CloseSession => {
                for path in self.tree.ephemerals_of(session) {
                    let _ = self.tree.delete(&path, zxid, None, events);
                }
                self.sessions.remove(session);
                Ok(OpApplied::Session)
            }
            TxnOp::Create {
                path,
                data,
                acl,
                owner,
                parent_cversion,
            } => {
                let stat = self.tree.create(
                    path,
                    data.clone(),
                    acl.clone(),
                    *owner,
                    *parent_cversion,
                    zxid,
                    time,
                    journal,
                    events,
                )?;
                Ok(OpApplied::Create {
                    path: path.clone(),
                    stat,
                })
            }
            TxnOp::Delete { path } => {
                self.tree.delete(path, zxid, journal, events)?;
                Ok(OpApplied::Delete)
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => Ok(OpApplied::SetData(self.tree.set_data(
                path,
                data.clone(),
                *version,
                zxid,
                time,
                journal,
                events,
            )?)),
            TxnOp::SetAcl {
                path,
                acl,
                aversion,
            } => Ok(OpApplied::SetAcl(self.tree.set_acl(
                path,
                acl.clone(),
                *aversion,
                journal,
            )?)),
            TxnOp::Check { .. } => Ok(OpApplied::Check),
            TxnOp::Multi(ops) => {
                let mut out = Vec::with_capacity(ops.len());
                for o in ops {
                    out.push(
                        self.apply_op(session, o, zxid, time, journal.as_deref_mut(), events)
                            .unwrap_or_else(|c| OpApplied::Error(c.as_i32())),
                    );
                }
                Ok(OpApplied::Multi(out))
            }
            TxnOp::Error { code } => Ok(OpApplied::Error(*code)),
        }
    }

    /// Opens a session: the createSession txn (already applied) and the new id.
    pub fn create_session(&mut self, timeout_ms: i32, now_ms: i64) -> (SessionId, Txn) {
        let session = self.next_session_id;
        self.next_session_id += 1;
        let zxid = self.next_zxid();
        let op = TxnOp::CreateSession { timeout_ms };
        let mut events = Vec::new();
        let _ = self.apply_op(session, &op, zxid, now_ms, None, &mut events);
        (
            session,
            Txn {
                session,
                cxid: 0,
                zxid,
                time: now_ms,
                op,
            },
        )
    }

    /// Closes (or expires) a session: deletes its ephemerals, drops its watches.
    pub fn close_session(&mut self, session: SessionId, cxid: i32, now_ms: i64) -> Outcome {
        let zxid = self.next_zxid();
        let op = TxnOp::CloseSession;
        let mut events = Vec::new();
        let _ = self.apply_op(session, &op, zxid, now_ms, None, &mut events);
        self.watches.remove_session(session);
        let mut notifications = Vec::new();
        self.watches.trigger(&events, &mut notifications);
        Outcome {
            zxid,
            err: 0,
            response: Response::Empty,
            txn: Some(Txn {
                session,
                cxid,
                zxid,
                time: now_ms,
                op,
            }),
            notifications,
        }
    }

    /// Container and TTL nodes due for deletion (`ContainerManager.getCandidates`).
    pub fn gc_candidates(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.tree.containers() {
            if let Some(n) = self.tree.get(p)
                && n.children.is_empty()
                && n.cversion > 0
            {
                out.push(p.clone());
            }
        }
        for p in self.tree.ttls() {
            if let Some(n) = self.tree.get(p)
                && n.children.is_empty()
                && let NodeKind::Ttl(ttl) = node_kind(n.ephemeral_owner)
                && now_ms.saturating_sub(n.mtime) > ttl
            {
                out.push(p.clone());
            }
        }
        out
    }

    /// Deletes a container or expired TTL node (`deleteContainer`); `None` if it no longer qualifies.
    pub fn delete_container(&mut self, path: &str, now_ms: i64) -> Option<Outcome> {
        if !self.gc_candidates(now_ms).iter().any(|p| p == path) {
            return None;
        }
        let zxid = self.next_zxid();
        let op = TxnOp::Delete {
            path: path.to_string(),
        };
        let mut events = Vec::new();
        let _ = self.apply_op(0, &op, zxid, now_ms, None, &mut events);
        let mut notifications = Vec::new();
        self.watches.trigger(&events, &mut notifications);
        Some(Outcome {
            zxid,
            err: 0,
            response: Response::Empty,
            txn: Some(Txn {
                session: 0,
                cxid: 0,
                zxid,
                time: now_ms,
                op,
            }),
            notifications,
        })
    }

    /// Validates a write and turns it into the txn op that performs it.
    fn prep(&self, c: &Client<'_>, req: &Request) -> Result<TxnOp, Code> {
        match req {
            Request::Create { op: opcode, req: r } => {
                let mode = r.flags;
                if !(0..=6).contains(&mode) {
                    return Err(Code::BadArguments);
                }
                let is_ttl = mode == 5 || mode == 6;
                let sequential = matches!(mode, 2 | 3 | 6);
                let ephemeral = matches!(mode, 1 | 3);
                if is_ttl && !self.cfg.extended_types {
                    return Err(Code::Unimplemented);
                }
                if is_ttl {
                    if r.ttl <= 0 || r.ttl > TTL_MS_MAX {
                        return Err(Code::BadArguments);
                    }
                } else if r.ttl >= 0 {
                    return Err(Code::BadArguments);
                }
                if !r.path.contains('/') || r.path.contains('\0') {
                    return Err(Code::BadArguments);
                }
                let acl = acl::fixup(&r.acl, c.auth)?;
                let parent_path = parent_of(&r.path);
                let parent = self.tree.get(parent_path).ok_or(Code::NoNode)?;
                acl::check(&parent.acl, perms::CREATE, c.auth)?;
                let path = if sequential {
                    format!("{}{:010}", r.path, parent.cversion)
                } else {
                    r.path.clone()
                };
                validate_path(&path)?;
                if self.tree.get(&path).is_some() {
                    return Err(Code::NodeExists);
                }
                if let NodeKind::Ephemeral(_) = node_kind(parent.ephemeral_owner) {
                    return Err(Code::NoChildrenForEphemerals);
                }
                let owner = match *opcode {
                    op::CREATE_CONTAINER => CONTAINER_OWNER,
                    op::CREATE_TTL => ttl_owner(r.ttl),
                    _ if ephemeral => c.session,
                    _ => 0,
                };
                Ok(TxnOp::Create {
                    path,
                    data: r.data.clone(),
                    acl,
                    owner,
                    parent_cversion: parent.cversion.wrapping_add(1),
                })
            }
            Request::Delete { path, version } => {
                if !path.contains('/') || path.contains('\0') || is_special(path) {
                    return Err(Code::BadArguments);
                }
                let parent = self.tree.get(parent_of(path)).ok_or(Code::NoNode)?;
                acl::check(&parent.acl, perms::DELETE, c.auth)?;
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                check_version(node.version, *version)?;
                if !node.children.is_empty() {
                    return Err(Code::NotEmpty);
                }
                Ok(TxnOp::Delete { path: path.clone() })
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path)?;
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::WRITE, c.auth)?;
                let version = check_version(node.version, *version)?;
                Ok(TxnOp::SetData {
                    path: path.clone(),
                    data: data.clone(),
                    version,
                })
            }
            Request::SetAcl {
                path,
                acl: new_acl,
                version,
            } => {
                validate_path(path)?;
                let fixed = acl::fixup(new_acl, c.auth)?;
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::ADMIN, c.auth)?;
                let aversion = check_version(node.aversion, *version)?;
                Ok(TxnOp::SetAcl {
                    path: path.clone(),
                    acl: fixed,
                    aversion,
                })
            }
            Request::Check { path, version } => {
                validate_path(path)?;
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::READ, c.auth)?;
                check_version(node.version, *version)?;
                Ok(TxnOp::Check {
                    path: path.clone(),
                    version: node.version,
                })
            }
            _ => Err(Code::Unimplemented),
        }
    }

    fn op_result(opcode: i32, a: OpApplied) -> OpResult {
        match a {
            OpApplied::Create { path, stat } => {
                if opcode == op::CREATE {
                    OpResult::Create { path }
                } else {
                    OpResult::Create2 { path, stat }
                }
            }
            OpApplied::Delete => OpResult::Delete,
            OpApplied::SetData(stat) => OpResult::SetData { stat },
            OpApplied::Check | OpApplied::SetAcl(_) | OpApplied::Session | OpApplied::Multi(_) => {
                OpResult::Check
            }
            OpApplied::Error(e) => OpResult::Error(e),
        }
    }

    /// Handles one client request (everything but connect, ping and auth, which the connection
    /// layer answers itself).
    pub fn process(&mut self, c: &Client<'_>, cxid: i32, req: &Request, now_ms: i64) -> Outcome {
        match req {
            Request::Create { .. }
            | Request::Delete { .. }
            | Request::SetData { .. }
            | Request::SetAcl { .. }
            | Request::Check { .. } => self.single_write(c, cxid, req, now_ms),
            Request::Multi(ops) => self.multi(c, cxid, ops, now_ms),
            Request::CloseSession => self.close_session(c.session, cxid, now_ms),
            _ => {
                let zxid = self.last_zxid;
                let mut notifications = Vec::new();
                let r = self.read(c, req, &mut notifications);
                let mut o = Outcome::read(zxid, r);
                o.notifications = notifications;
                o
            }
        }
    }

    /// A request of a known opcode whose body did not decode: MARSHALLINGERROR, as the reference
    /// server answers. A write (see [`op::is_write`]) consumes a zxid and logs an error txn, as the
    /// reference server does; a read answers at the last zxid and changes nothing.
    pub fn malformed(&mut self, c: &Client<'_>, cxid: i32, opcode: i32, now_ms: i64) -> Outcome {
        if !op::is_write(opcode) {
            return Outcome::read(self.last_zxid, Err(Code::MarshallingError));
        }
        let zxid = self.next_zxid();
        Outcome {
            zxid,
            err: Code::MarshallingError.as_i32(),
            response: Response::Empty,
            txn: Some(Txn {
                session: c.session,
                cxid,
                zxid,
                time: now_ms,
                op: TxnOp::Error {
                    code: Code::MarshallingError.as_i32(),
                },
            }),
            notifications: Vec::new(),
        }
    }

    fn single_write(&mut self, c: &Client<'_>, cxid: i32, req: &Request, now_ms: i64) -> Outcome {
        let zxid = self.next_zxid();
        let mut events = Vec::new();
        let (op, result) = match self.prep(c, req) {
            Ok(op) => {
                let r = self.apply_op(c.session, &op, zxid, now_ms, None, &mut events);
                match r {
                    Ok(a) => (op, Ok(a)),
                    Err(code) => (
                        TxnOp::Error {
                            code: code.as_i32(),
                        },
                        Err(code),
                    ),
                }
            }
            Err(code) => (
                TxnOp::Error {
                    code: code.as_i32(),
                },
                Err(code),
            ),
        };
        let mut notifications = Vec::new();
        self.watches.trigger(&events, &mut notifications);
        let txn = Some(Txn {
            session: c.session,
            cxid,
            zxid,
            time: now_ms,
            op,
        });
        let (err, response) = match result {
            Err(code) => (code.as_i32(), Response::Empty),
            Ok(a) => {
                let response = match (req, a) {
                    (Request::Create { op: opcode, .. }, OpApplied::Create { path, stat }) => {
                        if *opcode == op::CREATE {
                            Response::Create { path }
                        } else {
                            Response::Create2 { path, stat }
                        }
                    }
                    (_, OpApplied::SetData(stat) | OpApplied::SetAcl(stat)) => Response::Stat(stat),
                    _ => Response::Empty,
                };
                (0, response)
            }
        };
        Outcome {
            zxid,
            err,
            response,
            txn,
            notifications,
        }
    }

    fn multi(&mut self, c: &Client<'_>, cxid: i32, ops: &[Request], now_ms: i64) -> Outcome {
        let zxid = self.next_zxid();
        let mut journal = Journal::default();
        let mut events = Vec::new();
        let mut subs = Vec::with_capacity(ops.len());
        let mut results = Vec::with_capacity(ops.len());
        let mut failure: Option<(usize, Code)> = None;
        for (i, o) in ops.iter().enumerate() {
            let step = self.prep(c, o).and_then(|sub| {
                let a = self.apply_op(
                    c.session,
                    &sub,
                    zxid,
                    now_ms,
                    Some(&mut journal),
                    &mut events,
                )?;
                Ok((sub, a))
            });
            match step {
                Ok((sub, a)) => {
                    subs.push(sub);
                    results.push(Self::op_result(o.opcode(), a));
                }
                Err(code) => {
                    failure = Some((i, code));
                    break;
                }
            }
        }
        let (op, results, notifications) = match failure {
            None => {
                let mut notifications = Vec::new();
                self.watches.trigger(&events, &mut notifications);
                (TxnOp::Multi(subs), results, notifications)
            }
            Some((at, code)) => {
                self.tree.undo(journal);
                let codes: Vec<i32> = (0..ops.len())
                    .map(|i| match i.cmp(&at) {
                        std::cmp::Ordering::Less => 0,
                        std::cmp::Ordering::Equal => code.as_i32(),
                        std::cmp::Ordering::Greater => Code::RuntimeInconsistency.as_i32(),
                    })
                    .collect();
                (
                    TxnOp::Multi(codes.iter().map(|&code| TxnOp::Error { code }).collect()),
                    codes.into_iter().map(OpResult::Error).collect(),
                    Vec::new(),
                )
            }
        };
        Outcome {
            zxid,
            err: 0,
            response: Response::Multi(results),
            txn: Some(Txn {
                session: c.session,
                cxid,
                zxid,
                time: now_ms,
                op,
            }),
            notifications,
        }
    }

    fn read(
        &mut self,
        c: &Client<'_>,
        req: &Request,
        notes: &mut Vec<Notification>,
    ) -> Result<Response, Code> {
        let s = c.session;
        match req {
            Request::Exists { path, watch } => {
                if *watch {
                    self.watches.add_data(path, s);
                }
                self.tree
                    .get(path)
                    .map(|n| Response::Stat(n.stat()))
                    .ok_or(Code::NoNode)
            }
            Request::GetData { path, watch } => {
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::READ, c.auth)?;
                let r = Response::GetData {
                    data: node.data.clone(),
                    stat: node.stat(),
                };
                if *watch {
                    self.watches.add_data(path, s);
                }
                Ok(r)
            }
            Request::GetChildren { path, watch } | Request::GetChildren2 { path, watch } => {
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::READ, c.auth)?;
                let children: Vec<String> = node.children.iter().cloned().collect();
                let r = if matches!(req, Request::GetChildren { .. }) {
                    Response::Children(children)
                } else {
                    Response::Children2 {
                        children,
                        stat: node.stat(),
                    }
                };
                if *watch {
                    self.watches.add_child(path, s);
                }
                Ok(r)
            }
            Request::GetAcl { path } => {
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::READ, c.auth)?;
                let acl = if acl::check(&node.acl, perms::ADMIN, c.auth).is_ok() {
                    node.acl.clone()
                } else {
                    acl::mask_digests(&node.acl)
                };
                Ok(Response::GetAcl {
                    acl,
                    stat: node.stat(),
                })
            }
            Request::Sync { path } => Ok(Response::Path(path.clone())),
            Request::MultiRead(ops) => {
                let mut results = Vec::with_capacity(ops.len());
                for o in ops {
                    let r = match self.read(c, o, notes) {
                        Ok(Response::GetData { data, stat }) => OpResult::GetData { data, stat },
                        Ok(Response::Children(children)) => OpResult::GetChildren { children },
                        Ok(_) => OpResult::Error(Code::BadArguments.as_i32()),
                        Err(code) => OpResult::Error(code.as_i32()),
                    };
                    results.push(r);
                }
                Ok(Response::Multi(results))
            }
            Request::SetWatches(sw) => {
                self.set_watches(s, sw, notes);
                Ok(Response::Empty)
            }
            Request::AddWatch { path, mode } => {
                match *mode {
                    ADD_WATCH_PERSISTENT => self.watches.add_persistent(path, s, false),
                    ADD_WATCH_PERSISTENT_RECURSIVE => self.watches.add_persistent(path, s, true),
                    _ => return Err(Code::BadArguments),
                }
                Ok(Response::ErrorBody(0))
            }
            Request::CheckWatches { path, kind } => {
                if self.watches.contains(path, s, *kind) {
                    Ok(Response::Empty)
                } else {
                    Err(Code::NoWatcher)
                }
            }
            Request::RemoveWatches { path, kind } => {
                if self.watches.remove(path, s, *kind) {
                    Ok(Response::Empty)
                } else {
                    Err(Code::NoWatcher)
                }
            }
            Request::GetEphemerals { prefix } => {
                let all = self.tree.ephemerals_of(s);
                Ok(Response::Strings(
                    all.into_iter()
                        .filter(|p| prefix == "/" || p.starts_with(prefix.as_str()))
                        .collect(),
                ))
            }
            Request::GetAllChildrenNumber { path } => {
                let node = self.tree.get(path).ok_or(Code::NoNode)?;
                acl::check(&node.acl, perms::READ, c.auth)?;
                Ok(Response::Number(
                    i32::try_from(self.tree.descendant_count(path)).unwrap_or(i32::MAX),
                ))
            }
            Request::WhoAmI => Ok(Response::WhoAmI({
                let mut ids: Vec<&Id> = c.auth.iter().collect();
                ids.sort();
                ids.into_iter()
                    .map(|id| {
                        let user = if id.scheme == "digest" {
                            id.id.split(':').next().unwrap_or("").to_string()
                        } else {
                            id.id.clone()
                        };
                        (id.scheme.clone(), user)
                    })
                    .collect()
            })),
            Request::Ping | Request::Auth { .. } => Ok(Response::Empty),
            // Standalone servers run with reconfig disabled, as ZooKeeper 3.5+ does by default.
            Request::Unimplemented(op::RECONFIG) => Err(Code::ReconfigDisabled),
            Request::Unimplemented(_) => Err(Code::Unimplemented),
            Request::Create { .. }
            | Request::Delete { .. }
            | Request::SetData { .. }
            | Request::SetAcl { .. }
            | Request::Check { .. }
            | Request::Multi(_)
            | Request::CloseSession => Err(Code::Unimplemented),
        }
    }

    /// `DataTree.setWatches`: re-arms watches after a reconnect, firing at once for changes the
    /// client missed since `relative_zxid`.
    fn set_watches(&mut self, s: SessionId, sw: &SetWatches, notes: &mut Vec<Notification>) {
        let mut fire = |kind: i32, path: &str| {
            notes.push(Notification {
                session: s,
                event: WatcherEvent {
                    kind,
                    state: event::STATE_SYNC_CONNECTED,
                    path: path.to_string(),
                },
            });
        };
        for p in &sw.data {
            match self.tree.get(p) {
                None => fire(event::NODE_DELETED, p),
                Some(n) if n.mzxid > sw.relative_zxid => fire(event::NODE_DATA_CHANGED, p),
                Some(_) => self.watches.add_data(p, s),
            }
        }
        for p in &sw.exist {
            if self.tree.get(p).is_some() {
                fire(event::NODE_CREATED, p);
            } else {
                self.watches.add_data(p, s);
            }
        }
        for p in &sw.child {
            match self.tree.get(p) {
                None => fire(event::NODE_DELETED, p),
                Some(n) if n.pzxid > sw.relative_zxid => fire(event::NODE_CHILDREN_CHANGED, p),
                Some(_) => self.watches.add_child(p, s),
            }
        }
        for p in &sw.persistent {
            self.watches.add_persistent(p, s, false);
        }
        for p in &sw.persistent_recursive {
            self.watches.add_persistent(p, s, true);
        }
    }

    /// Session ids with ephemerals (for `dump`).
    pub fn ephemeral_summary(&self) -> Vec<(SessionId, Vec<String>)> {
        let mut v: Vec<_> = self
            .tree
            .ephemeral_sessions()
            .map(|(s, p)| (*s, p.iter().cloned().collect::<Vec<_>>()))
            .collect();
        v.sort();
        v
    }

    /// Every path in the tree, sorted (for tests and tools).
    pub fn paths(&self) -> BTreeSet<String> {
        self.tree
            .sorted_nodes()
            .keys()
            .map(|k| k.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateRequest, Stat};

    const OPEN: &[Id] = &[];

    fn state() -> ZkState {
        ZkState::new(
            StateConfig {
                extended_types: true,
                server_id: 0,
            },
            1_000,
        )
    }

    fn create(path: &str, flags: i32) -> Request {
        Request::Create {
            op: op::CREATE2,
            req: CreateRequest {
                path: path.into(),
                data: Some(b"d".to_vec()),
                acl: Acl::open_unsafe(),
                flags,
                ttl: -1,
            },
        }
    }

    fn client(session: SessionId) -> Client<'static> {
        Client {
            session,
            auth: OPEN,
        }
    }

    fn stat_of(o: &Outcome) -> Stat {
        match &o.response {
            Response::Create2 { stat, .. } | Response::Stat(stat) => *stat,
            other => panic!("no stat in {other:?}"),
        }
    }

    #[test]
    fn sequential_names_come_from_parent_cversion() {
        let mut st = state();
        let c = client(1);
        st.process(&c, 1, &create("/q", 0), 10);
        st.process(&c, 2, &create("/q/x", 0), 10);
        let o = st.process(&c, 3, &create("/q/n-", 2), 10);
        assert_eq!(
            o.response,
            Response::Create2 {
                path: "/q/n-0000000001".into(),
                stat: stat_of(&o)
            }
        );
        st.process(
            &c,
            4,
            &Request::Delete {
                path: "/q/x".into(),
                version: -1,
            },
            10,
        );
        let o = st.process(&c, 5, &create("/q/n-", 2), 10);
        assert!(matches!(&o.response, Response::Create2 { path, .. } if path == "/q/n-0000000002"));
    }

    #[test]
    fn write_errors_consume_a_zxid_and_follow_zookeeper_order() {
        let mut st = state();
        let c = client(1);
        let o = st.process(&c, 1, &create("/a/b", 0), 10);
        assert_eq!((o.err, o.zxid), (Code::NoNode.as_i32(), 1));
        assert_eq!(
            o.txn.unwrap().op,
            TxnOp::Error {
                code: Code::NoNode.as_i32()
            }
        );
        st.process(&c, 2, &create("/a", 0), 10);
        assert_eq!(
            st.process(&c, 3, &create("/a", 0), 10).err,
            Code::NodeExists.as_i32()
        );
        let bad = Request::SetData {
            path: "/a".into(),
            data: None,
            version: 7,
        };
        assert_eq!(st.process(&c, 4, &bad, 10).err, Code::BadVersion.as_i32());
        st.process(&c, 5, &create("/a/c", 0), 10);
        let del = Request::Delete {
            path: "/a".into(),
            version: -1,
        };
        assert_eq!(st.process(&c, 6, &del, 10).err, Code::NotEmpty.as_i32());
        let del = Request::Delete {
            path: "/zookeeper".into(),
            version: -1,
        };
        assert_eq!(st.process(&c, 7, &del, 10).err, Code::BadArguments.as_i32());
        assert_eq!(
            st.process(&c, 8, &create("/a/.", 0), 10).err,
            Code::BadArguments.as_i32()
        );
        assert_eq!(st.last_zxid(), 8);
    }

    #[test]
    fn set_data_updates_stat() {
        let mut st = state();
        let c = client(1);
        let created = stat_of(&st.process(&c, 1, &create("/a", 0), 10));
        let o = st.process(
            &c,
            2,
            &Request::SetData {
                path: "/a".into(),
                data: Some(b"xyz".to_vec()),
                version: 0,
            },
            20,
        );
        let s = stat_of(&o);
        assert_eq!((s.version, s.mzxid, s.mtime, s.data_length), (1, 2, 20, 3));
        assert_eq!((s.czxid, s.ctime), (created.czxid, created.ctime));
    }

    #[test]
    fn failed_multi_changes_nothing_and_reports_per_op() {
        let mut st = state();
        let c = client(1);
        let before = st.paths();
        let o = st.process(
            &c,
            1,
            &Request::Multi(vec![
                create("/m", 0),
                create("/m/x", 0),
                Request::Check {
                    path: "/m".into(),
                    version: 5,
                },
                create("/m/y", 0),
            ]),
            10,
        );
        assert_eq!(o.err, 0);
        assert_eq!(
            o.response,
            Response::Multi(vec![
                OpResult::Error(0),
                OpResult::Error(0),
                OpResult::Error(-103),
                OpResult::Error(-2)
            ])
        );
        assert_eq!(st.paths(), before);
        assert_eq!(st.tree.get("/").unwrap().cversion, 0);
    }

    #[test]
    fn successful_multi_applies_in_order() {
        let mut st = state();
        let c = client(1);
        let o = st.process(
            &c,
            1,
            &Request::Multi(vec![
                create("/m", 0),
                Request::SetData {
                    path: "/m".into(),
                    data: None,
                    version: 0,
                },
                Request::Check {
                    path: "/m".into(),
                    version: 1,
                },
                Request::Delete {
                    path: "/m".into(),
                    version: 1,
                },
            ]),
            10,
        );
        let Response::Multi(r) = o.response else {
            panic!()
        };
        assert!(matches!(r[0], OpResult::Create2 { .. }));
        assert!(matches!(r[1], OpResult::SetData { .. }));
        assert_eq!(r[2..], [OpResult::Check, OpResult::Delete]);
        assert!(st.tree.get("/m").is_none());
    }

    #[test]
    fn closing_a_session_deletes_its_ephemerals_and_notifies_watchers() {
        let mut st = state();
        let (s1, _) = st.create_session(10_000, 0);
        let (s2, _) = st.create_session(10_000, 0);
        st.process(&client(s1), 1, &create("/e", 1), 10);
        assert_eq!(
            st.process(&client(s1), 2, &create("/e/c", 0), 10).err,
            Code::NoChildrenForEphemerals.as_i32()
        );
        st.process(
            &client(s2),
            1,
            &Request::Exists {
                path: "/e".into(),
                watch: true,
            },
            10,
        );
        let o = st.close_session(s1, 3, 20);
        assert!(st.tree.get("/e").is_none());
        assert_eq!(o.notifications.len(), 1);
        assert_eq!(o.notifications[0].session, s2);
        assert_eq!(o.notifications[0].event.kind, event::NODE_DELETED);
        assert!(st.sessions.get(s1).is_none());
    }

    #[test]
    fn digest_acl_is_enforced_and_masked() {
        let mut st = state();
        let digest = acl::generate_digest("u:p");
        let me = [Id::new("digest", &digest)];
        let owner = Client {
            session: 1,
            auth: &me,
        };
        let req = Request::Create {
            op: op::CREATE,
            req: CreateRequest {
                path: "/s".into(),
                data: None,
                acl: vec![Acl {
                    perms: perms::ALL,
                    id: Id::new("auth", ""),
                }],
                flags: 0,
                ttl: -1,
            },
        };
        assert_eq!(
            st.process(&client(2), 1, &req, 1).err,
            Code::InvalidAcl.as_i32()
        );
        assert_eq!(st.process(&owner, 1, &req, 1).err, 0);
        let get = Request::GetData {
            path: "/s".into(),
            watch: false,
        };
        assert_eq!(
            st.process(&client(2), 2, &get, 1).err,
            Code::NoAuth.as_i32()
        );
        assert_eq!(st.process(&owner, 2, &get, 1).err, 0);
    }

    #[test]
    fn ttl_needs_extended_types_and_containers_are_collected() {
        let mut plain = ZkState::new(StateConfig::default(), 0);
        let ttl = Request::Create {
            op: op::CREATE_TTL,
            req: CreateRequest {
                path: "/t".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 5,
                ttl: 100,
            },
        };
        assert_eq!(
            plain.process(&client(1), 1, &ttl, 0).err,
            Code::Unimplemented.as_i32()
        );
        let mut st = state();
        assert_eq!(st.process(&client(1), 1, &ttl, 0).err, 0);
        let container = Request::Create {
            op: op::CREATE_CONTAINER,
            req: CreateRequest {
                path: "/c".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 4,
                ttl: -1,
            },
        };
        st.process(&client(1), 2, &container, 0);
        assert!(st.gc_candidates(0).is_empty());
        st.process(&client(1), 3, &create("/c/x", 0), 0);
        st.process(
            &client(1),
            4,
            &Request::Delete {
                path: "/c/x".into(),
                version: -1,
            },
            0,
        );
        assert_eq!(st.gc_candidates(50), vec!["/c".to_string()]);
        assert_eq!(
            st.gc_candidates(200),
            vec!["/c".to_string(), "/t".to_string()]
        );
        assert!(st.delete_container("/c", 200).is_some());
        assert!(st.tree.get("/c").is_none());
    }

    #[test]
    fn replaying_txns_rebuilds_the_same_tree() {
        let mut st = state();
        let mut log = Vec::new();
        let (s, t) = st.create_session(5000, 0);
        log.push(t);
        let c = client(s);
        for (i, r) in [
            create("/a", 0),
            create("/a/s-", 3),
            create("/a/s-", 2),
            Request::SetData {
                path: "/a".into(),
                data: Some(vec![9]),
                version: -1,
            },
            Request::Multi(vec![
                create("/b", 0),
                Request::Delete {
                    path: "/zz".into(),
                    version: -1,
                },
            ]),
            Request::Multi(vec![create("/b", 0), create("/b/c", 1)]),
        ]
        .iter()
        .enumerate()
        {
            log.extend(st.process(&c, i as i32, r, 100 + i as i64).txn);
        }
        let mut copy = ZkState::new(
            StateConfig {
                extended_types: true,
                server_id: 0,
            },
            0,
        );
        for t in &log {
            copy.apply(&Txn::from_bytes(&t.to_bytes()).unwrap());
        }
        assert_eq!(copy.tree.sorted_nodes(), st.tree.sorted_nodes());
        assert_eq!(copy.last_zxid(), st.last_zxid());
        assert_eq!(
            copy.tree.ephemerals_of(s),
            vec!["/a/s-0000000000".to_string(), "/b/c".to_string()]
        );
    }

    /// The follower's path: a copy that applies the leader's committed txns fires the watches
    /// its own sessions set, as the leader's `process` does, and reports no divergence.
    #[test]
    fn applying_committed_txns_fires_the_same_watches_as_processing() {
        let mut leader = state();
        let mut follower = state();
        let c = client(7);
        let t = leader.process(&c, 1, &create("/w", 0), 0).txn.unwrap();
        assert_eq!(follower.apply(&t).map(|a| a.err), Some(0));
        let get = Request::GetData {
            path: "/w".into(),
            watch: true,
        };
        leader.process(&c, 2, &get, 0);
        follower.process(&c, 2, &get, 0);
        let set = Request::SetData {
            path: "/w".into(),
            data: Some(vec![1]),
            version: -1,
        };
        let on_leader = leader.process(&c, 3, &set, 0);
        let applied = follower.apply(on_leader.txn.as_ref().unwrap()).unwrap();
        assert!(!applied.diverged());
        assert_eq!(applied.notifications, on_leader.notifications);
        assert_eq!(applied.notifications.len(), 1);
        // Already applied: skipped.
        assert!(follower.apply(on_leader.txn.as_ref().unwrap()).is_none());
        // A logged success that no longer applies is a divergence.
        let again = leader.process(&c, 4, &create("/w/x", 0), 0).txn.unwrap();
        let mut bad = again.clone();
        bad.op = TxnOp::Delete {
            path: "/missing".into(),
        };
        assert!(follower.apply(&bad).unwrap().diverged());
    }

    #[test]
    fn set_watches_fires_for_missed_changes() {
        let mut st = state();
        let c = client(1);
        st.process(&c, 1, &create("/a", 0), 0);
        let sw = SetWatches {
            relative_zxid: 0,
            data: vec!["/a".into(), "/gone".into()],
            exist: vec!["/a".into(), "/later".into()],
            ..SetWatches::default()
        };
        let o = st.process(&client(2), -8, &Request::SetWatches(sw), 0);
        let kinds: Vec<_> = o
            .notifications
            .iter()
            .map(|n| (n.event.kind, n.event.path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (event::NODE_DATA_CHANGED, "/a"),
                (event::NODE_DELETED, "/gone"),
                (event::NODE_CREATED, "/a")
            ]
        );
        let o = st.process(&c, 2, &create("/later", 0), 0);
        assert_eq!(o.notifications[0].session, 2);
    }

    #[test]
    fn validate_path_matches_path_utils() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/..a"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for ok in ["/a/.b", "/a/b..", "/a/...", "/\u{e9}t\u{e9}", "/a b"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//a",
            "/a//b",
            "/.",
            "/a/..",
            "/a/./b",
            "/a\u{1}",
            "/..",
            "/a/b/",
            "/a\0b",
            "/a\u{7f}",
            "/a\u{9f}",
            "/\u{e000}",
            "/x\u{fff0}",
            "/\u{ffff}/a",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    /// The character-by-character form of PathUtils.validatePath that `validate_path` replaced.
    fn validate_path_by_chars(path: &str) -> Result<(), Code> {
        let chars: Vec<char> = path.chars().collect();
        if chars.first() != Some(&'/') {
            return Err(Code::BadArguments);
        }
        if chars.len() == 1 {
            return Ok(());
        }
        if chars.last() == Some(&'/') {
            return Err(Code::BadArguments);
        }
        let mut last = '/';
        for (i, &c) in chars.iter().enumerate().skip(1) {
            let next_is_end = chars.get(i + 1).is_none_or(|n| *n == '/');
            let bad = c == '\0'
                || (c == '/' && last == '/')
                || (c == '.'
                    && last == '.'
                    && chars.get(i.wrapping_sub(2)) == Some(&'/')
                    && next_is_end)
                || (c == '.' && last == '/' && next_is_end)
                || ('\u{1}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || ('\u{e000}'..='\u{f8ff}').contains(&c)
                || ('\u{fff0}'..='\u{ffff}').contains(&c);
            if bad {
                return Err(Code::BadArguments);
            }
            last = c;
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn validate_path_agrees_with_the_char_walk(
            path in "[/./a\u{0}\u{1}\u{7f}\u{9f}\u{e9}\u{e000}\u{fff0} ]{0,12}"
        ) {
            proptest::prop_assert_eq!(validate_path(&path), validate_path_by_chars(&path));
        }
    }
}
