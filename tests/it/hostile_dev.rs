//! A subset of the hostile corpus through `stele dev` end to end: every refused
//! request carries event ids that must never reach PostgreSQL. Sentinel batches
//! from every tenant are sent last; once their rows are in, everything sent
//! before them on the same shards has been processed, so absence is proven
//! without a timed wait.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele::local::{demo, http};
use support::DevProcess;

fn event(id: &str) -> Value {
    let mut e = demo::demo_event(1);
    e["event_id"] = json!(id);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hostile_requests_never_reach_postgres() {
    let mut dev = DevProcess::start(&["--stream", "hostile-events"]);
    let mut refused_ids = Vec::new();
    let mut id = || {
        let id = uuid::Uuid::now_v7().to_string();
        refused_ids.push(id.clone());
        id
    };
    let mut bodies: Vec<(&str, Option<&str>, Vec<u8>, u16)> = Vec::new();
    let mut forged = event(&id());
    forged["tenant_id"] = json!("globex");
    bodies.push((
        "forged tenant",
        Some("dev-token-acme"),
        forged.to_string().into_bytes(),
        403,
    ));
    let mut batch = vec![event(&id()), event(&id()), event(&id())];
    batch[1]["outcome"] = json!("maybe");
    bodies.push((
        "one bad event in a batch",
        Some("dev-token-acme"),
        json!({ "events": batch }).to_string().into_bytes(),
        400,
    ));
    let mut nul = event(&id());
    nul["actor"]["id"] = json!("a\u{0}b");
    bodies.push(("NUL", Some("dev-token-globex"), nul.to_string().into_bytes(), 400));
    let mut big = event(&id());
    big["metadata"]["n"] = json!(9_007_199_254_740_993u64);
    bodies.push(("2^53+1", Some("dev-token-initech"), big.to_string().into_bytes(), 400));
    let dup = event(&id()).to_string();
    let dup = dup.replacen('{', "{\"outcome\":\"failure\",", 1);
    bodies.push(("duplicate key", Some("dev-token-acme"), dup.into_bytes(), 400));
    let mut utf8 = event(&id()).to_string().into_bytes();
    utf8.extend_from_slice(b" \xff");
    bodies.push(("invalid utf-8", Some("dev-token-acme"), utf8, 400));
    bodies.push(("no token", None, event(&id()).to_string().into_bytes(), 401));
    bodies.push((
        "unknown token",
        Some("nope"),
        event(&id()).to_string().into_bytes(),
        401,
    ));
    let mut deep = event(&id());
    deep["changes"] = json!({ "after": (0..40).fold(json!(1), |v, _| json!({ "n": v })) });
    bodies.push(("too deep", Some("dev-token-globex"), deep.to_string().into_bytes(), 400));
    let many: Vec<Value> = (0..501).map(|_| event(&id())).collect();
    bodies.push((
        "501 events",
        Some("dev-token-acme"),
        json!({ "events": many }).to_string().into_bytes(),
        413,
    ));
    let mut late = event(&id());
    late["occurred_at"] = json!("2000-01-01T00:00:00Z");
    bodies.push(("too old", Some("dev-token-initech"), late.to_string().into_bytes(), 400));

    for (name, token, body, status) in &bodies {
        let r = http::post_json(dev.ingest, "/v1/events", *token, body).await.unwrap();
        assert_eq!(r.status, *status, "{name}: {}", r.body);
    }

    // Sentinels from every tenant, last.
    let mut sentinels = Vec::new();
    for token in ["dev-token-acme", "dev-token-globex", "dev-token-initech"] {
        let events: Vec<Value> = (0..5)
            .map(|_| {
                let id = uuid::Uuid::now_v7().to_string();
                sentinels.push(id.clone());
                event(&id)
            })
            .collect();
        let r = http::post_json(
            dev.ingest,
            "/v1/events",
            Some(token),
            json!({ "events": events }).to_string().as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 202, "{}", r.body);
    }

    let (client, conn) = tokio_postgres::connect(&dev.pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut found = 0i64;
    while Instant::now() < deadline {
        found = client
            .query_one(
                "SELECT count(*) FROM audit_events WHERE event_id::text = ANY($1)",
                &[&sentinels],
            )
            .await
            .unwrap()
            .get(0);
        if found == sentinels.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(found, sentinels.len() as i64, "the sentinel events are rows");
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE event_id::text = ANY($1)",
            &[&refused_ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no refused event is in PostgreSQL");
    let total: i64 = client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, sentinels.len() as i64, "PostgreSQL holds only the sentinels");
    assert!(dev.interrupt(), "Ctrl-C stops stele dev cleanly");
}
