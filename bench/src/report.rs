//! The comparison report: `results.json`, `report.md` and SVG charts (throughput bars per
//! workload, latency percentile curves per workload).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::compare::{CompareConfig, CpuBasis, Row};
use crate::error::{LoadError, Result};

/// The machine description, read when a run starts (its load average is the machine's before
/// the run loads it).
pub(crate) fn machine() -> String {
    let cmd = |c: &str, args: &[&str]| {
        std::process::Command::new(c)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let lscpu = cmd("lscpu", &[]);
    let keep = [
        "Architecture",
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "L3 cache",
        "Hypervisor vendor",
    ];
    let cpu: Vec<&str> = lscpu
        .lines()
        .filter(|l| {
            keep.iter()
                .any(|k| l.trim_start().starts_with(&format!("{k}:")))
        })
        .collect();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{}\n{}\n{}\nkernel: {}\ndisk (/tmp): {}\nload average at start: {}",
        cpu.join("\n"),
        mem,
        guest_memory(),
        cmd("uname", &["-srm"]),
        cmd(
            "sh",
            &[
                "-c",
                "df -h /tmp | tail -1; lsblk -d -o NAME,ROTA,SIZE,MODEL 2>/dev/null | head -5 | tr '\\n' ';'"
            ]
        ),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    )
}

/// Where the kernel reports free pages to a hypervisor (virtio balloon free page reporting).
const PAGE_REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// The buddy allocator's largest block order on Linux x86-64 (`MAX_PAGE_ORDER`); a reporting
/// order above it reports nothing.
const MAX_PAGE_ORDER: u32 = 10;

/// One line on the guest's free memory: whether freed memory goes back to the hypervisor, which
/// makes every first touch of it (page cache included) fault on the host. Measured on the
/// benchmark VM: 216-457 MB/s for a first touch of reported memory, 1.2-1.6 GB/s when it stayed
/// backed (see `bench/vm-memory.sh`).
pub(crate) fn guest_memory() -> String {
    describe_guest_memory(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        std::fs::read_to_string(PAGE_REPORTING_ORDER)
            .ok()
            .as_deref(),
    )
}

/// [`guest_memory`]'s line from `/proc/meminfo`'s text and the reporting order's file, if any.
fn describe_guest_memory(meminfo: &str, order: Option<&str>) -> String {
    let free_kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemFree:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let reporting = match order.map(str::trim) {
        None => "no free page reporting".to_owned(),
        Some(v) => match v.parse::<u32>() {
            Ok(order) if order > MAX_PAGE_ORDER => {
                format!("free page reporting off (order {order})")
            }
            Ok(order) => format!(
                "free page reporting ON (order {order}): freed memory returns to the host, \
                 first touches fault there (bench/vm-memory.sh)"
            ),
            Err(_) => format!("free page reporting order {v:?}"),
        },
    };
    format!("guest memory: MemFree {} MiB, {reporting}", free_kb / 1024)
}

/// How the report's CPU columns were measured.
const CPU_LEGEND: &str = "Server CPU us/op is the server's user+system time per op. A figure marked \
     `w` covers the client's measured window only: the client (Kiln's load generator, or the Java \
     ZooKeeper client) read the server's `/proc/<pid>/stat` when its measured window began and \
     ended. A figure marked `r` covers the whole client run, read by the harness before and after \
     the client process (its connection set-up and warm-up included); the harness uses it when the \
     client did not report a window figure. `results.json` keeps both \
     (`server_cpu_us_per_op_window`, `server_cpu_us_per_op`). Server cores is CPU time over the \
     whole client run divided by its wall time; client cores the same for the client process (the \
     harness's reaped-children CPU time across it; its JVM start-up included for Java tools).";

/// The CPU column's text: the figure and which span it covers (see [`CPU_LEGEND`]).
fn cpu_cell(r: &Row) -> String {
    let (cpu, basis) = r.reported_cpu_us_per_op();
    let mark = match basis {
        CpuBasis::Window => "w",
        CpuBasis::Run => "r",
    };
    format!("{cpu:.2} {mark}")
}

/// What the report says about a workload's unmeasured server warm-up pass: how it loaded the
/// server, for how long it was configured and how long it took on each server.
fn warmup_text(cfg: &CompareConfig, workload: &str, rows: &[Row]) -> Option<String> {
    let w = cfg.workloads.iter().find(|x| x.name == workload);
    let mut took: Vec<String> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.workload == workload && r.server_warmup_s > 0.0)
    {
        let probe = r.client.contains("peak probe");
        let t = format!(
            "{}{} {:.1} s",
            r.server,
            if probe { " (peak probe)" } else { "" },
            r.server_warmup_s
        );
        if !took.contains(&t) {
            took.push(t);
        }
    }
    let configured = w.and_then(|w| crate::compare::server_warmup_s(cfg, w).ok());
    let zk = w.is_some_and(|w| w.get("system") == Some("zk"));
    if took.is_empty() {
        return (configured == Some(0.0)).then(|| {
            "No server warm-up pass ran (`server_warmup_s = 0`): on a freshly started JVM server \
             the first client's row includes the server's JIT warm-up."
                .to_owned()
        });
    }
    let how = if zk {
        "the workload's own operations"
    } else {
        "produce with the workload's producer settings to a topic of its own, then consume \
         everything produced back; the measured topics are untouched"
    };
    let secs = configured.map_or_else(String::new, |s| format!(" for {s} s"));
    Some(format!(
        "Server warm-up: every server got an unmeasured pass of Kiln's load generator{secs} \
         after it started and before the measured clients ({how}), so a JVM server's JIT \
         compilation is not charged to the first client. Wall time of the pass: {}.",
        took.join(", ")
    ))
}

/// A core counts as saturated at this share of it (as in the Targets section).
const SATURATED: f64 = 0.85;

/// How many cores a taskset list names ("1", "0-3", "1,3,5-6"); at least 1.
pub(crate) fn core_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.trim().split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// What limited a row: its client's cores ("client-bound"), its server's ("server-bound"), or
/// neither ("").
pub(crate) fn bound(cfg: &CompareConfig, r: &Row) -> &'static str {
    let client_cores = core_count(&cfg.client_core) as f64;
    let server_cores = core_count(&cfg.server_core) as f64;
    match r.client_cpu_cores {
        Some(c)
            if c >= SATURATED * client_cores && r.server_cpu_cores < SATURATED * server_cores =>
        {
            "client-bound"
        }
        _ if r.server_cpu_cores >= SATURATED * server_cores => "server-bound",
        _ => "",
    }
}

/// The rows of the efficiency table: measured runs with a CPU figure, peak probes left out.
fn efficiency_rows(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter().filter(|r| {
        r.ok && r.client != "-"
            && !r.client.contains("peak probe")
            && r.reported_cpu_us_per_op().0 > 0.0
            && r.throughput_ops > 0.0
    })
}

/// The efficiency figures of `results.json`: per row, server CPU-seconds per million ops, the
/// implied ops per second of one server core, client and server cores used, what bound it.
fn efficiency(
    cfg: &CompareConfig,
    rows: &[Row],
    parity: &[crate::neutral::Parity],
) -> serde_json::Value {
    let v: Vec<serde_json::Value> = efficiency_rows(rows)
        .map(|r| {
            let (cpu, _) = r.reported_cpu_us_per_op();
            serde_json::json!({
                "workload": r.workload, "server": r.server, "client": r.client,
                "server_cpu_s_per_million_ops": cpu,
                "implied_ops_per_server_core": 1e6 / cpu,
                "server_cores": r.server_cpu_cores, "client_cores": r.client_cpu_cores,
                "throughput_ops": r.throughput_ops, "bound": bound(cfg, r),
                "generator_limited": r.client == crate::neutral::KILN_LOAD
                    && crate::neutral::generator_limited(parity, &r.workload),
            })
        })
        .collect();
    serde_json::json!(v)
}

/// The report's headline: efficiency per server core first, then throughput ratios with the
/// client named, then the generator parity checks.
fn efficiency_markdown(
    cfg: &CompareConfig,
    rows: &[Row],
    parity: &[crate::neutral::Parity],
) -> String {
    let mut md = String::new();
    let ccores = core_count(&cfg.client_core);
    let scores = core_count(&cfg.server_core);
    let _ = writeln!(
        md,
        "## Efficiency per server core\n\n\
         Server CPU-seconds per million operations (the server's user+system CPU per op, as in the CPU column of each workload's table: `w` measured window, `r` whole client run), and the rate one server core would sustain at that cost (10^6 / CPU-s per M ops). This is the figure a client cannot cap: on this machine the server has {scores} core(s) and the client {ccores}, and one client core often cannot saturate Kiln's server core. Server and client cores are each process's CPU over the client's run; a row is client-bound when the client used at least {:.0}% of its {ccores} core(s) while the server used less than {:.0}% of its {scores}, server-bound when the server did.\n",
        SATURATED * 100.0,
        SATURATED * 100.0
    );
    let _ = writeln!(
        md,
        "| workload | client | server | server CPU-s per M ops | implied ops/s per server core | server cores | client cores | throughput | bound |\n\
         |---|---|---|---:|---:|---:|---:|---:|---|"
    );
    for r in efficiency_rows(rows) {
        let (cpu, basis) = r.reported_cpu_us_per_op();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.3} {} | {} | {:.2} | {} | {} {}/s | {} |",
            r.workload,
            r.client,
            r.server,
            cpu,
            if basis == CpuBasis::Window { "w" } else { "r" },
            crate::stats::format_count(1e6 / cpu),
            r.server_cpu_cores,
            r.client_cpu_cores
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
            crate::stats::format_count(r.throughput_ops),
            r.unit,
            bound(cfg, r)
        );
    }
    let _ = writeln!(
        md,
        "\n### Kiln / reference, same client, same run\n\n\
         Throughput ratio and server CPU per op ratio (lower is better), each with the client that produced it. A throughput ratio from a client-bound Kiln row is the client's limit, not Kiln's; a ratio measured with Kiln's load generator is generator-limited when the generator reached less than {:.0}% of the neutral client's rate on a reference server of that workload (see Generator parity).\n\n\
         | workload | client | vs | Kiln | reference | throughput ratio | CPU/op ratio | note |\n\
         |---|---|---|---:|---:|---:|---:|---|",
        crate::neutral::PARITY_MIN * 100.0
    );
    for k in efficiency_rows(rows).filter(|r| r.server == "kiln") {
        for reference in efficiency_rows(rows)
            .filter(|r| r.server != "kiln" && r.workload == k.workload && r.client == k.client)
        {
            let mut notes = Vec::new();
            if bound(cfg, k) == "client-bound" {
                notes.push("client-bound on Kiln's side".to_owned());
            }
            if bound(cfg, reference) == "client-bound" {
                notes.push(format!("client-bound on {}'s side", reference.server));
            }
            if k.client == crate::neutral::KILN_LOAD
                && crate::neutral::generator_limited(parity, &k.workload)
            {
                notes.push("generator-limited".into());
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2}x | {:.3} | {} |",
                k.workload,
                k.client,
                reference.server,
                crate::stats::format_count(k.throughput_ops),
                crate::stats::format_count(reference.throughput_ops),
                k.throughput_ops / reference.throughput_ops,
                k.reported_cpu_us_per_op().0 / reference.reported_cpu_us_per_op().0,
                notes.join("; ")
            );
        }
    }
    let _ = writeln!(
        md,
        "\n### Generator parity\n\n\
         Kiln's load generator against the neutral client with the workload's settings (record size, acks, batch size, linger, requests in flight, partitions; ZooKeeper: mix, sessions, requests in flight, value size, keys) on the same reference server in this run. Below {:.0}% every ratio of the workload measured with Kiln's load generator is marked generator-limited.\n",
        crate::neutral::PARITY_MIN * 100.0
    );
    if parity.is_empty() {
        let _ = writeln!(
            md,
            "No parity check ran (no reference server with both clients).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "| workload | server | neutral client | kiln-load | neutral | ratio | result |
|---|---|---|---:|---:|---:|---|"
        );
        for p in parity {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {} |",
                p.workload,
                p.server,
                p.neutral_client,
                crate::stats::format_count(p.kiln_load_ops),
                crate::stats::format_count(p.neutral_ops),
                p.ratio,
                if p.ok { "ok" } else { "generator-limited" }
            );
        }
        let _ = writeln!(md);
    }
    md
}

fn label(r: &Row) -> String {
    format!("{} / {}", r.server, r.client)
}

/// Writes everything under `cfg.out_dir`.
pub fn write(cfg: &CompareConfig, machine: &str, rows: &[Row], failures: &[String]) -> Result<()> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let machine = format!("{machine}\nload average at end: {}", loadavg.trim());
    let dir = &cfg.out_dir;
    let checks = crate::targets::check(&cfg.workloads, rows);
    let parity = crate::neutral::parity(rows);
    let json = serde_json::json!({
        "parity": parity,
        "efficiency": efficiency(cfg, rows, &parity),
        "smoke": cfg.smoke,
        "server_core": cfg.server_core,
        "client_core": cfg.client_core,
        "rounds": cfg.rounds,
        "client_procs": cfg.client_procs,
        "machine": machine,
        "targets": checks,
        "rows": rows,
        "failures": failures,
    });
    let text =
        serde_json::to_string_pretty(&json).map_err(|e| LoadError::Protocol(e.to_string()))?;
    std::fs::write(dir.join("results.json"), text).map_err(LoadError::io("write results.json"))?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Kiln vs reference servers{}\n",
        if cfg.smoke {
            " (smoke run: tiny workloads, not a benchmark)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "Servers pinned to core {}, clients to core {} (taskset). Latency in microseconds; Kiln's load \
         generator measures from each record's intended send time (coordinated omission corrected); \
         Kafka's tools measure from the actual send. RSS idle is after start-up, under load the peak.\n",
        cfg.server_core, cfg.client_core
    );
    let _ = writeln!(
        md,
        "Rounds: {} (each round runs every server once, in the same order, so Kiln and the \
         references alternate{}). Client processes per run: {} (Kiln's load generator, \
         rdkafka_performance produce, the ZooKeeper C client; all on the client cores).\n",
        cfg.rounds,
        if cfg.rounds > 1 {
            "; every figure below is the median over the rounds, rounds.json has each round"
        } else {
            ""
        },
        cfg.client_procs
    );
    let _ = writeln!(md, "{CPU_LEGEND}\n");
    let _ = writeln!(md, "## Machine\n\n```\n{machine}\n```\n");
    md.push_str(&efficiency_markdown(cfg, rows, &parity));
    md.push_str(&crate::targets::markdown(&checks));
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for w in &workloads {
        let desc = cfg
            .workloads
            .iter()
            .find(|x| x.name == *w)
            .map(|x| x.description.clone())
            .unwrap_or_default();
        let _ = writeln!(md, "## {w}\n\n{desc}\n");
        if let Some(text) = warmup_text(cfg, w, rows) {
            let _ = writeln!(md, "{text}\n");
        }
        let _ = writeln!(
            md,
            "| server | client | throughput | MB/s | p50 | p90 | p99 | p99.9 | p99.99 | max | server CPU us/op | server cores | client cores | RSS idle MB | RSS load MB | note |"
        );
        let _ = writeln!(
            md,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in rows.iter().filter(|r| r.workload == *w) {
            let l = &r.latency_us;
            let f = |v: f64| {
                if v > 0.0 {
                    format!("{v:.0}")
                } else {
                    "-".into()
                }
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} {}/s | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.0} | {:.0} | {} |",
                r.server,
                r.client,
                crate::stats::format_count(r.throughput_ops),
                r.unit,
                r.throughput_mb_s,
                f(l.p50),
                f(l.p90),
                f(l.p99),
                f(l.p999),
                f(l.p9999),
                f(l.max),
                cpu_cell(r),
                r.server_cpu_cores,
                r.client_cpu_cores
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
                r.rss_idle_mb,
                r.rss_load_mb,
                if r.ok {
                    r.note.clone()
                } else {
                    format!("FAILED {}", r.note)
                }
            );
        }
        let svg_t = format!("{w}-throughput.svg");
        let svg_l = format!("{w}-latency.svg");
        let ours: Vec<&Row> = rows
            .iter()
            .filter(|r| r.workload == *w && r.ok && r.client != "-")
            .collect();
        if !ours.is_empty() {
            throughput_chart(&dir.join(&svg_t), w, &ours)?;
            let _ = writeln!(md, "\n![throughput]({svg_t})");
            if ours.iter().any(|r| r.latency_us.p50 > 0.0) {
                latency_chart(&dir.join(&svg_l), w, &ours)?;
                let _ = writeln!(md, "![latency]({svg_l})");
            }
        }
        let _ = writeln!(md);
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "## Failed runs\n");
        for f in failures {
            let _ = writeln!(md, "- {}", f.replace('\n', " "));
        }
    }
    std::fs::write(dir.join("report.md"), md).map_err(LoadError::io("write report.md"))
}

fn chart_err<E: std::fmt::Display>(e: E) -> LoadError {
    LoadError::Protocol(format!("chart: {e}"))
}

fn throughput_chart(path: &Path, title: &str, rows: &[&Row]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 140 + 40 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let max = rows.iter().map(|r| r.throughput_ops).fold(1.0, f64::max) * 1.15;
    let unit = rows.first().map(|r| r.unit.clone()).unwrap_or_default();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: throughput ({unit}/s)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..max, 0.0..rows.len() as f64)
        .map_err(chart_err)?;
    let labels: Vec<String> = rows.iter().map(|r| label(r)).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (*y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|x| crate::stats::format_count(*x))
        .draw()
        .map_err(chart_err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let color = if r.server == "kiln" {
                RGBColor(200, 80, 20)
            } else {
                RGBColor(60, 90, 160)
            };
            Rectangle::new(
                [(0.0, i as f64 + 0.15), (r.throughput_ops, i as f64 + 0.85)],
                color.filled(),
            )
        }))
        .map_err(chart_err)?;
    root.present().map_err(chart_err)?;
    Ok(())
}

fn latency_chart(path: &Path, title: &str, rows: &[&Row]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let points: Vec<Vec<(f64, f64)>> = rows
        .iter()
        .map(|r| {
            r.latency_us
                .points()
                .iter()
                .enumerate()
                .filter(|(_, (_, v))| *v > 0.0)
                .map(|(i, (_, v))| (i as f64, *v))
                .collect()
        })
        .collect();
    let (lo, hi) = points
        .iter()
        .flatten()
        .fold((f64::MAX, 1.0f64), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let lo = (lo / 2.0).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: latency percentiles (us, log scale)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2..5.2, (lo..hi * 2.0).log_scale())
        .map_err(chart_err)?;
    let names = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x: &f64| {
            let i = x.round();
            if (x - i).abs() < 0.05 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(chart_err)?;
    let palette = [
        RGBColor(200, 80, 20),
        RGBColor(60, 90, 160),
        RGBColor(40, 140, 60),
        RGBColor(150, 50, 150),
        RGBColor(120, 120, 120),
        RGBColor(20, 160, 170),
    ];
    for (i, (r, pts)) in rows.iter().zip(points).enumerate() {
        let color = palette.get(i % palette.len()).copied().unwrap_or(BLACK);
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(chart_err)?
            .label(label(r))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(chart_err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(chart_err)?;
    root.present().map_err(chart_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    /// A configuration for report tests: one Kiln server, no reference tools, one round.
    fn test_config(workloads: Vec<crate::workload::Workload>) -> CompareConfig {
        CompareConfig {
            workloads,
            servers: vec!["kiln".into()],
            smoke: false,
            out_dir: ".".into(),
            kiln_bin: "kiln".into(),
            load_bin: "kiln".into(),
            root: ".".into(),
            server_core: "0".into(),
            client_core: "1".into(),
            reference_tools: false,
            neutral_clients: false,
            rounds: 1,
            client_procs: 1,
        }
    }

    #[test]
    fn guest_memory_says_whether_freed_memory_returns_to_the_host() {
        let meminfo = "MemTotal:       24684092 kB\nMemFree:        2097152 kB\n";
        let on = describe_guest_memory(meminfo, Some("9\n"));
        assert!(
            on.starts_with("guest memory: MemFree 2048 MiB, free page reporting ON (order 9)"),
            "{on}"
        );
        assert_eq!(
            describe_guest_memory(meminfo, Some("11\n")),
            "guest memory: MemFree 2048 MiB, free page reporting off (order 11)"
        );
        assert_eq!(
            describe_guest_memory("", None),
            "guest memory: MemFree 0 MiB, no free page reporting"
        );
        assert!(describe_guest_memory(meminfo, Some("x")).ends_with("order \"x\""));
    }

    #[test]
    fn writes_markdown_json_and_charts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CompareConfig {
            workloads: vec![
                crate::workload::Workload::parse(
                    "w",
                    Path::new("w.conf"),
                    "# A test workload.\nsystem = kafka\n",
                    true,
                )
                .unwrap(),
            ],
            smoke: true,
            out_dir: dir.path().to_owned(),
            ..test_config(Vec::new())
        };
        let row = |server: &str, t: f64| Row {
            workload: "w".into(),
            server: server.into(),
            client: "kiln-load".into(),
            unit: "records".into(),
            throughput_ops: t,
            latency_us: Percentiles {
                count: 1,
                mean: 1.0,
                p50: 10.0,
                p90: 20.0,
                p99: 30.0,
                p999: 40.0,
                p9999: 50.0,
                max: 60.0,
            },
            ok: true,
            ..Default::default()
        };
        let mut kiln = row("kiln", 1000.0);
        kiln.server_cpu_us_per_op = 52.25;
        kiln.server_cpu_us_per_op_window = Some(41.5);
        kiln.server_warmup_s = 1.04;
        let mut kafka = row("kafka-4", 500.0);
        kafka.server_cpu_us_per_op = 3.125;
        kafka.server_warmup_s = 2.5;
        write(&cfg, &machine(), &[kiln, kafka], &[]).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("| kiln | kiln-load | 1,000 records/s"), "{md}");
        assert!(
            md.contains("## Efficiency per server core\n\nServer CPU-seconds per million"),
            "{md}"
        );
        assert!(
            md.contains("| w | kiln-load | kiln | 41.500 w | 24,096 |"),
            "{md}"
        );
        assert!(
            md.contains("| w | kiln-load | kafka-4 | 1,000 | 500 | 2.00x |"),
            "{md}"
        );
        // The window figure when the client reported one, else the whole-run figure; marked.
        assert!(md.contains("| 41.50 w |"), "{md}");
        assert!(!md.contains("52.25"), "{md}");
        assert!(
            md.contains("| 3.12 r |") || md.contains("| 3.13 r |"),
            "{md}"
        );
        assert!(md.contains("marked `w`"), "{md}");
        assert!(
            md.contains("unmeasured pass of Kiln's load generator for 1 s")
                && md.contains("topic of its own")
                && md.contains("kiln 1.0 s, kafka-4 2.5 s"),
            "{md}"
        );
        let svg = std::fs::read_to_string(dir.path().join("w-throughput.svg")).unwrap();
        assert!(svg.contains("<svg"));
        assert!(dir.path().join("w-latency.svg").exists());
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        // results.json keeps both figures.
        assert_eq!(rows[0]["server_cpu_us_per_op"], 52.25);
        assert_eq!(rows[0]["server_cpu_us_per_op_window"], 41.5);
        assert!(rows[1]["server_cpu_us_per_op_window"].is_null());
    }

    #[test]
    fn counts_cores_and_marks_client_bound_rows() {
        assert_eq!(core_count("1"), 1);
        assert_eq!(core_count("0-3"), 4);
        assert_eq!(core_count("1,3,5-6"), 4);
        let cfg = test_config(Vec::new());
        let row = |server: f64, client: f64| Row {
            server_cpu_cores: server,
            client_cpu_cores: Some(client),
            ..Default::default()
        };
        assert_eq!(bound(&cfg, &row(0.3, 0.99)), "client-bound");
        assert_eq!(bound(&cfg, &row(0.95, 0.99)), "server-bound");
        assert_eq!(bound(&cfg, &row(0.3, 0.5)), "");
    }

    #[test]
    fn says_when_no_warmup_pass_ran() {
        let zk = |text: &str| {
            crate::workload::Workload::parse("z", Path::new("z.conf"), text, false).unwrap()
        };
        let mut cfg = test_config(vec![zk("system = zk\nserver_warmup_s = 0\n")]);
        let row = Row {
            workload: "z".into(),
            server: "zookeeper".into(),
            ..Default::default()
        };
        let text = warmup_text(&cfg, "z", std::slice::from_ref(&row)).unwrap();
        assert!(text.starts_with("No server warm-up pass ran"), "{text}");
        cfg.workloads = vec![zk("system = zk\n")];
        let warmed = Row {
            server_warmup_s: 10.2,
            ..row
        };
        let text = warmup_text(&cfg, "z", &[warmed]).unwrap();
        assert!(
            text.contains("for 10 s") && text.contains("the workload's own operations"),
            "{text}"
        );
        assert!(text.contains("zookeeper 10.2 s"), "{text}");
    }
}
