//! `stele-client`: what a Rust service links to send audit events to stele.
//!
//! ```no_run
//! use stele_client::{Actor, Client, Event, Resource, SpillConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("https://audit.example.com")
//!     .token(std::env::var("STELE_TOKEN")?)
//!     .service("billing")
//!     .spill(SpillConfig::new("/var/lib/billing/stele-spill"))
//!     .build()?;
//!
//! // Fire and forget: never blocks, never fails.
//! client.emit(Event::login_succeeded("u-42"));
//! client.emit(
//!     Event::audit("invoice.void")
//!         .actor(Actor::user("u-42"))
//!         .resource(Resource::new("invoice", "inv-7"))
//!         .changes(serde_json::json!({"status": "open"}), serde_json::json!({"status": "void"})),
//! );
//!
//! // The rare event that must be confirmed before going on:
//! let receipt = client.emit_sync(Event::security("api_key.create").actor(Actor::user("u-42"))).await?;
//! println!("stored as {}", receipt.event_id);
//!
//! client.shutdown().await?; // sends what is queued before the process exits
//! # Ok(()) }
//! ```
//!
//! Delivery: each event gets its id (UUIDv7) when built, so however often a
//! batch is retried or replayed from the spill file, the store keeps one copy.
//! Events are checked by the server's own rules (`stele_core::validate_event`)
//! before they are sent; an invalid one is dropped and counted, never sent.

mod auth;
mod client;
mod error;
mod event;
mod proof;
mod retry;
mod send;
mod spill;
mod stats;
mod transport;
mod worker;

pub use auth::{RefreshingToken, StaticToken, TokenFuture, TokenProvider};
pub use client::{Client, ClientBuilder, Emitted, EventPage, ExportJob, Receipt};
pub use error::{AuthError, BuildError, EmitError, FlushError, QueryError};
pub use event::{Actor, ActorType, Category, Event, Outcome, Resource, Source};
pub use proof::{
    verify_consistency_proof, verify_event_proof, CheckpointInfo, ConsistencyProof, EventProof, ProofError,
    ProofSubject, TrustedLog, Verified,
};
pub use retry::RetryPolicy;
pub use spill::SpillConfig;
pub use stats::{DropReason, Dropped, Stats};
pub use stele_core::{Code, Problem};

#[cfg(test)]
mod tests;
