//! Issue 16, goal 2: inclusion-proof latency for a tenant with 10 million leaves
//! (p99 < 20 ms), in release mode. The same measurement as the ignored test
//! `tests/it/query.rs` `inclusion_proof_latency_for_10_million_leaves`, without the
//! test harness (whose release build needs every crate of the workspace): the tiles
//! and head are built directly into `tlog_tiles`/`tlog_heads` of a fresh database, then
//! 1000 proofs of pseudo-random leaves are read through `PgLog`, timed one by one, and
//! the sampled ones verified against the root.
//!
//! proof_latency <superuser-url> [leaves=10000000] [proofs=1000]
//! (bench/tlog/README or docs/BENCHMARKS.md "Verifiable log (issue 16)")
use std::time::{Duration, Instant};

use stele_store::{PgLog, StoreConfig};
use stele_tlog::tile::tile_appends;
use stele_tlog::{leaf_hash, Frontier};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .ok_or("usage: proof_latency <superuser-url> [leaves] [proofs]")?;
    let leaves: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10_000_000);
    let proofs: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let admin = stele_store::connect(&StoreConfig::new(url.as_str())).await?;
    // One statement each: DROP/CREATE DATABASE refuse a multi-statement (implicit) transaction.
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_proofs WITH (FORCE)")
        .await?;
    admin.batch_execute("CREATE DATABASE bench_proofs").await?;
    let (base, _) = url.rsplit_once('/').ok_or("URL has a database")?;
    let mut config = StoreConfig::new(format!("{base}/bench_proofs"));
    config.statement_timeout = Duration::from_secs(3600);
    let client = stele_store::connect(&config).await?;
    stele_store::migrate(&client).await?;

    let tenant = "big";
    let started = Instant::now();
    let mut frontier = Frontier::new();
    // Tiles are appended in order; a tile is written once complete (or at the end).
    let mut open: std::collections::BTreeMap<(u8, u64), Vec<u8>> = Default::default();
    let sink = client
        .copy_in("COPY tlog_tiles (tenant_id, level, idx, hashes) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT2, Type::INT8, Type::BYTEA]);
    let mut writer = std::pin::pin!(writer);
    let mut samples = Vec::new();
    for i in 0..leaves {
        let leaf = leaf_hash(&i.to_be_bytes());
        if i % 100_003 == 0 {
            samples.push((i, leaf));
        }
        for a in tile_appends(&frontier.append(leaf)?) {
            let data = open.entry((a.level, a.index)).or_default();
            data.extend_from_slice(&a.data);
            if data.len() == 8192 {
                let data = open.remove(&(a.level, a.index)).unwrap_or_default();
                writer
                    .as_mut()
                    .write(&[&tenant, &i16::from(a.level), &(a.index as i64), &data])
                    .await?;
            }
        }
    }
    for ((level, idx), data) in std::mem::take(&mut open) {
        writer
            .as_mut()
            .write(&[&tenant, &i16::from(level), &(idx as i64), &data])
            .await?;
    }
    writer.finish().await?;
    let frontier_bytes: Vec<u8> = frontier.hashes().iter().flat_map(|h| h.0).collect();
    client
        .execute(
            "INSERT INTO tlog_heads (tenant_id, size, root, frontier) VALUES ($1, $2, $3, $4)",
            &[&tenant, &(leaves as i64), &frontier.root().0.to_vec(), &frontier_bytes],
        )
        .await?;
    client.batch_execute("ANALYZE tlog_tiles").await?;
    let built = started.elapsed();

    let log = PgLog::new(&client);
    let root = frontier.root();
    for (i, leaf) in samples.iter().take(20) {
        let proof = log.inclusion_proof(tenant, *i, leaves).await?;
        stele_tlog::verify_inclusion(*i, leaves, leaf, &proof, &root)?;
    }
    let mut times = Vec::with_capacity(proofs as usize);
    for n in 0..proofs {
        let (i, leaf) = samples[(n as usize * 7919) % samples.len()];
        let index = (i + n * 2_654_435_761) % leaves;
        let t = Instant::now();
        let proof = log.inclusion_proof(tenant, index, leaves).await?;
        times.push(t.elapsed());
        if index == i {
            stele_tlog::verify_inclusion(i, leaves, &leaf, &proof, &root)?;
        }
    }
    for (i, leaf) in &samples {
        let proof = log.inclusion_proof(tenant, *i, leaves).await?;
        stele_tlog::verify_inclusion(*i, leaves, leaf, &proof, &root)?;
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let tiles: i64 = client.query_one("SELECT count(*) FROM tlog_tiles", &[]).await?.get(0);
    println!(
        "inclusion proofs, {leaves} leaves ({tiles} tiles, built in {built:.1?}): {proofs} proofs p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        times[times.len() - 1]
    );
    drop(client);
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_proofs WITH (FORCE)")
        .await?;
    Ok(())
}
