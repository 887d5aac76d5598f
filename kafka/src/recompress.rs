//! Produce-time validation and conversion of compressed batches, as Kafka's `LogValidator` does
//! for RecordBatch v2. Pure: bytes in, bytes (or nothing) out.
//!
//! For each batch of a produce request:
//! 1. the header must be consistent (`last_offset_delta + 1 == records_count > 0`), else
//!    INVALID_RECORD, as Kafka's `validateBatch` says;
//! 2. an uncompressed batch bound for an uncompressed (or `producer`) topic is left as it is:
//!    this is the hot path, no record is looked at;
//! 3. otherwise the CRC is checked (CORRUPT_MESSAGE), the records are decompressed, bounded by
//!    [`decompressed_limit`] (a payload that does not decompress, or decompresses to more, is
//!    CORRUPT_MESSAGE), and every record is parsed: exactly `records_count` records filling the
//!    payload, offset deltas 0, 1, 2, ... (INVALID_RECORD otherwise);
//! 4. when the topic's `compression.type` names a codec other than the batch's, the batch is
//!    rebuilt with that codec: same producer id, epoch, base sequence, records (key, value,
//!    headers, timestamps) and offset deltas; record attributes 0; the base timestamp is the
//!    first record's, MaxTimestamp the largest (LogAppendTime is stamped afterwards by Produce);
//!    a new CRC. The rebuilt batch must still fit `max.message.bytes` (MESSAGE_TOO_LARGE).
//!    Otherwise (same codec, or `producer`) the batch is stored verbatim.
//!
//! Kafka merges all batches of one request into a single batch when it converts; Kiln converts
//! each batch on its own (a v3+ idempotent produce carries one batch per partition anyway).

use kiln_engine::batch::{self, BatchBuilder, BatchView, Record};
use kiln_engine::invariant;
use kiln_kafka_codec::compression::{self, Codec, CompressionError};

use crate::config::topic::TopicConfig;
use crate::error_code;

/// The least a batch may decompress to before it is refused, whatever `max.message.bytes` is.
pub const DECOMPRESSED_BYTES_FLOOR: usize = 64 << 20;
/// How much larger than `max.message.bytes` a batch's decompressed records may be.
pub const DECOMPRESSED_RATIO_MAX: usize = 16;

/// The most bytes one batch's records may decompress to: `max(64 MiB, 16 x max.message.bytes)`,
/// below the engine's batch ceiling. Kafka has no such bound; without it one small request could
/// make the broker allocate gigabytes.
pub fn decompressed_limit(max_message_bytes: i32) -> usize {
    let by_ratio = usize::try_from(max_message_bytes.max(0))
        .unwrap_or(0)
        .saturating_mul(DECOMPRESSED_RATIO_MAX);
    by_ratio.clamp(
        DECOMPRESSED_BYTES_FLOOR,
        batch::BATCH_BYTES_MAX - batch::HEADER_LEN,
    )
}

/// Why a produced batch was refused; [`RecordError::code`] is the Kafka error.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("batch {index}: {source}")]
    Corrupt {
        index: usize,
        source: batch::BatchError,
    },
    #[error("batch {index}: {source}")]
    Decompress {
        index: usize,
        source: CompressionError,
    },
    #[error("batch {index}: unknown compression codec id {id}")]
    UnknownCodec { index: usize, id: u8 },
    #[error("batch {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("batch {index}: {codec} compression failed: {source}")]
    Compress {
        index: usize,
        codec: Codec,
        source: CompressionError,
    },
    #[error(
        "batch {index}: {size} bytes after conversion to {codec} exceed max.message.bytes {max}"
    )]
    TooLarge {
        index: usize,
        codec: Codec,
        size: usize,
        max: usize,
    },
}

impl RecordError {
    pub fn code(&self) -> i16 {
        match self {
            Self::Corrupt { .. } | Self::Decompress { .. } | Self::UnknownCodec { .. } => {
                error_code::CORRUPT_MESSAGE
            }
            Self::Invalid { .. } => error_code::INVALID_RECORD,
            Self::Compress { .. } => error_code::UNKNOWN_SERVER_ERROR,
            Self::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        }
    }
}

/// Validates a produce request's batches for `config`; returns the bytes to store when any
/// batch had to be converted, `None` when the request is stored as it came.
pub fn validate(records: &[u8], config: &TopicConfig) -> Result<Option<Vec<u8>>, RecordError> {
    let target = config.target_codec();
    let limit = decompressed_limit(config.max_message_bytes);
    let max_size = usize::try_from(config.max_message_bytes.max(0)).unwrap_or(0);
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0usize;
    for (index, b) in batch::Batches::new(records, false).enumerate() {
        let b = b.map_err(|source| RecordError::Corrupt { index, source })?;
        let start = pos;
        pos += b.size();
        check_header(index, &b)?;
        let id = (b.attributes() & 0x7) as u8;
        let source = Codec::from_id(id).ok_or(RecordError::UnknownCodec { index, id })?;
        let wanted = target.map_or(source, |(c, _)| c);
        if source == Codec::None && wanted == Codec::None {
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(b.bytes());
            }
            continue;
        }
        b.verify_crc()
            .map_err(|source| RecordError::Corrupt { index, source })?;
        let payload = if source == Codec::None {
            b.records_bytes().to_vec()
        } else {
            compression::decompress(source, b.records_bytes(), limit)
                .map_err(|source| RecordError::Decompress { index, source })?
        };
        let plain = plain_batch(&b, &payload);
        check_records(index, &plain)?;
        if wanted == source {
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(b.bytes());
            }
            continue;
        }
        let level = target.and_then(|(_, l)| l);
        let converted = convert(index, &plain, wanted, level)?;
        if converted.len() > max_size {
            return Err(RecordError::TooLarge {
                index,
                codec: wanted,
                size: converted.len(),
                max: max_size,
            });
        }
        let o = out.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(records.len() + converted.len());
            v.extend_from_slice(records.get(..start).unwrap_or(&[]));
            v
        });
        o.extend_from_slice(&converted);
    }
    Ok(out)
}

/// Kafka's `validateBatch` for v2 batches from clients.
fn check_header(index: usize, b: &BatchView<'_>) -> Result<(), RecordError> {
    let invalid = |reason: String| RecordError::Invalid { index, reason };
    let count = b.records_count();
    if count <= 0 {
        return Err(invalid(format!("invalid reported record count {count}")));
    }
    if i64::from(b.last_offset_delta()) + 1 != i64::from(count) {
        return Err(invalid(format!(
            "inconsistent batch offset range (last offset delta {}) and record count {count}",
            b.last_offset_delta()
        )));
    }
    if b.producer_id() >= 0 && b.base_sequence() < 0 {
        return Err(invalid(format!(
            "producer id {} with invalid base sequence {}",
            b.producer_id(),
            b.base_sequence()
        )));
    }
    Ok(())
}

/// The batch's header (compression bits cleared, length adjusted) followed by `records`: an
/// uncompressed batch the engine's record iterator can read. Its CRC is not valid.
fn plain_batch(b: &BatchView<'_>, records: &[u8]) -> Vec<u8> {
    let header = invariant::bytes(b.bytes(), ..batch::HEADER_LEN);
    let mut v = Vec::with_capacity(batch::HEADER_LEN + records.len());
    v.extend_from_slice(header);
    v.extend_from_slice(records);
    set_length_and_attributes(&mut v, b.attributes() & !0x7);
    v
}

fn set_length_and_attributes(v: &mut [u8], attributes: i16) {
    // `validate` bounds the records below BATCH_BYTES_MAX, so the length fits an i32.
    let length = i32::try_from(v.len() - batch::LOG_OVERHEAD).unwrap_or(i32::MAX);
    if let Some(dst) = v.get_mut(8..12) {
        dst.copy_from_slice(&length.to_be_bytes());
    }
    if let Some(dst) = v.get_mut(21..23) {
        dst.copy_from_slice(&attributes.to_be_bytes());
    }
}

fn set_crc(v: &mut [u8]) {
    let crc = crc32c::crc32c(invariant::bytes(v, batch::CRC_START..));
    if let Some(dst) = v.get_mut(17..21) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Reads a zig-zag varint at `pos`.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Step 3: exactly `records_count` well-formed records fill the payload, offset deltas in order.
fn check_records(index: usize, plain: &[u8]) -> Result<(), RecordError> {
    let invalid = |reason: String| RecordError::Invalid { index, reason };
    let view =
        BatchView::parse_header(plain).map_err(|source| RecordError::Corrupt { index, source })?;
    let count = usize::try_from(view.records_count()).unwrap_or(0);
    // Framing: the length prefixes must cover the payload exactly.
    let payload = view.records_bytes();
    let mut pos = 0usize;
    let mut framed = 0usize;
    while pos < payload.len() {
        let len = varint(payload, &mut pos)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| invalid(format!("record {framed}: invalid length")))?;
        pos = pos
            .checked_add(len)
            .filter(|end| *end <= payload.len())
            .ok_or_else(|| {
                invalid(format!(
                    "incorrect declared batch size, premature end of record {framed}"
                ))
            })?;
        framed += 1;
    }
    if framed != count {
        return Err(invalid(format!(
            "incorrect declared batch size: {count} records declared, {framed} present"
        )));
    }
    let base = view.base_offset();
    let records = view
        .records()
        .map_err(|source| RecordError::Corrupt { index, source })?;
    for (i, r) in records.enumerate() {
        let r = r.map_err(|e| invalid(e.to_string()))?;
        let delta = r.offset - base;
        if delta != i as i64 {
            return Err(invalid(format!(
                "inner record offsets are not continuous: record {i} has offset delta {delta}"
            )));
        }
        for h in r.headers() {
            h.map_err(|e| invalid(e.to_string()))?;
        }
    }
    Ok(())
}

/// Step 4: rebuilds a validated plain batch with `codec`.
fn convert(
    index: usize,
    plain: &[u8],
    codec: Codec,
    level: Option<i32>,
) -> Result<Vec<u8>, RecordError> {
    let invalid = |reason: String| RecordError::Invalid { index, reason };
    let view =
        BatchView::parse_header(plain).map_err(|source| RecordError::Corrupt { index, source })?;
    let mut builder = BatchBuilder::new();
    builder.producer(
        view.producer_id(),
        view.producer_epoch(),
        view.base_sequence(),
    );
    let records = view
        .records()
        .map_err(|source| RecordError::Corrupt { index, source })?;
    let mut headers: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    for r in records {
        let r = r.map_err(|e| invalid(e.to_string()))?;
        headers.clear();
        for h in r.headers() {
            headers.push(h.map_err(|e| invalid(e.to_string()))?);
        }
        builder
            .push(Record {
                key: r.key,
                value: r.value,
                headers: &headers,
                timestamp: r.timestamp,
            })
            .map_err(|e| invalid(e.to_string()))?;
    }
    let mut rebuilt = builder.finish().map_err(|e| invalid(e.to_string()))?;
    // The builder writes CreateTime, not transactional, not control: only compression differs.
    let attributes = (view.attributes() & !0x7) | i16::from(codec.id());
    if codec != Codec::None {
        let packed = compression::compress(
            codec,
            invariant::bytes(&rebuilt, batch::HEADER_LEN..),
            level,
        )
        .map_err(|source| RecordError::Compress {
            index,
            codec,
            source,
        })?;
        rebuilt.truncate(batch::HEADER_LEN);
        rebuilt.extend_from_slice(&packed);
    }
    set_length_and_attributes(&mut rebuilt, attributes);
    set_crc(&mut rebuilt);
    Ok(rebuilt)
}

/// The records of a stored batch, decompressed when needed (bounded by `limit` bytes), as an
/// uncompressed batch whose records the engine's iterator reads. Used by ListOffsets to find a
/// timestamp inside a compressed batch.
pub fn plain_records(b: &BatchView<'_>, limit: usize) -> Result<Vec<u8>, CompressionError> {
    let id = (b.attributes() & 0x7) as u8;
    let codec = Codec::from_id(id).ok_or_else(|| CompressionError::Corrupt {
        codec: Codec::None,
        reason: format!("unknown codec id {id}"),
    })?;
    let payload = compression::decompress(codec, b.records_bytes(), limit)?;
    Ok(plain_batch(b, &payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::topic::CompressionType;

    fn batch_of(n: usize, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        if let Some((id, epoch, seq)) = producer {
            b.producer(id, epoch, seq);
        }
        let hk = b"hk".as_slice();
        let hv = b"hv".as_slice();
        let headers = [(hk, Some(hv))];
        for i in 0..n {
            let value = format!("value-{i}").repeat(20);
            b.push(Record {
                key: Some(b"key"),
                value: Some(value.as_bytes()),
                headers: &headers,
                timestamp: 1_000 + i as i64,
            })
            .expect("push");
        }
        b.finish().expect("finish")
    }

    fn config(t: CompressionType) -> TopicConfig {
        TopicConfig {
            compression_type: t,
            ..TopicConfig::kafka_defaults()
        }
    }

    /// (key, value, timestamp, headers) of every record, decompressing as needed.
    fn contents(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, i64, usize)> {
        let mut out = Vec::new();
        for b in batch::Batches::new(bytes, true) {
            let b = b.expect("valid batch with CRC");
            let plain = plain_records(&b, 1 << 30).expect("decompresses");
            let view = BatchView::parse_header(&plain).expect("plain");
            for r in view.records().expect("records") {
                let r = r.expect("record");
                out.push((
                    r.key.unwrap_or_default().to_vec(),
                    r.value.unwrap_or_default().to_vec(),
                    r.timestamp,
                    r.headers().count(),
                ));
            }
        }
        out
    }

    #[test]
    fn converts_between_every_pair_of_codecs() {
        let original = batch_of(30, Some((7, 1, 100)));
        let want = contents(&original);
        for from in Codec::ALL {
            let source = validate(&original, &config(CompressionType::Codec(from)))
                .expect("valid")
                .unwrap_or_else(|| original.clone());
            for to in Codec::ALL {
                let out = validate(&source, &config(CompressionType::Codec(to))).expect("valid");
                let stored = out.clone().unwrap_or_else(|| source.clone());
                assert_eq!(out.is_none(), from == to, "{from} -> {to}");
                let v = BatchView::parse(&stored).expect("CRC valid");
                assert_eq!(Codec::from_attributes(v.attributes()), Some(to));
                assert_eq!(
                    (v.producer_id(), v.producer_epoch(), v.base_sequence()),
                    (7, 1, 100)
                );
                assert_eq!(v.records_count(), 30);
                assert_eq!(v.last_offset_delta(), 29);
                assert_eq!(v.base_timestamp(), 1_000);
                assert_eq!(v.max_timestamp(), 1_029);
                assert_eq!(contents(&stored), want, "{from} -> {to}");
                // `producer` keeps whatever came.
                assert_eq!(
                    validate(&stored, &config(CompressionType::Producer)),
                    Ok(None)
                );
            }
        }
    }

    fn compressed(codec: Codec, plain: &[u8], records: &[u8]) -> Vec<u8> {
        let mut v = plain.get(..batch::HEADER_LEN).expect("header").to_vec();
        v.extend_from_slice(&compression::compress(codec, records, None).expect("compress"));
        let attrs = i16::from_be_bytes([v[21], v[22]]) | i16::from(codec.id());
        set_length_and_attributes(&mut v, attrs);
        set_crc(&mut v);
        v
    }

    #[test]
    fn compressed_batches_are_validated_as_kafka_does() {
        let plain = batch_of(3, None);
        let records = &plain[batch::HEADER_LEN..];
        let producer = config(CompressionType::Producer);
        let good = compressed(Codec::Gzip, &plain, records);
        assert_eq!(validate(&good, &producer), Ok(None));

        // One record missing from the compressed payload: the count no longer matches.
        let first_len = usize::from(records[0] >> 1) + 1;
        let short = compressed(Codec::Gzip, &plain, &records[first_len..]);
        let e = validate(&short, &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::INVALID_RECORD, "{e}");
        // Trailing bytes after the last record.
        let mut long = records.to_vec();
        long.extend_from_slice(&records[..first_len]);
        let e = validate(&compressed(Codec::Lz4, &plain, &long), &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::INVALID_RECORD, "{e}");
        // Garbage records in an uncompressed batch bound for a compressed topic.
        let gzip = config(CompressionType::Codec(Codec::Gzip));
        let e = validate(&compressed(Codec::None, &plain, b"garbage"), &gzip).expect_err("x");
        assert_eq!(e.code(), error_code::INVALID_RECORD, "{e}");
        // A payload that is not gzip at all.
        let mut bad = compressed(Codec::None, &plain, b"garbage");
        let attrs = i16::from_be_bytes([bad[21], bad[22]]) | 1;
        set_length_and_attributes(&mut bad, attrs);
        set_crc(&mut bad);
        let e = validate(&bad, &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::CORRUPT_MESSAGE, "{e}");
        // A CRC mismatch is CORRUPT_MESSAGE before anything is decompressed.
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let e = validate(&flipped, &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::CORRUPT_MESSAGE, "{e}");
        // Unknown codec id 5.
        let mut five = good.clone();
        five[22] = (five[22] & !7) | 5;
        set_crc(&mut five);
        let e = validate(&five, &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::CORRUPT_MESSAGE, "{e}");
        // Header count inconsistent with the offset range.
        let mut header = plain.clone();
        header[57..61].copy_from_slice(&5i32.to_be_bytes());
        set_crc(&mut header);
        let e = validate(&header, &producer).expect_err("refused");
        assert_eq!(e.code(), error_code::INVALID_RECORD, "{e}");
    }

    #[test]
    fn a_decompression_bomb_is_corrupt_message() {
        let plain = batch_of(1, None);
        let zeros = vec![0u8; DECOMPRESSED_BYTES_FLOOR + 1];
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Lz4, Codec::Snappy] {
            let bomb = compressed(codec, &plain, &zeros);
            assert!(bomb.len() < 4 << 20, "{codec}: {}", bomb.len());
            let e = validate(&bomb, &config(CompressionType::Producer)).expect_err("refused");
            assert_eq!(e.code(), error_code::CORRUPT_MESSAGE, "{e}");
        }
    }

    #[test]
    fn conversion_respects_max_message_bytes_and_keeps_other_batches() {
        let a = batch_of(2, None);
        let b = batch_of(3, None);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let out = validate(&both, &config(CompressionType::Codec(Codec::Zstd)))
            .expect("valid")
            .expect("converted");
        assert_eq!(contents(&out), contents(&both));
        assert_eq!(batch::Batches::new(&out, true).count(), 2);
        let tiny = TopicConfig {
            max_message_bytes: 80,
            ..config(CompressionType::Codec(Codec::Gzip))
        };
        let e = validate(&a, &tiny).expect_err("too large");
        assert_eq!(e.code(), error_code::MESSAGE_TOO_LARGE, "{e}");
    }

    #[test]
    fn decompressed_limit_has_a_floor_and_a_ceiling() {
        assert_eq!(decompressed_limit(1_048_588), DECOMPRESSED_BYTES_FLOOR);
        assert_eq!(decompressed_limit(10 << 20), 160 << 20);
        assert!(decompressed_limit(i32::MAX) < batch::BATCH_BYTES_MAX);
    }
}
