//! Lambda wiring only: config from the environment, clients built once, run.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use stele_archiver::{handler, startup};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .without_time()
        .init();
    let aws = aws_config::load_from_env().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let archiver = startup::archiver(
        |k| std::env::var(k).ok(),
        aws_sdk_s3::Client::new(&aws),
        aws_sdk_kinesis::Client::new(&aws),
        &secrets,
    )
    .await
    .map_err(|e| format!("stele-archiver: {e}"))?;
    let archiver = Arc::new(archiver);
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
