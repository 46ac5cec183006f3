//! End-to-end load generator for `stele dev` (run by `bench/e2e/run.sh`).
//!
//! One run, three phases on the same kind of events (the demo events, fresh ids):
//! 1. `stele`: C clients post batches of B events to the dev ingest front on
//!    loopback for D seconds; per-request latency, accepted events/s, and every
//!    second the row count in PostgreSQL, which gives the lag from `202` to row
//!    (the time between the moment the n-th event was accepted and the moment
//!    the n-th row was there). After the load, the drain is followed until every
//!    accepted event is a row (bounded).
//! 2. `emulator`: the same C callers PutRecords the same kind of sealed records
//!    straight to a second stream of the same LocalStack for D seconds: the
//!    emulator's own ceiling, to which phase 1 is compared.
//! 3. `inprocess`: the ingest handler with a sink that hands each request's
//!    records to `BatchWriter::process` on the same PostgreSQL (no emulator),
//!    C concurrent requests for D seconds: what stele itself sustains here.
//!
//! Writes `<out>/timeseries.csv`, `<out>/summary.json` and `<out>/plot.svg`.
//! Every loop is bounded in time and count and traffic goes only to the
//! loopback addresses given.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use stele::local::{aws, demo, http};
use stele_batch_writer::{BatchWriter, MemoryDeadLetters};
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue, Method};
use stele_ingest::{EventSink, Ingest, IngestConfig, PutResult, Record};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Ingest front of `stele dev` (loopback only).
    #[arg(long)]
    ingest: SocketAddr,
    /// PostgreSQL URL printed by `stele dev`.
    #[arg(long)]
    pg: String,
    /// LocalStack endpoint printed by `stele dev`.
    #[arg(long)]
    aws_endpoint: String,
    /// Bearer tokens to rotate over.
    #[arg(long, default_value = "dev-token-acme,dev-token-globex,dev-token-initech")]
    tokens: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of load per phase.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Upper bound on requests per phase (all clients together).
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Longest wait for the stream to drain into PostgreSQL after the load.
    #[arg(long, default_value_t = 600)]
    drain_seconds: u64,
    /// Shards of the emulator-ceiling stream (match `stele dev --shards`).
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Output directory.
    #[arg(long, default_value = "bench/e2e/out")]
    out: String,
    /// Skip phases (comma list of stele, emulator, inprocess).
    #[arg(long, default_value = "")]
    skip: String,
}

fn assert_loopback(addr: &str) {
    let ok = addr.contains("127.0.0.1") || addr.contains("localhost") || addr.contains("[::1]");
    assert!(ok, "refusing to send load to a non-loopback address: {addr}");
}

static EVENT_N: AtomicU64 = AtomicU64::new(0);

fn batch_of(n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let k = EVENT_N.fetch_add(1, Ordering::Relaxed);
            let mut e = demo::demo_event(k);
            e["event_id"] = json!(uuid::Uuid::now_v7().to_string());
            e
        })
        .collect()
}

#[derive(Default)]
struct Phase {
    latencies_us: Mutex<Vec<u64>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    requests: AtomicU64,
    /// (seconds since start, cumulative accepted) at each 202.
    accept_curve: Mutex<Vec<(f64, u64)>>,
}

impl Phase {
    fn record(&self, start: Instant, began: Instant, ok: bool, events: u64) {
        let us = began.elapsed().as_micros() as u64;
        if ok {
            self.latencies_us.lock().unwrap().push(us);
            let total = self.accepted.fetch_add(events, Ordering::Relaxed) + events;
            self.accept_curve
                .lock()
                .unwrap()
                .push((start.elapsed().as_secs_f64(), total));
        } else {
            self.refused.fetch_add(events, Ordering::Relaxed);
        }
    }

    fn summary(&self, seconds: f64) -> Value {
        let mut l = self.latencies_us.lock().unwrap().clone();
        l.sort_unstable();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        };
        let accepted = self.accepted.load(Ordering::Relaxed);
        json!({
            "seconds": round2(seconds),
            "requests": self.requests.load(Ordering::Relaxed),
            "accepted_events": accepted,
            "refused_or_503_events": self.refused.load(Ordering::Relaxed),
            "transport_errors": self.errors.load(Ordering::Relaxed),
            "events_per_s": round2(accepted as f64 / seconds.max(1e-9)),
            "latency_ms": { "p50": round2(pct(0.5)), "p90": round2(pct(0.9)), "p99": round2(pct(0.99)), "max": round2(pct(1.0)) },
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn count_rows(client: &tokio_postgres::Client) -> u64 {
    client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .map(|r| r.get::<_, i64>(0) as u64)
        .unwrap_or(0)
}

/// One time-series sample.
#[derive(Clone, Debug)]
struct Sample {
    phase: &'static str,
    t: f64,
    accepted: u64,
    rows: u64,
    lag: Option<f64>,
}

/// Phase 1: HTTP load against stele dev, rows sampled every second.
async fn phase_stele(args: &Args, samples: &mut Vec<Sample>) -> Value {
    let (pg, conn) = tokio_postgres::connect(&args.pg, tokio_postgres::NoTls)
        .await
        .expect("connect to stele dev's PostgreSQL");
    tokio::spawn(conn);
    let rows_before = count_rows(&pg).await;
    let tokens: Vec<String> = args.tokens.split(',').map(str::to_string).collect();
    let phase = Arc::new(Phase::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let budget = Arc::new(AtomicU64::new(args.max_requests));
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (phase, budget, token) = (phase.clone(), budget.clone(), tokens[c % tokens.len()].clone());
        let (addr, batch) = (args.ingest, args.batch);
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let body = json!({ "events": batch_of(batch) }).to_string();
                let began = Instant::now();
                phase.requests.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(
                    Duration::from_secs(30),
                    http::post_json(addr, "/v1/events", Some(&token), body.as_bytes()),
                )
                .await
                {
                    Ok(Ok(r)) => phase.record(start, began, r.status == 202, batch as u64),
                    _ => {
                        phase.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Sample rows every second during the load and the drain.
    let drain_deadline = deadline + Duration::from_secs(args.drain_seconds);
    let mut load_done = false;
    let mut drained_at = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !load_done && clients.iter().all(|c| c.is_finished()) {
            load_done = true;
        }
        let rows = count_rows(&pg).await.saturating_sub(rows_before);
        let accepted = phase.accepted.load(Ordering::Relaxed);
        let t = start.elapsed().as_secs_f64();
        let lag = lag_at(&phase.accept_curve.lock().unwrap(), rows, t);
        samples.push(Sample {
            phase: "stele",
            t,
            accepted,
            rows,
            lag,
        });
        if load_done && rows >= accepted {
            drained_at = Some(t);
            break;
        }
        if Instant::now() > drain_deadline {
            break;
        }
    }
    for c in clients {
        let _ = c.await;
    }
    let load_seconds = phase
        .accept_curve
        .lock()
        .unwrap()
        .last()
        .map(|(t, _)| *t)
        .unwrap_or(args.seconds as f64)
        .max(1.0);
    let lags: Vec<f64> = samples.iter().filter_map(|s| s.lag).collect();
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
    };
    let accepted = phase.accepted.load(Ordering::Relaxed);
    let rows = samples.last().map(|s| s.rows).unwrap_or(0);
    let mut summary = phase.summary(load_seconds);
    summary["rows_written"] = json!(rows);
    summary["all_accepted_are_rows"] = json!(rows >= accepted);
    summary["drained_at_s"] = json!(drained_at.map(round2));
    summary["rows_per_s_end_to_end"] = json!(drained_at.map(|t| round2(rows as f64 / t.max(1e-9))));
    summary["lag_202_to_row_s"] = json!({
        "p50": pick(0.5).map(round2), "p99": pick(0.99).map(round2), "max": pick(1.0).map(round2),
        "samples": lags.len(),
    });
    summary
}

/// Lag at time `t` for the `rows`-th row: `t` minus when the `rows`-th event was accepted.
fn lag_at(curve: &[(f64, u64)], rows: u64, t: f64) -> Option<f64> {
    if rows == 0 {
        return None;
    }
    let i = curve.partition_point(|(_, cum)| *cum < rows);
    curve.get(i).map(|(ta, _)| (t - ta).max(0.0))
}

/// Sealed records of `n` demo events, as the ingest handler makes them.
fn sealed_records(n: usize, tenant: &str) -> Vec<(String, Vec<u8>)> {
    let now = chrono::Utc::now();
    batch_of(n)
        .iter()
        .map(|v| {
            let ctx = stele_core::Context {
                tenant_id: tenant,
                now,
                window: stele_core::TimeWindow::default(),
                id_if_missing: None,
            };
            let sealed = stele_core::validate_event(v, &ctx)
                .expect("demo events are valid")
                .seal();
            (tenant.to_string(), sealed.record)
        })
        .collect()
}

/// Phase 2: the emulator's own PutRecords ceiling on a second stream.
async fn phase_emulator(args: &Args) -> Value {
    let sdk = aws::sdk_config(&args.aws_endpoint).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let stream = format!("e2e-ceiling-{}", std::process::id());
    aws::create_stream(&kinesis, &stream, args.shards)
        .await
        .expect("create the ceiling stream");
    let phase = Arc::new(Phase::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let budget = Arc::new(AtomicU64::new(args.max_requests));
    let tenants = ["acme", "globex", "initech"];
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (phase, budget, kinesis, stream) = (phase.clone(), budget.clone(), kinesis.clone(), stream.clone());
        let (batch, tenant) = (args.batch, tenants[c % tenants.len()]);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let entries: Vec<_> = sealed_records(batch, tenant)
                    .into_iter()
                    .map(|(key, data)| {
                        aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                            .partition_key(key)
                            .data(aws_sdk_kinesis::primitives::Blob::new(data))
                            .build()
                            .expect("entry")
                    })
                    .collect();
                let began = Instant::now();
                phase.requests.fetch_add(1, Ordering::Relaxed);
                match kinesis
                    .put_records()
                    .stream_name(&stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        let failed = out.failed_record_count().unwrap_or(0).max(0) as u64;
                        phase.record(start, began, true, batch as u64 - failed);
                        phase.refused.fetch_add(failed, Ordering::Relaxed);
                    }
                    Err(_) => {
                        phase.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = kinesis
        .delete_stream()
        .stream_name(&stream)
        .enforce_consumer_deletion(true)
        .send()
        .await;
    phase.summary(seconds)
}

/// Hands each request's records straight to the batch-writer: no emulator.
struct DirectSink {
    writer: BatchWriter<stele_store::PgEventStore, MemoryDeadLetters>,
    seq: AtomicU64,
    inserted: AtomicU64,
}

impl EventSink for DirectSink {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        let mut batch = Vec::with_capacity(records.len());
        let mut seqs = Vec::with_capacity(records.len());
        for r in records {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed).to_string();
            batch.push(stele_batch_writer::kinesis::stream_record(
                "arn:aws:kinesis:us-east-1:000000000000:stream/inprocess",
                "shardId-000000000000",
                &seq,
                &r.partition_key,
                r.data.to_vec(),
                chrono::Utc::now(),
            ));
            seqs.push(seq);
        }
        let event = stele_batch_writer::kinesis::event(batch);
        let (response, report) = self.writer.process(event).await;
        self.inserted.fetch_add(report.inserted, Ordering::Relaxed);
        let failed: std::collections::HashSet<String> = response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect();
        seqs.into_iter()
            .map(|seq| {
                if failed.contains(&seq) {
                    PutResult::failed("WriterFailed", "the batch-writer reported the record", true)
                } else {
                    PutResult::Stored {
                        shard_id: "shardId-000000000000".into(),
                        sequence_number: seq,
                    }
                }
            })
            .collect()
    }
}

/// Phase 3: ingest handler → batch-writer → PostgreSQL, in this process.
async fn phase_inprocess(args: &Args) -> Value {
    let store_config = stele_store::StoreConfig::new(args.pg.clone());
    let writer = BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&store_config).expect("pool")),
        MemoryDeadLetters::default(),
    );
    let sink = DirectSink {
        writer,
        seq: AtomicU64::new(1),
        inserted: AtomicU64::new(0),
    };
    let ingest = Arc::new(Ingest::new(IngestConfig::new("inprocess"), sink));
    let phase = Arc::new(Phase::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let budget = Arc::new(AtomicU64::new(args.max_requests));
    let tenants = ["acme", "globex", "initech"];
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (phase, budget, ingest) = (phase.clone(), budget.clone(), ingest.clone());
        let (batch, tenant) = (args.batch, tenants[c % tenants.len()]);
        tasks.push(tokio::spawn(async move {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let body = json!({ "events": batch_of(batch) }).to_string();
                let began = Instant::now();
                phase.requests.fetch_add(1, Ordering::Relaxed);
                let req = stele::local::api_gateway::api_gateway_request(
                    &Method::POST,
                    "/v1/events",
                    &headers,
                    body.as_bytes(),
                    "tenant_id",
                    Some(tenant),
                )
                .expect("request");
                let resp = ingest.handle(req).await;
                phase.record(start, began, resp.status().as_u16() == 202, batch as u64);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut summary = phase.summary(seconds);
    let inserted = ingest.sink().inserted.load(Ordering::Relaxed);
    summary["rows_inserted"] = json!(inserted);
    summary["rows_per_s"] = json!(round2(inserted as f64 / seconds.max(1e-9)));
    summary
}

fn write_csv(path: &str, samples: &[Sample]) -> std::io::Result<()> {
    let mut out = String::from("phase,t_s,accepted,rows,accepted_per_s,rows_per_s,lag_s\n");
    let mut prev: Option<&Sample> = None;
    for s in samples {
        let (a_rate, r_rate) = match prev {
            Some(p) if s.t > p.t => (
                (s.accepted - p.accepted.min(s.accepted)) as f64 / (s.t - p.t),
                (s.rows - p.rows.min(s.rows)) as f64 / (s.t - p.t),
            ),
            _ => (s.accepted as f64 / s.t.max(1e-9), s.rows as f64 / s.t.max(1e-9)),
        };
        out.push_str(&format!(
            "{},{:.2},{},{},{:.1},{:.1},{}\n",
            s.phase,
            s.t,
            s.accepted,
            s.rows,
            a_rate,
            r_rate,
            s.lag.map(|l| format!("{l:.2}")).unwrap_or_default()
        ));
        prev = Some(s);
    }
    std::fs::write(path, out)
}

/// A two-panel SVG (throughput, lag) drawn from the samples, with the ceiling
/// and in-process rates as reference lines.
fn write_svg(path: &str, samples: &[Sample], ceiling: Option<f64>, inprocess: Option<f64>) -> std::io::Result<()> {
    let (w, h, left, panel_h, gap) = (900.0, 560.0, 70.0, 200.0, 70.0);
    let right = w - 30.0;
    let t_max = samples.iter().map(|s| s.t).fold(1.0, f64::max);
    let mut rates = Vec::new();
    let mut prev: Option<&Sample> = None;
    for s in samples {
        if let Some(p) = prev {
            let dt = (s.t - p.t).max(1e-9);
            rates.push((
                s.t,
                (s.accepted.saturating_sub(p.accepted)) as f64 / dt,
                (s.rows.saturating_sub(p.rows)) as f64 / dt,
            ));
        }
        prev = Some(s);
    }
    let r_max = rates
        .iter()
        .flat_map(|(_, a, r)| [*a, *r])
        .chain(ceiling)
        .chain(inprocess)
        .fold(1.0, f64::max)
        * 1.1;
    let lag_max = samples.iter().filter_map(|s| s.lag).fold(1.0, f64::max) * 1.1;
    let x = |t: f64| left + (right - left) * t / t_max;
    let y1 = |v: f64| 40.0 + panel_h * (1.0 - v / r_max);
    let y2 = |v: f64| 40.0 + panel_h + gap + panel_h * (1.0 - v / lag_max);
    let line = |pts: Vec<(f64, f64)>, color: &str, dash: &str| {
        let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" {dash} points=\"{}\"/>\n",
            d.join(" ")
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (top, title, max, unit) in [
        (
            40.0,
            "throughput (events/s): accepted (202) and rows written to PostgreSQL",
            r_max,
            "/s",
        ),
        (
            40.0 + panel_h + gap,
            "lag from 202 to row in PostgreSQL (s)",
            lag_max,
            "s",
        ),
    ] {
        svg.push_str(&format!(
            "<text x=\"{left}\" y=\"{}\" font-weight=\"bold\">{title}</text>\n<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#999\"/>\n",
            top - 10.0,
            right - left
        ));
        for i in 0..=4 {
            let v = max * f64::from(i) / 4.0;
            let yy = top + panel_h * (1.0 - f64::from(i) / 4.0);
            svg.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{right}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>\n",
                left - 5.0,
                yy + 4.0,
                // Seconds of lag are small: keep a decimal where whole numbers would repeat.
                if max < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
            ));
        }
        for i in 0..=5 {
            let t = t_max * f64::from(i) / 5.0;
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0} s</text>\n",
                x(t),
                top + panel_h + 15.0
            ));
        }
    }
    svg.push_str(&line(
        rates.iter().map(|(t, a, _)| (x(*t), y1(*a))).collect(),
        "#1f77b4",
        "",
    ));
    svg.push_str(&line(
        rates.iter().map(|(t, _, r)| (x(*t), y1(*r))).collect(),
        "#d62728",
        "",
    ));
    let mut legend = vec![
        ("#1f77b4", "accepted (202) events/s".to_string()),
        ("#d62728", "rows/s".to_string()),
    ];
    if let Some(c) = ceiling {
        svg.push_str(&line(
            vec![(x(0.0), y1(c)), (x(t_max), y1(c))],
            "#7f7f7f",
            "stroke-dasharray=\"6 4\"",
        ));
        legend.push(("#7f7f7f", format!("emulator PutRecords ceiling {c:.0}/s")));
    }
    if let Some(p) = inprocess {
        svg.push_str(&line(
            vec![(x(0.0), y1(p)), (x(t_max), y1(p))],
            "#2ca02c",
            "stroke-dasharray=\"2 3\"",
        ));
        legend.push(("#2ca02c", format!("in-process ingest→writer→PG {p:.0}/s")));
    }
    svg.push_str(&line(
        samples.iter().filter_map(|s| s.lag.map(|l| (x(s.t), y2(l)))).collect(),
        "#9467bd",
        "",
    ));
    for (i, (color, text)) in legend.iter().enumerate() {
        let ly = 40.0 + panel_h + 30.0 + 0.0 * i as f64;
        let lx = left + 200.0 * i as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\">{text}</text>\n",
            ly - 3.0,
            lx + 16.0,
            ly + 1.0
        ));
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    assert_loopback(&args.ingest.to_string());
    assert_loopback(&args.pg);
    assert_loopback(&args.aws_endpoint);
    std::fs::create_dir_all(&args.out).expect("output directory");
    let skip: Vec<&str> = args.skip.split(',').collect();
    let mut samples = Vec::new();
    let mut summary = json!({
        "clients": args.clients, "batch": args.batch, "seconds": args.seconds,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if !skip.contains(&"stele") {
        eprintln!("e2e: phase 1/3: stele dev over HTTP ({} s)…", args.seconds);
        summary["stele"] = phase_stele(&args, &mut samples).await;
    }
    if !skip.contains(&"emulator") {
        eprintln!("e2e: phase 2/3: LocalStack PutRecords ceiling ({} s)…", args.seconds);
        summary["emulator_ceiling"] = phase_emulator(&args).await;
    }
    if !skip.contains(&"inprocess") {
        eprintln!(
            "e2e: phase 3/3: in-process ingest → batch-writer → PostgreSQL ({} s)…",
            args.seconds
        );
        summary["inprocess"] = phase_inprocess(&args).await;
    }
    let rate = |summary: &Value, k: &str| summary[k]["events_per_s"].as_f64();
    let (stele_rate, ceiling, inprocess) = (
        rate(&summary, "stele"),
        rate(&summary, "emulator_ceiling"),
        rate(&summary, "inprocess"),
    );
    if let (Some(s), Some(c)) = (stele_rate, ceiling) {
        summary["stele_over_emulator_ceiling"] = json!(round2(s / c.max(1e-9)));
    }
    if let (Some(s), Some(p)) = (stele_rate, inprocess) {
        summary["stele_over_inprocess"] = json!(round2(s / p.max(1e-9)));
    }
    let out = |f: &str| format!("{}/{f}", args.out);
    write_csv(&out("timeseries.csv"), &samples).expect("write csv");
    write_svg(&out("plot.svg"), &samples, ceiling, inprocess).expect("write svg");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(out("summary.json"), &text).expect("write summary");
    println!("{text}");
}
