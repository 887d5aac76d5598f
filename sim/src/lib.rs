//! Kiln's deterministic simulator.
//!
//! One thread, one seed: a schedule of client requests, log appends, fsyncs, yields to the
//! engine's writer and syncer tasks, power failures ([`SimDisk::crash`]) and clean restarts,
//! driving the real state machines (the ZooKeeper state and its transaction log, the Kafka
//! partition log) through the real codecs on the simulated disk. Checkers run after every step
//! and every recovery; a failure names its seed and step, and `kiln-sim <zk|kafka> --seed N`
//! replays it exactly.
//!
//! | module | drives |
//! |---|---|
//! | [`zk`] | `ZkState`, `txnlog`, `visibility` on a `SegmentedLog<SimDisk>` |
//! | [`kafka`] | a partition's `SegmentedLog<SimDisk>` with acks=-1 / acks=1 produce and fetch |
//! | [`fle`] | 3 or 5 ZooKeeper servers' leader elections over a faulty simulated network |
//! | [`zab`] | 3 or 5 voters (and an observer) running ZAB's leader and learner machines with crashes and partitions |
//! | [`rng`] | SplitMix64, the only randomness |
//!
//! Single nodes today; the ensemble and the replicated partition plug in as more nodes on the
//! same disk, clock and a simulated network.
//!
//! [`SimDisk::crash`]: kiln_engine::disk::SimDisk::crash

pub mod fle;
pub mod kafka;
pub mod rng;
pub mod zab;
pub mod zk;

/// A checker's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub step: u32,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {} step {}: {}", self.seed, self.step, self.what)
    }
}

/// Runs one seed's schedule on a runtime of its own (the dead processes' leftover tasks die with
/// it); a runtime that cannot start is a failure of that seed.
pub(crate) fn run_seed<T>(
    seed: u64,
    schedule: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    kiln_engine::rt::block_on(schedule).map_err(|e| Failure {
        seed,
        step: 0,
        what: format!("runtime: {e}"),
    })?
}

/// Opens the log in `dir` on `disk` with a commit group of its own (a fresh process).
pub(crate) async fn open_log(
    disk: &kiln_engine::disk::SimDisk,
    dir: &str,
    config: kiln_engine::log::LogConfig,
) -> Result<kiln_engine::log::SegmentedLog<kiln_engine::disk::SimDisk>, String> {
    kiln_engine::log::SegmentedLog::open_with(
        kiln_engine::commit::CommitGroup::new(disk.clone()),
        dir,
        config,
    )
    .await
    .map_err(|e| format!("opening the log: {e}"))
}

/// The disk of the restarted machine: a copy of `disk` (tasks of the old process that are still
/// scheduled keep the old one and cannot touch it), with power lost first when `crash`.
pub(crate) fn restarted_disk(
    disk: &kiln_engine::disk::SimDisk,
    crash: bool,
    rng: &mut rng::Rng,
) -> kiln_engine::disk::SimDisk {
    let copy = disk.fork();
    if crash {
        copy.crash(&mut |n| rng.below(n));
    }
    copy
}

/// Folds `values` into a schedule digest (FNV-style): equal digests for equal schedules.
pub(crate) fn fold_trace(trace: &mut u64, values: &[u64]) {
    for v in values {
        *trace = (*trace ^ v).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Lets the runtime run other tasks (the engine's writer and syncer) `n` times.
pub(crate) async fn yield_now(n: u32) {
    for _ in 0..n {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }
}
