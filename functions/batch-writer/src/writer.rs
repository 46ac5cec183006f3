//! The batch-writer: decode a Kinesis batch, dead-letter the poison, write the
//! rest in one statement, and report what must be redelivered.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{Days, NaiveDate, Utc};
use stele_store::partitions::{self, EnsureOutcome};
use stele_store::{EventStore, StoredEvent};

use crate::checkpoint;
use crate::decode::{open_record, shard_of, Poison, PoisonCode};
use crate::dlq::{DeadLetter, DeadLetterSink};
use crate::metrics::{emf_line, BatchReport};

/// Days at least this old are re-checked against the catalog on every batch
/// instead of being cached: they are the only ones the archiver may be closing.
const CACHE_DAYS_BACK: u64 = 2;

/// The handler state, built once per process and shared by every invocation.
pub struct BatchWriter<S, D> {
    store: S,
    dead_letters: D,
    /// Days whose partition is known to exist (saves two catalog queries per batch).
    known_days: Mutex<HashSet<NaiveDate>>,
}

/// The good records of a batch, with their positions in it.
struct Good {
    events: Vec<StoredEvent>,
    positions: Vec<usize>,
}

impl<S: EventStore, D: DeadLetterSink> BatchWriter<S, D> {
    pub fn new(store: S, dead_letters: D) -> Self {
        Self {
            store,
            dead_letters,
            known_days: Mutex::new(HashSet::new()),
        }
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
            poison = report.poison,
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
        let records = event.records;
        let mut report = BatchReport {
            records: records.len() as u64,
            ..Default::default()
        };

        let mut good = Good {
            events: Vec::with_capacity(records.len()),
            positions: Vec::with_capacity(records.len()),
        };
        let mut poison: Vec<(usize, Poison)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            match open_record(&record.kinesis.data.0) {
                Ok((event, hash)) => {
                    good.events.push(StoredEvent {
                        event,
                        hash,
                        kinesis_shard: shard_of(record.event_id.as_deref()).map(str::to_string),
                        kinesis_seq: Some(record.kinesis.sequence_number.clone()),
                    });
                    good.positions.push(i);
                }
                Err(p) => poison.push((i, p)),
            }
        }

        // Database first: if it fails, poison records after the first good one
        // will come back anyway, so they are not dead-lettered twice.
        let db_failed_at = match self.write(&mut good, &mut poison, &mut report).await {
            Ok(()) => None,
            Err(e) => {
                report.db_failed = true;
                let first = good.positions.first().copied();
                tracing::error!(error = %e, first_unwritten = ?first, "batch not written; reporting it for redelivery");
                first
            }
        };

        poison.sort_by_key(|(i, _)| *i);
        let letters: Vec<DeadLetter> = poison
            .iter()
            .filter(|(i, _)| db_failed_at.is_none_or(|f| *i < f))
            .map(|(i, p)| dead_letter(&records[*i], p))
            .collect();
        let dlq_failed_at = match self.dead_letters.send_in_order(&letters).await {
            Ok(()) => None,
            Err(failure) => {
                report.dlq_failed = true;
                let position = poison.get(failure.delivered).map(|(i, _)| *i);
                tracing::error!(error = %failure.error, first_undelivered = ?position, "dead-letter queue send failed");
                position
            }
        };
        for letter in &letters {
            tracing::warn!(
                shard_id = letter.shard_id.as_deref().unwrap_or(""),
                sequence_number = %letter.sequence_number,
                reason_code = letter.code.as_str(),
                reason = %letter.reason,
                "poison record"
            );
        }
        report.poison = poison.len() as u64;

        let first_unacked = checkpoint::earliest([db_failed_at, dlq_failed_at]);
        report.unacknowledged = first_unacked.map_or(0, |f| (records.len() - f) as u64);
        report.latency_ms = started.elapsed().as_millis() as u64;
        let response = checkpoint::report_from(&records, first_unacked, |r| r.kinesis.sequence_number.as_str());
        (response, report)
    }

    /// Ensure partitions, set aside events of archived days, insert the rest.
    /// A partition that vanished since it was cached is re-checked once.
    async fn write(
        &self,
        good: &mut Good,
        poison: &mut Vec<(usize, Poison)>,
        report: &mut BatchReport,
    ) -> stele_store::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.ensure_partitions(good, poison, report).await?;
            match self.store.insert_batch(&good.events).await {
                Ok(outcome) => {
                    report.inserted = outcome.inserted;
                    report.duplicates = outcome.duplicates;
                    return Ok(());
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

    async fn ensure_partitions(
        &self,
        good: &mut Good,
        poison: &mut Vec<(usize, Poison)>,
        report: &mut BatchReport,
    ) -> stele_store::Result<()> {
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
            return Ok(());
        }
        let outcome = self.store.ensure_days(&needed).await?;
        report.partitions_created += outcome.created.len() as u64;
        if !outcome.closed.is_empty() {
            let mut kept = Good {
                events: Vec::with_capacity(good.events.len()),
                positions: Vec::with_capacity(good.positions.len()),
            };
            for (event, position) in good.events.drain(..).zip(good.positions.drain(..)) {
                let day = partitions::day_of(event.event.occurred_at);
                if outcome.closed.contains(&day) {
                    poison.push((
                        position,
                        Poison {
                            code: PoisonCode::PartitionArchived,
                            reason: format!(
                                "the partition for {day} ({}) is archived or being archived; event {} of tenant {} was not written",
                                partitions::partition_name(day),
                                event.event.event_id,
                                event.event.tenant_id
                            ),
                        },
                    ));
                } else {
                    kept.events.push(event);
                    kept.positions.push(position);
                }
            }
            *good = kept;
        }
        self.remember(needed.into_iter().filter(|d| !outcome.closed.contains(d)));
        Ok(())
    }

    fn remember(&self, days: impl Iterator<Item = NaiveDate>) {
        let oldest_cached = Utc::now().date_naive().checked_sub_days(Days::new(CACHE_DAYS_BACK));
        if let Ok(mut known) = self.known_days.lock() {
            known.extend(days.filter(|d| oldest_cached.is_some_and(|o| *d >= o)));
        }
    }
}

fn dead_letter(record: &KinesisEventRecord, poison: &Poison) -> DeadLetter {
    DeadLetter {
        shard_id: shard_of(record.event_id.as_deref()).map(str::to_string),
        sequence_number: record.kinesis.sequence_number.clone(),
        partition_key: record.kinesis.partition_key.clone(),
        event_source_arn: record.event_source_arn.clone(),
        approximate_arrival: record.kinesis.approximate_arrival_timestamp.0,
        code: poison.code,
        reason: poison.reason.clone(),
        data: record.kinesis.data.0.clone(),
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
        partitions: Mutex<HashSet<NaiveDate>>,
        closed: Mutex<HashSet<NaiveDate>>,
        down: Mutex<bool>,
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

        async fn insert_batch(&self, events: &[StoredEvent]) -> stele_store::Result<InsertOutcome> {
            if *self.down.lock().unwrap() {
                return Err(stele_store::Error::Pool("down (test)".into()));
            }
            let parts = self.partitions.lock().unwrap();
            assert!(events
                .iter()
                .all(|e| parts.contains(&partitions::day_of(e.event.occurred_at))));
            let mut rows = self.rows.lock().unwrap();
            let mut outcome = InsertOutcome::default();
            for e in events {
                let key = |r: &StoredEvent| (r.event.tenant_id.clone(), r.event.event_id, r.event.occurred_at);
                if rows.iter().any(|r| key(r) == key(e)) {
                    outcome.duplicates += 1;
                } else {
                    rows.push(e.clone());
                    outcome.inserted += 1;
                }
            }
            Ok(outcome)
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn sealed(tenant: &str, occurred_at: &str) -> SealedEvent {
        let ctx = Context {
            tenant_id: tenant,
            now: now(),
            window: TimeWindow::default(),
            id_if_missing: None,
        };
        let body = json!({
            "occurred_at": occurred_at,
            "category": "audit",
            "action": "user.login",
            "outcome": "success",
            "actor": {"id": "u1", "type": "user"},
            "source": {"service": "auth"}
        });
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
    async fn events_of_an_archived_day_are_dead_lettered_not_dropped() {
        let w = writer();
        let archived = NaiveDate::from_ymd_opt(2026, 2, 27).unwrap();
        w.store().closed.lock().unwrap().insert(archived);
        let old = sealed("t1", "2026-02-27T10:00:00Z");
        let new = sealed("t1", "2026-03-01T10:00:00Z");
        let (resp, report) = w.process(batch(vec![old.record.clone(), new.record.clone()])).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!((report.inserted, report.poison), (1, 1));
        let letters = w.dead_letters().taken();
        assert_eq!(letters[0].code, PoisonCode::PartitionArchived);
        assert!(
            letters[0].reason.contains("audit_events_p20260227"),
            "{}",
            letters[0].reason
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

    #[tokio::test]
    async fn an_empty_batch_is_acknowledged() {
        let (resp, report) = writer().process(batch(vec![])).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(report.records, 0);
    }
}
