//! Per-tenant quotas (issue 18, item 4): a tenant over its quota gets `429`
//! with `Retry-After` before anything is put on the stream, while other tenants
//! are unaffected. Split as the sink is:
//!
//! - this module is the port: [`QuotaGate`] charges a request's events to its
//!   tenant and says whether they are admitted; [`Quota`] and [`Window`] hold
//!   the arithmetic every gate shares (fixed windows of whole seconds);
//!   [`FullWindows`] is the in-process memory of tenants known to be over quota
//!   for the rest of a window, so that their requests are refused without a
//!   round trip and before their bodies are parsed;
//! - [`dynamodb`] is the real adapter, [`DynamoDbQuota`]: one conditional
//!   `UpdateItem` per request on a counter item per (tenant, window), shared by
//!   every Lambda instance;
//! - `fakes` (feature `testing`, and unit tests) holds [`MemoryQuota`], the
//!   same rules in memory, and a gate whose store is down.
//!
//! Why DynamoDB, why fixed windows and why a failing store admits requests
//! (fail-open): docs/ARCHITECTURE.md, "Per-tenant quotas".

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub mod dynamodb;

#[cfg(any(test, feature = "testing"))]
pub mod fakes;

pub use dynamodb::DynamoDbQuota;
#[cfg(any(test, feature = "testing"))]
pub use fakes::MemoryQuota;

/// A tenant's quota: a sustained rate in events per second and a burst.
///
/// Enforced as fixed windows of [`Quota::window_secs`] whole seconds
/// (`burst / events_per_sec`, rounded up), each admitting [`Quota::limit`]
/// events (`events_per_sec × window_secs`, so at least `burst`). With the
/// default burst (= the rate) windows are one second long. A batch counts its
/// events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub events_per_sec: u64,
    pub burst: u64,
}

impl Quota {
    /// Largest rate and burst accepted (far above what one Kinesis stream of
    /// reasonable size takes; keeps the arithmetic small).
    pub const MAX: u64 = 10_000_000;

    /// `events_per_sec` ≥ 1, `burst` ≥ `events_per_sec` (both at most [`Quota::MAX`]).
    pub fn new(events_per_sec: u64, burst: Option<u64>) -> Result<Self, String> {
        if !(1..=Self::MAX).contains(&events_per_sec) {
            return Err(format!(
                "the rate must be between 1 and {} events per second",
                Self::MAX
            ));
        }
        let burst = burst.unwrap_or(events_per_sec);
        if burst < events_per_sec || burst > Self::MAX {
            return Err(format!(
                "the burst ({burst}) must be at least the rate ({events_per_sec}) and at most {}",
                Self::MAX
            ));
        }
        Ok(Self { events_per_sec, burst })
    }

    /// Length of a window in seconds: the burst's worth of the rate, rounded up.
    pub fn window_secs(&self) -> u64 {
        self.burst.div_ceil(self.events_per_sec.max(1)).max(1)
    }

    /// Events admitted per window.
    pub fn limit(&self) -> u64 {
        self.events_per_sec.saturating_mul(self.window_secs())
    }

    /// The window `now` falls in: windows start at multiples of their length
    /// since the Unix epoch, so every Lambda instance agrees on them.
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        let len = self.window_secs();
        let secs = u64::try_from(now.timestamp()).unwrap_or(0);
        let start = secs - secs % len;
        Window {
            start,
            end: start + len,
        }
    }
}

/// One fixed window, in seconds since the Unix epoch: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Whole seconds from `now` until the window ends (at least 1): the `Retry-After`.
    pub fn retry_after(&self, now: DateTime<Utc>) -> u32 {
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let end_ms = self.end.saturating_mul(1000);
        let secs = end_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

/// The outcome of charging a request to its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within quota (or no quota applies): put the events.
    Admitted,
    /// Over quota: answer `429` and put nothing.
    Limited(Limited),
    /// The quota store did not answer in time or failed: the request is
    /// admitted (fail-open, see docs/ARCHITECTURE.md) and the reason logged.
    Unchecked(String),
}

/// Why and for how long a tenant is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until the tenant's window ends.
    pub retry_after_secs: u32,
    /// The tenant's quota.
    pub quota: Quota,
    /// The request alone holds more events than a window admits: waiting will
    /// not help, smaller requests will.
    pub request_too_large: bool,
}

impl Limited {
    pub fn new(quota: Quota, window: Window, now: DateTime<Utc>, request_too_large: bool) -> Self {
        Self {
            retry_after_secs: window.retry_after(now),
            quota,
            request_too_large,
        }
    }
}

/// Where a request's events are counted against its tenant's quota.
pub trait QuotaGate: Send + Sync {
    /// Without I/O: `Some` when `tenant` is already known (in this process) to
    /// be over quota for the rest of the current window. Checked before the
    /// body is read, so a tenant over quota costs next to nothing.
    fn known_limited(&self, tenant: &str, now: DateTime<Utc>) -> Option<Limited>;

    /// Charge `events` events to `tenant` at `now`. Admitted events are
    /// counted; refused ones are not.
    fn charge(&self, tenant: &str, events: u64, now: DateTime<Utc>) -> impl Future<Output = Verdict> + Send;
}

/// No quota: every request is admitted (the default, and
/// `STELE_TENANT_QUOTA_EVENTS_PER_SEC` absent or 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuota;

impl QuotaGate for NoQuota {
    fn known_limited(&self, _: &str, _: DateTime<Utc>) -> Option<Limited> {
        None
    }

    async fn charge(&self, _: &str, _: u64, _: DateTime<Utc>) -> Verdict {
        Verdict::Admitted
    }
}

/// `None` is [`NoQuota`]: lets start-up choose a gate or none with one type.
impl<G: QuotaGate> QuotaGate for Option<G> {
    fn known_limited(&self, tenant: &str, now: DateTime<Utc>) -> Option<Limited> {
        self.as_ref().and_then(|g| g.known_limited(tenant, now))
    }

    async fn charge(&self, tenant: &str, events: u64, now: DateTime<Utc>) -> Verdict {
        match self {
            Some(g) => g.charge(tenant, events, now).await,
            None => Verdict::Admitted,
        }
    }
}

/// Tenants whose current window is used up, remembered in-process until the
/// window ends. Only full windows are remembered: a refusal of a large batch
/// says nothing about a smaller one.
#[derive(Debug, Default)]
pub struct FullWindows {
    full: Mutex<HashMap<String, (Quota, Window)>>,
}

impl FullWindows {
    /// Entries kept before expired ones are swept (bounded memory under many tenants).
    pub(crate) const SWEEP_AT: usize = 10_000;

    pub fn mark(&self, tenant: &str, quota: Quota, window: Window) {
        let Ok(mut full) = self.full.lock() else {
            return;
        };
        if full.len() >= Self::SWEEP_AT {
            let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
            full.retain(|_, (_, w)| w.end > now);
        }
        full.insert(tenant.to_owned(), (quota, window));
    }

    pub fn get(&self, tenant: &str, now: DateTime<Utc>) -> Option<Limited> {
        let full = self.full.lock().ok()?;
        let (quota, window) = full.get(tenant)?;
        let secs = u64::try_from(now.timestamp()).unwrap_or(0);
        (window.start <= secs && secs < window.end).then(|| Limited::new(*quota, *window, now, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64, ms: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, ms * 1_000_000).unwrap()
    }

    #[test]
    fn windows_are_whole_seconds_of_the_burst_rounded_up() {
        let q = Quota::new(100, None).unwrap();
        assert_eq!((q.window_secs(), q.limit()), (1, 100));
        let q = Quota::new(100, Some(250)).unwrap();
        assert_eq!((q.window_secs(), q.limit()), (3, 300));
        assert_eq!(
            q.window(at(1_000_000_001, 500)),
            Window {
                start: 999_999_999,
                end: 1_000_000_002
            }
        );
        assert!(Quota::new(0, None).is_err());
        assert!(Quota::new(10, Some(5)).unwrap_err().contains("at least the rate"));
    }

    #[test]
    fn retry_after_is_the_rest_of_the_window_rounded_up_and_at_least_one() {
        let q = Quota::new(10, Some(30)).unwrap();
        let w = q.window(at(100, 0));
        assert_eq!(w, Window { start: 99, end: 102 });
        assert_eq!(w.retry_after(at(100, 0)), 2);
        assert_eq!(w.retry_after(at(100, 1)), 2);
        assert_eq!(w.retry_after(at(101, 999)), 1);
        assert_eq!(w.retry_after(at(102, 0)), 1);
    }

    #[test]
    fn a_full_window_is_remembered_until_it_ends() {
        let full = FullWindows::default();
        let q = Quota::new(5, None).unwrap();
        full.mark("acme", q, q.window(at(50, 0)));
        assert_eq!(full.get("acme", at(50, 900)).map(|l| l.retry_after_secs), Some(1));
        assert!(full.get("globex", at(50, 900)).is_none());
        assert!(full.get("acme", at(51, 0)).is_none());
    }
}
