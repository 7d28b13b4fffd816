//! Planning scalar expressions: sqlparser AST → typed `exec::expr::Expr`.
//!
//! Names resolve against a `Scope` (columns with optional qualifiers).
//! Inside an aggregate's SELECT and HAVING, a `GroupContext` changes the
//! rules: an aggregate call becomes a reference to its accumulator's
//! result, a sub-expression equal to a GROUP BY expression becomes a
//! reference to that key, `window_start`/`window_end` refer to the
//! window's bounds, and any other column is an error ("must appear in
//! GROUP BY"). Sub-expressions are compared after planning, so `bid.auction`
//! and `auction` are the same key.

use laminar_exec::agg::{agg_output_type, AggKind};
use laminar_exec::expr::{BinaryOp, Expr, UnaryOp};
use laminar_exec::func::{can_cast, plan_binary, plan_function};
use laminar_exec::operators::AggCall;
use laminar_exec::time::parse_timestamp;
use laminar_exec::types::{DataType, Value};
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Span;

use crate::error::{PlanError, PlanResult};

/// One visible column.
#[derive(Debug, Clone)]
pub struct ScopeColumn {
    /// The relation it comes from (source, stream or alias), if any.
    pub qualifier: Option<String>,
    pub name: String,
    pub data_type: DataType,
}

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    pub fn resolve(&self, parts: &[ast::Ident], span: Span) -> PlanResult<usize> {
        let (qualifier, name) = match parts {
            [name] => (None, name),
            [q, name] => (Some(q), name),
            _ => {
                let full: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(PlanError::at(
                    span,
                    format!("unsupported column reference {}", full.join(".")),
                ));
            }
        };
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| ident_eq(name, &c.name))
            .filter(|(_, c)| match qualifier {
                None => true,
                Some(q) => c.qualifier.as_deref().is_some_and(|cq| ident_eq(q, cq)),
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => {
                // Over a join the same name may stand on both sides: list
                // them qualified, each once.
                let qualifiers: std::collections::BTreeSet<Option<&str>> =
                    self.columns.iter().map(|c| c.qualifier.as_deref()).collect();
                let known: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| match (&c.qualifier, qualifiers.len() > 1) {
                        (Some(q), true) => format!("{q}.{}", c.name),
                        _ => c.name.clone(),
                    })
                    .collect();
                let what = match qualifier {
                    Some(q) => format!("{}.{}", q.value, name.value),
                    None => name.value.clone(),
                };
                Err(PlanError::at(
                    span,
                    format!("unknown column '{what}' (columns: {})", known.join(", ")),
                ))
            }
            _ => Err(PlanError::at(
                span,
                format!("column reference '{}' is ambiguous", name.value),
            )),
        }
    }
}

/// Unquoted identifiers compare case-insensitively; quoted ones exactly.
pub fn ident_eq(ident: &ast::Ident, name: &str) -> bool {
    if ident.quote_style.is_some() {
        ident.value == name
    } else {
        ident.value.eq_ignore_ascii_case(name)
    }
}

/// The GROUP BY being planned: keys, window, and the aggregate calls found
/// so far. The intermediate row is `keys ++ [window_start, window_end] ++
/// aggregates`.
pub struct GroupContext {
    pub input: Scope,
    pub keys: Vec<(Expr, DataType)>,
    pub windowed: bool,
    pub calls: Vec<AggCall>,
    pub call_types: Vec<DataType>,
}

impl GroupContext {
    fn window_offset(&self) -> usize {
        self.keys.len()
    }

    fn call_offset(&self) -> usize {
        self.keys.len() + if self.windowed { 2 } else { 0 }
    }
}

pub struct ExprPlanner<'a> {
    pub scope: &'a Scope,
    pub group: Option<&'a mut GroupContext>,
}

pub fn is_aggregate_name(name: &str) -> bool {
    AggKind::from_name(name).is_some()
}

fn function_name(f: &ast::Function) -> String {
    f.name.0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(".")
}

/// Whether `e` contains an aggregate call anywhere.
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let ast::Expr::Function(f) = x {
            if f.over.is_none() && is_aggregate_name(&function_name(f)) {
                found = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// The arguments of a function call as plain expressions; `*` is returned
/// as None (only COUNT(*) accepts it).
fn call_args(f: &ast::Function) -> PlanResult<(Vec<Option<&ast::Expr>>, bool)> {
    match &f.args {
        ast::FunctionArguments::None => Ok((Vec::new(), false)),
        ast::FunctionArguments::Subquery(_) => Err(PlanError::at(
            f.span(),
            "subqueries as function arguments are not supported",
        )),
        ast::FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(PlanError::at(
                    f.span(),
                    format!("unsupported clause in {}(…)", function_name(f)),
                ));
            }
            let distinct = matches!(list.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct));
            let mut out = Vec::new();
            for a in &list.args {
                match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => out.push(Some(e)),
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => out.push(None),
                    _ => {
                        return Err(PlanError::at(
                            f.span(),
                            "named or qualified-wildcard arguments are not supported",
                        ))
                    }
                }
            }
            Ok((out, distinct))
        }
    }
}

/// Interval literal → milliseconds.
pub fn interval_ms(i: &ast::Interval, span: Span) -> PlanResult<i64> {
    if i.last_field.is_some() {
        return Err(PlanError::at(
            span,
            "INTERVAL … TO … ranges are not supported; write e.g. INTERVAL '90' SECOND",
        ));
    }
    let text = match i.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            _ => {
                return Err(PlanError::at(
                    span,
                    "INTERVAL needs a quoted amount, e.g. INTERVAL '10' SECOND",
                ))
            }
        },
        _ => {
            return Err(PlanError::at(
                span,
                "INTERVAL needs a literal amount, e.g. INTERVAL '10' SECOND",
            ))
        }
    };
    let unit = i.leading_field.as_ref().map(|f| f.to_string());
    laminar_exec::time::parse_interval(&text, unit.as_deref()).map_err(|e| PlanError::at(span, e.to_string()))
}

/// SQL type name → DataType.
pub fn data_type(t: &ast::DataType, span: Span) -> PlanResult<DataType> {
    use ast::DataType as T;
    Ok(match t {
        T::Boolean | T::Bool => DataType::Bool,
        T::TinyInt(_) | T::SmallInt(_) | T::Int(_) | T::Integer(_) | T::BigInt(_) | T::Int64 | T::Int32 => {
            DataType::Int
        }
        T::Double(_)
        | T::DoublePrecision
        | T::Float(_)
        | T::Real
        | T::Float64
        | T::Decimal(_)
        | T::Numeric(_)
        | T::Dec(_) => DataType::Double,
        T::Varchar(_) | T::Text | T::String(_) | T::Char(_) | T::CharVarying(_) | T::Character(_) => DataType::Str,
        T::Timestamp(_, _) | T::Datetime(_) => DataType::Ts,
        other => {
            return Err(PlanError::at(
                span,
                format!(
                    "unsupported type {other}; use BOOLEAN, INT, BIGINT, DOUBLE, DECIMAL, VARCHAR, TEXT or TIMESTAMP"
                ),
            ))
        }
    })
}

fn literal(v: &ast::ValueWithSpan) -> PlanResult<(Expr, DataType)> {
    let span = v.span;
    Ok(match &v.value {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Expr::Literal(Value::Int(i)), DataType::Int)
            } else {
                let d: f64 = n
                    .parse()
                    .map_err(|_| PlanError::at(span, format!("invalid number {n}")))?;
                (Expr::Literal(Value::Double(d)), DataType::Double)
            }
        }
        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
            (Expr::Literal(Value::str(s)), DataType::Str)
        }
        ast::Value::Boolean(b) => (Expr::Literal(Value::Bool(*b)), DataType::Bool),
        ast::Value::Null => (Expr::Literal(Value::Null), DataType::Null),
        other => return Err(PlanError::at(span, format!("unsupported literal {other}"))),
    })
}

impl<'a> ExprPlanner<'a> {
    pub fn plain(scope: &'a Scope) -> ExprPlanner<'a> {
        ExprPlanner { scope, group: None }
    }

    pub fn plan(&mut self, e: &ast::Expr) -> PlanResult<(Expr, DataType)> {
        let span = e.span();
        self.plan_inner(e).map_err(|err| err.or_at(span))
    }

    /// Plans a predicate: the result must be BOOLEAN (or NULL).
    pub fn plan_predicate(&mut self, e: &ast::Expr, what: &str) -> PlanResult<Expr> {
        let (x, t) = self.plan(e)?;
        if !matches!(t, DataType::Bool | DataType::Null) {
            return Err(PlanError::at(e.span(), format!("{what} must be BOOLEAN, found {t}")));
        }
        Ok(x)
    }

    fn plan_inner(&mut self, e: &ast::Expr) -> PlanResult<(Expr, DataType)> {
        if self.group.is_some() {
            if let Some(r) = self.plan_grouped_leaf(e)? {
                return Ok(r);
            }
        }
        let span = e.span();
        use ast::Expr as A;
        match e {
            A::Identifier(id) => self.column(std::slice::from_ref(id), span),
            A::CompoundIdentifier(parts) => self.column(parts, span),
            A::Value(v) => literal(v),
            A::Nested(inner) => self.plan(inner),
            A::TypedString(ts) => {
                let t = data_type(&ts.data_type, span)?;
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => return Err(PlanError::at(span, format!("expected a quoted literal, found {other}"))),
                };
                let v = match t {
                    DataType::Ts => Value::Ts(parse_timestamp(&text).map_err(|e| PlanError::at(span, e.to_string()))?),
                    _ => laminar_exec::func::cast_value(&Value::str(&text), t)
                        .map_err(|m| PlanError::at(span, m.to_string()))?,
                };
                Ok((Expr::Literal(v), t))
            }
            A::Interval(_) => Err(PlanError::at(
                span,
                "an INTERVAL can only be added to or subtracted from a TIMESTAMP here",
            )),
            A::UnaryOp { op, expr } => {
                let (x, t) = self.plan(expr)?;
                match op {
                    ast::UnaryOperator::Not => {
                        if !matches!(t, DataType::Bool | DataType::Null) {
                            return Err(PlanError::at(span, format!("NOT needs BOOLEAN, found {t}")));
                        }
                        Ok((
                            Expr::Unary {
                                op: UnaryOp::Not,
                                arg: Box::new(x),
                            },
                            DataType::Bool,
                        ))
                    }
                    ast::UnaryOperator::Minus => {
                        if !t.is_numeric() {
                            return Err(PlanError::at(span, format!("unary minus needs a number, found {t}")));
                        }
                        // Fold -<literal> so i64::MIN is expressible.
                        if let Expr::Literal(Value::Int(v)) = x {
                            return Ok((Expr::Literal(Value::Int(v.wrapping_neg())), t));
                        }
                        if let Expr::Literal(Value::Double(v)) = x {
                            return Ok((Expr::Literal(Value::Double(-v)), t));
                        }
                        Ok((
                            Expr::Unary {
                                op: UnaryOp::Neg,
                                arg: Box::new(x),
                            },
                            t,
                        ))
                    }
                    ast::UnaryOperator::Plus => Ok((x, t)),
                    other => Err(PlanError::at(span, format!("unsupported operator {other}"))),
                }
            }
            A::BinaryOp { left, op, right } => self.binary(left, op, right, span),
            A::IsNull(x) | A::IsNotNull(x) => {
                let (a, _) = self.plan(x)?;
                Ok((
                    Expr::IsNull {
                        arg: Box::new(a),
                        negated: matches!(e, A::IsNotNull(_)),
                    },
                    DataType::Bool,
                ))
            }
            A::IsTrue(x) | A::IsFalse(x) | A::IsNotTrue(x) | A::IsNotFalse(x) => {
                let (a, t) = self.plan(x)?;
                if !matches!(t, DataType::Bool | DataType::Null) {
                    return Err(PlanError::at(span, format!("IS TRUE/FALSE needs BOOLEAN, found {t}")));
                }
                let want = matches!(e, A::IsTrue(_) | A::IsNotTrue(_));
                let negated = matches!(e, A::IsNotTrue(_) | A::IsNotFalse(_));
                // x IS TRUE ⇔ COALESCE(x = TRUE, FALSE): never NULL.
                let eq = Expr::Binary {
                    op: BinaryOp::Eq,
                    left: Box::new(a),
                    right: Box::new(Expr::Literal(Value::Bool(want))),
                };
                let (coalesced, _) = plan_function(
                    "coalesce",
                    vec![
                        (eq, DataType::Bool),
                        (Expr::Literal(Value::Bool(false)), DataType::Bool),
                    ],
                )
                .map_err(|e| PlanError::at(span, e.to_string()))?;
                if negated {
                    Ok((
                        Expr::Unary {
                            op: UnaryOp::Not,
                            arg: Box::new(coalesced),
                        },
                        DataType::Bool,
                    ))
                } else {
                    Ok((coalesced, DataType::Bool))
                }
            }
            A::In {
                expr, target, negated, ..
            } => {
                let ast::InTarget::List(list) = target else {
                    return Err(PlanError::at(
                        span,
                        "IN needs a list of values; IN (SELECT …) is not supported",
                    ));
                };
                let (a, t) = self.plan(expr)?;
                let mut items = Vec::new();
                for item in list {
                    let planned = self.plan(item)?;
                    // Coerce each item against the probe with the `=` rules.
                    let (eq, _) = plan_binary(BinaryOp::Eq, (a.clone(), t), planned)
                        .map_err(|e| PlanError::at(item.span(), e.to_string()))?;
                    match eq {
                        Expr::Binary { right, .. } => items.push(*right),
                        other => items.push(other),
                    }
                }
                Ok((
                    Expr::InList {
                        arg: Box::new(a),
                        list: items,
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.plan(expr)?;
                let lo = self.plan(low)?;
                let hi = self.plan(high)?;
                let (ge, _) =
                    plan_binary(BinaryOp::GtEq, x.clone(), lo).map_err(|e| PlanError::at(span, e.to_string()))?;
                let (le, _) = plan_binary(BinaryOp::LtEq, x, hi).map_err(|e| PlanError::at(span, e.to_string()))?;
                let both = Expr::And(vec![ge, le]);
                if *negated {
                    Ok((
                        Expr::Unary {
                            op: UnaryOp::Not,
                            arg: Box::new(both),
                        },
                        DataType::Bool,
                    ))
                } else {
                    Ok((both, DataType::Bool))
                }
            }
            A::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | A::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(PlanError::at(span, "LIKE ANY and ESCAPE are not supported"));
                }
                let (a, t) = self.plan(expr)?;
                let (p, pt) = self.plan(pattern)?;
                for ty in [t, pt] {
                    if !matches!(ty, DataType::Str | DataType::Null) {
                        return Err(PlanError::at(span, format!("LIKE needs VARCHAR operands, found {ty}")));
                    }
                }
                Ok((
                    Expr::Like {
                        arg: Box::new(a),
                        pattern: Box::new(p),
                        negated: *negated,
                        case_insensitive: matches!(e, A::ILike { .. }),
                    },
                    DataType::Bool,
                ))
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref(), span),
            A::Cast {
                expr,
                data_type: dt,
                format,
                kind,
            } => {
                if format.is_some() {
                    return Err(PlanError::at(span, "CAST … FORMAT is not supported"));
                }
                if matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                    return Err(PlanError::at(
                        span,
                        "TRY_CAST is not supported; CAST yields NULL and counts an error on failure",
                    ));
                }
                let (x, from) = self.plan(expr)?;
                let to = data_type(dt, span)?;
                if !can_cast(from, to) {
                    return Err(PlanError::at(span, format!("cannot cast {from} to {to}")));
                }
                Ok((Expr::Cast { arg: Box::new(x), to }, to))
            }
            A::Extract { field, expr, .. } => {
                let x = self.plan(expr)?;
                let name = field.to_string();
                plan_function("extract", vec![(Expr::Literal(Value::str(&name)), DataType::Str), x])
                    .map_err(|e| PlanError::at(span, e.to_string()))
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.plan(expr)?];
                match substring_from {
                    Some(f) => args.push(self.plan(f)?),
                    None => args.push((Expr::Literal(Value::Int(1)), DataType::Int)),
                }
                if let Some(f) = substring_for {
                    args.push(self.plan(f)?);
                }
                plan_function("substring", args).map_err(|e| PlanError::at(span, e.to_string()))
            }
            A::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_what.is_some() || trim_characters.is_some() {
                    return Err(PlanError::at(
                        span,
                        "TRIM with characters is not supported; TRIM(s) trims spaces",
                    ));
                }
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "trim",
                };
                let x = self.plan(expr)?;
                plan_function(name, vec![x]).map_err(|e| PlanError::at(span, e.to_string()))
            }
            A::Floor { expr, field } | A::Ceil { expr, field } => {
                let name = if matches!(e, A::Floor { .. }) { "floor" } else { "ceil" };
                match field {
                    ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) => {}
                    _ => {
                        return Err(PlanError::at(
                            span,
                            format!("{} … TO <field> is not supported; use date_trunc", name.to_uppercase()),
                        ))
                    }
                }
                let x = self.plan(expr)?;
                plan_function(name, vec![x]).map_err(|e| PlanError::at(span, e.to_string()))
            }
            A::Position { expr, r#in } => {
                let needle = self.plan(expr)?;
                let hay = self.plan(r#in)?;
                plan_function("strpos", vec![hay, needle]).map_err(|e| PlanError::at(span, e.to_string()))
            }
            A::Function(f) => self.function(f, span),
            other => Err(PlanError::at(span, format!("unsupported expression: {other}"))),
        }
    }

    fn column(&mut self, parts: &[ast::Ident], span: Span) -> PlanResult<(Expr, DataType)> {
        if self.group.is_some() {
            // A leaf that matched no key, window bound or aggregate.
            let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            return Err(PlanError::at(
                span,
                format!(
                    "column '{}' must appear in GROUP BY or be used in an aggregate function",
                    name.join(".")
                ),
            ));
        }
        let i = self.scope.resolve(parts, span)?;
        Ok((Expr::Column(i), self.scope.columns[i].data_type))
    }

    /// In a grouped context: aggregate calls, window bounds and GROUP BY
    /// expressions become references into the intermediate row.
    fn plan_grouped_leaf(&mut self, e: &ast::Expr) -> PlanResult<Option<(Expr, DataType)>> {
        let span = e.span();
        let g = self.group.as_deref_mut().expect("grouped");
        if let ast::Expr::Function(f) = e {
            let name = function_name(f);
            if f.over.is_none() && is_aggregate_name(&name) {
                let call = plan_aggregate_call(f, &name, &g.input, span)?;
                let t = call.1;
                let idx = match g.calls.iter().position(|c| *c == call.0) {
                    Some(i) => i,
                    None => {
                        g.calls.push(call.0);
                        g.call_types.push(t);
                        g.calls.len() - 1
                    }
                };
                return Ok(Some((Expr::Column(g.call_offset() + idx), t)));
            }
        }
        if g.windowed {
            if let ast::Expr::Identifier(id) = e {
                if ident_eq(id, "window_start") && g.input.resolve(std::slice::from_ref(id), span).is_err() {
                    return Ok(Some((Expr::Column(g.window_offset()), DataType::Ts)));
                }
                if ident_eq(id, "window_end") && g.input.resolve(std::slice::from_ref(id), span).is_err() {
                    return Ok(Some((Expr::Column(g.window_offset() + 1), DataType::Ts)));
                }
            }
        }
        if contains_aggregate(e) {
            return Ok(None);
        }
        // Plan the sub-expression over the input; a key match or a constant
        // is a leaf.
        let plain = ExprPlanner::plain(&g.input).plan(e);
        if let Ok((x, t)) = plain {
            if let Some(i) = g.keys.iter().position(|(k, _)| *k == x) {
                return Ok(Some((Expr::Column(i), t)));
            }
            if !x.references_columns() {
                return Ok(Some((x, t)));
            }
        }
        Ok(None)
    }

    fn binary(
        &mut self,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
        span: Span,
    ) -> PlanResult<(Expr, DataType)> {
        use ast::BinaryOperator as B;
        // Timestamp ± INTERVAL.
        if matches!(op, B::Plus | B::Minus) {
            if let ast::Expr::Interval(i) = right {
                let ms = interval_ms(i, right.span())?;
                let (l, lt) = self.plan(left)?;
                if !matches!(lt, DataType::Ts | DataType::Null) {
                    return Err(PlanError::at(
                        span,
                        format!("INTERVAL arithmetic needs a TIMESTAMP, found {lt}"),
                    ));
                }
                let ms = if matches!(op, B::Minus) { -ms } else { ms };
                return plan_function(
                    "__ts_add_ms",
                    vec![(l, lt), (Expr::Literal(Value::Int(ms)), DataType::Int)],
                )
                .map_err(|e| PlanError::at(span, e.to_string()));
            }
            if let (ast::Expr::Interval(i), B::Plus) = (left, op) {
                let ms = interval_ms(i, left.span())?;
                let (r, rt) = self.plan(right)?;
                if !matches!(rt, DataType::Ts | DataType::Null) {
                    return Err(PlanError::at(
                        span,
                        format!("INTERVAL arithmetic needs a TIMESTAMP, found {rt}"),
                    ));
                }
                return plan_function(
                    "__ts_add_ms",
                    vec![(r, rt), (Expr::Literal(Value::Int(ms)), DataType::Int)],
                )
                .map_err(|e| PlanError::at(span, e.to_string()));
            }
        }
        match op {
            B::And | B::Or => {
                let l = self.plan_predicate(left, "AND/OR operand")?;
                let r = self.plan_predicate(right, "AND/OR operand")?;
                let flatten = |x: Expr, out: &mut Vec<Expr>, and: bool| match x {
                    Expr::And(v) if and => out.extend(v),
                    Expr::Or(v) if !and => out.extend(v),
                    other => out.push(other),
                };
                let and = matches!(op, B::And);
                let mut terms = Vec::new();
                flatten(l, &mut terms, and);
                flatten(r, &mut terms, and);
                Ok((if and { Expr::And(terms) } else { Expr::Or(terms) }, DataType::Bool))
            }
            _ => {
                let bop = match op {
                    B::Plus => BinaryOp::Add,
                    B::Minus => BinaryOp::Sub,
                    B::Multiply => BinaryOp::Mul,
                    B::Divide => BinaryOp::Div,
                    B::Modulo => BinaryOp::Mod,
                    B::Eq => BinaryOp::Eq,
                    B::NotEq => BinaryOp::NotEq,
                    B::Lt => BinaryOp::Lt,
                    B::LtEq => BinaryOp::LtEq,
                    B::Gt => BinaryOp::Gt,
                    B::GtEq => BinaryOp::GtEq,
                    B::StringConcat => BinaryOp::Concat,
                    other => return Err(PlanError::at(span, format!("unsupported operator {other}"))),
                };
                let l = self.plan(left)?;
                let r = self.plan(right)?;
                if bop == BinaryOp::Sub && l.1 == DataType::Ts && r.1 == DataType::Ts {
                    return plan_function("__ts_diff_ms", vec![l, r]).map_err(|e| PlanError::at(span, e.to_string()));
                }
                plan_binary(bop, l, r).map_err(|e| PlanError::at(span, e.to_string()))
            }
        }
    }

    fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        otherwise: Option<&ast::Expr>,
        span: Span,
    ) -> PlanResult<(Expr, DataType)> {
        let operand = operand.map(|o| self.plan(o)).transpose()?;
        let mut whens = Vec::new();
        let mut results = Vec::new();
        for w in conditions {
            let cond = match &operand {
                Some(o) => {
                    let c = self.plan(&w.condition)?;
                    let (eq, _) = plan_binary(BinaryOp::Eq, o.clone(), c)
                        .map_err(|e| PlanError::at(w.condition.span(), e.to_string()))?;
                    match eq {
                        Expr::Binary { right, .. } => *right,
                        other => other,
                    }
                }
                None => self.plan_predicate(&w.condition, "CASE WHEN condition")?,
            };
            whens.push(cond);
            results.push(self.plan(&w.result)?);
        }
        if let Some(o) = otherwise {
            results.push(self.plan(o)?);
        }
        // The result type: COALESCE's common-type rule over the branches.
        let (probe, t) = plan_function("coalesce", results.clone()).map_err(|e| PlanError::at(span, e.to_string()))?;
        let coerced: Vec<Expr> = match probe {
            Expr::Func { args, .. } if args.len() == results.len() => args,
            _ => results.into_iter().map(|(x, _)| x).collect(),
        };
        let mut coerced = coerced.into_iter();
        let pairs: Vec<(Expr, Expr)> = whens
            .into_iter()
            .map(|c| (c, coerced.next().expect("one result per WHEN")))
            .collect();
        let otherwise = coerced.next().map(Box::new);
        Ok((
            Expr::Case {
                operand: operand.map(|(o, _)| Box::new(o)),
                whens: pairs,
                otherwise,
            },
            t,
        ))
    }

    fn function(&mut self, f: &ast::Function, span: Span) -> PlanResult<(Expr, DataType)> {
        let name = function_name(f);
        if f.over.is_some() {
            return Err(PlanError::at(
                span,
                format!("window function {name}() OVER (…) is not supported here"),
            ));
        }
        if is_aggregate_name(&name) {
            return Err(PlanError::at(
                span,
                format!("aggregate function {name}() is not allowed here"),
            ));
        }
        if f.filter.is_some() {
            return Err(PlanError::at(
                span,
                format!("FILTER is only allowed on aggregate functions, not {name}()"),
            ));
        }
        if matches!(name.to_ascii_lowercase().as_str(), "tumble" | "hop" | "session") {
            return Err(PlanError::at(
                span,
                format!("{name}() is a window: use it in FROM or GROUP BY"),
            ));
        }
        let (args, distinct) = call_args(f)?;
        if distinct {
            return Err(PlanError::at(
                span,
                format!("DISTINCT is only allowed in aggregate functions, not {name}()"),
            ));
        }
        let mut planned = Vec::new();
        for a in args {
            match a {
                Some(x) => planned.push(self.plan(x)?),
                None => return Err(PlanError::at(span, format!("{name}(*) is not valid"))),
            }
        }
        // date_trunc('unit', ts) and friends take a unit literal; both
        // orders of naming are left to exec's function table.
        plan_function(&name, planned).map_err(|e| PlanError::at(span, e.to_string()))
    }
}

/// Plans an aggregate call's argument and FILTER over the input scope.
pub fn plan_aggregate_call(
    f: &ast::Function,
    name: &str,
    input: &Scope,
    span: Span,
) -> PlanResult<(AggCall, DataType)> {
    let kind = AggKind::from_name(name).expect("caller checked the name");
    let (args, distinct) = call_args(f)?;
    let mut plain = ExprPlanner::plain(input);
    let (kind, arg, input_type) = match (kind, args.as_slice(), distinct) {
        (AggKind::Count, [None], false) | (AggKind::Count, [], false) => (AggKind::CountStar, None, DataType::Int),
        (AggKind::Count, [Some(x)], true) => {
            let (e, t) = plain.plan(x)?;
            (AggKind::CountDistinct, Some(e), t)
        }
        (_, [Some(x)], false) => {
            let (e, t) = plain.plan(x)?;
            (kind, Some(e), t)
        }
        (_, _, true) => {
            return Err(PlanError::at(
                span,
                format!("DISTINCT is only supported in COUNT(DISTINCT x), not {name}"),
            ))
        }
        _ => return Err(PlanError::at(span, format!("{name}() takes exactly one argument"))),
    };
    if let Some(a) = args.iter().flatten().next() {
        if contains_aggregate(a) {
            return Err(PlanError::at(a.span(), "aggregate calls cannot be nested"));
        }
    }
    let filter = match &f.filter {
        Some(cond) => {
            if contains_aggregate(cond) {
                return Err(PlanError::at(
                    cond.span(),
                    "FILTER (WHERE …) cannot contain an aggregate",
                ));
            }
            Some(plain.plan_predicate(cond, "FILTER (WHERE …)")?)
        }
        None => None,
    };
    if f.over.is_some() {
        return Err(PlanError::at(span, "aggregate OVER (…) windows are not supported"));
    }
    let out = agg_output_type(kind, input_type).map_err(|e| PlanError::at(span, e.to_string()))?;
    Ok((
        AggCall {
            kind,
            arg,
            filter,
            input_type,
        },
        out,
    ))
}
