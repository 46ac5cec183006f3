//! The checkpointer: signs each tenant's log head as a C2SP tlog-checkpoint and
//! publishes it to the archive bucket (issue 16, item 2).
//!
//! One run ([`Checkpointer::run`]):
//! 1. publishes checkpoints signed by an earlier run that did not finish publishing;
//! 2. for every tenant whose head grew past its last checkpoint, checks the head
//!    against the tiles and the last checkpoint (the root recomputed from the tiles
//!    must be the head's, and a consistency proof read from the tiles must lead from
//!    the last signed root to it) and only then signs, records the checkpoint
//!    (`tlog_checkpoints`: one root per size, ever) and publishes it: the new tiles
//!    first, then `checkpoints/<size>`, then the latest `checkpoint`, then `log.vkey`.
//!
//! A head that fails a check (a rewritten log, a rollback, a fork) is refused: nothing
//! is signed for that tenant, the run logs an error and reports it (the Lambda fails).
//!
//! [`config`] reads the environment, [`signer`] holds the key-file and AWS KMS signers,
//! [`startup`] wires the Lambda.

pub mod config;
pub mod run;
pub mod signer;
pub mod startup;

pub use config::{CheckpointerConfig, SignerSource};
pub use run::{Checkpointer, Refusal, RunReport};
pub use signer::{KmsSigner, LogSigner};

/// What stops the checkpointer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("signer: {0}")]
    Signer(String),
    #[error("database: {0}")]
    Store(#[from] stele_store::Error),
    #[error("archive bucket: {0}")]
    Bucket(String),
    #[error("log: {0}")]
    Log(#[from] stele_tlog::Error),
}
