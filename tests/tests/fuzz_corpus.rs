//! Replays every committed fuzz input through its target's body: the
//! corpora the fuzzers grew (`tests/fuzz/corpus/<target>/`) and every input
//! that once crashed a target (`tests/fuzz/regressions/<target>/`, kept
//! forever). A fuzzing run itself is `scripts/fuzz.sh` (a short one is part
//! of `scripts/test.sh`).

use std::path::Path;

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
    let mut replayed = 0;
    for (target, body) in TARGETS {
        let mut seen = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = match std::fs::read(&path) {
                    Ok(d) => d,
                    // A fuzzer running on the corpus replaces inputs with
                    // smaller ones as it goes.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
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
