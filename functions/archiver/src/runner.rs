//! The job runner: which partitions to archive and, for each, a state machine
//! over its `archive_jobs` row. Each state has one step function that does its
//! work and moves the job on with a compare-and-set; the allowed moves are
//! [`JobState::TRANSITIONS`]. A run cut off anywhere leaves the job in the last
//! recorded state, and the next run resumes from there:
//!
//! | state        | step             | does                                                      | moves to                         |
//! |--------------|------------------|-----------------------------------------------------------|----------------------------------|
//! | `exporting`  | [`Archiver::export_step`]  | aborts stale uploads, writes the parts and the manifest | `manifested`                     |
//! | `manifested` | [`Archiver::verify_step`]  | re-reads S3 and compares it with PostgreSQL              | `verified`, or `exporting` on a mismatch |
//! | `verified`   | [`Archiver::detach_step`]  | detaches the partition concurrently (or finalizes)       | `detached`                       |
//! | `detached`   | [`Archiver::finish_step`]  | checks the detached table holds what was archived, drops it | `done`, or `exporting` when rows landed after verify |
//! | `done` with late rows | (planning) | the day has rows in `late_events` (accepted after it closed) | `supplementing` |
//! | `supplementing` | [`Archiver::supplement_step`] | claims the late rows, writes them as the next parts of each tenant and a new manifest version listing every file of the day | `supplement_manifested` |
//! | `supplement_manifested` | [`Archiver::verify_step`] | re-reads S3, compares the supplement with the claimed late rows and the version it supersedes | `supplement_verified`, or `supplementing` on a mismatch |
//! | `supplement_verified` | [`Archiver::forget_late_step`] | deletes the claimed late rows | `done` |
//!
//! No object in S3 is overwritten once a verified manifest names it: a supplement's
//! parts continue the day's part numbers, and every manifest version has its
//! own key (`dt=<day>.v<n>.json`) and names the one it supersedes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use stele_store::archive_jobs::{ArchiveJob, JobState, ManifestRecord, TableStatus};
use stele_store::{partitions, ArchiveDb, PgArchiveDb, StoreConfig};

use crate::config::ArchiverConfig;
use crate::error::{Error, Step};
use crate::export;
use crate::layout;
use crate::manifest::{Manifest, PreviousManifest, Supplement};
use crate::merkle::MerkleBuilder;
use crate::store::ArchiveStore;
use crate::verify;

/// Test hook: fail right after a step's action, before it is recorded, as a
/// crash there would. Set only through `with_fail_point` (feature `testing`).
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
    /// Claimed late rows deleted after their supplement was verified, not yet recorded.
    AfterLateDelete,
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
    /// Late rows (accepted after the day closed) this call added to the
    /// day's archive as a supplement.
    pub supplemented: u64,
}

/// What one scheduled run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub archived: Vec<PartitionReport>,
    /// Eligible partitions left for the next run (time ran out, or an earlier one failed).
    pub remaining: Vec<String>,
    /// Another run held the run lock: this one did nothing.
    pub busy: bool,
    pub error: Option<String>,
}

/// The archiver on S3 and PostgreSQL, as the Lambda and `stele archive` run it.
pub type PgArchiver<S> = Archiver<S, PgArchiveDb>;

pub struct Archiver<S, D> {
    store: Arc<S>,
    db: D,
    config: ArchiverConfig,
    fail_point: Option<FailPoint>,
}

/// What a step did besides moving the job.
#[derive(Debug, Default, Clone, Copy)]
struct StepDone {
    dropped: bool,
    late_archived: u64,
}

/// The partition a step works on, and the time it has.
struct Target<'a> {
    partition: &'a str,
    day: NaiveDate,
    deadline: Instant,
}

impl<S: ArchiveStore + 'static> Archiver<S, PgArchiveDb> {
    /// The archiver on PostgreSQL at `db`. An export is one long COPY: the
    /// session gets the archiver's own statement timeout.
    pub fn with_postgres(store: Arc<S>, mut db: StoreConfig, config: ArchiverConfig) -> Self {
        db.statement_timeout = config.statement_timeout;
        Self::new(store, PgArchiveDb::new(db), config)
    }
}

impl<S: ArchiveStore + 'static, D: ArchiveDb> Archiver<S, D> {
    /// Clients are built once: `store` and `db` here (the Postgres connection
    /// opens lazily and re-opens if it drops between invocations).
    pub fn new(store: Arc<S>, db: D, config: ArchiverConfig) -> Self {
        Self {
            store,
            db,
            config,
            fail_point: None,
        }
    }

    /// Crash injection for tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_fail_point(mut self, fail_point: Option<FailPoint>) -> Self {
        self.fail_point = fail_point;
        self
    }

    pub fn config(&self) -> &ArchiverConfig {
        &self.config
    }

    pub fn db(&self) -> &D {
        &self.db
    }

    /// A partition is eligible when its upper bound is older than both the
    /// retention and the max lateness: no row can still land in it.
    pub fn is_eligible(&self, upper: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        upper < now - self.config.retention && upper < now - self.config.max_lateness
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
        let plan = Error::store("*", Step::Plan);
        let mut out: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
        for job in self.db.unfinished_jobs().await.map_err(plan)? {
            out.insert((job.day, job.partition_name));
        }
        for p in self.db.partitions().await.map_err(plan)? {
            if self.is_eligible(p.upper, now) {
                out.insert((p.day, p.name));
            }
        }
        // Archived days with late rows waiting for a supplement.
        for day in self.db.late_days().await.map_err(plan)? {
            let name = partitions::partition_name(day);
            if self
                .db
                .job(&name)
                .await
                .map_err(plan)?
                .is_some_and(|j| j.state == JobState::Done)
            {
                out.insert((day, name));
            }
        }
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }

    /// A scheduled run: create partitions ahead, then archive every candidate,
    /// oldest first, while at least `min_remaining` is left before `deadline`.
    /// Stops at the first failure (the manifest chain follows the days).
    pub async fn run(&self, now: DateTime<Utc>, deadline: Instant) -> RunReport {
        let mut report = RunReport::default();
        match self.db.try_lock_run().await {
            Ok(true) => {}
            Ok(false) => {
                report.busy = true;
                tracing::info!("another archiver run is in progress; nothing done");
                return report;
            }
            Err(e) => {
                report.error = Some(Error::store("*", Step::Plan)(e).to_string());
                return report;
            }
        }
        self.run_locked(now, deadline, &mut report).await;
        if let Err(e) = self.db.unlock_run().await {
            tracing::warn!(error = %e, "could not release the run lock (the session end releases it)");
        }
        report
    }

    async fn run_locked(&self, now: DateTime<Utc>, deadline: Instant, report: &mut RunReport) {
        let today = now.date_naive();
        let last = today + chrono::Duration::days(self.config.partitions_ahead_days as i64);
        if let Err(e) = self.db.ensure_range(today, last).await {
            tracing::warn!(error = %e, "could not create partitions ahead");
        }
        let candidates = match self.candidates(now).await {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(e.to_string());
                return;
            }
        };
        let mut iter = candidates.into_iter();
        for name in iter.by_ref() {
            if Instant::now() + self.config.min_remaining > deadline {
                report.remaining.push(name);
                break;
            }
            match self.archive_holding_lock(&name, false, now, deadline).await {
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
    }

    /// Archive one partition (or, with `dry_run`, say what would be done and
    /// change nothing). Refuses a partition that is not yet eligible unless a
    /// job for it already exists, and refuses to start while another run holds
    /// the run lock. A failure is recorded on the job.
    pub async fn archive_partition(
        &self,
        partition: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<PartitionReport, Error> {
        if dry_run {
            return self.archive_holding_lock(partition, true, now, deadline).await;
        }
        if !self
            .db
            .try_lock_run()
            .await
            .map_err(Error::store(partition, Step::Plan))?
        {
            return Err(invalid(
                partition,
                Step::Plan,
                "another archiver run is in progress; try again when it ends".into(),
            ));
        }
        let result = self.archive_holding_lock(partition, false, now, deadline).await;
        if let Err(e) = self.db.unlock_run().await {
            tracing::warn!(error = %e, "could not release the run lock (the session end releases it)");
        }
        result
    }

    async fn archive_holding_lock(
        &self,
        partition: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<PartitionReport, Error> {
        let result = self.archive_with(partition, dry_run, now, deadline).await;
        if let Err(e) = &result {
            if !dry_run {
                let _ = self.db.set_error(partition, &e.to_string()).await;
            }
        }
        result
    }

    async fn archive_with(
        &self,
        partition: &str,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<PartitionReport, Error> {
        let plan = Error::store(partition, Step::Plan);
        let day = partitions::day_of_partition(partition).ok_or_else(|| {
            invalid(
                partition,
                Step::Plan,
                "not a stele day partition name (audit_events_pYYYYMMDD)".into(),
            )
        })?;
        let (_, upper) = partitions::bounds(day);
        let eligible = self.is_eligible(upper, now);
        let status = self.db.table_status(partition).await.map_err(plan)?;
        let job = self.db.job(partition).await.map_err(plan)?;
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
            supplemented: 0,
        };

        if dry_run {
            if status != TableStatus::Absent {
                report.tenants = self.db.tenant_counts(partition).await.map_err(plan)?;
                report.rows = report.tenants.iter().map(|t| t.1).sum();
            }
            return Ok(report);
        }
        if job.is_none() {
            if status != TableStatus::Attached {
                return Err(invalid(partition, Step::Plan, "no such attached partition".into()));
            }
            if !eligible {
                return Err(invalid(
                    partition,
                    Step::Plan,
                    "not eligible yet: newer than the retention or the max lateness".into(),
                ));
            }
        }

        let target = Target {
            partition,
            day,
            deadline,
        };
        let mut job = self.db.begin_job(partition, day).await.map_err(plan)?;
        let mut supplement_started = false;
        loop {
            while job.state != JobState::Done {
                let (next, done) = self.step(&target, &job).await?;
                report.dropped |= done.dropped;
                report.supplemented += done.late_archived;
                job = next;
            }
            // Late rows of the finished day: one supplement per call (rows
            // that keep landing wait for the next run, never loop this one).
            if supplement_started || !self.db.late_days().await.map_err(plan)?.contains(&day) {
                break;
            }
            supplement_started = true;
            job = self
                .db
                .move_job(partition, JobState::Done, JobState::Supplementing, None)
                .await
                .map_err(plan)?;
        }
        report.state = job.state.as_str().to_string();
        report.manifest_key = job.manifest_key.clone();
        report.rows = job.rows.unwrap_or(0) as u64;
        report.files = job.files.unwrap_or(0) as u32;
        report.bytes = job.bytes.unwrap_or(0) as u64;
        Ok(report)
    }

    /// Run the step of the job's state; returns the job as it was moved (and
    /// what else the step did).
    async fn step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<(ArchiveJob, StepDone), Error> {
        let none = StepDone::default();
        Ok(match job.state {
            JobState::Exporting => (self.export_step(t, job).await?, none),
            JobState::Manifested | JobState::SupplementManifested => (self.verify_step(t, job).await?, none),
            JobState::Verified => (self.detach_step(t, job).await?, none),
            JobState::Detached => {
                let (moved, dropped) = self.finish_step(t, job).await?;
                (moved, StepDone { dropped, ..none })
            }
            JobState::Done => (job.clone(), none),
            JobState::Supplementing => (self.supplement_step(t, job).await?, none),
            JobState::SupplementVerified => self.forget_late_step(t, job).await?,
        })
    }

    /// `exporting` → `manifested`: write the parts and the manifest.
    async fn export_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
        let partition = t.partition;
        if self
            .db
            .table_status(partition)
            .await
            .map_err(Error::store(partition, Step::Export))?
            == TableStatus::Absent
        {
            return Err(invalid(
                partition,
                Step::Export,
                "the table is gone but no archive was recorded".into(),
            ));
        }
        self.abort_stale_uploads(partition, t.day).await?;
        let export_deadline = t.deadline.checked_sub(Duration::from_secs(10)).unwrap_or(t.deadline);
        let tenants = export::export(&self.db, &*self.store, &self.config, partition, t.day, export_deadline).await?;
        self.fail(FailPoint::AfterUpload, partition, Step::Upload)?;
        self.delete_stale_parts(partition, t.day, &tenants).await?;
        let manifest_step = Error::store(partition, Step::Manifest);
        let previous = self
            .db
            .previous_manifest(t.day)
            .await
            .map_err(manifest_step)?
            .map(|(key, sha256)| PreviousManifest { key, sha256 });
        // A day written again (rows landed after it was verified) names the
        // version it replaces.
        let supersedes = job
            .manifest_key
            .clone()
            .zip(job.manifest_sha256.clone())
            .map(|(key, sha256)| PreviousManifest { key, sha256 });
        // A new version gets its own key: the one it replaces stays readable.
        let version = supersedes.as_ref().map_or(1, |p| layout::manifest_version(&p.key) + 1);
        let manifest = Manifest::new(partition, t.day, tenants, previous, Utc::now()).superseding(supersedes, version);
        let (bytes, sha) = manifest.to_bytes();
        let key = layout::manifest_version_key(&self.config.prefix, t.day, version);
        self.store
            .put(&key, Bytes::from(bytes))
            .await
            .map_err(|e| e.at(partition, Step::Manifest))?;
        self.fail(FailPoint::AfterManifest, partition, Step::Manifest)?;
        let record = ManifestRecord {
            rows: manifest.rows as i64,
            files: manifest.files as i32,
            bytes: manifest.bytes as i64,
            key: key.clone(),
            sha256: sha,
        };
        let moved = self
            .db
            .move_job(partition, JobState::Exporting, JobState::Manifested, Some(&record))
            .await
            .map_err(manifest_step)?;
        tracing::info!(partition, rows = manifest.rows, files = manifest.files, bytes = manifest.bytes, manifest = %key, "archive written");
        Ok(moved)
    }

    /// `manifested` → `verified` (and `supplement_manifested` →
    /// `supplement_verified`): the S3 copy equals PostgreSQL (the partition, or
    /// the claimed late rows); on a mismatch the job goes back to `exporting`
    /// (`supplementing`) and the run fails (the next one rewrites it).
    async fn verify_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
        let partition = t.partition;
        let verify_step = Error::store(partition, Step::Verify);
        let supplement = job.state == JobState::SupplementManifested;
        let (verified, rewrite) = if supplement {
            (JobState::SupplementVerified, JobState::Supplementing)
        } else {
            (JobState::Verified, JobState::Exporting)
        };
        let (Some(key), Some(sha)) = (job.manifest_key.as_deref(), job.manifest_sha256.as_deref()) else {
            return Err(invalid(
                partition,
                Step::Verify,
                "job is manifested but records no manifest".into(),
            ));
        };
        if !supplement && self.db.table_status(partition).await.map_err(verify_step)? == TableStatus::Absent {
            return Err(invalid(
                partition,
                Step::Verify,
                "the table is gone before it was detached".into(),
            ));
        }
        match verify::verify(&self.db, &self.store, &self.config.prefix, partition, t.day, key, sha).await {
            Ok(manifest) => {
                let moved = self
                    .db
                    .move_job(partition, job.state, verified, None)
                    .await
                    .map_err(verify_step)?;
                tracing::info!(
                    partition,
                    rows = manifest.rows,
                    version = manifest.version,
                    "archive verified"
                );
                self.fail(FailPoint::AfterVerify, partition, Step::Verify)?;
                Ok(moved)
            }
            Err(e @ Error::Mismatch { .. }) => {
                let base = if supplement {
                    // Back to the version the supplement was to supersede.
                    match self.supplement_base(partition, key, sha).await {
                        Ok(base) => Some(base),
                        Err(unreadable) => {
                            tracing::error!(partition, error = %unreadable, "the supplement and the version it supersedes cannot be read; left for an operator");
                            return Err(e);
                        }
                    }
                } else {
                    None
                };
                self.db
                    .move_job(partition, job.state, rewrite, base.as_ref())
                    .await
                    .map_err(verify_step)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The record of the version a supplement manifest supersedes (both read
    /// from S3 and checked against their SHA-256).
    async fn supplement_base(&self, partition: &str, key: &str, sha: &str) -> Result<ManifestRecord, Error> {
        let manifest = verify::read_manifest(&*self.store, partition, key, sha).await?;
        let earlier = manifest
            .supersedes
            .ok_or_else(|| invalid(partition, Step::Verify, "a supplement that supersedes nothing".into()))?;
        let base = verify::read_manifest(&*self.store, partition, &earlier.key, &earlier.sha256).await?;
        Ok(ManifestRecord {
            rows: base.rows as i64,
            files: base.files as i32,
            bytes: base.bytes as i64,
            key: earlier.key,
            sha256: earlier.sha256,
        })
    }

    /// `supplementing` → `supplement_manifested`: claim the day's late rows,
    /// write them per tenant as the parts after the day's last one, and a new
    /// manifest version that lists every file of the day and supersedes the
    /// recorded one. Parts left by an interrupted attempt are replaced.
    async fn supplement_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
        let partition = t.partition;
        let (Some(key), Some(sha)) = (job.manifest_key.clone(), job.manifest_sha256.clone()) else {
            return Err(invalid(
                partition,
                Step::Export,
                "the day has late rows but its job records no manifest".into(),
            ));
        };
        let earlier = verify::read_manifest(&*self.store, partition, &key, &sha).await?;
        let claimed = self
            .db
            .claim_late(t.day)
            .await
            .map_err(Error::store(partition, Step::Export))?;
        self.abort_stale_uploads(partition, t.day).await?;
        let next_part: BTreeMap<String, u32> = earlier
            .tenants
            .iter()
            .map(|t| {
                let last = t.files.iter().filter_map(|f| layout::part_number(&f.key)).max();
                (t.tenant_id.clone(), last.map_or(0, |n| n + 1))
            })
            .collect();
        let export_deadline = t.deadline.checked_sub(Duration::from_secs(10)).unwrap_or(t.deadline);
        let added = export::export_late(
            &self.db,
            &*self.store,
            &self.config,
            partition,
            t.day,
            export_deadline,
            &|tenant| next_part.get(tenant).copied().unwrap_or(0),
        )
        .await?;
        self.fail(FailPoint::AfterUpload, partition, Step::Upload)?;

        // Every tenant of the day: its earlier files, then its new ones; the
        // root covers all of them in that order.
        let mut merged: BTreeMap<String, export::TenantArchive> = earlier
            .tenants
            .iter()
            .map(|t| (t.tenant_id.clone(), t.clone()))
            .collect();
        for a in &added {
            let entry = merged
                .entry(a.tenant_id.clone())
                .or_insert_with(|| export::TenantArchive {
                    tenant_id: a.tenant_id.clone(),
                    rows: 0,
                    merkle_root: String::new(),
                    files: Vec::new(),
                });
            entry.rows += a.rows;
            entry.files.extend(a.files.iter().cloned());
            let mut merkle = MerkleBuilder::new();
            for file in &entry.files {
                verify::file_hashes(&self.store, partition, file, |h| merkle.push(h)).await?;
            }
            entry.merkle_root = merkle.root_hex();
        }
        let merged: Vec<export::TenantArchive> = merged.into_values().collect();
        self.delete_stale_parts(partition, t.day, &merged).await?;

        let version = earlier.version.max(layout::manifest_version(&key)) + 1;
        let supplement = Supplement {
            rows: added.iter().map(|a| a.rows).sum(),
            tenants: added,
        };
        let manifest = Manifest::new(partition, t.day, merged, earlier.previous_manifest.clone(), Utc::now())
            .superseding(Some(PreviousManifest { key, sha256: sha }), version)
            .supplementing(supplement);
        let (bytes, sha) = manifest.to_bytes();
        let new_key = layout::manifest_version_key(&self.config.prefix, t.day, version);
        self.store
            .put(&new_key, Bytes::from(bytes))
            .await
            .map_err(|e| e.at(partition, Step::Manifest))?;
        self.fail(FailPoint::AfterManifest, partition, Step::Manifest)?;
        let record = ManifestRecord {
            rows: manifest.rows as i64,
            files: manifest.files as i32,
            bytes: manifest.bytes as i64,
            key: new_key.clone(),
            sha256: sha,
        };
        let moved = self
            .db
            .move_job(
                partition,
                JobState::Supplementing,
                JobState::SupplementManifested,
                Some(&record),
            )
            .await
            .map_err(Error::store(partition, Step::Manifest))?;
        tracing::info!(partition, late_rows = claimed, version, manifest = %new_key, "supplement written");
        Ok(moved)
    }

    /// `supplement_verified` → `done`: the late rows the verified supplement
    /// covers are deleted (rows that landed since stay for the next one).
    async fn forget_late_step(&self, t: &Target<'_>, _job: &ArchiveJob) -> Result<(ArchiveJob, StepDone), Error> {
        let partition = t.partition;
        let drop_step = Error::store(partition, Step::Drop);
        let deleted = self.db.delete_claimed_late(t.day).await.map_err(drop_step)?;
        self.fail(FailPoint::AfterLateDelete, partition, Step::Drop)?;
        let moved = self
            .db
            .move_job(partition, JobState::SupplementVerified, JobState::Done, None)
            .await
            .map_err(drop_step)?;
        tracing::info!(partition, late_rows = deleted, "late rows archived");
        Ok((
            moved,
            StepDone {
                late_archived: deleted,
                ..StepDone::default()
            },
        ))
    }

    /// `verified` → `detached`.
    async fn detach_step(&self, t: &Target<'_>, _job: &ArchiveJob) -> Result<ArchiveJob, Error> {
        let partition = t.partition;
        let detach_step = Error::store(partition, Step::Detach);
        if self.db.table_status(partition).await.map_err(detach_step)? == TableStatus::Absent {
            return Err(invalid(
                partition,
                Step::Detach,
                "the table is gone before it was detached".into(),
            ));
        }
        self.db.detach(partition).await.map_err(detach_step)?;
        self.fail(FailPoint::AfterDetach, partition, Step::Detach)?;
        let moved = self
            .db
            .move_job(partition, JobState::Verified, JobState::Detached, None)
            .await
            .map_err(detach_step)?;
        tracing::info!(partition, "partition detached");
        Ok(moved)
    }

    /// `detached` → `done`: the last guard against loss. The detached table
    /// must hold exactly the rows archived; then it is dropped (or kept by
    /// setting). Rows that landed between verify and detach make the job go
    /// back to `exporting`: the day is written again from the detached table,
    /// where nothing can land any more. Fewer rows than archived is refused.
    async fn finish_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<(ArchiveJob, bool), Error> {
        let partition = t.partition;
        let drop_step = Error::store(partition, Step::Drop);
        let mut dropped = false;
        if let Some(in_table) = self.db.count_rows(partition).await.map_err(drop_step)? {
            let archived = job.rows.unwrap_or(0);
            if in_table > archived {
                tracing::warn!(
                    partition,
                    in_table,
                    archived,
                    "rows landed after verify: writing the day again"
                );
                let moved = self
                    .db
                    .move_job(partition, JobState::Detached, JobState::Exporting, None)
                    .await
                    .map_err(drop_step)?;
                return Ok((moved, false));
            }
            if in_table < archived {
                return Err(invalid(
                    partition,
                    Step::Drop,
                    format!("detached table has {in_table} rows, the archive {archived}; not dropping"),
                ));
            }
            if self.config.drop_after_archive {
                self.db.drop_detached(partition).await.map_err(drop_step)?;
                dropped = true;
                tracing::info!(partition, "partition dropped");
            }
        }
        let moved = self
            .db
            .move_job(partition, JobState::Detached, JobState::Done, None)
            .await
            .map_err(drop_step)?;
        Ok((moved, dropped))
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

fn invalid(partition: &str, step: Step, detail: String) -> Error {
    Error::Invalid {
        partition: partition.to_string(),
        step,
        detail,
    }
}

/// Every state, transition and crash point of the job, against the in-memory
/// stores. The same paths run against real PostgreSQL and LocalStack in
/// tests/archiver.rs and tests/faults.rs.
#[cfg(test)]
mod tests {
    use super::*;

    use chrono::TimeZone;
    use stele_store::memory::{MemoryArchiveDb, MemoryRow};
    use uuid::Uuid;

    use crate::store::MemoryStore;

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
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&n.to_be_bytes());
        hash[4] = tenant.len() as u8;
        MemoryRow::event(tenant, Uuid::from_u128(u128::from(n) + 1), at, hash)
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
            ("event_hashes", 1),
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
            ("late_hashes", 1),
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
}
