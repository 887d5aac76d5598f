//! `kiln zk`: the ZooKeeper-compatible server, configured by a `zoo.cfg`.
//!
//! Without `--config` it listens on 2181 with data under `./kiln-data/zk`. SIGINT or SIGTERM stop
//! it cleanly (connections closed, the transaction log flushed); exit status 0.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_engine::shutdown::Shutdown;
use kiln_zk::config::ZkConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Path of a zoo.cfg (ZooKeeper's configuration file format).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let config = match &args.config {
        Some(path) => match ZkConfig::load(path) {
            Ok((config, warnings)) => {
                for w in warnings {
                    kiln_engine::fatal::say(format_args!("kiln zk: {}: {w}", path.display()));
                }
                config
            }
            Err(e) => {
                kiln_engine::fatal::say(format_args!("kiln zk: {}: {e}", path.display()));
                return ExitCode::from(2);
            }
        },
        None => ZkConfig::default_embedded("./kiln-data/zk"),
    };
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.install_signal_handlers() {
        kiln_engine::fatal::say(format_args!("kiln zk: installing signal handlers: {e}"));
        return ExitCode::FAILURE;
    }
    // Said only once the data directory is recovered and the port accepts connections.
    let server = match kiln_zk::server::ServerHandle::start_with(config, shutdown) {
        Ok(s) => s,
        Err(e) => {
            kiln_engine::fatal::say(format_args!("kiln zk: {e}"));
            return ExitCode::FAILURE;
        }
    };
    kiln_engine::fatal::say(format_args!(
        "kiln zk: serving ZooKeeper clients on port {}",
        server.addr().port()
    ));
    match server.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            kiln_engine::fatal::say(format_args!("kiln zk: {e}"));
            ExitCode::FAILURE
        }
    }
}
