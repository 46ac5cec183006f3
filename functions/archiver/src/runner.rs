//! The job runner: which partitions to archive and, for each, the steps
//! export → manifest → verify → detach → drop, each recorded in `archive_jobs`
//! so that the next run resumes wherever this one stopped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use stele_store::archive_jobs::{self, JobState, TableStatus};
use stele_store::{partitions, StoreConfig};
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::config::ArchiverConfig;
use crate::error::{Error, Step};
use crate::export;
use crate::layout;
use crate::manifest::{Manifest, PreviousManifest};
use crate::store::ArchiveStore;
use crate::verify;

/// Test hook: fail right after a step's action, before it is recorded, as a
/// crash there would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// Parts uploaded, no manifest yet.
    AfterUpload,
    /// Manifest in S3, not yet recorded in `archive_jobs`.
    AfterManifest,
    /// Verified and recorded, not detached.
    AfterVerify,
    /// Detached, not yet recorded.
    AfterDetach,
}

/// What happened to one partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionReport {
    pub partition: String,
    pub dt: String,
    pub dry_run: bool,
    pub eligible: bool,
    /// `archive_jobs` state at the end (`none` when there is no job).
    pub state: String,
    pub rows: u64,
    pub files: u32,
    pub bytes: u64,
    pub manifest_key: Option<String>,
    /// Dry run: (tenant, rows) that would be written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<(String, u64)>,
    pub dropped: bool,
}

/// What one scheduled run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub archived: Vec<PartitionReport>,
    /// Eligible partitions left for the next run (time ran out, or an earlier one failed).
    pub remaining: Vec<String>,
    pub error: Option<String>,
}

pub struct Archiver<S> {
    store: Arc<S>,
    db: StoreConfig,
    config: ArchiverConfig,
    client: Mutex<Option<Client>>,
    fail_point: Option<FailPoint>,
}

impl<S: ArchiveStore + 'static> Archiver<S> {
    /// Clients are built once: `store` here, the Postgres connection lazily and
    /// re-opened if it drops between invocations.
    pub fn new(store: Arc<S>, mut db: StoreConfig, config: ArchiverConfig) -> Self {
        // An export is one long COPY: the session gets the archiver's own
        // timeout through the store's connection settings.
        db.statement_timeout = config.statement_timeout;
        Self {
            store,
            db,
            config,
            client: Mutex::new(None),
            fail_point: None,
        }
    }

    /// Test-only crash injection.
    pub fn with_fail_point(mut self, fail_point: Option<FailPoint>) -> Self {
        self.fail_point = fail_point;
        self
    }

    pub fn config(&self) -> &ArchiverConfig {
        &self.config
    }

    /// A partition is eligible when its upper bound is older than both the
    /// retention and the max lateness: no row can still land in it.
    pub fn is_eligible(&self, upper: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        upper < now - self.config.retention && upper < now - self.config.max_lateness
    }

    async fn connection(&self, partition: &str) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let c = stele_store::connect(&self.db)
                .await
                .map_err(Error::store(partition, Step::Plan))?;
            *guard = Some(c);
        }
        Ok(guard)
    }

    fn fail(&self, at: FailPoint, partition: &str, step: Step) -> Result<(), Error> {
        if self.fail_point == Some(at) {
            return Err(Error::Injected {
                partition: partition.to_string(),
                step,
            });
        }
        Ok(())
    }

    /// Partitions to work on, oldest first: unfinished jobs, then attached
    /// partitions that are eligible.
    pub async fn candidates(&self, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
        let guard = self.connection("*").await?;
        let c = guard.as_ref().ok_or_else(|| Error::Config("no connection".into()))?;
        let mut out: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
        for job in archive_jobs::unfinished(c)
            .await
            .map_err(Error::store("*", Step::Plan))?
        {
            out.insert((job.day, job.partition_name));
        }
        for p in partitions::list(c).await.map_err(Error::store("*", Step::Plan))? {
            if self.is_eligible(p.upper, now) {
                out.insert((p.day, p.name));
            }
        }
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }

    /// A scheduled run: create partitions ahead, then archive every candidate,
    /// oldest first, while at least `min_remaining` is left before `deadline`.
    /// Stops at the first failure (the manifest chain follows the days).
    pub async fn run(&self, now: DateTime<Utc>, deadline: Instant) -> RunReport {
        let mut report = RunReport::default();
        if let Err(e) = self.ensure_ahead(now).await {
            tracing::warn!(error = %e, "could not create partitions ahead");
        }
        let candidates = match self.candidates(now).await {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        };
        let mut iter = candidates.into_iter();
        for name in iter.by_ref() {
            if Instant::now() + self.config.min_remaining > deadline {
                report.remaining.push(name);
                break;
            }
            match self.archive_partition(&name, false, now, deadline).await {
                Ok(r) => report.archived.push(r),
                Err(e) => {
                    tracing::error!(partition = %name, error = %e, "archiving failed");
                    report.error = Some(e.to_string());
                    report.remaining.push(name);
                    break;
                }
            }
        }
        report.remaining.extend(iter);
        report
    }

    async fn ensure_ahead(&self, now: DateTime<Utc>) -> Result<(), Error> {
        let guard = self.connection("*").await?;
        let c = guard.as_ref().ok_or_else(|| Error::Config("no connection".into()))?;
        let today = now.date_naive();
        let last = today + chrono::Duration::days(self.config.partitions_ahead_days as i64);
        partitions::ensure_range(c, today, last)
            .await
            .map_err(Error::store("*", Step::Plan))?;
        Ok(())
    }

    /// Archive one partition (or, with `dry_run`, say what would be done and
    /// change nothing). Refuses a partition that is not yet eligible unless a
    /// job for it already exists.
    pub async fn archive_partition(
        &self,
        partition: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<PartitionReport, Error> {
        let guard = self.connection(partition).await?;
        let c = guard.as_ref().ok_or_else(|| Error::Config("no connection".into()))?;
        let result = self.archive_with(c, partition, dry_run, now, deadline).await;
        if let Err(e) = &result {
            if !dry_run {
                let _ = archive_jobs::set_error(c, partition, &e.to_string()).await;
            }
        }
        result
    }

    async fn archive_with(
        &self,
        c: &Client,
        partition: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<PartitionReport, Error> {
        let invalid = |step, detail: String| Error::Invalid {
            partition: partition.to_string(),
            step,
            detail,
        };
        let day = partitions::day_of_partition(partition).ok_or_else(|| {
            invalid(
                Step::Plan,
                "not a stele day partition name (audit_events_pYYYYMMDD)".into(),
            )
        })?;
        let (_, upper) = partitions::bounds(day);
        let eligible = self.is_eligible(upper, now);
        let status = archive_jobs::table_status(c, partition)
            .await
            .map_err(Error::store(partition, Step::Plan))?;
        let job = archive_jobs::get(c, partition)
            .await
            .map_err(Error::store(partition, Step::Plan))?;
        let mut report = PartitionReport {
            partition: partition.to_string(),
            dt: day.format("%Y-%m-%d").to_string(),
            dry_run,
            eligible,
            state: job.as_ref().map_or("none", |j| j.state.as_str()).to_string(),
            rows: 0,
            files: 0,
            bytes: 0,
            manifest_key: job.as_ref().and_then(|j| j.manifest_key.clone()),
            tenants: Vec::new(),
            dropped: false,
        };

        if dry_run {
            if status != TableStatus::Absent {
                let rows = c
                    .query(
                        &format!(
                            "SELECT tenant_id, count(*) FROM ONLY {partition} GROUP BY tenant_id ORDER BY tenant_id COLLATE \"C\""
                        ),
                        &[],
                    )
                    .await
                    .map_err(|source| Error::Read {
                        partition: partition.to_string(),
                        step: Step::Plan,
                        source,
                    })?;
                report.tenants = rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect();
                report.rows = report.tenants.iter().map(|t| t.1).sum();
            }
            return Ok(report);
        }
        if job.is_none() {
            if status != TableStatus::Attached {
                return Err(invalid(Step::Plan, "no such attached partition".into()));
            }
            if !eligible {
                return Err(invalid(
                    Step::Plan,
                    "not eligible yet: newer than the retention or the max lateness".into(),
                ));
            }
        }

        let job = archive_jobs::begin(c, partition, day)
            .await
            .map_err(Error::store(partition, Step::Plan))?;
        let mut state = job.state;
        let (mut manifest_key, mut manifest_sha) = (job.manifest_key.clone(), job.manifest_sha256.clone());
        let export_deadline = deadline.checked_sub(Duration::from_secs(10)).unwrap_or(deadline);

        if state == JobState::Exporting {
            if matches!(status, TableStatus::Absent) {
                return Err(invalid(
                    Step::Export,
                    "the table is gone but no archive was recorded".into(),
                ));
            }
            self.abort_stale_uploads(partition, day).await?;
            let tenants = export::export(c, &*self.store, &self.config, partition, day, export_deadline).await?;
            self.fail(FailPoint::AfterUpload, partition, Step::Upload)?;
            self.delete_stale_parts(partition, day, &tenants).await?;
            let previous = archive_jobs::previous_manifest(c, day)
                .await
                .map_err(Error::store(partition, Step::Manifest))?
                .map(|(key, sha256)| PreviousManifest { key, sha256 });
            let manifest = Manifest::new(partition, day, tenants, previous, Utc::now());
            let (bytes, sha) = manifest.to_bytes();
            let key = layout::manifest_key(&self.config.prefix, day);
            self.store
                .put(&key, Bytes::from(bytes))
                .await
                .map_err(|e| e.at(partition, Step::Manifest))?;
            self.fail(FailPoint::AfterManifest, partition, Step::Manifest)?;
            archive_jobs::set_manifested(
                c,
                partition,
                manifest.rows as i64,
                manifest.files as i32,
                manifest.bytes as i64,
                &key,
                &sha,
            )
            .await
            .map_err(Error::store(partition, Step::Manifest))?;
            tracing::info!(partition, rows = manifest.rows, files = manifest.files, bytes = manifest.bytes, manifest = %key, "archive written");
            (manifest_key, manifest_sha) = (Some(key), Some(sha));
            state = JobState::Manifested;
        }

        let (Some(key), Some(sha)) = (manifest_key.clone(), manifest_sha.clone()) else {
            return Err(invalid(
                Step::Verify,
                format!("job is {} but records no manifest", state.as_str()),
            ));
        };
        report.manifest_key = Some(key.clone());

        if state < JobState::Detached {
            if matches!(status, TableStatus::Absent) {
                return Err(invalid(Step::Verify, "the table is gone before it was detached".into()));
            }
            let manifest = match verify::verify(c, &self.store, &self.config.prefix, partition, day, &key, &sha).await {
                Ok(m) => m,
                Err(e @ Error::Mismatch { .. }) => {
                    // The S3 copy is wrong: the next run writes it again.
                    let _ = archive_jobs::restart_export(c, partition).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if state < JobState::Verified {
                archive_jobs::set_state(c, partition, JobState::Verified)
                    .await
                    .map_err(Error::store(partition, Step::Verify))?;
            }
            tracing::info!(partition, rows = manifest.rows, "archive verified");
            self.fail(FailPoint::AfterVerify, partition, Step::Verify)?;
            archive_jobs::detach(c, partition)
                .await
                .map_err(Error::store(partition, Step::Detach))?;
            self.fail(FailPoint::AfterDetach, partition, Step::Detach)?;
            archive_jobs::set_state(c, partition, JobState::Detached)
                .await
                .map_err(Error::store(partition, Step::Detach))?;
            tracing::info!(partition, "partition detached");
            state = JobState::Detached;
        }

        let job = archive_jobs::get(c, partition)
            .await
            .map_err(Error::store(partition, Step::Drop))?
            .ok_or_else(|| invalid(Step::Drop, "archive job vanished".into()))?;
        if state < JobState::Done {
            // The last guard against loss: the detached table holds exactly what was archived.
            let in_table = archive_jobs::count_rows(c, partition)
                .await
                .map_err(Error::store(partition, Step::Drop))?;
            if let Some(n) = in_table {
                if Some(n) != job.rows {
                    return Err(invalid(
                        Step::Drop,
                        format!("detached table has {n} rows, the archive {:?}; not dropping", job.rows),
                    ));
                }
                if self.config.drop_after_archive {
                    archive_jobs::drop_detached(c, partition)
                        .await
                        .map_err(Error::store(partition, Step::Drop))?;
                    report.dropped = true;
                    tracing::info!(partition, "partition dropped");
                }
            }
            archive_jobs::set_state(c, partition, JobState::Done)
                .await
                .map_err(Error::store(partition, Step::Drop))?;
        }
        report.state = JobState::Done.as_str().to_string();
        report.rows = job.rows.unwrap_or(0) as u64;
        report.files = job.files.unwrap_or(0) as u32;
        report.bytes = job.bytes.unwrap_or(0) as u64;
        Ok(report)
    }

    /// Abort multipart uploads of this day left by an interrupted run.
    async fn abort_stale_uploads(&self, partition: &str, day: NaiveDate) -> Result<(), Error> {
        let uploads = self
            .store
            .list_uploads(&layout::uploads_prefix(&self.config.prefix))
            .await
            .map_err(|e| e.at(partition, Step::Upload))?;
        for u in uploads.into_iter().filter(|u| layout::is_part_of_day(&u.key, day)) {
            tracing::info!(partition, key = %u.key, "aborting an unfinished multipart upload");
            self.store
                .abort_upload(&u.key, &u.upload_id)
                .await
                .map_err(|e| e.at(partition, Step::Upload))?;
        }
        Ok(())
    }

    /// Delete objects of this day that the export just done did not write
    /// (left by an earlier attempt with other settings).
    async fn delete_stale_parts(
        &self,
        partition: &str,
        day: NaiveDate,
        tenants: &[export::TenantArchive],
    ) -> Result<(), Error> {
        for t in tenants {
            let listed = self
                .store
                .list(&layout::tenant_day_prefix(&self.config.prefix, &t.tenant_id, day))
                .await
                .map_err(|e| e.at(partition, Step::Upload))?;
            for o in listed {
                if !t.files.iter().any(|f| f.key == o.key) {
                    tracing::info!(partition, key = %o.key, "deleting a stale part");
                    self.store
                        .delete(&o.key)
                        .await
                        .map_err(|e| e.at(partition, Step::Upload))?;
                }
            }
        }
        Ok(())
    }
}
