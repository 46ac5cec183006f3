//! Lambda wiring only: config from the environment, signer and clients built once;
//! each scheduled invocation connects to the database and runs once.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use stele_checkpointer::startup;

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
    let (checkpointer, db) = startup::checkpointer(
        |k| std::env::var(k).ok(),
        aws_sdk_s3::Client::new(&aws),
        || aws_sdk_kms::Client::new(&aws),
        &secrets,
    )
    .await
    .map_err(|e| format!("stele-checkpointer: {e}"))?;
    tracing::info!(vkey = %checkpointer.vkey(), "stele-checkpointer ready");
    let (checkpointer, db) = (&checkpointer, &db);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        let client = stele_store::connect(db).await.map_err(|e| format!("database: {e}"))?;
        let report = checkpointer.run(&client).await;
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "checkpointer run finished");
        if report.ok() {
            Ok::<Value, Error>(serde_json::to_value(&report).unwrap_or(Value::Null))
        } else {
            Err(format!(
                "checkpointer run failed: {} refused, error: {}",
                report.refused.len(),
                report.error.as_deref().unwrap_or("none")
            )
            .into())
        }
    }))
    .await
}
