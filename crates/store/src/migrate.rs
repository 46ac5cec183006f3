//! Embedded, versioned SQL migrations, applied in order and recorded in
//! `stele_migrations`. Running them again is a no-op; running them from two
//! processes at once is safe (an advisory lock serialises them).

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// One migration: a version, a name and its SQL, compiled into the binary.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit_events",
        sql: include_str!("../migrations/0001_audit_events.sql"),
    },
    Migration {
        version: 2,
        name: "late_events",
        sql: include_str!("../migrations/0002_late_events.sql"),
    },
    Migration {
        version: 3,
        name: "event_ids",
        sql: include_str!("../migrations/0003_event_ids.sql"),
    },
    Migration {
        version: 4,
        name: "stream_progress",
        sql: include_str!("../migrations/0004_stream_progress.sql"),
    },
    Migration {
        version: 5,
        name: "tlog",
        sql: include_str!("../migrations/0005_tlog.sql"),
    },
    Migration {
        version: 6,
        name: "roles",
        sql: include_str!("../migrations/0006_roles.sql"),
    },
];

/// Whether `stele_migrations` records every migration with its checksum. Any
/// doubt (no table, an error, a changed checksum) is `false`: the full path
/// below then applies, or reports, what is wrong.
async fn all_applied(client: &Client) -> bool {
    let Ok(rows) = client
        .query("SELECT version, checksum FROM stele_migrations", &[])
        .await
    else {
        return false;
    };
    MIGRATIONS.iter().all(|m| {
        let checksum = hex::encode(Sha256::digest(m.sql.as_bytes()));
        rows.iter()
            .any(|r| r.get::<_, i32>(0) == m.version && r.get::<_, String>(1) == checksum)
    })
}

/// Arbitrary constant key for `pg_advisory_xact_lock`: "stele" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x7374656c65;

/// Apply pending migrations; returns the versions applied by this call.
///
/// When every migration is already applied (and unchanged) this only reads
/// `stele_migrations`, so a function connected as a role that may not change
/// the schema (`stele_writer`, …) can call it at start-up; with migrations
/// pending, such a role gets the database's permission error: they are applied
/// by the owner (`stele db migrate`).
pub async fn migrate(client: &Client) -> Result<Vec<i32>> {
    if all_applied(client).await {
        return Ok(Vec::new());
    }
    let mut applied_now = Vec::new();
    for m in MIGRATIONS {
        let checksum = hex::encode(Sha256::digest(m.sql.as_bytes()));
        let as_migration_error = |source| Error::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        client.batch_execute("BEGIN").await.map_err(as_migration_error)?;
        let result = async {
            client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS stele_migrations (
                        version    integer     PRIMARY KEY,
                        name       text        NOT NULL,
                        checksum   text        NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
            let existing = client
                .query_opt(
                    "SELECT checksum FROM stele_migrations WHERE version = $1",
                    &[&m.version],
                )
                .await?;
            match existing {
                Some(row) => Ok(Some(row.get::<_, String>(0) == checksum)),
                None => {
                    // A migration that backfills (0003) may take longer than the
                    // session's statement_timeout on a large table; it must finish,
                    // not roll back at every cold start.
                    client.batch_execute("SET LOCAL statement_timeout = 0").await?;
                    client.batch_execute(m.sql).await?;
                    client
                        .execute(
                            "INSERT INTO stele_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            &[&m.version, &m.name, &checksum],
                        )
                        .await?;
                    Ok(None)
                }
            }
        }
        .await;
        match result {
            Ok(outcome) => {
                client.batch_execute("COMMIT").await.map_err(as_migration_error)?;
                match outcome {
                    None => applied_now.push(m.version),
                    Some(true) => {}
                    Some(false) => {
                        return Err(Error::MigrationChanged {
                            version: m.version,
                            name: m.name,
                        })
                    }
                }
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(as_migration_error(e));
            }
        }
    }
    if !applied_now.is_empty() {
        tracing::info!(versions = ?applied_now, "applied migrations");
    }
    Ok(applied_now)
}
