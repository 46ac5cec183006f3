//! `stele verify`: proves, offline, that the archive and (optionally) the hot store
//! hold exactly what the signed log says, and reports every place where they do not.
//!
//! From the bucket (and the verifier key), it checks:
//! - every published checkpoint of every tenant: its signature, its origin, that
//!   sizes only grow, that the `checkpoint` object is the newest one, and that every
//!   checkpoint's root is the root the published tiles give for its size (all of
//!   them are then one append-only tree: no fork, no rollback);
//! - every manifest: the `supersedes` and `previous_manifest` links (by SHA-256),
//!   the day's objects are exactly its files, each file's SHA-256 and row count;
//! - every archived row: its content re-hashed against its `event_hash`, the
//!   tenant's Merkle root in the manifest, and its leaf against the log's tiles;
//! - with `--database-url`: every hot row the same way, that the database's log head
//!   still contains the newest checkpoint, and that every leaf a checkpoint covers
//!   has its row (archived or hot): a deleted or truncated row is found.
//!
//! What is proven, against whom, and what is not: docs/VERIFY.md.

pub mod cli;
mod log;
mod report;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use stele_archiver::manifest::Manifest;
use stele_archiver::merkle::MerkleBuilder;
use stele_archiver::ArchiveStore;
use stele_store::CheckedRow;

pub use report::{Finding, Report};

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tenant: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub event: Option<uuid::Uuid>,
    /// Accept rows without a leaf (stored before the log existed) instead of failing them.
    pub allow_unlogged: bool,
}

impl Scope {
    fn tenant(&self, t: &str) -> bool {
        self.tenant.as_deref().is_none_or(|x| x == t)
    }
    fn day(&self, d: NaiveDate) -> bool {
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t)
    }
}

/// Where a row was read: archived file or hot table.
#[derive(Debug, Clone)]
pub(crate) struct RowSeen {
    pub leaf_hash: stele_tlog::Hash,
    pub event_id: uuid::Uuid,
    pub place: String,
}

/// The trusted inputs: the verifier key(s) and the deployment's origin.
pub struct Trust {
    pub verifiers: stele_tlog::Verifiers,
    pub deployment_origin: String,
}

/// Runs every check within `scope`; failures are findings in the report, errors
/// are reserved for not being able to read at all.
pub async fn verify<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    trust: &Trust,
    scope: &Scope,
    db: Option<&tokio_postgres::Client>,
    progress: &dyn Fn(&str),
) -> Result<Report, String> {
    let mut report = Report::default();
    // tenant -> leaf index -> the row(s) that claim it
    let mut leaves: BTreeMap<String, BTreeMap<u64, Vec<RowSeen>>> = BTreeMap::new();

    progress("manifests");
    let manifests = read_manifests(store, prefix, scope, &mut report).await?;
    for (day, manifest) in &manifests {
        check_day(
            store,
            prefix,
            trust,
            *day,
            manifest,
            scope,
            &mut report,
            &mut leaves,
            progress,
        )
        .await?;
    }
    if let Some(client) = db {
        progress("hot rows");
        hot_rows(client, scope, &mut report, &mut leaves).await?;
    }
    progress("log");
    log::check_logs(store, prefix, trust, scope, db, &leaves, &mut report).await?;
    if let Some(event) = scope.event {
        if !leaves
            .values()
            .flat_map(|l| l.values().flatten())
            .any(|r| r.event_id == event)
        {
            report.fail(
                Finding::new("no stored row (archived, or hot with --database) has this event id")
                    .event(event.to_string()),
            );
        }
    }
    Ok(report)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Every manifest version, the links between them checked; returns the version in
/// force per day (the newest), within scope.
async fn read_manifests<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    scope: &Scope,
    report: &mut Report,
) -> Result<BTreeMap<NaiveDate, Manifest>, String> {
    let dir = if prefix.is_empty() {
        "_manifests/".to_string()
    } else {
        format!("{prefix}/_manifests/")
    };
    let listed = store.list(&dir).await.map_err(|e| format!("listing {dir}: {e}"))?;
    let mut bytes_of: BTreeMap<String, bytes::Bytes> = BTreeMap::new();
    let mut by_day: BTreeMap<NaiveDate, Vec<(u32, String, Manifest)>> = BTreeMap::new();
    for o in listed {
        let Some(body) = store.get(&o.key).await.map_err(|e| format!("reading {}: {e}", o.key))? else {
            continue;
        };
        let manifest: Manifest = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                report.fail(Finding::new(format!("manifest does not parse: {e}")).file(&o.key));
                continue;
            }
        };
        bytes_of.insert(o.key.clone(), body);
        let Ok(day) = NaiveDate::parse_from_str(&manifest.dt, "%Y-%m-%d") else {
            report.fail(Finding::new(format!("manifest dt {:?} is not a date", manifest.dt)).file(&o.key));
            continue;
        };
        by_day.entry(day).or_default().push((manifest.version, o.key, manifest));
    }
    let mut in_force = BTreeMap::new();
    for (day, mut versions) in by_day {
        versions.sort_by_key(|v| v.0);
        for (_, key, m) in &versions {
            for (what, link) in [
                ("previous_manifest", &m.previous_manifest),
                ("supersedes", &m.supersedes),
            ] {
                let Some(link) = link else { continue };
                match bytes_of.get(&link.key) {
                    None => report.fail(
                        Finding::new(format!("{what} {} is missing: the manifest chain has a gap", link.key))
                            .day(day)
                            .file(key),
                    ),
                    Some(b) if sha256_hex(b) != link.sha256 => report.fail(
                        Finding::new(format!(
                            "{what} {} has SHA-256 {}, this manifest recorded {}: it was replaced",
                            link.key,
                            sha256_hex(b),
                            link.sha256
                        ))
                        .day(day)
                        .file(key),
                    ),
                    Some(_) => {}
                }
            }
            report.manifests += 1;
        }
        if scope.day(day) {
            if let Some((_, _, m)) = versions.pop() {
                in_force.insert(day, m);
            }
        }
    }
    Ok(in_force)
}

/// One tenant-day's objects as read: the listing, and per file of the manifest its
/// rows as checked (`None`: the file is missing).
struct TenantDayRead {
    listed: BTreeSet<String>,
    files: Vec<Option<Result<Vec<CheckedRow>, stele_archiver::readback::ReadbackError>>>,
}

/// Lists a tenant-day and checks each file (hash, footer, every row re-hashed) on a
/// blocking thread: the CPU-heavy part, so two tenant-days run at once on two cores
/// while the next files download.
async fn read_tenant_day<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    day: NaiveDate,
    tenant: &stele_archiver::export::TenantArchive,
) -> Result<TenantDayRead, String> {
    let dir = stele_archiver::layout::tenant_day_prefix(prefix, &tenant.tenant_id, day);
    let listed: BTreeSet<String> = store
        .list(&dir)
        .await
        .map_err(|e| format!("listing {dir}: {e}"))?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut files = Vec::with_capacity(tenant.files.len());
    for file in &tenant.files {
        let Some(bytes) = store
            .get(&file.key)
            .await
            .map_err(|e| format!("reading {}: {e}", file.key))?
        else {
            files.push(None);
            continue;
        };
        let (tenant_id, sha256, rows) = (tenant.tenant_id.clone(), file.sha256.clone(), file.rows);
        let checked = tokio::task::spawn_blocking(move || {
            let mut seen: Vec<CheckedRow> = Vec::new();
            stele_archiver::readback::check_file(bytes, &tenant_id, &sha256, rows, |r| seen.push(r.clone()))
                .map(|()| seen)
        })
        .await
        .map_err(|e| format!("checking {}: {e}", file.key))?;
        files.push(Some(checked));
    }
    Ok(TenantDayRead { listed, files })
}

#[allow(clippy::too_many_arguments)]
async fn check_day<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    trust: &Trust,
    day: NaiveDate,
    manifest: &Manifest,
    scope: &Scope,
    report: &mut Report,
    leaves: &mut BTreeMap<String, BTreeMap<u64, Vec<RowSeen>>>,
    progress: &dyn Fn(&str),
) -> Result<(), String> {
    let tenants: Vec<_> = manifest.tenants.iter().filter(|t| scope.tenant(&t.tenant_id)).collect();
    // Read ahead: the next tenant-day is read and checked while this one is recorded.
    let mut reads =
        futures_util::stream::iter(tenants.iter().map(|t| read_tenant_day(store, prefix, day, t))).buffered(2);
    for tenant in &tenants {
        progress(&format!("{day} {}", tenant.tenant_id));
        let Some(read) = reads.next().await else { break };
        let TenantDayRead { listed, files } = read?;
        let named: BTreeSet<String> = tenant.files.iter().map(|f| f.key.clone()).collect();
        for missing in named.difference(&listed) {
            report.fail(
                Finding::new("a file the manifest lists is missing from the bucket")
                    .tenant(&tenant.tenant_id)
                    .day(day)
                    .file(missing),
            );
        }
        for extra in listed.difference(&named) {
            report.fail(
                Finding::new("an object the manifest does not list")
                    .tenant(&tenant.tenant_id)
                    .day(day)
                    .file(extra),
            );
        }
        let mut merkle = MerkleBuilder::new();
        let mut max_leaf: Option<u64> = None;
        for (file, checked) in tenant.files.iter().zip(files) {
            let Some(checked) = checked else {
                continue; // reported above
            };
            report.files += 1;
            let rows = match checked {
                Ok(rows) => rows,
                Err(e) => {
                    let mut f = Finding::new(e.to_string())
                        .tenant(&tenant.tenant_id)
                        .day(day)
                        .file(&file.key);
                    if let stele_archiver::readback::ReadbackError::Row { problem, .. } = &e {
                        f = f.event(problem.event_id());
                    }
                    report.fail(f);
                    continue;
                }
            };
            for r in &rows {
                merkle.push(&r.event_hash.0);
                max_leaf = max_leaf.max(r.leaf_index);
                report.archived_rows += 1;
                claim_leaf(leaves, r, &file.key, scope, report);
            }
        }
        if merkle.leaves() != tenant.rows || merkle.root_hex() != tenant.merkle_root {
            report.fail(
                Finding::new(format!(
                    "the files hold {} rows with Merkle root {}, the manifest says {} rows with root {}: rows were removed, added or reordered",
                    merkle.leaves(),
                    merkle.root_hex(),
                    tenant.rows,
                    tenant.merkle_root
                ))
                .tenant(&tenant.tenant_id)
                .day(day),
            );
        }
        check_anchor(store, prefix, trust, day, tenant, max_leaf, report).await?;
    }
    Ok(())
}

/// The checkpoint a manifest names for a tenant's rows: published where it says,
/// signed, with the size and root the manifest recorded, and covering every leaf
/// the files hold.
async fn check_anchor<S: ArchiveStore>(
    store: &S,
    prefix: &str,
    trust: &Trust,
    day: NaiveDate,
    tenant: &stele_archiver::export::TenantArchive,
    max_leaf: Option<u64>,
    report: &mut Report,
) -> Result<(), String> {
    let t = tenant.tenant_id.as_str();
    let fail = |report: &mut Report, what: String| report.fail(Finding::new(what).tenant(t).day(day));
    if tenant.max_leaf_index.is_some() && tenant.max_leaf_index != max_leaf {
        fail(
            report,
            format!(
                "the manifest says the newest leaf of its rows is {:?}, the files hold {max_leaf:?}",
                tenant.max_leaf_index
            ),
        );
    }
    let Some(cp) = &tenant.checkpoint else {
        if max_leaf.is_some() {
            report.unanchored += 1;
        }
        return Ok(());
    };
    report.anchored += 1;
    if cp.key != stele_tlog::publish::checkpoint_key(prefix, t, cp.size) {
        fail(
            report,
            format!(
                "the manifest names checkpoint {} at {}, not where it is published",
                cp.size, cp.key
            ),
        );
        return Ok(());
    }
    if let Some(max) = max_leaf.filter(|&m| m >= cp.size) {
        fail(
            report,
            format!(
                "the files hold leaf {max}, beyond checkpoint {} that the manifest names",
                cp.size
            ),
        );
    }
    let Some(body) = store
        .get(&cp.key)
        .await
        .map_err(|e| format!("reading {}: {e}", cp.key))?
    else {
        fail(
            report,
            format!("the checkpoint the manifest names ({}) is not in the bucket", cp.key),
        );
        return Ok(());
    };
    let origin = stele_tlog::publish::tenant_origin(&trust.deployment_origin, t);
    match stele_tlog::open_checkpoint(&body, &trust.verifiers, &origin) {
        Ok(signed) if signed.checkpoint.size == cp.size && signed.checkpoint.root.to_base64() == cp.root => {}
        Ok(signed) => fail(
            report,
            format!(
                "the manifest names checkpoint {} with root {}, the signed note at {} says size {} root {}",
                cp.size, cp.root, cp.key, signed.checkpoint.size, signed.checkpoint.root
            ),
        ),
        Err(e) => fail(
            report,
            format!("the checkpoint the manifest names does not verify: {e}"),
        ),
    }
    Ok(())
}

pub(crate) fn claim_leaf(
    leaves: &mut BTreeMap<String, BTreeMap<u64, Vec<RowSeen>>>,
    r: &CheckedRow,
    place: &str,
    scope: &Scope,
    report: &mut Report,
) {
    if scope.event.is_some_and(|e| e != r.event_id) {
        return;
    }
    let Some(index) = r.leaf_index else {
        report.rows_without_leaf += 1;
        if !scope.allow_unlogged {
            report.fail(
                Finding::new("the row has no leaf in the log: forged, or stored before the log existed (--allow-unlogged accepts those)")
                    .tenant(&r.tenant_id)
                    .file(place)
                    .event(r.event_id.to_string()),
            );
        }
        return;
    };
    match r.leaf_hash() {
        Ok(leaf_hash) => leaves
            .entry(r.tenant_id.clone())
            .or_default()
            .entry(index)
            .or_default()
            .push(RowSeen {
                leaf_hash,
                event_id: r.event_id,
                place: place.to_string(),
            }),
        Err(e) => report.fail(
            Finding::new(e.to_string())
                .tenant(&r.tenant_id)
                .event(r.event_id.to_string()),
        ),
    }
}

/// The rows still in PostgreSQL (day partitions and late rows), checked like archived ones.
async fn hot_rows(
    client: &tokio_postgres::Client,
    scope: &Scope,
    report: &mut Report,
    leaves: &mut BTreeMap<String, BTreeMap<u64, Vec<RowSeen>>>,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let cols = stele_store::columns::column_list();
    let source = format!("(SELECT {cols} FROM audit_events UNION ALL SELECT {cols} FROM late_events) AS hot");
    let sql = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        stele_store::archive_db::export_sql_from(&source)
    );
    let copy = client
        .copy_out(&sql)
        .await
        .map_err(|e| format!("reading hot rows: {}", stele_store::pg_message(&e)))?;
    let mut rows = std::pin::pin!(tokio_postgres::binary_copy::BinaryCopyOutStream::new(
        copy,
        stele_store::columns::export_copy_types()
    ));
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| format!("reading hot rows: {}", stele_store::pg_message(&e)))?;
        let tenant: &str = row.try_get(0).map_err(|e| e.to_string())?;
        if !scope.tenant(tenant) {
            continue;
        }
        report.hot_rows += 1;
        match stele_store::check_row(&row).map_err(|e| e.to_string())? {
            Ok(r) => claim_leaf(leaves, &r, "PostgreSQL", scope, report),
            Err(problem) => report.fail(
                Finding::new(format!("PostgreSQL: {problem}"))
                    .tenant(tenant)
                    .event(problem.event_id()),
            ),
        }
    }
    Ok(())
}
