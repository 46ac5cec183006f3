//! `GET /v1/events` (functions/query) against real PostgreSQL and LocalStack S3:
//! days archived by the archiver and days still hot read as one result, paged by
//! cursor, filtered, and never another tenant's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, NaiveDate, Utc};
use lambda_http::http::{HeaderMap, Method};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use stele_archiver::{Archiver, ArchiverConfig, S3Store};
use stele_query::export::jobs::{ExportJob, ExportWorker, SqsJobs};
use stele_query::{lambda_http, Query, QueryConfig};
use stele_store::{partitions, EventStore, PgEventStore, StoredEvent};
use uuid::Uuid;

use crate::support::{self, TestEnv};

const ARCHIVED: [&str; 2] = ["2026-02-20", "2026-02-21"];
const HOT: &str = "2026-02-28";
const RANGE: &str = "from=2026-02-20T00:00:00Z&to=2026-03-01T00:00:00Z";

/// What the query function answers `tenant`'s `GET path_and_query`.
async fn answer(query: &Query, path_and_query: &str, tenant: &str) -> lambda_http::Response<lambda_http::Body> {
    answer_to(query, Method::GET, path_and_query, tenant).await
}

async fn answer_to(
    query: &Query,
    method: Method,
    path_and_query: &str,
    tenant: &str,
) -> lambda_http::Response<lambda_http::Body> {
    let req = stele::local::api_gateway::api_gateway_request(
        &method,
        path_and_query,
        &HeaderMap::new(),
        b"",
        "tenant_id",
        Some(tenant),
    )
    .unwrap();
    query.handle(req).await
}

async fn get(query: &Query, path_and_query: &str, tenant: &str) -> (u16, Value) {
    let resp = answer(query, path_and_query, tenant).await;
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

/// Stores `events` (their day partitions first), then archives every day before
/// `archive_before` with row groups of `row_group_rows` (pages and time ranges skip
/// row groups by their statistics); returns how many days were archived.
async fn store_and_archive(
    env: &TestEnv,
    db: &support::TestDb,
    bucket: &str,
    events: &[StoredEvent],
    days: &[NaiveDate],
    archive_before: NaiveDate,
    row_group_rows: usize,
) -> usize {
    let client = db.migrated_client().await;
    partitions::ensure_days(&client, days).await.unwrap();
    PgEventStore::new(stele_store::pool(&db.store_config()).unwrap())
        .insert_batch(events, &[])
        .await
        .unwrap();
    let mut config = ArchiverConfig::new(bucket.to_string());
    config.row_group_rows = row_group_rows;
    config.batch_rows = row_group_rows;
    config.retention = Utc::now().date_naive().signed_duration_since(archive_before);
    let report = Archiver::with_postgres(
        Arc::new(S3Store::new(env.s3().await, bucket.to_string())),
        db.store_config(),
        config,
    )
    .run(Utc::now(), Instant::now() + Duration::from_secs(600))
    .await;
    report.archived.len()
}

/// The query function over `db` and `bucket`, with `config`'s other settings.
fn query_of(env_s3: aws_sdk_s3::Client, db: &support::TestDb, bucket: &str, config: QueryConfig) -> Query {
    Query::new(
        QueryConfig {
            archive_bucket: Some(bucket.to_string()),
            ..config
        },
        stele_store::pool(&db.store_config()).unwrap(),
    )
    .with_archive(env_s3)
}

/// Two tenants, nine events a day on two archived days and one hot day; two events
/// share each time (the id breaks the tie).
fn fixture_events() -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for tenant in ["acme", "globex"] {
        for day in ARCHIVED.iter().chain([&HOT]) {
            for i in 0..9 {
                let actor = ["u0", "u1", "u2"][i % 3];
                let action = ["user.login", "user.logout", "doc.read"][i / 3];
                let at = format!("{day}T{:02}:00:00Z", 10 + i / 2);
                events.push(event(tenant, &at, action, actor));
            }
        }
    }
    events
}

/// [`fixture_events`] stored in a fresh database, the two February days archived to a
/// new bucket (named after `name`) in row groups of 2: the database, the bucket, the events.
async fn archived_fixture(env: &TestEnv, name: &str) -> (support::TestDb, String, Vec<StoredEvent>) {
    let db = env.fresh_database().await;
    let bucket = support::unique_name(name);
    env.create_bucket(&bucket).await;
    let days: Vec<NaiveDate> = ARCHIVED.iter().chain([&HOT]).map(|d| d.parse().unwrap()).collect();
    let events = fixture_events();
    let archived = store_and_archive(env, &db, &bucket, &events, &days, "2026-02-25".parse().unwrap(), 2).await;
    assert_eq!(archived, 2);
    (db, bucket, events)
}

#[tokio::test]
async fn hot_and_archived_days_page_as_one_result_within_the_tenant() {
    let env = TestEnv::get().await;
    let (db, bucket, events) = archived_fixture(env, "search").await;
    let days: Vec<NaiveDate> = ARCHIVED.iter().chain([&HOT]).map(|d| d.parse().unwrap()).collect();
    let client = db.migrated_client().await;
    let attached = stele_store::search::attached_days(&client).await.unwrap();
    assert!(
        attached.contains(&days[2]) && !attached.contains(&days[0]) && !attached.contains(&days[1]),
        "only the hot day is left in PostgreSQL: {attached:?}"
    );
    let query = query_of(env.s3().await, &db, &bucket, QueryConfig::default());

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

/// A random event of `tenant` on `day`: every searchable field drawn from a few
/// values, so filters match some rows and not others.
fn random_event(rng: &mut StdRng, tenant: &str, day: &str) -> StoredEvent {
    use stele_core::event::{Category, Outcome, Resource};
    let at = format!(
        "{day}T{:02}:{:02}:{:02}Z",
        rng.random_range(0..24),
        rng.random_range(0..60),
        // Few distinct seconds: ties on occurred_at are common, the id breaks them.
        rng.random_range(0..2) * 30
    );
    let action = [
        "user.login",
        "user.logout",
        "user.password.reset",
        "doc.read",
        "doc.write",
        "userx.y",
    ][rng.random_range(0..6)];
    let mut s = event(tenant, &at, action, ["u0", "u1", "u2", "u3"][rng.random_range(0..4)]);
    let e = &mut s.event;
    e.category = [Category::Audit, Category::Security, Category::Application][rng.random_range(0..3)];
    e.outcome = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Denied,
        Outcome::Error,
        Outcome::Unknown,
    ][rng.random_range(0..5)];
    e.resource = rng.random_bool(0.7).then(|| Resource {
        resource_type: ["doc", "user"][rng.random_range(0..2)].into(),
        id: format!("r{}", rng.random_range(0..3)),
        display: None,
    });
    e.correlation_id = rng.random_bool(0.5).then(|| format!("c{}", rng.random_range(0..3)));
    e.source.service = ["auth", "docs"][rng.random_range(0..2)].into();
    s.hash = e.compute_hash();
    s
}

/// A random search: the API's query string and the oracle's JSON for the same filters.
fn random_search(rng: &mut StdRng) -> (String, Value) {
    let tenants = ["acme", "globex", "initech"];
    let tenant = tenants[rng.random_range(0..3)];
    // A range from somewhere in the first archived day to somewhere in the hot days.
    let start: DateTime<Utc> = "2026-02-19T00:00:00Z".parse().unwrap();
    let from = start + chrono::Duration::minutes(rng.random_range(0..4 * 24 * 60));
    let to = from + chrono::Duration::minutes(rng.random_range(1..5 * 24 * 60));
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut params = vec![("from", fmt(from)), ("to", fmt(to))];
    let mut oracle = serde_json::json!({"tenant": tenant, "from": fmt(from), "to": fmt(to)});
    let mut pick = |rng: &mut StdRng, name: &'static str, values: &[&str]| {
        if rng.random_bool(0.3) {
            let v = values[rng.random_range(0..values.len())].to_string();
            params.push((name, v.clone()));
            oracle[name] = Value::String(v);
        }
    };
    pick(rng, "actor_id", &["u0", "u1", "u2", "u3", "nobody"]);
    pick(rng, "category", &["audit", "security", "application"]);
    pick(rng, "outcome", &["success", "failure", "denied", "error", "unknown"]);
    pick(rng, "correlation_id", &["c0", "c1", "c2"]);
    pick(rng, "source_service", &["auth", "docs"]);
    if rng.random_bool(0.3) {
        let t = ["doc", "user"][rng.random_range(0..2)];
        params.push(("resource_type", t.into()));
        oracle["resource_type"] = Value::String(t.into());
        if rng.random_bool(0.5) {
            let id = format!("r{}", rng.random_range(0..3));
            params.push(("resource_id", id.clone()));
            oracle["resource_id"] = Value::String(id);
        }
    }
    match rng.random_range(0..4) {
        0 => {
            let a = ["user.login", "doc.read", "userx.y"][rng.random_range(0..3)];
            params.push(("action", a.into()));
            oracle["action"] = Value::String(a.into());
        }
        1 => {
            let (p, prefix) = [
                ("user.*", "user."),
                ("doc.*", "doc."),
                ("user.password.*", "user.password."),
            ][rng.random_range(0..3)];
            params.push(("action", p.into()));
            oracle["action_prefix"] = Value::String(prefix.into());
        }
        _ => {}
    }
    let asc = rng.random_bool(0.3);
    oracle["order"] = Value::String(if asc { "asc" } else { "desc" }.into());
    if asc {
        params.push(("order", "asc".into()));
    }
    params.push(("limit", rng.random_range(1..40).to_string()));
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    (query, oracle)
}

/// 200 random searches over two archived and two hot days of three tenants give
/// exactly the rows, in exactly the order, DuckDB gives over the same PostgreSQL
/// tables and Parquet files.
#[tokio::test]
async fn random_searches_match_duckdb_over_the_same_tables_and_files() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let bucket = support::unique_name("search-diff");
    env.create_bucket(&bucket).await;
    let day_names = ["2026-02-19", "2026-02-20", "2026-02-26", "2026-02-27"];
    let days: Vec<NaiveDate> = day_names.iter().map(|d| d.parse().unwrap()).collect();
    let mut rng = StdRng::seed_from_u64(17);
    let mut events = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        for day in day_names {
            for _ in 0..40 {
                events.push(random_event(&mut rng, tenant, day));
            }
        }
    }
    let archived = store_and_archive(env, &db, &bucket, &events, &days, "2026-02-24".parse().unwrap(), 8).await;
    assert_eq!(archived, 2);

    let searches: Vec<(String, Value)> = (0..200).map(|_| random_search(&mut rng)).collect();
    // The oracle: DuckDB over the database and a local copy of the bucket.
    let dir = std::env::temp_dir().join(support::unique_name("search-oracle"));
    let s3 = env.s3().await;
    for key in support::archive::list_keys(&s3, &bucket, "").await {
        if key.ends_with(".parquet") {
            let path = dir.join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, support::archive::get(&s3, &bucket, &key).await).unwrap();
        }
    }
    let queries = dir.join("queries.json");
    let oracle: Vec<Value> = searches.iter().map(|(_, o)| o.clone()).collect();
    std::fs::write(&queries, serde_json::to_vec(&oracle).unwrap()).unwrap();
    let out = std::process::Command::new(support::archive::python())
        .arg(support::repo_root().join("tests/python/search_oracle.py"))
        .arg(&db.url)
        .arg(dir.join("audit"))
        .arg(&queries)
        .output()
        .expect("run search_oracle.py");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "search_oracle.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();

    let query = query_of(s3, &db, &bucket, QueryConfig::default());
    let (mut nonempty, mut rows) = (0, 0);
    for ((params, oracle), want) in searches.iter().zip(&answers) {
        let got = all_pages(&query, oracle["tenant"].as_str().unwrap(), params).await;
        assert_eq!(&got, want, "GET /v1/events?{params} (oracle query {oracle})");
        nonempty += usize::from(!want.is_empty());
        rows += want.len();
    }
    // The searches are not vacuous: most find rows, on both sides of the boundary.
    assert!(nonempty >= 60 && rows >= 500, "{nonempty} searches found {rows} rows");
}

/// A `GET /v1/events/export` answer: status, headers and the body's bytes.
async fn export(query: &Query, params: &str, tenant: &str) -> (u16, HeaderMap, Vec<u8>) {
    let resp = answer(query, &format!("/v1/events/export?{params}"), tenant).await;
    (resp.status().as_u16(), resp.headers().clone(), resp.body().to_vec())
}

fn ndjson_ids(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let e: Value = serde_json::from_slice(l).unwrap();
            e["event_id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn exports_hold_every_event_of_the_search_inline_or_behind_a_presigned_url() {
    let env = TestEnv::get().await;
    let (db, bucket, events) = archived_fixture(env, "export").await;
    let query = query_of(env.s3().await, &db, &bucket, QueryConfig::default());

    // Inline NDJSON: every event of the range, hot and archived, as the search pages
    // serve them (same order, same bytes per event).
    let (status, headers, body) = export(&query, RANGE, "acme").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["x-stele-event-count"], "27");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("stele-acme-20260220T000000Z-20260301T000000Z.ndjson"));
    let ids = ndjson_ids(&body);
    assert_eq!(ids, expected(&events, "acme", |_| true, false));
    let (_, page) = get(&query, &format!("/v1/events?{RANGE}&limit=1"), "acme").await;
    let first: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        first, page["events"][0],
        "an exported event is the event the API serves"
    );

    // Filters and order as in a search.
    let (_, _, body) = export(&query, &format!("{RANGE}&actor_id=u1&order=asc"), "acme").await;
    assert_eq!(
        ndjson_ids(&body),
        expected(&events, "acme", |e| e.event.actor.id == "u1", true)
    );

    // CSV: a header and one line per event, in the same order.
    let (status, headers, body) = export(&query, &format!("{RANGE}&format=csv"), "globex").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("tenant_id,event_id,occurred_at,"), "{}", lines[0]);
    let csv_ids: Vec<&str> = lines[1..].iter().map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(csv_ids, expected(&events, "globex", |_| true, false));
    assert!(lines[1..].iter().all(|l| l.starts_with("globex,")));

    // Larger than a response may be: written to the bucket, a 303 to a presigned URL.
    let small = query_of(
        env.s3().await,
        &db,
        &bucket,
        QueryConfig {
            export_inline_max_bytes: 2000,
            ..QueryConfig::default()
        },
    );
    let (status, headers, body) = export(&small, RANGE, "acme").await;
    assert_eq!(status, 303, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let url = headers["location"].to_str().unwrap();
    assert_eq!(answer["url"], url);
    assert_eq!(answer["events"], 27);
    let key = answer["key"].as_str().unwrap();
    assert!(key.starts_with("_exports/tenant_id=acme/"), "{key}");
    let file = support::archive::download(url);
    assert_eq!(answer["bytes"], file.len());
    assert_eq!(ndjson_ids(&file), ids, "the file holds what the inline export held");

    // Without a bucket, an export that outgrows a response is refused, not cut.
    let hot_only = Query::new(
        QueryConfig {
            export_inline_max_bytes: 2000,
            ..QueryConfig::default()
        },
        stele_store::pool(&db.store_config()).unwrap(),
    );
    let (status, _, body) = export(&hot_only, RANGE, "acme").await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));

    // Tenants export only their own events; bad input names the parameter.
    let (_, _, body) = export(&query, RANGE, "initech").await;
    assert!(body.is_empty());
    for (params, named) in [
        (format!("{RANGE}&format=xml"), "`format`"),
        (format!("{RANGE}&limit=10"), "`limit`"),
        (
            "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z".to_string(),
            "31 days",
        ),
    ] {
        let (status, _, body) = export(&query, &params, "acme").await;
        assert_eq!(status, 400, "{params}");
        assert!(String::from_utf8_lossy(&body).contains(named), "{params}");
    }
}

#[tokio::test]
async fn exports_in_an_object_lock_bucket_keep_a_one_day_retention() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let bucket = support::unique_name("export-lock");
    let s3 = env.s3().await;
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let day: NaiveDate = HOT.parse().unwrap();
    let events: Vec<StoredEvent> = fixture_events()
        .into_iter()
        .filter(|e| e.event.occurred_at.date_naive() == day)
        .collect();
    store_and_archive(env, &db, &bucket, &events, &[day], "2026-01-01".parse().unwrap(), 100).await;
    let query = query_of(
        s3.clone(),
        &db,
        &bucket,
        QueryConfig {
            export_inline_max_bytes: 100,
            export_lock_mode: Some("GOVERNANCE".into()),
            ..QueryConfig::default()
        },
    );
    let (status, _, body) = export(&query, RANGE, "acme").await;
    assert_eq!(status, 303, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let retention = s3
        .get_object_retention()
        .bucket(&bucket)
        .key(answer["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let until = retention
        .retention()
        .and_then(|r| r.retain_until_date())
        .unwrap()
        .secs();
    let hours = (until - Utc::now().timestamp()) / 3600;
    assert!((23..=24).contains(&hours), "retained for {hours} h");
    assert_eq!(
        ndjson_ids(&support::archive::download(answer["url"].as_str().unwrap())).len(),
        9
    );
}

/// Delivers each job waiting in `queue` to `worker` as the SQS event source mapping
/// does (one message per batch, `ReportBatchItemFailures`): a message the worker
/// reports failed stays in the queue, visible again after `visibility` seconds.
/// Returns how many were delivered and how many reported failed.
async fn deliver_jobs(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    worker: &ExportWorker,
    visibility: i32,
) -> (usize, usize) {
    let out = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .wait_time_seconds(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let (mut delivered, mut failed) = (0, 0);
    for m in out.messages() {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id().map(str::to_owned);
        record.body = m.body().map(str::to_owned);
        record.attributes = m
            .attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        let mut event = SqsEvent::default();
        event.records = vec![record];
        let response = worker.handle(event, None).await;
        delivered += 1;
        if response.batch_item_failures.is_empty() {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        } else {
            failed += 1;
        }
    }
    (delivered, failed)
}

#[tokio::test]
async fn asynchronous_exports_queue_a_job_the_worker_writes_to_the_bucket() {
    let env = TestEnv::get().await;
    let (db, bucket, _) = archived_fixture(env, "async-export").await;
    let (s3, sqs) = (env.s3().await, env.sqs().await);
    let queue = sqs
        .create_queue()
        .queue_name(support::unique_name("exports"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let config = QueryConfig {
        archive_bucket: Some(bucket.clone()),
        ..QueryConfig::default()
    };
    let pool = stele_store::pool(&db.store_config()).unwrap();
    let query = query_of(s3.clone(), &db, &bucket, QueryConfig::default())
        .with_export_jobs(Arc::new(SqsJobs::new(sqs.clone(), &queue)));
    let worker = ExportWorker::from_config(&config, pool, s3.clone()).unwrap();

    // POST answers 202 with the queued job and where to poll it.
    let params = format!("{RANGE}&format=csv&actor_id=u1");
    let resp = answer_to(&query, Method::POST, &format!("/v1/exports?{params}"), "acme").await;
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["export_id"].as_str().unwrap().to_string();
    let status_url = format!("/v1/exports/{id}");
    assert_eq!(body["status_url"], status_url.as_str());
    assert_eq!(resp.headers()["location"], status_url.as_str());
    let resp = answer(&query, &status_url, "acme").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["retry-after"], "5");
    // Another tenant cannot see it.
    let (status, _) = get(&query, &status_url, "globex").await;
    assert_eq!(status, 404);

    // The worker runs it from the queue; the file is what the synchronous export serves.
    assert_eq!(deliver_jobs(&sqs, &queue, &worker, 30).await, (1, 0));
    let (status, done) = get(&query, &status_url, "acme").await;
    assert_eq!((status, &done["status"]), (200, &Value::from("succeeded")), "{done}");
    let (_, _, inline) = export(&query, &params, "acme").await;
    let file = support::archive::download(done["url"].as_str().unwrap());
    assert_eq!(file, inline);
    let rows = String::from_utf8(file)
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .count()
        - 1;
    assert_eq!(
        (done["events"].as_u64(), done["format"].as_str()),
        (Some(rows as u64), Some("csv"))
    );
    assert!(rows > 0);
    assert!(done["key"].as_str().unwrap().starts_with("_exports/tenant_id=acme/"));

    // A redelivered job that ended is not run again.
    let job = ExportJob {
        export_id: id.parse().unwrap(),
        tenant: "acme".into(),
        params: vec![
            ("from".into(), "2026-02-20T00:00:00Z".into()),
            ("to".into(), "2026-02-21T00:00:00Z".into()),
        ],
    };
    worker.run(&job, 2, None).await.unwrap();
    let (_, again) = get(&query, &status_url, "acme").await;
    assert_eq!(
        (&again["events"], &again["attempts"]),
        (&done["events"], &done["attempts"])
    );

    // A database that is down: the job is delivered again, then fails for good after
    // the last attempt, and says why.
    let unreachable = stele_store::pool(&stele_store::StoreConfig::new("postgres://stele@127.0.0.1:1/none")).unwrap();
    let down = ExportWorker::new(
        unreachable,
        None,
        "audit".into(),
        config.export_bucket(s3.clone()).unwrap(),
        2,
    );
    let resp = answer_to(&query, Method::POST, &format!("/v1/exports?{RANGE}"), "globex").await;
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    let failing_url = format!("/v1/exports/{}", body["export_id"].as_str().unwrap());
    assert_eq!(deliver_jobs(&sqs, &queue, &down, 1).await, (1, 1));
    let (_, retrying) = get(&query, &failing_url, "globex").await;
    assert_eq!(retrying["status"], "running", "{retrying}");
    assert!(
        retrying["error"].as_str().unwrap().contains("attempt 1 failed"),
        "{retrying}"
    );
    // Visible again after a second: long polling waits for it.
    assert_eq!(deliver_jobs(&sqs, &queue, &down, 1).await, (1, 0));
    let (_, failed) = get(&query, &failing_url, "globex").await;
    assert_eq!(
        (&failed["status"], failed["attempts"].as_u64()),
        (&Value::from("failed"), Some(2)),
        "{failed}"
    );
    assert!(failed.get("url").is_none());

    // Bad input names the parameter; without a queue, asynchronous exports are off.
    let resp = answer_to(&query, Method::POST, &format!("/v1/exports?{RANGE}&format=xml"), "acme").await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(String::from_utf8_lossy(resp.body().as_ref()).contains("`format`"));
    let (status, _) = get(&query, "/v1/exports/not-a-uuid", "acme").await;
    assert_eq!(status, 400);
    let no_queue = query_of(s3, &db, &bucket, QueryConfig::default());
    let resp = answer_to(&no_queue, Method::POST, &format!("/v1/exports?{RANGE}"), "acme").await;
    assert_eq!(resp.status().as_u16(), 404);
}

/// An archived day of 45 000 events is one row group of several pages: a search within
/// the day reads only the pages its range can touch (the page index), and a range that
/// straddles a page boundary, with and without an actor, misses nothing.
#[tokio::test]
async fn searches_within_an_archived_day_use_the_page_index_and_miss_nothing() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let bucket = support::unique_name("search-pages");
    env.create_bucket(&bucket).await;
    let day: NaiveDate = "2026-02-20".parse().unwrap();
    let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let events: Vec<StoredEvent> = (0..45_000i64)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i * 1_920);
            let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            event("pages", &at, "doc.read", &format!("u{}", i % 5))
        })
        .collect();
    assert_eq!(
        store_and_archive(
            env,
            &db,
            &bucket,
            &events,
            &[day],
            "2026-02-25".parse().unwrap(),
            1_000_000
        )
        .await,
        1
    );

    // The file really has several occurred_at pages in its one row group.
    let s3 = env.s3().await;
    let keys = support::archive::list_keys(&s3, &bucket, "audit/tenant_id=pages/").await;
    let parquet_key = keys.iter().find(|k| k.ends_with(".parquet")).unwrap();
    let file = support::archive::get(&s3, &bucket, parquet_key).await;
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, options).unwrap();
    let leaf = meta
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "occurred_at")
        .unwrap();
    assert_eq!(meta.metadata().num_row_groups(), 1);
    let pages = meta
        .metadata()
        .page_index_for_row_group(0)
        .offset_index(leaf)
        .unwrap()
        .page_locations()
        .len();
    assert!(pages >= 2, "{pages} pages");

    let query = query_of(s3, &db, &bucket, QueryConfig::default());
    for (from, to) in [
        ("2026-02-20T05:00:00Z", "2026-02-20T06:00:00Z"),
        ("2026-02-20T09:00:00Z", "2026-02-20T13:30:00Z"),
        ("2026-02-20T23:59:00Z", "2026-02-21T00:00:00Z"),
    ] {
        let (lo, hi): (DateTime<Utc>, DateTime<Utc>) = (from.parse().unwrap(), to.parse().unwrap());
        let in_range = |e: &StoredEvent| e.event.occurred_at >= lo && e.event.occurred_at < hi;
        let range = format!("from={from}&to={to}");
        let all = all_pages(&query, "pages", &format!("{range}&limit=1000")).await;
        assert_eq!(all, expected(&events, "pages", in_range, false), "{range}");
        assert!(!all.is_empty(), "{range}");
        let by_actor = all_pages(&query, "pages", &format!("{range}&actor_id=u3&order=asc&limit=1000")).await;
        let u3 = |e: &StoredEvent| in_range(e) && e.event.actor.id == "u3";
        assert_eq!(by_actor, expected(&events, "pages", u3, true), "{range} u3");
    }
}
