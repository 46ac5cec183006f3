//! `stele`: run the whole pipeline locally and operate it.

use clap::{Parser, Subcommand};

mod archive;
mod db;
mod dev;
mod query;
mod replay;
mod send;

#[derive(Parser)]
#[command(
    name = "stele",
    version,
    args_override_self = true,
    about = "stele: audit events over HTTPS → Kinesis → PostgreSQL → S3 Parquet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline locally: PostgreSQL and LocalStack as host processes,
    /// the ingest handler behind a local HTTP front, the batch-writer behind an
    /// event source mapping emulator; Ctrl-C drains the stream and stops everything.
    Dev(dev::DevArgs),
    /// Post events from a file or stdin to an ingest endpoint (e.g. `stele dev`'s).
    Send(send::SendArgs),
    /// Run the archiver once (as the scheduled Lambda does): old partitions to
    /// S3 Parquet, verified, then detached and dropped. `--dry-run` changes nothing.
    Archive(archive::ArchiveArgs),
    /// Replay the dead-letter queue and the failed-batches bucket through the
    /// batch-writer once their cause is fixed (idempotent). `--dry-run`
    /// changes nothing. Exit status 2 when records are still failing.
    Replay(replay::ReplayArgs),
    /// Prove the archive (and with `--database` the hot store) against the signed
    /// log: signatures, consistency, every file's and row's hash, every leaf.
    /// Exit status 1 on any failure, each printed with tenant, day, file and event.
    Verify(stele::verify::cli::VerifyArgs),
    /// A tenant's events, hot and archived, with the read API's filters: through the
    /// API (`--endpoint`, `--token`) or from a database and bucket (`--database-url`,
    /// `--tenant`, `--bucket`). A table on a terminal, NDJSON otherwise.
    Query(query::QueryArgs),
    /// The owner's database steps: `migrate` (apply pending migrations) and
    /// `create-login` (a function's login user in its database role, its
    /// password written into the function's secret). Run as the master user.
    Db(db::DbArgs),
    /// Print the archive's Parquet columns, Hive partition keys and layout as
    /// JSON (the Glue table must match it).
    ArchiveSchema,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Replaying, the writer's "dead-lettered" warnings are about records that
    // already are dead letters: the summary counts them instead.
    let writer_level = if matches!(cli.command, Command::Replay(_)) {
        "error"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                format!("warn,stele=info,stele_ingest=warn,stele_checkpointer=warn,stele_batch_writer={writer_level}")
                    .into()
            }),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: in a file or a pipe the
        // escape codes would be noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Archive(args) => archive::run(args).await,
        Command::Db(args) => db::run(args).await,
        Command::Query(args) => query::run(args).await,
        Command::Replay(args) => match replay::run(args).await {
            // Still failing is a result, not an error: a distinct status for scripts.
            Ok(summary) if summary.still_failing() > 0 => return std::process::ExitCode::from(2),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Verify(args) => match stele::verify::cli::run(args).await {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e.into()),
        },
        Command::ArchiveSchema => {
            println!("{:#}", stele_archiver::schema::describe());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stele: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
