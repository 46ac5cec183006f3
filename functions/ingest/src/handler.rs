//! The HTTP handler: route, tenant from the authorizer, body → events →
//! validate → seal → put → answer. All-or-nothing per request at the API: one
//! bad event refuses the whole request and nothing is sent.

use std::collections::HashSet;

use chrono::Utc;
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use stele_core::{
    event::timestamp, event_id_from_idempotency_key, validate_event, Code, Context, Problem, SealedEvent,
};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::request::{self, BodyError};
use crate::sink::{put_with_retry, EventSink, PutResult, Record, RetryPolicy};

/// Longest tenant id accepted from an authorizer: with a `#<n>` suffix it stays
/// within Kinesis' 256-character partition key.
pub const MAX_TENANT_CHARS: usize = 200;
/// Longest `Idempotency-Key` header accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The ingest function: configuration plus a sink, shared by every request.
#[derive(Debug)]
pub struct Ingest<S> {
    config: IngestConfig,
    policy: RetryPolicy,
    sink: S,
}

enum Route {
    Events,
    Health,
    NotFound,
    MethodNotAllowed(&'static str),
}

/// `/v1/events` or `/<stage>/v1/events` (API Gateway keeps a named stage in the path).
fn route(method: &Method, path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let tail = match segments.as_slice() {
        ["v1", rest] => *rest,
        [_stage, "v1", rest] => *rest,
        _ => return Route::NotFound,
    };
    match (tail, method) {
        ("events", &Method::POST) => Route::Events,
        ("events", _) => Route::MethodNotAllowed("POST"),
        ("health", &Method::GET) | ("health", &Method::HEAD) => Route::Health,
        ("health", _) => Route::MethodNotAllowed("GET, HEAD"),
        _ => Route::NotFound,
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(status: StatusCode, error: &str, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": error, "message": message.into() }))
}

fn problems_response(status: StatusCode, error: &str, problems: &[Problem]) -> Response<Body> {
    let events: HashSet<Option<usize>> = problems.iter().map(|p| p.index).collect();
    let message = format!(
        "{} problem(s) in {} event(s); nothing was accepted",
        problems.len(),
        events.len()
    );
    let listed = &problems[..problems.len().min(stele_core::limits::MAX_PROBLEMS_LISTED)];
    json_response(
        status,
        &json!({
            "error": error,
            "message": message,
            "problems": listed,
            "problems_total": problems.len(),
        }),
    )
}

/// Why a request carries no usable tenant.
enum TenantError {
    Missing,
    Unusable(String),
}

/// The tenant from a JWT authorizer claim, or from a Lambda authorizer's context
/// under the same name. Nothing in the request body is consulted.
fn tenant_of(req: &Request, claim: &str) -> Result<String, TenantError> {
    let authorizer = req
        .request_context_ref()
        .and_then(|ctx| ctx.authorizer())
        .ok_or(TenantError::Missing)?;
    let from_jwt = authorizer.jwt.as_ref().and_then(|jwt| jwt.claims.get(claim)).cloned();
    let from_lambda = || match authorizer.fields.get(claim) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let tenant = from_jwt.or_else(from_lambda).ok_or(TenantError::Missing)?;
    if tenant.is_empty() {
        return Err(TenantError::Missing);
    }
    if tenant.chars().count() > MAX_TENANT_CHARS || tenant.chars().any(char::is_control) {
        return Err(TenantError::Unusable(format!(
            "the tenant claim `{claim}` is not a usable tenant id (1 to {MAX_TENANT_CHARS} characters, no control characters)"
        )));
    }
    Ok(tenant)
}

impl<S: EventSink> Ingest<S> {
    pub fn new(config: IngestConfig, sink: S) -> Self {
        let policy = RetryPolicy::with_deadline(config.put_deadline);
        Self { config, policy, sink }
    }

    /// Replace the retry policy (tests use short backoffs).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Answer one request. Never fails: every outcome is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let resp = match route(req.method(), req.uri().path()) {
            Route::Health => json_response(StatusCode::OK, &json!({ "status": "ok" })),
            Route::NotFound => error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource; see POST /v1/events",
            ),
            Route::MethodNotAllowed(allow) => {
                let mut resp = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("use {allow}"),
                );
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                resp
            }
            Route::Events => self.post_events(&req).await,
        };
        tracing::info!(
            method = %req.method(),
            path = req.uri().path(),
            status = resp.status().as_u16(),
            "request answered"
        );
        resp
    }

    async fn post_events(&self, req: &Request) -> Response<Body> {
        let tenant = match tenant_of(req, &self.config.tenant_claim) {
            Ok(t) => t,
            Err(TenantError::Missing) => {
                let mut resp = error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    format!(
                        "no tenant in the authorizer context (claim `{}`); send a valid bearer token",
                        self.config.tenant_claim
                    ),
                );
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return resp;
            }
            Err(TenantError::Unusable(msg)) => return error_response(StatusCode::FORBIDDEN, "forbidden", msg),
        };
        let events = match request::check_media_type(req.headers())
            .and_then(|()| request::decode_body(req.headers(), req.body().as_ref(), self.config.max_request_bytes))
            .and_then(|body| request::parse_events(&body, self.config.max_request_bytes, self.config.max_events))
        {
            Ok(events) => events,
            Err(BodyError::UnsupportedMediaType(msg)) => {
                return error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", msg)
            }
            Err(BodyError::TooLarge(msg)) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg),
            Err(BodyError::Invalid(problems)) => {
                return problems_response(StatusCode::BAD_REQUEST, "invalid_body", &problems)
            }
        };

        let key = match idempotency_key(req) {
            Ok(key) => key,
            Err(problem) => return problems_response(StatusCode::BAD_REQUEST, "invalid_body", &[problem]),
        };
        let now = Utc::now();
        let place = |p: Problem, i: usize| if events.batch { p.in_batch(i) } else { p };
        let mut problems = Vec::new();
        let mut accepted = Vec::with_capacity(events.values.len());
        let mut seen_ids = HashSet::with_capacity(events.values.len());
        for (i, value) in events.values.iter().enumerate() {
            let id_if_missing = key.map(|k| {
                if events.batch {
                    event_id_from_idempotency_key(&tenant, &format!("{k}#{i}"))
                } else {
                    event_id_from_idempotency_key(&tenant, k)
                }
            });
            let ctx = Context {
                tenant_id: &tenant,
                now,
                window: self.config.window,
                id_if_missing,
            };
            match validate_event(value, &ctx) {
                Ok(event) if !seen_ids.insert(event.event_id) => problems.push(place(
                    Problem::new(
                        "event_id",
                        Code::InvalidValue,
                        "another event in this batch has the same event_id",
                    ),
                    i,
                )),
                Ok(event) => accepted.push(event),
                Err(found) => problems.extend(found.into_iter().map(|p| place(p, i))),
            }
        }
        if !problems.is_empty() {
            let cross_tenant = problems.iter().any(|p| p.code == Code::TenantMismatch);
            let (status, error) = if cross_tenant {
                (StatusCode::FORBIDDEN, "tenant_mismatch")
            } else {
                (StatusCode::BAD_REQUEST, "validation_failed")
            };
            tracing::info!(%tenant, problems = problems.len(), "request refused");
            return problems_response(status, error, &problems);
        }

        let sealed: Vec<SealedEvent> = accepted.into_iter().map(|e| e.seal()).collect();
        let records: Vec<Record> = sealed
            .iter()
            .map(|s| Record {
                partition_key: self.partition_key(&tenant, s.event.event_id),
                data: bytes::Bytes::from(s.record.clone()),
            })
            .collect();
        let delivery = put_with_retry(&self.sink, &records, &self.policy).await;
        tracing::info!(
            %tenant,
            events = records.len(),
            attempts = delivery.attempts,
            stored = delivery.results.iter().filter(|r| r.is_stored()).count(),
            "events put"
        );
        if delivery.all_stored() {
            let accepted: Vec<Value> = sealed
                .iter()
                .map(|s| json!({ "event_id": s.event.event_id, "event_hash": s.hash.to_hex() }))
                .collect();
            return json_response(
                StatusCode::ACCEPTED,
                &json!({ "received_at": timestamp::format(&stele_core::event::truncate_to_micros(now)), "accepted": accepted }),
            );
        }
        self.unavailable(&sealed, &delivery.results)
    }

    /// `503`: some records are not confirmed on the stream. Those that are will be
    /// deduplicated by event id when the client sends the request again with the
    /// ids listed here.
    fn unavailable(&self, sealed: &[SealedEvent], results: &[PutResult]) -> Response<Body> {
        let not_accepted: Vec<Value> = sealed
            .iter()
            .zip(results)
            .enumerate()
            .filter_map(|(i, (s, r))| match r {
                PutResult::Stored { .. } => None,
                PutResult::Failed { code, .. } => {
                    Some(json!({ "index": i, "event_id": s.event.event_id, "reason": code }))
                }
            })
            .collect();
        let event_ids: Vec<Uuid> = sealed.iter().map(|s| s.event.event_id).collect();
        let message = format!(
            "{} of {} event(s) could not be written to the stream; send the request again after Retry-After with the same event_id values (events already written are deduplicated)",
            not_accepted.len(),
            sealed.len()
        );
        tracing::warn!(not_accepted = not_accepted.len(), of = sealed.len(), "answering 503");
        let mut resp = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "error": "unavailable",
                "message": message,
                "retry_after_seconds": self.config.retry_after_secs,
                "event_ids": event_ids,
                "not_accepted": not_accepted,
            }),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(self.config.retry_after_secs));
        resp
    }

    /// The tenant, or `tenant#<n>` for a tenant spread over several keys; `n`
    /// comes from the event id so a resent event keeps its key.
    pub fn partition_key(&self, tenant: &str, event_id: Uuid) -> String {
        let spread = self.config.hot_tenants.spread(tenant);
        if spread <= 1 {
            tenant.to_owned()
        } else {
            format!("{tenant}#{}", event_id.as_u128() % u128::from(spread))
        }
    }
}

fn idempotency_key(req: &Request) -> Result<Option<&str>, Problem> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        Problem::new(
            "",
            Code::InvalidFormat,
            format!("the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
        )
    };
    let key = raw.to_str().map_err(|_| bad())?.trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_CHARS
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(bad());
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::api_gateway_request;
    use crate::sink::{FaultySink, MemorySink};
    use lambda_http::http::HeaderMap;
    use std::time::Duration;

    fn ingest() -> Ingest<MemorySink> {
        Ingest::new(IngestConfig::new("s"), MemorySink::new())
    }

    fn event() -> Value {
        json!({
            "occurred_at": timestamp::format(&Utc::now()),
            "category": "audit",
            "action": "user.login",
            "outcome": "success",
            "actor": { "id": "u1", "type": "user" },
            "source": { "service": "auth" },
        })
    }

    fn post(body: &Value, tenant: Option<&str>, extra: &[(&'static str, &'static str)]) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (k, v) in extra {
            headers.insert(*k, HeaderValue::from_static(v));
        }
        let body = body.to_string();
        api_gateway_request(
            &Method::POST,
            "/v1/events",
            &headers,
            body.as_bytes(),
            "tenant_id",
            tenant,
        )
        .unwrap()
    }

    fn body(resp: &Response<Body>) -> Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap()
    }

    #[tokio::test]
    async fn a_single_event_is_accepted_with_its_id_and_hash() {
        let ingest = ingest();
        let resp = ingest.handle(post(&event(), Some("acme"), &[])).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let b = body(&resp);
        let stored = ingest.sink().records();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].partition_key, "acme");
        let opened = SealedEvent::open(&stored[0].data).unwrap();
        assert_eq!(b["accepted"][0]["event_hash"], opened.hash.to_hex());
        assert_eq!(b["accepted"][0]["event_id"], opened.event.event_id.to_string());
        assert_eq!(opened.event.tenant_id, "acme");
    }

    #[tokio::test]
    async fn no_tenant_is_401_and_a_foreign_body_tenant_is_403() {
        let ingest = ingest();
        let resp = ingest.handle(post(&event(), None, &[])).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let mut foreign = event();
        foreign["tenant_id"] = json!("globex");
        let resp = ingest.handle(post(&foreign, Some("acme"), &[])).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(&resp)["problems"][0]["code"], "tenant_mismatch");
        assert!(ingest.sink().records().is_empty());
    }

    #[tokio::test]
    async fn one_bad_event_refuses_the_whole_batch_with_every_problem() {
        let ingest = ingest();
        let mut bad = event();
        bad["actor"] = json!({ "type": "robot" });
        let resp = ingest
            .handle(post(&json!({ "events": [event(), bad, event()] }), Some("acme"), &[]))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let b = body(&resp);
        let paths: Vec<&str> = b["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, vec!["events[1].actor.id", "events[1].actor.type"]);
        assert_eq!(b["problems"][0]["index"], 1);
        assert!(ingest.sink().records().is_empty());
    }

    #[tokio::test]
    async fn a_flood_of_problems_is_counted_in_full_but_listed_only_up_to_the_cap() {
        let ingest = ingest();
        // 500 events × 3 problems (two unknown fields and a bad outcome) = 1 500.
        let mut bad = event();
        bad["outcome"] = json!("maybe");
        bad["x1"] = json!(1);
        bad["x2"] = json!(2);
        let events: Vec<Value> = (0..500).map(|_| bad.clone()).collect();
        let resp = ingest
            .handle(post(&json!({ "events": events }), Some("acme"), &[]))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let b = body(&resp);
        assert_eq!(b["problems_total"], 1500);
        let listed = b["problems"].as_array().unwrap();
        assert_eq!(listed.len(), stele_core::limits::MAX_PROBLEMS_LISTED);
        // Body order: three problems per event, so the 1 000th belongs to event 333.
        assert_eq!(listed[0]["index"], 0);
        assert_eq!(listed[999]["index"], 333);
        assert!(b["message"]
            .as_str()
            .unwrap()
            .starts_with("1500 problem(s) in 500 event(s)"));
        assert!(ingest.sink().records().is_empty());
    }

    #[tokio::test]
    async fn an_idempotency_key_gives_the_same_event_id_each_time() {
        let ingest = ingest();
        let key = [("idempotency-key", "order-42")];
        let a = body(&ingest.handle(post(&event(), Some("acme"), &key)).await);
        let b = body(&ingest.handle(post(&event(), Some("acme"), &key)).await);
        assert_eq!(a["accepted"][0]["event_id"], b["accepted"][0]["event_id"]);
        let expected = event_id_from_idempotency_key("acme", "order-42");
        assert_eq!(a["accepted"][0]["event_id"], expected.to_string());
    }

    #[tokio::test]
    async fn duplicate_event_ids_in_a_batch_are_refused() {
        let ingest = ingest();
        let mut e = event();
        e["event_id"] = json!("0190f0b4-0000-7000-8000-000000000001");
        let resp = ingest
            .handle(post(&json!({ "events": [e.clone(), e] }), Some("acme"), &[]))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(&resp)["problems"][0]["path"], "events[1].event_id");
    }

    #[tokio::test]
    async fn records_that_stay_unstored_make_an_honest_503() {
        let mut stuck = event();
        stuck["event_id"] = json!("0190f0b4-0000-7000-8000-0000000000ff");
        let sink = FaultySink::new(MemorySink::new()).fail("0000000000ff", u32::MAX);
        let mut cfg = IngestConfig::new("s");
        cfg.put_deadline = Duration::from_millis(200);
        let ingest = Ingest::new(cfg, sink);
        let resp = ingest
            .handle(post(&json!({ "events": [event(), stuck] }), Some("acme"), &[]))
            .await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let b = body(&resp);
        assert_eq!(b["not_accepted"].as_array().unwrap().len(), 1);
        assert_eq!(b["not_accepted"][0]["index"], 1);
        assert_eq!(b["not_accepted"][0]["event_id"], "0190f0b4-0000-7000-8000-0000000000ff");
        assert_eq!(ingest.sink().inner().records().len(), 1);
    }

    #[tokio::test]
    async fn wrong_media_type_size_and_route_have_their_statuses() {
        let ingest = ingest();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let req = api_gateway_request(&Method::POST, "/v1/events", &headers, b"{}", "tenant_id", Some("a")).unwrap();
        assert_eq!(ingest.handle(req).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let huge = vec![b' '; 5 * 1024 * 1024 + 1];
        let req = api_gateway_request(&Method::POST, "/v1/events", &headers, &huge, "tenant_id", Some("a")).unwrap();
        assert_eq!(ingest.handle(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let req = api_gateway_request(&Method::GET, "/v1/health", &headers, b"", "tenant_id", None).unwrap();
        assert_eq!(ingest.handle(req).await.status(), StatusCode::OK);
        let req = api_gateway_request(&Method::GET, "/v1/events", &headers, b"", "tenant_id", None).unwrap();
        assert_eq!(ingest.handle(req).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        let req = api_gateway_request(&Method::GET, "/nope", &headers, b"", "tenant_id", None).unwrap();
        assert_eq!(ingest.handle(req).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_hot_tenant_is_spread_by_event_id() {
        let mut cfg = IngestConfig::new("s");
        cfg.hot_tenants = crate::HotTenants::parse("acme=4").unwrap();
        let ingest = Ingest::new(cfg, MemorySink::new());
        let id = Uuid::from_u128(6);
        assert_eq!(ingest.partition_key("acme", id), "acme#2");
        assert_eq!(ingest.partition_key("globex", id), "globex");
    }
}
