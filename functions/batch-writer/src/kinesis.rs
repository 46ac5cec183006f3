//! Building `KinesisEvent`s the way the event source mapping delivers them:
//! for `stele dev`'s poller and for tests (the types are `#[non_exhaustive]`).

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use chrono::{DateTime, Utc};

/// One stream record as Lambda presents it (`eventID` = `shard:sequence`).
pub fn event_record(
    shard_id: &str,
    sequence_number: &str,
    partition_key: &str,
    data: Vec<u8>,
    arrived: DateTime<Utc>,
) -> KinesisEventRecord {
    let mut kinesis = KinesisRecord::default();
    kinesis.data.0 = data;
    kinesis.sequence_number = sequence_number.to_string();
    kinesis.partition_key = partition_key.to_string();
    kinesis.approximate_arrival_timestamp = SecondTimestamp(arrived);
    kinesis.kinesis_schema_version = Some("1.0".into());
    let mut record = KinesisEventRecord::default();
    record.kinesis = kinesis;
    record.event_id = Some(format!("{shard_id}:{sequence_number}"));
    record.event_name = Some("aws:kinesis:record".into());
    record.event_source = Some("aws:kinesis".into());
    record.event_version = Some("1.0".into());
    record
}

/// A batch of records.
pub fn event(records: Vec<KinesisEventRecord>) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records;
    event
}
