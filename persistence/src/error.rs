//! The one error type of the persistence layer. Every variant names the
//! file (and, for damaged data, the byte offset) it is about, because the
//! reader of the message is an operator deciding whether to restore from a
//! backup.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Damaged data that is not a torn tail: recovery must not guess.
    #[error("{path}: corrupt at byte offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: format version {found}, this laminar reads version {expected}")]
    Version { path: PathBuf, found: u32, expected: u32 },
    #[error("checkpoint store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    /// An injected fault (tests): the process is considered dead here.
    #[error("injected fault at {point:?} (hit {hit})")]
    Injected { point: crate::fault::FaultPoint, hit: u64 },
    #[error("{what} is {got} bytes, over the limit of {max}")]
    TooLarge { what: &'static str, got: usize, max: usize },
}

impl PersistError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PersistError {
        let path = path.into();
        move |source| PersistError::Io { path, source }
    }

    /// Whether this is an injected fault (a simulated crash), not a
    /// real failure.
    pub fn is_injected(&self) -> bool {
        matches!(self, PersistError::Injected { .. })
    }
}

pub type Result<T, E = PersistError> = std::result::Result<T, E>;
