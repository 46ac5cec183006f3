//! The batch-writer: decode a Kinesis batch, dead-letter the poison, write the
//! rest in one statement, and report what must be redelivered. Events of a
//! day that is archived (or being archived) are stored all the same, in
//! `late_events`, for the archiver to add to that day's archive.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{Days, NaiveDate, Utc};
use stele_store::partitions::{self, EnsureOutcome};
use stele_store::{EventStore, IdConflict, StoredEvent};

use crate::checkpoint;
use crate::decode::{open_record, shard_of, Poison, PoisonCode};
use crate::dlq::{DeadLetter, DeadLetterSink};
use crate::metrics::{emf_line, BatchReport};

/// Days at least this old are re-checked against the catalog on every batch
/// instead of being cached: they are the only ones the archiver may be closing.
const CACHE_DAYS_BACK: u64 = 2;

/// Default records per insert statement: a 10 000-record batch is five
/// statements (see docs/BENCHMARKS.md, "Batch-writer").
pub const DEFAULT_CHUNK_RECORDS: usize = 2_000;

/// The handler state, built once per process and shared by every invocation.
pub struct BatchWriter<S, D> {
    store: S,
    dead_letters: D,
    /// Days whose partition is known to exist (saves two catalog queries per batch).
    known_days: Mutex<HashSet<NaiveDate>>,
    /// Records per insert statement (and per transaction).
    chunk_records: usize,
}

/// The good records of a batch, with their positions in it and their bytes
/// (kept until written: an id conflict is dead-lettered with them).
struct Good {
    events: Vec<StoredEvent>,
    positions: Vec<usize>,
    data: Vec<Vec<u8>>,
}

impl<S: EventStore, D: DeadLetterSink> BatchWriter<S, D> {
    pub fn new(store: S, dead_letters: D) -> Self {
        Self {
            store,
            dead_letters,
            known_days: Mutex::new(HashSet::new()),
            chunk_records: DEFAULT_CHUNK_RECORDS,
        }
    }

    /// Records per insert statement; a batch is decoded and written in chunks
    /// of this size so that decoding overlaps the database.
    pub fn with_chunk_records(mut self, n: usize) -> Self {
        self.chunk_records = n.max(1);
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn dead_letters(&self) -> &D {
        &self.dead_letters
    }

    /// Create the partitions for today and the next `days_ahead` days (run on
    /// start; a batch creates any other day it needs on demand).
    pub async fn ensure_days_ahead(&self, today: NaiveDate, days_ahead: u32) -> stele_store::Result<EnsureOutcome> {
        let days: Vec<NaiveDate> = today.iter_days().take(days_ahead as usize + 1).collect();
        let outcome = self.store.ensure_days(&days).await?;
        self.remember(days.into_iter().filter(|d| !outcome.closed.contains(d)));
        Ok(outcome)
    }

    /// The Lambda handler: process the batch, log its metrics line, answer
    /// with the records to redeliver. Never fails as a whole: anything not
    /// committed (or dead-lettered) is reported as a batch item failure.
    pub async fn handle_batch(&self, event: KinesisEvent) -> KinesisEventResponse {
        let (response, report) = self.process(event).await;
        println!("{}", emf_line(&report, Utc::now()));
        tracing::info!(
            records = report.records,
            inserted = report.inserted,
            duplicates = report.duplicates,
            late = report.late,
            poison = report.poison,
            conflicts = report.conflicts,
            partitions_created = report.partitions_created,
            unacknowledged = report.unacknowledged,
            latency_ms = report.latency_ms,
            "batch done"
        );
        response
    }

    /// [`BatchWriter::handle_batch`] without the logging, returning the figures.
    pub async fn process(&self, event: KinesisEvent) -> (KinesisEventResponse, BatchReport) {
        let started = Instant::now();
        let mut records = event.records;
        let mut report = BatchReport {
            records: records.len() as u64,
            ..Default::default()
        };

        // Decoding (CPU) of the next chunk overlaps the insert (database) of
        // this one. Chunks commit in stream order, so "everything before the
        // first failed chunk is committed" still holds.
        let mut chunks = Vec::new();
        for (c, part) in records.chunks_mut(self.chunk_records).enumerate() {
            let start = c * self.chunk_records;
            let inputs: Vec<RecordInput> = part
                .iter_mut()
                .map(|r| RecordInput {
                    data: std::mem::take(&mut r.kinesis.data.0),
                    shard: shard_of(r.event_id.as_deref()).map(str::to_string),
                    sequence_number: r.kinesis.sequence_number.clone(),
                })
                .collect();
            chunks.push((start, inputs));
        }
        // Decode up to `ahead` chunks at once (one per CPU, at least two) while
        // the oldest one is written.
        let ahead = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let mut chunks = chunks.into_iter();
        let mut pending: std::collections::VecDeque<_> = chunks.by_ref().take(ahead).map(spawn_decode).collect();
        let mut poison: Vec<(usize, Poison, Vec<u8>)> = Vec::new();
        let mut db_failed_at = None;
        while let Some(decoding) = pending.pop_front() {
            let mut decoded = match decoding.await {
                Ok(decoded) => decoded,
                Err(e) => {
                    // A panic in decoding would be a bug; never acknowledge what was not written.
                    tracing::error!(error = %e, "decoding task failed");
                    db_failed_at = Some(0);
                    report.db_failed = true;
                    break;
                }
            };
            pending.extend(chunks.next().map(spawn_decode));
            let result = self.write(&decoded.good, &mut report).await;
            poison.append(&mut decoded.poison);
            if let Ok(conflicts) = &result {
                report.conflicts += conflicts.len() as u64;
                let good = &mut decoded.good;
                poison.extend(conflicts.iter().map(|c| {
                    let event = &good.events[c.position];
                    let why = Poison::conflict(&event.event, event.hash, c.stored_hash);
                    (
                        good.positions[c.position],
                        why,
                        std::mem::take(&mut good.data[c.position]),
                    )
                }));
            }
            if let Err(e) = result {
                report.db_failed = true;
                let first = decoded.good.positions.first().copied();
                tracing::error!(error = %e, first_unwritten = ?first, "batch not written; reporting it for redelivery");
                // Database first: poison after the first unwritten record comes
                // back with it, so it is not dead-lettered twice.
                db_failed_at = first;
                break;
            }
        }
        drop(pending);

        poison.sort_by_key(|(i, _, _)| *i);
        poison.retain(|(i, _, _)| db_failed_at.is_none_or(|f| *i < f));
        let letters: Vec<DeadLetter> = poison
            .iter_mut()
            .map(|(i, p, data)| dead_letter(&records[*i], p, std::mem::take(data)))
            .collect();
        let dlq_failed_at = match self.dead_letters.send_in_order(&letters).await {
            Ok(()) => None,
            Err(failure) => {
                report.dlq_failed = true;
                let position = poison.get(failure.delivered).map(|(i, _, _)| *i);
                tracing::error!(error = %failure.error, first_undelivered = ?position, "dead-letter queue send failed");
                position
            }
        };
        log_poison(&letters);
        report.poison = letters.len() as u64;

        let first_unacked = checkpoint::earliest([db_failed_at, dlq_failed_at]);
        report.unacknowledged = first_unacked.map_or(0, |f| (records.len() - f) as u64);
        report.latency_ms = started.elapsed().as_millis() as u64;
        let response = checkpoint::report_from(&records, first_unacked, |r| r.kinesis.sequence_number.as_str());
        (response, report)
    }

    /// Ensure partitions and insert the events: those of archived days go to
    /// `late_events` in the same transaction. A partition that vanished since
    /// it was cached is re-checked once. Returns the id conflicts (not stored).
    async fn write(&self, good: &Good, report: &mut BatchReport) -> stele_store::Result<Vec<IdConflict>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let late_days = self.ensure_partitions(good, report).await?;
            match self.store.insert_batch(&good.events, &late_days).await {
                Ok(outcome) => {
                    report.inserted += outcome.inserted;
                    report.duplicates += outcome.duplicates;
                    report.late += outcome.late;
                    return Ok(outcome.conflicts);
                }
                Err(e) if attempt == 1 && e.is_missing_partition() => {
                    tracing::warn!(error = %e, "a partition went away; re-checking partitions");
                    if let Ok(mut known) = self.known_days.lock() {
                        known.clear();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Create the partitions the events need; returns the days that are
    /// closed (archived or being archived), whose events go to `late_events`.
    async fn ensure_partitions(&self, good: &Good, report: &mut BatchReport) -> stele_store::Result<Vec<NaiveDate>> {
        let mut needed: Vec<NaiveDate> = {
            let known = self.known_days.lock().map(|k| k.clone()).unwrap_or_default();
            good.events
                .iter()
                .map(|e| partitions::day_of(e.event.occurred_at))
                .filter(|d| !known.contains(d))
                .collect()
        };
        needed.sort();
        needed.dedup();
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = self.store.ensure_days(&needed).await?;
        report.partitions_created += outcome.created.len() as u64;
        if !outcome.closed.is_empty() {
            tracing::info!(days = ?outcome.closed, "events of archived days go to late_events");
        }
        self.remember(needed.into_iter().filter(|d| !outcome.closed.contains(d)));
        Ok(outcome.closed)
    }

    fn remember(&self, days: impl Iterator<Item = NaiveDate>) {
        let oldest_cached = Utc::now().date_naive().checked_sub_days(Days::new(CACHE_DAYS_BACK));
        if let Ok(mut known) = self.known_days.lock() {
            known.extend(days.filter(|d| oldest_cached.is_some_and(|o| *d >= o)));
        }
    }
}

/// What decoding needs of a record (moved out of the event, so it can run on
/// the blocking pool).
struct RecordInput {
    data: Vec<u8>,
    shard: Option<String>,
    sequence_number: String,
}

/// One decoded chunk: good events, and poison with the original bytes.
struct Decoded {
    good: Good,
    poison: Vec<(usize, Poison, Vec<u8>)>,
}

fn spawn_decode((start, inputs): (usize, Vec<RecordInput>)) -> tokio::task::JoinHandle<Decoded> {
    tokio::task::spawn_blocking(move || decode_chunk(start, inputs))
}

fn decode_chunk(start: usize, inputs: Vec<RecordInput>) -> Decoded {
    let mut decoded = Decoded {
        good: Good {
            events: Vec::with_capacity(inputs.len()),
            positions: Vec::with_capacity(inputs.len()),
            data: Vec::with_capacity(inputs.len()),
        },
        poison: Vec::new(),
    };
    for (k, input) in inputs.into_iter().enumerate() {
        let position = start + k;
        match open_record(&input.data) {
            Ok((event, hash)) => {
                decoded.good.events.push(StoredEvent {
                    event,
                    hash,
                    kinesis_shard: input.shard,
                    kinesis_seq: Some(input.sequence_number),
                });
                decoded.good.positions.push(position);
                decoded.good.data.push(input.data);
            }
            Err(p) => decoded.poison.push((position, p, input.data)),
        }
    }
    decoded
}

/// How many records of one kind a warning names before it only counts.
const NAMED_PER_WARNING: usize = 5;

/// One warning per kind of poison in a batch (count, the first records, the
/// first reason), not one line per record: a bad producer can send thousands.
fn log_poison(letters: &[DeadLetter]) {
    let mut codes: Vec<PoisonCode> = letters.iter().map(|l| l.code).collect();
    codes.sort_by_key(|c| c.as_str());
    codes.dedup();
    for code in codes {
        let of_code: Vec<&DeadLetter> = letters.iter().filter(|l| l.code == code).collect();
        let first: Vec<String> = of_code
            .iter()
            .take(NAMED_PER_WARNING)
            .map(|l| format!("{}/{}", l.shard_id.as_deref().unwrap_or("-"), l.sequence_number))
            .collect();
        tracing::warn!(
            reason_code = code.as_str(),
            count = of_code.len(),
            first = %first.join(" "),
            first_reason = %of_code.first().map_or("", |l| l.reason.as_str()),
            "poison records dead-lettered"
        );
    }
}

fn dead_letter(record: &KinesisEventRecord, poison: &Poison, data: Vec<u8>) -> DeadLetter {
    DeadLetter {
        shard_id: shard_of(record.event_id.as_deref()).map(str::to_string),
        sequence_number: record.kinesis.sequence_number.clone(),
        partition_key: record.kinesis.partition_key.clone(),
        event_source_arn: record.event_source_arn.clone(),
        approximate_arrival: record.kinesis.approximate_arrival_timestamp.0,
        code: poison.code,
        reason: poison.reason.clone(),
        conflict: poison.conflict,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::MemoryDeadLetters;
    use crate::kinesis;
    use chrono::{DateTime, TimeZone};
    use serde_json::json;
    use stele_core::{validate_event, Context, SealedEvent, TimeWindow};
    use stele_store::InsertOutcome;

    /// In-memory store: rows keyed like the primary key; can fail on demand.
    #[derive(Default)]
    struct MemoryStore {
        rows: Mutex<Vec<StoredEvent>>,
        /// `late_events`.
        late: Mutex<Vec<StoredEvent>>,
        partitions: Mutex<HashSet<NaiveDate>>,
        closed: Mutex<HashSet<NaiveDate>>,
        down: Mutex<bool>,
        /// Insert calls that succeed before the store goes down.
        inserts_before_down: Mutex<Option<usize>>,
    }

    impl EventStore for MemoryStore {
        async fn ensure_days(&self, days: &[NaiveDate]) -> stele_store::Result<EnsureOutcome> {
            if *self.down.lock().unwrap() {
                return Err(stele_store::Error::Pool("down (test)".into()));
            }
            let closed = self.closed.lock().unwrap().clone();
            let mut parts = self.partitions.lock().unwrap();
            let mut outcome = EnsureOutcome::default();
            for d in days {
                if closed.contains(d) {
                    outcome.closed.push(*d);
                } else if parts.insert(*d) {
                    outcome.created.push(*d);
                }
            }
            Ok(outcome)
        }

        async fn insert_batch(
            &self,
            events: &[StoredEvent],
            late_days: &[NaiveDate],
        ) -> stele_store::Result<InsertOutcome> {
            if let Some(left) = self.inserts_before_down.lock().unwrap().as_mut() {
                if *left == 0 {
                    *self.down.lock().unwrap() = true;
                } else {
                    *left -= 1;
                }
            }
            if *self.down.lock().unwrap() {
                return Err(stele_store::Error::Pool("down (test)".into()));
            }
            let parts = self.partitions.lock().unwrap();
            let is_late = |e: &StoredEvent| late_days.contains(&partitions::day_of(e.event.occurred_at));
            assert!(events
                .iter()
                .all(|e| is_late(e) || parts.contains(&partitions::day_of(e.event.occurred_at))));
            let mut rows = self.rows.lock().unwrap();
            let mut late = self.late.lock().unwrap();
            let mut outcome = InsertOutcome::default();
            for (position, e) in events.iter().enumerate() {
                // One id, one row, across both tables (the event_ids claim).
                let key = |r: &StoredEvent| (r.event.tenant_id.clone(), r.event.event_id);
                let stored = rows
                    .iter()
                    .chain(late.iter())
                    .find(|r| key(r) == key(e))
                    .map(|r| r.hash);
                let table = if is_late(e) { &mut *late } else { &mut *rows };
                if let Some(stored_hash) = stored.filter(|h| *h != e.hash) {
                    outcome
                        .conflicts
                        .push(stele_store::IdConflict { position, stored_hash });
                } else if stored.is_some() {
                    outcome.duplicates += 1;
                } else {
                    table.push(e.clone());
                    outcome.inserted += 1;
                    outcome.late += u64::from(is_late(e));
                }
            }
            Ok(outcome)
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn sealed(tenant: &str, occurred_at: &str) -> SealedEvent {
        sealed_with_id(tenant, occurred_at, None)
    }

    /// An event with the given id, or a fresh one.
    fn sealed_with_id(tenant: &str, occurred_at: &str, event_id: Option<uuid::Uuid>) -> SealedEvent {
        let ctx = Context {
            tenant_id: tenant,
            now: now(),
            window: TimeWindow::default(),
            id_if_missing: None,
        };
        let mut body = json!({
            "occurred_at": occurred_at,
            "category": "audit",
            "action": "user.login",
            "outcome": "success",
            "actor": {"id": "u1", "type": "user"},
            "source": {"service": "auth"}
        });
        if let Some(id) = event_id {
            body["event_id"] = id.to_string().into();
        }
        validate_event(&body, &ctx).unwrap().seal()
    }

    fn batch(data: Vec<Vec<u8>>) -> KinesisEvent {
        kinesis::event(
            data.into_iter()
                .enumerate()
                .map(|(i, d)| kinesis::event_record("shardId-000000000000", &format!("{}", 100 + i), "t", d, now()))
                .collect(),
        )
    }

    fn failed_ids(r: &KinesisEventResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect()
    }

    fn writer() -> BatchWriter<MemoryStore, MemoryDeadLetters> {
        BatchWriter::new(MemoryStore::default(), MemoryDeadLetters::default())
    }

    #[tokio::test]
    async fn good_and_poison_records_are_split_and_the_batch_is_acknowledged() {
        let w = writer();
        let a = sealed("t1", "2026-03-01T10:00:00Z");
        let b = sealed("t2", "2026-02-28T10:00:00Z");
        let (resp, report) = w
            .process(batch(vec![a.record.clone(), b"junk".to_vec(), b.record.clone()]))
            .await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!((report.inserted, report.poison, report.partitions_created), (2, 1, 2));
        let letters = w.dead_letters().taken();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].sequence_number, "101");
        assert_eq!(letters[0].code, PoisonCode::NotJson);
        assert_eq!(letters[0].data, b"junk");
    }

    #[tokio::test]
    async fn a_database_failure_reports_from_the_first_good_record_and_holds_back_later_poison() {
        let w = writer();
        *w.store().down.lock().unwrap() = true;
        let a = sealed("t1", "2026-03-01T10:00:00Z");
        let (resp, report) = w
            .process(batch(vec![b"junk0".to_vec(), a.record.clone(), b"junk2".to_vec()]))
            .await;
        assert_eq!(failed_ids(&resp), ["101", "102"]);
        assert!(report.db_failed);
        let letters = w.dead_letters().taken();
        assert_eq!(
            letters.len(),
            1,
            "only the poison before the checkpoint is dead-lettered"
        );
        assert_eq!(letters[0].sequence_number, "100");
    }

    #[tokio::test]
    async fn a_dead_letter_that_cannot_be_sent_is_not_acknowledged() {
        let w = writer();
        *w.dead_letters().fail_after.lock().unwrap() = Some(1);
        let a = sealed("t1", "2026-03-01T10:00:00Z");
        let (resp, _) = w
            .process(batch(vec![
                b"junk0".to_vec(),
                a.record.clone(),
                b"junk2".to_vec(),
                a.record.clone(),
            ]))
            .await;
        assert_eq!(failed_ids(&resp), ["102", "103"]);
        assert_eq!(w.store().rows.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_of_an_archived_day_are_stored_as_late_rows_not_dead_lettered() {
        let w = writer();
        let archived = NaiveDate::from_ymd_opt(2026, 2, 27).unwrap();
        w.store().closed.lock().unwrap().insert(archived);
        let old = sealed("t1", "2026-02-27T10:00:00Z");
        let new = sealed("t1", "2026-03-01T10:00:00Z");
        let (resp, report) = w.process(batch(vec![old.record.clone(), new.record.clone()])).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!((report.inserted, report.late, report.poison), (2, 1, 0));
        assert!(w.dead_letters().taken().is_empty());
        let late: Vec<_> = w
            .store()
            .late
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event.event_id)
            .collect();
        assert_eq!(late, vec![old.event.event_id]);
        // Sent again (a redelivery): a duplicate, stored once.
        let (_, again) = w.process(batch(vec![old.record.clone()])).await;
        assert_eq!((again.inserted, again.duplicates, again.late), (0, 1, 0));
        assert!(
            !w.store().partitions.lock().unwrap().contains(&archived),
            "no partition is made for an archived day"
        );
    }

    #[test]
    fn poison_warnings_are_one_line_per_kind() {
        let letter = |code, seq: u32| DeadLetter {
            shard_id: Some("shardId-000000000000".into()),
            sequence_number: seq.to_string(),
            partition_key: "t".into(),
            event_source_arn: None,
            approximate_arrival: now(),
            code,
            reason: format!("reason {seq}"),
            conflict: None,
            data: Vec::new(),
        };
        let letters: Vec<DeadLetter> = (0..40)
            .map(|i| {
                letter(
                    if i % 2 == 0 {
                        PoisonCode::NotJson
                    } else {
                        PoisonCode::Schema
                    },
                    i,
                )
            })
            .collect();
        // Logs two lines; must not panic on any mix (empty included).
        log_poison(&letters);
        log_poison(&[]);
    }

    #[tokio::test]
    async fn chunks_commit_in_order_and_a_failure_reports_from_the_first_uncommitted_chunk() {
        let w = writer().with_chunk_records(2);
        *w.store().inserts_before_down.lock().unwrap() = Some(1);
        let data: Vec<Vec<u8>> = (0..6)
            .map(|i| sealed(&format!("t{i}"), "2026-03-01T10:00:00Z").record)
            .collect();
        let mut data = data;
        data[3] = b"junk3".to_vec();
        let (resp, report) = w.process(batch(data)).await;
        assert_eq!(failed_ids(&resp), ["102", "103", "104", "105"]);
        assert_eq!(report.inserted, 2);
        assert_eq!(w.store().rows.lock().unwrap().len(), 2);
        assert!(
            w.dead_letters().taken().is_empty(),
            "poison after the checkpoint comes back later"
        );
    }

    #[tokio::test]
    async fn a_redelivered_batch_counts_duplicates() {
        let w = writer();
        let a = sealed("t1", "2026-03-01T10:00:00Z");
        let _ = w.process(batch(vec![a.record.clone()])).await;
        let (_, report) = w.process(batch(vec![a.record.clone()])).await;
        assert_eq!((report.inserted, report.duplicates), (0, 1));
    }

    /// The same tenant and event id again with other content, here another
    /// `occurred_at` (a client that retries with a fresh timestamp).
    fn resent_with(first: &SealedEvent, occurred_at: &str) -> SealedEvent {
        sealed_with_id(&first.event.tenant_id, occurred_at, Some(first.event.event_id))
    }

    #[tokio::test]
    async fn an_id_resent_with_other_content_is_dead_lettered_as_a_conflict_with_both_hashes() {
        let w = writer();
        let first = sealed("t1", "2026-03-01T10:00:00Z");
        let again = resent_with(&first, "2026-03-01T10:00:05Z");
        assert_ne!(first.hash, again.hash);
        let _ = w.process(batch(vec![first.record.clone()])).await;
        // In a later batch and within one batch alike.
        for (n, records) in [
            vec![again.record.clone()],
            vec![first.record.clone(), again.record.clone()],
        ]
        .into_iter()
        .enumerate()
        {
            let (resp, report) = w.process(batch(records)).await;
            assert!(resp.batch_item_failures.is_empty());
            assert_eq!((report.inserted, report.conflicts, report.poison), (0, 1, 1));
            let letters = w.dead_letters().taken();
            assert_eq!(letters.len(), n + 1);
            let letter = &letters[n];
            assert_eq!(letter.code, PoisonCode::Conflict);
            assert_eq!(letter.data, again.record, "the original bytes");
            let hashes = letter.conflict.expect("both hashes");
            assert_eq!((hashes.event_hash, hashes.stored_event_hash), (again.hash, first.hash));
            let message: serde_json::Value = serde_json::from_str(&letter.to_message()).unwrap();
            assert_eq!(message["reason_code"], "conflict");
            assert_eq!(message["stored_event_hash"], first.hash.to_hex());
            assert_eq!(message["event_hash"], again.hash.to_hex());
        }
        let rows = w.store().rows.lock().unwrap();
        assert_eq!(rows.len(), 1, "one id, one row");
        assert_eq!(rows[0].hash, first.hash);
    }

    #[tokio::test]
    async fn an_empty_batch_is_acknowledged() {
        let (resp, report) = writer().process(batch(vec![])).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(report.records, 0);
    }
}
