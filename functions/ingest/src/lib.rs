//! The ingest function: `POST /v1/events` behind API Gateway (HTTP API, payload
//! v2). Events are validated, stamped, canonicalised and hashed by `stele_core`
//! and put on Kinesis; the answer says, per event, what was accepted.
//!
//! One concern per module, as in vector's Kinesis sink: [`config`] (settings),
//! [`request`] (HTTP body → events), [`seal`] (one request → sealed records or
//! the API's refusal: [`ingest`], shared by the handler, the fuzz target and the
//! benchmark), [`sink`] (the port, the retry policy, the Kinesis adapter),
//! [`quota`] (per-tenant quotas: the port, the DynamoDB adapter),
//! [`handler`] (the wiring). The loopback API Gateway stand-in that serves this
//! handler over plain HTTP lives with the other stand-ins in the `stele`
//! package (`stele::local::api_gateway`).

pub mod config;
pub mod handler;
pub mod quota;
pub mod request;
pub mod seal;
pub mod sink;

pub use config::{HotTenants, IngestConfig, QuotaSettings};
pub use handler::Ingest;
#[cfg(any(test, feature = "testing"))]
pub use quota::MemoryQuota;
pub use quota::{DynamoDbQuota, Limited, NoQuota, Quota, QuotaGate, Verdict};
pub use seal::{ingest, Refusal, Sealed};
pub use sink::{put_with_retry, Delivery, EventSink, KinesisSink, PutResult, Record, RetryPolicy};
#[cfg(any(test, feature = "testing"))]
pub use sink::{FaultySink, MemorySink};

/// Errors of the ingest crate. Request problems are not errors: they are HTTP
/// answers. These are the failures of setting the function up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed; `var` names the environment variable.
    #[error("configuration: {var} {reason}")]
    Config { var: &'static str, reason: String },
}

/// The HTTP types the handler speaks, for callers that build requests (tests, `stele dev`).
pub use lambda_http;
