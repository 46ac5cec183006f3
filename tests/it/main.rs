//! The integration tests, against a real PostgreSQL and a real LocalStack
//! (`scripts/test` starts one of each for the run; a test run alone starts its
//! own through `support`). One test binary: each module used to be a binary of
//! its own, and each linked the AWS SDK, which on 2 cores cost minutes of
//! linking per run.

mod support;

mod archiver;
mod batch_writer;
mod batch_writer_restart;
mod checkpoints;
mod client;
mod db_roles;
mod dev_e2e;
mod faults;
mod hostile;
mod hostile_dev;
mod ingest;
mod localstack;
mod query;
mod quota;
mod replay;
mod search;
mod store;
mod tlog;
mod verify;
