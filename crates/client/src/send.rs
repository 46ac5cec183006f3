//! One batch to the API: attempts, retries with backoff, and what each answer
//! means for the events in it. Shared by the background sender and `emit_sync`.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::TokenProvider;
use crate::event::Source;
use crate::retry::RetryPolicy;
use crate::stats::{Counters, DropReason};
use crate::transport::{Post, Transport};

/// What every handle and the sender task share.
pub(crate) struct Shared {
    pub transport: Box<dyn Transport>,
    pub tokens: Arc<dyn TokenProvider>,
    pub counters: Counters,
    pub gzip: AtomicBool,
    pub retry: RetryPolicy,
    pub source: Source,
}

/// What one request came to.
pub(crate) enum Attempt {
    Accepted(Bytes),
    /// Worth sending again: unreachable, timeout, `408`, `429`, `5xx`, no token.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    Unauthorized(String),
    /// Sending the same body again cannot succeed.
    Rejected {
        status: u16,
        body: Bytes,
    },
    /// `415` to a gzip body: this API does not take compressed bodies.
    GzipRefused,
}

/// Where a batch came from, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Live,
    Replay,
}

/// Bytes [`body_of`] adds to its events' bytes plus one per event:
/// `{"events":[`, `]}`, less the comma the first event does not need.
pub(crate) const BODY_WRAPPER_BYTES: usize = 12;

/// `{"events":[e1,e2,…]}` from events already serialised.
pub(crate) fn body_of(events: &[Vec<u8>]) -> Bytes {
    let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + BODY_WRAPPER_BYTES;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// The events of a body built by [`body_of`] (a spilled batch), each serialised again.
pub(crate) fn events_of(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Value::Object(mut obj) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let Value::Array(events) = obj.remove("events")? else {
        return None;
    };
    events.iter().map(|e| serde_json::to_vec(e).ok()).collect()
}

fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Indices of the events a `400` body names (`problems[].index`), if every
/// problem names one; `None` when the body as a whole was refused.
fn refused_indices(body: &[u8], events: usize) -> Option<BTreeSet<usize>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let problems = value.get("problems")?.as_array()?;
    let mut out = BTreeSet::new();
    for p in problems {
        let i = usize::try_from(p.get("index")?.as_u64()?).ok()?;
        if i >= events {
            return None;
        }
        out.insert(i);
    }
    (!out.is_empty() && out.len() < events).then_some(out)
}

impl Shared {
    pub async fn attempt(&self, body: &Bytes) -> Attempt {
        let token = match self.tokens.token().await {
            Ok(token) => token,
            Err(e) => {
                return Attempt::Retry {
                    why: e.to_string(),
                    retry_after: None,
                }
            }
        };
        let gzip_on = self.gzip.load(Ordering::Relaxed);
        let payload = if gzip_on {
            match gzip(body) {
                Some(zipped) => zipped,
                None => body.clone(),
            }
        } else {
            body.clone()
        };
        let post = Post {
            body: payload,
            gzip: gzip_on,
            token,
        };
        let answer = match self.transport.post(post).await {
            Ok(answer) => answer,
            Err(why) => return Attempt::Retry { why, retry_after: None },
        };
        let text = || {
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(500)
                .collect::<String>()
        };
        match answer.status {
            200..=299 => Attempt::Accepted(answer.body),
            401 => {
                self.tokens.invalidate();
                Attempt::Unauthorized(text())
            }
            415 if gzip_on => Attempt::GzipRefused,
            408 | 429 | 500..=599 => Attempt::Retry {
                why: format!("{}: {}", answer.status, text()),
                retry_after: answer.retry_after,
            },
            status => Attempt::Rejected {
                status,
                body: answer.body,
            },
        }
    }

    pub fn disable_gzip(&self) {
        if self.gzip.swap(false, Ordering::Relaxed) {
            tracing::warn!("the API refused a gzip body (415); sending uncompressed from now on");
        }
    }

    /// Send `events` until the API accepted or refused each of them, or the
    /// attempts (or the `deadline`) ran out. Refused events are dropped and
    /// counted here; the events still undelivered because the API was
    /// unavailable are returned, for the caller to spill or drop.
    pub async fn send(
        &self,
        events: Vec<Vec<u8>>,
        origin: Origin,
        max_attempts: u32,
        deadline: Option<Instant>,
    ) -> Vec<Vec<u8>> {
        let mut pending: VecDeque<Vec<Vec<u8>>> = VecDeque::from([events]);
        let mut undelivered = Vec::new();
        // Each pass either finishes a chunk, shrinks it, splits it or uses an
        // attempt, so this ends; the cap is a guard against a logic slip.
        let mut passes = 0usize;
        'chunks: while let Some(mut chunk) = pending.pop_front() {
            let mut attempts = 0u32;
            loop {
                passes += 1;
                if chunk.is_empty() {
                    continue 'chunks;
                }
                if passes > 10_000 {
                    undelivered.append(&mut chunk);
                    continue 'chunks;
                }
                let n = chunk.len();
                attempts += 1;
                let body = body_of(&chunk);
                match self.attempt(&body).await {
                    Attempt::Accepted(_) => {
                        Counters::add(&self.counters.sent, n);
                        if origin == Origin::Replay {
                            Counters::add(&self.counters.replayed, n);
                        }
                        continue 'chunks;
                    }
                    Attempt::GzipRefused => {
                        self.disable_gzip();
                        attempts -= 1;
                    }
                    Attempt::Rejected { status: 400, body } => match refused_indices(&body, n) {
                        Some(bad) => {
                            tracing::warn!(refused = bad.len(), of = n, answer = %String::from_utf8_lossy(&body), "the API refused events; sending the rest");
                            self.counters.drop_events(DropReason::Rejected, bad.len());
                            let mut i = 0;
                            chunk.retain(|_| {
                                i += 1;
                                !bad.contains(&(i - 1))
                            });
                            attempts -= 1;
                        }
                        None => {
                            tracing::warn!(events = n, answer = %String::from_utf8_lossy(&body), "the API refused a batch (400)");
                            self.counters.drop_events(DropReason::Rejected, n);
                            continue 'chunks;
                        }
                    },
                    Attempt::Rejected { status: 413, .. } if n > 1 => {
                        let second = chunk.split_off(n / 2);
                        pending.push_front(second);
                        pending.push_front(chunk);
                        continue 'chunks;
                    }
                    Attempt::Rejected { status, body } => {
                        tracing::warn!(status, events = n, answer = %String::from_utf8_lossy(&body), "the API refused a batch");
                        self.counters.drop_events(DropReason::Rejected, n);
                        continue 'chunks;
                    }
                    Attempt::Unauthorized(why) if attempts >= max_attempts => {
                        tracing::warn!(events = n, %why, "the API refused the bearer token; events dropped");
                        self.counters.drop_events(DropReason::Unauthorized, n);
                        continue 'chunks;
                    }
                    Attempt::Unauthorized(_) => self.wait(attempts, None, n).await,
                    Attempt::Retry { why, retry_after } => {
                        let wait = self.retry.backoff(attempts, retry_after);
                        let late = deadline.is_some_and(|d| Instant::now() + wait > d);
                        if attempts >= max_attempts || late {
                            tracing::warn!(events = n, attempts, %why, "the API is unavailable; giving the batch up");
                            undelivered.append(&mut chunk);
                            undelivered.extend(pending.drain(..).flatten());
                            break 'chunks;
                        }
                        tracing::debug!(events = n, attempts, %why, ?wait, "retrying");
                        Counters::add(&self.counters.retried, n);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        undelivered
    }

    async fn wait(&self, attempts: u32, retry_after: Option<Duration>, n: usize) {
        Counters::add(&self.counters.retried, n);
        tokio::time::sleep(self.retry.backoff(attempts, retry_after)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_through_the_spill_form() {
        let events = vec![br#"{"a":1}"#.to_vec(), br#"{"b":[2,3]}"#.to_vec()];
        let body = body_of(&events);
        assert_eq!(&body[..], br#"{"events":[{"a":1},{"b":[2,3]}]}"#);
        assert_eq!(events_of(&body), Some(events));
        assert_eq!(events_of(b"{\"events\":3}"), None);
    }

    #[test]
    fn only_a_400_naming_some_events_spares_the_others() {
        let body = br#"{"problems":[{"index":1,"path":"events[1].action"},{"index":3}]}"#;
        assert_eq!(refused_indices(body, 5), Some(BTreeSet::from([1, 3])));
        assert_eq!(refused_indices(body, 3), None, "an index out of range");
        assert_eq!(refused_indices(br#"{"problems":[{"path":""}]}"#, 5), None);
        assert_eq!(
            refused_indices(br#"{"problems":[{"index":0}]}"#, 1),
            None,
            "all refused"
        );
    }
}
