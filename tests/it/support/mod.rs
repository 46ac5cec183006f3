//! Test support: one real PostgreSQL and one real LocalStack per test run, and
//! per-test databases, streams, buckets and queues so tests run in parallel.
//!
//! `scripts/test` starts both services once and exports `STELE_TEST_PG_URL` and
//! `STELE_TEST_AWS_ENDPOINT`; the tests then share them. Run directly (`cargo
//! test`), the first test of a binary starts its own through `scripts/pg.sh` and
//! `localstack/start.sh` with `--watch-pid`, so the services stop when the test
//! process exits, however it exits.

pub mod archive;
pub mod faults;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
#[allow(unused_imports)]
pub use stele::local::services::repo_root;
use stele::local::{aws, services};
use tokio_postgres::{Client, NoTls};

pub struct TestEnv {
    /// Superuser URL of the cluster's `postgres` database.
    pub pg_url: String,
    /// LocalStack gateway, e.g. `http://127.0.0.1:4566`.
    pub aws_endpoint: String,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();

impl TestEnv {
    /// The shared services, started on first use.
    pub async fn get() -> &'static TestEnv {
        ENV.get_or_init(|| {
            // Started services stop with this process (their watchdog sees it exit).
            let pg_url = std::env::var("STELE_TEST_PG_URL")
                .unwrap_or_else(|_| services::start_postgres(false).expect("start PostgreSQL").endpoint);
            let aws_endpoint = std::env::var("STELE_TEST_AWS_ENDPOINT")
                .unwrap_or_else(|_| services::start_localstack().expect("start LocalStack").endpoint);
            TestEnv { pg_url, aws_endpoint }
        })
    }

    async fn admin(&self) -> Client {
        connect(&self.pg_url).await
    }

    /// A new, empty database for one test (no migrations applied), dropped when
    /// the returned guard is dropped.
    pub async fn fresh_database(&self) -> TestDb {
        let name = unique_name("db").replace('-', "_");
        self.admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = with_database(&self.pg_url, &name);
        TestDb {
            url,
            name,
            admin_url: self.pg_url.clone(),
        }
    }

    /// SDK config for LocalStack: region us-east-1, static test credentials.
    pub async fn aws_config(&self) -> SdkConfig {
        aws::sdk_config(&self.aws_endpoint).await
    }

    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.aws_config().await)
    }

    /// S3 client in path style (LocalStack does not resolve bucket subdomains).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        aws::s3_client(&self.aws_config().await)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.aws_config().await)
    }

    /// Create a stream and wait until it is ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        aws::create_stream(&self.kinesis().await, name, shards)
            .await
            .expect("create stream");
    }

    pub async fn create_bucket(&self, name: &str) {
        aws::create_bucket(&self.s3().await, name).await.expect("create bucket");
    }

    /// Create a queue; returns its URL.
    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.aws_config().await)
    }

    /// A Secrets Manager secret in the RDS form (host, port, username,
    /// password, dbname) for `db`, as Terraform's database module makes it.
    /// Returns its ARN.
    pub async fn create_db_secret(&self, db: &TestDb) -> String {
        let pg: tokio_postgres::Config = db.url.parse().expect("test database URL");
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("test database is not on TCP: {other:?}"),
        };
        let secret = serde_json::json!({
            "engine": "postgres",
            "host": host,
            "port": pg.get_ports().first().copied().unwrap_or(5432),
            "username": pg.get_user().expect("user"),
            "password": pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default(),
            "dbname": pg.get_dbname().expect("dbname"),
        });
        let out = self
            .secrets()
            .await
            .create_secret()
            .name(format!("stele/{}", db.name))
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create the database secret in LocalStack");
        out.arn().expect("secret ARN").to_string()
    }

    pub async fn create_queue(&self, name: &str) -> String {
        aws::create_queue(&self.sqs().await, name).await.expect("create queue")
    }
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDb {
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A client with stele's schema applied.
    pub async fn migrated_client(&self) -> Client {
        let client = self.client().await;
        stele_store::migrate(&client).await.expect("migrations apply");
        client
    }

    pub fn store_config(&self) -> stele_store::StoreConfig {
        stele_store::StoreConfig::new(self.url.clone())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot be async, and the test's runtime may be shutting down:
        // use a private one-off runtime on its own thread.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `postgres://u@h:p/postgres` with the database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

/// A unique, lowercase name that is valid for a database, stream, bucket or queue.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// `stele dev` as a child process, as a user runs it. Killed on drop.
pub struct DevProcess {
    pub child: Child,
    /// Its PostgreSQL (printed at start).
    pub pg_url: String,
    /// Its ingest HTTP front.
    pub ingest: SocketAddr,
    /// Its LocalStack endpoint.
    pub aws_endpoint: String,
}

impl DevProcess {
    /// Start `stele dev --port 0` with `extra` arguments; returns once it prints "ready:".
    pub fn start(extra: &[&str]) -> DevProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
            .args(["dev", "--port", "0", "--batch-window-ms", "200"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stele dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut pg_url, mut ingest, mut aws_endpoint) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            if let Some(url) = line.strip_prefix("PostgreSQL") {
                pg_url = Some(url.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("ingest") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                let host = url.trim_start_matches("http://").trim_end_matches("/v1/events");
                ingest = host.parse().ok();
            }
            if let Some(rest) = line.strip_prefix("LocalStack") {
                aws_endpoint = rest.split_whitespace().next().map(str::to_string);
            }
            if line.starts_with("ready:") {
                break;
            }
        }
        DevProcess {
            child,
            pg_url: pg_url.expect("stele dev printed its PostgreSQL URL"),
            ingest: ingest.expect("stele dev printed its ingest address"),
            aws_endpoint: aws_endpoint.expect("stele dev printed its LocalStack endpoint"),
        }
    }

    /// Ctrl-C, as a user would; returns whether it exited cleanly.
    pub fn interrupt(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
