//! `kiln zk`: the ZooKeeper-compatible server, configured by a `zoo.cfg`.
//!
//! Without `--config` it listens on 2181 with data under `./kiln-data/zk`. SIGINT or SIGTERM stop
//! it cleanly (connections closed, the transaction log flushed); exit status 0.
//!
//! `kiln zk status --config zoo.cfg` asks the server that configuration describes for its mode
//! and prints what `zkServer.sh status` prints (exit status 1 when nothing answers).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use kiln_engine::shutdown::Shutdown;
use kiln_zk::config::ZkConfig;

#[derive(clap::Args)]
pub struct Args {
    /// `status`: print the running server's mode, as `zkServer.sh status` does.
    #[arg(value_enum)]
    action: Option<Action>,
    /// Path of a zoo.cfg (ZooKeeper's configuration file format).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Action {
    Status,
}

/// How long `status` waits for the server's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> ExitCode {
    if let Some(Action::Status) = args.action {
        return status(args.config.as_deref());
    }
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

/// `zkServer.sh status`: the client port and address from the configuration, then the mode the
/// server reports on `srvr`.
fn status(config: Option<&Path>) -> ExitCode {
    let path = config.unwrap_or(Path::new("zoo.cfg"));
    let (cfg, _) = match ZkConfig::parse_file(path) {
        Ok(c) => c,
        Err(e) => {
            kiln_engine::fatal::say(format_args!("kiln zk status: {}: {e}", path.display()));
            return ExitCode::from(2);
        }
    };
    println!("Using config: {}", path.display());
    let ip = cfg
        .client_port_address
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let host = if cfg.client_port_address.is_some() {
        ip.to_string()
    } else {
        "localhost".to_string()
    };
    println!(
        "Client port found: {}. Client address: {host}. Client SSL: false.",
        cfg.client_port
    );
    match srvr_mode(SocketAddr::new(ip, cfg.client_port)) {
        Some(mode) => {
            println!("Mode: {mode}");
            ExitCode::SUCCESS
        }
        None => {
            println!("Error contacting service. It is probably not running.");
            ExitCode::FAILURE
        }
    }
}

fn srvr_mode(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, STATUS_TIMEOUT).ok()?;
    s.set_read_timeout(Some(STATUS_TIMEOUT)).ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    // The answer is a few hundred bytes; a bounded read keeps a wrong port from feeding us more.
    s.take(64 << 10).read_to_string(&mut out).ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_string())
}
