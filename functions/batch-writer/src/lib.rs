//! The batch-writer Lambda: Kinesis batch in (event source mapping with
//! `ReportBatchItemFailures`), rows in `audit_events`, poison records in an SQS
//! dead-letter queue, batch item failures out.
//!
//! `main.rs` only wires settings and clients; `stele dev` builds the same
//! [`BatchWriter`] and feeds it the `KinesisEvent`s its poller makes.

pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod dlq;
pub mod error;
pub mod kinesis;
pub mod metrics;
pub mod replay;
pub mod writer;

/// The event and response types of the Kinesis event source mapping.
pub use aws_lambda_events::event::{kinesis::KinesisEvent, streams::KinesisEventResponse};
pub use config::WriterConfig;
pub use decode::{Poison, PoisonCode};
pub use dlq::{DeadLetter, DeadLetterSink, MemoryDeadLetters, SqsDeadLetters};
pub use error::{Error, Result};
pub use metrics::BatchReport;
pub use writer::BatchWriter;

/// The writer as deployed: Postgres through the pool, dead letters to SQS.
pub type PgBatchWriter = BatchWriter<stele_store::PgEventStore, SqsDeadLetters>;
