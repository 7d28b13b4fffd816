//! Each connector's WITH options, in one function per connector: the
//! keys it knows (any other is an error, see `Options::finish`), their
//! values checked with line:column, and the `SourceConnector` or
//! `SinkConnector` the planner hands to the runtime (`reactor/src/source/`
//! and `reactor/src/sink/` read and write them). Adding a connector: a
//! function here, its arm in `source` or `sink`, and its runtime module.

use std::collections::BTreeMap;
use std::path::PathBuf;

use laminar_exec::format::Format;
use laminar_exec::plan::{SinkConnector, SourceConnector};
use laminar_exec::types::Schema;
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Location;

use crate::error::SqlError;
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

pub struct DdlOptions {
    /// `laminar serve`: connectors that never end (tcp, a followed file)
    /// are allowed; `laminar run` reads bounded inputs only.
    pub serve: bool,
}

/// The source connector `connector` (lower case) over the declared
/// `schema` (which a connector may fill in, as the generator does).
pub(crate) fn source(
    connector: &str,
    name: &str,
    schema: Schema,
    opts: &mut Options,
    st: &Statement,
    ddl: &DdlOptions,
) -> Result<(SourceConnector, Schema), SqlError> {
    match connector {
        "file" => file_source(schema, opts, st, ddl),
        "nexmark" => nexmark_source(name, schema, opts, st),
        "tcp" => tcp_source(schema, opts, st, ddl),
        other => Err(st.error(
            opts.location("connector"),
            format!("unknown connector {other:?}; expected 'file' or 'nexmark'"),
        )),
    }
}

/// The sink connector `connector` (lower case).
pub(crate) fn sink(
    connector: &str,
    opts: &mut Options,
    st: &Statement,
    ddl: &DdlOptions,
) -> Result<SinkConnector, SqlError> {
    match connector {
        "file" => {
            let path = PathBuf::from(opts.require("path", st, "the file to write")?);
            let format = format_option(opts, st)?;
            Ok(SinkConnector::File { path, format })
        }
        "stdout" => Ok(SinkConnector::Stdout),
        "tcp" => tcp_sink(opts, st, ddl),
        other => Err(st.error(
            opts.location("connector"),
            format!("unknown sink connector {other:?}; expected 'file' or 'stdout'"),
        )),
    }
}

/// How often a followed file's end is looked at, by default, and at most
/// (milliseconds).
pub const FOLLOW_POLL_MS_DEFAULT: u64 = 10;
const FOLLOW_POLL_MS_MAX: u64 = 60_000;

/// `connector = 'file'`: path, format, header, delimiter, dead_letter,
/// follow and poll_ms.
fn file_source(
    schema: Schema,
    opts: &mut Options,
    st: &Statement,
    ddl: &DdlOptions,
) -> Result<(SourceConnector, Schema), SqlError> {
    if schema.is_empty() {
        return Err(st.error(None, "a file source needs a column list"));
    }
    let path = PathBuf::from(opts.require("path", st, "the file to read")?);
    let format = format_option(opts, st)?;
    // Without the option: a first line naming the declared columns is the
    // header (decided when the file is read).
    let header = match opts.get("header") {
        Some(_) => Some(opts.bool("header", false, st)?),
        None => None,
    };
    let delimiter = delimiter_option(opts, st)?;
    let dead_letter = opts.get("dead_letter").map(PathBuf::from);
    let follow = if opts.bool("follow", false, st)? {
        if !ddl.serve {
            return Err(st.error(
                opts.location("follow"),
                "follow = 'true' reads the file until the service stops, and `laminar run` reads every \
                 input to its end: serve this pipeline with `laminar serve`, or drop follow",
            ));
        }
        let poll_ms = opts.u64("poll_ms", FOLLOW_POLL_MS_DEFAULT, st)?;
        if !(1..=FOLLOW_POLL_MS_MAX).contains(&poll_ms) {
            return Err(st.error(
                opts.location("poll_ms"),
                format!("poll_ms must be between 1 and {FOLLOW_POLL_MS_MAX}, found {poll_ms}"),
            ));
        }
        Some(laminar_exec::plan::Follow { poll_ms })
    } else {
        if opts.location("poll_ms").is_some() {
            return Err(st.error(opts.location("poll_ms"), "poll_ms is an option of follow = 'true'"));
        }
        None
    };
    Ok((
        SourceConnector::File {
            path,
            format,
            header,
            delimiter,
            dead_letter,
            follow,
        },
        schema,
    ))
}

/// `connector = 'nexmark'`: kind (default: the source's name), events,
/// rate, seed; the columns are the generator's, or a subset declared.
fn nexmark_source(
    name: &str,
    schema: Schema,
    opts: &mut Options,
    st: &Statement,
) -> Result<(SourceConnector, Schema), SqlError> {
    let kind_name = match opts.get("kind") {
        Some(k) => k.to_ascii_lowercase(),
        None => name.to_ascii_lowercase(),
    };
    let kind = laminar_nexmark::EventKind::from_name(&kind_name).ok_or_else(|| {
        st.error(
            opts.location("kind"),
            format!("nexmark kind must be 'person', 'auction' or 'bid', found {kind_name:?}"),
        )
    })?;
    let full = laminar_nexmark::schema(kind);
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
    Ok((
        SourceConnector::Nexmark {
            kind: kind_name,
            columns,
            events,
            rate_per_sec,
            seed,
        },
        schema,
    ))
}

/// `connector = 'tcp'` (`laminar serve`): port, format, delimiter,
/// dead_letter.
fn tcp_source(
    schema: Schema,
    opts: &mut Options,
    st: &Statement,
    ddl: &DdlOptions,
) -> Result<(SourceConnector, Schema), SqlError> {
    if !ddl.serve {
        return Err(st.error(
            opts.location("connector"),
            "connector 'tcp' is served by `laminar serve`; `laminar run` reads files and the nexmark generator",
        ));
    }
    if schema.is_empty() {
        return Err(st.error(None, "a tcp source needs a column list"));
    }
    let port = port_option(opts, st)?;
    let format = format_option(opts, st)?;
    let delimiter = delimiter_option(opts, st)?;
    let dead_letter = opts.get("dead_letter").map(PathBuf::from);
    Ok((
        SourceConnector::Tcp {
            port,
            format,
            delimiter,
            dead_letter,
        },
        schema,
    ))
}

/// A tcp sink (`laminar serve`): port; it sends JSON lines.
fn tcp_sink(opts: &mut Options, st: &Statement, ddl: &DdlOptions) -> Result<SinkConnector, SqlError> {
    if !ddl.serve {
        return Err(st.error(
            opts.location("connector"),
            "connector 'tcp' is served by `laminar serve`; `laminar run` writes files and stdout",
        ));
    }
    let port = port_option(opts, st)?;
    if let Some(f) = opts.get("format").filter(|f| !f.eq_ignore_ascii_case("json")) {
        return Err(st.error(
            opts.location("format"),
            format!("a tcp sink sends JSON lines; format {f:?} is not available"),
        ));
    }
    Ok(SinkConnector::Tcp { port })
}

pub(crate) fn format_option(opts: &mut Options, st: &Statement) -> Result<Format, SqlError> {
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

/// The `validate` option of a file or tcp source: `'all'` (the default)
/// checks every declared column of every record (type, NOT NULL, UTF-8),
/// so whether a record is malformed never depends on what the queries
/// read; `'read'`, an opt-in for speed, parses and checks only the
/// columns some query reads (as DuckDB's and Flink's projected CSV scans
/// do), so a bad value elsewhere goes unnoticed.
pub(crate) fn validate_option(opts: &mut Options, st: &Statement) -> Result<bool, SqlError> {
    match opts.get("validate").map(|v| v.to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) if v == "read" => Ok(false),
        Some(v) if v == "all" => Ok(true),
        Some(v) => Err(st.error(
            opts.location("validate"),
            format!("validate must be 'read' or 'all', found {v:?}"),
        )),
    }
}
