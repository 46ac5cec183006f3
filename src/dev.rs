//! `stele dev`: the whole pipeline on one machine. Real PostgreSQL and
//! LocalStack run as host processes; stele plays the managed parts itself with
//! the same handler code Lambda runs: an HTTP front standing in for API Gateway
//! (bearer tokens play the JWT authorizer), an event source mapping emulator
//! feeding the batch-writer, and (with `--archive-every`) a timer for the archiver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, Utc};
use stele::local::{api_gateway, aws, demo, deployed, esm, services, viewer};
use stele_batch_writer::{BatchWriter, SqsDeadLetters};
use stele_ingest::{DynamoDbQuota, Ingest, IngestConfig, KinesisSink, Quota};
use stele_query::export::jobs::{ExportWorker, InProcessJobs};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Port of the local HTTP front of the ingest function (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Development-only bearer tokens, TOKEN=TENANT (repeatable). Default: three demo tenants.
    #[arg(long = "token", value_name = "TOKEN=TENANT")]
    tokens: Vec<String>,
    /// Kinesis stream name.
    #[arg(long, default_value = "stele-events")]
    stream: String,
    /// Shards of the stream.
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Dead-letter queue name (poison records and exhausted batches).
    #[arg(long, default_value = "stele-dlq")]
    dlq: String,
    /// Archive bucket name.
    #[arg(long, default_value = "stele-archive")]
    bucket: String,
    /// Event source mapping: records per batch.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Event source mapping: batching window in milliseconds.
    #[arg(long, default_value_t = 1000)]
    batch_window_ms: u64,
    /// Event source mapping: retries of a failing batch before it goes to the
    /// on-failure destination (default: retry until it succeeds, like AWS's -1).
    #[arg(long)]
    max_retries: Option<u32>,
    /// Day partitions created around today.
    #[arg(long, default_value_t = 3)]
    days_around: u64,
    /// Oldest accepted `occurred_at`, in hours (ingest's max lateness).
    #[arg(long, default_value_t = deployed::MAX_LATENESS_HOURS)]
    max_lateness_hours: i64,
    /// Run the archiver every this many seconds (off when absent).
    #[arg(long, value_name = "SECS")]
    archive_every: Option<u64>,
    /// Archiver: days a partition stays hot in PostgreSQL.
    #[arg(long, default_value_t = deployed::RETENTION_DAYS)]
    retention_days: i64,
    /// Archiver: hours after a day's end before it may be archived (default: the
    /// ingest max lateness). Below that, late rows for an archived day are sent to
    /// the dead-letter queue rather than written — fine for a demo, not production.
    #[arg(long)]
    archive_lateness_hours: Option<i64>,
    /// Sign and publish each tenant's log checkpoint every this many seconds (0: off).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    checkpoint_every: u64,
    /// The log's signing key (a C2SP note private key); generated if absent, the
    /// public key is written next to it (`.vkey`).
    #[arg(long, value_name = "FILE", default_value = ".stele/dev/log.skey")]
    log_key_file: std::path::PathBuf,
    /// The deployment's log origin (each tenant's is `<origin>/tenant/<tenant>`).
    #[arg(long, default_value = "stele.dev/local")]
    log_origin: String,
    /// Per-tenant quota in events per second (off when absent or 0), kept in a
    /// DynamoDB table on LocalStack as the deployed function keeps it. A tenant
    /// over it gets 429 with Retry-After.
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    tenant_quota: Option<u64>,
    /// Burst of the per-tenant quota, in events (default: the rate).
    #[arg(long, value_name = "EVENTS", requires = "tenant_quota")]
    tenant_quota_burst: Option<u64>,
    /// DynamoDB table of the per-tenant quota (counters and per-tenant overrides).
    #[arg(long, default_value = "stele-tenant-quotas")]
    quota_table: String,
    /// Send realistic traffic from a few tenants and show progress.
    #[arg(long)]
    demo: bool,
    /// Use this PostgreSQL (a connection URL) instead of starting one; the
    /// browser test passes the test run's.
    #[arg(long, value_name = "URL")]
    pg_url: Option<String>,
    /// Use this LocalStack endpoint instead of starting one.
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<String>,
    /// Provision, print, then stop everything instead of serving.
    #[arg(long)]
    exit_when_ready: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The default development tokens (printed at start; never use them elsewhere).
const DEMO_TOKENS: [(&str, &str); 3] = [
    ("dev-token-acme", "acme"),
    ("dev-token-globex", "globex"),
    ("dev-token-initech", "initech"),
];

pub async fn run(args: DevArgs) -> Result<(), BoxError> {
    // Refuse a bad `--token` or quota before starting anything.
    tenants(&args)?;
    tenant_quota(&args)?;
    let pg = match &args.pg_url {
        Some(_) => None,
        None => {
            eprintln!("stele dev: starting PostgreSQL (installs Debian postgresql if missing)…");
            Some(services::start_postgres(false)?)
        }
    };
    let localstack = match &args.aws_endpoint {
        Some(_) => Ok(None),
        None => {
            eprintln!("stele dev: starting LocalStack in host mode (the first run installs it, about a minute)…");
            services::start_localstack().map(Some)
        }
    };
    let localstack = match localstack {
        Ok(ls) => ls,
        Err(e) => {
            if let Some(pg) = &pg {
                pg.stop();
            }
            return Err(e.into());
        }
    };
    let pg_url = args.pg_url.clone().or_else(|| pg.as_ref().map(|s| s.endpoint.clone()));
    let aws_endpoint = args
        .aws_endpoint
        .clone()
        .or_else(|| localstack.as_ref().map(|s| s.endpoint.clone()));
    let result = serve(&args, &pg_url.unwrap_or_default(), &aws_endpoint.unwrap_or_default()).await;
    // Only what this run started is stopped; given services belong to their owner.
    if pg.is_some() || localstack.is_some() {
        eprintln!("stele dev: stopping PostgreSQL and LocalStack…");
    }
    if let Some(ls) = localstack {
        ls.stop();
    }
    if let Some(pg) = pg {
        pg.stop();
    }
    result
}

struct Provisioned {
    dlq_url: String,
}

async fn provision(args: &DevArgs, pg_url: &str, sdk: &aws_config::SdkConfig) -> Result<Provisioned, BoxError> {
    let client = stele_store::connect(&stele_store::StoreConfig::new(pg_url)).await?;
    let applied = stele_store::migrate(&client).await?;
    let today = Utc::now().date_naive();
    let from = today.checked_sub_days(Days::new(args.days_around)).unwrap_or(today);
    let to = today.checked_add_days(Days::new(args.days_around)).unwrap_or(today);
    let partitions = stele_store::partitions::ensure_range(&client, from, to).await?;

    aws::create_stream(&aws_sdk_kinesis::Client::new(sdk), &args.stream, args.shards).await?;
    let dlq_url = aws::create_queue(&aws_sdk_sqs::Client::new(sdk), &args.dlq).await?;
    aws::create_bucket(&aws::s3_client(sdk), &args.bucket).await?;
    let quota = tenant_quota(args)?;
    if quota.is_some() {
        aws::create_quota_table(&aws_sdk_dynamodb::Client::new(sdk), &args.quota_table).await?;
    }

    println!("PostgreSQL     {pg_url}");
    println!("  migrations   {} applied", applied.len());
    println!("  partitions   {} created ({from} … {to})", partitions.created.len());
    println!("  stream       {} ({} shards)", args.stream, args.shards);
    println!("  dead letters {dlq_url}");
    println!("  archive      s3://{}", args.bucket);
    if let Some(q) = quota {
        println!(
            "  quota        {} events/s per tenant (burst {}) in DynamoDB table {}",
            q.events_per_sec, q.burst, args.quota_table
        );
    }
    Ok(Provisioned { dlq_url })
}

/// `--tenant-quota` and `--tenant-quota-burst` (`None`: no quota).
fn tenant_quota(args: &DevArgs) -> Result<Option<Quota>, BoxError> {
    match args.tenant_quota {
        None | Some(0) => Ok(None),
        Some(rate) => Quota::new(rate, args.tenant_quota_burst)
            .map(Some)
            .map_err(|e| format!("--tenant-quota: {e}").into()),
    }
}

fn tenants(args: &DevArgs) -> Result<HashMap<String, String>, BoxError> {
    if args.tokens.is_empty() {
        return Ok(DEMO_TOKENS
            .iter()
            .map(|(t, n)| (t.to_string(), n.to_string()))
            .collect());
    }
    parse_tokens(&args.tokens).map_err(Into::into)
}

/// `--token TOKEN=TENANT` pairs; the tenant must follow the tenant id rule
/// (`stele_core::tenant`), as the deployed handler would refuse it anyway.
fn parse_tokens(pairs: &[String]) -> Result<HashMap<String, String>, String> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((token, tenant)) if !token.is_empty() && !tenant.is_empty() => {
                stele_core::check_tenant_id(tenant).map_err(|e| format!("--token `{pair}`: {e}"))?;
                Ok((token.to_string(), tenant.to_string()))
            }
            _ => Err(format!("--token must be TOKEN=TENANT, got `{pair}`")),
        })
        .collect()
}

async fn serve(args: &DevArgs, pg_url: &str, aws_endpoint: &str) -> Result<(), BoxError> {
    let sdk = aws::sdk_config(aws_endpoint).await;
    println!("LocalStack     {aws_endpoint}  (region us-east-1, any credentials)");
    let provisioned = provision(args, pg_url, &sdk).await?;
    if args.exit_when_ready {
        return Ok(());
    }
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (stop_tx, stop_rx) = watch::channel(false);

    // Ingest: the Lambda's handler behind a local HTTP front.
    let mut ingest_config = IngestConfig::new(&args.stream);
    ingest_config.window.max_lateness = chrono::TimeDelta::hours(args.max_lateness_hours);
    let quota = tenant_quota(args)?.map(|default| {
        ingest_config.quota.default = Some(default);
        ingest_config.quota.table = Some(args.quota_table.clone());
        DynamoDbQuota::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &args.quota_table,
            default,
            ingest_config.quota.timeout,
        )
    });
    let ingest =
        Arc::new(Ingest::new(ingest_config, KinesisSink::new(kinesis.clone(), &args.stream)).with_quota(quota));
    let tenants = Arc::new(tenants(args)?);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let addr = listener.local_addr()?;
    // Query (proofs, checkpoints): the Lambda's handler on the same front, as the
    // HTTP API routes it, reading the dev database.
    let store_config = stele_store::StoreConfig::new(pg_url);
    let query_config = stele_query::QueryConfig {
        archive_bucket: Some(args.bucket.clone()),
        archive_prefix: deployed::ARCHIVE_PREFIX.into(),
        ..Default::default()
    };
    let (query_pool, s3) = (stele_store::pool(&store_config)?, aws::s3_client(&sdk));
    let mut query = stele_query::Query::new(query_config.clone(), query_pool.clone()).with_archive(s3.clone());
    // Asynchronous exports (POST /v1/exports) run on a task here, not behind a queue.
    if let Some(worker) = ExportWorker::from_config(&query_config, query_pool, s3) {
        query = query.with_export_jobs(Arc::new(InProcessJobs::new(Arc::new(worker))));
    }
    let query = Arc::new(query);
    // The checkpointer's key is made before serving: the viewer's config names it.
    let checkpointer = if args.checkpoint_every > 0 {
        Some(checkpointer(args, &sdk).await?)
    } else {
        None
    };
    let viewer = Arc::new(viewer::Viewer::new(
        checkpointer.as_ref().map(|(_, vkey)| vkey.as_str()),
        &args.log_origin,
    ));
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(api_gateway::serve_with_query(
        listener,
        ingest,
        Some(query),
        Some(viewer),
        tenants.clone(),
        async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        },
    ));

    // Batch-writer behind the event source mapping emulator.
    let writer = Arc::new(BatchWriter::new(
        stele_store::PgEventStore::new(stele_store::pool(&store_config)?),
        SqsDeadLetters::new(sqs.clone(), &provisioned.dlq_url),
    ));
    let written = Arc::new(demo::WriterTotals::default());
    let handler: esm::Handler = {
        let (writer, written) = (writer.clone(), written.clone());
        Arc::new(move |event| {
            let (writer, written) = (writer.clone(), written.clone());
            Box::pin(async move {
                let (response, report) = writer.process(event).await;
                written.add(&report);
                response
            })
        })
    };
    let mapping = esm::MappingSettings {
        stream_name: args.stream.clone(),
        stream_arn: format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", args.stream),
        batch_size: args.batch_size,
        batching_window: Duration::from_millis(args.batch_window_ms),
        bisect_on_error: deployed::ESM_BISECT_ON_ERROR,
        max_retries: args.max_retries.or(deployed::ESM_MAX_RETRIES),
        on_failure_queue: Some(provisioned.dlq_url.clone()),
    };
    let mapping_stats = Arc::new(esm::MappingStats::default());
    let pollers = tokio::spawn(esm::run(
        kinesis.clone(),
        sqs.clone(),
        mapping,
        handler,
        mapping_stats.clone(),
        stop_rx.clone(),
    ));

    println!("ingest         http://{addr}/v1/events   (health: http://{addr}/v1/health)");
    println!(
        "proofs         http://{addr}/v1/events/{{event_id}}/proof, /v1/log/checkpoint, /v1/log/consistency?from=N"
    );
    println!("viewer         http://{addr}/   (read-only web viewer of a tenant's events)");
    println!("  development-only bearer tokens (the JWT authorizer's stand-in):");
    let mut listed: Vec<_> = tenants.iter().collect();
    listed.sort();
    for (token, tenant) in listed {
        println!("    Authorization: Bearer {token}   → tenant {tenant}");
    }

    let sent = Arc::new(demo::SenderTotals::default());
    let demo_task = args.demo.then(|| {
        let tokens: Vec<String> = tenants.keys().cloned().collect();
        tokio::spawn(demo::send_traffic(addr, tokens, sent.clone(), stop_rx.clone()))
    });
    let archived = Arc::new(demo::ArchiveTotals::default());
    let archive_timer = args.archive_every.map(|every| {
        let settings = crate::archive::ArchiveSettings {
            bucket: args.bucket.clone(),
            prefix: deployed::ARCHIVE_PREFIX.into(),
            retention_days: args.retention_days,
            max_lateness_hours: args.archive_lateness_hours.unwrap_or(args.max_lateness_hours),
            drop_after_archive: true,
            stream: Some(args.stream.clone()),
            dedup_window_hours: deployed::DEDUP_WINDOW_HOURS,
        };
        let archiver = crate::archive::build(stele_store::StoreConfig::new(pg_url), &sdk, &settings);
        println!(
            "archiver       every {every} s: partitions older than {} days (and {} h of lateness) → s3://{}/audit/",
            settings.retention_days, settings.max_lateness_hours, settings.bucket
        );
        // The archiver's export future is not `Send` (parquet's writer holds
        // non-`Sync` state across awaits), so it gets a thread and runtime of its own.
        let (archived, stop) = (archived.clone(), stop_rx.clone());
        std::thread::spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(demo::archive_periodically(
                    archiver,
                    Duration::from_secs(every.max(1)),
                    archived,
                    stop,
                )),
                Err(e) => eprintln!("stele dev: archiver timer not started: {e}"),
            },
        )
    });
    let checkpoints = Arc::new(demo::CheckpointTotals::default());
    let checkpoint_timer = checkpointer.map(|(checkpointer, _)| {
        tokio::spawn(demo::checkpoint_periodically(
            checkpointer,
            stele_store::StoreConfig::new(pg_url),
            Duration::from_secs(args.checkpoint_every),
            checkpoints.clone(),
            stop_rx.clone(),
        ))
    });
    println!("ready: send events to http://{addr}/v1/events (Ctrl-C stops cleanly)");
    let progress = tokio::spawn(demo::report_progress(
        sent.clone(),
        written.clone(),
        mapping_stats.clone(),
        archived.clone(),
        checkpoints.clone(),
        stop_rx.clone(),
    ));

    tokio::signal::ctrl_c().await?;
    eprintln!("stele dev: Ctrl-C: no new requests; finishing what the stream holds…");
    let _ = stop_tx.send(true);
    if let Some(task) = demo_task {
        let _ = task.await;
    }
    let _ = http.await;
    match pollers.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("stele dev: event source mapping: {e}"),
        Err(e) => eprintln!("stele dev: event source mapping stopped: {e}"),
    }
    if let Some(timer) = archive_timer {
        let _ = tokio::task::spawn_blocking(move || timer.join()).await;
    }
    if let Some(timer) = checkpoint_timer {
        let _ = timer.await;
    }
    let _ = progress.await;
    eprintln!(
        "stele dev: done. written {} (duplicates {}, dead letters {}), acknowledged {}",
        written.inserted.load(Ordering::Relaxed),
        written.duplicates.load(Ordering::Relaxed),
        written.poison.load(Ordering::Relaxed),
        mapping_stats.acknowledged.load(Ordering::Relaxed),
    );
    Ok(())
}

/// The dev checkpointer: its key file (generated on first use, with the vkey next to
/// it) and the archive bucket the archiver uses; and the vkey.
async fn checkpointer(
    args: &DevArgs,
    sdk: &aws_config::SdkConfig,
) -> Result<(stele_checkpointer::Checkpointer<stele_archiver::S3Store>, String), BoxError> {
    stele_checkpointer::config::check_origin(&args.log_origin)?;
    let path = &args.log_key_file;
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let skey = stele_checkpointer::signer::generate_key_file(&args.log_origin)?;
        // Written aside, then linked into place: two `stele dev` starting together never
        // read a half-written key, and the second keeps the first one's.
        let tmp = path.with_extension(format!("skey.{}.tmp", std::process::id()));
        write_secret(&tmp, &format!("{skey}\n"))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked.or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        }) {
            return Err(e.into());
        }
    }
    let signer = stele_checkpointer::LogSigner::load(
        &stele_checkpointer::SignerSource::KeyFile(path.clone()),
        &args.log_origin,
        || aws_sdk_kms::Client::new(sdk),
    )
    .await?;
    let vkey = signer.vkey();
    let vkey_path = path.with_extension("vkey");
    let vkey_tmp = path.with_extension(format!("vkey.{}.tmp", std::process::id()));
    std::fs::write(&vkey_tmp, format!("{vkey}\n"))?;
    std::fs::rename(&vkey_tmp, &vkey_path)?;
    println!(
        "checkpointer   every {} s → s3://{}/{}/_log/<tenant>/checkpoint",
        args.checkpoint_every,
        args.bucket,
        deployed::ARCHIVE_PREFIX
    );
    println!("  signing key  {}", path.display());
    println!("  public key   {}  ({vkey})", vkey_path.display());
    println!(
        "               also s3://{}/{}",
        args.bucket,
        stele_tlog::publish::vkey_key(deployed::ARCHIVE_PREFIX)
    );
    let store = stele_archiver::S3Store::new(aws::s3_client(sdk), args.bucket.clone());
    let checkpointer =
        stele_checkpointer::Checkpointer::new(store, signer, deployed::ARCHIVE_PREFIX, args.log_origin.clone());
    Ok((checkpointer, vkey))
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::parse_tokens;

    #[test]
    fn token_tenants_follow_the_tenant_id_rule() {
        let ok = parse_tokens(&["tok=acme".into(), "t2=Acme_2.eu".into()]).unwrap();
        assert_eq!(ok["tok"], "acme");
        // `tok=a#b/../c` splits at the first `=`: the tenant is `a#b/../c`.
        for pair in ["tok=a#b/../c", "tok=a=b", "tok=a b", "tok=..", "tok=acme\u{200B}"] {
            let err = parse_tokens(&[pair.into()]).unwrap_err();
            assert!(err.contains("tenant id"), "{pair}: {err}");
        }
        assert!(parse_tokens(&["tok".into()]).is_err());
    }
}
