//! Lambda entry point: settings, the database pool (built once), the runtime.
use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::{service_fn, Request};
use stele_query::{Query, QueryConfig};

fn fail(e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "invalid configuration");
    eprintln!("stele-query: {e}");
    std::process::exit(2)
}

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
    let mut config = QueryConfig::from_env().unwrap_or_else(|e| fail(&e));
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    config.resolve_cursor_key(&secrets).await.unwrap_or_else(|e| fail(&e));
    let db = stele_store::StoreConfig::from_env(&secrets)
        .await
        .unwrap_or_else(|e| fail(&e));
    // Connections are opened on first use and kept across invocations.
    let pool = stele_store::pool(&db).unwrap_or_else(|e| fail(&e));
    let s3 = aws_sdk_s3::Client::new(&aws);
    let query = Arc::new(Query::new(config, pool).with_archive(s3));
    lambda_http::run(service_fn(move |req: Request| {
        let query = query.clone();
        async move { Ok::<_, Infallible>(query.handle(req).await) }
    }))
    .await
}
