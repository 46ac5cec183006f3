//! Sending sealed records to the stream.
//!
//! [`EventSink`] is one attempt: it reports, per record, whether the record is
//! stored. [`put_with_retry`] owns the policy: it resends only the records that
//! failed, with jittered exponential backoff, until all are in or the deadline
//! is near. Keeping the two apart lets a fault-injecting sink ([`FaultySink`])
//! prove the retry behaviour against the real Kinesis adapter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use rand::Rng;
use stele_core::limits;
use tokio::time::Instant;

/// One Kinesis record: the canonical event JSON and its partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Bytes,
}

/// What happened to one record in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Stored {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        /// The Kinesis error code (e.g. `ProvisionedThroughputExceededException`),
        /// or `Timeout` / `DispatchFailure` for failures of the call itself.
        code: String,
        message: String,
        /// Whether sending the same record again may succeed.
        retryable: bool,
    },
}

impl PutResult {
    pub fn failed(code: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self::Failed {
            code: code.into(),
            message: message.into(),
            retryable,
        }
    }

    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored { .. })
    }
}

/// Where sealed records go. One call is one attempt; the result holds one entry
/// per record, in order. A sink never errors as a whole: a failed call is a
/// failure of each of its records.
pub trait EventSink: Send + Sync {
    fn put(&self, records: &[Record]) -> impl Future<Output = Vec<PutResult>> + Send;
}

/// Backoff and deadline for [`put_with_retry`].
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total time for all attempts and the waits between them.
    pub deadline: Duration,
    /// First backoff; doubled per attempt up to `max_backoff`, then jittered.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    pub fn with_deadline(deadline: Duration) -> Self {
        Self {
            deadline,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_attempts: 10,
        }
    }

    /// The wait before retry number `retry` (1-based): "equal jitter", i.e. a
    /// uniform draw from [backoff/2, backoff], so callers that failed together do
    /// not retry together, yet nobody retries at once.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }
}

/// The outcome of [`put_with_retry`]: the last result of each record and how
/// many attempts were made.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub results: Vec<PutResult>,
    pub attempts: u32,
}

impl Delivery {
    pub fn all_stored(&self) -> bool {
        self.results.iter().all(PutResult::is_stored)
    }
}

/// Put `records`, resending only those that failed (and may succeed if sent
/// again) until every record is stored, the attempts are used up, or the next
/// wait would pass the deadline. An attempt that outlives the deadline counts as
/// failed for every record in it: we cannot claim what we did not see confirmed.
pub async fn put_with_retry<S: EventSink>(sink: &S, records: &[Record], policy: &RetryPolicy) -> Delivery {
    let deadline = Instant::now() + policy.deadline;
    let mut results = vec![PutResult::failed("NotAttempted", "not attempted", true); records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempts = 0;
    while !pending.is_empty() {
        attempts += 1;
        let batch: Vec<Record> = pending.iter().map(|&i| records[i].clone()).collect();
        let answered = match tokio::time::timeout_at(deadline, sink.put(&batch)).await {
            Ok(answered) if answered.len() == batch.len() => answered,
            Ok(answered) => {
                let msg = format!("sink answered {} results for {} records", answered.len(), batch.len());
                vec![PutResult::failed("InternalFailure", msg, true); batch.len()]
            }
            Err(_) => vec![PutResult::failed("Timeout", "no answer before the put deadline", true); batch.len()],
        };
        let mut again = Vec::new();
        for (&i, result) in pending.iter().zip(answered) {
            if matches!(result, PutResult::Failed { retryable: true, .. }) {
                again.push(i);
            }
            results[i] = result;
        }
        if again.is_empty() || attempts >= policy.max_attempts {
            break;
        }
        let wait = policy.backoff(attempts);
        if Instant::now() + wait >= deadline {
            break;
        }
        tracing::info!(
            failed = again.len(),
            of = batch.len(),
            attempt = attempts,
            wait_ms = wait.as_millis() as u64,
            "retrying records that were not stored"
        );
        tokio::time::sleep(wait).await;
        pending = again;
    }
    Delivery { results, attempts }
}

/// Split records into PutRecords calls of at most 500 records and 5 MiB
/// (data plus partition keys, as Kinesis counts).
pub fn chunks(records: &[Record]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        let size = r.data.len() + r.partition_key.len();
        if i > start && (i - start >= limits::MAX_EVENTS_PER_REQUEST || bytes + size > limits::MAX_REQUEST_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

/// The real sink: Kinesis `PutRecords`.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

/// Errors of the whole call that sending again will not fix.
const PERMANENT_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ValidationException",
    "InvalidArgumentException",
    "AccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSAccessDeniedException",
    "KMSOptInRequired",
];

impl KinesisSink {
    /// `stream` is a stream name or ARN.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    async fn put_chunk(&self, records: &[Record]) -> Vec<PutResult> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.to_vec()))
                .partition_key(&r.partition_key)
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => {
                    let msg = format!("cannot build the record: {e}");
                    return vec![PutResult::failed("InvalidRecord", msg, false); records.len()];
                }
            }
        }
        let mut call = self.client.put_records().set_records(Some(entries));
        call = if self.stream.starts_with("arn:") {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        match call.send().await {
            Ok(out) if out.records().len() == records.len() => out
                .records()
                .iter()
                .map(|e| match (e.error_code(), e.shard_id(), e.sequence_number()) {
                    (None, Some(shard), Some(seq)) => PutResult::Stored {
                        shard_id: shard.to_owned(),
                        sequence_number: seq.to_owned(),
                    },
                    (code, _, _) => PutResult::failed(
                        code.unwrap_or("InternalFailure"),
                        e.error_message().unwrap_or("record not stored"),
                        true,
                    ),
                })
                .collect(),
            Ok(out) => {
                let msg = format!(
                    "PutRecords answered {} entries for {} records",
                    out.records().len(),
                    records.len()
                );
                vec![PutResult::failed("InternalFailure", msg, true); records.len()]
            }
            Err(err) => {
                let code = err.code().unwrap_or("DispatchFailure").to_owned();
                let retryable = !PERMANENT_CODES.contains(&code.as_str());
                let msg = DisplayErrorContext(&err).to_string();
                tracing::warn!(%code, retryable, error = %msg, "PutRecords call failed");
                vec![PutResult::failed(code, msg, retryable); records.len()]
            }
        }
    }
}

impl EventSink for KinesisSink {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        let mut results = Vec::with_capacity(records.len());
        for range in chunks(records) {
            results.extend(self.put_chunk(&records[range]).await);
        }
        results
    }
}

/// An in-memory sink that stores everything: for unit tests and for serving the
/// API locally without a stream (contract tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    stored: Mutex<Vec<Record>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record stored so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.stored.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl EventSink for MemorySink {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        let Ok(mut stored) = self.stored.lock() else {
            return vec![PutResult::failed("InternalFailure", "lock poisoned", true); records.len()];
        };
        records
            .iter()
            .map(|r| {
                stored.push(r.clone());
                PutResult::Stored {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: stored.len().to_string(),
                }
            })
            .collect()
    }
}

/// Wraps a sink and fails chosen records a chosen number of times (as Kinesis
/// does under throttling) without passing them on; records every attempt so a
/// test can see exactly what was sent.
#[derive(Debug)]
pub struct FaultySink<S> {
    inner: S,
    /// Needle (a substring of the record data, e.g. an event id) → failures left.
    plan: Mutex<HashMap<String, u32>>,
    calls: Mutex<Vec<Vec<Record>>>,
}

impl<S: EventSink> FaultySink<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            plan: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Fail records whose data contains `needle` for their next `times` attempts
    /// (`u32::MAX`: always).
    pub fn fail(self, needle: impl Into<String>, times: u32) -> Self {
        if let Ok(mut plan) = self.plan.lock() {
            plan.insert(needle.into(), times);
        }
        self
    }

    /// The records of each attempt, in order.
    pub fn calls(&self) -> Vec<Vec<Record>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn should_fail(&self, record: &Record) -> bool {
        let Ok(mut plan) = self.plan.lock() else {
            return false;
        };
        let text = String::from_utf8_lossy(&record.data);
        for (needle, left) in plan.iter_mut() {
            if *left > 0 && text.contains(needle.as_str()) {
                *left = left.saturating_sub(1);
                return true;
            }
        }
        false
    }
}

impl<S: EventSink> EventSink for FaultySink<S> {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(records.to_vec());
        }
        let failing: Vec<bool> = records.iter().map(|r| self.should_fail(r)).collect();
        let passed: Vec<Record> = records
            .iter()
            .zip(&failing)
            .filter(|(_, f)| !**f)
            .map(|(r, _)| r.clone())
            .collect();
        let mut inner = self.inner.put(&passed).await.into_iter();
        failing
            .iter()
            .map(|&f| {
                if f {
                    PutResult::failed(
                        "ProvisionedThroughputExceededException",
                        "Rate exceeded for shard (injected)",
                        true,
                    )
                } else {
                    inner
                        .next()
                        .unwrap_or_else(|| PutResult::failed("InternalFailure", "inner sink lost a record", true))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Record {
        Record {
            partition_key: "t".into(),
            data: Bytes::from(format!("{{\"event_id\":\"{id}\"}}")),
        }
    }

    fn fast(deadline_ms: u64) -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_millis(deadline_ms),
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_attempts: 10,
        }
    }

    #[tokio::test]
    async fn only_failed_records_are_sent_again() {
        let sink = FaultySink::new(MemorySink::new()).fail("b", 2);
        let records = [rec("a"), rec("b"), rec("c")];
        let delivery = put_with_retry(&sink, &records, &fast(5_000)).await;
        assert!(delivery.all_stored());
        assert_eq!(delivery.attempts, 3);
        let calls = sink.calls();
        assert_eq!(calls[0], records.to_vec());
        assert_eq!(calls[1], vec![rec("b")]);
        assert_eq!(calls[2], vec![rec("b")]);
        assert_eq!(sink.inner().records(), vec![rec("a"), rec("c"), rec("b")]);
    }

    #[tokio::test]
    async fn a_record_that_keeps_failing_is_reported_failed() {
        let sink = FaultySink::new(MemorySink::new()).fail("b", u32::MAX);
        let records = [rec("a"), rec("b")];
        let delivery = put_with_retry(&sink, &records, &fast(200)).await;
        assert!(!delivery.all_stored());
        assert!(delivery.results[0].is_stored());
        assert!(matches!(
            &delivery.results[1],
            PutResult::Failed { code, .. } if code == "ProvisionedThroughputExceededException"
        ));
        assert!(delivery.attempts > 1);
    }

    struct Permanent;
    impl EventSink for Permanent {
        async fn put(&self, records: &[Record]) -> Vec<PutResult> {
            vec![PutResult::failed("ResourceNotFoundException", "no stream", false); records.len()]
        }
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let delivery = put_with_retry(&Permanent, &[rec("a")], &fast(5_000)).await;
        assert_eq!(delivery.attempts, 1);
        assert!(!delivery.all_stored());
    }

    struct Hangs;
    impl EventSink for Hangs {
        async fn put(&self, _: &[Record]) -> Vec<PutResult> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_call_fails_at_the_deadline() {
        let delivery = put_with_retry(&Hangs, &[rec("a")], &fast(300)).await;
        assert!(matches!(
            &delivery.results[0],
            PutResult::Failed { code, .. } if code == "Timeout"
        ));
    }

    #[test]
    fn chunks_respect_the_record_and_byte_limits() {
        let small: Vec<Record> = (0..1200).map(|i| rec(&i.to_string())).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, vec![500, 500, 200]);

        let big = Record {
            partition_key: "t".into(),
            data: Bytes::from(vec![b'x'; 60 * 1024]),
        };
        let many = vec![big; 200];
        for range in chunks(&many) {
            let bytes: usize = many[range].iter().map(|r| r.data.len() + 1).sum();
            assert!(bytes <= limits::MAX_REQUEST_BYTES);
        }
        assert_eq!(chunks(&many).iter().map(|r| r.len()).sum::<usize>(), 200);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::with_deadline(Duration::from_secs(8));
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
            assert!(p.backoff(30) <= Duration::from_secs(2));
        }
    }
}
