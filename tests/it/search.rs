//! `GET /v1/events` (functions/query) against real PostgreSQL and LocalStack S3:
//! days archived by the archiver and days still hot read as one result, paged by
//! cursor, filtered, and never another tenant's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use lambda_http::http::{HeaderMap, Method};
use serde_json::Value;
use stele_archiver::{Archiver, ArchiverConfig, S3Store};
use stele_query::{lambda_http, Query, QueryConfig};
use stele_store::{partitions, EventStore, PgEventStore, StoredEvent};
use uuid::Uuid;

use crate::support::{self, TestEnv};

const ARCHIVED: [&str; 2] = ["2026-02-20", "2026-02-21"];
const HOT: &str = "2026-02-28";
const RANGE: &str = "from=2026-02-20T00:00:00Z&to=2026-03-01T00:00:00Z";

async fn get(query: &Query, path_and_query: &str, tenant: &str) -> (u16, Value) {
    let req = stele::local::api_gateway::api_gateway_request(
        &Method::GET,
        path_and_query,
        &HeaderMap::new(),
        b"",
        "tenant_id",
        Some(tenant),
    )
    .unwrap();
    let resp = query.handle(req).await;
    let body = serde_json::from_slice(resp.body().as_ref()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

/// One event with the given fields, sealed (its hash is over what is stored).
fn event(tenant: &str, at: &str, action: &str, actor: &str) -> StoredEvent {
    let mut e = crate::batch_writer::event_with_id(tenant, Uuid::new_v4(), at, action).event;
    e.actor.id = actor.to_string();
    StoredEvent {
        hash: e.compute_hash(),
        event: e,
        kinesis_shard: None,
        kinesis_seq: None,
    }
}

/// Every page of a search, following `next_cursor`; the ids in the order served.
async fn all_pages(query: &Query, tenant: &str, params: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/v1/events?{params}&cursor={c}"),
            None => format!("/v1/events?{params}"),
        };
        let (status, body) = get(query, &path, tenant).await;
        assert_eq!(status, 200, "{path}: {body}");
        for e in body["events"].as_array().unwrap() {
            assert_eq!(e["tenant_id"], tenant, "{e}");
            assert_eq!(e["event_hash"].as_str().unwrap().len(), 64, "{e}");
            ids.push(e["event_id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
    panic!("more than 100 pages");
}

/// The ids of `events` of `tenant` that pass `keep`, newest first (ties by id).
fn expected(events: &[StoredEvent], tenant: &str, keep: impl Fn(&StoredEvent) -> bool, asc: bool) -> Vec<String> {
    let mut v: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event.tenant_id == tenant && keep(e))
        .collect();
    v.sort_by_key(|e| (e.event.occurred_at, e.event.event_id));
    if !asc {
        v.reverse();
    }
    v.iter().map(|e| e.event.event_id.to_string()).collect()
}

#[tokio::test]
async fn hot_and_archived_days_page_as_one_result_within_the_tenant() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let bucket = support::unique_name("search");
    env.create_bucket(&bucket).await;
    let days: Vec<NaiveDate> = ARCHIVED.iter().chain([&HOT]).map(|d| d.parse().unwrap()).collect();
    partitions::ensure_days(&client, &days).await.unwrap();
    let mut events = Vec::new();
    for tenant in ["acme", "globex"] {
        for day in ARCHIVED.iter().chain([&HOT]) {
            for i in 0..9 {
                let actor = ["u0", "u1", "u2"][i % 3];
                let action = ["user.login", "user.logout", "doc.read"][i / 3];
                // Two events share each time: the id breaks the tie.
                let at = format!("{day}T{:02}:00:00Z", 10 + i / 2);
                events.push(event(tenant, &at, action, actor));
            }
        }
    }
    PgEventStore::new(stele_store::pool(&db.store_config()).unwrap())
        .insert_batch(&events, &[])
        .await
        .unwrap();

    // Archive the February days: their partitions are dropped.
    let mut config = ArchiverConfig::new(bucket.clone());
    // Row groups of 2 rows: pages and time ranges skip row groups by their statistics.
    config.row_group_rows = 2;
    config.batch_rows = 2;
    config.retention = Utc::now()
        .date_naive()
        .signed_duration_since(NaiveDate::from_ymd_opt(2026, 2, 25).unwrap());
    let report = Archiver::with_postgres(
        Arc::new(S3Store::new(env.s3().await, bucket.clone())),
        db.store_config(),
        config,
    )
    .run(Utc::now(), Instant::now() + Duration::from_secs(600))
    .await;
    assert_eq!(report.archived.len(), 2, "{report:?}");
    let attached = stele_store::search::attached_days(&client).await.unwrap();
    assert!(
        attached.contains(&days[2]) && !attached.contains(&days[0]) && !attached.contains(&days[1]),
        "only the hot day is left in PostgreSQL: {attached:?}"
    );

    let query = Query::new(
        QueryConfig {
            archive_bucket: Some(bucket.clone()),
            ..Default::default()
        },
        stele_store::pool(&db.store_config()).unwrap(),
    )
    .with_archive(env.s3().await);

    // Every event of the tenant, newest first, across the archived/hot boundary,
    // in pages of 5 (page edges fall inside days and between tied times).
    let all = all_pages(&query, "acme", &format!("{RANGE}&limit=5")).await;
    assert_eq!(all, expected(&events, "acme", |_| true, false));
    assert_eq!(all.len(), 27);
    let asc = all_pages(&query, "acme", &format!("{RANGE}&limit=4&order=asc")).await;
    assert_eq!(asc, expected(&events, "acme", |_| true, true));

    // Filters, the same on archived and hot rows.
    let by_actor = all_pages(&query, "acme", &format!("{RANGE}&actor_id=u1&limit=2")).await;
    assert_eq!(by_actor, expected(&events, "acme", |e| e.event.actor.id == "u1", false));
    let by_prefix = all_pages(&query, "acme", &format!("{RANGE}&action=user.*")).await;
    assert_eq!(
        by_prefix,
        expected(&events, "acme", |e| e.event.action.starts_with("user."), false)
    );
    let exact = all_pages(&query, "acme", &format!("{RANGE}&action=doc.read&actor_id=u2")).await;
    assert_eq!(
        exact,
        expected(
            &events,
            "acme",
            |e| e.event.action == "doc.read" && e.event.actor.id == "u2",
            false
        )
    );
    let one_day = all_pages(&query, "globex", "from=2026-02-21T11:00:00Z&to=2026-02-21T13:00:00Z").await;
    let (lo, hi): (DateTime<Utc>, DateTime<Utc>) = (
        "2026-02-21T11:00:00Z".parse().unwrap(),
        "2026-02-21T13:00:00Z".parse().unwrap(),
    );
    assert_eq!(
        one_day,
        expected(
            &events,
            "globex",
            |e| e.event.occurred_at >= lo && e.event.occurred_at < hi,
            false
        )
    );
    assert_eq!(one_day.len(), 4);

    // Cursors: bound to the tenant and the query, refused when altered.
    let (_, first) = get(&query, &format!("/v1/events?{RANGE}&limit=3"), "acme").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (status, body) = get(&query, &format!("/v1/events?{RANGE}&limit=3&cursor={cursor}"), "globex").await;
    assert_eq!(status, 400, "another tenant's cursor: {body}");
    let (status, _) = get(
        &query,
        &format!("/v1/events?{RANGE}&actor_id=u1&cursor={cursor}"),
        "acme",
    )
    .await;
    assert_eq!(status, 400, "a cursor of other filters");
    let mut altered = cursor.clone().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let (status, body) = get(&query, &format!("/v1/events?{RANGE}&cursor={altered}"), "acme").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("`cursor`"), "{body}");
    // The page size may change between pages; the cursor still holds.
    let (status, next) = get(&query, &format!("/v1/events?{RANGE}&limit=10&cursor={cursor}"), "acme").await;
    assert_eq!(status, 200);
    assert_eq!(next["events"][0]["event_id"].as_str().unwrap(), all[3]);

    // Bad input: a 400 naming the parameter; no unbounded scans.
    for (params, named) in [
        ("", "`from`"),
        ("from=2026-02-20T00:00:00Z", "`to`"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "31 days"),
        (&format!("{RANGE}&limit=5000") as &str, "`limit`"),
        (&format!("{RANGE}&outcome=maybe"), "`outcome`"),
        (&format!("{RANGE}&tenant_id=globex"), "unknown parameter `tenant_id`"),
    ] {
        let (status, body) = get(&query, &format!("/v1/events?{params}"), "acme").await;
        assert_eq!(status, 400, "{params}: {body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{params}: {body}");
    }

    // Tenants see only their own events, hot and archived.
    let globex = all_pages(&query, "globex", RANGE).await;
    assert_eq!(globex, expected(&events, "globex", |_| true, false));
    let acme_ids: HashMap<&String, ()> = all.iter().map(|i| (i, ())).collect();
    assert!(globex.iter().all(|id| !acme_ids.contains_key(id)));
    assert!(all_pages(&query, "initech", RANGE).await.is_empty());
}
