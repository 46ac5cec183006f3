//! The verifiable log in PostgreSQL (crates/store `log`, migration 0005): every event
//! the batch-writer stores is the next leaf of its tenant's log, in the same
//! transaction, and the stored tiles prove it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use stele_core::SealedEvent;
use stele_store::{partitions, EventStore, InsertMethod, PgEventStore, PgLog, StoredEvent};
use stele_tlog::{event_leaf_hash, root_of, verify_consistency, verify_inclusion, Hash};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::TestEnv;

fn sealed(tenant: &str, id: Uuid, occurred_at: &str, action: &str) -> SealedEvent {
    crate::batch_writer::event_with_id(tenant, id, occurred_at, action)
}

fn stored(e: &SealedEvent) -> StoredEvent {
    StoredEvent {
        event: e.event.clone(),
        hash: e.hash,
        kinesis_shard: None,
        kinesis_seq: None,
    }
}

/// Each tenant's stored rows in leaf order: (leaf_index, leaf hash rebuilt from the row).
async fn leaves(client: &Client) -> BTreeMap<String, Vec<(i64, Hash)>> {
    let rows = client
        .query(
            "SELECT tenant_id, leaf_index, event_hash, received_at FROM audit_events
             UNION ALL
             SELECT tenant_id, leaf_index, event_hash, received_at FROM late_events
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<(i64, Hash)>> = BTreeMap::new();
    for r in rows {
        let tenant: String = r.get(0);
        let hash: [u8; 32] = r.get::<_, &[u8]>(2).try_into().unwrap();
        let received: chrono::DateTime<chrono::Utc> = r.get(3);
        let leaf = event_leaf_hash(&tenant, &hash, received.timestamp_micros()).unwrap();
        out.entry(tenant).or_default().push((r.get(1), leaf));
    }
    out
}

/// The rows of each tenant are leaves 0..n exactly once, the head's root is the root
/// of those leaves, and proofs read from the tiles verify against it.
async fn assert_log_matches_rows(client: &Client) -> BTreeMap<String, (u64, Hash)> {
    let log = PgLog::new(client);
    let mut heads = BTreeMap::new();
    for (tenant, rows) in leaves(client).await {
        let indices: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            indices,
            (0..rows.len() as i64).collect::<Vec<_>>(),
            "{tenant}: every row is one leaf, no gap, no repeat"
        );
        let hashes: Vec<Hash> = rows.iter().map(|r| r.1).collect();
        let head = log.head(&tenant).await.unwrap().unwrap();
        assert_eq!(head.size, rows.len() as u64, "{tenant}");
        assert_eq!(
            head.root,
            root_of(&hashes),
            "{tenant}: the head's root is the rows' root"
        );
        for i in (0..head.size).step_by(7) {
            let proof = log.inclusion_proof(&tenant, i, head.size).await.unwrap();
            verify_inclusion(i, head.size, &hashes[i as usize], &proof, &head.root).unwrap();
        }
        for size1 in (1..head.size).step_by(11) {
            let proof = log.consistency_proof(&tenant, size1, head.size).await.unwrap();
            let old_root = log.root_at(&tenant, size1).await.unwrap();
            assert_eq!(old_root, root_of(&hashes[..size1 as usize]));
            verify_consistency(size1, head.size, &proof, &old_root, &head.root).unwrap();
        }
        heads.insert(tenant, (head.size, head.root));
    }
    heads
}

#[tokio::test]
async fn stored_events_are_the_leaves_of_their_tenants_logs_and_only_they() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let archived_day = NaiveDate::from_ymd_opt(2026, 2, 20).unwrap();
    partitions::ensure_days(&client, &[day]).await.unwrap();

    for method in [InsertMethod::CopyStage, InsertMethod::Unnest] {
        let store = PgEventStore::with_method(stele_store::pool(&db.store_config()).unwrap(), method);
        let mut batch = Vec::new();
        for i in 0..300 {
            let tenant = ["acme", "globex", "initech"][i % 3];
            batch.push(sealed(tenant, Uuid::new_v4(), "2026-03-01T10:00:00Z", "user.login"));
        }
        let late = sealed("acme", Uuid::new_v4(), "2026-02-20T10:00:00Z", "user.logout");
        let conflicting = sealed("acme", batch[3].event.event_id, "2026-03-01T10:00:00Z", "user.logout");
        let mut events: Vec<StoredEvent> = batch.iter().map(stored).collect();
        events.push(stored(&late));
        events.push(stored(&batch[0])); // repeated within the batch: a duplicate
        let outcome = store.insert_batch(&events, &[archived_day]).await.unwrap();
        assert_eq!(
            (outcome.inserted, outcome.late, outcome.duplicates),
            (301, 1, 1),
            "{method:?}"
        );

        // A redelivery and a conflict append nothing.
        let again: Vec<StoredEvent> = vec![stored(&batch[1]), stored(&conflicting)];
        let outcome = store.insert_batch(&again, &[archived_day]).await.unwrap();
        assert_eq!(
            (outcome.inserted, outcome.duplicates, outcome.conflicts.len()),
            (0, 1, 1),
            "{method:?}"
        );
        let heads = assert_log_matches_rows(&client).await;
        assert!(heads["acme"].0 >= 101, "{heads:?}");
    }
}

/// Writers carrying the same tenants on many connections at once (a hot tenant spans
/// shards): each tenant's leaves stay one sequence, and nobody deadlocks.
#[tokio::test]
async fn concurrent_writers_of_the_same_tenants_append_one_after_the_other() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;
    partitions::ensure_days(&client, &[NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()])
        .await
        .unwrap();
    let pool = stele_store::pool(&db.store_config()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let store = PgEventStore::new(pool.clone());
        tasks.push(tokio::spawn(async move {
            for _round in 0..10usize {
                // Tenants in a different order per writer: locks are taken sorted anyway.
                let tenants = if w % 2 == 0 {
                    ["hot", "warm", "cold"]
                } else {
                    ["cold", "warm", "hot"]
                };
                let events: Vec<StoredEvent> = (0..30)
                    .map(|i| {
                        let e = sealed(tenants[i % 3], Uuid::new_v4(), "2026-03-01T11:00:00Z", "user.login");
                        stored(&e)
                    })
                    .collect();
                let outcome = store.insert_batch(&events, &[]).await.unwrap();
                assert_eq!(outcome.inserted, 30);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(120), t)
            .await
            .expect("no writer is stuck")
            .unwrap();
    }
    let heads = assert_log_matches_rows(&client).await;
    assert_eq!(heads.values().map(|h| h.0).sum::<u64>(), 8 * 10 * 30);
}
