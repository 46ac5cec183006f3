//! The log half of `stele verify`: published checkpoints and tiles, and every row's
//! claim to be a leaf.

use std::collections::{BTreeMap, HashMap};

use stele_archiver::ArchiveStore;
use stele_tlog::publish::{checkpoint_size, latest_checkpoint_key, tenant_origin, tile_key};
use stele_tlog::tile::{hashes_from_tiles, tiles_for_nodes, TileId, TILE_WIDTH};
use stele_tlog::{open_checkpoint, Hash, NodeId, ProofPlan, SignedCheckpoint};

use super::{Finding, Report, RowSeen, Scope, Trust};

/// Tile requests in flight at once.
const TILE_FETCHES: usize = 16;

/// Tiles read from the bucket, cached by key.
struct Tiles<'a, S> {
    store: &'a S,
    prefix: &'a str,
    tenant: &'a str,
    cache: HashMap<String, Option<bytes::Bytes>>,
}

impl<S: ArchiveStore> Tiles<'_, S> {
    async fn get(&mut self, key: String) -> Result<Option<bytes::Bytes>, String> {
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let v = self.store.get(&key).await.map_err(|e| format!("reading {key}: {e}"))?;
        self.cache.insert(key, v.clone());
        Ok(v)
    }

    /// Reads the keys not cached yet, several at a time (a tenant's log check asks for
    /// thousands of tiles; one request after another, the bucket's latency dominates).
    async fn fetch_all(&mut self, keys: Vec<String>) -> Result<(), String> {
        use futures_util::StreamExt;
        let store = self.store;
        let missing: Vec<String> = keys.into_iter().filter(|k| !self.cache.contains_key(k)).collect();
        let mut fetched = futures_util::stream::iter(missing.into_iter().map(|key| async move {
            let v = store.get(&key).await.map_err(|e| format!("reading {key}: {e}"));
            (key, v)
        }))
        .buffer_unordered(TILE_FETCHES);
        while let Some((key, v)) = fetched.next().await {
            self.cache.insert(key, v?);
        }
        Ok(())
    }

    /// Fetches `ids` (each at its width, then the full tile where that is absent).
    async fn prefetch(&mut self, ids: &[TileId]) -> Result<(), String> {
        let exact = ids.iter().map(|t| tile_key(self.prefix, self.tenant, *t)).collect();
        self.fetch_all(exact).await?;
        let full: Vec<String> = ids
            .iter()
            .filter(|t| matches!(self.cache.get(&tile_key(self.prefix, self.tenant, **t)), Some(None)))
            .map(|t| {
                tile_key(
                    self.prefix,
                    self.tenant,
                    TileId {
                        width: TILE_WIDTH,
                        ..*t
                    },
                )
            })
            .collect();
        self.fetch_all(full).await
    }

    /// A tile's bytes: the exact width asked, or a wider (full) version of it.
    async fn tile(&mut self, t: TileId) -> Result<Option<bytes::Bytes>, String> {
        if let Some(b) = self.get(tile_key(self.prefix, self.tenant, t)).await? {
            return Ok(Some(b));
        }
        let full = TileId { width: TILE_WIDTH, ..t };
        self.get(tile_key(self.prefix, self.tenant, full)).await
    }

    /// The hashes of `nodes` in the tree of `size` leaves.
    async fn hashes(&mut self, size: u64, nodes: &[NodeId]) -> Result<Result<Vec<Hash>, String>, String> {
        let ids = match tiles_for_nodes(size, nodes) {
            Ok(ids) => ids,
            Err(e) => return Ok(Err(e.to_string())),
        };
        self.prefetch(&ids).await?;
        let mut data = Vec::new();
        for t in &ids {
            match self.tile(*t).await? {
                Some(b) => data.push(b),
                None => return Ok(Err(format!("tile {} is missing from the bucket", t.path()))),
            }
        }
        let pairs: Vec<(TileId, &[u8])> = ids.iter().copied().zip(data.iter().map(|b| &b[..])).collect();
        Ok(hashes_from_tiles(size, nodes, &pairs).map_err(|e| e.to_string()))
    }

    async fn root_at(&mut self, size: u64) -> Result<Result<Hash, String>, String> {
        let plan = ProofPlan::root(size);
        Ok(match self.hashes(size, plan.nodes()).await? {
            Ok(h) => plan
                .assemble(&h)
                .map(|mut v| v.pop().unwrap_or_else(stele_tlog::empty_root))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        })
    }
}

/// Tenants that have published checkpoints, from the bucket's `_log/` listing.
async fn published_tenants<S: ArchiveStore>(store: &S, prefix: &str) -> Result<Vec<String>, String> {
    let dir = stele_tlog::publish::tenant_log_prefix(prefix, "");
    let listed = store.list(&dir).await.map_err(|e| format!("listing {dir}: {e}"))?;
    let mut tenants: Vec<String> = listed
        .iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(&dir)?;
            let (tenant, tail) = rest.split_once('/')?;
            tail.starts_with("checkpoints/").then(|| tenant.to_string())
        })
        .collect();
    tenants.sort();
    tenants.dedup();
    Ok(tenants)
}

pub(super) async fn check_logs<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    trust: &Trust,
    scope: &Scope,
    db: Option<&tokio_postgres::Client>,
    leaves: &BTreeMap<String, BTreeMap<u64, Vec<RowSeen>>>,
    report: &mut Report,
) -> Result<(), String> {
    let mut tenants = published_tenants(store, prefix).await?;
    tenants.extend(leaves.keys().cloned());
    tenants.sort();
    tenants.dedup();
    let empty = BTreeMap::new();
    for tenant in tenants.iter().filter(|t| scope.tenant(t)) {
        report.tenants += 1;
        let claims = leaves.get(tenant).unwrap_or(&empty);
        check_tenant(store, prefix, trust, scope, tenant, db, claims, report).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn check_tenant<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    trust: &Trust,
    scope: &Scope,
    tenant: &str,
    db: Option<&tokio_postgres::Client>,
    claims: &BTreeMap<u64, Vec<RowSeen>>,
    report: &mut Report,
) -> Result<(), String> {
    let origin = tenant_origin(&trust.deployment_origin, tenant);
    let fail = |report: &mut Report, what: String| report.fail(Finding::new(what).tenant(tenant));

    // Every published checkpoint, oldest first.
    let dir = format!("{}checkpoints/", stele_tlog::publish::tenant_log_prefix(prefix, tenant));
    let mut keys: Vec<(u64, String)> = store
        .list(&dir)
        .await
        .map_err(|e| format!("listing {dir}: {e}"))?
        .into_iter()
        .filter_map(|o| checkpoint_size(&o.key).map(|s| (s, o.key)))
        .collect();
    keys.sort();
    let mut checkpoints: Vec<SignedCheckpoint> = Vec::new();
    for (size, key) in &keys {
        let Some(body) = store.get(key).await.map_err(|e| format!("reading {key}: {e}"))? else {
            continue;
        };
        match open_checkpoint(&body, &trust.verifiers, &origin) {
            Ok(cp) if cp.checkpoint.size == *size => checkpoints.push(cp),
            Ok(cp) => report.fail(
                Finding::new(format!(
                    "the checkpoint stored as size {size} is for size {}",
                    cp.checkpoint.size
                ))
                .tenant(tenant)
                .file(key),
            ),
            Err(e) => report.fail(
                Finding::new(format!("checkpoint does not verify: {e}"))
                    .tenant(tenant)
                    .file(key),
            ),
        }
    }
    report.checkpoints += checkpoints.len() as u64;
    let newest = checkpoints.last().map(|c| (c.checkpoint.size, c.checkpoint.root));

    // The `checkpoint` object is the newest one.
    let latest_key = latest_checkpoint_key(prefix, tenant);
    match (store.get(&latest_key).await.map_err(|e| format!("reading {latest_key}: {e}"))?, newest) {
        (Some(body), Some((size, root))) => match open_checkpoint(&body, &trust.verifiers, &origin) {
            Ok(cp) if cp.checkpoint.size == size && cp.checkpoint.root == root => {}
            Ok(cp) if cp.checkpoint.size < size => report.fail(
                Finding::new(format!(
                    "the latest checkpoint has size {}, older than checkpoint {size}: an older checkpoint was re-published as the latest (rollback)",
                    cp.checkpoint.size
                ))
                .tenant(tenant)
                .file(&latest_key),
            ),
            Ok(cp) => report.fail(
                Finding::new(format!(
                    "the latest checkpoint (size {}, root {}) is not in the checkpoint history (newest: size {size}, root {root})",
                    cp.checkpoint.size, cp.checkpoint.root
                ))
                .tenant(tenant)
                .file(&latest_key),
            ),
            Err(e) => report.fail(
                Finding::new(format!("the latest checkpoint does not verify: {e}"))
                    .tenant(tenant)
                    .file(&latest_key),
            ),
        },
        (None, Some(_)) => fail(report, "the latest checkpoint object is missing".into()),
        (_, None) => {
            if claims.keys().next().is_some() && !keys.is_empty() {
                fail(report, "no published checkpoint verifies".into());
            }
        }
    }

    // One tree: every checkpoint's root is the root the tiles give for its size.
    let mut tiles = Tiles {
        store,
        prefix,
        tenant,
        cache: HashMap::new(),
    };
    for cp in &checkpoints {
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        match tiles.root_at(size).await? {
            Ok(r) if r == root => {}
            Ok(r) => fail(
                report,
                format!("checkpoint {size} has root {root}, the log's tiles give {r}: the log was forked or its tiles rewritten"),
            ),
            Err(e) => fail(report, format!("checkpoint {size}: cannot rebuild its root from the tiles: {e}")),
        }
    }
    let covered = newest.map_or(0, |n| n.0);

    // Every row's leaf is the log's leaf at its index.
    for (index, rows) in claims.range(..covered) {
        if rows.len() > 1 {
            let places: Vec<String> = rows.iter().map(|r| format!("{} ({})", r.event_id, r.place)).collect();
            fail(
                report,
                format!("leaf {index} is claimed by more than one row: {}", places.join(", ")),
            );
        }
        let leaf = match tiles.hashes(covered, &[NodeId::leaf(*index)]).await? {
            Ok(h) => h[0],
            Err(e) => {
                fail(report, format!("leaf {index}: {e}"));
                continue;
            }
        };
        for r in rows {
            if r.leaf_hash == leaf {
                report.leaves_checked += 1;
            } else {
                report.fail(
                    Finding::new(format!(
                        "the row is not leaf {index} of the log: its (tenant, event_hash, received_at) give leaf hash {}, the signed log holds {leaf} (the row was changed, forged or moved)",
                        r.leaf_hash
                    ))
                    .tenant(tenant)
                    .file(&r.place)
                    .event(r.event_id.to_string()),
                );
            }
        }
    }

    // Every leaf a checkpoint covers has its row.
    let missing: Vec<u64> = if scope.event.is_some() {
        Vec::new() // one event: its own leaf only
    } else {
        (0..covered).filter(|i| !claims.contains_key(i)).collect()
    };
    if db.is_some() {
        for range in ranges(&missing) {
            fail(
                report,
                format!(
                    "leaves {}..={} are signed in checkpoint {covered} but no row (archived or hot) holds them: rows were deleted",
                    range.0, range.1
                ),
            );
        }
    } else {
        report.leaves_unread += missing.len() as u64;
    }

    // The database still holds the signed log.
    if let (Some(client), Some((size, root))) = (db, newest) {
        let log = stele_store::PgLog::new(client);
        match log.head(tenant).await.map_err(|e| e.to_string())? {
            None => fail(report, format!("the database has no log for this tenant, checkpoint {size} was signed")),
            Some(h) if h.size < size => fail(
                report,
                format!(
                    "the database's log has {} leaves, checkpoint {size} was signed: the newest events were removed from the tail",
                    h.size
                ),
            ),
            Some(_) => match log.root_at(tenant, size).await {
                Ok(r) if r == root => {}
                Ok(r) => fail(
                    report,
                    format!("the database's log gives root {r} at size {size}, the checkpoint signed {root}: the log was rewritten"),
                ),
                Err(e) => fail(report, format!("the database's log cannot rebuild size {size}: {e}")),
            },
        }
    }
    Ok(())
}

/// Runs of consecutive numbers, as (first, last).
fn ranges(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(last) if last.1 + 1 == i => last.1 = i,
            _ => out.push((i, i)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_group_consecutive_leaves() {
        assert_eq!(super::ranges(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
        assert!(super::ranges(&[]).is_empty());
    }
}
