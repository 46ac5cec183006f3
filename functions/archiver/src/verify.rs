//! Verification from S3, before Postgres is touched: the manifest is the one
//! recorded, every tenant's objects are exactly the manifest's files, each
//! file's SHA-256 and footer row count match the manifest, every row's content
//! (on both sides: the rows Postgres holds now and the rows read back from the
//! files) re-hashes to its `event_hash`, the Merkle roots of those hashes agree,
//! and every row that has a leaf in its tenant's verifiable log is that leaf
//! (tenant, event_hash and received_at, as the log holds them). A supplement is
//! held to the same, against the late rows it covers, and must keep the version
//! it supersedes intact.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use stele_store::ArchiveDb;

use crate::error::{Error, Step};
use crate::export::{late_roots, postgres_roots, CheckedRoots, LeafClaim, TenantArchive};
use crate::layout;
use crate::manifest::{Manifest, Supplement};
use crate::merkle::MerkleBuilder;
use crate::store::ArchiveStore;
use crate::writer::PartManifest;

fn mismatch(partition: &str, detail: String) -> Error {
    Error::Mismatch {
        partition: partition.to_string(),
        detail,
    }
}

/// Read a manifest and check it is the one recorded (its SHA-256).
pub async fn read_manifest<S: ArchiveStore>(
    store: &S,
    partition: &str,
    key: &str,
    sha256: &str,
) -> Result<Manifest, Error> {
    let bytes = store
        .get(key)
        .await
        .map_err(|e| e.at(partition, Step::Verify))?
        .ok_or_else(|| mismatch(partition, format!("manifest {key} is missing")))?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if sha != sha256 {
        return Err(mismatch(
            partition,
            format!("manifest {key}: SHA-256 is {sha}, recorded {sha256}"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| mismatch(partition, format!("manifest {key} does not parse: {e}")))
}

/// Check the archive of `partition` in S3 against Postgres. Returns the
/// manifest. A supplement (a manifest with `supplement`) is checked against
/// the claimed late rows and the version it supersedes: it must list that
/// version's files unchanged, then its own.
pub async fn verify<S: ArchiveStore + 'static, D: ArchiveDb>(
    db: &D,
    store: &Arc<S>,
    prefix: &str,
    partition: &str,
    day: NaiveDate,
    manifest_key: &str,
    manifest_sha256: &str,
) -> Result<Manifest, Error> {
    let s3 = |e: crate::error::StoreError| e.at(partition, Step::Verify);
    let manifest = read_manifest(&**store, partition, manifest_key, manifest_sha256).await?;

    // Postgres, now: the partition, or the late rows a supplement covers.
    let (pg, archived): (CheckedRoots, &[TenantArchive]) = match &manifest.supplement {
        None => (postgres_roots(db, partition).await?, &manifest.tenants),
        Some(supplement) => {
            check_supplement_layout(&**store, partition, &manifest, supplement).await?;
            (late_roots(db, partition, day).await?, &supplement.tenants)
        }
    };
    let archived_roots: Vec<(String, u64, String)> = archived
        .iter()
        .map(|t| (t.tenant_id.clone(), t.rows, t.merkle_root.clone()))
        .collect();
    check_leaves(db, partition, "PostgreSQL", &pg.leaves).await?;
    let pg = pg.roots;
    if pg != archived_roots {
        let pg_rows: u64 = pg.iter().map(|t| t.1).sum();
        let rows: u64 = archived.iter().map(|t| t.rows).sum();
        return Err(mismatch(
            partition,
            format!(
                "manifest has {} tenants / {rows} rows, PostgreSQL {} tenants / {pg_rows} rows, or their hash roots differ",
                archived_roots.len(),
                pg.len()
            ),
        ));
    }

    // S3, object by object.
    for tenant in &manifest.tenants {
        let listed: BTreeMap<String, u64> = store
            .list(&layout::tenant_day_prefix(prefix, &tenant.tenant_id, day))
            .await
            .map_err(s3)?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let expected: BTreeMap<String, u64> = tenant.files.iter().map(|f| (f.key.clone(), f.bytes)).collect();
        if listed != expected {
            return Err(mismatch(
                partition,
                format!(
                    "tenant {}: objects in S3 {:?} are not the manifest's {:?}",
                    tenant.tenant_id,
                    listed.keys().collect::<Vec<_>>(),
                    expected.keys().collect::<Vec<_>>()
                ),
            ));
        }
        let added = manifest
            .supplement
            .as_ref()
            .and_then(|s| s.tenants.iter().find(|t| t.tenant_id == tenant.tenant_id));
        let mut merkle = MerkleBuilder::new();
        let mut added_merkle = MerkleBuilder::new();
        let mut leaves = Vec::new();
        for file in &tenant.files {
            let is_added = added.is_some_and(|a| a.files.iter().any(|f| f.key == file.key));
            check_archived_file(store, partition, &tenant.tenant_id, file, |row| {
                merkle.push(&row.event_hash.0);
                if is_added {
                    added_merkle.push(&row.event_hash.0);
                }
                leaves.push(LeafClaim::of(row));
            })
            .await?;
        }
        let leaves: Vec<LeafClaim> = leaves
            .into_iter()
            .filter_map(|l| l.transpose())
            .collect::<Result<_, _>>()
            .map_err(Error::store(partition, Step::Verify))?;
        check_leaves(db, partition, "S3", &leaves).await?;
        check_root(partition, tenant, &merkle)?;
        if let Some(added) = added {
            check_root(partition, added, &added_merkle)?;
        }
    }
    Ok(manifest)
}

fn check_root(partition: &str, tenant: &TenantArchive, merkle: &MerkleBuilder) -> Result<(), Error> {
    if merkle.leaves() != tenant.rows || merkle.root_hex() != tenant.merkle_root {
        return Err(mismatch(
            partition,
            format!(
                "tenant {}: files hold {} rows with root {}, manifest {} rows with root {}",
                tenant.tenant_id,
                merkle.leaves(),
                merkle.root_hex(),
                tenant.rows,
                tenant.merkle_root
            ),
        ));
    }
    Ok(())
}

/// A supplement keeps the version it supersedes: every tenant lists that
/// version's files first and unchanged, then exactly the supplement's, and its
/// rows are the sum; no tenant is lost or invented.
async fn check_supplement_layout<S: ArchiveStore>(
    store: &S,
    partition: &str,
    manifest: &Manifest,
    supplement: &Supplement,
) -> Result<(), Error> {
    let earlier = manifest
        .supersedes
        .as_ref()
        .ok_or_else(|| mismatch(partition, "a supplement that supersedes nothing".into()))?;
    let earlier = read_manifest(store, partition, &earlier.key, &earlier.sha256).await?;
    let empty = TenantArchive::empty("");
    let mut tenants: Vec<&str> = earlier
        .tenants
        .iter()
        .chain(&supplement.tenants)
        .map(|t| t.tenant_id.as_str())
        .collect();
    tenants.sort();
    tenants.dedup();
    let listed: Vec<&str> = manifest.tenants.iter().map(|t| t.tenant_id.as_str()).collect();
    if listed != tenants {
        return Err(mismatch(
            partition,
            format!("supplement lists tenants {listed:?}, the earlier version and the late rows {tenants:?}"),
        ));
    }
    for t in &manifest.tenants {
        let before = earlier
            .tenants
            .iter()
            .find(|e| e.tenant_id == t.tenant_id)
            .unwrap_or(&empty);
        let added = supplement
            .tenants
            .iter()
            .find(|a| a.tenant_id == t.tenant_id)
            .unwrap_or(&empty);
        let files: Vec<&PartManifest> = before.files.iter().chain(&added.files).collect();
        if t.files.iter().collect::<Vec<_>>() != files || t.rows != before.rows + added.rows {
            return Err(mismatch(
                partition,
                format!(
                    "tenant {}: the supplement does not list the earlier version's files followed by its own",
                    t.tenant_id
                ),
            ));
        }
    }
    if supplement.rows != supplement.tenants.iter().map(|t| t.rows).sum::<u64>()
        || manifest.rows != earlier.rows + supplement.rows
    {
        return Err(mismatch(partition, "supplement row totals do not add up".into()));
    }
    Ok(())
}

/// Fetches one archived file whole and checks it ([`crate::readback::check_file`]):
/// its SHA-256 and row count against the manifest, then every row's content against
/// its `event_hash`. Each checked row goes to `push`, in file order.
pub async fn check_archived_file<S: ArchiveStore>(
    store: &Arc<S>,
    partition: &str,
    tenant: &str,
    file: &PartManifest,
    push: impl FnMut(&stele_store::CheckedRow),
) -> Result<(), Error> {
    let bytes = store
        .get(&file.key)
        .await
        .map_err(|e| e.at(partition, Step::Verify))?
        .ok_or_else(|| mismatch(partition, format!("{} is missing", file.key)))?;
    crate::readback::check_file(bytes, tenant, &file.sha256, file.rows, push)
        .map_err(|e| mismatch(partition, format!("S3, tenant {tenant}, {}: {e}", file.key)))
}

/// Every claimed leaf is in its tenant's log with exactly the row's leaf hash.
pub async fn check_leaves<D: ArchiveDb>(
    db: &D,
    partition: &str,
    side: &str,
    leaves: &[LeafClaim],
) -> Result<(), Error> {
    let mut by_tenant: BTreeMap<&str, Vec<&LeafClaim>> = BTreeMap::new();
    for l in leaves {
        by_tenant.entry(&l.tenant_id).or_default().push(l);
    }
    for (tenant, claims) in by_tenant {
        let indices: Vec<u64> = claims.iter().map(|c| c.index).collect();
        let logged = db
            .log_leaves(tenant, &indices)
            .await
            .map_err(Error::store(partition, Step::Verify))?;
        for (claim, logged) in claims.iter().zip(logged) {
            if logged != Some(claim.hash) {
                let held = logged.map_or("no such leaf".to_string(), |h| format!("leaf hash {h}"));
                return Err(mismatch(
                    partition,
                    format!(
                        "{side}, tenant {tenant}, event {}: the row is leaf {} with leaf hash {}, the log holds {held}",
                        claim.event_id, claim.index, claim.hash
                    ),
                ));
            }
        }
    }
    Ok(())
}
