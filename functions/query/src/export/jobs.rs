//! Asynchronous exports, for ranges too large for one API request (API Gateway gives a
//! request 30 s, about 900 000 events): `POST /v1/exports` records the job's status and
//! queues it ([`ExportJobs`]) and answers `202`; the export worker (the query function's
//! binary, deployed as its own function on the queue's event source mapping) runs it
//! for up to Lambda's 15 minutes into the archive bucket; `GET /v1/exports/{export_id}`
//! reads the status and, once the file is there, hands out a fresh presigned URL.
//!
//! Everything of a job lives under `_exports/tenant_id=<tenant>/`: its status
//! (`<export_id>.status.json`) and its file (`<export_id>.<ndjson|csv>`), so a tenant
//! can only ever name its own, and the prefix's one-day expiry removes both.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use stele_archiver::S3Store;
use stele_core::event::timestamp;
use uuid::Uuid;

use super::spool::{BucketError, ExportBucket, Spool, SpoolError, EXPORT_PREFIX};
use super::{ExportError, ExportRequest, Format};
use crate::events::SearchError;

/// What the queue carries: who asked for which export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJob {
    pub export_id: Uuid,
    pub tenant: String,
    /// The request's query parameters, as sent; the worker parses them again
    /// ([`ExportRequest::parse`]), so it runs exactly what `GET /v1/events/export` would.
    pub params: Vec<(String, String)>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Accepted and queued; no worker has started it.
    Queued,
    /// A worker is writing the file (or will try again after a failure: see `error`).
    Running,
    /// The file is complete: `GET /v1/exports/{export_id}` hands out its URL.
    Succeeded,
    /// Given up: `error` says why. Nothing is written under the file's key.
    Failed,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

/// A job's status object (`<export_id>.status.json`), as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    pub export_id: Uuid,
    pub status: State,
    pub format: String,
    /// The name the file downloads as.
    pub filename: String,
    pub requested_at: String,
    pub updated_at: String,
    /// Worker attempts so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The file's key in the bucket, once it is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the job failed, or why the last attempt did (while it is retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExportStatus {
    /// A new job's status: queued.
    pub fn queued(export_id: Uuid, format: Format, filename: String) -> Self {
        let now = timestamp::format(&Utc::now());
        Self {
            export_id,
            status: State::Queued,
            format: format.extension().to_owned(),
            filename,
            requested_at: now.clone(),
            updated_at: now,
            attempts: 0,
            events: None,
            bytes: None,
            key: None,
            error: None,
        }
    }

    fn moved_to(mut self, status: State) -> Self {
        self.status = status;
        self.updated_at = timestamp::format(&Utc::now());
        self
    }
}

/// `_exports/tenant_id=<tenant>/<export_id>.status.json`
pub fn status_key(tenant: &str, export_id: Uuid) -> String {
    format!("{EXPORT_PREFIX}/tenant_id={tenant}/{export_id}.status.json")
}

/// `_exports/tenant_id=<tenant>/<export_id>.<extension>`
pub fn file_key(tenant: &str, export_id: Uuid, extension: &str) -> String {
    format!("{EXPORT_PREFIX}/tenant_id={tenant}/{export_id}.{extension}")
}

/// The file name an export of `request` downloads as.
pub fn filename(tenant: &str, request: &ExportRequest) -> String {
    let stamp = |t: &chrono::DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "stele-{tenant}-{}-{}.{}",
        stamp(&request.filters.from),
        stamp(&request.filters.to),
        request.format.extension()
    )
}

/// Reads a job's status; `None` for an id this tenant never started (or expired).
pub async fn read_status(
    bucket: &ExportBucket,
    tenant: &str,
    export_id: Uuid,
) -> Result<Option<ExportStatus>, BucketError> {
    let key = status_key(tenant, export_id);
    let Some(body) = bucket.get_small(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body).map(Some).map_err(|e| BucketError {
        key,
        reason: format!("not an export status: {e}"),
    })
}

pub async fn write_status(bucket: &ExportBucket, tenant: &str, status: &ExportStatus) -> Result<(), BucketError> {
    let body = serde_json::to_vec(status).unwrap_or_default();
    bucket
        .put_small(&status_key(tenant, status.export_id), body, "application/json")
        .await
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where `POST /v1/exports` hands a job: a queue in AWS ([`SqsJobs`]), a task in
/// this process locally ([`InProcessJobs`]).
pub trait ExportJobs: Send + Sync {
    /// Hands `job` over; an error means it was not queued (the request fails with `503`).
    fn submit(&self, job: ExportJob) -> BoxFuture<'_, Result<(), String>>;
}

/// The export queue (`STELE_EXPORT_QUEUE_URL`), which the worker's event source
/// mapping drains.
pub struct SqsJobs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobs {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl ExportJobs for SqsJobs {
    fn submit(&self, job: ExportJob) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let body = serde_json::to_string(&job).map_err(|e| e.to_string())?;
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| format!("queueing the export: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            Ok(())
        })
    }
}

/// Runs each job on a task of this process (`stele dev`, local servers): no queue, no
/// retries; a failure is recorded in the job's status.
pub struct InProcessJobs {
    worker: Arc<ExportWorker>,
}

impl InProcessJobs {
    pub fn new(worker: Arc<ExportWorker>) -> Self {
        Self { worker }
    }
}

impl ExportJobs for InProcessJobs {
    fn submit(&self, job: ExportJob) -> BoxFuture<'_, Result<(), String>> {
        let worker = self.worker.clone();
        tokio::spawn(async move {
            let attempts = worker.max_attempts;
            // The last attempt: a failure is final.
            let _ = worker.run(&job, attempts, None).await;
        });
        Box::pin(async { Ok(()) })
    }
}

/// An attempt failed in a way another may not (the database or S3): deliver the job again.
#[derive(Debug, thiserror::Error)]
#[error("export {export_id}: {reason}")]
pub struct RetryLater {
    pub export_id: Uuid,
    pub reason: String,
}

/// The export worker: runs a job into the bucket and keeps its status.
pub struct ExportWorker {
    pool: deadpool_postgres::Pool,
    archive: Option<S3Store>,
    archive_prefix: String,
    bucket: ExportBucket,
    /// Attempts before a failure is final: the queue's `maxReceiveCount`.
    max_attempts: u32,
}

/// Time kept back from the invocation's deadline to record a failure.
const MARGIN_MS: i64 = 5_000;

impl ExportWorker {
    pub fn new(
        pool: deadpool_postgres::Pool,
        archive: Option<S3Store>,
        archive_prefix: String,
        bucket: ExportBucket,
        max_attempts: u32,
    ) -> Self {
        Self {
            pool,
            archive,
            archive_prefix,
            bucket,
            max_attempts: max_attempts.max(1),
        }
    }

    /// The worker of `config`'s archive bucket; `None` without one.
    pub fn from_config(
        config: &crate::QueryConfig,
        pool: deadpool_postgres::Pool,
        s3: aws_sdk_s3::Client,
    ) -> Option<Self> {
        let bucket = config.export_bucket(s3.clone())?;
        let archive = S3Store::new(s3, bucket.bucket.clone());
        Some(Self::new(
            pool,
            Some(archive),
            config.archive_prefix.clone(),
            bucket,
            config.export_max_attempts,
        ))
    }

    /// One SQS batch from the event source mapping (`ReportBatchItemFailures`): a job
    /// that should be tried again is reported, everything else is done (a failed job
    /// is done too: its status says why). `deadline_ms`: the invocation's deadline.
    pub async fn handle(&self, event: SqsEvent, deadline_ms: Option<i64>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let job: ExportJob = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
                Ok(job) => job,
                Err(e) => {
                    // Not ours to run: left to the queue's redrive to its dead-letter queue.
                    tracing::error!(message_id = %id, error = %e, "not an export job");
                    response.batch_item_failures.push(failure(id));
                    continue;
                }
            };
            let attempt = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let deadline = deadline_ms.map(|ms| {
                let left = (ms - Utc::now().timestamp_millis() - MARGIN_MS).max(0);
                Instant::now() + std::time::Duration::from_millis(left as u64)
            });
            if let Err(e) = self.run(&job, attempt, deadline).await {
                tracing::warn!(error = %e, attempt, "export attempt failed; the queue delivers it again");
                response.batch_item_failures.push(failure(id));
            }
        }
        response
    }

    /// Runs `job` (its `attempt`th delivery) to its end, unless it already ended.
    pub async fn run(&self, job: &ExportJob, attempt: u32, deadline: Option<Instant>) -> Result<(), RetryLater> {
        let (tenant, export_id) = (job.tenant.as_str(), job.export_id);
        let retry = |reason: String| RetryLater { export_id, reason };
        let params = || job.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let parsed = ExportRequest::parse(
            |k| params().find(|(n, _)| *n == k).map(|(_, v)| v),
            params().map(|(k, _)| k),
        );
        let previous = read_status(&self.bucket, tenant, export_id)
            .await
            .map_err(|e| retry(e.to_string()))?;
        if previous.as_ref().is_some_and(|s| s.status.is_final()) {
            // A redelivery of a job that ended: nothing to do.
            return Ok(());
        }
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                // The API checked these parameters; only a forged job gets here.
                let status = ExportStatus::queued(export_id, Format::Ndjson, String::new());
                return self.finish(tenant, status, Err(format!("invalid export: {e}"))).await;
            }
        };
        let name = filename(tenant, &request);
        let mut status = previous.unwrap_or_else(|| ExportStatus::queued(export_id, request.format, name.clone()));
        status.attempts = attempt;
        status = status.moved_to(State::Running);
        write_status(&self.bucket, tenant, &status)
            .await
            .map_err(|e| retry(e.to_string()))?;
        tracing::info!(%tenant, %export_id, attempt, "export started");

        let key = file_key(tenant, export_id, request.format.extension());
        let mut spool = Spool::new(
            Some(self.bucket.clone()),
            key,
            name,
            request.format.content_type(),
            0, // never inline: the file is the result
        );
        if let Some(d) = deadline {
            spool = spool.with_deadline(d);
        }
        let outcome = match self.pool.get().await {
            Err(e) => Err(ExportError::Search(SearchError::Unavailable(format!(
                "database connection: {e}"
            )))),
            Ok(client) => {
                let archive = self.archive.as_ref().map(|s| (s, self.archive_prefix.as_str()));
                super::deliver(&**client, archive, tenant, &request, spool).await
            }
        };
        match outcome {
            Ok((events, super::spool::Delivered::Url { key, bytes, .. })) => {
                tracing::info!(%tenant, %export_id, events, bytes, "export written");
                status.events = Some(events);
                status.bytes = Some(bytes);
                status.key = Some(key);
                self.finish(tenant, status, Ok(())).await
            }
            // Inline is never chosen with a limit of 0.
            Ok((_, super::spool::Delivered::Inline(_))) => {
                self.finish(tenant, status, Err("the export was not written to the bucket".into()))
                    .await
            }
            Err(e) => {
                let permanent = matches!(
                    e,
                    ExportError::Search(SearchError::Unreadable(_) | SearchError::BadCursor)
                        | ExportError::Output(SpoolError::OutOfTime { .. } | SpoolError::NoBucket)
                );
                let reason = match &e {
                    ExportError::Output(SpoolError::OutOfTime { .. }) => {
                        format!("{e}: export a shorter range (a worker runs at most 15 minutes)")
                    }
                    _ => e.to_string(),
                };
                if permanent || attempt >= self.max_attempts {
                    tracing::error!(%tenant, %export_id, attempt, error = %reason, "export failed");
                    return self.finish(tenant, status, Err(reason)).await;
                }
                status.error = Some(format!("attempt {attempt} failed, retrying: {reason}"));
                write_status(&self.bucket, tenant, &status)
                    .await
                    .map_err(|e| retry(e.to_string()))?;
                Err(retry(reason))
            }
        }
    }

    /// Records the end of a job.
    async fn finish(&self, tenant: &str, status: ExportStatus, result: Result<(), String>) -> Result<(), RetryLater> {
        let status = match result {
            Ok(()) => ExportStatus { error: None, ..status }.moved_to(State::Succeeded),
            Err(why) => ExportStatus {
                error: Some(why),
                events: None,
                bytes: None,
                key: None,
                ..status
            }
            .moved_to(State::Failed),
        };
        write_status(&self.bucket, tenant, &status)
            .await
            .map_err(|e| RetryLater {
                export_id: status.export_id,
                reason: e.to_string(),
            })
    }
}

fn failure(item_identifier: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = item_identifier;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_travels_as_json() {
        let job = ExportJob {
            export_id: Uuid::now_v7(),
            tenant: "tenant-a".into(),
            params: vec![
                ("from".into(), "2026-01-01T00:00:00Z".into()),
                ("format".into(), "csv".into()),
            ],
        };
        let back: ExportJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn keys_stay_under_the_tenants_prefix() {
        let id = Uuid::nil();
        assert_eq!(
            status_key("t1", id),
            "_exports/tenant_id=t1/00000000-0000-0000-0000-000000000000.status.json"
        );
        assert_eq!(
            file_key("t1", id, "csv"),
            "_exports/tenant_id=t1/00000000-0000-0000-0000-000000000000.csv"
        );
    }

    #[test]
    fn the_status_omits_what_is_not_known_yet() {
        let s = ExportStatus::queued(Uuid::nil(), Format::Ndjson, "f.ndjson".into());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], "queued");
        assert!(v.get("events").is_none() && v.get("error").is_none() && v.get("key").is_none());
    }
}
