//! In-memory sinks for tests (feature `testing`): one that stores everything,
//! and one that fails chosen records as Kinesis does under throttling. Not part
//! of the production API.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{EventSink, PutResult, Record};

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
