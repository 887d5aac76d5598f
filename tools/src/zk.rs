//! `kiln zk`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("kiln zk: this build does not include it yet");
    ExitCode::from(2)
}
