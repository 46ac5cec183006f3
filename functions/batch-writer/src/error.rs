use thiserror::Error;

/// Everything that can go wrong in the batch-writer, each variant saying what
/// was being done.
#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] stele_store::Error),
    #[error("sending to the dead-letter queue: {0}")]
    DeadLetter(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
