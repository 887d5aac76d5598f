//! ZooKeeper's quorum wire formats: the election port (connection header, framing, notifications)
//! and the quorum port (`QuorumPacket` records and the small payloads they carry), plus the quorum
//! config string both ports exchange.
//!
//! Everything here is pure: encoders return bytes, decoders take a byte buffer. The incremental
//! decoders (`decode_hello`, `decode_frame`, `QuorumPacket::decode`) return `Ok(None)` when the
//! buffer holds only a prefix of the record, so a connection can call them after every read; any
//! other malformation is an error and the connection must be closed. Every length read from the
//! wire is checked against a bound before anything is allocated.
//!
//! Election port (`QuorumCnxManager`), all big-endian:
//! ```text
//! hello    = protocolVersion:i64 (-65536 = V1, -65535 = V2) sid:i64 addrLen:i32 addr:utf8[addrLen]
//!          | sid:i64                                 (a non-negative first long: servers before 3.5)
//! frame    = length:i32 (1 ..= 512 KiB) payload
//! payload  = state:i32 leader:i64 zxid:i64 electionEpoch:i64            (28 bytes, legacy)
//!            [peerEpoch:i64]                                            (40 bytes, legacy)
//!            [version:i32 [configLength:i32 config:utf8]]               (version 2: with config)
//! ```
//! Quorum port (`QuorumPacket`, jute, records back to back with no outer length):
//! ```text
//! packet   = type:i32 zxid:i64 data:buffer(-1 = null) authinfo:vector<Id>(-1 = null)
//! Id       = scheme:ustring id:ustring
//! ```

use thiserror::Error;

use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::Id;

/// Why a quorum wire record could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("election header: unknown protocol version {version}")]
    UnknownProtocolVersion { version: i64 },
    #[error("election header: address length {len} outside 1..={max}")]
    AddrLength { len: i32, max: usize },
    #[error("election header: address is not valid UTF-8")]
    AddrUtf8,
    #[error("election frame: length {len} outside 1..={max}")]
    FrameLength { len: i32, max: usize },
    #[error("notification of {len} bytes: {what}")]
    Notification { len: usize, what: &'static str },
    #[error("notification: unknown peer state {state}")]
    UnknownPeerState { state: i32 },
    #[error("notification: config length {len} exceeds the {have} bytes left in the message")]
    ConfigLength { len: i32, have: usize },
    #[error("notification: config is not valid UTF-8")]
    ConfigUtf8,
    #[error("quorum packet: authinfo count {count} outside 0..={max}")]
    AuthCount { count: i32, max: usize },
    #[error("{what}: payload of {len} bytes, expected {expected}")]
    PayloadSize {
        what: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("{what}: payload missing (null data)")]
    PayloadMissing { what: &'static str },
    #[error("quorum config: {what} in line {line:?}")]
    Config { what: &'static str, line: String },
    #[error("quorum config: {len} bytes exceeds the limit of {max}")]
    ConfigTooLong { len: usize, max: usize },
    #[error("quorum config: more than {max} servers")]
    ConfigTooManyServers { max: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

// ---------------------------------------------------------------------------------------------
// Zxids.

/// A zxid: the epoch in the high 32 bits, the counter in the low 32 (`ZxidUtils.makeZxid`).
pub fn make_zxid(epoch: u32, counter: u32) -> i64 {
    ((u64::from(epoch) << 32) | u64::from(counter)) as i64
}

/// The epoch (high 32 bits) of a zxid.
pub fn epoch_of(zxid: i64) -> u32 {
    ((zxid as u64) >> 32) as u32
}

/// The counter (low 32 bits) of a zxid.
pub fn counter_of(zxid: i64) -> u32 {
    (zxid as u64 & 0xffff_ffff) as u32
}

// ---------------------------------------------------------------------------------------------
// Election port: connection header.

/// `QuorumCnxManager.PROTOCOL_VERSION_V1`: one `host:port` address.
pub const PROTOCOL_VERSION_V1: i64 = -65536;
/// `QuorumCnxManager.PROTOCOL_VERSION_V2`: `|`-separated addresses (`multiAddress.enabled`).
pub const PROTOCOL_VERSION_V2: i64 = -65535;
/// Bound on the address in the header (`QuorumCnxManager.maxBuffer`).
pub const HELLO_ADDR_BYTES_MAX: usize = 2048;
/// Bound on one election message (`QuorumCnxManager.PACKETMAXSIZE`).
pub const ELECTION_FRAME_BYTES_MAX: usize = 512 * 1024;

/// The first bytes an election connection's initiator sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `None` for a server older than 3.5, which sends its bare sid.
    pub protocol_version: Option<i64>,
    pub sid: i64,
    /// The initiator's election address(es), `host:port` (V2: `|`-separated); `None` when old.
    pub addr: Option<String>,
}

impl Hello {
    /// A V1 header, what a 3.8/3.9 server sends unless `multiAddress.enabled`.
    pub fn v1(sid: i64, addr: &str) -> Self {
        Self {
            protocol_version: Some(PROTOCOL_VERSION_V1),
            sid,
            addr: Some(addr.to_string()),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(20 + self.addr.as_ref().map_or(0, String::len));
        match (self.protocol_version, &self.addr) {
            (Some(version), addr) => {
                w.write_i64(version);
                w.write_i64(self.sid);
                w.write_ustring(addr.as_deref().unwrap_or(""));
            }
            (None, _) => w.write_i64(self.sid),
        }
        w.into_inner()
    }
}

/// Decodes the connection header from the start of `buf`; `Ok(None)` if more bytes are needed.
/// Returns the header and how many bytes it used.
pub fn decode_hello(buf: &[u8]) -> Result<Option<(Hello, usize)>, WireError> {
    let Some(first) = be_i64(buf, 0) else {
        return Ok(None);
    };
    if first >= 0 {
        let hello = Hello {
            protocol_version: None,
            sid: first,
            addr: None,
        };
        return Ok(Some((hello, 8)));
    }
    if first != PROTOCOL_VERSION_V1 && first != PROTOCOL_VERSION_V2 {
        return Err(WireError::UnknownProtocolVersion { version: first });
    }
    let (Some(sid), Some(len)) = (be_i64(buf, 8), be_i32(buf, 16)) else {
        return Ok(None);
    };
    let addr_len = usize::try_from(len)
        .ok()
        .filter(|n| (1..=HELLO_ADDR_BYTES_MAX).contains(n))
        .ok_or(WireError::AddrLength {
            len,
            max: HELLO_ADDR_BYTES_MAX,
        })?;
    let Some(addr) = buf.get(20..20 + addr_len) else {
        return Ok(None);
    };
    let addr = std::str::from_utf8(addr).map_err(|_| WireError::AddrUtf8)?;
    let hello = Hello {
        protocol_version: Some(first),
        sid,
        addr: Some(addr.to_string()),
    };
    Ok(Some((hello, 20 + addr_len)))
}

fn be_i64(buf: &[u8], at: usize) -> Option<i64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

// ---------------------------------------------------------------------------------------------
// Election port: framing and notifications.

/// Prefixes `payload` with its length. The caller keeps payloads within
/// [`ELECTION_FRAME_BYTES_MAX`] (a notification is 48 bytes plus the config string).
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::framed();
    w.write_raw(payload);
    w.finish_frame()
}

/// Decodes one election frame from the start of `buf`: `Ok(Some((payload, consumed)))`, or
/// `Ok(None)` if the frame is not complete yet. A length outside 1..=512 KiB is refused as soon as
/// the prefix has arrived, as `QuorumCnxManager.RecvWorker` does.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(len) = be_i32(buf, 0) else {
        return Ok(None);
    };
    let n = usize::try_from(len)
        .ok()
        .filter(|n| (1..=ELECTION_FRAME_BYTES_MAX).contains(n))
        .ok_or(WireError::FrameLength {
            len,
            max: ELECTION_FRAME_BYTES_MAX,
        })?;
    Ok(buf.get(4..4 + n).map(|payload| (payload, 4 + n)))
}

/// A server's state as announced in a notification (`QuorumPeer.ServerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

impl PeerState {
    pub fn as_i32(self) -> i32 {
        match self {
            PeerState::Looking => 0,
            PeerState::Following => 1,
            PeerState::Leading => 2,
            PeerState::Observing => 3,
        }
    }

    pub fn from_i32(state: i32) -> Result<Self, WireError> {
        match state {
            0 => Ok(PeerState::Looking),
            1 => Ok(PeerState::Following),
            2 => Ok(PeerState::Leading),
            3 => Ok(PeerState::Observing),
            _ => Err(WireError::UnknownPeerState { state }),
        }
    }
}

/// The notification version 3.4.6+ servers send; versions above 1 carry the config string.
pub const NOTIFICATION_VERSION: i32 = 2;
/// The legacy notification without peer epoch (before ZOOKEEPER-107).
pub const NOTIFICATION_BYTES_LEGACY_28: usize = 28;
/// The 40-byte form: with peer epoch; its last four bytes are not read (version 0).
pub const NOTIFICATION_BYTES_LEGACY_40: usize = 40;

/// A fast-leader-election vote (`FastLeaderElection.Notification` / `ToSend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub state: PeerState,
    pub leader: i64,
    pub zxid: i64,
    /// The sender's round (`logicalclock`).
    pub election_epoch: i64,
    pub peer_epoch: i64,
    /// 0 for the legacy forms.
    pub version: i32,
    /// The sender's quorum config string (version > 1 only).
    pub config: Option<String>,
}

impl Notification {
    /// The payload (without the frame length). With `version > 1` the config is always written,
    /// empty when `None` (44 bytes plus the config); otherwise the 40-byte form, which receivers
    /// read as version 0.
    pub fn encode(&self) -> Vec<u8> {
        let config = self.config.as_deref().unwrap_or("");
        let mut w = Writer::with_capacity(48 + config.len());
        w.write_i32(self.state.as_i32());
        w.write_i64(self.leader);
        w.write_i64(self.zxid);
        w.write_i64(self.election_epoch);
        w.write_i64(self.peer_epoch);
        w.write_i32(self.version);
        if self.version > 1 {
            w.write_ustring(config);
        }
        w.into_inner()
    }

    /// Decodes a notification payload as `FastLeaderElection.Messenger.WorkerReceiver` does:
    /// 28 bytes is the legacy form whose peer epoch is the zxid's epoch; 40 bytes is read as
    /// version 0 (its version field is skipped, as ZooKeeper skips it); anything longer has a
    /// version and, above version 1, a config bounded by the message.
    /// Bytes after the config are ignored, as ZooKeeper ignores them.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let len = payload.len();
        if len < NOTIFICATION_BYTES_LEGACY_28 {
            return Err(WireError::Notification {
                len,
                what: "shorter than 28 bytes",
            });
        }
        if len > NOTIFICATION_BYTES_LEGACY_28 && len < NOTIFICATION_BYTES_LEGACY_40 {
            return Err(WireError::Notification {
                len,
                what: "between the 28- and 40-byte forms",
            });
        }
        let mut r = Reader::new(payload, ELECTION_FRAME_BYTES_MAX);
        let state = PeerState::from_i32(r.read_i32()?)?;
        let leader = r.read_i64()?;
        let zxid = r.read_i64()?;
        let election_epoch = r.read_i64()?;
        if len == NOTIFICATION_BYTES_LEGACY_28 {
            return Ok(Self {
                state,
                leader,
                zxid,
                election_epoch,
                peer_epoch: i64::from(epoch_of(zxid)),
                version: 0,
                config: None,
            });
        }
        let peer_epoch = r.read_i64()?;
        let version = if len == NOTIFICATION_BYTES_LEGACY_40 {
            0
        } else {
            r.read_i32()?
        };
        let config = if version > 1 {
            let offset = r.offset();
            let config_len = r.read_i32()?;
            let have = r.remaining();
            let n = usize::try_from(config_len)
                .ok()
                .filter(|n| *n <= have)
                .ok_or(WireError::ConfigLength {
                    len: config_len,
                    have,
                })?;
            let bytes = payload
                .get(offset + 4..offset + 4 + n)
                .ok_or(WireError::ConfigLength {
                    len: config_len,
                    have,
                })?;
            Some(
                std::str::from_utf8(bytes)
                    .map_err(|_| WireError::ConfigUtf8)?
                    .to_string(),
            )
        } else {
            None
        };
        Ok(Self {
            state,
            leader,
            zxid,
            election_epoch,
            peer_epoch,
            version,
            config,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Quorum port: QuorumPacket.

/// `QuorumPacket.type` values (`Leader.java`).
pub mod packet {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const REVALIDATE: i32 = 6;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const COMMITANDACTIVATE: i32 = 9;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
    pub const INFORMANDACTIVATE: i32 = 19;

    /// The name ZooKeeper logs for a packet type.
    pub fn name(kind: i32) -> Option<&'static str> {
        Some(match kind {
            REQUEST => "REQUEST",
            PROPOSAL => "PROPOSAL",
            ACK => "ACK",
            COMMIT => "COMMIT",
            PING => "PING",
            REVALIDATE => "REVALIDATE",
            SYNC => "SYNC",
            INFORM => "INFORM",
            COMMITANDACTIVATE => "COMMITANDACTIVATE",
            NEWLEADER => "NEWLEADER",
            FOLLOWERINFO => "FOLLOWERINFO",
            UPTODATE => "UPTODATE",
            DIFF => "DIFF",
            TRUNC => "TRUNC",
            SNAP => "SNAP",
            OBSERVERINFO => "OBSERVERINFO",
            LEADERINFO => "LEADERINFO",
            ACKEPOCH => "ACKEPOCH",
            INFORMANDACTIVATE => "INFORMANDACTIVATE",
            _ => return None,
        })
    }
}

/// Bound on the auth ids one packet carries (a REQUEST carries its session's; ZooKeeper has no
/// limit, but a session authenticates with a handful of schemes at most).
pub const PACKET_AUTHINFO_MAX: usize = 64;
/// The fixed part of a packet: type, zxid, data length, authinfo count.
const PACKET_HEADER_BYTES: usize = 4 + 8 + 4 + 4;

/// One record on the quorum port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    /// One of [`packet`]'s constants; unknown values are kept, not refused, so the caller decides.
    pub kind: i32,
    pub zxid: i64,
    pub data: Option<Vec<u8>>,
    pub authinfo: Option<Vec<Id>>,
}

impl QuorumPacket {
    /// A packet with no data and null authinfo (ACK, COMMIT, UPTODATE, SYNC, ...).
    pub fn bare(kind: i32, zxid: i64) -> Self {
        Self {
            kind,
            zxid,
            data: None,
            authinfo: None,
        }
    }

    pub fn with_data(kind: i32, zxid: i64, data: Vec<u8>) -> Self {
        Self {
            kind,
            zxid,
            data: Some(data),
            authinfo: None,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.write_i32(self.kind);
        w.write_i64(self.zxid);
        w.write_buffer(self.data.as_deref());
        match &self.authinfo {
            None => w.write_i32(-1),
            Some(ids) => {
                w.write_count(ids.len());
                for id in ids {
                    w.write_ustring(&id.scheme);
                    w.write_ustring(&id.id);
                }
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(PACKET_HEADER_BYTES + self.data.as_ref().map_or(0, Vec::len));
        self.encode(&mut w);
        w.into_inner()
    }

    /// Decodes one packet from the start of `buf`: `Ok(Some((packet, consumed)))`, or `Ok(None)`
    /// if `buf` holds only a prefix of it. `data_max` bounds the data buffer and each auth string
    /// (callers derive it from `jute.maxbuffer`); an oversized length is refused as soon as its
    /// prefix has arrived, before the bytes themselves.
    pub fn decode(buf: &[u8], data_max: usize) -> Result<Option<(Self, usize)>, WireError> {
        let mut r = Reader::new(buf, data_max);
        match Self::decode_from(&mut r) {
            Ok(p) => Ok(Some((p, r.offset()))),
            Err(WireError::Decode(DecodeError::UnexpectedEof { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let kind = r.read_i32()?;
        let zxid = r.read_i64()?;
        let data = r.read_buffer()?;
        // The count is bounded by a fixed maximum rather than by the bytes at hand (which jute's
        // `read_count` would do): with a partial buffer the elements may simply not be here yet.
        let count = r.read_i32()?;
        let authinfo = if count == -1 {
            None
        } else {
            let n = usize::try_from(count)
                .ok()
                .filter(|n| *n <= PACKET_AUTHINFO_MAX)
                .ok_or(WireError::AuthCount {
                    count,
                    max: PACKET_AUTHINFO_MAX,
                })?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let scheme = r.read_ustring()?;
                let id = r.read_ustring()?;
                ids.push(Id { scheme, id });
            }
            Some(ids)
        };
        Ok(Self {
            kind,
            zxid,
            data,
            authinfo,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Quorum port: small payloads.

/// The quorum protocol version learners and leaders announce (`0x10000`).
pub const QUORUM_PROTOCOL_VERSION: i32 = 0x10000;

/// FOLLOWERINFO / OBSERVERINFO data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    pub serverid: i64,
    pub protocol_version: i32,
    pub config_version: i64,
}

impl LearnerInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(20);
        w.write_i64(self.serverid);
        w.write_i32(self.protocol_version);
        w.write_i64(self.config_version);
        w.into_inner()
    }

    /// Accepts the short forms older learners send, as `LearnerHandler` does: 8 bytes (sid only;
    /// protocol version 0) and 12 bytes (no config version; reads as 0). Bytes beyond the 20 of
    /// the current form are ignored.
    pub fn decode(data: &[u8]) -> Result<Self, WireError> {
        if data.len() < 8 {
            return Err(WireError::PayloadSize {
                what: "LearnerInfo",
                len: data.len(),
                expected: "at least 8",
            });
        }
        let mut r = Reader::new(data, 0);
        let serverid = r.read_i64()?;
        let protocol_version = if r.remaining() >= 4 { r.read_i32()? } else { 0 };
        let config_version = if r.remaining() >= 8 { r.read_i64()? } else { 0 };
        Ok(Self {
            serverid,
            protocol_version,
            config_version,
        })
    }
}

fn exact<'a>(
    data: Option<&'a [u8]>,
    what: &'static str,
    len: usize,
    expected: &'static str,
) -> Result<Reader<'a>, WireError> {
    let data = data.ok_or(WireError::PayloadMissing { what })?;
    if data.len() != len {
        return Err(WireError::PayloadSize {
            what,
            len: data.len(),
            expected,
        });
    }
    Ok(Reader::new(data, 0))
}

/// LEADERINFO data: the leader's protocol version.
pub fn encode_leader_info(protocol_version: i32) -> Vec<u8> {
    protocol_version.to_be_bytes().to_vec()
}

pub fn decode_leader_info(data: Option<&[u8]>) -> Result<i32, WireError> {
    Ok(exact(data, "LEADERINFO", 4, "4")?.read_i32()?)
}

/// ACKEPOCH data: the learner's current epoch, or -1 if it had already accepted the new epoch.
pub fn encode_ack_epoch(current_epoch: i32) -> Vec<u8> {
    current_epoch.to_be_bytes().to_vec()
}

pub fn decode_ack_epoch(data: Option<&[u8]>) -> Result<i32, WireError> {
    Ok(exact(data, "ACKEPOCH", 4, "4")?.read_i32()?)
}

/// One entry of a PING reply's touch table: a session the learner saw activity on, and its
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub session: i64,
    pub timeout_ms: i32,
}

const TOUCH_BYTES: usize = 12;

/// A learner's PING reply data: `(session:i64 timeout:i32)*`, no count.
pub fn encode_touches(touches: &[Touch]) -> Vec<u8> {
    let mut w = Writer::with_capacity(touches.len() * TOUCH_BYTES);
    for t in touches {
        w.write_i64(t.session);
        w.write_i32(t.timeout_ms);
    }
    w.into_inner()
}

/// Decodes a touch table; null or empty data is an empty table. The number of entries is
/// bounded by the packet's data, which the packet decoder bounded already.
pub fn decode_touches(data: Option<&[u8]>) -> Result<Vec<Touch>, WireError> {
    let data = data.unwrap_or(&[]);
    if !data.len().is_multiple_of(TOUCH_BYTES) {
        return Err(WireError::PayloadSize {
            what: "PING touch table",
            len: data.len(),
            expected: "a multiple of 12",
        });
    }
    let mut r = Reader::new(data, 0);
    let mut out = Vec::with_capacity(data.len() / TOUCH_BYTES);
    while !r.is_empty() {
        out.push(Touch {
            session: r.read_i64()?,
            timeout_ms: r.read_i32()?,
        });
    }
    Ok(out)
}

/// REVALIDATE from a learner: the session a client reconnected with, and its timeout.
pub fn encode_revalidate_request(session: i64, timeout_ms: i32) -> Vec<u8> {
    let mut w = Writer::with_capacity(12);
    w.write_i64(session);
    w.write_i32(timeout_ms);
    w.into_inner()
}

pub fn decode_revalidate_request(data: Option<&[u8]>) -> Result<(i64, i32), WireError> {
    let mut r = exact(data, "REVALIDATE request", 12, "12")?;
    Ok((r.read_i64()?, r.read_i32()?))
}

/// REVALIDATE from the leader: the session and whether it is still valid.
pub fn encode_revalidate_reply(session: i64, valid: bool) -> Vec<u8> {
    let mut w = Writer::with_capacity(9);
    w.write_i64(session);
    w.write_bool(valid);
    w.into_inner()
}

pub fn decode_revalidate_reply(data: Option<&[u8]>) -> Result<(i64, bool), WireError> {
    let mut r = exact(data, "REVALIDATE reply", 9, "9")?;
    Ok((r.read_i64()?, r.read_bool()?))
}

/// REQUEST data: a client request a learner forwards to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub session: i64,
    pub cxid: i32,
    /// The request's opcode ([`crate::proto::op`]).
    pub op: i32,
    /// The request record's jute bytes, as the client sent them (empty for closeSession).
    pub body: Vec<u8>,
}

const FORWARDED_HEADER_BYTES: usize = 16;

impl ForwardedRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(FORWARDED_HEADER_BYTES + self.body.len());
        w.write_i64(self.session);
        w.write_i32(self.cxid);
        w.write_i32(self.op);
        w.write_raw(&self.body);
        w.into_inner()
    }

    /// The body is bounded by the packet's data, which the packet decoder bounded already.
    pub fn decode(data: Option<&[u8]>) -> Result<Self, WireError> {
        let data = data.ok_or(WireError::PayloadMissing { what: "REQUEST" })?;
        let (head, body) =
            data.split_at_checked(FORWARDED_HEADER_BYTES)
                .ok_or(WireError::PayloadSize {
                    what: "REQUEST",
                    len: data.len(),
                    expected: "at least 16",
                })?;
        let mut r = Reader::new(head, 0);
        Ok(Self {
            session: r.read_i64()?,
            cxid: r.read_i32()?,
            op: r.read_i32()?,
            body: body.to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The quorum config string.

/// Bound on a config string (it travels inside one election frame).
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;
/// Bound on the servers one config lists.
pub const CONFIG_SERVERS_MAX: usize = 1024;

/// Whether a server votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerRole {
    Participant,
    Observer,
}

/// One `server.N=host:quorumPort:electionPort:role[;client]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: i64,
    /// As written: a name, an IPv4 address or a bracketed IPv6 address.
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: LearnerRole,
    /// Everything after the first `;` (the client address, `host:port` or `port`), verbatim.
    pub client: Option<String>,
}

/// A quorum config (`QuorumMaj`): its members and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// Sorted by id, the order ZooKeeper prints them in.
    pub servers: Vec<ServerSpec>,
    pub version: i64,
}

impl QuorumConfig {
    /// Parses `server.N=...` and `version=<hex>` lines. Blank lines and `#` comments are skipped,
    /// other keys (hierarchical quorums' `group.`/`weight.`) are ignored, as `QuorumMaj` ignores
    /// them. Multi-address (`|`) server specs are refused: Kiln speaks protocol V1 only.
    pub fn parse(text: &str) -> Result<Self, WireError> {
        if text.len() > CONFIG_BYTES_MAX {
            return Err(WireError::ConfigTooLong {
                len: text.len(),
                max: CONFIG_BYTES_MAX,
            });
        }
        let mut servers = Vec::new();
        let mut version = 0;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what| WireError::Config {
                what,
                line: line.to_string(),
            };
            let (key, value) = line.split_once('=').ok_or_else(|| bad("no '='"))?;
            let (key, value) = (key.trim(), value.trim());
            if key == "version" {
                version = i64::from_str_radix(value, 16).map_err(|_| bad("bad hex version"))?;
            } else if let Some(id) = key.strip_prefix("server.") {
                if servers.len() == CONFIG_SERVERS_MAX {
                    return Err(WireError::ConfigTooManyServers {
                        max: CONFIG_SERVERS_MAX,
                    });
                }
                let id: i64 = id.parse().map_err(|_| bad("bad server id"))?;
                servers.push(parse_server(id, value).map_err(bad)?);
            }
        }
        servers.sort_by_key(|s| s.id);
        if servers
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.id == b.id))
        {
            return Err(WireError::Config {
                what: "duplicate server id",
                line: String::new(),
            });
        }
        Ok(Self { servers, version })
    }

    /// As `QuorumMaj.toString` prints it: one `server.N=` line per member, each ending in `\n`,
    /// then `version=<hex>` with no newline.
    pub fn format(&self) -> String {
        let mut out = String::new();
        for s in &self.servers {
            let role = match s.role {
                LearnerRole::Participant => "participant",
                LearnerRole::Observer => "observer",
            };
            out.push_str(&format!(
                "server.{}={}:{}:{}:{}",
                s.id, s.host, s.quorum_port, s.election_port, role
            ));
            if let Some(client) = &s.client {
                out.push(';');
                out.push_str(client);
            }
            out.push('\n');
        }
        out.push_str(&format!("version={:x}", self.version));
        out
    }
}

fn parse_server(id: i64, value: &str) -> Result<ServerSpec, &'static str> {
    let (addr, client) = match value.split_once(';') {
        Some((a, c)) => (a, Some(c.to_string())),
        None => (value, None),
    };
    if addr.contains('|') {
        return Err("multiple addresses are not supported");
    }
    // Split from the right: an IPv6 host in brackets contains ':' itself.
    let (rest, role) = match addr.rsplit_once(':') {
        Some((rest, "participant")) => (rest, LearnerRole::Participant),
        Some((rest, "observer")) => (rest, LearnerRole::Observer),
        _ => (addr, LearnerRole::Participant),
    };
    let (rest, election) = rest.rsplit_once(':').ok_or("missing election port")?;
    let (host, quorum) = rest.rsplit_once(':').ok_or("missing quorum port")?;
    if host.is_empty() {
        return Err("empty host");
    }
    Ok(ServerSpec {
        id,
        host: host.to_string(),
        quorum_port: quorum.parse().map_err(|_| "bad quorum port")?,
        election_port: election.parse().map_err(|_| "bad election port")?,
        role,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::fuzzing::{mutations, random_inputs};

    #[test]
    fn zxid_halves() {
        let z = make_zxid(1, 5);
        assert_eq!(z, 0x1_0000_0005);
        assert_eq!((epoch_of(z), counter_of(z)), (1, 5));
        let top = make_zxid(u32::MAX, u32::MAX);
        assert_eq!(top, -1);
        assert_eq!((epoch_of(top), counter_of(top)), (u32::MAX, u32::MAX));
    }

    #[test]
    fn hello_v1_matches_the_probe_and_decodes_incrementally() {
        let h = Hello::v1(3, "127.0.0.3:13888");
        let bytes = h.encode();
        let mut expected = (-65536i64).to_be_bytes().to_vec();
        expected.extend_from_slice(&3i64.to_be_bytes());
        expected.extend_from_slice(&15i32.to_be_bytes());
        expected.extend_from_slice(b"127.0.0.3:13888");
        assert_eq!(bytes, expected);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_hello(bytes.get(..cut).unwrap()).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let mut more = bytes.clone();
        more.extend_from_slice(&[9, 9]);
        assert_eq!(decode_hello(&more).unwrap(), Some((h, bytes.len())));
    }

    #[test]
    fn hello_bare_sid_from_old_servers() {
        let bytes = 7i64.to_be_bytes();
        let (h, n) = decode_hello(&bytes).unwrap().unwrap();
        assert_eq!((h.protocol_version, h.sid, h.addr, n), (None, 7, None, 8));
        let old = Hello {
            protocol_version: None,
            sid: 7,
            addr: None,
        };
        assert_eq!(old.encode(), bytes.to_vec());
    }

    #[test]
    fn hello_refuses_bad_versions_and_address_lengths() {
        let bytes = (-5i64).to_be_bytes();
        assert!(matches!(
            decode_hello(&bytes),
            Err(WireError::UnknownProtocolVersion { version: -5 })
        ));
        for len in [0i32, -1, 2049] {
            let mut b = PROTOCOL_VERSION_V1.to_be_bytes().to_vec();
            b.extend_from_slice(&1i64.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
            assert!(
                matches!(decode_hello(&b), Err(WireError::AddrLength { .. })),
                "{len}"
            );
        }
        let mut b = PROTOCOL_VERSION_V2.to_be_bytes().to_vec();
        b.extend_from_slice(&1i64.to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(decode_hello(&b), Err(WireError::AddrUtf8));
    }

    #[test]
    fn frames_are_bounded() {
        let f = encode_frame(b"abc");
        assert_eq!(f, vec![0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(decode_frame(&f).unwrap(), Some((&b"abc"[..], 7)));
        assert_eq!(decode_frame(f.get(..5).unwrap()).unwrap(), None);
        assert_eq!(decode_frame(&[0, 0]).unwrap(), None);
        for len in [0i32, -1, 512 * 1024 + 1] {
            assert!(matches!(
                decode_frame(&len.to_be_bytes()),
                Err(WireError::FrameLength { .. })
            ));
        }
        let max = (512 * 1024i32).to_be_bytes();
        assert_eq!(decode_frame(&max).unwrap(), None);
    }

    fn probe_vote() -> Notification {
        Notification {
            state: PeerState::Looking,
            leader: 3,
            zxid: 0,
            election_epoch: 1,
            peer_epoch: 0,
            version: 2,
            config: Some("version=0".into()),
        }
    }

    #[test]
    fn notification_matches_the_probe_bytes() {
        let n = probe_vote();
        let bytes = n.encode();
        let mut expected = Vec::new();
        expected.extend_from_slice(&0i32.to_be_bytes());
        for v in [3i64, 0, 1, 0] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&9i32.to_be_bytes());
        expected.extend_from_slice(b"version=0");
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 44 + 9);
        assert_eq!(Notification::decode(&bytes).unwrap(), n);
    }

    #[test]
    fn notification_legacy_forms() {
        let full = Notification {
            state: PeerState::Leading,
            leader: 2,
            zxid: make_zxid(4, 9),
            election_epoch: 7,
            peer_epoch: 5,
            version: 2,
            config: None,
        }
        .encode();
        let n28 = Notification::decode(full.get(..28).unwrap()).unwrap();
        assert_eq!(
            (n28.state, n28.leader, n28.peer_epoch, n28.version),
            (PeerState::Leading, 2, 4, 0)
        );
        let n40 = Notification::decode(full.get(..40).unwrap()).unwrap();
        assert_eq!((n40.peer_epoch, n40.version, n40.config), (5, 0, None));
        // An empty config reads back as an empty string.
        assert_eq!(
            Notification::decode(&full).unwrap().config,
            Some(String::new())
        );
        let v1 = Notification {
            version: 1,
            ..probe_vote()
        };
        let b = v1.encode();
        assert_eq!(b.len(), 40);
        assert_eq!(
            Notification::decode(&b).unwrap(),
            Notification {
                config: None,
                version: 0,
                ..v1
            }
        );
    }

    #[test]
    fn notification_refuses_short_odd_and_overlong_config() {
        let b = probe_vote().encode();
        for len in [0, 27, 29, 36, 39] {
            assert!(
                matches!(
                    Notification::decode(b.get(..len).unwrap()),
                    Err(WireError::Notification { .. })
                ),
                "{len}"
            );
        }
        // A version-2 message cut before its config length is complete.
        for len in [41, 43] {
            assert!(
                Notification::decode(b.get(..len).unwrap()).is_err(),
                "{len}"
            );
        }
        let mut long = b.clone();
        if let Some(len) = long.get_mut(40..44) {
            len.copy_from_slice(&10i32.to_be_bytes());
        }
        assert!(matches!(
            Notification::decode(&long),
            Err(WireError::ConfigLength { len: 10, have: 9 })
        ));
        if let Some(len) = long.get_mut(40..44) {
            len.copy_from_slice(&(-1i32).to_be_bytes());
        }
        assert!(matches!(
            Notification::decode(&long),
            Err(WireError::ConfigLength { .. })
        ));
        let mut state = b;
        if let Some(s) = state.get_mut(0..4) {
            s.copy_from_slice(&4i32.to_be_bytes());
        }
        assert_eq!(
            Notification::decode(&state),
            Err(WireError::UnknownPeerState { state: 4 })
        );
    }

    #[test]
    fn followerinfo_matches_the_probe_and_round_trips() {
        let info = LearnerInfo {
            serverid: 3,
            protocol_version: QUORUM_PROTOCOL_VERSION,
            config_version: 0,
        };
        let p = QuorumPacket::with_data(packet::FOLLOWERINFO, 0, info.encode());
        let bytes = p.to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(&11i32.to_be_bytes());
        expected.extend_from_slice(&0i64.to_be_bytes());
        expected.extend_from_slice(&20i32.to_be_bytes());
        expected.extend_from_slice(&3i64.to_be_bytes());
        expected.extend_from_slice(&0x10000i32.to_be_bytes());
        expected.extend_from_slice(&0i64.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(bytes, expected);
        let (back, n) = QuorumPacket::decode(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!((back.clone(), n), (p, bytes.len()));
        assert_eq!(
            LearnerInfo::decode(back.data.as_deref().unwrap()).unwrap(),
            info
        );
        let short = LearnerInfo::decode(&3i64.to_be_bytes()).unwrap();
        assert_eq!(
            (short.serverid, short.protocol_version, short.config_version),
            (3, 0, 0)
        );
        assert!(LearnerInfo::decode(&[0; 7]).is_err());
    }

    #[test]
    fn packets_decode_incrementally_back_to_back() {
        let a = QuorumPacket {
            kind: packet::REQUEST,
            zxid: -1,
            data: Some(vec![1, 2, 3]),
            authinfo: Some(vec![Id::new("digest", "u:x"), Id::new("ip", "127.0.0.1")]),
        };
        let b = QuorumPacket::bare(packet::UPTODATE, -1);
        let mut bytes = a.to_bytes();
        let a_len = bytes.len();
        bytes.extend_from_slice(&b.to_bytes());
        for cut in 0..a_len {
            assert_eq!(
                QuorumPacket::decode(bytes.get(..cut).unwrap(), 64).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let (pa, na) = QuorumPacket::decode(&bytes, 64).unwrap().unwrap();
        assert_eq!((pa, na), (a, a_len));
        let (pb, nb) = QuorumPacket::decode(bytes.get(na..).unwrap(), 64)
            .unwrap()
            .unwrap();
        assert_eq!(pb, b);
        assert_eq!(na + nb, bytes.len());
    }

    #[test]
    fn packet_limits_apply_before_the_bytes_arrive() {
        let p = QuorumPacket::with_data(packet::PROPOSAL, 1, vec![0; 100]);
        let bytes = p.to_bytes();
        assert!(matches!(
            QuorumPacket::decode(bytes.get(..20).unwrap(), 99),
            Err(WireError::Decode(DecodeError::TooLong {
                len: 100,
                max: 99,
                ..
            }))
        ));
        let mut neg = QuorumPacket::bare(1, 1).to_bytes();
        if let Some(len) = neg.get_mut(12..16) {
            len.copy_from_slice(&(-2i32).to_be_bytes());
        }
        assert!(matches!(
            QuorumPacket::decode(&neg, 99),
            Err(WireError::Decode(DecodeError::NegativeLength { .. }))
        ));
        let mut many = QuorumPacket::bare(1, 1).to_bytes();
        if let Some(count) = many.get_mut(16..20) {
            count.copy_from_slice(&65i32.to_be_bytes());
        }
        assert!(matches!(
            QuorumPacket::decode(&many, 99),
            Err(WireError::AuthCount { count: 65, .. })
        ));
    }

    #[test]
    fn small_payloads_round_trip() {
        assert_eq!(
            encode_leader_info(QUORUM_PROTOCOL_VERSION),
            vec![0, 1, 0, 0]
        );
        assert_eq!(decode_leader_info(Some(&[0, 1, 0, 0])).unwrap(), 0x10000);
        assert_eq!(decode_ack_epoch(Some(&encode_ack_epoch(-1))).unwrap(), -1);
        assert!(decode_ack_epoch(None).is_err());
        assert!(decode_ack_epoch(Some(&[0; 5])).is_err());
        let touches = vec![
            Touch {
                session: 0x0300_0000_0000_1234,
                timeout_ms: 30000,
            },
            Touch {
                session: 1,
                timeout_ms: 4000,
            },
        ];
        let t = encode_touches(&touches);
        assert_eq!(t.len(), 24);
        assert_eq!(decode_touches(Some(&t)).unwrap(), touches);
        assert_eq!(decode_touches(None).unwrap(), vec![]);
        assert!(decode_touches(Some(t.get(..13).unwrap())).is_err());
        assert_eq!(
            decode_revalidate_request(Some(&encode_revalidate_request(5, 6))).unwrap(),
            (5, 6)
        );
        assert_eq!(
            decode_revalidate_reply(Some(&encode_revalidate_reply(5, true))).unwrap(),
            (5, true)
        );
        assert!(decode_revalidate_reply(Some(&[0; 12])).is_err());
    }

    #[test]
    fn forwarded_create_session_matches_the_probe() {
        let r = ForwardedRequest {
            session: 0x0300_0000_0000_1234,
            cxid: 0,
            op: -10,
            body: 30000i32.to_be_bytes().to_vec(),
        };
        let bytes = r.encode();
        assert_eq!(bytes.len(), 20);
        assert_eq!(
            bytes.get(..8).unwrap(),
            &0x0300_0000_0000_1234i64.to_be_bytes()
        );
        assert_eq!(ForwardedRequest::decode(Some(&bytes)).unwrap(), r);
        assert!(ForwardedRequest::decode(Some(bytes.get(..15).unwrap())).is_err());
        let close = ForwardedRequest {
            op: -11,
            body: vec![],
            ..r
        };
        assert_eq!(
            ForwardedRequest::decode(Some(&close.encode())).unwrap(),
            close
        );
    }

    #[test]
    fn config_string_parses_and_formats_as_zookeeper_prints_it() {
        let text = "server.1=127.0.0.1:12888:13888:participant\n\
                    server.3=127.0.0.3:12888:13888:participant\n\
                    server.2=127.0.0.2:12888:13888:participant\n\
                    version=0";
        let c = QuorumConfig::parse(text).unwrap();
        assert_eq!(c.version, 0);
        assert_eq!(
            c.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let s3 = c.servers.get(2).unwrap();
        assert_eq!(
            (s3.host.as_str(), s3.quorum_port, s3.election_port),
            ("127.0.0.3", 12888, 13888)
        );
        let sorted = "server.1=127.0.0.1:12888:13888:participant\n\
                      server.2=127.0.0.2:12888:13888:participant\n\
                      server.3=127.0.0.3:12888:13888:participant\n\
                      version=0";
        assert_eq!(c.format(), sorted);
        // The probe saw 138 bytes of config in a 3-member static ensemble.
        assert_eq!(sorted.len(), 138);
        assert_eq!(QuorumConfig::parse(&c.format()).unwrap(), c);
    }

    #[test]
    fn config_string_variants_and_errors() {
        let c = QuorumConfig::parse(
            "server.5=[::1]:2888:3888:observer;[::1]:2181\nserver.6=h:1:2\nweight.5=1\nversion=1a\n",
        )
        .unwrap();
        assert_eq!(c.version, 0x1a);
        let s5 = c.servers.first().unwrap();
        assert_eq!(
            (s5.host.as_str(), s5.role, s5.client.as_deref()),
            ("[::1]", LearnerRole::Observer, Some("[::1]:2181"))
        );
        assert_eq!(c.servers.get(1).unwrap().role, LearnerRole::Participant);
        assert_eq!(QuorumConfig::parse(&c.format()).unwrap(), c);
        for bad in [
            "server.1=h:1",
            "server.x=h:1:2",
            "server.1=h:1:70000",
            "server.1=:1:2",
            "server.1=a:1:2|b:1:2",
            "version=zz",
            "junk",
            "server.1=h:1:2\nserver.1=h:1:2",
        ] {
            assert!(QuorumConfig::parse(bad).is_err(), "{bad}");
        }
        let long = "#".repeat(CONFIG_BYTES_MAX + 1);
        assert!(matches!(
            QuorumConfig::parse(&long),
            Err(WireError::ConfigTooLong { .. })
        ));
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut inputs = random_inputs(0x9e37_79b9_7f4a_7c15, 3000, 96);
        inputs.extend(mutations(&probe_vote().encode(), 1));
        inputs.extend(mutations(&Hello::v1(3, "h:1").encode(), 2));
        let p = QuorumPacket {
            kind: 1,
            zxid: 2,
            data: Some(vec![3; 20]),
            authinfo: Some(vec![Id::new("ip", "a")]),
        };
        inputs.extend(mutations(&p.to_bytes(), 3));
        for b in &inputs {
            let d = Some(b.as_slice());
            let _ = decode_hello(b);
            let _ = decode_frame(b);
            let _ = Notification::decode(b);
            if let Ok(Some((p, used))) = QuorumPacket::decode(b, 64) {
                assert!(used <= b.len());
                assert_eq!(
                    QuorumPacket::decode(&p.to_bytes(), 64).unwrap().unwrap().0,
                    p
                );
            }
            let _ = LearnerInfo::decode(b);
            let _ = decode_leader_info(d);
            let _ = decode_ack_epoch(d);
            let _ = decode_touches(d);
            let _ = decode_revalidate_request(d);
            let _ = decode_revalidate_reply(d);
            let _ = ForwardedRequest::decode(d);
            let _ = QuorumConfig::parse(&String::from_utf8_lossy(b));
        }
    }
}
