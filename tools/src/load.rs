//! `kiln load`: drive a Kafka broker or a ZooKeeper server and measure it (kiln-bench).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inner: kiln_bench::cli::LoadArgs,
}

pub fn run(args: Args) -> ExitCode {
    kiln_bench::cli::run_load(args.inner)
}
