//! Dead letters: poison records set aside with everything needed to replay or
//! investigate them (shard, sequence number, reason, the original bytes).

use std::future::Future;
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::decode::{ConflictHashes, PoisonCode};
use crate::error::Error;

/// Original bytes above this size are cut in the message (SQS takes 256 KiB
/// per message and per batch call); `data_sha256` and `data_len` still
/// describe the whole record, which Kinesis keeps for its retention period.
pub const MAX_DATA_BYTES: usize = 150 * 1024;

/// One poison record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub shard_id: Option<String>,
    pub sequence_number: String,
    pub partition_key: String,
    pub event_source_arn: Option<String>,
    pub approximate_arrival: DateTime<Utc>,
    pub code: PoisonCode,
    pub reason: String,
    /// For an id conflict: the record's hash and the stored row's.
    pub conflict: Option<ConflictHashes>,
    /// The record's data exactly as it came off the stream.
    pub data: Vec<u8>,
}

/// The JSON body of a dead-letter message (version 1).
#[derive(Debug, Serialize)]
struct Message<'a> {
    version: u8,
    kind: &'static str,
    reason_code: &'static str,
    reason: &'a str,
    shard_id: Option<&'a str>,
    sequence_number: &'a str,
    partition_key: &'a str,
    event_source_arn: Option<&'a str>,
    approximate_arrival: String,
    data_len: usize,
    data_sha256: String,
    data_truncated: bool,
    data_base64: String,
    /// Conflicts only: the record's `event_hash` and the stored row's.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_event_hash: Option<String>,
}

impl DeadLetter {
    /// The message body: JSON with the original bytes in base64.
    pub fn to_message(&self) -> String {
        let truncated = self.data.len() > MAX_DATA_BYTES;
        let kept = &self.data[..self.data.len().min(MAX_DATA_BYTES)];
        let message = Message {
            version: 1,
            kind: "stele.batch_writer.poison_record",
            reason_code: self.code.as_str(),
            reason: &self.reason,
            shard_id: self.shard_id.as_deref(),
            sequence_number: &self.sequence_number,
            partition_key: &self.partition_key,
            event_source_arn: self.event_source_arn.as_deref(),
            approximate_arrival: self.approximate_arrival.to_rfc3339_opts(SecondsFormat::Millis, true),
            data_len: self.data.len(),
            data_sha256: hex::encode(Sha256::digest(&self.data)),
            data_truncated: truncated,
            data_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            event_hash: self.conflict.map(|c| c.event_hash.to_hex()),
            stored_event_hash: self.conflict.map(|c| c.stored_event_hash.to_hex()),
        };
        // Plain strings and numbers: serialisation cannot fail.
        serde_json::to_string(&message).unwrap_or_default()
    }
}

/// Why sending stopped: how many letters (from the front) were delivered, and
/// the error that stopped the rest.
#[derive(Debug)]
pub struct SendFailure {
    pub delivered: usize,
    pub error: Error,
}

/// Where poison records go. Letters are delivered in order and sending stops
/// at the first failure, so "delivered" is always a prefix.
pub trait DeadLetterSink: Send + Sync {
    fn send_in_order(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), SendFailure>> + Send;
}

/// The SQS dead-letter queue (`STELE_DLQ_URL`), using SendMessageBatch.
#[derive(Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// SQS limits per SendMessageBatch call, with some room for attributes.
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 250 * 1024;

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Send one chunk; `Err(k)` means entries `k..` of the chunk were not all delivered.
    async fn send_chunk(&self, chunk: &[(String, PoisonCode)]) -> Result<(), (usize, Error)> {
        use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, (body, code)) in chunk.iter().enumerate() {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(code.as_str())
                .build()
                .map_err(|e| (0, Error::DeadLetter(e.to_string())))?;
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .message_attributes("reason_code", attribute)
                .build()
                .map_err(|e| (0, Error::DeadLetter(e.to_string())))?;
            entries.push(entry);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                (
                    0,
                    Error::DeadLetter(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
                )
            })?;
        let first_failed = output
            .failed()
            .iter()
            .map(|f| (f.id().parse::<usize>().unwrap_or(0), f))
            .min_by_key(|(i, _)| *i);
        match first_failed {
            None => Ok(()),
            Some((i, f)) => Err((
                i,
                Error::DeadLetter(format!(
                    "SQS refused a message: {} {}",
                    f.code(),
                    f.message().unwrap_or_default()
                )),
            )),
        }
    }
}

impl DeadLetterSink for SqsDeadLetters {
    async fn send_in_order(&self, letters: &[DeadLetter]) -> Result<(), SendFailure> {
        let bodies: Vec<(String, PoisonCode)> = letters.iter().map(|l| (l.to_message(), l.code)).collect();
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len() && end - start < MAX_BATCH_ENTRIES {
                let size = bodies[end].0.len() + 64;
                if end > start && bytes + size > MAX_BATCH_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            if let Err((k, error)) = self.send_chunk(&bodies[start..end]).await {
                return Err(SendFailure {
                    delivered: start + k,
                    error,
                });
            }
            start = end;
        }
        Ok(())
    }
}

/// In-memory dead letters for unit tests; can be told to fail after `n` letters.
#[derive(Default)]
pub struct MemoryDeadLetters {
    pub letters: Mutex<Vec<DeadLetter>>,
    pub fail_after: Mutex<Option<usize>>,
}

impl MemoryDeadLetters {
    pub fn taken(&self) -> Vec<DeadLetter> {
        self.letters.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    async fn send_in_order(&self, letters: &[DeadLetter]) -> Result<(), SendFailure> {
        let mut store = self.letters.lock().map_err(|_| SendFailure {
            delivered: 0,
            error: Error::DeadLetter("poisoned lock".into()),
        })?;
        let limit = self.fail_after.lock().ok().and_then(|f| *f);
        for (i, letter) in letters.iter().enumerate() {
            if limit.is_some_and(|n| store.len() >= n) {
                return Err(SendFailure {
                    delivered: i,
                    error: Error::DeadLetter("queue unavailable (test)".into()),
                });
            }
            store.push(letter.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(data: Vec<u8>) -> DeadLetter {
        DeadLetter {
            shard_id: Some("shardId-000000000001".into()),
            sequence_number: "4959".into(),
            partition_key: "t1".into(),
            event_source_arn: None,
            approximate_arrival: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            code: PoisonCode::HashMismatch,
            reason: "event_hash mismatch".into(),
            conflict: None,
            data,
        }
    }

    #[test]
    fn a_message_carries_shard_sequence_reason_and_the_original_bytes() {
        let msg: serde_json::Value = serde_json::from_str(&letter(b"{\"x\":1}".to_vec()).to_message()).unwrap();
        assert_eq!(msg["shard_id"], "shardId-000000000001");
        assert_eq!(msg["sequence_number"], "4959");
        assert_eq!(msg["reason_code"], "hash_mismatch");
        assert_eq!(msg["reason"], "event_hash mismatch");
        let data = base64::engine::general_purpose::STANDARD
            .decode(msg["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, b"{\"x\":1}");
        assert_eq!(msg["data_truncated"], false);
    }

    #[test]
    fn a_huge_record_is_cut_but_its_length_and_digest_describe_all_of_it() {
        let data = vec![b'a'; MAX_DATA_BYTES + 10];
        let msg: serde_json::Value = serde_json::from_str(&letter(data.clone()).to_message()).unwrap();
        assert_eq!(msg["data_truncated"], true);
        assert_eq!(msg["data_len"], MAX_DATA_BYTES + 10);
        assert_eq!(msg["data_sha256"], hex::encode(Sha256::digest(&data)));
        assert!(msg.to_string().len() < MAX_BATCH_BYTES);
    }
}
