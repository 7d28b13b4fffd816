//! Planning continuous queries: a SELECT becomes operator nodes.
//!
//! The shapes:
//! - projection/filter → `Map`;
//! - `FROM TUMBLE/HOP(src, ts, …)` without aggregation → `WindowTvf` (+ `Map`);
//! - GROUP BY over `window_start`/`window_end` of a window TVF, or with
//!   `TUMBLE(ts, …)`/`HOP(…)`/`SESSION(…)` in GROUP BY → a windowed
//!   `Aggregate` or `SessionAggregate`;
//! - any other GROUP BY → an unwindowed `Aggregate` (a changelog by default);
//! - `FROM (subquery) AS x` plans the subquery first (cascading in one
//!   statement).

use laminar_exec::expr::Expr;
use laminar_exec::operators::aggregate::AggregateSpec;
use laminar_exec::operators::late::LateStreamSpec;
use laminar_exec::operators::map::MapSpec;
use laminar_exec::operators::session::SessionSpec;
use laminar_exec::operators::window_tvf::WindowTvfSpec;
use laminar_exec::operators::{EmitMode, GroupOutput};
use laminar_exec::plan::{Input, OperatorSpec};
use laminar_exec::types::{DataType, Field, Schema};
use laminar_exec::window::WindowSpec;
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Span;

use crate::error::{PlanError, PlanResult};
use crate::expr::{contains_aggregate, ident_eq, interval_ms, ExprPlanner, GroupContext, Scope, ScopeColumn};
use crate::script::EmitClause;
use crate::Planner;

/// A planned relation: where its rows come from and what they look like.
#[derive(Debug, Clone)]
pub struct Relation {
    pub input: Input,
    pub scope: Scope,
    /// The event-time column (the source's watermark column, carried
    /// through projections), if any.
    pub time_column: Option<usize>,
    pub changelog: bool,
}

impl Relation {
    pub fn schema(&self) -> Schema {
        Schema::new(
            self.scope
                .columns
                .iter()
                .map(|c| Field::new(c.name.clone(), c.data_type))
                .collect(),
        )
    }

    /// The same relation seen under another name.
    pub fn requalified(mut self, qualifier: &str) -> Relation {
        for c in &mut self.scope.columns {
            c.qualifier = Some(qualifier.to_string());
        }
        self
    }
}

/// The streaming clauses of the statement being planned.
#[derive(Debug, Clone, Copy)]
pub struct StreamClauses {
    pub emit: Option<(EmitClause, Span)>,
    pub lateness_ms: Option<(i64, Span)>,
    /// `LATE DATA TO`; the stream's name is `Planner::late_target`.
    pub late_to: Option<Span>,
}

impl StreamClauses {
    /// No clauses: for the inner queries of a statement.
    pub const NONE: StreamClauses = StreamClauses {
        emit: None,
        lateness_ms: None,
        late_to: None,
    };
}

/// A window declared in FROM, not yet applied.
struct PendingWindow {
    spec: WindowSpec,
    time_column: usize,
    span: Span,
}

fn window_function(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "tumble" => Some("TUMBLE"),
        "hop" => Some("HOP"),
        "session" => Some("SESSION"),
        _ => None,
    }
}

/// Builds a WindowSpec from the size arguments of TUMBLE/HOP/SESSION.
fn window_spec(kind: &str, sizes: &[&ast::Expr], span: Span) -> PlanResult<WindowSpec> {
    let ms = |e: &ast::Expr| match e {
        ast::Expr::Interval(i) => interval_ms(i, e.span()),
        _ => Err(PlanError::at(
            e.span(),
            format!("{kind} sizes must be INTERVAL literals, e.g. INTERVAL '10' SECOND"),
        )),
    };
    let spec = match (kind, sizes) {
        ("TUMBLE", [size]) => WindowSpec::Tumble { size_ms: ms(size)? },
        ("HOP", [slide, size]) => WindowSpec::Hop {
            slide_ms: ms(slide)?,
            size_ms: ms(size)?,
        },
        ("SESSION", [gap]) => WindowSpec::Session { gap_ms: ms(gap)? },
        ("TUMBLE", _) => return Err(PlanError::at(span, "TUMBLE takes (time column, size)")),
        ("HOP", _) => return Err(PlanError::at(span, "HOP takes (time column, slide, size)")),
        _ => return Err(PlanError::at(span, "SESSION takes (time column, gap)")),
    };
    spec.validate().map_err(|e| PlanError::at(span, e.to_string()))?;
    Ok(spec)
}

fn time_column(scope: &Scope, e: &ast::Expr) -> PlanResult<usize> {
    let span = e.span();
    let i = match e {
        ast::Expr::Identifier(id) => scope.resolve(std::slice::from_ref(id), span)?,
        ast::Expr::CompoundIdentifier(parts) => scope.resolve(parts, span)?,
        _ => return Err(PlanError::at(span, "the window's time argument must be a column")),
    };
    match scope.columns[i].data_type {
        DataType::Ts | DataType::Int => Ok(i),
        t => Err(PlanError::at(
            span,
            format!("window time column must be TIMESTAMP or BIGINT (epoch ms), found {t}"),
        )),
    }
}

fn plain_args(args: &[ast::FunctionArg], span: Span) -> PlanResult<Vec<&ast::Expr>> {
    args.iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(PlanError::at(span, "window arguments must be plain expressions")),
        })
        .collect()
}

/// Output column name of a SELECT item.
fn item_name(e: &ast::Expr, position: usize) -> String {
    match e {
        ast::Expr::Identifier(id) => id.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => parts
            .last()
            .map_or_else(|| format!("expr_{position}"), |p| p.value.clone()),
        ast::Expr::Function(f) => f.name.to_string().to_ascii_lowercase(),
        ast::Expr::Nested(inner) => item_name(inner, position),
        ast::Expr::Cast { expr, .. } => item_name(expr, position),
        _ => format!("expr_{position}"),
    }
}

/// Makes output names unique: `n`, `n_2`, `n_3` …
fn dedupe_names(names: &mut [String]) {
    for i in 1..names.len() {
        let mut k = 2;
        let base = names[i].clone();
        while names[..i].iter().any(|n| n.eq_ignore_ascii_case(&names[i])) {
            names[i] = format!("{base}_{k}");
            k += 1;
        }
    }
}

impl Planner {
    pub(crate) fn plan_query(&mut self, q: &ast::Query, name: &str, clauses: StreamClauses) -> PlanResult<Relation> {
        if q.with.is_some() {
            return Err(PlanError::at(
                q.span(),
                "WITH (common table expressions) is not supported; define a stream instead",
            ));
        }
        if q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
            return Err(PlanError::at(
                q.span(),
                "ORDER BY / LIMIT have no meaning on an unbounded stream; use a window, or top-N with ROW_NUMBER()",
            ));
        }
        match q.body.as_ref() {
            ast::SetExpr::Select(s) => self.plan_select(s, name, clauses),
            ast::SetExpr::Query(inner) => self.plan_query(inner, name, clauses),
            other => Err(PlanError::at(
                other.span(),
                "only SELECT queries are supported (no UNION/VALUES yet)",
            )),
        }
    }

    fn plan_from(&mut self, s: &ast::Select, name: &str) -> PlanResult<(Relation, Option<PendingWindow>)> {
        let [from] = s.from.as_slice() else {
            return Err(PlanError::at(
                s.span(),
                if s.from.is_empty() {
                    "a stream needs FROM"
                } else {
                    "comma joins are not supported"
                },
            ));
        };
        if !from.joins.is_empty() {
            let [join] = from.joins.as_slice() else {
                return Err(PlanError::at(
                    from.joins[1].relation.span(),
                    "one JOIN per SELECT; join a joined stream in another CREATE STREAM",
                ));
            };
            let (left, lw) = self.plan_factor(&from.relation, name)?;
            let (right, rw) = self.plan_factor(&join.relation, name)?;
            // A window join: both sides windowed alike. Each row is
            // annotated with its windows, and the join keys include the
            // window, so two rows can only meet within one window's size.
            let (left, right, window) = match (lw, rw) {
                (None, None) => (left, right, None),
                (Some(a), Some(b)) if a.spec == b.spec => {
                    let size = a
                        .spec
                        .size_ms()
                        .ok_or_else(|| PlanError::at(a.span, "SESSION windows cannot be joined; use TUMBLE or HOP"))?;
                    let span = a.span;
                    let left = self.materialize_window(left, a, name)?;
                    let right = self.materialize_window(right, b, name)?;
                    (left, right, Some((size, span)))
                }
                (Some(w), _) | (_, Some(w)) => {
                    return Err(PlanError::at(
                        w.span,
                        "a window join needs the same TUMBLE/HOP window on both sides",
                    ))
                }
            };
            return Ok((self.plan_join(left, right, join, name, window)?, None));
        }
        self.plan_factor(&from.relation, name)
    }

    fn plan_factor(&mut self, factor: &ast::TableFactor, name: &str) -> PlanResult<(Relation, Option<PendingWindow>)> {
        match factor {
            ast::TableFactor::Table {
                name: table,
                alias,
                args,
                ..
            } => {
                let alias_name = alias.as_ref().map(|a| a.name.value.clone());
                match args {
                    None => {
                        let rel = self.lookup(table)?;
                        let q = alias_name.unwrap_or_else(|| table.to_string());
                        Ok((rel.requalified(&q), None))
                    }
                    Some(targs) => {
                        let span = factor.span();
                        let fname = table.to_string();
                        let Some(kind) = window_function(&fname) else {
                            return Err(PlanError::at(
                                span,
                                format!("unknown table function {fname}; expected TUMBLE, HOP or SESSION"),
                            ));
                        };
                        let args = plain_args(&targs.args, span)?;
                        let (src, rest) = match args.split_first() {
                            Some((src, rest)) if rest.len() >= 2 => (src, rest),
                            _ => {
                                return Err(PlanError::at(
                                    span,
                                    format!("{kind} takes (source, time column, size…)"),
                                ))
                            }
                        };
                        let src_name = match src {
                            ast::Expr::Identifier(id) => ast::ObjectName::from(vec![id.clone()]),
                            ast::Expr::CompoundIdentifier(parts) => ast::ObjectName::from(parts.clone()),
                            other => {
                                return Err(PlanError::at(
                                    other.span(),
                                    format!("{kind}'s first argument must name a source or stream"),
                                ))
                            }
                        };
                        let rel = self.lookup(&src_name)?;
                        let q = alias_name.unwrap_or_else(|| src_name.to_string());
                        let rel = rel.requalified(&q);
                        let tc = time_column(&rel.scope, rest[0])?;
                        let spec = window_spec(kind, &rest[1..], span)?;
                        Ok((
                            rel,
                            Some(PendingWindow {
                                spec,
                                time_column: tc,
                                span,
                            }),
                        ))
                    }
                }
            }
            ast::TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return Err(PlanError::at(factor.span(), "LATERAL is not supported"));
                }
                let rel = self.plan_query(subquery, name, StreamClauses::NONE)?;
                let q = alias
                    .as_ref()
                    .map_or_else(|| name.to_string(), |a| a.name.value.clone());
                Ok((rel.requalified(&q), None))
            }
            other => Err(PlanError::at(other.span(), "unsupported FROM item")),
        }
    }

    /// Applies a FROM window that no aggregate consumed: one row per
    /// (row, window) with `window_start`/`window_end` appended.
    fn materialize_window(&mut self, rel: Relation, w: PendingWindow, name: &str) -> PlanResult<Relation> {
        if matches!(w.spec, WindowSpec::Session { .. }) {
            return Err(PlanError::at(
                w.span,
                "SESSION windows need GROUP BY window_start, window_end (sessions exist per key)",
            ));
        }
        let mut scope = rel.scope.clone();
        let qualifier = scope.columns.first().and_then(|c| c.qualifier.clone());
        for n in ["window_start", "window_end"] {
            scope.columns.push(ScopeColumn {
                qualifier: qualifier.clone(),
                name: n.into(),
                data_type: DataType::Ts,
            });
        }
        let spec = OperatorSpec::WindowTvf(WindowTvfSpec {
            window: w.spec,
            time_column: w.time_column,
        });
        let schema = Relation {
            input: rel.input,
            scope: scope.clone(),
            time_column: None,
            changelog: false,
        }
        .schema();
        let input = self.add_node(name, vec![rel.input], spec, schema, rel.changelog);
        Ok(Relation {
            input,
            scope,
            time_column: rel.time_column,
            changelog: rel.changelog,
        })
    }

    fn plan_select(&mut self, s: &ast::Select, name: &str, clauses: StreamClauses) -> PlanResult<Relation> {
        if let Some(rel) = self.plan_top_n(s, name, clauses)? {
            return Ok(rel);
        }
        self.plan_select_inner(s, name, clauses)
    }

    pub(crate) fn plan_select_inner(
        &mut self,
        s: &ast::Select,
        name: &str,
        clauses: StreamClauses,
    ) -> PlanResult<Relation> {
        if s.distinct.is_some() {
            return Err(PlanError::at(
                s.span(),
                "SELECT DISTINCT is not supported; use GROUP BY",
            ));
        }
        if s.top.is_some()
            || s.into.is_some()
            || !s.lateral_views.is_empty()
            || s.qualify.is_some()
            || !s.named_window.is_empty()
        {
            return Err(PlanError::at(
                s.span(),
                "unsupported SELECT clause (TOP/INTO/LATERAL VIEW/QUALIFY/WINDOW)",
            ));
        }
        let (rel, pending) = self.plan_from(s, name)?;
        let group_exprs: Vec<&ast::Expr> = match &s.group_by {
            ast::GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(PlanError::at(
                        s.span(),
                        "GROUP BY modifiers (ROLLUP/CUBE/…) are not supported",
                    ));
                }
                exprs.iter().collect()
            }
            ast::GroupByExpr::All(_) => return Err(PlanError::at(s.span(), "GROUP BY ALL is not supported")),
        };
        let select_has_agg = s.projection.iter().any(|item| match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => contains_aggregate(e),
            _ => false,
        });
        let aggregating = !group_exprs.is_empty() || select_has_agg || s.having.is_some();
        if !aggregating {
            if let Some((_, span)) = clauses.lateness_ms {
                return Err(PlanError::at(
                    span,
                    "ALLOW LATENESS applies to windowed aggregates; this query has none",
                ));
            }
            if let Some(span) = clauses.late_to {
                return Err(PlanError::at(
                    span,
                    "LATE DATA TO applies to windowed aggregates; this query has none",
                ));
            }
            if let Some((EmitClause::Every { .. }, span)) = clauses.emit {
                return Err(PlanError::at(
                    span,
                    "EMIT EVERY applies to aggregates (GROUP BY); this query has none",
                ));
            }
            let rel = match pending {
                Some(w) => self.materialize_window(rel, w, name)?,
                None => rel,
            };
            return self.plan_projection(s, rel, name);
        }

        // Which window, if any, does the GROUP BY use?
        let names_window_bound = |e: &ast::Expr| {
            matches!(e, ast::Expr::Identifier(id) if ident_eq(id, "window_start") || ident_eq(id, "window_end"))
                || matches!(e, ast::Expr::CompoundIdentifier(p) if p.last().is_some_and(|id| ident_eq(id, "window_start") || ident_eq(id, "window_end")))
        };
        let mut window: Option<PendingWindow> = None;
        let mut rel = rel;
        let groups_by_bounds = group_exprs.iter().any(|e| names_window_bound(e));
        match pending {
            Some(w) if groups_by_bounds => window = Some(w),
            Some(w) => rel = self.materialize_window(rel, w, name)?,
            None => {}
        }
        let mut keys_ast = Vec::new();
        for e in &group_exprs {
            if let ast::Expr::Function(f) = e {
                if let Some(kind) = window_function(&f.name.to_string()) {
                    if window.is_some() {
                        return Err(PlanError::at(e.span(), "only one window per GROUP BY"));
                    }
                    let ast::FunctionArguments::List(list) = &f.args else {
                        return Err(PlanError::at(e.span(), format!("{kind} takes (time column, size…)")));
                    };
                    let args = plain_args(&list.args, e.span())?;
                    let Some((ts, sizes)) = args.split_first() else {
                        return Err(PlanError::at(e.span(), format!("{kind} takes (time column, size…)")));
                    };
                    let tc = time_column(&rel.scope, ts)?;
                    let spec = window_spec(kind, sizes, e.span())?;
                    window = Some(PendingWindow {
                        spec,
                        time_column: tc,
                        span: e.span(),
                    });
                    continue;
                }
            }
            if window.is_some() && names_window_bound(e) && rel.scope.resolve(&bound_parts(e), e.span()).is_err() {
                continue;
            }
            if contains_aggregate(e) {
                return Err(PlanError::at(e.span(), "GROUP BY cannot contain an aggregate"));
            }
            keys_ast.push(*e);
        }
        // A window named in GROUP BY only through bounds of a FROM window
        // is handled above; bounds without any window are plain columns.
        let mut g = GroupContext {
            input: rel.scope.clone(),
            keys: Vec::new(),
            windowed: window.is_some(),
            calls: Vec::new(),
            call_types: Vec::new(),
        };
        for e in keys_ast {
            let k = ExprPlanner::plain(&rel.scope).plan(e).map_err(|err| {
                if names_window_bound(e) {
                    PlanError::at(
                        e.span(),
                        "window_start/window_end need a window: FROM TUMBLE/HOP/SESSION(…) or a window in GROUP BY",
                    )
                } else {
                    err
                }
            })?;
            if !g.keys.iter().any(|(x, _)| *x == k.0) {
                g.keys.push(k);
            }
        }
        let filter = match &s.selection {
            Some(w) => {
                if contains_aggregate(w) {
                    return Err(PlanError::at(w.span(), "WHERE cannot contain an aggregate; use HAVING"));
                }
                Some(ExprPlanner::plain(&rel.scope).plan_predicate(w, "WHERE").map_err(|e| {
                    if window.is_some() && e.message.contains("unknown column 'window_") {
                        PlanError {
                            message: "WHERE runs before windowing; filter on window_start/window_end in HAVING".into(),
                            ..e
                        }
                    } else {
                        e
                    }
                })?)
            }
            None => None,
        };
        let mut select = Vec::new();
        let mut names = Vec::new();
        for (position, item) in s.projection.iter().enumerate() {
            let (e, alias) = match item {
                ast::SelectItem::UnnamedExpr(e) => (e, None),
                ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                other => {
                    return Err(PlanError::at(
                        other.span(),
                        "SELECT * is not allowed with GROUP BY; name the columns",
                    ))
                }
            };
            let planned = ExprPlanner {
                scope: &rel.scope,
                group: Some(&mut g),
            }
            .plan(e)?;
            names.push(alias.unwrap_or_else(|| item_name(e, position + 1)));
            select.push(planned);
        }
        let having = match &s.having {
            Some(h) => Some(
                ExprPlanner {
                    scope: &rel.scope,
                    group: Some(&mut g),
                }
                .plan_predicate(h, "HAVING")?,
            ),
            None => None,
        };
        dedupe_names(&mut names);

        let emit = match (clauses.emit, &window) {
            (None, Some(_)) => EmitMode::OnWindowClose,
            (None, None) => EmitMode::Changes,
            (Some((EmitClause::Changes, _)), _) => EmitMode::Changes,
            (Some((EmitClause::OnWindowClose, _)), _) => EmitMode::OnWindowClose,
            (Some((EmitClause::Final, _)), _) => EmitMode::Final,
            (
                Some((EmitClause::Every { .. }, span)),
                Some(PendingWindow {
                    spec: WindowSpec::Session { .. },
                    ..
                }),
            ) => {
                return Err(PlanError::at(
                    span,
                    "EMIT EVERY applies to GROUP BY and TUMBLE/HOP windows; a SESSION window can use EMIT CHANGES or EMIT ON WINDOW CLOSE",
                ))
            }
            (Some((EmitClause::Every { interval_ms }, _)), _) => EmitMode::Every { interval_ms },
        };
        let lateness_ms = match (clauses.lateness_ms, &window, emit) {
            (None, _, _) => 0,
            (Some((_, span)), None, _) => {
                return Err(PlanError::at(
                    span,
                    "ALLOW LATENESS applies to windowed aggregates; this GROUP BY has no window",
                ))
            }
            (Some((_, span)), Some(_), EmitMode::Final) => {
                return Err(PlanError::at(
                    span,
                    "EMIT FINAL closes windows without lateness; drop ALLOW LATENESS or use EMIT ON WINDOW CLOSE",
                ))
            }
            (Some((ms, _)), Some(_), _) => ms,
        };
        if let (Some(span), None) = (clauses.late_to, &window) {
            return Err(PlanError::at(
                span,
                "LATE DATA TO applies to windowed aggregates; this GROUP BY has no window",
            ));
        }
        let late_rows = clauses.late_to.is_some();

        // Intermediate row: keys ++ [window_start, window_end] ++ aggregates.
        let key_count = g.keys.len();
        let window_cols = if window.is_some() {
            [key_count, key_count + 1]
        } else {
            [usize::MAX; 2]
        };
        let output_time = select
            .iter()
            .position(|(x, _)| *x == Expr::Column(window_cols[1]))
            .or_else(|| select.iter().position(|(x, _)| *x == Expr::Column(window_cols[0])));
        let scope = output_scope(name, &select, &names);
        let output = GroupOutput {
            select: select.into_iter().map(|(x, _)| x).collect(),
            having,
        };
        let keys: Vec<Expr> = g.keys.into_iter().map(|(x, _)| x).collect();
        let changelog = emit.is_changelog();
        let retractable = rel.changelog;
        let entries_max = self.options.state_entries_max;
        if let (
            Some(PendingWindow {
                spec: WindowSpec::Session { .. },
                span,
                ..
            }),
            true,
        ) = (&window, retractable)
        {
            // A retraction can reach a session other than the one its row
            // joined (that one may have closed), so sessions need an
            // append-only input.
            return Err(PlanError::at(
                *span,
                "SESSION windows need an append-only input; this one is a changelog",
            ));
        }
        let spec = match window {
            Some(PendingWindow {
                spec: WindowSpec::Session { gap_ms },
                time_column,
                ..
            }) => OperatorSpec::Session(SessionSpec {
                name: name.to_string(),
                filter,
                keys,
                calls: g.calls,
                gap_ms,
                time_column,
                emit,
                lateness_ms,
                output,
                retractable,
                entries_max,
                late_rows,
            }),
            Some(PendingWindow { spec, time_column, .. }) => OperatorSpec::Aggregate(AggregateSpec {
                name: name.to_string(),
                filter,
                keys,
                calls: g.calls,
                window: Some(spec),
                time_column: Some(time_column),
                emit,
                lateness_ms,
                output,
                retractable,
                entries_max,
                late_rows,
                top: None,
            }),
            None => OperatorSpec::Aggregate(AggregateSpec {
                name: name.to_string(),
                filter,
                keys,
                calls: g.calls,
                window: None,
                time_column: rel.time_column,
                emit,
                lateness_ms,
                output,
                retractable,
                entries_max,
                late_rows,
                top: None,
            }),
        };
        let out = Relation {
            input: rel.input,
            scope,
            time_column: output_time,
            changelog,
        };
        let late_input = rel.clone();
        let input = self.add_node(name, vec![rel.input], spec, out.schema(), changelog);
        if late_rows {
            self.add_late_stream(input, late_input);
        }
        Ok(Relation { input, ..out })
    }

    /// The `LATE DATA TO` stream of the aggregate node `aggregate` over
    /// `input`: its rows unchanged plus `late_reason`, without an
    /// event-time column (every row is behind the watermark). Kept in
    /// `late_output` for the statement to define.
    fn add_late_stream(&mut self, aggregate: Input, input: Relation) {
        let name = self.late_target.clone().expect("LATE DATA TO names its stream");
        let mut names: Vec<String> = input.scope.columns.iter().map(|c| c.name.clone()).collect();
        names.push("late_reason".into());
        dedupe_names(&mut names);
        let types = input.scope.columns.iter().map(|c| c.data_type).chain([DataType::Str]);
        let scope = Scope {
            columns: names
                .into_iter()
                .zip(types)
                .map(|(n, t)| ScopeColumn {
                    qualifier: Some(name.clone()),
                    name: n,
                    data_type: t,
                })
                .collect(),
        };
        let late = Relation {
            input: aggregate,
            scope,
            time_column: None,
            changelog: input.changelog,
        };
        let spec = OperatorSpec::LateStream(LateStreamSpec { name: name.clone() });
        let node = self.add_node(&name, vec![aggregate], spec, late.schema(), late.changelog);
        // Reading the aggregate's marks does not make it read: a stream
        // nothing else reads still prints.
        self.unconsume(aggregate);
        self.late_output = Some(Relation { input: node, ..late });
    }

    fn plan_projection(&mut self, s: &ast::Select, rel: Relation, name: &str) -> PlanResult<Relation> {
        if s.having.is_some() {
            return Err(PlanError::at(s.span(), "HAVING needs GROUP BY or an aggregate"));
        }
        let filter = match &s.selection {
            Some(w) => Some(ExprPlanner::plain(&rel.scope).plan_predicate(w, "WHERE")?),
            None => None,
        };
        let mut exprs: Vec<(Expr, DataType)> = Vec::new();
        let mut names = Vec::new();
        for (position, item) in s.projection.iter().enumerate() {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    for (i, c) in rel.scope.columns.iter().enumerate() {
                        exprs.push((Expr::Column(i), c.data_type));
                        names.push(c.name.clone());
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    let ast::SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return Err(PlanError::at(item.span(), "expected relation.*"));
                    };
                    let q = name.to_string();
                    let mut any = false;
                    for (i, c) in rel.scope.columns.iter().enumerate() {
                        if c.qualifier.as_deref().is_some_and(|cq| cq.eq_ignore_ascii_case(&q)) {
                            exprs.push((Expr::Column(i), c.data_type));
                            names.push(c.name.clone());
                            any = true;
                        }
                    }
                    if !any {
                        return Err(PlanError::at(item.span(), format!("unknown relation {q} in {q}.*")));
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    exprs.push(ExprPlanner::plain(&rel.scope).plan(e)?);
                    names.push(item_name(e, position + 1));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    exprs.push(ExprPlanner::plain(&rel.scope).plan(expr)?);
                    names.push(alias.value.clone());
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(PlanError::at(
                        item.span(),
                        "AS (a, b, …) is not supported; give one alias",
                    ))
                }
            }
        }
        dedupe_names(&mut names);
        let identity = filter.is_none()
            && exprs.len() == rel.scope.columns.len()
            && exprs.iter().enumerate().all(|(i, (x, _))| *x == Expr::Column(i))
            && names.iter().zip(&rel.scope.columns).all(|(n, c)| *n == c.name);
        let time_column = rel
            .time_column
            .and_then(|tc| exprs.iter().position(|(x, _)| *x == Expr::Column(tc)));
        let scope = output_scope(name, &exprs, &names);
        if identity {
            return Ok(Relation {
                input: rel.input,
                scope,
                time_column,
                changelog: rel.changelog,
            });
        }
        let projection = if exprs.iter().enumerate().all(|(i, (x, _))| *x == Expr::Column(i))
            && exprs.len() == rel.scope.columns.len()
        {
            None
        } else {
            Some(exprs.into_iter().map(|(x, _)| x).collect())
        };
        let out = Relation {
            input: rel.input,
            scope,
            time_column,
            changelog: rel.changelog,
        };
        let spec = OperatorSpec::Map(MapSpec { filter, projection });
        let input = self.add_node(name, vec![rel.input], spec, out.schema(), rel.changelog);
        Ok(Relation { input, ..out })
    }
}

/// The scope a query's output presents to whoever reads it: its columns,
/// qualified by the stream's name.
fn output_scope(qualifier: &str, exprs: &[(Expr, DataType)], names: &[String]) -> Scope {
    Scope {
        columns: exprs
            .iter()
            .zip(names)
            .map(|((_, t), n)| ScopeColumn {
                qualifier: Some(qualifier.to_string()),
                name: n.clone(),
                data_type: *t,
            })
            .collect(),
    }
}

fn bound_parts(e: &ast::Expr) -> Vec<ast::Ident> {
    match e {
        ast::Expr::Identifier(id) => vec![id.clone()],
        ast::Expr::CompoundIdentifier(p) => p.clone(),
        _ => Vec::new(),
    }
}
