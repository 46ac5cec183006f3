//! `stele dev`: the pipeline's real services on one machine.

use chrono::{Days, Utc};
use stele::local::{aws, services};

#[derive(clap::Args)]
pub struct DevArgs {
    /// Kinesis stream name.
    #[arg(long, default_value = "stele-events")]
    stream: String,
    /// Shards of the stream.
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Dead-letter queue name.
    #[arg(long, default_value = "stele-dlq")]
    dlq: String,
    /// Archive bucket name.
    #[arg(long, default_value = "stele-archive")]
    bucket: String,
    /// Day partitions created ahead (and behind, for late events).
    #[arg(long, default_value_t = 3)]
    days_around: u64,
    /// Provision, print, then stop everything instead of waiting for Ctrl-C.
    #[arg(long)]
    exit_when_ready: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: DevArgs) -> Result<(), BoxError> {
    eprintln!("stele dev: starting PostgreSQL (installs Debian postgresql if missing)…");
    let pg = services::start_postgres(false)?;
    eprintln!("stele dev: starting LocalStack in host mode (first run installs it, ~1 min)…");
    let localstack = match services::start_localstack() {
        Ok(ls) => ls,
        Err(e) => {
            pg.stop();
            return Err(e.into());
        }
    };
    let result = provision(&args, &pg.endpoint, &localstack.endpoint).await;
    if let Ok(()) = &result {
        if !args.exit_when_ready {
            eprintln!("stele dev: ready. Ctrl-C stops everything.");
            tokio::signal::ctrl_c().await?;
            eprintln!("stele dev: stopping…");
        }
    }
    localstack.stop();
    pg.stop();
    result
}

async fn provision(args: &DevArgs, pg_url: &str, aws_endpoint: &str) -> Result<(), BoxError> {
    let store = stele_store::StoreConfig::new(pg_url);
    let client = stele_store::connect(&store).await?;
    let applied = stele_store::migrate(&client).await?;
    let today = Utc::now().date_naive();
    let from = today.checked_sub_days(Days::new(args.days_around)).unwrap_or(today);
    let to = today.checked_add_days(Days::new(args.days_around)).unwrap_or(today);
    let partitions = stele_store::partitions::ensure_range(&client, from, to).await?;

    let sdk = aws::sdk_config(aws_endpoint).await;
    aws::create_stream(&aws_sdk_kinesis::Client::new(&sdk), &args.stream, args.shards).await?;
    let dlq_url = aws::create_queue(&aws_sdk_sqs::Client::new(&sdk), &args.dlq).await?;
    aws::create_bucket(&aws::s3_client(&sdk), &args.bucket).await?;

    println!("PostgreSQL     {pg_url}");
    println!("  migrations   {} applied", applied.len());
    println!("  partitions   {} created ({from} … {to})", partitions.created.len());
    println!("LocalStack     {aws_endpoint}  (region us-east-1, any credentials)");
    println!("  stream       {} ({} shards)", args.stream, args.shards);
    println!("  dead letters {dlq_url}");
    println!("  archive      s3://{}", args.bucket);
    Ok(())
}
