//! The DynamoDB adapter: [`QuotaGate`] over one table that every ingest
//! instance shares.
//!
//! The table has one string hash key, `pk`, and two kinds of item:
//!
//! - counters, `pk = count#<tenant>#<window start>`: `events` (number) and
//!   `expires_at` (the table's TTL attribute, a minute after the window ends).
//!   A request is one `UpdateItem`: `ADD events :n` on the condition
//!   `attribute_not_exists(events) OR events <= :limit - :n`, so concurrent
//!   instances can never admit more than the limit between them, and a refused
//!   request adds nothing;
//! - overrides, `pk = tenant#<tenant>`: `events_per_sec` (0: no quota for this
//!   tenant) and optionally `burst`. Read with `GetItem` and trusted for a
//!   minute per instance.
//!
//! Tenant ids cannot hold `#` (`stele_core::check_tenant_id`), so keys cannot collide.
//! Every call is bounded by a timeout; a store that fails or does not answer
//! in time admits the request ([`Verdict::Unchecked`]: fail-open).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{FullWindows, Limited, Quota, QuotaGate, Verdict, Window};

/// The table's hash key.
pub const KEY: &str = "pk";
/// The counters' TTL attribute (enable TTL on it: Terraform and `stele dev` do).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long a counter outlives its window before TTL may delete it.
const COUNTER_GRACE_SECS: u64 = 60;

/// The counter item's key of `tenant` in `window`.
pub fn counter_key(tenant: &str, window: Window) -> String {
    format!("count#{tenant}#{}", window.start)
}

/// The override item's key of `tenant`.
pub fn override_key(tenant: &str) -> String {
    format!("tenant#{tenant}")
}

/// The quota an override item sets: `Ok(None)` for no quota
/// (`events_per_sec = 0`), an error for a malformed item.
pub fn quota_from_override(item: &HashMap<String, AttributeValue>) -> Result<Option<Quota>, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => n
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("`{name}` is not a whole number: {n}")),
            Some(other) => Err(format!("`{name}` is not a number: {other:?}")),
        }
    };
    match number("events_per_sec")? {
        None => Err("`events_per_sec` is missing".into()),
        Some(0) => Ok(None),
        Some(rate) => Quota::new(rate, number("burst")?).map(Some),
    }
}

/// Per-tenant quotas as read from the table, remembered for a while so that an
/// override costs one `GetItem` per tenant per instance per [`Overrides::TTL`].
#[derive(Debug, Default)]
struct Overrides {
    known: Mutex<HashMap<String, (Option<Quota>, Instant)>>,
}

impl Overrides {
    /// How long a tenant's quota (override or default) is trusted.
    const TTL: Duration = Duration::from_secs(60);
    /// How long a failed lookup falls back to the default before it is tried again.
    const RETRY: Duration = Duration::from_secs(5);

    /// `Some(quota)` while fresh; `quota` is `None` for no quota.
    fn get(&self, tenant: &str) -> Option<Option<Quota>> {
        let known = self.known.lock().ok()?;
        let (quota, until) = known.get(tenant)?;
        (Instant::now() < *until).then_some(*quota)
    }

    fn put(&self, tenant: &str, quota: Option<Quota>, ttl: Duration) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= FullWindows::SWEEP_AT {
                let now = Instant::now();
                known.retain(|_, (_, until)| *until > now);
            }
            known.insert(tenant.to_owned(), (quota, Instant::now() + ttl));
        }
    }
}

/// The real gate: counters and overrides in one DynamoDB table.
#[derive(Debug)]
pub struct DynamoDbQuota {
    client: aws_sdk_dynamodb::Client,
    table: String,
    default: Quota,
    timeout: Duration,
    overrides: Overrides,
    full: FullWindows,
}

impl DynamoDbQuota {
    /// `table` is a table name or ARN; `default` applies to tenants without an
    /// override; `timeout` bounds each call (retries by the SDK included).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, default: Quota, timeout: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            default,
            timeout,
            overrides: Overrides::default(),
            full: FullWindows::default(),
        }
    }

    /// The table's name or ARN.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The quota of `tenant` (`None`: no quota): its override if it has one,
    /// else the default. A failed lookup uses the default.
    async fn quota_of(&self, tenant: &str) -> Option<Quota> {
        if let Some(quota) = self.overrides.get(tenant) {
            return quota;
        }
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(override_key(tenant)))
            .send();
        let (quota, ttl) = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(out)) => match out.item() {
                None => (Some(self.default), Overrides::TTL),
                Some(item) => match quota_from_override(item) {
                    Ok(quota) => (quota, Overrides::TTL),
                    Err(e) => {
                        tracing::warn!(%tenant, error = %e, "malformed quota override; using the default");
                        (Some(self.default), Overrides::TTL)
                    }
                },
            },
            Ok(Err(e)) => {
                let e = DisplayErrorContext(e);
                tracing::warn!(%tenant, error = %e, "quota override lookup failed; using the default");
                (Some(self.default), Overrides::RETRY)
            }
            Err(_) => {
                tracing::warn!(%tenant, timeout_ms = self.timeout.as_millis() as u64, "quota override lookup timed out; using the default");
                (Some(self.default), Overrides::RETRY)
            }
        };
        self.overrides.put(tenant, quota, ttl);
        quota
    }
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn events_in(item: Option<&HashMap<String, AttributeValue>>) -> Option<u64> {
    match item?.get("events")? {
        AttributeValue::N(n) => n.parse().ok(),
        _ => None,
    }
}

impl QuotaGate for DynamoDbQuota {
    fn known_limited(&self, tenant: &str, now: DateTime<Utc>) -> Option<Limited> {
        self.full.get(tenant, now)
    }

    async fn charge(&self, tenant: &str, events: u64, now: DateTime<Utc>) -> Verdict {
        let Some(quota) = self.quota_of(tenant).await else {
            return Verdict::Admitted;
        };
        let (window, limit) = (quota.window(now), quota.limit());
        if events > limit {
            return Verdict::Limited(Limited::new(quota, window, now, true));
        }
        let call = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(counter_key(tenant, window)))
            .update_expression("ADD #n :n SET #x = :x")
            .condition_expression("attribute_not_exists(#n) OR #n <= :room")
            .expression_attribute_names("#n", "events")
            .expression_attribute_names("#x", TTL_ATTRIBUTE)
            .expression_attribute_values(":n", number(events))
            .expression_attribute_values(":room", number(limit - events))
            .expression_attribute_values(":x", number(window.end + COUNTER_GRACE_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(out)) => {
                if events_in(out.attributes()).is_some_and(|n| n >= limit) {
                    self.full.mark(tenant, quota, window);
                }
                Verdict::Admitted
            }
            Ok(Err(SdkError::ServiceError(e))) if e.err().is_conditional_check_failed_exception() => {
                // Remembered only when nothing more fits: a refused large batch
                // says nothing about a smaller one.
                let item = match e.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                };
                if events_in(item).is_some_and(|n| n >= limit) {
                    self.full.mark(tenant, quota, window);
                }
                Verdict::Limited(Limited::new(quota, window, now, false))
            }
            Ok(Err(e)) => {
                let code = e.code().unwrap_or("DispatchFailure").to_owned();
                let e = DisplayErrorContext(e);
                tracing::warn!(%tenant, %code, error = %e, "quota store failed; request admitted unchecked");
                Verdict::Unchecked(format!("quota store failed: {code}"))
            }
            Err(_) => {
                let ms = self.timeout.as_millis() as u64;
                tracing::warn!(%tenant, timeout_ms = ms, "quota store did not answer in time; request admitted unchecked");
                Verdict::Unchecked(format!("quota store did not answer within {ms} ms"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::N(v.to_string())))
            .collect()
    }

    #[test]
    fn overrides_set_a_quota_none_or_are_refused_when_malformed() {
        assert_eq!(
            quota_from_override(&item(&[("events_per_sec", "50"), ("burst", "200")])),
            Ok(Some(Quota::new(50, Some(200)).unwrap()))
        );
        assert_eq!(
            quota_from_override(&item(&[("events_per_sec", "50")])),
            Ok(Some(Quota::new(50, None).unwrap()))
        );
        assert_eq!(quota_from_override(&item(&[("events_per_sec", "0")])), Ok(None));
        assert!(quota_from_override(&item(&[])).is_err());
        assert!(quota_from_override(&item(&[("events_per_sec", "1.5")])).is_err());
        assert!(quota_from_override(&item(&[("events_per_sec", "10"), ("burst", "5")])).is_err());
    }

    #[test]
    fn keys_separate_tenants_windows_and_overrides() {
        let w = Window { start: 100, end: 101 };
        assert_eq!(counter_key("acme", w), "count#acme#100");
        assert_eq!(override_key("acme"), "tenant#acme");
    }
}
