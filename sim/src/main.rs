//! `kiln-sim`: runs the deterministic simulator over a range of seeds, or replays one.
//!
//! ```text
//! kiln-sim all --seeds 10000            # seeds 0..10000 of every target
//! kiln-sim fle --seeds 500 --bug fle-ignore-epoch   # leader election, an injected defect
//! kiln-sim zab --seeds 1000 --bug commit-without-quorum   # the ensemble's broadcast protocol
//! kiln-sim zk --seed 4711               # replay one seed
//! kiln-sim zk --seeds 100 --bug ack-before-fsync   # show that the checkers catch a defect
//! ```
//! Exit status 0 when every seed passed, 1 when a checker failed (the seed is printed), 2 on
//! bad arguments.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use kiln_sim::fle::{self, FleBug, FleOptions};
use kiln_sim::kafka::{self, KafkaBug, KafkaOptions};
use kiln_sim::zab::{self, ZabBug, ZabOptions};
use kiln_sim::zk::{self, ZkBug, ZkOptions};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Target {
    Zk,
    Kafka,
    Fle,
    Zab,
    All,
}

#[derive(Parser)]
#[command(name = "kiln-sim", about = "Kiln's deterministic simulator")]
struct Args {
    /// Which server's schedules to run.
    target: Target,
    /// Replay exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Number of seeds to run (from --from).
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Steps per seed.
    #[arg(long, default_value_t = 300)]
    steps: u32,
    /// Network steps per seed of the ensemble (zab) simulation (each a few simulated ms).
    #[arg(long, default_value_t = 2000)]
    zab_steps: u32,
    /// Inject a defect (zk: ack-before-fsync, no-read-gate, speculative-reply-zxid;
    /// kafka: ack-before-fsync; fle: fle-ignore-epoch; zab: zab-ack-before-fsync,
    /// commit-without-quorum, election-ignores-history) to see the checkers catch it.
    #[arg(long)]
    bug: Option<String>,
}

const OPERATIONS: [&str; 3] = ["acknowledged operations", "crashes", "unacknowledged lost"];

fn main() -> ExitCode {
    let args = Args::parse();
    // With --bug, each server whose simulator knows that defect runs with it, the others not.
    let bug = args.bug.as_deref();
    let zk_bug = bug.and_then(ZkBug::parse);
    let kafka_bug = bug.and_then(KafkaBug::parse);
    let fle_bug = bug.and_then(FleBug::parse);
    let zab_bug = bug.and_then(ZabBug::parse);
    let wanted = |t: Target| args.target == t || args.target == Target::All;
    let run_zk = wanted(Target::Zk) && (bug.is_none() || zk_bug.is_some());
    let run_kafka = wanted(Target::Kafka) && (bug.is_none() || kafka_bug.is_some());
    let run_fle = wanted(Target::Fle) && (bug.is_none() || fle_bug.is_some());
    let run_zab = wanted(Target::Zab) && (bug.is_none() || zab_bug.is_some());
    if !run_zk && !run_kafka && !run_fle && !run_zab {
        eprintln!(
            "kiln-sim: unknown bug {:?} for this target",
            bug.unwrap_or("")
        );
        return ExitCode::from(2);
    }
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.from..args.from.saturating_add(args.seeds)).collect(),
    };
    let mut failed = false;
    if run_zk {
        let opts = ZkOptions {
            steps: args.steps,
            bug: zk_bug,
        };
        failed |= !run("zk", OPERATIONS, &seeds, |s| {
            zk::run(s, opts).map(|r| {
                (
                    r.writes_acked + r.reads_delivered,
                    r.crashes,
                    r.txns_lost_unacknowledged,
                )
            })
        });
    }
    if run_kafka {
        let opts = KafkaOptions {
            steps: args.steps,
            bug: kafka_bug,
        };
        failed |= !run("kafka", OPERATIONS, &seeds, |s| {
            kafka::run(s, opts).map(|r| {
                (
                    r.records_acked_all + r.records_acked_leader,
                    r.crashes,
                    r.acks_one_lost,
                )
            })
        });
    }
    if run_fle {
        let opts = FleOptions { bug: fle_bug };
        failed |= !run("fle", ["decisions", "crashes", "partitions"], &seeds, |s| {
            fle::run(s, opts).map(|r| (r.decisions, r.crashes, r.partitions))
        });
    }
    if run_zab {
        let opts = ZabOptions {
            steps: args.zab_steps,
            bug: zab_bug,
        };
        failed |= !run(
            "zab",
            ["acknowledged writes", "crashes", "partitions"],
            &seeds,
            |s| zab::run(s, opts).map(|r| (r.writes_acked, r.crashes, r.partitions)),
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `one` for every seed; prints a summary line. Stops at the first failure.
fn run(
    name: &str,
    labels: [&str; 3],
    seeds: &[u64],
    one: impl Fn(u64) -> Result<(u64, u64, u64), kiln_sim::Failure>,
) -> bool {
    let t0 = Instant::now();
    let (mut acked, mut crashes, mut lost) = (0u64, 0u64, 0u64);
    for &seed in seeds {
        match one(seed) {
            Ok((a, c, l)) => {
                acked += a;
                crashes += c;
                lost += l;
            }
            Err(f) => {
                println!("{name}: FAILED {f}");
                println!("{name}: replay with: kiln-sim {name} --seed {}", f.seed);
                return false;
            }
        }
    }
    println!(
        "{name}: {} seeds passed in {:.1} s ({acked} {}, {crashes} {}, {lost} {})",
        seeds.len(),
        t0.elapsed().as_secs_f64(),
        labels[0],
        labels[1],
        labels[2],
    );
    true
}
