//! The load generator's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("server error: {0}")]
    Server(String),
}

impl LoadError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
        let what = what.into();
        move |source| LoadError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, LoadError>;

/// A small, fast, seedable PRNG (xorshift64*) for choosing ops and keys: the load generator
/// must not spend its core on randomness.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}
