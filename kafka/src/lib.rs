//! kiln-kafka
