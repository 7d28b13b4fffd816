//! End-to-end tests of the real `laminar` binary: each test writes a SQL
//! script and its inputs into a fresh temporary directory, runs the binary
//! there as the current directory, and checks the exit status, stdout (data
//! only), stderr (errors, warnings, the summary) and the files it wrote.
//! No network and no sleeps: every run is bounded and ends by itself.

use std::path::Path;
use std::process::{Command, Output};

#[path = "common/cli.rs"]
mod harness;

use harness::*;

#[test]
fn run_writes_the_sink_file_and_a_summary_on_stderr_only() {
    // A file-sink pipeline writes exactly the expected rows and reports rows
    // in per source, rows out per sink, elapsed time and rate on stderr,
    // leaving stdout empty.
    let dir = setup(PIPELINE_SQL);
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(read_rows(dir.path(), "out.csv"), sorted_rows(PIPELINE_OUT));
    assert_eq!(stdout(&o), "", "data and summary must never mix");

    let err = stderr(&o);
    let headline = err
        .lines()
        .find(|l| l.starts_with("laminar run pipeline.sql: "))
        .unwrap_or_else(|| panic!("no summary headline in:\n{err}"));
    assert!(headline.contains("6 rows in "), "{headline}");
    assert!(headline.ends_with(" events/s)"), "{headline}");
    let elapsed = headline
        .split(" rows in ")
        .nth(1)
        .and_then(|rest| rest.split(" s (").next())
        .unwrap_or_else(|| panic!("no elapsed seconds in {headline}"));
    let elapsed: f64 = elapsed
        .parse()
        .unwrap_or_else(|_| panic!("elapsed {elapsed:?} is not a number"));
    assert!(elapsed >= 0.0);
    assert!(
        err.lines().any(|l| l.trim() == "source bids: 6 rows, 0 malformed"),
        "{err}"
    );
    assert!(err.lines().any(|l| l.trim() == "sink out -> out.csv: 4 rows"), "{err}");
}

#[test]
fn a_stream_without_a_sink_prints_csv_with_a_header_to_stdout() {
    // The default sink of `laminar run` is stdout: CSV with a header row and
    // no name prefix when only one stream prints.
    let dir = setup(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'bids.csv', header = 'true');
         CREATE STREAM big AS SELECT auction, price FROM bids WHERE price > 100;",
    );
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(stdout(&o), "auction,price\n2,250\n1,120\n1,300\n");
    assert!(!stderr(&o).contains("auction,price"), "data leaked to stderr");
}

#[test]
fn a_first_line_naming_the_columns_is_the_header_unless_header_false() {
    // No header option: bids.csv's first line names the declared columns,
    // so it is the header, and the summary says so. header = 'false'
    // reads it as data: a malformed record.
    let dir = setup(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'bids.csv');
         CREATE STREAM big AS SELECT auction, price FROM bids WHERE price > 100;",
    );
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(stdout(&o), "auction,price\n2,250\n1,120\n1,300\n");
    let err = stderr(&o);
    assert!(
        err.contains("line 1 names the declared columns: read as the header"),
        "{err}"
    );
    assert!(!err.contains("malformed record skipped"), "{err}");
    write(
        dir.path(),
        "pipeline.sql",
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'bids.csv', header = 'false');
         CREATE STREAM big AS SELECT auction, price FROM bids WHERE price > 100;",
    );
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_success(&o);
    let err = stderr(&o);
    assert!(err.contains(":1: malformed record skipped"), "{err}");
    assert!(!err.contains("read as the header"), "{err}");
}

#[test]
fn two_streams_without_sinks_prefix_every_stdout_line_with_the_stream_name() {
    // With two printing streams every stdout line says which stream it
    // belongs to, and each stream's own lines (header first) stay in order.
    let dir = setup(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'bids.csv', header = 'true');
         CREATE STREAM big AS SELECT auction, price FROM bids WHERE price > 100;
         CREATE STREAM three AS SELECT price FROM bids WHERE auction = 3;",
    );
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_success(&o);
    let out = stdout(&o);
    let mut big = Vec::new();
    let mut three = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("big: ") {
            big.push(rest);
        } else if let Some(rest) = line.strip_prefix("three: ") {
            three.push(rest);
        } else {
            panic!("line without a stream prefix: {line:?} in\n{out}");
        }
    }
    assert_eq!(big, ["auction,price", "2,250", "1,120", "1,300"]);
    assert_eq!(three, ["price", "75", "80"]);
}

#[test]
fn relative_paths_in_the_sql_resolve_against_the_current_directory() {
    // Paths in a script resolve against the working directory, not against
    // the directory of the script: the script lives in `sql/` but reads
    // `data/bids.csv` and writes `results/out.csv` relative to the cwd.
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "data/bids.csv", BIDS_CSV);
    let sql = PIPELINE_SQL
        .replace("'bids.csv'", "'data/bids.csv'")
        .replace("'out.csv'", "'results/out.csv'");
    write(dir.path(), "sql/pipeline.sql", &sql);
    let o = laminar(dir.path(), &["run", "--quiet", "sql/pipeline.sql"]);
    assert_success(&o);
    assert_eq!(read_rows(dir.path(), "results/out.csv"), sorted_rows(PIPELINE_OUT));
    assert!(
        !dir.path().join("sql/results").exists(),
        "resolved against the script's directory"
    );
}

#[test]
fn an_unknown_column_is_reported_with_file_line_column_and_statement() {
    // A planning error names the file, the line and column of the bad
    // identifier and the statement, exits non-zero and prints no data.
    let dir = setup(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
WITH (connector = 'file', path = 'bids.csv', header = 'true');
CREATE STREAM q AS
SELECT auction,   prise FROM bids;
",
    );
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_failure(&o);
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: pipeline.sql:4:19: in CREATE STREAM q: unknown column 'prise'")),
        "{err}"
    );
    assert!(!dir.path().join("out.csv").exists());
}

#[test]
fn malformed_records_are_warned_about_skipped_and_dead_lettered() {
    // Bad records do not stop a run: each gets a warning with its physical
    // line number (counting the header and a quoted multi-line field), the
    // good rows all reach the sink, and the dead-letter file holds exactly
    // the bad lines.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "in.csv",
        "k,v,ts\n\
         \"x\ny\",1,2015-07-15 00:00:01\n\
         b,zz,2015-07-15 00:00:02\n\
         c,3,2015-07-15 00:00:03\n\
         d,4\n\
         e,5,2015-07-15 00:00:05\n\
         f,6,yesterday\n\
         g,7,2015-07-15 00:00:07\n",
    );
    write(
        dir.path(),
        "p.sql",
        "CREATE SOURCE t (k VARCHAR, v BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'in.csv', header = 'true', dead_letter = 'dead.txt', validate = 'all');
         CREATE STREAM q AS SELECT k, v FROM t;
         CREATE SINK o FROM q WITH (connector = 'file', path = 'o.csv');",
    );
    let o = laminar(dir.path(), &["run", "p.sql"]);
    assert_success(&o);
    assert_eq!(stdout(&o), "");
    assert_eq!(read(dir.path(), "o.csv"), "k,v\n\"x\ny\",1\nc,3\ne,5\ng,7\n");
    assert_eq!(
        read(dir.path(), "dead.txt"),
        "b,zz,2015-07-15 00:00:02\nd,4\nf,6,yesterday\n"
    );
    let err = stderr(&o);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(|l| {
            l.split(": malformed record skipped: ")
                .next()
                .expect("split yields one part")
        })
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: source t: in.csv:4",
            "warning: source t: in.csv:6",
            "warning: source t: in.csv:8",
        ],
        "{err}"
    );
    assert!(
        err.contains("in.csv:4: malformed record skipped: column 'v' (BIGINT): invalid integer \"zz\""),
        "{err}"
    );
    assert!(
        err.contains("in.csv:6: malformed record skipped: expected 3 fields, found 2"),
        "{err}"
    );
    assert!(err.contains("source t: 4 rows, 3 malformed"), "{err}");
}

#[test]
fn narrowed_sources_give_the_same_rows_in_csv_and_json() {
    // A projection, a GROUP BY and a projection over a window TVF read
    // three of five columns, in another order than declared: rows carry
    // only those three (`explain` says so), and both formats give the
    // rows the declared columns hold.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::from("a,b,c,d,ts\n");
    let mut json = String::new();
    for i in 0..40 {
        let (a, c, ts) = (i % 4, i * 10, 1_436_918_400_000i64 + i * 500);
        csv.push_str(&format!("{a},note {i},{c},{},{ts}\n", i % 2 == 0));
        json.push_str(&format!(
            "{{\"d\":{},\"ts\":{ts},\"c\":{c},\"b\":\"note {i}\",\"a\":{a}}}\n",
            i % 2 == 0
        ));
    }
    write(dir.path(), "in.csv", &csv);
    write(dir.path(), "in.json", &json);
    for format in ["csv", "json"] {
        write(
            dir.path(),
            "p.sql",
            &format!(
                "CREATE SOURCE t (a BIGINT, b VARCHAR, c BIGINT, d BOOLEAN, ts TIMESTAMP,
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                 WITH (connector = 'file', path = 'in.{format}', format = '{format}', header = '{}');
                 CREATE STREAM big AS SELECT c, a FROM t WHERE c >= 370;
                 CREATE STREAM per_a AS SELECT a, COUNT(*) AS n, SUM(c) AS total, window_start
                   FROM TUMBLE(t, ts, INTERVAL '10' SECOND) GROUP BY a, window_start, window_end;
                 CREATE STREAM windowed AS SELECT c, window_end FROM TUMBLE(t, ts, INTERVAL '10' SECOND)
                   WHERE c >= 380;
                 CREATE SINK o1 FROM big WITH (connector = 'file', path = 'big.csv');
                 CREATE SINK o2 FROM per_a WITH (connector = 'file', path = 'per_a.csv');
                 CREATE SINK o3 FROM windowed WITH (connector = 'file', path = 'windowed.csv');",
                format == "csv"
            ),
        );
        let o = laminar(dir.path(), &["explain", "p.sql"]);
        assert_success(&o);
        assert!(
            stdout(&o).contains("reads: a, c, ts (the other columns are checked, not kept; rows carry only these)"),
            "{}",
            stdout(&o)
        );
        let o = laminar(dir.path(), &["run", "p.sql"]);
        assert_success(&o);
        assert_eq!(read(dir.path(), "big.csv"), "c,a\n370,1\n380,2\n390,3\n", "{format}");
        assert!(
            stdout(&laminar(dir.path(), &["explain", "p.sql"]))
                .contains("window: TUMBLE 10 s on ts, adds window_start, window_end\n    output: a, c, ts, window_start, window_end"),
            "the TVF's rows are narrowed too"
        );
        assert_eq!(
            read(dir.path(), "windowed.csv"),
            "c,window_end\n380,2015-07-15 00:00:20.000\n390,2015-07-15 00:00:20.000\n",
            "{format}"
        );
        // 40 rows over 20 s: two windows, five rows of each a in each.
        let sums: Vec<String> = (0..4)
            .flat_map(|a| {
                [0, 1].map(move |w| {
                    let total: i64 = (0..40).filter(|i| i % 4 == a && i / 20 == w).map(|i| i * 10).sum();
                    format!("{a},5,{total},2015-07-15 00:00:{}0.000", w)
                })
            })
            .collect();
        let mut expected = sums;
        expected.sort();
        assert_eq!(
            read_rows(dir.path(), "per_a.csv"),
            format!("a,n,total,window_start\n{}\n", expected.join("\n")),
            "{format}"
        );
    }
}

#[test]
fn columns_no_query_reads_are_checked_unless_validate_read() {
    // By default (`validate = 'all'`) a CSV source checks every column;
    // with `validate = 'read'` it parses only the columns its queries
    // read (and its watermark column): a bad value in another column does
    // not make the record malformed, a wrong field count still does.
    // `explain` says which columns are read, and what becomes of the rest.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "in.csv",
        "k,v,note,ts\n\
         a,1,fine,2015-07-15 00:00:01\n\
         b,2,fine,not a time\n\
         c,x,fine,2015-07-15 00:00:03\n\
         d,4,fine\n\
         e,5,fine,2015-07-15 00:00:05\n",
    );
    for (validate, rows, malformed) in [("read", "a,1\nb,2\ne,5\n", 2), ("all", "a,1\ne,5\n", 3)] {
        write(
            dir.path(),
            "p.sql",
            &format!(
                "CREATE SOURCE t (k VARCHAR, v BIGINT, note VARCHAR, ts TIMESTAMP)
                 WITH (connector = 'file', path = 'in.csv', header = 'true', validate = '{validate}');
                 CREATE STREAM q AS SELECT k, v FROM t WHERE v > 0;
                 CREATE SINK o FROM q WITH (connector = 'file', path = 'o.csv');"
            ),
        );
        let o = laminar(dir.path(), &["run", "p.sql"]);
        assert_success(&o);
        assert_eq!(
            read(dir.path(), "o.csv"),
            format!("k,v\n{rows}"),
            "validate = '{validate}'"
        );
        let err = stderr(&o);
        assert!(
            err.contains(&format!("source t: {} rows, {malformed} malformed", 5 - malformed)),
            "{err}"
        );
        let o = laminar(dir.path(), &["explain", "p.sql"]);
        assert_success(&o);
        let plan = stdout(&o);
        let rest = if validate == "read" {
            "not parsed"
        } else {
            "checked, not kept"
        };
        assert!(
            plan.contains(&format!(
                "reads: k, v (the other columns are {rest}; rows carry only these)"
            )),
            "{plan}"
        );
    }
    write(
        dir.path(),
        "bad.sql",
        "CREATE SOURCE t (k VARCHAR) WITH (connector = 'file', path = 'in.csv', validate = 'some');",
    );
    let o = laminar(dir.path(), &["check", "bad.sql"]);
    assert_failure(&o);
    assert!(
        stderr(&o).contains("validate must be 'read' or 'all', found \"some\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_missing_input_file_fails_naming_the_path() {
    // A source file that does not exist stops the run with an error that
    // names the path, and no panic.
    let dir = setup(&PIPELINE_SQL.replace("'bids.csv'", "'no/such/bids.csv'"));
    let o = laminar(dir.path(), &["run", "pipeline.sql"]);
    assert_failure(&o);
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("no/such/bids.csv"), "{err}");
}

#[test]
fn check_says_ok_for_a_good_script_and_locates_the_error_in_a_bad_one() {
    // `check` plans without running: ok on stdout for a good script (and no
    // sink file written), the located error and a non-zero exit for a bad one.
    let dir = setup(PIPELINE_SQL);
    let o = laminar(dir.path(), &["check", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(stdout(&o), "pipeline.sql: ok (1 sources, 1 operators, 1 sinks)\n");
    assert!(!dir.path().join("out.csv").exists(), "check must not run the pipeline");

    write(
        dir.path(),
        "bad.sql",
        "CREATE SOURCE bids (auction BIGINT, ts TIMESTAMP)\nWITH (connector = 'file', path = 'bids.csv');\n\
         CREATE STREAM q AS SELECT auction, bidder FROM bids;\n",
    );
    let o = laminar(dir.path(), &["check", "bad.sql"]);
    assert_failure(&o);
    let err = stderr(&o);
    assert!(
        err.starts_with("error: bad.sql:3:36: in CREATE STREAM q: unknown column 'bidder'"),
        "{err}"
    );
}

#[test]
fn explain_prints_the_source_and_the_operators() {
    // `explain` prints the plan in words and SQL, without running
    // anything: the source, the window aggregate with its keys,
    // aggregates, emit mode and shard spread, and the sink.
    let dir = setup(PIPELINE_SQL);
    let o = laminar(dir.path(), &["explain", "pipeline.sql"]);
    assert_success(&o);
    let out = stdout(&o);
    for expected in [
        "source bids: file bids.csv (csv, header, delimiter ',')",
        "    columns: auction BIGINT, price BIGINT, ts TIMESTAMP",
        "    watermark: ts - 1 s",
        "#0 totals <- bids: window aggregate over TUMBLE 5 s on ts",
        "    GROUP BY auction",
        "    aggregates: COUNT(*), SUM(price)",
        "    SELECT auction, COUNT(*), SUM(price), window_start",
        "    EMIT ON WINDOW CLOSE (final rows)",
        "    shards: every shard, rows exchanged by hash of (auction)",
        "sink out <- #0 (totals): file out.csv (csv), written by shard 0",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }
    // No Rust Debug output.
    for debug in ["Some(", "{ ", "Tumble {", "delimiter: 44"] {
        assert!(!out.contains(debug), "{debug:?} in\n{out}");
    }
    assert!(
        !dir.path().join("out.csv").exists(),
        "explain must not run the pipeline"
    );
}

#[test]
fn the_shard_count_does_not_change_the_sink_file() {
    let four = "4";
    // Results never depend on the shard count: a keyed window aggregate over
    // many keys writes the same rows with 1 and 4 shards (the same multiset;
    // rows of different keys may interleave differently).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::from("k,v,ts\n");
    let mut x: u64 = 12345;
    for i in 0..2_000u64 {
        // A small LCG: deterministic keys and values without a PRNG crate.
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = (x >> 33) % 37;
        let value = (x >> 17) % 1000;
        csv += &format!("k{key},{value},{}\n", 1_436_918_400_000 + i * 97);
    }
    write(dir.path(), "in.csv", &csv);
    let sql = |out: &str| {
        format!(
            "CREATE SOURCE t (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'file', path = 'in.csv', header = 'true');
             CREATE STREAM s AS SELECT k, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top, window_start
             FROM TUMBLE(t, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end;
             CREATE SINK o FROM s WITH (connector = 'file', path = '{out}');"
        )
    };
    write(dir.path(), "one.sql", &sql("one.csv"));
    write(dir.path(), "four.sql", &sql("four.csv"));
    assert_success(&laminar(dir.path(), &["run", "--quiet", "--shards", "1", "one.sql"]));
    assert_success(&laminar(dir.path(), &["run", "--quiet", "--shards", four, "four.sql"]));
    let one = read(dir.path(), "one.csv");
    assert!(one.lines().count() > 100, "too little output to compare:\n{one}");
    assert_eq!(sorted_rows(&one), read_rows(dir.path(), "four.csv"));
}

#[test]
fn a_failing_sink_stops_every_shard_and_names_the_cause() {
    // /dev/full accepts the open and fails the writes. Whichever shard
    // fails, the run ends (no shard waits for a peer that gave up) and the
    // message is the real cause, not a peer's "another shard failed".
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = setup(
        "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, date_time TIMESTAMP,
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
         WITH (connector = 'nexmark', kind = 'bid', events = '300000', rate = '10000', seed = '7');
         CREATE STREAM per_auction AS SELECT auction, COUNT(*) AS bids, window_start
         FROM TUMBLE(bid, date_time, INTERVAL '1' SECOND) GROUP BY auction, window_start, window_end;
         CREATE SINK o FROM per_auction WITH (connector = 'file', path = '/dev/full');",
    );
    for shards in ["1", "2", "4"] {
        let o = laminar(dir.path(), &["run", "--quiet", "--shards", shards, "pipeline.sql"]);
        assert_failure(&o);
        let err = stderr(&o);
        assert!(
            err.contains("sink file /dev/full: No space left on device"),
            "{shards} shards: {err}"
        );
        assert!(!err.contains("another shard failed"), "{shards} shards: {err}");
    }
}

#[test]
fn quiet_prints_no_summary() {
    // `--quiet` silences the summary (and the progress bar): a clean run
    // writes its sink and nothing at all to stderr or stdout.
    let dir = setup(PIPELINE_SQL);
    let o = laminar(dir.path(), &["run", "--quiet", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(stderr(&o), "");
    assert_eq!(stdout(&o), "");
    assert_eq!(read_rows(dir.path(), "out.csv"), sorted_rows(PIPELINE_OUT));
}

#[test]
fn a_nexmark_run_completes_and_is_deterministic() {
    // The built-in generator is seeded: two runs of the same script produce
    // the same rows (on several shards, rows of different keys may reach
    // the sink in another order), and the run ends by itself with every
    // window closed.
    let sql = "CREATE SOURCE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP,
                   WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH (connector = 'nexmark', kind = 'bid', events = '5000');
               CREATE STREAM c AS SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start
               FROM TUMBLE(bid, date_time, INTERVAL '1' SECOND) GROUP BY auction, window_start, window_end;
               CREATE SINK o FROM c WITH (connector = 'file', path = 'nexmark.csv');";
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "nexmark.sql", sql);
        let o = laminar(dir.path(), &["run", "nexmark.sql"]);
        assert_success(&o);
        assert_eq!(stdout(&o), "");
        assert!(stderr(&o).contains("source bid: "), "{}", stderr(&o));
        outputs.push(std::fs::read(dir.path().join("nexmark.csv")).expect("sink file"));
    }
    let text = String::from_utf8(outputs[0].clone()).expect("UTF-8");
    assert!(text.starts_with("auction,bids,total,window_start\n"), "{text}");
    assert!(text.lines().count() > 10, "{text}");
    let rows = |b: &[u8]| sorted_rows(std::str::from_utf8(b).expect("UTF-8"));
    assert!(rows(&outputs[0]) == rows(&outputs[1]), "two nexmark runs differ");
}

#[test]
fn an_empty_script_fails_with_a_clear_message() {
    // An empty file is a user mistake: a located error, no panic.
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "empty.sql", "");
    for cmd in ["run", "check", "explain"] {
        let o = laminar(dir.path(), &[cmd, "empty.sql"]);
        assert_failure(&o);
        assert!(
            stderr(&o).starts_with("error: empty.sql:1:1: ") && stderr(&o).contains("no statements"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_script_of_only_comments_fails_with_a_clear_message() {
    // Comments and blank lines alone are no statements: a clear error, no panic.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "comments.sql",
        "-- a comment\n\n/* a block\n   comment */\n  -- another\n",
    );
    for cmd in ["run", "check", "explain"] {
        let o = laminar(dir.path(), &[cmd, "comments.sql"]);
        assert_failure(&o);
        assert!(
            stderr(&o).starts_with("error: comments.sql:") && stderr(&o).contains("no statements"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_sink_path_in_missing_directories_is_created() {
    // A file sink creates the directories on its path that do not exist yet.
    let dir = setup(&PIPELINE_SQL.replace("'out.csv'", "'out/sub/x.csv'"));
    assert!(!dir.path().join("out").exists());
    let o = laminar(dir.path(), &["run", "--quiet", "pipeline.sql"]);
    assert_success(&o);
    assert_eq!(read_rows(dir.path(), "out/sub/x.csv"), sorted_rows(PIPELINE_OUT));
}

/// Peak resident memory of a running process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_slow_sink_holds_the_source_back_and_memory_stays_bounded() {
    // The sink is a FIFO that this test drains slowly. Every input row
    // makes a changelog row that crosses the mesh to the sink's shard, so
    // a run that buffered instead of waiting would hold most of its
    // output (about 140 MB) in memory. Bounded channels and outboxes must
    // hold the source back instead. Measured 2026-11-24: 78 MiB peak (the
    // aggregate's state grows with the input); with the source never
    // pausing, 183 MiB.
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("out.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    write(
        dir.path(),
        "pipeline.sql",
        // Sources are spread over shards in order: `bid` is read by shard
        // 1, while the sink lives on shard 0, so only the mesh can hold
        // the source back.
        "CREATE SOURCE first (auction BIGINT NOT NULL, date_time TIMESTAMP)
         WITH (connector = 'nexmark', kind = 'bid', events = '10', seed = '1');
         CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, date_time TIMESTAMP,
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
         WITH (connector = 'nexmark', kind = 'bid', events = '4000000', rate = '100000', seed = '3');
         CREATE STREAM counts AS SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction;
         CREATE SINK o FROM counts WITH (connector = 'file', path = 'out.fifo');",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_laminar"))
        .args(["run", "--quiet", "--shards", "2", "--batch-rows", "256", "pipeline.sql"])
        .current_dir(dir.path())
        .env_remove("LAMINAR_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the laminar binary starts");
    // Opening blocks until laminar opens its end.
    let mut reader = std::fs::File::open(&fifo).expect("open the FIFO");
    let mut buf = vec![0u8; 64 << 10];
    let (mut total, mut peak_kb, mut reads) = (0u64, 0u64, 0u64);
    loop {
        let n = reader.read(&mut buf).expect("read the FIFO");
        if n == 0 {
            break;
        }
        total += n as u64;
        reads += 1;
        if reads % 4 == 0 {
            peak_kb = peak_kb.max(peak_rss_kb(child.id()).unwrap_or(0));
            // A slow consumer: pacing, not synchronisation.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let out = child.wait_with_output().expect("laminar exits");
    assert!(
        out.status.success(),
        "laminar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "peak RSS {} MiB while a slow sink drained {} MiB",
        peak_kb >> 10,
        total >> 20
    );
    assert!(total > 120 << 20, "expected a large changelog, got {total} bytes");
    assert!(peak_kb > 0, "the peak RSS was sampled");
    assert!(
        peak_kb < 128 << 10,
        "peak RSS {} MiB while a slow sink drained {} MiB",
        peak_kb >> 10,
        total >> 20
    );
}

#[test]
fn emit_every_emits_while_running_and_folds_to_the_final_answer() {
    // Processing-time emission through the real runtime and wall clock.
    // The run takes hundreds of milliseconds, so a 20 ms interval fires
    // many times before the input ends: the changelog has updates, and
    // folded it must equal the final answer the same query gives under
    // EMIT ON WINDOW CLOSE. (That a tick is due is what the runtime, not
    // this test, decides; the exact rows are tested with a driven clock in
    // tests/tests/stream_clauses.rs.)
    let query = "SELECT auction % 4 AS bucket, COUNT(*) AS n, MAX(price) AS top FROM bid GROUP BY auction % 4";
    let sql = format!(
        "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, date_time TIMESTAMP,
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
         WITH (connector = 'nexmark', kind = 'bid', events = '1000000', seed = '7');
         CREATE STREAM fin AS {query} EMIT ON WINDOW CLOSE;
         CREATE STREAM every AS {query} EMIT EVERY INTERVAL '20' MILLISECOND;
         CREATE SINK f FROM fin WITH (connector = 'file', path = 'fin.csv');
         CREATE SINK e FROM every WITH (connector = 'file', path = 'every.csv');"
    );
    let dir = setup(&sql);
    for shards in ["1", "2"] {
        let o = laminar(dir.path(), &["run", "--quiet", "--shards", shards, "pipeline.sql"]);
        assert_success(&o);
        let every = read(dir.path(), "every.csv");
        let mut lines = every.lines();
        assert_eq!(lines.next(), Some("op,bucket,n,top"));
        let mut folded: std::collections::BTreeMap<String, i64> = Default::default();
        let mut updates = 0;
        for line in lines {
            let (op, row) = line.split_once(',').expect("op column");
            let n = folded.entry(row.to_string()).or_insert(0);
            match op {
                "+I" | "+U" => *n += 1,
                "-U" | "-D" => {
                    *n -= 1;
                    updates += 1;
                }
                other => panic!("unknown op {other} in {line}"),
            }
        }
        let folded: Vec<String> = folded
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .inspect(|(row, n)| assert_eq!(*n, 1, "{row} folds to {n}"))
            .map(|(row, _)| row)
            .collect();
        let folded: String = folded.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(
            format!("bucket,n,top\n{folded}"),
            read_rows(dir.path(), "fin.csv"),
            "{shards} shards"
        );
        assert!(updates > 0, "{shards} shards: no tick emitted before the end:\n{every}");
    }
}

#[test]
fn a_stream_that_is_its_input_unchanged_still_prints() {
    // `SELECT *` plans no operator of its own; the stream must still be a
    // stream of its own (it printed nothing when its input had a reader).
    // `everything` is read by `again`, so only `again` prints.
    let dir = setup(
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP)
         WITH (connector = 'file', path = 'bids.csv', format = 'csv', header = 'true');
         CREATE STREAM everything AS SELECT * FROM bids;
         CREATE STREAM again AS SELECT * FROM everything;",
    );
    let o = laminar(dir.path(), &["run", "--quiet", "--shards", "1", "pipeline.sql"]);
    assert_success(&o);
    let expected: String = BIDS_CSV
        .lines()
        .map(|l| match l.rsplit_once(',') {
            Some((head, ts)) if ts.starts_with("2015") => format!("{head},{ts}.000\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_eq!(stdout(&o), expected);
}

#[test]
fn a_file_read_by_every_shard_gives_the_in_order_results_and_line_numbers() {
    // Chunks of 16 bytes: a few records each, quoted fields spanning
    // lines, malformed records, late records and blank lines across the
    // chunk bounds. Every shard reads a part; the output, the late count
    // and each warning's line number must equal one shard reading it all.
    let mut csv = String::from("k,v,ts\n");
    for i in 0..300 {
        let ts = 1_000 + i * 100 - if i % 7 == 3 { 5_000 } else { 0 };
        match i % 23 {
            5 => csv.push_str(&format!("k{},oops,{ts}\n", i % 5)),
            11 => csv.push_str(&format!("\"k\n{}\",{i},{ts}\n", i % 5)),
            // A quoted field over several chunks, with a delimiter and
            // an escaped quote inside.
            13 if i % 2 == 0 => csv.push_str(&format!("\"k\n\n,\"\"\n{}\n\n\n\n\",{i},{ts}\r\n", "x".repeat(40))),
            17 => csv.push('\n'),
            _ => csv.push_str(&format!("k{},{i},{ts}\n", i % 5)),
        }
    }
    let dir = setup(
        "CREATE SOURCE t (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'file', path = 't.csv', format = 'csv', header = 'true');
         CREATE STREAM s AS SELECT k, COUNT(*) AS n, SUM(v) AS total, window_start
         FROM TUMBLE(t, ts, INTERVAL '2' SECOND) GROUP BY k, window_start, window_end;
         CREATE SINK o FROM s WITH (connector = 'file', path = 'out.csv');",
    );
    write(dir.path(), "t.csv", &csv);
    let warnings = |o: &Output| -> Vec<String> {
        let mut w: Vec<String> = stderr(o)
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .map(String::from)
            .collect();
        w.sort();
        w
    };
    let late = |o: &Output| {
        stderr(o)
            .lines()
            .find(|l| l.contains("late rows dropped"))
            .map(String::from)
    };
    let one = laminar(dir.path(), &["run", "--shards", "1", "pipeline.sql"]);
    assert_success(&one);
    let expected = read_rows(dir.path(), "out.csv");
    assert!(late(&one).is_some(), "the input has late rows: {}", stderr(&one));
    assert_eq!(warnings(&one).len(), 13, "{}", stderr(&one));
    for shards in ["2", "4"] {
        let o = laminar(
            dir.path(),
            &[
                "run",
                "--shards",
                shards,
                "--split-bytes-min",
                "0",
                "--split-chunk-bytes",
                "16",
                "pipeline.sql",
            ],
        );
        assert_success(&o);
        assert_eq!(read_rows(dir.path(), "out.csv"), expected, "{shards} shards");
        assert_eq!(warnings(&o), warnings(&one), "{shards} shards");
        assert_eq!(late(&o), late(&one), "{shards} shards");
    }
}

/// One million records with 1% garbage of every kind the decoders refuse,
/// in CSV and in JSON lines: every good record is counted in the result,
/// every bad one is counted, reported and dead-lettered unchanged, on 1 and
/// 2 shards.
#[test]
fn one_percent_garbage_in_a_million_records_loses_no_good_record() {
    const RECORDS: u64 = 1_000_000;
    // Garbage a CSV decoder must refuse without touching its neighbours
    // (a stray quote opening a field would legitimately swallow the next
    // lines as one quoted value, so none opens a field).
    let csv_garbage = [
        "k1,oops,2015-07-15 00:00:01".to_string(),
        "k2,5".to_string(),
        "k3,5,yesterday".to_string(),
        "k4,5,2015-07-15 00:00:01,extra".to_string(),
        "k5,99999999999999999999,2015-07-15 00:00:01".to_string(),
        ",,,,".to_string(),
        "k\u{7}6,x\"y,2015-13-40 25:61:61".to_string(),
    ];
    let json_garbage = [
        "{\"k\":\"k1\",\"v\":\"oops\",\"ts\":\"2015-07-15 00:00:01\"}".to_string(),
        "{\"k\":\"k2\",\"v\":5".to_string(),
        "not json at all".to_string(),
        "{\"k\":\"k3\",\"v\":5,\"ts\":\"yesterday\"}".to_string(),
        "{\"k\":\"k4\",\"v\":1e999,\"ts\":1436918400000}".to_string(),
        "[1,2,3]".to_string(),
        "{\"k\":\"k5\",\"v\":5,\"ts\":1436918400000,}".to_string(),
    ];
    for format in ["csv", "json"] {
        let mut input = String::with_capacity(40 << 20);
        let mut garbage_lines = Vec::new();
        let (mut count, mut total) = ([0u64; 10], [0i64; 10]);
        if format == "csv" {
            input.push_str("k,v,ts\n");
        }
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for i in 0..RECORDS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng.is_multiple_of(100) {
                let g = if format == "csv" {
                    &csv_garbage[(rng / 100 % csv_garbage.len() as u64) as usize]
                } else {
                    &json_garbage[(rng / 100 % json_garbage.len() as u64) as usize]
                };
                input.push_str(g);
                input.push('\n');
                garbage_lines.push(g.clone());
                continue;
            }
            let key = (rng >> 20) % 10;
            let v = (rng >> 40) as i64 % 1000 - 500;
            count[key as usize] += 1;
            total[key as usize] += v;
            let ts = 1_436_918_400_000 + i as i64;
            if format == "csv" {
                input.push_str(&format!("k{key},{v},{ts}\n"));
            } else {
                input.push_str(&format!("{{\"k\":\"k{key}\",\"v\":{v},\"ts\":{ts}}}\n"));
            }
        }
        let dir = setup(&format!(
            "CREATE SOURCE t (k VARCHAR NOT NULL, v BIGINT, ts TIMESTAMP NOT NULL)
             WITH (connector = 'file', path = 'in.{format}', format = '{format}', header = '{}', dead_letter = 'dead.txt', validate = 'all');
             CREATE STREAM s AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY k EMIT ON WINDOW CLOSE;
             CREATE SINK o FROM s WITH (connector = 'file', path = 'out.csv');",
            format == "csv"
        ));
        write(dir.path(), &format!("in.{format}"), &input);
        let mut expected: Vec<String> = (0..10)
            .filter(|&k| count[k] > 0)
            .map(|k| format!("k{k},{},{}", count[k], total[k]))
            .collect();
        expected.sort();
        let expected = format!("k,n,total\n{}\n", expected.join("\n"));
        for shards in ["1", "2"] {
            let o = laminar(dir.path(), &["run", "--shards", shards, "pipeline.sql"]);
            assert_success(&o);
            assert_eq!(read_rows(dir.path(), "out.csv"), expected, "{format}, {shards} shards");
            let err = stderr(&o);
            assert!(
                err.contains(&format!("{} malformed", garbage_lines.len())),
                "{format}: {} garbage records, summary:\n{}",
                garbage_lines.len(),
                err.lines().rev().take(6).collect::<Vec<_>>().join("\n")
            );
            assert_eq!(
                err.lines().filter(|l| l.starts_with("warning:")).count(),
                100,
                "the first 100 are reported"
            );
            let dead = read(dir.path(), "dead.txt");
            assert_eq!(
                dead.lines().collect::<Vec<_>>(),
                garbage_lines,
                "{format}: dead letters, in order"
            );
        }
    }
}

#[test]
fn rows_between_hop_windows_are_counted_as_in_no_window_not_late() {
    // HOP(slide 10 s, size 5 s): [0, 5), [10, 15), … Rows at 7 s and 8 s
    // fall in no window; none is late. The same on 1 and 2 shards (the
    // second exchanges partial aggregates).
    let dir = setup(
        "CREATE SOURCE t (k VARCHAR, ts BIGINT, WATERMARK FOR ts AS ts)
         WITH (connector = 'file', path = 't.csv', header = 'true');
         CREATE STREAM s AS SELECT k, COUNT(*) AS n, window_start
         FROM HOP(t, ts, INTERVAL '10' SECOND, INTERVAL '5' SECOND) GROUP BY k, window_start, window_end;
         CREATE SINK o FROM s WITH (connector = 'file', path = 'out.csv');",
    );
    write(dir.path(), "t.csv", "k,ts\na,1000\na,7000\nb,8000\na,12000\n");
    for shards in ["1", "2"] {
        let o = laminar(dir.path(), &["run", "--shards", shards, "pipeline.sql"]);
        assert_success(&o);
        let err = stderr(&o);
        assert!(
            err.contains("stream s: 4 rows in, 2 rows out, 2 rows in no window (between HOP windows: slide > size)"),
            "{err}"
        );
        assert!(!err.contains("late"), "{err}");
        assert_eq!(
            read_rows(dir.path(), "out.csv"),
            "k,n,window_start\na,1,1970-01-01 00:00:00.000\na,1,1970-01-01 00:00:10.000\n"
        );
    }
}

#[test]
fn explain_names_join_kinds_conditions_and_tables() {
    let dir = setup(
        "CREATE TABLE names (id BIGINT, name VARCHAR, PRIMARY KEY (id))
         WITH (connector = 'file', path = 'names.csv', header = 'true');
         CREATE SOURCE a (k BIGINT, v VARCHAR, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'file', path = 'a.csv', header = 'true');
         CREATE SOURCE b (k BIGINT, w VARCHAR, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = 'b.csv', header = 'true');
         CREATE STREAM named_left AS SELECT a.v, n.name FROM a LEFT JOIN names n ON a.k = n.id;
         CREATE STREAM left_j AS SELECT a.v, b.w FROM a LEFT JOIN b
         ON b.k = a.k AND b.ts >= a.ts - INTERVAL '1' SECOND AND b.ts <= a.ts + INTERVAL '5' SECOND AND b.w <> a.v;
         CREATE SINK s2 FROM named_left WITH (connector = 'file', path = 'named_left.csv');
         CREATE SINK l FROM left_j WITH (connector = 'file', path = 'left.csv');",
    );
    let o = laminar(dir.path(), &["explain", "pipeline.sql"]);
    assert_success(&o);
    let out = stdout(&o);
    for expected in [
        "#0 names <- names: table: the latest row per PRIMARY KEY (id), as a changelog",
        "#1 named_left <- a, #0 (names): left lookup join on a table (l: a, r: #0 (names))",
        "    ON l.k = r.id",
        "#3 left_j <- a, b: left outer join (l: a, r: b)",
        "    r.ts - l.ts in [-1 s, 5 s]",
        "    AND (r.w <> l.v)",
        "sink l <- #4 (left_j): file left.csv (csv), written by shard 0",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }
}
