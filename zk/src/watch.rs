//! Watches: one-shot data/exist/child watches and persistent (recursive) watches, modelled on
//! ZooKeeper's two `WatchManager`s (data and child) in `DataTree`.
//!
//! A persistent watch lives in both managers, a persistent-recursive one only in the data manager,
//! so recursive watches never see NodeChildrenChanged. Watches belong to a session's current
//! connection; the server drops them when the connection goes away and the client re-sends them
//! with SetWatches on reconnect. No I/O: triggering returns the notifications to send.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::proto::{WatcherEvent, event};
use crate::tree::{SessionId, TreeEvent, parent_of};

const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// `addWatch` modes.
pub const ADD_WATCH_PERSISTENT: i32 = 0;
pub const ADD_WATCH_PERSISTENT_RECURSIVE: i32 = 1;

/// `WatcherType` in checkWatches / removeWatches.
pub mod kind {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

#[derive(Debug, Default, Clone)]
struct Manager {
    table: HashMap<String, HashMap<SessionId, u8>>,
    by_session: HashMap<SessionId, HashSet<String>>,
    recursive_count: usize,
}

impl Manager {
    fn add(&mut self, path: &str, s: SessionId, mode: u8) {
        let modes = self
            .table
            .entry(path.to_string())
            .or_default()
            .entry(s)
            .or_insert(0);
        if mode == RECURSIVE && *modes & RECURSIVE == 0 {
            self.recursive_count += 1;
        }
        *modes |= mode;
        self.by_session
            .entry(s)
            .or_default()
            .insert(path.to_string());
    }

    fn modes(&self, path: &str, s: SessionId) -> u8 {
        self.table
            .get(path)
            .and_then(|m| m.get(&s))
            .copied()
            .unwrap_or(0)
    }

    /// Clears `mask` bits of `s`'s watch on `path`; true if any were set.
    fn remove(&mut self, path: &str, s: SessionId, mask: u8) -> bool {
        let Some(watchers) = self.table.get_mut(path) else {
            return false;
        };
        let Some(modes) = watchers.get_mut(&s) else {
            return false;
        };
        let had = *modes & mask;
        if had & RECURSIVE != 0 {
            self.recursive_count = self.recursive_count.saturating_sub(1);
        }
        *modes &= !mask;
        if *modes == 0 {
            watchers.remove(&s);
            if watchers.is_empty() {
                self.table.remove(path);
            }
            if let Some(paths) = self.by_session.get_mut(&s) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_session.remove(&s);
                }
            }
        }
        had != 0
    }

    fn remove_session(&mut self, s: SessionId) {
        if let Some(paths) = self.by_session.remove(&s) {
            for p in paths {
                if let Some(w) = self.table.get_mut(&p) {
                    if let Some(m) = w.remove(&s)
                        && m & RECURSIVE != 0
                    {
                        self.recursive_count = self.recursive_count.saturating_sub(1);
                    }
                    if w.is_empty() {
                        self.table.remove(&p);
                    }
                }
            }
        }
    }

    /// `WatchManager.triggerWatch`: standard watches on `path` fire once and are removed;
    /// persistent ones on `path` fire and stay; recursive ones on `path` or any ancestor fire.
    fn trigger(&mut self, path: &str, suppress: &BTreeSet<SessionId>) -> BTreeSet<SessionId> {
        let mut fired = BTreeSet::new();
        let mut standard_done = Vec::new();
        if let Some(w) = self.table.get(path) {
            for (&s, &m) in w {
                fired.insert(s);
                if m & STANDARD != 0 {
                    standard_done.push(s);
                }
            }
        }
        for s in standard_done {
            self.remove(path, s, STANDARD);
        }
        if self.recursive_count > 0 {
            let mut p = path;
            while p != "/" {
                p = parent_of(p);
                if let Some(w) = self.table.get(p) {
                    fired.extend(
                        w.iter()
                            .filter(|(_, m)| **m & RECURSIVE != 0)
                            .map(|(s, _)| *s),
                    );
                }
            }
        }
        fired.retain(|s| !suppress.contains(s));
        fired
    }

    fn count(&self) -> usize {
        self.table.values().map(HashMap::len).sum()
    }
}

/// A notification to deliver to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub session: SessionId,
    pub event: WatcherEvent,
}

fn note(session: SessionId, kind: i32, path: &str) -> Notification {
    Notification {
        session,
        event: WatcherEvent {
            kind,
            state: event::STATE_SYNC_CONNECTED,
            path: path.to_string(),
        },
    }
}

#[derive(Debug, Default, Clone)]
pub struct WatchTable {
    data: Manager,
    child: Manager,
}

impl WatchTable {
    pub fn add_data(&mut self, path: &str, s: SessionId) {
        self.data.add(path, s, STANDARD);
    }

    pub fn add_child(&mut self, path: &str, s: SessionId) {
        self.child.add(path, s, STANDARD);
    }

    pub fn add_persistent(&mut self, path: &str, s: SessionId, recursive: bool) {
        if recursive {
            self.data.add(path, s, RECURSIVE);
        } else {
            self.data.add(path, s, PERSISTENT);
            self.child.add(path, s, PERSISTENT);
        }
    }

    pub fn remove_session(&mut self, s: SessionId) {
        self.data.remove_session(s);
        self.child.remove_session(s);
    }

    /// checkWatches: whether `s` has a watch of `kind` on `path`.
    pub fn contains(&self, path: &str, s: SessionId, kind: i32) -> bool {
        let d = self.data.modes(path, s);
        let c = self.child.modes(path, s);
        match kind {
            kind::CHILDREN => c != 0,
            kind::DATA => d != 0,
            kind::ANY => c != 0 || d != 0,
            kind::PERSISTENT => (d | c) & PERSISTENT != 0,
            kind::PERSISTENT_RECURSIVE => d & RECURSIVE != 0,
            _ => false,
        }
    }

    /// removeWatches: true if something was removed.
    pub fn remove(&mut self, path: &str, s: SessionId, kind: i32) -> bool {
        let all = STANDARD | PERSISTENT | RECURSIVE;
        match kind {
            kind::CHILDREN => self.child.remove(path, s, all),
            kind::DATA => self.data.remove(path, s, all),
            kind::ANY => {
                let c = self.child.remove(path, s, all);
                let d = self.data.remove(path, s, all);
                c || d
            }
            kind::PERSISTENT => {
                let c = self.child.remove(path, s, PERSISTENT);
                let d = self.data.remove(path, s, PERSISTENT);
                c || d
            }
            kind::PERSISTENT_RECURSIVE => self.data.remove(path, s, RECURSIVE),
            _ => false,
        }
    }

    /// Turns tree events into notifications, as `DataTree.createNode/deleteNode/setData` do.
    pub fn trigger(&mut self, events: &[TreeEvent], out: &mut Vec<Notification>) {
        let none = BTreeSet::new();
        for e in events {
            match e {
                TreeEvent::Created(p) => {
                    for s in self.data.trigger(p, &none) {
                        out.push(note(s, event::NODE_CREATED, p));
                    }
                }
                TreeEvent::DataChanged(p) => {
                    for s in self.data.trigger(p, &none) {
                        out.push(note(s, event::NODE_DATA_CHANGED, p));
                    }
                }
                TreeEvent::Deleted(p) => {
                    let fired = self.data.trigger(p, &none);
                    for &s in &fired {
                        out.push(note(s, event::NODE_DELETED, p));
                    }
                    for s in self.child.trigger(p, &fired) {
                        out.push(note(s, event::NODE_DELETED, p));
                    }
                }
                TreeEvent::ChildrenChanged(p) => {
                    for s in self.child.trigger(p, &none) {
                        out.push(note(s, event::NODE_CHILDREN_CHANGED, p));
                    }
                }
            }
        }
    }

    /// (data watches, child watches) counts, for `wchs` / `mntr`.
    pub fn counts(&self) -> (usize, usize) {
        (self.data.count(), self.child.count())
    }

    /// Paths watched per session (`wchc`).
    pub fn by_session(&self) -> Vec<(SessionId, Vec<String>)> {
        let mut out: HashMap<SessionId, BTreeSet<String>> = HashMap::new();
        for m in [&self.data, &self.child] {
            for (s, paths) in &m.by_session {
                out.entry(*s).or_default().extend(paths.iter().cloned());
            }
        }
        let mut v: Vec<_> = out
            .into_iter()
            .map(|(s, p)| (s, p.into_iter().collect()))
            .collect();
        v.sort();
        v
    }

    /// Sessions watching each path (`wchp`).
    pub fn by_path(&self) -> Vec<(String, Vec<SessionId>)> {
        let mut out: HashMap<String, BTreeSet<SessionId>> = HashMap::new();
        for m in [&self.data, &self.child] {
            for (p, w) in &m.table {
                out.entry(p.clone()).or_default().extend(w.keys().copied());
            }
        }
        let mut v: Vec<_> = out
            .into_iter()
            .map(|(p, s)| (p, s.into_iter().collect()))
            .collect();
        v.sort();
        v
    }

    pub fn session_watch_count(&self) -> usize {
        let mut s: HashSet<SessionId> = self.data.by_session.keys().copied().collect();
        s.extend(self.child.by_session.keys().copied());
        s.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(out: &[Notification]) -> Vec<(SessionId, i32, &str)> {
        out.iter()
            .map(|n| (n.session, n.event.kind, n.event.path.as_str()))
            .collect()
    }

    #[test]
    fn standard_watch_fires_once() {
        let mut w = WatchTable::default();
        w.add_data("/a", 1);
        let mut out = Vec::new();
        w.trigger(&[TreeEvent::DataChanged("/a".into())], &mut out);
        w.trigger(&[TreeEvent::DataChanged("/a".into())], &mut out);
        assert_eq!(kinds(&out), vec![(1, event::NODE_DATA_CHANGED, "/a")]);
    }

    #[test]
    fn recursive_watch_sees_descendants_but_not_child_changes() {
        let mut w = WatchTable::default();
        w.add_persistent("/a", 1, true);
        let mut out = Vec::new();
        w.trigger(
            &[
                TreeEvent::Created("/a/b/c".into()),
                TreeEvent::ChildrenChanged("/a/b".into()),
            ],
            &mut out,
        );
        w.trigger(&[TreeEvent::DataChanged("/a".into())], &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                (1, event::NODE_CREATED, "/a/b/c"),
                (1, event::NODE_DATA_CHANGED, "/a")
            ]
        );
        assert!(w.contains("/a", 1, kind::PERSISTENT_RECURSIVE));
    }

    #[test]
    fn delete_notifies_each_session_once() {
        let mut w = WatchTable::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_child("/a", 2);
        let mut out = Vec::new();
        w.trigger(&[TreeEvent::Deleted("/a".into())], &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                (1, event::NODE_DELETED, "/a"),
                (2, event::NODE_DELETED, "/a")
            ]
        );
        assert_eq!(w.counts(), (0, 0));
    }

    #[test]
    fn remove_watches_reports_absence() {
        let mut w = WatchTable::default();
        w.add_child("/a", 1);
        assert!(!w.remove("/a", 1, kind::DATA));
        assert!(w.remove("/a", 1, kind::ANY));
        assert!(!w.contains("/a", 1, kind::ANY));
    }
}
