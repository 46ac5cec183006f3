//! Settings, read from the environment once at start-up.

use stele_store::{InsertMethod, StoreSettings};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The database: `DATABASE_URL` or `STELE_DB_SECRET_ARN` and the
    /// `STELE_DB_*` settings, read by the store's one connection path.
    pub db: StoreSettings,
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
        // Checked now, so a typo fails the start, not the first batch.
        let db = StoreSettings::from_lookup(&get)?;
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
        Ok(Self {
            db,
            dlq_url,
            partition_days_ahead,
            insert_method,
        })
    }
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
    fn a_database_is_required() {
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
}
