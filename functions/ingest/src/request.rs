//! HTTP body → client events: media type, size limits, strict JSON, and the
//! single-or-batch shape. Nothing here looks inside an event; that is
//! `stele_core::validate_event`'s job.

use std::borrow::Cow;
use std::io::Read;

use lambda_http::http::{header, HeaderMap};
use serde_json::Value;
use stele_core::{Code, Problem};

/// Why a body was refused before any event was looked at.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// `415`: the body is not declared as JSON, or is compressed.
    UnsupportedMediaType(String),
    /// `413`: too many bytes or too many events.
    TooLarge(String),
    /// `400`: not JSON, or not an event / `{"events": [...]}`.
    Invalid(Vec<Problem>),
}

/// The events of one request, still as untrusted JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub values: Vec<Value>,
    /// `{"events": [...]}` (problems are placed as `events[i].…`) rather than one bare event.
    pub batch: bool,
}

/// Check the headers that describe the body: `Content-Type` must be JSON
/// (`application/json` or `application/<x>+json`, charset UTF-8 if given), and the
/// body uncompressed or gzip (`Content-Encoding: gzip`, see [`decode_body`]).
pub fn check_media_type(headers: &HeaderMap) -> Result<(), BodyError> {
    let unsupported = |why: String| Err(BodyError::UnsupportedMediaType(why));
    let Some(raw) = headers.get(header::CONTENT_TYPE) else {
        return unsupported("Content-Type is missing; send application/json".into());
    };
    let Ok(raw) = raw.to_str() else {
        return unsupported("Content-Type is not readable text; send application/json".into());
    };
    let mut parts = raw.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !json {
        return unsupported(format!("Content-Type `{raw}` is not JSON; send application/json"));
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches('"');
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return unsupported(format!("charset `{value}` is not supported; JSON bodies must be UTF-8"));
            }
        }
    }
    content_encoding(headers).map(|_| ())
}

/// `true` for a gzip body; `415` for any encoding but gzip and identity.
fn content_encoding(headers: &HeaderMap) -> Result<bool, BodyError> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let encoding = encoding.to_str().unwrap_or("?").trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(false);
    }
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        return Ok(true);
    }
    Err(BodyError::UnsupportedMediaType(format!(
        "Content-Encoding `{encoding}` is not supported; send the body uncompressed or gzip"
    )))
}

/// The body as sent, or decompressed when it is gzip. The byte limit applies
/// to the decompressed body (a small bomb is refused with `413`, never inflated
/// past `max_bytes + 1`); a body that is not valid gzip is `400`.
pub fn decode_body<'a>(headers: &HeaderMap, body: &'a [u8], max_bytes: usize) -> Result<Cow<'a, [u8]>, BodyError> {
    if !content_encoding(headers)? {
        return Ok(Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
    let invalid = |why: String| {
        BodyError::Invalid(vec![Problem::new(
            "",
            Code::InvalidJson,
            format!("the body is declared gzip but cannot be decompressed: {why}"),
        )])
    };
    // `bufread` over the slice, so that what follows the gzip member is known exactly.
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    (&mut decoder)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| invalid(e.to_string()))?;
    if out.len() > max_bytes {
        return Err(BodyError::TooLarge(format!(
            "the body is over {max_bytes} bytes once decompressed; the limit is {max_bytes}"
        )));
    }
    // Bytes after the first member (a second member, garbage) would be silently
    // dropped here while another reader of the same body might decode them.
    if !decoder.into_inner().is_empty() {
        return Err(invalid("data follows the end of the gzip stream".into()));
    }
    Ok(Cow::Owned(out))
}

/// Parse a body into events, enforcing the byte and event-count limits.
pub fn parse_events(body: &[u8], max_bytes: usize, max_events: usize) -> Result<Events, BodyError> {
    if body.len() > max_bytes {
        return Err(BodyError::TooLarge(format!(
            "the body is {} bytes; the limit is {max_bytes}",
            body.len()
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Invalid(vec![Problem::new(
            "",
            Code::InvalidJson,
            "the body is empty; send one event or {\"events\": [...]}",
        )]));
    }
    let value = stele_core::json::parse_strict(body).map_err(|e| {
        BodyError::Invalid(vec![Problem::new(
            "",
            Code::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )])
    })?;
    let Value::Object(mut obj) = value else {
        return Err(BodyError::Invalid(vec![Problem::new(
            "",
            Code::InvalidType,
            "the body must be a JSON object: one event or {\"events\": [...]}",
        )]));
    };
    // No event field is called `events`, so its presence marks a batch.
    let Some(events) = obj.remove("events") else {
        return Ok(Events {
            values: vec![Value::Object(obj)],
            batch: false,
        });
    };
    let mut problems: Vec<Problem> = obj
        .keys()
        .map(|k| {
            Problem::new(
                k.clone(),
                Code::UnknownField,
                "a batch body has only the member `events`",
            )
        })
        .collect();
    let values = match events {
        Value::Array(values) if values.is_empty() => {
            problems.push(Problem::new("events", Code::Empty, "must hold at least one event"));
            Vec::new()
        }
        Value::Array(values) => values,
        other => {
            let got = match other {
                Value::Null => "null",
                Value::Object(_) => "an object",
                Value::String(_) => "a string",
                _ => "a scalar",
            };
            problems.push(Problem::new(
                "events",
                Code::InvalidType,
                format!("must be an array of events, got {got}"),
            ));
            Vec::new()
        }
    };
    if values.len() > max_events {
        return Err(BodyError::TooLarge(format!(
            "the batch has {} events; the limit is {max_events}",
            values.len()
        )));
    }
    if !problems.is_empty() {
        return Err(BodyError::Invalid(problems));
    }
    Ok(Events { values, batch: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_media_types_are_accepted() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.stele+json",
        ] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(check_media_type(&h), Ok(()), "{ct}");
        }
    }

    #[test]
    fn non_json_missing_latin1_or_brotli_bodies_are_unsupported() {
        let cases = [
            headers(&[]),
            headers(&[("content-type", "text/plain")]),
            headers(&[("content-type", "application/json; charset=latin1")]),
            headers(&[("content-type", "application/json"), ("content-encoding", "br")]),
            headers(&[("content-type", "application/json"), ("content-encoding", "gzip, br")]),
        ];
        for h in cases {
            assert!(matches!(check_media_type(&h), Err(BodyError::UnsupportedMediaType(_))));
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_gzip_body_is_decompressed_and_a_plain_one_kept() {
        let json = headers(&[("content-type", "application/json"), ("content-encoding", "GZIP")]);
        assert_eq!(check_media_type(&json), Ok(()));
        let body = br#"{"events":[{},{}]}"#;
        let zipped = gzip(body);
        let decoded = decode_body(&json, &zipped, 1024).unwrap();
        assert_eq!(&decoded[..], &body[..]);
        let plain = headers(&[("content-type", "application/json"), ("content-encoding", "identity")]);
        assert!(matches!(decode_body(&plain, body, 1024), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn the_size_limit_applies_after_decompression() {
        let h = headers(&[("content-encoding", "gzip")]);
        let bomb = gzip(&vec![b' '; 64 * 1024]);
        assert!(bomb.len() < 1024);
        assert!(matches!(decode_body(&h, &bomb, 1024), Err(BodyError::TooLarge(_))));
        assert!(decode_body(&h, &gzip(&[b' '; 1024]), 1024).is_ok(), "exactly the limit");
    }

    #[test]
    fn a_body_that_is_not_gzip_is_invalid() {
        let h = headers(&[("content-encoding", "gzip")]);
        let Err(BodyError::Invalid(p)) = decode_body(&h, br#"{"events":[]}"#, 1024) else {
            panic!("expected invalid");
        };
        assert_eq!(p[0].code, Code::InvalidJson);
        let mut cut = gzip(br#"{"events":[{}]}"#);
        cut.truncate(cut.len() - 6);
        assert!(matches!(decode_body(&h, &cut, 1024), Err(BodyError::Invalid(_))));
    }

    #[test]
    fn a_bare_object_is_one_event() {
        let e = parse_events(br#"{"action":"a.b"}"#, 1024, 10).unwrap();
        assert!(!e.batch);
        assert_eq!(e.values.len(), 1);
    }

    #[test]
    fn an_events_array_is_a_batch() {
        let e = parse_events(br#"{"events":[{},{}]}"#, 1024, 10).unwrap();
        assert!(e.batch);
        assert_eq!(e.values.len(), 2);
    }

    #[test]
    fn duplicate_keys_are_invalid_json() {
        let Err(BodyError::Invalid(p)) = parse_events(br#"{"a":1,"a":2}"#, 1024, 10) else {
            panic!("expected invalid");
        };
        assert_eq!(p[0].code, Code::InvalidJson);
    }

    #[test]
    fn too_many_bytes_or_events_is_too_large() {
        assert!(matches!(
            parse_events(&[b' '; 2000], 1024, 10),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            parse_events(br#"{"events":[{},{},{}]}"#, 1024, 2),
            Err(BodyError::TooLarge(_))
        ));
    }

    #[test]
    fn batch_shape_problems_are_all_reported() {
        let Err(BodyError::Invalid(p)) = parse_events(br#"{"events":{},"extra":1}"#, 1024, 10) else {
            panic!("expected invalid");
        };
        let codes: Vec<Code> = p.iter().map(|p| p.code).collect();
        assert_eq!(codes, vec![Code::UnknownField, Code::InvalidType]);
    }

    #[test]
    fn empty_and_non_object_bodies_are_invalid() {
        for body in [&b""[..], b"  ", b"[]", b"42", b"\xff"] {
            assert!(
                matches!(parse_events(body, 1024, 10), Err(BodyError::Invalid(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse_events(br#"{"events":[]}"#, 1024, 10),
            Err(BodyError::Invalid(_))
        ));
    }
}
