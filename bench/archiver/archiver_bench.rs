//! Benchmark driver for bench/archiver/run.sh (release mode; peak RSS is taken
//! by `/usr/bin/time -v` around one process per measurement).
//!
//! archiver_bench fill    <db-url> <YYYY-MM-DD> <rows> <tenants>
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
use stele_archiver::{ArchiverConfig, S3Store};
use stele_store::{partitions, StoreConfig};

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

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = arg(&args, 1, "mode")?;
    match mode.as_str() {
        "fill" => {
            let c = client(&arg(&args, 2, "db url")?).await?;
            stele_store::migrate(&c).await?;
            let d = day(&arg(&args, 3, "day")?)?;
            let rows: i64 = arg(&args, 4, "rows")?.parse()?;
            let tenants: i64 = arg(&args, 5, "tenants")?.parse()?;
            partitions::ensure_days(&c, &[d]).await?;
            let started = Instant::now();
            let mut from = 1i64;
            while from <= rows {
                let to = (from + 99_999).min(rows);
                c.execute(
                    "INSERT INTO audit_events (tenant_id, event_id, occurred_at, received_at, category, action, outcome,
                         actor_id, actor_type, actor_display, actor_ip, actor_user_agent, resource_type, resource_id,
                         changes, metadata, correlation_id, trace_parent, source_service, source_version, source_region,
                         schema_version, event_hash, kinesis_shard, kinesis_seq)
                     SELECT 'tenant-' || (g % $4), gen_random_uuid(),
                            ($1::date::timestamp + make_interval(secs => (g * 86399.0 / $3::float8))) AT TIME ZONE 'UTC',
                            ($1::date::timestamp + make_interval(secs => (g * 86399.0 / $3::float8) + 0.2)) AT TIME ZONE 'UTC',
                            'audit', (ARRAY['user.login','user.logout','document.update','role.grant'])[1 + g % 4],
                            CASE WHEN g % 11 = 0 THEN 'failure' ELSE 'success' END,
                            'user-' || (g % 5000), 'user', 'User ' || (g % 5000), '10.1.' || (g % 250) || '.' || (g % 199),
                            'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0', 'document', 'doc-' || (g % 100000),
                            CASE WHEN g % 5 = 0 THEN jsonb_build_object('before', jsonb_build_object('title', 'draft ' || g), 'after', jsonb_build_object('title', 'final ' || g)) END,
                            jsonb_build_object('request_id', md5(g::text), 'plan', 'enterprise', 'seats', g % 100),
                            md5(g::text || 'c'), '00-' || md5(g::text) || md5(g::text || 't') || '-01',
                            'docs-api', '1.42.0', 'eu-west-1', 1,
                            sha256(('e' || g || $1::text)::bytea), 'shardId-00000000000' || (g % 4), (49650000000000000000 + g)::text
                       FROM generate_series($2::bigint, $5::bigint) g",
                    &[&d, &from, &(rows as f64), &tenants, &to],
                )
                .await?;
                from = to + 1;
            }
            c.batch_execute(&format!("VACUUM ANALYZE {}", partitions::partition_name(d)))
                .await?;
            report("fill", rows as u64, started);
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
