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

/// The sum of two tick counts of a `/proc/<pid>/stat` line, in seconds; `first` is the
/// field's 1-based number in the whole line (`man 5 proc`), and `first + 1` is the second.
fn stat_tick_pair_seconds(text: &str, first: usize) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may contain spaces; the name
    // is field 2, so field n of the line is index n - 3 after it.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(first.checked_sub(3)?);
    let a: f64 = fields.next()?.parse().ok()?;
    let b: f64 = fields.next()?.parse().ok()?;
    Some((a + b) / TICKS_PER_S)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
fn parse_stat_cpu_seconds(text: &str) -> Option<f64> {
    stat_tick_pair_seconds(text, 14)
}

/// User + system CPU seconds of this process's children that it has waited for (cutime +
/// cstime of `/proc/self/stat`).
pub fn children_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_children_cpu_seconds(&text)
}

/// cutime + cstime (fields 16 and 17) of a `/proc/<pid>/stat` line, in seconds.
fn parse_stat_children_cpu_seconds(text: &str) -> Option<f64> {
    stat_tick_pair_seconds(text, 16)
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

/// The server's CPU over the measured window only. `kiln bench compare` charges a client run
/// with all the server CPU from the client's start to its end (set-up, warm-up and a JVM
/// server's JIT compilation included); this samples `/proc/<pid>/stat` at the window's start
/// and end, for a server on this machine: the process `--server-pid` names (the harness passes
/// the pid of the server it started) or, without it, the one listening on the server's port.
pub mod server_cpu {
    use std::time::Instant;

    use crate::error::{LoadError, Result};

    /// Which process the window's CPU is read from, and how it was found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ServerPid {
        pub pid: u32,
        /// True when given (`--server-pid`), false when found by the listening socket.
        pub given: bool,
    }

    /// The server process: `given` when set (an error when its `/proc/<pid>/stat` cannot be
    /// read, so a wrong pid fails the run before it starts), else the process listening on
    /// `addr`'s port (None when it is not visible, e.g. a remote server).
    pub fn resolve(addr: &str, given: Option<u32>) -> Result<Option<ServerPid>> {
        match given {
            Some(pid) => {
                crate::procstat::read_cpu_seconds(pid).map_err(|e| {
                    LoadError::Config(format!("--server-pid {pid}: cannot read its CPU time: {e}"))
                })?;
                Ok(Some(ServerPid { pid, given: true }))
            }
            None => Ok(listener_pid(addr).map(|pid| ServerPid { pid, given: false })),
        }
    }

    /// The pid of the process listening on `addr`'s TCP port on this machine, if visible.
    pub fn listener_pid(addr: &str) -> Option<u32> {
        let port: u16 = addr
            .rsplit(':')
            .next()?
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // local_address is "ADDR:PORT" in hex; st 0A = LISTEN; inode is field 10.
                let local_port = f
                    .get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port)
                    && f.get(3) == Some(&"0A")
                    && let Some(inode) = f.get(9).filter(|i| **i != "0")
                {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
        if inodes.is_empty() {
            return None;
        }
        for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = proc_entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path())
                    && inodes.iter().any(|i| target.as_os_str() == i.as_str())
                {
                    return Some(pid);
                }
            }
        }
        None
    }

    /// Samples the server's CPU seconds at `from` and at `to` on a thread of its own.
    pub struct WindowCpu {
        server: ServerPid,
        handle: std::thread::JoinHandle<Option<f64>>,
    }

    impl WindowCpu {
        pub fn start(
            server: Option<ServerPid>,
            from: Instant,
            to: Option<Instant>,
        ) -> Option<Self> {
            let server = server?;
            let to = to?;
            let pid = server.pid;
            let handle = std::thread::spawn(move || {
                crate::rate::wait_until(from);
                let c0 = crate::procstat::cpu_seconds(pid)?;
                crate::rate::wait_until(to);
                let c1 = crate::procstat::cpu_seconds(pid)?;
                Some(c1 - c0)
            });
            Some(Self { server, handle })
        }

        /// (server, CPU seconds in the window), once the window has ended.
        pub fn finish(self) -> Option<(ServerPid, f64)> {
            let cpu = self.handle.join().ok().flatten()?;
            Some((self.server, cpu))
        }
    }
}

/// Adds the server's own CPU over the measured window to `res` (see [`server_cpu`]).
pub fn add_window_cpu(res: &mut crate::stats::RunResult, sampled: Option<server_cpu::WindowCpu>) {
    let Some((server, cpu)) = sampled.and_then(server_cpu::WindowCpu::finish) else {
        return;
    };
    res.extra
        .insert("server_pid".into(), serde_json::json!(server.pid));
    res.extra.insert(
        "server_pid_from".into(),
        serde_json::json!(if server.given {
            "--server-pid"
        } else {
            "listening socket"
        }),
    );
    res.extra
        .insert("server_cpu_s_window".into(), serde_json::json!(cpu));
    if res.ops > 0 {
        res.extra.insert(
            "server_cpu_us_per_op_window".into(),
            serde_json::json!(cpu * 1e6 / res.ops as f64),
        );
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
    fn children_times_parse_and_grow_when_a_child_is_reaped() {
        // utime 250, stime 50, cutime 700, cstime 100 (ticks).
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 700 100 20 0 1 0 5 0 0\n";
        assert_eq!(parse_stat_children_cpu_seconds(line), Some(8.0));
        assert_eq!(parse_stat_children_cpu_seconds("42 (x) S 1 2 3"), None);
        let before = children_cpu_seconds().unwrap();
        // A child that burns about 0.3 s of CPU, then is waited for.
        let st = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(st.success());
        let after = children_cpu_seconds().unwrap();
        assert!(after > before, "{before} -> {after}");
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
