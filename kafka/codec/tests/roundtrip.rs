//! Round trips: for every API, request and response, and every supported version,
//! pseudo-random values (every field the version carries set) encode, decode back to the
//! same value, and re-encode to the same bytes. Plus golden byte checks for a few
//! flexible messages with tagged fields.

use bytes::Bytes;
use kiln_kafka_codec::generated::api_versions_response::{
    ApiVersion, ApiVersionsResponse, SupportedFeatureKey,
};
use kiln_kafka_codec::generated::fetch_response::{
    EpochEndOffset, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kiln_kafka_codec::generated::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, RequestHeader, ResponseHeader,
};
use kiln_kafka_codec::{ApiKey, Reader, RequestBody, ResponseBody, Sampler};

const SEEDS: u64 = 40;

#[test]
fn every_request_round_trips_in_every_version() {
    let mut checked = 0;
    for &key in ApiKey::ALL {
        for v in key.min_version()..=key.max_version() {
            for seed in 0..SEEDS {
                let mut s = Sampler::new(seed * 7919 + key.key() as u64);
                let m = RequestBody::sample(key, v, &mut s);
                let mut buf = Vec::new();
                m.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("{key:?} v{v} seed {seed}: encode: {e}"));
                let mut r = Reader::new(Bytes::from(buf.clone()));
                let back = RequestBody::decode(key.key(), v, &mut r)
                    .unwrap_or_else(|e| panic!("{key:?} v{v} seed {seed}: decode: {e}"));
                assert_eq!(r.remaining(), 0, "{key:?} v{v}: trailing bytes");
                assert_eq!(back, m, "{key:?} v{v} seed {seed}");
                let mut again = Vec::new();
                back.encode(&mut again, v).unwrap();
                assert_eq!(again, buf, "{key:?} v{v} seed {seed}: re-encoding differs");
                checked += 1;
            }
        }
    }
    assert!(checked > 5_000, "{checked}");
}

#[test]
fn every_response_round_trips_in_every_version() {
    for &key in ApiKey::ALL {
        for v in key.min_version()..=key.max_version() {
            for seed in 0..SEEDS {
                let mut s = Sampler::new(seed * 104_729 + key.key() as u64);
                let m = ResponseBody::sample(key, v, &mut s);
                let mut buf = Vec::new();
                m.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("{key:?} v{v} seed {seed}: encode: {e}"));
                let mut r = Reader::new(Bytes::from(buf.clone()));
                let back = ResponseBody::decode(key.key(), v, &mut r)
                    .unwrap_or_else(|e| panic!("{key:?} v{v} seed {seed}: decode: {e}"));
                assert_eq!(r.remaining(), 0, "{key:?} v{v}: trailing bytes");
                assert_eq!(back, m, "{key:?} v{v} seed {seed}");
                let mut again = Vec::new();
                back.encode(&mut again, v).unwrap();
                assert_eq!(again, buf, "{key:?} v{v} seed {seed}: re-encoding differs");
            }
        }
    }
}

#[test]
fn headers_and_consumer_protocol_round_trip() {
    for seed in 0..SEEDS {
        let mut s = Sampler::new(seed);
        for v in 0..=2 {
            let h = RequestHeader::sample(&mut s, v);
            let mut b = Vec::new();
            h.encode(&mut b, v).unwrap();
            assert_eq!(
                RequestHeader::decode(&mut Reader::new(b.into()), v).unwrap(),
                h
            );
        }
        for v in 0..=1 {
            let h = ResponseHeader::sample(&mut s, v);
            let mut b = Vec::new();
            h.encode(&mut b, v).unwrap();
            assert_eq!(
                ResponseHeader::decode(&mut Reader::new(b.into()), v).unwrap(),
                h
            );
        }
        for v in
            ConsumerProtocolSubscription::MIN_VERSION..=ConsumerProtocolSubscription::MAX_VERSION
        {
            let m = ConsumerProtocolSubscription::sample(&mut s, v);
            let mut b = Vec::new();
            m.encode(&mut b, v).unwrap();
            let back = ConsumerProtocolSubscription::decode(&mut Reader::new(b.into()), v).unwrap();
            assert_eq!(back, m);
        }
        for v in ConsumerProtocolAssignment::MIN_VERSION..=ConsumerProtocolAssignment::MAX_VERSION {
            let m = ConsumerProtocolAssignment::sample(&mut s, v);
            let mut b = Vec::new();
            m.encode(&mut b, v).unwrap();
            let back = ConsumerProtocolAssignment::decode(&mut Reader::new(b.into()), v).unwrap();
            assert_eq!(back, m);
        }
    }
}

/// ApiVersionsResponse v3 with the tagged fields SupportedFeatures (tag 0),
/// FinalizedFeaturesEpoch (tag 1) and ZkMigrationReady (tag 3), checked byte by byte.
#[test]
fn api_versions_response_v3_tagged_fields_golden() {
    let m = ApiVersionsResponse {
        error_code: 0,
        api_keys: vec![ApiVersion {
            api_key: 3,
            min_version: 0,
            max_version: 13,
        }],
        throttle_time_ms: 0,
        supported_features: vec![SupportedFeatureKey {
            name: "mv".into(),
            min_version: 1,
            max_version: 7,
        }],
        finalized_features_epoch: 5,
        finalized_features: vec![],
        zk_migration_ready: true,
    };
    let mut b = Vec::new();
    m.encode(&mut b, 3).unwrap();
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        0, 0,                   // error_code
        2, 0, 3, 0, 0, 0, 13, 0, // api_keys: 1 element, tagged fields 0
        0, 0, 0, 0,             // throttle_time_ms
        3,                      // 3 tagged fields
        0, 9,                   // tag 0 (SupportedFeatures), 9 bytes
        2, 3, b'm', b'v', 0, 1, 0, 7, 0,
        1, 8, 0, 0, 0, 0, 0, 0, 0, 5, // tag 1 (FinalizedFeaturesEpoch)
        3, 1, 1,                // tag 3 (ZkMigrationReady) = true
    ];
    assert_eq!(b, want);
    let back = ApiVersionsResponse::decode(&mut Reader::new(Bytes::from(b)), 3).unwrap();
    assert_eq!(back, m);

    // Defaults are not written: an empty v3 response has no tagged fields.
    let mut b = Vec::new();
    ApiVersionsResponse::default().encode(&mut b, 3).unwrap();
    assert_eq!(b, vec![0, 0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(ApiVersionsResponse::default().finalized_features_epoch, -1);
}

/// FetchResponse v12 with a DivergingEpoch tagged struct inside a partition.
#[test]
fn fetch_response_v12_tagged_struct_round_trip() {
    let records = Bytes::from(vec![7u8; 100]);
    let m = FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "t".into(),
            partitions: vec![PartitionData {
                partition_index: 1,
                high_watermark: 10,
                diverging_epoch: EpochEndOffset {
                    epoch: 3,
                    end_offset: 9,
                },
                records: Some(records.clone()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut b = Vec::new();
    m.encode(&mut b, 12).unwrap();
    let frame = Bytes::from(b);
    let back = FetchResponse::decode(&mut Reader::new(frame.clone()), 12).unwrap();
    assert_eq!(back, m);
    let got = back.responses[0].partitions[0].records.as_ref().unwrap();
    assert!(
        frame.as_ptr_range().contains(&got.as_ptr()),
        "records copied"
    );
    // In v11 the tagged struct cannot be carried and is not ignorable.
    assert!(m.encode(&mut Vec::new(), 11).is_err());
}
