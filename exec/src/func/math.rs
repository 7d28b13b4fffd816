//! Numeric functions: `abs`, `round`, `floor`, `ceil`, `sign`, `sqrt`,
//! `exp`, `ln`, `log10`, `power`.
//!
//! BIGINT stays BIGINT where that makes sense (`abs`, `round`, `floor`,
//! `ceil`, `sign`), checked for overflow. `round` rounds half away from
//! zero on the number as it is printed: `round(2.675, 2)` is 2.68 even
//! though the nearest f64 to 2.675 is slightly below it, because users
//! read and write decimal text. Domain errors (square root of a negative,
//! logarithm of zero) and overflow to infinity from finite input are
//! errors, as in PostgreSQL, rather than NaN or ∞.

use super::{get, mismatch, MathFunc};
use crate::error::EvalError;
use crate::types::Value;

pub(super) fn abs(v: &Value) -> Result<Value, EvalError> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i
            .checked_abs()
            .map(Value::Int)
            .ok_or(EvalError::Overflow { operation: "abs" }),
        Value::Double(d) => Ok(Value::Double(d.abs())),
        other => Err(mismatch("abs", other)),
    }
}

pub(super) fn floor_ceil(v: &Value, ceil: bool) -> Result<Value, EvalError> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Double(d) => Ok(Value::Double(if ceil { d.ceil() } else { d.floor() })),
        other => Err(mismatch(if ceil { "ceil" } else { "floor" }, other)),
    }
}

pub(super) fn sign(v: &Value) -> Result<Value, EvalError> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => Ok(Value::Int(i.signum())),
        // f64::signum(0.0) is 1.0; SQL's sign(0) is 0.
        Value::Double(d) if *d == 0.0 || d.is_nan() => Ok(Value::Double(*d)),
        Value::Double(d) => Ok(Value::Double(d.signum())),
        other => Err(mismatch("sign", other)),
    }
}

pub(super) fn round(v: &Value, digits: Option<&Value>) -> Result<Value, EvalError> {
    let digits = match digits {
        None => 0,
        Some(d) => get!("round", d, Int),
    };
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => round_i64(*i, digits).map(Value::Int),
        Value::Double(d) => Ok(Value::Double(round_f64(*d, digits))),
        other => Err(mismatch("round", other)),
    }
}

/// Rounds an integer to `digits` decimal places; only negative `digits`
/// change it (round(1250, -2) = 1300).
fn round_i64(x: i64, digits: i64) -> Result<i64, EvalError> {
    if digits >= 0 {
        return Ok(x);
    }
    let places = digits.unsigned_abs();
    // Half of 10^20 exceeds every i64, so everything rounds to 0.
    if places >= 20 {
        return Ok(0);
    }
    let unit: i128 = 10_i128.pow(places as u32);
    let x = x as i128;
    let rem = x % unit;
    let mut r = x - rem;
    if rem.abs() * 2 >= unit {
        r += unit * x.signum();
    }
    i64::try_from(r).map_err(|_| EvalError::Overflow { operation: "round" })
}

/// Rounds half away from zero at `digits` decimal places, working on the
/// shortest decimal text of `x` so that ties are the ties the user sees.
pub(crate) fn round_f64(x: f64, digits: i64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    if digits == 0 {
        return x.round();
    }
    // `{:e}` gives the shortest round-trip digits: d.ddddde±N.
    let text = format!("{:e}", x.abs());
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return x;
    };
    let Ok(exponent) = exponent.parse::<i64>() else {
        return x;
    };
    let digit_text: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    // Digit k has place value 10^(exponent - k); keep those with place
    // value >= 10^-digits. i128 keeps extreme `digits` from overflowing.
    let keep = exponent as i128 + digits as i128 + 1;
    if keep >= digit_text.len() as i128 {
        return x;
    }
    if keep < 0 {
        return 0.0;
    }
    let keep = keep as usize;
    // At most 17 significant digits, so the kept prefix fits a u64.
    let mut kept: u64 = digit_text[..keep].iter().fold(0, |acc, d| acc * 10 + (d - b'0') as u64);
    if digit_text[keep] >= b'5' {
        kept += 1;
    }
    if kept == 0 {
        return 0.0;
    }
    let scale = exponent + 1 - keep as i64;
    let magnitude: f64 = format!("{kept}e{scale}").parse().unwrap_or(x.abs());
    magnitude.copysign(x)
}

pub(super) fn unary(f: MathFunc, v: &Value) -> Result<Value, EvalError> {
    let (name, x) = match f {
        MathFunc::Sqrt => ("sqrt", get!("sqrt", v, F64)),
        MathFunc::Exp => ("exp", get!("exp", v, F64)),
        MathFunc::Ln => ("ln", get!("ln", v, F64)),
        MathFunc::Log10 => ("log10", get!("log10", v, F64)),
    };
    let domain = |reason: &str| EvalError::Function {
        function: name,
        reason: reason.to_string(),
    };
    let y = match f {
        MathFunc::Sqrt if x < 0.0 => return Err(domain("cannot take the square root of a negative number")),
        MathFunc::Sqrt => x.sqrt(),
        MathFunc::Exp => x.exp(),
        MathFunc::Ln | MathFunc::Log10 if x == 0.0 => return Err(domain("cannot take the logarithm of zero")),
        MathFunc::Ln | MathFunc::Log10 if x < 0.0 => {
            return Err(domain("cannot take the logarithm of a negative number"))
        }
        MathFunc::Ln => x.ln(),
        MathFunc::Log10 => x.log10(),
    };
    finite_result(name, x.is_finite(), y)
}

pub(super) fn power(base: &Value, exponent: &Value) -> Result<Value, EvalError> {
    let b = get!("power", base, F64);
    let e = get!("power", exponent, F64);
    if b == 0.0 && e < 0.0 {
        return Err(EvalError::Function {
            function: "power",
            reason: "zero raised to a negative power".into(),
        });
    }
    if b < 0.0 && e.fract() != 0.0 && e.is_finite() {
        return Err(EvalError::Function {
            function: "power",
            reason: "a negative number raised to a non-integer power".into(),
        });
    }
    finite_result("power", b.is_finite() && e.is_finite(), b.powf(e))
}

fn finite_result(name: &'static str, finite_input: bool, y: f64) -> Result<Value, EvalError> {
    if finite_input && y.is_infinite() {
        return Err(EvalError::Overflow { operation: name });
    }
    Ok(Value::Double(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f64, d: i64) -> f64 {
        round_f64(x, d)
    }

    #[test]
    fn round_doubles_half_away_from_zero() {
        assert_eq!(r(2.5, 0), 3.0);
        assert_eq!(r(-2.5, 0), -3.0);
        assert_eq!(r(2.675, 2), 2.68);
        assert_eq!(r(-2.675, 2), -2.68);
        assert_eq!(r(1.005, 2), 1.01);
        assert_eq!(r(1120.472, 2), 1120.47);
        assert_eq!(r(0.125, 2), 0.13);
        assert_eq!(r(9.995, 2), 10.0);
        assert_eq!(r(1234.5, -2), 1200.0);
        assert_eq!(r(1250.0, -2), 1300.0);
        assert_eq!(r(-1250.0, -2), -1300.0);
        assert_eq!(r(49.0, -2), 0.0);
        assert_eq!(r(50.0, -2), 100.0);
        assert_eq!(r(0.001, 2), 0.0);
        assert_eq!(r(1e-300, 300), 1e-300);
        assert_eq!(r(1.5e-300, 300), 2e-300);
        assert_eq!(r(123.456, 20), 123.456);
        assert_eq!(r(123.456, i64::MAX), 123.456);
        assert_eq!(r(123.456, i64::MIN), 0.0);
        // Rounding up past f64::MAX has nowhere to go but infinity.
        assert!(r(1.7976931348623157e308, -308).is_infinite());
        assert!(r(f64::NAN, 2).is_nan());
        assert_eq!(r(f64::INFINITY, 2), f64::INFINITY);
    }

    #[test]
    fn round_integers() {
        let ri = |x, d| round(&Value::Int(x), Some(&Value::Int(d)));
        assert_eq!(round(&Value::Int(7), None), Ok(Value::Int(7)));
        assert_eq!(ri(7, 2), Ok(Value::Int(7)));
        assert_eq!(ri(1250, -2), Ok(Value::Int(1300)));
        assert_eq!(ri(-1249, -2), Ok(Value::Int(-1200)));
        assert_eq!(ri(-1250, -2), Ok(Value::Int(-1300)));
        assert_eq!(ri(i64::MAX, -30), Ok(Value::Int(0)));
        assert!(matches!(ri(i64::MAX, -1), Err(EvalError::Overflow { .. })));
        assert!(matches!(ri(i64::MAX, -19), Err(EvalError::Overflow { .. })));
        assert_eq!(ri(4_000_000_000_000_000_000, -19), Ok(Value::Int(0)));
        assert_eq!(ri(i64::MIN, i64::MIN), Ok(Value::Int(0)));
        assert_eq!(round(&Value::Null, None), Ok(Value::Null));
        assert_eq!(round(&Value::Double(1.5), Some(&Value::Null)), Ok(Value::Null));
        assert_eq!(
            round(&Value::Double(1.25), Some(&Value::Int(1))),
            Ok(Value::Double(1.3))
        );
        assert!(round(&Value::str("1"), None).is_err());
    }

    #[test]
    fn abs_floor_ceil_sign() {
        assert_eq!(abs(&Value::Int(-3)), Ok(Value::Int(3)));
        assert!(matches!(abs(&Value::Int(i64::MIN)), Err(EvalError::Overflow { .. })));
        assert_eq!(abs(&Value::Double(-0.5)), Ok(Value::Double(0.5)));
        assert_eq!(abs(&Value::Null), Ok(Value::Null));
        assert_eq!(floor_ceil(&Value::Double(-1.5), false), Ok(Value::Double(-2.0)));
        assert_eq!(floor_ceil(&Value::Double(-1.5), true), Ok(Value::Double(-1.0)));
        assert_eq!(floor_ceil(&Value::Int(-3), true), Ok(Value::Int(-3)));
        assert_eq!(sign(&Value::Double(0.0)), Ok(Value::Double(0.0)));
        assert_eq!(sign(&Value::Double(-2.0)), Ok(Value::Double(-1.0)));
        assert_eq!(sign(&Value::Int(i64::MIN)), Ok(Value::Int(-1)));
    }

    #[test]
    fn domains_and_overflow() {
        assert_eq!(unary(MathFunc::Sqrt, &Value::Int(9)), Ok(Value::Double(3.0)));
        assert!(unary(MathFunc::Sqrt, &Value::Double(-1.0)).is_err());
        assert!(unary(MathFunc::Ln, &Value::Double(0.0)).is_err());
        assert!(unary(MathFunc::Log10, &Value::Double(-1.0)).is_err());
        assert_eq!(unary(MathFunc::Log10, &Value::Double(1000.0)), Ok(Value::Double(3.0)));
        assert!(matches!(
            unary(MathFunc::Exp, &Value::Double(1000.0)),
            Err(EvalError::Overflow { .. })
        ));
        assert_eq!(unary(MathFunc::Exp, &Value::Null), Ok(Value::Null));
        assert_eq!(power(&Value::Int(2), &Value::Int(10)), Ok(Value::Double(1024.0)));
        assert!(power(&Value::Int(0), &Value::Int(-1)).is_err());
        assert!(power(&Value::Int(-8), &Value::Double(0.5)).is_err());
        assert_eq!(power(&Value::Int(-2), &Value::Int(3)), Ok(Value::Double(-8.0)));
        assert!(matches!(
            power(&Value::Int(10), &Value::Int(400)),
            Err(EvalError::Overflow { .. })
        ));
    }
}
