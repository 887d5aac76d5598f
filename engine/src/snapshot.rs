//! Snapshot store for state machines (the znode tree, group offsets): whole-state images named by
//! a caller-provided `u64` (e.g. a zxid), written atomically, the newest N kept.
//!
//! # File format (big-endian)
//!
//! ```text
//! <dir>/<prefix>-<id, 20 digits>.snap
//!
//!  0  4 magic            "KSNP"
//!  4  2 version          1
//!  6  2 reserved         0
//!  8  8 payload_length   u64
//! 16  4 payload_crc      CRC-32C of the payload
//! 20  4 header_crc       CRC-32C of bytes 0..20
//! 24  . payload
//! ```
//!
//! # Durability contract of [`SnapshotStore::save`] (steps in order)
//!
//! 1. write header + payload to `<name>.tmp` (created fresh);
//! 2. fdatasync the temp file;
//! 3. rename it to `<name>` (atomic: readers see the old set or the new file, never a partial one);
//! 4. fsync the directory, making the rename durable;
//! 5. delete snapshots beyond the newest `keep` and fsync the directory again.
//!
//! [`SnapshotStore::save_image`] runs the same steps for an image already built
//! ([`SnapshotImage`]: header and checksum computed by whoever built it, typically a blocking-pool
//! thread), and [`SnapshotStore::save_encoded`] builds the image on a blocking-pool thread (encode,
//! copy, checksum) and then saves it, so a large state never costs the shard thread CPU time.
//!
//! When `save` returns `Ok`, the snapshot survives power loss. A crash before step 4 leaves at
//! most a `.tmp` file, deleted on the next open. [`SnapshotStore::load_newest`] returns the newest
//! snapshot whose header and payload checksums verify, skipping (and logging) damaged ones.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::disk::{Disk, DiskFile, UringDisk};

const MAGIC: &[u8; 4] = b"KSNP";
const VERSION: u16 = 1;
pub const SNAPSHOT_HEADER_LEN: usize = 24;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("snapshot of {size} bytes exceeds snapshot_bytes_max {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("invalid snapshot store configuration: {0}")]
    Config(&'static str),
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes the 24-byte header for `payload`.
pub fn encode_header(payload: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&(payload.len() as u64).to_be_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    let hc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&hc.to_be_bytes());
    h
}

/// A whole snapshot file image (header + payload), ready to be written by
/// [`SnapshotStore::save_image`]. Building it copies and checksums the payload: do it where that
/// costs nothing that matters (a blocking-pool thread; see [`SnapshotStore::save_encoded`]).
#[derive(Debug, Clone)]
pub struct SnapshotImage {
    bytes: Vec<u8>,
}

impl SnapshotImage {
    /// The image of `payload`: header (with the payload's CRC-32C), then the payload.
    pub fn new(payload: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
        bytes.extend_from_slice(&encode_header(payload));
        bytes.extend_from_slice(payload);
        SnapshotImage { bytes }
    }

    /// Payload bytes (the image minus its header).
    pub fn payload_len(&self) -> u64 {
        (self.bytes.len() - SNAPSHOT_HEADER_LEN) as u64
    }

    /// The file image.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Validates a whole snapshot file image; returns the payload.
pub fn decode(bytes: &[u8]) -> Result<&[u8], String> {
    let h = bytes
        .get(..SNAPSHOT_HEADER_LEN)
        .ok_or_else(|| format!("file of {} bytes has no header", bytes.len()))?;
    let field = |r: std::ops::Range<usize>| h.get(r).unwrap_or(&[]);
    if field(0..4) != MAGIC {
        return Err("bad magic".into());
    }
    let be32 = |r| u32::from_be_bytes(field(r).try_into().unwrap_or([0; 4]));
    if crc32c::crc32c(field(0..20)) != be32(20..24) {
        return Err("header checksum mismatch".into());
    }
    let version = u16::from_be_bytes(field(4..6).try_into().unwrap_or([0; 2]));
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let len = u64::from_be_bytes(field(8..16).try_into().unwrap_or([0; 8]));
    let payload = bytes.get(SNAPSHOT_HEADER_LEN..).unwrap_or(&[]);
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32c::crc32c(payload) != be32(16..20) {
        return Err("payload checksum mismatch".into());
    }
    Ok(payload)
}

/// A directory of snapshots with one name prefix.
pub struct SnapshotStore<D: Disk = UringDisk> {
    disk: D,
    dir: PathBuf,
    prefix: String,
    keep: usize,
    /// `snapshot_bytes_max`: larger payloads are refused on save and ignored on load.
    pub snapshot_bytes_max: u64,
}

impl SnapshotStore<UringDisk> {
    /// Opens (creating the directory) a store on the real disk.
    pub async fn open(
        dir: impl AsRef<Path>,
        prefix: &str,
        keep: usize,
    ) -> Result<Self, SnapshotError> {
        Self::open_with(UringDisk, dir, prefix, keep).await
    }
}

impl<D: Disk> SnapshotStore<D> {
    pub async fn open_with(
        disk: D,
        dir: impl AsRef<Path>,
        prefix: &str,
        keep: usize,
    ) -> Result<Self, SnapshotError> {
        if keep == 0 {
            return Err(SnapshotError::Config("keep must be at least 1"));
        }
        if prefix.is_empty() || prefix.contains(['/', '.']) {
            return Err(SnapshotError::Config(
                "prefix must be non-empty without '/' or '.'",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir)
            .map_err(io_err("create directory", &dir))?;
        let store = SnapshotStore {
            disk,
            dir,
            prefix: prefix.to_string(),
            keep,
            snapshot_bytes_max: 1 << 34,
        };
        // Leftovers of a save interrupted before its rename.
        for name in store
            .disk
            .list_dir(&store.dir)
            .map_err(io_err("list", &store.dir))?
        {
            if name.starts_with(&format!("{}-", store.prefix)) && name.ends_with(".snap.tmp") {
                let _ = store.disk.remove_file(&store.dir.join(&name));
            }
        }
        Ok(store)
    }

    fn name(&self, id: u64) -> String {
        format!("{}-{id:020}.snap", self.prefix)
    }

    pub fn path(&self, id: u64) -> PathBuf {
        self.dir.join(self.name(id))
    }

    /// Ids of the snapshots present, ascending.
    pub fn list(&self) -> Result<Vec<u64>, SnapshotError> {
        let p = format!("{}-", self.prefix);
        let mut ids: Vec<u64> = self
            .disk
            .list_dir(&self.dir)
            .map_err(io_err("list", &self.dir))?
            .iter()
            .filter_map(|n| n.strip_prefix(&p)?.strip_suffix(".snap")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Saves `payload` as snapshot `id` (steps in the module docs). Durable when it returns.
    /// Copies and checksums `payload` on the calling thread; see [`Self::save_encoded`] for large
    /// states.
    pub async fn save(&self, id: u64, payload: &[u8]) -> Result<PathBuf, SnapshotError> {
        self.check_size(payload.len() as u64)?;
        self.save_image(id, SnapshotImage::new(payload)).await
    }

    /// Runs `encode` on a blocking-pool thread, builds the image there (copy and checksum), then
    /// saves it as snapshot `id` like [`Self::save`]. The calling (shard) thread only issues the
    /// writes, syncs and renames. Durable when it returns.
    pub async fn save_encoded<F>(&self, id: u64, encode: F) -> Result<PathBuf, SnapshotError>
    where
        F: FnOnce() -> Vec<u8> + Send + 'static,
    {
        let max = self.snapshot_bytes_max;
        let image = crate::rt::spawn_blocking(move || {
            let payload = encode();
            if payload.len() as u64 > max {
                return Err(payload.len() as u64);
            }
            Ok(SnapshotImage::new(&payload))
        })
        .await
        .map_err(|_| SnapshotError::Io {
            op: "encode",
            path: self.path(id),
            source: std::io::Error::other("the snapshot encoding thread panicked"),
        })?
        .map_err(|size| SnapshotError::TooLarge { size, max })?;
        self.save_image(id, image).await
    }

    fn check_size(&self, size: u64) -> Result<(), SnapshotError> {
        if size > self.snapshot_bytes_max {
            return Err(SnapshotError::TooLarge {
                size,
                max: self.snapshot_bytes_max,
            });
        }
        Ok(())
    }

    /// Saves an image built beforehand (steps 1-5 of the module docs). Durable when it returns.
    pub async fn save_image(
        &self,
        id: u64,
        image: SnapshotImage,
    ) -> Result<PathBuf, SnapshotError> {
        self.check_size(image.payload_len())?;
        let path = self.path(id);
        let tmp = self.dir.join(format!("{}.tmp", self.name(id)));
        let image = image.bytes;
        // 1.
        let _ = self.disk.remove_file(&tmp);
        let f = self
            .disk
            .open(&tmp, true)
            .await
            .map_err(io_err("create", &tmp))?;
        f.write_all_at(image, 0)
            .await
            .0
            .map_err(io_err("write", &tmp))?;
        // 2.
        f.sync_data().await.map_err(io_err("fdatasync", &tmp))?;
        drop(f);
        // 3.
        self.disk
            .rename(&tmp, &path)
            .map_err(io_err("rename", &tmp))?;
        // 4.
        self.disk
            .sync_dir(&self.dir)
            .await
            .map_err(io_err("fsync directory", &self.dir))?;
        // 5.
        let ids = self.list()?;
        if ids.len() > self.keep {
            for old in &ids[..ids.len() - self.keep] {
                let p = self.path(*old);
                self.disk.remove_file(&p).map_err(io_err("remove", &p))?;
            }
            self.disk
                .sync_dir(&self.dir)
                .await
                .map_err(io_err("fsync directory", &self.dir))?;
        }
        Ok(path)
    }

    /// Loads snapshot `id`, verifying its checksums.
    pub async fn load(&self, id: u64) -> Result<Vec<u8>, SnapshotError> {
        let path = self.path(id);
        let f = self
            .disk
            .open(&path, false)
            .await
            .map_err(io_err("open", &path))?;
        let len = f.len().await.map_err(io_err("stat", &path))?;
        if len > self.snapshot_bytes_max + SNAPSHOT_HEADER_LEN as u64 {
            return Err(SnapshotError::TooLarge {
                size: len,
                max: self.snapshot_bytes_max,
            });
        }
        let mut bytes = f
            .read_at(len as usize, 0)
            .await
            .map_err(io_err("read", &path))?;
        decode(&bytes).map_err(|reason| SnapshotError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        bytes.drain(..SNAPSHOT_HEADER_LEN);
        Ok(bytes)
    }

    /// The newest snapshot that verifies, as `(id, payload)`; damaged ones are skipped.
    pub async fn load_newest(&self) -> Result<Option<(u64, Vec<u8>)>, SnapshotError> {
        for id in self.list()?.into_iter().rev() {
            match self.load(id).await {
                Ok(p) => return Ok(Some((id, p))),
                Err(e @ (SnapshotError::Corrupt { .. } | SnapshotError::TooLarge { .. })) => {
                    tracing::warn!(error = %e, "skipping damaged snapshot");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;

    #[test]
    fn save_load_keep_newest() {
        crate::rt::block_on(async {
            let disk = SimDisk::new(0);
            let dir = Path::new("/snap");
            let s = SnapshotStore::open_with(disk.clone(), dir, "tree", 2)
                .await
                .unwrap();
            assert!(s.load_newest().await.unwrap().is_none());
            for id in [5u64, 9, 12] {
                s.save(id, format!("state-{id}").as_bytes()).await.unwrap();
            }
            assert_eq!(s.list().unwrap(), vec![9, 12]);
            assert_eq!(
                s.load_newest().await.unwrap(),
                Some((12, b"state-12".to_vec()))
            );
            // Damage the newest: the previous one is returned.
            let mut bytes = disk.contents(&s.path(12)).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            disk.overwrite(&s.path(12), bytes);
            assert_eq!(
                s.load_newest().await.unwrap(),
                Some((9, b"state-9".to_vec()))
            );
        })
        .unwrap();
    }

    #[test]
    fn crash_keeps_saved_snapshots_only() {
        crate::rt::block_on(async {
            let disk = SimDisk::new(0);
            let dir = Path::new("/snap");
            let s = SnapshotStore::open_with(disk.clone(), dir, "tree", 3)
                .await
                .unwrap();
            s.save(1, b"one").await.unwrap();
            let mut seed = 7u64;
            disk.crash(&mut |n| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) % n.max(1)
            });
            let s = SnapshotStore::open_with(disk.clone(), dir, "tree", 3)
                .await
                .unwrap();
            assert_eq!(s.load_newest().await.unwrap(), Some((1, b"one".to_vec())));
        })
        .unwrap();
    }

    #[test]
    fn save_encoded_and_save_image_write_what_save_writes() {
        crate::rt::block_on(async {
            let disk = SimDisk::new(0);
            let dir = Path::new("/snap");
            let mut s = SnapshotStore::open_with(disk.clone(), dir, "tree", 5)
                .await
                .unwrap();
            s.save(1, b"state").await.unwrap();
            s.save_encoded(2, || b"state".to_vec()).await.unwrap();
            s.save_image(3, SnapshotImage::new(b"state")).await.unwrap();
            let one = disk.contents(&s.path(1)).unwrap();
            assert_eq!(disk.contents(&s.path(2)).unwrap(), one);
            assert_eq!(disk.contents(&s.path(3)).unwrap(), one);
            assert_eq!(SnapshotImage::new(b"state").as_bytes(), &one[..]);
            assert_eq!(s.load_newest().await.unwrap(), Some((3, b"state".to_vec())));
            // The size limit holds for every path; nothing is written.
            s.snapshot_bytes_max = 4;
            assert!(matches!(
                s.save_encoded(4, || b"state".to_vec()).await,
                Err(SnapshotError::TooLarge { size: 5, max: 4 })
            ));
            assert!(matches!(
                s.save_image(4, SnapshotImage::new(b"state")).await,
                Err(SnapshotError::TooLarge { .. })
            ));
            assert_eq!(s.list().unwrap(), vec![1, 2, 3]);
        })
        .unwrap();
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode(b"").is_err());
        assert!(decode(&[0u8; 40]).is_err());
        let mut img = encode_header(b"abc").to_vec();
        img.extend_from_slice(b"abc");
        assert_eq!(decode(&img).unwrap(), b"abc");
        img.push(0);
        assert!(decode(&img).is_err());
    }
}
