//! The batch-writer through a PostgreSQL outage: the server is stopped in the
//! middle of a run (while a batch is in flight, then between batches) and
//! started again. Driven like an event source mapping (retry from the reported
//! checkpoint), the run ends with every record written exactly once, and the
//! batches during the outage are reported as failures, not acknowledged.

use crate::support;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use stele_batch_writer::{kinesis, BatchWriter, KinesisEvent, SqsDeadLetters};
use stele_core::{validate_event, Context, SealedEvent, TimeWindow};
use stele_store::{PgEventStore, StoreConfig};
use support::faults::{crash_postgres, OwnPostgres};
use support::{unique_name, TestEnv};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn event(n: usize) -> SealedEvent {
    let ctx = Context {
        tenant_id: ["acme", "globex"][n % 2],
        now: now(),
        window: TimeWindow::default(),
        id_if_missing: None,
    };
    let body = json!({
        "occurred_at": format!("2026-03-01T{:02}:{:02}:00Z", n % 12, n % 60),
        "category": "audit", "action": "record.write", "outcome": "success",
        "actor": {"id": format!("u{n}"), "type": "service"},
        "metadata": {"n": n},
        "source": {"service": "restart-test"}
    });
    validate_event(&body, &ctx).unwrap().seal()
}

/// Emulates the event source mapping on one shard: delivers `batch` records
/// from the checkpoint, moves the checkpoint to the first reported failure.
struct Shard {
    records: Vec<Vec<u8>>,
    checkpoint: usize,
    batch: usize,
    failed_deliveries: usize,
}

fn seq(i: usize) -> String {
    format!("4960{i:020}")
}

impl Shard {
    fn next_batch(&self) -> KinesisEvent {
        let end = (self.checkpoint + self.batch).min(self.records.len());
        kinesis::event(
            (self.checkpoint..end)
                .map(|i| kinesis::event_record("shardId-000000000000", &seq(i), "t", self.records[i].clone(), now()))
                .collect(),
        )
    }

    /// Apply a response; returns whether anything was reported failed.
    fn advance(&mut self, delivered: usize, failures: &[String]) -> bool {
        let lowest = failures
            .iter()
            .map(|id| {
                (self.checkpoint..self.records.len())
                    .find(|i| seq(*i) == *id)
                    .expect("a delivered id")
            })
            .min();
        match lowest {
            None => {
                self.checkpoint += delivered;
                false
            }
            Some(i) => {
                assert!(
                    failures.len() == self.checkpoint + delivered - i,
                    "every record from the checkpoint on is reported"
                );
                self.checkpoint = i;
                self.failed_deliveries += 1;
                true
            }
        }
    }

    fn done(&self) -> bool {
        self.checkpoint >= self.records.len()
    }
}

async fn deliver(writer: &BatchWriter<PgEventStore, SqsDeadLetters>, shard: &mut Shard) -> bool {
    let batch = shard.next_batch();
    let n = batch.records.len();
    let response = writer.handle_batch(batch).await;
    let failures: Vec<String> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    shard.advance(n, &failures)
}

#[tokio::test]
async fn postgres_stopped_mid_run_and_restarted_ends_with_every_record_written_exactly_once() {
    let env = TestEnv::get().await;
    let cluster = OwnPostgres::start();
    let client = support::connect(&cluster.url).await;
    stele_store::migrate(&client).await.unwrap();
    drop(client);

    let mut config = StoreConfig::new(cluster.url.clone());
    config.pool_size = 2;
    let writer = BatchWriter::new(
        PgEventStore::new(stele_store::pool(&config).unwrap()),
        SqsDeadLetters::new(env.sqs().await, env.create_queue(&unique_name("dlq")).await),
    );
    let sealed: Vec<SealedEvent> = (0..1200).map(event).collect();
    let mut shard = Shard {
        records: sealed.iter().map(|s| s.record.clone()).collect(),
        checkpoint: 0,
        batch: 100,
        failed_deliveries: 0,
    };

    // A few batches go through.
    for _ in 0..3 {
        assert!(!deliver(&writer, &mut shard).await, "healthy database, no failures");
    }

    // The server is stopped while a batch is in flight: whether that batch
    // made it or not, the response must say so truthfully.
    let in_flight = shard.next_batch();
    let delivered = in_flight.records.len();
    let dir = cluster.dir.clone();
    let killer = tokio::task::spawn_blocking(move || crash_postgres(&dir));
    let response = writer.handle_batch(in_flight).await;
    killer.await.unwrap();
    let failures: Vec<String> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    shard.advance(delivered, &failures);

    // While it is down, every delivery is reported failed and the checkpoint stays.
    for _ in 0..2 {
        let before = shard.checkpoint;
        assert!(
            deliver(&writer, &mut shard).await,
            "a batch cannot be acknowledged while Postgres is down"
        );
        assert_eq!(shard.checkpoint, before);
    }

    cluster.restart();
    let mut rounds = 0;
    while !shard.done() {
        rounds += 1;
        assert!(rounds < 100, "the run did not finish after the restart");
        deliver(&writer, &mut shard).await;
    }
    assert!(shard.failed_deliveries >= 2);

    let client = support::connect(&cluster.url).await;
    let (rows, distinct): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT count(*), count(DISTINCT (tenant_id, event_id)) FROM audit_events",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((rows, distinct), (1200, 1200), "every record exactly once");
    let ids: Vec<uuid::Uuid> = client
        .query("SELECT event_id FROM audit_events ORDER BY kinesis_seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<uuid::Uuid> = sealed.iter().map(|s| s.event.event_id).collect();
    assert_eq!(ids, expected, "the rows are the records, in stream order");
}
