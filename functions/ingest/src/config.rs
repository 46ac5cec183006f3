//! Settings of the ingest function, read once at start-up from the environment.
//!
//! Every variable is checked before the first request so that a misconfigured
//! deployment fails its cold start with a message naming the variable, rather
//! than answering requests wrongly.

use std::collections::HashMap;
use std::time::Duration;

use chrono::TimeDelta;
use stele_core::{limits, TimeWindow};

use crate::quota::Quota;
use crate::Error;

/// Per-tenant quotas (`STELE_TENANT_QUOTA_*`): off unless a rate is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `STELE_TENANT_QUOTA_EVENTS_PER_SEC` (absent or 0: no quotas) and
    /// `STELE_TENANT_QUOTA_BURST` (absent or 0: the rate): the quota of every tenant
    /// without an override in the table.
    pub default: Option<Quota>,
    /// `STELE_TENANT_QUOTA_TABLE` (required when a rate is set): the DynamoDB
    /// table of counters and overrides.
    pub table: Option<String>,
    /// `STELE_TENANT_QUOTA_TIMEOUT_MS` (default 250): the longest a request waits
    /// for the quota table before it is admitted unchecked.
    pub timeout: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            default: None,
            table: None,
            timeout: Duration::from_millis(250),
        }
    }
}

/// How the Kinesis partition key is chosen for a tenant.
///
/// By default the key is the tenant id, so one tenant's events stay ordered on
/// one shard. A tenant that writes more than one shard takes (1 000 records/s,
/// 1 MiB/s) can be spread over `tenant#0 … tenant#<n-1>`; the suffix is derived
/// from the event id, so a retried event lands on the same key again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HotTenants {
    /// Spread applied to every tenant not listed in `per_tenant` (1 = no spread).
    pub default_spread: u16,
    pub per_tenant: HashMap<String, u16>,
}

impl HotTenants {
    /// Largest spread accepted: keeps `tenant#<n>` short and is far above any shard count
    /// a single tenant should need.
    pub const MAX_SPREAD: u16 = 1024;

    /// How many partition keys `tenant` is spread over (at least 1).
    pub fn spread(&self, tenant: &str) -> u16 {
        self.per_tenant
            .get(tenant)
            .copied()
            .unwrap_or(self.default_spread)
            .max(1)
    }

    /// The partition key of an event: the tenant, or `tenant#<n>` for a tenant
    /// spread over several keys; `n` comes from the event id so a resent event
    /// keeps its key.
    pub fn partition_key(&self, tenant: &str, event_id: uuid::Uuid) -> String {
        let spread = self.spread(tenant);
        if spread <= 1 {
            tenant.to_owned()
        } else {
            format!("{tenant}#{}", event_id.as_u128() % u128::from(spread))
        }
    }

    /// Parse `STELE_HOT_TENANT_SHARDS`: either a count for every tenant (`4`) or a
    /// list of `tenant=count` pairs (`acme=8,globex=4`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        let count = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(n) if (1..=Self::MAX_SPREAD).contains(&n) => Ok(n),
                _ => Err(format!("`{s}` is not a count between 1 and {}", Self::MAX_SPREAD)),
            }
        };
        if !text.contains('=') {
            return Ok(Self {
                default_spread: count(text)?,
                per_tenant: HashMap::new(),
            });
        }
        let mut per_tenant = HashMap::new();
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((tenant, n)) = pair.split_once('=') else {
                return Err(format!("`{pair}` is not of the form tenant=count"));
            };
            let tenant = tenant.trim();
            if tenant.is_empty() {
                return Err(format!("`{pair}` has an empty tenant"));
            }
            stele_core::check_tenant_id(tenant).map_err(|e| format!("`{pair}`: {e}"))?;
            per_tenant.insert(tenant.to_owned(), count(n)?);
        }
        Ok(Self {
            default_spread: 1,
            per_tenant,
        })
    }
}

/// Everything the handler needs besides its clients.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `STELE_STREAM_NAME` (required): the Kinesis stream (name or ARN) events go to.
    pub stream_name: String,
    /// `STELE_TENANT_CLAIM` (default `tenant_id`): the JWT claim, or Lambda
    /// authorizer context key, that holds the tenant.
    pub tenant_claim: String,
    /// `STELE_MAX_LATENESS_SECS` (default 259200 = 72 h) and `STELE_MAX_SKEW_SECS`
    /// (default 300).
    pub window: TimeWindow,
    /// `STELE_PUT_DEADLINE_MS` (default 8000): total time spent putting one request's
    /// records, retries included. Keep it below the Lambda timeout.
    pub put_deadline: Duration,
    /// `STELE_RETRY_AFTER_SECS` (default 2): the `Retry-After` of a `503`.
    pub retry_after_secs: u32,
    /// `STELE_MAX_EVENTS_PER_REQUEST` (default and ceiling 500).
    pub max_events: usize,
    /// `STELE_MAX_REQUEST_BYTES` (default and ceiling 1 000 000, [`limits::MAX_REQUEST_BYTES`]:
    /// larger bodies may not fit the Lambda payload once API Gateway escapes them).
    pub max_request_bytes: usize,
    /// `STELE_HOT_TENANT_SHARDS` (optional): see [`HotTenants::parse`].
    pub hot_tenants: HotTenants,
    /// Per-tenant quotas: see [`QuotaSettings`].
    pub quota: QuotaSettings,
}

impl IngestConfig {
    /// A configuration with the defaults and the given stream, for tests and local runs.
    pub fn new(stream_name: impl Into<String>) -> Self {
        Self {
            stream_name: stream_name.into(),
            tenant_claim: "tenant_id".into(),
            window: TimeWindow::default(),
            put_deadline: Duration::from_millis(8000),
            retry_after_secs: 2,
            max_events: limits::MAX_EVENTS_PER_REQUEST,
            max_request_bytes: limits::MAX_REQUEST_BYTES,
            hot_tenants: HotTenants::default(),
            quota: QuotaSettings::default(),
        }
    }

    /// Read the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let bad = |var: &'static str, reason: String| Error::Config { var, reason };
        let stream_name = get("STELE_STREAM_NAME")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad(
                    "STELE_STREAM_NAME",
                    "is required: the name or ARN of the Kinesis stream".into(),
                )
            })?;
        let mut cfg = Self::new(stream_name);
        if let Some(claim) = get("STELE_TENANT_CLAIM") {
            let claim = claim.trim();
            if claim.is_empty() {
                return Err(bad("STELE_TENANT_CLAIM", "must not be empty".into()));
            }
            cfg.tenant_claim = claim.to_owned();
        }
        let number = |var: &'static str, min: u64, max: u64| -> Result<Option<u64>, Error> {
            // The shared message starts with the variable's name; `bad` adds it too.
            stele_core::settings::number(&get, var, min..=max)
                .map_err(|reason| bad(var, reason.trim_start_matches(var).trim_start().to_owned()))
        };
        let secs = |n: u64| TimeDelta::seconds(i64::try_from(n).unwrap_or(i64::MAX));
        if let Some(n) = number("STELE_MAX_LATENESS_SECS", 1, 365 * 86_400)? {
            cfg.window.max_lateness = secs(n);
        }
        if let Some(n) = number("STELE_MAX_SKEW_SECS", 0, 86_400)? {
            cfg.window.max_skew = secs(n);
        }
        if let Some(n) = number("STELE_PUT_DEADLINE_MS", 100, 900_000)? {
            cfg.put_deadline = Duration::from_millis(n);
        }
        if let Some(n) = number("STELE_RETRY_AFTER_SECS", 1, 3600)? {
            cfg.retry_after_secs = u32::try_from(n).unwrap_or(3600);
        }
        let max_events = limits::MAX_EVENTS_PER_REQUEST as u64;
        if let Some(n) = number("STELE_MAX_EVENTS_PER_REQUEST", 1, max_events)? {
            cfg.max_events = usize::try_from(n).unwrap_or(limits::MAX_EVENTS_PER_REQUEST);
        }
        let max_bytes = limits::MAX_REQUEST_BYTES as u64;
        if let Some(n) = number("STELE_MAX_REQUEST_BYTES", 1024, max_bytes)? {
            cfg.max_request_bytes = usize::try_from(n).unwrap_or(limits::MAX_REQUEST_BYTES);
        }
        if let Some(raw) = get("STELE_HOT_TENANT_SHARDS") {
            cfg.hot_tenants = HotTenants::parse(&raw).map_err(|e| bad("STELE_HOT_TENANT_SHARDS", e))?;
        }
        let rate = number("STELE_TENANT_QUOTA_EVENTS_PER_SEC", 0, Quota::MAX)?.unwrap_or(0);
        let burst = number("STELE_TENANT_QUOTA_BURST", 0, Quota::MAX)?.filter(|&b| b > 0);
        if let Some(n) = number("STELE_TENANT_QUOTA_TIMEOUT_MS", 10, 5000)? {
            cfg.quota.timeout = Duration::from_millis(n);
        }
        cfg.quota.table = get("STELE_TENANT_QUOTA_TABLE")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if rate > 0 {
            cfg.quota.default = Some(Quota::new(rate, burst).map_err(|e| bad("STELE_TENANT_QUOTA_BURST", e))?);
            if cfg.quota.table.is_none() {
                return Err(bad(
                    "STELE_TENANT_QUOTA_TABLE",
                    "is required when STELE_TENANT_QUOTA_EVENTS_PER_SEC is set: the DynamoDB table of quota counters"
                        .into(),
                ));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use stele_core::settings::from_pairs as lookup;

    #[test]
    fn missing_stream_name_is_an_error_naming_the_variable() {
        let err = IngestConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("STELE_STREAM_NAME"), "{err}");
    }

    #[test]
    fn defaults_apply_when_only_the_stream_is_set() {
        let cfg = IngestConfig::from_lookup(lookup(&[("STELE_STREAM_NAME", "s")])).unwrap();
        assert_eq!(cfg.stream_name, "s");
        assert_eq!(cfg.tenant_claim, "tenant_id");
        assert_eq!(cfg.window.max_lateness, TimeDelta::hours(72));
        assert_eq!(cfg.window.max_skew, TimeDelta::minutes(5));
        assert_eq!(cfg.put_deadline, Duration::from_millis(8000));
        assert_eq!(cfg.max_events, 500);
        assert_eq!(cfg.hot_tenants.spread("anyone"), 1);
    }

    #[test]
    fn a_bad_number_names_the_variable_and_the_value() {
        let err = IngestConfig::from_lookup(lookup(&[("STELE_STREAM_NAME", "s"), ("STELE_MAX_SKEW_SECS", "five")]))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("STELE_MAX_SKEW_SECS") && text.contains("five"), "{text}");
    }

    #[test]
    fn limits_above_the_kinesis_ceilings_are_refused() {
        let err = IngestConfig::from_lookup(lookup(&[
            ("STELE_STREAM_NAME", "s"),
            ("STELE_MAX_EVENTS_PER_REQUEST", "501"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("STELE_MAX_EVENTS_PER_REQUEST"));
    }

    #[test]
    fn quotas_are_off_by_default_and_at_zero() {
        let cfg = IngestConfig::from_lookup(lookup(&[("STELE_STREAM_NAME", "s")])).unwrap();
        assert_eq!(cfg.quota, QuotaSettings::default());
        let cfg = IngestConfig::from_lookup(lookup(&[
            ("STELE_STREAM_NAME", "s"),
            ("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "0"),
        ]))
        .unwrap();
        assert_eq!(cfg.quota.default, None);
    }

    #[test]
    fn a_quota_needs_its_table_and_a_burst_at_least_the_rate() {
        let cfg = IngestConfig::from_lookup(lookup(&[
            ("STELE_STREAM_NAME", "s"),
            ("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "100"),
            ("STELE_TENANT_QUOTA_BURST", "250"),
            ("STELE_TENANT_QUOTA_TABLE", "quotas"),
            ("STELE_TENANT_QUOTA_TIMEOUT_MS", "100"),
        ]))
        .unwrap();
        assert_eq!(cfg.quota.default, Some(Quota::new(100, Some(250)).unwrap()));
        assert_eq!(cfg.quota.table.as_deref(), Some("quotas"));
        assert_eq!(cfg.quota.timeout, Duration::from_millis(100));

        let error = |pairs: &[(&str, &str)]| {
            let mut all = vec![("STELE_STREAM_NAME", "s")];
            all.extend_from_slice(pairs);
            IngestConfig::from_lookup(lookup(&all)).unwrap_err().to_string()
        };
        let e = error(&[("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "100")]);
        assert!(e.contains("STELE_TENANT_QUOTA_TABLE"), "{e}");
        let e = error(&[
            ("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "lots"),
            ("STELE_TENANT_QUOTA_TABLE", "q"),
        ]);
        assert!(
            e.contains("STELE_TENANT_QUOTA_EVENTS_PER_SEC") && e.contains("lots"),
            "{e}"
        );
        let e = error(&[
            ("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "100"),
            ("STELE_TENANT_QUOTA_BURST", "50"),
            ("STELE_TENANT_QUOTA_TABLE", "q"),
        ]);
        assert!(
            e.contains("STELE_TENANT_QUOTA_BURST") && e.contains("at least the rate"),
            "{e}"
        );
        let e = error(&[
            ("STELE_TENANT_QUOTA_EVENTS_PER_SEC", "-1"),
            ("STELE_TENANT_QUOTA_TABLE", "q"),
        ]);
        assert!(e.contains("STELE_TENANT_QUOTA_EVENTS_PER_SEC"), "{e}");
    }

    #[test]
    fn hot_tenants_parse_as_a_count_or_a_map() {
        let all = HotTenants::parse("4").unwrap();
        assert_eq!(all.spread("x"), 4);
        let map = HotTenants::parse("acme=8, globex=2").unwrap();
        assert_eq!(map.spread("acme"), 8);
        assert_eq!(map.spread("globex"), 2);
        assert_eq!(map.spread("other"), 1);
        assert!(HotTenants::parse("acme=0").is_err());
        assert!(HotTenants::parse("acme=8,=2").is_err());
        assert!(HotTenants::parse("lots").is_err());
        let err = HotTenants::parse("a#1=2").unwrap_err();
        assert!(err.contains("'#'"), "{err}");
    }
}
