//! Randomness for the servers (topic ids, ...): the one place that draws it, so that a simulator
//! can make it deterministic. Normally the kernel's `getrandom(2)`; on a thread that called
//! [`seed_sim`], a SplitMix64 sequence from that seed.

use std::cell::Cell;

thread_local! {
    static SIM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes this thread's randomness the deterministic sequence of `seed` (for the simulator).
pub fn seed_sim(seed: u64) {
    SIM.with(|s| s.set(Some(seed)));
}

/// Returns this thread to the kernel's randomness.
pub fn unseed_sim() {
    SIM.with(|s| s.set(None));
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `N` random bytes.
///
/// # Panics
/// If the kernel cannot supply randomness (getrandom fails for a reason other than EINTR), which
/// leaves no safe way to make an id.
#[must_use]
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let seeded = SIM.with(|s| {
        s.get().map(|mut st| {
            for chunk in out.chunks_mut(8) {
                let v = splitmix(&mut st).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            s.set(Some(st));
        })
    });
    if seeded.is_some() {
        return out;
    }
    let mut filled = 0;
    while filled < N {
        let rest = &mut out[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                e.kind() == std::io::ErrorKind::Interrupted,
                "getrandom failed: {e}"
            );
            continue;
        }
        filled += n as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_real_ones_differ() {
        seed_sim(5);
        let a: [u8; 16] = bytes();
        seed_sim(5);
        let b: [u8; 16] = bytes();
        assert_eq!(a, b);
        unseed_sim();
        let c: [u8; 16] = bytes();
        let d: [u8; 16] = bytes();
        assert_ne!(c, d);
    }
}
