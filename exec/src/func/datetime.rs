//! Time functions: `EXTRACT`, `date_trunc`, `DATE_FORMAT`.
//!
//! All in UTC on the proleptic Gregorian calendar (`crate::time`).
//!
//! `EXTRACT(field FROM ts)` fields (case-insensitive, singular or plural):
//! YEAR, ISOYEAR, QUARTER, MONTH, WEEK (ISO 8601 week, 1–53), DAY, DOW
//! (0 = Sunday … 6), ISODOW (1 = Monday … 7), DOY, HOUR, MINUTE, SECOND
//! (whole seconds), MILLISECOND (seconds × 1000 + milliseconds, as
//! PostgreSQL), MICROSECOND (likewise × 1000), all BIGINT; EPOCH is DOUBLE
//! seconds since 1970 with the milliseconds as a fraction.
//!
//! `date_trunc(unit, ts)` units: millisecond, second, minute, hour, day,
//! week (Monday), month, quarter, year.
//!
//! `DATE_FORMAT(ts, format)`: a format containing `%` is strftime-style:
//! `%Y` year (4+ digits), `%y` 2-digit year, `%m` month 01–12, `%d` day
//! 01–31, `%e` day space-padded, `%H` hour 00–23, `%I` hour 01–12, `%M`
//! minute, `%S` second, `%f` milliseconds (3 digits, not strftime's
//! microseconds), `%j` day of year 001–366, `%a`/`%A` weekday name short /
//! full, `%b`/`%h`/`%B` month name short / full, `%p` AM/PM, `%u` ISO
//! weekday 1–7, `%w` weekday 0–6 from Sunday, `%F` = `%Y-%m-%d`, `%T` =
//! `%H:%M:%S`, `%%` a percent sign. Without `%` it is a Java/Flink pattern:
//! `yyyy` (any count but 2) year, `yy` 2-digit year, `M`/`MM` month,
//! `MMM`/`MMMM` month name, `d`/`dd` day, `D`/`DDD` day of year, `H`/`HH`
//! hour 0–23, `h`/`hh` hour 1–12, `m`/`mm` minute, `s`/`ss` second, `S…`
//! fraction of a second (`SSS` = milliseconds), `a` AM/PM, `E…` weekday
//! name (`EEEE` full), text in single quotes literal (`''` is a quote).
//! Other letters are refused so typos fail at plan time.

use std::fmt::Write;

use thiserror::Error;

use super::get;
use crate::error::EvalError;
use crate::time::{self, floor_div, Civil, TimeUnit};
use crate::types::{Str, Value};

/// A field of `EXTRACT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractField {
    Year,
    IsoYear,
    Quarter,
    Month,
    Week,
    Day,
    Dow,
    IsoDow,
    Doy,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Epoch,
}

impl ExtractField {
    pub fn parse(name: &str) -> Option<ExtractField> {
        let n = name.trim().to_ascii_lowercase();
        let n = n.strip_suffix('s').unwrap_or(&n);
        Some(match n {
            "year" => ExtractField::Year,
            "isoyear" => ExtractField::IsoYear,
            "quarter" => ExtractField::Quarter,
            "month" => ExtractField::Month,
            "week" => ExtractField::Week,
            "day" => ExtractField::Day,
            "dow" | "dayofweek" => ExtractField::Dow,
            "isodow" => ExtractField::IsoDow,
            "doy" | "dayofyear" => ExtractField::Doy,
            "hour" => ExtractField::Hour,
            "minute" => ExtractField::Minute,
            "second" => ExtractField::Second,
            "millisecond" => ExtractField::Millisecond,
            "microsecond" => ExtractField::Microsecond,
            "epoch" => ExtractField::Epoch,
            _ => return None,
        })
    }

    /// Whether the result is DOUBLE (else BIGINT).
    pub fn is_double(self) -> bool {
        self == ExtractField::Epoch
    }
}

/// Weeks in an ISO year: 53 when it starts on a Thursday, or on a
/// Wednesday in a leap year.
fn iso_weeks_in_year(year: i64) -> i64 {
    let p = |y: i64| (y + floor_div(y, 4) - floor_div(y, 100) + floor_div(y, 400)).rem_euclid(7);
    if p(year) == 4 || p(year - 1) == 3 {
        53
    } else {
        52
    }
}

/// ISO 8601 (week-numbering year, week).
fn iso_week(c: &Civil) -> (i64, i64) {
    let week = (c.day_of_year() as i64 - c.iso_weekday() as i64 + 10) / 7;
    if week < 1 {
        (c.year - 1, iso_weeks_in_year(c.year - 1))
    } else if week > iso_weeks_in_year(c.year) {
        (c.year + 1, 1)
    } else {
        (c.year, week)
    }
}

pub(super) fn extract(field: ExtractField, ts: &Value) -> Result<Value, EvalError> {
    let ms = get!("extract", ts, Ts);
    if field == ExtractField::Epoch {
        return Ok(Value::Double(ms as f64 / 1000.0));
    }
    let c = Civil::from_ms(ms);
    let v = match field {
        ExtractField::Year => c.year,
        ExtractField::IsoYear => iso_week(&c).0,
        ExtractField::Quarter => (c.month as i64 - 1) / 3 + 1,
        ExtractField::Month => c.month as i64,
        ExtractField::Week => iso_week(&c).1,
        ExtractField::Day => c.day as i64,
        ExtractField::Dow => c.iso_weekday() as i64 % 7,
        ExtractField::IsoDow => c.iso_weekday() as i64,
        ExtractField::Doy => c.day_of_year() as i64,
        ExtractField::Hour => c.hour as i64,
        ExtractField::Minute => c.minute as i64,
        ExtractField::Second => c.second as i64,
        ExtractField::Millisecond => c.second as i64 * 1000 + c.millisecond as i64,
        ExtractField::Microsecond => (c.second as i64 * 1000 + c.millisecond as i64) * 1000,
        ExtractField::Epoch => unreachable!("handled above"),
    };
    Ok(Value::Int(v))
}

/// A `date_trunc` unit name that names no unit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown date_trunc unit {name:?} (expected millisecond, second, minute, hour, day, week, month, quarter or year)"
)]
pub struct UnknownTruncUnit {
    pub name: String,
}

/// Parses a `date_trunc` unit name.
pub(crate) fn trunc_unit(name: &str) -> Result<TimeUnit, UnknownTruncUnit> {
    TimeUnit::parse(name).ok_or_else(|| UnknownTruncUnit { name: name.to_string() })
}

pub(super) fn date_trunc(unit: TimeUnit, ts: &Value) -> Result<Value, EvalError> {
    let ms = get!("date_trunc", ts, Ts);
    Ok(Value::Ts(time::truncate(ms, unit)))
}

pub(super) fn date_format(format: &DateFormat, ts: &Value) -> Result<Value, EvalError> {
    let ms = get!("date_format", ts, Ts);
    let mut out = String::new();
    format.write(ms, &mut out);
    Ok(Value::Str(Str::from(out)))
}

/// One piece of a compiled date format.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    /// Year, zero-padded to at least this many digits.
    Year(usize),
    Year2,
    Month(usize),
    MonthName {
        full: bool,
    },
    Day(usize),
    DaySpacePadded,
    DayOfYear(usize),
    Hour24(usize),
    Hour12(usize),
    Minute(usize),
    Second(usize),
    /// Fraction of a second to this many digits (3 = milliseconds).
    Fraction(usize),
    AmPm,
    WeekdayName {
        full: bool,
    },
    IsoWeekday,
    WeekdayFromSunday,
}

/// A compiled `DATE_FORMAT` pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    items: Vec<Item>,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats never need more than 9 fraction digits or padding wider than
/// this; it also bounds the work per row.
const PAD_WIDTH_MAX: usize = 9;

/// Why a `DATE_FORMAT` pattern does not compile. `format` is the whole
/// pattern.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateFormatError {
    #[error("date format {format:?} ends with a lone '%'")]
    LonePercent { format: String },
    #[error("unsupported date format specifier %{specifier} in {format:?}")]
    UnsupportedSpecifier { specifier: char, format: String },
    #[error("unterminated quote in date format {format:?}")]
    UnterminatedQuote { format: String },
    #[error("unsupported pattern letters {letters:?} in date format {format:?} (quote literal text with '…')")]
    UnsupportedLetters { letters: String, format: String },
}

impl DateFormat {
    /// Compiles a strftime-style (contains `%`) or Java-style pattern.
    pub fn parse(format: &str) -> Result<DateFormat, DateFormatError> {
        let items = if format.contains('%') {
            parse_strftime(format)?
        } else {
            parse_java(format)?
        };
        Ok(DateFormat { items })
    }

    /// Appends the formatted timestamp to `out`.
    pub fn write(&self, ms: i64, out: &mut String) {
        let c = Civil::from_ms(ms);
        for item in &self.items {
            let _ = match item {
                Item::Text(t) => {
                    out.push_str(t);
                    Ok(())
                }
                Item::Year(w) => write!(out, "{:0w$}", c.year),
                Item::Year2 => write!(out, "{:02}", c.year.rem_euclid(100)),
                Item::Month(w) => write!(out, "{:0w$}", c.month),
                Item::MonthName { full } => push_name(out, MONTHS[c.month as usize - 1], *full),
                Item::Day(w) => write!(out, "{:0w$}", c.day),
                Item::DaySpacePadded => write!(out, "{:2}", c.day),
                Item::DayOfYear(w) => write!(out, "{:0w$}", c.day_of_year()),
                Item::Hour24(w) => write!(out, "{:0w$}", c.hour),
                Item::Hour12(w) => write!(out, "{:0w$}", (c.hour + 11) % 12 + 1),
                Item::Minute(w) => write!(out, "{:0w$}", c.minute),
                Item::Second(w) => write!(out, "{:0w$}", c.second),
                Item::Fraction(n) => {
                    let mut digits = String::with_capacity(9);
                    let _ = write!(digits, "{:09}", c.millisecond as u64 * 1_000_000);
                    out.push_str(&digits[..(*n).min(9)]);
                    Ok(())
                }
                Item::AmPm => {
                    out.push_str(if c.hour < 12 { "AM" } else { "PM" });
                    Ok(())
                }
                Item::WeekdayName { full } => push_name(out, WEEKDAYS[c.iso_weekday() as usize - 1], *full),
                Item::IsoWeekday => write!(out, "{}", c.iso_weekday()),
                Item::WeekdayFromSunday => write!(out, "{}", c.iso_weekday() % 7),
            };
        }
    }
}

fn push_name(out: &mut String, name: &str, full: bool) -> std::fmt::Result {
    out.push_str(if full { name } else { &name[..3] });
    Ok(())
}

fn push_text(items: &mut Vec<Item>, c: char) {
    if let Some(Item::Text(t)) = items.last_mut() {
        t.push(c);
    } else {
        items.push(Item::Text(c.to_string()));
    }
}

fn parse_strftime(format: &str) -> Result<Vec<Item>, DateFormatError> {
    let mut items = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            push_text(&mut items, c);
            continue;
        }
        let spec = chars.next().ok_or_else(|| DateFormatError::LonePercent {
            format: format.to_string(),
        })?;
        match spec {
            'Y' => items.push(Item::Year(4)),
            'y' => items.push(Item::Year2),
            'm' => items.push(Item::Month(2)),
            'd' => items.push(Item::Day(2)),
            'e' => items.push(Item::DaySpacePadded),
            'H' => items.push(Item::Hour24(2)),
            'I' => items.push(Item::Hour12(2)),
            'M' => items.push(Item::Minute(2)),
            'S' => items.push(Item::Second(2)),
            'f' => items.push(Item::Fraction(3)),
            'j' => items.push(Item::DayOfYear(3)),
            'a' => items.push(Item::WeekdayName { full: false }),
            'A' => items.push(Item::WeekdayName { full: true }),
            'b' | 'h' => items.push(Item::MonthName { full: false }),
            'B' => items.push(Item::MonthName { full: true }),
            'p' => items.push(Item::AmPm),
            'u' => items.push(Item::IsoWeekday),
            'w' => items.push(Item::WeekdayFromSunday),
            'F' => items.extend(parse_strftime("%Y-%m-%d")?),
            'T' => items.extend(parse_strftime("%H:%M:%S")?),
            '%' => push_text(&mut items, '%'),
            other => {
                return Err(DateFormatError::UnsupportedSpecifier {
                    specifier: other,
                    format: format.to_string(),
                })
            }
        }
    }
    Ok(items)
}

fn parse_java(format: &str) -> Result<Vec<Item>, DateFormatError> {
    let chars: Vec<char> = format.chars().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal text; '' inside or outside quotes is a quote.
            if chars.get(i + 1) == Some(&'\'') {
                push_text(&mut items, '\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => {
                        return Err(DateFormatError::UnterminatedQuote {
                            format: format.to_string(),
                        })
                    }
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        push_text(&mut items, '\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&t) => {
                        push_text(&mut items, t);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_text(&mut items, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        i += run;
        let width = run.min(PAD_WIDTH_MAX);
        items.push(match (c, run) {
            ('y', 2) => Item::Year2,
            ('y', _) => Item::Year(width),
            ('M', 1 | 2) => Item::Month(width),
            ('M', 3) => Item::MonthName { full: false },
            ('M', _) => Item::MonthName { full: true },
            ('d', 1 | 2) => Item::Day(width),
            ('D', 1..=3) => Item::DayOfYear(width),
            ('H', 1 | 2) => Item::Hour24(width),
            ('h', 1 | 2) => Item::Hour12(width),
            ('m', 1 | 2) => Item::Minute(width),
            ('s', 1 | 2) => Item::Second(width),
            ('S', 1..=9) => Item::Fraction(run),
            ('a', 1) => Item::AmPm,
            ('E', 1..=3) => Item::WeekdayName { full: false },
            ('E', _) => Item::WeekdayName { full: true },
            _ => {
                return Err(DateFormatError::UnsupportedLetters {
                    letters: std::iter::repeat_n(c, run).collect(),
                    format: format.to_string(),
                });
            }
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages reach users as SQL errors: their text must not drift.
    #[test]
    fn error_messages() {
        assert_eq!(
            trunc_unit("eon").unwrap_err().to_string(),
            "unknown date_trunc unit \"eon\" (expected millisecond, second, minute, hour, day, week, month, quarter or year)"
        );
        let f = |p: &str| DateFormat::parse(p).err().unwrap().to_string();
        assert_eq!(f("abc %"), "date format \"abc %\" ends with a lone '%'");
        assert_eq!(f("%Y %Q"), "unsupported date format specifier %Q in \"%Y %Q\"");
        assert_eq!(f("yyyy 'x"), "unterminated quote in date format \"yyyy 'x\"");
        assert_eq!(
            f("yyyy-MM-dd QQ"),
            "unsupported pattern letters \"QQ\" in date format \"yyyy-MM-dd QQ\" (quote literal text with '…')"
        );
    }
    use crate::time::parse_timestamp;

    fn ts(s: &str) -> Value {
        Value::Ts(parse_timestamp(s).unwrap())
    }

    fn ex(field: &str, t: &str) -> Value {
        extract(ExtractField::parse(field).unwrap(), &ts(t)).unwrap()
    }

    #[test]
    fn extract_fields() {
        let t = "2015-07-15 13:14:15.678"; // a Wednesday
        assert_eq!(ex("YEAR", t), Value::Int(2015));
        assert_eq!(ex("quarter", t), Value::Int(3));
        assert_eq!(ex("Month", t), Value::Int(7));
        assert_eq!(ex("day", t), Value::Int(15));
        assert_eq!(ex("dow", t), Value::Int(3));
        assert_eq!(ex("isodow", t), Value::Int(3));
        assert_eq!(ex("dow", "2015-07-19"), Value::Int(0));
        assert_eq!(ex("isodow", "2015-07-19"), Value::Int(7));
        assert_eq!(ex("doy", t), Value::Int(196));
        assert_eq!(ex("hour", t), Value::Int(13));
        assert_eq!(ex("minutes", t), Value::Int(14));
        assert_eq!(ex("second", t), Value::Int(15));
        assert_eq!(ex("milliseconds", t), Value::Int(15_678));
        assert_eq!(ex("microsecond", t), Value::Int(15_678_000));
        assert_eq!(ex("epoch", "1970-01-01 00:00:01.5"), Value::Double(1.5));
        assert_eq!(ex("epoch", "1969-12-31 23:59:59.5"), Value::Double(-0.5));
        assert_eq!(ex("week", t), Value::Int(29));
        assert_eq!(ex("hour", "1969-12-31 23:59:59.999"), Value::Int(23));
        assert!(ExtractField::parse("fortnight").is_none());
        assert_eq!(extract(ExtractField::Year, &Value::Null), Ok(Value::Null));
        assert!(extract(ExtractField::Year, &Value::Int(1)).is_err());
        // Extreme timestamps must not panic.
        for ms in [i64::MIN, i64::MAX, 0, -1] {
            for f in ["year", "isoyear", "week", "dow", "doy", "epoch", "millisecond"] {
                let _ = extract(ExtractField::parse(f).unwrap(), &Value::Ts(ms));
            }
        }
    }

    #[test]
    fn iso_weeks_at_year_boundaries() {
        // (date, ISO year, ISO week), checked against PostgreSQL.
        let cases = [
            ("2005-01-01", 2004, 53),
            ("2005-01-02", 2004, 53),
            ("2005-12-31", 2005, 52),
            ("2007-01-01", 2007, 1),
            ("2007-12-30", 2007, 52),
            ("2007-12-31", 2008, 1),
            ("2008-12-29", 2009, 1),
            ("2010-01-03", 2009, 53),
            ("2020-12-31", 2020, 53),
            ("2021-01-03", 2020, 53),
            ("2021-01-04", 2021, 1),
        ];
        for (d, y, w) in cases {
            assert_eq!(ex("isoyear", d), Value::Int(y), "{d}");
            assert_eq!(ex("week", d), Value::Int(w), "{d}");
        }
    }

    #[test]
    fn truncation() {
        let t = ts("2015-08-15 13:14:15.678");
        let trunc = |u: &str| match date_trunc(trunc_unit(u).unwrap(), &t).unwrap() {
            Value::Ts(ms) => time::timestamp_to_string(ms),
            other => panic!("{other:?}"),
        };
        assert_eq!(trunc("second"), "2015-08-15 13:14:15.000");
        assert_eq!(trunc("minute"), "2015-08-15 13:14:00.000");
        assert_eq!(trunc("day"), "2015-08-15 00:00:00.000");
        assert_eq!(trunc("week"), "2015-08-10 00:00:00.000");
        assert_eq!(trunc("month"), "2015-08-01 00:00:00.000");
        assert_eq!(trunc("quarter"), "2015-07-01 00:00:00.000");
        assert_eq!(trunc("YEAR"), "2015-01-01 00:00:00.000");
        assert_eq!(trunc("millisecond"), "2015-08-15 13:14:15.678");
        assert!(trunc_unit("eon").is_err());
        for ms in [i64::MIN, i64::MAX, i64::MIN + 1] {
            for u in ["week", "month", "year", "day"] {
                let _ = date_trunc(trunc_unit(u).unwrap(), &Value::Ts(ms));
            }
        }
    }

    fn fmt(f: &str, t: &str) -> String {
        let mut out = String::new();
        DateFormat::parse(f)
            .unwrap()
            .write(parse_timestamp(t).unwrap(), &mut out);
        out
    }

    #[test]
    fn strftime_formats() {
        let t = "2015-07-05 13:04:05.078";
        assert_eq!(fmt("%Y-%m-%d %H:%M:%S.%f", t), "2015-07-05 13:04:05.078");
        assert_eq!(fmt("%y/%e/%j %I%p %%", t), "15/ 5/186 01PM %");
        assert_eq!(fmt("%a %A %b %B %h %u %w", t), "Sun Sunday Jul July Jul 7 0");
        assert_eq!(fmt("%F %T", t), "2015-07-05 13:04:05");
        assert_eq!(fmt("%I %p", "2015-07-05 00:30:00"), "12 AM");
        assert_eq!(fmt("%I %p", "2015-07-05 12:30:00"), "12 PM");
        assert!(DateFormat::parse("%Q").is_err());
        assert!(DateFormat::parse("abc %").is_err());
    }

    #[test]
    fn java_formats() {
        let t = "2015-07-05 13:04:05.078";
        assert_eq!(fmt("yyyy-MM-dd HH:mm:ss", t), "2015-07-05 13:04:05");
        assert_eq!(fmt("yyyy-MM-dd HH:mm:ss.SSS", t), "2015-07-05 13:04:05.078");
        assert_eq!(fmt("yy M d H m s S", t), "15 7 5 13 4 5 0");
        assert_eq!(
            fmt("hh:mm a, EEE MMM, EEEE MMMM DDD", t),
            "01:04 PM, Sun Jul, Sunday July 186"
        );
        assert_eq!(fmt("yyyy-MM-dd'T'HH:mm''ss", t), "2015-07-05T13:04'05");
        assert_eq!(fmt("'o''clock' yyyyMMdd", t), "o'clock 20150705");
        assert_eq!(fmt("", t), "");
        assert!(DateFormat::parse("yyyy-MM-dd Q").is_err());
        assert!(DateFormat::parse("'unterminated").is_err());
        assert!(DateFormat::parse("ddd").is_err());
        // Extreme timestamps must not panic.
        let f = DateFormat::parse("yyyy-MM-dd HH:mm:ss.SSS a EEE MMM DDD").unwrap();
        for ms in [i64::MIN, i64::MAX] {
            let mut out = String::new();
            f.write(ms, &mut out);
            assert!(!out.is_empty());
        }
    }
}
