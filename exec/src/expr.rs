//! Compiled scalar expressions.
//!
//! The `sql` planner resolves names and types and produces an `Expr` whose
//! column references are indices into the input row. Evaluation follows SQL
//! three-valued logic: NULL propagates through arithmetic and comparisons,
//! `AND`/`OR` use Kleene logic, and a row passes a filter only when the
//! predicate is TRUE. A failure on one row's value (division by zero, a
//! failed cast, integer overflow) is an `EvalError`; the calling operator
//! counts it and uses NULL.

use crate::error::EvalError;
use crate::func::ScalarFunc;
use crate::types::{DataType, Value};

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// String concatenation `||`.
    Concat,
}

impl BinaryOp {
    /// The operator as SQL writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Concat => "||",
        }
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

/// A typed, resolved scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The value of input column `index`.
    Column(usize),
    Literal(Value),
    Unary {
        op: UnaryOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// Kleene AND over two or more terms.
    And(Vec<Expr>),
    /// Kleene OR over two or more terms.
    Or(Vec<Expr>),
    IsNull {
        arg: Box<Expr>,
        negated: bool,
    },
    /// `x IS [NOT] TRUE/FALSE` style checks are planned as comparisons; this
    /// is `x [NOT] IN (list)` with SQL NULL semantics.
    InList {
        arg: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`; without an operand each
    /// `when` is a predicate.
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        arg: Box<Expr>,
        to: DataType,
    },
    /// `x [NOT] LIKE pattern` with `%` and `_`.
    Like {
        arg: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Func {
        func: ScalarFunc,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn col(index: usize) -> Expr {
        Expr::Column(index)
    }

    pub fn lit(value: Value) -> Expr {
        Expr::Literal(value)
    }

    /// Evaluates the expression against one row.
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        crate::func::eval_expr(self, row)
    }

    /// Evaluates a predicate: true only when the result is TRUE (NULL and
    /// errors are not true; the error is returned for counting).
    pub fn eval_predicate(&self, row: &[Value]) -> Result<bool, EvalError> {
        Ok(matches!(self.eval(row)?, Value::Bool(true)))
    }

    /// Whether the expression reads any column (false for constants).
    pub fn references_columns(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= matches!(e, Expr::Column(_)));
        found
    }

    /// Renumbers every column reference: column `c` becomes `map[c]`.
    pub fn remap_columns(&mut self, map: &[usize]) {
        self.visit_mut(&mut |e| {
            if let Expr::Column(c) = e {
                *c = map[*c];
            }
        });
    }

    /// `visit`, with each node mutable.
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        f(self);
        match self {
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Unary { arg, .. } | Expr::IsNull { arg, .. } | Expr::Cast { arg, .. } => arg.visit_mut(f),
            Expr::Binary { left, right, .. } => {
                left.visit_mut(f);
                right.visit_mut(f);
            }
            Expr::And(terms) | Expr::Or(terms) => terms.iter_mut().for_each(|t| t.visit_mut(f)),
            Expr::InList { arg, list, .. } => {
                arg.visit_mut(f);
                list.iter_mut().for_each(|t| t.visit_mut(f));
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.visit_mut(f);
                }
                for (w, t) in whens {
                    w.visit_mut(f);
                    t.visit_mut(f);
                }
                if let Some(o) = otherwise {
                    o.visit_mut(f);
                }
            }
            Expr::Like { arg, pattern, .. } => {
                arg.visit_mut(f);
                pattern.visit_mut(f);
            }
            Expr::Func { args, .. } => args.iter_mut().for_each(|t| t.visit_mut(f)),
        }
    }

    /// Calls `f` on this node and every sub-expression, pre-order.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Unary { arg, .. } | Expr::IsNull { arg, .. } | Expr::Cast { arg, .. } => arg.visit(f),
            Expr::Binary { left, right, .. } => {
                left.visit(f);
                right.visit(f);
            }
            Expr::And(terms) | Expr::Or(terms) => terms.iter().for_each(|t| t.visit(f)),
            Expr::InList { arg, list, .. } => {
                arg.visit(f);
                list.iter().for_each(|t| t.visit(f));
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.visit(f);
                }
                for (w, t) in whens {
                    w.visit(f);
                    t.visit(f);
                }
                if let Some(o) = otherwise {
                    o.visit(f);
                }
            }
            Expr::Like { arg, pattern, .. } => {
                arg.visit(f);
                pattern.visit(f);
            }
            Expr::Func { args, .. } => args.iter().for_each(|t| t.visit(f)),
        }
    }
}
