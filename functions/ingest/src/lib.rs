//! The ingest function: `POST /v1/events` behind API Gateway (HTTP API, payload
//! v2). Events are validated, stamped, canonicalised and hashed by `stele_core`
//! and put on Kinesis; the answer says, per event, what was accepted.
//!
//! One concern per module, as in vector's Kinesis sink: [`config`] (settings),
//! [`request`] (HTTP body → events), [`sink`] (PutRecords and retries),
//! [`handler`] (the wiring). [`local`] serves the same handler over plain HTTP
//! for local runs and contract tests.

pub mod config;
pub mod handler;
pub mod local;
pub mod request;
pub mod sink;

pub use config::{HotTenants, IngestConfig};
pub use handler::Ingest;
pub use sink::{
    put_with_retry, Delivery, EventSink, FaultySink, KinesisSink, MemorySink, PutResult, Record, RetryPolicy,
};

/// Errors of the ingest crate. Request problems are not errors: they are HTTP
/// answers. These are the failures of setting the function up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed; `var` names the environment variable.
    #[error("configuration: {var} {reason}")]
    Config { var: &'static str, reason: String },
    /// The local HTTP front could not serve.
    #[error("local server: {0}")]
    Local(String),
}

/// The HTTP types the handler speaks, for callers that build requests (tests, `stele dev`).
pub use lambda_http;
