//! Record-batch compression: the payload codecs of RecordBatch v2 (attribute bits 0-2), byte
//! for byte as Kafka's clients and brokers write and read them. Pure functions, no I/O.
//!
//! | id | codec  | on the wire                                                                 |
//! |----|--------|-----------------------------------------------------------------------------|
//! | 0  | none   | the records as they are                                                     |
//! | 1  | gzip   | one or more gzip members (RFC 1952), read as Java's `GZIPInputStream` does   |
//! | 2  | snappy | xerial framing (see below) as written by Kafka's Java client; raw snappy    |
//! |    |        | (as some librdkafka versions write it) is read too                          |
//! | 3  | lz4    | the LZ4 frame format with a correct header checksum (magic 2 batches), 64 KiB |
//! |    |        | independent blocks, no block or content checksum, as Kafka writes it        |
//! | 4  | zstd   | plain zstd frames                                                            |
//!
//! Xerial snappy framing (big-endian):
//!
//! ```text
//!  0  8 magic          82 53 4e 41 50 50 59 00  ("\x82SNAPPY\0")
//!  8  4 version        1
//! 12  4 compatible     1
//! 16  . blocks         { length: i32, raw snappy block of `length` bytes }*, each block holds at
//!                      most 32 KiB of input (the Java stream's default block size)
//! ```
//!
//! # Bounding
//! [`decompress`] takes the most bytes the output may hold; a payload that would decompress to
//! more is refused with [`CompressionError::TooLarge`] after at most `limit + 1` bytes were
//! produced: a decompression bomb costs at most `limit` bytes of memory, never more. Sizes
//! declared inside the payload (snappy block lengths, LZ4 block sizes) are checked before
//! anything is allocated for them, and the zstd window is capped (see [`ZSTD_WINDOW_LOG_MAX`]).
//!
//! ```
//! use kiln_kafka_codec::compression::{compress, decompress, Codec};
//! let records = b"some records".repeat(100);
//! let packed = compress(Codec::Zstd, &records, None).unwrap();
//! assert_eq!(decompress(Codec::Zstd, &packed, records.len()).unwrap(), records);
//! assert!(decompress(Codec::Zstd, &packed, 10).is_err());
//! ```

use std::io::{Read, Write};

use thiserror::Error;

/// A record-batch compression codec (the value of attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// All codecs, in id order.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec of a batch's attributes; `None` for the unassigned ids 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        Self::from_id((attributes & 0x7) as u8)
    }

    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The id stored in attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's name, as in `compression.type` (`uncompressed` for [`Codec::None`]).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Parses a codec name (`none` and `uncompressed` both mean no compression).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" | "uncompressed" => Some(Self::None),
            "gzip" => Some(Self::Gzip),
            "snappy" => Some(Self::Snappy),
            "lz4" => Some(Self::Lz4),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The level Kafka uses when none is configured (`compression.<codec>.level` defaults).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Self::Gzip => Some(GZIP_LEVEL_DEFAULT),
            Self::Lz4 => Some(LZ4_LEVEL_DEFAULT),
            Self::Zstd => Some(ZSTD_LEVEL_DEFAULT),
            Self::None | Self::Snappy => None,
        }
    }

    /// Kafka's accepted level range for the codec, if it has levels.
    pub fn level_range(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Self::Gzip => Some(1..=9),
            Self::Lz4 => Some(1..=17),
            Self::Zstd => Some(-131_072..=22),
            Self::None | Self::Snappy => None,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Kafka's `compression.gzip.level` default (Deflater's default, 6).
pub const GZIP_LEVEL_DEFAULT: i32 = 6;
/// Kafka's `compression.lz4.level` default.
pub const LZ4_LEVEL_DEFAULT: i32 = 9;
/// Kafka's `compression.zstd.level` default.
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;
/// Largest zstd window accepted when decompressing (2^27 = 128 MiB, zstd's own default limit);
/// smaller limits shrink it further, see [`decompress`].
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Smallest zstd window cap: streaming compressors at high levels declare windows up to 8 MiB
/// even for small payloads, so a cap below this would refuse valid batches.
const ZSTD_WINDOW_LOG_MIN_CAP: u32 = 23;

/// The xerial snappy stream header.
pub const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\0";
const XERIAL_HEADER_LEN: usize = 16;
/// Input bytes per xerial block (Java `SnappyOutputStream`'s default).
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

/// Why a payload could not be compressed or decompressed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompressionError {
    #[error("{codec} payload decompresses to more than {limit} bytes")]
    TooLarge { codec: Codec, limit: usize },
    #[error("corrupt {codec} payload: {reason}")]
    Corrupt { codec: Codec, reason: String },
    #[error("{codec} compression failed: {reason}")]
    Compress { codec: Codec, reason: String },
    #[error("invalid {codec} compression level {level}")]
    BadLevel { codec: Codec, level: i32 },
}

fn corrupt(codec: Codec, reason: impl ToString) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: reason.to_string(),
    }
}

fn compress_failed(codec: Codec, reason: impl ToString) -> CompressionError {
    CompressionError::Compress {
        codec,
        reason: reason.to_string(),
    }
}

/// Compresses a record-batch payload (the bytes after the 61-byte batch header).
///
/// `level` is Kafka's `compression.<codec>.level` (`None`: Kafka's default). Snappy has no
/// levels; LZ4 is written with the fast compressor whatever the level (the frame is the same
/// format, any LZ4 reader accepts it).
pub fn compress(
    codec: Codec,
    input: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CompressionError> {
    if let (Some(level), Some(range)) = (level, codec.level_range())
        && !range.contains(&level)
    {
        return Err(CompressionError::BadLevel { codec, level });
    }
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => {
            let level = level.unwrap_or(GZIP_LEVEL_DEFAULT).clamp(1, 9) as u32;
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2 + 64),
                flate2::Compression::new(level),
            );
            enc.write_all(input)
                .map_err(|e| compress_failed(codec, e))?;
            enc.finish().map_err(|e| compress_failed(codec, e))
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(
                XERIAL_HEADER_LEN + snap::raw::max_compress_len(input.len()) + input.len() / 64,
            );
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            let mut block = Vec::new();
            for chunk in input.chunks(XERIAL_BLOCK_LEN) {
                block.resize(snap::raw::max_compress_len(chunk.len()), 0);
                let n = enc
                    .compress(chunk, &mut block)
                    .map_err(|e| compress_failed(codec, e))?;
                let len =
                    i32::try_from(n).map_err(|_| compress_failed(codec, "block too large"))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(block.get(..n).unwrap_or(&[]));
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(input.len() / 2 + 64),
            );
            enc.write_all(input)
                .map_err(|e| compress_failed(codec, e))?;
            enc.finish().map_err(|e| compress_failed(codec, e))
        }
        Codec::Zstd => zstd::bulk::compress(input, level.unwrap_or(ZSTD_LEVEL_DEFAULT))
            .map_err(|e| compress_failed(codec, e)),
    }
}

/// Decompresses a record-batch payload into at most `limit` bytes.
///
/// A payload whose output would exceed `limit` is [`CompressionError::TooLarge`]; bytes that
/// are not a valid stream of the codec (including trailing garbage and truncation) are
/// [`CompressionError::Corrupt`].
pub fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(CompressionError::TooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        Codec::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), limit),
        Codec::Snappy => {
            if input.len() >= XERIAL_HEADER_LEN && input.starts_with(&XERIAL_MAGIC) {
                decompress_xerial(input, limit)
            } else {
                let mut out = Vec::new();
                snappy_block(input, limit, &mut out)?;
                Ok(out)
            }
        }
        Codec::Lz4 => {
            lz4_check_end_mark(input)?;
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), limit)
        }
        Codec::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, e))?;
            dec.window_log_max(zstd_window_log_max(limit))
                .map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, dec, limit)
        }
    }
}

/// The zstd window cap for an output limit: no larger than the output can be, but never below
/// what ordinary streaming compressors declare.
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.max(1).saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_WINDOW_LOG_MIN_CAP, ZSTD_WINDOW_LOG_MAX)
}

/// A frame cut short at a block boundary would otherwise read as complete: Kafka's reader
/// needs the end mark (a zero block size), so it is required here too.
fn lz4_check_end_mark(input: &[u8]) -> Result<(), CompressionError> {
    const CONTENT_CHECKSUM_FLAG: u8 = 0x04;
    let checksum_len = match input.get(4) {
        Some(flg) if flg & CONTENT_CHECKSUM_FLAG != 0 => 4,
        Some(_) => 0,
        None => return Err(corrupt(Codec::Lz4, "truncated frame header")),
    };
    let end = input.len().saturating_sub(checksum_len);
    match input.get(end.saturating_sub(4)..end) {
        Some([0, 0, 0, 0]) if end >= 11 => Ok(()),
        _ => Err(corrupt(Codec::Lz4, "frame has no end mark")),
    }
}

/// Reads a decoder to its end, refusing more than `limit` bytes of output.
fn read_bounded(
    codec: Codec,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Decompresses one raw snappy block, appending to `out`, which may hold at most `limit` bytes.
fn snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let codec = Codec::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, e))?;
    let start = out.len();
    if len > limit.saturating_sub(start) {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    out.resize(start + len, 0);
    let dst = out.get_mut(start..).unwrap_or(&mut []);
    let n = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(|e| corrupt(codec, e))?;
    out.truncate(start + n);
    Ok(())
}

fn decompress_xerial(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Codec::Snappy;
    let mut rest = input.get(XERIAL_HEADER_LEN..).unwrap_or(&[]);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt(codec, "truncated xerial block length"));
        };
        let len = i32::from_be_bytes(*len);
        let len = usize::try_from(len)
            .map_err(|_| corrupt(codec, format!("negative xerial block length {len}")))?;
        let Some(block) = tail.get(..len) else {
            return Err(corrupt(
                codec,
                format!("xerial block of {len} bytes, {} present", tail.len()),
            ));
        };
        snappy_block(block, limit, &mut out)?;
        rest = tail.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    const VECTOR_PAYLOAD: &str = "kiln compression vector ";

    /// Payloads compressed by Python Kafka clients' codecs (kafka-python 3.0 `kafka.codec` over
    /// python-snappy, lz4 and zstandard, the libraries those clients use).
    const VECTORS: &[(Codec, &str)] = &[
        (
            Codec::Gzip,
            "1f8b08009b140a6b02ffcbceccc95348cecf2d284a2d2ececccf53284b4d2ec92f52c8a69238001336b54360000000",
        ),
        (
            Codec::Snappy,
            "82534e415050590000000001000000010000001f605c6b696c6e20636f6d7072657373696f6e20766563746f7220fe18001118",
        ),
        (
            Codec::Snappy,
            "605c6b696c6e20636f6d7072657373696f6e20766563746f7220fe18001118",
        ),
        (
            Codec::Lz4,
            "04224d1868406000000000000000e723000000ff096b696c6e20636f6d7072657373696f6e20766563746f72201800305063746f722000000000",
        ),
        (
            Codec::Zstd,
            "28b52ffd2060fd0000c06b696c6e20636f6d7072657373696f6e20766563746f72200100d4a2730c",
        ),
    ];

    #[test]
    fn decodes_payloads_written_by_real_clients() {
        let want = VECTOR_PAYLOAD.repeat(4).into_bytes();
        for (codec, hex) in VECTORS {
            let got = decompress(*codec, &unhex(hex), 1 << 20).expect("decodes");
            assert_eq!(got, want, "{codec}");
            assert!(matches!(
                decompress(*codec, &unhex(hex), want.len() - 1),
                Err(CompressionError::TooLarge { .. })
            ));
        }
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 7;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_every_codec_and_size() {
        for codec in Codec::ALL {
            for len in [0, 1, 100, XERIAL_BLOCK_LEN, XERIAL_BLOCK_LEN + 1, 300_000] {
                let input = sample(len);
                let packed = compress(codec, &input, None).expect("compress");
                let back = decompress(codec, &packed, len).expect("decompress");
                assert_eq!(back, input, "{codec} {len}");
            }
        }
    }

    #[test]
    fn writes_the_framing_kafka_expects() {
        let input = sample(100_000);
        let snappy = compress(Codec::Snappy, &input, None).expect("snappy");
        assert_eq!(&snappy[..8], b"\x82SNAPPY\0");
        assert_eq!(&snappy[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let lz4 = compress(Codec::Lz4, &input, None).expect("lz4");
        assert_eq!(&lz4[..4], &[0x04, 0x22, 0x4d, 0x18]);
        // FLG: version 01, independent blocks, no checksums, no content size; BD: 64 KiB.
        assert_eq!(lz4[4], 0x60);
        assert_eq!(lz4[5], 0x40);
        // Header checksum: second byte of xxh32 over FLG and BD (not over the magic, as the
        // pre-0.10 Kafka clients wrongly did).
        assert_eq!(lz4[6], 0x82);
        let gzip = compress(Codec::Gzip, &input, None).expect("gzip");
        assert_eq!(&gzip[..3], &[0x1f, 0x8b, 0x08]);
        let zstd = compress(Codec::Zstd, &input, None).expect("zstd");
        assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn decompression_bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        for codec in Codec::ALL {
            let packed = compress(codec, &zeros, None).expect("compress");
            assert!(
                matches!(
                    decompress(codec, &packed, 1 << 20),
                    Err(CompressionError::TooLarge { limit, .. }) if limit == 1 << 20
                ),
                "{codec}"
            );
        }
        // A raw snappy block that claims 2^32-1 output bytes is refused before allocating.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Codec::Snappy, &claim, 1 << 20),
            Err(CompressionError::TooLarge { .. } | CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let good: Vec<(Codec, Vec<u8>)> = Codec::ALL
            .iter()
            .filter(|c| **c != Codec::None)
            .map(|c| (*c, compress(*c, &sample(5000), None).expect("compress")))
            .collect();
        for (codec, packed) in &good {
            // Truncations.
            for cut in [1, 5, 17, packed.len() / 2, packed.len() - 1] {
                let r = decompress(*codec, &packed[..cut], 1 << 20);
                assert!(r.is_err(), "{codec} truncated at {cut} decoded");
            }
            // Bit flips anywhere must not panic (an error or, rarely, other bytes).
            for i in 0..packed.len() {
                let mut bad = packed.clone();
                bad[i] ^= 0x5a;
                let _ = decompress(*codec, &bad, 1 << 20);
            }
            assert!(decompress(*codec, b"not compressed at all", 1 << 20).is_err());
        }
        // Xerial framing with a negative or oversized block length.
        let mut xerial = unhex("82534e41505059000000000100000001");
        xerial.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(decompress(Codec::Snappy, &xerial, 1 << 20).is_err());
        let mut xerial = unhex("82534e41505059000000000100000001");
        xerial.extend_from_slice(&1000i32.to_be_bytes());
        xerial.extend_from_slice(b"short");
        assert!(decompress(Codec::Snappy, &xerial, 1 << 20).is_err());
        // An LZ4 frame whose header checksum is wrong is refused (Kafka checks it for magic 2).
        let mut lz4 = unhex(VECTORS[3].1);
        lz4[6] ^= 1;
        assert!(decompress(Codec::Lz4, &lz4, 1 << 20).is_err());
    }

    #[test]
    fn levels_are_checked_and_used() {
        let input = sample(50_000);
        for (codec, level) in [
            (Codec::Gzip, 1),
            (Codec::Gzip, 9),
            (Codec::Zstd, -5),
            (Codec::Zstd, 19),
        ] {
            let packed = compress(codec, &input, Some(level)).expect("level");
            assert_eq!(
                decompress(codec, &packed, input.len()).expect("back"),
                input
            );
        }
        assert!(matches!(
            compress(Codec::Gzip, &input, Some(10)),
            Err(CompressionError::BadLevel { .. })
        ));
        assert!(matches!(
            compress(Codec::Zstd, &input, Some(23)),
            Err(CompressionError::BadLevel { .. })
        ));
    }

    #[test]
    fn names_and_ids() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_id(c.id()), Some(c));
            assert_eq!(Codec::from_name(c.name()), Some(c));
            assert_eq!(Codec::from_attributes(i16::from(c.id()) | 0x18), Some(c));
        }
        assert_eq!(Codec::from_id(5), None);
        assert_eq!(Codec::from_name("none"), Some(Codec::None));
        assert_eq!(Codec::from_name("producer"), None);
    }
}
