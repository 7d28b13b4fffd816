//! Typing: the plan-time half of every operator and function.
//!
//! Implicit coercion is deliberately narrow (see the parent module): BIGINT
//! widens to DOUBLE, a NULL-typed argument fits any parameter, and a string
//! literal converts at plan time to the type it is used as (so a bad
//! timestamp literal is a plan error, not a NULL on every row). Casts of
//! literals are folded. Errors are `TypeError`s; the SQL layer adds the
//! statement and position.

use super::cast::{can_cast, cast_value};
use super::datetime::{trunc_unit, DateFormat, ExtractField};
use super::string::{check_group, compile_regex, default_group};
use super::{MathFunc, Pattern, ScalarFunc, TrimSide};
use crate::error::TypeError;
use crate::expr::{BinaryOp, Expr, UnaryOp};
use crate::types::{DataType, Value};

/// Why an argument could not take a type.
enum Refused {
    /// The types do not convert implicitly.
    Type,
    /// A string literal does not parse as the type (`TypeError::Literal`).
    Literal(TypeError),
}

fn str_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// `CAST(e AS to)`, folded when `e` is a literal that converts.
fn fold_cast(e: Expr, to: DataType) -> Expr {
    if let Expr::Literal(v) = &e {
        if let Ok(folded) = cast_value(v, to) {
            return Expr::Literal(folded);
        }
    }
    Expr::Cast { arg: Box::new(e), to }
}

/// Implicit coercion of one expression of type `from` to type `to`.
fn coerce(e: Expr, from: DataType, to: DataType) -> Result<Expr, Refused> {
    if from == to || from == DataType::Null {
        // An expression of type NULL evaluates to NULL, which is a value of
        // every type: nothing to convert.
        return Ok(e);
    }
    if let Some(s) = str_literal(&e) {
        if to != DataType::Null {
            return cast_value(&Value::str(s), to).map(Expr::Literal).map_err(|_| {
                Refused::Literal(TypeError::Literal {
                    text: s.to_string(),
                    to,
                })
            });
        }
    }
    match (from, to) {
        (DataType::Int, DataType::Double) => Ok(fold_cast(e, DataType::Double)),
        _ => Err(Refused::Type),
    }
}

/// Coerces expressions to one common type, for arguments that must agree
/// (COALESCE, IN lists, CASE branches, comparison operands). The common
/// type comes from the operands that are neither NULL nor string literals;
/// BIGINT and DOUBLE meet at DOUBLE. `context` names the construct in the
/// error, e.g. "coalesce" or "CASE".
pub fn unify(args: Vec<(Expr, DataType)>, context: &str) -> Result<(Vec<Expr>, DataType), TypeError> {
    unify_with(args, |left, right| TypeError::Mix {
        context: context.to_string(),
        left,
        right,
    })
}

fn unify_with(
    args: Vec<(Expr, DataType)>,
    mismatch: impl Fn(DataType, DataType) -> TypeError,
) -> Result<(Vec<Expr>, DataType), TypeError> {
    let mut target: Option<DataType> = None;
    for (e, t) in &args {
        if *t == DataType::Null || (*t == DataType::Str && str_literal(e).is_some()) {
            continue;
        }
        target = Some(match target {
            None => *t,
            Some(cur) if cur == *t => cur,
            Some(DataType::Int) if *t == DataType::Double => DataType::Double,
            Some(DataType::Double) if *t == DataType::Int => DataType::Double,
            Some(cur) => return Err(mismatch(cur, *t)),
        });
    }
    let target = target.unwrap_or_else(|| {
        if args.iter().any(|(_, t)| *t == DataType::Str) {
            DataType::Str
        } else {
            DataType::Null
        }
    });
    let exprs = args
        .into_iter()
        .map(|(e, from)| {
            coerce(e, from, target).map_err(|r| match r {
                Refused::Type => mismatch(target, from),
                Refused::Literal(m) => m,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((exprs, target))
}

fn binary(op: BinaryOp, l: Expr, r: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(l),
        right: Box::new(r),
    }
}

/// Types a binary operation: arithmetic needs numbers (BIGINT op BIGINT is
/// BIGINT, anything with DOUBLE is DOUBLE, mixed operands are converted by
/// the operator itself); comparisons need comparable operands and give
/// BOOLEAN; `||` accepts anything and gives VARCHAR.
pub fn plan_binary(
    op: BinaryOp,
    left: (Expr, DataType),
    right: (Expr, DataType),
) -> Result<(Expr, DataType), TypeError> {
    let (lt, rt) = (left.1, right.1);
    let sym = op.symbol();
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
            if !lt.is_numeric() || !rt.is_numeric() {
                return Err(TypeError::Arithmetic {
                    op: sym,
                    left: lt,
                    right: rt,
                });
            }
            let ty = if lt == DataType::Double || rt == DataType::Double {
                DataType::Double
            } else {
                DataType::Int
            };
            Ok((binary(op, left.0, right.0), ty))
        }
        BinaryOp::Eq | BinaryOp::NotEq | BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq => {
            // BIGINT against DOUBLE is compared exactly by the operator; a
            // cast to DOUBLE would round large integers.
            let numeric_mix = matches!(
                (lt, rt),
                (DataType::Int, DataType::Double) | (DataType::Double, DataType::Int)
            );
            let (l, r) = if numeric_mix {
                (left.0, right.0)
            } else {
                let (mut v, _) = unify_with(vec![left, right], |_, _| TypeError::Compare { left: lt, right: rt })?;
                let r = v.pop().expect("two operands");
                let l = v.pop().expect("two operands");
                (l, r)
            };
            Ok((binary(op, l, r), DataType::Bool))
        }
        BinaryOp::Concat => {
            let text = |(e, t): (Expr, DataType)| match t {
                DataType::Str | DataType::Null => e,
                _ => fold_cast(e, DataType::Str),
            };
            Ok((binary(op, text(left), text(right)), DataType::Str))
        }
    }
}

/// Types `-x` (numbers) and `NOT x` (booleans).
pub fn plan_unary(op: UnaryOp, arg: (Expr, DataType)) -> Result<(Expr, DataType), TypeError> {
    let (e, t) = arg;
    let ty = match (op, t) {
        (UnaryOp::Neg, DataType::Int | DataType::Null) => DataType::Int,
        (UnaryOp::Neg, DataType::Double) => DataType::Double,
        (UnaryOp::Not, DataType::Bool | DataType::Null) => DataType::Bool,
        (UnaryOp::Neg, _) => return Err(TypeError::Negate(t)),
        (UnaryOp::Not, _) => return Err(TypeError::Not(t)),
    };
    // Fold negative literals so `-5` is a constant, not an operation.
    if let (UnaryOp::Neg, Expr::Literal(Value::Int(i))) = (op, &e) {
        if let Some(n) = i.checked_neg() {
            return Ok((Expr::Literal(Value::Int(n)), ty));
        }
    }
    if let (UnaryOp::Neg, Expr::Literal(Value::Double(d))) = (op, &e) {
        return Ok((Expr::Literal(Value::Double(-d)), ty));
    }
    Ok((Expr::Unary { op, arg: Box::new(e) }, ty))
}

/// Types `CAST(arg AS to)`; a literal is converted now, and one that does
/// not convert is a plan error.
pub fn plan_cast(arg: (Expr, DataType), to: DataType) -> Result<(Expr, DataType), TypeError> {
    let (e, from) = arg;
    if !can_cast(from, to) {
        return Err(TypeError::Cast { from, to });
    }
    if from == to {
        return Ok((e, to));
    }
    if let Expr::Literal(v) = &e {
        return match cast_value(v, to) {
            Ok(folded) => Ok((Expr::Literal(folded), to)),
            Err(err) => Err(TypeError::CastLiteral(err)),
        };
    }
    Ok((Expr::Cast { arg: Box::new(e), to }, to))
}

/// A call being planned: its lower-case name and typed arguments.
struct Call {
    name: String,
    args: Vec<(Expr, DataType)>,
}

fn signature(params: &[DataType], required: usize) -> String {
    let mut s = String::from("(");
    for (i, p) in params.iter().enumerate() {
        if i >= required {
            s.push('[');
        }
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(p.sql_name());
    }
    s.push_str(&"]".repeat(params.len().saturating_sub(required)));
    s.push(')');
    s
}

impl Call {
    fn error(&self, expected: &str) -> TypeError {
        TypeError::Arguments {
            function: self.name.clone(),
            expected: expected.to_string(),
            got: self.args.iter().map(|(_, t)| *t).collect(),
        }
    }

    /// Checks arity and coerces each argument to its parameter type; the
    /// parameters after the first `required` are optional.
    fn typed(self, params: &[DataType], required: usize) -> Result<Vec<Expr>, TypeError> {
        let expected = signature(params, required);
        if self.args.len() < required || self.args.len() > params.len() {
            return Err(self.error(&expected));
        }
        let type_error = self.error(&expected);
        self.args
            .into_iter()
            .zip(params)
            .map(|((e, from), to)| {
                coerce(e, from, *to).map_err(|r| match r {
                    Refused::Type => type_error.clone(),
                    Refused::Literal(m) => m,
                })
            })
            .collect()
    }

    /// At least `min` arguments, coerced to a common type.
    fn unified(self, min: usize) -> Result<(Vec<Expr>, DataType), TypeError> {
        if self.args.len() < min {
            return Err(self.error(&format!("at least {min} argument{}", if min == 1 { "" } else { "s" })));
        }
        let name = self.name;
        unify(self.args, &name)
    }

    /// One numeric argument (plus optional typed ones); returns the
    /// expressions and the first argument's type (BIGINT for NULL).
    fn numeric_first(mut self, rest: &[DataType], expected: &str) -> Result<(Vec<Expr>, DataType), TypeError> {
        if self.args.is_empty() || self.args.len() > 1 + rest.len() {
            return Err(self.error(expected));
        }
        let ty = match self.args[0].1 {
            DataType::Int | DataType::Null => DataType::Int,
            DataType::Double => DataType::Double,
            _ => return Err(self.error(expected)),
        };
        let error = self.error(expected);
        let tail = self.args.split_off(1);
        let mut exprs = vec![self.args.remove(0).0];
        for ((e, from), to) in tail.into_iter().zip(rest) {
            exprs.push(coerce(e, from, *to).map_err(|r| match r {
                Refused::Type => error.clone(),
                Refused::Literal(m) => m,
            })?);
        }
        Ok((exprs, ty))
    }
}

fn func(f: ScalarFunc, args: Vec<Expr>, ty: DataType) -> Result<(Expr, DataType), TypeError> {
    Ok((Expr::Func { func: f, args }, ty))
}

/// Compiles argument `i` when it is a string literal.
fn literal_regex(name: &str, args: &[Expr], i: usize) -> Result<Option<Pattern>, TypeError> {
    match args.get(i).and_then(str_literal) {
        Some(p) => compile_regex(p)
            .map(|re| Some(Pattern(re)))
            .map_err(|error| TypeError::Regex {
                function: name.to_string(),
                pattern: p.to_string(),
                error,
            }),
        None => Ok(None),
    }
}

/// Type-checks and builds a function call. `name` is matched
/// case-insensitively; `args` are planned arguments with their types.
pub fn plan_function(name: &str, args: Vec<(Expr, DataType)>) -> Result<(Expr, DataType), TypeError> {
    use DataType::{Bool, Double, Int, Str, Ts};
    use ScalarFunc as F;
    let lower = name.to_ascii_lowercase();
    let call = Call {
        name: lower.clone(),
        args,
    };
    const NUMBER: &str = "(BIGINT or DOUBLE)";
    match lower.as_str() {
        "now" | "current_timestamp" | "current_date" | "current_time" | "localtimestamp" | "localtime" | "sysdate"
        | "proctime" | "unix_timestamp" => Err(TypeError::ProcessingTime { function: lower }),
        "random" | "rand" | "uuid" | "gen_random_uuid" => Err(TypeError::Nondeterministic { function: lower }),
        "coalesce" => {
            let (mut args, ty) = call.unified(1)?;
            if args.len() == 1 {
                return Ok((args.remove(0), ty));
            }
            func(F::Coalesce, args, ty)
        }
        "nullif" => {
            if call.args.len() != 2 {
                return Err(call.error("(value, value)"));
            }
            let (args, ty) = call.unified(2)?;
            func(F::NullIf, args, ty)
        }
        "greatest" | "least" => {
            let f = if lower == "greatest" { F::Greatest } else { F::Least };
            let (args, ty) = call.unified(1)?;
            func(f, args, ty)
        }
        "abs" | "floor" | "ceil" | "ceiling" | "sign" => {
            let f = match lower.as_str() {
                "abs" => F::Abs,
                "floor" => F::Floor,
                "sign" => F::Sign,
                _ => F::Ceil,
            };
            let (args, ty) = call.numeric_first(&[], NUMBER)?;
            func(f, args, ty)
        }
        "round" => {
            let (args, ty) = call.numeric_first(&[Int], "(BIGINT or DOUBLE[, BIGINT])")?;
            func(F::Round, args, ty)
        }
        "mod" => {
            if call.args.len() != 2 {
                return Err(call.error("(BIGINT or DOUBLE, BIGINT or DOUBLE)"));
            }
            let error = call.error("(BIGINT or DOUBLE, BIGINT or DOUBLE)");
            let mut it = call.args.into_iter();
            match (it.next(), it.next()) {
                (Some(a), Some(b)) => plan_binary(BinaryOp::Mod, a, b).map_err(|_| error),
                _ => Err(error),
            }
        }
        "sqrt" | "exp" | "ln" | "log" | "log10" => {
            let m = match lower.as_str() {
                "sqrt" => MathFunc::Sqrt,
                "exp" => MathFunc::Exp,
                "ln" => MathFunc::Ln,
                _ => MathFunc::Log10,
            };
            func(F::Math(m), call.typed(&[Double], 1)?, Double)
        }
        "power" | "pow" => func(F::Power, call.typed(&[Double, Double], 2)?, Double),
        "lower" => func(F::Lower, call.typed(&[Str], 1)?, Str),
        "upper" => func(F::Upper, call.typed(&[Str], 1)?, Str),
        "length" | "char_length" | "character_length" => func(F::Length, call.typed(&[Str], 1)?, Int),
        "reverse" => func(F::Reverse, call.typed(&[Str], 1)?, Str),
        "substring" | "substr" => func(F::Substring, call.typed(&[Str, Int, Int], 2)?, Str),
        "concat" => {
            if call.args.is_empty() {
                return Err(call.error("at least 1 argument"));
            }
            // Any type: values are turned into text at evaluation, NULLs
            // are skipped.
            func(F::Concat, call.args.into_iter().map(|(e, _)| e).collect(), Str)
        }
        "split_part" => func(F::SplitPart, call.typed(&[Str, Str, Int], 3)?, Str),
        "trim" | "btrim" => func(F::Trim(TrimSide::Both), call.typed(&[Str, Str], 1)?, Str),
        "ltrim" => func(F::Trim(TrimSide::Leading), call.typed(&[Str, Str], 1)?, Str),
        "rtrim" => func(F::Trim(TrimSide::Trailing), call.typed(&[Str, Str], 1)?, Str),
        "replace" => func(F::Replace, call.typed(&[Str, Str, Str], 3)?, Str),
        "starts_with" => func(F::StartsWith, call.typed(&[Str, Str], 2)?, Bool),
        "ends_with" => func(F::EndsWith, call.typed(&[Str, Str], 2)?, Bool),
        "strpos" => func(F::StrPos, call.typed(&[Str, Str], 2)?, Int),
        "position" => {
            // position(sub, s), the order of `POSITION(sub IN s)`.
            let mut args = call.typed(&[Str, Str], 2)?;
            args.swap(0, 1);
            func(F::StrPos, args, Int)
        }
        "left" => func(F::Left, call.typed(&[Str, Int], 2)?, Str),
        "right" => func(F::Right, call.typed(&[Str, Int], 2)?, Str),
        "regexp_match" | "regexp_like" => {
            let args = call.typed(&[Str, Str], 2)?;
            let pattern = literal_regex(&lower, &args, 1)?;
            func(F::RegexpMatch(pattern), args, Bool)
        }
        "regexp_extract" => {
            let args = call.typed(&[Str, Str, Int], 2)?;
            let pattern = literal_regex(&lower, &args, 1)?;
            if let Some(p) = &pattern {
                let group = args.get(2).map_or(Some(default_group(&p.0)), int_literal);
                if let Some(g) = group {
                    check_group(&p.0, g).map_err(|error| TypeError::Group {
                        function: lower.clone(),
                        error,
                    })?;
                }
            }
            func(F::RegexpExtract(pattern), args, Str)
        }
        "extract" | "date_part" => {
            if call.args.len() != 2 {
                return Err(call.error("(field, TIMESTAMP)"));
            }
            let field_name = str_literal(&call.args[0].0).ok_or_else(|| TypeError::FieldNotLiteral {
                function: lower.clone(),
            })?;
            let field = ExtractField::parse(field_name).ok_or_else(|| TypeError::ExtractField {
                field: field_name.to_string(),
            })?;
            let args = call.typed(&[Str, Ts], 2)?;
            func(F::Extract(field), args, if field.is_double() { Double } else { Int })
        }
        "date_trunc" => {
            let args = call.typed(&[Str, Ts], 2)?;
            let unit = match str_literal(&args[0]) {
                Some(u) => Some(trunc_unit(u)?),
                None => None,
            };
            func(F::DateTrunc(unit), args, Ts)
        }
        "date_format" => {
            let args = call.typed(&[Ts, Str], 2)?;
            let format = match str_literal(&args[1]) {
                Some(f) => Some(DateFormat::parse(f)?),
                None => None,
            };
            func(F::DateFormat(format), args, Str)
        }
        "__ts_add_ms" => func(F::TimestampAddMs, call.typed(&[Ts, Int], 2)?, Ts),
        "__ts_diff_ms" => func(F::TimestampDiffMs, call.typed(&[Ts, Ts], 2)?, Int),
        _ => Err(TypeError::UnknownFunction { name: name.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EvalError;

    /// Every kind of typing error, as users read it: the texts must not
    /// drift.
    fn type_error_messages() -> Vec<String> {
        use DataType::{Bool, Double, Int, Str, Ts};
        fn e<E: std::fmt::Display>(r: Result<(Expr, DataType), E>) -> String {
            match r {
                Ok(_) => panic!("planned"),
                Err(e) => e.to_string(),
            }
        }
        vec![
            e(plan_binary(BinaryOp::Lt, col(0, Ts), lit(s("yesterday")))),
            e(plan_function("coalesce", vec![col(0, Int), col(1, Str)])),
            e(plan_binary(BinaryOp::Eq, col(0, Int), col(1, Bool))),
            e(plan_binary(BinaryOp::Add, col(0, Ts), col(1, Int))),
            e(plan_binary(BinaryOp::Mul, col(0, Str), col(1, Double))),
            e(plan_unary(UnaryOp::Neg, col(0, Str))),
            e(plan_unary(UnaryOp::Not, col(0, Int))),
            e(plan_cast(col(0, Bool), Ts)),
            e(plan_cast(lit(s("x1")), Int)),
            e(plan_function("substr", vec![col(0, Int), col(1, Str), col(2, Ts)])),
            e(plan_function("Now", vec![])),
            e(plan_function("uuid", vec![])),
            e(plan_function("regexp_like", vec![col(0, Str), lit(s("(a"))])),
            e(plan_function(
                "regexp_extract",
                vec![col(0, Str), lit(s("(a)")), lit(Value::Int(2))],
            )),
            e(plan_function("date_part", vec![col(1, Str), col(0, Ts)])),
            e(plan_function("extract", vec![lit(s("fortnight")), col(0, Ts)])),
            e(plan_function("date_trunc", vec![lit(s("eon")), col(0, Ts)])),
            e(plan_function("date_format", vec![col(0, Ts), lit(s("%Q"))])),
            e(plan_function("Frobnicate", vec![])),
            e(plan_function("mod", vec![lit(s("a")), lit(Value::Int(1))])),
            e(plan_function("concat", vec![])),
            e(plan_function("greatest", vec![])),
        ]
    }

    #[test]
    fn type_error_texts() {
        let want = [
            "cannot convert 'yesterday' to TIMESTAMP",
            "coalesce: cannot mix BIGINT and VARCHAR",
            "cannot compare BIGINT with BOOLEAN",
            "cannot apply + to TIMESTAMP and BIGINT (add or subtract an INTERVAL to shift a TIMESTAMP)",
            "cannot apply * to VARCHAR and DOUBLE",
            "cannot negate VARCHAR",
            "NOT expects BOOLEAN, got BIGINT",
            "cannot cast BOOLEAN to TIMESTAMP",
            "cannot cast \"x1\" to BIGINT",
            "substr expects (VARCHAR, BIGINT[, BIGINT]), got (BIGINT, VARCHAR, TIMESTAMP)",
            "now() is not allowed: results must not depend on processing time",
            "uuid() is not allowed: results must be the same on every run",
            "regexp_like: invalid regex \"(a\": regex parse error:\n    (a\n    ^\nerror: unclosed group",
            "regexp_extract: group 2 does not exist in pattern \"(a)\" (it has 1 capture groups)",
            "date_part: the field must be a literal such as 'hour'",
            "unknown EXTRACT field 'fortnight' (expected YEAR, ISOYEAR, QUARTER, MONTH, WEEK, DAY, DOW, ISODOW, DOY, HOUR, MINUTE, SECOND, MILLISECOND, MICROSECOND or EPOCH)",
            "unknown date_trunc unit \"eon\" (expected millisecond, second, minute, hour, day, week, month, quarter or year)",
            "date_format: unsupported date format specifier %Q in \"%Q\"",
            "unknown function: Frobnicate",
            "mod expects (BIGINT or DOUBLE, BIGINT or DOUBLE), got (VARCHAR, BIGINT)",
            "concat expects at least 1 argument, got ()",
            "greatest expects at least 1 argument, got ()",
        ];
        assert_eq!(type_error_messages(), want);
    }

    fn col(i: usize, t: DataType) -> (Expr, DataType) {
        (Expr::col(i), t)
    }

    fn lit(v: Value) -> (Expr, DataType) {
        let t = v.data_type();
        (Expr::lit(v), t)
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    /// Plans `name(args)` and evaluates it against `row`.
    fn call(name: &str, args: Vec<(Expr, DataType)>, row: &[Value]) -> Result<Value, EvalError> {
        let (e, _) = plan_function(name, args).unwrap();
        e.eval(row)
    }

    fn call_lits(name: &str, args: Vec<Value>) -> Value {
        call(name, args.into_iter().map(lit).collect(), &[]).unwrap()
    }

    #[test]
    fn signature_text() {
        assert_eq!(signature(&[DataType::Double, DataType::Int], 1), "(DOUBLE[, BIGINT])");
        assert_eq!(
            signature(&[DataType::Str, DataType::Int, DataType::Int], 2),
            "(VARCHAR, BIGINT[, BIGINT])"
        );
        assert_eq!(signature(&[DataType::Str], 1), "(VARCHAR)");
    }

    #[test]
    fn plan_errors_are_clear() {
        let err = plan_function("ROUND", vec![lit(s("x"))]).unwrap_err().to_string();
        assert_eq!(err, "round expects (BIGINT or DOUBLE[, BIGINT]), got (VARCHAR)");
        assert_eq!(
            plan_function("foo", vec![]).unwrap_err().to_string(),
            "unknown function: foo"
        );
        let err = plan_function("NOW", vec![]).unwrap_err().to_string();
        assert_eq!(err, "now() is not allowed: results must not depend on processing time");
        assert!(plan_function("current_timestamp", vec![]).is_err());
        assert_eq!(
            plan_function("lower", vec![lit(Value::Int(1))])
                .unwrap_err()
                .to_string(),
            "lower expects (VARCHAR), got (BIGINT)"
        );
        assert!(plan_function("lower", vec![]).is_err());
        assert!(plan_function("lower", vec![lit(s("a")), lit(s("b"))]).is_err());
        assert!(plan_function("substring", vec![lit(s("a"))]).is_err());
        assert!(plan_function("coalesce", vec![]).is_err());
        let err = plan_function("coalesce", vec![col(0, DataType::Int), col(1, DataType::Str)])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "coalesce: cannot mix BIGINT and VARCHAR");
        let err = plan_function("regexp_match", vec![col(0, DataType::Str), lit(s("(a"))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"(a\""), "{err}");
        let err = plan_function(
            "regexp_extract",
            vec![col(0, DataType::Str), lit(s("(a)")), lit(Value::Int(2))],
        );
        assert!(err.unwrap_err().to_string().contains("group 2"));
        let err = plan_function("extract", vec![lit(s("fortnight")), col(0, DataType::Ts)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown EXTRACT field 'fortnight'"), "{err}");
        assert!(plan_function("extract", vec![col(1, DataType::Str), col(0, DataType::Ts)]).is_err());
        assert!(plan_function("date_trunc", vec![lit(s("eon")), col(0, DataType::Ts)]).is_err());
        assert!(plan_function("date_format", vec![col(0, DataType::Ts), lit(s("%Q"))]).is_err());
        assert!(plan_function("date_trunc", vec![lit(s("day")), lit(s("not a time"))])
            .unwrap_err()
            .to_string()
            .contains("not a time"));
        assert!(plan_function("mod", vec![lit(s("a")), lit(Value::Int(1))])
            .unwrap_err()
            .to_string()
            .starts_with("mod expects"));
    }

    #[test]
    fn coercion_inserts_casts_and_folds_literals() {
        let (e, t) = plan_function("sqrt", vec![col(0, DataType::Int)]).unwrap();
        assert_eq!(t, DataType::Double);
        assert_eq!(
            e,
            Expr::Func {
                func: ScalarFunc::Math(MathFunc::Sqrt),
                args: vec![Expr::Cast {
                    arg: Box::new(Expr::col(0)),
                    to: DataType::Double
                }]
            }
        );
        let (e, _) = plan_function("sqrt", vec![lit(Value::Int(4))]).unwrap();
        assert_eq!(e.eval(&[]).unwrap(), Value::Double(2.0));
        let (e, t) = plan_function("coalesce", vec![col(0, DataType::Int), lit(Value::Double(0.5))]).unwrap();
        assert_eq!(t, DataType::Double);
        assert_eq!(e.eval(&[Value::Int(3)]).unwrap(), Value::Double(3.0));
        let (e, t) = plan_function("coalesce", vec![col(0, DataType::Ts), lit(s("1970-01-01 00:00:01"))]).unwrap();
        assert_eq!(t, DataType::Ts);
        assert_eq!(e.eval(&[Value::Null]).unwrap(), Value::Ts(1000));
        let (e, t) = plan_function("coalesce", vec![col(0, DataType::Int)]).unwrap();
        assert_eq!((e, t), (Expr::col(0), DataType::Int));
        let (_, t) = plan_function("round", vec![lit(Value::Null)]).unwrap();
        assert_eq!(t, DataType::Int);
    }

    #[test]
    fn binary_typing() {
        let int = || col(0, DataType::Int);
        let dbl = || col(1, DataType::Double);
        let ts = || col(2, DataType::Ts);
        let row = [Value::Int(3), Value::Double(0.5), Value::Ts(1000), Value::str("x")];
        let (e, t) = plan_binary(BinaryOp::Add, int(), dbl()).unwrap();
        assert_eq!((e.eval(&row).unwrap(), t), (Value::Double(3.5), DataType::Double));
        let (e, t) = plan_binary(BinaryOp::Div, int(), lit(Value::Int(2))).unwrap();
        assert_eq!((e.eval(&row).unwrap(), t), (Value::Int(1), DataType::Int));
        let (_, t) = plan_binary(BinaryOp::Add, int(), lit(Value::Null)).unwrap();
        assert_eq!(t, DataType::Int);
        assert!(plan_binary(BinaryOp::Add, ts(), int())
            .unwrap_err()
            .to_string()
            .contains("INTERVAL"));
        assert!(plan_binary(BinaryOp::Mul, col(3, DataType::Str), int()).is_err());
        // TIMESTAMP against a string literal: converted at plan time.
        let (e, t) = plan_binary(BinaryOp::GtEq, ts(), lit(s("1970-01-01 00:00:01"))).unwrap();
        assert_eq!(t, DataType::Bool);
        assert_eq!(e, binary(BinaryOp::GtEq, Expr::col(2), Expr::lit(Value::Ts(1000))));
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(true));
        let err = plan_binary(BinaryOp::Lt, ts(), lit(s("yesterday")))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "cannot convert 'yesterday' to TIMESTAMP");
        let (e, _) = plan_binary(BinaryOp::Eq, lit(s("3")), int()).unwrap();
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(true));
        assert_eq!(
            plan_binary(BinaryOp::Eq, int(), col(3, DataType::Str))
                .unwrap_err()
                .to_string(),
            "cannot compare BIGINT with VARCHAR"
        );
        assert!(plan_binary(BinaryOp::Eq, ts(), int()).is_err());
        let (e, _) = plan_binary(BinaryOp::Lt, int(), dbl()).unwrap();
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(false));
        let (e, _) = plan_binary(BinaryOp::Eq, lit(Value::Null), int()).unwrap();
        assert_eq!(e.eval(&row).unwrap(), Value::Null);
        let (e, t) = plan_binary(BinaryOp::Concat, col(3, DataType::Str), ts()).unwrap();
        assert_eq!(
            (e.eval(&row).unwrap(), t),
            (s("x1970-01-01 00:00:01.000"), DataType::Str)
        );
        let (e, _) = plan_binary(BinaryOp::Concat, col(3, DataType::Str), lit(Value::Null)).unwrap();
        assert_eq!(e.eval(&row).unwrap(), Value::Null);
    }

    #[test]
    fn unary_and_cast_typing() {
        assert_eq!(
            plan_unary(UnaryOp::Neg, lit(Value::Int(5))).unwrap(),
            (Expr::lit(Value::Int(-5)), DataType::Int)
        );
        let (e, _) = plan_unary(UnaryOp::Neg, lit(Value::Int(i64::MIN))).unwrap();
        assert!(e.eval(&[]).is_err());
        assert!(plan_unary(UnaryOp::Neg, lit(s("a"))).is_err());
        assert!(plan_unary(UnaryOp::Not, lit(Value::Int(1))).is_err());
        assert_eq!(
            plan_unary(UnaryOp::Not, col(0, DataType::Bool)).unwrap().1,
            DataType::Bool
        );
        assert_eq!(
            plan_cast(lit(s("42")), DataType::Int).unwrap(),
            (Expr::lit(Value::Int(42)), DataType::Int)
        );
        assert!(plan_cast(lit(s("4x2")), DataType::Int).is_err());
        assert!(plan_cast(col(0, DataType::Ts), DataType::Double).is_err());
        let (e, t) = plan_cast(col(0, DataType::Double), DataType::Int).unwrap();
        assert_eq!(t, DataType::Int);
        assert_eq!(e.eval(&[Value::Double(2.7)]).unwrap(), Value::Int(3));
    }

    #[test]
    fn unify_for_in_lists_and_case() {
        let (exprs, t) = unify(
            vec![col(0, DataType::Int), lit(Value::Double(1.5)), lit(Value::Null)],
            "IN",
        )
        .unwrap();
        assert_eq!(t, DataType::Double);
        assert_eq!(
            exprs[0],
            Expr::Cast {
                arg: Box::new(Expr::col(0)),
                to: DataType::Double
            }
        );
        let (_, t) = unify(vec![lit(s("a")), lit(Value::Null)], "CASE").unwrap();
        assert_eq!(t, DataType::Str);
        let (_, t) = unify(vec![lit(Value::Null)], "CASE").unwrap();
        assert_eq!(t, DataType::Null);
        assert_eq!(
            unify(vec![lit(Value::Bool(true)), lit(Value::Int(1))], "CASE")
                .unwrap_err()
                .to_string(),
            "CASE: cannot mix BOOLEAN and BIGINT"
        );
    }

    #[test]
    fn functions_end_to_end() {
        let i = Value::Int;
        assert_eq!(call_lits("COALESCE", vec![Value::Null, i(2), i(3)]), i(2));
        assert_eq!(call_lits("coalesce", vec![Value::Null, Value::Null]), Value::Null);
        assert_eq!(call_lits("nullif", vec![i(2), i(2)]), Value::Null);
        assert_eq!(call_lits("nullif", vec![i(2), i(3)]), i(2));
        assert_eq!(call_lits("nullif", vec![i(2), Value::Null]), i(2));
        assert_eq!(
            call_lits("greatest", vec![i(2), Value::Null, Value::Double(2.5)]),
            Value::Double(2.5)
        );
        assert_eq!(call_lits("least", vec![i(2), Value::Null, i(-1)]), i(-1));
        assert_eq!(call_lits("least", vec![Value::Null]), Value::Null);
        assert_eq!(call_lits("abs", vec![i(-2)]), i(2));
        assert_eq!(call_lits("mod", vec![i(-7), i(3)]), i(-1));
        assert_eq!(call_lits("MOD", vec![Value::Double(7.5), i(2)]), Value::Double(1.5));
        assert!(call("mod", vec![lit(i(1)), lit(i(0))], &[]).is_err());
        assert_eq!(call_lits("round", vec![Value::Double(2.5)]), Value::Double(3.0));
        assert_eq!(
            call_lits("round", vec![Value::Double(2.345), i(2)]),
            Value::Double(2.35)
        );
        assert_eq!(call_lits("round", vec![i(2345), i(-2)]), i(2300));
        assert_eq!(call_lits("floor", vec![Value::Double(-0.5)]), Value::Double(-1.0));
        assert_eq!(call_lits("ceiling", vec![Value::Double(-0.5)]), Value::Double(-0.0));
        assert_eq!(call_lits("power", vec![i(2), i(3)]), Value::Double(8.0));
        assert_eq!(call_lits("sign", vec![i(-9)]), i(-1));
        assert_eq!(call_lits("UPPER", vec![s("abc")]), s("ABC"));
        assert_eq!(call_lits("lower", vec![Value::Null]), Value::Null);
        assert_eq!(call_lits("char_length", vec![s("día")]), i(3));
        assert_eq!(call_lits("substr", vec![s("hello"), i(0), i(3)]), s("he"));
        assert_eq!(
            call_lits("concat", vec![s("a"), Value::Null, i(1), Value::Double(0.5)]),
            s("a10.5")
        );
        assert_eq!(call_lits("split_part", vec![s("a|b"), s("|"), i(2)]), s("b"));
        assert_eq!(call_lits("btrim", vec![s("xax"), s("x")]), s("a"));
        assert_eq!(call_lits("ltrim", vec![s("  a")]), s("a"));
        assert_eq!(call_lits("rtrim", vec![s("a  ")]), s("a"));
        assert_eq!(call_lits("replace", vec![s("aaa"), s("a"), s("b")]), s("bbb"));
        assert_eq!(call_lits("starts_with", vec![s("abc"), s("ab")]), Value::Bool(true));
        assert_eq!(call_lits("ends_with", vec![s("abc"), s("ab")]), Value::Bool(false));
        assert_eq!(call_lits("strpos", vec![s("abc"), s("c")]), i(3));
        assert_eq!(call_lits("position", vec![s("c"), s("abc")]), i(3));
        assert_eq!(call_lits("left", vec![s("abc"), i(1)]), s("a"));
        assert_eq!(call_lits("right", vec![s("abc"), i(1)]), s("c"));
        assert_eq!(call_lits("reverse", vec![s("abc")]), s("cba"));
        assert_eq!(
            call_lits("__ts_add_ms", vec![Value::Ts(1000), i(-1500)]),
            Value::Ts(-500)
        );
        assert!(call("__ts_add_ms", vec![lit(Value::Ts(i64::MAX)), lit(i(1))], &[]).is_err());
        assert_eq!(
            call_lits("__ts_diff_ms", vec![Value::Ts(1000), Value::Ts(1500)]),
            i(-500)
        );
        assert!(call("__ts_diff_ms", vec![lit(Value::Ts(i64::MIN)), lit(Value::Ts(1))], &[]).is_err());
    }

    #[test]
    fn regexes_literal_and_computed() {
        let row = [s("order-1234-x"), s(r"(\d+)"), s("[")];
        let (e, t) = plan_function("regexp_extract", vec![col(0, DataType::Str), lit(s(r"-(\d+)-"))]).unwrap();
        assert_eq!(t, DataType::Str);
        assert!(matches!(
            &e,
            Expr::Func {
                func: ScalarFunc::RegexpExtract(Some(_)),
                ..
            }
        ));
        assert_eq!(e.eval(&row).unwrap(), s("1234"));
        assert_eq!(
            call(
                "regexp_extract",
                vec![col(0, DataType::Str), col(1, DataType::Str)],
                &row
            )
            .unwrap(),
            s("1234")
        );
        assert_eq!(
            call(
                "regexp_extract",
                vec![col(0, DataType::Str), col(1, DataType::Str), lit(Value::Int(0))],
                &row
            )
            .unwrap(),
            s("1234")
        );
        assert!(call(
            "regexp_extract",
            vec![col(0, DataType::Str), col(2, DataType::Str)],
            &row
        )
        .is_err());
        assert_eq!(
            call("regexp_match", vec![col(0, DataType::Str), lit(s("^order"))], &row).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            call("regexp_like", vec![col(0, DataType::Str), col(1, DataType::Str)], &row).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            call("regexp_match", vec![col(0, DataType::Str), lit(Value::Null)], &row).unwrap(),
            Value::Null
        );
        // Equal patterns make equal plans; different ones do not.
        let a = plan_function("regexp_match", vec![col(0, DataType::Str), lit(s("a+"))]).unwrap();
        let b = plan_function("regexp_match", vec![col(0, DataType::Str), lit(s("a+"))]).unwrap();
        let c = plan_function("regexp_match", vec![col(0, DataType::Str), lit(s("b+"))]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn time_functions_end_to_end() {
        let t = crate::time::parse_timestamp("2015-07-15 13:14:15.678").unwrap();
        let row = [Value::Ts(t), s("hour"), s("%H:%M")];
        let (e, ty) = plan_function("EXTRACT", vec![lit(s("HOUR")), col(0, DataType::Ts)]).unwrap();
        assert_eq!((e.eval(&row).unwrap(), ty), (Value::Int(13), DataType::Int));
        let (_, ty) = plan_function("extract", vec![lit(s("epoch")), col(0, DataType::Ts)]).unwrap();
        assert_eq!(ty, DataType::Double);
        let (e, ty) = plan_function("date_trunc", vec![lit(s("minute")), col(0, DataType::Ts)]).unwrap();
        assert_eq!(ty, DataType::Ts);
        assert_eq!(e.eval(&row).unwrap(), Value::Ts(t - 15_678));
        let (e, _) = plan_function("date_trunc", vec![col(1, DataType::Str), col(0, DataType::Ts)]).unwrap();
        assert_eq!(e.eval(&row).unwrap(), Value::Ts(t - 14 * 60_000 - 15_678));
        assert!(call("date_trunc", vec![col(2, DataType::Str), col(0, DataType::Ts)], &row).is_err());
        let (e, ty) = plan_function("DATE_FORMAT", vec![col(0, DataType::Ts), lit(s("yyyy-MM-dd HH:mm"))]).unwrap();
        assert_eq!((e.eval(&row).unwrap(), ty), (s("2015-07-15 13:14"), DataType::Str));
        let (e, _) = plan_function("date_format", vec![col(0, DataType::Ts), col(2, DataType::Str)]).unwrap();
        assert_eq!(e.eval(&row).unwrap(), s("13:14"));
        let (e, _) = plan_function("date_format", vec![col(0, DataType::Ts), col(1, DataType::Str)]).unwrap();
        assert!(e.eval(&row).is_err(), "'hour' is not a valid Java pattern");
    }
}
