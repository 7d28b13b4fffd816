//! The pgwire glue: accepting connections within the limit, startup
//! (with or without SCRAM), the simple and the extended query protocol,
//! cancellation, and SUBSCRIBE's streaming.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyEncoder, CopyTextOptions, DataRowEncoder, FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyOutResponse;
use pgwire::messages::data::RowDescription;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::{PgError, SqlState};
use crate::query::Statement;
use crate::rows::{self, Views};
use crate::{Current, Options, Pipeline};

/// What every connection shares.
pub struct Handler {
    options: Options,
    pipeline: Arc<dyn Pipeline>,
    views: Views,
    manager: Arc<ConnectionManager>,
}

/// A statement as the extended protocol keeps it: the text, re-checked
/// against the pipeline running when it executes.
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    statement: Statement,
}

pub struct Parser {
    pipeline: Arc<dyn Pipeline>,
}

/// Accepts connections until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, options: Options, pipeline: Arc<dyn Pipeline>) {
    let manager = Arc::new(ConnectionManager::new());
    let max = options.connections_max;
    let handler = Arc::new(Handler {
        views: Views::default(),
        options,
        pipeline,
        manager: Arc::clone(&manager),
    });
    let cancel = Arc::new(DefaultCancelHandler::new(Arc::clone(&manager)));
    let open = Arc::new(Open {
        handler: Arc::clone(&handler),
        cancel: Arc::clone(&cancel),
    });
    let scram = handler.options.password.as_ref().map(|_| {
        Arc::new(Scram {
            handler: Arc::clone(&handler),
            cancel: Arc::clone(&cancel),
        })
    });
    let refuse = Arc::new(Refuse { max });
    let connections = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: not fatal to the server.
                tracing::warn!("sql: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let count = Arc::clone(&connections);
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            tracing::warn!("sql: refused {peer}: {max} connections are open (sql.connections_max)");
            let refuse = Arc::clone(&refuse);
            tokio::spawn(async move {
                let _ = pgwire::tokio::process_socket(socket, None, refuse).await;
                count.fetch_sub(1, Ordering::AcqRel);
            });
            continue;
        }
        let (open, scram) = (Arc::clone(&open), scram.clone());
        tokio::spawn(async move {
            let result = match scram {
                Some(s) => pgwire::tokio::process_socket(socket, None, s).await,
                None => pgwire::tokio::process_socket(socket, None, open).await,
            };
            if let Err(e) = result {
                tracing::debug!("sql: connection from {peer} ended: {e}");
            }
            count.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Connections without a password.
struct Open {
    handler: Arc<Handler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Open {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.handler)
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

#[async_trait]
impl NoopStartupHandler for Handler {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.manager))
    }
}

/// Connections with SCRAM-SHA-256.
struct Scram {
    handler: Arc<Handler>,
    cancel: Arc<DefaultCancelHandler>,
}

/// SCRAM's stored password: salted per connection (PostgreSQL keeps one
/// salt per role; the exchange is the same).
#[derive(Debug)]
struct Secret {
    user: String,
    password: String,
}

const SCRAM_ITERATIONS: usize = 4096;

#[async_trait]
impl AuthSource for Secret {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() != Some(self.user.as_str()) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!(
                    "password authentication failed for user {:?}",
                    login.user().unwrap_or("")
                ),
            ))));
        }
        let salt: [u8; 16] = rand_salt();
        let hashed = gen_salted_password(&self.password, &salt, SCRAM_ITERATIONS);
        Ok(Password::new(Some(salt.to_vec()), hashed))
    }
}

/// A salt from the kernel's random source (16 bytes).
fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut salt);
    }
    salt
}

impl PgWireServerHandlers for Scram {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let o = &self.handler.options;
        let mut scram = ScramAuth::new(Arc::new(Secret {
            user: o.user.clone(),
            password: o.password.clone().unwrap_or_default(),
        }));
        scram.set_iterations(SCRAM_ITERATIONS);
        Arc::new(
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(scram)
                .with_connection_manager(Arc::clone(&self.handler.manager)),
        )
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Connections over the limit: told so at startup, then closed.
struct Refuse {
    max: usize,
}

#[async_trait]
impl NoopStartupHandler for Refuse {
    async fn post_startup<C>(&self, _client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".into(),
            SqlState::TooManyConnections.code().into(),
            format!(
                "sorry, too many clients already ({} connections, sql.connections_max)",
                self.max
            ),
        ))))
    }
}

impl PgWireServerHandlers for Refuse {
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Refuse { max: self.max })
    }
}

impl Handler {
    fn current(&self, text: &str) -> Result<Current, PgWireError> {
        let current = self.pipeline.current();
        if current.control.is_none() {
            return Err(PgError::new(
                SqlState::ObjectNotInPrerequisiteState,
                "the pipeline is starting (restoring its state); try again in a moment",
            )
            .wire(text));
        }
        Ok(current)
    }

    /// Runs a statement. `describe`: send the row description (the
    /// simple protocol; the extended one sent it at Describe).
    async fn run<C>(
        &self,
        client: &mut C,
        text: &str,
        describe: bool,
        format: Option<&Format>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let current = self.current(text)?;
        let statement = crate::query::parse(text, &current.plan).map_err(|e| e.wire(text))?;
        let fields = Arc::new(rows::fields(&statement, &current.plan, format));
        let table = match &statement {
            Statement::Subscribe { stream, copy } => {
                return self
                    .subscribe(client, &current, stream, *copy, &fields, describe, text)
                    .await;
            }
            Statement::Select(q) => {
                let view = self
                    .views
                    .get(
                        &current,
                        &self.options.state_dir,
                        &q.stream,
                        self.options.result_rows_max,
                    )
                    .await
                    .map_err(|e| e.wire(text))?;
                let rows = view.select(q, self.options.result_rows_max).map_err(|e| e.wire(text))?;
                tracing::debug!(
                    "sql: SELECT from {} at checkpoint {}: {} rows",
                    q.stream,
                    view.epoch(),
                    rows.len()
                );
                rows
            }
            other => rows::describe(other, &current, &self.options.state_dir).map_err(|e| e.wire(text))?,
        };
        let schema = Arc::clone(&fields);
        let data = table.into_iter().map(move |row| {
            let mut encoder = DataRowEncoder::new(Arc::clone(&schema));
            for (v, f) in row.iter().zip(schema.iter()) {
                rows::encode(&mut encoder, f.format(), v)?;
            }
            Ok(encoder.take_row())
        });
        Ok(Response::Query(QueryResponse::new(fields, futures::stream::iter(data))))
    }

    /// SUBSCRIBE: rows as they are emitted until the client cancels or
    /// goes, the tap is cut for falling behind, or the run ends. Sent from
    /// here (each batch flushed at once), not as a result stream that
    /// pgwire would buffer.
    #[allow(clippy::too_many_arguments)]
    async fn subscribe<C>(
        &self,
        client: &mut C,
        current: &Current,
        stream: &str,
        copy: bool,
        fields: &Arc<Vec<FieldInfo>>,
        describe: bool,
        text: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let control = current.control.as_ref().expect("checked by current");
        let node = laminar_reactor::view::output_node(&current.plan, stream).expect("checked by parse");
        let changelog = current.plan.nodes[node].changelog;
        let Some(tap) = control.taps.add(node, self.options.subscribe_buffer_bytes) else {
            return Err(PgError::new(
                SqlState::TooManyConnections,
                format!(
                    "{} subscriptions are open, the most there can be",
                    laminar_reactor::tap::TAPS_MAX
                ),
            )
            .wire(text));
        };
        // Unregistered however this ends (the client went: the future is
        // dropped).
        struct Untap(Arc<laminar_reactor::runner::Control>, Arc<laminar_reactor::tap::Tap>);
        impl Drop for Untap {
            fn drop(&mut self) {
                self.0.taps.remove(&self.1);
            }
        }
        let _untap = Untap(Arc::clone(control), Arc::clone(&tap));
        if copy {
            let formats = vec![0i16; fields.len()];
            client
                .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                    0,
                    fields.len() as i16,
                    formats,
                )))
                .await?;
        } else if describe {
            let description = RowDescription::new(fields.iter().map(Into::into).collect());
            client.send(PgWireBackendMessage::RowDescription(description)).await?;
        }
        // A cancel request drops this future (pgwire selects on it while
        // the statement runs, and the subscription runs here), which
        // ends the copy with SQLSTATE 57014.
        // It ends only with an error: a cut, the run's end, or (dropping
        // this future) a cancel or the client gone.
        let end = loop {
            let next = std::future::poll_fn(|cx| tap.poll_next(cx)).await;
            let batch = match next {
                laminar_reactor::tap::Tapped::Rows(b) => b,
                laminar_reactor::tap::Tapped::Cut { bytes_max } => {
                    break PgError::new(
                        SqlState::ProgramLimitExceeded,
                        format!(
                            "subscription to {stream} cut: the client left more than {bytes_max} bytes of rows unread (sql.subscribe_buffer_bytes)"
                        ),
                    );
                }
                laminar_reactor::tap::Tapped::Ended => {
                    break PgError::new(
                        SqlState::ObjectNotInPrerequisiteState,
                        "the pipeline stopped or was reloaded: subscribe again",
                    );
                }
            };
            for row in rows::subscribed_rows(&batch, changelog) {
                if copy {
                    let mut encoder = CopyEncoder::new_text(Arc::clone(fields), CopyTextOptions::default());
                    for v in &row {
                        encoder.encode_field(&rows::text(v))?;
                    }
                    client.feed(PgWireBackendMessage::CopyData(encoder.take_copy())).await?;
                } else {
                    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
                    for (v, f) in row.iter().zip(fields.iter()) {
                        rows::encode(&mut encoder, f.format(), v)?;
                    }
                    client.feed(PgWireBackendMessage::DataRow(encoder.take_row())).await?;
                }
            }
            client.flush().await?;
        };
        Err(end.wire(text))
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self.run(client, query, true, None).await {
            Ok(r) => Ok(vec![r]),
            // An error of the statement, not of the connection.
            Err(PgWireError::UserError(info)) => Ok(vec![Response::Error(info)]),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let current = self.pipeline.current();
        let statement = crate::query::parse(sql, &current.plan).map_err(|e| e.wire(sql))?;
        Ok(Some(Prepared {
            text: sql.to_string(),
            statement,
        }))
    }

    fn get_parameter_types(&self, _stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let current = self.pipeline.current();
        Ok(rows::fields(&stmt.statement, &current.plan, format))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser {
            pipeline: Arc::clone(&self.pipeline),
        })
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let text = portal.statement.statement.text.clone();
        self.run(client, &text, false, Some(&portal.result_column_format)).await
    }
}
