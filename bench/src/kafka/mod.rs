//! `kiln load kafka produce|consume|e2e`: Kafka load over kiln-kafka-codec and blocking sockets.
//!
//! - produce: each connection owns some partitions and sends one batch per Produce request,
//!   rotating over its partitions, with up to `in_flight` requests outstanding (a sender
//!   thread and a receiver thread per connection, as in [`crate::zk`]). With a target rate,
//!   records are due on the open-loop schedule and a batch closes when it is full
//!   (`batch_size` bytes) or `linger` after its first record was due; each record's latency
//!   runs from its own intended time to the acknowledgement.
//! - consume: each connection fetches its partitions from the earliest offset, one Fetch in
//!   flight, until `records` were read, the duration ends or nothing arrives for 10 s.
//! - e2e: producers at the target rate and consumers from the latest offsets in one process;
//!   every value carries its intended send time, and latency runs from it to the moment the
//!   consumer holds the record.
//!
//! Partitions are assigned to connections round-robin; keys (if `key_size > 0`) are drawn
//! uniformly from `key_space` and travel in the records, but do not choose the partition.

pub mod batch;
pub mod client;
mod load;

pub use load::{KafkaLoad, Mode, run};
