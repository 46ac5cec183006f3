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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Rows written by this call.
    pub inserted: u64,
    /// Rows that were already there (or repeated within the batch): skipped.
    pub duplicates: u64,
}

/// The port the batch-writer writes through. The Postgres implementation is
/// [`PgEventStore`]; unit tests use an in-memory one.
pub trait EventStore: Send + Sync {
    /// Make sure the day partitions for `days` exist; report the days that are
    /// archived and must not receive rows (see [`partitions::ensure_days`]).
    fn ensure_days(&self, days: &[NaiveDate]) -> impl Future<Output = Result<EnsureOutcome>> + Send;

    /// Insert every event, atomically: either all new rows are committed or
    /// none is. Every event's day partition must exist.
    fn insert_batch(&self, events: &[StoredEvent]) -> impl Future<Output = Result<InsertOutcome>> + Send;
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

fn unnest_sql() -> String {
    let casts: Vec<String> = column_types()
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
        .collect();
    format!(
        "INSERT INTO audit_events ({}) SELECT * FROM UNNEST({}) ON CONFLICT DO NOTHING",
        column_list(),
        casts.join(", ")
    )
}

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
}

impl<'a> Columns<'a> {
    fn of(events: &'a [StoredEvent]) -> Self {
        let mut c = Columns::default();
        for s in events {
            let e = &s.event;
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

    fn params(&self) -> [&(dyn ToSql + Sync); 29] {
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
        ]
    }
}

/// One row's values in column order (for COPY).
fn row_values(s: &StoredEvent) -> RowValues<'_> {
    let e = &s.event;
    RowValues {
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
    fn params(&self) -> [&(dyn ToSql + Sync); 29] {
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
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| Error::Pool(e.to_string()))
    }

    async fn insert_unnest(&self, events: &[StoredEvent]) -> Result<u64> {
        let client = self.client().await?;
        let columns = Columns::of(events);
        let statement = client
            .prepare_cached(&self.unnest_sql)
            .await
            .map_err(Error::query("preparing the batch insert"))?;
        client
            .execute(&statement, &columns.params())
            .await
            .map_err(Error::query("inserting a batch of events"))
    }

    async fn insert_copy(&self, events: &[StoredEvent]) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(Error::query("beginning the batch transaction"))?;
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
        for event in events {
            let row = row_values(event);
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
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO audit_events ({columns}) SELECT {columns} FROM {STAGE_TABLE} ON CONFLICT DO NOTHING",
                    columns = column_list()
                ),
                &[],
            )
            .await
            .map_err(Error::query("inserting the staged events"))?;
        tx.commit().await.map_err(Error::query("committing the batch"))?;
        Ok(inserted)
    }
}

impl EventStore for PgEventStore {
    async fn ensure_days(&self, days: &[NaiveDate]) -> Result<EnsureOutcome> {
        let client = self.client().await?;
        partitions::ensure_days(&client, days).await
    }

    async fn insert_batch(&self, events: &[StoredEvent]) -> Result<InsertOutcome> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let inserted = match self.method {
            InsertMethod::Unnest => self.insert_unnest(events).await?,
            InsertMethod::CopyStage => self.insert_copy(events).await?,
        };
        Ok(InsertOutcome {
            inserted,
            duplicates: (events.len() as u64).saturating_sub(inserted),
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
        assert!(sql.ends_with("ON CONFLICT DO NOTHING"));
    }
}
