//! Fuzz segment recovery's scanner: any bytes yield a valid prefix, never a panic, and the prefix
//! re-scans to the same result.
#![no_main]

use kiln_engine::log::scan_segment_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = scan_segment_bytes(0, data);
    assert!(out.valid_len as usize <= data.len());
    let again = scan_segment_bytes(0, &data[..out.valid_len as usize]);
    assert_eq!(again.valid_len, out.valid_len);
    assert!(again.stop_reason.is_none());
});
