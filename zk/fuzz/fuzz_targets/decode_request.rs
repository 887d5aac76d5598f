//! Feeds arbitrary bytes to the request decoders: a connect handshake, then a request header and
//! body of any opcode. Decoding must return a value or a typed error, never panic or over-allocate.
#![no_main]

use kiln_zk::jute::Reader;
use kiln_zk::proto::{ConnectRequest, Request, RequestHeader};
use libfuzzer_sys::fuzz_target;

const LENGTH_MAX: usize = 0xfffff;

fuzz_target!(|data: &[u8]| {
    let _ = ConnectRequest::decode(&mut Reader::new(data, LENGTH_MAX));
    let mut r = Reader::new(data, LENGTH_MAX);
    if let Ok(header) = RequestHeader::decode(&mut r) {
        let _ = Request::decode(header.op, &mut r);
    }
});
