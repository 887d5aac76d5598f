//! The report's target checks: each workload file may name targets (`target_ratio`: Kiln's
//! throughput over each reference server's with the same client, at least; `target_p99_ratio`:
//! Kiln's p99 over the reference's, at most; `target_min_ops`: Kiln's throughput with Kiln's load
//! generator, at least; `target_cpu_ratio`: Kiln's server CPU per op over the reference's, same
//! client, at most), and every run checks idle RSS against [`IDLE_RSS_RATIO`]. A pure function
//! of the workloads and the measured rows: each check says met or missed, by how much, and for a
//! miss what the measurements point at as the limit.

use serde::Serialize;

use crate::compare::Row;
use crate::error::{LoadError, Result};
use crate::workload::Workload;

/// Kiln's idle RSS over each reference server's, at most.
pub const IDLE_RSS_RATIO: f64 = 0.1;

/// A core counts as saturated at this share of it.
const SATURATED: f64 = 0.85;

/// One target checked against one reference server.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub workload: String,
    pub client: String,
    /// The reference server compared against (empty for an absolute target).
    pub reference: String,
    /// What is compared, e.g. "throughput ratio".
    pub what: String,
    pub measured: f64,
    pub target: f64,
    /// true when the target is a floor (measured >= target), false for a ceiling.
    pub at_least: bool,
    pub met: bool,
    /// For a miss, what the measurements point at.
    pub limit: String,
}

impl Check {
    /// "12% short" / "2.1x over" for a miss, "" when met.
    pub fn by(&self) -> String {
        if self.met {
            String::new()
        } else if self.at_least {
            let short = (1.0 - self.measured / self.target.max(f64::MIN_POSITIVE)) * 100.0;
            if short < 1.0 {
                format!("{short:.1}% short")
            } else {
                format!("{short:.0}% short")
            }
        } else {
            format!(
                "{:.1}x over",
                self.measured / self.target.max(f64::MIN_POSITIVE)
            )
        }
    }
}

/// The workload keys that name targets.
const TARGET_KEYS: [&str; 4] = [
    "target_ratio",
    "target_p99_ratio",
    "target_min_ops",
    "target_cpu_ratio",
];

/// A target's value: a finite number above 0.
fn parse_target(v: &str) -> Option<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// Refuses a target that is not a finite number above 0, naming the file, key and value.
pub fn validate(workloads: &[Workload]) -> Result<()> {
    for w in workloads {
        for key in TARGET_KEYS {
            if let Some(v) = w.get(key)
                && parse_target(v).is_none()
            {
                return Err(LoadError::Config(format!(
                    "{}: {key} = {v:?} is not a number above 0",
                    w.path.display()
                )));
            }
        }
    }
    Ok(())
}

/// A target the workload names ([`validate`] has refused bad values before the run).
fn target(w: &Workload, key: &str) -> Option<f64> {
    w.get(key).and_then(parse_target)
}

/// Whether the workload's writes wait for an fsync on the server.
fn waits_for_fsync(w: &Workload) -> bool {
    w.get("fsync").is_some()
        || (w.get("system") == Some("zk")
            && w.get("mix")
                .is_some_and(|m| m.contains("set") || m.contains("create") || m.contains("delete")))
}

/// What the measurements of Kiln's row point at as the limit of a missed target.
fn limit_of(w: &Workload, kiln: &Row) -> String {
    let server = kiln.server_cpu_cores;
    let client = kiln.client_cpu_cores;
    let cores = |c: Option<f64>| c.map_or_else(|| "not measured".to_owned(), |c| format!("{c:.2}"));
    match client {
        Some(c) if c >= SATURATED && server < SATURATED => format!(
            "client: the client used {c:.2} of its core, Kiln's server {server:.2} of its core"
        ),
        _ if server >= SATURATED => format!(
            "server CPU: Kiln's server used {server:.2} of its core (client {})",
            cores(client)
        ),
        _ if waits_for_fsync(w) => format!(
            "fsync: neither core saturated (server {server:.2}, client {}); writes wait for the disk",
            cores(client)
        ),
        _ => format!(
            "round trips: neither core saturated (server {server:.2}, client {}); loopback and requests in flight set the rate",
            cores(client)
        ),
    }
}

fn measured_rows<'a>(rows: &'a [Row], workload: &str) -> impl Iterator<Item = &'a Row> {
    rows.iter()
        .filter(move |r| r.workload == workload && r.ok && !r.client.contains("peak probe"))
}

/// Every check the rows allow.
pub fn check(workloads: &[Workload], rows: &[Row]) -> Vec<Check> {
    let mut out = Vec::new();
    for w in workloads {
        let ratio = target(w, "target_ratio");
        let p99 = target(w, "target_p99_ratio");
        let min_ops = target(w, "target_min_ops");
        let cpu = target(w, "target_cpu_ratio");
        for kiln in measured_rows(rows, &w.name).filter(|r| r.server == "kiln") {
            let limit = limit_of(w, kiln);
            if let Some(t) = min_ops
                && kiln.client == "kiln-load"
            {
                let met = kiln.throughput_ops >= t;
                out.push(Check {
                    workload: w.name.clone(),
                    client: kiln.client.clone(),
                    reference: String::new(),
                    what: format!("{} per second", kiln.unit),
                    measured: kiln.throughput_ops,
                    target: t,
                    at_least: true,
                    met,
                    limit: if met { String::new() } else { limit.clone() },
                });
            }
            let refs = measured_rows(rows, &w.name)
                .filter(|r| r.server != "kiln" && r.client == kiln.client);
            for reference in refs {
                if let Some(t) = ratio
                    && reference.throughput_ops > 0.0
                {
                    let m = kiln.throughput_ops / reference.throughput_ops;
                    out.push(Check {
                        workload: w.name.clone(),
                        client: kiln.client.clone(),
                        reference: reference.server.clone(),
                        what: "throughput ratio".into(),
                        measured: m,
                        target: t,
                        at_least: true,
                        met: m >= t,
                        limit: if m >= t { String::new() } else { limit.clone() },
                    });
                }
                let (kcpu, _) = kiln.reported_cpu_us_per_op();
                let (rcpu, _) = reference.reported_cpu_us_per_op();
                if let Some(t) = cpu
                    && kcpu > 0.0
                    && rcpu > 0.0
                {
                    let m = kcpu / rcpu;
                    out.push(Check {
                        workload: w.name.clone(),
                        client: kiln.client.clone(),
                        reference: reference.server.clone(),
                        what: "server CPU per op ratio".into(),
                        measured: m,
                        target: t,
                        at_least: false,
                        met: m <= t,
                        limit: if m <= t {
                            String::new()
                        } else {
                            format!(
                                "server CPU: Kiln {kcpu:.3} us/op, {} {rcpu:.3}",
                                reference.server
                            )
                        },
                    });
                }
                if let Some(t) = p99
                    && reference.latency_us.p99 > 0.0
                    && kiln.latency_us.p99 > 0.0
                {
                    let m = kiln.latency_us.p99 / reference.latency_us.p99;
                    out.push(Check {
                        workload: w.name.clone(),
                        client: kiln.client.clone(),
                        reference: reference.server.clone(),
                        what: "p99 ratio".into(),
                        measured: m,
                        target: t,
                        at_least: false,
                        met: m <= t,
                        limit: if m <= t { String::new() } else { limit.clone() },
                    });
                }
            }
        }
    }
    // Idle RSS over the whole run: each reference server's smallest against Kiln's largest in
    // the workloads that reference server ran (Kiln serving the same protocol).
    let mut servers: Vec<&str> = rows
        .iter()
        .map(|r| r.server.as_str())
        .filter(|s| *s != "kiln")
        .collect();
    servers.sort_unstable();
    servers.dedup();
    for s in servers {
        let ran = |w: &str| rows.iter().any(|r| r.server == s && r.workload == w);
        let idle = |server: &str, pick: fn(f64, f64) -> f64| {
            rows.iter()
                .filter(|r| r.server == server && r.ok && r.rss_idle_mb > 0.0 && ran(&r.workload))
                .map(|r| r.rss_idle_mb)
                .reduce(pick)
        };
        if let (Some(kiln), Some(reference)) = (idle("kiln", f64::max), idle(s, f64::min)) {
            let m = kiln / reference;
            out.push(Check {
                workload: "(every workload it ran)".into(),
                client: String::new(),
                reference: s.to_owned(),
                what: "idle RSS ratio".into(),
                measured: m,
                target: IDLE_RSS_RATIO,
                at_least: false,
                met: m <= IDLE_RSS_RATIO,
                limit: if m <= IDLE_RSS_RATIO {
                    String::new()
                } else {
                    format!("memory: Kiln {kiln:.0} MB idle, {s} {reference:.0} MB")
                },
            });
        }
    }
    out
}

fn number(v: f64) -> String {
    if v >= 1000.0 {
        crate::stats::format_count(v)
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The report's "Targets" section (empty when nothing was checked).
pub fn markdown(checks: &[Check]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let met = checks.iter().filter(|c| c.met).count();
    let mut md = format!(
        "## Targets\n\n{met} of {} checks met. Ratios are Kiln / reference, same client, same \
         run; a miss says by how much and what this run's measurements point at as the limit \
         (a core at {:.0}% or more of its time counts as saturated).\n\n\
         | workload | client | vs | what | measured | target | result | what limits it |\n\
         |---|---|---|---|---:|---:|---|---|\n",
        checks.len(),
        SATURATED * 100.0
    );
    for c in checks {
        let bound = if c.at_least { ">=" } else { "<=" };
        let result = if c.met {
            "met".to_owned()
        } else {
            format!("missed, {}", c.by())
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {bound} {} | {result} | {} |\n",
            c.workload,
            c.client,
            c.reference,
            c.what,
            number(c.measured),
            number(c.target),
            c.limit
        ));
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn wl(name: &str, text: &str) -> Workload {
        Workload::parse(name, Path::new("w.conf"), text, false).unwrap()
    }

    fn row(workload: &str, server: &str, client: &str, ops: f64, p99: f64) -> Row {
        let mut r = Row {
            workload: workload.into(),
            server: server.into(),
            client: client.into(),
            unit: "records".into(),
            throughput_ops: ops,
            ok: true,
            rss_idle_mb: if server == "kiln" { 6.0 } else { 400.0 },
            server_cpu_cores: 0.4,
            client_cpu_cores: Some(0.97),
            ..Default::default()
        };
        r.latency_us.p99 = p99;
        r
    }

    #[test]
    fn ratios_absolute_rates_and_idle_rss_are_checked_with_the_limit_of_a_miss() {
        let w = wl(
            "produce",
            "system = kafka\ntarget_ratio = 3\ntarget_min_ops = 1500000\ntarget_p99_ratio = 0.2\n",
        );
        let mut kiln_load = row("produce", "kiln", "kiln-load", 2_000_000.0, 1000.0);
        kiln_load.client_cpu_cores = Some(0.5);
        kiln_load.server_cpu_cores = 0.9;
        let rows = vec![
            kiln_load,
            row("produce", "kiln", "ProducerPerformance", 300_000.0, 8000.0),
            row("produce", "kafka-4", "kiln-load", 400_000.0, 10_000.0),
            row(
                "produce",
                "kafka-4",
                "ProducerPerformance",
                250_000.0,
                9000.0,
            ),
            row("produce", "kafka-4", "kiln-load (peak probe)", 1.0, 1.0),
        ];
        let checks = check(&[w], &rows);
        let find = |client: &str, what: &str| {
            checks
                .iter()
                .find(|c| c.client == client && c.what == what)
                .unwrap_or_else(|| panic!("{client} {what}: {checks:?}"))
        };
        assert!(find("kiln-load", "records per second").met);
        let r = find("kiln-load", "throughput ratio");
        assert!(r.met && (r.measured - 5.0).abs() < 1e-9 && r.reference == "kafka-4");
        assert!(find("kiln-load", "p99 ratio").met);
        // The Java client: 1.2x, missed by 60%, and the client's core was the one saturated.
        let r = find("ProducerPerformance", "throughput ratio");
        assert!(!r.met);
        assert_eq!(r.by(), "60% short");
        let close = Check {
            measured: 1.992,
            target: 2.0,
            ..r.clone()
        };
        assert_eq!(close.by(), "0.4% short");
        assert!(
            r.limit.starts_with("client: the client used 0.97"),
            "{}",
            r.limit
        );
        let r = find("ProducerPerformance", "p99 ratio");
        assert!(!r.met && r.by() == "4.4x over", "{r:?}");
        // No absolute-rate check for another client; the peak probe is never compared.
        assert!(
            !checks
                .iter()
                .any(|c| c.client == "ProducerPerformance" && c.what == "records per second")
        );
        assert!(!checks.iter().any(|c| c.client.contains("peak probe")));
        let rss = checks.iter().find(|c| c.what == "idle RSS ratio").unwrap();
        assert!(rss.met && rss.reference == "kafka-4");
        let md = markdown(&checks);
        assert!(md.contains("missed, 60% short"), "{md}");
        assert!(md.starts_with("## Targets"));
    }

    #[test]
    fn a_bad_target_is_refused_naming_file_key_and_value() {
        assert!(validate(&[wl("w", "target_ratio = 3\ntarget_min_ops = 1500000\n")]).is_ok());
        for bad in ["abc", "0", "-2", "inf", "NaN", ""] {
            let w = wl("w", &format!("target_p99_ratio = {bad}\n"));
            let e = validate(&[w]).unwrap_err().to_string();
            assert!(
                e.contains("w.conf")
                    && e.contains("target_p99_ratio")
                    && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_limit_names_the_saturated_core_fsync_or_round_trips() {
        let zk = wl("zk-write", "system = zk\nmix = set=100\n");
        let mut r = row("zk-write", "kiln", "kiln-load", 1.0, 1.0);
        r.server_cpu_cores = 0.95;
        r.client_cpu_cores = Some(0.5);
        assert!(limit_of(&zk, &r).starts_with("server CPU"));
        r.server_cpu_cores = 0.5;
        assert!(limit_of(&zk, &r).starts_with("fsync"));
        let reads = wl("zk-read", "system = zk\nmix = get=100\n");
        r.client_cpu_cores = None;
        let l = limit_of(&reads, &r);
        assert!(
            l.starts_with("round trips") && l.contains("not measured"),
            "{l}"
        );
        assert!(markdown(&[]).is_empty());
    }
}
