//! The stream's backlog: what the batch-writer has not consumed yet. A day is
//! archived only once every record that could belong to it is in PostgreSQL,
//! so that a backlog (the batch-writer down, a database outage, a slow shard)
//! waits for its records instead of turning them into late rows.
//!
//! The batch-writer commits each shard's last sequence number with its rows
//! (`stream_progress`). For each shard the stream is asked for the first record
//! after that position: its arrival time bounds the `received_at` of everything
//! not yet consumed (ingest stamps `received_at` before the put, at most the
//! put deadline before the record arrives), so the oldest such arrival, less
//! that slack, is the low-water mark below which everything is stored.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use stele_store::ShardProgress;

/// Reads of an empty stretch of a shard before giving up on a conclusion
/// (GetRecords may return nothing while records lie further on).
const MAX_EMPTY_READS: usize = 5;

/// How long a record may take from ingest's `received_at` stamp to its arrival
/// in the stream: ingest's put deadline (`STELE_PUT_DEADLINE_MS`), with room.
pub const RECEIVED_TO_ARRIVAL_SLACK: chrono::Duration = chrono::Duration::seconds(60);

/// The port: the arrival time of the oldest record not yet consumed, over every
/// shard, given what the batch-writer has committed; `None` when nothing waits.
pub trait StreamBacklog: Send + Sync {
    fn oldest_unconsumed<'a>(
        &'a self,
        consumed: &'a [ShardProgress],
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, String>>;
}

/// [`StreamBacklog`] on the Kinesis stream (ListShards, GetShardIterator, GetRecords).
pub struct KinesisBacklog {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisBacklog {
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    async fn shards(&self) -> Result<Vec<String>, String> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = request.send().await.map_err(|e| {
                format!(
                    "listing the shards of {}: {}",
                    self.stream,
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                )
            })?;
            shards.extend(out.shards().iter().map(|s| s.shard_id().to_string()));
            match out.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(shards),
            }
        }
    }

    /// The arrival time of the first record of `shard` after `after` (from the
    /// shard's start if `None`); `Ok(None)` when the shard holds nothing more.
    async fn first_unconsumed(&self, shard: &str, after: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
        let kinesis_error = |what: &str, e: String| format!("{what} of {}/{shard}: {e}", self.stream);
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard);
        let request = match after {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = request
            .send()
            .await
            .map_err(|e| {
                kinesis_error(
                    "an iterator",
                    aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
                )
            })?
            .shard_iterator
            .ok_or_else(|| kinesis_error("an iterator", "none returned".into()))?;
        for _ in 0..MAX_EMPTY_READS {
            let out = self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(1)
                .send()
                .await
                .map_err(|e| kinesis_error("reading", aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()))?;
            if let Some(record) = out.records().first() {
                let arrival = record
                    .approximate_arrival_timestamp()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                    .ok_or_else(|| kinesis_error("reading", "a record without an arrival time".into()))?;
                return Ok(Some(arrival));
            }
            // Caught up with the shard's tip, or the shard is closed and read to its end.
            if out.millis_behind_latest() == Some(0) || out.next_shard_iterator().is_none() {
                return Ok(None);
            }
            iterator = out.next_shard_iterator().unwrap_or_default().to_string();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(kinesis_error(
            "reading",
            format!("no record and no tip after {MAX_EMPTY_READS} reads"),
        ))
    }
}

impl StreamBacklog for KinesisBacklog {
    fn oldest_unconsumed<'a>(
        &'a self,
        consumed: &'a [ShardProgress],
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, String>> {
        Box::pin(async move {
            let positions: HashMap<&str, &str> = consumed
                .iter()
                .map(|p| (p.shard_id.as_str(), p.sequence_number.as_str()))
                .collect();
            let mut oldest: Option<DateTime<Utc>> = None;
            for shard in self.shards().await? {
                let after = positions.get(shard.as_str()).copied();
                if let Some(arrival) = self.first_unconsumed(&shard, after).await? {
                    oldest = Some(oldest.map_or(arrival, |o| o.min(arrival)));
                }
            }
            Ok(oldest)
        })
    }
}
