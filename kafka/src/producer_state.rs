//! Idempotent-producer state of one partition: deduplication by producer id, epoch and sequence.
//!
//! Follows Kafka's `ProducerStateManager` / `ProducerAppendInfo.checkSequence`:
//! - a batch without a producer id (-1) is not checked;
//! - a lower epoch than the one on record is fenced (`INVALID_PRODUCER_EPOCH`);
//! - a higher epoch must start at sequence 0, unless the producer is unknown;
//! - a producer with no state (new, or its records were deleted) may start at any sequence;
//! - a batch equal to one of the last [`CACHED_BATCHES_MAX`] batches is a duplicate: the client gets
//!   the original base offset and no error, and nothing is appended;
//! - an older sequence that is not cached is `DUPLICATE_SEQUENCE_NUMBER`;
//! - any other gap is `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//!
//! Pure and synchronous: [`ProducerStates::check`] decides, [`ProducerStates::record`] applies after
//! the append succeeded (the shard loop does the I/O in between).

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer for duplicate detection (Kafka: 5, the max in-flight requests
/// of an idempotent producer).
pub const CACHED_BATCHES_MAX: usize = 5;

/// Producers remembered per partition; the least recently written is forgotten beyond this (it
/// then counts as unknown, which accepts any sequence, as after Kafka's producer-id expiry).
pub const PRODUCERS_MAX: usize = 10_000;

/// The producer fields of a RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// LastOffsetDelta: records in the batch minus one.
    pub last_offset_delta: i32,
}

impl BatchProducer {
    fn last_sequence(&self) -> i32 {
        add_seq(self.base_sequence, self.last_offset_delta)
    }
}

fn add_seq(seq: i32, n: i32) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((seq as i64 + n as i64) % (i32::MAX as i64 + 1)) as i32
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Append it.
    Append,
    /// Already appended at this base offset; reply with it and append nothing.
    Duplicate { base_offset: i64 },
}

/// Why a batch is refused (mapped to Kafka error codes by the Produce handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: sequence {got} was already written")]
    DuplicateSequence { producer_id: i64, got: i32 },
}

#[derive(Debug, Clone)]
struct CachedBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    last_write: u64,
}

/// All producers of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
}

impl ProducerStates {
    /// Decides what to do with a batch from `p`.
    pub fn check(&self, p: &BatchProducer) -> Result<Decision, SequenceError> {
        if p.producer_id < 0 {
            return Ok(Decision::Append);
        }
        let Some(entry) = self.producers.get(&p.producer_id) else {
            return Ok(Decision::Append);
        };
        if p.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id: p.producer_id,
                epoch: p.producer_epoch,
                current: entry.epoch,
            });
        }
        if p.producer_epoch > entry.epoch {
            if p.base_sequence != 0 {
                return Err(SequenceError::OutOfOrder {
                    producer_id: p.producer_id,
                    expected: 0,
                    got: p.base_sequence,
                });
            }
            return Ok(Decision::Append);
        }
        let last = p.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == p.base_sequence && b.last_seq == last)
        {
            return Ok(Decision::Duplicate {
                base_offset: b.base_offset,
            });
        }
        let Some(newest) = entry.batches.back() else {
            return Ok(Decision::Append);
        };
        let expected = add_seq(newest.last_seq, 1);
        if p.base_sequence == expected {
            return Ok(Decision::Append);
        }
        let oldest = entry
            .batches
            .front()
            .map_or(newest.first_seq, |b| b.first_seq);
        // A sequence inside what was already written (no wrap-around in the window) is a
        // duplicate that fell out of the cache.
        if oldest <= newest.last_seq && p.base_sequence < expected && p.base_sequence >= 0 {
            return Err(SequenceError::DuplicateSequence {
                producer_id: p.producer_id,
                got: p.base_sequence,
            });
        }
        Err(SequenceError::OutOfOrder {
            producer_id: p.producer_id,
            expected,
            got: p.base_sequence,
        })
    }

    /// Records an appended batch (after [`Self::check`] said `Append` and the append succeeded).
    pub fn record(&mut self, p: &BatchProducer, base_offset: i64) {
        if p.producer_id < 0 {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&p.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(p.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: p.producer_epoch,
                batches: VecDeque::with_capacity(CACHED_BATCHES_MAX),
                last_write: clock,
            });
        if p.producer_epoch != entry.epoch {
            entry.epoch = p.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == CACHED_BATCHES_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(CachedBatch {
            first_seq: p.base_sequence,
            last_seq: p.last_sequence(),
            base_offset,
        });
        entry.last_write = clock;
    }

    /// Forgets every producer (after DeleteRecords removed their batches, or on truncation).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Producers currently remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    fn evict_oldest(&mut self) {
        if let Some((&id, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_write) {
            self.producers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchProducer {
        BatchProducer {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: n - 1,
        }
    }

    #[test]
    fn in_sequence_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerStates::default();
        let first = b(7, 0, 0, 10);
        assert_eq!(s.check(&first), Ok(Decision::Append));
        s.record(&first, 100);
        let second = b(7, 0, 10, 5);
        assert_eq!(s.check(&second), Ok(Decision::Append));
        s.record(&second, 110);
        assert_eq!(
            s.check(&first),
            Ok(Decision::Duplicate { base_offset: 100 })
        );
        assert_eq!(
            s.check(&second),
            Ok(Decision::Duplicate { base_offset: 110 })
        );
    }

    #[test]
    fn gaps_are_out_of_order_and_old_sequences_duplicate() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            let batch = b(1, 0, i * 2, 2);
            assert_eq!(s.check(&batch), Ok(Decision::Append));
            s.record(&batch, i as i64 * 2);
        }
        assert!(matches!(
            s.check(&b(1, 0, 20, 1)),
            Err(SequenceError::OutOfOrder {
                expected: 14,
                got: 20,
                ..
            })
        ));
        // Sequence 0..1 fell out of the 5-batch cache.
        assert!(matches!(
            s.check(&b(1, 0, 0, 2)),
            Err(SequenceError::DuplicateSequence { got: 0, .. })
        ));
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record(&b(1, 3, 0, 1), 0);
        assert!(matches!(
            s.check(&b(1, 2, 1, 1)),
            Err(SequenceError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            s.check(&b(1, 4, 5, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(s.check(&b(1, 4, 0, 1)), Ok(Decision::Append));
    }

    #[test]
    fn unknown_producers_and_plain_batches_are_accepted() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&b(9, 0, 42, 1)), Ok(Decision::Append));
        assert_eq!(s.check(&b(-1, -1, -1, 3)), Ok(Decision::Append));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        let near = b(1, 0, i32::MAX - 1, 2);
        s.record(&near, 0);
        assert_eq!(s.check(&b(1, 0, 0, 1)), Ok(Decision::Append));
    }
}
