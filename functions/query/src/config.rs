//! Settings of the query function, read once at start-up from the environment.
//! The database is read as by every binary ([`stele_store::StoreSettings`]).

use sha2::Digest;

use crate::events::CursorKey;
use crate::Error;

/// Everything the handler needs besides its database pool.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// `STELE_TENANT_CLAIM` (default `tenant_id`): the JWT claim, or Lambda
    /// authorizer context key, that holds the tenant (the same as ingest's).
    pub tenant_claim: String,
    /// `STELE_PROOF_RETRY_AFTER_SECS` (default 60, 1..=3600): the `Retry-After` of a
    /// `409` for an event no signed checkpoint covers yet (about the checkpoint interval).
    pub proof_retry_after_secs: u32,
    /// `STELE_RETRY_AFTER_SECS` (default 2, 1..=3600): the `Retry-After` of a `503`
    /// (the database is unreachable).
    pub retry_after_secs: u32,
    /// `STELE_ARCHIVE_BUCKET` (optional): the archive the archived days of a search
    /// are read from; without it a search reads the hot store only.
    pub archive_bucket: Option<String>,
    /// `STELE_ARCHIVE_PREFIX` (default `audit`), as the archiver's.
    pub archive_prefix: String,
    /// `STELE_CURSOR_KEY` (64 hex digits) or `STELE_CURSOR_KEY_SECRET_ARN` (below): the
    /// secret page cursors are signed with. One of them is required in Lambda (every
    /// instance must accept every other's cursors); a random key per process otherwise
    /// (`stele dev`, tests).
    pub cursor_key: CursorKey,
    /// `STELE_CURSOR_KEY_SECRET_ARN` (instead of `STELE_CURSOR_KEY`): a Secrets Manager
    /// secret whose value (any string; its SHA-256 is the key) is read at start-up
    /// ([`QueryConfig::resolve_cursor_key`]), as Terraform deploys it.
    pub cursor_key_secret_arn: Option<String>,
    /// `STELE_EXPORT_LOCK_MODE` (`GOVERNANCE`, `COMPLIANCE`, or empty: the bucket has no
    /// Object Lock): large exports written to the archive bucket carry a one-day
    /// retention in this mode, so the `_exports/` expiry can remove them.
    pub export_lock_mode: Option<String>,
    /// `STELE_EXPORT_URL_TTL_SECS` (default 900, 60..=3600): how long an export's
    /// presigned URL is valid.
    pub export_url_ttl_secs: u32,
    /// `STELE_EXPORT_INLINE_MAX_BYTES` (default 5000000, 1..=5000000): the largest
    /// export served as the response itself (JSON-escaped size); larger ones go to the
    /// bucket.
    pub export_inline_max_bytes: usize,
    /// `STELE_EXPORT_QUEUE_URL` (optional): the SQS queue `POST /v1/exports` sends its
    /// jobs to (the export worker drains it). Without it, and outside Lambda, jobs run
    /// in the process; in Lambda, asynchronous exports are off.
    pub export_queue_url: Option<String>,
    /// `STELE_EXPORT_MAX_ATTEMPTS` (default 3, 1..=10): the export worker's attempts at a
    /// job before its failure is final: the queue's `maxReceiveCount`.
    pub export_max_attempts: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            tenant_claim: "tenant_id".into(),
            proof_retry_after_secs: 60,
            retry_after_secs: 2,
            archive_bucket: None,
            archive_prefix: "audit".into(),
            cursor_key: CursorKey::random(),
            cursor_key_secret_arn: None,
            export_lock_mode: None,
            export_url_ttl_secs: 900,
            export_inline_max_bytes: crate::export::spool::INLINE_MAX_ESCAPED,
            export_queue_url: None,
            export_max_attempts: 3,
        }
    }
}

impl QueryConfig {
    /// Read the process environment.
    /// Read the process environment (in Lambda: `STELE_CURSOR_KEY` is required).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok(), true)
    }

    /// Read settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, require_cursor_key: bool) -> Result<Self, Error> {
        let bad = |var: &'static str, reason: String| Error::Config { var, reason };
        let mut cfg = Self::default();
        if let Some(claim) = get("STELE_TENANT_CLAIM") {
            let claim = claim.trim();
            if claim.is_empty() {
                return Err(bad("STELE_TENANT_CLAIM", "must not be empty".into()));
            }
            cfg.tenant_claim = claim.to_owned();
        }
        let number = |var: &'static str, range: std::ops::RangeInclusive<u64>| -> Result<Option<u64>, Error> {
            stele_core::settings::number(&get, var, range)
                .map_err(|reason| bad(var, reason.trim_start_matches(var).trim_start().to_owned()))
        };
        let secs = |var: &'static str| number(var, 1..=3600).map(|n| n.map(|n| n as u32));
        if let Some(n) = secs("STELE_PROOF_RETRY_AFTER_SECS")? {
            cfg.proof_retry_after_secs = n;
        }
        if let Some(n) = secs("STELE_RETRY_AFTER_SECS")? {
            cfg.retry_after_secs = n;
        }
        cfg.archive_bucket = get("STELE_ARCHIVE_BUCKET")
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty());
        if let Some(prefix) = get("STELE_ARCHIVE_PREFIX") {
            cfg.archive_prefix = prefix.trim_matches('/').to_owned();
        }
        cfg.export_lock_mode = match get("STELE_EXPORT_LOCK_MODE").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m @ ("GOVERNANCE" | "COMPLIANCE")) => Some(m.to_owned()),
            Some(other) => {
                return Err(bad(
                    "STELE_EXPORT_LOCK_MODE",
                    format!("`{other}` is not GOVERNANCE, COMPLIANCE or empty (no Object Lock)"),
                ))
            }
        };
        if let Some(n) = number("STELE_EXPORT_URL_TTL_SECS", 60..=3600)? {
            cfg.export_url_ttl_secs = n as u32;
        }
        let inline_max = crate::export::spool::INLINE_MAX_ESCAPED as u64;
        if let Some(n) = number("STELE_EXPORT_INLINE_MAX_BYTES", 1..=inline_max)? {
            cfg.export_inline_max_bytes = n as usize;
        }
        cfg.export_queue_url = get("STELE_EXPORT_QUEUE_URL")
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        if let Some(n) = number("STELE_EXPORT_MAX_ATTEMPTS", 1..=10)? {
            cfg.export_max_attempts = n as u32;
        }
        cfg.cursor_key_secret_arn = get("STELE_CURSOR_KEY_SECRET_ARN").filter(|a| !a.trim().is_empty());
        match get("STELE_CURSOR_KEY") {
            Some(hex_key) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(hex_key.trim(), &mut key)
                    .map_err(|_| bad("STELE_CURSOR_KEY", "must be 64 hex digits (32 random bytes)".into()))?;
                cfg.cursor_key = CursorKey::new(key);
            }
            None if require_cursor_key && cfg.cursor_key_secret_arn.is_none() => {
                return Err(bad(
                    "STELE_CURSOR_KEY",
                    "(or STELE_CURSOR_KEY_SECRET_ARN) is required: a key shared by every instance, or cursors fail across instances".into(),
                ))
            }
            None => {}
        }
        Ok(cfg)
    }
}

impl QueryConfig {
    /// Where exports are written: the archive bucket, when there is one.
    pub fn export_bucket(&self, s3: aws_sdk_s3::Client) -> Option<crate::export::spool::ExportBucket> {
        self.archive_bucket
            .clone()
            .map(|bucket| crate::export::spool::ExportBucket {
                client: s3,
                bucket,
                lock_mode: self.export_lock_mode.clone(),
                url_ttl: std::time::Duration::from_secs(self.export_url_ttl_secs.into()),
            })
    }

    /// Reads the cursor key from `STELE_CURSOR_KEY_SECRET_ARN`, when set.
    pub async fn resolve_cursor_key(&mut self, secrets: &aws_sdk_secretsmanager::Client) -> Result<(), Error> {
        let Some(arn) = &self.cursor_key_secret_arn else {
            return Ok(());
        };
        let bad = |reason: String| Error::Config {
            var: "STELE_CURSOR_KEY_SECRET_ARN",
            reason,
        };
        let out = secrets.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            bad(format!(
                "{arn} cannot be read: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
        let value = out
            .secret_string()
            .filter(|v| v.len() >= 32)
            .ok_or_else(|| bad(format!("{arn} has no string value of at least 32 characters")))?;
        let key: [u8; 32] = sha2::Sha256::digest(value.as_bytes()).into();
        self.cursor_key = CursorKey::new(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn defaults_and_overrides() {
        let cfg = QueryConfig::from_lookup(lookup(&[]), false).unwrap();
        assert_eq!(
            (cfg.tenant_claim.as_str(), cfg.proof_retry_after_secs),
            ("tenant_id", 60)
        );
        let cfg = QueryConfig::from_lookup(
            lookup(&[("STELE_TENANT_CLAIM", "org"), ("STELE_PROOF_RETRY_AFTER_SECS", "30")]),
            false,
        )
        .unwrap();
        assert_eq!((cfg.tenant_claim.as_str(), cfg.proof_retry_after_secs), ("org", 30));
    }

    #[test]
    fn a_bad_setting_names_the_variable() {
        let err = QueryConfig::from_lookup(lookup(&[("STELE_PROOF_RETRY_AFTER_SECS", "0")]), false).unwrap_err();
        assert!(err.to_string().contains("STELE_PROOF_RETRY_AFTER_SECS"), "{err}");
        let err = QueryConfig::from_lookup(lookup(&[("STELE_TENANT_CLAIM", " ")]), false).unwrap_err();
        assert!(err.to_string().contains("STELE_TENANT_CLAIM"), "{err}");
        let err = QueryConfig::from_lookup(lookup(&[]), true).unwrap_err();
        assert!(err.to_string().contains("STELE_CURSOR_KEY"), "{err}");
        let err = QueryConfig::from_lookup(lookup(&[("STELE_CURSOR_KEY", "abc")]), true).unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let key = "ab".repeat(32);
        assert!(QueryConfig::from_lookup(lookup(&[("STELE_CURSOR_KEY", &key)]), true).is_ok());
    }
}
