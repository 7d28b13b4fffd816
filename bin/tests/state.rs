//! `laminar run --state-dir` and `laminar state show` end to end: a
//! durable run resumed, on another shard count too, refused for an
//! edited stream (not for a comment), a damaged manifest named;
//! what `state show` prints of the last checkpoint, as a table and JSON;
//! what `state diff` says a changed script would do, and a restart with
//! `--reset` doing it.

#[path = "common/cli.rs"]
mod harness;

use harness::*;

#[test]
fn a_state_directory_is_resumed_and_refused_when_it_does_not_fit() {
    let dir = setup(PIPELINE_SQL);
    // A durable run writes the same output as an in-memory one, and a
    // second run on the same directory resumes and writes it again.
    for _ in 0..2 {
        let out = laminar(
            dir.path(),
            &["run", "pipeline.sql", "--shards", "1", "--state-dir", "state"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(read_rows(dir.path(), "out.csv"), sorted_rows(PIPELINE_OUT));
    }

    // Another shard count: refused, saying which it needs. (Without a
    // checkpoint in the directory yet there is nothing to refuse, so
    // make one: a tiny interval and a long enough input.)
    write(dir.path(), "bids.csv", &long_bids());
    let _ = std::fs::remove_dir_all(dir.path().join("state"));
    let out = laminar(
        dir.path(),
        &[
            "run",
            "pipeline.sql",
            "--shards",
            "1",
            "--state-dir",
            "state",
            "--checkpoint-every-rows",
            "50000",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("state/MANIFEST").exists(), "{}", stderr(&out));
    // Another shard count: the keyed state moves by key group, and the
    // output ends as an uninterrupted run's.
    let whole = laminar(dir.path(), &["run", "pipeline.sql", "--shards", "1", "-q"]);
    assert_success(&whole);
    let expected = read_rows(dir.path(), "out.csv");
    let out = laminar(
        dir.path(),
        &[
            "run",
            "pipeline.sql",
            "--shards",
            "2",
            "--state-dir",
            "state",
            "--checkpoint-interval-ms",
            "1",
        ],
    );
    assert_success(&out);
    let said = stderr(&out);
    assert!(said.contains("move: keyed state moves from 1 shard(s) to 2"), "{said}");
    assert_eq!(read_rows(dir.path(), "out.csv"), expected);
    let o = laminar(dir.path(), &["state", "show", "--json", "state"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["shards"], 2, "{v}");
    let out = laminar(
        dir.path(),
        &["run", "pipeline.sql", "--shards", "1", "--state-dir", "state"],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("move: keyed state moves from 2 shard(s) to 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_rows(dir.path(), "out.csv"), expected);

    // Another pipeline: refused. So is one that differs inside an
    // expression only (it would mix two definitions' rows in one sink),
    // while a comment changes nothing.
    let rerun = |name: &str, sql: &str| {
        write(dir.path(), name, sql);
        laminar(dir.path(), &["run", name, "--shards", "1", "--state-dir", "state"])
    };
    for (name, sql) in [
        (
            "other.sql",
            PIPELINE_SQL.replace("INTERVAL '5' SECOND", "INTERVAL '6' SECOND"),
        ),
        (
            "literal.sql",
            PIPELINE_SQL.replace("SUM(price) AS total", "SUM(price * 2) AS total"),
        ),
    ] {
        let out = rerun(name, &sql);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("refuse: stream totals") && err.contains("--reset totals"),
            "{err}"
        );
    }
    let out = rerun(
        "commented.sql",
        &format!("-- the same pipeline, annotated\n{PIPELINE_SQL}"),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A damaged manifest: an error naming it, never a panic.
    let manifest = dir.path().join("state/MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&manifest, &bytes).unwrap();
    let out = laminar(
        dir.path(),
        &["run", "pipeline.sql", "--shards", "1", "--state-dir", "state"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("MANIFEST") && err.contains("corrupt"), "{err}");
}

#[test]
fn state_show_prints_what_the_last_checkpoint_holds() {
    let dir = setup(PIPELINE_SQL);
    // Checkpoints by rows read, so one is taken however fast the run.
    let rows = long_bids();
    write(dir.path(), "bids.csv", &rows);
    let out = laminar(
        dir.path(),
        &[
            "run",
            "pipeline.sql",
            "--shards",
            "1",
            "--state-dir",
            "state",
            "--checkpoint-every-rows",
            "50000",
        ],
    );
    assert_success(&out);
    let o = laminar(dir.path(), &["state", "show", "--json", "state"]);
    assert_success(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["shards"], 1);
    assert_eq!(v["key_groups"], 4096);
    let source = &v["sources"][0];
    assert_eq!(source["name"], "bids");
    let read = source["rows"].as_u64().expect("rows");
    assert!(read > 0 && read <= 200_000, "{v}");
    assert!(source["offset"].as_u64().expect("offset") <= rows.len() as u64, "{v}");
    assert_eq!(v["sinks"][0]["name"], "out");
    // The window aggregate (node #0) holds its open windows.
    assert_eq!(v["nodes"][0]["node"], 0);
    assert!(v["nodes"][0]["state_bytes"].as_u64().expect("bytes") > 0, "{v}");
    let o = laminar(dir.path(), &["state", "show", "state"]);
    assert_success(&o);
    let text = stdout(&o);
    for expected in [
        "1 shard(s) (4096 key groups), plan fingerprint ".to_string(),
        format!("    node #0: {} bytes of state", v["nodes"][0]["state_bytes"]),
        format!(
            "  stream totals (identity {}): {} bytes of state",
            v["streams"][0]["identity"].as_str().expect("identity"),
            v["nodes"][0]["state_bytes"]
        ),
        format!(
            "  source bids (shard 0): offset {}, {read} rows, 0 malformed, watermark ",
            source["offset"]
        ),
        format!("  sink out: {} rows committed", v["sinks"][0]["rows"]),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in\n{text}");
    }
    assert_eq!(v["streams"][0]["name"], "totals");
    assert_eq!(v["streams"][0]["nodes"][0], 0);

    // `state diff`: what a restart with another script would do, in the
    // restart's words; the restart then says and does the same.
    write(
        dir.path(),
        "changed.sql",
        &format!(
            "{}\nCREATE STREAM big AS SELECT auction, price FROM bids WHERE price > 150;\n",
            PIPELINE_SQL.replace("SUM(price)", "SUM(price * 2)")
        ),
    );
    let o = laminar(dir.path(), &["state", "diff", "state", "changed.sql"]);
    assert_success(&o);
    let diff = stdout(&o);
    for expected in [
        "with this script on 1 shard(s): refused",
        "keep: source bids resumes at its checkpointed position",
        "refuse: stream totals: was \"… COUNT(*) AS n, SUM(price) AS …\", now \"… COUNT(*) AS n, SUM(price * 2) AS …\"",
        "new: stream big starts with empty state",
        "keep: sink out goes on after its committed output",
    ] {
        assert!(diff.contains(expected), "no {expected:?} in\n{diff}");
    }
    let o = laminar(
        dir.path(),
        &["state", "diff", "state", "changed.sql", "--reset", "totals", "--json"],
    );
    assert_success(&o);
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(d["refused"], false, "{d}");
    let outcome = |name: &str| {
        d["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome("totals").as_deref(), Some("reset"));
    assert_eq!(outcome("big").as_deref(), Some("new"));
    let o = laminar(dir.path(), &["state", "diff", "state", "changed.sql", "--shards", "3"]);
    assert!(
        stdout(&o).contains("move: keyed state moves from 1 shard(s) to 3"),
        "{}",
        stdout(&o)
    );
    let o = laminar(
        dir.path(),
        &["state", "diff", "state", "changed.sql", "--reset", "nope"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--reset nope: the script defines no stream"),
        "{}",
        stderr(&o)
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "changed.sql", "--shards", "1", "--state-dir", "state"];
        args.extend_from_slice(extra);
        laminar(dir.path(), &args)
    };
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refuse: stream totals"), "{}", stderr(&o));
    let o = run(&["--reset", "totals"]);
    assert_success(&o);
    let said = stderr(&o);
    assert!(said.contains("reset: stream totals starts with empty state"), "{said}");
    assert!(said.contains("new: stream big starts with empty state"), "{said}");

    // A directory without a checkpoint: an error saying so.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let o = laminar(dir.path(), &["state", "show", "empty"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds no checkpoint"), "{}", stderr(&o));
}

/// 200,000 bids over 200 s of event time: long enough for a checkpoint to
/// be taken at a tiny interval.
fn long_bids() -> String {
    let mut rows = String::from("auction,price,ts\n");
    for i in 0..200_000 {
        rows.push_str(&format!(
            "{},{},2015-07-15 00:{:02}:{:02}\n",
            i % 7,
            i % 100,
            (i / 60_000) % 60,
            (i / 1000) % 60
        ));
    }
    rows
}
