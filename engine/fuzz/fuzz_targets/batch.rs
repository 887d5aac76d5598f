//! Fuzz the RecordBatch v2 decoder: header parse, CRC, batch iteration, record and header
//! decoding must never panic on any input.
#![no_main]

use kiln_engine::batch::{BatchView, Batches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BatchView::parse(data);
    for b in Batches::new(data, false).flatten() {
        let _ = (b.last_offset(), b.compression(), b.crc_valid());
        if let Ok(records) = b.records() {
            for r in records.flatten() {
                let _ = r.headers().count();
            }
        }
    }
});
