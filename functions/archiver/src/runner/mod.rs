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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use stele_store::archive_jobs::{ArchiveJob, JobState, TableStatus};
use stele_store::{partitions, ArchiveDb, PgArchiveDb, StoreConfig};

use crate::backlog::{KinesisBacklog, StreamBacklog, RECEIVED_TO_ARRIVAL_SLACK};
use crate::config::ArchiverConfig;
use crate::error::{Error, Step};
use crate::export;
use crate::layout;
use crate::store::ArchiveStore;

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
    /// Event ids forgotten because their deduplication window ended.
    pub event_ids_pruned: u64,
    /// The stream's low-water mark (RFC 3339): every event received before it
    /// is in PostgreSQL. `None` when the backlog is not checked or nothing waits.
    pub low_water_mark: Option<String>,
    /// Partitions old enough by the clock but held back because records that
    /// may belong to them still wait in the stream.
    pub held_back: Vec<String>,
    pub error: Option<String>,
}

/// The archiver on S3 and PostgreSQL, as the Lambda and `stele archive` run it.
pub type PgArchiver<S> = Archiver<S, PgArchiveDb>;

pub struct Archiver<S, D> {
    store: Arc<S>,
    db: D,
    config: ArchiverConfig,
    /// The stream's backlog; without it, days are eligible by the clock alone.
    backlog: Option<Arc<dyn StreamBacklog>>,
    fail_point: Option<FailPoint>,
}

/// What a scheduled run will work on.
#[derive(Debug, Default)]
pub struct Plan {
    /// Oldest first.
    pub partitions: Vec<String>,
    pub held_back: Vec<String>,
    pub low_water_mark: Option<DateTime<Utc>>,
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
            backlog: None,
            fail_point: None,
        }
    }

    /// Hold days back while records that may belong to them wait in the stream.
    pub fn with_backlog(mut self, backlog: Arc<dyn StreamBacklog>) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// [`Archiver::with_backlog`] on the Kinesis stream named `stream`, if one
    /// is named (blank is none): the Lambda's `STELE_STREAM_NAME`, `stele
    /// archive --stream`, `stele dev`'s stream.
    pub fn with_stream_backlog(self, kinesis: aws_sdk_kinesis::Client, stream: Option<&str>) -> Self {
        match stream.map(str::trim).filter(|s| !s.is_empty()) {
            Some(stream) => self.with_backlog(Arc::new(KinesisBacklog::new(kinesis, stream))),
            None => self,
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
        Ok(self.plan(now).await?.partitions)
    }

    /// The low-water mark: the arrival of the oldest record not yet consumed,
    /// less the stamp-to-arrival slack, or `None` when nothing waits. Without a
    /// backlog port, `None` (the clock alone decides).
    async fn low_water_mark(&self) -> Result<Option<DateTime<Utc>>, Error> {
        let Some(backlog) = &self.backlog else {
            return Ok(None);
        };
        let consumed = self.db.stream_progress().await.map_err(Error::store("*", Step::Plan))?;
        let oldest = backlog
            .oldest_unconsumed(&consumed)
            .await
            .map_err(|e| invalid("*", Step::Plan, format!("the stream's backlog is unknown: {e}")))?;
        Ok(oldest.map(|t| t - RECEIVED_TO_ARRIVAL_SLACK))
    }

    /// Unfinished jobs, eligible partitions and archived days with late rows,
    /// oldest first. A partition is eligible once it is past the retention by
    /// the clock and past the lateness by both the clock and the stream's
    /// low-water mark. If the backlog cannot be read, no new day is started.
    pub async fn plan(&self, now: DateTime<Utc>) -> Result<Plan, Error> {
        let plan_error = Error::store("*", Step::Plan);
        let mut plan = Plan::default();
        let mut out: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
        for job in self.db.unfinished_jobs().await.map_err(plan_error)? {
            out.insert((job.day, job.partition_name));
        }
        let horizon = match self.low_water_mark().await {
            Ok(mark) => {
                plan.low_water_mark = mark;
                Some(mark.map_or(now, |m| m.min(now)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "no new day is archived this run");
                None
            }
        };
        for p in self.db.partitions().await.map_err(plan_error)? {
            if !self.is_eligible(p.upper, now) {
                continue;
            }
            match horizon {
                Some(h) if p.upper < h - self.config.max_lateness => {
                    out.insert((p.day, p.name));
                }
                _ => plan.held_back.push(p.name),
            }
        }
        // Archived days with late rows waiting for a supplement.
        for day in self.db.late_days().await.map_err(plan_error)? {
            let name = partitions::partition_name(day);
            if self
                .db
                .job(&name)
                .await
                .map_err(plan_error)?
                .is_some_and(|j| j.state == JobState::Done)
            {
                out.insert((day, name));
            }
        }
        plan.held_back.retain(|name| !out.iter().any(|(_, n)| n == name));
        plan.partitions = out.into_iter().map(|(_, n)| n).collect();
        Ok(plan)
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
        // Housekeeping, not archiving: a failure is retried by the next run.
        match self.db.prune_event_ids(now - self.config.dedup_window).await {
            Ok(n) => report.event_ids_pruned = n,
            Err(e) => tracing::warn!(error = %e, "could not prune event ids past the deduplication window"),
        }
        let candidates = match self.plan(now).await {
            Ok(plan) => {
                if !plan.held_back.is_empty() {
                    tracing::info!(partitions = ?plan.held_back, low_water_mark = ?plan.low_water_mark,
                        "held back: records that may belong to these days still wait in the stream");
                }
                report.held_back = plan.held_back;
                report.low_water_mark = plan
                    .low_water_mark
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                plan.partitions
            }
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

    /// Abort multipart uploads of this day left by an interrupted run.
    pub(super) async fn abort_stale_uploads(&self, partition: &str, day: NaiveDate) -> Result<(), Error> {
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
    pub(super) async fn delete_stale_parts(
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

mod steps;
mod supplement;
#[cfg(test)]
mod tests;
