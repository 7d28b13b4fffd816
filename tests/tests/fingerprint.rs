//! A state directory belongs to one pipeline: a restart whose SQL differs
//! in anything that shapes state or results is refused (the plan's
//! fingerprint, a hash of `laminar explain`, differs), and one that differs
//! only in layout (whitespace, comments, letter case of keywords) is not.
//! Each kind of edit is one case here; `bin/tests/cli.rs` checks the
//! refusal end to end.

use laminar_reactor::checkpoint::plan_fingerprint;
use laminar_sql::{plan_script, PlanOptions};

/// A pipeline with a knob of each kind; `edit` replaces one piece of it.
const BASE: &str = "
CREATE SOURCE t (k VARCHAR NOT NULL, v BIGINT, d DOUBLE, s VARCHAR, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH (connector = 'file', path = 't.csv', header = 'true', delimiter = ',', validate = 'all');
CREATE SOURCE u (k VARCHAR, w BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
WITH (connector = 'file', path = 'u.csv');
CREATE STREAM big AS SELECT k, UPPER(s) AS s2, CAST(d AS BIGINT) AS di FROM t
    WHERE v > 900 AND s LIKE 'a%' AND regexp_match(s, '^a[0-9]+$');
CREATE STREAM per_k AS SELECT k, COUNT(*) AS n, SUM(v) AS total, window_start
    FROM TUMBLE(t, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end
    HAVING COUNT(*) > 2 EMIT ON WINDOW CLOSE;
CREATE STREAM hops AS SELECT k, MAX(v) AS m, window_start
    FROM HOP(t, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end
    ALLOW LATENESS INTERVAL '1' SECOND;
CREATE STREAM sess AS SELECT k, COUNT(*) AS n, window_start, window_end
    FROM SESSION(t, ts, INTERVAL '5' SECOND) GROUP BY k, window_start, window_end;
CREATE STREAM j AS SELECT t.k, t.v, u.w FROM t JOIN u
    ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '2' SECOND;
CREATE STREAM parts AS SELECT k, EXTRACT(HOUR FROM ts) AS h, date_trunc('minute', ts) AS m FROM t;
CREATE SINK o1 FROM big WITH (connector = 'file', path = 'big.csv', format = 'csv');
CREATE SINK o2 FROM per_k WITH (connector = 'file', path = 'per_k.csv');
";

fn fingerprint(sql: &str) -> u64 {
    let plan = plan_script(sql, PlanOptions::default()).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    plan_fingerprint(&plan)
}

#[test]
fn every_edit_that_shapes_state_or_results_changes_the_fingerprint() {
    let base = fingerprint(BASE);
    let edits = [
        ("a literal", "v > 900", "v > 500"),
        ("a string literal", "LIKE 'a%'", "LIKE 'b%'"),
        ("a regular expression", "'^a[0-9]+$'", "'^a[0-9]*$'"),
        ("a function", "UPPER(s)", "LOWER(s)"),
        ("a cast", "CAST(d AS BIGINT)", "CAST(d AS VARCHAR)"),
        ("an extract field", "EXTRACT(HOUR FROM ts)", "EXTRACT(MINUTE FROM ts)"),
        (
            "a truncation unit",
            "date_trunc('minute', ts)",
            "date_trunc('hour', ts)",
        ),
        (
            "a window size",
            "INTERVAL '10' SECOND) GROUP BY k, window_start, window_end\n    HAVING",
            "INTERVAL '20' SECOND) GROUP BY k, window_start, window_end\n    HAVING",
        ),
        (
            "a hop slide",
            "INTERVAL '2' SECOND, INTERVAL '10' SECOND",
            "INTERVAL '5' SECOND, INTERVAL '10' SECOND",
        ),
        (
            "a session gap",
            "INTERVAL '5' SECOND) GROUP BY",
            "INTERVAL '6' SECOND) GROUP BY",
        ),
        ("a HAVING", "HAVING COUNT(*) > 2", "HAVING COUNT(*) > 3"),
        ("an emit mode", "EMIT ON WINDOW CLOSE;", "EMIT CHANGES;"),
        (
            "a lateness",
            "ALLOW LATENESS INTERVAL '1' SECOND",
            "ALLOW LATENESS INTERVAL '3' SECOND",
        ),
        ("an aggregate", "SUM(v) AS total", "AVG(v) AS total"),
        (
            "a join bound",
            "t.ts + INTERVAL '2' SECOND",
            "t.ts + INTERVAL '3' SECOND",
        ),
        ("a join kind", "FROM t JOIN u", "FROM t LEFT JOIN u"),
        (
            "a watermark delay",
            "ts - INTERVAL '1' SECOND)",
            "ts - INTERVAL '2' SECOND)",
        ),
        ("a column type", "d DOUBLE", "d BIGINT"),
        ("NOT NULL", "k VARCHAR NOT NULL", "k VARCHAR"),
        ("a source path", "path = 't.csv'", "path = 't2.csv'"),
        ("a header option", "header = 'true'", "header = 'false'"),
        ("a delimiter", "delimiter = ','", "delimiter = ';'"),
        ("validation", "validate = 'all'", "validate = 'read'"),
        ("a sink path", "path = 'big.csv'", "path = 'big2.csv'"),
        (
            "a sink format",
            "format = 'csv');\nCREATE SINK o2",
            "format = 'json');\nCREATE SINK o2",
        ),
        ("an output name", "COUNT(*) AS n, SUM(v)", "COUNT(*) AS cnt, SUM(v)"),
    ];
    for (what, from, to) in edits {
        assert!(BASE.contains(from), "{what}: {from:?} is not in the base script");
        let edited = BASE.replacen(from, to, 1);
        assert_ne!(
            fingerprint(&edited),
            base,
            "editing {what} ({from:?} -> {to:?}) left the fingerprint alone: a restart would resume on state of another pipeline"
        );
    }
}

#[test]
fn layout_alone_keeps_the_fingerprint() {
    let base = fingerprint(BASE);
    let spaced = BASE.replace(" AS ", "   AS\n  ").replace(", ", ",\n\t");
    let commented = format!(
        "-- the pipeline\n{}\n/* end */",
        BASE.replace("WHERE", "-- filter\nWHERE")
    );
    let lower_keywords = BASE
        .replace("SELECT", "select")
        .replace("FROM", "from")
        .replace("WHERE", "where")
        .replace("GROUP BY", "group by");
    for (what, sql) in [
        ("whitespace", spaced),
        ("comments", commented),
        ("keyword case", lower_keywords),
    ] {
        assert_eq!(fingerprint(&sql), base, "{what} changed the fingerprint");
    }
}
