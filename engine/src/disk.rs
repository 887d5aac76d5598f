//! The storage seam: every byte the log and the snapshot store read or write goes through [`Disk`].
//!
//! Two implementations:
//! - [`UringDisk`]: the real one. Data operations (positional read, write, fdatasync) go through
//!   io_uring via [`crate::rt::fs`]; rare metadata operations (list, remove, rename) are plain
//!   system calls on the shard thread, because they happen once per segment, not per request.
//! - [`SimDisk`]: an in-memory disk for tests that models what a crash does to un-synced data. On
//!   [`SimDisk::crash`], each file keeps its synced prefix plus a random part of what was written
//!   after the last sync (possibly garbled: a torn write); files created since the last directory
//!   sync vanish, and files removed since the last directory sync come back.
//!
//! The clock is part of the seam too ([`Disk::now_ms`]) so segment rolls and retention by time are
//! deterministic under test.

#![allow(
    async_fn_in_trait,
    reason = "shard-local futures: no Send bound wanted"
)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::rt;
use crate::rt::buf::IntoInner;
use crate::rt::io::{AsyncReadAt, AsyncWriteAt};

/// A directory tree of files, with a clock.
pub trait Disk: Clone + 'static {
    type File: DiskFile;
    /// Opens a file for reading and writing; creates it (empty) when `create` is true.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) directly under `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, removals and renames of entries in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Wall-clock milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// An open file with positional I/O. Clones share the same open file.
#[allow(
    clippy::len_without_is_empty,
    reason = "len is a file size, not a collection"
)]
pub trait DiskFile: Clone + 'static {
    /// Writes all of `buf` at `pos`; gives the buffer back for reuse.
    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>);
    /// Reads up to `len` bytes at `pos` (fewer only at end of file).
    async fn read_at(&self, len: usize, pos: u64) -> io::Result<Vec<u8>>;
    /// fdatasync(2): written data (and the size) reach the media.
    async fn sync_data(&self) -> io::Result<()>;
    async fn set_len(&self, len: u64) -> io::Result<()>;
    async fn len(&self) -> io::Result<u64>;
    /// Reserves blocks for `offset..offset + len` without changing the file size (best effort).
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Starts writing the dirty pages of `pos..pos + len` to the device and returns without
    /// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Promises nothing about
    /// durability: it only lets the device work while the log keeps appending, so a later
    /// fdatasync has little left to do. Best effort; errors surface at the next fdatasync.
    async fn write_back(&self, pos: u64, len: u64) -> io::Result<()>;
}

/// Largest single write [`UringFile::write_all_at`] submits; a larger buffer is written as
/// consecutive pieces. Buffered writes are copied into the page cache by the kernel, and on the
/// machine Kiln is measured on (a KVM guest whose page cache is mostly full) a 1 MiB `pwrite`
/// runs at a fraction of the speed of 64-128 KiB ones (page reclaim per call: `dd` to ext4 gave
/// 35-41 MB/s with 1 MiB blocks, 150-300 MB/s with 64-128 KiB), so big coalesced appends are cut.
pub const WRITE_PIECE_BYTES: usize = 128 << 10;

/// The real disk: io_uring for data, direct system calls for rare metadata changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct UringDisk;

/// A file on [`UringDisk`].
#[derive(Clone, Debug)]
pub struct UringFile {
    file: rt::fs::File,
    fd: i32,
}

impl Disk for UringDisk {
    type File = UringFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<UringFile> {
        let file = rt::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)
            .await?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        Ok(UringFile { file, fd })
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = rt::fs::File::open(dir).await?;
        d.sync_all().await
    }
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

impl DiskFile for UringFile {
    async fn write_all_at(&self, mut buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let mut done = 0usize;
        let total = buf.len();
        while done < total {
            let mut f = &self.file;
            // Short writes are legal; write the rest from where the kernel stopped. Large
            // buffers go out in pieces of WRITE_PIECE_BYTES (see there for why).
            let end = total.min(done + WRITE_PIECE_BYTES);
            let slice = rt::buf::IoBuf::slice(buf, done..end);
            let rt::BufResult(res, slice) = f.write_at(slice, pos + done as u64).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => {
                    return (
                        Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                        buf,
                    );
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }
    async fn read_at(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        while buf.len() < len {
            let have = buf.len();
            let rt::BufResult(res, b) = self.file.read_at(buf, pos + have as u64).await;
            buf = b;
            match res {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(len);
        Ok(buf)
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data().await
    }
    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len).await
    }
    async fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata().await?.len())
    }
    async fn write_back(&self, pos: u64, len: u64) -> io::Result<()> {
        let pos = libc::off64_t::try_from(pos)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let len = libc::off64_t::try_from(len)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // sync_file_range may block while the device queue is full, so it runs on the runtime's
        // blocking pool, never on the shard thread. A duplicate fd (the file handle itself is
        // shard-local) stays open until the call returns, even if the segment is closed meanwhile.
        // SAFETY: `self.fd` is open for as long as `self.file` lives, which covers this call.
        let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) }.try_clone_to_owned()?;
        rt::spawn_blocking(move || {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&dup);
            // SAFETY: a plain system call on an fd that `dup` keeps open.
            let rc = unsafe { libc::sync_file_range(fd, pos, len, libc::SYNC_FILE_RANGE_WRITE) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::other("write-back task panicked")))
    }
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: fallocate on an fd we own; KEEP_SIZE reserves blocks without changing the size,
        // so readers and recovery never see a preallocated tail of zeros.
        let rc = unsafe { libc::fallocate(self.fd, libc::FALLOC_FL_KEEP_SIZE, offset, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Simulated disk
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    /// Bytes `..synced_len` survive a crash.
    synced_len: usize,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries as of now.
    entries: BTreeMap<PathBuf, u64>,
    /// Directory entries as of the last sync of each directory (what a crash returns to).
    durable_entries: BTreeMap<PathBuf, u64>,
    dirs: std::collections::BTreeSet<PathBuf>,
    now_ms: i64,
    fail_syncs: bool,
    syncs: u64,
    writebacks: u64,
    preallocated: u64,
}

/// In-memory disk that loses un-synced data on [`SimDisk::crash`]. Single-threaded.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Rc<RefCell<SimState>>,
}

/// A file on [`SimDisk`] (refers to the inode, like an open fd).
#[derive(Clone, Debug)]
pub struct SimFile {
    state: Rc<RefCell<SimState>>,
    inode: u64,
}

impl SimDisk {
    pub fn new(now_ms: i64) -> Self {
        let d = SimDisk::default();
        d.state.borrow_mut().now_ms = now_ms;
        d
    }
    pub fn set_now_ms(&self, now_ms: i64) {
        self.state.borrow_mut().now_ms = now_ms;
    }
    pub fn advance_ms(&self, ms: i64) {
        self.state.borrow_mut().now_ms += ms;
    }
    /// Makes every later `sync_data`/`sync_dir` fail with EIO (until cleared).
    pub fn set_fail_syncs(&self, fail: bool) {
        self.state.borrow_mut().fail_syncs = fail;
    }
    /// Number of successful file syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.state.borrow().syncs
    }
    /// Number of write-back requests so far (they change nothing a crash keeps).
    pub fn writeback_count(&self) -> u64 {
        self.state.borrow().writebacks
    }
    /// Bytes asked to be preallocated so far (a reservation changes nothing a reader sees).
    pub fn preallocated_bytes(&self) -> u64 {
        self.state.borrow().preallocated
    }
    /// Current contents of a file, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.borrow();
        st.entries
            .get(path)
            .and_then(|i| st.inodes.get(i))
            .map(|n| n.data.clone())
    }
    /// Replaces a file's contents (and marks them synced): for corrupting files in tests.
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) {
        let mut st = self.state.borrow_mut();
        if let Some(&i) = st.entries.get(path)
            && let Some(n) = st.inodes.get_mut(&i)
        {
            n.synced_len = data.len();
            n.data = data;
        }
    }

    /// Simulates power loss. `rng(n)` returns a value in `0..n` (the caller's seeded generator).
    ///
    /// 1. Directory entries revert to their last synced state (creations vanish, removals return).
    /// 2. Each file keeps its synced prefix plus a random prefix of the un-synced bytes.
    /// 3. With some probability the kept un-synced part is torn: some bytes are garbled.
    pub fn crash(&self, rng: &mut dyn FnMut(u64) -> u64) {
        let mut st = self.state.borrow_mut();
        st.entries = st.durable_entries.clone();
        let live: std::collections::BTreeSet<u64> = st.entries.values().copied().collect();
        st.inodes.retain(|k, _| live.contains(k));
        for inode in st.inodes.values_mut() {
            let synced = inode.synced_len.min(inode.data.len());
            let unsynced = inode.data.len() - synced;
            let keep = synced + rng(unsynced as u64 + 1) as usize;
            inode.data.truncate(keep);
            if keep > synced && rng(3) == 0 {
                let torn_at = synced + rng((keep - synced) as u64) as usize;
                for b in inode.data.iter_mut().skip(torn_at) {
                    *b = (rng(256) as u8) ^ 0x5a;
                }
            }
            inode.synced_len = inode.data.len();
        }
    }

    fn err(kind: io::ErrorKind, what: &str) -> io::Error {
        io::Error::new(kind, what.to_string())
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        let mut st = self.state.borrow_mut();
        if let Some(&inode) = st.entries.get(path) {
            return Ok(SimFile {
                state: self.state.clone(),
                inode,
            });
        }
        if !create {
            return Err(Self::err(io::ErrorKind::NotFound, "no such file"));
        }
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !st.dirs.contains(&parent) {
            return Err(Self::err(io::ErrorKind::NotFound, "no such directory"));
        }
        st.next_inode += 1;
        let inode = st.next_inode;
        st.inodes.insert(inode, Inode::default());
        st.entries.insert(path.to_path_buf(), inode);
        Ok(SimFile {
            state: self.state.clone(),
            inode,
        })
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Directories themselves are modelled as always durable.
        let mut st = self.state.borrow_mut();
        for a in dir.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.borrow();
        if !st.dirs.contains(dir) {
            return Err(Self::err(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(st
            .entries
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.entries
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| Self::err(io::ErrorKind::NotFound, "no such file"))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        let inode = st
            .entries
            .remove(from)
            .ok_or_else(|| Self::err(io::ErrorKind::NotFound, "no such file"))?;
        st.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        if st.fail_syncs {
            return Err(Self::err(io::ErrorKind::Other, "simulated EIO on fsync"));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let now: Vec<(PathBuf, u64)> = st
            .entries
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        st.durable_entries.retain(|p, _| !in_dir(p));
        st.durable_entries.extend(now);
        Ok(())
    }
    fn now_ms(&self) -> i64 {
        self.state.borrow().now_ms
    }
}

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut Inode) -> R) -> io::Result<R> {
        let mut st = self.state.borrow_mut();
        let inode = st
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| SimDisk::err(io::ErrorKind::NotFound, "stale file"))?;
        Ok(f(inode))
    }
}

impl DiskFile for SimFile {
    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let r = self.with(|n| {
            let pos = pos as usize;
            let end = pos + buf.len();
            if n.data.len() < end {
                n.data.resize(end, 0);
            }
            n.data[pos..end].copy_from_slice(&buf);
            // Overwriting synced bytes makes them un-synced again (conservative).
            n.synced_len = n.synced_len.min(pos);
        });
        (r, buf)
    }
    async fn read_at(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        self.with(|n| {
            let start = (pos as usize).min(n.data.len());
            let end = start.saturating_add(len).min(n.data.len());
            n.data[start..end].to_vec()
        })
    }
    async fn sync_data(&self) -> io::Result<()> {
        if self.state.borrow().fail_syncs {
            return Err(SimDisk::err(io::ErrorKind::Other, "simulated EIO on fsync"));
        }
        self.state.borrow_mut().syncs += 1;
        self.with(|n| n.synced_len = n.data.len())
    }
    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|n| {
            n.data.resize(len as usize, 0);
            n.synced_len = n.synced_len.min(len as usize);
        })
    }
    async fn len(&self) -> io::Result<u64> {
        self.with(|n| n.data.len() as u64)
    }
    fn preallocate(&self, _offset: u64, len: u64) -> io::Result<()> {
        self.state.borrow_mut().preallocated += len;
        Ok(())
    }
    async fn write_back(&self, _pos: u64, _len: u64) -> io::Result<()> {
        // Starting write-back changes nothing a crash keeps: only a sync does.
        self.state.borrow_mut().writebacks += 1;
        Ok(())
    }
}
