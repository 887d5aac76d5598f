//! Snapshots taken while writes go on: the tree is frozen (O(1)) at one zxid, encoded on another
//! thread while random transactions keep changing the live tree, and then
//! - the snapshot holds exactly the state at its zxid (no later write shows through), and
//! - restoring it and replaying the whole log gives the same tree (every node's data, ACL and
//!   Stat), sessions and ephemerals as applying every transaction directly.

use kiln_zk::proto::{Acl, CreateRequest, Id, Request, op, perms};
use kiln_zk::session::SessionMeta;
use kiln_zk::snapshot::{self, Frozen};
use kiln_zk::state::{Client, StateConfig, ZkState};
use kiln_zk::tree::{Node, SessionId};
use kiln_zk::txn::Txn;
use proptest::prelude::*;

const PATHS: &[&str] = &["/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/q", "/c"];

#[derive(Debug, Clone)]
enum Step {
    NewSession,
    CloseSession(usize),
    Create {
        path: usize,
        flags: i32,
        container: bool,
        data: u8,
        session: usize,
    },
    Delete(usize),
    SetData(usize, u8),
    SetAcl(usize, bool),
    Multi(Vec<Step>),
}

fn leaf() -> impl Strategy<Value = Step> {
    let p = 0..PATHS.len();
    prop_oneof![
        1 => Just(Step::NewSession),
        1 => (0..4usize).prop_map(Step::CloseSession),
        5 => (p.clone(), 0..4i32, any::<bool>(), any::<u8>(), 0..4usize).prop_map(
            |(path, flags, container, data, session)| Step::Create { path, flags, container, data, session }
        ),
        3 => p.clone().prop_map(Step::Delete),
        4 => (p.clone(), any::<u8>()).prop_map(|(i, d)| Step::SetData(i, d)),
        1 => (p, any::<bool>()).prop_map(|(i, open)| Step::SetAcl(i, open)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => leaf(),
        1 => prop::collection::vec(leaf(), 1..4).prop_map(Step::Multi),
    ]
}

fn config() -> StateConfig {
    StateConfig {
        extended_types: true,
        server_id: 1,
    }
}

fn request(s: &Step) -> Option<Request> {
    Some(match s {
        Step::NewSession | Step::CloseSession(_) => return None,
        Step::Create {
            path,
            flags,
            container,
            data,
            ..
        } => Request::Create {
            op: if *container {
                op::CREATE_CONTAINER
            } else {
                op::CREATE2
            },
            req: CreateRequest {
                path: PATHS[*path].into(),
                data: Some(vec![*data; usize::from(*data % 5)]),
                acl: Acl::open_unsafe(),
                flags: if *container { 4 } else { *flags },
                ttl: -1,
            },
        },
        Step::Delete(i) => Request::Delete {
            path: PATHS[*i].into(),
            version: -1,
        },
        Step::SetData(i, d) => Request::SetData {
            path: PATHS[*i].into(),
            data: Some(vec![*d; 3]),
            version: -1,
        },
        Step::SetAcl(i, open) => Request::SetAcl {
            path: PATHS[*i].into(),
            acl: if *open {
                Acl::open_unsafe()
            } else {
                vec![Acl {
                    perms: perms::ALL,
                    id: Id::new("world", "anyone"),
                }]
            },
            version: -1,
        },
        Step::Multi(ops) => Request::Multi(ops.iter().filter_map(request).collect()),
    })
}

/// Runs one step against the live state, logging its txns.
fn run(st: &mut ZkState, sessions: &mut Vec<SessionId>, log: &mut Vec<Txn>, s: &Step, now: i64) {
    match s {
        Step::NewSession => {
            let (id, t) = st.create_session(30_000, now);
            sessions.push(id);
            log.push(t);
        }
        Step::CloseSession(i) => {
            if !sessions.is_empty() {
                let id = sessions.remove(i % sessions.len());
                log.extend(st.close_session(id, 0, now).txn);
            }
        }
        _ => {
            let session = match s {
                Step::Create { session, .. } if !sessions.is_empty() => {
                    sessions[session % sessions.len()]
                }
                _ => 0,
            };
            if let Some(req) = request(s) {
                let c = Client { session, auth: &[] };
                log.extend(st.process(&c, 1, &req, now).txn);
            }
        }
    }
}

type Image = Vec<(String, Node)>;

fn image(st: &ZkState) -> Image {
    st.tree
        .sorted_nodes()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn sessions_of(st: &ZkState) -> Vec<(SessionId, SessionMeta)> {
    st.sessions.iter().collect()
}

fn assert_same(a: &ZkState, b: &ZkState) {
    assert_eq!(a.last_zxid(), b.last_zxid());
    let (ia, ib) = (image(a), image(b));
    assert_eq!(ia, ib);
    for ((path, na), (_, nb)) in ia.iter().zip(&ib) {
        assert_eq!(na.stat(), nb.stat(), "Stat of {path}");
    }
    assert_eq!(sessions_of(a), sessions_of(b));
    assert_eq!(a.ephemeral_summary(), b.ephemeral_summary());
    assert_eq!(a.tree.containers(), b.tree.containers());
    assert_eq!(a.tree.data_bytes(), b.tree.data_bytes());
}

fn check(steps: &[Step], snap_at: usize) {
    let mut live = ZkState::new(config(), 0);
    let mut sessions = Vec::new();
    let mut log = Vec::new();
    let snap_at = snap_at.min(steps.len());
    for (i, s) in steps[..snap_at].iter().enumerate() {
        run(&mut live, &mut sessions, &mut log, s, i as i64);
    }
    // The state at the snapshot's zxid, deep-copied, to compare the snapshot with.
    let truth_nodes = image(&live);
    let truth_sessions = sessions_of(&live);
    let frozen = Frozen::capture(&live, log.len() as u64);
    let zxid = frozen.last_zxid;
    // Encode on another thread while the live tree keeps changing.
    let encoder = std::thread::spawn(move || frozen.encode());
    for (i, s) in steps[snap_at..].iter().enumerate() {
        run(&mut live, &mut sessions, &mut log, s, (snap_at + i) as i64);
    }
    let bytes = encoder.join().expect("encoder thread");
    let snap = snapshot::decode(&bytes).expect("snapshot decodes");
    assert_eq!(snap.last_zxid, zxid);
    let got: Image = snap
        .tree
        .sorted_nodes()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        got, truth_nodes,
        "snapshot differs from the state at its zxid"
    );
    assert_eq!(snap.sessions.iter().collect::<Vec<_>>(), truth_sessions);

    // Restore + replay (from the recorded offset, and from the very start: older txns are
    // skipped by zxid) == the live state == a replay of everything onto an empty state.
    let log_offset = usize::try_from(snap.log_offset).unwrap_or(0);
    for from in [log_offset, 0] {
        let snap = snapshot::decode(&bytes).expect("snapshot decodes");
        let mut restored = ZkState::restore(config(), 0, snap.tree, snap.sessions, snap.last_zxid);
        for t in &log[from..] {
            restored.apply(&Txn::from_bytes(&t.to_bytes()).expect("txn decodes"));
        }
        assert_same(&restored, &live);
    }
    let mut direct = ZkState::new(config(), 0);
    for t in &log {
        direct.apply(t);
    }
    assert_same(&direct, &live);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_during_writes_restores_to_the_same_state(
        steps in prop::collection::vec(step(), 1..80),
        snap_at in 0usize..80,
    ) {
        check(&steps, snap_at);
    }
}

/// A large tree with a snapshot in the middle of heavy churn: every write after the freeze
/// copies only what it changes, and the frozen view stays exact.
#[test]
fn large_tree_snapshot_during_churn() {
    let mut steps = vec![Step::NewSession, Step::NewSession];
    for i in 0..400 {
        steps.push(Step::Create {
            path: i % PATHS.len(),
            flags: (i % 4) as i32,
            container: i % 17 == 0,
            data: i as u8,
            session: i,
        });
        steps.push(Step::SetData((i * 3) % PATHS.len(), i as u8));
        if i % 5 == 0 {
            steps.push(Step::Delete((i * 7) % PATHS.len()));
        }
        if i % 50 == 0 {
            steps.push(Step::CloseSession(i));
            steps.push(Step::NewSession);
        }
    }
    for at in [0, 1, 100, 700, steps.len()] {
        check(&steps, at);
    }
}
