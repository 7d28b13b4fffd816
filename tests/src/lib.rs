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

#[cfg(feature = "runtime")]
mod runtime;
#[cfg(feature = "runtime")]
pub use runtime::*;

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

/// The golden files, `tests/golden/*.slt`, sorted by name.
pub fn golden_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
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

/// The chunk size files are split into in tests (`LAMINAR_TEST_SPLIT_BYTES`,
/// default 64 bytes: a few records, so even small inputs are read by
/// several shards at once).
pub fn split_chunk_bytes() -> u64 {
    std::env::var("LAMINAR_TEST_SPLIT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// A sink file's lines: header first, then the rows (sorted unless
/// `ordered`).
pub fn normalize(text: &str, ordered: bool) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    // A CSV file's header stays first; JSON lines have none.
    let header = usize::from(lines.first().is_some_and(|l| !l.starts_with('{')));
    if !ordered && lines.len() > header {
        lines[header..].sort_unstable();
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}
