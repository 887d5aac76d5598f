//! Process CPU time and resident memory from `/proc` (Linux).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{LoadError, Result};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux
/// architecture Kiln targets).
const TICKS_PER_S: f64 = 100.0;

/// User + system CPU seconds consumed by `pid` so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    read_cpu_seconds(pid).ok()
}

/// User + system CPU seconds consumed by `pid` so far, or why they cannot be read.
pub fn read_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(LoadError::io(format!("read {path}")))?;
    parse_stat_cpu_seconds(&text)
        .ok_or_else(|| LoadError::Protocol(format!("{path}: no utime/stime fields")))
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds.
fn parse_stat_cpu_seconds(text: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's RSS every 200 ms and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(r) = rss_bytes(pid) {
                    p.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    /// Stops sampling and returns the peak RSS in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_and_missing_processes_are_errors() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_stat_cpu_seconds(line), Some(3.0));
        assert_eq!(parse_stat_cpu_seconds("42 (x) S 1"), None);
        assert_eq!(parse_stat_cpu_seconds(""), None);
        // Beyond the kernel's pid_max, so no such process.
        assert!(matches!(
            read_cpu_seconds(u32::MAX),
            Err(LoadError::Io { .. })
        ));
        assert!(read_cpu_seconds(std::process::id()).is_ok());
    }

    #[test]
    fn own_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(pid).is_some());
        assert!(rss_bytes(pid).unwrap() > 0);
        let s = RssSampler::start(pid);
        assert!(s.finish() > 0);
    }
}
