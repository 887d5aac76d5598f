//! Drives the request state machine with arbitrary frames from a few sessions: every frame is
//! decoded (errors skipped, as the server closes such connections) and processed; the machine
//! must never panic, and replaying its txns must rebuild the same tree.
#![no_main]

use kiln_zk::jute::Reader;
use kiln_zk::proto::{Id, Request, RequestHeader};
use kiln_zk::state::{Client, StateConfig, ZkState};
use kiln_zk::txn::Txn;
use libfuzzer_sys::fuzz_target;

const LENGTH_MAX: usize = 0xfffff;

fuzz_target!(|data: &[u8]| {
    let cfg = StateConfig { extended_types: true, server_id: 1 };
    let mut st = ZkState::new(cfg.clone(), 0);
    let mut log = Vec::new();
    let sessions: Vec<i64> = (0..3)
        .map(|_| {
            let (s, t) = st.create_session(10_000, 0);
            log.push(t);
            s
        })
        .collect();
    let auth = [Id::new("digest", "u:x"), Id::new("ip", "127.0.0.1")];
    // Frames: 1 byte session selector, 2 bytes length, then the frame.
    let mut rest = data;
    let mut now = 0;
    while rest.len() >= 3 {
        let who = sessions[usize::from(rest[0]) % sessions.len()];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        let mut r = Reader::new(frame, LENGTH_MAX);
        let Ok(h) = RequestHeader::decode(&mut r) else { continue };
        let Ok(req) = Request::decode(h.op, &mut r) else { continue };
        now += 7;
        let client = Client { session: who, auth: if who == sessions[0] { &auth } else { &[] } };
        let out = st.process(&client, h.xid, &req, now);
        log.extend(out.txn);
        if st.gc_candidates(now).len() > 0 {
            for p in st.gc_candidates(now + 1_000_000) {
                if let Some(o) = st.delete_container(&p, now + 1_000_000) {
                    log.extend(o.txn);
                }
            }
        }
    }
    let mut copy = ZkState::new(cfg, 0);
    for t in &log {
        copy.apply(&Txn::from_bytes(&t.to_bytes()).expect("own txns decode"));
    }
    assert_eq!(copy.tree.sorted_nodes(), st.tree.sorted_nodes());
});
