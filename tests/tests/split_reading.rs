//! Which file sources may be read by every shard at once: only those whose
//! results cannot depend on the order rows of a key arrive in (see
//! `PhysicalPlan::order_insensitive`). That splitting such a
//! source changes nothing is checked by every multi-shard golden and
//! differential test (they split every input into 64-byte chunks) and by
//! `bin/tests/cli.rs`.

use laminar_sql::{plan_script, PlanOptions};

const SOURCE: &str = "CREATE SOURCE t (k VARCHAR, v BIGINT, d DOUBLE, ts TIMESTAMP, WATERMARK FOR ts AS ts)
    WITH (connector = 'file', path = 't.csv', format = 'csv');";

fn splittable(stream: &str) -> bool {
    let sql = format!("{SOURCE}\n{stream}");
    let plan = plan_script(&sql, PlanOptions::default()).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    plan.order_insensitive(0)
}

#[test]
fn only_order_insensitive_pipelines_split_their_files() {
    let window = "FROM TUMBLE(t, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end";
    for (stream, expected) in [
        (
            "CREATE STREAM s AS SELECT k, v * 2 AS w FROM t WHERE v > 0;".to_string(),
            true,
        ),
        (
            format!("CREATE STREAM s AS SELECT k, COUNT(*), SUM(v), MIN(d), MAX(d), AVG(v) {window};"),
            true,
        ),
        (
            format!("CREATE STREAM s AS SELECT k, COUNT(*) {window} EMIT CHANGES;"),
            false,
        ),
        (format!("CREATE STREAM s AS SELECT k, SUM(d) {window};"), false),
        (format!("CREATE STREAM s AS SELECT k, FIRST_VALUE(v) {window};"), false),
        (
            "CREATE STREAM s AS SELECT k, COUNT(*) FROM t GROUP BY k;".to_string(),
            false,
        ),
        (
            "CREATE STREAM s AS SELECT k, v FROM (SELECT k, v, window_start, window_end,
               RANK() OVER (PARTITION BY window_start, window_end ORDER BY v DESC) AS r
               FROM TUMBLE(t, ts, INTERVAL '1' SECOND)) WHERE r <= 2;"
                .to_string(),
            true,
        ),
        (
            "CREATE STREAM s AS SELECT k, v FROM (SELECT k, v, window_start, window_end,
               ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY v DESC) AS r
               FROM TUMBLE(t, ts, INTERVAL '1' SECOND)) WHERE r <= 2;"
                .to_string(),
            // A window's top rows: ties go by the rows' values, not arrival.
            true,
        ),
        // An order-insensitive node whose reader is not.
        (
            format!(
                "CREATE STREAM w AS SELECT k, COUNT(*) AS n, window_end {window};
                 CREATE STREAM s AS SELECT k, SUM(n) FROM w GROUP BY k EMIT CHANGES;"
            ),
            false,
        ),
    ] {
        assert_eq!(splittable(&stream), expected, "{stream}");
    }
}

#[test]
fn a_table_file_is_read_in_order() {
    let plan = plan_script(
        "CREATE TABLE r (k VARCHAR, v BIGINT, PRIMARY KEY (k)) WITH (connector = 'file', path = 'r.csv');
         CREATE SINK o FROM r WITH (connector = 'file', path = 'o.csv');",
        PlanOptions::default(),
    )
    .expect("plans");
    assert!(
        !plan.order_insensitive(0),
        "the latest row of a key must win in file order"
    );
}
