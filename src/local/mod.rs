//! Running stele on one machine: real PostgreSQL and LocalStack as host
//! processes, the AWS resources the functions expect, and stand-ins for the
//! managed parts (event source mapping, API Gateway client side). Used by
//! `stele dev` and by the integration tests.

pub mod aws;
pub mod demo;
pub mod deployed;
pub mod esm;
pub mod http;
pub mod services;
