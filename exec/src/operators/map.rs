//! WHERE and projection: the stateless operator. Changelog ops pass through
//! unchanged (a projection of `-U` row is the `-U` of the projected row).

use crate::batch::{Batch, RowsRef};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::func::FastExpr;
use crate::operator::{Operator, OperatorMetrics};
use crate::types::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    pub filter: Option<Expr>,
    /// None passes the row through unchanged (filter only).
    pub projection: Option<Vec<Expr>>,
}

pub struct Map {
    filter: Option<FastExpr>,
    projection: Option<Vec<FastExpr>>,
    metrics: OperatorMetrics,
}

impl Map {
    pub fn new(spec: MapSpec) -> Map {
        Map {
            filter: spec.filter.map(FastExpr::new),
            projection: spec.projection.map(|p| p.into_iter().map(FastExpr::new).collect()),
            metrics: OperatorMetrics::default(),
        }
    }
}

impl Operator for Map {
    fn name(&self) -> &'static str {
        "map"
    }

    fn output_rows_hint(&self, input_rows: usize) -> usize {
        // A filter may keep one row in a hundred: its batch grows.
        match self.filter {
            None => input_rows,
            Some(_) => 0,
        }
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, _watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            if let Some(f) = &self.filter {
                match f.eval_predicate(row) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => {
                        self.metrics.eval_errors += 1;
                        continue;
                    }
                }
            }
            match &self.projection {
                None => out.push(op, row),
                Some(exprs) => {
                    // Written straight into the output; a bare column is
                    // copied without the evaluator's dispatch.
                    let metrics = &mut self.metrics;
                    let written: Result<(), std::convert::Infallible> = out.push_with(op, |values| {
                        for e in exprs {
                            values.push(match e.expr() {
                                Expr::Column(i) => row[*i].clone(),
                                _ => e.eval(row).unwrap_or_else(|_| {
                                    metrics.eval_errors += 1;
                                    Value::Null
                                }),
                            });
                        }
                        Ok(())
                    });
                    let Ok(()) = written;
                }
            }
            self.metrics.rows_out += 1;
        }
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}
