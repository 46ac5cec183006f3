//! The crate's errors. `emit` has none (it never fails the caller); these are
//! for building a client, `flush`/`shutdown` and `emit_sync`.

use stele_core::Problem;

/// A token provider could not produce a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the token provider failed: {0}")]
pub struct AuthError(pub String);

impl AuthError {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("endpoint `{endpoint}` is not an http(s) URL: {why}")]
    Endpoint { endpoint: String, why: String },
    #[error("no token provider: call .token(…) or .token_provider(…)")]
    NoToken,
    #[error("invalid setting {setting}: {why}")]
    Setting { setting: &'static str, why: String },
    #[error("the client must be built inside a Tokio runtime (it spawns its sender task)")]
    NoRuntime,
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Why `flush` or `shutdown` did not confirm.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FlushError {
    #[error("the queue was not drained within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the client is shut down")]
    Closed,
}

/// Why `emit_sync` could not confirm that the event was accepted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event breaks the API's rules; nothing was sent.
    #[error("the event is invalid: {}", join(.0))]
    Invalid(Vec<Problem>),
    /// The API refused the event (`400`, `403`, `413`, …); sending it again will not help.
    #[error("the API refused the event with {status}: {body}")]
    Rejected { status: u16, body: String },
    /// `401` even with a fresh token.
    #[error("the API refused the bearer token (401): {0}")]
    Unauthorized(String),
    /// Every attempt failed with a retryable error (unreachable, timeout, `5xx`, `429`).
    #[error("the API was unavailable after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// A `202` whose body did not name the event.
    #[error("unexpected answer from the API: {0}")]
    Protocol(String),
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a proof query (`Client::proof`, `Client::consistency`) got no proof.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// `409`: the event is logged but no signed checkpoint covers it yet.
    #[error("not checkpointed yet (ask again in {retry_after:?}): {message}")]
    NotYet {
        retry_after: Option<std::time::Duration>,
        message: String,
    },
    /// `404`: no such event (or checkpoint) for this tenant in the hot store.
    #[error("not found: {0}")]
    NotFound(String),
    /// `401` / `403`: the token is refused or lacks the read scope.
    #[error("the API refused the bearer token ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Any other answer.
    #[error("the API answered {status}: {message}")]
    Rejected { status: u16, message: String },
    /// No answer (network, timeout) or no token.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    /// A `200` whose body is not the documented shape.
    #[error("unexpected answer from the API: {0}")]
    Protocol(String),
}
