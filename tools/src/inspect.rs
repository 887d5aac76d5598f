//! `kiln inspect`: offline views of Kiln's on-disk files.
//!
//! `kiln inspect log <dir|file.log>` lists a log's segments and batches the way Kafka's
//! `kafka.tools.DumpLogSegments` does (same field names), checks every batch's CRC-32C, and with
//! `--indexes` also dumps the `.index` and `.timeindex` entries. It reads files with plain
//! blocking I/O and never modifies them. Exit status: 0 when everything is valid, 1 when a file
//! is corrupt (the message says where and why), 2 on usage or I/O errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_engine::batch::{BatchView, peek_offset_and_length};
use kiln_engine::log::{LOG_START_CHECKPOINT, RECOVERY_POINT, parse_segment_file_name};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// List the segments and record batches of a log directory (or one .log file).
    Log {
        /// A log directory (e.g. data/topic-0) or a segment file (00000000000000000000.log).
        path: PathBuf,
        /// Also dump the .index and .timeindex entries.
        #[arg(long)]
        indexes: bool,
    },
}

pub fn run(args: Args) -> ExitCode {
    match args.what {
        What::Log { path, indexes } => match inspect_log(&path, indexes, &mut std::io::stdout()) {
            Ok(Verdict::Valid) => ExitCode::SUCCESS,
            Ok(Verdict::Corrupt(n)) => {
                eprintln!(
                    "kiln inspect log: {n} corrupt file(s) under {}",
                    path.display()
                );
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("kiln inspect log: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    Corrupt(usize),
}

fn segment_files(path: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        return match parse_segment_file_name(name) {
            Some((base, "log")) => Ok(vec![(base, path.to_path_buf())]),
            _ => Err(format!(
                "{}: not a segment file (expected <20-digit base offset>.log)",
                path.display()
            )),
        };
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
        let name = entry.file_name();
        if let Some((base, "log")) = name.to_str().and_then(parse_segment_file_name) {
            out.push((base, entry.path()));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(format!("{}: no .log segment files", path.display()));
    }
    Ok(out)
}

fn inspect_log(
    path: &Path,
    indexes: bool,
    out: &mut dyn std::io::Write,
) -> Result<Verdict, String> {
    let w = |out: &mut dyn std::io::Write, s: String| {
        writeln!(out, "{s}").map_err(|e| format!("writing output: {e}"))
    };
    let segments = segment_files(path)?;
    if path.is_dir()
        && let Ok(cp) = std::fs::read_to_string(path.join(LOG_START_CHECKPOINT))
    {
        w(
            out,
            format!(
                "Log start offset checkpoint: {}",
                cp.lines().nth(1).unwrap_or("?")
            ),
        )?;
    }
    let recovery_point = if path.is_dir() {
        std::fs::read_to_string(path.join(RECOVERY_POINT))
            .ok()
            .and_then(|t| t.lines().nth(1).and_then(|n| n.parse::<u64>().ok()))
    } else {
        None
    };
    if let Some(rp) = recovery_point {
        w(
            out,
            format!("Recovery point: {rp} (every offset below it was made durable)"),
        )?;
    }
    let mut corrupt = 0;
    let mut expected_next: Option<u64> = None;
    for (base, file) in &segments {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        w(out, format!("Dumping {}", file.display()))?;
        w(out, format!("Log starting offset: {base}"))?;
        if let Some(next) = expected_next
            && next != *base
        {
            w(
                out,
                format!(
                    "WARNING: segment starts at {base}, previous segment ended at {next} (gap)"
                ),
            )?;
        }
        let mut pos = 0usize;
        let mut batches = 0u64;
        let mut problem: Option<String> = None;
        while pos < bytes.len() {
            let rest = bytes.get(pos..).unwrap_or(&[]);
            let view = match BatchView::parse_header_at(rest, pos) {
                Ok(v) => v,
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            };
            let valid = view.crc_valid();
            let last_seq = if view.base_sequence() < 0 {
                -1
            } else {
                i64::from(view.base_sequence()) + i64::from(view.last_offset_delta())
            };
            let ts_kind = if view.is_log_append_time() {
                "LogAppendTime"
            } else {
                "CreateTime"
            };
            w(
                out,
                format!(
                    "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {last_seq} \
                     producerId: {} producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} \
                     isControl: {} position: {pos} {ts_kind}: {} size: {} magic: {} compresscodec: {} \
                     crc: {} isvalid: {valid}",
                    view.base_offset(),
                    view.last_offset(),
                    view.records_count(),
                    view.base_sequence(),
                    view.producer_id(),
                    view.producer_epoch(),
                    view.partition_leader_epoch(),
                    view.is_transactional(),
                    view.is_control(),
                    view.max_timestamp(),
                    view.size(),
                    view.magic(),
                    view.compression().name(),
                    view.crc(),
                ),
            )?;
            if !valid {
                problem = Some(format!(
                    "batch at byte {pos}: CRC mismatch (stored {:#010x}, computed {:#010x})",
                    view.crc(),
                    view.compute_crc()
                ));
                break;
            }
            expected_next = Some(view.last_offset() as u64 + 1);
            batches += 1;
            pos += view.size();
        }
        let tail = bytes.get(pos..).unwrap_or(&[]);
        match problem {
            // Zeros written ahead of the writes (a ZooKeeper transaction log's padding, blocks
            // allocated ahead of direct writes), or left by a kill before they were cut.
            Some(_) if tail.iter().all(|&b| b == 0) => w(
                out,
                format!(
                    "{batches} batches, {pos} bytes, all valid; then {} bytes of zero padding \
                     (written ahead of the writes; cut when the segment is rolled or the log \
                     closed or recovered)",
                    tail.len()
                ),
            )?,
            Some(reason) => {
                corrupt += 1;
                let next_hint = peek_offset_and_length(bytes.get(pos..).unwrap_or(&[]))
                    .map(|(o, l)| format!(" (header there claims offset {o}, length {l})"))
                    .unwrap_or_default();
                let at_offset = expected_next.unwrap_or(*base);
                let verdict = match recovery_point {
                    Some(rp) if at_offset < rp => format!(
                        "offset {at_offset} is below the recovery point {rp}: this is damage, not a \
                         torn write, and Kiln refuses to open the log"
                    ),
                    _ => "Kiln cuts them on recovery if this is the last segment or they lie \
                          above the recovery point"
                        .to_string(),
                };
                w(
                    out,
                    format!(
                        "CORRUPT {}: {reason}{next_hint}; {} bytes from byte {pos} to the end \
                         ({} bytes) are not valid batches; {verdict}",
                        file.display(),
                        bytes.len() - pos,
                        bytes.len()
                    ),
                )?;
            }
            None => w(
                out,
                format!("{batches} batches, {} bytes, all valid", bytes.len()),
            )?,
        }
        if indexes {
            dump_indexes(*base, file, out)?;
        }
    }
    Ok(if corrupt == 0 {
        Verdict::Valid
    } else {
        Verdict::Corrupt(corrupt)
    })
}

fn dump_indexes(base: u64, log: &Path, out: &mut dyn std::io::Write) -> Result<(), String> {
    let w = |out: &mut dyn std::io::Write, s: String| {
        writeln!(out, "{s}").map_err(|e| format!("writing output: {e}"))
    };
    let index = log.with_extension("index");
    match std::fs::read(&index) {
        Ok(b) => {
            w(out, format!("Dumping {}", index.display()))?;
            if !b.len().is_multiple_of(8) {
                w(
                    out,
                    format!(
                        "CORRUPT {}: size {} is not a multiple of 8",
                        index.display(),
                        b.len()
                    ),
                )?;
            }
            for e in b.chunks_exact(8) {
                let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                w(
                    out,
                    format!("offset: {} position: {pos}", base + u64::from(rel)),
                )?;
            }
        }
        Err(e) => w(out, format!("{}: {e}", index.display()))?,
    }
    let time = log.with_extension("timeindex");
    match std::fs::read(&time) {
        Ok(b) => {
            w(out, format!("Dumping {}", time.display()))?;
            if !b.len().is_multiple_of(12) {
                w(
                    out,
                    format!(
                        "CORRUPT {}: size {} is not a multiple of 12",
                        time.display(),
                        b.len()
                    ),
                )?;
            }
            for e in b.chunks_exact(12) {
                let ts = i64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
                w(
                    out,
                    format!("timestamp: {ts} offset: {}", base + u64::from(rel)),
                )?;
            }
        }
        Err(e) => w(out, format!("{}: {e}", time.display()))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::batch::single_record;
    use kiln_engine::commit::Durability;
    use kiln_engine::log::{LogConfig, SegmentedLog, segment_file_name};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-inspect-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lists_batches_and_reports_corruption() {
        let dir = temp_dir("log");
        let d2 = dir.clone();
        kiln_engine::rt::block_on(async move {
            let cfg = LogConfig {
                durability: Durability::Durable,
                ..Default::default()
            };
            let log = SegmentedLog::open(&d2, cfg).await.unwrap();
            for i in 0..3i64 {
                log.append(&single_record(None, Some(b"hello"), 1000 + i).unwrap())
                    .await
                    .unwrap();
            }
        })
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(inspect_log(&dir, true, &mut out).unwrap(), Verdict::Valid);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("baseOffset: 2 lastOffset: 2 count: 1"),
            "{text}"
        );
        assert!(text.contains("isvalid: true"));
        assert!(text.contains("3 batches"), "{text}");

        // Zeros after the last batch (written ahead of the writes) are padding, not corruption.
        let seg = dir.join(segment_file_name(0, "log"));
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 10_000, 0);
        std::fs::write(&seg, &padded).unwrap();
        let mut out = Vec::new();
        assert_eq!(inspect_log(&dir, false, &mut out).unwrap(), Verdict::Valid);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("then 10000 bytes of zero padding"), "{text}");
        assert!(!text.contains("CORRUPT"), "{text}");

        // Flip a byte inside the second batch's records.
        let second = BatchView::parse(&bytes).unwrap().size() + 70;
        bytes[second] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            inspect_log(&dir, false, &mut out).unwrap(),
            Verdict::Corrupt(1)
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("isvalid: false") && text.contains("CORRUPT"),
            "{text}"
        );
        assert!(inspect_log(&dir.join("missing"), false, &mut Vec::new()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damage_below_the_recovery_point_is_named_as_such() {
        let dir = temp_dir("rp");
        let d2 = dir.clone();
        kiln_engine::rt::block_on(async move {
            let cfg = LogConfig {
                durability: Durability::Durable,
                ..Default::default()
            };
            let log = SegmentedLog::open(&d2, cfg).await.unwrap();
            for i in 0..3i64 {
                log.append(&single_record(None, Some(b"hello"), 1000 + i).unwrap())
                    .await
                    .unwrap();
            }
            log.close().await.unwrap();
        })
        .unwrap();
        let seg = dir.join(segment_file_name(0, "log"));
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.len() - 8;
        bytes[at] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            inspect_log(&dir, false, &mut out).unwrap(),
            Verdict::Corrupt(1)
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Recovery point: 3"), "{text}");
        assert!(
            text.contains("offset 2 is below the recovery point 3"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
