//! `kiln-bench`: the load generator and the benchmark harness as a standalone binary, with the
//! same subcommands as `kiln load` and `kiln bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kiln-bench",
    version,
    about = "Kiln's load generator and benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive a Kafka broker or a ZooKeeper server and measure it.
    Load(LoadWrap),
    /// Side-by-side benchmarks against the reference servers.
    Bench(BenchWrap),
}

// The same wrapping as the `kiln` binary's `load` and `bench` modules.
#[derive(clap::Args)]
struct LoadWrap {
    #[command(flatten)]
    inner: kiln_bench::cli::LoadArgs,
}

#[derive(clap::Args)]
struct BenchWrap {
    #[command(flatten)]
    inner: kiln_bench::cli::BenchArgs,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Load(a) => kiln_bench::cli::run_load(a.inner),
        Command::Bench(a) => kiln_bench::cli::run_bench(a.inner),
    }
}
