//! A sweep that feeds every function, operator and cast with extreme and
//! ill-typed values. It proves evaluation never panics (run it in a debug
//! build to also catch integer overflow); results are not checked here.

use super::{DateFormat, ExtractField, MathFunc, Pattern, ScalarFunc, TrimSide};
use crate::expr::{BinaryOp, Expr, UnaryOp};
use crate::time::TimeUnit;
use crate::types::{DataType, Value};

fn pool() -> Vec<Value> {
    let mut v = vec![Value::Null, Value::Bool(true), Value::Bool(false)];
    v.extend([0, 1, -1, 3, -7, 1 << 53, i64::MIN, i64::MAX, i64::MIN + 1].map(Value::Int));
    v.extend(
        [
            0.0,
            -0.0,
            1.5,
            -2.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -1e308,
            f64::MIN_POSITIVE,
            9.3e18,
        ]
        .map(Value::Double),
    );
    v.extend(
        [
            "",
            "a",
            "héllo wörld",
            "%_\\",
            "\\",
            "(",
            "a+",
            "(a)(b)?",
            "yyyy-MM-dd",
            "%Y %f %",
            "day",
            "1970-01-01",
            " 42 ",
            "日本語",
        ]
        .map(Value::str),
    );
    v.extend([i64::MIN, i64::MAX, 0, -1, 253_402_300_799_999].map(Value::Ts));
    v
}

fn funcs() -> Vec<ScalarFunc> {
    use ScalarFunc as F;
    let mut f = vec![
        F::Coalesce,
        F::NullIf,
        F::Greatest,
        F::Least,
        F::Abs,
        F::Round,
        F::Floor,
        F::Ceil,
        F::Sign,
        F::Power,
        F::Lower,
        F::Upper,
        F::Length,
        F::Substring,
        F::Concat,
        F::SplitPart,
        F::Replace,
        F::StartsWith,
        F::EndsWith,
        F::StrPos,
        F::Left,
        F::Right,
        F::Reverse,
        F::RegexpMatch(None),
        F::RegexpExtract(None),
        F::RegexpMatch(Some(Pattern(regex::Regex::new("(a)|b").unwrap()))),
        F::RegexpExtract(Some(Pattern(regex::Regex::new("(a)|b").unwrap()))),
        F::DateTrunc(None),
        F::DateFormat(None),
        F::DateFormat(Some(
            DateFormat::parse("yyyy-MM-dd HH:mm:ss.SSS a EEEE MMMM D").unwrap(),
        )),
        F::DateFormat(Some(
            DateFormat::parse("%Y %y %e %I %p %j %a %B %u %w %F %T %%").unwrap(),
        )),
        F::TimestampAddMs,
        F::TimestampDiffMs,
    ];
    f.extend([MathFunc::Sqrt, MathFunc::Exp, MathFunc::Ln, MathFunc::Log10].map(F::Math));
    f.extend([TrimSide::Both, TrimSide::Leading, TrimSide::Trailing].map(F::Trim));
    for unit in [
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
    ] {
        f.push(F::DateTrunc(Some(TimeUnit::parse(unit).unwrap())));
    }
    for field in [
        "year",
        "isoyear",
        "quarter",
        "month",
        "week",
        "day",
        "dow",
        "isodow",
        "doy",
        "hour",
        "minute",
        "second",
        "millisecond",
        "microsecond",
        "epoch",
    ] {
        f.push(F::Extract(ExtractField::parse(field).unwrap()));
    }
    f
}

#[test]
fn evaluation_never_panics() {
    let pool = pool();
    let lit = |i: usize| Expr::lit(pool[i % pool.len()].clone());
    let n = pool.len();
    for func in funcs() {
        for a in 0..n {
            for b in 0..n {
                // The third argument cycles so each value meets each pair
                // position without a cubic loop.
                let c = a * 7 + b * 13;
                for arity in 1..=3 {
                    let args: Vec<Expr> = [a, b, c][..arity].iter().map(|&i| lit(i)).collect();
                    let _ = Expr::Func {
                        func: func.clone(),
                        args,
                    }
                    .eval(&[]);
                }
            }
        }
    }
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
        BinaryOp::Eq,
        BinaryOp::NotEq,
        BinaryOp::Lt,
        BinaryOp::LtEq,
        BinaryOp::Gt,
        BinaryOp::GtEq,
        BinaryOp::Concat,
    ];
    for a in 0..n {
        for op in [UnaryOp::Neg, UnaryOp::Not] {
            let _ = Expr::Unary {
                op,
                arg: Box::new(lit(a)),
            }
            .eval(&[]);
        }
        for to in [
            DataType::Bool,
            DataType::Int,
            DataType::Double,
            DataType::Str,
            DataType::Ts,
            DataType::Null,
        ] {
            let _ = Expr::Cast {
                arg: Box::new(lit(a)),
                to,
            }
            .eval(&[]);
        }
        for b in 0..n {
            for op in ops {
                let _ = Expr::Binary {
                    op,
                    left: Box::new(lit(a)),
                    right: Box::new(lit(b)),
                }
                .eval(&[]);
            }
            for (negated, case_insensitive) in [(false, false), (true, true)] {
                let _ = Expr::Like {
                    arg: Box::new(lit(a)),
                    pattern: Box::new(lit(b)),
                    negated,
                    case_insensitive,
                }
                .eval(&[]);
            }
            let _ = Expr::And(vec![lit(a), lit(b)]).eval(&[]);
            let _ = Expr::Or(vec![lit(a), lit(b)]).eval(&[]);
            let _ = Expr::InList {
                arg: Box::new(lit(a)),
                list: vec![lit(b), lit(a + b)],
                negated: true,
            }
            .eval(&[]);
        }
    }
}
