//! One fuzz input through the ingest request path, shared by the libFuzzer
//! target (`ingest_request.rs`) and the smoke loop in `tests/hostile.rs`. It
//! calls the function the API runs, `stele_ingest::ingest` (headers + body →
//! sealed records or the API's refusal), and checks its result.
//!
//! Input layout: the first byte picks the request headers (content type and
//! encoding; bit 5 picks small limits; the high bit adds an `Idempotency-Key`),
//! the rest is the body. A panic anywhere, or a broken invariant, is a finding:
//! - a refusal is one of the documented answers (415/413 with a message,
//!   400/403 with at least one problem; 403 only for a tenant mismatch; in a
//!   batch every problem names its event, in a single event none does);
//! - an acceptance holds 1 to `max_events` records with distinct event ids, each
//!   a canonical record under the tenant's partition key that opens again with
//!   the reported id and hash, for the authenticated tenant, within the size
//!   limit, and seals again to the same bytes;
//! - with an `Idempotency-Key`, sending the same request again at the same time
//!   gives the same result (that is what makes a client's resend safe).
#![allow(dead_code)]

use std::collections::HashSet;

use chrono::Utc;
use stele_core::canonical::to_canonical_vec;
use stele_core::{limits, Code, SealedEvent};
use stele_ingest::lambda_http::http::{HeaderMap, HeaderValue, StatusCode};
use stele_ingest::{ingest, IngestConfig, Refusal};

const TENANT: &str = "acme";
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
    let keyed = selector & 0x80 != 0;
    if keyed {
        headers.insert("idempotency-key", HeaderValue::from_static("k"));
    }
    let mut config = IngestConfig::new("fuzz");
    // Small limits as well as the real ones, so the fuzzer reaches the edges.
    if selector & 0x20 != 0 {
        config.max_request_bytes = 4096;
        config.max_events = 3;
    }
    let now = Utc::now();
    let result = ingest(&headers, body, TENANT, now, &config);
    if keyed {
        let again = ingest(&headers, body, TENANT, now, &config);
        assert_eq!(again, result, "a keyed request sent again gives the same result");
    }
    match result {
        Ok(sealed) => {
            assert!(
                !sealed.is_empty() && sealed.len() <= config.max_events,
                "{} events",
                sealed.len()
            );
            let ids: HashSet<_> = sealed.iter().map(|s| s.event_id).collect();
            assert_eq!(ids.len(), sealed.len(), "event ids are distinct within a request");
            for s in &sealed {
                assert_eq!(s.record.partition_key, TENANT);
                let opened = SealedEvent::open(&s.record.data).expect("an accepted event's record opens");
                assert_eq!(opened.hash, s.hash, "the record hashes to the reported hash");
                assert_eq!(opened.event.event_id, s.event_id, "the record carries the reported id");
                assert_eq!(opened.event.tenant_id, TENANT);
                assert!(opened.event.canonical_bytes().len() <= limits::MAX_EVENT_BYTES);
                let value = stele_core::json::parse_strict(&s.record.data).expect("the record is strict JSON");
                assert_eq!(to_canonical_vec(&value), s.record.data, "the record is canonical");
                assert_eq!(
                    opened.event.seal().record,
                    s.record.data,
                    "the record seals again to itself"
                );
            }
            sealed.len()
        }
        Err(refusal) => {
            refused(&refusal);
            0
        }
    }
}

fn refused(refusal: &Refusal) {
    let problems = refusal.problems();
    match refusal {
        Refusal::UnsupportedMediaType(msg) | Refusal::TooLarge(msg) => {
            assert!(!msg.is_empty() && problems.is_empty(), "{refusal:?}");
        }
        Refusal::InvalidBody(_) | Refusal::Invalid(_) | Refusal::TenantMismatch(_) => {
            assert!(!problems.is_empty(), "a {} lists its problems", refusal.status());
        }
    }
    let mismatch = problems.iter().any(|p| p.code == Code::TenantMismatch);
    match refusal.status() {
        StatusCode::FORBIDDEN => assert!(mismatch, "403 only for a tenant mismatch"),
        StatusCode::BAD_REQUEST => assert!(!mismatch, "a tenant mismatch is 403"),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {}
        other => panic!("undocumented refusal status {other}"),
    }
    if matches!(refusal, Refusal::Invalid(_) | Refusal::TenantMismatch(_)) {
        let placed = problems.iter().filter(|p| p.index.is_some()).count();
        assert!(
            placed == 0 || placed == problems.len(),
            "either every problem names its event (a batch) or none does (one event)"
        );
    }
}
