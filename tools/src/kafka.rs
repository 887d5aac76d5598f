//! `kiln kafka`: the Kafka-compatible broker.
//!
//! `kiln kafka --config server.properties` reads Kafka's broker configuration (the seed's file
//! works unchanged); without `--config` it runs with Kafka's defaults, listening on and advertising
//! 127.0.0.1:9092, with data under `./kiln-data/kafka`. It runs until SIGINT or SIGTERM, then
//! flushes every accepted write before exiting.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_engine::shutdown::Shutdown;
use kiln_kafka::BrokerConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Kafka `server.properties` file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory when no `--config` is given.
    #[arg(long, default_value = "kiln-data/kafka")]
    pub data_dir: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let config = match &args.config {
        Some(path) => match BrokerConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                kiln_engine::fatal::say(format_args!("kiln kafka: {e}"));
                return ExitCode::from(2);
            }
        },
        None => BrokerConfig::default_embedded(&args.data_dir),
    };
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.install_signal_handlers() {
        kiln_engine::fatal::say(format_args!("kiln kafka: installing signal handlers: {e}"));
        return ExitCode::FAILURE;
    }
    match kiln_kafka::run(config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            kiln_engine::fatal::say(format_args!("kiln kafka: {e}"));
            ExitCode::FAILURE
        }
    }
}
