//! Shards: one thread with its own runtime per core, the partitions it owns, and the mailboxes
//! through which the other shards reach it.
//!
//! ```text
//!            +---------------- Shared (Send + Sync, one per broker) ----------------+
//!            | config, catalog (Mutex, never held across .await), mailboxes,         |
//!            | connection count, producer-id allocator, advertised endpoint          |
//!            +-----------------------------------------------------------------------+
//!   shard 0: accept loop + connections + partitions placed on 0 + GroupService
//!            + the fetch sessions its connections opened
//!   shard 1: accept loop + connections + partitions placed on 1 + its fetch sessions
//!   ...
//! ```
//!
//! A partition is owned by exactly one shard ([`placement`]); only that shard opens its log. A
//! request that touches partitions of other shards sends each owner a [`Job`] through the owner's
//! bounded mailbox and awaits the reply; a full mailbox makes the sender wait (backpressure).
//! Group-coordinator requests go to shard 0, which owns the `GroupService`.
//!
//! Connections: one listening socket is bound at start-up and every shard accepts on it (each
//! shard holds a duplicate of the descriptor; the kernel hands each new connection to one waiting
//! accept). The shard that accepted a connection serves it to the end and writes its responses
//! in request order. Rejected alternative: SO_REUSEPORT per shard, which cannot bind port 0 for
//! tests and pins a connection by hash even when its shard is busy.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kiln_engine::shard::{ShardCtx, ShardId};

use crate::catalog::{Catalog, CatalogStore};
use crate::config::{BrokerConfig, Endpoint};
use crate::handlers::fetch::session::FetchSessionCache;
use crate::partition::Partition;
use crate::producer_ids::ProducerIds;

/// Jobs a mailbox may hold before senders wait.
pub const MAILBOX_JOBS_MAX: usize = 1024;

/// A unit of work run on a shard.
pub type Job = Box<dyn FnOnce(Rc<ShardState>) -> LocalFuture<()> + Send>;

/// A boxed shard-local future.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The shard that owns `partition` of `topic` among `shards` (the engine's stable placement,
/// so a partition stays on the same shard across restarts with the same shard count).
pub fn placement(topic: &str, partition: i32, shards: usize) -> usize {
    kiln_engine::shard::placement_partition(topic, partition, shards).index()
}

/// Broker-wide state shared by every shard.
pub struct Shared {
    pub config: BrokerConfig,
    pub catalog: Mutex<Catalog>,
    pub store: CatalogStore,
    pub shard_count: usize,
    pub connections: AtomicU32,
    pub producer_ids: Mutex<ProducerIds>,
    pub cluster_id: String,
    /// The endpoint returned in Metadata (the bound port when the configured port was 0).
    pub advertised: OnceLock<Endpoint>,
}

impl Shared {
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        placement(topic, partition, self.shard_count())
    }

    /// Locks the catalog. A poisoned lock means a shard panicked while changing it; with
    /// `panic = "abort"` that cannot happen, so the state inside is used as is.
    pub fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn advertised(&self) -> Endpoint {
        self.advertised
            .get()
            .cloned()
            .unwrap_or_else(|| self.config.advertised.clone())
    }
}

/// `GroupService::open`'s check that a partition exists.
pub type PartitionExists = Rc<dyn Fn(&str, i32) -> bool>;

/// A shard-local key of a partition.
pub type TopicPartition = (Rc<str>, i32);

/// One shard's state. Lives on its thread only.
pub struct ShardState {
    pub id: usize,
    pub ctx: ShardCtx<Job>,
    pub shared: Arc<Shared>,
    pub partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// Record bytes held by in-flight fetch responses of this shard.
    pub fetch_memory_bytes: Cell<u64>,
    /// The group coordinator (shard 0 only).
    pub group: RefCell<Option<Rc<crate::group::GroupService>>>,
    /// Incremental fetch sessions (KIP-227) created on this shard; a session's id names its shard
    /// ([`crate::handlers::fetch::session::owner_shard`]).
    pub fetch_sessions: RefCell<FetchSessionCache>,
}

/// The target shard went away (the broker is stopping).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not running")]
pub struct ShardGone(pub usize);

impl ShardState {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(Rc::from(topic), partition))
            .cloned()
    }

    /// Runs `f` on shard `target` and returns its result: directly when `target` is this shard,
    /// else through the target's mailbox.
    pub async fn call<R, F>(self: &Rc<Self>, target: usize, f: F) -> Result<R, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce(Rc<ShardState>) -> LocalFuture<R> + Send + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let (tx, rx) = flume::bounded::<R>(1);
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let r = f(shard).await;
                // The caller may have given up (connection closed); nothing to do then.
                let _ = tx.send(r);
            })
        });
        self.ctx
            .send(ShardId(target as u32), job)
            .await
            .map_err(|_| ShardGone(target))?;
        rx.recv_async().await.map_err(|_| ShardGone(target))
    }
}

/// Polls two futures, returning the output of whichever completes first.
pub async fn select2<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Left(v));
        }
        if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Right(v));
        }
        std::task::Poll::Pending
    })
    .await
}

/// One of two values.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Increments the connection count unless it is at `max`; returns whether it was admitted.
pub fn admit_connection(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            if n >= max { None } else { Some(n + 1) }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_within_range_and_uses_every_shard() {
        let mut counts = [0usize; 4];
        for p in 0..400 {
            counts[placement("orders", p, 4)] += 1;
        }
        assert!(counts.iter().all(|c| *c > 50), "{counts:?}");
        assert_eq!(placement("x", 7, 1), 0);
    }

    #[test]
    fn connection_admission_stops_at_max() {
        let c = AtomicU32::new(0);
        assert!(admit_connection(&c, 2));
        assert!(admit_connection(&c, 2));
        assert!(!admit_connection(&c, 2));
    }
}
