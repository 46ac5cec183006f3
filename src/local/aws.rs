//! AWS SDK clients for a local endpoint (LocalStack) and the resources a local
//! pipeline needs: the stream, the dead-letter queue, the archive bucket and
//! the per-tenant quota table.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// SDK config for LocalStack: us-east-1 and static test credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "stele-local",
        ))
        .load()
        .await
}

/// S3 in path style: LocalStack does not serve bucket subdomains.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ProvisionError {
    pub what: String,
    pub message: String,
}

fn failed(what: impl Into<String>) -> impl FnOnce(String) -> ProvisionError {
    let what = what.into();
    move |message| ProvisionError { what, message }
}

/// Create a Kinesis stream and wait until it is ACTIVE.
pub async fn create_stream(kinesis: &aws_sdk_kinesis::Client, name: &str, shards: i32) -> Result<(), ProvisionError> {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| {
            failed(format!("creating stream {name}"))(format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(e)))
        })?;
    for _ in 0..600 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| {
                failed(format!("describing stream {name}"))(format!(
                    "{}",
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                ))
            })?;
        let active = summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(failed(format!("stream {name}"))(
        "did not become ACTIVE within 30 s".into(),
    ))
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), ProvisionError> {
    s3.create_bucket().bucket(name).send().await.map(|_| ()).map_err(|e| {
        failed(format!("creating bucket {name}"))(format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
    })
}

/// Create a queue; returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, ProvisionError> {
    let out = sqs.create_queue().queue_name(name).send().await.map_err(|e| {
        failed(format!("creating queue {name}"))(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
    })?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| failed(format!("creating queue {name}"))("no queue URL in the answer".into()))
}

/// Create the per-tenant quota table as Terraform does (hash key `pk`, on
/// demand, TTL on `expires_at`) unless it exists, and wait until it is ACTIVE.
pub async fn create_quota_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), ProvisionError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
        TimeToLiveSpecification,
    };
    use stele_ingest::quota::dynamodb::{KEY, TTL_ATTRIBUTE};
    let what = || format!("creating quota table {name}");
    let show = |e: &dyn std::fmt::Display| e.to_string();
    let exists = dynamodb.describe_table().table_name(name).send().await.is_ok();
    if !exists {
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| failed(what())(show(&e)))?;
        let attribute = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| failed(what())(show(&e)))?;
        dynamodb
            .create_table()
            .table_name(name)
            .key_schema(key)
            .attribute_definitions(attribute)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| failed(what())(show(&aws_sdk_dynamodb::error::DisplayErrorContext(e))))?;
    }
    for _ in 0..600 {
        let described = dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| failed(what())(show(&aws_sdk_dynamodb::error::DisplayErrorContext(e))))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(|e| failed(what())(show(&e)))?;
            // Already enabled is an error in DynamoDB; either way TTL is on.
            let _ = dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(ttl)
                .send()
                .await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(failed(format!("quota table {name}"))(
        "did not become ACTIVE within 30 s".into(),
    ))
}
