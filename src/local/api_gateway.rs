//! A local stand-in for API Gateway (HTTP API, payload v2, JWT authorizer): a
//! plain-HTTP front for the ingest handler (and the query handler's routes) on loopback, for `stele dev`, the
//! contract tests and the benchmarks. Its sibling [`super::esm`] stands in for
//! the event source mapping on the other side of the stream.
//!
//! Each HTTP request is turned into the same payload v2 JSON that API Gateway
//! sends to Lambda and parsed by `lambda_http`, so the handler sees exactly what
//! it sees in AWS. The JWT authorizer is played by a token → tenant map: a known
//! `Authorization: Bearer <token>` puts the tenant into the authorizer claims;
//! no or an unknown token leaves the authorizer context out, as an HTTP API
//! route without authorization would (the handler answers `401`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use stele_ingest::lambda_http;
use stele_ingest::{EventSink, Ingest, QuotaGate};
use stele_query::Query;

use super::viewer::Viewer;

/// Why the stand-in could not build a request or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the API Gateway request: {0}")]
    Request(String),
    #[error("accept failed: {0}")]
    Accept(std::io::Error),
}

/// API Gateway's own payload limit (10 MB); larger bodies never reach Lambda.
pub const MAX_GATEWAY_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Bearer token → tenant, playing the JWT authorizer.
pub type Tenants = HashMap<String, String>;

/// Build the `lambda_http` request API Gateway HTTP API (payload v2) would hand
/// to the function. `tenant` becomes the claim `tenant_claim` of a JWT authorizer.
pub fn api_gateway_request(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    tenant_claim: &str,
    tenant: Option<&str>,
) -> Result<Request, Error> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    // API Gateway joins repeated headers with commas and lower-cases the names.
    let mut header_map: Map<String, Value> = Map::new();
    for name in headers.keys() {
        let joined: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        header_map.insert(name.as_str().to_owned(), Value::String(joined.join(",")));
    }
    let now = chrono::Utc::now();
    let mut context = json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": method.as_str(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": header_map.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    if let (Some(tenant), Value::Object(ctx)) = (tenant, &mut context) {
        ctx.insert(
            "authorizer".into(),
            json!({ "jwt": { "claims": { tenant_claim: tenant }, "scopes": null } }),
        );
    }
    let payload = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": context,
        // API Gateway base64-encodes bodies it does not take for text; always
        // doing so keeps any byte sequence intact.
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true,
    });
    lambda_http::request::from_str(&payload.to_string()).map_err(|e| Error::Request(e.to_string()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn plain(status: StatusCode, error: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    let body = json!({ "error": error, "message": message }).to_string();
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `400` in the handler's problem shape, for requests the gateway cannot pass on.
fn unreadable(message: &str) -> hyper::Response<Full<Bytes>> {
    let body = json!({
        "error": "invalid_body",
        "message": message,
        "problems": [{ "path": "", "code": "invalid_json", "message": message }],
    });
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(
        "content-type",
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn to_hyper(resp: Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(s) => Bytes::from(s),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// Whether the HTTP API routes the request to the query function: `GET /v1/events`,
/// `/v1/log/…`, `/v1/events/{event_id}/…` and `/v1/exports…` (ingest has `POST /v1/events`
/// and `/v1/health`).
pub fn is_query_route(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["v1", "events"] => method == Method::GET || method == Method::HEAD,
        ["v1", "log", ..] | ["v1", "events", _, ..] | ["v1", "exports", ..] => true,
        _ => false,
    }
}

/// The viewer's file for a `GET`/`HEAD` of one of its paths (never an API path).
fn viewer_file(viewer: &Viewer, method: &Method, path: &str) -> Option<hyper::Response<Full<Bytes>>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let asset = viewer.asset(path)?;
    let mut resp = hyper::Response::new(Full::new(asset.body));
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        lambda_http::http::HeaderValue::from_static(asset.content_type),
    );
    // A rebuilt binary serves a new viewer: never a stale cached one.
    headers.insert("cache-control", lambda_http::http::HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        lambda_http::http::HeaderValue::from_static("nosniff"),
    );
    Some(resp)
}

async fn answer<S: EventSink, Q: QuotaGate>(
    req: hyper::Request<Incoming>,
    ingest: &Ingest<S, Q>,
    query: Option<&Query>,
    viewer: Option<&Viewer>,
    tenants: &Tenants,
) -> hyper::Response<Full<Bytes>> {
    if let Some(file) = viewer.and_then(|v| viewer_file(v, req.method(), req.uri().path())) {
        return file;
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_GATEWAY_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is over the API Gateway payload limit",
            )
        }
        Err(_) => return unreadable("the body could not be read"),
    };
    let path_and_query = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let tenant = bearer_token(&parts.headers).and_then(|t| tenants.get(t));
    let query = query.filter(|_| is_query_route(&parts.method, parts.uri.path()));
    let claim = match query {
        Some(query) => &query.config().tenant_claim,
        None => &ingest.config().tenant_claim,
    };
    let request = api_gateway_request(
        &parts.method,
        path_and_query,
        &parts.headers,
        &body,
        claim,
        tenant.map(String::as_str),
    );
    match request {
        Ok(request) => to_hyper(match query {
            Some(query) => query.handle(request).await,
            None => ingest.handle(request).await,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "local gateway could not build the request");
            unreadable("the request could not be represented as an API Gateway event")
        }
    }
}

/// Serve the handler on `listener` until `shutdown` completes. Each connection
/// runs on its own task; errors of one connection are logged and do not stop
/// the server.
pub async fn serve<S: EventSink + 'static, Q: QuotaGate + 'static>(
    listener: TcpListener,
    ingest: Arc<Ingest<S, Q>>,
    tenants: Arc<Tenants>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve_with_query(listener, ingest, None, None, tenants, shutdown).await
}

/// [`serve`], with the query function's routes ([`is_query_route`]) going to
/// `query` (when given) as the HTTP API routes them in AWS, and the web viewer's
/// files (when given) at `/`.
pub async fn serve_with_query<S: EventSink + 'static, Q: QuotaGate + 'static>(
    listener: TcpListener,
    ingest: Arc<Ingest<S, Q>>,
    query: Option<Arc<Query>>,
    viewer: Option<Arc<Viewer>>,
    tenants: Arc<Tenants>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted.map_err(Error::Accept)?,
        };
        let ingest = ingest.clone();
        let query = query.clone();
        let viewer = viewer.clone();
        let tenants = tenants.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ingest = ingest.clone();
                let query = query.clone();
                let viewer = viewer.clone();
                let tenants = tenants.clone();
                async move { Ok::<_, Infallible>(answer(req, &ingest, query.as_deref(), viewer.as_deref(), &tenants).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;
    use lambda_http::RequestExt;

    #[test]
    fn the_request_carries_the_tenant_as_a_jwt_claim() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let req = api_gateway_request(
            &Method::POST,
            "/v1/events?x=1",
            &headers,
            b"{\xff}",
            "org",
            Some("acme"),
        )
        .unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), "/v1/events");
        assert_eq!(req.body().as_ref(), b"{\xff}");
        let auth = req.request_context_ref().unwrap().authorizer().unwrap();
        assert_eq!(auth.jwt.as_ref().unwrap().claims["org"], "acme");
    }

    #[test]
    fn the_query_routes_go_to_the_query_function() {
        let get = Method::GET;
        assert!(is_query_route(
            &get,
            "/v1/events/0190a4b2-0000-7000-8000-000000000000/proof"
        ));
        assert!(is_query_route(&get, "/v1/log/checkpoint"));
        assert!(is_query_route(&get, "/v1/log/consistency"));
        assert!(is_query_route(&get, "/v1/events"));
        assert!(is_query_route(&get, "/v1/events/"));
        assert!(!is_query_route(&Method::POST, "/v1/events"));
        assert!(is_query_route(&Method::POST, "/v1/exports"));
        assert!(is_query_route(&get, "/v1/exports/0190a4b2-0000-7000-8000-000000000000"));
        assert!(!is_query_route(&get, "/v1/health"));
    }

    #[test]
    fn the_viewer_is_served_to_reads_of_its_paths_only() {
        let viewer = Viewer::new(None, "stele.dev/local");
        let page = viewer_file(&viewer, &Method::GET, "/").expect("the page");
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert!(viewer_file(&viewer, &Method::HEAD, "/app.js").is_some());
        // Writes and the API's paths go on to the handlers.
        assert!(viewer_file(&viewer, &Method::POST, "/").is_none());
        assert!(viewer_file(&viewer, &Method::GET, "/v1/events").is_none());
        assert!(viewer_file(&viewer, &Method::GET, "/v1/health").is_none());
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("bearer  tok "));
        assert_eq!(bearer_token(&headers), Some("tok"));
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }
}
