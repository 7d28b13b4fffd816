//! TUMBLE/HOP as a table function without aggregation: each row gains
//! `window_start` and `window_end` (TIMESTAMP), once per window it belongs
//! to. No state, so nothing is late here; lateness is decided where
//! windows are aggregated.

use crate::batch::{Batch, RowsRef};
use crate::error::ExecError;
use crate::operator::{Operator, OperatorMetrics};
use crate::types::Value;
use crate::window::{window_end, FloorCache, WindowSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct WindowTvfSpec {
    pub window: WindowSpec,
    pub time_column: usize,
}

pub struct WindowTvf {
    spec: WindowTvfSpec,
    /// Window assignment's last floor (see `FloorCache`).
    floors: FloorCache,
    metrics: OperatorMetrics,
}

impl WindowTvf {
    pub fn new(spec: WindowTvfSpec) -> WindowTvf {
        assert!(spec.window.size_ms().is_some(), "session windows need an aggregate");
        WindowTvf {
            spec,
            floors: FloorCache::default(),
            metrics: OperatorMetrics::default(),
        }
    }
}

impl Operator for WindowTvf {
    fn name(&self) -> &'static str {
        "window_tvf"
    }

    fn output_rows_hint(&self, input_rows: usize) -> usize {
        let per_row = match self.spec.window {
            WindowSpec::Hop { slide_ms, size_ms } => (size_ms / slide_ms.max(1)).clamp(1, 8) as usize,
            _ => 1,
        };
        input_rows * per_row
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, _watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        let size = self.spec.window.size_ms().expect("fixed window");
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            let ts = match row[self.spec.time_column] {
                Value::Ts(t) | Value::Int(t) => t,
                _ => {
                    self.metrics.null_time_dropped += 1;
                    continue;
                }
            };
            let metrics = &mut self.metrics;
            let before = metrics.rows_out;
            self.spec.window.for_each_start_cached(ts, &mut self.floors, |start| {
                // Written straight into the output batch (a slice copy:
                // `push_owned` over a cloned iterator measured 3% slower
                // on q7).
                let filled = out.push_with(op, |values| {
                    values.extend_from_slice(row);
                    values.push(Value::Ts(start));
                    values.push(Value::Ts(window_end(start, size)));
                    Ok::<(), std::convert::Infallible>(())
                });
                let Ok(()) = filled;
                metrics.rows_out += 1;
            });
            if metrics.rows_out == before {
                // Between two HOP windows (slide > size).
                metrics.rows_in_no_window += 1;
            }
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
