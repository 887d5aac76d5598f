//! The znode tree: nodes by full path, their Stat fields, children, ACLs, and the indexes ZooKeeper
//! keeps beside them (ephemerals by session, containers, TTL nodes).
//!
//! Mutations take the zxid and time of the transaction that makes them, so applying the same
//! transactions in the same order always yields the same tree (this is what log replay relies on).
//! A [`Journal`] records the prior state of every node a mutation touches, so a multi whose later op
//! fails can be rolled back. No I/O.
//!
//! Nodes live in a persistent (copy-on-write) hash map of `Arc<Node>`, and each node's children in a
//! persistent ordered set, so [`DataTree::view`] freezes every node in O(1): a snapshot is encoded
//! from the view on another thread while writes go on changing the tree, each write copying only
//! the map path and the node it changes while a view shares them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A node's children (base names), ordered; cloning is O(1).
pub type Children = imbl::OrdSet<String>;
type NodeMap = imbl::HashMap<String, Arc<Node>>;

use crate::proto::{Acl, Code, Stat};

pub type Zxid = i64;
pub type SessionId = i64;

/// `ephemeralOwner` of a container node (`EphemeralType.CONTAINER`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte of the `ephemeralOwner` of a TTL node (`EphemeralType.TTL`).
const TTL_OWNER_BITS: u64 = 0xFF00_0000_0000_0000;
/// Largest TTL in milliseconds (`EphemeralType.TTL.maxValue()`).
pub const TTL_MS_MAX: i64 = 0x00FF_FFFF_FFFF;

/// What kind of node an `ephemeralOwner` value denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    Ephemeral(SessionId),
    Container,
    Ttl(i64),
}

pub fn node_kind(owner: i64) -> NodeKind {
    if owner == 0 {
        NodeKind::Persistent
    } else if owner == CONTAINER_OWNER {
        NodeKind::Container
    } else if (owner as u64) & TTL_OWNER_BITS == TTL_OWNER_BITS {
        NodeKind::Ttl(((owner as u64) & !TTL_OWNER_BITS) as i64)
    } else {
        NodeKind::Ephemeral(owner)
    }
}

pub fn ttl_owner(ttl_ms: i64) -> i64 {
    (TTL_OWNER_BITS | (ttl_ms as u64 & !TTL_OWNER_BITS)) as i64
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub czxid: Zxid,
    pub mzxid: Zxid,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: Zxid,
    pub children: Children,
}

impl Node {
    fn empty(acl: Vec<Acl>) -> Self {
        Self {
            data: Some(Vec::new()),
            acl,
            czxid: 0,
            mzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            pzxid: 0,
            children: Children::new(),
        }
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, Vec::len)
    }

    /// The Stat a client sees, as `DataNode.copyStat` makes it:
    /// - `ephemeralOwner` is shown only for session ephemerals (containers and TTL nodes show 0);
    /// - the stored `cversion` counts child creations (it names sequential children), while the
    ///   reported one counts creations and deletions: every child not present any more was
    ///   deleted once, so reported = 2 * creations - current children.
    pub fn stat(&self) -> Stat {
        let num_children = i32::try_from(self.children.len()).unwrap_or(i32::MAX);
        let ephemeral_owner = match node_kind(self.ephemeral_owner) {
            NodeKind::Ephemeral(s) => s,
            _ => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner,
            data_length: i32::try_from(self.data_len()).unwrap_or(i32::MAX),
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// What a mutation means for watches; the watch table turns these into notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEvent {
    Created(String),
    Deleted(String),
    DataChanged(String),
    /// The children of this (parent) path changed.
    ChildrenChanged(String),
}

/// Prior states of the nodes touched since the journal was opened; first touch wins.
#[derive(Debug, Default)]
pub struct Journal {
    saved: Vec<(String, Option<Arc<Node>>)>,
}

/// The parent of an absolute, validated path ("/" for top-level nodes).
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn base_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

pub const ZOOKEEPER: &str = "/zookeeper";
pub const ZOOKEEPER_QUOTA: &str = "/zookeeper/quota";
pub const ZOOKEEPER_CONFIG: &str = "/zookeeper/config";

/// Paths that can never be deleted (`ZKDatabase.isSpecialPath`).
pub fn is_special(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER | ZOOKEEPER_QUOTA | ZOOKEEPER_CONFIG)
}

/// Every node of a tree as it was when [`DataTree::view`] was called; later writes to the tree do
/// not show through. `Send`, so it can be encoded on another thread.
/// Every node of `nodes` by path, so parents come before their children.
fn sorted_nodes(nodes: &NodeMap) -> BTreeMap<&str, &Node> {
    nodes.iter().map(|(k, v)| (k.as_str(), &**v)).collect()
}

#[derive(Debug, Clone)]
pub struct TreeView {
    nodes: NodeMap,
    data_bytes: u64,
}

impl TreeView {
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// All nodes, parents before children.
    pub fn sorted_nodes(&self) -> BTreeMap<&str, &Node> {
        sorted_nodes(&self.nodes)
    }
}

#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: NodeMap,
    ephemerals: HashMap<SessionId, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    data_bytes: u64,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A tree with `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`, with the Stat
    /// values ZooKeeper gives them (all zero; `/zookeeper/config` is read-only with aversion -1).
    pub fn new() -> Self {
        let mut nodes = NodeMap::new();
        let mut root = Node::empty(Acl::open_unsafe());
        root.children.insert("zookeeper".to_string());
        let mut zk = Node::empty(Acl::open_unsafe());
        zk.children.insert("quota".to_string());
        zk.children.insert("config".to_string());
        let quota = Node::empty(Acl::open_unsafe());
        let mut config = Node::empty(Acl::read_unsafe());
        config.aversion = -1;
        nodes.insert("/".to_string(), Arc::new(root));
        nodes.insert(ZOOKEEPER.to_string(), Arc::new(zk));
        nodes.insert(ZOOKEEPER_QUOTA.to_string(), Arc::new(quota));
        nodes.insert(ZOOKEEPER_CONFIG.to_string(), Arc::new(config));
        Self {
            nodes,
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            data_bytes: 0,
        }
    }

    /// A tree from snapshot contents: nodes in any order (children sets are rebuilt from paths).
    pub fn from_nodes(list: Vec<(String, Node)>) -> Self {
        let mut t = Self {
            nodes: NodeMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            data_bytes: 0,
        };
        for (path, mut node) in list {
            node.children = Children::new();
            t.index_add(&path, &node);
            t.nodes.insert(path, Arc::new(node));
        }
        let paths: Vec<String> = t
            .nodes
            .keys()
            .filter(|p| p.as_str() != "/")
            .cloned()
            .collect();
        for p in paths {
            let parent = parent_of(&p).to_string();
            if let Some(parent) = t.nodes.get_mut(&parent) {
                Arc::make_mut(parent)
                    .children
                    .insert(base_name(&p).to_string());
            }
        }
        t
    }

    /// Freezes every node in O(1) (see the module docs).
    pub fn view(&self) -> TreeView {
        TreeView {
            nodes: self.nodes.clone(),
            data_bytes: self.data_bytes,
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).map(|n| &**n)
    }

    fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.nodes.get_mut(path).map(Arc::make_mut)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// All nodes, parents before children.
    pub fn sorted_nodes(&self) -> BTreeMap<&str, &Node> {
        sorted_nodes(&self.nodes)
    }

    pub fn ephemerals_of(&self, session: SessionId) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ephemeral_sessions(&self) -> impl Iterator<Item = (&SessionId, &BTreeSet<String>)> {
        self.ephemerals.iter()
    }

    pub fn containers(&self) -> &BTreeSet<String> {
        &self.containers
    }

    pub fn ttls(&self) -> &BTreeSet<String> {
        &self.ttls
    }

    /// Number of nodes below `path` (`getAllChildrenNumber`).
    pub fn descendant_count(&self, path: &str) -> usize {
        if path == "/" {
            return self.nodes.len().saturating_sub(1);
        }
        let prefix = format!("{path}/");
        self.nodes.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    fn index_add(&mut self, path: &str, node: &Node) {
        self.data_bytes += node.data_len() as u64;
        match node_kind(node.ephemeral_owner) {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral(s) => {
                self.ephemerals
                    .entry(s)
                    .or_default()
                    .insert(path.to_string());
            }
            NodeKind::Container => {
                self.containers.insert(path.to_string());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(path.to_string());
            }
        }
    }

    fn index_remove(&mut self, path: &str, node: &Node) {
        self.data_bytes = self.data_bytes.saturating_sub(node.data_len() as u64);
        match node_kind(node.ephemeral_owner) {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
        }
    }

    fn touch(&self, journal: &mut Option<&mut Journal>, path: &str) {
        if let Some(j) = journal.as_deref_mut()
            && !j.saved.iter().any(|(p, _)| p == path)
        {
            j.saved
                .push((path.to_string(), self.nodes.get(path).cloned()));
        }
    }

    /// Puts back every node recorded in `journal`, newest first.
    pub fn undo(&mut self, journal: Journal) {
        for (path, prior) in journal.saved.into_iter().rev() {
            if let Some(cur) = self.nodes.remove(&path) {
                self.index_remove(&path, &cur);
            }
            if let Some(node) = prior {
                self.index_add(&path, &node);
                self.nodes.insert(path, node);
            }
        }
    }

    /// Creates `path`; the parent's cversion becomes `parent_cversion` and its pzxid `zxid`.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        owner: i64,
        parent_cversion: i32,
        zxid: Zxid,
        time: i64,
        mut journal: Option<&mut Journal>,
        events: &mut Vec<TreeEvent>,
    ) -> Result<Stat, Code> {
        let parent_path = parent_of(path);
        if !self.nodes.contains_key(parent_path) {
            return Err(Code::NoNode);
        }
        if self.nodes.contains_key(path) {
            return Err(Code::NodeExists);
        }
        self.touch(&mut journal, parent_path);
        self.touch(&mut journal, path);
        let node = Node {
            data,
            acl,
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
            children: Children::new(),
        };
        let stat = node.stat();
        self.index_add(path, &node);
        self.nodes.insert(path.to_string(), Arc::new(node));
        if let Some(parent) = self.get_mut(parent_path) {
            parent.children.insert(base_name(path).to_string());
            parent.cversion = parent_cversion;
            parent.pzxid = zxid;
        }
        events.push(TreeEvent::Created(path.to_string()));
        events.push(TreeEvent::ChildrenChanged(parent_path.to_string()));
        Ok(stat)
    }

    pub fn delete(
        &mut self,
        path: &str,
        zxid: Zxid,
        mut journal: Option<&mut Journal>,
        events: &mut Vec<TreeEvent>,
    ) -> Result<(), Code> {
        let parent_path = parent_of(path);
        if !self.nodes.contains_key(parent_path) || !self.nodes.contains_key(path) || path == "/" {
            return Err(Code::NoNode);
        }
        self.touch(&mut journal, parent_path);
        self.touch(&mut journal, path);
        if let Some(parent) = self.get_mut(parent_path) {
            parent.children.remove(base_name(path));
            if zxid > parent.pzxid {
                parent.pzxid = zxid;
            }
        }
        if let Some(node) = self.nodes.remove(path) {
            self.index_remove(path, &node);
        }
        events.push(TreeEvent::Deleted(path.to_string()));
        events.push(TreeEvent::ChildrenChanged(parent_path.to_string()));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Vec<u8>>,
        version: i32,
        zxid: Zxid,
        time: i64,
        mut journal: Option<&mut Journal>,
        events: &mut Vec<TreeEvent>,
    ) -> Result<Stat, Code> {
        if !self.nodes.contains_key(path) {
            return Err(Code::NoNode);
        }
        self.touch(&mut journal, path);
        let new_len = data.as_ref().map_or(0, Vec::len) as u64;
        let Some(slot) = self.nodes.get_mut(path) else {
            return Err(Code::NoNode);
        };
        let old_len = slot.data_len() as u64;
        let changed = |n: &Node, data| Node {
            data,
            acl: n.acl.clone(),
            children: n.children.clone(),
            version,
            mzxid: zxid,
            mtime: time,
            ..*n
        };
        match Arc::get_mut(slot) {
            Some(node) => {
                node.data = data;
                node.version = version;
                node.mzxid = zxid;
                node.mtime = time;
            }
            // Shared with a view or a journal: build the new node without copying the old data.
            None => *slot = Arc::new(changed(slot, data)),
        }
        let stat = slot.stat();
        self.data_bytes = self.data_bytes.saturating_sub(old_len) + new_len;
        events.push(TreeEvent::DataChanged(path.to_string()));
        Ok(stat)
    }

    pub fn set_acl(
        &mut self,
        path: &str,
        acl: Vec<Acl>,
        aversion: i32,
        mut journal: Option<&mut Journal>,
    ) -> Result<Stat, Code> {
        if !self.nodes.contains_key(path) {
            return Err(Code::NoNode);
        }
        self.touch(&mut journal, path);
        let Some(node) = self.get_mut(path) else {
            return Err(Code::NoNode);
        };
        node.acl = acl;
        node.aversion = aversion;
        Ok(node.stat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tree_has_reserved_nodes() {
        let t = DataTree::new();
        assert_eq!(t.get("/").unwrap().stat().num_children, 1);
        // ZooKeeper reports cversion -1 for a fresh root: one child it never "created".
        assert_eq!(t.get("/").unwrap().stat().cversion, -1);
        assert_eq!(t.get("/zookeeper").unwrap().stat().num_children, 2);
        assert_eq!(t.get("/zookeeper/config").unwrap().aversion, -1);
        assert_eq!(t.descendant_count("/"), 3);
    }

    #[test]
    fn create_sets_stat_and_parent_cversion_delete_bumps_only_pzxid() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        let s = t
            .create(
                "/a",
                Some(b"x".to_vec()),
                Acl::open_unsafe(),
                0,
                1,
                5,
                100,
                None,
                &mut ev,
            )
            .unwrap();
        assert_eq!(
            (s.czxid, s.mzxid, s.pzxid, s.ctime, s.data_length),
            (5, 5, 5, 100, 1)
        );
        let root = t.get("/").unwrap();
        assert_eq!((root.cversion, root.pzxid), (1, 5));
        t.delete("/a", 6, None, &mut ev).unwrap();
        let root = t.get("/").unwrap();
        assert_eq!((root.cversion, root.pzxid), (1, 6));
        assert_eq!(
            ev,
            vec![
                TreeEvent::Created("/a".into()),
                TreeEvent::ChildrenChanged("/".into()),
                TreeEvent::Deleted("/a".into()),
                TreeEvent::ChildrenChanged("/".into()),
            ]
        );
    }

    #[test]
    fn journal_undo_restores_nodes_and_indexes() {
        let mut t = DataTree::new();
        let mut ev = Vec::new();
        t.create("/p", None, Acl::open_unsafe(), 0, 1, 1, 0, None, &mut ev)
            .unwrap();
        let before = t
            .sorted_nodes()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>();
        let mut j = Journal::default();
        t.create(
            "/p/e",
            None,
            Acl::open_unsafe(),
            42,
            1,
            2,
            0,
            Some(&mut j),
            &mut ev,
        )
        .unwrap();
        t.set_data("/p", Some(b"d".to_vec()), 1, 2, 0, Some(&mut j), &mut ev)
            .unwrap();
        t.delete("/p/e", 2, Some(&mut j), &mut ev).unwrap();
        t.create(
            "/p/e",
            None,
            Acl::open_unsafe(),
            42,
            2,
            2,
            0,
            Some(&mut j),
            &mut ev,
        )
        .unwrap();
        t.undo(j);
        let after = t
            .sorted_nodes()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>();
        assert_eq!(before, after);
        assert!(t.ephemerals_of(42).is_empty());
        assert_eq!(t.data_bytes(), 0);
    }

    #[test]
    fn owner_kinds() {
        assert_eq!(node_kind(0), NodeKind::Persistent);
        assert_eq!(node_kind(CONTAINER_OWNER), NodeKind::Container);
        assert_eq!(node_kind(ttl_owner(1000)), NodeKind::Ttl(1000));
        assert_eq!(node_kind(77), NodeKind::Ephemeral(77));
    }
}
