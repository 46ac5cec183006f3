//! Lambda entry point: settings, the database pool and AWS clients (built once), the
//! runtime. One binary, two functions, chosen by the function's `handler` setting
//! (Lambda passes it to a custom runtime as `_HANDLER`):
//! - `_HANDLER` (default `bootstrap`): the read API behind API Gateway;
//! - `export-worker`: the export worker on the export queue's event source mapping.
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::{service_fn, Request};
use lambda_runtime::LambdaEvent;
use stele_query::export::jobs::{ExportWorker, SqsJobs};
use stele_query::{Query, QueryConfig};

/// The `handler` of the export worker's function.
const EXPORT_WORKER: &str = "export-worker";

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
    let worker = std::env::var("_HANDLER").is_ok_and(|h| h == EXPORT_WORKER);
    // The worker signs no cursors: its pages' cursors never leave it.
    let mut config = QueryConfig::from_lookup(|k| std::env::var(k).ok(), !worker).unwrap_or_else(|e| fail(&e));
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let db = stele_store::StoreConfig::from_env(&secrets)
        .await
        .unwrap_or_else(|e| fail(&e));
    // Connections are opened on first use and kept across invocations.
    let pool = stele_store::pool(&db).unwrap_or_else(|e| fail(&e));
    let s3 = aws_sdk_s3::Client::new(&aws);

    if worker {
        let worker = ExportWorker::from_config(&config, pool, s3)
            .unwrap_or_else(|| fail(&"STELE_ARCHIVE_BUCKET is required: the export worker writes there"));
        let worker = Arc::new(worker);
        return lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<SqsEvent>| {
            let worker = worker.clone();
            let deadline = i64::try_from(event.context.deadline).ok();
            async move { Ok::<_, Infallible>(worker.handle(event.payload, deadline).await) }
        }))
        .await;
    }

    config.resolve_cursor_key(&secrets).await.unwrap_or_else(|e| fail(&e));
    let mut query = Query::new(config.clone(), pool).with_archive(s3);
    if let Some(url) = &config.export_queue_url {
        query = query.with_export_jobs(Arc::new(SqsJobs::new(aws_sdk_sqs::Client::new(&aws), url)));
    }
    let query = Arc::new(query);
    lambda_http::run(service_fn(move |req: Request| {
        let query = query.clone();
        async move { Ok::<_, Infallible>(query.handle(req).await) }
    }))
    .await
}
