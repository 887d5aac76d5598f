//! kiln-bench
