//! The `stele verify` command line.

use std::io::Write;

use chrono::NaiveDate;
use stele_archiver::S3Store;

use super::{verify, Scope, Trust};
use crate::local::aws;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Archive bucket.
    #[arg(long, env = "STELE_ARCHIVE_BUCKET", default_value = "stele-archive")]
    bucket: String,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "audit")]
    prefix: String,
    /// S3 endpoint (LocalStack's, for `stele dev`); absent means AWS from the environment.
    #[arg(long, env = "STELE_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// The log's verifier key (C2SP vkey, e.g. the Terraform output or `_log/log.vkey`),
    /// or `@FILE` to read it from a file. Trust comes from this key, never from the bucket.
    #[arg(long, env = "STELE_LOG_VKEY")]
    vkey: String,
    /// The deployment's log origin (checkpoints are for `<origin>/tenant/<tenant>`).
    #[arg(long, env = "STELE_LOG_ORIGIN")]
    origin: String,
    /// Also check the hot store: every row still in PostgreSQL, and that the database's
    /// log still contains the newest checkpoint.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only archived days from this one (YYYY-MM-DD).
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Only archived days up to this one (YYYY-MM-DD).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Only this event: its row (archived or hot) is checked and proven in the log.
    #[arg(long)]
    event: Option<uuid::Uuid>,
    /// Accept rows without a leaf: rows stored before the verifiable log existed
    /// (migration 0005). Without it, such a row fails (it could be forged).
    #[arg(long)]
    allow_unlogged: bool,
}

/// Runs `stele verify`; `Ok(false)` when something failed verification.
pub async fn run(args: VerifyArgs) -> Result<bool, String> {
    let vkey = match args.vkey.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?,
        None => args.vkey.clone(),
    };
    let verifiers =
        stele_tlog::Verifiers::from_vkeys([vkey.trim()]).map_err(|e| format!("--vkey is not a verifier key: {e}"))?;
    let sdk = match &args.aws_endpoint {
        Some(endpoint) => aws::sdk_config(endpoint).await,
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let store = S3Store::new(aws::s3_client(&sdk), args.bucket.clone());
    let db = match &args.database_url {
        Some(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connecting to PostgreSQL: {}", stele_store::pg_message(&e)))?;
            tokio::spawn(connection);
            Some(client)
        }
        None => None,
    };
    let trust = Trust {
        verifiers,
        deployment_origin: args.origin.clone(),
    };
    let scope = Scope {
        tenant: args.tenant.clone(),
        from: args.from,
        to: args.to,
        event: args.event,
        allow_unlogged: args.allow_unlogged,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |what: &str| {
        if tty {
            eprint!("\r\x1b[2Kverifying {what}");
            let _ = std::io::stderr().flush();
        }
    };
    let report = verify(&store, &args.prefix, &trust, &scope, db.as_ref(), &progress).await?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    for f in &report.findings {
        println!("FAIL {f}");
    }
    println!("{}", report.summary());
    Ok(report.ok())
}
