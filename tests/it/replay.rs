//! `stele replay`, run as an operator runs it, against real PostgreSQL and
//! LocalStack SQS, S3 and Kinesis: dead letters whose cause is fixed end as
//! rows and leave the queue, poison stays, a second run finds nothing,
//! `--dry-run` changes nothing, and a failed batch recorded in S3 is read back
//! from the stream by shard and sequence range.

use crate::support;

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use stele_batch_writer::{kinesis, BatchWriter, DeadLetter, MemoryDeadLetters, PoisonCode};
use stele_core::{validate_event, Context, SealedEvent, TimeWindow};
use stele_store::PgEventStore;
use support::stream::TestStream;
use support::{unique_name, TestDb, TestEnv};
use tokio_postgres::Client;

const SHARD: &str = "shardId-000000000003";
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/gone-since";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn sealed(tenant: &str, action: &str) -> SealedEvent {
    let ctx = Context {
        tenant_id: tenant,
        now: now(),
        window: TimeWindow::default(),
        id_if_missing: None,
    };
    let body = json!({
        "occurred_at": "2026-03-01T11:00:00Z", "category": "audit", "action": action, "outcome": "success",
        "actor": {"id": "u1", "type": "user"}, "source": {"service": "auth"}
    });
    validate_event(&body, &ctx).expect("test event is valid").seal()
}

/// A record changed after sealing: poison for good.
fn tampered() -> Vec<u8> {
    String::from_utf8(sealed("acme", "user.login").record)
        .unwrap()
        .replace("user.login", "user.logout")
        .into_bytes()
}

fn seq(i: u32) -> String {
    format!("4959{i:052}")
}

/// A dead letter as the batch-writer writes it, for a record of `SHARD`.
fn letter(i: u32, code: PoisonCode, data: Vec<u8>) -> DeadLetter {
    DeadLetter {
        shard_id: Some(SHARD.into()),
        sequence_number: seq(i),
        partition_key: "acme".into(),
        event_source_arn: Some(STREAM_ARN.into()),
        approximate_arrival: now(),
        code,
        reason: "test".into(),
        conflict: None,
        data,
    }
}

/// The message an earlier version wrote for an event of an archived day
/// (`partition_archived`): the cause is gone, the record is good.
fn earlier_version_letter(i: u32, data: Vec<u8>) -> String {
    let mut message: Value = serde_json::from_str(&letter(i, PoisonCode::Schema, data).to_message()).unwrap();
    message["reason_code"] = "partition_archived".into();
    message["reason"] = "partition audit_events_p20260301 is archived".into();
    message.to_string()
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, bodies: &[String]) {
    for body in bodies {
        sqs.send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
}

/// Every message in the queue (left visible), as JSON.
async fn queue_messages(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<Value> {
    let mut seen = HashMap::new();
    for _ in 0..4 {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            seen.insert(
                m.message_id().unwrap().to_string(),
                serde_json::from_str(m.body().unwrap()).unwrap(),
            );
        }
    }
    seen.into_values().collect()
}

/// Store events as the batch-writer would (no queue needed).
async fn store(db: &TestDb, records: Vec<Vec<u8>>) {
    let pool = stele_store::pool(&db.store_config()).unwrap();
    let writer = BatchWriter::new(PgEventStore::new(pool), MemoryDeadLetters::default());
    let event = kinesis::event(
        records
            .into_iter()
            .enumerate()
            .map(|(i, d)| kinesis::event_record("shardId-000000000000", &format!("{i}"), "acme", d, now()))
            .collect(),
    );
    let (response, report) = writer.process(event).await;
    assert!(response.batch_item_failures.is_empty() && report.poison == 0);
}

/// Rows as (action, kinesis_shard, kinesis_seq), by action.
async fn rows(client: &Client) -> Vec<(String, Option<String>, Option<String>)> {
    client
        .query(
            "SELECT action, kinesis_shard, kinesis_seq FROM audit_events ORDER BY action",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// `stele replay ARGS` as a child process, with nothing from the caller's
/// environment choosing a queue, bucket, stream or database.
async fn replay(db: &TestDb, args: &[&str]) -> Run {
    let env = TestEnv::get().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stele"))
        .arg("replay")
        .args(["--database-url", &db.url, "--aws-endpoint", &env.aws_endpoint])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STELE_DB_SECRET_ARN")
        .env_remove("STELE_DLQ_URL")
        .env_remove("STELE_FAILED_BATCHES_BUCKET")
        .env_remove("STELE_STREAM_NAME")
        .env_remove("STELE_AWS_ENDPOINT")
        .output()
        .await
        .expect("run stele replay");
    let run = Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("stele replay {args:?} → {}\n{}{}", run.status, run.stdout, run.stderr);
    run
}

#[tokio::test]
async fn fixed_dead_letters_are_replayed_once_and_poison_stays_in_the_queue() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let (first, second) = (sealed("acme", "doc.a"), sealed("acme", "doc.b"));
    let stored_already = sealed("acme", "doc.c");
    store(&db, vec![stored_already.record.clone()]).await;
    send(
        &sqs,
        &queue,
        &[
            earlier_version_letter(1, first.record.clone()),
            earlier_version_letter(2, second.record.clone()),
            earlier_version_letter(3, stored_already.record.clone()),
            letter(4, PoisonCode::HashMismatch, tampered()).to_message(),
        ],
    )
    .await;

    let run = replay(&db, &["--queue-url", &queue]).await;
    assert_eq!(run.status, 2, "a record still fails");
    assert!(
        run.stdout.contains(
            "replayed 2, already stored 1, still failing 1 (hash_mismatch 1); 3 of 4 messages and 0 of 0 objects deleted"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("progress: messages 4"), "{}", run.stderr);
    let stored = rows(&client).await;
    assert_eq!(
        stored,
        [
            ("doc.a".into(), Some(SHARD.into()), Some(seq(1))),
            ("doc.b".into(), Some(SHARD.into()), Some(seq(2))),
            ("doc.c".into(), Some("shardId-000000000000".into()), Some("0".into())),
        ],
        "replayed rows keep their place on the stream"
    );
    let left = queue_messages(&sqs, &queue).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["reason_code"], "hash_mismatch");
    assert_eq!(left[0]["sequence_number"], seq(4));

    let again = replay(&db, &["--queue-url", &queue]).await;
    assert_eq!(again.status, 2);
    assert!(
        again
            .stdout
            .contains("replayed 0, already stored 0, still failing 1 (hash_mismatch 1); 0 of 1 messages"),
        "{}",
        again.stdout
    );
    assert_eq!(rows(&client).await.len(), 3, "nothing written twice");
    assert_eq!(queue_messages(&sqs, &queue).await.len(), 1);
}

#[tokio::test]
async fn dry_run_says_what_it_would_do_and_changes_nothing() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let stored_already = sealed("acme", "doc.c");
    store(&db, vec![stored_already.record.clone()]).await;
    send(
        &sqs,
        &queue,
        &[
            earlier_version_letter(1, sealed("acme", "doc.a").record),
            earlier_version_letter(3, stored_already.record.clone()),
            letter(4, PoisonCode::HashMismatch, tampered()).to_message(),
        ],
    )
    .await;

    let run = replay(&db, &["--queue-url", &queue, "--dry-run"]).await;
    assert!(
        run.stdout.contains("stele replay --dry-run: would replay 1, already stored 1, still failing 1 (hash_mismatch 1); 3 messages and 0 objects read, nothing changed"),
        "{}",
        run.stdout
    );
    assert_eq!(rows(&client).await.len(), 1, "no row written");
    assert_eq!(
        queue_messages(&sqs, &queue).await.len(),
        3,
        "every message is still there, and visible"
    );

    // The real run then does what the dry run said.
    let real = replay(&db, &["--queue-url", &queue]).await;
    assert!(
        real.stdout.contains("replayed 1, already stored 1, still failing 1"),
        "{}",
        real.stdout
    );
}

#[tokio::test]
async fn a_dead_letter_cut_to_fit_the_queue_is_read_back_from_the_stream() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let stream = TestStream::new(env, 1).await;
    // Bigger than ingest accepts: only another producer could write it, and
    // only the stream keeps all of it.
    let mut event = sealed("acme", "doc.big").event;
    let mut metadata = serde_json::Map::new();
    metadata.insert("blob".into(), json!("x".repeat(200 * 1024)));
    event.metadata = Some(metadata);
    let big = event.seal();
    let kinesis_client = env.kinesis().await;
    let put = kinesis_client
        .put_record()
        .stream_name(&stream.name)
        .partition_key("acme")
        .data(aws_sdk_kinesis::primitives::Blob::new(big.record.clone()))
        .send()
        .await
        .unwrap();
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", stream.name);
    let mut dead = letter(0, PoisonCode::Schema, big.record.clone());
    dead.shard_id = Some(put.shard_id().to_string());
    dead.sequence_number = put.sequence_number().to_string();
    dead.event_source_arn = Some(arn);
    let mut message: Value = serde_json::from_str(&dead.to_message()).unwrap();
    assert_eq!(message["data_truncated"], true);
    message["reason_code"] = "partition_archived".into();
    send(&sqs, &queue, &[message.to_string()]).await;

    let run = replay(&db, &["--queue-url", &queue]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("replayed 1, already stored 0, still failing 0"),
        "{}",
        run.stdout
    );
    let stored = rows(&client).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2.as_deref(), Some(put.sequence_number()));
    assert!(queue_messages(&sqs, &queue).await.is_empty());
    stream.delete().await;
}

#[tokio::test]
async fn a_failed_batch_in_s3_is_read_back_from_the_stream_and_its_object_deleted() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let s3 = env.s3().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let bucket = unique_name("failed-batches");
    env.create_bucket(&bucket).await;
    let stream = TestStream::new(env, 1).await;
    let kinesis_client = env.kinesis().await;

    // Five records; the mapping gave up on the middle three (one is poison).
    let data = [
        sealed("acme", "doc.0").record,
        sealed("acme", "doc.1").record,
        tampered(),
        sealed("acme", "doc.3").record,
        sealed("acme", "doc.4").record,
    ];
    let mut seqs = Vec::new();
    let mut shard = String::new();
    for d in data {
        let put = kinesis_client
            .put_record()
            .stream_name(&stream.name)
            .partition_key("acme")
            .data(aws_sdk_kinesis::primitives::Blob::new(d))
            .send()
            .await
            .unwrap();
        shard = put.shard_id().to_string();
        seqs.push(put.sequence_number().to_string());
    }
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", stream.name);
    let on_failure = |shard: &str, start: &str, end: &str, size: u32| {
        json!({
            "requestContext": {"requestId": "c9b8fa9f-5a7f-4a4b-af9c-0c604cde93a5",
                               "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:stele-batch-writer",
                               "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-03-01T12:00:00.000Z",
            "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end,
                                  "approximateArrivalOfFirstRecord": "2026-03-01T11:59:58.000Z",
                                  "approximateArrivalOfLastRecord": "2026-03-01T11:59:59.000Z",
                                  "batchSize": size, "streamArn": arn},
        })
        .to_string()
    };
    let key = format!("aws/lambda/0b9c8e5e-esm/{shard}/2026/03/01/2026-03-01T12.00.00-1f2e");
    let gone = "aws/lambda/0b9c8e5e-esm/shardId-000000000009/2026/03/01/2026-03-01T12.00.01-3c4d";
    for (k, body) in [
        (key.as_str(), on_failure(&shard, &seqs[1], &seqs[3], 3)),
        (gone, on_failure("shardId-000000000009", &seqs[1], &seqs[1], 2)),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(k)
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    let run = replay(&db, &["--failed-batches-bucket", &bucket, "--queue-url", &queue]).await;
    assert_eq!(
        run.status, 2,
        "the batch of a shard the stream does not have still fails"
    );
    assert!(
        run.stdout.contains("replayed 2, already stored 0, moved to the dead-letter queue 1 (hash_mismatch 1), still failing 2 (not_in_stream 2); 0 of 0 messages and 1 of 2 objects deleted"),
        "{}",
        run.stdout
    );
    assert_eq!(
        rows(&client).await,
        [
            ("doc.1".into(), Some(shard.clone()), Some(seqs[1].clone())),
            ("doc.3".into(), Some(shard.clone()), Some(seqs[3].clone())),
        ],
        "exactly the batch's range, with its stream positions"
    );
    let letters = queue_messages(&sqs, &queue).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason_code"], "hash_mismatch");
    assert_eq!(letters[0]["sequence_number"], seqs[2]);
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys, [gone], "the replayed batch's object is deleted, the other kept");

    let again = replay(&db, &["--failed-batches-bucket", &bucket]).await;
    assert!(
        again
            .stdout
            .contains("replayed 0, already stored 0, still failing 2 (not_in_stream 2)"),
        "{}",
        again.stdout
    );
    assert_eq!(rows(&client).await.len(), 2);
    stream.delete().await;
}

#[tokio::test]
async fn a_conflict_letter_is_replayed_only_when_the_stored_row_is_that_event() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let stored = sealed("acme", "doc.kept");
    store(&db, vec![stored.record.clone()]).await;
    // Same id, other content: what a `conflict` letter holds.
    let mut other = stored.event.clone();
    other.action = "doc.other".into();
    let other = other.seal();
    let conflict = |i: u32, record: &SealedEvent| {
        let mut message: Value =
            serde_json::from_str(&letter(i, PoisonCode::Schema, record.record.clone()).to_message()).unwrap();
        message["reason_code"] = "conflict".into();
        message["event_hash"] = record.hash.to_hex().into();
        message["stored_event_hash"] = stored.hash.to_hex().into();
        message.to_string()
    };
    send(&sqs, &queue, &[conflict(1, &other), conflict(2, &stored)]).await;

    let run = replay(&db, &["--queue-url", &queue]).await;
    assert!(
        run.stdout
            .contains("replayed 0, already stored 1, still failing 1 (conflict 1); 1 of 2 messages"),
        "{}",
        run.stdout
    );
    assert_eq!(rows(&client).await.len(), 1);
    let left = queue_messages(&sqs, &queue).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["sequence_number"], seq(1));
}

#[tokio::test]
async fn a_database_that_refuses_the_batch_leaves_every_message_in_the_queue() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await; // no schema: every insert fails
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    send(
        &sqs,
        &queue,
        &[
            earlier_version_letter(1, sealed("acme", "doc.a").record),
            earlier_version_letter(2, sealed("acme", "doc.b").record),
        ],
    )
    .await;

    let run = replay(&db, &["--queue-url", &queue]).await;
    assert_eq!(run.status, 2);
    assert!(
        run.stdout
            .contains("replayed 0, already stored 0, still failing 2 (unwritten 2); 0 of 2 messages"),
        "{}",
        run.stdout
    );
    assert_eq!(
        queue_messages(&sqs, &queue).await.len(),
        2,
        "visible again for the next run"
    );
}

#[tokio::test]
async fn an_on_failure_record_in_the_queue_is_replayed_from_the_stream() {
    // `stele dev`'s mapping sends its on-failure records to the dead-letter queue.
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let client = db.migrated_client().await;
    let sqs = env.sqs().await;
    let queue = env.create_queue(&unique_name("dlq")).await;
    let stream = TestStream::new(env, 1).await;
    let kinesis_client = env.kinesis().await;
    let mut positions = Vec::new();
    for action in ["doc.1", "doc.2"] {
        let put = kinesis_client
            .put_record()
            .stream_name(&stream.name)
            .partition_key("acme")
            .data(aws_sdk_kinesis::primitives::Blob::new(sealed("acme", action).record))
            .send()
            .await
            .unwrap();
        positions.push((put.shard_id().to_string(), put.sequence_number().to_string()));
    }
    let body = json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": "local:stele-batch-writer"},
        "KinesisBatchInfo": {"shardId": positions[0].0, "startSequenceNumber": positions[0].1,
                              "endSequenceNumber": positions[1].1, "batchSize": 2,
                              "streamArn": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", stream.name)},
    });
    send(&sqs, &queue, &[body.to_string()]).await;

    let run = replay(&db, &["--queue-url", &queue]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("replayed 2, already stored 0, still failing 0; 1 of 1 messages"),
        "{}",
        run.stdout
    );
    assert_eq!(rows(&client).await.len(), 2);
    assert!(queue_messages(&sqs, &queue).await.is_empty());
    stream.delete().await;
}
