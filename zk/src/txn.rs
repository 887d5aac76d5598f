//! Transactions: what a write request becomes once validated, and what the log stores.
//!
//! A transaction carries every decision already made (the final sequential name, the new version,
//! the parent's new cversion, the session id, the time), so applying it is deterministic: the same
//! log replayed onto the same snapshot gives the same tree. This is the unit an ensemble will
//! replicate.
//!
//! Encoding (jute, big-endian), one record per transaction:
//! ```text
//! session:i64 cxid:i32 zxid:i64 time:i64 op
//! op = type:i32 body      (type as in ZooKeeper's OpCode; Error = -1)
//! ```

use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::{Acl, decode_acls, encode_acls, op};
use crate::tree::{SessionId, Zxid};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    CreateSession {
        timeout_ms: i32,
    },
    /// Deletes every ephemeral of the transaction's session.
    CloseSession,
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        owner: i64,
        parent_cversion: i32,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        aversion: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// A multi: all ops succeed, or all are `Error` (the failed multi, kept for its zxid).
    Multi(Vec<TxnOp>),
    Error {
        code: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub session: SessionId,
    pub cxid: i32,
    pub zxid: Zxid,
    pub time: i64,
    pub op: TxnOp,
}

/// Transactions are read from Kiln's own log, whose records are already bounded by the log
/// format; this bounds any one field.
pub const TXN_FIELD_BYTES_MAX: usize = 64 << 20;

impl TxnOp {
    fn encode(&self, w: &mut Writer) {
        match self {
            TxnOp::CreateSession { timeout_ms } => {
                w.write_i32(op::CREATE_SESSION);
                w.write_i32(*timeout_ms);
            }
            TxnOp::CloseSession => w.write_i32(op::CLOSE_SESSION),
            TxnOp::Create {
                path,
                data,
                acl,
                owner,
                parent_cversion,
            } => {
                w.write_i32(op::CREATE);
                w.write_ustring(path);
                w.write_buffer(data.as_deref());
                encode_acls(acl, w);
                w.write_i64(*owner);
                w.write_i32(*parent_cversion);
            }
            TxnOp::Delete { path } => {
                w.write_i32(op::DELETE);
                w.write_ustring(path);
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                w.write_i32(op::SET_DATA);
                w.write_ustring(path);
                w.write_buffer(data.as_deref());
                w.write_i32(*version);
            }
            TxnOp::SetAcl {
                path,
                acl,
                aversion,
            } => {
                w.write_i32(op::SET_ACL);
                w.write_ustring(path);
                encode_acls(acl, w);
                w.write_i32(*aversion);
            }
            TxnOp::Check { path, version } => {
                w.write_i32(op::CHECK);
                w.write_ustring(path);
                w.write_i32(*version);
            }
            TxnOp::Multi(ops) => {
                w.write_i32(op::MULTI);
                w.write_count(ops.len());
                for o in ops {
                    o.encode(w);
                }
            }
            TxnOp::Error { code } => {
                w.write_i32(op::ERROR);
                w.write_i32(*code);
            }
        }
    }

    fn decode(r: &mut Reader<'_>, depth: u8) -> Result<Self, DecodeError> {
        let offset = r.offset();
        let kind = r.read_i32()?;
        Ok(match kind {
            op::CREATE_SESSION => TxnOp::CreateSession {
                timeout_ms: r.read_i32()?,
            },
            op::CLOSE_SESSION => TxnOp::CloseSession,
            op::CREATE => TxnOp::Create {
                path: r.read_ustring()?,
                data: r.read_buffer()?,
                acl: decode_acls(r)?,
                owner: r.read_i64()?,
                parent_cversion: r.read_i32()?,
            },
            op::DELETE => TxnOp::Delete {
                path: r.read_ustring()?,
            },
            op::SET_DATA => TxnOp::SetData {
                path: r.read_ustring()?,
                data: r.read_buffer()?,
                version: r.read_i32()?,
            },
            op::SET_ACL => TxnOp::SetAcl {
                path: r.read_ustring()?,
                acl: decode_acls(r)?,
                aversion: r.read_i32()?,
            },
            op::CHECK => TxnOp::Check {
                path: r.read_ustring()?,
                version: r.read_i32()?,
            },
            op::MULTI if depth == 0 => TxnOp::Multi(r.read_vec(4, |r| TxnOp::decode(r, 1))?),
            op::ERROR => TxnOp::Error {
                code: r.read_i32()?,
            },
            other => {
                return Err(DecodeError::InvalidValue {
                    offset,
                    what: "txn type",
                    value: i64::from(other),
                });
            }
        })
    }
}

impl Txn {
    pub fn encode(&self, w: &mut Writer) {
        w.write_i64(self.session);
        w.write_i32(self.cxid);
        w.write_i64(self.zxid);
        w.write_i64(self.time);
        self.op.encode(w);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_inner()
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: r.read_i64()?,
            cxid: r.read_i32()?,
            zxid: r.read_i64()?,
            time: r.read_i64()?,
            op: TxnOp::decode(r, 0)?,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(&mut Reader::new(bytes, TXN_FIELD_BYTES_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_round_trips() {
        let t = Txn {
            session: 7,
            cxid: 3,
            zxid: 9,
            time: 11,
            op: TxnOp::Multi(vec![
                TxnOp::Create {
                    path: "/a".into(),
                    data: None,
                    acl: Acl::open_unsafe(),
                    owner: 7,
                    parent_cversion: 2,
                },
                TxnOp::SetData {
                    path: "/a".into(),
                    data: Some(vec![1]),
                    version: 1,
                },
                TxnOp::Error { code: -2 },
            ]),
        };
        assert_eq!(Txn::from_bytes(&t.to_bytes()).unwrap(), t);
    }
}
