//! The `kiln` binary: one executable for every Kiln role.
//!
//! Each subcommand lives in its own module, which owns its flags (`Args`) and its `run`:
//! - `up`: ZooKeeper on 2181 and Kafka on 9092 in one process, data under `./kiln-data` (`up.rs`);
//! - `zk`: the ZooKeeper-compatible server from a `zoo.cfg` (`zk.rs`);
//! - `kafka`: the Kafka-compatible broker from a `server.properties` (`kafka.rs`);
//! - `inspect`: offline views of Kiln's on-disk files (`inspect.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;
mod kafka;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up::run(args),
        Command::Zk(args) => zk::run(args),
        Command::Kafka(args) => kafka::run(args),
        Command::Inspect(args) => inspect::run(args),
    }
}
