//! laminar's PostgreSQL face: `laminar serve` answers psql and any
//! PostgreSQL driver on `listen.sql` (default `127.0.0.1:6875`).
//!
//! Read-only: `SHOW SOURCES|STREAMS|SINKS|CHECKPOINTS`, `EXPLAIN
//! <stream>`, `SELECT … FROM <view> [WHERE …] [ORDER BY …] [LIMIT n]`
//! over what a stream's changelog folds to as of the last completed
//! checkpoint (`laminar_reactor::view`: consistent across shards at that
//! checkpoint's barrier, read from the state directory, never from a
//! shard), and `SUBSCRIBE <stream>` / `COPY (SUBSCRIBE <stream>) TO
//! STDOUT`, the stream's rows as they are emitted (`laminar_reactor::
//! tap`). The protocol is the `pgwire` crate's; this crate decides what
//! each statement means.
//!
//! It runs on a thread of its own (a single-threaded tokio runtime, off
//! the shards' cores like the admin endpoint), with reading a view's
//! checkpoint on tokio's blocking pool. Limits: connections
//! (`connections_max`; one more is refused with SQLSTATE 53300), rows
//! per result (`result_rows_max`), bytes a subscriber may leave unread
//! (`subscribe_buffer_bytes`; then it is cut with 54000).

mod error;
mod handler;
mod query;
mod rows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use laminar_exec::plan::PhysicalPlan;
use laminar_reactor::runner::Control;

pub use error::{PgError, SqlState};
pub use query::{parse, Statement};

/// What the server is configured with (`[sql]` in laminar.toml, whose
/// defaults are `laminar_config::Sql`'s).
#[derive(Debug, Clone)]
pub struct Options {
    /// The state directory of the run (its checkpoints are what SELECT
    /// reads).
    pub state_dir: PathBuf,
    /// The user a client must name when a password is set.
    pub user: String,
    /// SCRAM-SHA-256 with this password; none: any user, no password
    /// (loopback is the default address for that reason).
    pub password: Option<String>,
    pub connections_max: usize,
    pub result_rows_max: usize,
    pub subscribe_buffer_bytes: usize,
}

/// The pipeline as it runs now (a reload replaces it).
#[derive(Clone)]
pub struct Current {
    pub plan: Arc<PhysicalPlan>,
    /// Set once the run has started.
    pub control: Option<Arc<Control>>,
}

/// Where the server finds the current pipeline.
pub trait Pipeline: Send + Sync + 'static {
    fn current(&self) -> Current;
}

/// Serves `listener` on a thread named `laminar-sql` until the process
/// ends. Returns the address served.
pub fn start(
    listener: std::net::TcpListener,
    options: Options,
    pipeline: Arc<dyn Pipeline>,
) -> std::io::Result<SocketAddr> {
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_name("laminar-sql-read")
        .build()?;
    std::thread::Builder::new().name("laminar-sql".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => handler::serve(listener, options, pipeline).await,
                Err(e) => tracing::error!("sql: cannot serve {address}: {e}"),
            }
        })
    })?;
    Ok(address)
}
