//! `stele replay`: put what was set aside back through the batch-writer's own
//! decode and insert path once the cause is fixed: the dead letters of the
//! SQS queue (they carry the original bytes) and the batches the event source
//! mapping gave up on (its on-failure records name a shard and a sequence
//! range, read again from the stream while it still holds them).
//!
//! Idempotent like the batch-writer: an event already stored counts as such
//! and is never written twice. A message or object is deleted only once every
//! record in it is committed, already stored or (records read from the
//! stream) moved to the dead-letter queue as poison; anything still failing
//! stays where it was and is counted by reason.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use stele::local::aws;
use stele_batch_writer::kinesis;
use stele_batch_writer::replay::{
    compare_sequence, parse_message, preview, DeadLetterMessage, FailedBatch, Preview, RecordOutcome, ReplayLetters,
    ReplayMessage, CONFLICT,
};
use stele_batch_writer::{BatchWriter, SqsDeadLetters};
use stele_store::{PgEventStore, StoreConfig};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The batch-writer's dead-letter queue (URL): its dead letters are
    /// replayed, and poison records met again are moved there.
    #[arg(long, env = "STELE_DLQ_URL")]
    queue_url: Option<String>,
    /// The event source mapping's failed-batches bucket (`terraform output
    /// failed_batches_bucket`): each on-failure record in it is replayed by
    /// reading its shard and sequence range from the stream again.
    #[arg(long, env = "STELE_FAILED_BATCHES_BUCKET")]
    failed_batches_bucket: Option<String>,
    /// Only objects under this key prefix of the failed-batches bucket.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The stream (name or ARN) to read records from; by default the one the
    /// dead letter or on-failure record names.
    #[arg(long, env = "STELE_STREAM_NAME")]
    stream: Option<String>,
    /// PostgreSQL holding `audit_events`. Without it the database comes from the
    /// environment as the Lambda reads it (`STELE_DB_SECRET_ARN`, `STELE_DB_TLS`, …).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// AWS endpoint (LocalStack's, for `stele dev`); absent means AWS from the environment.
    #[arg(long, env = "STELE_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// Say what would be replayed; write, delete and move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop after this many queue messages and bucket objects.
    #[arg(long)]
    max: Option<u64>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a received message stays hidden from other consumers while this
/// run works on it; still-failing ones are made visible again at the end.
const VISIBILITY_SECS: i32 = 600;
/// GetRecords pages read for one range before giving up on finding its end.
const MAX_PAGES: usize = 1_000;

/// Reasons besides the poison codes.
const NOT_IN_STREAM: &str = "not_in_stream";
const UNRECOGNISED: &str = "unrecognised";

/// What a run did (or, dry, would do), in records.
#[derive(Debug, Default)]
pub struct Summary {
    pub dry_run: bool,
    pub replayed: u64,
    /// Of `replayed`, rows of archived days (to `late_events`).
    pub late: u64,
    pub already_stored: u64,
    /// Poison read back from the stream, moved to the dead-letter queue.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Still failing, by reason; left where they were.
    pub failing: BTreeMap<String, u64>,
    pub messages: u64,
    pub objects: u64,
    pub messages_deleted: u64,
    pub objects_deleted: u64,
}

impl Summary {
    pub fn still_failing(&self) -> u64 {
        self.failing.values().sum()
    }

    fn fail(&mut self, reason: &str, n: u64) {
        *self.failing.entry(reason.to_string()).or_default() += n;
    }

    fn line(&self) -> String {
        let by_reason =
            |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        let mut out = format!(
            "{} {}{}, already stored {}",
            if self.dry_run { "would replay" } else { "replayed" },
            self.replayed,
            if self.late > 0 {
                format!(" ({} late)", self.late)
            } else {
                String::new()
            },
            self.already_stored,
        );
        let moved: u64 = self.dead_lettered.values().sum();
        if moved > 0 {
            let _ = write!(
                out,
                ", {} to the dead-letter queue {moved} ({})",
                if self.dry_run { "would move" } else { "moved" },
                by_reason(&self.dead_lettered)
            );
        }
        let _ = write!(out, ", still failing {}", self.still_failing());
        if !self.failing.is_empty() {
            let _ = write!(out, " ({})", by_reason(&self.failing));
        }
        if self.dry_run {
            let _ = write!(
                out,
                "; {} messages and {} objects read, nothing changed",
                self.messages, self.objects
            );
        } else {
            let _ = write!(
                out,
                "; {} of {} messages and {} of {} objects deleted",
                self.messages_deleted, self.messages, self.objects_deleted, self.objects
            );
        }
        out
    }
}

/// An AWS error in one line: its code and message (the full context is a page).
fn aws_error<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
    }
}

type Writer = BatchWriter<PgEventStore, ReplayLetters<SqsDeadLetters>>;

struct Replayer {
    writer: Writer,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    stream: Option<String>,
    dry_run: bool,
    max: Option<u64>,
    summary: Summary,
    last_progress: Instant,
}

pub async fn run(args: ReplayArgs) -> Result<Summary, BoxError> {
    if args.queue_url.is_none() && args.failed_batches_bucket.is_none() {
        return Err("nothing to replay: give --queue-url (STELE_DLQ_URL) and/or --failed-batches-bucket".into());
    }
    let sdk = match &args.aws_endpoint {
        Some(endpoint) => aws::sdk_config(endpoint).await,
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let db = match &args.database_url {
        Some(url) => StoreConfig::new(url.clone()),
        None => StoreConfig::from_env(&aws_sdk_secretsmanager::Client::new(&sdk)).await?,
    };
    let store = PgEventStore::new(stele_store::pool(&db)?);
    // Fail now, not record by record, when the database is unreachable.
    drop(
        store
            .pool()
            .get()
            .await
            .map_err(|e| format!("connecting to PostgreSQL: {e}"))?,
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let forward = args
        .queue_url
        .as_ref()
        .map(|queue| SqsDeadLetters::new(sqs.clone(), queue));
    let mut replayer = Replayer {
        writer: BatchWriter::new(store, ReplayLetters::new(forward)),
        sqs,
        s3: aws::s3_client(&sdk),
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        stream: args.stream.clone(),
        dry_run: args.dry_run,
        max: args.max,
        summary: Summary {
            dry_run: args.dry_run,
            ..Summary::default()
        },
        last_progress: Instant::now(),
    };
    if let Some(queue) = &args.queue_url {
        replayer.drain_queue(queue).await?;
    }
    if let Some(bucket) = &args.failed_batches_bucket {
        replayer.drain_bucket(bucket, &args.prefix).await?;
    }
    replayer.progress(true);
    let summary = replayer.summary;
    println!(
        "stele replay{}: {}",
        if summary.dry_run { " --dry-run" } else { "" },
        summary.line()
    );
    Ok(summary)
}

impl Replayer {
    fn remaining(&self) -> Option<u64> {
        self.max
            .map(|max| max.saturating_sub(self.summary.messages + self.summary.objects))
    }

    /// The progress line on stderr, at most every second (and once at the end).
    fn progress(&mut self, last: bool) {
        if !last && self.last_progress.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_progress = Instant::now();
        let s = &self.summary;
        eprintln!(
            "progress: messages {} | objects {} | {} {} | already stored {} | to the dead-letter queue {} | still failing {}",
            s.messages,
            s.objects,
            if s.dry_run { "would replay" } else { "replayed" },
            s.replayed,
            s.already_stored,
            s.dead_lettered.values().sum::<u64>(),
            s.still_failing(),
        );
    }

    /// Replay one batch of records (or preview it): an outcome per record,
    /// counted into the summary.
    async fn records(&mut self, records: Vec<KinesisEventRecord>, forward_poison: bool) -> Vec<RecordOutcome> {
        if records.is_empty() {
            return Vec::new();
        }
        if self.dry_run {
            return match preview(self.writer.store(), &records).await {
                Ok(previews) => previews
                    .into_iter()
                    .map(|p| {
                        let outcome = match p {
                            Preview::WouldStore => {
                                self.summary.replayed += 1;
                                RecordOutcome::Stored
                            }
                            Preview::AlreadyStored => {
                                self.summary.already_stored += 1;
                                RecordOutcome::Stored
                            }
                            Preview::Poison(code) if forward_poison => RecordOutcome::DeadLettered(code),
                            Preview::Poison(code) => RecordOutcome::Failing(code),
                            Preview::Conflict => RecordOutcome::Failing(CONFLICT),
                        };
                        self.count(outcome);
                        outcome
                    })
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "could not look the records up");
                    let n = records.len() as u64;
                    self.summary.fail("database", n);
                    vec![RecordOutcome::Failing("database"); records.len()]
                }
            };
        }
        let replayed = self.writer.replay(records, forward_poison).await;
        self.summary.replayed += replayed.report.inserted;
        self.summary.late += replayed.report.late;
        self.summary.already_stored += replayed.report.duplicates;
        for outcome in &replayed.outcomes {
            self.count(*outcome);
        }
        replayed.outcomes
    }

    fn count(&mut self, outcome: RecordOutcome) {
        match outcome {
            RecordOutcome::Stored => {}
            RecordOutcome::DeadLettered(code) => *self.summary.dead_lettered.entry(code.to_string()).or_default() += 1,
            RecordOutcome::Failing(reason) => self.summary.fail(reason, 1),
        }
    }

    /// Every message of the dead-letter queue, ten at a time.
    async fn drain_queue(&mut self, queue: &str) -> Result<(), BoxError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut kept: Vec<String> = Vec::new();
        let result = self.drain_queue_into(queue, &mut seen, &mut kept).await;
        // What is still failing (or was only looked at) is visible again for
        // the next run, whatever happened to this one.
        for chunk in kept.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not make kept messages visible again; they reappear after their visibility timeout");
            }
        }
        result
    }

    async fn drain_queue_into(
        &mut self,
        queue: &str,
        seen: &mut HashSet<String>,
        kept: &mut Vec<String>,
    ) -> Result<(), BoxError> {
        loop {
            let want = self.remaining().map_or(10, |r| r.min(10)) as i32;
            if want == 0 {
                return Ok(());
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(want)
                .wait_time_seconds(1)
                .visibility_timeout(VISIBILITY_SECS)
                .send()
                .await
                .map_err(|e| format!("receiving from {queue}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            let mut fresh = Vec::new();
            for message in out.messages() {
                let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                    continue;
                };
                if seen.insert(id.to_string()) {
                    fresh.push((handle.to_string(), message.body().unwrap_or_default().to_string()));
                } else {
                    kept.push(handle.to_string());
                }
            }
            if fresh.is_empty() {
                return Ok(());
            }
            self.summary.messages += fresh.len() as u64;
            let done = self.messages(&fresh).await;
            let mut delete = Vec::new();
            for ((handle, _), done) in fresh.into_iter().zip(done) {
                if done && !self.dry_run {
                    delete.push(handle);
                } else {
                    kept.push(handle);
                }
            }
            self.delete_messages(queue, &delete).await?;
            self.progress(false);
        }
    }

    /// Replay the messages; true for each one whose records are all done.
    async fn messages(&mut self, messages: &[(String, String)]) -> Vec<bool> {
        let mut done = vec![false; messages.len()];
        // Dead letters are replayed together, in one batch, as the writer got them.
        let mut letters: Vec<(usize, KinesisEventRecord)> = Vec::new();
        for (i, (_, body)) in messages.iter().enumerate() {
            match parse_message(body) {
                ReplayMessage::DeadLetter(letter) => {
                    if let Some(record) = self.letter_record(&letter).await {
                        letters.push((i, record));
                    }
                }
                ReplayMessage::FailedBatch(batch) => done[i] = self.failed_batch(&batch).await,
                ReplayMessage::Unrecognised(why) => {
                    tracing::warn!(why = %why, "a message that is neither a dead letter nor an on-failure record: left in the queue");
                    self.summary.fail(UNRECOGNISED, 1);
                }
            }
        }
        let (positions, records): (Vec<usize>, Vec<KinesisEventRecord>) = letters.into_iter().unzip();
        let outcomes = self.records(records, false).await;
        for (i, outcome) in positions.into_iter().zip(outcomes) {
            done[i] = outcome == RecordOutcome::Stored;
        }
        done
    }

    /// The record a dead letter was written for: from the message, or read
    /// back from the stream when the message holds only part of it. `None`
    /// (counted) when it cannot be had or must not be replayed.
    async fn letter_record(&mut self, letter: &DeadLetterMessage) -> Option<KinesisEventRecord> {
        let data = match letter.complete_data() {
            Some(data) => data,
            None => {
                let shard = letter.shard_id.as_deref().unwrap_or_default();
                let seq = &letter.sequence_number;
                match self
                    .read_range(letter.event_source_arn.as_deref(), shard, seq, seq)
                    .await
                {
                    Ok(mut records) if records.len() == 1 && letter.describes(&records[0].kinesis.data.0) => {
                        std::mem::take(&mut records[0].kinesis.data.0)
                    }
                    _ => {
                        self.summary.fail(NOT_IN_STREAM, 1);
                        return None;
                    }
                }
            }
        };
        let record = letter.record(data);
        if letter.reason_code == CONFLICT {
            // Another event holds the id: replayable only if the stored row
            // now is this very event.
            match preview(self.writer.store(), std::slice::from_ref(&record)).await {
                Ok(p) if p.first() == Some(&Preview::Conflict) => {
                    self.summary.fail(CONFLICT, 1);
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not look a conflicting event up");
                    self.summary.fail("database", 1);
                    return None;
                }
            }
        }
        Some(record)
    }

    /// Replay one on-failure record: its range from the stream (or, when the
    /// stream no longer has it, from the payload an S3 destination keeps).
    async fn failed_batch(&mut self, batch: &FailedBatch) -> bool {
        let info = &batch.info;
        let records = match self
            .read_range(
                info.stream_arn.as_deref(),
                &info.shard_id,
                &info.start_sequence_number,
                &info.end_sequence_number,
            )
            .await
        {
            Ok(records) => records,
            Err(why) => match batch.payload_records() {
                Some(records) => {
                    tracing::info!(shard = %info.shard_id, why, "range not in the stream; replaying the records the on-failure record carries");
                    records
                }
                None => {
                    tracing::warn!(shard = %info.shard_id, start = %info.start_sequence_number, end = %info.end_sequence_number, why, "the stream no longer holds this batch");
                    self.summary.fail(NOT_IN_STREAM, batch.size());
                    return false;
                }
            },
        };
        let outcomes = self.records(records, true).await;
        outcomes.iter().all(|o| !matches!(o, RecordOutcome::Failing(_)))
    }

    /// Records `start..=end` of a shard, if the stream still holds all of them.
    async fn read_range(
        &self,
        stream_arn: Option<&str>,
        shard: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<KinesisEventRecord>, &'static str> {
        let stream = self
            .stream
            .as_deref()
            .or(stream_arn)
            .ok_or("no stream named (give --stream)")?;
        let name = stream.rsplit_once(":stream/").map_or(stream, |(_, name)| name);
        let arn = stream_arn.or_else(|| stream.contains(":stream/").then_some(stream));
        let mut iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(start)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %aws_error(&e), shard, start, "no shard iterator");
                "no shard iterator at the start of the range"
            })?
            .shard_iterator()
            .map(str::to_owned);
        let mut out: Vec<KinesisEventRecord> = Vec::new();
        let mut pages = 0;
        'read: while let Some(it) = iterator.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let page = self
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| {
                    tracing::warn!(error = %aws_error(&e), shard, "GetRecords failed");
                    "GetRecords failed"
                })?;
            for r in page.records() {
                let seq = r.sequence_number();
                if compare_sequence(seq, end) == std::cmp::Ordering::Greater {
                    break 'read;
                }
                let arrived = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                    .unwrap_or_default();
                let data = r.data().as_ref().to_vec();
                let pk = r.partition_key().unwrap_or_default();
                out.push(match arn {
                    Some(arn) => kinesis::stream_record(arn, shard, seq, pk, data, arrived),
                    None => kinesis::event_record(shard, seq, pk, data, arrived),
                });
                if seq == end {
                    break 'read;
                }
            }
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
        let first = out.first().map(|r| r.kinesis.sequence_number.as_str());
        let last = out.last().map(|r| r.kinesis.sequence_number.as_str());
        // Trimmed records make the iterator start later: the range must be whole.
        if first != Some(start) || last != Some(end) {
            return Err("the stream no longer holds the whole range");
        }
        Ok(out)
    }

    async fn delete_messages(&mut self, queue: &str, handles: &[String]) -> Result<(), BoxError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "deleting replayed messages: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            // A message not deleted comes back: replaying it again is harmless.
            for failed in out.failed() {
                tracing::warn!(
                    code = failed.code(),
                    message = failed.message().unwrap_or_default(),
                    "a replayed message was not deleted"
                );
            }
            self.summary.messages_deleted += out.successful().len() as u64;
        }
        Ok(())
    }

    /// Every on-failure record in the failed-batches bucket under `prefix`.
    async fn drain_bucket(&mut self, bucket: &str, prefix: &str) -> Result<(), BoxError> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "listing s3://{bucket}/{prefix}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
            for object in page.contents() {
                if self.remaining() == Some(0) {
                    return Ok(());
                }
                let Some(key) = object.key() else { continue };
                self.summary.objects += 1;
                if self.object(bucket, key).await? && !self.dry_run {
                    self.s3
                        .delete_object()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| {
                            format!(
                                "deleting replayed s3://{bucket}/{key}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(e)
                            )
                        })?;
                    self.summary.objects_deleted += 1;
                }
                self.progress(false);
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(()),
            }
        }
    }

    /// Replay one object; true when all its records are done.
    async fn object(&mut self, bucket: &str, key: &str) -> Result<bool, BoxError> {
        let body = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?
            .body
            .collect()
            .await
            .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?
            .into_bytes();
        let body = String::from_utf8_lossy(&body);
        Ok(match parse_message(&body) {
            ReplayMessage::FailedBatch(batch) => self.failed_batch(&batch).await,
            ReplayMessage::DeadLetter(letter) => match self.letter_record(&letter).await {
                Some(record) => self.records(vec![record], false).await == [RecordOutcome::Stored],
                None => false,
            },
            ReplayMessage::Unrecognised(why) => {
                tracing::warn!(key, why = %why, "an object that is not an on-failure record: left in the bucket");
                self.summary.fail(UNRECOGNISED, 1);
                false
            }
        })
    }
}
