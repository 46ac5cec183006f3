//! Lambda entry point: settings, the Kinesis client (built once), the runtime.
use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{service_fn, Request};
use stele_ingest::{Ingest, IngestConfig, KinesisSink};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let config = match IngestConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("stele-ingest: {e}");
            std::process::exit(2);
        }
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&aws), &config.stream_name);
    let ingest = Arc::new(Ingest::new(config, sink));
    lambda_http::run(service_fn(move |req: Request| {
        let ingest = ingest.clone();
        async move { Ok::<_, Infallible>(ingest.handle(req).await) }
    }))
    .await
}
