//! The batch-writer against real PostgreSQL and real LocalStack SQS: rows in
//! their day partitions with every field intact, idempotent redelivery, poison
//! records in the dead-letter queue, partitions made on demand.

use crate::support;

use base64::Engine;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use stele_batch_writer::{kinesis, BatchWriter, KinesisEvent, KinesisEventResponse, SqsDeadLetters};
use stele_core::{
    validate_event, Actor, ActorType, Category, Changes, Context, Event, Outcome, Resource, SealedEvent, Source,
    TimeWindow, Trace,
};
use stele_store::partitions;
use stele_store::{EventStore, InsertMethod, PgEventStore, StoredEvent};
use support::{unique_name, TestDb, TestEnv};
use tokio_postgres::Client;

type Writer = BatchWriter<PgEventStore, SqsDeadLetters>;

const SHARD: &str = "shardId-000000000007";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// Wide enough for the fixed days the tests use.
fn window() -> TimeWindow {
    TimeWindow {
        max_lateness: chrono::TimeDelta::days(60),
        ..TimeWindow::default()
    }
}

/// A validated, sealed event with every optional field filled.
fn full_event(tenant: &str, occurred_at: &str, n: usize) -> SealedEvent {
    let ctx = Context {
        tenant_id: tenant,
        now: now(),
        window: window(),
        id_if_missing: None,
    };
    let body = json!({
        "occurred_at": occurred_at,
        "category": (["audit", "security", "application"][n % 3]),
        "action": format!("document.update_{n}"),
        "outcome": (["success", "failure", "denied", "error", "unknown"][n % 5]),
        "actor": {"id": format!("user-{n}"), "type": (["user", "service", "system", "api_key"][n % 4]),
                  "display": "Zoë “quotes” \\ back", "ip": "2001:db8::1", "user_agent": "curl/8.5"},
        "resource": {"type": "document", "id": format!("doc-{n}"), "display": "Q3 plan"},
        "changes": {"before": {"title": "old", "n": 1, "tags": ["a", "b"], "nested": {"x": null}},
                    "after": {"title": "new ✓", "n": 2.5, "tags": [], "big": 9007199254740991i64}},
        "metadata": {"request_id": format!("req-{n}"), "retries": 3, "ok": true, "ratio": 0.125, "none": null},
        "correlation_id": format!("corr-{n}"),
        "causation_id": "cause-1",
        "trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "congo=t61rcWkgMzE"},
        "source": {"service": "docs", "version": "1.2.3", "host": "ip-10-0-0-1", "region": "eu-west-1"},
    });
    validate_event(&body, &ctx).expect("test event is valid").seal()
}

/// A sealed event with only the required fields.
fn minimal_event(tenant: &str, occurred_at: &str) -> SealedEvent {
    let ctx = Context {
        tenant_id: tenant,
        now: now(),
        window: window(),
        id_if_missing: None,
    };
    let body = json!({
        "occurred_at": occurred_at, "category": "audit", "action": "user.login", "outcome": "success",
        "actor": {"id": "u1", "type": "user"}, "source": {"service": "auth"}
    });
    validate_event(&body, &ctx).expect("test event is valid").seal()
}

fn seq(i: usize) -> String {
    format!("4959{i:020}")
}

fn batch_of(data: &[Vec<u8>], first_seq: usize) -> KinesisEvent {
    kinesis::event(
        data.iter()
            .enumerate()
            .map(|(i, d)| kinesis::event_record(SHARD, &seq(first_seq + i), "tenant", d.clone(), now()))
            .collect(),
    )
}

async fn setup() -> (TestDb, Client, Writer, String) {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let pool = stele_store::pool(&db.store_config()).expect("pool");
    let queue_url = env.create_queue(&unique_name("dlq")).await;
    let writer = BatchWriter::new(
        PgEventStore::new(pool),
        SqsDeadLetters::new(env.sqs().await, &queue_url),
    );
    (db, client, writer, queue_url)
}

/// Rebuild the event from its row (the inverse of the insert), with the
/// partition it is in, its hash and its stream position.
async fn stored_rows(client: &Client) -> Vec<(String, Event, Vec<u8>, Option<String>, Option<String>)> {
    let rows = client
        .query(
            "SELECT tableoid::regclass::text, tenant_id, event_id, occurred_at, received_at, category, action, outcome,
                    actor_id, actor_type, actor_display, actor_ip, actor_user_agent,
                    resource_type, resource_id, resource_display, changes, metadata,
                    correlation_id, causation_id, trace_parent, trace_state,
                    source_service, source_version, source_host, source_region,
                    schema_version, event_hash, kinesis_shard, kinesis_seq
               FROM audit_events ORDER BY kinesis_seq",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let category: Category = enum_of(r.get(5));
            let outcome: Outcome = enum_of(r.get(7));
            let actor_type: ActorType = enum_of(r.get(9));
            let resource_type: Option<String> = r.get(13);
            let changes: Option<Value> = r.get(16);
            let metadata: Option<Value> = r.get(17);
            let trace_parent: Option<String> = r.get(20);
            let schema_version: i16 = r.get(26);
            let event = Event {
                tenant_id: r.get(1),
                event_id: r.get(2),
                occurred_at: r.get(3),
                received_at: r.get(4),
                category,
                action: r.get(6),
                outcome,
                actor: Actor {
                    id: r.get(8),
                    actor_type,
                    display: r.get(10),
                    ip: r.get(11),
                    user_agent: r.get(12),
                },
                resource: resource_type.map(|resource_type| Resource {
                    resource_type,
                    id: r.get(14),
                    display: r.get(15),
                }),
                changes: changes.map(|c| serde_json::from_value::<Changes>(c).unwrap()),
                metadata: metadata.map(|m| match m {
                    Value::Object(map) => map,
                    other => panic!("metadata is not an object: {other}"),
                }),
                correlation_id: r.get(18),
                causation_id: r.get(19),
                trace: trace_parent.map(|traceparent| Trace {
                    traceparent,
                    tracestate: r.get(21),
                }),
                source: Source {
                    service: r.get(22),
                    version: r.get(23),
                    host: r.get(24),
                    region: r.get(25),
                },
                schema_version: schema_version as u16,
            };
            (r.get(0), event, r.get(27), r.get(28), r.get(29))
        })
        .collect()
}

fn enum_of<T: serde::de::DeserializeOwned>(s: String) -> T {
    serde_json::from_value(Value::String(s)).unwrap()
}

async fn count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0)
}

/// Every message in the queue (bounded polling; LocalStack delivers at once).
async fn drain_queue(queue_url: &str, expected: usize) -> Vec<Value> {
    let sqs = TestEnv::get().await.sqs().await;
    let mut out = Vec::new();
    for _ in 0..20 {
        if out.len() >= expected {
            break;
        }
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let attribute = m
                .message_attributes()
                .and_then(|a| a.get("reason_code"))
                .and_then(|a| a.string_value())
                .unwrap();
            assert_eq!(
                body["reason_code"], attribute,
                "the attribute repeats the body's reason"
            );
            out.push(body);
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    out
}

fn failed_ids(response: &KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn mixed_tenants_and_days_land_in_their_day_partitions_with_every_field_intact() {
    let (_db, client, writer, _queue) = setup().await;
    let days = [
        "2026-02-27T23:59:59.999999Z",
        "2026-02-28T00:00:00Z",
        "2026-03-01T11:00:00.5Z",
    ];
    let mut sealed: Vec<SealedEvent> = (0..30)
        .map(|n| full_event(["acme", "globex", "initech"][n % 3], days[n % 3], n))
        .collect();
    sealed.push(minimal_event("acme", "2026-03-01T11:59:00Z"));
    let data: Vec<Vec<u8>> = sealed.iter().map(|s| s.record.clone()).collect();

    let (response, report) = writer.process(batch_of(&data, 0)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((report.inserted, report.duplicates, report.poison), (31, 0, 0));
    assert_eq!(report.partitions_created, 3);

    let rows = stored_rows(&client).await;
    assert_eq!(rows.len(), sealed.len());
    for (i, (partition, event, hash, shard, sequence)) in rows.into_iter().enumerate() {
        let original = &sealed[i];
        assert_eq!(event, original.event, "row {i} differs from the event");
        assert_eq!(hash, original.hash.0.to_vec(), "row {i}: event_hash");
        assert_eq!(
            event.compute_hash(),
            original.hash,
            "row {i} still hashes to its event_hash"
        );
        assert_eq!(partition, partitions::partition_name(event.occurred_at.date_naive()));
        assert_eq!(shard.as_deref(), Some(SHARD));
        assert_eq!(sequence, Some(seq(i)));
    }
    let per_tenant: Vec<(String, i64)> = client
        .query(
            "SELECT tenant_id, count(*) FROM audit_events GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        per_tenant,
        [
            ("acme".to_string(), 11),
            ("globex".to_string(), 10),
            ("initech".to_string(), 10)
        ]
    );
}

#[tokio::test]
async fn the_same_batch_delivered_twice_creates_no_duplicates() {
    let (_db, client, writer, _queue) = setup().await;
    let data: Vec<Vec<u8>> = (0..50)
        .map(|n| full_event("acme", "2026-03-01T10:00:00Z", n).record)
        .collect();

    let (first, r1) = writer.process(batch_of(&data, 0)).await;
    let (second, r2) = writer.process(batch_of(&data, 0)).await;
    assert!(first.batch_item_failures.is_empty() && second.batch_item_failures.is_empty());
    assert_eq!((r1.inserted, r1.duplicates), (50, 0));
    assert_eq!((r2.inserted, r2.duplicates), (0, 50));
    assert_eq!(count(&client).await, 50);

    // A record repeated inside one batch (a producer retry) is written once too.
    let mut repeated = data[..3].to_vec();
    repeated.push(data[0].clone());
    let extra = full_event("acme", "2026-03-01T10:00:00Z", 99).record;
    repeated.push(extra.clone());
    repeated.push(extra);
    let (third, r3) = writer.process(batch_of(&repeated, 100)).await;
    assert!(third.batch_item_failures.is_empty());
    assert_eq!((r3.inserted, r3.duplicates), (1, 5));
    assert_eq!(count(&client).await, 51);
}

/// An event with the given id (as a client sets it, or ingest derives it
/// from an `Idempotency-Key`).
pub(crate) fn event_with_id(tenant: &str, id: uuid::Uuid, occurred_at: &str, action: &str) -> SealedEvent {
    let ctx = Context {
        tenant_id: tenant,
        now: now(),
        window: window(),
        id_if_missing: None,
    };
    let body = json!({
        "event_id": id.to_string(), "occurred_at": occurred_at, "category": "audit", "action": action,
        "outcome": "success", "actor": {"id": "u1", "type": "user"}, "source": {"service": "auth"}
    });
    validate_event(&body, &ctx).expect("test event is valid").seal()
}

#[tokio::test]
async fn an_event_id_is_stored_once_per_tenant_and_a_resend_with_other_content_is_a_conflict_dead_letter() {
    let (db, client, writer, queue) = setup().await;
    let id = uuid::Uuid::new_v4();
    let first = event_with_id("acme", id, "2026-03-01T10:00:00Z", "user.login");
    // A client retrying with a fresh timestamp (another day, so another
    // partition: the primary key alone cannot see it), and one that changed
    // the content under the same id and timestamp.
    let new_time = event_with_id("acme", id, "2026-02-28T23:59:59Z", "user.login");
    let new_action = event_with_id("acme", id, "2026-03-01T10:00:00Z", "user.logout");
    // Ids are per tenant: the same id of another tenant is another event.
    let other_tenant = event_with_id("globex", id, "2026-03-01T10:00:00Z", "user.login");

    let (_, r1) = writer.process(batch_of(std::slice::from_ref(&first.record), 0)).await;
    assert_eq!(r1.inserted, 1);
    let batch = [
        new_time.record.clone(),
        first.record.clone(),
        new_action.record.clone(),
        other_tenant.record.clone(),
    ];
    let (response, r2) = writer.process(batch_of(&batch, 10)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((r2.inserted, r2.duplicates, r2.conflicts, r2.poison), (1, 1, 2, 2));

    let stored: Vec<(String, Vec<u8>)> = client
        .query(
            "SELECT tenant_id, event_hash FROM audit_events WHERE event_id = $1 ORDER BY tenant_id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stored,
        [
            ("acme".to_string(), first.hash.0.to_vec()),
            ("globex".to_string(), other_tenant.hash.0.to_vec())
        ],
        "one row per tenant and id, the first one received"
    );

    let mut letters = drain_queue(&queue, 2).await;
    letters.sort_by(|a, b| a["sequence_number"].as_str().cmp(&b["sequence_number"].as_str()));
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, (position, sent)) in letters.iter().zip([(10, &new_time), (12, &new_action)]) {
        assert_eq!(letter["sequence_number"], seq(position));
        assert_eq!(letter["reason_code"], "conflict");
        assert_eq!(letter["event_hash"], sent.hash.to_hex());
        assert_eq!(letter["stored_event_hash"], first.hash.to_hex());
        let original = base64::engine::general_purpose::STANDARD
            .decode(letter["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(original, sent.record, "the original bytes are kept");
    }

    // The UNNEST method claims ids the same way, late rows included.
    let unnest = PgEventStore::with_method(stele_store::pool(&db.store_config()).unwrap(), InsertMethod::Unnest);
    let stored_event = |e: &SealedEvent| StoredEvent {
        event: e.event.clone(),
        hash: e.hash,
        kinesis_shard: None,
        kinesis_seq: None,
    };
    let late_id = uuid::Uuid::new_v4();
    let late = event_with_id("acme", late_id, "2026-02-20T08:00:00Z", "user.login");
    let late_resent = event_with_id("acme", late_id, "2026-03-01T08:00:00Z", "user.login");
    let archived_day = NaiveDate::from_ymd_opt(2026, 2, 20).unwrap();
    let outcome = unnest
        .insert_batch(&[stored_event(&late), stored_event(&new_time)], &[archived_day])
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.late, outcome.conflicts.len()), (1, 1, 1));
    assert_eq!(outcome.conflicts[0].position, 1);
    assert_eq!(outcome.conflicts[0].stored_hash, first.hash);
    let outcome = unnest
        .insert_batch(&[stored_event(&late_resent)], &[archived_day])
        .await
        .unwrap();
    assert_eq!(
        (outcome.inserted, outcome.conflicts.len()),
        (0, 1),
        "a late row's id is claimed too"
    );
    assert_eq!(count(&client).await, 2);
}

/// Two writers with the same id at the same moment: the one that waits on the
/// other's claim (ON CONFLICT waits for the first transaction, whose claim its
/// snapshot cannot see) still reports the conflict, never a duplicate.
#[tokio::test]
async fn an_id_claimed_by_a_concurrent_transaction_with_other_content_is_still_a_conflict() {
    let (db, client, _writer, _queue) = setup().await;
    partitions::ensure_days(&client, &[NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()])
        .await
        .unwrap();
    for method in [InsertMethod::CopyStage, InsertMethod::Unnest] {
        let id = uuid::Uuid::new_v4();
        let first = event_with_id("acme", id, "2026-03-01T10:00:00Z", "user.login");
        let other = event_with_id("acme", id, "2026-03-01T10:00:00Z", "user.logout");
        let mut holder = db.client().await;
        let tx = holder.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO event_ids (tenant_id, event_id, event_hash, received_at) VALUES ($1, $2, $3, now())",
            &[&"acme", &id, &first.hash.0.to_vec()],
        )
        .await
        .unwrap();
        let store = PgEventStore::with_method(stele_store::pool(&db.store_config()).unwrap(), method);
        let stored = StoredEvent {
            event: other.event.clone(),
            hash: other.hash,
            kinesis_shard: None,
            kinesis_seq: None,
        };
        let insert = tokio::spawn(async move { store.insert_batch(&[stored], &[]).await });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(
            !insert.is_finished(),
            "{method:?}: the insert waits for the other claim"
        );
        tx.commit().await.unwrap();
        let outcome = insert.await.unwrap().unwrap();
        assert_eq!((outcome.inserted, outcome.duplicates), (0, 0), "{method:?}");
        assert_eq!(outcome.conflicts.len(), 1, "{method:?}: {outcome:?}");
        assert_eq!(outcome.conflicts[0].stored_hash, first.hash);
    }
}

#[tokio::test]
async fn poison_records_go_to_the_dlq_with_their_reason_while_good_records_are_written() {
    let (_db, client, writer, queue) = setup().await;
    let good_a = full_event("acme", "2026-03-01T10:00:00Z", 1);
    let good_b = minimal_event("globex", "2026-02-28T10:00:00Z");
    let tampered = String::from_utf8(full_event("acme", "2026-03-01T10:00:00Z", 2).record)
        .unwrap()
        .replace("document.update_2", "document.delete_2")
        .into_bytes();
    let not_json = b"\x00\x01 definitely not json".to_vec();
    let mut no_hash: Value = serde_json::from_slice(&minimal_event("acme", "2026-03-01T09:00:00Z").record).unwrap();
    no_hash.as_object_mut().unwrap().remove("event_hash");
    let no_hash = serde_json::to_vec(&no_hash).unwrap();
    let data = vec![
        good_a.record.clone(),
        tampered.clone(),
        not_json.clone(),
        good_b.record.clone(),
        no_hash.clone(),
    ];

    let (response, report) = writer.process(batch_of(&data, 0)).await;
    assert!(response.batch_item_failures.is_empty(), "poison never blocks the shard");
    assert_eq!((report.inserted, report.poison), (2, 3));

    let ids: Vec<uuid::Uuid> = client
        .query("SELECT event_id FROM audit_events ORDER BY kinesis_seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [good_a.event.event_id, good_b.event.event_id]);

    let mut letters = drain_queue(&queue, 3).await;
    letters.sort_by(|a, b| a["sequence_number"].as_str().cmp(&b["sequence_number"].as_str()));
    let expected = [
        (1, "hash_mismatch", &tampered),
        (2, "not_json", &not_json),
        (4, "missing_hash", &no_hash),
    ];
    assert_eq!(letters.len(), expected.len(), "{letters:?}");
    for (letter, (position, code, bytes)) in letters.iter().zip(expected) {
        assert_eq!(letter["sequence_number"], seq(position));
        assert_eq!(letter["shard_id"], SHARD);
        assert_eq!(letter["reason_code"], code);
        assert!(!letter["reason"].as_str().unwrap().is_empty());
        let original = base64::engine::general_purpose::STANDARD
            .decode(letter["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&original, bytes, "the original bytes are kept");
    }
}

#[tokio::test]
async fn partitions_are_created_ahead_on_start_and_on_demand_for_a_missing_day() {
    let (_db, client, writer, _queue) = setup().await;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let ahead = writer.ensure_days_ahead(day(1), 3).await.unwrap();
    assert_eq!(ahead.created, [day(1), day(2), day(3), day(4)]);

    // An event of a day before the ones made ahead: its partition is made for it.
    let late = full_event("acme", "2026-02-26T08:00:00Z", 1);
    let current = full_event("acme", "2026-03-01T08:00:00Z", 2);
    let (response, report) = writer
        .process(batch_of(&[late.record.clone(), current.record.clone()], 0))
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.inserted, report.partitions_created), (2, 1));
    let names: Vec<String> = partitions::list(&client)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        [
            "audit_events_p20260226",
            "audit_events_p20260301",
            "audit_events_p20260302",
            "audit_events_p20260303",
            "audit_events_p20260304"
        ]
    );
    let partition: String = client
        .query_one(
            "SELECT tableoid::regclass::text FROM audit_events WHERE event_id = $1",
            &[&late.event.event_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(partition, "audit_events_p20260226");
}

#[tokio::test]
async fn an_event_whose_day_was_archived_is_stored_in_late_events_not_dead_lettered() {
    let (db, client, writer, queue) = setup().await;
    client
        .execute(
            "INSERT INTO archive_jobs (partition_name, day, state) VALUES ('audit_events_p20260220', '2026-02-20', 'done')",
            &[],
        )
        .await
        .unwrap();
    let archived = full_event("acme", "2026-02-20T08:00:00Z", 1);
    let fresh = full_event("acme", "2026-03-01T08:00:00Z", 2);
    let batch = [archived.record.clone(), fresh.record.clone()];
    let (response, report) = writer.process(batch_of(&batch, 0)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.inserted, report.late, report.poison), (2, 1, 0));
    assert_eq!(count(&client).await, 1);
    let late: Vec<(uuid::Uuid, Vec<u8>, bool)> = client
        .query("SELECT event_id, event_hash, archive_claimed FROM late_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(late, vec![(archived.event.event_id, archived.hash.0.to_vec(), false)]);
    // Redelivered, through either insert method: stored once.
    let (_, again) = writer.process(batch_of(&batch, 0)).await;
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let unnest = PgEventStore::with_method(stele_store::pool(&db.store_config()).unwrap(), InsertMethod::Unnest);
    let other = full_event("globex", "2026-02-20T09:00:00Z", 3);
    let events: Vec<StoredEvent> = [&archived, &fresh, &other]
        .iter()
        .map(|e| StoredEvent {
            event: e.event.clone(),
            hash: e.hash,
            kinesis_shard: None,
            kinesis_seq: None,
        })
        .collect();
    let day = NaiveDate::from_ymd_opt(2026, 2, 20).unwrap();
    let outcome = unnest.insert_batch(&events, &[day]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.late, outcome.duplicates), (1, 1, 2));
    let late_rows: i64 = client
        .query_one("SELECT count(*) FROM late_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(late_rows, 2);
    let received = TestEnv::get()
        .await
        .sqs()
        .await
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert!(received.messages().is_empty(), "nothing was dead-lettered");
    let names: Vec<String> = partitions::list(&client)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        ["audit_events_p20260301"],
        "no partition is re-created for an archived day"
    );
}

#[tokio::test]
async fn a_dlq_that_cannot_be_reached_leaves_the_poison_record_unacknowledged() {
    let (_db, client, _writer, _queue) = setup().await;
    let env = TestEnv::get().await;
    let db_pool = stele_store::pool(&_db.store_config()).unwrap();
    let missing_queue = format!("{}/000000000000/{}", env.aws_endpoint, unique_name("absent"));
    let writer = BatchWriter::new(
        PgEventStore::new(db_pool),
        SqsDeadLetters::new(env.sqs().await, missing_queue),
    );
    let good = full_event("acme", "2026-03-01T08:00:00Z", 1);
    let after = full_event("acme", "2026-03-01T08:00:00Z", 2);
    let data = vec![good.record.clone(), b"junk".to_vec(), after.record.clone()];
    let (response, report) = writer.process(batch_of(&data, 0)).await;
    assert!(report.dlq_failed);
    assert_eq!(failed_ids(&response), [seq(1), seq(2)]);
    // Both good records are committed; the one after the poison comes back and is a duplicate then.
    assert_eq!(count(&client).await, 2);
}

#[tokio::test]
async fn handle_batch_answers_in_the_lambda_wire_format() {
    let (_db, _client, writer, _queue) = setup().await;
    let good = minimal_event("acme", "2026-03-01T08:00:00Z");
    // The event as Lambda would send it: JSON with base64 data.
    let wire = json!({"Records": [{
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "acme",
            "sequenceNumber": seq(0),
            "data": base64::engine::general_purpose::STANDARD.encode(&good.record),
            "approximateArrivalTimestamp": 1772366400.123
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{SHARD}:{}", seq(0)),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/stele-batch-writer",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/stele"
    }]});
    let event = serde_json::from_value(wire).unwrap();
    let response = writer.handle_batch(event).await;
    let answer = serde_json::to_value(&response).unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
}
