//! Running stele on one machine: real PostgreSQL and LocalStack as host
//! processes, plus the AWS resources the functions expect. Used by `stele dev`
//! and by the integration tests' harness.

pub mod aws;
pub mod services;
