//! Archived days: a tenant's day is the Parquet files under
//! `<prefix>/tenant_id=<t>/dt=<day>/` (the archive layout prunes by tenant and day
//! before anything is read), decoded by the archiver's own reader into events.

use chrono::NaiveDate;
use stele_archiver::layout::tenant_day_prefix;
use stele_archiver::ArchiveStore;
use stele_store::RowEvent;

/// Why an archived day could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error("reading the archive at {key}: {reason}")]
    Store { key: String, reason: String },
    #[error("archived file {key}: {reason}")]
    File { key: String, reason: String },
}

/// Every archived event of `tenant` on `day` (no files: none).
pub async fn read_day<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    tenant: &str,
    day: NaiveDate,
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
    let mut events = Vec::new();
    for key in keys {
        let Some(bytes) = store.get(&key).await.map_err(|e| ColdError::Store {
            key: key.clone(),
            reason: e.to_string(),
        })?
        else {
            continue; // deleted since the listing: the day moved on (re-export)
        };
        let rows = stele_archiver::readback::read_events(bytes, tenant).map_err(|e| ColdError::File {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        events.extend(rows);
    }
    Ok(events)
}
