//! The bulk, idempotent insert the batch-writer uses: a whole Kinesis batch in
//! one statement, `ON CONFLICT DO NOTHING` on the primary key
//! `(tenant_id, event_id, occurred_at)`, so a redelivered record is counted as a
//! duplicate and never written twice.
//!
//! Two ways are implemented because the benchmark (`docs/BENCHMARKS.md`,
//! "Batch-writer") compares them on the same rows: UNNEST of one array per
//! column (one round trip) and binary COPY into a session temp
//! table followed by `INSERT … SELECT … ON CONFLICT DO NOTHING` (the default,
//! being the faster of the two when measured).

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use stele_core::{Changes, Event, EventHash};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::columns::{column_list, column_types};
use crate::error::{Error, Result};
use crate::partitions::{self, EnsureOutcome};

/// One row of `audit_events`: an opened (hash-checked) event plus where it
/// came from on the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: Event,
    pub hash: EventHash,
    pub kinesis_shard: Option<String>,
    pub kinesis_seq: Option<String>,
}

/// What one [`EventStore::insert_batch`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Rows written by this call.
    pub inserted: u64,
    /// Rows whose id was already stored with the same content (a redelivery,
    /// or repeated within the batch): skipped.
    pub duplicates: u64,
    /// Of `inserted`, rows of an archived day, written to `late_events` for
    /// the archiver's next supplement of that day.
    pub late: u64,
    /// Rows not stored because their (tenant, event id) is already stored
    /// with other content: the caller must dead-letter them, never drop them.
    pub conflicts: Vec<IdConflict>,
}

/// An event whose id is already stored (within the deduplication window)
/// with another hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdConflict {
    /// Its index in the `events` given to [`EventStore::insert_batch`].
    pub position: usize,
    /// The hash of the row stored under that id.
    pub stored_hash: EventHash,
}

/// The port the batch-writer writes through. The Postgres implementation is
/// [`PgEventStore`]; unit tests use an in-memory one.
pub trait EventStore: Send + Sync {
    /// Make sure the day partitions for `days` exist; report the days that are
    /// archived and must not receive rows (see [`partitions::ensure_days`]).
    fn ensure_days(&self, days: &[NaiveDate]) -> impl Future<Output = Result<EnsureOutcome>> + Send;

    /// Insert every event, atomically: either all new rows are committed or
    /// none is. An event id is stored at most once per tenant: a redelivery
    /// is a duplicate, the same id with other content a conflict (reported,
    /// not stored). Events of `late_days` (days reported closed by
    /// [`EventStore::ensure_days`]) go to `late_events`, the others to their
    /// day partition, which must exist.
    fn insert_batch(
        &self,
        events: &[StoredEvent],
        late_days: &[NaiveDate],
    ) -> impl Future<Output = Result<InsertOutcome>> + Send;
}

/// How [`PgEventStore`] sends a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InsertMethod {
    /// `INSERT … SELECT * FROM UNNEST($1::text[], …) ON CONFLICT DO NOTHING`:
    /// one statement, one round trip.
    Unnest,
    /// Binary COPY into a temp table, then `INSERT … SELECT … ON CONFLICT DO
    /// NOTHING` from it, in one transaction. The default: faster than UNNEST
    /// in every round of the benchmark (docs/BENCHMARKS.md, "Batch-writer").
    #[default]
    CopyStage,
}

/// Claims each (tenant_id, event_id) in `event_ids`, in batch order; returns the
/// (1-based) position of each new claim. A key repeated within the batch is skipped
/// by ON CONFLICT after its first row, so the first in stream order wins.
const CLAIM_SQL: &str = "WITH k AS (SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bytea[], $4::timestamptz[])
                                 WITH ORDINALITY AS k(tenant_id, event_id, event_hash, received_at, ord)),
            c AS (INSERT INTO event_ids (tenant_id, event_id, event_hash, received_at)
                  SELECT tenant_id, event_id, event_hash, received_at FROM k ORDER BY ord
                  ON CONFLICT DO NOTHING
                  RETURNING tenant_id, event_id)
       SELECT min(k.ord) FROM c JOIN k USING (tenant_id, event_id) GROUP BY tenant_id, event_id";

/// The insert statement, over the newly claimed rows of `source` (a FROM item named
/// `r`: the staging table or an UNNEST of column arrays), each with its leaf index.
/// In one snapshot it:
/// - stores the rows, those of the closed days in `$late` (archived or being
///   archived) in `late_events`, the others in `audit_events`,
/// - moves each shard's consumed position in `stream_progress` forward (the
///   archiver's low-water mark; three arrays from `$progress`, one entry per
///   shard, computed by [`shard_progress`]), whatever became of the rows,
/// - writes the tenants' new log heads and tile entries (nine arrays from `$log`,
///   see [`crate::log::append_ctes`]).
///
/// Returns one row: (stored, of which late, log mismatches (must be 0)).
fn insert_sql(with: &str, source: &str, late: &str, progress: usize) -> String {
    let (shards, seqs, received) = (progress, progress + 1, progress + 2);
    let (log_ctes, log_check) = crate::log::append_ctes(progress + 3);
    format!(
        "WITH {with}
              a AS (INSERT INTO audit_events ({cols})
                    SELECT {cols} FROM {source}
                     WHERE {DAY} <> ALL({late}) ON CONFLICT DO NOTHING RETURNING 1),
              l AS (INSERT INTO late_events ({cols})
                    SELECT {cols} FROM {source}
                     WHERE {DAY} = ANY({late}) ON CONFLICT DO NOTHING RETURNING 1),
              p AS (INSERT INTO stream_progress AS sp (shard_id, sequence_number, received_at)
                    SELECT * FROM UNNEST(${shards}::text[], ${seqs}::text[], ${received}::timestamptz[])
                    ON CONFLICT (shard_id) DO UPDATE SET
                       sequence_number = CASE WHEN EXCLUDED.sequence_number::numeric > sp.sequence_number::numeric
                                              THEN EXCLUDED.sequence_number ELSE sp.sequence_number END,
                       received_at = greatest(sp.received_at, EXCLUDED.received_at),
                       updated_at = now()),
              {log_ctes}
         SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM l), (SELECT count(*) FROM l),
                {log_check}",
        cols = column_list(),
    )
}

/// [`insert_sql`] over UNNEST of one array parameter per column; `$31` is the
/// closed days, `$32..$34` the shard progress, `$35..$43` the log append.
fn unnest_sql() -> String {
    let casts: Vec<String> = column_types()
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
        .collect();
    let n = column_types().len();
    let late = format!("${}::date[]", n + 1);
    let with = format!(
        "r AS (SELECT * FROM UNNEST({}) AS r({})),",
        casts.join(", "),
        column_list()
    );
    insert_sql(&with, "r", &late, n + 2)
}

/// [`insert_sql`] over the staging table the batch was copied into; `$1` is
/// the closed days, `$2..$4` the shard progress, `$5..$13` the log append.
fn staged_sql() -> String {
    insert_sql("", &format!("{STAGE_TABLE} AS r"), "$1::date[]", 2)
}

/// Claims the batch's ids ([`CLAIM_SQL`]); returns, per position, whether it made
/// a new claim (the first position of each new key).
async fn claim_ids(client: &impl deadpool_postgres::GenericClient, events: &[StoredEvent]) -> Result<Vec<bool>> {
    let tenants: Vec<&str> = events.iter().map(|s| s.event.tenant_id.as_str()).collect();
    let ids: Vec<Uuid> = events.iter().map(|s| s.event.event_id).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|s| &s.hash.0[..]).collect();
    let received: Vec<DateTime<Utc>> = events.iter().map(|s| s.event.received_at).collect();
    let rows = client
        .query(CLAIM_SQL, &[&tenants, &ids, &hashes, &received])
        .await
        .map_err(Error::query("claiming the batch's event ids"))?;
    let mut fresh = vec![false; events.len()];
    for r in &rows {
        let ord: i64 = r.get(0);
        if let Some(f) = usize::try_from(ord - 1).ok().and_then(|i| fresh.get_mut(i)) {
            *f = true;
        }
    }
    Ok(fresh)
}

/// The rows of a batch whose id is claimed with another hash (by an earlier
/// batch, a concurrent one, or another row of this batch).
const CONFLICTS_SQL: &str = "SELECT k.tenant_id, k.event_id, k.sent, e.event_hash
       FROM UNNEST($1::text[], $2::uuid[], $3::bytea[]) AS k(tenant_id, event_id, sent)
       LEFT JOIN event_ids e USING (tenant_id, event_id)
      WHERE e.event_hash IS DISTINCT FROM k.sent";

/// Each shard's newest position in the batch: (shard, sequence number, newest
/// received_at), sequence numbers compared as the decimal numbers they are.
type ProgressArrays = (Vec<String>, Vec<String>, Vec<DateTime<Utc>>);

fn shard_progress<'a>(events: &'a [StoredEvent]) -> ProgressArrays {
    let mut newest: HashMap<&'a str, (&'a str, DateTime<Utc>)> = HashMap::new();
    for s in events {
        let (Some(shard), Some(seq)) = (s.kinesis_shard.as_deref(), s.kinesis_seq.as_deref()) else {
            continue;
        };
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let entry = newest.entry(shard).or_insert((seq, s.event.received_at));
        let numeric = |v: &'a str| {
            let digits = v.trim_start_matches('0');
            (digits.len(), digits)
        };
        if numeric(seq) > numeric(entry.0) {
            entry.0 = seq;
        }
        entry.1 = entry.1.max(s.event.received_at);
    }
    let mut out: ProgressArrays = Default::default();
    for (shard, (seq, received)) in newest {
        out.0.push(shard.to_string());
        out.1.push(seq.to_string());
        out.2.push(received);
    }
    out
}

/// The conflicts of `events` after an insert that made `fresh` new claims:
/// none to look for when every row made one.
async fn find_conflicts(
    client: &impl deadpool_postgres::GenericClient,
    events: &[StoredEvent],
    fresh: u64,
) -> Result<Vec<IdConflict>> {
    if fresh >= events.len() as u64 {
        return Ok(Vec::new());
    }
    let tenants: Vec<&str> = events.iter().map(|s| s.event.tenant_id.as_str()).collect();
    let ids: Vec<Uuid> = events.iter().map(|s| s.event.event_id).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|s| &s.hash.0[..]).collect();
    let rows = client
        .query(CONFLICTS_SQL, &[&tenants, &ids, &hashes])
        .await
        .map_err(Error::query("looking for event ids stored with other content"))?;
    // (tenant, id, hash) → positions in `events` (a record may repeat).
    let mut positions: HashMap<(&str, Uuid, &[u8]), Vec<usize>> = HashMap::new();
    for (position, s) in events.iter().enumerate() {
        positions
            .entry((s.event.tenant_id.as_str(), s.event.event_id, &s.hash.0[..]))
            .or_default()
            .push(position);
    }
    let mut conflicts = Vec::new();
    for r in &rows {
        let (tenant, event_id, sent): (&str, Uuid, &[u8]) = (r.get(0), r.get(1), r.get(2));
        // No claim at all although the insert made none: pruned meanwhile.
        // Fail the batch (it is redelivered) rather than guess.
        let stored = r
            .get::<_, Option<&[u8]>>(3)
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| Error::ClaimUnreadable {
                tenant: tenant.to_string(),
                event_id,
            })?;
        for &position in positions.get(&(tenant, event_id, sent)).into_iter().flatten() {
            conflicts.push(IdConflict {
                position,
                stored_hash: EventHash(stored),
            });
        }
    }
    conflicts.sort_by_key(|c| c.position);
    Ok(conflicts)
}

/// The UTC day of a row (its partition).
const DAY: &str = "(occurred_at AT TIME ZONE 'UTC')::date";

const STAGE_TABLE: &str = "stele_insert_stage";

/// The stored form of `changes`: the event's JSON object, `before`/`after` as given.
type ChangesJson<'a> = Option<Json<&'a Changes>>;
type MetadataJson<'a> = Option<Json<&'a serde_json::Map<String, serde_json::Value>>>;

/// One array per column, borrowed from the events (no copies of the strings).
#[derive(Default)]
struct Columns<'a> {
    tenant_id: Vec<&'a str>,
    event_id: Vec<Uuid>,
    occurred_at: Vec<DateTime<Utc>>,
    received_at: Vec<DateTime<Utc>>,
    category: Vec<&'static str>,
    action: Vec<&'a str>,
    outcome: Vec<&'static str>,
    actor_id: Vec<&'a str>,
    actor_type: Vec<&'static str>,
    actor_display: Vec<Option<&'a str>>,
    actor_ip: Vec<Option<&'a str>>,
    actor_user_agent: Vec<Option<&'a str>>,
    resource_type: Vec<Option<&'a str>>,
    resource_id: Vec<Option<&'a str>>,
    resource_display: Vec<Option<&'a str>>,
    changes: Vec<ChangesJson<'a>>,
    metadata: Vec<MetadataJson<'a>>,
    correlation_id: Vec<Option<&'a str>>,
    causation_id: Vec<Option<&'a str>>,
    trace_parent: Vec<Option<&'a str>>,
    trace_state: Vec<Option<&'a str>>,
    source_service: Vec<&'a str>,
    source_version: Vec<Option<&'a str>>,
    source_host: Vec<Option<&'a str>>,
    source_region: Vec<Option<&'a str>>,
    schema_version: Vec<i16>,
    event_hash: Vec<&'a [u8]>,
    kinesis_shard: Vec<Option<&'a str>>,
    kinesis_seq: Vec<Option<&'a str>>,
    leaf_index: Vec<i64>,
}

impl<'a> Columns<'a> {
    /// The rows to store, each with its leaf index.
    fn of(rows: &[(&'a StoredEvent, i64)]) -> Self {
        let mut c = Columns::default();
        for &(s, leaf) in rows {
            let e = &s.event;
            c.leaf_index.push(leaf);
            c.tenant_id.push(&e.tenant_id);
            c.event_id.push(e.event_id);
            c.occurred_at.push(e.occurred_at);
            c.received_at.push(e.received_at);
            c.category.push(e.category.as_str());
            c.action.push(&e.action);
            c.outcome.push(e.outcome.as_str());
            c.actor_id.push(&e.actor.id);
            c.actor_type.push(e.actor.actor_type.as_str());
            c.actor_display.push(e.actor.display.as_deref());
            c.actor_ip.push(e.actor.ip.as_deref());
            c.actor_user_agent.push(e.actor.user_agent.as_deref());
            c.resource_type
                .push(e.resource.as_ref().map(|r| r.resource_type.as_str()));
            c.resource_id.push(e.resource.as_ref().map(|r| r.id.as_str()));
            c.resource_display
                .push(e.resource.as_ref().and_then(|r| r.display.as_deref()));
            c.changes.push(e.changes.as_ref().map(Json));
            c.metadata.push(e.metadata.as_ref().map(Json));
            c.correlation_id.push(e.correlation_id.as_deref());
            c.causation_id.push(e.causation_id.as_deref());
            c.trace_parent.push(e.trace.as_ref().map(|t| t.traceparent.as_str()));
            c.trace_state
                .push(e.trace.as_ref().and_then(|t| t.tracestate.as_deref()));
            c.source_service.push(&e.source.service);
            c.source_version.push(e.source.version.as_deref());
            c.source_host.push(e.source.host.as_deref());
            c.source_region.push(e.source.region.as_deref());
            // schema_version is checked to be 1 when a record is opened.
            c.schema_version
                .push(i16::try_from(e.schema_version).unwrap_or(i16::MAX));
            c.event_hash.push(&s.hash.0);
            c.kinesis_shard.push(s.kinesis_shard.as_deref());
            c.kinesis_seq.push(s.kinesis_seq.as_deref());
        }
        c
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 30] {
        [
            &self.tenant_id,
            &self.event_id,
            &self.occurred_at,
            &self.received_at,
            &self.category,
            &self.action,
            &self.outcome,
            &self.actor_id,
            &self.actor_type,
            &self.actor_display,
            &self.actor_ip,
            &self.actor_user_agent,
            &self.resource_type,
            &self.resource_id,
            &self.resource_display,
            &self.changes,
            &self.metadata,
            &self.correlation_id,
            &self.causation_id,
            &self.trace_parent,
            &self.trace_state,
            &self.source_service,
            &self.source_version,
            &self.source_host,
            &self.source_region,
            &self.schema_version,
            &self.event_hash,
            &self.kinesis_shard,
            &self.kinesis_seq,
            &self.leaf_index,
        ]
    }
}

/// One row's values in column order (for COPY).
fn row_values(s: &StoredEvent, leaf_index: i64) -> RowValues<'_> {
    let e = &s.event;
    RowValues {
        leaf_index,
        changes: e.changes.as_ref().map(Json),
        metadata: e.metadata.as_ref().map(Json),
        schema_version: i16::try_from(e.schema_version).unwrap_or(i16::MAX),
        hash: &s.hash.0,
        resource_type: e.resource.as_ref().map(|r| r.resource_type.as_str()),
        resource_id: e.resource.as_ref().map(|r| r.id.as_str()),
        resource_display: e.resource.as_ref().and_then(|r| r.display.as_deref()),
        trace_parent: e.trace.as_ref().map(|t| t.traceparent.as_str()),
        trace_state: e.trace.as_ref().and_then(|t| t.tracestate.as_deref()),
        s,
    }
}

struct RowValues<'a> {
    s: &'a StoredEvent,
    leaf_index: i64,
    changes: ChangesJson<'a>,
    metadata: MetadataJson<'a>,
    schema_version: i16,
    hash: &'a [u8],
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    resource_display: Option<&'a str>,
    trace_parent: Option<&'a str>,
    trace_state: Option<&'a str>,
}

impl RowValues<'_> {
    fn params(&self) -> [&(dyn ToSql + Sync); 30] {
        let e = &self.s.event;
        [
            &e.tenant_id,
            &e.event_id,
            &e.occurred_at,
            &e.received_at,
            e.category.as_str_ref(),
            &e.action,
            e.outcome.as_str_ref(),
            &e.actor.id,
            e.actor.actor_type.as_str_ref(),
            &e.actor.display,
            &e.actor.ip,
            &e.actor.user_agent,
            &self.resource_type,
            &self.resource_id,
            &self.resource_display,
            &self.changes,
            &self.metadata,
            &e.correlation_id,
            &e.causation_id,
            &self.trace_parent,
            &self.trace_state,
            &e.source.service,
            &e.source.version,
            &e.source.host,
            &e.source.region,
            &self.schema_version,
            &self.hash,
            &self.s.kinesis_shard,
            &self.s.kinesis_seq,
            &self.leaf_index,
        ]
    }
}

/// `&'static &'static str` for the enum columns, so they can be borrowed as
/// `&dyn ToSql` without a temporary.
trait AsStrRef {
    fn as_str_ref(&self) -> &'static &'static str;
}

macro_rules! as_str_ref {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl AsStrRef for $t {
            fn as_str_ref(&self) -> &'static &'static str {
                match self { $(<$t>::$v => &$s),+ }
            }
        }
    };
}
as_str_ref!(stele_core::Category, Audit => "audit", Security => "security", Application => "application");
as_str_ref!(stele_core::Outcome, Success => "success", Failure => "failure", Denied => "denied", Error => "error", Unknown => "unknown");
as_str_ref!(stele_core::ActorType, User => "user", Service => "service", System => "system", ApiKey => "api_key");

/// [`EventStore`] on a deadpool-postgres pool (built once per process).
#[derive(Clone)]
pub struct PgEventStore {
    pool: Pool,
    method: InsertMethod,
    unnest_sql: String,
    staged_sql: String,
}

impl PgEventStore {
    pub fn new(pool: Pool) -> Self {
        Self::with_method(pool, InsertMethod::default())
    }

    pub fn with_method(pool: Pool, method: InsertMethod) -> Self {
        Self {
            pool,
            method,
            unnest_sql: unnest_sql(),
            staged_sql: staged_sql(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| Error::Pool(e.to_string()))
    }

    /// The whole batch in one transaction: lock the tenants' log heads, claim the
    /// ids, store the newly claimed rows with their leaf indices and append them to
    /// the log (see [`crate::log`]), then tell duplicates from conflicts.
    async fn insert_logged(&self, events: &[StoredEvent], late_days: &[NaiveDate]) -> Result<Written> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(Error::query("beginning the batch transaction"))?;
        let mut tenants: Vec<&str> = events.iter().map(|s| s.event.tenant_id.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let heads = crate::log::lock_heads(&tx, &tenants).await?;
        let fresh = claim_ids(&tx, events).await?;
        let append = crate::log::plan_append(events, &fresh, heads)?;
        let rows: Vec<(&StoredEvent, i64)> = events
            .iter()
            .zip(&append.leaf_index)
            .filter_map(|(s, leaf)| leaf.map(|l| (s, l)))
            .collect();
        let late_days = late_days.to_vec();
        let (shards, seqs, received) = shard_progress(events);
        let row = match self.method {
            InsertMethod::Unnest => {
                let columns = Columns::of(&rows);
                let statement = tx
                    .prepare_cached(&self.unnest_sql)
                    .await
                    .map_err(Error::query("preparing the batch insert"))?;
                let mut params: Vec<&(dyn ToSql + Sync)> = columns.params().to_vec();
                params.extend([&late_days as &(dyn ToSql + Sync), &shards, &seqs, &received]);
                params.extend(append.params());
                tx.query_one(&statement, &params)
                    .await
                    .map_err(Error::query("inserting a batch of events"))?
            }
            InsertMethod::CopyStage => {
                copy_to_stage(&tx, &rows).await?;
                let statement = tx
                    .prepare_cached(&self.staged_sql)
                    .await
                    .map_err(Error::query("preparing the staged insert"))?;
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&late_days, &shards, &seqs, &received];
                params.extend(append.params());
                tx.query_one(&statement, &params)
                    .await
                    .map_err(Error::query("inserting the staged events"))?
            }
        };
        let (stored, late, mismatches): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if mismatches != 0 {
            return Err(Error::LogAppendMismatch { mismatches });
        }
        let fresh_count = rows.len() as u64;
        if stored as u64 != fresh_count {
            return Err(Error::ClaimWithoutRow {
                fresh: fresh_count,
                stored: stored as u64,
            });
        }
        let conflicts = find_conflicts(&tx, events, fresh_count).await?;
        tx.commit().await.map_err(Error::query("committing the batch"))?;
        Ok(Written {
            inserted: stored as u64,
            late: late as u64,
            conflicts,
        })
    }
}

/// Binary COPY of `rows` into the session's staging table (emptied at commit).
async fn copy_to_stage(tx: &deadpool_postgres::Transaction<'_>, rows: &[(&StoredEvent, i64)]) -> Result<()> {
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (LIKE audit_events) ON COMMIT DELETE ROWS"
    ))
    .await
    .map_err(Error::query("creating the staging table"))?;
    let sink = tx
        .copy_in(&format!(
            "COPY {STAGE_TABLE} ({}) FROM STDIN (FORMAT binary)",
            column_list()
        ))
        .await
        .map_err(Error::query("starting COPY into the staging table"))?;
    let writer = BinaryCopyInWriter::new(sink, column_types());
    let mut writer = std::pin::pin!(writer);
    for &(event, leaf) in rows {
        let row = row_values(event, leaf);
        writer
            .as_mut()
            .write(&row.params())
            .await
            .map_err(Error::query("copying a row into the staging table"))?;
    }
    writer
        .finish()
        .await
        .map_err(Error::query("finishing COPY into the staging table"))?;
    Ok(())
}

/// What the insert did (see [`insert_sql`]), and the conflicts.
struct Written {
    inserted: u64,
    late: u64,
    conflicts: Vec<IdConflict>,
}

impl EventStore for PgEventStore {
    async fn ensure_days(&self, days: &[NaiveDate]) -> Result<EnsureOutcome> {
        let client = self.client().await?;
        partitions::ensure_days(&client, days).await
    }

    async fn insert_batch(&self, events: &[StoredEvent], late_days: &[NaiveDate]) -> Result<InsertOutcome> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let written = self.insert_logged(events, late_days).await?;
        let conflicts = written.conflicts;
        Ok(InsertOutcome {
            inserted: written.inserted,
            duplicates: (events.len() as u64).saturating_sub(written.inserted + conflicts.len() as u64),
            late: written.late,
            conflicts,
        })
    }
}

impl Error {
    /// True when Postgres refused a row because no partition covers its
    /// `occurred_at` (the day was detached or never created): the caller
    /// re-checks partitions and retries instead of failing the batch.
    pub fn is_missing_partition(&self) -> bool {
        let Error::Query { source, .. } = self else {
            return false;
        };
        source.as_db_error().is_some_and(|db| {
            db.code() == &tokio_postgres::error::SqlState::CHECK_VIOLATION
                && db.message().starts_with("no partition of relation")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnest_statement_names_every_column_with_its_array_type() {
        let sql = unnest_sql();
        assert_eq!(column_list().split(',').count(), column_types().len());
        assert!(sql.contains("$1::text[]"), "{sql}");
        assert!(sql.contains("$16::jsonb[]"), "{sql}");
        assert!(sql.contains("$26::int2[]"), "{sql}");
        assert!(sql.contains("$27::bytea[]"), "{sql}");
        assert!(sql.contains("$29::text[]"), "{sql}");
        assert!(sql.contains("$30::int8[]"), "{sql}");
        assert!(sql.contains("$31::date[]"), "{sql}");
        assert!(sql.contains("$35::text[]"), "log heads follow the progress: {sql}");
        assert!(sql.contains("$43::int4[]"), "the tiles' lengths are the last: {sql}");
        assert!(!sql.contains("$44"), "{sql}");
        assert!(staged_sql().contains("$13::int4[]"));
    }

    fn stored(shard: &str, seq: &str, received_s: i64) -> StoredEvent {
        let event: Event = serde_json::from_value(serde_json::json!({
            "tenant_id": "t", "event_id": Uuid::nil(), "occurred_at": "2026-03-01T00:00:00Z",
            "received_at": DateTime::<Utc>::from_timestamp(received_s, 0).unwrap(),
            "category": "audit", "action": "a", "outcome": "success",
            "actor": {"id": "u", "type": "user"}, "source": {"service": "s"}, "schema_version": 1
        }))
        .unwrap();
        StoredEvent {
            event,
            hash: EventHash([0; 32]),
            kinesis_shard: Some(shard.into()),
            kinesis_seq: Some(seq.into()),
        }
    }

    #[test]
    fn shard_progress_is_the_numerically_newest_position_per_shard() {
        let events = [
            stored("s1", "49590000000000000000000000099", 10),
            stored("s1", "495900000000000000000000000100", 5),
            stored("s2", "7", 3),
            stored("s2", "not-a-number", 99),
        ];
        let (shards, seqs, received) = shard_progress(&events);
        let mut rows: Vec<_> = shards.into_iter().zip(seqs).zip(received).collect();
        rows.sort();
        assert_eq!(
            rows[0].0,
            ("s1".to_string(), "495900000000000000000000000100".to_string())
        );
        assert_eq!(rows[0].1.timestamp(), 10, "the newest received_at of the shard");
        assert_eq!(rows[1].0, ("s2".to_string(), "7".to_string()));
    }

    #[test]
    fn both_statements_store_rows_and_write_the_log_in_one_statement() {
        for sql in [unnest_sql(), staged_sql()] {
            for part in [
                "INSERT INTO audit_events",
                "INSERT INTO late_events",
                "INSERT INTO stream_progress",
                "UPDATE tlog_heads",
                "INSERT INTO tlog_tiles",
            ] {
                assert_eq!(sql.matches(part).count(), 1, "{part} in {sql}");
            }
        }
        assert!(staged_sql().contains("FROM stele_insert_stage AS r"));
        assert!(CLAIM_SQL.contains("ORDER BY ord"), "claims in batch order");
    }
}
