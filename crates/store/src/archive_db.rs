//! The archiver's port onto PostgreSQL: everything it reads and changes in the
//! hot store, as one trait. [`PgArchiveDb`] is the real implementation (every
//! statement is here or in [`crate::archive_jobs`] / [`crate::partitions`]);
//! the in-memory one for unit tests is [`crate::memory::MemoryArchiveDb`]
//! (feature `testing`).

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::Client;

use crate::archive_jobs::{self, ArchiveJob, JobState, ManifestRecord, TableStatus};
use crate::columns::{archived_columns, export_copy_types};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::partitions::{self, DayPartition, EnsureOutcome};

/// One exported row: the tenant, then the archived columns by index
/// ([`crate::columns::archived_columns`]) in their archived form.
pub trait ExportRow: Send {
    fn tenant(&self) -> Result<&str>;
    fn text(&self, column: usize) -> Result<Option<&str>>;
    fn micros(&self, column: usize) -> Result<Option<i64>>;
    fn int32(&self, column: usize) -> Result<Option<i32>>;
    fn int64(&self, column: usize) -> Result<Option<i64>>;
}

/// A stream of rows, owned (it borrows nothing from the store).
pub type RowStream<T> = BoxStream<'static, Result<T>>;

/// How far the batch-writer has consumed one Kinesis shard: the last sequence
/// number committed, and the newest `received_at` among the rows committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardProgress {
    pub shard_id: String,
    pub sequence_number: String,
    pub received_at: DateTime<Utc>,
}

/// What the archiver needs from PostgreSQL.
pub trait ArchiveDb: Send + Sync {
    type Row: ExportRow;

    /// Take the archiver's run lock if no other run holds it (a session-level
    /// advisory lock in Postgres: released by [`ArchiveDb::unlock_run`], or by
    /// the server when the run's connection ends, so a crashed run never
    /// blocks the next). Two runs at once (the schedule and a manual
    /// `stele archive`) would overwrite each other's uploads and manifests.
    fn try_lock_run(&self) -> impl Future<Output = Result<bool>> + Send;
    fn unlock_run(&self) -> impl Future<Output = Result<()>> + Send;
    /// Attached day partitions, oldest first.
    fn partitions(&self) -> impl Future<Output = Result<Vec<DayPartition>>> + Send;
    /// Create the day partitions `from..=to` that are missing (never an archived day).
    fn ensure_range(&self, from: NaiveDate, to: NaiveDate) -> impl Future<Output = Result<EnsureOutcome>> + Send;
    /// How far the batch-writer has consumed each shard (`stream_progress`).
    fn stream_progress(&self) -> impl Future<Output = Result<Vec<ShardProgress>>> + Send;
    /// Forget the event ids claimed before `received_before` (the end of the
    /// deduplication window); returns how many.
    fn prune_event_ids(&self, received_before: DateTime<Utc>) -> impl Future<Output = Result<u64>> + Send;
    /// Jobs not yet `done`, oldest day first.
    fn unfinished_jobs(&self) -> impl Future<Output = Result<Vec<ArchiveJob>>> + Send;
    fn job(&self, partition: &str) -> impl Future<Output = Result<Option<ArchiveJob>>> + Send;
    /// Create the job in `exporting`, or count another attempt of an existing one.
    fn begin_job(&self, partition: &str, day: NaiveDate) -> impl Future<Output = Result<ArchiveJob>> + Send;
    /// Compare-and-set move of a job (see [`archive_jobs::move_job`]).
    fn move_job(
        &self,
        partition: &str,
        from: JobState,
        to: JobState,
        manifest: Option<&ManifestRecord>,
    ) -> impl Future<Output = Result<ArchiveJob>> + Send;
    fn set_error(&self, partition: &str, error: &str) -> impl Future<Output = Result<()>> + Send;
    /// The latest manifest of an earlier day: (key, SHA-256).
    fn previous_manifest(&self, day: NaiveDate) -> impl Future<Output = Result<Option<(String, String)>>> + Send;
    fn table_status(&self, partition: &str) -> impl Future<Output = Result<TableStatus>> + Send;
    /// Detach (or finalize an interrupted detach); a no-op when already detached.
    fn detach(&self, partition: &str) -> impl Future<Output = Result<()>> + Send;
    /// Rows in the partition table, attached or not; `None` when there is no table.
    fn count_rows(&self, partition: &str) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Drop the table once detached (refuses an attached one).
    fn drop_detached(&self, partition: &str) -> impl Future<Output = Result<()>> + Send;
    /// Rows per tenant, tenants in archive order (dry runs).
    fn tenant_counts(&self, partition: &str) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;
    /// Every row in archive order (tenant bytewise, then `occurred_at`, `event_id`).
    fn export_rows(&self, partition: &str) -> impl Future<Output = Result<RowStream<Self::Row>>> + Send;

    /// Days with rows in `late_events` (accepted after their day was closed), oldest first.
    fn late_days(&self) -> impl Future<Output = Result<Vec<NaiveDate>>> + Send;
    /// Claim the day's late rows for the supplement being written (rows that
    /// land later wait for the next one); returns the rows it covers.
    fn claim_late(&self, day: NaiveDate) -> impl Future<Output = Result<u64>> + Send;
    /// The claimed late rows of `day`, like [`ArchiveDb::export_rows`].
    fn export_late_rows(&self, day: NaiveDate) -> impl Future<Output = Result<RowStream<Self::Row>>> + Send;
    /// Delete the claimed late rows of `day` (their supplement is verified).
    fn delete_claimed_late(&self, day: NaiveDate) -> impl Future<Output = Result<u64>> + Send;

    /// The leaf hashes at `indices` of `tenant`'s log (`None` where the log has no
    /// such leaf): what verification compares each row's leaf with.
    fn log_leaves(
        &self,
        tenant: &str,
        indices: &[u64],
    ) -> impl Future<Output = Result<Vec<Option<stele_tlog::Hash>>>> + Send;

    /// The first signed checkpoint of `tenant`'s log that covers leaf `index` (size
    /// and root), if one was signed yet: what a manifest names as its anchor.
    fn covering_checkpoint(
        &self,
        tenant: &str,
        index: u64,
    ) -> impl Future<Output = Result<Option<(u64, stele_tlog::Hash)>>> + Send;
}

/// The archive order: bytewise tenant (`COLLATE "C"`), then time, then id.
const ARCHIVE_ORDER: &str = "tenant_id COLLATE \"C\", occurred_at, event_id";

/// The export query of a partition: the tenant, then the archived columns.
pub fn export_sql(partition: &str) -> String {
    export_sql_from(&format!("ONLY {partition}"))
}

/// The export query over `source` (a table, and maybe a `WHERE`).
pub fn export_sql_from(source: &str) -> String {
    let columns: Vec<String> = archived_columns().map(|c| c.export_expr()).collect();
    format!(
        "SELECT tenant_id, {} FROM {source} ORDER BY {ARCHIVE_ORDER}",
        columns.join(", ")
    )
}

fn read_error(e: tokio_postgres::Error) -> Error {
    Error::Query {
        what: "reading exported rows",
        source: e,
    }
}

/// The same columns read by a plain query (the read API's searches,
/// [`crate::search`]): the export's expressions, in the export's order.
impl ExportRow for tokio_postgres::Row {
    fn tenant(&self) -> Result<&str> {
        self.try_get(0).map_err(read_error)
    }
    fn text(&self, column: usize) -> Result<Option<&str>> {
        self.try_get(column + 1).map_err(read_error)
    }
    fn micros(&self, column: usize) -> Result<Option<i64>> {
        Ok(self
            .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(column + 1)
            .map_err(read_error)?
            .map(|t| t.timestamp_micros()))
    }
    fn int32(&self, column: usize) -> Result<Option<i32>> {
        self.try_get(column + 1).map_err(read_error)
    }
    fn int64(&self, column: usize) -> Result<Option<i64>> {
        self.try_get(column + 1).map_err(read_error)
    }
}

impl ExportRow for BinaryCopyOutRow {
    fn tenant(&self) -> Result<&str> {
        self.try_get(0).map_err(read_error)
    }
    fn text(&self, column: usize) -> Result<Option<&str>> {
        self.try_get(column + 1).map_err(read_error)
    }
    fn micros(&self, column: usize) -> Result<Option<i64>> {
        Ok(self
            .try_get::<Option<chrono::DateTime<chrono::Utc>>>(column + 1)
            .map_err(read_error)?
            .map(|t| t.timestamp_micros()))
    }
    fn int32(&self, column: usize) -> Result<Option<i32>> {
        self.try_get(column + 1).map_err(read_error)
    }
    fn int64(&self, column: usize) -> Result<Option<i64>> {
        self.try_get(column + 1).map_err(read_error)
    }
}

/// [`ArchiveDb`] on one PostgreSQL connection, opened lazily and re-opened
/// when it drops between invocations (the archiver runs one step at a time).
pub struct PgArchiveDb {
    config: StoreConfig,
    client: Mutex<Option<Client>>,
}

impl PgArchiveDb {
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            client: Mutex::new(None),
        }
    }

    /// The connection, opened first if there is none (or it broke).
    async fn client(&self) -> Result<MappedMutexGuard<'_, Client>> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(crate::connect(&self.config).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| Error::Pool("no connection".into()))
    }
}

fn checked(partition: &str) -> Result<String> {
    partitions::day_of_partition(partition)
        .map(|_| partition.to_string())
        .ok_or_else(|| Error::Config(format!("`{partition}` is not a stele day partition name")))
}

/// Advisory lock key of archiver runs ("stelearc").
const RUN_LOCK_KEY: i64 = 0x7374_656c_6561_7263;

impl ArchiveDb for PgArchiveDb {
    type Row = BinaryCopyOutRow;

    async fn try_lock_run(&self) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUN_LOCK_KEY])
            .await
            .map_err(Error::query("taking the archiver run lock"))?;
        Ok(row.get(0))
    }

    async fn unlock_run(&self) -> Result<()> {
        self.client()
            .await?
            .execute("SELECT pg_advisory_unlock($1)", &[&RUN_LOCK_KEY])
            .await
            .map_err(Error::query("releasing the archiver run lock"))?;
        Ok(())
    }

    async fn partitions(&self) -> Result<Vec<DayPartition>> {
        partitions::list(&*self.client().await?).await
    }

    async fn ensure_range(&self, from: NaiveDate, to: NaiveDate) -> Result<EnsureOutcome> {
        partitions::ensure_range(&*self.client().await?, from, to).await
    }

    async fn stream_progress(&self) -> Result<Vec<ShardProgress>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT shard_id, sequence_number, received_at FROM stream_progress ORDER BY shard_id",
                &[],
            )
            .await
            .map_err(Error::query("reading the stream's consumed positions"))?;
        Ok(rows
            .iter()
            .map(|r| ShardProgress {
                shard_id: r.get(0),
                sequence_number: r.get(1),
                received_at: r.get(2),
            })
            .collect())
    }

    async fn prune_event_ids(&self, received_before: DateTime<Utc>) -> Result<u64> {
        self.client()
            .await?
            .execute("DELETE FROM event_ids WHERE received_at < $1", &[&received_before])
            .await
            .map_err(Error::query("pruning event ids past the deduplication window"))
    }

    async fn unfinished_jobs(&self) -> Result<Vec<ArchiveJob>> {
        archive_jobs::unfinished(&*self.client().await?).await
    }

    async fn job(&self, partition: &str) -> Result<Option<ArchiveJob>> {
        archive_jobs::get(&*self.client().await?, partition).await
    }

    async fn begin_job(&self, partition: &str, day: NaiveDate) -> Result<ArchiveJob> {
        archive_jobs::begin(&*self.client().await?, partition, day).await
    }

    async fn move_job(
        &self,
        partition: &str,
        from: JobState,
        to: JobState,
        manifest: Option<&ManifestRecord>,
    ) -> Result<ArchiveJob> {
        archive_jobs::move_job(&*self.client().await?, partition, from, to, manifest).await
    }

    async fn set_error(&self, partition: &str, error: &str) -> Result<()> {
        archive_jobs::set_error(&*self.client().await?, partition, error).await
    }

    async fn previous_manifest(&self, day: NaiveDate) -> Result<Option<(String, String)>> {
        archive_jobs::previous_manifest(&*self.client().await?, day).await
    }

    async fn table_status(&self, partition: &str) -> Result<TableStatus> {
        archive_jobs::table_status(&*self.client().await?, partition).await
    }

    async fn detach(&self, partition: &str) -> Result<()> {
        archive_jobs::detach(&*self.client().await?, partition).await
    }

    async fn count_rows(&self, partition: &str) -> Result<Option<i64>> {
        archive_jobs::count_rows(&*self.client().await?, partition).await
    }

    async fn drop_detached(&self, partition: &str) -> Result<()> {
        archive_jobs::drop_detached(&*self.client().await?, partition).await
    }

    async fn tenant_counts(&self, partition: &str) -> Result<Vec<(String, u64)>> {
        let name = checked(partition)?;
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT tenant_id, count(*) FROM ONLY {name} GROUP BY tenant_id ORDER BY tenant_id COLLATE \"C\""
                ),
                &[],
            )
            .await
            .map_err(Error::query("counting a partition's rows per tenant"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    async fn export_rows(&self, partition: &str) -> Result<RowStream<BinaryCopyOutRow>> {
        let sql = format!("COPY ({}) TO STDOUT (FORMAT binary)", export_sql(&checked(partition)?));
        let copy = self.client().await?.copy_out(&sql).await.map_err(read_error)?;
        Ok(BinaryCopyOutStream::new(copy, export_copy_types())
            .map_err(read_error)
            .boxed())
    }

    async fn late_days(&self) -> Result<Vec<NaiveDate>> {
        archive_jobs::late_days(&*self.client().await?).await
    }

    async fn claim_late(&self, day: NaiveDate) -> Result<u64> {
        archive_jobs::claim_late(&*self.client().await?, day).await
    }

    async fn export_late_rows(&self, day: NaiveDate) -> Result<RowStream<BinaryCopyOutRow>> {
        let sql = format!(
            "COPY ({}) TO STDOUT (FORMAT binary)",
            export_sql_from(&archive_jobs::claimed_late_source(day))
        );
        let copy = self.client().await?.copy_out(&sql).await.map_err(read_error)?;
        Ok(BinaryCopyOutStream::new(copy, export_copy_types())
            .map_err(read_error)
            .boxed())
    }

    async fn delete_claimed_late(&self, day: NaiveDate) -> Result<u64> {
        archive_jobs::delete_claimed_late(&*self.client().await?, day).await
    }

    async fn log_leaves(&self, tenant: &str, indices: &[u64]) -> Result<Vec<Option<stele_tlog::Hash>>> {
        crate::log::leaf_hashes(&*self.client().await?, tenant, indices).await
    }

    async fn covering_checkpoint(&self, tenant: &str, index: u64) -> Result<Option<(u64, stele_tlog::Hash)>> {
        let client = self.client().await?;
        let cp = crate::log::PgLog::new(&client)
            .first_checkpoint_covering(tenant, index)
            .await?;
        Ok(cp.map(|c| (c.size, c.root)))
    }
}
