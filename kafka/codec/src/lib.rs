//! kiln-kafka-codec
