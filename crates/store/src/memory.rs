//! In-memory stand-ins for the store's ports, for unit tests of the code
//! around them (feature `testing`; never built into a Lambda). They keep the
//! rules that matter to callers: archive order, compare-and-set job moves,
//! partitions closed once a day has a job, detached tables out of the parent.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::archive_db::{ArchiveDb, ExportRow, RowStream, ShardProgress};
use crate::archive_jobs::{check_move, ArchiveJob, JobState, ManifestRecord, TableStatus};
use crate::columns::{archived_columns, archived_index, ArchivedAs};
use crate::error::{Error, Result};
use crate::partitions::{self, DayPartition, EnsureOutcome};

/// One archived cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(Option<String>),
    Micros(Option<i64>),
    Int32(Option<i32>),
    Int64(Option<i64>),
}

/// One row of `audit_events` in its archived form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRow {
    pub tenant: String,
    pub cells: Vec<Cell>,
}

impl MemoryRow {
    /// A valid row: the given identity and time, the other required columns
    /// filled with plausible values, the optional ones empty, and the hash of
    /// that content (so the row passes [`crate::rows::check_row`]).
    pub fn event(tenant: &str, event_id: Uuid, occurred_at: DateTime<Utc>) -> Self {
        let cells = archived_columns()
            .map(|c| match (c.name, c.pg.archived_as()) {
                ("event_id", _) => Cell::Text(Some(event_id.to_string())),
                ("occurred_at", _) => Cell::Micros(Some(occurred_at.timestamp_micros())),
                ("received_at", _) => Cell::Micros(Some(occurred_at.timestamp_micros() + 1_000)),
                ("event_hash", _) => Cell::Text(None),
                ("category", _) => Cell::Text(Some("audit".into())),
                ("outcome", _) => Cell::Text(Some("success".into())),
                ("actor_type", _) => Cell::Text(Some("user".into())),
                (name, ArchivedAs::Text) if !c.nullable => Cell::Text(Some(format!("{name}-1"))),
                (_, ArchivedAs::Text) => Cell::Text(None),
                (_, ArchivedAs::Int32) => Cell::Int32(Some(1)),
                (_, ArchivedAs::Int64) => Cell::Int64(None),
                (_, ArchivedAs::TimestampMicros) => Cell::Micros(None),
            })
            .collect();
        let mut row = Self {
            tenant: tenant.to_string(),
            cells,
        };
        let hash = crate::rows::event_of(&row)
            .ok()
            .and_then(|r| r.ok())
            .map(|r| r.event.compute_hash().to_hex());
        row.cells[archived_index("event_hash")] = Cell::Text(hash);
        row
    }

    fn text_at(&self, name: &str) -> &str {
        match &self.cells[archived_index(name)] {
            Cell::Text(Some(s)) => s,
            _ => "",
        }
    }

    fn micros_at(&self, name: &str) -> i64 {
        match self.cells[archived_index(name)] {
            Cell::Micros(Some(m)) => m,
            _ => 0,
        }
    }

    /// The UTC day of `occurred_at` (the row's partition).
    fn day(&self) -> Result<NaiveDate> {
        DateTime::<Utc>::from_timestamp_micros(self.micros_at("occurred_at"))
            .map(|t| t.date_naive())
            .ok_or_else(|| Error::Config("occurred_at out of range".into()))
    }

    /// The archive order of [`ArchiveDb::export_rows`].
    fn order_key(&self) -> (Vec<u8>, i64, String) {
        (
            self.tenant.as_bytes().to_vec(),
            self.micros_at("occurred_at"),
            self.text_at("event_id").to_string(),
        )
    }
}

fn wrong_kind(column: usize) -> Error {
    Error::Config(format!("column {column} has another type"))
}

impl ExportRow for MemoryRow {
    fn tenant(&self) -> Result<&str> {
        Ok(&self.tenant)
    }
    fn text(&self, column: usize) -> Result<Option<&str>> {
        match self.cells.get(column) {
            Some(Cell::Text(v)) => Ok(v.as_deref()),
            _ => Err(wrong_kind(column)),
        }
    }
    fn micros(&self, column: usize) -> Result<Option<i64>> {
        match self.cells.get(column) {
            Some(Cell::Micros(v)) => Ok(*v),
            _ => Err(wrong_kind(column)),
        }
    }
    fn int32(&self, column: usize) -> Result<Option<i32>> {
        match self.cells.get(column) {
            Some(Cell::Int32(v)) => Ok(*v),
            _ => Err(wrong_kind(column)),
        }
    }
    fn int64(&self, column: usize) -> Result<Option<i64>> {
        match self.cells.get(column) {
            Some(Cell::Int64(v)) => Ok(*v),
            _ => Err(wrong_kind(column)),
        }
    }
}

#[derive(Debug, Clone)]
struct Table {
    attached: bool,
    rows: Vec<MemoryRow>,
}

#[derive(Default)]
struct State {
    tables: BTreeMap<String, Table>,
    jobs: BTreeMap<String, ArchiveJob>,
    /// `late_events`: (row, claimed by a supplement).
    late: Vec<(MemoryRow, bool)>,
    run_locked: bool,
    /// `stream_progress`.
    progress: Vec<ShardProgress>,
    /// `event_ids`: (tenant, event id, received_at).
    event_ids: Vec<(String, Uuid, DateTime<Utc>)>,
    /// (operation, calls to let through first): each fails once.
    failures: Vec<(&'static str, u32)>,
}

/// [`ArchiveDb`] in memory.
#[derive(Default)]
pub struct MemoryArchiveDb {
    state: Mutex<State>,
}

impl MemoryArchiveDb {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the `nth` next call (1 = the next one) of `operation` (a method
    /// name of [`ArchiveDb`]) fail once, as a dropped connection would.
    pub fn fail_call(&self, operation: &'static str, nth: u32) {
        self.lock().failures.push((operation, nth.saturating_sub(1)));
    }

    fn check(&self, operation: &'static str) -> Result<()> {
        let mut s = self.lock();
        let Some(i) = s.failures.iter().position(|(o, _)| *o == operation) else {
            return Ok(());
        };
        if s.failures[i].1 > 0 {
            s.failures[i].1 -= 1;
            return Ok(());
        }
        s.failures.remove(i);
        Err(Error::Pool(format!("injected failure of {operation}")))
    }

    /// Keep only the first `keep` rows of a partition table (a tampered or
    /// truncated table).
    pub fn truncate(&self, partition: &str, keep: usize) {
        if let Some(t) = self.lock().tables.get_mut(partition) {
            t.rows.truncate(keep);
        }
    }

    /// Write a row into its day's partition (attached or not, as a late
    /// insert would). Errors when the day has no table.
    pub fn insert(&self, row: MemoryRow) -> Result<()> {
        let day = row.day()?;
        let name = partitions::partition_name(day);
        let mut s = self.lock();
        let table = s
            .tables
            .get_mut(&name)
            .ok_or_else(|| Error::Config(format!("no partition of relation audit_events for {day}")))?;
        table.rows.push(row);
        Ok(())
    }

    /// Write a row into `late_events`, as the batch-writer does for a closed
    /// day (a repeated key is skipped, as `ON CONFLICT DO NOTHING` would).
    pub fn insert_late(&self, row: MemoryRow) {
        let mut s = self.lock();
        if !s
            .late
            .iter()
            .any(|(r, _)| r.order_key() == row.order_key() && r.tenant == row.tenant)
        {
            s.late.push((row, false));
        }
    }

    /// Claim an event id, as the batch-writer does with every row it stores.
    pub fn claim_event_id(&self, tenant: &str, event_id: Uuid, received_at: DateTime<Utc>) {
        self.lock().event_ids.push((tenant.to_string(), event_id, received_at));
    }

    /// The claimed event ids, in claim order.
    pub fn event_ids(&self) -> Vec<(String, Uuid)> {
        self.lock()
            .event_ids
            .iter()
            .map(|(t, id, _)| (t.clone(), *id))
            .collect()
    }

    /// Rows of `day` in `late_events`.
    pub fn late_rows(&self, day: NaiveDate) -> usize {
        self.lock()
            .late
            .iter()
            .filter(|(r, _)| r.day().ok() == Some(day))
            .count()
    }

    fn claimed_late(&self, day: NaiveDate) -> Vec<MemoryRow> {
        let mut rows: Vec<MemoryRow> = self
            .lock()
            .late
            .iter()
            .filter(|(r, claimed)| *claimed && r.day().ok() == Some(day))
            .map(|(r, _)| r.clone())
            .collect();
        rows.sort_by_key(MemoryRow::order_key);
        rows
    }

    /// The rows of a partition table, if it exists.
    pub fn rows(&self, partition: &str) -> Option<usize> {
        self.lock().tables.get(partition).map(|t| t.rows.len())
    }
}

impl ArchiveDb for MemoryArchiveDb {
    type Row = MemoryRow;

    async fn try_lock_run(&self) -> Result<bool> {
        self.check("try_lock_run")?;
        let mut s = self.lock();
        Ok(!std::mem::replace(&mut s.run_locked, true))
    }

    async fn unlock_run(&self) -> Result<()> {
        self.lock().run_locked = false;
        Ok(())
    }

    async fn stream_progress(&self) -> Result<Vec<ShardProgress>> {
        self.check("stream_progress")?;
        Ok(self.lock().progress.clone())
    }

    async fn prune_event_ids(&self, received_before: DateTime<Utc>) -> Result<u64> {
        self.check("prune_event_ids")?;
        let mut s = self.lock();
        let before = s.event_ids.len();
        s.event_ids
            .retain(|(_, _, received_at)| *received_at >= received_before);
        Ok((before - s.event_ids.len()) as u64)
    }

    async fn partitions(&self) -> Result<Vec<DayPartition>> {
        self.check("partitions")?;
        Ok(self
            .lock()
            .tables
            .iter()
            .filter(|(_, t)| t.attached)
            .filter_map(|(name, _)| {
                let day = partitions::day_of_partition(name)?;
                let (lower, upper) = partitions::bounds(day);
                Some(DayPartition {
                    name: name.clone(),
                    day,
                    lower,
                    upper,
                })
            })
            .collect())
    }

    async fn ensure_range(&self, from: NaiveDate, to: NaiveDate) -> Result<EnsureOutcome> {
        self.check("ensure_range")?;
        let mut s = self.lock();
        let mut outcome = EnsureOutcome::default();
        let mut day = from;
        while day <= to {
            let name = partitions::partition_name(day);
            if s.jobs.contains_key(&name) {
                outcome.closed.push(day);
            } else if let std::collections::btree_map::Entry::Vacant(e) = s.tables.entry(name) {
                e.insert(Table {
                    attached: true,
                    rows: Vec::new(),
                });
                outcome.created.push(day);
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        Ok(outcome)
    }

    async fn unfinished_jobs(&self) -> Result<Vec<ArchiveJob>> {
        self.check("unfinished_jobs")?;
        let mut jobs: Vec<ArchiveJob> = self
            .lock()
            .jobs
            .values()
            .filter(|j| j.state != JobState::Done)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.day);
        Ok(jobs)
    }

    async fn job(&self, partition: &str) -> Result<Option<ArchiveJob>> {
        self.check("job")?;
        Ok(self.lock().jobs.get(partition).cloned())
    }

    async fn begin_job(&self, partition: &str, day: NaiveDate) -> Result<ArchiveJob> {
        self.check("begin_job")?;
        let mut s = self.lock();
        let job = s.jobs.entry(partition.to_string()).or_insert_with(|| ArchiveJob {
            partition_name: partition.to_string(),
            day,
            state: JobState::Exporting,
            rows: None,
            files: None,
            bytes: None,
            manifest_key: None,
            manifest_sha256: None,
            error: None,
            attempts: 0,
        });
        job.attempts += 1;
        Ok(job.clone())
    }

    async fn move_job(
        &self,
        partition: &str,
        from: JobState,
        to: JobState,
        manifest: Option<&ManifestRecord>,
    ) -> Result<ArchiveJob> {
        check_move(partition, from, to, manifest)?;
        self.check("move_job")?;
        let mut s = self.lock();
        let job = s.jobs.get_mut(partition).filter(|j| j.state == from);
        let Some(job) = job else {
            let found = s.jobs.get(partition).map_or("none", |j| j.state.as_str());
            return Err(Error::JobMoved {
                partition: partition.to_string(),
                expected: from.as_str(),
                found,
            });
        };
        job.state = to;
        job.error = None;
        if let Some(m) = manifest {
            (job.rows, job.files, job.bytes) = (Some(m.rows), Some(m.files), Some(m.bytes));
            (job.manifest_key, job.manifest_sha256) = (Some(m.key.clone()), Some(m.sha256.clone()));
        } else if to == JobState::Exporting {
            (job.rows, job.files, job.bytes) = (None, None, None);
        }
        Ok(job.clone())
    }

    async fn set_error(&self, partition: &str, error: &str) -> Result<()> {
        if let Some(j) = self.lock().jobs.get_mut(partition) {
            j.error = Some(error.to_string());
        }
        Ok(())
    }

    async fn previous_manifest(&self, day: NaiveDate) -> Result<Option<(String, String)>> {
        self.check("previous_manifest")?;
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|j| j.day < day)
            .filter_map(|j| Some((j.day, j.manifest_key.clone()?, j.manifest_sha256.clone()?)))
            .max_by_key(|(d, _, _)| *d)
            .map(|(_, k, s)| (k, s)))
    }

    async fn table_status(&self, partition: &str) -> Result<TableStatus> {
        self.check("table_status")?;
        Ok(match self.lock().tables.get(partition) {
            None => TableStatus::Absent,
            Some(t) if t.attached => TableStatus::Attached,
            Some(_) => TableStatus::Detached,
        })
    }

    async fn detach(&self, partition: &str) -> Result<()> {
        self.check("detach")?;
        if let Some(t) = self.lock().tables.get_mut(partition) {
            t.attached = false;
        }
        Ok(())
    }

    async fn count_rows(&self, partition: &str) -> Result<Option<i64>> {
        self.check("count_rows")?;
        Ok(self.rows(partition).map(|n| n as i64))
    }

    async fn drop_detached(&self, partition: &str) -> Result<()> {
        self.check("drop_detached")?;
        let mut s = self.lock();
        match s.tables.get(partition) {
            Some(t) if t.attached => Err(Error::Config(format!(
                "refusing to drop {partition}: it is still attached to audit_events"
            ))),
            _ => {
                s.tables.remove(partition);
                Ok(())
            }
        }
    }

    async fn tenant_counts(&self, partition: &str) -> Result<Vec<(String, u64)>> {
        self.check("tenant_counts")?;
        let mut counts: BTreeMap<Vec<u8>, (String, u64)> = BTreeMap::new();
        for r in self.lock().tables.get(partition).map_or(&[][..], |t| &t.rows) {
            counts
                .entry(r.tenant.as_bytes().to_vec())
                .or_insert((r.tenant.clone(), 0))
                .1 += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn export_rows(&self, partition: &str) -> Result<RowStream<MemoryRow>> {
        self.check("export_rows")?;
        let mut rows = self
            .lock()
            .tables
            .get(partition)
            .map(|t| t.rows.clone())
            .unwrap_or_default();
        rows.sort_by_key(MemoryRow::order_key);
        Ok(futures_util::stream::iter(rows.into_iter().map(Ok)).boxed())
    }

    async fn late_days(&self) -> Result<Vec<NaiveDate>> {
        self.check("late_days")?;
        let mut days: Vec<NaiveDate> = self.lock().late.iter().filter_map(|(r, _)| r.day().ok()).collect();
        days.sort();
        days.dedup();
        Ok(days)
    }

    async fn claim_late(&self, day: NaiveDate) -> Result<u64> {
        self.check("claim_late")?;
        let mut s = self.lock();
        let mut covered = 0;
        for (r, claimed) in s.late.iter_mut() {
            if r.day().ok() == Some(day) {
                *claimed = true;
                covered += 1;
            }
        }
        Ok(covered)
    }

    async fn export_late_rows(&self, day: NaiveDate) -> Result<RowStream<MemoryRow>> {
        self.check("export_late_rows")?;
        Ok(futures_util::stream::iter(self.claimed_late(day).into_iter().map(Ok)).boxed())
    }

    async fn log_leaves(&self, _tenant: &str, indices: &[u64]) -> Result<Vec<Option<stele_tlog::Hash>>> {
        // Memory rows have no leaves (leaf_index is NULL), so this is never asked.
        self.check("log_leaves")?;
        Ok(vec![None; indices.len()])
    }

    async fn covering_checkpoint(&self, _tenant: &str, _index: u64) -> Result<Option<(u64, stele_tlog::Hash)>> {
        // No leaves, no checkpoints: manifests of memory rows name none.
        self.check("covering_checkpoint")?;
        Ok(None)
    }

    async fn delete_claimed_late(&self, day: NaiveDate) -> Result<u64> {
        self.check("delete_claimed_late")?;
        let mut s = self.lock();
        let before = s.late.len();
        s.late.retain(|(r, claimed)| !(*claimed && r.day().ok() == Some(day)));
        Ok((before - s.late.len()) as u64)
    }
}
