//! Unit tests of the sending logic against an in-memory API (the real API is
//! exercised by tests/client*.rs through `stele dev`). Time is paused, so
//! backoffs and batch ages pass instantly and deterministically.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::transport::{Answer, Post, PostFuture, Transport};
use crate::*;

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
struct Seen {
    gzip: bool,
    /// Bytes of the uncompressed body.
    bytes: usize,
    token: String,
    ids: Vec<String>,
}

type Script = dyn Fn(usize, &Seen) -> Result<Answer, String> + Send + Sync;

#[derive(Clone)]
struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

impl FakeApi {
    fn new(script: impl Fn(usize, &Seen) -> Result<Answer, String> + Send + Sync + 'static) -> Self {
        Self {
            seen: Arc::default(),
            script: Arc::new(script),
        }
    }

    fn accepting() -> Self {
        Self::new(|_, _| Ok(answer(202, None, "{}")))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(status: u16, retry_after: Option<u64>, body: &str) -> Answer {
    Answer {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        body: Bytes::from(body.to_string()),
    }
}

impl Transport for FakeApi {
    fn post(&self, post: Post) -> PostFuture<'_> {
        Box::pin(async move {
            let raw = if post.gzip {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&post.body[..])
                    .read_to_end(&mut out)
                    .map_err(|e| e.to_string())?;
                out
            } else {
                post.body.to_vec()
            };
            let body: Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
            let ids = body["events"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e["event_id"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let seen = Seen {
                gzip: post.gzip,
                bytes: raw.len(),
                token: post.token,
                ids,
            };
            let n = {
                let mut all = self.seen.lock().unwrap();
                all.push(seen.clone());
                all.len() - 1
            };
            (self.script)(n, &seen)
        })
    }
}

fn builder() -> ClientBuilder {
    Client::builder("http://127.0.0.1:9")
        .token("t")
        .service("unit")
        .max_batch_age(Duration::from_millis(50))
}

fn event(n: usize) -> Event {
    Event::audit("document.read")
        .actor(Actor::user(format!("u-{n}")))
        .metadata("n", n)
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("stele-client-{name}-{}", uuid::Uuid::now_v7()))
}

#[tokio::test(start_paused = true)]
async fn batches_are_cut_at_the_event_count_and_ids_sent_once() {
    let api = FakeApi::accepting();
    let client = builder()
        .max_batch_events(100)
        .build_with(Box::new(api.clone()))
        .unwrap();
    let ids: Vec<String> = (0..250)
        .map(|n| {
            let e = event(n);
            let id = e.id().to_string();
            assert_eq!(client.emit(e), Emitted::Queued);
            id
        })
        .collect();
    client.flush().await.unwrap();
    let seen = api.seen();
    assert_eq!(seen.iter().map(|s| s.ids.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
    let sent: Vec<String> = seen.into_iter().flat_map(|s| s.ids).collect();
    assert_eq!(sent, ids);
    let stats = client.stats();
    assert_eq!((stats.queued, stats.sent, stats.retried), (250, 250, 0));
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_sent_when_it_is_old_enough() {
    let api = FakeApi::accepting();
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    client.emit(event(1));
    for _ in 0..100 {
        if !api.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(api.seen().len(), 1, "sent by age, without a flush");
}

#[tokio::test(start_paused = true)]
async fn retries_resend_the_same_ids_and_honour_retry_after() {
    let api = FakeApi::new(|n, _| match n {
        0 => Ok(answer(503, Some(20), r#"{"error":"unavailable"}"#)),
        1 => Err("connection reset".into()),
        _ => Ok(answer(202, None, "{}")),
    });
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    for n in 0..10 {
        client.emit(event(n));
    }
    let started = tokio::time::Instant::now();
    client.flush().await.unwrap();
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].ids, seen[1].ids);
    assert_eq!(seen[1].ids, seen[2].ids);
    assert!(started.elapsed() >= Duration::from_secs(20), "waited for Retry-After");
    let stats = client.stats();
    assert_eq!((stats.sent, stats.retried), (10, 20));
}

#[tokio::test(start_paused = true)]
async fn a_400_naming_some_events_drops_only_those() {
    let api = FakeApi::new(|n, _| match n {
        0 => Ok(answer(
            400,
            None,
            r#"{"error":"validation_failed","problems":[{"index":2,"path":"events[2].occurred_at","code":"too_old","message":"x"}]}"#,
        )),
        _ => Ok(answer(202, None, "{}")),
    });
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    let ids: Vec<String> = (0..4)
        .map(|n| {
            let e = event(n);
            let id = e.id().to_string();
            client.emit(e);
            id
        })
        .collect();
    client.flush().await.unwrap();
    let seen = api.seen();
    assert_eq!(seen[1].ids, vec![ids[0].clone(), ids[1].clone(), ids[3].clone()]);
    let stats = client.stats();
    assert_eq!((stats.sent, stats.dropped.rejected), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn invalid_events_are_counted_and_never_sent() {
    let api = FakeApi::accepting();
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    client.emit(Event::audit("Bad Action").actor(Actor::user("u")));
    client.emit(Event::audit("no.actor"));
    client.emit(event(1));
    client.flush().await.unwrap();
    assert_eq!(api.seen().iter().map(|s| s.ids.len()).sum::<usize>(), 1);
    let stats = client.stats();
    assert_eq!((stats.queued, stats.sent, stats.dropped.invalid), (3, 1, 2));
}

/// The byte limit is on the whole body: events filling `max_batch_bytes`
/// exactly (one byte each for the commas) used to be sent, and the
/// `{"events":[…]}` around them made the body 12 bytes too large.
#[tokio::test(start_paused = true)]
async fn no_body_is_larger_than_max_batch_bytes() {
    let same = || Event::audit("document.read").actor(Actor::user("u-1")).metadata("n", 1);
    let probe = FakeApi::accepting();
    let client = builder().build_with(Box::new(probe.clone())).unwrap();
    client.emit(same());
    client.flush().await.unwrap();
    // One event: body = event + 1 + wrapper.
    let per_event = probe.seen()[0].bytes - 12;
    let k = (stele_core::limits::MAX_EVENT_BYTES + 16) / per_event + 1;
    let max = k * per_event;
    let api = FakeApi::accepting();
    let client = builder()
        .max_batch_bytes(max)
        .build_with(Box::new(api.clone()))
        .unwrap();
    for _ in 0..2 * k {
        client.emit(same());
    }
    client.flush().await.unwrap();
    let seen = api.seen();
    assert_eq!(seen.iter().map(|s| s.ids.len()).sum::<usize>(), 2 * k);
    for s in &seen {
        assert!(s.bytes <= max, "a body of {} bytes; max_batch_bytes is {max}", s.bytes);
    }
}

#[tokio::test(start_paused = true)]
async fn bodies_are_gzipped_until_the_api_refuses_gzip() {
    let api = FakeApi::new(|_, seen| {
        if seen.gzip {
            Ok(answer(415, None, r#"{"error":"unsupported_media_type"}"#))
        } else {
            Ok(answer(202, None, "{}"))
        }
    });
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    client.emit(event(1));
    client.flush().await.unwrap();
    client.emit(event(2));
    client.flush().await.unwrap();
    let gz: Vec<bool> = api.seen().iter().map(|s| s.gzip).collect();
    assert_eq!(gz, vec![true, false, false]);
    assert_eq!(client.stats().sent, 2);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_api_without_spill_drops_after_the_retries() {
    let api = FakeApi::new(|_, _| Err("connection refused".into()));
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let client = builder().retry(policy).build_with(Box::new(api.clone())).unwrap();
    client.emit(event(1));
    client.flush().await.unwrap();
    assert_eq!(api.seen().len(), 3);
    let stats = client.stats();
    assert_eq!((stats.sent, stats.retried, stats.dropped.retries_exhausted), (0, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn spilled_batches_are_replayed_with_their_ids_when_the_api_returns() {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let api = FakeApi::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Ok(answer(202, None, "{}"))
        } else {
            Err("connection refused".into())
        }
    });
    let path = temp_path("replay");
    let client = builder()
        .retry(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
        .spill(SpillConfig::new(&path))
        .replay_interval(Duration::from_secs(5))
        .build_with(Box::new(api.clone()))
        .unwrap();
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let e = event(n);
            let id = e.id().to_string();
            client.emit(e);
            id
        })
        .collect();
    client.flush().await.unwrap();
    // Down: the next batch goes straight to the file, with no attempt.
    let attempts_when_down = api.seen().len();
    client.emit(event(9));
    client.flush().await.unwrap();
    assert_eq!(api.seen().len(), attempts_when_down);
    assert_eq!(client.stats().spilled, 4);
    assert!(path.exists());

    up.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        if client.stats().replayed == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stats = client.stats();
    assert_eq!((stats.sent, stats.replayed, stats.dropped.total()), (4, 4, 0));
    let delivered: Vec<String> = api.seen().into_iter().rev().take(2).rev().flat_map(|s| s.ids).collect();
    assert_eq!(&delivered[..3], &ids[..], "the same ids, oldest batch first");
    assert!(!path.exists(), "an emptied spill file is removed");
}

#[tokio::test(start_paused = true)]
async fn a_spill_file_torn_by_a_crash_replays_its_whole_lines_and_counts_the_rest() {
    let path = temp_path("torn");
    // Two whole batches, a garbled line, and an append a crash cut short.
    std::fs::write(
        &path,
        b"1 {\"events\":[{\"event_id\":\"a\"}]}\n2 {\"events\":[{\"event_id\":\"b\"},{\"event_id\":\"c\"}]}\n\
          garbled\n3 {\"events\":[{\"event_id\":\"d\"},{\"ev",
    )
    .unwrap();
    let api = FakeApi::accepting();
    let client = builder()
        .spill(SpillConfig::new(&path))
        .build_with(Box::new(api.clone()))
        .unwrap();
    client.flush().await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.replayed, stats.spill_lines_dropped), (3, 2), "{stats:?}");
    let delivered: Vec<String> = api.seen().into_iter().flat_map(|s| s.ids).collect();
    assert_eq!(delivered, ["a", "b", "c"]);
    assert!(!path.exists(), "an emptied spill file is removed");
    let metric = stats
        .metrics()
        .into_iter()
        .find(|m| m.0 == "stele_client_spill_lines_dropped_total");
    assert_eq!(metric, Some(("stele_client_spill_lines_dropped_total", None, 2)));
}

#[tokio::test(start_paused = true)]
async fn a_full_spill_file_drops_with_its_own_reason() {
    let api = FakeApi::new(|_, _| Err("connection refused".into()));
    let path = temp_path("full");
    let client = builder()
        .retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .spill(SpillConfig::new(&path).max_bytes(100))
        .build_with(Box::new(api.clone()))
        .unwrap();
    client.emit(event(1));
    client.flush().await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.spilled, stats.dropped.spill_full), (0, 1));
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_blocking() {
    // Current-thread runtime: the sender cannot run while this loop does.
    let api = FakeApi::accepting();
    let client = builder().queue_capacity(10).build_with(Box::new(api.clone())).unwrap();
    let results: Vec<Emitted> = (0..25).map(|n| client.emit(event(n))).collect();
    assert_eq!(results.iter().filter(|r| **r == Emitted::Queued).count(), 10);
    assert_eq!(client.stats().queue_len, 10);
    assert_eq!(client.stats().dropped.queue_full, 15);
    client.flush().await.unwrap();
    assert_eq!(client.stats().sent, 10);
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_the_queue_and_later_emits_are_closed() {
    let api = FakeApi::accepting();
    let client = builder()
        .max_batch_age(Duration::from_secs(3600))
        .build_with(Box::new(api.clone()))
        .unwrap();
    for n in 0..7 {
        client.emit(event(n));
    }
    client.shutdown().await.unwrap();
    assert_eq!(client.stats().sent, 7);
    assert_eq!(client.emit(event(8)), Emitted::Dropped(DropReason::Closed));
    assert_eq!(client.flush().await, Err(FlushError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_sends_the_queue() {
    let api = FakeApi::accepting();
    let client = builder()
        .max_batch_age(Duration::from_secs(3600))
        .build_with(Box::new(api.clone()))
        .unwrap();
    let other = client.clone();
    for n in 0..5 {
        client.emit(event(n));
    }
    drop(client);
    assert!(api.seen().is_empty(), "a clone still lives");
    drop(other);
    assert_eq!(api.seen().iter().map(|s| s.ids.len()).sum::<usize>(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_401_refreshes_the_token_then_gives_up() {
    let api = FakeApi::new(|_, seen| {
        if seen.token == "fresh-1" {
            Ok(answer(202, None, "{}"))
        } else {
            Ok(answer(401, None, r#"{"error":"unauthenticated"}"#))
        }
    });
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = calls.clone();
    let provider = RefreshingToken::new(Duration::from_secs(3600), move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(format!("fresh-{n}")) }
    });
    let client = builder()
        .token_provider(provider)
        .build_with(Box::new(api.clone()))
        .unwrap();
    client.emit(event(1));
    client.flush().await.unwrap();
    let tokens: Vec<String> = api.seen().into_iter().map(|s| s.token).collect();
    assert_eq!(tokens, vec!["fresh-0", "fresh-1"]);
    assert_eq!(client.stats().sent, 1);

    let always = FakeApi::new(|_, _| Ok(answer(401, None, "{}")));
    let client = builder().build_with(Box::new(always.clone())).unwrap();
    client.emit(event(2));
    client.flush().await.unwrap();
    assert_eq!(client.stats().dropped.unauthorized, 1);
    assert_eq!(always.seen().len() as u32, RetryPolicy::default().max_attempts);
}

#[tokio::test(start_paused = true)]
async fn emit_sync_returns_the_receipt_or_a_typed_error() {
    let api = FakeApi::new(|n, seen| match n {
        0 => Ok(answer(
            202,
            None,
            &json!({"accepted": [{"event_id": seen.ids[0], "event_hash": "ab"}]}).to_string(),
        )),
        1 => Ok(answer(403, None, r#"{"error":"forbidden"}"#)),
        _ => Ok(answer(503, Some(1), "{}")),
    });
    let client = builder().build_with(Box::new(api.clone())).unwrap();
    let e = event(1);
    let id = e.id();
    let receipt = client.emit_sync(e).await.unwrap();
    assert_eq!((receipt.event_id, receipt.event_hash.as_str()), (id, "ab"));
    assert!(matches!(
        client.emit_sync(event(2)).await,
        Err(EmitError::Rejected { status: 403, .. })
    ));
    assert!(matches!(
        client.emit_sync(event(3)).await,
        Err(EmitError::Unavailable { attempts: 6, .. })
    ));
    assert!(matches!(
        client.emit_sync(Event::audit("x")).await,
        Err(EmitError::Invalid(_))
    ));
    assert_eq!(api.seen().len(), 2 + 6, "the invalid event was never sent");
}

#[tokio::test]
async fn settings_outside_the_api_limits_are_refused() {
    let api = || Box::new(FakeApi::accepting());
    assert!(matches!(
        builder().max_batch_events(501).build_with(api()),
        Err(BuildError::Setting { .. })
    ));
    assert!(matches!(
        builder().max_batch_bytes(6 << 20).build_with(api()),
        Err(BuildError::Setting { .. })
    ));
    assert!(matches!(
        Client::builder("http://x").build_with(api()),
        Err(BuildError::NoToken)
    ));
    assert!(matches!(
        Client::builder("ftp://x").token("t").build(),
        Err(BuildError::Endpoint { .. })
    ));
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        builder().build_with(Box::new(FakeApi::accepting())),
        Err(BuildError::NoRuntime)
    ));
}
