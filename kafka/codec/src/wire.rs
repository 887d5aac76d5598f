//! Primitive Kafka wire types: the bounded [`Reader`], the [`Writer`] sink, [`Uuid`] and the
//! error types every generated decoder and encoder returns.
//!
//! Every length or count read here is checked against the bytes left in the frame before
//! anything is allocated, so a frame can never make the decoder reserve more memory than a
//! small multiple of its own size.

use bytes::Bytes;

/// Nesting limit for structs inside structs. Kafka's specs nest at most a handful of levels;
/// the limit exists so that no input can drive recursion, whatever the message shape.
pub const MAX_DEPTH: u32 = 32;

/// Longest string Kafka reads or writes (its Java code rejects longer ones, compact or
/// not, because the classic encoding has an `i16` length).
pub const MAX_STRING_LEN: usize = 0x7fff;

/// Why a frame could not be decoded. Every variant says which field was being read
/// (`Message.field`) and the byte offset in the buffer the [`Reader`] was created from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame ended before the value did.
    #[error("{field}: unexpected end of frame at offset {offset}: need {need} bytes, have {have}")]
    UnexpectedEof {
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// A length or count is negative (other than -1 for a nullable value) or larger than the
    /// bytes left in the frame could hold.
    #[error("{field}: invalid length {len} at offset {offset} ({have} bytes left)")]
    InvalidLength {
        field: &'static str,
        offset: usize,
        len: i64,
        have: usize,
    },
    /// A null was sent for a field that is not nullable in this version.
    #[error("{field}: null at offset {offset} but the field is not nullable in this version")]
    UnexpectedNull { field: &'static str, offset: usize },
    /// An unsigned varint ran past its maximum width (5 bytes for 32 bits, 10 for 64).
    #[error("{field}: varint at offset {offset} is longer than {max} bytes")]
    VarintTooLong {
        field: &'static str,
        offset: usize,
        max: usize,
    },
    /// A string is not valid UTF-8.
    #[error("{field}: string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str, offset: usize },
    /// Structs are nested deeper than [`MAX_DEPTH`].
    #[error("{field}: structs nested deeper than {max} at offset {offset}")]
    TooDeep {
        field: &'static str,
        offset: usize,
        max: u32,
    },
    /// A tagged field's value did not fit in the size its header announced.
    #[error("{field}: tagged field at offset {offset} overruns its declared size {size}")]
    TaggedFieldOverrun {
        field: &'static str,
        offset: usize,
        size: usize,
    },
    /// The API key is not one Kiln knows.
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    /// The message does not exist in this version.
    #[error("{message}: version {version} is not supported (valid {min}..={max})")]
    UnsupportedVersion {
        message: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
}

/// Why a value could not be encoded in the requested version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message does not exist in this version.
    #[error("{message}: version {version} is not supported (valid {min}..={max})")]
    UnsupportedVersion {
        message: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    /// A field that this version cannot carry holds a non-default value, and the spec says the
    /// field is not ignorable.
    #[error("{field}: set to a non-default value but version {version} cannot carry it")]
    UnsupportedField { field: &'static str, version: i16 },
    /// A null was given for a field that is not nullable in this version.
    #[error("{field}: null is not allowed in version {version}")]
    UnexpectedNull { field: &'static str, version: i16 },
    /// A string, byte array or array is longer than its length prefix can express.
    #[error("{field}: length {len} does not fit the wire format")]
    TooLong { field: &'static str, len: usize },
}

/// A 128-bit Kafka UUID (topic ids, directory ids), kept as its 16 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's `Uuid.ZERO_UUID`, which means "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);

    /// Builds a UUID from its two 64-bit halves, most significant first.
    pub fn from_u64_pair(high: u64, low: u64) -> Uuid {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&high.to_be_bytes());
        b[8..].copy_from_slice(&low.to_be_bytes());
        Uuid(b)
    }

    /// The UUID as a big-endian 128-bit integer.
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka prints UUIDs as URL-safe base64 without padding (22 characters), e.g. topic ids in
/// `kafka-topics --describe`.
impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.as_u128();
        // 128 bits = 21 groups of 6 bits + 2 bits; base64 reads them most significant first,
        // the final group padded with four zero bits.
        let mut out = [0u8; 22];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 128i32 - 6 * (i as i32 + 1);
            let idx = if shift >= 0 {
                (v >> shift) & 0x3f
            } else {
                (v << -shift) & 0x3f
            };
            *c = BASE64_URL[idx as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
    }
}

impl std::str::FromStr for Uuid {
    type Err = ();

    /// Parses Kafka's 22-character URL-safe base64 form.
    fn from_str(s: &str) -> Result<Uuid, ()> {
        let b = s.as_bytes();
        if b.len() != 22 {
            return Err(());
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            let d = BASE64_URL.iter().position(|&x| x == c).ok_or(())? as u128;
            if i < 21 {
                v = (v << 6) | d;
            } else {
                if d & 0x0f != 0 {
                    return Err(());
                }
                v = (v << 2) | (d >> 4);
            }
        }
        Ok(Uuid(v.to_be_bytes()))
    }
}

/// A cursor over one frame. Decoded `bytes` and `records` fields are slices of the frame
/// (reference-counted, never copied).
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
    end: usize,
    depth: u32,
}

impl Reader {
    /// A reader over the whole buffer.
    pub fn new(buf: Bytes) -> Reader {
        let end = buf.len();
        Reader {
            buf,
            pos: 0,
            end,
            depth: 0,
        }
    }

    /// The offset of the next byte, counted from the start of the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    fn eof(&self, field: &'static str, need: usize) -> DecodeError {
        DecodeError::UnexpectedEof {
            field,
            offset: self.pos,
            need,
            have: self.remaining(),
        }
    }

    /// Consumes `n` bytes and returns them as a slice of the frame.
    fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.eof(field, n));
        }
        let start = self.pos;
        self.pos += n;
        self.buf
            .get(start..start + n)
            .ok_or(DecodeError::UnexpectedEof {
                field,
                offset: start,
                need: n,
                have: 0,
            })
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(field, N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Consumes `n` bytes as a zero-copy slice of the frame.
    pub fn read_slice(&mut self, field: &'static str, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(self.eof(field, n));
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..start + n))
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, field: &'static str, n: usize) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(self.eof(field, n));
        }
        self.pos += n;
        Ok(())
    }

    pub fn read_bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.read_i8(field)? != 0)
    }
    pub fn read_i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }
    pub fn read_i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }
    pub fn read_u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub fn read_i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }
    pub fn read_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub fn read_i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
    pub fn read_f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.array(field)?))
    }
    pub fn read_uuid(&mut self, field: &'static str) -> Result<Uuid, DecodeError> {
        Ok(Uuid(self.array(field)?))
    }

    /// An unsigned LEB128 varint of at most 5 bytes (32 bits).
    pub fn read_unsigned_varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.read_i8(field)? as u8;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong {
            field,
            offset: start,
            max: 5,
        })
    }

    /// An unsigned LEB128 varint of at most 10 bytes (64 bits).
    pub fn read_unsigned_varlong(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.read_i8(field)? as u8;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong {
            field,
            offset: start,
            max: 10,
        })
    }

    /// A zig-zag signed varint (32 bits), as used inside record batches.
    pub fn read_varint(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let v = self.read_unsigned_varint(field)?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    /// A zig-zag signed varlong (64 bits), as used inside record batches.
    pub fn read_varlong(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let v = self.read_unsigned_varlong(field)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// Reads a length prefix: compact (unsigned varint, value + 1, 0 = null) or classic
    /// (`i16`/`i32`, -1 = null). Returns `None` for null. The length is checked against the
    /// remaining bytes, each item needing at least `min_item` bytes, before it is returned.
    pub fn read_length(
        &mut self,
        field: &'static str,
        compact: bool,
        short: bool,
        min_item: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let offset = self.pos;
        let raw: i64 = if compact {
            i64::from(self.read_unsigned_varint(field)?) - 1
        } else if short {
            i64::from(self.read_i16(field)?)
        } else {
            i64::from(self.read_i32(field)?)
        };
        if raw == -1 {
            return Ok(None);
        }
        let have = self.remaining();
        let bad = DecodeError::InvalidLength {
            field,
            offset,
            len: raw,
            have,
        };
        let len = usize::try_from(raw).map_err(|_| bad.clone())?;
        if len.saturating_mul(min_item.max(1)) > have {
            return Err(bad);
        }
        Ok(Some(len))
    }

    fn str_from(&mut self, field: &'static str, len: usize) -> Result<String, DecodeError> {
        let offset = self.pos;
        let s = self.take(field, len)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::InvalidUtf8 { field, offset }),
        }
    }

    /// A nullable string (compact or `i16`-prefixed).
    pub fn read_nullable_string(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<Option<String>, DecodeError> {
        let offset = self.pos;
        match self.read_length(field, compact, true, 1)? {
            None => Ok(None),
            Some(len) if len > MAX_STRING_LEN => Err(DecodeError::InvalidLength {
                field,
                offset,
                len: len as i64,
                have: self.remaining(),
            }),
            Some(len) => self.str_from(field, len).map(Some),
        }
    }

    /// A non-nullable string; null is an error.
    pub fn read_string(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<String, DecodeError> {
        let offset = self.pos;
        self.read_nullable_string(field, compact)?
            .ok_or(DecodeError::UnexpectedNull { field, offset })
    }

    /// A nullable byte array (compact or `i32`-prefixed), as a zero-copy slice.
    pub fn read_nullable_bytes(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.read_length(field, compact, false, 1)? {
            None => Ok(None),
            Some(len) => self.read_slice(field, len).map(Some),
        }
    }

    /// A non-nullable byte array; null is an error.
    pub fn read_bytes(&mut self, field: &'static str, compact: bool) -> Result<Bytes, DecodeError> {
        let offset = self.pos;
        self.read_nullable_bytes(field, compact)?
            .ok_or(DecodeError::UnexpectedNull { field, offset })
    }

    /// An array count (nullable), bounded by the remaining bytes with `min_item` bytes per
    /// element.
    pub fn read_array_len(
        &mut self,
        field: &'static str,
        compact: bool,
        min_item: usize,
    ) -> Result<Option<usize>, DecodeError> {
        self.read_length(field, compact, false, min_item)
    }

    /// Upper bound on elements reserved up front for one array: the rest grows as elements
    /// are actually decoded, so memory follows the bytes consumed, not the announced count.
    fn prealloc<T>(n: usize) -> usize {
        let per = std::mem::size_of::<T>().max(1);
        n.min((64 * 1024 / per).max(1))
    }

    /// A nullable array whose elements need at least `min_item` bytes each.
    pub fn read_nullable_array<T>(
        &mut self,
        field: &'static str,
        compact: bool,
        min_item: usize,
        mut elem: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let Some(n) = self.read_array_len(field, compact, min_item)? else {
            return Ok(None);
        };
        let mut v = Vec::with_capacity(Self::prealloc::<T>(n));
        for _ in 0..n {
            v.push(elem(self)?);
        }
        Ok(Some(v))
    }

    /// A non-nullable array; null is an error.
    pub fn read_array<T>(
        &mut self,
        field: &'static str,
        compact: bool,
        min_item: usize,
        elem: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let offset = self.pos;
        self.read_nullable_array(field, compact, min_item, elem)?
            .ok_or(DecodeError::UnexpectedNull { field, offset })
    }

    /// A nullable struct: an `i8` marker (negative = null) followed by the struct.
    pub fn read_nullable_struct<T>(
        &mut self,
        field: &'static str,
        decode: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.read_i8(field)? < 0 {
            return Ok(None);
        }
        decode(self).map(Some)
    }

    /// Skips a whole tagged-field section (used where the version defines no tagged fields).
    pub fn skip_tagged_fields(&mut self, field: &'static str) -> Result<(), DecodeError> {
        let n = self.read_unsigned_varint(field)?;
        for _ in 0..n {
            let (_, size) = self.read_tag_header(field)?;
            self.skip(field, size)?;
        }
        Ok(())
    }

    /// Enters a nested struct; fails past [`MAX_DEPTH`]. Pair with [`Reader::leave`].
    pub fn enter(&mut self, field: &'static str) -> Result<(), DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep {
                field,
                offset: self.pos,
                max: MAX_DEPTH,
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves a nested struct entered with [`Reader::enter`].
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Reads the header of one tagged field: `(tag, size)`, with `size` checked against the
    /// remaining bytes.
    pub fn read_tag_header(&mut self, field: &'static str) -> Result<(u32, usize), DecodeError> {
        let tag = self.read_unsigned_varint(field)?;
        let offset = self.pos;
        let size = self.read_unsigned_varint(field)? as usize;
        if size > self.remaining() {
            return Err(DecodeError::InvalidLength {
                field,
                offset,
                len: size as i64,
                have: self.remaining(),
            });
        }
        Ok((tag, size))
    }

    /// Splits off a reader over the next `size` bytes (a tagged field's value) and advances
    /// past them. The sub-reader shares the buffer and the depth counter's current value.
    pub fn sub_reader(&mut self, field: &'static str, size: usize) -> Result<Reader, DecodeError> {
        if size > self.remaining() {
            return Err(self.eof(field, size));
        }
        let sub = Reader {
            buf: self.buf.clone(),
            pos: self.pos,
            end: self.pos + size,
            depth: self.depth,
        };
        self.pos += size;
        Ok(sub)
    }
}

/// A sink for encoded bytes. `Vec<u8>` copies everything; [`ChunkWriter`] keeps large
/// `bytes`/`records` values as separate reference-counted chunks for vectored writes.
pub trait Writer {
    /// Appends raw bytes.
    fn put_slice(&mut self, s: &[u8]);
    /// Appends a shared buffer; implementations may keep a reference instead of copying.
    fn put_bytes(&mut self, b: &Bytes) {
        self.put_slice(b);
    }
    /// Bytes written so far.
    fn written(&self) -> usize;
}

impl Writer for Vec<u8> {
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
    fn written(&self) -> usize {
        self.len()
    }
}

/// A [`Writer`] that collects the encoding as a list of chunks: small values are copied into
/// a scratch buffer, `bytes`/`records` values of at least [`ChunkWriter::SHARE_MIN`] bytes
/// are kept as references to their original buffer. The chunks can be sent with one
/// vectored write, so record bytes go from the log to the socket without a copy.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    chunks: Vec<Bytes>,
    scratch: Vec<u8>,
    written: usize,
}

impl ChunkWriter {
    /// Values this size or larger are shared rather than copied.
    pub const SHARE_MIN: usize = 4096;

    pub fn new() -> ChunkWriter {
        ChunkWriter::default()
    }

    /// Finishes the encoding and returns its chunks in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.flush();
        self.chunks
    }

    fn flush(&mut self) {
        if !self.scratch.is_empty() {
            let s = std::mem::take(&mut self.scratch);
            self.chunks.push(Bytes::from(s));
        }
    }
}

impl Writer for ChunkWriter {
    fn put_slice(&mut self, s: &[u8]) {
        self.scratch.extend_from_slice(s);
        self.written += s.len();
    }
    fn put_bytes(&mut self, b: &Bytes) {
        if b.len() < Self::SHARE_MIN {
            self.put_slice(b);
            return;
        }
        self.flush();
        self.chunks.push(b.clone());
        self.written += b.len();
    }
    fn written(&self) -> usize {
        self.written
    }
}

/// Encoding helpers shared by the generated code.
pub mod put {
    use super::{EncodeError, Uuid, Writer};
    use bytes::Bytes;

    pub fn bool<W: Writer + ?Sized>(w: &mut W, v: bool) {
        w.put_slice(&[u8::from(v)]);
    }
    pub fn i8<W: Writer + ?Sized>(w: &mut W, v: i8) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn i16<W: Writer + ?Sized>(w: &mut W, v: i16) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn u16<W: Writer + ?Sized>(w: &mut W, v: u16) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn i32<W: Writer + ?Sized>(w: &mut W, v: i32) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn u32<W: Writer + ?Sized>(w: &mut W, v: u32) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn i64<W: Writer + ?Sized>(w: &mut W, v: i64) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn f64<W: Writer + ?Sized>(w: &mut W, v: f64) {
        w.put_slice(&v.to_be_bytes());
    }
    pub fn uuid<W: Writer + ?Sized>(w: &mut W, v: &Uuid) {
        w.put_slice(&v.0);
    }

    /// An unsigned LEB128 varint.
    pub fn unsigned_varint<W: Writer + ?Sized>(w: &mut W, mut v: u32) {
        let mut buf = [0u8; 5];
        let mut n = 0;
        while v >= 0x80 {
            buf[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        buf[n] = v as u8;
        w.put_slice(&buf[..=n]);
    }

    /// An unsigned LEB128 varlong.
    pub fn unsigned_varlong<W: Writer + ?Sized>(w: &mut W, mut v: u64) {
        let mut buf = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 {
            buf[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        buf[n] = v as u8;
        w.put_slice(&buf[..=n]);
    }

    /// A zig-zag signed varint.
    pub fn varint<W: Writer + ?Sized>(w: &mut W, v: i32) {
        unsigned_varint(w, ((v << 1) ^ (v >> 31)) as u32);
    }

    /// A zig-zag signed varlong.
    pub fn varlong<W: Writer + ?Sized>(w: &mut W, v: i64) {
        unsigned_varlong(w, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// A length prefix: compact (`len + 1`, 0 = null) or classic (`i16`/`i32`, -1 = null).
    pub fn length<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        len: Option<usize>,
        compact: bool,
        short: bool,
    ) -> Result<(), EncodeError> {
        let too_long = |len| EncodeError::TooLong { field, len };
        match (len, compact) {
            (None, true) => unsigned_varint(w, 0),
            (None, false) if short => i16(w, -1),
            (None, false) => i32(w, -1),
            (Some(n), true) => {
                let v = u32::try_from(n)
                    .ok()
                    .and_then(|v| v.checked_add(1))
                    .filter(|v| *v <= i32::MAX as u32)
                    .ok_or(too_long(n))?;
                unsigned_varint(w, v);
            }
            (Some(n), false) if short => i16(
                w,
                ::core::primitive::i16::try_from(n).map_err(|_| too_long(n))?,
            ),
            (Some(n), false) => i32(
                w,
                ::core::primitive::i32::try_from(n).map_err(|_| too_long(n))?,
            ),
        }
        Ok(())
    }

    pub fn string<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        v: &str,
        compact: bool,
    ) -> Result<(), EncodeError> {
        if v.len() > super::MAX_STRING_LEN {
            return Err(EncodeError::TooLong {
                field,
                len: v.len(),
            });
        }
        length(w, field, Some(v.len()), compact, true)?;
        w.put_slice(v.as_bytes());
        Ok(())
    }

    pub fn nullable_string<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        v: Option<&str>,
        compact: bool,
    ) -> Result<(), EncodeError> {
        match v {
            Some(s) => string(w, field, s, compact),
            None => length(w, field, None, compact, true),
        }
    }

    pub fn bytes<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        v: &Bytes,
        compact: bool,
    ) -> Result<(), EncodeError> {
        length(w, field, Some(v.len()), compact, false)?;
        w.put_bytes(v);
        Ok(())
    }

    pub fn nullable_bytes<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        v: Option<&Bytes>,
        compact: bool,
    ) -> Result<(), EncodeError> {
        match v {
            Some(b) => bytes(w, field, b, compact),
            None => length(w, field, None, compact, false),
        }
    }

    /// An array: length prefix, then each element.
    pub fn array<W: Writer + ?Sized, T>(
        w: &mut W,
        field: &'static str,
        v: &[T],
        compact: bool,
        mut elem: impl FnMut(&mut W, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        length(w, field, Some(v.len()), compact, false)?;
        for e in v {
            elem(w, e)?;
        }
        Ok(())
    }

    /// A nullable array.
    pub fn nullable_array<W: Writer + ?Sized, T>(
        w: &mut W,
        field: &'static str,
        v: Option<&[T]>,
        compact: bool,
        elem: impl FnMut(&mut W, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        match v {
            Some(v) => array(w, field, v, compact, elem),
            None => length(w, field, None, compact, false),
        }
    }

    /// One tagged field: tag, size, then the value encoded in `body`.
    pub fn tagged_field<W: Writer + ?Sized>(
        w: &mut W,
        field: &'static str,
        tag: u32,
        body: &[u8],
    ) -> Result<(), EncodeError> {
        unsigned_varint(w, tag);
        let size = u32::try_from(body.len()).map_err(|_| EncodeError::TooLong {
            field,
            len: body.len(),
        })?;
        unsigned_varint(w, size);
        w.put_slice(body);
        Ok(())
    }
}

/// A small deterministic pseudo-random source (xorshift64*) for generated `sample`
/// functions: tests, fuzz targets and benchmarks build varied messages from a seed.
#[derive(Debug, Clone)]
pub struct Sampler {
    state: u64,
}

impl Sampler {
    pub fn new(seed: u64) -> Sampler {
        Sampler {
            state: seed ^ 0x9e37_79b9_7f4a_7c15 | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
    pub fn i16(&mut self) -> i16 {
        self.next_u64() as i16
    }
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
    pub fn i32(&mut self) -> i32 {
        self.next_u64() as i32
    }
    pub fn i64(&mut self) -> i64 {
        self.next_u64() as i64
    }
    /// A finite float (NaN would not compare equal after a round trip).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() % 1_000_000) as f64 / 8.0
    }
    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next_u64(), self.next_u64())
    }
    /// A short ASCII string, sometimes empty.
    pub fn string(&mut self) -> String {
        let n = self.below(9);
        (0..n)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
    /// A short byte string, sometimes empty.
    pub fn bytes(&mut self) -> Bytes {
        let n = self.below(17);
        Bytes::from((0..n).map(|_| self.next_u64() as u8).collect::<Vec<u8>>())
    }
    /// Zero to three elements.
    pub fn vec<T>(&mut self, mut f: impl FnMut(&mut Sampler) -> T) -> Vec<T> {
        let n = self.below(4);
        (0..n).map(|_| f(self)).collect()
    }
    /// `None` one time in four.
    pub fn option<T>(&mut self, f: impl FnOnce(&mut Sampler) -> T) -> Option<T> {
        if self.below(4) == 0 {
            None
        } else {
            Some(f(self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_varints_round_trip_at_the_boundaries() {
        for v in [
            0u32,
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 28,
            u32::MAX,
        ] {
            let mut b = Vec::new();
            put::unsigned_varint(&mut b, v);
            assert!(b.len() <= 5);
            let mut r = Reader::new(Bytes::from(b));
            assert_eq!(r.read_unsigned_varint("t").unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
        for v in [0u64, 1, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put::unsigned_varlong(&mut b, v);
            assert!(b.len() <= 10);
            assert_eq!(
                Reader::new(Bytes::from(b))
                    .read_unsigned_varlong("t")
                    .unwrap(),
                v
            );
        }
    }

    #[test]
    fn zigzag_varints_round_trip() {
        for v in [0i32, -1, 1, -64, 63, i32::MIN, i32::MAX] {
            let mut b = Vec::new();
            put::varint(&mut b, v);
            assert_eq!(Reader::new(Bytes::from(b)).read_varint("t").unwrap(), v);
        }
        for v in [0i64, -1, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put::varlong(&mut b, v);
            assert_eq!(Reader::new(Bytes::from(b)).read_varlong("t").unwrap(), v);
        }
    }

    #[test]
    fn varint_longer_than_ten_bytes_is_rejected() {
        let mut r = Reader::new(Bytes::from(vec![0xff; 11]));
        assert!(matches!(
            r.read_unsigned_varlong("t"),
            Err(DecodeError::VarintTooLong { max: 10, .. })
        ));
    }

    #[test]
    fn array_count_is_bounded_by_remaining_bytes_times_element_size() {
        // 3 elements of at least 4 bytes need 12 bytes; 11 are left.
        let mut b = vec![0, 0, 0, 3];
        b.extend_from_slice(&[0; 11]);
        let mut r = Reader::new(Bytes::from(b));
        let e = r
            .read_array("t", false, 4, |r| r.read_i32("t"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::InvalidLength {
                    len: 3,
                    have: 11,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let mut r = Reader::new(Bytes::new());
        for _ in 0..MAX_DEPTH {
            r.enter("t").unwrap();
        }
        assert!(matches!(r.enter("t"), Err(DecodeError::TooDeep { .. })));
        r.leave();
        r.enter("t").unwrap();
    }

    #[test]
    fn overlong_strings_are_rejected_both_ways() {
        let s = "x".repeat(MAX_STRING_LEN + 1);
        assert!(put::string(&mut Vec::new(), "t", &s, true).is_err());
        let mut b = Vec::new();
        put::unsigned_varint(&mut b, (s.len() + 1) as u32);
        b.extend_from_slice(s.as_bytes());
        let mut r = Reader::new(Bytes::from(b));
        assert!(matches!(
            r.read_string("t", true),
            Err(DecodeError::InvalidLength { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0, 2, 0xc3, 0x28]));
        assert!(matches!(
            r.read_string("t", false),
            Err(DecodeError::InvalidUtf8 { offset: 2, .. })
        ));
    }

    #[test]
    fn chunk_writer_shares_large_values_and_copies_small_ones() {
        let big = Bytes::from(vec![1u8; ChunkWriter::SHARE_MIN]);
        let small = Bytes::from_static(b"abc");
        let mut w = ChunkWriter::new();
        put::i32(&mut w, 7);
        put::bytes(&mut w, "t", &small, false).unwrap();
        put::bytes(&mut w, "t", &big, false).unwrap();
        put::i16(&mut w, 1);
        assert_eq!(w.written(), 4 + 4 + 3 + 4 + big.len() + 2);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "large value copied");
        let flat: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut v = Vec::new();
        put::i32(&mut v, 7);
        put::bytes(&mut v, "t", &small, false).unwrap();
        put::bytes(&mut v, "t", &big, false).unwrap();
        put::i16(&mut v, 1);
        assert_eq!(flat, v);
    }

    #[test]
    fn uuid_displays_like_java() {
        // Kafka's Uuid.toString() of Uuid(0, 1) and of the all-ones id.
        assert_eq!(
            Uuid::from_u64_pair(0, 1).to_string(),
            "AAAAAAAAAAAAAAAAAAAAAQ"
        );
        assert_eq!(
            Uuid::from_u64_pair(u64::MAX, u64::MAX).to_string(),
            "_____________________w"
        );
        assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        let u = Uuid::from_u64_pair(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(u.to_string().parse::<Uuid>(), Ok(u));
        assert!("short".parse::<Uuid>().is_err());
        assert!("AAAAAAAAAAAAAAAAAAAAAB".parse::<Uuid>().is_err());
    }
}
