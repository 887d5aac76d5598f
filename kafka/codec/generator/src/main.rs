//! `kiln-kafka-codec-generator [SPEC_DIR] [OUT_DIR]`: regenerates the Kafka message codec.
//!
//! Defaults: `SPEC_DIR` = `../shared/specs/kafka-4.1` relative to the repository root,
//! `OUT_DIR` = `kafka/codec/src/generated`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let spec_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(kiln_kafka_codec_generator::default_spec_dir);
    let out_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(kiln_kafka_codec_generator::default_out_dir);
    match kiln_kafka_codec_generator::generate_into(&spec_dir, &out_dir) {
        Ok(n) => {
            println!("wrote {n} files to {}", out_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
