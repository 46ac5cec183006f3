//! The ingest handler against a real Kinesis stream (LocalStack): what a client
//! gets back and what lands on the stream.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use serde_json::{json, Value};
use stele::local::api_gateway::api_gateway_request;
use stele_core::canonical::to_canonical_vec;
use stele_core::SealedEvent;
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode};
use stele_ingest::lambda_http::{Body, Response};
use stele_ingest::{FaultySink, HotTenants, Ingest, IngestConfig, KinesisSink, RetryPolicy};
use support::{unique_name, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stream of its own for one test, deleted at the end.
struct Stream {
    name: String,
    kinesis: aws_sdk_kinesis::Client,
}

impl Stream {
    async fn new(env: &TestEnv, shards: i32) -> Self {
        let name = unique_name("ingest");
        env.create_stream(&name, shards).await;
        Self {
            name,
            kinesis: env.kinesis().await,
        }
    }

    fn sink(&self) -> KinesisSink {
        KinesisSink::new(self.kinesis.clone(), &self.name)
    }

    /// Every record on the stream, as (partition key, data), shard by shard.
    async fn read_all(&self) -> Vec<(String, Vec<u8>)> {
        let shards = self.kinesis.list_shards().stream_name(&self.name).send().await.unwrap();
        let mut out = Vec::new();
        for shard in shards.shards() {
            let mut iterator = self
                .kinesis
                .get_shard_iterator()
                .stream_name(&self.name)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator()
                .map(str::to_owned);
            while let Some(it) = iterator {
                let page = self.kinesis.get_records().shard_iterator(it).send().await.unwrap();
                for r in page.records() {
                    out.push((
                        r.partition_key().unwrap_or_default().to_owned(),
                        r.data().as_ref().to_vec(),
                    ));
                }
                if page.records().is_empty() || page.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
        }
        out
    }

    async fn delete(self) {
        let _ = self
            .kinesis
            .delete_stream()
            .stream_name(&self.name)
            .enforce_consumer_deletion(true)
            .send()
            .await;
    }
}

fn event(action: &str) -> Value {
    json!({
        "occurred_at": stele_core::event::timestamp::format(&chrono::Utc::now()),
        "category": "audit",
        "action": action,
        "outcome": "success",
        "actor": { "id": "user-1", "type": "user", "ip": "10.0.0.1" },
        "resource": { "type": "document", "id": "doc-9" },
        "metadata": { "b": 1, "a": "x" },
        "source": { "service": "docs", "version": "1.2.3" },
    })
}

fn post(body: &Value, tenant: Option<&str>) -> stele_ingest::lambda_http::Request {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = body.to_string();
    api_gateway_request(
        &Method::POST,
        "/v1/events",
        &headers,
        body.as_bytes(),
        "tenant_id",
        tenant,
    )
    .unwrap()
}

fn json_body(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).unwrap()
}

/// Check a stream record is canonical, hash-consistent, and return it opened.
fn open_canonical(data: &[u8]) -> SealedEvent {
    let value: Value = serde_json::from_slice(data).unwrap();
    assert_eq!(
        to_canonical_vec(&value),
        data,
        "record is not in RFC 8785 canonical form"
    );
    SealedEvent::open(data).unwrap()
}

fn fast_retries(deadline_ms: u64) -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_millis(deadline_ms),
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        max_attempts: 10,
    }
}

#[tokio::test]
async fn single_and_batch_posts_put_exact_canonical_records_keyed_by_tenant() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 2).await;
    let ingest = Ingest::new(IngestConfig::new(&stream.name), stream.sink());

    let single = ingest.handle(post(&event("user.login"), Some("acme"))).await;
    assert_eq!(single.status(), StatusCode::ACCEPTED);
    let batch_body = json!({ "events": [event("doc.read"), event("doc.update"), event("doc.delete")] });
    let batch = ingest.handle(post(&batch_body, Some("globex"))).await;
    assert_eq!(batch.status(), StatusCode::ACCEPTED);

    let mut answered: Vec<(String, String, String)> = Vec::new();
    for (resp, tenant) in [(&single, "acme"), (&batch, "globex")] {
        for a in json_body(resp)["accepted"].as_array().unwrap() {
            answered.push((
                tenant.to_owned(),
                a["event_id"].as_str().unwrap().to_owned(),
                a["event_hash"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(answered.len(), 4);

    let mut on_stream: Vec<(String, String, String)> = Vec::new();
    let mut actions = Vec::new();
    for (key, data) in stream.read_all().await {
        let sealed = open_canonical(&data);
        assert_eq!(key, sealed.event.tenant_id, "partition key is the tenant");
        actions.push(sealed.event.action.clone());
        on_stream.push((key, sealed.event.event_id.to_string(), sealed.hash.to_hex()));
    }
    answered.sort();
    on_stream.sort();
    assert_eq!(
        on_stream, answered,
        "the stream holds exactly the accepted events, ids and hashes"
    );
    actions.sort();
    assert_eq!(actions, vec!["doc.delete", "doc.read", "doc.update", "user.login"]);
    stream.delete().await;
}

#[tokio::test]
async fn a_batch_with_one_bad_event_is_refused_whole_with_all_problems_and_puts_nothing() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let ingest = Ingest::new(IngestConfig::new(&stream.name), stream.sink());

    let mut bad = event("doc.read");
    bad["outcome"] = json!("maybe");
    bad["actor"] = json!({ "type": "user" });
    bad["colour"] = json!("red");
    let resp = ingest
        .handle(post(&json!({ "events": [event("doc.read"), bad] }), Some("acme")))
        .await;

    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json_body(&resp);
    assert_eq!(body["error"], "validation_failed");
    let mut problems: Vec<(u64, String, String)> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["index"].as_u64().unwrap(),
                p["path"].as_str().unwrap().to_owned(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        vec![
            (1, "events[1].actor.id".into(), "required".into()),
            (1, "events[1].colour".into(), "unknown_field".into()),
            (1, "events[1].outcome".into(), "invalid_value".into()),
        ]
    );
    assert!(
        stream.read_all().await.is_empty(),
        "nothing of a refused batch is on the stream"
    );
    stream.delete().await;
}

#[tokio::test]
async fn a_body_naming_another_tenant_is_refused_and_puts_nothing() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let ingest = Ingest::new(IngestConfig::new(&stream.name), stream.sink());

    let mut foreign = event("user.login");
    foreign["tenant_id"] = json!("globex");
    let resp = ingest
        .handle(post(&json!({ "events": [event("doc.read"), foreign] }), Some("acme")))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(&resp)["problems"][0]["code"], "tenant_mismatch");

    let anonymous = ingest.handle(post(&event("user.login"), None)).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let mut own = event("user.login");
    own["tenant_id"] = json!("acme");
    let resp = ingest.handle(post(&own, Some("acme"))).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "naming one's own tenant is fine");
    let records = stream.read_all().await;
    assert_eq!(records.len(), 1);
    assert_eq!(open_canonical(&records[0].1).event.tenant_id, "acme");
    stream.delete().await;
}

#[tokio::test]
async fn only_records_that_failed_are_sent_again_and_202_comes_once_all_are_in() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let flaky_id = "0190f0b4-1111-7000-8000-00000000f1a4";
    let sink = FaultySink::new(stream.sink()).fail(flaky_id, 2);
    let ingest = Ingest::new(IngestConfig::new(&stream.name), sink).with_policy(fast_retries(5_000));

    let mut flaky = event("doc.update");
    flaky["event_id"] = json!(flaky_id);
    let resp = ingest
        .handle(post(
            &json!({ "events": [event("doc.read"), flaky, event("doc.delete")] }),
            Some("acme"),
        ))
        .await;

    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let calls = ingest.sink().calls();
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 1, 1], "the retries carry only the failed record");
    for retry in &calls[1..] {
        assert!(String::from_utf8_lossy(&retry[0].data).contains(flaky_id));
    }
    let ids: Vec<String> = stream
        .read_all()
        .await
        .iter()
        .map(|(_, d)| open_canonical(d).event.event_id.to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each event is on the stream exactly once: {ids:?}");
    assert_eq!(ids.iter().filter(|id| *id == flaky_id).count(), 1);
    stream.delete().await;
}

#[tokio::test]
async fn records_that_never_get_in_make_a_503_naming_them_and_a_resend_completes() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let stuck_id = "0190f0b4-2222-7000-8000-0000000057c4";
    let mut cfg = IngestConfig::new(&stream.name);
    cfg.retry_after_secs = 3;
    let sink = FaultySink::new(stream.sink()).fail(stuck_id, u32::MAX);
    // The attempt limit, not the deadline, ends the retries: a short deadline made
    // a slow first PutRecords on a loaded machine a `Timeout` for every record.
    let ingest = Ingest::new(cfg, sink).with_policy(fast_retries(5_000));

    let mut stuck = event("doc.update");
    stuck["event_id"] = json!(stuck_id);
    let request = json!({ "events": [event("doc.read"), stuck] });
    let resp = ingest.handle(post(&request, Some("acme"))).await;

    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body = json_body(&resp);
    assert_eq!(
        body["not_accepted"],
        json!([{ "index": 1, "event_id": stuck_id, "reason": "ProvisionedThroughputExceededException" }])
    );
    let first_id = body["event_ids"][0].as_str().unwrap().to_owned();
    let on_stream = stream.read_all().await;
    assert_eq!(on_stream.len(), 1, "only the event that got in is on the stream");
    assert_eq!(open_canonical(&on_stream[0].1).event.event_id.to_string(), first_id);

    // The client resends with the ids it was given, through a healthy sink.
    let healthy = Ingest::new(IngestConfig::new(&stream.name), stream.sink());
    let mut resend = request.clone();
    resend["events"][0]["event_id"] = json!(first_id);
    let resp = healthy.handle(post(&resend, Some("acme"))).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut ids: Vec<String> = stream
        .read_all()
        .await
        .iter()
        .map(|(_, d)| open_canonical(d).event.event_id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        2,
        "after dedup by event_id both events are in, with stable ids"
    );
    stream.delete().await;
}

#[tokio::test]
async fn a_hot_tenant_is_spread_over_numbered_partition_keys() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 2).await;
    let mut cfg = IngestConfig::new(&stream.name);
    cfg.hot_tenants = HotTenants::parse("acme=4").unwrap();
    let ingest = Ingest::new(cfg, stream.sink());

    let events: Vec<Value> = (0..40).map(|_| event("doc.read")).collect();
    let resp = ingest.handle(post(&json!({ "events": events }), Some("acme"))).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut keys: Vec<String> = stream.read_all().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 40);
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 1, "40 events over 4 keys use more than one: {keys:?}");
    assert!(
        keys.iter()
            .all(|k| ["acme#0", "acme#1", "acme#2", "acme#3"].contains(&k.as_str())),
        "{keys:?}"
    );
    stream.delete().await;
}

/// One HTTP/1.1 exchange over a fresh connection; returns (status, headers text, body).
async fn http(addr: std::net::SocketAddr, raw: &[u8]) -> (u16, String, Vec<u8>) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

#[tokio::test]
async fn the_local_gateway_serves_the_handler_with_bearer_tokens_as_tenants() {
    let env = TestEnv::get().await;
    let stream = Stream::new(env, 1).await;
    let ingest = Arc::new(Ingest::new(IngestConfig::new(&stream.name), stream.sink()));
    let tenants = Arc::new([("tok-acme".to_owned(), "acme".to_owned())].into_iter().collect());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stele::local::api_gateway::serve(listener, ingest, tenants, async {
        let _ = stopped.await;
    }));

    let body = event("user.login").to_string();
    let request = |token: &str| {
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, head, reply) = http(addr, request("tok-acme").as_bytes()).await;
    assert_eq!(status, 202, "{head}");
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    let (status, _, _) = http(addr, request("tok-unknown").as_bytes()).await;
    assert_eq!(status, 401);
    let (status, _, health) = http(addr, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!((status, health), (200, br#"{"status":"ok"}"#.to_vec()));

    let records = stream.read_all().await;
    assert_eq!(records.len(), 1);
    let sealed = open_canonical(&records[0].1);
    assert_eq!(reply["accepted"][0]["event_hash"], sealed.hash.to_hex());
    assert_eq!(sealed.event.tenant_id, "acme");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    stream.delete().await;
}
