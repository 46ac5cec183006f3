//! When to send again: exponential backoff with jitter, and the server's
//! `Retry-After` as a floor.

use std::time::Duration;

use rand::Rng;

/// How failed requests are retried. A batch is given up on (spilled or
/// dropped) after `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included (≥ 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled each time.
    pub base: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// Largest `Retry-After` obeyed; a larger one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry): "equal
    /// jitter" (half fixed, half random) of `base·2^(retry−1)` capped at
    /// `max_backoff`, so that many clients failing together spread out; never
    /// less than the server's `Retry-After` (plus up to 10 % jitter).
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let mut rng = rand::rng();
        let half = exp / 2;
        let jittered = half + half.mul_f64(rng.random::<f64>());
        match retry_after {
            Some(after) => {
                let after = after.min(self.max_retry_after);
                let spread = after.mul_f64(0.1 * rng.random::<f64>()).min(Duration::from_secs(1));
                (after + spread).max(jittered)
            }
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_cap_and_jitter_band() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
        };
        for _ in 0..200 {
            let first = p.backoff(1, None);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = p.backoff(3, None);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = p.backoff(40, None);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_secs(1),
                "{late:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            let wait = p.backoff(1, Some(Duration::from_secs(3)));
            assert!(
                wait >= Duration::from_secs(3) && wait <= Duration::from_millis(3300),
                "{wait:?}"
            );
            let capped = p.backoff(1, Some(Duration::from_secs(86_400)));
            assert!(capped >= p.max_retry_after && capped <= p.max_retry_after + Duration::from_secs(1));
        }
    }
}
