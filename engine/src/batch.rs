//! Kafka RecordBatch v2 (magic 2): header view, validation, and a builder for uncompressed batches.
//!
//! This is the unit the segmented log stores. A batch is parsed once on append (length, magic,
//! CRC-32C), then handled as opaque bytes: the log never looks at individual records. No I/O here.
//!
//! # Layout (big-endian, 61-byte header, then `records_count` records)
//!
//! ```text
//!  offset size field
//!       0    8 base_offset              stamped by the log on append (not covered by the CRC)
//!       8    4 batch_length             bytes after this field; whole batch = 12 + batch_length
//!      12    4 partition_leader_epoch   stamped by the leader (not covered by the CRC)
//!      16    1 magic                    = 2
//!      17    4 crc                      CRC-32C (Castagnoli) of bytes 21..end
//!      21    2 attributes               bits 0-2 compression, 3 timestamp type, 4 transactional,
//!                                       5 control, 6 delete horizon
//!      23    4 last_offset_delta
//!      27    8 base_timestamp
//!      35    8 max_timestamp
//!      43    8 producer_id
//!      51    2 producer_epoch
//!      53    4 base_sequence
//!      57    4 records_count
//!      61    . records (possibly compressed)
//! ```
//!
//! Each (uncompressed) record is: `length: varint`, `attributes: i8`, `timestamp_delta: varlong`,
//! `offset_delta: varint`, `key_length: varint` (-1 = null), key, `value_length: varint`, value,
//! `headers_count: varint`, then per header `key_length: varint`, key, `value_length: varint`, value.
//! Varints are zig-zag encoded as in protobuf.
//!
//! Parsing is bounds-checked everywhere and never panics: every length is checked against the
//! bytes actually present before use.

use crate::invariant;
use thiserror::Error;

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length`'s coverage starts (base offset + batch length).
pub const LOG_OVERHEAD: usize = 12;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;
/// First byte covered by the CRC.
pub const CRC_START: usize = 21;
/// Largest batch accepted anywhere (Kafka's `message.max.bytes` is checked by callers; this is a
/// hard ceiling that keeps every size below `i32::MAX`).
pub const BATCH_BYTES_MAX: usize = 1 << 30;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;

const _: () = assert!(OFF_RECORDS_COUNT + 4 == HEADER_LEN);

/// Why bytes are not a valid batch. `at` is the byte offset of the batch in the buffer given.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch at byte {at}: truncated, need {need} bytes, have {have}")]
    Truncated { at: usize, need: usize, have: usize },
    #[error("batch at byte {at}: invalid batch_length {length}")]
    BadLength { at: usize, length: i32 },
    #[error("batch at byte {at}: unsupported magic {magic} (only 2 is supported)")]
    BadMagic { at: usize, magic: i8 },
    #[error("batch at byte {at}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        at: usize,
        stored: u32,
        computed: u32,
    },
    #[error("batch at byte {at}: invalid {field} {value}")]
    BadField {
        at: usize,
        field: &'static str,
        value: i64,
    },
    #[error("record {index} of batch: {reason}")]
    BadRecord { index: usize, reason: &'static str },
    #[error("compressed batch (codec {codec:?}): records cannot be iterated without decompression")]
    Compressed { codec: Compression },
    #[error("builder: {0}")]
    Build(&'static str),
}

/// Compression codec, attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5..=7 are not assigned by Kafka.
    Unknown(u8),
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Self {
        match attributes & 0x7 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            // The mask keeps the value in 0..=7, so the cast cannot truncate.
            other => Self::Unknown(other as u8),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::Unknown(_) => "unknown",
        }
    }
}

fn get<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    // Callers check `bytes.len() >= HEADER_LEN` first (asserted in tests; zeros in release).
    let mut out = [0u8; N];
    let src = invariant::bytes(bytes, at..at + N);
    if src.len() == N {
        out.copy_from_slice(src);
    }
    out
}

fn put(bytes: &mut [u8], at: usize, src: &[u8]) {
    let dst = invariant::bytes_mut(bytes, at..at + src.len());
    if dst.len() == src.len() {
        dst.copy_from_slice(src);
    }
}

/// Reads `(base_offset, batch_length)` from the 12-byte log overhead, if present.
pub fn peek_offset_and_length(bytes: &[u8]) -> Option<(i64, i32)> {
    if bytes.len() < LOG_OVERHEAD {
        return None;
    }
    Some((
        i64::from_be_bytes(get(bytes, OFF_BASE_OFFSET)),
        i32::from_be_bytes(get(bytes, OFF_LENGTH)),
    ))
}

/// A validated view of one batch's header. Holds the whole batch's bytes (header + records).
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchView")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("size", &self.size())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Parses the batch at the start of `bytes` (trailing bytes are ignored) and checks its framing
    /// (length, magic, header fields) but NOT its CRC; see [`BatchView::verify_crc`].
    pub fn parse_header(bytes: &'a [u8]) -> Result<Self, BatchError> {
        Self::parse_header_at(bytes, 0)
    }

    /// Like [`BatchView::parse_header`]; `at` is only used in error messages.
    pub fn parse_header_at(bytes: &'a [u8], at: usize) -> Result<Self, BatchError> {
        let Some((_, length)) = peek_offset_and_length(bytes) else {
            return Err(BatchError::Truncated {
                at,
                need: LOG_OVERHEAD,
                have: bytes.len(),
            });
        };
        let min = (HEADER_LEN - LOG_OVERHEAD) as i32;
        if length < min || length as usize > BATCH_BYTES_MAX - LOG_OVERHEAD {
            return Err(BatchError::BadLength { at, length });
        }
        let size = LOG_OVERHEAD + length as usize;
        let Some(batch) = bytes.get(..size) else {
            return Err(BatchError::Truncated {
                at,
                need: size,
                have: bytes.len(),
            });
        };
        let view = BatchView { bytes: batch };
        let magic = view.magic();
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { at, magic });
        }
        if view.last_offset_delta() < 0 {
            return Err(BatchError::BadField {
                at,
                field: "last_offset_delta",
                value: view.last_offset_delta().into(),
            });
        }
        if view.records_count() < 0 {
            return Err(BatchError::BadField {
                at,
                field: "records_count",
                value: view.records_count().into(),
            });
        }
        if view.base_offset() < 0 {
            return Err(BatchError::BadField {
                at,
                field: "base_offset",
                value: view.base_offset(),
            });
        }
        Ok(view)
    }

    /// Parses the header and checks the CRC: the full validation done once per batch on append.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        Self::parse_at(bytes, 0)
    }

    /// Like [`BatchView::parse`]; `at` is only used in error messages.
    pub fn parse_at(bytes: &'a [u8], at: usize) -> Result<Self, BatchError> {
        let view = Self::parse_header_at(bytes, at)?;
        let (stored, computed) = (view.crc(), view.compute_crc());
        if stored != computed {
            return Err(BatchError::CrcMismatch {
                at,
                stored,
                computed,
            });
        }
        Ok(view)
    }

    /// The batch's bytes (header and records).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Whole batch size in bytes (`12 + batch_length`).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(get(self.bytes, OFF_BASE_OFFSET))
    }
    pub fn batch_length(&self) -> i32 {
        i32::from_be_bytes(get(self.bytes, OFF_LENGTH))
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(get(self.bytes, OFF_LEADER_EPOCH))
    }
    pub fn magic(&self) -> i8 {
        i8::from_be_bytes(get(self.bytes, OFF_MAGIC))
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(get(self.bytes, OFF_CRC))
    }
    /// CRC-32C of bytes 21..end.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(invariant::bytes(self.bytes, CRC_START..))
    }
    pub fn crc_valid(&self) -> bool {
        self.crc() == self.compute_crc()
    }
    /// Checks the CRC of a batch parsed with [`BatchView::parse_header`].
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored != computed {
            return Err(BatchError::CrcMismatch {
                at: 0,
                stored,
                computed,
            });
        }
        Ok(())
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(get(self.bytes, OFF_ATTRIBUTES))
    }
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes())
    }
    /// Attribute bit 3: true when timestamps are LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & 0x08 != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(get(self.bytes, OFF_LAST_OFFSET_DELTA))
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(self.last_offset_delta().into())
    }
    /// Offsets covered by this batch (`last_offset_delta + 1`).
    pub fn offset_count(&self) -> u64 {
        // parse_header rejects negative deltas.
        u64::from(self.last_offset_delta().unsigned_abs()) + 1
    }
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(get(self.bytes, OFF_BASE_TIMESTAMP))
    }
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(get(self.bytes, OFF_MAX_TIMESTAMP))
    }
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(get(self.bytes, OFF_PRODUCER_ID))
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(get(self.bytes, OFF_PRODUCER_EPOCH))
    }
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(get(self.bytes, OFF_BASE_SEQUENCE))
    }
    pub fn records_count(&self) -> i32 {
        i32::from_be_bytes(get(self.bytes, OFF_RECORDS_COUNT))
    }
    /// The records section (after the 61-byte header).
    pub fn records_bytes(&self) -> &'a [u8] {
        invariant::bytes(self.bytes, HEADER_LEN..)
    }

    /// Iterates the records of an uncompressed batch. Each item is bounds-checked.
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        let codec = self.compression();
        if codec != Compression::None {
            return Err(BatchError::Compressed { codec });
        }
        Ok(Records {
            rest: self.records_bytes(),
            index: 0,
            // parse_header rejects negative counts.
            remaining: self.records_count().unsigned_abs() as usize,
            base_offset: self.base_offset(),
            base_timestamp: self.base_timestamp(),
            failed: false,
        })
    }
}

/// Stamps the base offset into a batch in place. The base offset is outside the CRC.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    put(batch, OFF_BASE_OFFSET, &base_offset.to_be_bytes());
}

/// Stamps the partition leader epoch into a batch in place. It is outside the CRC.
pub fn stamp_leader_epoch(batch: &mut [u8], epoch: i32) {
    put(batch, OFF_LEADER_EPOCH, &epoch.to_be_bytes());
}

/// Iterates the batches of a buffer of concatenated batches (e.g. a log read or a produce
/// request's records). Validates framing; stops with an error item at the first bad batch.
pub struct Batches<'a> {
    bytes: &'a [u8],
    pos: usize,
    check_crc: bool,
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8], check_crc: bool) -> Self {
        Batches {
            bytes,
            pos: 0,
            check_crc,
            failed: false,
        }
    }
    /// Byte position of the next batch in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.bytes.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let parsed = if self.check_crc {
            BatchView::parse_at(rest, self.pos)
        } else {
            BatchView::parse_header_at(rest, self.pos)
        };
        match parsed {
            Ok(view) => {
                self.pos += view.size();
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record of an uncompressed batch, borrowing the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Raw headers section: `count` headers, decode with [`RecordView::headers`].
    headers_raw: &'a [u8],
    headers_count: usize,
}

impl<'a> RecordView<'a> {
    /// Iterates the record's headers as `(key, value)`.
    pub fn headers(
        &self,
    ) -> impl Iterator<Item = Result<(&'a [u8], Option<&'a [u8]>), BatchError>> + use<'a> {
        let mut cur = Cursor {
            bytes: self.headers_raw,
            pos: 0,
        };
        let mut left = self.headers_count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let item = (|| {
                let key = cur.bytes_field()?.ok_or("null header key")?;
                let value = cur.bytes_field()?;
                Ok((key, value))
            })();
            Some(item.map_err(|reason| BatchError::BadRecord { index: 0, reason }))
        })
    }
}

/// Iterator over the records of an uncompressed batch.
pub struct Records<'a> {
    rest: &'a [u8],
    index: usize,
    remaining: usize,
    base_offset: i64,
    base_timestamp: i64,
    failed: bool,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.bytes.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }
    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err("varint too long");
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("varint too long")
    }
    fn varint(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.varlong()?).map_err(|_| "varint out of range")
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let s = self
            .bytes
            .get(self.pos..self.pos.checked_add(n).ok_or("length overflow")?)
            .ok_or("truncated")?;
        self.pos += n;
        Ok(s)
    }
    fn bytes_field(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        let index = self.index;
        let result = (|| {
            let mut outer = Cursor {
                bytes: self.rest,
                pos: 0,
            };
            let len = outer.varint()?;
            if len < 0 {
                return Err("negative record length");
            }
            let body = outer.take(len as usize)?;
            let consumed = outer.pos;
            let mut c = Cursor {
                bytes: body,
                pos: 0,
            };
            let attributes = c.byte()? as i8;
            let ts_delta = c.varlong()?;
            let offset_delta = c.varint()?;
            let key = c.bytes_field()?;
            let value = c.bytes_field()?;
            let headers_count = c.varint()?;
            if headers_count < 0 {
                return Err("negative header count");
            }
            let headers_raw = body.get(c.pos..).unwrap_or(&[]);
            // Validate headers now so a record either fully decodes or errors.
            let mut h = Cursor {
                bytes: headers_raw,
                pos: 0,
            };
            for _ in 0..headers_count {
                h.bytes_field()?.ok_or("null header key")?;
                h.bytes_field()?;
            }
            if h.pos != headers_raw.len() {
                return Err("trailing bytes in record");
            }
            Ok((
                consumed,
                RecordView {
                    offset: self.base_offset.saturating_add(offset_delta.into()),
                    timestamp: self.base_timestamp.saturating_add(ts_delta),
                    attributes,
                    key,
                    value,
                    headers_raw,
                    headers_count: headers_count as usize,
                },
            ))
        })();
        match result {
            Ok((consumed, record)) => {
                self.rest = self.rest.get(consumed..).unwrap_or(&[]);
                self.index += 1;
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(reason) => {
                self.failed = true;
                Some(Err(BatchError::BadRecord { index, reason }))
            }
        }
    }
}

/// One record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    pub timestamp: i64,
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_bytes_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Builds one uncompressed RecordBatch v2 (CreateTime timestamps, no producer id).
///
/// ```
/// use kiln_engine::batch::{BatchBuilder, BatchView, Record};
/// let mut b = BatchBuilder::new();
/// b.push(Record { key: Some(b"k"), value: Some(b"v"), timestamp: 1000, ..Default::default() }).unwrap();
/// let bytes = b.finish().unwrap();
/// let view = BatchView::parse(&bytes).unwrap();
/// assert_eq!(view.records_count(), 1);
/// ```
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
    scratch: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            scratch: Vec::new(),
        }
    }

    /// Sets idempotent-producer fields.
    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as a control batch (transaction markers) / transactional.
    pub fn attributes(&mut self, transactional: bool, control: bool) -> &mut Self {
        self.attributes = (if transactional { 0x10 } else { 0 }) | (if control { 0x20 } else { 0 });
        self
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Encoded size so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, record: Record<'_>) -> Result<(), BatchError> {
        if self.buf.len() >= BATCH_BYTES_MAX {
            return Err(BatchError::Build("batch exceeds BATCH_BYTES_MAX"));
        }
        let base_ts = *self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // attributes
        put_varlong(body, record.timestamp.wrapping_sub(base_ts));
        put_varlong(body, i64::from(self.count));
        put_bytes_field(body, record.key);
        put_bytes_field(body, record.value);
        put_varlong(body, record.headers.len() as i64);
        for (k, v) in record.headers {
            put_bytes_field(body, Some(k));
            put_bytes_field(body, *v);
        }
        put_varlong(&mut self.buf, body.len() as i64);
        self.buf.extend_from_slice(body);
        self.count = self
            .count
            .checked_add(1)
            .ok_or(BatchError::Build("too many records"))?;
        Ok(())
    }

    /// Writes the header (base offset 0, leader epoch -1) and the CRC; returns the batch bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Build("a batch needs at least one record"));
        }
        if self.buf.len() > BATCH_BYTES_MAX {
            return Err(BatchError::Build("batch exceeds BATCH_BYTES_MAX"));
        }
        let len = (self.buf.len() - LOG_OVERHEAD) as i32;
        let b = &mut self.buf;
        put(b, OFF_BASE_OFFSET, &0i64.to_be_bytes());
        put(b, OFF_LENGTH, &len.to_be_bytes());
        put(b, OFF_LEADER_EPOCH, &(-1i32).to_be_bytes());
        put(b, OFF_MAGIC, &[MAGIC_V2 as u8]);
        put(b, OFF_ATTRIBUTES, &self.attributes.to_be_bytes());
        put(b, OFF_LAST_OFFSET_DELTA, &(self.count - 1).to_be_bytes());
        put(
            b,
            OFF_BASE_TIMESTAMP,
            &self.base_timestamp.unwrap_or(-1).to_be_bytes(),
        );
        put(b, OFF_MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(b, OFF_PRODUCER_ID, &self.producer_id.to_be_bytes());
        put(b, OFF_PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes());
        put(b, OFF_BASE_SEQUENCE, &self.base_sequence.to_be_bytes());
        put(b, OFF_RECORDS_COUNT, &self.count.to_be_bytes());
        let crc = crc32c::crc32c(invariant::bytes(b, CRC_START..));
        put(b, OFF_CRC, &crc.to_be_bytes());
        Ok(self.buf)
    }
}

/// Encodes a single-record batch: a convenience for callers that write one entry at a time.
pub fn single_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp: i64,
) -> Result<Vec<u8>, BatchError> {
    let mut b = BatchBuilder::new();
    b.push(Record {
        key,
        value,
        headers: &[],
        timestamp,
    })?;
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_round_trips_records_and_headers() {
        let mut b = BatchBuilder::new();
        b.producer(7, 1, 42);
        let headers: &[(&[u8], Option<&[u8]>)] = &[(b"h1", Some(b"x")), (b"h2", None)];
        b.push(Record {
            key: Some(b"k1"),
            value: Some(b"v1"),
            headers,
            timestamp: 1000,
        })
        .unwrap();
        b.push(Record {
            key: None,
            value: None,
            headers: &[],
            timestamp: 900,
        })
        .unwrap();
        b.push(Record {
            key: Some(b""),
            value: Some(&[9; 300]),
            headers: &[],
            timestamp: 1500,
        })
        .unwrap();
        let mut bytes = b.finish().unwrap();
        stamp_base_offset(&mut bytes, 100);
        stamp_leader_epoch(&mut bytes, 5);
        let v = BatchView::parse(&bytes).unwrap();
        assert_eq!(v.base_offset(), 100);
        assert_eq!(v.last_offset(), 102);
        assert_eq!(v.partition_leader_epoch(), 5);
        assert_eq!(v.records_count(), 3);
        assert_eq!(v.max_timestamp(), 1500);
        assert_eq!(v.base_timestamp(), 1000);
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (7, 1, 42)
        );
        assert_eq!(v.compression(), Compression::None);
        let recs: Vec<_> = v.records().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].key, Some(&b"k1"[..]));
        assert_eq!(recs[0].offset, 100);
        let hs: Vec<_> = recs[0].headers().map(|h| h.unwrap()).collect();
        assert_eq!(hs, vec![(&b"h1"[..], Some(&b"x"[..])), (&b"h2"[..], None)]);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].timestamp, 900);
        assert_eq!(recs[2].offset, 102);
        assert_eq!(recs[2].value.map(<[u8]>::len), Some(300));
    }

    #[test]
    fn crc_detects_any_single_bit_flip_in_covered_bytes() {
        let bytes = single_record(Some(b"key"), Some(b"value"), 1).unwrap();
        for i in CRC_START..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(
                matches!(
                    BatchView::parse(&b),
                    Err(BatchError::CrcMismatch { .. }) | Err(BatchError::BadMagic { .. })
                ),
                "byte {i}"
            );
        }
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors() {
        let bytes = single_record(None, Some(b"v"), 1).unwrap();
        for n in 0..bytes.len() {
            assert!(BatchView::parse(&bytes[..n]).is_err());
        }
        assert!(matches!(
            BatchView::parse(&[0u8; 80]),
            Err(BatchError::BadLength { .. })
        ));
        let mut bad_magic = bytes.clone();
        bad_magic[16] = 1;
        assert!(matches!(
            BatchView::parse(&bad_magic),
            Err(BatchError::BadMagic { magic: 1, .. })
        ));
    }

    #[test]
    fn batches_iterator_stops_at_first_bad_batch() {
        let a = single_record(None, Some(b"a"), 1).unwrap();
        let mut buf = a.clone();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&[1, 2, 3]);
        let items: Vec<_> = Batches::new(&buf, true).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    }

    #[test]
    fn varlong_round_trips_extremes() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            i32::MAX.into(),
            i32::MIN.into(),
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            let mut c = Cursor {
                bytes: &out,
                pos: 0,
            };
            assert_eq!(c.varlong().unwrap(), v);
            assert_eq!(c.pos, out.len());
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = BatchView::parse(&bytes);
            for b in Batches::new(&bytes, false).flatten() {
                if let Ok(rs) = b.records() { for r in rs.flatten() { let _ = r.headers().count(); } }
            }
        }

        #[test]
        fn mutated_valid_batches_never_panic(pos in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut b = BatchBuilder::new();
            let headers: &[(&[u8], Option<&[u8]>)] = &[(b"h", Some(b"x"))];
            b.push(Record { key: Some(b"k"), value: Some(b"v"), headers, timestamp: 5 }).unwrap();
            b.push(Record { key: None, value: Some(&[1; 50]), headers: &[], timestamp: 6 }).unwrap();
            let mut bytes = b.finish().unwrap();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(v) = BatchView::parse_header(&bytes)
                && let Ok(rs) = v.records()
            {
                for r in rs.flatten() { let _ = r.headers().count(); }
            }
        }
    }
}
