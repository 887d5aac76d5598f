//! The SNAP stream: what a leader writes after a `SNAP` packet to a learner too far behind for a
//! DIFF, as ZooKeeper's `SerializeUtils.serializeSnapshot`, `ReferenceCountedACLCache.serialize`
//! and `DataTree.serializeNode` write it. No length prefix, no checksum:
//!
//! ```text
//! sessionCount:i32  (sessionId:i64 timeout:i32)*
//! aclCacheSize:i32  (aclIndex:i64 n:i32 (perms:i32 scheme:ustring id:ustring)*n)*
//! (path:ustring data:buffer aclIndex:i64
//!  czxid mzxid ctime mtime:i64 version cversion aversion:i32 ephemeralOwner pzxid:i64)*
//!                                     -- parents before children, the root first as ""
//! "/":ustring                         -- end of nodes
//! "BenWasHere":ustring                -- signature, checked by the learner
//! ```
//! - `aclIndex` -1 means OPEN_ACL_UNSAFE without a cache entry (ZooKeeper gives its built-in root,
//!   `/zookeeper` and `/zookeeper/quota` nodes -1). Every other ACL list, OPEN_ACL_UNSAFE
//!   included when a client sets it, has a cached index: the encoder assigns 1, 2, ... to the
//!   distinct lists in the order it first meets them, as ZooKeeper's cache numbers them, and
//!   never writes -1.
//! - The stat is StatPersisted: `cversion` as stored, `ephemeralOwner` raw (containers and TTL
//!   nodes keep their markers), no `dataLength`/`numChildren` (Kiln derives both).
//! - The stream includes `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`, as
//!   ZooKeeper's does.
//!
//! The encoder walks the tree in preorder (children in name order). The decoder is incremental
//! ([`SnapDecoder::feed`] consumes whole items as bytes arrive) and bounded by [`SnapLimits`]: a
//! count is checked against its limit before anything is reserved. Its output feeds
//! [`DataTree::from_nodes`]. Pure, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::Acl;
use crate::session::SessionMeta;
use crate::tree::{Children, DataTree, Node, SessionId};

/// The signature after the nodes (`Learner.syncWithLeader` checks it).
pub const SIGNATURE: &str = "BenWasHere";
/// The ACL index meaning OPEN_ACL_UNSAFE (`ReferenceCountedACLCache.OPEN_UNSAFE_ACL_ID`).
pub const OPEN_ACL_INDEX: i64 = -1;
/// The path that ends the node list.
const END_OF_NODES: &str = "/";

/// Bounds on what one stream may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapLimits {
    pub sessions_max: usize,
    pub acl_lists_max: usize,
    /// Entries in one ACL list.
    pub acl_entries_max: usize,
    pub nodes_max: usize,
    /// Any one path, data buffer or ACL string (derive it from `jute.maxbuffer`).
    pub field_bytes_max: usize,
}

impl SnapLimits {
    /// Generous bounds for a server with `jute.maxbuffer` = `field_bytes_max`.
    pub fn new(field_bytes_max: usize) -> Self {
        Self {
            sessions_max: 1 << 22,
            acl_lists_max: 1 << 20,
            acl_entries_max: 1 << 10,
            nodes_max: 1 << 26,
            field_bytes_max,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SnapError {
    #[error("SNAP stream, {what}: {error}")]
    Decode {
        what: &'static str,
        error: DecodeError,
    },
    #[error("SNAP stream: {count} {what} exceed the limit of {max}")]
    TooMany {
        what: &'static str,
        count: i64,
        max: usize,
    },
    #[error("SNAP stream: ACL index {index} listed twice")]
    DuplicateAclIndex { index: i64 },
    #[error("SNAP stream: node {path:?} refers to ACL index {index}, which is not in the cache")]
    UnknownAcl { path: String, index: i64 },
    #[error("SNAP stream: the first node is {path:?}, not the root \"\"")]
    FirstNotRoot { path: String },
    #[error("SNAP stream: node {path:?} comes before its parent")]
    MissingParent { path: String },
    #[error("SNAP stream: node {path:?} listed twice")]
    DuplicatePath { path: String },
    #[error("SNAP stream: the node list ended without a root")]
    NoRoot,
    #[error("SNAP stream: signature {found:?} instead of \"BenWasHere\"")]
    BadSignature { found: String },
    #[error("SNAP stream ended early (in {state})")]
    Incomplete { state: &'static str },
}

/// What a SNAP stream holds, ready for [`DataTree::from_nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapContents {
    pub sessions: Vec<(SessionId, SessionMeta)>,
    /// Paths as Kiln names them (the root is `/`), parents first; children sets are empty.
    pub nodes: Vec<(String, Node)>,
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// Encodes the stream for `sessions` and `nodes` (from [`DataTree::sorted_nodes`] or a frozen
/// view's). Nodes whose parent is missing from `nodes` are not reached and so not written.
pub fn encode_snap(
    sessions: &[(SessionId, SessionMeta)],
    nodes: &BTreeMap<&str, &Node>,
) -> Vec<u8> {
    let order = preorder(nodes);
    let mut index_of: HashMap<&[Acl], i64> = HashMap::new();
    let mut lists: Vec<&[Acl]> = Vec::new();
    for (_, node) in &order {
        let acl = node.acl.as_slice();
        if !index_of.contains_key(acl) {
            lists.push(acl);
            index_of.insert(acl, i64::try_from(lists.len()).unwrap_or(i64::MAX));
        }
    }
    let data_bytes: usize = order.iter().map(|(_, n)| n.data_len()).sum();
    let mut w = Writer::with_capacity(64 + sessions.len() * 12 + data_bytes + order.len() * 96);
    w.write_count(sessions.len());
    for (id, meta) in sessions {
        w.write_i64(*id);
        w.write_i32(meta.timeout_ms);
    }
    w.write_count(lists.len());
    for (i, acl) in lists.iter().enumerate() {
        w.write_i64(i64::try_from(i + 1).unwrap_or(i64::MAX));
        w.write_count(acl.len());
        for a in *acl {
            a.encode(&mut w);
        }
    }
    for (path, n) in &order {
        w.write_ustring(if path == "/" { "" } else { path });
        w.write_buffer(n.data.as_deref());
        w.write_i64(
            index_of
                .get(n.acl.as_slice())
                .copied()
                .unwrap_or(OPEN_ACL_INDEX),
        );
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
    w.write_ustring(END_OF_NODES);
    w.write_ustring(SIGNATURE);
    w.into_inner()
}

/// [`encode_snap`] of a live tree.
pub fn encode_snap_tree(sessions: &[(SessionId, SessionMeta)], tree: &DataTree) -> Vec<u8> {
    encode_snap(sessions, &tree.sorted_nodes())
}

/// Nodes in preorder from `/`, children in name order; iterative, so depth costs no stack.
fn preorder<'a>(nodes: &BTreeMap<&'a str, &'a Node>) -> Vec<(String, &'a Node)> {
    let mut out = Vec::with_capacity(nodes.len());
    let mut stack: Vec<String> = vec!["/".to_string()];
    while let Some(path) = stack.pop() {
        let Some(node) = nodes.get(path.as_str()) else {
            continue;
        };
        // Push in reverse so the smallest name is visited first.
        for child in node.children.iter().rev() {
            stack.push(if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            });
        }
        out.push((path, *node));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SessionCount,
    Sessions { left: usize },
    AclCount,
    Acls { left: usize },
    Nodes,
    Signature,
    Done,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::SessionCount | State::Sessions { .. } => "sessions",
            State::AclCount | State::Acls { .. } => "ACL cache",
            State::Nodes => "nodes",
            State::Signature => "signature",
            State::Done => "done",
        }
    }
}

/// An incremental SNAP stream decoder: call [`SnapDecoder::feed`] with the bytes at hand, drop
/// the bytes it consumed, append more, repeat until [`SnapDecoder::is_done`].
#[derive(Debug)]
pub struct SnapDecoder {
    limits: SnapLimits,
    state: State,
    sessions: Vec<(SessionId, SessionMeta)>,
    acls: HashMap<i64, Vec<Acl>>,
    nodes: Vec<(String, Node)>,
    seen: HashSet<String>,
}

/// What one step made of the bytes at hand.
enum Step {
    /// The item's bytes, and the state after it.
    Took(usize, State),
    NeedMore,
}

impl SnapDecoder {
    pub fn new(limits: SnapLimits) -> Self {
        Self {
            limits,
            state: State::SessionCount,
            sessions: Vec::new(),
            acls: HashMap::new(),
            nodes: Vec::new(),
            seen: HashSet::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as many whole items from the start of `buf` as it holds and returns the bytes
    /// used; bytes after the signature are left alone (they are the next quorum packets).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, SnapError> {
        let mut used = 0;
        while self.state != State::Done {
            let rest = buf.get(used..).unwrap_or(&[]);
            match self.step(rest)? {
                Step::Took(n, next) => {
                    used += n;
                    self.state = next;
                }
                Step::NeedMore => break,
            }
        }
        Ok(used)
    }

    /// The contents, once the signature has been read.
    pub fn finish(self) -> Result<SnapContents, SnapError> {
        if self.state != State::Done {
            return Err(SnapError::Incomplete {
                state: self.state.name(),
            });
        }
        Ok(SnapContents {
            sessions: self.sessions,
            nodes: self.nodes,
        })
    }

    fn step(&mut self, buf: &[u8]) -> Result<Step, SnapError> {
        let mut r = Reader::new(buf, self.limits.field_bytes_max);
        let what = self.state.name();
        let next = match self.item(&mut r) {
            Ok(next) => next,
            Err(ItemError::Decode(DecodeError::UnexpectedEof { .. })) => return Ok(Step::NeedMore),
            Err(ItemError::Decode(error)) => return Err(SnapError::Decode { what, error }),
            Err(ItemError::Snap(e)) => return Err(e),
        };
        Ok(Step::Took(r.offset(), next))
    }

    /// Reads one item and returns the next state. Nothing is committed unless the whole item was
    /// read, so a short buffer can be retried with more bytes.
    fn item(&mut self, r: &mut Reader<'_>) -> Result<State, ItemError> {
        let limits = self.limits;
        Ok(match self.state {
            State::SessionCount => {
                let left = bounded_count(r.read_i32()?, "sessions", limits.sessions_max)?;
                self.sessions.reserve(left);
                next_session_state(left)
            }
            State::Sessions { left } => {
                let id = r.read_i64()?;
                let timeout_ms = r.read_i32()?;
                self.sessions.push((id, SessionMeta { timeout_ms }));
                next_session_state(left - 1)
            }
            State::AclCount => {
                let left = bounded_count(r.read_i32()?, "ACL lists", limits.acl_lists_max)?;
                next_acl_state(left)
            }
            State::Acls { left } => {
                let index = r.read_i64()?;
                let n = bounded_count(r.read_i32()?, "ACL entries", limits.acl_entries_max)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(Acl::decode(r)?);
                }
                if self.acls.insert(index, list).is_some() {
                    return Err(SnapError::DuplicateAclIndex { index }.into());
                }
                next_acl_state(left - 1)
            }
            State::Nodes => self.node(r)?,
            State::Signature => {
                let found = r.read_ustring()?;
                if found != SIGNATURE {
                    return Err(SnapError::BadSignature { found }.into());
                }
                State::Done
            }
            State::Done => State::Done,
        })
    }

    fn node(&mut self, r: &mut Reader<'_>) -> Result<State, ItemError> {
        let path = r.read_ustring()?;
        if path == END_OF_NODES {
            if self.nodes.is_empty() {
                return Err(SnapError::NoRoot.into());
            }
            return Ok(State::Signature);
        }
        let data = r.read_buffer()?;
        let index = r.read_i64()?;
        let node = Node {
            data,
            acl: Vec::new(),
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            pzxid: r.read_i64()?,
            children: Children::new(),
        };
        // The whole item is here: validate and commit.
        if self.nodes.len() >= self.limits.nodes_max {
            return Err(SnapError::TooMany {
                what: "nodes",
                count: i64::try_from(self.nodes.len())
                    .unwrap_or(i64::MAX)
                    .saturating_add(1),
                max: self.limits.nodes_max,
            }
            .into());
        }
        let path = if self.nodes.is_empty() {
            if !path.is_empty() {
                return Err(SnapError::FirstNotRoot { path }.into());
            }
            "/".to_string()
        } else {
            let parent = match path.rfind('/') {
                Some(0) => "/",
                Some(i) => path.get(..i).unwrap_or(""),
                None => "",
            };
            if !path.starts_with('/') || path.ends_with('/') || !self.seen.contains(parent) {
                return Err(SnapError::MissingParent { path }.into());
            }
            path
        };
        let acl = if index == OPEN_ACL_INDEX {
            Acl::open_unsafe()
        } else {
            match self.acls.get(&index) {
                Some(list) => list.clone(),
                None => return Err(SnapError::UnknownAcl { path, index }.into()),
            }
        };
        if !self.seen.insert(path.clone()) {
            return Err(SnapError::DuplicatePath { path }.into());
        }
        self.nodes.push((path, Node { acl, ..node }));
        Ok(State::Nodes)
    }
}

enum ItemError {
    Decode(DecodeError),
    Snap(SnapError),
}

impl From<DecodeError> for ItemError {
    fn from(e: DecodeError) -> Self {
        ItemError::Decode(e)
    }
}

impl From<SnapError> for ItemError {
    fn from(e: SnapError) -> Self {
        ItemError::Snap(e)
    }
}

fn bounded_count(count: i32, what: &'static str, max: usize) -> Result<usize, SnapError> {
    usize::try_from(count)
        .ok()
        .filter(|n| *n <= max)
        .ok_or(SnapError::TooMany {
            what,
            count: i64::from(count),
            max,
        })
}

fn next_session_state(left: usize) -> State {
    if left == 0 {
        State::AclCount
    } else {
        State::Sessions { left }
    }
}

fn next_acl_state(left: usize) -> State {
    if left == 0 {
        State::Nodes
    } else {
        State::Acls { left }
    }
}

/// Decodes a whole stream held in `buf`; returns the contents and the bytes used.
pub fn decode_snap(buf: &[u8], limits: SnapLimits) -> Result<(SnapContents, usize), SnapError> {
    let mut d = SnapDecoder::new(limits);
    let used = d.feed(buf)?;
    Ok((d.finish()?, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;
    use crate::quorum::fuzzing::{mutations, random_inputs};
    use crate::tree::{CONTAINER_OWNER, ZOOKEEPER_CONFIG, ttl_owner};

    fn limits() -> SnapLimits {
        SnapLimits::new(1 << 20)
    }

    fn sample() -> (Vec<(SessionId, SessionMeta)>, DataTree) {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        let digest = vec![Acl {
            perms: 31,
            id: Id::new("digest", "u:h"),
        }];
        let nodes: [(&str, i64, Vec<Acl>); 6] = [
            ("/probe", 0, Acl::open_unsafe()),
            ("/probe/a", 0, Acl::open_unsafe()),
            ("/probe/b", 0x0300_0000_0000_1234, digest.clone()),
            ("/c", CONTAINER_OWNER, digest),
            ("/t", ttl_owner(5000), Acl::read_unsafe()),
            ("/probe-x", 0, Acl::open_unsafe()),
        ];
        for (i, (path, owner, acl)) in nodes.into_iter().enumerate() {
            let z = 0x1_0000_0001 + i as i64;
            t.create(
                path,
                Some(path.as_bytes().to_vec()),
                acl,
                owner,
                1,
                z,
                z,
                None,
                &mut ev,
            )
            .unwrap();
        }
        let sessions = vec![
            (0x0300_0000_0000_1234, SessionMeta { timeout_ms: 30000 }),
            (7, SessionMeta { timeout_ms: 4000 }),
        ];
        (sessions, t)
    }

    #[test]
    fn round_trips_through_data_tree_from_nodes() {
        let (sessions, t) = sample();
        let bytes = encode_snap_tree(&sessions, &t);
        let (c, used) = decode_snap(&bytes, limits()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(c.sessions, sessions);
        assert_eq!(c.nodes.len(), t.node_count());
        assert_eq!(c.nodes.first().map(|(p, _)| p.as_str()), Some("/"));
        let back = DataTree::from_nodes(c.nodes);
        assert_eq!(back.sorted_nodes(), t.sorted_nodes());
        assert_eq!(
            back.ephemerals_of(0x0300_0000_0000_1234),
            vec!["/probe/b".to_string()]
        );
        assert!(back.containers().contains("/c") && back.ttls().contains("/t"));
    }

    #[test]
    fn nodes_come_in_preorder_with_one_cache_entry_per_distinct_acl() {
        let (_, t) = sample();
        let bytes = encode_snap_tree(&[], &t);
        let mut r = Reader::new(&bytes, 1 << 20);
        assert_eq!(r.read_i32().unwrap(), 0);
        // open (root first), read-only (/t or /zookeeper/config, whichever comes first), digest.
        let mut cache = BTreeMap::new();
        for _ in 0..r.read_i32().unwrap() {
            let index = r.read_i64().unwrap();
            let list = r.read_vec(12, Acl::decode).unwrap();
            cache.insert(index, list);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&1), Some(&Acl::open_unsafe()));
        let mut paths = Vec::new();
        loop {
            let p = r.read_ustring().unwrap();
            if p == "/" {
                break;
            }
            r.read_buffer().unwrap();
            let index = r.read_i64().unwrap();
            assert!(cache.contains_key(&index));
            for _ in 0..6 {
                r.read_i64().unwrap();
            }
            for _ in 0..3 {
                r.read_i32().unwrap();
            }
            paths.push(p);
        }
        assert_eq!(
            paths,
            [
                "",
                "/c",
                "/probe",
                "/probe/a",
                "/probe/b",
                "/probe-x",
                "/t",
                "/zookeeper",
                "/zookeeper/config",
                "/zookeeper/quota"
            ]
        );
        assert_eq!(r.read_ustring().unwrap(), SIGNATURE);
        assert!(r.is_empty());
    }

    /// A stream built by hand the way ZooKeeper 3.8 wrote the one the probe decoded: the built-in
    /// nodes with ACL index -1, the config node and client nodes with cached indexes.
    fn hand_built() -> Vec<u8> {
        let mut w = Writer::new();
        w.write_i32(1);
        w.write_i64(0x0300_0000_0000_1234);
        w.write_i32(30000);
        w.write_i32(2);
        w.write_i64(2);
        w.write_i32(1);
        Acl::open_unsafe().first().unwrap().encode(&mut w);
        w.write_i64(1);
        w.write_i32(1);
        Acl::read_unsafe().first().unwrap().encode(&mut w);
        let stat = |w: &mut Writer, czxid: i64, owner: i64| {
            for v in [czxid, czxid, 0, 0] {
                w.write_i64(v);
            }
            for v in [0, 0, 0] {
                w.write_i32(v);
            }
            w.write_i64(owner);
            w.write_i64(czxid);
        };
        for (path, index, czxid, owner) in [
            ("", -1, 0, 0),
            ("/zookeeper", -1, 0, 0),
            ("/zookeeper/quota", -1, 0, 0),
            ("/zookeeper/config", 1, 0, 0),
            ("/probe", 2, 0x1_0000_0001, 0),
            ("/probe/a", 2, 0x1_0000_0002, 0x0300_0000_0000_1234),
        ] {
            w.write_ustring(path);
            w.write_buffer(Some(b""));
            w.write_i64(index);
            stat(&mut w, czxid, owner);
        }
        w.write_ustring("/");
        w.write_ustring("BenWasHere");
        w.into_inner()
    }

    #[test]
    fn decodes_a_hand_built_stream() {
        let bytes = hand_built();
        let (c, used) = decode_snap(&bytes, limits()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            c.sessions,
            vec![(0x0300_0000_0000_1234, SessionMeta { timeout_ms: 30000 })]
        );
        let t = DataTree::from_nodes(c.nodes);
        assert_eq!(t.node_count(), 6);
        assert_eq!(t.get("/").unwrap().acl, Acl::open_unsafe());
        assert_eq!(t.get(ZOOKEEPER_CONFIG).unwrap().acl, Acl::read_unsafe());
        assert_eq!(t.get("/probe/a").unwrap().czxid, 0x1_0000_0002);
        assert_eq!(
            t.ephemerals_of(0x0300_0000_0000_1234),
            vec!["/probe/a".to_string()]
        );
        assert!(t.get("/probe").unwrap().children.contains("a"));
    }

    #[test]
    fn decodes_byte_by_byte_and_leaves_what_follows() {
        let (sessions, t) = sample();
        let mut bytes = encode_snap_tree(&sessions, &t);
        let len = bytes.len();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut d = SnapDecoder::new(limits());
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0;
        for b in &bytes {
            pending.push(*b);
            let used = d.feed(&pending).unwrap();
            pending.drain(..used);
            total += used;
        }
        assert!(d.is_done());
        assert_eq!((total, pending), (len, vec![1, 2, 3]));
        assert_eq!(d.finish().unwrap().sessions, sessions);
    }

    #[test]
    fn truncated_streams_are_incomplete_not_misread() {
        let bytes = hand_built();
        for cut in 0..bytes.len() {
            let e = decode_snap(bytes.get(..cut).unwrap(), limits()).unwrap_err();
            assert!(matches!(e, SnapError::Incomplete { .. }), "cut {cut}: {e}");
        }
    }

    fn corrupt(at: usize, with: &[u8]) -> Result<(SnapContents, usize), SnapError> {
        let mut b = hand_built();
        if let Some(dst) = b.get_mut(at..at + with.len()) {
            dst.copy_from_slice(with);
        }
        decode_snap(&b, limits())
    }

    #[test]
    fn bad_counts_indexes_paths_and_signature_are_refused() {
        let neg = (-1i32).to_be_bytes();
        assert!(matches!(
            corrupt(0, &neg),
            Err(SnapError::TooMany {
                what: "sessions",
                ..
            })
        ));
        let big = i32::MAX.to_be_bytes();
        assert!(matches!(corrupt(0, &big), Err(SnapError::TooMany { .. })));
        // The ACL cache count sits after the one session (4 + 12).
        assert!(matches!(
            corrupt(16, &big),
            Err(SnapError::TooMany {
                what: "ACL lists",
                ..
            })
        ));
        // The second list's index made equal to the first's.
        assert!(matches!(
            corrupt(20 + 8 + 4 + 23, &2i64.to_be_bytes()),
            Err(SnapError::DuplicateAclIndex { index: 2 })
        ));
        let mut b = hand_built();
        let tail = b.len() - 14;
        if let Some(sig) = b.get_mut(tail + 4..) {
            sig.copy_from_slice(b"BenWasHera");
        }
        assert!(matches!(
            decode_snap(&b, limits()),
            Err(SnapError::BadSignature { .. })
        ));
        let node = |path: &str, index: i64| {
            let mut w = Writer::new();
            w.write_ustring(path);
            w.write_buffer(None);
            w.write_i64(index);
            w.write_raw(&[0; 60]);
            w.into_inner()
        };
        let stream = |nodes: &[Vec<u8>]| {
            let mut b = vec![0, 0, 0, 0, 0, 0, 0, 0];
            for n in nodes {
                b.extend_from_slice(n);
            }
            let mut w = Writer::from_vec(b);
            w.write_ustring("/");
            w.write_ustring(SIGNATURE);
            decode_snap(&w.into_inner(), limits())
        };
        assert!(matches!(
            stream(&[node("/a", -1)]),
            Err(SnapError::FirstNotRoot { .. })
        ));
        assert!(matches!(
            stream(&[node("", -1), node("/a/b", -1)]),
            Err(SnapError::MissingParent { .. })
        ));
        assert!(matches!(
            stream(&[node("", -1), node("a", -1)]),
            Err(SnapError::MissingParent { .. })
        ));
        assert!(matches!(
            stream(&[node("", -1), node("/a", -1), node("/a", -1)]),
            Err(SnapError::DuplicatePath { .. })
        ));
        assert!(matches!(
            stream(&[node("", -1), node("/a", 3)]),
            Err(SnapError::UnknownAcl { index: 3, .. })
        ));
        assert!(matches!(stream(&[]), Err(SnapError::NoRoot)));
        let small = SnapLimits {
            nodes_max: 1,
            ..limits()
        };
        let mut b = vec![0; 8];
        b.extend_from_slice(&node("", -1));
        b.extend_from_slice(&node("/a", -1));
        assert!(matches!(
            decode_snap(&b, small),
            Err(SnapError::TooMany { what: "nodes", .. })
        ));
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut inputs = random_inputs(0xd1b5_4a32_d192_ed03, 2000, 80);
        inputs.extend(mutations(&hand_built(), 1));
        let (sessions, t) = sample();
        inputs.extend(mutations(&encode_snap_tree(&sessions, &t), 2));
        let small = SnapLimits {
            sessions_max: 16,
            acl_lists_max: 16,
            acl_entries_max: 4,
            nodes_max: 64,
            field_bytes_max: 256,
        };
        for b in &inputs {
            if let Ok((c, used)) = decode_snap(b, small) {
                assert!(used <= b.len());
                let tree = DataTree::from_nodes(c.nodes);
                let again = encode_snap(&c.sessions, &tree.sorted_nodes());
                assert!(decode_snap(&again, small).is_ok());
            }
            let (x, y) = b.split_at(b.len() / 2);
            let mut d = SnapDecoder::new(small);
            if let Ok(used) = d.feed(x) {
                let mut rest = x.get(used..).unwrap_or(&[]).to_vec();
                rest.extend_from_slice(y);
                let _ = d.feed(&rest);
            }
        }
    }
}
