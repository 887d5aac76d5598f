//! Decode and encode cost of the two messages that carry record bytes.
//!
//! - A ProduceRequest v9 with 16 partitions of one 16 KiB batch each (256 KiB of records).
//! - A FetchResponse v16 with 16 partitions of 16 KiB of records each.
//!
//! Decoding takes the records as slices of the input frame, so its throughput (reported in
//! frame bytes) is far above memory bandwidth: the record bytes are not touched. Encoding
//! into a `ChunkWriter` keeps the records as shared chunks (no copy); encoding into a
//! `Vec<u8>` copies them, for comparison.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_kafka_codec::generated::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kiln_kafka_codec::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kiln_kafka_codec::{ChunkWriter, Reader, RequestBody, ResponseBody, frame};
use std::hint::black_box;

const PARTITIONS: i32 = 16;
const BATCH: usize = 16 * 1024;

fn produce_request() -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench-topic".into(),
            partition_data: (0..PARTITIONS)
                .map(|index| PartitionProduceData {
                    index,
                    records: Some(Bytes::from(vec![index as u8; BATCH])),
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_response() -> FetchResponse {
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "bench-topic".into(),
            partitions: (0..PARTITIONS)
                .map(|i| PartitionData {
                    partition_index: i,
                    high_watermark: 1_000_000,
                    last_stable_offset: 1_000_000,
                    log_start_offset: 0,
                    records: Some(Bytes::from(vec![i as u8; BATCH])),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn bench_produce(c: &mut Criterion) {
    let body = RequestBody::Produce(produce_request());
    let mut out = Vec::new();
    frame::encode_request_frame(1, Some("bench"), 9, &body, &mut out).expect("encode");
    let frame_bytes = Bytes::from(out).slice(4..);

    // The decoded records must point into the frame.
    let decoded = frame::decode_request_frame(frame_bytes.clone()).expect("decode");
    let RequestBody::Produce(p) = &decoded.body else {
        panic!("not a produce request")
    };
    let range = frame_bytes.as_ptr_range();
    for part in &p.topic_data[0].partition_data {
        let rec = part.records.as_ref().expect("records");
        assert!(range.contains(&rec.as_ptr()), "records were copied");
    }

    let mut g = c.benchmark_group("produce_v9_16x16KiB");
    g.throughput(Throughput::Bytes(frame_bytes.len() as u64));
    g.bench_function("decode_frame", |b| {
        b.iter(|| frame::decode_request_frame(black_box(frame_bytes.clone())).expect("decode"))
    });
    g.bench_function("encode_chunks", |b| {
        b.iter(|| {
            let mut w = ChunkWriter::new();
            body.encode(&mut w, 9).expect("encode");
            black_box(w.into_chunks())
        })
    });
    g.bench_function("encode_vec_copying", |b| {
        let mut out = Vec::with_capacity(frame_bytes.len() + 64);
        b.iter(|| {
            out.clear();
            body.encode(&mut out, 9).expect("encode");
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_fetch(c: &mut Criterion) {
    let resp = ResponseBody::Fetch(fetch_response());
    let mut out = Vec::new();
    resp.encode(&mut out, 16).expect("encode");
    let body_bytes = Bytes::from(out);

    let mut g = c.benchmark_group("fetch_response_v16_16x16KiB");
    g.throughput(Throughput::Bytes(body_bytes.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            ResponseBody::decode(1, 16, &mut Reader::new(black_box(body_bytes.clone())))
                .expect("decode")
        })
    });
    g.bench_function("encode_chunks", |b| {
        b.iter(|| {
            let mut w = ChunkWriter::new();
            frame::encode_response(7, 16, &resp, &mut w).expect("encode");
            black_box(w.into_chunks())
        })
    });
    g.bench_function("encode_vec_copying", |b| {
        let mut out = Vec::with_capacity(body_bytes.len() + 64);
        b.iter(|| {
            out.clear();
            resp.encode(&mut out, 16).expect("encode");
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_produce, bench_fetch);
criterion_main!(benches);
