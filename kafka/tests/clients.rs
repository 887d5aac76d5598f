//! The broker with a real client: librdkafka through the `rdkafka` crate (produce, consume,
//! groups, admin), including a restart on the same data directory.

// Real processes and sockets on real time: the clock seam is for the servers' code.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> ThreadedProducer<DefaultProducerContext> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set_log_level(RDKafkaLogLevel::Warning)
        .create()
        .expect("consumer")
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    kiln_engine::rt::block_on(f).expect("runtime")
}

/// Produces `n` keyed records and waits until every one is acknowledged.
fn produce(bootstrap: &str, topic: &str, n: usize, extra: &[(&str, &str)]) {
    produce_from(bootstrap, topic, 0, n, extra);
}

/// Produces records numbered `start..start + n`.
fn produce_from(bootstrap: &str, topic: &str, start: usize, n: usize, extra: &[(&str, &str)]) {
    let p = producer(bootstrap, extra);
    for i in start..start + n {
        let key = format!("k{}", i % 17);
        let value = format!("value-{i}");
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send failed: {e}"
                    );
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(TIMEOUT).expect("every record acknowledged");
}

/// Consumes until `n` records arrived (or the timeout), returning (key, value, partition, offset).
fn consume(c: &BaseConsumer, n: usize) -> Vec<(String, String, i32, i64)> {
    consume_within(c, n, TIMEOUT)
}

/// Like [`consume`], giving up after `wait`.
fn consume_within(c: &BaseConsumer, n: usize, wait: Duration) -> Vec<(String, String, i32, i64)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while out.len() < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume without error");
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                m.partition(),
                m.offset(),
            ));
        }
    }
    out
}

fn assert_exactly_once_in_order(got: &[(String, String, i32, i64)], n: usize) {
    assert_eq!(got.len(), n, "every record consumed once");
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut values: Vec<usize> = Vec::new();
    for (_, v, p, o) in got {
        per_partition.entry(*p).or_default().push(*o);
        values.push(
            v.trim_start_matches("value-")
                .parse()
                .expect("value number"),
        );
    }
    for offsets in per_partition.values() {
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "offsets contiguous and ordered"
        );
    }
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), n, "no duplicates, nothing lost");
}

#[test]
fn produce_and_consume_with_every_compression_and_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[("num.partitions", "4")]);
    for (i, (codec, acks)) in [
        ("none", "all"),
        ("gzip", "1"),
        ("snappy", "all"),
        ("lz4", "1"),
    ]
    .iter()
    .enumerate()
    {
        let topic = format!("compressed-{i}");
        produce(
            &b.bootstrap(),
            &topic,
            500,
            &[("compression.codec", codec), ("acks", acks)],
        );
        let c = consumer(&b.bootstrap(), &format!("g-{i}"));
        c.subscribe(&[&topic]).expect("subscribe");
        let got = consume(&c, 500);
        assert_exactly_once_in_order(&got, 500);
        // Keyed partitioning: one key always lands on one partition.
        let mut key_partition: BTreeMap<&str, i32> = BTreeMap::new();
        for (k, _, p, _) in &got {
            assert_eq!(
                *key_partition.entry(k.as_str()).or_insert(*p),
                *p,
                "key {k} on one partition"
            );
        }
    }
}

#[test]
fn idempotent_producer_and_restart_keep_every_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut b = common::start_in(dir.path(), 0, &[("num.partitions", "3")]);
    produce(
        &b.bootstrap(),
        "durable",
        1000,
        &[("enable.idempotence", "true"), ("acks", "all")],
    );
    b.stop();
    // Same data directory: topics, offsets and committed data are recovered.
    let b = common::start_in(dir.path(), 0, &[("num.partitions", "3")]);
    produce_from(
        &b.bootstrap(),
        "durable",
        1000,
        500,
        &[("enable.idempotence", "true"), ("acks", "all")],
    );
    let c = consumer(&b.bootstrap(), "restart");
    c.subscribe(&["durable"]).expect("subscribe");
    let got = consume(&c, 1500);
    assert_exactly_once_in_order(&got, 1500);
}

#[test]
fn group_commits_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut b = common::start_in(dir.path(), 0, &[("num.partitions", "2")]);
    produce(&b.bootstrap(), "grouped", 100, &[]);
    {
        let c = consumer(&b.bootstrap(), "resume");
        c.subscribe(&["grouped"]).expect("subscribe");
        let got = consume(&c, 100);
        assert_eq!(got.len(), 100);
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    b.stop();
    let b = common::start_in(dir.path(), 0, &[("num.partitions", "2")]);
    produce(&b.bootstrap(), "grouped", 10, &[]);
    let c = consumer(&b.bootstrap(), "resume");
    c.subscribe(&["grouped"]).expect("subscribe");
    let got = consume(&c, 10);
    assert_eq!(got.len(), 10, "resumes after the committed offsets");
    let extra = consume_within(&c, 1, Duration::from_secs(3));
    assert!(
        extra.is_empty(),
        "nothing before the committed offsets is delivered again"
    );
}

#[test]
fn admin_create_describe_alter_grow_and_delete_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), 0, &[]);
    let a = admin(&b.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));

    let created = block_on(a.create_topics(
        &[NewTopic::new("admin-t", 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000")],
        &opts,
    ))
    .expect("create request");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    // Replication factor above the single broker is refused.
    let refused = block_on(a.create_topics(
        &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
        &opts,
    ))
    .expect("create request");
    assert!(refused.iter().all(|r| r.is_err()), "{refused:?}");

    let described = block_on(a.describe_configs(&[ResourceSpecifier::Topic("admin-t")], &opts))
        .expect("describe request");
    let resource = described
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    let entry = |name: &str| {
        resource
            .entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} described"))
    };
    assert_eq!(entry("retention.ms").value.as_deref(), Some("3600000"));
    assert!(!entry("retention.ms").is_default);
    assert_eq!(entry("max.message.bytes").value.as_deref(), Some("1048588"));
    assert!(entry("max.message.bytes").is_default);
    assert!(resource.entries.len() >= 20, "every topic config is listed");

    let altered = block_on(
        a.alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("admin-t"))
                .set("max.message.bytes", "2000000")],
            &opts,
        ),
    )
    .expect("alter request");
    assert!(altered.iter().all(|r| r.is_ok()), "{altered:?}");

    let grown =
        block_on(a.create_partitions(&[NewPartitions::new("admin-t", 5)], &opts)).expect("grow");
    assert!(grown.iter().all(|r| r.is_ok()), "{grown:?}");
    let md = a
        .inner()
        .fetch_metadata(Some("admin-t"), TIMEOUT)
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 5);

    let deleted = block_on(a.delete_topics(&["admin-t"], &opts)).expect("delete");
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    let md = a.inner().fetch_metadata(None, TIMEOUT).expect("metadata");
    assert!(md.topics().iter().all(|t| t.name() != "admin-t"));
}

#[test]
fn consumers_spread_over_shards_see_every_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(
        dir.path(),
        0,
        &[("num.partitions", "8"), ("kiln.shards", "2")],
    );
    produce(&b.bootstrap(), "sharded", 800, &[("acks", "all")]);
    let c = consumer(&b.bootstrap(), "sharded-g");
    c.subscribe(&["sharded"]).expect("subscribe");
    let got = consume(&c, 800);
    assert_exactly_once_in_order(&got, 800);
    let partitions: std::collections::BTreeSet<i32> = got.iter().map(|g| g.2).collect();
    assert!(partitions.len() > 1);
}
