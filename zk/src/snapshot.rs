//! Snapshot file format: the whole state at one zxid, sealed with a CRC-32C.
//!
//! ```text
//! 0   4  magic "KZSN"
//! 4   4  version = 1 (u32, big-endian)
//! 8   8  body length (u64)
//! 16  4  CRC-32C of the body (u32)
//! 20  .  body (jute):
//!        last_zxid:i64  log_offset:i64       (txn-log offset just after last_zxid's txn)
//!        sessions: count:i32, then (id:i64 timeout_ms:i32)*
//!        nodes: count:i32, then (path data:buffer acl:vector<ACL> czxid mzxid ctime mtime:i64
//!               version cversion aversion:i32 ephemeralOwner pzxid:i64)*   parents first
//! ```
//! A file whose magic, version, length or CRC does not match is not a snapshot (recovery falls
//! back to the next older one). Encoding and decoding are pure.
//!
//! Taking a snapshot has two halves: [`Frozen::capture`] runs on the shard and costs O(sessions)
//! (the tree is frozen in O(1), see [`crate::tree`]); [`Frozen::encode`] walks the whole tree and
//! runs on another thread while the shard goes on applying writes. The snapshot is exact at
//! `last_zxid` (not fuzzy), so replay after it needs no idempotence.

use thiserror::Error;

use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::{decode_acls, encode_acls};
use crate::session::{SessionMeta, Sessions};
use crate::state::ZkState;
use crate::tree::{DataTree, Node, SessionId, TreeView, Zxid};

const MAGIC: &[u8; 4] = b"KZSN";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;
/// Bound on any one field when reading a snapshot (node data is bounded by jute.maxbuffer when
/// written, so this is generous).
const FIELD_BYTES_MAX: usize = 256 << 20;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("not a Kiln snapshot (bad magic or version)")]
    BadHeader,
    #[error("truncated snapshot: header says {expected} body bytes, file has {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error("snapshot checksum mismatch")]
    Checksum,
    #[error("snapshot body: {0}")]
    Decode(#[from] DecodeError),
}

/// What a snapshot holds.
#[derive(Debug)]
pub struct Snapshot {
    pub last_zxid: Zxid,
    pub log_offset: u64,
    pub sessions: Sessions,
    pub tree: DataTree,
}

/// The state at one zxid, detached from the live state: `Send`, encodable on any thread.
#[derive(Debug, Clone)]
pub struct Frozen {
    pub last_zxid: Zxid,
    pub log_offset: u64,
    pub sessions: Vec<(SessionId, SessionMeta)>,
    pub tree: TreeView,
}

impl Frozen {
    /// Freezes `state` as it is now; `log_offset` is where replay after this snapshot starts.
    pub fn capture(state: &ZkState, log_offset: u64) -> Self {
        Self {
            last_zxid: state.last_zxid(),
            log_offset,
            sessions: state.sessions.iter().collect(),
            tree: state.tree.view(),
        }
    }

    /// The snapshot file body (the expensive half: it visits every node).
    pub fn encode(&self) -> Vec<u8> {
        encode(self.last_zxid, self.log_offset, &self.sessions, &self.tree)
    }
}

/// Encodes the state at `last_zxid`.
pub fn encode(
    last_zxid: Zxid,
    log_offset: u64,
    sessions: &[(SessionId, SessionMeta)],
    tree: &TreeView,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + tree.data_bytes() as usize + tree.node_count() * 96);
    w.write_i64(last_zxid);
    w.write_i64(i64::try_from(log_offset).unwrap_or(i64::MAX));
    w.write_count(sessions.len());
    for (id, meta) in sessions {
        w.write_i64(*id);
        w.write_i32(meta.timeout_ms);
    }
    let nodes = tree.sorted_nodes();
    w.write_count(nodes.len());
    for (path, n) in nodes {
        w.write_ustring(path);
        w.write_buffer(n.data.as_deref());
        encode_acls(&n.acl, &mut w);
        w.write_i64(n.czxid);
        w.write_i64(n.mzxid);
        w.write_i64(n.ctime);
        w.write_i64(n.mtime);
        w.write_i32(n.version);
        w.write_i32(n.cversion);
        w.write_i32(n.aversion);
        w.write_i64(n.ephemeral_owner);
        w.write_i64(n.pzxid);
    }
    let body = w.into_inner();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let header = bytes.get(..HEADER_LEN).ok_or(SnapshotError::BadHeader)?;
    let (magic, rest) = header.split_at(4);
    let (version, rest) = rest.split_at(4);
    let (len, crc) = rest.split_at(8);
    if magic != MAGIC || version != VERSION.to_be_bytes() {
        return Err(SnapshotError::BadHeader);
    }
    let len = u64::from_be_bytes(len.try_into().map_err(|_| SnapshotError::BadHeader)?);
    let crc = u32::from_be_bytes(crc.try_into().map_err(|_| SnapshotError::BadHeader)?);
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    if body.len() as u64 != len {
        return Err(SnapshotError::Truncated {
            expected: len,
            actual: body.len() as u64,
        });
    }
    if crc32c::crc32c(body) != crc {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader::new(body, FIELD_BYTES_MAX);
    let last_zxid = r.read_i64()?;
    let log_offset = u64::try_from(r.read_i64()?).unwrap_or(0);
    let mut sessions = Sessions::default();
    let n = r.read_count(12)?.unwrap_or(0);
    for _ in 0..n {
        let id = r.read_i64()?;
        let timeout_ms = r.read_i32()?;
        sessions.insert(id, SessionMeta { timeout_ms });
    }
    let n = r.read_count(60)?.unwrap_or(0);
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let path = r.read_ustring()?;
        let data = r.read_buffer()?;
        let acl = decode_acls(&mut r)?;
        let node = Node {
            data,
            acl,
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            pzxid: r.read_i64()?,
            children: Default::default(),
        };
        nodes.push((path, node));
    }
    Ok(Snapshot {
        last_zxid,
        log_offset,
        sessions,
        tree: DataTree::from_nodes(nodes),
    })
}

/// Bytes at the start of a snapshot payload that [`peek`] needs.
pub const PEEK_BYTES: usize = HEADER_LEN + 16;

/// `(last_zxid, log_offset)` from the first [`PEEK_BYTES`] of a payload, without reading or
/// verifying the rest (autopurge uses it to find the log a kept snapshot needs).
pub fn peek(prefix: &[u8]) -> Option<(Zxid, u64)> {
    let magic = prefix.get(..4)?;
    let version = prefix.get(4..8)?;
    if magic != MAGIC || version != VERSION.to_be_bytes() {
        return None;
    }
    let zxid = i64::from_be_bytes(prefix.get(HEADER_LEN..HEADER_LEN + 8)?.try_into().ok()?);
    let offset = i64::from_be_bytes(
        prefix
            .get(HEADER_LEN + 8..HEADER_LEN + 16)?
            .try_into()
            .ok()?,
    );
    Some((zxid, u64::try_from(offset).ok()?))
}

/// `snapshot.<zxid as 16 hex digits>`, so names sort by zxid.
pub fn file_name(zxid: Zxid) -> String {
    format!("snapshot.{zxid:016x}")
}

pub fn parse_file_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_prefix("snapshot.")?;
    if hex.len() != 16 {
        return None;
    }
    i64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Acl;

    #[test]
    fn round_trips_and_detects_corruption() {
        let mut tree = DataTree::new();
        let mut ev = Vec::new();
        tree.create(
            "/a",
            Some(b"x".to_vec()),
            Acl::open_unsafe(),
            9,
            1,
            3,
            4,
            None,
            &mut ev,
        )
        .unwrap();
        tree.create("/a/b", None, Acl::open_unsafe(), 0, 1, 4, 5, None, &mut ev)
            .unwrap();
        let mut sessions = Sessions::default();
        sessions.insert(9, SessionMeta { timeout_ms: 4000 });
        let bytes = encode(
            4,
            17,
            &[(9, SessionMeta { timeout_ms: 4000 })],
            &tree.view(),
        );
        assert_eq!(peek(&bytes[..PEEK_BYTES]), Some((4, 17)));
        assert_eq!(peek(&bytes[..PEEK_BYTES - 1]), None);
        let snap = decode(&bytes).unwrap();
        assert_eq!((snap.last_zxid, snap.log_offset), (4, 17));
        assert_eq!(snap.sessions, sessions);
        assert_eq!(snap.tree.sorted_nodes(), tree.sorted_nodes());
        assert_eq!(snap.tree.ephemerals_of(9), vec!["/a".to_string()]);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(decode(&bad), Err(SnapshotError::Checksum)));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Truncated { .. })
        ));
        assert_eq!(parse_file_name(&file_name(0x1f)), Some(0x1f));
    }
}
