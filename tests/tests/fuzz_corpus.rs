//! Replays every committed fuzz input through its target's body: the
//! corpora the fuzzers grew (`tests/fuzz/corpus/<target>.tar.gz`, one
//! archive per target, unpacked into a temporary directory here) and every
//! input that once crashed a target (`tests/fuzz/regressions/<target>/`,
//! kept forever as files). A fuzzing run itself is `scripts/fuzz.sh` (a
//! short one is part of `scripts/test.sh`).

use std::path::{Path, PathBuf};

type Body = fn(&[u8]);

const TARGETS: &[(&str, Body)] = &[
    ("sql", laminar_tests::fuzz::sql),
    ("csv", laminar_tests::fuzz::csv),
    ("json", laminar_tests::fuzz::json),
    ("scalars", laminar_tests::fuzz::scalars),
    ("wal", laminar_tests::fuzz::wal),
    ("manifest", laminar_tests::fuzz::manifest),
    ("tcp_framing", laminar_tests::fuzz::tcp_framing),
    ("config", laminar_tests::fuzz::config),
];

#[test]
fn every_committed_input_still_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let unpacked = tempfile::tempdir().expect("a temporary directory");
    let mut replayed = 0;
    for (target, body) in TARGETS {
        let mut seen = 0;
        let corpus = unpack(
            &root.join("corpus").join(format!("{target}.tar.gz")),
            unpacked.path(),
            target,
        );
        for dir in [corpus, root.join("regressions").join(target)] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = match std::fs::read(&path) {
                    Ok(d) => d,
                    Err(e) => panic!("reading {}: {e}", path.display()),
                };
                let outcome = std::panic::catch_unwind(|| body(&data));
                assert!(outcome.is_ok(), "{target}: {} fails again", path.display());
                seen += 1;
            }
        }
        assert!(seen > 0, "no corpus for {target}");
        replayed += seen;
    }
    eprintln!("replayed {replayed} inputs");
}

/// Unpacks a target's corpus archive into `into/<target>` with the
/// system's `tar` (as `scripts/fuzz.sh` does).
fn unpack(archive: &Path, into: &Path, target: &str) -> PathBuf {
    let dir = into.join(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    assert!(archive.exists(), "no corpus archive {}", archive.display());
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(&dir)
        .status()
        .expect("running tar");
    assert!(status.success(), "tar could not unpack {}", archive.display());
    dir
}
