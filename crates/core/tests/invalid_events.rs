//! Validation of client events, as a table: each case mutates a known-valid event
//! and names the exact set of `(path, code)` problems it must produce.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, TimeDelta, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};
use stele_core::json::{parse_strict, JsonError};
use stele_core::{validate_event, ActorType, Category, Code, Context, Event, Outcome, Problem, TimeWindow};
use uuid::Uuid;

const TENANT: &str = "tenant-a";
const EVENT_ID: &str = "0190f0b4-5d2e-7c3a-9f1b-2a3c4d5e6f70";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn ctx() -> Context<'static> {
    Context {
        tenant_id: TENANT,
        now: now(),
        window: TimeWindow::default(),
        id_if_missing: None,
    }
}

/// A valid event that uses every field, so that every nested object can be mutated.
fn full() -> Value {
    json!({
        "event_id": EVENT_ID,
        "tenant_id": TENANT,
        "occurred_at": "2026-11-25T11:59:00Z",
        "category": "audit",
        "action": "user.login",
        "outcome": "success",
        "actor": {
            "id": "u_123",
            "type": "user",
            "display": "Ada Lovelace",
            "ip": "203.0.113.7",
            "user_agent": "curl/8.5.0"
        },
        "resource": { "type": "document", "id": "doc_9", "display": "Q3 plan" },
        "changes": { "before": { "title": "old" }, "after": { "title": "new", "tags": [1, 2.5] } },
        "metadata": { "request_id": "r-1", "attempt": 2, "flags": ["a", "b"] },
        "correlation_id": "corr-1",
        "causation_id": "cause-1",
        "trace": {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "congo=t61rcWkgMzE"
        },
        "source": { "service": "auth", "version": "1.2.3", "host": "ip-10-0-0-1", "region": "eu-west-1" },
        "schema_version": 1
    })
}

fn minimal() -> Value {
    json!({
        "occurred_at": "2026-11-25T11:59:00Z",
        "category": "security",
        "action": "key.rotate",
        "outcome": "failure",
        "actor": { "id": "svc-1", "type": "service" },
        "source": { "service": "kms" }
    })
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    v.as_object_mut().expect("test events are objects")
}

fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a slash");
    let target = v.pointer_mut(parent).expect("parent exists");
    obj(target).insert(key.to_owned(), new);
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a slash");
    let target = v.pointer_mut(parent).expect("parent exists");
    obj(target)
        .remove(key)
        .expect("the removed field exists in the base event");
}

fn validate(v: &Value) -> Result<Event, Vec<Problem>> {
    validate_event(v, &ctx())
}

fn sorted_pairs(problems: &[Problem]) -> Vec<(String, Code)> {
    let mut pairs: Vec<(String, Code)> = problems.iter().map(|p| (p.path.clone(), p.code)).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0).then(format!("{:?}", a.1).cmp(&format!("{:?}", b.1))));
    pairs
}

fn deep_array(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = Value::Array(vec![v]);
    }
    v
}

struct Case {
    name: &'static str,
    mutate: fn(&mut Value),
    expect: &'static [(&'static str, Code)],
}

macro_rules! case {
    ($name:expr, |$v:ident| $body:expr, [$(($path:expr, $code:ident)),* $(,)?]) => {
        Case {
            name: $name,
            mutate: |$v: &mut Value| {
                $body;
            },
            expect: &[$(($path, Code::$code)),*],
        }
    };
}

fn cases() -> Vec<Case> {
    vec![
        // ---- shape of the whole event
        case!("event is an array", |v| *v = json!([full()]), [("", InvalidType)]),
        case!("event is a string", |v| *v = json!("{}"), [("", InvalidType)]),
        case!("event is null", |v| *v = Value::Null, [("", InvalidType)]),
        case!(
            "empty object: every required field is reported",
            |v| *v = json!({}),
            [
                ("occurred_at", Required),
                ("category", Required),
                ("action", Required),
                ("outcome", Required),
                ("actor", Required),
                ("source", Required),
            ]
        ),
        // ---- missing required fields
        case!(
            "missing occurred_at",
            |v| remove(v, "/occurred_at"),
            [("occurred_at", Required)]
        ),
        case!("missing category", |v| remove(v, "/category"), [("category", Required)]),
        case!("missing action", |v| remove(v, "/action"), [("action", Required)]),
        case!("missing outcome", |v| remove(v, "/outcome"), [("outcome", Required)]),
        case!("missing actor", |v| remove(v, "/actor"), [("actor", Required)]),
        case!("missing source", |v| remove(v, "/source"), [("source", Required)]),
        case!("missing actor.id", |v| remove(v, "/actor/id"), [("actor.id", Required)]),
        case!(
            "missing actor.type",
            |v| remove(v, "/actor/type"),
            [("actor.type", Required)]
        ),
        case!(
            "null actor.id",
            |v| set(v, "/actor/id", Value::Null),
            [("actor.id", Required)]
        ),
        case!(
            "null category",
            |v| set(v, "/category", Value::Null),
            [("category", Required)]
        ),
        case!(
            "missing resource.id",
            |v| remove(v, "/resource/id"),
            [("resource.id", Required)]
        ),
        case!(
            "missing resource.type",
            |v| remove(v, "/resource/type"),
            [("resource.type", Required)]
        ),
        case!(
            "missing source.service",
            |v| remove(v, "/source/service"),
            [("source.service", Required)]
        ),
        case!(
            "missing trace.traceparent",
            |v| remove(v, "/trace/traceparent"),
            [("trace.traceparent", Required)]
        ),
        // ---- wrong JSON types
        case!(
            "action is a number",
            |v| set(v, "/action", json!(42)),
            [("action", InvalidType)]
        ),
        case!(
            "category is a number",
            |v| set(v, "/category", json!(1)),
            [("category", InvalidType)]
        ),
        case!(
            "outcome is a boolean",
            |v| set(v, "/outcome", json!(true)),
            [("outcome", InvalidType)]
        ),
        case!(
            "actor is a string",
            |v| set(v, "/actor", json!("u_123")),
            [("actor", InvalidType)]
        ),
        case!(
            "source is an array",
            |v| set(v, "/source", json!(["auth"])),
            [("source", InvalidType)]
        ),
        case!(
            "resource is a string",
            |v| set(v, "/resource", json!("doc_9")),
            [("resource", InvalidType)]
        ),
        case!(
            "changes is an array",
            |v| set(v, "/changes", json!([1])),
            [("changes", InvalidType)]
        ),
        case!(
            "metadata is an array",
            |v| set(v, "/metadata", json!([])),
            [("metadata", InvalidType)]
        ),
        case!(
            "trace is a string",
            |v| set(v, "/trace", json!("00-..")),
            [("trace", InvalidType)]
        ),
        case!(
            "occurred_at is a number",
            |v| set(v, "/occurred_at", json!(1_764_000_000)),
            [("occurred_at", InvalidType)]
        ),
        case!(
            "event_id is a number",
            |v| set(v, "/event_id", json!(7)),
            [("event_id", InvalidType)]
        ),
        case!(
            "tenant_id is a number",
            |v| set(v, "/tenant_id", json!(1)),
            [("tenant_id", InvalidType)]
        ),
        case!(
            "schema_version is a string",
            |v| set(v, "/schema_version", json!("1")),
            [("schema_version", InvalidType)]
        ),
        case!(
            "actor.id is an object",
            |v| set(v, "/actor/id", json!({"id": 1})),
            [("actor.id", InvalidType)]
        ),
        case!(
            "actor.type is a number",
            |v| set(v, "/actor/type", json!(0)),
            [("actor.type", InvalidType)]
        ),
        case!(
            "actor.display is a number",
            |v| set(v, "/actor/display", json!(1)),
            [("actor.display", InvalidType)]
        ),
        case!(
            "correlation_id is a number",
            |v| set(v, "/correlation_id", json!(5)),
            [("correlation_id", InvalidType)]
        ),
        case!(
            "source.region is an array",
            |v| set(v, "/source/region", json!([])),
            [("source.region", InvalidType)]
        ),
        // ---- bad enumeration values
        case!(
            "unknown category",
            |v| set(v, "/category", json!("admin")),
            [("category", InvalidValue)]
        ),
        case!(
            "category in upper case",
            |v| set(v, "/category", json!("AUDIT")),
            [("category", InvalidValue)]
        ),
        case!(
            "unknown outcome",
            |v| set(v, "/outcome", json!("ok")),
            [("outcome", InvalidValue)]
        ),
        case!(
            "unknown actor.type",
            |v| set(v, "/actor/type", json!("robot")),
            [("actor.type", InvalidValue)]
        ),
        case!(
            "actor.type in camel case",
            |v| set(v, "/actor/type", json!("apiKey")),
            [("actor.type", InvalidValue)]
        ),
        // ---- empty and oversize strings
        case!(
            "blank actor.id",
            |v| set(v, "/actor/id", json!("   ")),
            [("actor.id", Empty)]
        ),
        case!(
            "empty source.service",
            |v| set(v, "/source/service", json!("")),
            [("source.service", Empty)]
        ),
        case!("empty action", |v| set(v, "/action", json!("")), [("action", Empty)]),
        case!(
            "action of 129 characters",
            |v| set(v, "/action", json!(format!("a.{}", "b".repeat(127)))),
            [("action", TooLong)]
        ),
        case!(
            "actor.id of 257 characters",
            |v| set(v, "/actor/id", json!("x".repeat(257))),
            [("actor.id", TooLong)]
        ),
        case!(
            "actor.id of 257 multi-byte characters",
            |v| set(v, "/actor/id", json!("é".repeat(257))),
            [("actor.id", TooLong)]
        ),
        case!(
            "actor.user_agent of 1025 characters",
            |v| set(v, "/actor/user_agent", json!("m".repeat(1025))),
            [("actor.user_agent", TooLong)]
        ),
        case!(
            "resource.display of 257 characters",
            |v| set(v, "/resource/display", json!("d".repeat(257))),
            [("resource.display", TooLong)]
        ),
        case!(
            "correlation_id of 257 characters",
            |v| set(v, "/correlation_id", json!("c".repeat(257))),
            [("correlation_id", TooLong)]
        ),
        case!(
            "source.version of 65 characters",
            |v| set(v, "/source/version", json!("1".repeat(65))),
            [("source.version", TooLong)]
        ),
        case!(
            "trace.tracestate of 513 characters",
            |v| set(v, "/trace/tracestate", json!("k".repeat(513))),
            [("trace.tracestate", TooLong)]
        ),
        // ---- times
        case!(
            "occurred_at is prose",
            |v| set(v, "/occurred_at", json!("yesterday")),
            [("occurred_at", InvalidFormat)]
        ),
        case!(
            "occurred_at without a time zone",
            |v| set(v, "/occurred_at", json!("2026-11-25T11:59:00")),
            [("occurred_at", InvalidFormat)]
        ),
        case!(
            "occurred_at as a date only",
            |v| set(v, "/occurred_at", json!("2026-11-25")),
            [("occurred_at", InvalidFormat)]
        ),
        case!(
            "occurred_at with an impossible date",
            |v| set(v, "/occurred_at", json!("2026-02-30T10:00:00Z")),
            [("occurred_at", InvalidFormat)]
        ),
        case!(
            "occurred_at on a leap second (Postgres would move it to the next minute)",
            |v| set(v, "/occurred_at", json!("2026-11-25T11:58:60Z")),
            [("occurred_at", InvalidFormat)]
        ),
        case!(
            "occurred_at one microsecond older than 72 h",
            |v| set(v, "/occurred_at", json!("2026-11-22T11:59:59.999999Z")),
            [("occurred_at", TooOld)]
        ),
        case!(
            "occurred_at a year ago",
            |v| set(v, "/occurred_at", json!("2025-11-25T12:00:00Z")),
            [("occurred_at", TooOld)]
        ),
        case!(
            "occurred_at one microsecond beyond 5 min of skew",
            |v| set(v, "/occurred_at", json!("2026-11-25T12:05:00.000001Z")),
            [("occurred_at", InFuture)]
        ),
        case!(
            "occurred_at in the future via an offset",
            |v| set(v, "/occurred_at", json!("2026-11-25T13:10:00+01:00")),
            [("occurred_at", InFuture)]
        ),
        // ---- unknown and read-only fields
        case!(
            "unknown top-level field",
            |v| set(v, "/actorr", json!({})),
            [("actorr", UnknownField)]
        ),
        case!(
            "unknown top-level field with odd characters",
            |v| set(v, "/foo bar", json!(1)),
            [("[\"foo bar\"]", UnknownField)]
        ),
        case!(
            "unknown field in actor",
            |v| set(v, "/actor/email", json!("a@b")),
            [("actor.email", UnknownField)]
        ),
        case!(
            "unknown field in resource",
            |v| set(v, "/resource/name", json!("n")),
            [("resource.name", UnknownField)]
        ),
        case!(
            "unknown field in source",
            |v| set(v, "/source/env", json!("prod")),
            [("source.env", UnknownField)]
        ),
        case!(
            "unknown field in trace",
            |v| set(v, "/trace/flags", json!("01")),
            [("trace.flags", UnknownField)]
        ),
        case!(
            "unknown field in changes",
            |v| set(v, "/changes/diff", json!({})),
            [("changes.diff", UnknownField)]
        ),
        case!(
            "received_at is read-only",
            |v| set(v, "/received_at", json!("2026-11-25T12:00:00Z")),
            [("received_at", ReadOnly)]
        ),
        case!(
            "event_hash is read-only",
            |v| set(v, "/event_hash", json!("00")),
            [("event_hash", ReadOnly)]
        ),
        // ---- tenant
        case!(
            "tenant_id of another tenant",
            |v| set(v, "/tenant_id", json!("tenant-b")),
            [("tenant_id", TenantMismatch)]
        ),
        case!(
            "tenant_id differing in case",
            |v| set(v, "/tenant_id", json!("TENANT-A")),
            [("tenant_id", TenantMismatch)]
        ),
        // ---- NUL characters
        case!(
            "NUL in actor.id",
            |v| set(v, "/actor/id", json!("u\u{0}1")),
            [("actor.id", InvalidCharacter)]
        ),
        case!(
            "NUL in action",
            |v| set(v, "/action", json!("user.lo\u{0}gin")),
            [("action", InvalidCharacter)]
        ),
        case!(
            "NUL in a metadata value",
            |v| set(v, "/metadata/request_id", json!("\u{0}")),
            [("metadata.request_id", InvalidCharacter)]
        ),
        case!(
            "NUL in a metadata key",
            |v| set(v, "/metadata/a\u{0}b", json!("x")),
            [("metadata[\"a\\u0000b\"]", InvalidCharacter)]
        ),
        case!(
            "NUL in a string deep in changes",
            |v| set(v, "/changes/after/title", json!(["ok", {"x": "n\u{0}"}])),
            [("changes.after.title[1].x", InvalidCharacter)]
        ),
        case!(
            "NUL in a key inside changes",
            |v| set(v, "/changes/after/k\u{0}", json!(1)),
            [("changes.after[\"k\\u0000\"]", InvalidCharacter)]
        ),
        // ---- integers beyond 2^53
        case!(
            "2^53 + 1 in metadata",
            |v| set(v, "/metadata/big", json!(9_007_199_254_740_993_u64)),
            [("metadata.big", NumberOutOfRange)]
        ),
        case!(
            "u64::MAX in changes",
            |v| set(v, "/changes/after/n", json!(u64::MAX)),
            [("changes.after.n", NumberOutOfRange)]
        ),
        case!(
            "-(2^53 + 1) in an array in changes",
            |v| set(v, "/changes/before/list", json!([0, -9_007_199_254_740_993_i64])),
            [("changes.before.list[1]", NumberOutOfRange)]
        ),
        case!(
            "1e300 (an integral double far beyond 2^53) in metadata",
            |v| set(v, "/metadata/huge", json!(1e300)),
            [("metadata.huge", NumberOutOfRange)]
        ),
        // ---- metadata limits
        case!(
            "51 metadata keys",
            |v| set(
                v,
                "/metadata",
                Value::Object((0..51).map(|i| (format!("k{i}"), json!(i))).collect())
            ),
            [("metadata", TooMany)]
        ),
        case!(
            "metadata key of 41 characters",
            |v| set(v, &format!("/metadata/{}", "k".repeat(41)), json!(1)),
            [("metadata.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", TooLong)]
        ),
        case!(
            "empty metadata key",
            |v| set(v, "/metadata/", json!(1)),
            [("metadata[\"\"]", Empty)]
        ),
        case!(
            "metadata value of 501 characters",
            |v| set(v, "/metadata/note", json!("v".repeat(501))),
            [("metadata.note", TooLong)]
        ),
        case!(
            "metadata array value over 500 characters in canonical form",
            |v| set(v, "/metadata/list", json!(vec!["abcdefghi"; 50])),
            [("metadata.list", TooLong)]
        ),
        case!(
            "metadata value nesting 3 levels",
            |v| set(v, "/metadata/nested", json!([[[1]]])),
            [("metadata.nested", TooDeep)]
        ),
        // ---- changes limits
        case!(
            "changes over 32 KiB",
            |v| set(v, "/changes/after/blob", json!("z".repeat(33 * 1024))),
            [("changes", TooLarge)]
        ),
        case!(
            "changes nesting 33 levels",
            |v| set(v, "/changes/after", deep_array(32)),
            [("changes", TooDeep)]
        ),
        // ---- trace
        case!(
            "traceparent with a short trace id",
            |v| set(
                v,
                "/trace/traceparent",
                json!("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01")
            ),
            [("trace.traceparent", InvalidFormat)]
        ),
        case!(
            "traceparent in upper-case hex",
            |v| set(
                v,
                "/trace/traceparent",
                json!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")
            ),
            [("trace.traceparent", InvalidFormat)]
        ),
        case!(
            "traceparent with a trailing field (56 characters)",
            |v| set(
                v,
                "/trace/traceparent",
                json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-")
            ),
            [("trace.traceparent", TooLong)]
        ),
        case!(
            "traceparent with an all-zero trace id",
            |v| set(
                v,
                "/trace/traceparent",
                json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
            ),
            [("trace.traceparent", InvalidFormat)]
        ),
        case!(
            "traceparent with an all-zero parent id",
            |v| set(
                v,
                "/trace/traceparent",
                json!("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
            ),
            [("trace.traceparent", InvalidFormat)]
        ),
        case!(
            "traceparent with the forbidden version ff",
            |v| set(
                v,
                "/trace/traceparent",
                json!("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            ),
            [("trace.traceparent", InvalidFormat)]
        ),
        // ---- IP addresses
        case!(
            "IPv4 octet over 255",
            |v| set(v, "/actor/ip", json!("999.1.1.1")),
            [("actor.ip", InvalidFormat)]
        ),
        case!(
            "host name instead of an IP",
            |v| set(v, "/actor/ip", json!("localhost")),
            [("actor.ip", InvalidFormat)]
        ),
        case!(
            "IP with a port",
            |v| set(v, "/actor/ip", json!("203.0.113.7:443")),
            [("actor.ip", InvalidFormat)]
        ),
        case!(
            "IPv6 with a zone id",
            |v| set(v, "/actor/ip", json!("fe80::1%eth0")),
            [("actor.ip", InvalidFormat)]
        ),
        case!(
            "empty IP",
            |v| set(v, "/actor/ip", json!("")),
            [("actor.ip", InvalidFormat)]
        ),
        // ---- action shapes
        case!(
            "action without a dot",
            |v| set(v, "/action", json!("login")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action in upper case",
            |v| set(v, "/action", json!("User.Login")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with an empty segment",
            |v| set(v, "/action", json!("user..login")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with a leading dot",
            |v| set(v, "/action", json!(".user.login")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with a trailing dot",
            |v| set(v, "/action", json!("user.login.")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with a space",
            |v| set(v, "/action", json!("user.log in")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with a slash",
            |v| set(v, "/action", json!("user/login")),
            [("action", InvalidFormat)]
        ),
        case!(
            "action with a non-ASCII letter",
            |v| set(v, "/action", json!("usér.login")),
            [("action", InvalidFormat)]
        ),
        // ---- event id
        case!(
            "nil event_id",
            |v| set(v, "/event_id", json!("00000000-0000-0000-0000-000000000000")),
            [("event_id", InvalidValue)]
        ),
        case!(
            "event_id that is not a UUID",
            |v| set(v, "/event_id", json!("evt-1")),
            [("event_id", InvalidFormat)]
        ),
        case!(
            "event_id with a bad hex digit",
            |v| set(v, "/event_id", json!("0190f0b4-5d2e-7c3a-9f1b-2a3c4d5e6f7g")),
            [("event_id", InvalidFormat)]
        ),
        // ---- schema version
        case!(
            "schema_version 2",
            |v| set(v, "/schema_version", json!(2)),
            [("schema_version", UnsupportedVersion)]
        ),
        case!(
            "schema_version 0",
            |v| set(v, "/schema_version", json!(0)),
            [("schema_version", UnsupportedVersion)]
        ),
        case!(
            "schema_version -1",
            |v| set(v, "/schema_version", json!(-1)),
            [("schema_version", UnsupportedVersion)]
        ),
        case!(
            "schema_version 1.5",
            |v| set(v, "/schema_version", json!(1.5)),
            [("schema_version", UnsupportedVersion)]
        ),
        // ---- whole-event size
        case!(
            "event over 64 KiB in canonical form (each field within its own limit)",
            |v| {
                set(v, "/changes/after/blob", json!("z".repeat(30 * 1024)));
                // 50 keys × 500 four-byte characters ≈ 100 KB.
                let big: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!("😀".repeat(500)))).collect();
                set(v, "/metadata", Value::Object(big));
            },
            [("", TooLarge)]
        ),
    ]
}

#[test]
fn the_base_events_are_valid() {
    validate(&full()).expect("full event is valid");
    validate(&minimal()).expect("minimal event is valid");
}

#[test]
fn every_invalid_case_reports_exactly_its_problems() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case name {:?}", case.name);
        let mut v = full();
        (case.mutate)(&mut v);
        let outcome = catch_unwind(AssertUnwindSafe(|| validate(&v)));
        let result = match outcome {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{}: PANICKED", case.name));
                continue;
            }
        };
        let problems = match result {
            Ok(_) => {
                failures.push(format!("{}: accepted, expected {:?}", case.name, case.expect));
                continue;
            }
            Err(p) => p,
        };
        let got = sorted_pairs(&problems);
        let mut want: Vec<(String, Code)> = case.expect.iter().map(|(p, c)| ((*p).to_owned(), *c)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0).then(format!("{:?}", a.1).cmp(&format!("{:?}", b.1))));
        if got != want {
            failures.push(format!("{}:\n   got  {got:?}\n   want {want:?}", case.name));
        }
        for p in &problems {
            if p.message.trim().is_empty() || p.index.is_some() {
                failures.push(format!("{}: bad problem {p:?}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn several_independent_problems_are_all_reported() {
    let mut v = full();
    remove(&mut v, "/actor/id");
    set(&mut v, "/category", json!("admin"));
    set(&mut v, "/tenant_id", json!("tenant-b"));
    set(&mut v, "/colour", json!("blue"));
    set(&mut v, "/received_at", json!("2026-11-25T12:00:00Z"));
    set(&mut v, "/occurred_at", json!("2020-01-01T00:00:00Z"));
    set(&mut v, "/actor/ip", json!("not-an-ip"));
    set(&mut v, "/resource/extra", json!(1));
    set(&mut v, "/metadata/k\u{0}", json!(1));
    set(&mut v, "/metadata/big", json!(u64::MAX));
    set(&mut v, "/trace/traceparent", json!("01-xyz"));
    set(&mut v, "/source/service", json!(""));
    set(&mut v, "/schema_version", json!(2));
    set(&mut v, "/event_id", json!("nope"));
    let problems = validate(&v).unwrap_err();
    let mut want = vec![
        ("actor.id".to_owned(), Code::Required),
        ("category".to_owned(), Code::InvalidValue),
        ("tenant_id".to_owned(), Code::TenantMismatch),
        ("colour".to_owned(), Code::UnknownField),
        ("received_at".to_owned(), Code::ReadOnly),
        ("occurred_at".to_owned(), Code::TooOld),
        ("actor.ip".to_owned(), Code::InvalidFormat),
        ("resource.extra".to_owned(), Code::UnknownField),
        ("metadata[\"k\\u0000\"]".to_owned(), Code::InvalidCharacter),
        ("metadata.big".to_owned(), Code::NumberOutOfRange),
        ("trace.traceparent".to_owned(), Code::InvalidFormat),
        ("source.service".to_owned(), Code::Empty),
        ("schema_version".to_owned(), Code::UnsupportedVersion),
        ("event_id".to_owned(), Code::InvalidFormat),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0).then(format!("{:?}", a.1).cmp(&format!("{:?}", b.1))));
    assert_eq!(sorted_pairs(&problems), want);
}

#[test]
fn problems_render_with_path_and_code() {
    let mut v = full();
    remove(&mut v, "/actor/id");
    let problems = validate(&v).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].to_string(), "actor.id: required: is required");
    let batch = problems[0].clone().in_batch(3);
    assert_eq!(batch.path, "events[3].actor.id");
    assert_eq!(batch.index, Some(3));
    let json = serde_json::to_value(&batch).unwrap();
    assert_eq!(json["code"], "required");
    assert_eq!(json["index"], 3);
}

// ---- JSON-level rejections: these never reach the validator.

#[test]
fn strict_json_rejects_what_must_not_reach_validation() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let cases: Vec<(&str, Vec<u8>, ErrorCheck)> = vec![
        ("lone 0xff byte", b"{\"a\":\"\xff\"}".to_vec(), |e| {
            *e == JsonError::InvalidUtf8(6)
        }),
        ("truncated UTF-8 sequence", b"{\"a\":\"\xe2\x82\"}".to_vec(), |e| {
            *e == JsonError::InvalidUtf8(6)
        }),
        (
            "UTF-16 surrogate encoded as UTF-8 (CESU)",
            b"\"\xed\xa0\x80\"".to_vec(),
            |e| *e == JsonError::InvalidUtf8(1),
        ),
        ("Latin-1 body", b"{\"actor\":\"Jos\xe9\"}".to_vec(), |e| {
            *e == JsonError::InvalidUtf8(13)
        }),
        ("lone surrogate escape", br#"{"a":"\ud800"}"#.to_vec(), is_syntax),
        (
            "duplicate top-level key",
            br#"{"action":"a.b","action":"c.d"}"#.to_vec(),
            |e| e.to_string().contains("duplicate key `action`"),
        ),
        (
            "duplicate nested key",
            br#"{"actor":{"id":"a","id":"b"}}"#.to_vec(),
            |e| e.to_string().contains("duplicate key `id`"),
        ),
        (
            "duplicate key via an escape",
            br#"{"id":1,"\u0069d":2}"#.to_vec(),
            |e| e.to_string().contains("duplicate key `id`"),
        ),
        ("200 nested arrays", deep.into_bytes(), is_syntax),
        ("200 nested objects", deep_obj.into_bytes(), is_syntax),
        ("trailing garbage", b"{} x".to_vec(), is_syntax),
        ("two documents", b"{}{}".to_vec(), is_syntax),
        ("empty body", b"".to_vec(), is_syntax),
        ("NaN", b"{\"a\":NaN}".to_vec(), is_syntax),
        ("number overflowing a double", b"{\"a\":1e400}".to_vec(), is_syntax),
        ("single quotes", b"{'a':1}".to_vec(), is_syntax),
        ("trailing comma", b"{\"a\":1,}".to_vec(), is_syntax),
        ("raw control character in a string", b"\"a\x01\"".to_vec(), is_syntax),
    ];
    for (name, bytes, ok) in cases {
        let result = catch_unwind(|| parse_strict(&bytes)).unwrap_or_else(|_| panic!("{name}: panicked"));
        match result {
            Err(e) => assert!(ok(&e), "{name}: unexpected error {e:?}"),
            Ok(v) => panic!("{name}: accepted as {v}"),
        }
    }
}

type ErrorCheck = fn(&JsonError) -> bool;

fn is_syntax(e: &JsonError) -> bool {
    matches!(e, JsonError::Syntax(_))
}

#[test]
fn big_integers_survive_strict_parsing_and_are_then_refused() {
    let mut text = serde_json::to_string(&full()).unwrap();
    text.insert_str(text.len() - 1, r#","extra_probe":0"#);
    // Put the number in as text so that no f64 conversion happens before validation.
    let text = text.replace(r#""attempt":2"#, r#""attempt":9007199254740993"#);
    let v = parse_strict(text.as_bytes()).unwrap();
    let problems = validate(&v).unwrap_err();
    assert_eq!(
        sorted_pairs(&problems),
        vec![
            ("extra_probe".to_owned(), Code::UnknownField),
            ("metadata.attempt".to_owned(), Code::NumberOutOfRange),
        ]
    );
}

// ---- valid events

#[test]
fn minimal_event_is_accepted_and_filled_in() {
    let e = validate(&minimal()).unwrap();
    assert_eq!(e.tenant_id, TENANT);
    assert_eq!(e.received_at, now());
    assert_eq!(e.occurred_at, Utc.with_ymd_and_hms(2026, 11, 25, 11, 59, 0).unwrap());
    assert_eq!(e.category, Category::Security);
    assert_eq!(e.outcome, Outcome::Failure);
    assert_eq!(e.action, "key.rotate");
    assert_eq!(e.actor.id, "svc-1");
    assert_eq!(e.actor.actor_type, ActorType::Service);
    assert_eq!(e.source.service, "kms");
    assert_eq!(e.schema_version, 1);
    assert!(e.resource.is_none() && e.changes.is_none() && e.metadata.is_none());
    assert!(e.correlation_id.is_none() && e.causation_id.is_none() && e.trace.is_none());
    assert!(e.actor.display.is_none() && e.actor.ip.is_none() && e.actor.user_agent.is_none());
    assert!(e.source.version.is_none() && e.source.host.is_none() && e.source.region.is_none());
}

#[test]
fn full_event_keeps_every_field() {
    let e = validate(&full()).unwrap();
    assert_eq!(e.event_id, Uuid::parse_str(EVENT_ID).unwrap());
    assert_eq!(e.category, Category::Audit);
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.actor.actor_type, ActorType::User);
    assert_eq!(e.actor.display.as_deref(), Some("Ada Lovelace"));
    assert_eq!(e.actor.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.actor.user_agent.as_deref(), Some("curl/8.5.0"));
    let r = e.resource.as_ref().unwrap();
    assert_eq!((r.resource_type.as_str(), r.id.as_str()), ("document", "doc_9"));
    assert_eq!(r.display.as_deref(), Some("Q3 plan"));
    let c = e.changes.as_ref().unwrap();
    assert_eq!(c.before, Some(json!({"title": "old"})));
    assert_eq!(c.after, Some(json!({"title": "new", "tags": [1, 2.5]})));
    assert_eq!(e.metadata.as_ref().unwrap(), full()["metadata"].as_object().unwrap());
    assert_eq!(e.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(e.causation_id.as_deref(), Some("cause-1"));
    let t = e.trace.as_ref().unwrap();
    assert_eq!(t.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(e.source.region.as_deref(), Some("eu-west-1"));
    // The envelope as JSON is the input plus received_at, with occurred_at normalised.
    let mut expected = full();
    set(&mut expected, "/received_at", json!("2026-11-25T12:00:00.000000Z"));
    set(&mut expected, "/occurred_at", json!("2026-11-25T11:59:00.000000Z"));
    assert_eq!(e.to_json_value(), expected);
}

#[test]
fn offsets_are_normalised_to_utc() {
    let mut v = minimal();
    set(&mut v, "/occurred_at", json!("2026-11-25T13:30:00.5+02:00"));
    let e = validate(&v).unwrap();
    assert_eq!(
        e.occurred_at,
        Utc.with_ymd_and_hms(2026, 11, 25, 11, 30, 0).unwrap() + TimeDelta::milliseconds(500)
    );
    assert_eq!(e.to_json_value()["occurred_at"], json!("2026-11-25T11:30:00.500000Z"));
    // A negative offset across midnight.
    set(&mut v, "/occurred_at", json!("2026-11-24T23:00:00-05:30"));
    let e = validate(&v).unwrap();
    assert_eq!(e.to_json_value()["occurred_at"], json!("2026-11-25T04:30:00.000000Z"));
}

#[test]
fn fractional_seconds_are_truncated_to_microseconds() {
    let mut v = minimal();
    set(&mut v, "/occurred_at", json!("2026-11-25T11:59:59.123456999Z"));
    let e = validate(&v).unwrap();
    assert_eq!(e.occurred_at.nanosecond(), 123_456_000);
    assert_eq!(e.to_json_value()["occurred_at"], json!("2026-11-25T11:59:59.123456Z"));
    // Truncated, not rounded: .9999999 does not carry into the next second.
    set(&mut v, "/occurred_at", json!("2026-11-25T11:59:59.9999999Z"));
    let e = validate(&v).unwrap();
    assert_eq!(e.to_json_value()["occurred_at"], json!("2026-11-25T11:59:59.999999Z"));
    // received_at is truncated too.
    let c = Context {
        now: now() + TimeDelta::nanoseconds(1_999),
        ..ctx()
    };
    let e = validate_event(&minimal(), &c).unwrap();
    assert_eq!(e.received_at, now() + TimeDelta::microseconds(1));
}

#[test]
fn the_time_window_is_inclusive_at_both_ends() {
    let mut v = minimal();
    set(&mut v, "/occurred_at", json!("2026-11-22T12:00:00Z"));
    validate(&v).expect("exactly 72 h old is accepted");
    set(&mut v, "/occurred_at", json!("2026-11-25T12:05:00Z"));
    validate(&v).expect("exactly 5 min ahead is accepted");
    let c = Context {
        window: TimeWindow {
            max_lateness: TimeDelta::hours(1),
            max_skew: TimeDelta::zero(),
        },
        ..ctx()
    };
    set(&mut v, "/occurred_at", json!("2026-11-25T10:59:59Z"));
    let p = validate_event(&v, &c).unwrap_err();
    assert_eq!(sorted_pairs(&p), vec![("occurred_at".to_owned(), Code::TooOld)]);
    set(&mut v, "/occurred_at", json!("2026-11-25T12:00:01Z"));
    let p = validate_event(&v, &c).unwrap_err();
    assert_eq!(sorted_pairs(&p), vec![("occurred_at".to_owned(), Code::InFuture)]);
}

#[test]
fn missing_event_id_gets_a_uuid_v7() {
    let a = validate(&minimal()).unwrap();
    let b = validate(&minimal()).unwrap();
    assert_eq!(a.event_id.get_version_num(), 7);
    assert_eq!(b.event_id.get_version_num(), 7);
    assert_ne!(a.event_id, b.event_id);
    // null means absent.
    let mut v = minimal();
    set(&mut v, "/event_id", Value::Null);
    assert_eq!(validate(&v).unwrap().event_id.get_version_num(), 7);
}

#[test]
fn id_if_missing_is_used_only_when_the_event_has_no_id() {
    let key_id = stele_core::event_id_from_idempotency_key(TENANT, "key-1");
    let c = Context {
        id_if_missing: Some(key_id),
        ..ctx()
    };
    assert_eq!(validate_event(&minimal(), &c).unwrap().event_id, key_id);
    assert_eq!(
        validate_event(&full(), &c).unwrap().event_id,
        Uuid::parse_str(EVENT_ID).unwrap()
    );
    assert_eq!(
        stele_core::event_id_from_idempotency_key(TENANT, "key-1"),
        key_id,
        "the idempotency id is deterministic"
    );
    assert_ne!(stele_core::event_id_from_idempotency_key("tenant-b", "key-1"), key_id);
}

/// Issue 18: batch ids were the single-event ids of `{key}#{i}`, so the key
/// `x#1` of one request gave the id of event 1 of batch `x`.
#[test]
fn batch_idempotency_ids_cannot_be_forged_by_a_key() {
    use stele_core::{event_id_from_idempotency_key as single, event_id_from_idempotency_key_in_batch as batch};
    assert_ne!(single(TENANT, "x#1"), batch(TENANT, "x", 1));
    assert_ne!(single(TENANT, "x"), batch(TENANT, "x", 0));
    // Length prefixes: moving bytes between tenant and key, or key and index, changes the input.
    assert_ne!(batch("ab", "c", 0), batch("a", "bc", 0));
    assert_ne!(batch(TENANT, "x1", 0), batch(TENANT, "x", 10));
    assert_ne!(batch(TENANT, "x", 1), batch("tenant-b", "x", 1));
    assert_eq!(batch(TENANT, "x", 7), batch(TENANT, "x", 7), "deterministic");
}

#[test]
fn optional_nulls_mean_absent_and_limits_are_inclusive() {
    let mut v = full();
    for p in [
        "/resource",
        "/changes",
        "/metadata",
        "/trace",
        "/correlation_id",
        "/actor/ip",
        "/tenant_id",
    ] {
        set(&mut v, p, Value::Null);
    }
    let e = validate(&v).unwrap();
    assert!(e.resource.is_none() && e.changes.is_none() && e.metadata.is_none());
    assert!(e.trace.is_none() && e.correlation_id.is_none() && e.actor.ip.is_none());

    let mut v = full();
    set(&mut v, "/action", json!(format!("a.{}", "b".repeat(126))));
    set(&mut v, "/actor/id", json!("é".repeat(256)));
    set(&mut v, "/actor/ip", json!("2001:db8::1"));
    set(
        &mut v,
        "/metadata",
        Value::Object((0..50).map(|i| (format!("{i:0>40}"), json!("v".repeat(500)))).collect()),
    );
    set(&mut v, "/changes/after", deep_array(31));
    set(
        &mut v,
        "/changes/before",
        json!({"max": 9_007_199_254_740_992_u64, "min": -9_007_199_254_740_992_i64}),
    );
    let e = validate(&v).expect("every value at its limit is accepted");
    assert_eq!(e.action.len(), 128);
}

#[test]
fn equivalent_numbers_are_stored_in_canonical_form() {
    // 5.0 and 5 are the same JSON number; the accepted event holds the canonical one,
    // so what ingest accepted is exactly what the batch-writer reads back.
    let mut v = full();
    set(&mut v, "/metadata/attempt", json!(2.0));
    set(&mut v, "/changes/after/x", json!(-0.0));
    let e = validate(&v).unwrap();
    assert_eq!(e.metadata.as_ref().unwrap()["attempt"], json!(2));
    assert_eq!(e.changes.as_ref().unwrap().after.as_ref().unwrap()["x"], json!(0));
    let opened = stele_core::SealedEvent::open(&e.clone().seal().record).unwrap();
    assert_eq!(opened.event, e);
}
