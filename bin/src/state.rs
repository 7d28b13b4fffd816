//! `laminar state show DIR`: what a state directory holds, read from its
//! manifest and its checkpoint store's indexes without starting anything:
//! the last checkpoint (epoch, when, shards, the plan fingerprint, state
//! bytes), each node's state bytes per shard, each shard's WAL position,
//! each source's position and watermark, each sink's committed output.
//! A table for people, or `--json`.
//!
//! `laminar state diff DIR FILE.sql`: what a restart with that script
//! would keep, start fresh, drop, reset or refuse
//! (`laminar_reactor::evolve`, the decision the restart itself takes).

use std::path::Path;

use anyhow::{Context, Result};
use laminar_persistence::manifest::{self, Manifest};
use laminar_reactor::source::SourceState;
use serde_json::json;

/// Prints what the state directory `dir` holds.
pub fn show(dir: &Path, as_json: bool) -> Result<()> {
    let manifest = manifest::read(dir)
        .with_context(|| format!("reading the state directory {}", dir.display()))?
        .with_context(|| {
            format!(
                "{} holds no checkpoint (no {} file): nothing was written there yet",
                dir.display(),
                manifest::MANIFEST_FILE
            )
        })?;
    let sources = manifest
        .sources
        .iter()
        .map(|p| {
            let state = laminar_persistence::from_archive::<SourceState>(&p.state)
                .with_context(|| format!("the position of source {} does not decode", p.name))?;
            Ok((p, state))
        })
        .collect::<Result<Vec<_>>>()?;
    let nodes = node_bytes(dir, &manifest)?;
    let text = if as_json {
        let mut out = serde_json::to_string_pretty(&to_json(&manifest, &sources, &nodes))?;
        out.push('\n');
        out
    } else {
        table(dir, &manifest, &sources, &nodes)
    };
    crate::write_stdout(&text)
}

type Positions<'a> = [(&'a manifest::SourcePosition, SourceState)];

/// Per node (the plan's node index, as `laminar explain` numbers them):
/// its state's bytes on each shard at the last checkpoint.
type NodeBytes = std::collections::BTreeMap<u32, Vec<u64>>;

/// Reads each shard's index of the last checkpoint: what every node's
/// snapshot weighs there (the parts themselves are not read).
fn node_bytes(dir: &Path, m: &Manifest) -> Result<NodeBytes> {
    let store_dir = dir.join("checkpoints");
    let store = laminar_persistence::store::CheckpointStore::open_read_only(&store_dir)
        .with_context(|| format!("opening the checkpoint store {}", store_dir.display()))?;
    let mut nodes = NodeBytes::new();
    for shard in 0..m.shards {
        let index = store
            .index(m.epoch, shard)
            .with_context(|| format!("reading shard {shard}'s index of checkpoint {}", m.epoch))?;
        for part in index.parts {
            nodes.entry(part.part).or_insert_with(|| vec![0; m.shards as usize])[shard as usize] = part.len;
        }
    }
    Ok(nodes)
}

fn to_json(m: &Manifest, sources: &Positions<'_>, nodes: &NodeBytes) -> serde_json::Value {
    json!({
        "epoch": m.epoch,
        "created_unix_ms": m.created_unix_ms,
        "shards": m.shards,
        "key_groups": m.key_groups,
        "plan_fingerprint": format!("{:016x}", m.plan_fingerprint),
        "state_bytes": m.state_bytes,
        "state_bytes_written": m.state_bytes_written,
        "wal_lsns": m.wal_lsns,
        "streams": m.streams.iter().map(|r| json!({
            "name": r.name,
            "kind": r.kind,
            "identity": format!("{:016x}", r.identity),
            "nodes": r.nodes.iter().map(|n| n.part).collect::<Vec<_>>(),
            "state_bytes": r.nodes.iter().filter_map(|n| nodes.get(&n.part)).flatten().sum::<u64>(),
            "definition": r.text,
        })).collect::<Vec<_>>(),
        "nodes": nodes.iter().map(|(n, per_shard)| json!({
            "node": n,
            "state_bytes": per_shard.iter().sum::<u64>(),
            "state_bytes_per_shard": per_shard,
        })).collect::<Vec<_>>(),
        "sources": sources.iter().map(|(p, s)| json!({
            "name": p.name,
            "shard": p.shard,
            "offset": s.offset,
            "line": s.line,
            "rows": s.rows,
            "malformed": s.malformed,
            "watermark": (s.watermark > i64::MIN).then_some(s.watermark),
            "max_event_time": (s.max_time > i64::MIN).then_some(s.max_time),
            "done": s.done,
            "open_connections": s.live_connections.len(),
            "followed_file": s.follow.as_ref().map(|f| json!({"device": f.device, "inode": f.inode})),
        })).collect::<Vec<_>>(),
        "sinks": m.sinks.iter().map(|k| json!({
            "name": k.name,
            "identity": format!("{:016x}", k.identity),
            "committed_bytes": k.bytes,
            "rows": k.rows,
        })).collect::<Vec<_>>(),
    })
}

fn table(dir: &Path, m: &Manifest, sources: &Positions<'_>, nodes: &NodeBytes) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let when = if m.created_unix_ms > 0 {
        format!("{} UTC", laminar_exec::time::timestamp_to_string(m.created_unix_ms))
    } else {
        "unknown".to_string()
    };
    let _ = writeln!(
        s,
        "state {}: checkpoint {} of {when}, {} shard(s) ({} key groups), plan fingerprint {:016x}",
        dir.display(),
        m.epoch,
        m.shards,
        m.key_groups,
        m.plan_fingerprint
    );
    let _ = writeln!(
        s,
        "  state: {} bytes ({} written by the last checkpoint)",
        m.state_bytes, m.state_bytes_written
    );
    let node_line = |s: &mut String, n: u32, per_shard: &[u64]| {
        let shards: Vec<String> = per_shard.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "    node #{n}: {} bytes of state (per shard: {})",
            per_shard.iter().sum::<u64>(),
            shards.join(", ")
        );
    };
    for r in &m.streams {
        let bytes: u64 = r.nodes.iter().filter_map(|n| nodes.get(&n.part)).flatten().sum();
        let _ = writeln!(
            s,
            "  {} {} (identity {:016x}): {bytes} bytes of state",
            r.kind, r.name, r.identity
        );
        for n in &r.nodes {
            if let Some(per_shard) = nodes.get(&n.part) {
                node_line(&mut s, n.part, per_shard);
            }
        }
    }
    for (n, per_shard) in nodes {
        if !m.streams.iter().any(|r| r.nodes.iter().any(|o| o.part == *n)) {
            node_line(&mut s, *n, per_shard);
        }
    }
    if m.wal_lsns.iter().any(|&l| l > 0) {
        let lsns: Vec<String> = m
            .wal_lsns
            .iter()
            .enumerate()
            .map(|(i, l)| format!("shard {i} from {l}"))
            .collect();
        let _ = writeln!(s, "  WAL replay: {}", lsns.join(", "));
    }
    let time = |t: i64| {
        if t == i64::MIN {
            "none".to_string()
        } else {
            laminar_exec::time::timestamp_to_string(t)
        }
    };
    for (p, st) in sources {
        let mut line = format!(
            "  source {} (shard {}): offset {}, {} rows, {} malformed, watermark {}",
            p.name,
            p.shard,
            st.offset,
            st.rows,
            st.malformed,
            time(st.watermark)
        );
        if st.done {
            line.push_str(", read to its end");
        }
        if let Some(f) = &st.follow {
            let _ = write!(line, ", followed file device {} inode {}", f.device, f.inode);
        }
        if !st.live_connections.is_empty() {
            let _ = write!(line, ", {} connection(s) open", st.live_connections.len());
        }
        let _ = writeln!(s, "{line}");
    }
    for k in &m.sinks {
        let _ = writeln!(
            s,
            "  sink {}: {} rows committed ({} bytes of its file)",
            k.name, k.rows, k.bytes
        );
    }
    s
}

/// Prints what a restart of `plan` on `dir` would do.
pub fn diff(
    dir: &Path,
    plan: &laminar_exec::plan::PhysicalPlan,
    shards: Option<usize>,
    resets: &[String],
    as_json: bool,
) -> Result<()> {
    let manifest = manifest::read(dir)
        .with_context(|| format!("reading the state directory {}", dir.display()))?
        .with_context(|| {
            format!(
                "{} holds no checkpoint: a run there starts every stream fresh",
                dir.display()
            )
        })?;
    let shards = shards.unwrap_or(manifest.shards as usize);
    let ev = laminar_reactor::evolve::plan_restart(&manifest, plan, shards, resets).map_err(anyhow::Error::msg)?;
    let refused = !ev.refusals().is_empty();
    let text = if as_json {
        let mut out = serde_json::to_string_pretty(&json!({
            "epoch": manifest.epoch,
            "shards": shards,
            "refused": refused,
            "changes": ev.changes.iter().map(|c| json!({
                "kind": c.kind,
                "name": c.name,
                "outcome": c.word(),
                "says": c.describe(),
            })).collect::<Vec<_>>(),
        }))?;
        out.push('\n');
        out
    } else {
        let mut s = format!(
            "restart of {} (checkpoint {}) with this script on {shards} shard(s): {}\n",
            dir.display(),
            manifest.epoch,
            if refused { "refused" } else { "allowed" }
        );
        for c in &ev.changes {
            s.push_str(&format!("  {}\n", c.describe()));
        }
        s
    };
    crate::write_stdout(&text)
}
