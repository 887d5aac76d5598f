//! Feeds arbitrary bytes to every quorum-protocol decoder: the election header, frames and
//! notifications, quorum packets and their payloads, the config string, ZooKeeper's txn records
//! and the SNAP stream (whole and split at an arbitrary point). Each must return a value or a
//! typed error, never panic or over-allocate; what decodes must re-encode and decode the same.
#![no_main]

use kiln_zk::quorum::atxn::{decode_apache_txn, encode_apache_txn_as};
use kiln_zk::quorum::snapstream::{SnapDecoder, SnapLimits, decode_snap, encode_snap};
use kiln_zk::quorum::wire::{
    ForwardedRequest, LearnerInfo, Notification, QuorumConfig, QuorumPacket, decode_ack_epoch,
    decode_frame, decode_hello, decode_leader_info, decode_revalidate_reply,
    decode_revalidate_request, decode_touches,
};
use kiln_zk::tree::DataTree;
use libfuzzer_sys::fuzz_target;

const LENGTH_MAX: usize = 0xfffff;

fuzz_target!(|data: &[u8]| {
    let _ = decode_hello(data);
    let _ = decode_frame(data);
    if let Ok(n) = Notification::decode(data) {
        if n.version > 1 {
            assert_eq!(Notification::decode(&n.encode()).ok(), Some(n));
        }
    }
    if let Ok(Some((p, used))) = QuorumPacket::decode(data, LENGTH_MAX) {
        assert!(used <= data.len());
        assert_eq!(
            QuorumPacket::decode(&p.to_bytes(), LENGTH_MAX)
                .ok()
                .flatten()
                .map(|x| x.0),
            Some(p)
        );
    }
    let d = Some(data);
    let _ = LearnerInfo::decode(data);
    let _ = decode_leader_info(d);
    let _ = decode_ack_epoch(d);
    let _ = decode_touches(d);
    let _ = decode_revalidate_request(d);
    let _ = decode_revalidate_reply(d);
    let _ = ForwardedRequest::decode(d);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = QuorumConfig::parse(text) {
            assert_eq!(QuorumConfig::parse(&c.format()).ok(), Some(c));
        }
    }
    if let Ok(t) = decode_apache_txn(data, LENGTH_MAX) {
        let paths = t.close_paths.clone().unwrap_or_default();
        let digest = t.digest.map(|x| x.tree_digest);
        if let Ok(b) = encode_apache_txn_as(&t.txn, &paths, digest, Some(t.header_type)) {
            let back = decode_apache_txn(&b, LENGTH_MAX).ok().map(|x| x.txn);
            assert_eq!(back, Some(t.txn));
        }
    }
    let limits = SnapLimits {
        nodes_max: 1 << 16,
        ..SnapLimits::new(LENGTH_MAX)
    };
    if let Ok((c, _)) = decode_snap(data, limits) {
        let tree = DataTree::from_nodes(c.nodes);
        let again = encode_snap(&c.sessions, &tree.sorted_nodes());
        assert!(decode_snap(&again, limits).is_ok());
    }
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut dec = SnapDecoder::new(limits);
    if let Ok(used) = dec.feed(a) {
        let mut rest = a.get(used..).unwrap_or(&[]).to_vec();
        rest.extend_from_slice(b);
        let _ = dec.feed(&rest);
    }
});
