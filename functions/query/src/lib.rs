//! The query function: what a tenant asks of its verifiable log, behind API
//! Gateway (HTTP API, payload v2, the same JWT authorizer as ingest, the read scope).
//!
//! - `GET /v1/events?from=&to=&...`: the tenant's events, hot and archived, newest
//!   first, paged by a signed cursor ([`events`]);
//! - `GET /v1/events/export?from=&to=&...&format=ndjson|csv`: every event of a search
//!   in one file, inline or as a presigned URL ([`export`]);
//! - `GET /v1/events/{event_id}/proof`: the event's leaf and its inclusion proof
//!   against the newest signed checkpoint that covers it (JSON, with the C2SP
//!   tlog-proof text);
//! - `GET /v1/log/checkpoint`: the tenant's latest signed checkpoint (text/plain);
//! - `GET /v1/log/consistency?from=N[&to=M]`: a consistency proof between two
//!   signed checkpoints.
//!
//! Read-only: every answer comes from PostgreSQL (`stele_store::PgLog`); the
//! checkpoints are the checkpointer's signed notes, served verbatim. Tenant-scoped:
//! the tenant comes from the authorizer context only, and another tenant's event
//! is indistinguishable from an unknown one (`404`).

pub mod config;
pub mod events;
pub mod export;
pub mod handler;

pub use config::QueryConfig;
pub use handler::Query;

/// Errors of setting the function up (requests never fail: they are answers).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed; `var` names the environment variable.
    #[error("configuration: {var} {reason}")]
    Config { var: &'static str, reason: String },
    /// The database settings (`DATABASE_URL` / `STELE_DB_SECRET_ARN`, `STELE_DB_*`).
    #[error("database: {0}")]
    Store(#[from] stele_store::Error),
}

/// The HTTP types the handler speaks, for callers that build requests (tests, `stele dev`).
pub use lambda_http;
