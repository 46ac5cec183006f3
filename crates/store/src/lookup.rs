//! Read-only look-ups by idempotency key, for tools that must say what an
//! insert would do without doing it (`stele replay --dry-run`) or must check a
//! stored row before trusting a duplicate (a `conflict` dead letter).

use std::collections::HashMap;

use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The `event_hash` stored under each of the `(tenant_id, event_id)` keys, as
/// the insert decides it: the id's claim in `event_ids` (one per key, for the
/// deduplication window), whichever table holds the row.
pub async fn stored_hashes(client: &Client, keys: &[(String, Uuid)]) -> Result<HashMap<(String, Uuid), [u8; 32]>> {
    let mut found: HashMap<(String, Uuid), [u8; 32]> = HashMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let tenants: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
    let ids: Vec<Uuid> = keys.iter().map(|(_, id)| *id).collect();
    let rows = client
        .query(
            "WITH k AS (SELECT DISTINCT * FROM UNNEST($1::text[], $2::uuid[]) AS k(tenant_id, event_id))
             SELECT e.tenant_id, e.event_id, e.event_hash FROM event_ids e JOIN k USING (tenant_id, event_id)",
            &[&tenants, &ids],
        )
        .await
        .map_err(Error::query("looking up stored events by id"))?;
    for row in rows {
        let hash: Vec<u8> = row.get(2);
        let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
            continue; // the column's CHECK makes this impossible
        };
        found.insert((row.get(0), row.get(1)), hash);
    }
    Ok(found)
}
