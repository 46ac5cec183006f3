//! `stele archive`: run the archiver once, as the scheduled Lambda would, against
//! any PostgreSQL and S3 (e.g. `stele dev`'s). Operators use it for a dry run or
//! to archive one partition by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use stele::local::aws;
use stele_archiver::{Archiver, ArchiverConfig, PgArchiver, S3Store};
use stele_store::StoreConfig;

#[derive(clap::Args)]
pub struct ArchiveArgs {
    /// PostgreSQL holding `audit_events`. Without it the database comes from the
    /// environment as the Lambda reads it (`STELE_DB_SECRET_ARN`, `STELE_DB_TLS`, …).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// S3 endpoint (LocalStack's, for `stele dev`); absent means AWS from the environment.
    #[arg(long, env = "STELE_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// Archive bucket.
    #[arg(long, env = "STELE_ARCHIVE_BUCKET", default_value = "stele-archive")]
    bucket: String,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "audit")]
    prefix: String,
    /// Days a partition stays hot in PostgreSQL.
    #[arg(long, default_value_t = 30)]
    retention_days: i64,
    /// A partition is only archived once no event can still arrive for it.
    #[arg(long, default_value_t = 72)]
    max_lateness_hours: i64,
    /// Keep the detached table instead of dropping it.
    #[arg(long)]
    keep_detached: bool,
    /// The Kinesis stream the batch-writer consumes: days wait while records
    /// that may belong to them are still in it (without it, the clock decides).
    #[arg(long, env = "STELE_STREAM_NAME")]
    stream: Option<String>,
    /// Hours an event id stays claimed against re-sends; older claims are
    /// pruned by the run (as the Lambda's `STELE_DEDUP_WINDOW_HOURS`).
    #[arg(long, env = "STELE_DEDUP_WINDOW_HOURS", default_value_t = 336)]
    dedup_window_hours: i64,
    /// Archive only this partition (e.g. audit_events_p20261101).
    #[arg(long)]
    partition: Option<String>,
    /// Say what would be archived; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Time budget of the run, in seconds.
    #[arg(long, default_value_t = 600)]
    budget_secs: u64,
}

/// Archiver settings shared by `stele archive` and `stele dev`'s timer.
pub struct ArchiveSettings {
    pub bucket: String,
    pub prefix: String,
    pub retention_days: i64,
    pub max_lateness_hours: i64,
    pub drop_after_archive: bool,
    /// The stream whose backlog holds days back.
    pub stream: Option<String>,
    /// How long event ids stay claimed.
    pub dedup_window_hours: i64,
}

/// Build the archiver exactly as the Lambda does, with S3 at `sdk`.
pub fn build(db: StoreConfig, sdk: &aws_config::SdkConfig, settings: &ArchiveSettings) -> PgArchiver<S3Store> {
    let mut config = ArchiverConfig::new(settings.bucket.clone());
    config.prefix = settings.prefix.clone();
    config.retention = chrono::Duration::days(settings.retention_days);
    config.max_lateness = chrono::Duration::hours(settings.max_lateness_hours);
    config.drop_after_archive = settings.drop_after_archive;
    config.dedup_window = chrono::Duration::hours(settings.dedup_window_hours);
    let store = Arc::new(S3Store::new(aws::s3_client(sdk), settings.bucket.clone()));
    Archiver::with_postgres(store, db, config)
        .with_stream_backlog(aws_sdk_kinesis::Client::new(sdk), settings.stream.as_deref())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: ArchiveArgs) -> Result<(), BoxError> {
    let sdk = match &args.aws_endpoint {
        Some(endpoint) => aws::sdk_config(endpoint).await,
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let settings = ArchiveSettings {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        retention_days: args.retention_days,
        max_lateness_hours: args.max_lateness_hours,
        drop_after_archive: !args.keep_detached,
        stream: args.stream.clone(),
        dedup_window_hours: args.dedup_window_hours,
    };

    let db = match &args.database_url {
        Some(url) => StoreConfig::new(url.clone()),
        None => StoreConfig::from_env(&aws_sdk_secretsmanager::Client::new(&sdk)).await?,
    };
    let archiver = build(db, &sdk, &settings);
    archiver
        .config()
        .check_dedup_window()
        .map_err(|e| format!("--dedup-window-hours and --max-lateness-hours: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(args.budget_secs);
    let now = Utc::now();
    let report = match &args.partition {
        Some(partition) => {
            let one = archiver
                .archive_partition(partition, args.dry_run, now, deadline)
                .await?;
            serde_json::json!({ "archived": [one] })
        }
        None if args.dry_run => {
            let candidates = archiver.candidates(now).await?;
            let mut reports = Vec::new();
            for partition in candidates {
                reports.push(archiver.archive_partition(&partition, true, now, deadline).await?);
            }
            serde_json::json!({ "dry_run": true, "archived": reports })
        }
        None => {
            let report = archiver.run(now, deadline).await;
            if let Some(error) = &report.error {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Err(error.clone().into());
            }
            serde_json::to_value(&report)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
