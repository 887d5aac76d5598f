//! `kiln bench compare`: the same workload against Kiln and the reference servers, with Kiln's
//! load generator and the reference tools, on pinned cores.
//!
//! For each workload and each server of its system:
//! 1. start the server with a fresh data directory on `server_core` (`taskset`), with the same
//!    durability settings for every server (the workload's `fsync`); Apache Kafka 4.x and 3.9
//!    run in KRaft combined mode (broker and controller in one JVM);
//! 2. wait until it serves, let it settle, and read its idle RSS;
//! 3. give the server an unmeasured warm-up pass of `server_warmup_s` seconds (default 10, 1 in
//!    smoke mode) with Kiln's load generator, so a JVM server's JIT compilation is not charged to
//!    the first measured client: for ZooKeeper the workload's own operations, for Kafka a
//!    produce run to a topic of its own that is then consumed back;
//! 4. run Kiln's load generator (a child `load` process of this binary) on `client_core`, with
//!    the workload's warm-up, then the reference tool (Kafka's ProducerPerformance,
//!    ConsumerPerformance, EndToEndLatency; for ZooKeeper the Java client program
//!    `bench/reference/zk-java/ZkLoad.java`); around each run read the server's CPU time
//!    (`/proc/<pid>/stat`) and sample its RSS;
//! 5. stop the server.
//!
//! A workload with `rate_of_kafka_peak = F` first measures Apache Kafka's peak produce rate
//! with its producer settings (a short as-fast-as-possible run on a server warmed as in 3,
//! reported as its own row) and then runs every server at F times that rate.
//!
//! Then it writes `results.json`, `report.md` and SVG charts under the output directory.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{FastRng, LoadError, Result};
use crate::procstat::{RssSampler, children_cpu_seconds, cpu_seconds, rss_bytes};
use crate::stats::{Percentiles, RunResult};
use crate::workload::Workload;

/// One measured run: a workload, a server, a client.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub server: String,
    pub client: String,
    pub unit: String,
    pub throughput_ops: f64,
    pub throughput_mb_s: f64,
    pub latency_of: String,
    /// Microseconds; reference tools report fewer percentiles (missing ones are 0).
    pub latency_us: Percentiles,
    /// Server CPU time per op, microseconds, over the whole client run as the harness measures
    /// it (`/proc/<pid>/stat` before and after the client process: set-up and warm-up included).
    pub server_cpu_us_per_op: f64,
    /// Server CPU time per op, microseconds, over the client's measured window only, when the
    /// client sampled it (`server_cpu_us_per_op_window` in its result).
    #[serde(default)]
    pub server_cpu_us_per_op_window: Option<f64>,
    /// Server CPU use during the whole client run, in cores.
    pub server_cpu_cores: f64,
    /// The client process's CPU use during its whole run, in cores (`None`: not measured).
    #[serde(default)]
    pub client_cpu_cores: Option<f64>,
    /// Seconds of unmeasured warm-up load the server got after it started, before any measured
    /// client ran (0: none).
    #[serde(default)]
    pub server_warmup_s: f64,
    pub rss_idle_mb: f64,
    pub rss_load_mb: f64,
    pub ok: bool,
    pub note: String,
    /// The round that measured it (1-based; 0 in a median row of several rounds).
    #[serde(default)]
    pub round: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        }
    }
}

/// One row per workload, server and client: each figure the median over the rounds whose run
/// worked (a failed round is kept as its own row); the note gives the throughput range.
pub(crate) fn median_rows(rows: &[Row]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for r in rows {
        if !r.ok {
            out.push(r.clone());
            continue;
        }
        let key = (r.workload.clone(), r.server.clone(), r.client.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let all: Vec<&Row> = rows
            .iter()
            .filter(|x| {
                x.ok && x.workload == r.workload && x.server == r.server && x.client == r.client
            })
            .collect();
        let m = |f: fn(&Row) -> f64| median(all.iter().map(|x| f(x)).collect());
        let window: Vec<f64> = all
            .iter()
            .filter_map(|x| x.server_cpu_us_per_op_window)
            .collect();
        let client: Vec<f64> = all.iter().filter_map(|x| x.client_cpu_cores).collect();
        let lo = all
            .iter()
            .map(|x| x.throughput_ops)
            .fold(f64::MAX, f64::min);
        let hi = all.iter().map(|x| x.throughput_ops).fold(0.0, f64::max);
        let mut row = r.clone();
        row.round = 0;
        row.throughput_ops = m(|x| x.throughput_ops);
        row.throughput_mb_s = m(|x| x.throughput_mb_s);
        row.server_cpu_us_per_op = m(|x| x.server_cpu_us_per_op);
        row.server_cpu_us_per_op_window = (window.len() == all.len()).then(|| median(window));
        row.server_cpu_cores = m(|x| x.server_cpu_cores);
        row.client_cpu_cores = (client.len() == all.len()).then(|| median(client));
        row.rss_load_mb = m(|x| x.rss_load_mb);
        row.latency_us.mean = m(|x| x.latency_us.mean);
        row.latency_us.p50 = m(|x| x.latency_us.p50);
        row.latency_us.p90 = m(|x| x.latency_us.p90);
        row.latency_us.p99 = m(|x| x.latency_us.p99);
        row.latency_us.p999 = m(|x| x.latency_us.p999);
        row.latency_us.p9999 = m(|x| x.latency_us.p9999);
        row.latency_us.max = m(|x| x.latency_us.max);
        let range = format!(
            "median of {} rounds (throughput {}-{})",
            all.len(),
            crate::stats::format_count(lo),
            crate::stats::format_count(hi)
        );
        row.note = if r.note.is_empty() {
            range
        } else {
            format!("{range}; {}", r.note)
        };
        out.push(row);
    }
    out
}

/// Which server CPU figure a row's report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuBasis {
    /// Over the client's measured window (sampled by the client).
    Window,
    /// Over the whole client run (sampled by the harness).
    Run,
}

impl Row {
    /// The server CPU per op the report shows: the measured-window figure when the client
    /// reported one, else the harness's whole-run figure.
    pub fn reported_cpu_us_per_op(&self) -> (f64, CpuBasis) {
        match self.server_cpu_us_per_op_window {
            Some(w) => (w, CpuBasis::Window),
            None => (self.server_cpu_us_per_op, CpuBasis::Run),
        }
    }
}

/// The measured-window server CPU per op a client reported in its result, if any (a negative
/// value means the client could not sample the server).
fn window_cpu_us_per_op(r: &RunResult) -> Option<f64> {
    r.extra
        .get("server_cpu_us_per_op_window")
        .and_then(serde_json::Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub workloads: Vec<Workload>,
    /// Servers to run: kiln, kafka-4, kafka-3.9, zookeeper.
    pub servers: Vec<String>,
    pub smoke: bool,
    pub out_dir: PathBuf,
    pub kiln_bin: PathBuf,
    /// The binary with the `load` subcommand.
    pub load_bin: PathBuf,
    pub root: PathBuf,
    pub server_core: String,
    pub client_core: String,
    pub reference_tools: bool,
    /// The neutral fast clients (rdkafka_performance, the ZooKeeper C client program).
    pub neutral_clients: bool,
    /// Rounds per workload: every round runs every server once, in the same order, so Kiln and
    /// the references alternate; the report shows each client's median over the rounds.
    pub rounds: usize,
    /// Client processes per load run for Kiln's load generator, rdkafka_performance (produce)
    /// and the ZooKeeper C client, all pinned to `client_core`.
    pub client_procs: usize,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LoadError::io("bind a free port"))?;
    Ok(l.local_addr().map_err(LoadError::io("local addr"))?.port())
}

/// A Kafka cluster id: 16 random bytes in unpadded URL-safe base64.
fn cluster_id() -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    let mut rng = FastRng::new(seed);
    // 22 characters of 6 bits = 132 bits; the last character carries 2 bits. The first is a
    // letter: an id that starts with '-' reads as an option to StorageTool's `-t`.
    (0..22)
        .map(|i| {
            let v = rng.next_u64() as usize % 64;
            let v = if i == 21 {
                v & 0x30
            } else if i == 0 {
                v % 52
            } else {
                v
            };
            char::from(A.get(v).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// A running server.
struct Server {
    name: String,
    child: Child,
    addr: String,
    pid: u32,
}

impl Server {
    fn stop(mut self) {
        {
            let c = &mut self.child;
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let f =
        std::fs::File::create(log).map_err(LoadError::io(format!("create {}", log.display())))?;
    let f2 = f.try_clone().map_err(LoadError::io("dup log"))?;
    cmd.stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .stdin(Stdio::null())
        .spawn()
        .map_err(LoadError::io(format!("spawn {cmd:?}")))
}

fn pinned(core: &str, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core).arg(program);
    c
}

fn write_props(path: &Path, props: &[(String, String)]) -> Result<()> {
    let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(path, text).map_err(LoadError::io(format!("write {}", path.display())))
}

fn kafka_lib(cfg: &CompareConfig, name: &str) -> Result<PathBuf> {
    let lib = cfg.root.join(".peers/bench").join(name).join("lib");
    if !lib.join("../.complete").exists() {
        let status = Command::new("bash")
            .arg(cfg.root.join("bench/reference/fetch.sh"))
            .arg(name)
            .env("KILN_ROOT", &cfg.root)
            .status()
            .map_err(LoadError::io("run bench/reference/fetch.sh"))?;
        if !status.success() {
            return Err(LoadError::Config(format!(
                "fetching {name} from Maven Central failed"
            )));
        }
    }
    Ok(lib)
}

fn wait_until_serving(server: &mut Server, zk: bool, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = server.child.try_wait() {
            return Err(LoadError::Server(format!(
                "{} exited with {st} before serving",
                server.name
            )));
        }
        let up = if zk {
            crate::zk::session_works(&server.addr)
        } else {
            crate::kafka::client::Client::connect(&server.addr).is_ok()
        };
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LoadError::Server(format!(
                "{} did not serve on {} within {timeout:?}",
                server.name, server.addr
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn zoo_cfg(dir: &Path, port: u16) -> Result<PathBuf> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(LoadError::io("create data dir"))?;
    let cfg = dir.join("zoo.cfg");
    write_props(
        &cfg,
        &[
            ("tickTime".into(), "2000".into()),
            ("dataDir".into(), data.display().to_string()),
            ("clientPort".into(), port.to_string()),
            ("maxClientCnxns".into(), "0".into()),
            ("4lw.commands.whitelist".into(), "*".into()),
            ("admin.enableServer".into(), "false".into()),
        ],
    )?;
    Ok(cfg)
}

fn apache_zk(core: &str, dir: &Path, port: u16, log: &Path) -> Result<Child> {
    let cfg = zoo_cfg(dir, port)?;
    let mut c = pinned(core, Path::new("java"));
    c.args([
        "-Xms1g",
        "-Xmx1g",
        "-Dzookeeper.admin.enableServer=false",
        "-Dzookeeper.4lw.commands.whitelist=*",
        "-cp",
        "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
        "org.apache.zookeeper.server.ZooKeeperServerMain",
    ])
    .arg(&cfg);
    spawn_logged(c, log)
}

fn start_server(cfg: &CompareConfig, name: &str, w: &Workload, work: &Path) -> Result<Server> {
    let dir = work.join(format!("{}-{name}", w.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(LoadError::io(format!("create {}", dir.display())))?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("server.log");
    let zk = w.get("system") == Some("zk");
    let child = if zk {
        let cfgp = zoo_cfg(&dir, port)?;
        match name {
            "kiln" => {
                let mut c = pinned(&cfg.server_core, &cfg.kiln_bin);
                c.arg("zk").arg("--config").arg(&cfgp);
                spawn_logged(c, &log)?
            }
            "zookeeper" => apache_zk(&cfg.server_core, &dir, port, &log)?,
            other => {
                return Err(LoadError::Config(format!(
                    "{other} is not a ZooKeeper server"
                )));
            }
        }
    } else {
        let mut props: Vec<(String, String)> = vec![
            ("broker.id".into(), "1".into()),
            ("listeners".into(), format!("PLAINTEXT://{addr}")),
            ("advertised.listeners".into(), format!("PLAINTEXT://{addr}")),
            ("log.dirs".into(), dir.join("data").display().to_string()),
            ("num.partitions".into(), "4".into()),
            ("offsets.topic.replication.factor".into(), "1".into()),
            (
                "transaction.state.log.replication.factor".into(),
                "1".into(),
            ),
            ("transaction.state.log.min.isr".into(), "1".into()),
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
        ];
        if w.get("fsync") == Some("per-batch") {
            props.push(("log.flush.interval.messages".into(), "1".into()));
        }
        let sp = dir.join("server.properties");
        match name {
            "kiln" => {
                write_props(&sp, &props)?;
                let mut c = pinned(&cfg.server_core, &cfg.kiln_bin);
                c.arg("kafka").arg("--config").arg(&sp);
                spawn_logged(c, &log)?
            }
            "kafka-4" | "kafka-3.9" => {
                // Both in KRaft combined mode (broker and controller in one JVM, no ZooKeeper).
                let lib = kafka_lib(cfg, name)?;
                let cport = free_port()?;
                props.retain(|(k, _)| k != "broker.id" && k != "listeners");
                props.extend([
                    ("process.roles".into(), "broker,controller".into()),
                    ("node.id".into(), "1".into()),
                    (
                        "controller.quorum.voters".into(),
                        format!("1@127.0.0.1:{cport}"),
                    ),
                    (
                        "listeners".into(),
                        format!("PLAINTEXT://{addr},CONTROLLER://127.0.0.1:{cport}"),
                    ),
                    ("controller.listener.names".into(), "CONTROLLER".into()),
                    (
                        "listener.security.protocol.map".into(),
                        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
                    ),
                ]);
                write_props(&sp, &props)?;
                // Kafka 4 logs through log4j 2, Kafka 3.9 through log4j 1 (reload4j).
                let log_arg = if name == "kafka-4" {
                    let l4j = dir.join("log4j2.properties");
                    std::fs::write(
                        &l4j,
                        "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\nappender.stdout.type=Console\n\
                         appender.stdout.name=STDOUT\nappender.stdout.layout.type=PatternLayout\n\
                         appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n",
                    )
                    .map_err(LoadError::io("write log4j2.properties"))?;
                    format!("-Dlog4j2.configurationFile={}", l4j.display())
                } else {
                    let l4j = dir.join("log4j.properties");
                    std::fs::write(
                        &l4j,
                        "log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
                         log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
                         log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n",
                    )
                    .map_err(LoadError::io("write log4j.properties"))?;
                    format!("-Dlog4j.configuration=file:{}", l4j.display())
                };
                let status = Command::new("java")
                    .arg("-cp")
                    .arg(format!("{}/*", lib.display()))
                    .arg(&log_arg)
                    .args([
                        "kafka.tools.StorageTool",
                        "format",
                        "-t",
                        &cluster_id(),
                        "-c",
                    ])
                    .arg(&sp)
                    .stdout(Stdio::null())
                    .status()
                    .map_err(LoadError::io("run StorageTool"))?;
                if !status.success() {
                    return Err(LoadError::Server(format!(
                        "{name}: StorageTool format failed"
                    )));
                }
                let mut c = pinned(&cfg.server_core, Path::new("java"));
                c.args(["-Xms1g", "-Xmx1g", "-XX:+UseG1GC"])
                    .arg(&log_arg)
                    .arg("-cp")
                    .arg(format!("{}/*", lib.display()))
                    .arg("kafka.Kafka")
                    .arg(&sp);
                spawn_logged(c, &log)?
            }
            other => return Err(LoadError::Config(format!("{other} is not a Kafka server"))),
        }
    };
    let pid = child.id();
    let mut s = Server {
        name: name.to_owned(),
        child,
        addr,
        pid,
    };
    if let Err(e) = wait_until_serving(&mut s, zk, Duration::from_secs(120)) {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        s.stop();
        return Err(LoadError::Server(format!(
            "{e}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(s)
}

/// What the harness measured around one client process.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Server CPU seconds.
    cpu: f64,
    /// Wall seconds.
    wall: f64,
    /// Peak server RSS, bytes.
    peak: u64,
    /// CPU seconds of the client process (and any children it waited for), from the harness's
    /// reaped-children times; `None` when they could not be read.
    client_cpu: Option<f64>,
}

/// Runs `cmd` (already pinned), measuring the server and the client around it. The client's
/// CPU is the growth of this process's reaped-children CPU time: the client is the only child
/// reaped meanwhile (servers are reaped when they stop, outside any measured span).
fn measured<T>(server: &Server, run: impl FnOnce() -> Result<T>) -> Result<(T, Span)> {
    let cpu0 = cpu_seconds(server.pid).unwrap_or(0.0);
    let children0 = children_cpu_seconds();
    let sampler = RssSampler::start(server.pid);
    let t0 = Instant::now();
    let out = run();
    let wall = t0.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let cpu = cpu_seconds(server.pid).unwrap_or(0.0) - cpu0;
    let client_cpu = match (children0, children_cpu_seconds()) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    Ok((
        out?,
        Span {
            cpu,
            wall,
            peak,
            client_cpu,
        },
    ))
}

fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<String> {
    let mut child = spawn_logged(
        {
            cmd.stdin(Stdio::null());
            cmd
        },
        log,
    )?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(LoadError::io("wait"))? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LoadError::Server(format!(
                "{} timed out after {timeout:?}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        return Err(LoadError::Server(format!(
            "{} failed ({status}):\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(text)
}

/// Runs every command at once (each logging to its own file) and waits for all of them; the
/// outputs in order, or the first failure.
fn run_many(cmds: Vec<(Command, PathBuf)>, timeout: Duration) -> Result<Vec<String>> {
    if cmds.len() == 1 {
        return cmds
            .into_iter()
            .map(|(c, log)| run_logged(c, &log, timeout))
            .collect();
    }
    let mut children = Vec::new();
    for (mut c, log) in cmds {
        c.stdin(Stdio::null());
        children.push((spawn_logged(c, &log)?, log));
    }
    let deadline = Instant::now() + timeout;
    let mut status = vec![None; children.len()];
    while status.iter().any(Option::is_none) {
        for (i, (child, _)) in children.iter_mut().enumerate() {
            if status.get(i).is_some_and(Option::is_none)
                && let Some(st) = child.try_wait().map_err(LoadError::io("wait"))?
                && let Some(slot) = status.get_mut(i)
            {
                *slot = Some(st);
            }
        }
        if Instant::now() > deadline {
            for (child, _) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(LoadError::Server(format!(
                "client processes timed out after {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = Vec::new();
    for ((_, log), st) in children.iter().zip(status) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(st) = st
            && !st.success()
        {
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            return Err(LoadError::Server(format!(
                "{} failed ({st}):\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        out.push(text);
    }
    Ok(out)
}

/// One result from the results of N concurrent client processes: counts and rates add up, each
/// latency percentile is the worst process's, and a measured-window server CPU figure (each
/// process read the server over its own window) is dropped for N > 1, so the report shows the
/// harness's whole-run figure.
pub(crate) fn merge_results(mut rs: Vec<RunResult>) -> Option<RunResult> {
    if rs.len() <= 1 {
        return rs.pop();
    }
    let n = rs.len();
    let mut out = rs.first()?.clone();
    out.extra.remove("server_cpu_us_per_op_window");
    for r in rs.iter().skip(1) {
        out.ops += r.ops;
        out.bytes += r.bytes;
        out.errors += r.errors;
        out.throughput_ops += r.throughput_ops;
        out.throughput_mb_s += r.throughput_mb_s;
        let (a, b) = (&mut out.latency_us, &r.latency_us);
        a.count += b.count;
        a.mean = a.mean.max(b.mean);
        a.p50 = a.p50.max(b.p50);
        a.p90 = a.p90.max(b.p90);
        a.p99 = a.p99.max(b.p99);
        a.p999 = a.p999.max(b.p999);
        a.p9999 = a.p9999.max(b.p9999);
        a.max = a.max.max(b.max);
    }
    out.extra
        .insert("client_processes".into(), serde_json::json!(n));
    Some(out)
}

/// Runs Kiln's load generator in `cfg.client_procs` processes at once (process `i` gets the
/// arguments `args(json_i, i)`) and merges their results.
fn kiln_load_many(
    cfg: &CompareConfig,
    json: &Path,
    log: &Path,
    timeout: Duration,
    args: impl Fn(&Path, usize) -> Vec<String>,
) -> Result<RunResult> {
    let n = cfg.client_procs.max(1);
    let name = |p: &Path, i: usize| {
        if n == 1 {
            p.to_owned()
        } else {
            p.with_extension(format!(
                "{i}.{}",
                p.extension().and_then(|e| e.to_str()).unwrap_or("out")
            ))
        }
    };
    let cmds = (0..n)
        .map(|i| (load_cmd(cfg, &args(&name(json, i), i)), name(log, i)))
        .collect();
    run_many(cmds, timeout)?;
    let rs = (0..n)
        .map(|i| read_result(&name(json, i)))
        .collect::<Result<Vec<_>>>()?;
    merge_results(rs).ok_or_else(|| LoadError::Protocol("no client result".into()))
}

fn load_cmd(cfg: &CompareConfig, args: &[String]) -> Command {
    let mut c = pinned(&cfg.client_core, &cfg.load_bin);
    c.arg("load").args(args);
    c
}

fn kafka_load_args(
    w: &Workload,
    mode: &str,
    server: &Server,
    topic: &str,
    json: &Path,
    extra: &[String],
) -> Result<Vec<String>> {
    let mut a: Vec<String> = vec![
        "kafka".into(),
        mode.into(),
        "--bootstrap".into(),
        server.addr.clone(),
        // The broker this harness started: its window CPU is read directly, no socket scan.
        "--server-pid".into(),
        server.pid.to_string(),
        "--topic".into(),
        topic.into(),
        "--json".into(),
        json.display().to_string(),
        "--quiet".into(),
    ];
    for (key, flag) in [
        ("partitions", "--partitions"),
        ("connections", "--connections"),
        ("consumers", "--consumers"),
        ("record_size", "--record-size"),
        ("batch_size", "--batch-size"),
        ("linger_ms", "--linger-ms"),
        ("acks", "--acks"),
        ("in_flight", "--in-flight"),
        ("compression", "--compression"),
    ] {
        if let Some(v) = w.get(key) {
            a.push(flag.into());
            a.push(v.into());
        }
    }
    if mode != "consume" {
        a.extend([
            "--rate".into(),
            w.str_or("rate", "0"),
            "--warmup".into(),
            w.str_or("warmup_s", "0"),
            "--duration".into(),
            w.str_or("duration_s", "10"),
        ]);
    }
    a.extend(extra.iter().cloned());
    Ok(a)
}

fn read_result(path: &Path) -> Result<RunResult> {
    let text =
        std::fs::read_to_string(path).map_err(LoadError::io(format!("read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| LoadError::Protocol(format!("{}: {e}", path.display())))
}

#[allow(clippy::too_many_arguments)]
fn row_from(
    w: &Workload,
    server: &Server,
    client: &str,
    r: &RunResult,
    span: &Span,
    idle: u64,
) -> Row {
    let ops = r.ops.max(1) as f64;
    let Span {
        cpu,
        wall,
        peak,
        client_cpu,
    } = *span;
    Row {
        workload: w.name.clone(),
        server: server.name.clone(),
        client: client.into(),
        unit: r.unit.clone(),
        throughput_ops: r.throughput_ops,
        throughput_mb_s: r.throughput_mb_s,
        latency_of: r.latency_of.clone(),
        latency_us: r.latency_us.clone(),
        server_cpu_us_per_op: cpu * 1e6 / ops,
        server_cpu_us_per_op_window: window_cpu_us_per_op(r),
        server_cpu_cores: cpu / wall.max(1e-9),
        client_cpu_cores: client_cpu.map(|c| c / wall.max(1e-9)),
        server_warmup_s: 0.0,
        rss_idle_mb: idle as f64 / 1e6,
        rss_load_mb: peak as f64 / 1e6,
        ok: r.errors == 0,
        note: if r.errors > 0 {
            format!("{} errors", r.errors)
        } else {
            String::new()
        },
        round: 1,
    }
}

/// Numbers after a label in a Kafka tool's output line (e.g. "12.5 ms 99th").
fn number_before(text: &str, suffix: &str) -> Option<f64> {
    let idx = text.find(suffix)?;
    text.get(..idx)?
        .split([' ', ',', '('])
        .rev()
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let idx = text.find(prefix)? + prefix.len();
    text.get(idx..)?
        .trim_start()
        .split([' ', ',', '\n'])
        .next()?
        .parse()
        .ok()
}

/// ProducerPerformance's summary: "N records sent, X records/sec (Y MB/sec), A ms avg latency,
/// M ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
pub fn parse_producer_performance(out: &str) -> Option<RunResult> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent,") && l.contains("50th"))?;
    let ms = |v: f64| v * 1000.0;
    let mut r = RunResult {
        workload: "kafka-produce".into(),
        unit: "records".into(),
        ops: number_before(line, " records sent")? as u64,
        throughput_ops: number_before(line, " records/sec")?,
        throughput_mb_s: number_before(line, " MB/sec")? * 1.048_576,
        latency_of: "send -> ack (ProducerPerformance)".into(),
        ..Default::default()
    };
    r.latency_us = Percentiles {
        count: r.ops,
        mean: ms(number_before(line, " ms avg latency")?),
        p50: ms(number_before(line, " ms 50th")?),
        p90: 0.0,
        p99: ms(number_before(line, " ms 99th")?),
        p999: ms(number_before(line, " ms 99.9th")?),
        p9999: 0.0,
        max: ms(number_before(line, " ms max latency")?),
    };
    Some(r)
}

/// ConsumerPerformance's data line (after the `start.time, end.time, ...` header); uses
/// fetch.nMsg.sec (the rate without the consumer group's join time).
pub fn parse_consumer_performance(out: &str) -> Option<RunResult> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("start.time"));
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    // Warnings (e.g. "Exiting before consuming the expected number of messages") may come
    // between the header and the data line.
    let values: Vec<&str> = lines
        .find(|l| l.split(',').count() == header.len())?
        .split(',')
        .map(str::trim)
        .collect();
    let get = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        values.get(i)?.parse().ok()
    };
    Some(RunResult {
        workload: "kafka-consume".into(),
        unit: "records".into(),
        ops: get("data.consumed.in.nMsg")? as u64,
        throughput_ops: get("fetch.nMsg.sec")?,
        throughput_mb_s: get("fetch.MB.sec")? * 1.048_576,
        latency_of: "none (ConsumerPerformance)".into(),
        ..Default::default()
    })
}

/// EndToEndLatency: "Avg latency: X ms" and "Percentiles: 50th = A, 99th = B, 99.9th = C".
pub fn parse_end_to_end_latency(out: &str, n: u64) -> Option<RunResult> {
    let ms = |v: f64| v * 1000.0;
    let pct = out.lines().find(|l| l.contains("Percentiles"))?;
    let mut r = RunResult {
        workload: "kafka-e2e".into(),
        unit: "records".into(),
        ops: n,
        latency_of: "send -> receipt, one record in flight (EndToEndLatency)".into(),
        ..Default::default()
    };
    r.latency_us = Percentiles {
        count: n,
        mean: ms(number_after(out, "Avg latency:")?),
        p50: ms(number_after(pct, "50th =")?),
        p99: ms(number_after(pct, "99th =")?),
        p999: ms(number_after(pct, "99.9th =")?),
        ..Default::default()
    };
    Some(r)
}

/// Debian's ZooKeeper client and server jar (its manifest names the other jars).
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// Compiles bench/reference/zk-java/ZkLoad.java into `.peers/bench/zk-java` (when missing or
/// older than the source) and returns that directory.
fn zk_java_classes(cfg: &CompareConfig) -> Result<PathBuf> {
    let src = cfg.root.join("bench/reference/zk-java/ZkLoad.java");
    let dir = cfg.root.join(".peers/bench/zk-java");
    let class = dir.join("ZkLoad.class");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&class).is_none() || mtime(&class) < mtime(&src) {
        std::fs::create_dir_all(&dir)
            .map_err(LoadError::io(format!("create {}", dir.display())))?;
        let out = Command::new("javac")
            .args(["-nowarn", "-cp", ZK_JAR, "-d"])
            .arg(&dir)
            .arg(&src)
            .output()
            .map_err(LoadError::io("run javac (is a JDK installed?)"))?;
        if !out.status.success() {
            return Err(LoadError::Config(format!(
                "javac {} failed: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(dir)
}

/// ZkLoad's last line: "RESULT ops=N seconds=S ops_per_sec=X errors=E mean_us=.. p50_us=.. ...".
pub fn parse_zk_java(out: &str) -> Option<RunResult> {
    let line = out.lines().rev().find(|l| l.starts_with("RESULT "))?;
    let get = |k: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    let ops = get("ops")? as u64;
    let mut extra = serde_json::Map::new();
    // -1 when ZkLoad could not read the server's CPU; absent from older versions.
    if let Some(cpu) = get("server_cpu_us_per_op_window").filter(|v| *v >= 0.0) {
        extra.insert("server_cpu_us_per_op_window".into(), serde_json::json!(cpu));
    }
    Some(RunResult {
        workload: "zk".into(),
        unit: "ops".into(),
        ops,
        errors: get("errors")? as u64,
        duration_s: get("seconds")?,
        throughput_ops: get("ops_per_sec")?,
        latency_of: "send -> callback (Java ZooKeeper client)".into(),
        latency_us: Percentiles {
            count: ops,
            mean: get("mean_us")?,
            p50: get("p50_us")?,
            p90: get("p90_us")?,
            p99: get("p99_us")?,
            p999: get("p999_us")?,
            p9999: get("p9999_us")?,
            max: get("max_us")?,
        },
        extra,
        ..Default::default()
    })
}

fn java_tool(cfg: &CompareConfig, lib: &Path, class: &str) -> Command {
    let mut c = pinned(&cfg.client_core, Path::new("java"));
    c.args(["-Xms512m", "-Xmx1g"])
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(class);
    c
}

/// Workload keys that shape a ZooKeeper load and the flag both load programs (`kiln load zk`
/// and the Java client's ZkLoad) take for each.
const ZK_SHAPE_FLAGS: [(&str, &str); 5] = [
    ("mix", "--mix"),
    ("sessions", "--sessions"),
    ("in_flight", "--in-flight"),
    ("value_size", "--value-size"),
    ("keys", "--keys"),
];

/// Seconds of unmeasured load a freshly started server gets before the measured clients
/// (`server_warmup_s`, default 10 s, 1 s in smoke mode; 0 turns the pass off).
pub(crate) fn server_warmup_s(cfg: &CompareConfig, w: &Workload) -> Result<f64> {
    let s: f64 = w.num("server_warmup_s", if cfg.smoke { 1.0 } else { 10.0 })?;
    if !s.is_finite() || s < 0.0 {
        return Err(LoadError::Config(format!(
            "{}: server_warmup_s must be a number of seconds >= 0",
            w.name
        )));
    }
    Ok(s)
}

/// The topic of a Kafka workload's server warm-up pass: none of the measured runs reads or
/// writes it.
fn warmup_topic(w: &Workload) -> String {
    format!("{}-server-warmup", w.name)
}

/// The unmeasured server warm-up pass of a Kafka workload: Kiln's load generator produces for
/// `secs` seconds with the workload's producer settings (and rate) to a topic of its own
/// ([`warmup_topic`]), then consumes back everything it produced, so a JVM server has compiled
/// its produce and fetch paths before the first measured client. The measured topics are not
/// touched (the consume workload still reads exactly what it pre-produced). Returns the pass's
/// wall time in seconds.
fn kafka_server_warmup(
    cfg: &CompareConfig,
    w: &Workload,
    server: &Server,
    logs: &Path,
    tag: &str,
    secs: f64,
    timeout: Duration,
) -> Result<f64> {
    let t0 = Instant::now();
    let topic = warmup_topic(w);
    let mut pass = w.clone();
    pass.set("warmup_s", "0");
    pass.set("duration_s", secs.to_string());
    let json = logs.join(format!("{tag}-server-warmup-produce.json"));
    let a = kafka_load_args(&pass, "produce", server, &topic, &json, &[])?;
    run_logged(
        load_cmd(cfg, &a),
        &logs.join(format!("{tag}-server-warmup-produce.log")),
        timeout,
    )?;
    let n = read_result(&json)?.ops;
    if n > 0 {
        let json = logs.join(format!("{tag}-server-warmup-consume.json"));
        let a = kafka_load_args(
            &pass,
            "consume",
            server,
            &topic,
            &json,
            &["--records".into(), n.to_string()],
        )?;
        run_logged(
            load_cmd(cfg, &a),
            &logs.join(format!("{tag}-server-warmup-consume.log")),
            timeout,
        )?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// librdkafka's `rdkafka_performance` producing the workload's `neutral_records` (default
/// `ref_records`) with its producer settings to a topic of its own; with `neutral_latency = 1`
/// also per-record latency (send -> delivery report, `-l -A`).
fn rdkafka_produce(
    cfg: &CompareConfig,
    w: &Workload,
    server: &Server,
    logs: &Path,
    tag: &str,
    idle: u64,
    timeout: Duration,
) -> Result<Row> {
    let bin = crate::neutral::tool(&cfg.root, "rdkafka_performance")?;
    let topic = format!("{}-rdkafka", w.name);
    let partitions: i32 = w.num("partitions", 4)?;
    crate::kafka::client::ensure_topic(&server.addr, &topic, partitions, &[])?;
    let n: u64 = w.num("neutral_records", w.num("ref_records", 100_000)?)?;
    let lat = (w.str_or("neutral_latency", "0") == "1")
        .then(|| logs.join(format!("{tag}-rdkafka-latency.txt")));
    let procs = cfg.client_procs.max(1);
    let mut cmds = Vec::new();
    for i in 0..procs {
        let mut c = pinned(&cfg.client_core, &bin);
        // Latency per record from the first process only (one file).
        let lat_i = if i == 0 { lat.as_deref() } else { None };
        c.args(crate::neutral::rdkafka_produce_args(
            w,
            &server.addr,
            &topic,
            (n / procs as u64).max(1),
            lat_i,
        )?);
        let log = if procs == 1 {
            logs.join(format!("{tag}-rdkafka.log"))
        } else {
            logs.join(format!("{tag}-rdkafka.{i}.log"))
        };
        cmds.push((c, log));
    }
    let (outs, span) = measured(server, || run_many(cmds, timeout))?;
    let parsed: Option<Vec<RunResult>> = outs
        .iter()
        .map(|o| crate::neutral::parse_rdkafka_produce(o))
        .collect();
    let mut r = parsed.and_then(merge_results).ok_or_else(|| {
        LoadError::Protocol(format!(
            "cannot parse rdkafka_performance output in {}",
            logs.display()
        ))
    })?;
    if let Some(p) = lat.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if let Some(pc) = crate::neutral::latency_file_percentiles(&p) {
            r.latency_us = pc;
            r.latency_of = "produce call -> delivery report (rdkafka_performance -l)".into();
        }
        // The per-record file is large and rebuilt by every run.
        if let Some(f) = &lat {
            let _ = std::fs::remove_file(f);
        }
    }
    let mut row = row_from(w, server, crate::neutral::RDKAFKA, &r, &span, idle);
    row.note = format!(
        "{n} records; rate over the whole run (connect and metadata included){}",
        if row.note.is_empty() { "" } else { "; " }
    ) + &row.note;
    Ok(row)
}

/// Runs one workload against one server; returns the rows it measured and, when a run
/// failed, the error (the rows measured before the failure are kept).
fn run_one(
    cfg: &CompareConfig,
    w: &Workload,
    name: &str,
    work: &Path,
    logs: &Path,
) -> (Vec<Row>, Option<LoadError>) {
    let mut server = match start_server(cfg, name, w, work) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut rows = Vec::new();
    let mut warmed_s = 0.0;
    let result = run_on(cfg, w, &mut server, logs, &mut rows, &mut warmed_s);
    server.stop();
    // A full run writes tens of GB; each server's data goes when it stops, not at the end.
    let _ = std::fs::remove_dir_all(work.join(format!("{}-{name}", w.name)));
    for r in &mut rows {
        r.server_warmup_s = warmed_s;
    }
    (rows, result.err())
}

/// Runs `w`'s clients on `server`; sets `warmed_s` to the wall time of the unmeasured server
/// warm-up pass (0 when there was none).
fn run_on(
    cfg: &CompareConfig,
    w: &Workload,
    server: &mut Server,
    logs: &Path,
    rows: &mut Vec<Row>,
    warmed_s: &mut f64,
) -> Result<()> {
    std::thread::sleep(Duration::from_secs(if cfg.smoke { 1 } else { 3 }));
    let idle = rss_bytes(server.pid).unwrap_or(0);
    let tag = format!("{}-{}", w.name, server.name);
    let timeout = Duration::from_secs(if cfg.smoke { 120 } else { 900 });
    let json = logs.join(format!("{tag}-kiln-load.json"));
    let zk = w.get("system") == Some("zk");
    if zk {
        let zk_args = |json: &Path, warmup: String, duration: String| {
            let mut a: Vec<String> = vec![
                "zk".into(),
                "--server".into(),
                server.addr.clone(),
                "--json".into(),
                json.display().to_string(),
                "--quiet".into(),
                "--rate".into(),
                w.str_or("rate", "0"),
                "--warmup".into(),
                warmup,
                "--duration".into(),
                duration,
                // The server this harness started: read its CPU directly, no socket scan.
                "--server-pid".into(),
                server.pid.to_string(),
            ];
            for (key, flag) in ZK_SHAPE_FLAGS.iter().chain([&("watchers", "--watchers")]) {
                if let Some(v) = w.get(key) {
                    a.push((*flag).into());
                    a.push(v.into());
                }
            }
            a
        };
        // An unmeasured pass first, on every server alike: a JVM server just started spends its
        // first seconds compiling (about 9 s for ZooKeeper on the benchmark VM), and without this
        // pass the first measured client would be charged with that time and CPU.
        let server_warmup = server_warmup_s(cfg, w)?;
        if server_warmup > 0.0 {
            let t0 = Instant::now();
            let pass = zk_args(
                &logs.join(format!("{tag}-server-warmup.json")),
                "0".into(),
                server_warmup.to_string(),
            );
            let log = logs.join(format!("{tag}-server-warmup.log"));
            run_logged(load_cmd(cfg, &pass), &log, timeout)?;
            *warmed_s = t0.elapsed().as_secs_f64();
        }
        let log = logs.join(format!("{tag}-kiln-load.log"));
        let procs = cfg.client_procs.max(1);
        let (r, span) = measured(server, || {
            kiln_load_many(cfg, &json, &log, timeout, |json, i| {
                let mut a = zk_args(
                    json,
                    w.str_or("warmup_s", "0"),
                    w.str_or("duration_s", "10"),
                );
                if procs > 1 {
                    a.extend(["--root".into(), format!("/kiln-bench-{i}")]);
                }
                a
            })
        })?;
        rows.push(row_from(w, server, "kiln-load", &r, &span, idle));
        // The neutral client: Apache ZooKeeper's C library under a thin driver (async API).
        if cfg.neutral_clients && w.get("watchers").is_none() {
            let bin = crate::neutral::tool(&cfg.root, "zkload")?;
            let procs = cfg.client_procs.max(1);
            let cmds = (0..procs)
                .map(|i| {
                    let mut c = pinned(&cfg.client_core, &bin);
                    c.args(["--server", &server.addr])
                        .args(["--warmup", &w.str_or("warmup_s", "0")])
                        .args(["--duration", &w.str_or("duration_s", "10")])
                        .args(["--server-pid", &server.pid.to_string()])
                        .args(["--root", &format!("/kiln-bench-c{i}")]);
                    for (key, flag) in ZK_SHAPE_FLAGS {
                        if let Some(v) = w.get(key) {
                            c.args([flag, v]);
                        }
                    }
                    let log = if procs == 1 {
                        logs.join(format!("{tag}-zk-c.log"))
                    } else {
                        logs.join(format!("{tag}-zk-c.{i}.log"))
                    };
                    (c, log)
                })
                .collect();
            let (outs, span) = measured(server, || run_many(cmds, timeout))?;
            let parsed: Option<Vec<RunResult>> = outs.iter().map(|o| parse_zk_java(o)).collect();
            let mut r = parsed.and_then(merge_results).ok_or_else(|| {
                LoadError::Protocol(format!("cannot parse zkload output in {}", logs.display()))
            })?;
            r.latency_of = "send -> completion (ZooKeeper C client)".into();
            let mut row = row_from(w, server, crate::neutral::ZK_C, &r, &span, idle);
            row.note = format!(
                "closed loop per in-flight slot, latency from send{}{}",
                if row.note.is_empty() { "" } else { "; " },
                row.note
            );
            rows.push(row);
        }
        // The Java ZooKeeper client (async API), for the request/response workloads.
        if cfg.reference_tools && w.get("watchers").is_none() && w.str_or("java_client", "1") != "0"
        {
            let classes = zk_java_classes(cfg)?;
            let mut c = pinned(&cfg.client_core, Path::new("java"));
            c.args(["-Xms512m", "-Xmx1g", "-cp"])
                .arg(format!("{}:{ZK_JAR}", classes.display()))
                .arg("ZkLoad")
                .args(["--server", &server.addr])
                .args(["--warmup", &w.str_or("warmup_s", "0")])
                .args(["--duration", &w.str_or("duration_s", "10")])
                .args(["--server-pid", &server.pid.to_string()]);
            for (key, flag) in ZK_SHAPE_FLAGS {
                if let Some(v) = w.get(key) {
                    c.args([flag, v]);
                }
            }
            let log = logs.join(format!("{tag}-zk-java.log"));
            let (out, span) = measured(server, || run_logged(c, &log, timeout))?;
            let r = parse_zk_java(&out).ok_or_else(|| {
                LoadError::Protocol(format!("cannot parse ZkLoad output in {}", log.display()))
            })?;
            // The report shows ZkLoad's measured-window server CPU; results.json also keeps the
            // harness's whole-run figure (set-up and warm-up included).
            let mut row = row_from(w, server, "zookeeper-java", &r, &span, idle);
            row.note = format!(
                "closed loop per in-flight slot, latency from send{}{}",
                if row.note.is_empty() { "" } else { "; " },
                row.note
            );
            rows.push(row);
        }
        return Ok(());
    }
    // The same unmeasured pass for the Kafka servers (a JVM broker compiles its produce and
    // fetch paths in its first seconds), on a topic no measured run uses.
    let server_warmup = server_warmup_s(cfg, w)?;
    if server_warmup > 0.0 {
        *warmed_s = kafka_server_warmup(cfg, w, server, logs, &tag, server_warmup, timeout)?;
    }
    let kind = w.str_or("kind", "produce");
    let lib = if cfg.reference_tools {
        let libname = if server.name == "kafka-3.9" {
            "kafka-3.9"
        } else {
            "kafka-4"
        };
        Some(kafka_lib(cfg, libname)?)
    } else {
        None
    };
    let partitions: i32 = w.num("partitions", 4)?;
    match kind.as_str() {
        "produce" | "e2e" => {
            let topic = format!("{}-kiln-load", w.name);
            let a = kafka_load_args(w, &kind, server, &topic, &json, &[])?;
            let log = logs.join(format!("{tag}-kiln-load.log"));
            let procs = if kind == "produce" {
                cfg.client_procs.max(1)
            } else {
                1
            };
            let one = CompareConfig {
                client_procs: procs,
                ..cfg.clone()
            };
            let (r, span) = measured(server, || {
                kiln_load_many(&one, &json, &log, timeout, |json, _| {
                    let mut a = a.clone();
                    if let Some(i) = a.iter().position(|s| s == "--json")
                        && let Some(slot) = a.get_mut(i + 1)
                    {
                        *slot = json.display().to_string();
                    }
                    a
                })
            })?;
            let mut row = row_from(w, server, "kiln-load", &r, &span, idle);
            if let Some(n) = w.get("rate_note") {
                row.note = if row.note.is_empty() {
                    n.to_owned()
                } else {
                    format!("{n}; {}", row.note)
                };
            }
            rows.push(row);
            if cfg.neutral_clients && kind == "produce" {
                rows.push(rdkafka_produce(cfg, w, server, logs, &tag, idle, timeout)?);
            }
            if let Some(lib) = lib {
                let topic = format!("{}-ref", w.name);
                crate::kafka::client::ensure_topic(&server.addr, &topic, partitions, &[])?;
                let log = logs.join(format!("{tag}-kafka-tool.log"));
                let n: u64 = w.num("ref_records", 100_000)?;
                let (cmd, client) = if kind == "produce" {
                    let mut c = java_tool(cfg, &lib, "org.apache.kafka.tools.ProducerPerformance");
                    let rate = w.num("rate", 0.0)?;
                    c.args(["--topic", &topic, "--num-records", &n.to_string()])
                        .args(["--record-size", &w.str_or("record_size", "100")])
                        .args([
                            "--throughput",
                            &if rate > 0.0 {
                                format!("{rate}")
                            } else {
                                "-1".into()
                            },
                        ])
                        .arg("--producer-props")
                        .arg(format!("bootstrap.servers={}", server.addr))
                        .arg(format!("acks={}", w.str_or("acks", "1")))
                        .arg(format!("batch.size={}", w.str_or("batch_size", "16384")))
                        .arg(format!("linger.ms={}", w.str_or("linger_ms", "5")))
                        .arg(format!(
                            "compression.type={}",
                            w.str_or("compression", "none")
                        ))
                        .arg(format!(
                            "max.in.flight.requests.per.connection={}",
                            w.str_or("in_flight", "5")
                        ));
                    (c, "ProducerPerformance")
                } else {
                    let mut c = java_tool(cfg, &lib, "org.apache.kafka.tools.EndToEndLatency");
                    c.arg(&server.addr)
                        .arg(&topic)
                        .arg(n.to_string())
                        .arg(w.str_or("acks", "1"))
                        .arg(w.str_or("record_size", "100"));
                    (c, "EndToEndLatency")
                };
                let (out, span) = measured(server, || run_logged(cmd, &log, timeout))?;
                let r = if kind == "produce" {
                    parse_producer_performance(&out)
                } else {
                    parse_end_to_end_latency(&out, n)
                }
                .ok_or_else(|| {
                    LoadError::Protocol(format!(
                        "cannot parse {client} output in {}",
                        log.display()
                    ))
                })?;
                let mut row = row_from(w, server, client, &r, &span, idle);
                if kind == "e2e" {
                    row.throughput_ops = n as f64 / span.wall.max(1e-9);
                    row.note = "closed loop: one record in flight".into();
                }
                rows.push(row);
            }
        }
        "consume" => {
            let topic = format!("{}-data", w.name);
            let n: u64 = w.num("records", 1_000_000)?;
            // Pre-fill with Kiln's load generator (not measured).
            let fill_json = logs.join(format!("{tag}-fill.json"));
            let mut fill = kafka_load_args(w, "produce", server, &topic, &fill_json, &[])?;
            // Replace the duration with a record count.
            if let Some(i) = fill.iter().position(|s| s == "--duration") {
                fill.drain(i..i + 2);
            }
            fill.extend(["--records".into(), n.to_string()]);
            run_logged(
                load_cmd(cfg, &fill),
                &logs.join(format!("{tag}-fill.log")),
                timeout,
            )?;
            // Both consumers read exactly what was written.
            let n = read_result(&fill_json)?.ops;
            let a = kafka_load_args(
                w,
                "consume",
                server,
                &topic,
                &json,
                &["--records".into(), n.to_string()],
            )?;
            let log = logs.join(format!("{tag}-kiln-load.log"));
            let (_, span) = measured(server, || run_logged(load_cmd(cfg, &a), &log, timeout))?;
            let r = read_result(&json)?;
            rows.push(row_from(w, server, "kiln-load", &r, &span, idle));
            if cfg.neutral_clients {
                let bin = crate::neutral::tool(&cfg.root, "rdkafka_performance")?;
                let mut c = pinned(&cfg.client_core, &bin);
                c.args(crate::neutral::rdkafka_consume_args(
                    &server.addr,
                    &topic,
                    partitions,
                    n,
                ));
                let log = logs.join(format!("{tag}-rdkafka.log"));
                let (out, span) = measured(server, || run_logged(c, &log, timeout))?;
                let r = crate::neutral::parse_rdkafka_consume(&out).ok_or_else(|| {
                    LoadError::Protocol(format!(
                        "cannot parse rdkafka_performance output in {}",
                        log.display()
                    ))
                })?;
                let mut row = row_from(w, server, crate::neutral::RDKAFKA, &r, &span, idle);
                if r.ops < n {
                    row.ok = false;
                    row.note = format!("read {} of {n} records", r.ops);
                } else {
                    row.note = "rate over the whole run (connect and metadata included)".into();
                }
                rows.push(row);
            }
            if let Some(lib) = lib {
                let log = logs.join(format!("{tag}-kafka-tool.log"));
                let mut c = java_tool(cfg, &lib, "org.apache.kafka.tools.ConsumerPerformance");
                c.args(["--bootstrap-server", &server.addr, "--topic", &topic])
                    .args(["--messages", &n.to_string(), "--timeout", "60000"]);
                let (out, span) = measured(server, || run_logged(c, &log, timeout))?;
                let r = parse_consumer_performance(&out).ok_or_else(|| {
                    LoadError::Protocol(format!(
                        "cannot parse ConsumerPerformance output in {}",
                        log.display()
                    ))
                })?;
                let mut row = row_from(w, server, "ConsumerPerformance", &r, &span, idle);
                row.note = "fetch.nMsg.sec (group join excluded)".into();
                if r.ops < n {
                    row.ok = false;
                    row.note = format!(
                        "timed out after {} of {n} records (fetch.nMsg.sec of what it read)",
                        r.ops
                    );
                }
                rows.push(row);
            }
        }
        other => {
            return Err(LoadError::Config(format!(
                "{}: unknown kind {other:?}",
                w.name
            )));
        }
    }
    Ok(())
}

/// For a workload with `rate_of_kafka_peak = F`: measures Apache Kafka's peak produce rate
/// with the workload's record size and producer settings (Kiln's load generator, as fast as
/// possible for `peak_duration_s` after `peak_warmup_s`) on the first Apache Kafka server of
/// the run (Kiln when the run has none), then sets the workload's `rate` to F times that
/// (at most `max_rate` when given) for every server. Returns the probe's row.
fn pace_from_peak(cfg: &CompareConfig, w: &mut Workload, work: &Path, logs: &Path) -> Result<Row> {
    let frac: f64 = w.num("rate_of_kafka_peak", 0.5)?;
    if !(frac > 0.0 && frac <= 1.0) {
        return Err(LoadError::Config(format!(
            "{}: rate_of_kafka_peak must be in (0, 1]",
            w.name
        )));
    }
    let name = cfg
        .servers
        .iter()
        .find(|s| s.starts_with("kafka-"))
        .or(cfg.servers.first())
        .ok_or_else(|| LoadError::Config("no servers".into()))?
        .clone();
    eprintln!("== {} peak probe on {name}", w.name);
    let mut probe = w.clone();
    probe.set("rate", "0");
    probe.set("warmup_s", w.str_or("peak_warmup_s", "2"));
    probe.set("duration_s", w.str_or("peak_duration_s", "5"));
    let server = start_server(cfg, &name, &probe, work)?;
    let result = (|| {
        std::thread::sleep(Duration::from_secs(if cfg.smoke { 1 } else { 3 }));
        let idle = rss_bytes(server.pid).unwrap_or(0);
        let tag = format!("{}-{name}-peak", w.name);
        let timeout = Duration::from_secs(if cfg.smoke { 120 } else { 600 });
        // The peak is a warm server's: the same unmeasured pass as before the measured runs
        // (as fast as possible, like the probe).
        let server_warmup = server_warmup_s(cfg, w)?;
        let warmed_s = if server_warmup > 0.0 {
            kafka_server_warmup(cfg, &probe, &server, logs, &tag, server_warmup, timeout)?
        } else {
            0.0
        };
        let json = logs.join(format!("{tag}.json"));
        let a = kafka_load_args(
            &probe,
            "produce",
            &server,
            &format!("{}-peak", w.name),
            &json,
            &[],
        )?;
        let log = logs.join(format!("{tag}.log"));
        let (_, span) = measured(&server, || run_logged(load_cmd(cfg, &a), &log, timeout))?;
        let r = read_result(&json)?;
        let mut row = row_from(&probe, &server, "kiln-load (peak probe)", &r, &span, idle);
        row.server_warmup_s = warmed_s;
        Ok(row)
    })();
    server.stop();
    let _ = std::fs::remove_dir_all(work.join(format!("{}-{name}", probe.name)));
    let mut row = result?;
    if row.throughput_ops <= 0.0 {
        return Err(LoadError::Server(format!(
            "{}: the peak probe on {name} produced nothing",
            w.name
        )));
    }
    let mut rate = (row.throughput_ops * frac).round().max(1.0);
    let cap: f64 = w.num("max_rate", 0.0)?;
    if cap > 0.0 {
        rate = rate.min(cap);
    }
    let note = format!(
        "rate {rate:.0}/s = {:.0}% of {name}'s peak produce rate ({:.0}/s){}",
        frac * 100.0,
        row.throughput_ops,
        if cap > 0.0 && rate >= cap {
            " capped by max_rate"
        } else {
            ""
        }
    );
    eprintln!("   peak {:.0} records/s -> {note}", row.throughput_ops);
    row.note = "as fast as possible: sets the e2e rate".into();
    w.set("rate", format!("{rate}"));
    w.set("rate_note", note);
    Ok(row)
}

/// Runs everything and writes the report; returns the rows and whether every run worked.
pub fn run(cfg: &CompareConfig) -> Result<(Vec<Row>, bool)> {
    // A mistyped target fails now, not after the whole run.
    crate::targets::validate(&cfg.workloads)?;
    std::fs::create_dir_all(&cfg.out_dir)
        .map_err(LoadError::io(format!("create {}", cfg.out_dir.display())))?;
    let logs = cfg.out_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(LoadError::io("create logs dir"))?;
    let work = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(LoadError::io("create work dir"))?;
    // Read before the run loads the machine. A guest whose freed memory goes back to the
    // hypervisor pays a host fault on every first touch of it, page cache included: say so
    // before the figures it lowers.
    let machine = crate::report::machine();
    if let Some(line) = machine.lines().find(|l| l.starts_with("guest memory:")) {
        eprintln!("{line}");
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for w in &cfg.workloads {
        let mut w = w.clone();
        if w.get("rate_of_kafka_peak").is_some() {
            match pace_from_peak(cfg, &mut w, &work, &logs) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    eprintln!("   FAILED: {e}");
                    failures.push(format!("{} peak probe: {e}", w.name));
                    rows.push(Row {
                        workload: w.name.clone(),
                        server: "-".into(),
                        client: "peak probe".into(),
                        ok: false,
                        note: e.to_string().lines().next().unwrap_or_default().to_owned(),
                        ..Default::default()
                    });
                    continue;
                }
            }
        }
        let w = &w;
        let system = w.str_or("system", "kafka");
        for (round, name) in
            (1..=cfg.rounds.max(1)).flat_map(|k| cfg.servers.iter().map(move |s| (k, s)))
        {
            if cfg.rounds > 1 && cfg.servers.first() == Some(name) {
                eprintln!("-- round {round} of {}", cfg.rounds);
            }
            let fits = match system.as_str() {
                "zk" => matches!(name.as_str(), "kiln" | "zookeeper"),
                _ => matches!(name.as_str(), "kiln" | "kafka-4" | "kafka-3.9"),
            };
            if !fits {
                continue;
            }
            eprintln!("== {} on {name}", w.name);
            // Each round's logs apart, so a later round does not overwrite an earlier one's.
            let round_logs = if cfg.rounds > 1 {
                let d = logs.join(format!("round-{round}"));
                std::fs::create_dir_all(&d).map_err(LoadError::io("create logs dir"))?;
                d
            } else {
                logs.clone()
            };
            let (r, err) = run_one(cfg, w, name, &work, &round_logs);
            for row in &r {
                let (cpu, basis) = row.reported_cpu_us_per_op();
                eprintln!(
                    "   {:<20} {:>12.0} {}/s  p50 {:.0} us  p99 {:.0} us  cpu {:.2} us/op ({})  rss {:.0}/{:.0} MB",
                    row.client,
                    row.throughput_ops,
                    row.unit,
                    row.latency_us.p50,
                    row.latency_us.p99,
                    cpu,
                    if basis == CpuBasis::Window {
                        "window"
                    } else {
                        "run"
                    },
                    row.rss_idle_mb,
                    row.rss_load_mb
                );
            }
            rows.extend(r.into_iter().map(|mut row| {
                row.round = round;
                row
            }));
            if let Some(e) = err {
                eprintln!("   FAILED: {e}");
                failures.push(format!("{} on {name}: {e}", w.name));
                rows.push(Row {
                    workload: w.name.clone(),
                    server: name.clone(),
                    client: "-".into(),
                    ok: false,
                    note: e.to_string().lines().next().unwrap_or_default().to_owned(),
                    ..Default::default()
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if cfg.rounds > 1 {
        // Every round's rows as measured; the report shows the medians.
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| LoadError::Protocol(e.to_string()))?;
        std::fs::write(cfg.out_dir.join("rounds.json"), text)
            .map_err(LoadError::io("write rounds.json"))?;
        rows = median_rows(&rows);
    }
    crate::report::write(cfg, &machine, &rows, &failures)?;
    let mut f = std::io::stderr();
    let _ = writeln!(f, "report: {}", cfg.out_dir.join("report.md").display());
    Ok((rows, failures.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_performance_summary() {
        let out = "100000 records sent, 45620.4 records/sec (4.35 MB/sec), 250.1 ms avg latency, 601.0 ms max latency.\n\
                   1000000 records sent, 98765.4 records/sec (9.42 MB/sec), 120.50 ms avg latency, 800.00 ms max latency, 110 ms 50th, 300 ms 95th, 500 ms 99th, 700 ms 99.9th.\n";
        let r = parse_producer_performance(out).unwrap();
        assert_eq!(r.ops, 1_000_000);
        assert_eq!(r.throughput_ops, 98765.4);
        assert_eq!(r.latency_us.p50, 110_000.0);
        assert_eq!(r.latency_us.p99, 500_000.0);
        assert_eq!(r.latency_us.p999, 700_000.0);
        assert_eq!(r.latency_us.max, 800_000.0);
    }

    #[test]
    fn parses_consumer_performance_line() {
        let out = "WARNING: something\nstart.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-11-27 18:00:00:000, 2026-11-27 18:00:05:000, 95.3674, 19.0735, 1000000, 200000.0, 3000, 2000, 47.6837, 500000.0\n";
        let r = parse_consumer_performance(out).unwrap();
        assert_eq!(r.ops, 1_000_000);
        assert_eq!(r.throughput_ops, 500_000.0);
        let timed_out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   WARNING: Exiting before consuming the expected number of messages: timeout (30000 ms) exceeded.\n\
                   2026-11-27 21:23:10:857, 2026-11-27 21:23:41:956, 0.0000, 0.0000, 0, 0.0000, 25479, 5620, 0.0000, 0.0000\n";
        let r = parse_consumer_performance(timed_out).unwrap();
        assert_eq!(r.ops, 0);
    }

    #[test]
    fn parses_end_to_end_latency() {
        let out = "0\t2.5\n1000\t1.1\nAvg latency: 1.2345 ms\nPercentiles: 50th = 1, 99th = 3, 99.9th = 10\n";
        let r = parse_end_to_end_latency(out, 5000).unwrap();
        assert_eq!(r.latency_us.p50, 1000.0);
        assert_eq!(r.latency_us.p99, 3000.0);
        assert_eq!(r.latency_us.p999, 10_000.0);
        assert!((r.latency_us.mean - 1234.5).abs() < 1e-6);
    }

    #[test]
    fn parses_zk_java_result() {
        let out = "SLF4J: noise\nRESULT ops=1000 seconds=2.000 ops_per_sec=500.0 errors=3 mean_us=70.5 \
                   p50_us=61.0 p90_us=119.0 p99_us=280.2 p999_us=290.7 p9999_us=290.7 max_us=300.0\n";
        let r = parse_zk_java(out).unwrap();
        assert_eq!(r.ops, 1000);
        assert_eq!(r.errors, 3);
        assert_eq!(r.throughput_ops, 500.0);
        assert_eq!(r.latency_us.p99, 280.2);
        assert_eq!(r.latency_us.max, 300.0);
        assert!(window_cpu_us_per_op(&r).is_none());
        assert!(parse_zk_java("no result here").is_none());
        let with_cpu = "RESULT ops=1000 seconds=2.000 ops_per_sec=500.0 errors=0 mean_us=70.5 \
                   p50_us=61.0 p90_us=119.0 p99_us=280.2 p999_us=290.7 p9999_us=290.7 max_us=300.0 \
                   client_cpu_us_per_op=12.00 server_cpu_us_per_op_window=41.25\n";
        assert_eq!(
            window_cpu_us_per_op(&parse_zk_java(with_cpu).unwrap()),
            Some(41.25)
        );
        let unknown = with_cpu.replace("window=41.25", "window=-1.00");
        assert!(window_cpu_us_per_op(&parse_zk_java(&unknown).unwrap()).is_none());
    }

    #[test]
    fn reads_the_window_cpu_of_kiln_load_results() {
        let mut r = RunResult::default();
        assert!(window_cpu_us_per_op(&r).is_none());
        r.extra.insert(
            "server_cpu_us_per_op_window".into(),
            serde_json::json!(10.5),
        );
        assert_eq!(window_cpu_us_per_op(&r), Some(10.5));
        let row = Row {
            server_cpu_us_per_op: 20.0,
            server_cpu_us_per_op_window: window_cpu_us_per_op(&r),
            ..Default::default()
        };
        assert_eq!(row.reported_cpu_us_per_op(), (10.5, CpuBasis::Window));
        let row = Row {
            server_cpu_us_per_op: 20.0,
            ..Default::default()
        };
        assert_eq!(row.reported_cpu_us_per_op(), (20.0, CpuBasis::Run));
    }

    #[test]
    fn medians_over_rounds_and_merged_client_processes() {
        let row = |round: usize, t: f64, cpu: f64| Row {
            workload: "w".into(),
            server: "kiln".into(),
            client: "kiln-load".into(),
            throughput_ops: t,
            server_cpu_us_per_op: cpu,
            server_cpu_us_per_op_window: Some(cpu),
            client_cpu_cores: Some(0.5),
            ok: true,
            round,
            ..Default::default()
        };
        let failed = Row {
            ok: false,
            ..row(2, 0.0, 0.0)
        };
        let m = median_rows(&[
            row(1, 10.0, 3.0),
            failed,
            row(2, 30.0, 1.0),
            row(3, 20.0, 2.0),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].throughput_ops, 20.0);
        assert_eq!(m[0].server_cpu_us_per_op_window, Some(2.0));
        assert_eq!(m[0].round, 0);
        assert!(
            m[0].note
                .starts_with("median of 3 rounds (throughput 10-30)"),
            "{}",
            m[0].note
        );
        assert!(!m[1].ok);
        let r = |ops: u64, p99: f64| {
            let mut r = RunResult {
                ops,
                throughput_ops: ops as f64,
                ..Default::default()
            };
            r.latency_us.p99 = p99;
            r.extra
                .insert("server_cpu_us_per_op_window".into(), serde_json::json!(1.0));
            r
        };
        let one = merge_results(vec![r(5, 1.0)]).unwrap();
        assert!(window_cpu_us_per_op(&one).is_some());
        let two = merge_results(vec![r(5, 1.0), r(7, 3.0)]).unwrap();
        assert_eq!(two.ops, 12);
        assert_eq!(two.throughput_ops, 12.0);
        assert_eq!(two.latency_us.p99, 3.0);
        assert!(window_cpu_us_per_op(&two).is_none());
        assert!(merge_results(Vec::new()).is_none());
    }

    #[test]
    fn cluster_ids_have_kafkas_shape() {
        let id = cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
