//! The tree digest every ZooKeeper 3.6+ member maintains and checks against the `TxnDigest`
//! trailer of each transaction, computed as ZooKeeper's `DigestCalculator` (version 2) and
//! `NodeHashMapImpl` compute it:
//!
//! ```text
//! node digest = CRC-32 (IEEE, as java.util.zip.CRC32) of
//!               path bytes ‖ data bytes (nothing if null) ‖
//!               czxid mzxid pzxid ctime mtime:i64 version cversion aversion:i32 ephemeralOwner:i64
//!               (60 bytes, big-endian; note pzxid third, unlike StatPersisted's order)
//! tree digest = wrapping 64-bit sum of the node digests, each taken as an unsigned 32-bit value
//! ```
//! - The root is hashed under the path `""` (ZooKeeper keys it both as `""` and `"/"`, and counts
//!   it once).
//! - Every path starting with `/zookeeper/` contributes 0: `/zookeeper` itself counts, its
//!   children (`quota`, `config` and quota subtrees) do not.
//! - `cversion` is the stored one (StatPersisted: child creations), not the client-visible value;
//!   `ephemeralOwner` is the raw owner, so containers and TTL nodes count their markers.
//!
//! Being a sum, the digest is maintained in O(changed nodes): remove a node's old contribution,
//! add its new one ([`TreeDigest`]). A mismatch with the leader's trailer means the trees differ;
//! ZooKeeper only logs and counts it. Pure, no I/O.

use crate::tree::{DataTree, Node};

/// Paths under this prefix are left out (`ZooDefs.ZOOKEEPER_NODE_SUBTREE`).
pub const EXCLUDED_SUBTREE: &str = "/zookeeper/";

/// The reflected IEEE polynomial (zlib, `java.util.zip.CRC32`).
const CRC32_POLY: u32 = 0xEDB8_8320;

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                CRC32_POLY ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// A running CRC-32 (IEEE).
#[derive(Debug, Clone, Copy)]
struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Self(!0)
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            let slot = CRC32_TABLE
                .get(usize::from((c as u8) ^ b))
                .copied()
                .unwrap_or(0);
            c = slot ^ (c >> 8);
        }
        self.0 = c;
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

/// CRC-32 (IEEE) of `bytes`, as `java.util.zip.CRC32` computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

/// Bytes of the stat part of a node digest.
pub const DIGEST_STAT_BYTES: usize = 60;

/// One node's contribution; 0 for paths under `/zookeeper/`.
pub fn node_digest(path: &str, node: &Node) -> u32 {
    if path.starts_with(EXCLUDED_SUBTREE) {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut stat = [0u8; DIGEST_STAT_BYTES];
    let fields: [&[u8]; 9] = [
        &node.czxid.to_be_bytes(),
        &node.mzxid.to_be_bytes(),
        &node.pzxid.to_be_bytes(),
        &node.ctime.to_be_bytes(),
        &node.mtime.to_be_bytes(),
        &node.version.to_be_bytes(),
        &node.cversion.to_be_bytes(),
        &node.aversion.to_be_bytes(),
        &node.ephemeral_owner.to_be_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        if let Some(dst) = stat.get_mut(at..at + f.len()) {
            dst.copy_from_slice(f);
        }
        at += f.len();
    }
    debug_assert_eq!(at, DIGEST_STAT_BYTES);
    let mut c = Crc32::new();
    c.update(path.as_bytes());
    if let Some(data) = &node.data {
        c.update(data);
    }
    c.update(&stat);
    c.finish()
}

/// The digest of a whole tree, O(nodes).
pub fn tree_digest(tree: &DataTree) -> i64 {
    let mut d = TreeDigest::default();
    for (path, node) in tree.sorted_nodes() {
        d.add(path, node);
    }
    d.value()
}

/// A tree digest maintained per change: for every node a transaction touches, `remove` its state
/// before and `add` its state after (creation: add only; deletion: remove only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeDigest {
    value: i64,
}

impl TreeDigest {
    /// The digest of `tree` as it is now.
    pub fn of(tree: &DataTree) -> Self {
        Self {
            value: tree_digest(tree),
        }
    }

    pub fn add(&mut self, path: &str, node: &Node) {
        self.value = self.value.wrapping_add(i64::from(node_digest(path, node)));
    }

    pub fn remove(&mut self, path: &str, node: &Node) {
        self.value = self.value.wrapping_sub(i64::from(node_digest(path, node)));
    }

    /// One node changed from `before` to `after` (`None`: absent).
    pub fn replace(&mut self, path: &str, before: Option<&Node>, after: Option<&Node>) {
        if let Some(n) = before {
            self.remove(path, n);
        }
        if let Some(n) = after {
            self.add(path, n);
        }
    }

    /// The value a `TxnDigest` carries.
    pub fn value(&self) -> i64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Acl;
    use crate::tree::CONTAINER_OWNER;

    fn node(data: Option<&[u8]>) -> Node {
        let mut n = DataTree::new().get("/").unwrap().clone();
        n.data = data.map(<[u8]>::to_vec);
        n.children = Default::default();
        n
    }

    #[test]
    fn crc32_is_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn node_digest_matches_a_hand_computed_value() {
        // Computed independently: zlib.crc32(b"/a" + b"x" + struct.pack(">qqqqqiiiq",
        // 1, 2, 3, 4, 5, 6, 7, 8, 9)) with czxid=1 mzxid=2 pzxid=3 ctime=4 mtime=5 version=6
        // cversion=7 aversion=8 ephemeralOwner=9.
        let mut n = node(Some(b"x"));
        (n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime) = (1, 2, 3, 4, 5);
        (n.version, n.cversion, n.aversion, n.ephemeral_owner) = (6, 7, 8, 9);
        assert_eq!(node_digest("/a", &n), 0x6045_5818);
        // The ACL and the children are not part of it; null and empty data hash alike.
        n.acl = Acl::read_unsafe();
        assert_eq!(node_digest("/a", &n), 0x6045_5818);
        assert_eq!(
            node_digest("/b", &node(None)),
            node_digest("/b", &node(Some(b"")))
        );
    }

    #[test]
    fn root_is_hashed_as_empty_and_zookeeper_children_are_excluded() {
        let n = node(Some(b""));
        assert_eq!(node_digest("/", &n), 0x0412_8908);
        assert_eq!(node_digest("/zookeeper", &n), 0x4DB4_4D58);
        assert_eq!(node_digest("/zookeeper/quota", &n), 0);
        assert_eq!(node_digest("/zookeeper/config", &n), 0);
        assert_ne!(node_digest("/zookeeperx", &n), 0);
        // A fresh tree: "/" and "/zookeeper", with every stat field 0.
        assert_eq!(tree_digest(&DataTree::new()), 0x0412_8908 + 0x4DB4_4D58);
    }

    #[test]
    fn tree_digest_after_an_ephemeral_create_matches_hand_computed_values() {
        let mut t = DataTree::new();
        let zxid = 0x1_0000_0002;
        let owner = 0x0300_0000_0000_1234;
        t.create(
            "/e",
            None,
            Acl::open_unsafe(),
            owner,
            1,
            zxid,
            1_700_000_000_000,
            None,
            &mut Vec::new(),
        )
        .unwrap();
        // zlib.crc32(b"/e" + pack(zxid, zxid, zxid, t, t, 0, 0, 0, owner)) = 0x1e0626c5;
        // the root now has pzxid = zxid and cversion 1: 0xeb02e853.
        assert_eq!(node_digest("/e", t.get("/e").unwrap()), 0x1E06_26C5);
        assert_eq!(node_digest("/", t.get("/").unwrap()), 0xEB02_E853);
        assert_eq!(tree_digest(&t), 5_750_217_840);
    }

    #[test]
    fn incremental_digest_follows_the_tree() {
        let mut t = DataTree::new();
        let mut d = TreeDigest::of(&t);
        let mut ev = Vec::new();
        for (i, owner) in [(1i64, 0i64), (2, CONTAINER_OWNER), (3, 77)] {
            let path = format!("/n{i}");
            let root_before = t.get("/").unwrap().clone();
            t.create(
                &path,
                Some(vec![i as u8]),
                vec![],
                owner,
                i as i32,
                i,
                i,
                None,
                &mut ev,
            )
            .unwrap();
            d.replace("/", Some(&root_before), t.get("/"));
            d.add(&path, t.get(&path).unwrap());
            assert_eq!(d.value(), tree_digest(&t));
        }
        let before = t.get("/n1").unwrap().clone();
        t.set_data("/n1", Some(b"new".to_vec()), 1, 9, 9, None, &mut ev)
            .unwrap();
        d.replace("/n1", Some(&before), t.get("/n1"));
        assert_eq!(d.value(), tree_digest(&t));
        let root_before = t.get("/").unwrap().clone();
        let gone = t.get("/n2").unwrap().clone();
        t.delete("/n2", 10, None, &mut ev).unwrap();
        d.replace("/", Some(&root_before), t.get("/"));
        d.remove("/n2", &gone);
        assert_eq!(d.value(), tree_digest(&t));
    }

    #[test]
    fn sum_is_of_unsigned_crcs_and_wraps() {
        let mut d = TreeDigest { value: i64::MAX };
        let mut n = node(None);
        n.czxid = 1;
        let c = node_digest("/x", &n);
        d.add("/x", &n);
        assert_eq!(d.value(), i64::MAX.wrapping_add(i64::from(c)));
        d.remove("/x", &n);
        assert_eq!(d.value(), i64::MAX);
    }
}
