//! `kiln up`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("kiln up: this build does not include it yet");
    ExitCode::from(2)
}
