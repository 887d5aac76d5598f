//! kiln-bench: Kiln's load generator and side-by-side benchmark harness.
//!
//! - [`stats`]: HDR latency histograms, live counters, the progress line and the result
//!   (human summary and JSON);
//! - [`rate`]: open-loop schedules: every operation has an intended send time, and latency is
//!   measured from it, so a stalled server cannot hide its stall (coordinated omission);
//! - [`kafka`]: `kiln load kafka produce|consume|e2e` over kiln-kafka-codec;
//! - [`zk`]: `kiln load zk`, a pipelining ZooKeeper client over the jute codec;
//! - [`compare`], [`report`], [`workload`], [`procstat`]: `kiln bench compare`, which runs the
//!   workloads of `bench/workloads/` against Kiln and the reference servers and writes a report;
//! - [`neutral`]: the neutral fast clients (librdkafka's rdkafka_performance, Apache
//!   ZooKeeper's C client library) and the generator parity check;
//! - [`net`]: blocking length-prefixed framing shared by both protocols.

pub mod cli;
pub mod compare;
pub mod error;
pub mod kafka;
pub mod net;
pub mod neutral;
pub mod procstat;
pub mod rate;
pub mod report;
pub mod stats;
pub mod targets;
pub mod workload;
pub mod zk;
