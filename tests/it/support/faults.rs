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
//! and never as lost.

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

/// Every event sent, by id, with the API's answer.
#[derive(Debug, Default)]
pub struct Ledger {
    events: Vec<Sent>,
    index: HashMap<Uuid, usize>,
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

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    fn register(&mut self, tenant: &str, body: &Value) -> Uuid {
        let event_id: Uuid = body["event_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("ledger events carry a client-chosen event_id");
        let occurred_at = body["occurred_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .expect("occurred_at");
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
        self.events[i].attempts += 1;
        event_id
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
                    for (id, a) in ids.iter().zip(accepted) {
                        assert_eq!(a["event_id"].as_str(), Some(id.to_string().as_str()), "202 in order");
                        let sent = &mut self.events[self.index[id]];
                        sent.outcome = Outcome::Accepted;
                        sent.hash = a["event_hash"].as_str().map(str::to_string);
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
                        sent.outcome = Outcome::NotAccepted(status);
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
    /// Ledger events with a row in PostgreSQL.
    pub stored: usize,
    /// Ledger events in a verified archive.
    pub archived: usize,
    /// Extra copies of an event (PostgreSQL rows and archived rows beyond the first),
    /// plus rows nobody sent.
    pub duplicates: usize,
    /// Accepted events found nowhere.
    pub lost: usize,
    pub refused_but_stored: usize,
    /// Stored rows whose hash differs from the one the `202` gave.
    pub altered: usize,
    /// Not-accepted events that were stored anyway (allowed; informational).
    pub not_accepted_but_stored: usize,
    /// Archive problems (manifest/file/root mismatches), each described.
    pub archive_problems: Vec<String>,
}

impl Accounting {
    pub fn print(&self) {
        eprintln!(
            "\naccounting: {}\n| sent | accepted | refused | not accepted (503) | stored | archived | duplicates | lost |\n|-----:|---------:|--------:|-------------------:|-------:|---------:|-----------:|-----:|\n| {} | {} | {} | {} | {} | {} | {} | {} |\nrefused but stored: {}, altered: {}, not accepted but stored: {}, archive problems: {:?}\n",
            self.fault,
            self.sent,
            self.accepted,
            self.refused,
            self.not_accepted,
            self.stored,
            self.archived,
            self.duplicates,
            self.lost,
            self.refused_but_stored,
            self.altered,
            self.not_accepted_but_stored,
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
        assert!(
            self.archive_problems.is_empty(),
            "{}: {:?}",
            self.fault,
            self.archive_problems
        );
    }
}

/// Count every ledger event in PostgreSQL (`audit_events`, attached partitions)
/// and, if given, in the verified archive.
pub async fn reconcile(fault: &str, ledger: &Ledger, pg: &Client, archive: Option<&ArchiveRead>) -> Accounting {
    let rows = pg
        .query(
            "SELECT tenant_id, event_id, encode(event_hash, 'hex') FROM audit_events",
            &[],
        )
        .await
        .expect("read audit_events");
    let mut in_pg: HashMap<(String, Uuid), Vec<String>> = HashMap::new();
    for r in &rows {
        in_pg
            .entry((r.get::<_, String>(0), r.get::<_, Uuid>(1)))
            .or_default()
            .push(r.get(2));
    }
    let mut acc = Accounting {
        fault: fault.to_string(),
        sent: ledger.events.len(),
        ..Default::default()
    };
    let mut known = 0usize;
    for s in &ledger.events {
        let key = (s.tenant.clone(), s.event_id);
        let hashes = in_pg.get(&key).map(Vec::as_slice).unwrap_or_default();
        known += hashes.len();
        let archived = archive.map_or(0, |a| a.copies(&s.tenant, s.event_id));
        let copies = hashes.len() + archived;
        if !hashes.is_empty() {
            acc.stored += 1;
        }
        if archived > 0 {
            acc.archived += 1;
        }
        acc.duplicates += copies.saturating_sub(1);
        match s.outcome {
            Outcome::Accepted => {
                acc.accepted += 1;
                if copies == 0 {
                    acc.lost += 1;
                }
                // Also after a 503'd attempt was stored: the hash leaves
                // `received_at` out, so the resend's receipt names the same hash.
                if hashes.iter().any(|h| Some(h) != s.hash.as_ref()) {
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
    // Rows nobody sent are duplicates of nothing, but still wrong.
    acc.duplicates += rows.len() - known;
    if let Some(a) = archive {
        acc.archive_problems = a.problems.clone();
    }
    acc
}

// ---------------------------------------------------------------------------
// The archive, read back from S3
// ---------------------------------------------------------------------------

/// What the archive in S3 holds, checked against the ledger: every manifest's
/// files exist with the SHA-256 and size it records (and nothing else lies under
/// the tenant/day prefix), no multipart upload is left, and each tenant's row
/// count and Merkle root equal those of the ledger's accepted events of that
/// tenant and day (leaves in the archive's order: occurred_at, then event_id).
/// The archiver itself verified the files' event hashes against the manifest
/// before detaching; a matching root here ties the manifest to exactly the
/// events that got a `202`.
#[derive(Debug, Default)]
pub struct ArchiveRead {
    copies: HashMap<(String, Uuid), usize>,
    pub manifests: usize,
    pub rows: u64,
    pub problems: Vec<String>,
}

impl ArchiveRead {
    pub fn copies(&self, tenant: &str, event_id: Uuid) -> usize {
        self.copies.get(&(tenant.to_string(), event_id)).copied().unwrap_or(0)
    }

    pub async fn load(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, ledger: &Ledger) -> ArchiveRead {
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
        let manifest_keys = list_keys(s3, bucket, &format!("{prefix}/_manifests/")).await;
        for key in manifest_keys {
            out.manifests += 1;
            let bytes = get(s3, bucket, &key).await;
            let manifest: stele_archiver::manifest::Manifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    out.problems.push(format!("{key}: {e}"));
                    continue;
                }
            };
            let day: NaiveDate = manifest.dt.parse().expect("manifest dt");
            out.rows += manifest.rows;
            for tenant in &manifest.tenants {
                // Files: exactly the manifest's, with its sizes and SHA-256.
                let tenant_prefix = stele_archiver::layout::tenant_day_prefix(prefix, &tenant.tenant_id, day);
                let mut listed = list_keys(s3, bucket, &tenant_prefix).await;
                listed.sort();
                let mut expected: Vec<String> = tenant.files.iter().map(|f| f.key.clone()).collect();
                expected.sort();
                if listed != expected {
                    out.problems
                        .push(format!("{tenant_prefix}: objects {listed:?}, manifest {expected:?}"));
                }
                for f in &tenant.files {
                    let body = get(s3, bucket, &f.key).await;
                    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
                    if body.len() as u64 != f.bytes || sha != f.sha256 {
                        out.problems
                            .push(format!("{}: size/SHA-256 differ from the manifest", f.key));
                    }
                }
                // Rows: the ledger's accepted events of this tenant and day.
                let mut mine: Vec<&Sent> = ledger
                    .events
                    .iter()
                    .filter(|s| {
                        s.tenant == tenant.tenant_id
                            && s.occurred_at.date_naive() == day
                            && s.outcome == Outcome::Accepted
                    })
                    .collect();
                mine.sort_by_key(|s| (s.occurred_at, s.event_id));
                let mut merkle = stele_archiver::merkle::MerkleBuilder::new();
                for s in &mine {
                    let hash = hex::decode(s.hash.as_deref().unwrap_or_default()).expect("hex hash");
                    merkle.push(&hash);
                }
                if merkle.leaves() == tenant.rows && merkle.root_hex() == tenant.merkle_root {
                    for s in mine {
                        *out.copies.entry((s.tenant.clone(), s.event_id)).or_default() += 1;
                    }
                } else {
                    out.problems.push(format!(
                        "{} {}: manifest {} rows root {}, ledger {} accepted root {}",
                        tenant.tenant_id,
                        manifest.dt,
                        tenant.rows,
                        tenant.merkle_root,
                        merkle.leaves(),
                        merkle.root_hex()
                    ));
                }
            }
        }
        out
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
/// and writing to `db_url`, as `stele dev` wires them.
pub struct Mapping {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
    pub stats: Arc<esm::MappingStats>,
    /// Records each batch-writer invocation reported failed.
    pub failed_items: Arc<AtomicU64>,
}

impl Mapping {
    pub async fn start(env: &TestEnv, stream: &str, db_url: &str, batch_size: usize) -> Mapping {
        let writer = Arc::new(writer(env, db_url).await);
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
            on_failure_queue: None,
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
    let mut config = stele_store::StoreConfig::new(db_url);
    config.connect_timeout = Duration::from_secs(2);
    BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&config).expect("pool")),
        SqsDeadLetters::new(env.sqs().await, env.create_queue(&unique_name("dlq")).await),
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
