//! Serve the ingest handler (and, given a database, the query handler on its
//! routes, as the HTTP API routes them) over plain HTTP on loopback, for contract
//! tests and manual runs.
//!
//! Settings (environment):
//! - `STELE_LOCAL_ADDR`   listen address (default `127.0.0.1:8080`; port 0 picks one)
//! - `STELE_LOCAL_TOKENS` bearer tokens as `token=tenant,token2=tenant2` (default `test-token=tenant-a`)
//! - `STELE_LOCAL_SINK`   `memory` (default: every record is accepted and kept in memory)
//!   or `kinesis` (the real sink: `STELE_STREAM_NAME` plus the usual AWS settings,
//!   e.g. `AWS_ENDPOINT_URL` for LocalStack)
//! - `STELE_LOCAL_QUERY_DB` a PostgreSQL URL (optional): migrated at start, then
//!   `/v1/log/…` and `/v1/events/{id}/…` go to the query handler reading it (its
//!   settings, `STELE_PROOF_RETRY_AFTER_SECS` …, from the environment); without it
//!   they reach ingest, which answers `404`
//! - the function's own settings (`STELE_TENANT_CLAIM`, …); `STELE_STREAM_NAME`
//!   defaults to `local` with the memory sink.
//!
//! Prints `listening on http://<addr>` on stdout once ready; stops on Ctrl-C / SIGTERM.
use std::collections::HashMap;
use std::sync::Arc;

use stele::local::api_gateway::serve_with_query;
use stele_ingest::{Ingest, IngestConfig, KinesisSink, MemorySink};
use stele_query::{Query, QueryConfig};
use tokio::net::TcpListener;

fn fail(msg: String) -> ! {
    eprintln!("serve_local: {msg}");
    std::process::exit(2)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::var("STELE_LOCAL_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let tokens = std::env::var("STELE_LOCAL_TOKENS").unwrap_or_else(|_| "test-token=tenant-a".into());
    let mut tenants = HashMap::new();
    for pair in tokens.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((token, tenant)) = pair.split_once('=') else {
            fail(format!("STELE_LOCAL_TOKENS: `{pair}` is not token=tenant"));
        };
        tenants.insert(token.trim().to_owned(), tenant.trim().to_owned());
    }
    let tenants = Arc::new(tenants);
    let listener = TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    let local = listener
        .local_addr()
        .unwrap_or_else(|e| fail(format!("no local address: {e}")));
    let query = match std::env::var("STELE_LOCAL_QUERY_DB") {
        Ok(url) if !url.trim().is_empty() => Some(Arc::new(query_on(url.trim()).await)),
        _ => None,
    };
    let sink = std::env::var("STELE_LOCAL_SINK").unwrap_or_else(|_| "memory".into());
    let result = match sink.as_str() {
        "memory" => {
            let config = IngestConfig::from_lookup(|k| {
                std::env::var(k)
                    .ok()
                    .or_else(|| (k == "STELE_STREAM_NAME").then(|| "local".into()))
            })
            .unwrap_or_else(|e| fail(e.to_string()));
            let ingest = Arc::new(Ingest::new(config, MemorySink::new()));
            println!("listening on http://{local}");
            serve_with_query(listener, ingest, query, None, tenants, shutdown()).await
        }
        "kinesis" => {
            let config = IngestConfig::from_env().unwrap_or_else(|e| fail(e.to_string()));
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&aws), &config.stream_name);
            let ingest = Arc::new(Ingest::new(config, sink));
            println!("listening on http://{local}");
            serve_with_query(listener, ingest, query, None, tenants, shutdown()).await
        }
        other => fail(format!("STELE_LOCAL_SINK: `{other}` is neither memory nor kinesis")),
    };
    if let Err(e) = result {
        fail(e.to_string());
    }
}

/// The query handler over `url`, after applying the migrations (the schema it reads).
async fn query_on(url: &str) -> Query {
    // One process: a random cursor key is enough here.
    let config = QueryConfig::from_lookup(|k| std::env::var(k).ok(), false).unwrap_or_else(|e| fail(e.to_string()));
    let store = stele_store::StoreConfig::new(url);
    let client = stele_store::connect(&store)
        .await
        .unwrap_or_else(|e| fail(format!("STELE_LOCAL_QUERY_DB: {e}")));
    stele_store::migrate(&client)
        .await
        .unwrap_or_else(|e| fail(format!("STELE_LOCAL_QUERY_DB: migrations: {e}")));
    let pool = stele_store::pool(&store).unwrap_or_else(|e| fail(e.to_string()));
    Query::new(config, pool)
}
