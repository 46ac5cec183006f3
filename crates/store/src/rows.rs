//! A stored row, read back: the event it holds, rebuilt from its archived cells, and
//! whether its content still hashes to its `event_hash`. One function for a row
//! exported from PostgreSQL and a row read from a Parquet file (both are
//! [`ExportRow`]s), so the archiver's verify step and `stele verify` check both
//! sides the same way, and a changed field is caught whichever copy was changed.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use stele_core::{Event, EventHash};

use crate::archive_db::ExportRow;
use crate::columns::{archived_columns, ArchivedAs};
use crate::error::{Error, Result};

/// What a row says about itself, once its content is checked against its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRow {
    pub tenant_id: String,
    pub event_id: uuid::Uuid,
    pub event_hash: EventHash,
    pub received_at_micros: i64,
    pub occurred_at_micros: i64,
    /// Its leaf in the tenant's log (`None` for rows stored before the log).
    pub leaf_index: Option<u64>,
}

/// Why a row fails its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("event {event_id}: content hashes to {computed}, its event_hash column says {stored}")]
    HashMismatch {
        event_id: String,
        stored: String,
        computed: String,
    },
    #[error("event {event_id}: {what}")]
    Unreadable { event_id: String, what: String },
}

impl RowProblem {
    /// The event the problem is about (as the row names it).
    pub fn event_id(&self) -> String {
        match self {
            RowProblem::HashMismatch { event_id, .. } | RowProblem::Unreadable { event_id, .. } => event_id.clone(),
        }
    }
}

fn names() -> &'static [(&'static str, ArchivedAs)] {
    static NAMES: OnceLock<Vec<(&'static str, ArchivedAs)>> = OnceLock::new();
    NAMES.get_or_init(|| archived_columns().map(|c| (c.name, c.pg.archived_as())).collect())
}

fn micros_to_json(m: i64) -> Result<Value, String> {
    DateTime::<Utc>::from_timestamp_micros(m)
        .map(|t| Value::String(stele_core::event::timestamp::format(&t)))
        .ok_or_else(|| format!("timestamp {m} out of range"))
}

/// Sets `path` (one or two keys deep) in `obj`.
fn put(obj: &mut Map<String, Value>, path: &[&str], v: Value) {
    match path {
        [k] => {
            obj.insert((*k).to_string(), v);
        }
        [k, rest @ ..] => {
            let inner = obj.entry((*k).to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = inner {
                put(m, rest, v);
            }
        }
        [] => {}
    }
}

/// Where each archived column goes in the event's JSON (`None`: not part of the event).
fn event_path(column: &str) -> Option<&'static [&'static str]> {
    Some(match column {
        "event_id" => &["event_id"],
        "occurred_at" => &["occurred_at"],
        "received_at" => &["received_at"],
        "category" => &["category"],
        "action" => &["action"],
        "outcome" => &["outcome"],
        "actor_id" => &["actor", "id"],
        "actor_type" => &["actor", "type"],
        "actor_display" => &["actor", "display"],
        "actor_ip" => &["actor", "ip"],
        "actor_user_agent" => &["actor", "user_agent"],
        "resource_type" => &["resource", "type"],
        "resource_id" => &["resource", "id"],
        "resource_display" => &["resource", "display"],
        "changes" => &["changes"],
        "metadata" => &["metadata"],
        "correlation_id" => &["correlation_id"],
        "causation_id" => &["causation_id"],
        "trace_parent" => &["trace", "traceparent"],
        "trace_state" => &["trace", "tracestate"],
        "source_service" => &["source", "service"],
        "source_version" => &["source", "version"],
        "source_host" => &["source", "host"],
        "source_region" => &["source", "region"],
        "schema_version" => &["schema_version"],
        _ => return None,
    })
}

/// The event a row holds, rebuilt from its cells, with the row's `event_hash` and
/// `leaf_index` columns as stored (not checked here).
#[derive(Debug, Clone)]
pub struct RowEvent {
    pub event: Event,
    pub stored_hash: Option<EventHash>,
    pub leaf_index: Option<u64>,
}

/// Rebuilds the event a row holds and checks its content against its `event_hash`.
pub fn check_row(row: &impl ExportRow) -> Result<std::result::Result<CheckedRow, RowProblem>> {
    let r = match event_of(row)? {
        Ok(r) => r,
        Err(p) => return Ok(Err(p)),
    };
    let event_id = r.event.event_id.to_string();
    let Some(stored) = r.stored_hash else {
        return Ok(Err(RowProblem::Unreadable {
            event_id,
            what: "event_hash is missing or not 64 hex digits".into(),
        }));
    };
    let computed = r.event.compute_hash();
    if computed != stored {
        return Ok(Err(RowProblem::HashMismatch {
            event_id,
            stored: stored.to_hex(),
            computed: computed.to_hex(),
        }));
    }
    Ok(Ok(CheckedRow {
        tenant_id: r.event.tenant_id,
        event_id: r.event.event_id,
        event_hash: stored,
        received_at_micros: r.event.received_at.timestamp_micros(),
        occurred_at_micros: r.event.occurred_at.timestamp_micros(),
        leaf_index: r.leaf_index,
    }))
}

/// Rebuilds the event a row holds (see [`RowEvent`]).
pub fn event_of(row: &impl ExportRow) -> Result<std::result::Result<RowEvent, RowProblem>> {
    let tenant = row.tenant()?.to_string();
    let mut obj = Map::new();
    obj.insert("tenant_id".into(), Value::String(tenant.clone()));
    let (mut stored_hash, mut leaf_index, mut event_id) = (None, None, String::new());
    let mut problem = None;
    for (i, &(name, kind)) in names().iter().enumerate() {
        let value = match kind {
            ArchivedAs::Text => row.text(i)?.map(|s| s.to_string()).map(Value::String),
            ArchivedAs::TimestampMicros => match row.micros(i)? {
                Some(m) => match micros_to_json(m) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        problem.get_or_insert(e);
                        None
                    }
                },
                None => None,
            },
            ArchivedAs::Int32 => row.int32(i)?.map(Value::from),
            ArchivedAs::Int64 => row.int64(i)?.map(Value::from),
        };
        match (name, value) {
            ("event_hash", Some(Value::String(h))) => stored_hash = Some(h),
            ("leaf_index", Some(v)) => leaf_index = v.as_u64(),
            ("event_id", Some(Value::String(id))) => {
                event_id = id.clone();
                obj.insert("event_id".into(), Value::String(id));
            }
            ("changes" | "metadata", Some(Value::String(json))) => match serde_json::from_str::<Value>(&json) {
                Ok(v) => put(&mut obj, event_path(name).unwrap_or(&[]), v),
                Err(e) => {
                    problem.get_or_insert(format!("{name} is not JSON: {e}"));
                }
            },
            (_, Some(v)) => {
                if let Some(path) = event_path(name) {
                    put(&mut obj, path, v)
                }
            }
            (_, None) => {}
        }
    }
    let unreadable = |what: String| {
        Ok(Err(RowProblem::Unreadable {
            event_id: event_id.clone(),
            what,
        }))
    };
    if let Some(p) = problem {
        return unreadable(p);
    }
    match serde_json::from_value::<Event>(Value::Object(obj)) {
        Ok(event) => Ok(Ok(RowEvent {
            event,
            stored_hash: stored_hash.as_deref().and_then(EventHash::from_hex),
            leaf_index,
        })),
        Err(e) => unreadable(format!("the row is not an event: {e}")),
    }
}

impl CheckedRow {
    /// Its leaf hash in the tenant's log (stele leaf v1).
    pub fn leaf_hash(&self) -> Result<stele_tlog::Hash> {
        stele_tlog::event_leaf_hash(&self.tenant_id, &self.event_hash.0, self.received_at_micros)
            .map_err(|e| Error::Log(e.to_string()))
    }
}
