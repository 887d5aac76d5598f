//! Command-line surfaces of `kiln load` and `kiln bench`, so the `kiln` binary only wraps them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::stats::RunResult;

/// `kiln load`: drive a Kafka broker or a ZooKeeper server and measure it.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub target: LoadTarget,
}

#[derive(Debug, Subcommand)]
pub enum LoadTarget {
    /// Kafka: produce, consume or end-to-end latency against any broker.
    Kafka(KafkaArgs),
    /// ZooKeeper: op mix, sessions, requests in flight, value size; or watch fan-out.
    Zk(ZkArgs),
}

/// Options every load run shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Target rate over all connections, per second (records for Kafka, ops for ZooKeeper);
    /// 0 = as fast as possible. Latency is measured from each op's intended send time.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured run length in seconds (after warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds: load is sent but not measured.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl CommonArgs {
    pub fn duration(&self) -> Option<Duration> {
        self.duration
            .filter(|d| *d > 0.0)
            .map(Duration::from_secs_f64)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }
}

#[derive(Debug, Args)]
pub struct KafkaArgs {
    #[command(subcommand)]
    pub mode: KafkaMode,
}

#[derive(Debug, Subcommand)]
pub enum KafkaMode {
    /// Produce records (acks, batching, linger, compression, rate).
    Produce(KafkaOpts),
    /// Consume a topic from the earliest offset as fast as possible.
    Consume(KafkaOpts),
    /// Produce at --rate and consume in the same process; latency per record end to end.
    E2e(KafkaOpts),
}

#[derive(Debug, Args)]
pub struct KafkaOpts {
    /// Bootstrap broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "kiln-bench")]
    pub topic: String,
    /// Partitions (the topic is created with them if it does not exist).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Connections (producers for produce/e2e, consumers for consume).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// e2e: consumer connections.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Record value size in bytes (at least 8).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Key size in bytes (0 = null keys, at most 24).
    #[arg(long, default_value_t = 0)]
    pub key_size: usize,
    /// Keys are drawn uniformly from this many distinct values.
    #[arg(long, default_value_t = 1_000_000)]
    pub key_space: u64,
    /// Record bytes per batch (`batch.size`).
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// Milliseconds a paced batch waits to fill (`linger.ms`).
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Stop after this many records (produced, or consumed for consume).
    #[arg(long)]
    pub records: Option<u64>,
    /// Fetch: max bytes per response (`fetch.max.bytes`).
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,
    /// Fetch: max bytes per partition (`max.partition.fetch.bytes`).
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,
    /// Fetch: max wait in ms (`fetch.max.wait.ms`).
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: i32,
    /// Topic configs for creation, `key=value` (repeatable).
    #[arg(long = "topic-config")]
    pub topic_configs: Vec<String>,
    /// The broker's process id on this machine: its CPU over the measured window of a produce
    /// or e2e run is read from /proc/<pid>/stat (default: the process listening on the
    /// bootstrap port, when visible).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ZkArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub server: String,
    /// Sessions (one TCP connection each).
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Operation mix as weights: create, set, get, exists, delete, multi (two sets), watch
    /// (getData with a watch).
    #[arg(long, default_value = "get=70,set=20,create=5,delete=5")]
    pub mix: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Pool nodes read and written by get/set/exists/multi.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Stop after this many ops (over all sessions).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Watch fan-out: this many watcher sessions; one writer sets a hot node at --rate.
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// Parent node of everything the run creates.
    #[arg(long, default_value = "/kiln-bench")]
    pub root: String,
    /// The server's process id on this machine: its CPU over the measured window is read from
    /// /proc/<pid>/stat (default: the process listening on --server's port, when visible).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn finish(res: crate::error::Result<RunResult>, json: Option<&PathBuf>) -> ExitCode {
    match res {
        Ok(r) => {
            print!("{}", r.summary());
            if let Some(p) = json
                && let Err(e) = r.write_json(p)
            {
                eprintln!("kiln load: writing {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Entry point of `kiln load`.
pub fn run_load(args: LoadArgs) -> ExitCode {
    match args.target {
        LoadTarget::Kafka(k) => {
            let (mode, o) = match k.mode {
                KafkaMode::Produce(o) => (crate::kafka::Mode::Produce, o),
                KafkaMode::Consume(o) => (crate::kafka::Mode::Consume, o),
                KafkaMode::E2e(o) => (crate::kafka::Mode::E2e, o),
            };
            let compression = match crate::kafka::batch::Compression::parse(&o.compression) {
                Ok(c) => c,
                Err(e) => return finish(Err(e), None),
            };
            let mut topic_configs = Vec::new();
            for kv in &o.topic_configs {
                match kv.split_once('=') {
                    Some((k, v)) => topic_configs.push((k.to_owned(), v.to_owned())),
                    None => {
                        return finish(
                            Err(crate::error::LoadError::Config(format!(
                                "--topic-config {kv:?}: want key=value"
                            ))),
                            None,
                        );
                    }
                }
            }
            let cfg = crate::kafka::KafkaLoad {
                mode,
                bootstrap: o.bootstrap,
                topic: o.topic,
                partitions: o.partitions,
                connections: o.connections,
                consumers: o.consumers,
                record_size: o.record_size,
                key_size: o.key_size,
                key_space: o.key_space,
                batch_size: o.batch_size,
                linger: Duration::from_secs_f64(o.linger_ms.max(0.0) / 1e3),
                acks: o.acks,
                compression,
                in_flight: o.in_flight,
                rate: o.common.rate,
                duration: o.common.duration(),
                records: o.records,
                warmup: o.common.warmup(),
                fetch_max_bytes: o.fetch_max_bytes,
                partition_max_bytes: o.partition_max_bytes,
                fetch_max_wait_ms: o.fetch_max_wait_ms,
                topic_configs,
                quiet: o.common.quiet,
                server_pid: o.server_pid,
            };
            finish(crate::kafka::run(&cfg), o.common.json.as_ref())
        }
        LoadTarget::Zk(a) => {
            let mix = match crate::zk::parse_mix(&a.mix) {
                Ok(m) => m,
                Err(e) => return finish(Err(e), None),
            };
            let cfg = crate::zk::ZkLoad {
                server: a.server,
                sessions: a.sessions,
                in_flight: a.in_flight,
                mix,
                value_size: a.value_size,
                keys: a.keys,
                rate: a.common.rate,
                duration: a.common.duration(),
                ops: a.ops,
                warmup: a.common.warmup(),
                watchers: a.watchers,
                root: a.root,
                quiet: a.common.quiet,
                server_pid: a.server_pid,
            };
            finish(crate::zk::run(&cfg), a.common.json.as_ref())
        }
    }
}

/// `kiln bench`: side-by-side benchmarks.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run workloads against Kiln and the reference servers and write a report.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Workload names (files in bench/workloads/, without .conf) or paths; `all` for every one.
    #[arg(default_value = "all")]
    pub workloads: Vec<String>,
    /// Servers: kiln, kafka-4, kafka-3.9, zookeeper (each workload uses those of its system).
    #[arg(long, default_value = "kiln,kafka-4,zookeeper", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Tiny workloads (seconds) that check the harness, not the machine.
    #[arg(long)]
    pub smoke: bool,
    /// Output directory (default bench/results/<date>-<host>, or <date>-<host>-smoke).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The Kiln binary that serves (default: this executable).
    #[arg(long)]
    pub kiln_bin: Option<PathBuf>,
    /// The binary whose `load` subcommand drives the load (default: this executable).
    #[arg(long)]
    pub load_bin: Option<PathBuf>,
    /// Repository root (default $KILN_ROOT or the current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Core(s) for the servers, a taskset list (e.g. 0 or 0-3).
    #[arg(long = "server-cores", alias = "server-core", default_value = "0")]
    pub server_core: String,
    /// Core(s) for the load generators and the reference tools, a taskset list.
    #[arg(long = "client-cores", alias = "client-core", default_value = "1")]
    pub client_core: String,
    /// Only Kiln's load generator and the neutral clients (skip Kafka's Java tools and the
    /// Java ZooKeeper client).
    #[arg(long)]
    pub no_reference_tools: bool,
    /// Skip the neutral clients (rdkafka_performance, the ZooKeeper C client program).
    #[arg(long)]
    pub no_neutral_clients: bool,
    /// Rounds per workload: each round runs every server once, in the same order (Kiln and the
    /// references alternate); the report shows medians, `rounds.json` every round.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Client processes per run of Kiln's load generator, rdkafka_performance (produce) and the
    /// ZooKeeper C client, all on --client-cores (with --server-cores, a scaling run on a
    /// larger host).
    #[arg(long, default_value_t = 1)]
    pub client_procs: usize,
}

fn today_and_host() -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "undated".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{date}-{host}")
}

/// Entry point of `kiln bench`.
pub fn run_bench(args: BenchArgs) -> ExitCode {
    let BenchCommand::Compare(a) = args.command;
    let root = a
        .root
        .or_else(|| std::env::var_os("KILN_ROOT").map(PathBuf::from))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kiln"));
    let dir = root.join("bench/workloads");
    let workloads = if a.workloads.iter().any(|w| w == "all") {
        crate::workload::Workload::all(&dir, a.smoke)
    } else {
        a.workloads
            .iter()
            .map(|w| crate::workload::Workload::load(w, &dir, a.smoke))
            .collect()
    };
    let workloads = match workloads {
        Ok(w) => w,
        Err(e) => {
            eprintln!("kiln bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = a.out.unwrap_or_else(|| {
        let name = today_and_host();
        root.join("bench/results").join(if a.smoke {
            format!("{name}-smoke")
        } else {
            name
        })
    });
    let cfg = crate::compare::CompareConfig {
        workloads,
        servers: a.servers,
        smoke: a.smoke,
        out_dir: out,
        kiln_bin: a.kiln_bin.unwrap_or_else(|| me.clone()),
        load_bin: a.load_bin.unwrap_or(me),
        root,
        server_core: a.server_core,
        client_core: a.client_core,
        reference_tools: !a.no_reference_tools,
        neutral_clients: !a.no_neutral_clients,
        rounds: a.rounds.max(1),
        client_procs: a.client_procs.max(1),
    };
    match crate::compare::run(&cfg) {
        Ok((_, true)) => ExitCode::SUCCESS,
        Ok((_, false)) => {
            eprintln!("kiln bench: some runs failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kiln bench: {e}");
            ExitCode::FAILURE
        }
    }
}
