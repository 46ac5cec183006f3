//! The verifiable log's tables (migration 0005): each tenant's tree head and tiles.
//!
//! The batch-writer appends in its insert transaction ([`crate::insert`]):
//! 1. [`lock_heads`] locks the batch's tenants' heads, in tenant order, so two
//!    writers carrying the same tenant append one after the other and never deadlock;
//! 2. the ids are claimed; [`plan_append`] gives each newly claimed event the next
//!    leaf index of its tenant and computes, in memory, the new heads and the tile
//!    entries that became complete (stele-tlog's [`Frontier`]);
//! 3. the rows (with their `leaf_index`), the heads and the tile appends are written
//!    by one statement, which also checks each tile had exactly the length the
//!    append expected (a lost or doubled append fails the batch, never the log).
//!
//! Readers (proofs, the checkpointer, `stele verify`) use [`PgLog`].

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::GenericClient;
use stele_tlog::tile::{tile_appends, TileId};
use stele_tlog::{event_leaf_hash, Frontier, Hash};
use tokio_postgres::types::Type;

use crate::error::{Error, Result};
use crate::insert::StoredEvent;

/// A tenant's log as of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub tenant_id: String,
    pub size: u64,
    pub root: Hash,
}

fn to_hash(bytes: &[u8]) -> Result<Hash> {
    Hash::from_slice(bytes).map_err(|e| Error::Log(e.to_string()))
}

fn frontier_from(size: i64, bytes: &[u8]) -> Result<Frontier> {
    let hashes = bytes.chunks(32).map(to_hash).collect::<Result<Vec<_>>>()?;
    Frontier::from_hashes(size as u64, hashes).map_err(|e| Error::Log(e.to_string()))
}

/// Creates missing heads and locks every head of `tenants` (sorted, distinct) for the
/// rest of the transaction; returns each tenant's appender state.
pub async fn lock_heads(client: &impl GenericClient, tenants: &[&str]) -> Result<HashMap<String, Frontier>> {
    let rows = client
        .query(
            "INSERT INTO tlog_heads AS h (tenant_id)
             SELECT t FROM unnest($1::text[]) AS t ORDER BY t
             ON CONFLICT (tenant_id) DO UPDATE SET updated_at = h.updated_at
             RETURNING tenant_id, size, frontier",
            &[&tenants],
        )
        .await
        .map_err(Error::query("locking the tenants' log heads"))?;
    rows.iter()
        .map(|r| Ok((r.get::<_, String>(0), frontier_from(r.get(1), r.get(2))?)))
        .collect()
}

/// What a batch adds to the log: a leaf index for each newly stored event, and the
/// heads and tile appends to write, as the statement's array parameters.
#[derive(Debug, Default)]
pub struct LogAppend {
    /// Per position of the batch: its leaf index if its id was newly claimed.
    pub leaf_index: Vec<Option<i64>>,
    pub head_tenant: Vec<String>,
    pub head_size: Vec<i64>,
    pub head_root: Vec<Vec<u8>>,
    pub head_frontier: Vec<Vec<u8>>,
    pub tile_tenant: Vec<String>,
    pub tile_level: Vec<i16>,
    pub tile_idx: Vec<i64>,
    pub tile_data: Vec<Vec<u8>>,
    /// Each tile's length after the append: the statement checks it.
    pub tile_len: Vec<i32>,
}

impl LogAppend {
    /// Leaves appended.
    pub fn leaves(&self) -> u64 {
        self.leaf_index.iter().flatten().count() as u64
    }
}

/// Appends the events at the `fresh` positions to their tenants' logs, in batch
/// order. `heads` are the locked heads ([`lock_heads`]) of every tenant in `events`.
pub fn plan_append(events: &[StoredEvent], fresh: &[bool], mut heads: HashMap<String, Frontier>) -> Result<LogAppend> {
    let mut out = LogAppend {
        leaf_index: vec![None; events.len()],
        ..Default::default()
    };
    // Nodes created per tenant, for the tile appends.
    let mut created: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for (position, s) in events.iter().enumerate() {
        if !fresh[position] {
            continue;
        }
        let tenant = s.event.tenant_id.as_str();
        let frontier = heads
            .get_mut(tenant)
            .ok_or_else(|| Error::Log(format!("no locked log head for tenant {tenant}")))?;
        let leaf = event_leaf_hash(tenant, &s.hash.0, s.event.received_at.timestamp_micros())
            .map_err(|e| Error::Log(e.to_string()))?;
        out.leaf_index[position] = Some(frontier.size() as i64);
        let nodes = frontier.append(leaf).map_err(|e| Error::Log(e.to_string()))?;
        created.entry(tenant).or_default().extend(nodes);
    }
    for (tenant, nodes) in created {
        let frontier = &heads[tenant];
        out.head_tenant.push(tenant.to_string());
        out.head_size.push(frontier.size() as i64);
        out.head_root.push(frontier.root().0.to_vec());
        out.head_frontier
            .push(frontier.hashes().iter().flat_map(|h| h.0).collect());
        for a in tile_appends(&nodes) {
            out.tile_tenant.push(tenant.to_string());
            out.tile_level.push(i16::from(a.level));
            out.tile_idx.push(a.index as i64);
            out.tile_len.push((usize::from(a.offset) * 32 + a.data.len()) as i32);
            out.tile_data.push(a.data);
        }
    }
    Ok(out)
}

/// The CTEs of the insert statement that write a [`LogAppend`], from parameter `$first`
/// on (nine arrays), and the check: `log_mismatches` counts tiles whose length after
/// the append is not what the append expected (must be 0).
pub(crate) fn append_ctes(first: usize) -> (String, String) {
    let p = |i: usize| format!("${}", first + i);
    let ctes = format!(
        "h AS (UPDATE tlog_heads AS h SET size = n.size, root = n.root, frontier = n.frontier, updated_at = now()
                 FROM UNNEST({t}::text[], {s}::int8[], {r}::bytea[], {f}::bytea[]) AS n(tenant_id, size, root, frontier)
                WHERE h.tenant_id = n.tenant_id RETURNING 1),
         tl AS (INSERT INTO tlog_tiles AS x (tenant_id, level, idx, hashes)
                SELECT * FROM UNNEST({tt}::text[], {tl}::int2[], {ti}::int8[], {td}::bytea[])
                ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hashes = x.hashes || EXCLUDED.hashes
                RETURNING tenant_id, level, idx, octet_length(hashes) AS len)",
        t = p(0),
        s = p(1),
        r = p(2),
        f = p(3),
        tt = p(4),
        tl = p(5),
        ti = p(6),
        td = p(7),
    );
    let check = format!(
        "(SELECT count(*) FROM UNNEST({tt}::text[], {tl}::int2[], {ti}::int8[], {tn}::int4[]) AS e(tenant_id, level, idx, len)
           LEFT JOIN tl USING (tenant_id, level, idx) WHERE tl.len IS DISTINCT FROM e.len)
         + abs((SELECT count(*) FROM h) - cardinality({t}::text[]))",
        tt = p(4),
        tl = p(5),
        ti = p(6),
        tn = p(8),
        t = p(0),
    );
    (ctes, check)
}

impl LogAppend {
    /// The nine array parameters of [`append_ctes`], in order.
    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 9] {
        [
            &self.head_tenant,
            &self.head_size,
            &self.head_root,
            &self.head_frontier,
            &self.tile_tenant,
            &self.tile_level,
            &self.tile_idx,
            &self.tile_data,
            &self.tile_len,
        ]
    }
}

/// The leaf hashes at `indices` of `tenant`'s log, from its level-0 tiles (one query);
/// `None` where the log has no such leaf.
pub async fn leaf_hashes(
    client: &tokio_postgres::Client,
    tenant_id: &str,
    indices: &[u64],
) -> Result<Vec<Option<Hash>>> {
    let mut tiles: Vec<i64> = indices.iter().map(|i| (i >> 8) as i64).collect();
    tiles.sort_unstable();
    tiles.dedup();
    let rows = client
        .query(
            "SELECT idx, hashes FROM tlog_tiles WHERE tenant_id = $1 AND level = 0 AND idx = ANY($2)",
            &[&tenant_id, &tiles],
        )
        .await
        .map_err(Error::query("reading the log's leaf tiles"))?;
    let by_idx: HashMap<i64, Vec<u8>> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    indices
        .iter()
        .map(|i| {
            let entry = ((i & 0xff) * 32) as usize;
            by_idx
                .get(&((i >> 8) as i64))
                .and_then(|t| t.get(entry..entry + 32))
                .map(to_hash)
                .transpose()
        })
        .collect()
}

/// Where one stored event sits in its tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub leaf_index: u64,
    pub event_hash: [u8; 32],
    pub received_at_micros: i64,
}

impl LoggedEvent {
    /// Its RFC 6962 leaf hash (stele leaf v1).
    pub fn leaf_hash(&self, tenant_id: &str) -> Result<Hash> {
        event_leaf_hash(tenant_id, &self.event_hash, self.received_at_micros).map_err(|e| Error::Log(e.to_string()))
    }
}

/// Reads the log: heads, tiles and where an event is. Every call is one query.
pub struct PgLog<'a> {
    client: &'a tokio_postgres::Client,
}

impl<'a> PgLog<'a> {
    pub fn new(client: &'a tokio_postgres::Client) -> Self {
        PgLog { client }
    }

    /// A tenant's head, if it has a log.
    pub async fn head(&self, tenant_id: &str) -> Result<Option<LogHead>> {
        let row = self
            .client
            .query_opt("SELECT size, root FROM tlog_heads WHERE tenant_id = $1", &[&tenant_id])
            .await
            .map_err(Error::query("reading a log head"))?;
        row.map(|r| {
            Ok(LogHead {
                tenant_id: tenant_id.to_string(),
                size: r.get::<_, i64>(0) as u64,
                root: to_hash(r.get(1))?,
            })
        })
        .transpose()
    }

    /// Every non-empty head, in tenant order.
    pub async fn heads(&self) -> Result<Vec<LogHead>> {
        let rows = self
            .client
            .query(
                "SELECT tenant_id, size, root FROM tlog_heads WHERE size > 0 ORDER BY tenant_id",
                &[],
            )
            .await
            .map_err(Error::query("reading the log heads"))?;
        rows.iter()
            .map(|r| {
                Ok(LogHead {
                    tenant_id: r.get(0),
                    size: r.get::<_, i64>(1) as u64,
                    root: to_hash(r.get(2))?,
                })
            })
            .collect()
    }

    /// The stored bytes of `tiles` (a tile stored wider than asked is returned whole:
    /// stele-tlog uses only the prefix it needs). A missing tile is an error.
    pub async fn tiles(&self, tenant_id: &str, tiles: &[TileId]) -> Result<Vec<Vec<u8>>> {
        let levels: Vec<i16> = tiles.iter().map(|t| i16::from(t.level)).collect();
        let idxs: Vec<i64> = tiles.iter().map(|t| t.index as i64).collect();
        // Typed parameters: parse, bind and execute in one round trip instead of a
        // prepare round trip first (a proof is this one query; under CPU contention
        // each round trip is a wake-up of both processes, and that was its p99).
        let rows = self
            .client
            .query_typed(
                "SELECT t.level, t.idx, t.hashes
                   FROM UNNEST($2::int2[], $3::int8[]) AS w(level, idx)
                   JOIN tlog_tiles t ON t.tenant_id = $1 AND t.level = w.level AND t.idx = w.idx",
                &[
                    (&tenant_id, Type::TEXT),
                    (&levels, Type::INT2_ARRAY),
                    (&idxs, Type::INT8_ARRAY),
                ],
            )
            .await
            .map_err(Error::query("reading log tiles"))?;
        let mut by_key: HashMap<(i16, i64), Vec<u8>> =
            rows.into_iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
        tiles
            .iter()
            .map(|t| {
                by_key
                    .remove(&(i16::from(t.level), t.index as i64))
                    .ok_or_else(|| Error::Log(format!("tile {} of tenant {tenant_id} is missing", t.path())))
            })
            .collect()
    }

    /// The hashes of `nodes` in the tree of `size` leaves, read from tiles (one query).
    pub async fn hashes(&self, tenant_id: &str, size: u64, nodes: &[stele_tlog::NodeId]) -> Result<Vec<Hash>> {
        let ids = stele_tlog::tile::tiles_for_nodes(size, nodes).map_err(|e| Error::Log(e.to_string()))?;
        let data = self.tiles(tenant_id, &ids).await?;
        let pairs: Vec<(TileId, &[u8])> = ids.iter().copied().zip(data.iter().map(Vec::as_slice)).collect();
        stele_tlog::tile::hashes_from_tiles(size, nodes, &pairs).map_err(|e| Error::Log(e.to_string()))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, tenant_id: &str, index: u64, size: u64) -> Result<Vec<Hash>> {
        let plan = stele_tlog::ProofPlan::inclusion(index, size).map_err(|e| Error::Log(e.to_string()))?;
        self.run(tenant_id, size, &plan).await
    }

    /// The consistency proof from `size1` to `size2`.
    pub async fn consistency_proof(&self, tenant_id: &str, size1: u64, size2: u64) -> Result<Vec<Hash>> {
        let plan = stele_tlog::ProofPlan::consistency(size1, size2).map_err(|e| Error::Log(e.to_string()))?;
        self.run(tenant_id, size2, &plan).await
    }

    /// The root of the tree of `size` leaves (any size the log ever had), from tiles.
    pub async fn root_at(&self, tenant_id: &str, size: u64) -> Result<Hash> {
        let plan = stele_tlog::ProofPlan::root(size);
        let mut v = self.run(tenant_id, size, &plan).await?;
        Ok(v.pop().unwrap_or_else(stele_tlog::empty_root))
    }

    async fn run(&self, tenant_id: &str, size: u64, plan: &stele_tlog::ProofPlan) -> Result<Vec<Hash>> {
        let hashes = self.hashes(tenant_id, size, plan.nodes()).await?;
        plan.assemble(&hashes).map_err(|e| Error::Log(e.to_string()))
    }

    /// The newest signed checkpoint of `tenant_id` whose tree has at least `min_size`
    /// leaves (`min_size` 1: the latest; `leaf_index + 1`: the newest that covers a leaf).
    pub async fn latest_checkpoint(&self, tenant_id: &str, min_size: u64) -> Result<Option<StoredCheckpoint>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints
                      WHERE tenant_id = $1 AND size >= $2 ORDER BY size DESC LIMIT 1"
                ),
                &[&tenant_id, &(min_size as i64)],
            )
            .await
            .map_err(Error::query("reading the latest checkpoint"))?;
        row.map(|r| stored_checkpoint(&r)).transpose()
    }

    /// The oldest signed checkpoint of `tenant_id` that covers leaf `index` (its size
    /// exceeds it): the first signed statement that includes the leaf. Stable once
    /// signed, so a re-exported day names the same one.
    pub async fn first_checkpoint_covering(&self, tenant_id: &str, index: u64) -> Result<Option<StoredCheckpoint>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints
                      WHERE tenant_id = $1 AND size > $2 ORDER BY size LIMIT 1"
                ),
                &[&tenant_id, &(index as i64)],
            )
            .await
            .map_err(Error::query("reading the checkpoint covering a leaf"))?;
        row.map(|r| stored_checkpoint(&r)).transpose()
    }

    /// The signed checkpoint of `tenant_id` at exactly `size` leaves, if one was signed.
    pub async fn checkpoint_at(&self, tenant_id: &str, size: u64) -> Result<Option<StoredCheckpoint>> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints WHERE tenant_id = $1 AND size = $2"),
                &[&tenant_id, &(size as i64)],
            )
            .await
            .map_err(Error::query("reading a checkpoint"))?;
        row.map(|r| stored_checkpoint(&r)).transpose()
    }

    /// Where the stored event `event_id` of `tenant_id` is in the log (hot or late
    /// rows); `None` if it is not stored in PostgreSQL or has no leaf (stored before
    /// the log existed).
    pub async fn find_event(&self, tenant_id: &str, event_id: uuid::Uuid) -> Result<Option<LoggedEvent>> {
        let row = self
            .client
            .query_opt(
                "SELECT leaf_index, event_hash, received_at FROM audit_events
                  WHERE tenant_id = $1 AND event_id = $2 AND leaf_index IS NOT NULL
                 UNION ALL
                 SELECT leaf_index, event_hash, received_at FROM late_events
                  WHERE tenant_id = $1 AND event_id = $2 AND leaf_index IS NOT NULL
                 LIMIT 1",
                &[&tenant_id, &event_id],
            )
            .await
            .map_err(Error::query("looking up an event's leaf"))?;
        row.map(|r| {
            let hash: &[u8] = r.get(1);
            Ok(LoggedEvent {
                leaf_index: r.get::<_, i64>(0) as u64,
                event_hash: hash
                    .try_into()
                    .map_err(|_| Error::Log("stored event_hash is not 32 bytes".into()))?,
                received_at_micros: r.get::<_, chrono::DateTime<chrono::Utc>>(2).timestamp_micros(),
            })
        })
        .transpose()
    }
}

/// A signed checkpoint as recorded in `tlog_checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tenant_id: String,
    pub size: u64,
    pub root: Hash,
    /// The signed note, as published.
    pub note: String,
    pub published: bool,
}

/// What recording a signed checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointInsert {
    /// Recorded.
    Inserted,
    /// A checkpoint of that size was already recorded (by a concurrent or earlier run).
    Exists(StoredCheckpoint),
}

fn stored_checkpoint(r: &tokio_postgres::Row) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        tenant_id: r.get(0),
        size: r.get::<_, i64>(1) as u64,
        root: to_hash(r.get(2))?,
        note: r.get(3),
        published: r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4).is_some(),
    })
}

const CHECKPOINT_COLUMNS: &str = "tenant_id, size, root, note, published_at";

/// The checkpointer's queries on `tlog_checkpoints`.
impl PgLog<'_> {
    /// Each tenant's largest signed checkpoint, in tenant order.
    pub async fn latest_checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT DISTINCT ON (tenant_id) {CHECKPOINT_COLUMNS} FROM tlog_checkpoints
                      ORDER BY tenant_id, size DESC"
                ),
                &[],
            )
            .await
            .map_err(Error::query("reading the latest checkpoints"))?;
        rows.iter().map(stored_checkpoint).collect()
    }

    /// Signed checkpoints not yet published, by tenant and size.
    pub async fn unpublished_checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints WHERE published_at IS NULL
                      ORDER BY tenant_id, size"
                ),
                &[],
            )
            .await
            .map_err(Error::query("reading the unpublished checkpoints"))?;
        rows.iter().map(stored_checkpoint).collect()
    }

    /// The largest checkpoint of `tenant_id` smaller than `size`.
    pub async fn checkpoint_before(&self, tenant_id: &str, size: u64) -> Result<Option<StoredCheckpoint>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints WHERE tenant_id = $1 AND size < $2
                      ORDER BY size DESC LIMIT 1"
                ),
                &[&tenant_id, &(size as i64)],
            )
            .await
            .map_err(Error::query("reading the previous checkpoint"))?;
        row.as_ref().map(stored_checkpoint).transpose()
    }

    /// Records a signed checkpoint. The primary key (tenant, size) makes a second root
    /// for a size impossible: if one is recorded, it is returned instead.
    pub async fn insert_checkpoint(
        &self,
        tenant_id: &str,
        size: u64,
        root: &Hash,
        note: &str,
    ) -> Result<CheckpointInsert> {
        let inserted = self
            .client
            .execute(
                "INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, size) DO NOTHING",
                &[&tenant_id, &(size as i64), &root.0.as_slice(), &note],
            )
            .await
            .map_err(Error::query("recording a checkpoint"))?;
        if inserted == 1 {
            return Ok(CheckpointInsert::Inserted);
        }
        let row = self
            .client
            .query_one(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM tlog_checkpoints WHERE tenant_id = $1 AND size = $2"),
                &[&tenant_id, &(size as i64)],
            )
            .await
            .map_err(Error::query("reading a recorded checkpoint"))?;
        Ok(CheckpointInsert::Exists(stored_checkpoint(&row)?))
    }

    /// Records that a checkpoint is in the bucket.
    pub async fn mark_published(&self, tenant_id: &str, size: u64) -> Result<()> {
        self.client
            .execute(
                "UPDATE tlog_checkpoints SET published_at = now()
                  WHERE tenant_id = $1 AND size = $2 AND published_at IS NULL",
                &[&tenant_id, &(size as i64)],
            )
            .await
            .map_err(Error::query("marking a checkpoint published"))?;
        Ok(())
    }

    /// Takes the checkpointer's session-level advisory lock, if free: one run at a time.
    pub async fn try_lock_checkpointer(&self) -> Result<bool> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext('stele.checkpointer'))", &[])
            .await
            .map_err(Error::query("taking the checkpointer lock"))?;
        Ok(row.get(0))
    }

    /// Releases [`PgLog::try_lock_checkpointer`]'s lock.
    pub async fn unlock_checkpointer(&self) -> Result<()> {
        self.client
            .execute("SELECT pg_advisory_unlock(hashtext('stele.checkpointer'))", &[])
            .await
            .map_err(Error::query("releasing the checkpointer lock"))?;
        Ok(())
    }
}
