//! Decodes arbitrary `(api_key, version, body)` requests and whole request frames.
//!
//! Input layout: byte 0 picks the API key (modulo 80, so known and unknown keys both
//! occur), byte 1 the version (-2..=21), the rest is the body. Besides "never panics",
//! a body that decodes must re-encode, and decoding that encoding must give back the
//! same encoding (the decoder and encoder agree on every value the decoder accepts).

#![no_main]

use bytes::Bytes;
use kiln_kafka_codec::{Reader, RequestBody, ResponseBody, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [k, v, rest @ ..] = data else { return };
    let key = i16::from(*k % 80);
    let version = i16::from(*v % 24) - 2;
    let body = Bytes::copy_from_slice(rest);

    if let Ok(m) = RequestBody::decode(key, version, &mut Reader::new(body.clone())) {
        let mut once = Vec::new();
        m.encode(&mut once, version).expect("a decoded request re-encodes");
        let again = RequestBody::decode(key, version, &mut Reader::new(Bytes::from(once.clone())))
            .expect("a re-encoded request decodes");
        let mut twice = Vec::new();
        again.encode(&mut twice, version).expect("re-encodes again");
        assert_eq!(once, twice, "request encoding is not stable");
    }
    if let Ok(m) = ResponseBody::decode(key, version, &mut Reader::new(body.clone())) {
        let mut once = Vec::new();
        m.encode(&mut once, version).expect("a decoded response re-encodes");
        let again = ResponseBody::decode(key, version, &mut Reader::new(Bytes::from(once.clone())))
            .expect("a re-encoded response decodes");
        let mut twice = Vec::new();
        again.encode(&mut twice, version).expect("re-encodes again");
        assert_eq!(once, twice, "response encoding is not stable");
    }
    let _ = frame::decode_request_frame(Bytes::copy_from_slice(data));
});
