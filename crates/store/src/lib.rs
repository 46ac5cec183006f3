//! stele's PostgreSQL side: connection settings, embedded migrations and the
//! day-partition manager. The bulk insert (batch-writer) and archive job state
//! (archiver) live here too, so that one crate owns every SQL statement.

pub mod archive_jobs;
pub mod config;
pub mod connect;
pub mod error;
pub mod insert;
pub mod migrate;
pub mod partitions;

pub use config::{StoreConfig, TlsMode};
pub use connect::{connect, pool};
pub use error::{pg_message, Error, Result};
pub use insert::{EventStore, InsertMethod, InsertOutcome, PgEventStore, StoredEvent};
pub use migrate::{migrate, MIGRATIONS};
