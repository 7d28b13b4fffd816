//! `laminar bench` end to end: the arena and mesh microbenchmarks and a
//! paced Nexmark query, with their reports and their refusals of bad
//! options.

#[path = "common/cli.rs"]
mod harness;

use harness::*;

#[test]
fn bench_measures_the_arena_and_the_mesh_and_refuses_bad_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = laminar(dir.path(), &["bench", "arena", "--keys", "1000", "--ops", "20000"]);
    assert_success(&o);
    let out = stdout(&o);
    assert!(out.contains("arena: 1000 keys, 20000 updates"), "{out}");
    assert!(out.contains("baseline (hashbrown") && out.contains("p99.9"), "{out}");

    let o = laminar(
        dir.path(),
        &[
            "bench",
            "mesh",
            "--cpus",
            "0,0",
            "--messages",
            "1000",
            "--round-trips",
            "100",
        ],
    );
    assert_success(&o);
    let out = stdout(&o);
    assert!(
        out.contains("mesh throughput") && out.contains("mesh round trip"),
        "{out}"
    );
    assert!(out.contains("(100 samples)"), "{out}");

    let o = laminar(dir.path(), &["bench", "jitter", "--duration", "1"]);
    assert_success(&o);
    let out = stdout(&o);
    assert!(
        out.starts_with("jitter: core 0, 1.0 s spinning") && out.contains("p99.9"),
        "{out}"
    );

    let o = laminar(dir.path(), &["bench", "mesh", "--cpus", "0"]);
    assert_failure(&o);
    assert!(stderr(&o).contains("--cpus must name two cores"), "{}", stderr(&o));
    let o = laminar(dir.path(), &["bench", "arena", "--keys", "0"]);
    assert_failure(&o);
    assert!(stderr(&o).contains("--keys must be between"), "{}", stderr(&o));
}

#[test]
fn bench_query_paces_the_engine_and_reports_latency() {
    // Open loop, one second at 100,000 events/s: every event is sent (the
    // count is exact), q2's matches reach the sink with a latency each,
    // and the percentile files are written. Timing figures are not
    // asserted beyond their order: this machine is shared.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = paced(
        dir.path(),
        "q2",
        &["--json", "--hdr-out", "q2.hgrm", "--plot", "q2.svg"],
    );
    assert_success(&o);
    let json = stdout(&o);
    assert!(
        json.starts_with("{\"query\":\"q2\",") && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert_eq!(json_number(&json, "events"), 100_000.0);
    assert_eq!(json_number(&json, "target_rate_eps"), 100_000.0);
    let rows = json_number(&json, "result_rows");
    assert!(rows > 0.0, "q2 selects some bids: {json}");
    assert_eq!(json_number(&json, "latency_samples"), rows, "one sample per result row");
    let (p50, p99, max) = (
        json_number(&json, "p50_us"),
        json_number(&json, "p99_us"),
        json_number(&json, "max_us"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{json}");
    assert!(json_number(&json, "throughput_eps") > 50_000.0, "{json}");
    let busy = json_number(&json.replace("[", "").replace("]", ""), "shard_busy_share");
    assert!((0.0..=1.0).contains(&busy), "{json}");
    let hgrm = read(dir.path(), "q2.hgrm");
    assert!(
        hgrm.contains(&format!("Total count    = {:>12}", rows as u64)),
        "{hgrm}"
    );
    assert!(read(dir.path(), "q2.svg").contains("<polyline"));

    // A windowed query whose windows (10 s, closed 4 s after their end)
    // cannot close in one second: no samples, said so, not zeros.
    let o = paced(dir.path(), "q7", &["--json"]);
    assert_success(&o);
    let json = stdout(&o);
    assert_eq!(json_number(&json, "latency_samples"), 0.0, "{json}");
    assert!(
        json.contains("\"p99_us\":null") && json.contains("\"max_us\":null"),
        "{json}"
    );
    // The event path is measured anyway: every bid read has a read
    // delay (the stream is 46 bids in 50 events).
    assert_eq!(json_number(&json, "read_delay_samples"), 92_000.0, "{json}");
    assert!(json_number(&json, "read_delay_p99_us") > 0.0, "{json}");
    assert!(!json.contains("\"floor\""), "no floor unless asked: {json}");

    // `--with-floor`: the host's floor, measured on the shard's core for
    // the run's duration, beside the run's own figures.
    let o = paced(dir.path(), "q2", &["--cpus", "0", "--with-floor", "--json"]);
    assert_success(&o);
    let json = stdout(&o);
    let floor = &json[json.find("\"floor\":{").unwrap_or_else(|| panic!("a floor: {json}"))..];
    assert_eq!(json_number(floor, "cpu"), 0.0, "{json}");
    assert!((0.9..5.0).contains(&json_number(floor, "seconds")), "{json}");
    let (f50, f99) = (json_number(floor, "p50_us"), json_number(floor, "p99_9_us"));
    assert!(0.0 <= f50 && f50 <= f99, "{json}");
    let o = paced(dir.path(), "q2", &["--with-floor"]);
    assert_success(&o);
    let text = stdout(&o);
    assert!(
        text.contains("host floor (core ") && text.contains("event read delay"),
        "{text}"
    );
    let o = laminar(dir.path(), &["bench", "--query", "q2", "--sweep", "--with-floor"]);
    assert!(!o.status.success(), "--with-floor measures one run, not a sweep");
    let o = paced(dir.path(), "q7", &[]);
    assert_success(&o);
    assert!(stdout(&o).contains("latency: no samples"), "{}", stdout(&o));

    // Closed loop on two shards: a saturation figure and the text report.
    let o = laminar(
        dir.path(),
        &[
            "bench",
            "--query",
            "q5",
            "--rate",
            "max",
            "--duration",
            "1",
            "--shards",
            "2",
        ],
    );
    assert_success(&o);
    let out = stdout(&o);
    assert!(
        out.contains("laminar bench q5: closed loop") && out.contains("shard 1"),
        "{out}"
    );

    for (args, expected) in [
        (&["bench", "--query", "q4"][..], "unknown query \"q4\""),
        (
            &["bench", "--query", "q1", "--duration", "0"][..],
            "--duration must be between 1",
        ),
        (
            &["bench", "--query", "q1", "--rate", "0"][..],
            "--rate must be a positive number",
        ),
        (
            &["bench", "--query", "q1", "--rate", "999999999999"][..],
            "more than the Nexmark generator reaches",
        ),
        (
            &["bench", "--query", "q1", "--sweep", "--rate", "5"][..],
            "--sweep picks its own rates",
        ),
        (&["bench"][..], "laminar bench needs --query"),
    ] {
        let o = laminar(dir.path(), args);
        assert_failure(&o);
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
}

/// `laminar bench --query QUERY` open loop for one second at 100,000
/// events/s, with `more` options.
fn paced(dir: &std::path::Path, query: &str, more: &[&str]) -> std::process::Output {
    let mut args = vec!["bench", "--query", query, "--rate", "100000", "--duration", "1"];
    args.extend_from_slice(more);
    laminar(dir, &args)
}

/// The value of `"key":` in a one-line JSON object of numbers.
fn json_number(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 3..];
    let end = rest.find([',', '}']).expect("a value ends");
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}
