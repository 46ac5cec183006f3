//! Validation of client events: every problem is reported, each with its path,
//! a stable machine code and a message a person can act on.
//!
//! The walker reads a `serde_json::Value` rather than deserialising into
//! `Event`, because serde stops at the first error; here one pass over the
//! event collects all of them.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{
    timestamp, Actor, ActorType, Category, Changes, Event, Outcome, Resource, Source, Trace, SCHEMA_VERSION,
};
use crate::limits;

/// A stable, machine-readable reason. Clients may branch on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// A required field is absent or null.
    Required,
    /// The JSON type is wrong (e.g. a number where a string belongs).
    InvalidType,
    /// A string does not have the required format (UUID, RFC 3339, IP, action…).
    InvalidFormat,
    /// A value is not one of the allowed values of an enumeration.
    InvalidValue,
    /// A required string is empty.
    Empty,
    /// A string has more characters than allowed.
    TooLong,
    /// A value or the whole event is over its byte limit.
    TooLarge,
    /// An object has more members than allowed.
    TooMany,
    /// JSON nesting is deeper than allowed.
    TooDeep,
    /// `occurred_at` is older than the maximum lateness.
    TooOld,
    /// `occurred_at` is further in the future than the allowed clock skew.
    InFuture,
    /// A field that the schema does not know.
    UnknownField,
    /// A field only the server sets.
    ReadOnly,
    /// The body names another tenant than the authenticated one.
    TenantMismatch,
    /// A string contains a character that cannot be stored (NUL).
    InvalidCharacter,
    /// An integer beyond ±2^53, which JSON canonicalisation cannot carry exactly.
    NumberOutOfRange,
    /// A `schema_version` this server does not speak.
    UnsupportedVersion,
    /// The body is not valid JSON / UTF-8.
    InvalidJson,
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Position of the event in a batch; absent for a single event or the whole body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// JSON path, e.g. `events[3].actor.id`; empty for the whole body.
    pub path: String,
    pub code: Code,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        Self {
            index: None,
            path: path.into(),
            code,
            message: message.into(),
        }
    }

    /// Place the problem inside a batch body: `events[i].` + path.
    pub fn in_batch(mut self, index: usize) -> Self {
        self.index = Some(index);
        self.path = if self.path.is_empty() {
            format!("events[{index}]")
        } else {
            format!("events[{index}].{}", self.path)
        };
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code).ok();
        let code = code.as_ref().and_then(Value::as_str).unwrap_or("?");
        if self.path.is_empty() {
            write!(f, "{code}: {}", self.message)
        } else {
            write!(f, "{}: {code}: {}", self.path, self.message)
        }
    }
}

/// The problems of one request: every one counted, the first `cap` kept.
///
/// A hostile body can hold hundreds of thousands of problems; keeping them all
/// cost memory (and an answer over Lambda's 6 MB response limit). Past the cap
/// a problem is only counted: it is not even built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemList {
    listed: Vec<Problem>,
    total: usize,
    cap: usize,
    events: usize,
    last_event: Option<Option<usize>>,
    /// Bit `code as u32` for every code noted.
    codes: u32,
}

impl ProblemList {
    /// An empty list keeping at most `cap` problems.
    pub fn new(cap: usize) -> Self {
        Self {
            listed: Vec::new(),
            total: 0,
            cap,
            events: 0,
            last_event: None,
            codes: 0,
        }
    }

    /// Count a problem of event `index` (`None`: a single event or the whole
    /// body), and keep it (built by `make`) while there is room.
    ///
    /// The first tenant mismatch is always listed (in place of the last problem
    /// kept, when the list is full): it is what makes the answer a `403`.
    pub fn note(&mut self, index: Option<usize>, code: Code, make: impl FnOnce() -> Problem) {
        let first_mismatch = code == Code::TenantMismatch && !self.contains(code);
        self.total += 1;
        self.codes |= 1 << code as u32;
        if self.last_event != Some(index) {
            self.last_event = Some(index);
            self.events += 1;
        }
        if self.listed.len() < self.cap {
            self.listed.push(make());
        } else if first_mismatch {
            if let Some(last) = self.listed.last_mut() {
                *last = make();
            }
        }
    }

    /// The problems kept, in the order found.
    pub fn listed(&self) -> &[Problem] {
        &self.listed
    }

    pub fn into_listed(self) -> Vec<Problem> {
        self.listed
    }

    /// Every problem found, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Events with at least one problem (problems are noted event by event).
    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether any problem noted, kept or not, has `code`.
    pub fn contains(&self, code: Code) -> bool {
        self.codes & (1 << code as u32) != 0
    }
}

/// How far `occurred_at` may stray from the server clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// How old an event may be when it arrives (default 72 h). The archiver
    /// relies on this: a partition older than it can no longer receive rows.
    pub max_lateness: TimeDelta,
    /// How far in the future an event may be (default 5 min of clock skew).
    pub max_skew: TimeDelta,
}

impl Default for TimeWindow {
    fn default() -> Self {
        Self {
            max_lateness: TimeDelta::hours(72),
            max_skew: TimeDelta::minutes(5),
        }
    }
}

/// What the validator needs to know besides the event itself.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The authenticated tenant (from the authorizer, never from the body).
    pub tenant_id: &'a str,
    /// Server time; becomes `received_at`.
    pub now: DateTime<Utc>,
    pub window: TimeWindow,
    /// Id to use when the event has none (e.g. derived from `Idempotency-Key`);
    /// otherwise a fresh UUIDv7 is made.
    pub id_if_missing: Option<Uuid>,
}

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
            // Nearly every event is far below the limit, as a bound shows
            // without writing it; only the others are measured exactly.
            if crate::codec::len_bound(&event) <= limits::MAX_EVENT_BYTES {
                return Some(event);
            }
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

pub(crate) fn parse_category(s: &str) -> Option<Category> {
    Some(match s {
        "audit" => Category::Audit,
        "security" => Category::Security,
        "application" => Category::Application,
        _ => return None,
    })
}

pub(crate) fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s {
        "success" => Outcome::Success,
        "failure" => Outcome::Failure,
        "denied" => Outcome::Denied,
        "error" => Outcome::Error,
        "unknown" => Outcome::Unknown,
        _ => return None,
    })
}

pub(crate) fn parse_actor_type(s: &str) -> Option<ActorType> {
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
///
/// Only non-integral numbers (and integers beyond 2^53) change on that trip, so
/// only they are written and read back; the rest is copied as it is.
fn canonical_value(v: &Value) -> Value {
    const EXACT: u64 = 1 << 53;
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => v.clone(),
        Value::Number(n)
            if n.as_i64().is_some_and(|i| i.unsigned_abs() <= EXACT) || n.as_u64().is_some_and(|u| u <= EXACT) =>
        {
            v.clone()
        }
        Value::Number(_) => {
            serde_json::from_slice(&crate::canonical::to_canonical_vec(v)).unwrap_or_else(|_| v.clone())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_value).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, item)| (k.clone(), canonical_value(item))).collect()),
    }
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) struct Walker<'p> {
    out: &'p mut ProblemList,
    /// Position in a batch, for placing problems.
    index: Option<usize>,
    /// Problems of this event, kept or not.
    found: usize,
}

impl<'p> Walker<'p> {
    /// A walk noting problems of event `index` in `out`.
    pub(crate) fn new(out: &'p mut ProblemList, index: Option<usize>) -> Self {
        Self { out, index, found: 0 }
    }

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

    /// Checks shared by every string field: type, NUL, length. The field's
    /// path (`prefix` + `key`) is only built for a problem.
    fn string_value(&mut self, prefix: &str, key: &str, v: &Value, max_chars: usize) -> Option<String> {
        let Value::String(s) = v else {
            return self.fail(join(prefix, key), Code::InvalidType, expected("a string", v));
        };
        if s.contains('\0') {
            return self.fail(
                join(prefix, key),
                Code::InvalidCharacter,
                "must not contain the NUL character (U+0000)",
            );
        }
        // Each character is at least one byte: a short string needs no count.
        if s.len() > max_chars {
            let chars = s.chars().count();
            if chars > max_chars {
                return self.fail(
                    join(prefix, key),
                    Code::TooLong,
                    format!("is {chars} characters; the limit is {max_chars}"),
                );
            }
        }
        Some(s.clone())
    }

    fn req_string(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, max_chars: usize) -> Option<String> {
        let Some(v) = present(obj, key) else {
            return self.fail(join(prefix, key), Code::Required, "is required");
        };
        let s = self.string_value(prefix, key, v, max_chars)?;
        if s.trim().is_empty() {
            return self.fail(join(prefix, key), Code::Empty, "must not be empty");
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
            Some(v) => self.string_value(prefix, key, v, max_chars).map(Some),
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
        match present(obj, key) {
            None => self.fail(
                join(prefix, key),
                Code::Required,
                format!("is required; one of: {}", allowed.join(", ")),
            ),
            Some(Value::String(s)) => match parse(s) {
                Some(v) => Some(v),
                None => self.fail(
                    join(prefix, key),
                    Code::InvalidValue,
                    format!("must be one of: {}", allowed.join(", ")),
                ),
            },
            Some(other) => self.fail(join(prefix, key), Code::InvalidType, expected("a string", other)),
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
        if !is_action(&action) {
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

    pub(crate) fn changes(&mut self, obj: &Map<String, Value>) -> Option<Option<Changes>> {
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

    pub(crate) fn metadata(&mut self, obj: &Map<String, Value>) -> Option<Option<Map<String, Value>>> {
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
            // Built only for a problem, or to walk a value that may hold one.
            let path = || join("metadata", key);
            let key_chars = key.chars().count();
            if key.contains('\0') {
                self.push(path(), Code::InvalidCharacter, "keys must not contain NUL (U+0000)");
            }
            if key.is_empty() {
                self.push(path(), Code::Empty, "metadata keys must not be empty");
            } else if key_chars > limits::MAX_METADATA_KEY_CHARS {
                self.push(
                    path(),
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
                    path(),
                    Code::TooLong,
                    format!(
                        "value is over {} characters; the limit is {}",
                        limits::MAX_METADATA_VALUE_CHARS,
                        limits::MAX_METADATA_VALUE_CHARS
                    ),
                );
                continue;
            }
            // A leaf the walk would find nothing in is not walked.
            let clean_leaf = match value {
                Value::Null | Value::Bool(_) => true,
                Value::String(s) => !s.contains('\0'),
                Value::Number(n) => !integer_out_of_range(n),
                Value::Array(_) | Value::Object(_) => false,
            };
            if !clean_leaf && !self.free_json(&path(), value) {
                continue;
            }
            let value_chars = match value {
                Value::String(s) => s.chars().count(),
                other => crate::canonical::to_canonical_string(other).chars().count(),
            };
            if json_depth(value) > 2 {
                self.push(
                    path(),
                    Code::TooDeep,
                    "metadata values may nest at most 2 levels; use `changes` for documents",
                );
            } else if value_chars > limits::MAX_METADATA_VALUE_CHARS {
                self.push(
                    path(),
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

/// `noun.verb`: lowercase letters, digits, `_`, `-`, in non-empty parts separated by `.`.
pub(crate) fn is_action(action: &str) -> bool {
    let charset_ok = action
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    let shape_ok = action.contains('.') && action.split('.').all(|part| !part.is_empty());
    charset_ok && shape_ok
}

pub(crate) fn is_traceparent(s: &str) -> bool {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    // ------------------------------------------------ inputs, mostly invalid

    fn awkward_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,6}",
            "[a-z0-9_.-]{0,8}",
            prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
            prop::sample::select(vec!["", "  ", "a\0b", "\u{1f600}\u{ff61}", "x.y", "é"]).prop_map(String::from),
            (1usize..1100).prop_map(|n| "é".repeat(n)),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop::sample::select(vec![5.0, -0.0, 1e21, 9_007_199_254_740_994.0, 0.1]).prop_map(Value::from),
            awkward_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(awkward_string(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Mostly a plausible value, sometimes absent, sometimes anything.
    fn field<S: Strategy<Value = Value> + 'static>(plausible: S) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            100 => plausible.prop_map(Some),
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            1 => json().prop_map(Some),
        ]
        .boxed()
    }

    /// The first choice is valid; the others, and the odd string, are likely not.
    fn string_in(choices: Vec<&'static str>) -> impl Strategy<Value = Value> {
        prop_oneof![
            60 => Just(Value::from(choices[0])),
            4 => prop::sample::select(choices).prop_map(Value::from),
            1 => awkward_string().prop_map(Value::from),
        ]
    }

    fn object(members: Vec<(&'static str, BoxedStrategy<Option<Value>>)>) -> impl Strategy<Value = Value> {
        let (names, values): (Vec<_>, Vec<_>) = members.into_iter().unzip();
        let extra = prop_oneof![40 => Just(None), 1 => (awkward_string(), json()).prop_map(Some)];
        (values, extra).prop_map(move |(values, extra)| {
            let mut m = Map::new();
            for (name, value) in names.iter().zip(values) {
                if let Some(v) = value {
                    m.insert((*name).to_owned(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
    }

    fn text() -> BoxedStrategy<Option<Value>> {
        field(prop_oneof![40 => "[a-z]{1,6}", 1 => awkward_string()].prop_map(Value::from))
    }

    pub(crate) fn input() -> impl Strategy<Value = Value> {
        let actor = object(vec![
            ("id", text()),
            ("type", field(string_in(vec!["user", "service", "system", "api_key"]))),
            ("display", text()),
            ("ip", field(string_in(vec!["192.0.2.7", "2001:db8::1", "300.1.1.1"]))),
            ("user_agent", text()),
        ]);
        let resource = object(vec![("type", text()), ("id", text()), ("display", text())]);
        let document = || {
            prop_oneof![
                4 => prop::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())),
                1 => (-1e3f64..1e3).prop_map(Value::from),
                1 => json(),
            ]
        };
        let changes = object(vec![("before", field(document())), ("after", field(document()))]);
        let metadata_value = prop_oneof![
            6 => "[a-z ]{0,12}".prop_map(Value::from),
            2 => (-1000i64..1000).prop_map(Value::from),
            1 => (-1e3f64..1e3).prop_map(Value::from),
            1 => json(),
        ];
        let metadata_key = prop_oneof![12 => "[a-z_]{1,12}", 1 => awkward_string()];
        let metadata = prop::collection::btree_map(metadata_key, metadata_value, 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        let trace = object(vec![
            (
                "traceparent",
                field(string_in(vec![
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ])),
            ),
            ("tracestate", text()),
        ]);
        let source = object(vec![
            ("service", text()),
            ("version", text()),
            ("host", text()),
            ("region", text()),
        ]);
        let head = object(vec![
            (
                "event_id",
                field(string_in(vec![
                    "0190f0b4-5d2e-7c3a-9f1b-2a3c4d5e6f70",
                    "0190F0B4-5D2E-7C3A-9F1B-2A3C4D5E6F70",
                    "00000000-0000-0000-0000-000000000000",
                ])),
            ),
            ("tenant_id", field(string_in(vec!["tenant-p", "tenant-q"]))),
            (
                "occurred_at",
                field(string_in(vec![
                    "2026-11-25T11:00:00Z",
                    "2026-11-25T12:00:00.123456789+01:00",
                    "2026-11-20T12:00:00Z",
                    "2026-11-25T13:00:00Z",
                    "2016-12-31T23:59:60Z",
                ])),
            ),
            ("category", field(string_in(vec!["audit", "security", "application"]))),
            (
                "action",
                field(string_in(vec!["user.login", "a.b.c", "Bad.Action", "nodot"])),
            ),
            (
                "outcome",
                field(string_in(vec!["success", "failure", "denied", "error", "unknown"])),
            ),
            ("correlation_id", text()),
            ("causation_id", text()),
            (
                "schema_version",
                field(prop_oneof![12 => Just(Value::from(1)), 1 => Just(Value::from(2)), 1 => Just(Value::from("1"))]),
            ),
            (
                "received_at",
                prop_oneof![40 => Just(None), 1 => json().prop_map(Some)].boxed(),
            ),
            (
                "event_hash",
                prop_oneof![40 => Just(None), 1 => json().prop_map(Some)].boxed(),
            ),
        ]);
        (
            head,
            field(actor),
            field(resource),
            field(changes),
            field(metadata),
            field(trace),
            field(source),
        )
            .prop_map(|(mut head, actor, resource, changes, metadata, trace, source)| {
                if let Value::Object(m) = &mut head {
                    for (name, value) in [
                        ("actor", actor),
                        ("resource", resource),
                        ("changes", changes),
                        ("metadata", metadata),
                        ("trace", trace),
                        ("source", source),
                    ] {
                        if let Some(v) = value {
                            m.insert(name.into(), v);
                        }
                    }
                }
                head
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        /// The validator reports what the reference (the validator before issue
        /// 19) reports, problem for problem, and builds the same event.
        #[test]
        fn validation_agrees_with_the_reference(
            v in input(),
            index in prop::option::of(0usize..600),
            cap in prop_oneof![Just(limits::MAX_PROBLEMS_LISTED), 0usize..4],
        ) {
            let ctx = Context {
                tenant_id: "tenant-p",
                now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
                window: TimeWindow::default(),
                id_if_missing: Some(Uuid::from_u128(7)),
            };
            let (mut ours, mut theirs) = (ProblemList::new(cap), ProblemList::new(cap));
            let event = validate_event_into(&v, &ctx, index, &mut ours);
            let reference = crate::validate_reference::validate_event_into(&v, &ctx, index, &mut theirs);
            prop_assert_eq!(event, reference, "{}", v);
            prop_assert_eq!(ours, theirs, "{}", v);
        }
    }

    #[test]
    fn a_problem_list_counts_everything_keeps_the_cap_and_lists_a_late_mismatch() {
        let mut list = ProblemList::new(3);
        for i in 0..10 {
            list.note(Some(i / 2), Code::Required, || {
                Problem::new(format!("p{i}"), Code::Required, "m")
            });
        }
        assert_eq!((list.total(), list.listed().len(), list.events()), (10, 3, 5));
        assert!(!list.contains(Code::TenantMismatch));
        list.note(Some(9), Code::TenantMismatch, || {
            Problem::new("tenant_id", Code::TenantMismatch, "m")
        });
        list.note(Some(9), Code::TenantMismatch, || panic!("built past the cap"));
        assert_eq!((list.total(), list.listed().len(), list.events()), (12, 3, 6));
        assert!(list.contains(Code::TenantMismatch));
        assert_eq!(list.listed()[2].code, Code::TenantMismatch);
    }
}
