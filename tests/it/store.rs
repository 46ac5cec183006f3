//! crates/store against a real PostgreSQL: migrations and the partition manager.

use crate::support;

use chrono::{NaiveDate, TimeZone, Utc};
use support::TestEnv;
use tokio_postgres::Client;

/// Everything that defines the schema, as text, for before/after comparison.
async fn schema_fingerprint(client: &Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
               FROM information_schema.columns WHERE table_schema = 'public'
             UNION ALL
             SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
             UNION ALL
             SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace
             UNION ALL
             SELECT 'migration ' || version || ' ' || name || ' ' || checksum FROM stele_migrations
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn all_versions() -> Vec<i32> {
    stele_store::MIGRATIONS.iter().map(|m| m.version).collect()
}

#[tokio::test]
async fn migrations_applied_twice_leave_the_same_schema() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.client().await;

    let first = stele_store::migrate(&client).await.unwrap();
    assert_eq!(first, all_versions(), "a fresh database gets every migration");
    let after_first = schema_fingerprint(&client).await;
    assert!(after_first
        .iter()
        .any(|l| l.starts_with("column audit_events.event_hash bytea")));
    assert!(after_first
        .iter()
        .any(|l| l.starts_with("index audit_events_tenant_time")));

    let second = stele_store::migrate(&client).await.unwrap();
    assert!(second.is_empty(), "nothing is applied twice: {second:?}");
    assert_eq!(schema_fingerprint(&client).await, after_first);
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let db = TestEnv::get().await.fresh_database().await;
    let (a, b) = (db.client().await, db.client().await);
    let (ra, rb) = tokio::join!(stele_store::migrate(&a), stele_store::migrate(&b));
    let mut applied = ra.unwrap();
    applied.extend(rb.unwrap());
    applied.sort();
    assert_eq!(
        applied,
        all_versions(),
        "each migration was applied by exactly one of the two"
    );
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[tokio::test]
async fn partitions_are_created_for_a_range_and_rows_land_in_their_day() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;

    let outcome = stele_store::partitions::ensure_range(&client, day(2026, 2, 27), day(2026, 3, 1))
        .await
        .unwrap();
    assert_eq!(
        outcome.created,
        vec![day(2026, 2, 27), day(2026, 2, 28), day(2026, 3, 1)]
    );
    let again = stele_store::partitions::ensure_range(&client, day(2026, 2, 27), day(2026, 3, 1))
        .await
        .unwrap();
    assert!(again.created.is_empty(), "ensuring twice creates nothing");

    let listed = stele_store::partitions::list(&client).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "audit_events_p20260227",
            "audit_events_p20260228",
            "audit_events_p20260301"
        ]
    );
    assert_eq!(listed[1].lower, Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap());
    assert_eq!(listed[1].upper, Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());

    // One microsecond before midnight belongs to the 28th, midnight to the 1st.
    for (ts, expected) in [
        ("2026-02-28T23:59:59.999999Z", "audit_events_p20260228"),
        ("2026-03-01T00:00:00Z", "audit_events_p20260301"),
    ] {
        client
            .execute(
                "INSERT INTO audit_events (tenant_id, event_id, occurred_at, received_at, category, action,
                     outcome, actor_id, actor_type, source_service, schema_version, event_hash)
                 VALUES ('t1', gen_random_uuid(), $1::text::timestamptz, now(), 'audit', 'user.login',
                     'success', 'u1', 'user', 'svc', 1, decode(repeat('ab', 32), 'hex'))",
                &[&ts],
            )
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT tableoid::regclass::text FROM audit_events WHERE occurred_at = $1::text::timestamptz",
                &[&ts],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "row at {ts}");
    }

    // A day without a partition refuses the row (there is no DEFAULT partition).
    let err = client
        .execute(
            "INSERT INTO audit_events (tenant_id, event_id, occurred_at, received_at, category, action,
                 outcome, actor_id, actor_type, source_service, schema_version, event_hash)
             VALUES ('t1', gen_random_uuid(), '2026-03-05T00:00:00Z', now(), 'audit', 'user.login',
                 'success', 'u1', 'user', 'svc', 1, decode(repeat('ab', 32), 'hex'))",
            &[],
        )
        .await
        .unwrap_err();
    let message = stele_store::pg_message(&err);
    assert!(message.contains("no partition"), "{message}");
}

#[tokio::test]
async fn archived_days_are_closed_and_never_recreated() {
    let db = TestEnv::get().await.fresh_database().await;
    let client = db.migrated_client().await;
    client
        .execute(
            "INSERT INTO archive_jobs (partition_name, day, state) VALUES ('audit_events_p20260110', '2026-01-10', 'dropped')",
            &[],
        )
        .await
        .unwrap();
    let outcome = stele_store::partitions::ensure_days(&client, &[day(2026, 1, 10), day(2026, 1, 11)])
        .await
        .unwrap();
    assert_eq!(outcome.created, vec![day(2026, 1, 11)]);
    assert_eq!(outcome.closed, vec![day(2026, 1, 10)]);
    let names: Vec<String> = stele_store::partitions::list(&client)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["audit_events_p20260111"]);
}

#[tokio::test]
async fn store_config_connects_with_utc_session_and_statement_timeout() {
    let db = TestEnv::get().await.fresh_database().await;
    let mut config = db.store_config();
    config.statement_timeout = std::time::Duration::from_millis(1234);
    let client = stele_store::connect(&config).await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('TimeZone'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "UTC");
    assert_eq!(row.get::<_, String>(1), "1234ms");

    let pool = stele_store::pool(&config).unwrap();
    let pooled = pool.get().await.unwrap();
    let err = pooled.query_one("SELECT pg_sleep(5)", &[]).await.unwrap_err();
    let message = stele_store::pg_message(&err);
    assert!(message.contains("statement timeout"), "{message}");
}

/// The one connection path, in its deployed form: `STELE_DB_SECRET_ARN` names a
/// real Secrets Manager secret (LocalStack) in the RDS JSON form, and the store
/// connects with it to the test PostgreSQL.
#[tokio::test]
async fn a_database_secret_in_secrets_manager_connects() {
    let env = TestEnv::get().await;
    let db = env.fresh_database().await;
    let arn = env.create_db_secret(&db).await;
    let settings = stele_store::StoreSettings::from_lookup(stele_core::settings::from_pairs(&[
        ("STELE_DB_SECRET_ARN", arn.as_str()),
        ("STELE_DB_TLS", "disable"),
    ]))
    .expect("settings");
    let config = settings.resolve(&env.secrets().await).await.expect("secret resolves");
    let client = stele_store::connect(&config).await.expect("connects");
    let name: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(name, db.name);

    // A secret that does not exist is a start-up error naming the ARN.
    let missing = stele_store::StoreSettings::from_lookup(stele_core::settings::from_pairs(&[(
        "STELE_DB_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:stele-missing",
    )]))
    .unwrap()
    .resolve(&env.secrets().await)
    .await
    .unwrap_err()
    .to_string();
    assert!(missing.contains("stele-missing"), "{missing}");
}
