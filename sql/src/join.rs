//! Planning `FROM a JOIN b ON …` into an interval join.
//!
//! The ON condition is split into conjuncts: equalities between an
//! expression over `a` and one over `b` become the join keys; a bound on
//! the event-time columns (`b.ts BETWEEN a.ts - INTERVAL … AND a.ts +
//! INTERVAL …`, or the same with `>=`/`<=`, either side first) becomes the
//! interval; anything else is a residual condition over the joined row.
//! Both inputs must be append-only streams with an event-time column, and
//! the interval must be bounded on both ends: an unbounded stream join
//! would keep every row forever, so a join without any time bound is a
//! regular join with a state TTL (`PlanOptions::join_state_ttl_ms`,
//! default one hour of event time): the interval `[-ttl, +ttl]`, with the
//! rows that age out of state counted as evicted. A window join (`TUMBLE(a, …) JOIN
//! TUMBLE(b, …) ON a.window_start = b.window_start AND a.k = b.k`) is the
//! same operator over window-annotated rows: the window is a key, and the
//! bound (less than the window size apart) is implied.

use laminar_exec::expr::Expr;
use laminar_exec::operators::join::{IntervalJoinSpec, JoinKind};
use laminar_exec::plan::OperatorSpec;
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Span;

use crate::error::{PlanError, PlanResult};
use crate::expr::{interval_ms, ExprPlanner, Scope};
use crate::query::Relation;
use crate::Planner;

/// Which input a column or expression refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// `column + offset` where the column is an input's event-time column.
struct TimeTerm {
    side: Side,
    offset_ms: i64,
}

/// The AND-ed parts of `e`, appended to `out`.
pub(crate) fn conjuncts<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        ast::Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// Every column `e` references, as indexes into the joined scope.
fn referenced(scope: &Scope, e: &ast::Expr) -> PlanResult<Vec<usize>> {
    let mut found = Vec::new();
    let mut error = None;
    let _ = ast::visit_expressions(e, |x| {
        let r = match x {
            ast::Expr::Identifier(id) => Some(scope.resolve(std::slice::from_ref(id), x.span())),
            ast::Expr::CompoundIdentifier(parts) => Some(scope.resolve(parts, x.span())),
            _ => None,
        };
        match r {
            Some(Ok(i)) => found.push(i),
            Some(Err(e)) => {
                error.get_or_insert(e);
            }
            None => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match error {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

impl Planner {
    pub(crate) fn plan_join(
        &mut self,
        left: Relation,
        right: Relation,
        join: &ast::Join,
        name: &str,
        window: Option<(i64, sqlparser::tokenizer::Span)>,
    ) -> PlanResult<Relation> {
        let span = join.relation.span();
        let (kind, constraint) = match &join.join_operator {
            ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (JoinKind::Inner, c),
            ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
            ast::JoinOperator::AsOf {
                match_condition,
                constraint,
            } => {
                return self.plan_asof(left, right, match_condition, constraint, span, name, window);
            }
            other => {
                return Err(PlanError::at(
                    span,
                    format!(
                        "{} is not supported; stream joins are INNER or LEFT interval joins",
                        join_kind_name(other)
                    ),
                ))
            }
        };
        let on = match constraint {
            ast::JoinConstraint::On(e) => e,
            _ => {
                return Err(PlanError::at(
                    span,
                    "a stream join needs ON a.key = b.key AND b.ts BETWEEN a.ts - INTERVAL … AND a.ts + INTERVAL …",
                ))
            }
        };
        if let Some(primary_key) = self.table_key(&right) {
            return self.plan_lookup(left, right, &primary_key, on, kind, span, name, window);
        }
        let (left_time, right_time) = join_inputs(&left, &right, span, "an interval join")?;

        let (scope, left_width) = joined_scope(&left, &right);
        let right_width = right.scope.columns.len();
        let side_of = |i: usize| if i < left_width { Side::Left } else { Side::Right };

        let mut parts = Vec::new();
        conjuncts(on, &mut parts);
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut lower: Option<i64> = None;
        let mut upper: Option<i64> = None;
        let mut residual: Vec<Expr> = Vec::new();

        // `column (+|-) INTERVAL`, where the column is an event-time column.
        let time_term = |e: &ast::Expr| -> PlanResult<Option<TimeTerm>> {
            let (col, offset) = match e {
                ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => (e, 0),
                ast::Expr::BinaryOp { left: c, op, right: iv } => match (op, iv.as_ref()) {
                    (ast::BinaryOperator::Plus, ast::Expr::Interval(i)) => (c.as_ref(), interval_ms(i, iv.span())?),
                    (ast::BinaryOperator::Minus, ast::Expr::Interval(i)) => (c.as_ref(), -interval_ms(i, iv.span())?),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            let cols = referenced(&scope, col)?;
            let [i] = cols.as_slice() else { return Ok(None) };
            let side = side_of(*i);
            let is_time = match side {
                Side::Left => *i == left_time,
                Side::Right => *i - left_width == right_time,
            };
            Ok(is_time.then_some(TimeTerm {
                side,
                offset_ms: offset,
            }))
        };
        // Records `subject op other` as a bound on right.ts - left.ts, where
        // `ge` says whether subject >= other.
        let mut bound = |a: &TimeTerm, b: &TimeTerm, a_ge_b: bool| -> bool {
            // a.col + a.off (>=|<=) b.col + b.off, with a and b on opposite
            // sides. Normalise to d = right.ts - left.ts.
            let (d_ge, value) = match (a.side, b.side) {
                // r + ra >= l + lb  <=>  d >= lb - ra
                (Side::Right, Side::Left) => (a_ge_b, b.offset_ms - a.offset_ms),
                // l + la >= r + rb  <=>  d <= la - rb
                (Side::Left, Side::Right) => (!a_ge_b, a.offset_ms - b.offset_ms),
                _ => return false,
            };
            if d_ge {
                lower = Some(lower.map_or(value, |v: i64| v.max(value)));
            } else {
                upper = Some(upper.map_or(value, |v: i64| v.min(value)));
            }
            true
        };

        for part in parts {
            match part {
                ast::Expr::BinaryOp {
                    op: ast::BinaryOperator::Eq,
                    ..
                } => {
                    if let Some((lk, rk)) = equi_pair(&scope, left_width, &left, &right, part)? {
                        left_keys.push(lk);
                        right_keys.push(rk);
                        continue;
                    }
                }
                ast::Expr::Between {
                    expr,
                    negated: false,
                    low,
                    high,
                } => {
                    if let (Some(s), Some(lo), Some(hi)) = (time_term(expr)?, time_term(low)?, time_term(high)?) {
                        if bound(&s, &lo, true) && bound(&s, &hi, false) {
                            continue;
                        }
                        return Err(PlanError::at(
                            part.span(),
                            "the time bound must relate one input's event time to the other's",
                        ));
                    }
                }
                ast::Expr::BinaryOp { left: a, op, right: b }
                    if matches!(
                        op,
                        ast::BinaryOperator::GtEq
                            | ast::BinaryOperator::LtEq
                            | ast::BinaryOperator::Gt
                            | ast::BinaryOperator::Lt
                    ) =>
                {
                    if let (Some(ta), Some(tb)) = (time_term(a)?, time_term(b)?) {
                        // Strict bounds on millisecond times: a > b is a >= b + 1.
                        let (ge, strict) = match op {
                            ast::BinaryOperator::GtEq => (true, false),
                            ast::BinaryOperator::Gt => (true, true),
                            ast::BinaryOperator::LtEq => (false, false),
                            _ => (false, true),
                        };
                        let ta = TimeTerm {
                            side: ta.side,
                            offset_ms: ta.offset_ms
                                + if strict {
                                    if ge {
                                        -1
                                    } else {
                                        1
                                    }
                                } else {
                                    0
                                },
                        };
                        if bound(&ta, &tb, ge) {
                            continue;
                        }
                    }
                }
                _ => {}
            }
            residual.push(ExprPlanner::plain(&scope).plan_predicate(part, "ON")?);
        }

        if left_keys.is_empty() {
            return Err(PlanError::at(
                on.span(),
                "a stream join needs at least one equality between the two inputs (a.key = b.key)",
            ));
        }
        if let Some((size, wspan)) = window {
            // Rows of one window are less than its size apart. The window
            // itself must be a join key.
            let window_key = |keys: &[Expr], rel: &Relation| {
                keys.iter().any(|k| {
                    matches!(k, Expr::Column(c) if rel.scope.columns[*c].name.eq_ignore_ascii_case("window_start")
                        || rel.scope.columns[*c].name.eq_ignore_ascii_case("window_end"))
                })
            };
            if !window_key(&left_keys, &left) || !window_key(&right_keys, &right) {
                return Err(PlanError::at(
                    wspan,
                    "a window join needs the window among its keys: ON a.window_start = b.window_start AND …",
                ));
            }
            lower = Some(lower.map_or(1 - size, |v| v.max(1 - size)));
            upper = Some(upper.map_or(size - 1, |v| v.min(size - 1)));
        }
        // A regular join (no time bound at all) keeps rows for the state
        // TTL: rows further apart than it in event time never meet.
        let regular = lower.is_none() && upper.is_none();
        if regular {
            let ttl = self.options.join_state_ttl_ms;
            (lower, upper) = (Some(-ttl), Some(ttl));
        }
        let (Some(lower_ms), Some(upper_ms)) = (lower, upper) else {
            let l = &left.scope.columns[left_time];
            let r = &right.scope.columns[right_time];
            return Err(PlanError::at(
                on.span(),
                format!(
                    "the join's time bound has one end only; bound both, e.g. {rq}.{rn} BETWEEN {lq}.{ln} - INTERVAL '10' SECOND AND {lq}.{ln} + INTERVAL '10' SECOND",
                    lq = l.qualifier.as_deref().unwrap_or("a"),
                    ln = l.name,
                    rq = r.qualifier.as_deref().unwrap_or("b"),
                    rn = r.name,
                ),
            ));
        };
        if lower_ms > upper_ms {
            return Err(PlanError::at(
                on.span(),
                format!(
                    "the join's time bound is empty: right time - left time must lie in [{lower_ms}, {upper_ms}] ms"
                ),
            ));
        }
        let residual = match residual.len() {
            0 => None,
            1 => residual.pop(),
            _ => Some(Expr::And(residual)),
        };
        let spec = OperatorSpec::IntervalJoin(IntervalJoinSpec {
            name: name.to_string(),
            kind,
            left_keys,
            right_keys,
            left_time,
            right_time,
            left_width,
            right_width,
            lower_ms,
            upper_ms,
            residual,
            count_evictions: regular,
            entries_max: self.options.state_entries_max,
        });
        Ok(self.add_join_node(&left, &right, scope, left_time, spec, name))
    }
}

impl Planner {
    /// Adds the join node reading `left` and `right`; its rows are
    /// `scope` (left ++ right), timed by the left row.
    fn add_join_node(
        &mut self,
        left: &Relation,
        right: &Relation,
        scope: Scope,
        left_time: usize,
        spec: OperatorSpec,
        name: &str,
    ) -> Relation {
        let mut rel = Relation {
            input: left.input,
            scope,
            time_column: Some(left_time),
            changelog: false,
        };
        let schema = rel.schema();
        rel.input = self.add_node(name, vec![left.input, right.input], spec, schema, false);
        rel
    }

    /// The primary key columns of `rel` when it is a table read directly
    /// (its rows come from the table's upsert node).
    fn table_key(&self, rel: &Relation) -> Option<Vec<usize>> {
        match rel.input {
            laminar_exec::plan::Input::Node(n) => match &self.plan.nodes[n].spec {
                OperatorSpec::Upsert(u) => Some(u.key_columns.clone()),
                _ => None,
            },
            laminar_exec::plan::Input::Source(_) => None,
        }
    }

    /// `s JOIN t ON s.k = t.pk` with `t` a table: each stream row with the
    /// table's row for its key as of the row's event time (a table
    /// without event time: once the table is loaded). INNER drops stream
    /// rows without a row in the table, LEFT pads them.
    #[allow(clippy::too_many_arguments)]
    fn plan_lookup(
        &mut self,
        left: Relation,
        right: Relation,
        primary_key: &[usize],
        on: &ast::Expr,
        kind: JoinKind,
        span: Span,
        name: &str,
        window: Option<(i64, Span)>,
    ) -> PlanResult<Relation> {
        if let Some((_, wspan)) = window {
            return Err(PlanError::at(
                wspan,
                "a lookup join against a table does not take windows",
            ));
        }
        if left.changelog {
            return Err(PlanError::at(
                span,
                "the stream side of a lookup join is a changelog; it takes an append-only stream",
            ));
        }
        let Some(left_time) = left.time_column else {
            return Err(PlanError::at(
                span,
                "the stream side of a lookup join needs an event-time column (a source with WATERMARK FOR …)",
            ));
        };
        let (scope, left_width) = joined_scope(&left, &right);
        let (left_keys, right_keys) = equalities_only(
            &scope,
            left_width,
            (&left, &right),
            on,
            "a lookup join's ON takes equalities between the stream and the table's primary key only",
        )?;
        // The table holds one row per primary key: the join must look up
        // exactly that key, in the key's column order.
        let mut ordered = Vec::new();
        for &c in primary_key {
            let Some(i) = right_keys.iter().position(|k| *k == Expr::Column(c)) else {
                let names: Vec<&str> = primary_key
                    .iter()
                    .map(|&c| right.scope.columns[c].name.as_str())
                    .collect();
                return Err(PlanError::at(
                    on.span(),
                    format!(
                        "a lookup join must match the table's whole primary key ({})",
                        names.join(", ")
                    ),
                ));
            };
            ordered.push(i);
        }
        if ordered.len() != right_keys.len() {
            return Err(PlanError::at(
                on.span(),
                "a lookup join's ON takes the table's primary key columns only",
            ));
        }
        let left_keys = ordered.iter().map(|&i| left_keys[i].clone()).collect();
        let right_keys = ordered.iter().map(|&i| right_keys[i].clone()).collect();
        let spec = OperatorSpec::AsofJoin(laminar_exec::operators::asof::AsofJoinSpec {
            name: name.to_string(),
            left_keys,
            right_keys,
            left_time,
            right_time: right.time_column,
            right_changelog: true,
            keep_unmatched: kind == JoinKind::Left,
            left_width,
            right_width: right.scope.columns.len(),
            strict: false,
            entries_max: self.options.state_entries_max,
        });
        Ok(self.add_join_node(&left, &right, scope, left_time, spec, name))
    }

    /// `a ASOF JOIN b MATCH_CONDITION(a.ts >= b.ts) ON a.k = b.k`.
    #[allow(clippy::too_many_arguments)]
    fn plan_asof(
        &mut self,
        left: Relation,
        right: Relation,
        condition: &ast::Expr,
        constraint: &ast::JoinConstraint,
        span: sqlparser::tokenizer::Span,
        name: &str,
        window: Option<(i64, sqlparser::tokenizer::Span)>,
    ) -> PlanResult<Relation> {
        if let Some((_, wspan)) = window {
            return Err(PlanError::at(
                wspan,
                "ASOF JOIN does not take windows; window its result instead",
            ));
        }
        let (left_time, right_time) = join_inputs(&left, &right, span, "an ASOF JOIN")?;
        let (scope, left_width) = joined_scope(&left, &right);
        let col = |e: &ast::Expr| -> PlanResult<Option<usize>> {
            match e {
                ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                    let cols = referenced(&scope, e)?;
                    Ok(cols.first().copied())
                }
                _ => Ok(None),
            }
        };
        let is_left_time = |c: Option<usize>| c == Some(left_time);
        let is_right_time = |c: Option<usize>| c == Some(left_width + right_time);
        let strict = match condition {
            ast::Expr::BinaryOp { left: a, op, right: b } => {
                let (ca, cb) = (col(a)?, col(b)?);
                match op {
                    ast::BinaryOperator::GtEq if is_left_time(ca) && is_right_time(cb) => false,
                    ast::BinaryOperator::Gt if is_left_time(ca) && is_right_time(cb) => true,
                    ast::BinaryOperator::LtEq if is_right_time(ca) && is_left_time(cb) => false,
                    ast::BinaryOperator::Lt if is_right_time(ca) && is_left_time(cb) => true,
                    _ => {
                        return Err(PlanError::at(
                            condition.span(),
                            "MATCH_CONDITION must be left.ts >= right.ts (or >) on the two event-time columns",
                        ))
                    }
                }
            }
            _ => {
                return Err(PlanError::at(
                    condition.span(),
                    "MATCH_CONDITION must be left.ts >= right.ts (or >) on the two event-time columns",
                ))
            }
        };
        let ast::JoinConstraint::On(on) = constraint else {
            return Err(PlanError::at(span, "ASOF JOIN needs ON a.key = b.key"));
        };
        let (left_keys, right_keys) = equalities_only(
            &scope,
            left_width,
            (&left, &right),
            on,
            "ASOF JOIN's ON takes equalities between the two inputs only",
        )?;
        let spec = OperatorSpec::AsofJoin(laminar_exec::operators::asof::AsofJoinSpec {
            name: name.to_string(),
            left_keys,
            right_keys,
            left_time,
            right_time: Some(right_time),
            right_changelog: false,
            keep_unmatched: true,
            left_width,
            right_width: right.scope.columns.len(),
            strict,
            entries_max: self.options.state_entries_max,
        });
        Ok(self.add_join_node(&left, &right, scope, left_time, spec, name))
    }
}

/// The columns of a joined row, `left ++ right`, and the left width.
fn joined_scope(left: &Relation, right: &Relation) -> (Scope, usize) {
    let mut scope = left.scope.clone();
    scope.columns.extend(right.scope.columns.iter().cloned());
    (scope, left.scope.columns.len())
}

/// Checks what every stream join needs of its inputs: append-only, with
/// event-time columns (returned, left then right).
fn join_inputs(left: &Relation, right: &Relation, span: Span, what: &str) -> PlanResult<(usize, usize)> {
    for (rel, which) in [(left, "left"), (right, "right")] {
        if rel.changelog {
            return Err(PlanError::at(
                span,
                format!("the {which} input of {what} is a changelog; stream joins take append-only streams"),
            ));
        }
    }
    let side = |rel: &Relation| {
        rel.scope
            .columns
            .first()
            .and_then(|c| c.qualifier.clone())
            .unwrap_or_else(|| "that input".to_string())
    };
    match (left.time_column, right.time_column) {
        (Some(l), Some(r)) => Ok((l, r)),
        (l, r) => {
            let missing: Vec<String> = [(l, left), (r, right)]
                .into_iter()
                .filter(|(t, _)| t.is_none())
                .map(|(_, rel)| side(rel))
                .collect();
            Err(PlanError::at(
                span,
                format!(
                    "both inputs of {what} need an event-time column, so that its state can be bounded; \
                     {}: declare WATERMARK FOR <timestamp column> on the source, \
                     or make the right side a TABLE with a PRIMARY KEY to look rows up in it",
                    match missing.as_slice() {
                        [one] => format!("{one} has none"),
                        _ => format!("neither {} has one", missing.join(" nor ")),
                    }
                ),
            ))
        }
    }
}

/// An ON made of equalities between the inputs only: the key pairs, or
/// `refusal` at the first other condition.
fn equalities_only(
    scope: &Scope,
    left_width: usize,
    (left, right): (&Relation, &Relation),
    on: &ast::Expr,
    refusal: &str,
) -> PlanResult<(Vec<Expr>, Vec<Expr>)> {
    let mut parts = Vec::new();
    conjuncts(on, &mut parts);
    let (mut left_keys, mut right_keys) = (Vec::new(), Vec::new());
    for part in parts {
        let Some((lk, rk)) = equi_pair(scope, left_width, left, right, part)? else {
            return Err(PlanError::at(part.span(), refusal));
        };
        left_keys.push(lk);
        right_keys.push(rk);
    }
    Ok((left_keys, right_keys))
}

/// `x = y` with x over one input and y over the other: the two keys, each
/// planned against its own input (left first); None for anything else.
fn equi_pair(
    scope: &Scope,
    left_width: usize,
    left: &Relation,
    right: &Relation,
    part: &ast::Expr,
) -> PlanResult<Option<(Expr, Expr)>> {
    let ast::Expr::BinaryOp {
        left: a,
        op: ast::BinaryOperator::Eq,
        right: b,
    } = part
    else {
        return Ok(None);
    };
    let side_of = |i: usize| if i < left_width { Side::Left } else { Side::Right };
    let (ra, rb) = (referenced(scope, a)?, referenced(scope, b)?);
    let only = |cols: &[usize], s: Side| !cols.is_empty() && cols.iter().all(|&c| side_of(c) == s);
    let (l, r) = if only(&ra, Side::Left) && only(&rb, Side::Right) {
        (a, b)
    } else if only(&ra, Side::Right) && only(&rb, Side::Left) {
        (b, a)
    } else {
        return Ok(None);
    };
    let (lk, lt) = ExprPlanner::plain(&left.scope).plan(l)?;
    let (rk, rt) = ExprPlanner::plain(&right.scope).plan(r)?;
    if !comparable(lt, rt) {
        return Err(PlanError::at(
            part.span(),
            format!("join keys must have comparable types, found {lt} and {rt}"),
        ));
    }
    Ok(Some((lk, rk)))
}

fn comparable(a: laminar_exec::types::DataType, b: laminar_exec::types::DataType) -> bool {
    use laminar_exec::types::DataType as T;
    a == b || matches!((a, b), (T::Int, T::Double) | (T::Double, T::Int))
}

fn join_kind_name(op: &ast::JoinOperator) -> &'static str {
    match op {
        ast::JoinOperator::Right(_) | ast::JoinOperator::RightOuter(_) => "RIGHT JOIN",
        ast::JoinOperator::FullOuter(_) => "FULL JOIN",
        ast::JoinOperator::CrossJoin(_) => "CROSS JOIN",
        _ => "this kind of join",
    }
}
