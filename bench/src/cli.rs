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
            };
            finish(crate::zk::run(&cfg), a.common.json.as_ref())
        }
    }
}
