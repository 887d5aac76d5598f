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

/// Seeded inputs for the decoders' "never panics" tests (the same bytes on every run).
#[cfg(test)]
pub(crate) mod fuzzing {
    /// `count` inputs of up to `len_max` bytes from a seeded xorshift.
    pub(crate) fn random_inputs(seed: u64, count: usize, len_max: usize) -> Vec<Vec<u8>> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        (0..count)
            .map(|_| {
                let len = (next() % len_max as u64) as usize;
                (0..len).map(|_| next() as u8).collect()
            })
            .collect()
    }

    /// Flips one byte of `base` per input (and cuts some short), to reach past the first field.
    pub(crate) fn mutations(base: &[u8], seed: u64) -> Vec<Vec<u8>> {
        random_inputs(seed, base.len().min(2000), 8)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let mut b = base.to_vec();
                if let Some(x) = b.get_mut(i % base.len().max(1)) {
                    *x ^= r.first().copied().unwrap_or(0xff) | 1;
                }
                b.truncate(base.len() - (r.len() % 3) * (i % 2));
                b
            })
            .collect()
    }
}
