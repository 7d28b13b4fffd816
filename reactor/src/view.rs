//! What a stream's changelog folds to, as of the last checkpoint: the
//! rows a `SELECT` over pgwire reads (`laminar-pg`).
//!
//! A query never touches a shard. Its answer comes from the state
//! directory: the durable manifest names a checkpoint, consistent across
//! shards at one barrier, and the store holds each shard's snapshot of
//! every node. For the stream asked about, this finds the node whose
//! state is the fold of its output (an unwindowed aggregate, a table, an
//! unwindowed top-N: `Operator::contents`), reads each shard's snapshot
//! of that node on the calling thread and asks a fresh instance for its
//! rows (`Operator::snapshot_contents`; each key is in exactly one
//! shard's), and pushes them through the stateless projections and
//! filters between that node and the stream's output. A stream whose rows
//! are append-only, or windowed with its closed windows gone, has no
//! table: the error says why, and `SUBSCRIBE` is the way to read it.
//!
//! The store is opened read-only (RocksDB takes no lock then, beside the
//! running coordinator). A checkpoint the coordinator collects while a
//! read is under way makes the read fail; it is retried on the newer
//! manifest.

use std::path::{Path, PathBuf};

use laminar_exec::batch::Batch;
use laminar_exec::operator::Driven;
use laminar_exec::plan::{Input, OperatorSpec, PhysicalPlan};
use laminar_exec::types::Schema;
use laminar_persistence::manifest::{self, Manifest};
use laminar_persistence::store::{CheckpointStore, PartIndex};

/// Reads that lose a race with the coordinator's collection are retried
/// this many times on the newer checkpoint.
const READ_ATTEMPTS: usize = 3;

/// Why a stream's contents cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("no stream, view or table is named {0:?}")]
    Unknown(String),
    #[error("{name} is a source: its rows are not kept; SUBSCRIBE to a stream that reads it")]
    Source { name: String },
    #[error("stream {stream} is not a table: {reason}; SUBSCRIBE {stream} reads its rows as they come")]
    NotATable { stream: String, reason: String },
    #[error("no checkpoint is complete yet in {}: a SELECT reads the last one", .dir.display())]
    NoCheckpoint { dir: PathBuf },
    #[error(
        "stream {stream} is newer than the last checkpoint (epoch {epoch}): a SELECT reads the last one; try again after the next"
    )]
    NotCheckpointed { stream: String, epoch: u64 },
    #[error("stream {stream} holds more than {max} rows, the result limit (sql.result_rows_max)")]
    TooLarge { stream: String, max: usize },
    #[error("reading the checkpoint in {}: {reason}", .dir.display())]
    Read { dir: PathBuf, reason: String },
}

/// A stream's rows at a checkpoint.
#[derive(Debug)]
pub struct ViewContents {
    /// The checkpoint read, and when it was taken.
    pub epoch: u64,
    /// A hash of the node's parts as the store indexes them (see
    /// `version`): equal versions are equal state.
    pub version: u64,
    pub created_unix_ms: i64,
    pub schema: Schema,
    /// `+I` rows, no marks.
    pub rows: Batch,
}

/// The node that computes stream `name` (its last node).
pub fn output_node(plan: &PhysicalPlan, name: &str) -> Option<usize> {
    plan.nodes.iter().rposition(|n| n.name.eq_ignore_ascii_case(name))
}

/// The nodes a query of `stream` runs, first the one whose state is the
/// fold, then the stateless ones after it, in order.
fn chain(plan: &PhysicalPlan, stream: &str) -> Result<Vec<usize>, ViewError> {
    let Some(mut n) = output_node(plan, stream) else {
        if plan.sources.iter().any(|s| s.name.eq_ignore_ascii_case(stream)) {
            return Err(ViewError::Source { name: stream.into() });
        }
        return Err(ViewError::Unknown(stream.into()));
    };
    let mut chain = vec![n];
    while let OperatorSpec::Map(_) = plan.nodes[n].spec {
        match plan.nodes[n].inputs[..] {
            [Input::Node(m)] => {
                n = m;
                chain.push(n);
            }
            _ => {
                return Err(ViewError::NotATable {
                    stream: stream.into(),
                    reason: "its rows are append-only (it keeps no state)".into(),
                })
            }
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Checks that `stream` can be read as a table, without reading it: the
/// same errors `read` gives for what the plan decides.
pub fn check(plan: &PhysicalPlan, stream: &str) -> Result<(), ViewError> {
    table_chain(plan, stream).map(|_| ())
}

/// `chain`, for a stream whose root node's state is its table.
fn table_chain(plan: &PhysicalPlan, stream: &str) -> Result<Vec<usize>, ViewError> {
    let chain = chain(plan, stream)?;
    let root = &plan.nodes[chain[0]];
    let reason = match &root.spec {
        OperatorSpec::Aggregate(a) if a.window.is_none() => return Ok(chain),
        OperatorSpec::Aggregate(_) => "it is windowed: a closed window's rows are not kept",
        OperatorSpec::Upsert(_) => return Ok(chain),
        OperatorSpec::TopN(t) if t.window_end.is_none() => return Ok(chain),
        OperatorSpec::TopN(_) => "it ranks within windows and emits each window once, at its close",
        _ => "its rows are append-only",
    };
    Err(ViewError::NotATable {
        stream: stream.into(),
        reason: reason.into(),
    })
}

/// The rows of `stream` as of the last checkpoint in `dir`, the state
/// directory of a run of `plan` (see the module doc). At most `rows_max`.
pub fn read(dir: &Path, plan: &PhysicalPlan, stream: &str, rows_max: usize) -> Result<ViewContents, ViewError> {
    let chain = table_chain(plan, stream)?;
    let latest = || {
        manifest::read(dir)
            .map_err(|e| read_error(dir, e))?
            .ok_or_else(|| ViewError::NoCheckpoint { dir: dir.into() })
    };
    let mut attempt = 1;
    loop {
        let manifest = latest()?;
        match read_at(dir, plan, stream, &chain, &manifest, rows_max) {
            // Collected under the read: again on the newer checkpoint.
            Err(ViewError::Read { .. }) if attempt < READ_ATTEMPTS && latest()?.epoch != manifest.epoch => attempt += 1,
            result => return result,
        }
    }
}

/// The checkpoint the state directory holds now, and the version of
/// `stream`'s view in it (`ViewContents::version`), read from the store's
/// index alone: a cached view of an equal version is still the view.
pub fn version(dir: &Path, plan: &PhysicalPlan, stream: &str) -> Result<(u64, u64), ViewError> {
    let chain = chain(plan, stream)?;
    let manifest = manifest::read(dir)
        .map_err(|e| read_error(dir, e))?
        .ok_or_else(|| ViewError::NoCheckpoint { dir: dir.into() })?;
    let part = checkpointed_part(plan, stream, chain[0], &manifest)?;
    let store = CheckpointStore::open_read_only(&dir.join("checkpoints")).map_err(|e| read_error(dir, e))?;
    let indexes = part_indexes(dir, &store, &manifest, part)?;
    Ok((manifest.epoch, version_of(&indexes)))
}

/// The part number of node `root` in `manifest`'s checkpoint.
fn checkpointed_part(plan: &PhysicalPlan, stream: &str, root: usize, manifest: &Manifest) -> Result<u32, ViewError> {
    let identity = plan.identity().nodes[root];
    manifest
        .streams
        .iter()
        .flat_map(|s| &s.nodes)
        .find(|n| n.identity == identity)
        .map(|n| n.part)
        .ok_or_else(|| ViewError::NotCheckpointed {
            stream: stream.into(),
            epoch: manifest.epoch,
        })
}

/// Each shard's index entry of `part` (shards where the node is not
/// active have none).
fn part_indexes(
    dir: &Path,
    store: &CheckpointStore,
    manifest: &Manifest,
    part: u32,
) -> Result<Vec<(u32, PartIndex)>, ViewError> {
    let mut out = Vec::new();
    for shard in 0..manifest.shards {
        if let Some(index) = store
            .part_index(manifest.epoch, shard, part)
            .map_err(|e| read_error(dir, e))?
        {
            out.push((shard, index));
        }
    }
    Ok(out)
}

fn version_of(indexes: &[(u32, PartIndex)]) -> u64 {
    let mut h = fxhash::FxHasher64::default();
    for (shard, index) in indexes {
        std::hash::Hash::hash(&(shard, index.len), &mut h);
        for c in &index.chunks {
            std::hash::Hash::hash(&(c.len, c.crc, c.hash), &mut h);
        }
    }
    std::hash::Hasher::finish(&h)
}

fn read_error(dir: &Path, e: impl std::fmt::Display) -> ViewError {
    ViewError::Read {
        dir: dir.into(),
        reason: e.to_string(),
    }
}

fn read_at(
    dir: &Path,
    plan: &PhysicalPlan,
    stream: &str,
    chain: &[usize],
    manifest: &Manifest,
    rows_max: usize,
) -> Result<ViewContents, ViewError> {
    let root = chain[0];
    let part = checkpointed_part(plan, stream, root, manifest)?;
    let started = std::time::Instant::now();
    let store = CheckpointStore::open_read_only(&dir.join("checkpoints")).map_err(|e| read_error(dir, e))?;
    let opened = started.elapsed();
    let indexes = part_indexes(dir, &store, manifest, part)?;
    let mut blobs = Vec::new();
    for (shard, index) in &indexes {
        blobs.push(
            store
                .read_indexed(manifest.epoch, *shard, index)
                .map_err(|e| read_error(dir, e))?,
        );
    }
    let read = started.elapsed();
    // Each key is in exactly one shard's part, so the union of the
    // parts' rows is the view: each part is asked by an instance of its
    // own (a merge into one, as a rescale does, would copy the state
    // twice more).
    let restore = |e: laminar_exec::error::ExecError| read_error(dir, format!("stream {stream}: {e}"));
    let mut rows = Batch::new(plan.nodes[root].schema.len());
    for blob in &blobs {
        let inputs: Vec<usize> = (0..plan.nodes[root].inputs.len()).collect();
        let mut node = Driven::with_inputs(plan.nodes[root].spec.build(), &inputs);
        node.snapshot_contents(blob, &mut rows)
            .map_err(restore)?
            .map_err(|reason| ViewError::NotATable {
                stream: stream.into(),
                reason,
            })?;
        if rows.len() > rows_max {
            return Err(ViewError::TooLarge {
                stream: stream.into(),
                max: rows_max,
            });
        }
    }
    for &n in &chain[1..] {
        let mut next = Driven::with_inputs(plan.nodes[n].spec.build(), &[0]);
        let mut out = Batch::new(plan.nodes[n].schema.len());
        next.apply(0, &rows, &mut out).map_err(restore)?;
        // Projections and filters never add rows: the bound above holds.
        rows = out;
    }
    tracing::debug!(
        "view {stream} at checkpoint {}: {} rows; store opened in {:?}, parts read by {:?}, rows made by {:?}",
        manifest.epoch,
        rows.len(),
        opened,
        read,
        started.elapsed()
    );
    let last = *chain.last().expect("a chain has a node");
    Ok(ViewContents {
        epoch: manifest.epoch,
        version: version_of(&indexes),
        created_unix_ms: manifest.created_unix_ms,
        schema: plan.nodes[last].schema.clone(),
        rows,
    })
}
