//! One `POST /v1/events` over HTTP/1.1 (HTTPS with rustls + aws-lc, or plain
//! HTTP), pooled connections, a per-request timeout. Behind a small trait so
//! the batching and retry logic is unit-tested without a network.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::BuildError;

/// Largest response body read; the API's answers are small JSON documents.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub(crate) struct Post {
    pub body: Bytes,
    pub gzip: bool,
    pub token: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

pub(crate) type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, String>> + Send + 'a>>;

pub(crate) trait Transport: Send + Sync + 'static {
    /// Send one request. `Err` is a failure below HTTP (connect, reset, timeout).
    fn post(&self, post: Post) -> PostFuture<'_>;

    /// `GET <api base><path_and_query>` (the proof routes), with the bearer token.
    fn get(&self, _path_and_query: String, _token: String) -> PostFuture<'_> {
        Box::pin(async { Err("this transport cannot GET".to_string()) })
    }

    /// `POST <api base><path_and_query>` without a body (starting an export).
    fn post_empty(&self, _path_and_query: String, _token: String) -> PostFuture<'_> {
        Box::pin(async { Err("this transport cannot POST there".to_string()) })
    }
}

pub(crate) struct HyperTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    timeout: Duration,
}

impl HyperTransport {
    pub fn new(endpoint: &str, timeout: Duration, connect_timeout: Duration) -> Result<Self, BuildError> {
        let uri = events_uri(endpoint)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| BuildError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self { client, uri, timeout })
    }
}

/// `https://host[:port][/base]` → `…/v1/events` (an endpoint already ending in
/// `/v1/events` is taken as is).
pub(crate) fn events_uri(endpoint: &str) -> Result<Uri, BuildError> {
    let bad = |why: &str| BuildError::Endpoint {
        endpoint: endpoint.to_string(),
        why: why.to_string(),
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/events") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/events")
    };
    let uri: Uri = full
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    Ok(uri)
}

impl HyperTransport {
    /// The API base: the events URI without its `/v1/events`.
    fn base(&self) -> String {
        let events = self.uri.to_string();
        events.strip_suffix("/v1/events").unwrap_or(&events).to_string()
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, String> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

impl HyperTransport {
    /// A bodiless request to `<api base><path_and_query>` with the bearer token.
    async fn bodiless(&self, method: Method, path_and_query: String, token: String) -> Result<Answer, String> {
        let uri: Uri = format!("{}{path_and_query}", self.base())
            .parse()
            .map_err(|e| format!("cannot build the URI: {e}"))?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the bearer token has characters a header cannot carry".to_string())?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(USER_AGENT, concat!("stele-client/", env!("CARGO_PKG_VERSION")))
            .header(AUTHORIZATION, auth)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        self.exchange(request).await
    }
}

impl Transport for HyperTransport {
    fn get(&self, path_and_query: String, token: String) -> PostFuture<'_> {
        Box::pin(self.bodiless(Method::GET, path_and_query, token))
    }

    fn post_empty(&self, path_and_query: String, token: String) -> PostFuture<'_> {
        Box::pin(self.bodiless(Method::POST, path_and_query, token))
    }

    fn post(&self, post: Post) -> PostFuture<'_> {
        Box::pin(async move {
            let mut builder = Request::builder()
                .method(Method::POST)
                .uri(self.uri.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(USER_AGENT, concat!("stele-client/", env!("CARGO_PKG_VERSION")));
            if post.gzip {
                builder = builder.header(CONTENT_ENCODING, "gzip");
            }
            let auth = HeaderValue::from_str(&format!("Bearer {}", post.token))
                .map_err(|_| "the bearer token has characters a header cannot carry".to_string())?;
            let request = builder
                .header(AUTHORIZATION, auth)
                .body(Full::new(post.body))
                .map_err(|e| format!("cannot build the request: {e}"))?;
            self.exchange(request).await
        })
    }
}

/// The error and its causes on one line ("client error (Connect): tcp connect error: Connection refused").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::TimeDelta::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn endpoints_get_the_events_path_once() {
        for (given, want) in [
            ("http://127.0.0.1:8787", "http://127.0.0.1:8787/v1/events"),
            ("https://api.example.com/", "https://api.example.com/v1/events"),
            ("https://api.example.com/prod", "https://api.example.com/prod/v1/events"),
            ("https://api.example.com/v1/events", "https://api.example.com/v1/events"),
        ] {
            assert_eq!(events_uri(given).unwrap().to_string(), want);
        }
        for bad in ["ftp://x", "not a url", "127.0.0.1:8787"] {
            assert!(events_uri(bad).is_err(), "{bad}");
        }
    }
}
