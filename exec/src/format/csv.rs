//! CSV records: RFC 4180 quoting (`""` is a quote inside a quoted field;
//! quoted fields may hold the delimiter and line breaks), typed field
//! parsing, and the writer.
//!
//! NULL and the empty string must stay distinct through a file, so an
//! unquoted empty field is NULL and a quoted empty field `""` is the empty
//! string (for VARCHAR; other types have no empty value, so it is NULL
//! there too). Surrounding whitespace is trimmed for every type but
//! VARCHAR, whose spaces are data. A record is first split into field spans
//! and only then parsed, so that a record with a missing field reports
//! "expected 7 fields, found 6" rather than a confusing type error on the
//! shifted column.

use std::borrow::Cow;

use super::error::{position, NullInput, ValueError};
use super::{
    null_for, parse_bool, parse_i64, parse_ts_text, record_end, write_scalar, DecodeError, Decoder, Encoder,
    FormatError, IntError, Lines, SplitError, TimestampWriter, RECORD_FIELDS_MAX,
};
use crate::batch::Op;
use crate::time::{parse_timestamp_fixed_with, DateCache};
use crate::types::{DataType, Field, Schema, Str, Value};

/// Where a field's bytes are: a range of the record, or (for quoted fields
/// that contained `""` and had to be unescaped) a range of the scratch
/// buffer; and where the field begins in the record (its opening quote if
/// quoted), which an error about its value names (see `field_text`).
#[derive(Debug, Clone, Copy)]
struct Span {
    at: usize,
    start: usize,
    end: usize,
    quoted: bool,
    in_scratch: bool,
}

/// Calls `f` with the position of every `a` or `b` byte of `hay`, in
/// order, until it returns false. Records are short (tens to hundreds of
/// bytes), where a general search routine's set-up per call costs more
/// than the scan: this compares 16 bytes at a time and walks the bits.
#[inline]
fn for_each_of_two(hay: &[u8], a: u8, b: u8, mut f: impl FnMut(usize) -> bool) {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline, so these
        // intrinsics are always available; every load reads the 16 bytes
        // at `i..i + 16`, inside `hay` by the loop condition, and
        // `loadu` has no alignment requirement.
        unsafe {
            let (va, vb) = (_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8));
            while i + 16 <= hay.len() {
                let v = _mm_loadu_si128(hay.as_ptr().add(i).cast::<__m128i>());
                let mut mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb))) as u32;
                while mask != 0 {
                    if !f(i + mask.trailing_zeros() as usize) {
                        return;
                    }
                    mask &= mask - 1;
                }
                i += 16;
            }
        }
    }
    for (j, &c) in hay.iter().enumerate().skip(i) {
        if (c == a || c == b) && !f(j) {
            return;
        }
    }
}

/// Calls `f` with the position of every `delimiter` and `\n` byte of
/// `hay`, in order, whether it is the `\n`, and for a `\n` whether the
/// line it ends holds a byte over 127 (`Some(true)`: not plain ASCII;
/// known for the lines the vector loop ends, else `None`). For runs of many lines
/// (`decode_lines`): it builds 64-bit masks from four 16-byte compares, so
/// the loop turns once per 64 bytes, and the newline test is a bit of a
/// mask rather than a load of the byte; the high bits come from the same
/// loads.
#[inline]
fn for_each_field_end(hay: &[u8], delimiter: u8, mut f: impl FnMut(usize, bool, Option<bool>)) {
    let mut i = 0;
    // A byte over 127 in the line under way (since the last newline).
    let mut dirty = false;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
        // SAFETY: SSE2 is part of the x86_64 baseline, so these
        // intrinsics are always available; every load reads 16 bytes
        // inside `hay[i..i + 64]`, in bounds by the loop condition, and
        // `loadu` has no alignment requirement.
        unsafe {
            let (vd, vn) = (_mm_set1_epi8(delimiter as i8), _mm_set1_epi8(b'\n' as i8));
            while i + 64 <= hay.len() {
                let p = hay.as_ptr().add(i);
                let (mut delimiters, mut newlines, mut high) = (0u64, 0u64, 0u64);
                for k in 0..4 {
                    let v = _mm_loadu_si128(p.add(16 * k).cast::<__m128i>());
                    delimiters |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vd)) as u16) << (16 * k);
                    newlines |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vn)) as u16) << (16 * k);
                    high |= u64::from(_mm_movemask_epi8(v) as u16) << (16 * k);
                }
                let mut mask = delimiters | newlines;
                // The bits of this block from the line under way's start.
                let mut from_line_start = u64::MAX;
                while mask != 0 {
                    let bit = mask.trailing_zeros();
                    if (newlines >> bit) & 1 != 0 {
                        let before = (1u64 << bit) - 1;
                        dirty |= high & before & from_line_start != 0;
                        f(i + bit as usize, true, Some(dirty));
                        dirty = false;
                        from_line_start = !(before | (1u64 << bit));
                    } else {
                        f(i + bit as usize, false, None);
                    }
                    mask &= mask - 1;
                }
                dirty |= high & from_line_start != 0;
                i += 64;
            }
        }
    }
    // Past the vector loop the lines' bytes are not looked at here.
    let _ = dirty;
    for (j, &c) in hay.iter().enumerate().skip(i) {
        if c == b'\n' {
            f(j, true, None);
        } else if c == delimiter {
            f(j, false, None);
        }
    }
}

/// Splits `record` into field spans. Unescaped quoted content is appended
/// to `scratch`; both buffers are cleared first. Records without a quote
/// take `CsvDecoder::decode_unquoted` instead; this serves the rest and the
/// header line.
fn split_record(record: &[u8], delimiter: u8, spans: &mut Vec<Span>, scratch: &mut Vec<u8>) -> Result<(), SplitError> {
    spans.clear();
    scratch.clear();
    let len = record.len();
    let mut pos = 0;
    loop {
        if spans.len() == RECORD_FIELDS_MAX {
            return Err(SplitError::TooManyFields);
        }
        // Below RECORD_FIELDS_MAX, so it fits.
        let field = spans.len() as u32 + 1;
        if record.get(pos) == Some(&b'"') {
            let content_start = pos + 1;
            let mut i = content_start;
            let mut escaped = false;
            let content_end = loop {
                let Some(offset) = record[i..].iter().position(|&b| b == b'"') else {
                    return Err(SplitError::UnterminatedQuote { field });
                };
                let quote = i + offset;
                if record.get(quote + 1) == Some(&b'"') {
                    escaped = true;
                    i = quote + 2;
                } else {
                    i = quote + 1;
                    break quote;
                }
            };
            // Spaces between the closing quote and the delimiter are
            // tolerated; anything else means the field was not really
            // quoted and we would be guessing.
            while record.get(i) == Some(&b' ') {
                i += 1;
            }
            if i < len && record[i] != delimiter {
                return Err(SplitError::AfterClosingQuote { field });
            }
            let span = if escaped {
                let start = scratch.len();
                let content = &record[content_start..content_end];
                let mut j = 0;
                while j < content.len() {
                    scratch.push(content[j]);
                    // Inside the content every quote comes doubled.
                    j += if content[j] == b'"' { 2 } else { 1 };
                }
                Span {
                    at: pos,
                    start,
                    end: scratch.len(),
                    quoted: true,
                    in_scratch: true,
                }
            } else {
                Span {
                    at: pos,
                    start: content_start,
                    end: content_end,
                    quoted: true,
                    in_scratch: false,
                }
            };
            spans.push(span);
            if i >= len {
                return Ok(());
            }
            pos = i + 1;
        } else {
            let end = record[pos..]
                .iter()
                .position(|&b| b == delimiter)
                .map_or(len, |o| pos + o);
            spans.push(Span {
                at: pos,
                start: pos,
                end,
                quoted: false,
                in_scratch: false,
            });
            if end == len {
                return Ok(());
            }
            pos = end + 1;
        }
    }
}

/// Whether a CSV line (comma-delimited) ends inside a quoted field, so the
/// caller must append the next line before decoding. Join the lines with
/// exactly the terminator that was stripped (`\n` or `\r\n`): it is part of
/// the quoted value.
/// Whether the CSV line `line` (without its newline) is a header naming
/// `schema`'s columns: as many fields, each the column's name in order
/// (case-insensitive, trimmed, a leading byte order mark ignored). A file
/// source without a `header` option takes such a first line as its
/// header.
pub fn names_columns(line: &[u8], delimiter: u8, schema: &Schema) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let (mut spans, mut scratch) = (Vec::new(), Vec::new());
    if split_record(line, delimiter, &mut spans, &mut scratch).is_err() || spans.len() != schema.len() {
        return false;
    }
    spans.iter().zip(&schema.fields).all(|(s, f)| {
        let bytes = if s.in_scratch {
            &scratch[s.start..s.end]
        } else {
            &line[s.start..s.end]
        };
        std::str::from_utf8(bytes).is_ok_and(|name| name.trim().eq_ignore_ascii_case(&f.name))
    })
}

pub fn csv_record_incomplete(line: &[u8]) -> bool {
    csv_record_incomplete_with(line, b',')
}

/// `csv_record_incomplete` for another delimiter. Follows the decoder's
/// rules exactly: a quote opens a quoted field only at the start of a
/// field; elsewhere it is a literal character.
pub fn csv_record_incomplete_with(line: &[u8], delimiter: u8) -> bool {
    // Most lines hold no quote at all: one vectorised scan says so.
    if memchr::memchr(b'"', line).is_none() {
        return false;
    }
    let mut in_quotes = false;
    let mut field_start = true;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_quotes {
            if b == b'"' {
                if line.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                in_quotes = false;
            }
            field_start = false;
        } else if b == delimiter {
            field_start = true;
        } else {
            in_quotes = b == b'"' && field_start;
            field_start = false;
        }
        i += 1;
    }
    in_quotes
}

/// Decodes CSV records into rows of a schema.
#[derive(Debug, Clone)]
pub struct CsvDecoder {
    fields: Vec<Field>,
    /// Per schema column: whether to parse it (see `with_projection`).
    used: Vec<bool>,
    /// Per record field: the schema column it fills, if any.
    slots: Vec<Option<usize>>,
    /// Rows hold only the used columns (see `compact`).
    compact: bool,
    /// Check the fields of unused columns too (see `checking_unused`).
    check_unused: bool,
    /// With `check_unused`: the record fields of unused columns, with
    /// their schema column, checked after the parsed ones.
    checked: Vec<(usize, usize)>,
    /// Per record field, from `slots`, `used` and `compact`: where in the
    /// row its value goes and which schema column's type it has, for the
    /// fields that are parsed.
    targets: Vec<Option<(usize, usize)>>,
    /// `targets`' parsed fields in record order: (record field, row
    /// position, schema column).
    parsed: Vec<(usize, usize, usize)>,
    /// For `dense` rows: per parsed field, its record field and type.
    kinds: Vec<(usize, DataType)>,
    /// `parsed`'s row positions are 0, 1, 2… in order and fill the row,
    /// so `fill_row` appends values instead of overwriting NULLs.
    dense: bool,
    /// Scratch: the delimiters' positions in the record being decoded.
    ends: Vec<usize>,
    /// Values per decoded row.
    width: usize,
    /// The last date a TIMESTAMP field held (see `DateCache`).
    dates: DateCache,
    delimiter: u8,
    spans: Vec<Span>,
    scratch: Vec<u8>,
}

impl CsvDecoder {
    /// `header`: the header line's bytes if the source has `header =
    /// 'true'`; columns are then mapped by name (case-insensitive, an exact
    /// match preferred), extra header columns are ignored, and a schema
    /// column missing from the header is an error. `None` = positional: a
    /// record must have exactly `schema.len()` fields.
    pub fn new(schema: &Schema, header: Option<&[u8]>, delimiter: u8) -> Result<CsvDecoder, FormatError> {
        if matches!(delimiter, b'"' | b'\n' | b'\r') || !delimiter.is_ascii() {
            return Err(FormatError::InvalidDelimiter { delimiter });
        }
        if schema.len() > RECORD_FIELDS_MAX {
            return Err(FormatError::SchemaTooWide { columns: schema.len() });
        }
        let mut spans = Vec::new();
        let mut scratch = Vec::new();
        let slots = match header {
            None => (0..schema.len()).map(Some).collect(),
            Some(line) => {
                // A UTF-8 byte order mark is common at the start of files
                // written by spreadsheets; it is not part of the first name.
                let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
                split_record(line, delimiter, &mut spans, &mut scratch).map_err(FormatError::Header)?;
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| {
                        let bytes = if s.in_scratch {
                            &scratch[s.start..s.end]
                        } else {
                            &line[s.start..s.end]
                        };
                        String::from_utf8_lossy(bytes).trim().to_string()
                    })
                    .collect();
                let mut slots = vec![None; names.len()];
                for (col, field) in schema.fields.iter().enumerate() {
                    let free = |i: &usize| slots[*i].is_none();
                    let found = (0..names.len())
                        .filter(free)
                        .find(|&i| names[i] == field.name)
                        .or_else(|| {
                            (0..names.len())
                                .filter(free)
                                .find(|&i| names[i].eq_ignore_ascii_case(&field.name))
                        });
                    match found {
                        Some(i) => slots[i] = Some(col),
                        None => {
                            return Err(FormatError::HeaderLacksColumn {
                                column: field.name.clone(),
                                names,
                            })
                        }
                    }
                }
                slots
            }
        };
        let mut decoder = CsvDecoder {
            fields: schema.fields.clone(),
            used: vec![true; schema.len()],
            slots,
            compact: false,
            check_unused: false,
            checked: Vec::new(),
            targets: Vec::new(),
            parsed: Vec::new(),
            kinds: Vec::new(),
            dense: false,
            ends: Vec::new(),
            width: 0,
            dates: DateCache::default(),
            delimiter,
            spans,
            scratch,
        };
        decoder.retarget();
        Ok(decoder)
    }

    /// Only decode the columns marked in `used` (by schema position); the
    /// others are pushed as NULL without being parsed or checked. Columns
    /// beyond the end of `used` stay decoded.
    pub fn with_projection(mut self, used: &[bool]) -> Self {
        for (slot, &u) in self.used.iter_mut().zip(used) {
            *slot = u;
        }
        self.retarget();
        self
    }

    /// Check the fields of the columns `with_projection` leaves out as
    /// well: their type, NOT NULL and UTF-8, so a record is malformed
    /// whatever columns the queries read; their values are not kept.
    pub fn checking_unused(mut self) -> Self {
        self.check_unused = true;
        self.retarget();
        self
    }

    /// Rows hold only the used columns, in schema order (no NULL in place
    /// of the others).
    pub fn compact(mut self) -> Self {
        self.compact = true;
        self.retarget();
        self
    }

    fn retarget(&mut self) {
        let mut position = vec![0; self.fields.len()];
        let mut next = 0;
        for (col, p) in position.iter_mut().enumerate() {
            if !self.compact || self.used[col] {
                *p = next;
                next += 1;
            }
        }
        self.width = next;
        self.targets = self
            .slots
            .iter()
            .map(|slot| slot.filter(|&col| self.used[col]).map(|col| (position[col], col)))
            .collect();
        self.parsed = (self.targets.iter().enumerate())
            .filter_map(|(field, t)| t.map(|(position, col)| (field, position, col)))
            .collect();
        self.dense = self.parsed.len() == self.width && self.parsed.iter().enumerate().all(|(i, p)| p.1 == i);
        self.kinds = (self.parsed.iter())
            .map(|&(field, _, col)| (field, self.fields[col].data_type))
            .collect();
        self.checked = match self.check_unused {
            true => (self.slots.iter().enumerate())
                .filter_map(|(field, slot)| slot.filter(|&col| !self.used[col]).map(|col| (field, col)))
                .collect(),
            false => Vec::new(),
        };
    }

    /// Whether `line` ends inside a quoted field, with this decoder's
    /// delimiter (see `csv_record_incomplete`).
    pub fn record_incomplete(&self, line: &[u8]) -> bool {
        csv_record_incomplete_with(line, self.delimiter)
    }

    /// The number of fields every record must have.
    pub fn fields_expected(&self) -> usize {
        self.slots.len()
    }
}

impl CsvDecoder {
    /// `decode` for a record without a quote: one pass finds the
    /// delimiters, then only the used fields are parsed, so unread fields
    /// cost only the scan. None (and `out` untouched) if the record holds
    /// a quote.
    fn decode_unquoted(&mut self, record: &[u8], out: &mut Vec<Value>) -> Option<Result<(), DecodeError>> {
        // First every delimiter's position (a tight loop the scan inlines),
        // then only the parsed fields: a call per field, parsed or not,
        // cost more than the parsing.
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        let mut quote = false;
        for_each_of_two(record, self.delimiter, b'"', |at| {
            if record[at] == b'"' {
                quote = true;
                return false;
            }
            ends.push(at);
            ends.len() < RECORD_FIELDS_MAX
        });
        let result = (!quote).then(|| self.fill_row(record, 0, record.len(), &ends, None, out));
        self.ends = ends;
        result
    }

    /// Appends the row of the quote-free record `buf[start..end]`, whose
    /// delimiters (up to `RECORD_FIELDS_MAX` of them) are at `ends`,
    /// parsing only the used fields; on error `out` is as before. The
    /// errors and their precedence are `decode`'s: too many fields, then a
    /// wrong field count, then the first field that does not parse.
    #[inline]
    fn fill_row(
        &mut self,
        buf: &[u8],
        start: usize,
        end: usize,
        ends: &[usize],
        non_ascii: Option<bool>,
        out: &mut Vec<Value>,
    ) -> Result<(), DecodeError> {
        if ends.len() == RECORD_FIELDS_MAX {
            return Err(SplitError::TooManyFields.into());
        }
        let found = ends.len() + 1;
        if found != self.slots.len() {
            return Err(self.field_count(found));
        }
        let base = out.len();
        if self.dense {
            for (i, &(field, data_type)) in self.kinds.iter().enumerate() {
                let from = if field == 0 { start } else { ends[field - 1] + 1 };
                let to = ends.get(field).copied().unwrap_or(end);
                let bytes = &buf[from..to];
                // The common forms first, in registers; anything else
                // (signs, spaces, NULLs, errors) takes `parse_field`.
                match data_type {
                    DataType::Int => {
                        if let Some(v) = plain_digits_at(buf, from, to) {
                            out.push(Value::Int(v));
                            continue;
                        }
                    }
                    DataType::Ts => {
                        if let Some(ms) = parse_timestamp_fixed_with(bytes, &mut self.dates) {
                            out.push(Value::Ts(ms));
                            continue;
                        }
                    }
                    _ => {}
                }
                out.push(Value::Null);
                let slot = out.last_mut().expect("just pushed");
                let column = self.parsed[i].2;
                if let Err(error) = parse_field(&self.fields[column], bytes, false, &mut self.dates, slot) {
                    out.truncate(base);
                    return Err(value_error(column, from - start, error));
                }
            }
        } else {
            out.extend(std::iter::repeat_with(|| Value::Null).take(self.width));
            let row = &mut out[base..];
            for &(field, position, col) in &self.parsed {
                // The field count matched, so every field has its end (the
                // last runs to the end of the record).
                let from = if field == 0 { start } else { ends[field - 1] + 1 };
                let to = ends.get(field).copied().unwrap_or(end);
                if let Err(error) = parse_field(
                    &self.fields[col],
                    &buf[from..to],
                    false,
                    &mut self.dates,
                    &mut row[position],
                ) {
                    out.truncate(base);
                    return Err(value_error(col, from - start, error));
                }
            }
        }
        // An ASCII record holds only valid text: its nullable strings need
        // no look. `decode_lines` knows from its scan; otherwise one pass
        // over the record, not a call per field.
        let ascii = !self.checked.is_empty() && non_ascii.map_or_else(|| ascii_only(&buf[start..end]), |n| !n);
        for &(field, col) in &self.checked {
            let column = &self.fields[col];
            if ascii && column.nullable && column.data_type == DataType::Str {
                continue;
            }
            let from = if field == 0 { start } else { ends[field - 1] + 1 };
            let to = ends.get(field).copied().unwrap_or(end);
            // Plain digits eight at a time, as `fill_row` parses them.
            if column.data_type == DataType::Int && plain_digits_at(buf, from, to).is_some() {
                continue;
            }
            if let Err(error) = check_field(column, &buf[from..to], false, &mut self.dates) {
                out.truncate(base);
                return Err(value_error(col, from - start, error));
            }
        }
        Ok(())
    }

    /// One line of `decode_lines`: `buf[start..end]`, before its `\n` if
    /// `terminated`, with its delimiters at `ends`.
    #[inline]
    fn line(
        &mut self,
        buf: &[u8],
        (start, end, terminated): (usize, usize, bool),
        non_ascii: Option<bool>,
        ends: &[usize],
        out: &mut Lines,
    ) {
        let end = record_end(buf, start, end, terminated);
        out.line(end - start, |values| {
            (self.fill_row(buf, start, end, ends, non_ascii, values)).map_err(|e| self.explain(&buf[start..end], e))
        });
    }

    /// The error for a record of `found` fields.
    #[cold]
    fn field_count(&self, found: usize) -> DecodeError {
        // Both are at most RECORD_FIELDS_MAX.
        DecodeError::FieldCount {
            expected: self.slots.len() as u32,
            found: found as u32,
        }
    }
}

/// The error for the value of schema column `column`, whose field begins
/// at byte `at` of the record.
#[cold]
fn value_error(column: usize, at: usize, error: ValueError) -> DecodeError {
    DecodeError::Value {
        // A schema is at most RECORD_FIELDS_MAX columns wide.
        column: column as u32,
        at: position(at),
        error,
    }
}

/// The text of the field that begins at byte `at` of `record`, as
/// `parse_field` saw it when it refused the value: unquoted, and trimmed
/// (the only fields whose text an error quotes are of the types that
/// trim). The record split into fields when it was decoded, so a quoted
/// field there has its closing quote.
fn field_text(record: &[u8], at: usize, delimiter: u8) -> Cow<'_, [u8]> {
    let rest = record.get(at..).unwrap_or_default();
    let Some(quoted) = rest.strip_prefix(b"\"") else {
        let end = memchr::memchr(delimiter, rest).unwrap_or(rest.len());
        return Cow::Borrowed(rest[..end].trim_ascii());
    };
    let mut text = Vec::new();
    let mut i = 0;
    while i < quoted.len() {
        if quoted[i] == b'"' {
            if quoted.get(i + 1) != Some(&b'"') {
                break;
            }
            i += 1;
        }
        text.push(quoted[i]);
        i += 1;
    }
    Cow::Owned(text.trim_ascii().to_vec())
}

impl Decoder for CsvDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError> {
        match self.decode_unquoted(record, out) {
            Some(result) => result,
            None => self.decode_spans(record, out),
        }
    }

    fn explain(&self, record: &[u8], error: DecodeError) -> String {
        error.render(&self.fields, |at| field_text(record, at, self.delimiter))
    }

    /// One pass over the whole run finds every delimiter and line end,
    /// instead of a search for each line's end and then another through
    /// the line: per line, that set-up cost as much as the scanning.
    fn decode_lines(&mut self, buf: &[u8], out: &mut Lines) {
        debug_assert!(
            memchr::memchr(b'"', buf).is_none(),
            "decode_lines takes quote-free lines"
        );
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        let mut line_start = 0;
        for_each_field_end(buf, self.delimiter, |at, newline, non_ascii| {
            if newline {
                self.line(buf, (line_start, at, true), non_ascii, &ends, out);
                ends.clear();
                line_start = at + 1;
            } else if ends.len() < RECORD_FIELDS_MAX {
                ends.push(at);
            }
        });
        if line_start < buf.len() {
            self.line(buf, (line_start, buf.len(), false), None, &ends, out);
        }
        ends.clear();
        self.ends = ends;
    }
}

impl CsvDecoder {
    /// `decode` by way of field spans: any record, quoted fields included.
    fn decode_spans(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError> {
        split_record(record, self.delimiter, &mut self.spans, &mut self.scratch)?;
        if self.spans.len() != self.slots.len() {
            return Err(self.field_count(self.spans.len()));
        }
        let base = out.len();
        // Constructed in place: `resize` clones a template value per slot.
        out.extend(std::iter::repeat_with(|| Value::Null).take(self.width));
        for (span, target) in self.spans.iter().zip(&self.targets) {
            let Some((position, col)) = *target else { continue };
            let bytes = if span.in_scratch {
                &self.scratch[span.start..span.end]
            } else {
                &record[span.start..span.end]
            };
            if let Err(error) = parse_field(
                &self.fields[col],
                bytes,
                span.quoted,
                &mut self.dates,
                &mut out[base + position],
            ) {
                out.truncate(base);
                return Err(value_error(col, span.at, error));
            }
        }
        for &(field, col) in &self.checked {
            let span = &self.spans[field];
            let bytes = if span.in_scratch {
                &self.scratch[span.start..span.end]
            } else {
                &record[span.start..span.end]
            };
            if let Err(error) = check_field(&self.fields[col], bytes, span.quoted, &mut self.dates) {
                out.truncate(base);
                return Err(value_error(col, span.at, error));
            }
        }
        Ok(())
    }
}

/// `plain_digits` of `buf[from..to]`, eight digits at once when the
/// field is at most eight bytes and eight can be read from its start (a
/// field is followed by at least its delimiter or line end, so all but
/// the last few of a chunk can): the bytes after it are shifted out and
/// the first ones padded with `'0'`, then every byte is checked to be a
/// digit and the eight are combined in three multiplications (Lemire,
/// "Faster parsing of integers", 2018). The digit loop was a dependent
/// multiply-add per digit.
#[inline(always)]
fn plain_digits_at(buf: &[u8], from: usize, to: usize) -> Option<i64> {
    let n = to - from;
    if n == 0 || n > 8 || from + 8 > buf.len() {
        return plain_digits(&buf[from..to]);
    }
    let word = u64::from_le_bytes(buf[from..from + 8].try_into().expect("eight bytes"));
    // Little-endian: the field's first byte is the word's lowest. Its `n`
    // bytes go to the top; `'0'`s fill the bottom (leading zeros).
    let zeros = 0x3030_3030_3030_3030u64.checked_shr(8 * n as u32).unwrap_or(0);
    let v = (word << (8 * (8 - n))) | zeros;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    if v & HIGH != 0x3030_3030_3030_3030 || v.wrapping_add(0x0606_0606_0606_0606) & HIGH != 0x3030_3030_3030_3030 {
        return None;
    }
    let v = v - 0x3030_3030_3030_3030;
    let v = v * 10 + (v >> 8);
    let v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v as u32 as i64)
}

/// A field of 1 to 18 ASCII digits and nothing else, as a number (which
/// cannot overflow); None for anything else.
#[inline(always)]
fn plain_digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 18 {
        return None;
    }
    let mut acc: u64 = 0;
    for &b in bytes {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc * 10 + u64::from(d);
    }
    // Below 10^18.
    Some(acc as i64)
}

/// Parses one field's (unescaped) bytes as the column's type into `slot`.
/// In place, not returned: moving a `Result<Value, String>` out through
/// memory cost a store-forwarding stall per field, the largest single cost
/// of decoding. The error is a byte: the caller adds the column and the
/// field's place, and the message quotes the text only when rendered.
fn parse_field(
    field: &Field,
    bytes: &[u8],
    quoted: bool,
    dates: &mut DateCache,
    slot: &mut Value,
) -> Result<(), ValueError> {
    if field.data_type == DataType::Str {
        if bytes.is_empty() && !quoted {
            *slot = null_for(field, NullInput::Empty)?;
            return Ok(());
        }
        *slot = match std::str::from_utf8(bytes) {
            Ok(s) => Value::Str(Str::new(s)),
            Err(_) => return Err(ValueError::InvalidUtf8),
        };
        return Ok(());
    }
    let text = bytes.trim_ascii();
    if text.is_empty() {
        *slot = null_for(field, NullInput::Empty)?;
        return Ok(());
    }
    *slot = match field.data_type {
        DataType::Int => match parse_i64(text) {
            Ok(v) => Value::Int(v),
            Err(IntError::Invalid) => return Err(ValueError::InvalidInteger),
            Err(IntError::Overflow) => return Err(ValueError::IntegerOutOfRange),
        },
        DataType::Double => std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(Value::Double)
            .ok_or(ValueError::InvalidNumber)?,
        DataType::Bool => parse_bool(text).map(Value::Bool).ok_or(ValueError::InvalidBoolean)?,
        DataType::Ts => Value::Ts(parse_ts_text(text, dates)?),
        DataType::Null | DataType::Str => Value::Null,
    };
    Ok(())
}

/// Whether `bytes` are all ASCII: eight bytes per step, their high bits
/// OR-ed together (the compiler widens it to vector registers). The
/// standard `is_ascii` compiled to a loop over single bytes here, a third
/// of a row's decoding when run over whole records.
#[inline]
fn ascii_only(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for w in &mut words {
        high |= u64::from_ne_bytes(w.try_into().expect("eight bytes"));
    }
    let rest = words.remainder().iter().fold(0u8, |acc, &b| acc | b);
    high & 0x8080_8080_8080_8080 == 0 && rest < 0x80
}

/// Checks a field of a column nothing reads as `parse_field` would parse
/// it (type, NOT NULL, UTF-8), without keeping the value: a string is
/// only validated, not copied.
fn check_field(field: &Field, bytes: &[u8], quoted: bool, dates: &mut DateCache) -> Result<(), ValueError> {
    if field.data_type == DataType::Str {
        if bytes.is_empty() && !quoted {
            return null_for(field, NullInput::Empty).map(drop);
        }
        // ASCII (the common case) is UTF-8, checked a word at a time.
        if ascii_only(bytes) || std::str::from_utf8(bytes).is_ok() {
            return Ok(());
        }
        return Err(ValueError::InvalidUtf8);
    }
    // The common forms without building a value (as `fill_row` does).
    match field.data_type {
        DataType::Int if !quoted && plain_digits(bytes).is_some() => return Ok(()),
        DataType::Ts if !quoted && parse_timestamp_fixed_with(bytes, dates).is_some() => return Ok(()),
        _ => {}
    }
    let mut scratch = Value::Null;
    parse_field(field, bytes, quoted, dates, &mut scratch)
}

/// Whether a string must be quoted to read back as itself: it holds the
/// delimiter, a quote or a line break, is empty (unquoted empty is NULL),
/// or has surrounding whitespace another reader might trim.
fn needs_quotes(s: &[u8], delimiter: u8) -> bool {
    match (s.first(), s.last()) {
        (None, _) => true,
        (Some(first), Some(last)) if matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t') => true,
        _ => s.iter().any(|&b| b == delimiter || matches!(b, b'"' | b'\n' | b'\r')),
    }
}

/// Writes `s` as one CSV field, quoted and escaped when needed.
fn write_str_field(s: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    if !needs_quotes(s, delimiter) {
        out.extend_from_slice(s);
        return;
    }
    out.push(b'"');
    let mut rest = s;
    while let Some(q) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=q]);
        out.push(b'"');
        rest = &rest[q + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Writes one value as a CSV field.
pub(super) fn write_field(v: &Value, delimiter: u8, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => write_str_field(s.as_bytes(), delimiter, out),
        other => write_scalar(other, out),
    }
}

/// Encodes rows as CSV lines with a header of column names (and a leading
/// `op` column for changelogs).
#[derive(Debug, Clone)]
pub struct CsvEncoder {
    names: Vec<String>,
    changelog: bool,
    delimiter: u8,
    timestamps: TimestampWriter,
}

impl CsvEncoder {
    pub fn new(schema: &Schema, changelog: bool) -> CsvEncoder {
        CsvEncoder {
            names: schema.fields.iter().map(|f| f.name.clone()).collect(),
            changelog,
            delimiter: b',',
            timestamps: TimestampWriter::new(),
        }
    }

    /// Uses another delimiter than `,`.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }
}

impl Encoder for CsvEncoder {
    fn header(&mut self, out: &mut Vec<u8>) {
        if self.changelog {
            out.extend_from_slice(b"op");
            if !self.names.is_empty() {
                out.push(self.delimiter);
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            write_str_field(name.as_bytes(), self.delimiter, out);
        }
        out.push(b'\n');
    }

    fn row(&mut self, op: Op, row: &[Value], out: &mut Vec<u8>) {
        if self.changelog {
            out.extend_from_slice(op.as_str().as_bytes());
            if !row.is_empty() {
                out.push(self.delimiter);
            }
        }
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match v {
                Value::Ts(ms) => self.timestamps.write(*ms, out),
                other => write_field(other, self.delimiter, out),
            }
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests;
