//! Sessions: the replicated table (which sessions exist and their negotiated timeouts, changed only
//! by createSession/closeSession transactions) and the leader-local expiry tracker (deadlines,
//! refreshed by any packet from the session's connection). No I/O; time is passed in.

use std::collections::{BTreeMap, HashMap};

use crate::tree::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMeta {
    pub timeout_ms: i32,
}

/// `ZooKeeperServer.generatePasswd`: 16 bytes from `java.util.Random(sessionId ^ 0xB3415C00)`.
/// Deterministic, so a restarted server recognises the password of a session it recovered.
pub fn password(session: SessionId) -> [u8; 16] {
    const MULT: i64 = 0x5_DEEC_E66D;
    const MASK: i64 = (1 << 48) - 1;
    let mut seed = ((session ^ 0xB341_5C00) ^ MULT) & MASK;
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < out.len() {
        seed = (seed.wrapping_mul(MULT).wrapping_add(0xB)) & MASK;
        let mut rnd = (seed >> 16) as i32;
        for _ in 0..4.min(out.len() - i) {
            if let Some(b) = out.get_mut(i) {
                *b = rnd as u8;
            }
            rnd >>= 8;
            i += 1;
        }
    }
    out
}

/// First session id of a server (`SessionTrackerImpl.initializeNextSessionId`).
pub fn initial_session_id(now_ms: i64, server_id: i64) -> SessionId {
    (((now_ms << 24) as u64) >> 8) as i64 | (server_id << 56)
}

/// The replicated session table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    map: BTreeMap<SessionId, SessionMeta>,
}

impl Sessions {
    pub fn insert(&mut self, s: SessionId, meta: SessionMeta) {
        self.map.insert(s, meta);
    }

    pub fn remove(&mut self, s: SessionId) -> Option<SessionMeta> {
        self.map.remove(&s)
    }

    pub fn get(&self, s: SessionId) -> Option<SessionMeta> {
        self.map.get(&s).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, SessionMeta)> + '_ {
        self.map.iter().map(|(k, v)| (*k, *v))
    }
}

/// Expiry deadlines in milliseconds of a monotonic clock.
#[derive(Debug, Default)]
pub struct ExpiryTracker {
    deadlines: HashMap<SessionId, u64>,
}

impl ExpiryTracker {
    pub fn touch(&mut self, s: SessionId, now_ms: u64, timeout_ms: i32) {
        let t = u64::try_from(timeout_ms).unwrap_or(0);
        self.deadlines.insert(s, now_ms.saturating_add(t));
    }

    pub fn remove(&mut self, s: SessionId) {
        self.deadlines.remove(&s);
    }

    pub fn contains(&self, s: SessionId) -> bool {
        self.deadlines.contains_key(&s)
    }

    /// Sessions whose deadline has passed; they stay tracked until [`ExpiryTracker::remove`].
    pub fn expired(&self, now_ms: u64) -> Vec<SessionId> {
        let mut v: Vec<_> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_deterministic_per_session() {
        assert_eq!(password(5), password(5));
        assert_ne!(password(5), password(6));
    }

    #[test]
    fn expiry_after_timeout_unless_touched() {
        let mut t = ExpiryTracker::default();
        t.touch(1, 0, 100);
        t.touch(2, 0, 100);
        t.touch(2, 90, 100);
        assert_eq!(t.expired(150), vec![1]);
        assert_eq!(t.expired(200), vec![1, 2]);
    }

    #[test]
    fn session_id_has_server_id_in_high_byte() {
        let s = initial_session_id(1_700_000_000_000, 1);
        assert_eq!(s >> 56, 1);
    }
}
