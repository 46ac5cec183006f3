//! Connection settings, read from the environment once at start-up.

use std::future::Future;
use std::time::Duration;

use stele_core::settings;

use crate::error::{Error, Result};

/// How to secure the connection to Postgres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (local development and tests only).
    Disable,
    /// TLS with full certificate and host name verification against the
    /// Mozilla roots plus, optionally, a CA bundle file (e.g. the RDS global bundle).
    VerifyFull { ca_file: Option<String> },
}

/// Where the database credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSource {
    /// `DATABASE_URL`: a libpq URL or key=value string.
    Url(String),
    /// `STELE_DB_SECRET_ARN`: a Secrets Manager secret holding the RDS JSON
    /// (`host`, `port`, `username`, `password`, `dbname`), as Terraform deploys it.
    Secret { arn: String },
}

/// Reads a secret's `SecretString`. The Secrets Manager client is the real
/// one; unit tests pass a map.
pub trait SecretReader: Send + Sync {
    fn secret_string(&self, arn: &str) -> impl Future<Output = std::result::Result<String, String>> + Send;
}

impl SecretReader for aws_sdk_secretsmanager::Client {
    async fn secret_string(&self, arn: &str) -> std::result::Result<String, String> {
        let output = self
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
        output
            .secret_string()
            .map(str::to_string)
            .ok_or_else(|| "the secret has no SecretString".to_string())
    }
}

/// The settings every binary reads from its environment, before the
/// credentials are resolved: the source, and how to connect.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub source: DbSource,
    pub tls: TlsMode,
    pub pool_size: usize,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
}

impl StoreSettings {
    /// Read `DATABASE_URL` or `STELE_DB_SECRET_ARN` (exactly one), `STELE_DB_TLS`
    /// (`disable` | `verify-full`, default `disable`), `STELE_DB_CA_FILE` (optional:
    /// a CA bundle trusted besides the Mozilla roots), `STELE_DB_POOL_SIZE` (4),
    /// `STELE_DB_STATEMENT_TIMEOUT_MS` (30000), `STELE_DB_CONNECT_TIMEOUT_MS` (5000).
    /// Every error names its variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let source = match (settings::text(&get, "DATABASE_URL"), settings::text(&get, "STELE_DB_SECRET_ARN")) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "set either DATABASE_URL or STELE_DB_SECRET_ARN, not both".into(),
                ))
            }
            (Some(url), None) => {
                url.parse::<tokio_postgres::Config>()
                    .map_err(|e| Error::Config(format!("DATABASE_URL is not a valid connection string: {e}")))?;
                DbSource::Url(url)
            }
            (None, Some(arn)) => DbSource::Secret { arn },
            (None, None) => return Err(Error::Config(
                "no database: set DATABASE_URL (postgres://user@host:5432/db) or STELE_DB_SECRET_ARN (a Secrets Manager secret with host, port, username, password, dbname)".into(),
            )),
        };
        let tls = match get("STELE_DB_TLS").as_deref().map(str::trim) {
            None | Some("") | Some("disable") => TlsMode::Disable,
            Some("verify-full") | Some("require") => TlsMode::VerifyFull {
                ca_file: get("STELE_DB_CA_FILE").filter(|s| !s.is_empty()),
            },
            Some(other) => {
                return Err(Error::Config(format!(
                    "STELE_DB_TLS must be `disable` or `verify-full`, got `{other}`"
                )))
            }
        };
        let number = |key: &str, default: u64| -> Result<u64> {
            Ok(settings::number(&get, key, 1..=u64::from(u32::MAX))
                .map_err(Error::Config)?
                .unwrap_or(default))
        };
        Ok(Self {
            source,
            tls,
            pool_size: number("STELE_DB_POOL_SIZE", 4)? as usize,
            statement_timeout: Duration::from_millis(number("STELE_DB_STATEMENT_TIMEOUT_MS", 30_000)?),
            connect_timeout: Duration::from_millis(number("STELE_DB_CONNECT_TIMEOUT_MS", 5_000)?),
        })
    }

    /// The connection config: the URL as given, or the secret fetched once
    /// through `secrets` and turned into a quoted key=value string.
    pub async fn resolve(self, secrets: &impl SecretReader) -> Result<StoreConfig> {
        let url = match self.source {
            DbSource::Url(url) => url,
            DbSource::Secret { arn } => {
                let secret_error = |message: String| Error::Secret {
                    arn: arn.clone(),
                    message,
                };
                let text = secrets.secret_string(&arn).await.map_err(secret_error)?;
                conninfo_from_secret(&text).map_err(secret_error)?
            }
        };
        Ok(StoreConfig {
            url,
            tls: self.tls,
            pool_size: self.pool_size,
            statement_timeout: self.statement_timeout,
            connect_timeout: self.connect_timeout,
        })
    }
}

/// The key=value connection string for an RDS-style secret
/// (`{"host", "port", "username", "password", "dbname"}`), quoted so that any
/// password works.
pub fn conninfo_from_secret(secret_json: &str) -> std::result::Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(secret_json).map_err(|e| format!("the secret is not JSON: {e}"))?;
    let field = |k: &str| -> std::result::Result<String, String> {
        match v.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            _ => Err(format!("the secret has no `{k}`")),
        }
    };
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let port = field("port").unwrap_or_else(|_| "5432".into());
    let dbname = field("dbname").unwrap_or_else(|_| "postgres".into());
    Ok(format!(
        "host={} port={} user={} password={} dbname={}",
        quote(&field("host")?),
        quote(&port),
        quote(&field("username")?),
        quote(&field("password")?),
        quote(&dbname)
    ))
}

/// A resolved connection config: what [`crate::connect`] and [`crate::pool`] take.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// libpq-style URL or key=value string.
    pub url: String,
    pub tls: TlsMode,
    pub pool_size: usize,
    /// Server-side `statement_timeout` for every session.
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
}

impl StoreConfig {
    /// A config for `url` with the defaults (no TLS, 4 connections, 30 s statements).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: TlsMode::Disable,
            pool_size: 4,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The one connection path of every binary: [`StoreSettings`] from the
    /// environment, with a `STELE_DB_SECRET_ARN` secret read through `secrets`.
    pub async fn from_env(secrets: &impl SecretReader) -> Result<Self> {
        StoreSettings::from_lookup(|k| std::env::var(k).ok())?
            .resolve(secrets)
            .await
    }

    /// The tokio-postgres config with stele's session settings: UTC time zone
    /// (partition bounds and timestamps print the same everywhere) and the
    /// statement timeout.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config> {
        let mut cfg: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| Error::Config(format!("DATABASE_URL is not a valid connection string: {e}")))?;
        cfg.options(format!(
            "-c TimeZone=UTC -c statement_timeout={}",
            self.statement_timeout.as_millis()
        ));
        cfg.connect_timeout(self.connect_timeout);
        if cfg.get_application_name().is_none() {
            cfg.application_name("stele");
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    use stele_core::settings::from_pairs as lookup;

    /// Secrets by ARN, as a unit-test stand-in for Secrets Manager.
    struct Secrets(HashMap<&'static str, &'static str>);

    impl SecretReader for Secrets {
        async fn secret_string(&self, arn: &str) -> std::result::Result<String, String> {
            self.0
                .get(arn)
                .map(|s| s.to_string())
                .ok_or_else(|| format!("ResourceNotFoundException: no secret {arn}"))
        }
    }

    fn no_secrets() -> Secrets {
        Secrets(HashMap::new())
    }

    #[test]
    fn a_database_is_required_and_only_one_source() {
        let none = StoreSettings::from_lookup(lookup(&[])).unwrap_err().to_string();
        assert!(
            none.contains("DATABASE_URL") && none.contains("STELE_DB_SECRET_ARN"),
            "{none}"
        );
        let both = StoreSettings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_SECRET_ARN", "arn:aws:secretsmanager:x"),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }

    #[test]
    fn bad_tls_mode_is_refused_with_the_allowed_values() {
        let err = StoreSettings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_TLS", "maybe"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`disable` or `verify-full`"), "{err}");
    }

    #[test]
    fn numbers_must_be_positive() {
        let err = StoreSettings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_POOL_SIZE", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("STELE_DB_POOL_SIZE"), "{err}");
    }

    #[tokio::test]
    async fn the_url_form_resolves_to_itself_with_the_defaults() {
        let cfg = StoreSettings::from_lookup(lookup(&[("DATABASE_URL", "postgres://u@h/db")]))
            .unwrap()
            .resolve(&no_secrets())
            .await
            .unwrap();
        assert_eq!(cfg.url, "postgres://u@h/db");
        assert_eq!(cfg.tls, TlsMode::Disable);
        assert_eq!(cfg.pool_size, 4);
        assert_eq!(cfg.statement_timeout, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn the_secret_form_reads_the_rds_json_once() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:stele-db";
        let secrets = Secrets(HashMap::from([(
            arn,
            r#"{"host":"db.example","port":6432,"username":"writer","password":"p'a\\ss w","dbname":"stele","engine":"postgres"}"#,
        )]));
        let cfg = StoreSettings::from_lookup(lookup(&[("STELE_DB_SECRET_ARN", arn), ("STELE_DB_TLS", "verify-full")]))
            .unwrap()
            .resolve(&secrets)
            .await
            .unwrap();
        assert_eq!(cfg.tls, TlsMode::VerifyFull { ca_file: None });
        let pg: tokio_postgres::Config = cfg.url.parse().unwrap();
        assert_eq!(pg.get_user(), Some("writer"));
        assert_eq!(pg.get_password(), Some(&b"p'a\\ss w"[..]));
        assert_eq!(pg.get_dbname(), Some("stele"));
        assert_eq!(pg.get_ports(), &[6432]);
    }

    #[tokio::test]
    async fn a_missing_or_incomplete_secret_names_the_arn_and_the_problem() {
        let settings = StoreSettings::from_lookup(lookup(&[("STELE_DB_SECRET_ARN", "arn:x")])).unwrap();
        let missing = settings.clone().resolve(&no_secrets()).await.unwrap_err().to_string();
        assert!(
            missing.contains("arn:x") && missing.contains("ResourceNotFound"),
            "{missing}"
        );
        let partial = settings
            .resolve(&Secrets(HashMap::from([("arn:x", r#"{"host":"h"}"#)])))
            .await
            .unwrap_err()
            .to_string();
        assert!(partial.contains("arn:x") && partial.contains("username"), "{partial}");
    }
}
