use thiserror::Error;

/// Everything that can go wrong in the Postgres layer, each variant saying what
/// was being done.
#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("connecting to PostgreSQL: {}", pg_message(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("reading the database secret {arn}: {message}")]
    Secret { arn: String, message: String },
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("migration {version} ({name}): {}", pg_message(.source))]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration {version} ({name}) was changed after it was applied (checksum differs)")]
    MigrationChanged { version: i32, name: &'static str },
    #[error("archive job {partition} is `{found}`, not `{expected}` as this run read it: another run moved it")]
    JobMoved {
        partition: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("event id {event_id} of tenant {tenant} is claimed by a concurrent batch whose claim cannot be read back; the batch is retried")]
    ClaimUnreadable { tenant: String, event_id: uuid::Uuid },
    #[error("verifiable log: {0}")]
    Log(String),
    #[error("{fresh} event ids were newly claimed but {stored} rows stored: a row outlived its claim (replayed beyond the deduplication window?); the batch is not logged twice")]
    ClaimWithoutRow { fresh: u64, stored: u64 },
    #[error("the log append did not match the stored log ({mismatches} heads or tiles differ): the batch is retried")]
    LogAppendMismatch { mismatches: i64 },
    #[error("{what}: {}", pg_message(.source))]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |source| Error::Query { what, source }
    }

    /// True when the error is about the connection (server gone, restart,
    /// network), i.e. worth retrying on a fresh connection.
    pub fn is_connection_problem(&self) -> bool {
        let pg = match self {
            Error::Connect(e) | Error::Query { source: e, .. } | Error::Migration { source: e, .. } => e,
            Error::Pool(_) => return true,
            _ => return false,
        };
        pg.is_closed()
            || pg.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P") // connection exception, operator intervention
            })
            || pg.as_db_error().is_none()
    }
}

/// tokio-postgres displays a server error as just "db error"; say what the
/// server said (SQLSTATE, message, detail) or what broke on the way.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            out.push_str(&format!("; {detail}"));
        }
        return out;
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
