//! The client handle and its builder.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::auth::{StaticToken, TokenProvider};
use crate::error::{BuildError, EmitError, FlushError, QueryError};
use crate::event::{json_with_source, validate_json, Event, Source};
use crate::proof::{ConsistencyProof, EventProof};
use crate::retry::RetryPolicy;
use crate::send::{Attempt, Shared};
use crate::spill::SpillConfig;
use crate::stats::{Counters, DropReason, Stats};
use crate::transport::{HyperTransport, Transport};
use crate::worker::{Limits, Msg, Worker};

/// What happened to an emitted event right away. Most callers ignore it; the
/// counters ([`Client::stats`]) tell the same story in aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitted {
    /// On the queue; the sender task validates, batches and sends it.
    Queued,
    /// Not queued, for this reason (`QueueFull` or `Closed`).
    Dropped(DropReason),
}

/// The API's receipt for an event sent with [`Client::emit_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub event_id: Uuid,
    /// SHA-256 of the event's canonical form, as stored (hex).
    pub event_hash: String,
}

/// Settings of a [`Client`]; start from [`Client::builder`].
pub struct ClientBuilder {
    endpoint: String,
    tokens: Option<Arc<dyn TokenProvider>>,
    source: Source,
    queue_capacity: usize,
    max_batch_events: usize,
    max_batch_bytes: usize,
    max_batch_age: Duration,
    gzip: bool,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    spill: Option<SpillConfig>,
    replay_interval: Duration,
    flush_timeout: Duration,
    shutdown_timeout: Duration,
}

impl ClientBuilder {
    /// Every request carries this token (`Authorization: Bearer …`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens = Some(Arc::new(StaticToken::new(token)));
        self
    }

    /// Tokens from a provider, e.g. [`crate::RefreshingToken`].
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Arc::new(provider));
        self
    }

    /// The service name put in `source.service` of events that carry no source.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.source = Source::new(service);
        self
    }

    /// The whole default source (service, version, host, region).
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Events the in-memory queue holds before `emit` drops (default 10 000).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events;
        self
    }

    /// A batch is sent at this many events (default and maximum 500, the API's limit).
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events;
        self
    }

    /// … or at this many bytes of uncompressed JSON body (default and maximum
    /// `stele_core::limits::MAX_REQUEST_BYTES`, the API's limit: 1 000 000).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// … or when its oldest event has waited this long (default 1 s).
    pub fn max_batch_age(mut self, age: Duration) -> Self {
        self.max_batch_age = age;
        self
    }

    /// Compress request bodies with gzip (default on). An API that answers
    /// `415` to a compressed body gets uncompressed ones from then on.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Time for one request, connect to last byte (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Keep batches the API cannot take in this file, and send them when it
    /// answers again (also after a restart). Without one, such batches are
    /// dropped with reason `retries_exhausted`.
    pub fn spill(mut self, spill: SpillConfig) -> Self {
        self.spill = Some(spill);
        self
    }

    /// How soon a down API is tried again (doubling up to 60 s; default 5 s).
    pub fn replay_interval(mut self, interval: Duration) -> Self {
        self.replay_interval = interval;
        self
    }

    /// How long [`Client::flush`] waits (default 30 s).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// How long [`Client::shutdown`], or dropping the last handle, may take to
    /// send what is queued (default 5 s); the rest is spilled or dropped.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Check the settings and start the sender task. Must run inside a Tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        let transport = HyperTransport::new(&self.endpoint, self.request_timeout, self.connect_timeout)?;
        self.build_with(Box::new(transport))
    }

    pub(crate) fn build_with(self, transport: Box<dyn Transport>) -> Result<Client, BuildError> {
        let setting = |setting: &'static str, why: &str| {
            Err(BuildError::Setting {
                setting,
                why: why.to_string(),
            })
        };
        let max_events = stele_core::limits::MAX_EVENTS_PER_REQUEST;
        let max_bytes = stele_core::limits::MAX_REQUEST_BYTES;
        if self.queue_capacity == 0 {
            return setting("queue_capacity", "must be at least 1");
        }
        if !(1..=max_events).contains(&self.max_batch_events) {
            return setting("max_batch_events", &format!("must be 1 to {max_events}"));
        }
        let min_bytes = stele_core::limits::MAX_EVENT_BYTES + 16;
        if !(min_bytes..=max_bytes).contains(&self.max_batch_bytes) {
            return setting("max_batch_bytes", &format!("must be {min_bytes} to {max_bytes}"));
        }
        if self.retry.max_attempts == 0 {
            return setting("retry.max_attempts", "must be at least 1");
        }
        let tokens = self.tokens.ok_or(BuildError::NoToken)?;
        let handle = Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let shared = Arc::new(Shared {
            transport,
            tokens,
            counters: Counters::default(),
            gzip: AtomicBool::new(self.gzip),
            retry: self.retry,
            source: self.source,
        });
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let limits = Limits {
            max_events: self.max_batch_events,
            max_bytes: self.max_batch_bytes,
            max_age: self.max_batch_age,
            replay_interval: self.replay_interval,
            shutdown_timeout: self.shutdown_timeout,
        };
        let worker = Worker::new(shared.clone(), rx, limits, self.spill, done_tx);
        handle.spawn(worker.run());
        Ok(Client {
            inner: Arc::new(Inner {
                tx: Some(tx),
                shared,
                capacity: self.queue_capacity,
                flush_timeout: self.flush_timeout,
                shutdown_timeout: self.shutdown_timeout,
                done: Mutex::new(done_rx),
                flavor: handle.runtime_flavor(),
            }),
        })
    }
}

/// A handle to the sender; cheap to clone and share between tasks.
///
/// [`Client::emit`] never blocks and never fails: the event goes on a bounded
/// queue and a background task validates, batches, compresses and sends it,
/// retrying with jittered backoff (honouring `Retry-After`) and, when the API
/// stays unreachable, writing it to the spill file to be sent later.
///
/// Call [`Client::shutdown`] before the process exits. Dropping the last handle
/// also sends what is queued: in a multi-threaded runtime the drop waits up to
/// the shutdown timeout; in a current-thread runtime it cannot wait (the sender
/// needs that thread) and the queue drains only while the runtime keeps running.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    capacity: usize,
    flush_timeout: Duration,
    shutdown_timeout: Duration,
    done: Mutex<std::sync::mpsc::Receiver<()>>,
    flavor: RuntimeFlavor,
}

impl Client {
    /// Settings for a client of the API at `endpoint` (`https://api.example.com`,
    /// optionally with a stage path; `/v1/events` is appended).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        let service = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown".into());
        ClientBuilder {
            endpoint: endpoint.into(),
            tokens: None,
            source: Source::new(service),
            queue_capacity: 10_000,
            max_batch_events: stele_core::limits::MAX_EVENTS_PER_REQUEST,
            max_batch_bytes: stele_core::limits::MAX_REQUEST_BYTES,
            max_batch_age: Duration::from_secs(1),
            gzip: true,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry: RetryPolicy::default(),
            spill: None,
            replay_interval: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Queue an event to be sent. Never blocks, never fails: a full queue or a
    /// shut-down client drops the event and counts why.
    pub fn emit(&self, event: Event) -> Emitted {
        let counters = &self.inner.shared.counters;
        let Some(tx) = self.inner.tx.as_ref() else {
            counters.drop_events(DropReason::Closed, 1);
            return Emitted::Dropped(DropReason::Closed);
        };
        match tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {
                Counters::add(&counters.queued, 1);
                Emitted::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                counters.drop_events(DropReason::QueueFull, 1);
                Emitted::Dropped(DropReason::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                counters.drop_events(DropReason::Closed, 1);
                Emitted::Dropped(DropReason::Closed)
            }
        }
    }

    /// Send one event now, past the queue, and wait for the API's `202`.
    /// Retries like the background sender; never spills.
    pub async fn emit_sync(&self, event: Event) -> Result<Receipt, EmitError> {
        let shared = &self.inner.shared;
        let value = json_with_source(&event, &shared.source);
        validate_json(&value).map_err(EmitError::Invalid)?;
        let body = bytes::Bytes::from(json!({ "events": [value] }).to_string());
        let max = shared.retry.max_attempts;
        let mut attempts = 0u32;
        let mut last = String::new();
        // One extra pass for a `415` that turns gzip off.
        for _ in 0..=max {
            if attempts == max {
                break;
            }
            attempts += 1;
            match shared.attempt(&body).await {
                Attempt::Accepted(answer) => return receipt(&answer, event.id()),
                Attempt::GzipRefused => {
                    shared.disable_gzip();
                    attempts -= 1;
                }
                Attempt::Rejected { status, body } => {
                    return Err(EmitError::Rejected {
                        status,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    })
                }
                Attempt::Unauthorized(why) if attempts == max => return Err(EmitError::Unauthorized(why)),
                Attempt::Unauthorized(why) => {
                    last = why;
                    tokio::time::sleep(shared.retry.backoff(attempts, None)).await;
                }
                Attempt::Retry { why, retry_after } => {
                    last = why;
                    if attempts < max {
                        tokio::time::sleep(shared.retry.backoff(attempts, retry_after)).await;
                    }
                }
            }
        }
        Err(EmitError::Unavailable { attempts, last })
    }

    /// `GET /v1/events/{event_id}/proof`: the event's inclusion proof against the
    /// newest signed checkpoint that covers it. Check it offline with
    /// [`crate::verify_event_proof`]. One attempt; a `409` is [`QueryError::NotYet`].
    pub async fn proof(&self, event_id: Uuid) -> Result<EventProof, QueryError> {
        self.query(format!("/v1/events/{event_id}/proof")).await
    }

    /// `GET /v1/log/consistency?from=N[&to=M]`: a consistency proof between two of
    /// the tenant's signed checkpoints (`to` omitted: the latest). Check it with
    /// [`crate::verify_consistency_proof`].
    pub async fn consistency(&self, from: u64, to: Option<u64>) -> Result<ConsistencyProof, QueryError> {
        let to = to.map(|to| format!("&to={to}")).unwrap_or_default();
        self.query(format!("/v1/log/consistency?from={from}{to}")).await
    }

    /// `GET /v1/events?{query}`: one page of the tenant's events (`query`: the query
    /// string, values already percent-encoded; the token needs the read scope). Pass
    /// the page's `next_cursor` as `cursor` for the next one.
    pub async fn search_page(&self, query: &str) -> Result<EventPage, QueryError> {
        self.query(format!("/v1/events?{query}")).await
    }

    /// `POST /v1/exports?{query}`: starts an asynchronous export of any size (`query`:
    /// the parameters of `GET /v1/events/export`, values percent-encoded). Poll it with
    /// [`Client::export_status`] until it is [`ExportJob::is_finished`].
    pub async fn start_export(&self, query: &str) -> Result<ExportJob, QueryError> {
        self.request(true, format!("/v1/exports?{query}")).await
    }

    /// `GET /v1/exports/{export_id}`: the export's status; once `succeeded`, `url` is a
    /// fresh presigned URL of the file.
    pub async fn export_status(&self, export_id: Uuid) -> Result<ExportJob, QueryError> {
        self.query(format!("/v1/exports/{export_id}")).await
    }

    async fn query<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T, QueryError> {
        self.request(false, path).await
    }

    /// A read (`GET`), or with `post` a bodiless `POST`; `200` and `202` carry the answer.
    async fn request<T: serde::de::DeserializeOwned>(&self, post: bool, path: String) -> Result<T, QueryError> {
        let shared = &self.inner.shared;
        let token = shared
            .tokens
            .token()
            .await
            .map_err(|e| QueryError::Unavailable(e.to_string()))?;
        let answer = match post {
            true => shared.transport.post_empty(path, token).await,
            false => shared.transport.get(path, token).await,
        }
        .map_err(QueryError::Unavailable)?;
        let message = || {
            serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).chars().take(500).collect())
        };
        match answer.status {
            200 | 202 => serde_json::from_slice(&answer.body).map_err(|e| QueryError::Protocol(e.to_string())),
            409 | 425 => Err(QueryError::NotYet {
                retry_after: answer.retry_after,
                message: message(),
            }),
            404 => Err(QueryError::NotFound(message())),
            status @ (401 | 403) => {
                if status == 401 {
                    shared.tokens.invalidate();
                }
                Err(QueryError::Unauthorized {
                    status,
                    message: message(),
                })
            }
            status => Err(QueryError::Rejected {
                status,
                message: message(),
            }),
        }
    }

    /// Send everything emitted before this call (and replay the spill file if
    /// the API is up); returns once done, or after the flush timeout. Events
    /// the API could not take are then in the spill file (see [`Stats::spilled`]).
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.ask(Msg::Flush, self.inner.flush_timeout).await
    }

    /// Stop taking events and send what is queued within the shutdown timeout.
    /// Later `emit` calls drop with reason `closed`.
    pub async fn shutdown(&self) -> Result<(), FlushError> {
        self.ask(Msg::Shutdown, self.inner.shutdown_timeout + Duration::from_secs(1))
            .await
    }

    async fn ask(&self, msg: fn(oneshot::Sender<()>) -> Msg, timeout: Duration) -> Result<(), FlushError> {
        let tx = self.inner.tx.as_ref().ok_or(FlushError::Closed)?;
        let (done_tx, done_rx) = oneshot::channel();
        let asked = async {
            tx.send(msg(done_tx)).await.map_err(|_| FlushError::Closed)?;
            done_rx.await.map_err(|_| FlushError::Closed)
        };
        tokio::time::timeout(timeout, asked)
            .await
            .map_err(|_| FlushError::Timeout(timeout))?
    }

    /// Whether request bodies go gzip-compressed: the setting, until the API
    /// answered `415` to a compressed body (an ingest without gzip support).
    pub fn compressing(&self) -> bool {
        self.inner.shared.gzip.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let queue_len = self
            .inner
            .tx
            .as_ref()
            .map(|tx| self.inner.capacity.saturating_sub(tx.capacity()))
            .unwrap_or(0);
        self.inner.shared.counters.snapshot(queue_len)
    }
}

fn receipt(answer: &[u8], id: Uuid) -> Result<Receipt, EmitError> {
    let value: Value =
        serde_json::from_slice(answer).map_err(|e| EmitError::Protocol(format!("the 202 body is not JSON: {e}")))?;
    let first = value
        .get("accepted")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or_else(|| EmitError::Protocol("the 202 body has no `accepted` list".into()))?;
    let event_id = first
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| EmitError::Protocol("the receipt has no event_id".into()))?;
    if event_id != id {
        return Err(EmitError::Protocol(format!(
            "the receipt names event {event_id}, not {id}"
        )));
    }
    let event_hash = first
        .get("event_hash")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Receipt { event_id, event_hash })
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue tells the sender to send what is left and stop.
        drop(self.tx.take());
        let wait = self.shutdown_timeout + Duration::from_millis(500);
        let done = &self.done;
        let wait_for_sender = || {
            if let Ok(rx) = done.lock() {
                // `Disconnected` (the task ended) is the normal answer.
                let _ = rx.recv_timeout(wait);
            }
        };
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait_for_sender),
            // The sender needs this very thread; it drains once we return.
            Ok(_) => {}
            Err(_) if self.flavor == RuntimeFlavor::MultiThread => wait_for_sender(),
            Err(_) => {}
        }
    }
}

/// An asynchronous export (`POST /v1/exports`, `GET /v1/exports/{export_id}`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExportJob {
    pub export_id: Uuid,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// `ndjson` or `csv`.
    pub format: String,
    pub filename: String,
    pub attempts: u32,
    /// Events in the file (`succeeded`).
    pub events: Option<u64>,
    pub bytes: Option<u64>,
    /// A presigned URL of the file (`succeeded`), valid until `expires_at`.
    pub url: Option<String>,
    pub expires_at: Option<String>,
    /// Why it failed, or why its last attempt did.
    pub error: Option<String>,
}

impl ExportJob {
    pub fn is_finished(&self) -> bool {
        self.status == "succeeded" || self.status == "failed"
    }
}

/// One page of `GET /v1/events`: events as stored (with `event_hash` and
/// `leaf_index`), and the next page's cursor.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EventPage {
    pub events: Vec<Value>,
    pub next_cursor: Option<String>,
}
