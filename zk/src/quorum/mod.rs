//! The ensemble: ZooKeeper's quorum protocol (leader election on the election port, ZAB 1.0 on the
//! quorum port), as pure state machines and codecs: no network I/O and no clock (time is a
//! parameter and every effect is returned to the caller). The one exception is [`epochs`], the
//! two small files a voter keeps, written with blocking file I/O once per election.
//!
//! | module | role |
//! |---|---|
//! | [`wire`] | election connection header, notifications, `QuorumPacket`, `LearnerInfo` |
//! | [`atxn`] | ZooKeeper's jute transaction records (`TxnHeader` + record + `TxnDigest`) ↔ [`crate::txn::Txn`] |
//! | [`digest`] | the per-transaction tree digest every member recomputes |
//! | [`snapstream`] | the SNAP stream a leader sends a learner that is too far behind |
//! | [`election`] | fast leader election: votes ordered by (peer epoch, zxid, server id) |
//! | [`packets`] | the ZAB messages as `QuorumPacket`s |
//! | [`zab`] | discovery, synchronisation and broadcast: the leader and the learner |
//! | [`epochs`] | `acceptedEpoch` and `currentEpoch` in `dataDir`, saved atomically and durably (blocking I/O) |
pub mod atxn;
pub mod digest;
pub mod election;
pub mod epochs;
pub mod packets;
pub mod snapstream;
pub mod wire;
pub mod zab;
