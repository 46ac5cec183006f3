//! The database roles of migration 0006 against a real PostgreSQL: each
//! function's role, logged in as a user of that role the way a deployment's
//! login users are made, does its real work through the real store code, and
//! every statement outside its role fails with PostgreSQL's own refusal
//! (SQLSTATE 42501, insufficient privilege).

use crate::support;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::json;
use stele_core::{validate_event, Context, TimeWindow};
use stele_store::archive_jobs::{JobState, ManifestRecord, TableStatus};
use stele_store::{partitions, ArchiveDb, EventStore, InsertMethod, PgArchiveDb, PgEventStore, StoredEvent};
use support::{TestDb, TestEnv};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const GROUPS: [&str; 5] = [
    "stele_partition_owner",
    "stele_writer",
    "stele_archiver",
    "stele_checkpointer",
    "stele_reader",
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A login user in `group`, made as an operator makes one (`CREATE ROLE …
/// LOGIN IN ROLE …`; the test cluster trusts loopback, so no password), and
/// the store config that connects as it to `db`. Dropped by [`Login::drop_user`].
struct Login {
    user: String,
    config: stele_store::StoreConfig,
}

impl Login {
    async fn new(admin: &Client, db: &TestDb, group: &str) -> Login {
        let user = support::unique_name(group).replace('-', "_");
        admin
            .batch_execute(&format!("CREATE ROLE {user} LOGIN IN ROLE {group}"))
            .await
            .unwrap();
        let pg: tokio_postgres::Config = db.url.parse().unwrap();
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("test database is not on TCP: {other:?}"),
        };
        let url = format!(
            "host={host} port={} user={user} dbname={}",
            pg.get_ports()[0],
            pg.get_dbname().unwrap()
        );
        Login {
            user,
            config: stele_store::StoreConfig::new(url),
        }
    }

    async fn client(&self) -> Client {
        let client = stele_store::connect(&self.config).await.unwrap();
        let who: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
        assert_eq!(who, self.user);
        client
    }

    /// Login users own nothing (partitions belong to stele_partition_owner),
    /// so they can go while the database is still there, once their sessions
    /// (and a session's temporary staging table) are gone: best effort, the
    /// test cluster is thrown away anyway.
    async fn drop_user(self, admin: &Client) {
        for _ in 0..20 {
            if admin.batch_execute(&format!("DROP ROLE {}", self.user)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        eprintln!("note: login user {} left in the test cluster", self.user);
    }
}

/// The statement failed because the role may not run it: SQLSTATE 42501
/// (`permission denied for …` or `must be owner of …`), nothing else.
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, what: &str) {
    let err = result.expect_err(&format!("{what}: expected a permission error"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a database error: {err}"));
    assert_eq!(
        db.code(),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "{what}: {} ({})",
        db.message(),
        db.code().code()
    );
}

async fn denied(client: &Client, sql: &str) {
    assert_denied(client.batch_execute(sql).await, sql);
}

async fn allowed(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", stele_store::pg_message(&e)));
}

fn stored(tenant: &str, occurred_at: &str, seq: u32) -> StoredEvent {
    let ctx = Context {
        tenant_id: tenant,
        now: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
        window: TimeWindow {
            max_lateness: chrono::TimeDelta::days(60),
            ..TimeWindow::default()
        },
        id_if_missing: None,
    };
    let body = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "occurred_at": occurred_at, "category": "audit",
        "action": "user.login", "outcome": "success", "actor": {"id": "u1", "type": "user"},
        "source": {"service": "auth"}
    });
    let sealed = validate_event(&body, &ctx).expect("valid test event").seal();
    StoredEvent {
        event: sealed.event,
        hash: sealed.hash,
        kinesis_shard: Some("shardId-000000000000".into()),
        kinesis_seq: Some(format!("4959{seq:05}")),
    }
}

async fn count(admin: &Client, table: &str) -> i64 {
    admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn owner_of(admin: &Client, table: &str) -> String {
    admin
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

/// Applied twice (the second a no-op), and the role part of the SQL again on
/// its own: the group roles exist once, cannot log in, and a role that may
/// not change the schema can still call `migrate` at start-up.
#[tokio::test]
async fn migrations_make_nologin_group_roles_and_run_again_harmlessly() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let admin = db.client().await;
    let first = stele_store::migrate(&admin).await.unwrap();
    assert!(first.contains(&6), "{first:?}");
    assert!(stele_store::migrate(&admin).await.unwrap().is_empty());
    // The SQL itself is idempotent (roles made elsewhere, grants repeated).
    let roles_sql = stele_store::MIGRATIONS.iter().find(|m| m.name == "roles").unwrap().sql;
    allowed(&admin, roles_sql).await;
    // Another database of the same cluster: the roles already exist.
    let other = env.fresh_database().await;
    stele_store::migrate(&other.client().await).await.unwrap();

    for group in GROUPS {
        let row = admin
            .query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&group])
            .await
            .unwrap_or_else(|e| panic!("{group}: {e}"));
        assert!(!row.get::<_, bool>(0), "{group} cannot log in");
    }
    assert_eq!(owner_of(&admin, "audit_events").await, "stele_partition_owner");

    let writer = Login::new(&admin, &db, "stele_writer").await;
    let applied = stele_store::migrate(&writer.client().await).await;
    assert_eq!(applied.unwrap(), Vec::<i32>::new(), "nothing pending: only read");
    writer.drop_user(&admin).await;
}

#[tokio::test]
async fn the_writer_inserts_and_makes_partitions_but_cannot_delete_detach_or_drop() {
    let db = TestEnv::get().await.fresh_database().await;
    let admin = db.migrated_client().await;
    admin
        .batch_execute(
            "INSERT INTO archive_jobs (partition_name, day, state) VALUES ('audit_events_p20260220', '2026-02-20', 'done')",
        )
        .await
        .unwrap();
    let login = Login::new(&admin, &db, "stele_writer").await;

    // The batch-writer's path: partitions on demand, then the insert, by both methods.
    let store = PgEventStore::new(stele_store::pool(&login.config).unwrap());
    let outcome = store.ensure_days(&[day(2026, 3, 1), day(2026, 2, 20)]).await.unwrap();
    assert_eq!(outcome.created, vec![day(2026, 3, 1)]);
    assert_eq!(outcome.closed, vec![day(2026, 2, 20)]);
    assert_eq!(
        owner_of(&admin, "audit_events_p20260301").await,
        "stele_partition_owner",
        "a partition the writer asked for belongs to the shared owner"
    );
    let batch = [
        stored("acme", "2026-03-01T08:00:00Z", 1),
        stored("acme", "2026-02-20T08:00:00Z", 2),
    ];
    let outcome = store.insert_batch(&batch, &[day(2026, 2, 20)]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.late), (2, 1));
    let again = store.insert_batch(&batch, &[day(2026, 2, 20)]).await.unwrap();
    assert_eq!(again.duplicates, 2, "the redelivery reads its claims back");
    let unnest = PgEventStore::with_method(stele_store::pool(&login.config).unwrap(), InsertMethod::Unnest);
    let outcome = unnest
        .insert_batch(&[stored("globex", "2026-03-01T09:00:00Z", 3)], &[])
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 1);
    assert_eq!(count(&admin, "audit_events").await, 2);
    assert_eq!(count(&admin, "late_events").await, 1);
    assert_eq!(count(&admin, "event_ids").await, 3);
    assert_eq!(count(&admin, "stream_progress").await, 1);

    let c = login.client().await;
    // The verifiable log: heads locked and moved, tiles written, in one transaction.
    allowed(
        &c,
        "BEGIN;
         INSERT INTO tlog_heads (tenant_id) VALUES ('acme') ON CONFLICT DO NOTHING;
         SELECT * FROM tlog_heads WHERE tenant_id = 'acme' FOR UPDATE;
         UPDATE tlog_heads SET size = 1, updated_at = now() WHERE tenant_id = 'acme';
         INSERT INTO tlog_tiles (tenant_id, level, idx, hashes) VALUES ('acme', 0, 0, '\\x')
             ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hashes = EXCLUDED.hashes;
         UPDATE tlog_tiles SET hashes = '\\x' WHERE tenant_id = 'acme';
         COMMIT",
    )
    .await;

    for sql in [
        "DELETE FROM audit_events",
        "UPDATE audit_events SET action = 'x'",
        "TRUNCATE audit_events",
        "DELETE FROM audit_events_p20260301",
        "ALTER TABLE audit_events DETACH PARTITION audit_events_p20260301",
        "ALTER TABLE audit_events DETACH PARTITION audit_events_p20260301 CONCURRENTLY",
        "DROP TABLE audit_events_p20260301",
        "DROP TABLE audit_events",
        // Partitions only through stele_create_day_partition.
        "CREATE TABLE audit_events_p20260401 PARTITION OF audit_events
             FOR VALUES FROM ('2026-04-01 00:00:00+00') TO ('2026-04-02 00:00:00+00')",
        "DELETE FROM late_events",
        "UPDATE late_events SET archive_claimed = true",
        "DELETE FROM event_ids",
        "DELETE FROM stream_progress",
        "INSERT INTO archive_jobs (partition_name, day, state) VALUES ('audit_events_p20260301', '2026-03-01', 'exporting')",
        "UPDATE archive_jobs SET state = 'exporting'",
        "DELETE FROM tlog_heads",
        "DELETE FROM tlog_tiles",
        "INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ('acme', 1, '\\x00', 'n')",
        "CREATE TABLE stele_scratch (x int)",
    ] {
        denied(&c, sql).await;
    }
    assert_eq!(count(&admin, "audit_events").await, 2, "nothing was deleted");
    drop((c, store, unnest));
    login.drop_user(&admin).await;
}

#[tokio::test]
async fn the_archiver_detaches_drops_and_keeps_job_state_but_cannot_insert_events() {
    let db = TestEnv::get().await.fresh_database().await;
    let admin = db.migrated_client().await;
    let writer = Login::new(&admin, &db, "stele_writer").await;
    let archiver = Login::new(&admin, &db, "stele_archiver").await;

    // The writer makes the partition and its rows (and a late row of a done day).
    let store = PgEventStore::new(stele_store::pool(&writer.config).unwrap());
    store.ensure_days(&[day(2026, 3, 1)]).await.unwrap();
    admin
        .batch_execute(
            "INSERT INTO archive_jobs (partition_name, day, state) VALUES ('audit_events_p20260220', '2026-02-20', 'done')",
        )
        .await
        .unwrap();
    let batch = [
        stored("acme", "2026-03-01T08:00:00Z", 1),
        stored("globex", "2026-03-01T09:00:00Z", 2),
        stored("acme", "2026-02-20T08:00:00Z", 3),
    ];
    store.insert_batch(&batch, &[day(2026, 2, 20)]).await.unwrap();
    drop(store);

    // The archiver's path through the real PgArchiveDb.
    let part = partitions::partition_name(day(2026, 3, 1));
    let adb = PgArchiveDb::new(archiver.config.clone());
    assert!(adb.try_lock_run().await.unwrap());
    let made = adb.ensure_range(day(2026, 3, 2), day(2026, 3, 3)).await.unwrap();
    assert_eq!(made.created, vec![day(2026, 3, 2), day(2026, 3, 3)]);
    let names: Vec<String> = adb.partitions().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(adb.stream_progress().await.unwrap().len(), 1);
    adb.begin_job(&part, day(2026, 3, 1)).await.unwrap();
    assert_eq!(adb.count_rows(&part).await.unwrap(), Some(2));
    assert_eq!(
        adb.tenant_counts(&part).await.unwrap(),
        vec![("acme".to_string(), 1), ("globex".to_string(), 1)]
    );
    let manifest = ManifestRecord {
        rows: 2,
        files: 2,
        bytes: 100,
        key: "m".into(),
        sha256: "00".repeat(32),
    };
    adb.move_job(&part, JobState::Exporting, JobState::Manifested, Some(&manifest))
        .await
        .unwrap();
    adb.set_error(&part, "a test error").await.unwrap();
    adb.move_job(&part, JobState::Manifested, JobState::Verified, None)
        .await
        .unwrap();
    assert_eq!(adb.unfinished_jobs().await.unwrap().len(), 1);
    assert!(adb.previous_manifest(day(2026, 3, 2)).await.unwrap().is_some());
    assert!(adb.job(&part).await.unwrap().is_some());
    adb.detach(&part).await.unwrap();
    assert_eq!(adb.table_status(&part).await.unwrap(), TableStatus::Detached);
    adb.move_job(&part, JobState::Verified, JobState::Detached, None)
        .await
        .unwrap();
    assert_eq!(adb.count_rows(&part).await.unwrap(), Some(2), "still readable detached");
    adb.drop_detached(&part).await.unwrap();
    assert_eq!(adb.table_status(&part).await.unwrap(), TableStatus::Absent);
    adb.move_job(&part, JobState::Detached, JobState::Done, None)
        .await
        .unwrap();
    // The supplement of the done day's late row.
    assert_eq!(adb.late_days().await.unwrap(), vec![day(2026, 2, 20)]);
    assert_eq!(adb.claim_late(day(2026, 2, 20)).await.unwrap(), 1);
    assert_eq!(adb.delete_claimed_late(day(2026, 2, 20)).await.unwrap(), 1);
    let far_future = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(adb.prune_event_ids(far_future).await.unwrap(), 3);
    adb.unlock_run().await.unwrap();

    let c = archiver.client().await;
    // The export and verification queries, over a partition the writer made.
    let next = partitions::partition_name(day(2026, 3, 2));
    allowed(&c, &stele_store::archive_db::export_sql(&next)).await;
    allowed(
        &c,
        &format!(
            "SELECT tenant_id, event_hash FROM ONLY {next} ORDER BY tenant_id COLLATE \"C\", occurred_at, event_id"
        ),
    )
    .await;
    allowed(
        &c,
        "SELECT * FROM tlog_heads; SELECT * FROM tlog_tiles;
         INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ('acme', 1, decode(repeat('00', 32), 'hex'), 'n');
         UPDATE tlog_checkpoints SET published_at = now() WHERE tenant_id = 'acme'",
    )
    .await;

    let row = "('acme', gen_random_uuid(), '2026-03-02 10:00+00', now(), 'audit', 'a', 'success', 'u', 'user', 's', 1,
                decode(repeat('00', 32), 'hex'))";
    let cols = "(tenant_id, event_id, occurred_at, received_at, category, action, outcome, actor_id, actor_type,
                 source_service, schema_version, event_hash)";
    for sql in [
        format!("INSERT INTO audit_events {cols} VALUES {row}"),
        format!("INSERT INTO {next} {cols} VALUES {row}"),
        format!("INSERT INTO late_events {cols} VALUES {row}"),
        format!("UPDATE {next} SET action = 'x'"),
        "UPDATE audit_events SET action = 'x'".into(),
        "DELETE FROM audit_events".into(),
        "TRUNCATE audit_events".into(),
        "UPDATE late_events SET action = 'x'".into(),
        "INSERT INTO event_ids (tenant_id, event_id, event_hash, received_at)
             VALUES ('acme', gen_random_uuid(), decode(repeat('00', 32), 'hex'), now())"
            .into(),
        "UPDATE stream_progress SET sequence_number = '1'".into(),
        "DELETE FROM archive_jobs".into(),
        "UPDATE tlog_heads SET size = 0".into(),
        "INSERT INTO tlog_tiles (tenant_id, level, idx, hashes) VALUES ('acme', 0, 0, '\\x')".into(),
        "DELETE FROM tlog_checkpoints".into(),
    ] {
        denied(&c, &sql).await;
    }
    drop((c, adb));
    writer.drop_user(&admin).await;
    archiver.drop_user(&admin).await;
}

#[tokio::test]
async fn the_reader_only_reads_and_the_checkpointer_only_records_checkpoints() {
    let db = TestEnv::get().await.fresh_database().await;
    let admin = db.migrated_client().await;
    partitions::ensure_days(&admin, &[day(2026, 3, 1)]).await.unwrap();
    let reader = Login::new(&admin, &db, "stele_reader").await;
    let checkpointer = Login::new(&admin, &db, "stele_checkpointer").await;

    // Every table, with one of its columns.
    let tables = [
        ("audit_events", "tenant_id"),
        ("late_events", "tenant_id"),
        ("event_ids", "tenant_id"),
        ("stream_progress", "shard_id"),
        ("archive_jobs", "state"),
        ("tlog_heads", "tenant_id"),
        ("tlog_tiles", "tenant_id"),
        ("tlog_checkpoints", "tenant_id"),
    ];
    let r = reader.client().await;
    for (t, col) in tables {
        allowed(&r, &format!("SELECT * FROM {t} LIMIT 1")).await;
        denied(&r, &format!("INSERT INTO {t} DEFAULT VALUES")).await;
        denied(&r, &format!("UPDATE {t} SET {col} = {col}")).await;
        denied(&r, &format!("DELETE FROM {t}")).await;
        denied(&r, &format!("TRUNCATE {t}")).await;
    }
    denied(&r, "SELECT stele_create_day_partition('2026-03-02')").await;
    denied(&r, "ALTER TABLE audit_events DETACH PARTITION audit_events_p20260301").await;
    denied(&r, "DROP TABLE audit_events_p20260301").await;
    denied(&r, "CREATE TABLE stele_scratch (x int)").await;

    let c = checkpointer.client().await;
    allowed(
        &c,
        "SELECT * FROM tlog_heads; SELECT * FROM tlog_tiles; SELECT * FROM tlog_checkpoints;
         INSERT INTO tlog_checkpoints (tenant_id, size, root, note) VALUES ('acme', 1, decode(repeat('00', 32), 'hex'), 'n');
         UPDATE tlog_checkpoints SET published_at = now()",
    )
    .await;
    for sql in [
        "SELECT * FROM audit_events",
        "DELETE FROM tlog_checkpoints",
        "UPDATE tlog_heads SET size = 0",
        "INSERT INTO tlog_tiles (tenant_id, level, idx, hashes) VALUES ('acme', 0, 0, '\\x')",
    ] {
        denied(&c, sql).await;
    }
    drop((r, c));
    reader.drop_user(&admin).await;
    checkpointer.drop_user(&admin).await;
}
