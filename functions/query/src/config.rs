//! Settings of the query function, read once at start-up from the environment.
//! The database is read as by every binary ([`stele_store::StoreSettings`]).

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
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            tenant_claim: "tenant_id".into(),
            proof_retry_after_secs: 60,
            retry_after_secs: 2,
        }
    }
}

impl QueryConfig {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let bad = |var: &'static str, reason: String| Error::Config { var, reason };
        let mut cfg = Self::default();
        if let Some(claim) = get("STELE_TENANT_CLAIM") {
            let claim = claim.trim();
            if claim.is_empty() {
                return Err(bad("STELE_TENANT_CLAIM", "must not be empty".into()));
            }
            cfg.tenant_claim = claim.to_owned();
        }
        let secs = |var: &'static str| -> Result<Option<u32>, Error> {
            stele_core::settings::number(&get, var, 1..=3600)
                .map(|n| n.map(|n| u32::try_from(n).unwrap_or(3600)))
                .map_err(|reason| bad(var, reason.trim_start_matches(var).trim_start().to_owned()))
        };
        if let Some(n) = secs("STELE_PROOF_RETRY_AFTER_SECS")? {
            cfg.proof_retry_after_secs = n;
        }
        if let Some(n) = secs("STELE_RETRY_AFTER_SECS")? {
            cfg.retry_after_secs = n;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn defaults_and_overrides() {
        let cfg = QueryConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(
            (cfg.tenant_claim.as_str(), cfg.proof_retry_after_secs),
            ("tenant_id", 60)
        );
        let cfg = QueryConfig::from_lookup(lookup(&[
            ("STELE_TENANT_CLAIM", "org"),
            ("STELE_PROOF_RETRY_AFTER_SECS", "30"),
        ]))
        .unwrap();
        assert_eq!((cfg.tenant_claim.as_str(), cfg.proof_retry_after_secs), ("org", 30));
    }

    #[test]
    fn a_bad_setting_names_the_variable() {
        let err = QueryConfig::from_lookup(lookup(&[("STELE_PROOF_RETRY_AFTER_SECS", "0")])).unwrap_err();
        assert!(err.to_string().contains("STELE_PROOF_RETRY_AFTER_SECS"), "{err}");
        let err = QueryConfig::from_lookup(lookup(&[("STELE_TENANT_CLAIM", " ")])).unwrap_err();
        assert!(err.to_string().contains("STELE_TENANT_CLAIM"), "{err}");
    }
}
