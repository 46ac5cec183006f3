//! The stele event: its envelope, validation, RFC 8785 canonical form and hash.
//!
//! Everything here is pure logic with no I/O, shared by the ingest function (which
//! validates and seals), the batch-writer (which opens and re-checks records), the
//! archiver and the client crate.

pub mod accept;
pub mod canonical;
mod codec;
pub mod event;
#[cfg(feature = "lambda")]
pub mod http;
pub mod json;
pub mod limits;
pub mod settings;
pub mod tenant;
pub mod validate;
#[cfg(test)]
mod validate_reference;

pub use event::{
    event_id_from_idempotency_key, event_id_from_idempotency_key_in_batch, Actor, ActorType, Category, Changes, Event,
    EventHash, Outcome, RecordError, Resource, SealedEvent, Source, Trace, SCHEMA_VERSION,
};
pub use tenant::{
    check_tenant_id, tenant_from_authorizer, TenantClaimError, TenantIdError, MAX_TENANT_ID_CHARS, TENANT_ID_RULE,
};
pub use validate::{validate_event, validate_event_into, Code, Context, Problem, ProblemList, TimeWindow};
