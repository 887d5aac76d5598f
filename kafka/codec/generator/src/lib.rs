//! Generates Kiln's Kafka message codec (`kiln-kafka-codec/src/generated`) from Kafka's
//! JSON message specs.
//!
//! The generator reads every `*.json` spec in a directory (the files carry `//` comments,
//! which are stripped first), emits one Rust module per message plus a `mod.rs` with the
//! `ApiKey` enum and the `RequestBody`/`ResponseBody` dispatchers, and formats the result
//! with `rustfmt` so the committed files are byte-for-byte what the generator produces.

pub mod emit;
pub mod spec;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why generation failed.
#[derive(Debug)]
pub enum Error {
    Io(PathBuf, std::io::Error),
    Spec(PathBuf, spec::SpecError),
    Rustfmt(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Error::Spec(p, e) => write!(f, "{}: {e}", p.display()),
            Error::Rustfmt(e) => write!(f, "rustfmt: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The repository root, known at compile time.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The default spec directory: `../shared/specs/kafka-4.1` relative to the repository root.
pub fn default_spec_dir() -> PathBuf {
    repo_root().join("../shared/specs/kafka-4.1")
}

/// The directory the generated code is committed in.
pub fn default_out_dir() -> PathBuf {
    repo_root().join("kafka/codec/src/generated")
}

/// Parses every spec in `spec_dir`, sorted by file name.
pub fn load_specs(spec_dir: &Path) -> Result<Vec<spec::Message>, Error> {
    let rd = std::fs::read_dir(spec_dir).map_err(|e| Error::Io(spec_dir.to_path_buf(), e))?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::Io(spec_dir.to_path_buf(), e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") {
            paths.push(p);
        }
    }
    paths.sort();
    let mut msgs = Vec::new();
    for p in paths {
        let src = std::fs::read_to_string(&p).map_err(|e| Error::Io(p.clone(), e))?;
        msgs.push(spec::parse_message(&src).map_err(|e| Error::Spec(p.clone(), e))?);
    }
    Ok(msgs)
}

/// Generates every file (name -> formatted source).
pub fn generate(spec_dir: &Path) -> Result<BTreeMap<String, String>, Error> {
    let msgs = load_specs(spec_dir)?;
    let mut raw = Vec::new();
    for m in &msgs {
        let src = emit::gen_message(m).map_err(|e| Error::Spec(spec_dir.join(&m.name), e))?;
        raw.push((format!("{}.rs", emit::module_name(m)), src));
    }
    let m = emit::gen_mod(&msgs).map_err(|e| Error::Spec(spec_dir.to_path_buf(), e))?;
    raw.push(("mod.rs".to_string(), m));
    // rustfmt runs once per file; a few at a time.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let per = raw.len().div_ceil(workers).max(1);
    let results: Vec<Result<Vec<(String, String)>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = raw
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(name, src)| Ok((name.clone(), format(src)?)))
                        .collect::<Result<Vec<_>, Error>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Rustfmt("formatter thread panicked".into())))
            })
            .collect()
    });
    let mut files = BTreeMap::new();
    for r in results {
        files.extend(r?);
    }
    Ok(files)
}

/// Writes the generated files into `out_dir`, removing stale `.rs` files there.
pub fn generate_into(spec_dir: &Path, out_dir: &Path) -> Result<usize, Error> {
    let files = generate(spec_dir)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io(out_dir.to_path_buf(), e))?;
    let rd = std::fs::read_dir(out_dir).map_err(|e| Error::Io(out_dir.to_path_buf(), e))?;
    for entry in rd.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if p.extension().is_some_and(|e| e == "rs") && !files.contains_key(&name) {
            std::fs::remove_file(&p).map_err(|e| Error::Io(p.clone(), e))?;
        }
    }
    for (name, src) in &files {
        let p = out_dir.join(name);
        std::fs::write(&p, src).map_err(|e| Error::Io(p.clone(), e))?;
    }
    Ok(files.len())
}

/// Formats Rust source with the repository's rustfmt configuration.
pub fn format(src: &str) -> Result<String, Error> {
    let mut child = Command::new(std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".into()))
        .args(["--edition", "2024", "--emit", "stdout", "--config-path"])
        .arg(repo_root().join("rustfmt.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Rustfmt(format!("cannot run rustfmt: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Rustfmt("no stdin".into()))?;
    let input = src.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Rustfmt(e.to_string()))?;
    writer
        .join()
        .map_err(|_| Error::Rustfmt("writer thread panicked".into()))?
        .map_err(|e| Error::Rustfmt(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::Rustfmt(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Rustfmt(e.to_string()))
}
