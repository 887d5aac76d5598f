//! The neutral fast clients of `kiln bench compare`, written by neither Kiln nor Apache (or, for
//! ZooKeeper, Apache's own C client library under a thin driver), installed by
//! `bench/tests/setup.sh` into `.peers/bench/`:
//!
//! - `rdkafka_performance`: librdkafka's benchmark tool, built from Debian's librdkafka source
//!   package against the packaged library (produce and consume);
//! - `zkload`: `bench/reference/zk-c/zkload.c` on Apache ZooKeeper's C client library
//!   (`libzookeeper_st`, asynchronous API, one thread running the library's event loop over
//!   every session), the same options and result line as the Java
//!   client's ZkLoad.
//!
//! Also the generator parity check: with identical settings on the same reference server in the
//! same run, Kiln's load generator must reach [`PARITY_MIN`] of the neutral client's rate, or
//! every ratio of that workload measured with Kiln's load generator is marked
//! "generator-limited" in the report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compare::Row;
use crate::error::{LoadError, Result};
use crate::stats::{Percentiles, RunResult};
use crate::workload::Workload;

/// The neutral Kafka client's name in the report.
pub const RDKAFKA: &str = "rdkafka_performance";
/// The neutral ZooKeeper client's name in the report.
pub const ZK_C: &str = "zookeeper-c";
/// Kiln's load generator's name in the report.
pub const KILN_LOAD: &str = "kiln-load";

/// Kiln's load generator's rate over the neutral client's, at least, on the reference server.
pub const PARITY_MIN: f64 = 0.95;

/// `.peers/bench/<name>`, or an error that says how to install it.
pub fn tool(root: &Path, name: &str) -> Result<PathBuf> {
    let p = root.join(".peers/bench").join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(LoadError::Config(format!(
            "{} is missing: run `bash bench/tests/setup.sh` (or pass --no-neutral-clients)",
            p.display()
        )))
    }
}

/// `rdkafka_performance -P` with the workload's producer settings: record size, acks, linger,
/// batch size, requests in flight per connection, compression; `n` records as fast as possible
/// (or at the workload's rate). `latency_file`: per-record send -> delivery report latency,
/// one line per record in microseconds (`-l -A`).
pub fn rdkafka_produce_args(
    w: &Workload,
    addr: &str,
    topic: &str,
    n: u64,
    latency_file: Option<&Path>,
) -> Result<Vec<String>> {
    let mut a: Vec<String> = vec![
        "-P".into(),
        "-t".into(),
        topic.into(),
        "-b".into(),
        addr.into(),
        "-s".into(),
        w.str_or("record_size", "100"),
        "-c".into(),
        n.to_string(),
        "-a".into(),
        w.str_or("acks", "1"),
        "-q".into(),
    ];
    for (key, prop, default) in [
        ("linger_ms", "linger.ms", "5"),
        ("batch_size", "batch.size", "16384"),
        ("in_flight", "max.in.flight", "5"),
        ("compression", "compression.codec", "none"),
    ] {
        a.push("-X".into());
        a.push(format!("{prop}={}", w.str_or(key, default)));
    }
    // A batch is bounded by bytes (batch.size) as in Kiln's load generator, not by librdkafka's
    // default of 10,000 records.
    a.extend(["-X".into(), "batch.num.messages=1000000".into()]);
    let rate: f64 = w.num("rate", 0.0)?;
    if rate > 0.0 {
        a.extend(["-r".into(), format!("{}", rate.round() as u64)]);
    }
    if let Some(f) = latency_file {
        a.extend(["-l".into(), "-A".into(), f.display().to_string()]);
    }
    Ok(a)
}

/// `rdkafka_performance -C`: every partition from the beginning, `n` records, exit at the end.
pub fn rdkafka_consume_args(addr: &str, topic: &str, partitions: i32, n: u64) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-C".into(),
        "-t".into(),
        topic.into(),
        "-b".into(),
        addr.into(),
        "-o".into(),
        "beginning".into(),
        "-e".into(),
        "-c".into(),
        n.to_string(),
        "-q".into(),
    ];
    for p in 0..partitions.max(1) {
        a.extend(["-p".into(), p.to_string()]);
    }
    a
}

/// The number just before `suffix` in `line` (e.g. "938846" in "938846 msgs/s").
fn before(line: &str, suffix: &str) -> Option<f64> {
    let idx = line.find(suffix)?;
    line.get(..idx)?
        .split([' ', '(', ','])
        .rev()
        .find(|s| !s.is_empty())?
        .trim_end_matches("ms")
        .parse()
        .ok()
}

/// The producer's summary: "% N messages produced (B bytes), D delivered (offset O, F failed)
/// in Tms: R msgs/s and M MB/s, ...". The rate is delivered records over the whole run.
pub fn parse_rdkafka_produce(out: &str) -> Option<RunResult> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" messages produced (") && l.contains(" msgs/s"))?;
    let delivered = before(line, " delivered")? as u64;
    let failed = before(line, " failed)").unwrap_or(0.0) as u64;
    let ms = before(line, "ms:")?;
    Some(RunResult {
        workload: "kafka-produce".into(),
        unit: "records".into(),
        ops: delivered,
        errors: failed,
        duration_s: ms / 1e3,
        throughput_ops: before(line, " msgs/s")?,
        throughput_mb_s: before(line, " MB/s")?,
        latency_of: "none (rdkafka_performance without -l)".into(),
        ..Default::default()
    })
}

/// The consumer's summary: "% N messages (B bytes) consumed in Tms: R msgs/s (M MB/s)".
pub fn parse_rdkafka_consume(out: &str) -> Option<RunResult> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" consumed in ") && l.contains(" msgs/s"))?;
    Some(RunResult {
        workload: "kafka-consume".into(),
        unit: "records".into(),
        ops: before(line, " messages (")? as u64,
        duration_s: before(line, "ms:")? / 1e3,
        throughput_ops: before(line, " msgs/s")?,
        throughput_mb_s: before(line, " MB/s)")?,
        latency_of: "none (rdkafka_performance)".into(),
        ..Default::default()
    })
}

/// Percentiles of `rdkafka_performance -l -A`'s file: one latency per line, microseconds.
pub fn latency_file_percentiles(text: &str) -> Option<Percentiles> {
    let mut v: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v.get(i).copied().unwrap_or(0.0)
    };
    Some(Percentiles {
        count: v.len() as u64,
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        p999: pct(0.999),
        p9999: pct(0.9999),
        max: v.last().copied().unwrap_or(0.0),
    })
}

/// One parity check: Kiln's load generator against the neutral client, same workload, same
/// reference server, same run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Parity {
    pub workload: String,
    pub server: String,
    pub neutral_client: String,
    pub kiln_load_ops: f64,
    pub neutral_ops: f64,
    pub ratio: f64,
    pub ok: bool,
}

/// Every parity check the rows allow: for each workload and reference server (not Kiln) with
/// both a Kiln load generator row and a neutral client row.
pub fn parity(rows: &[Row]) -> Vec<Parity> {
    let mut out = Vec::new();
    for neutral in rows
        .iter()
        .filter(|r| r.ok && r.server != "kiln" && (r.client == RDKAFKA || r.client == ZK_C))
    {
        let Some(kl) = rows.iter().find(|r| {
            r.ok && r.workload == neutral.workload
                && r.server == neutral.server
                && r.client == KILN_LOAD
        }) else {
            continue;
        };
        if neutral.throughput_ops <= 0.0 {
            continue;
        }
        let ratio = kl.throughput_ops / neutral.throughput_ops;
        out.push(Parity {
            workload: neutral.workload.clone(),
            server: neutral.server.clone(),
            neutral_client: neutral.client.clone(),
            kiln_load_ops: kl.throughput_ops,
            neutral_ops: neutral.throughput_ops,
            ratio,
            ok: ratio >= PARITY_MIN,
        });
    }
    out
}

/// Whether Kiln's load generator was slower than the neutral client on some reference server
/// of this workload (its ratios are then "generator-limited").
pub fn generator_limited(checks: &[Parity], workload: &str) -> bool {
    checks.iter().any(|p| p.workload == workload && !p.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rdkafka_performance_summaries() {
        let out = "% 19466 backpressures for 3000000 produce calls: 0.649% backpressure rate\n\
                   % 3000000 messages produced (300000000 bytes), 3000000 delivered (offset 853981, 0 failed) in 9806ms: 305916 msgs/s and 30.59 MB/s, 19466 produce failures, 0 in queue, no compression\n";
        let r = parse_rdkafka_produce(out).unwrap();
        assert_eq!(r.ops, 3_000_000);
        assert_eq!(r.errors, 0);
        assert_eq!(r.throughput_ops, 305_916.0);
        assert_eq!(r.throughput_mb_s, 30.59);
        assert!((r.duration_s - 9.806).abs() < 1e-9);
        let c = "% 3000000 messages (300000000 bytes) consumed in 1234ms: 2431118 msgs/s (243.11 MB/s)\n";
        let r = parse_rdkafka_consume(c).unwrap();
        assert_eq!(r.ops, 3_000_000);
        assert_eq!(r.throughput_ops, 2_431_118.0);
        assert_eq!(r.throughput_mb_s, 243.11);
        assert!(parse_rdkafka_produce("nothing").is_none());
        assert!(parse_rdkafka_consume(out).is_none());
    }

    #[test]
    fn latency_file_gives_percentiles() {
        let text: String = (1..=100).map(|i| format!("{i}\n")).collect();
        let p = latency_file_percentiles(&text).unwrap();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
        assert!(latency_file_percentiles("").is_none());
    }

    #[test]
    fn parity_marks_a_slow_generator() {
        let row = |server: &str, client: &str, t: f64| Row {
            workload: "w".into(),
            server: server.into(),
            client: client.into(),
            throughput_ops: t,
            ok: true,
            ..Default::default()
        };
        let rows = [
            row("kiln", KILN_LOAD, 5.0),
            row("kiln", RDKAFKA, 3.0),
            row("kafka-4", KILN_LOAD, 96.0),
            row("kafka-4", RDKAFKA, 100.0),
            row("kafka-3.9", KILN_LOAD, 90.0),
            row("kafka-3.9", RDKAFKA, 100.0),
        ];
        let p = parity(&rows);
        assert_eq!(p.len(), 2);
        assert!(p[0].ok && !p[1].ok);
        assert!(generator_limited(&p, "w"));
        assert!(!generator_limited(&p[..1], "w"));
    }
}
