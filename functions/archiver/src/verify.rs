//! Verification from S3, before Postgres is touched: the manifest is the one
//! recorded, every tenant's objects are exactly the manifest's files, each
//! file's footer row count matches, and the Merkle roots recomputed from the
//! files' `event_hash` column equal the ones Postgres gives now.

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
use crate::export::postgres_roots;
use crate::layout;
use crate::manifest::Manifest;
use crate::merkle::MerkleBuilder;
use crate::schema;
use crate::store::ArchiveStore;

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

/// Check the archive of `partition` in S3 against Postgres. Returns the manifest.
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
    let bytes = store
        .get(manifest_key)
        .await
        .map_err(s3)?
        .ok_or_else(|| mismatch(partition, format!("manifest {manifest_key} is missing")))?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if sha != manifest_sha256 {
        return Err(mismatch(
            partition,
            format!("manifest SHA-256 is {sha}, recorded {manifest_sha256}"),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| mismatch(partition, format!("manifest {manifest_key} does not parse: {e}")))?;

    // Postgres, now.
    let pg = postgres_roots(db, partition).await?;
    let archived: Vec<(String, u64, String)> = manifest
        .tenants
        .iter()
        .map(|t| (t.tenant_id.clone(), t.rows, t.merkle_root.clone()))
        .collect();
    if pg != archived {
        let pg_rows: u64 = pg.iter().map(|t| t.1).sum();
        return Err(mismatch(
            partition,
            format!(
                "manifest has {} tenants / {} rows, PostgreSQL {} tenants / {pg_rows} rows, or their hash roots differ",
                archived.len(),
                manifest.rows,
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
        let mut merkle = MerkleBuilder::new();
        for file in &tenant.files {
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
                let col =
                    batch.column(0).as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                        mismatch(partition, format!("{}: event_hash is not a string column", file.key))
                    })?;
                for i in 0..col.len() {
                    if col.is_null(i) || hex::decode_to_slice(col.value(i), &mut hash).is_err() {
                        return Err(mismatch(
                            partition,
                            format!("{}: row {i} has no valid event_hash", file.key),
                        ));
                    }
                    merkle.push(&hash);
                }
            }
        }
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
    }
    Ok(manifest)
}
