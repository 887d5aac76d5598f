//! RecordBatch v2 (magic 2) building and scanning for the load generator.
//!
//! Layout (big-endian, 61-byte header): base_offset i64, batch_length i32,
//! partition_leader_epoch i32, magic i8 = 2, crc u32 (CRC-32C of everything after it),
//! attributes i16 (bits 0-2 compression), last_offset_delta i32, base_timestamp i64,
//! max_timestamp i64, producer_id i64, producer_epoch i16, base_sequence i32, records_count
//! i32, then the records (compressed as a whole when attributes say so). Each record: length
//! varint, attributes i8, timestamp_delta varlong, offset_delta varint, key (varint length,
//! -1 = null), value (varint length), headers count varint.
//!
//! Compression (gzip, snappy, lz4, zstd at Kafka's default levels) is Kiln's own
//! `kiln_kafka_codec::compression`, the code the broker uses.
//!
//! Values carry, in their first 8 bytes, the nanoseconds between the run's base instant and the
//! record's intended send time, so the end-to-end consumer can measure latency per record.

use kiln_kafka_codec::compression::{self, Codec};

use crate::error::{LoadError, Result};

pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;

/// Largest decompressed batch body the end-to-end consumer accepts.
const INFLATED_BYTES_MAX: usize = 64 << 20;

/// Batch compression (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Self> {
        match Codec::from_name(s) {
            Some(Codec::None) => Ok(Compression::None),
            Some(Codec::Gzip) => Ok(Compression::Gzip),
            Some(Codec::Snappy) => Ok(Compression::Snappy),
            Some(Codec::Lz4) => Ok(Compression::Lz4),
            Some(Codec::Zstd) => Ok(Compression::Zstd),
            None => Err(LoadError::Config(format!(
                "compression {s:?} is not supported (none, gzip, snappy, lz4, zstd)"
            ))),
        }
    }

    fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }

    fn attribute(self) -> i16 {
        i16::from(self.codec().id())
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// Builds batches into a reused buffer.
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<u8>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            records: Vec::new(),
        }
    }

    /// Appends a batch of `n` records to `out`. Record `j` has key `key(j)` (None = null)
    /// and value `payload` with its first 8 bytes replaced by `stamp(j)`.
    pub fn build(
        &mut self,
        out: &mut Vec<u8>,
        n: usize,
        timestamp_ms: i64,
        payload: &[u8],
        mut key: impl FnMut(usize, &mut [u8; 24]) -> Option<usize>,
        mut stamp: impl FnMut(usize) -> u64,
    ) -> Result<()> {
        self.records.clear();
        let mut kbuf = [0u8; 24];
        for j in 0..n {
            let klen = key(j, &mut kbuf);
            let key_bytes = klen.and_then(|l| kbuf.get(..l));
            let key_len = key_bytes.map_or(-1, |k| k.len() as i64);
            let body = 1 // attributes
                + 1 // timestamp delta 0
                + varint_len(j as i64)
                + varint_len(key_len)
                + key_bytes.map_or(0, <[u8]>::len)
                + varint_len(payload.len() as i64)
                + payload.len()
                + 1; // no headers
            put_varint(&mut self.records, body as i64);
            self.records.push(0);
            put_varint(&mut self.records, 0);
            put_varint(&mut self.records, j as i64);
            put_varint(&mut self.records, key_len);
            if let Some(k) = key_bytes {
                self.records.extend_from_slice(k);
            }
            put_varint(&mut self.records, payload.len() as i64);
            let at = self.records.len();
            self.records.extend_from_slice(payload);
            if let Some(head) = self.records.get_mut(at..at + 8) {
                head.copy_from_slice(&stamp(j).to_be_bytes());
            }
            put_varint(&mut self.records, 0);
        }
        let compressed;
        let body: &[u8] = match self.compression {
            Compression::None => &self.records,
            c => {
                compressed = compression::compress(c.codec(), &self.records, None)
                    .map_err(|e| LoadError::Protocol(format!("{}: {e}", c.codec())))?;
                &compressed
            }
        };
        let start = out.len();
        let last_delta = n.saturating_sub(1) as i32;
        let count = n as i32;
        out.extend_from_slice(&0i64.to_be_bytes()); // base offset
        let len = (HEADER_LEN - 12 + body.len()) as i32;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&[0; 4]); // crc, below
        out.extend_from_slice(&self.compression.attribute().to_be_bytes());
        out.extend_from_slice(&last_delta.to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(body);
        let crc = crc32c::crc32c(out.get(start + CRC_START..).unwrap_or_default());
        if let Some(slot) = out.get_mut(start + 17..start + 21) {
            slot.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(())
    }
}

/// One batch seen while scanning fetched bytes.
pub struct BatchView<'a> {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub records_count: i32,
    pub compression: i16,
    /// Bytes after the 61-byte header.
    pub body: &'a [u8],
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Iterates over the complete batches in `buf` (a trailing partial batch, which brokers may
/// send, is ignored).
pub fn batches(buf: &[u8]) -> impl Iterator<Item = BatchView<'_>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = buf.get(pos..)?;
        let len = usize::try_from(be_i32(rest, 8)?).ok()?;
        let total = 12 + len;
        let batch = rest.get(..total)?;
        pos += total;
        Some(BatchView {
            base_offset: be_i64(batch, 0)?,
            last_offset_delta: be_i32(batch, 23)?,
            records_count: be_i32(batch, 57)?,
            compression: be_i16(batch, 21)? & 7,
            body: batch.get(HEADER_LEN..)?,
        })
    })
}

/// Calls `f` with the first 8 bytes of every record value (the stamp) of a batch.
pub fn for_each_stamp(b: &BatchView<'_>, mut f: impl FnMut(u64)) -> Result<()> {
    let inflated;
    let body: &[u8] = match Codec::from_attributes(b.compression) {
        Some(Codec::None) => b.body,
        Some(codec) => {
            inflated = compression::decompress(codec, b.body, INFLATED_BYTES_MAX)
                .map_err(|e| LoadError::Protocol(format!("{codec}: {e}")))?;
            &inflated
        }
        None => {
            return Err(LoadError::Protocol(format!(
                "cannot read records compressed with codec {}",
                b.compression
            )));
        }
    };
    let bad = || LoadError::Protocol("malformed record".into());
    let mut pos = 0;
    for _ in 0..b.records_count {
        let len =
            usize::try_from(get_varint(body, &mut pos).ok_or_else(bad)?).map_err(|_| bad())?;
        let end = pos + len;
        let mut p = pos + 1; // attributes
        get_varint(body, &mut p).ok_or_else(bad)?; // timestamp delta
        get_varint(body, &mut p).ok_or_else(bad)?; // offset delta
        let klen = get_varint(body, &mut p).ok_or_else(bad)?;
        if klen > 0 {
            p += klen as usize;
        }
        let vlen = get_varint(body, &mut p).ok_or_else(bad)?;
        if vlen >= 8 {
            let v = body.get(p..p + 8).ok_or_else(bad)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(v);
            f(u64::from_be_bytes(a));
        }
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(c: Compression, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(c);
        let mut out = Vec::new();
        let payload = vec![7u8; 100];
        b.build(
            &mut out,
            n,
            1_700_000_000_000,
            &payload,
            |j, k| {
                k[0] = j as u8;
                Some(1)
            },
            |j| 1000 + j as u64,
        )
        .unwrap();
        out
    }

    #[test]
    fn built_batch_has_a_valid_header_and_crc() {
        let out = build(Compression::None, 3);
        let len = i32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
        assert_eq!(out.len(), 12 + len);
        assert_eq!(out[16], 2);
        let crc = u32::from_be_bytes(out[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&out[21..]));
        let views: Vec<_> = batches(&out).collect();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].records_count, 3);
        assert_eq!(views[0].last_offset_delta, 2);
    }

    #[test]
    fn stamps_round_trip_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut two = build(c, 5);
            two.extend(build(c, 2));
            let mut stamps = Vec::new();
            for b in batches(&two) {
                for_each_stamp(&b, |s| stamps.push(s)).unwrap();
            }
            assert_eq!(
                stamps,
                vec![1000, 1001, 1002, 1003, 1004, 1000, 1001],
                "{c:?}"
            );
        }
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let mut two = build(Compression::None, 2);
        let one = two.len();
        two.extend(build(Compression::None, 2));
        two.truncate(one + 30);
        assert_eq!(batches(&two).count(), 1);
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut p = 0;
            assert_eq!(get_varint(&b, &mut p), Some(v));
        }
    }
}
