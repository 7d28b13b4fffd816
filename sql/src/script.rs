//! The pre-pass: splits a script into statements and lifts out the
//! streaming clauses sqlparser does not know.
//!
//! The whole script is tokenized once with sqlparser's tokenizer, so every
//! token keeps its line and column in the file. Statements are split at
//! `;`. Then, per statement, at token level:
//! - `WATERMARK FOR col AS expr` inside a `CREATE SOURCE` column list is
//!   removed (with its comma) and kept aside;
//! - `EMIT …`, `ALLOW LATENESS INTERVAL …` and `LATE DATA TO name` at the
//!   end of a query are removed and kept aside;
//! - `CREATE SOURCE` is rewritten to `CREATE TABLE` so sqlparser parses the
//!   column list and `WITH (…)` options.
//!
//! The remaining tokens go to sqlparser with their original locations, so
//! its error positions are positions in the file.

use sqlparser::ast;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{split_parser_location, SqlError};

/// Scripts larger than this are refused: a limit on everything.
pub const SCRIPT_BYTES_MAX: usize = 4 << 20;
/// Parenthesis nesting beyond this is refused before sqlparser recurses.
pub const NESTING_DEPTH_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Source,
    Table,
    Stream,
    MaterializedView,
    Sink,
}

/// How a streaming query emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitClause {
    OnWindowClose,
    Changes,
    Final,
    Every { interval_ms: i64 },
}

/// One statement after the pre-pass.
#[derive(Debug, Clone)]
pub struct Statement {
    pub kind: StatementKind,
    /// `CREATE STREAM hot_items` — the statement's name in errors.
    pub title: String,
    /// `hot_items`: what the statement defines.
    pub name: String,
    pub start: Location,
    pub end: Location,
    /// The tokens left for sqlparser (whitespace included).
    pub tokens: Vec<TokenWithSpan>,
    pub watermark: Option<WatermarkClause>,
    pub emit: Option<(EmitClause, Location)>,
    pub lateness: Option<(i64, Location)>,
    /// `LATE DATA TO name`: the late rows' stream.
    pub late_to: Option<(String, Location)>,
    /// The whole statement in one line: tokens separated by single
    /// spaces, keywords in upper case, comments and layout gone. What a
    /// restart shows of a definition that changed.
    pub text: String,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkClause {
    pub column: ast::Ident,
    pub expr: ast::Expr,
    pub location: Location,
}

impl Statement {
    pub fn error(&self, location: Option<Location>, message: impl Into<String>) -> SqlError {
        let at = location.unwrap_or(self.start);
        SqlError {
            statement: self.title.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    /// A sqlparser parser over this statement's remaining tokens.
    pub fn parser(&self) -> Parser<'static> {
        static DIALECT: GenericDialect = GenericDialect {};
        Parser::new(&DIALECT).with_tokens_with_locations(self.tokens.clone())
    }

    /// Checks that `p` has taken the whole statement: anything after `what`
    /// is an error at its first token. A statement keyword there means
    /// the `;` before it is missing (the two were read as one statement).
    pub fn expect_end(&self, p: &mut Parser<'_>, what: &str) -> Result<(), SqlError> {
        let t = p.peek_token();
        match &t.token {
            Token::EOF => Ok(()),
            Token::Word(w)
                if w.quote_style.is_none()
                    && ["CREATE", "INSERT", "SELECT", "DROP"]
                        .iter()
                        .any(|k| w.value.eq_ignore_ascii_case(k)) =>
            {
                Err(self.error(
                    Some(t.span.start),
                    format!("expected ';' before {}", w.value.to_ascii_uppercase()),
                ))
            }
            // `CASE END` parses as a column named CASE, then an END.
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("END") => Err(self.error(
                Some(t.span.start),
                "END without CASE … WHEN: a CASE needs at least one WHEN (CASE WHEN condition THEN value [ELSE value] END)",
            )),
            other => Err(self.error(Some(t.span.start), format!("unexpected {other} after {what}"))),
        }
    }

    /// Converts a sqlparser error into a located statement error.
    pub fn parser_error(&self, e: sqlparser::parser::ParserError) -> SqlError {
        let (message, location) = split_parser_location(&e.to_string());
        self.error(Some(location.unwrap_or(self.end)), message)
    }
}

fn is_word(t: &Token, keyword: &str) -> bool {
    matches!(t, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(keyword))
}

fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect()
}

/// Tokenizes and splits a script, applying the pre-pass to each statement.
pub fn split(text: &str) -> Result<Vec<Statement>, SqlError> {
    let whole = |line, column, message: String| SqlError {
        statement: "script".into(),
        line,
        column,
        message,
    };
    if text.len() > SCRIPT_BYTES_MAX {
        return Err(whole(
            1,
            1,
            format!(
                "script is {} bytes; at most {SCRIPT_BYTES_MAX} are accepted",
                text.len()
            ),
        ));
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| whole(e.location.line, e.location.column, e.message.clone()))?;
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut depth = 0usize;
    for t in tokens {
        match t.token {
            Token::LParen => {
                depth += 1;
                if depth > NESTING_DEPTH_MAX {
                    return Err(whole(
                        t.span.start.line,
                        t.span.start.column,
                        format!("parentheses nested deeper than {NESTING_DEPTH_MAX}"),
                    ));
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if t.token == Token::SemiColon {
            depth = 0;
            if let Some(s) = prepare(std::mem::take(&mut current), statements.len() + 1)? {
                statements.push(s);
            }
        } else if t.token != Token::EOF {
            current.push(t);
        }
    }
    if let Some(s) = prepare(current, statements.len() + 1)? {
        statements.push(s);
    }
    Ok(statements)
}

fn prepare(mut tokens: Vec<TokenWithSpan>, number: usize) -> Result<Option<Statement>, SqlError> {
    let sig = significant(&tokens);
    if sig.is_empty() {
        return Ok(None);
    }
    let start = tokens[sig[0]].span.start;
    let end = tokens[*sig.last().expect("non-empty")].span.end;
    let word = |k: usize| sig.get(k).map(|&i| &tokens[i].token);
    let untitled = |message: String| SqlError {
        statement: format!("statement {number}"),
        line: start.line,
        column: start.column,
        message,
    };
    if !word(0).is_some_and(|t| is_word(t, "CREATE")) {
        return Err(untitled(
            "expected CREATE SOURCE, CREATE TABLE, CREATE STREAM, CREATE MATERIALIZED VIEW or CREATE SINK".into(),
        ));
    }
    let (kind, name_at) = match word(1) {
        Some(t) if is_word(t, "SOURCE") => (StatementKind::Source, 2),
        Some(t) if is_word(t, "TABLE") => (StatementKind::Table, 2),
        Some(t) if is_word(t, "STREAM") || is_word(t, "VIEW") => (StatementKind::Stream, 2),
        Some(t) if is_word(t, "MATERIALIZED") && word(2).is_some_and(|t| is_word(t, "VIEW")) => {
            (StatementKind::MaterializedView, 3)
        }
        Some(t) if is_word(t, "SINK") => (StatementKind::Sink, 2),
        _ => {
            return Err(untitled(
                "expected SOURCE, TABLE, STREAM, MATERIALIZED VIEW or SINK after CREATE".into(),
            ))
        }
    };
    let name = match word(name_at) {
        Some(Token::Word(w)) => w.value.clone(),
        _ => return Err(untitled("expected a name after CREATE …".into())),
    };
    let title = match kind {
        StatementKind::Source => format!("CREATE SOURCE {name}"),
        StatementKind::Table => format!("CREATE TABLE {name}"),
        StatementKind::Stream => format!("CREATE STREAM {name}"),
        StatementKind::MaterializedView => format!("CREATE MATERIALIZED VIEW {name}"),
        StatementKind::Sink => format!("CREATE SINK {name}"),
    };
    let mut statement = Statement {
        kind,
        title,
        name,
        start,
        end,
        tokens: Vec::new(),
        watermark: None,
        emit: None,
        lateness: None,
        late_to: None,
        text: normalized(&tokens),
    };
    match kind {
        StatementKind::Source | StatementKind::Table => {
            statement.watermark = take_watermark(&mut tokens, &statement)?;
            if kind == StatementKind::Source {
                // CREATE SOURCE → CREATE TABLE, so sqlparser parses it.
                let at = sig[1];
                let span = tokens[at].span;
                tokens[at] = TokenWithSpan {
                    token: Token::make_keyword("TABLE"),
                    span,
                };
            }
            ensure_column_list(&mut tokens);
        }
        StatementKind::Stream | StatementKind::MaterializedView => {
            take_stream_clauses(&mut tokens, &mut statement)?;
        }
        StatementKind::Sink => {}
    }
    statement.tokens = tokens;
    Ok(Some(statement))
}

/// The statement's tokens in one line (see `Statement::text`).
fn normalized(tokens: &[TokenWithSpan]) -> String {
    const SPACED_BEFORE_PAREN: &[&str] = &[
        "AS", "IN", "AND", "OR", "NOT", "ON", "FROM", "JOIN", "WHERE", "WITH", "EXISTS", "SELECT", "BETWEEN",
    ];
    // Words shown in upper case whatever their case in the script: the
    // statement structure (not every sqlparser keyword: `totals` is one).
    const KEYWORDS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "HAVING",
        "ORDER",
        "AS",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS",
        "NULL",
        "CREATE",
        "SOURCE",
        "TABLE",
        "STREAM",
        "MATERIALIZED",
        "VIEW",
        "SINK",
        "WITH",
        "JOIN",
        "LEFT",
        "RIGHT",
        "INNER",
        "OUTER",
        "ON",
        "BETWEEN",
        "INTERVAL",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "CAST",
        "DISTINCT",
        "OVER",
        "PARTITION",
        "LIMIT",
        "EMIT",
        "CHANGES",
        "FINAL",
        "EVERY",
        "WINDOW",
        "CLOSE",
        "WATERMARK",
        "FOR",
        "ALLOW",
        "LATENESS",
        "LATE",
        "DATA",
        "TO",
        "PRIMARY",
        "KEY",
        "TRUE",
        "FALSE",
        "LIKE",
        "ASOF",
        "DESC",
        "ASC",
        "UNION",
        "ALL",
        "EXTRACT",
        "TUMBLE",
        "HOP",
        "SESSION",
        "COUNT",
        "SUM",
        "MIN",
        "MAX",
        "AVG",
        "ROW_NUMBER",
        "RANK",
        "MATCH_CONDITION",
        "TIMESTAMP",
        "BIGINT",
        "INT",
        "INTEGER",
        "VARCHAR",
        "DOUBLE",
        "BOOLEAN",
        "SECOND",
        "SECONDS",
        "MINUTE",
        "MINUTES",
        "HOUR",
        "HOURS",
        "DAY",
        "DAYS",
        "MILLISECOND",
        "MILLISECONDS",
    ];
    let mut out = String::new();
    let mut glue = true;
    let mut previous: Option<&Token> = None;
    for t in tokens.iter().map(|t| &t.token) {
        if matches!(t, Token::Whitespace(_)) {
            continue;
        }
        // A call's parenthesis joins its name: `SUM(price)`, `TUMBLE(bids`.
        let call = *t == Token::LParen
            && matches!(previous, Some(Token::Word(w)) if !SPACED_BEFORE_PAREN.contains(&w.value.to_ascii_uppercase().as_str()));
        let tight = matches!(t, Token::Comma | Token::RParen | Token::Period) || call;
        if !glue && !tight {
            out.push(' ');
        }
        previous = Some(t);
        match t {
            Token::Word(w) if w.quote_style.is_none() && KEYWORDS.contains(&w.value.to_ascii_uppercase().as_str()) => {
                out.push_str(&w.value.to_ascii_uppercase())
            }
            other => out.push_str(&other.to_string()),
        }
        glue = matches!(t, Token::LParen | Token::Period);
    }
    out
}

/// `CREATE TABLE t WITH (…)` gets an empty column list so sqlparser
/// accepts it (the nexmark connector knows its own columns).
fn ensure_column_list(tokens: &mut Vec<TokenWithSpan>) {
    let sig = significant(tokens);
    if let Some(&i) = sig.get(3) {
        if is_word(&tokens[i].token, "WITH") {
            let span = tokens[i].span;
            tokens.insert(
                i,
                TokenWithSpan {
                    token: Token::RParen,
                    span,
                },
            );
            tokens.insert(
                i,
                TokenWithSpan {
                    token: Token::LParen,
                    span,
                },
            );
            tokens.insert(
                i,
                TokenWithSpan {
                    token: Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    span,
                },
            );
        }
    }
}

/// Removes `[,] WATERMARK FOR col AS expr` from the column list.
fn take_watermark(tokens: &mut Vec<TokenWithSpan>, st: &Statement) -> Result<Option<WatermarkClause>, SqlError> {
    let mut depth = 0usize;
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ if depth == 1 && is_word(&t.token, "WATERMARK") => {
                found = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(begin) = found else { return Ok(None) };
    let location = tokens[begin].span.start;
    // The clause runs to the next ',' or ')' at depth 1.
    let mut end = begin;
    let mut d = 1usize;
    while end < tokens.len() {
        match tokens[end].token {
            Token::LParen => d += 1,
            Token::RParen if d == 1 => break,
            Token::RParen => d -= 1,
            Token::Comma if d == 1 => break,
            _ => {}
        }
        end += 1;
    }
    let clause: Vec<TokenWithSpan> = tokens[begin..end].to_vec();
    // Remove the clause and one adjoining comma.
    let prev_comma = (0..begin)
        .rev()
        .find(|&k| !matches!(tokens[k].token, Token::Whitespace(_)))
        .filter(|&k| tokens[k].token == Token::Comma);
    let (lo, hi) = match prev_comma {
        Some(k) => (k, end),
        None if end < tokens.len() && tokens[end].token == Token::Comma => (begin, end + 1),
        None => (begin, end),
    };
    tokens.drain(lo..hi);

    static DIALECT: GenericDialect = GenericDialect {};
    let mut p = Parser::new(&DIALECT).with_tokens_with_locations(clause);
    let parsed = (|| {
        let watermark = p.parse_identifier()?;
        if !watermark.value.eq_ignore_ascii_case("WATERMARK") {
            return p.expected("WATERMARK", p.peek_token());
        }
        p.expect_keyword_is(Keyword::FOR)?;
        let column = p.parse_identifier()?;
        p.expect_keyword_is(Keyword::AS)?;
        let expr = p.parse_expr()?;
        if p.peek_token().token != Token::EOF {
            return p.expected("',' or ')' after the watermark expression", p.peek_token());
        }
        Ok((column, expr))
    })();
    let (column, expr) = parsed.map_err(|e| st.parser_error(e))?;
    Ok(Some(WatermarkClause { column, expr, location }))
}

/// Parses `INTERVAL '<n>' [unit]` at `sig[k..]`; returns ms and tokens used.
fn interval_at(tokens: &[TokenWithSpan], sig: &[usize], k: usize, st: &Statement) -> Result<(i64, usize), SqlError> {
    let at = |j: usize| sig.get(j).map(|&i| &tokens[i]);
    let here = at(k).map_or(st.end, |t| t.span.start);
    if !at(k).is_some_and(|t| is_word(&t.token, "INTERVAL")) {
        return Err(st.error(Some(here), "expected INTERVAL '<amount>' <unit>"));
    }
    let text = match at(k + 1).map(|t| &t.token) {
        Some(Token::SingleQuotedString(s)) => s.clone(),
        _ => {
            return Err(st.error(
                Some(at(k + 1).map_or(st.end, |t| t.span.start)),
                "expected a quoted interval amount",
            ))
        }
    };
    let unit = match at(k + 2).map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() && exec_unit(&w.value) => Some(w.value.clone()),
        _ => None,
    };
    let ms = laminar_exec::time::parse_interval(&text, unit.as_deref())
        .map_err(|e| st.error(Some(at(k + 1).map_or(here, |t| t.span.start)), e.to_string()))?;
    if ms < 0 {
        return Err(st.error(Some(here), "interval must not be negative"));
    }
    Ok((ms, if unit.is_some() { 3 } else { 2 }))
}

fn exec_unit(word: &str) -> bool {
    laminar_exec::time::TimeUnit::parse(word).is_some()
}

/// Removes `EMIT …`, `ALLOW LATENESS INTERVAL …` and `LATE DATA TO name`
/// at depth 0.
fn take_stream_clauses(tokens: &mut Vec<TokenWithSpan>, st: &mut Statement) -> Result<(), SqlError> {
    loop {
        let sig = significant(tokens);
        let mut depth = 0usize;
        let mut hit = None;
        for (k, &i) in sig.iter().enumerate() {
            match tokens[i].token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                ref t if depth == 0 && (is_word(t, "EMIT") || is_word(t, "ALLOW")) => {
                    hit = Some(k);
                    break;
                }
                // `LATE` alone may be a column name; `LATE DATA` is the clause.
                ref t
                    if depth == 0
                        && is_word(t, "LATE")
                        && sig.get(k + 1).is_some_and(|&j| is_word(&tokens[j].token, "DATA")) =>
                {
                    hit = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let Some(k) = hit else { return Ok(()) };
        let location = tokens[sig[k]].span.start;
        let w = |j: usize| sig.get(j).map(|&i| &tokens[i].token);
        let used = if w(k).is_some_and(|t| is_word(t, "LATE")) {
            if st.late_to.is_some() {
                return Err(st.error(Some(location), "LATE DATA TO given twice"));
            }
            let name = match (w(k + 2), w(k + 3)) {
                (Some(to), Some(Token::Word(name))) if is_word(to, "TO") => name.value.clone(),
                _ => {
                    return Err(st.error(
                        Some(location),
                        "expected LATE DATA TO <stream name> (a new stream that receives the late rows)",
                    ))
                }
            };
            st.late_to = Some((name, location));
            4
        } else if w(k).is_some_and(|t| is_word(t, "ALLOW")) {
            if !w(k + 1).is_some_and(|t| is_word(t, "LATENESS")) {
                return Err(st.error(Some(location), "expected ALLOW LATENESS INTERVAL '<amount>' <unit>"));
            }
            if st.lateness.is_some() {
                return Err(st.error(Some(location), "ALLOW LATENESS given twice"));
            }
            let (ms, n) = interval_at(tokens, &sig, k + 2, st)?;
            st.lateness = Some((ms, location));
            2 + n
        } else {
            if st.emit.is_some() {
                return Err(st.error(Some(location), "EMIT given twice"));
            }
            let (clause, n) = if w(k + 1).is_some_and(|t| is_word(t, "CHANGES")) {
                (EmitClause::Changes, 2)
            } else if w(k + 1).is_some_and(|t| is_word(t, "FINAL")) {
                (EmitClause::Final, 2)
            } else if w(k + 1).is_some_and(|t| is_word(t, "ON"))
                && w(k + 2).is_some_and(|t| is_word(t, "WINDOW"))
                && w(k + 3).is_some_and(|t| is_word(t, "CLOSE"))
            {
                (EmitClause::OnWindowClose, 4)
            } else if w(k + 1).is_some_and(|t| is_word(t, "EVERY")) {
                let (ms, n) = interval_at(tokens, &sig, k + 2, st)?;
                if ms == 0 {
                    return Err(st.error(Some(location), "EMIT EVERY interval must be positive"));
                }
                (EmitClause::Every { interval_ms: ms }, 2 + n)
            } else {
                return Err(st.error(
                    Some(location),
                    "expected EMIT ON WINDOW CLOSE, EMIT CHANGES, EMIT FINAL or EMIT EVERY INTERVAL '…'",
                ));
            };
            st.emit = Some((clause, location));
            n
        };
        let lo = sig[k];
        let hi = sig.get(k + used).copied().unwrap_or(tokens.len());
        tokens.drain(lo..hi);
    }
}

/// Where a span starts, for errors (statement start if unknown).
pub fn span_start(span: Span, st: &Statement) -> Location {
    if span.start.line > 0 {
        span.start
    } else {
        st.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_text_is_one_line_without_layout_comments_or_keyword_case() {
        let st = split(
            "create stream totals as -- why\n  select SUM( price ) AS t,\n\tCOUNT(*) from TUMBLE(b, ts, INTERVAL '1' SECOND)\n\
             /* x */ where price IN (1, 2) emit changes;",
        )
        .unwrap();
        assert_eq!(
            st[0].text,
            "CREATE STREAM totals AS SELECT SUM(price) AS t, COUNT(*) FROM TUMBLE(b, ts, INTERVAL '1' SECOND) \
             WHERE price IN (1, 2) EMIT CHANGES"
        );
        assert_eq!(st[0].name, "totals");
    }

    #[test]
    fn splits_and_lifts_streaming_clauses() {
        let sql = "CREATE SOURCE bid (a BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)\n\
                   WITH (connector = 'file', path = 'x');\n\
                   -- a comment; with a semicolon\n\
                   CREATE STREAM s AS SELECT a FROM bid GROUP BY a EMIT CHANGES ALLOW LATENESS INTERVAL '2' SECONDS;";
        let st = split(sql).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].kind, StatementKind::Source);
        let w = st[0].watermark.as_ref().unwrap();
        assert_eq!(w.column.value, "ts");
        assert_eq!(st[1].emit.map(|e| e.0), Some(EmitClause::Changes));
        assert_eq!(st[1].lateness.map(|l| l.0), Some(2_000));
        let rest: String = st[1].tokens.iter().map(|t| t.token.to_string()).collect();
        assert!(!rest.contains("EMIT") && !rest.contains("LATENESS"), "{rest}");
        let src: String = st[0].tokens.iter().map(|t| t.token.to_string()).collect();
        assert!(
            src.contains("TABLE") && !src.contains("WATERMARK") && !src.contains(", )"),
            "{src}"
        );
    }

    #[test]
    fn errors_carry_file_positions() {
        let err = split("\n\n  SELECT 1").unwrap_err();
        assert_eq!((err.line, err.column), (3, 3));
        assert!(err.message.contains("expected CREATE"));
        let st = split("CREATE STREAM s AS SELECT a FROM t EMIT SOMETIMES").unwrap_err();
        assert!(st.message.contains("EMIT ON WINDOW CLOSE"), "{}", st.message);
        assert_eq!(st.column, 36);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let sql = format!(
            "CREATE STREAM s AS SELECT {}1{} FROM t",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert!(split(&sql).unwrap_err().message.contains("nested deeper"));
    }
}
