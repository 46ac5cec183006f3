//! stele's PostgreSQL side: connection settings, embedded migrations and the
//! day-partition manager. The bulk insert (batch-writer) and archive job state
//! (archiver) live here too, so that one crate owns every SQL statement.

pub mod archive_db;
pub mod archive_jobs;
pub mod columns;
pub mod config;
pub mod connect;
pub mod error;
pub mod insert;
pub mod log;
pub mod lookup;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod migrate;
pub mod partitions;
pub mod rows;
pub mod search;

pub use archive_db::{ArchiveDb, ExportRow, PgArchiveDb, RowStream, ShardProgress};
pub use config::{conninfo_from_secret, DbSource, SecretReader, StoreConfig, StoreSettings, TlsMode};
pub use connect::{connect, pool};
pub use error::{pg_message, Error, Result};
pub use insert::{EventStore, IdConflict, InsertMethod, InsertOutcome, PgEventStore, StoredEvent};
pub use log::{CheckpointInsert, LogHead, LoggedEvent, PgLog, StoredCheckpoint};
pub use migrate::{migrate, MIGRATIONS};
pub use rows::{check_row, event_of, CheckedRow, RowEvent, RowProblem};
