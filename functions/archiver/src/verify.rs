//! Verification from S3, before Postgres is touched: the manifest is the one
//! recorded, every tenant's objects are exactly the manifest's files, each
//! file's footer row count matches, and the Merkle roots recomputed from the
//! files' `event_hash` column equal the ones Postgres gives now. A supplement
//! is held to the same, against the late rows it covers, and must keep the
//! version it supersedes intact.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use stele_store::ArchiveDb;

use crate::error::{Error, Step};
use crate::export::{late_roots, postgres_roots, TenantArchive};
use crate::layout;
use crate::manifest::{Manifest, Supplement};
use crate::merkle::MerkleBuilder;
use crate::schema;
use crate::store::ArchiveStore;
use crate::writer::PartManifest;

/// Parquet reads through ranged gets on the archive store.
pub struct StoreFileReader<S> {
    store: Arc<S>,
    key: String,
    size: u64,
}

impl<S: ArchiveStore + 'static> AsyncFileReader for StoreFileReader<S> {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.key, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta = ParquetMetaDataReader::new().load_and_finish(&mut *self, size).await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

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
    let (pg, archived): (Vec<(String, u64, String)>, &[TenantArchive]) = match &manifest.supplement {
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
        for file in &tenant.files {
            let is_added = added.is_some_and(|a| a.files.iter().any(|f| f.key == file.key));
            file_hashes(store, partition, file, |h| {
                merkle.push(h);
                if is_added {
                    added_merkle.push(h);
                }
            })
            .await?;
        }
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
    let empty = TenantArchive {
        tenant_id: String::new(),
        rows: 0,
        merkle_root: String::new(),
        files: Vec::new(),
    };
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

/// The `event_hash` column of one archived file, in file order, after checking
/// its footer row count against the manifest.
pub async fn file_hashes<S: ArchiveStore + 'static>(
    store: &Arc<S>,
    partition: &str,
    file: &PartManifest,
    mut push: impl FnMut(&[u8; 32]),
) -> Result<(), Error> {
    let reader = StoreFileReader {
        store: store.clone(),
        key: file.key.clone(),
        size: file.bytes,
    };
    let pq = |source| Error::Parquet {
        partition: partition.to_string(),
        step: Step::Verify,
        source,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(pq)?;
    let footer_rows: i64 = builder.metadata().file_metadata().num_rows();
    if footer_rows != file.rows as i64 {
        return Err(mismatch(
            partition,
            format!("{}: footer says {footer_rows} rows, manifest {}", file.key, file.rows),
        ));
    }
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [schema::col::event_hash()]);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(pq)?;
    let mut hash = [0u8; 32];
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(pq)?;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| mismatch(partition, format!("{}: event_hash is not a string column", file.key)))?;
        for i in 0..col.len() {
            if col.is_null(i) || hex::decode_to_slice(col.value(i), &mut hash).is_err() {
                return Err(mismatch(
                    partition,
                    format!("{}: row {i} has no valid event_hash", file.key),
                ));
            }
            push(&hash);
        }
    }
    Ok(())
}
