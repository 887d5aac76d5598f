//! Invariants that the caller has already established, checked where they are relied on.
//!
//! TigerBeetle's rule: an impossible state crashes loudly in tests and fails safely in
//! production. These helpers take a range the caller has checked (a header length validated
//! before, a buffer the code itself filled); a range outside the buffer panics in debug builds
//! (every test) and yields an empty slice or zeros in release builds, where the caller's next
//! check (a CRC, a length) then fails with a typed error instead of the process aborting.

use std::fmt::Debug;
use std::slice::SliceIndex;

/// `buf[range]`, which the caller has checked is in bounds.
#[track_caller]
pub fn bytes<R>(buf: &[u8], range: R) -> &[u8]
where
    R: SliceIndex<[u8], Output = [u8]> + Debug + Clone,
{
    match buf.get(range.clone()) {
        Some(s) => s,
        None => {
            violated(format_args!(
                "range {range:?} outside a buffer of {} bytes",
                buf.len()
            ));
            &[]
        }
    }
}

/// `buf[range]` for writing, which the caller has checked is in bounds.
#[track_caller]
pub fn bytes_mut<R>(buf: &mut [u8], range: R) -> &mut [u8]
where
    R: SliceIndex<[u8], Output = [u8]> + Debug + Clone,
{
    let len = buf.len();
    if buf.get(range.clone()).is_none() {
        violated(format_args!(
            "range {range:?} outside a buffer of {len} bytes"
        ));
        return &mut [];
    }
    buf.get_mut(range).unwrap_or(&mut [])
}

/// Reports a broken invariant: a panic in debug builds, nothing in release builds (the caller
/// goes on with a safe default).
#[track_caller]
pub fn violated(what: std::fmt::Arguments<'_>) {
    if cfg!(debug_assertions) {
        panic!("invariant violated: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_bounds_ranges_are_plain_slices() {
        let b = [1u8, 2, 3, 4];
        assert_eq!(bytes(&b, 1..3), &[2, 3]);
        assert_eq!(bytes(&b, 4..), &[] as &[u8]);
        let mut m = [0u8; 4];
        bytes_mut(&mut m, 2..).copy_from_slice(&[9, 9]);
        assert_eq!(m, [0, 0, 9, 9]);
    }

    #[test]
    #[should_panic(expected = "invariant violated")]
    fn an_out_of_bounds_range_panics_in_tests() {
        let b = [1u8, 2];
        let _ = bytes(&b, 1..5);
    }
}
