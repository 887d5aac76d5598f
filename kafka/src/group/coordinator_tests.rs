//! Behaviour of the pure group coordinator, named after what Apache Kafka's classic coordinator
//! does in each case.

use bytes::Bytes;

use super::GroupConfig;
use super::codes;
use super::coordinator::*;
use super::record::LogRecord;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(cfg(), 7)
}

/// A v0 ConsumerProtocolSubscription of `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = vec![0, 0];
    out.extend_from_slice(&i32::try_from(topics.len()).expect("count").to_be_bytes());
    for t in topics {
        out.extend_from_slice(&i16::try_from(t.len()).expect("len").to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1_i32).to_be_bytes());
    Bytes::from(out)
}

fn join_req(group: &str, member_id: &str, version: i16) -> JoinRequest {
    JoinRequest {
        version,
        group_id: group.into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(&["t"]))],
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn replies(c: &mut GroupCoordinator) -> Vec<(Token, Reply)> {
    c.take_replies()
}

fn join_reply(c: &mut GroupCoordinator, token: Token) -> Option<JoinResponse> {
    let mut found = None;
    for (t, r) in replies(c) {
        if let (true, Reply::Join(j)) = (t == token, r) {
            found = Some(j);
        }
    }
    found
}

/// Joins and, when the join waits for the initial-rebalance timer (zero delay here), runs the
/// timer once at the same instant.
fn join_now(c: &mut GroupCoordinator, now: u64, token: Token, req: JoinRequest) -> JoinResponse {
    c.join(now, token, req);
    let mut got = replies(c);
    if !got.iter().any(|(t, _)| *t == token) {
        c.tick(now);
        got.extend(replies(c));
    }
    got.into_iter()
        .find_map(|(t, r)| match (t == token, r) {
            (true, Reply::Join(j)) => Some(j),
            _ => None,
        })
        .expect("join answered at once")
}

/// Joins a new dynamic member with the v4+ two-step handshake; returns its member id. The join
/// itself may still be waiting (token 1000 + n).
fn new_member(c: &mut GroupCoordinator, now: u64, group: &str, token: Token) -> String {
    let first = join_now(c, now, token, join_req(group, "", 5));
    assert_eq!(first.error, codes::MEMBER_ID_REQUIRED);
    assert!(first.member_id.starts_with("client-"));
    first.member_id
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        assignments,
        ..SyncRequest::default()
    }
}

fn sync_replies(c: &mut GroupCoordinator) -> Vec<(Token, SyncResponse)> {
    replies(c)
        .into_iter()
        .filter_map(|(t, r)| match r {
            Reply::Sync(s) => Some((t, s)),
            Reply::Join(_) => None,
        })
        .collect()
}

fn hb(c: &mut GroupCoordinator, now: u64, group: &str, member: &str, generation: i32) -> i16 {
    c.heartbeat(
        now,
        &HeartbeatRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
    )
}

/// One member joined and synced: returns (member id, generation).
fn stable_single(c: &mut GroupCoordinator, group: &str) -> (String, i32) {
    let id = new_member(c, 0, group, 1);
    let j = join_now(c, 0, 2, join_req(group, &id, 5));
    assert_eq!(j.error, codes::NONE);
    c.sync(
        0,
        3,
        sync_req(
            group,
            &id,
            j.generation_id,
            vec![(id.clone(), Bytes::from_static(b"a"))],
        ),
    );
    let s = sync_replies(c);
    assert_eq!(s.len(), 1);
    (id, j.generation_id)
}

fn commit_req(
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> CommitRequest {
    CommitRequest {
        version: 8,
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![(
            topic.into(),
            vec![CommitPartition {
                partition,
                offset,
                leader_epoch: 2,
                metadata: Some("meta".into()),
            }],
        )],
    }
}

fn exists(_: &str, p: i32) -> bool {
    (0..4).contains(&p)
}

fn commit_error(errors: &PartitionErrors) -> i16 {
    errors[0].1[0].1
}

#[test]
fn join_v4_without_member_id_returns_member_id_required() {
    let mut c = coordinator();
    let r = join_now(&mut c, 0, 1, join_req("g", "", 4));
    assert_eq!(r.error, codes::MEMBER_ID_REQUIRED);
    assert_eq!(r.generation_id, -1);
    assert!(!r.member_id.is_empty());
    assert_eq!(c.state("g"), GroupState::Empty);
}

#[test]
fn join_v3_without_member_id_joins_at_once() {
    let mut c = coordinator();
    let r = join_now(&mut c, 0, 1, join_req("g", "", 3));
    assert_eq!(r.error, codes::NONE);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
    assert_eq!(c.state("g"), GroupState::CompletingRebalance);
}

#[test]
fn member_ids_are_unique() {
    let mut c = coordinator();
    let a = new_member(&mut c, 0, "g", 1);
    let b = new_member(&mut c, 0, "g", 2);
    assert_ne!(a, b);
}

#[test]
fn single_member_join_sync_heartbeat_lifecycle() {
    let mut c = coordinator();
    let id = new_member(&mut c, 0, "g", 1);
    let j = join_now(&mut c, 0, 2, join_req("g", &id, 5));
    assert_eq!(j.error, codes::NONE);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.leader, id);
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.members[0].metadata, subscription(&["t"]));
    assert_eq!(c.state("g"), GroupState::CompletingRebalance);
    c.sync(
        0,
        3,
        sync_req(
            "g",
            &id,
            1,
            vec![(id.clone(), Bytes::from_static(b"assign"))],
        ),
    );
    let s = sync_replies(&mut c);
    assert_eq!(
        s,
        vec![(
            3,
            SyncResponse {
                error: codes::NONE,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"assign"),
            }
        )]
    );
    assert_eq!(c.state("g"), GroupState::Stable);
    assert_eq!(hb(&mut c, 100, "g", &id, 1), codes::NONE);
    // A SyncGroup in Stable returns the current assignment again.
    c.sync(200, 4, sync_req("g", &id, 1, vec![]));
    assert_eq!(
        sync_replies(&mut c)[0].1.assignment,
        Bytes::from_static(b"assign")
    );
    // The generation was persisted.
    assert!(
        c.take_records()
            .iter()
            .any(|r| matches!(r, LogRecord::Group { value: Some(v), .. } if v.generation_id == 1))
    );
}

#[test]
fn second_member_triggers_rebalance_and_first_is_leader() {
    let mut c = coordinator();
    let (a, gen1) = stable_single(&mut c, "g");
    let b = new_member(&mut c, 10, "g", 10);
    c.join(10, 11, join_req("g", &b, 5));
    assert!(
        join_reply(&mut c, 11).is_none(),
        "waits for the other member to rejoin"
    );
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    assert_eq!(hb(&mut c, 20, "g", &a, gen1), codes::REBALANCE_IN_PROGRESS);
    c.join(30, 12, join_req("g", &a, 5));
    let all = replies(&mut c);
    assert_eq!(all.len(), 2);
    let mut leader_members = 0;
    for (t, r) in all {
        let Reply::Join(j) = r else {
            panic!("join reply expected")
        };
        assert_eq!(j.error, codes::NONE);
        assert_eq!(j.generation_id, gen1 + 1);
        assert_eq!(j.leader, a, "the first member stays leader");
        if t == 12 {
            leader_members = j.members.len();
            assert_eq!(j.members[0].member_id, a, "members in join order");
        } else {
            assert!(j.members.is_empty(), "followers get no member list");
        }
    }
    assert_eq!(leader_members, 2);
    // The follower's SyncGroup waits for the leader's.
    c.sync(40, 13, sync_req("g", &b, gen1 + 1, vec![]));
    assert!(sync_replies(&mut c).is_empty());
    c.sync(
        50,
        14,
        sync_req(
            "g",
            &a,
            gen1 + 1,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
        ),
    );
    let mut s = sync_replies(&mut c);
    s.sort_by_key(|(t, _)| *t);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].1.assignment, Bytes::from_static(b"B"));
    assert_eq!(s[1].1.assignment, Bytes::from_static(b"A"));
    assert_eq!(c.state("g"), GroupState::Stable);
}

#[test]
fn protocol_selection_takes_the_most_voted_common_protocol() {
    let mut c = coordinator();
    let proto = |names: &[&str]| {
        names
            .iter()
            .map(|n| ((*n).to_owned(), Bytes::from_static(b"m")))
            .collect::<Vec<_>>()
    };
    for (i, p) in [
        proto(&["x", "y", "z"]),
        proto(&["y", "x"]),
        proto(&["y", "x", "z"]),
    ]
    .into_iter()
    .enumerate()
    {
        let token = u64::try_from(i).expect("small") * 10;
        let mut req = join_req("g", "", 3);
        req.protocols = p;
        c.join(0, token, req);
    }
    // All three arrive before the initial-rebalance timer fires: one generation holds them all.
    assert!(replies(&mut c).is_empty());
    // The first firing sees new members and waits one more round; the second completes.
    c.tick(100);
    assert!(replies(&mut c).is_empty());
    c.tick(200);
    let replies: Vec<_> = replies(&mut c);
    assert_eq!(replies.len(), 3);
    for (_, r) in &replies {
        let Reply::Join(j) = r else {
            panic!("join reply expected")
        };
        assert_eq!(j.error, codes::NONE);
        assert_eq!(j.generation_id, 1);
        assert_eq!(
            j.protocol_name.as_deref(),
            Some("y"),
            "y has two votes, x one"
        );
    }
}

#[test]
fn inconsistent_protocols_are_refused() {
    let mut c = coordinator();
    let (_, _) = stable_single(&mut c, "g");
    let mut other_type = join_req("g", "", 3);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        join_now(&mut c, 0, 9, other_type).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut no_common = join_req("g", "", 3);
    no_common.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        join_now(&mut c, 0, 10, no_common).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut empty = join_req("h", "", 3);
    empty.protocols.clear();
    assert_eq!(
        join_now(&mut c, 0, 11, empty).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn invalid_session_timeouts_and_group_ids_are_refused() {
    let mut c = coordinator();
    let mut low = join_req("g", "", 5);
    low.session_timeout_ms = 5_999;
    assert_eq!(
        join_now(&mut c, 0, 1, low).error,
        codes::INVALID_SESSION_TIMEOUT
    );
    let mut high = join_req("g", "", 5);
    high.session_timeout_ms = 1_800_001;
    assert_eq!(
        join_now(&mut c, 0, 2, high).error,
        codes::INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        join_now(&mut c, 0, 3, join_req("", "", 5)).error,
        codes::INVALID_GROUP_ID
    );
}

#[test]
fn unknown_members_and_old_generations_are_refused() {
    let mut c = coordinator();
    assert_eq!(hb(&mut c, 0, "nope", "m", 1), codes::UNKNOWN_MEMBER_ID);
    let (id, generation) = stable_single(&mut c, "g");
    assert_eq!(
        hb(&mut c, 0, "g", "stranger", generation),
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        hb(&mut c, 0, "g", &id, generation + 1),
        codes::ILLEGAL_GENERATION
    );
    c.sync(0, 5, sync_req("g", &id, generation - 1, vec![]));
    assert_eq!(sync_replies(&mut c)[0].1.error, codes::ILLEGAL_GENERATION);
    c.sync(0, 6, sync_req("g", "stranger", generation, vec![]));
    assert_eq!(sync_replies(&mut c)[0].1.error, codes::UNKNOWN_MEMBER_ID);
    c.sync(0, 7, sync_req("nope", "m", 1, vec![]));
    assert_eq!(sync_replies(&mut c)[0].1.error, codes::UNKNOWN_MEMBER_ID);
    assert_eq!(
        join_now(&mut c, 0, 8, join_req("g", "stranger", 5)).error,
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        join_now(&mut c, 0, 9, join_req("nope", "m", 5)).error,
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn sync_with_mismatched_protocol_is_inconsistent() {
    let mut c = coordinator();
    let id = new_member(&mut c, 0, "g", 1);
    let j = join_now(&mut c, 0, 2, join_req("g", &id, 5));
    let mut req = sync_req("g", &id, j.generation_id, vec![]);
    req.protocol_name = Some("roundrobin".into());
    c.sync(0, 3, req);
    assert_eq!(
        sync_replies(&mut c)[0].1.error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn session_timeout_removes_a_silent_member() {
    let mut c = coordinator();
    let (a, _) = stable_single(&mut c, "g");
    let b = new_member(&mut c, 0, "g", 10);
    c.join(0, 11, join_req("g", &b, 5));
    c.join(0, 12, join_req("g", &a, 5));
    let generation = join_reply(&mut c, 12).expect("joined").generation_id;
    c.sync(0, 13, sync_req("g", &a, generation, vec![]));
    c.sync(0, 14, sync_req("g", &b, generation, vec![]));
    assert_eq!(sync_replies(&mut c).len(), 2);
    // a heartbeats, b stays silent.
    for t in (1_000..=10_000).step_by(1_000) {
        assert_eq!(hb(&mut c, t, "g", &a, generation), codes::NONE);
        c.tick(t);
    }
    assert_eq!(
        c.state("g"),
        GroupState::PreparingRebalance,
        "b expired at 10 s"
    );
    assert_eq!(
        hb(&mut c, 10_500, "g", &b, generation),
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        hb(&mut c, 10_500, "g", &a, generation),
        codes::REBALANCE_IN_PROGRESS
    );
    let j = join_now(&mut c, 11_000, 15, join_req("g", &a, 5));
    assert_eq!(j.generation_id, generation + 1);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn last_member_expiring_leaves_the_group_empty() {
    let mut c = coordinator();
    let (_, generation) = stable_single(&mut c, "g");
    c.tick(u64::try_from(SESSION).expect("positive"));
    assert_eq!(c.state("g"), GroupState::Empty);
    assert_eq!(c.describe("g", 5).members.len(), 0);
    let records = c.take_records();
    assert!(records.iter().any(|r| matches!(r, LogRecord::Group { value: Some(v), .. } if v.generation_id == generation + 1)));
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut c = coordinator();
    let (a, _) = stable_single(&mut c, "g");
    let b = new_member(&mut c, 0, "g", 10);
    c.join(0, 11, join_req("g", &b, 5));
    c.join(0, 12, join_req("g", &a, 5));
    let gen2 = join_reply(&mut c, 12).expect("joined").generation_id;
    c.sync(0, 13, sync_req("g", &a, gen2, vec![]));
    c.sync(0, 14, sync_req("g", &b, gen2, vec![]));
    let _ = sync_replies(&mut c);
    // c joins; b rejoins; a keeps heartbeating but never rejoins.
    let third = new_member(&mut c, 1_000, "g", 20);
    c.join(1_000, 21, join_req("g", &third, 5));
    c.join(2_000, 22, join_req("g", &b, 5));
    for t in (3_000..31_000).step_by(3_000) {
        assert_eq!(hb(&mut c, t, "g", &a, gen2), codes::REBALANCE_IN_PROGRESS);
        c.tick(t);
    }
    assert!(replies(&mut c).is_empty());
    c.tick(31_000);
    let done = replies(&mut c);
    assert_eq!(done.len(), 2);
    for (_, r) in done {
        let Reply::Join(j) = r else { panic!("join") };
        assert_eq!(j.generation_id, gen2 + 1);
        assert_eq!(
            j.leader, b,
            "the leader did not rejoin, so a rejoined member leads"
        );
    }
    assert_eq!(hb(&mut c, 31_000, "g", &a, gen2), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn initial_rebalance_delay_waits_and_extends_for_new_members() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        },
        1,
    );
    c.join(0, 1, join_req("g", "", 3));
    assert!(replies(&mut c).is_empty());
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    assert_eq!(c.describe("g", 5).state, "PreparingRebalance");
    c.join(1_000, 2, join_req("g", "", 3));
    c.tick(2_999);
    assert!(replies(&mut c).is_empty());
    c.tick(3_000);
    assert!(
        replies(&mut c).is_empty(),
        "a member arrived during the delay: wait once more"
    );
    c.tick(5_999);
    assert!(replies(&mut c).is_empty());
    c.tick(6_000);
    let done = replies(&mut c);
    assert_eq!(done.len(), 2);
    assert_eq!(c.state("g"), GroupState::CompletingRebalance);
    assert_eq!(c.next_deadline_ms().map(|d| d > 6_000), Some(true));
}

/// librdkafka 0118 / 0089: two consumers subscribe together; with a zero initial delay the
/// second one's JoinGroup arrives a few milliseconds after the first's. Kafka completes the first
/// rebalance of an empty group only from its timer, so both land in generation 1 (otherwise the
/// first member, busy in its application, must rejoin before the second is served).
#[test]
fn members_arriving_before_the_initial_timer_fires_share_the_first_generation() {
    let mut c = coordinator();
    let a = new_member(&mut c, 0, "g", 1);
    c.join(1, 2, join_req("g", &a, 5));
    assert!(
        replies(&mut c).is_empty(),
        "waits for the timer, not answered inside JoinGroup"
    );
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    let b = new_member(&mut c, 2, "g", 3);
    c.join(3, 4, join_req("g", &b, 5));
    assert!(replies(&mut c).is_empty());
    // The timer fires: a member arrived meanwhile, so it waits one more round for stragglers.
    c.tick(100);
    assert!(replies(&mut c).is_empty());
    c.tick(200);
    let done = replies(&mut c);
    assert_eq!(done.len(), 2);
    for (t, r) in done {
        let Reply::Join(j) = r else {
            panic!("join reply expected")
        };
        assert_eq!(j.error, codes::NONE);
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.leader, a);
        assert_eq!(j.members.len(), if t == 2 { 2 } else { 0 });
    }
    assert_eq!(c.state("g"), GroupState::CompletingRebalance);
}

#[test]
fn initial_rebalance_extensions_stop_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let a = new_member(&mut c, 0, "g", 1);
    c.join(0, 2, join_req("g", &a, 5));
    // A new member arrives before every tick: the join phase keeps waiting, but not past the
    // rebalance timeout.
    let step = 100;
    let mut now = 0;
    let mut token = 10;
    while now < u64::try_from(REBALANCE).expect("positive") {
        let id = new_member(&mut c, now + 1, "g", token);
        c.join(now + 1, token + 1, join_req("g", &id, 5));
        token += 2;
        now += step;
        c.tick(now);
        if now < u64::try_from(REBALANCE).expect("positive") {
            assert!(join_reply(&mut c, 2).is_none(), "still extending at {now}");
        }
    }
    assert!(
        join_reply(&mut c, 2).is_some(),
        "completed at the rebalance timeout"
    );
    assert_eq!(c.state("g"), GroupState::CompletingRebalance);
}

/// A leave during the initial delay does not complete the join phase early either.
#[test]
fn leave_during_initial_delay_waits_for_the_timer() {
    let mut c = coordinator();
    let a = new_member(&mut c, 0, "g", 1);
    c.join(0, 2, join_req("g", &a, 5));
    let b = new_member(&mut c, 0, "g", 3);
    c.join(0, 4, join_req("g", &b, 5));
    let left = c.leave(
        1,
        "g",
        &[LeavingMember {
            member_id: b.clone(),
            group_instance_id: None,
        }],
    );
    assert_eq!(left.members[0].error, codes::NONE);
    let early: Vec<_> = replies(&mut c)
        .into_iter()
        .filter(|(t, _)| *t == 2)
        .collect();
    assert!(early.is_empty(), "the remaining member waits for the timer");
    c.tick(100);
    c.tick(200);
    let j = join_reply(&mut c, 2).expect("completed by the timer");
    assert_eq!(j.members.len(), 1);
}

#[test]
fn pending_member_blocks_rebalance_until_it_expires() {
    let mut c = coordinator();
    let (a, _) = stable_single(&mut c, "g");
    let _pending = new_member(&mut c, 0, "g", 10);
    let b = new_member(&mut c, 0, "g", 11);
    c.join(0, 12, join_req("g", &b, 5));
    c.join(0, 13, join_req("g", &a, 5));
    assert!(
        join_reply(&mut c, 13).is_none(),
        "a pending member has not joined yet"
    );
    c.tick(u64::try_from(SESSION).expect("positive"));
    assert!(
        join_reply(&mut c, 13).is_some(),
        "the pending member expired"
    );
}

#[test]
fn rejoining_during_completing_rebalance_voids_waiting_syncs() {
    let mut c = coordinator();
    let (a, _) = stable_single(&mut c, "g");
    let b = new_member(&mut c, 0, "g", 10);
    c.join(0, 11, join_req("g", &b, 5));
    c.join(0, 12, join_req("g", &a, 5));
    let generation = join_reply(&mut c, 12).expect("joined").generation_id;
    c.sync(0, 13, sync_req("g", &b, generation, vec![]));
    let third = new_member(&mut c, 0, "g", 20);
    c.join(0, 21, join_req("g", &third, 5));
    let s = sync_replies(&mut c);
    assert_eq!(
        s,
        vec![(
            13,
            SyncResponse::error_for_test(codes::REBALANCE_IN_PROGRESS)
        )]
    );
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let a = new_member(&mut c, 0, "g", 1);
    let generation = join_now(&mut c, 0, 2, join_req("g", &a, 5)).generation_id;
    c.tick(u64::try_from(REBALANCE).expect("positive"));
    assert_eq!(c.state("g"), GroupState::Empty);
    assert_eq!(
        hb(&mut c, 30_001, "g", &a, generation),
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_second_join_supersedes_a_waiting_one() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        },
        1,
    );
    let r = join_now(&mut c, 0, 1, join_req("g", "", 4));
    let id = r.member_id;
    c.join(0, 2, join_req("g", &id, 4));
    c.join(100, 3, join_req("g", &id, 4));
    assert_eq!(
        join_reply(&mut c, 2).map(|j| j.error),
        Some(codes::REBALANCE_IN_PROGRESS)
    );
    c.tick(3_100);
    assert_eq!(join_reply(&mut c, 3).map(|j| j.error), Some(codes::NONE));
}

#[test]
fn group_max_size_is_enforced() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            group_max_size: 2,
            ..GroupConfig::default()
        },
        1,
    );
    let _a = new_member(&mut c, 0, "g", 1);
    let _b = new_member(&mut c, 0, "g", 2);
    assert_eq!(
        join_now(&mut c, 0, 3, join_req("g", "", 5)).error,
        codes::GROUP_MAX_SIZE_REACHED
    );
}

#[test]
fn groups_max_is_enforced() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            groups_max: 1,
            ..GroupConfig::default()
        },
        1,
    );
    let _ = stable_single(&mut c, "g");
    assert_eq!(
        join_now(&mut c, 0, 9, join_req("h", "", 5)).error,
        codes::GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(
        commit_error(&c.commit(0, commit_req("h", -1, "", "t", 0, 1), &exists)),
        codes::GROUP_MAX_SIZE_REACHED
    );
}

fn static_join(group: &str, member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..join_req(group, member_id, 5)
    }
}

#[test]
fn static_member_joins_without_member_id_required_and_restarts_without_rebalance() {
    let mut c = coordinator();
    let j = join_now(&mut c, 0, 1, static_join("g", "", "i1"));
    assert_eq!(
        j.error,
        codes::NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let old = j.member_id.clone();
    let generation = j.generation_id;
    c.sync(
        0,
        2,
        sync_req(
            "g",
            &old,
            generation,
            vec![(old.clone(), Bytes::from_static(b"A"))],
        ),
    );
    let _ = sync_replies(&mut c);
    // The process restarts and joins again with the same instance id and no member id.
    let j2 = join_now(&mut c, 100, 3, static_join("g", "", "i1"));
    assert_eq!(j2.error, codes::NONE);
    assert_ne!(j2.member_id, old);
    assert_eq!(j2.generation_id, generation, "no rebalance");
    assert_eq!(
        j2.leader, j2.member_id,
        "leadership moves to the new member id"
    );
    assert_eq!(c.state("g"), GroupState::Stable);
    // The old incarnation is fenced.
    let fenced = c.heartbeat(
        100,
        &HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: old.clone(),
            group_instance_id: Some("i1".into()),
        },
    );
    assert_eq!(fenced, codes::FENCED_INSTANCE_ID);
    let mut commit = commit_req("g", generation, &old, "t", 0, 5);
    commit.group_instance_id = Some("i1".into());
    assert_eq!(
        commit_error(&c.commit(100, commit, &exists)),
        codes::FENCED_INSTANCE_ID
    );
    // The new one keeps the assignment.
    c.sync(
        100,
        4,
        SyncRequest {
            group_instance_id: Some("i1".into()),
            ..sync_req("g", &j2.member_id, generation, vec![])
        },
    );
    assert_eq!(
        sync_replies(&mut c)[0].1.assignment,
        Bytes::from_static(b"A")
    );
}

#[test]
fn static_leader_rejoining_with_v9_skips_assignment() {
    let mut c = coordinator();
    let j = join_now(
        &mut c,
        0,
        1,
        JoinRequest {
            version: 9,
            ..static_join("g", "", "i1")
        },
    );
    c.sync(0, 2, sync_req("g", &j.member_id, j.generation_id, vec![]));
    let _ = sync_replies(&mut c);
    let j2 = join_now(
        &mut c,
        0,
        3,
        JoinRequest {
            version: 9,
            ..static_join("g", "", "i1")
        },
    );
    assert!(j2.skip_assignment);
    assert_eq!(j2.members.len(), 1);
}

#[test]
fn static_member_with_wrong_member_id_is_fenced_on_join() {
    let mut c = coordinator();
    let _ = join_now(&mut c, 0, 1, static_join("g", "", "i1"));
    assert_eq!(
        join_now(&mut c, 0, 2, static_join("g", "client-other", "i1")).error,
        codes::FENCED_INSTANCE_ID
    );
}

#[test]
fn leave_group_v3_batch_removes_members_and_reports_each() {
    let mut c = coordinator();
    let a = join_now(&mut c, 0, 1, static_join("g", "", "i1")).member_id;
    c.sync(0, 2, sync_req("g", &a, 1, vec![]));
    let _ = sync_replies(&mut c);
    let b = new_member(&mut c, 0, "g", 10);
    c.join(0, 11, join_req("g", &b, 5));
    c.join(0, 12, static_join("g", &a, "i1"));
    let _ = replies(&mut c);
    let resp = c.leave(
        0,
        "g",
        &[
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("i1".into()),
            },
            LeavingMember {
                member_id: b.clone(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: "ghost".into(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: "x".into(),
                group_instance_id: Some("i9".into()),
            },
        ],
    );
    assert_eq!(resp.error, codes::NONE);
    let errors: Vec<i16> = resp.members.iter().map(|m| m.error).collect();
    assert_eq!(
        errors,
        vec![
            codes::NONE,
            codes::NONE,
            codes::UNKNOWN_MEMBER_ID,
            codes::UNKNOWN_MEMBER_ID
        ]
    );
    assert_eq!(c.state("g"), GroupState::Empty);
    assert_eq!(
        c.leave(0, "nope", &[LeavingMember::default()]).error,
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn leave_with_fenced_instance_is_refused() {
    let mut c = coordinator();
    let _ = join_now(&mut c, 0, 1, static_join("g", "", "i1"));
    let resp = c.leave(
        0,
        "g",
        &[LeavingMember {
            member_id: "wrong".into(),
            group_instance_id: Some("i1".into()),
        }],
    );
    assert_eq!(resp.members[0].error, codes::FENCED_INSTANCE_ID);
}

#[test]
fn leaving_member_rebalances_the_rest() {
    let mut c = coordinator();
    let (a, _) = stable_single(&mut c, "g");
    let b = new_member(&mut c, 0, "g", 10);
    c.join(0, 11, join_req("g", &b, 5));
    c.join(0, 12, join_req("g", &a, 5));
    let generation = join_reply(&mut c, 12).expect("joined").generation_id;
    let _ = replies(&mut c);
    c.sync(0, 13, sync_req("g", &a, generation, vec![]));
    let _ = sync_replies(&mut c);
    c.leave(
        0,
        "g",
        &[LeavingMember {
            member_id: a.clone(),
            group_instance_id: None,
        }],
    );
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    let j = join_now(&mut c, 0, 14, join_req("g", &b, 5));
    assert_eq!(j.leader, b);
    assert_eq!(j.generation_id, generation + 1);
}

#[test]
fn leaving_member_waiting_in_join_gets_unknown_member() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        },
        1,
    );
    let j = join_now(&mut c, 0, 1, join_req("g", "", 4));
    c.join(0, 2, join_req("g", &j.member_id, 4));
    c.leave(
        0,
        "g",
        &[LeavingMember {
            member_id: j.member_id.clone(),
            group_instance_id: None,
        }],
    );
    assert_eq!(
        join_reply(&mut c, 2).map(|r| r.error),
        Some(codes::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(c.state("g"), GroupState::Empty);
}

#[test]
fn describe_reports_every_state() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: 1_000,
            ..GroupConfig::default()
        },
        1,
    );
    let dead = c.describe("nope", 5);
    assert_eq!((dead.error, dead.state), (codes::NONE, "Dead"));
    let dead6 = c.describe("nope", 6);
    assert_eq!(
        (dead6.error, dead6.state),
        (codes::GROUP_ID_NOT_FOUND, "Dead")
    );
    assert!(dead6.error_message.is_some());
    c.commit(0, commit_req("simple", -1, "", "t", 0, 1), &exists);
    assert_eq!(c.describe("simple", 5).state, "Empty");
    c.join(0, 1, join_req("g", "", 3));
    assert_eq!(c.describe("g", 5).state, "PreparingRebalance");
    c.tick(1_000);
    let j = join_reply(&mut c, 1).expect("joined");
    let d = c.describe("g", 5);
    assert_eq!(d.state, "CompletingRebalance");
    assert_eq!(d.protocol_data, "", "protocol only shown when Stable");
    assert!(d.members[0].metadata.is_empty());
    c.sync(
        1_000,
        2,
        sync_req(
            "g",
            &j.member_id,
            j.generation_id,
            vec![(j.member_id.clone(), Bytes::from_static(b"x"))],
        ),
    );
    let d = c.describe("g", 5);
    assert_eq!(d.state, "Stable");
    assert_eq!(d.protocol_type, "consumer");
    assert_eq!(d.protocol_data, "range");
    assert_eq!(d.members[0].client_id, "client");
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"x"));
    assert_eq!(d.members[0].metadata, subscription(&["t"]));
}

#[test]
fn list_groups_filters_by_state_and_type() {
    let mut c = coordinator();
    let _ = stable_single(&mut c, "stable");
    c.commit(0, commit_req("simple", -1, "", "t", 0, 1), &exists);
    let all = c.list(&[], &[]);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].group_id, "simple");
    assert_eq!(all[0].protocol_type, "");
    assert_eq!(all[1].protocol_type, "consumer");
    let stable = c.list(&["stable".into()], &[]);
    assert_eq!(
        stable
            .iter()
            .map(|g| g.group_id.as_str())
            .collect::<Vec<_>>(),
        vec!["stable"]
    );
    assert_eq!(c.list(&["Empty".into(), "Dead".into()], &[]).len(), 1);
    assert_eq!(c.list(&[], &["Classic".into()]).len(), 2);
    assert!(c.list(&[], &["consumer".into()]).is_empty());
}

#[test]
fn delete_groups_refuses_non_empty_and_unknown_groups() {
    let mut c = coordinator();
    let _ = stable_single(&mut c, "busy");
    c.commit(0, commit_req("idle", -1, "", "t", 1, 10), &exists);
    let _ = c.take_records();
    assert_eq!(c.delete_group("busy"), codes::NON_EMPTY_GROUP);
    assert_eq!(c.delete_group("nope"), codes::GROUP_ID_NOT_FOUND);
    assert_eq!(c.delete_group(""), codes::INVALID_GROUP_ID);
    assert_eq!(c.delete_group("idle"), codes::NONE);
    assert_eq!(c.state("idle"), GroupState::Dead);
    let records = c.take_records();
    assert_eq!(
        records,
        vec![
            LogRecord::Offset {
                group_id: "idle".into(),
                topic: "t".into(),
                partition: 1,
                value: None
            },
            LogRecord::Group {
                group_id: "idle".into(),
                value: None
            },
        ]
    );
    assert_eq!(c.fetch_offsets("idle", None).topics.len(), 0);
}

#[test]
fn simple_commits_create_a_group_and_round_trip_metadata() {
    let mut c = coordinator();
    let errors = c.commit(5, commit_req("g", -1, "", "t", 0, 42), &exists);
    assert_eq!(errors, vec![("t".to_owned(), vec![(0, codes::NONE)])]);
    let records = c.take_records();
    assert_eq!(records.len(), 1);
    let fetched = c.fetch_offsets("g", Some(&[("t".to_owned(), vec![0, 1])]));
    assert_eq!(
        fetched.topics[0].1[0],
        FetchedPartition {
            partition: 0,
            offset: 42,
            leader_epoch: 2,
            metadata: Some("meta".into()),
            error: codes::NONE,
        }
    );
    assert_eq!(fetched.topics[0].1[1].offset, -1, "no commit reads as -1");
    let all = c.fetch_offsets("g", None);
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].1.len(), 1);
    let unknown = c.fetch_offsets("nope", Some(&[("t".to_owned(), vec![3])]));
    assert_eq!(
        (unknown.error, unknown.topics[0].1[0].offset),
        (codes::NONE, -1)
    );
    assert!(c.fetch_offsets("nope", None).topics.is_empty());
}

#[test]
fn null_commit_metadata_reads_back_empty() {
    let mut c = coordinator();
    let mut req = commit_req("g", -1, "", "t", 0, 1);
    req.topics[0].1[0].metadata = None;
    c.commit(0, req, &exists);
    assert_eq!(
        c.fetch_offsets("g", None).topics[0].1[0]
            .metadata
            .as_deref(),
        Some("")
    );
}

#[test]
fn commit_checks_partitions_and_metadata_size() {
    let mut c = coordinator();
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", -1, "", "t", 99, 1), &exists)),
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    let mut big = commit_req("g", -1, "", "t", 0, 1);
    big.topics[0].1[0].metadata = Some("x".repeat(4097));
    assert_eq!(
        commit_error(&c.commit(0, big, &exists)),
        codes::OFFSET_METADATA_TOO_LARGE
    );
    assert!(c.take_records().is_empty());
    assert_eq!(
        commit_error(&c.commit(0, commit_req("", -1, "", "t", 0, 1), &exists)),
        codes::INVALID_GROUP_ID
    );
}

#[test]
fn commits_from_members_are_checked_against_generation_and_state() {
    let mut c = coordinator();
    assert_eq!(
        commit_error(&c.commit(0, commit_req("nope", 1, "m", "t", 0, 1), &exists)),
        codes::ILLEGAL_GENERATION
    );
    let mut v9 = commit_req("nope", 1, "m", "t", 0, 1);
    v9.version = 9;
    assert_eq!(
        commit_error(&c.commit(0, v9, &exists)),
        codes::GROUP_ID_NOT_FOUND
    );
    let id = new_member(&mut c, 0, "g", 1);
    let j = join_now(&mut c, 0, 2, join_req("g", &id, 5));
    let generation = j.generation_id;
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", generation, &id, "t", 0, 1), &exists)),
        codes::REBALANCE_IN_PROGRESS
    );
    c.sync(0, 3, sync_req("g", &id, generation, vec![]));
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", generation, &id, "t", 0, 1), &exists)),
        codes::NONE
    );
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", generation + 1, &id, "t", 0, 1), &exists)),
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", generation, "other", "t", 0, 1), &exists)),
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", -1, "", "t", 0, 1), &exists)),
        codes::UNKNOWN_MEMBER_ID
    );
    // During PreparingRebalance the current generation may still commit.
    let _b = new_member(&mut c, 0, "g", 10);
    let b = _b;
    c.join(0, 11, join_req("g", &b, 5));
    assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    assert_eq!(
        commit_error(&c.commit(0, commit_req("g", generation, &id, "t", 0, 7), &exists)),
        codes::NONE
    );
}

#[test]
fn commits_keep_a_member_alive() {
    let mut c = coordinator();
    let (id, generation) = stable_single(&mut c, "g");
    c.commit(9_000, commit_req("g", generation, &id, "t", 0, 1), &exists);
    c.tick(10_000);
    assert_eq!(c.state("g"), GroupState::Stable);
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut c = coordinator();
    let (id, generation) = stable_single(&mut c, "g");
    c.commit(0, commit_req("g", generation, &id, "t", 0, 1), &exists);
    c.commit(0, commit_req("g", generation, &id, "other", 0, 1), &exists);
    let _ = c.take_records();
    let resp = c.delete_offsets("g", &[("t".into(), vec![0]), ("other".into(), vec![0, 1])]);
    assert_eq!(resp.error, codes::NONE);
    assert_eq!(
        resp.topics,
        vec![
            ("t".to_owned(), vec![(0, codes::GROUP_SUBSCRIBED_TO_TOPIC)]),
            ("other".to_owned(), vec![(0, codes::NONE), (1, codes::NONE)]),
        ]
    );
    assert_eq!(
        c.take_records().len(),
        1,
        "one tombstone for the one committed offset"
    );
    assert_eq!(
        c.delete_offsets("nope", &[]).error,
        codes::GROUP_ID_NOT_FOUND
    );
    c.leave(
        0,
        "g",
        &[LeavingMember {
            member_id: id,
            group_instance_id: None,
        }],
    );
    let resp = c.delete_offsets("g", &[("t".into(), vec![0])]);
    assert_eq!(
        resp.topics[0].1[0].1,
        codes::NONE,
        "empty groups may delete anything"
    );
}

#[test]
fn offset_delete_on_non_consumer_group_with_members_is_non_empty() {
    let mut c = coordinator();
    let mut req = join_req("g", "", 3);
    req.protocol_type = "connect".into();
    let _ = join_now(&mut c, 0, 1, req);
    assert_eq!(
        c.delete_offsets("g", &[("t".into(), vec![0])]).error,
        codes::NON_EMPTY_GROUP
    );
}

#[test]
fn replay_recovers_offsets_and_generations() {
    let mut c = coordinator();
    let (id, generation) = stable_single(&mut c, "g");
    c.commit(0, commit_req("g", generation, &id, "t", 0, 11), &exists);
    c.commit(0, commit_req("g", generation, &id, "t", 1, 12), &exists);
    c.delete_offsets("g", &[]);
    c.commit(0, commit_req("s", -1, "", "t", 0, 5), &exists);
    c.delete_group("s");
    let records = c.take_records();
    let mut restarted = coordinator();
    for r in &records {
        let decoded =
            LogRecord::decode(&r.encode_key(), r.encode_value().as_deref()).expect("decodes");
        restarted.replay(&decoded, 100);
    }
    assert_eq!(
        restarted.fetch_offsets("g", None),
        c.fetch_offsets("g", None)
    );
    assert_eq!(restarted.state("g"), GroupState::Empty);
    assert_eq!(restarted.state("s"), GroupState::Dead);
    assert_eq!(restarted.describe("g", 5).protocol_type, "consumer");
    // A member rejoining after the restart starts a newer generation.
    let id = new_member(&mut restarted, 0, "g", 1);
    let j = join_now(&mut restarted, 0, 2, join_req("g", &id, 5));
    assert_eq!(j.generation_id, generation + 1);
}

#[test]
fn offsets_of_simple_groups_expire_after_retention() {
    let retention = 60_000;
    let mut c = GroupCoordinator::new(
        GroupConfig {
            offsets_retention_ms: retention,
            offsets_retention_check_interval_ms: 1_000,
            ..cfg()
        },
        1,
    );
    c.tick(0); // the coordinator starts: retention checks run every second from now
    c.commit(0, commit_req("s", -1, "", "t", 0, 5), &exists);
    c.commit(30_000, commit_req("s", -1, "", "t", 1, 5), &exists);
    let _ = c.take_records();
    c.tick(60_000);
    assert_eq!(
        c.fetch_offsets("s", None).topics[0].1.len(),
        1,
        "the older offset expired"
    );
    c.tick(90_000);
    assert_eq!(
        c.state("s"),
        GroupState::Dead,
        "no offsets left: the group is gone"
    );
    let records = c.take_records();
    assert_eq!(records.len(), 3);
}

#[test]
fn offsets_of_consumer_groups_expire_only_after_the_group_is_empty_for_retention() {
    let retention = 60_000;
    let mut c = GroupCoordinator::new(
        GroupConfig {
            offsets_retention_ms: retention,
            offsets_retention_check_interval_ms: 1_000,
            ..cfg()
        },
        1,
    );
    let (id, generation) = stable_single(&mut c, "g");
    c.commit(0, commit_req("g", generation, &id, "t", 0, 5), &exists);
    for t in (5_000..100_000).step_by(5_000) {
        hb(&mut c, t, "g", &id, generation);
        c.tick(t);
    }
    assert_eq!(
        c.fetch_offsets("g", None).topics.len(),
        1,
        "kept while the group is active"
    );
    c.leave(
        100_000,
        "g",
        &[LeavingMember {
            member_id: id,
            group_instance_id: None,
        }],
    );
    c.tick(159_999);
    assert_eq!(c.fetch_offsets("g", None).topics.len(), 1);
    // Retention checks run every second: the one after 160 s expires them.
    c.tick(161_000);
    assert!(c.fetch_offsets("g", None).topics.is_empty());
    assert_eq!(c.state("g"), GroupState::Dead);
}

#[test]
fn oversized_protocol_metadata_and_assignments_are_refused() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            member_metadata_bytes_max: 4,
            member_assignment_bytes_max: 4,
            ..cfg()
        },
        1,
    );
    let mut req = join_req("g", "", 3);
    req.protocols = vec![("range".into(), Bytes::from_static(b"12345"))];
    assert_eq!(join_now(&mut c, 0, 1, req).error, codes::INVALID_REQUEST);
    let mut req = join_req("g", "", 3);
    req.protocols = vec![("range".into(), Bytes::from_static(b"1234"))];
    let j = join_now(&mut c, 0, 2, req);
    c.sync(
        0,
        3,
        sync_req(
            "g",
            &j.member_id,
            j.generation_id,
            vec![(j.member_id.clone(), Bytes::from_static(b"12345"))],
        ),
    );
    assert_eq!(sync_replies(&mut c)[0].1.error, codes::INVALID_REQUEST);
}

impl SyncResponse {
    fn error_for_test(error: i16) -> Self {
        Self {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[test]
fn names_too_long_for_the_offsets_log_are_refused() {
    let mut c = coordinator();
    let long = "g".repeat(NAME_BYTES_MAX + 1);
    assert_eq!(
        join_now(&mut c, 0, 1, join_req(&long, "", 5)).error,
        codes::INVALID_GROUP_ID
    );
    assert_eq!(
        commit_error(&c.commit(0, commit_req(&long, -1, "", "t", 0, 1), &exists)),
        codes::INVALID_GROUP_ID
    );
    let mut req = join_req("g", "", 5);
    req.client_id = "é".repeat(2_000);
    let id = join_now(&mut c, 0, 2, req).member_id;
    assert!(
        id.len() < 1_100,
        "the client id part is cut at a char boundary"
    );
    assert_eq!(c.group_count(), 1);
}
