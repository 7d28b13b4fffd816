//! Test support: the golden-file format and a helper that runs a script in
//! a temporary directory and returns what every file sink wrote.
//!
//! A golden file (`tests/golden/*.slt`) is a sequence of blocks, each a
//! header line, a body, and a closing `----` line:
//!
//! ```text
//! # Comments start with '#'. The first comment says what the file proves.
//! file bid.csv              -- an input file, written into the temp dir
//! auction,price,date_time
//! 1,100,2015-07-15 00:00:01
//! ----
//! sql                       -- the script; {dir} is the temp dir
//! CREATE SOURCE … path = '{dir}/bid.csv' …;
//! ----
//! expect out.csv            -- what a sink wrote, compared as a multiset of
//! auction,n                 -- lines (header first, always); add `ordered`
//! 1,1                       -- after the name to compare in order
//! ----
//! metrics                   -- counters of the run: key = value lines
//! late_rows_dropped = 1
//! malformed = 0
//! ----
//! error 3:14 unknown column -- instead of running: planning must fail at
//! ----                      -- line:column with a message containing text
//! ```
//!
//! `LAMINAR_GOLDEN_REWRITE=1 cargo test -p laminar-tests --test golden`
//! rewrites the `expect`, `metrics` and `error` bodies from what the engine
//! does now; review the diff before committing it.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod fuzz;

use std::collections::BTreeMap;
use std::path::Path;

use laminar_reactor::{RunOptions, RunSummary};
use laminar_sql::{plan_script, PlanOptions};

/// One block of a golden file.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Comment(String),
    File { name: String, body: String },
    Sql(String),
    Expect { name: String, ordered: bool, body: String },
    Metrics(String),
    Error { location: String, text: String },
}

pub fn parse_golden(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            blocks.push(Block::Comment(line.to_string()));
            continue;
        }
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == "----" {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        if !closed {
            return Err(format!("block {line:?} has no closing ----"));
        }
        let mut words = line.split_whitespace();
        let block = match words.next() {
            Some("file") => Block::File {
                name: words.next().ok_or("file needs a name")?.to_string(),
                body,
            },
            Some("sql") => Block::Sql(body),
            Some("expect") => {
                let name = words.next().ok_or("expect needs a sink file name")?.to_string();
                let ordered = words.next() == Some("ordered");
                Block::Expect { name, ordered, body }
            }
            Some("metrics") => Block::Metrics(body),
            Some("error") => {
                let location = words.next().ok_or("error needs line:column")?.to_string();
                let text = words.collect::<Vec<_>>().join(" ");
                Block::Error { location, text }
            }
            _ => return Err(format!("unknown block header {line:?}")),
        };
        blocks.push(block);
    }
    Ok(blocks)
}

pub fn render_golden(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Comment(c) => {
                out.push_str(c);
                out.push('\n');
                continue;
            }
            Block::File { name, body } => out.push_str(&format!("file {name}\n{body}")),
            Block::Sql(body) => out.push_str(&format!("sql\n{body}")),
            Block::Expect { name, ordered, body } => out.push_str(&format!(
                "expect {name}{}\n{body}",
                if *ordered { " ordered" } else { "" }
            )),
            Block::Metrics(body) => out.push_str(&format!("metrics\n{body}")),
            Block::Error { location, text } => out.push_str(&format!("error {location} {text}\n")),
        }
        out.push_str("----\n\n");
    }
    out
}

/// Shard counts the multi-shard test variants use: `LAMINAR_TEST_SHARDS`
/// (e.g. `1` for a quick single-shard pass), default `1,2,4`: results
/// must not depend on the shard count.
pub fn shard_counts() -> Vec<usize> {
    let text = std::env::var("LAMINAR_TEST_SHARDS").unwrap_or_else(|_| "1,2,4".into());
    let mut counts: Vec<usize> = text
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| (1..=64).contains(&n))
        .collect();
    if counts.is_empty() {
        counts.push(1);
    }
    counts
}

/// What a run produced.
pub struct Outcome {
    pub summary: RunSummary,
    pub malformed_reports: Vec<String>,
}

/// Counters compared by `metrics` blocks.
pub fn metrics_text(o: &Outcome) -> String {
    let s = &o.summary;
    let mut m = BTreeMap::new();
    m.insert("rows_in", s.rows_in());
    m.insert("malformed", s.malformed());
    m.insert("late_rows_dropped", s.late_rows_dropped());
    m.insert(
        "late_rows_diverted",
        s.streams.iter().map(|x| x.metrics.late_rows_diverted).sum(),
    );
    m.insert("eval_errors", s.streams.iter().map(|x| x.metrics.eval_errors).sum());
    m.insert(
        "null_time_dropped",
        s.streams.iter().map(|x| x.metrics.null_time_dropped).sum(),
    );
    m.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// The chunk size files are split into in tests (`LAMINAR_TEST_SPLIT_BYTES`,
/// default 64 bytes: a few records, so even small inputs are read by
/// several shards at once).
pub fn split_chunk_bytes() -> u64 {
    std::env::var("LAMINAR_TEST_SPLIT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Plans and runs `sql` (with `{dir}` replaced by `dir`) on `shards`
/// shards.
pub fn run_sql(sql: &str, dir: &Path, batch_rows: usize, shards: usize) -> Result<Outcome, String> {
    run_sql_with(sql, dir, batch_rows, shards, None)
}

/// `run_sql` with the shards' spin-before-park time set.
pub fn run_sql_with(
    sql: &str,
    dir: &Path,
    batch_rows: usize,
    shards: usize,
    spin_before_park: Option<std::time::Duration>,
) -> Result<Outcome, String> {
    run_sql_durable(sql, dir, batch_rows, shards, spin_before_park, None).map_err(|e| e.to_string())
}

/// How a durable test run failed: planning, an injected fault (a
/// simulated crash), or anything else.
#[derive(Debug)]
pub enum RunFailure {
    Plan(String),
    Injected(String),
    Other(String),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Plan(e) => f.write_str(e),
            RunFailure::Injected(e) | RunFailure::Other(e) => write!(f, "run failed: {e}"),
        }
    }
}

/// `run_sql_with` that keeps durable state (`--state-dir`) when asked.
pub fn run_sql_durable(
    sql: &str,
    dir: &Path,
    batch_rows: usize,
    shards: usize,
    spin_before_park: Option<std::time::Duration>,
    durability: Option<laminar_reactor::checkpoint::Durability>,
) -> Result<Outcome, RunFailure> {
    // Warnings (a stalled run's report) reach stderr even under the test
    // harness's capture, so a hung test binary says where it hung.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LAMINAR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let sql = sql.replace("{dir}", &dir.display().to_string());
    let plan = plan_script(&sql, PlanOptions::default())
        .map_err(|e| RunFailure::Plan(format!("{}:{} {}", e.line, e.column, e.message)))?;
    let mut reports = Vec::new();
    let mut on_malformed =
        |m: laminar_reactor::Malformed<'_>| reports.push(format!("{}:{}: {}", m.location, m.line, m.reason));
    let mut on_progress = |_: &laminar_reactor::Progress| {};
    let summary = laminar_reactor::run(
        &plan,
        RunOptions {
            batch_rows,
            shards,
            cpus: None,
            spin_before_park,
            clock: None,
            pacing: None,
            // Every file is read by every shard, in chunks of a few
            // records, so each multi-shard test also checks that reading a
            // file in parallel changes nothing.
            split_bytes_min: Some(0),
            split_chunk_bytes: Some(split_chunk_bytes()),
            split_generator_chunk_events: Some(37),
            durability,
            on_malformed: &mut on_malformed,
            on_progress: &mut on_progress,
        },
    )
    .map_err(|e| match e {
        laminar_reactor::RunError::Persist(p) if p.is_injected() => RunFailure::Injected(p.to_string()),
        e => {
            // The whole chain: "stream s: checkpoint state: …".
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            RunFailure::Other(text)
        }
    })?;
    Ok(Outcome {
        summary,
        malformed_reports: reports,
    })
}

/// A sink file's lines: header first, then the rows (sorted unless
/// `ordered`).
pub fn normalize(text: &str, ordered: bool) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if !ordered && lines.len() > 1 {
        lines[1..].sort_unstable();
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}
