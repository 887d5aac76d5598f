//! Crash test: kill -9 a real process at random points of a durable append loop, 100 times.
//!
//! After each kill the parent (sometimes) damages the tail beyond the last acknowledged append
//! the way a power loss could (garbage appended, or bytes cut), reopens the log and checks:
//! 1. every append the child reported durable is present, at its offset, with its exact bytes;
//! 2. every batch the log returns is valid and holds a record the child wrote (nothing after a
//!    torn point is returned as valid), at contiguous offsets;
//! 3. the child can continue appending after recovery (the next iteration).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_engine::batch;
use kiln_engine::log::{LogConfig, SegmentedLog, segment_file_name};
use kiln_engine::rt;
use rand::{Rng, SeedableRng};

#[path = "support/crash_child.rs"]
#[allow(dead_code)]
mod child;

const ITERATIONS: usize = 100;

#[derive(Debug, Clone, Copy)]
struct Ack {
    task: u64,
    seq: u64,
    segment: u64,
    end: u64,
}

/// How the child's log writes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Buffered,
    Direct,
    ZeroFill,
}

fn run_child(dir: &Path, kill_after: Duration, mode: Mode) -> Vec<(u64, Ack)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln-engine-crash-child"))
        .arg(dir)
        .arg("4")
        .env(
            "KILN_CRASH_DIRECT_IO",
            if mode == Mode::Direct { "1" } else { "0" },
        )
        .env(
            "KILN_CRASH_ZERO_FILL",
            if mode == Mode::ZeroFill { "1" } else { "0" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                let _ = ready_tx.send(());
                continue;
            }
            let f: Vec<u64> = line
                .split(' ')
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            if line.starts_with("ACK ") && f.len() == 6 {
                acks.push((
                    f[0],
                    Ack {
                        task: f[1],
                        seq: f[2],
                        segment: f[3],
                        end: f[4] + f[5],
                    },
                ));
            }
        }
        acks
    });
    // Random point of the append loop: a random time after recovery finished.
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("child did not open the log: {:?}", child.wait());
    }
    let start = Instant::now();
    while start.elapsed() < kill_after {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited early: {status}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // SIGKILL: no chance to flush anything.
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    reader.join().expect("reader")
}

#[test]
fn kill_9_during_durable_appends_loses_no_acknowledged_append() {
    kill_9_test(Mode::Buffered, ITERATIONS);
}

/// The same with direct writes: the child's log writes whole padded blocks with O_DIRECT, so a
/// kill leaves zero padding after the last batch, and a restarted child rewrites that block.
#[test]
fn kill_9_during_direct_durable_appends_loses_no_acknowledged_append() {
    kill_9_test(Mode::Direct, ITERATIONS / 2);
}

/// The same with zeros written ahead of the writes: a kill leaves the file longer than its
/// last batch (zeros, or zeros followed by the parent's garbage), which recovery cuts.
#[test]
fn kill_9_during_zero_filled_durable_appends_loses_no_acknowledged_append() {
    kill_9_test(Mode::ZeroFill, ITERATIONS / 2);
}

#[allow(clippy::unwrap_used, reason = "test code")]
fn kill_9_test(mode: Mode, iterations: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("topic-0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b696c6e);
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    let mut total_cut = 0;
    for iteration in 0..iterations {
        let kill_after = Duration::from_micros(rng.gen_range(500..80_000));
        let new = run_child(&dir, kill_after, mode);
        for (offset, ack) in new {
            assert!(
                acked.insert(offset, ack).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
        // Damage what a power loss could damage: only bytes after the last acknowledged append.
        let last_seg = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".log")?.parse::<u64>().ok())
            .max()
            .expect("a segment");
        let path = dir.join(segment_file_name(last_seg, "log"));
        let len = std::fs::metadata(&path).expect("stat").len();
        let floor = acked
            .values()
            .filter(|a| a.segment == last_seg)
            .map(|a| a.end)
            .max()
            .unwrap_or(0);
        match rng.gen_range(0..3) {
            0 => {
                let mut garbage = vec![0u8; rng.gen_range(1..200)];
                rng.fill(&mut garbage[..]);
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .expect("open");
                std::io::Write::write_all(&mut f, &garbage).expect("write garbage");
            }
            1 if len > floor => {
                let cut = rng.gen_range(floor..len);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open")
                    .set_len(cut)
                    .expect("cut");
                total_cut += 1;
            }
            _ => {}
        }
        // Reopen and verify everything.
        let acked_ref = &acked;
        let dir = dir.clone();
        rt::block_on(async move {
            let cfg = LogConfig {
                direct_io: mode == Mode::Direct,
                zero_fill: mode == Mode::ZeroFill,
                ..LogConfig::default()
            };
            let log = SegmentedLog::open(&dir, cfg).await.expect("reopen");
            let end = log.log_end_offset();
            let max_acked = acked_ref.keys().next_back().copied();
            assert!(
                max_acked.is_none_or(|m| m < end),
                "iteration {iteration}: end {end} < acked {max_acked:?}"
            );
            let mut at = 0;
            while at < end {
                let r = log.read(at, 256 * 1024).await.expect("read");
                assert!(
                    !r.records.is_empty(),
                    "iteration {iteration}: hole at {at} below {end}"
                );
                for b in batch::Batches::new(&r.records, true) {
                    let b = b.unwrap_or_else(|e| {
                        panic!("iteration {iteration}: invalid batch returned: {e}")
                    });
                    assert_eq!(b.base_offset() as u64, at, "contiguous offsets");
                    let rec = b
                        .records()
                        .expect("uncompressed")
                        .next()
                        .expect("one record")
                        .expect("record");
                    let v = rec.value.expect("value");
                    let task = u64::from_be_bytes(v[0..8].try_into().unwrap());
                    let seq = u64::from_be_bytes(v[8..16].try_into().unwrap());
                    assert_eq!(
                        v,
                        &child::value(task, seq)[..],
                        "iteration {iteration}: bytes at {at}"
                    );
                    if let Some(a) = acked_ref.get(&at) {
                        assert_eq!(
                            (a.task, a.seq),
                            (task, seq),
                            "iteration {iteration}: acked record at {at}"
                        );
                    }
                    at += 1;
                }
            }
            log.flush().await.expect("flush");
        })
        .expect("runtime");
    }
    assert!(
        acked.len() >= iterations,
        "the child acknowledged only {} appends",
        acked.len()
    );
    assert!(total_cut > 0);
}
