//! Decompresses arbitrary payloads with every record-batch codec.
//!
//! Input layout: byte 0 picks the codec (modulo 5), the rest is the payload. Besides "never
//! panics", the output never exceeds the limit, and whatever decompresses compresses and
//! decompresses back to the same bytes.

#![no_main]

use kiln_kafka_codec::compression::{Codec, compress, decompress};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let [c, payload @ ..] = data else { return };
    let Some(codec) = Codec::from_id(*c % 5) else {
        return;
    };
    if let Ok(out) = decompress(codec, payload, LIMIT) {
        assert!(out.len() <= LIMIT);
        let again = compress(codec, &out, None).expect("compresses");
        assert_eq!(decompress(codec, &again, LIMIT).expect("round trip"), out);
    }
});
