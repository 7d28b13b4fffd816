//! Result rows: the columns of each statement, values in PostgreSQL's
//! text format, and the SELECT over a view (its checkpoint read once per
//! epoch, then cached with hash indexes for lookups).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use laminar_exec::batch::Op;
use laminar_exec::plan::PhysicalPlan;
use laminar_exec::types::{DataType, Value};
use laminar_reactor::view::ViewContents;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;

use crate::error::{PgError, SqlState};
use crate::query::{Select, Statement};
use crate::Current;

/// Result rows, typed as their columns; encoded as each column's format
/// asks (`encode`).
pub type Rows = Vec<Vec<Value>>;

pub fn pg_type(t: DataType) -> Type {
    match t {
        DataType::Bool => Type::BOOL,
        DataType::Int => Type::INT8,
        DataType::Double => Type::FLOAT8,
        DataType::Ts => Type::TIMESTAMP,
        DataType::Str | DataType::Null => Type::TEXT,
    }
}

pub fn field(name: &str, t: Type) -> FieldInfo {
    FieldInfo::new(name.to_string(), None, None, t, FieldFormat::Text)
}

/// Encodes one value as its column's format asks: PostgreSQL's text
/// form, or its binary form (what tokio-postgres, asyncpg and
/// psycopg's binary cursors ask for).
pub fn encode(encoder: &mut DataRowEncoder, format: FieldFormat, v: &Value) -> PgWireResult<()> {
    if format == FieldFormat::Text {
        return encoder.encode_field(&text(v));
    }
    match v {
        Value::Null => encoder.encode_field(&None::<i64>),
        Value::Bool(b) => encoder.encode_field(b),
        Value::Int(i) => encoder.encode_field(i),
        Value::Double(d) => encoder.encode_field(d),
        Value::Str(s) => encoder.encode_field(&s.as_str()),
        Value::Ts(ms) => encoder.encode_field(&Timestamp(*ms)),
    }
}

/// A TIMESTAMP for the binary format: microseconds since 2000-01-01
/// 00:00:00, big-endian (PostgreSQL's `timestamp_send`).
#[derive(Debug)]
struct Timestamp(i64);

/// 2000-01-01 00:00:00 UTC in Unix milliseconds.
const POSTGRES_EPOCH_UNIX_MS: i64 = 946_684_800_000;

impl postgres_types::ToSql for Timestamp {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_i64(self.0.saturating_sub(POSTGRES_EPOCH_UNIX_MS).saturating_mul(1000));
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for Timestamp {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
        _: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(text(&Value::Ts(self.0)).unwrap_or_default().as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

/// A value in PostgreSQL's text format (NULL is None).
pub fn text(v: &Value) -> Option<String> {
    let mut out = Vec::new();
    match v {
        Value::Null => return None,
        Value::Bool(b) => return Some(if *b { "t" } else { "f" }.into()),
        Value::Ts(ms) => {
            let mut s = String::new();
            laminar_exec::time::format_timestamp(*ms, &mut s);
            return Some(s);
        }
        Value::Double(d) if d.is_nan() => return Some("NaN".into()),
        Value::Double(d) if d.is_infinite() => return Some(if *d > 0.0 { "Infinity" } else { "-Infinity" }.into()),
        other => laminar_exec::format::write_value_plain(other, &mut out),
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The columns a statement answers with (SUBSCRIBE: `op` first), in the
/// formats the client asked for (the extended protocol's Bind; text
/// otherwise).
pub fn fields(statement: &Statement, plan: &PhysicalPlan, format: Option<&Format>) -> Vec<FieldInfo> {
    let mut f = columns(statement, plan);
    if let Some(format) = format {
        for (i, c) in f.iter_mut().enumerate() {
            *c = FieldInfo::new(
                c.name().to_string(),
                None,
                None,
                c.datatype().clone(),
                format.format_for(i),
            );
        }
    }
    f
}

fn columns(statement: &Statement, plan: &PhysicalPlan) -> Vec<FieldInfo> {
    let text_fields = |names: &[&str]| names.iter().map(|n| field(n, Type::TEXT)).collect();
    match statement {
        Statement::ShowSources => text_fields(&["name", "connector", "columns", "watermark"]),
        Statement::ShowStreams => vec![
            field("name", Type::TEXT),
            field("kind", Type::TEXT),
            field("columns", Type::TEXT),
            field("queryable", Type::BOOL),
            field("definition", Type::TEXT),
        ],
        Statement::ShowSinks => text_fields(&["name", "stream", "connector"]),
        Statement::ShowCheckpoints => vec![
            field("epoch", Type::INT8),
            field("taken_at", Type::TIMESTAMP),
            field("shards", Type::INT8),
            field("state_bytes", Type::INT8),
            field("written_bytes", Type::INT8),
            field("completed_since_start", Type::INT8),
            field("last_duration_ms", Type::FLOAT8),
        ],
        Statement::Explain(_) => text_fields(&["plan"]),
        Statement::Select(s) => s.columns.iter().map(|(n, t, _)| field(n, pg_type(*t))).collect(),
        Statement::Subscribe { stream, .. } => {
            let mut f = vec![field("op", Type::TEXT)];
            // The stream may be gone from a plan reloaded since the
            // statement was prepared: its execution says so.
            if let Some(node) = laminar_reactor::view::output_node(plan, stream) {
                let columns = &plan.nodes[node].schema.fields;
                f.extend(columns.iter().map(|c| field(&c.name, pg_type(c.data_type))));
            }
            f
        }
    }
}

fn connector_word(debug: String) -> String {
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn columns_text(schema: &laminar_exec::types::Schema) -> String {
    let c: Vec<String> = schema
        .fields
        .iter()
        .map(|f| format!("{} {}", f.name, f.data_type.sql_name()))
        .collect();
    c.join(", ")
}

/// SHOW and EXPLAIN, from the plan, its counters and the manifest.
pub fn describe(statement: &Statement, current: &Current, dir: &std::path::Path) -> Result<Rows, PgError> {
    let plan = &current.plan;
    let s = |x: &str| Value::str(x);
    let rows: Rows = match statement {
        Statement::ShowSources => plan
            .sources
            .iter()
            .map(|src| {
                let watermark = src.watermark.as_ref().map_or(Value::Null, |w| {
                    let column = src.schema.fields.get(w.column).map_or("?", |f| f.name.as_str());
                    s(&format!("{column} - {} ms", w.delay_ms))
                });
                vec![
                    s(&src.name),
                    s(&connector_word(format!("{:?}", src.connector))),
                    s(&columns_text(&src.declared)),
                    watermark,
                ]
            })
            .collect(),
        Statement::ShowStreams => plan
            .identity
            .definitions
            .iter()
            .filter(|d| {
                matches!(
                    d.kind,
                    laminar_exec::identity::DefinitionKind::Stream | laminar_exec::identity::DefinitionKind::Table
                )
            })
            .filter_map(|d| {
                let node = laminar_reactor::view::output_node(plan, &d.name)?;
                let queryable = laminar_reactor::view::check(plan, &d.name).is_ok();
                Some(vec![
                    s(&d.name),
                    s(d.kind.word()),
                    s(&columns_text(&plan.nodes[node].schema)),
                    Value::Bool(queryable),
                    s(&d.text),
                ])
            })
            .collect(),
        Statement::ShowSinks => plan
            .sinks
            .iter()
            .map(|k| {
                let stream = match k.input {
                    laminar_exec::plan::Input::Node(n) => plan.nodes[n].name.clone(),
                    laminar_exec::plan::Input::Source(i) => plan.sources[i].name.clone(),
                };
                vec![s(&k.name), s(&stream), s(&connector_word(format!("{:?}", k.connector)))]
            })
            .collect(),
        Statement::ShowCheckpoints => {
            let manifest = laminar_persistence::manifest::read(dir)
                .map_err(|e| PgError::new(SqlState::IoError, format!("reading the manifest: {e}")))?;
            let (completed, last_ms) = current.control.as_ref().map_or((0, 0.0), |c| {
                let m = &c.metrics;
                (
                    m.checkpoints_completed.load(std::sync::atomic::Ordering::Relaxed),
                    m.checkpoint_last_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
                )
            });
            manifest
                .map(|m| {
                    vec![
                        Value::Int(m.epoch as i64),
                        Value::Ts(m.created_unix_ms),
                        Value::Int(m.shards as i64),
                        Value::Int(m.state_bytes as i64),
                        Value::Int(m.state_bytes_written as i64),
                        Value::Int(completed as i64),
                        Value::Double((last_ms * 1000.0).round() / 1000.0),
                    ]
                })
                .into_iter()
                .collect()
        }
        Statement::Explain(stream) => {
            // The blocks of the nodes that compute this stream.
            let mut keep = false;
            let mut out = Vec::new();
            for line in plan.explain().lines() {
                if !line.starts_with(' ') {
                    keep = line
                        .strip_prefix('#')
                        .and_then(|l| l.split_once(' '))
                        .and_then(|(_, rest)| rest.split_once(" <- "))
                        .is_some_and(|(name, _)| name.eq_ignore_ascii_case(stream));
                }
                if keep {
                    out.push(vec![s(line)]);
                }
            }
            out
        }
        Statement::Select(_) | Statement::Subscribe { .. } => unreachable!("not a description"),
    };
    Ok(rows)
}

/// A hash index: (hash of the indexed columns' values, row number),
/// sorted. One allocation for the whole index (a map of a million keys
/// to row lists took most of a second to build); a lookup is a binary
/// search and a check of the values.
type Index = Vec<(u64, u32)>;

fn key_hash(row: &[Value], columns: &[usize]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    columns.iter().for_each(|&c| row[c].hash(&mut h));
    h.finish()
}

/// One view's rows at one checkpoint, with the hash indexes built on it
/// so far (by the columns a lookup named).
pub struct Cached {
    plan: Arc<PhysicalPlan>,
    view: ViewContents,
    /// The newest checkpoint the view is known to be current at: the one
    /// read, or a later one whose parts of the node are the same bytes.
    current_at: std::sync::atomic::AtomicU64,
    indexes: Mutex<HashMap<Vec<usize>, Arc<Index>>>,
}

/// The views read so far, by stream name: one slot per stream, so a
/// stream's read holds up only the queries of that stream.
#[derive(Default)]
pub struct Views {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// A stream's cached view; its lock is held while the view is read, so
/// concurrent queries of a new checkpoint wait for the one read instead
/// of each reading it.
#[derive(Default)]
struct Slot {
    cached: tokio::sync::Mutex<Option<Arc<Cached>>>,
}

impl Views {
    /// `stream`'s rows at the last checkpoint (read now unless cached).
    pub async fn get(
        &self,
        current: &Current,
        dir: &std::path::Path,
        stream: &str,
        rows_max: usize,
    ) -> Result<Arc<Cached>, PgError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry(stream.to_ascii_lowercase()).or_default())
        };
        let epoch = laminar_persistence::manifest::read(dir)
            .map_err(|e| PgError::new(SqlState::IoError, format!("reading the manifest: {e}")))?
            .map(|m| m.epoch);
        let mut cached = slot.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Arc::ptr_eq(&c.plan, &current.plan)) {
            if Some(c.current_at.load(Ordering::Relaxed)) == epoch {
                return Ok(Arc::clone(c));
            }
            // A newer checkpoint: the same view when the node's state
            // did not change (the store's index says, without reading it).
            let (plan, dir, name) = (Arc::clone(&current.plan), dir.to_path_buf(), stream.to_string());
            let version = tokio::task::spawn_blocking(move || laminar_reactor::view::version(&dir, &plan, &name))
                .await
                .map_err(|e| PgError::new(SqlState::InternalError, format!("reading the view: {e}")))?;
            if let Ok((at, version)) = version {
                if version == c.view.version {
                    c.current_at.store(at, Ordering::Relaxed);
                    return Ok(Arc::clone(c));
                }
            }
        }
        // The old view goes before the new one is read (queries running on
        // it keep their copy): the cache never holds two of a stream.
        *cached = None;
        let (plan, dir, name) = (Arc::clone(&current.plan), dir.to_path_buf(), stream.to_string());
        let view = tokio::task::spawn_blocking(move || laminar_reactor::view::read(&dir, &plan, &name, rows_max))
            .await
            .map_err(|e| PgError::new(SqlState::InternalError, format!("reading the view: {e}")))??;
        let c = Arc::new(Cached {
            plan: Arc::clone(&current.plan),
            current_at: std::sync::atomic::AtomicU64::new(view.epoch),
            view,
            indexes: Mutex::new(HashMap::new()),
        });
        *cached = Some(Arc::clone(&c));
        Ok(c)
    }
}

impl Cached {
    pub fn epoch(&self) -> u64 {
        self.view.epoch
    }

    /// The rows of a lookup on `columns` = `values`, by their index.
    fn lookup(&self, columns: Vec<usize>, values: &[Value]) -> Vec<u32> {
        let rows = &self.view.rows;
        let index = {
            let mut indexes = self.indexes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(indexes.entry(columns.clone()).or_insert_with(|| {
                let mut index: Index = rows
                    .rows()
                    .enumerate()
                    .map(|(i, (_, row))| (key_hash(row, &columns), i as u32))
                    .collect();
                index.sort_unstable();
                Arc::new(index)
            }))
        };
        let wanted: Vec<usize> = (0..values.len()).collect();
        let h = key_hash(values, &wanted);
        let start = index.partition_point(|&(x, _)| x < h);
        index[start..]
            .iter()
            .take_while(|&&(x, _)| x == h)
            .map(|&(_, i)| i)
            .filter(|&i| {
                let row = rows.row(i as usize);
                columns.iter().zip(values).all(|(&c, v)| &row[c] == v)
            })
            .collect()
    }

    /// Runs a SELECT over the view.
    pub fn select(&self, q: &Select, rows_max: usize) -> Result<Rows, PgError> {
        let rows = &self.view.rows;
        let candidates: Vec<u32> = if q.lookup.is_empty() {
            (0..rows.len() as u32).collect()
        } else {
            let (columns, values): (Vec<usize>, Vec<Value>) = q.lookup.iter().cloned().unzip();
            self.lookup(columns, &values)
        };
        let eval = |e: &laminar_exec::expr::Expr, row: &[Value]| -> Result<Value, PgError> {
            laminar_exec::func::eval_expr(e, row).map_err(|err| PgError::new(SqlState::DataException, err.to_string()))
        };
        let mut picked: Vec<(Vec<Value>, u32)> = Vec::new();
        for i in candidates {
            let row = rows.row(i as usize);
            if let Some(f) = &q.filter {
                if eval(f, row)? != Value::Bool(true) {
                    continue;
                }
            }
            let sort = q
                .order
                .iter()
                .map(|(e, _)| eval(e, row))
                .collect::<Result<Vec<_>, _>>()?;
            picked.push((sort, i));
        }
        let order = |(a, _): &(Vec<Value>, u32), (b, _): &(Vec<Value>, u32)| {
            for (k, (_, desc)) in q.order.iter().enumerate() {
                // NULLs last ascending, first descending (PostgreSQL's rule).
                let o = match (&a[k], &b[k]) {
                    (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                    (Value::Null, _) => std::cmp::Ordering::Greater,
                    (_, Value::Null) => std::cmp::Ordering::Less,
                    (x, y) => x.cmp(y),
                };
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        };
        if let Some(n) = q.limit {
            if !q.order.is_empty() && n > 0 && n < picked.len() {
                // The first n in order without sorting the rest.
                picked.select_nth_unstable_by(n - 1, order);
            }
            picked.truncate(n);
        }
        if !q.order.is_empty() {
            picked.sort_by(order);
        }
        if picked.len() > rows_max {
            return Err(PgError::new(
                SqlState::ProgramLimitExceeded,
                format!(
                    "the result has {} rows, more than sql.result_rows_max ({rows_max}): add a WHERE or a LIMIT",
                    picked.len()
                ),
            ));
        }
        picked
            .into_iter()
            .map(|(_, i)| {
                let row = rows.row(i as usize);
                q.columns.iter().map(|(_, _, e)| eval(e, row)).collect()
            })
            .collect()
    }
}

/// A tapped batch as SUBSCRIBE rows: `op` then the columns.
pub fn subscribed_rows(batch: &laminar_exec::batch::Batch, changelog: bool) -> Rows {
    batch
        .rows()
        .map(|(op, row)| {
            let op = if changelog { op.as_str() } else { Op::Insert.as_str() };
            std::iter::once(Value::str(op)).chain(row.iter().cloned()).collect()
        })
        .collect()
}
