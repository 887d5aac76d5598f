//! # kiln-kafka: a Kafka wire-compatible broker on Kiln's thread-per-core engine
//!
//! One broker (replication comes later) that existing Kafka clients, Kafka's own tools and the
//! seed's `server.properties` work with unchanged. Record batches are stored verbatim in Kafka's
//! on-disk layout (`<log.dirs>/<topic>-<partition>/00000000000000000000.log`), so Kafka's
//! `DumpLogSegments` reads a Kiln segment.
//!
//! What it is not (yet): transactions, KIP-848 consumer groups, SASL, TLS, compaction,
//! replication. None of them is advertised in ApiVersions.
//!
//! ## Using it
//! ```no_run
//! use kiln_engine::shutdown::Shutdown;
//! use kiln_kafka::BrokerConfig;
//!
//! // `kiln kafka --config server.properties`:
//! let config = BrokerConfig::load(std::path::Path::new("server.properties")).expect("config");
//! // `kiln up`: Kafka's defaults, 127.0.0.1:9092, data under ./kiln-data/kafka:
//! let config = BrokerConfig::default_embedded(std::path::Path::new("kiln-data/kafka"));
//! let shutdown = Shutdown::new();
//! shutdown.install_signal_handlers().expect("signals");
//! kiln_kafka::run(config, shutdown).expect("broker"); // blocks until SIGINT/SIGTERM
//! ```
//! [`Broker::start`] is the non-blocking variant (tests use it with port 0 and read
//! [`Broker::advertised`]).
//!
//! ## Codemap
//! - [`config`]: `server.properties` and per-topic configs, Kafka's defaults, thread keys mapped
//!   onto shards. Pure.
//! - [`catalog`]: topics, ids, partition counts, overrides; persisted atomically. Pure model +
//!   a small store.
//! - [`producer_state`]: idempotent-producer deduplication. Pure.
//! - [`recompress`]: produce-time validation of compressed batches and conversion to the
//!   topic's `compression.type` (Kafka's LogValidator). Pure.
//! - [`producer_ids`]: producer-id blocks, unique across restarts.
//! - [`partition`]: a partition's log and explicit state (log start/end, high watermark, epoch).
//! - [`shard`]: shard state, placement, cross-shard calls through the engine's mailboxes.
//! - [`admin`]: topic changes with their effects in order (persist, then act, then reply).
//! - [`conn`]: one connection: frame limits, dispatch, responses in request order.
//! - [`handlers`]: one module per Kafka API; [`handlers::SUPPORTED`] is what ApiVersions says.
//! - [`group`]: the classic consumer-group coordinator (its own docs), on shard 0.
//! - [`broker`]: start-up and shutdown.
//! - [`error_code`]: Kafka's error numbers, used only when building responses.
//!
//! ## The path of a request
//! socket -> [`conn`] (size check, read frame) -> [`handlers::dispatch`] (header, version check,
//! decode) -> handler -> per partition on the owning shard (mailbox when it is another shard)
//! -> response encoded (record bytes shared, not copied) -> written in request order.

pub mod admin;
pub mod broker;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod error_code;
pub mod group;
pub mod handlers;
pub mod partition;
pub mod producer_ids;
pub mod producer_state;
pub mod recompress;
pub mod shard;

pub use broker::{Broker, BrokerError, run};
pub use config::BrokerConfig;
