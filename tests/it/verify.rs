//! `stele verify` against real PostgreSQL and LocalStack S3: green on what the
//! pipeline wrote (archived and hot), and each tampering found with its message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use stele::verify::{verify, Report, Scope, Trust};
use stele_archiver::{ArchiveStore, Archiver, ArchiverConfig, S3Store};
use stele_store::{partitions, EventStore, PgEventStore, PgLog, StoredEvent};
use stele_tlog::publish::{checkpoint_key, latest_checkpoint_key, tenant_origin, tile_key, vkey_key};
use stele_tlog::tile::new_tiles;
use stele_tlog::{Checkpoint, Ed25519Signer};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::{self, TestEnv};

const PREFIX: &str = "audit";
const ORIGIN: &str = "verify.test/stele";

/// Signs each tenant's current head and publishes its new tiles and checkpoint, as the
/// checkpointer does (the layout is stele_tlog::publish's).
async fn publish_log(
    client: &Client,
    store: &S3Store,
    signer: &Ed25519Signer,
    last: &mut std::collections::HashMap<String, u64>,
) {
    let log = PgLog::new(client);
    for head in log.heads().await.unwrap() {
        let old = last.get(&head.tenant_id).copied().unwrap_or(0);
        if head.size == old {
            continue;
        }
        let tiles = new_tiles(old, head.size);
        let data = log.tiles(&head.tenant_id, &tiles).await.unwrap();
        for (t, d) in tiles.iter().zip(data) {
            let body = d[..usize::from(t.width) * 32].to_vec();
            store
                .put(&tile_key(PREFIX, &head.tenant_id, *t), body.into())
                .await
                .unwrap();
        }
        let note = Checkpoint::new(&tenant_origin(ORIGIN, &head.tenant_id), head.size, head.root)
            .sign(signer)
            .await
            .unwrap();
        store
            .put(
                &checkpoint_key(PREFIX, &head.tenant_id, head.size),
                note.clone().into_bytes().into(),
            )
            .await
            .unwrap();
        store
            .put(
                &latest_checkpoint_key(PREFIX, &head.tenant_id),
                note.clone().into_bytes().into(),
            )
            .await
            .unwrap();
        // Recorded as the checkpointer records it: the archiver names it in manifests.
        client
            .execute(
                "INSERT INTO tlog_checkpoints (tenant_id, size, root, note, published_at) VALUES ($1, $2, $3, $4, now())",
                &[&head.tenant_id, &(head.size as i64), &head.root.0.to_vec(), &note],
            )
            .await
            .unwrap();
        last.insert(head.tenant_id.clone(), head.size);
    }
    store
        .put(&vkey_key(PREFIX), signer.verifier().vkey().into_bytes().into())
        .await
        .unwrap();
}

fn stored(tenant: &str, day: &str) -> StoredEvent {
    let e = crate::batch_writer::event_with_id(tenant, Uuid::new_v4(), &format!("{day}T10:00:00Z"), "user.login");
    StoredEvent {
        event: e.event,
        hash: e.hash,
        kinesis_shard: None,
        kinesis_seq: None,
    }
}

async fn run(store: &S3Store, signer: &Ed25519Signer, client: Option<&Client>) -> Report {
    let trust = Trust {
        verifiers: stele_tlog::Verifiers::from_vkeys([signer.verifier().vkey().as_str()]).unwrap(),
        deployment_origin: ORIGIN.into(),
    };
    verify(store, PREFIX, &trust, &Scope::default(), client, &|_| {})
        .await
        .unwrap()
}

fn assert_finds(report: &Report, needle: &str) {
    assert!(
        report.findings.iter().any(|f| f.to_string().contains(needle)),
        "expected a finding with {needle:?}, got: {:#?}",
        report.findings
    );
}

#[tokio::test]
async fn verify_passes_on_what_the_pipeline_wrote_and_finds_each_tampering() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("verify");
    env.create_bucket(&bucket).await;
    let store = S3Store::new(env.s3().await, bucket.clone());
    let (old_day, hot_day) = ("2026-02-20", "2026-03-01");
    partitions::ensure_days(
        &client,
        &[
            NaiveDate::from_ymd_opt(2026, 2, 20).unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        ],
    )
    .await
    .unwrap();
    let writer = PgEventStore::new(stele_store::pool(&db.store_config()).unwrap());
    let signer = Ed25519Signer::generate(ORIGIN).unwrap();
    let mut published = std::collections::HashMap::new();
    for round in 0..3 {
        let events: Vec<StoredEvent> = (0..40)
            .map(|i| {
                stored(
                    ["acme", "globex"][i % 2],
                    if (round + i) % 3 == 0 { hot_day } else { old_day },
                )
            })
            .collect();
        writer.insert_batch(&events, &[]).await.unwrap();
        publish_log(&client, &store, &signer, &mut published).await;
    }
    // Archive the old day (retention puts 2026-02-20 out, 2026-03-01 in).
    let mut config = ArchiverConfig::new(bucket.clone());
    config.prefix = PREFIX.into();
    config.retention = Utc::now()
        .date_naive()
        .signed_duration_since(NaiveDate::from_ymd_opt(2026, 2, 25).unwrap());
    let archiver = Archiver::with_postgres(
        Arc::new(S3Store::new(env.s3().await, bucket.clone())),
        db.store_config(),
        config,
    );
    let report = archiver
        .run(Utc::now(), Instant::now() + Duration::from_secs(600))
        .await;
    assert_eq!(report.archived.len(), 1, "{report:?}");

    let ok = run(&store, &signer, Some(&client)).await;
    assert!(ok.ok(), "{:#?}", ok.findings);
    assert_eq!(ok.archived_rows + ok.hot_rows, 120, "{}", ok.summary());
    assert!(ok.archived_rows > 0 && ok.hot_rows > 0, "{}", ok.summary());
    assert_eq!(ok.leaves_checked, 120);
    assert_eq!(ok.checkpoints, 6);
    assert_eq!((ok.anchored, ok.unanchored), (2, 0), "{}", ok.summary());
    let offline = run(&store, &signer, None).await;
    assert!(offline.ok(), "{:#?}", offline.findings);
    assert_eq!(offline.leaves_unread, ok.hot_rows, "hot leaves are not read offline");

    // A note signed with another key.
    let other = Ed25519Signer::generate(ORIGIN).unwrap();
    let forged = Checkpoint::new(
        &tenant_origin(ORIGIN, "acme"),
        60,
        PgLog::new(&client).root_at("acme", 60).await.unwrap(),
    )
    .sign(&other)
    .await
    .unwrap();
    let latest = latest_checkpoint_key(PREFIX, "acme");
    let genuine = store.get(&latest).await.unwrap().unwrap();
    store.put(&latest, forged.into_bytes().into()).await.unwrap();
    assert_finds(
        &run(&store, &signer, None).await,
        "the latest checkpoint does not verify",
    );
    // An older checkpoint re-published as the latest.
    let older = store.get(&checkpoint_key(PREFIX, "acme", 20)).await.unwrap().unwrap();
    store.put(&latest, older).await.unwrap();
    assert_finds(&run(&store, &signer, None).await, "re-published as the latest");
    store.put(&latest, genuine).await.unwrap();

    // A field changed in PostgreSQL with its event_hash recomputed.
    let row = client
        .query_one(
            "SELECT event_id FROM audit_events WHERE tenant_id = 'globex' ORDER BY leaf_index LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let victim: Uuid = row.get(0);
    let original = client
        .query_one(
            "SELECT action, event_hash FROM audit_events WHERE event_id = $1",
            &[&victim],
        )
        .await
        .unwrap();
    let (action, hash): (String, Vec<u8>) = (original.get(0), original.get(1));
    let mut changed =
        crate::batch_writer::event_with_id("globex", victim, &format!("{hot_day}T10:00:00Z"), "user.logout");
    changed.event.received_at = client
        .query_one("SELECT received_at FROM audit_events WHERE event_id = $1", &[&victim])
        .await
        .unwrap()
        .get(0);
    let forged_hash = changed.event.compute_hash().0.to_vec();
    client
        .execute(
            "UPDATE audit_events SET action = 'user.logout', event_hash = $2 WHERE event_id = $1",
            &[&victim, &forged_hash],
        )
        .await
        .unwrap();
    let found = run(&store, &signer, Some(&client)).await;
    assert_finds(&found, &format!("event {victim}: the row is not leaf"));
    client
        .execute(
            "UPDATE audit_events SET action = $2, event_hash = $3 WHERE event_id = $1",
            &[&victim, &action, &hash],
        )
        .await
        .unwrap();

    // A hot row deleted.
    client
        .execute("DELETE FROM audit_events WHERE event_id = $1", &[&victim])
        .await
        .unwrap();
    assert_finds(&run(&store, &signer, Some(&client)).await, "rows were deleted");

    // The archive, rewritten by someone who can write to the bucket (not sign): each
    // time the file and the manifest are made consistent again, so only the log can tell.
    let files = support::archive::list_keys(&env.s3().await, &bucket, &format!("{PREFIX}/tenant_id=acme/")).await;
    let file = files[0].clone();
    let manifest_key = format!("{PREFIX}/_manifests/dt={old_day}.json");
    let (file_bytes, manifest_bytes) = (
        store.get(&file).await.unwrap().unwrap(),
        store.get(&manifest_key).await.unwrap().unwrap(),
    );
    let restore = || async {
        store.put(&file, file_bytes.clone()).await.unwrap();
        store.put(&manifest_key, manifest_bytes.clone()).await.unwrap();
    };

    // A field changed in a Parquet file, its event_hash recomputed.
    tamper::rewrite(&store, &file, &manifest_key, true, |rows| {
        rows[0].event.action = "user.logout".into();
    })
    .await;
    assert_finds(&run(&store, &signer, None).await, "the row is not leaf");
    restore().await;

    // A forged row with a valid self-hash: with a leaf it is not, and without one.
    tamper::rewrite(&store, &file, &manifest_key, true, |rows| {
        let mut forged = rows[0].clone();
        forged.event.event_id = Uuid::new_v4();
        rows.push(forged.clone());
        forged.event.event_id = Uuid::new_v4();
        forged.leaf_index = None;
        rows.push(forged);
    })
    .await;
    let found = run(&store, &signer, None).await;
    assert_finds(&found, "is claimed by more than one row");
    assert_finds(&found, "has no leaf in the log");
    restore().await;

    // Two rows reordered (the manifest's hashes and sizes updated, its root kept).
    tamper::rewrite(&store, &file, &manifest_key, false, |rows| rows.swap(0, 1)).await;
    assert_finds(
        &run(&store, &signer, None).await,
        "rows were removed, added or reordered",
    );
    restore().await;

    // An archived row deleted, the file and manifest rewritten to match.
    tamper::rewrite(&store, &file, &manifest_key, true, |rows| {
        rows.remove(0);
    })
    .await;
    let offline = run(&store, &signer, None).await;
    assert!(
        offline.ok(),
        "offline, a missing archived row looks like a hot one: {:#?}",
        offline.findings
    );
    assert!(offline.leaves_unread > ok.hot_rows, "{}", offline.summary());
    assert_finds(&run(&store, &signer, Some(&client)).await, "rows were deleted");
    restore().await;

    // The manifest replaced.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    m["tenants"][0]["rows"] = serde_json::json!(1);
    store
        .put(&manifest_key, serde_json::to_vec(&m).unwrap().into())
        .await
        .unwrap();
    assert_finds(&run(&store, &signer, None).await, "the manifest says 1 rows");
    restore().await;

    // The manifest names an older checkpoint, one that does not cover its rows.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let named = m["tenants"][0]["checkpoint"].clone();
    assert_eq!(
        named["size"], 60,
        "the first checkpoint after the old day's rows: {named}"
    );
    let tenant = m["tenants"][0]["tenant_id"].as_str().unwrap().to_owned();
    let older = PgLog::new(&client).root_at(&tenant, 20).await.unwrap();
    m["tenants"][0]["checkpoint"] = serde_json::json!({
        "size": 20, "root": older.to_base64(), "key": checkpoint_key(PREFIX, &tenant, 20),
    });
    store
        .put(&manifest_key, serde_json::to_vec(&m).unwrap().into())
        .await
        .unwrap();
    assert_finds(
        &run(&store, &signer, None).await,
        "beyond checkpoint 20 that the manifest names",
    );
    restore().await;
    assert!(run(&store, &signer, Some(&client))
        .await
        .findings
        .iter()
        .all(|f| f.what.contains("rows were deleted")));

    // A forked checkpoint: a validly signed one whose root is not the log's.
    let cp20 = checkpoint_key(PREFIX, "acme", 20);
    let genuine20 = store.get(&cp20).await.unwrap().unwrap();
    let fork = Checkpoint::new(&tenant_origin(ORIGIN, "acme"), 20, stele_tlog::leaf_hash(b"fork"))
        .sign(&signer)
        .await
        .unwrap();
    store.put(&cp20, fork.into_bytes().into()).await.unwrap();
    assert_finds(
        &run(&store, &signer, None).await,
        "the log was forked or its tiles rewritten",
    );
    store.put(&cp20, genuine20).await.unwrap();

    // The newest events removed from the tail of the database's log.
    client
        .execute(
            "DELETE FROM audit_events WHERE tenant_id = 'acme' AND leaf_index >= 55",
            &[],
        )
        .await
        .unwrap();
    client
        .execute("UPDATE tlog_heads SET size = 55 WHERE tenant_id = 'acme'", &[])
        .await
        .unwrap();
    assert_finds(
        &run(&store, &signer, Some(&client)).await,
        "the newest events were removed from the tail",
    );

    // A whole archived file deleted.
    store.delete(&file).await.unwrap();
    let found = run(&store, &signer, None).await;
    assert_finds(&found, "a file the manifest lists is missing from the bucket");
    assert_finds(&found, "Merkle root");
}

/// Rewriting archive files as an attacker with write access to the bucket would.
mod tamper {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use sha2::{Digest, Sha256};
    use stele_archiver::merkle::MerkleBuilder;
    use stele_archiver::{ArchiveStore, S3Store};
    use stele_store::RowEvent;

    /// Reads `key`'s rows, lets `change` edit them (each row's event_hash is recomputed
    /// from its content), writes the file back and updates the manifest's size and
    /// SHA-256 of it, and (with `fix_root`) the tenant's row count and root.
    pub async fn rewrite(
        store: &S3Store,
        key: &str,
        manifest_key: &str,
        fix_root: bool,
        change: impl FnOnce(&mut Vec<RowEvent>),
    ) {
        let bytes = store.get(key).await.unwrap().unwrap();
        let mut rows = stele_archiver::readback::read_events(bytes.clone(), "acme").unwrap();
        change(&mut rows);
        let template = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let schema = template.schema();
        // Every column from the rows' events, as the archiver lays them out.
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in schema.fields() {
            let name = field.name().as_str();
            let array: ArrayRef = match name {
                "leaf_index" => Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.leaf_index.map(|i| i as i64)).collect::<Vec<_>>(),
                )),
                "event_hash" => Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| Some(r.event.compute_hash().to_hex()))
                        .collect::<Vec<_>>(),
                )),
                "action" => Arc::new(StringArray::from(
                    rows.iter().map(|r| Some(r.event.action.clone())).collect::<Vec<_>>(),
                )),
                "event_id" => Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| Some(r.event.event_id.to_string()))
                        .collect::<Vec<_>>(),
                )),
                _ => {
                    // Other columns: the original row's value (rows keep their originals'
                    // values by taking them from the row they were copied from, by event time).
                    let col = template.column(template.schema().index_of(name).unwrap()).clone();
                    let idx: Vec<u32> = rows.iter().map(|r| original_position(&template, r) as u32).collect();
                    arrow::compute::take(&col, &arrow::array::UInt32Array::from(idx), None).unwrap()
                }
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let sha = hex::encode(Sha256::digest(&out));
        let size = out.len() as u64;
        store.put(key, out.into()).await.unwrap();

        let mut m: serde_json::Value =
            serde_json::from_slice(&store.get(manifest_key).await.unwrap().unwrap()).unwrap();
        for t in m["tenants"].as_array_mut().unwrap() {
            let mut mine = false;
            for f in t["files"].as_array_mut().unwrap() {
                if f["key"] == key {
                    f["sha256"] = sha.clone().into();
                    f["bytes"] = size.into();
                    f["rows"] = (rows.len() as u64).into();
                    mine = true;
                }
            }
            if mine && fix_root {
                let mut merkle = MerkleBuilder::new();
                for r in &rows {
                    merkle.push(&r.event.compute_hash().0);
                }
                t["rows"] = merkle.leaves().into();
                t["merkle_root"] = merkle.root_hex().into();
            }
        }
        store
            .put(manifest_key, serde_json::to_vec(&m).unwrap().into())
            .await
            .unwrap();
    }

    /// The row of `template` with the same occurred_at as `r` (the copied-from row).
    fn original_position(template: &RecordBatch, r: &RowEvent) -> usize {
        let times = template
            .column(template.schema().index_of("occurred_at").unwrap())
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        let ids = template
            .column(template.schema().index_of("event_id").unwrap())
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let id = r.event.event_id.to_string();
        (0..template.num_rows())
            .find(|&i| ids.value(i) == id)
            .or_else(|| (0..template.num_rows()).find(|&i| times.value(i) == r.event.occurred_at.timestamp_micros()))
            .unwrap()
    }
}
