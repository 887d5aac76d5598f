//! The data directories around the pure state: the lock that keeps a second server out of
//! `dataDir`/`dataLogDir`, writing a snapshot entirely off the shard thread, and autopurge.
//!
//! # Lock
//! [`DirLock::acquire`] takes an exclusive `flock` on `kiln-zk.lock` in each directory (once when
//! `dataDir` and `dataLogDir` are the same). A second server on the same directory, in this
//! process or another, fails at start-up with a message naming the directory and the holder's
//! pid. The kernel drops the lock when the file is closed, so a killed server never leaves a stale
//! lock behind.
//!
//! # Snapshot write
//! [`write_snapshot`] saves through the engine's `SnapshotStore::save_encoded`: the frozen state is
//! encoded, copied and checksummed on a blocking-pool thread, then the store's durability steps
//! (temp file, fdatasync, rename, directory fsync) run as asynchronous I/O, so the shard thread
//! neither walks the tree nor copies or checksums the image.
//!
//! # Autopurge
//! Every `autopurge.purgeInterval` hours (first at start-up, as ZooKeeper's
//! `DatadirCleanupManager`), [`plan_purge`] chooses what goes: the newest `snapRetainCount`
//! (at least 3) snapshots with a readable header are kept, every snapshot older than the oldest
//! kept one is deleted, and the txn log below the smallest log offset a kept snapshot replays
//! from. With `purgeInterval` 0 nothing is ever deleted.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_engine::log::SegmentedLog;
use kiln_engine::rt;
use kiln_engine::snapshot::{SNAPSHOT_HEADER_LEN, SnapshotStore};
use thiserror::Error;

use crate::snapshot::{self, Frozen};
use crate::tree::Zxid;

/// Lock file name in `dataDir` (and `dataLogDir`).
pub const LOCK_FILE: &str = "kiln-zk.lock";
/// ZooKeeper's floor for `autopurge.snapRetainCount`.
pub const SNAP_RETAIN_MIN: usize = 3;

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error(
        "data directory {dir} is in use by another ZooKeeper server{holder} (lock file {lock} is held); stop that server or point this one at another dataDir/dataLogDir"
    )]
    InUse {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Held locks on the data directories; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _files: Vec<File>,
}

impl DirLock {
    /// Creates each directory if needed and locks it; fails if another server holds any of them.
    pub fn acquire(dirs: &[&Path]) -> Result<Self, DataDirError> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut files = Vec::new();
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            let canonical = dir.canonicalize().map_err(io_err("resolve", dir))?;
            if seen.contains(&canonical) {
                continue;
            }
            let lock = canonical.join(LOCK_FILE);
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .map_err(io_err("open", &lock))?;
            match f.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = f.read_to_string(&mut text);
                    let holder = match text.trim().parse::<u32>() {
                        Ok(pid) => format!(" (pid {pid})"),
                        Err(_) => String::new(),
                    };
                    return Err(DataDirError::InUse {
                        dir: dir.to_path_buf(),
                        lock,
                        holder,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_err("lock", &lock)(e)),
            }
            // The pid is for the message above only; a stale one is harmless.
            let _ = f.set_len(0);
            let _ = writeln!(f, "{}", std::process::id());
            seen.push(canonical);
            files.push(f);
        }
        Ok(Self { _files: files })
    }
}

/// What one autopurge run deletes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgePlan {
    /// Snapshot ids to delete, ascending.
    pub delete_snapshots: Vec<u64>,
    /// Delete the txn log below this offset (the oldest kept snapshot replays from it).
    pub log_below: Option<u64>,
}

/// Chooses what autopurge deletes. `snapshots` are `(id, log offset)` with `None` for a snapshot
/// whose header cannot be read; `retain` is raised to [`SNAP_RETAIN_MIN`]. Pure.
pub fn plan_purge(snapshots: &[(u64, Option<u64>)], retain: usize) -> PurgePlan {
    let retain = retain.max(SNAP_RETAIN_MIN);
    let mut valid: Vec<(u64, u64)> = snapshots
        .iter()
        .filter_map(|(id, off)| off.map(|o| (*id, o)))
        .collect();
    valid.sort_unstable();
    let kept = &valid[valid.len().saturating_sub(retain)..];
    let Some(&(oldest_kept, _)) = kept.first() else {
        return PurgePlan::default();
    };
    let mut delete_snapshots: Vec<u64> = snapshots
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id < oldest_kept)
        .collect();
    delete_snapshots.sort_unstable();
    delete_snapshots.dedup();
    PurgePlan {
        delete_snapshots,
        log_below: kept.iter().map(|(_, o)| *o).min(),
    }
}

/// The log offset snapshot `path` replays from, read from its first bytes only.
fn peek_file(path: &Path) -> Option<(Zxid, u64)> {
    let mut buf = vec![0u8; SNAPSHOT_HEADER_LEN + snapshot::PEEK_BYTES];
    File::open(path).ok()?.read_exact(&mut buf).ok()?;
    snapshot::peek(buf.get(SNAPSHOT_HEADER_LEN..)?)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Encodes `frozen` and saves it as snapshot `frozen.last_zxid` in `store`: encoding, copy and
/// checksum run on a blocking-pool thread, then the engine store's steps (temp file, fdatasync,
/// rename, directory fsync) run as asynchronous I/O.
pub async fn write_snapshot(store: &SnapshotStore, frozen: Frozen) -> Result<PathBuf, String> {
    let id = u64::try_from(frozen.last_zxid).unwrap_or(0);
    store
        .save_encoded(id, move || frozen.encode())
        .await
        .map_err(|e| e.to_string())
}

/// What [`purge`] did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    pub snapshots_deleted: usize,
    pub log_segments_deleted: usize,
    pub log_below: Option<u64>,
}

/// One autopurge run (see the module docs).
pub async fn purge(
    store: &SnapshotStore,
    log: &SegmentedLog,
    retain: usize,
) -> Result<PurgeReport, String> {
    let ids = store.list().map_err(|e| e.to_string())?;
    let paths: Vec<(u64, PathBuf)> = ids.iter().map(|id| (*id, store.path(*id))).collect();
    let plan = rt::spawn_blocking(move || -> Result<PurgePlan, String> {
        let found: Vec<(u64, Option<u64>)> = paths
            .iter()
            .map(|(id, p)| (*id, peek_file(p).map(|(_, off)| off)))
            .collect();
        let plan = plan_purge(&found, retain);
        let mut dir = None;
        for id in &plan.delete_snapshots {
            if let Some((_, p)) = paths.iter().find(|(i, _)| i == id) {
                std::fs::remove_file(p).map_err(|e| format!("remove {}: {e}", p.display()))?;
                dir = p.parent().map(Path::to_path_buf);
            }
        }
        if let Some(dir) = dir {
            sync_dir(&dir).map_err(|e| format!("fsync directory {}: {e}", dir.display()))?;
        }
        Ok(plan)
    })
    .await
    .map_err(|_| "the purge thread panicked".to_string())??;
    let mut report = PurgeReport {
        snapshots_deleted: plan.delete_snapshots.len(),
        log_below: plan.log_below,
        ..PurgeReport::default()
    };
    if let Some(offset) = plan.log_below.filter(|o| *o > log.log_start_offset()) {
        let out = log
            .delete_records(offset)
            .await
            .map_err(|e| format!("txn log below offset {offset}: {e}"))?;
        report.log_segments_deleted = out.deleted_segments.len();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_keeps_newest_valid_snapshots_and_their_log() {
        let snaps = [
            (10, Some(100)),
            (20, Some(200)),
            (30, None),
            (40, Some(400)),
            (50, Some(500)),
            (60, Some(600)),
        ];
        let plan = plan_purge(&snaps, 3);
        assert_eq!(plan.delete_snapshots, vec![10, 20, 30]);
        assert_eq!(plan.log_below, Some(400));
        // A damaged snapshot newer than the oldest kept one stays, and does not count.
        let snaps = [
            (5, Some(0)),
            (10, Some(1)),
            (20, Some(2)),
            (30, None),
            (40, Some(4)),
        ];
        let plan = plan_purge(&snaps, 3);
        assert_eq!(plan.delete_snapshots, vec![5]);
        assert_eq!(plan.log_below, Some(1));
    }

    #[test]
    fn purge_never_keeps_fewer_than_three() {
        let snaps: Vec<_> = (1..=5).map(|i| (i, Some(i * 10))).collect();
        assert_eq!(plan_purge(&snaps, 1), plan_purge(&snaps, 3));
        assert_eq!(plan_purge(&snaps, 1).delete_snapshots, vec![1, 2]);
        let plan = plan_purge(&snaps, 10);
        assert!(plan.delete_snapshots.is_empty());
        // The log below the oldest snapshot is not needed even when nothing else goes.
        assert_eq!(plan.log_below, Some(10));
    }

    #[test]
    fn purge_with_no_valid_snapshot_deletes_nothing() {
        assert_eq!(plan_purge(&[], 3), PurgePlan::default());
        assert_eq!(plan_purge(&[(1, None), (2, None)], 3), PurgePlan::default());
    }

    #[test]
    fn kept_offsets_need_not_grow_with_ids() {
        let snaps = [(1, Some(50)), (2, Some(70)), (3, Some(60)), (4, Some(80))];
        let plan = plan_purge(&snaps, 3);
        assert_eq!(plan.delete_snapshots, vec![1]);
        assert_eq!(plan.log_below, Some(60));
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let first = DirLock::acquire(&[dir.path(), dir.path()]).unwrap();
        let err = DirLock::acquire(&[&logs, dir.path()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DirLock::acquire(&[dir.path(), &logs]).unwrap();
    }
}
