//! CAST between the SQL types.
//!
//! Allowed: anything to and from VARCHAR, BIGINT ↔ DOUBLE, BIGINT ↔
//! TIMESTAMP (epoch milliseconds), BIGINT ↔ BOOLEAN (0 is false, anything
//! else true), and NULL to anything. Text is trimmed before it is parsed;
//! booleans accept `true/false/t/f/1/0/yes/no/y/n/on/off` in any case, as
//! PostgreSQL does. DOUBLE → BIGINT rounds to the nearest integer, halves
//! away from zero (`2.5` → 3, `-2.5` → -3, as DuckDB and PostgreSQL's
//! NUMERIC do), and fails on NaN or out-of-range values instead of
//! saturating.
//! To text: a TIMESTAMP is `YYYY-MM-DD HH:MM:SS.fff`, a DOUBLE is written
//! as sinks write it (the shortest text that parses back to the same
//! number, with an exponent below 1e-4 and from 1e15: `0.1`, `1e+21`,
//! `5e-324`, `NaN`, `inf`), a BOOLEAN is `true`/`false`.

use std::fmt::Write;

use crate::error::EvalError;
use crate::time;
use crate::types::{DataType, Str, Value};

/// Whether a value of type `from` can be CAST to `to`.
pub fn can_cast(from: DataType, to: DataType) -> bool {
    use DataType as T;
    match (from, to) {
        (a, b) if a == b => true,
        (T::Null, _) => true,
        (_, T::Null) => false,
        (_, T::Str) | (T::Str, _) => true,
        (T::Int, T::Double) | (T::Double, T::Int) => true,
        (T::Int, T::Ts) | (T::Ts, T::Int) => true,
        (T::Int, T::Bool) | (T::Bool, T::Int) => true,
        _ => false,
    }
}

/// Casts one value; NULL stays NULL.
pub fn cast_value(v: &Value, to: DataType) -> Result<Value, EvalError> {
    let fail = || cast_error(v, to);
    Ok(match (v, to) {
        (Value::Null, _) => Value::Null,
        (Value::Bool(_), DataType::Bool)
        | (Value::Int(_), DataType::Int)
        | (Value::Double(_), DataType::Double)
        | (Value::Str(_), DataType::Str)
        | (Value::Ts(_), DataType::Ts) => v.clone(),
        (_, DataType::Str) => {
            let mut s = Str::default();
            push_text(v, &mut s);
            Value::Str(s)
        }
        (Value::Str(s), DataType::Int) => Value::Int(s.trim().parse().map_err(|_| fail())?),
        (Value::Str(s), DataType::Double) => Value::Double(s.trim().parse().map_err(|_| fail())?),
        (Value::Str(s), DataType::Bool) => Value::Bool(parse_bool(s).ok_or_else(fail)?),
        (Value::Str(s), DataType::Ts) => Value::Ts(time::parse_timestamp(s).map_err(|_| fail())?),
        (Value::Int(i), DataType::Double) => Value::Double(*i as f64),
        (Value::Double(d), DataType::Int) => Value::Int(f64_to_i64(*d).ok_or_else(fail)?),
        (Value::Int(i), DataType::Ts) => Value::Ts(*i),
        (Value::Ts(t), DataType::Int) => Value::Int(*t),
        (Value::Int(i), DataType::Bool) => Value::Bool(*i != 0),
        (Value::Bool(b), DataType::Int) => Value::Int(*b as i64),
        _ => return Err(fail()),
    })
}

fn cast_error(v: &Value, to: DataType) -> EvalError {
    // The message quotes the value; a limit keeps a huge string from
    // ending up in every error counter and log line.
    const SHOWN_CHARS_MAX: usize = 64;
    let mut text = Str::default();
    push_text(v, &mut text);
    let mut value: String = text.chars().take(SHOWN_CHARS_MAX).collect();
    if text.chars().nth(SHOWN_CHARS_MAX).is_some() {
        value.push('…');
    }
    EvalError::Cast {
        value,
        target: to.sql_name(),
    }
}

/// Rounds to the nearest integer, halves away from zero; `None` for NaN
/// and values outside i64.
pub(crate) fn f64_to_i64(d: f64) -> Option<i64> {
    // -2^63 is representable and in range, 2^63 is the first value out.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let r = d.round();
    if !(-TWO_63..TWO_63).contains(&r) {
        return None;
    }
    Some(r as i64)
}

fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    const TRUE: [&str; 6] = ["true", "t", "1", "yes", "y", "on"];
    const FALSE: [&str; 6] = ["false", "f", "0", "no", "n", "off"];
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// Appends the text form of a value (NULL appends nothing).
pub(crate) fn push_text(v: &Value, out: &mut Str) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Double(d) => {
            // As sinks write it (with an exponent outside 1e-4..1e15).
            let mut bytes = Vec::with_capacity(24);
            crate::format::write_f64(*d, &mut bytes);
            out.push_str(std::str::from_utf8(&bytes).expect("digits are ASCII"));
        }
        Value::Str(s) => out.push_str(s),
        Value::Ts(t) => {
            let mut s = String::with_capacity(23);
            time::format_timestamp(*t, &mut s);
            out.push_str(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType as T;

    fn cast(v: Value, to: DataType) -> Result<Value, EvalError> {
        cast_value(&v, to)
    }

    #[test]
    fn text_to_types() {
        assert_eq!(cast(Value::str(" 42 "), T::Int), Ok(Value::Int(42)));
        assert_eq!(
            cast(Value::str("-9223372036854775808"), T::Int),
            Ok(Value::Int(i64::MIN))
        );
        assert!(cast(Value::str("9223372036854775808"), T::Int).is_err());
        assert!(cast(Value::str("1.5"), T::Int).is_err());
        assert!(cast(Value::str(""), T::Int).is_err());
        assert_eq!(cast(Value::str("1.5e3"), T::Double), Ok(Value::Double(1500.0)));
        assert!(cast(Value::str("abc"), T::Double).is_err());
        for (s, b) in [
            ("TRUE", true),
            (" f ", false),
            ("1", true),
            ("0", false),
            ("t", true),
            ("False", false),
        ] {
            assert_eq!(cast(Value::str(s), T::Bool), Ok(Value::Bool(b)), "{s}");
        }
        assert!(cast(Value::str("maybe"), T::Bool).is_err());
        assert_eq!(cast(Value::str("1970-01-01 00:00:01"), T::Ts), Ok(Value::Ts(1000)));
        assert!(matches!(
            cast(Value::str("nope"), T::Ts),
            Err(EvalError::Cast {
                target: "TIMESTAMP",
                ..
            })
        ));
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(cast(Value::Int(3), T::Double), Ok(Value::Double(3.0)));
        assert_eq!(cast(Value::Double(-2.9), T::Int), Ok(Value::Int(-3)));
        assert_eq!(cast(Value::Double(2.9), T::Int), Ok(Value::Int(3)));
        assert_eq!(cast(Value::Double(2.4), T::Int), Ok(Value::Int(2)));
        // Halves go away from zero, as in DuckDB and PostgreSQL's NUMERIC.
        assert_eq!(cast(Value::Double(2.5), T::Int), Ok(Value::Int(3)));
        assert_eq!(cast(Value::Double(-2.5), T::Int), Ok(Value::Int(-3)));
        assert_eq!(cast(Value::Double(0.5), T::Int), Ok(Value::Int(1)));
        assert_eq!(cast(Value::Double(-(2f64.powi(63))), T::Int), Ok(Value::Int(i64::MIN)));
        assert!(cast(Value::Double(9.3e18), T::Int).is_err());
        assert!(cast(Value::Double(f64::NAN), T::Int).is_err());
        assert!(cast(Value::Double(f64::INFINITY), T::Int).is_err());
        assert_eq!(cast(Value::Int(5), T::Ts), Ok(Value::Ts(5)));
        assert_eq!(cast(Value::Ts(-5), T::Int), Ok(Value::Int(-5)));
        assert_eq!(cast(Value::Int(2), T::Bool), Ok(Value::Bool(true)));
        assert_eq!(cast(Value::Bool(true), T::Int), Ok(Value::Int(1)));
        assert!(cast(Value::Double(1.0), T::Ts).is_err());
        assert!(cast(Value::Ts(1), T::Bool).is_err());
        assert_eq!(cast(Value::Null, T::Ts), Ok(Value::Null));
        assert!(cast(Value::Int(1), T::Null).is_err());
    }

    #[test]
    fn to_text() {
        assert_eq!(cast(Value::Ts(-1), T::Str), Ok(Value::str("1969-12-31 23:59:59.999")));
        assert_eq!(cast(Value::Double(0.1), T::Str), Ok(Value::str("0.1")));
        assert_eq!(cast(Value::Double(1e21), T::Str), Ok(Value::str("1e+21")));
        assert_eq!(cast(Value::Double(5e-324), T::Str), Ok(Value::str("5e-324")));
        assert_eq!(cast(Value::Double(1.0), T::Str), Ok(Value::str("1")));
        assert_eq!(cast(Value::Double(f64::NAN), T::Str), Ok(Value::str("NaN")));
        assert_eq!(
            cast(Value::Int(i64::MIN), T::Str),
            Ok(Value::str("-9223372036854775808"))
        );
        assert_eq!(cast(Value::Bool(false), T::Str), Ok(Value::str("false")));
        assert_eq!(cast(Value::Ts(i64::MIN), T::Str).map(|v| v.is_null()), Ok(false));
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(1000);
        match cast(Value::str(&long), T::Int) {
            Err(EvalError::Cast { value, .. }) => assert!(value.chars().count() <= 65),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cast_matrix_agrees_with_can_cast() {
        // Every cast that can_cast refuses fails at runtime on a sample
        // value, and every allowed one has some value it succeeds on.
        let samples = [
            (T::Bool, vec![Value::Bool(true)]),
            (T::Int, vec![Value::Int(1)]),
            (T::Double, vec![Value::Double(1.0)]),
            (
                T::Str,
                vec![Value::str("1"), Value::str("true"), Value::str("1970-01-01")],
            ),
            (T::Ts, vec![Value::Ts(1)]),
        ];
        for (from, values) in &samples {
            for to in [T::Bool, T::Int, T::Double, T::Str, T::Ts] {
                let ok = values.iter().any(|v| cast_value(v, to).is_ok());
                assert_eq!(ok, can_cast(*from, to), "{from} -> {to}");
            }
        }
        assert!(can_cast(T::Null, T::Ts));
    }
}
