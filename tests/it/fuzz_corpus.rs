//! Replays the fuzzers' committed corpus (`fuzz/corpus/TARGET/`) through the
//! same checks the fuzz targets make, so `cargo test` keeps every input a
//! fuzzer found interesting from regressing. Fuzzing itself needs
//! `cargo fuzz` (see fuzz/README.md).
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        inputs += 1;
    }
    assert!(inputs > 0, "{} is empty", dir.display());
}

#[test]
fn bearer_corpus() {
    replay("bearer", checks::bearer);
}

#[test]
fn token_corpus() {
    replay("token", checks::token);
}

#[test]
fn path_corpus() {
    replay("path", checks::path);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}
