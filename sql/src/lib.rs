//! laminar's SQL front end: a script of statements in, an executable
//! `PhysicalPlan` out.
//!
//! `script` splits the text and lifts out the streaming clauses
//! (`WATERMARK FOR`, `EMIT …`, `ALLOW LATENESS`); sqlparser-rs parses the
//! rest with file positions intact; `ddl` plans sources, tables and sinks;
//! `query` and `expr` plan continuous queries into `exec` operators.
//!
//! This crate knows nothing about threads, shards or I/O: names, types and
//! plans only. Every error is a `SqlError` naming the statement, the line
//! and column, and what was expected.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod connector;
pub mod ddl;
pub mod error;
pub mod expr;
pub mod join;
pub mod query;
pub mod script;
pub mod topn;

use std::collections::{BTreeMap, BTreeSet};

use laminar_exec::identity::{Definition, DefinitionKind};
use laminar_exec::operators::map::MapSpec;
use laminar_exec::operators::upsert::UpsertSpec;
use laminar_exec::plan::{Input, OperatorNode, OperatorSpec, PhysicalPlan, SinkConnector, SinkNode, SourceNode};
use laminar_exec::state::STATE_ENTRIES_MAX_DEFAULT;
use laminar_exec::types::Schema;
use sqlparser::ast;
use sqlparser::tokenizer::{Location, Span};

pub use error::SqlError;
use error::{PlanError, PlanResult};
use expr::{Scope, ScopeColumn};
use query::{Relation, StreamClauses};
use script::{Statement, StatementKind};

/// Knobs of planning that come from the command line or config.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Limit on live groups/windows/sessions per stateful operator.
    pub state_entries_max: usize,
    /// `laminar serve`: connectors that never end (tcp, a followed file)
    /// may be used.
    pub serve: bool,
    /// The retention bound of a regular (unbounded) stream join: rows
    /// more than this far apart in event time never meet, and leave state.
    pub join_state_ttl_ms: i64,
}

/// Default `PlanOptions::join_state_ttl_ms`: one hour of event time.
pub const JOIN_STATE_TTL_MS_DEFAULT: i64 = 3_600_000;

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            state_entries_max: STATE_ENTRIES_MAX_DEFAULT,
            serve: false,
            join_state_ttl_ms: JOIN_STATE_TTL_MS_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Source,
    Table,
    Stream,
}

struct Entry {
    kind: EntryKind,
    relation: Relation,
}

/// The planner's state while it walks a script.
pub struct Planner {
    options: PlanOptions,
    plan: PhysicalPlan,
    catalog: BTreeMap<String, Entry>,
    sink_names: BTreeSet<String>,
    /// Relations read by a stream or a sink.
    consumed: BTreeSet<(bool, usize)>,
    streams: Vec<(String, Relation)>,
    /// The `LATE DATA TO` stream name of the statement being planned.
    late_target: Option<String>,
    /// The late stream its windowed aggregate produced.
    late_output: Option<Relation>,
    /// Files the pipeline reads and writes (absolute), with who does, so
    /// that no file is written twice or written while it is read.
    files: Vec<(std::path::PathBuf, FileUse, String)>,
    /// TCP ports (other than 0) the pipeline listens on, with who does.
    ports: Vec<(u16, String)>,
    /// The statements planned so far (`PlanIdentity::definitions`).
    definitions: Vec<Definition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileUse {
    Read,
    Written,
}

fn key(input: Input) -> (bool, usize) {
    match input {
        Input::Source(i) => (false, i),
        Input::Node(i) => (true, i),
    }
}

impl Planner {
    fn new(options: PlanOptions) -> Planner {
        Planner {
            options,
            plan: PhysicalPlan::default(),
            catalog: BTreeMap::new(),
            sink_names: BTreeSet::new(),
            consumed: BTreeSet::new(),
            streams: Vec::new(),
            late_target: None,
            late_output: None,
            files: Vec::new(),
            ports: Vec::new(),
            definitions: Vec::new(),
        }
    }

    /// Sources, nodes and sinks planned so far.
    fn counts(&self) -> (usize, usize, usize) {
        (self.plan.sources.len(), self.plan.nodes.len(), self.plan.sinks.len())
    }

    /// Records a TCP port the pipeline listens on; refuses a second
    /// listener on one port (0, any free port, is never shared).
    fn claim_port(&mut self, st: &Statement, port: u16, who: String) -> Result<(), SqlError> {
        if port != 0 {
            if let Some((_, other)) = self.ports.iter().find(|(p, _)| *p == port) {
                return Err(st.error(
                    None,
                    format!("{who} listens on port {port}, which {other} listens on; use another port"),
                ));
            }
            self.ports.push((port, who));
        }
        Ok(())
    }

    /// Records a file the pipeline reads or writes; refuses a second
    /// writer, and a writer of a file that is read.
    fn claim_file(
        &mut self,
        st: &Statement,
        path: &std::path::Path,
        usage: FileUse,
        who: String,
    ) -> Result<(), SqlError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let absolute: std::path::PathBuf = absolute.components().collect();
        for (other, other_use, other_who) in &self.files {
            if *other == absolute && (usage == FileUse::Written || *other_use == FileUse::Written) {
                let verb = |u: FileUse| if u == FileUse::Read { "reads" } else { "writes" };
                return Err(st.error(
                    None,
                    format!(
                        "{who} {} {}, which {other_who} {}; use another file",
                        verb(usage),
                        path.display(),
                        verb(*other_use)
                    ),
                ));
            }
        }
        self.files.push((absolute, usage, who));
        Ok(())
    }

    pub(crate) fn add_node(
        &mut self,
        name: &str,
        inputs: Vec<Input>,
        spec: OperatorSpec,
        schema: Schema,
        changelog: bool,
    ) -> Input {
        for &i in &inputs {
            self.consumed.insert(key(i));
        }
        self.plan.nodes.push(OperatorNode {
            name: name.to_string(),
            inputs,
            spec,
            schema,
            changelog,
        });
        Input::Node(self.plan.nodes.len() - 1)
    }

    pub(crate) fn lookup(&mut self, name: &ast::ObjectName) -> PlanResult<Relation> {
        let text = name.to_string();
        let span = ast::Spanned::span(name);
        match self.catalog.get(&text.to_ascii_lowercase()) {
            Some(e) => {
                self.consumed.insert(key(e.relation.input));
                Ok(e.relation.clone())
            }
            None => {
                let known: Vec<&str> = self.catalog.keys().map(String::as_str).collect();
                Err(PlanError::at(
                    span,
                    if known.is_empty() {
                        format!("unknown source or stream {text} (none is defined before this statement)")
                    } else {
                        format!("unknown source or stream {text} (defined: {})", known.join(", "))
                    },
                ))
            }
        }
    }

    /// Names a relation for the statement being planned (a top-N's
    /// ranked rows, read by its outer query).
    pub(crate) fn define_temporary(&mut self, name: &str, relation: Relation) {
        self.catalog.insert(
            name.to_ascii_lowercase(),
            Entry {
                kind: EntryKind::Stream,
                relation,
            },
        );
    }

    pub(crate) fn forget_temporary(&mut self, name: &str) {
        self.catalog.remove(&name.to_ascii_lowercase());
    }

    pub(crate) fn unconsume(&mut self, input: Input) {
        self.consumed.remove(&key(input));
    }

    fn define(&mut self, st: &Statement, name: &str, kind: EntryKind, relation: Relation) -> Result<(), SqlError> {
        let k = name.to_ascii_lowercase();
        if self.catalog.contains_key(&k) || self.sink_names.contains(&k) {
            return Err(st.error(None, format!("{name} is already defined")));
        }
        self.catalog.insert(k, Entry { kind, relation });
        Ok(())
    }

    fn statement(&mut self, st: &Statement) -> Result<(), SqlError> {
        let ddl = ddl::DdlOptions {
            serve: self.options.serve,
        };
        let located = |e: PlanError| st.error(e.location, e.message);
        match st.kind {
            StatementKind::Source | StatementKind::Table => {
                let def = ddl::plan_source(st, &ddl)?;
                use laminar_exec::plan::SourceConnector;
                if let SourceConnector::Tcp { port, .. } = &def.connector {
                    self.claim_port(st, *port, format!("source {}", def.name))?;
                }
                if let SourceConnector::File { dead_letter, .. } | SourceConnector::Tcp { dead_letter, .. } =
                    &def.connector
                {
                    if let SourceConnector::File { path, .. } = &def.connector {
                        self.claim_file(st, path, FileUse::Read, format!("source {}", def.name))?;
                    }
                    if let Some(dl) = dead_letter {
                        self.claim_file(
                            st,
                            dl,
                            FileUse::Written,
                            format!("the dead_letter of source {}", def.name),
                        )?;
                    }
                }
                let is_table = st.kind == StatementKind::Table;
                if is_table && def.primary_key.is_empty() {
                    return Err(st.error(None, "a reference table needs a PRIMARY KEY (…)"));
                }
                if !is_table && !def.primary_key.is_empty() {
                    return Err(st.error(
                        None,
                        "PRIMARY KEY belongs on CREATE TABLE; a source is an append-only stream",
                    ));
                }
                let scope = Scope {
                    columns: def
                        .schema
                        .fields
                        .iter()
                        .map(|f| ScopeColumn {
                            qualifier: Some(def.name.clone()),
                            name: f.name.clone(),
                            data_type: f.data_type,
                        })
                        .collect(),
                };
                self.plan.sources.push(SourceNode {
                    name: def.name.clone(),
                    schema: def.schema.clone(),
                    declared: def.schema.clone(),
                    connector: def.connector,
                    watermark: def.watermark,
                    used_columns: vec![true; def.schema.len()],
                    validate_all: def.validate_all,
                });
                let input = Input::Source(self.plan.sources.len() - 1);
                let time_column = def.watermark.map(|w| w.column);
                let mut relation = Relation {
                    input,
                    scope,
                    time_column,
                    changelog: false,
                };
                if is_table {
                    let spec = OperatorSpec::Upsert(UpsertSpec {
                        name: def.name.clone(),
                        key_columns: def.primary_key.clone(),
                        entries_max: self.options.state_entries_max,
                    });
                    relation.input = self.add_node(&def.name, vec![input], spec, def.schema.clone(), true);
                    relation.changelog = true;
                    // A table nobody reads is still loaded, but not printed.
                    self.consumed.insert(key(relation.input));
                }
                let kind = if is_table { EntryKind::Table } else { EntryKind::Source };
                self.define(st, &def.name, kind, relation)
            }
            StatementKind::Stream | StatementKind::MaterializedView => {
                let mut p = st.parser();
                let name = parse_stream_head(&mut p, st)?;
                let q = p.parse_query().map_err(|e| st.parser_error(e))?;
                st.expect_end(&mut p, "the query")?;
                let clauses = StreamClauses {
                    emit: st.emit.map(|(c, l)| (c, Span::new(l, l))),
                    lateness_ms: st.lateness.map(|(ms, l)| (ms, Span::new(l, l))),
                    late_to: st.late_to.as_ref().map(|(_, l)| Span::new(*l, *l)),
                };
                self.late_target = st.late_to.as_ref().map(|(n, _)| n.clone());
                self.late_output = None;
                let nodes_before = self.plan.nodes.len();
                let planned = self.plan_query(&q, &name, clauses);
                self.late_target = None;
                let mut relation = planned.map_err(located)?.requalified(&name);
                if !matches!(relation.input, Input::Node(n) if n >= nodes_before) {
                    // `SELECT * FROM src`: the stream is its input as is.
                    // It still gets a node of its own, or it would share
                    // its input's readers (and print nothing when the
                    // input has one).
                    let spec = OperatorSpec::Map(MapSpec {
                        filter: None,
                        projection: None,
                    });
                    let schema = relation.schema();
                    relation.input = self.add_node(&name, vec![relation.input], spec, schema, relation.changelog);
                }
                self.streams.push((name.clone(), relation.clone()));
                self.define(st, &name, EntryKind::Stream, relation)?;
                match (&st.late_to, self.late_output.take()) {
                    (None, _) => Ok(()),
                    (Some((late_name, _)), Some(late)) => {
                        self.streams.push((late_name.clone(), late.clone()));
                        self.define(st, late_name, EntryKind::Stream, late)
                    }
                    (Some((_, location)), None) => Err(st.error(
                        Some(*location),
                        "LATE DATA TO applies to windowed aggregates; this query has none",
                    )),
                }
            }
            StatementKind::Sink => {
                let def = ddl::plan_sink(st, &ddl)?;
                if let SinkConnector::File { path, .. } = &def.connector {
                    self.claim_file(st, path, FileUse::Written, format!("sink {}", def.name))?;
                }
                if let SinkConnector::Tcp { port } = &def.connector {
                    self.claim_port(st, *port, format!("sink {}", def.name))?;
                }
                let k = def.name.to_ascii_lowercase();
                if self.catalog.contains_key(&k) || !self.sink_names.insert(k) {
                    return Err(st.error(None, format!("{} is already defined", def.name)));
                }
                let relation = self
                    .lookup(&def.from)
                    .map_err(|e| st.error(Some(e.location.unwrap_or(def.from_location)), e.message))?;
                let entry_kind = self
                    .catalog
                    .get(&def.from.to_string().to_ascii_lowercase())
                    .map(|e| e.kind);
                if entry_kind == Some(EntryKind::Table) {
                    // Allowed: a table's changelog can be written out.
                }
                self.plan.sinks.push(SinkNode {
                    name: def.name,
                    input: relation.input,
                    schema: relation.schema(),
                    changelog: relation.changelog,
                    connector: def.connector,
                });
                Ok(())
            }
        }
    }

    fn finish(mut self) -> PhysicalPlan {
        // A stream nothing reads prints to stdout.
        for (name, relation) in std::mem::take(&mut self.streams) {
            if !self.consumed.contains(&key(relation.input)) {
                self.consumed.insert(key(relation.input));
                self.plan.sinks.push(SinkNode {
                    name: name.clone(),
                    input: relation.input,
                    schema: relation.schema(),
                    changelog: relation.changelog,
                    connector: SinkConnector::Stdout,
                });
            }
        }
        // Identities first: the passes below depend on what other
        // streams read, an identity must not.
        let definitions = std::mem::take(&mut self.definitions);
        self.plan.assign_identities(definitions);
        self.plan.mark_used_columns();
        self.plan.narrow_sources();
        self.plan.prune_ranked_groups();
        self.plan.assert_valid();
        self.plan
    }
}

/// `CREATE STREAM name [AS]` / `CREATE MATERIALIZED VIEW name AS`.
fn parse_stream_head(p: &mut sqlparser::parser::Parser<'_>, st: &Statement) -> Result<String, SqlError> {
    use sqlparser::keywords::Keyword;
    let r = (|| {
        p.expect_keyword_is(Keyword::CREATE)?;
        if st.kind == StatementKind::MaterializedView {
            p.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])?;
        } else {
            let _ = p.parse_identifier()?; // STREAM or VIEW
        }
        let name = p.parse_identifier()?;
        p.expect_keyword_is(Keyword::AS)?;
        Ok(name.value)
    })();
    r.map_err(|e| st.parser_error(e))
}

/// Plans a whole script.
pub fn plan_script(text: &str, options: PlanOptions) -> Result<PhysicalPlan, SqlError> {
    let statements = script::split(text)?;
    if statements.is_empty() {
        return Err(SqlError {
            statement: "script".into(),
            line: 1,
            column: 1,
            message: "the script has no statements".into(),
        });
    }
    let mut planner = Planner::new(options);
    for st in &statements {
        let before = planner.counts();
        planner.statement(st)?;
        let after = planner.counts();
        planner.definitions.push(Definition {
            kind: match st.kind {
                StatementKind::Source => DefinitionKind::Source,
                StatementKind::Table => DefinitionKind::Table,
                StatementKind::Stream | StatementKind::MaterializedView => DefinitionKind::Stream,
                StatementKind::Sink => DefinitionKind::Sink,
            },
            name: st.name.clone(),
            text: st.text.clone(),
            sources: before.0..after.0,
            nodes: before.1..after.1,
            sinks: before.2..after.2,
        });
    }
    if planner.plan.sinks.is_empty() && planner.streams.is_empty() {
        let last = statements.last().expect("non-empty");
        let _ = Location {
            line: last.end.line,
            column: last.end.column,
        };
        return Err(last.error(None, "the script defines no stream or sink, so there is nothing to run"));
    }
    Ok(planner.finish())
}

#[cfg(test)]
mod used_columns_tests {
    use super::*;
    use laminar_exec::expr::Expr;

    const SOURCES: &str = "
        CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP,
            WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
        WITH (connector = 'file', path = 'bids.csv');
        CREATE SOURCE person (id BIGINT, name VARCHAR, city VARCHAR, ts TIMESTAMP, WATERMARK FOR ts AS ts)
        WITH (connector = 'file', path = 'people.csv');";

    /// The columns of each source a script's plan reads, by name.
    fn reads(streams: &str) -> Vec<Vec<String>> {
        let plan = plan_script(&format!("{SOURCES}\n{streams}"), PlanOptions::default()).expect("plans");
        plan.sources
            .iter()
            .map(|s| {
                s.declared
                    .fields
                    .iter()
                    .zip(&s.used_columns)
                    .filter(|(_, &u)| u)
                    .map(|(f, _)| f.name.clone())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_source_reads_what_its_queries_and_watermark_read() {
        // Filter and projection: their columns plus the watermark's.
        assert_eq!(
            reads("CREATE STREAM q AS SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;")[0],
            ["auction", "price", "date_time"]
        );
        // A windowed aggregate: keys, arguments, FILTER clauses and time.
        assert_eq!(
            reads(
                "CREATE STREAM q AS SELECT auction, COUNT(*) FILTER (WHERE price > 10) AS n, window_start
                 FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_start;"
            )[0],
            ["auction", "price", "date_time"]
        );
        // A source nothing reads is read for its watermark alone.
        let r = reads("CREATE STREAM q AS SELECT id FROM person;");
        assert_eq!(r[0], ["date_time"]);
        assert_eq!(r[1], ["id", "ts"]);
    }

    #[test]
    fn operators_not_modelled_and_sinks_of_sources_read_everything() {
        // A join is not modelled: both sides are read whole.
        let r = reads(
            "CREATE STREAM q AS SELECT b.auction, p.name FROM bid b JOIN person p ON b.bidder = p.id
             AND p.ts BETWEEN b.date_time - INTERVAL '1' SECOND AND b.date_time;",
        );
        assert_eq!(r[0].len(), 5);
        assert_eq!(r[1].len(), 4);
        // SELECT * and a sink straight from a source need every column.
        assert_eq!(
            reads("CREATE STREAM q AS SELECT * FROM bid WHERE price > 1;")[0].len(),
            5
        );
        assert_eq!(
            reads("CREATE SINK s FROM person WITH (connector = 'file', path = 'o.csv');")[1].len(),
            4
        );
    }

    #[test]
    fn sources_read_only_by_projections_and_aggregates_carry_only_what_they_read() {
        let plan = |sql: &str| plan_script(&format!("{SOURCES}\n{sql}"), PlanOptions::default()).expect("plans");
        // A projection over bid: rows carry auction, price, date_time; the
        // expressions and the watermark are renumbered to match.
        let p = plan("CREATE STREAM q AS SELECT price, auction FROM bid WHERE MOD(auction, 123) = 0;");
        let names: Vec<&str> = p.sources[0].schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["auction", "price", "date_time"]);
        assert_eq!(p.sources[0].declared.len(), 5);
        assert_eq!(p.sources[0].watermark.map(|w| w.column), Some(2));
        let OperatorSpec::Map(m) = &p.nodes[0].spec else {
            panic!("a map")
        };
        assert_eq!(m.projection, Some(vec![Expr::Column(1), Expr::Column(0)]));
        // A filter without projection passes whole rows on: not narrowed,
        // and neither is a source a join reads.
        let p = plan("CREATE STREAM q AS SELECT * FROM bid WHERE price > 1;");
        assert!(!p.sources[0].narrowed());
        let p = plan(
            "CREATE STREAM q AS SELECT b.auction, p.name FROM bid b JOIN person p ON b.bidder = p.id
             AND p.ts BETWEEN b.date_time - INTERVAL '1' SECOND AND b.date_time;",
        );
        assert!(!p.sources[0].narrowed() && !p.sources[1].narrowed());
    }

    #[test]
    fn a_generator_read_by_a_group_by_picks_only_what_is_read() {
        let p = plan_script(
            "CREATE SOURCE bid WITH (connector = 'nexmark', kind = 'bid', events = '100');
             CREATE STREAM q AS SELECT auction, COUNT(*) AS n FROM bid GROUP BY auction;",
            PlanOptions::default(),
        )
        .expect("plans");
        let laminar_exec::plan::SourceConnector::Nexmark { columns, .. } = &p.sources[0].connector else {
            panic!("a generator")
        };
        // Of bid's seven columns the generator's auction (0) alone.
        assert_eq!(columns, &[0]);
        assert_eq!(p.sources[0].schema.len(), 1);
        assert_eq!(p.sources[0].declared.len(), 7);
    }

    #[test]
    fn every_column_is_checked_unless_validate_read() {
        for (option, all) in [("", true), (", validate = 'all'", true), (", validate = 'read'", false)] {
            let plan = plan_script(
                &format!(
                    "CREATE SOURCE t (a BIGINT, b VARCHAR) WITH (connector = 'file', path = 't.csv'{option});
                     CREATE STREAM q AS SELECT a FROM t;"
                ),
                PlanOptions::default(),
            )
            .expect("plans");
            // b is checked, not kept: the rows stay narrow either way.
            assert_eq!(plan.sources[0].used_columns, [true, false], "{option}");
            assert_eq!(plan.sources[0].validate_all, all, "{option}");
        }
    }
}
