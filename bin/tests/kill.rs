//! The kill -9 harness: a pipeline over a large input is SIGKILLed at
//! random moments, again and again, each time restarted with the same
//! arguments on the same `--state-dir`; once it is let finish, every file
//! sink must hold exactly what an uninterrupted run wrote (compared after
//! sorting: shards interleave rows differently from run to run).
//!
//! Every other cycle takes its snapshots in forked processes
//! (`--fork-snapshot-mb 0`), so kills land while snapshot children run too.
//!
//! 20 kills by default; `LAMINAR_KILL_ITERATIONS=200` (or more) for a
//! soak, `LAMINAR_KILL_SEED` to replay a sequence of kill moments.
//!
//! A second harness changes the pipeline between kills: after a kill,
//! the restart runs a script that drops one stream and adds another
//! (`CHANGED_SQL`), and is killed again (up to 12 times, then let
//! finish), each restart on another shard count (2 -> 1 -> 4 -> 2 …): the unchanged streams'
//! sinks must equal the uninterrupted run's, the added stream's a run of
//! it alone over the input after the checkpoint it started from.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::Rng;

const SQL: &str = "\
CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'file', path = 'bids.csv', format = 'csv', header = 'true');
CREATE STREAM big AS SELECT auction, bidder, price * 2 AS doubled, ts FROM bids WHERE price % 3 <> 0;
CREATE STREAM totals AS
SELECT auction, COUNT(*) AS n, SUM(price) AS total, MAX(price) AS top, window_start
FROM TUMBLE(bids, ts, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
CREATE STREAM sessions AS
SELECT bidder, COUNT(*) AS n, window_start, window_end
FROM SESSION(bids, ts, INTERVAL '3' SECOND)
GROUP BY bidder, window_start, window_end;
CREATE SINK big_out FROM big WITH (connector = 'file', path = 'out/big.csv', format = 'csv');
CREATE SINK totals_out FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');
CREATE SINK sessions_out FROM sessions WITH (connector = 'file', path = 'out/sessions.json', format = 'json');
";

const SINKS: [&str; 3] = ["out/big.csv", "out/totals.csv", "out/sessions.json"];

/// `SQL` with `sessions` dropped, `peaks` added, statements reordered.
const CHANGED_SQL: &str = "\
CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'file', path = 'bids.csv', format = 'csv', header = 'true');
CREATE STREAM totals AS
SELECT auction, COUNT(*) AS n, SUM(price) AS total, MAX(price) AS top, window_start
FROM TUMBLE(bids, ts, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
-- added
CREATE STREAM peaks AS
SELECT bidder, MAX(price) AS top, window_start
FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '6' SECOND)
GROUP BY bidder, window_start, window_end;
CREATE STREAM big AS SELECT auction, bidder, price * 2 AS doubled, ts FROM bids WHERE price % 3 <> 0;
CREATE SINK totals_out FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');
CREATE SINK big_out FROM big WITH (connector = 'file', path = 'out/big.csv', format = 'csv');
CREATE SINK peaks_out FROM peaks WITH (connector = 'file', path = 'out/peaks.csv', format = 'csv');
";

/// `rows` bids, a little out of order in time, with a malformed line now
/// and then.
fn write_input(dir: &Path, rows: u64, rng: &mut Rng) {
    let mut text = String::from("auction,bidder,price,ts\n");
    // 01:00 on the day, so the jitter never reaches back to the day before.
    let base = 1_436_918_400_000i64 + 3_600_000;
    for i in 0..rows {
        let jitter = (rng.next() % 1500) as i64;
        let ts = base + i as i64 * 7 - jitter;
        let secs = ts.div_euclid(1000);
        let millis = ts.rem_euclid(1000);
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        text.push_str(&format!(
            "{},{},{},2015-07-15 {h:02}:{m:02}:{s:02}.{millis:03}\n",
            rng.next() % 500,
            rng.next() % 2000,
            rng.next() % 10_000
        ));
        if i % 50_000 == 49_999 {
            text.push_str("not,a,valid,row\n");
        }
    }
    std::fs::write(dir.join("bids.csv"), text).unwrap();
    std::fs::write(dir.join("q.sql"), SQL).unwrap();
}

/// `fork`: every snapshot is taken by a forked process (`--fork-snapshot-mb
/// 0`), so kills also land while snapshot children run.
fn laminar(dir: &Path, state: Option<&str>, fork: bool) -> Command {
    laminar_on(dir, state, fork, 2)
}

/// `laminar` on `shards` shards.
fn laminar_on(dir: &Path, state: Option<&str>, fork: bool, shards: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_laminar"));
    c.args(["run", "q.sql", "-q", "--shards", &shards.to_string()]);
    if let Some(state) = state {
        c.args(["--state-dir", state, "--checkpoint-interval-ms", "25"]);
        if fork {
            c.args(["--fork-snapshot-mb", "0"]);
        }
    }
    c.current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("LAMINAR_LOG");
    c
}

fn sorted(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let iterations: u64 = std::env::var("LAMINAR_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("LAMINAR_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), 600_000, &mut rng);

    // The uninterrupted run: the reference, and how long a run takes.
    let started = Instant::now();
    let out = laminar(dir.path(), None, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = started.elapsed();
    let reference: Vec<Vec<String>> = SINKS.iter().map(|s| sorted(&dir.path().join(s))).collect();
    assert!(reference[0].len() > 300_000 && reference[1].len() > 1000);
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();

    // Cycles: a fresh state directory, then kill after kill until a run
    // gets to finish; then the outputs must equal the reference.
    let (mut killed, mut cycles, mut attempts) = (0, 0, 0);
    while killed < iterations {
        cycles += 1;
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        loop {
            attempts += 1;
            assert!(attempts <= iterations * 20, "runs keep finishing before their kill");
            // Cycles alternate: snapshots copied on the shards, or forked.
            let mut child = laminar(dir.path(), Some("state"), cycles % 2 == 0).spawn().unwrap();
            // A moment anywhere in a run's length (a resumed run is
            // shorter, so it often finishes first: that ends the cycle).
            let after = Duration::from_micros(rng.next() % (took.as_micros() as u64 + 1));
            std::thread::sleep(after);
            // SAFETY: kill sends SIGKILL to our own child, which has not
            // been waited for yet, so its pid is still ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
            }
            let status = child.wait().unwrap();
            if status.success() {
                break;
            }
            killed += 1;
        }
        for (sink, expected) in SINKS.iter().zip(&reference) {
            let got = sorted(&dir.path().join(sink));
            assert!(
                got == *expected,
                "{sink}: {} lines against {} in the uninterrupted run (cycle {cycles}, seed {seed})",
                got.len(),
                expected.len()
            );
        }
    }
    eprintln!("{killed} kills over {cycles} cycles ({attempts} runs), every cycle's output equal to the reference");
}

/// Runs `q.sql` with `--state-dir state` and kills it after a random
/// moment of up to `took`; true when it was killed, false when it finished.
fn run_and_kill(dir: &Path, took: Duration, rng: &mut Rng, shards: usize) -> bool {
    let mut child = laminar_on(dir, Some("state"), false, shards).spawn().unwrap();
    std::thread::sleep(Duration::from_micros(rng.next() % (took.as_micros() as u64 + 1)));
    // SAFETY: kill sends SIGKILL to our own child, which has not been
    // waited for yet, so its pid is still ours.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    !child.wait().unwrap().success()
}

#[test]
fn sigkill_around_a_pipeline_change_and_shard_counts_keeps_streams_exact() {
    let seed: u64 = std::env::var("LAMINAR_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x2545_f491_4f6c_dd1d);
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), 300_000, &mut rng);
    let started = Instant::now();
    let out = laminar(dir.path(), None, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = started.elapsed();
    let reference: Vec<Vec<String>> = SINKS[..2].iter().map(|s| sorted(&dir.path().join(s))).collect();
    let mut changed = 0;
    for cycle in 0..3 {
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        std::fs::write(dir.path().join("q.sql"), SQL).unwrap();
        // Killed after its first checkpoint, under the old script.
        let mut tries = 0;
        while !(run_and_kill(dir.path(), took, &mut rng, 2) && dir.path().join("state/MANIFEST").exists()) {
            tries += 1;
            assert!(tries < 200, "no run was killed after a checkpoint");
            let _ = std::fs::remove_dir_all(dir.path().join("state"));
            let _ = std::fs::remove_dir_all(dir.path().join("out"));
        }
        let show = Command::new(env!("CARGO_BIN_EXE_laminar"))
            .args(["state", "show", "--json", "state"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        let offset: u64 = v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .sum();
        // The new script, killed again and again, each restart on another
        // shard count: 2 -> 1 -> 4 -> 2 -> 1 …; after `KILLS` kills (or
        // once one finishes first) a last restart runs to the end (each
        // restart moves the state, so a resumed run may never outlast a
        // kill moment on a loaded machine).
        const KILLS: usize = 12;
        std::fs::write(dir.path().join("q.sql"), CHANGED_SQL).unwrap();
        let mut kills = 0;
        while kills < KILLS && run_and_kill(dir.path(), took / 2, &mut rng, [1, 4, 2][kills % 3]) {
            kills += 1;
        }
        if kills == KILLS {
            let out = laminar_on(dir.path(), Some("state"), false, [1, 4, 2][kills % 3])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        changed += 1;
        for (sink, expected) in SINKS[..2].iter().zip(&reference) {
            let got = sorted(&dir.path().join(sink));
            assert!(
                got == *expected,
                "{sink}: {} lines against {} in the uninterrupted run (cycle {cycle}, seed {seed})",
                got.len(),
                expected.len()
            );
        }
        // The added stream: a run of it alone over the rest of the input.
        let tail = tempfile::tempdir().unwrap();
        let whole = std::fs::read(dir.path().join("bids.csv")).unwrap();
        let header = whole.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut part = whole[..header].to_vec();
        part.extend_from_slice(&whole[(offset as usize).max(header)..]);
        std::fs::write(tail.path().join("bids.csv"), part).unwrap();
        std::fs::write(tail.path().join("q.sql"), CHANGED_SQL).unwrap();
        let out = laminar(tail.path(), None, false).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            sorted(&dir.path().join("out/peaks.csv")),
            sorted(&tail.path().join("out/peaks.csv")),
            "the added stream differs from a run over the input after byte {offset} (cycle {cycle}, seed {seed})"
        );
        eprintln!("cycle {cycle}: changed at byte {offset}, then {kills} kills");
    }
    assert_eq!(changed, 3);
}
