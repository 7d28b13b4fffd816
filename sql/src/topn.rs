//! Planning top-N: `SELECT … FROM (SELECT …, ROW_NUMBER() OVER (PARTITION
//! BY p ORDER BY o) AS rn FROM …) [AS x] WHERE rn <= N [AND …]`, and the
//! same with `RANK()`, `rn < N` or `rn = 1` (dedup).
//!
//! The subquery without its ranking column is planned as usual; a `TopN`
//! node ranks its rows (PARTITION BY and ORDER BY name columns of the
//! subquery's SELECT list) and appends the number; the outer query then
//! reads that node, with the `rn` bound removed from its WHERE (the node
//! applies it). A partition that includes `window_start` or `window_end`
//! makes a windowed top-N, emitted when the window closes (the subquery
//! must select `window_end`); any other is a changelog.

use laminar_exec::operators::topn::{RankKind, TopNSpec, TOP_N_MAX};
use laminar_exec::plan::OperatorSpec;
use laminar_exec::types::DataType;
use sqlparser::ast::{self, Spanned};

use crate::error::{PlanError, PlanResult};
use crate::expr::{ident_eq, ExprPlanner, ScopeColumn};
use crate::query::{Relation, StreamClauses};
use crate::Planner;

/// The ranking item of a subquery's SELECT list.
struct Ranking<'a> {
    index: usize,
    alias: String,
    kind: RankKind,
    spec: &'a ast::WindowSpec,
    span: sqlparser::tokenizer::Span,
}

fn ranking(select: &ast::Select) -> PlanResult<Option<Ranking<'_>>> {
    let mut found = None;
    for (index, item) in select.projection.iter().enumerate() {
        let (expr, alias) = match item {
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            ast::SelectItem::UnnamedExpr(expr) => (expr, None),
            _ => continue,
        };
        let ast::Expr::Function(f) = expr else { continue };
        let Some(over) = &f.over else { continue };
        let name = f.name.to_string().to_ascii_lowercase();
        let kind = match name.as_str() {
            "row_number" => RankKind::RowNumber,
            "rank" => RankKind::Rank,
            _ => {
                return Err(PlanError::at(
                    expr.span(),
                    format!("window function {name}() is not supported; ROW_NUMBER() and RANK() are"),
                ))
            }
        };
        let spec = match over {
            ast::WindowType::WindowSpec(spec) => spec,
            ast::WindowType::NamedWindow(_) => {
                return Err(PlanError::at(expr.span(), "named windows (OVER w) are not supported"))
            }
        };
        if spec.window_frame.is_some() {
            return Err(PlanError::at(
                expr.span(),
                "a window frame has no meaning for ROW_NUMBER()/RANK()",
            ));
        }
        if found.is_some() {
            return Err(PlanError::at(expr.span(), "one ROW_NUMBER()/RANK() per subquery"));
        }
        found = Some(Ranking {
            index,
            alias: alias.unwrap_or(name),
            kind,
            spec,
            span: expr.span(),
        });
    }
    Ok(found)
}

/// `rn <= N`, `rn < N`, `rn = N` (N = 1) or the mirrored forms: the bound n.
fn rank_bound(e: &ast::Expr, alias: &str, qualifier: &str) -> PlanResult<Option<usize>> {
    let is_rn = |x: &ast::Expr| match x {
        ast::Expr::Identifier(id) => ident_eq(id, alias),
        ast::Expr::CompoundIdentifier(p) => p.len() == 2 && ident_eq(&p[0], qualifier) && ident_eq(&p[1], alias),
        _ => false,
    };
    let number = |x: &ast::Expr| -> Option<i64> {
        match x {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse().ok(),
                _ => None,
            },
            _ => None,
        }
    };
    let ast::Expr::BinaryOp { left, op, right } = e else {
        return Ok(None);
    };
    let (op, n) = if is_rn(left) {
        match number(right) {
            Some(n) => (op.clone(), n),
            None => return Ok(None),
        }
    } else if is_rn(right) {
        let mirrored = match op {
            ast::BinaryOperator::GtEq => ast::BinaryOperator::LtEq,
            ast::BinaryOperator::Gt => ast::BinaryOperator::Lt,
            other => other.clone(),
        };
        match number(left) {
            Some(n) => (mirrored, n),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let bound = match op {
        ast::BinaryOperator::LtEq => n,
        ast::BinaryOperator::Lt => n - 1,
        ast::BinaryOperator::Eq if n == 1 => 1,
        _ => {
            return Err(PlanError::at(
                e.span(),
                format!("bound the rank with {alias} <= N, {alias} < N or {alias} = 1"),
            ))
        }
    };
    if bound < 1 || bound > TOP_N_MAX as i64 {
        return Err(PlanError::at(
            e.span(),
            format!("the top-N bound must be between 1 and {TOP_N_MAX}, found {bound}"),
        ));
    }
    Ok(Some(bound as usize))
}

impl Planner {
    /// Whether the rows of `input` come from windows of one fixed size:
    /// through projections back to a TUMBLE or HOP aggregate or window
    /// annotation (a session's start does not fix its end).
    fn fixed_size_windows(&self, input: laminar_exec::plan::Input) -> bool {
        use laminar_exec::plan::Input;
        use laminar_exec::window::WindowSpec;
        let fixed = |w: &WindowSpec| !matches!(w, WindowSpec::Session { .. });
        let mut at = input;
        loop {
            let Input::Node(n) = at else { return false };
            let node = &self.plan.nodes[n];
            match &node.spec {
                OperatorSpec::Map(_) => match node.inputs.as_slice() {
                    [only] => at = *only,
                    _ => return false,
                },
                OperatorSpec::Aggregate(a) => return a.window.as_ref().is_some_and(fixed),
                OperatorSpec::WindowTvf(w) => return fixed(&w.window),
                _ => return false,
            }
        }
    }

    /// Plans `s` if it is a top-N query; None if it is not one.
    pub(crate) fn plan_top_n(
        &mut self,
        s: &ast::Select,
        name: &str,
        clauses: StreamClauses,
    ) -> PlanResult<Option<Relation>> {
        let [from] = s.from.as_slice() else { return Ok(None) };
        if !from.joins.is_empty() {
            return Ok(None);
        }
        let ast::TableFactor::Derived { subquery, alias, .. } = &from.relation else {
            return Ok(None);
        };
        let ast::SetExpr::Select(inner) = subquery.body.as_ref() else {
            return Ok(None);
        };
        let Some(rank) = ranking(inner)? else { return Ok(None) };
        let qualifier = alias
            .as_ref()
            .map_or_else(|| name.to_string(), |a| a.name.value.clone());

        // The bound, from the outer WHERE.
        let mut bound = None;
        let mut rest = Vec::new();
        if let Some(w) = &s.selection {
            let mut parts = Vec::new();
            crate::join::conjuncts(w, &mut parts);
            for c in parts {
                match rank_bound(c, &rank.alias, &qualifier)? {
                    Some(n) if bound.is_none() => bound = Some(n),
                    Some(_) => return Err(PlanError::at(c.span(), "bound the rank once")),
                    None => rest.push(c.clone()),
                }
            }
        }
        let Some(n) = bound else {
            return Err(PlanError::at(
                rank.span,
                format!(
                    "{}() over a stream needs a bound in the outer WHERE, e.g. WHERE {} <= 3 (an unbounded number would keep every row)",
                    if rank.kind == RankKind::Rank { "RANK" } else { "ROW_NUMBER" },
                    rank.alias
                ),
            ));
        };

        // The subquery without its ranking item.
        let mut plain = (**inner).clone();
        plain.projection.remove(rank.index);
        let mut plain_query = (**subquery).clone();
        *plain_query.body = ast::SetExpr::Select(Box::new(plain.clone()));
        let mut rel = self.plan_query(&plain_query, name, StreamClauses::NONE)?;
        // Partitioned by window_start alone over fixed-size windows (TUMBLE,
        // HOP): window_start fixes the window, and its end, which the node
        // closes partitions at, comes along as a column of its own.
        let names = |column: &str| {
            rank.spec.partition_by.iter().any(|e| match e {
                ast::Expr::Identifier(id) => ident_eq(id, column),
                ast::Expr::CompoundIdentifier(p) => p.last().is_some_and(|id| ident_eq(id, column)),
                _ => false,
            })
        };
        let has_end = |rel: &Relation| {
            rel.scope
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case("window_end"))
        };
        if names("window_start") && !names("window_end") && !has_end(&rel) && self.fixed_size_windows(rel.input) {
            let mut with_end = plain;
            with_end
                .projection
                .push(ast::SelectItem::UnnamedExpr(ast::Expr::Identifier(ast::Ident::new(
                    "window_end",
                ))));
            *plain_query.body = ast::SetExpr::Select(Box::new(with_end));
            if let Ok(r) = self.plan_query(&plain_query, name, StreamClauses::NONE) {
                rel = r;
            }
        }

        let partition = rank
            .spec
            .partition_by
            .iter()
            .map(|e| ExprPlanner::plain(&rel.scope).plan(e).map(|(x, _)| x))
            .collect::<PlanResult<Vec<_>>>()
            .map_err(|e| PlanError {
                message: format!(
                    "{} (PARTITION BY must name columns of the subquery's SELECT list)",
                    e.message
                ),
                ..e
            })?;
        if rank.spec.order_by.is_empty() {
            return Err(PlanError::at(rank.span, "ROW_NUMBER()/RANK() needs ORDER BY"));
        }
        let mut order = Vec::new();
        for o in &rank.spec.order_by {
            let desc = match &o.options.sort {
                None | Some(ast::OrderBySort::Asc) => false,
                Some(ast::OrderBySort::Desc) => true,
                Some(ast::OrderBySort::Using(_)) => {
                    return Err(PlanError::at(o.expr.span(), "ORDER BY … USING is not supported"))
                }
            };
            if o.options.nulls_first.is_some() {
                return Err(PlanError::at(
                    o.expr.span(),
                    "NULLS FIRST/LAST is not supported (NULLs sort last)",
                ));
            }
            let (e, _) = ExprPlanner::plain(&rel.scope).plan(&o.expr).map_err(|e| PlanError {
                message: format!(
                    "{} (ORDER BY must name columns of the subquery's SELECT list)",
                    e.message
                ),
                ..e
            })?;
            order.push((e, desc));
        }
        let names_window = rank.spec.partition_by.iter().any(|e| match e {
            ast::Expr::Identifier(id) => ident_eq(id, "window_start") || ident_eq(id, "window_end"),
            ast::Expr::CompoundIdentifier(p) => p
                .last()
                .is_some_and(|id| ident_eq(id, "window_start") || ident_eq(id, "window_end")),
            _ => false,
        });
        let window_end = if names_window {
            let Some(i) = rel
                .scope
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case("window_end"))
            else {
                return Err(PlanError::at(
                    rank.span,
                    "a top-N per window needs window_end in the subquery's SELECT list (the window closes at it)",
                ));
            };
            Some(i)
        } else {
            None
        };
        let mut scope = rel.scope.clone();
        scope.columns.push(ScopeColumn {
            qualifier: scope.columns.first().and_then(|c| c.qualifier.clone()),
            name: rank.alias.clone(),
            data_type: DataType::Int,
        });
        let changelog = window_end.is_none() || rel.changelog;
        let mut out = Relation {
            input: rel.input,
            scope,
            time_column: rel.time_column,
            changelog,
        };
        let spec = OperatorSpec::TopN(TopNSpec {
            name: name.to_string(),
            partition,
            order,
            n,
            kind: rank.kind,
            window_end,
            entries_max: self.options.state_entries_max,
            retractable: rel.changelog,
        });
        out.input = self.add_node(name, vec![rel.input], spec, out.schema(), changelog);
        let out = out.requalified(&qualifier);

        // The outer query, reading the ranked rows under the subquery's name.
        let mut outer = s.clone();
        outer.selection = rest.into_iter().reduce(|a, b| ast::Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        });
        let temp = format!("__top_n_{}", out.scope.columns.len());
        // `FROM temp AS qualifier`, built by the parser so that the AST
        // stays whatever this sqlparser version says it is.
        let from_sql = format!("SELECT 1 FROM {temp} AS \"{}\"", qualifier.replace('"', "\"\""));
        let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, &from_sql)
            .map_err(|e| PlanError::at(rank.span, format!("internal: re-parsing the top-N source: {e}")))?;
        let Some(ast::Statement::Query(q)) = parsed.into_iter().next() else {
            return Err(PlanError::at(rank.span, "internal: re-parsing the top-N source"));
        };
        let ast::SetExpr::Select(sel) = *q.body else {
            return Err(PlanError::at(rank.span, "internal: re-parsing the top-N source"));
        };
        outer.from = sel.from;
        let ranked_input = out.input;
        self.define_temporary(&temp, out);
        let planned = self.plan_select_inner(&outer, name, clauses);
        self.forget_temporary(&temp);
        let planned = planned?;
        if planned.input == ranked_input {
            // The outer query added no node: the ranked rows are the
            // stream itself, read by nothing yet (the lookup of the
            // temporary name is not a reader).
            self.unconsume(ranked_input);
        }
        Ok(Some(planned))
    }
}
