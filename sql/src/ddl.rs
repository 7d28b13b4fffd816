//! CREATE SOURCE, CREATE TABLE and CREATE SINK: columns, watermarks and
//! connector options.
//!
//! Options are `WITH (key = 'value', …)`. Keys are case-insensitive; every
//! connector lists the keys it knows, and any other key is an error (a typo
//! in `heaer = 'true'` must not silently read the header as data).

use laminar_exec::plan::{SinkConnector, SourceConnector, WatermarkSpec};
use laminar_exec::types::{DataType, Field, Schema};
use sqlparser::ast::{self, Spanned};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token};

pub use crate::connector::{DdlOptions, Options};
use crate::error::SqlError;
use crate::expr::{data_type, ident_eq, interval_ms};
use crate::script::Statement;

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

pub fn plan_source(st: &Statement, ddl: &DdlOptions) -> Result<SourceDef, SqlError> {
    let mut p = st.parser();
    let statement = p.parse_statement().map_err(|e| st.parser_error(e))?;
    st.expect_end(&mut p, "the source's WITH options")?;
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
    let (connector, schema) = crate::connector::source(&connector_name, &name, schema, &mut opts, st, ddl)?;
    let validate_all = match connector {
        SourceConnector::File { .. } | SourceConnector::Tcp { .. } => crate::connector::validate_option(&mut opts, st)?,
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
        Ok((name, from, from_location, options))
    })();
    let (name, from, from_location, options) = parsed.map_err(|e| st.parser_error(e))?;
    st.expect_end(&mut p, "the sink's WITH options")?;
    let mut opts = Options::from_sql(&options, st)?;
    let connector_name = opts
        .require("connector", st, "'file' or 'stdout'")?
        .to_ascii_lowercase();
    let connector = crate::connector::sink(&connector_name, &mut opts, st, ddl)?;
    opts.finish(st, &connector_name)?;
    Ok(SinkDef {
        name: name.value,
        from,
        from_location,
        connector,
    })
}
