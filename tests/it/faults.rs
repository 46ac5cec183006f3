//! Fault tests: a counted stream of events goes through the pipeline (the real
//! ingest handler → Kinesis on LocalStack → the event source mapping emulator →
//! the batch-writer → PostgreSQL → the archiver → S3) while a fault is injected,
//! then every event is accounted for (tests/support/faults.rs): each one that
//! got a `202` is in PostgreSQL or in a verified archive exactly once, and each
//! one that was refused was never stored. Each test prints its accounting table.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use stele_ingest::{Ingest, IngestConfig, KinesisSink, RetryPolicy};
use support::faults::{self, Ledger, Mapping, OwnPostgres};
use support::TestEnv;
use uuid::Uuid;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// Short backoffs so a fault costs little time (the deadline still bounds a request).
fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_secs(4),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        max_attempts: 8,
    }
}

fn ingest(kinesis: aws_sdk_kinesis::Client, stream: &str) -> Ingest<KinesisSink> {
    Ingest::new(IngestConfig::new(stream), KinesisSink::new(kinesis, stream)).with_policy(policy())
}

/// A request the API refuses whole (one unknown field): none of its events may be stored.
fn refused_request(n: usize) -> Vec<Value> {
    let now = Utc::now();
    let mut events = faults::events(n, now, Duration::from_secs(60), 9_000);
    events.push(faults::bad_event(Uuid::new_v4(), now));
    events
}

/// `requests` requests of 50 events (tenants in turn, occurred_at within the
/// last hour), each expected to be accepted.
async fn send(ledger: &mut Ledger, ingest: &Ingest<KinesisSink>, round: &mut usize, requests: usize) {
    let now = Utc::now();
    for _ in 0..requests {
        let tenant = TENANTS[*round % TENANTS.len()];
        let events = faults::events(50, now, Duration::from_secs(3600), *round * 50);
        assert_eq!(
            ledger.post(ingest, tenant, &events, 5).await,
            202,
            "Kinesis is healthy here"
        );
        *round += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_and_restarted_while_batches_are_in_flight_loses_and_duplicates_no_event() {
    let env = TestEnv::get().await;
    let pg = OwnPostgres::start();
    stele_store::migrate(&support::connect(&pg.url).await)
        .await
        .expect("migrate");
    let stream = faults::stream(env, 2).await;
    let ingest = ingest(env.kinesis().await, &stream);
    let mapping = Mapping::start(env, &stream, &pg.url, 100).await;
    let mut ledger = Ledger::new();
    let mut round = 0usize;
    send(&mut ledger, &ingest, &mut round, 4).await;
    assert_eq!(ledger.post(&ingest, "acme", &refused_request(9), 1).await, 400);
    assert!(
        mapping
            .wait_for(Duration::from_secs(30), |m| m.acknowledged() >= 100)
            .await,
        "the writer is writing before the crash"
    );

    // Crash while the mapping is delivering: more requests go in at the same time.
    let dir = pg.dir.clone();
    let crash = tokio::task::spawn_blocking(move || faults::crash_postgres(&dir));
    send(&mut ledger, &ingest, &mut round, 4).await;
    crash.await.expect("crash");
    // While it is down, deliveries fail and are retried (nothing acknowledged wrongly).
    let failed_before = mapping.failed_items.load(Ordering::Relaxed);
    send(&mut ledger, &ingest, &mut round, 2).await;
    assert!(
        mapping
            .wait_for(Duration::from_secs(30), |m| m.failed_items.load(Ordering::Relaxed)
                > failed_before)
            .await,
        "deliveries fail while PostgreSQL is down"
    );
    let dir = pg.dir.clone();
    tokio::task::spawn_blocking(move || faults::restart_postgres(&dir))
        .await
        .expect("restart");

    // A second crash-restart in one go while batches flow.
    send(&mut ledger, &ingest, &mut round, 3).await;
    let dir = pg.dir.clone();
    let again = tokio::task::spawn_blocking(move || faults::restart_postgres(&dir));
    send(&mut ledger, &ingest, &mut round, 3).await;
    again.await.expect("restart");
    assert_eq!(ledger.post(&ingest, "globex", &refused_request(4), 1).await, 400);

    let failed = mapping.failed_items.clone();
    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(90)).await;
    let failed = failed.load(Ordering::Relaxed);
    let mut acc = faults::reconcile(
        "PostgreSQL crashed and restarted while batches are in flight",
        &ledger,
        &support::connect(&pg.url).await,
        None,
    )
    .await;
    acc.check_dead_letters(&ledger, &queues.read(env).await);
    eprintln!("(batch items reported failed and redelivered: {failed})");
    acc.assert_exact();
    assert_eq!(acc.stored, acc.accepted, "everything accepted is in PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_written_twice_concurrently_stores_each_event_once() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let stream = faults::stream(env, 1).await;
    let kinesis = env.kinesis().await;
    let ingest = ingest(kinesis.clone(), &stream);
    let mut ledger = Ledger::new();
    let now = Utc::now();
    for r in 0..8 {
        let events = faults::events(60, now, Duration::from_secs(7200), r * 60);
        assert_eq!(ledger.post(&ingest, TENANTS[r % 3], &events, 5).await, 202);
    }
    assert_eq!(ledger.post(&ingest, "initech", &refused_request(5), 1).await, 400);

    // Two Lambda instances (pools of their own) get the same batch at once,
    // as an event source mapping retry racing a slow first attempt would.
    let (first, second) = (faults::writer(env, &db.url).await, faults::writer(env, &db.url).await);
    let records: Vec<_> = faults::read_stream(&kinesis, &stream)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(records.len(), 480, "every accepted event is on the stream once");
    let mut redelivered = 0;
    for batch in records.chunks(100) {
        let mut pending = batch.to_vec();
        for attempt in 0.. {
            assert!(attempt < 20, "the batch was never written");
            let event = stele_batch_writer::kinesis::event(pending.clone());
            let ((a, _), (b, _)) = tokio::join!(first.process(event.clone()), second.process(event));
            // As the mapping does: retry from the lowest failure either reported.
            let failed: Vec<String> = a
                .batch_item_failures
                .iter()
                .chain(&b.batch_item_failures)
                .filter_map(|f| f.item_identifier.clone())
                .collect();
            let Some(from) = pending.iter().position(|r| failed.contains(&r.kinesis.sequence_number)) else {
                break;
            };
            redelivered += pending.len() - from;
            pending.drain(..from);
        }
    }
    let acc = faults::reconcile(
        "batch-writer invoked twice with the same batch concurrently",
        &ledger,
        &db.client().await,
        None,
    )
    .await;
    eprintln!("(records redelivered after a reported failure: {redelivered})");
    acc.assert_exact();
    assert_eq!(acc.stored, acc.accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_put_faults_through_a_loopback_proxy_lose_no_accepted_event_and_store_none_refused() {
    use support::faults::{FaultProxy, ProxyAction::*};
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let stream = faults::stream(env, 2).await;
    // Only the ingest function's PutRecords go through the proxy; the mapping
    // reads LocalStack directly. The plan repeats: throttling, 500s, refused
    // connections, and answers lost after Kinesis stored the records (the
    // ambiguous case: the SDK or the handler puts them again).
    let proxy = FaultProxy::start(
        &env.aws_endpoint,
        vec![
            Pass,
            Throttle,
            Pass,
            LoseAnswer,
            Refuse,
            Pass,
            ServerError,
            Throttle,
            LoseAnswer,
            Pass,
            Refuse,
        ],
    )
    .await;
    let through_proxy = aws_sdk_kinesis::Client::new(&stele::local::aws::sdk_config(&proxy.endpoint()).await);
    let ingest = ingest(through_proxy, &stream);
    let mapping = Mapping::start(env, &stream, &db.url, 200).await;

    let mut ledger = Ledger::new();
    let now = Utc::now();
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for r in 0..16 {
        let events = faults::events(40, now, Duration::from_secs(3600), r * 40);
        // A client tries a 503'd request 3 times in all, with the same ids.
        let status = ledger.post(&ingest, TENANTS[r % 3], &events, 3).await;
        *answers.entry(status).or_default() += 1;
        if r % 5 == 0 {
            let status = ledger.post(&ingest, TENANTS[r % 3], &refused_request(3), 1).await;
            assert_eq!(status, 400);
        }
    }
    // Then a proxy that loses every answer: the records get in, the caller
    // never hears so, and the API answers 503. One such request is sent again
    // later through the first proxy (same ids) and accepted; the other is not
    // sent again, so it stays "not accepted" (it may be stored; never lost).
    let blackhole = FaultProxy::start(&env.aws_endpoint, vec![LoseAnswer]).await;
    let lossy = self::ingest(
        aws_sdk_kinesis::Client::new(&stele::local::aws::sdk_config(&blackhole.endpoint()).await),
        &stream,
    );
    let resent = faults::events(20, now, Duration::from_secs(3600), 5_000);
    assert_eq!(ledger.post(&lossy, "acme", &resent, 1).await, 503);
    let abandoned = faults::events(20, now, Duration::from_secs(3600), 6_000);
    assert_eq!(ledger.post(&lossy, "globex", &abandoned, 1).await, 503);
    assert_eq!(
        ledger.post(&ingest, "acme", &resent, 5).await,
        202,
        "the resend is accepted"
    );

    proxy.armed.store(false, Ordering::Relaxed);
    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(90)).await;

    let on_stream = faults::read_stream(&env.kinesis().await, &stream).await.len();
    let mut acc = faults::reconcile(
        "Kinesis PutRecords throttled / 500 / refused / answer lost (loopback proxy)",
        &ledger,
        &db.client().await,
        None,
    )
    .await;
    acc.check_dead_letters(&ledger, &queues.read(env).await);
    eprintln!(
        "(proxy: {}; final answers {answers:?}; lossy proxy: {}; records on the stream {on_stream})",
        proxy.stats.summary(),
        blackhole.stats.summary()
    );
    acc.assert_exact();
    assert_eq!(acc.not_accepted, 20, "the abandoned 503 request");
    // A resend after a 503 whose first attempt was stored gets the stored hash
    // in its 202 (received_at is outside the hash): `altered` is 0 above.
    let injected = proxy.stats.throttled.load(Ordering::Relaxed)
        + proxy.stats.refused.load(Ordering::Relaxed)
        + proxy.stats.lost_answers.load(Ordering::Relaxed)
        + proxy.stats.server_errors.load(Ordering::Relaxed);
    assert!(injected >= 5, "faults were injected: {}", proxy.stats.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_dropped_while_batches_flow_lose_and_duplicate_no_event() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let stream = faults::stream(env, 2).await;
    let ingest = ingest(env.kinesis().await, &stream);
    let mapping = Mapping::start(env, &stream, &db.url, 50).await;

    // Terminate every other session of the database every 100 ms until told
    // to stop (bounded: at most 600 rounds).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let admin = db.client().await;
    let terminator = tokio::spawn(async move {
        let mut terminated = 0i64;
        for _ in 0..600 {
            terminated += faults::terminate_backends(&admin).await;
            if tokio::time::timeout(Duration::from_millis(100), stopped.changed())
                .await
                .is_ok()
            {
                break;
            }
        }
        terminated
    });

    let mut ledger = Ledger::new();
    let mut round = 0;
    for _ in 0..4 {
        send(&mut ledger, &ingest, &mut round, 4).await;
        assert_eq!(ledger.post(&ingest, "initech", &refused_request(2), 1).await, 400);
    }
    let accepted = ledger.count(|s| s.outcome == faults::Outcome::Accepted) as u64;
    let caught_up = mapping
        .wait_for(Duration::from_secs(60), |m| m.acknowledged() >= accepted)
        .await;
    let _ = stop.send(true);
    let terminated = terminator.await.expect("terminator");
    assert!(caught_up, "the writer caught up while connections were being dropped");
    let failed = mapping.failed_items.clone();
    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(60)).await;

    let mut acc = faults::reconcile(
        "PostgreSQL connections dropped (pg_terminate_backend every 100 ms)",
        &ledger,
        &db.client().await,
        None,
    )
    .await;
    acc.check_dead_letters(&ledger, &queues.read(env).await);
    eprintln!(
        "(sessions terminated: {terminated}; batch items reported failed and redelivered: {})",
        failed.load(Ordering::Relaxed)
    );
    acc.assert_exact();
    assert_eq!(acc.stored, acc.accepted);
    assert!(terminated > 0, "connections were dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_out_of_order_across_shards_are_each_stored_once() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let stream = faults::stream(env, 4).await;
    let kinesis = env.kinesis().await;
    // One hot tenant spread over 8 partition keys, so its day lands on every shard.
    let mut config = IngestConfig::new(&stream);
    config.hot_tenants = stele_ingest::HotTenants::parse("hot=8").expect("hot tenants");
    let ingest = Ingest::new(config, KinesisSink::new(kinesis.clone(), &stream)).with_policy(policy());
    let mut ledger = Ledger::new();
    let now = Utc::now();
    for r in 0..12 {
        let tenant = if r % 3 == 2 { "acme" } else { "hot" };
        let events = faults::events(50, now, Duration::from_secs(3600), r * 50);
        assert_eq!(ledger.post(&ingest, tenant, &events, 5).await, 202);
    }
    assert_eq!(ledger.post(&ingest, "hot", &refused_request(5), 1).await, 400);

    let records = faults::read_stream(&kinesis, &stream).await;
    let hot_shards: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|(_, r)| r.kinesis.partition_key.starts_with("hot#"))
        .map(|(shard, _)| shard.clone())
        .collect();
    assert!(hot_shards.len() >= 2, "the hot tenant spans shards: {hot_shards:?}");

    // First, every record in a shuffled order across shards (newest first,
    // shards interleaved), in batches of 37, by one writer; then the first
    // batches again, stale, as a late redelivery would bring them.
    let mut shuffled: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
    shuffled.reverse();
    shuffled.sort_by_key(|r| {
        let seq = &r.kinesis.sequence_number;
        seq.bytes()
            .rev()
            .take(6)
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    });
    let writer = faults::writer(env, &db.url).await;
    let batches: Vec<_> = shuffled.chunks(37).collect();
    for batch in batches.iter().chain(batches.iter().take(3)) {
        let response = writer
            .handle_batch(stele_batch_writer::kinesis::event(batch.to_vec()))
            .await;
        assert!(response.batch_item_failures.is_empty(), "a healthy write");
    }
    // Then the mapping delivers every shard again, each shard's poller at its
    // own pace, in parallel.
    let mapping = Mapping::start(env, &stream, &db.url, 100).await;
    mapping.drain(Duration::from_secs(60)).await;

    let acc = faults::reconcile(
        "records out of order across shards (shuffled, stale redelivery, then per-shard pollers)",
        &ledger,
        &db.client().await,
        None,
    )
    .await;
    eprintln!("(the hot tenant's records were on {} shards)", hot_shards.len());
    acc.assert_exact();
    assert_eq!(acc.stored, acc.accepted);
}

/// Two days a few days old, old enough to archive.
fn old_days() -> [chrono::NaiveDate; 2] {
    let today = Utc::now().date_naive();
    [today - chrono::Duration::days(5), today - chrono::Duration::days(4)]
}

/// The pipeline with ingest's window widened to 10 days (events of days old
/// enough to archive are accepted): ingest → Kinesis → mapping → writer.
async fn old_days_pipeline(env: &TestEnv, db: &support::TestDb) -> (Ingest<KinesisSink>, Mapping) {
    let stream = faults::stream(env, 2).await;
    let mut config = IngestConfig::new(&stream);
    config.window.max_lateness = chrono::TimeDelta::days(10);
    let ingest = Ingest::new(config, KinesisSink::new(env.kinesis().await, &stream)).with_policy(policy());
    let mapping = Mapping::start(env, &stream, &db.url, 200).await;
    (ingest, mapping)
}

/// `requests` requests of 50 events, the days and tenants in turn, each accepted.
async fn send_to_days(
    ledger: &mut Ledger,
    ingest: &Ingest<KinesisSink>,
    days: &[chrono::NaiveDate],
    requests: usize,
    seed: usize,
) {
    for r in 0..requests {
        let evening = days[r % days.len()].and_hms_opt(18, 0, 0).expect("time").and_utc();
        let events = faults::events(50, evening, Duration::from_secs(6 * 3600), seed + r * 50);
        assert_eq!(ledger.post(ingest, TENANTS[r % 3], &events, 5).await, 202);
    }
}

/// Events a few days old (ingest's window widened) for 3 tenants over two
/// days, through ingest → Kinesis → mapping → writer, drained. Returns the
/// ledger, the two days and the mapping's queues.
async fn old_days_in_postgres(env: &TestEnv, db: &support::TestDb) -> (Ledger, [chrono::NaiveDate; 2], faults::Queues) {
    let (ingest, mapping) = old_days_pipeline(env, db).await;
    let days = old_days();
    let mut ledger = Ledger::new();
    send_to_days(&mut ledger, &ingest, &days, 12, 0).await;
    assert_eq!(ledger.post(&ingest, "acme", &refused_request(4), 1).await, 400);
    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(60)).await;
    (ledger, days, queues)
}

/// Wait (bounded) until `table` holds `rows` rows.
async fn wait_rows(client: &tokio_postgres::Client, table: &str, rows: i64) {
    let sql = format!("SELECT count(*) FROM {table}");
    let mut n = -1;
    for _ in 0..600 {
        n = client.query_one(&sql, &[]).await.expect("count").get(0);
        if n >= rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, rows, "{table}");
}

fn archiver<S: stele_archiver::ArchiveStore + 'static>(
    db: &support::TestDb,
    bucket: &str,
    store: std::sync::Arc<S>,
) -> stele_archiver::PgArchiver<S> {
    let mut config = stele_archiver::ArchiverConfig::new(bucket);
    config.prefix = ARCHIVE_PREFIX.into();
    config.retention = chrono::Duration::days(1);
    config.max_lateness = chrono::Duration::days(1);
    config.file_rows = 60; // several files per tenant and day
    stele_archiver::Archiver::with_postgres(store, db.store_config(), config)
}

const ARCHIVE_PREFIX: &str = "audit";

fn run_deadline() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(600)
}

/// Both days' partitions are gone from PostgreSQL.
async fn assert_partitions_gone(client: &tokio_postgres::Client, days: &[chrono::NaiveDate]) {
    for day in days {
        let name = stele_store::partitions::partition_name(*day);
        let exists: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&name])
            .await
            .expect("to_regclass")
            .get(0);
        assert_eq!(exists, None, "{name} was dropped after archiving");
    }
}

/// An archive run (a fresh archiver, as a new invocation) that must end clean.
async fn clean_run<S: stele_archiver::ArchiveStore + 'static>(
    db: &support::TestDb,
    bucket: &str,
    store: std::sync::Arc<S>,
) -> stele_archiver::RunReport {
    let report = archiver(db, bucket, store).run(Utc::now(), run_deadline()).await;
    assert_eq!(report.error, None, "{report:?}");
    assert!(report.remaining.is_empty(), "{report:?}");
    report
}

/// The real S3 adapter, except that chosen calls fail: every `every`-th write
/// call (create/part/complete/put of the manifest) fails, `budget` times in all.
struct FlakyS3 {
    inner: stele_archiver::S3Store,
    every: u64,
    budget: u64,
    calls: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl FlakyS3 {
    fn trip(&self, op: &'static str, key: &str) -> Result<(), stele_archiver::error::StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n.checked_rem(self.every) == Some(0) && self.failed.load(Ordering::SeqCst) < self.budget {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(stele_archiver::error::StoreError::new(
                op,
                key,
                "InternalError: We encountered an internal error (injected)",
            ));
        }
        Ok(())
    }
}

impl stele_archiver::ArchiveStore for FlakyS3 {
    async fn create_upload(&self, key: &str) -> Result<String, stele_archiver::error::StoreError> {
        self.trip("CreateMultipartUpload", key)?;
        self.inner.create_upload(key).await
    }
    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: i32,
        body: bytes::Bytes,
    ) -> Result<String, stele_archiver::error::StoreError> {
        self.trip("UploadPart", key)?;
        self.inner.upload_part(key, id, n, body).await
    }
    async fn complete_upload(
        &self,
        key: &str,
        id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), stele_archiver::error::StoreError> {
        self.trip("CompleteMultipartUpload", key)?;
        self.inner.complete_upload(key, id, parts).await
    }
    async fn abort_upload(&self, key: &str, id: &str) -> Result<(), stele_archiver::error::StoreError> {
        self.inner.abort_upload(key, id).await
    }
    async fn list_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<stele_archiver::store::PendingUpload>, stele_archiver::error::StoreError> {
        self.inner.list_uploads(prefix).await
    }
    async fn put(&self, key: &str, body: bytes::Bytes) -> Result<(), stele_archiver::error::StoreError> {
        self.trip("PutObject", key)?;
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, stele_archiver::error::StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, stele_archiver::error::StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, stele_archiver::error::StoreError> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<stele_archiver::store::ObjectInfo>, stele_archiver::error::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), stele_archiver::error::StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_during_archive_uploads_end_with_every_event_archived_exactly_once() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let bucket = support::unique_name("faults");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let (ledger, days, _) = old_days_in_postgres(env, &db).await;

    // Every 4th S3 write fails, 6 times in all; each failure fails the run,
    // and the next scheduled run (a fresh invocation) picks up from there.
    let flaky = std::sync::Arc::new(FlakyS3 {
        inner: stele_archiver::S3Store::new(s3.clone(), &bucket),
        every: 4,
        budget: 6,
        calls: Default::default(),
        failed: Default::default(),
    });
    let client = db.client().await;
    let mut failed_runs = 0;
    for run in 0.. {
        assert!(run < 20, "the archive never completed");
        let report = archiver(&db, &bucket, flaky.clone())
            .run(Utc::now(), run_deadline())
            .await;
        if report.error.is_none() && report.remaining.is_empty() {
            break;
        }
        failed_runs += 1;
        // Whatever failed, no accepted event is nowhere and nothing refused appears.
        let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
        let mid = faults::reconcile("mid-run", &ledger, &client, Some(&archive)).await;
        assert_eq!(
            (mid.lost, mid.refused_but_stored),
            (0, 0),
            "after a failed run: {mid:?}"
        );
    }
    assert!(failed_runs >= 1, "S3 errors failed at least one run");

    let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
    let acc = faults::reconcile(
        "S3 errors during archive uploads (every 4th S3 write, 6 in all)",
        &ledger,
        &client,
        Some(&archive),
    )
    .await;
    eprintln!(
        "(S3 errors injected: {}, failed runs before a clean one: {failed_runs}, manifests: {}, archived rows: {})",
        flaky.failed.load(Ordering::SeqCst),
        archive.manifests,
        archive.rows
    );
    acc.assert_exact();
    assert_eq!(
        (acc.archived, acc.stored),
        (acc.accepted, 0),
        "everything accepted is archived, nothing left hot"
    );
    assert_partitions_gone(&client, &days).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiver_killed_after_each_step_heals_with_every_event_archived_exactly_once() {
    use stele_archiver::FailPoint;
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let bucket = support::unique_name("faults");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let (ledger, days, _) = old_days_in_postgres(env, &db).await;
    let store = std::sync::Arc::new(stele_archiver::S3Store::new(s3.clone(), &bucket));
    let client = db.client().await;

    // One invocation dies after each step in turn (each a fresh archiver, as a
    // new Lambda invocation after a crash), then a clean one heals everything.
    for fail_point in [
        FailPoint::AfterUpload,
        FailPoint::AfterManifest,
        FailPoint::AfterVerify,
        FailPoint::AfterDetach,
    ] {
        let report = archiver(&db, &bucket, store.clone())
            .with_fail_point(Some(fail_point))
            .run(Utc::now(), run_deadline())
            .await;
        assert!(
            report.error.is_some(),
            "{fail_point:?}: the run was cut off: {report:?}"
        );
        let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
        let mid = faults::reconcile(&format!("killed {fail_point:?}"), &ledger, &client, Some(&archive)).await;
        // Until the detach is recorded an event may be both hot and archived;
        // it is never nowhere.
        assert_eq!(
            (mid.lost, mid.refused_but_stored),
            (0, 0),
            "after {fail_point:?}: {mid:?}"
        );
        eprintln!(
            "(killed {fail_point:?}: stored {}, archived {}, lost {})",
            mid.stored, mid.archived, mid.lost
        );
    }
    clean_run(&db, &bucket, store.clone()).await;

    let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
    let acc = faults::reconcile(
        "archiver killed after upload, manifest, verify, detach; then a clean run",
        &ledger,
        &client,
        Some(&archive),
    )
    .await;
    acc.assert_exact();
    assert_eq!(
        (acc.archived, acc.stored),
        (acc.accepted, 0),
        "everything accepted is archived, nothing left hot"
    );
    assert_partitions_gone(&client, &days).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_archivers_started_together_archive_every_event_exactly_once() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let bucket = support::unique_name("faults");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let (ledger, days, queues) = old_days_in_postgres(env, &db).await;
    let client = db.client().await;

    // Two invocations at once (as a scheduled run overlapping a manual
    // `stele archive`), each with its own PostgreSQL pool and S3 client.
    let store = || std::sync::Arc::new(stele_archiver::S3Store::new(s3.clone(), &bucket));
    let (first, second) = (archiver(&db, &bucket, store()), archiver(&db, &bucket, store()));
    let (a, b) = tokio::join!(
        first.run(Utc::now(), run_deadline()),
        second.run(Utc::now(), run_deadline())
    );
    assert_eq!((a.error.as_deref(), b.error.as_deref()), (None, None), "{a:?} {b:?}");
    let archived_by = |r: &stele_archiver::RunReport| -> Vec<String> {
        r.archived
            .iter()
            .filter(|p| p.rows > 0 || p.dropped)
            .map(|p| p.dt.clone())
            .collect()
    };
    let (by_a, by_b) = (archived_by(&a), archived_by(&b));
    let mut each: Vec<String> = by_a.iter().chain(&by_b).cloned().collect();
    each.sort();
    let expected: Vec<String> = days.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
    assert_eq!(each, expected, "each day archived by exactly one run");
    // A later run finds nothing left.
    let after = clean_run(&db, &bucket, store()).await;
    assert!(archived_by(&after).is_empty(), "{after:?}");

    let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
    let mut acc = faults::reconcile(
        "two archiver runs started together (separate pools), then a third",
        &ledger,
        &client,
        Some(&archive),
    )
    .await;
    acc.check_dead_letters(&ledger, &queues.read(env).await);
    eprintln!(
        "(run A: busy {}, archived {by_a:?}; run B: busy {}, archived {by_b:?}; manifests {} of {} versions, archived rows {})",
        a.busy, b.busy, archive.manifests, archive.manifest_versions, archive.rows
    );
    acc.assert_exact();
    assert_eq!(
        (acc.archived, acc.stored),
        (acc.accepted, 0),
        "everything accepted is archived, nothing left hot"
    );
    assert_eq!((archive.manifests, archive.manifest_versions), (2, 2));
    assert_partitions_gone(&client, &days).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_for_archived_days_are_archived_once_in_supplements() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let bucket = support::unique_name("faults");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let client = db.client().await;
    let store = std::sync::Arc::new(stele_archiver::S3Store::new(s3.clone(), &bucket));
    let (ingest, mapping) = old_days_pipeline(env, &db).await;
    let days = old_days();
    let mut ledger = Ledger::new();
    send_to_days(&mut ledger, &ingest, &days, 12, 0).await;
    assert_eq!(ledger.post(&ingest, "acme", &refused_request(4), 1).await, 400);
    wait_rows(&client, "audit_events", 600).await;
    clean_run(&db, &bucket, store.clone()).await;
    assert_partitions_gone(&client, &days).await;

    // Twice: more events for both archived days go through the pipeline (the
    // mapping keeps running, as deployed) and land in late_events; the next
    // run adds them to each day as a supplement (a new manifest version).
    let mut supplemented = Vec::new();
    for round in 1..=2 {
        send_to_days(&mut ledger, &ingest, &days, 4, round * 10_000).await;
        assert_eq!(ledger.post(&ingest, "globex", &refused_request(3), 1).await, 400);
        wait_rows(&client, "late_events", 200).await;
        // Before the supplement: the earlier version is in force, the late
        // rows are hot; each accepted event is in exactly one of them.
        let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
        let mid = faults::reconcile(&format!("late round {round}"), &ledger, &client, Some(&archive)).await;
        assert_eq!(
            (mid.lost, mid.duplicates, mid.stored, mid.altered),
            (0, 0, 200, 0),
            "before supplement {round}: {mid:?}"
        );
        assert!(mid.archive_problems.is_empty(), "{mid:?}");
        let report = clean_run(&db, &bucket, store.clone()).await;
        supplemented.push(report.archived.iter().map(|p| p.supplemented).sum::<u64>());
        wait_rows(&client, "late_events", 0).await;
    }
    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(60)).await;

    let archive = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
    let mut acc = faults::reconcile(
        "late events for archived days (2 rounds, each archived as a supplement)",
        &ledger,
        &client,
        Some(&archive),
    )
    .await;
    acc.check_dead_letters(&ledger, &queues.read(env).await);
    eprintln!(
        "(late rows supplemented per run: {supplemented:?}; manifests in force {} of {} versions, archived rows {}, read {})",
        archive.manifests, archive.manifest_versions, archive.rows, archive.rows_read
    );
    acc.assert_exact();
    assert_eq!(
        (acc.archived, acc.stored),
        (acc.accepted, 0),
        "everything accepted is archived, nothing left hot"
    );
    assert_eq!(supplemented, [200, 200]);
    assert_eq!(
        (archive.manifests, archive.manifest_versions),
        (2, 6),
        "v1, v2, v3 of each day"
    );
    for day in days {
        let key = stele_archiver::layout::manifest_version_key(ARCHIVE_PREFIX, day, 3);
        let v3: stele_archiver::manifest::Manifest =
            serde_json::from_slice(&support::archive::get(&s3, &bucket, &key).await).expect("manifest");
        assert_eq!(v3.version, 3);
        assert_eq!(
            v3.supersedes.map(|s| s.key),
            Some(stele_archiver::layout::manifest_version_key(ARCHIVE_PREFIX, day, 2))
        );
        assert_eq!(v3.supplement.map(|s| s.rows), Some(100));
    }

    // The reader is not blind: a copy of an archived part under the next part
    // number (rows no manifest in force lists) is seen.
    let part = stele_archiver::layout::part_key(ARCHIVE_PREFIX, "acme", days[0], 0);
    let copy = stele_archiver::layout::part_key(ARCHIVE_PREFIX, "acme", days[0], 99);
    s3.copy_object()
        .bucket(&bucket)
        .copy_source(format!("{bucket}/{part}"))
        .key(&copy)
        .send()
        .await
        .expect("copy a part");
    let tampered = faults::ArchiveRead::load(&s3, &bucket, ARCHIVE_PREFIX).await;
    assert!(
        tampered.problems.iter().any(|p| p.contains(&copy)),
        "{:?}",
        tampered.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_ids_resent_with_a_new_occurred_at_are_dead_lettered_as_conflicts_never_stored() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    db.migrated_client().await;
    let stream = faults::stream(env, 2).await;
    let ingest = ingest(env.kinesis().await, &stream);
    let mapping = Mapping::start(env, &stream, &db.url, 100).await;
    let mut ledger = Ledger::new();
    let now = Utc::now();
    let mut sent: Vec<(&str, Vec<Value>)> = Vec::new();
    for r in 0..8 {
        let tenant = TENANTS[r % 3];
        let events = faults::events(50, now, Duration::from_secs(3600), r * 50);
        assert_eq!(ledger.post(&ingest, tenant, &events, 5).await, 202);
        sent.push((tenant, events));
    }
    assert_eq!(ledger.post(&ingest, "acme", &refused_request(4), 1).await, 400);

    // Clients retry accepted events with a fresh occurred_at (same id, other
    // content), each request mixing such resends with new events and with
    // plain retries (same content: a duplicate, not a conflict). Some ids are
    // resent twice, each time with another timestamp. Ingest accepts them all.
    let mut conflicting = 0;
    for (r, (tenant, events)) in sent.iter().enumerate() {
        let mut request = faults::events(10, Utc::now(), Duration::from_secs(60), 20_000 + r * 10);
        for (i, body) in events.iter().enumerate() {
            if i % 7 == 0 {
                let mut resent = body.clone();
                let fresh = Utc::now() + chrono::Duration::microseconds((r * 100 + i) as i64);
                resent["occurred_at"] = stele_core::event::timestamp::format(&fresh).into();
                request.push(resent);
                conflicting += 1;
            } else if i % 11 == 0 {
                request.push(body.clone());
            }
        }
        assert_eq!(ledger.post(&ingest, tenant, &request, 5).await, 202);
        // Once more for a few of them, later and again with a new timestamp.
        let again: Vec<Value> = events
            .iter()
            .step_by(21)
            .map(|body| {
                let mut resent = body.clone();
                let fresh = Utc::now() + chrono::Duration::seconds(1);
                resent["occurred_at"] = stele_core::event::timestamp::format(&fresh).into();
                resent
            })
            .collect();
        conflicting += again.len();
        assert_eq!(ledger.post(&ingest, tenant, &again, 5).await, 202);
    }
    assert_eq!(
        ledger.conflicts().len(),
        conflicting,
        "every resend with a new time got a 202"
    );

    let queues = mapping.queues.clone();
    mapping.drain(Duration::from_secs(60)).await;
    let letters = queues.read(env).await;
    let mut acc = faults::reconcile(
        "accepted ids resent with a fresh occurred_at (conflicts)",
        &ledger,
        &db.client().await,
        None,
    )
    .await;
    acc.check_dead_letters(&ledger, &letters);
    eprintln!(
        "(dead letters: {} from the writer, {} from the mapping)",
        letters.writer.len(),
        letters.on_failure.len()
    );
    acc.assert_exact();
    assert_eq!(acc.stored, acc.accepted, "the first content of every id is stored");
    assert_eq!(acc.conflicts_dead_lettered, conflicting);
}
