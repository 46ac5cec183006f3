//! End to end through `stele dev`, driven as a user would: a child process,
//! HTTP on loopback, then rows read straight from its PostgreSQL.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele::local::{demo, http};
use support::DevProcess;

fn event_with_id(n: u64, id: &str) -> Value {
    let mut event = demo::demo_event(n);
    event["event_id"] = json!(id);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_land_in_postgres_exactly_once_and_bad_ones_nowhere() {
    let mut dev = DevProcess::start(&["--stream", "e2e-events"]);
    let tokens = [
        ("dev-token-acme", "acme"),
        ("dev-token-globex", "globex"),
        ("dev-token-initech", "initech"),
    ];

    // 3 tenants × 8 batches × 100 events, each batch sent twice (a client retry).
    let mut accepted: HashMap<(String, String), String> = HashMap::new();
    let mut n = 0u64;
    for (token, tenant) in tokens {
        for _ in 0..8 {
            let events: Vec<Value> = (0..100)
                .map(|_| {
                    n += 1;
                    event_with_id(n, &uuid::Uuid::now_v7().to_string())
                })
                .collect();
            let body = json!({ "events": events }).to_string();
            for attempt in 0..2 {
                let response = http::post_json(dev.ingest, "/v1/events", Some(token), body.as_bytes())
                    .await
                    .unwrap();
                assert_eq!(response.status, 202, "attempt {attempt}: {}", response.body);
                let answer: Value = serde_json::from_str(&response.body).unwrap();
                for item in answer["accepted"].as_array().expect("accepted list") {
                    let id = item["event_id"].as_str().unwrap().to_string();
                    let hash = item["event_hash"].as_str().unwrap().to_string();
                    // A retry arrives later (a new received_at) but its receipt
                    // names the same hash as the first: the row that is stored.
                    let first = accepted.entry((tenant.to_string(), id)).or_insert_with(|| hash.clone());
                    assert_eq!(*first, hash, "attempt {attempt}: a retry's event_hash");
                }
            }
        }
    }
    assert_eq!(accepted.len(), 2400);

    // A batch with one bad event is refused whole; a forged tenant is refused.
    let mut bad_batch: Vec<Value> = (0..10)
        .map(|i| event_with_id(90_000 + i, &uuid::Uuid::now_v7().to_string()))
        .collect();
    bad_batch[4]["outcome"] = json!("maybe");
    let refused_ids: Vec<String> = bad_batch
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let response = http::post_json(
        dev.ingest,
        "/v1/events",
        Some("dev-token-acme"),
        json!({ "events": bad_batch }).to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.contains("events[4].outcome"), "{}", response.body);
    let mut forged = event_with_id(99_999, &uuid::Uuid::now_v7().to_string());
    forged["tenant_id"] = json!("globex");
    let forged_id = forged["event_id"].as_str().unwrap().to_string();
    let response = http::post_json(
        dev.ingest,
        "/v1/events",
        Some("dev-token-acme"),
        forged.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 403, "{}", response.body);
    let response = http::post_json(
        dev.ingest,
        "/v1/events",
        None,
        demo::demo_event(1).to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 401, "{}", response.body);

    // Wait for the batch-writer to drain the stream.
    let (client, conn) = tokio_postgres::connect(&dev.pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut rows = 0i64;
    while Instant::now() < deadline {
        rows = client
            .query_one("SELECT count(*) FROM audit_events", &[])
            .await
            .unwrap()
            .get(0);
        if rows >= accepted.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(rows, accepted.len() as i64, "every accepted event is stored, once");

    let stored = client
        .query(
            "SELECT tenant_id, event_id::text, encode(event_hash, 'hex') FROM audit_events",
            &[],
        )
        .await
        .unwrap();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for row in &stored {
        let key = (row.get::<_, String>(0), row.get::<_, String>(1));
        assert!(seen.insert(key, row.get(2)).is_none(), "no event is stored twice");
    }
    assert_eq!(
        seen, accepted,
        "the stored rows are exactly the accepted events, with their hashes"
    );
    for id in refused_ids.iter().chain([&forged_id]) {
        assert!(
            !seen.keys().any(|(_, stored_id)| stored_id == id),
            "refused event {id} is not stored"
        );
    }

    // `stele send` posts a file of NDJSON events as a user would.
    let file = std::env::temp_dir().join(format!("stele-send-{}.ndjson", std::process::id()));
    let sent_ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let lines: Vec<String> = sent_ids
        .iter()
        .enumerate()
        .map(|(i, id)| event_with_id(i as u64, id).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
        .args([
            "send",
            "--endpoint",
            &dev.ingest.to_string(),
            "--token",
            "dev-token-globex",
        ])
        .arg(&file)
        .status()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "stele send succeeds");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = 0i64;
    while Instant::now() < deadline && found < 3 {
        found = client
            .query_one(
                "SELECT count(*) FROM audit_events WHERE tenant_id = 'globex' AND event_id::text = ANY($1)",
                &[&sent_ids],
            )
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        found, 3,
        "the events sent with `stele send` are stored for the token's tenant"
    );

    // A forced archive run: the demo events include some two days old (one in
    // ten); with a one-day retention their partition is archived, verified,
    // detached and dropped, and DuckDB reads back exactly what Postgres had.
    let day_rows = client
        .query(
            "SELECT tableoid::regclass::text, tenant_id, count(*) FROM audit_events
              WHERE occurred_at < date_trunc('day', now()) - interval '1 day'
              GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for row in &day_rows {
        *expected.entry(row.get::<_, String>(1)).or_default() += row.get::<_, i64>(2) as u64;
    }
    assert!(
        expected.values().sum::<u64>() >= 200,
        "the demo events include late ones: {expected:?}"
    );
    let archive = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
        .args([
            "archive",
            "--database-url",
            &dev.pg_url,
            "--aws-endpoint",
            &dev.aws_endpoint,
        ])
        .args(["--retention-days", "1", "--max-lateness-hours", "24"])
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "stele archive: {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE occurred_at < date_trunc('day', now()) - interval '1 day'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the archived partitions are gone from PostgreSQL");
    let s3 = stele::local::aws::s3_client(&stele::local::aws::sdk_config(&dev.aws_endpoint).await);
    let duck = support::archive::duckdb_readback(&s3, "stele-archive", "audit").await;
    let read: std::collections::BTreeMap<String, u64> = duck["tenants"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tenant, v)| (tenant.clone(), v["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(read, expected, "DuckDB reads the archived rows per tenant");

    // An asynchronous export of acme's events, hot and archived: queued, run by stele dev,
    // then served as a presigned URL of a file holding exactly the events it counts.
    let (from, to) = (
        (chrono::Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%dT00:00:00Z"),
        (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%dT00:00:00Z"),
    );
    let started = http::post_json(
        dev.ingest,
        &format!("/v1/exports?from={from}&to={to}"),
        Some("dev-token-acme"),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(started.status, 202, "{}", started.body);
    let status_url = serde_json::from_str::<Value>(&started.body).unwrap()["status_url"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let answer = http::get(dev.ingest, &status_url, Some("dev-token-acme"))
            .await
            .unwrap();
        let job: Value = serde_json::from_str(&answer.body).unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let file = support::archive::download(job["url"].as_str().unwrap());
    let lines: Vec<Value> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(Some(lines.len() as u64), job["events"].as_u64());
    assert!(lines.len() >= 800 && lines.iter().all(|e| e["tenant_id"] == "acme"));

    assert!(dev.interrupt(), "Ctrl-C stops stele dev cleanly");
    let gone = tokio_postgres::connect(&dev.pg_url, tokio_postgres::NoTls).await;
    assert!(gone.is_err(), "its PostgreSQL is stopped");
}

/// Issue 18: `stele dev --token 'tok=a#b/../c'` used to store events for the
/// tenant `a#b/../c`. A tenant outside the tenant id rule is refused at start,
/// before PostgreSQL or LocalStack are started, with the rule in the message.
#[test]
fn a_dev_token_whose_tenant_breaks_the_tenant_id_rule_is_refused_at_start() {
    for pair in ["tok=a#b/../c", "tok=acme\u{200B}", "tok=a b"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
            .args(["dev", "--port", "0", "--exit-when-ready", "--token", pair])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{pair}: stele dev started");
        assert!(
            stderr.contains(stele_core::TENANT_ID_RULE) && !stderr.contains("starting PostgreSQL"),
            "{pair}: {stderr}"
        );
    }
}
