//! Topic administration with its effects: catalog change, persistence, then partition logs.
//!
//! Order of effects for every change (persist, then act, then reply):
//! 1. validate and apply the change to the in-memory catalog under its lock;
//! 2. persist the catalog (atomic replace, see [`crate::catalog`]) before releasing the lock, so
//!    concurrent changes from other shards persist in the order they were applied;
//! 3. tell the owning shards to open (create) or close and delete partition logs, and wait;
//! 4. reply.
//!
//! A crash after 2 and before 3 is repaired at start-up: every shard opens the partitions the
//! catalog assigns it, creating missing directories.

use std::collections::BTreeMap;
use std::rc::Rc;

use kiln_engine::log::LogError;

use crate::catalog::{CatalogError, StoreError, TopicMeta, new_topic_id};
use crate::partition::{Partition, partition_dir};
use crate::shard::{ShardGone, ShardState};

/// Why an administrative change failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("persisting the topic catalog: {0}")]
    Store(#[from] StoreError),
    #[error("opening a partition log: {0}")]
    Log(#[from] LogError),
    #[error("opening a partition log: {0}")]
    Open(String),
    #[error(transparent)]
    Shard(#[from] ShardGone),
}

impl AdminError {
    /// The Kafka error code for this failure.
    pub fn code(&self) -> i16 {
        use crate::error_code as c;
        match self {
            AdminError::Catalog(e) => catalog_code(e),
            AdminError::Store(_) | AdminError::Log(_) | AdminError::Open(_) => {
                c::KAFKA_STORAGE_ERROR
            }
            AdminError::Shard(_) => c::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// The Kafka error code for a catalog refusal.
pub fn catalog_code(e: &CatalogError) -> i16 {
    use crate::error_code as c;
    match e {
        CatalogError::TopicExists(_) => c::TOPIC_ALREADY_EXISTS,
        CatalogError::UnknownTopic(_) => c::UNKNOWN_TOPIC_OR_PARTITION,
        CatalogError::InvalidTopic { .. } => c::INVALID_TOPIC_EXCEPTION,
        CatalogError::InvalidPartitions { .. } => c::INVALID_PARTITIONS,
        CatalogError::InvalidReplicationFactor(_) => c::INVALID_REPLICATION_FACTOR,
        CatalogError::InvalidReplicaAssignment => c::INVALID_REPLICA_ASSIGNMENT,
        CatalogError::InvalidConfig(_) => c::INVALID_CONFIG,
        CatalogError::TooManyTopics => c::POLICY_VIOLATION,
    }
}

/// The replication factor to use for a request: -1 means `default.replication.factor`, which
/// on a single node is capped at the one live broker (the seed's file says 3; refusing every
/// auto-created topic for it would help nobody). An explicit factor above 1 is refused.
pub fn effective_replication_factor(shard: &ShardState, requested: i16) -> i16 {
    if requested == -1 {
        shard
            .shared
            .config
            .default_replication_factor
            .min(crate::catalog::LIVE_BROKERS)
    } else {
        requested
    }
}

/// Creates a topic: catalog, persistence, then its partition logs on their shards.
pub async fn create_topic(
    shard: &Rc<ShardState>,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
) -> Result<TopicMeta, AdminError> {
    let meta = {
        let shared = &shard.shared;
        let mut catalog = shared.catalog();
        let mut next = catalog.clone();
        let meta = next
            .create(
                name,
                partitions,
                replication_factor,
                configs,
                &shared.config.topic_defaults,
                new_topic_id(),
            )?
            .clone();
        shared.store.save(&next)?;
        *catalog = next;
        meta
    };
    open_partitions(shard, &meta, 0..meta.partitions).await?;
    tracing::info!(topic = %meta.name, partitions = meta.partitions, "created topic");
    Ok(meta)
}

/// Opens partitions `range` of a topic on their owning shards (creating their directories).
pub async fn open_partitions(
    shard: &Rc<ShardState>,
    meta: &TopicMeta,
    range: std::ops::Range<i32>,
) -> Result<(), AdminError> {
    let shared = &shard.shared;
    let mut by_shard: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for p in range {
        by_shard
            .entry(shared.owner(&meta.name, p))
            .or_default()
            .push(p);
    }
    for (target, parts) in by_shard {
        let meta = meta.clone();
        shard
            .call(target, move |s| {
                Box::pin(async move {
                    open_local(&s, &meta, &parts)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .await?
            .map_err(AdminError::Open)?;
    }
    Ok(())
}

/// Opens partitions of `meta` that this shard owns.
pub async fn open_local(
    shard: &Rc<ShardState>,
    meta: &TopicMeta,
    parts: &[i32],
) -> Result<(), LogError> {
    let defaults = &shard.shared.config.topic_defaults;
    let config = defaults
        .with_overrides(&meta.configs)
        .unwrap_or_else(|_| defaults.clone());
    for &p in parts {
        if shard.partition(&meta.name, p).is_some() {
            continue;
        }
        let part = Partition::open(
            &shard.shared.config.log_dir,
            &meta.name,
            p,
            meta.topic_id,
            config.clone(),
        )
        .await?;
        shard
            .partitions
            .borrow_mut()
            .insert((Rc::from(meta.name.as_str()), p), Rc::new(part));
    }
    Ok(())
}

/// Deletes a topic: catalog, persistence, then every shard closes its partitions and removes
/// their directories.
pub async fn delete_topic(shard: &Rc<ShardState>, name: &str) -> Result<TopicMeta, AdminError> {
    let meta = {
        let shared = &shard.shared;
        let mut catalog = shared.catalog();
        let mut next = catalog.clone();
        let meta = next.delete(name)?;
        shared.store.save(&next)?;
        *catalog = next;
        meta
    };
    let shards = shard.shared.shard_count();
    for target in 0..shards {
        let meta = meta.clone();
        shard
            .call(target, move |s| {
                Box::pin(async move {
                    let owned: Vec<i32> = (0..meta.partitions)
                        .filter(|p| s.shared.owner(&meta.name, *p) == s.id)
                        .collect();
                    for p in owned {
                        let removed = s.partitions.borrow_mut().remove(&(Rc::from(meta.name.as_str()), p));
                        drop(removed);
                        // Unlinking closed segment files frees their cached pages in the
                        // unlinking thread (hundreds of milliseconds per cached GiB): off the
                        // shard thread, which keeps serving its other partitions meanwhile.
                        let dir = partition_dir(&s.shared.config.log_dir, &meta.name, p);
                        let removal = kiln_engine::rt::spawn_blocking({
                            let dir = dir.clone();
                            move || std::fs::remove_dir_all(&dir)
                        });
                        match removal.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Ok(Err(e)) => {
                                tracing::warn!(path = %dir.display(), error = %e, "removing a deleted partition");
                            }
                            Err(_) => {
                                tracing::warn!(path = %dir.display(), "removing a deleted partition: the removal task panicked");
                            }
                        }
                    }
                })
            })
            .await?;
    }
    if let Err(e) = crate::catalog::sync_dir(&shard.shared.config.log_dir) {
        tracing::warn!(error = %e, "syncing the log directory after a topic deletion");
    }
    tracing::info!(topic = %name, "deleted topic");
    Ok(meta)
}

/// Grows a topic to `count` partitions.
pub async fn add_partitions(
    shard: &Rc<ShardState>,
    name: &str,
    count: i32,
) -> Result<(), AdminError> {
    let (meta, old) = {
        let shared = &shard.shared;
        let mut catalog = shared.catalog();
        let mut next = catalog.clone();
        let old = next.add_partitions(name, count)?;
        shared.store.save(&next)?;
        let meta = next.topics.get(name).cloned();
        *catalog = next;
        (meta, old)
    };
    if let Some(meta) = meta {
        open_partitions(shard, &meta, old..count).await?;
    }
    Ok(())
}

/// Replaces a topic's config overrides and applies them to its open partitions.
pub async fn set_topic_configs(
    shard: &Rc<ShardState>,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<(), AdminError> {
    let meta = {
        let shared = &shard.shared;
        let mut catalog = shared.catalog();
        let mut next = catalog.clone();
        next.set_configs(name, configs, &shared.config.topic_defaults)?;
        shared.store.save(&next)?;
        let meta = next.topics.get(name).cloned();
        *catalog = next;
        meta
    };
    let Some(meta) = meta else { return Ok(()) };
    for target in 0..shard.shared.shard_count() {
        let meta = meta.clone();
        shard
            .call(target, move |s| {
                Box::pin(async move {
                    let defaults = &s.shared.config.topic_defaults;
                    let Ok(config) = defaults.with_overrides(&meta.configs) else {
                        return;
                    };
                    for p in 0..meta.partitions {
                        if let Some(part) = s.partition(&meta.name, p) {
                            *part.config.borrow_mut() = config.clone();
                        }
                    }
                })
            })
            .await?;
    }
    Ok(())
}
