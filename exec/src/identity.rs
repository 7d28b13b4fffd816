//! Stable identities for what a plan keeps across restarts.
//!
//! A state directory outlives the SQL that wrote it: the operator edits
//! the script, adds a stream, drops another, and restarts. Which state
//! still belongs to which part of the new plan is decided by identities,
//! never by a node's position in the plan or by `explain`'s wording:
//!
//! - a **source**'s identity hashes its name, declared columns, connector
//!   (every option) and watermark; its *position key* hashes only what
//!   gives its checkpointed position a meaning (the connector, file or
//!   port, format, framing), so a source whose position key is unchanged
//!   resumes where it stood even when, say, its watermark delay changed;
//! - an **operator node**'s identity hashes the name of the stream it
//!   computes, its specification (every expression, literal, window,
//!   bound, emit mode and option as planned, before the optimising passes
//!   that depend on what other streams read), its output columns, and
//!   its inputs' identities, so an edit upstream changes every identity
//!   downstream of it;
//! - a **sink**'s identity hashes its name, its connector and the name
//!   of the stream it writes: a sink keeps its committed output as long
//!   as those hold, even when its stream was reset.
//!
//! State limits (`entries_max`) are left out: raising one keeps state.
//! Whitespace, comments, the letter case of keywords, the order of
//! statements and streams that are not upstream do not enter any of
//! them. The hash is FxHash64 of a text built from the planned structures
//! (`{:?}`), so an identity can change with a laminar release that changes
//! those structures; `STATE_FORMAT_VERSION` guards that case anyway.

use std::ops::Range;

use crate::plan::{Input, PhysicalPlan, SourceConnector};

/// What a statement of the script defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionKind {
    Source,
    /// A reference table: a source and the node that keeps its rows.
    Table,
    /// A stream or materialized view (with its `LATE DATA TO` stream).
    Stream,
    Sink,
}

impl DefinitionKind {
    pub fn word(self) -> &'static str {
        match self {
            DefinitionKind::Source => "source",
            DefinitionKind::Table => "table",
            DefinitionKind::Stream => "stream",
            DefinitionKind::Sink => "sink",
        }
    }
}

/// One statement of the script as planned: what it defines, its text
/// (tokens separated by single spaces, keywords upper case, comments
/// gone) for saying what changed, and the plan entries it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub kind: DefinitionKind,
    pub name: String,
    pub text: String,
    pub sources: Range<usize>,
    pub nodes: Range<usize>,
    pub sinks: Range<usize>,
}

/// The identities of a plan's sources, nodes and sinks, by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanIdentity {
    /// The script's statements (empty for a plan not built from SQL).
    pub definitions: Vec<Definition>,
    pub sources: Vec<u64>,
    pub source_positions: Vec<u64>,
    pub nodes: Vec<u64>,
    pub sinks: Vec<u64>,
}

impl PlanIdentity {
    /// The identity of a definition that keeps state: its nodes'
    /// identities taken together (a source's identity for a table
    /// without nodes, which cannot happen from SQL).
    pub fn definition_identity(&self, d: &Definition) -> u64 {
        let mut text = String::from("definition");
        for n in d.nodes.clone() {
            text.push_str(&format!("\0{:016x}", self.nodes[n]));
        }
        for s in d.sources.clone() {
            text.push_str(&format!("\0{:016x}", self.sources[s]));
        }
        fxhash::hash64(text.as_bytes())
    }

    /// The statement text of source `source` (a table's is its table's;
    /// empty for a plan not built from SQL).
    pub fn source_text(&self, source: usize) -> &str {
        self.definitions
            .iter()
            .find(|d| d.sources.contains(&source))
            .map_or("", |d| d.text.as_str())
    }

    /// One hash of the whole plan: every identity, in a fixed order
    /// (sorted), so statement order does not change it either.
    pub fn fingerprint(&self) -> u64 {
        let mut all: Vec<u64> = self
            .sources
            .iter()
            .chain(&self.nodes)
            .chain(&self.sinks)
            .copied()
            .collect();
        all.sort_unstable();
        let text: String = all.iter().map(|i| format!("{i:016x}")).collect();
        fxhash::hash64(text.as_bytes())
    }
}

impl PhysicalPlan {
    /// Computes every identity from the plan as it is now. The planner
    /// calls this before `mark_used_columns`, `narrow_sources` and
    /// `prune_ranked_groups`, whose results depend on which other
    /// streams read a source or an aggregate; `definitions` are the
    /// script's statements.
    pub fn assign_identities(&mut self, definitions: Vec<Definition>) {
        let mut id = PlanIdentity {
            definitions,
            ..PlanIdentity::default()
        };
        for s in &self.sources {
            id.sources.push(hash_text(&format!(
                "source\0{}\0{:?}\0{:?}\0{:?}\0{}",
                s.name, s.declared, s.connector, s.watermark, s.validate_all
            )));
            id.source_positions.push(hash_text(&format!(
                "position\0{}\0{:?}",
                s.name,
                position_part(&s.connector)
            )));
        }
        let input_id = |id: &PlanIdentity, input: &Input| match *input {
            Input::Source(s) => id.sources[s],
            Input::Node(n) => id.nodes[n],
        };
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            let inputs: Vec<String> = n.inputs.iter().map(|i| format!("{:016x}", input_id(&id, i))).collect();
            let spec = without_limits(&format!("{:?}", n.spec));
            let text = format!(
                "node\0{}\0{spec}\0{:?}\0{}\0{}",
                n.name,
                n.schema,
                n.changelog,
                inputs.join(",")
            );
            // Two nodes alike in everything (the same subquery twice in
            // one statement) are told apart by their order, which the
            // statement's own text fixes.
            let mut h = hash_text(&text);
            let mut k = 0u32;
            while !seen.insert(h) {
                k += 1;
                h = hash_text(&format!("{text}\0{k}"));
            }
            id.nodes.push(h);
        }
        for s in &self.sinks {
            let input = match s.input {
                Input::Source(i) => &self.sources[i].name,
                Input::Node(n) => &self.nodes[n].name,
            };
            id.sinks
                .push(hash_text(&format!("sink\0{}\0{:?}\0{input}", s.name, s.connector)));
        }
        self.identity = id;
    }

    /// The plan's identities: those the planner assigned, or, for a plan
    /// built by hand (tests, benchmarks), computed now.
    pub fn identity(&self) -> PlanIdentity {
        let id = &self.identity;
        if id.sources.len() == self.sources.len()
            && id.nodes.len() == self.nodes.len()
            && id.sinks.len() == self.sinks.len()
        {
            return id.clone();
        }
        let mut plan = self.clone();
        plan.assign_identities(Vec::new());
        plan.identity
    }
}

/// A spec's text without its state limits (`entries_max: N`): raising
/// `--state-entries-max` keeps every stream's state.
fn without_limits(spec: &str) -> String {
    const LIMIT: &str = "entries_max: ";
    let mut out = String::with_capacity(spec.len());
    let mut rest = spec;
    while let Some(at) = rest.find(LIMIT) {
        out.push_str(&rest[..at]);
        let after = &rest[at + LIMIT.len()..];
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn hash_text(text: &str) -> u64 {
    fxhash::hash64(text.as_bytes())
}

/// What of a source's connector its position depends on: not where
/// malformed records go, how often a followed file is polled, which
/// generator columns are kept or how many events it makes.
fn position_part(c: &SourceConnector) -> SourceConnector {
    let mut c = c.clone();
    match &mut c {
        SourceConnector::File {
            dead_letter, follow, ..
        } => {
            *dead_letter = None;
            if let Some(f) = follow {
                f.poll_ms = 0;
            }
        }
        SourceConnector::Nexmark { columns, events, .. } => {
            columns.clear();
            *events = 0;
        }
        SourceConnector::Tcp { dead_letter, .. } => *dead_letter = None,
    }
    c
}
