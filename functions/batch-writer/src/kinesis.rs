//! Building `KinesisEvent`s the way the event source mapping delivers them:
//! the one builder for `stele dev`'s poller (`src/local/esm.rs`), the tests and
//! the benchmarks (the types are `#[non_exhaustive]`).

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

/// One record read from the stream `stream_arn`, as the mapping stamps it:
/// [`event_record`] plus `eventSourceARN` and `awsRegion` (taken from the ARN),
/// which the dead-letter messages carry.
pub fn stream_record(
    stream_arn: &str,
    shard_id: &str,
    sequence_number: &str,
    partition_key: &str,
    data: Vec<u8>,
    arrived: DateTime<Utc>,
) -> KinesisEventRecord {
    let mut record = event_record(shard_id, sequence_number, partition_key, data, arrived);
    record.aws_region = stream_arn
        .split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    record.event_source_arn = Some(stream_arn.to_owned());
    record
}

/// A batch of records.
pub fn event(records: Vec<KinesisEventRecord>) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records;
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_record_names_its_stream_and_region() {
        let arn = "arn:aws:kinesis:eu-west-1:000000000000:stream/s";
        let r = stream_record(arn, "shardId-000000000001", "42", "acme", b"{}".to_vec(), Utc::now());
        assert_eq!(r.event_source_arn.as_deref(), Some(arn));
        assert_eq!(r.aws_region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.event_id.as_deref(), Some("shardId-000000000001:42"));
        assert_eq!(r.kinesis.sequence_number, "42");
        assert_eq!(r.kinesis.partition_key, "acme");
    }
}
