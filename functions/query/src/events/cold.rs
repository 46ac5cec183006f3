//! Archived days: a tenant's day is the Parquet files under
//! `<prefix>/tenant_id=<t>/dt=<day>/` (the archive layout prunes by tenant and day
//! before anything is read), decoded by the archiver's own reader into events.

use chrono::NaiveDate;
use stele_archiver::layout::tenant_day_prefix;
use stele_archiver::schema::col;
use stele_archiver::ArchiveStore;
use stele_store::{ExportRow, RowEvent};

/// Why an archived day could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error("reading the archive at {key}: {reason}")]
    Store { key: String, reason: String },
    #[error("archived file {key}: {reason}")]
    File { key: String, reason: String },
}

/// Which archived rows a search can use: `occurred_at` within `[from, to]`
/// (microseconds, inclusive; the range and the cursor together) and, when set,
/// one actor. Row groups outside the time range are skipped unread.
#[derive(Debug, Clone)]
pub struct ColdFilter {
    pub from_micros: i64,
    pub to_micros: i64,
    pub actor_id: Option<String>,
    /// Newest first: files and row groups are read from the end.
    pub newest_first: bool,
    /// Stop once this many rows passed (a page and one more).
    pub limit: usize,
}

impl ColdFilter {
    fn keep(&self, row: &dyn ExportRow) -> bool {
        let at = row.micros(col::occurred_at()).ok().flatten();
        if !at.is_some_and(|t| t >= self.from_micros && t <= self.to_micros) {
            return false;
        }
        match &self.actor_id {
            None => true,
            Some(a) => row.text(col::actor_id()).ok().flatten() == Some(a.as_str()),
        }
    }
}

/// Which rebuilt events a search keeps (its other filters and its cursor).
pub type Accept = std::sync::Arc<dyn Fn(&RowEvent) -> bool + Send + Sync>;

/// The archived events of `tenant` on `day` that pass `filter` and `accept` (no
/// files: none), at most `filter.limit` of them in the search's order. Files are
/// decoded on a blocking thread, so a search can read two days on two cores.
pub async fn read_day<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    tenant: &str,
    day: NaiveDate,
    filter: &ColdFilter,
    accept: Accept,
) -> Result<Vec<RowEvent>, ColdError> {
    let dir = tenant_day_prefix(prefix, tenant, day);
    let mut keys: Vec<String> = store
        .list(&dir)
        .await
        .map_err(|e| ColdError::Store {
            key: dir.clone(),
            reason: e.to_string(),
        })?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    keys.sort();
    if filter.newest_first {
        keys.reverse();
    }
    let scan = stele_archiver::readback::EventScan {
        occurred: Some((filter.from_micros, filter.to_micros)),
        reverse: filter.newest_first,
        limit: None,
        equals: filter.actor_id.clone().map(|a| ("actor_id".to_string(), a)),
    };
    let mut events = Vec::new();
    for key in keys {
        if events.len() >= filter.limit {
            break;
        }
        let Some(bytes) = store.get(&key).await.map_err(|e| ColdError::Store {
            key: key.clone(),
            reason: e.to_string(),
        })?
        else {
            continue; // deleted since the listing: the day moved on (re-export)
        };
        let scan = stele_archiver::readback::EventScan {
            limit: Some(filter.limit - events.len()),
            ..scan.clone()
        };
        let (tenant_id, keep, accept) = (tenant.to_string(), filter.clone(), accept.clone());
        let rows = tokio::task::spawn_blocking(move || {
            stele_archiver::readback::read_events_where(bytes, &tenant_id, &scan, |row| keep.keep(row), |e| accept(e))
        })
        .await
        .map_err(|e| ColdError::File {
            key: key.clone(),
            reason: format!("decoding stopped: {e}"),
        })?
        .map_err(|e| ColdError::File {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        events.extend(rows);
    }
    Ok(events)
}
