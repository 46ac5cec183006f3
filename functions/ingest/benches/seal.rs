//! Throughput of the ingest hot path on one core, against a plain serde_json
//! baseline over the same events, in one run.
//!
//! - baseline: `serde_json::from_slice::<Value>` + `serde_json::to_vec` per event
//! - stele:    `stele_ingest::ingest`, the function the handler runs, per
//!   one-event request: media type, strict parse (duplicate keys refused),
//!   `validate_event`, seal (canonical JSON per RFC 8785, SHA-256, the record
//!   with `event_hash`) and the record under its partition key
//! - open: `SealedEvent::open` of the sealed records (what the batch-writer
//!   does per record) against `serde_json::from_slice::<Value>` of them
//!
//! Run: `cargo bench -p stele-ingest --bench seal` (release profile, single thread).
//! Profile one side alone: `STELE_BENCH_ONLY=stele` (or `open`) `perf record <bench binary>`.
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use stele_core::event::timestamp;
use stele_core::SealedEvent;
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue};
use stele_ingest::{ingest, IngestConfig};

const EVENTS: usize = 20_000;
const ROUNDS: usize = 7;
const CATEGORIES: [&str; 3] = ["audit", "security", "application"];

fn events() -> Vec<Vec<u8>> {
    let now = timestamp::format(&Utc::now());
    (0..EVENTS)
        .map(|i| {
            let mut e = json!({
                "event_id": uuid::Uuid::now_v7(),
                "occurred_at": now,
                "category": CATEGORIES[i % 3],
                "action": format!("document.action_{}", i % 17),
                "outcome": "success",
                "actor": { "id": format!("user-{i}"), "type": "user", "ip": "192.0.2.7",
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
            serde_json::to_vec(&e).unwrap_or_default()
        })
        .collect()
}

fn time(mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed());
    }
    best
}

fn main() {
    let inputs = events();
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let config = IngestConfig::new("bench");
    let now = Utc::now();
    // Correctness guard: every event must pass, or the stele side measures errors.
    for input in &inputs {
        ingest(&headers, input, "tenant-a", now, &config).expect("bench event is accepted");
    }

    // `STELE_BENCH_ONLY=stele` (or `open`) runs that side alone, for a profiler.
    let only = std::env::var("STELE_BENCH_ONLY").ok();
    let only_stele = only.as_deref() == Some("stele");
    let only_open = only.as_deref() == Some("open");
    let baseline = time(|| {
        if only_stele || only_open {
            return;
        }
        for input in &inputs {
            let v: Value = serde_json::from_slice(black_box(input)).unwrap_or(Value::Null);
            black_box(serde_json::to_vec(&v).unwrap_or_default());
        }
    });
    let stele = time(|| {
        if only_open {
            return;
        }
        for input in &inputs {
            black_box(ingest(&headers, black_box(input), "tenant-a", now, &config).ok());
        }
    });
    // The batch-writer's side: open the sealed records (parse, re-check the
    // canonical form, re-hash) against a plain serde_json parse of them.
    let records: Vec<Vec<u8>> = inputs
        .iter()
        .filter_map(|input| ingest(&headers, input, "tenant-a", now, &config).ok())
        .flatten()
        .map(|sealed| sealed.record.data.to_vec())
        .collect();
    for record in &records {
        SealedEvent::open(record).expect("a sealed record opens");
    }
    let parse_records = time(|| {
        if only_stele || only_open {
            return;
        }
        for record in &records {
            black_box(serde_json::from_slice::<Value>(black_box(record)).ok());
        }
    });
    let open = time(|| {
        if only_stele {
            return;
        }
        for record in &records {
            black_box(SealedEvent::open(black_box(record)).ok());
        }
    });
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!(
        "events: {EVENTS} (avg {} bytes of JSON), best of {ROUNDS} rounds, one thread",
        bytes / EVENTS
    );
    println!(
        "baseline serde_json parse+serialise : {:>10.0} events/s  ({:.2} µs/event)",
        rate(baseline),
        baseline.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "stele ingest (parse+validate+seal)  : {:>10.0} events/s  ({:.2} µs/event)",
        rate(stele),
        stele.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "ratio stele/baseline throughput     : {:.2}",
        rate(stele) / rate(baseline)
    );
    println!(
        "baseline serde_json parse of records: {:>10.0} records/s ({:.2} µs/record)",
        rate(parse_records),
        parse_records.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "stele SealedEvent::open             : {:>10.0} records/s ({:.2} µs/record)",
        rate(open),
        open.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "ratio open/parse throughput         : {:.2}",
        rate(open) / rate(parse_records)
    );
}
