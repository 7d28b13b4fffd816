//! The bodies of the fuzz targets (`tests/fuzz/fuzz_targets/*.rs`), here
//! so that the default test suite replays every committed corpus and crash
//! file through exactly the same code (`tests/tests/fuzz_corpus.rs`).
//!
//! Each takes arbitrary bytes and must return: no panic, no hang, memory
//! bounded by the input. Beyond not crashing, each checks what must hold
//! of whatever it was given:
//! - `sql`: a script plans or fails with a located error; a plan explains.
//! - `csv`, `json`: a record decodes to exactly one value per column or to
//!   an error; a decoded row encodes and decodes back to itself; a decoder
//!   that keeps only some columns but checks every one (`validate =
//!   'all'`) accepts exactly the records the full decoder accepts.
//! - `scalars`: a parsed timestamp, written as a sink writes it, parses
//!   back to itself; intervals parse or fail.
//! - `wal`: any bytes as the last WAL segment (after a valid header, or
//!   as the whole file) read as records, a truncated torn tail, or a
//!   located corruption error; what was read reads again the same.
//! - `manifest`: any bytes as a manifest decode or fail with the file
//!   named; a decoded manifest encodes and decodes back to itself.
//! - `tcp_framing`: any bytes, cut into pieces of any sizes, frame into
//!   exactly the input's lines (a line over the limit as its first
//!   `line_bytes_max` bytes, flagged), holding at most the limit between
//!   pieces; every line then decodes or fails with a reason.
//! - `config`: any text as `laminar.toml` parses into a config whose
//!   every value is in range, or fails with one line naming what is wrong.
//!   It runs `laminar serve`'s own parser, the `laminar-config` crate.

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
    let Ok(mut decoder) = format.decoder(&schema, None, delimiter, &[], false, false) else {
        return;
    };
    let mut encoder = format.encoder(&schema, false);
    // The same schema with only some columns kept but every one checked
    // (`validate = 'all'`, the default): it must accept exactly the
    // records the full decoder accepts. The first byte's upper bits pick
    // the kept columns.
    let used: Vec<bool> = (0..schema.len()).map(|i| (first >> (2 + i)) & 1 == 1).collect();
    let Ok(mut checking) = format.decoder(&schema, None, delimiter, &used, true, true) else {
        return;
    };
    let mut narrow = Vec::new();
    let mut row = Vec::new();
    let mut encoded = Vec::new();
    let mut again = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        let _ = csv_record_incomplete_with(line, delimiter);
        row.clear();
        narrow.clear();
        let full = decoder.decode(line, &mut row);
        assert_eq!(
            checking.decode(line, &mut narrow).is_ok(),
            full.is_ok(),
            "checking every column accepts what decoding every column does: {:?}",
            String::from_utf8_lossy(line)
        );
        if full.is_err() {
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
                "{row:?} encoded as {:?} does not decode: {}",
                String::from_utf8_lossy(line),
                decoder.explain(line, e)
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

/// `tcp_framing`: see the module doc. Byte 0 sets the line limit (1 to
/// 256), byte 1 the piece sizes (a cycle of 1 to 16 bytes and one whole
/// rest); the rest is the stream.
pub fn tcp_framing(data: &[u8]) {
    use laminar_exec::format::{Framed, LineFramer};
    let [limit, sizes, stream @ ..] = data else {
        return;
    };
    let stream = &stream[..stream.len().min(INPUT_BYTES_MAX)];
    let max = usize::from(*limit) + 1;
    let mut framer = LineFramer::new(max);
    let schema = Schema::new(vec![
        Field::new("a", DataType::Int),
        Field::new("b", DataType::Str),
        Field::new("t", DataType::Ts),
    ]);
    let mut decoder = Format::Csv
        .decoder(&schema, None, b',', &[], false, false)
        .expect("a plain schema");
    let mut framed_lines: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut take = |framed: Framed<'_>, framed_lines: &mut Vec<(bool, Vec<u8>)>| {
        let (long, bytes) = match framed {
            Framed::Line(b) => (false, b),
            Framed::TooLong(b) => (true, b),
        };
        assert!(bytes.len() <= max, "a framed line is at most the limit");
        if !long {
            let mut row = Vec::new();
            if decoder.decode(bytes, &mut row).is_ok() {
                assert_eq!(row.len(), 3, "one value per column");
            }
        }
        framed_lines.push((long, bytes.to_vec()));
    };
    let mut pos = 0;
    let mut cycle = 0usize;
    while pos < stream.len() {
        // Piece sizes from the pattern byte: 1..=16, or the whole rest.
        let size = if sizes & 0x80 != 0 && cycle % 7 == 6 {
            stream.len() - pos
        } else {
            usize::from((sizes >> (cycle % 4)) & 0x0f) + 1
        };
        cycle += 1;
        let mut piece = &stream[pos..(pos + size).min(stream.len())];
        pos += piece.len();
        while !piece.is_empty() {
            let (n, framed) = framer.push(piece);
            assert!(n > 0 && n <= piece.len(), "push takes some bytes");
            if let Some(f) = framed {
                take(f, &mut framed_lines);
            }
            assert!(framer.pending() <= max, "held bytes stay under the limit");
            piece = &piece[n..];
        }
    }
    if let Some(f) = framer.finish() {
        take(f, &mut framed_lines);
    }
    assert_eq!(framer.lines(), framed_lines.len() as u64, "lines are numbered 1, 2, …");
    // The lines are exactly the input's.
    let mut expected: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if stream.last() == Some(&b'\n') || stream.is_empty() {
        expected.pop();
    }
    assert_eq!(framed_lines.len(), expected.len());
    for ((long, got), line) in framed_lines.iter().zip(expected) {
        if line.len() > max {
            assert!(*long, "a line over the limit is flagged");
            assert_eq!(got.as_slice(), &line[..max]);
        } else {
            assert!(!long);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert_eq!(got.as_slice(), line);
        }
    }
}

use laminar_config as config;

/// `config`: see the module doc.
pub fn config(data: &[u8]) {
    let text = text(data);
    match config::Config::parse(&text, std::path::Path::new("/etc/laminar")) {
        Ok(c) => {
            assert!(
                c.pipeline.sql.is_some() == c.pipeline.files.is_empty(),
                "one SQL source"
            );
            assert!((1..=65_536).contains(&c.limits.connections_per_source));
            assert!((64..=64 << 20).contains(&c.limits.line_bytes_max));
            assert!((1..=86_400_000).contains(&c.watermark.idle_timeout_ms));
            assert!(c.listen.admin.parse::<std::net::SocketAddr>().is_ok());
            assert!(
                c.pipeline.files.iter().all(|f| f.is_absolute()),
                "files are made absolute"
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty() && !message.contains('\n'), "one line: {message:?}");
        }
    }
}
