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

/// Bytes read at a time when scanning a log (producer-state rebuild, timestamp search).
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
    /// that record's timestamp; `None` when every record is older. Scans batch headers and, for
    /// uncompressed batches, records; a compressed batch answers with its base offset.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let mut offset = self.log.log_start_offset();
        let end = self.log.written_offset();
        while offset < end {
            let r = self.log.read(offset, SCAN_READ_BYTES).await?;
            if r.next_offset <= offset {
                break;
            }
            for b in Batches::new(&r.records, false) {
                let Ok(b) = b else { break };
                if b.max_timestamp() < ts {
                    continue;
                }
                if b.compression() == batch::Compression::None
                    && !b.is_log_append_time()
                    && let Ok(records) = b.records()
                {
                    for rec in records.flatten() {
                        if rec.timestamp >= ts && rec.offset >= self.log.log_start_offset() as i64 {
                            return Ok(Some((rec.offset, rec.timestamp)));
                        }
                    }
                }
                return Ok(Some((
                    b.base_offset().max(self.log.log_start_offset() as i64),
                    b.max_timestamp(),
                )));
            }
            offset = r.next_offset;
        }
        Ok(None)
    }

    /// The offset and timestamp of the batch with the largest timestamp (ListOffsets
    /// MAX_TIMESTAMP): the last offset of the newest-stamped batch, as Kafka reports it for v2
    /// batches.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let mut offset = self.log.log_start_offset();
        let end = self.log.written_offset();
        let mut best: Option<(i64, i64)> = None;
        while offset < end {
            let r = self.log.read(offset, SCAN_READ_BYTES).await?;
            if r.next_offset <= offset {
                break;
            }
            for b in Batches::new(&r.records, false) {
                let Ok(b) = b else { break };
                if best.is_none_or(|(_, t)| b.max_timestamp() > t) {
                    best = Some((b.last_offset(), b.max_timestamp()));
                }
            }
            offset = r.next_offset;
        }
        Ok(best)
    }
}
