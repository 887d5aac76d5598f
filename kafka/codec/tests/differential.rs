//! Differential check against an independent implementation, the `kafka-protocol` crate
//! (also generated from Kafka 4.1's specs): every request and response Kiln encodes, in
//! every version both sides support, decodes there without leftover bytes and re-encodes
//! to exactly the same bytes.
//!
//! Only Kiln's own canonical encodings are given to `kafka-protocol`: its decoder reserves
//! memory from wire counts without bounds, which is why Kiln has its own codec.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey as TheirKey, RequestKind, ResponseKind};
use kiln_kafka_codec::{ApiKey, RequestBody, ResponseBody, Sampler};

const SEEDS: u64 = 12;

#[test]
fn kafka_protocol_reads_and_writes_the_same_bytes() {
    let mut compared = 0;
    let mut skipped = std::collections::BTreeSet::new();
    for &key in ApiKey::ALL {
        let Ok(theirs) = TheirKey::try_from(key.key()) else {
            continue;
        };
        let (lo, hi) = (theirs.valid_versions().min, theirs.valid_versions().max);
        for v in key.min_version().max(lo)..=key.max_version().min(hi) {
            for seed in 0..SEEDS {
                let mut s = Sampler::new(seed * 31 + key.key() as u64);

                let ours = RequestBody::sample(key, v, &mut s);
                let mut a = Vec::new();
                ours.encode(&mut a, v).unwrap();
                let mut buf = Bytes::from(a.clone());
                let decoded = match RequestKind::decode(theirs, &mut buf, v) {
                    Ok(d) => d,
                    // kafka-protocol's per-message ranges can be narrower than its API table.
                    Err(e) if format!("{e:#}").contains("version not supported") => {
                        skipped.insert(format!("{key:?} v{v}"));
                        continue;
                    }
                    Err(e) => panic!("{key:?} v{v} request: kafka-protocol: {e:#}"),
                };
                assert!(
                    buf.is_empty(),
                    "{key:?} v{v} request: {} bytes left",
                    buf.len()
                );
                let mut b = BytesMut::new();
                decoded.encode(&mut b, v).unwrap();
                assert_eq!(
                    &b[..],
                    &a[..],
                    "{key:?} v{v} seed {seed} request bytes differ"
                );

                let ours = ResponseBody::sample(key, v, &mut s);
                let mut a = Vec::new();
                ours.encode(&mut a, v).unwrap();
                let mut buf = Bytes::from(a.clone());
                let decoded = match ResponseKind::decode(theirs, &mut buf, v) {
                    Ok(d) => d,
                    Err(e) if format!("{e:#}").contains("version not supported") => {
                        skipped.insert(format!("{key:?} v{v}"));
                        continue;
                    }
                    Err(e) => panic!("{key:?} v{v} response: kafka-protocol: {e:#}"),
                };
                assert!(
                    buf.is_empty(),
                    "{key:?} v{v} response: {} bytes left",
                    buf.len()
                );
                let mut b = BytesMut::new();
                decoded.encode(&mut b, v).unwrap();
                assert_eq!(
                    &b[..],
                    &a[..],
                    "{key:?} v{v} seed {seed} response bytes differ"
                );
                compared += 2;
            }
        }
    }
    println!("compared {compared} encodings; versions kafka-protocol lacks: {skipped:?}");
    assert!(compared > 1000, "{compared}");
}
