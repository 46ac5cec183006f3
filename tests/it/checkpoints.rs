//! The checkpointer (functions/checkpointer) against real PostgreSQL and LocalStack:
//! what it publishes is checked as a verifier would, from the bucket alone (the
//! published vkey, the checkpoints, the tiles), against the rows in PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use stele_archiver::S3Store;
use stele_checkpointer::{Checkpointer, LogSigner, RunReport, SignerSource};
use stele_store::{partitions, EventStore, PgEventStore, PgLog, StoredEvent};
use stele_tlog::tile::{MemoryTiles, TileReader};
use stele_tlog::{
    consistency_proof, event_leaf_hash, open_checkpoint, publish, root_at, root_of, verify_consistency, Ed25519Signer,
    Frontier, Hash, TileHashReader, TileId, Verifiers,
};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::archive::{get, list_keys};
use crate::support::{unique_name, TestDb, TestEnv};

const ORIGIN: &str = "audit.example.com/test";
const PREFIX: &str = "audit";

struct Setup {
    db: TestDb,
    client: Client,
    store: PgEventStore,
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// The signing key (C2SP private key text), so a second checkpointer can share it.
    skey: String,
}

async fn setup() -> Setup {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    partitions::ensure_days(&client, &[NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()])
        .await
        .unwrap();
    let store = PgEventStore::new(stele_store::pool(&db.store_config()).unwrap());
    let bucket = unique_name("ckpt");
    env.create_bucket(&bucket).await;
    let skey = Ed25519Signer::generate(ORIGIN).unwrap().skey();
    Setup {
        db,
        client,
        store,
        s3: env.s3().await,
        bucket,
        skey,
    }
}

impl Setup {
    fn checkpointer_for(&self, bucket: &str) -> Checkpointer<S3Store> {
        let signer = LogSigner::File(Ed25519Signer::from_skey(&self.skey).unwrap());
        Checkpointer::new(S3Store::new(self.s3.clone(), bucket), signer, PREFIX, ORIGIN)
    }

    fn checkpointer(&self) -> Checkpointer<S3Store> {
        self.checkpointer_for(&self.bucket)
    }

    /// Stores `n` events per tenant through the batch-writer's store.
    async fn write(&self, per_tenant: &[(&str, usize)]) {
        let mut events = Vec::new();
        for &(tenant, n) in per_tenant {
            for _ in 0..n {
                let e =
                    crate::batch_writer::event_with_id(tenant, Uuid::new_v4(), "2026-03-01T10:00:00Z", "user.login");
                events.push(StoredEvent {
                    event: e.event.clone(),
                    hash: e.hash,
                    kinesis_shard: None,
                    kinesis_seq: None,
                });
            }
        }
        for chunk in events.chunks(500) {
            self.store.insert_batch(chunk, &[]).await.unwrap();
        }
    }

    async fn run(&self) -> RunReport {
        let client = self.db.client().await;
        self.checkpointer().run(&client).await
    }

    async fn keys(&self) -> Vec<String> {
        list_keys(&self.s3, &self.bucket, "").await
    }
}

/// Each tenant's leaves, rebuilt from its rows, in leaf order.
async fn row_leaves(client: &Client) -> BTreeMap<String, Vec<Hash>> {
    let rows = client
        .query(
            "SELECT tenant_id, leaf_index, event_hash, received_at FROM audit_events ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<Hash>> = BTreeMap::new();
    for r in rows {
        let tenant: String = r.get(0);
        let hash: [u8; 32] = r.get::<_, &[u8]>(2).try_into().unwrap();
        let received: chrono::DateTime<chrono::Utc> = r.get(3);
        let leaves = out.entry(tenant.clone()).or_default();
        assert_eq!(r.get::<_, i64>(1), leaves.len() as i64, "{tenant}: leaf order");
        leaves.push(event_leaf_hash(&tenant, &hash, received.timestamp_micros()).unwrap());
    }
    out
}

/// A tenant's tiles as published: every width of every tile.
struct BucketTiles(HashMap<(u8, u64, u16), Vec<u8>>);

impl TileReader for BucketTiles {
    type Error = stele_tlog::Error;
    fn read_tiles(&self, tiles: &[TileId]) -> Result<Vec<Vec<u8>>, Self::Error> {
        tiles
            .iter()
            .map(|t| {
                self.0
                    .get(&(t.level, t.index, t.width))
                    .cloned()
                    .ok_or(stele_tlog::Error::MissingTile(*t))
            })
            .collect()
    }
}

/// Checks what the bucket holds, as a verifier with only the bucket would, against the
/// rows: returns each tenant's published checkpoint sizes.
async fn assert_bucket_proves_the_rows(s: &Setup) -> BTreeMap<String, Vec<u64>> {
    let vkey = String::from_utf8(get(&s.s3, &s.bucket, &publish::vkey_key(PREFIX)).await.to_vec()).unwrap();
    let verifiers = Verifiers::from_vkeys([vkey.trim()]).unwrap();
    let mut sizes = BTreeMap::new();
    for (tenant, leaves) in row_leaves(&s.client).await {
        let origin = publish::tenant_origin(ORIGIN, &tenant);
        let dir = publish::tenant_log_prefix(PREFIX, &tenant);
        let mut tiles = HashMap::new();
        let mut checkpoints = Vec::new();
        for key in list_keys(&s.s3, &s.bucket, &dir).await {
            let body = get(&s.s3, &s.bucket, &key).await.to_vec();
            let rest = &key[dir.len()..];
            if rest.starts_with("tile/") {
                let t = TileId::parse_path(rest).unwrap();
                assert_eq!(
                    body.len(),
                    usize::from(t.width) * 32,
                    "{key}: a tile has its width's hashes"
                );
                tiles.insert((t.level, t.index, t.width), body);
            } else if let Some(size) = publish::checkpoint_size(&key) {
                let cp = open_checkpoint(&body, &verifiers, &origin)
                    .unwrap_or_else(|e| panic!("{key} does not verify with {vkey}: {e}"))
                    .checkpoint;
                assert_eq!(cp.size, size, "{key}");
                checkpoints.push((cp, body));
            } else {
                assert_eq!(rest, "checkpoint", "unexpected object {key}");
            }
        }
        assert!(!checkpoints.is_empty(), "{tenant}: no checkpoint published");
        let tiles = BucketTiles(tiles);
        for (cp, _) in &checkpoints {
            assert_eq!(
                cp.root,
                root_of(&leaves[..cp.size as usize]),
                "{tenant}: checkpoint {} is the root of the first rows",
                cp.size
            );
            let reader = TileHashReader::new(cp.size, &tiles);
            assert_eq!(
                root_at(&reader, cp.size).unwrap(),
                cp.root,
                "{tenant}: the tiles reproduce {}",
                cp.size
            );
        }
        for pair in checkpoints.windows(2) {
            let (a, b) = (&pair[0].0, &pair[1].0);
            let proof = consistency_proof(&TileHashReader::new(b.size, &tiles), a.size, b.size).unwrap();
            verify_consistency(a.size, b.size, &proof, &a.root, &b.root)
                .unwrap_or_else(|e| panic!("{tenant}: {} -> {}: {e}", a.size, b.size));
        }
        let (last, last_body) = checkpoints.last().unwrap();
        assert_eq!(
            last.size,
            leaves.len() as u64,
            "{tenant}: the latest checkpoint covers every row"
        );
        let latest = get(&s.s3, &s.bucket, &publish::latest_checkpoint_key(PREFIX, &tenant)).await;
        assert_eq!(&latest.to_vec(), last_body, "{tenant}: `checkpoint` is the latest");
        sizes.insert(tenant, checkpoints.iter().map(|c| c.0.size).collect());
    }
    sizes
}

async fn checkpoint_rows(client: &Client) -> Vec<(String, i64, bool)> {
    client
        .query(
            "SELECT tenant_id, size, published_at IS NOT NULL FROM tlog_checkpoints ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn checkpoints_are_signed_published_and_verify_from_the_bucket() {
    let s = setup().await;
    // acme spans two full level-0 tiles and a partial one.
    s.write(&[("acme", 600), ("globex", 40), ("initech", 1)]).await;
    let r = s.run().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.signed, r.published), (3, 3), "{r:?}");
    let sizes = assert_bucket_proves_the_rows(&s).await;
    assert_eq!(sizes["acme"], vec![600]);

    s.write(&[("acme", 100), ("globex", 300)]).await;
    let r = s.run().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.signed, r.published), (2, 2), "{r:?}");
    let sizes = assert_bucket_proves_the_rows(&s).await;
    assert_eq!(sizes["acme"], vec![600, 700]);
    assert_eq!(sizes["globex"], vec![40, 340]);
    assert_eq!(sizes["initech"], vec![1]);

    // `stele verify` (bucket, vkey, database) is green on what the checkpointer published.
    let trust = stele::verify::Trust {
        verifiers: Verifiers::from_vkeys([Ed25519Signer::from_skey(&s.skey).unwrap().verifier().vkey().as_str()])
            .unwrap(),
        deployment_origin: ORIGIN.into(),
    };
    let store = S3Store::new(s.s3.clone(), s.bucket.clone());
    let report = stele::verify::verify(
        &store,
        PREFIX,
        &trust,
        &stele::verify::Scope::default(),
        Some(&s.client),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.checkpoints, 5, "{report:?}");
    assert_eq!(report.hot_rows, 1041, "{report:?}");

    // No growth: nothing signed, nothing written.
    let before = s.keys().await;
    let r = s.run().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.signed, r.published, r.tiles), (0, 0, 0), "{r:?}");
    assert_eq!(s.keys().await, before);
    assert!(checkpoint_rows(&s.client).await.iter().all(|c| c.2));
}

/// Rewrites acme's log as an attacker with database access would: leaf 0 replaced and
/// every tile and the head recomputed, so the tiles agree with the head.
async fn rewrite_history(client: &Client, tenant: &str) {
    let mut leaves = row_leaves(client).await.remove(tenant).unwrap();
    leaves[0] = Hash([0xab; 32]);
    let mut frontier = Frontier::new();
    let mut tiles = MemoryTiles::new();
    for leaf in leaves {
        let nodes = frontier.append(leaf).unwrap();
        tiles.apply(&stele_tlog::tile::tile_appends(&nodes)).unwrap();
    }
    let stored = client
        .query("SELECT level, idx FROM tlog_tiles WHERE tenant_id = $1", &[&tenant])
        .await
        .unwrap();
    for r in stored {
        let (level, idx): (i16, i64) = (r.get(0), r.get(1));
        let data = tiles.get(level as u8, idx as u64).unwrap().to_vec();
        client
            .execute(
                "UPDATE tlog_tiles SET hashes = $4 WHERE tenant_id = $1 AND level = $2 AND idx = $3",
                &[&tenant, &level, &idx, &data],
            )
            .await
            .unwrap();
    }
    let frontier_bytes: Vec<u8> = frontier.hashes().iter().flat_map(|h| h.0).collect();
    client
        .execute(
            "UPDATE tlog_heads SET root = $2, frontier = $3 WHERE tenant_id = $1",
            &[&tenant, &frontier.root().0.as_slice(), &frontier_bytes],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rewritten_log_is_refused_and_nothing_is_signed() {
    let s = setup().await;
    s.write(&[("acme", 300), ("globex", 20)]).await;
    assert!(s.run().await.ok());
    let signed_before = checkpoint_rows(&s.client).await;

    // 1. The head's root rewritten: the tiles no longer lead to it.
    s.write(&[("acme", 10), ("globex", 5)]).await;
    let head = PgLog::new(&s.client).head("acme").await.unwrap().unwrap();
    s.client
        .execute(
            "UPDATE tlog_heads SET root = $1 WHERE tenant_id = 'acme'",
            &[&vec![7u8; 32]],
        )
        .await
        .unwrap();
    let keys_before = s.keys().await;
    let r = s.run().await;
    assert!(!r.ok());
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert_eq!(r.refused[0].tenant_id, "acme");
    assert!(r.refused[0].reason.contains("not the root of its tiles"), "{r:?}");
    assert_eq!(r.signed, 1, "globex still gets its checkpoint: {r:?}");
    let rows = checkpoint_rows(&s.client).await;
    assert!(
        !rows.iter().any(|c| c.0 == "acme" && c.1 == 310),
        "nothing signed for acme: {rows:?}"
    );
    let new_keys: Vec<_> = s
        .keys()
        .await
        .into_iter()
        .filter(|k| !keys_before.contains(k))
        .collect();
    assert!(new_keys.iter().all(|k| !k.contains("/_log/acme/")), "{new_keys:?}");
    s.client
        .execute(
            "UPDATE tlog_heads SET root = $1 WHERE tenant_id = 'acme'",
            &[&head.root.0.as_slice()],
        )
        .await
        .unwrap();

    // 2. History rewritten consistently (tiles and head agree): the signed checkpoint
    // is not a prefix of it any more.
    rewrite_history(&s.client, "acme").await;
    let r = s.run().await;
    assert!(!r.ok());
    assert_eq!(r.signed, 0, "{r:?}");
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert!(
        r.refused[0]
            .reason
            .contains("not consistent with the signed checkpoint of size 300"),
        "{r:?}"
    );
    let rows = checkpoint_rows(&s.client).await;
    assert_eq!(
        rows.iter().filter(|c| c.0 == "acme").count(),
        signed_before.iter().filter(|c| c.0 == "acme").count()
    );
    // The bucket still proves the honest history signed so far.
    let vkey = String::from_utf8(get(&s.s3, &s.bucket, &publish::vkey_key(PREFIX)).await.to_vec()).unwrap();
    let latest = get(&s.s3, &s.bucket, &publish::latest_checkpoint_key(PREFIX, "acme")).await;
    let cp = open_checkpoint(
        &latest,
        &Verifiers::from_vkeys([vkey.trim()]).unwrap(),
        &publish::tenant_origin(ORIGIN, "acme"),
    )
    .unwrap();
    assert_eq!(cp.checkpoint.size, 300);
}

#[tokio::test]
async fn a_second_root_for_a_signed_size_is_refused() {
    let s = setup().await;
    s.write(&[("acme", 50)]).await;
    assert!(s.run().await.ok());
    s.write(&[("acme", 5)]).await;
    // A validly signed checkpoint of the head's size with another root: a fork (as a
    // bug signing twice would make it), recorded but not published.
    let signer = Ed25519Signer::from_skey(&s.skey).unwrap();
    let fork = stele_tlog::Checkpoint::new(&publish::tenant_origin(ORIGIN, "acme"), 55, Hash([9; 32]));
    let note = fork.sign(&signer).await.unwrap();
    s.client
        .execute(
            "INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ('acme', 55, $1, $2)",
            &[&vec![9u8; 32], &note],
        )
        .await
        .unwrap();
    // The same size cannot get a second row.
    let dup = s
        .client
        .execute(
            "INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ('acme', 55, $1, 'x')",
            &[&vec![8u8; 32]],
        )
        .await;
    assert!(dup.is_err(), "the primary key refuses a second root for a size");

    let r = s.run().await;
    assert!(!r.ok());
    assert_eq!((r.signed, r.published), (0, 0), "{r:?}");
    assert_eq!(r.refused.len(), 2, "the recorded fork and the head: {r:?}");
    assert!(r.refused.iter().all(|x| x.reason.contains("fork")), "{r:?}");
    let keys = s.keys().await;
    assert!(!keys.contains(&publish::checkpoint_key(PREFIX, "acme", 55)), "{keys:?}");
    let latest = get(&s.s3, &s.bucket, &publish::latest_checkpoint_key(PREFIX, "acme")).await;
    assert!(String::from_utf8_lossy(&latest).contains("\n50\n"));
}

#[tokio::test]
async fn a_checkpoint_signed_but_not_published_is_published_by_the_next_run() {
    let s = setup().await;
    s.write(&[("acme", 270), ("globex", 3)]).await;
    assert!(s.run().await.ok());
    s.write(&[("acme", 30)]).await;

    // The run signs and records, then cannot write to the bucket (as if it crashed there).
    let broken = s.checkpointer_for("no-such-bucket-for-checkpoints");
    let r = broken.run(&s.db.client().await).await;
    assert_eq!(r.signed, 1, "{r:?}");
    assert_eq!(r.published, 0, "{r:?}");
    assert!(r.error.is_some(), "{r:?}");
    assert!(checkpoint_rows(&s.client).await.contains(&("acme".into(), 300, false)));

    let r = s.run().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.signed, r.published), (0, 1), "{r:?}");
    let sizes = assert_bucket_proves_the_rows(&s).await;
    assert_eq!(sizes["acme"], vec![270, 300]);
    assert!(checkpoint_rows(&s.client).await.iter().all(|c| c.2));
}

#[tokio::test]
async fn the_key_file_signer_is_loaded_from_the_configured_file() {
    let dir = std::env::temp_dir().join(unique_name("ckpt-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.skey");
    let key = Ed25519Signer::generate(ORIGIN).unwrap();
    std::fs::write(&path, format!("{}\n", key.skey())).unwrap();
    let kms = || -> aws_sdk_kms::Client { unreachable!("no KMS for a key file") };
    let signer = LogSigner::load(&SignerSource::KeyFile(path.clone()), ORIGIN, kms)
        .await
        .unwrap();
    assert_eq!(signer.vkey(), key.verifier().vkey());
    let err = LogSigner::load(&SignerSource::KeyFile(path.clone()), "other.example/x", kms)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("STELE_LOG_ORIGIN"), "{err}");
    std::fs::write(&path, "not a key").unwrap();
    let err = LogSigner::load(&SignerSource::KeyFile(path), ORIGIN, kms)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a note private key"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The KMS signer against LocalStack KMS. LocalStack (4.9) has no ECC_NIST_EDWARDS25519
/// keys: creating one is refused, so the Ed25519 signing path is checked only if a
/// LocalStack that has them runs; the adapter's reading of the key (GetPublicKey, its
/// key spec) is checked against the keys it does have, which it must refuse.
#[tokio::test]
async fn the_kms_signer_reads_the_key_and_refuses_non_ed25519_keys() {
    let env = TestEnv::get().await;
    let kms = aws_sdk_kms::Client::new(&env.aws_config().await);
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let ed = kms
        .create_key()
        .key_spec(KeySpec::EccNistEdwards25519)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    match ed {
        Ok(out) => {
            // Full path: sign a checkpoint in KMS, verify it with the derived vkey.
            let key_id = out.key_metadata().unwrap().key_id().to_string();
            let signer = stele_checkpointer::KmsSigner::new(kms.clone(), &key_id, ORIGIN)
                .await
                .unwrap();
            let cp = stele_tlog::Checkpoint::new(&publish::tenant_origin(ORIGIN, "acme"), 3, Hash([1; 32]));
            let note = cp.sign(&signer).await.unwrap();
            let vkey = signer.verifier().vkey();
            open_checkpoint(
                note.as_bytes(),
                &Verifiers::from_vkeys([vkey.as_str()]).unwrap(),
                &cp.origin,
            )
            .unwrap();
        }
        Err(e) => {
            let msg = e
                .as_service_error()
                .and_then(|s| s.meta().message())
                .unwrap_or_default()
                .to_string();
            assert!(msg.contains("ECC_NIST_EDWARDS25519"), "{e:?}");
            eprintln!("LocalStack KMS refuses ECC_NIST_EDWARDS25519: {msg}");
        }
    }
    let p256 = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let key_id = p256.key_metadata().unwrap().key_id().to_string();
    let err = stele_checkpointer::KmsSigner::new(kms.clone(), &key_id, ORIGIN)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ECC_NIST_P256") && err.contains("ECC_NIST_EDWARDS25519"),
        "{err}"
    );
    let err = stele_checkpointer::KmsSigner::new(kms, "alias/no-such-key", ORIGIN)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("GetPublicKey"), "{err}");
}
