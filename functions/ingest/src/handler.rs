//! The HTTP handler: route, tenant from the authorizer, [`seal::ingest`]
//! (body → sealed records or a refusal), the tenant's quota, put, answer.
//! All-or-nothing per request at the API: one bad event, or a tenant over its
//! quota, refuses the whole request and nothing is sent.

use chrono::Utc;
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use stele_core::http::{error_response, json_response, tenant_of, tenant_refused};
use stele_core::{event::timestamp, EventHash};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::quota::{Limited, NoQuota, QuotaGate, Verdict};
use crate::seal::{self, Refusal};
use crate::sink::{put_with_retry, EventSink, PutResult, Record, RetryPolicy};

/// The ingest function: configuration plus a sink and a quota gate, shared by
/// every request. Without [`Ingest::with_quota`] no quota applies.
#[derive(Debug)]
pub struct Ingest<S, Q = NoQuota> {
    config: IngestConfig,
    policy: RetryPolicy,
    sink: S,
    quota: Q,
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

fn problems_response(refusal: &Refusal) -> Response<Body> {
    let message = format!(
        "{} problem(s) in {} event(s); nothing was accepted",
        refusal.problems_total(),
        refusal.problem_events()
    );
    let problems = refusal.problems();
    let listed = &problems[..problems.len().min(stele_core::limits::MAX_PROBLEMS_LISTED)];
    json_response(
        refusal.status(),
        &json!({
            "error": refusal.error(),
            "message": message,
            "problems": listed,
            "problems_total": refusal.problems_total(),
        }),
    )
}

/// The answer to a tenant over its quota: `429` with `Retry-After` (the end of
/// the tenant's window), or `413` when the request alone holds more events than
/// a window admits (waiting would not help; smaller requests will).
fn over_quota(tenant: &str, events: Option<usize>, limited: &Limited) -> Response<Body> {
    let quota = limited.quota;
    let (rate, burst, limit) = (quota.events_per_sec, quota.burst, quota.limit());
    if limited.request_too_large {
        let events = events.unwrap_or_default();
        tracing::info!(%tenant, events, limit, "request larger than the tenant's quota window");
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request holds {events} events, more than the tenant's quota of {rate} events per second (burst {burst}) admits at once ({limit}); nothing was accepted; send at most {limit} events per request"
            ),
        );
    }
    let secs = limited.retry_after_secs;
    tracing::info!(%tenant, events, retry_after_secs = secs, "tenant over quota; answering 429");
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "error": "quota_exceeded",
            "message": format!(
                "the tenant is over its quota of {rate} events per second (burst {burst}); nothing was accepted; send the request again after Retry-After"
            ),
            "retry_after_seconds": secs,
        }),
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

impl<S: EventSink> Ingest<S> {
    pub fn new(config: IngestConfig, sink: S) -> Self {
        let policy = RetryPolicy::with_deadline(config.put_deadline);
        Self {
            config,
            policy,
            sink,
            quota: NoQuota,
        }
    }
}

impl<S: EventSink, Q: QuotaGate> Ingest<S, Q> {
    /// Count each request's events against its tenant's quota in `quota`.
    pub fn with_quota<G: QuotaGate>(self, quota: G) -> Ingest<S, G> {
        Ingest {
            config: self.config,
            policy: self.policy,
            sink: self.sink,
            quota,
        }
    }

    pub fn quota(&self) -> &Q {
        &self.quota
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
            Err(e) => return tenant_refused(&e),
        };
        let now = Utc::now();
        // A tenant known to be over quota for this window is refused before its
        // body is even parsed.
        if let Some(limited) = self.quota.known_limited(&tenant, now) {
            return over_quota(&tenant, None, &limited);
        }
        let sealed = match seal::ingest(req.headers(), req.body().as_ref(), &tenant, now, &self.config) {
            Ok(sealed) => sealed,
            Err(refusal) => return self.refused(&tenant, &refusal),
        };
        // Charged before anything is put: a refused request leaves nothing on the stream.
        let events = u64::try_from(sealed.len()).unwrap_or(u64::MAX);
        match self.quota.charge(&tenant, events, now).await {
            Verdict::Admitted => {}
            Verdict::Unchecked(reason) => {
                tracing::warn!(%tenant, events, %reason, "quota not checked; request admitted (fail-open)")
            }
            Verdict::Limited(limited) => return over_quota(&tenant, Some(sealed.len()), &limited),
        }
        let (accepted, records): (Vec<(Uuid, EventHash)>, Vec<Record>) =
            sealed.into_iter().map(|s| ((s.event_id, s.hash), s.record)).unzip();
        let delivery = put_with_retry(&self.sink, &records, &self.policy).await;
        tracing::info!(
            %tenant,
            events = records.len(),
            attempts = delivery.attempts,
            stored = delivery.results.iter().filter(|r| r.is_stored()).count(),
            "events put"
        );
        if delivery.all_stored() {
            let accepted: Vec<Value> = accepted
                .iter()
                .map(|(id, hash)| json!({ "event_id": id, "event_hash": hash.to_hex() }))
                .collect();
            return json_response(
                StatusCode::ACCEPTED,
                &json!({ "received_at": timestamp::format(&stele_core::event::truncate_to_micros(now)), "accepted": accepted }),
            );
        }
        self.unavailable(&accepted, &delivery.results)
    }

    /// The answer to a refused request: a message for `415`/`413`, every
    /// problem (listed up to the cap) otherwise.
    fn refused(&self, tenant: &str, refusal: &Refusal) -> Response<Body> {
        match refusal {
            Refusal::UnsupportedMediaType(msg) | Refusal::TooLarge(msg) => {
                error_response(refusal.status(), refusal.error(), msg.as_str())
            }
            Refusal::InvalidBody(_) => problems_response(refusal),
            Refusal::Invalid(_) | Refusal::TenantMismatch(_) => {
                tracing::info!(%tenant, problems = refusal.problems_total(), "request refused");
                problems_response(refusal)
            }
        }
    }

    /// `503`: some records are not confirmed on the stream. Those that are will be
    /// deduplicated by event id when the client sends the request again with the
    /// ids listed here.
    fn unavailable(&self, sealed: &[(Uuid, EventHash)], results: &[PutResult]) -> Response<Body> {
        let not_accepted: Vec<Value> = sealed
            .iter()
            .zip(results)
            .enumerate()
            .filter_map(|(i, ((id, _), r))| match r {
                PutResult::Stored { .. } => None,
                PutResult::Failed { code, .. } => Some(json!({ "index": i, "event_id": id, "reason": code })),
            })
            .collect();
        let event_ids: Vec<Uuid> = sealed.iter().map(|(id, _)| *id).collect();
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

    /// The partition key of `event_id` for `tenant`: see [`crate::HotTenants::partition_key`].
    pub fn partition_key(&self, tenant: &str, event_id: Uuid) -> String {
        self.config.hot_tenants.partition_key(tenant, event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{FaultySink, MemorySink};
    use lambda_http::http::HeaderMap;
    use std::time::Duration;
    use stele_core::{event_id_from_idempotency_key, SealedEvent};

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

    /// A payload v2 request as API Gateway hands it over (the full stand-in,
    /// with a real HTTP front, is `stele::local::api_gateway`).
    fn gateway_request(method: &Method, path: &str, headers: &HeaderMap, body: &[u8], tenant: Option<&str>) -> Request {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
            .collect();
        let mut context = json!({
            "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
            "http": { "method": method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "" },
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "", "timeEpoch": 0,
        });
        if let Some(tenant) = tenant {
            context["authorizer"] = json!({ "jwt": { "claims": { "tenant_id": tenant }, "scopes": null } });
        }
        let payload = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": headers, "requestContext": context,
            "body": String::from_utf8_lossy(body), "isBase64Encoded": false,
        });
        lambda_http::request::from_str(&payload.to_string()).unwrap()
    }

    fn post(body: &Value, tenant: Option<&str>, extra: &[(&'static str, &'static str)]) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (k, v) in extra {
            headers.insert(*k, HeaderValue::from_static(v));
        }
        gateway_request(
            &Method::POST,
            "/v1/events",
            &headers,
            body.to_string().as_bytes(),
            tenant,
        )
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
    async fn a_tenant_outside_the_tenant_id_rule_is_403_and_puts_nothing() {
        let ingest = ingest();
        for tenant in [
            "a#b/../c",
            "acme#1",
            "a/b",
            "a=b",
            "a b",
            "acme\u{200B}",
            "\u{0430}cme",
            "..",
            "-x",
        ] {
            let resp = ingest.handle(post(&event(), Some(tenant), &[])).await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{tenant:?}");
            let b = body(&resp);
            assert_eq!(b["error"], "forbidden");
            let message = b["message"].as_str().unwrap();
            assert!(message.contains(stele_core::TENANT_ID_RULE), "{message}");
        }
        assert!(ingest.sink().records().is_empty());
        let resp = ingest.handle(post(&event(), Some("Acme_Corp.eu-1"), &[])).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
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
        let req = gateway_request(&Method::POST, "/v1/events", &headers, b"{}", Some("a"));
        assert_eq!(ingest.handle(req).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let huge = vec![b' '; stele_core::limits::MAX_REQUEST_BYTES + 1];
        let req = gateway_request(&Method::POST, "/v1/events", &headers, &huge, Some("a"));
        assert_eq!(ingest.handle(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let req = gateway_request(&Method::GET, "/v1/health", &headers, b"", None);
        assert_eq!(ingest.handle(req).await.status(), StatusCode::OK);
        let req = gateway_request(&Method::GET, "/v1/events", &headers, b"", None);
        assert_eq!(ingest.handle(req).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        let req = gateway_request(&Method::GET, "/nope", &headers, b"", None);
        assert_eq!(ingest.handle(req).await.status(), StatusCode::NOT_FOUND);
    }

    /// A valid event padded with spaces to exactly `len` bytes.
    fn padded_event(len: usize) -> Vec<u8> {
        let mut body = event().to_string().into_bytes();
        body.resize(len, b' ');
        body
    }

    #[tokio::test]
    async fn a_body_at_the_limit_is_accepted_and_one_byte_more_is_413() {
        let ingest = ingest();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let limit = stele_core::limits::MAX_REQUEST_BYTES;
        let req = gateway_request(
            &Method::POST,
            "/v1/events",
            &headers,
            &padded_event(limit),
            Some("acme"),
        );
        assert_eq!(ingest.handle(req).await.status(), StatusCode::ACCEPTED);
        let req = gateway_request(
            &Method::POST,
            "/v1/events",
            &headers,
            &padded_event(limit + 1),
            Some("acme"),
        );
        let resp = ingest.handle(req).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body(&resp)["error"], "too_large");
        assert_eq!(ingest.sink().records().len(), 1);
    }

    /// Issue 18: API Gateway puts the body into the Lambda event as a JSON
    /// string (base64 when it takes it for binary). Fully escaped (`\u00XX`
    /// for every byte), a body one byte over the limit, with the largest
    /// request line and headers an HTTP API passes, must still fit Lambda's
    /// payload limit, so that the function answers `413` rather than the
    /// platform a 5xx.
    #[test]
    fn a_fully_escaped_body_just_over_the_limit_fits_the_lambda_payload() {
        use stele_core::limits::{LAMBDA_MAX_PAYLOAD_BYTES, MAX_REQUEST_BYTES};
        let body = String::from_utf8(vec![0x01; MAX_REQUEST_BYTES + 1]).unwrap();
        // 10 240 bytes of request line and headers, all of them escaped six-fold:
        // a user agent (copied into requestContext) and a bearer token whose
        // claim, the tenant, is copied into the authorizer context.
        let filler = "\u{1}".repeat(4000);
        let path = format!("/v1/events/{}", "\u{1}".repeat(1000));
        let payload = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": { "content-type": "application/json", "user-agent": filler, "authorization": filler },
            "requestContext": {
                "accountId": "000000000000", "apiId": "abcdefghij", "domainName": "abcdefghij.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "abcdefghij",
                "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "2001:db8::1", "userAgent": filler },
                "authorizer": { "jwt": { "claims": { "tenant_id": filler, "sub": filler }, "scopes": null } },
                "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": "$default",
                "time": "25/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000_u64,
            },
            "body": body, "isBase64Encoded": false,
        });
        let size = payload.to_string().len();
        assert!(size <= LAMBDA_MAX_PAYLOAD_BYTES, "{size} bytes");
        // The base64 form of the same body is smaller still.
        assert!(4 * (MAX_REQUEST_BYTES + 1).div_ceil(3) < 6 * MAX_REQUEST_BYTES);
    }

    fn limited_ingest(quota: crate::MemoryQuota) -> Ingest<MemorySink, crate::MemoryQuota> {
        Ingest::new(IngestConfig::new("s"), MemorySink::new()).with_quota(quota)
    }

    fn batch(n: usize) -> Value {
        json!({ "events": (0..n).map(|_| event()).collect::<Vec<_>>() })
    }

    /// Issue 18 item 4: a tenant over its quota gets `429` with `Retry-After`
    /// and nothing of the refused request is put; another tenant in the same
    /// window is unaffected; a batch counts its events.
    #[tokio::test]
    async fn a_tenant_over_its_quota_gets_429_and_others_are_unaffected() {
        // 10 events/s with a burst of 30: windows of 3 s admitting 30 events.
        let quota = crate::Quota::new(10, Some(30)).unwrap();
        let ingest = limited_ingest(crate::MemoryQuota::new(quota));
        // Far from a window's end, so that every request falls in one window.
        while quota.window(Utc::now()).retry_after(Utc::now()) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            ingest.handle(post(&batch(25), Some("acme"), &[])).await.status(),
            StatusCode::ACCEPTED
        );
        let resp = ingest.handle(post(&batch(6), Some("acme"), &[])).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let after: u32 = resp.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&after), "Retry-After {after}");
        let b = body(&resp);
        assert_eq!(b["error"], "quota_exceeded");
        assert_eq!(b["retry_after_seconds"], after);
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("10 events per second (burst 30)"),
            "{b}"
        );
        assert_eq!(ingest.sink().records().len(), 25, "the refused batch put nothing");
        // Another tenant is unaffected; acme still fits a smaller request.
        assert_eq!(
            ingest.handle(post(&batch(30), Some("globex"), &[])).await.status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(
            ingest.handle(post(&batch(5), Some("acme"), &[])).await.status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(ingest.sink().records().len(), 60);
    }

    #[tokio::test]
    async fn a_full_window_refuses_without_asking_the_store_and_before_parsing() {
        let quota = crate::Quota::new(5, Some(10)).unwrap();
        let ingest = limited_ingest(crate::MemoryQuota::new(quota));
        while quota.window(Utc::now()).retry_after(Utc::now()) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            ingest.handle(post(&batch(10), Some("acme"), &[])).await.status(),
            StatusCode::ACCEPTED
        );
        let calls = ingest.quota().store_calls();
        // Not even valid JSON: refused for the quota before the body is read.
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let req = gateway_request(&Method::POST, "/v1/events", &headers, b"{not json", Some("acme"));
        assert_eq!(ingest.handle(req).await.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            ingest.quota().store_calls(),
            calls,
            "answered from the in-process cache"
        );
    }

    #[tokio::test]
    async fn a_request_larger_than_a_window_is_413_and_puts_nothing() {
        let ingest = limited_ingest(crate::MemoryQuota::new(crate::Quota::new(5, Some(10)).unwrap()));
        let resp = ingest.handle(post(&batch(11), Some("acme"), &[])).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let b = body(&resp);
        assert_eq!(b["error"], "too_large");
        assert!(
            b["message"].as_str().unwrap().contains("at most 10 events per request"),
            "{b}"
        );
        assert!(ingest.sink().records().is_empty());
    }

    #[tokio::test]
    async fn overrides_raise_lower_or_lift_a_tenants_quota() {
        let small = crate::Quota::new(1, None).unwrap();
        let quota = crate::MemoryQuota::new(crate::Quota::new(100, None).unwrap())
            .with_override("tiny", Some(small))
            .with_override("vip", None);
        let ingest = limited_ingest(quota);
        assert_eq!(
            ingest.handle(post(&batch(2), Some("tiny"), &[])).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ingest.handle(post(&batch(500), Some("vip"), &[])).await.status(),
            StatusCode::ACCEPTED
        );
    }

    /// Fail-open: when the quota store fails, requests are admitted (and logged).
    #[tokio::test]
    async fn a_failing_quota_store_admits_requests() {
        let quota = crate::MemoryQuota::new(crate::Quota::new(1, None).unwrap());
        quota.set_failing(true);
        let ingest = limited_ingest(quota);
        for _ in 0..3 {
            assert_eq!(
                ingest.handle(post(&event(), Some("acme"), &[])).await.status(),
                StatusCode::ACCEPTED
            );
        }
        assert_eq!(ingest.sink().records().len(), 3);
    }

    #[tokio::test]
    async fn invalid_requests_are_not_charged() {
        let quota = crate::Quota::new(1, None).unwrap();
        let ingest = limited_ingest(crate::MemoryQuota::new(quota));
        let mut bad = event();
        bad["outcome"] = json!("maybe");
        for _ in 0..3 {
            assert_eq!(
                ingest.handle(post(&bad, Some("acme"), &[])).await.status(),
                StatusCode::BAD_REQUEST
            );
        }
        assert_eq!(ingest.quota().store_calls(), 0);
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
