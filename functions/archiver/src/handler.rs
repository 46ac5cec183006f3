//! The Lambda event: EventBridge Scheduler's payload (anything without a
//! `partition`) runs the scheduled job; `{"partition": "...", "dry_run": true}`
//! archives (or plans) one partition for an operator.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use crate::runner::Archiver;
use crate::store::ArchiveStore;
use stele_store::ArchiveDb;

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct OperatorRequest {
    pub partition: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Scheduled,
    Operator(OperatorRequest),
}

/// Read the payload: an object with `partition` is an operator request; any
/// other payload (the scheduler's) is a scheduled run.
pub fn parse(payload: &Value) -> Result<Request, String> {
    match payload.get("partition") {
        None => Ok(Request::Scheduled),
        Some(_) => serde_json::from_value(payload.clone())
            .map(Request::Operator)
            .map_err(|e| {
                format!(
                    "operator request must be {{\"partition\": \"audit_events_pYYYYMMDD\", \"dry_run\": bool}}: {e}"
                )
            }),
    }
}

/// `Instant` of a Lambda deadline given in milliseconds since the epoch.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Handle one invocation; an `Err` makes the invocation fail (and alarm).
pub async fn handle<S: ArchiveStore + 'static, D: ArchiveDb>(
    archiver: &Archiver<S, D>,
    payload: &Value,
    deadline: Instant,
) -> Result<Value, String> {
    match parse(payload)? {
        Request::Scheduled => {
            let report = archiver.run(Utc::now(), deadline).await;
            tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "archiver run finished");
            match &report.error {
                Some(e) => Err(e.clone()),
                None => Ok(serde_json::to_value(&report).unwrap_or(Value::Null)),
            }
        }
        Request::Operator(req) => archiver
            .archive_partition(&req.partition, req.dry_run, Utc::now(), deadline)
            .await
            .map(|r| serde_json::to_value(&r).unwrap_or(Value::Null))
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduler_payloads_run_the_schedule() {
        assert_eq!(parse(&json!({})).unwrap(), Request::Scheduled);
        assert_eq!(
            parse(&json!({"detail-type": "Scheduled Event", "source": "aws.scheduler"})).unwrap(),
            Request::Scheduled
        );
    }

    #[test]
    fn operator_requests_name_a_partition() {
        assert_eq!(
            parse(&json!({"partition": "audit_events_p20240101", "dry_run": true})).unwrap(),
            Request::Operator(OperatorRequest {
                partition: "audit_events_p20240101".into(),
                dry_run: true
            })
        );
        assert!(parse(&json!({"partition": 5})).is_err());
    }
}
