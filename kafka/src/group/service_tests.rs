//! The service end to end on the real runtime and disk: wire bytes in, wire bytes out, offsets
//! surviving a reopen, deferred JoinGroup responses, and the timer task expiring sessions.

// Tests on the real runtime and real time: the clock seam is for the servers' code.
#![allow(clippy::disallowed_methods)]

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kiln_engine::rt;
use kiln_kafka_codec::Reader;
use kiln_kafka_codec::generated::{
    describe_groups_request, describe_groups_response, find_coordinator_request,
    find_coordinator_response, heartbeat_request, heartbeat_response, join_group_request,
    join_group_response, leave_group_request, leave_group_response, list_groups_request,
    list_groups_response, offset_commit_request, offset_commit_response, offset_fetch_request,
    offset_fetch_response, sync_group_request, sync_group_response,
};

use super::{GroupConfig, GroupError, GroupService, codes};

/// Partitions of `__consumer_offsets` in these tests; group "g" lives in partition 3.
const PARTITIONS: i32 = 4;

fn g_log_dir(dir: &std::path::Path) -> std::path::PathBuf {
    crate::catalog::offsets_partition_dir(dir, super::offsets_partition_for("g", PARTITIONS))
}

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 100,
        node_id: 3,
        host: "broker.example".into(),
        port: 19092,
        offsets_topic_partitions: PARTITIONS,
        ..GroupConfig::default()
    }
}

async fn open(dir: &std::path::Path) -> GroupService {
    let exists: super::service::PartitionExists =
        Rc::new(|topic: &str, p: i32| topic == "t" && (0..3).contains(&p));
    GroupService::open(dir, cfg(), exists).await.expect("open")
}

async fn call(svc: &GroupService, key: i16, v: i16, body: Vec<u8>) -> Reader {
    let out = svc
        .handle_with_client(key, v, Bytes::from(body), "cli", "/127.0.0.1")
        .await
        .expect("handled");
    Reader::new(Bytes::from(out))
}

fn enc<F: FnOnce(&mut Vec<u8>) -> Result<(), kiln_kafka_codec::EncodeError>>(f: F) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out).expect("encodes");
    out
}

fn join_body(member_id: &str, v: i16, session_ms: i32) -> Vec<u8> {
    let req = join_group_request::JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 5_000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: vec![join_group_request::JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]),
        }],
        ..Default::default()
    };
    enc(|w| req.encode(w, v))
}

async fn join(
    svc: &GroupService,
    member_id: &str,
    v: i16,
    session_ms: i32,
) -> join_group_response::JoinGroupResponse {
    let mut r = call(svc, 11, v, join_body(member_id, v, session_ms)).await;
    join_group_response::JoinGroupResponse::decode(&mut r, v).expect("decodes")
}

async fn sync(
    svc: &GroupService,
    member_id: &str,
    generation: i32,
    assign: bool,
) -> sync_group_response::SyncGroupResponse {
    let req = sync_group_request::SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member_id.into(),
        assignments: if assign {
            vec![sync_group_request::SyncGroupRequestAssignment {
                member_id: member_id.into(),
                assignment: Bytes::from_static(b"as"),
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let mut r = call(svc, 14, 5, enc(|w| req.encode(w, 5))).await;
    sync_group_response::SyncGroupResponse::decode(&mut r, 5).expect("decodes")
}

async fn commit(
    svc: &GroupService,
    v: i16,
    generation: i32,
    member: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    commit_for(svc, "g", v, generation, member, partition, offset).await
}

async fn commit_for(
    svc: &GroupService,
    group: &str,
    v: i16,
    generation: i32,
    member: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let req = offset_commit_request::OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        topics: vec![offset_commit_request::OffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                partition_index: partition,
                committed_offset: offset,
                committed_metadata: Some("m".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut r = call(svc, 8, v, enc(|w| req.encode(w, v))).await;
    let resp = offset_commit_response::OffsetCommitResponse::decode(&mut r, v).expect("decodes");
    resp.topics[0].partitions[0].error_code
}

async fn fetch_all_v7(svc: &GroupService) -> offset_fetch_response::OffsetFetchResponse {
    fetch_all_v7_for(svc, "g").await
}

async fn fetch_all_v7_for(
    svc: &GroupService,
    group: &str,
) -> offset_fetch_response::OffsetFetchResponse {
    let req = offset_fetch_request::OffsetFetchRequest {
        group_id: group.into(),
        topics: None,
        ..Default::default()
    };
    let mut r = call(svc, 9, 7, enc(|w| req.encode(w, 7))).await;
    offset_fetch_response::OffsetFetchResponse::decode(&mut r, 7).expect("decodes")
}

/// FindCoordinator v2 for `group`.
async fn find_coordinator_v2(
    svc: &GroupService,
    group: &str,
) -> find_coordinator_response::FindCoordinatorResponse {
    let req = find_coordinator_request::FindCoordinatorRequest {
        key: group.into(),
        ..Default::default()
    };
    let mut r = call(svc, 10, 2, enc(|w| req.encode(w, 2))).await;
    find_coordinator_response::FindCoordinatorResponse::decode(&mut r, 2).expect("decodes")
}

async fn describe(svc: &GroupService, v: i16) -> describe_groups_response::DescribedGroup {
    let req = describe_groups_request::DescribeGroupsRequest {
        groups: vec!["g".into()],
        ..Default::default()
    };
    let mut r = call(svc, 15, v, enc(|w| req.encode(w, v))).await;
    let mut resp =
        describe_groups_response::DescribeGroupsResponse::decode(&mut r, v).expect("decodes");
    resp.groups.remove(0)
}

#[test]
fn member_lifecycle_and_offsets_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let svc = open(dir.path()).await;
        let first = join(&svc, "", 5, 10_000).await;
        assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
        assert!(first.member_id.starts_with("cli-"));
        let j = join(&svc, &first.member_id, 5, 10_000).await;
        assert_eq!((j.error_code, j.generation_id), (codes::NONE, 1));
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        assert_eq!(j.members.len(), 1);
        let s = sync(&svc, &j.member_id, 1, true).await;
        assert_eq!(
            (s.error_code, s.assignment.as_ref()),
            (codes::NONE, b"as".as_ref())
        );
        let hb = heartbeat_request::HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: j.member_id.clone(),
            ..Default::default()
        };
        let mut r = call(&svc, 12, 4, enc(|w| hb.encode(w, 4))).await;
        assert_eq!(
            heartbeat_response::HeartbeatResponse::decode(&mut r, 4)
                .expect("decodes")
                .error_code,
            codes::NONE
        );
        assert_eq!(commit(&svc, 9, 1, &j.member_id, 0, 42).await, codes::NONE);
        assert_eq!(
            commit(&svc, 8, 1, &j.member_id, 9, 1).await,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            commit(&svc, 8, 2, &j.member_id, 1, 1).await,
            codes::ILLEGAL_GENERATION
        );
        let d = describe(&svc, 5).await;
        assert_eq!((d.group_state.as_str(), d.members.len()), ("Stable", 1));
        assert_eq!(d.members[0].client_host, "/127.0.0.1");
        let leave = leave_group_request::LeaveGroupRequest {
            group_id: "g".into(),
            member_id: j.member_id.clone(),
            ..Default::default()
        };
        let mut r = call(&svc, 13, 1, enc(|w| leave.encode(w, 1))).await;
        assert_eq!(
            leave_group_response::LeaveGroupResponse::decode(&mut r, 1)
                .expect("decodes")
                .error_code,
            codes::NONE
        );
        assert_eq!(describe(&svc, 5).await.group_state, "Empty");
        drop(svc);

        let svc = open(dir.path()).await;
        let fetched = fetch_all_v7(&svc).await;
        assert_eq!(fetched.topics.len(), 1);
        let p = &fetched.topics[0].partitions[0];
        assert_eq!(
            (p.partition_index, p.committed_offset, p.metadata.as_deref()),
            (0, 42, Some("m"))
        );
        let d = describe(&svc, 5).await;
        assert_eq!(
            (d.group_state.as_str(), d.protocol_type.as_str()),
            ("Empty", "consumer")
        );
        // The generation continues after the restart.
        let first = join(&svc, "", 5, 10_000).await;
        let j = join(&svc, &first.member_id, 5, 10_000).await;
        assert_eq!(j.generation_id, 3);
    })
    .expect("runtime");
}

#[test]
fn join_waits_for_the_rebalance_and_sessions_expire_on_the_timer() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let svc = Rc::new(open(dir.path()).await);
        let a = join(&svc, "", 3, 10_000).await;
        assert_eq!((a.error_code, a.generation_id), (codes::NONE, 1));
        sync(&svc, &a.member_id, 1, true).await;
        // b's join waits until a rejoins.
        let svc2 = svc.clone();
        let b = rt::spawn(async move { join(&svc2, "", 3, 300).await });
        for _ in 0..100 {
            if describe(&svc, 5).await.group_state == "PreparingRebalance" {
                break;
            }
            rt::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(describe(&svc, 5).await.group_state, "PreparingRebalance");
        let a2 = join(&svc, &a.member_id, 3, 10_000).await;
        let b = b.await.expect("task");
        assert_eq!((a2.generation_id, b.generation_id), (2, 2));
        assert_eq!(a2.members.len(), 2);
        assert_eq!(b.leader, a.member_id);
        let svc3 = svc.clone();
        let b_id = b.member_id.clone();
        let follower = rt::spawn(async move { sync(&svc3, &b_id, 2, false).await });
        rt::sleep(Duration::from_millis(20)).await;
        sync(&svc, &a.member_id, 2, true).await;
        assert_eq!(follower.await.expect("task").error_code, codes::NONE);
        // b (300 ms session) stops heartbeating; a keeps going.
        for _ in 0..8 {
            rt::sleep(Duration::from_millis(100)).await;
            let hb = heartbeat_request::HeartbeatRequest {
                group_id: "g".into(),
                generation_id: 2,
                member_id: a.member_id.clone(),
                ..Default::default()
            };
            call(&svc, 12, 4, enc(|w| hb.encode(w, 4))).await;
        }
        let d = describe(&svc, 5).await;
        assert_eq!(d.group_state, "PreparingRebalance", "b expired");
        assert_eq!(d.members.len(), 1);
    })
    .expect("runtime");
}

#[test]
fn find_coordinator_list_groups_and_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let svc = open(dir.path()).await;
        let resp = find_coordinator_v2(&svc, "g").await;
        assert_eq!(
            (resp.error_code, resp.node_id, resp.host.as_str(), resp.port),
            (codes::NONE, 3, "broker.example", 19092)
        );
        let req = find_coordinator_request::FindCoordinatorRequest {
            coordinator_keys: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let mut r = call(&svc, 10, 4, enc(|w| req.encode(w, 4))).await;
        let resp =
            find_coordinator_response::FindCoordinatorResponse::decode(&mut r, 4).expect("decodes");
        assert_eq!(resp.coordinators.len(), 2);
        assert_eq!(resp.coordinators[1].key, "b");

        assert_eq!(commit(&svc, 2, -1, "", 0, 5).await, codes::NONE);
        let req = list_groups_request::ListGroupsRequest {
            states_filter: vec!["Empty".into()],
            ..Default::default()
        };
        let mut r = call(&svc, 16, 4, enc(|w| req.encode(w, 4))).await;
        let resp = list_groups_response::ListGroupsResponse::decode(&mut r, 4).expect("decodes");
        assert_eq!(resp.groups.len(), 1);
        assert_eq!(
            (
                resp.groups[0].group_id.as_str(),
                resp.groups[0].group_state.as_str()
            ),
            ("g", "Empty")
        );

        let bomb = svc
            .handle(15, 0, Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]))
            .await;
        assert!(matches!(bomb, Err(GroupError::Decode(_))));
        let unknown = svc.handle(68, 0, Bytes::new()).await;
        assert!(matches!(
            unknown,
            Err(GroupError::UnsupportedApi { api_key: 68, .. })
        ));
        let too_new = svc.handle(8, 10, Bytes::new()).await;
        assert!(matches!(too_new, Err(GroupError::UnsupportedApi { .. })));
        let dead = describe(&svc, 6).await;
        assert_eq!(dead.error_code, codes::NONE, "g exists as a simple group");
    })
    .expect("runtime");
}

#[test]
fn reopening_compacts_a_log_of_superseded_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let small = || GroupConfig {
            offsets_compact_records_min: 10,
            ..cfg()
        };
        let exists: super::service::PartitionExists = Rc::new(|_: &str, _: i32| true);
        let svc = GroupService::open(dir.path(), small(), exists.clone())
            .await
            .expect("open");
        for offset in 0..30 {
            assert_eq!(commit(&svc, 8, -1, "", 0, offset).await, codes::NONE);
        }
        drop(svc);
        settle().await;
        let svc = GroupService::open(dir.path(), small(), exists.clone())
            .await
            .expect("reopen");
        let fetched = fetch_all_v7(&svc).await;
        assert_eq!(fetched.topics[0].partitions[0].committed_offset, 29);
        assert_eq!(commit(&svc, 8, -1, "", 1, 7).await, codes::NONE);
        drop(svc);
        settle().await;
        let svc = GroupService::open(dir.path(), small(), exists)
            .await
            .expect("reopen");
        let fetched = fetch_all_v7(&svc).await;
        let offsets: Vec<i64> = fetched.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(offsets, vec![29, 7]);
        drop(svc);
        settle().await;
        let log = kiln_engine::log::SegmentedLog::open(
            g_log_dir(dir.path()),
            kiln_engine::log::LogConfig::default(),
        )
        .await
        .expect("log opens");
        // Compaction ran at open, and perhaps on the timer too: superseded commits are gone.
        assert!(
            log.log_start_offset() >= 20,
            "log start {}",
            log.log_start_offset()
        );
    })
    .expect("runtime");
}

#[test]
fn the_log_is_compacted_while_serving_without_losing_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let small = || GroupConfig {
            offsets_compact_records_min: 20,
            ..cfg()
        };
        let exists: super::service::PartitionExists = Rc::new(|_: &str, _: i32| true);
        let svc = Rc::new(
            GroupService::open(dir.path(), small(), exists.clone())
                .await
                .expect("open"),
        );
        // Commits keep arriving while the timer task compacts.
        for offset in 0..200 {
            assert_eq!(
                commit(&svc, 8, -1, "", (offset % 3) as i32, offset).await,
                codes::NONE
            );
            if offset % 50 == 0 {
                rt::sleep(Duration::from_millis(150)).await;
            }
        }
        rt::sleep(Duration::from_millis(300)).await;
        let before: Vec<i64> = fetch_all_v7(&svc).await.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(before, vec![198, 199, 197]);
        drop(svc);
        settle().await;
        let log = kiln_engine::log::SegmentedLog::open(
            g_log_dir(dir.path()),
            kiln_engine::log::LogConfig::default(),
        )
        .await
        .expect("log opens");
        assert!(log.log_start_offset() > 0, "compacted while running");
        drop(log);
        let svc = GroupService::open(dir.path(), small(), exists)
            .await
            .expect("reopen");
        let after: Vec<i64> = fetch_all_v7(&svc).await.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(after, before);
    })
    .expect("runtime");
}

#[test]
fn groups_are_spread_over_the_offsets_partitions_and_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let exists: super::service::PartitionExists = Rc::new(|_: &str, _: i32| true);
        let svc = GroupService::open(dir.path(), cfg(), exists.clone())
            .await
            .expect("open");
        assert_eq!(svc.offsets_partitions(), 0, "created on the first request");
        let groups: Vec<String> = (0..40).map(|i| format!("group-{i}")).collect();
        for (i, g) in groups.iter().enumerate() {
            assert_eq!(
                commit_for(&svc, g, 8, -1, "", 0, i as i64 * 10).await,
                codes::NONE
            );
        }
        assert_eq!(svc.offsets_partitions(), PARTITIONS);
        drop(svc);
        settle().await;
        // Each partition's log holds exactly the records of the groups that hash to it.
        for p in 0..PARTITIONS {
            let expected = groups
                .iter()
                .filter(|g| super::offsets_partition_for(g, PARTITIONS) == p)
                .count() as u64;
            assert!(expected > 0, "40 groups cover {PARTITIONS} partitions");
            let log = kiln_engine::log::SegmentedLog::open(
                crate::catalog::offsets_partition_dir(dir.path(), p),
                kiln_engine::log::LogConfig::default(),
            )
            .await
            .expect("log opens");
            assert_eq!(log.log_end_offset(), expected, "partition {p}");
        }
        // Reopened with another configured count, the topic keeps the count it was created with.
        let other = GroupConfig {
            offsets_topic_partitions: 50,
            ..cfg()
        };
        let svc = GroupService::open(dir.path(), other, exists)
            .await
            .expect("reopen");
        assert_eq!(svc.offsets_partitions(), PARTITIONS);
        for (i, g) in groups.iter().enumerate() {
            let fetched = fetch_all_v7_for(&svc, g).await;
            assert_eq!(
                fetched.topics[0].partitions[0].committed_offset,
                i as i64 * 10,
                "{g}"
            );
        }
        assert!(!dir.path().join("__consumer_offsets-4").exists());
    })
    .expect("runtime");
}

#[test]
fn a_one_partition_offsets_log_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let one = || GroupConfig {
            offsets_topic_partitions: 1,
            ..cfg()
        };
        let exists: super::service::PartitionExists = Rc::new(|_: &str, _: i32| true);
        let svc = GroupService::open(dir.path(), one(), exists.clone())
            .await
            .expect("open");
        assert_eq!(commit_for(&svc, "a", 8, -1, "", 0, 11).await, codes::NONE);
        assert_eq!(commit_for(&svc, "b", 8, -1, "", 1, 12).await, codes::NONE);
        drop(svc);
        settle().await;
        // The broker now defaults to 50 partitions; the data directory has one.
        let svc = GroupService::open(dir.path(), cfg(), exists)
            .await
            .expect("reopen");
        assert_eq!(svc.offsets_partitions(), 1);
        let a = fetch_all_v7_for(&svc, "a").await;
        assert_eq!(a.topics[0].partitions[0].committed_offset, 11);
        let b = fetch_all_v7_for(&svc, "b").await;
        assert_eq!(b.topics[0].partitions[0].committed_offset, 12);
        assert_eq!(commit_for(&svc, "c", 8, -1, "", 0, 13).await, codes::NONE);
        assert!(!dir.path().join("__consumer_offsets-1").exists());
    })
    .expect("runtime");
}

#[test]
fn concurrent_first_requests_create_the_topic_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt::block_on(async {
        let svc = Rc::new(open(dir.path()).await);
        let settings = super::service::OffsetsTopicSettings {
            partitions: 6,
            segment_bytes: 1 << 20,
        };
        let a = rt::spawn({
            let svc = svc.clone();
            async move { svc.ensure_offsets_topic(settings).await.expect("created") }
        });
        let b = rt::spawn({
            let svc = svc.clone();
            async move { svc.ensure_offsets_topic(settings).await.expect("created") }
        });
        let (a, b) = (a.await.expect("joined"), b.await.expect("joined"));
        let mut created = [a, b];
        created.sort_by_key(|(_, c)| *c);
        assert_eq!(created, [(6, false), (6, true)]);
        assert_eq!(svc.offsets_partitions(), 6);
        assert!(dir.path().join("__consumer_offsets-5").is_dir());
    })
    .expect("runtime");
}

/// Lets a compaction that the timer task started finish before the directory is opened again
/// (a dropped service's timer task holds the log until its current step ends).
async fn settle() {
    rt::sleep(Duration::from_millis(300)).await;
}

/// An offsets log that cannot be created (here: a file where its directory must go) fails every
/// group request with Kafka's code for it (NOT_COORDINATOR; COORDINATOR_NOT_AVAILABLE for
/// FindCoordinator), not with an error that closes the client's connection.
#[test]
fn a_failed_offsets_log_is_answered_with_kafka_error_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(g_log_dir(dir.path()), b"not a directory").expect("blocker");
    rt::block_on(async {
        let svc = open(dir.path()).await;
        let resp = find_coordinator_v2(&svc, "g").await;
        assert_eq!(
            (resp.error_code, resp.node_id),
            (codes::COORDINATOR_NOT_AVAILABLE, -1)
        );

        assert_eq!(commit(&svc, 2, -1, "", 0, 5).await, codes::NOT_COORDINATOR);

        let req = offset_fetch_request::OffsetFetchRequest {
            group_id: "g".into(),
            topics: Some(vec![offset_fetch_request::OffsetFetchRequestTopic {
                name: "t".into(),
                partition_indexes: vec![0, 1],
            }]),
            ..Default::default()
        };
        let mut r = call(&svc, 9, 5, enc(|w| req.encode(w, 5))).await;
        let resp = offset_fetch_response::OffsetFetchResponse::decode(&mut r, 5).expect("decodes");
        assert_eq!(resp.error_code, codes::NOT_COORDINATOR);
        let parts: Vec<(i32, i64, i16)> = resp.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            .collect();
        assert_eq!(
            parts,
            [
                (0, -1, codes::NOT_COORDINATOR),
                (1, -1, codes::NOT_COORDINATOR)
            ]
        );

        let mut r = call(&svc, 11, 5, join_body("", 5, 10_000)).await;
        let resp = join_group_response::JoinGroupResponse::decode(&mut r, 5).expect("decodes");
        assert_eq!(
            (resp.error_code, resp.generation_id),
            (codes::NOT_COORDINATOR, -1)
        );

        let req = describe_groups_request::DescribeGroupsRequest {
            groups: vec!["g".into(), "h".into()],
            ..Default::default()
        };
        let mut r = call(&svc, 15, 5, enc(|w| req.encode(w, 5))).await;
        let resp =
            describe_groups_response::DescribeGroupsResponse::decode(&mut r, 5).expect("decodes");
        let codes_: Vec<i16> = resp.groups.iter().map(|g| g.error_code).collect();
        assert_eq!(codes_, [codes::NOT_COORDINATOR, codes::NOT_COORDINATOR]);

        // A request that does not decode still fails (the connection closes, as Kafka's does).
        let bomb = svc
            .handle(15, 0, Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]))
            .await;
        assert!(matches!(bomb, Err(GroupError::Decode(_))));

        // Once the blocker is gone the same service creates the topic and serves.
        std::fs::remove_file(g_log_dir(dir.path())).expect("remove blocker");
        assert_eq!(commit(&svc, 2, -1, "", 0, 5).await, codes::NONE);
    })
    .expect("runtime");
}
