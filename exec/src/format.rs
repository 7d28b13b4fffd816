//! Record decoders and encoders: the bytes of one record in, row values out,
//! and rows back to bytes. Two formats exist, CSV (RFC 4180, `csv`) and JSON
//! lines (`json`). This is the ingest hot path, so both are hand-written
//! single passes over bytes that reuse their scratch buffers: decoding a
//! record allocates nothing but the strings that outgrow `Str`'s inline 24
//! bytes, and encoding writes straight into the caller's `Vec<u8>`.
//!
//! Nothing here does I/O. The caller hands over one record at a time
//! (without its terminator) and, for CSV, asks `csv_record_incomplete`
//! whether a quoted field runs on to the next line; or, for a run of bytes
//! known to hold no quote, hands over the whole run (`decode_lines`), which
//! CSV splits into lines and fields in one pass.
//! Every decoder is total: any input bytes give a row or an error naming
//! the column and the reason, never a panic, because decoders face
//! whatever arrives on a socket. The error is a small `Copy` value; its
//! message is rendered only for a record that is reported (`error`).

mod csv;
mod error;
mod framing;
mod json;

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use crate::batch::{Batch, Op};
use crate::time::{civil_from_days, floor_div, MS_PER_DAY};
use crate::types::{DataType, Field, Schema, Value};

#[cfg(test)]
mod fixtures;

use self::error::TIMESTAMP_TEXT_BYTES_MAX;
pub use self::error::{DecodeError, Expected, FormatError, Found, JsonError, NullInput, SplitError, ValueError};

pub use self::csv::{csv_record_incomplete, csv_record_incomplete_with, names_columns, CsvDecoder, CsvEncoder};
pub use self::framing::{Framed, LineFramer};
pub use self::json::{JsonDecoder, JsonEncoder};

/// A record with more fields than this is refused (a limit on everything:
/// a hostile line of commas must not make the decoder allocate without
/// bound). A schema may not be wider either.
pub const RECORD_FIELDS_MAX: usize = 4096;

/// The record format of a file or socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma- (or otherwise-) separated values, RFC 4180 quoting.
    Csv,
    /// JSON lines: one JSON object per line.
    Json,
}

impl Format {
    /// Parses the `format` option of a connector (case-insensitive).
    pub fn parse(name: &str) -> Result<Format, FormatError> {
        if name.eq_ignore_ascii_case("csv") {
            Ok(Format::Csv)
        } else if name.eq_ignore_ascii_case("json") {
            Ok(Format::Json)
        } else {
            Err(FormatError::UnknownFormat { name: name.to_string() })
        }
    }

    /// The option spelling.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    /// A decoder for this format. `header` and `delimiter` only matter for
    /// CSV (see `CsvDecoder::new`). `used` says per schema column whether
    /// anything reads it (empty: all): an unread CSV column is not parsed
    /// (see `CsvDecoder::with_projection`). With `compact`, rows hold only
    /// the used columns, in schema order, instead of NULL in the others.
    pub fn decoder(
        self,
        schema: &Schema,
        header: Option<&[u8]>,
        delimiter: u8,
        used: &[bool],
        compact: bool,
        check_unused: bool,
    ) -> Result<Box<dyn Decoder>, FormatError> {
        Ok(match self {
            Format::Csv => {
                let mut d = CsvDecoder::new(schema, header, delimiter)?.with_projection(used);
                if check_unused {
                    d = d.checking_unused();
                }
                Box::new(if compact { d.compact() } else { d })
            }
            Format::Json if compact => Box::new(Compact::new(JsonDecoder::new(schema), schema.len(), used)),
            Format::Json => Box::new(JsonDecoder::new(schema)),
        })
    }

    /// An encoder for this format; `changelog` adds the `op` column.
    pub fn encoder(self, schema: &Schema, changelog: bool) -> Box<dyn Encoder> {
        match self {
            Format::Csv => Box::new(CsvEncoder::new(schema, changelog)),
            Format::Json => Box::new(JsonEncoder::new(schema, changelog)),
        }
    }
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Format, FormatError> {
        Format::parse(s)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Turns one record into one row.
pub trait Decoder {
    /// Decodes one record (one line; the caller strips the trailing `\n` /
    /// `\r\n`) into row values appended to `out`: exactly `schema.len()`
    /// values on success; on error `out` is left as it was before the call.
    fn decode(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError>;

    /// The message for `error`, which `decode` returned for `record`: what
    /// a report of the malformed record shows. Only refused records pay
    /// for the text (see `DecodeError`).
    fn explain(&self, record: &[u8], error: DecodeError) -> String;

    /// Decodes a run of whole lines, each a record: `buf` holds no quote
    /// (so no record spans lines) and its last line may lack its `\n`. A
    /// `\r` before a `\n` is part of the terminator, blank lines are
    /// skipped (but counted), and a record longer than the limit is
    /// refused unread, as `source::read_record` does for every other
    /// reader. The default decodes line by line with `decode`; CSV finds
    /// every line's delimiters in one pass over `buf` instead.
    fn decode_lines(&mut self, buf: &[u8], out: &mut Lines) {
        let mut line_start = 0;
        let ends = memchr::memchr_iter(b'\n', buf)
            .map(|i| (i, true))
            .chain((!buf.is_empty() && buf.last() != Some(&b'\n')).then_some((buf.len(), false)));
        for (line_end, terminated) in ends {
            let record = &buf[line_start..record_end(buf, line_start, line_end, terminated)];
            line_start = line_end + 1;
            out.line(record.len(), |values| {
                self.decode(record, values).map_err(|e| self.explain(record, e))
            });
        }
    }
}

/// Where the record of the line `buf[start..end]` ends: before a `\r`
/// that goes with the line's `\n` (`terminated`), as `strip_newline` has
/// it for every reader.
#[inline]
pub(crate) fn record_end(buf: &[u8], start: usize, end: usize, terminated: bool) -> usize {
    if terminated && end > start && buf[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// Why a record over the length limit is malformed.
pub fn too_long_reason(record_bytes_max: usize) -> String {
    format!("record longer than {record_bytes_max} bytes")
}

/// What `Decoder::decode_lines` made of a run of lines: the rows in
/// batches, the watermark column's maximum, and the refused records with
/// their line numbers and messages (rendered as they are refused, while
/// their bytes are at hand: the run's buffer is reused before the report).
#[derive(Debug)]
pub struct Lines {
    /// The rows, in batches of at most `batch_rows`.
    pub batches: Vec<Batch>,
    width: usize,
    batch_rows: usize,
    time_column: Option<usize>,
    record_bytes_max: usize,
    /// The largest value of `time_column` (TIMESTAMP or BIGINT) in an
    /// accepted row; `i64::MIN` if none.
    pub max_time: i64,
    /// Where `max_time` rose, in order: (batch, row in it, the new
    /// maximum). Only these rows can move a watermark computed from the
    /// maximum, whatever came before the run.
    pub advances: Vec<(usize, usize, i64)>,
    /// Lines seen, blank ones included.
    pub lines: u64,
    /// Rows accepted.
    pub rows: u64,
    /// Refused records: (line number in the run, from 1; the reason).
    pub bad: Vec<(u64, String)>,
}

impl Lines {
    /// Rows are `width` values wide; `time_column` is tracked in
    /// `max_time`; records over `record_bytes_max` bytes are refused.
    pub fn new(width: usize, batch_rows: usize, time_column: Option<usize>, record_bytes_max: usize) -> Lines {
        assert!(batch_rows > 0, "a batch holds a row at least");
        Lines {
            batches: vec![Batch::new(width)],
            width,
            batch_rows,
            time_column,
            record_bytes_max,
            max_time: i64::MIN,
            advances: Vec::new(),
            lines: 0,
            rows: 0,
            bad: Vec::new(),
        }
    }

    /// One more line, of a record `len` bytes long that `fill` decodes
    /// into a row (or says why not, in words): counted, skipped when
    /// blank, refused unread when over the limit.
    #[inline]
    pub(crate) fn line(&mut self, len: usize, fill: impl FnOnce(&mut Vec<Value>) -> Result<(), String>) {
        self.lines += 1;
        if len > 0 {
            let line = self.lines;
            self.record(line, len > self.record_bytes_max, fill);
        }
    }

    /// One record, which began on line `line` of the run (from 1): `fill`
    /// decodes it into a row, unless it is `too_long` (the caller measured
    /// it against the limit), which refuses it unread.
    #[inline]
    pub fn record(&mut self, line: u64, too_long: bool, fill: impl FnOnce(&mut Vec<Value>) -> Result<(), String>) {
        if too_long {
            self.bad.push((line, too_long_reason(self.record_bytes_max)));
            return;
        }
        match self.batch().push_with(Op::Insert, fill) {
            Ok(()) => self.accepted(),
            Err(reason) => self.bad.push((line, reason)),
        }
    }

    /// The batch the next row goes to: the last, or a new one when the
    /// last is full.
    #[inline]
    fn batch(&mut self) -> &mut Batch {
        if self.batches.last().is_some_and(|b| b.len() >= self.batch_rows) {
            self.batches.push(Batch::with_capacity(self.width, self.batch_rows));
        }
        self.batches.last_mut().expect("one batch at least")
    }

    /// The row just pushed was accepted.
    #[inline]
    fn accepted(&mut self) {
        if let Some(column) = self.time_column {
            let rows = self.batches.last().expect("one batch at least");
            if let Value::Ts(t) | Value::Int(t) = rows.row(rows.len() - 1)[column] {
                if t > self.max_time {
                    self.max_time = t;
                    self.advances.push((self.batches.len() - 1, rows.len() - 1, t));
                }
            }
        }
        self.rows += 1;
    }
}

/// Keeps only the used columns of another decoder's rows (for formats
/// that decode whole rows).
struct Compact<D> {
    inner: D,
    width: usize,
    used: Vec<bool>,
    row: Vec<Value>,
}

impl<D: Decoder> Compact<D> {
    fn new(inner: D, width: usize, used: &[bool]) -> Compact<D> {
        Compact {
            inner,
            width,
            used: (0..width).map(|c| used.get(c).copied().unwrap_or(true)).collect(),
            row: Vec::with_capacity(width),
        }
    }
}

impl<D: Decoder> Decoder for Compact<D> {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError> {
        self.row.clear();
        self.inner.decode(record, &mut self.row)?;
        debug_assert_eq!(self.row.len(), self.width);
        out.extend(self.row.drain(..).zip(&self.used).filter(|(_, &u)| u).map(|(v, _)| v));
        Ok(())
    }

    /// The inner decoder's columns are the schema's, as are the error's.
    fn explain(&self, record: &[u8], error: DecodeError) -> String {
        self.inner.explain(record, error)
    }
}

/// Turns rows into records.
pub trait Encoder {
    /// Writes the header (if any); called once before any row.
    fn header(&mut self, out: &mut Vec<u8>);
    /// Appends one row (with its changelog op) as one line ending in '\n'.
    fn row(&mut self, op: Op, row: &[Value], out: &mut Vec<u8>);
}

/// Formats a single value as text the way CSV output shows it (with `,` as
/// the delimiter): NULL is empty, strings are quoted when they would not
/// read back as themselves. Used by the stdout sink too.
pub fn write_value_text(v: &Value, out: &mut Vec<u8>) {
    csv::write_field(v, b',', out);
}

/// Formats a value as bare text, never quoted: NULL is empty, a string is
/// its own bytes. For human-facing displays that do their own layout.
pub fn write_value_plain(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
        other => write_scalar(other, out),
    }
}

/// Writes a non-string value in its text form (NULL writes nothing).
fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => write_i64(*i, out),
        Value::Double(d) => write_f64(*d, out),
        Value::Ts(ms) => TimestampWriter::new().write(*ms, out),
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
    }
}

/// Distinct decimals of at most this many significant digits are distinct
/// f64s (10^15 < 2^53), so a double's shortest digits, when this short,
/// are the only shortest digits there are.
const UNIQUE_DIGITS_MAX: usize = 15;

/// Appends `d` exactly as `Display` writes it (the shortest digits that
/// read back as the same f64, in plain decimal: no exponent, no `.0`):
/// `fmt`'s float path was a tenth of a run that writes one DOUBLE per row.
/// Shortest digits of up to 15 are unique, so any method that finds them
/// agrees with `fmt`: `write_f64_short` for the usual magnitudes, then
/// `ryu`; longer ones go through `fmt` (a property test holds all of it to
/// `Display`'s text).
pub(crate) fn write_f64(d: f64, out: &mut Vec<u8>) {
    let a = d.abs();
    if d.is_finite() && a != 0.0 && !(EXPONENT_BELOW..EXPONENT_FROM).contains(&a) {
        write_f64_exponent(d, out);
        return;
    }
    match write_f64_short(d, out) {
        Short::Written => return,
        Short::Long => {
            let _ = write!(out, "{d}");
            return;
        }
        Short::Unknown => {}
    }
    if !d.is_finite() {
        let _ = write!(out, "{d}");
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(d).as_bytes();
    // ryu writes `[-]int[.frac][e[-]exp]`.
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match memchr::memchr(b'e', text) {
        Some(i) => {
            let exp = std::str::from_utf8(&text[i + 1..])
                .ok()
                .and_then(|e| e.parse::<i32>().ok())
                .expect("ryu writes a decimal exponent");
            (&text[..i], exp)
        }
        None => (text, 0),
    };
    let (int, frac) = match memchr::memchr(b'.', mantissa) {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &[][..]),
    };
    // At most 17 significant digits, plus ryu's zeros around them.
    let mut digits = [0u8; 32];
    let n = int.len() + frac.len();
    digits[..int.len()].copy_from_slice(int);
    digits[int.len()..n].copy_from_slice(frac);
    let mut point = int.len() as i32 + exponent;
    let lead = digits[..n].iter().take_while(|&&b| b == b'0').count();
    point -= lead as i32;
    let digits = &digits[lead..n];
    let digits = &digits[..digits.len() - digits.iter().rev().take_while(|&&b| b == b'0').count()];
    if digits.len() > UNIQUE_DIGITS_MAX {
        // Several 16- or 17-digit strings may read back as `d`, and ryu
        // and `fmt` do not always pick the same one: `fmt` decides.
        let _ = write!(out, "{d}");
        return;
    }
    if negative {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.push(b'0');
        return;
    }
    let len = digits.len() as i32;
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend_from_slice(digits);
    } else if point >= len {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', (point - len) as usize));
    } else {
        out.extend_from_slice(&digits[..point as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[point as usize..]);
    }
}

/// The powers of ten an f64 holds exactly.
const POW10_EXACT: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Magnitudes written with an exponent, as PostgreSQL and DuckDB do: a
/// decimal exponent below -4 or from 15 on (`1e-05`, `1.5e+15`); plain
/// decimals between, so the common values read as people write them.
const EXPONENT_BELOW: f64 = 1e-4;
const EXPONENT_FROM: f64 = 1e15;

/// `d` as its shortest round-trip digits with a decimal exponent, in
/// PostgreSQL's form: `5e-324`, `1.7976931348623157e+308`, `-1e-05` (a
/// sign, at least two digits). Rare magnitudes: `fmt` finds the digits.
fn write_f64_exponent(d: f64, out: &mut Vec<u8>) {
    let text = format!("{d:e}");
    let (mantissa, exponent) = text.split_once('e').expect("LowerExp writes an exponent");
    let exponent: i32 = exponent.parse().expect("a decimal exponent");
    let _ = write!(
        out,
        "{mantissa}e{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.unsigned_abs()
    );
}

/// What `write_f64_short` found.
enum Short {
    /// `d` is written.
    Written,
    /// `d`'s shortest digits are more than `UNIQUE_DIGITS_MAX`.
    Long,
    /// Not decided here (zero, not finite, huge or tiny).
    Unknown,
}

/// `write_f64` without ryu for a double whose shortest digits are at most
/// `UNIQUE_DIGITS_MAX` (most DOUBLEs a query computes from decimal data:
/// `0.908 * price`). For k = 0, 1, … it takes m, the integer nearest
/// `|d| * 10^k`; when `m / 10^k` (both exact in f64, so the division is
/// correctly rounded) gives back `|d|`, the decimal `m * 10^-k` reads back
/// as `d`, and a decimal of at most 15 digits that does is the only one
/// there is (see `UNIQUE_DIGITS_MAX`), so it is `Display`'s shortest. Such
/// a decimal, if there is one, is found at its k: `|d| * 10^k` is within
/// 0.22 of it. So once `|d| * 10^k` reaches 10^15 with none found, the
/// shortest digits are longer than 15.
#[inline]
fn write_f64_short(d: f64, out: &mut Vec<u8>) -> Short {
    let a = d.abs();
    if !(a > 0.0 && a < 1e15) {
        return Short::Unknown;
    }
    for (k, &p) in POW10_EXACT.iter().enumerate() {
        let scaled = a * p;
        if scaled >= 1e15 {
            return Short::Long;
        }
        // The nearest integer, without `round` (a libm call on this
        // target): below 2^50, `scaled + 0.5` is exact and the cast
        // truncates, so halves go up as `round`'s do for positives.
        let m = (scaled + 0.5) as u64;
        // Below 10^15, so exact as a double.
        if m as f64 / p != a {
            continue;
        }
        if d < 0.0 {
            out.push(b'-');
        }
        // 10^k overflows a u64 from k = 20; m < 10^15 is then all
        // fraction.
        let (int, mut frac) = match 10u64.checked_pow(k as u32) {
            Some(unit) => (m / unit, m % unit),
            None => (0, m),
        };
        write_i64(int as i64, out);
        if frac != 0 {
            let mut digits = k;
            while frac.is_multiple_of(10) {
                frac /= 10;
                digits -= 1;
            }
            out.push(b'.');
            // The fraction's leading zeros, then its digits.
            out.extend(std::iter::repeat_n(b'0', digits - (frac.ilog10() as usize + 1)));
            write_i64(frac as i64, out);
        }
        return Short::Written;
    }
    Short::Unknown
}

/// "00" to "99": two digits per division when writing integers.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends the decimal digits of `v` without going through `fmt`, straight
/// into the vector's spare room: copying them out of a scratch array was a
/// call to `memcpy` per value, a tenth of a run writing four numbers a row.
fn write_i64(v: i64, out: &mut Vec<u8>) {
    let mut n = v.unsigned_abs();
    let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let len = digits + usize::from(v < 0);
    out.reserve(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let mut i = len;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        spare[i].write(DIGIT_PAIRS[pair]);
        spare[i + 1].write(DIGIT_PAIRS[pair + 1]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        spare[i].write(DIGIT_PAIRS[pair]);
        spare[i + 1].write(DIGIT_PAIRS[pair + 1]);
    } else {
        i -= 1;
        spare[i].write(b'0' + n as u8);
    }
    if v < 0 {
        i -= 1;
        spare[i].write(b'-');
    }
    assert_eq!(i, 0, "the digit count of {v} was wrong");
    // SAFETY: the loop above wrote every one of the `len` bytes after the
    // vector's end (`i` went from `len` down to 0, writing each position
    // it passed), and `reserve` made room for them.
    unsafe { out.set_len(out.len() + len) };
}

/// The first and last millisecond of years 0000–9999: the timestamps that
/// `YYYY-MM-DD HH:MM:SS.fff` can show and `time::parse_timestamp` can read.
const TS_CALENDAR_MS_MIN: i64 = -62_167_219_200_000;
const TS_CALENDAR_MS_MAX: i64 = 253_402_300_799_999;

/// Writes timestamps as `YYYY-MM-DD HH:MM:SS.fff` (what
/// `time::format_timestamp` writes) straight into bytes, remembering the
/// date of the last one: the rows of a stream mostly share a day, and the
/// calendar conversion is most of the cost; and the whole text of the last
/// one, as a busy stream repeats a millisecond for many rows.
///
/// A timestamp outside years 0000–9999 has no such text (and the calendar
/// arithmetic would overflow near the ends of i64), so it is written as
/// epoch milliseconds, which the decoders read back as the same value.
#[derive(Debug, Clone)]
struct TimestampWriter {
    day: i64,
    /// `YYYY-MM-DD ` of `day`.
    date: [u8; 11],
    /// The last timestamp written in calendar form, and its text.
    last: i64,
    text: [u8; 23],
}

impl TimestampWriter {
    fn new() -> TimestampWriter {
        // No timestamp in the calendar range is on this day.
        TimestampWriter {
            day: i64::MIN,
            date: [0; 11],
            // Outside the calendar range, so never matched (checked first).
            last: i64::MIN,
            text: [0; 23],
        }
    }

    fn write(&mut self, ms: i64, out: &mut Vec<u8>) {
        if !(TS_CALENDAR_MS_MIN..=TS_CALENDAR_MS_MAX).contains(&ms) {
            write_i64(ms, out);
            return;
        }
        if ms == self.last {
            out.extend_from_slice(&self.text);
            return;
        }
        let day = floor_div(ms, MS_PER_DAY);
        if day != self.day {
            let (year, month, day_of_month) = civil_from_days(day);
            let year = year as u32;
            let [y0, y1] = two_digits(year / 100);
            let [y2, y3] = two_digits(year % 100);
            let [m0, m1] = two_digits(month);
            let [d0, d1] = two_digits(day_of_month);
            self.date = [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b' '];
            self.day = day;
        }
        // In range, so this fits u32: 0..86_400_000.
        let time_of_day = (ms - day * MS_PER_DAY) as u32;
        let [h0, h1] = two_digits(time_of_day / 3_600_000);
        let [mi0, mi1] = two_digits(time_of_day / 60_000 % 60);
        let [s0, s1] = two_digits(time_of_day / 1_000 % 60);
        let millis = time_of_day % 1_000;
        let [f1, f2] = two_digits(millis % 100);
        let mut text = [0u8; 23];
        text[..11].copy_from_slice(&self.date);
        text[11..].copy_from_slice(&[
            h0,
            h1,
            b':',
            mi0,
            mi1,
            b':',
            s0,
            s1,
            b'.',
            b'0' + (millis / 100) as u8,
            f1,
            f2,
        ]);
        self.last = ms;
        self.text = text;
        out.extend_from_slice(&text);
    }
}

/// The two ASCII digits of `v % 100`.
fn two_digits(v: u32) -> [u8; 2] {
    [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]
}

/// Why text is not an i64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntError {
    Invalid,
    Overflow,
}

/// Parses `[+-]digits` exactly (no spaces, no fraction). Invalid characters
/// take precedence over overflow so that "99999999999999999999x" is
/// reported as not a number rather than as too big.
fn parse_i64(text: &[u8]) -> Result<i64, IntError> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(IntError::Invalid);
    }
    // 18 digits cannot overflow: no checks but the digit test (the common
    // case, and a third of a narrow CSV query's parsing).
    if digits.len() <= 18 {
        let mut acc: u64 = 0;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(IntError::Invalid);
            }
            acc = acc * 10 + u64::from(d);
        }
        // Below 10^18, so the cast and the negation are exact.
        let v = acc as i64;
        return Ok(if negative { -v } else { v });
    }
    // Accumulating toward the sign reaches i64::MIN without overflowing.
    let mut acc: i64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::Invalid);
        }
        let next = acc.checked_mul(10).and_then(|a| {
            if negative {
                a.checked_sub(d as i64)
            } else {
                a.checked_add(d as i64)
            }
        });
        match next {
            Some(v) => acc = v,
            None => overflow = true,
        }
    }
    if overflow {
        Err(IntError::Overflow)
    } else {
        Ok(acc)
    }
}

/// Parses a boolean in any of the spellings CSV producers use.
fn parse_bool(text: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 4] = [b"true", b"t", b"1", b"yes"];
    const FALSE: [&[u8]; 4] = [b"false", b"f", b"0", b"no"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

/// The value for a NULL input in `field`, or the NOT NULL error. `input`
/// says what the input was.
#[inline]
fn null_for(field: &Field, input: NullInput) -> Result<Value, ValueError> {
    if field.nullable || field.data_type == DataType::Null {
        Ok(Value::Null)
    } else {
        Err(ValueError::NotNull(input))
    }
}

/// Parses TIMESTAMP text (already trimmed or not) with `time::parse_timestamp`.
/// The error's message, quoting the parser's reason, is rendered later from
/// the same text (see `DecodeError::render`).
fn parse_ts_text(text: &[u8], cache: &mut crate::time::DateCache) -> Result<i64, ValueError> {
    if let Some(ms) = crate::time::parse_timestamp_fixed_with(text, cache) {
        return Ok(ms);
    }
    if text.len() > TIMESTAMP_TEXT_BYTES_MAX {
        return Err(ValueError::InvalidTimestamp);
    }
    let s = std::str::from_utf8(text).map_err(|_| ValueError::InvalidTimestamp)?;
    crate::time::parse_timestamp(s).map_err(|_| ValueError::InvalidTimestamp)
}

#[cfg(test)]
mod tests;
