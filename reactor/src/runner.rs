//! The run loop: sources in round-robin, batches pushed through the
//! operator DAG in topological order, results to sinks.
//!
//! Each source yields one batch at a time; a batch (with its in-band
//! watermarks) is delivered to every node and sink that reads it, and each
//! node's output is delivered onward in turn, depth first. Nothing is
//! buffered between nodes beyond the batch in flight, so memory is bounded
//! by the batch size and the operators' state.

use std::time::{Duration, Instant};

use laminar_exec::batch::Batch;
use laminar_exec::operator::{Driven, OperatorMetrics};
use laminar_exec::plan::{Input, PhysicalPlan, SinkConnector};

use crate::sink::Sink;
use crate::source::{MalformedRecord, Source};
use crate::RunError;

pub use crate::source::MalformedRecord as Malformed;

/// How to run.
pub struct RunOptions<'a> {
    /// Rows per batch read from a source.
    pub batch_rows: usize,
    /// Called for each reported malformed record.
    pub on_malformed: &'a mut dyn FnMut(MalformedRecord<'_>),
    /// Called now and then with progress.
    pub on_progress: &'a mut dyn FnMut(&Progress),
}

/// Progress so far, for a progress bar.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub rows_in: u64,
    pub bytes_read: u64,
    /// Sum of the sizes of file inputs, when every input is a file.
    pub bytes_total: Option<u64>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct SourceSummary {
    pub name: String,
    pub rows: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub name: String,
    pub metrics: OperatorMetrics,
}

#[derive(Debug, Clone, Default)]
pub struct SinkSummary {
    pub name: String,
    pub rows: u64,
    pub target: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub sources: Vec<SourceSummary>,
    pub streams: Vec<StreamSummary>,
    pub sinks: Vec<SinkSummary>,
    pub elapsed: Duration,
}

impl RunSummary {
    pub fn rows_in(&self) -> u64 {
        self.sources.iter().map(|s| s.rows).sum()
    }

    pub fn malformed(&self) -> u64 {
        self.sources.iter().map(|s| s.malformed).sum()
    }

    pub fn late_rows_dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.metrics.late_rows_dropped).sum()
    }
}

struct Consumers {
    /// (node, input port) pairs reading each source / node.
    of_source: Vec<Vec<(usize, usize)>>,
    of_node: Vec<Vec<(usize, usize)>>,
    sinks_of_source: Vec<Vec<usize>>,
    sinks_of_node: Vec<Vec<usize>>,
}

impl Consumers {
    fn nodes(&self, from: Input) -> &[(usize, usize)] {
        match from {
            Input::Source(s) => &self.of_source[s],
            Input::Node(n) => &self.of_node[n],
        }
    }

    fn sinks(&self, from: Input) -> &[usize] {
        match from {
            Input::Source(s) => &self.sinks_of_source[s],
            Input::Node(n) => &self.sinks_of_node[n],
        }
    }
}

/// Runs a plan over bounded inputs to the end.
pub fn run(plan: &PhysicalPlan, options: RunOptions<'_>) -> Result<RunSummary, RunError> {
    plan.assert_valid();
    assert!(options.batch_rows > 0);
    let started = Instant::now();
    let mut consumers = Consumers {
        of_source: vec![Vec::new(); plan.sources.len()],
        of_node: vec![Vec::new(); plan.nodes.len()],
        sinks_of_source: vec![Vec::new(); plan.sources.len()],
        sinks_of_node: vec![Vec::new(); plan.nodes.len()],
    };
    for (i, node) in plan.nodes.iter().enumerate() {
        for (port, &input) in node.inputs.iter().enumerate() {
            match input {
                Input::Source(s) => consumers.of_source[s].push((i, port)),
                Input::Node(n) => consumers.of_node[n].push((i, port)),
            }
        }
    }
    for (i, sink) in plan.sinks.iter().enumerate() {
        match sink.input {
            Input::Source(s) => consumers.sinks_of_source[s].push(i),
            Input::Node(n) => consumers.sinks_of_node[n].push(i),
        }
    }
    let mut sources = plan.sources.iter().map(Source::open).collect::<Result<Vec<_>, _>>()?;
    let mut nodes: Vec<Driven> = plan
        .nodes
        .iter()
        .map(|n| Driven::new(n.spec.build(), n.inputs.len()))
        .collect();
    let stdout_sinks = plan
        .sinks
        .iter()
        .filter(|s| s.connector == SinkConnector::Stdout)
        .count();
    let mut sinks = plan
        .sinks
        .iter()
        .map(|s| Sink::open(s, stdout_sinks))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes_total = sources.iter().map(|s| s.bytes_total).sum::<Option<u64>>();

    let mut last_progress = Instant::now();
    let mut work: Vec<(Input, Batch)> = Vec::new();
    while sources.iter().any(|s| !s.is_done()) {
        for (i, source) in sources.iter_mut().enumerate() {
            if source.is_done() {
                continue;
            }
            let batch = source.next_batch(options.batch_rows, options.on_malformed)?;
            work.push((Input::Source(i), batch));
            while let Some((from, batch)) = work.pop() {
                for &s in consumers.sinks(from) {
                    sinks[s].write(&batch)?;
                }
                for &(n, port) in consumers.nodes(from) {
                    let mut out = Batch::new(plan.nodes[n].schema.len());
                    nodes[n].push(port, &batch, &mut out).map_err(|source| RunError::Exec {
                        stream: plan.nodes[n].name.clone(),
                        source,
                    })?;
                    if !out.is_inert() {
                        work.push((Input::Node(n), out));
                    }
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(100) {
            last_progress = Instant::now();
            (options.on_progress)(&Progress {
                rows_in: sources.iter().map(|s| s.rows).sum(),
                bytes_read: sources.iter().map(|s| s.bytes_read).sum(),
                bytes_total,
                elapsed: started.elapsed(),
            });
        }
    }
    for sink in &mut sinks {
        sink.finish()?;
    }
    let mut streams: Vec<StreamSummary> = Vec::new();
    for (node, driven) in plan.nodes.iter().zip(&nodes) {
        let m = driven.operator().metrics();
        match streams.iter_mut().find(|s| s.name == node.name) {
            Some(s) => {
                // Several nodes of one stream: keep the last node's output
                // count, sum the drops and errors.
                s.metrics.rows_out = m.rows_out;
                s.metrics.late_rows_dropped += m.late_rows_dropped;
                s.metrics.null_time_dropped += m.null_time_dropped;
                s.metrics.eval_errors += m.eval_errors;
                s.metrics.state_entries += m.state_entries;
            }
            None => streams.push(StreamSummary {
                name: node.name.clone(),
                metrics: m,
            }),
        }
    }
    Ok(RunSummary {
        sources: sources
            .iter()
            .map(|s| SourceSummary {
                name: s.name.clone(),
                rows: s.rows,
                malformed: s.malformed,
            })
            .collect(),
        streams,
        sinks: plan
            .sinks
            .iter()
            .zip(&sinks)
            .map(|(node, s)| SinkSummary {
                name: s.name.clone(),
                rows: s.rows,
                target: match &node.connector {
                    SinkConnector::File { path, .. } => path.display().to_string(),
                    SinkConnector::Stdout => "stdout".into(),
                },
            })
            .collect(),
        elapsed: started.elapsed(),
    })
}
