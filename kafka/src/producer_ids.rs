//! Producer-id allocation for InitProducerId, unique across restarts.
//!
//! Ids are reserved in blocks of [`BLOCK_IDS`]: before the first id of a block is handed out, the
//! end of the block is written to `<log.dirs>/kiln-producer-ids` and fdatasynced (then the file is
//! renamed into place and the directory synced). After a crash the next block starts past every id
//! that could have been handed out, so an id is never reused; at most one block is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::catalog::{StoreError, sync_dir};

/// Ids reserved per durable write.
pub const BLOCK_IDS: i64 = 1000;

/// The allocator.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    next: i64,
    block_end: i64,
}

impl ProducerIds {
    /// Opens the allocator in `dir`, continuing after the last reserved block.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("kiln-producer-ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => parse_counter(&text).ok_or_else(|| StoreError::CorruptCounter {
                path: path.clone(),
                found: text.chars().take(64).collect(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(StoreError::Io {
                    op: "reading",
                    path,
                    source,
                });
            }
        };
        Ok(ProducerIds {
            path,
            next,
            block_end: next,
        })
    }

    /// The next unused producer id.
    pub fn allocate(&mut self) -> Result<i64, StoreError> {
        if self.next >= self.block_end {
            let end = self.next + BLOCK_IDS;
            self.persist(end)?;
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }

    fn persist(&self, end: i64) -> Result<(), StoreError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(format!("{end}\n").as_bytes())
            .map_err(io("writing", &tmp))?;
        f.sync_data().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("renaming", &self.path))?;
        match self.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// The block end in the file: one non-negative decimal number and a newline. Anything else (an
/// empty file, a torn or garbled write, a negative number) is not a counter.
fn parse_counter(text: &str) -> Option<i64> {
    let digits = text.strip_suffix('\n')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = ProducerIds::open(dir.path()).expect("open");
        assert_eq!(a.allocate().expect("id"), 0);
        assert_eq!(a.allocate().expect("id"), 1);
        drop(a);
        let mut b = ProducerIds::open(dir.path()).expect("reopen");
        assert_eq!(b.allocate().expect("id"), BLOCK_IDS);
    }

    #[test]
    fn a_damaged_counter_file_stops_start_up_naming_the_file() {
        for damaged in [
            "",
            "\n",
            "12a4\n",
            "-5\n",
            "1000",
            "99999999999999999999\n",
            "\u{0}\u{0}\u{0}",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("kiln-producer-ids"), damaged).expect("write");
            let err = ProducerIds::open(dir.path()).expect_err(damaged);
            let msg = err.to_string();
            assert!(msg.contains("kiln-producer-ids"), "{msg}");
            assert!(matches!(err, StoreError::CorruptCounter { .. }), "{msg}");
        }
    }

    #[test]
    fn a_valid_counter_file_continues_after_its_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kiln-producer-ids"), "5000\n").expect("write");
        let mut ids = ProducerIds::open(dir.path()).expect("open");
        assert_eq!(ids.allocate().expect("id"), 5000);
    }
}
