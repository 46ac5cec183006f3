//! An in-memory gate for tests (feature `testing`): the DynamoDB adapter's
//! rules (fixed windows, a refused request adds nothing, full windows
//! remembered) without the table, and a switch that makes its store "fail" to
//! show fail-open. Not part of the production API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::{FullWindows, Limited, Quota, QuotaGate, Verdict};

/// Counters in a map, one default quota and per-tenant overrides.
#[derive(Debug)]
pub struct MemoryQuota {
    default: Quota,
    overrides: HashMap<String, Option<Quota>>,
    counts: Mutex<HashMap<(String, u64), u64>>,
    full: FullWindows,
    failing: AtomicBool,
    store_calls: AtomicU64,
}

impl MemoryQuota {
    pub fn new(default: Quota) -> Self {
        Self {
            default,
            overrides: HashMap::new(),
            counts: Mutex::new(HashMap::new()),
            full: FullWindows::default(),
            failing: AtomicBool::new(false),
            store_calls: AtomicU64::new(0),
        }
    }

    /// Give `tenant` its own quota (`None`: no quota).
    pub fn with_override(mut self, tenant: &str, quota: Option<Quota>) -> Self {
        self.overrides.insert(tenant.to_owned(), quota);
        self
    }

    /// Make the store fail (`true`) or work again.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the "store" was consulted (not the in-process cache).
    pub fn store_calls(&self) -> u64 {
        self.store_calls.load(Ordering::SeqCst)
    }
}

impl QuotaGate for MemoryQuota {
    fn known_limited(&self, tenant: &str, now: DateTime<Utc>) -> Option<Limited> {
        self.full.get(tenant, now)
    }

    async fn charge(&self, tenant: &str, events: u64, now: DateTime<Utc>) -> Verdict {
        let Some(quota) = self.overrides.get(tenant).copied().unwrap_or(Some(self.default)) else {
            return Verdict::Admitted;
        };
        let (window, limit) = (quota.window(now), quota.limit());
        if events > limit {
            return Verdict::Limited(Limited::new(quota, window, now, true));
        }
        self.store_calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Verdict::Unchecked("quota store failed: injected".into());
        }
        let Ok(mut counts) = self.counts.lock() else {
            return Verdict::Unchecked("lock poisoned".into());
        };
        let count = counts.entry((tenant.to_owned(), window.start)).or_insert(0);
        if *count + events > limit {
            if *count >= limit {
                self.full.mark(tenant, quota, window);
            }
            return Verdict::Limited(Limited::new(quota, window, now, false));
        }
        *count += events;
        if *count >= limit {
            self.full.mark(tenant, quota, window);
        }
        Verdict::Admitted
    }
}
