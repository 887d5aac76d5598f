//! The simulator in the test suite: a fixed range of seeds for both servers passes every
//! checker and does real work, a seed replays identically, and each injected defect is caught
//! within 100 seeds; 500 seeds of leader election pass too. (CI also runs `kiln-sim all --seeds 10000`;
//! see sim/RESULTS.md for soaks.)

use kiln_sim::fle::{self, FleBug, FleOptions};
use kiln_sim::kafka::{self, KafkaBug, KafkaOptions};
use kiln_sim::zk::{self, ZkBug, ZkOptions};

#[test]
fn zookeeper_seeds_pass_and_exercise_the_server() {
    let (mut ok, mut stats, mut crashes, mut acked) = (0, 0, 0, 0);
    for seed in 0..300 {
        let r = zk::run(seed, ZkOptions::default()).unwrap_or_else(|f| panic!("{f}"));
        ok += r.writes_ok;
        stats += r.reads_with_stat;
        crashes += r.crashes;
        acked += r.writes_acked;
    }
    // Not a vacuous pass: writes succeed, reads find nodes, crashes happen, replies arrive.
    assert!(ok > 10_000, "{ok} successful writes");
    assert!(stats > 2_000, "{stats} reads with a stat");
    assert!(crashes > 1_000, "{crashes} crashes");
    assert!(acked > 20_000, "{acked} acknowledged writes");
}

#[test]
fn kafka_seeds_pass_and_exercise_the_log() {
    let (mut all, mut crashes, mut fetches) = (0, 0, 0);
    for seed in 0..300 {
        let r = kafka::run(seed, KafkaOptions::default()).unwrap_or_else(|f| panic!("{f}"));
        all += r.records_acked_all;
        crashes += r.crashes;
        fetches += r.fetches;
    }
    assert!(all > 10_000, "{all} acks=-1 records");
    assert!(crashes > 1_000, "{crashes} crashes");
    assert!(fetches > 5_000, "{fetches} fetches");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 77, 4242] {
        assert_eq!(
            zk::run(seed, ZkOptions::default()),
            zk::run(seed, ZkOptions::default())
        );
        assert_eq!(
            kafka::run(seed, KafkaOptions::default()),
            kafka::run(seed, KafkaOptions::default())
        );
    }
}

fn first_zk_failure(bug: ZkBug) -> Option<u64> {
    let opts = ZkOptions {
        bug: Some(bug),
        ..ZkOptions::default()
    };
    (0..100).find(|&s| zk::run(s, opts).is_err())
}

#[test]
fn injected_defects_are_caught_within_100_seeds() {
    for bug in [
        ZkBug::AckBeforeFsync,
        ZkBug::NoReadGate,
        ZkBug::SpeculativeReplyZxid,
    ] {
        assert!(first_zk_failure(bug).is_some(), "{bug:?} not caught");
    }
    let opts = KafkaOptions {
        bug: Some(KafkaBug::AckBeforeFsync),
        ..KafkaOptions::default()
    };
    assert!(
        (0..100).any(|s| kafka::run(s, opts).is_err()),
        "kafka ack-before-fsync not caught"
    );
}

#[test]
fn leader_election_seeds_pass_and_exercise_faults() {
    let (mut leads, mut crashes, mut partitions, mut five) = (0, 0, 0, 0);
    for seed in 0..500 {
        let r = fle::run(seed, FleOptions::default()).unwrap_or_else(|f| panic!("{f}"));
        leads += r.leader_decisions;
        crashes += r.crashes;
        partitions += r.partitions;
        five += u64::from(r.servers == 5);
    }
    assert!(leads > 1_000, "{leads} LEADING decisions");
    assert!(crashes > 1_000, "{crashes} crashes");
    assert!(partitions > 500, "{partitions} partitions");
    assert!(five > 100 && five < 400, "{five} five-server seeds");
}

#[test]
fn leader_election_ignoring_the_epoch_is_caught() {
    let opts = FleOptions {
        bug: Some(FleBug::IgnoreEpoch),
    };
    assert!(
        (0..100).any(|s| fle::run(s, opts).is_err()),
        "fle-ignore-epoch not caught"
    );
    assert_eq!(
        fle::run(7, FleOptions::default()),
        fle::run(7, FleOptions::default())
    );
}
