//! Benchmark driver for bench/query/run.sh (issue 17): `GET /v1/events` searches
//! against a baseline, interleaved query by query in one process, release mode.
//!
//! search_bench hot  <db-url> <tenant> <first-day> <days> <queries>
//!     one-day range + `actor_id`, through the query function's handler (parse, SQL,
//!     rows to events, JSON body), against the same rows read by one hand-written SQL
//!     statement on the same connection pool (rows fetched, nothing built).
//! search_bench cold <db-url> <dir> <tenant> <from> <to> <queries> <duckdb-python>
//!     `actor_id` over an archived range, read from a local copy of the bucket (`<dir>`
//!     holds `audit/tenant_id=…/dt=…/*.parquet`): our search (first page of 100, and
//!     every page to the end) against DuckDB answering the same query over the same
//!     files (bench/query/duckdb_search.py, one process fed query by query).
//! search_bench export <db-url> <s3-endpoint> <bucket> <tenant> <from> <to> <format> <inline-max-bytes>
//!     one `GET /v1/events/export` through the handler (archived days from the bucket,
//!     a large export uploaded there), timed; the presigned file is fetched and its
//!     lines counted.
//! search_bench download <s3-endpoint> <bucket> <dir>
//!     a local copy of the bucket's Parquet files.
//!
//! Prints each query's times as TSV on stderr and a summary JSON line on stdout.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, TimeDelta};
use lambda_http::http::{HeaderMap, Method};
use stele_archiver::store::{ObjectInfo, PendingUpload, StoreResult};
use stele_archiver::ArchiveStore;
use stele_query::events::{self, CursorKey, EventSearch};
use stele_query::{lambda_http, Query, QueryConfig};
use stele_store::StoreConfig;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(args: &[String], i: usize, what: &str) -> Res<String> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument {i}: {what}").into())
}

/// A deterministic stream of pseudo-random numbers (SplitMix64): the same queries in
/// every run.
struct Draw(u64);
impl Draw {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A local copy of a bucket, read as the archive (only what a search calls).
struct DirStore(PathBuf);

fn unsupported<T>() -> StoreResult<T> {
    Err(stele_archiver::error::StoreError::new(
        "write",
        "",
        "a local copy is read-only",
    ))
}

impl ArchiveStore for DirStore {
    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        match tokio::fs::read(self.0.join(key)).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(stele_archiver::error::StoreError::new("GetObject", key, e.to_string())),
        }
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        // Search lists one tenant-day directory at a time.
        let dir = self.0.join(prefix);
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                let key = format!("{}{}", prefix, e.file_name().to_string_lossy());
                out.push(ObjectInfo { key, size });
            }
        }
        Ok(out)
    }
    async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        Ok(std::fs::metadata(self.0.join(key)).ok().map(|m| m.len()))
    }
    async fn create_upload(&self, _: &str) -> StoreResult<String> {
        unsupported()
    }
    async fn upload_part(&self, _: &str, _: &str, _: i32, _: Bytes) -> StoreResult<String> {
        unsupported()
    }
    async fn complete_upload(&self, _: &str, _: &str, _: &[(i32, String)]) -> StoreResult<()> {
        unsupported()
    }
    async fn abort_upload(&self, _: &str, _: &str) -> StoreResult<()> {
        unsupported()
    }
    async fn list_uploads(&self, _: &str) -> StoreResult<Vec<PendingUpload>> {
        Ok(Vec::new())
    }
    async fn put(&self, _: &str, _: Bytes) -> StoreResult<()> {
        unsupported()
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> impl Future<Output = StoreResult<Bytes>> + Send {
        let path = self.0.join(key);
        async move {
            let b = tokio::fs::read(&path)
                .await
                .map_err(|e| stele_archiver::error::StoreError::new("GetObject", "", e.to_string()))?;
            Ok(Bytes::from(b).slice(range.start as usize..range.end as usize))
        }
    }
    async fn delete(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }
}

async fn hot(args: &[String]) -> Res<()> {
    let url = arg(args, 2, "db url")?;
    let tenant = arg(args, 3, "tenant")?;
    let first: NaiveDate = arg(args, 4, "first day")?.parse()?;
    let days: u64 = arg(args, 5, "days")?.parse()?;
    let queries: usize = arg(args, 6, "queries")?.parse()?;
    let pool = stele_store::pool(&StoreConfig::new(url.as_str()))?;
    let query = Query::new(QueryConfig::default(), pool.clone());
    let client = pool.get().await?;
    // The actors of the data set (bench/archiver's rows: `user-<g % 5000>`).
    let sql = "SELECT * FROM audit_events WHERE tenant_id = $1 AND actor_id = $2 \
               AND occurred_at >= $3 AND occurred_at < $4 ORDER BY occurred_at DESC, event_id DESC LIMIT 101";
    let baseline_stmt = client.prepare(sql).await?;
    let mut draw = Draw(17);
    let (mut ours, mut base, mut rows) = (Vec::new(), Vec::new(), 0usize);
    eprintln!("query\tours_ms\tbaseline_ms\tevents");
    for i in 0..queries + 20 {
        let day = first + TimeDelta::days(draw.next(days) as i64);
        let actor = format!("user-{}", draw.next(5000));
        let from = day.and_hms_opt(0, 0, 0).ok_or("day")?.and_utc();
        let to = from + TimeDelta::days(1);
        let path = format!(
            "/v1/events?from={}&to={}&actor_id={actor}",
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let req = stele::local::api_gateway::api_gateway_request(
            &Method::GET,
            &path,
            &HeaderMap::new(),
            b"",
            "tenant_id",
            Some(&tenant),
        )?;
        // Alternate which goes first, so neither always meets a warm cache.
        let (mut t_ours, mut t_base, mut n) = (Duration::ZERO, Duration::ZERO, 0);
        for turn in [i % 2, 1 - i % 2] {
            let started = Instant::now();
            if turn == 0 {
                let resp = query.handle(req.clone()).await;
                t_ours = started.elapsed();
                if resp.status() != 200 {
                    return Err(format!("{path}: {}", resp.status()).into());
                }
                let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref())?;
                n = body["events"].as_array().map_or(0, Vec::len);
            } else {
                let r = client.query(&baseline_stmt, &[&tenant, &actor, &from, &to]).await?;
                t_base = started.elapsed();
                std::hint::black_box(r);
            }
        }
        if i >= 20 {
            // The first 20 warm the pool and the caches.
            ours.push(ms(t_ours));
            base.push(ms(t_base));
            rows += n;
            eprintln!("{i}\t{:.3}\t{:.3}\t{n}", ms(t_ours), ms(t_base));
        }
    }
    let (o50, o99) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.99));
    let (b50, b99) = (percentile(&mut base, 0.5), percentile(&mut base, 0.99));
    println!(
        "{}",
        serde_json::json!({"mode": "hot", "queries": queries, "events_per_query": rows as f64 / queries as f64,
            "ours_p50_ms": o50, "ours_p99_ms": o99, "baseline_p50_ms": b50, "baseline_p99_ms": b99,
            "speed_ratio_p50": b50 / o50, "speed_ratio_p99": b99 / o99})
    );
    Ok(())
}

async fn cold(args: &[String]) -> Res<()> {
    let url = arg(args, 2, "db url")?;
    let dir = PathBuf::from(arg(args, 3, "dir")?);
    let tenant = arg(args, 4, "tenant")?;
    let (from, to) = (arg(args, 5, "from")?, arg(args, 6, "to")?);
    let queries: usize = arg(args, 7, "queries")?.parse()?;
    let python = arg(args, 8, "duckdb python")?;
    let pool = stele_store::pool(&StoreConfig::new(url.as_str()))?;
    let client = pool.get().await?;
    let store = DirStore(dir.clone());
    let key = CursorKey::random();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/query/duckdb_search.py");
    let mut duck = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir.join("audit"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut duck_in = duck.stdin.take().ok_or("duckdb stdin")?;
    let mut duck_out = BufReader::new(duck.stdout.take().ok_or("duckdb stdout")?);
    // One DuckDB query: `<limit> <tenant> <actor> <from> <to>` → `<ms> <ids…>`.
    let mut ask = |limit: usize, actor: &str| -> Res<(f64, Vec<String>)> {
        writeln!(duck_in, "{limit} {tenant} {actor} {from} {to}")?;
        duck_in.flush()?;
        let mut line = String::new();
        duck_out.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let ms: f64 = parts.next().ok_or("duckdb answered nothing")?.parse()?;
        Ok((ms, parts.map(str::to_string).collect()))
    };
    let mut draw = Draw(29);
    let (mut ours_page, mut duck_page, mut ours_all, mut duck_all) = (vec![], vec![], vec![], vec![]);
    let mut total = 0usize;
    eprintln!("query\tours_page_ms\tduckdb_page_ms\tours_all_ms\tduckdb_all_ms\tevents");
    for i in 0..queries + 3 {
        let actor = format!("user-{}", draw.next(5000));
        let params = format!("from={from}&to={to}&actor_id={actor}");
        let search = |limit: usize, cursor: Option<String>| -> Res<EventSearch> {
            let mut q: Vec<(String, String)> = params
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            q.push(("limit".into(), limit.to_string()));
            if let Some(c) = cursor {
                q.push(("cursor".into(), c));
            }
            Ok(EventSearch::parse(
                |k| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()),
                q.iter().map(|(k, _)| k.as_str()),
            )?)
        };
        // The first page (100 events, newest first), then the whole result in pages of 1000.
        let started = Instant::now();
        let first = events::search(&**client, Some((&store, "audit")), &key, &tenant, &search(100, None)?).await?;
        let t_page = ms(started.elapsed());
        let (d_page, d_ids) = ask(100, &actor)?;
        let got: Vec<String> = first.events.iter().map(|e| e.event.event_id.to_string()).collect();
        if got != d_ids {
            return Err(format!("{actor}: the first page differs from DuckDB's").into());
        }
        let started = Instant::now();
        let (mut all, mut cursor) = (Vec::new(), None);
        loop {
            let page = events::search(
                &**client,
                Some((&store, "audit")),
                &key,
                &tenant,
                &search(1000, cursor)?,
            )
            .await?;
            all.extend(page.events.into_iter().map(|e| e.event.event_id.to_string()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let t_all = ms(started.elapsed());
        let (d_all, d_all_ids) = ask(0, &actor)?;
        if all != d_all_ids {
            return Err(format!("{actor}: the whole result differs from DuckDB's").into());
        }
        if i >= 3 {
            eprintln!("{i}\t{t_page:.2}\t{d_page:.2}\t{t_all:.2}\t{d_all:.2}\t{}", all.len());
            ours_page.push(t_page);
            duck_page.push(d_page);
            ours_all.push(t_all);
            duck_all.push(d_all);
            total += all.len();
        }
    }
    drop(duck_in);
    let _ = duck.wait();
    let med = |v: &mut Vec<f64>| percentile(v, 0.5);
    let (op, dp, oa, da) = (
        med(&mut ours_page),
        med(&mut duck_page),
        med(&mut ours_all),
        med(&mut duck_all),
    );
    println!(
        "{}",
        serde_json::json!({"mode": "cold", "queries": queries, "events_per_query": total as f64 / queries as f64,
            "ours_first_page_median_ms": op, "duckdb_first_page_median_ms": dp, "speed_ratio_first_page": dp / op,
            "ours_all_median_ms": oa, "duckdb_all_median_ms": da, "speed_ratio_all": da / oa})
    );
    Ok(())
}

async fn export(args: &[String]) -> Res<()> {
    let url = arg(args, 2, "db url")?;
    let endpoint = arg(args, 3, "s3 endpoint")?;
    let bucket = arg(args, 4, "bucket")?;
    let tenant = arg(args, 5, "tenant")?;
    let (from, to) = (arg(args, 6, "from")?, arg(args, 7, "to")?);
    let format = arg(args, 8, "format")?;
    let inline_max: usize = arg(args, 9, "inline max bytes")?.parse()?;
    let sdk = stele::local::aws::sdk_config(&endpoint).await;
    let s3 = stele::local::aws::s3_client(&sdk);
    let config = QueryConfig {
        archive_bucket: Some(bucket.clone()),
        export_inline_max_bytes: inline_max,
        ..QueryConfig::default()
    };
    let query = Query::new(config, stele_store::pool(&StoreConfig::new(url.as_str()))?).with_archive(s3.clone());
    let path = format!("/v1/events/export?from={from}&to={to}&format={format}");
    let req = stele::local::api_gateway::api_gateway_request(
        &Method::GET,
        &path,
        &HeaderMap::new(),
        b"",
        "tenant_id",
        Some(&tenant),
    )?;
    let started = Instant::now();
    let resp = query.handle(req).await;
    let secs = started.elapsed().as_secs_f64();
    let events: u64 = resp
        .headers()
        .get("x-stele-event-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: {} {:?}", resp.status(), resp.body()))?;
    // The delivered bytes, as the tenant gets them.
    let (delivered, bytes) = if resp.status() == 303 {
        let answer: serde_json::Value = serde_json::from_slice(resp.body().as_ref())?;
        let key = answer["key"].as_str().ok_or("no key")?;
        let object = s3.get_object().bucket(&bucket).key(key).send().await?;
        let body = object.body.collect().await?.into_bytes();
        ("s3", body)
    } else {
        ("inline", Bytes::copy_from_slice(resp.body().as_ref()))
    };
    let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    let expected = events + u64::from(format == "csv");
    if lines != expected {
        return Err(format!("{lines} lines for {events} events").into());
    }
    println!(
        "{}",
        serde_json::json!({"mode": "export", "format": format, "delivered": delivered, "events": events,
            "bytes": bytes.len(), "secs": secs, "events_per_sec": events as f64 / secs,
            "mib_per_sec": bytes.len() as f64 / secs / 1048576.0})
    );
    Ok(())
}

async fn download(args: &[String]) -> Res<()> {
    let endpoint = arg(args, 2, "s3 endpoint")?;
    let bucket = arg(args, 3, "bucket")?;
    let dir = PathBuf::from(arg(args, 4, "dir")?);
    let sdk = stele::local::aws::sdk_config(&endpoint).await;
    let store = stele_archiver::S3Store::new(stele::local::aws::s3_client(&sdk), bucket);
    let mut n = 0;
    for o in store.list("audit/tenant_id=").await? {
        if o.key.ends_with(".parquet") {
            let body = store.get(&o.key).await?.ok_or("vanished")?;
            let path = dir.join(&o.key);
            std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
            std::fs::write(path, body)?;
            n += 1;
        }
    }
    println!("{}", serde_json::json!({"mode": "download", "files": n}));
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1, "mode")?.as_str() {
        "hot" => hot(&args).await,
        "cold" => cold(&args).await,
        "export" => export(&args).await,
        "download" => download(&args).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}
