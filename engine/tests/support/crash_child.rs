//! Helper process of the kill -9 crash test (`tests/crash.rs`).
//!
//! Usage: `kiln-engine-crash-child <dir> <tasks>`. Opens the log in `<dir>` with
//! `Durability::Durable`, runs `<tasks>` concurrent appenders forever, and prints one line per
//! acknowledged (durable) append: `ACK <offset> <task> <seq> <segment_base> <position> <size>`.
//! The record value is derived from `(task, seq)` so the parent can check every byte.

use std::io::Write;

use kiln_engine::batch;
use kiln_engine::commit::Durability;
use kiln_engine::log::{LogConfig, SegmentedLog};
use kiln_engine::rt;

/// Value of record `(task, seq)`: a 16-byte header, then bytes derived from it.
pub fn value(task: u64, seq: u64) -> Vec<u8> {
    let size = ((task * 7919 + seq * 104_729) % 1500) as usize;
    let mut v = Vec::with_capacity(16 + size);
    v.extend_from_slice(&task.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend((0..size).map(|i| (i as u64 ^ task.wrapping_mul(31) ^ seq.wrapping_mul(17)) as u8));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(tasks)) = (args.get(1), args.get(2).and_then(|t| t.parse::<u64>().ok()))
    else {
        eprintln!("usage: kiln-engine-crash-child <dir> <tasks>");
        std::process::exit(2);
    };
    let dir = dir.clone();
    let result = rt::block_on(async move {
        let cfg = LogConfig {
            segment_bytes: 64 * 1024,
            index_interval_bytes: 1024,
            durability: Durability::Durable,
            // `KILN_CRASH_DIRECT_IO=1`: write with direct I/O; `KILN_CRASH_ZERO_FILL=1`: write
            // zeros ahead of the writes (tests/crash.rs runs each).
            direct_io: std::env::var_os("KILN_CRASH_DIRECT_IO").is_some_and(|v| v == "1"),
            zero_fill: std::env::var_os("KILN_CRASH_ZERO_FILL").is_some_and(|v| v == "1"),
            ..Default::default()
        };
        let log = match SegmentedLog::open(&dir, cfg).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("open: {e}");
                std::process::exit(3);
            }
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "READY");
            let _ = out.flush();
        }
        // A fresh task id range per process keeps (task, seq) unique across restarts.
        let run = log.log_end_offset();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let log = log.clone();
                rt::spawn(async move {
                    let task = run * 1000 + t;
                    for seq in 0.. {
                        let b =
                            match batch::single_record(None, Some(&value(task, seq)), seq as i64) {
                                Ok(b) => b,
                                Err(e) => panic!("encode: {e}"),
                            };
                        match log.append(&b).await {
                            Ok(info) => {
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(
                                    out,
                                    "ACK {} {task} {seq} {} {} {}",
                                    info.base_offset, info.segment_base, info.position, info.bytes
                                );
                                let _ = out.flush();
                            }
                            Err(e) => {
                                eprintln!("append: {e}");
                                std::process::exit(4);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    });
    if let Err(e) = result {
        eprintln!("runtime: {e}");
        std::process::exit(5);
    }
}
