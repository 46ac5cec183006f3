//! Per-tenant quotas (issue 18 item 4) against LocalStack: the real handler,
//! the DynamoDB gate on a table of LocalStack's DynamoDB and a real Kinesis
//! stream. Two handler instances share the table as two Lambda instances would.

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele::local::api_gateway::api_gateway_request;
use stele::local::aws;
use stele_core::SealedEvent;
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode};
use stele_ingest::lambda_http::{Body, Request, Response};
use stele_ingest::{DynamoDbQuota, Ingest, IngestConfig, KinesisSink, Quota};
use support::stream::TestStream as Stream;
use support::{unique_name, TestEnv};

fn post(events: usize, tenant: &str) -> Request {
    let events: Vec<Value> = (0..events)
        .map(|i| {
            json!({
                "occurred_at": stele_core::event::timestamp::format(&chrono::Utc::now()),
                "category": "audit",
                "action": format!("quota.test.{i}"),
                "outcome": "success",
                "actor": { "id": "user-1", "type": "user" },
                "source": { "service": "quota-test" },
            })
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = json!({ "events": events }).to_string();
    api_gateway_request(
        &Method::POST,
        "/v1/events",
        &headers,
        body.as_bytes(),
        "tenant_id",
        Some(tenant),
    )
    .unwrap()
}

fn accepted_ids(resp: &Response<Body>) -> Vec<String> {
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    body["accepted"]
        .as_array()
        .map(|a| a.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Each test its own table, so that tests running together do not share counters.
async fn gate(env: &TestEnv, quota: Quota) -> DynamoDbQuota {
    let table = unique_name("quota");
    let client = aws_sdk_dynamodb::Client::new(&env.aws_config().await);
    aws::create_quota_table(&client, &table)
        .await
        .expect("create quota table");
    DynamoDbQuota::new(client, table, quota, Duration::from_secs(5))
}

fn instance(stream: &Stream, gate: DynamoDbQuota) -> Ingest<KinesisSink, DynamoDbQuota> {
    Ingest::new(IngestConfig::new(&stream.name), stream.sink()).with_quota(gate)
}

#[tokio::test]
async fn a_tenant_over_quota_gets_429_others_do_not_and_the_next_window_admits_again() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    // 4 events/s with a burst of 20: windows of 5 s admitting 20 events.
    let quota = Quota::new(4, Some(20)).unwrap();
    let first = instance(&stream, gate(env, quota).await);
    // A second "Lambda instance" on the same table (its own in-process cache).
    let second_gate = {
        let table = first_table(&first);
        DynamoDbQuota::new(
            aws_sdk_dynamodb::Client::new(&env.aws_config().await),
            table,
            quota,
            Duration::from_secs(5),
        )
    };
    let second = instance(&stream, second_gate);

    // Start early in a window, so the steps below share one.
    let now = chrono::Utc::now();
    let wait = quota.window(now).retry_after(now);
    if wait < 4 {
        tokio::time::sleep(Duration::from_millis(u64::from(wait) * 1000 + 50)).await;
    }
    let started = Instant::now();
    let window = quota.window(chrono::Utc::now());

    let mut on_stream_expected: BTreeSet<String> = BTreeSet::new();
    let a1 = first.handle(post(15, "acme")).await;
    assert_eq!(a1.status(), StatusCode::ACCEPTED);
    on_stream_expected.extend(accepted_ids(&a1));

    // 15 + 10 > 20: refused by the table's condition, through the other instance.
    let a2 = second.handle(post(10, "acme")).await;
    assert_eq!(a2.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = a2.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = serde_json::from_slice(a2.body().as_ref()).unwrap();
    assert_eq!(body["error"], "quota_exceeded");
    assert_eq!(body["retry_after_seconds"], retry_after);
    assert!(body.get("accepted").is_none());

    // Another tenant in the same window is unaffected.
    let b1 = second.handle(post(20, "globex")).await;
    assert_eq!(b1.status(), StatusCode::ACCEPTED);
    on_stream_expected.extend(accepted_ids(&b1));

    // acme still fits 5 more (15 + 5 = 20): the window is now full ...
    let a3 = first.handle(post(5, "acme")).await;
    assert_eq!(a3.status(), StatusCode::ACCEPTED);
    on_stream_expected.extend(accepted_ids(&a3));
    // ... and one more event is refused by either instance.
    assert_eq!(
        first.handle(post(1, "acme")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        second.handle(post(1, "acme")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        quota.window(chrono::Utc::now()),
        window,
        "the steps took longer than a window ({:?}); the test proves nothing",
        started.elapsed()
    );

    // After the window, acme is admitted again.
    let left = window.retry_after(chrono::Utc::now());
    tokio::time::sleep(Duration::from_millis(u64::from(left) * 1000 + 100)).await;
    let a4 = second.handle(post(3, "acme")).await;
    assert_eq!(a4.status(), StatusCode::ACCEPTED);
    on_stream_expected.extend(accepted_ids(&a4));

    // The stream holds exactly the admitted events: nothing of a refused request.
    let mut per_tenant = std::collections::BTreeMap::<String, usize>::new();
    let on_stream: BTreeSet<String> = stream
        .read_all()
        .await
        .into_iter()
        .map(|(key, data)| {
            *per_tenant.entry(key).or_default() += 1;
            SealedEvent::open(&data).unwrap().event.event_id.to_string()
        })
        .collect();
    assert_eq!(on_stream, on_stream_expected);
    assert_eq!(per_tenant.get("acme"), Some(&23));
    assert_eq!(per_tenant.get("globex"), Some(&20));
    stream.delete().await;
}

/// The table name of an instance's gate (tests only need it to share the table).
fn first_table(ingest: &Ingest<KinesisSink, DynamoDbQuota>) -> String {
    ingest.quota().table().to_owned()
}

/// Fail-open: with the table missing (every call fails), requests are admitted.
#[tokio::test]
async fn a_failing_quota_table_admits_requests() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let client = aws_sdk_dynamodb::Client::new(&env.aws_config().await);
    let gate = DynamoDbQuota::new(
        client,
        unique_name("no-such-table"),
        Quota::new(1, None).unwrap(),
        Duration::from_secs(5),
    );
    let ingest = instance(&stream, gate);
    for _ in 0..3 {
        assert_eq!(ingest.handle(post(1, "acme")).await.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(stream.read_all().await.len(), 3);
    stream.delete().await;
}

/// What the gate costs per request (docs/BENCHMARKS.md): the same single-event
/// request through the real handler and Kinesis, without a gate and with the
/// DynamoDB gate, interleaved in one run; and the gate's round trip alone.
///
/// cargo test -p stele --test it quota::cost -- --ignored --nocapture
#[tokio::test]
#[ignore = "benchmark: run by hand, numbers in docs/BENCHMARKS.md"]
async fn cost_of_the_quota_gate_per_request() {
    use stele_ingest::QuotaGate;
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let rounds: usize = std::env::var("STELE_QUOTA_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let quota = Quota::new(1_000_000, None).unwrap();
    let plain = Ingest::new(IngestConfig::new(&stream.name), stream.sink());
    let gated = instance(&stream, gate(env, quota).await);
    let alone = gate(env, quota).await;
    let (mut without, mut with, mut charge) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds + 20 {
        let t = Instant::now();
        assert_eq!(plain.handle(post(1, "acme")).await.status(), StatusCode::ACCEPTED);
        let a = t.elapsed();
        let t = Instant::now();
        assert_eq!(gated.handle(post(1, "acme")).await.status(), StatusCode::ACCEPTED);
        let b = t.elapsed();
        let t = Instant::now();
        assert_eq!(
            alone.charge("acme", 1, chrono::Utc::now()).await,
            stele_ingest::Verdict::Admitted
        );
        let c = t.elapsed();
        if i >= 20 {
            // the first rounds warm the connections
            without.push(a);
            with.push(b);
            charge.push(c);
        }
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        (
            ms(v[v.len() / 2]),
            ms(v[v.len() * 95 / 100]),
            ms(v.iter().sum::<Duration>()) / v.len() as f64,
        )
    };
    let (w, g, c) = (stats(&mut without), stats(&mut with), stats(&mut charge));
    println!("quota cost, {rounds} single-event requests each, LocalStack (Kinesis: kinesis-local; DynamoDB: moto)");
    println!("| path | median ms | p95 ms | mean ms |");
    println!("|---|---|---|---|");
    println!("| handler, no gate | {:.2} | {:.2} | {:.2} |", w.0, w.1, w.2);
    println!("| handler, DynamoDB gate | {:.2} | {:.2} | {:.2} |", g.0, g.1, g.2);
    println!("| gate alone (UpdateItem) | {:.2} | {:.2} | {:.2} |", c.0, c.1, c.2);
    println!(
        "ratio with/without (median): {:.2}; (mean): {:.2}",
        g.0 / w.0,
        g.2 / w.2
    );
    stream.delete().await;
}
