//! Records of the internal `__consumer_offsets` log.
//!
//! Keys and values use Apache Kafka's own schemas for `__consumer_offsets` (big-endian; a
//! `string` is an `i16` length then UTF-8 bytes, a nullable string has length -1 for null), so
//! Kafka's tools can read them. A record without a value is a tombstone.
//!
//! ```text
//! Offset commit key (key version 1)          Offset commit value (value version 3)
//! +---------+-------------+-------+------+   +---------+--------+--------------+----------+-----------+
//! | i16 = 1 | group:string| topic | i32  |   | i16 = 3 | offset | leader_epoch | metadata | commit_ts |
//! |         |             |:string| part |   |         |  i64   |     i32      | :string  |   i64 ms  |
//! +---------+-------------+-------+------+   +---------+--------+--------------+----------+-----------+
//!
//! Group metadata key (key version 2)         Group metadata value (value version 3)
//! +---------+--------------+                 +---------+---------------+------------+----------------+
//! | i16 = 2 | group:string |                 | i16 = 3 | protocol_type | generation | protocol       |
//! +---------+--------------+                 |         |    :string    |    i32     | :nullable str  |
//!                                            +---------+---------------+------------+----------------+
//!                                            | leader: nullable str | state_ts i64 | members: i32=0 |
//!                                            +----------------------+--------------+----------------+
//! ```
//!
//! Kiln writes group values without members: membership is not recovered after a restart
//! (members rejoin), but the generation and protocol type are, and Kafka's reader accepts an
//! empty member array.

use super::coordinator::CommittedOffset;

/// A decoded record of the offsets log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// A committed offset, or its tombstone.
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    /// A group's metadata, or its tombstone (the group was deleted or expired).
    Group {
        group_id: String,
        value: Option<GroupValue>,
    },
}

/// What is kept of a group across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
}

/// A record of the offsets log that Kiln cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("offsets log record truncated at byte {offset}: need {need} more, have {have}")]
    Truncated {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("offsets log record has key version {0}, expected 0, 1 or 2")]
    KeyVersion(i16),
    #[error("offsets log record has value version {version} for key version {key_version}")]
    ValueVersion { key_version: i16, version: i16 },
    #[error("offsets log record has a string that is not UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("offsets log record has a null where a value is required at byte {0}")]
    Null(usize),
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

impl LogRecord {
    /// The group the record belongs to.
    #[must_use]
    pub fn group_id(&self) -> &str {
        match self {
            Self::Offset { group_id, .. } | Self::Group { group_id, .. } => group_id,
        }
    }

    /// The record key.
    #[must_use]
    pub fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Offset {
                group_id,
                topic,
                partition,
                ..
            } => {
                out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
                put_str(&mut out, group_id);
                put_str(&mut out, topic);
                out.extend_from_slice(&partition.to_be_bytes());
            }
            Self::Group { group_id, .. } => {
                out.extend_from_slice(&GROUP_KEY_VERSION.to_be_bytes());
                put_str(&mut out, group_id);
            }
        }
        out
    }

    /// The record value; `None` for a tombstone.
    #[must_use]
    pub fn encode_value(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Offset { value: Some(v), .. } => {
                out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
                out.extend_from_slice(&v.offset.to_be_bytes());
                out.extend_from_slice(&v.leader_epoch.to_be_bytes());
                put_str(&mut out, &v.metadata);
                out.extend_from_slice(&v.commit_timestamp_ms.to_be_bytes());
            }
            Self::Group { value: Some(v), .. } => {
                out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
                put_str(&mut out, &v.protocol_type);
                out.extend_from_slice(&v.generation_id.to_be_bytes());
                put_nullable_str(&mut out, v.protocol_name.as_deref());
                put_nullable_str(&mut out, v.leader.as_deref());
                out.extend_from_slice(&v.state_timestamp_ms.to_be_bytes());
                out.extend_from_slice(&0_i32.to_be_bytes());
            }
            Self::Offset { value: None, .. } | Self::Group { value: None, .. } => return None,
        }
        Some(out)
    }

    /// Decodes a key and value written by [`Self::encode_key`] / [`Self::encode_value`]; also
    /// reads offset values of versions 0-3 and group values of versions 0-3 with their members
    /// ignored.
    ///
    /// # Errors
    /// [`RecordError`] when the bytes are not such a record.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, RecordError> {
        let mut k = Reader { buf: key, pos: 0 };
        let key_version = k.i16()?;
        match key_version {
            0 | 1 => {
                let group_id = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Self::Offset {
                    group_id,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group_id = k.string()?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Self::Group { group_id, value })
            }
            v => Err(RecordError::KeyVersion(v)),
        }
    }
}

fn decode_offset_value(buf: &[u8]) -> Result<CommittedOffset, RecordError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::ValueVersion {
            key_version: 1,
            version,
        });
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(buf: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::ValueVersion {
            key_version: 2,
            version,
        });
    }
    let protocol_type = r.string()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    Ok(GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Group ids, topics and metadata are bounded far below i16::MAX by the coordinator's limits.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(
        s.as_bytes()
            .get(..s.len().min(i16::MAX as usize))
            .unwrap_or_default(),
    );
}

fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&(-1_i16).to_be_bytes()),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        let have = self.buf.len().saturating_sub(self.pos);
        let out =
            self.buf
                .get(self.pos..self.pos.saturating_add(n))
                .ok_or(RecordError::Truncated {
                    offset: self.pos,
                    need: n,
                    have,
                })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0_u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let at = self.pos;
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(usize::try_from(len).unwrap_or(0))?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Utf8(at))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let at = self.pos;
        self.nullable_string()?.ok_or(RecordError::Null(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_record_round_trips_with_kafka_layout() {
        let rec = LogRecord::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 7,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: 3,
                metadata: "meta".into(),
                commit_timestamp_ms: 1000,
            }),
        };
        let key = rec.encode_key();
        assert_eq!(key, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        let value = rec.encode_value().expect("value");
        assert_eq!(&value[..2], &[0, 3]);
        assert_eq!(&value[2..10], &42_i64.to_be_bytes());
        assert_eq!(LogRecord::decode(&key, Some(&value)), Ok(rec));
    }

    #[test]
    fn tombstones_and_group_records_round_trip() {
        let tomb = LogRecord::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        };
        assert_eq!(tomb.encode_value(), None);
        assert_eq!(LogRecord::decode(&tomb.encode_key(), None), Ok(tomb));
        let group = LogRecord::Group {
            group_id: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation_id: 5,
                protocol_name: Some("range".into()),
                leader: None,
                state_timestamp_ms: 9,
            }),
        };
        let v = group.encode_value().expect("value");
        assert_eq!(LogRecord::decode(&group.encode_key(), Some(&v)), Ok(group));
    }

    #[test]
    fn truncated_and_unknown_records_are_refused() {
        assert!(matches!(
            LogRecord::decode(&[0, 1, 0, 5, b'g'], None),
            Err(RecordError::Truncated { .. })
        ));
        assert_eq!(
            LogRecord::decode(&[0, 9], None),
            Err(RecordError::KeyVersion(9))
        );
        let key = LogRecord::Group {
            group_id: "g".into(),
            value: None,
        }
        .encode_key();
        assert_eq!(
            LogRecord::decode(&key, Some(&[0, 7])),
            Err(RecordError::ValueVersion {
                key_version: 2,
                version: 7
            })
        );
    }
}
