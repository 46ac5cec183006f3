//! The archiver against real PostgreSQL and LocalStack S3: old partitions end
//! up in S3 as Parquet that DuckDB (the Athena stand-in) reads back with the
//! same per-tenant counts and hash roots Postgres had; crashes after each step
//! heal on the next run, on an Object Lock bucket too; an S3 failure leaves
//! the partition attached.

use crate::support;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use stele_archiver::error::StoreError;
use stele_archiver::store::{ObjectInfo, PendingUpload};
use stele_archiver::{ArchiveStore, Archiver, ArchiverConfig, FailPoint, S3Store};
use stele_store::archive_jobs::{self, JobState, TableStatus};
use stele_store::partitions;
use tokio_postgres::Client;

const PREFIX: &str = "audit";

fn days_ago(n: i64) -> NaiveDate {
    Utc::now().date_naive() - chrono::Duration::days(n)
}

/// `n` rows over `tenants` tenants on `day`, with JSON, nulls and distinct hashes.
async fn fill(client: &Client, day: NaiveDate, n: i32, tenants: i32) {
    partitions::ensure_days(client, &[day]).await.expect("partition");
    client
        .execute(
            "INSERT INTO audit_events (tenant_id, event_id, occurred_at, received_at, category, action, outcome,
                 actor_id, actor_type, actor_ip, changes, metadata, source_service, schema_version, event_hash,
                 kinesis_shard, kinesis_seq)
             SELECT 'tenant-' || (g % $3), gen_random_uuid(),
                    ($1::date::timestamp + make_interval(secs => (g % 86000) + (g % 997) / 1000.0)) AT TIME ZONE 'UTC',
                    ($1::date::timestamp + make_interval(secs => (g % 86000) + 1)) AT TIME ZONE 'UTC',
                    'audit', 'user.login', CASE WHEN g % 7 = 0 THEN 'failure' ELSE 'success' END,
                    'user-' || (g % 17), 'user', CASE WHEN g % 3 = 0 THEN NULL ELSE '10.0.0.' || (g % 255) END,
                    CASE WHEN g % 5 = 0 THEN '{\"before\": {\"a\": 1}, \"after\": {\"a\": 2}}'::jsonb END,
                    jsonb_build_object('k', g, 'note', 'héllo'), 'svc', 1,
                    sha256(('e' || g || $1::text)::bytea), 'shardId-000000000000', g::text
               FROM generate_series(1, $2) g",
            &[&day, &n, &tenants],
        )
        .await
        .expect("insert rows");
    rehash(client, &partitions::partition_name(day)).await;
}

/// Gives every row of `partition` the hash of its content, as the batch-writer would
/// have (the SQL above cannot canonicalise JSON): the archiver re-hashes every row.
async fn rehash(client: &Client, partition: &str) {
    use futures_util::TryStreamExt;
    let sql = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        stele_store::archive_db::export_sql(partition)
    );
    let copy = client.copy_out(&sql).await.expect("export rows");
    let rows: Vec<_> =
        tokio_postgres::binary_copy::BinaryCopyOutStream::new(copy, stele_store::columns::export_copy_types())
            .try_collect()
            .await
            .expect("read rows");
    let (mut ids, mut hashes) = (Vec::new(), Vec::new());
    for row in &rows {
        let event = stele_store::event_of(row).expect("readable").expect("an event").event;
        ids.push(event.event_id);
        hashes.push(event.compute_hash().0.to_vec());
    }
    client
        .execute(
            &format!("UPDATE {partition} SET event_hash = u.h FROM unnest($1::uuid[], $2::bytea[]) AS u(id, h) WHERE event_id = u.id"),
            &[&ids, &hashes],
        )
        .await
        .expect("rehash");
}

fn archiver<S: ArchiveStore + 'static>(
    db: &support::TestDb,
    store: S,
    file_rows: u64,
) -> stele_archiver::PgArchiver<S> {
    let mut config = ArchiverConfig::new("unused");
    config.prefix = PREFIX.into();
    config.file_rows = file_rows;
    Archiver::with_postgres(Arc::new(store), db.store_config(), config)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

/// (tenant, rows, root) per tenant as Postgres has them, in archive order.
async fn pg_roots(db: &support::TestDb, day: NaiveDate) -> Vec<(String, u64, String)> {
    let pg = stele_store::PgArchiveDb::new(db.store_config());
    stele_archiver::export::postgres_roots(&pg, &partitions::partition_name(day))
        .await
        .expect("roots")
        .roots
}

async fn pending_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list uploads");
    out.uploads().len()
}

fn as_map(roots: &[(String, u64, String)]) -> BTreeMap<String, (u64, String)> {
    roots.iter().map(|(t, n, r)| (t.clone(), (*n, r.clone()))).collect()
}

fn duck_map(v: &Value) -> BTreeMap<String, (u64, String)> {
    v["tenants"]
        .as_object()
        .expect("tenants")
        .iter()
        .map(|(t, x)| {
            (
                t.clone(),
                (
                    x["rows"].as_u64().expect("rows"),
                    x["root"].as_str().expect("root").to_string(),
                ),
            )
        })
        .collect()
}

/// Exactly one archive of `day`: the job is done, the table gone, no upload
/// pending, the objects in S3 are exactly the manifest's, and the manifest's
/// tenants, counts and roots are what Postgres had.
async fn assert_one_archive(
    client: &Client,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    day: NaiveDate,
    before: &[(String, u64, String)],
) -> Value {
    let name = partitions::partition_name(day);
    let job = archive_jobs::get(client, &name).await.expect("job").expect("a job row");
    assert_eq!(job.state, JobState::Done, "{job:?}");
    assert_eq!(
        archive_jobs::table_status(client, &name).await.expect("status"),
        TableStatus::Absent
    );
    assert_eq!(
        pending_uploads(s3, bucket).await,
        0,
        "unfinished multipart uploads left"
    );
    let manifest_key = job.manifest_key.clone().expect("manifest key");
    let bytes = support::archive::get(s3, bucket, &manifest_key).await;
    assert_eq!(Some(hex::encode(Sha256::digest(&bytes))), job.manifest_sha256);
    let manifest: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let mut expected_keys: Vec<String> = manifest["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .flat_map(|t| t["files"].as_array().expect("files").iter())
        .map(|f| f["key"].as_str().expect("key").to_string())
        .collect();
    expected_keys.push(manifest_key.clone());
    expected_keys.sort();
    let in_bucket: Vec<String> = support::archive::list_keys(s3, bucket, "")
        .await
        .into_iter()
        .filter(|k| k.contains(&format!("dt={}", day.format("%Y-%m-%d"))))
        .collect();
    assert_eq!(
        in_bucket, expected_keys,
        "objects of the day are exactly the manifest's"
    );
    let from_manifest: Vec<(String, u64, String)> = manifest["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["tenant_id"].as_str().expect("tenant").to_string(),
                t["rows"].as_u64().expect("rows"),
                t["merkle_root"].as_str().expect("root").to_string(),
            )
        })
        .collect();
    assert_eq!(from_manifest, before);
    assert_eq!(job.rows, Some(before.iter().map(|t| t.1 as i64).sum()));
    manifest
}

#[tokio::test]
async fn old_partitions_are_archived_detached_and_dropped_and_duckdb_reads_what_postgres_had() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;

    let (old, empty, recent) = (days_ago(40), days_ago(35), days_ago(1));
    fill(&client, old, 5_000, 3).await;
    partitions::ensure_days(&client, &[empty])
        .await
        .expect("empty partition");
    fill(&client, recent, 100, 2).await;
    let before = pg_roots(&db, old).await;
    assert_eq!(before.len(), 3);

    // Files of at most 1 000 rows: every tenant's day spans several parts.
    let archiver = archiver(&db, S3Store::new(s3.clone(), &bucket), 1_000);
    let report = archiver.run(Utc::now(), deadline()).await;
    assert_eq!(report.error, None, "{report:?}");
    let archived: Vec<&str> = report.archived.iter().map(|r| r.partition.as_str()).collect();
    assert_eq!(
        archived,
        [partitions::partition_name(old), partitions::partition_name(empty)]
    );

    // The old day: one correct archive, table gone; DuckDB agrees with Postgres.
    let manifest = assert_one_archive(&client, &s3, &bucket, old, &before).await;
    assert_eq!(manifest["rows"], 5_000);
    assert!(manifest["files"].as_u64().expect("files") >= 6, "{}", manifest["files"]);
    let duck = support::archive::duckdb_readback(&s3, &bucket, PREFIX).await;
    assert_eq!(duck["rows"], 5_000);
    assert_eq!(duck_map(&duck), as_map(&before));
    assert_eq!(duck["days"], serde_json::json!([old.format("%Y-%m-%d").to_string()]));
    assert_eq!(duck["types"]["occurred_at"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(duck["types"]["schema_version"], "INTEGER");
    assert_eq!(duck["types"]["metadata"], "VARCHAR");

    // The empty day: archived with an empty manifest that links to the old day's.
    let empty_job = archive_jobs::get(&client, &partitions::partition_name(empty))
        .await
        .expect("job")
        .expect("row");
    assert_eq!(
        (empty_job.state, empty_job.rows, empty_job.files),
        (JobState::Done, Some(0), Some(0))
    );
    let empty_manifest: Value = serde_json::from_slice(
        &support::archive::get(&s3, &bucket, empty_job.manifest_key.as_deref().expect("key")).await,
    )
    .expect("json");
    let old_bytes = support::archive::get(
        &s3,
        &bucket,
        &format!("{PREFIX}/_manifests/dt={}.json", old.format("%Y-%m-%d")),
    )
    .await;
    assert_eq!(
        empty_manifest["previous_manifest"]["sha256"],
        hex::encode(Sha256::digest(&old_bytes))
    );
    assert_eq!(manifest["previous_manifest"], Value::Null);

    // The recent day is untouched, still attached with its rows; no job for it.
    let recent_name = partitions::partition_name(recent);
    assert_eq!(
        archive_jobs::table_status(&client, &recent_name).await.expect("status"),
        TableStatus::Attached
    );
    assert_eq!(archive_jobs::get(&client, &recent_name).await.expect("job"), None);
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {recent_name}"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 100);

    // A second run has nothing to do and changes nothing.
    let keys = support::archive::list_keys(&s3, &bucket, "").await;
    let again = archiver.run(Utc::now(), deadline()).await;
    assert!(again.archived.is_empty() && again.error.is_none(), "{again:?}");
    assert_eq!(support::archive::list_keys(&s3, &bucket, "").await, keys);
    // The archived day is closed: the partition manager will not re-create it.
    let ensured = partitions::ensure_days(&client, &[old]).await.expect("ensure");
    assert_eq!(ensured.closed, [old]);
}

#[tokio::test]
async fn dry_run_and_recent_partitions_change_nothing() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let (old, recent) = (days_ago(45), days_ago(2));
    fill(&client, old, 300, 2).await;
    fill(&client, recent, 10, 1).await;
    let archiver = archiver(&db, S3Store::new(s3.clone(), &bucket), 1 << 20);

    let plan = archiver
        .archive_partition(&partitions::partition_name(old), true, Utc::now(), deadline())
        .await
        .expect("dry run");
    assert!(plan.eligible && plan.dry_run);
    assert_eq!(plan.rows, 300);
    assert_eq!(plan.tenants.len(), 2);
    let refused = archiver
        .archive_partition(&partitions::partition_name(recent), false, Utc::now(), deadline())
        .await
        .expect_err("recent partitions are not eligible");
    assert!(refused.to_string().contains("not eligible"), "{refused}");

    assert!(support::archive::list_keys(&s3, &bucket, "").await.is_empty());
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM archive_jobs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(jobs, 0);
    for day in [old, recent] {
        let status = archive_jobs::table_status(&client, &partitions::partition_name(day))
            .await
            .expect("status");
        assert_eq!(status, TableStatus::Attached);
    }
}

/// Create `bucket` as Terraform does by default: Object Lock on (which turns
/// versioning on), every new object under a GOVERNANCE default retention.
async fn create_locked_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    };
    s3.create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create a locked bucket");
    let retention = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::Governance)
        .days(1)
        .build();
    s3.put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(ObjectLockRule::builder().default_retention(retention).build())
                .build(),
        )
        .send()
        .await
        .expect("default retention");
}

async fn crash_then_heal(fail_point: FailPoint) {
    crash_then_heal_in(fail_point, false).await;
}

/// Crash at `fail_point`, heal with a second run; returns the S3 client and
/// the bucket (object-locked when `locked`).
async fn crash_then_heal_in(fail_point: FailPoint, locked: bool) -> (aws_sdk_s3::Client, String) {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    let s3 = env.s3().await;
    if locked {
        create_locked_bucket(&s3, &bucket).await;
    } else {
        env.create_bucket(&bucket).await;
    }
    let day = days_ago(31 + fail_point as i64);
    fill(&client, day, 2_000, 2).await;
    let before = pg_roots(&db, day).await;

    let crashing = archiver(&db, S3Store::new(s3.clone(), &bucket), 700).with_fail_point(Some(fail_point));
    let report = crashing.run(Utc::now(), deadline()).await;
    let error = report.error.expect("the injected crash fails the run");
    assert!(error.contains("injected failure"), "{error}");
    let job = archive_jobs::get(&client, &partitions::partition_name(day))
        .await
        .expect("job")
        .expect("row");
    assert_ne!(job.state, JobState::Done);
    if fail_point != FailPoint::AfterDetach {
        // Nothing is detached unless verified, and the crash came before detaching.
        let status = archive_jobs::table_status(&client, &partitions::partition_name(day))
            .await
            .expect("status");
        assert_eq!(status, TableStatus::Attached, "{fail_point:?}");
    }

    let healed = archiver(&db, S3Store::new(s3.clone(), &bucket), 700)
        .run(Utc::now(), deadline())
        .await;
    assert_eq!(healed.error, None, "{healed:?}");
    assert_one_archive(&client, &s3, &bucket, day, &before).await;
    let duck = support::archive::duckdb_readback(&s3, &bucket, PREFIX).await;
    assert_eq!(duck_map(&duck), as_map(&before), "no lost or duplicated rows");
    let attempts = archive_jobs::get(&client, &partitions::partition_name(day))
        .await
        .expect("job")
        .expect("row")
        .attempts;
    assert_eq!(attempts, 2);
    (s3, bucket)
}

#[tokio::test]
async fn crash_after_upload_is_healed_by_the_next_run() {
    crash_then_heal(FailPoint::AfterUpload).await;
}

#[tokio::test]
async fn crash_after_manifest_is_healed_by_the_next_run() {
    crash_then_heal(FailPoint::AfterManifest).await;
}

#[tokio::test]
async fn crash_after_verify_is_healed_by_the_next_run() {
    crash_then_heal(FailPoint::AfterVerify).await;
}

#[tokio::test]
async fn crash_after_detach_is_healed_by_the_next_run() {
    crash_then_heal(FailPoint::AfterDetach).await;
}

/// The deployed archive bucket has Object Lock on: the re-export after a crash
/// writes new versions over locked ones and hides stale parts with delete
/// markers, which the lock allows; every version the first run wrote stays,
/// under retention, and cannot be deleted.
#[tokio::test]
async fn crash_recovery_works_on_an_object_locked_bucket_and_destroys_no_version() {
    let (s3, bucket) = crash_then_heal_in(FailPoint::AfterManifest, true).await;
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("list versions");
    let current = support::archive::list_keys(&s3, &bucket, "").await;
    let all = versions.versions();
    assert!(
        all.len() > current.len(),
        "the crashed run's versions are kept beside the current ones: {} versions, {} current",
        all.len(),
        current.len()
    );
    for v in all {
        let (key, id) = (v.key().expect("key"), v.version_id().expect("version id"));
        let retention = s3
            .get_object_retention()
            .bucket(&bucket)
            .key(key)
            .version_id(id)
            .send()
            .await
            .expect("retention")
            .retention
            .expect("a retention");
        assert_eq!(
            retention.mode(),
            Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Governance),
            "{key}"
        );
    }
    let oldest = all
        .iter()
        .find(|v| v.is_latest() == Some(false))
        .expect("a noncurrent version");
    let deleted = s3
        .delete_object()
        .bucket(&bucket)
        .key(oldest.key().expect("key"))
        .version_id(oldest.version_id().expect("id"))
        .send()
        .await;
    let refused = format!(
        "{}",
        aws_sdk_s3::error::DisplayErrorContext(deleted.expect_err("a locked version was deleted"))
    );
    assert!(refused.contains("AccessDenied"), "{refused}");
}

/// The real S3 adapter, except that `upload_part` fails after `ok_parts` parts.
struct FlakyS3 {
    inner: S3Store,
    ok_parts: u64,
    parts: AtomicU64,
}

impl ArchiveStore for FlakyS3 {
    async fn create_upload(&self, key: &str) -> Result<String, StoreError> {
        self.inner.create_upload(key).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: i32, body: Bytes) -> Result<String, StoreError> {
        if self.parts.fetch_add(1, Ordering::SeqCst) >= self.ok_parts {
            return Err(StoreError::new("UploadPart", key, "connection reset (injected)"));
        }
        self.inner.upload_part(key, id, n, body).await
    }
    async fn complete_upload(&self, key: &str, id: &str, parts: &[(i32, String)]) -> Result<(), StoreError> {
        self.inner.complete_upload(key, id, parts).await
    }
    async fn abort_upload(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.inner.abort_upload(key, id).await
    }
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.inner.list_uploads(prefix).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn s3_failure_mid_upload_leaves_the_partition_attached_and_the_next_run_finishes() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let day = days_ago(50);
    fill(&client, day, 3_000, 3).await;
    let before = pg_roots(&db, day).await;
    let name = partitions::partition_name(day);

    // Two files go up, the third fails mid-upload.
    let flaky = FlakyS3 {
        inner: S3Store::new(s3.clone(), &bucket),
        ok_parts: 2,
        parts: AtomicU64::new(0),
    };
    let report = archiver(&db, flaky, 1 << 20).run(Utc::now(), deadline()).await;
    let error = report.error.expect("the S3 failure fails the run");
    assert!(error.contains("upload") && error.contains(&name), "{error}");
    assert_eq!(
        archive_jobs::table_status(&client, &name).await.expect("status"),
        TableStatus::Attached
    );
    let job = archive_jobs::get(&client, &name).await.expect("job").expect("row");
    assert_eq!(job.state, JobState::Exporting);
    assert!(job.error.as_deref().is_some_and(|e| e.contains("injected")), "{job:?}");
    assert_eq!(
        pending_uploads(&s3, &bucket).await,
        0,
        "the failed multipart upload is aborted"
    );
    assert!(
        !support::archive::list_keys(&s3, &bucket, "")
            .await
            .iter()
            .any(|k| k.contains("_manifests")),
        "no manifest for an unfinished export"
    );
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 3_000);

    let healed = archiver(&db, S3Store::new(s3.clone(), &bucket), 1 << 20)
        .run(Utc::now(), deadline())
        .await;
    assert_eq!(healed.error, None, "{healed:?}");
    assert_one_archive(&client, &s3, &bucket, day, &before).await;
}

/// The archiver Lambda's cold start with exactly the environment the Terraform
/// module gives it (infra/terraform/modules/stele/lambda.tf: the database as a
/// Secrets Manager ARN, no DATABASE_URL), then one scheduled run.
#[tokio::test]
async fn the_archiver_starts_with_only_the_terraform_environment() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let day = days_ago(45);
    fill(&client, day, 300, 2).await;
    let before = pg_roots(&db, day).await;

    let arn = env.create_db_secret(&db).await;
    let stream = support::stream::TestStream::new(env, 1).await;
    let terraform_env = [
        ("STELE_DB_SECRET_ARN", arn.as_str()),
        ("STELE_DB_TLS", "disable"),
        ("STELE_ARCHIVE_BUCKET", bucket.as_str()),
        ("STELE_ARCHIVE_PREFIX", PREFIX),
        ("STELE_RETENTION_DAYS", "30"),
        ("STELE_MAX_LATENESS_SECS", "259200"),
        ("STELE_DROP_AFTER_ARCHIVE", "true"),
        ("STELE_DEDUP_WINDOW_HOURS", "336"),
        ("STELE_STREAM_NAME", stream.name.as_str()),
        ("RUST_LOG", "info"),
    ];
    let archiver = stele_archiver::startup::archiver(
        stele_core::settings::from_pairs(&terraform_env),
        s3.clone(),
        env.kinesis().await,
        &env.secrets().await,
    )
    .await
    .expect("the archiver starts with what Terraform sets");
    let report = archiver.run(Utc::now(), deadline()).await;
    assert_eq!(report.error, None, "{report:?}");
    assert_one_archive(&client, &s3, &bucket, day, &before).await;

    // Without the secret ARN the start fails, naming both ways to give a database.
    let without_db: Vec<(&str, &str)> = terraform_env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "STELE_DB_SECRET_ARN")
        .collect();
    let err = stele_archiver::startup::archiver(
        stele_core::settings::from_pairs(&without_db),
        s3.clone(),
        env.kinesis().await,
        &env.secrets().await,
    )
    .await
    .err()
    .expect("no database, no start")
    .to_string();
    assert!(
        err.contains("DATABASE_URL") && err.contains("STELE_DB_SECRET_ARN"),
        "{err}"
    );
}

/// A day old enough by the clock waits while a record that may belong to it
/// is still in the stream, and is archived once the batch-writer has consumed
/// it (its position committed in `stream_progress` with the rows).
#[tokio::test]
async fn a_day_waits_for_the_streams_backlog_and_is_archived_once_it_is_consumed() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let stream = support::stream::TestStream::new(env, 1).await;

    let day = days_ago(2);
    fill(&client, day, 50, 3).await;
    let partition = partitions::partition_name(day);
    // A record put now arrives now; the lateness is chosen so that an event
    // received now may still belong to `day` (its end lies 30 s inside the
    // low-water mark's slack), while the clock alone would archive it.
    let now = Utc::now();
    let (_, day_end) = partitions::bounds(day);
    let mut config = ArchiverConfig::new(bucket.clone());
    config.prefix = PREFIX.into();
    config.retention = chrono::Duration::zero();
    config.max_lateness = now - day_end - chrono::Duration::seconds(30);
    let archiver = Archiver::with_postgres(
        Arc::new(S3Store::new(s3.clone(), bucket.clone())),
        db.store_config(),
        config,
    )
    .with_backlog(Arc::new(stele_archiver::backlog::KinesisBacklog::new(
        env.kinesis().await,
        stream.name.clone(),
    )));

    let event = stele_core::validate_event(
        &serde_json::json!({
            "occurred_at": now.to_rfc3339(), "category": "audit", "action": "user.login", "outcome": "success",
            "actor": {"id": "u1", "type": "user"}, "source": {"service": "auth"}
        }),
        &stele_core::Context {
            tenant_id: "acme",
            now,
            window: stele_core::TimeWindow::default(),
            id_if_missing: None,
        },
    )
    .unwrap()
    .seal();
    env.kinesis()
        .await
        .put_record()
        .stream_name(&stream.name)
        .partition_key("acme")
        .data(aws_sdk_kinesis::primitives::Blob::new(event.record.clone()))
        .send()
        .await
        .unwrap();

    let report = archiver.run(Utc::now(), deadline()).await;
    assert_eq!(report.error, None, "{report:?}");
    assert!(report.archived.is_empty(), "{report:?}");
    assert_eq!(report.held_back, [partition.as_str()]);
    assert!(report.low_water_mark.is_some());
    assert!(
        archive_jobs::get(&client, &partition).await.unwrap().is_none(),
        "not started"
    );

    // The batch-writer consumes the record: its position is committed with the row.
    let records = stream.read_after(None).await;
    assert_eq!(records.len(), 1);
    let (seq, key, data) = records.into_iter().next().unwrap();
    let shard = "shardId-000000000000";
    let writer = stele_batch_writer::BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&db.store_config()).unwrap()),
        stele_batch_writer::SqsDeadLetters::new(env.sqs().await, env.create_queue(&support::unique_name("dlq")).await),
    );
    let batch = stele_batch_writer::kinesis::event(vec![stele_batch_writer::kinesis::event_record(
        shard,
        &seq,
        &key,
        data,
        Utc::now(),
    )]);
    let (response, written) = writer.process(batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(written.inserted, 1);
    let progress: (String, String) = client
        .query_one("SELECT shard_id, sequence_number FROM stream_progress", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(progress, (shard.to_string(), seq));

    let report = archiver.run(Utc::now(), deadline()).await;
    assert_eq!(report.error, None, "{report:?}");
    assert!(report.held_back.is_empty(), "{report:?}");
    assert_eq!(report.low_water_mark, None, "nothing waits in the stream");
    let archived: Vec<&str> = report.archived.iter().map(|r| r.partition.as_str()).collect();
    assert_eq!(archived, [partition.as_str()]);
    assert_eq!(report.archived[0].rows, 50);
    stream.delete().await;
}

/// The schedule and a manual `stele archive` at the same moment: the run lock
/// lets one of them work and the other report that it did nothing; every day
/// ends archived exactly once with the manifest chain intact.
#[tokio::test]
async fn two_runs_started_together_archive_each_day_once() {
    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let days = [days_ago(50), days_ago(49), days_ago(48)];
    let mut before = Vec::new();
    for day in days {
        fill(&client, day, 1_500, 2).await;
        before.push(pg_roots(&db, day).await);
    }
    let first = archiver(&db, S3Store::new(s3.clone(), &bucket), 400);
    let second = archiver(&db, S3Store::new(s3.clone(), &bucket), 400);
    let (a, b) = tokio::join!(first.run(Utc::now(), deadline()), second.run(Utc::now(), deadline()));
    println!(
        "run A: busy={} archived={:?} error={:?}",
        a.busy,
        a.archived.iter().map(|r| &r.dt).collect::<Vec<_>>(),
        a.error
    );
    println!(
        "run B: busy={} archived={:?} error={:?}",
        b.busy,
        b.archived.iter().map(|r| &r.dt).collect::<Vec<_>>(),
        b.error
    );
    assert_eq!((a.error.as_deref(), b.error.as_deref()), (None, None));
    let mut archived: Vec<String> = a
        .archived
        .iter()
        .chain(&b.archived)
        .filter(|r| r.rows > 0 || r.dropped)
        .map(|r| r.dt.clone())
        .collect();
    archived.sort();
    let expected: Vec<String> = days.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
    assert_eq!(archived, expected, "each day archived by exactly one run");
    assert!(a.busy || b.busy || a.archived.is_empty() || b.archived.is_empty());
    let mut previous: Option<String> = None;
    for (day, roots) in days.iter().zip(&before) {
        let manifest = assert_one_archive(&client, &s3, &bucket, *day, roots).await;
        assert_eq!(
            manifest["previous_manifest"]["key"].as_str().map(str::to_string),
            previous,
            "the chain links {day} to the day before"
        );
        previous = Some(stele_archiver::layout::manifest_key(PREFIX, *day));
    }
}

/// Issue 21: events accepted for a day that is already archived are stored
/// (late_events) and archived as a supplement of that day, never dead-lettered.
/// Through the batch-writer and the archiver, as deployed: archive a day, write
/// more events for it, archive again; every accepted event is in S3 exactly once
/// (DuckDB reads the day as one), the day has two manifest versions, the second
/// superseding the first, and the dead-letter queue is empty.
#[tokio::test]
async fn events_for_an_archived_day_are_archived_as_a_supplement_not_dead_lettered() {
    use stele_batch_writer::{kinesis, BatchWriter, SqsDeadLetters};
    use stele_core::{validate_event, Context, SealedEvent, TimeWindow};

    let env = support::TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("arch");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    let queue = env.create_queue(&support::unique_name("dlq")).await;
    let writer = BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&db.store_config()).expect("pool")),
        SqsDeadLetters::new(env.sqs().await, &queue),
    );
    let day = days_ago(40);
    let seal = |tenant: &str, n: usize| -> SealedEvent {
        let occurred_at = day.and_hms_opt(8, 0, 0).unwrap().and_utc() + chrono::Duration::seconds(n as i64 * 61);
        let body = serde_json::json!({
            "occurred_at": stele_core::event::timestamp::format(&occurred_at),
            "category": "audit", "action": format!("doc.update_{n}"), "outcome": "success",
            "actor": {"id": format!("u-{n}"), "type": "user"}, "source": {"service": "docs"}
        });
        let ctx = Context {
            tenant_id: tenant,
            now: Utc::now(),
            window: TimeWindow {
                max_lateness: chrono::TimeDelta::days(60),
                ..TimeWindow::default()
            },
            id_if_missing: None,
        };
        validate_event(&body, &ctx).expect("valid").seal()
    };
    let mut seq = 0usize;
    let mut write = async |events: &[SealedEvent]| {
        let records = events
            .iter()
            .map(|e| {
                seq += 1;
                kinesis::event_record(
                    "shardId-000000000000",
                    &format!("{seq:021}"),
                    "t",
                    e.record.clone(),
                    Utc::now(),
                )
            })
            .collect();
        let (response, report) = writer.process(kinesis::event(records)).await;
        assert!(response.batch_item_failures.is_empty(), "{report:?}");
        report
    };
    let tenants = ["acme", "globex"];
    let first: Vec<SealedEvent> = (0..30).map(|n| seal(tenants[n % 2], n)).collect();
    write(&first).await;
    let run = archiver(&db, S3Store::new(s3.clone(), &bucket), 1_000)
        .run(Utc::now(), deadline())
        .await;
    assert_eq!(run.error, None, "{run:?}");

    // The day is archived and dropped; more events for it arrive.
    let late: Vec<SealedEvent> = (30..41).map(|n| seal(tenants[n % 2], n)).collect();
    let report = write(&late).await;
    assert_eq!((report.late, report.poison), (11, 0), "{report:?}");
    let run = archiver(&db, S3Store::new(s3.clone(), &bucket), 1_000)
        .run(Utc::now(), deadline())
        .await;
    assert_eq!(run.error, None, "{run:?}");
    let left: i64 = client
        .query_one("SELECT count(*) FROM late_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the late rows are archived, then deleted");

    // Every accepted event exactly once, as DuckDB reads the day.
    let mut accepted: Vec<&SealedEvent> = first.iter().chain(&late).collect();
    accepted.sort_by_key(|e| (e.event.occurred_at, e.event.event_id.to_string()));
    let mut expected: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for tenant in tenants {
        let mut merkle = stele_archiver::merkle::MerkleBuilder::new();
        accepted
            .iter()
            .filter(|e| e.event.tenant_id == tenant)
            .for_each(|e| merkle.push(&e.hash.0));
        expected.insert(tenant.to_string(), (merkle.leaves(), merkle.root_hex()));
    }
    let duck = support::archive::duckdb_readback(&s3, &bucket, PREFIX).await;
    assert_eq!(duck["rows"], 41);
    assert_eq!(duck_map(&duck), expected, "no lost or duplicated event");

    // Two versions of the day's manifest, the second superseding the first.
    let manifests = support::archive::list_keys(&s3, &bucket, &format!("{PREFIX}/_manifests/")).await;
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    let first_key = stele_archiver::layout::manifest_key(PREFIX, day);
    let second_key = stele_archiver::layout::manifest_version_key(PREFIX, day, 2);
    assert_eq!(manifests, {
        let mut k = vec![first_key.clone(), second_key.clone()];
        k.sort();
        k
    });
    let first_bytes = support::archive::get(&s3, &bucket, &first_key).await;
    let second: Value = serde_json::from_slice(&support::archive::get(&s3, &bucket, &second_key).await).unwrap();
    assert_eq!(second["rows"], 41);
    assert_eq!(second["supersedes"]["key"], first_key.as_str());
    assert_eq!(
        second["supersedes"]["sha256"],
        hex::encode(Sha256::digest(&first_bytes)).as_str()
    );

    let dead = env
        .sqs()
        .await
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(dead.messages().is_empty(), "nothing was dead-lettered");
}
