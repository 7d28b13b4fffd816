//! What a restart with changed SQL keeps, starts fresh, drops or refuses.
//!
//! The checkpoint's manifest names every stream, table, source and sink
//! of the pipeline that wrote it, with their identities
//! (`laminar_exec::identity`); `plan_restart` compares them with the
//! plan about to start, by name, and decides, for each:
//!
//! | what | in the checkpoint and the new plan | outcome |
//! | --- | --- | --- |
//! | stream, table | same identity | **keep**: its state is restored |
//! | stream, table | only in the new plan | **start fresh**: empty state, reading from the sources' positions |
//! | stream, table | only in the checkpoint | **drop**: its state is discarded |
//! | stream, table | another identity | **refuse**, naming what differs; with `--reset NAME`, **reset**: it starts empty |
//! | source | same position key | **keep** its position (also when other options, say the watermark, changed) |
//! | source | another file, port, format or generator | **refuse**; with `--reset NAME` it reads from its start |
//! | source | only in one of them | start from its beginning / drop its position |
//! | sink | same name, connector and stream | **keep** its committed output (and go on after it) |
//! | sink | otherwise | start fresh (a file sink's file is written anew) |
//! | shards | another count | **move**: each shard restores the key groups it now owns |
//!
//! A stream whose input changed has another identity too, so it is
//! refused in turn, with "reads X, which changed". The same function
//! serves the restart itself and `laminar state diff`, so the two always
//! say the same thing.

use laminar_exec::identity::{DefinitionKind, PlanIdentity};
use laminar_exec::plan::{Input, PhysicalPlan};
use laminar_persistence::manifest::Manifest;

/// What happens to one named thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    /// Kept, though its definition changed in a way that keeps its
    /// position meaningful (a source's watermark, say): what changed.
    KeepChanged(String),
    New,
    Drop,
    /// Started empty although the checkpoint had it: why.
    Reset(String),
    /// The restart cannot go on: why.
    Refuse(String),
    /// State changes shards (another `--shards`): how.
    Move(String),
}

/// One line of the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `stream`, `table`, `source`, `sink` or `shards`.
    pub kind: &'static str,
    pub name: String,
    pub outcome: Outcome,
}

impl Change {
    /// The decision in the words the restart logs and `state diff` prints.
    pub fn describe(&self) -> String {
        let what = format!("{} {}", self.kind, self.name);
        let kept = match self.kind {
            "source" => "resumes at its checkpointed position",
            "sink" => "goes on after its committed output",
            _ => "restores its state",
        };
        match &self.outcome {
            Outcome::Keep => format!("keep: {what} {kept}"),
            Outcome::KeepChanged(why) => format!("keep: {what} {kept} ({why})"),
            Outcome::New => match self.kind {
                "source" => format!("new: {what} reads from its beginning"),
                "sink" => format!("new: {what} starts its output afresh"),
                _ => format!("new: {what} starts with empty state at the sources' checkpointed positions"),
            },
            Outcome::Drop => match self.kind {
                "sink" => format!("drop: {what} is gone from the script; its output is left as it is"),
                "source" => format!("drop: {what} is gone from the script; its position is forgotten"),
                _ => format!("drop: {what} is gone from the script; its state is discarded"),
            },
            Outcome::Reset(why) => match self.kind {
                "source" => format!("reset: {what} reads from its beginning ({why})"),
                _ => format!("reset: {what} starts with empty state ({why})"),
            },
            Outcome::Refuse(why) => format!("refuse: {what}: {why}"),
            Outcome::Move(how) => format!("move: {how}"),
        }
    }

    pub fn word(&self) -> &'static str {
        match self.outcome {
            Outcome::Keep | Outcome::KeepChanged(_) => "keep",
            Outcome::New => "new",
            Outcome::Drop => "drop",
            Outcome::Reset(_) => "reset",
            Outcome::Refuse(_) => "refuse",
            Outcome::Move(_) => "move",
        }
    }
}

/// The whole decision, and what each part of the new plan restores.
#[derive(Debug, Clone, Default)]
pub struct Evolution {
    pub changes: Vec<Change>,
    /// By node index in the new plan: the store part it restores from.
    pub node_parts: Vec<Option<u32>>,
    /// By source index in the new plan: the name its positions are
    /// stored under, when they are restored.
    pub source_positions: Vec<Option<String>>,
    /// By sink index in the new plan: the name its committed position is
    /// stored under, when it is restored.
    pub sink_positions: Vec<Option<String>>,
    /// (source index in the checkpoint's plan, in the new plan): how the
    /// WAL's records, which name a source by index, map.
    pub wal_sources: Vec<(u32, u32)>,
}

impl Evolution {
    /// The new plan's source that takes the positions the checkpoint
    /// stores under `name`, if any.
    pub fn restored_source(&self, name: &str) -> Option<usize> {
        self.source_positions.iter().position(|n| n.as_deref() == Some(name))
    }

    /// The new plan's sink that takes the committed position the
    /// checkpoint stores under `name`, if any.
    pub fn restored_sink(&self, name: &str) -> Option<usize> {
        self.sink_positions.iter().position(|n| n.as_deref() == Some(name))
    }

    /// The refusals, one per line; empty when the restart may go on.
    pub fn refusals(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Refuse(_)))
            .map(Change::describe)
            .collect()
    }

    /// Whether anything differs from a plain resume.
    pub fn changed(&self) -> bool {
        self.changes.iter().any(|c| c.outcome != Outcome::Keep)
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Decides what a restart of `plan` (on `shards` shards, resetting the
/// streams and sources named in `resets`) does with `manifest`'s
/// checkpoint. `Err` when `resets` names nothing in the plan.
pub fn plan_restart(
    manifest: &Manifest,
    plan: &PhysicalPlan,
    shards: usize,
    resets: &[String],
) -> Result<Evolution, String> {
    let id = plan.identity();
    for r in resets {
        let known = id
            .definitions
            .iter()
            .any(|d| d.kind != DefinitionKind::Sink && same(&d.name, r))
            || plan.sources.iter().any(|s| same(&s.name, r));
        if !known {
            return Err(format!(
                "--reset {r}: the script defines no stream, table or source {r}"
            ));
        }
    }
    let reset = |name: &str| resets.iter().any(|r| same(r, name));
    let mut ev = Evolution {
        node_parts: vec![None; plan.nodes.len()],
        source_positions: vec![None; plan.sources.len()],
        sink_positions: vec![None; plan.sinks.len()],
        ..Evolution::default()
    };
    if manifest.key_groups != crate::topology::KEY_GROUPS {
        ev.changes.push(Change {
            kind: "shards",
            name: shards.to_string(),
            outcome: Outcome::Refuse(format!(
                "the state is spread over {} key groups, this laminar uses {}",
                manifest.key_groups,
                crate::topology::KEY_GROUPS
            )),
        });
    } else if manifest.shards as usize != shards {
        ev.changes.push(Change {
            kind: "shards",
            name: shards.to_string(),
            outcome: Outcome::Move(format!(
                "keyed state moves from {} shard(s) to {shards}, by key group ({} groups)",
                manifest.shards,
                crate::topology::KEY_GROUPS
            )),
        });
    }

    // Sources first: a stream's outcome may cite them.
    let mut changed_names: Vec<String> = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let old = manifest.source_defs.iter().find(|r| same(&r.name, &s.name));
        let text = id.source_text(i).to_string();
        let outcome = match old {
            None => Outcome::New,
            Some(_) if reset(&s.name) => Outcome::Reset("--reset".into()),
            Some(r) if r.position_key != id.source_positions[i] => {
                changed_names.push(s.name.clone());
                Outcome::Refuse(format!(
                    "its connector now reads something else, so its checkpointed position means nothing there ({}); \
                     --reset {} to read it from its beginning",
                    difference(&r.text, &text),
                    s.name
                ))
            }
            Some(r) => {
                ev.source_positions[i] = Some(r.name.clone());
                ev.wal_sources.push((r.index, i as u32));
                if r.identity == id.sources[i] {
                    Outcome::Keep
                } else {
                    changed_names.push(s.name.clone());
                    Outcome::KeepChanged(difference(&r.text, &text))
                }
            }
        };
        if matches!(outcome, Outcome::Reset(_)) {
            changed_names.push(s.name.clone());
        }
        ev.changes.push(Change {
            kind: "source",
            name: s.name.clone(),
            outcome,
        });
    }
    push_drops(
        &mut ev,
        manifest.source_defs.iter().map(|r| ("source", r.name.as_str())),
        |name| plan.sources.iter().any(|s| same(&s.name, name)),
    );

    // Streams and tables, in script order (an input before its readers).
    let stateful = |k: DefinitionKind| matches!(k, DefinitionKind::Stream | DefinitionKind::Table);
    for d in id.definitions.iter().filter(|d| stateful(d.kind)) {
        let identity = id.definition_identity(d);
        let old = manifest.streams.iter().find(|r| same(&r.name, &d.name));
        let outcome = match old {
            None => Outcome::New,
            Some(r) if r.identity == identity && reset(&d.name) => Outcome::Reset("--reset".into()),
            Some(r) if r.identity == identity => {
                for n in d.nodes.clone() {
                    ev.node_parts[n] = r.nodes.iter().find(|o| o.identity == id.nodes[n]).map(|o| o.part);
                }
                Outcome::Keep
            }
            Some(r) => {
                let why = if r.text == d.text {
                    let upstream: Vec<&str> = upstream_names(plan, &id, d)
                        .into_iter()
                        .filter(|u| changed_names.iter().any(|c| same(c, u)))
                        .collect();
                    if upstream.is_empty() {
                        "its plan changed (another laminar release?)".to_string()
                    } else {
                        format!("it reads {}, which changed", upstream.join(", "))
                    }
                } else {
                    difference(&r.text, &d.text)
                };
                if reset(&d.name) {
                    Outcome::Reset(format!("--reset; {why}"))
                } else {
                    Outcome::Refuse(format!("{why}; --reset {} to start it empty", d.name))
                }
            }
        };
        if !matches!(outcome, Outcome::Keep) && old.is_some() {
            changed_names.push(d.name.clone());
        }
        ev.changes.push(Change {
            kind: d.kind.word(),
            name: d.name.clone(),
            outcome,
        });
    }
    push_drops(
        &mut ev,
        manifest
            .streams
            .iter()
            .map(|r| (if r.kind == "table" { "table" } else { "stream" }, r.name.as_str())),
        |name| id.definitions.iter().any(|d| stateful(d.kind) && same(&d.name, name)),
    );

    // Sinks: by name and identity (connector and the stream they write).
    for (k, s) in plan.sinks.iter().enumerate() {
        let old = manifest.sinks.iter().find(|p| same(&p.name, &s.name));
        let outcome = match old {
            Some(p) if p.identity == id.sinks[k] => {
                ev.sink_positions[k] = Some(p.name.clone());
                Outcome::Keep
            }
            _ => Outcome::New,
        };
        ev.changes.push(Change {
            kind: "sink",
            name: s.name.clone(),
            outcome,
        });
    }
    push_drops(
        &mut ev,
        manifest.sinks.iter().map(|p| ("sink", p.name.as_str())),
        |name| plan.sinks.iter().any(|s| same(&s.name, name)),
    );
    Ok(ev)
}

/// A `Drop` for each of the checkpoint's (kind, name) the new plan lacks.
fn push_drops<'a>(
    ev: &mut Evolution,
    old: impl Iterator<Item = (&'static str, &'a str)>,
    present: impl Fn(&str) -> bool,
) {
    for (kind, name) in old {
        if !present(name) {
            ev.changes.push(Change {
                kind,
                name: name.to_string(),
                outcome: Outcome::Drop,
            });
        }
    }
}

/// What replacing the running `old` plan by `new` would do (`laminar
/// serve`'s reload): the decision a restart from a checkpoint of `old`
/// takes.
pub fn plan_change(
    old: &PhysicalPlan,
    old_shards: usize,
    new: &PhysicalPlan,
    new_shards: usize,
) -> Result<Evolution, String> {
    let (streams, source_defs) = crate::checkpoint::plan_records(old);
    let id = old.identity();
    let manifest = Manifest {
        epoch: 0,
        plan_fingerprint: id.fingerprint(),
        shards: old_shards as u32,
        key_groups: crate::topology::KEY_GROUPS,
        wal_lsns: Vec::new(),
        sources: Vec::new(),
        sinks: old
            .sinks
            .iter()
            .zip(&id.sinks)
            .map(|(s, &identity)| laminar_persistence::manifest::SinkPosition {
                name: s.name.clone(),
                identity,
                bytes: 0,
                rows: 0,
                ended_senders: Vec::new(),
            })
            .collect(),
        streams,
        source_defs,
        state_bytes: 0,
        state_bytes_written: 0,
        created_unix_ms: 0,
    };
    plan_restart(&manifest, new, new_shards, &[])
}

/// Before a restart on another shard count: the WAL of `laminar serve`'s
/// tcp sources is per shard and names its sources by shard, so it must
/// hold nothing after the checkpoint (the last run stopped with a final
/// checkpoint; after a crash, restart on the old count first, then stop
/// it). `rescale::rewrite` deletes it once the moved checkpoint is
/// durable.
pub fn prepare_rescale(dir: &std::path::Path, manifest: &Manifest) -> Result<(), crate::error::RunError> {
    use laminar_persistence::wal;
    let wal_dir = dir.join(crate::checkpoint::WAL_DIR);
    if !wal_dir.exists() {
        return Ok(());
    }
    for shard in 0..manifest.shards {
        let from = manifest.wal_lsns.get(shard as usize).copied().unwrap_or(0);
        let mut after = 0u64;
        wal::read_log(&wal_dir, shard, from, |record| {
            if record.kind == wal::RecordKind::Rows && record.lsn >= from {
                after += 1;
            }
            Ok(())
        })?;
        if after > 0 {
            return Err(crate::error::RunError::Recovery {
                dir: dir.to_path_buf(),
                reason: format!(
                    "shard {shard}'s WAL holds {after} batch(es) after the checkpoint (the last run did not stop \
                     cleanly), and a WAL cannot move to another shard count: start on {} shard(s) again, stop it \
                     with SIGTERM (a final checkpoint), then change the shard count",
                    manifest.shards
                ),
            });
        }
    }
    Ok(())
}

/// The sources and streams outside `d` that its nodes read.
fn upstream_names<'a>(
    plan: &'a PhysicalPlan,
    id: &'a PlanIdentity,
    d: &laminar_exec::identity::Definition,
) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for n in d.nodes.clone() {
        for input in &plan.nodes[n].inputs {
            let name = match *input {
                Input::Source(s) => plan.sources[s].name.as_str(),
                Input::Node(m) if d.nodes.contains(&m) => continue,
                Input::Node(m) => id
                    .definitions
                    .iter()
                    .find(|o| o.nodes.contains(&m))
                    .map_or(plan.nodes[m].name.as_str(), |o| o.name.as_str()),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Where two statement texts differ, in a few words of each:
/// `was "… WHERE v > 900", now "… WHERE v > 500"`.
pub fn difference(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split(' ').collect();
    let b: Vec<&str> = new.split(' ').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    const CONTEXT: usize = 3;
    let show = |words: &[&str]| {
        let from = prefix.saturating_sub(CONTEXT);
        let to = (words.len() - suffix + 1).min(words.len());
        let mut s = String::new();
        if from > 0 {
            s.push_str("… ");
        }
        s.push_str(&words[from..to].join(" "));
        if to < words.len() {
            s.push_str(" …");
        }
        s
    };
    format!("was \"{}\", now \"{}\"", show(&a), show(&b))
}

#[cfg(test)]
mod tests {
    use super::difference;

    #[test]
    fn a_difference_shows_the_changed_words_with_a_little_context() {
        assert_eq!(
            difference(
                "CREATE STREAM s AS SELECT k, v FROM t WHERE v > 900 ;",
                "CREATE STREAM s AS SELECT k, v FROM t WHERE v > 500 ;"
            ),
            "was \"… WHERE v > 900 ;\", now \"… WHERE v > 500 ;\""
        );
        assert_eq!(
            difference("A B C D E F G", "A B X D E F G"),
            "was \"A B C D …\", now \"A B X D …\""
        );
    }
}
