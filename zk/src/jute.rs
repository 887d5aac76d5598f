//! Jute binary encoding: the wire format of every ZooKeeper record.
//!
//! Big-endian `int` (4 bytes), `long` (8), `boolean` (1); `ustring` and `buffer` are an `int` length
//! followed by that many bytes, `-1` meaning null; `vector` is an `int` count followed by the
//! elements, `-1` meaning null. Records are their fields in declaration order, without tags.
//!
//! Decoding is bounded: every length and count read from the input is checked against the bytes
//! actually remaining and against `length_max` (the server's `jute.maxbuffer`) *before* anything is
//! allocated, so a hostile four-byte prefix cannot make the process allocate gigabytes.
//! This module does no I/O.

use thiserror::Error;

/// Why a jute decode failed; `offset` is the byte position in the input where the bad field starts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unexpected end of input at offset {offset}: need {need} bytes, have {have}")]
    UnexpectedEof {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("negative length {len} at offset {offset}")]
    NegativeLength { offset: usize, len: i32 },
    #[error("length {len} at offset {offset} exceeds the limit of {max} bytes (jute.maxbuffer)")]
    TooLong {
        offset: usize,
        len: usize,
        max: usize,
    },
    #[error("vector count {count} at offset {offset} cannot fit in the {have} remaining bytes")]
    CountTooLarge {
        offset: usize,
        count: usize,
        have: usize,
    },
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("invalid value {value} for {what} at offset {offset}")]
    InvalidValue {
        offset: usize,
        what: &'static str,
        value: i64,
    },
}

/// A cursor over one jute-encoded payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    length_max: usize,
}

impl<'a> Reader<'a> {
    /// `length_max` bounds every single buffer, string and vector (`jute.maxbuffer`).
    pub fn new(buf: &'a [u8], length_max: usize) -> Self {
        Self {
            buf,
            pos: 0,
            length_max,
        }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, need: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.remaining();
        if need > have {
            return Err(DecodeError::UnexpectedEof {
                offset: self.pos,
                need,
                have,
            });
        }
        let start = self.pos;
        self.pos += need;
        self.buf
            .get(start..start + need)
            .ok_or(DecodeError::UnexpectedEof {
                offset: start,
                need,
                have,
            })
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array::<4>()?))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array::<8>()?))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take_array::<1>()?[0] != 0)
    }

    /// Reads a length prefix; `None` for -1 (null). The length is checked against the remaining
    /// bytes and `length_max`.
    fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let offset = self.pos;
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len_usize =
            usize::try_from(len).map_err(|_| DecodeError::NegativeLength { offset, len })?;
        if len_usize > self.length_max {
            return Err(DecodeError::TooLong {
                offset,
                len: len_usize,
                max: self.length_max,
            });
        }
        let have = self.remaining();
        if len_usize > have {
            return Err(DecodeError::UnexpectedEof {
                offset: self.pos,
                need: len_usize,
                have,
            });
        }
        Ok(Some(len_usize))
    }

    /// A nullable `buffer`.
    pub fn read_buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => Ok(Some(self.take(len)?.to_vec())),
        }
    }

    /// A nullable `ustring`.
    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, DecodeError> {
        let offset = self.pos;
        match self.read_len()? {
            None => Ok(None),
            Some(len) => {
                let bytes = self.take(len)?;
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|_| DecodeError::InvalidUtf8 { offset })
            }
        }
    }

    /// A `ustring` where null reads as the empty string (which no path or scheme accepts).
    pub fn read_ustring(&mut self) -> Result<String, DecodeError> {
        Ok(self.read_ustring_opt()?.unwrap_or_default())
    }

    /// A vector count; `None` for null. Bounded so that `count * elem_size_min` fits in the
    /// remaining bytes.
    pub fn read_count(&mut self, elem_size_min: usize) -> Result<Option<usize>, DecodeError> {
        let offset = self.pos;
        let count = self.read_i32()?;
        if count == -1 {
            return Ok(None);
        }
        let count = usize::try_from(count)
            .map_err(|_| DecodeError::NegativeLength { offset, len: count })?;
        let have = self.remaining();
        if count.saturating_mul(elem_size_min.max(1)) > have {
            return Err(DecodeError::CountTooLarge {
                offset,
                count,
                have,
            });
        }
        Ok(Some(count))
    }

    /// A vector of elements read by `f`; null reads as empty.
    pub fn read_vec<T>(
        &mut self,
        elem_size_min: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.read_count(elem_size_min)?.unwrap_or(0);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(f(self)?);
        }
        Ok(out)
    }

    pub fn read_string_vec(&mut self) -> Result<Vec<String>, DecodeError> {
        self.read_vec(4, Self::read_ustring)
    }
}

/// Appends jute-encoded fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Starts a frame: reserves the 4-byte length prefix that [`Writer::finish_frame`] fills in.
    pub fn framed() -> Self {
        Self { buf: vec![0; 4] }
    }

    pub fn write_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    fn write_len(&mut self, len: usize) {
        // Lengths come from values that were bounded by jute.maxbuffer on the way in or are
        // server-made (paths, stats); saturate rather than wrap should one ever exceed i32.
        self.write_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }

    pub fn write_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.write_i32(-1),
            Some(b) => {
                self.write_len(b.len());
                self.buf.extend_from_slice(b);
            }
        }
    }

    pub fn write_ustring(&mut self, v: &str) {
        self.write_len(v.len());
        self.buf.extend_from_slice(v.as_bytes());
    }

    pub fn write_ustring_opt(&mut self, v: Option<&str>) {
        match v {
            None => self.write_i32(-1),
            Some(s) => self.write_ustring(s),
        }
    }

    pub fn write_count(&mut self, n: usize) {
        self.write_len(n);
    }

    pub fn write_string_vec<S: AsRef<str>>(&mut self, v: &[S]) {
        self.write_count(v.len());
        for s in v {
            self.write_ustring(s.as_ref());
        }
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fills in the length prefix reserved by [`Writer::framed`] and returns the frame.
    pub fn finish_frame(mut self) -> Vec<u8> {
        let body = self.buf.len().saturating_sub(4);
        let len = i32::try_from(body).unwrap_or(i32::MAX).to_be_bytes();
        if let Some(prefix) = self.buf.get_mut(0..4) {
            prefix.copy_from_slice(&len);
        }
        self.buf
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Appends to `buf`, keeping what it holds and reusing its allocation.
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// Starts a length-prefixed frame at the current end; returns its start for [`Writer::end_frame`].
    pub fn begin_frame(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        start
    }

    /// Fills in the length prefix of the frame begun at `start`.
    pub fn end_frame(&mut self, start: usize) {
        let body = self.buf.len().saturating_sub(start + 4);
        let len = i32::try_from(body).unwrap_or(i32::MAX).to_be_bytes();
        if let Some(prefix) = self.buf.get_mut(start..start + 4) {
            prefix.copy_from_slice(&len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_primitives_and_nulls() {
        let mut w = Writer::new();
        w.write_i32(-7);
        w.write_i64(1 << 40);
        w.write_bool(true);
        w.write_buffer(None);
        w.write_buffer(Some(b"abc"));
        w.write_ustring("/a/b");
        w.write_ustring_opt(None);
        w.write_string_vec(&["x", "yz"]);
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes, 1024);
        assert_eq!(r.read_i32().unwrap(), -7);
        assert_eq!(r.read_i64().unwrap(), 1 << 40);
        assert!(r.read_bool().unwrap());
        assert_eq!(r.read_buffer().unwrap(), None);
        assert_eq!(r.read_buffer().unwrap(), Some(b"abc".to_vec()));
        assert_eq!(r.read_ustring().unwrap(), "/a/b");
        assert_eq!(r.read_ustring_opt().unwrap(), None);
        assert_eq!(
            r.read_string_vec().unwrap(),
            vec!["x".to_string(), "yz".to_string()]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn huge_vector_count_is_refused_before_allocating() {
        let bytes = [0x7f, 0xff, 0xff, 0xff];
        let mut r = Reader::new(&bytes, 1 << 20);
        assert!(matches!(
            r.read_string_vec(),
            Err(DecodeError::CountTooLarge { offset: 0, .. })
        ));
    }

    #[test]
    fn buffer_longer_than_input_or_limit_is_refused() {
        let mut w = Writer::new();
        w.write_i32(100);
        w.write_raw(&[0; 10]);
        let bytes = w.into_inner();
        assert!(matches!(
            Reader::new(&bytes, 1000).read_buffer(),
            Err(DecodeError::UnexpectedEof {
                offset: 4,
                need: 100,
                have: 10
            })
        ));
        assert!(matches!(
            Reader::new(&bytes, 50).read_buffer(),
            Err(DecodeError::TooLong { .. })
        ));
        let neg = (-2i32).to_be_bytes();
        assert!(matches!(
            Reader::new(&neg, 50).read_buffer(),
            Err(DecodeError::NegativeLength { len: -2, .. })
        ));
    }

    #[test]
    fn frame_prefix_is_body_length() {
        let mut w = Writer::framed();
        w.write_i32(5);
        assert_eq!(w.finish_frame(), vec![0, 0, 0, 4, 0, 0, 0, 5]);
    }

    #[test]
    fn frames_append_to_an_existing_buffer() {
        let mut w = Writer::from_vec(vec![9]);
        let a = w.begin_frame();
        w.write_i32(5);
        w.end_frame(a);
        let b = w.begin_frame();
        w.end_frame(b);
        assert_eq!(w.into_inner(), vec![9, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 0]);
    }
}
