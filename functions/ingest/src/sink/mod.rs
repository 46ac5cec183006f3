//! Sending sealed records to the stream, split by concern:
//!
//! - this module is the port: [`EventSink`] is one attempt that reports, per
//!   record, whether the record is stored;
//! - [`retry`] owns the policy: [`put_with_retry`] resends only the records that
//!   failed, with jittered exponential backoff, until all are in or the deadline
//!   is near;
//! - [`kinesis`] is the real adapter, [`KinesisSink`] (`PutRecords`);
//! - `fakes` (feature `testing`, and unit tests) holds the in-memory and
//!   fault-injecting sinks that prove the retry behaviour against the real
//!   adapter without being part of the production API.

use std::future::Future;

use bytes::Bytes;

pub mod kinesis;
pub mod retry;

#[cfg(any(test, feature = "testing"))]
pub mod fakes;

#[cfg(any(test, feature = "testing"))]
pub use fakes::{FaultySink, MemorySink};
pub use kinesis::KinesisSink;
pub use retry::{put_with_retry, Delivery, RetryPolicy};

/// One Kinesis record: the canonical event JSON and its partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Bytes,
}

/// What happened to one record in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Stored {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        /// The Kinesis error code (e.g. `ProvisionedThroughputExceededException`),
        /// or `Timeout` / `DispatchFailure` for failures of the call itself.
        code: String,
        message: String,
        /// Whether sending the same record again may succeed.
        retryable: bool,
    },
}

impl PutResult {
    pub fn failed(code: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self::Failed {
            code: code.into(),
            message: message.into(),
            retryable,
        }
    }

    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored { .. })
    }
}

/// Where sealed records go. One call is one attempt; the result holds one entry
/// per record, in order. A sink never errors as a whole: a failed call is a
/// failure of each of its records.
pub trait EventSink: Send + Sync {
    fn put(&self, records: &[Record]) -> impl Future<Output = Vec<PutResult>> + Send;
}
