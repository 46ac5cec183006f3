//! One fuzz input through the ingest request path, shared by the libFuzzer
//! target (`ingest_request.rs`) and the smoke loop in `tests/hostile.rs`.
//!
//! Input layout: the first byte picks the request headers (content type and
//! encoding; the high bit makes a batch-sized `Idempotency-Key` seed), the rest
//! is the body. A panic anywhere, or a broken invariant, is a finding:
//! - a refused body is one of the documented errors (415/413/400), with at
//!   least one problem for a 400;
//! - an accepted event seals into a canonical record that opens again with the
//!   same hash, for the authenticated tenant, within the size limit.
#![allow(dead_code)]

use chrono::Utc;
use stele_core::canonical::to_canonical_vec;
use stele_core::{limits, validate_event, Context, SealedEvent, TimeWindow};
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue};
use stele_ingest::request::{check_media_type, decode_body, parse_events, BodyError};

const CONTENT_TYPES: [&str; 8] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.stele+json",
    "text/plain",
    "application/json; charset=latin1",
    "application/json",
    "APPLICATION/JSON",
    "application/json",
];
const ENCODINGS: [Option<&str>; 4] = [None, Some("gzip"), Some("identity"), Some("br")];

/// Run one input; panics on a broken invariant. Returns the number of events accepted.
pub fn ingest_one(data: &[u8]) -> usize {
    let Some((&selector, body)) = data.split_first() else {
        return 0;
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static(CONTENT_TYPES[usize::from(selector & 7)]),
    );
    if let Some(encoding) = ENCODINGS[usize::from((selector >> 3) & 3)] {
        headers.insert("content-encoding", HeaderValue::from_static(encoding));
    }
    // Small limits as well as the real ones, so the fuzzer reaches the edges.
    let (max_bytes, max_events) = if selector & 0x20 != 0 {
        (4096, 3)
    } else {
        (limits::MAX_REQUEST_BYTES, limits::MAX_EVENTS_PER_REQUEST)
    };
    if let Err(e) = check_media_type(&headers) {
        assert!(matches!(e, BodyError::UnsupportedMediaType(_)), "{e:?}");
        return 0;
    }
    let decoded = match decode_body(&headers, body, max_bytes) {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    let events = match parse_events(&decoded, max_bytes, max_events) {
        Ok(events) => events,
        Err(e) => return refused(e),
    };
    assert!(!events.values.is_empty() && events.values.len() <= max_events);
    assert!(events.batch || events.values.len() == 1);
    let now = Utc::now();
    let ctx = Context {
        tenant_id: "acme",
        now,
        window: TimeWindow::default(),
        id_if_missing: (selector & 0x80 != 0).then(|| stele_core::event_id_from_idempotency_key("acme", "k")),
    };
    let mut accepted = 0;
    for value in &events.values {
        match validate_event(value, &ctx) {
            Ok(event) => {
                assert_eq!(event.tenant_id, "acme");
                assert!(event.canonical_bytes().len() <= limits::MAX_EVENT_BYTES);
                let sealed = event.seal();
                let reopened = SealedEvent::open(&sealed.record).expect("an accepted event's record opens");
                assert_eq!(reopened.hash, sealed.hash, "the record hashes to the accepted hash");
                assert_eq!(reopened.event, sealed.event, "the record carries the accepted event");
                let value = stele_core::json::parse_strict(&sealed.record).expect("the record is strict JSON");
                assert_eq!(to_canonical_vec(&value), sealed.record, "the record is canonical");
                accepted += 1;
            }
            Err(problems) => {
                assert!(!problems.is_empty(), "a refused event lists its problems");
            }
        }
    }
    accepted
}

fn refused(e: BodyError) -> usize {
    match e {
        BodyError::Invalid(problems) => assert!(!problems.is_empty(), "a 400 lists its problems"),
        BodyError::TooLarge(_) => {}
        BodyError::UnsupportedMediaType(_) => {}
    }
    0
}
