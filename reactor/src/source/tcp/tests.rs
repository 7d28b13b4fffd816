//! The tcp connector's reader driven by hand: arrivals in, rows and
//! watermarks out, replay, acknowledgement.

use super::*;
use laminar_exec::format::Format;
use laminar_exec::types::{DataType, Field, Schema};
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug, Default)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader of `k BIGINT, ts BIGINT` with watermark `ts - 10`.
struct Fixture {
    reader: LiveReader,
    clock: Arc<ManualClock>,
    rows: u64,
    malformed: u64,
    bad: Vec<(u64, u64, String, Vec<u8>)>,
    /// What each batch logged, when logging.
    logged: Vec<LoggedBatch>,
}

impl Fixture {
    fn new(limits: LiveLimits) -> Fixture {
        let schema = Schema::new(vec![Field::new("k", DataType::Int), Field::new("ts", DataType::Int)]);
        let decoder = Format::Csv.decoder(&schema, None, b',', &[], false, false).unwrap();
        let clock = Arc::new(ManualClock::default());
        let reader = LiveReader::new(
            0,
            Rc::new(RefCell::new(Inbox::default())),
            decoder,
            Some(WatermarkSpec {
                column: 1,
                delay_ms: 10,
            }),
            limits,
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        Fixture {
            reader,
            clock,
            rows: 0,
            malformed: 0,
            bad: Vec::new(),
            logged: Vec::new(),
        }
    }

    fn arrive(&self, a: Arrival) -> u64 {
        let mut ib = self.reader.inbox.borrow_mut();
        if let Arrival::Open { .. } = a {
            ib.open += 1;
        }
        ib.push(a).expect("intake open")
    }

    fn open(&self, conn: u64) {
        self.arrive(Arrival::Open {
            conn,
            peer: format!("peer{conn}"),
        });
    }

    fn send(&self, conn: u64, text: &str) {
        self.arrive(Arrival::Bytes {
            conn,
            bytes: text.as_bytes().to_vec(),
        });
    }

    /// Reads everything queued: rows as (k, ts), and the marks.
    fn read(&mut self, rows_max: usize) -> (Vec<(i64, i64)>, Vec<i64>) {
        let mut rows = Vec::new();
        let mut marks = Vec::new();
        loop {
            let mut scratch = Vec::new();
            let bad = &mut self.bad;
            let batch = self
                .reader
                .next_batch(
                    2,
                    rows_max,
                    &mut scratch,
                    (&mut self.rows, &mut self.malformed),
                    &mut |b| {
                        bad.push((b.conn, b.line, b.reason.clone(), b.bytes.to_vec()));
                        Ok(())
                    },
                )
                .unwrap();
            for (_, row) in batch.rows() {
                let int = |v: &Value| match v {
                    Value::Int(i) => *i,
                    other => panic!("{other:?}"),
                };
                rows.push((int(&row[0]), int(&row[1])));
            }
            marks.extend(batch.marks().iter().map(|m| m.watermark));
            self.logged.extend(self.reader.take_log());
            if self.reader.inbox.borrow().is_empty() {
                return (rows, marks);
            }
        }
    }
}

#[test]
fn the_watermark_is_the_minimum_over_open_connections() {
    let mut f = Fixture::new(LiveLimits::default());
    f.open(1);
    f.open(2);
    f.send(1, "1,100\n1,200\n");
    let (rows, marks) = f.read(100);
    assert_eq!(rows, vec![(1, 100), (1, 200)]);
    assert!(marks.is_empty(), "connection 2 has said nothing: {marks:?}");
    f.send(2, "2,150\n");
    let (_, marks) = f.read(100);
    assert_eq!(marks, vec![140], "min(190, 140)");
    // Closing 2 leaves 1 alone in the minimum.
    f.arrive(Arrival::Close { conn: 2 });
    let (_, marks) = f.read(100);
    assert_eq!(marks, vec![190]);
    // All closed: the largest reached; a new connection cannot pull
    // it back.
    f.arrive(Arrival::Close { conn: 1 });
    f.open(3);
    f.send(3, "3,50\n");
    let (rows, marks) = f.read(100);
    assert_eq!(rows, vec![(3, 50)]);
    assert!(marks.is_empty());
    assert_eq!(f.reader.watermark, 190);
}

#[test]
fn an_idle_connection_leaves_the_minimum_until_it_speaks() {
    let mut f = Fixture::new(LiveLimits {
        idle_timeout_ms: 1000,
        ..LiveLimits::default()
    });
    f.open(1);
    f.open(2);
    f.send(1, "1,100\n");
    f.send(2, "2,500\n");
    assert_eq!(f.read(100).1, vec![90]);
    // 1 is silent for longer than the timeout; 2 speaks.
    f.clock.0.store(1001, Ordering::Relaxed);
    assert!(f.reader.ready(), "the watermark can move without any arrival");
    f.send(2, "2,600\n");
    // Both were idle when the read began (the largest reached, 490),
    // then 2's row made it the only active one.
    assert_eq!(f.read(100).1, vec![490, 590]);
    // 1 comes back with old rows: they are kept as rows (the
    // operators judge them late), the watermark does not go back.
    f.send(1, "1,120\n");
    let (rows, marks) = f.read(100);
    assert_eq!(rows, vec![(1, 120)]);
    assert!(marks.is_empty());
    assert_eq!(f.reader.watermark, 590);
}

#[test]
fn a_record_from_the_future_moves_the_watermark_only_to_the_skew_bound() {
    let mut f = Fixture::new(LiveLimits {
        skew_ms: 1000,
        ..LiveLimits::default()
    });
    f.clock.0.store(10_000, Ordering::Relaxed);
    f.open(1);
    f.send(1, "1,9000\n1,99999999\n1,10500\n");
    let (rows, marks) = f.read(100);
    assert_eq!(rows.len(), 3, "the outlier is kept as a row");
    assert_eq!(marks, vec![8990, 10_990], "bounded at now + skew - delay");
    assert_eq!(f.reader.outliers, 1);
}

#[test]
fn lines_split_across_arrivals_and_batches_are_whole() {
    let mut f = Fixture::new(LiveLimits::default());
    f.open(7);
    f.send(7, "1,1");
    f.send(7, "0\n2,20\r\n\n3,");
    f.send(7, "30\n4,40");
    f.arrive(Arrival::Close { conn: 7 });
    let (rows, _) = f.read(1);
    assert_eq!(rows, vec![(1, 10), (2, 20), (3, 30), (4, 40)]);
    let ib = f.reader.inbox.borrow();
    assert_eq!(ib.finished[&7].0, ConnCounts { rows: 4, malformed: 0 });
}

#[test]
fn bad_and_long_lines_are_reported_with_connection_and_line() {
    let mut f = Fixture::new(LiveLimits {
        line_bytes_max: 8,
        ..LiveLimits::default()
    });
    f.open(1);
    f.send(1, "1,10\nnope\n123456789");
    f.send(1, "0123\n2,20\n");
    let (rows, _) = f.read(100);
    assert_eq!(rows, vec![(1, 10), (2, 20)]);
    assert_eq!((f.rows, f.malformed), (2, 2));
    assert_eq!(f.bad.len(), 2);
    assert_eq!((f.bad[0].0, f.bad[0].1, f.bad[0].3.as_slice()), (1, 2, &b"nope"[..]));
    assert_eq!((f.bad[1].1, f.bad[1].3.as_slice()), (3, &b"12345678"[..]));
    assert!(f.bad[1].2.contains("longer than 8 bytes"), "{}", f.bad[1].2);
}

#[test]
fn an_arrival_is_covered_once_a_log_record_after_it_is_on_disk() {
    let mut f = Fixture::new(LiveLimits::default());
    f.open(1);
    f.send(1, "1,10\n");
    f.reader.inbox.borrow_mut().on_logged(100); // before the close was applied
    let close = f.arrive(Arrival::Close { conn: 1 });
    f.read(100);
    f.reader.inbox.borrow_mut().on_logged(200);
    let mut ib = f.reader.inbox.borrow_mut();
    ib.on_synced(199);
    assert!(!ib.covered(close), "its record is not on disk yet");
    ib.on_synced(200);
    assert_eq!(ib.logged.len(), 1, "superseded records are forgotten at each commit");
    assert!(ib.covered(close));
}

/// Logs what a reader applies, then replays the log into a fresh
/// reader: the same rows and the same watermarks come out.
#[test]
fn a_replayed_log_gives_the_same_rows_and_watermarks() {
    let limits = LiveLimits {
        idle_timeout_ms: 50,
        ..LiveLimits::default()
    };
    let mut f = Fixture::new(limits);
    f.reader.enable_log();
    let mut expected = (Vec::new(), Vec::new());
    let mut step = |f: &mut Fixture, rows_max: usize| {
        let (rows, marks) = f.read(rows_max);
        expected.0.extend(rows);
        expected.1.extend(marks);
    };
    f.open(1);
    f.open(2);
    f.send(1, "1,100\n1,200\nbad\n1,3");
    f.send(2, "2,150\n");
    step(&mut f, 2);
    f.send(1, "00\n");
    f.clock.0.store(60, Ordering::Relaxed); // 2 goes idle
    step(&mut f, 100);
    f.arrive(Arrival::Close { conn: 1 });
    step(&mut f, 100);
    let logged = std::mem::take(&mut f.logged);
    assert!(logged.len() >= 4, "{logged:?}");
    assert!(!expected.1.is_empty());

    // A new reader, as after a restart: nothing arrives but the log.
    let mut g = Fixture::new(limits);
    g.clock.0.store(1_000_000, Ordering::Relaxed); // later, in wall time
    let total: usize = logged.len();
    // Through the WAL's encoding, as recovery reads it.
    let logged: Vec<LoggedBatch> = logged
        .iter()
        .map(|b| {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap();
            laminar_persistence::from_archive::<LoggedBatch>(&bytes).unwrap()
        })
        .collect();
    g.reader.replay(logged);
    assert_eq!(g.reader.replaying(), total);
    let mut got = (Vec::new(), Vec::new());
    while g.reader.replaying() > 0 {
        let (rows, marks) = g.read(100);
        got.0.extend(rows);
        got.1.extend(marks);
    }
    assert_eq!(got, expected);
    assert_eq!((g.rows, g.malformed), (f.rows, f.malformed));
    assert!(g.reader.conns.is_empty(), "replayed connections are gone");
    assert_eq!(g.reader.inbox.borrow().next_conn, 3, "new connections get new ids");
}

#[test]
fn a_failed_connection_leaves_nothing_behind() {
    let mut f = Fixture::new(LiveLimits::default());
    f.open(1);
    f.send(1, "1,10\n");
    {
        let mut ib = f.reader.inbox.borrow_mut();
        ib.push(Arrival::Close { conn: 1 });
        ib.unanswered.insert(1);
    }
    f.read(100);
    let ib = f.reader.inbox.borrow();
    assert!(ib.finished.is_empty() && ib.unanswered.is_empty());
    assert_eq!(ib.open, 0);
    assert!(f.reader.conns.is_empty());
}

#[test]
fn a_full_inbox_refuses_nothing_but_closed_intake_refuses_all() {
    let f = Fixture::new(LiveLimits::default());
    f.open(1);
    f.reader.inbox.borrow_mut().close();
    assert!(f.reader.inbox.borrow_mut().push(Arrival::Close { conn: 1 }).is_none());
    assert!(!f.reader.inbox.borrow().drained(), "the open is still queued");
}
