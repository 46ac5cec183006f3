//! Every state, transition and crash point of the job, against the in-memory
//! stores. The same paths run against real PostgreSQL and LocalStack in
//! tests/it/archiver.rs and tests/it/faults.rs.

use super::*;

use std::time::Duration;

use bytes::Bytes;

use chrono::TimeZone;
use stele_store::memory::{MemoryArchiveDb, MemoryRow};
use uuid::Uuid;

use crate::manifest::{Manifest, PreviousManifest};
use crate::store::MemoryStore;
use crate::verify;

const PARTITION: &str = "audit_events_p20260101";

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn row(tenant: &str, n: u32) -> MemoryRow {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap() + chrono::Duration::seconds(n as i64);
    MemoryRow::event(tenant, Uuid::from_u128(u128::from(n) + 1), at)
}

/// An archiver over one eligible day holding `rows` rows of two tenants.
async fn setup(rows: u32) -> Archiver<MemoryStore, MemoryArchiveDb> {
    let db = MemoryArchiveDb::new();
    db.ensure_range(day(), day()).await.unwrap();
    for n in 0..rows {
        db.insert(row(if n % 3 == 0 { "globex" } else { "acme" }, n)).unwrap();
    }
    let mut config = ArchiverConfig::new("bucket");
    config.file_rows = 4;
    Archiver::new(Arc::new(MemoryStore::new()), db, config)
}

async fn archive(a: &Archiver<MemoryStore, MemoryArchiveDb>) -> Result<PartitionReport, Error> {
    a.archive_partition(PARTITION, false, now(), later()).await
}

async fn state(a: &Archiver<MemoryStore, MemoryArchiveDb>) -> JobState {
    a.db.job(PARTITION).await.unwrap().unwrap().state
}

/// The manifest the job records (the day's latest version).
async fn manifest(a: &Archiver<MemoryStore, MemoryArchiveDb>) -> Manifest {
    let key = a.db.job(PARTITION).await.unwrap().unwrap().manifest_key.unwrap();
    serde_json::from_slice(&a.store.get(&key).await.unwrap().unwrap()).unwrap()
}

/// What a finished archive of `rows` rows must look like, whatever happened before.
async fn assert_archived_once(a: &Archiver<MemoryStore, MemoryArchiveDb>, rows: u64) {
    assert_eq!(state(a).await, JobState::Done);
    assert_eq!(a.db.rows(PARTITION), None, "the table is dropped");
    let m = manifest(a).await;
    assert_eq!(m.rows, rows);
    assert_eq!(m.tenants.iter().map(|t| t.rows).sum::<u64>(), rows);
    let parts: Vec<String> = a.store.keys().into_iter().filter(|k| k.ends_with(".parquet")).collect();
    let listed: Vec<String> = m
        .tenants
        .iter()
        .flat_map(|t| t.files.iter().map(|f| f.key.clone()))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(parts, sorted, "S3 holds exactly the manifest's files");
    assert_eq!(a.store.pending_uploads(), 0);
    assert_eq!(a.db.late_rows(day()), 0, "no late row is left behind");
}

#[test]
fn transitions_are_exactly_the_documented_ones() {
    use JobState::*;
    let all = JobState::ALL;
    let allowed: Vec<(JobState, JobState)> = all
        .iter()
        .flat_map(|f| all.iter().map(move |t| (*f, *t)))
        .filter(|(f, t)| f.can_move_to(*t))
        .collect();
    assert_eq!(
        allowed,
        vec![
            (Exporting, Manifested),
            (Manifested, Exporting),
            (Manifested, Verified),
            (Verified, Detached),
            (Detached, Exporting),
            (Detached, Done),
            (Done, Supplementing),
            (Supplementing, SupplementManifested),
            (SupplementManifested, Supplementing),
            (SupplementManifested, SupplementVerified),
            (SupplementVerified, Done),
        ]
    );
    assert!(!Done.can_move_to(Exporting), "a finished day is never written again");
    for state in all {
        assert_eq!(JobState::parse(state.as_str()), Some(state));
    }
}

#[tokio::test]
async fn every_disallowed_move_is_refused_and_a_stale_one_reports_the_other_run() {
    use JobState::*;
    let a = setup(3).await;
    a.db.begin_job(PARTITION, day()).await.unwrap();
    for (from, to) in [
        (Exporting, Verified),
        (Exporting, Done),
        (Verified, Exporting),
        (Done, Exporting),
    ] {
        let err = a.db.move_job(PARTITION, from, to, None).await.unwrap_err().to_string();
        assert!(err.contains("not an allowed transition"), "{from:?}→{to:?}: {err}");
    }
    // The job is `exporting`; a run that believes it is `detached` loses the race.
    let err =
        a.db.move_job(PARTITION, Detached, Done, None)
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("is `exporting`, not `detached`"), "{err}");
    assert_eq!(state(&a).await, Exporting);
}

#[tokio::test]
async fn a_day_goes_through_every_state_to_done() {
    let a = setup(10).await;
    let report = archive(&a).await.unwrap();
    assert_eq!(report.state, "done");
    assert_eq!(report.rows, 10);
    assert!(report.dropped);
    // acme has 6 rows in files of at most 4 rows, globex 4.
    assert_eq!(report.files, 3);
    assert_archived_once(&a, 10).await;
    assert_eq!(a.db.job(PARTITION).await.unwrap().unwrap().attempts, 1);
    // A finished job is not touched again.
    let again = archive(&a).await.unwrap();
    assert_eq!((again.state.as_str(), again.rows), ("done", 10));
}

#[tokio::test]
async fn every_crash_point_is_healed_by_the_next_run() {
    for (fail_point, stopped_in) in [
        (FailPoint::AfterUpload, JobState::Exporting),
        (FailPoint::AfterManifest, JobState::Exporting),
        (FailPoint::AfterVerify, JobState::Verified),
        (FailPoint::AfterDetach, JobState::Verified),
    ] {
        let a = setup(9).await.with_fail_point(Some(fail_point));
        let err = archive(&a).await.unwrap_err();
        assert!(matches!(err, Error::Injected { .. }), "{fail_point:?}: {err}");
        assert_eq!(state(&a).await, stopped_in, "{fail_point:?}");
        let a = Archiver { fail_point: None, ..a };
        let report = archive(&a).await.unwrap();
        assert_eq!(report.rows, 9, "{fail_point:?}");
        assert_archived_once(&a, 9).await;
    }
}

#[tokio::test]
async fn a_database_failure_at_any_call_is_healed_by_the_next_run() {
    let operations = [
        ("table_status", 1),
        ("job", 1),
        ("begin_job", 1),
        ("table_status", 2),
        ("export_rows", 1),
        ("previous_manifest", 1),
        ("move_job", 1),
        ("table_status", 3),
        ("export_rows", 2),
        ("move_job", 2),
        ("table_status", 4),
        ("detach", 1),
        ("move_job", 3),
        ("count_rows", 1),
        ("drop_detached", 1),
        ("move_job", 4),
    ];
    for (operation, nth) in operations {
        let a = setup(7).await;
        a.db.fail_call(operation, nth);
        let err = archive(&a).await.unwrap_err().to_string();
        assert!(err.contains("injected failure"), "{operation} #{nth}: {err}");
        if let Some(job) = a.db.job(PARTITION).await.unwrap() {
            assert!(
                job.error.is_some(),
                "{operation} #{nth}: the failure is recorded on the job"
            );
        }
        archive(&a).await.unwrap();
        assert_archived_once(&a, 7).await;
    }
}

#[tokio::test]
async fn a_mismatch_at_verify_sends_the_job_back_to_export() {
    let a = setup(6).await;
    // Stop after the manifest is recorded: the move to `verified` fails.
    a.db.fail_call("move_job", 2);
    archive(&a).await.unwrap_err();
    assert_eq!(state(&a).await, JobState::Manifested);
    // A row lands before verify: S3 no longer equals PostgreSQL.
    a.db.insert(row("acme", 100)).unwrap();
    let err = archive(&a).await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert_eq!(state(&a).await, JobState::Exporting);
    archive(&a).await.unwrap();
    assert_archived_once(&a, 7).await;
}

#[tokio::test]
async fn rows_landing_after_verify_make_the_day_written_again_not_stuck() {
    let a = setup(6).await.with_fail_point(Some(FailPoint::AfterVerify));
    archive(&a).await.unwrap_err();
    let first = manifest(&a).await;
    assert_eq!(state(&a).await, JobState::Verified);
    // Still attached: a late row lands between verify and detach.
    a.db.insert(row("initech", 200)).unwrap();
    let a = Archiver { fail_point: None, ..a };
    let report = archive(&a).await.unwrap();
    assert_eq!(report.rows, 7);
    assert_archived_once(&a, 7).await;
    let second = manifest(&a).await;
    assert_eq!(second.tenants.len(), 3);
    let (_, first_sha) = first.to_bytes();
    assert_eq!(
        second.supersedes,
        Some(PreviousManifest {
            key: layout::manifest_key("audit", day()),
            sha256: first_sha
        }),
        "the new version names the one it replaces"
    );
}

#[tokio::test]
async fn a_detached_table_with_fewer_rows_than_archived_is_never_dropped() {
    let a = setup(6).await.with_fail_point(Some(FailPoint::AfterDetach));
    archive(&a).await.unwrap_err();
    let a = Archiver { fail_point: None, ..a };
    // Finish detaching by hand, then lose a row from the detached table.
    a.db.move_job(PARTITION, JobState::Verified, JobState::Detached, None)
        .await
        .unwrap();
    a.db.truncate(PARTITION, 5);
    let err = archive(&a).await.unwrap_err().to_string();
    assert!(
        err.contains("detached table has 5 rows, the archive 6; not dropping"),
        "{err}"
    );
    assert_eq!(state(&a).await, JobState::Detached);
    assert_eq!(a.db.rows(PARTITION), Some(5));
}

#[tokio::test]
async fn a_new_day_must_be_eligible_and_a_dry_run_changes_nothing() {
    let a = setup(4).await;
    let early = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    let err = a.archive_partition(PARTITION, false, early, later()).await.unwrap_err();
    assert!(err.to_string().contains("not eligible yet"), "{err}");
    assert_eq!(a.db.job(PARTITION).await.unwrap(), None);
    let dry = a.archive_partition(PARTITION, true, now(), later()).await.unwrap();
    assert_eq!(dry.tenants, vec![("acme".to_string(), 2), ("globex".to_string(), 2)]);
    assert_eq!((dry.state.as_str(), dry.rows), ("none", 4));
    assert!(a.store.keys().is_empty());
    assert_eq!(a.db.job(PARTITION).await.unwrap(), None);
    let err = a
        .archive_partition("audit_events_p20260102", false, now(), later())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such attached partition"), "{err}");
}

#[tokio::test]
async fn a_scheduled_run_archives_eligible_days_oldest_first_and_makes_days_ahead() {
    let a = setup(3).await;
    let second = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
    a.db.ensure_range(second, second).await.unwrap();
    let report = a.run(now(), later()).await;
    assert_eq!(report.error, None);
    let days: Vec<&str> = report.archived.iter().map(|r| r.dt.as_str()).collect();
    assert_eq!(days, ["2026-01-01", "2026-01-02"]);
    let ahead = a.db.partitions().await.unwrap();
    assert_eq!(ahead.first().map(|p| p.day), Some(now().date_naive()));
    // The second day chains to the first.
    let key = layout::manifest_key("audit", second);
    let m: Manifest = serde_json::from_slice(&a.store.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        m.previous_manifest.map(|p| p.key),
        Some(layout::manifest_key("audit", day()))
    );
}

/// Late rows of `tenant` for the day, numbered from `from`.
fn late(a: &Archiver<MemoryStore, MemoryArchiveDb>, tenant: &str, from: u32, n: u32) {
    for i in from..from + n {
        a.db.insert_late(row(tenant, i));
    }
}

async fn object_sha(a: &Archiver<MemoryStore, MemoryArchiveDb>, key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(a.store.get(key).await.unwrap().unwrap()))
}

#[tokio::test]
async fn late_rows_of_an_archived_day_become_a_supplement_and_a_new_manifest_version() {
    let a = setup(6).await;
    archive(&a).await.unwrap();
    let first = manifest(&a).await;
    let first_key = layout::manifest_key("audit", day());
    let first_sha = object_sha(&a, &first_key).await;
    // Late rows for a tenant the day has, and for one it had not.
    late(&a, "acme", 100, 5);
    late(&a, "initech", 200, 1);
    let report = archive(&a).await.unwrap();
    assert_eq!(
        (report.state.as_str(), report.rows, report.supplemented),
        ("done", 12, 6)
    );
    assert_archived_once(&a, 12).await;

    let second = manifest(&a).await;
    assert_eq!(second.version, 2);
    assert_eq!(
        a.db.job(PARTITION).await.unwrap().unwrap().manifest_key,
        Some(layout::manifest_version_key("audit", day(), 2))
    );
    assert_eq!(
        second.supersedes,
        Some(PreviousManifest {
            key: first_key.clone(),
            sha256: first_sha.clone()
        })
    );
    assert_eq!(second.previous_manifest, first.previous_manifest);
    let supplement = second.supplement.clone().unwrap();
    assert_eq!(supplement.rows, 6);
    // The first version and every file it names are untouched.
    assert_eq!(object_sha(&a, &first_key).await, first_sha);
    for f in first.tenants.iter().flat_map(|t| &t.files) {
        assert_eq!(object_sha(&a, &f.key).await, f.sha256, "{} was overwritten", f.key);
    }
    // acme: 4 rows in part 0, then 5 late rows in parts 1 and 2 (4 per file).
    let acme = second.tenants.iter().find(|t| t.tenant_id == "acme").unwrap();
    let names: Vec<&str> = acme.files.iter().map(|f| f.key.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        names,
        ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    );
    assert_eq!(acme.rows, 9);
    assert_eq!(
        second.tenants.iter().map(|t| t.tenant_id.as_str()).collect::<Vec<_>>(),
        ["acme", "globex", "initech"]
    );

    // A third round chains to the second; a scheduled run finds the day.
    late(&a, "globex", 300, 1);
    let run = a.run(now(), later()).await;
    assert_eq!(run.error, None);
    assert_eq!(run.archived.iter().map(|r| r.supplemented).sum::<u64>(), 1);
    let third = manifest(&a).await;
    assert_eq!(third.version, 3);
    assert_eq!(
        third.supersedes.map(|p| p.key),
        Some(layout::manifest_version_key("audit", day(), 2))
    );
    assert_archived_once(&a, 13).await;
}

#[tokio::test]
async fn every_supplement_crash_point_is_healed_by_the_next_run() {
    for (fail_point, stopped_in) in [
        (FailPoint::AfterUpload, JobState::Supplementing),
        (FailPoint::AfterManifest, JobState::Supplementing),
        (FailPoint::AfterVerify, JobState::SupplementVerified),
        (FailPoint::AfterLateDelete, JobState::SupplementVerified),
    ] {
        let a = setup(5).await;
        archive(&a).await.unwrap();
        late(&a, "acme", 100, 6);
        let a = a.with_fail_point(Some(fail_point));
        let err = archive(&a).await.unwrap_err();
        assert!(matches!(err, Error::Injected { .. }), "{fail_point:?}: {err}");
        assert_eq!(state(&a).await, stopped_in, "{fail_point:?}");
        let a = Archiver { fail_point: None, ..a };
        let report = archive(&a).await.unwrap();
        assert_eq!(report.rows, 11, "{fail_point:?}");
        assert_archived_once(&a, 11).await;
        assert_eq!(manifest(&a).await.version, 2, "{fail_point:?}");
    }
}

#[tokio::test]
async fn a_database_failure_at_any_supplement_call_is_healed_by_the_next_run() {
    let operations = [
        ("late_days", 1),
        ("move_job", 1),
        ("claim_late", 1),
        ("export_late_rows", 1),
        ("move_job", 2),
        ("export_late_rows", 2),
        ("move_job", 3),
        ("delete_claimed_late", 1),
        ("move_job", 4),
    ];
    for (operation, nth) in operations {
        let a = setup(4).await;
        archive(&a).await.unwrap();
        late(&a, "globex", 100, 3);
        a.db.fail_call(operation, nth);
        let err = archive(&a).await.unwrap_err().to_string();
        assert!(err.contains("injected failure"), "{operation} #{nth}: {err}");
        archive(&a).await.unwrap();
        assert_archived_once(&a, 7).await;
    }
}

#[tokio::test]
async fn late_rows_landing_while_a_supplement_is_written_wait_for_the_next_one() {
    let a = setup(4).await;
    archive(&a).await.unwrap();
    late(&a, "acme", 100, 2);
    // Stop with the supplement recorded, before verify.
    a.db.fail_call("move_job", 3);
    archive(&a).await.unwrap_err();
    assert_eq!(state(&a).await, JobState::SupplementManifested);
    late(&a, "acme", 200, 1);
    // The resumed supplement covers the two claimed rows only; the row
    // that came later gets a supplement of its own.
    let report = archive(&a).await.unwrap();
    assert_eq!((report.rows, report.supplemented), (7, 3));
    assert_archived_once(&a, 7).await;
    let third = manifest(&a).await;
    assert_eq!((third.version, third.supplement.unwrap().rows), (3, 1));
    let second_key = layout::manifest_version_key("audit", day(), 2);
    let second: Manifest = serde_json::from_slice(&a.store.get(&second_key).await.unwrap().unwrap()).unwrap();
    assert_eq!(second.supplement.unwrap().rows, 2);
}

#[tokio::test]
async fn a_supplement_that_does_not_match_s3_is_written_again_from_the_verified_version() {
    let a = setup(4).await;
    archive(&a).await.unwrap();
    late(&a, "acme", 100, 2);
    a.db.fail_call("move_job", 3);
    archive(&a).await.unwrap_err();
    // A supplement part disappears before verify.
    let m = manifest(&a).await;
    let added = &m.supplement.as_ref().unwrap().tenants[0].files[0].key;
    a.store.delete(added).await.unwrap();
    let err = archive(&a).await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    assert_eq!(state(&a).await, JobState::Supplementing);
    assert_eq!(
        a.db.job(PARTITION).await.unwrap().unwrap().manifest_key,
        Some(layout::manifest_key("audit", day())),
        "back to the verified version"
    );
    let report = archive(&a).await.unwrap();
    assert_eq!((report.rows, report.supplemented), (6, 2));
    assert_archived_once(&a, 6).await;
    assert_eq!(manifest(&a).await.version, 2);
}

#[tokio::test]
async fn verify_refuses_a_supplement_that_drops_an_earlier_file() {
    let a = setup(6).await;
    archive(&a).await.unwrap();
    late(&a, "acme", 100, 1);
    a.db.fail_call("move_job", 3);
    archive(&a).await.unwrap_err();
    // Rewrite the supplement without globex's earlier file, and record it.
    let job = a.db.job(PARTITION).await.unwrap().unwrap();
    let mut m = manifest(&a).await;
    m.tenants.retain(|t| t.tenant_id != "globex");
    let (bytes, sha) = m.to_bytes();
    let key = job.manifest_key.clone().unwrap();
    a.store.put(&key, Bytes::from(bytes)).await.unwrap();
    let err = verify::verify(&a.db, &a.store, "audit", PARTITION, day(), &key, &sha)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("supplement lists tenants"), "{err}");
}

#[tokio::test]
async fn a_second_run_while_one_holds_the_lock_does_nothing_and_says_so() {
    let a = setup(5).await;
    assert!(a.db.try_lock_run().await.unwrap(), "the other run takes the lock");
    let report = a.run(now(), later()).await;
    assert!(
        report.busy && report.archived.is_empty() && report.error.is_none(),
        "{report:?}"
    );
    let err = archive(&a).await.unwrap_err().to_string();
    assert!(err.contains("another archiver run is in progress"), "{err}");
    assert_eq!(a.db.job(PARTITION).await.unwrap(), None, "nothing was started");
    a.db.unlock_run().await.unwrap();
    let report = a.run(now(), later()).await;
    assert_eq!(report.archived.len(), 1);
    assert!(a.db.try_lock_run().await.unwrap(), "a finished run releases the lock");
}

#[tokio::test]
async fn a_run_forgets_event_ids_past_the_deduplication_window_only() {
    let a = setup(3).await;
    let window = a.config.dedup_window;
    let (old, recent) = (Uuid::from_u128(7), Uuid::from_u128(8));
    a.db.claim_event_id("acme", old, now() - window - chrono::Duration::seconds(1));
    a.db.claim_event_id("acme", recent, now() - window + chrono::Duration::seconds(1));
    let report = a.run(now(), later()).await;
    assert_eq!(report.error, None);
    assert_eq!(report.event_ids_pruned, 1);
    assert_eq!(a.db.event_ids(), [("acme".to_string(), recent)]);

    // A failed prune is housekeeping left for the next run, not a failed run.
    a.db.fail_call("prune_event_ids", 1);
    let report = a.run(now() + window, later()).await;
    assert_eq!((report.error, report.event_ids_pruned), (None, 0));
    assert_eq!(a.db.event_ids().len(), 1);
}

/// A stream whose oldest unconsumed record arrived at a set time (or that
/// cannot be read).
struct FixedBacklog(std::sync::Mutex<Result<Option<DateTime<Utc>>, String>>);

impl crate::backlog::StreamBacklog for FixedBacklog {
    fn oldest_unconsumed<'a>(
        &'a self,
        _consumed: &'a [stele_store::ShardProgress],
    ) -> futures_util::future::BoxFuture<'a, Result<Option<DateTime<Utc>>, String>> {
        let answer = self.0.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_day_waits_while_records_that_may_belong_to_it_are_still_in_the_stream() {
    let backlog = Arc::new(FixedBacklog(std::sync::Mutex::new(Ok(Some(
        Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap(),
    )))));
    let a = setup(5).await.with_backlog(backlog.clone());

    // Old enough by the clock, but a record that arrived 24 h after the day
    // ended is not consumed yet: it may be an event of that day (lateness 72 h).
    let report = a.run(now(), later()).await;
    assert_eq!(report.error, None);
    assert!(report.archived.is_empty());
    assert_eq!(report.held_back, [PARTITION]);
    assert_eq!(report.low_water_mark.as_deref(), Some("2026-01-02T23:59:00Z"));
    assert_eq!(a.db.rows(PARTITION), Some(5), "the day stays hot");

    // The stream cannot be read: no new day is started, and the run says why in the log only.
    *backlog.0.lock().unwrap() = Err("throttled".into());
    let report = a.run(now(), later()).await;
    assert_eq!((report.error, report.archived.len()), (None, 0));
    assert_eq!(report.held_back, [PARTITION]);

    // The backlog is past the day's end plus the lateness: archived.
    *backlog.0.lock().unwrap() = Ok(Some(Utc.with_ymd_and_hms(2026, 1, 6, 0, 0, 0).unwrap()));
    let report = a.run(now(), later()).await;
    assert_eq!(report.error, None);
    assert!(report.held_back.is_empty());
    assert_archived_once(&a, 5).await;

    // Nothing waits at all: the clock alone decides.
    *backlog.0.lock().unwrap() = Ok(None);
    let report = a.run(now(), later()).await;
    assert_eq!((report.error, report.low_water_mark), (None, None));
}
