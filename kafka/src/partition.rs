//! A partition on its owning shard: the segmented log plus the state Kafka keeps beside it.
//!
//! Partition state is explicit so that replication can build on it later:
//!
//! | field | meaning on a single node |
//! |---|---|
//! | `log_start_offset` | first offset still stored (moved by retention and DeleteRecords) |
//! | `log_end_offset` | next offset to assign (includes batches accepted but not yet written) |
//! | `high_watermark` | offsets below are written to the page cache and served to consumers; with one replica this is the log's *written* watermark |
//! | `leader_epoch` | 0: this broker has led every partition since it was created |
//!
//! Not `Send`: only the owning shard touches a partition.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiln_engine::batch::{self, Batches};
use kiln_engine::commit::Durability;
use kiln_engine::log::{LogConfig, LogError, SegmentedLog};

use crate::config::TopicConfig;
use crate::producer_state::{BatchProducer, ProducerStates};

/// The leader epoch of every partition on a single node.
pub const LEADER_EPOCH: i32 = 0;

/// Bytes read at a time when scanning a log (producer-state rebuild).
pub const SCAN_READ_BYTES: usize = 1 << 20;

/// A snapshot of a partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub leader_epoch: i32,
}

/// One partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: [u8; 16],
    pub log: SegmentedLog,
    pub config: RefCell<TopicConfig>,
    pub producers: RefCell<ProducerStates>,
}

/// The directory of a partition: `<log.dirs>/<topic>-<partition>`, Kafka's layout.
pub fn partition_dir(log_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{partition}"))
}

/// The engine log configuration for a topic configuration.
pub fn log_config(c: &TopicConfig) -> LogConfig {
    let positive = |v: i64| if v < 0 { None } else { Some(v) };
    LogConfig {
        segment_bytes: c.segment_bytes.max(batch::HEADER_LEN as i32) as u64,
        segment_ms: Some(c.segment_ms),
        retention_bytes: positive(c.retention_bytes).map(|v| v as u64),
        retention_ms: positive(c.retention_ms),
        // Produce enforces max.message.bytes itself (MESSAGE_TOO_LARGE), so that an altered
        // topic config applies at once; the log keeps only the hard ceiling.
        batch_bytes_max: batch::BATCH_BYTES_MAX,
        durability: Durability::Interval {
            messages: c.flush_messages.max(1) as u64,
            ms: c.flush_ms.max(0) as u64,
        },
        ..LogConfig::default()
    }
}

impl Partition {
    /// Opens (or creates) the partition's log, recovers it, and rebuilds idempotent-producer
    /// state from its last segment.
    pub async fn open(
        log_dir: &Path,
        topic: &str,
        index: i32,
        topic_id: [u8; 16],
        config: TopicConfig,
    ) -> Result<Self, LogError> {
        let dir = partition_dir(log_dir, topic, index);
        let log = SegmentedLog::open(&dir, log_config(&config)).await?;
        // Kafka writes the topic id next to the segments; a failure here is not fatal.
        let meta = dir.join("partition.metadata");
        if !meta.exists()
            && let Err(e) =
                std::fs::write(&meta, crate::catalog::partition_metadata_file(&topic_id))
        {
            tracing::warn!(path = %meta.display(), error = %e, "writing partition.metadata");
        }
        let p = Partition {
            topic: topic.to_string(),
            index,
            topic_id,
            log,
            config: RefCell::new(config),
            producers: RefCell::new(ProducerStates::default()),
        };
        p.rebuild_producer_state().await?;
        Ok(p)
    }

    /// The partition's offsets now.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            log_start_offset: self.log.log_start_offset() as i64,
            log_end_offset: self.log.log_end_offset() as i64,
            high_watermark: self.log.written_offset() as i64,
            leader_epoch: LEADER_EPOCH,
        }
    }

    /// Replays the producer fields of every batch in the last segment, so retried idempotent
    /// batches are still recognised as duplicates after a restart.
    async fn rebuild_producer_state(&self) -> Result<(), LogError> {
        let Some(&base) = self.log.segment_bases().last() else {
            return Ok(());
        };
        let mut offset = base.max(self.log.log_start_offset());
        let end = self.log.written_offset();
        let mut producers = ProducerStates::default();
        while offset < end {
            let r = self.log.read(offset, SCAN_READ_BYTES).await?;
            if r.next_offset <= offset {
                break;
            }
            for b in Batches::new(&r.records, false) {
                let Ok(b) = b else { break };
                producers.record(
                    &BatchProducer {
                        producer_id: b.producer_id(),
                        producer_epoch: b.producer_epoch(),
                        base_sequence: b.base_sequence(),
                        last_offset_delta: b.last_offset_delta(),
                    },
                    b.base_offset(),
                );
            }
            offset = r.next_offset;
        }
        *self.producers.borrow_mut() = producers;
        Ok(())
    }

    /// Whole batches from `offset`, up to `max_bytes` (at least one batch when any is there).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        let r = self.log.read(offset.max(0) as u64, max_bytes).await?;
        Ok(r.records)
    }

    /// The first offset whose record timestamp is at least `ts` (ListOffsets by timestamp), and
    /// that record's timestamp; `None` when every record is older. The engine finds the segment
    /// and position through the time index, then reads from there: the exact record for
    /// uncompressed batches, the batch's base offset (or the log start) for compressed ones.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        Ok(self
            .log
            .offset_for_timestamp(ts)
            .await?
            .map(|(offset, t)| (offset as i64, t)))
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets
    /// MAX_TIMESTAMP, KIP-734): the first record carrying it, from the segments' time indexes.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        Ok(self
            .log
            .max_timestamp()
            .await?
            .map(|(t, offset)| (offset as i64, t)))
    }

    /// Applies `config` to the running partition: Produce's checks at once, and the log's
    /// segment roll, retention and flush settings from the next append (roll, flush) or the
    /// next retention check. An invalid log configuration changes nothing in the log.
    pub fn set_config(&self, config: TopicConfig) -> Result<(), LogError> {
        self.log.set_config(log_config(&config))?;
        *self.config.borrow_mut() = config;
        Ok(())
    }
}
