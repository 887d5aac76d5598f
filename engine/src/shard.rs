//! Thread-per-core shards: one pinned thread per core, each with its own runtime, joined by
//! bounded mailboxes.
//!
//! A shard owns its state (logs, partitions, sessions) outright; nothing is shared between shards
//! except through mailboxes, so shard code needs no locks. Work for a key goes to the shard that
//! [`placement`] names.
//!
//! # Lifecycle
//!
//! 1. [`ShardSet::start`] spawns `count` threads. Each pins itself to one CPU of the process's
//!    allowed set (`sched_setaffinity`; failure is logged, not fatal: containers may forbid it),
//!    builds its runtime, and reports success or failure back; `start` returns an error if any
//!    shard could not build its runtime (e.g. io_uring unavailable).
//! 2. Each shard runs `entry(ShardCtx)` to completion. The entry future should return once
//!    [`crate::shutdown::Shutdown::wait`] resolves.
//! 3. Then the shard flushes its commit group (every pending append becomes durable) and its
//!    runtime is dropped.
//! 4. [`ShardSet::join`] waits for every thread and reports a shard that panicked.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::commit::CommitGroup;
use crate::rt;
use crate::shutdown::Shutdown;

/// Index of a shard, `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

impl ShardId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// Shard set configuration.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Number of shards; `None` = the number of CPUs this process may run on.
    pub count: Option<usize>,
    /// Pin each shard thread to one CPU.
    pub pin: bool,
    /// Capacity of each shard's inbound mailbox (`mailbox_messages_max`); senders wait when full.
    pub mailbox_messages_max: usize,
    /// Thread name prefix.
    pub name: String,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            count: None,
            pin: true,
            mailbox_messages_max: 1024,
            name: "kiln-shard".into(),
        }
    }
}

/// Largest supported shard count.
pub const SHARDS_MAX: usize = 1024;

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("invalid shard configuration: {0}")]
    Config(&'static str),
    #[error("{shard}: cannot start: {source}")]
    Start { shard: ShardId, source: io::Error },
    #[error("{shard}: panicked")]
    Panicked { shard: ShardId },
    #[error("mailbox of {shard} is closed")]
    MailboxClosed { shard: ShardId },
    #[error("mailbox of {shard} is full")]
    MailboxFull { shard: ShardId },
    #[error("no such shard {shard} (count {count})")]
    NoSuchShard { shard: ShardId, count: usize },
}

/// Cross-shard mailboxes: one bounded inbound queue per shard.
pub struct Mailboxes<M> {
    senders: Arc<[flume::Sender<M>]>,
    inbox: flume::Receiver<M>,
}

impl<M> Clone for Mailboxes<M> {
    fn clone(&self) -> Self {
        Mailboxes {
            senders: self.senders.clone(),
            inbox: self.inbox.clone(),
        }
    }
}

/// What a shard's entry function receives.
pub struct ShardCtx<M> {
    pub id: ShardId,
    pub count: usize,
    pub shutdown: Shutdown,
    pub mailboxes: Mailboxes<M>,
}

impl<M: Send + 'static> ShardCtx<M> {
    fn sender(&self, to: ShardId) -> Result<&flume::Sender<M>, ShardError> {
        self.mailboxes
            .senders
            .get(to.index())
            .ok_or(ShardError::NoSuchShard {
                shard: to,
                count: self.count,
            })
    }
    /// Sends to shard `to`, waiting while its mailbox is full (backpressure).
    pub async fn send(&self, to: ShardId, msg: M) -> Result<(), ShardError> {
        self.sender(to)?
            .send_async(msg)
            .await
            .map_err(|_| ShardError::MailboxClosed { shard: to })
    }
    /// Sends without waiting.
    pub fn try_send(&self, to: ShardId, msg: M) -> Result<(), ShardError> {
        self.sender(to)?.try_send(msg).map_err(|e| match e {
            flume::TrySendError::Full(_) => ShardError::MailboxFull { shard: to },
            flume::TrySendError::Disconnected(_) => ShardError::MailboxClosed { shard: to },
        })
    }
    /// Receives the next message for this shard (`None` once every sender is gone).
    pub async fn recv(&self) -> Option<M> {
        self.mailboxes.inbox.recv_async().await.ok()
    }
    /// This shard's inbound queue, e.g. to poll it in a select loop.
    pub fn inbox(&self) -> &flume::Receiver<M> {
        &self.mailboxes.inbox
    }
    /// The shard owning `key`.
    pub fn placement(&self, key: u64) -> ShardId {
        placement(key, self.count)
    }
}

/// Deterministic shard for `key` among `count` shards (same answer on every run and machine).
pub fn placement(key: u64, count: usize) -> ShardId {
    let count = count.clamp(1, SHARDS_MAX) as u64;
    // splitmix64 finaliser, then Lemire's multiply-shift range reduction (no modulo bias to speak of).
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ShardId(((u128::from(z) * u128::from(count)) >> 64) as u32)
}

/// Shard of a Kafka partition: FNV-1a of the topic name and the partition number.
pub fn placement_partition(topic: &str, partition: i32, count: usize) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(partition.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    placement(h, count)
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads the set we own.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: building a cpu_set_t with one CPU and applying it to the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Running shard threads.
pub struct ShardSet {
    threads: Vec<(ShardId, JoinHandle<()>)>,
    shutdown: Shutdown,
}

impl ShardSet {
    /// Starts the shards; each runs `entry(ctx)` on its own runtime. Returns once every shard's
    /// runtime is built (or the first failure).
    pub fn start<M, F, Fut>(
        config: &ShardConfig,
        shutdown: Shutdown,
        entry: F,
    ) -> Result<ShardSet, ShardError>
    where
        M: Send + 'static,
        F: Fn(ShardCtx<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let cpus = allowed_cpus();
        let count = config.count.unwrap_or(cpus.len().max(1));
        if count == 0 || count > SHARDS_MAX {
            return Err(ShardError::Config("shard count must be in 1..=1024"));
        }
        if config.mailbox_messages_max == 0 {
            return Err(ShardError::Config(
                "mailbox_messages_max must be at least 1",
            ));
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| flume::bounded::<M>(config.mailbox_messages_max))
            .unzip();
        let senders: Arc<[flume::Sender<M>]> = senders.into();
        let entry = Arc::new(entry);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(ShardId, io::Result<()>)>();
        let mut threads = Vec::with_capacity(count);
        for (i, inbox) in receivers.into_iter().enumerate() {
            let id = ShardId(i as u32);
            let cpu = if config.pin && !cpus.is_empty() {
                cpus.get(i % cpus.len()).copied()
            } else {
                None
            };
            let ctx = ShardCtx {
                id,
                count,
                shutdown: shutdown.clone(),
                mailboxes: Mailboxes {
                    senders: senders.clone(),
                    inbox,
                },
            };
            let entry = entry.clone();
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{}-{i}", config.name))
                .spawn(move || {
                    if let Some(cpu) = cpu
                        && let Err(e) = pin_to(cpu)
                    {
                        tracing::warn!(shard = i, cpu, error = %e, "cannot pin shard thread");
                    }
                    let runtime = match rt::build_runtime() {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready.send((id, Err(e)));
                            return;
                        }
                    };
                    let _ = ready.send((id, Ok(())));
                    drop(ready);
                    runtime.block_on(async move {
                        entry(ctx).await;
                        CommitGroup::close_current().await;
                    });
                })
                .map_err(|source| ShardError::Start { shard: id, source })?;
            threads.push((id, handle));
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..count {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(source))) => {
                    failure.get_or_insert(ShardError::Start { shard, source });
                }
                Err(_) => break,
            }
        }
        let set = ShardSet { threads, shutdown };
        if let Some(e) = failure {
            set.shutdown.request();
            let _ = set.join();
            return Err(e);
        }
        Ok(set)
    }

    pub fn count(&self) -> usize {
        self.threads.len()
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Waits for every shard thread to finish.
    pub fn join(self) -> Result<(), ShardError> {
        let mut result = Ok(());
        for (id, t) in self.threads {
            if t.join().is_err() && result.is_ok() {
                result = Err(ShardError::Panicked { shard: id });
            }
        }
        result
    }
}

/// Runs one shard on the current thread (e.g. the ZooKeeper server): builds a runtime, runs
/// `entry`, then flushes the thread's commit group. Blocks until done.
pub fn run_on_current_thread<F, Fut, T>(entry: F) -> io::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    rt::block_on(async move {
        let out = entry().await;
        CommitGroup::close_current().await;
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_in_range() {
        for count in 1..9 {
            for key in 0..1000u64 {
                let s = placement(key, count);
                assert!(s.index() < count);
                assert_eq!(s, placement(key, count));
            }
        }
        // Spread: every shard gets keys.
        let mut hits = [0u32; 4];
        for key in 0..4000u64 {
            hits[placement(key, 4).index()] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
        assert_eq!(placement_partition("t", 0, 1), ShardId(0));
    }

    #[test]
    fn shards_exchange_messages_and_stop_on_shutdown() {
        let shutdown = Shutdown::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = ShardConfig {
            count: Some(3),
            ..Default::default()
        };
        let set = ShardSet::start(&cfg, shutdown.clone(), move |ctx: ShardCtx<u32>| {
            let tx = tx.clone();
            async move {
                // Each shard sends its id to the next one, then reports what it received.
                let next = ShardId(((ctx.id.0 as usize + 1) % ctx.count) as u32);
                ctx.send(next, ctx.id.0).await.unwrap();
                let got = ctx.recv().await.unwrap();
                tx.send((ctx.id.0, got)).unwrap();
                ctx.shutdown.wait().await;
            }
        })
        .unwrap();
        let mut got: Vec<(u32, u32)> = (0..3).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![(0, 2), (1, 0), (2, 1)]);
        set.shutdown().request();
        set.join().unwrap();
    }
}
