//! What the end-to-end tests of `laminar run`, `check`, `explain`,
//! `state` and `bench` share (`cli.rs`, `state.rs`, `bench_cli.rs`): the
//! binary run in a fresh temporary directory, the bids and pipeline they
//! start from, and readers of its output. Each test file uses a part.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// Six bids in two 5-second tumbling windows, in event-time order.
pub const BIDS_CSV: &str = "\
auction,price,ts
1,100,2015-07-15 00:00:01
2,250,2015-07-15 00:00:02
1,120,2015-07-15 00:00:03
3,75,2015-07-15 00:00:06
1,300,2015-07-15 00:00:07
3,80,2015-07-15 00:00:09
";

/// A tumbling-window aggregate over `bids.csv` written to `out.csv`.
pub const PIPELINE_SQL: &str = "\
CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH (connector = 'file', path = 'bids.csv', format = 'csv', header = 'true');
CREATE STREAM totals AS
SELECT auction, COUNT(*) AS n, SUM(price) AS total, window_start
FROM TUMBLE(bids, ts, INTERVAL '5' SECOND)
GROUP BY auction, window_start, window_end;
CREATE SINK out FROM totals WITH (connector = 'file', path = 'out.csv', format = 'csv');
";

/// What `PIPELINE_SQL` writes to `out.csv` for `BIDS_CSV`.
pub const PIPELINE_OUT: &str = "\
auction,n,total,window_start
1,2,220,2015-07-15 00:00:00.000
2,1,250,2015-07-15 00:00:00.000
1,1,300,2015-07-15 00:00:05.000
3,2,155,2015-07-15 00:00:05.000
";

/// Runs the binary with `args` in `dir`, with logging at its default level.
/// Runs the binary under `timeout`, so a hang fails the test (exit 124)
/// instead of stalling the suite.
pub fn laminar(dir: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_laminar"))
        .args(args)
        .current_dir(dir)
        .env_remove("LAMINAR_LOG")
        .output()
        .expect("the laminar binary starts")
}

/// Writes `text` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent directory");
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A CSV sink file as header + sorted rows. Rows of different keys may be
/// written in any order across shards; the multiset is what is promised.
pub fn read_rows(dir: &Path, name: &str) -> String {
    sorted_rows(&read(dir, name))
}

pub fn sorted_rows(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.len() > 1 {
        lines[1..].sort_unstable();
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// A temporary directory holding `BIDS_CSV` as `bids.csv` and `sql` as `pipeline.sql`.
pub fn setup(sql: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "bids.csv", BIDS_CSV);
    write(dir.path(), "pipeline.sql", sql);
    dir
}

/// Asserts that a run succeeded, with both streams in the message if not.
pub fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "laminar failed with {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Asserts a clean failure: non-zero exit, nothing on stdout, no panic.
pub fn assert_failure(o: &Output) {
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr:\n{}",
        stderr(o)
    );
    assert_eq!(o.status.code(), Some(1), "exit code; stderr:\n{}", stderr(o));
    assert_eq!(stdout(o), "", "stdout must stay empty on failure");
    assert!(!stderr(o).contains("panicked"), "the binary panicked:\n{}", stderr(o));
}
