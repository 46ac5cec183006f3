//! `stele-client` against the real pipeline: `stele dev` as a child process
//! (ingest HTTP front → LocalStack Kinesis → batch-writer → PostgreSQL), rows
//! read straight from its PostgreSQL.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use stele_client::{Actor, Client, DropReason, Emitted, Event, Outcome, Resource, RetryPolicy, SpillConfig};
use support::DevProcess;

const TOKEN: &str = "dev-token-acme";
const TENANT: &str = "acme";

fn event(task: usize, n: usize) -> Event {
    Event::audit("document.update")
        .actor(Actor::user(format!("user-{task}")).ip("192.0.2.10"))
        .resource(Resource::new("document", format!("doc-{n}")))
        .outcome(Outcome::Success)
        .metadata("task", task)
        .metadata("n", n)
        .changes(serde_json::json!({ "rev": n }), serde_json::json!({ "rev": n + 1 }))
        .correlation_id(format!("burst-{task}"))
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to stele dev's PostgreSQL");
    tokio::spawn(conn);
    client
}

/// `event_id → copies` of the tenant's rows once at least `want` are there (or at the deadline).
async fn stored_ids(url: &str, want: usize) -> HashMap<String, i64> {
    let client = pg(url).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows = client
            .query(
                "SELECT event_id::text, count(*) FROM audit_events WHERE tenant_id = $1 GROUP BY 1",
                &[&TENANT],
            )
            .await
            .expect("query audit_events");
        let ids: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if ids.len() >= want || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn assert_exactly(stored: &HashMap<String, i64>, expected: &HashSet<String>) {
    let duplicated: Vec<_> = stored.iter().filter(|(_, n)| **n != 1).collect();
    assert!(duplicated.is_empty(), "stored more than once: {duplicated:?}");
    let stored: HashSet<String> = stored.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&stored).take(5).collect();
    let extra: Vec<_> = stored.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_many_tasks_is_stored_exactly_once_and_shutdown_sends_the_rest() {
    let dev = DevProcess::start(&["--stream", "client-burst"]);
    let client = Client::builder(format!("http://{}", dev.ingest))
        .token(TOKEN)
        .service("client-test")
        // Nothing leaves by age: a batch goes when full (500), the rest only at shutdown.
        .max_batch_age(Duration::from_secs(3600))
        // LocalStack's Kinesis takes ~2 000 records/s: a generous deadline, not a speed claim.
        .shutdown_timeout(Duration::from_secs(120))
        .build()
        .expect("client");

    let (tasks, per_task) = (16, 203);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(per_task);
            for n in 0..per_task {
                let e = event(task, n);
                ids.push(e.id().to_string());
                assert_eq!(client.emit(e), Emitted::Queued);
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ids
        }));
    }
    let mut expected = HashSet::new();
    for h in handles {
        expected.extend(h.await.expect("task"));
    }
    // One event that must be confirmed: its receipt names the stored hash.
    let confirmed = Event::login_failed("user-7").actor(Actor::user("user-7").ip("198.51.100.4"));
    let receipt = client.emit_sync(confirmed).await.expect("202 for emit_sync");
    expected.insert(receipt.event_id.to_string());

    client.shutdown().await.expect("shutdown sends the queue in time");
    let stats = client.stats();
    assert_eq!(stats.queued, (tasks * per_task) as u64);
    assert_eq!(stats.sent, (tasks * per_task) as u64, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(client.emit(event(0, 0)), Emitted::Dropped(DropReason::Closed));
    assert!(client.compressing(), "the ingest took gzip bodies");

    let stored = stored_ids(&dev.pg_url, expected.len()).await;
    assert_exactly(&stored, &expected);
    let hash: String = pg(&dev.pg_url)
        .await
        .query_one(
            "SELECT encode(event_hash, 'hex') FROM audit_events WHERE event_id = $1",
            &[&receipt.event_id],
        )
        .await
        .expect("the confirmed event is stored")
        .get(0);
    assert_eq!(hash, receipt.event_hash);

    // The tenant exports them again, asynchronously: the file the export hands out holds
    // every one of them.
    let reader = Client::builder(format!("http://{}", dev.ingest))
        .token(TOKEN)
        .build()
        .expect("client");
    let now = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let query = format!(
        "from={}&to={}&format=csv",
        at(now - chrono::Duration::hours(1)),
        at(now + chrono::Duration::hours(1))
    );
    let mut job = reader.start_export(&query).await.expect("202 for the export");
    assert_eq!(job.status, "queued");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !job.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = reader.export_status(job.export_id).await.expect("the export's status");
    }
    assert_eq!(job.status, "succeeded", "{job:?}");
    let csv = String::from_utf8(support::archive::download(job.url.as_deref().unwrap())).unwrap();
    let exported: HashSet<String> = csv
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(job.events, Some(exported.len() as u64));
    assert!(
        expected.is_subset(&exported),
        "{} of {} exported",
        exported.len(),
        expected.len()
    );
}

/// A loopback port nobody listens on (until `stele dev` is started on it).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_endpoint_down_events_are_spilled_and_delivered_when_it_returns() {
    let port = free_port();
    let spill = std::env::temp_dir().join(format!("stele-client-spill-{}-{port}", std::process::id()));
    let client = Client::builder(format!("http://127.0.0.1:{port}"))
        .token(TOKEN)
        .service("client-test")
        .retry(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
        .max_batch_events(100)
        .spill(SpillConfig::new(&spill))
        .replay_interval(Duration::from_millis(500))
        .build()
        .expect("client");

    let mut expected = HashSet::new();
    for n in 0..250 {
        let e = event(n % 4, n);
        expected.insert(e.id().to_string());
        client.emit(e);
    }
    client.flush().await.expect("flush");
    let stats = client.stats();
    assert_eq!((stats.sent, stats.spilled), (0, 250), "{stats:?}");
    assert!(spill.exists(), "the spill file holds them");

    // The endpoint comes up on that port.
    let dev = DevProcess::start(&["--stream", "client-spill", "--port", &port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(120);
    // The file is rewritten (here: removed) after a replay turn's last batch is
    // counted, so wait for both.
    while (client.stats().replayed < 250 || spill.exists()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.replayed, stats.dropped.total()),
        (250, 250, 0),
        "{stats:?}"
    );
    assert!(!spill.exists(), "the delivered spill file is removed");

    let stored = stored_ids(&dev.pg_url, expected.len()).await;
    assert_exactly(&stored, &expected);
    client.shutdown().await.expect("shutdown");
}

/// A current-thread runtime: the sender task cannot run during the emit loop,
/// so exactly the queue's capacity is taken and the rest is counted, not waited for.
#[tokio::test]
async fn a_full_queue_drops_with_a_counted_reason_instead_of_blocking() {
    let dev = DevProcess::start(&["--stream", "client-full"]);
    let client = Client::builder(format!("http://{}", dev.ingest))
        .token(TOKEN)
        .service("client-test")
        .queue_capacity(50)
        .build()
        .expect("client");
    let mut queued = HashSet::new();
    let mut dropped = 0;
    for n in 0..500 {
        let e = event(0, n);
        let id = e.id().to_string();
        match client.emit(e) {
            Emitted::Queued => {
                queued.insert(id);
            }
            Emitted::Dropped(reason) => {
                assert_eq!(reason, DropReason::QueueFull);
                dropped += 1;
            }
        }
    }
    assert_eq!((queued.len(), dropped), (50, 450));
    let stats = client.stats();
    assert_eq!((stats.queued, stats.dropped.queue_full), (50, 450));

    client.flush().await.expect("flush");
    assert_eq!(client.stats().sent, 50);
    let stored = stored_ids(&dev.pg_url, queued.len()).await;
    assert_exactly(&stored, &queued);
}
