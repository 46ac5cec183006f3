//! Settings, read from the environment once at start-up.

use stele_store::{InsertMethod, StoreConfig};

use crate::error::{Error, Result};

/// Where the database credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSource {
    /// `DATABASE_URL`: a libpq URL or key=value string.
    Url(String),
    /// `STELE_DB_SECRET_ARN`: a Secrets Manager secret holding the RDS JSON
    /// (`host`, `port`, `username`, `password`, `dbname`).
    Secret { arn: String },
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub db: DbSource,
    /// `STELE_DLQ_URL`: the SQS queue poison records go to (required).
    pub dlq_url: String,
    /// `STELE_PARTITION_DAYS_AHEAD` (default 3): partitions made on start.
    pub partition_days_ahead: u32,
    /// `STELE_DB_INSERT_METHOD`: `copy` (default, the faster when measured) or
    /// `unnest` (no temp table: keeps RDS Proxy from pinning the connection).
    pub insert_method: InsertMethod,
}

impl WriterConfig {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let non_empty = |k: &str| stele_core::settings::text(&get, k);
        let db = match (non_empty("DATABASE_URL"), non_empty("STELE_DB_SECRET_ARN")) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "set either DATABASE_URL or STELE_DB_SECRET_ARN, not both".into(),
                ))
            }
            (Some(url), None) => DbSource::Url(url),
            (None, Some(arn)) => DbSource::Secret { arn },
            (None, None) => {
                return Err(Error::Config(
                    "no database: set DATABASE_URL (postgres://user@host:5432/db) or STELE_DB_SECRET_ARN (a Secrets Manager secret with host, port, username, password, dbname)".into(),
                ))
            }
        };
        let dlq_url = non_empty("STELE_DLQ_URL")
            .ok_or_else(|| Error::Config("STELE_DLQ_URL is not set (the SQS queue URL for poison records)".into()))?;
        let partition_days_ahead = stele_core::settings::number(&get, "STELE_PARTITION_DAYS_AHEAD", 0..=366)
            .map_err(Error::Config)?
            .map_or(3, |n| n as u32);
        let insert_method = match non_empty("STELE_DB_INSERT_METHOD").as_deref() {
            None | Some("copy") => InsertMethod::CopyStage,
            Some("unnest") => InsertMethod::Unnest,
            Some(other) => {
                return Err(Error::Config(format!(
                    "STELE_DB_INSERT_METHOD must be `copy` or `unnest`, got `{other}`"
                )))
            }
        };
        let config = Self {
            db,
            dlq_url,
            partition_days_ahead,
            insert_method,
        };
        // Check the store settings now, so a typo fails the start, not the first batch.
        if let DbSource::Url(url) = &config.db {
            config.store_config(url, &get)?;
        }
        Ok(config)
    }

    /// The store settings (`STELE_DB_TLS`, `STELE_DB_POOL_SIZE`,
    /// `STELE_DB_STATEMENT_TIMEOUT_MS`, …) for the resolved connection string.
    pub fn store_config(&self, url: &str, get: &impl Fn(&str) -> Option<String>) -> Result<StoreConfig> {
        Ok(StoreConfig::from_lookup(|k| {
            if k == "DATABASE_URL" {
                Some(url.to_string())
            } else {
                get(k)
            }
        })?)
    }
}

/// The key=value connection string for an RDS-style secret
/// (`{"host", "port", "username", "password", "dbname"}`), quoted so that any
/// password works.
pub fn conninfo_from_secret(secret_json: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(secret_json).map_err(|e| format!("the secret is not JSON: {e}"))?;
    let field = |k: &str| -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn the_dlq_url_is_required() {
        let err = WriterConfig::from_lookup(lookup(&[("DATABASE_URL", "postgres://u@h/db")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("STELE_DLQ_URL"), "{err}");
    }

    #[test]
    fn a_database_is_required_and_only_one_source() {
        let none = WriterConfig::from_lookup(lookup(&[("STELE_DLQ_URL", "http://q")])).unwrap_err();
        assert!(none.to_string().contains("DATABASE_URL"), "{none}");
        let both = WriterConfig::from_lookup(lookup(&[
            ("STELE_DLQ_URL", "http://q"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_SECRET_ARN", "arn:aws:secretsmanager:x"),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }

    #[test]
    fn defaults_and_store_settings_are_checked() {
        let cfg = WriterConfig::from_lookup(lookup(&[
            ("STELE_DLQ_URL", "http://q"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]))
        .unwrap();
        assert_eq!(cfg.partition_days_ahead, 3);
        assert_eq!(cfg.insert_method, InsertMethod::CopyStage);
        let bad_method = WriterConfig::from_lookup(lookup(&[
            ("STELE_DLQ_URL", "http://q"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_INSERT_METHOD", "rows"),
        ]))
        .unwrap_err();
        assert!(bad_method.to_string().contains("`copy` or `unnest`"), "{bad_method}");
        let bad_tls = WriterConfig::from_lookup(lookup(&[
            ("STELE_DLQ_URL", "http://q"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_DB_TLS", "sometimes"),
        ]))
        .unwrap_err();
        assert!(bad_tls.to_string().contains("STELE_DB_TLS"), "{bad_tls}");
        let bad_days = WriterConfig::from_lookup(lookup(&[
            ("STELE_DLQ_URL", "http://q"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("STELE_PARTITION_DAYS_AHEAD", "-1"),
        ]))
        .unwrap_err();
        assert!(
            bad_days.to_string().contains("STELE_PARTITION_DAYS_AHEAD"),
            "{bad_days}"
        );
    }

    #[test]
    fn an_rds_secret_becomes_a_quoted_connection_string() {
        let conninfo = conninfo_from_secret(
            r#"{"host":"db.example","port":5432,"username":"writer","password":"p'a\\ss w","dbname":"stele","engine":"postgres"}"#,
        )
        .unwrap();
        let cfg: tokio_postgres::Config = conninfo.parse().unwrap();
        assert_eq!(cfg.get_user(), Some("writer"));
        assert_eq!(cfg.get_password(), Some(&b"p'a\\ss w"[..]));
        assert_eq!(cfg.get_dbname(), Some("stele"));
        assert_eq!(cfg.get_ports(), &[5432]);
        assert!(conninfo_from_secret(r#"{"host":"h"}"#)
            .unwrap_err()
            .contains("username"));
    }
}
