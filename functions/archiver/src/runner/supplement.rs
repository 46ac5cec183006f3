//! The steps that add late rows to a day already archived: the supplement
//! (new parts and a new manifest version) and forgetting the archived late rows.

use crate::error::{Error, Step};
use crate::export;
use crate::layout;
use crate::manifest::{Manifest, PreviousManifest, Supplement};
use crate::merkle::MerkleBuilder;
use crate::store::ArchiveStore;
use crate::verify;
use bytes::Bytes;
use chrono::Utc;
use std::collections::BTreeMap;
use std::time::Duration;
use stele_store::archive_jobs::{ArchiveJob, JobState, ManifestRecord};
use stele_store::ArchiveDb;

use super::{invalid, Archiver, FailPoint, StepDone, Target};

impl<S: ArchiveStore + 'static, D: ArchiveDb> Archiver<S, D> {
    /// The record of the version a supplement manifest supersedes (both read
    /// from S3 and checked against their SHA-256).
    pub(super) async fn supplement_base(&self, partition: &str, key: &str, sha: &str) -> Result<ManifestRecord, Error> {
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
    pub(super) async fn supplement_step(&self, t: &Target<'_>, job: &ArchiveJob) -> Result<ArchiveJob, Error> {
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
                .or_insert_with(|| export::TenantArchive::empty(&a.tenant_id));
            entry.rows += a.rows;
            entry.max_leaf_index = entry.max_leaf_index.max(a.max_leaf_index);
            entry.files.extend(a.files.iter().cloned());
            let mut merkle = MerkleBuilder::new();
            for file in &entry.files {
                verify::check_archived_file(&self.store, partition, &entry.tenant_id, file, |row| {
                    merkle.push(&row.event_hash.0)
                })
                .await?;
            }
            entry.merkle_root = merkle.root_hex();
        }
        let mut merged: Vec<export::TenantArchive> = merged.into_values().collect();
        export::anchor(&self.db, &self.config.prefix, partition, &mut merged).await?;
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
    pub(super) async fn forget_late_step(
        &self,
        t: &Target<'_>,
        _job: &ArchiveJob,
    ) -> Result<(ArchiveJob, StepDone), Error> {
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
}
