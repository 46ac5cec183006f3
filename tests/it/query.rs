//! The query function (functions/query) against a real PostgreSQL: events stored by
//! the batch-writer's store, checkpoints signed as the checkpointer signs them, the
//! handler driven in-process with API Gateway requests, and every proof it serves
//! checked offline by stele-client.

use chrono::NaiveDate;
use lambda_http::http::{HeaderMap, Method};
use lambda_http::{Body, Response};
use serde_json::Value;
use stele_client::{
    verify_consistency_proof, verify_event_proof, ConsistencyProof, EventProof, ProofSubject, TrustedLog,
};
use stele_core::SealedEvent;
use stele_query::{lambda_http, Query, QueryConfig};
use stele_store::{partitions, EventStore, PgEventStore, PgLog, StoredEvent};
use stele_tlog::{Checkpoint, Ed25519Signer};
use uuid::Uuid;

use crate::support::TestEnv;

const DEPLOYMENT: &str = "audit.test/it";

async fn get(query: &Query, path: &str, tenant: Option<&str>) -> Response<Body> {
    let req =
        stele::local::api_gateway::api_gateway_request(&Method::GET, path, &HeaderMap::new(), b"", "tenant_id", tenant)
            .unwrap();
    query.handle(req).await
}

fn json(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).unwrap()
}

fn subject(e: &SealedEvent) -> ProofSubject {
    ProofSubject {
        tenant_id: e.event.tenant_id.clone(),
        event_hash: e.hash.0,
        received_at: e.event.received_at,
    }
}

/// Signs and records the checkpoint of `tenant`'s log at `size`, as the checkpointer does.
async fn checkpoint(client: &tokio_postgres::Client, signer: &Ed25519Signer, tenant: &str, size: u64) {
    let root = PgLog::new(client).root_at(tenant, size).await.unwrap();
    let origin = stele_tlog::publish::tenant_origin(DEPLOYMENT, tenant);
    let note = Checkpoint::new(&origin, size, root).sign(signer).await.unwrap();
    client
        .execute(
            "INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ($1, $2, $3, $4)",
            &[&tenant, &(size as i64), &root.0.to_vec(), &note],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn proofs_served_for_a_tenant_verify_offline_and_never_reveal_another_tenant() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;
    partitions::ensure_days(&client, &[NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()])
        .await
        .unwrap();
    let pool = stele_store::pool(&db.store_config()).unwrap();
    let events: Vec<SealedEvent> = (0..25)
        .map(|i| {
            let tenant = if i < 20 { "acme" } else { "globex" };
            crate::batch_writer::event_with_id(tenant, Uuid::new_v4(), "2026-03-01T10:00:00Z", "user.login")
        })
        .collect();
    let stored: Vec<StoredEvent> = events
        .iter()
        .map(|e| StoredEvent {
            event: e.event.clone(),
            hash: e.hash,
            kinesis_shard: None,
            kinesis_seq: None,
        })
        .collect();
    let outcome = PgEventStore::new(pool.clone())
        .insert_batch(&stored, &[])
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 25);
    let query = Query::new(QueryConfig::default(), pool.clone());
    let signer = Ed25519Signer::from_seed("stele.it", &[5; 32]).unwrap();
    let trusted = TrustedLog::for_tenant(&signer.verifier().vkey(), DEPLOYMENT, "acme").unwrap();
    let (first, last) = (&events[0], &events[19]);
    let proof_path = |e: &SealedEvent| format!("/v1/events/{}/proof", e.event.event_id);

    // Stored and logged, but no checkpoint yet: 409 with Retry-After.
    let resp = get(&query, &proof_path(first), Some("acme")).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.headers()["retry-after"], "60");
    let message = json(&resp)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("no signed checkpoint covers it yet"), "{message}");
    assert_eq!(get(&query, "/v1/log/checkpoint", Some("acme")).await.status(), 404);

    // A checkpoint at 10 covers leaves 0..9, not leaf 19.
    checkpoint(&client, &signer, "acme", 10).await;
    let resp = get(&query, &proof_path(first), Some("acme")).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let proof: EventProof = serde_json::from_slice(resp.body().as_ref()).unwrap();
    let verified = verify_event_proof(&subject(first), &proof, &trusted).unwrap();
    assert_eq!(verified.tree_size, 10);
    assert_eq!(get(&query, &proof_path(last), Some("acme")).await.status(), 409);

    // The newest covering checkpoint is used once there is one.
    checkpoint(&client, &signer, "acme", 20).await;
    for e in [first, last] {
        let resp = get(&query, &proof_path(e), Some("acme")).await;
        let proof: EventProof = serde_json::from_slice(resp.body().as_ref()).unwrap();
        let verified = verify_event_proof(&subject(e), &proof, &trusted).unwrap();
        assert_eq!(verified.tree_size, 20);
        // Another event's receipt does not verify with this proof.
        let other = if e.event.event_id == first.event.event_id {
            last
        } else {
            first
        };
        assert!(verify_event_proof(&subject(other), &proof, &trusted).is_err());
    }

    // Another tenant's event is not found, exactly like an unknown id.
    let globex = &events[20];
    let foreign = get(&query, &proof_path(globex), Some("acme")).await;
    let unknown_id = Uuid::new_v4();
    let unknown = get(&query, &format!("/v1/events/{unknown_id}/proof"), Some("acme")).await;
    assert_eq!((foreign.status().as_u16(), unknown.status().as_u16()), (404, 404));
    let message =
        |resp: &Response<Body>, id: &Uuid| json(resp)["message"].as_str().unwrap().replace(&id.to_string(), "ID");
    assert!(message(&foreign, &globex.event.event_id).contains("stele verify"));
    assert_eq!(
        message(&foreign, &globex.event.event_id),
        message(&unknown, &unknown_id)
    );
    // Its owner gets a 409 (globex has no checkpoint), never acme's proof.
    assert_eq!(get(&query, &proof_path(globex), Some("globex")).await.status(), 409);

    // No tenant: 401; a bad id: 400.
    assert_eq!(get(&query, &proof_path(first), None).await.status(), 401);
    assert_eq!(get(&query, "/v1/events/nope/proof", Some("acme")).await.status(), 400);

    // The latest signed checkpoint, verbatim.
    let resp = get(&query, "/v1/log/checkpoint", Some("acme")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let note = std::str::from_utf8(resp.body().as_ref()).unwrap();
    let opened = stele_tlog::open_checkpoint(
        note.as_bytes(),
        &stele_tlog::Verifiers::from_vkeys([signer.verifier().vkey().as_str()]).unwrap(),
        trusted.origin(),
    )
    .unwrap();
    assert_eq!(opened.checkpoint.size, 20);

    // Consistency between the two checkpoints (explicit and latest), and its refusals.
    for path in ["/v1/log/consistency?from=10&to=20", "/v1/log/consistency?from=10"] {
        let resp = get(&query, path, Some("acme")).await;
        assert_eq!(resp.status(), 200, "{path}");
        let proof: ConsistencyProof = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(verify_consistency_proof(&proof, &trusted).unwrap(), (10, 20));
    }
    let same = get(&query, "/v1/log/consistency?from=20&to=20", Some("acme")).await;
    let proof: ConsistencyProof = serde_json::from_slice(same.body().as_ref()).unwrap();
    assert_eq!(verify_consistency_proof(&proof, &trusted).unwrap(), (20, 20));
    for (path, status) in [
        ("/v1/log/consistency?from=7", 404),
        ("/v1/log/consistency?from=10&to=15", 404),
        ("/v1/log/consistency?from=20&to=10", 400),
        ("/v1/log/consistency?from=0", 400),
        ("/v1/log/consistency", 400),
    ] {
        assert_eq!(get(&query, path, Some("acme")).await.status(), status, "{path}");
    }
    // globex has no checkpoints: acme's sizes are not found there.
    assert_eq!(
        get(&query, "/v1/log/consistency?from=10", Some("globex"))
            .await
            .status(),
        404
    );
}

/// Inclusion proof latency for a tenant with 10 million leaves (issue 16: p99 < 20 ms).
/// The tiles and head are built directly (no event rows needed), then 1000 proofs of
/// random leaves are read through `PgLog` and verified. Run with
/// `cargo nextest run -p stele --test it query::inclusion_proof_latency --run-ignored only --no-capture`
/// (set `STELE_BENCH_LEAVES` for another size). Numbers: docs/BENCHMARKS.md.
#[tokio::test]
#[ignore = "benchmark: builds a 10M-leaf log (about 320 MB of tiles)"]
async fn inclusion_proof_latency_for_10_million_leaves() {
    use stele_tlog::tile::tile_appends;
    use stele_tlog::{leaf_hash, Frontier};
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;

    let leaves: u64 = std::env::var("STELE_BENCH_LEAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;
    let tenant = "big";
    let started = std::time::Instant::now();
    let mut frontier = Frontier::new();
    // Tiles are appended in order; a tile is written once complete (or at the end).
    let mut open: std::collections::BTreeMap<(u8, u64), Vec<u8>> = Default::default();
    let sink = client
        .copy_in("COPY tlog_tiles (tenant_id, level, idx, hashes) FROM STDIN BINARY")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT2, Type::INT8, Type::BYTEA]);
    let mut writer = std::pin::pin!(writer);
    let mut leaf_hashes = Vec::new();
    for i in 0..leaves {
        let leaf = leaf_hash(&i.to_be_bytes());
        if i % 100_003 == 0 {
            leaf_hashes.push((i, leaf));
        }
        let nodes = frontier.append(leaf).unwrap();
        for a in tile_appends(&nodes) {
            let data = open.entry((a.level, a.index)).or_default();
            assert_eq!(data.len(), usize::from(a.offset) * 32);
            data.extend_from_slice(&a.data);
            if data.len() == 8192 {
                let data = open.remove(&(a.level, a.index)).unwrap();
                writer
                    .as_mut()
                    .write(&[&tenant, &i16::from(a.level), &(a.index as i64), &data])
                    .await
                    .unwrap();
            }
        }
    }
    for ((level, idx), data) in std::mem::take(&mut open) {
        writer
            .as_mut()
            .write(&[&tenant, &i16::from(level), &(idx as i64), &data])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    let frontier_bytes: Vec<u8> = frontier.hashes().iter().flat_map(|h| h.0).collect();
    client
        .execute(
            "INSERT INTO tlog_heads (tenant_id, size, root, frontier) VALUES ($1, $2, $3, $4)",
            &[&tenant, &(leaves as i64), &frontier.root().0.to_vec(), &frontier_bytes],
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE tlog_tiles").await.unwrap();
    let built = started.elapsed();

    let log = PgLog::new(&client);
    let root = frontier.root();
    // Warm-up, then 1000 timed proofs of random leaves.
    for (i, leaf) in leaf_hashes.iter().take(20) {
        let proof = log.inclusion_proof(tenant, *i, leaves).await.unwrap();
        stele_tlog::verify_inclusion(*i, leaves, leaf, &proof, &root).unwrap();
    }
    let mut times = Vec::with_capacity(1000);
    for n in 0..1000u64 {
        let (i, leaf) = leaf_hashes[(n as usize * 7919) % leaf_hashes.len()];
        let index = (i + n * 2_654_435_761) % leaves;
        let t = std::time::Instant::now();
        let proof = log.inclusion_proof(tenant, index, leaves).await.unwrap();
        times.push(t.elapsed());
        if index == i {
            stele_tlog::verify_inclusion(i, leaves, &leaf, &proof, &root).unwrap();
        }
    }
    // Proofs of the sampled leaves verify against the root (outside the timing).
    for (i, leaf) in &leaf_hashes {
        let proof = log.inclusion_proof(tenant, *i, leaves).await.unwrap();
        stele_tlog::verify_inclusion(*i, leaves, leaf, &proof, &root).unwrap();
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let tiles: i64 = client
        .query_one("SELECT count(*) FROM tlog_tiles", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "inclusion proofs, {leaves} leaves ({tiles} tiles, built in {built:.1?}): 1000 proofs p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        times[times.len() - 1]
    );
}
