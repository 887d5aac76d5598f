//! `kiln bench compare`: side-by-side benchmarks against Apache Kafka and ZooKeeper (kiln-bench).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inner: kiln_bench::cli::BenchArgs,
}

pub fn run(args: Args) -> ExitCode {
    kiln_bench::cli::run_bench(args.inner)
}
