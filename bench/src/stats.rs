//! Latency histograms, live counters, the progress line and the run result.
//!
//! Every worker thread owns a [`Recorder`] (an HDR histogram in nanoseconds plus counters) and
//! merges it into the run's result when it ends; the only state shared while the run is live
//! is [`Live`], a handful of relaxed atomics read once a second by the progress line.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds (one hour); longer ones are clamped to it.
pub const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds with three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the crate's preconditions (low >= 1, high >= 2 * low,
    // sigfig <= 5), so construction cannot fail; fall back to an auto-resizing one regardless.
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
        .or_else(|_| Histogram::new(3))
        .unwrap_or_else(|_| unreachable!("3 significant digits are always valid"))
}

/// Per-thread measurements.
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            latency: new_histogram(),
            ops: 0,
            bytes: 0,
            errors: 0,
        }
    }

    /// Records one latency (clamped to [`LATENCY_MAX_NS`], at least 1 ns).
    pub fn record_ns(&mut self, ns: u64) {
        let v = ns.clamp(1, LATENCY_MAX_NS);
        // In range by construction, so this cannot fail.
        let _ = self.latency.record(v);
    }

    /// Records the same latency `n` times.
    pub fn record_ns_n(&mut self, ns: u64, n: u64) {
        let v = ns.clamp(1, LATENCY_MAX_NS);
        let _ = self.latency.record_n(v, n);
    }

    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.latency.add(&other.latency);
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

/// Counters shared with the progress line, and the run's stop flag.
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub stop: AtomicBool,
}

impl Live {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add(&self, ops: u64, bytes: u64) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Prints the live rate once a second to stderr (one updating line on a terminal, one line per
/// second otherwise) until the run stops. `unit` names what `ops` counts (records, ops).
pub fn spawn_progress(live: Arc<Live>, unit: &'static str, quiet: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if quiet {
            return;
        }
        let tty = std::io::stderr().is_terminal();
        let start = Instant::now();
        let (mut last_ops, mut last_bytes, mut last_t) = (0u64, 0u64, start);
        while !live.stopped() {
            // Sleep in small steps so the thread notices the stop flag quickly.
            let deadline = last_t + Duration::from_secs(1);
            while Instant::now() < deadline && !live.stopped() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let now = Instant::now();
            let ops = live.ops.load(Ordering::Relaxed);
            let bytes = live.bytes.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
            let rate = (ops - last_ops) as f64 / dt;
            let mbs = (bytes - last_bytes) as f64 / dt / 1e6;
            let line = format!(
                "[{:>5.1}s] {:>12} {unit}/s {:>9.2} MB/s  total {:>12} {unit}  errors {errors}",
                now.duration_since(start).as_secs_f64(),
                format_count(rate),
                mbs,
                ops
            );
            let mut err = std::io::stderr().lock();
            if tty {
                let _ = write!(err, "\r{line}\x1b[K");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
            (last_ops, last_bytes, last_t) = (ops, bytes, now);
        }
        if tty {
            let _ = writeln!(std::io::stderr());
        }
    })
}

/// `1234567.8` -> `1,234,568`.
pub fn format_count(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }

    /// (label, value) pairs in increasing percentile order, for tables and charts.
    pub fn points(&self) -> [(&'static str, f64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("p99.99", self.p9999),
            ("max", self.max),
        ]
    }
}

/// The result of one load run: what `kiln load` prints and writes as JSON, and what
/// `kiln bench compare` reads back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// `kafka-produce`, `kafka-consume`, `kafka-e2e`, `zk`, `zk-watch`.
    pub workload: String,
    /// What one op is (`records`, `ops`, `notifications`).
    pub unit: String,
    /// Operations completed in the measured window (after warm-up).
    pub ops: u64,
    /// Payload bytes moved in the measured window.
    pub bytes: u64,
    pub errors: u64,
    /// Measured window in seconds.
    pub duration_s: f64,
    pub throughput_ops: f64,
    pub throughput_mb_s: f64,
    /// Target rate in ops/s (0 = as fast as possible).
    pub target_rate: f64,
    /// What the latency measures (e.g. "intended send -> ack").
    pub latency_of: String,
    pub latency_us: Percentiles,
    /// Extra per-kind figures (per-op latencies, notification counts...).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The parameters of the run.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl RunResult {
    pub fn new(
        workload: &str,
        unit: &str,
        total: &Recorder,
        window: Duration,
        target_rate: f64,
    ) -> Self {
        let secs = window.as_secs_f64().max(1e-9);
        Self {
            workload: workload.to_owned(),
            unit: unit.to_owned(),
            ops: total.ops,
            bytes: total.bytes,
            errors: total.errors,
            duration_s: secs,
            throughput_ops: total.ops as f64 / secs,
            throughput_mb_s: total.bytes as f64 / secs / 1e6,
            target_rate,
            latency_of: String::new(),
            latency_us: Percentiles::from_histogram(&total.latency),
            extra: serde_json::Map::new(),
            params: serde_json::Map::new(),
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let l = &self.latency_us;
        let mut s = format!(
            "{}: {} {} in {:.2}s = {} {}/s, {:.2} MB/s, {} errors\n",
            self.workload,
            self.ops,
            self.unit,
            self.duration_s,
            format_count(self.throughput_ops),
            self.unit,
            self.throughput_mb_s,
            self.errors
        );
        if self.target_rate > 0.0 {
            s.push_str(&format!(
                "target rate {} {}/s\n",
                format_count(self.target_rate),
                self.unit
            ));
        }
        if l.count > 0 {
            s.push_str(&format!(
                "latency ({}), us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  mean {:.1}  (n={})\n",
                self.latency_of, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max, l.mean, l.count
            ));
        }
        for (k, v) in &self.extra {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s
    }

    /// Writes the JSON result to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_histogram() {
        let mut r = Recorder::new();
        for i in 1..=10_000u64 {
            r.record_ns(i * 1000);
        }
        let p = Percentiles::from_histogram(&r.latency);
        assert_eq!(p.count, 10_000);
        assert!((p.p50 - 5000.0).abs() < 10.0, "{p:?}");
        assert!((p.p99 - 9900.0).abs() < 20.0, "{p:?}");
        assert!((p.max - 10_000.0).abs() < 10.0, "{p:?}");
    }

    #[test]
    fn merge_adds_counts_and_samples() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.ops = 2;
        b.ops = 3;
        a.record_ns(10);
        b.record_ns_n(20, 4);
        a.merge(&b);
        assert_eq!(a.ops, 5);
        assert_eq!(a.latency.len(), 5);
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(format_count(1_234_567.4), "1,234,567");
        assert_eq!(format_count(999.0), "999");
        assert_eq!(format_count(1000.0), "1,000");
    }

    #[test]
    fn result_round_trips_through_json() {
        let mut r = Recorder::new();
        r.ops = 100;
        r.bytes = 10_000;
        r.record_ns(1_000_000);
        let res = RunResult::new("zk", "ops", &r, Duration::from_secs(2), 0.0);
        assert_eq!(res.throughput_ops, 50.0);
        let text = serde_json::to_string(&res).unwrap();
        let back: RunResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ops, 100);
        assert_eq!(back.latency_us, res.latency_us);
        assert!(res.summary().contains("50 ops/s"));
    }
}
