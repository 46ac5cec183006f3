//! The Rust AWS SDK clients against the real LocalStack the harness starts.

use crate::support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use support::{unique_name, TestEnv};

#[tokio::test]
async fn kinesis_stream_is_created_and_a_record_round_trips() {
    let env = TestEnv::get().await;
    let stream = unique_name("stream");
    env.create_stream(&stream, 1).await;
    let kinesis = env.kinesis().await;

    let put = kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("tenant-a")
        .data(Blob::new(b"{\"hello\":\"kinesis\"}".to_vec()))
        .send()
        .await
        .unwrap();

    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_string();
    let records = kinesis.get_records().shard_iterator(iterator).send().await.unwrap();
    let record = &records.records()[0];
    assert_eq!(record.data().as_ref(), b"{\"hello\":\"kinesis\"}");
    assert_eq!(record.partition_key(), Some("tenant-a"));
    assert_eq!(record.sequence_number(), put.sequence_number());
}

#[tokio::test]
async fn s3_bucket_is_created_and_an_object_round_trips() {
    let env = TestEnv::get().await;
    let bucket = unique_name("bucket");
    env.create_bucket(&bucket).await;
    let s3 = env.s3().await;
    s3.put_object()
        .bucket(&bucket)
        .key("audit/tenant_id=t1/dt=2026-11-25/part-0.parquet")
        .body(b"PAR1 not really".to_vec().into())
        .send()
        .await
        .unwrap();
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("audit/tenant_id=t1/dt=2026-11-25/part-0.parquet")
        .send()
        .await
        .unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.as_ref(), b"PAR1 not really");
}

#[tokio::test]
async fn sqs_queue_is_created_and_a_message_round_trips() {
    let env = TestEnv::get().await;
    let url = env.create_queue(&unique_name("dlq")).await;
    let sqs = env.sqs().await;
    sqs.send_message()
        .queue_url(&url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages()[0].body(), Some("poison"));
}
