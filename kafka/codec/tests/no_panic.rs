//! Decoding arbitrary, truncated or corrupted bytes never panics, for every API, direction
//! and version.

use bytes::Bytes;
use kiln_kafka_codec::{ApiKey, Reader, RequestBody, ResponseBody, Sampler, frame};
use proptest::prelude::*;

fn decode_both(key: i16, v: i16, body: &[u8]) {
    let _ = RequestBody::decode(key, v, &mut Reader::new(Bytes::copy_from_slice(body)));
    let _ = ResponseBody::decode(key, v, &mut Reader::new(Bytes::copy_from_slice(body)));
}

/// Every prefix of a valid encoding, and single-byte corruptions of it, decode without
/// panicking; the full encoding decodes.
#[test]
fn truncated_and_corrupted_encodings_never_panic() {
    let mut s = Sampler::new(42);
    for &key in ApiKey::ALL {
        for v in key.min_version()..=key.max_version() {
            for seed in 0..4 {
                let mut b = Vec::new();
                RequestBody::sample(key, v, &mut Sampler::new(seed))
                    .encode(&mut b, v)
                    .unwrap();
                let mut c = Vec::new();
                ResponseBody::sample(key, v, &mut Sampler::new(seed))
                    .encode(&mut c, v)
                    .unwrap();
                for buf in [&b, &c] {
                    for n in 0..buf.len() {
                        decode_both(key.key(), v, &buf[..n]);
                    }
                    for _ in 0..32 {
                        let mut m = buf.clone();
                        if m.is_empty() {
                            break;
                        }
                        let i = (s.next_u64() as usize) % m.len();
                        m[i] = match s.next_u64() % 4 {
                            0 => 0xff,
                            1 => 0x7f,
                            2 => 0x80,
                            _ => s.next_u64() as u8,
                        };
                        decode_both(key.key(), v, &m);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bodies_never_panic(key in 0i16..80, v in -1i16..20, body in proptest::collection::vec(any::<u8>(), 0..96)) {
        decode_both(key, v, &body);
    }

    #[test]
    fn arbitrary_request_frames_never_panic(body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = frame::decode_request_frame(Bytes::from(body));
    }
}

/// Exhaustive over every (api, version): short bodies made of the bytes that most often
/// break length handling.
#[test]
fn hostile_short_bodies_for_every_api_version() {
    let atoms: [&[u8]; 6] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xff],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0, 0, 0, 1],
        &[0xff, 0xfe],
    ];
    for &key in ApiKey::ALL {
        for v in key.min_version()..=key.max_version() {
            for a in atoms {
                for b in atoms {
                    let body: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
                    decode_both(key.key(), v, &body);
                }
            }
        }
    }
}
