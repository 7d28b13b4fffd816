//! The physical plan: what the `sql` planner produces and the `reactor`
//! runs.
//!
//! A plan is a DAG of sources, operator nodes and sinks, in topological
//! order (a node only reads sources and earlier nodes). Operators are
//! described as data (`OperatorSpec`) and instantiated by `build`, so that
//! the reactor can make one instance per shard. Connectors are typed and
//! already validated: the reactor never sees an unknown option.

use std::path::PathBuf;

use crate::agg::AggKind;
use crate::expr::Expr;
use crate::format::Format;
use crate::operator::Operator;
use crate::operators::aggregate::{Aggregate, AggregateSpec};
use crate::operators::asof::{AsofJoin, AsofJoinSpec};
use crate::operators::join::{IntervalJoin, IntervalJoinSpec};
use crate::operators::late::{LateStream, LateStreamSpec};
use crate::operators::map::{Map, MapSpec};
use crate::operators::session::{SessionAggregate, SessionSpec};
use crate::operators::topn::{TopN, TopNSpec};
use crate::operators::upsert::{Upsert, UpsertSpec};
use crate::operators::window_tvf::{WindowTvf, WindowTvfSpec};
use crate::operators::AggCall;
use crate::types::{DataType, Schema};

/// Where a node reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    Source(usize),
    Node(usize),
}

/// A source's event-time watermark: `W = max(column) - delay_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkSpec {
    pub column: usize,
    pub delay_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConnector {
    File {
        path: PathBuf,
        format: Format,
        /// CSV: the first line is a header (`Some(true)`), data
        /// (`Some(false)`), or, without the option, a header exactly when
        /// it names the declared columns (see `format::names_columns`).
        header: Option<bool>,
        delimiter: u8,
        dead_letter: Option<PathBuf>,
        /// `follow = 'true'` (`laminar serve`): read to the end, then keep
        /// reading what is appended, through rotation and truncation.
        follow: Option<Follow>,
    },
    Nexmark {
        kind: String,
        /// For each declared column, its index in the generator's schema.
        columns: Vec<usize>,
        events: u64,
        rate_per_sec: u64,
        seed: u64,
    },
    /// `laminar serve`: lines over TCP. Every connection is a partition
    /// with its own watermark; one line is one record (a CSV field does
    /// not span lines here).
    Tcp {
        /// 0: any free port (the one bound is reported at start).
        port: u16,
        format: Format,
        delimiter: u8,
        dead_letter: Option<PathBuf>,
    },
}

/// How a followed file is watched (see `SourceConnector::File`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follow {
    /// How often the end of the file is looked at again once reached
    /// (`poll_ms`): new lines, rotation, truncation.
    pub poll_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceNode {
    pub name: String,
    /// The columns of the rows the source emits: the declared ones, or
    /// after `narrow_sources` only those something reads.
    pub schema: Schema,
    /// The columns as declared (`CREATE SOURCE`): what a record holds and
    /// what decoders parse against. `used_columns` is indexed by these.
    pub declared: Schema,
    pub connector: SourceConnector,
    pub watermark: Option<WatermarkSpec>,
    /// Columns some query reads; a decoder may skip the others.
    pub used_columns: Vec<bool>,
    /// Check every declared column whether read or not (`validate =
    /// 'all'`, the default), so a bad value anywhere makes a record
    /// malformed; the columns nothing reads are checked, not kept.
    pub validate_all: bool,
}

impl SourceNode {
    /// Whether the source emits fewer columns than it declares (see
    /// `PhysicalPlan::narrow_sources`): its decoder then writes only the
    /// used columns, in order.
    pub fn narrowed(&self) -> bool {
        self.schema.len() < self.declared.len()
    }

    /// A decoder of this source's records in `format`: against the
    /// declared columns, parsing the used ones, writing rows of `schema`.
    pub fn decoder(
        &self,
        format: Format,
        header: Option<&[u8]>,
        delimiter: u8,
    ) -> Result<Box<dyn crate::format::Decoder>, crate::format::FormatError> {
        format.decoder(
            &self.declared,
            header,
            delimiter,
            &self.used_columns,
            self.narrowed(),
            self.validate_all,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorSpec {
    Map(MapSpec),
    WindowTvf(WindowTvfSpec),
    Aggregate(AggregateSpec),
    Session(SessionSpec),
    Upsert(UpsertSpec),
    IntervalJoin(IntervalJoinSpec),
    TopN(TopNSpec),
    AsofJoin(AsofJoinSpec),
    /// The `LATE DATA TO` stream of the aggregate it reads.
    LateStream(LateStreamSpec),
}

impl OperatorSpec {
    pub fn build(&self) -> Box<dyn Operator> {
        match self {
            OperatorSpec::Map(s) => Box::new(Map::new(s.clone())),
            OperatorSpec::WindowTvf(s) => Box::new(WindowTvf::new(s.clone())),
            OperatorSpec::Aggregate(s) => Box::new(Aggregate::new(s.clone())),
            OperatorSpec::Session(s) => Box::new(SessionAggregate::new(s.clone())),
            OperatorSpec::Upsert(s) => Box::new(Upsert::new(s.clone())),
            OperatorSpec::IntervalJoin(s) => Box::new(IntervalJoin::new(s.clone())),
            OperatorSpec::TopN(s) => Box::new(TopN::new(s.clone())),
            OperatorSpec::AsofJoin(s) => Box::new(AsofJoin::new(s.clone())),
            OperatorSpec::LateStream(s) => Box::new(LateStream::new(s.clone())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorNode {
    /// The stream this node computes (intermediate nodes of one stream
    /// share its name).
    pub name: String,
    pub inputs: Vec<Input>,
    pub spec: OperatorSpec,
    pub schema: Schema,
    /// Whether the output is a changelog (carries -U/+U/-D rows).
    pub changelog: bool,
}

/// Where an operator's input rows must be, over the shards (the
/// reactor's topology follows this; `explain` shows it).
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Wherever the producer runs.
    Local,
    /// On the shard that owns the hash of these expressions over the row.
    Keyed(Vec<Expr>),
    /// On shard 0.
    Single,
}

impl OperatorNode {
    /// Per input, where its rows must be: a node that keeps keyed state
    /// (a GROUP BY with keys, a session window, a table, a partitioned
    /// top-N, a join) by its keys; one without keys on shard 0; stateless
    /// nodes where their input is. Only a join keys its inputs
    /// differently (each side by its own key columns).
    pub fn input_placements(&self) -> Vec<Placement> {
        let one = match &self.spec {
            OperatorSpec::Map(_) | OperatorSpec::WindowTvf(_) | OperatorSpec::LateStream(_) => Placement::Local,
            OperatorSpec::Aggregate(a) if a.keys.is_empty() => Placement::Single,
            OperatorSpec::Aggregate(a) => Placement::Keyed(a.keys.clone()),
            OperatorSpec::Session(s) if s.keys.is_empty() => Placement::Single,
            OperatorSpec::Session(s) => Placement::Keyed(s.keys.clone()),
            OperatorSpec::Upsert(u) => Placement::Keyed(u.key_columns.iter().map(|&c| Expr::Column(c)).collect()),
            OperatorSpec::TopN(t) if t.partition.is_empty() => Placement::Single,
            OperatorSpec::TopN(t) => Placement::Keyed(t.partition.clone()),
            OperatorSpec::AsofJoin(j) => {
                return vec![
                    Placement::Keyed(j.left_keys.clone()),
                    Placement::Keyed(j.right_keys.clone()),
                ]
            }
            OperatorSpec::IntervalJoin(j) => {
                return vec![
                    Placement::Keyed(j.left_keys.clone()),
                    Placement::Keyed(j.right_keys.clone()),
                ]
            }
        };
        vec![one; self.inputs.len()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkConnector {
    File {
        path: PathBuf,
        format: Format,
    },
    Stdout,
    /// `laminar serve`: subscribers connect to the port and receive the
    /// stream's rows as JSON lines from then on.
    Tcp {
        /// 0: any free port (the one bound is reported at start).
        port: u16,
    },
    /// Counts rows and drops them: what `laminar bench` puts in place of
    /// every sink (never written in SQL).
    Discard,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkNode {
    pub name: String,
    pub input: Input,
    pub schema: Schema,
    pub changelog: bool,
    pub connector: SinkConnector,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhysicalPlan {
    pub sources: Vec<SourceNode>,
    pub nodes: Vec<OperatorNode>,
    pub sinks: Vec<SinkNode>,
    /// Stable identities of the above (`identity.rs`), assigned by the
    /// planner before the optimising passes.
    pub identity: crate::identity::PlanIdentity,
}

impl PhysicalPlan {
    /// Checks the DAG is topologically ordered and widths line up. A broken
    /// plan is a planner bug, so this asserts.
    pub fn assert_valid(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            assert!(!node.inputs.is_empty(), "node {i} has no input");
            for input in &node.inputs {
                match *input {
                    Input::Source(s) => assert!(s < self.sources.len(), "node {i} reads a missing source"),
                    Input::Node(n) => assert!(n < i, "node {i} reads node {n}, which is not before it"),
                }
            }
        }
        for (producer, late) in self.late_stream_of().into_iter().enumerate() {
            let Some(late) = late else { continue };
            let input_width = match &self.nodes[producer].spec {
                OperatorSpec::Aggregate(a) if a.late_rows => self.schema_of(self.nodes[producer].inputs[0]).len(),
                OperatorSpec::Session(s) if s.late_rows => self.schema_of(self.nodes[producer].inputs[0]).len(),
                other => panic!("node {late} reads late rows of node {producer}, which has none: {other:?}"),
            };
            assert_eq!(self.nodes[late].schema.len(), input_width + 1, "late stream width");
        }
        for sink in &self.sinks {
            let width = self.schema_of(sink.input).len();
            assert_eq!(width, sink.schema.len(), "sink {} width", sink.name);
        }
    }

    /// Marks in each source's `used_columns` the columns some operator,
    /// sink or watermark reads, so decoders can skip the rest (a CSV
    /// reader then neither parses nor allocates them). A backward
    /// liveness pass over the DAG, conservative where an operator's
    /// column flow is not modelled: such an operator reads every column of
    /// every input.
    ///
    /// **Invariant:** a column left unmarked is never read: every
    /// operator that reads input columns is either modelled here (Map,
    /// WindowTvf, Aggregate and Session without late rows) or marks all.
    pub fn mark_used_columns(&mut self) {
        let mut needed_nodes: Vec<Vec<bool>> = self.nodes.iter().map(|n| vec![false; n.schema.len()]).collect();
        let mut needed_sources: Vec<Vec<bool>> = self.sources.iter().map(|s| vec![false; s.schema.len()]).collect();
        for sink in &self.sinks {
            let needed = match sink.input {
                Input::Source(s) => &mut needed_sources[s],
                Input::Node(n) => &mut needed_nodes[n],
            };
            needed.iter_mut().for_each(|c| *c = true);
        }
        for i in (0..self.nodes.len()).rev() {
            let node = &self.nodes[i];
            let out = std::mem::take(&mut needed_nodes[i]);
            for &input in &node.inputs {
                let width = self.schema_of(input).len();
                let reads = columns_read(&node.spec, width, &out);
                let needed = match input {
                    Input::Source(s) => &mut needed_sources[s],
                    Input::Node(n) => &mut needed_nodes[n],
                };
                for (n, r) in needed.iter_mut().zip(reads) {
                    *n |= r;
                }
            }
        }
        for (source, mut needed) in self.sources.iter_mut().zip(needed_sources) {
            if let Some(w) = source.watermark {
                needed[w.column] = true;
            }
            source.used_columns = needed;
        }
    }

    /// An aggregate whose only reader is a top-N over its windows, ranking
    /// by one of its aggregates whose value only grows, emits at a
    /// window's close only the groups that can rank (`leaders`): the
    /// difference between emitting a few rows and hundreds of thousands.
    /// The top-N still ranks what it receives, so results are unchanged.
    pub fn prune_ranked_groups(&mut self) {
        for t in 0..self.nodes.len() {
            let OperatorSpec::TopN(top) = &self.nodes[t].spec else {
                continue;
            };
            let [Input::Node(a)] = self.nodes[t].inputs[..] else {
                continue;
            };
            if self.read_by_sink(Input::Node(a)) || self.node_readers(Input::Node(a)) != [t] {
                continue;
            }
            let OperatorSpec::Aggregate(agg) = &self.nodes[a].spec else {
                continue;
            };
            if let Some(call) = ranks_by(agg, top) {
                let n = top.n;
                if let OperatorSpec::Aggregate(agg) = &mut self.nodes[a].spec {
                    agg.top = Some(crate::operators::leaders::TopPrune { call, n });
                }
            }
        }
    }

    /// Drops from each file, tcp and generator source's rows the columns nothing
    /// reads (after `mark_used_columns`), so rows move through batches and
    /// exchanges at the width the queries need: a 10M-row CSV of seven
    /// columns aggregated on two moved 224 bytes per row where 64 do.
    /// Only where every reader of the source is a projection or a
    /// GROUP BY (whose outputs do not depend on the input's width): their
    /// column references are renumbered, and so is the watermark column.
    /// Sources read by anything else keep their declared width.
    ///
    /// **Invariant:** after this, a source's `schema` is `declared`
    /// restricted to `used_columns`, in declared order.
    pub fn narrow_sources(&mut self) {
        for s in 0..self.sources.len() {
            let source = &self.sources[s];
            let narrowable_connector = matches!(
                source.connector,
                SourceConnector::File { .. } | SourceConnector::Tcp { .. } | SourceConnector::Nexmark { .. }
            );
            if !narrowable_connector || !source.used_columns.contains(&false) || source.schema != source.declared {
                continue;
            }
            if self.read_by_sink(Input::Source(s)) {
                continue;
            }
            let readers = self.node_readers(Input::Source(s));
            // A reader whose output does not depend on its input's width
            // is rewritten in place; a window TVF (whose output is its
            // input plus the window) only when its own readers all are.
            let rewritable = |plan: &PhysicalPlan, n: usize| {
                let node = &plan.nodes[n];
                node.inputs.len() == 1
                    && match &node.spec {
                        OperatorSpec::Map(m) => m.projection.is_some(),
                        OperatorSpec::Aggregate(a) => !a.late_rows,
                        OperatorSpec::Session(x) => !x.late_rows,
                        _ => false,
                    }
            };
            let tvf_readers = |plan: &PhysicalPlan, n: usize| -> Option<Vec<usize>> {
                if plan.read_by_sink(Input::Node(n)) {
                    return None;
                }
                let readers = plan.node_readers(Input::Node(n));
                readers.iter().all(|&r| rewritable(plan, r)).then_some(readers)
            };
            let mut through_tvf = Vec::new();
            let all = readers.iter().all(|&n| {
                if rewritable(self, n) {
                    return true;
                }
                let tvf = self.nodes[n].inputs.len() == 1 && matches!(self.nodes[n].spec, OperatorSpec::WindowTvf(_));
                match tvf.then(|| tvf_readers(self, n)).flatten() {
                    Some(r) => {
                        through_tvf.push((n, r));
                        true
                    }
                    None => false,
                }
            });
            if !all {
                continue;
            }
            // Declared position -> narrowed position (unused ones are
            // never referenced, so their entry is never read).
            let mut map = vec![usize::MAX; source.declared.len()];
            let mut fields = Vec::new();
            for (c, field) in source.declared.fields.iter().enumerate() {
                if source.used_columns[c] {
                    map[c] = fields.len();
                    fields.push(field.clone());
                }
            }
            let source = &mut self.sources[s];
            source.schema = Schema::new(fields);
            // The generator makes whole events and picks the declared
            // columns: it now picks only the read ones.
            if let SourceConnector::Nexmark { columns, .. } = &mut source.connector {
                let used = &source.used_columns;
                *columns = columns.iter().zip(used).filter(|(_, &u)| u).map(|(&g, _)| g).collect();
            }
            if let Some(w) = &mut source.watermark {
                w.column = map[w.column];
            }
            let narrowed = source.schema.clone();
            for (tvf, tvf_readers) in through_tvf {
                // The TVF's output: the narrowed row, then its window.
                let OperatorSpec::WindowTvf(w) = &mut self.nodes[tvf].spec else {
                    unreachable!("checked above")
                };
                w.time_column = map[w.time_column];
                let old = &self.nodes[tvf].schema;
                let declared = old.len() - 2;
                let mut fields = narrowed.fields.clone();
                fields.extend_from_slice(&old.fields[declared..]);
                self.nodes[tvf].schema = Schema::new(fields);
                let mut tvf_map = map.clone();
                tvf_map.extend([narrowed.len(), narrowed.len() + 1]);
                for r in tvf_readers {
                    self.remap_reader(r, &tvf_map);
                }
            }
            for n in readers {
                if !matches!(self.nodes[n].spec, OperatorSpec::WindowTvf(_)) {
                    self.remap_reader(n, &map);
                }
            }
        }
    }

    /// The nodes that read `from`, in plan order.
    fn node_readers(&self, from: Input) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].inputs.contains(&from))
            .collect()
    }

    /// Whether a sink reads `from` directly.
    fn read_by_sink(&self, from: Input) -> bool {
        self.sinks.iter().any(|k| k.input == from)
    }

    /// Renumbers the input columns a reader of a narrowed input refers to
    /// (`narrow_sources`).
    fn remap_reader(&mut self, n: usize, map: &[usize]) {
        match &mut self.nodes[n].spec {
            OperatorSpec::Map(m) => {
                m.filter.iter_mut().for_each(|e| e.remap_columns(map));
                m.projection.iter_mut().flatten().for_each(|e| e.remap_columns(map));
            }
            OperatorSpec::Aggregate(a) => {
                remap_grouping(&mut a.filter, &mut a.keys, &mut a.calls, map);
                if let Some(t) = &mut a.time_column {
                    *t = map[*t];
                }
            }
            OperatorSpec::Session(x) => {
                remap_grouping(&mut x.filter, &mut x.keys, &mut x.calls, map);
                x.time_column = map[x.time_column];
            }
            _ => unreachable!("only rewritable readers are remapped"),
        }
    }

    /// For each node, the `LATE DATA TO` node that reads its late rows.
    pub fn late_stream_of(&self) -> Vec<Option<usize>> {
        let mut of = vec![None; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if let (OperatorSpec::LateStream(_), [Input::Node(producer)]) = (&node.spec, node.inputs.as_slice()) {
                assert!(of[*producer].is_none(), "one late stream per node");
                of[*producer] = Some(i);
            }
        }
        of
    }

    /// Whether everything reading source `source` gives the same results
    /// whatever order the rows of one key arrive in. In-order reading makes
    /// arrival order file order; split reading does not, so a source is split
    /// only when nothing downstream can tell (every node reachable from it,
    /// since a node's output order follows its input's): projections and
    /// window annotation, joins (which emit every matching pair),
    /// windowed top-N (ties broken by the rows' values), sinks (compared as
    /// multisets), and
    /// aggregates that emit final rows only and whose aggregates do not care
    /// about order (COUNT, MIN, MAX, and SUM/AVG over integers, which sum in
    /// i128). Not: changelog aggregates (their intermediate rows follow the
    /// order) and unwindowed top-N (a changelog, likewise), FIRST/LAST_VALUE
    /// (ties by arrival), floating
    /// sums (rounding follows the order), tables (the latest row wins) and
    /// ASOF joins (the latest right row wins).
    pub fn order_insensitive(&self, source: usize) -> bool {
        fn readers_ok(plan: &PhysicalPlan, from: Input) -> bool {
            plan.nodes.iter().enumerate().all(|(i, node)| {
                if !node.inputs.contains(&from) {
                    return true;
                }
                let itself = match &node.spec {
                    OperatorSpec::Map(_)
                    | OperatorSpec::WindowTvf(_)
                    | OperatorSpec::IntervalJoin(_)
                    | OperatorSpec::LateStream(_) => true,
                    // A window's top rows, ties by the rows' values: final rows
                    // that no arrival order changes.
                    OperatorSpec::TopN(t) => t.window_end.is_some(),
                    OperatorSpec::Aggregate(a) => !a.emit.is_changelog() && a.calls.iter().all(exact),
                    OperatorSpec::Session(s) => !s.emit.is_changelog() && s.calls.iter().all(exact),
                    OperatorSpec::Upsert(_) | OperatorSpec::AsofJoin(_) => false,
                };
                // Its output comes in another order too: its readers must not
                // care either.
                itself && readers_ok(plan, Input::Node(i))
            })
        }
        fn exact(call: &AggCall) -> bool {
            match call.kind {
                AggKind::CountStar | AggKind::Count | AggKind::CountDistinct | AggKind::Min | AggKind::Max => true,
                AggKind::Sum | AggKind::Avg => matches!(call.input_type, DataType::Int),
                AggKind::FirstValue | AggKind::LastValue => false,
            }
        }
        readers_ok(self, Input::Source(source))
    }

    pub fn schema_of(&self, input: Input) -> &Schema {
        match input {
            Input::Source(s) => &self.sources[s].schema,
            Input::Node(n) => &self.nodes[n].schema,
        }
    }
}

/// Renumbers the input columns a GROUP BY reads (see `narrow_sources`).
fn remap_grouping(filter: &mut Option<Expr>, keys: &mut [Expr], calls: &mut [AggCall], map: &[usize]) {
    filter.iter_mut().chain(keys).for_each(|e| e.remap_columns(map));
    for call in calls {
        call.arg
            .iter_mut()
            .chain(&mut call.filter)
            .for_each(|e| e.remap_columns(map));
    }
}

/// Which of an input's `width` columns an operator reads, given
/// which of its output columns are needed downstream (`out`).
fn columns_read(spec: &OperatorSpec, width: usize, out: &[bool]) -> Vec<bool> {
    let mut reads = vec![false; width];
    let mut mark = |e: &Expr| {
        e.visit(&mut |e| {
            if let Expr::Column(c) = e {
                reads[*c] = true;
            }
        })
    };
    match spec {
        OperatorSpec::Map(m) => {
            m.filter.iter().for_each(&mut mark);
            match &m.projection {
                // Every expression is evaluated, needed or not: it could
                // count an evaluation error on a NULL it never saw.
                Some(exprs) => exprs.iter().for_each(&mut mark),
                None => {
                    for (r, &o) in reads.iter_mut().zip(out) {
                        *r |= o;
                    }
                }
            }
        }
        // The input's columns pass through, followed by the window bounds.
        OperatorSpec::WindowTvf(w) => {
            for (r, &o) in reads.iter_mut().zip(out) {
                *r |= o;
            }
            reads[w.time_column] = true;
        }
        OperatorSpec::Aggregate(a) if !a.late_rows => {
            a.filter.iter().chain(&a.keys).for_each(&mut mark);
            for call in &a.calls {
                call.arg.iter().chain(&call.filter).for_each(&mut mark);
            }
            if let Some(t) = a.time_column {
                reads[t] = true;
            }
        }
        OperatorSpec::Session(s) if !s.late_rows => {
            s.filter.iter().chain(&s.keys).for_each(&mut mark);
            for call in &s.calls {
                call.arg.iter().chain(&call.filter).for_each(&mut mark);
            }
            reads[s.time_column] = true;
        }
        _ => reads.iter_mut().for_each(|r| *r = true),
    }
    reads
}

/// The aggregate call by whose value `top` ranks `agg`'s windows, when
/// pruning is exact: `agg` emits each window's final rows once, from an
/// append-only input and without HAVING; `top` partitions by the window
/// alone and orders first by a COUNT (descending), a MAX of integers
/// (descending) or a MIN of integers (ascending), values that only grow
/// in the order that ranks.
fn ranks_by(agg: &AggregateSpec, top: &TopNSpec) -> Option<usize> {
    use crate::operators::EmitMode;
    let windowed_once = agg.window.is_some() && matches!(agg.emit, EmitMode::OnWindowClose | EmitMode::Final);
    if !windowed_once || agg.retractable || agg.output.having.is_some() || top.retractable || top.window_end.is_none() {
        return None;
    }
    let k = agg.keys.len();
    // The intermediate row is keys ++ [window_start, window_end] ++ calls.
    let source = |c: &Expr| match c {
        Expr::Column(j) => match agg.output.select.get(*j) {
            Some(Expr::Column(i)) => Some(*i),
            _ => None,
        },
        _ => None,
    };
    if !top
        .partition
        .iter()
        .all(|p| matches!(source(p), Some(i) if i == k || i == k + 1))
    {
        return None;
    }
    let (first, descending) = top.order.first()?;
    let call = source(first)?.checked_sub(k + 2)?;
    let c = agg.calls.get(call)?;
    let grows = match c.kind {
        AggKind::CountStar | AggKind::Count => *descending,
        AggKind::Max => *descending && c.input_type == DataType::Int,
        AggKind::Min => !*descending && c.input_type == DataType::Int,
        _ => false,
    };
    grows.then_some(call)
}
