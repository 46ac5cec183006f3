//! One request in, sealed records or the API's refusal out: [`ingest`] is the
//! whole of what the API decides about a request body, with no I/O. The HTTP
//! handler, the fuzz target and the seal benchmark all call it, so what they
//! check and measure is what the API does.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use lambda_http::http::{HeaderMap, StatusCode};
use stele_core::accept::accept_events;
use stele_core::{
    event_id_from_idempotency_key, event_id_from_idempotency_key_in_batch, limits, validate_event_into, Code, Context,
    Event, EventHash, Problem, ProblemList,
};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::request::{self, BodyError};
use crate::sink::Record;

/// Longest `Idempotency-Key` header accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// One accepted event: what the answer reports and the record that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub event_id: Uuid,
    pub hash: EventHash,
    /// The canonical event with its hash, under the tenant's partition key.
    pub record: Record,
}

/// Why a request is refused as a whole. Nothing of a refused request is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// `415 unsupported_media_type`: not declared JSON, or an encoding other than gzip.
    UnsupportedMediaType(String),
    /// `413 too_large`: too many bytes (after decompression) or too many events.
    TooLarge(String),
    /// `400 invalid_body`: not JSON, not an event or `{"events": [...]}`, or an
    /// unusable `Idempotency-Key` header.
    InvalidBody(Vec<Problem>),
    /// `400 validation_failed`: events break the schema; every problem of every
    /// event counted, the first [`limits::MAX_PROBLEMS_LISTED`] kept.
    Invalid(ProblemList),
    /// `403 tenant_mismatch`: as `Invalid`, with at least one event naming another tenant.
    TenantMismatch(ProblemList),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidBody(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::TenantMismatch(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The `error` member of the answer.
    pub fn error(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge(_) => "too_large",
            Self::InvalidBody(_) => "invalid_body",
            Self::Invalid(_) => "validation_failed",
            Self::TenantMismatch(_) => "tenant_mismatch",
        }
    }

    /// The problems listed in the answer (none for `415`/`413`, which carry a message).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::InvalidBody(p) => p,
            Self::Invalid(p) | Self::TenantMismatch(p) => p.listed(),
            Self::UnsupportedMediaType(_) | Self::TooLarge(_) => &[],
        }
    }

    /// Every problem found, listed or not (`problems_total` of the answer).
    pub fn problems_total(&self) -> usize {
        match self {
            Self::Invalid(p) | Self::TenantMismatch(p) => p.total(),
            other => other.problems().len(),
        }
    }

    /// Events with at least one problem.
    pub fn problem_events(&self) -> usize {
        match self {
            Self::Invalid(p) | Self::TenantMismatch(p) => p.events(),
            Self::InvalidBody(p) if !p.is_empty() => 1,
            _ => 0,
        }
    }
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::UnsupportedMediaType(msg) => Self::UnsupportedMediaType(msg),
            BodyError::TooLarge(msg) => Self::TooLarge(msg),
            BodyError::Invalid(problems) => Self::InvalidBody(problems),
        }
    }
}

/// Turn one `POST /v1/events` of `tenant` (already authenticated) into sealed
/// records, all or nothing: the body is checked (media type, gzip, size, strict
/// JSON, shape), each event validated and stamped at `now`, ids are derived from
/// an `Idempotency-Key` (from tenant and key for one event, from tenant, key and
/// index in a batch: [`event_id_from_idempotency_key_in_batch`]) where the
/// event has none, and two events with one id refuse the batch.
pub fn ingest(
    headers: &HeaderMap,
    body: &[u8],
    tenant: &str,
    now: DateTime<Utc>,
    config: &IngestConfig,
) -> Result<Vec<Sealed>, Refusal> {
    request::check_media_type(headers)?;
    let body = request::decode_body(headers, body, config.max_request_bytes)?;
    if let Some(accepted) = accept_in_one_pass(headers, &body, tenant, now, config) {
        return Ok(seal_all(accepted, tenant, config));
    }
    ingest_general(headers, &body, tenant, now, config)
}

/// [`ingest`] of a decoded body through the `Value` tree: every problem found.
fn ingest_general(
    headers: &HeaderMap,
    body: &[u8],
    tenant: &str,
    now: DateTime<Utc>,
    config: &IngestConfig,
) -> Result<Vec<Sealed>, Refusal> {
    let events = request::parse_events(body, config.max_request_bytes, config.max_events)?;
    let key = idempotency_key(headers).map_err(|p| Refusal::InvalidBody(vec![p]))?;

    // One list for the request: its memory is bounded by the cap, whatever the body holds.
    let mut problems = ProblemList::new(limits::MAX_PROBLEMS_LISTED);
    let mut accepted = Vec::with_capacity(events.values.len());
    let mut seen_ids = HashSet::with_capacity(events.values.len());
    for (i, value) in events.values.iter().enumerate() {
        let id_if_missing = key.map(|k| {
            if events.batch {
                event_id_from_idempotency_key_in_batch(tenant, k, i)
            } else {
                event_id_from_idempotency_key(tenant, k)
            }
        });
        let ctx = Context {
            tenant_id: tenant,
            now,
            window: config.window,
            id_if_missing,
        };
        let index = events.batch.then_some(i);
        match validate_event_into(value, &ctx, index, &mut problems) {
            Some(event) if !seen_ids.insert(event.event_id) => problems.note(index, Code::InvalidValue, || {
                let p = Problem::new(
                    "event_id",
                    Code::InvalidValue,
                    "another event in this batch has the same event_id",
                );
                match index {
                    Some(i) => p.in_batch(i),
                    None => p,
                }
            }),
            Some(event) => accepted.push(event),
            None => {}
        }
    }
    if !problems.is_empty() {
        return Err(if problems.contains(Code::TenantMismatch) {
            Refusal::TenantMismatch(problems)
        } else {
            Refusal::Invalid(problems)
        });
    }
    Ok(seal_all(accepted, tenant, config))
}

/// The events of a body that is valid as it stands (the common case), decoded
/// and checked in one pass ([`stele_core::accept`]); `None` for every other
/// body, which [`ingest`] then parses, validates and refuses with every problem
/// listed, as the general path always has.
fn accept_in_one_pass(
    headers: &HeaderMap,
    body: &[u8],
    tenant: &str,
    now: DateTime<Utc>,
    config: &IngestConfig,
) -> Option<Vec<Event>> {
    if body.len() > config.max_request_bytes {
        return None;
    }
    let key = idempotency_key(headers).ok()?;
    let events = accept_events(body, config.max_events, |index| Context {
        tenant_id: tenant,
        now,
        window: config.window,
        id_if_missing: key.map(|k| match index {
            Some(i) => event_id_from_idempotency_key_in_batch(tenant, k, i),
            None => event_id_from_idempotency_key(tenant, k),
        }),
    })?;
    let mut seen_ids = HashSet::with_capacity(events.len());
    events.iter().all(|e| seen_ids.insert(e.event_id)).then_some(events)
}

fn seal_all(accepted: Vec<Event>, tenant: &str, config: &IngestConfig) -> Vec<Sealed> {
    accepted
        .into_iter()
        .map(|event| {
            let sealed = event.seal();
            let event_id = sealed.event.event_id;
            Sealed {
                event_id,
                hash: sealed.hash,
                record: Record {
                    partition_key: config.hot_tenants.partition_key(tenant, event_id),
                    data: Bytes::from(sealed.record),
                },
            }
        })
        .collect()
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters
/// (spaces allowed inside), surrounding whitespace ignored.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(raw) = headers.get("idempotency-key") else {
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
    use lambda_http::http::HeaderValue;
    use serde_json::{json, Value};
    use stele_core::event::timestamp;
    use stele_core::SealedEvent;

    fn headers(key: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(key) = key {
            h.insert("idempotency-key", HeaderValue::from_static(key));
        }
        h
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

    fn run(h: &HeaderMap, body: &Value) -> Result<Vec<Sealed>, Refusal> {
        ingest(
            h,
            body.to_string().as_bytes(),
            "acme",
            Utc::now(),
            &IngestConfig::new("s"),
        )
    }

    #[test]
    fn each_record_opens_to_its_reported_id_and_hash() {
        let sealed = run(&headers(None), &json!({ "events": [event(), event()] })).unwrap();
        assert_eq!(sealed.len(), 2);
        for s in &sealed {
            let opened = SealedEvent::open(&s.record.data).unwrap();
            assert_eq!((opened.event.event_id, opened.hash), (s.event_id, s.hash));
            assert_eq!(opened.event.tenant_id, "acme");
            assert_eq!(s.record.partition_key, "acme");
        }
    }

    #[test]
    fn an_idempotency_key_gives_each_event_of_a_batch_its_own_id() {
        let sealed = run(&headers(Some("order-42")), &json!({ "events": [event(), event()] })).unwrap();
        let ids: Vec<Uuid> = sealed.iter().map(|s| s.event_id).collect();
        assert_eq!(
            ids,
            vec![
                event_id_from_idempotency_key_in_batch("acme", "order-42", 0),
                event_id_from_idempotency_key_in_batch("acme", "order-42", 1),
            ]
        );
        let single = run(&headers(Some("order-42")), &event()).unwrap();
        assert_eq!(single[0].event_id, event_id_from_idempotency_key("acme", "order-42"));
    }

    #[test]
    fn a_single_event_key_cannot_forge_the_id_of_a_batch_item() {
        let batch = run(&headers(Some("x")), &json!({ "events": [event(), event()] })).unwrap();
        let forged = run(&headers(Some("x#1")), &event()).unwrap();
        assert_ne!(forged[0].event_id, batch[1].event_id);
        let forged = run(&headers(Some("x#0")), &json!({ "events": [event()] })).unwrap();
        assert_ne!(forged[0].event_id, batch[0].event_id);
        assert_ne!(forged[0].event_id, batch[1].event_id);
    }

    /// The one-pass path answers as the general path: same records, same ids and hashes.
    #[test]
    fn one_pass_and_general_path_give_the_same_answer() {
        let now = Utc::now();
        let config = IngestConfig::new("s");
        let mut with_id = event();
        with_id["event_id"] = json!("0190f0b4-0000-7000-8000-000000000001");
        let mut foreign = event();
        foreign["tenant_id"] = json!("globex");
        let bodies = [
            event(),
            with_id.clone(),
            json!({ "events": [event(), with_id.clone()] }),
            json!({ "events": [with_id.clone(), with_id] }),
            foreign,
            json!({ "events": [] }),
        ];
        for key in [None, Some("order-42")] {
            for body in &bodies {
                let text = body.to_string();
                let h = headers(key);
                let ours = ingest(&h, text.as_bytes(), "acme", now, &config);
                let general = ingest_general(&h, text.as_bytes(), "acme", now, &config);
                if body.get("event_id").is_some() || key.is_some() || ours.is_err() {
                    assert_eq!(ours, general, "{text}");
                } else {
                    // Fresh UUIDv7 ids differ between two runs; all else is equal.
                    assert_eq!(ours.map(|s| s.len()), general.map(|s| s.len()), "{text}");
                }
            }
        }
        let accepted = accept_in_one_pass(&headers(None), event().to_string().as_bytes(), "acme", now, &config);
        assert!(accepted.is_some(), "a valid event takes the one-pass path");
    }

    #[test]
    fn refusals_carry_the_answer_the_api_gives() {
        let mut dup = event();
        dup["event_id"] = json!("0190f0b4-0000-7000-8000-000000000001");
        let Err(refusal) = run(&headers(None), &json!({ "events": [dup.clone(), dup] })) else {
            panic!("duplicate ids accepted");
        };
        assert_eq!(
            (refusal.status(), refusal.error()),
            (StatusCode::BAD_REQUEST, "validation_failed")
        );
        assert_eq!(refusal.problems()[0].path, "events[1].event_id");

        let mut foreign = event();
        foreign["tenant_id"] = json!("globex");
        let refusal = run(&headers(None), &foreign).unwrap_err();
        assert_eq!(
            (refusal.status(), refusal.error()),
            (StatusCode::FORBIDDEN, "tenant_mismatch")
        );

        let mut h = headers(None);
        h.insert("idempotency-key", HeaderValue::from_static("  "));
        let refusal = run(&h, &event()).unwrap_err();
        assert_eq!(refusal.error(), "invalid_body");

        let refusal = ingest(&HeaderMap::new(), b"{}", "acme", Utc::now(), &IngestConfig::new("s")).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
