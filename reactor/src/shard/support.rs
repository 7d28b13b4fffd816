//! What every room of a shard uses: what a shard reports to the thread
//! that started the run, the failure helpers, and the preemption yield.

use laminar_exec::plan::PhysicalPlan;

use crate::checkpoint::Piece;
use crate::control::Control;
use crate::error::RunError;

/// Events a shard reports to the thread that started the run.
pub enum ShardEvent {
    Malformed {
        source: String,
        location: String,
        line: u64,
        reason: String,
    },
    Finished {
        shard: usize,
    },
    /// This shard's piece of a checkpoint (see `checkpoint`).
    Checkpoint(Piece),
}

/// An operator failure of node `node`, named by its stream.
pub(crate) fn exec_error(plan: &PhysicalPlan, node: usize) -> impl FnOnce(laminar_exec::ExecError) -> RunError + '_ {
    move |source| RunError::Exec {
        stream: plan.nodes[node].name.clone(),
        source,
    }
}

/// Lets the other tasks of this queue run when glommio asks for
/// preemption. Unlike `glommio::yield_if_needed` it does not mark the task
/// queue as yielded: a multi-shard stress run once left a receiver task
/// unpolled after such a yield, with its message queued, while the shard's
/// other queue kept running. A plain task yield re-schedules the task
/// through its own waker.
pub(crate) async fn yield_if_preempted() {
    if glommio::executor().need_preempt() {
        futures_lite::future::yield_now().await;
    }
}

pub(crate) fn check_abort(progress: &Control) -> Result<(), RunError> {
    if progress.run.aborted() {
        return Err(RunError::Aborted);
    }
    Ok(())
}
