//! `laminar serve` end to end, on loopback: out-of-order data over
//! several connections against `laminar run` on the same input, a
//! subscriber, kill -9 and restart mid-stream, SIGTERM drain, malformed
//! lines, config and listen errors, a followed file. (Overload is in
//! `overload.rs`; what both share in `common/serve.rs`.)
//!
//! Every wait is on an event (a line on the server's stderr, an answer on
//! a socket, the process's exit), bounded by a generous deadline that
//! only a hang reaches.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
#[path = "common/serve.rs"]
mod harness;

use common::Rng;
use harness::*;

#[test]
fn serve_over_several_connections_matches_run_and_feeds_subscribers() {
    let dir = tempdir();
    write_config_forking(dir.path(), &serve_sql());
    let server = Server::start(dir.path());
    let (status, body) = server.get("/ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(server.get("/health").0, 200);

    // A subscriber from the start: it sees every totals row.
    let sub = TcpStream::connect(server.addr("totals_tcp")).unwrap();
    let subscriber = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(sub).lines() {
            lines.push(line.unwrap());
        }
        lines
    });
    // The subscriber is counted before the data flows.
    let until = Instant::now() + DEADLINE;
    while metric(
        &server.get("/metrics").1,
        "laminar_sink_subscribers{sink=\"totals_tcp\"}",
    ) < 1.0
    {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }

    let (lines, last) = bids(60_000, 7);
    ingest_parallel(&server, &lines, 3);
    assert_eq!(server.ingest("bid", &[closer(last)]), "OK 1 rows 0 malformed\n");
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"), 60_001.0);
    // Connection counts are published every 100 ms.
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") > 0.0 {
        assert!(Instant::now() < until, "connections still counted open");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(metric(&metrics, "laminar_checkpoints_total") >= 1.0);
    let (_, status_json) = server.get("/status");
    let status_doc: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    assert_eq!(status_doc["state"], "running");
    assert_eq!(status_doc["sources"][0]["rows"], 60_001);

    let (exit, log) = server.stop();
    assert!(exit.success(), "{exit:?}\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.starts_with("stopped after")), "{}", log.join("\n"));

    let mut all = lines.clone();
    all.push(closer(last));
    let expected = reference(dir.path(), &all);
    assert!(!expected[0].is_empty());
    assert_same_rows(&served_rows(dir.path()), &expected);

    // The subscriber got the same totals, as JSON lines.
    let mut received: Vec<String> = subscriber
        .join()
        .unwrap()
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            [s("auction"), s("bids"), s("total"), s("window_start"), s("window_end")].join(",")
        })
        .collect();
    received.sort();
    assert_eq!(received, expected[0]);
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    let dir = tempdir();
    write_config_forking(dir.path(), &serve_sql());
    let (lines, last) = bids(40_000, 11);
    let (first, second) = lines.split_at(20_000);

    let server = Server::start(dir.path());
    ingest_parallel(&server, first, 2);
    server.kill();

    let server = Server::start(dir.path());
    ingest_parallel(&server, second, 2);
    assert_eq!(server.ingest("bid", &[closer(last)]), "OK 1 rows 0 malformed\n");
    // A restart in the middle of intake: SIGTERM, then go on.
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    let server = Server::start(dir.path());
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"),
        40_001.0,
        "{}\n{}",
        log.join("\n"),
        server.log.join("\n")
    );
    let (exit, _) = server.stop();
    assert!(exit.success());

    let mut all = lines.clone();
    all.push(closer(last));
    assert_same_rows(&served_rows(dir.path()), &reference(dir.path(), &all));
}

#[test]
fn malformed_lines_are_counted_reported_and_dead_lettered() {
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "[limits]\nline_bytes_max = 100\n");
    let mut server = Server::start(dir.path());
    let long = "9".repeat(500);
    let input = format!(
        "1,10,2024-01-01 00:00:01\nnot a bid\n2,x,2024-01-01 00:00:02\n\n{long}\n3,30,2024-01-01 00:00:03\n4,40,2024-01-01 00:00:04"
    );
    let file = dir.path().join("input.csv");
    std::fs::write(&file, input).unwrap();
    // The CLI client: it prints the answer and exits 0 once durable.
    let out = Command::new(BIN)
        .args(["ingest", "--addr", server.addr("bid")])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("OK 3 rows 3 malformed"), "{err}");
    // Reported with connection and line.
    let report = server.wait_for("malformed record skipped");
    assert!(
        report.contains("connection 0 from 127.0.0.1:") && report.contains("line=2"),
        "{report}"
    );
    server.wait_for("line=3");
    let too_long = server.wait_for("line=5");
    assert!(too_long.contains("line longer than 100 bytes"), "{too_long}");
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_source_malformed_total{source=\"bid\"}"), 3.0);
    assert_eq!(metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"), 3.0);
    let (exit, _) = server.stop();
    assert!(exit.success());
    // The dead-letter file has the bad lines (a too-long one cut at the
    // limit: it was never held whole).
    let dead = std::fs::read_to_string(dir.path().join("out/bad.txt")).unwrap();
    assert_eq!(dead, format!("not a bid\n2,x,2024-01-01 00:00:02\n{}\n", &long[..100]));
}

#[test]
fn config_and_listen_errors_name_what_is_wrong() {
    let dir = tempdir();
    let check = |config: &str| {
        std::fs::write(dir.path().join("laminar.toml"), config).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--check", "--config", "laminar.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    std::fs::write(dir.path().join("pipeline.sql"), serve_sql()).unwrap();
    let (code, err) = check("[pipeline]\nfiles = ['pipeline.sql']\n[limits]\nconections_per_source = 3\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("laminar.toml") && err.contains("line 4") && err.contains("conections_per_source"),
        "{err}"
    );
    let (code, err) = check("[pipeline]\nfiles = ['pipeline.sql']\n[watermark]\nidle_timeout_ms = 0\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("watermark.idle_timeout_ms: must be between 1"), "{err}");
    std::fs::write(
        dir.path().join("bad.sql"),
        "CREATE SOURCE s (a BIGINT) WITH (connector = 'tcp');\n",
    )
    .unwrap();
    let (code, err) = check("[pipeline]\nfiles = ['pipeline.sql', 'bad.sql']\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad.sql:1:") && err.contains("missing option port"),
        "{err}"
    );
    let (code, out) = check("[pipeline]\nfiles = ['pipeline.sql']\n");
    assert_eq!(code, Some(0), "{out}");

    // A port in use: the error names the source and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("pipeline.sql"),
        serve_sql().replacen("port = '0'", &format!("port = '{port}'"), 1),
    )
    .unwrap();
    write_config(
        dir.path(),
        &std::fs::read_to_string(dir.path().join("pipeline.sql")).unwrap(),
        "",
    );
    let out = Command::new(BIN)
        .args(["serve", "--config", "laminar.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("source bid: listening on 127.0.0.1:{port}")),
        "{err}"
    );
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_silent_connection_goes_idle_and_a_record_from_the_future_is_held_to_the_skew_bound() {
    let dir = tempdir();
    write_config(
        dir.path(),
        &serve_sql(),
        "[watermark]\nidle_timeout_ms = 300\nskew_ms = 500\n",
    );
    let server = Server::start(dir.path());
    let sub = TcpStream::connect(server.addr("totals_tcp")).unwrap();
    sub.set_read_timeout(Some(DEADLINE)).unwrap();
    // A client that connects and says nothing.
    let _silent = TcpStream::connect(server.addr("bid")).unwrap();
    let until = Instant::now() + DEADLINE;
    while metric(
        &server.get("/metrics").1,
        "laminar_sink_subscribers{sink=\"totals_tcp\"}",
    ) < 1.0
        || metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") < 1.0
    {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Honest rows near the wall clock, one stamped in the year 3000, and
    // honest rows again: none may be late (the skew bound, 0.5 s, is under
    // the watermark delay, 2 s), and the window of the first rows must
    // close although the silent connection never sends anything.
    let now = wall_ms();
    let window_start = now.div_euclid(10_000) * 10_000 - 20_000;
    let mut lines: Vec<String> = (0..5).map(|i| format!("1,{i},{}", window_start + i)).collect();
    lines.push(format!("2,0,{}", 32_503_680_000_000i64)); // 3000-01-01
    lines.extend((0..5).map(|i| format!("3,{i},{}", wall_ms() - 10 + i)));
    assert_eq!(server.ingest("bid", &lines), "OK 11 rows 0 malformed\n");
    let mut first = String::new();
    BufReader::new(&sub).read_line(&mut first).unwrap();
    let row: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (row["auction"].as_i64(), row["bids"].as_i64()),
        (Some(1), Some(5)),
        "{first}"
    );
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        metric(&metrics, "laminar_source_skew_outliers_total{source=\"bid\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "laminar_stream_late_dropped_total{stream=\"totals\",node=\"0\"}"
        ),
        0.0
    );
    let watermark = metric(&metrics, "laminar_source_watermark_ms{source=\"bid\"}") as i64;
    assert!(watermark <= wall_ms() + 500, "held to the bound: {watermark}");
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("beyond the wall clock plus the skew bound")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn connections_over_the_limit_are_refused_with_a_reason() {
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "[limits]\nconnections_per_source = 2\n");
    let server = Server::start(dir.path());
    let _a = TcpStream::connect(server.addr("bid")).unwrap();
    let _b = TcpStream::connect(server.addr("bid")).unwrap();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") < 2.0 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let answer = ingest_to(server.addr("bid"), &["1,1,2024-01-01 00:00:01".to_string()]);
    assert_eq!(answer, "ERR source bid has 2 connections, its limit\n");
    // The client says the lines must be sent again, and exits 1.
    let out = Command::new(BIN)
        .args(["ingest", "--addr", server.addr("bid")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("its limit: send these lines again"), "{err}");
    let (exit, _) = server.stop();
    assert!(exit.success());
}

#[test]
fn acknowledged_lines_survive_kill_9_with_no_checkpoint_through_the_wal() {
    let dir = tempdir();
    // No checkpoint for an hour: only the WAL holds what is acknowledged.
    write_config_every(dir.path(), &serve_sql(), "", 3_600_000);
    let (lines, last) = bids(30_000, 23);
    let (first, rest) = lines.split_at(10_000);
    let (second, third) = rest.split_at(10_000);

    let server = Server::start(dir.path());
    let started = Instant::now();
    ingest_parallel(&server, first, 2);
    let acked_in = started.elapsed();
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_checkpoints_total"), 0.0, "no checkpoint yet");
    assert!(
        metric(&metrics, "laminar_wal_fsync_total{shard=\"0\"}")
            + metric(&metrics, "laminar_wal_fsync_total{shard=\"1\"}")
            >= 1.0
    );
    server.kill();
    assert!(!dir.path().join("state/MANIFEST").exists());

    // Recovery replays the WAL; then more, and a second kill.
    let server = Server::start(dir.path());
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"),
        10_000.0,
        "replayed"
    );
    ingest_parallel(&server, second, 2);
    server.kill();

    let server = Server::start(dir.path());
    ingest_parallel(&server, third, 2);
    assert_eq!(server.ingest("bid", &[closer(last)]), "OK 1 rows 0 malformed\n");
    let (_, metrics) = server.get("/metrics");
    assert_eq!(metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"), 30_001.0);
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));

    let mut all = lines.clone();
    all.push(closer(last));
    assert_same_rows(&served_rows(dir.path()), &reference(dir.path(), &all));
    // The final checkpoint covers everything: the segments before the
    // last one are gone.
    let segments = std::fs::read_dir(dir.path().join("state/wal")).unwrap().count();
    assert!(segments <= 2, "{segments} WAL segments left after the final checkpoint");
    eprintln!("10,000 lines over 2 connections acknowledged in {acked_in:?}");
}

/// A free loopback port (bound, then released for the server to take),
/// below the kernel's ephemeral range: a client that keeps connecting
/// while the server restarts must not be handed the same port as its
/// own end (TCP would connect it to itself).
fn free_port(rng: &mut Rng) -> u16 {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    loop {
        let port = 10_000 + (rng.next() % u64::from(ephemeral_low.saturating_sub(10_000).max(1))) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// kill -9 lands at random moments while clients stream chunks of
/// unique lines over several connections; a chunk that was not
/// acknowledged is sent again. In the end every line of every chunk is
/// in the output at least once, a chunk acknowledged at its first attempt
/// exactly once, and no line more often than its chunk was sent.
/// `LAMINAR_SERVE_KILLS=N` (default 6) sets the kills,
/// `LAMINAR_SERVE_KILL_SEED` replays a sequence of moments.
#[test]
fn kill_9_during_ingest_loses_no_acknowledged_line() {
    let kills: usize = std::env::var("LAMINAR_SERVE_KILLS").map_or(6, |v| v.parse().unwrap());
    let seed: u64 =
        std::env::var("LAMINAR_SERVE_KILL_SEED").map_or_else(|_| wall_ms() as u64 | 1, |v| v.parse().unwrap());
    eprintln!("LAMINAR_SERVE_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempdir();
    let (port, admin) = (free_port(&mut rng), free_port(&mut rng));
    let sql = format!(
        "CREATE SOURCE ev (id BIGINT NOT NULL, k BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'tcp', port = '{port}', format = 'csv');
         CREATE STREAM echo AS SELECT id, k, ts FROM ev;
         CREATE SINK echo_out FROM echo WITH (connector = 'file', path = 'out/echo.csv', format = 'csv');\n"
    );
    std::fs::write(dir.path().join("pipeline.sql"), sql).unwrap();
    std::fs::write(
        dir.path().join("laminar.toml"),
        format!(
            "[pipeline]\nfiles = ['pipeline.sql']\n[state]\ndir = 'state'\ncheckpoint_interval_ms = 150\n\
             [shards]\ncount = 2\n[listen]\nadmin = '127.0.0.1:{admin}'\nsql = '127.0.0.1:0'\n"
        ),
    )
    .unwrap();
    // Enough input that every kill lands while lines still flow.
    let mut server = Server::start(dir.path());
    let mut load = ChunkLoad::start(&format!("127.0.0.1:{port}"), 3, 20 * kills.max(1), 1500);
    for _ in 0..kills {
        // The moment of the kill: random, 20 to 250 ms into the run.
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 230));
        server.kill();
        server = Server::start(dir.path());
    }
    load.join();
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));

    let text = std::fs::read_to_string(dir.path().join("out/echo.csv")).unwrap();
    let retried = load.verify(&load.count(&text), &format!("seed {seed}"));
    eprintln!(
        "{kills} kills; {retried} chunks sent again; {} lines",
        text.lines().count() - 1
    );
}

/// A million lines over two connections, 1% of them garbage of several
/// kinds: every bad line is counted and dead-lettered, and the windowed
/// totals over the good ones are exact.
#[test]
fn one_percent_garbage_over_tcp_leaves_every_good_line_counted() {
    let dir = tempdir();
    write_config(dir.path(), &serve_sql(), "");
    let server = Server::start(dir.path());
    let mut rng = Rng(99);
    let base = 1_704_067_200_000i64;
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    // (auction, window start) -> (count, sum)
    let mut expected: std::collections::BTreeMap<(u64, i64), (u64, u64)> = Default::default();
    let mut last = base;
    for i in 0..1_000_000i64 {
        let ts = base + i / 2;
        if rng.next().is_multiple_of(100) {
            let garbage = match rng.next() % 5 {
                0 => format!("x{i},1,{ts}"),
                1 => format!("{i},2"),
                2 => format!("1,2,{ts},4"),
                3 => format!("1,2,not a time {i}"),
                _ => format!("99999999999999999999999,1,{ts}"),
            };
            bad.push(garbage.clone());
            lines.push(garbage);
            continue;
        }
        let (auction, price) = (rng.next() % 50, rng.next() % 1000);
        let e = expected.entry((auction, ts.div_euclid(10_000) * 10_000)).or_default();
        e.0 += 1;
        e.1 += price;
        last = ts;
        lines.push(format!("{auction},{price},{ts}"));
    }
    // Two connections, each in time order (nothing is late).
    let halves: Vec<Vec<String>> = (0..2)
        .map(|c| lines.iter().skip(c).step_by(2).cloned().collect())
        .collect();
    let streams: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr("bid")).unwrap())
        .collect();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_source_connections{source=\"bid\"}") < 2.0 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let handles: Vec<_> = streams
        .into_iter()
        .zip(halves)
        .map(|(s, half)| std::thread::spawn(move || send_lines(s, &half)))
        .collect();
    for h in handles {
        assert!(h.join().unwrap().starts_with("OK "));
    }
    assert!(server.ingest("bid", &[closer(last)]).starts_with("OK 1 rows"));
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        metric(&metrics, "laminar_source_malformed_total{source=\"bid\"}"),
        bad.len() as f64
    );
    assert_eq!(
        metric(&metrics, "laminar_source_rows_total{source=\"bid\"}"),
        (1_000_000 - bad.len() + 1) as f64
    );
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
    // The reports stop at 100 per source; the dead-letter file has all.
    assert_eq!(
        log.iter().filter(|l| l.contains("malformed record skipped")).count(),
        100
    );
    let mut dead: Vec<String> = std::fs::read_to_string(dir.path().join("out/bad.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    dead.sort();
    bad.sort();
    assert_eq!(dead, bad);
    let mut want: Vec<String> = expected
        .iter()
        .map(|((a, w), (n, sum))| {
            let t = |ms: i64| {
                let s = ms.div_euclid(1000);
                format!(
                    "2024-01-01 {:02}:{:02}:{:02}.000",
                    (s / 3600) % 24,
                    (s / 60) % 60,
                    s % 60
                )
            };
            format!("{a},{n},{sum},{},{}", t(*w), t(*w + 10_000))
        })
        .collect();
    want.sort();
    assert_same_rows(&[sorted_rows(&dir.path().join("out/totals.csv"))], &[want]);
}

/// JSON lines in, a changelog out to a subscriber: its rows carry "op".
#[test]
fn json_lines_in_and_a_changelog_to_a_subscriber() {
    let dir = tempdir();
    let sql = "CREATE SOURCE clicks (user_id BIGINT NOT NULL, page VARCHAR, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'tcp', port = '0', format = 'json');
         CREATE STREAM per_user AS SELECT user_id, COUNT(*) AS clicks FROM clicks GROUP BY user_id;
         CREATE SINK live FROM per_user WITH (connector = 'tcp', port = '0');\n";
    write_config(dir.path(), sql, "");
    let server = Server::start(dir.path());
    let sub = TcpStream::connect(server.addr("live")).unwrap();
    sub.set_read_timeout(Some(DEADLINE)).unwrap();
    let until = Instant::now() + DEADLINE;
    while metric(&server.get("/metrics").1, "laminar_sink_subscribers{sink=\"live\"}") < 1.0 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let lines: Vec<String> = [
        r#"{"user_id": 7, "page": "/a", "ts": "2024-01-01 00:00:01"}"#,
        r#"{"user_id": 7, "page": "/b", "ts": 1704067202000}"#,
        r#"{"user_id": "seven", "page": "/c", "ts": "2024-01-01 00:00:03"}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(server.ingest("clicks", &lines), "OK 2 rows 1 malformed\n");
    let mut reader = BufReader::new(&sub);
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        got.push((v["op"].as_str().unwrap().to_string(), v["clicks"].as_i64().unwrap()));
    }
    assert_eq!(
        got,
        vec![("+I".into(), 1), ("-U".into(), 1), ("+U".into(), 2)],
        "the changelog of user 7's count"
    );
    let (exit, log) = server.stop();
    assert!(exit.success(), "{}", log.join("\n"));
}

/// Waits until source `name` has read `rows` rows (its metric).
fn wait_for_rows(server: &Server, name: &str, rows: u64) {
    let key = format!("laminar_source_rows_total{{source=\"{name}\"}}");
    let until = Instant::now() + DEADLINE;
    loop {
        let seen = metric(&server.get("/metrics").1, &key);
        if seen == rows as f64 {
            return;
        }
        assert!(
            seen < rows as f64 && Instant::now() < until,
            "source {name}: {seen} rows read, waiting for {rows}"
        );
        // A poll of the server's counters, not a synchronisation.
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_followed_file_is_tailed_through_rotation_and_truncation_and_resumes_exactly_once() {
    let dir = tempdir();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "k,v\n1,10\n2,20\n3,3").unwrap();
    let sql = "CREATE SOURCE ev (k BIGINT, v BIGINT)
                 WITH (connector = 'file', path = 'in.csv', follow = 'true', poll_ms = '5');
               CREATE STREAM s AS SELECT k, v FROM ev;
               CREATE SINK out FROM s WITH (connector = 'file', path = 'out/rows.csv', format = 'csv');\n";
    write_config(dir.path(), sql, "");
    let mut server = Server::start(dir.path());
    wait_for_rows(&server, "ev", 2);
    // The partial last line waited for its end.
    append(&input, "0\n4,40\n");
    wait_for_rows(&server, "ev", 4);
    // Rotation: a last line in the old file, then a new file (its header
    // detected again).
    append(&input, "5,50\n");
    std::fs::rename(&input, dir.path().join("in.csv.1")).unwrap();
    std::fs::write(&input, "k,v\n6,60\n").unwrap();
    wait_for_rows(&server, "ev", 6);
    // Truncation: read again from the start.
    std::fs::write(&input, "").unwrap();
    server.wait_for("truncated");
    append(&input, "7,70\n");
    wait_for_rows(&server, "ev", 7);
    let (status, log) = server.stop();
    assert!(status.success(), "{}", log.join("\n"));
    // While it is stopped: a line more, a rotation, a new file.
    append(&input, "8,80\n");
    std::fs::rename(&input, dir.path().join("in.csv.2")).unwrap();
    std::fs::write(&input, "9,90\n").unwrap();
    let server = Server::start(dir.path());
    wait_for_rows(&server, "ev", 9);
    let (status, log) = server.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let expected: Vec<String> = (1..=9).map(|k| format!("{k},{}", k * 10)).collect();
    assert_eq!(sorted_rows(&dir.path().join("out/rows.csv")), expected);
}
