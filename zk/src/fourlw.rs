//! Four-letter words (`ruok`, `srvr`, `mntr`, ...) and the AdminServer's command names: pure
//! rendering of a [`Report`] that the server fills in. The text follows ZooKeeper 3.8's layout so
//! scripts that parse it (kazoo reads `zookeeper.version` from `envi`) keep working.

use std::fmt::Write as _;

/// The version Kiln reports, in ZooKeeper's format (clients parse the part before the first '-').
pub const ZK_VERSION: &str = "3.8.4--kiln, built on 2026-11-27 00:00 UTC";

/// Every four-letter word Kiln answers.
pub const COMMANDS: &[&str] = &[
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "wchc", "wchp", "dump", "isro",
    "dirs", "crst", "srst",
];

/// A four-letter word as the big-endian int a client sends in place of a length prefix.
pub fn command_of(first4: [u8; 4]) -> Option<&'static str> {
    COMMANDS.iter().copied().find(|c| c.as_bytes() == first4)
}

/// One client connection, for `cons` and `stat`.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub peer: String,
    pub received: u64,
    pub sent: u64,
    pub session: i64,
    pub timeout_ms: i32,
    pub last_op: String,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub queued: u64,
    /// When the connection was accepted, ms since the epoch.
    pub established_ms: i64,
    /// When the last reply was sent, ms since the epoch (0 before the first).
    pub last_response_ms: i64,
    /// Request-to-reply latencies in ms: the last one and min/avg/max over the connection.
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: u64,
    pub max_latency_ms: u64,
}

/// What the server knows at the moment a command runs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub received: u64,
    pub sent: u64,
    pub outstanding: u64,
    pub zxid: i64,
    pub node_count: usize,
    pub watch_count: usize,
    pub watched_paths: usize,
    pub watching_sessions: usize,
    pub ephemerals_count: usize,
    pub data_bytes: u64,
    pub conns: Vec<ConnInfo>,
    pub conf: Vec<(String, String)>,
    pub sessions: Vec<(i64, i32)>,
    pub ephemerals: Vec<(i64, Vec<String>)>,
    pub watches_by_session: Vec<(i64, Vec<String>)>,
    pub watches_by_path: Vec<(String, Vec<i64>)>,
    pub data_dir_bytes: u64,
    pub log_dir_bytes: u64,
    /// `standalone`, `observer`, ... ("" reads as standalone).
    pub mode: &'static str,
    /// An observer's count of txns after which its tree digest differed from the leader's.
    pub digest_mismatches: u64,
}

impl Report {
    fn mode(&self) -> &'static str {
        if self.mode.is_empty() {
            "standalone"
        } else {
            self.mode
        }
    }

    /// `zk_peer_state` as ZooKeeper's members report it (a standalone server reports its mode).
    fn peer_state(&self) -> &'static str {
        match self.mode() {
            "observer" => "observing - broadcast",
            "follower" => "following - broadcast",
            "leader" => "leading - broadcast",
            m => m,
        }
    }
}

fn stats_block(r: &Report, out: &mut String) {
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{:.4}/{}",
        r.latency_min_ms, r.latency_avg_ms, r.latency_max_ms
    );
    let _ = writeln!(out, "Received: {}", r.received);
    let _ = writeln!(out, "Sent: {}", r.sent);
    let _ = writeln!(out, "Connections: {}", r.conns.len());
    let _ = writeln!(out, "Outstanding: {}", r.outstanding);
    let _ = writeln!(out, "Zxid: 0x{:x}", r.zxid);
    let _ = writeln!(out, "Mode: {}", r.mode());
    let _ = writeln!(out, "Node count: {}", r.node_count);
}

fn conn_line(c: &ConnInfo, long: bool) -> String {
    let mut out = format!(
        " {}[1](queued={},recved={},sent={}",
        c.peer, c.queued, c.received, c.sent
    );
    // As ZooKeeper: the session details only once the handshake bound a session, and the last
    // cxid only once a request with a non-negative xid arrived.
    if long && c.session != 0 {
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            c.session, c.last_op, c.established_ms, c.timeout_ms
        );
        if c.last_cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", c.last_cxid);
        }
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid,
            c.last_response_ms,
            c.last_latency_ms,
            c.min_latency_ms,
            c.avg_latency_ms,
            c.max_latency_ms
        );
    }
    out.push(')');
    out
}

/// The reply to `cmd`, or the whitelist refusal when `allowed` is false.
pub fn render(cmd: &str, allowed: bool, r: &Report) -> String {
    if !allowed {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    let mut out = String::new();
    match cmd {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str("rw"),
        "srvr" => {
            let _ = writeln!(out, "Zookeeper version: {ZK_VERSION}");
            stats_block(r, &mut out);
        }
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {ZK_VERSION}");
            out.push_str("Clients:\n");
            for c in &r.conns {
                let _ = writeln!(out, "{}", conn_line(c, false));
            }
            out.push('\n');
            stats_block(r, &mut out);
        }
        "cons" => {
            for c in &r.conns {
                let _ = writeln!(out, "{}", conn_line(c, true));
            }
            out.push('\n');
        }
        "mntr" => {
            let rows: Vec<(&str, String)> = vec![
                ("zk_version", ZK_VERSION.to_string()),
                ("zk_server_state", r.mode().to_string()),
                ("zk_peer_state", r.peer_state().to_string()),
                (
                    "zk_digest_mismatches_count",
                    r.digest_mismatches.to_string(),
                ),
                ("zk_avg_latency", format!("{:.4}", r.latency_avg_ms)),
                ("zk_max_latency", r.latency_max_ms.to_string()),
                ("zk_min_latency", r.latency_min_ms.to_string()),
                ("zk_packets_received", r.received.to_string()),
                ("zk_packets_sent", r.sent.to_string()),
                ("zk_num_alive_connections", r.conns.len().to_string()),
                ("zk_outstanding_requests", r.outstanding.to_string()),
                ("zk_znode_count", r.node_count.to_string()),
                ("zk_watch_count", r.watch_count.to_string()),
                ("zk_ephemerals_count", r.ephemerals_count.to_string()),
                ("zk_approximate_data_size", r.data_bytes.to_string()),
                ("zk_global_sessions", r.sessions.len().to_string()),
                ("zk_last_proposal_size", "-1".to_string()),
            ];
            // A standalone server has no peer state (ZooKeeper's omits the key).
            for (k, v) in rows
                .into_iter()
                .filter(|(k, _)| *k != "zk_peer_state" || r.mode() != "standalone")
            {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        "conf" => {
            for (k, v) in &r.conf {
                let _ = writeln!(out, "{k}={v}");
            }
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={ZK_VERSION}");
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
            let _ = writeln!(out, "host.name={host}");
            let _ = writeln!(
                out,
                "java.version=none (Kiln {})",
                env!("CARGO_PKG_VERSION")
            );
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "user.dir={cwd}");
        }
        "wchs" => {
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                r.watching_sessions, r.watched_paths
            );
            let _ = writeln!(out, "Total watches:{}", r.watch_count);
        }
        "wchc" => {
            for (s, paths) in &r.watches_by_session {
                let _ = writeln!(out, "0x{s:x}");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
        }
        "wchp" => {
            for (p, sessions) in &r.watches_by_path {
                let _ = writeln!(out, "{p}");
                for s in sessions {
                    let _ = writeln!(out, "\t0x{s:x}");
                }
            }
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let _ = writeln!(out, "Global Sessions({}):", r.sessions.len());
            for (s, to) in &r.sessions {
                let _ = writeln!(out, "0x{s:x}\t{to}ms");
            }
            out.push_str("ephemeral nodes dump:\n");
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", r.ephemerals.len());
            for (s, paths) in &r.ephemerals {
                let _ = writeln!(out, "0x{s:x}:");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push_str("Connections dump:\n");
            let _ = writeln!(out, "Connections Sets (1)/({}):", r.conns.len());
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: {}", r.data_dir_bytes);
            let _ = writeln!(out, "logdir_size: {}", r.log_dir_bytes);
        }
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        other => {
            let _ = writeln!(out, "Unknown command {other}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cons_lists_real_latencies_like_zookeeper() {
        let mut c = ConnInfo {
            peer: "/127.0.0.1:5000".into(),
            received: 7,
            sent: 6,
            session: 0x1234,
            timeout_ms: 30000,
            last_op: "GETD".into(),
            last_cxid: 5,
            last_zxid: 0x10,
            queued: 1,
            established_ms: 1_700_000_000_000,
            last_response_ms: 1_700_000_000_123,
            last_latency_ms: 2,
            min_latency_ms: 1,
            avg_latency_ms: 3,
            max_latency_ms: 9,
        };
        assert_eq!(
            conn_line(&c, true),
            " /127.0.0.1:5000[1](queued=1,recved=7,sent=6,sid=0x1234,lop=GETD,est=1700000000000,to=30000,lcxid=0x5,lzxid=0x10,lresp=1700000000123,llat=2,minlat=1,avglat=3,maxlat=9)"
        );
        assert_eq!(
            conn_line(&c, false),
            " /127.0.0.1:5000[1](queued=1,recved=7,sent=6)"
        );
        c.last_cxid = -1;
        assert!(!conn_line(&c, true).contains("lcxid"));
        c.session = 0;
        assert_eq!(
            conn_line(&c, true),
            " /127.0.0.1:5000[1](queued=1,recved=7,sent=6)"
        );
    }

    #[test]
    fn recognises_commands_and_whitelist() {
        assert_eq!(command_of(*b"ruok"), Some("ruok"));
        assert_eq!(command_of([0, 0, 0, 45]), None);
        assert_eq!(
            render("dump", false, &Report::default()),
            "dump is not executed because it is not in the whitelist.\n"
        );
        assert_eq!(render("ruok", true, &Report::default()), "imok");
    }

    #[test]
    fn envi_carries_a_parsable_version() {
        let text = render("envi", true, &Report::default());
        let line = text
            .lines()
            .find(|l| l.starts_with("zookeeper.version="))
            .unwrap();
        assert!(line["zookeeper.version=".len()..].starts_with("3.8.4-"));
    }
}

/// AdminServer command names (`/commands/<name>`) and the four-letter word each one mirrors.
pub const ADMIN_COMMANDS: &[(&str, &str)] = &[
    ("ruok", "ruok"),
    ("server_stats", "srvr"),
    ("srvr", "srvr"),
    ("stats", "stat"),
    ("stat", "stat"),
    ("monitor", "mntr"),
    ("mntr", "mntr"),
    ("configuration", "conf"),
    ("conf", "conf"),
    ("config", "conf"),
    ("connections", "cons"),
    ("cons", "cons"),
    ("environment", "envi"),
    ("env", "envi"),
    ("envi", "envi"),
    ("watch_summary", "wchs"),
    ("wchs", "wchs"),
    ("watches", "wchc"),
    ("wchc", "wchc"),
    ("watches_by_path", "wchp"),
    ("wchp", "wchp"),
    ("dump", "dump"),
    ("is_read_only", "isro"),
    ("isro", "isro"),
    ("dirs", "dirs"),
    ("connection_stat_reset", "crst"),
    ("crst", "crst"),
    ("stat_reset", "srst"),
    ("srst", "srst"),
];

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The AdminServer's JSON for `/commands/<name>`: `None` for an unknown command. Fields mirror
/// ZooKeeper's names where the four-letter word has them; every reply has `command` and `error`.
pub fn render_admin(name: &str, r: &Report) -> Option<String> {
    let (_, word) = ADMIN_COMMANDS.iter().find(|(n, _)| *n == name)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let num = |v: u64| v.to_string();
    match *word {
        "ruok" | "crst" | "srst" => {}
        "isro" => fields.push(("read_only".into(), "false".into())),
        "srvr" | "stat" | "mntr" => {
            fields.push(("version".into(), json_str(ZK_VERSION)));
            fields.push(("server_state".into(), json_str(r.mode())));
            fields.push(("avg_latency".into(), format!("{:.4}", r.latency_avg_ms)));
            fields.push(("max_latency".into(), num(r.latency_max_ms)));
            fields.push(("min_latency".into(), num(r.latency_min_ms)));
            fields.push(("packets_received".into(), num(r.received)));
            fields.push(("packets_sent".into(), num(r.sent)));
            fields.push(("num_alive_connections".into(), r.conns.len().to_string()));
            fields.push(("outstanding_requests".into(), num(r.outstanding)));
            fields.push(("znode_count".into(), r.node_count.to_string()));
            fields.push(("watch_count".into(), r.watch_count.to_string()));
            fields.push(("ephemerals_count".into(), r.ephemerals_count.to_string()));
            fields.push(("approximate_data_size".into(), num(r.data_bytes)));
            fields.push(("last_zxid".into(), json_str(&format!("0x{:x}", r.zxid))));
        }
        "conf" => {
            for (k, v) in &r.conf {
                let val = if v.parse::<i64>().is_ok() {
                    v.clone()
                } else {
                    json_str(v)
                };
                fields.push((k.clone(), val));
            }
        }
        "cons" => {
            let list: Vec<String> = r
                .conns
                .iter()
                .map(|c| {
                    format!(
                        "{{\"remote_socket_address\":{},\"interest_ops\":1,\"outstanding_requests\":{},\"packets_received\":{},\"packets_sent\":{},\"session_id\":{},\"last_operation\":{},\"session_timeout\":{},\"last_cxid\":{},\"last_zxid\":{},\"last_response_time\":{},\"last_latency\":{},\"min_latency\":{},\"avg_latency\":{},\"max_latency\":{}}}",
                        json_str(&c.peer),
                        c.queued,
                        c.received,
                        c.sent,
                        json_str(&format!("0x{:x}", c.session)),
                        json_str(&c.last_op),
                        c.timeout_ms,
                        json_str(&format!("0x{:x}", c.last_cxid)),
                        json_str(&format!("0x{:x}", c.last_zxid)),
                        c.last_response_ms,
                        c.last_latency_ms,
                        c.min_latency_ms,
                        c.avg_latency_ms,
                        c.max_latency_ms
                    )
                })
                .collect();
            fields.push(("connections".into(), format!("[{}]", list.join(","))));
        }
        "envi" => {
            fields.push(("zookeeper.version".into(), json_str(ZK_VERSION)));
            fields.push(("os.name".into(), json_str(std::env::consts::OS)));
            fields.push(("os.arch".into(), json_str(std::env::consts::ARCH)));
        }
        "wchs" => {
            fields.push(("num_connections".into(), r.watching_sessions.to_string()));
            fields.push(("num_paths".into(), r.watched_paths.to_string()));
            fields.push(("num_total_watches".into(), r.watch_count.to_string()));
        }
        "wchc" => {
            let m: Vec<String> = r
                .watches_by_session
                .iter()
                .map(|(s, p)| {
                    let paths: Vec<String> = p.iter().map(|x| json_str(x)).collect();
                    format!("{}:[{}]", json_str(&format!("0x{s:x}")), paths.join(","))
                })
                .collect();
            fields.push((
                "session_id_to_watched_paths".into(),
                format!("{{{}}}", m.join(",")),
            ));
        }
        "wchp" => {
            let m: Vec<String> = r
                .watches_by_path
                .iter()
                .map(|(p, s)| {
                    let ids: Vec<String> =
                        s.iter().map(|x| json_str(&format!("0x{x:x}"))).collect();
                    format!("{}:[{}]", json_str(p), ids.join(","))
                })
                .collect();
            fields.push(("path_to_session_ids".into(), format!("{{{}}}", m.join(","))));
        }
        "dump" => {
            let m: Vec<String> = r
                .ephemerals
                .iter()
                .map(|(s, p)| {
                    let paths: Vec<String> = p.iter().map(|x| json_str(x)).collect();
                    format!("{}:[{}]", json_str(&format!("0x{s:x}")), paths.join(","))
                })
                .collect();
            fields.push(("ephemerals".into(), format!("{{{}}}", m.join(","))));
            let sessions: Vec<String> = r
                .sessions
                .iter()
                .map(|(s, _)| json_str(&format!("0x{s:x}")))
                .collect();
            fields.push(("sessions".into(), format!("[{}]", sessions.join(","))));
        }
        "dirs" => {
            fields.push(("datadir_size".into(), num(r.data_dir_bytes)));
            fields.push(("logdir_size".into(), num(r.log_dir_bytes)));
        }
        _ => {}
    }
    fields.push(("command".into(), json_str(name)));
    fields.push(("error".into(), "null".into()));
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    Some(format!("{{{}}}", body.join(",")))
}

/// How a Prometheus sample is typed in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricType {
    Gauge,
    Counter,
}

/// The Prometheus text exposition (format 0.0.4) of what the server knows, under the names
/// ZooKeeper's `PrometheusMetricsProvider` uses: ZooKeeperServer's registered gauges and the
/// `ServerMetrics` counters Kiln counts. Each metric is `# HELP name name`, `# TYPE`, one sample.
///
/// Only values Kiln measures appear. Not exported: `uptime`, `local_sessions`, file-descriptor
/// and client-response-size gauges, `quorum_size` and the other leader/learner metrics, and the
/// request-path summaries (`readlatency`, `updatelatency`, ...), which Kiln does not track.
pub fn render_prometheus(r: &Report) -> String {
    use MetricType::{Counter, Gauge};
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX).to_string();
    let rows: [(&str, MetricType, String); 13] = [
        ("avg_latency", Gauge, prometheus_float(r.latency_avg_ms)),
        ("max_latency", Gauge, r.latency_max_ms.to_string()),
        ("min_latency", Gauge, r.latency_min_ms.to_string()),
        ("packets_received", Gauge, r.received.to_string()),
        ("packets_sent", Gauge, r.sent.to_string()),
        ("num_alive_connections", Gauge, count(r.conns.len())),
        ("outstanding_requests", Gauge, r.outstanding.to_string()),
        ("znode_count", Gauge, count(r.node_count)),
        ("watch_count", Gauge, count(r.watch_count)),
        ("ephemerals_count", Gauge, count(r.ephemerals_count)),
        ("approximate_data_size", Gauge, r.data_bytes.to_string()),
        ("global_sessions", Gauge, count(r.sessions.len())),
        (
            "digest_mismatches_count",
            Counter,
            r.digest_mismatches.to_string(),
        ),
    ];
    let mut out = String::with_capacity(rows.len() * 96);
    for (name, kind, value) in rows {
        let kind = match kind {
            Gauge => "gauge",
            Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {name} {name}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// A sample value as the exposition format spells it (`NaN`, `+Inf`, `-Inf` or a Go float).
fn prometheus_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod prometheus_tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// A strict reader of the exposition lines `render_prometheus` writes: returns name -> (type,
    /// value) and fails on a malformed line, a repeated name, or a sample before its `# TYPE`.
    fn parse_exposition(text: &str) -> HashMap<String, (String, f64)> {
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut samples: HashMap<String, (String, f64)> = HashMap::new();
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').expect("HELP has a name and text");
                assert!(valid_name(name), "{line}");
                assert!(helped.insert(name.to_string()), "second HELP: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a name and type");
                assert!(valid_name(name), "{line}");
                assert!(
                    ["gauge", "counter", "summary", "histogram", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(!samples.contains_key(name), "TYPE after its sample: {line}");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "second TYPE: {line}"
                );
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
                let (name, value) = line.split_once(' ').expect("sample has a name and value");
                assert!(valid_name(name), "{line}");
                let value: f64 = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().expect("sample value is a float"),
                };
                let kind = types.get(name).expect("TYPE before the sample").clone();
                assert!(
                    samples.insert(name.to_string(), (kind, value)).is_none(),
                    "second sample: {line}"
                );
            }
        }
        assert_eq!(types.len(), samples.len(), "every TYPE has its sample");
        assert_eq!(helped.len(), samples.len(), "every sample has its HELP");
        samples
    }

    #[test]
    fn prometheus_text_is_well_formed_with_unique_names() {
        let r = Report {
            latency_min_ms: 1,
            latency_avg_ms: 2.5,
            latency_max_ms: 9,
            received: 40,
            sent: 39,
            outstanding: 2,
            node_count: 7,
            watch_count: 3,
            ephemerals_count: 1,
            data_bytes: 123,
            conns: vec![ConnInfo::default(), ConnInfo::default()],
            sessions: vec![(1, 30000), (2, 30000), (3, 30000)],
            digest_mismatches: 4,
            ..Report::default()
        };
        let m = parse_exposition(&render_prometheus(&r));
        let get = |n: &str| m.get(n).unwrap_or_else(|| panic!("{n} missing")).clone();
        assert_eq!(get("znode_count"), ("gauge".into(), 7.0));
        assert_eq!(get("watch_count"), ("gauge".into(), 3.0));
        assert_eq!(get("ephemerals_count"), ("gauge".into(), 1.0));
        assert_eq!(get("approximate_data_size"), ("gauge".into(), 123.0));
        assert_eq!(get("num_alive_connections"), ("gauge".into(), 2.0));
        assert_eq!(get("global_sessions"), ("gauge".into(), 3.0));
        assert_eq!(get("outstanding_requests"), ("gauge".into(), 2.0));
        assert_eq!(get("packets_received"), ("gauge".into(), 40.0));
        assert_eq!(get("packets_sent"), ("gauge".into(), 39.0));
        assert_eq!(get("avg_latency"), ("gauge".into(), 2.5));
        assert_eq!(get("min_latency"), ("gauge".into(), 1.0));
        assert_eq!(get("max_latency"), ("gauge".into(), 9.0));
        assert_eq!(get("digest_mismatches_count"), ("counter".into(), 4.0));
        assert_eq!(m.len(), 13);
    }

    #[test]
    fn prometheus_text_of_an_empty_server_has_every_metric_at_zero() {
        let m = parse_exposition(&render_prometheus(&Report::default()));
        assert_eq!(m.len(), 13);
        assert!(m.values().all(|(_, v)| *v == 0.0), "{m:?}");
    }

    #[test]
    fn special_floats_use_the_exposition_spelling() {
        assert_eq!(prometheus_float(f64::NAN), "NaN");
        assert_eq!(prometheus_float(f64::INFINITY), "+Inf");
        assert_eq!(prometheus_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(prometheus_float(0.25), "0.25");
    }
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    #[test]
    fn admin_json_has_command_and_error() {
        assert_eq!(
            render_admin("ruok", &Report::default()).unwrap(),
            "{\"command\":\"ruok\",\"error\":null}"
        );
        let mntr = render_admin("monitor", &Report::default()).unwrap();
        assert!(mntr.contains("\"server_state\":\"standalone\""), "{mntr}");
        assert!(render_admin("nope", &Report::default()).is_none());
    }
}
