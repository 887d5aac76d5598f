//! Incremental fetch sessions (KIP-227): a shard's session cache, a pure state machine.
//!
//! A consumer that fetches the same partitions over and over would send (and get back) every
//! partition each time. With a session, the broker remembers the partitions and their fetch
//! positions, and the client sends only what changed; the broker answers only the partitions that
//! have something new.
//!
//! Request metadata `(session_id, epoch)` selects what happens ([`FetchSessionCache::begin`]):
//!
//! | session_id | epoch | meaning |
//! |---|---|---|
//! | any | -1 ([`FINAL_EPOCH`]) | full fetch without a session; a named session is closed |
//! | any | 0 ([`INITIAL_EPOCH`]) | full fetch that opens a new session (a named one is closed first) |
//! | id | > 0 | incremental fetch of session `id`, whose expected epoch must be `epoch` |
//!
//! An incremental request adds or updates the partitions it lists and removes the forgotten ones;
//! the session's epoch then moves to the next value (wrapping to 1 after `i32::MAX`). The response
//! of an incremental fetch lists a partition only when [`must_respond`] says so: it has records,
//! an error, or a high watermark or log start offset different from the last one sent. Partitions
//! that returned records move to the end of the session's order, so a partition that always has
//! data cannot starve the others of the response's byte budget (Kafka does the same).
//!
//! Errors: an unknown session id is FETCH_SESSION_ID_NOT_FOUND (70), a wrong epoch
//! INVALID_FETCH_SESSION_EPOCH (71), a session created with topic ids (v13+) used by a request
//! without them or the reverse FETCH_SESSION_TOPIC_ID_ERROR (106). The client then starts over
//! with a full fetch.
//!
//! Limits: at most `slots` sessions (`max.incremental.fetch.session.cache.slots`). When the cache
//! is full a new session evicts, as Kafka does, the least recently used session if it has been
//! idle for longer than `eviction_ms`, else the smallest session (then the least recently used)
//! when it has fewer partitions than the new one; otherwise the new session is refused and the
//! client gets `session_id = 0` (it keeps sending full fetches). A session holds at most the
//! partitions its requests named, and requests are bounded by `socket.request.max.bytes`.
//!
//! Thread per core: each shard owns one cache ([`crate::shard::ShardState::fetch_sessions`]) with
//! [`slots_per_shard`] of the broker's slots, and creates its sessions there, with ids that name
//! it ([`session_id_on`], [`owner_shard`]). A connection stays on the shard that accepted it, so
//! its fetches find their session locally; a request naming a session of another shard (the
//! client reconnected and landed elsewhere) is served by asking the owning shard through its
//! mailbox. Eviction (below) compares the sessions of one shard.

use std::collections::HashMap;

use crate::error_code;

/// Session id meaning "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// Epoch of a full fetch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch of a full fetch without a session (and which closes the named one).
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's FETCH_SESSION_TOPIC_ID_ERROR.
pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
/// Kafka's `min.incremental.fetch.session.eviction.ms` (an internal setting there too).
pub const EVICTION_MS: u64 = 120_000;

/// The slots of each shard's cache: the broker's `slots` shared out, rounded up (0 stays 0).
pub fn slots_per_shard(slots: usize, shards: usize) -> usize {
    slots.div_ceil(shards.max(1))
}

/// A session id for shard `shard` of `shards` from the random `r`: positive, and
/// `id % shards == shard` ([`owner_shard`]). May be 0 (invalid): [`FetchSessionCache::create`]
/// then asks for another.
pub fn session_id_on(r: i32, shard: usize, shards: usize) -> i32 {
    let shards = shards.max(1) as i64;
    let r = i64::from(r & 0x3fff_ffff);
    i32::try_from(r / shards * shards + shard as i64 % shards).unwrap_or(INVALID_SESSION_ID)
}

/// The shard whose cache holds session `id` (None for the invalid id 0 and negative ids).
pub fn owner_shard(id: i32, shards: usize) -> Option<usize> {
    if id <= INVALID_SESSION_ID {
        return None;
    }
    Some(id as usize % shards.max(1))
}

/// One partition of a session: by topic id (Fetch v13+, `topic` empty) or by name (id zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic_id: [u8; 16],
    pub topic: String,
    pub partition: i32,
}

/// What the client asked for one partition (kept by the session between requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// A partition as the session remembers it: the request data and what was last sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPartition {
    pub key: PartitionKey,
    pub position: FetchPosition,
    /// The high watermark last sent; -1 when never sent or after an error, so it is sent again.
    pub high_watermark: i64,
    /// The log start offset last sent; -1 when never sent.
    pub log_start_offset: i64,
}

impl CachedPartition {
    /// A partition nothing was sent for yet.
    pub fn new(key: PartitionKey, position: FetchPosition) -> Self {
        CachedPartition {
            key,
            position,
            high_watermark: -1,
            log_start_offset: -1,
        }
    }
}

/// What reading one partition produced: the fields that decide whether it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records_bytes: usize,
}

/// Whether an incremental response must list a partition (Kafka's `maybeUpdateResponseData`).
pub fn must_respond(cached: &CachedPartition, o: &Outcome) -> bool {
    o.records_bytes > 0
        || o.error_code != error_code::NONE
        || cached.high_watermark != o.high_watermark
        || cached.log_start_offset != o.log_start_offset
}

/// The session fields of a Fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestMeta {
    pub session_id: i32,
    pub epoch: i32,
    /// Fetch v13+: partitions are named by topic id.
    pub uses_topic_ids: bool,
}

impl RequestMeta {
    /// A request that cannot use sessions (Fetch v4-v6).
    pub fn sessionless() -> Self {
        RequestMeta {
            session_id: INVALID_SESSION_ID,
            epoch: FINAL_EPOCH,
            uses_topic_ids: false,
        }
    }
}

/// How to serve one Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// Full fetch without a session: answer every requested partition with `session_id = 0`.
    Sessionless,
    /// Full fetch opening a session: answer every requested partition, then
    /// [`FetchSessionCache::create`] with what was read.
    Full,
    /// Incremental fetch: read `partitions` (the session's, in its order), answer those for which
    /// [`must_respond`] holds, then [`FetchSessionCache::complete`].
    Incremental {
        session_id: i32,
        /// The session's epoch after this request (checked again on completion).
        epoch: i32,
        partitions: Vec<CachedPartition>,
    },
    /// The request fails with this top-level error, `session_id = 0` and no partitions.
    Error(i16),
}

/// The epoch that follows `epoch` (Kafka's `FetchMetadata.nextEpoch`).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    uses_topic_ids: bool,
    partitions: Vec<CachedPartition>,
    last_used_ms: u64,
}

impl Session {
    /// Applies an incremental request: listed partitions are added or updated, then forgotten
    /// ones removed.
    fn update(&mut self, updates: Vec<(PartitionKey, FetchPosition)>, forgotten: &[PartitionKey]) {
        let mut index: HashMap<PartitionKey, usize> = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key.clone(), i))
            .collect();
        for (key, position) in updates {
            match index.get(&key).and_then(|&i| self.partitions.get_mut(i)) {
                Some(p) => p.position = position,
                None => {
                    index.insert(key.clone(), self.partitions.len());
                    self.partitions.push(CachedPartition::new(key, position));
                }
            }
        }
        if !forgotten.is_empty() {
            self.partitions.retain(|p| !forgotten.contains(&p.key));
        }
    }
}

/// The broker's fetch sessions (see the module docs).
#[derive(Debug)]
pub struct FetchSessionCache {
    slots: usize,
    eviction_ms: u64,
    sessions: HashMap<i32, Session>,
}

impl FetchSessionCache {
    /// A cache of at most `slots` sessions; idle sessions become evictable after `eviction_ms`.
    pub fn new(slots: usize, eviction_ms: u64) -> Self {
        FetchSessionCache {
            slots,
            eviction_ms,
            sessions: HashMap::new(),
        }
    }

    /// Sessions in the cache.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Partitions of session `id` (None when there is no such session).
    pub fn partitions(&self, id: i32) -> Option<&[CachedPartition]> {
        self.sessions.get(&id).map(|s| s.partitions.as_slice())
    }

    /// Decides how to serve a request (table in the module docs). `updates` are the request's
    /// partitions in request order, `forgotten` its forgotten partitions.
    pub fn begin(
        &mut self,
        meta: RequestMeta,
        updates: Vec<(PartitionKey, FetchPosition)>,
        forgotten: &[PartitionKey],
        now_ms: u64,
    ) -> Context {
        if meta.epoch == INITIAL_EPOCH || meta.epoch == FINAL_EPOCH {
            // Any session named by a full fetch is closed.
            if meta.session_id != INVALID_SESSION_ID {
                self.sessions.remove(&meta.session_id);
            }
            return if meta.epoch == FINAL_EPOCH || self.slots == 0 {
                Context::Sessionless
            } else {
                Context::Full
            };
        }
        if meta.epoch < FINAL_EPOCH {
            return Context::Error(error_code::INVALID_FETCH_SESSION_EPOCH);
        }
        let Some(session) = self.sessions.get_mut(&meta.session_id) else {
            return Context::Error(error_code::FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.epoch != meta.epoch {
            return Context::Error(error_code::INVALID_FETCH_SESSION_EPOCH);
        }
        if session.uses_topic_ids != meta.uses_topic_ids {
            return Context::Error(FETCH_SESSION_TOPIC_ID_ERROR);
        }
        session.update(updates, forgotten);
        if session.partitions.is_empty() {
            // Nothing left to fetch: close the session and answer an empty full fetch.
            self.sessions.remove(&meta.session_id);
            return Context::Sessionless;
        }
        session.last_used_ms = now_ms;
        session.epoch = next_epoch(session.epoch);
        Context::Incremental {
            session_id: meta.session_id,
            epoch: session.epoch,
            partitions: session.partitions.clone(),
        }
    }

    /// Opens a session for a full fetch (context [`Context::Full`]) whose partitions, in request
    /// order, were answered with `outcomes`. Returns the new session id, or 0 when the cache is
    /// full and nothing may be evicted. `new_id` proposes random ids (0 and ids in use are
    /// skipped).
    pub fn create(
        &mut self,
        uses_topic_ids: bool,
        partitions: Vec<(PartitionKey, FetchPosition, Outcome)>,
        now_ms: u64,
        mut new_id: impl FnMut() -> i32,
    ) -> i32 {
        if self.slots == 0
            || (self.sessions.len() >= self.slots && !self.evict(partitions.len(), now_ms))
        {
            return INVALID_SESSION_ID;
        }
        let mut cached: Vec<CachedPartition> = Vec::with_capacity(partitions.len());
        let mut index: HashMap<PartitionKey, usize> = HashMap::with_capacity(partitions.len());
        for (key, position, o) in partitions {
            let p = CachedPartition {
                key: key.clone(),
                position,
                high_watermark: if o.error_code == error_code::NONE {
                    o.high_watermark
                } else {
                    -1
                },
                log_start_offset: o.log_start_offset,
            };
            // A partition listed twice keeps its place and the last request data.
            match index.get(&key).and_then(|&i| cached.get_mut(i)) {
                Some(slot) => *slot = p,
                None => {
                    index.insert(key, cached.len());
                    cached.push(p);
                }
            }
        }
        let id = loop {
            let id = new_id() & i32::MAX;
            if id != INVALID_SESSION_ID && !self.sessions.contains_key(&id) {
                break id;
            }
        };
        self.sessions.insert(
            id,
            Session {
                epoch: next_epoch(INITIAL_EPOCH),
                uses_topic_ids,
                partitions: cached,
                last_used_ms: now_ms,
            },
        );
        id
    }

    /// Makes room for a session of `size` partitions; false when no session may go.
    fn evict(&mut self, size: usize, now_ms: u64) -> bool {
        let lru = self
            .sessions
            .iter()
            .min_by_key(|(id, s)| (s.last_used_ms, **id))
            .map(|(id, s)| (*id, s.last_used_ms));
        let victim = match lru {
            None => return false,
            Some((id, used)) if now_ms.saturating_sub(used) > self.eviction_ms => Some(id),
            Some(_) => self
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.partitions.len(), s.last_used_ms, **id))
                .filter(|(_, s)| s.partitions.len() < size)
                .map(|(id, _)| *id),
        };
        match victim {
            Some(id) => {
                self.sessions.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Records what an incremental fetch answered: the high watermark and log start offset of
    /// every answered partition, and partitions with records move to the end of the order.
    /// `outcomes` are in the order of the context's `partitions`. Returns false when another
    /// request of the same session came in meanwhile (the response must then be
    /// INVALID_FETCH_SESSION_EPOCH); a session evicted meanwhile is no error.
    pub fn complete(
        &mut self,
        session_id: i32,
        epoch: i32,
        partitions: &[CachedPartition],
        outcomes: &[Outcome],
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return true;
        };
        if session.epoch != epoch {
            return false;
        }
        let mut quiet = Vec::with_capacity(partitions.len());
        let mut with_records = Vec::new();
        for (p, o) in partitions.iter().zip(outcomes) {
            let mut p = p.clone();
            if must_respond(&p, o) {
                p.high_watermark = if o.error_code == error_code::NONE {
                    o.high_watermark
                } else {
                    -1
                };
                p.log_start_offset = o.log_start_offset;
            }
            if o.records_bytes > 0 {
                with_records.push(p);
            } else {
                quiet.push(p);
            }
        }
        quiet.extend(with_records);
        session.partitions = quiet;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            topic_id: [0; 16],
            topic: topic.into(),
            partition,
        }
    }

    fn pos(offset: i64) -> FetchPosition {
        FetchPosition {
            fetch_offset: offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
        }
    }

    fn quiet(hw: i64) -> Outcome {
        Outcome {
            error_code: error_code::NONE,
            high_watermark: hw,
            log_start_offset: 0,
            records_bytes: 0,
        }
    }

    fn meta(session_id: i32, epoch: i32) -> RequestMeta {
        RequestMeta {
            session_id,
            epoch,
            uses_topic_ids: false,
        }
    }

    /// Opens a session over `a-0` and `a-1` (high watermark 10 each) and returns its id.
    fn open(cache: &mut FetchSessionCache, id: i32, now: u64) -> i32 {
        let updates = vec![(key("a", 0), pos(0)), (key("a", 1), pos(0))];
        assert_eq!(
            cache.begin(meta(0, INITIAL_EPOCH), updates.clone(), &[], now),
            Context::Full
        );
        let parts = updates
            .into_iter()
            .map(|(k, p)| (k, p, quiet(10)))
            .collect();
        cache.create(false, parts, now, || id)
    }

    fn incremental(ctx: Context) -> (i32, i32, Vec<CachedPartition>) {
        match ctx {
            Context::Incremental {
                session_id,
                epoch,
                partitions,
            } => (session_id, epoch, partitions),
            other => panic!("expected an incremental context, got {other:?}"),
        }
    }

    #[test]
    fn full_fetch_with_epoch_zero_opens_a_session_at_epoch_one() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        assert_eq!(id, 7);
        let (sid, epoch, parts) = incremental(c.begin(meta(7, 1), vec![], &[], 1));
        assert_eq!((sid, epoch), (7, 2));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].high_watermark, 10);
    }

    #[test]
    fn epoch_minus_one_is_sessionless_and_closes_the_named_session() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        assert_eq!(
            c.begin(meta(id, FINAL_EPOCH), vec![], &[], 1),
            Context::Sessionless
        );
        assert!(c.is_empty());
        assert_eq!(
            c.begin(meta(id, 1), vec![], &[], 2),
            Context::Error(error_code::FETCH_SESSION_ID_NOT_FOUND)
        );
    }

    #[test]
    fn full_fetch_naming_a_session_closes_it_and_opens_another() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        assert_eq!(
            c.begin(meta(id, INITIAL_EPOCH), vec![], &[], 1),
            Context::Full
        );
        assert!(c.is_empty());
    }

    #[test]
    fn unknown_session_and_wrong_epoch_are_refused() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        assert_eq!(
            c.begin(meta(99, 1), vec![], &[], 1),
            Context::Error(error_code::FETCH_SESSION_ID_NOT_FOUND)
        );
        assert_eq!(
            c.begin(meta(id, 2), vec![], &[], 1),
            Context::Error(error_code::INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            c.begin(meta(id, -5), vec![], &[], 1),
            Context::Error(error_code::INVALID_FETCH_SESSION_EPOCH)
        );
        // A refused request does not move the epoch.
        incremental(c.begin(meta(id, 1), vec![], &[], 1));
        // The same epoch again is now stale.
        assert_eq!(
            c.begin(meta(id, 1), vec![], &[], 1),
            Context::Error(error_code::INVALID_FETCH_SESSION_EPOCH)
        );
    }

    #[test]
    fn topic_id_use_must_match_the_session() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let m = RequestMeta {
            session_id: id,
            epoch: 1,
            uses_topic_ids: true,
        };
        assert_eq!(
            c.begin(m, vec![], &[], 1),
            Context::Error(FETCH_SESSION_TOPIC_ID_ERROR)
        );
    }

    #[test]
    fn incremental_request_updates_adds_and_forgets_partitions() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let (_, _, parts) = incremental(c.begin(
            meta(id, 1),
            vec![(key("a", 1), pos(5)), (key("b", 0), pos(3))],
            &[key("a", 0)],
            1,
        ));
        let got: Vec<(String, i32, i64, i64)> = parts
            .iter()
            .map(|p| {
                (
                    p.key.topic.clone(),
                    p.key.partition,
                    p.position.fetch_offset,
                    p.high_watermark,
                )
            })
            .collect();
        assert_eq!(got, vec![("a".into(), 1, 5, 10), ("b".into(), 0, 3, -1)]);
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let ctx = c.begin(meta(id, 1), vec![], &[key("a", 0), key("a", 1)], 1);
        assert_eq!(ctx, Context::Sessionless);
        assert!(c.is_empty());
    }

    #[test]
    fn only_partitions_with_news_are_answered_and_remembered() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let (sid, epoch, parts) = incremental(c.begin(meta(id, 1), vec![], &[], 1));
        // a-0: nothing new; a-1: high watermark moved.
        let outcomes = [quiet(10), quiet(12)];
        let answered: Vec<bool> = parts
            .iter()
            .zip(&outcomes)
            .map(|(p, o)| must_respond(p, o))
            .collect();
        assert_eq!(answered, vec![false, true]);
        assert!(c.complete(sid, epoch, &parts, &outcomes));
        // Next time a-1 at 12 is old news.
        let (_, _, parts) = incremental(c.begin(meta(id, 2), vec![], &[], 2));
        assert!(!must_respond(&parts[1], &quiet(12)));
        // Records and errors are always answered; log start moves are answered.
        let records = Outcome {
            records_bytes: 100,
            ..quiet(12)
        };
        let error = Outcome {
            error_code: error_code::OFFSET_OUT_OF_RANGE,
            ..quiet(12)
        };
        let moved = Outcome {
            log_start_offset: 4,
            ..quiet(12)
        };
        assert!(must_respond(&parts[1], &records));
        assert!(must_respond(&parts[1], &error));
        assert!(must_respond(&parts[1], &moved));
    }

    #[test]
    fn an_error_is_answered_again_once_it_clears() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let (sid, epoch, parts) = incremental(c.begin(meta(id, 1), vec![], &[], 1));
        let error = Outcome {
            error_code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
            ..quiet(10)
        };
        assert!(c.complete(sid, epoch, &parts, &[error, quiet(10)]));
        let (_, _, parts) = incremental(c.begin(meta(id, 2), vec![], &[], 2));
        assert_eq!(parts[0].high_watermark, -1);
        assert!(must_respond(&parts[0], &quiet(10)));
    }

    #[test]
    fn partitions_with_records_move_to_the_end() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let (sid, epoch, parts) = incremental(c.begin(meta(id, 1), vec![], &[], 1));
        let data = Outcome {
            records_bytes: 10,
            ..quiet(20)
        };
        assert!(c.complete(sid, epoch, &parts, &[data, quiet(10)]));
        let order: Vec<i32> = c
            .partitions(id)
            .unwrap_or_default()
            .iter()
            .map(|p| p.key.partition)
            .collect();
        assert_eq!(order, vec![1, 0]);
    }

    #[test]
    fn completion_after_a_newer_request_is_refused() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let id = open(&mut c, 7, 0);
        let (sid, epoch, parts) = incremental(c.begin(meta(id, 1), vec![], &[], 1));
        incremental(c.begin(meta(id, 2), vec![], &[], 1));
        assert!(!c.complete(sid, epoch, &parts, &[quiet(10), quiet(10)]));
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }

    #[test]
    fn ids_are_positive_unique_and_never_zero() {
        let mut c = FetchSessionCache::new(10, EVICTION_MS);
        let mut proposals = vec![5, 0, -5].into_iter();
        let a = c.create(false, vec![], 0, || proposals.next().unwrap_or(9));
        // 5 is taken now; 0 is never used; -5 masks to a positive id.
        let mut proposals = vec![5, 0, -5].into_iter();
        let b = c.create(false, vec![], 0, || proposals.next().unwrap_or(9));
        assert_eq!(a, 5);
        assert_eq!(b, -5 & i32::MAX);
    }

    #[test]
    fn a_full_cache_evicts_a_stale_session_first() {
        let mut c = FetchSessionCache::new(2, 1000);
        open(&mut c, 1, 0);
        open(&mut c, 2, 500);
        // Not stale yet and not larger: refused.
        assert_eq!(open(&mut c, 3, 900), INVALID_SESSION_ID);
        // Session 1 idle for more than 1000 ms: evicted.
        assert_eq!(open(&mut c, 3, 1500), 3);
        assert!(c.partitions(1).is_none());
        assert!(c.partitions(2).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_full_cache_evicts_a_smaller_session_for_a_larger_one() {
        let mut c = FetchSessionCache::new(1, EVICTION_MS);
        assert_eq!(open(&mut c, 1, 0), 1);
        let three: Vec<_> = (0..3).map(|p| (key("b", p), pos(0), quiet(0))).collect();
        assert_eq!(c.create(false, three.clone(), 10, || 2), 2);
        assert!(c.partitions(1).is_none());
        // An equal size does not evict.
        assert_eq!(c.create(false, three, 20, || 3), INVALID_SESSION_ID);
    }

    #[test]
    fn session_ids_name_their_shard() {
        for shards in [1usize, 2, 3, 8] {
            for shard in 0..shards {
                for r in [0, 1, 7, 12_345, i32::MAX, -1, i32::MIN] {
                    let id = session_id_on(r, shard, shards);
                    if id == INVALID_SESSION_ID {
                        continue;
                    }
                    assert!(id > 0, "{r} {shard}/{shards}");
                    assert_eq!(owner_shard(id, shards), Some(shard), "{r} {shard}/{shards}");
                }
            }
        }
        assert_eq!(owner_shard(INVALID_SESSION_ID, 4), None);
        assert_eq!(owner_shard(-3, 4), None);
        assert_eq!(slots_per_shard(1000, 3), 334);
        assert_eq!(slots_per_shard(0, 2), 0);
        assert_eq!(slots_per_shard(1, 2), 1);
    }

    #[test]
    fn zero_slots_means_no_sessions() {
        let mut c = FetchSessionCache::new(0, EVICTION_MS);
        assert_eq!(
            c.begin(meta(0, INITIAL_EPOCH), vec![], &[], 0),
            Context::Sessionless
        );
        assert_eq!(c.create(false, vec![], 0, || 1), INVALID_SESSION_ID);
    }
}
