//! A local stand-in for Lambda's Kinesis event source mapping (ESM).
//!
//! One poller per shard reads the stream in order, gathers records until the
//! batch is full or the batching window has passed, and hands a `KinesisEvent`
//! to the batch-writer's handler, with the mapping's semantics:
//! - `ReportBatchItemFailures`: the checkpoint moves to just before the first
//!   reported failure; that record and everything after it are delivered again;
//! - bisect on error: a batch that makes no progress is split in half;
//! - retry limit and on-failure destination: after `max_retries` failed
//!   deliveries the batch's position (not its data, as in AWS) is sent to the
//!   on-failure queue and the shard moves on. The default, like AWS's, is to
//!   retry until the record expires, so a database outage loses nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The mapping's settings (the same names as in Terraform / the AWS API).
#[derive(Debug, Clone)]
pub struct MappingSettings {
    pub stream_name: String,
    pub stream_arn: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub bisect_on_error: bool,
    /// `None` retries until the record expires (AWS's default of -1).
    pub max_retries: Option<u32>,
    /// Queue URL of the on-failure destination.
    pub on_failure_queue: Option<String>,
}

/// What the pollers have done, for progress output and tests.
#[derive(Debug, Default)]
pub struct MappingStats {
    pub delivered_batches: AtomicU64,
    /// Records acknowledged by the handler (written or dead-lettered).
    pub acknowledged: AtomicU64,
    /// Redeliveries caused by batch item failures.
    pub retries: AtomicU64,
    /// Records given up on and reported to the on-failure destination.
    pub discarded: AtomicU64,
    /// Milliseconds between the newest acknowledged record's arrival and its
    /// acknowledgement.
    pub lag_ms: AtomicU64,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// The function the mapping invokes.
pub type Handler = Arc<dyn Fn(KinesisEvent) -> BoxFuture<KinesisEventResponse> + Send + Sync>;

/// Run one poller per shard until `shutdown` turns true; a batch in flight is
/// finished (and its checkpoint kept) before a poller stops.
pub async fn run(
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    settings: MappingSettings,
    handler: Handler,
    stats: Arc<MappingStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let shards = kinesis
        .list_shards()
        .stream_name(&settings.stream_name)
        .send()
        .await
        .map_err(|e| format!("listing shards: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
    let mut tasks = Vec::new();
    for shard in shards.shards() {
        let poller = ShardPoller {
            kinesis: kinesis.clone(),
            sqs: sqs.clone(),
            settings: settings.clone(),
            shard_id: shard.shard_id().to_string(),
            handler: handler.clone(),
            stats: stats.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move { poller.run(shutdown).await }));
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("shard poller panicked: {e}")),
        }
    }
    Ok(())
}

struct ShardPoller {
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    settings: MappingSettings,
    shard_id: String,
    handler: Handler,
    stats: Arc<MappingStats>,
}

impl ShardPoller {
    async fn iterator(&self) -> Result<String, String> {
        let out = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.settings.stream_name)
            .shard_id(&self.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| format!("shard iterator: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| "no shard iterator".to_string())
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        let mut iterator = self.iterator().await?;
        let mut pending: Vec<KinesisEventRecord> = Vec::new();
        loop {
            // Gather a batch: full, or the window has passed since it began. After
            // shutdown is asked for, keep reading until the shard is caught up, so
            // that nothing accepted is left behind in the stream.
            let window_end = tokio::time::Instant::now() + self.settings.batching_window;
            let mut caught_up = false;
            while pending.len() < self.settings.batch_size {
                let limit = (self.settings.batch_size - pending.len()).min(10_000) as i32;
                match self
                    .kinesis
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(limit)
                    .send()
                    .await
                {
                    Ok(out) => {
                        if let Some(next) = out.next_shard_iterator() {
                            iterator = next.to_string();
                        }
                        let fetched = out.records().len();
                        pending.extend(out.records().iter().map(|r| self.event_record(r)));
                        if fetched == 0 {
                            if *shutdown.borrow() {
                                caught_up = true;
                                break;
                            }
                            if tokio::time::Instant::now() >= window_end && !pending.is_empty() {
                                break;
                            }
                            let _ = tokio::time::timeout(Duration::from_millis(200), shutdown.changed()).await;
                        }
                    }
                    Err(e) => {
                        let error = aws_sdk_kinesis::error::DisplayErrorContext(e);
                        tracing::warn!(shard = %self.shard_id, error = %error, "GetRecords failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if let Ok(fresh) = self.iterator().await {
                            // An expired iterator restarts at the trim horizon; the
                            // writer's idempotency makes the re-read harmless.
                            iterator = fresh;
                        }
                    }
                }
                if tokio::time::Instant::now() >= window_end && !pending.is_empty() {
                    break;
                }
            }
            if pending.is_empty() {
                if caught_up {
                    return Ok(());
                }
                continue;
            }
            let take = pending.len().min(self.settings.batch_size);
            let batch: Vec<KinesisEventRecord> = pending.drain(..take).collect();
            self.deliver(batch).await;
        }
    }

    fn event_record(&self, r: &aws_sdk_kinesis::types::Record) -> KinesisEventRecord {
        let arrival = r
            .approximate_arrival_timestamp()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
            .unwrap_or_else(Utc::now);
        stele_batch_writer::kinesis::stream_record(
            &self.settings.stream_arn,
            &self.shard_id,
            r.sequence_number(),
            r.partition_key().unwrap_or_default(),
            r.data().as_ref().to_vec(),
            arrival,
        )
    }

    /// Deliver until every record of `batch` is acknowledged or given up on.
    async fn deliver(&self, mut batch: Vec<KinesisEventRecord>) {
        let mut failures = 0u32;
        let mut size = batch.len();
        while !batch.is_empty() {
            let attempt: Vec<KinesisEventRecord> = batch[..size.min(batch.len())].to_vec();
            let response = (self.handler)(stele_batch_writer::kinesis::event(attempt.clone())).await;
            self.stats.delivered_batches.fetch_add(1, Ordering::Relaxed);
            let first_failed = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.as_deref())
                .filter_map(|seq| attempt.iter().position(|r| r.kinesis.sequence_number == seq))
                .min();
            let acknowledged = first_failed.unwrap_or(attempt.len());
            if acknowledged > 0 {
                self.stats
                    .acknowledged
                    .fetch_add(acknowledged as u64, Ordering::Relaxed);
                let newest = &attempt[acknowledged - 1].kinesis.approximate_arrival_timestamp.0;
                let lag = (Utc::now() - *newest).num_milliseconds().max(0) as u64;
                self.stats.lag_ms.store(lag, Ordering::Relaxed);
                batch.drain(..acknowledged);
            }
            if first_failed.is_none() {
                // The attempt (maybe a bisected half) went through; carry on
                // with the rest at full size.
                size = batch.len();
                failures = 0;
                continue;
            }
            failures += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if self.settings.max_retries.is_some_and(|max| failures > max) {
                self.give_up(&batch).await;
                return;
            }
            if acknowledged == 0 && self.settings.bisect_on_error && size > 1 {
                size = size.div_ceil(2);
            }
            let backoff = Duration::from_millis(200 * u64::from(failures.min(10)));
            tracing::warn!(shard = %self.shard_id, failures, remaining = batch.len(), "batch item failures; redelivering");
            tokio::time::sleep(backoff).await;
        }
    }

    /// The on-failure destination gets where the records are, as in AWS.
    async fn give_up(&self, batch: &[KinesisEventRecord]) {
        self.stats.discarded.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let body = serde_json::json!({
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": "local:stele-batch-writer"},
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first.kinesis.sequence_number,
                "endSequenceNumber": last.kinesis.sequence_number,
                "batchSize": batch.len(),
                "streamArn": self.settings.stream_arn,
            }
        });
        tracing::error!(shard = %self.shard_id, records = batch.len(), "retry attempts exhausted; sent to the on-failure destination");
        if let Some(queue) = &self.settings.on_failure_queue {
            if let Err(e) = self
                .sqs
                .send_message()
                .queue_url(queue)
                .message_body(body.to_string())
                .send()
                .await
            {
                tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "on-failure destination unreachable");
            }
        }
    }
}
