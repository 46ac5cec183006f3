//! The step of each state of a day's first archive: export, verify, detach, finish.

use crate::error::{Error, Step};
use crate::export;
use crate::layout;
use crate::manifest::{Manifest, PreviousManifest};
use crate::store::ArchiveStore;
use crate::verify;
use bytes::Bytes;
use chrono::Utc;
use std::time::Duration;
use stele_store::archive_jobs::{ArchiveJob, JobState, ManifestRecord, TableStatus};
use stele_store::ArchiveDb;

use super::{invalid, Archiver, FailPoint, Target};

impl<S: ArchiveStore + 'static, D: ArchiveDb> Archiver<S, D> {
    /// `exporting` → `manifested`: write the parts and the manifest.
    pub(super) async fn export_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
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
        let mut tenants =
            export::export(&self.db, &*self.store, &self.config, partition, t.day, export_deadline).await?;
        self.fail(FailPoint::AfterUpload, partition, Step::Upload)?;
        self.delete_stale_parts(partition, t.day, &tenants).await?;
        export::anchor(&self.db, &self.config.prefix, partition, &mut tenants).await?;
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
    pub(super) async fn verify_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
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

    /// `verified` → `detached`.
    pub(super) async fn detach_step(&self, t: &Target<'_>, _job: &ArchiveJob) -> Result<ArchiveJob, Error> {
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
    pub(super) async fn finish_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<(ArchiveJob, bool), Error> {
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
}
