//! The followed file driven by hand through `Source`, on a temporary
//! directory and a hand-moved clock: appends, a partial last line,
//! rotation (live and while stopped), truncation, checkpoints.

use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};

use laminar_exec::plan::{Follow, WatermarkSpec};
use laminar_exec::types::{DataType, Field, Schema, Value};

use super::*;
use crate::net::ingest::LiveLimits;
use crate::source::{OpenContext, Source};

#[derive(Debug, Default)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const POLL_MS: u64 = 10;

/// A followed CSV source `k BIGINT, ts BIGINT` (watermark `ts`) over
/// `path`, with the `header` option given.
fn node(path: &Path, header: Option<bool>, dead_letter: Option<PathBuf>) -> SourceNode {
    let schema = Schema::new(vec![Field::new("k", DataType::Int), Field::new("ts", DataType::Int)]);
    SourceNode {
        name: "s".into(),
        schema: schema.clone(),
        connector: SourceConnector::File {
            path: path.to_path_buf(),
            format: Format::Csv,
            header,
            delimiter: b',',
            dead_letter,
            follow: Some(Follow { poll_ms: POLL_MS }),
        },
        watermark: Some(WatermarkSpec { column: 1, delay_ms: 0 }),
        used_columns: vec![true, true],
        validate_all: true,
        declared: schema,
    }
}

struct Fixture {
    node: SourceNode,
    clock: Arc<ManualClock>,
    source: Source,
    bad: Vec<(u64, String)>,
}

impl Fixture {
    fn open(node: SourceNode, resume: Option<&SourceState>) -> Fixture {
        let clock = Arc::new(ManualClock::default());
        let source = Self::open_source(&node, &clock, resume);
        Fixture {
            node,
            clock,
            source,
            bad: Vec::new(),
        }
    }

    fn open_source(node: &SourceNode, clock: &Arc<ManualClock>, resume: Option<&SourceState>) -> Source {
        crate::source::open(
            node,
            OpenContext {
                index: 0,
                shard: 0,
                shards: 1,
                split: None,
                resume,
                listener: None,
                limits: LiveLimits::default(),
                clock: Arc::clone(clock) as Arc<dyn Clock>,
                logged: false,
            },
        )
        .unwrap()
    }

    /// Reads until the end of what is there: rows as (k, ts).
    fn read(&mut self) -> Vec<(i64, i64)> {
        let mut rows = Vec::new();
        // A look is due now.
        self.clock.0.fetch_add(POLL_MS as i64, Ordering::Relaxed);
        while self.source.ready() {
            let bad = &mut self.bad;
            let batch = self
                .source
                .next_batch(3, &mut |m| bad.push((m.line, m.reason.to_string())))
                .unwrap();
            for (_, row) in batch.rows() {
                let int = |v: &Value| match v {
                    Value::Int(i) => *i,
                    other => panic!("{other:?}"),
                };
                rows.push((int(&row[0]), int(&row[1])));
            }
        }
        assert!(!self.source.is_done(), "a followed file never ends");
        rows
    }

    /// A checkpoint, then a new source from it (a restart).
    fn restart(&mut self) {
        let state = self.source.position().unwrap();
        self.source = Self::open_source(&self.node, &self.clock, Some(&state));
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn appended_lines_are_read_and_a_partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "1,10\n2,20\n3,3").unwrap();
    let mut f = Fixture::open(node(&path, None, None), None);
    assert_eq!(f.read(), vec![(1, 10), (2, 20)]);
    assert!(
        !f.source.ready(),
        "at the end, the next look waits for the poll interval"
    );
    append(&path, "0\n4,");
    assert_eq!(
        f.read(),
        vec![(3, 30)],
        "the partial line was completed, not read as 3,3"
    );
    append(&path, "40\n");
    assert_eq!(f.read(), vec![(4, 40)]);
    assert_eq!(f.source.watermark(), 40);
    assert_eq!(f.source.rows(), 4);
    assert!(f.bad.is_empty(), "{:?}", f.bad);
}

#[test]
fn a_csv_record_waits_for_its_closing_quote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let schema = Schema::new(vec![Field::new("s", DataType::Str), Field::new("ts", DataType::Int)]);
    let mut n = node(&path, Some(false), None);
    n.schema = schema.clone();
    n.declared = schema;
    std::fs::write(&path, "\"a\nb").unwrap();
    let clock = Arc::new(ManualClock::default());
    let mut source = Fixture::open_source(&n, &clock, None);
    let batch = source.next_batch(10, &mut |m| panic!("{}", m.reason)).unwrap();
    assert_eq!(batch.len(), 0, "the quote is open");
    append(&path, "\",7\n");
    clock.0.fetch_add(POLL_MS as i64, Ordering::Relaxed);
    let batch = source.next_batch(10, &mut |m| panic!("{}", m.reason)).unwrap();
    assert_eq!(batch.row(0), &[Value::Str("a\nb".into()), Value::Int(7)]);
}

#[test]
fn rotation_reads_the_old_files_last_lines_then_the_new_file_with_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "k,ts\n1,10\n").unwrap();
    let mut f = Fixture::open(node(&path, None, None), None);
    assert_eq!(f.read(), vec![(1, 10)]);
    // The writer adds two lines (the last without its newline), then
    // the file is renamed and a new one takes its name.
    append(&path, "2,20\n3,30");
    std::fs::rename(&path, dir.path().join("in.csv.1")).unwrap();
    // Renamed, not made again yet: a writer may still append to it, so
    // its partial last line waits.
    assert_eq!(f.read(), vec![(2, 20)]);
    std::fs::write(&path, "k,ts\n4,40\n").unwrap();
    assert_eq!(
        f.read(),
        vec![(3, 30), (4, 40)],
        "the old file's last line, then the new file (its header is a header)"
    );
    assert!(f.source.header_detected());
    assert!(f.bad.is_empty(), "{:?}", f.bad);
    // Line numbers restart with the file.
    append(&path, "x,50\n");
    assert_eq!(f.read(), vec![]);
    assert_eq!(f.bad.len(), 1);
    assert_eq!(f.bad[0].0, 3, "{:?}", f.bad);
}

#[test]
fn truncation_starts_the_file_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "1,10\n2,20\n").unwrap();
    let mut f = Fixture::open(node(&path, Some(false), None), None);
    assert_eq!(f.read(), vec![(1, 10), (2, 20)]);
    std::fs::write(&path, "").unwrap();
    assert_eq!(f.read(), vec![]);
    append(&path, "3,30\n");
    assert_eq!(f.read(), vec![(3, 30)]);
}

#[test]
fn a_restart_resumes_exactly_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let dead = dir.path().join("bad.txt");
    std::fs::write(&path, "k,ts\n1,10\nbad\n2,2").unwrap();
    let mut f = Fixture::open(node(&path, None, Some(dead.clone())), None);
    assert_eq!(f.read(), vec![(1, 10)]);
    f.restart();
    append(&path, "0\n");
    assert_eq!(
        f.read(),
        vec![(2, 20)],
        "the partial line was not taken before the checkpoint"
    );
    assert_eq!(f.source.rows(), 2);
    assert_eq!(f.source.malformed(), 1);
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "bad\n");
    // The header decided before the checkpoint still names the columns.
    f.restart();
    append(&path, "3,30\n");
    assert_eq!(f.read(), vec![(3, 30)]);
    assert_eq!(f.bad, vec![(3, f.bad[0].1.clone())]);
}

#[test]
fn a_restart_after_a_rotation_while_stopped_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "1,10\n").unwrap();
    let mut f = Fixture::open(node(&path, Some(false), None), None);
    assert_eq!(f.read(), vec![(1, 10)]);
    let state = f.source.position().unwrap();
    // While stopped: a line more, a rotation, the new file's first line.
    append(&path, "2,20\n");
    std::fs::rename(&path, dir.path().join("in.csv.1")).unwrap();
    std::fs::write(&path, "3,30\n").unwrap();
    f.source = Fixture::open_source(&f.node, &f.clock, Some(&state));
    assert_eq!(f.read(), vec![(2, 20), (3, 30)]);
    // The old file gone too: the path from its start, nothing twice.
    let state = f.source.position().unwrap();
    std::fs::remove_file(dir.path().join("in.csv.1")).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "4,40\n").unwrap();
    f.source = Fixture::open_source(&f.node, &f.clock, Some(&state));
    assert_eq!(f.read(), vec![(4, 40)]);
}

#[test]
fn a_line_over_the_limit_is_one_malformed_record_and_the_next_line_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let dead = dir.path().join("bad.txt");
    std::fs::write(&path, "1,10\n").unwrap();
    let mut f = Fixture::open(node(&path, Some(false), Some(dead.clone())), None);
    assert_eq!(f.read(), vec![(1, 10)]);
    let long = "9".repeat(RECORD_BYTES_MAX + 10);
    append(&path, &long);
    assert_eq!(f.read(), vec![]);
    assert_eq!(f.bad.len(), 1, "reported once, while it is still growing");
    f.restart();
    append(&path, &long);
    append(&path, "\n2,20\n");
    assert_eq!(f.read(), vec![(2, 20)]);
    assert_eq!(f.bad.len(), 1);
    append(&path, "z\n");
    assert_eq!(f.read(), vec![]);
    assert_eq!(f.bad[1].0, 4, "the long line was line 2: {:?}", f.bad);
    // Dead letters: the long line's first RECORD_BYTES_MAX bytes, then z.
    f.source.position().unwrap();
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters, format!("{}\nz\n", &long[..RECORD_BYTES_MAX]));
}

#[test]
fn a_closed_source_reads_nothing_more_and_does_not_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, "1,10\n").unwrap();
    let mut f = Fixture::open(node(&path, Some(false), None), None);
    assert_eq!(f.read(), vec![(1, 10)]);
    f.source.close();
    append(&path, "2,20\n");
    assert_eq!(f.read(), vec![]);
    assert_eq!(f.source.position().unwrap().offset, 5);
}
