//! A reference table read as a stream: the latest row per primary key
//! wins. The first row of a key is `+I`; a later row with the same key
//! retracts the previous one (`-U`) and adds itself (`+U`); an identical
//! repeat emits nothing. The rows are kept in state, which the lookup-join
//! issue reads.

use crate::batch::{Batch, Op, RowsRef};
use crate::error::ExecError;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::emit_change;
use crate::state::KeyedState;
use crate::types::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct UpsertSpec {
    pub name: String,
    pub key_columns: Vec<usize>,
    pub entries_max: usize,
}

pub struct Upsert {
    spec: UpsertSpec,
    rows: KeyedState<Box<[Value]>>,
    key: Vec<Value>,
    metrics: OperatorMetrics,
}

impl Upsert {
    pub fn new(spec: UpsertSpec) -> Upsert {
        assert!(!spec.key_columns.is_empty(), "a table has a primary key");
        let rows = KeyedState::new(spec.entries_max);
        Upsert {
            spec,
            rows,
            key: Vec::new(),
            metrics: OperatorMetrics::default(),
        }
    }
}

impl Operator for Upsert {
    fn name(&self) -> &'static str {
        "upsert"
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, _watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            self.key.clear();
            self.key.extend(self.spec.key_columns.iter().map(|&c| row[c].clone()));
            if !op.is_addition() {
                if let Some(old) = self.rows.remove(&self.key) {
                    out.push(Op::Delete, &old);
                    self.metrics.rows_out += 1;
                }
                continue;
            }
            let slot = self
                .rows
                .get_or_insert_with(&self.key, 0, &self.spec.name, || Box::from([]))?;
            let old = std::mem::replace(slot, row.into());
            let old = (!old.is_empty()).then_some(old);
            self.metrics.rows_out += emit_change(out, old.as_deref(), Some(row));
        }
        self.metrics.state_entries = self.rows.len() as u64;
        Ok(())
    }

    fn contents(&mut self, out: &mut Batch) -> Result<(), String> {
        self.rows.iter().for_each(|(_, row)| out.push(Op::Insert, row));
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        Ok(crate::snapshot::defer(
            &self.spec.name,
            (crate::snapshot::entries(&self.rows), self.metrics),
        ))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let (rows, metrics): (crate::snapshot::Entries<Box<[Value]>>, OperatorMetrics) =
            crate::snapshot::decode(&self.spec.name, bytes)?;
        self.rows = crate::snapshot::rebuild(rows, self.spec.entries_max, &self.spec.name)?;
        self.metrics = metrics;
        Ok(())
    }

    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let mut rows: crate::snapshot::Entries<Box<[Value]>> = Vec::new();
        let mut metrics = OperatorMetrics::default();
        for p in parts {
            let (r, m): (crate::snapshot::Entries<Box<[Value]>>, OperatorMetrics) =
                crate::snapshot::decode(&self.spec.name, p.bytes)?;
            rows.extend(r.into_iter().filter(|(k, _)| keep(k)));
            if p.counters {
                crate::rescale::add_metrics(&mut metrics, &m);
            }
        }
        crate::snapshot::encode(&self.spec.name, &(rows, metrics))
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.rows.approx_bytes()
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Driven;

    #[test]
    fn a_table_holds_what_its_changelog_folds_to() {
        let spec = UpsertSpec {
            name: "t".into(),
            key_columns: vec![0],
            entries_max: 100,
        };
        let mut t = Driven::new(Box::new(Upsert::new(spec)), 1);
        let mut out = Batch::new(2);
        let mut input = Batch::new(2);
        for (op, k, v) in [
            (Op::Insert, 1, 10),
            (Op::Insert, 2, 20),
            (Op::Insert, 1, 11),
            (Op::Insert, 1, 11),
            (Op::Delete, 2, 20),
            (Op::Insert, 3, 30),
        ] {
            input.push(op, &[Value::Int(k), Value::Int(v)]);
        }
        t.push(0, &input, &mut out).unwrap();
        let mut now = Batch::new(2);
        t.contents(&mut now).unwrap();
        let mut now: Vec<Vec<Value>> = now.rows().map(|(_, r)| r.to_vec()).collect();
        now.sort();
        assert_eq!(now, crate::operators::fold_changelog(&out));
        assert_eq!(
            now,
            vec![vec![Value::Int(1), Value::Int(11)], vec![Value::Int(3), Value::Int(30)]]
        );
    }
}
