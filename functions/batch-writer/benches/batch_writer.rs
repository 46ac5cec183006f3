//! Batch-writer throughput against a durable PostgreSQL (fsync on), with its
//! baselines, in one run, on the same generated events, each into a fresh
//! database with the same partitioned table and indexes:
//!
//! - writer: `BatchWriter::process` on Kinesis batches (decode, hash re-check,
//!   partitions, chunked inserts overlapping decoding), with UNNEST (`writer`)
//!   and COPY-stage (`writer-copy`)
//! - unnest/copy: the store alone, `insert_batch` with each `InsertMethod`
//!   (already-opened events), side by side
//! - per-row: one prepared `INSERT … VALUES ($1…$29)` per event, one transaction
//!   per batch (the naive design)
//! - \copy: `psql -c "\copy audit_events (…) FROM 'rows.csv' (FORMAT csv)"` of
//!   the same rows (the floor)
//!
//! and the peak RSS of a process that deserialises one 10 000-record Lambda
//! payload and writes it (`/usr/bin/time -v` and VmHWM).
//!
//! Run: `cargo bench -p stele-batch-writer --bench batch_writer`
//! Settings: STELE_BENCH_EVENTS (50000), STELE_BENCH_BATCH (10000),
//! STELE_BENCH_ROUNDS (3), STELE_BENCH_CHUNK (records per insert statement,
//! default 2000), STELE_BENCH_PG_URL (an existing cluster's
//! superuser URL; default: a new `scripts/pg.sh start --durable` cluster),
//! STELE_BENCH_WITHOUT_SEARCH_INDEXES (set: without the `(tenant, actor)` and
//! `(tenant, resource)` indexes the read API's filters use, to measure their cost),
//! STELE_BENCH_DELAY_MS (e.g. `0.5`: the writer and the per-row loop run once more
//! each round through a proxy that delays every byte that long each way, as between
//! Lambda and RDS; rows `writer (rtt)` and `per-row (rtt)`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::json;
use stele_batch_writer::{kinesis, BatchWriter, KinesisEvent, MemoryDeadLetters};
use stele_core::{validate_event, Context, SealedEvent, TimeWindow};
use stele_store::columns::column_list;

#[path = "support/delay_proxy.rs"]
mod delay_proxy;
use stele_store::{EventStore, InsertMethod, PgEventStore, StoreConfig, StoredEvent};
use tokio_postgres::types::{Json, ToSql};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// Realistic events: 5 tenants, 3 days, optional fields mostly present,
/// `changes` on one in four (as in the ingest benchmark).
fn generate(n: usize) -> Vec<SealedEvent> {
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    (0..n)
        .map(|i| {
            let ctx = Context {
                tenant_id: tenants[i % tenants.len()],
                now: now(),
                window: TimeWindow::default(),
                id_if_missing: None,
            };
            let mut e = json!({
                "occurred_at": format!("2026-{}T{:02}:{:02}:{:02}.{:06}Z",
                    ["02-27", "02-28", "03-01"][i % 3], (i / 7) % 12, i % 60, (i / 60) % 60, i % 1_000_000),
                "category": (["audit", "security", "application"][i % 3]),
                "action": format!("document.action_{}", i % 17),
                "outcome": "success",
                "actor": { "id": format!("user-{}", i % 5000), "type": "user", "ip": "192.0.2.7",
                           "user_agent": "Mozilla/5.0 (X11; Linux x86_64) stele-bench/1.0" },
                "resource": { "type": "document", "id": format!("doc-{}", i * 7), "display": "Quarterly report" },
                "metadata": { "request_id": format!("req-{i}"), "plan": "enterprise", "seats": 250, "beta": true },
                "correlation_id": format!("corr-{}", i / 3),
                "source": { "service": "docs", "version": "1.2.3", "region": "eu-west-1" },
            });
            if i % 4 == 0 {
                e["changes"] = json!({
                    "before": { "title": "Draft", "tags": ["a", "b"], "size": 1024 },
                    "after": { "title": "Final — approved", "tags": ["a", "b", "c"], "size": 2048.5 },
                });
            }
            validate_event(&e, &ctx).expect("generated event is valid").seal()
        })
        .collect()
}

fn days() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2026, 2, 27).unwrap(),
        NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
    )
}

fn seq(i: usize) -> String {
    format!("4960{i:020}")
}

fn kinesis_batches(sealed: &[SealedEvent], batch: usize) -> Vec<KinesisEvent> {
    sealed
        .chunks(batch)
        .enumerate()
        .map(|(b, chunk)| {
            kinesis::event(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        kinesis::event_record(
                            "shardId-000000000000",
                            &seq(b * batch + i),
                            &s.event.tenant_id,
                            s.record.clone(),
                            now(),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

fn stored(sealed: &[SealedEvent]) -> Vec<StoredEvent> {
    sealed
        .iter()
        .enumerate()
        .map(|(i, s)| StoredEvent {
            event: s.event.clone(),
            hash: s.hash,
            kinesis_shard: Some("shardId-000000000000".into()),
            kinesis_seq: Some(seq(i)),
        })
        .collect()
}

struct Cluster {
    admin_url: String,
    dir: Option<String>,
}

impl Cluster {
    fn get() -> Cluster {
        if let Ok(url) = std::env::var("STELE_BENCH_PG_URL") {
            return Cluster {
                admin_url: url,
                dir: None,
            };
        }
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/pg.sh"))
            .args(["start", "--durable", "--watch-pid", &std::process::id().to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/pg.sh start");
        assert!(out.status.success(), "scripts/pg.sh start failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
                .expect("pg.sh printed its settings")
        };
        Cluster {
            admin_url: value("STELE_PG_URL"),
            dir: Some(value("STELE_PG_DIR")),
        }
    }

    fn url_of(&self, db: &str) -> String {
        let (base, _) = self.admin_url.rsplit_once('/').expect("URL has a database");
        format!("{base}/{db}")
    }

    /// A fresh, migrated database with the benchmark's day partitions.
    async fn fresh(&self, name: &str) -> String {
        let admin = stele_store::connect(&StoreConfig::new(self.admin_url.clone()))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = self.url_of(name);
        let client = stele_store::connect(&StoreConfig::new(url.clone())).await.unwrap();
        stele_store::migrate(&client).await.unwrap();
        // The read API's secondary indexes' write cost (issue 17): the same run without them.
        if std::env::var_os("STELE_BENCH_WITHOUT_SEARCH_INDEXES").is_some() {
            client
                .batch_execute("DROP INDEX audit_events_tenant_actor, audit_events_tenant_resource")
                .await
                .unwrap();
        }
        let (from, to) = days();
        stele_store::partitions::ensure_range(&client, from, to).await.unwrap();
        // Same starting point for every method: empty, analysed, checkpointed.
        client.batch_execute("ANALYZE; CHECKPOINT").await.unwrap();
        url
    }

    async fn count(&self, url: &str) -> i64 {
        let client = stele_store::connect(&StoreConfig::new(url.to_string())).await.unwrap();
        client
            .query_one("SELECT count(*) FROM audit_events", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn drop_db(&self, name: &str) {
        let admin = stele_store::connect(&StoreConfig::new(self.admin_url.clone()))
            .await
            .unwrap();
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new("bash")
                .arg(repo_root().join("scripts/pg.sh"))
                .args(["stop", dir])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn store(url: &str, method: InsertMethod) -> PgEventStore {
    PgEventStore::with_method(stele_store::pool(&StoreConfig::new(url.to_string())).unwrap(), method)
}

async fn run_writer(url: &str, batches: &[KinesisEvent], method: InsertMethod) -> Duration {
    let chunk = setting("STELE_BENCH_CHUNK", stele_batch_writer::writer::DEFAULT_CHUNK_RECORDS);
    let writer = BatchWriter::new(store(url, method), MemoryDeadLetters::default()).with_chunk_records(chunk);
    let started = Instant::now();
    for batch in batches {
        let (response, report) = writer.process(batch.clone()).await;
        assert!(response.batch_item_failures.is_empty() && report.poison == 0);
    }
    started.elapsed()
}

async fn run_store(url: &str, events: &[StoredEvent], batch: usize, method: InsertMethod) -> Duration {
    let store = store(url, method);
    let started = Instant::now();
    for chunk in events.chunks(batch) {
        store.insert_batch(chunk, &[]).await.unwrap();
    }
    started.elapsed()
}

/// The naive writer: one INSERT per event, a transaction per batch.
async fn run_per_row(url: &str, events: &[StoredEvent], batch: usize) -> Duration {
    let mut client = stele_store::connect(&StoreConfig::new(url.to_string())).await.unwrap();
    let placeholders: Vec<String> = (1..=29).map(|i| format!("${i}")).collect();
    // The naive design has no log: every column but leaf_index (added with the log,
    // migration 0005), whose 29 values are bound below.
    let columns: Vec<&str> = column_list()
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "leaf_index")
        .collect();
    let sql = format!(
        "INSERT INTO audit_events ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        columns.join(", "),
        placeholders.join(", ")
    );
    let started = Instant::now();
    for chunk in events.chunks(batch) {
        let tx = client.transaction().await.unwrap();
        let statement = tx.prepare(&sql).await.unwrap();
        for s in chunk {
            let e = &s.event;
            let changes = e.changes.as_ref().map(Json);
            let metadata = e.metadata.as_ref().map(Json);
            let (category, outcome, actor_type) =
                (e.category.as_str(), e.outcome.as_str(), e.actor.actor_type.as_str());
            let (rt, rid, rd) = (
                e.resource.as_ref().map(|r| r.resource_type.as_str()),
                e.resource.as_ref().map(|r| r.id.as_str()),
                e.resource.as_ref().and_then(|r| r.display.as_deref()),
            );
            let (tp, ts) = (
                e.trace.as_ref().map(|t| t.traceparent.as_str()),
                e.trace.as_ref().and_then(|t| t.tracestate.as_deref()),
            );
            let version = e.schema_version as i16;
            let hash: &[u8] = &s.hash.0;
            let params: [&(dyn ToSql + Sync); 29] = [
                &e.tenant_id,
                &e.event_id,
                &e.occurred_at,
                &e.received_at,
                &category,
                &e.action,
                &outcome,
                &e.actor.id,
                &actor_type,
                &e.actor.display,
                &e.actor.ip,
                &e.actor.user_agent,
                &rt,
                &rid,
                &rd,
                &changes,
                &metadata,
                &e.correlation_id,
                &e.causation_id,
                &tp,
                &ts,
                &e.source.service,
                &e.source.version,
                &e.source.host,
                &e.source.region,
                &version,
                &hash,
                &s.kinesis_shard,
                &s.kinesis_seq,
            ];
            tx.execute(&statement, &params).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

fn psql() -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin/psql")).collect())
        .unwrap_or_default();
    bins.retain(|p| p.exists());
    bins.sort();
    bins.pop().unwrap_or_else(|| PathBuf::from("psql"))
}

fn run_psql(url: &str, command: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new(psql())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command])
        .status()
        .expect("run psql");
    let elapsed = started.elapsed();
    assert!(status.success(), "psql {command} failed");
    elapsed
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Child mode: one Lambda payload from a file, as lambda_runtime would see it.
fn rss_child(payload: &str, url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let writer = BatchWriter::new(store(url, InsertMethod::default()), MemoryDeadLetters::default());
        writer.ensure_days_ahead(days().0, 2).await.unwrap();
        let before = vm_hwm_kib();
        let bytes = std::fs::read(payload).unwrap();
        let event: KinesisEvent = serde_json::from_slice(&bytes).unwrap();
        drop(bytes);
        let (_, report) = writer.process(event).await;
        println!(
            "RSS_CHILD before_kib={before} peak_kib={} inserted={}",
            vm_hwm_kib(),
            report.inserted
        );
    });
}

fn main() {
    if let (Ok(payload), Ok(url)) = (
        std::env::var("STELE_BENCH_RSS_PAYLOAD"),
        std::env::var("STELE_BENCH_RSS_URL"),
    ) {
        return rss_child(&payload, &url);
    }
    let n = setting("STELE_BENCH_EVENTS", 50_000);
    let batch = setting("STELE_BENCH_BATCH", 10_000);
    let rounds = setting("STELE_BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = Cluster::get();
    let work = tempdir();
    let delay = std::env::var("STELE_BENCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| *ms > 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0));
    let proxy = delay.map(|d| {
        let target = delay_proxy::target_of(&cluster.admin_url).expect("the cluster URL has host:port");
        delay_proxy::DelayProxy::start(target, d).expect("start the delay proxy")
    });

    let sealed = generate(n);
    let avg = sealed.iter().map(|s| s.record.len()).sum::<usize>() / n.max(1);
    let batches = kinesis_batches(&sealed, batch);
    let events = stored(&sealed);
    println!(
        "batch-writer benchmark: {n} events ({avg} B each on average), batches of {batch}, {rounds} rounds, fsync on"
    );

    // Decoding alone (one thread): what the writer does before any SQL.
    let started = Instant::now();
    for s in &sealed {
        std::hint::black_box(stele_batch_writer::decode::open_record(&s.record).is_ok());
    }
    let decode_rate = rate(n, started.elapsed());
    println!(
        "decode + hash re-check alone: {decode_rate:.0} events/s on one thread; writer chunk size {}",
        setting("STELE_BENCH_CHUNK", stele_batch_writer::writer::DEFAULT_CHUNK_RECORDS)
    );

    let csv = work.join("rows.csv");
    let mut results: Vec<(&str, Vec<f64>)> = [
        "writer",
        "writer-copy",
        "unnest",
        "copy",
        "per-row",
        "\\copy",
        "redelivery",
        "writer (rtt)",
        "per-row (rtt)",
    ]
    .into_iter()
    .map(|k| (k, Vec::new()))
    .collect();
    let mut push = |k: &str, v: f64| {
        if let Some((_, vs)) = results.iter_mut().find(|(name, _)| *name == k) {
            vs.push(v);
        }
    };
    runtime.block_on(async {
        for round in 0..rounds {
            let url = cluster.fresh("bench_writer").await;
            let d = run_writer(&url, &batches, InsertMethod::Unnest).await;
            assert_eq!(cluster.count(&url).await, n as i64);
            push("writer", rate(n, d));
            let d = run_writer(&url, &batches, InsertMethod::Unnest).await;
            assert_eq!(cluster.count(&url).await, n as i64, "redelivery adds nothing");
            push("redelivery", rate(n, d));
            if round == 0 {
                run_psql(
                    &url,
                    &format!(
                        "\\copy (SELECT {} FROM audit_events ORDER BY kinesis_seq) TO '{}' (FORMAT csv)",
                        column_list(),
                        csv.display()
                    ),
                );
            }
            cluster.drop_db("bench_writer").await;

            let url = cluster.fresh("bench_writer_copy").await;
            let d = run_writer(&url, &batches, InsertMethod::CopyStage).await;
            assert_eq!(cluster.count(&url).await, n as i64);
            push("writer-copy", rate(n, d));
            cluster.drop_db("bench_writer_copy").await;

            for (name, method) in [("unnest", InsertMethod::Unnest), ("copy", InsertMethod::CopyStage)] {
                let url = cluster.fresh("bench_store").await;
                let d = run_store(&url, &events, batch, method).await;
                assert_eq!(cluster.count(&url).await, n as i64);
                push(name, rate(n, d));
                cluster.drop_db("bench_store").await;
            }

            let url = cluster.fresh("bench_per_row").await;
            let d = run_per_row(&url, &events, batch).await;
            assert_eq!(cluster.count(&url).await, n as i64);
            push("per-row", rate(n, d));
            cluster.drop_db("bench_per_row").await;

            let url = cluster.fresh("bench_copy").await;
            let d = run_psql(
                &url,
                &format!(
                    "\\copy audit_events ({}) FROM '{}' (FORMAT csv)",
                    column_list(),
                    csv.display()
                ),
            );
            assert_eq!(cluster.count(&url).await, n as i64);
            push("\\copy", rate(n, d));
            cluster.drop_db("bench_copy").await;

            if let Some(proxy) = &proxy {
                let url = cluster.fresh("bench_writer_rtt").await;
                let d = run_writer(&delay_proxy::through(&url, proxy.addr), &batches, InsertMethod::Unnest).await;
                assert_eq!(cluster.count(&url).await, n as i64);
                push("writer (rtt)", rate(n, d));
                cluster.drop_db("bench_writer_rtt").await;
                let url = cluster.fresh("bench_per_row_rtt").await;
                let d = run_per_row(&delay_proxy::through(&url, proxy.addr), &events, batch).await;
                assert_eq!(cluster.count(&url).await, n as i64);
                push("per-row (rtt)", rate(n, d));
                cluster.drop_db("bench_per_row_rtt").await;
            }
            eprintln!("round {} done", round + 1);
        }
    });

    let best = |k: &str| {
        results
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.iter().cloned().fold(0.0, f64::max))
            .unwrap_or(0.0)
    };
    println!("\n| method | events/s (best of {rounds}) | all rounds |");
    println!("|---|---:|---|");
    for (name, values) in results.iter().filter(|(_, v)| !v.is_empty()) {
        let all: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
        println!("| {name} | {:.0} | {} |", best(name), all.join(", "));
    }
    println!(
        "\nwriter / per-row = {:.1}x   writer / \\copy = {:.2}   unnest / copy-stage = {:.2}",
        best("writer") / best("per-row"),
        best("writer") / best("\\copy"),
        best("unnest") / best("copy"),
    );
    if let Some(d) = delay {
        println!(
            "with {:.2} ms each way (a delaying proxy): writer / per-row = {:.1}x   writer (rtt) / writer = {:.2}",
            d.as_secs_f64() * 1000.0,
            best("writer (rtt)") / best("per-row (rtt)"),
            best("writer (rtt)") / best("writer"),
        );
    }

    // Peak RSS of one 10 000-record batch, in a process of its own.
    let rss_events = 10_000.min(n);
    let payload = work.join("payload.json");
    let one = kinesis_batches(&sealed[..rss_events], rss_events).remove(0);
    std::fs::write(&payload, serde_json::to_vec(&one).unwrap()).unwrap();
    let payload_mib = std::fs::metadata(&payload).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let url = runtime.block_on(cluster.fresh("bench_rss"));
    let exe = std::env::current_exe().unwrap();
    let time_v = Path::new("/usr/bin/time").exists();
    let mut cmd = if time_v {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .env("STELE_BENCH_RSS_PAYLOAD", &payload)
        .env("STELE_BENCH_RSS_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let child = stdout
        .lines()
        .find(|l| l.starts_with("RSS_CHILD"))
        .unwrap_or("RSS_CHILD failed");
    let max_rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "n/a".into());
    println!(
        "\npeak RSS, one {rss_events}-record batch (Lambda payload {payload_mib:.1} MiB): /usr/bin/time -v max RSS {max_rss} KiB; {child}"
    );
    runtime.block_on(cluster.drop_db("bench_rss"));
    let _ = std::fs::remove_dir_all(&work);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stele-bench-bw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // psql runs as this user; the server never reads these files (\copy is client side).
    dir
}
