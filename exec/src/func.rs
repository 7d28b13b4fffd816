//! Scalar functions and operators: typing, coercion, casts and evaluation.
//!
//! The planner calls `plan_function`, `plan_binary`, `plan_unary` and
//! `plan_cast` with already-planned, typed arguments; they check types,
//! insert the casts that implicit coercion needs, fold casts of literals,
//! precompile literal regexes and date formats, and return the expression
//! with its result type. `eval_expr` evaluates any `Expr` against a row.
//!
//! Semantics, chosen to match PostgreSQL unless noted:
//! - NULL in gives NULL out (except `IS NULL`, `COALESCE`, `concat`, Kleene
//!   `AND`/`OR`). A NULL predicate does not match in `CASE WHEN`.
//! - Integer arithmetic is checked (overflow is `EvalError::Overflow`),
//!   `/` truncates toward zero, `%` takes the sign of the dividend, and a
//!   zero divisor is `EvalError::DivisionByZero` for BIGINT and DOUBLE alike
//!   (the operator turns per-row errors into NULL and counts them).
//! - Comparisons are three-valued; BIGINT against DOUBLE compares exactly
//!   (no rounding through f64); `-0.0 = 0.0`; NaN equals NaN and sorts
//!   above every number.
//! - Implicit coercion is narrow: BIGINT widens to DOUBLE, a NULL literal
//!   takes any type, and a string literal next to a typed operand is
//!   converted at plan time (`ts >= '2015-07-15 00:00:00'`). Only `||` and
//!   `concat` turn other types into strings implicitly.
//! - Functions (case-insensitive): `coalesce nullif greatest least`, math
//!   `abs mod round floor ceil ceiling sign sqrt power pow exp ln log10`,
//!   strings `lower upper length char_length character_length substring
//!   substr concat split_part trim btrim ltrim rtrim replace starts_with
//!   ends_with strpos position left right reverse`, regexes `regexp_match
//!   regexp_like regexp_extract`, time `extract date_trunc date_format`
//!   (see `func/datetime.rs` for fields and format specifiers), and the
//!   planner-internal `__ts_add_ms(ts, ms)` and `__ts_diff_ms(a, b)` used
//!   for INTERVAL arithmetic. `now()` and friends are refused: results must
//!   be the same on every replay.
//! - Evaluation never panics on a value: every failure is an `EvalError`.
//!   A malformed plan (a column index past the row) is an engine bug and
//!   does panic.

mod cast;
mod datetime;
mod fast;
mod math;
mod ops;
mod plan;
mod string;
#[cfg(test)]
mod sweep;

use std::borrow::Cow;

pub use cast::{can_cast, cast_value};
pub use datetime::{DateFormat, DateFormatError, ExtractField, UnknownTruncUnit};
pub use fast::FastExpr;
pub use ops::sql_cmp;
pub use plan::{plan_binary, plan_cast, plan_function, plan_unary, unify};
pub use string::GroupError;

use crate::error::EvalError;
use crate::expr::Expr;
use crate::time::TimeUnit;
use crate::types::Value;

/// A scalar function after planning (compiled regexes etc. inside).
///
/// Argument layouts are fixed by `plan_function`; where a literal argument
/// was compiled at plan time (a regex, a date format, a unit) the literal
/// stays in `args` for display but is not evaluated again.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarFunc {
    /// `(a, b, …)`: the first non-NULL argument; later ones are not evaluated.
    Coalesce,
    /// `(a, b)`: NULL when `a = b`, else `a`.
    NullIf,
    /// `(a, b, …)`: the largest non-NULL argument.
    Greatest,
    /// `(a, b, …)`: the smallest non-NULL argument.
    Least,
    Abs,
    /// `(x[, digits])`, half away from zero.
    Round,
    Floor,
    Ceil,
    Sign,
    /// A DOUBLE → DOUBLE function.
    Math(MathFunc),
    /// `(base, exponent)`, DOUBLE.
    Power,
    Lower,
    Upper,
    /// Length in characters.
    Length,
    /// `(s, start[, count])`, 1-based characters.
    Substring,
    /// `(a, b, …)`: NULLs count as empty strings.
    Concat,
    /// `(s, delimiter, n)`.
    SplitPart,
    /// `(s[, characters])`.
    Trim(TrimSide),
    /// `(s, from, to)`.
    Replace,
    StartsWith,
    EndsWith,
    /// `(s, substring)`: 1-based character position, 0 when absent.
    StrPos,
    /// `(s, n)`: the first n characters (all but the last |n| when n < 0).
    Left,
    /// `(s, n)`: the last n characters (all but the first |n| when n < 0).
    Right,
    Reverse,
    /// `(s, pattern)`: whether the pattern matches anywhere in `s`.
    RegexpMatch(Option<Pattern>),
    /// `(s, pattern[, group])`: a capture of the first match.
    RegexpExtract(Option<Pattern>),
    /// `(field literal, ts)`.
    Extract(ExtractField),
    /// `(unit, ts)`; the unit is compiled when it is a literal.
    DateTrunc(Option<TimeUnit>),
    /// `(ts, format)`; the format is compiled when it is a literal.
    DateFormat(Option<DateFormat>),
    /// `(ts, ms)`: `ts + ms`, checked.
    TimestampAddMs,
    /// `(a, b)`: `a - b` in milliseconds, checked.
    TimestampDiffMs,
}

/// Which ends `trim` works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimSide {
    Both,
    Leading,
    Trailing,
}

/// DOUBLE → DOUBLE functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFunc {
    Sqrt,
    Exp,
    Ln,
    Log10,
}

/// A compiled regular expression; two patterns are equal when their source
/// text is.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Evaluates an expression tree against a row.
pub fn eval_expr(e: &Expr, row: &[Value]) -> Result<Value, EvalError> {
    match e {
        Expr::Column(i) => Ok(column(row, *i).clone()),
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Unary { op, arg } => ops::unary(*op, &*eval_arg(arg, row)?),
        Expr::Binary { op, left, right } => {
            let l = eval_arg(left, row)?;
            let r = eval_arg(right, row)?;
            ops::binary(*op, &l, &r)
        }
        Expr::And(terms) => eval_kleene(terms, row, false),
        Expr::Or(terms) => eval_kleene(terms, row, true),
        Expr::IsNull { arg, negated } => Ok(Value::Bool(eval_arg(arg, row)?.is_null() != *negated)),
        Expr::InList { arg, list, negated } => eval_in_list(arg, list, *negated, row),
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => eval_case(operand.as_deref(), whens, otherwise.as_deref(), row),
        Expr::Cast { arg, to } => cast_value(&*eval_arg(arg, row)?, *to),
        Expr::Like {
            arg,
            pattern,
            negated,
            case_insensitive,
        } => {
            let s = eval_arg(arg, row)?;
            let p = eval_arg(pattern, row)?;
            ops::like(&s, &p, *negated, *case_insensitive)
        }
        Expr::Func { func, args } => eval_func(func, args, row),
    }
}

fn column(row: &[Value], index: usize) -> &Value {
    match row.get(index) {
        Some(v) => v,
        // The planner resolved this index against the input schema, so a
        // miss is a plan/operator mismatch, not bad data.
        None => panic!("column {index} out of range for a row of {} values", row.len()),
    }
}

/// Evaluates an argument, borrowing columns and literals instead of cloning
/// them: a long string argument then costs no allocation.
pub(crate) fn eval_arg<'a>(e: &'a Expr, row: &'a [Value]) -> Result<Cow<'a, Value>, EvalError> {
    match e {
        Expr::Column(i) => Ok(Cow::Borrowed(column(row, *i))),
        Expr::Literal(v) => Ok(Cow::Borrowed(v)),
        _ => eval_expr(e, row).map(Cow::Owned),
    }
}

/// A term of AND/OR as a three-valued boolean.
fn truth(v: &Value, operator: &'static str) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Null => Ok(None),
        other => Err(mismatch(operator, other)),
    }
}

/// Kleene AND (`decisive` false: FALSE wins over NULL) and OR (`decisive`
/// true: TRUE wins over NULL): evaluation stops at the first decisive term,
/// and NULL is the answer only when no term was decisive and one was NULL.
fn eval_kleene(terms: &[Expr], row: &[Value], decisive: bool) -> Result<Value, EvalError> {
    let operator = if decisive { "OR" } else { "AND" };
    let mut saw_null = false;
    for t in terms {
        match truth(&*eval_arg(t, row)?, operator)? {
            Some(b) if b == decisive => return Ok(Value::Bool(decisive)),
            Some(_) => {}
            None => saw_null = true,
        }
    }
    Ok(if saw_null { Value::Null } else { Value::Bool(!decisive) })
}

/// `x IN (…)`: TRUE on a match; otherwise NULL when `x` or any item is NULL;
/// otherwise FALSE. `NOT IN` negates TRUE/FALSE and keeps NULL.
fn eval_in_list(arg: &Expr, list: &[Expr], negated: bool, row: &[Value]) -> Result<Value, EvalError> {
    let x = eval_arg(arg, row)?;
    if x.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for item in list {
        match sql_cmp(&x, &*eval_arg(item, row)?) {
            Some(std::cmp::Ordering::Equal) => return Ok(Value::Bool(!negated)),
            Some(_) => {}
            None => saw_null = true,
        }
    }
    Ok(if saw_null { Value::Null } else { Value::Bool(negated) })
}

fn eval_case(
    operand: Option<&Expr>,
    whens: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    row: &[Value],
) -> Result<Value, EvalError> {
    let operand = match operand {
        Some(o) => Some(eval_arg(o, row)?),
        None => None,
    };
    for (when, then) in whens {
        let w = eval_arg(when, row)?;
        let hit = match &operand {
            // Simple CASE: `operand = when`, where NULL never matches.
            Some(o) => sql_cmp(o, &w) == Some(std::cmp::Ordering::Equal),
            None => truth(&w, "CASE WHEN")? == Some(true),
        };
        if hit {
            return eval_expr(then, row);
        }
    }
    match otherwise {
        Some(e) => eval_expr(e, row),
        None => Ok(Value::Null),
    }
}

/// The i-th argument of a function call, evaluated.
fn arg<'a>(function: &'static str, args: &'a [Expr], i: usize, row: &'a [Value]) -> Result<Cow<'a, Value>, EvalError> {
    match args.get(i) {
        Some(e) => eval_arg(e, row),
        None => Err(EvalError::Function {
            function,
            reason: format!("missing argument {}", i + 1),
        }),
    }
}

/// The i-th argument when the call has one.
fn opt_arg<'a>(args: &'a [Expr], i: usize, row: &'a [Value]) -> Result<Option<Cow<'a, Value>>, EvalError> {
    match args.get(i) {
        Some(e) => eval_arg(e, row).map(Some),
        None => Ok(None),
    }
}

/// An argument of an unexpected runtime type. Planned expressions never
/// produce one; this keeps hand-built or future plans from panicking.
pub(crate) fn mismatch(function: &'static str, v: &Value) -> EvalError {
    EvalError::Function {
        function,
        reason: format!("unexpected argument of type {}", v.data_type()),
    }
}

/// Returns NULL from the enclosing function when the value is NULL, else
/// the typed payload (or a type-mismatch error).
macro_rules! get {
    ($f:expr, $v:expr, Str) => {
        match &*$v {
            $crate::types::Value::Str(s) => s.as_str(),
            $crate::types::Value::Null => return Ok($crate::types::Value::Null),
            other => return Err($crate::func::mismatch($f, other)),
        }
    };
    ($f:expr, $v:expr, Int) => {
        match &*$v {
            $crate::types::Value::Int(i) => *i,
            $crate::types::Value::Null => return Ok($crate::types::Value::Null),
            other => return Err($crate::func::mismatch($f, other)),
        }
    };
    ($f:expr, $v:expr, Ts) => {
        match &*$v {
            $crate::types::Value::Ts(t) => *t,
            $crate::types::Value::Null => return Ok($crate::types::Value::Null),
            other => return Err($crate::func::mismatch($f, other)),
        }
    };
    ($f:expr, $v:expr, F64) => {
        match &*$v {
            $crate::types::Value::Double(d) => *d,
            $crate::types::Value::Int(i) => *i as f64,
            $crate::types::Value::Null => return Ok($crate::types::Value::Null),
            other => return Err($crate::func::mismatch($f, other)),
        }
    };
}
pub(crate) use get;

fn eval_func(func: &ScalarFunc, args: &[Expr], row: &[Value]) -> Result<Value, EvalError> {
    use ScalarFunc as F;
    match func {
        F::Coalesce => {
            for a in args {
                let v = eval_expr(a, row)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Ok(Value::Null)
        }
        F::NullIf => {
            let a = arg("nullif", args, 0, row)?;
            let b = arg("nullif", args, 1, row)?;
            Ok(if sql_cmp(&a, &b) == Some(std::cmp::Ordering::Equal) {
                Value::Null
            } else {
                a.into_owned()
            })
        }
        F::Greatest | F::Least => {
            let want = if *func == F::Greatest {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            };
            let mut best: Option<Cow<'_, Value>> = None;
            for a in args {
                let v = eval_arg(a, row)?;
                if v.is_null() {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some(b) => sql_cmp(&v, b) == Some(want),
                };
                if better {
                    best = Some(v);
                }
            }
            Ok(best.map_or(Value::Null, Cow::into_owned))
        }
        F::Abs => math::abs(&*arg("abs", args, 0, row)?),
        F::Round => math::round(&*arg("round", args, 0, row)?, opt_arg(args, 1, row)?.as_deref()),
        F::Floor => math::floor_ceil(&*arg("floor", args, 0, row)?, false),
        F::Ceil => math::floor_ceil(&*arg("ceil", args, 0, row)?, true),
        F::Sign => math::sign(&*arg("sign", args, 0, row)?),
        F::Math(m) => math::unary(*m, &*arg("math", args, 0, row)?),
        F::Power => math::power(&*arg("power", args, 0, row)?, &*arg("power", args, 1, row)?),
        F::Lower => string::lower(&*arg("lower", args, 0, row)?),
        F::Upper => string::upper(&*arg("upper", args, 0, row)?),
        F::Length => string::length(&*arg("length", args, 0, row)?),
        F::Substring => string::substring(
            &*arg("substring", args, 0, row)?,
            &*arg("substring", args, 1, row)?,
            opt_arg(args, 2, row)?.as_deref(),
        ),
        F::Concat => string::concat(args, row),
        F::SplitPart => string::split_part(
            &*arg("split_part", args, 0, row)?,
            &*arg("split_part", args, 1, row)?,
            &*arg("split_part", args, 2, row)?,
        ),
        F::Trim(side) => string::trim(*side, &*arg("trim", args, 0, row)?, opt_arg(args, 1, row)?.as_deref()),
        F::Replace => string::replace(
            &*arg("replace", args, 0, row)?,
            &*arg("replace", args, 1, row)?,
            &*arg("replace", args, 2, row)?,
        ),
        F::StartsWith => string::affix(
            &*arg("starts_with", args, 0, row)?,
            &*arg("starts_with", args, 1, row)?,
            true,
        ),
        F::EndsWith => string::affix(
            &*arg("ends_with", args, 0, row)?,
            &*arg("ends_with", args, 1, row)?,
            false,
        ),
        F::StrPos => string::strpos(&*arg("strpos", args, 0, row)?, &*arg("strpos", args, 1, row)?),
        F::Left => string::left_right(&*arg("left", args, 0, row)?, &*arg("left", args, 1, row)?, true),
        F::Right => string::left_right(&*arg("right", args, 0, row)?, &*arg("right", args, 1, row)?, false),
        F::Reverse => string::reverse(&*arg("reverse", args, 0, row)?),
        F::RegexpMatch(p) => {
            let s = arg("regexp_match", args, 0, row)?;
            match p {
                Some(p) => string::regexp_match(&s, &p.0),
                None => {
                    let pat = arg("regexp_match", args, 1, row)?;
                    let pat = get!("regexp_match", pat, Str);
                    string::with_dynamic_regex("regexp_match", pat, |re| string::regexp_match(&s, re))?
                }
            }
        }
        F::RegexpExtract(p) => {
            let s = arg("regexp_extract", args, 0, row)?;
            let group = opt_arg(args, 2, row)?;
            match p {
                Some(p) => string::regexp_extract(&s, &p.0, group.as_deref()),
                None => {
                    let pat = arg("regexp_extract", args, 1, row)?;
                    let pat = get!("regexp_extract", pat, Str);
                    string::with_dynamic_regex("regexp_extract", pat, |re| {
                        string::regexp_extract(&s, re, group.as_deref())
                    })?
                }
            }
        }
        F::Extract(field) => datetime::extract(*field, &*arg("extract", args, 1, row)?),
        F::DateTrunc(unit) => {
            let ts = arg("date_trunc", args, 1, row)?;
            match unit {
                Some(u) => datetime::date_trunc(*u, &ts),
                None => {
                    let name = arg("date_trunc", args, 0, row)?;
                    let name = get!("date_trunc", name, Str);
                    let unit = datetime::trunc_unit(name).map_err(|e| EvalError::Function {
                        function: "date_trunc",
                        reason: e.to_string(),
                    })?;
                    datetime::date_trunc(unit, &ts)
                }
            }
        }
        F::DateFormat(format) => {
            let ts = arg("date_format", args, 0, row)?;
            match format {
                Some(f) => datetime::date_format(f, &ts),
                None => {
                    let fmt = arg("date_format", args, 1, row)?;
                    let fmt = get!("date_format", fmt, Str);
                    let f = DateFormat::parse(fmt).map_err(|e| EvalError::Function {
                        function: "date_format",
                        reason: e.to_string(),
                    })?;
                    datetime::date_format(&f, &ts)
                }
            }
        }
        F::TimestampAddMs => {
            let ts = arg("__ts_add_ms", args, 0, row)?;
            let ms = arg("__ts_add_ms", args, 1, row)?;
            let (ts, ms) = (get!("__ts_add_ms", ts, Ts), get!("__ts_add_ms", ms, Int));
            ts.checked_add(ms).map(Value::Ts).ok_or(EvalError::Overflow {
                operation: "timestamp + interval",
            })
        }
        F::TimestampDiffMs => {
            let a = arg("__ts_diff_ms", args, 0, row)?;
            let b = arg("__ts_diff_ms", args, 1, row)?;
            let (a, b) = (get!("__ts_diff_ms", a, Ts), get!("__ts_diff_ms", b, Ts));
            a.checked_sub(b).map(Value::Int).ok_or(EvalError::Overflow {
                operation: "timestamp - timestamp",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{BinaryOp, UnaryOp};
    use crate::types::DataType;

    fn lit(v: Value) -> Expr {
        Expr::Literal(v)
    }

    fn b(v: Option<bool>) -> Value {
        v.map_or(Value::Null, Value::Bool)
    }

    const TRI: [Option<bool>; 3] = [Some(true), Some(false), None];

    /// Reference Kleene tables, written out rather than derived.
    fn kleene_and(a: Option<bool>, c: Option<bool>) -> Option<bool> {
        match (a, c) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }

    fn kleene_or(a: Option<bool>, c: Option<bool>) -> Option<bool> {
        match (a, c) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }
    }

    #[test]
    fn kleene_truth_tables() {
        for x in TRI {
            for y in TRI {
                let and = Expr::And(vec![lit(b(x)), lit(b(y))]);
                let or = Expr::Or(vec![lit(b(x)), lit(b(y))]);
                assert_eq!(and.eval(&[]).unwrap(), b(kleene_and(x, y)), "{x:?} AND {y:?}");
                assert_eq!(or.eval(&[]).unwrap(), b(kleene_or(x, y)), "{x:?} OR {y:?}");
            }
            let not = Expr::Unary {
                op: UnaryOp::Not,
                arg: Box::new(lit(b(x))),
            };
            assert_eq!(not.eval(&[]).unwrap(), b(x.map(|v| !v)));
        }
    }

    #[test]
    fn short_circuit_stays_kleene() {
        // FALSE decides AND even after a NULL and before an error; an error
        // before the deciding term is reported.
        let div0 = Expr::Binary {
            op: BinaryOp::Eq,
            left: Box::new(Expr::Binary {
                op: BinaryOp::Div,
                left: Box::new(lit(Value::Int(1))),
                right: Box::new(lit(Value::Int(0))),
            }),
            right: Box::new(lit(Value::Int(1))),
        };
        let and = Expr::And(vec![lit(Value::Null), lit(Value::Bool(false)), div0.clone()]);
        assert_eq!(and.eval(&[]).unwrap(), Value::Bool(false));
        let or = Expr::Or(vec![lit(Value::Null), lit(Value::Bool(true)), div0.clone()]);
        assert_eq!(or.eval(&[]).unwrap(), Value::Bool(true));
        let and = Expr::And(vec![div0, lit(Value::Bool(false))]);
        assert_eq!(and.eval(&[]), Err(EvalError::DivisionByZero));
        let three = Expr::And(vec![lit(Value::Bool(true)), lit(Value::Null), lit(Value::Bool(true))]);
        assert_eq!(three.eval(&[]).unwrap(), Value::Null);
    }

    #[test]
    fn in_list_null_rules() {
        let list = |items: Vec<Value>, x: Value, negated| Expr::InList {
            arg: Box::new(lit(x)),
            list: items.into_iter().map(lit).collect(),
            negated,
        };
        let one_two_null = vec![Value::Int(1), Value::Int(2), Value::Null];
        assert_eq!(
            list(one_two_null.clone(), Value::Int(2), false).eval(&[]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            list(one_two_null.clone(), Value::Int(3), false).eval(&[]).unwrap(),
            Value::Null
        );
        assert_eq!(
            list(one_two_null.clone(), Value::Int(2), true).eval(&[]).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(list(one_two_null, Value::Int(3), true).eval(&[]).unwrap(), Value::Null);
        assert_eq!(
            list(vec![Value::Int(1)], Value::Int(3), false).eval(&[]).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            list(vec![Value::Int(1)], Value::Int(3), true).eval(&[]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            list(vec![Value::Int(1)], Value::Null, true).eval(&[]).unwrap(),
            Value::Null
        );
        assert_eq!(
            list(vec![Value::Double(1.0)], Value::Int(1), false).eval(&[]).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn case_searched_and_simple() {
        let row = [Value::Int(5), Value::Null];
        let gt = |n| Expr::Binary {
            op: BinaryOp::Gt,
            left: Box::new(Expr::col(0)),
            right: Box::new(lit(Value::Int(n))),
        };
        let searched = Expr::Case {
            operand: None,
            whens: vec![
                (lit(Value::Null), lit(Value::str("null"))),
                (gt(10), lit(Value::str("big"))),
                (gt(1), lit(Value::str("mid"))),
            ],
            otherwise: Some(Box::new(lit(Value::str("small")))),
        };
        assert_eq!(searched.eval(&row).unwrap(), Value::str("mid"));
        let simple = Expr::Case {
            operand: Some(Box::new(Expr::col(1))),
            whens: vec![(lit(Value::Null), lit(Value::Int(1)))],
            otherwise: None,
        };
        // NULL = NULL is not a match, and no ELSE gives NULL.
        assert_eq!(simple.eval(&row).unwrap(), Value::Null);
        let simple = Expr::Case {
            operand: Some(Box::new(Expr::col(0))),
            whens: vec![
                (lit(Value::Int(4)), lit(Value::Int(1))),
                (lit(Value::Double(5.0)), lit(Value::Int(2))),
            ],
            otherwise: None,
        };
        assert_eq!(simple.eval(&row).unwrap(), Value::Int(2));
    }

    #[test]
    fn is_null_and_cast_nodes() {
        let row = [Value::Null, Value::str(" 42 ")];
        let e = Expr::IsNull {
            arg: Box::new(Expr::col(0)),
            negated: false,
        };
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(true));
        let e = Expr::IsNull {
            arg: Box::new(Expr::col(1)),
            negated: true,
        };
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(true));
        let e = Expr::Cast {
            arg: Box::new(Expr::col(1)),
            to: DataType::Int,
        };
        assert_eq!(e.eval(&row).unwrap(), Value::Int(42));
        assert!(e.eval_predicate(&row).is_ok());
    }

    #[test]
    fn coalesce_is_lazy() {
        let err = Expr::Binary {
            op: BinaryOp::Div,
            left: Box::new(lit(Value::Int(1))),
            right: Box::new(lit(Value::Int(0))),
        };
        let e = Expr::Func {
            func: ScalarFunc::Coalesce,
            args: vec![lit(Value::Null), lit(Value::Int(7)), err],
        };
        assert_eq!(e.eval(&[]).unwrap(), Value::Int(7));
    }

    #[test]
    fn malformed_calls_are_errors_not_panics() {
        let e = Expr::Func {
            func: ScalarFunc::Substring,
            args: vec![lit(Value::str("x"))],
        };
        assert!(e.eval(&[]).is_err());
        let e = Expr::Func {
            func: ScalarFunc::Lower,
            args: vec![lit(Value::Int(1))],
        };
        assert!(e.eval(&[]).is_err());
        let e = Expr::And(vec![lit(Value::Int(1))]);
        assert!(e.eval(&[]).is_err());
    }
}
