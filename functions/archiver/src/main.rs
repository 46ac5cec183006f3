//! Lambda wiring only: config from the environment, clients built once, run.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use stele_archiver::{handler, Archiver, ArchiverConfig, S3Store};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .without_time()
        .init();
    let db = stele_store::StoreConfig::from_env().map_err(|e| format!("stele-archiver: {e}"))?;
    let config = ArchiverConfig::from_env().map_err(|e| format!("stele-archiver: {e}"))?;
    let aws = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::new(&aws);
    let archiver = Arc::new(Archiver::new(
        Arc::new(S3Store::new(s3, config.bucket.clone())),
        db,
        config,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let archiver = archiver.clone();
        async move {
            let deadline = handler::deadline_from_epoch_ms(event.context.deadline);
            Box::pin(handler::handle(&archiver, &event.payload, deadline))
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
