//! Errors as a PostgreSQL client reads them: a SQLSTATE, a message and,
//! where known, the position in the statement (1-based, in characters,
//! as psql's caret shows it).

use pgwire::error::{ErrorInfo, PgWireError};

/// The SQLSTATE codes laminar answers with (PostgreSQL's appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    SyntaxError,
    UndefinedTable,
    UndefinedColumn,
    InvalidColumnReference,
    FeatureNotSupported,
    /// A result or subscription over its limit.
    ProgramLimitExceeded,
    TooManyConnections,
    QueryCanceled,
    /// No checkpoint yet, or the pipeline is (re)starting.
    ObjectNotInPrerequisiteState,
    /// An expression failed on a row (division by zero, a bad cast).
    DataException,
    /// Reading the state directory failed.
    IoError,
    InternalError,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::SyntaxError => "42601",
            SqlState::UndefinedTable => "42P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::InvalidColumnReference => "42P10",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::TooManyConnections => "53300",
            SqlState::QueryCanceled => "57014",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::DataException => "22000",
            SqlState::IoError => "58030",
            SqlState::InternalError => "XX000",
        }
    }
}

/// An error for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} (SQLSTATE {})", .state.code())]
pub struct PgError {
    pub state: SqlState,
    pub message: String,
    /// Byte offset in the statement.
    pub offset: Option<usize>,
}

impl PgError {
    pub fn new(state: SqlState, message: impl Into<String>) -> PgError {
        PgError {
            state,
            message: message.into(),
            offset: None,
        }
    }

    pub fn at(mut self, offset: usize) -> PgError {
        self.offset = Some(offset);
        self
    }

    /// The wire form; `text` is the statement the offset is into.
    pub fn info(&self, text: &str) -> ErrorInfo {
        let mut info = ErrorInfo::new("ERROR".to_string(), self.state.code().to_string(), self.message.clone());
        if let Some(o) = self.offset {
            let o = o.min(text.len());
            let chars = text.get(..o).map_or(o, |p| p.chars().count());
            info.position = Some((chars + 1).to_string());
        }
        info
    }

    pub fn wire(&self, text: &str) -> PgWireError {
        PgWireError::UserError(Box::new(self.info(text)))
    }
}

impl From<laminar_reactor::view::ViewError> for PgError {
    fn from(e: laminar_reactor::view::ViewError) -> PgError {
        use laminar_reactor::view::ViewError as V;
        let state = match &e {
            V::Unknown(_) => SqlState::UndefinedTable,
            V::Source { .. } | V::NotATable { .. } => SqlState::FeatureNotSupported,
            V::NoCheckpoint { .. } | V::NotCheckpointed { .. } => SqlState::ObjectNotInPrerequisiteState,
            V::TooLarge { .. } => SqlState::ProgramLimitExceeded,
            V::Read { .. } => SqlState::IoError,
        };
        PgError::new(state, e.to_string())
    }
}
