//! `kiln up`: the embedded default, ZooKeeper on 2181 and Kafka on 9092 in one process.
//!
//! Lifecycle:
//! 1. check that io_uring is usable (a clear message and exit 1 otherwise);
//! 2. install SIGINT/SIGTERM handlers on one shared [`Shutdown`] token;
//! 3. start the ZooKeeper server on its own shard thread (data under `<data-dir>/zk`);
//! 4. run the Kafka broker on its shards (data under `<data-dir>/kafka`) on this thread;
//! 5. when either stops (signal or fatal error), request shutdown of the other and wait for it, so
//!    both flush their logs before the process exits.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_engine::shutdown::Shutdown;
use kiln_engine::uring_check;

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding all data (`zk/` and `kafka/` below it).
    #[arg(long, default_value = "kiln-data")]
    data_dir: PathBuf,
    /// ZooKeeper client port.
    #[arg(long, default_value_t = 2181)]
    zk_port: u16,
    /// Kafka listener port (advertised as 127.0.0.1).
    #[arg(long, default_value_t = 9092)]
    kafka_port: u16,
}

pub fn run(args: Args) -> ExitCode {
    if let Err(e) = uring_check::check() {
        kiln_engine::fatal::say(format_args!("kiln up: {e}"));
        return ExitCode::from(1);
    }
    let stop = Shutdown::new();
    if let Err(e) = stop.install_signal_handlers() {
        kiln_engine::fatal::say(format_args!("kiln up: cannot install signal handlers: {e}"));
        return ExitCode::from(1);
    }

    let mut zk_cfg = kiln_zk::config::ZkConfig::default_embedded(args.data_dir.join("zk"));
    zk_cfg.client_port = args.zk_port;
    let zk_stop = stop.clone();
    let zk = std::thread::Builder::new()
        .name("kiln-zk".into())
        .spawn(move || {
            let result = kiln_zk::server::run(zk_cfg, zk_stop.clone());
            // Either way the process is going down: take Kafka with it.
            zk_stop.request();
            result
        });
    let zk = match zk {
        Ok(handle) => handle,
        Err(e) => {
            kiln_engine::fatal::say(format_args!(
                "kiln up: cannot start the ZooKeeper thread: {e}"
            ));
            return ExitCode::from(1);
        }
    };

    let mut props = std::collections::BTreeMap::new();
    props.insert(
        "log.dirs".to_string(),
        args.data_dir.join("kafka").display().to_string(),
    );
    props.insert(
        "listeners".to_string(),
        format!("PLAINTEXT://127.0.0.1:{}", args.kafka_port),
    );
    let kafka_cfg = match kiln_kafka::config::BrokerConfig::from_properties(props) {
        Ok(c) => c,
        Err(e) => {
            kiln_engine::fatal::say(format_args!("kiln up: {e}"));
            stop.request();
            let _ = zk.join();
            return ExitCode::from(1);
        }
    };
    kiln_engine::fatal::say(format_args!(
        "kiln up: ZooKeeper on port {}, Kafka on 127.0.0.1:{}, data under {}",
        args.zk_port,
        args.kafka_port,
        args.data_dir.display()
    ));
    let kafka_result = kiln_kafka::run(kafka_cfg, stop.clone());
    stop.request();
    let zk_result = zk.join();

    let mut code = ExitCode::SUCCESS;
    if let Err(e) = kafka_result {
        kiln_engine::fatal::say(format_args!("kiln up: kafka: {e}"));
        code = ExitCode::from(1);
    }
    match zk_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            kiln_engine::fatal::say(format_args!("kiln up: zookeeper: {e}"));
            code = ExitCode::from(1);
        }
        Err(_) => {
            kiln_engine::fatal::say(format_args!("kiln up: the ZooKeeper thread panicked"));
            code = ExitCode::from(1);
        }
    }
    code
}
