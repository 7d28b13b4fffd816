//! Stable identities (`laminar_exec::identity`): every edit that shapes
//! a stream's state or results changes that stream's identity, and those
//! of the streams that read it, and nothing else's; a restart refuses
//! the edited ones (`laminar_reactor::evolve`, `tests/evolution.rs`).
//! Layout, comments, keyword case, statement order and streams added
//! elsewhere change no identity, not even where they change how the plan
//! is optimised (a source read by fewer columns, an aggregate read by a
//! top-N only). Each kind of edit is one case here.

use std::collections::BTreeMap;

use laminar_exec::identity::DefinitionKind;
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

fn plan(sql: &str) -> laminar_exec::plan::PhysicalPlan {
    plan_script(sql, PlanOptions::default()).unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// Every definition's identity by name (sources also as `NAME@position`).
fn identities(sql: &str) -> BTreeMap<String, u64> {
    let plan = plan(sql);
    let id = plan.identity();
    let mut out = BTreeMap::new();
    for d in &id.definitions {
        match d.kind {
            DefinitionKind::Source => {
                out.insert(d.name.clone(), id.sources[d.sources.start]);
                out.insert(format!("{}@position", d.name), id.source_positions[d.sources.start]);
            }
            DefinitionKind::Sink => {
                out.insert(d.name.clone(), id.sinks[d.sinks.start]);
            }
            DefinitionKind::Stream | DefinitionKind::Table => {
                out.insert(d.name.clone(), id.definition_identity(d));
            }
        }
    }
    out
}

fn changed(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Everything that reads `t`, and `t` itself.
const T_ALL: &[&str] = &["big", "hops", "j", "parts", "per_k", "sess", "t"];
/// `T_ALL` when the edit also moves what `t`'s positions mean.
const T_MOVED: &[&str] = &["big", "hops", "j", "parts", "per_k", "sess", "t", "t@position"];

#[test]
fn every_edit_changes_the_identity_of_what_it_edits_and_of_its_readers_only() {
    let base = identities(BASE);
    let fingerprint = plan_fingerprint(&plan(BASE));
    let edits: [(&str, &str, &str, &[&str]); 26] = [
        ("a literal", "v > 900", "v > 500", &["big"]),
        ("a string literal", "LIKE 'a%'", "LIKE 'b%'", &["big"]),
        ("a regular expression", "'^a[0-9]+$'", "'^a[0-9]*$'", &["big"]),
        ("a function", "UPPER(s)", "LOWER(s)", &["big"]),
        ("a cast", "CAST(d AS BIGINT)", "CAST(d AS VARCHAR)", &["big"]),
        (
            "an extract field",
            "EXTRACT(HOUR FROM ts)",
            "EXTRACT(MINUTE FROM ts)",
            &["parts"],
        ),
        (
            "a truncation unit",
            "date_trunc('minute', ts)",
            "date_trunc('hour', ts)",
            &["parts"],
        ),
        (
            "a window size",
            "INTERVAL '10' SECOND) GROUP BY k, window_start, window_end\n    HAVING",
            "INTERVAL '20' SECOND) GROUP BY k, window_start, window_end\n    HAVING",
            &["per_k"],
        ),
        (
            "a hop slide",
            "INTERVAL '2' SECOND, INTERVAL '10' SECOND",
            "INTERVAL '5' SECOND, INTERVAL '10' SECOND",
            &["hops"],
        ),
        (
            "a session gap",
            "INTERVAL '5' SECOND) GROUP BY",
            "INTERVAL '6' SECOND) GROUP BY",
            &["sess"],
        ),
        ("a HAVING", "HAVING COUNT(*) > 2", "HAVING COUNT(*) > 3", &["per_k"]),
        ("an emit mode", "EMIT ON WINDOW CLOSE;", "EMIT CHANGES;", &["per_k"]),
        (
            "a lateness",
            "ALLOW LATENESS INTERVAL '1' SECOND",
            "ALLOW LATENESS INTERVAL '3' SECOND",
            &["hops"],
        ),
        ("an aggregate", "SUM(v) AS total", "AVG(v) AS total", &["per_k"]),
        (
            "a join bound",
            "t.ts + INTERVAL '2' SECOND",
            "t.ts + INTERVAL '3' SECOND",
            &["j"],
        ),
        ("a join kind", "FROM t JOIN u", "FROM t LEFT JOIN u", &["j"]),
        (
            "a watermark delay",
            "ts - INTERVAL '1' SECOND)",
            "ts - INTERVAL '2' SECOND)",
            T_ALL,
        ),
        ("a column type", "d DOUBLE", "d BIGINT", T_ALL),
        ("NOT NULL", "k VARCHAR NOT NULL", "k VARCHAR", T_ALL),
        ("a source path", "path = 't.csv'", "path = 't2.csv'", T_MOVED),
        ("a header option", "header = 'true'", "header = 'false'", T_MOVED),
        ("a delimiter", "delimiter = ','", "delimiter = ';'", T_MOVED),
        ("validation", "validate = 'all'", "validate = 'read'", T_ALL),
        ("a sink path", "path = 'big.csv'", "path = 'big2.csv'", &["o1"]),
        (
            "a sink format",
            "format = 'csv');\nCREATE SINK o2",
            "format = 'json');\nCREATE SINK o2",
            &["o1"],
        ),
        (
            "an output name",
            "COUNT(*) AS n, SUM(v)",
            "COUNT(*) AS cnt, SUM(v)",
            &["per_k"],
        ),
    ];
    for (what, from, to, expected) in edits {
        assert!(BASE.contains(from), "{what}: {from:?} is not in the base script");
        let edited = BASE.replacen(from, to, 1);
        assert_eq!(
            changed(&base, &identities(&edited)),
            expected.to_vec(),
            "editing {what} ({from:?} -> {to:?}) changed other identities than expected"
        );
        assert_ne!(plan_fingerprint(&plan(&edited)), fingerprint, "{what}: the fingerprint");
    }
}

#[test]
fn layout_order_and_streams_elsewhere_keep_every_identity() {
    let base = identities(BASE);
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
    // `parts` first after the sources, `big` last.
    let (head, rest) = BASE.split_at(BASE.find("CREATE STREAM big").unwrap());
    let big_end = rest.find("CREATE STREAM per_k").unwrap();
    let parts_at = rest.find("CREATE STREAM parts").unwrap();
    let parts_end = rest.find("CREATE SINK o1").unwrap();
    let reordered = format!(
        "{head}{}{}{}{}",
        &rest[parts_at..parts_end],
        &rest[big_end..parts_at],
        &rest[..big_end],
        &rest[parts_end..]
    );
    let more = format!("{BASE}\nCREATE STREAM extra AS SELECT k, s, d, ts FROM t WHERE d > 0.5;");
    for (what, sql) in [
        ("whitespace", spaced),
        ("comments", commented),
        ("keyword case", lower_keywords),
        ("statement order", reordered),
        ("another stream", more),
    ] {
        let ids = identities(&sql);
        assert_eq!(changed(&base, &ids), Vec::<String>::new(), "{what} changed identities");
    }
}

#[test]
fn optimisations_that_depend_on_other_streams_change_no_identity() {
    // `counts` alone reads two of the source's columns (the decoder
    // parses only those), and only the top-N reads `counts` (it keeps
    // only the groups that can rank). A stream reading every column, and
    // one reading `counts`, undo both optimisations.
    let base = "
CREATE SOURCE b (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
WITH (connector = 'file', path = 'b.csv');
CREATE STREAM counts AS SELECT auction, COUNT(*) AS n, window_start, window_end
FROM TUMBLE(b, ts, INTERVAL '10' SECOND) GROUP BY auction, window_start, window_end;
CREATE STREAM top AS SELECT * FROM (SELECT auction, n, window_start, window_end,
    ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC) AS rk FROM counts) WHERE rk <= 3;
";
    let readers = format!(
        "{base}\nCREATE STREAM everything AS SELECT * FROM b;\nCREATE STREAM again AS SELECT auction, n FROM counts;"
    );
    let explained = plan(base).explain();
    assert!(explained.contains("can rank"), "the base plan prunes:\n{explained}");
    assert!(!plan(&readers).explain().contains("can rank"));
    assert_eq!(changed(&identities(base), &identities(&readers)), Vec::<String>::new());
}
