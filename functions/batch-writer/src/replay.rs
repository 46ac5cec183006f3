//! Replay: records set aside by the batch-writer (dead letters) or given up on
//! by the event source mapping (on-failure records) go through the very same
//! decode and insert path again, once their cause is fixed. `stele replay`
//! drives it; this module knows the message formats and what became of each
//! record, nothing of SQS, S3 or Kinesis clients.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Mutex;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use stele_store::{EventStore, PgEventStore};

use crate::decode::{open_record, shard_of};
use crate::dlq::{DeadLetter, DeadLetterSink, SendFailure};
use crate::error::Error;
use crate::kinesis;
use crate::metrics::BatchReport;
use crate::writer::BatchWriter;

/// The `kind` of the batch-writer's dead-letter messages.
pub const DEAD_LETTER_KIND: &str = "stele.batch_writer.poison_record";

/// A dead-letter message as [`DeadLetter::to_message`] writes it (version 1),
/// read leniently: fields added later are ignored, optional ones may be absent.
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterMessage {
    #[serde(default)]
    pub version: u8,
    #[serde(default)]
    pub reason_code: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub shard_id: Option<String>,
    pub sequence_number: String,
    #[serde(default)]
    pub partition_key: String,
    #[serde(default)]
    pub event_source_arn: Option<String>,
    #[serde(default)]
    pub approximate_arrival: Option<DateTime<Utc>>,
    #[serde(default)]
    pub data_len: Option<usize>,
    #[serde(default)]
    pub data_sha256: Option<String>,
    #[serde(default)]
    pub data_truncated: bool,
    #[serde(default)]
    pub data_base64: String,
    /// `conflict` letters: the record's hash and the stored row's.
    #[serde(default)]
    pub event_hash: Option<String>,
    #[serde(default)]
    pub stored_event_hash: Option<String>,
}

impl DeadLetterMessage {
    /// The original bytes, when the message holds all of them (not cut at
    /// [`crate::dlq::MAX_DATA_BYTES`], and matching `data_sha256`).
    pub fn complete_data(&self) -> Option<Vec<u8>> {
        if self.data_truncated {
            return None;
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data_base64.as_bytes())
            .ok()?;
        self.describes(&data).then_some(data)
    }

    /// Whether `data` (e.g. read back from the stream) is the record this
    /// letter was written for: same length and SHA-256 where the letter says.
    pub fn describes(&self, data: &[u8]) -> bool {
        self.data_len.is_none_or(|n| n == data.len())
            && self
                .data_sha256
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(&hex::encode(Sha256::digest(data))))
    }

    /// The record as the event source mapping delivered it.
    pub fn record(&self, data: Vec<u8>) -> KinesisEventRecord {
        let shard = self.shard_id.as_deref().unwrap_or("");
        let arrived = self.approximate_arrival.unwrap_or_default();
        match &self.event_source_arn {
            Some(arn) => kinesis::stream_record(arn, shard, &self.sequence_number, &self.partition_key, data, arrived),
            None => kinesis::event_record(shard, &self.sequence_number, &self.partition_key, data, arrived),
        }
    }
}

/// Where a discarded batch was on the stream, as the event source mapping
/// reports it to its on-failure destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub stream_arn: Option<String>,
}

/// An on-failure record (SQS/SNS: the position only; S3: the invocation
/// payload too).
#[derive(Debug, Clone, Deserialize)]
pub struct FailedBatch {
    #[serde(rename = "KinesisBatchInfo")]
    pub info: KinesisBatchInfo,
    /// The invocation's event, as a JSON string or object, when the
    /// destination keeps it (S3).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

impl FailedBatch {
    /// The records of the payload within the batch's range, if it has any.
    pub fn payload_records(&self) -> Option<Vec<KinesisEventRecord>> {
        let event: KinesisEvent = match self.payload.as_ref()? {
            serde_json::Value::String(s) => serde_json::from_str(s).ok()?,
            other => serde_json::from_value(other.clone()).ok()?,
        };
        let records: Vec<KinesisEventRecord> = event
            .records
            .into_iter()
            .filter(|r| {
                let seq = r.kinesis.sequence_number.as_str();
                compare_sequence(seq, &self.info.start_sequence_number) != Ordering::Less
                    && compare_sequence(seq, &self.info.end_sequence_number) != Ordering::Greater
            })
            .collect();
        (!records.is_empty()).then_some(records)
    }

    /// Records the batch held (its `batchSize`, at least one).
    pub fn size(&self) -> u64 {
        self.info.batch_size.unwrap_or(1).max(1)
    }
}

/// What a queue message or an S3 object holds.
#[derive(Debug, Clone)]
pub enum ReplayMessage {
    DeadLetter(Box<DeadLetterMessage>),
    FailedBatch(Box<FailedBatch>),
    /// Neither: left where it is and reported.
    Unrecognised(String),
}

/// Tell a dead letter from an on-failure record.
pub fn parse_message(body: &str) -> ReplayMessage {
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return ReplayMessage::Unrecognised(format!("not JSON: {e}")),
    };
    if value.get("KinesisBatchInfo").is_some_and(|v| v.is_object()) {
        return match serde_json::from_value(value) {
            Ok(batch) => ReplayMessage::FailedBatch(Box::new(batch)),
            Err(e) => ReplayMessage::Unrecognised(format!("KinesisBatchInfo: {e}")),
        };
    }
    if value.get("kind").and_then(|k| k.as_str()) == Some(DEAD_LETTER_KIND) {
        return match serde_json::from_value(value) {
            Ok(letter) => ReplayMessage::DeadLetter(Box::new(letter)),
            Err(e) => ReplayMessage::Unrecognised(format!("dead letter: {e}")),
        };
    }
    ReplayMessage::Unrecognised("neither a dead letter nor an on-failure record".into())
}

/// Kinesis sequence numbers are decimal strings of up to 128 bits: compare
/// them as numbers.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The dead-letter sink of a replaying writer: it notes every poison record,
/// and moves it on to the real queue only when told to (records read back
/// from the stream); a dead letter that is still poison stays the message it
/// already is.
pub struct ReplayLetters<D> {
    noted: Mutex<Vec<DeadLetter>>,
    forwarding: AtomicBool,
    forward: Option<D>,
}

impl<D> ReplayLetters<D> {
    pub fn new(forward: Option<D>) -> Self {
        Self {
            noted: Mutex::new(Vec::new()),
            forwarding: AtomicBool::new(false),
            forward,
        }
    }

    fn begin(&self, forwarding: bool) {
        self.forwarding.store(forwarding, AtomicOrdering::Relaxed);
        if let Ok(mut noted) = self.noted.lock() {
            noted.clear();
        }
    }

    fn take(&self) -> Vec<DeadLetter> {
        self.noted
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }
}

impl<D: DeadLetterSink> DeadLetterSink for ReplayLetters<D> {
    async fn send_in_order(&self, letters: &[DeadLetter]) -> Result<(), SendFailure> {
        if let Ok(mut noted) = self.noted.lock() {
            noted.extend_from_slice(letters);
        }
        if letters.is_empty() || !self.forwarding.load(AtomicOrdering::Relaxed) {
            return Ok(());
        }
        match &self.forward {
            Some(queue) => queue.send_in_order(letters).await,
            None => Err(SendFailure {
                delivered: 0,
                error: Error::DeadLetter("no dead-letter queue to move poison records to".into()),
            }),
        }
    }
}

/// What became of one replayed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Committed now or already stored ([`Replayed::report`] says how many of each).
    Stored,
    /// Poison, moved to the dead-letter queue (records read from the stream).
    DeadLettered(&'static str),
    /// Still failing, for this reason: stays where it came from.
    Failing(&'static str),
}

/// Reason of a record that was not acknowledged (database or queue down).
pub const UNWRITTEN: &str = "unwritten";
/// Reason of a record whose id is stored with other content.
pub const CONFLICT: &str = "conflict";

/// One replayed batch: an outcome per record, in order, and the writer's figures.
#[derive(Debug, Default)]
pub struct Replayed {
    pub outcomes: Vec<RecordOutcome>,
    pub report: BatchReport,
}

/// What a replay would do with a record (`--dry-run`): decided by the same
/// decoding and by reading, never writing, the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preview {
    WouldStore,
    AlreadyStored,
    Poison(&'static str),
    /// The id is stored with another hash.
    Conflict,
}

impl<S: EventStore, D: DeadLetterSink> BatchWriter<S, ReplayLetters<D>> {
    /// Write `records` exactly as [`BatchWriter::process`] does (late days,
    /// idempotency, poison), and say what became of each. Poison goes on to
    /// the dead-letter queue only when `forward_poison`.
    pub async fn replay(&self, records: Vec<KinesisEventRecord>, forward_poison: bool) -> Replayed {
        let keys: Vec<(Option<String>, String)> = records
            .iter()
            .map(|r| {
                (
                    shard_of(r.event_id.as_deref()).map(str::to_string),
                    r.kinesis.sequence_number.clone(),
                )
            })
            .collect();
        self.dead_letters().begin(forward_poison);
        let (response, report) = self.process(kinesis::event(records)).await;
        let letters = self.dead_letters().take();
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .collect();
        // The writer reports everything from the first record it could not acknowledge.
        let first_unacked = keys
            .iter()
            .position(|(_, seq)| failed.contains(seq.as_str()))
            .unwrap_or(keys.len());
        let outcomes = keys
            .iter()
            .enumerate()
            .map(|(i, (shard, seq))| {
                let letter = letters
                    .iter()
                    .find(|l| l.shard_id == *shard && l.sequence_number == *seq);
                match (letter, i < first_unacked) {
                    (Some(l), true) if forward_poison => RecordOutcome::DeadLettered(l.code.as_str()),
                    (Some(l), _) => RecordOutcome::Failing(l.code.as_str()),
                    (None, true) => RecordOutcome::Stored,
                    (None, false) => RecordOutcome::Failing(UNWRITTEN),
                }
            })
            .collect();
        Replayed { outcomes, report }
    }
}

/// A decoded record's idempotency key and hash.
type Key = (String, uuid::Uuid, [u8; 32]);

/// What replaying `records` would do, without writing anything: decode each
/// as the writer does, and look the good ones up by id.
pub async fn preview(store: &PgEventStore, records: &[KinesisEventRecord]) -> stele_store::Result<Vec<Preview>> {
    let opened: Vec<Result<Key, &'static str>> = records
        .iter()
        .map(|r| {
            open_record(&r.kinesis.data.0)
                .map(|(event, hash)| (event.tenant_id, event.event_id, hash.0))
                .map_err(|p| p.code.as_str())
        })
        .collect();
    let keys: Vec<(String, uuid::Uuid)> = opened
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(t, id, _)| (t.clone(), *id)))
        .collect();
    let stored: HashMap<(String, uuid::Uuid), [u8; 32]> = if keys.is_empty() {
        HashMap::new()
    } else {
        let client = store
            .pool()
            .get()
            .await
            .map_err(|e| stele_store::Error::Pool(e.to_string()))?;
        stele_store::lookup::stored_hashes(&client, &keys).await?
    };
    Ok(opened
        .into_iter()
        .map(|o| match o {
            Err(code) => Preview::Poison(code),
            Ok((tenant, id, hash)) => match stored.get(&(tenant, id)) {
                None => Preview::WouldStore,
                Some(stored) if *stored == hash => Preview::AlreadyStored,
                Some(_) => Preview::Conflict,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::PoisonCode;

    fn letter(data: Vec<u8>) -> DeadLetter {
        DeadLetter {
            shard_id: Some("shardId-000000000002".into()),
            sequence_number: "49590000000000000000000000000000000000000000000000000042".into(),
            partition_key: "acme".into(),
            event_source_arn: Some("arn:aws:kinesis:eu-west-1:000000000000:stream/s".into()),
            approximate_arrival: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            code: PoisonCode::Schema,
            reason: "bad".into(),
            conflict: None,
            data,
        }
    }

    #[test]
    fn a_dead_letter_message_gives_back_the_record_the_writer_saw() {
        let original = letter(b"{\"x\":1}".to_vec());
        let ReplayMessage::DeadLetter(parsed) = parse_message(&original.to_message()) else {
            panic!("a dead letter");
        };
        assert_eq!(parsed.reason_code, "schema");
        let data = parsed.complete_data().expect("whole data");
        assert_eq!(data, original.data);
        let record = parsed.record(data);
        assert_eq!(
            record.event_id.as_deref(),
            Some("shardId-000000000002:49590000000000000000000000000000000000000000000000000042")
        );
        assert_eq!(record.kinesis.partition_key, "acme");
        assert_eq!(record.event_source_arn, original.event_source_arn);
        assert_eq!(
            record.kinesis.approximate_arrival_timestamp.0,
            original.approximate_arrival
        );
    }

    #[test]
    fn a_cut_or_altered_message_has_no_complete_data() {
        let big = letter(vec![b'a'; crate::dlq::MAX_DATA_BYTES + 1]);
        let ReplayMessage::DeadLetter(parsed) = parse_message(&big.to_message()) else {
            panic!("a dead letter");
        };
        assert!(parsed.complete_data().is_none());
        assert!(
            parsed.describes(&big.data),
            "the stream's copy is recognised by length and digest"
        );
        let mut altered: serde_json::Value = serde_json::from_str(&letter(b"abc".to_vec()).to_message()).unwrap();
        altered["data_base64"] = "YWJk".into(); // "abd"
        let ReplayMessage::DeadLetter(parsed) = parse_message(&altered.to_string()) else {
            panic!("a dead letter");
        };
        assert!(parsed.complete_data().is_none());
    }

    #[test]
    fn unknown_fields_and_a_conflict_letter_are_read() {
        let mut v: serde_json::Value = serde_json::from_str(&letter(b"{}".to_vec()).to_message()).unwrap();
        v["reason_code"] = "conflict".into();
        v["event_hash"] = "aa".into();
        v["stored_event_hash"] = "bb".into();
        v["something_new"] = serde_json::json!({"x": 1});
        let ReplayMessage::DeadLetter(parsed) = parse_message(&v.to_string()) else {
            panic!("a dead letter");
        };
        assert_eq!(parsed.reason_code, "conflict");
        assert_eq!(parsed.stored_event_hash.as_deref(), Some("bb"));
    }

    #[test]
    fn an_on_failure_record_names_the_shard_and_range_and_may_carry_the_records() {
        let record = kinesis::event_record("shardId-000000000001", "20", "acme", b"{}".to_vec(), Utc::now());
        let outside = kinesis::event_record("shardId-000000000001", "9", "acme", b"{}".to_vec(), Utc::now());
        let payload = serde_json::to_string(&kinesis::event(vec![outside, record])).unwrap();
        let body = serde_json::json!({
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
            "version": "1.0",
            "KinesisBatchInfo": {"shardId": "shardId-000000000001", "startSequenceNumber": "10",
                                  "endSequenceNumber": "20", "batchSize": 2,
                                  "streamArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s"},
            "payload": payload,
        });
        let ReplayMessage::FailedBatch(batch) = parse_message(&body.to_string()) else {
            panic!("an on-failure record");
        };
        assert_eq!(batch.info.shard_id, "shardId-000000000001");
        assert_eq!(batch.size(), 2);
        let records = batch.payload_records().expect("records in the payload");
        assert_eq!(records.len(), 1, "only the batch's range");
        assert_eq!(records[0].kinesis.sequence_number, "20");
    }

    #[test]
    fn other_messages_are_unrecognised() {
        assert!(matches!(parse_message("nope"), ReplayMessage::Unrecognised(_)));
        assert!(matches!(
            parse_message("{\"kind\":\"archiver\"}"),
            ReplayMessage::Unrecognised(_)
        ));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence("010", "10"), Ordering::Equal);
        assert_eq!(
            compare_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692540925702759324208523137515618"
            ),
            Ordering::Less
        );
    }
}
