//! Fault tooling: an accounting ledger of every event a test sends (and what the
//! API answered), the in-process pipeline it goes through (ingest handler →
//! Kinesis on LocalStack → event source mapping emulator → batch-writer →
//! PostgreSQL), a reconciliation against PostgreSQL and the archive in S3, and
//! fault injectors on loopback (a TCP/HTTP proxy in front of LocalStack, a
//! crash-stop of a throwaway PostgreSQL).
//!
//! The promise checked: every event that got a `202` is in PostgreSQL or in a
//! verified archive exactly once, and every event that was refused (`4xx`) was
//! never stored. A `503` means "not accepted": such an event may or may not be
//! stored (the client sends it again with the same id), so it is counted apart
//! and never as lost. An accepted id sent again with other content (a client
//! retrying with a fresh `occurred_at`) is also answered `202`, but the id keeps
//! its first content: the resend must be in the batch-writer's dead-letter
//! queue as a `conflict` with both hashes, and stored nowhere.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use stele::local::esm;
use stele_batch_writer::{BatchWriter, PgBatchWriter, SqsDeadLetters};
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue, Method};
use stele_ingest::{EventSink, Ingest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use uuid::Uuid;

use super::archive::{get, list_keys};
use super::{unique_name, TestEnv};

// ---------------------------------------------------------------------------
// The ledger
// ---------------------------------------------------------------------------

/// What the API last answered for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `202`: the API promised to keep it.
    Accepted,
    /// `4xx`: refused; it must never be stored.
    Refused(u16),
    /// `503` (or no answer): not accepted; it may or may not be stored.
    NotAccepted(u16),
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub tenant: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The `event_hash` of the `202` answer.
    pub hash: Option<String>,
    pub outcome: Outcome,
    /// Requests that carried it.
    pub attempts: u32,
    /// It was in a request answered `503` before (it may have been stored then).
    pub had_503: bool,
}

/// An accepted id sent again with other content and answered `202` again.
/// The id keeps its first content ([`Sent::hash`]); this one must end in the
/// dead-letter queue as a conflict and nowhere else.
#[derive(Debug, Clone)]
pub struct ConflictingResend {
    pub tenant: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The `event_hash` of the resend's `202`.
    pub hash: String,
}

/// Every event sent, by id, with the API's answer.
#[derive(Debug, Default)]
pub struct Ledger {
    events: Vec<Sent>,
    index: HashMap<Uuid, usize>,
    conflicts: Vec<ConflictingResend>,
}

/// A valid event with a client-chosen id (the idempotency key a client resends).
pub fn event(event_id: Uuid, occurred_at: DateTime<Utc>, n: usize) -> Value {
    json!({
        "event_id": event_id,
        "occurred_at": stele_core::event::timestamp::format(&occurred_at),
        "category": "audit",
        "action": "record.write",
        "outcome": "success",
        "actor": { "id": format!("user-{}", n % 17), "type": "user" },
        "resource": { "type": "document", "id": format!("doc-{n}") },
        "metadata": { "n": n },
        "source": { "service": "fault-test" },
    })
}

/// An event the API refuses (unknown top-level field), with a client-chosen id.
pub fn bad_event(event_id: Uuid, occurred_at: DateTime<Utc>) -> Value {
    let mut v = event(event_id, occurred_at, 0);
    v["not_a_field"] = json!(true);
    v
}

/// `count` events for `tenant` with fresh ids, `occurred_at` spread over the
/// `span` before `end` (microsecond precision, as stored).
pub fn events(count: usize, end: DateTime<Utc>, span: Duration, seed: usize) -> Vec<Value> {
    let span_us = span.as_micros().max(1) as i64;
    (0..count)
        .map(|i| {
            let n = seed + i;
            let back = (n as i64 * 7_919_113) % span_us;
            event(Uuid::new_v4(), end - chrono::Duration::microseconds(back), n)
        })
        .collect()
}

/// The `occurred_at` of an event body.
fn occurred_at(body: &Value) -> DateTime<Utc> {
    body["occurred_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("occurred_at")
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    fn register(&mut self, tenant: &str, body: &Value) -> Uuid {
        let event_id: Uuid = body["event_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("ledger events carry a client-chosen event_id");
        let occurred_at = occurred_at(body);
        let i = *self.index.entry(event_id).or_insert_with(|| {
            self.events.push(Sent {
                tenant: tenant.to_string(),
                event_id,
                occurred_at,
                hash: None,
                outcome: Outcome::NotAccepted(0),
                attempts: 0,
                had_503: false,
            });
            self.events.len() - 1
        });
        assert_eq!(self.events[i].tenant, tenant, "ledger ids are unique across tenants");
        self.events[i].attempts += 1;
        event_id
    }

    /// The accepted ids sent again with other content and accepted again.
    pub fn conflicts(&self) -> &[ConflictingResend] {
        &self.conflicts
    }

    /// Post `events` as one request for `tenant`, as a client does: a `503` is
    /// sent again (same ids) up to `tries` times in all. Returns the last status.
    pub async fn post<S: EventSink>(&mut self, ingest: &Ingest<S>, tenant: &str, events: &[Value], tries: u32) -> u16 {
        let body = json!({ "events": events }).to_string();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let mut status = 0;
        for attempt in 0..tries.max(1) {
            let ids: Vec<Uuid> = events.iter().map(|e| self.register(tenant, e)).collect();
            let req = stele::local::api_gateway::api_gateway_request(
                &Method::POST,
                "/v1/events",
                &headers,
                body.as_bytes(),
                "tenant_id",
                Some(tenant),
            )
            .expect("request");
            let resp = ingest.handle(req).await;
            status = resp.status().as_u16();
            let answer: Value = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
            match status {
                202 => {
                    let accepted = answer["accepted"].as_array().expect("202 lists the accepted events");
                    assert_eq!(accepted.len(), ids.len(), "a 202 accepts the whole request");
                    for ((id, a), body) in ids.iter().zip(accepted).zip(events) {
                        assert_eq!(a["event_id"].as_str(), Some(id.to_string().as_str()), "202 in order");
                        let hash = a["event_hash"].as_str().map(str::to_string);
                        let sent = &mut self.events[self.index[id]];
                        if sent.outcome == Outcome::Accepted && sent.hash != hash {
                            // Other content under an accepted id: the id keeps
                            // its first hash; this 202 is recorded apart.
                            self.conflicts.push(ConflictingResend {
                                tenant: tenant.to_string(),
                                event_id: *id,
                                occurred_at: occurred_at(body),
                                hash: hash.expect("a 202 names each event's hash"),
                            });
                        } else {
                            sent.outcome = Outcome::Accepted;
                            sent.hash = hash;
                        }
                    }
                    return status;
                }
                400..=499 => {
                    for id in &ids {
                        let sent = &mut self.events[self.index[id]];
                        assert_ne!(sent.outcome, Outcome::Accepted, "an accepted event refused on resend");
                        sent.outcome = Outcome::Refused(status);
                    }
                    return status;
                }
                _ => {
                    for id in &ids {
                        let sent = &mut self.events[self.index[id]];
                        // A 503 to a resend does not take back an earlier 202.
                        if sent.outcome != Outcome::Accepted {
                            sent.outcome = Outcome::NotAccepted(status);
                        }
                        sent.had_503 = true;
                    }
                    // The client waits before resending; short here (Retry-After is
                    // advisory), and bounded by `tries`.
                    if attempt + 1 < tries {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
                    }
                }
            }
        }
        status
    }

    pub fn count(&self, f: impl Fn(&Sent) -> bool) -> usize {
        self.events.iter().filter(|s| f(s)).count()
    }
}

// ---------------------------------------------------------------------------
// Reconciliation
// ---------------------------------------------------------------------------

/// The accounting table of one fault.
#[derive(Debug, Default, Clone)]
pub struct Accounting {
    pub fault: String,
    pub sent: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Answered `503` (or nothing) to the last try: neither promised nor refused.
    pub not_accepted: usize,
    /// Ledger events with a row in PostgreSQL (`audit_events` or `late_events`).
    pub stored: usize,
    /// Ledger events in a verified archive.
    pub archived: usize,
    /// Extra copies of an event (PostgreSQL rows and archived rows beyond the first),
    /// plus rows nobody sent.
    pub duplicates: usize,
    /// Accepted events found nowhere.
    pub lost: usize,
    pub refused_but_stored: usize,
    /// Events with a stored or archived copy whose hash differs from the one
    /// the (first) `202` gave.
    pub altered: usize,
    /// Not-accepted events that were stored anyway (allowed; informational).
    pub not_accepted_but_stored: usize,
    /// Accepted ids sent again with other content and answered `202` again.
    pub conflicts: usize,
    /// Of those, found in the batch-writer's dead-letter queue as `conflict`
    /// with the resend's hash and the stored one.
    pub conflicts_dead_lettered: usize,
    /// Conflicting resends whose content is stored or archived (must be 0).
    pub conflicts_stored: usize,
    /// The dead-letter queues were read ([`Accounting::check_dead_letters`]).
    pub dead_letters_read: bool,
    /// Dead letters that name no conflicting resend of the ledger, and
    /// batches the event source mapping gave up on, each described.
    pub dead_letter_problems: Vec<String>,
    /// Archive problems (manifest/file/root mismatches), each described.
    pub archive_problems: Vec<String>,
}

impl Accounting {
    pub fn print(&self) {
        let dead_lettered = if self.dead_letters_read {
            self.conflicts_dead_lettered.to_string()
        } else {
            "(DLQ not read)".to_string()
        };
        eprintln!(
            "\naccounting: {}\n| sent | accepted | refused | not accepted (503) | stored | archived | duplicates | lost | conflicting resends (202) | conflicts dead-lettered |\n|-----:|---------:|--------:|-------------------:|-------:|---------:|-----------:|-----:|--------------------------:|------------------------:|\n| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\nrefused but stored: {}, altered: {}, not accepted but stored: {}, conflicts stored: {}, dead-letter problems: {:?}, archive problems: {:?}\n",
            self.fault,
            self.sent,
            self.accepted,
            self.refused,
            self.not_accepted,
            self.stored,
            self.archived,
            self.duplicates,
            self.lost,
            self.conflicts,
            dead_lettered,
            self.refused_but_stored,
            self.altered,
            self.not_accepted_but_stored,
            self.conflicts_stored,
            self.dead_letter_problems,
            self.archive_problems,
        );
    }

    /// Print the table, then hold the pipeline to its promise.
    pub fn assert_exact(&self) {
        self.print();
        assert!(self.sent > 0 && self.accepted > 0, "the test sent nothing: {self:?}");
        assert_eq!(self.duplicates, 0, "{}: duplicates", self.fault);
        assert_eq!(self.lost, 0, "{}: accepted events lost", self.fault);
        assert_eq!(self.refused_but_stored, 0, "{}: refused events stored", self.fault);
        assert_eq!(self.altered, 0, "{}: stored hashes differ from the 202's", self.fault);
        assert_eq!(self.conflicts_stored, 0, "{}: conflicting resends stored", self.fault);
        if self.conflicts > 0 {
            assert!(self.dead_letters_read, "{}: conflicts sent, DLQ not read", self.fault);
        }
        if self.dead_letters_read {
            assert_eq!(
                self.conflicts_dead_lettered, self.conflicts,
                "{}: conflicting resends missing from the DLQ",
                self.fault
            );
        }
        assert!(
            self.dead_letter_problems.is_empty(),
            "{}: {:?}",
            self.fault,
            self.dead_letter_problems
        );
        assert!(
            self.archive_problems.is_empty(),
            "{}: {:?}",
            self.fault,
            self.archive_problems
        );
    }

    /// Account for the dead letters: every conflicting resend of the ledger
    /// is there (reason `conflict`, its record's bytes, the resend's hash and
    /// the first content's stored hash); any other letter, and any batch the
    /// event source mapping gave up on, is a problem.
    pub fn check_dead_letters(&mut self, ledger: &Ledger, letters: &DeadLetters) {
        use base64::Engine;
        self.dead_letters_read = true;
        let mut found: HashMap<(String, Uuid, String), usize> = HashMap::new();
        for letter in &letters.writer {
            let seq = letter["sequence_number"].as_str().unwrap_or("?");
            if letter["reason_code"] != "conflict" {
                self.dead_letter_problems.push(format!(
                    "{seq}: dead-lettered as {}: {}",
                    letter["reason_code"], letter["reason"]
                ));
                continue;
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().unwrap_or_default())
                .unwrap_or_default();
            let Ok((event, hash)) = stele_batch_writer::decode::open_record(&data) else {
                self.dead_letter_problems
                    .push(format!("{seq}: a conflict letter whose record does not open"));
                continue;
            };
            let key = (event.tenant_id.clone(), event.event_id, hash.to_hex());
            let resend = ledger.conflicts.iter().find(|c| {
                (&c.tenant, c.event_id, &c.hash) == (&key.0, key.1, &key.2) && c.occurred_at == event.occurred_at
            });
            let first = ledger
                .index
                .get(&event.event_id)
                .map(|&i| &ledger.events[i])
                .filter(|s| s.tenant == event.tenant_id);
            let hashes_ok = letter["event_hash"].as_str() == Some(key.2.as_str())
                && letter["stored_event_hash"].as_str() == first.and_then(|s| s.hash.as_deref());
            match resend {
                Some(_) if hashes_ok => *found.entry(key).or_default() += 1,
                Some(_) => self.dead_letter_problems.push(format!(
                    "{seq}: conflict for {} {} names hashes {} / stored {}, the ledger {} / first {:?}",
                    key.0,
                    key.1,
                    letter["event_hash"],
                    letter["stored_event_hash"],
                    key.2,
                    first.and_then(|s| s.hash.as_deref())
                )),
                None => self.dead_letter_problems.push(format!(
                    "{seq}: conflict for {} {} (hash {}) is no conflicting resend of the ledger",
                    key.0, key.1, key.2
                )),
            }
        }
        self.conflicts_dead_lettered = found.len();
        for record in &letters.on_failure {
            self.dead_letter_problems
                .push(format!("the event source mapping gave up on a batch: {record}"));
        }
    }
}

/// The messages of the batch-writer's dead-letter queue and of the event
/// source mapping's on-failure destination.
#[derive(Debug, Default, Clone)]
pub struct DeadLetters {
    pub writer: Vec<Value>,
    pub on_failure: Vec<Value>,
}

/// The queues behind a [`Mapping`].
#[derive(Debug, Clone)]
pub struct Queues {
    /// The batch-writer's dead-letter queue (`STELE_DLQ_URL`).
    pub dlq: String,
    /// The event source mapping's on-failure destination.
    pub on_failure: String,
}

impl Queues {
    /// Every message of both queues (each received and deleted).
    pub async fn read(&self, env: &TestEnv) -> DeadLetters {
        let sqs = env.sqs().await;
        DeadLetters {
            writer: drain_queue(&sqs, &self.dlq).await,
            on_failure: drain_queue(&sqs, &self.on_failure).await,
        }
    }
}

/// Receive (and delete) every message of a queue: until two receives in a
/// row come back empty (bounded).
async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut empty = 0;
    for _ in 0..1_000 {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive dead letters");
        if received.messages().is_empty() {
            empty += 1;
            if empty >= 2 {
                break;
            }
            continue;
        }
        empty = 0;
        for m in received.messages() {
            out.push(serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null));
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete dead letter");
        }
    }
    out
}

/// Count every ledger event in PostgreSQL (`audit_events` with its attached
/// partitions, and `late_events`) and, if given, in the verified archive.
pub async fn reconcile(fault: &str, ledger: &Ledger, pg: &Client, archive: Option<&ArchiveRead>) -> Accounting {
    let rows = pg
        .query(
            "SELECT tenant_id, event_id, encode(event_hash, 'hex') FROM audit_events
             UNION ALL
             SELECT tenant_id, event_id, encode(event_hash, 'hex') FROM late_events",
            &[],
        )
        .await
        .expect("read audit_events and late_events");
    let mut in_pg: HashMap<(String, Uuid), Vec<String>> = HashMap::new();
    for r in &rows {
        in_pg
            .entry((r.get::<_, String>(0), r.get::<_, Uuid>(1)))
            .or_default()
            .push(r.get(2));
    }
    let none = Vec::new();
    let stored_hashes = |tenant: &str, id: Uuid| -> (&[String], &[String]) {
        let key = (tenant.to_string(), id);
        (
            in_pg.get(&key).unwrap_or(&none),
            archive.and_then(|a| a.hashes.get(&key)).unwrap_or(&none),
        )
    };
    let mut acc = Accounting {
        fault: fault.to_string(),
        sent: ledger.events.len(),
        conflicts: ledger.conflicts.len(),
        ..Default::default()
    };
    let (mut known, mut known_archived) = (0usize, 0usize);
    let mut misfiled = Vec::new();
    for s in &ledger.events {
        let (hashes, archived) = stored_hashes(&s.tenant, s.event_id);
        known += hashes.len();
        known_archived += archived.len();
        let copies = hashes.len() + archived.len();
        if !hashes.is_empty() {
            acc.stored += 1;
        }
        if !archived.is_empty() {
            acc.archived += 1;
        }
        acc.duplicates += copies.saturating_sub(1);
        let day = s.occurred_at.date_naive();
        let days = archive.and_then(|a| a.days.get(&(s.tenant.clone(), s.event_id)));
        for other in days.into_iter().flatten().filter(|d| **d != day) {
            misfiled.push(format!("{} {} of {day} archived under {other}", s.tenant, s.event_id));
        }
        match s.outcome {
            Outcome::Accepted => {
                acc.accepted += 1;
                if copies == 0 {
                    acc.lost += 1;
                }
                // Also after a 503'd attempt was stored: the hash leaves
                // `received_at` out, so the resend's receipt names the same hash.
                if hashes.iter().chain(archived).any(|h| Some(h) != s.hash.as_ref()) {
                    acc.altered += 1;
                }
            }
            Outcome::Refused(_) => {
                acc.refused += 1;
                if copies > 0 {
                    acc.refused_but_stored += 1;
                }
            }
            Outcome::NotAccepted(_) => {
                acc.not_accepted += 1;
                if copies > 0 {
                    acc.not_accepted_but_stored += 1;
                }
            }
        }
    }
    for c in &ledger.conflicts {
        let (hashes, archived) = stored_hashes(&c.tenant, c.event_id);
        if hashes.iter().chain(archived).any(|h| *h == c.hash) {
            acc.conflicts_stored += 1;
        }
    }
    // Rows nobody sent are duplicates of nothing, but still wrong.
    acc.duplicates += rows.len() - known;
    if let Some(a) = archive {
        acc.duplicates += a.rows_read as usize - known_archived;
        acc.archive_problems = a.problems.clone();
        acc.archive_problems.extend(misfiled);
    }
    acc
}

// ---------------------------------------------------------------------------
// The archive, read back from S3
// ---------------------------------------------------------------------------

/// What the archive in S3 holds. Of each day's manifest versions the one in
/// force is read: the version no other supersedes (a supplement lists every
/// file of the day, so the earlier versions are not counted again). Checked:
/// each `supersedes` names an existing version by its SHA-256; every file of
/// the version in force exists with the SHA-256 and size it records, nothing
/// else lies under the tenant/day prefix or anywhere in the archive; no
/// multipart upload is left; each tenant's row count and Merkle root,
/// recomputed from the files' `event_hash` column in manifest file order
/// (and a supplement's, from its own files), equal the manifest's. The rows
/// read (`event_id`, `event_hash`) are then matched against the ledger by
/// [`reconcile`].
#[derive(Debug, Default)]
pub struct ArchiveRead {
    /// The `event_hash` of every archived row, by (tenant, event id): one per copy.
    hashes: HashMap<(String, Uuid), Vec<String>>,
    /// The day each copy is archived under.
    days: HashMap<(String, Uuid), Vec<NaiveDate>>,
    /// Days with a manifest (their version in force).
    pub manifests: usize,
    /// Manifest objects in all, every version.
    pub manifest_versions: usize,
    /// Rows the manifests in force record.
    pub rows: u64,
    /// Rows read from the files of the manifests in force.
    pub rows_read: u64,
    pub problems: Vec<String>,
}

/// (event_id, event_hash) of every row of an archived Parquet file, in file order.
fn parquet_rows(body: bytes::Bytes) -> Result<Vec<(String, String)>, String> {
    use arrow::array::{Array, StringArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| format!("no string column {name}"))
        };
        let (ids, hashes) = (column("event_id")?, column("event_hash")?);
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || hashes.is_null(i) {
                return Err(format!("row {i} has a null event_id or event_hash"));
            }
            out.push((ids.value(i).to_string(), hashes.value(i).to_string()));
        }
    }
    Ok(out)
}

impl ArchiveRead {
    pub async fn load(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> ArchiveRead {
        use stele_archiver::manifest::Manifest;
        let mut out = ArchiveRead::default();
        let uploads = s3
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("list uploads");
        if !uploads.uploads().is_empty() {
            out.problems
                .push(format!("{} unfinished multipart uploads", uploads.uploads().len()));
        }
        // Every version of every day's manifest, with its SHA-256.
        let manifests_prefix = format!("{prefix}/_manifests/");
        let mut by_day: std::collections::BTreeMap<String, Vec<(String, String, Manifest)>> = Default::default();
        for key in list_keys(s3, bucket, &manifests_prefix).await {
            out.manifest_versions += 1;
            let bytes = get(s3, bucket, &key).await;
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => {
                    if m.version != stele_archiver::layout::manifest_version(&key) {
                        out.problems
                            .push(format!("{key}: version {} in a key of another version", m.version));
                    }
                    by_day.entry(m.dt.clone()).or_default().push((key, sha, m));
                }
                Err(e) => out.problems.push(format!("{key}: {e}")),
            }
        }
        let mut in_force_files: std::collections::HashSet<String> = Default::default();
        for (dt, versions) in &by_day {
            // Each `supersedes` names a version of the same day, by its SHA-256.
            let mut superseded = std::collections::HashSet::new();
            for (key, _, m) in versions {
                if let Some(earlier) = &m.supersedes {
                    match versions.iter().find(|(k, _, _)| *k == earlier.key) {
                        Some((_, sha, _)) if *sha == earlier.sha256 => {}
                        Some(_) => out.problems.push(format!(
                            "{key}: supersedes {} by a SHA-256 it no longer has",
                            earlier.key
                        )),
                        None => out
                            .problems
                            .push(format!("{key}: supersedes {}, which is not there", earlier.key)),
                    }
                    superseded.insert(earlier.key.clone());
                }
            }
            let heads: Vec<&(String, String, Manifest)> =
                versions.iter().filter(|(k, _, _)| !superseded.contains(k)).collect();
            let Some((key, _, manifest)) = heads.iter().max_by_key(|(_, _, m)| m.version) else {
                out.problems
                    .push(format!("dt={dt}: every manifest version is superseded"));
                continue;
            };
            if heads.len() > 1 {
                out.problems.push(format!(
                    "dt={dt}: {} manifest versions supersede no other: {:?}",
                    heads.len(),
                    heads.iter().map(|(k, _, _)| k).collect::<Vec<_>>()
                ));
            }
            out.manifests += 1;
            out.rows += manifest.rows;
            out.read_day(s3, bucket, prefix, key, manifest, &mut in_force_files)
                .await;
        }
        // Nothing but the manifests and their files in the archive.
        for key in list_keys(s3, bucket, &format!("{prefix}/")).await {
            if !key.starts_with(&manifests_prefix) && !in_force_files.contains(&key) {
                out.problems
                    .push(format!("{key}: in the archive, in no manifest in force"));
            }
        }
        out
    }

    /// Check one day's manifest in force against its files, and read their rows.
    async fn read_day(
        &mut self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        key: &str,
        manifest: &stele_archiver::manifest::Manifest,
        in_force_files: &mut std::collections::HashSet<String>,
    ) {
        use stele_archiver::merkle::MerkleBuilder;
        let day: NaiveDate = manifest.dt.parse().expect("manifest dt");
        // Each file's event hashes, by key (a supplement's roots are of its own files).
        let mut file_hashes: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for tenant in &manifest.tenants {
            // Files: exactly the manifest's, with its sizes and SHA-256.
            let tenant_prefix = stele_archiver::layout::tenant_day_prefix(prefix, &tenant.tenant_id, day);
            let mut listed = list_keys(s3, bucket, &tenant_prefix).await;
            listed.sort();
            let mut expected: Vec<String> = tenant.files.iter().map(|f| f.key.clone()).collect();
            expected.sort();
            if listed != expected {
                self.problems
                    .push(format!("{tenant_prefix}: objects {listed:?}, manifest {expected:?}"));
            }
            let mut merkle = MerkleBuilder::new();
            for f in &tenant.files {
                in_force_files.insert(f.key.clone());
                let body = get(s3, bucket, &f.key).await;
                let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
                if body.len() as u64 != f.bytes || sha != f.sha256 {
                    self.problems
                        .push(format!("{}: size/SHA-256 differ from the manifest", f.key));
                }
                let rows = match parquet_rows(body) {
                    Ok(rows) => rows,
                    Err(e) => {
                        self.problems.push(format!("{}: {e}", f.key));
                        continue;
                    }
                };
                if rows.len() as u64 != f.rows {
                    self.problems
                        .push(format!("{}: {} rows, manifest {}", f.key, rows.len(), f.rows));
                }
                let mut hashes = Vec::with_capacity(rows.len());
                for (id, hash) in rows {
                    let leaf = hex::decode(&hash).unwrap_or_default();
                    merkle.push(&leaf);
                    hashes.push(leaf);
                    self.rows_read += 1;
                    match id.parse::<Uuid>() {
                        Ok(id) => {
                            let key = (tenant.tenant_id.clone(), id);
                            self.days.entry(key.clone()).or_default().push(day);
                            self.hashes.entry(key).or_default().push(hash);
                        }
                        Err(_) => self.problems.push(format!("{}: event_id {id:?}", f.key)),
                    }
                }
                file_hashes.insert(f.key.clone(), hashes);
            }
            // The root of the files in manifest order, each in its own order.
            if merkle.leaves() != tenant.rows || merkle.root_hex() != tenant.merkle_root {
                self.problems.push(format!(
                    "{key} {}: manifest {} rows root {}, files {} rows root {}",
                    tenant.tenant_id,
                    tenant.rows,
                    tenant.merkle_root,
                    merkle.leaves(),
                    merkle.root_hex()
                ));
            }
        }
        // A supplement's own roots: its files alone.
        for added in manifest.supplement.iter().flat_map(|s| &s.tenants) {
            let mut merkle = MerkleBuilder::new();
            for f in &added.files {
                if !in_force_files.contains(&f.key) {
                    self.problems
                        .push(format!("{key}: supplement file {} is not in the day's files", f.key));
                }
                for leaf in file_hashes.get(&f.key).into_iter().flatten() {
                    merkle.push(leaf);
                }
            }
            if merkle.leaves() != added.rows || merkle.root_hex() != added.merkle_root {
                self.problems.push(format!(
                    "{key} supplement {}: {} rows root {}, files {} rows root {}",
                    added.tenant_id,
                    added.rows,
                    added.merkle_root,
                    merkle.leaves(),
                    merkle.root_hex()
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The pipeline behind the ingest handler
// ---------------------------------------------------------------------------

/// A stream of its own (deleted by nobody: LocalStack is per test run).
pub async fn stream(env: &TestEnv, shards: i32) -> String {
    let name = unique_name("faults");
    env.create_stream(&name, shards).await;
    name
}

/// The batch-writer behind the event source mapping emulator, polling `stream`
/// and writing to `db_url`, as `stele dev` wires them: the writer dead-letters
/// to a LocalStack SQS queue of its own, the mapping sends the batches it gives
/// up on to another.
pub struct Mapping {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
    pub stats: Arc<esm::MappingStats>,
    /// Records each batch-writer invocation reported failed.
    pub failed_items: Arc<AtomicU64>,
    pub queues: Queues,
}

impl Mapping {
    pub async fn start(env: &TestEnv, stream: &str, db_url: &str, batch_size: usize) -> Mapping {
        let queues = Queues {
            dlq: env.create_queue(&unique_name("dlq")).await,
            on_failure: env.create_queue(&unique_name("esm-failure")).await,
        };
        let writer = Arc::new(writer_to(env, db_url, &queues.dlq).await);
        let failed_items = Arc::new(AtomicU64::new(0));
        let handler: esm::Handler = {
            let (writer, failed) = (writer.clone(), failed_items.clone());
            Arc::new(move |event| {
                let (writer, failed) = (writer.clone(), failed.clone());
                Box::pin(async move {
                    let response = writer.handle_batch(event).await;
                    failed.fetch_add(response.batch_item_failures.len() as u64, Ordering::Relaxed);
                    response
                })
            })
        };
        let settings = esm::MappingSettings {
            stream_name: stream.to_string(),
            stream_arn: format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
            batch_size,
            batching_window: Duration::from_millis(200),
            bisect_on_error: stele::local::deployed::ESM_BISECT_ON_ERROR,
            max_retries: stele::local::deployed::ESM_MAX_RETRIES,
            on_failure_queue: Some(queues.on_failure.clone()),
        };
        let stats = Arc::new(esm::MappingStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(esm::run(
            env.kinesis().await,
            env.sqs().await,
            settings,
            handler,
            stats.clone(),
            stop_rx,
        ));
        Mapping {
            stop,
            task,
            stats,
            failed_items,
            queues,
        }
    }

    pub fn acknowledged(&self) -> u64 {
        self.stats.acknowledged.load(Ordering::Relaxed)
    }

    /// Wait (bounded) until `cond` holds; returns whether it did.
    pub async fn wait_for(&self, limit: Duration, cond: impl Fn(&Mapping) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cond(self)
    }

    /// Ask the pollers to stop once their shards are caught up, and wait (bounded).
    pub async fn drain(self, limit: Duration) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("event source mapping failed: {e}"),
            Ok(Err(e)) => panic!("event source mapping panicked: {e}"),
            Err(_) => panic!("the event source mapping did not drain within {limit:?}"),
        }
    }
}

/// The batch-writer as deployed (pool of 4, dead letters to a queue of its own).
pub async fn writer(env: &TestEnv, db_url: &str) -> PgBatchWriter {
    writer_to(env, db_url, &env.create_queue(&unique_name("dlq")).await).await
}

/// The batch-writer as deployed, dead-lettering to `dlq`.
pub async fn writer_to(env: &TestEnv, db_url: &str, dlq: &str) -> PgBatchWriter {
    let mut config = stele_store::StoreConfig::new(db_url);
    config.connect_timeout = Duration::from_secs(2);
    BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&config).expect("pool")),
        SqsDeadLetters::new(env.sqs().await, dlq),
    )
}

// ---------------------------------------------------------------------------
// PostgreSQL faults
// ---------------------------------------------------------------------------

/// A throwaway PostgreSQL cluster of the test's own (stopped on drop; its
/// watchdog stops it if the test process dies).
pub struct OwnPostgres {
    pub url: String,
    pub dir: String,
    service: stele::local::services::Service,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let service = stele::local::services::start_postgres(false).expect("start PostgreSQL");
        OwnPostgres {
            url: service.endpoint.clone(),
            dir: service.dir.clone(),
            service,
        }
    }

    /// Start it again on the same port (`scripts/pg.sh restart DIR`; crash-restarts
    /// it first if it is running).
    pub fn restart(&self) {
        restart_postgres(&self.dir);
    }
}

/// `pg_ctl -m immediate stop` of the cluster in `dir`, as its owner.
pub fn crash_postgres(dir: &str) {
    {
        let script = r#"
            set -e
            dir="$1"
            bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
            if [ "$(id -u)" = 0 ]; then
              runuser -u "$(stat -c %U "$dir")" -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop
            else
              "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop
            fi"#;
        let status = Command::new("bash")
            .args(["-c", script, "crash"])
            .arg(dir)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run pg_ctl stop");
        assert!(status.success(), "pg_ctl -m immediate stop failed");
    }
}

/// `scripts/pg.sh restart DIR`: crash-stop if running, start on the same port.
pub fn restart_postgres(dir: &str) {
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh"))
        .args(["restart", dir])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/pg.sh restart");
    assert!(status.success(), "scripts/pg.sh restart failed");
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.service.stop();
    }
}

/// Terminate every other session of the database at `url` (as a dropped
/// connection would end it); returns how many were terminated.
pub async fn terminate_backends(admin: &Client) -> i64 {
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map(|rows| rows.len() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A fault proxy on loopback, in front of LocalStack
// ---------------------------------------------------------------------------

/// What the proxy does with one HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAction {
    /// Forward it and return the answer.
    Pass,
    /// Close the connection without forwarding: the request never arrives.
    Refuse,
    /// Forward it, then close the connection without the answer: the request
    /// took effect but the caller cannot know (the ambiguous failure).
    LoseAnswer,
    /// Answer `400 ProvisionedThroughputExceededException` without forwarding.
    Throttle,
    /// Answer `500 InternalFailure` without forwarding.
    ServerError,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub passed: AtomicU64,
    pub refused: AtomicU64,
    pub lost_answers: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
}

impl ProxyStats {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "requests {}, passed {}, refused {}, answers lost {}, throttled {}, 500s {}",
            g(&self.requests),
            g(&self.passed),
            g(&self.refused),
            g(&self.lost_answers),
            g(&self.throttled),
            g(&self.server_errors)
        )
    }
}

/// An HTTP/1.1 proxy on 127.0.0.1 that applies a repeating plan of actions to
/// the requests passing through, one upstream connection per request.
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    pub stats: Arc<ProxyStats>,
    /// While false, every request passes.
    pub armed: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://host:port`), applying `plan[n % plan.len()]`
    /// to the n-th request.
    pub async fn start(upstream: &str, plan: Vec<ProxyAction>) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stats = Arc::new(ProxyStats::default());
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let plan = Arc::new(plan);
        let counter = Arc::new(Mutex::new(0usize));
        let task = {
            let (stats, armed) = (stats.clone(), armed.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (stats, armed, plan, counter, upstream) = (
                        stats.clone(),
                        armed.clone(),
                        plan.clone(),
                        counter.clone(),
                        upstream.clone(),
                    );
                    tokio::spawn(async move {
                        let next = move || {
                            let mut c = counter.lock().unwrap_or_else(|p| p.into_inner());
                            *c += 1;
                            if armed.load(Ordering::Relaxed) && !plan.is_empty() {
                                plan[(*c - 1) % plan.len()]
                            } else {
                                ProxyAction::Pass
                            }
                        };
                        let _ = serve_connection(client, &upstream, next, &stats).await;
                    });
                }
            })
        };
        FaultProxy {
            addr,
            stats,
            armed,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes of one HTTP message head (through `\r\n\r\n`) and its Content-Length.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<(usize, usize)>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            return Ok(Some((end + 4, len)));
        }
        if buf.len() > 1 << 20 {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve_connection(
    mut client: TcpStream,
    upstream: &str,
    mut next: impl FnMut() -> ProxyAction,
    stats: &ProxyStats,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    // At most this many requests per client connection (bounded loop).
    for _ in 0..100_000 {
        let Some((head_len, body_len)) = read_head(&mut client, &mut buf).await? else {
            return Ok(());
        };
        let mut chunk = [0u8; 65536];
        while buf.len() < head_len + body_len {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let request: Vec<u8> = buf.drain(..head_len + body_len).collect();
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let action = next();
        match action {
            ProxyAction::Refuse => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return Ok(()); // dropping `client` closes it
            }
            ProxyAction::Throttle | ProxyAction::ServerError => {
                let (status, kind, counter) = if action == ProxyAction::Throttle {
                    (
                        "400 Bad Request",
                        "ProvisionedThroughputExceededException",
                        &stats.throttled,
                    )
                } else {
                    ("500 Internal Server Error", "InternalFailure", &stats.server_errors)
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let body = format!(r#"{{"__type":"{kind}","message":"injected by the fault proxy"}}"#);
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: {kind}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                client.write_all(resp.as_bytes()).await?;
            }
            ProxyAction::Pass | ProxyAction::LoseAnswer => {
                let answer = forward(upstream, &request, head_len).await?;
                if action == ProxyAction::LoseAnswer {
                    stats.lost_answers.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                stats.passed.fetch_add(1, Ordering::Relaxed);
                client.write_all(&answer).await?;
            }
        }
    }
    Ok(())
}

/// Send one request upstream on a connection of its own (`Connection: close`)
/// and read the whole answer (bounded in time).
async fn forward(upstream: &str, request: &[u8], head_len: usize) -> std::io::Result<Vec<u8>> {
    let head = String::from_utf8_lossy(&request[..head_len - 4]);
    let mut rewritten = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("connection: close\r\n\r\n");
    let exchange = async {
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(rewritten.as_bytes()).await?;
        up.write_all(&request[head_len..]).await?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| std::io::Error::other("upstream timed out"))?
}

// ---------------------------------------------------------------------------
// Reading the stream directly (for hand-built deliveries)
// ---------------------------------------------------------------------------

/// Every record on `stream`, shard by shard in order, as the mapping presents
/// them to the batch-writer.
pub async fn read_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, aws_lambda_events::event::kinesis::KinesisEventRecord)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("shard iterator")
            .shard_iterator()
            .map(str::to_owned);
        for _ in 0..1000 {
            let Some(it) = iterator else { break };
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("get records");
            for r in page.records() {
                let arrived = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                    .unwrap_or_else(Utc::now);
                out.push((
                    shard.shard_id().to_string(),
                    stele_batch_writer::kinesis::event_record(
                        shard.shard_id(),
                        r.sequence_number(),
                        r.partition_key().unwrap_or_default(),
                        r.data().as_ref().to_vec(),
                        arrived,
                    ),
                ));
            }
            if page.records().is_empty() || page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}
