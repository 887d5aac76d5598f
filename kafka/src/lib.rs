//! kiln-kafka: a Kafka wire-compatible broker (single node) on Kiln's thread-per-core engine.

pub mod catalog;
pub mod config;
pub mod producer_state;

pub use config::BrokerConfig;
