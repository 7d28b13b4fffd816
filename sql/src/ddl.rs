//! CREATE SOURCE, CREATE TABLE and CREATE SINK: columns, watermarks and
//! connector options.
//!
//! Options are `WITH (key = 'value', …)`. Keys are case-insensitive; every
//! connector lists the keys it knows, and any other key is an error (a typo
//! in `heaer = 'true'` must not silently read the header as data).

use std::collections::BTreeMap;
use std::path::PathBuf;

use laminar_exec::format::Format;
use laminar_exec::plan::{SinkConnector, SourceConnector, WatermarkSpec};
use laminar_exec::types::{DataType, Field, Schema};
use sqlparser::ast::{self, Spanned};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token};

use crate::error::SqlError;
use crate::expr::{data_type, ident_eq, interval_ms};
use crate::script::Statement;

/// Options with where each was written, for errors.
pub struct Options {
    /// key → (value, where the value is, where the key is)
    values: BTreeMap<String, (String, Location, Location)>,
    used: Vec<String>,
}

impl Options {
    pub fn from_sql(options: &[ast::SqlOption], st: &Statement) -> Result<Options, SqlError> {
        let mut values = BTreeMap::new();
        for o in options {
            let span = o.span();
            let key_location = crate::script::span_start(span, st);
            let at = Some(key_location);
            let ast::SqlOption::KeyValue { key, value } = o else {
                return Err(st.error(at, format!("expected key = 'value', found {o}")));
            };
            let key = key.to_string().to_ascii_lowercase();
            let text = match value {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
                    ast::Value::Number(n, _) => n.clone(),
                    ast::Value::Boolean(b) => b.to_string(),
                    other => return Err(st.error(at, format!("option {key}: unsupported value {other}"))),
                },
                ast::Expr::Identifier(id) => id.value.clone(),
                other => return Err(st.error(at, format!("option {key}: expected a quoted value, found {other}"))),
            };
            let location = crate::script::span_start(value.span(), st);
            if values.insert(key.clone(), (text, location, key_location)).is_some() {
                return Err(st.error(at, format!("option {key} given twice")));
            }
        }
        Ok(Options {
            values,
            used: Vec::new(),
        })
    }

    pub fn get(&mut self, key: &str) -> Option<String> {
        self.used.push(key.to_string());
        self.values.get(key).map(|(v, _, _)| v.clone())
    }

    pub fn location(&self, key: &str) -> Option<Location> {
        self.values.get(key).map(|(_, l, _)| *l)
    }

    pub fn require(&mut self, key: &str, st: &Statement, what: &str) -> Result<String, SqlError> {
        self.get(key)
            .ok_or_else(|| st.error(None, format!("missing option {key} ({what})")))
    }

    pub fn bool(&mut self, key: &str, default: bool, st: &Statement) -> Result<bool, SqlError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(st.error(
                    self.location(key),
                    format!("option {key}: expected 'true' or 'false', found {v:?}"),
                )),
            },
        }
    }

    pub fn u64(&mut self, key: &str, default: u64, st: &Statement) -> Result<u64, SqlError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                st.error(
                    self.location(key),
                    format!("option {key}: expected a non-negative integer, found {v:?}"),
                )
            }),
        }
    }

    /// Errors on any key no reader asked for.
    pub fn finish(self, st: &Statement, connector: &str) -> Result<(), SqlError> {
        for (key, (_, _, location)) in &self.values {
            if !self.used.iter().any(|u| u == key) {
                let mut known: Vec<&str> = self
                    .used
                    .iter()
                    .map(String::as_str)
                    .filter(|k| *k != "connector")
                    .collect();
                known.sort_unstable();
                known.dedup();
                return Err(st.error(
                    Some(*location),
                    format!(
                        "unknown option {key} for connector '{connector}' (known: connector, {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn format_option(opts: &mut Options, st: &Statement) -> Result<Format, SqlError> {
    match opts.get("format").map(|f| f.to_ascii_lowercase()) {
        None => Ok(Format::Csv),
        Some(f) if f == "csv" => Ok(Format::Csv),
        Some(f) if f == "json" || f == "jsonl" || f == "json_lines" => Ok(Format::Json),
        Some(f) => Err(st.error(
            opts.location("format"),
            format!("unknown format {f:?}; expected 'csv' or 'json'"),
        )),
    }
}

/// The `delimiter` option of a CSV source: one ASCII character, or `\t`.
fn delimiter_option(opts: &mut Options, st: &Statement) -> Result<u8, SqlError> {
    match opts.get("delimiter") {
        None => Ok(b','),
        Some(d) if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" => Ok(d.as_bytes()[0]),
        Some(d) if d == "\\t" || d == "tab" => Ok(b'\t'),
        Some(d) => Err(st.error(
            opts.location("delimiter"),
            format!("delimiter must be one ASCII character, found {d:?}"),
        )),
    }
}

/// The `port` option of a TCP connector: 0 (any free port) to 65535.
fn port_option(opts: &mut Options, st: &Statement) -> Result<u16, SqlError> {
    let text = opts.require("port", st, "the TCP port, 0 to 65535 (0: any free port)")?;
    text.trim().parse::<u16>().map_err(|_| {
        st.error(
            opts.location("port"),
            format!("port must be an integer from 0 to 65535, found {text:?}"),
        )
    })
}

/// A parsed CREATE SOURCE / CREATE TABLE.
pub struct SourceDef {
    pub name: String,
    pub schema: Schema,
    pub connector: SourceConnector,
    pub watermark: Option<WatermarkSpec>,
    pub primary_key: Vec<usize>,
    /// `validate = 'all'`: every column is decoded and checked.
    pub validate_all: bool,
}

pub struct DdlOptions {
    /// `laminar run` has no TCP connectors; `serve` will.
    pub allow_tcp: bool,
}

pub fn plan_source(st: &Statement, ddl: &DdlOptions) -> Result<SourceDef, SqlError> {
    let statement = st.parser().parse_statement().map_err(|e| st.parser_error(e))?;
    let ast::Statement::CreateTable(ct) = statement else {
        return Err(st.error(None, "expected CREATE SOURCE name (columns…) WITH (…)"));
    };
    if ct.query.is_some() || ct.like.is_some() {
        return Err(st.error(
            None,
            "CREATE … AS SELECT / LIKE is not supported; use CREATE STREAM for queries",
        ));
    }
    let name = ct.name.to_string();
    let mut fields = Vec::new();
    let mut primary_key = Vec::new();
    for (i, c) in ct.columns.iter().enumerate() {
        let at = Some(crate::script::span_start(c.name.span, st));
        if fields
            .iter()
            .any(|f: &Field| f.name.eq_ignore_ascii_case(&c.name.value))
        {
            return Err(st.error(at, format!("column {} declared twice", c.name.value)));
        }
        let t = data_type(&c.data_type, c.name.span).map_err(|e| st.error(e.location.or(at), e.message))?;
        let mut field = Field::new(c.name.value.clone(), t);
        for o in &c.options {
            match &o.option {
                ast::ColumnOption::NotNull => field.nullable = false,
                ast::ColumnOption::Null => {}
                ast::ColumnOption::PrimaryKey(_) => {
                    field.nullable = false;
                    primary_key.push(i);
                }
                other => return Err(st.error(at, format!("unsupported column option {other}"))),
            }
        }
        fields.push(field);
    }
    let schema = Schema::new(fields);
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey(pk) => {
                for col in &pk.columns {
                    let text = col.to_string();
                    let idx = schema.index_of(&text).ok_or_else(|| {
                        st.error(
                            Some(crate::script::span_start(c.span(), st)),
                            format!("PRIMARY KEY names unknown column {text}"),
                        )
                    })?;
                    primary_key.push(idx);
                }
            }
            other => {
                return Err(st.error(
                    Some(crate::script::span_start(other.span(), st)),
                    format!("unsupported constraint {other}"),
                ))
            }
        }
    }
    let options = match &ct.table_options {
        ast::CreateTableOptions::With(o) => o.clone(),
        ast::CreateTableOptions::None => Vec::new(),
        _ => return Err(st.error(None, "options must be given as WITH (key = 'value', …)")),
    };
    let mut opts = Options::from_sql(&options, st)?;
    let connector_name = opts
        .require("connector", st, "'file' or 'nexmark'")?
        .to_ascii_lowercase();
    let (connector, schema) = match connector_name.as_str() {
        "file" => {
            if schema.is_empty() {
                return Err(st.error(None, "a file source needs a column list"));
            }
            let path = PathBuf::from(opts.require("path", st, "the file to read")?);
            let format = format_option(&mut opts, st)?;
            let header = opts.bool("header", false, st)?;
            let delimiter = delimiter_option(&mut opts, st)?;
            let dead_letter = opts.get("dead_letter").map(PathBuf::from);
            if opts.bool("follow", false, st)? {
                return Err(st.error(
                    opts.location("follow"),
                    "follow = 'true' tails the file forever; `laminar run` needs bounded inputs (use `laminar serve`)",
                ));
            }
            (
                SourceConnector::File {
                    path,
                    format,
                    header,
                    delimiter,
                    dead_letter,
                },
                schema,
            )
        }
        "nexmark" => {
            let kind_name = match opts.get("kind") {
                Some(k) => k.to_ascii_lowercase(),
                None => name.to_ascii_lowercase(),
            };
            let kind = laminar_bench::nexmark::EventKind::from_name(&kind_name).ok_or_else(|| {
                st.error(
                    opts.location("kind"),
                    format!("nexmark kind must be 'person', 'auction' or 'bid', found {kind_name:?}"),
                )
            })?;
            let full = laminar_bench::nexmark::schema(kind);
            let events = opts.u64("events", 100_000, st)?;
            if events == 0 {
                return Err(st.error(
                    opts.location("events"),
                    "events must be positive: `laminar run` needs a bounded generator",
                ));
            }
            let rate_per_sec = opts.u64("rate", 10_000, st)?;
            if rate_per_sec == 0 {
                return Err(st.error(
                    opts.location("rate"),
                    "rate must be positive (events per second of event time)",
                ));
            }
            let seed = opts.u64("seed", 42, st)?;
            let (schema, columns) = if schema.is_empty() {
                (full.clone(), (0..full.len()).collect())
            } else {
                let mut columns = Vec::new();
                for f in &schema.fields {
                    let i = full.index_of(&f.name).ok_or_else(|| {
                        let known: Vec<&str> = full.fields.iter().map(|f| f.name.as_str()).collect();
                        st.error(
                            None,
                            format!(
                                "nexmark {kind_name} has no column {} (columns: {})",
                                f.name,
                                known.join(", ")
                            ),
                        )
                    })?;
                    if full.fields[i].data_type != f.data_type {
                        return Err(st.error(
                            None,
                            format!(
                                "nexmark column {} is {}, declared {}",
                                f.name, full.fields[i].data_type, f.data_type
                            ),
                        ));
                    }
                    columns.push(i);
                }
                (schema, columns)
            };
            (
                SourceConnector::Nexmark {
                    kind: kind_name,
                    columns,
                    events,
                    rate_per_sec,
                    seed,
                },
                schema,
            )
        }
        "tcp" => {
            if !ddl.allow_tcp {
                return Err(st.error(
                    opts.location("connector"),
                    "connector 'tcp' is served by `laminar serve`; `laminar run` reads files and the nexmark generator",
                ));
            }
            if schema.is_empty() {
                return Err(st.error(None, "a tcp source needs a column list"));
            }
            let port = port_option(&mut opts, st)?;
            let format = format_option(&mut opts, st)?;
            let delimiter = delimiter_option(&mut opts, st)?;
            let dead_letter = opts.get("dead_letter").map(PathBuf::from);
            (
                SourceConnector::Tcp {
                    port,
                    format,
                    delimiter,
                    dead_letter,
                },
                schema,
            )
        }
        other => {
            return Err(st.error(
                opts.location("connector"),
                format!("unknown connector {other:?}; expected 'file' or 'nexmark'"),
            ))
        }
    };
    let validate_all = match connector {
        SourceConnector::File { .. } | SourceConnector::Tcp { .. } => validate_option(&mut opts, st)?,
        _ => false,
    };
    opts.finish(st, &connector_name)?;
    let watermark = match &st.watermark {
        None => None,
        Some(w) => Some(plan_watermark(w, &schema, st)?),
    };
    Ok(SourceDef {
        name,
        schema,
        connector,
        watermark,
        primary_key,
        validate_all,
    })
}

/// The `validate` option of a file or tcp source: `'read'` (the default)
/// parses and checks only the columns some query reads, so a bad value in
/// a column nothing reads does not make its record malformed (as in
/// DuckDB's and Flink's projected CSV scans); `'all'` checks every column.
fn validate_option(opts: &mut Options, st: &Statement) -> Result<bool, SqlError> {
    match opts.get("validate").map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "read" => Ok(false),
        Some(v) if v == "all" => Ok(true),
        Some(v) => Err(st.error(
            opts.location("validate"),
            format!("validate must be 'read' or 'all', found {v:?}"),
        )),
    }
}

/// `WATERMARK FOR col AS col [- INTERVAL …]` → column and delay.
fn plan_watermark(
    w: &crate::script::WatermarkClause,
    schema: &Schema,
    st: &Statement,
) -> Result<WatermarkSpec, SqlError> {
    let at = Some(w.location);
    let column = schema
        .fields
        .iter()
        .position(|f| ident_eq(&w.column, &f.name))
        .ok_or_else(|| st.error(at, format!("WATERMARK FOR names unknown column {}", w.column.value)))?;
    let t = schema.fields[column].data_type;
    if !matches!(t, DataType::Ts | DataType::Int) {
        return Err(st.error(
            at,
            format!(
                "WATERMARK column {} must be TIMESTAMP or BIGINT (epoch ms), found {t}",
                w.column.value
            ),
        ));
    }
    let is_column = |e: &ast::Expr| matches!(e, ast::Expr::Identifier(id) if ident_eq(id, &schema.fields[column].name));
    let expected = "expected `col` or `col - INTERVAL '<n>' <unit>` with the watermark column";
    let delay_ms = match &w.expr {
        e if is_column(e) => 0,
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } if is_column(left) => match right.as_ref() {
            ast::Expr::Interval(i) => {
                interval_ms(i, right.span()).map_err(|e| st.error(e.location.or(at), e.message))?
            }
            _ => return Err(st.error(Some(crate::script::span_start(right.span(), st)), expected)),
        },
        other => return Err(st.error(Some(crate::script::span_start(other.span(), st)), expected)),
    };
    if delay_ms < 0 {
        return Err(st.error(at, "watermark delay must not be negative"));
    }
    Ok(WatermarkSpec { column, delay_ms })
}

/// A parsed CREATE SINK.
pub struct SinkDef {
    pub name: String,
    pub from: ast::ObjectName,
    pub from_location: Location,
    pub connector: SinkConnector,
}

/// `CREATE SINK name FROM stream WITH (connector = …, …)`.
pub fn plan_sink(st: &Statement, ddl: &DdlOptions) -> Result<SinkDef, SqlError> {
    let mut p = st.parser();
    let parsed = (|| {
        p.expect_keyword_is(Keyword::CREATE)?;
        let sink = p.parse_identifier()?;
        if !sink.value.eq_ignore_ascii_case("SINK") {
            return p.expected("SINK", p.peek_token());
        }
        let name = p.parse_identifier()?;
        p.expect_keyword_is(Keyword::FROM)?;
        let from_location = p.peek_token().span.start;
        let from = p.parse_object_name(false)?;
        let options = if p.peek_token().token == Token::EOF {
            Vec::new()
        } else {
            p.parse_options(Keyword::WITH)?
        };
        if p.peek_token().token != Token::EOF {
            return p.expected("end of statement", p.peek_token());
        }
        Ok((name, from, from_location, options))
    })();
    let (name, from, from_location, options) = parsed.map_err(|e| st.parser_error(e))?;
    let mut opts = Options::from_sql(&options, st)?;
    let connector_name = opts
        .require("connector", st, "'file' or 'stdout'")?
        .to_ascii_lowercase();
    let connector = match connector_name.as_str() {
        "file" => {
            let path = PathBuf::from(opts.require("path", st, "the file to write")?);
            let format = format_option(&mut opts, st)?;
            SinkConnector::File { path, format }
        }
        "stdout" => SinkConnector::Stdout,
        "tcp" => {
            if !ddl.allow_tcp {
                return Err(st.error(
                    opts.location("connector"),
                    "connector 'tcp' is served by `laminar serve`; `laminar run` writes files and stdout",
                ));
            }
            let port = port_option(&mut opts, st)?;
            if let Some(f) = opts.get("format").filter(|f| !f.eq_ignore_ascii_case("json")) {
                return Err(st.error(
                    opts.location("format"),
                    format!("a tcp sink sends JSON lines; format {f:?} is not available"),
                ));
            }
            SinkConnector::Tcp { port }
        }
        other => {
            return Err(st.error(
                opts.location("connector"),
                format!("unknown sink connector {other:?}; expected 'file' or 'stdout'"),
            ))
        }
    };
    opts.finish(st, &connector_name)?;
    Ok(SinkDef {
        name: name.value,
        from,
        from_location,
        connector,
    })
}
