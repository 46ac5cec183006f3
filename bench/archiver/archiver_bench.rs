//! Benchmark driver for bench/archiver/run.sh (release mode; peak RSS is taken
//! by `/usr/bin/time -v` around one process per measurement).
//!
//! archiver_bench fill    <db-url> <YYYY-MM-DD> <rows> <tenants>        (sealed events through the store: real hashes and leaves)
//! archiver_bench publish <db-url> <s3-endpoint> <bucket> <origin> <vkey-file>   (tiles, signed checkpoints, vkey: the checkpointer once)
//! archiver_bench decode  <s3-endpoint> <bucket>                        (every archived Parquet file fetched and decoded with arrow: verify's baseline)
//! archiver_bench export  <db-url> <s3-endpoint> <bucket> <YYYY-MM-DD>   (export only, to a scratch prefix)
//! archiver_bench archive <db-url> <s3-endpoint> <bucket> <YYYY-MM-DD>   (export + manifest + verify + detach, table kept)
//! archiver_bench bucket  <s3-endpoint> <bucket>
//! archiver_bench copy    <db-url> <YYYY-MM-DD>                         (binary COPY of the same SELECT, rows discarded: the read floor)
//!
//! Each prints one JSON line: {"mode", "rows", "secs", "rows_per_sec"}.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use futures_util::StreamExt;
use stele_archiver::{ArchiveStore, ArchiverConfig, S3Store};
use stele_store::{partitions, StoreConfig, StoredEvent};
use stele_tlog::publish::{checkpoint_key, latest_checkpoint_key, tenant_origin, tile_key, vkey_key};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(args: &[String], i: usize, what: &str) -> Res<String> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument {i}: {what}").into())
}

fn day(s: &str) -> Res<NaiveDate> {
    Ok(NaiveDate::parse_from_str(s, "%Y-%m-%d")?)
}

async fn client(url: &str) -> Res<tokio_postgres::Client> {
    let mut cfg = StoreConfig::new(url);
    cfg.statement_timeout = Duration::from_secs(3600);
    Ok(stele_store::connect(&cfg).await?)
}

async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
}

fn report(mode: &str, rows: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"mode": mode, "rows": rows, "secs": secs, "rows_per_sec": rows as f64 / secs})
    );
}

/// Row `g` of `rows` spread over `day`, as the batch-writer would have stored it
/// (the shape bench/archiver has always used: user agent, metadata, `changes` on 20 %).
fn sealed_row(day: NaiveDate, g: usize, rows: usize, tenants: usize) -> Result<StoredEvent, String> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let at = midnight + chrono::TimeDelta::microseconds((g as f64 * 86_399e6 / rows.max(1) as f64) as i64);
    let tenant = format!("tenant-{}", g % tenants.max(1));
    let ctx = stele_core::Context {
        tenant_id: &tenant,
        now: at + chrono::TimeDelta::milliseconds(200),
        window: stele_core::TimeWindow::default(),
        id_if_missing: None,
    };
    let action = ["user.login", "user.logout", "document.update", "role.grant"][g % 4];
    let outcome = if g.is_multiple_of(11) { "failure" } else { "success" };
    let mut e = serde_json::json!({
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "category": "audit",
        "action": action,
        "outcome": outcome,
        "actor": { "id": format!("user-{}", g % 5000), "type": "user", "display": format!("User {}", g % 5000),
                   "ip": format!("10.1.{}.{}", g % 250, g % 199),
                   "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0" },
        "resource": { "type": "document", "id": format!("doc-{}", g % 100_000) },
        "metadata": { "request_id": format!("{:032x}", (g as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)), "plan": "enterprise", "seats": g % 100 },
        "correlation_id": format!("corr-{g}"),
        "trace": { "traceparent": format!("00-{:032x}-{:016x}-01", g as u128 + 1, g as u64 + 1) },
        "source": { "service": "docs-api", "version": "1.42.0", "region": "eu-west-1" },
    });
    if g.is_multiple_of(5) {
        e["changes"] = serde_json::json!({ "before": { "title": format!("draft {g}") }, "after": { "title": format!("final {g}") } });
    }
    let sealed = stele_core::validate_event(&e, &ctx)
        .map_err(|p| format!("generated row {g} is not an event: {p:?}"))?
        .seal();
    Ok(StoredEvent {
        event: sealed.event,
        hash: sealed.hash,
        kinesis_shard: Some(format!("shardId-00000000000{}", g % 4)),
        kinesis_seq: Some(format!("{}", 49_650_000_000_000_000_000u128 + g as u128)),
    })
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = arg(&args, 1, "mode")?;
    match mode.as_str() {
        "fill" => {
            // Real rows: sealed by stele-core and written by the batch-writer's store, so
            // every row has its content hash and its leaf in its tenant's log (the
            // archiver re-hashes every row and checks its leaf before it detaches).
            let url = arg(&args, 2, "db url")?;
            let c = client(&url).await?;
            stele_store::migrate(&c).await?;
            let d = day(&arg(&args, 3, "day")?)?;
            let rows: usize = arg(&args, 4, "rows")?.parse()?;
            let tenants: usize = arg(&args, 5, "tenants")?.parse()?;
            partitions::ensure_days(&c, &[d]).await?;
            let store = stele_store::PgEventStore::new(stele_store::pool(&StoreConfig::new(url))?);
            let started = Instant::now();
            const CHUNK: usize = 10_000;
            let seal = move |from: usize| {
                tokio::task::spawn_blocking(move || {
                    (from..(from + CHUNK).min(rows))
                        .map(|g| sealed_row(d, g, rows, tenants))
                        .collect::<Result<Vec<_>, String>>()
                })
            };
            let mut next = (rows > 0).then(|| seal(0));
            let mut from = 0;
            while let Some(pending) = next.take() {
                let events = pending.await??;
                from += CHUNK;
                // Seal the next chunk on another core while this one is written.
                next = (from < rows).then(|| seal(from));
                stele_store::EventStore::insert_batch(&store, &events, &[]).await?;
            }
            c.batch_execute(&format!("VACUUM ANALYZE {}", partitions::partition_name(d)))
                .await?;
            report("fill", rows as u64, started);
        }
        "publish" => {
            // What the checkpointer does, once: each tenant's tiles and a signed
            // checkpoint of its head (recorded and published), and the verifier key
            // (written to a file too).
            let c = client(&arg(&args, 2, "db url")?).await?;
            let store = S3Store::new(s3(&arg(&args, 3, "s3 endpoint")?).await, arg(&args, 4, "bucket")?);
            let origin = arg(&args, 5, "origin")?;
            let vkey_path = arg(&args, 6, "vkey file")?;
            let prefix = ArchiverConfig::new("unused").prefix;
            let signer = stele_tlog::Ed25519Signer::generate(&origin)?;
            let log = stele_store::PgLog::new(&c);
            let started = Instant::now();
            let mut leaves = 0;
            for head in log.heads().await? {
                let tiles = stele_tlog::tile::new_tiles(0, head.size);
                let data = log.tiles(&head.tenant_id, &tiles).await?;
                for (t, d) in tiles.iter().zip(data) {
                    let body = d[..usize::from(t.width) * 32].to_vec();
                    store.put(&tile_key(&prefix, &head.tenant_id, *t), body.into()).await?;
                }
                let note = stele_tlog::Checkpoint::new(&tenant_origin(&origin, &head.tenant_id), head.size, head.root)
                    .sign(&signer)
                    .await?;
                // Recorded as the checkpointer records it, so the archiver's manifests name
                // the checkpoint that covers their rows and `stele verify` checks that anchor.
                log.insert_checkpoint(&head.tenant_id, head.size, &head.root, &note)
                    .await?;
                store
                    .put(
                        &checkpoint_key(&prefix, &head.tenant_id, head.size),
                        note.clone().into_bytes().into(),
                    )
                    .await?;
                store
                    .put(
                        &latest_checkpoint_key(&prefix, &head.tenant_id),
                        note.into_bytes().into(),
                    )
                    .await?;
                leaves += head.size;
            }
            let vkey = signer.verifier().vkey();
            store.put(&vkey_key(&prefix), vkey.clone().into_bytes().into()).await?;
            std::fs::write(&vkey_path, vkey)?;
            report("publish", leaves, started);
        }
        "decode" => {
            // The baseline of `stele verify`: fetch every archived Parquet file from the
            // bucket and decode all its columns with arrow's reader, nothing else.
            let store = S3Store::new(s3(&arg(&args, 2, "s3 endpoint")?).await, arg(&args, 3, "bucket")?);
            let prefix = format!("{}/", ArchiverConfig::new("unused").prefix);
            let started = Instant::now();
            let (mut rows, mut bytes, mut files) = (0u64, 0usize, 0usize);
            for object in store.list(&prefix).await? {
                if !object.key.ends_with(".parquet") {
                    continue;
                }
                let body = store
                    .get(&object.key)
                    .await?
                    .ok_or_else(|| format!("{} vanished", object.key))?;
                bytes += body.len();
                files += 1;
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)?.build()?;
                for batch in reader {
                    let batch = batch?;
                    rows += batch.num_rows() as u64;
                    std::hint::black_box(&batch);
                }
            }
            eprintln!("decode: {files} files, {bytes} bytes");
            report("arrow_decode", rows, started);
        }
        "bucket" => {
            let s3 = s3(&arg(&args, 2, "s3 endpoint")?).await;
            s3.create_bucket().bucket(arg(&args, 3, "bucket")?).send().await?;
        }
        "copy" => {
            let c = client(&arg(&args, 2, "db url")?).await?;
            let name = partitions::partition_name(day(&arg(&args, 3, "day")?)?);
            let started = Instant::now();
            let sql = format!(
                "COPY ({}) TO STDOUT (FORMAT binary)",
                stele_store::archive_db::export_sql(&name)
            );
            let stream = c.copy_out(&sql).await?;
            futures_util::pin_mut!(stream);
            let mut bytes = 0usize;
            while let Some(chunk) = stream.next().await {
                bytes += chunk?.len();
            }
            let rows: i64 = c
                .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
                .await?
                .get(0);
            eprintln!("copy: {bytes} bytes");
            report("copy_floor", rows as u64, started);
        }
        "export" | "archive" => {
            let url = arg(&args, 2, "db url")?;
            let s3 = s3(&arg(&args, 3, "s3 endpoint")?).await;
            let bucket = arg(&args, 4, "bucket")?;
            let d = day(&arg(&args, 5, "day")?)?;
            let name = partitions::partition_name(d);
            let mut config = ArchiverConfig::new(&bucket);
            config.drop_after_archive = false;
            config.statement_timeout = Duration::from_secs(3600);
            let store = Arc::new(S3Store::new(s3, &bucket));
            let far = Instant::now() + Duration::from_secs(3600);
            let started = Instant::now();
            if mode == "export" {
                config.prefix = "scratch".into();
                let mut db = StoreConfig::new(url);
                db.statement_timeout = config.statement_timeout;
                let db = stele_store::PgArchiveDb::new(db);
                let tenants = stele_archiver::export::export(&db, &*store, &config, &name, d, far).await?;
                let rows: u64 = tenants.iter().map(|t| t.rows).sum();
                let bytes: u64 = tenants.iter().flat_map(|t| &t.files).map(|f| f.bytes).sum();
                eprintln!(
                    "export: {} files, {bytes} bytes",
                    tenants.iter().map(|t| t.files.len()).sum::<usize>()
                );
                report("archiver_export", rows, started);
            } else {
                let archiver = stele_archiver::Archiver::with_postgres(store, StoreConfig::new(url), config);
                let r = archiver.archive_partition(&name, false, Utc::now(), far).await?;
                eprintln!("archive: {} files, {} bytes", r.files, r.bytes);
                report("archiver_full", r.rows, started);
            }
        }
        other => return Err(format!("unknown mode `{other}`").into()),
    }
    Ok(())
}
