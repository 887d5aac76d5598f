//! The `kiln` binary: one executable for every Kiln role.
//!
//! Each subcommand lives in its own module, which owns its flags (`Args`) and its `run`:
//! - `up`: ZooKeeper on 2181 and Kafka on 9092 in one process, data under `./kiln-data` (`up.rs`);
//! - `zk`: the ZooKeeper-compatible server from a `zoo.cfg` (`zk.rs`);
//! - `kafka`: the Kafka-compatible broker from a `server.properties` (`kafka.rs`);
//! - `inspect`: offline views of Kiln's on-disk files (`inspect.rs`);
//! - `load`: the load generator for Kafka and ZooKeeper (`load.rs`);
//! - `bench`: side-by-side comparisons with the reference servers (`bench.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod inspect;
mod kafka;
mod load;
mod up;
mod zk;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kafka- and ZooKeeper-compatible data platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ZooKeeper (2181) and Kafka (9092) in one process with data under ./kiln-data.
    Up(up::Args),
    /// Run the ZooKeeper-compatible server.
    Zk(zk::Args),
    /// Run the Kafka-compatible broker.
    Kafka(kafka::Args),
    /// Inspect Kiln's on-disk files.
    Inspect(inspect::Args),
    /// Generate load against a Kafka broker or a ZooKeeper server and report latency.
    Load(load::Args),
    /// Run workloads side by side against Kiln and the reference servers.
    Bench(bench::Args),
}

/// Server log lines (connections refused or closed for bad input, session expiry, snapshots,
/// fatal errors) go to stderr; `RUST_LOG` filters them (default `info`, e.g.
/// `RUST_LOG=kiln_zk=debug,info`). Colour codes only when stderr is a terminal (and `NO_COLOR` is
/// unset): a file or the journal gets plain text. The library crates only emit `tracing` events;
/// installing the subscriber is the binary's job.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Up(_) | Command::Kafka(_) | Command::Zk(_)
    ) {
        init_logging();
    }
    match cli.command {
        Command::Up(args) => up::run(args),
        Command::Zk(args) => zk::run(args),
        Command::Kafka(args) => kafka::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Load(args) => load::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
