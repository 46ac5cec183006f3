//! The archiver: moves day partitions older than the retention from
//! PostgreSQL to S3 Parquet (Hive layout, read by Athena), verifies the copy,
//! then detaches and drops the partition.

pub mod schema;
