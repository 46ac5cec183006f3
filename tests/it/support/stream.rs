//! A Kinesis stream of its own for one test, on the run's LocalStack.

use aws_sdk_kinesis::types::ShardIteratorType;
use stele_ingest::KinesisSink;

use super::{unique_name, TestEnv};

/// A stream of its own for one test, deleted at the end.
pub struct TestStream {
    pub name: String,
    kinesis: aws_sdk_kinesis::Client,
}

impl TestStream {
    pub async fn new(env: &TestEnv, shards: i32) -> Self {
        let name = unique_name("ingest");
        env.create_stream(&name, shards).await;
        Self {
            name,
            kinesis: env.kinesis().await,
        }
    }

    pub fn sink(&self) -> KinesisSink {
        KinesisSink::new(self.kinesis.clone(), &self.name)
    }

    /// The records of a one-shard stream written after sequence number
    /// `after` (from the start when `None`): (sequence number, partition key, data).
    pub async fn read_after(&self, after: Option<&str>) -> Vec<(String, String, Vec<u8>)> {
        let shards = self.kinesis.list_shards().stream_name(&self.name).send().await.unwrap();
        let shard = shards.shards().first().expect("a shard").shard_id().to_string();
        let request = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.name)
            .shard_id(shard);
        let request = match after {
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        let mut iterator = request.send().await.unwrap().shard_iterator().map(str::to_owned);
        let mut out = Vec::new();
        while let Some(it) = iterator {
            let page = self.kinesis.get_records().shard_iterator(it).send().await.unwrap();
            for r in page.records() {
                out.push((
                    r.sequence_number().to_owned(),
                    r.partition_key().unwrap_or_default().to_owned(),
                    r.data().as_ref().to_vec(),
                ));
            }
            if page.records().is_empty() || page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
        out
    }

    /// Every record on the stream, as (partition key, data), shard by shard.
    pub async fn read_all(&self) -> Vec<(String, Vec<u8>)> {
        let shards = self.kinesis.list_shards().stream_name(&self.name).send().await.unwrap();
        let mut out = Vec::new();
        for shard in shards.shards() {
            let mut iterator = self
                .kinesis
                .get_shard_iterator()
                .stream_name(&self.name)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator()
                .map(str::to_owned);
            while let Some(it) = iterator {
                let page = self.kinesis.get_records().shard_iterator(it).send().await.unwrap();
                for r in page.records() {
                    out.push((
                        r.partition_key().unwrap_or_default().to_owned(),
                        r.data().as_ref().to_vec(),
                    ));
                }
                if page.records().is_empty() || page.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
        }
        out
    }

    pub async fn delete(self) {
        let _ = self
            .kinesis
            .delete_stream()
            .stream_name(&self.name)
            .enforce_consumer_deletion(true)
            .send()
            .await;
    }
}
