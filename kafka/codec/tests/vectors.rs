//! Hand-written byte vectors for known requests and responses, and decoder regressions.

use bytes::Bytes;
use kiln_kafka_codec::generated::api_versions_request::ApiVersionsRequest;
use kiln_kafka_codec::generated::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kiln_kafka_codec::generated::metadata_request::MetadataRequest;
use kiln_kafka_codec::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kiln_kafka_codec::{ApiKey, DecodeError, Reader, RequestBody, ResponseBody, frame};

/// ApiVersions v3 as librdkafka sends it: request header v2 (client id with an i16 length,
/// then an empty tagged-field section), then compact strings and tagged fields.
#[test]
fn api_versions_v3_request_from_librdkafka() {
    let mut f = vec![0, 18, 0, 3, 0, 0, 0, 1, 0, 7];
    f.extend_from_slice(b"rdkafka");
    f.push(0); // header tagged fields
    f.push(11);
    f.extend_from_slice(b"librdkafka");
    f.push(7);
    f.extend_from_slice(b"2.12.0");
    f.push(0); // body tagged fields
    let req = frame::decode_request_frame(Bytes::from(f.clone())).unwrap();
    assert_eq!(req.header.request_api_key, 18);
    assert_eq!(req.header.request_api_version, 3);
    assert_eq!(req.header.correlation_id, 1);
    assert_eq!(req.header.client_id.as_deref(), Some("rdkafka"));
    let RequestBody::ApiVersions(body) = &req.body else {
        panic!("wrong body {:?}", req.body)
    };
    assert_eq!(body.client_software_name, "librdkafka");
    assert_eq!(body.client_software_version, "2.12.0");

    // Re-encoding gives the same bytes.
    let mut out = Vec::new();
    frame::encode_request_frame(1, Some("rdkafka"), 3, &req.body, &mut out).unwrap();
    assert_eq!(&out[4..], &f[..]);
    assert_eq!(
        i32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
        f.len()
    );
}

#[test]
fn api_versions_v3_request_with_unknown_tagged_field_is_skipped() {
    // Body: two compact strings, then one tagged field (tag 5, 3 bytes) Kiln does not know.
    let body = [2, b'a', 2, b'1', 1, 5, 3, 9, 9, 9];
    let mut r = Reader::new(Bytes::copy_from_slice(&body));
    let m = ApiVersionsRequest::decode(&mut r, 3).unwrap();
    assert_eq!(m.client_software_name, "a");
    assert_eq!(r.remaining(), 0);
}

#[test]
fn metadata_v1_request_with_null_topics() {
    let f = [0, 3, 0, 1, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let req = frame::decode_request_frame(Bytes::copy_from_slice(&f)).unwrap();
    assert_eq!(req.header.client_id, None);
    assert_eq!(req.header.correlation_id, 42);
    let RequestBody::Metadata(m) = req.body else {
        panic!()
    };
    assert_eq!(m.topics, None);
    assert!(m.allow_auto_topic_creation, "spec default is true");
}

#[test]
fn metadata_v0_null_topics_is_an_error() {
    let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
    let e = MetadataRequest::decode(&mut r, 0).unwrap_err();
    assert!(matches!(e, DecodeError::UnexpectedNull { .. }), "{e}");
}

/// The body that makes an unbounded decoder try to reserve ~155 GB: an array claiming
/// i32::MAX topics in a 4-byte frame. It must be a plain error.
#[test]
fn metadata_v0_huge_topic_count_is_rejected_without_allocating() {
    let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
    let e = MetadataRequest::decode(&mut r, 0).unwrap_err();
    match e {
        DecodeError::InvalidLength {
            field,
            len,
            have,
            offset,
        } => {
            assert_eq!(field, "MetadataRequest.topics");
            assert_eq!(len, i64::from(i32::MAX));
            assert_eq!(have, 0);
            assert_eq!(offset, 0);
        }
        other => panic!("unexpected {other}"),
    }
    // Same through the dispatcher, for every version.
    for v in MetadataRequest::MIN_VERSION..=MetadataRequest::MAX_VERSION {
        let body: &[u8] = if v >= 9 {
            &[0xff, 0xff, 0xff, 0xff, 0x07]
        } else {
            &[0x7f, 0xff, 0xff, 0xff]
        };
        let mut r = Reader::new(Bytes::copy_from_slice(body));
        assert!(RequestBody::decode(3, v, &mut r).is_err(), "v{v}");
    }
}

#[test]
fn negative_lengths_other_than_minus_one_are_errors() {
    // MetadataRequest v1: topics count -2.
    let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
    let e = MetadataRequest::decode(&mut r, 1).unwrap_err();
    assert!(
        matches!(e, DecodeError::InvalidLength { len: -2, .. }),
        "{e}"
    );
}

#[test]
fn overlong_varint_is_an_error() {
    // MetadataRequest v9: compact array length as a 6-byte varint.
    let mut r = Reader::new(Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0]));
    let e = MetadataRequest::decode(&mut r, 9).unwrap_err();
    assert!(
        matches!(e, DecodeError::VarintTooLong { max: 5, .. }),
        "{e}"
    );
}

#[test]
fn truncated_string_reports_need_and_have() {
    // ApiVersions v3: compact string claims 10 bytes, 2 present.
    let mut r = Reader::new(Bytes::from_static(&[11, b'a', b'b']));
    let e = ApiVersionsRequest::decode(&mut r, 3).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::InvalidLength {
                field: "ApiVersionsRequest.client_software_name",
                len: 10,
                have: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unsupported_version_and_unknown_api_are_errors() {
    let mut r = Reader::new(Bytes::new());
    assert!(matches!(
        RequestBody::decode(0, 2, &mut r),
        Err(DecodeError::UnsupportedVersion {
            message: "ProduceRequest",
            version: 2,
            ..
        })
    ));
    assert!(matches!(
        RequestBody::decode(999, 0, &mut r),
        Err(DecodeError::UnknownApiKey { api_key: 999 })
    ));
}

#[test]
fn header_versions() {
    assert_eq!(ApiKey::ApiVersions.request_header_version(3), 2);
    assert_eq!(ApiKey::ApiVersions.request_header_version(2), 1);
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    assert_eq!(ApiKey::ApiVersions.response_header_version(4), 0);
    assert_eq!(ApiKey::Metadata.request_header_version(9), 2);
    assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
    assert_eq!(ApiKey::Metadata.response_header_version(8), 0);
    assert_eq!(ApiKey::Produce.request_header_version(8), 1);
    assert_eq!(ApiKey::Fetch.response_header_version(12), 1);
    assert_eq!(ApiKey::OffsetDelete.request_header_version(0), 1);
    // Unknown future versions of a flexible API keep the flexible header.
    assert_eq!(ApiKey::ApiVersions.request_header_version(99), 2);
    assert_eq!(frame::request_header_version(12345, 0), 1);
}

#[test]
fn api_table_matches_the_specs() {
    let range = |k: ApiKey| (k.min_version(), k.max_version());
    assert_eq!(range(ApiKey::ApiVersions), (0, 4));
    assert_eq!(range(ApiKey::Metadata), (0, 13));
    assert_eq!(range(ApiKey::Produce), (3, 13));
    assert_eq!(range(ApiKey::Fetch), (4, 18));
    assert_eq!(ApiKey::Produce.advertised_min_version(), 0);
    assert_eq!(ApiKey::Fetch.advertised_min_version(), 4);
    assert_eq!(ApiKey::from_i16(18), Some(ApiKey::ApiVersions));
    assert_eq!(ApiKey::ApiVersions.name(), "ApiVersions");
    assert_eq!(ApiKey::Metadata.flexible_min_version(), Some(9));
    assert_eq!(ApiKey::OffsetDelete.flexible_min_version(), None);
    for &k in ApiKey::ALL {
        assert_eq!(ApiKey::from_i16(k.key()), Some(k));
    }
    assert!(ApiKey::ALL.len() >= 50, "{}", ApiKey::ALL.len());
}

#[test]
fn api_versions_response_header_has_no_tagged_fields() {
    let resp = ApiVersionsResponse {
        api_keys: vec![ApiVersion {
            api_key: 18,
            min_version: 0,
            max_version: 4,
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    frame::encode_response_frame(9, 3, &ResponseBody::ApiVersions(resp.clone()), &mut out).unwrap();
    // size, correlation id, then the body starts immediately with error_code 0.
    assert_eq!(&out[4..8], &[0, 0, 0, 9]);
    assert_eq!(&out[8..10], &[0, 0]);
    // api_keys: compact array of 1 element => 2.
    assert_eq!(out[10], 2);
    let (h, body) = frame::decode_response_frame(18, 3, Bytes::copy_from_slice(&out[4..])).unwrap();
    assert_eq!(h.correlation_id, 9);
    assert_eq!(body, ResponseBody::ApiVersions(resp));
}

#[test]
fn produce_records_are_zero_copy_slices_of_the_frame() {
    let batch = Bytes::from(vec![0xabu8; 1000]);
    let req = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "t".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch.clone()),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for v in [3, 8, 9, 12] {
        let mut out = Vec::new();
        frame::encode_request_frame(
            5,
            Some("c"),
            v,
            &RequestBody::Produce(req.clone()),
            &mut out,
        )
        .unwrap();
        let frame_bytes = Bytes::from(out).slice(4..);
        let range = frame_bytes.as_ptr_range();
        let decoded = frame::decode_request_frame(frame_bytes.clone()).unwrap();
        let RequestBody::Produce(p) = decoded.body else {
            panic!()
        };
        let rec = p.topic_data[0].partition_data[0].records.as_ref().unwrap();
        assert_eq!(rec, &batch);
        assert!(range.contains(&rec.as_ptr()), "v{v}: records were copied");
    }
}
