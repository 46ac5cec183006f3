//! Streaming export: the partition's rows in archive order from the store
//! ([`ArchiveDb::export_rows`], one binary copy out of Postgres), cut into Arrow
//! record batches of bounded size and written tenant by tenant into Parquet
//! objects. Nothing holds more than one batch, one row group and one upload part.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use stele_store::{ArchiveDb, ExportRow};

use crate::config::ArchiverConfig;
use crate::error::{Error, Step};
use crate::layout;
use crate::merkle::MerkleBuilder;
use crate::schema;
use crate::store::ArchiveStore;
use crate::writer::{ParquetPartWriter, PartManifest};

/// One tenant's share of a day: its files, rows and the Merkle root of its event
/// hashes, and where its rows are in the tenant's signed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantArchive {
    pub tenant_id: String,
    pub rows: u64,
    pub merkle_root: String,
    pub files: Vec<PartManifest>,
    /// The highest leaf index among the rows (absent: no row has a leaf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leaf_index: Option<u64>,
    /// The signed checkpoint that covers every row's leaf: the first one signed
    /// after the newest of them (absent: none was signed yet when the day was
    /// written; `stele verify` then proves the rows against a later one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointRef>,
}

impl TenantArchive {
    /// An empty share of `tenant_id` (files are added to it).
    pub fn empty(tenant_id: &str) -> Self {
        TenantArchive {
            tenant_id: tenant_id.to_string(),
            rows: 0,
            merkle_root: String::new(),
            files: Vec::new(),
            max_leaf_index: None,
            checkpoint: None,
        }
    }
}

/// A signed checkpoint named by a manifest: its tree size, root (base64, as in
/// the note) and the bucket key of the published note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    pub size: u64,
    pub root: String,
    pub key: String,
}

/// Names, for every tenant whose rows have leaves, the first signed checkpoint
/// that covers them all. Leaves no checkpoint covers yet leave it absent.
pub async fn anchor<D: ArchiveDb>(
    db: &D,
    prefix: &str,
    partition: &str,
    tenants: &mut [TenantArchive],
) -> Result<(), Error> {
    for t in tenants.iter_mut() {
        let Some(max) = t.max_leaf_index else { continue };
        let found = db
            .covering_checkpoint(&t.tenant_id, max)
            .await
            .map_err(Error::store(partition, Step::Manifest))?;
        t.checkpoint = found.map(|(size, root)| CheckpointRef {
            size,
            root: root.to_base64(),
            key: stele_tlog::publish::checkpoint_key(prefix, &t.tenant_id, size),
        });
        if t.checkpoint.is_none() {
            tracing::warn!(partition, tenant = %t.tenant_id, leaf = max, "no signed checkpoint covers the day's rows yet; the manifest names none");
        }
    }
    Ok(())
}

enum ColBuilder {
    Str(StringBuilder),
    Ts(TimestampMicrosecondBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
}

/// Column builders for one record batch.
struct BatchBuilder {
    cols: Vec<ColBuilder>,
    rows: usize,
}

impl BatchBuilder {
    fn new(capacity: usize) -> Self {
        let cols = schema::schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                arrow::datatypes::DataType::Timestamp(_, _) => {
                    ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
                }
                arrow::datatypes::DataType::Int32 => ColBuilder::I32(Int32Builder::with_capacity(capacity)),
                arrow::datatypes::DataType::Int64 => ColBuilder::I64(Int64Builder::with_capacity(capacity)),
                _ => ColBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 32)),
            })
            .collect();
        Self { cols, rows: 0 }
    }

    /// Append one exported row (its columns follow the schema).
    fn append(&mut self, row: &impl ExportRow) -> stele_store::Result<()> {
        for (i, col) in self.cols.iter_mut().enumerate() {
            match col {
                ColBuilder::Str(b) => b.append_option(row.text(i)?),
                ColBuilder::Ts(b) => b.append_option(row.micros(i)?),
                ColBuilder::I32(b) => b.append_option(row.int32(i)?),
                ColBuilder::I64(b) => b.append_option(row.int64(i)?),
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self, partition: &str) -> Result<RecordBatch, Error> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| match c {
                ColBuilder::Str(b) => Arc::new(b.finish()) as ArrayRef,
                ColBuilder::Ts(b) => Arc::new(b.finish()) as ArrayRef,
                ColBuilder::I32(b) => Arc::new(b.finish()) as ArrayRef,
                ColBuilder::I64(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema::schema(), arrays).map_err(|source| Error::Arrow {
            partition: partition.to_string(),
            step: Step::Export,
            source,
        })
    }
}

/// The tenant being written: its current file and running hash tree.
struct OpenTenant<'a, S: ArchiveStore> {
    tenant_id: String,
    /// The number of its first part (0, or the next free one for a supplement).
    first_part: u32,
    merkle: MerkleBuilder,
    rows: u64,
    max_leaf_index: Option<u64>,
    files: Vec<PartManifest>,
    writer: Option<ParquetPartWriter<'a, S>>,
}

/// Export `partition` (the day `day`) to `store`. Returns one entry per tenant
/// in archive order. On error every multipart upload this call started is aborted.
pub async fn export<S: ArchiveStore, D: ArchiveDb>(
    db: &D,
    store: &S,
    config: &ArchiverConfig,
    partition: &str,
    day: NaiveDate,
    deadline: Instant,
) -> Result<Vec<TenantArchive>, Error> {
    let rows = db
        .export_rows(partition)
        .await
        .map_err(Error::store(partition, Step::Export))?;
    export_stream(rows, store, config, partition, day, deadline, &|_| 0).await
}

/// Export the claimed late rows of `day` as a supplement: per tenant, parts
/// numbered from `first_part(tenant)` on (after the day's existing ones), so
/// no object of an earlier version is overwritten. The returned roots cover
/// the late rows alone.
pub async fn export_late<S: ArchiveStore, D: ArchiveDb>(
    db: &D,
    store: &S,
    config: &ArchiverConfig,
    partition: &str,
    day: NaiveDate,
    deadline: Instant,
    first_part: &(dyn Fn(&str) -> u32 + Sync),
) -> Result<Vec<TenantArchive>, Error> {
    let rows = db
        .export_late_rows(day)
        .await
        .map_err(Error::store(partition, Step::Export))?;
    export_stream(rows, store, config, partition, day, deadline, first_part).await
}

async fn export_stream<S: ArchiveStore, R: ExportRow>(
    rows: stele_store::RowStream<R>,
    store: &S,
    config: &ArchiverConfig,
    partition: &str,
    day: NaiveDate,
    deadline: Instant,
    first_part: &(dyn Fn(&str) -> u32 + Sync),
) -> Result<Vec<TenantArchive>, Error> {
    let mut open: Option<OpenTenant<'_, S>> = None;
    let result = export_inner(rows, store, config, partition, day, deadline, first_part, &mut open).await;
    if result.is_err() {
        if let Some(w) = open.and_then(|t| t.writer) {
            w.abort().await;
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn export_inner<'a, S: ArchiveStore, R: ExportRow>(
    mut rows: stele_store::RowStream<R>,
    store: &'a S,
    config: &ArchiverConfig,
    partition: &'a str,
    day: NaiveDate,
    deadline: Instant,
    first_part: &(dyn Fn(&str) -> u32 + Sync),
    open: &mut Option<OpenTenant<'a, S>>,
) -> Result<Vec<TenantArchive>, Error> {
    let read_err = Error::store(partition, Step::Export);

    let mut done: Vec<TenantArchive> = Vec::new();
    let mut batch = BatchBuilder::new(config.batch_rows);
    let mut hash = [0u8; 32];

    while let Some(row) = rows.next().await {
        let row = row.map_err(read_err)?;
        let tenant: &str = row.tenant().map_err(read_err)?;
        let same_tenant = open.as_ref().is_some_and(|t| t.tenant_id == tenant);
        if !same_tenant {
            if let Some(t) = open.as_mut() {
                flush_batch(&mut batch, t, partition).await?;
            }
            if let Some(t) = open.take() {
                done.push(close_tenant(t).await?);
            }
            *open = Some(OpenTenant {
                tenant_id: tenant.to_string(),
                first_part: first_part(tenant),
                merkle: MerkleBuilder::new(),
                rows: 0,
                max_leaf_index: None,
                files: Vec::new(),
                writer: None,
            });
        }
        let Some(t) = open.as_mut() else { continue };
        // A new file when the tenant's current one is full.
        if t.writer
            .as_ref()
            .is_some_and(|w| w.rows() + batch.rows as u64 >= config.file_rows)
        {
            flush_batch(&mut batch, t, partition).await?;
            if let Some(w) = t.writer.take() {
                t.files.push(w.finish().await?);
            }
        }
        if t.writer.is_none() {
            let key = layout::part_key(&config.prefix, &t.tenant_id, day, t.first_part + t.files.len() as u32);
            t.writer = Some(ParquetPartWriter::create(store, partition, key, config).await?);
        }
        let hex_hash: &str = row
            .text(schema::col::event_hash())
            .map_err(read_err)?
            .unwrap_or_default();
        hex::decode_to_slice(hex_hash, &mut hash).map_err(|e| Error::Invalid {
            partition: partition.to_string(),
            step: Step::Export,
            detail: format!("event_hash `{hex_hash}` is not 32 bytes of hex: {e}"),
        })?;
        t.merkle.push(&hash);
        t.rows += 1;
        if let Some(leaf) = row.int64(schema::col::leaf_index()).map_err(read_err)? {
            let leaf = u64::try_from(leaf).map_err(|_| Error::Invalid {
                partition: partition.to_string(),
                step: Step::Export,
                detail: format!("leaf_index {leaf} is negative"),
            })?;
            t.max_leaf_index = t.max_leaf_index.max(Some(leaf));
        }
        batch.append(&row).map_err(read_err)?;
        if batch.rows >= config.batch_rows {
            if Instant::now() >= deadline {
                return Err(Error::OutOfTime {
                    partition: partition.to_string(),
                    step: Step::Export,
                });
            }
            flush_batch(&mut batch, t, partition).await?;
        }
    }
    if let Some(t) = open.as_mut() {
        flush_batch(&mut batch, t, partition).await?;
    }
    if let Some(t) = open.take() {
        done.push(close_tenant(t).await?);
    }
    Ok(done)
}

async fn flush_batch<S: ArchiveStore>(
    batch: &mut BatchBuilder,
    t: &mut OpenTenant<'_, S>,
    partition: &str,
) -> Result<(), Error> {
    if batch.rows == 0 {
        return Ok(());
    }
    let rb = batch.finish(partition)?;
    match t.writer.as_mut() {
        Some(w) => w.write(&rb).await,
        None => Err(Error::Invalid {
            partition: partition.to_string(),
            step: Step::Export,
            detail: "rows buffered without an open file".into(),
        }),
    }
}

async fn close_tenant<S: ArchiveStore>(mut t: OpenTenant<'_, S>) -> Result<TenantArchive, Error> {
    if let Some(w) = t.writer.take() {
        t.files.push(w.finish().await?);
    }
    Ok(TenantArchive {
        tenant_id: t.tenant_id,
        rows: t.rows,
        merkle_root: t.merkle.root_hex(),
        files: t.files,
        max_leaf_index: t.max_leaf_index,
        checkpoint: None,
    })
}

/// Per-tenant row counts and Merkle roots (of the stored `event_hash`es, in archive
/// order), and the leaves the rows claim in their tenants' logs.
#[derive(Debug, Default)]
pub struct CheckedRoots {
    pub roots: Vec<(String, u64, String)>,
    /// Every row that has a leaf: where it says it is in its tenant's log.
    pub leaves: Vec<LeafClaim>,
}

/// A row's claim to be a leaf of its tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafClaim {
    pub tenant_id: String,
    pub event_id: uuid::Uuid,
    pub index: u64,
    /// The leaf hash rebuilt from the row (tenant, event_hash, received_at).
    pub hash: stele_tlog::Hash,
}

impl LeafClaim {
    pub fn of(row: &stele_store::CheckedRow) -> Result<Option<Self>, stele_store::Error> {
        let Some(index) = row.leaf_index else {
            return Ok(None);
        };
        Ok(Some(LeafClaim {
            tenant_id: row.tenant_id.clone(),
            event_id: row.event_id,
            index,
            hash: row.leaf_hash()?,
        }))
    }
}

/// [`CheckedRoots`] of the partition as Postgres holds it now. Every row is read
/// whole and its content re-hashed: a row whose fields no longer hash to its
/// `event_hash` fails verification, whatever its hash column says.
pub async fn postgres_roots<D: ArchiveDb>(db: &D, partition: &str) -> Result<CheckedRoots, Error> {
    let rows = db
        .export_rows(partition)
        .await
        .map_err(Error::store(partition, Step::Verify))?;
    checked_roots(rows, partition, "PostgreSQL").await
}

/// [`postgres_roots`] of the claimed late rows of `day` (what a supplement covers).
pub async fn late_roots<D: ArchiveDb>(db: &D, partition: &str, day: NaiveDate) -> Result<CheckedRoots, Error> {
    let rows = db
        .export_late_rows(day)
        .await
        .map_err(Error::store(partition, Step::Verify))?;
    checked_roots(rows, partition, "PostgreSQL (late rows)").await
}

/// Feeds checked rows into per-tenant roots; `rows` come in archive order.
pub struct RootsBuilder {
    out: CheckedRoots,
    cur: Option<(String, MerkleBuilder)>,
}

impl RootsBuilder {
    pub fn new() -> Self {
        RootsBuilder {
            out: CheckedRoots::default(),
            cur: None,
        }
    }

    pub fn push(&mut self, row: &stele_store::CheckedRow) -> Result<(), stele_store::Error> {
        if self.cur.as_ref().is_none_or(|(t, _)| *t != row.tenant_id) {
            if let Some((t, m)) = self.cur.take() {
                self.out.roots.push((t, m.leaves(), m.root_hex()));
            }
            self.cur = Some((row.tenant_id.clone(), MerkleBuilder::new()));
        }
        if let Some((_, m)) = self.cur.as_mut() {
            m.push(&row.event_hash.0);
        }
        self.out.leaves.extend(LeafClaim::of(row)?);
        Ok(())
    }

    pub fn finish(mut self) -> CheckedRoots {
        if let Some((t, m)) = self.cur.take() {
            self.out.roots.push((t, m.leaves(), m.root_hex()));
        }
        self.out
    }
}

impl Default for RootsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

async fn checked_roots<R: ExportRow>(
    mut rows: stele_store::RowStream<R>,
    partition: &str,
    side: &str,
) -> Result<CheckedRoots, Error> {
    let read_err = Error::store(partition, Step::Verify);
    let mut roots = RootsBuilder::new();
    while let Some(row) = rows.next().await {
        let row = row.map_err(read_err)?;
        match stele_store::check_row(&row).map_err(Error::store(partition, Step::Verify))? {
            Ok(checked) => roots.push(&checked).map_err(Error::store(partition, Step::Verify))?,
            Err(problem) => {
                return Err(Error::Mismatch {
                    partition: partition.to_string(),
                    detail: format!("{side}, tenant {}: {problem}", row.tenant().unwrap_or("?")),
                })
            }
        }
    }
    Ok(roots.finish())
}
