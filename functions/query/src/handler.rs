//! The HTTP handler: route, tenant from the authorizer, read the log, answer.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use std::sync::Arc;

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use stele_core::http::{error_response, json_response, tenant_of, tenant_refused};
use stele_store::{PgLog, StoredCheckpoint};
use stele_tlog::{Hash, TlogProof};
use uuid::Uuid;

use crate::config::QueryConfig;
use crate::events::{self, EventSearch, SearchError};
use crate::export::jobs::{self, ExportJob, ExportJobs, ExportStatus, State};
use crate::export::spool::{Delivered, ExportBucket, Spool, SpoolError};
use crate::export::{self, ExportError, ExportRequest};
use stele_archiver::S3Store;

/// The query function: configuration, a database pool and the archive, shared by
/// every request.
pub struct Query {
    config: QueryConfig,
    pool: deadpool_postgres::Pool,
    archive: Option<S3Store>,
    /// Where exports too large for a response are written (the archive bucket).
    exports: Option<ExportBucket>,
    /// Where `POST /v1/exports` hands its jobs (none: asynchronous exports are off).
    jobs: Option<Arc<dyn ExportJobs>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Events,
    Export,
    StartExport,
    ExportStatus(&'a str),
    Proof(&'a str),
    Checkpoint,
    Consistency,
    NotFound,
    /// The resource exists; the `Allow` header lists its methods.
    MethodNotAllowed(&'static str),
}

/// `/v1/...` or `/<stage>/v1/...` (API Gateway keeps a named stage in the path).
fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let tail = match segments.as_slice() {
        ["v1", rest @ ..] => rest,
        [_stage, "v1", rest @ ..] => rest,
        _ => return Route::NotFound,
    };
    const READ: &str = "GET, HEAD";
    let (found, allow) = match tail {
        ["events"] => (Route::Events, READ),
        ["events", "export"] => (Route::Export, READ),
        ["events", id, "proof"] => (Route::Proof(id), READ),
        ["log", "checkpoint"] => (Route::Checkpoint, READ),
        ["log", "consistency"] => (Route::Consistency, READ),
        ["exports"] => (Route::StartExport, "POST"),
        ["exports", id] => (Route::ExportStatus(id), READ),
        _ => return Route::NotFound,
    };
    let allowed = match allow {
        READ => method == Method::GET || method == Method::HEAD,
        _ => method == Method::POST,
    };
    if allowed {
        found
    } else {
        Route::MethodNotAllowed(allow)
    }
}

/// The `Retry-After` of an export that is not finished: how often to poll it.
const EXPORT_POLL_SECS: u32 = 5;

/// Why a request could not be answered from the log.
enum Failure {
    /// The database is unreachable or a query failed: `503`.
    Unavailable(String),
    /// The stored log contradicts itself (a proof does not lead to its checkpoint's
    /// root): `500`, and an error in the log; never served as a proof.
    Inconsistent(String),
}

impl From<stele_store::Error> for Failure {
    fn from(e: stele_store::Error) -> Self {
        match e {
            stele_store::Error::Log(why) => Failure::Inconsistent(why),
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

type Answer = Result<Response<Body>, Failure>;

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

/// The origin line of a stored checkpoint note (served verbatim; the client checks it).
fn origin_of(note: &str) -> &str {
    note.split('\n').next().unwrap_or_default()
}

fn checkpoint_json(cp: &StoredCheckpoint) -> Value {
    json!({
        "origin": origin_of(&cp.note),
        "size": cp.size,
        "root": cp.root.to_base64(),
        "note": cp.note,
    })
}

fn not_found(message: impl Into<String>) -> Response<Body> {
    error_response(StatusCode::NOT_FOUND, "not_found", message)
}

fn bad_request(message: impl Into<String>) -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// A tree size in a query string: a decimal without sign or leading zeros, at least 1.
fn size_param(name: &str, value: &str) -> Result<u64, String> {
    let ok = !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && !(value.len() > 1 && value.starts_with('0'));
    match value.parse::<u64>() {
        Ok(n) if ok && n >= 1 && n <= i64::MAX as u64 => Ok(n),
        _ => Err(format!(
            "`{name}` must be a tree size: a whole number from 1, got `{value}`"
        )),
    }
}

impl Query {
    /// Without an archive: searches read the hot store only.
    pub fn new(config: QueryConfig, pool: deadpool_postgres::Pool) -> Self {
        Self {
            config,
            pool,
            archive: None,
            exports: None,
            jobs: None,
        }
    }

    /// Archived days of a search are read from `s3` (the bucket and prefix of the config).
    pub fn with_archive(mut self, s3: aws_sdk_s3::Client) -> Self {
        self.archive = self
            .config
            .archive_bucket
            .clone()
            .map(|bucket| S3Store::new(s3.clone(), bucket));
        self.exports = self.config.export_bucket(s3);
        self
    }

    /// `POST /v1/exports` hands its jobs to `jobs` (it needs the archive bucket too).
    pub fn with_export_jobs(mut self, jobs: Arc<dyn ExportJobs>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Answer one request. Never fails: every outcome is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let resp = match route(req.method(), &path) {
            Route::NotFound => not_found(
                "no such resource; see GET /v1/events, /v1/events/export, /v1/events/{event_id}/proof, \
                 /v1/log/checkpoint, /v1/log/consistency, POST /v1/exports, GET /v1/exports/{export_id}",
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
            route => match tenant_of(&req, &self.config.tenant_claim) {
                Err(e) => tenant_refused(&e),
                Ok(tenant) => {
                    let answer = match route {
                        Route::Events => self.events(&tenant, &req).await,
                        Route::Export => self.export(&tenant, &req).await,
                        Route::StartExport => self.start_export(&tenant, &req).await,
                        Route::ExportStatus(id) => self.export_status(&tenant, id).await,
                        Route::Proof(id) => self.proof(&tenant, id).await,
                        Route::Checkpoint => self.checkpoint(&tenant).await,
                        _ => self.consistency(&tenant, &req).await,
                    };
                    answer.unwrap_or_else(|f| self.failed(&tenant, f))
                }
            },
        };
        tracing::info!(
            method = %req.method(),
            path = path,
            status = resp.status().as_u16(),
            "request answered"
        );
        resp
    }

    fn failed(&self, tenant: &str, failure: Failure) -> Response<Body> {
        match failure {
            Failure::Unavailable(why) => {
                tracing::warn!(%tenant, error = %why, "answering 503");
                let mut resp = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the log cannot be read right now; try again after Retry-After",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(self.config.retry_after_secs));
                resp
            }
            Failure::Inconsistent(why) => {
                tracing::error!(%tenant, error = %why, "the stored log is inconsistent");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the log could not produce a proof that verifies; the operators are alerted",
                )
            }
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Failure> {
        self.pool
            .get()
            .await
            .map_err(|e| Failure::Unavailable(format!("database connection: {e}")))
    }

    /// `GET /v1/events`
    async fn events(&self, tenant: &str, req: &Request) -> Answer {
        let params = req.query_string_parameters();
        let names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        let search = match EventSearch::parse(|k| params.first(k), names) {
            Ok(s) => s,
            Err(e) => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    e.to_string(),
                ))
            }
        };
        let client = self.client().await?;
        let archive = self.archive.as_ref().map(|s| (s, self.config.archive_prefix.as_str()));
        match events::search(&**client, archive, &self.config.cursor_key, tenant, &search).await {
            Ok(page) => Ok(json_response(
                StatusCode::OK,
                &json!({
                    "events": page.events.iter().map(events::event_json).collect::<Vec<_>>(),
                    "next_cursor": page.next_cursor,
                }),
            )),
            Err(SearchError::BadCursor) => Ok(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                SearchError::BadCursor.to_string(),
            )),
            Err(SearchError::Unavailable(why)) => Err(Failure::Unavailable(why)),
            Err(SearchError::Unreadable(why)) => Err(Failure::Inconsistent(why)),
        }
    }

    /// `GET /v1/events/export`: `200` with the file when it fits a response, else
    /// `303 See Other` to a presigned URL of it (and the URL in a JSON body).
    async fn export(&self, tenant: &str, req: &Request) -> Answer {
        let params = req.query_string_parameters();
        let names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        let request = match ExportRequest::parse(|k| params.first(k), names) {
            Ok(r) => r,
            Err(e) => return Ok(bad_request(e.to_string())),
        };
        let format = request.format;
        let filename = jobs::filename(tenant, &request);
        let key = jobs::file_key(tenant, Uuid::now_v7(), format.extension());
        let mut spool = Spool::new(
            self.exports.clone(),
            key,
            filename.clone(),
            format.content_type(),
            self.config.export_inline_max_bytes,
        );
        // In Lambda: stop 2 s before the invocation's deadline, to answer with why.
        if let Some(ctx) = req.lambda_context_ref() {
            let left = (ctx.deadline as i64 - chrono::Utc::now().timestamp_millis() - 2000).max(0);
            spool = spool.with_deadline(std::time::Instant::now() + std::time::Duration::from_millis(left as u64));
        }
        let client = self.client().await?;
        let archive = self.archive.as_ref().map(|s| (s, self.config.archive_prefix.as_str()));
        let (count, delivered) = match export::deliver(&**client, archive, tenant, &request, spool).await {
            Ok(done) => done,
            Err(ExportError::Search(SearchError::Unreadable(why))) => return Err(Failure::Inconsistent(why)),
            Err(ExportError::Search(other)) => return Err(Failure::Unavailable(other.to_string())),
            Err(ExportError::Output(e)) => return self.export_failed(e),
        };
        tracing::info!(%tenant, events = count, "export written");
        Ok(match delivered {
            Delivered::Inline(body) => {
                let mut resp = Response::new(Body::Text(String::from_utf8_lossy(&body).into_owned()));
                let headers = resp.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
                    headers.insert(header::CONTENT_DISPOSITION, v);
                }
                headers.insert("x-stele-event-count", HeaderValue::from(count));
                resp
            }
            Delivered::Url {
                url,
                key,
                bytes,
                expires_at,
            } => {
                let mut resp = json_response(
                    StatusCode::SEE_OTHER,
                    &json!({
                        "url": url,
                        "expires_at": stele_core::event::timestamp::format(&expires_at),
                        "key": key,
                        "events": count,
                        "bytes": bytes,
                        "format": format.extension(),
                    }),
                );
                if let Ok(v) = HeaderValue::from_str(&url) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp.headers_mut()
                    .insert("x-stele-event-count", HeaderValue::from(count));
                resp
            }
        })
    }

    /// `POST /v1/exports?<the parameters of GET /v1/events/export>`: queues an export of
    /// any size; `202` with its status and where to poll it.
    async fn start_export(&self, tenant: &str, req: &Request) -> Answer {
        let params = req.query_string_parameters();
        let names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        let request = match ExportRequest::parse(|k| params.first(k), names) {
            Ok(r) => r,
            Err(e) => return Ok(bad_request(e.to_string())),
        };
        let (Some(bucket), Some(jobs)) = (&self.exports, &self.jobs) else {
            return Ok(not_found(
                "asynchronous exports are not enabled in this deployment (no export queue or bucket); \
                 use GET /v1/events/export",
            ));
        };
        let export_id = Uuid::now_v7();
        let status = ExportStatus::queued(export_id, request.format, jobs::filename(tenant, &request));
        // The status first: a job that runs at once finds it, and the id answers from now on.
        jobs::write_status(bucket, tenant, &status)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let job = ExportJob {
            export_id,
            tenant: tenant.to_owned(),
            params: params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        };
        jobs.submit(job).await.map_err(Failure::Unavailable)?;
        tracing::info!(%tenant, %export_id, "export queued");
        let status_url = format!("{}/{export_id}", req.uri().path().trim_end_matches('/'));
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        body["status_url"] = Value::String(status_url.clone());
        let mut resp = json_response(StatusCode::ACCEPTED, &body);
        if let Ok(v) = HeaderValue::from_str(&status_url) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(EXPORT_POLL_SECS));
        Ok(resp)
    }

    /// `GET /v1/exports/{export_id}`: the job's status; once it succeeded, a fresh
    /// presigned URL of the file.
    async fn export_status(&self, tenant: &str, id: &str) -> Answer {
        let Ok(export_id) = Uuid::parse_str(id) else {
            return Ok(bad_request(format!("`{id}` is not an export id (a UUID)")));
        };
        let unknown = || {
            not_found(format!(
                "no export {export_id} of this tenant: the id is unknown, or older than a day (exports are kept one day)"
            ))
        };
        let Some(bucket) = &self.exports else {
            return Ok(unknown());
        };
        // Read under the caller's own prefix: another tenant's id is unknown here.
        let Some(status) = jobs::read_status(bucket, tenant, export_id)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?
        else {
            return Ok(unknown());
        };
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        if let (State::Succeeded, Some(key)) = (status.status, &status.key) {
            let (url, expires_at) = bucket
                .presign(key, &status.filename)
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))?;
            body["url"] = Value::String(url);
            body["expires_at"] = Value::String(stele_core::event::timestamp::format(&expires_at));
        }
        let mut resp = json_response(StatusCode::OK, &body);
        if !status.status.is_final() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(EXPORT_POLL_SECS));
        }
        Ok(resp)
    }

    fn export_failed(&self, e: SpoolError) -> Answer {
        match e {
            SpoolError::NoBucket => Ok(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "export_too_large",
                format!(
                    "{e}: export a shorter range (the limit is {} bytes inline)",
                    self.config.export_inline_max_bytes
                ),
            )),
            SpoolError::OutOfTime { .. } => Ok(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "export_too_large",
                format!(
                    "{e}: export a shorter range, or start an asynchronous export of the whole range with \
                     POST /v1/exports"
                ),
            )),
            SpoolError::S3 { .. } => Err(Failure::Unavailable(e.to_string())),
        }
    }

    /// `GET /v1/events/{event_id}/proof`
    async fn proof(&self, tenant: &str, id: &str) -> Answer {
        let Ok(event_id) = Uuid::parse_str(id) else {
            return Ok(bad_request(format!("`{id}` is not an event id (a UUID)")));
        };
        let client = self.client().await?;
        let log = PgLog::new(&client);
        // Scoped by tenant: another tenant's event is not found, like an unknown one.
        let Some(event) = log.find_event(tenant, event_id).await? else {
            return Ok(not_found(format!(
                "no logged event {event_id} in the hot store: the id is unknown, not yet stored (events are \
                 stored within seconds of their 202), or archived out of PostgreSQL; an archived event is \
                 proven from the archive with `stele verify --tenant {tenant} --event {event_id}`"
            )));
        };
        let Some(cp) = log.latest_checkpoint(tenant, event.leaf_index + 1).await? else {
            let wait = self.config.proof_retry_after_secs;
            let mut resp = error_response(
                StatusCode::CONFLICT,
                "not_yet_checkpointed",
                format!(
                    "event {event_id} is leaf {} of the log, but no signed checkpoint covers it yet; \
                     checkpoints are signed at least every minute: ask again after {wait} s",
                    event.leaf_index
                ),
            );
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return Ok(resp);
        };
        let leaf = event.leaf_hash(tenant)?;
        let proof = log.inclusion_proof(tenant, event.leaf_index, cp.size).await?;
        // Never serve a proof that does not verify against the note it comes with.
        stele_tlog::verify_inclusion(event.leaf_index, cp.size, &leaf, &proof, &cp.root).map_err(|e| {
            Failure::Inconsistent(format!("leaf {} against checkpoint {}: {e}", event.leaf_index, cp.size))
        })?;
        let received_at = chrono::DateTime::from_timestamp_micros(event.received_at_micros)
            .map(|t| stele_core::event::timestamp::format(&t))
            .unwrap_or_default();
        let tlog_proof = TlogProof {
            extra: None,
            index: event.leaf_index,
            proof: proof.clone(),
            checkpoint: cp.note.clone(),
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "tenant_id": tenant,
                "event_id": event_id,
                "event_hash": hex::encode(event.event_hash),
                "received_at": received_at,
                "leaf_index": event.leaf_index,
                "leaf_hash": leaf.to_base64(),
                "tree_size": cp.size,
                "inclusion_proof": b64(&proof),
                "checkpoint": checkpoint_json(&cp),
                "tlog_proof": tlog_proof.to_text(),
            }),
        ))
    }

    /// `GET /v1/log/checkpoint`
    async fn checkpoint(&self, tenant: &str) -> Answer {
        let client = self.client().await?;
        let Some(cp) = PgLog::new(&client).latest_checkpoint(tenant, 1).await? else {
            return Ok(not_found(
                "no signed checkpoint for this tenant yet: its log is empty or not yet checkpointed",
            ));
        };
        let mut resp = Response::new(Body::Text(cp.note));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok(resp)
    }

    /// `GET /v1/log/consistency?from=N[&to=M]`
    async fn consistency(&self, tenant: &str, req: &Request) -> Answer {
        let params = req.query_string_parameters();
        let Some(from) = params.first("from") else {
            return Ok(bad_request(
                "`from` is required: the size of an older signed checkpoint",
            ));
        };
        let from = match size_param("from", from) {
            Ok(n) => n,
            Err(why) => return Ok(bad_request(why)),
        };
        let to = match params.first("to").map(|v| size_param("to", v)).transpose() {
            Ok(to) => to,
            Err(why) => return Ok(bad_request(why)),
        };
        if let Some(to) = to.filter(|&to| to < from) {
            return Ok(bad_request(format!(
                "`to` ({to}) is smaller than `from` ({from}): a log only grows"
            )));
        }
        let client = self.client().await?;
        let log = PgLog::new(&client);
        let Some(old) = log.checkpoint_at(tenant, from).await? else {
            return Ok(not_found(format!(
                "no signed checkpoint of size {from} for this tenant; `from` and `to` must be sizes of signed checkpoints"
            )));
        };
        let new = match to {
            Some(to) => log.checkpoint_at(tenant, to).await?,
            None => log.latest_checkpoint(tenant, from).await?,
        };
        let Some(new) = new else {
            return Ok(not_found(format!(
                "no signed checkpoint of size {} for this tenant; `from` and `to` must be sizes of signed checkpoints",
                to.unwrap_or(from)
            )));
        };
        let proof = if old.size == new.size {
            Vec::new()
        } else {
            log.consistency_proof(tenant, old.size, new.size).await?
        };
        stele_tlog::verify_consistency(old.size, new.size, &proof, &old.root, &new.root)
            .map_err(|e| Failure::Inconsistent(format!("checkpoints {} and {}: {e}", old.size, new.size)))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "tenant_id": tenant,
                "from": checkpoint_json(&old),
                "to": checkpoint_json(&new),
                "consistency_proof": b64(&proof),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = "0190a4b2-0000-7000-8000-000000000000";
        let proof = format!("/v1/events/{id}/proof");
        assert_eq!(route(&Method::GET, &proof), Route::Proof(id));
        assert_eq!(route(&Method::GET, &format!("/prod{proof}")), Route::Proof(id));
        assert_eq!(route(&Method::POST, &proof), Route::MethodNotAllowed("GET, HEAD"));
        assert_eq!(route(&Method::GET, "/v1/log/checkpoint/"), Route::Checkpoint);
        assert_eq!(route(&Method::HEAD, "/v1/log/consistency"), Route::Consistency);
        assert_eq!(route(&Method::GET, "/v1/events"), Route::Events);
        assert_eq!(route(&Method::GET, "/prod/v1/events/export"), Route::Export);
        assert_eq!(route(&Method::POST, "/v1/events"), Route::MethodNotAllowed("GET, HEAD"));
        assert_eq!(route(&Method::POST, "/prod/v1/exports"), Route::StartExport);
        assert_eq!(route(&Method::GET, "/v1/exports"), Route::MethodNotAllowed("POST"));
        assert_eq!(route(&Method::GET, "/v1/exports/x"), Route::ExportStatus("x"));
        assert_eq!(
            route(&Method::DELETE, "/v1/exports/x"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route(&Method::GET, "/v1/events/x/proof/y"), Route::NotFound);
    }

    #[test]
    fn sizes_are_plain_positive_decimals() {
        assert_eq!(size_param("from", "1").ok(), Some(1));
        assert_eq!(size_param("from", "9223372036854775807").ok(), Some(i64::MAX as u64));
        for bad in ["0", "", "01", "-1", "+1", "1e3", " 1", "9223372036854775808", "x"] {
            assert!(size_param("from", bad).is_err(), "{bad:?}");
        }
    }
}
