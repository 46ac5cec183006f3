//! Running stele on one machine: real PostgreSQL and LocalStack as host
//! processes, the AWS resources the functions expect, and stand-ins for the
//! managed parts (API Gateway in front of the ingest function, the event source
//! mapping behind the stream). Used by `stele dev` and by the integration tests.

pub mod api_gateway;
pub mod aws;
pub mod demo;
pub mod deployed;
pub mod esm;
pub mod http;
pub mod services;
pub mod viewer;
