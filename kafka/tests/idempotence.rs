//! The idempotent producer's retry of one batch on two connections at once (a client that
//! reconnected after a timeout): exactly one append, and both answers carry its offset.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use kiln_engine::batch::{BatchBuilder, Record};
use kiln_kafka_codec::frame::{decode_response_frame, encode_request_frame};
use kiln_kafka_codec::generated::create_topics_request::CreatableTopic;
use kiln_kafka_codec::generated::produce_request::{PartitionProduceData, TopicProduceData};
use kiln_kafka_codec::generated::{CreateTopicsRequest, ProduceRequest};
use kiln_kafka_codec::{RequestBody, ResponseBody};

const TOPIC: &str = "idem";
const PRODUCE_VERSION: i16 = 9;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn round_trip(s: &mut TcpStream, frame: &[u8], api_key: i16, version: i16) -> ResponseBody {
    s.write_all(frame).expect("write");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("response size");
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf).expect("response");
    decode_response_frame(api_key, version, Bytes::from(buf))
        .expect("decodes")
        .1
}

fn produce_frame(sequence: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.producer(4242, 0, sequence);
    for i in 0..3 {
        let value = format!("seq-{sequence}-{i}");
        b.push(Record {
            value: Some(value.as_bytes()),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        })
        .expect("push");
    }
    let body = RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Bytes::from(b.finish().expect("batch"))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut out = Vec::new();
    encode_request_frame(sequence, Some("idem"), PRODUCE_VERSION, &body, &mut out).expect("encode");
    out
}

fn base_offset(body: &ResponseBody) -> (i16, i64) {
    let ResponseBody::Produce(p) = body else {
        panic!("not a produce response: {body:?}");
    };
    let part = &p.responses[0].partition_responses[0];
    (part.error_code, part.base_offset)
}

#[test]
fn the_same_idempotent_batch_on_two_connections_is_appended_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every batch waits for its fsync: the widest window between check and append.
    let broker = common::start_in(dir.path(), 0, &[("log.flush.interval.messages", "1")]);
    let mut admin = connect(broker.port);
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: TOPIC.into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms: 10_000,
        ..Default::default()
    });
    let mut frame = Vec::new();
    encode_request_frame(1, Some("idem"), 5, &create, &mut frame).expect("encode");
    let ResponseBody::CreateTopics(created) = round_trip(&mut admin, &frame, 19, 5) else {
        panic!("not a CreateTopics response");
    };
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");

    let rounds = 40;
    let mut a = connect(broker.port);
    let mut b = connect(broker.port);
    for seq in 0..rounds {
        let frame = Arc::new(produce_frame(seq * 3));
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let (frame, barrier) = (frame.clone(), barrier.clone());
            let mut b2 = b.try_clone().expect("clone");
            std::thread::spawn(move || {
                barrier.wait();
                base_offset(&round_trip(&mut b2, &frame, 0, PRODUCE_VERSION))
            })
        };
        barrier.wait();
        let first = base_offset(&round_trip(&mut a, &frame, 0, PRODUCE_VERSION));
        let second = other.join().expect("thread");
        let expected = i64::from(seq) * 3;
        assert_eq!(first, (0, expected), "round {seq}: first answer");
        assert_eq!(second, (0, expected), "round {seq}: second answer");
    }
    // One more batch lands right after the last round: nothing was appended twice.
    let next = base_offset(&round_trip(
        &mut b,
        &produce_frame(rounds * 3),
        0,
        PRODUCE_VERSION,
    ));
    assert_eq!(next, (0, i64::from(rounds) * 3));
}
