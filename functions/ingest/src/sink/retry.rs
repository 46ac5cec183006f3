//! The retry policy: which records are sent again, when, and until when.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{EventSink, PutResult, Record};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{FaultySink, MemorySink};
    use bytes::Bytes;

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
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::with_deadline(Duration::from_secs(8));
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
            assert!(p.backoff(30) <= Duration::from_secs(2));
        }
    }
}
