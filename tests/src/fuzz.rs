//! The bodies of the fuzz targets (`tests/fuzz/fuzz_targets/*.rs`), here
//! so that the default test suite replays every committed corpus and crash
//! file through exactly the same code (`tests/tests/fuzz_corpus.rs`).
//!
//! Each takes arbitrary bytes and must return: no panic, no hang, memory
//! bounded by the input. Beyond not crashing, each checks what must hold
//! of whatever it was given:
//! - `sql`: a script plans or fails with a located error; a plan explains.
//! - `csv`, `json`: a record decodes to exactly one value per column or to
//!   an error; a decoded row encodes and decodes back to itself.
//! - `scalars`: a parsed timestamp, written as a sink writes it, parses
//!   back to itself; intervals parse or fail.
//! - `wal`: any bytes as the last WAL segment (after a valid header, or
//!   as the whole file) read as records, a truncated torn tail, or a
//!   located corruption error; what was read reads again the same.
//! - `manifest`: any bytes as a manifest decode or fail with the file
//!   named; a decoded manifest encodes and decodes back to itself.

use laminar_exec::batch::Op;
use laminar_exec::format::{csv_record_incomplete_with, write_value_text, Format};
use laminar_exec::time::{parse_interval, parse_timestamp, timestamp_to_string};
use laminar_exec::types::{DataType, Field, Schema, Value};

/// 0000-01-01 and the last millisecond of 9999-12-31, UTC: the instants
/// written in calendar form.
const TS_TEXT_MS_MIN: i64 = -62_167_219_200_000;
const TS_TEXT_MS_MAX: i64 = 253_402_300_799_999;
use laminar_sql::{plan_script, PlanOptions};

/// Inputs longer than this are cut: the decoders bound records at 1 MiB
/// themselves; the fuzzer gains nothing from more.
const INPUT_BYTES_MAX: usize = 64 << 10;

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&data[..data.len().min(INPUT_BYTES_MAX)])
}

pub fn sql(data: &[u8]) {
    let script = text(data);
    match plan_script(&script, PlanOptions::default()) {
        Ok(plan) => {
            let explained = plan.explain();
            assert!(!explained.is_empty(), "a plan explains to nothing");
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error says what is wrong");
            assert!(e.line >= 1 && e.column >= 1, "an error has a location: {e:?}");
        }
    }
}

/// A column of every type, so each field parser is reached.
fn schema() -> Schema {
    Schema::new(vec![
        Field::new("i", DataType::Int),
        Field::new("d", DataType::Double),
        Field::new("b", DataType::Bool),
        Field::new("s", DataType::Str),
        Field::new("t", DataType::Ts),
    ])
}

/// Decodes each line of `data` as a record of `format`, the first byte
/// choosing the CSV delimiter, and round-trips every good row.
fn records(data: &[u8], format: Format) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let delimiter = [b',', b';', b'\t', b'|'][usize::from(first % 4)];
    let schema = schema();
    let input = &rest[..rest.len().min(INPUT_BYTES_MAX)];
    let Ok(mut decoder) = format.decoder(&schema, None, delimiter) else {
        return;
    };
    let mut encoder = format.encoder(&schema, false);
    let mut row = Vec::new();
    let mut encoded = Vec::new();
    let mut again = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        let _ = csv_record_incomplete_with(line, delimiter);
        row.clear();
        if decoder.decode(line, &mut row).is_err() {
            assert!(row.is_empty(), "a failed decode leaves no partial row");
            continue;
        }
        assert_eq!(row.len(), schema.len(), "one value per column");
        if delimiter != b',' {
            continue; // the encoders write commas
        }
        encoded.clear();
        encoder.row(Op::Insert, &row, &mut encoded);
        assert_eq!(encoded.last(), Some(&b'\n'), "an encoded row is one line");
        let line = &encoded[..encoded.len() - 1];
        if format == Format::Csv && line.contains(&b'\n') {
            continue; // a quoted newline: one record over two lines
        }
        again.clear();
        decoder.decode(line, &mut again).unwrap_or_else(|e| {
            panic!(
                "{row:?} encoded as {:?} does not decode: {e}",
                String::from_utf8_lossy(line)
            )
        });
        assert_eq!(
            format!("{again:?}"),
            format!("{row:?}"),
            "the round trip changed the row"
        );
    }
}

pub fn csv(data: &[u8]) {
    records(data, Format::Csv);
}

pub fn json(data: &[u8]) {
    records(data, Format::Json);
}

pub fn scalars(data: &[u8]) {
    let input = text(data);
    for part in input.split('\n') {
        if let Ok(ms) = parse_timestamp(part) {
            // What a sink writes for it reads back as the same instant
            // (epoch milliseconds outside years 0000–9999, which an offset
            // can reach from 9999-12-31).
            let mut written = Vec::new();
            write_value_text(&Value::Ts(ms), &mut written);
            let shown = String::from_utf8(written).expect("timestamps are written as ASCII");
            assert_eq!(parse_timestamp(&shown), Ok(ms), "{part:?} -> {ms} -> {shown:?}");
            if (TS_TEXT_MS_MIN..=TS_TEXT_MS_MAX).contains(&ms) {
                assert_eq!(shown, timestamp_to_string(ms), "in range the text is the calendar form");
            }
        }
        let (amount, unit) = part.split_once(' ').map_or((part, None), |(a, u)| (a, Some(u)));
        if let Ok(ms) = parse_interval(amount, unit) {
            let _ = ms; // negative amounts are the caller's to refuse
        }
    }
}

/// `wal`: see the module doc. The first byte picks a valid header or
/// none; the rest is the segment's bytes.
pub fn wal(data: &[u8]) {
    use laminar_persistence::wal;
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let body = &body[..body.len().min(INPUT_BYTES_MAX)];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = wal::segment_path(dir.path(), 0, 0);
    let mut file = if mode & 1 == 1 {
        wal::encode_segment_header(0, 0, 0, u64::from(mode) * 64)
    } else {
        Vec::new()
    };
    file.extend_from_slice(body);
    std::fs::write(&path, &file).expect("writing the segment");
    let read = |dir: &std::path::Path| {
        let mut records = Vec::new();
        wal::read_log(dir, 0, 0, |r| {
            records.push(r);
            Ok(())
        })
        .map(|report| (records, report.end_lsn))
    };
    match read(dir.path()) {
        Ok((records, end)) => {
            assert!(records.windows(2).all(|w| w[0].lsn < w[1].lsn), "LSNs grow");
            // After any truncation the log reads the same, and clean.
            let (again, end2) = read(dir.path()).expect("a log read once reads again");
            assert_eq!((again, end2), (records, end));
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("wal-0000"), "the error names the file: {text}");
        }
    }
}

/// `manifest`: see the module doc.
pub fn manifest(data: &[u8]) {
    use laminar_persistence::manifest;
    let path = std::path::Path::new("/state/MANIFEST");
    match manifest::decode(path, data) {
        Ok(m) => {
            let bytes = manifest::encode(&m).expect("a decoded manifest encodes");
            assert_eq!(manifest::decode(path, &bytes).expect("and decodes"), m);
        }
        Err(e) => assert!(e.to_string().contains("MANIFEST"), "{e}"),
    }
}
