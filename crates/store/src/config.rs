//! Connection settings, read from the environment once at start-up.

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

    /// Read `DATABASE_URL` (required), `STELE_DB_TLS` (`disable` | `verify-full`,
    /// default `disable`), `STELE_DB_CA_FILE`, `STELE_DB_POOL_SIZE` (4),
    /// `STELE_DB_STATEMENT_TIMEOUT_MS` (30000), `STELE_DB_CONNECT_TIMEOUT_MS` (5000).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`StoreConfig::from_env`], reading variables through `get` (testable).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = get("DATABASE_URL")
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::Config("DATABASE_URL is not set (e.g. postgres://user@host:5432/db)".into()))?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| Error::Config(format!("DATABASE_URL is not a valid connection string: {e}")))?;
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
            url,
            tls,
            pool_size: number("STELE_DB_POOL_SIZE", 4)? as usize,
            statement_timeout: Duration::from_millis(number("STELE_DB_STATEMENT_TIMEOUT_MS", 30_000)?),
            connect_timeout: Duration::from_millis(number("STELE_DB_CONNECT_TIMEOUT_MS", 5_000)?),
        })
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

    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = StoreConfig::from_lookup(lookup(&[])).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL is not set"), "{err}");
    }

    #[test]
    fn bad_tls_mode_is_refused_with_the_allowed_values() {
        let err = StoreConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_TLS", "maybe"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`disable` or `verify-full`"), "{err}");
    }

    #[test]
    fn numbers_must_be_positive() {
        let err = StoreConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_POOL_SIZE", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("STELE_DB_POOL_SIZE"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let cfg = StoreConfig::from_lookup(lookup(&[("DATABASE_URL", "postgres://u@h/db")])).unwrap();
        assert_eq!(cfg.tls, TlsMode::Disable);
        assert_eq!(cfg.pool_size, 4);
        assert_eq!(cfg.statement_timeout, Duration::from_secs(30));
    }
}
