//! Archiver settings, read once at start-up from the environment.

use std::time::Duration;

use crate::error::Error;

/// What the archiver does and how big its pieces are.
#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    /// `STELE_ARCHIVE_BUCKET` (required).
    pub bucket: String,
    /// `STELE_ARCHIVE_PREFIX` (default `audit`), without slashes at the ends.
    pub prefix: String,
    /// `STELE_RETENTION_DAYS` (30): days kept hot in Postgres.
    pub retention: chrono::Duration,
    /// `STELE_MAX_LATENESS_SECS` (259200 = 72 h): no row older than this can still arrive.
    pub max_lateness: chrono::Duration,
    /// `STELE_DROP_AFTER_ARCHIVE` (true): drop the detached table, or keep it.
    pub drop_after_archive: bool,
    /// `STELE_ARCHIVE_ROW_GROUP_ROWS` (131072): rows per Parquet row group.
    pub row_group_rows: usize,
    /// `STELE_ARCHIVE_ROW_GROUP_BYTES` (64 MiB): a row group is cut earlier when
    /// its buffered size passes this, which bounds memory for wide rows.
    pub row_group_bytes: usize,
    /// `STELE_ARCHIVE_BATCH_ROWS` (8192): rows per Arrow record batch.
    pub batch_rows: usize,
    /// `STELE_ARCHIVE_PART_BYTES` (8 MiB, at least 5 MiB): S3 multipart part size.
    pub part_bytes: usize,
    /// `STELE_ARCHIVE_FILE_ROWS` (4194304): a tenant's day is split into files of at most this many rows.
    pub file_rows: u64,
    /// `STELE_ARCHIVE_MIN_REMAINING_SECS` (60): no partition is started with less time left.
    pub min_remaining: Duration,
    /// `STELE_ARCHIVE_STATEMENT_TIMEOUT_SECS` (840): the archiver's session
    /// `statement_timeout` (an export is one long COPY).
    pub statement_timeout: Duration,
    /// `STELE_PARTITIONS_AHEAD_DAYS` (3): the archiver also creates partitions ahead.
    pub partitions_ahead_days: u32,
    /// `STELE_DEDUP_WINDOW_HOURS` (336: the larger of the stream's 168 h
    /// retention + 72 h lateness and the dead-letter queue's 14 days): how
    /// long an event id stays claimed in `event_ids`, so that a re-sent or
    /// replayed id is caught. At least the lateness; Terraform computes it
    /// from its variables (`local.dedup_window_hours`).
    pub dedup_window: chrono::Duration,
}

impl ArchiverConfig {
    /// Defaults for `bucket` (tests, `stele dev`).
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: "audit".into(),
            retention: chrono::Duration::days(30),
            max_lateness: chrono::Duration::seconds(259_200),
            drop_after_archive: true,
            row_group_rows: 128 * 1024,
            row_group_bytes: 64 << 20,
            batch_rows: 8192,
            part_bytes: 8 << 20,
            file_rows: 4 << 20,
            min_remaining: Duration::from_secs(60),
            statement_timeout: Duration::from_secs(840),
            partitions_ahead_days: 3,
            dedup_window: chrono::Duration::hours(336),
        }
    }

    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`ArchiverConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let bucket = get("STELE_ARCHIVE_BUCKET")
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Error::Config("STELE_ARCHIVE_BUCKET is not set (the archive's S3 bucket)".into()))?;
        let mut c = Self::new(bucket);
        if let Some(p) = get("STELE_ARCHIVE_PREFIX") {
            c.prefix = p.trim().trim_matches('/').to_string();
        }
        let num = |key: &str, default: u64, min: u64| -> Result<u64, Error> {
            Ok(stele_core::settings::number(&get, key, min..=u64::from(u32::MAX))
                .map_err(Error::Config)?
                .unwrap_or(default))
        };
        c.retention = chrono::Duration::days(num("STELE_RETENTION_DAYS", 30, 1)? as i64);
        c.max_lateness = chrono::Duration::seconds(num("STELE_MAX_LATENESS_SECS", 259_200, 0)? as i64);
        c.drop_after_archive = match get("STELE_DROP_AFTER_ARCHIVE").as_deref().map(str::trim) {
            None | Some("") | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(v) => {
                return Err(Error::Config(format!(
                    "STELE_DROP_AFTER_ARCHIVE must be `true` or `false`, got `{v}`"
                )))
            }
        };
        c.row_group_rows = num("STELE_ARCHIVE_ROW_GROUP_ROWS", c.row_group_rows as u64, 1024)? as usize;
        c.row_group_bytes = num("STELE_ARCHIVE_ROW_GROUP_BYTES", c.row_group_bytes as u64, 1 << 20)? as usize;
        c.batch_rows = num("STELE_ARCHIVE_BATCH_ROWS", c.batch_rows as u64, 1)? as usize;
        c.part_bytes = num("STELE_ARCHIVE_PART_BYTES", c.part_bytes as u64, 5 << 20)? as usize;
        c.file_rows = num("STELE_ARCHIVE_FILE_ROWS", c.file_rows, 1)?;
        c.min_remaining = Duration::from_secs(num("STELE_ARCHIVE_MIN_REMAINING_SECS", 60, 0)?);
        c.statement_timeout = Duration::from_secs(num("STELE_ARCHIVE_STATEMENT_TIMEOUT_SECS", 840, 1)?);
        c.partitions_ahead_days = num("STELE_PARTITIONS_AHEAD_DAYS", 3, 0)? as u32;
        c.dedup_window = chrono::Duration::hours(num("STELE_DEDUP_WINDOW_HOURS", 336, 1)? as i64);
        c.check_dedup_window()
            .map_err(|e| Error::Config(format!("STELE_DEDUP_WINDOW_HOURS and STELE_MAX_LATENESS_SECS: {e}")))?;
        Ok(c)
    }

    /// The deduplication window must cover the lateness: a re-sent event id
    /// must be caught for as long as it can arrive.
    pub fn check_dedup_window(&self) -> Result<(), String> {
        if self.dedup_window < self.max_lateness {
            return Err(format!(
                "the deduplication window ({} h) must be at least the lateness ({} h): \
                 a re-sent event id must be caught for as long as it can arrive",
                self.dedup_window.num_hours(),
                self.max_lateness.num_hours()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn bucket_is_required_and_named() {
        let err = ArchiverConfig::from_lookup(lookup(&[])).unwrap_err().to_string();
        assert!(err.contains("STELE_ARCHIVE_BUCKET"), "{err}");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = ArchiverConfig::from_lookup(lookup(&[
            ("STELE_ARCHIVE_BUCKET", "b"),
            ("STELE_ARCHIVE_PREFIX", "/x/y/"),
            ("STELE_DROP_AFTER_ARCHIVE", "false"),
        ]))
        .unwrap();
        assert_eq!(c.prefix, "x/y");
        assert_eq!(c.retention, chrono::Duration::days(30));
        assert_eq!(c.max_lateness, chrono::Duration::hours(72));
        assert!(!c.drop_after_archive);
    }

    #[test]
    fn a_dedup_window_shorter_than_the_lateness_is_refused() {
        let ok = ArchiverConfig::from_lookup(lookup(&[("STELE_ARCHIVE_BUCKET", "b")])).unwrap();
        assert_eq!(ok.dedup_window, chrono::Duration::hours(336));
        let err = ArchiverConfig::from_lookup(lookup(&[
            ("STELE_ARCHIVE_BUCKET", "b"),
            ("STELE_DEDUP_WINDOW_HOURS", "24"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("STELE_DEDUP_WINDOW_HOURS"), "{err}");
    }

    #[test]
    fn parts_smaller_than_s3_allows_are_refused() {
        let err = ArchiverConfig::from_lookup(lookup(&[
            ("STELE_ARCHIVE_BUCKET", "b"),
            ("STELE_ARCHIVE_PART_BYTES", "1024"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("STELE_ARCHIVE_PART_BYTES"), "{err}");
    }
}
