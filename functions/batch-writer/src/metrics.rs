//! Per-batch figures, logged as one CloudWatch Embedded Metric Format line so
//! that CloudWatch turns them into metrics without any API call.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: u64,
    pub inserted: u64,
    pub duplicates: u64,
    /// Of `inserted`, events of an archived day, stored in `late_events`.
    pub late: u64,
    /// Records dead-lettered (undecodable, hash mismatch, id conflicts…).
    pub poison: u64,
    /// Of `poison`, records whose event id was already stored with other
    /// content (the `conflicts` alarm fires on any).
    pub conflicts: u64,
    pub partitions_created: u64,
    /// Records reported back as failed (to be redelivered).
    pub unacknowledged: u64,
    pub db_failed: bool,
    pub dlq_failed: bool,
    pub latency_ms: u64,
}

/// Namespace of every stele metric.
pub const NAMESPACE: &str = "stele";

/// One EMF JSON document (a log line) for `report`, dimension `function`.
pub fn emf_line(report: &BatchReport, at: DateTime<Utc>) -> String {
    let count = |name: &str| json!({"Name": name, "Unit": "Count"});
    let doc: Value = json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function"]],
                "Metrics": [
                    count("records"),
                    count("inserted"),
                    count("duplicates"),
                    count("late"),
                    count("poison"),
                    count("conflicts"),
                    count("partitions_created"),
                    count("unacknowledged"),
                    count("db_errors"),
                    count("dlq_errors"),
                    {"Name": "latency", "Unit": "Milliseconds"},
                ],
            }],
        },
        "function": "batch-writer",
        "records": report.records,
        "inserted": report.inserted,
        "duplicates": report.duplicates,
        "late": report.late,
        "poison": report.poison,
        "conflicts": report.conflicts,
        "partitions_created": report.partitions_created,
        "unacknowledged": report.unacknowledged,
        "db_errors": u64::from(report.db_failed),
        "dlq_errors": u64::from(report.dlq_failed),
        "latency": report.latency_ms,
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_a_value_at_the_top_level() {
        let report = BatchReport {
            records: 10,
            inserted: 7,
            duplicates: 1,
            poison: 2,
            partitions_created: 1,
            latency_ms: 42,
            ..Default::default()
        };
        let doc: Value = serde_json::from_str(&emf_line(&report, Utc::now())).unwrap();
        let metrics = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_u64(), "{name} has no value");
        }
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(doc["function"], "batch-writer");
        assert_eq!(doc["inserted"], 7);
        assert_eq!(doc["latency"], 42);
    }
}
