//! Operators: arithmetic, comparison, `||`, unary minus and NOT, LIKE.
//!
//! Arithmetic on two BIGINTs is checked i64 arithmetic; as soon as one side
//! is DOUBLE both are f64 (the planner does not insert casts for mixed
//! operands, the operators convert). Comparison is `sql_cmp`, which is
//! three-valued and exact across BIGINT and DOUBLE.

use std::cmp::Ordering;

use super::{cast, mismatch};
use crate::error::EvalError;
use crate::expr::{BinaryOp, UnaryOp};
use crate::types::{Str, Value};

/// SQL comparison: `None` when either side is NULL. Unlike `Value::cmp`
/// (the total order for keys), `-0.0` equals `0.0` and a BIGINT compares
/// exactly with a DOUBLE. NaN equals NaN and is greater than every number,
/// as in PostgreSQL. Values of unrelated types fall back to the key order;
/// the planner never asks for that.
pub fn sql_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    Some(match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Double(x), Value::Double(y)) => cmp_f64(*x, *y),
        (Value::Int(x), Value::Double(y)) => cmp_i64_f64(*x, *y),
        (Value::Double(x), Value::Int(y)) => cmp_i64_f64(*y, *x).reverse(),
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Ts(x), Value::Ts(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.cmp(b),
    })
}

pub(crate) fn cmp_f64(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        // Neither is NaN, so partial_cmp is total here.
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Exact comparison of an i64 with an f64 (converting the i64 to f64 would
/// round above 2^53).
pub(crate) fn cmp_i64_f64(i: i64, f: f64) -> Ordering {
    // 2^63 is exactly representable; every i64 is below it.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // In range and integral, so the conversion is exact.
    match i.cmp(&(t as i64)) {
        Ordering::Equal if f > t => Ordering::Less,
        Ordering::Equal if f < t => Ordering::Greater,
        o => o,
    }
}

pub(crate) fn unary(op: UnaryOp, v: &Value) -> Result<Value, EvalError> {
    match (op, v) {
        (_, Value::Null) => Ok(Value::Null),
        (UnaryOp::Neg, Value::Int(i)) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or(EvalError::Overflow { operation: "negation" }),
        (UnaryOp::Neg, Value::Double(d)) => Ok(Value::Double(-d)),
        (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnaryOp::Neg, other) => Err(mismatch("unary -", other)),
        (UnaryOp::Not, other) => Err(mismatch("NOT", other)),
    }
}

pub(crate) fn binary(op: BinaryOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    use BinaryOp as B;
    match op {
        B::Add | B::Sub | B::Mul | B::Div | B::Mod => arithmetic(op, l, r),
        B::Eq => Ok(compare(l, r, Ordering::is_eq)),
        B::NotEq => Ok(compare(l, r, Ordering::is_ne)),
        B::Lt => Ok(compare(l, r, Ordering::is_lt)),
        B::LtEq => Ok(compare(l, r, Ordering::is_le)),
        B::Gt => Ok(compare(l, r, Ordering::is_gt)),
        B::GtEq => Ok(compare(l, r, Ordering::is_ge)),
        B::Concat => Ok(concat(l, r)),
    }
}

fn compare(l: &Value, r: &Value, test: fn(Ordering) -> bool) -> Value {
    match sql_cmp(l, r) {
        Some(o) => Value::Bool(test(o)),
        None => Value::Null,
    }
}

fn arithmetic(op: BinaryOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    match (l, r) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(a), Value::Int(b)) => int_arithmetic(op, *a, *b).map(Value::Int),
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => float_arithmetic(op, a, b).map(Value::Double),
            _ => Err(mismatch(op.symbol(), if l.as_f64().is_none() { l } else { r })),
        },
    }
}

pub(crate) fn int_arithmetic(op: BinaryOp, a: i64, b: i64) -> Result<i64, EvalError> {
    let overflow = |operation| EvalError::Overflow { operation };
    match op {
        BinaryOp::Add => a.checked_add(b).ok_or(overflow("addition")),
        BinaryOp::Sub => a.checked_sub(b).ok_or(overflow("subtraction")),
        BinaryOp::Mul => a.checked_mul(b).ok_or(overflow("multiplication")),
        BinaryOp::Div if b == 0 => Err(EvalError::DivisionByZero),
        // Rust's `/` truncates toward zero like PostgreSQL; only
        // i64::MIN / -1 overflows.
        BinaryOp::Div => a.checked_div(b).ok_or(overflow("division")),
        BinaryOp::Mod if b == 0 => Err(EvalError::DivisionByZero),
        // i64::MIN % -1 is mathematically 0; Rust reports it as overflow.
        BinaryOp::Mod => Ok(a.checked_rem(b).unwrap_or(0)),
        _ => unreachable!("int_arithmetic called with {op:?}"),
    }
}

pub(crate) fn float_arithmetic(op: BinaryOp, a: f64, b: f64) -> Result<f64, EvalError> {
    match op {
        BinaryOp::Add => Ok(a + b),
        BinaryOp::Sub => Ok(a - b),
        BinaryOp::Mul => Ok(a * b),
        BinaryOp::Div | BinaryOp::Mod if b == 0.0 => Err(EvalError::DivisionByZero),
        BinaryOp::Div => Ok(a / b),
        // Rust's `%` on f64 is C's fmod: the sign of the dividend.
        BinaryOp::Mod => Ok(a % b),
        _ => unreachable!("float_arithmetic called with {op:?}"),
    }
}

/// `a || b`: NULL when either side is NULL (standard SQL); other types are
/// turned into text, though the planner already casts them.
fn concat(l: &Value, r: &Value) -> Value {
    if l.is_null() || r.is_null() {
        return Value::Null;
    }
    let mut out = Str::default();
    cast::push_text(l, &mut out);
    cast::push_text(r, &mut out);
    Value::Str(out)
}

/// `s [NOT] [I]LIKE pattern`.
pub(crate) fn like(s: &Value, pattern: &Value, negated: bool, case_insensitive: bool) -> Result<Value, EvalError> {
    match (s, pattern) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Str(s), Value::Str(p)) => Ok(Value::Bool(like_match(s, p, case_insensitive) != negated)),
        (Value::Str(_), other) | (other, _) => Err(mismatch("LIKE", other)),
    }
}

fn char_at(s: &str, at: usize) -> Option<char> {
    s.get(at..).and_then(|t| t.chars().next())
}

fn chars_equal(a: char, b: char, case_insensitive: bool) -> bool {
    a == b || (case_insensitive && a.to_lowercase().eq(b.to_lowercase()))
}

/// LIKE matching without allocation: `%` is any run of characters, `_` one
/// character, and `\` makes the next pattern character literal (the
/// PostgreSQL default escape). Greedy with backtracking to the last `%`,
/// which is linear for the usual patterns and O(|s|·|p|) at worst.
pub(crate) fn like_match(s: &str, p: &str, case_insensitive: bool) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    // Where to resume after the last `%`: (pattern index after it, text index).
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if let Some(pc) = char_at(p, pi) {
            if pc == '%' {
                pi += 1;
                resume = Some((pi, si));
                continue;
            }
            if let Some(sc) = char_at(s, si) {
                let (literal, width) = match pc {
                    '_' => (None, 1),
                    '\\' => match char_at(p, pi + 1) {
                        Some(esc) => (Some(esc), 1 + esc.len_utf8()),
                        None => (Some('\\'), 1),
                    },
                    c => (Some(c), c.len_utf8()),
                };
                if literal.is_none_or(|l| chars_equal(l, sc, case_insensitive)) {
                    pi += width;
                    si += sc.len_utf8();
                    continue;
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last `%` swallow one more character.
        match resume {
            Some((rp, rs)) => match char_at(s, rs) {
                Some(c) => {
                    resume = Some((rp, rs + c.len_utf8()));
                    pi = rp;
                    si = rs + c.len_utf8();
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(op: BinaryOp, l: Value, r: Value) -> Result<Value, EvalError> {
        binary(op, &l, &r)
    }

    #[test]
    fn integer_arithmetic_is_checked() {
        use BinaryOp as B;
        assert_eq!(bin(B::Add, Value::Int(2), Value::Int(3)), Ok(Value::Int(5)));
        assert_eq!(bin(B::Div, Value::Int(-7), Value::Int(2)), Ok(Value::Int(-3)));
        assert_eq!(bin(B::Mod, Value::Int(-7), Value::Int(2)), Ok(Value::Int(-1)));
        assert_eq!(bin(B::Mod, Value::Int(7), Value::Int(-2)), Ok(Value::Int(1)));
        assert_eq!(
            bin(B::Div, Value::Int(1), Value::Int(0)),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            bin(B::Mod, Value::Int(1), Value::Int(0)),
            Err(EvalError::DivisionByZero)
        );
        assert!(matches!(
            bin(B::Div, Value::Int(i64::MIN), Value::Int(-1)),
            Err(EvalError::Overflow { .. })
        ));
        assert_eq!(bin(B::Mod, Value::Int(i64::MIN), Value::Int(-1)), Ok(Value::Int(0)));
        assert!(matches!(
            bin(B::Add, Value::Int(i64::MAX), Value::Int(1)),
            Err(EvalError::Overflow { .. })
        ));
        assert!(matches!(
            bin(B::Sub, Value::Int(i64::MIN), Value::Int(1)),
            Err(EvalError::Overflow { .. })
        ));
        assert!(matches!(
            bin(B::Mul, Value::Int(i64::MAX), Value::Int(2)),
            Err(EvalError::Overflow { .. })
        ));
        assert!(matches!(
            unary(UnaryOp::Neg, &Value::Int(i64::MIN)),
            Err(EvalError::Overflow { .. })
        ));
        assert_eq!(unary(UnaryOp::Neg, &Value::Int(5)), Ok(Value::Int(-5)));
        assert_eq!(bin(B::Add, Value::Null, Value::Int(1)), Ok(Value::Null));
        assert_eq!(bin(B::Div, Value::Null, Value::Int(0)), Ok(Value::Null));
    }

    #[test]
    fn float_arithmetic_and_mixing() {
        use BinaryOp as B;
        assert_eq!(bin(B::Add, Value::Int(1), Value::Double(0.5)), Ok(Value::Double(1.5)));
        assert_eq!(bin(B::Div, Value::Double(1.0), Value::Int(4)), Ok(Value::Double(0.25)));
        assert_eq!(
            bin(B::Div, Value::Double(1.0), Value::Double(0.0)),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            bin(B::Div, Value::Double(1.0), Value::Double(-0.0)),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            bin(B::Mod, Value::Double(-7.5), Value::Double(2.0)),
            Ok(Value::Double(-1.5))
        );
        assert_eq!(
            bin(B::Mod, Value::Double(1.0), Value::Int(0)),
            Err(EvalError::DivisionByZero)
        );
        assert!(bin(B::Add, Value::str("a"), Value::Int(1)).is_err());
        assert_eq!(unary(UnaryOp::Neg, &Value::Double(2.5)), Ok(Value::Double(-2.5)));
    }

    #[test]
    fn comparisons_are_three_valued_and_exact() {
        use BinaryOp as B;
        assert_eq!(bin(B::Eq, Value::Null, Value::Null), Ok(Value::Null));
        assert_eq!(bin(B::Lt, Value::Int(1), Value::Null), Ok(Value::Null));
        assert_eq!(
            bin(B::Eq, Value::Double(-0.0), Value::Double(0.0)),
            Ok(Value::Bool(true))
        );
        assert_eq!(bin(B::Eq, Value::Int(3), Value::Double(3.0)), Ok(Value::Bool(true)));
        assert_eq!(bin(B::Lt, Value::Int(3), Value::Double(3.5)), Ok(Value::Bool(true)));
        assert_eq!(bin(B::Gt, Value::Int(-3), Value::Double(-3.5)), Ok(Value::Bool(true)));
        // 2^53 + 1 is not representable as f64; an exact comparison sees it.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            bin(B::Gt, Value::Int(big), Value::Double((1i64 << 53) as f64)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            bin(B::Lt, Value::Int(i64::MAX), Value::Double(9.3e18)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            bin(B::Gt, Value::Int(i64::MIN), Value::Double(-9.3e18)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            bin(B::Lt, Value::Int(i64::MAX), Value::Double(f64::NAN)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            bin(B::Eq, Value::Double(f64::NAN), Value::Double(f64::NAN)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            bin(B::Gt, Value::Double(f64::NAN), Value::Double(f64::INFINITY)),
            Ok(Value::Bool(true))
        );
        assert_eq!(bin(B::Lt, Value::str("B"), Value::str("a")), Ok(Value::Bool(true)));
        assert_eq!(bin(B::Lt, Value::str("ab"), Value::str("abc")), Ok(Value::Bool(true)));
        assert_eq!(bin(B::Lt, Value::Bool(false), Value::Bool(true)), Ok(Value::Bool(true)));
        assert_eq!(bin(B::GtEq, Value::Ts(5), Value::Ts(5)), Ok(Value::Bool(true)));
        assert_eq!(bin(B::NotEq, Value::Ts(5), Value::Ts(5)), Ok(Value::Bool(false)));
        assert_eq!(bin(B::LtEq, Value::Int(6), Value::Int(5)), Ok(Value::Bool(false)));
    }

    #[test]
    fn concat_operator() {
        assert_eq!(
            bin(BinaryOp::Concat, Value::str("a"), Value::str("b")),
            Ok(Value::str("ab"))
        );
        assert_eq!(bin(BinaryOp::Concat, Value::str("a"), Value::Null), Ok(Value::Null));
        assert_eq!(
            bin(BinaryOp::Concat, Value::str("n="), Value::Int(3)),
            Ok(Value::str("n=3"))
        );
    }

    #[test]
    fn like_patterns() {
        let m = |s, p| like_match(s, p, false);
        assert!(m("hello", "hello"));
        assert!(m("hello", "h%"));
        assert!(m("hello", "%llo"));
        assert!(m("hello", "%l%"));
        assert!(m("hello", "h_llo"));
        assert!(m("", "%"));
        assert!(m("", ""));
        assert!(!m("", "_"));
        assert!(!m("hello", "h_lo"));
        assert!(!m("hello", "Hello"));
        assert!(m("ab%c", "ab\\%c"));
        assert!(!m("abxc", "ab\\%c"));
        assert!(m("a_b", "a\\_b"));
        assert!(m("a\\", "a\\"));
        assert!(m("mississippi", "%iss%ippi"));
        assert!(m("aaa", "%a%a%a%"));
        assert!(!m("aa", "%a%a%a%"));
        assert!(m("héllo wörld", "h_llo w_rld"));
        assert!(m("日本語", "_本%"));
        assert!(like_match("HeLLo", "hel%", true));
        assert!(like_match("ÉCOLE", "éco%", true));
        assert_eq!(like(&Value::Null, &Value::str("%"), false, false), Ok(Value::Null));
        assert_eq!(
            like(&Value::str("x"), &Value::str("y"), true, false),
            Ok(Value::Bool(true))
        );
        assert!(like(&Value::Int(1), &Value::str("y"), false, false).is_err());
    }
}
