//! Lambda entry point: settings, the Postgres pool and SQS client (built once),
//! migrations and partitions ahead, then the runtime.
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use stele_batch_writer::{BatchWriter, Error, SqsDeadLetters, WriterConfig};
use stele_store::PgEventStore;

async fn build() -> Result<(stele_batch_writer::PgBatchWriter, u32), Error> {
    let config = WriterConfig::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let store_config = config.db.clone().resolve(&secrets).await?;
    let store = PgEventStore::with_method(stele_store::pool(&store_config)?, config.insert_method);
    let dead_letters = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&aws), &config.dlq_url);
    Ok((BatchWriter::new(store, dead_letters), config.partition_days_ahead))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let (writer, days_ahead) = match build().await {
        Ok(built) => built,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("stele-batch-writer: {e}");
            std::process::exit(2);
        }
    };
    // The schema ships inside the binary: apply pending migrations (idempotent,
    // serialised across concurrent cold starts by an advisory lock). Best effort,
    // like the partitions below: a database that is down now fails the first
    // batch, which the event source mapping redelivers to a later cold start.
    match writer.store().pool().get().await {
        Ok(conn) => {
            if let Err(e) = stele_store::migrate(&conn).await {
                tracing::warn!(error = %e, "could not apply migrations at start");
            }
        }
        Err(e) => tracing::warn!(error = %e, "no database connection at start"),
    }
    let today = chrono::Utc::now().date_naive();
    if let Err(e) = writer.ensure_days_ahead(today, days_ahead).await {
        tracing::warn!(error = %e, "could not create partitions ahead at start");
    }
    let writer = Arc::new(writer);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let writer = writer.clone();
        async move { Ok::<_, Infallible>(writer.handle_batch(event.payload).await) }
    }))
    .await
}
