//! A restart with changed SQL on the same state directory: a durable run
//! is crashed (an injected fault at a durable step) part way through its
//! input, then started again with a script that keeps some streams (its
//! statements reordered and commented), drops one and adds one. The kept
//! streams' sinks must equal an uninterrupted run's; the added stream's
//! sink must equal a run of that stream alone over the input after the
//! checkpoint's position; the dropped stream's state is gone; on the
//! same shard count and on another (2 -> 1, 1 -> 3). A changed
//! stream is refused, and with `--reset` it goes on empty: its sink holds
//! the old definition's rows up to the checkpoint and the new one's
//! after it.

use std::path::Path;
use std::time::Duration;

use laminar_persistence::Faults;
use laminar_reactor::checkpoint::Durability;
use laminar_tests::{normalize, run_sql, run_sql_durable, RunFailure};

const ROWS: u64 = 6_000;

const SOURCE: &str = "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH (connector = 'file', path = '{dir}/INPUT', format = 'csv', header = 'true');";

const FILTERED: &str = "CREATE STREAM filtered AS SELECT auction, price FROM bids WHERE price > 900;
CREATE SINK filtered_out FROM filtered WITH (connector = 'file', path = '{dir}/filtered.csv', format = 'csv');";

const COUNTS: &str = "CREATE STREAM counts AS
SELECT auction, COUNT(*) AS n, SUM(price) AS total, window_start
FROM TUMBLE(bids, ts, INTERVAL '1' SECOND) GROUP BY auction, window_start, window_end;
CREATE SINK counts_out FROM counts WITH (connector = 'file', path = '{dir}/counts.csv', format = 'csv');";

const SESSIONS: &str = "CREATE STREAM sessions AS
SELECT auction, COUNT(*) AS n, window_start, window_end
FROM SESSION(bids, ts, INTERVAL '200' MILLISECOND) GROUP BY auction, window_start, window_end;
CREATE SINK sessions_out FROM sessions WITH (connector = 'file', path = '{dir}/sessions.csv', format = 'csv');";

const ADDED: &str = "CREATE STREAM peaks AS
SELECT auction, MAX(price) AS top, window_start
FROM HOP(bids, ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND) GROUP BY auction, window_start, window_end;
CREATE SINK peaks_out FROM peaks WITH (connector = 'file', path = '{dir}/peaks.csv', format = 'csv');";

fn script(input: &str, parts: &[&str]) -> String {
    let mut s = SOURCE.replace("INPUT", input);
    for p in parts {
        s.push('\n');
        s.push_str(p);
    }
    s
}

/// The script before the change.
fn before() -> String {
    script("bids.csv", &[FILTERED, COUNTS, SESSIONS])
}

/// After: `counts` before `filtered`, comments and other layout, no
/// `sessions`, a new `peaks`.
fn after() -> String {
    let counts = COUNTS.replace("SELECT auction,", "-- per second\nselect   auction,\n   ");
    script("bids.csv", &[&counts, "/* unchanged */", FILTERED, ADDED])
}

/// `ROWS` bids in event-time order (so a stream started part way sees
/// what a run over the rest of the file sees).
fn write_input(dir: &Path) {
    let mut text = String::from("auction,price,ts\n");
    let base = 1_436_918_400_000i64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..ROWS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = base + i as i64 * 3;
        let secs = ts.div_euclid(1000);
        text.push_str(&format!(
            "{},{},2015-07-15 {:02}:{:02}:{:02}.{:03}\n",
            x % 20,
            (x >> 8) % 1000,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            ts.rem_euclid(1000)
        ));
    }
    std::fs::write(dir.join("bids.csv"), text).unwrap();
}

fn durability(state: &Path, faults: Faults, resets: &[&str]) -> Option<Durability> {
    Some(Durability {
        state_dir: state.to_path_buf(),
        interval: Duration::from_millis(1),
        every_rows: Some(ROWS / 6),
        fork_bytes_min: None,
        faults,
        resets: resets.iter().map(|r| r.to_string()).collect(),
    })
}

fn rows(dir: &Path, name: &str) -> String {
    normalize(&std::fs::read_to_string(dir.join(name)).unwrap_or_default(), false)
}

/// The checkpoint's byte offset in `bids.csv` (0 without a checkpoint).
fn checkpointed_offset(state: &Path) -> u64 {
    match laminar_persistence::manifest::read(state).unwrap() {
        Some(m) => m.sources.iter().filter(|p| p.name == "bids").map(|p| p.offset).sum(),
        None => 0,
    }
}

/// Writes `name`: the header and the input's bytes in `range`.
fn write_part(dir: &Path, name: &str, range: std::ops::Range<usize>) {
    let whole = std::fs::read(dir.join("bids.csv")).unwrap();
    let header_end = whole.iter().position(|&b| b == b'\n').unwrap() + 1;
    let start = range.start.max(header_end);
    let mut part = whole[..header_end].to_vec();
    part.extend_from_slice(&whole[start..range.end.min(whole.len())]);
    std::fs::write(dir.join(name), part).unwrap();
}

/// Runs the durable pipeline until the `crash_at`-th durable step.
fn crash(sql: &str, dir: &Path, shards: usize, crash_at: u64) {
    match run_sql_durable(
        sql,
        dir,
        64,
        shards,
        None,
        durability(&dir.join("state"), Faults::fail_at(crash_at), &[]),
    ) {
        Err(RunFailure::Injected(_)) | Ok(_) => {}
        Err(e) => panic!("crash run at {crash_at}: {e}"),
    }
}

fn durable_steps(sql: &str, shards: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let faults = Faults::counting();
    run_sql_durable(
        sql,
        dir.path(),
        64,
        shards,
        None,
        durability(&dir.path().join("state"), faults.clone(), &[]),
    )
    .unwrap();
    faults.hits()
}

#[test]
fn a_restart_keeps_unchanged_streams_adds_new_ones_and_drops_removed_ones() {
    // (shards before the crash, shards of the restart): the change of
    // script and a change of shard count in one restart too.
    for (shards, restart_shards) in [(1, 1), (2, 2), (2, 1), (1, 3)] {
        let reference = tempfile::tempdir().unwrap();
        write_input(reference.path());
        run_sql(&before(), reference.path(), 64, shards).unwrap();
        let steps = durable_steps(&before(), shards);
        let mut resumed = 0;
        for crash_at in [steps / 3, steps / 2, steps * 2 / 3] {
            let what = format!("{shards} -> {restart_shards} shard(s), crash at step {crash_at} of {steps}");
            let dir = tempfile::tempdir().unwrap();
            write_input(dir.path());
            crash(&before(), dir.path(), shards, crash_at);
            let offset = checkpointed_offset(&dir.path().join("state"));
            let out = run_sql_durable(
                &after(),
                dir.path(),
                64,
                restart_shards,
                None,
                durability(&dir.path().join("state"), Faults::none(), &[]),
            )
            .unwrap_or_else(|e| panic!("{what}: the changed script did not resume: {e}"));
            let said = out
                .summary
                .checkpoints
                .as_ref()
                .map(|c| c.evolution.join("\n"))
                .unwrap_or_default();
            if offset > 0 {
                resumed += 1;
                assert!(said.contains("new: stream peaks"), "{what}: {said}");
                assert!(said.contains("drop: stream sessions"), "{what}: {said}");
            }

            // Kept streams: exactly the uninterrupted run's rows.
            for sink in ["filtered.csv", "counts.csv"] {
                assert_eq!(
                    rows(dir.path(), sink),
                    rows(reference.path(), sink),
                    "{what}: {sink} differs from an uninterrupted run"
                );
            }
            // The added stream: a run of it alone over the rest of the input.
            let tail = tempfile::tempdir().unwrap();
            write_input(tail.path());
            write_part(tail.path(), "tail.csv", offset as usize..usize::MAX);
            run_sql(&script("tail.csv", &[ADDED]), tail.path(), 64, 1).unwrap();
            assert_eq!(
                rows(dir.path(), "peaks.csv"),
                rows(tail.path(), "peaks.csv"),
                "{what}: the new stream's output differs from a run of it over the input after byte {offset}"
            );
            assert!(
                !rows(dir.path(), "peaks.csv").is_empty(),
                "{what}: the new stream wrote nothing"
            );
        }
        assert!(
            resumed >= 2,
            "{shards} shard(s): most crashes came after a checkpoint ({resumed} of 3)"
        );
    }
}

#[test]
fn a_changed_stream_is_refused_and_reset_on_request() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let steps = durable_steps(&before(), 1);
    crash(&before(), dir.path(), 1, steps / 2);
    let state = dir.path().join("state");
    let offset = checkpointed_offset(&state);
    assert!(offset > 0, "the crash came after a checkpoint");
    let committed = laminar_persistence::manifest::read(&state)
        .unwrap()
        .unwrap()
        .sinks
        .iter()
        .find(|s| s.name == "filtered_out")
        .unwrap()
        .bytes as usize;

    // A literal edited: refused, naming the stream and the words.
    let changed = before().replace("price > 900", "price > 500");
    let run = |resets: &[&str]| {
        run_sql_durable(
            &changed,
            dir.path(),
            64,
            1,
            None,
            durability(&state, Faults::none(), resets),
        )
    };
    let err = run(&[]).err().expect("a changed stream is refused").to_string();
    assert!(
        err.contains("refuse: stream filtered") && err.contains("price > 900") && err.contains("price > 500"),
        "{err}"
    );
    assert!(
        !err.contains("stream counts"),
        "only the changed stream is named: {err}"
    );
    // The refusal touched nothing: the sink still ends at its commit.
    assert!(std::fs::metadata(dir.path().join("filtered.csv")).unwrap().len() as usize >= committed);

    // Reset: the old definition's rows up to the checkpoint, the new
    // one's after it; the unchanged streams as an uninterrupted run.
    let out = run(&["filtered"]).unwrap();
    let said = out.summary.checkpoints.as_ref().unwrap().evolution.join("\n");
    assert!(said.contains("reset: stream filtered"), "{said}");
    let parts = tempfile::tempdir().unwrap();
    write_input(parts.path());
    write_part(parts.path(), "head.csv", 0..offset as usize);
    write_part(parts.path(), "tail.csv", offset as usize..usize::MAX);
    let old = script("head.csv", &[FILTERED]).replace("filtered.csv", "old.csv");
    let new = script("tail.csv", &[&FILTERED.replace("price > 900", "price > 500")]).replace("filtered.csv", "new.csv");
    run_sql(&old, parts.path(), 64, 1).unwrap();
    run_sql(&new, parts.path(), 64, 1).unwrap();
    let expected = normalize(
        &format!(
            "{}{}",
            std::fs::read_to_string(parts.path().join("old.csv")).unwrap(),
            // Its header once: the resumed file has it from the first run.
            std::fs::read_to_string(parts.path().join("new.csv"))
                .unwrap()
                .split_once('\n')
                .unwrap()
                .1
        ),
        false,
    );
    assert_eq!(rows(dir.path(), "filtered.csv"), expected);
    let reference = tempfile::tempdir().unwrap();
    write_input(reference.path());
    run_sql(&before(), reference.path(), 64, 1).unwrap();
    assert_eq!(rows(dir.path(), "counts.csv"), rows(reference.path(), "counts.csv"));
}
