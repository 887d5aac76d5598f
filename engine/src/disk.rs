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
//! Direct I/O: [`Disk::open_direct`] opens a log file with a second, `O_DIRECT` descriptor, and
//! [`DiskFile::write_direct_at`] writes whole aligned blocks ([`DIRECT_BLOCK`]) from an
//! [`AlignedBuf`] through it, bypassing the page cache. Reads, syncs and size changes keep using
//! the ordinary descriptor (Linux keeps the two coherent: a direct write drops the page cache's
//! copy of the range it wrote). [`SimDisk`] checks the alignment and models a direct write like any
//! other un-synced write: a crash keeps a random, possibly torn, part of it.
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
    /// Removes the files at `paths`; a missing one is not an error. Unlinking the last name of a
    /// file nobody has open frees its cached pages in the calling thread, hundreds of
    /// milliseconds for a cached 1 GiB segment, so callers close the files first and the io_uring
    /// disk unlinks on the blocking pool, never on the shard thread. Stops at the first failure
    /// and names its path.
    async fn remove_files(&self, paths: Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Opens a file like [`Disk::open`], plus a descriptor for [`DiskFile::write_direct_at`]
    /// (`O_DIRECT`). Fails where the file system refuses direct I/O (tmpfs and others answer
    /// EINVAL); the caller then falls back to [`Disk::open`].
    async fn open_direct(&self, path: &Path, create: bool) -> io::Result<Self::File>;
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
    /// Reserves blocks for `offset..offset + len` and extends the file size over them (reads
    /// there return zeros): direct writes inside the size need no size update, so the file
    /// system runs them concurrently and asynchronously (ext4 serializes and completes
    /// synchronously every direct write that extends the file).
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Writes zeros over `offset..offset + len` (a plain buffered write; the size grows over
    /// them). Once a sync has covered them, later writes there overwrite initialized blocks
    /// inside the file's size, so their fdatasync has no block allocation, extent conversion
    /// or size to record: only the data goes to the device.
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Starts writing the dirty pages of `pos..pos + len` to the device and returns without
    /// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Promises nothing about
    /// durability: it only lets the device work while the log keeps appending, so a later
    /// fdatasync has little left to do. Best effort; errors surface at the next fdatasync.
    async fn write_back(&self, pos: u64, len: u64) -> io::Result<()>;
    /// Whether [`DiskFile::write_direct_at`] is available (the file came from
    /// [`Disk::open_direct`]).
    fn is_direct(&self) -> bool;
    /// Writes all of `buf` at `pos` bypassing the page cache. `pos` and the buffer's length must
    /// be multiples of [`DIRECT_BLOCK`] (EINVAL otherwise). Like a buffered write, the data
    /// survives a crash of the process once this returns, and power loss only after
    /// [`DiskFile::sync_data`] (the device's cache and the file size).
    async fn write_direct_at(&self, buf: AlignedBuf, pos: u64) -> (io::Result<()>, AlignedBuf);
}

/// Removes each of `paths` with `remove`, skipping missing files; stops at the first failure.
fn remove_each(
    paths: &[PathBuf],
    mut remove: impl FnMut(&Path) -> io::Result<()>,
) -> Result<(), (PathBuf, io::Error)> {
    for p in paths {
        match remove(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((p.clone(), e)),
        }
    }
    Ok(())
}

/// Source of [`DiskFile::write_zeros`] (in the zero-initialized data section: no binary size).
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

/// Block size, file position alignment and memory alignment of direct writes.
pub const DIRECT_BLOCK: usize = 4096;

/// A byte buffer whose contents start at a [`DIRECT_BLOCK`]-aligned address, as `O_DIRECT`
/// needs. Its capacity is fixed at creation (a whole number of blocks); it never reallocates.
#[derive(Debug)]
pub struct AlignedBuf {
    /// Backing memory: `off` bytes of slack, then the aligned capacity.
    mem: Vec<u8>,
    off: usize,
    len: usize,
    cap: usize,
}

impl AlignedBuf {
    /// An empty buffer of at least `cap` bytes (rounded up to whole blocks).
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.max(1).next_multiple_of(DIRECT_BLOCK);
        let mem = vec![0u8; cap + DIRECT_BLOCK];
        let addr = mem.as_ptr() as usize;
        let off = (DIRECT_BLOCK - addr % DIRECT_BLOCK) % DIRECT_BLOCK;
        AlignedBuf {
            mem,
            off,
            len: 0,
            cap,
        }
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    pub fn as_slice(&self) -> &[u8] {
        self.mem.get(self.off..self.off + self.len).unwrap_or(&[])
    }
    /// Appends `data`; returns false (and appends nothing) when it does not fit.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> bool {
        let at = self.off + self.len;
        match self.mem.get_mut(at..at + data.len()) {
            Some(dst) if self.len + data.len() <= self.cap => {
                dst.copy_from_slice(data);
                self.len += data.len();
                true
            }
            _ => false,
        }
    }
    /// Zero-fills up to the next whole block; returns false when that does not fit.
    pub fn pad_to_block(&mut self) -> bool {
        let to = self.len.next_multiple_of(DIRECT_BLOCK);
        if to > self.cap {
            return false;
        }
        let (from, end) = (self.off + self.len, self.off + to);
        if let Some(dst) = self.mem.get_mut(from..end) {
            dst.fill(0);
        }
        self.len = to;
        true
    }
    /// Shortens the contents to `len` bytes (no-op when longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl rt::buf::IoBuf for AlignedBuf {
    fn as_init(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Largest single write [`UringFile::write_all_at`] submits; a larger buffer is written as
/// consecutive pieces. Buffered writes to ext4 are handed by io_uring to a worker thread, and
/// waking that worker for each write (an inter-processor interrupt, costly in a VM) dominated the
/// shard's time with small pieces: 64 KiB appends with 16 in flight ran at 450-480 MiB/s with
/// 128 KiB pieces and 1,270-1,600 MiB/s with 1 MiB ones, the page cache full or not
/// (`bench/results/2026-11-28-engine-chunks.md`).
pub const WRITE_PIECE_BYTES: usize = 1 << 20;

/// The real disk: io_uring for data, direct system calls for rare metadata changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct UringDisk;

/// A file on [`UringDisk`].
#[derive(Clone, Debug)]
pub struct UringFile {
    file: rt::fs::File,
    fd: i32,
    /// The same file opened with `O_DIRECT`, for [`DiskFile::write_direct_at`].
    direct: Option<rt::fs::File>,
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
        Ok(UringFile {
            file,
            fd,
            direct: None,
        })
    }
    async fn open_direct(&self, path: &Path, create: bool) -> io::Result<UringFile> {
        let mut f = self.open(path, create).await?;
        let direct = rt::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .await?;
        f.direct = Some(direct);
        Ok(f)
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
    async fn remove_files(&self, paths: Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)> {
        let first = paths.first().cloned().unwrap_or_default();
        rt::spawn_blocking(move || remove_each(&paths, |p| std::fs::remove_file(p)))
            .await
            .unwrap_or_else(|_| Err((first, io::Error::other("file removal task panicked"))))
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
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
    async fn write_direct_at(&self, mut buf: AlignedBuf, pos: u64) -> (io::Result<()>, AlignedBuf) {
        let Some(file) = &self.direct else {
            let e = io::Error::new(io::ErrorKind::Unsupported, "file not opened for direct I/O");
            return (Err(e), buf);
        };
        if !pos.is_multiple_of(DIRECT_BLOCK as u64) || !buf.len().is_multiple_of(DIRECT_BLOCK) {
            return (Err(io::Error::from_raw_os_error(libc::EINVAL)), buf);
        }
        let mut done = 0usize;
        let total = buf.len();
        while done < total {
            let mut f = file;
            let slice = rt::buf::IoBuf::slice(buf, done..total);
            let rt::BufResult(res, slice) = f.write_at(slice, pos + done as u64).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "write returned 0");
                    return (Err(e), buf);
                }
                // A short direct write ends on a block boundary in practice; if it did not,
                // the rest fails with EINVAL and the log fails rather than writing garbage.
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
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
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: fallocate on an fd we own (mode 0: allocate and extend the size).
        let rc = unsafe { libc::fallocate(self.fd, 0, offset, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64) as usize;
            let at = libc::off_t::try_from(offset + done)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: pwrite on an fd we own from a static buffer of at least `n` bytes.
            let rc = unsafe { libc::pwrite(self.fd, ZEROS.as_ptr().cast(), n, at) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            done += rc as u64;
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Simulated disk
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
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
    /// `open_direct` fails with EINVAL (a file system without direct I/O).
    refuse_direct: bool,
    /// Direct writes fail with EINVAL (a file system accepting `O_DIRECT` only at open).
    fail_direct_writes: bool,
    direct_writes: u64,
    syncs: u64,
    writebacks: u64,
    preallocated: u64,
    zero_filled: u64,
    /// One entry per open (clones of a [`SimFile`] share it): which inode it refers to, alive
    /// while any clone is.
    handles: Vec<(u64, std::rc::Weak<()>)>,
    /// Files [`Disk::remove_files`] unlinked while some handle still had them open.
    unlinked_open: u64,
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
    direct: bool,
    /// Alive while this open (any clone of it) is: see `SimState::handles`. Never read; only
    /// its reference count matters.
    _handle: Rc<()>,
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
    /// Makes `open_direct` fail with EINVAL, as tmpfs does (until cleared).
    pub fn set_refuse_direct(&self, refuse: bool) {
        self.state.borrow_mut().refuse_direct = refuse;
    }
    /// Makes direct writes fail with EINVAL (until cleared).
    pub fn set_fail_direct_writes(&self, fail: bool) {
        self.state.borrow_mut().fail_direct_writes = fail;
    }
    /// Number of direct writes so far.
    pub fn direct_write_count(&self) -> u64 {
        self.state.borrow().direct_writes
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
    /// Bytes written as zeros ahead of the writes so far ([`DiskFile::write_zeros`]).
    pub fn zero_filled_bytes(&self) -> u64 {
        self.state.borrow().zero_filled
    }
    /// Files that [`Disk::remove_files`] unlinked while a [`SimFile`] still had them open (on
    /// a real disk, the last close of such a file frees its cached pages in the closing thread).
    pub fn unlinked_while_open(&self) -> u64 {
        self.state.borrow().unlinked_open
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

    /// A new disk holding a copy of this one's files and clock, with no open handles: the
    /// machine restarted after [`SimDisk::crash`]. Tasks of the crashed process that still hold
    /// handles of this disk cannot touch the copy.
    pub fn fork(&self) -> SimDisk {
        let st = self.state.borrow();
        let copy = SimState {
            inodes: st.inodes.clone(),
            next_inode: st.next_inode,
            entries: st.entries.clone(),
            durable_entries: st.durable_entries.clone(),
            dirs: st.dirs.clone(),
            now_ms: st.now_ms,
            ..SimState::default()
        };
        SimDisk {
            state: Rc::new(RefCell::new(copy)),
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
        st.handles.retain(|(_, h)| h.strong_count() > 0);
        if let Some(&inode) = st.entries.get(path) {
            let handle = Rc::new(());
            st.handles.push((inode, Rc::downgrade(&handle)));
            return Ok(SimFile {
                state: self.state.clone(),
                inode,
                direct: false,
                _handle: handle,
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
        let handle = Rc::new(());
        st.handles.push((inode, Rc::downgrade(&handle)));
        Ok(SimFile {
            state: self.state.clone(),
            inode,
            direct: false,
            _handle: handle,
        })
    }
    async fn open_direct(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        if self.state.borrow().refuse_direct {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut f = self.open(path, create).await?;
        f.direct = true;
        Ok(f)
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
    async fn remove_files(&self, paths: Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)> {
        remove_each(&paths, |p| {
            let mut st = self.state.borrow_mut();
            if let Some(&inode) = st.entries.get(p)
                && st
                    .handles
                    .iter()
                    .any(|(i, h)| *i == inode && h.strong_count() > 0)
            {
                st.unlinked_open += 1;
            }
            drop(st);
            self.remove_file(p)
        })
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

impl SimFile {
    fn write_bytes(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.with(|n| {
            let pos = pos as usize;
            let end = pos + buf.len();
            // Overwriting synced bytes with different ones makes them un-synced again (a crash
            // may keep them torn). Rewriting identical bytes (a direct write's partial last
            // block, written again with more data after it) leaves them as they were: a torn
            // write of the same bytes still holds those bytes.
            let old = n.data.get(pos..end.min(n.data.len())).unwrap_or(&[]);
            let same = old.iter().zip(buf).take_while(|(a, b)| a == b).count();
            if n.data.len() < end {
                n.data.resize(end, 0);
            }
            n.data[pos..end].copy_from_slice(buf);
            n.synced_len = n.synced_len.min(pos + same);
        })
    }
}

impl DiskFile for SimFile {
    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let r = self.write_bytes(&buf, pos);
        (r, buf)
    }
    fn is_direct(&self) -> bool {
        self.direct
    }
    async fn write_direct_at(&self, buf: AlignedBuf, pos: u64) -> (io::Result<()>, AlignedBuf) {
        if !self.direct {
            let e = io::Error::new(io::ErrorKind::Unsupported, "file not opened for direct I/O");
            return (Err(e), buf);
        }
        let addr = buf.as_slice().as_ptr() as usize;
        if !pos.is_multiple_of(DIRECT_BLOCK as u64)
            || !buf.len().is_multiple_of(DIRECT_BLOCK)
            || !addr.is_multiple_of(DIRECT_BLOCK)
        {
            return (Err(io::Error::from_raw_os_error(libc::EINVAL)), buf);
        }
        if self.state.borrow().fail_direct_writes {
            return (Err(io::Error::from_raw_os_error(libc::EINVAL)), buf);
        }
        self.state.borrow_mut().direct_writes += 1;
        let r = self.write_bytes(buf.as_slice(), pos);
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
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.state.borrow_mut().preallocated += len;
        // The size grows over zeros; like any size change, it is durable only after a sync.
        self.with(|n| {
            let end = (offset + len) as usize;
            if n.data.len() < end {
                n.data.resize(end, 0);
            }
        })
    }
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        self.state.borrow_mut().zero_filled += len;
        let zeros = vec![0u8; len as usize];
        self.write_bytes(&zeros, offset)
    }
    async fn write_back(&self, _pos: u64, _len: u64) -> io::Result<()> {
        // Starting write-back changes nothing a crash keeps: only a sync does.
        self.state.borrow_mut().writebacks += 1;
        Ok(())
    }
}
