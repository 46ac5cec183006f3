//! Archive job state: one `archive_jobs` row per day partition the archiver has
//! started on, moved forward one step at a time so that a run cut off anywhere
//! is resumed (not repeated, not skipped) by the next one. Also the catalog
//! look-ups and DDL the archiver needs on a partition (detach, finalize, drop).
//!
//! States, in order: `exporting` → `manifested` → `verified` → `detached` → `done`.
//! A row exists as soon as the export starts, which closes the day to
//! [`crate::partitions::ensure_days`]; rows of a closed day go to `late_events`,
//! and a `done` day with late rows goes round a second loop, the supplement:
//! `done` → `supplementing` → `supplement_manifested` → `supplement_verified` → `done`.

use chrono::NaiveDate;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::partitions::PARENT_TABLE;

/// Where an archive job is. Ordered: a later state implies the earlier steps
/// are done (the supplement states come after the day's first `done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobState {
    /// Rows are being written to S3; nothing in S3 is trusted yet.
    Exporting,
    /// Parts and the manifest are in S3; the manifest key and SHA-256 are recorded.
    Manifested,
    /// The objects in S3 were re-read and match Postgres.
    Verified,
    /// The partition is detached from `audit_events` (the table may still exist).
    Detached,
    /// Finished: the table is dropped, or kept by setting.
    Done,
    /// Late rows of the done day are claimed and written as extra parts with a
    /// new manifest version; nothing new in S3 is trusted yet.
    Supplementing,
    /// The supplement and its manifest are in S3 and recorded.
    SupplementManifested,
    /// The supplement was re-read and matches the claimed late rows, which
    /// may now be deleted.
    SupplementVerified,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Exporting => "exporting",
            JobState::Manifested => "manifested",
            JobState::Verified => "verified",
            JobState::Detached => "detached",
            JobState::Done => "done",
            JobState::Supplementing => "supplementing",
            JobState::SupplementManifested => "supplement_manifested",
            JobState::SupplementVerified => "supplement_verified",
        }
    }

    /// Every state, in order.
    pub const ALL: [JobState; 8] = [
        JobState::Exporting,
        JobState::Manifested,
        JobState::Verified,
        JobState::Detached,
        JobState::Done,
        JobState::Supplementing,
        JobState::SupplementManifested,
        JobState::SupplementVerified,
    ];

    /// Entering this state records a (new) manifest.
    pub fn records_manifest(self) -> bool {
        matches!(self, JobState::Manifested | JobState::SupplementManifested)
    }

    /// Every move a job may make, in one place. Forward, one step at a time;
    /// back to `exporting` when the S3 copy proved wrong at verify, or when the
    /// detached table holds rows the archive does not (they landed between
    /// verify and detach): the day is then written again, never left stuck.
    /// A done day with late rows loops through the supplement states back to
    /// `done`, and back to `supplementing` when the supplement proved wrong.
    pub const TRANSITIONS: [(JobState, JobState); 11] = [
        (JobState::Exporting, JobState::Manifested),
        (JobState::Manifested, JobState::Verified),
        (JobState::Verified, JobState::Detached),
        (JobState::Detached, JobState::Done),
        (JobState::Manifested, JobState::Exporting),
        (JobState::Detached, JobState::Exporting),
        (JobState::Done, JobState::Supplementing),
        (JobState::Supplementing, JobState::SupplementManifested),
        (JobState::SupplementManifested, JobState::SupplementVerified),
        (JobState::SupplementManifested, JobState::Supplementing),
        (JobState::SupplementVerified, JobState::Done),
    ];

    /// Whether [`JobState::TRANSITIONS`] allows `self` → `next`.
    pub fn can_move_to(self, next: JobState) -> bool {
        Self::TRANSITIONS.contains(&(self, next))
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "exporting" => JobState::Exporting,
            "manifested" => JobState::Manifested,
            "verified" => JobState::Verified,
            "detached" => JobState::Detached,
            "done" => JobState::Done,
            "supplementing" => JobState::Supplementing,
            "supplement_manifested" => JobState::SupplementManifested,
            "supplement_verified" => JobState::SupplementVerified,
            _ => return None,
        })
    }
}

/// One `archive_jobs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveJob {
    pub partition_name: String,
    pub day: NaiveDate,
    pub state: JobState,
    pub rows: Option<i64>,
    pub files: Option<i32>,
    pub bytes: Option<i64>,
    pub manifest_key: Option<String>,
    pub manifest_sha256: Option<String>,
    pub error: Option<String>,
    pub attempts: i32,
}

const COLUMNS: &str = "partition_name, day, state, rows, files, bytes, manifest_key, manifest_sha256, error, attempts";

fn from_row(row: &tokio_postgres::Row) -> Result<ArchiveJob> {
    let state: String = row.get(2);
    let state =
        JobState::parse(&state).ok_or_else(|| Error::Config(format!("archive_jobs has an unknown state `{state}`")))?;
    Ok(ArchiveJob {
        partition_name: row.get(0),
        day: row.get(1),
        state,
        rows: row.get(3),
        files: row.get(4),
        bytes: row.get(5),
        manifest_key: row.get(6),
        manifest_sha256: row.get(7),
        error: row.get(8),
        attempts: row.get(9),
    })
}

/// The job of a partition, if the archiver has started on it.
pub async fn get(client: &Client, partition: &str) -> Result<Option<ArchiveJob>> {
    let sql = format!("SELECT {COLUMNS} FROM archive_jobs WHERE partition_name = $1");
    let row = client
        .query_opt(&sql, &[&partition])
        .await
        .map_err(Error::query("reading archive_jobs"))?;
    row.as_ref().map(from_row).transpose()
}

/// Start (or resume) the job of a partition: creates the row in `exporting`
/// if absent, and counts the attempt. Returns the row as it now is.
pub async fn begin(client: &Client, partition: &str, day: NaiveDate) -> Result<ArchiveJob> {
    let sql = format!(
        "INSERT INTO archive_jobs (partition_name, day, state, attempts) VALUES ($1, $2, 'exporting', 1)
         ON CONFLICT (partition_name) DO UPDATE
            SET attempts = archive_jobs.attempts + 1, updated_at = now()
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(&sql, &[&partition, &day])
        .await
        .map_err(Error::query("starting an archive job"))?;
    from_row(&row)
}

/// What a move to `manifested` (or `supplement_manifested`) records: the
/// archive as written, all versions of the day together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub rows: i64,
    pub files: i32,
    pub bytes: i64,
    pub key: String,
    pub sha256: String,
}

/// Move a job `from` → `to`, as a compare-and-set: it only happens if the job
/// is still in `from` (another run may have moved it), and only along
/// [`JobState::TRANSITIONS`]. Entering `manifested` or
/// `supplement_manifested` records `manifest`;
/// going back to `exporting` forgets the previous archive's figures (the
/// manifest key and SHA-256 stay until the new one replaces them, so the chain
/// can name the version it supersedes).
pub async fn move_job(
    client: &Client,
    partition: &str,
    from: JobState,
    to: JobState,
    manifest: Option<&ManifestRecord>,
) -> Result<ArchiveJob> {
    check_move(partition, from, to, manifest)?;
    let sql = format!(
        "UPDATE archive_jobs SET state = $3,
                rows = CASE WHEN $4::bigint IS NOT NULL THEN $4 WHEN $3 = 'exporting' THEN NULL ELSE rows END,
                files = CASE WHEN $4::bigint IS NOT NULL THEN $5 WHEN $3 = 'exporting' THEN NULL ELSE files END,
                bytes = CASE WHEN $4::bigint IS NOT NULL THEN $6 WHEN $3 = 'exporting' THEN NULL ELSE bytes END,
                manifest_key = CASE WHEN $4::bigint IS NOT NULL THEN $7 ELSE manifest_key END,
                manifest_sha256 = CASE WHEN $4::bigint IS NOT NULL THEN $8 ELSE manifest_sha256 END,
                error = NULL, updated_at = now()
          WHERE partition_name = $1 AND state = $2
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_opt(
            &sql,
            &[
                &partition,
                &from.as_str(),
                &to.as_str(),
                &manifest.map(|m| m.rows),
                &manifest.map(|m| m.files),
                &manifest.map(|m| m.bytes),
                &manifest.map(|m| m.key.as_str()),
                &manifest.map(|m| m.sha256.as_str()),
            ],
        )
        .await
        .map_err(Error::query("moving an archive job"))?;
    match row {
        Some(row) => from_row(&row),
        None => Err(Error::JobMoved {
            partition: partition.to_string(),
            expected: from.as_str(),
            found: get(client, partition).await?.map_or("none", |j| j.state.as_str()),
        }),
    }
}

/// The checks of [`move_job`] that need no database (shared with the in-memory store).
pub fn check_move(partition: &str, from: JobState, to: JobState, manifest: Option<&ManifestRecord>) -> Result<()> {
    if !from.can_move_to(to) {
        return Err(Error::Config(format!(
            "archive job {partition}: {} → {} is not an allowed transition",
            from.as_str(),
            to.as_str()
        )));
    }
    // A supplement that failed verification goes back to the version it
    // was to supersede, so that the next attempt builds on that one.
    let rewinds = from == JobState::SupplementManifested && to == JobState::Supplementing;
    if (to.records_manifest() || rewinds) != manifest.is_some() {
        return Err(Error::Config(format!(
            "archive job {partition}: a manifest is recorded exactly when entering `manifested` or \
             `supplement_manifested`, or going back from a supplement that failed verification"
        )));
    }
    Ok(())
}

/// Record why the last attempt failed (the state is left where it was).
pub async fn set_error(client: &Client, partition: &str, error: &str) -> Result<()> {
    client
        .execute(
            "UPDATE archive_jobs SET error = $2, updated_at = now() WHERE partition_name = $1",
            &[&partition, &error],
        )
        .await
        .map_err(Error::query("recording an archive error"))?;
    Ok(())
}

/// Jobs that are not `done`, oldest day first.
pub async fn unfinished(client: &Client) -> Result<Vec<ArchiveJob>> {
    let sql = format!("SELECT {COLUMNS} FROM archive_jobs WHERE state <> 'done' ORDER BY day");
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(Error::query("listing unfinished archive jobs"))?;
    rows.iter().map(from_row).collect()
}

/// The manifest this day's manifest links to: the latest earlier day that has one.
pub async fn previous_manifest(client: &Client, day: NaiveDate) -> Result<Option<(String, String)>> {
    let row = client
        .query_opt(
            "SELECT manifest_key, manifest_sha256 FROM archive_jobs
              WHERE day < $1 AND manifest_sha256 IS NOT NULL ORDER BY day DESC LIMIT 1",
            &[&day],
        )
        .await
        .map_err(Error::query("finding the previous archive manifest"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// How a partition table stands in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// No such table (dropped, or never made).
    Absent,
    /// A partition of `audit_events`.
    Attached,
    /// `DETACH … CONCURRENTLY` was interrupted: needs `FINALIZE`.
    DetachPending,
    /// A plain table, no longer a partition.
    Detached,
}

/// Where `partition` stands. `partition` must be a name from
/// [`crate::partitions::partition_name`].
pub async fn table_status(client: &Client, partition: &str) -> Result<TableStatus> {
    let row = client
        .query_opt(
            "SELECT i.inhdetachpending
               FROM pg_class c
               LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
              WHERE c.relname = $1 AND c.relkind = 'r' AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
            &[&partition],
        )
        .await
        .map_err(Error::query("reading a partition's catalog status"))?;
    Ok(match row {
        None => TableStatus::Absent,
        Some(r) => match r.get::<_, Option<bool>>(0) {
            None => TableStatus::Detached,
            Some(false) => TableStatus::Attached,
            Some(true) => TableStatus::DetachPending,
        },
    })
}

fn checked_name(partition: &str) -> Result<&str> {
    crate::partitions::day_of_partition(partition)
        .map(|_| partition)
        .ok_or_else(|| Error::Config(format!("`{partition}` is not a stele day partition name")))
}

/// `ALTER TABLE audit_events DETACH PARTITION … CONCURRENTLY`, or `FINALIZE`
/// when a previous attempt was interrupted. Must not run inside a transaction.
pub async fn detach(client: &Client, partition: &str) -> Result<()> {
    let name = checked_name(partition)?;
    let sql = match table_status(client, name).await? {
        TableStatus::Attached => format!("ALTER TABLE {PARENT_TABLE} DETACH PARTITION {name} CONCURRENTLY"),
        TableStatus::DetachPending => format!("ALTER TABLE {PARENT_TABLE} DETACH PARTITION {name} FINALIZE"),
        TableStatus::Detached | TableStatus::Absent => return Ok(()),
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(Error::query("detaching a partition"))
}

/// Rows in a partition table (attached or not); `None` if it does not exist.
pub async fn count_rows(client: &Client, partition: &str) -> Result<Option<i64>> {
    let name = checked_name(partition)?;
    if table_status(client, name).await? == TableStatus::Absent {
        return Ok(None);
    }
    let row = client
        .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
        .await
        .map_err(Error::query("counting a partition's rows"))?;
    Ok(Some(row.get(0)))
}

/// Drop a detached partition table (never an attached one).
pub async fn drop_detached(client: &Client, partition: &str) -> Result<()> {
    let name = checked_name(partition)?;
    match table_status(client, name).await? {
        TableStatus::Absent => Ok(()),
        TableStatus::Detached => client
            .batch_execute(&format!("DROP TABLE {name}"))
            .await
            .map_err(Error::query("dropping an archived partition")),
        TableStatus::Attached | TableStatus::DetachPending => Err(Error::Config(format!(
            "refusing to drop {name}: it is still attached to {PARENT_TABLE}"
        ))),
    }
}

/// The bounds of a day's rows in `late_events`: `$1 <= occurred_at < $2`.
fn late_bounds(day: NaiveDate) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    crate::partitions::bounds(day)
}

/// Days with rows in `late_events`, oldest first.
pub async fn late_days(client: &Client) -> Result<Vec<NaiveDate>> {
    let rows = client
        .query(
            "SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day FROM late_events ORDER BY day",
            &[],
        )
        .await
        .map_err(Error::query("listing days with late events"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claim the day's unclaimed late rows for the supplement being written;
/// returns how many the supplement now covers (claimed before or now).
pub async fn claim_late(client: &Client, day: NaiveDate) -> Result<u64> {
    let (lower, upper) = late_bounds(day);
    client
        .execute(
            "UPDATE late_events SET archive_claimed = true
              WHERE occurred_at >= $1 AND occurred_at < $2 AND NOT archive_claimed",
            &[&lower, &upper],
        )
        .await
        .map_err(Error::query("claiming late events"))?;
    let row = client
        .query_one(
            "SELECT count(*) FROM late_events WHERE occurred_at >= $1 AND occurred_at < $2 AND archive_claimed",
            &[&lower, &upper],
        )
        .await
        .map_err(Error::query("counting claimed late events"))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Delete the day's claimed late rows (the supplement that covers them is
/// verified); rows that landed since stay for the next supplement.
pub async fn delete_claimed_late(client: &Client, day: NaiveDate) -> Result<u64> {
    let (lower, upper) = late_bounds(day);
    client
        .execute(
            "DELETE FROM late_events WHERE occurred_at >= $1 AND occurred_at < $2 AND archive_claimed",
            &[&lower, &upper],
        )
        .await
        .map_err(Error::query("deleting archived late events"))
}

/// The `FROM … WHERE` of a day's claimed late rows (the bounds are literals
/// of a date, never user input).
pub fn claimed_late_source(day: NaiveDate) -> String {
    let (lower, upper) = late_bounds(day);
    format!(
        "late_events WHERE occurred_at >= '{}' AND occurred_at < '{}' AND archive_claimed",
        lower.format("%Y-%m-%d %H:%M:%S+00"),
        upper.format("%Y-%m-%d %H:%M:%S+00"),
    )
}
