//! `laminar serve`'s PostgreSQL face end to end, with the real `psql`
//! (Debian's postgresql-client) and a real driver (psycopg 3, Debian's
//! python3-psycopg, through `pg_client.py`), both installed by
//! `scripts/test.sh`: every statement, bad SQL with its SQLSTATE and
//! position, SELECT equal to the file sink folded and to the input
//! counted, a point lookup, 50 concurrent clients while ingest runs,
//! SUBSCRIBE with cancel, a subscriber that never reads, the connection
//! limit and SCRAM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
#[path = "common/serve.rs"]
mod harness;

use harness::*;

const PSQL: &str = "/usr/bin/psql";
const PYTHON: &str = "/usr/bin/python3";
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg_client.py");

fn pipeline() -> String {
    "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP,
        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
     WITH (connector = 'tcp', port = '0', format = 'csv');
     CREATE STREAM per_auction AS
     SELECT auction, COUNT(*) AS bids, SUM(price) AS total FROM bid GROUP BY auction;
     CREATE STREAM rich AS SELECT auction, total * 2 AS doubled FROM per_auction WHERE total > 40000;
     CREATE STREAM totals AS
     SELECT auction, COUNT(*) AS bids, window_start, window_end
     FROM TUMBLE(bid, ts, INTERVAL '10' SECOND) GROUP BY auction, window_start, window_end;
     CREATE SINK per_auction_file FROM per_auction
     WITH (connector = 'file', path = 'out/per_auction.csv', format = 'csv');\n"
        .to_string()
}

fn port(server: &Server) -> String {
    server.addr("sql").rsplit(':').next().unwrap().to_string()
}

/// psql with one command: (success, stdout, stderr). Unaligned, tuples
/// only, `|` between fields, verbose errors (SQLSTATE and position).
fn psql(server: &Server, sql: &str) -> (bool, String, String) {
    let out = Command::new(PSQL)
        .arg(format!(
            "host=127.0.0.1 port={} user=laminar dbname=laminar sslmode=disable connect_timeout=30",
            port(server)
        ))
        .args([
            "-X",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs (postgresql-client, installed by scripts/test.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rows_of(server: &Server, sql: &str) -> Vec<String> {
    let (ok, out, err) = psql(server, sql);
    assert!(ok, "{sql}: {err}");
    out.lines().map(str::to_string).collect()
}

fn client(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = Command::new(PYTHON)
        .arg(CLIENT)
        .arg(port(server))
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// Waits until `sql` answers `want` through psql: a SELECT reads the
/// last checkpoint, which takes in what was acknowledged within a
/// checkpoint interval or two. Panics with the last answer at the
/// deadline.
fn wait_rows(server: &Server, sql: &str, want: &[String]) {
    let until = Instant::now() + DEADLINE;
    loop {
        let (ok, out, err) = psql(server, sql);
        let got: Vec<String> = out.lines().map(str::to_string).collect();
        if ok && got == want {
            return;
        }
        assert!(Instant::now() < until, "{sql}: never {want:?}; last {got:?} {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn view_rows(expect: &BTreeMap<i64, (i64, i64)>) -> Vec<String> {
    expect.iter().map(|(a, (n, t))| format!("{a}|{n}|{t}")).collect()
}

/// Per auction: bids and total price, from the input lines.
fn expected(lines: &[String]) -> BTreeMap<i64, (i64, i64)> {
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<i64> = l.split(',').map(|x| x.parse().unwrap()).collect();
        let e = m.entry(f[0]).or_insert((0, 0));
        e.0 += 1;
        e.1 += f[1];
    }
    m
}

/// The changelog file sink folded: the rows it holds now.
fn folded(path: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let op = header.iter().position(|h| *h == "op").expect("an op column");
    let mut rows = BTreeMap::new();
    for l in lines {
        let mut f: Vec<&str> = l.split(',').collect();
        let o = f.remove(op);
        let n = rows.entry(f.join("|")).or_insert(0);
        *n += if o.starts_with('+') { 1 } else { -1 };
    }
    rows.retain(|_, n| *n != 0);
    rows
}

#[test]
fn psql_runs_every_statement_and_a_select_equals_the_sink_folded() {
    let dir = tempdir();
    write_config(dir.path(), &pipeline(), "");
    let server = Server::start(dir.path());
    let (lines, _) = bids(5_000, 11);
    ingest_parallel(&server, &lines, 2);
    let expect = expected(&lines);
    wait_rows(
        &server,
        "SELECT * FROM per_auction ORDER BY auction",
        &view_rows(&expect),
    );

    let sources = rows_of(&server, "SHOW SOURCES");
    assert!(sources[0].starts_with("bid|tcp|auction BIGINT"), "{sources:?}");
    let streams = rows_of(&server, "show streams;");
    assert!(
        streams
            .iter()
            .any(|s| s.starts_with("per_auction|stream|") && s.contains("|t|")),
        "{streams:?}"
    );
    assert!(
        streams
            .iter()
            .any(|s| s.starts_with("totals|stream|") && s.contains("|f|")),
        "{streams:?}"
    );
    let sinks = rows_of(&server, "SHOW SINKS");
    assert!(
        sinks.contains(&"per_auction_file|per_auction|file".to_string()),
        "{sinks:?}"
    );
    let checkpoints = rows_of(&server, "SHOW CHECKPOINTS");
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    assert!(checkpoints[0].split('|').next().unwrap().parse::<u64>().unwrap() >= 1);
    let explain = rows_of(&server, "EXPLAIN per_auction").join("\n");
    assert!(explain.contains("per_auction <- bid"), "{explain}");

    // The view (equal to the input counted, above) against the file
    // sink folded.
    let sink: Vec<String> = folded(&dir.path().join("out/per_auction.csv")).into_keys().collect();
    let mut got = rows_of(&server, "SELECT auction, bids, total FROM per_auction");
    got.sort();
    let mut sink_sorted = sink.clone();
    sink_sorted.sort();
    assert_eq!(got, sink_sorted);
    // A point lookup, a filter, an order with a limit, expressions.
    let (n, t) = expect[&7];
    assert_eq!(
        rows_of(&server, "SELECT bids, total FROM per_auction WHERE auction = 7"),
        vec![format!("{n}|{t}")]
    );
    assert_eq!(
        rows_of(
            &server,
            "SELECT bids FROM per_auction WHERE auction = 7 AND bids > 1000000"
        ),
        Vec::<String>::new()
    );
    let mut top: Vec<(i64, i64)> = expect.iter().map(|(a, (n, _))| (*n, *a)).collect();
    top.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    let want: Vec<String> = top[..3].iter().map(|(n, a)| format!("{a}|{n}")).collect();
    assert_eq!(
        rows_of(
            &server,
            "SELECT auction, bids FROM per_auction ORDER BY bids DESC, auction LIMIT 3"
        ),
        want
    );
    let rich: Vec<String> = expect
        .iter()
        .filter(|(_, (_, t))| *t > 40000)
        .map(|(a, (_, t))| format!("{a}|{}", t * 2))
        .collect();
    assert_eq!(rows_of(&server, "SELECT * FROM rich ORDER BY 1"), rich);
    assert_eq!(
        rows_of(
            &server,
            "SELECT p.auction + 1 AS next, upper('x') FROM per_auction p WHERE p.auction < 2 ORDER BY next"
        ),
        vec!["1|X", "2|X"]
    );

    // Binary results (psycopg's binary cursor, as tokio-postgres and
    // asyncpg ask): the same values as text, typed.
    for (sql, types) in [
        (
            "SELECT auction, bids, total > 1000 AS big, total / 3.0 AS third FROM per_auction ORDER BY auction LIMIT 5",
            vec!["bool", "float", "int"],
        ),
        ("SHOW CHECKPOINTS", vec!["datetime", "float", "int"]),
        ("SHOW STREAMS", vec!["bool", "str"]),
    ] {
        let r = client(&server, &["binary", sql]);
        assert_eq!(r["text"], r["binary"], "{sql}: {r}");
        assert_eq!(r["binary_types"], serde_json::json!(types), "{sql}: {r}");
        assert!(!r["binary"].as_array().unwrap().is_empty(), "{sql}: {r}");
    }

    // Bad SQL: PostgreSQL errors with SQLSTATE and position.
    for (sql, code, text) in [
        ("SELECT nope FROM per_auction", "42703", "LINE 1: SELECT nope"),
        ("SELECT * FROM nowhere", "42P01", "nowhere"),
        ("SELECT * FROM totals", "0A000", "windowed"),
        ("SELECT * FROM bid", "42P01", "is a source"),
        ("INSERT INTO bid VALUES (1, 2, 3)", "0A000", "INSERT is not served"),
        ("SELECT * FROM per_auction WHERE", "42601", "Expected"),
        ("SHOW TABLES", "42601", "SOURCES, STREAMS"),
        (
            "SELECT auction, COUNT(*) FROM per_auction GROUP BY auction",
            "0A000",
            "GROUP BY",
        ),
        ("SUBSCRIBE nothing", "42P01", "nothing"),
        (
            "SELECT total / (bids - bids) FROM per_auction",
            "22000",
            "division by zero",
        ),
    ] {
        let (ok, _, err) = psql(&server, sql);
        assert!(!ok, "{sql} succeeded");
        assert!(err.contains(&format!("ERROR:  {code}")), "{sql}: {err}");
        assert!(err.contains(text), "{sql}: {err}");
    }
    let (_, _, err) = psql(&server, "SELECT nope FROM per_auction");
    // The caret under `nope` (column 8).
    assert!(
        err.contains("LINE 1: SELECT nope FROM per_auction\n               ^"),
        "{err}"
    );
    server.stop();
}

#[test]
fn fifty_clients_query_while_ingest_runs_and_counts_never_go_back() {
    let dir = tempdir();
    write_config(dir.path(), &pipeline(), "");
    let server = Server::start(dir.path());
    let (lines, _) = bids(40_000, 12);
    server.ingest("bid", &lines[..1000]);
    wait_rows(
        &server,
        "SELECT * FROM per_auction ORDER BY auction",
        &view_rows(&expected(&lines[..1000])),
    );
    let source = server.addr("bid").to_string();
    let out = std::thread::scope(|s| {
        let load = s.spawn(|| {
            for chunk in lines[1000..].chunks(3000) {
                assert!(ingest_to(&source, chunk).starts_with("OK"));
            }
        });
        let out = client(&server, &["concurrent", "50", "4"]);
        load.join().unwrap();
        out
    });
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    assert_eq!(out["regressions"], 0, "{out}");
    assert!(out["queries"].as_u64().unwrap() >= 100, "{out}");
    wait_rows(
        &server,
        "SELECT * FROM per_auction ORDER BY auction",
        &view_rows(&expected(&lines)),
    );
    let r = client(
        &server,
        &[
            "select",
            "SELECT auction, bids, total FROM per_auction ORDER BY auction",
        ],
    );
    let want: Vec<serde_json::Value> = expected(&lines)
        .iter()
        .map(|(a, (n, t))| serde_json::json!([a.to_string(), n.to_string(), t.to_string()]))
        .collect();
    assert_eq!(r["rows"], serde_json::Value::Array(want));
    assert_eq!(r["columns"], serde_json::json!(["auction", "bids", "total"]));
    server.stop();
}

#[test]
fn subscribe_streams_a_changelog_until_cancelled() {
    let dir = tempdir();
    write_config(dir.path(), &pipeline(), "");
    let server = Server::start(dir.path());
    let mut sub = Command::new(PYTHON)
        .arg(CLIENT)
        .args([port(&server).as_str(), "subscribe", "per_auction", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sub.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("subscribed"), "{line}");
    // The COPY is sent right after connecting; rows of a new auction
    // until the subscriber has its five and cancels.
    let until = Instant::now() + DEADLINE;
    let mut sent = 0;
    let result = loop {
        let lines: Vec<String> = (0..3)
            .map(|i| format!("7777,{},{}", i + 1, 1_704_067_200_000i64 + sent + i))
            .collect();
        server.ingest("bid", &lines);
        sent += 3;
        if let Ok(Some(_)) = sub.try_wait() {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
            break rest;
        }
        assert!(Instant::now() < until, "the subscriber never had its rows");
    };
    let r: serde_json::Value = serde_json::from_str(result.lines().last().unwrap()).unwrap();
    assert_eq!(r["error"]["sqlstate"], "57014", "{r}");
    let rows = r["rows"].as_array().unwrap();
    assert!(rows.len() >= 5, "{r}");
    // The first row of the new key is +I with one bid, then -U/+U pairs
    // that count up.
    assert_eq!(rows[0][0], "+I", "{r}");
    assert_eq!(rows[0][1], "7777");
    assert_eq!(rows[1][0], "-U");
    assert_eq!(rows[2][0], "+U");
    assert_eq!(rows[2][2], "2");
    server.stop();
}

/// `pg_client.py stalled`: a subscriber that reads nothing until
/// `finish`, started and subscribed.
struct Stalled {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Stalled {
    fn start(server: &Server, stream: &str, env: &[(&str, &str)]) -> Stalled {
        let mut child = Command::new(PYTHON)
            .arg(CLIENT)
            .args([port(server).as_str(), "stalled", stream])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("subscribed"), "{line}");
        Stalled { child, out }
    }

    /// Lets it read what there is; its report (rows, error).
    fn finish(mut self) -> serde_json::Value {
        writeln!(self.child.stdin.take().unwrap()).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        self.child.wait().unwrap();
        serde_json::from_str(rest.lines().last().unwrap()).unwrap()
    }
}

#[test]
fn a_subscriber_that_never_reads_is_cut_and_the_pipeline_goes_on() {
    let dir = tempdir();
    write_config(dir.path(), &pipeline(), "[sql]\nsubscribe_buffer_bytes = 65536\n");
    let server = Server::start(dir.path());
    let sub = Stalled::start(&server, "per_auction", &[]);
    // Far more changes than the socket buffers and the bound hold.
    let (lines, _) = bids(60_000, 13);
    for chunk in lines.chunks(10_000) {
        assert!(server.ingest("bid", chunk).starts_with("OK"));
    }
    // The pipeline went on: the view holds every bid.
    wait_rows(
        &server,
        "SELECT * FROM per_auction ORDER BY auction",
        &view_rows(&expected(&lines)),
    );
    let r = sub.finish();
    assert_eq!(r["error"]["sqlstate"], "54000", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subscribe_buffer_bytes"),
        "{r}"
    );
    assert!(r["rows"].as_u64().unwrap() < 60_000 * 2, "{r}");
    server.stop();
}

#[test]
fn connections_past_the_limit_are_refused_and_scram_checks_the_password() {
    let dir = tempdir();
    write_config(
        dir.path(),
        &pipeline(),
        "[sql]\nconnections_max = 2\nuser = 'ops'\npassword = 's3cret'\n",
    );
    let server = Server::start(dir.path());
    let ok = client(&server, &["password", "ops", "s3cret"]);
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["sources"], 1);
    // libpq reports a failed connection's message, not its SQLSTATE.
    let bad = client(&server, &["password", "ops", "wrong"]);
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("assword authentication failed"),
        "{bad}"
    );
    let who = client(&server, &["password", "someone", "s3cret"]);
    assert!(
        who["message"].as_str().unwrap().contains("authentication failed"),
        "{who}"
    );
    // Two subscribers hold both connections; a third is refused.
    let held: Vec<Stalled> = (0..2)
        .map(|_| Stalled::start(&server, "per_auction", &[("PGPASSWORD", "s3cret"), ("PGUSER", "ops")]))
        .collect();
    let third = client(&server, &["password", "ops", "s3cret"]);
    assert_eq!(third["ok"], false, "{third}");
    assert!(
        third["message"].as_str().unwrap().contains("too many clients"),
        "{third}"
    );
    for mut c in held {
        c.child.kill().unwrap();
        c.child.wait().unwrap();
    }
    server.stop();
}

#[test]
fn a_table_reads_as_its_latest_rows_and_a_reload_ends_subscriptions_not_views() {
    let dir = tempdir();
    let sql = "CREATE TABLE prices (auction BIGINT, price BIGINT, PRIMARY KEY (auction))
         WITH (connector = 'tcp', port = '0', format = 'csv');
         CREATE STREAM dear AS SELECT auction, price FROM prices WHERE price >= 100;\n";
    write_config(dir.path(), sql, "");
    let mut server = Server::start(dir.path());
    // Three versions of key 1, two of key 2, one of key 3.
    let lines: Vec<String> = ["1,10", "2,200", "1,150", "3,30", "2,20", "1,120"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(server.ingest("prices", &lines).starts_with("OK"));
    let latest = vec!["1|120".to_string(), "2|20".to_string(), "3|30".to_string()];
    wait_rows(&server, "SELECT * FROM prices ORDER BY auction", &latest);
    assert_eq!(rows_of(&server, "SELECT * FROM dear"), vec!["1|120"]);
    assert_eq!(
        rows_of(&server, "SELECT price FROM prices WHERE auction = 2"),
        vec!["20"]
    );

    // A subscriber, then a reload that adds a stream: the subscription
    // ends (subscribe again to the new run), the views read on.
    let sub = Stalled::start(&server, "prices", &[]);
    std::fs::write(
        dir.path().join("pipeline.sql"),
        format!("{sql}CREATE STREAM cheap AS SELECT auction FROM prices WHERE price < 100;\n"),
    )
    .unwrap();
    // SAFETY: kill only sends a signal to our child.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGHUP);
    }
    server.wait_for("ready (reloaded)");
    let r = sub.finish();
    assert_eq!(r["error"]["sqlstate"], "55000", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("reloaded"), "{r}");
    wait_rows(&server, "SELECT * FROM prices ORDER BY auction", &latest);
    // The new stream reads the table's state: its view is its definition
    // over the table, rows from before the reload included.
    wait_rows(
        &server,
        "SELECT * FROM cheap ORDER BY 1",
        &["2".to_string(), "3".to_string()],
    );
    server.stop();
}

#[test]
fn a_view_whose_state_did_not_change_is_not_read_again_at_a_newer_checkpoint() {
    let dir = tempdir();
    let sql = "CREATE SOURCE a (k BIGINT NOT NULL, v BIGINT) WITH (connector = 'tcp', port = '0', format = 'csv');
         CREATE SOURCE b (k BIGINT NOT NULL, v BIGINT) WITH (connector = 'tcp', port = '0', format = 'csv');
         CREATE STREAM sa AS SELECT k, SUM(v) AS s FROM a GROUP BY k;
         CREATE STREAM sb AS SELECT k, SUM(v) AS s FROM b GROUP BY k;\n";
    write_config(dir.path(), sql, "");
    let mut server = Server::start_logging(dir.path(), "laminar_reactor::view=debug,warn");
    let reads = |server: &mut Server, stream: &str| {
        let needle = format!("view {stream} at checkpoint");
        server.drain_log().iter().filter(|l| l.contains(&needle)).count()
    };
    assert!(server
        .ingest("b", &["1,10".to_string(), "2,20".to_string()])
        .starts_with("OK"));
    wait_rows(
        &server,
        "SELECT * FROM sb ORDER BY k",
        &["1|10".to_string(), "2|20".to_string()],
    );
    let sb_reads = reads(&mut server, "sb");
    assert!(sb_reads >= 1);
    // Only a changes; checkpoints come and the view of sb stays the one
    // read (the store's index shows its parts unchanged).
    for round in 1..=3 {
        assert!(server.ingest("a", &[format!("7,{round}")]).starts_with("OK"));
        let total = (1..=round).sum::<i64>();
        wait_rows(&server, "SELECT * FROM sa", &[format!("7|{total}")]);
        assert_eq!(rows_of(&server, "SELECT s FROM sb WHERE k = 2"), vec!["20"]);
    }
    let sa_reads = reads(&mut server, "sa");
    assert!(sa_reads >= 3, "{sa_reads}");
    assert_eq!(reads(&mut server, "sb"), sb_reads, "{}", server.log.join("\n"));
    server.stop();
}
