//! The archiver's errors: each names the partition and the step that failed.

use thiserror::Error;

/// A step of archiving one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Plan,
    Export,
    Upload,
    Manifest,
    Verify,
    Detach,
    Drop,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Plan => "plan",
            Step::Export => "export",
            Step::Upload => "upload",
            Step::Manifest => "manifest",
            Step::Verify => "verify",
            Step::Detach => "detach",
            Step::Drop => "drop",
        })
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{partition}: {step}: postgres: {source}")]
    Store {
        partition: String,
        step: Step,
        #[source]
        source: stele_store::Error,
    },
    #[error("{partition}: {step}: S3 {op} {key}: {message}")]
    S3 {
        partition: String,
        step: Step,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{partition}: {step}: parquet: {source}")]
    Parquet {
        partition: String,
        step: Step,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{partition}: {step}: arrow: {source}")]
    Arrow {
        partition: String,
        step: Step,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{partition}: verify: the archive does not match PostgreSQL: {detail}")]
    Mismatch { partition: String, detail: String },
    #[error("{partition}: {step}: {detail}")]
    Invalid {
        partition: String,
        step: Step,
        detail: String,
    },
    #[error("{partition}: {step}: out of time (the next run resumes)")]
    OutOfTime { partition: String, step: Step },
    #[error("{partition}: injected failure after {step}")]
    Injected { partition: String, step: Step },
}

impl Error {
    pub(crate) fn store(partition: &str, step: Step) -> impl Fn(stele_store::Error) -> Error + Copy + '_ {
        move |source| Error::Store {
            partition: partition.to_string(),
            step,
            source,
        }
    }
}

/// Errors of the storage port, before the partition and step are known.
#[derive(Debug, Error)]
#[error("S3 {op} {key}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub key: String,
    pub message: String,
}

impl StoreError {
    pub fn new(op: &'static str, key: &str, message: impl std::fmt::Display) -> Self {
        Self {
            op,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn at(self, partition: &str, step: Step) -> Error {
        Error::S3 {
            partition: partition.to_string(),
            step,
            op: self.op,
            key: self.key,
            message: self.message,
        }
    }
}
