//! The archiver: moves day partitions older than the retention from
//! PostgreSQL to S3 Parquet (Hive layout, read by Athena), verifies the copy
//! from S3, then detaches and drops the partition. Every step is recorded in
//! `archive_jobs`, so a run cut off anywhere is healed by the next one.
//!
//! One concern per module: [`config`], [`schema`] (the Arrow/Glue schema),
//! [`layout`] (object keys), [`store`] (the `ArchiveStore` port) and [`s3`],
//! [`export`] (Postgres → Arrow), [`writer`] (Arrow → Parquet → multipart),
//! [`manifest`], [`merkle`], [`verify`], [`runner`] (the steps) and [`handler`].

pub mod backlog;
pub mod config;
pub mod error;
pub mod export;
pub mod handler;
pub mod layout;
pub mod manifest;
pub mod merkle;
pub mod readback;
pub mod runner;
pub mod s3;
pub mod schema;
pub mod startup;
pub mod store;
pub mod verify;
pub mod writer;

pub use config::ArchiverConfig;
pub use error::{Error, Step};
pub use runner::{Archiver, FailPoint, PartitionReport, PgArchiver, RunReport};
pub use s3::S3Store;
pub use store::ArchiveStore;
#[cfg(any(test, feature = "testing"))]
pub use store::MemoryStore;
