//! No input makes the SQL front end panic: a user's mistake in a script is
//! an error with a location, never a crash (STYLE.md, "when to crash").
//!
//! Four generators feed `plan_script`, and `explain` of every plan that
//! comes back: arbitrary Unicode strings; strings of SQL tokens from the
//! dialect's vocabulary; vocabulary fragments dropped into the slots of an
//! otherwise valid script (so they reach the expression and window
//! planners, not just the parser); and mutations of valid scripts (tokens
//! and characters deleted, duplicated, swapped, replaced). proptest turns a
//! panic into a failure with a shrunk input; seeds of failures are kept in
//! `tests/proptest-regressions/sql_robustness.txt`. Each property runs
//! 2,000 cases; set `PROPTEST_CASES` for a longer hunt.

use laminar_sql::{plan_script, PlanOptions};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::FileFailurePersistence;

/// Where proptest keeps the seeds of failing cases: next to the golden
/// files, committed with the tests.
const REGRESSIONS: FileFailurePersistence = FileFailurePersistence::Direct(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/sql_robustness.txt"
));

/// Plans `text`; the property is that this returns at all.
fn plan_and_explain(text: &str) {
    if let Ok(plan) = plan_script(text, PlanOptions::default()) {
        let explained = plan.explain();
        assert!(!explained.is_empty(), "a plan explains to nothing");
    }
}

/// Tokens of the dialect, and of its neighbours' mistakes.
const VOCABULARY: &[&str] = &[
    // Statements.
    "CREATE",
    "SOURCE",
    "TABLE",
    "STREAM",
    "SINK",
    "MATERIALIZED",
    "VIEW",
    "AS",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "ALL",
    "DISTINCT",
    "JOIN",
    "LEFT",
    "INNER",
    "ON",
    "ASOF",
    "MATCH_CONDITION",
    "OVER",
    "PARTITION",
    "ROW_NUMBER",
    "RANK",
    "FILTER",
    "PRIMARY",
    "KEY",
    "NOT",
    "NULL",
    // Streaming clauses.
    "EMIT",
    "WINDOW",
    "CLOSE",
    "CHANGES",
    "FINAL",
    "EVERY",
    "ALLOW",
    "LATENESS",
    "LATE",
    "DATA",
    "TO",
    "INTERVAL",
    "WATERMARK",
    "FOR",
    "WITH",
    "TUMBLE",
    "HOP",
    "SESSION",
    "window_start",
    "window_end",
    // Functions.
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "FIRST_VALUE",
    "LAST_VALUE",
    "COALESCE",
    "ABS",
    "MOD",
    "ROUND",
    "FLOOR",
    "lower",
    "upper",
    "length",
    "substring",
    "concat",
    "split_part",
    "regexp_match",
    "regexp_extract",
    "EXTRACT",
    "date_trunc",
    "DATE_FORMAT",
    "CAST",
    "nosuchfn",
    // Expressions.
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "AND",
    "OR",
    "IN",
    "BETWEEN",
    "IS",
    "LIKE",
    "TRUE",
    "FALSE",
    // Types and units.
    "BIGINT",
    "INT",
    "INTEGER",
    "VARCHAR",
    "TEXT",
    "TIMESTAMP",
    "DOUBLE",
    "FLOAT",
    "BOOLEAN",
    "DECIMAL",
    "SECOND",
    "SECONDS",
    "MINUTE",
    "HOUR",
    "DAY",
    "MONTH",
    "YEAR",
    "MILLISECOND",
    // Punctuation and operators.
    "(",
    ")",
    ",",
    ";",
    ".",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "<",
    ">",
    "<=",
    ">=",
    "<>",
    "!=",
    "||",
    "::",
    "[",
    "]",
    "'",
    "\"",
    "`",
    "--",
    "/*",
    "*/",
    "$1",
    "?",
    "@",
    // Literals.
    "0",
    "1",
    "-1",
    "2",
    "0.5",
    "1e308",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "'x'",
    "''",
    "'10'",
    "'0'",
    "'-1'",
    "'1.5'",
    "'1 second'",
    "'99999999999999999999'",
    "'9223372036854775807'",
    "'['",
    "'(a'",
    "'%Y'",
    "'%Q'",
    "'day'",
    "'2015-07-15 00:00:00'",
    // Names and options.
    "a",
    "b",
    "ts",
    "t",
    "s",
    "q",
    "x",
    "connector",
    "path",
    "format",
    "header",
    "kind",
    "events",
    "rate",
    "seed",
    "dead_letter",
    "delimiter",
    "follow",
    "port",
    "'file'",
    "'nexmark'",
    "'tcp'",
    "'stdout'",
    "'csv'",
    "'json'",
    "'bid'",
    "'person'",
    "'auction'",
    "'true'",
    "'t.csv'",
    "';'",
];

/// Joins vocabulary tokens with varied separators (none, space, newline).
fn vocabulary_text(max_tokens: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (select(VOCABULARY), select(&["", " ", " ", " ", "\n"][..])),
        0..max_tokens,
    )
    .prop_map(|tokens| {
        tokens
            .into_iter()
            .flat_map(|(token, separator)| [token, separator])
            .collect()
    })
}

/// A mostly well-formed SQL expression over the frame's columns: literals
/// at the edges of their types, every function and operator of the dialect,
/// nested, with some wrong arities and types, so fragments get past the
/// parser into type checking and constant handling.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(
            &[
                "a",
                "b",
                "c",
                "d",
                "ts",
                "t.a",
                "t.ts",
                "window_start",
                "window_end",
                "nope",
                "u.a",
                "*",
                "t.*",
            ][..]
        )
        .prop_map(str::to_string),
        select(
            &[
                "0",
                "1",
                "-1",
                "2",
                "0.5",
                "-0.0",
                "1e308",
                "-1e308",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "99999999999999999999",
                "NULL",
                "TRUE",
                "FALSE",
                "'x'",
                "''",
                "'10'",
                "'-1'",
                "'1.5'",
                "'NaN'",
                "'inf'",
                "'2015-07-15 00:00:00'",
                "'1970-01-01T00:00:00Z'",
                "'-9999-01-01 00:00:00'",
                "'[' ",
                "'(a'",
                "'%Y'",
                "'%Q'",
                "'%'",
                "'day'",
                "'week'",
                "'quarter'",
                "'é'",
            ][..]
        )
        .prop_map(str::to_string),
        (
            select(
                &[
                    "'1'",
                    "'0'",
                    "'-1'",
                    "'1.5'",
                    "'9223372036854775807'",
                    "'1e20'",
                    "'x'",
                    "''",
                    "'2 hours'",
                    "1"
                ][..]
            ),
            select(
                &[
                    "",
                    "MILLISECOND",
                    "SECOND",
                    "MINUTE",
                    "HOUR",
                    "DAY",
                    "WEEK",
                    "MONTH",
                    "YEAR"
                ][..]
            ),
        )
            .prop_map(|(amount, unit)| format!("INTERVAL {amount} {unit}")),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        let function = select(
            &[
                "COUNT",
                "SUM",
                "MIN",
                "MAX",
                "AVG",
                "FIRST_VALUE",
                "LAST_VALUE",
                "COALESCE",
                "ABS",
                "MOD",
                "ROUND",
                "FLOOR",
                "lower",
                "upper",
                "length",
                "substring",
                "concat",
                "split_part",
                "regexp_match",
                "regexp_extract",
                "regexp_like",
                "date_trunc",
                "DATE_FORMAT",
                "nosuchfn",
                "TUMBLE",
                "HOP",
                "SESSION",
                "ROW_NUMBER",
            ][..],
        );
        prop_oneof![
            (
                inner.clone(),
                select(&["+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "||", "LIKE"][..]),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (select(&["NOT ", "-", "+"][..]), inner.clone()).prop_map(|(op, e)| format!("{op}{e}")),
            (
                function,
                prop::collection::vec(inner.clone(), 0..4),
                select(&["", "DISTINCT "][..]),
                any::<bool>()
            )
                .prop_map(|(f, args, distinct, filter)| {
                    let call = format!("{f}({distinct}{})", args.join(", "));
                    if filter {
                        format!("{call} FILTER (WHERE a > 0)")
                    } else {
                        call
                    }
                }),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, t, e)| format!("CASE WHEN {c} THEN {t} ELSE {e} END")),
            (inner.clone(), inner.clone()).prop_map(|(x, t)| format!("CASE {x} WHEN 1 THEN {t} END")),
            (
                inner.clone(),
                select(
                    &[
                        "BIGINT",
                        "INT",
                        "DOUBLE",
                        "VARCHAR",
                        "TIMESTAMP",
                        "BOOLEAN",
                        "DECIMAL(10, 2)",
                        "DATE",
                        "BLOB"
                    ][..]
                ),
            )
                .prop_map(|(e, t)| format!("CAST({e} AS {t})")),
            (inner.clone(), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(e, list)| format!("{e} IN ({})", list.join(", "))),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(e, lo, hi)| format!("{e} BETWEEN {lo} AND {hi}")),
            (inner.clone(), select(&["IS NULL", "IS NOT NULL", "IS TRUE"][..])).prop_map(|(e, s)| format!("{e} {s}")),
            (
                select(&["YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "EPOCH", "DOW", "WEEK"][..]),
                inner.clone()
            )
                .prop_map(|(u, e)| format!("EXTRACT({u} FROM {e})")),
            inner.prop_map(|e| format!("({e})")),
        ]
    })
}

/// A fragment for a frame's slot: mostly an expression, sometimes a run of
/// vocabulary tokens.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => expression(),
        1 => vocabulary_text(12),
        1 => prop::collection::vec(expression(), 1..4).prop_map(|list| list.join(", ")),
    ]
}

/// A source with one column of each kind, read by the framed statements.
const FRAME_SOURCE: &str = "CREATE SOURCE t (a BIGINT, b VARCHAR, c DOUBLE, d BOOLEAN, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH (connector = 'file', path = 't.csv', format = 'csv', header = 'true');
";

/// Valid statements with one slot (`{}`) each for a random fragment.
const FRAMES: &[&str] = &[
    "CREATE STREAM s AS SELECT {} FROM t;",
    "CREATE STREAM s AS SELECT a, {} AS e FROM t;",
    "CREATE STREAM s AS SELECT a FROM t WHERE {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n FROM t GROUP BY {};",
    "CREATE STREAM s AS SELECT a, SUM(a) AS n FROM t GROUP BY a HAVING {};",
    "CREATE STREAM s AS SELECT {}, COUNT(*) AS n FROM t GROUP BY a;",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM TUMBLE(t, ts, {}) GROUP BY a, window_start, \
     window_end;",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM HOP(t, ts, {}) GROUP BY a, window_start, \
     window_end;",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_end FROM SESSION(t, ts, {}) GROUP BY a, window_start, \
     window_end;",
    "CREATE STREAM s AS SELECT COUNT(*) AS n, window_start FROM {} GROUP BY window_start, window_end;",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM t GROUP BY a, {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM TUMBLE(t, ts, INTERVAL '5' SECOND) GROUP BY a, \
     window_start, window_end {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM TUMBLE(t, ts, INTERVAL '5' SECOND) GROUP BY a, \
     window_start, window_end EMIT {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM TUMBLE(t, ts, INTERVAL '5' SECOND) GROUP BY a, \
     window_start, window_end EMIT CHANGES ALLOW LATENESS {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n FROM t GROUP BY a EMIT EVERY {};",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM TUMBLE({}) GROUP BY a, window_start, window_end;",
    "CREATE STREAM s AS SELECT a, COUNT(*) AS n, window_start FROM t GROUP BY a, HOP({});",
    "CREATE STREAM s AS SELECT a, b FROM t {};",
    "CREATE STREAM s AS SELECT x.a, y.b FROM t AS x JOIN t AS y ON {};",
    "CREATE STREAM s AS SELECT * FROM (SELECT {} FROM t) AS z;",
    "CREATE STREAM s AS SELECT a FROM (SELECT a, ROW_NUMBER() OVER ({}) AS r FROM t) AS z WHERE r <= 1;",
    "CREATE SOURCE u (x BIGINT, {}) WITH (connector = 'file', path = 'u.csv'); CREATE STREAM s AS SELECT * FROM u;",
    "CREATE SOURCE u (x BIGINT, y TIMESTAMP, WATERMARK FOR y AS {}) WITH (connector = 'file', path = 'u.csv'); \
     CREATE STREAM s AS SELECT x FROM u;",
    "CREATE SOURCE u (x BIGINT) WITH ({}); CREATE STREAM s AS SELECT x FROM u;",
    "CREATE SOURCE u WITH (connector = 'nexmark', {}); CREATE STREAM s AS SELECT * FROM u;",
    "CREATE TABLE u (x BIGINT, y VARCHAR, PRIMARY KEY ({})) WITH (connector = 'file', path = 'u.csv'); \
     CREATE STREAM s AS SELECT * FROM u;",
    "CREATE STREAM s AS SELECT a FROM t; CREATE SINK o FROM s WITH ({});",
    "CREATE STREAM s AS SELECT a FROM t; CREATE SINK o FROM {} WITH (connector = 'file', path = 'o.csv');",
    "CREATE STREAM s AS SELECT a FROM t; CREATE STREAM r AS SELECT {} FROM s;",
];

/// Valid scripts to mutate: the main dialect features, plus every script of
/// the golden files.
const SEEDS: &[&str] = &[
    "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH (connector = 'file', path = 'data/bid.csv', format = 'csv', header = 'true');
CREATE STREAM totals AS
SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start, window_end
FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end
EMIT ON WINDOW CLOSE;
CREATE SINK out FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');",
    "CREATE SOURCE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
WITH (connector = 'nexmark', kind = 'bid', events = '1000', seed = '7');
CREATE STREAM hot AS
SELECT auction, COUNT(*) AS n, MAX(price) FILTER (WHERE price > 10) AS top, window_start
FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end
HAVING COUNT(*) > 1
EMIT CHANGES ALLOW LATENESS INTERVAL '5' SECOND;
CREATE STREAM s AS SELECT auction, COUNT(DISTINCT price) AS n FROM bid GROUP BY auction, SESSION(date_time, \
     INTERVAL '3' SECOND);
CREATE MATERIALIZED VIEW v AS SELECT CASE WHEN n > 1 THEN 'many' ELSE 'one' END AS what, CAST(n AS VARCHAR) AS t \
     FROM hot WHERE n BETWEEN 1 AND 9 AND auction IN (1, 2, 3);",
];

fn golden_scripts() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden directory")
        .map(|e| e.expect("golden entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    paths.sort();
    let mut scripts = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("golden file");
        for block in laminar_tests::parse_golden(&text).expect("golden file parses") {
            if let laminar_tests::Block::Sql(sql) = block {
                scripts.push(sql.replace("{dir}", "/tmp/laminar"));
            }
        }
    }
    scripts
}

fn seed_scripts() -> Vec<String> {
    let mut seeds: Vec<String> = SEEDS.iter().map(|s| s.to_string()).collect();
    seeds.extend(golden_scripts());
    seeds
}

/// Splits SQL into tokens that keep the text when joined: runs of word
/// characters, runs of whitespace, single-quoted strings, and single other
/// characters.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_alphanumeric() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
        } else if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(chars.len());
        } else {
            i += 1;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteToken(Index),
    DuplicateToken(Index),
    SwapTokens(Index, Index),
    ReplaceToken(Index, &'static str),
    InsertToken(Index, &'static str),
    DeleteChar(Index),
    InsertChar(Index, char),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let chars = select(
        &[
            '(', ')', ',', ';', '\'', '"', '-', '*', '/', ' ', '\n', '0', '9', 'a', 'é', '\0',
        ][..],
    );
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::DeleteToken),
        2 => any::<Index>().prop_map(Mutation::DuplicateToken),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapTokens(a, b)),
        3 => (any::<Index>(), select(VOCABULARY)).prop_map(|(i, t)| Mutation::ReplaceToken(i, t)),
        2 => (any::<Index>(), select(VOCABULARY)).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        2 => any::<Index>().prop_map(Mutation::DeleteChar),
        2 => (any::<Index>(), chars).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `mutations` in order to `text`.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut toks = tokens(text);
    for m in mutations {
        match m {
            Mutation::DeleteToken(i) if !toks.is_empty() => {
                toks.remove(i.index(toks.len()));
            }
            Mutation::DuplicateToken(i) if !toks.is_empty() => {
                let i = i.index(toks.len());
                toks.insert(i, toks[i].clone());
            }
            Mutation::SwapTokens(a, b) if !toks.is_empty() => {
                let (a, b) = (a.index(toks.len()), b.index(toks.len()));
                toks.swap(a, b);
            }
            Mutation::ReplaceToken(i, t) if !toks.is_empty() => {
                let i = i.index(toks.len());
                toks[i] = t.to_string();
            }
            Mutation::InsertToken(i, t) => {
                let i = i.index(toks.len() + 1);
                toks.insert(i, format!(" {t} "));
            }
            Mutation::DeleteChar(i) | Mutation::InsertChar(i, _) | Mutation::Truncate(i) => {
                let mut chars: Vec<char> = toks.concat().chars().collect();
                match m {
                    Mutation::DeleteChar(_) if !chars.is_empty() => {
                        chars.remove(i.index(chars.len()));
                    }
                    Mutation::InsertChar(_, c) => chars.insert(i.index(chars.len() + 1), *c),
                    Mutation::Truncate(_) => chars.truncate(i.index(chars.len() + 1)),
                    _ => {}
                }
                toks = tokens(&chars.into_iter().collect::<String>());
            }
            _ => {}
        }
    }
    toks.concat()
}

#[test]
fn every_seed_script_plans() {
    // The mutation seeds are valid, so mutants start one edit away from a
    // plan and reach deep into the planner.
    let seeds = seed_scripts();
    assert!(seeds.len() > SEEDS.len(), "no golden scripts found");
    let planned = seeds
        .iter()
        .filter(|s| plan_script(s, PlanOptions::default()).is_ok())
        .count();
    // Golden files of errors hold scripts that must not plan; the rest must.
    assert!(
        planned >= SEEDS.len() + 10,
        "only {planned} of {} seeds plan",
        seeds.len()
    );
    for s in SEEDS {
        if let Err(e) = plan_script(s, PlanOptions::default()) {
            panic!("seed does not plan: {}:{}: {}\n{s}", e.line, e.column, e.message);
        }
    }
}

#[test]
fn tokens_join_back_to_the_text() {
    // Mutations work on tokens, so tokenizing must lose nothing.
    for s in seed_scripts() {
        assert_eq!(tokens(&s).concat(), s);
    }
}

/// Cases per property: 2,000 by default (a few seconds in all);
/// `PROPTEST_CASES=200000` makes a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(REGRESSIONS)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        plan_and_explain(&text);
    }

    #[test]
    fn vocabulary_strings_never_panic(text in vocabulary_text(60)) {
        plan_and_explain(&text);
    }

    #[test]
    fn vocabulary_in_a_valid_frame_never_panics(
        frame in select(FRAMES),
        fragment in fragment(),
        sink in any::<bool>(),
    ) {
        let mut text = format!("{FRAME_SOURCE}{}\n", frame.replace("{}", &fragment));
        if sink {
            text += "CREATE SINK o9 FROM s WITH (connector = 'file', path = 'o9.csv');\n";
        }
        plan_and_explain(&text);
    }

    #[test]
    fn mutated_valid_scripts_never_panic(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        thread_local! {
            static SEEDS_TEXT: Vec<String> = seed_scripts();
        }
        let text = SEEDS_TEXT.with(|seeds| mutate(&seeds[seed.index(seeds.len())], &mutations));
        plan_and_explain(&text);
    }
}
