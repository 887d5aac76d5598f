//! Engine benchmarks: append throughput, group commit under concurrency, read throughput.
//!
//! Two parts:
//! 1. criterion benchmarks (`cargo bench -p kiln-engine --bench engine`; `-- --test` runs each
//!    once, which is what `bench/smoke.sh` does so the harness never rots):
//!    - `append/{1KiB,64KiB}/{durable,interval}`: one appender, one append at a time;
//!    - `append_pipelined/{1KiB,64KiB}/interval`: one appender keeping 16 appends in flight;
//!    - `durable_concurrency/{1,8,64}`: 1 KiB appends from N tasks on one shard, `Durable`;
//!    - `read/1MiB`: sequential reads of 1 MiB.
//! 2. a report (`KILN_BENCH_REPORT=1`, run by `bench/device.sh` after measuring the device with
//!    fio): fixed-duration runs that print throughput, p50/p99 latency and the ratios to the
//!    device limits read from `KILN_DEVICE_JSON`. Targets: 64 KiB interval appends (16 in flight) >= 80% of the
//!    device's sequential write bandwidth; 64 concurrent durable 1 KiB appenders >= 30x one.
//!
//! Data goes under `KILN_BENCH_DIR` (default `target/bench-data`), which must be on the device
//! being measured.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kiln_engine::batch::BatchBuilder;
use kiln_engine::batch::Record;
use kiln_engine::commit::Durability;
use kiln_engine::log::{AppendOptions, LogConfig, SegmentedLog};
use kiln_engine::rt;

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("KILN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base).unwrap();
    base
}

/// One batch holding one record whose value is `size` bytes minus the batch overhead.
fn batch_of(size: usize) -> Vec<u8> {
    let value = vec![0x5au8; size.saturating_sub(80)];
    let mut b = BatchBuilder::new();
    b.push(Record {
        value: Some(&value),
        timestamp: 1_700_000_000_000,
        ..Default::default()
    })
    .unwrap();
    b.finish().unwrap()
}

fn config(durability: Durability) -> LogConfig {
    let d = LogConfig::default();
    LogConfig {
        durability,
        segment_bytes: 256 << 20,
        // `KILN_BENCH_TAIL_CACHE=<bytes>` overrides the tail cache size (0 = off) for A/B runs.
        tail_cache_bytes: std::env::var("KILN_BENCH_TAIL_CACHE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d.tail_cache_bytes),
        // `KILN_BENCH_RESERVE_AHEAD=<bytes>` likewise for the block reservation ahead of writes.
        reserve_ahead_bytes: std::env::var("KILN_BENCH_RESERVE_AHEAD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d.reserve_ahead_bytes),
        // `KILN_BENCH_DIRECT_IO=0|1` chooses the write path (default: `LogConfig`'s default);
        // `KILN_BENCH_DIRECT_BYTES` / `KILN_BENCH_DIRECT_DEPTH` size its writes.
        direct_io: env_parse("KILN_BENCH_DIRECT_IO").map_or(d.direct_io, |v: u8| v == 1),
        direct_write_bytes: env_parse("KILN_BENCH_DIRECT_BYTES").unwrap_or(d.direct_write_bytes),
        direct_write_depth: env_parse("KILN_BENCH_DIRECT_DEPTH").unwrap_or(d.direct_write_depth),
        ..d
    }
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn open(durability: Durability, tmp: &tempfile::TempDir) -> SegmentedLog {
    SegmentedLog::open(tmp.path().join("bench-0"), config(durability))
        .await
        .unwrap()
}

/// Appends `total` batches from `tasks` concurrent tasks; returns per-append latencies (µs).
async fn run_appenders(
    log: &SegmentedLog,
    batch: &Rc<Vec<u8>>,
    tasks: usize,
    total: u64,
) -> Vec<u64> {
    let lat = Rc::new(RefCell::new(Vec::with_capacity(total as usize)));
    let per = total.div_ceil(tasks as u64);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (log, batch, lat) = (log.clone(), batch.clone(), lat.clone());
            rt::spawn(async move {
                for _ in 0..per {
                    let t = Instant::now();
                    log.append(&batch).await.unwrap();
                    lat.borrow_mut().push(t.elapsed().as_micros() as u64);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    Rc::try_unwrap(lat)
        .map(RefCell::into_inner)
        .unwrap_or_default()
}

/// Appends `n` copies of `batch` keeping up to `window` appends in flight, the way a producer
/// with several in-flight requests (or several producers on one partition) drives a log: each
/// batch is accepted at once (`append_buffered`: validated, offsets assigned, queued), and the
/// appender waits for the oldest one to be written only when `window` are outstanding. Returns
/// when all are written (the `Interval` contract of `append`).
async fn append_pipelined(log: &SegmentedLog, batch: &[u8], n: u64, window: usize) {
    let mut in_flight = std::collections::VecDeque::with_capacity(window + 1);
    for _ in 0..n {
        if in_flight.len() >= window {
            let end = in_flight.pop_front().unwrap();
            log.wait_written(end).await.unwrap();
        }
        let info = log
            .append_buffered(batch, AppendOptions::default())
            .unwrap();
        in_flight.push_back(info.last_offset + 1);
    }
    if let Some(end) = in_flight.pop_back() {
        log.wait_written(end).await.unwrap();
    }
}

/// Appends in flight in the pipelined benchmarks (`KILN_BENCH_WINDOW` overrides it in the
/// report, for A/B runs of how much a producer keeps outstanding).
const WINDOW: usize = 16;

fn window() -> usize {
    env_parse("KILN_BENCH_WINDOW")
        .filter(|&w| w > 0)
        .unwrap_or(WINDOW)
}

fn criterion_benches(c: &mut Criterion) {
    let runtime = rt::Runtime::new().unwrap();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, size) in [("1KiB", 1024usize), ("64KiB", 64 << 10)] {
        for (dname, d) in [
            ("durable", Durability::Durable),
            ("interval", Durability::KAFKA_DEFAULT),
        ] {
            let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
            let log = runtime.block_on(open(d, &tmp));
            let batch = Rc::new(batch_of(size));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new(name, dname), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let t = Instant::now();
                        for _ in 0..iters {
                            log.append(&batch).await.unwrap();
                        }
                        t.elapsed()
                    })
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("append_pipelined");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, size) in [("1KiB", 1024usize), ("64KiB", 64 << 10)] {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let log = runtime.block_on(open(Durability::KAFKA_DEFAULT, &tmp));
        let batch = batch_of(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new(name, "interval"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let t = Instant::now();
                    append_pipelined(&log, &batch, iters, WINDOW).await;
                    t.elapsed()
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("durable_concurrency");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for tasks in [1usize, 8, 64] {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let log = runtime.block_on(open(Durability::Durable, &tmp));
        let batch = Rc::new(batch_of(1024));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let t = Instant::now();
                    run_appenders(&log, &batch, tasks, iters.max(tasks as u64)).await;
                    t.elapsed()
                })
            })
        });
    }
    g.finish();

    // Reads of the newest 4 MiB of a 16 MiB log (16 KiB batches), `max_bytes` per read: from the
    // tail cache (default size, holds them) and from the file (cache off; page cache warm).
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (source, cache) in [
        ("tail_cache", LogConfig::default().tail_cache_bytes),
        ("file", 0),
    ] {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let log = runtime.block_on(async {
            let mut c = config(Durability::KAFKA_DEFAULT);
            c.tail_cache_bytes = cache;
            let log = SegmentedLog::open(tmp.path().join("read-0"), c)
                .await
                .unwrap();
            let batch = batch_of(16 << 10);
            for _ in 0..1024 {
                log.append(&batch).await.unwrap();
            }
            log
        });
        let tail_start = log.log_end_offset() - 224; // 3.5 MiB of 16 KiB batches
        for (mname, max) in [("1MiB", 1usize << 20), ("64KiB", 64 << 10)] {
            g.throughput(Throughput::Bytes(max as u64));
            g.bench_function(BenchmarkId::new(source, mname), |b| {
                let mut at = tail_start;
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let t = Instant::now();
                        for _ in 0..iters {
                            let r = log.read(at, max).await.unwrap();
                            at = if r.next_offset >= log.log_end_offset() {
                                tail_start
                            } else {
                                r.next_offset
                            };
                        }
                        t.elapsed()
                    })
                })
            });
        }
        if cache > 0 {
            assert!(
                log.tail_cache_stats().hits > 0,
                "{:?}",
                log.tail_cache_stats()
            );
        }
    }
    g.finish();
}

/// Device limits measured by fio (bench/device.sh).
struct Device {
    seq_write_bytes_per_s: f64,
    fsync_p50_us: f64,
}

fn device() -> Option<Device> {
    let path = std::env::var("KILN_DEVICE_JSON").ok()?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(Device {
        seq_write_bytes_per_s: v.get("seq_write_bytes_per_s")?.as_f64()?,
        fsync_p50_us: v.get("fsync_write_p50_us")?.as_f64()?,
    })
}

/// " = N% of device sequential write" when the device was measured, else nothing.
fn device_share(dev: Option<&Device>, bytes_per_s: f64) -> String {
    dev.map(|d| {
        format!(
            " = {:.0}% of device sequential write",
            100.0 * bytes_per_s / d.seq_write_bytes_per_s
        )
    })
    .unwrap_or_default()
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Fixed-size runs for the report; `smoke` shrinks everything to a few milliseconds.
fn report(smoke: bool) {
    let runtime = rt::Runtime::new().unwrap();
    let dev = device();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "\n== kiln-engine report{}",
        if smoke {
            " (smoke: sizes too small to mean anything)"
        } else {
            ""
        }
    );
    if let Some(d) = &dev {
        println!(
            "device: sequential O_DIRECT write {:.1} MiB/s; 4 KiB write+fdatasync p50 {:.0} us",
            mib(d.seq_write_bytes_per_s),
            d.fsync_p50_us
        );
    } else {
        println!("device: not measured (set KILN_DEVICE_JSON; bench/device.sh does)");
    }
    let c = config(Durability::KAFKA_DEFAULT);
    println!(
        "write path: {}",
        if c.direct_io {
            format!(
                "direct I/O, {} writes of up to {} KiB in flight",
                c.direct_write_depth,
                c.direct_write_bytes >> 10
            )
        } else {
            "buffered (page cache)".to_string()
        }
    );

    // `KILN_BENCH_ONLY=single,pipelined,durable,read` runs only the named sections.
    let only = std::env::var("KILN_BENCH_ONLY").ok();
    let want = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == section))
    };

    let total_bytes: u64 = if smoke { 1 << 20 } else { 1 << 30 };
    let mut interval_64k_one = 0.0;
    let mut interval_64k = 0.0;
    let sizes = [("1KiB", 1024usize), ("64KiB", 64 << 10)];
    // 1. Appends with WINDOW in flight (a producer with in-flight requests), interval policy:
    //    the figure the device-ratio target is about, measured first, right after fio measured
    //    the device (bench/device.sh), so both see the device in the same state: on the
    //    benchmark VM the device's own speed drifts by 10-20% after a few GiB were written.
    for (name, size) in sizes.into_iter().filter(|_| want("pipelined")) {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let batch = batch_of(size);
        let n = total_bytes / size as u64;
        let (bps, t_append) = runtime.block_on(async {
            let log = open(Durability::KAFKA_DEFAULT, &tmp).await;
            let t = Instant::now();
            append_pipelined(&log, &batch, n, window()).await;
            let t_append = t.elapsed();
            log.flush().await.unwrap();
            (
                (n * size as u64) as f64 / t.elapsed().as_secs_f64(),
                t_append,
            )
        });
        if name == "64KiB" {
            interval_64k = bps;
        }
        let ratio = device_share(dev.as_ref(), bps);
        println!(
            "append {name} interval, {} in flight: {:.1} MiB/s ({n} appends in {:.2} s, \
             then the final flush){ratio}",
            window(),
            mib(bps),
            t_append.as_secs_f64()
        );
    }

    // 2. Single appender throughput, including the final flush so the page cache cannot hide the
    //    device: bytes / (append time + flush time).
    for (name, size) in sizes.into_iter().filter(|_| want("single")) {
        for (dname, d) in [
            ("durable", Durability::Durable),
            ("interval", Durability::KAFKA_DEFAULT),
        ] {
            let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
            let batch = batch_of(size);
            let (bps, n) = runtime.block_on(async {
                let log = open(d, &tmp).await;
                let t = Instant::now();
                let limit = if d == Durability::Durable {
                    Duration::from_secs(if smoke { 0 } else { 10 })
                } else {
                    Duration::MAX
                };
                let mut n = 0u64;
                while n * (size as u64) < total_bytes && (n < 16 || t.elapsed() < limit) {
                    log.append(&batch).await.unwrap();
                    n += 1;
                }
                log.flush().await.unwrap();
                ((n * size as u64) as f64 / t.elapsed().as_secs_f64(), n)
            });
            if name == "64KiB" && dname == "interval" {
                interval_64k_one = bps;
            }
            let ratio = device_share(dev.as_ref(), bps);
            println!(
                "append {name} {dname}: {:.1} MiB/s ({n} appends incl. final flush){ratio}",
                mib(bps)
            );
        }
    }

    // 3. Group commit: N concurrent 1 KiB durable appenders on one shard.
    let mut one = 0.0;
    let mut sixty_four = 0.0;
    for tasks in [1usize, 8, 64].into_iter().filter(|_| want("durable")) {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let batch = Rc::new(batch_of(1024));
        let duration = Duration::from_millis(if smoke { 20 } else { 5000 });
        let (rate, mut lat) = runtime.block_on(async {
            let log = open(Durability::Durable, &tmp).await;
            let t = Instant::now();
            let mut lat = Vec::new();
            let mut n = 0u64;
            while t.elapsed() < duration {
                let chunk = (tasks as u64) * 16;
                lat.extend(run_appenders(&log, &batch, tasks, chunk).await);
                n += chunk;
            }
            (n as f64 / t.elapsed().as_secs_f64(), lat)
        });
        if tasks == 1 {
            one = rate;
        }
        if tasks == 64 {
            sixty_four = rate;
        }
        let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
        let dev_note = dev
            .as_ref()
            .map(|d| format!("; device fdatasync p50 {:.0} us", d.fsync_p50_us))
            .unwrap_or_default();
        println!(
            "durable 1KiB x{tasks}: {rate:.0} appends/s, p50 {p50} us, p99 {p99} us{dev_note}"
        );
    }

    // 4. Reads (from the page cache after writing).
    let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
    let read_bps = want("read").then(|| {
        runtime.block_on(async {
            let log = open(Durability::KAFKA_DEFAULT, &tmp).await;
            let batch = batch_of(16 << 10);
            let n = if smoke { 64 } else { 16384 };
            for _ in 0..n {
                log.append(&batch).await.unwrap();
            }
            let t = Instant::now();
            let mut at = 0;
            let mut bytes = 0u64;
            while at < log.log_end_offset() {
                let r = log.read(at, 1 << 20).await.unwrap();
                bytes += r.records.len() as u64;
                at = r.next_offset;
            }
            bytes as f64 / t.elapsed().as_secs_f64()
        })
    });
    if let Some(read_bps) = read_bps {
        println!("read 1 MiB chunks: {:.1} MiB/s", mib(read_bps));
    }
    // 4b. Reads at the tail: the newest 3.5 MiB read again and again, 64 KiB and 1 MiB per read,
    //     from the tail cache and (cache off) from the file through the page cache.
    for (source, cache) in [
        ("tail cache", LogConfig::default().tail_cache_bytes),
        ("file", 0),
    ]
    .into_iter()
    .filter(|_| want("read"))
    {
        let tmp = tempfile::tempdir_in(bench_dir()).unwrap();
        let line = runtime.block_on(async {
            let mut c = config(Durability::KAFKA_DEFAULT);
            c.tail_cache_bytes = cache;
            let log = SegmentedLog::open(tmp.path().join("tail-0"), c)
                .await
                .unwrap();
            let batch = batch_of(16 << 10);
            for _ in 0..1024 {
                log.append(&batch).await.unwrap();
            }
            let tail_start = log.log_end_offset() - 224;
            let mut parts = Vec::new();
            for max in [64usize << 10, 1 << 20] {
                let (mut at, mut bytes) = (tail_start, 0u64);
                let t = Instant::now();
                let rounds = if smoke { 1 } else { 200 };
                for _ in 0..rounds {
                    while at < log.log_end_offset() {
                        let r = log.read(at, max).await.unwrap();
                        bytes += r.records.len() as u64;
                        at = r.next_offset;
                    }
                    at = tail_start;
                }
                parts.push(format!(
                    "{} KiB reads {:.0} MiB/s",
                    max >> 10,
                    mib(bytes as f64 / t.elapsed().as_secs_f64())
                ));
            }
            format!("{} ({:?})", parts.join(", "), log.tail_cache_stats())
        });
        println!("read tail from {source}: {line}");
    }

    println!("-- ratios");
    match &dev {
        Some(d) => {
            println!(
                "64 KiB interval appends, {} in flight / device sequential write = {:.2} \
                 (target >= 0.80)",
                window(),
                interval_64k / d.seq_write_bytes_per_s
            );
            println!(
                "64 KiB interval appends, one at a time / device sequential write = {:.2}",
                interval_64k_one / d.seq_write_bytes_per_s
            );
        }
        None => println!(
            "64 KiB interval appends / device sequential write = n/a (device not measured)"
        ),
    }
    println!(
        "64 durable appenders / 1 durable appender = {:.1}x (target >= 30x)",
        sixty_four / one.max(1e-9)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke =
        args.iter().any(|a| a == "--test") || std::env::var_os("KILN_BENCH_SMOKE").is_some();
    if std::env::var_os("KILN_BENCH_REPORT").is_some() || smoke {
        report(smoke);
        if std::env::var_os("KILN_BENCH_REPORT").is_some() {
            return;
        }
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
