//! `acceptedEpoch` and `currentEpoch`: the two epochs a voting member keeps in `dataDir`, as
//! ZooKeeper does (one small text file each, the decimal epoch and a newline).
//!
//! ZAB needs both to survive a crash: `acceptedEpoch` is the newest epoch this server promised a
//! prospective leader during discovery (it will not acknowledge an older one again), and
//! `currentEpoch` is the epoch whose leader's history this server last accepted at NEWLEADER.
//! [`EpochStore`] is the blocking I/O behind [`super::zab::Effect::SaveEpochs`]; it runs once per
//! election, so plain `std::fs` on the calling thread is fine.
//!
//! # Invariants, checked on open and on save
//! - `currentEpoch <= acceptedEpoch` (ZooKeeper refuses to start otherwise, and so does Kiln).
//! - Neither epoch ever moves backwards: a save that would do so is a bug in the caller and is
//!   refused without touching the files.
//! - Either both files exist or neither does. Neither is a fresh server (both epochs 0); only one
//!   means the data directory was damaged or copied incompletely, and guessing the other epoch
//!   could break the promise the lost file recorded.
//!
//! # Durability of [`EpochStore::save`]
//! Each changed file is replaced atomically, `acceptedEpoch` first:
//! 1. write `<name>.tmp` (created or truncated), then fsync it;
//! 2. rename it over `<name>`;
//! 3. fsync the directory, so the rename survives a power loss.
//!
//! When `save` returns, both epochs are on the media. A crash in between leaves each file either
//! old or new, never torn; writing `acceptedEpoch` first keeps `currentEpoch <= acceptedEpoch`
//! at every point, because the new current epoch is at most the new accepted one.
//!
//! The first save into a fresh directory creates both files, and two renames are not one atomic
//! step: a crash between them would leave exactly one file, which [`EpochStore::open`] must
//! refuse as damage. So that save fsyncs both temporary files before it renames either, and
//! `open` finishes such an interrupted save: when one file is missing, the other exists and the
//! missing one's `.tmp` holds a valid epoch, the `.tmp` is renamed into place (and the directory
//! fsynced). Every other temporary file is stale (its rename never happened because the save
//! did not finish) and is ignored; the next save overwrites it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// ZooKeeper's file names, so a data directory reads the same to either server.
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// Why the epochs could not be read or saved.
#[derive(Debug, Error)]
pub enum EpochError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not an epoch file: expected a decimal number below 2^32 and a newline, found {found:?}"
    )]
    Corrupt { path: PathBuf, found: String },
    #[error(
        "{missing} is missing but {present} exists: the data directory is damaged or incomplete; restore it or start this server from an empty dataDir"
    )]
    Missing { missing: PathBuf, present: PathBuf },
    #[error("the current epoch {current} is above the accepted epoch {accepted} (in {dir})")]
    CurrentAboveAccepted {
        dir: PathBuf,
        accepted: u32,
        current: u32,
    },
    #[error("refusing to move {path} backwards from {from} to {to}")]
    Backwards { path: PathBuf, from: u32, to: u32 },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EpochError + 'a {
    move |source| EpochError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The two epochs of one data directory, as last read or durably saved.
#[derive(Debug)]
pub struct EpochStore {
    dir: PathBuf,
    accepted: u32,
    current: u32,
    /// Both files exist (false for a fresh directory until the first save).
    on_disk: bool,
}

impl EpochStore {
    /// Reads both epochs from `dir` (see the module docs for what is refused). `dir` is the
    /// data directory, which already exists (it is locked by [`crate::datadir::DirLock`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, EpochError> {
        let dir = dir.as_ref().to_path_buf();
        let accepted_path = dir.join(ACCEPTED_EPOCH_FILE);
        let current_path = dir.join(CURRENT_EPOCH_FILE);
        let mut accepted = read_epoch(&accepted_path)?;
        let mut current = read_epoch(&current_path)?;
        match (accepted, current) {
            (None, Some(_)) => {
                accepted = Some(finish_first_save(&dir, ACCEPTED_EPOCH_FILE, &current_path)?)
            }
            (Some(_), None) => {
                current = Some(finish_first_save(&dir, CURRENT_EPOCH_FILE, &accepted_path)?)
            }
            _ => {}
        }
        let on_disk = accepted.is_some();
        let (accepted, current) = (accepted.unwrap_or(0), current.unwrap_or(0));
        if current > accepted {
            return Err(EpochError::CurrentAboveAccepted {
                dir,
                accepted,
                current,
            });
        }
        Ok(Self {
            dir,
            accepted,
            current,
            on_disk,
        })
    }

    /// `(acceptedEpoch, currentEpoch)`.
    pub fn get(&self) -> (u32, u32) {
        (self.accepted, self.current)
    }

    /// Saves both epochs durably (steps in the module docs); a file whose epoch is unchanged is
    /// not rewritten. Refuses, before writing anything, to move either epoch backwards or to
    /// make the current epoch exceed the accepted one: either would be a bug in the caller.
    pub fn save(&mut self, accepted: u32, current: u32) -> Result<(), EpochError> {
        if accepted < self.accepted {
            return Err(EpochError::Backwards {
                path: self.dir.join(ACCEPTED_EPOCH_FILE),
                from: self.accepted,
                to: accepted,
            });
        }
        if current < self.current {
            return Err(EpochError::Backwards {
                path: self.dir.join(CURRENT_EPOCH_FILE),
                from: self.current,
                to: current,
            });
        }
        if current > accepted {
            return Err(EpochError::CurrentAboveAccepted {
                dir: self.dir.clone(),
                accepted,
                current,
            });
        }
        if !self.on_disk {
            // Both temporary files are durable before either rename (see the module docs).
            let a = stage_epoch(&self.dir, ACCEPTED_EPOCH_FILE, accepted)?;
            let c = stage_epoch(&self.dir, CURRENT_EPOCH_FILE, current)?;
            install(&a, &self.dir.join(ACCEPTED_EPOCH_FILE))?;
            install(&c, &self.dir.join(CURRENT_EPOCH_FILE))?;
            sync_dir(&self.dir)?;
            (self.accepted, self.current, self.on_disk) = (accepted, current, true);
            return Ok(());
        }
        if accepted != self.accepted {
            write_epoch(&self.dir, ACCEPTED_EPOCH_FILE, accepted)?;
            self.accepted = accepted;
        }
        if current != self.current {
            write_epoch(&self.dir, CURRENT_EPOCH_FILE, current)?;
            self.current = current;
        }
        Ok(())
    }
}

/// `name` is missing while `present` exists: finishes the first save that a crash interrupted
/// between its two renames, or reports the damage.
fn finish_first_save(dir: &Path, name: &str, present: &Path) -> Result<u32, EpochError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let missing = || EpochError::Missing {
        missing: path.clone(),
        present: present.to_path_buf(),
    };
    // Only a complete, valid epoch rolls forward; a missing or torn one is damage.
    let Ok(Some(epoch)) = read_epoch(&tmp) else {
        return Err(missing());
    };
    install(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(epoch)
}

/// The epoch in `path`; `None` when the file does not exist.
fn read_epoch(path: &Path) -> Result<Option<u32>, EpochError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    match parse_epoch(&bytes) {
        Some(e) => Ok(Some(e)),
        None => Err(EpochError::Corrupt {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&bytes).into_owned(),
        }),
    }
}

/// One decimal number below 2^32 and an optional newline. ZooKeeper reads the first line and
/// accepts a file without the newline, so Kiln does too; anything else (empty, a sign, spaces,
/// a second line, a torn write) is not an epoch.
fn parse_epoch(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Replaces `dir/name` with `epoch` atomically and durably (steps 1-3 of the module docs).
fn write_epoch(dir: &Path, name: &str, epoch: u32) -> Result<(), EpochError> {
    let tmp = stage_epoch(dir, name, epoch)?;
    install(&tmp, &dir.join(name))?;
    sync_dir(dir)
}

/// Step 1: writes `epoch` to `dir/<name>.tmp` and fsyncs it. Returns the temporary path.
fn stage_epoch(dir: &Path, name: &str, epoch: u32) -> Result<PathBuf, EpochError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(format!("{epoch}\n").as_bytes())
        .map_err(io_err("write", &tmp))?;
    // A failed fsync leaves what is on the media unknown: the error ends this attempt and
    // nothing retries the fsync.
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    Ok(tmp)
}

/// Step 2: renames the temporary file over the epoch file.
fn install(tmp: &Path, path: &Path) -> Result<(), EpochError> {
    std::fs::rename(tmp, path).map_err(io_err("rename", tmp))
}

/// Step 3: fsyncs the directory so that renames in it survive a power loss.
fn sync_dir(dir: &Path) -> Result<(), EpochError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_reads_as_epoch_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = EpochStore::open(dir.path()).unwrap();
        assert_eq!(store.get(), (0, 0));
        // Opening writes nothing.
        assert!(!dir.path().join(ACCEPTED_EPOCH_FILE).exists());
    }

    #[test]
    fn saved_epochs_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        store.save(3, 2).unwrap();
        assert_eq!(store.get(), (3, 2));
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (3, 2));
        store.save(3, 3).unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        assert_eq!(store.get(), (3, 3));
        // ZooKeeper's format: the decimal epoch; no temporary file is left behind.
        let text = std::fs::read_to_string(dir.path().join(CURRENT_EPOCH_FILE)).unwrap();
        assert_eq!(text, "3\n");
        assert!(!dir.path().join("currentEpoch.tmp").exists());
        store.save(u32::MAX, u32::MAX).unwrap();
        assert_eq!(
            EpochStore::open(dir.path()).unwrap().get(),
            (u32::MAX, u32::MAX)
        );
    }

    #[test]
    fn a_first_save_of_zero_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        store.save(1, 0).unwrap();
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (1, 0));
        let dir = tempfile::tempdir().unwrap();
        EpochStore::open(dir.path()).unwrap().save(0, 0).unwrap();
        assert!(dir.path().join(CURRENT_EPOCH_FILE).exists());
        assert!(dir.path().join(ACCEPTED_EPOCH_FILE).exists());
    }

    #[test]
    fn a_file_written_without_a_newline_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "7").unwrap();
        std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), "6\n").unwrap();
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (7, 6));
    }

    #[test]
    fn moving_an_epoch_backwards_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        store.save(5, 4).unwrap();
        let err = store.save(4, 4).unwrap_err();
        assert!(
            matches!(err, EpochError::Backwards { from: 5, to: 4, ref path }
                if path.ends_with(ACCEPTED_EPOCH_FILE)),
            "{err}"
        );
        let err = store.save(6, 3).unwrap_err();
        assert!(
            matches!(err, EpochError::Backwards { from: 4, to: 3, ref path }
                if path.ends_with(CURRENT_EPOCH_FILE)),
            "{err}"
        );
        let err = store.save(6, 7).unwrap_err();
        assert!(
            matches!(err, EpochError::CurrentAboveAccepted { .. }),
            "{err}"
        );
        assert_eq!(store.get(), (5, 4));
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (5, 4));
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_name() {
        for bad in [
            "",
            "\n",
            "-1\n",
            " 3\n",
            "3\n4\n",
            "4294967296\n",
            "x\n",
            "3\n\n",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "3\n").unwrap();
            std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), bad).unwrap();
            let err = EpochStore::open(dir.path()).unwrap_err();
            assert!(matches!(err, EpochError::Corrupt { .. }), "{bad:?}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(CURRENT_EPOCH_FILE), "{msg}");
        }
    }

    #[test]
    fn one_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "3\n").unwrap();
        let err = EpochStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, EpochError::Missing { ref missing, .. }
                if missing.ends_with(CURRENT_EPOCH_FILE)),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), "3\n").unwrap();
        let err = EpochStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(ACCEPTED_EPOCH_FILE), "{err}");
    }

    #[test]
    fn a_first_save_interrupted_between_its_renames_is_finished_on_open() {
        // The crash left acceptedEpoch in place and currentEpoch only as its fsynced .tmp.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "2\n").unwrap();
        std::fs::write(dir.path().join("currentEpoch.tmp"), "1\n").unwrap();
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (2, 1));
        assert!(!dir.path().join("currentEpoch.tmp").exists());
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (2, 1));
        // And the other order.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acceptedEpoch.tmp"), "2\n").unwrap();
        std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), "1\n").unwrap();
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (2, 1));
        // A torn temporary file does not stand in for the missing epoch.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "2\n").unwrap();
        std::fs::write(dir.path().join("currentEpoch.tmp"), "").unwrap();
        let err = EpochStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, EpochError::Missing { .. }), "{err}");
    }

    #[test]
    fn a_stale_temporary_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        store.save(4, 3).unwrap();
        // A later save crashed before its rename.
        std::fs::write(dir.path().join("acceptedEpoch.tmp"), "9").unwrap();
        let mut store = EpochStore::open(dir.path()).unwrap();
        assert_eq!(store.get(), (4, 3));
        store.save(5, 3).unwrap();
        assert_eq!(EpochStore::open(dir.path()).unwrap().get(), (5, 3));
    }

    #[test]
    fn a_current_epoch_above_the_accepted_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "3\n").unwrap();
        std::fs::write(dir.path().join(CURRENT_EPOCH_FILE), "4\n").unwrap();
        let err = EpochStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                EpochError::CurrentAboveAccepted {
                    accepted: 3,
                    current: 4,
                    ..
                }
            ),
            "{err}"
        );
    }
}
