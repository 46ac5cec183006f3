//! Lambda entry point: settings, the Kinesis client and the quota gate (built
//! once), the runtime.
use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{service_fn, Request};
use stele_ingest::{DynamoDbQuota, Ingest, IngestConfig, KinesisSink};

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
    // Per-tenant quotas when a rate is set (the configuration then holds the table).
    let quota = match (config.quota.default, &config.quota.table) {
        (Some(default), Some(table)) => Some(DynamoDbQuota::new(
            aws_sdk_dynamodb::Client::new(&aws),
            table,
            default,
            config.quota.timeout,
        )),
        _ => None,
    };
    let ingest = Arc::new(Ingest::new(config, sink).with_quota(quota));
    lambda_http::run(service_fn(move |req: Request| {
        let ingest = ingest.clone();
        async move { Ok::<_, Infallible>(ingest.handle(req).await) }
    }))
    .await
}
