//! The validator as it was before issue 19's codec work, kept as the
//! reference of the differential tests in `validate.rs`: the faster walk must
//! report the same problems, in the same order, with the same paths and
//! messages, and build the same event.
#![allow(dead_code)]

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{
    timestamp, Actor, ActorType, Category, Changes, Event, Outcome, Resource, Source, Trace, SCHEMA_VERSION,
};
use crate::limits;
use crate::validate::{Code, Context, Problem, ProblemList};

/// Validate one client event and build the accepted, normalised [`Event`].
/// Every problem is found; at most [`limits::MAX_PROBLEMS_LISTED`] are returned.
pub fn validate_event(value: &Value, ctx: &Context<'_>) -> Result<Event, Vec<Problem>> {
    let mut problems = ProblemList::new(limits::MAX_PROBLEMS_LISTED);
    validate_event_into(value, ctx, None, &mut problems).ok_or_else(|| problems.into_listed())
}

/// [`validate_event`] for event `index` of a batch (`None`: a single event),
/// noting its problems, placed at `events[index].…`, in `problems`: one list
/// for a whole request, so that its memory is bounded by the list's cap
/// whatever the body holds. `None` when the event is invalid.
pub fn validate_event_into(
    value: &Value,
    ctx: &Context<'_>,
    index: Option<usize>,
    problems: &mut ProblemList,
) -> Option<Event> {
    let mut w = Walker {
        out: problems,
        index,
        found: 0,
    };
    let Some(obj) = value.as_object() else {
        w.push(
            "",
            Code::InvalidType,
            format!("an event must be a JSON object, got {}", type_name(value)),
        );
        return None;
    };
    w.unknown_fields(obj, "", TOP_LEVEL_FIELDS);
    for server_field in ["received_at", "event_hash"] {
        if obj.contains_key(server_field) {
            w.push(
                server_field,
                Code::ReadOnly,
                format!("{server_field} is set by the server; leave it out"),
            );
        }
    }

    let event_id = match present(obj, "event_id") {
        None => Some(ctx.id_if_missing.unwrap_or_else(Uuid::now_v7)),
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) if !id.is_nil() => Some(id),
            Ok(_) => w.fail("event_id", Code::InvalidValue, "event_id must not be the nil UUID"),
            Err(_) => w.fail(
                "event_id",
                Code::InvalidFormat,
                "event_id must be a UUID (e.g. 0190f0b4-…)",
            ),
        },
        Some(other) => w.fail("event_id", Code::InvalidType, expected("a UUID string", other)),
    };

    match present(obj, "tenant_id") {
        None => {}
        Some(Value::String(s)) if s == ctx.tenant_id => {}
        Some(Value::String(_)) => {
            w.push(
                "tenant_id",
                Code::TenantMismatch,
                "tenant_id differs from the authenticated tenant; leave it out or send your own",
            );
        }
        Some(other) => w.push("tenant_id", Code::InvalidType, expected("a string", other)),
    }

    let occurred_at = w.occurred_at(obj, ctx);
    let category = w.enumeration(obj, "", "category", &Category::ALL, parse_category);
    let action = w.action(obj);
    let outcome = w.enumeration(obj, "", "outcome", &Outcome::ALL, parse_outcome);
    let actor = w.actor(obj);
    let resource = w.resource(obj);
    let changes = w.changes(obj);
    let metadata = w.metadata(obj);
    let correlation_id = w.opt_string(obj, "", "correlation_id", limits::MAX_ID_CHARS);
    let causation_id = w.opt_string(obj, "", "causation_id", limits::MAX_ID_CHARS);
    let trace = w.trace(obj);
    let source = w.source(obj);

    match present(obj, "schema_version") {
        None => {}
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(v) if v.is_number() => w.push(
            "schema_version",
            Code::UnsupportedVersion,
            format!("schema_version must be {SCHEMA_VERSION}"),
        ),
        Some(other) => w.push("schema_version", Code::InvalidType, expected("an integer", other)),
    }

    let built = (|| {
        Some(Event {
            event_id: event_id?,
            tenant_id: ctx.tenant_id.to_owned(),
            occurred_at: occurred_at?,
            received_at: crate::event::truncate_to_micros(ctx.now),
            category: category?,
            action: action?,
            outcome: outcome?,
            actor: actor?,
            resource: resource?,
            changes: changes?,
            metadata: metadata?,
            correlation_id: correlation_id?,
            causation_id: causation_id?,
            trace: trace?,
            source: source?,
            schema_version: SCHEMA_VERSION,
        })
    })();
    match built {
        Some(event) if w.found == 0 => {
            let size = event.canonical_bytes().len();
            if size > limits::MAX_EVENT_BYTES {
                w.push(
                    "",
                    Code::TooLarge,
                    format!(
                        "event is {size} bytes in canonical form; the limit is {}",
                        limits::MAX_EVENT_BYTES
                    ),
                );
                return None;
            }
            Some(event)
        }
        _ => None,
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "event_id",
    "tenant_id",
    "occurred_at",
    "received_at",
    "category",
    "action",
    "outcome",
    "actor",
    "resource",
    "changes",
    "metadata",
    "correlation_id",
    "causation_id",
    "trace",
    "source",
    "schema_version",
    "event_hash",
];

fn parse_category(s: &str) -> Option<Category> {
    Some(match s {
        "audit" => Category::Audit,
        "security" => Category::Security,
        "application" => Category::Application,
        _ => return None,
    })
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s {
        "success" => Outcome::Success,
        "failure" => Outcome::Failure,
        "denied" => Outcome::Denied,
        "error" => Outcome::Error,
        "unknown" => Outcome::Unknown,
        _ => return None,
    })
}

fn parse_actor_type(s: &str) -> Option<ActorType> {
    Some(match s {
        "user" => ActorType::User,
        "service" => ActorType::Service,
        "system" => ActorType::System,
        "api_key" => ActorType::ApiKey,
        _ => return None,
    })
}

/// A member that is present and not `null` (null means absent for optional fields).
fn present<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// `join` into a path buffer.
fn push_key(path: &mut String, key: &str) {
    let simple = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if simple {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

fn join(prefix: &str, key: &str) -> String {
    let simple = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (prefix.is_empty(), simple) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{prefix}.{key}"),
        (_, false) => format!("{prefix}[{}]", Value::String(key.to_owned())),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(what: &str, got: &Value) -> String {
    format!("must be {what}, got {}", type_name(got))
}

/// An integer that a double cannot hold exactly. Integers are checked as
/// integers: converting 2^53 + 1 to `f64` first would round it to 2^53 and let
/// it through, silently changed.
fn integer_out_of_range(n: &serde_json::Number) -> bool {
    const MAX: u64 = limits::MAX_EXACT_INTEGER as u64;
    if let Some(u) = n.as_u64() {
        u > MAX
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() > MAX
    } else {
        n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() > limits::MAX_EXACT_INTEGER)
    }
}

/// The value as it reads back from its canonical form (e.g. `5.0` becomes `5`,
/// `-0.0` becomes `0`), so that an accepted event equals the event that
/// `SealedEvent::open` rebuilds from the stream record.
fn canonical_value(v: &Value) -> Value {
    serde_json::from_slice(&crate::canonical::to_canonical_vec(v)).unwrap_or_else(|_| v.clone())
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

struct Walker<'p> {
    out: &'p mut ProblemList,
    /// Position in a batch, for placing problems.
    index: Option<usize>,
    /// Problems of this event, kept or not.
    found: usize,
}

impl Walker<'_> {
    fn push(&mut self, path: impl Into<String>, code: Code, message: impl Into<String>) {
        self.found += 1;
        let index = self.index;
        self.out.note(index, code, || {
            let p = Problem::new(path, code, message);
            match index {
                Some(i) => p.in_batch(i),
                None => p,
            }
        });
    }

    /// Record a problem and yield "no value" for that field.
    fn fail<T>(&mut self, path: impl Into<String>, code: Code, message: impl Into<String>) -> Option<T> {
        self.push(path, code, message);
        None
    }

    fn unknown_fields(&mut self, obj: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.found += 1;
            let index = self.index;
            // Built only while the list has room: a body of 100 000 unknown
            // keys is counted, not copied.
            self.out.note(index, Code::UnknownField, || {
                let p = Problem::new(
                    join(prefix, key),
                    Code::UnknownField,
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
                match index {
                    Some(i) => p.in_batch(i),
                    None => p,
                }
            });
        }
    }

    /// Checks shared by every string field: type, NUL, length.
    fn string_value(&mut self, path: &str, v: &Value, max_chars: usize) -> Option<String> {
        let Value::String(s) = v else {
            return self.fail(path, Code::InvalidType, expected("a string", v));
        };
        if s.contains('\0') {
            return self.fail(
                path,
                Code::InvalidCharacter,
                "must not contain the NUL character (U+0000)",
            );
        }
        let chars = s.chars().count();
        if chars > max_chars {
            return self.fail(
                path,
                Code::TooLong,
                format!("is {chars} characters; the limit is {max_chars}"),
            );
        }
        Some(s.clone())
    }

    fn req_string(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, max_chars: usize) -> Option<String> {
        let path = join(prefix, key);
        let Some(v) = present(obj, key) else {
            return self.fail(path, Code::Required, "is required");
        };
        let s = self.string_value(&path, v, max_chars)?;
        if s.trim().is_empty() {
            return self.fail(path, Code::Empty, "must not be empty");
        }
        Some(s)
    }

    /// `Some(None)` when absent, `None` when invalid.
    fn opt_string(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        max_chars: usize,
    ) -> Option<Option<String>> {
        match present(obj, key) {
            None => Some(None),
            Some(v) => self.string_value(&join(prefix, key), v, max_chars).map(Some),
        }
    }

    /// `Some(None)` when absent or null, `None` when invalid.
    fn opt_object<'v>(&mut self, obj: &'v Map<String, Value>, key: &str) -> Option<Option<&'v Map<String, Value>>> {
        match present(obj, key) {
            None => Some(None),
            Some(Value::Object(m)) => Some(Some(m)),
            Some(other) => self.fail(key, Code::InvalidType, expected("an object", other)),
        }
    }

    fn req_object<'v>(&mut self, obj: &'v Map<String, Value>, key: &str) -> Option<&'v Map<String, Value>> {
        match present(obj, key) {
            None => self.fail(key, Code::Required, "is required"),
            Some(Value::Object(m)) => Some(m),
            Some(other) => self.fail(key, Code::InvalidType, expected("an object", other)),
        }
    }

    fn enumeration<T>(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        allowed: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let path = join(prefix, key);
        match present(obj, key) {
            None => self.fail(
                path,
                Code::Required,
                format!("is required; one of: {}", allowed.join(", ")),
            ),
            Some(Value::String(s)) => match parse(s) {
                Some(v) => Some(v),
                None => self.fail(
                    path,
                    Code::InvalidValue,
                    format!("must be one of: {}", allowed.join(", ")),
                ),
            },
            Some(other) => self.fail(path, Code::InvalidType, expected("a string", other)),
        }
    }

    fn occurred_at(&mut self, obj: &Map<String, Value>, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        let raw = self.req_string(obj, "", "occurred_at", 64)?;
        let Some(t) = timestamp::parse(&raw) else {
            return self.fail(
                "occurred_at",
                Code::InvalidFormat,
                "must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-25T12:00:00Z",
            );
        };
        if t < ctx.now - ctx.window.max_lateness {
            return self.fail(
                "occurred_at",
                Code::TooOld,
                format!("is more than {} h in the past", ctx.window.max_lateness.num_hours()),
            );
        }
        if t > ctx.now + ctx.window.max_skew {
            return self.fail(
                "occurred_at",
                Code::InFuture,
                format!("is more than {} s in the future", ctx.window.max_skew.num_seconds()),
            );
        }
        Some(t)
    }

    fn action(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let action = self.req_string(obj, "", "action", limits::MAX_ACTION_CHARS)?;
        let charset_ok = action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
        let shape_ok = action.contains('.') && action.split('.').all(|part| !part.is_empty());
        if !(charset_ok && shape_ok) {
            return self.fail(
                "action",
                Code::InvalidFormat,
                "must look like noun.verb (e.g. user.login): lowercase letters, digits, '_', '-', separated by '.'",
            );
        }
        Some(action)
    }

    fn actor(&mut self, obj: &Map<String, Value>) -> Option<Actor> {
        let actor = self.req_object(obj, "actor")?;
        self.unknown_fields(actor, "actor", &["id", "type", "display", "ip", "user_agent"]);
        let id = self.req_string(actor, "actor", "id", limits::MAX_ID_CHARS);
        let actor_type = self.enumeration(actor, "actor", "type", &ActorType::ALL, parse_actor_type);
        let display = self.opt_string(actor, "actor", "display", limits::MAX_DISPLAY_CHARS);
        let ip = match self.opt_string(actor, "actor", "ip", 64) {
            Some(Some(ip)) if ip.parse::<IpAddr>().is_err() => {
                self.fail("actor.ip", Code::InvalidFormat, "must be an IPv4 or IPv6 address")
            }
            other => other,
        };
        let user_agent = self.opt_string(actor, "actor", "user_agent", limits::MAX_USER_AGENT_CHARS);
        Some(Actor {
            id: id?,
            actor_type: actor_type?,
            display: display?,
            ip: ip?,
            user_agent: user_agent?,
        })
    }

    fn resource(&mut self, obj: &Map<String, Value>) -> Option<Option<Resource>> {
        let Some(resource) = self.opt_object(obj, "resource")? else {
            return Some(None);
        };
        self.unknown_fields(resource, "resource", &["type", "id", "display"]);
        let resource_type = self.req_string(resource, "resource", "type", limits::MAX_ID_CHARS);
        let id = self.req_string(resource, "resource", "id", limits::MAX_ID_CHARS);
        let display = self.opt_string(resource, "resource", "display", limits::MAX_DISPLAY_CHARS);
        Some(Some(Resource {
            resource_type: resource_type?,
            id: id?,
            display: display?,
        }))
    }

    /// Free-form JSON is stored as `jsonb`: no NUL anywhere, integers exact.
    /// Callers check the value's size first; the walk itself keeps one path
    /// buffer and builds problems only while the list has room.
    fn free_json(&mut self, path: &str, v: &Value) -> bool {
        let before = self.found;
        let mut buf = String::from(path);
        self.free_json_at(&mut buf, v);
        self.found == before
    }

    fn note_at(&mut self, path: &str, code: Code, message: &str) {
        self.found += 1;
        let index = self.index;
        self.out.note(index, code, || {
            let p = Problem::new(path, code, message);
            match index {
                Some(i) => p.in_batch(i),
                None => p,
            }
        });
    }

    fn free_json_at(&mut self, path: &mut String, v: &Value) {
        use std::fmt::Write;
        match v {
            Value::String(s) if s.contains('\0') => {
                self.note_at(
                    path,
                    Code::InvalidCharacter,
                    "must not contain the NUL character (U+0000)",
                );
            }
            Value::Number(n) if integer_out_of_range(n) => {
                self.note_at(
                    path,
                    Code::NumberOutOfRange,
                    "integers must be within ±2^53 to survive canonical JSON exactly; send larger ones as strings",
                );
            }
            Value::Array(items) => {
                let len = path.len();
                for (i, item) in items.iter().enumerate() {
                    let _ = write!(path, "[{i}]");
                    self.free_json_at(path, item);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                let len = path.len();
                for (k, item) in map {
                    push_key(path, k);
                    if k.contains('\0') {
                        self.note_at(path, Code::InvalidCharacter, "keys must not contain NUL (U+0000)");
                    }
                    self.free_json_at(path, item);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn changes(&mut self, obj: &Map<String, Value>) -> Option<Option<Changes>> {
        let Some(changes) = self.opt_object(obj, "changes")? else {
            return Some(None);
        };
        self.unknown_fields(changes, "changes", &["before", "after"]);
        // Size first: an over-size `changes` is refused before it is walked
        // (counting stops just past the limit).
        let size = crate::canonical::canonical_object_len_within(changes, limits::MAX_CHANGES_BYTES);
        if size > limits::MAX_CHANGES_BYTES {
            return self.fail(
                "changes",
                Code::TooLarge,
                format!("is over {} bytes in canonical form", limits::MAX_CHANGES_BYTES),
            );
        }
        let depth = 1 + changes.values().map(json_depth).max().unwrap_or(0);
        if depth > limits::MAX_JSON_DEPTH {
            return self.fail(
                "changes",
                Code::TooDeep,
                format!("nests {depth} levels; the limit is {}", limits::MAX_JSON_DEPTH),
            );
        }
        let mut ok = true;
        for (key, value) in changes {
            let path = join("changes", key);
            if key.contains('\0') {
                self.note_at(&path, Code::InvalidCharacter, "keys must not contain NUL (U+0000)");
                ok = false;
            }
            ok &= self.free_json(&path, value);
        }
        if !ok {
            return None;
        }
        Some(Some(Changes {
            before: present(changes, "before").map(canonical_value),
            after: present(changes, "after").map(canonical_value),
        }))
    }

    fn metadata(&mut self, obj: &Map<String, Value>) -> Option<Option<Map<String, Value>>> {
        let Some(metadata) = self.opt_object(obj, "metadata")? else {
            return Some(None);
        };
        let before = self.found;
        if metadata.len() > limits::MAX_METADATA_KEYS {
            self.push(
                "metadata",
                Code::TooMany,
                format!(
                    "has {} keys; the limit is {}",
                    metadata.len(),
                    limits::MAX_METADATA_KEYS
                ),
            );
        }
        for (key, value) in metadata {
            let path = join("metadata", key);
            let key_chars = key.chars().count();
            if key.contains('\0') {
                self.push(&path, Code::InvalidCharacter, "keys must not contain NUL (U+0000)");
            }
            if key.is_empty() {
                self.push(&path, Code::Empty, "metadata keys must not be empty");
            } else if key_chars > limits::MAX_METADATA_KEY_CHARS {
                self.push(
                    &path,
                    Code::TooLong,
                    format!(
                        "key is {key_chars} characters; the limit is {}",
                        limits::MAX_METADATA_KEY_CHARS
                    ),
                );
            }
            // Size first: a value whose canonical form is over 4 bytes per
            // allowed character is too long whatever it holds, and is not walked.
            let max_bytes = 4 * limits::MAX_METADATA_VALUE_CHARS;
            if !value.is_string() && crate::canonical::canonical_len_within(value, max_bytes) > max_bytes {
                self.push(
                    &path,
                    Code::TooLong,
                    format!(
                        "value is over {} characters; the limit is {}",
                        limits::MAX_METADATA_VALUE_CHARS,
                        limits::MAX_METADATA_VALUE_CHARS
                    ),
                );
                continue;
            }
            if !self.free_json(&path, value) {
                continue;
            }
            let value_chars = match value {
                Value::String(s) => s.chars().count(),
                other => crate::canonical::to_canonical_string(other).chars().count(),
            };
            if json_depth(value) > 2 {
                self.push(
                    &path,
                    Code::TooDeep,
                    "metadata values may nest at most 2 levels; use `changes` for documents",
                );
            } else if value_chars > limits::MAX_METADATA_VALUE_CHARS {
                self.push(
                    &path,
                    Code::TooLong,
                    format!(
                        "value is {value_chars} characters; the limit is {}",
                        limits::MAX_METADATA_VALUE_CHARS
                    ),
                );
            }
        }
        (self.found == before).then(|| Some(metadata.iter().map(|(k, v)| (k.clone(), canonical_value(v))).collect()))
    }

    fn trace(&mut self, obj: &Map<String, Value>) -> Option<Option<Trace>> {
        let Some(trace) = self.opt_object(obj, "trace")? else {
            return Some(None);
        };
        self.unknown_fields(trace, "trace", &["traceparent", "tracestate"]);
        let traceparent = match self.req_string(trace, "trace", "traceparent", 55) {
            Some(tp) if !is_traceparent(&tp) => self.fail(
                "trace.traceparent",
                Code::InvalidFormat,
                "must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero",
            ),
            other => other,
        };
        let tracestate = self.opt_string(trace, "trace", "tracestate", 512);
        Some(Some(Trace {
            traceparent: traceparent?,
            tracestate: tracestate?,
        }))
    }

    fn source(&mut self, obj: &Map<String, Value>) -> Option<Source> {
        let source = self.req_object(obj, "source")?;
        self.unknown_fields(source, "source", &["service", "version", "host", "region"]);
        let service = self.req_string(source, "source", "service", limits::MAX_ID_CHARS);
        let version = self.opt_string(source, "source", "version", 64);
        let host = self.opt_string(source, "source", "host", limits::MAX_DISPLAY_CHARS);
        let region = self.opt_string(source, "source", "region", 64);
        Some(Source {
            service: service?,
            version: version?,
            host: host?,
            region: region?,
        })
    }
}

fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let not_zero = |p: &str| p.bytes().any(|b| b != b'0');
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && not_zero(parts[1])
        && hex(parts[2], 16)
        && not_zero(parts[2])
        && hex(parts[3], 2)
}
