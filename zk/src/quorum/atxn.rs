//! ZooKeeper's jute transaction records, as a PROPOSAL or INFORM carries them and as ZooKeeper's
//! transaction log stores them, mapped to and from Kiln's [`Txn`].
//!
//! ```text
//! txn    = TxnHeader record [TxnDigest]          (no digest = the buffer ends after the record)
//! TxnHeader = clientId:i64 cxid:i32 zxid:i64 time:i64 type:i32
//! TxnDigest = version:i32 (=2) treeDigest:i64
//! ```
//! | type | record | Kiln |
//! |---:|---|---|
//! | 1, 15 | CreateTxn `path data acl ephemeral:bool parentCVersion:i32` | `Create`, owner = session if ephemeral, else 0 |
//! | 21 | CreateTTLTxn `path data acl parentCVersion ttl:i64` | `Create`, owner = `ttl_owner(ttl)` |
//! | 19 | CreateContainerTxn `path data acl parentCVersion` | `Create`, owner = `CONTAINER_OWNER` |
//! | 2, 20 | DeleteTxn `path` | `Delete` |
//! | 5, 16 | SetDataTxn `path data version` (the new version) | `SetData` |
//! | 7 | SetACLTxn `path acl version` (the new aversion) | `SetAcl` |
//! | 13 | CheckVersionTxn `path version` (the checked version + 1) | `Check` (the checked version) |
//! | -10 | CreateSessionTxn `timeOut:i32` | `CreateSession` |
//! | -11 | CloseSessionTxn `paths2Delete:vector<ustring>` (or nothing: older form) | `CloseSession` + the paths beside it |
//! | -1 | ErrorTxn `err:i32` | `Error` |
//! | 14 | MultiTxn `vector<Txn{type:i32 data:buffer}>` | `Multi` |
//!
//! What the mapping cannot carry, and why that is safe:
//! - Kiln's `Create` does not record whether the request was create or create2 (types 1 and 15
//!   carry the same record), nor `Delete` whether it was deleteContainer (2 and 20), nor
//!   `SetData` whether it was a reconfig (5 and 16). Decoding returns the header type beside the
//!   txn; encoding writes 1, 2 and 5 unless [`encode_apache_txn_as`] is given the original type.
//!   ZooKeeper's DataTree applies each pair identically and the tree digest does not cover the
//!   header, so followers cannot tell.
//! - Kiln's `CloseSession` deletes every ephemeral of the session when applied; ZooKeeper's
//!   carries the paths the leader chose. Both agree whenever the txn is applied to the tree it
//!   was prepared on, so the paths travel beside the txn ([`ApacheTxn::close_paths`]) and the
//!   caller supplies them when encoding.
//! - ZooKeeper's CheckVersionTxn stores the node's version plus one (skipping -1, ZOOKEEPER-4743);
//!   Kiln's `Check` stores the version checked. The codec converts; applying a check changes
//!   nothing either way.
//! - Ancient logs' CreateTxnV0 (no parentCVersion) is not read: no 3.5+ server sends it.
//!
//! Pure and bounded: `max` bounds every buffer, string and vector (derive it from
//! `jute.maxbuffer`).

use thiserror::Error;

use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::{Code, decode_acls, encode_acls, op};
use crate::tree::{CONTAINER_OWNER, NodeKind, node_kind, ttl_owner};
use crate::txn::{Txn, TxnOp};

/// The digest version 3.6+ servers compute (`DigestCalculator.DIGEST_VERSION`).
pub const DIGEST_VERSION: i32 = 2;
/// A TxnHeader: clientId, cxid, zxid, time, type.
pub const TXN_HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;
/// A TxnDigest: version, treeDigest.
pub const TXN_DIGEST_BYTES: usize = 4 + 8;

/// The trailer of a transaction: the leader's tree digest after applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnDigest {
    pub version: i32,
    pub tree_digest: i64,
}

/// A decoded ZooKeeper transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApacheTxn {
    pub txn: Txn,
    /// `CloseSessionTxn.paths2Delete`; `None` for other types and for the older empty body.
    pub close_paths: Option<Vec<String>>,
    pub digest: Option<TxnDigest>,
    /// The header's type as sent (15 create2, 20 deleteContainer, 16 reconfig are kept here).
    pub header_type: i32,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AtxnError {
    #[error("txn record: {0}")]
    Decode(#[from] DecodeError),
    #[error("multi sub-txn {index} (type {kind}): {error}")]
    InMulti {
        index: usize,
        kind: i32,
        error: DecodeError,
    },
    #[error("unknown txn type {kind} (at offset {offset})")]
    UnknownType { offset: usize, kind: i32 },
    #[error("txn type {kind} cannot appear inside a multi (sub-txn {index})")]
    NotInMulti { index: usize, kind: i32 },
    #[error("txn digest: {have} bytes after the record, expected 0 or 12")]
    DigestSize { have: usize },
    #[error("{have} trailing bytes after the txn digest")]
    TrailingBytes { have: usize },
    #[error("ephemeral owner {owner:#x} is not the txn's session {session:#x}")]
    EphemeralOwner { owner: i64, session: i64 },
    #[error("header type {header_type} cannot carry a {natural} txn")]
    HeaderType { header_type: i32, natural: i32 },
    #[error("a multi cannot contain {what}")]
    MultiContent { what: &'static str },
}

/// Decodes a PROPOSAL's (or log entry's) bytes: header, record, optional digest. `max` bounds
/// every length inside.
pub fn decode_apache_txn(bytes: &[u8], max: usize) -> Result<ApacheTxn, AtxnError> {
    let mut r = Reader::new(bytes, max);
    let session = r.read_i64()?;
    let cxid = r.read_i32()?;
    let zxid = r.read_i64()?;
    let time = r.read_i64()?;
    let type_offset = r.offset();
    let header_type = r.read_i32()?;
    let mut close_paths = None;
    let op = match header_type {
        op::CLOSE_SESSION => {
            if !r.is_empty() {
                close_paths = Some(r.read_string_vec()?);
            }
            TxnOp::CloseSession
        }
        op::MULTI => decode_multi(&mut r, session, max)?,
        kind => decode_record(&mut r, kind, session).map_err(|e| match e {
            Some(e) => AtxnError::Decode(e),
            None => AtxnError::UnknownType {
                offset: type_offset,
                kind,
            },
        })?,
    };
    let digest = match r.remaining() {
        0 => None,
        TXN_DIGEST_BYTES => Some(TxnDigest {
            version: r.read_i32()?,
            tree_digest: r.read_i64()?,
        }),
        have if have < TXN_DIGEST_BYTES => return Err(AtxnError::DigestSize { have }),
        have => {
            return Err(AtxnError::TrailingBytes {
                have: have - TXN_DIGEST_BYTES,
            });
        }
    };
    Ok(ApacheTxn {
        txn: Txn {
            session,
            cxid,
            zxid,
            time,
            op,
        },
        close_paths,
        digest,
        header_type,
    })
}

/// The record of one non-multi, non-closeSession type; `Err(None)` for an unknown type.
fn decode_record(
    r: &mut Reader<'_>,
    kind: i32,
    session: i64,
) -> Result<TxnOp, Option<DecodeError>> {
    Ok(match kind {
        op::CREATE_SESSION => TxnOp::CreateSession {
            timeout_ms: r.read_i32()?,
        },
        op::CREATE | op::CREATE2 => {
            let path = r.read_ustring()?;
            let data = r.read_buffer()?;
            let acl = decode_acls(r)?;
            let ephemeral = r.read_bool()?;
            let parent_cversion = r.read_i32()?;
            TxnOp::Create {
                path,
                data,
                acl,
                owner: if ephemeral { session } else { 0 },
                parent_cversion,
            }
        }
        op::CREATE_TTL => {
            let path = r.read_ustring()?;
            let data = r.read_buffer()?;
            let acl = decode_acls(r)?;
            let parent_cversion = r.read_i32()?;
            let ttl = r.read_i64()?;
            TxnOp::Create {
                path,
                data,
                acl,
                owner: ttl_owner(ttl),
                parent_cversion,
            }
        }
        op::CREATE_CONTAINER => TxnOp::Create {
            path: r.read_ustring()?,
            data: r.read_buffer()?,
            acl: decode_acls(r)?,
            owner: CONTAINER_OWNER,
            parent_cversion: r.read_i32()?,
        },
        op::DELETE | op::DELETE_CONTAINER => TxnOp::Delete {
            path: r.read_ustring()?,
        },
        op::SET_DATA | op::RECONFIG => TxnOp::SetData {
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
            version: r.read_i32()?.wrapping_sub(1),
        },
        op::ERROR => TxnOp::Error {
            code: r.read_i32()?,
        },
        _ => return Err(None),
    })
}

/// The sub-txn types ZooKeeper's DataTree accepts inside a multi.
fn allowed_in_multi(kind: i32) -> bool {
    matches!(
        kind,
        op::CREATE
            | op::CREATE2
            | op::CREATE_TTL
            | op::CREATE_CONTAINER
            | op::DELETE
            | op::DELETE_CONTAINER
            | op::SET_DATA
            | op::CHECK
            | op::ERROR
    )
}

/// Smallest sub-txn: type and an empty buffer.
const SUB_TXN_BYTES_MIN: usize = 8;

fn decode_multi(r: &mut Reader<'_>, session: i64, max: usize) -> Result<TxnOp, AtxnError> {
    let count = r.read_count(SUB_TXN_BYTES_MIN)?.unwrap_or(0);
    let mut ops = Vec::with_capacity(count);
    for index in 0..count {
        let kind = r.read_i32()?;
        let data = r.read_buffer()?.unwrap_or_default();
        if !allowed_in_multi(kind) {
            return Err(AtxnError::NotInMulti { index, kind });
        }
        // Like ZooKeeper, a sub-record's bytes after its fields are not looked at.
        let mut sub = Reader::new(&data, max);
        let op = decode_record(&mut sub, kind, session).map_err(|e| match e {
            Some(error) => AtxnError::InMulti { index, kind, error },
            None => AtxnError::NotInMulti { index, kind },
        })?;
        ops.push(op);
    }
    // ZooKeeper's leader writes a failed multi with the real records of the ops before the one
    // that failed, an ErrorTxn for that one and ErrorTxn(RUNTIMEINCONSISTENCY) after it, and its
    // DataTree applies none of them: each non-error sub-txn becomes ErrorTxn(OK) before the
    // first error and ErrorTxn(RUNTIMEINCONSISTENCY) after one. Kiln's failed multi is all
    // `Error`, so the same rewrite happens here.
    if ops.iter().any(|o| matches!(o, TxnOp::Error { .. })) {
        let mut after_error = false;
        for o in &mut ops {
            if matches!(o, TxnOp::Error { .. }) {
                after_error = true;
            } else {
                let code = if after_error {
                    Code::RuntimeInconsistency.as_i32()
                } else {
                    Code::Ok.as_i32()
                };
                *o = TxnOp::Error { code };
            }
        }
    }
    Ok(TxnOp::Multi(ops))
}

/// Encodes `txn` as ZooKeeper's header + record [+ digest, version 2]. `close_paths` is the
/// CloseSessionTxn's `paths2Delete` (ignored for other types). Creates are written as type 1
/// (see the module docs; [`encode_apache_txn_as`] writes create2 and the other aliases).
pub fn encode_apache_txn(
    txn: &Txn,
    close_paths: &[String],
    digest: Option<i64>,
) -> Result<Vec<u8>, AtxnError> {
    encode_apache_txn_as(txn, close_paths, digest, None)
}

/// As [`encode_apache_txn`], with the header type given: 15 (create2) for a persistent or
/// ephemeral create, 20 (deleteContainer) for a delete, 16 (reconfig) for a setData, or the type
/// the txn has anyway. Anything else is refused.
pub fn encode_apache_txn_as(
    txn: &Txn,
    close_paths: &[String],
    digest: Option<i64>,
    header_type: Option<i32>,
) -> Result<Vec<u8>, AtxnError> {
    let mut body = Writer::with_capacity(64);
    let natural = encode_op(&txn.op, txn.session, close_paths, &mut body, true)?;
    let kind = match header_type {
        None => natural,
        Some(t) if t == natural => t,
        Some(t @ op::CREATE2) if natural == op::CREATE => t,
        Some(t @ op::DELETE_CONTAINER) if natural == op::DELETE => t,
        Some(t @ op::RECONFIG) if natural == op::SET_DATA => t,
        Some(t) => {
            return Err(AtxnError::HeaderType {
                header_type: t,
                natural,
            });
        }
    };
    let body = body.into_inner();
    let mut w = Writer::with_capacity(TXN_HEADER_BYTES + body.len() + TXN_DIGEST_BYTES);
    w.write_i64(txn.session);
    w.write_i32(txn.cxid);
    w.write_i64(txn.zxid);
    w.write_i64(txn.time);
    w.write_i32(kind);
    w.write_raw(&body);
    if let Some(d) = digest {
        w.write_i32(DIGEST_VERSION);
        w.write_i64(d);
    }
    Ok(w.into_inner())
}

/// Writes `op`'s record and returns its type. `top` is false inside a multi.
fn encode_op(
    op: &TxnOp,
    session: i64,
    close_paths: &[String],
    w: &mut Writer,
    top: bool,
) -> Result<i32, AtxnError> {
    Ok(match op {
        TxnOp::CreateSession { timeout_ms } => {
            if !top {
                return Err(AtxnError::MultiContent {
                    what: "createSession",
                });
            }
            w.write_i32(*timeout_ms);
            op::CREATE_SESSION
        }
        TxnOp::CloseSession => {
            if !top {
                return Err(AtxnError::MultiContent {
                    what: "closeSession",
                });
            }
            w.write_string_vec(close_paths);
            op::CLOSE_SESSION
        }
        TxnOp::Create {
            path,
            data,
            acl,
            owner,
            parent_cversion,
        } => {
            w.write_ustring(path);
            w.write_buffer(data.as_deref());
            encode_acls(acl, w);
            match node_kind(*owner) {
                NodeKind::Persistent => {
                    w.write_bool(false);
                    w.write_i32(*parent_cversion);
                    op::CREATE
                }
                NodeKind::Ephemeral(owner) => {
                    if owner != session {
                        return Err(AtxnError::EphemeralOwner { owner, session });
                    }
                    w.write_bool(true);
                    w.write_i32(*parent_cversion);
                    op::CREATE
                }
                NodeKind::Container => {
                    w.write_i32(*parent_cversion);
                    op::CREATE_CONTAINER
                }
                NodeKind::Ttl(ttl) => {
                    w.write_i32(*parent_cversion);
                    w.write_i64(ttl);
                    op::CREATE_TTL
                }
            }
        }
        TxnOp::Delete { path } => {
            w.write_ustring(path);
            op::DELETE
        }
        TxnOp::SetData {
            path,
            data,
            version,
        } => {
            w.write_ustring(path);
            w.write_buffer(data.as_deref());
            w.write_i32(*version);
            op::SET_DATA
        }
        TxnOp::SetAcl {
            path,
            acl,
            aversion,
        } => {
            if !top {
                return Err(AtxnError::MultiContent { what: "setACL" });
            }
            w.write_ustring(path);
            encode_acls(acl, w);
            w.write_i32(*aversion);
            op::SET_ACL
        }
        TxnOp::Check { path, version } => {
            w.write_ustring(path);
            // ZooKeeper's `checkAndIncVersion`: never -1 (ZOOKEEPER-4743).
            let next = match version.wrapping_add(1) {
                -1 => 0,
                v => v,
            };
            w.write_i32(next);
            op::CHECK
        }
        TxnOp::Error { code } => {
            w.write_i32(*code);
            op::ERROR
        }
        TxnOp::Multi(ops) => {
            if !top {
                return Err(AtxnError::MultiContent { what: "a multi" });
            }
            w.write_count(ops.len());
            for sub in ops {
                let mut sw = Writer::with_capacity(64);
                let kind = encode_op(sub, session, close_paths, &mut sw, false)?;
                w.write_i32(kind);
                w.write_buffer(Some(&sw.into_inner()));
            }
            op::MULTI
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, Id};
    use crate::quorum::fuzzing::{mutations, random_inputs};

    const MAX: usize = 1 << 20;

    fn txn(op: TxnOp) -> Txn {
        Txn {
            session: 0x0300_0000_0000_1234,
            cxid: 7,
            zxid: 0x1_0000_0005,
            time: 1_700_000_000_000,
            op,
        }
    }

    fn digest_acl() -> Vec<Acl> {
        vec![
            Acl {
                perms: 31,
                id: Id::new("digest", "u:hash"),
            },
            Acl {
                perms: 1,
                id: Id::new("world", "anyone"),
            },
        ]
    }

    fn round_trip(t: &Txn, close: &[String], digest: Option<i64>) -> ApacheTxn {
        let bytes = encode_apache_txn(t, close, digest).unwrap();
        let back = decode_apache_txn(&bytes, MAX).unwrap();
        assert_eq!(&back.txn, t);
        assert_eq!(
            back.digest.map(|d| (d.version, d.tree_digest)),
            digest.map(|d| (2, d))
        );
        // Every proper prefix is refused, not misread (except where the digest would start).
        for cut in 0..bytes.len() {
            let prefix = bytes.get(..cut).unwrap();
            if let Ok(p) = decode_apache_txn(prefix, MAX) {
                let digest_cut = digest.is_some() && p.digest.is_none() && cut + 12 == bytes.len();
                let old_close = p.header_type == op::CLOSE_SESSION && cut == TXN_HEADER_BYTES;
                assert!(digest_cut || old_close, "prefix of {cut} bytes decoded");
            }
        }
        back
    }

    fn creates() -> Vec<TxnOp> {
        let session = txn(TxnOp::CloseSession).session;
        [0, session, CONTAINER_OWNER, ttl_owner(60_000)]
            .into_iter()
            .map(|owner| TxnOp::Create {
                path: "/a/b".into(),
                data: Some(b"xyz".to_vec()),
                acl: digest_acl(),
                owner,
                parent_cversion: 4,
            })
            .collect()
    }

    #[test]
    fn every_record_type_round_trips_with_and_without_digest() {
        let mut ops = creates();
        ops.extend([
            TxnOp::Create {
                path: "/n".into(),
                data: None,
                acl: Acl::open_unsafe(),
                owner: 0,
                parent_cversion: 0,
            },
            TxnOp::CreateSession { timeout_ms: 30000 },
            TxnOp::Delete { path: "/a".into() },
            TxnOp::SetData {
                path: "/a".into(),
                data: Some(vec![1, 2]),
                version: 3,
            },
            TxnOp::SetAcl {
                path: "/a".into(),
                acl: digest_acl(),
                aversion: 2,
            },
            TxnOp::Check {
                path: "/a".into(),
                version: 5,
            },
            TxnOp::Error { code: -101 },
        ]);
        for op in ops {
            for digest in [None, Some(0x1234_5678_9abc_def0), Some(-1)] {
                let back = round_trip(&txn(op.clone()), &[], digest);
                assert_eq!(back.close_paths, None);
            }
        }
    }

    #[test]
    fn header_types_follow_the_owner_kind() {
        let kinds: Vec<i32> = creates()
            .into_iter()
            .map(|op| {
                let b = encode_apache_txn(&txn(op), &[], None).unwrap();
                decode_apache_txn(&b, MAX).unwrap().header_type
            })
            .collect();
        assert_eq!(kinds, vec![1, 1, 19, 21]);
        let ttl = creates().pop().unwrap();
        let b = encode_apache_txn(&txn(ttl), &[], None).unwrap();
        // CreateTTLTxn: path data acl parentCVersion ttl; the ttl is the last 8 bytes.
        assert_eq!(b.get(b.len() - 8..).unwrap(), &60_000i64.to_be_bytes());
    }

    #[test]
    fn aliases_decode_to_the_same_txn_and_keep_their_header_type() {
        let cases = [
            (creates().remove(0), op::CREATE2),
            (creates().remove(1), op::CREATE2),
            (TxnOp::Delete { path: "/c".into() }, op::DELETE_CONTAINER),
            (
                TxnOp::SetData {
                    path: "/zookeeper/config".into(),
                    data: Some(b"version=1".to_vec()),
                    version: -1,
                },
                op::RECONFIG,
            ),
        ];
        for (op, alias) in cases {
            let t = txn(op);
            let b = encode_apache_txn_as(&t, &[], Some(9), Some(alias)).unwrap();
            let back = decode_apache_txn(&b, MAX).unwrap();
            assert_eq!((back.txn, back.header_type), (t.clone(), alias));
            let plain = encode_apache_txn(&t, &[], Some(9)).unwrap();
            assert_eq!(b.get(TXN_HEADER_BYTES..), plain.get(TXN_HEADER_BYTES..));
        }
        let t = txn(TxnOp::Delete { path: "/c".into() });
        assert_eq!(
            encode_apache_txn_as(&t, &[], None, Some(op::CREATE2)),
            Err(AtxnError::HeaderType {
                header_type: op::CREATE2,
                natural: op::DELETE
            })
        );
        let container = txn(creates().remove(2));
        assert!(encode_apache_txn_as(&container, &[], None, Some(op::CREATE2)).is_err());
    }

    #[test]
    fn set_data_matches_the_39_bytes_the_probe_saw() {
        let t = txn(TxnOp::SetData {
            path: "/probe/a".into(),
            data: Some(b"changed".to_vec()),
            version: 1,
        });
        let b = encode_apache_txn(&t, &[], Some(0x0123_4567_89ab_cdef)).unwrap();
        assert_eq!(b.len(), TXN_HEADER_BYTES + 39);
        let mut record = Vec::new();
        record.extend_from_slice(&8i32.to_be_bytes());
        record.extend_from_slice(b"/probe/a");
        record.extend_from_slice(&7i32.to_be_bytes());
        record.extend_from_slice(b"changed");
        record.extend_from_slice(&1i32.to_be_bytes());
        record.extend_from_slice(&2i32.to_be_bytes());
        record.extend_from_slice(&0x0123_4567_89ab_cdefi64.to_be_bytes());
        assert_eq!(b.get(TXN_HEADER_BYTES..).unwrap(), &record[..]);
        let mut header = Vec::new();
        header.extend_from_slice(&0x0300_0000_0000_1234i64.to_be_bytes());
        header.extend_from_slice(&7i32.to_be_bytes());
        header.extend_from_slice(&0x1_0000_0005i64.to_be_bytes());
        header.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        header.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(b.get(..TXN_HEADER_BYTES).unwrap(), &header[..]);
    }

    #[test]
    fn close_session_carries_its_paths_or_the_older_empty_body() {
        let t = txn(TxnOp::CloseSession);
        let paths = vec!["/e1".to_string(), "/x/e2".to_string()];
        let back = round_trip(&t, &paths, Some(5));
        assert_eq!(back.close_paths, Some(paths));
        let back = round_trip(&t, &[], None);
        assert_eq!(back.close_paths, Some(vec![]));
        // The body-less form: the header alone.
        let b = encode_apache_txn(&t, &[], None).unwrap();
        let old = decode_apache_txn(b.get(..TXN_HEADER_BYTES).unwrap(), MAX).unwrap();
        assert_eq!((old.txn, old.close_paths, old.digest), (t, None, None));
    }

    #[test]
    fn check_version_is_zookeepers_incremented_version() {
        let t = txn(TxnOp::Check {
            path: "/a".into(),
            version: 5,
        });
        let b = encode_apache_txn(&t, &[], None).unwrap();
        assert_eq!(b.get(b.len() - 4..).unwrap(), &6i32.to_be_bytes());
        let wrap = txn(TxnOp::Check {
            path: "/a".into(),
            version: -2,
        });
        let b = encode_apache_txn(&wrap, &[], None).unwrap();
        assert_eq!(b.get(b.len() - 4..).unwrap(), &0i32.to_be_bytes());
    }

    #[test]
    fn multi_round_trips_including_a_failed_multi() {
        let mut ops = creates();
        ops.extend([
            TxnOp::Delete { path: "/d".into() },
            TxnOp::SetData {
                path: "/a".into(),
                data: None,
                version: 9,
            },
            TxnOp::Check {
                path: "/a".into(),
                version: 8,
            },
        ]);
        round_trip(&txn(TxnOp::Multi(ops)), &[], Some(77));
        let failed = TxnOp::Multi(vec![
            TxnOp::Error { code: 0 },
            TxnOp::Error { code: -110 },
            TxnOp::Error { code: -2 },
        ]);
        let back = round_trip(&txn(failed), &[], Some(78));
        assert_eq!(back.header_type, op::MULTI);
        round_trip(&txn(TxnOp::Multi(vec![])), &[], None);
    }

    #[test]
    fn a_failed_multi_as_zookeeper_writes_it_applies_nothing() {
        // Captured from ZooKeeper 3.8.0: a multi of create /kiln/post/multi-never and a version
        // check that failed (-103, BadVersion). The create keeps its CreateTxn record.
        let captured = "0100002201d600010000001f0000000100000034000001a2539ef5700000000e0000000200\
                        00000100000049000000162f6b696c6e2f706f73742f6d756c74692d6e65766572000000\
                        0b726f6c6c6564206261636b000000010000001f00000005776f726c6400000006616e79\
                        6f6e650000000014ffffffff00000004ffffff99000000020000000e1e34d039";
        let bytes: Vec<u8> = (0..captured.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&captured[i..i + 2], 16).unwrap())
            .collect();
        let t = decode_apache_txn(&bytes, 1 << 20).unwrap();
        assert_eq!(t.header_type, op::MULTI);
        assert_eq!(
            t.txn.op,
            TxnOp::Multi(vec![TxnOp::Error { code: 0 }, TxnOp::Error { code: -103 }])
        );
        assert_eq!(t.digest.map(|d| d.tree_digest), Some(0xe_1e34_d039));
        // A real record after an error reads as RUNTIMEINCONSISTENCY, as ZooKeeper's DataTree
        // rewrites it.
        let mut ops = vec![TxnOp::Error { code: -101 }];
        ops.extend(creates().into_iter().take(1));
        let b = encode_apache_txn(&txn(TxnOp::Multi(ops)), &[], None).unwrap();
        assert_eq!(
            decode_apache_txn(&b, 1 << 20).unwrap().txn.op,
            TxnOp::Multi(vec![TxnOp::Error { code: -101 }, TxnOp::Error { code: -2 }])
        );
    }

    #[test]
    fn multi_refuses_what_zookeeper_refuses() {
        for sub in [
            TxnOp::Multi(vec![]),
            TxnOp::CloseSession,
            TxnOp::CreateSession { timeout_ms: 1 },
            TxnOp::SetAcl {
                path: "/a".into(),
                acl: vec![],
                aversion: 1,
            },
        ] {
            let t = txn(TxnOp::Multi(vec![sub]));
            assert!(matches!(
                encode_apache_txn(&t, &[], None),
                Err(AtxnError::MultiContent { .. })
            ));
        }
        // A multi whose sub-txn is a setACL (type 7), hand-built.
        let mut w = Writer::new();
        w.write_i64(1);
        w.write_i32(1);
        w.write_i64(1);
        w.write_i64(1);
        w.write_i32(op::MULTI);
        w.write_count(1);
        w.write_i32(op::SET_ACL);
        w.write_buffer(Some(&[]));
        assert_eq!(
            decode_apache_txn(&w.into_inner(), MAX),
            Err(AtxnError::NotInMulti { index: 0, kind: 7 })
        );
        // A sub-record cut short.
        let mut w = Writer::new();
        w.write_raw(&[0; 28]);
        w.write_i32(op::MULTI);
        w.write_count(1);
        w.write_i32(op::DELETE);
        w.write_buffer(Some(&[0, 0, 0, 9, b'/']));
        assert!(matches!(
            decode_apache_txn(&w.into_inner(), MAX),
            Err(AtxnError::InMulti {
                index: 0,
                kind: 2,
                ..
            })
        ));
    }

    #[test]
    fn ephemeral_of_another_session_cannot_be_encoded() {
        let t = txn(TxnOp::Create {
            path: "/e".into(),
            data: None,
            acl: vec![],
            owner: 42,
            parent_cversion: 1,
        });
        assert_eq!(
            encode_apache_txn(&t, &[], None),
            Err(AtxnError::EphemeralOwner {
                owner: 42,
                session: t.session
            })
        );
    }

    #[test]
    fn truncated_oversized_and_unknown_inputs_are_refused() {
        let t = txn(TxnOp::SetData {
            path: "/a".into(),
            data: Some(vec![0; 100]),
            version: 1,
        });
        let b = encode_apache_txn(&t, &[], Some(1)).unwrap();
        assert!(matches!(
            decode_apache_txn(&b, 99),
            Err(AtxnError::Decode(DecodeError::TooLong { len: 100, .. }))
        ));
        let mut partial_digest = b.clone();
        partial_digest.truncate(b.len() - 4);
        assert_eq!(
            decode_apache_txn(&partial_digest, MAX),
            Err(AtxnError::DigestSize { have: 8 })
        );
        let mut trailing = b;
        trailing.push(0);
        assert_eq!(
            decode_apache_txn(&trailing, MAX),
            Err(AtxnError::TrailingBytes { have: 1 })
        );
        let mut unknown = vec![0; 28];
        unknown.extend_from_slice(&99i32.to_be_bytes());
        assert_eq!(
            decode_apache_txn(&unknown, MAX),
            Err(AtxnError::UnknownType {
                offset: 28,
                kind: 99
            })
        );
        // A multi claiming 2^31-1 sub-txns is refused before allocating.
        let mut huge = vec![0; 28];
        huge.extend_from_slice(&op::MULTI.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_apache_txn(&huge, MAX),
            Err(AtxnError::Decode(DecodeError::CountTooLarge { .. }))
        ));
        assert!(decode_apache_txn(&[], MAX).is_err());
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut inputs = random_inputs(0x2545_f491_4f6c_dd1d, 2000, 80);
        let mut ops = creates();
        ops.push(TxnOp::Check {
            path: "/a".into(),
            version: 1,
        });
        let multi = encode_apache_txn(&txn(TxnOp::Multi(ops)), &[], Some(1)).unwrap();
        inputs.extend(mutations(&multi, 1));
        let close = encode_apache_txn(&txn(TxnOp::CloseSession), &["/e".into()], None).unwrap();
        inputs.extend(mutations(&close, 2));
        for b in &inputs {
            if let Ok(t) = decode_apache_txn(b, 256) {
                let paths = t.close_paths.clone().unwrap_or_default();
                let digest = t.digest.map(|d| d.tree_digest);
                if let Ok(again) = encode_apache_txn_as(&t.txn, &paths, digest, Some(t.header_type))
                {
                    assert_eq!(decode_apache_txn(&again, 256).unwrap().txn, t.txn);
                }
            }
        }
    }
}
