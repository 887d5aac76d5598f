//! The committed generated code must be exactly what the generator produces from the specs.

use std::path::Path;

#[test]
fn committed_generated_code_matches_the_generator() {
    let spec_dir = kiln_kafka_codec_generator::default_spec_dir();
    if !spec_dir.is_dir() {
        println!(
            "skipped: spec directory {} is absent, cannot regenerate",
            spec_dir.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let n = kiln_kafka_codec_generator::generate_into(&spec_dir, tmp.path()).expect("generate");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    let mut names: Vec<String> = std::fs::read_dir(&committed)
        .expect("committed dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        n,
        "number of generated files differs from the committed set"
    );
    for name in names {
        let fresh = std::fs::read_to_string(tmp.path().join(&name))
            .unwrap_or_else(|_| panic!("{name}: committed but no longer generated"));
        let old = std::fs::read_to_string(committed.join(&name)).expect("read committed");
        assert!(
            fresh == old,
            "{name} differs from the generator's output; run `cargo run -p kiln-kafka-codec-generator`"
        );
    }
}
