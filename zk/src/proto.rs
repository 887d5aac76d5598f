//! ZooKeeper client-protocol records (from `zookeeper.jute`), opcodes and error codes.
//!
//! Requests are decoded into [`Request`]; replies are encoded from [`Response`]. Everything here is
//! pure: bytes in, values out, and back. Field order follows `zookeeper.jute` exactly.

use crate::jute::{DecodeError, Reader, Writer};

/// Opcodes (`ZooDefs.OpCode`).
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;

    /// Whether `op` changes the tree and so is given a zxid before its body is read: a request of
    /// one of these kinds consumes a zxid even when its body does not decode.
    pub fn is_write(op: i32) -> bool {
        matches!(
            op,
            CREATE
                | CREATE2
                | CREATE_CONTAINER
                | CREATE_TTL
                | DELETE
                | DELETE_CONTAINER
                | SET_DATA
                | SET_ACL
                | CHECK
                | MULTI
                | RECONFIG
        )
    }

    /// Whether a client may send `op` as a request (the reference server's `Request.isValid`,
    /// plus auth and SASL, which it handles before that check). Anything else is answered with
    /// UNIMPLEMENTED and the connection is closed.
    pub fn is_request(op: i32) -> bool {
        matches!(
            op,
            CREATE
                | DELETE
                | EXISTS
                | GET_DATA
                | SET_DATA
                | GET_ACL
                | SET_ACL
                | GET_CHILDREN
                | SYNC
                | PING
                | GET_CHILDREN2
                | CHECK
                | MULTI
                | CREATE2
                | RECONFIG
                | CHECK_WATCHES
                | REMOVE_WATCHES
                | CREATE_CONTAINER
                | DELETE_CONTAINER
                | CREATE_TTL
                | MULTI_READ
                | AUTH
                | SET_WATCHES
                | SASL
                | GET_EPHEMERALS
                | GET_ALL_CHILDREN_NUMBER
                | SET_WATCHES2
                | ADD_WATCH
                | WHO_AM_I
                | CREATE_SESSION
                | CLOSE_SESSION
        )
    }
}

/// Special xids (`ClientCnxn`).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// `KeeperException.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    SystemError = -1,
    RuntimeInconsistency = -2,
    DataInconsistency = -3,
    ConnectionLoss = -4,
    MarshallingError = -5,
    Unimplemented = -6,
    OperationTimeout = -7,
    BadArguments = -8,
    UnknownSession = -12,
    ApiError = -100,
    NoNode = -101,
    NoAuth = -102,
    BadVersion = -103,
    NoChildrenForEphemerals = -108,
    NodeExists = -110,
    NotEmpty = -111,
    SessionExpired = -112,
    InvalidAcl = -114,
    AuthFailed = -115,
    SessionMoved = -118,
    NotReadOnly = -119,
    NoWatcher = -121,
    ReconfigDisabled = -123,
    QuotaExceeded = -125,
}

impl Code {
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

/// Permission bits (`ZooDefs.Perms`).
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

/// Watch event types (`Watcher.Event.EventType`).
pub mod event {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    /// `KeeperState.SyncConnected`.
    pub const STATE_SYNC_CONNECTED: i32 = 3;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    pub fn encode(&self, w: &mut Writer) {
        w.write_i64(self.czxid);
        w.write_i64(self.mzxid);
        w.write_i64(self.ctime);
        w.write_i64(self.mtime);
        w.write_i32(self.version);
        w.write_i32(self.cversion);
        w.write_i32(self.aversion);
        w.write_i64(self.ephemeral_owner);
        w.write_i32(self.data_length);
        w.write_i32(self.num_children);
        w.write_i64(self.pzxid);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            data_length: r.read_i32()?,
            num_children: r.read_i32()?,
            pzxid: r.read_i64()?,
        })
    }
}

/// An `Id{scheme, id}`: who an ACL entry names, or who a connection has authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Self {
        Self {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    /// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::new("world", "anyone"),
        }]
    }

    /// `ZooDefs.Ids.READ_ACL_UNSAFE`.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: perms::READ,
            id: Id::new("world", "anyone"),
        }]
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let perms = r.read_i32()?;
        let scheme = r.read_ustring()?;
        let id = r.read_ustring()?;
        Ok(Self {
            perms,
            id: Id { scheme, id },
        })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.perms);
        w.write_ustring(&self.id.scheme);
        w.write_ustring(&self.id.id);
    }
}

/// Smallest encoding of one ACL (perms + two empty strings), bounding ACL vector counts.
const ACL_SIZE_MIN: usize = 12;

pub fn decode_acls(r: &mut Reader<'_>) -> Result<Vec<Acl>, DecodeError> {
    r.read_vec(ACL_SIZE_MIN, Acl::decode)
}

pub fn encode_acls(acls: &[Acl], w: &mut Writer) {
    w.write_count(acls.len());
    for a in acls {
        a.encode(w);
    }
}

/// `ConnectRequest`; `read_only` is absent from old clients' handshakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer()?.unwrap_or_default();
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool()?)
        };
        Ok(Self {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i64(self.last_zxid_seen);
        w.write_i32(self.timeout_ms);
        w.write_i64(self.session_id);
        w.write_buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            w.write_bool(ro);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Written only when the client's handshake carried the readOnly byte.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i32(self.timeout_ms);
        w.write_i64(self.session_id);
        w.write_buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            w.write_bool(ro);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer()?.unwrap_or_default();
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool()?)
        };
        Ok(Self {
            protocol_version,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub op: i32,
}

impl RequestHeader {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            xid: r.read_i32()?,
            op: r.read_i32()?,
        })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.xid);
        w.write_i32(self.op);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl ReplyHeader {
    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.xid);
        w.write_i64(self.zxid);
        w.write_i32(self.err);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            xid: r.read_i32()?,
            zxid: r.read_i64()?,
            err: r.read_i32()?,
        })
    }
}

/// `CreateRequest` / `CreateTTLRequest`; `ttl` is -1 unless the opcode was createTTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl: i64,
}

impl CreateRequest {
    fn decode(r: &mut Reader<'_>, with_ttl: bool) -> Result<Self, DecodeError> {
        let path = r.read_ustring()?;
        let data = r.read_buffer()?;
        let acl = decode_acls(r)?;
        let flags = r.read_i32()?;
        let ttl = if with_ttl { r.read_i64()? } else { -1 };
        Ok(Self {
            path,
            data,
            acl,
            flags,
            ttl,
        })
    }

    fn encode(&self, w: &mut Writer, with_ttl: bool) {
        w.write_ustring(&self.path);
        w.write_buffer(self.data.as_deref());
        encode_acls(&self.acl, w);
        w.write_i32(self.flags);
        if with_ttl {
            w.write_i64(self.ttl);
        }
    }
}

/// `SetWatches` (opcode 101) and `SetWatches2` (105); the persistent lists are empty for 101.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// A decoded client request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1), create2 (15), createContainer (19), createTTL (21); `op` says which.
    Create {
        op: i32,
        req: CreateRequest,
    },
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    GetChildren2 {
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    SetWatches(SetWatches),
    AddWatch {
        path: String,
        mode: i32,
    },
    CheckWatches {
        path: String,
        kind: i32,
    },
    RemoveWatches {
        path: String,
        kind: i32,
    },
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    WhoAmI,
    Auth {
        kind: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    CloseSession,
    /// An opcode this server does not implement; answered with UNIMPLEMENTED.
    Unimplemented(i32),
}

impl Request {
    /// Decodes the body of a request whose header carried `op`.
    pub fn decode(op: i32, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match op {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => Request::Create {
                op,
                req: CreateRequest::decode(r, false)?,
            },
            op::CREATE_TTL => Request::Create {
                op,
                req: CreateRequest::decode(r, true)?,
            },
            op::DELETE => Request::Delete {
                path: r.read_ustring()?,
                version: r.read_i32()?,
            },
            op::EXISTS => Request::Exists {
                path: r.read_ustring()?,
                watch: r.read_bool()?,
            },
            op::GET_DATA => Request::GetData {
                path: r.read_ustring()?,
                watch: r.read_bool()?,
            },
            op::SET_DATA => Request::SetData {
                path: r.read_ustring()?,
                data: r.read_buffer()?,
                version: r.read_i32()?,
            },
            op::GET_ACL => Request::GetAcl {
                path: r.read_ustring()?,
            },
            op::SET_ACL => Request::SetAcl {
                path: r.read_ustring()?,
                acl: decode_acls(r)?,
                version: r.read_i32()?,
            },
            op::GET_CHILDREN => Request::GetChildren {
                path: r.read_ustring()?,
                watch: r.read_bool()?,
            },
            op::GET_CHILDREN2 => Request::GetChildren2 {
                path: r.read_ustring()?,
                watch: r.read_bool()?,
            },
            op::SYNC => Request::Sync {
                path: r.read_ustring()?,
            },
            op::PING => Request::Ping,
            op::CHECK => Request::Check {
                path: r.read_ustring()?,
                version: r.read_i32()?,
            },
            op::MULTI => Request::Multi(decode_multi(r, false)?),
            op::MULTI_READ => Request::MultiRead(decode_multi(r, true)?),
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let mut sw = SetWatches {
                    relative_zxid: r.read_i64()?,
                    data: r.read_string_vec()?,
                    exist: r.read_string_vec()?,
                    child: r.read_string_vec()?,
                    ..SetWatches::default()
                };
                if op == op::SET_WATCHES2 {
                    sw.persistent = r.read_string_vec()?;
                    sw.persistent_recursive = r.read_string_vec()?;
                }
                Request::SetWatches(sw)
            }
            op::ADD_WATCH => Request::AddWatch {
                path: r.read_ustring()?,
                mode: r.read_i32()?,
            },
            op::CHECK_WATCHES => Request::CheckWatches {
                path: r.read_ustring()?,
                kind: r.read_i32()?,
            },
            op::REMOVE_WATCHES => Request::RemoveWatches {
                path: r.read_ustring()?,
                kind: r.read_i32()?,
            },
            op::GET_EPHEMERALS => Request::GetEphemerals {
                prefix: r.read_ustring()?,
            },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
                path: r.read_ustring()?,
            },
            op::WHO_AM_I => Request::WhoAmI,
            op::AUTH => Request::Auth {
                kind: r.read_i32()?,
                scheme: r.read_ustring()?,
                auth: r.read_buffer()?.unwrap_or_default(),
            },
            op::CLOSE_SESSION => Request::CloseSession,
            other => Request::Unimplemented(other),
        })
    }

    /// Encodes the body (client side; used by tests and tools).
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Request::Create { op, req } => req.encode(w, *op == op::CREATE_TTL),
            Request::Delete { path, version } | Request::Check { path, version } => {
                w.write_ustring(path);
                w.write_i32(*version);
            }
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch }
            | Request::GetChildren2 { path, watch } => {
                w.write_ustring(path);
                w.write_bool(*watch);
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                w.write_ustring(path);
                w.write_buffer(data.as_deref());
                w.write_i32(*version);
            }
            Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path }
            | Request::GetEphemerals { prefix: path } => w.write_ustring(path),
            Request::SetAcl { path, acl, version } => {
                w.write_ustring(path);
                encode_acls(acl, w);
                w.write_i32(*version);
            }
            Request::Multi(ops) | Request::MultiRead(ops) => {
                for o in ops {
                    w.write_i32(o.opcode());
                    w.write_bool(false);
                    w.write_i32(-1);
                    o.encode(w);
                }
                w.write_i32(-1);
                w.write_bool(true);
                w.write_i32(-1);
            }
            Request::SetWatches(sw) => {
                w.write_i64(sw.relative_zxid);
                w.write_string_vec(&sw.data);
                w.write_string_vec(&sw.exist);
                w.write_string_vec(&sw.child);
                w.write_string_vec(&sw.persistent);
                w.write_string_vec(&sw.persistent_recursive);
            }
            Request::AddWatch { path, mode: kind }
            | Request::CheckWatches { path, kind }
            | Request::RemoveWatches { path, kind } => {
                w.write_ustring(path);
                w.write_i32(*kind);
            }
            Request::Auth { kind, scheme, auth } => {
                w.write_i32(*kind);
                w.write_ustring(scheme);
                w.write_buffer(Some(auth));
            }
            Request::Ping | Request::WhoAmI | Request::CloseSession | Request::Unimplemented(_) => {
            }
        }
    }

    /// The opcode this request travels under.
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create { op, .. } => *op,
            Request::Delete { .. } => op::DELETE,
            Request::Exists { .. } => op::EXISTS,
            Request::GetData { .. } => op::GET_DATA,
            Request::SetData { .. } => op::SET_DATA,
            Request::GetAcl { .. } => op::GET_ACL,
            Request::SetAcl { .. } => op::SET_ACL,
            Request::GetChildren { .. } => op::GET_CHILDREN,
            Request::GetChildren2 { .. } => op::GET_CHILDREN2,
            Request::Sync { .. } => op::SYNC,
            Request::Ping => op::PING,
            Request::Check { .. } => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::SetWatches(_) => op::SET_WATCHES2,
            Request::AddWatch { .. } => op::ADD_WATCH,
            Request::CheckWatches { .. } => op::CHECK_WATCHES,
            Request::RemoveWatches { .. } => op::REMOVE_WATCHES,
            Request::GetEphemerals { .. } => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
            Request::WhoAmI => op::WHO_AM_I,
            Request::Auth { .. } => op::AUTH,
            Request::CloseSession => op::CLOSE_SESSION,
            Request::Unimplemented(o) => *o,
        }
    }

    /// Whether the request changes state (and so becomes a transaction with its own zxid).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Check { .. }
                | Request::Multi(_)
                | Request::CloseSession
        )
    }
}

/// Smallest encoding of a `MultiHeader` (type + done + err).
const MULTI_HEADER_SIZE: usize = 9;

fn decode_multi(r: &mut Reader<'_>, read_only: bool) -> Result<Vec<Request>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let offset = r.offset();
        let kind = r.read_i32()?;
        let done = r.read_bool()?;
        let _err = r.read_i32()?;
        if done {
            return Ok(ops);
        }
        let allowed = if read_only {
            matches!(kind, op::GET_CHILDREN | op::GET_DATA)
        } else {
            matches!(
                kind,
                op::CREATE
                    | op::CREATE2
                    | op::CREATE_CONTAINER
                    | op::CREATE_TTL
                    | op::DELETE
                    | op::SET_DATA
                    | op::CHECK
            )
        };
        if !allowed {
            return Err(DecodeError::InvalidValue {
                offset,
                what: "multi op type",
                value: i64::from(kind),
            });
        }
        let mut req = Request::decode(kind, r)?;
        if let Request::Create {
            op: create_op,
            req: cr,
        } = &mut req
        {
            // ZooKeeper rebuilds each create of a multi with `Op.create(path, data, acl, flags)`,
            // whose opcode follows the flags: TTL modes -> createTTL, container -> createContainer,
            // anything else -> plain create (so a create2 answers without a Stat).
            *create_op = match cr.flags {
                5 | 6 => op::CREATE_TTL,
                4 => op::CREATE_CONTAINER,
                _ => op::CREATE,
            };
        }
        ops.push(req);
        // Each op consumed at least one header; the loop is bounded by the input length.
        debug_assert!(r.offset() >= offset + MULTI_HEADER_SIZE);
    }
}

/// One op's result inside a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create { path: String },
    Create2 { path: String, stat: Stat },
    Delete,
    SetData { stat: Stat },
    Check,
    GetData { data: Option<Vec<u8>>, stat: Stat },
    GetChildren { children: Vec<String> },
    Error(i32),
}

/// A reply body; [`Response::Empty`] for ops whose reply is the header alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Empty,
    Create {
        path: String,
    },
    Create2 {
        path: String,
        stat: Stat,
    },
    Stat(Stat),
    GetData {
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    GetAcl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    Children(Vec<String>),
    Children2 {
        children: Vec<String>,
        stat: Stat,
    },
    Path(String),
    Multi(Vec<OpResult>),
    Strings(Vec<String>),
    Number(i32),
    /// `ErrorResponse{0}` (addWatch).
    ErrorBody(i32),
    WhoAmI(Vec<(String, String)>),
}

impl Response {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Path(path) => w.write_ustring(path),
            Response::Create2 { path, stat } => {
                w.write_ustring(path);
                stat.encode(w);
            }
            Response::Stat(stat) => stat.encode(w),
            Response::GetData { data, stat } => {
                w.write_buffer(data.as_deref());
                stat.encode(w);
            }
            Response::GetAcl { acl, stat } => {
                encode_acls(acl, w);
                stat.encode(w);
            }
            Response::Children(c) | Response::Strings(c) => w.write_string_vec(c),
            Response::Children2 { children, stat } => {
                w.write_string_vec(children);
                stat.encode(w);
            }
            Response::Multi(results) => {
                for res in results {
                    let (kind, err) = match res {
                        OpResult::Create { .. } => (op::CREATE, 0),
                        OpResult::Create2 { .. } => (op::CREATE2, 0),
                        OpResult::Delete => (op::DELETE, 0),
                        OpResult::SetData { .. } => (op::SET_DATA, 0),
                        OpResult::Check => (op::CHECK, 0),
                        OpResult::GetData { .. } => (op::GET_DATA, 0),
                        OpResult::GetChildren { .. } => (op::GET_CHILDREN, 0),
                        OpResult::Error(e) => (op::ERROR, *e),
                    };
                    w.write_i32(kind);
                    w.write_bool(false);
                    w.write_i32(err);
                    match res {
                        OpResult::Create { path } => w.write_ustring(path),
                        OpResult::Create2 { path, stat } => {
                            w.write_ustring(path);
                            stat.encode(w);
                        }
                        OpResult::Delete | OpResult::Check => {}
                        OpResult::SetData { stat } => stat.encode(w),
                        OpResult::GetData { data, stat } => {
                            w.write_buffer(data.as_deref());
                            stat.encode(w);
                        }
                        OpResult::GetChildren { children } => w.write_string_vec(children),
                        OpResult::Error(e) => w.write_i32(*e),
                    }
                }
                w.write_i32(-1);
                w.write_bool(true);
                w.write_i32(-1);
            }
            Response::Number(n) | Response::ErrorBody(n) => w.write_i32(*n),
            Response::WhoAmI(infos) => {
                w.write_count(infos.len());
                for (scheme, user) in infos {
                    w.write_ustring(scheme);
                    w.write_ustring(user);
                }
            }
        }
    }
}

/// A `WatcherEvent` as sent with xid -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    pub kind: i32,
    pub state: i32,
    pub path: String,
}

impl WatcherEvent {
    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.kind);
        w.write_i32(self.state);
        w.write_ustring(&self.path);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            kind: r.read_i32()?,
            state: r.read_i32()?,
            path: r.read_ustring()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(req: Request) {
        let mut w = Writer::new();
        req.encode(&mut w);
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes, 1 << 20);
        let back = Request::decode(req.opcode(), &mut r).unwrap();
        assert_eq!(back, req);
        assert!(r.is_empty());
    }

    #[test]
    fn requests_round_trip() {
        round_trip(Request::Create {
            op: op::CREATE_TTL,
            req: CreateRequest {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                acl: Acl::open_unsafe(),
                flags: 5,
                ttl: 100,
            },
        });
        round_trip(Request::Multi(vec![
            Request::Check {
                path: "/a".into(),
                version: 3,
            },
            Request::Delete {
                path: "/a".into(),
                version: -1,
            },
        ]));
        round_trip(Request::SetAcl {
            path: "/b".into(),
            acl: Acl::read_unsafe(),
            version: 2,
        });
        round_trip(Request::SetData {
            path: "/b".into(),
            data: None,
            version: -1,
        });
    }

    #[test]
    fn connect_request_with_and_without_read_only_byte() {
        let mut req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 30000,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: None,
        };
        for ro in [None, Some(false)] {
            req.read_only = ro;
            let mut w = Writer::new();
            req.encode(&mut w);
            let bytes = w.into_inner();
            assert_eq!(bytes.len(), if ro.is_some() { 45 } else { 44 });
            assert_eq!(
                ConnectRequest::decode(&mut Reader::new(&bytes, 1 << 20)).unwrap(),
                req
            );
        }
    }

    #[test]
    fn creates_inside_multi_take_their_opcode_from_the_flags() {
        let mk = |op, flags| Request::Create {
            op,
            req: CreateRequest {
                path: "/a".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags,
                ttl: -1,
            },
        };
        let mut w = Writer::new();
        Request::Multi(vec![
            mk(op::CREATE2, 2),
            mk(op::CREATE2, 4),
            mk(op::CREATE_CONTAINER, 0),
        ])
        .encode(&mut w);
        let bytes = w.into_inner();
        let Request::Multi(ops) =
            Request::decode(op::MULTI, &mut Reader::new(&bytes, 1 << 20)).unwrap()
        else {
            panic!("not a multi")
        };
        let ops: Vec<i32> = ops.iter().map(Request::opcode).collect();
        assert_eq!(ops, vec![op::CREATE, op::CREATE_CONTAINER, op::CREATE]);
    }

    #[test]
    fn unknown_opcode_decodes_as_unimplemented() {
        let mut r = Reader::new(&[], 10);
        assert_eq!(
            Request::decode(999, &mut r).unwrap(),
            Request::Unimplemented(999)
        );
    }

    #[test]
    fn multi_with_read_op_is_refused() {
        let mut w = Writer::new();
        Request::MultiRead(vec![Request::GetData {
            path: "/".into(),
            watch: false,
        }])
        .encode(&mut w);
        let bytes = w.into_inner();
        assert!(Request::decode(op::MULTI, &mut Reader::new(&bytes, 1 << 20)).is_err());
    }
}
