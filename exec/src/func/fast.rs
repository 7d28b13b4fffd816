//! A fast path for the scalar expressions most rows meet: arithmetic,
//! comparisons, `AND`/`OR`/`NOT` and `IS NULL` over BIGINT, DOUBLE,
//! BOOLEAN and TIMESTAMP columns and literals.
//!
//! The general evaluator (`eval_expr`) moves `Result<Value>` and
//! `Cow<Value>` (40 bytes and more, with a `Drop`) through every node; the
//! profile of a filter like `MOD(auction, 123) = 0` showed most of its time
//! in store-forwarding stalls on those moves, a fifth of the whole query.
//! Here a node yields a 16-byte `Copy` scalar instead.
//!
//! Exactness comes from falling back, not from reimplementing the corner
//! cases: whenever this path meets something it does not model (a string,
//! a type mix the general path orders by key, an error such as a zero
//! divisor or an overflow), it gives up on the row (`Miss`) and the general
//! evaluator answers for it, errors included. What it does answer it answers
//! with the general path's own helpers (`int_arithmetic`,
//! `float_arithmetic`, `cmp_f64`, `cmp_i64_f64`), evaluating the same terms
//! in the same order and stopping where the general path stops, so the two
//! agree on every row (property test below).

use super::ops::{cmp_f64, cmp_i64_f64, float_arithmetic, int_arithmetic};
use crate::error::EvalError;
use crate::expr::{BinaryOp, Expr, UnaryOp};
use crate::types::Value;

/// A value this path handles: `Value` without strings, so `Copy`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Ts(i64),
}

impl Scalar {
    #[inline]
    fn of(v: &Value) -> Result<Scalar, Miss> {
        Ok(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Int(i) => Scalar::Int(*i),
            Value::Double(d) => Scalar::Double(*d),
            Value::Ts(t) => Scalar::Ts(*t),
            Value::Str(_) => return Err(Miss),
        })
    }

    fn value(self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::Int(i),
            Scalar::Double(d) => Value::Double(d),
            Scalar::Ts(t) => Value::Ts(t),
        }
    }
}

/// This row is the general evaluator's to answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Miss;

/// A compiled node; see `compile` for what maps to what.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Column(usize),
    Literal(Scalar),
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(BinaryOp, Box<Node>, Box<Node>),
    /// `x % k` for a BIGINT literal `k` other than 0, 1 and -1: the
    /// remainder by multiplication (`Remainder`), not a division.
    ModLiteral(Box<Node>, Remainder),
    /// `ModLiteral` of a column: the commonest filter shape, one call
    /// instead of two.
    ModColumn(usize, Remainder),
    /// Comparison (`=` … `>=`), on the ordering `sql_cmp` would give.
    Cmp(BinaryOp, Box<Node>, Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    IsNull(Box<Node>, bool),
}

fn compile(e: &Expr) -> Option<Node> {
    let boxed = |e: &Expr| compile(e).map(Box::new);
    Some(match e {
        Expr::Column(i) => Node::Column(*i),
        Expr::Literal(Value::Str(_)) => return None,
        Expr::Literal(v) => Node::Literal(Scalar::of(v).ok()?),
        Expr::Unary { op: UnaryOp::Neg, arg } => Node::Neg(boxed(arg)?),
        Expr::Unary { op: UnaryOp::Not, arg } => Node::Not(boxed(arg)?),
        Expr::Binary {
            op: BinaryOp::Mod,
            left,
            right,
        } if matches!(**right, Expr::Literal(Value::Int(k)) if k.unsigned_abs() > 1) => {
            let Expr::Literal(Value::Int(k)) = **right else {
                unreachable!("matched above")
            };
            match **left {
                Expr::Column(c) => Node::ModColumn(c, Remainder::new(k)),
                _ => Node::ModLiteral(boxed(left)?, Remainder::new(k)),
            }
        }
        Expr::Binary { op, left, right } => match op {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                Node::Arith(*op, boxed(left)?, boxed(right)?)
            }
            BinaryOp::Concat => return None,
            _ => Node::Cmp(*op, boxed(left)?, boxed(right)?),
        },
        Expr::And(terms) => Node::And(terms.iter().map(compile).collect::<Option<_>>()?),
        Expr::Or(terms) => Node::Or(terms.iter().map(compile).collect::<Option<_>>()?),
        Expr::IsNull { arg, negated } => Node::IsNull(boxed(arg)?, *negated),
        _ => return None,
    })
}

impl Node {
    /// `eval` for an operand: the commonest ones (a column, a literal, a
    /// column's remainder) taken inline, without a call; the rest by
    /// `eval`.
    #[inline(always)]
    fn operand(&self, row: &[Value]) -> Result<Scalar, Miss> {
        match *self {
            Node::Column(i) => row.get(i).map_or(Err(Miss), Scalar::of),
            Node::Literal(s) => Ok(s),
            Node::ModColumn(c, k) => k.apply(row.get(c).map_or(Err(Miss), Scalar::of)?),
            _ => self.eval(row),
        }
    }

    fn eval(&self, row: &[Value]) -> Result<Scalar, Miss> {
        match self {
            // An index past the row is a plan bug; the general path panics
            // with the details.
            Node::Column(i) => row.get(*i).map_or(Err(Miss), Scalar::of),
            Node::Literal(s) => Ok(*s),
            Node::Neg(arg) => match arg.eval(row)? {
                Scalar::Null => Ok(Scalar::Null),
                Scalar::Int(i) => i.checked_neg().map(Scalar::Int).ok_or(Miss),
                Scalar::Double(d) => Ok(Scalar::Double(-d)),
                _ => Err(Miss),
            },
            Node::Not(arg) => match arg.eval(row)? {
                Scalar::Null => Ok(Scalar::Null),
                Scalar::Bool(b) => Ok(Scalar::Bool(!b)),
                _ => Err(Miss),
            },
            Node::Arith(op, left, right) => {
                let (l, r) = (left.operand(row)?, right.operand(row)?);
                let done = |r: Result<Scalar, EvalError>| r.map_err(|_| Miss);
                match (l, r) {
                    (Scalar::Null, _) | (_, Scalar::Null) => Ok(Scalar::Null),
                    (Scalar::Int(a), Scalar::Int(b)) => done(int_arithmetic(*op, a, b).map(Scalar::Int)),
                    (Scalar::Int(a), Scalar::Double(b)) => done(float_arithmetic(*op, a as f64, b).map(Scalar::Double)),
                    (Scalar::Double(a), Scalar::Int(b)) => done(float_arithmetic(*op, a, b as f64).map(Scalar::Double)),
                    (Scalar::Double(a), Scalar::Double(b)) => done(float_arithmetic(*op, a, b).map(Scalar::Double)),
                    _ => Err(Miss),
                }
            }
            Node::ModColumn(c, k) => k.apply(row.get(*c).map_or(Err(Miss), Scalar::of)?),
            Node::ModLiteral(arg, k) => k.apply(arg.eval(row)?),
            Node::Cmp(op, left, right) => {
                let (l, r) = (left.operand(row)?, right.operand(row)?);
                compare(*op, l, r)
            }
            Node::And(terms) => kleene(terms, row, false),
            Node::Or(terms) => kleene(terms, row, true),
            Node::IsNull(arg, negated) => Ok(Scalar::Bool((arg.eval(row)? == Scalar::Null) != *negated)),
        }
    }
}

/// Kleene AND (`decisive` false) or OR (`decisive` true), as `eval_kleene`:
/// the terms in order up to the first that is `decisive`, which
/// is the answer; else NULL if a term was NULL, else `!decisive`.
fn kleene(terms: &[Node], row: &[Value], decisive: bool) -> Result<Scalar, Miss> {
    let mut saw_null = false;
    for t in terms {
        match t.eval(row)? {
            Scalar::Bool(b) if b == decisive => return Ok(Scalar::Bool(decisive)),
            Scalar::Bool(_) => {}
            Scalar::Null => saw_null = true,
            _ => return Err(Miss),
        }
    }
    Ok(if saw_null {
        Scalar::Null
    } else {
        Scalar::Bool(!decisive)
    })
}

/// `a % k` for one divisor, `|k| > 1`, by Lemire, Kaser and Kurz's direct
/// remainder ("Faster Remainder by Direct Computation", 2019): with
/// `m = ceil(2^128 / |k|)`, `|a| % |k|` is the high 64 bits of
/// `(m * |a| mod 2^128) * |k|`, exact for every 64-bit `|a|`. A 64-bit
/// `idiv` costs 40 cycles and more on the machines this runs on; this is
/// three multiplications. The sign is the dividend's, as `%`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Remainder {
    divisor: i64,
    m: u128,
}

impl Remainder {
    fn new(divisor: i64) -> Remainder {
        let d = divisor.unsigned_abs();
        assert!(d > 1, "a remainder by {divisor} is not computed by multiplication");
        Remainder {
            divisor,
            m: u128::MAX / u128::from(d) + 1,
        }
    }

    /// `x % k` of a scalar, as the general path's `%`: NULL stays NULL, a
    /// DOUBLE is `fmod`, anything else is the general path's to answer.
    #[inline]
    fn apply(self, x: Scalar) -> Result<Scalar, Miss> {
        match x {
            Scalar::Null => Ok(Scalar::Null),
            Scalar::Int(a) => Ok(Scalar::Int(self.of(a))),
            Scalar::Double(a) => float_arithmetic(BinaryOp::Mod, a, self.divisor as f64)
                .map(Scalar::Double)
                .map_err(|_| Miss),
            _ => Err(Miss),
        }
    }

    #[inline]
    fn of(self, a: i64) -> i64 {
        let d = u128::from(self.divisor.unsigned_abs());
        let low = self.m.wrapping_mul(u128::from(a.unsigned_abs()));
        // The high 64 bits of the 192-bit `low * d`.
        let bottom = ((low & u128::from(u64::MAX)) * d) >> 64;
        let top = (low >> 64) * d;
        // Below |k| <= 2^63, so the cast is exact and so is the negation.
        let r = ((bottom + top) >> 64) as i64;
        if a < 0 {
            -r
        } else {
            r
        }
    }
}

/// `sql_cmp` of two scalars under a comparison operator; `Miss` for the
/// type pairs the general path orders by key.
#[inline]
fn compare(op: BinaryOp, l: Scalar, r: Scalar) -> Result<Scalar, Miss> {
    let ordering = match (l, r) {
        (Scalar::Null, _) | (_, Scalar::Null) => return Ok(Scalar::Null),
        (Scalar::Int(x), Scalar::Int(y)) | (Scalar::Ts(x), Scalar::Ts(y)) => x.cmp(&y),
        (Scalar::Double(x), Scalar::Double(y)) => cmp_f64(x, y),
        (Scalar::Int(x), Scalar::Double(y)) => cmp_i64_f64(x, y),
        (Scalar::Double(x), Scalar::Int(y)) => cmp_i64_f64(y, x).reverse(),
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(&y),
        // Unrelated types: the general path's key order.
        _ => return Err(Miss),
    };
    Ok(Scalar::Bool(match op {
        BinaryOp::Eq => ordering.is_eq(),
        BinaryOp::NotEq => ordering.is_ne(),
        BinaryOp::Lt => ordering.is_lt(),
        BinaryOp::LtEq => ordering.is_le(),
        BinaryOp::Gt => ordering.is_gt(),
        _ => ordering.is_ge(),
    }))
}

/// An expression with its fast path, if it has one. Operators that
/// evaluate per row hold this instead of a bare `Expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct FastExpr {
    expr: Expr,
    fast: Option<Node>,
}

impl FastExpr {
    pub fn new(expr: Expr) -> FastExpr {
        // A bare column or literal gains nothing from the fast path.
        let fast = match expr {
            Expr::Column(_) | Expr::Literal(_) => None,
            _ => compile(&expr),
        };
        FastExpr { expr, fast }
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the fast path covers this expression (for tests and plans).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// `Expr::eval`, with the same result on every row.
    #[inline]
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        if let Some(Ok(s)) = self.fast.as_ref().map(|n| n.eval(row)) {
            return Ok(s.value());
        }
        self.expr.eval(row)
    }

    /// `Expr::eval_predicate`, with the same result on every row.
    #[inline]
    pub fn eval_predicate(&self, row: &[Value]) -> Result<bool, EvalError> {
        if let Some(Ok(s)) = self.fast.as_ref().map(|n| n.eval(row)) {
            return Ok(s == Scalar::Bool(true));
        }
        self.expr.eval_predicate(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn col(i: usize) -> Expr {
        Expr::Column(i)
    }

    fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        }
    }

    #[test]
    fn the_filters_of_the_benchmarks_compile() {
        let q2 = bin(
            BinaryOp::Eq,
            bin(BinaryOp::Mod, col(0), Expr::Literal(Value::Int(123))),
            Expr::Literal(Value::Int(0)),
        );
        let q1 = bin(BinaryOp::Mul, Expr::Literal(Value::Double(0.908)), col(2));
        for e in [q2, q1] {
            assert!(FastExpr::new(e).is_fast());
        }
        let concat = bin(BinaryOp::Concat, col(0), col(1));
        assert!(!FastExpr::new(concat).is_fast());
        assert!(!FastExpr::new(Expr::Literal(Value::Str("a".into()))).is_fast());
    }

    #[test]
    fn errors_are_the_general_paths() {
        let zero_divisor = FastExpr::new(bin(BinaryOp::Mod, col(0), Expr::Literal(Value::Int(0))));
        assert_eq!(zero_divisor.eval(&[Value::Int(5)]), Err(EvalError::DivisionByZero));
        let overflow = FastExpr::new(Expr::Unary {
            op: UnaryOp::Neg,
            arg: Box::new(col(0)),
        });
        assert!(matches!(
            overflow.eval(&[Value::Int(i64::MIN)]),
            Err(EvalError::Overflow { .. })
        ));
        // A string where a number was planned: the general path's answer.
        let mixed = FastExpr::new(bin(BinaryOp::Lt, col(0), col(1)));
        let row = [Value::Str("b".into()), Value::Int(1)];
        assert_eq!(mixed.eval(&row), Expr::eval(mixed.expr(), &row));
    }

    proptest! {
        #[test]
        fn remainder_by_multiplication_is_percent(
            a in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -300i64..300],
            k in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), 2i64..300, -300i64..-1],
        ) {
            prop_assume!(k.unsigned_abs() > 1);
            prop_assert_eq!(Remainder::new(k).of(a), a % k);
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![-5i64..5, Just(i64::MIN), Just(i64::MAX), any::<i64>()].prop_map(Value::Int),
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(2.5),
                Just(9.223372036854776e18),
                (-5i64..5).prop_map(|i| i as f64),
                any::<f64>()
            ]
            .prop_map(Value::Double),
            (-3i64..3).prop_map(Value::Ts),
            Just(Value::Str("x".into())),
        ]
    }

    /// Expressions the fast path compiles (no `||`, no string literal);
    /// rows still hold strings, which it must hand back.
    fn expr() -> impl Strategy<Value = Expr> {
        let literal = scalar().prop_filter("a string literal", |v| !matches!(v, Value::Str(_)));
        let leaf = prop_oneof![(0usize..4).prop_map(Expr::Column), literal.prop_map(Expr::Literal)];
        leaf.prop_recursive(4, 24, 4, |inner| {
            let ops = prop_oneof![
                Just(BinaryOp::Add),
                Just(BinaryOp::Sub),
                Just(BinaryOp::Mul),
                Just(BinaryOp::Div),
                Just(BinaryOp::Mod),
                Just(BinaryOp::Eq),
                Just(BinaryOp::NotEq),
                Just(BinaryOp::Lt),
                Just(BinaryOp::LtEq),
                Just(BinaryOp::Gt),
                Just(BinaryOp::GtEq),
            ];
            prop_oneof![
                (ops, inner.clone(), inner.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
                (prop_oneof![Just(UnaryOp::Neg), Just(UnaryOp::Not)], inner.clone())
                    .prop_map(|(op, a)| { Expr::Unary { op, arg: Box::new(a) } }),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                (inner, any::<bool>()).prop_map(|(a, negated)| Expr::IsNull {
                    arg: Box::new(a),
                    negated
                }),
            ]
        })
    }

    /// The same result, value or error, on every row, NaN compared as
    /// bits (NaN != NaN under `PartialEq`).
    fn same(a: &Result<Value, EvalError>, b: &Result<Value, EvalError>) -> bool {
        match (a, b) {
            (Ok(Value::Double(x)), Ok(Value::Double(y))) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn agrees_with_the_general_evaluator(e in expr(), row in prop::collection::vec(scalar(), 4)) {
            let fast = FastExpr::new(e.clone());
            prop_assert!(fast.is_fast() || matches!(e, Expr::Column(_) | Expr::Literal(_)));
            let (got, want) = (fast.eval(&row), e.eval(&row));
            prop_assert!(same(&got, &want), "{e:?} on {row:?}: fast {got:?}, general {want:?}");
            prop_assert_eq!(fast.eval_predicate(&row), e.eval_predicate(&row));
        }
    }
}
