//! Rough single-core speed of the Nexmark generator and the record codecs:
//! generates N bids (default 1,000,000), encodes them as CSV and JSON
//! lines, and decodes them back, printing ns per row for each step.
//! `cargo run --release -p laminar-nexmark --example format_speed [rows]`.
//!
//! Back of the envelope: a bid row is 7 fields and ~90 bytes; splitting and
//! parsing should cost a few ns per byte, so expect 100–300 ns per row.

use std::time::Instant;

use laminar_exec::format::{CsvDecoder, CsvEncoder, Decoder, Encoder, JsonDecoder, JsonEncoder};
use laminar_exec::{Op, Value};
use laminar_nexmark::{schema, EventKind, Generator, NexmarkConfig};

fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let generator = Generator::new(NexmarkConfig {
        events: 0,
        ..NexmarkConfig::default()
    });
    let schema = schema(EventKind::Bid);
    let width = schema.len();

    // Timed steps write into small reused buffers, as the engine does:
    // filling one huge buffer would mostly measure the kernel's page faults.
    let start = Instant::now();
    let mut chunk: Vec<Value> = Vec::with_capacity(width * 1024);
    let mut i = 0;
    for _ in 0..rows {
        i = Generator::next_of_kind(i, EventKind::Bid);
        generator.fill_row(i, EventKind::Bid, &mut chunk);
        i += 1;
        if chunk.len() >= width * 1024 {
            chunk.clear();
        }
    }
    report("generate bids", start, rows);
    let mut values: Vec<Value> = Vec::with_capacity(rows as usize * width);
    let mut i = 0;
    for _ in 0..rows {
        i = Generator::next_of_kind(i, EventKind::Bid);
        generator.fill_row(i, EventKind::Bid, &mut values);
        i += 1;
    }

    for (name, mut encoder, mut decoder) in [
        (
            "csv",
            Box::new(CsvEncoder::new(&schema, false)) as Box<dyn Encoder>,
            Box::new(CsvDecoder::new(&schema, None, b',').unwrap()) as Box<dyn Decoder>,
        ),
        (
            "json",
            Box::new(JsonEncoder::new(&schema, false)),
            Box::new(JsonDecoder::new(&schema)),
        ),
    ] {
        let mut bytes = Vec::new();
        for row in values.chunks_exact(width) {
            encoder.row(Op::Insert, row, &mut bytes);
        }
        let start = Instant::now();
        let mut buffer = Vec::with_capacity(1 << 20);
        for row in values.chunks_exact(width) {
            encoder.row(Op::Insert, row, &mut buffer);
            if buffer.len() > (1 << 20) - 1024 {
                buffer.clear();
            }
        }
        report(
            &format!("{name} encode ({} bytes/row)", bytes.len() as u64 / rows),
            start,
            rows,
        );

        let start = Instant::now();
        let mut out = Vec::with_capacity(width * 1024);
        let mut decoded = 0u64;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            decoder.decode(line, &mut out).expect("own output decodes");
            decoded += 1;
            if out.len() >= width * 1024 {
                out.clear();
            }
        }
        assert_eq!(decoded, rows);
        report(&format!("{name} decode"), start, rows);
    }
}

fn report(what: &str, start: Instant, rows: u64) {
    let elapsed = start.elapsed();
    println!(
        "{what:<32} {:>8.1} ns/row  ({:.2} M rows/s)",
        elapsed.as_nanos() as f64 / rows as f64,
        rows as f64 / elapsed.as_secs_f64() / 1e6
    );
}
