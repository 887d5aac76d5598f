//! [`zab::Msg`] ↔ [`wire::QuorumPacket`]: the typed messages of the ZAB machines as the packets
//! ZooKeeper's quorum port carries. Pure; the SNAP stream that follows a SNAP packet is read by
//! the caller (it is not inside the packet).

use std::rc::Rc;

use thiserror::Error;

use crate::quorum::wire::{
    self, ForwardedRequest, LearnerInfo, QUORUM_PROTOCOL_VERSION, QuorumPacket, Touch, WireError,
    packet,
};
use crate::quorum::zab::{Msg, Sid, epoch_of, make_zxid};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("quorum packet type {kind} ({name}) is not expected on this side")]
    Unexpected { kind: i32, name: &'static str },
}

/// The packet for `msg`. SNAP's stream is written by the caller after the packet.
pub fn to_packet(msg: &Msg) -> QuorumPacket {
    match msg {
        Msg::LearnerInfo {
            observer,
            sid,
            accepted_epoch,
        } => QuorumPacket::with_data(
            if *observer {
                packet::OBSERVERINFO
            } else {
                packet::FOLLOWERINFO
            },
            make_zxid(*accepted_epoch, 0),
            LearnerInfo {
                serverid: *sid,
                protocol_version: QUORUM_PROTOCOL_VERSION,
                config_version: 0,
            }
            .encode(),
        ),
        Msg::LeaderInfo { new_epoch } => QuorumPacket::with_data(
            packet::LEADERINFO,
            make_zxid(*new_epoch, 0),
            wire::encode_leader_info(QUORUM_PROTOCOL_VERSION),
        ),
        Msg::AckEpoch {
            last_zxid,
            current_epoch,
        } => QuorumPacket::with_data(
            packet::ACKEPOCH,
            *last_zxid,
            // The current epoch fits 32 bits (epochs are the zxid's high half); -1 stays -1.
            wire::encode_ack_epoch(i32::try_from(*current_epoch).unwrap_or(-1)),
        ),
        Msg::Diff { zxid } => QuorumPacket::bare(packet::DIFF, *zxid),
        Msg::Trunc { zxid } => QuorumPacket::bare(packet::TRUNC, *zxid),
        Msg::Snap { zxid, .. } => QuorumPacket::bare(packet::SNAP, *zxid),
        Msg::Proposal { zxid, txn } => {
            QuorumPacket::with_data(packet::PROPOSAL, *zxid, txn.to_vec())
        }
        Msg::Ack { zxid } => QuorumPacket::bare(packet::ACK, *zxid),
        Msg::Commit { zxid } => QuorumPacket::bare(packet::COMMIT, *zxid),
        Msg::Inform { zxid, txn } => QuorumPacket::with_data(packet::INFORM, *zxid, txn.to_vec()),
        Msg::NewLeader { zxid, config } => {
            QuorumPacket::with_data(packet::NEWLEADER, *zxid, config.clone())
        }
        Msg::UpToDate => QuorumPacket::bare(packet::UPTODATE, -1),
        Msg::Ping { zxid, touches } => {
            let t: Vec<Touch> = touches
                .iter()
                .map(|(session, timeout_ms)| Touch {
                    session: *session,
                    timeout_ms: *timeout_ms,
                })
                .collect();
            QuorumPacket::with_data(packet::PING, *zxid, wire::encode_touches(&t))
        }
        Msg::Request {
            session,
            cxid,
            op,
            body,
        } => QuorumPacket::with_data(
            packet::REQUEST,
            -1,
            ForwardedRequest {
                session: *session,
                cxid: *cxid,
                op: *op,
                body: body.clone(),
            }
            .encode(),
        ),
        Msg::Revalidate {
            session,
            timeout_ms,
        } => QuorumPacket::with_data(
            packet::REVALIDATE,
            -1,
            wire::encode_revalidate_request(*session, *timeout_ms),
        ),
        Msg::Revalidated { session, valid } => QuorumPacket::with_data(
            packet::REVALIDATE,
            -1,
            wire::encode_revalidate_reply(*session, *valid),
        ),
        Msg::Sync => QuorumPacket::bare(packet::SYNC, 0),
    }
}

/// A packet a learner received from its leader, as a message. `Snap` gets an empty stream: the
/// caller reads the stream that follows and fills it in.
pub fn from_leader(p: QuorumPacket) -> Result<Msg, PacketError> {
    let data = p.data.as_deref();
    Ok(match p.kind {
        packet::LEADERINFO => {
            wire::decode_leader_info(data)?;
            Msg::LeaderInfo {
                new_epoch: epoch_of(p.zxid),
            }
        }
        packet::DIFF => Msg::Diff { zxid: p.zxid },
        packet::TRUNC => Msg::Trunc { zxid: p.zxid },
        packet::SNAP => Msg::Snap {
            zxid: p.zxid,
            stream: Rc::from(Vec::new()),
        },
        packet::PROPOSAL => Msg::Proposal {
            zxid: p.zxid,
            txn: Rc::from(p.data.unwrap_or_default()),
        },
        packet::COMMIT => Msg::Commit { zxid: p.zxid },
        packet::INFORM => Msg::Inform {
            zxid: p.zxid,
            txn: Rc::from(p.data.unwrap_or_default()),
        },
        packet::NEWLEADER => Msg::NewLeader {
            zxid: p.zxid,
            config: p.data.unwrap_or_default(),
        },
        packet::UPTODATE => Msg::UpToDate,
        packet::PING => Msg::Ping {
            zxid: p.zxid,
            touches: Vec::new(),
        },
        packet::REVALIDATE => {
            let (session, valid) = wire::decode_revalidate_reply(data)?;
            Msg::Revalidated { session, valid }
        }
        packet::SYNC => Msg::Sync,
        kind => return Err(unexpected(kind)),
    })
}

/// A packet a leader received from learner `from`, as a message.
pub fn from_learner(p: QuorumPacket, from: Sid) -> Result<Msg, PacketError> {
    let data = p.data.as_deref();
    Ok(match p.kind {
        packet::FOLLOWERINFO | packet::OBSERVERINFO => {
            let info = match data {
                Some(d) => LearnerInfo::decode(d)?,
                None => LearnerInfo {
                    serverid: from,
                    protocol_version: 0,
                    config_version: 0,
                },
            };
            Msg::LearnerInfo {
                observer: p.kind == packet::OBSERVERINFO,
                sid: info.serverid,
                accepted_epoch: epoch_of(p.zxid),
            }
        }
        packet::ACKEPOCH => Msg::AckEpoch {
            last_zxid: p.zxid,
            current_epoch: i64::from(wire::decode_ack_epoch(data)?),
        },
        packet::ACK => Msg::Ack { zxid: p.zxid },
        packet::PING => Msg::Ping {
            zxid: p.zxid,
            touches: wire::decode_touches(data)?
                .into_iter()
                .map(|t| (t.session, t.timeout_ms))
                .collect(),
        },
        packet::REQUEST => {
            let r = ForwardedRequest::decode(data)?;
            Msg::Request {
                session: r.session,
                cxid: r.cxid,
                op: r.op,
                body: r.body,
            }
        }
        packet::REVALIDATE => {
            let (session, timeout_ms) = wire::decode_revalidate_request(data)?;
            Msg::Revalidate {
                session,
                timeout_ms,
            }
        }
        kind => return Err(unexpected(kind)),
    })
}

fn unexpected(kind: i32) -> PacketError {
    PacketError::Unexpected {
        kind,
        name: packet::name(kind).unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learner_messages_survive_the_packet_form() {
        let msgs = [
            Msg::LearnerInfo {
                observer: true,
                sid: 3,
                accepted_epoch: 7,
            },
            Msg::AckEpoch {
                last_zxid: 0x7_0000_0005,
                current_epoch: 7,
            },
            Msg::AckEpoch {
                last_zxid: 0,
                current_epoch: -1,
            },
            Msg::Ack {
                zxid: 0x8_0000_0001,
            },
            Msg::Ping {
                zxid: 4,
                touches: vec![(0x0300_0000_0000_1234, 30_000)],
            },
            Msg::Request {
                session: 9,
                cxid: 1,
                op: -10,
                body: vec![0, 0, 117, 48],
            },
            Msg::Revalidate {
                session: 9,
                timeout_ms: 4000,
            },
        ];
        for m in msgs {
            let p = QuorumPacket::decode(&to_packet(&m).to_bytes(), 1 << 20)
                .unwrap()
                .unwrap()
                .0;
            assert_eq!(from_learner(p, 3).unwrap(), m);
        }
    }

    #[test]
    fn leader_messages_survive_the_packet_form() {
        let txn: Rc<[u8]> = Rc::from(vec![1u8, 2, 3]);
        let msgs = [
            Msg::LeaderInfo { new_epoch: 8 },
            Msg::Diff { zxid: 5 },
            Msg::Trunc { zxid: 4 },
            Msg::Proposal {
                zxid: 6,
                txn: txn.clone(),
            },
            Msg::Commit { zxid: 6 },
            Msg::Inform { zxid: 7, txn },
            Msg::NewLeader {
                zxid: 0x8_0000_0000,
                config: b"version=0".to_vec(),
            },
            Msg::UpToDate,
            Msg::Revalidated {
                session: 9,
                valid: true,
            },
            Msg::Sync,
        ];
        for m in msgs {
            let p = QuorumPacket::decode(&to_packet(&m).to_bytes(), 1 << 20)
                .unwrap()
                .unwrap()
                .0;
            assert_eq!(from_leader(p).unwrap(), m);
        }
    }

    #[test]
    fn packets_from_the_wrong_side_are_refused() {
        let p = to_packet(&Msg::Commit { zxid: 1 });
        assert!(matches!(
            from_learner(p, 1),
            Err(PacketError::Unexpected { kind: 4, .. })
        ));
    }
}
