//! A Kafka partition log under seeded schedules of produce requests (acks=-1, acks=1), fetches,
//! fsyncs, crashes and clean restarts.
//!
//! Driven for real: the engine's `SegmentedLog` on [`SimDisk`] with Kafka's default durability
//! (no periodic fsync; acks=-1 waits for the covering fsync, as the broker's produce path does),
//! record batches built and read by the engine's batch codec, recovery by reopening the log.
//!
//! Checkers:
//! - no acks=-1 record is lost; after recovery offsets are dense from 0 and every record is the
//!   one produced at that offset (the log is a prefix of what was appended, nothing garbled);
//! - a fetch returns exactly the records produced at those offsets;
//! - a clean restart loses nothing, not even acks=1 records.
//!
//! acks=1 records may be lost by a power failure on a single node (Kafka's contract relies on
//! replication for them); the report counts them.

use kiln_engine::batch::{BatchBuilder, Batches, Record};
use kiln_engine::commit::Durability;
use kiln_engine::disk::SimDisk;
use kiln_engine::log::{AppendOptions, LogConfig, SegmentedLog};

use crate::Failure;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaBug {
    /// acks=-1 is answered once the batch is written, before its fsync.
    AckBeforeFsync,
}

impl KafkaBug {
    pub fn parse(s: &str) -> Option<KafkaBug> {
        match s {
            "ack-before-fsync" => Some(KafkaBug::AckBeforeFsync),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KafkaOptions {
    pub steps: u32,
    pub bug: Option<KafkaBug>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            steps: 300,
            bug: None,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KafkaReport {
    pub records_acked_all: u64,
    pub records_acked_leader: u64,
    pub fetches: u64,
    pub crashes: u64,
    pub restarts: u64,
    /// acks=1 records a crash took back (allowed on one node; see the module docs).
    pub acks_one_lost: u64,
    pub trace: u64,
}

const LOG_DIR: &str = "/sim/kafka/t-0";

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 10,
        index_interval_bytes: 256,
        durability: Durability::KAFKA_DEFAULT,
        ..LogConfig::default()
    }
}

/// An acknowledgement waiting for the log: all records below `end` must be durable (acks=-1)
/// or written (acks=1).
struct Pending {
    end: u64,
    all: bool,
    records: u64,
}

struct Sim {
    rng: Rng,
    opts: KafkaOptions,
    seed: u64,
    step: u32,
    now_ms: i64,
    disk: SimDisk,
    log: SegmentedLog<SimDisk>,
    /// Every record appended in this timeline: its value, by offset.
    model: Vec<Vec<u8>>,
    pending: Vec<Pending>,
    /// Offsets below this were acknowledged with acks=-1.
    acked_all: u64,
    /// Offsets below this were acknowledged with acks=1.
    acked_leader: u64,
    report: KafkaReport,
}

pub fn run(seed: u64, opts: KafkaOptions) -> Result<KafkaReport, Failure> {
    crate::run_seed(seed, run_async(seed, opts))
}

async fn open(disk: &SimDisk) -> Result<SegmentedLog<SimDisk>, String> {
    crate::open_log(disk, LOG_DIR, log_config()).await
}

async fn run_async(seed: u64, opts: KafkaOptions) -> Result<KafkaReport, Failure> {
    let disk = SimDisk::new(1_000_000);
    let log = open(&disk).await.map_err(|what| Failure {
        seed,
        step: 0,
        what,
    })?;
    let mut sim = Sim {
        rng: Rng::new(seed),
        opts,
        seed,
        step: 0,
        now_ms: 1_000_000,
        disk,
        log,
        model: Vec::new(),
        pending: Vec::new(),
        acked_all: 0,
        acked_leader: 0,
        report: KafkaReport::default(),
    };
    for step in 1..=opts.steps {
        sim.step = step;
        sim.now_ms += 1 + sim.rng.below(5) as i64;
        let roll = sim.rng.below(100);
        let r = match roll {
            0..=44 => sim.produce(),
            45..=59 => sim.fetch().await,
            60..=74 => sim.wait_written().await,
            75..=86 => sim.sync().await,
            87..=93 => {
                crate::yield_now(1 + sim.rng.below(4) as u32).await;
                Ok(())
            }
            94..=97 => sim.restart(true).await,
            _ => sim.restart(false).await,
        };
        r.map_err(|what| sim.failure(what))?;
        sim.complete();
        let values = [roll, sim.log.log_end_offset(), sim.acked_all];
        crate::fold_trace(&mut sim.report.trace, &values);
    }
    sim.step += 1;
    sim.restart(true).await.map_err(|what| sim.failure(what))?;
    Ok(sim.report)
}

impl Sim {
    fn failure(&self, what: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            what,
        }
    }

    fn produce(&mut self) -> Result<(), String> {
        let n = 1 + self.rng.below(4);
        let size = self.rng.below(200) as usize;
        let base = self.model.len();
        let values: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut v = format!("s{}-r{}-", self.step, base as u64 + i).into_bytes();
                v.resize(v.len() + size, b'x');
                v
            })
            .collect();
        let mut b = BatchBuilder::new();
        for v in &values {
            b.push(Record {
                key: None,
                value: Some(v),
                headers: &[],
                timestamp: self.now_ms,
            })
            .map_err(|e| format!("building a batch: {e}"))?;
        }
        let batch = b.finish().map_err(|e| format!("building a batch: {e}"))?;
        let info = self
            .log
            .append_buffered(&batch, AppendOptions::default())
            .map_err(|e| format!("append: {e}"))?;
        if info.base_offset != base as u64 {
            return Err(format!(
                "append got base offset {}, expected {base}",
                info.base_offset
            ));
        }
        self.model.extend(values);
        let all = self.rng.chance(60);
        self.pending.push(Pending {
            end: info.last_offset + 1,
            all,
            records: n,
        });
        Ok(())
    }

    /// Acknowledges, in order, every pending produce whose condition holds.
    fn complete(&mut self) {
        let (durable, written) = (self.log.durable_offset(), self.log.written_offset());
        let early = self.opts.bug == Some(KafkaBug::AckBeforeFsync);
        while let Some(p) = self.pending.first() {
            let done = if p.all && !early {
                p.end <= durable
            } else {
                p.end <= written
            };
            if !done {
                break;
            }
            let p = self.pending.remove(0);
            if p.all {
                self.acked_all = self.acked_all.max(p.end);
                self.report.records_acked_all += p.records;
            } else {
                self.acked_leader = self.acked_leader.max(p.end);
                self.report.records_acked_leader += p.records;
            }
        }
    }

    async fn wait_written(&mut self) -> Result<(), String> {
        let end = self.log.log_end_offset();
        self.log
            .wait_written(end)
            .await
            .map_err(|e| format!("wait_written({end}): {e}"))
    }

    async fn sync(&mut self) -> Result<(), String> {
        let end = self.log.log_end_offset();
        self.log
            .wait_durable(end)
            .await
            .map_err(|e| format!("wait_durable({end}): {e}"))
    }

    async fn fetch(&mut self) -> Result<(), String> {
        let written = self.log.written_offset();
        if written == 0 {
            return Ok(());
        }
        let from = self.rng.below(written);
        let got = read_range(&self.log, from, written).await?;
        for (offset, value) in got {
            if self.model.get(offset as usize) != Some(&value) {
                return Err(format!(
                    "fetch at {offset} returned a record not produced there"
                ));
            }
        }
        self.report.fetches += 1;
        Ok(())
    }

    async fn restart(&mut self, crash: bool) -> Result<(), String> {
        if !crash {
            self.report.restarts += 1;
            self.sync().await?;
            self.complete();
        }
        if crash {
            self.report.crashes += 1;
        }
        let disk = crate::restarted_disk(&self.disk, crash, &mut self.rng);
        let log = open(&disk).await?;
        let end = log.log_end_offset();
        if end < self.acked_all {
            return Err(format!(
                "acks=-1 records lost: acknowledged below {}, recovered end {end}",
                self.acked_all
            ));
        }
        if !crash && end != self.model.len() as u64 {
            return Err(format!(
                "a clean restart recovered {end} of {} records",
                self.model.len()
            ));
        }
        if end > self.model.len() as u64 {
            return Err(format!(
                "recovered end {end} beyond the {} records produced",
                self.model.len()
            ));
        }
        let got = read_range(&log, 0, end).await?;
        if got.len() as u64 != end {
            return Err(format!("read {} records below the end {end}", got.len()));
        }
        for (i, (offset, value)) in got.into_iter().enumerate() {
            if offset != i as u64 {
                return Err(format!("offsets not dense: {offset} at position {i}"));
            }
            if self.model.get(i) != Some(&value) {
                return Err(format!("record {offset} differs from the one produced"));
            }
        }
        self.report.acks_one_lost += self.acked_leader.saturating_sub(end);
        self.model.truncate(end as usize);
        self.pending.clear();
        self.acked_leader = self.acked_leader.min(end);
        self.disk = disk;
        self.log = log;
        Ok(())
    }
}

/// Every record of `log` in `[from, to)`, with its offset.
async fn read_range(
    log: &SegmentedLog<SimDisk>,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let r = log
            .read(at, 1 << 20)
            .await
            .map_err(|e| format!("read at {at}: {e}"))?;
        if r.next_offset <= at {
            break;
        }
        for b in Batches::new(&r.records, true) {
            let b = b.map_err(|e| format!("batch at {at}: {e}"))?;
            for rec in b.records().map_err(|e| format!("records at {at}: {e}"))? {
                let rec = rec.map_err(|e| format!("record at {at}: {e}"))?;
                let offset = rec.offset as u64;
                if (from..to).contains(&offset) {
                    out.push((offset, rec.value.unwrap_or(&[]).to_vec()));
                }
            }
        }
        at = r.next_offset;
    }
    Ok(out)
}
