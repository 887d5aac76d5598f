//! Writes a seed corpus for the `decode_request` fuzz target: one valid request and one
//! valid response body per API and version, in the target's input layout
//! (`[api_key, version + 2, body...]`).
//!
//! `cargo run -p kiln-kafka-codec --example fuzz_seeds -- kafka/codec/fuzz/corpus/decode_request`

use kiln_kafka_codec::{ApiKey, RequestBody, ResponseBody, Sampler};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds <corpus dir>");
        return ExitCode::FAILURE;
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut n = 0;
    for &key in ApiKey::ALL {
        for v in key.min_version()..=key.max_version() {
            for seed in 0..2u64 {
                let mut s = Sampler::new(seed);
                let mut req = Vec::new();
                let mut resp = Vec::new();
                let ok = RequestBody::sample(key, v, &mut s)
                    .encode(&mut req, v)
                    .is_ok()
                    && ResponseBody::sample(key, v, &mut s)
                        .encode(&mut resp, v)
                        .is_ok();
                if !ok {
                    eprintln!("{key:?} v{v}: sample did not encode");
                    return ExitCode::FAILURE;
                }
                for (kind, body) in [("req", req), ("resp", resp)] {
                    let mut input = vec![key.key() as u8, (v + 2) as u8];
                    input.extend_from_slice(&body);
                    let p = dir.join(format!("{}-v{v}-{kind}-{seed}", key.name()));
                    if let Err(e) = std::fs::write(&p, input) {
                        eprintln!("{}: {e}", p.display());
                        return ExitCode::FAILURE;
                    }
                    n += 1;
                }
            }
        }
    }
    println!("wrote {n} seeds to {}", dir.display());
    ExitCode::SUCCESS
}
