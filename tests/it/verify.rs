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
                note.into_bytes().into(),
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

    // A whole archived file deleted.
    let files = support::archive::list_keys(&env.s3().await, &bucket, &format!("{PREFIX}/tenant_id=acme/")).await;
    store.delete(&files[0]).await.unwrap();
    let found = run(&store, &signer, None).await;
    assert_finds(&found, "a file the manifest lists is missing from the bucket");
    assert_finds(&found, "Merkle root");
}
