//! The topic catalog: which topics exist, their ids, partition counts and config overrides.
//!
//! The catalog is the broker's control-plane state. [`Catalog`] is a pure in-memory model with
//! validated operations (create, delete, add partitions, alter configs); [`CatalogStore`] persists
//! it as one JSON file, `<log.dirs>/kiln-topics.json`, replaced atomically:
//!
//! 1. write `kiln-topics.json.tmp` and fdatasync it;
//! 2. rename it over `kiln-topics.json`;
//! 3. fsync the directory, so the rename survives a crash.
//!
//! A topic exists once step 3 returns; only then are its partition directories created (by the
//! owning shards), so a crash in between leaves at worst an empty directory that recovery ignores.
//! Each partition directory also gets Kafka's `partition.metadata` file (`version: 0`,
//! `topic_id: <base64>`), as Kafka writes it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{TopicConfig, TopicConfigError};

/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Topics the catalog may hold.
pub const TOPICS_MAX: usize = 100_000;
/// Kafka's topic name length limit.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// The group coordinator's internal topic (its partitions are `<log.dirs>/__consumer_offsets-<n>`).
pub const INTERNAL_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default `offsets.topic.num.partitions`.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

/// Brokers in this cluster (one: replication comes later).
pub const LIVE_BROKERS: i16 = 1;

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (a UUID).
    pub topic_id: [u8; 16],
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level config overrides (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

/// Why a catalog operation is refused; mapped to Kafka error codes by the handlers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("invalid partition count {count} for topic {name}: {reason}")]
    InvalidPartitions {
        name: String,
        count: i32,
        reason: &'static str,
    },
    #[error("replication factor {0} is larger than the {LIVE_BROKERS} available broker(s)")]
    InvalidReplicationFactor(i16),
    #[error("manual replica assignment is not supported on a single node")]
    InvalidReplicaAssignment,
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    #[error("the catalog holds its maximum of {TOPICS_MAX} topics")]
    TooManyTopics,
}

/// The set of topics. Pure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub topics: BTreeMap<String, TopicMeta>,
    /// Partitions of the internal `__consumer_offsets` topic once it exists (found on disk at
    /// load, or created by the group coordinator on its first request). Its partition count is
    /// fixed at creation, as in Kafka; the directories are the record of it, so it is not saved.
    #[serde(skip)]
    pub offsets_partitions: Option<i32>,
}

/// Checks a topic name the way Kafka's `Topic.validate` does.
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let bad = |reason| {
        Err(CatalogError::InvalidTopic {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl Catalog {
    /// Validates a new topic without changing anything (CreateTopics validate_only uses this).
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
        defaults: &TopicConfig,
    ) -> Result<(), CatalogError> {
        validate_topic_name(name)?;
        // The group coordinator's internal topic always exists (Kafka answers the same).
        if self.topics.contains_key(name) || name == INTERNAL_OFFSETS_TOPIC {
            return Err(CatalogError::TopicExists(name.to_string()));
        }
        if self.topics.len() >= TOPICS_MAX {
            return Err(CatalogError::TooManyTopics);
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(CatalogError::InvalidPartitions {
                name: name.to_string(),
                count: partitions,
                reason: "must be in 1..=100000",
            });
        }
        if replication_factor < 1 || replication_factor > LIVE_BROKERS {
            return Err(CatalogError::InvalidReplicationFactor(replication_factor));
        }
        defaults.with_overrides(configs)?;
        Ok(())
    }

    /// Creates a topic.
    pub fn create(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        defaults: &TopicConfig,
        topic_id: [u8; 16],
    ) -> Result<&TopicMeta, CatalogError> {
        self.check_create(name, partitions, replication_factor, &configs, defaults)?;
        let meta = TopicMeta {
            name: name.to_string(),
            topic_id,
            partitions,
            replication_factor,
            configs,
        };
        Ok(self.topics.entry(name.to_string()).or_insert(meta))
    }

    /// Removes a topic, returning it.
    pub fn delete(&mut self, name: &str) -> Result<TopicMeta, CatalogError> {
        self.topics
            .remove(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))
    }

    /// Checks that a topic can grow to `count` partitions.
    pub fn check_partitions(&self, name: &str, count: i32) -> Result<i32, CatalogError> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))?;
        if count <= t.partitions {
            return Err(CatalogError::InvalidPartitions {
                name: name.to_string(),
                count,
                reason: "a topic's partition count can only grow",
            });
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(CatalogError::InvalidPartitions {
                name: name.to_string(),
                count,
                reason: "must be at most 100000",
            });
        }
        Ok(t.partitions)
    }

    /// Grows a topic to `count` partitions; returns the old count.
    pub fn add_partitions(&mut self, name: &str, count: i32) -> Result<i32, CatalogError> {
        let old = self.check_partitions(name, count)?;
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions = count;
        }
        Ok(old)
    }

    /// Replaces (`incremental == false`) or merges a topic's overrides after validating the result.
    pub fn check_configs(
        &self,
        name: &str,
        new: &BTreeMap<String, String>,
        defaults: &TopicConfig,
    ) -> Result<(), CatalogError> {
        if !self.topics.contains_key(name) {
            return Err(CatalogError::UnknownTopic(name.to_string()));
        }
        defaults.with_overrides(new)?;
        Ok(())
    }

    /// Sets a topic's overrides (already validated by [`Self::check_configs`]).
    pub fn set_configs(
        &mut self,
        name: &str,
        new: BTreeMap<String, String>,
        defaults: &TopicConfig,
    ) -> Result<(), CatalogError> {
        self.check_configs(name, &new, defaults)?;
        if let Some(t) = self.topics.get_mut(name) {
            t.configs = new;
        }
        Ok(())
    }

    /// Partitions `__consumer_offsets` has, or will have when the group coordinator creates it
    /// with the configured `offsets.topic.num.partitions`.
    pub fn offsets_topic_partitions(&self, configured: i32) -> i32 {
        self.offsets_partitions.unwrap_or(configured)
    }

    /// Whether `topic` has partition `partition`.
    pub fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| (0..t.partitions).contains(&partition))
    }
}

/// An I/O failure persisting the catalog.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid topic catalog: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A persisted counter that does not parse: starting over would reuse ids.
    #[error(
        "{path} does not hold a valid counter ({found:?}); refusing to start, as continuing \
         would reuse ids. Restore the file from a backup or, knowing the highest id ever issued, \
         write a larger number into it"
    )]
    CorruptCounter { path: PathBuf, found: String },
}

/// Persistence of the catalog under a log directory.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    dir: PathBuf,
}

impl CatalogStore {
    pub fn new(dir: &Path) -> Self {
        CatalogStore {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("kiln-topics.json")
    }

    /// Loads the catalog (empty when the file does not exist yet), with the partition count of
    /// `__consumer_offsets` found in the directory.
    pub fn load(&self) -> Result<Catalog, StoreError> {
        let path = self.path();
        let mut catalog: Catalog = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::Corrupt { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "reading",
                    path,
                    source,
                });
            }
        };
        catalog.offsets_partitions =
            offsets_partitions_on_disk(&self.dir).map_err(|source| StoreError::Io {
                op: "listing",
                path: self.dir.clone(),
                source,
            })?;
        Ok(catalog)
    }

    /// Saves the catalog durably (steps 1-3 in the module docs). Blocking: called on the control
    /// shard for rare metadata changes.
    pub fn save(&self, catalog: &Catalog) -> Result<(), StoreError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let tmp = self.dir.join("kiln-topics.json.tmp");
        let bytes = serde_json::to_vec_pretty(catalog).map_err(|source| StoreError::Corrupt {
            path: tmp.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        f.sync_data().map_err(io("syncing", &tmp))?;
        drop(f);
        let path = self.path();
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
        sync_dir(&self.dir)
    }
}

/// The directory of partition `partition` of `__consumer_offsets` under a log directory.
pub fn offsets_partition_dir(log_dir: &Path, partition: i32) -> PathBuf {
    log_dir.join(format!("{INTERNAL_OFFSETS_TOPIC}-{partition}"))
}

/// The partition count of `__consumer_offsets` in `log_dir`: one more than the highest
/// `__consumer_offsets-<n>` directory, or `None` when there is none (or no `log_dir`). A data
/// directory written when the offsets log had one partition has only `__consumer_offsets-0`,
/// so it keeps one partition.
pub fn offsets_partitions_on_disk(log_dir: &Path) -> std::io::Result<Option<i32>> {
    let entries = match std::fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let prefix = format!("{INTERNAL_OFFSETS_TOPIC}-");
    let mut highest: Option<i32> = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if (0..PARTITIONS_PER_TOPIC_MAX).contains(&index) && entry.path().is_dir() {
            highest = Some(highest.map_or(index, |h| h.max(index)));
        }
    }
    Ok(highest.map(|h| h + 1))
}

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = std::fs::File::open(dir).map_err(|source| StoreError::Io {
        op: "opening",
        path: dir.to_path_buf(),
        source,
    })?;
    d.sync_all().map_err(|source| StoreError::Io {
        op: "syncing",
        path: dir.to_path_buf(),
        source,
    })
}

/// Kafka's `partition.metadata` file contents for a topic id.
pub fn partition_metadata_file(topic_id: &[u8; 16]) -> String {
    format!("version: 0\ntopic_id: {}\n", base64_url(topic_id))
}

/// URL-safe base64 without padding, as Kafka prints a `Uuid`.
pub fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// A fresh random topic id (never all zeros, which Kafka reserves).
pub fn new_topic_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = kiln_engine::prng::bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicConfig {
        TopicConfig::kafka_defaults()
    }

    #[test]
    fn create_validates_name_partitions_rf_and_configs() {
        let mut c = Catalog::default();
        let d = defaults();
        c.create("orders", 4, 1, BTreeMap::new(), &d, [1; 16])
            .expect("created");
        assert_eq!(
            c.create("orders", 4, 1, BTreeMap::new(), &d, [2; 16])
                .map(|_| ()),
            Err(CatalogError::TopicExists("orders".into()))
        );
        assert!(matches!(
            c.check_create("bad name", 1, 1, &BTreeMap::new(), &d),
            Err(CatalogError::InvalidTopic { .. })
        ));
        assert!(matches!(
            c.check_create("t", 0, 1, &BTreeMap::new(), &d),
            Err(CatalogError::InvalidPartitions { .. })
        ));
        assert_eq!(
            c.check_create("t", 1, 3, &BTreeMap::new(), &d),
            Err(CatalogError::InvalidReplicationFactor(3))
        );
        let mut cfg = BTreeMap::new();
        cfg.insert("retention.ms".into(), "x".into());
        assert!(matches!(
            c.check_create("t", 1, 1, &cfg, &d),
            Err(CatalogError::InvalidConfig(_))
        ));
        assert_eq!(
            c.check_create(INTERNAL_OFFSETS_TOPIC, 4, 1, &BTreeMap::new(), &d),
            Err(CatalogError::TopicExists(INTERNAL_OFFSETS_TOPIC.into())),
            "the internal offsets topic is never created as a user topic"
        );
        assert!(c.partition_exists("orders", 3));
        assert!(!c.partition_exists("orders", 4));
    }

    #[test]
    fn partitions_only_grow() {
        let mut c = Catalog::default();
        c.create("t", 2, 1, BTreeMap::new(), &defaults(), [1; 16])
            .expect("created");
        assert!(c.add_partitions("t", 2).is_err());
        assert_eq!(c.add_partitions("t", 5), Ok(2));
        assert!(c.partition_exists("t", 4));
    }

    #[test]
    fn store_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CatalogStore::new(dir.path());
        assert_eq!(store.load().expect("empty"), Catalog::default());
        let mut c = Catalog::default();
        c.create("a", 3, 1, BTreeMap::new(), &defaults(), [7; 16])
            .expect("created");
        store.save(&c).expect("saved");
        assert_eq!(store.load().expect("loaded"), c);
    }

    #[test]
    fn offsets_partitions_are_counted_from_the_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            offsets_partitions_on_disk(dir.path()).expect("listed"),
            None
        );
        assert_eq!(
            offsets_partitions_on_disk(&dir.path().join("missing")).expect("listed"),
            None
        );
        std::fs::create_dir(offsets_partition_dir(dir.path(), 0)).expect("mkdir");
        std::fs::create_dir(dir.path().join("orders-7")).expect("mkdir");
        std::fs::create_dir(dir.path().join("__consumer_offsets-x")).expect("mkdir");
        std::fs::write(dir.path().join("__consumer_offsets-9"), b"").expect("file");
        assert_eq!(
            offsets_partitions_on_disk(dir.path()).expect("listed"),
            Some(1),
            "a one-partition offsets log keeps one partition"
        );
        std::fs::create_dir(offsets_partition_dir(dir.path(), 49)).expect("mkdir");
        assert_eq!(
            offsets_partitions_on_disk(dir.path()).expect("listed"),
            Some(50)
        );
        let loaded = CatalogStore::new(dir.path()).load().expect("loaded");
        assert_eq!(loaded.offsets_partitions, Some(50));
        assert_eq!(loaded.offsets_topic_partitions(7), 50);
        assert_eq!(Catalog::default().offsets_topic_partitions(7), 7);
    }

    #[test]
    fn base64_matches_kafka_uuid_text() {
        // Kafka prints Uuid(0, 1) as "AAAAAAAAAAAAAAAAAAAAAQ".
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(base64_url(&id), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
