//! What a client may ask, parsed and checked against the running plan:
//! `SHOW …`, `EXPLAIN <stream>`, `SELECT … FROM <view> [WHERE …] [ORDER
//! BY …] [LIMIT n]`, `SUBSCRIBE <stream>` and `COPY (SUBSCRIBE <stream>)
//! TO STDOUT`. Everything else is an error with a SQLSTATE and, where
//! one is known, the position in the query text.
//!
//! A SELECT's expressions (the projection, WHERE, ORDER BY) are planned
//! by the pipeline's own expression planner over the view's columns and
//! evaluated by the engine's evaluator, so they mean what they mean in a
//! `CREATE STREAM`. An equality of every column of a WHERE's top-level
//! AND with a literal is a lookup (`Lookup`) in the view's hash index.

use laminar_exec::expr::Expr;
use laminar_exec::plan::PhysicalPlan;
use laminar_exec::types::{DataType, Schema, Value};
use laminar_sql::expr::{ExprPlanner, Scope, ScopeColumn};
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{PgError, SqlState};

/// A statement a client sent, checked against the plan.
#[derive(Debug, Clone)]
pub enum Statement {
    ShowSources,
    ShowStreams,
    ShowSinks,
    ShowCheckpoints,
    Explain(String),
    Select(Select),
    Subscribe { stream: String, copy: bool },
}

/// A planned `SELECT` over one view.
#[derive(Debug, Clone)]
pub struct Select {
    pub stream: String,
    /// Output columns: name, type, expression over the view's row.
    pub columns: Vec<(String, DataType, Expr)>,
    pub filter: Option<Expr>,
    /// Column = literal conjuncts of the filter, by view column.
    pub lookup: Vec<(usize, Value)>,
    /// Sort keys over the view's row, descending flags.
    pub order: Vec<(Expr, bool)>,
    pub limit: Option<usize>,
}

/// The longest statement served (PostgreSQL takes up to 1 GB; a read-only
/// face has no use for more than this, and planning time grows with it).
pub const STATEMENT_BYTES_MAX: usize = 1 << 20;

/// The words of a statement with their byte offsets (no comments or
/// whitespace).
fn words(text: &str) -> Result<Vec<(Token, usize)>, PgError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| PgError::new(SqlState::SyntaxError, e.message.clone()).at(offset(text, e.location)))?;
    // Tokens come in order: one pass over the text finds every offset
    // (one search per token was quadratic in a long statement's length).
    let mut cursor = Cursor::new(text);
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
        .map(|t| {
            let at = cursor.advance_to(t.span.start);
            (t.token, at)
        })
        .collect())
}

/// Byte offsets of ascending 1-based (line, column) locations, found in
/// one pass.
struct Cursor<'a> {
    text: &'a str,
    line: u64,
    column: u64,
    byte: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            line: 1,
            column: 1,
            byte: 0,
        }
    }

    fn advance_to(&mut self, at: Location) -> usize {
        if (at.line, at.column) < (self.line, self.column) || at.line == 0 {
            return offset(self.text, at);
        }
        for c in self.text[self.byte..].chars() {
            if (self.line, self.column) >= (at.line, at.column) {
                break;
            }
            self.byte += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.byte
    }
}

/// The byte offset of a 1-based line and column in `text`.
pub fn offset(text: &str, at: Location) -> usize {
    if at.line == 0 {
        return 0;
    }
    let mut line_start = 0;
    for _ in 1..at.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    text[line_start..]
        .char_indices()
        .nth(at.column.saturating_sub(1) as usize)
        .map_or(text.len(), |(i, _)| line_start + i)
}

fn word_is(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w))
}

fn name_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) => Some(w.value.clone()),
        _ => None,
    }
}

/// Parses and checks one statement.
pub fn parse(text: &str, plan: &PhysicalPlan) -> Result<Statement, PgError> {
    if text.len() > STATEMENT_BYTES_MAX {
        return Err(PgError::new(
            SqlState::ProgramLimitExceeded,
            format!(
                "the statement is {} bytes, more than {STATEMENT_BYTES_MAX}: laminar serves reads of views, not bulk text",
                text.len()
            ),
        ));
    }
    let w = words(text)?;
    let Some((first, at)) = w.first() else {
        return Err(PgError::new(SqlState::SyntaxError, "empty statement"));
    };
    let unexpected = |i: usize, what: &str| {
        let (found, at) = w
            .get(i)
            .map_or(("the end".to_string(), text.len()), |(t, at)| (format!("{t}"), *at));
        PgError::new(SqlState::SyntaxError, format!("expected {what}, found {found}")).at(at)
    };
    let end = |i: usize| -> Result<(), PgError> {
        match w.get(i) {
            None => Ok(()),
            Some(_) => Err(unexpected(i, "the end of the statement")),
        }
    };
    if word_is(first, "SHOW") {
        let what = w.get(1).and_then(|(t, _)| name_of(t)).unwrap_or_default();
        let statement = match what.to_ascii_uppercase().as_str() {
            "SOURCES" => Statement::ShowSources,
            "STREAMS" | "VIEWS" | "MATERIALIZED" => Statement::ShowStreams,
            "SINKS" => Statement::ShowSinks,
            "CHECKPOINTS" => Statement::ShowCheckpoints,
            _ => return Err(unexpected(1, "SOURCES, STREAMS, SINKS or CHECKPOINTS")),
        };
        let next = if what.eq_ignore_ascii_case("MATERIALIZED") {
            if !w.get(2).is_some_and(|(t, _)| word_is(t, "VIEWS")) {
                return Err(unexpected(2, "VIEWS"));
            }
            3
        } else {
            2
        };
        end(next)?;
        return Ok(statement);
    }
    if word_is(first, "EXPLAIN") {
        let name = w
            .get(1)
            .and_then(|(t, _)| name_of(t))
            .ok_or_else(|| unexpected(1, "a stream's name"))?;
        end(2)?;
        stream_node(plan, &name, w[1].1)?;
        return Ok(Statement::Explain(name));
    }
    if word_is(first, "SUBSCRIBE") {
        let (stream, next) = subscribed(&w, 1, text, plan)?;
        end(next)?;
        return Ok(Statement::Subscribe { stream, copy: false });
    }
    if word_is(first, "COPY") {
        if !matches!(w.get(1), Some((Token::LParen, _))) {
            return Err(PgError::new(
                SqlState::FeatureNotSupported,
                "only COPY (SUBSCRIBE <stream>) TO STDOUT is served: laminar's views are read-only",
            )
            .at(*at));
        }
        if !w.get(2).is_some_and(|(t, _)| word_is(t, "SUBSCRIBE")) {
            return Err(unexpected(2, "SUBSCRIBE"));
        }
        let (stream, next) = subscribed(&w, 3, text, plan)?;
        if !matches!(w.get(next), Some((Token::RParen, _))) {
            return Err(unexpected(next, ")"));
        }
        if !w.get(next + 1).is_some_and(|(t, _)| word_is(t, "TO")) {
            return Err(unexpected(next + 1, "TO"));
        }
        if !w.get(next + 2).is_some_and(|(t, _)| word_is(t, "STDOUT")) {
            return Err(unexpected(next + 2, "STDOUT"));
        }
        end(next + 3)?;
        return Ok(Statement::Subscribe { stream, copy: true });
    }
    if word_is(first, "SELECT") {
        return select(text, plan).map(Statement::Select);
    }
    let word = name_of(first).unwrap_or_else(|| format!("{first}"));
    Err(PgError::new(
        SqlState::FeatureNotSupported,
        format!(
            "{} is not served: laminar answers SHOW SOURCES|STREAMS|SINKS|CHECKPOINTS, EXPLAIN, SELECT over a view, SUBSCRIBE",
            word.to_ascii_uppercase()
        ),
    )
    .at(*at))
}

/// `[TO] <stream>` from word `i`: the stream and the next word's index.
fn subscribed(w: &[(Token, usize)], mut i: usize, text: &str, plan: &PhysicalPlan) -> Result<(String, usize), PgError> {
    if w.get(i).is_some_and(|(t, _)| word_is(t, "TO")) {
        i += 1;
    }
    let Some((name, at)) = w.get(i).and_then(|(t, at)| Some((name_of(t)?, *at))) else {
        let at = w.get(i).map_or(text.len(), |(_, at)| *at);
        return Err(PgError::new(SqlState::SyntaxError, "expected a stream's name").at(at));
    };
    stream_node(plan, &name, at)?;
    Ok((name, i + 1))
}

/// The node computing stream `name`, or the error for a name that is a
/// source or nothing (at byte `at` of the statement).
fn stream_node(plan: &PhysicalPlan, name: &str, at: usize) -> Result<usize, PgError> {
    laminar_reactor::view::output_node(plan, name).ok_or_else(|| {
        let message = if plan.sources.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
            format!("{name} is a source: its rows are not kept; SUBSCRIBE to a stream that reads it")
        } else {
            format!("no view or stream is named {name:?}")
        };
        PgError::new(SqlState::UndefinedTable, message).at(at)
    })
}

fn unsupported(what: &str, text: &str, span: sqlparser::tokenizer::Span) -> PgError {
    PgError::new(
        SqlState::FeatureNotSupported,
        format!("{what} is not served: SELECT … FROM <view> [WHERE …] [ORDER BY …] [LIMIT n]"),
    )
    .at(offset(text, span.start))
}

fn select(text: &str, plan: &PhysicalPlan) -> Result<Select, PgError> {
    use sqlparser::ast::Spanned;
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, text).map_err(|e| parse_error(text, e))?;
    let [ast::Statement::Query(q)] = &statements[..] else {
        return Err(PgError::new(SqlState::SyntaxError, "one SELECT statement at a time"));
    };
    if q.with.is_some() || q.fetch.is_some() || !q.locks.is_empty() {
        return Err(unsupported("this clause", text, q.span()));
    }
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return Err(unsupported("a set operation", text, q.body.span()));
    };
    if s.distinct.is_some() || s.having.is_some() || s.qualify.is_some() || !s.named_window.is_empty() {
        return Err(unsupported("DISTINCT, HAVING, QUALIFY or WINDOW", text, s.span()));
    }
    if !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()) {
        return Err(unsupported("GROUP BY (a view is read as it is)", text, s.span()));
    }
    let [from] = &s.from[..] else {
        let span = s.from.get(1).map_or(s.span(), |f| f.span());
        return Err(unsupported("a SELECT without exactly one view in FROM", text, span));
    };
    if !from.joins.is_empty() {
        return Err(unsupported("a join", text, from.joins[0].span()));
    }
    let ast::TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(unsupported("this FROM item", text, from.relation.span()));
    };
    let stream = name.to_string();
    let at = offset(text, name.span().start);
    let node = stream_node(plan, &stream, at)?;
    laminar_reactor::view::check(plan, &stream)
        .map_err(|e| PgError::new(SqlState::FeatureNotSupported, e.to_string()).at(at))?;
    let schema: &Schema = &plan.nodes[node].schema;
    let qualifier = alias.as_ref().map_or_else(|| stream.clone(), |a| a.name.value.clone());
    let scope = Scope {
        columns: schema
            .fields
            .iter()
            .map(|f| ScopeColumn {
                qualifier: Some(qualifier.clone()),
                name: f.name.clone(),
                data_type: f.data_type,
            })
            .collect(),
    };
    let plan_error = |e: laminar_sql::error::PlanError| {
        let code = if e.message.contains("unknown column") || e.message.contains("no column") {
            SqlState::UndefinedColumn
        } else {
            SqlState::SyntaxError
        };
        let mut err = PgError::new(code, e.message);
        if let Some(l) = e.location {
            err = err.at(offset(text, l));
        }
        err
    };
    let mut planner = ExprPlanner::plain(&scope);
    let mut columns = Vec::new();
    for item in &s.projection {
        match item {
            ast::SelectItem::Wildcard(_) => {
                for (i, f) in schema.fields.iter().enumerate() {
                    columns.push((f.name.clone(), f.data_type, Expr::Column(i)));
                }
            }
            ast::SelectItem::UnnamedExpr(e) => {
                let (x, t) = planner.plan(e).map_err(plan_error)?;
                let name = match e {
                    ast::Expr::Identifier(i) => i.value.clone(),
                    ast::Expr::CompoundIdentifier(p) => p.last().map_or_else(String::new, |i| i.value.clone()),
                    _ => "?column?".to_string(),
                };
                columns.push((name, t, x));
            }
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let (x, t) = planner.plan(expr).map_err(plan_error)?;
                columns.push((alias.value.clone(), t, x));
            }
            other => return Err(unsupported("this select item", text, other.span())),
        }
    }
    let filter = match &s.selection {
        Some(e) => Some(planner.plan_predicate(e, "WHERE").map_err(plan_error)?),
        None => None,
    };
    let lookup = filter.as_ref().map(|f| lookup_of(f, schema)).unwrap_or_default();
    let mut order = Vec::new();
    if let Some(o) = &q.order_by {
        let ast::OrderByKind::Expressions(list) = &o.kind else {
            return Err(unsupported("ORDER BY ALL", text, q.span()));
        };
        for item in list {
            let desc = match &item.options.sort {
                None | Some(ast::OrderBySort::Asc) => false,
                Some(ast::OrderBySort::Desc) => true,
                Some(ast::OrderBySort::Using(_)) => {
                    return Err(unsupported("ORDER BY … USING", text, item.expr.span()))
                }
            };
            // An output column's name or position, else an expression
            // over the view.
            let by_output = match &item.expr {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        let i: usize = n.parse().unwrap_or(0);
                        let Some(c) = i.checked_sub(1).and_then(|i| columns.get(i)) else {
                            return Err(PgError::new(
                                SqlState::InvalidColumnReference,
                                format!("ORDER BY position {n} is not in the select list"),
                            )
                            .at(offset(text, item.expr.span().start)));
                        };
                        Some(c.2.clone())
                    }
                    _ => None,
                },
                ast::Expr::Identifier(i) => columns.iter().find(|c| c.0 == i.value).map(|c| c.2.clone()),
                _ => None,
            };
            let x = match by_output {
                Some(x) => x,
                None => planner.plan(&item.expr).map_err(plan_error)?.0,
            };
            order.push((x, desc));
        }
    }
    let limit = match &q.limit_clause {
        None => None,
        Some(ast::LimitClause::LimitOffset {
            limit,
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => limit.as_ref().map(|e| limit_of(text, e)).transpose()?,
        Some(other) => return Err(unsupported("OFFSET", text, other.span())),
    };
    Ok(Select {
        stream,
        columns,
        filter,
        lookup,
        order,
        limit,
    })
}

/// `LIMIT n`: a whole number.
fn limit_of(text: &str, e: &ast::Expr) -> Result<usize, PgError> {
    use sqlparser::ast::Spanned;
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
                PgError::new(SqlState::SyntaxError, format!("LIMIT {n}: expected a whole number"))
                    .at(offset(text, e.span().start))
            }),
            _ => Err(unsupported("a LIMIT that is not a number", text, e.span())),
        },
        _ => Err(unsupported("a LIMIT that is not a number", text, e.span())),
    }
}

fn parse_error(text: &str, e: sqlparser::parser::ParserError) -> PgError {
    let message = e.to_string();
    // sqlparser ends its messages with "at Line: L, Column: C".
    let at = message.rfind("Line: ").and_then(|i| {
        let rest = &message[i + 6..];
        let (line, rest) = rest.split_once(", Column: ")?;
        let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Location::new(line.parse().ok()?, column.parse().ok()?))
    });
    let clean = message.strip_prefix("sql parser error: ").unwrap_or(&message);
    let clean = clean.rsplit_once(" at Line: ").map_or(clean, |(m, _)| m);
    let err = PgError::new(SqlState::SyntaxError, clean.to_string());
    match at {
        Some(l) => err.at(offset(text, l)),
        None => err,
    }
}

/// `col = literal` conjuncts at the top of a filter, where the literal
/// has the column's type (so equal values are equal keys). The filter
/// is still applied to the rows a lookup finds.
fn lookup_of(filter: &Expr, schema: &Schema) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![filter];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(terms) => stack.extend(terms),
            Expr::Binary {
                op: laminar_exec::expr::BinaryOp::Eq,
                left,
                right,
            } => match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c))
                    if v.data_type() == schema.fields[*c].data_type =>
                {
                    out.push((*c, v.clone()));
                }
                _ => {}
            },
            _ => {}
        }
    }
    out.sort_by_key(|(c, _)| *c);
    out.dedup_by_key(|(c, _)| *c);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PhysicalPlan {
        laminar_sql::plan_script(
            "CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'file', path = 'bids.csv', format = 'csv');
             CREATE STREAM per_auction AS
             SELECT auction, COUNT(*) AS bids, SUM(price) AS total FROM bid GROUP BY auction;
             CREATE STREAM totals AS SELECT auction, COUNT(*) AS n, window_start, window_end
             FROM TUMBLE(bid, ts, INTERVAL '10' SECOND) GROUP BY auction, window_start, window_end;",
            laminar_sql::PlanOptions::default(),
        )
        .expect("plans")
    }

    fn err(sql: &str) -> PgError {
        parse(sql, &plan()).expect_err(sql)
    }

    #[test]
    fn statements_parse_in_any_case_with_comments_and_semicolons() {
        let p = plan();
        assert!(matches!(parse("show sources;", &p), Ok(Statement::ShowSources)));
        assert!(matches!(
            parse("SHOW MATERIALIZED VIEWS", &p),
            Ok(Statement::ShowStreams)
        ));
        assert!(matches!(
            parse("-- hi\nShow Checkpoints ;", &p),
            Ok(Statement::ShowCheckpoints)
        ));
        assert!(matches!(parse("EXPLAIN per_auction", &p), Ok(Statement::Explain(s)) if s == "per_auction"));
        assert!(matches!(
            parse("copy (subscribe to totals) to stdout", &p),
            Ok(Statement::Subscribe { stream, copy: true }) if stream == "totals"
        ));
        assert!(matches!(
            parse("SUBSCRIBE per_auction", &p),
            Ok(Statement::Subscribe { copy: false, .. })
        ));
    }

    #[test]
    fn a_select_finds_its_lookup_columns_and_keeps_its_filter() {
        let Statement::Select(s) = parse(
            "SELECT total, bids * 2 AS twice FROM per_auction WHERE auction = 7 AND bids > 1 ORDER BY 2 DESC LIMIT 5",
            &plan(),
        )
        .unwrap() else {
            panic!("a select")
        };
        assert_eq!(s.lookup, vec![(0, Value::Int(7))]);
        assert!(s.filter.is_some());
        assert_eq!(
            s.columns.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["total", "twice"]
        );
        assert_eq!(s.order.len(), 1);
        assert!(s.order[0].1);
        assert_eq!(s.limit, Some(5));
        // An OR is no lookup.
        let Statement::Select(s) =
            parse("SELECT * FROM per_auction WHERE auction = 7 OR auction = 8", &plan()).unwrap()
        else {
            panic!("a select")
        };
        assert!(s.lookup.is_empty());
    }

    #[test]
    fn offsets_are_found_in_one_pass_and_agree_with_the_search() {
        let text = "SELECT a,\n  'é' ,  b -- c\nFROM x WHERE y = 'ü'";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize_with_location()
            .unwrap();
        let mut cursor = Cursor::new(text);
        for t in tokens.iter().filter(|t| t.span.start.line > 0) {
            assert_eq!(cursor.advance_to(t.span.start), offset(text, t.span.start), "{t:?}");
        }
        // A long one-line statement parses in linear time (it took minutes
        // at 4 MB before).
        let list = vec!["7"; 100_000].join(",");
        let sql = format!("SELECT * FROM per_auction WHERE auction IN ({list})");
        let started = std::time::Instant::now();
        assert!(parse(&sql, &plan()).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn errors_carry_a_sqlstate_and_where() {
        let e = err("SELECT nope FROM per_auction");
        assert_eq!((e.state, e.offset), (SqlState::UndefinedColumn, Some(7)));
        let e = err("SELECT * FROM nowhere");
        assert_eq!((e.state, e.offset), (SqlState::UndefinedTable, Some(14)));
        let e = err("SELECT * FROM totals");
        assert_eq!(e.state, SqlState::FeatureNotSupported);
        assert!(e.message.contains("windowed"), "{}", e.message);
        let e = err("DELETE FROM per_auction");
        assert_eq!((e.state, e.offset), (SqlState::FeatureNotSupported, Some(0)));
        let e = err("SHOW TABLES");
        assert_eq!((e.state, e.offset), (SqlState::SyntaxError, Some(5)));
        let e = err("SELECT * FROM per_auction, totals");
        assert_eq!(e.state, SqlState::FeatureNotSupported);
        let e = err("SELECT * FROM per_auction LIMIT 1 OFFSET 2");
        assert_eq!(e.state, SqlState::FeatureNotSupported);
        let e = err("SELECT * FROM per_auction ORDER BY 9");
        assert_eq!(e.state, SqlState::InvalidColumnReference);
        let e = err("SUBSCRIBE bid");
        assert!(e.message.contains("is a source"), "{}", e.message);
        let e = err("SELECT 'unterminated");
        assert_eq!(e.state, SqlState::SyntaxError);
        // Position in characters, 1-based, on the wire.
        let long = format!(
            "SELECT * FROM per_auction WHERE auction IN ({})",
            vec!["1"; STATEMENT_BYTES_MAX / 2].join(",")
        );
        assert_eq!(err(&long).state, SqlState::ProgramLimitExceeded);
        let sql = "SELECT 'é', nope FROM per_auction";
        assert_eq!(err(sql).info(sql).position.as_deref(), Some("13"));
    }
}
