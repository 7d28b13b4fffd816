//! Timestamps: parsing, formatting, calendar arithmetic and intervals.
//!
//! A TIMESTAMP is i64 milliseconds since the Unix epoch, UTC. Input accepts
//! `YYYY-MM-DD HH:MM:SS[.fff]` (also with `T`, and a bare date), RFC 3339
//! with `Z` or a `±HH:MM` offset, and integer epoch milliseconds. Output is
//! always `YYYY-MM-DD HH:MM:SS.fff`. Calendar conversion uses Howard
//! Hinnant's `days_from_civil` algorithm, exact for the whole i64 range we
//! accept (years 0000–9999 on input), and every division floors, so times
//! before 1970 land in the right window.

use thiserror::Error;

/// Processing time in epoch milliseconds, passed into the runtime so that
/// `EMIT EVERY` can be driven by a test. Must never go backwards. `exec`
/// only names it; the wall clock lives in the reactor.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Floor division (rounds toward −∞), for window alignment of negative times.
pub fn floor_div(a: i64, b: i64) -> i64 {
    assert!(b > 0, "floor_div divisor must be positive");
    let q = a / b;
    if a % b < 0 {
        q - 1
    } else {
        q
    }
}

/// `a` rounded down to a multiple of `b` (b > 0), saturating at i64::MIN.
pub fn floor_to(a: i64, b: i64) -> i64 {
    floor_div(a, b).saturating_mul(b)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    debug_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = floor_div(y, 400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = floor_div(z, 146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Broken-down UTC time of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

impl Civil {
    pub fn from_ms(ms: i64) -> Civil {
        let days = floor_div(ms, MS_PER_DAY);
        // Not `ms - days * MS_PER_DAY`: near i64::MIN that product overflows.
        let rem = ms.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (rem / MS_PER_HOUR) as u32,
            minute: (rem % MS_PER_HOUR / MS_PER_MINUTE) as u32,
            second: (rem % MS_PER_MINUTE / MS_PER_SECOND) as u32,
            millisecond: (rem % MS_PER_SECOND) as u32,
        }
    }

    pub fn to_ms(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * MS_PER_DAY
            + self.hour as i64 * MS_PER_HOUR
            + self.minute as i64 * MS_PER_MINUTE
            + self.second as i64 * MS_PER_SECOND
            + self.millisecond as i64
    }

    /// ISO day of week, Monday = 1 … Sunday = 7.
    pub fn iso_weekday(&self) -> u32 {
        let days = days_from_civil(self.year, self.month, self.day);
        // 1970-01-01 was a Thursday (ISO 4).
        (days + 3 - floor_div(days + 3, 7) * 7) as u32 + 1
    }

    pub fn day_of_year(&self) -> u32 {
        (days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1) as u32
    }
}

/// Appends `YYYY-MM-DD HH:MM:SS.fff` to `out`.
pub fn format_timestamp(ms: i64, out: &mut String) {
    use std::fmt::Write;
    let c = Civil::from_ms(ms);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millisecond
    );
}

pub fn timestamp_to_string(ms: i64) -> String {
    let mut s = String::with_capacity(23);
    format_timestamp(ms, &mut s);
    s
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize) -> Option<u32> {
        let end = self.pos.checked_add(count)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut v = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (b - b'0') as u32;
        }
        self.pos = end;
        Some(v)
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// The common spellings `YYYY-MM-DD HH:MM:SS` and `YYYY-MM-DD
/// HH:MM:SS.fff` (a space or `T` between date and time), parsed at fixed
/// offsets without the general grammar's cursor; None for anything else,
/// which `parse_timestamp` then reads the general way. Accepts exactly
/// what `parse_timestamp` accepts for these lengths, with the same value
/// (a test checks the two agree).
pub fn parse_timestamp_fixed(b: &[u8]) -> Option<i64> {
    parse_timestamp_fixed_with(b, &mut DateCache::default())
}

/// The last date `parse_timestamp_fixed_with` read and its first
/// millisecond: consecutive timestamps of a stream mostly share their
/// day, and the calendar arithmetic was a tenth of decoding a row. And the
/// last whole text it accepted, with its value: a busy stream repeats a
/// millisecond for many records in a row.
#[derive(Debug, Clone, Copy, Default)]
pub struct DateCache {
    /// `YYYY-MM-DD` as read, as two little-endian words (bytes 0..8 and
    /// 8..10), compared without a call; all zero bytes (no valid date)
    /// when empty.
    date: (u64, u16),
    day_ms: i64,
    /// The last accepted text as three words (bytes 0..8, 8..16 and its
    /// last eight) and its length; length 0 when empty.
    text: ([u64; 3], usize),
    ms: i64,
}

/// A 19- or 23-byte text as `DateCache::text`'s words.
#[inline(always)]
fn text_words(b: &[u8]) -> [u64; 3] {
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    [word(0), word(8), word(b.len() - 8)]
}

#[inline(always)]
fn digit(b: u8) -> Option<u32> {
    let x = b.wrapping_sub(b'0');
    (x < 10).then_some(u32::from(x))
}

#[inline(always)]
fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    Some(digit(b[i])? * 10 + digit(b[i + 1])?)
}

/// `parse_timestamp_fixed`, reusing `cache`'s day when the date is the
/// one it holds.
#[inline]
pub fn parse_timestamp_fixed_with(b: &[u8], cache: &mut DateCache) -> Option<i64> {
    if b.len() != 19 && b.len() != 23 {
        return None;
    }
    let words = text_words(b);
    let ([c0, c1, c2], len) = cache.text;
    // Word by word: compared as arrays, the words were stored and read
    // back as one vector, a store-forwarding stall per call.
    if ((words[0] ^ c0) | (words[1] ^ c1) | (words[2] ^ c2)) == 0 && len == b.len() {
        return Some(cache.ms);
    }
    // The colons are `clock`'s to check.
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T' | b't') {
        return None;
    }
    let date = (
        u64::from_le_bytes(b[..8].try_into().expect("eight bytes")),
        u16::from_le_bytes([b[8], b[9]]),
    );
    let day_ms = if date == cache.date {
        cache.day_ms
    } else {
        let year = i64::from(two_digits(b, 0)? * 100 + two_digits(b, 2)?);
        let (month, day) = (two_digits(b, 5)?, two_digits(b, 8)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let day_ms = days_from_civil(year, month, day) * MS_PER_DAY;
        cache.date = date;
        cache.day_ms = day_ms;
        day_ms
    };
    let (hour, minute, second) = clock(b)?;
    let millisecond = if b.len() == 23 { milliseconds(b)? } else { 0 };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let ms = day_ms
        + i64::from(hour) * MS_PER_HOUR
        + i64::from(minute) * MS_PER_MINUTE
        + i64::from(second) * MS_PER_SECOND
        + i64::from(millisecond);
    cache.text = (words, b.len());
    cache.ms = ms;
    Some(ms)
}

/// `HH:MM:SS` at `b[11..19]` (`b` is 19 bytes at least), eight bytes
/// checked and split at once: per byte, the XOR with the expected text
/// leaves a digit's value, or zero for the colons, exactly when the byte
/// is right, and adding 0x76 (0x7F at the colons) sets a byte's top bit
/// when it is too large. No carry crosses bytes: every byte is below 0x80
/// first (checked together).
#[inline(always)]
fn clock(b: &[u8]) -> Option<(u32, u32, u32)> {
    let text = u64::from_le_bytes(b[11..19].try_into().expect("eight bytes"));
    let x = text ^ u64::from_le_bytes(*b"00:00:00");
    if (x | x.wrapping_add(u64::from_le_bytes([0x76, 0x76, 0x7F, 0x76, 0x76, 0x7F, 0x76, 0x76])))
        & 0x8080_8080_8080_8080
        != 0
    {
        return None;
    }
    let byte = |i: u32| ((x >> (8 * i)) & 0xFF) as u32;
    Some((byte(0) * 10 + byte(1), byte(3) * 10 + byte(4), byte(6) * 10 + byte(7)))
}

/// `.fff` at `b[19..23]`, checked as `clock` does.
#[inline(always)]
fn milliseconds(b: &[u8]) -> Option<u32> {
    let text = u32::from_le_bytes(b[19..23].try_into().expect("four bytes"));
    let x = text ^ u32::from_le_bytes(*b".000");
    if (x | x.wrapping_add(u32::from_le_bytes([0x7F, 0x76, 0x76, 0x76]))) & 0x8080_8080 != 0 {
        return None;
    }
    let byte = |i: u32| (x >> (8 * i)) & 0xFF;
    Some(byte(1) * 100 + byte(2) * 10 + byte(3))
}

/// Why text is not a TIMESTAMP. `text` is the input, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("empty timestamp")]
    Empty,
    #[error("epoch milliseconds out of range: {text:?}")]
    EpochOutOfRange { text: String },
    #[error("invalid timestamp {text:?} (expected YYYY-MM-DD HH:MM:SS[.fff], RFC 3339, or epoch milliseconds)")]
    Invalid { text: String },
}

/// Parses a TIMESTAMP in any of the accepted input forms.
pub fn parse_timestamp(text: &str) -> Result<i64, TimestampError> {
    if let Some(ms) = parse_timestamp_fixed(text.as_bytes()) {
        return Ok(ms);
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(TimestampError::Empty);
    }
    let bytes = t.as_bytes();
    // Integer epoch milliseconds: digits with an optional sign and nothing
    // else. A date always has a '-' after four digits, so no ambiguity.
    let body = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if !body.is_empty() && body.iter().all(u8::is_ascii_digit) {
        return t
            .parse::<i64>()
            .map_err(|_| TimestampError::EpochOutOfRange { text: t.to_string() });
    }
    parse_datetime(bytes).ok_or_else(|| TimestampError::Invalid { text: t.to_string() })
}

fn parse_datetime(bytes: &[u8]) -> Option<i64> {
    let mut c = Cursor { bytes, pos: 0 };
    let year = c.digits(4)? as i64;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut civil = Civil {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        millisecond: 0,
    };
    if c.done() {
        return Some(civil.to_ms());
    }
    if !(c.eat(b' ') || c.eat(b'T') || c.eat(b't')) {
        return None;
    }
    civil.hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    civil.minute = c.digits(2)?;
    if c.eat(b':') {
        civil.second = c.digits(2)?;
    }
    if civil.hour > 23 || civil.minute > 59 || civil.second > 59 {
        return None;
    }
    if c.eat(b'.') {
        // Up to nanoseconds are accepted; precision below a millisecond is
        // truncated (toward the past), as the type has millisecond precision.
        let start = c.pos;
        let mut ms = 0u32;
        let mut n = 0;
        while let Some(b) = c.peek() {
            if !b.is_ascii_digit() {
                break;
            }
            if n < 3 {
                ms = ms * 10 + (b - b'0') as u32;
            }
            n += 1;
            c.pos += 1;
        }
        if c.pos == start || n > 9 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
        civil.millisecond = ms;
    }
    let mut offset_ms = 0i64;
    match c.peek() {
        None => {}
        Some(b'Z') | Some(b'z') => c.pos += 1,
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let hours = c.digits(2)? as i64;
            let _ = c.eat(b':');
            let minutes = c.digits(2)? as i64;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let off = hours * MS_PER_HOUR + minutes * MS_PER_MINUTE;
            offset_ms = if sign == b'+' { off } else { -off };
        }
        Some(_) => return None,
    }
    if !c.done() {
        return None;
    }
    Some(civil.to_ms() - offset_ms)
}

/// A time unit of INTERVAL literals, EXTRACT and date_trunc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl TimeUnit {
    /// Parses a unit name, singular or plural, case-insensitive.
    pub fn parse(name: &str) -> Option<TimeUnit> {
        let n = name.trim().to_ascii_lowercase();
        let n = n.strip_suffix('s').unwrap_or(&n);
        Some(match n {
            "millisecond" | "milli" | "ms" => TimeUnit::Millisecond,
            "second" | "sec" => TimeUnit::Second,
            "minute" | "min" => TimeUnit::Minute,
            "hour" | "h" => TimeUnit::Hour,
            "day" | "d" => TimeUnit::Day,
            "week" => TimeUnit::Week,
            "month" => TimeUnit::Month,
            "quarter" => TimeUnit::Quarter,
            "year" => TimeUnit::Year,
            _ => return None,
        })
    }

    /// Fixed length in milliseconds; months and years have none.
    pub fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            TimeUnit::Millisecond => 1,
            TimeUnit::Second => MS_PER_SECOND,
            TimeUnit::Minute => MS_PER_MINUTE,
            TimeUnit::Hour => MS_PER_HOUR,
            TimeUnit::Day => MS_PER_DAY,
            TimeUnit::Week => 7 * MS_PER_DAY,
            TimeUnit::Month | TimeUnit::Quarter | TimeUnit::Year => return None,
        })
    }
}

/// Why the text of an INTERVAL literal is not an interval. `text` is the
/// whole literal; `unit` and `amount` the offending word of it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntervalError {
    #[error("interval {text:?}: expected a single number before the unit")]
    NotOneNumber { text: String },
    #[error("interval {text:?}: expected '<number> <unit>' (e.g. '10 seconds')")]
    NotPairs { text: String },
    #[error("unknown interval unit {unit:?}")]
    UnknownUnit { unit: String },
    #[error("interval unit {unit} has no fixed length; use days or smaller")]
    NoFixedLength { unit: String },
    #[error("interval amount {amount:?} is not a number")]
    NotANumber { amount: String },
    #[error("interval {text:?} is not a whole number of milliseconds in range")]
    NotWholeMilliseconds { text: String },
    #[error("interval {text:?} overflows")]
    Overflow { text: String },
}

/// Parses the body of an INTERVAL literal into milliseconds: either
/// `'<amount>'` with a separate unit (`INTERVAL '4' SECOND`), or
/// `'<amount> <unit>'` pairs (`INTERVAL '1 minute 30 seconds'`). Fractions
/// are allowed (`'1.5' SECOND`) as long as the result is whole
/// milliseconds. Months and years are refused: windows need fixed sizes.
/// Milliseconds from which an f64 no longer holds every whole number
/// (2^53): a fractional interval amount must stay below.
const F64_EXACT_MS: f64 = 9_007_199_254_740_992.0;

pub fn parse_interval(text: &str, unit: Option<&str>) -> Result<i64, IntervalError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let whole = || text.to_string();
    let pairs: Vec<(&str, &str)> = match (unit, words.as_slice()) {
        (Some(u), [amount]) => vec![(*amount, u)],
        (Some(_), _) => return Err(IntervalError::NotOneNumber { text: whole() }),
        (None, w) if !w.is_empty() && w.len() % 2 == 0 => w.chunks(2).map(|p| (p[0], p[1])).collect(),
        (None, _) => return Err(IntervalError::NotPairs { text: whole() }),
    };
    let mut total: i64 = 0;
    for (amount, unit_name) in pairs {
        let unit = TimeUnit::parse(unit_name).ok_or_else(|| IntervalError::UnknownUnit {
            unit: unit_name.to_string(),
        })?;
        let unit_ms = unit.fixed_ms().ok_or_else(|| IntervalError::NoFixedLength {
            unit: unit_name.to_string(),
        })?;
        // A whole amount is exact in 64-bit milliseconds as far as they
        // go; a fractional one goes through f64, exact below 2^53 ms.
        let ms = match amount.parse::<i64>() {
            Ok(whole_amount) => whole_amount
                .checked_mul(unit_ms)
                .ok_or_else(|| IntervalError::Overflow { text: whole() })?,
            Err(_) => {
                let amount_f: f64 = amount.parse().map_err(|_| IntervalError::NotANumber {
                    amount: amount.to_string(),
                })?;
                let ms = amount_f * unit_ms as f64;
                if !ms.is_finite() || ms.fract() != 0.0 || ms.abs() >= F64_EXACT_MS {
                    return Err(IntervalError::NotWholeMilliseconds { text: whole() });
                }
                ms as i64
            }
        };
        total = total
            .checked_add(ms)
            .ok_or_else(|| IntervalError::Overflow { text: whole() })?;
    }
    Ok(total)
}

/// Truncates a timestamp to the start of its unit (date_trunc).
pub fn truncate(ms: i64, unit: TimeUnit) -> i64 {
    let c = Civil::from_ms(ms);
    match unit {
        // Saturating: the start of the unit containing a time near i64::MIN
        // may lie before i64::MIN.
        TimeUnit::Week => {
            let day_start = floor_to(ms, MS_PER_DAY);
            day_start.saturating_sub((c.iso_weekday() as i64 - 1) * MS_PER_DAY)
        }
        TimeUnit::Month => days_from_civil(c.year, c.month, 1).saturating_mul(MS_PER_DAY),
        TimeUnit::Quarter => days_from_civil(c.year, (c.month - 1) / 3 * 3 + 1, 1).saturating_mul(MS_PER_DAY),
        TimeUnit::Year => days_from_civil(c.year, 1, 1).saturating_mul(MS_PER_DAY),
        fixed => floor_to(ms, fixed.fixed_ms().expect("fixed unit")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages reach users as SQL errors: their text must not drift.
    #[test]
    fn error_messages() {
        let ts = |t: &str| parse_timestamp(t).unwrap_err().to_string();
        assert_eq!(ts("  "), "empty timestamp");
        assert_eq!(
            ts(" 99999999999999999999 "),
            "epoch milliseconds out of range: \"99999999999999999999\""
        );
        assert_eq!(
            ts(" yester\"day "),
            "invalid timestamp \"yester\\\"day\" (expected YYYY-MM-DD HH:MM:SS[.fff], RFC 3339, or epoch milliseconds)"
        );
        let iv = |t: &str, u: Option<&str>| parse_interval(t, u).unwrap_err().to_string();
        assert_eq!(
            iv("1 2", Some("SECOND")),
            "interval \"1 2\": expected a single number before the unit"
        );
        assert_eq!(
            iv("1 2 3", None),
            "interval \"1 2 3\": expected '<number> <unit>' (e.g. '10 seconds')"
        );
        assert_eq!(iv("1 eon", None), "unknown interval unit \"eon\"");
        assert_eq!(
            iv("1", Some("Months")),
            "interval unit Months has no fixed length; use days or smaller"
        );
        assert_eq!(iv("x", Some("SECOND")), "interval amount \"x\" is not a number");
        assert_eq!(
            iv("0.0001 second", None),
            "interval \"0.0001 second\" is not a whole number of milliseconds in range"
        );
        let many = "11574074 days ".repeat(10_000);
        assert_eq!(iv(&many, None), format!("interval {many:?} overflows"));
    }

    #[test]
    fn parses_the_three_input_forms() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(parse_timestamp("2015-07-15 00:00:00.123").unwrap(), 1_436_918_400_123);
        assert_eq!(
            parse_timestamp("2015-07-15T02:00:00.123+02:00").unwrap(),
            1_436_918_400_123
        );
        assert_eq!(parse_timestamp("2015-07-15T00:00:00Z").unwrap(), 1_436_918_400_000);
        assert_eq!(parse_timestamp("1436918400123").unwrap(), 1_436_918_400_123);
        assert_eq!(parse_timestamp("-1").unwrap(), -1);
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999").unwrap(), -1);
        assert!(parse_timestamp("2015-02-30 00:00:00").is_err());
        assert!(parse_timestamp("2015-07-15 24:00:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2015-07-15 00:00:00.").is_err());
    }

    #[test]
    fn formats_before_and_after_the_epoch() {
        assert_eq!(timestamp_to_string(-1), "1969-12-31 23:59:59.999");
        assert_eq!(timestamp_to_string(1_436_918_400_123), "2015-07-15 00:00:00.123");
    }

    #[test]
    fn floor_division_rounds_down_for_negative_times() {
        assert_eq!(floor_to(-1, 10_000), -10_000);
        assert_eq!(floor_to(-10_000, 10_000), -10_000);
        assert_eq!(floor_to(9_999, 10_000), 0);
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("4", Some("SECOND")).unwrap(), 4_000);
        assert_eq!(parse_interval("1.5", Some("seconds")).unwrap(), 1_500);
        assert_eq!(parse_interval("1 minute 30 seconds", None).unwrap(), 90_000);
        assert!(parse_interval("1", Some("MONTH")).is_err());
        assert!(parse_interval("x", Some("SECOND")).is_err());
        // Whole amounts are exact as far as 64-bit milliseconds go.
        assert_eq!(
            parse_interval("300000000", Some("DAY")).unwrap(),
            300_000_000 * 86_400_000
        );
        assert_eq!(
            parse_interval("-300000000", Some("DAY")).unwrap(),
            -300_000_000 * 86_400_000
        );
        assert!(matches!(
            parse_interval("300000000000", Some("DAY")),
            Err(IntervalError::Overflow { .. })
        ));
        assert!(parse_interval("0.0001", Some("SECOND")).is_err());
    }

    #[test]
    fn weekday_and_truncation() {
        // 2015-07-15 was a Wednesday.
        let ts = parse_timestamp("2015-07-15 13:14:15.678").unwrap();
        assert_eq!(Civil::from_ms(ts).iso_weekday(), 3);
        assert_eq!(
            timestamp_to_string(truncate(ts, TimeUnit::Week)),
            "2015-07-13 00:00:00.000"
        );
        assert_eq!(
            timestamp_to_string(truncate(ts, TimeUnit::Quarter)),
            "2015-07-01 00:00:00.000"
        );
        assert_eq!(
            timestamp_to_string(truncate(ts, TimeUnit::Hour)),
            "2015-07-15 13:00:00.000"
        );
    }

    #[test]
    fn civil_round_trip_over_a_wide_range() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

#[cfg(test)]
mod fixed_tests {
    use super::*;
    use proptest::prelude::*;

    /// A timestamp-shaped string: each position drawn from the bytes that
    /// matter there (digits, separators, a few strangers), so valid and
    /// near-valid texts both come up often.
    fn shaped() -> impl Strategy<Value = Vec<u8>> {
        let digit = prop_oneof![8 => b'0'..=b'9', 1 => Just(b'x'), 1 => Just(b' '), 1 => Just(b':'), 1 => Just(b'/')];
        let sep = |s: u8| prop_oneof![8 => Just(s), 1 => Just(b'T'), 1 => Just(b'/')];
        (
            prop::collection::vec(digit.clone(), 4),
            sep(b'-'),
            prop::collection::vec(digit.clone(), 2),
            sep(b'-'),
            prop::collection::vec(digit.clone(), 2),
            prop_oneof![Just(b' '), Just(b'T'), Just(b't'), Just(b'_')],
            prop::collection::vec(digit.clone(), 2),
            sep(b':'),
            prop::collection::vec(digit.clone(), 2),
            sep(b':'),
            prop::collection::vec(digit.clone(), 2),
            prop_oneof![
                Just(Vec::new()),
                prop::collection::vec(digit, 0..5).prop_map(|d| [vec![b'.'], d].concat())
            ],
        )
            .prop_map(|(y, s1, mo, s2, d, t, h, s3, mi, s4, s, frac)| {
                let mut v = y;
                v.push(s1);
                v.extend(mo);
                v.push(s2);
                v.extend(d);
                v.push(t);
                v.extend(h);
                v.push(s3);
                v.extend(mi);
                v.push(s4);
                v.extend(s);
                v.extend(frac);
                v
            })
    }

    proptest! {
        /// Wherever the fixed-offset parser answers, the general grammar
        /// gives the same value; and it answers for every valid text of
        /// its two lengths.
        #[test]
        fn fixed_parser_agrees_with_the_general_one(texts in prop::collection::vec(shaped(), 1..8)) {
            // One cache across the texts, as a decoder keeps it: a cached
            // day must never leak into a text with another date.
            // Each text twice in a row, then all again: cached texts hit
            // and miss.
            let mut cache = DateCache::default();
            for text in texts.iter().flat_map(|t| [t, t]).chain(&texts) {
                let general = std::str::from_utf8(text).ok().and_then(|t| parse_timestamp(t).ok());
                let general_no_fast = parse_datetime(text);
                let fixed = parse_timestamp_fixed(text);
                prop_assert_eq!(parse_timestamp_fixed_with(text, &mut cache), fixed);
                match fixed {
                    Some(ms) => {
                        prop_assert_eq!(Some(ms), general_no_fast);
                        prop_assert_eq!(Some(ms), general);
                    }
                    None if text.len() == 19 || text.len() == 23 => prop_assert_eq!(general_no_fast, None),
                    None => {}
                }
            }
        }
    }

    #[test]
    fn fixed_parser_checks_calendar_and_clock() {
        assert_eq!(
            parse_timestamp_fixed(b"2015-07-15 00:00:00.100"),
            Some(1_436_918_400_100)
        );
        assert_eq!(
            parse_timestamp_fixed(b"2016-02-29T23:59:59"),
            parse_datetime(b"2016-02-29T23:59:59")
        );
        // A cached day serves only its own date, and the clock is still
        // checked on a hit.
        let mut cache = DateCache::default();
        for text in [
            "2015-07-15 00:00:01",
            "2015-07-15 23:59:59.999",
            "2015-07-16T00:00:00",
            "2015-07-16 24:00:00",
            "2015-07-15 12:00:00.500",
        ] {
            assert_eq!(
                parse_timestamp_fixed_with(text.as_bytes(), &mut cache),
                parse_datetime(text.as_bytes()),
                "{text}"
            );
        }
        for bad in [
            "2015-02-29 00:00:00",
            "2015-13-01 00:00:00",
            "2015-07-15 24:00:00",
            "2015-07-15 00:60:00",
        ] {
            assert_eq!(parse_timestamp_fixed(bad.as_bytes()), None, "{bad}");
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
