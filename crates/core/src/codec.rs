//! The canonical (RFC 8785) form of an [`Event`], written straight from its
//! typed fields.
//!
//! The envelope's member names are fixed and ASCII, so their sorted order (UTF-16
//! code units, which for ASCII is byte order) is written out by hand below; only
//! `metadata` and `changes`, free-form JSON, go through the generic
//! canonicaliser. The output is byte for byte what canonicalising
//! `Event::to_json_value` gives (a differential property test holds the two
//! together), without building a `Value` tree or sorting anything.

use std::io::Write as _;
use std::ops::Range;

use chrono::{DateTime, Datelike, Timelike, Utc};
use sha2::{Digest, Sha256};

use crate::canonical::{write_object, write_string, write_value};
use crate::event::{timestamp, Actor, Changes, Event, EventHash, Resource, Source, Trace};

/// What to write besides the event's own fields, and where it landed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// The `,"event_hash":"…"` member, when one was written.
    pub event_hash: Option<Range<usize>>,
    /// The `,"received_at":"…"` member, when it was written.
    pub received_at: Option<Range<usize>>,
}

/// Writes member names, with the comma that separates them from the previous one.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `"name":` (names here are ASCII and need no escaping).
    fn name(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn string(&mut self, name: &str, value: &str) {
        write_string(value, self.name(name));
    }

    fn opt_string(&mut self, name: &str, value: Option<&String>) {
        if let Some(value) = value {
            self.string(name, value);
        }
    }

    /// A string that needs no escaping (enumerations, UUIDs, timestamps).
    fn plain(&mut self, name: &str, value: &[u8]) {
        let out = self.name(name);
        out.push(b'"');
        out.extend_from_slice(value);
        out.push(b'"');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Write `event`'s canonical form to `out`: with `received_at` when
/// `with_received_at`, with `event_hash` (as given) when there is one.
pub(crate) fn write_event(
    event: &Event,
    with_received_at: bool,
    event_hash: Option<&str>,
    out: &mut Vec<u8>,
) -> Layout {
    let mut layout = Layout::default();
    let mut m = Members::open(out);
    m.string("action", &event.action);
    write_actor(&event.actor, m.name("actor"));
    m.plain("category", event.category.as_str().as_bytes());
    m.opt_string("causation_id", event.causation_id.as_ref());
    if let Some(changes) = &event.changes {
        write_changes(changes, m.name("changes"));
    }
    m.opt_string("correlation_id", event.correlation_id.as_ref());
    if let Some(hash) = event_hash {
        // Never the first member (`action` is), so the range starts at its comma.
        let start = m.out.len();
        m.string("event_hash", hash);
        layout.event_hash = Some(start..m.out.len());
    }
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    m.plain("event_id", event.event_id.hyphenated().encode_lower(&mut id).as_bytes());
    if let Some(metadata) = &event.metadata {
        write_object(metadata, m.name("metadata"));
    }
    write_timestamp(&event.occurred_at, m.name("occurred_at"));
    m.plain("outcome", event.outcome.as_str().as_bytes());
    if with_received_at {
        let start = m.out.len();
        write_timestamp(&event.received_at, m.name("received_at"));
        layout.received_at = Some(start..m.out.len());
    }
    if let Some(resource) = &event.resource {
        write_resource(resource, m.name("resource"));
    }
    // An integer: ECMAScript prints it as its plain digits.
    let _ = write!(m.name("schema_version"), "{}", event.schema_version);
    write_source(&event.source, m.name("source"));
    m.string("tenant_id", &event.tenant_id);
    if let Some(trace) = &event.trace {
        write_trace(trace, m.name("trace"));
    }
    m.close();
    layout
}

fn write_actor(actor: &Actor, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    m.opt_string("display", actor.display.as_ref());
    m.string("id", &actor.id);
    m.opt_string("ip", actor.ip.as_ref());
    m.plain("type", actor.actor_type.as_str().as_bytes());
    m.opt_string("user_agent", actor.user_agent.as_ref());
    m.close();
}

fn write_resource(resource: &Resource, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    m.opt_string("display", resource.display.as_ref());
    m.string("id", &resource.id);
    m.string("type", &resource.resource_type);
    m.close();
}

fn write_changes(changes: &Changes, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    if let Some(after) = &changes.after {
        write_value(after, m.name("after"));
    }
    if let Some(before) = &changes.before {
        write_value(before, m.name("before"));
    }
    m.close();
}

fn write_trace(trace: &Trace, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    m.string("traceparent", &trace.traceparent);
    m.opt_string("tracestate", trace.tracestate.as_ref());
    m.close();
}

fn write_source(source: &Source, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    m.opt_string("host", source.host.as_ref());
    m.opt_string("region", source.region.as_ref());
    m.string("service", &source.service);
    m.opt_string("version", source.version.as_ref());
    m.close();
}

/// `"2026-11-25T12:00:00.000000Z"`, as [`timestamp::format`] writes it (chrono's
/// formatter goes through `fmt` and is the slow part of writing an event).
fn write_timestamp(t: &DateTime<Utc>, out: &mut Vec<u8>) {
    let year = t.year();
    let nanos = t.nanosecond();
    // Years beyond four digits and leap seconds are chrono's to spell.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        write_string(&timestamp::format(t), out);
        return;
    }
    let mut buf = *b"\"0000-00-00T00:00:00.000000Z\"";
    put_digits(&mut buf[1..5], year.unsigned_abs());
    put_digits(&mut buf[6..8], t.month());
    put_digits(&mut buf[9..11], t.day());
    put_digits(&mut buf[12..14], t.hour());
    put_digits(&mut buf[15..17], t.minute());
    put_digits(&mut buf[18..20], t.second());
    put_digits(&mut buf[21..27], nanos / 1000);
    out.extend_from_slice(&buf);
}

/// `n` in decimal, right-aligned in `slot` (which is zero-filled and wide enough).
fn put_digits(slot: &mut [u8], mut n: u32) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// An upper bound on the length of `event`'s canonical form (with
/// `received_at`, without `event_hash`), found without writing it: every
/// string byte counted as its longest escape (`\u00XX`), every number as the
/// longest ECMAScript spelling of a double, and room for every member name,
/// punctuation and fixed-width value. A size limit that the bound meets
/// needs no exact count.
pub(crate) fn len_bound(event: &Event) -> usize {
    // Member names, quotes, colons, commas and braces of every envelope member,
    // enumerations, the UUID, both timestamps (even chrono's widest years) and
    // `schema_version` come to well under this.
    const FIXED: usize = 1024;
    let strings = [
        Some(&event.tenant_id),
        Some(&event.action),
        Some(&event.actor.id),
        event.actor.display.as_ref(),
        event.actor.ip.as_ref(),
        event.actor.user_agent.as_ref(),
        event.resource.as_ref().map(|r| &r.resource_type),
        event.resource.as_ref().map(|r| &r.id),
        event.resource.as_ref().and_then(|r| r.display.as_ref()),
        event.correlation_id.as_ref(),
        event.causation_id.as_ref(),
        event.trace.as_ref().map(|t| &t.traceparent),
        event.trace.as_ref().and_then(|t| t.tracestate.as_ref()),
        Some(&event.source.service),
        event.source.version.as_ref(),
        event.source.host.as_ref(),
        event.source.region.as_ref(),
    ];
    let mut n = FIXED;
    for s in strings.into_iter().flatten() {
        n = n.saturating_add(string_bound(s));
    }
    if let Some(changes) = &event.changes {
        for v in [&changes.before, &changes.after].into_iter().flatten() {
            n = n.saturating_add(value_bound(v));
        }
    }
    if let Some(metadata) = &event.metadata {
        n = n.saturating_add(object_bound(metadata));
    }
    n
}

fn string_bound(s: &str) -> usize {
    s.len().saturating_mul(6).saturating_add(2)
}

fn value_bound(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    // `-0.0000012345678901234567` is the longest: sign, `0.`, six zeros, 17 digits.
    const NUMBER: usize = 32;
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => NUMBER,
        Value::String(s) => string_bound(s),
        Value::Array(items) => items
            .iter()
            .fold(2 + items.len(), |n, item| n.saturating_add(value_bound(item))),
        Value::Object(map) => object_bound(map),
    }
}

fn object_bound(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    map.iter().fold(2 + map.len(), |n, (k, v)| {
        n.saturating_add(string_bound(k) + 1).saturating_add(value_bound(v))
    })
}

/// SHA-256 of `bytes` without the members `layout` located (the ones the
/// hash leaves out), fed to the hasher in place.
pub(crate) fn digest_without(bytes: &[u8], layout: &Layout) -> EventHash {
    let mut hasher = Sha256::new();
    let mut at = 0;
    // In the order written: `event_hash` sorts before `received_at`.
    for range in [&layout.event_hash, &layout.received_at].into_iter().flatten() {
        hasher.update(bytes.get(at..range.start).unwrap_or_default());
        at = range.end;
    }
    hasher.update(bytes.get(at..).unwrap_or_default());
    EventHash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;
    use crate::canonical::to_canonical_vec;
    use crate::event::{ActorType, Category, Outcome, RecordError, SealedEvent, UNHASHED_FIELD};

    // ------------------------------------------------ the Value path, as a reference

    fn reference_canonical(e: &Event) -> Vec<u8> {
        to_canonical_vec(&e.to_json_value())
    }

    fn reference_hashed(e: &Event) -> Vec<u8> {
        let mut value = e.to_json_value();
        if let Value::Object(map) = &mut value {
            map.remove(UNHASHED_FIELD);
        }
        to_canonical_vec(&value)
    }

    /// `Event::seal` as it was before the direct writer (issue 19).
    fn reference_seal(e: Event) -> SealedEvent {
        let mut value = e.to_json_value();
        let mut hash = EventHash([0; 32]);
        if let Value::Object(map) = &mut value {
            let received_at = map.remove(UNHASHED_FIELD);
            hash = EventHash(Sha256::digest(to_canonical_vec(&Value::Object(map.clone()))).into());
            if let Some(received_at) = received_at {
                map.insert(UNHASHED_FIELD.into(), received_at);
            }
            map.insert("event_hash".into(), Value::String(hash.to_hex()));
        }
        let record = to_canonical_vec(&value);
        SealedEvent { event: e, hash, record }
    }

    /// `SealedEvent::open` as it was before the direct writer (issue 19).
    fn reference_open(record: &[u8]) -> Result<SealedEvent, RecordError> {
        let value = crate::json::parse_strict(record).map_err(|e| RecordError::NotJson(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(RecordError::Schema("record is not a JSON object".into()));
        };
        let claimed = match map.remove("event_hash") {
            Some(Value::String(h)) => EventHash::from_hex(&h).ok_or(RecordError::MalformedHash)?,
            Some(_) => return Err(RecordError::MalformedHash),
            None => return Err(RecordError::MissingHash),
        };
        let content = to_canonical_vec(&Value::Object(map.clone()));
        let event: Event =
            serde_json::from_value(Value::Object(map)).map_err(|e| RecordError::Schema(e.to_string()))?;
        if event.schema_version != crate::SCHEMA_VERSION {
            return Err(RecordError::UnsupportedVersion(event.schema_version));
        }
        let actual = EventHash(Sha256::digest(reference_hashed(&event)).into());
        if actual != claimed {
            return Err(RecordError::HashMismatch { claimed, actual });
        }
        if content != reference_canonical(&event) {
            let actual = EventHash(Sha256::digest(&content).into());
            return Err(RecordError::HashMismatch { claimed, actual });
        }
        Ok(SealedEvent {
            event,
            hash: actual,
            record: record.to_vec(),
        })
    }

    /// Both opened the record to the same event, or refused it with the same error.
    fn same_outcome(record: &[u8]) -> Result<(), TestCaseError> {
        match (SealedEvent::open(record), reference_open(record)) {
            (Ok(new), Ok(old)) => prop_assert_eq!(new, old),
            (Err(new), Err(old)) => prop_assert_eq!(format!("{new:?}"), format!("{old:?}")),
            (new, old) => prop_assert!(false, "open: {:?}\nreference: {:?}", new, old),
        }
        Ok(())
    }

    // ------------------------------------------------ arbitrary events

    /// Any characters: controls, quotes, backslashes, characters on both sides of
    /// the UTF-8 / UTF-16 order difference, astral planes.
    fn awkward_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,6}",
            prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
            prop::collection::vec(
                prop::sample::select(vec![
                    'a',
                    '\0',
                    '\u{1}',
                    '\u{8}',
                    '\u{c}',
                    '\n',
                    '\r',
                    '\t',
                    '\u{1f}',
                    '"',
                    '\\',
                    '/',
                    '\u{7f}',
                    '\u{80}',
                    '\u{2028}',
                    '\u{e000}',
                    '\u{ff61}',
                    '\u{fb33}',
                    '\u{1f600}',
                    '\u{10ffff}',
                ]),
                0..6
            )
            .prop_map(String::from_iter),
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            prop::sample::select(vec![
                0.0,
                -0.0,
                5.0,
                1e21,
                1e-7,
                1e-6,
                -2.5e-300,
                5e-324,
                9_007_199_254_740_993.0,
                123_456_789_012_345_680_000.0,
                f64::MAX,
                f64::MIN,
            ])
            .prop_map(Value::from),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
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

    /// Times from before year 0 to after 9999, leap seconds included.
    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (-100_000_000_000i64..400_000_000_000, 0u32..2_000_000_000),
            (1_700_000_000i64..1_900_000_000, 0u32..1_000_000_000),
        ]
        .prop_filter_map("representable", |(secs, nanos)| DateTime::from_timestamp(secs, nanos))
    }

    fn opt_string() -> impl Strategy<Value = Option<String>> {
        prop::option::of(awkward_string())
    }

    fn event() -> impl Strategy<Value = Event> {
        let actor = (
            awkward_string(),
            prop::sample::select(vec![
                ActorType::User,
                ActorType::Service,
                ActorType::System,
                ActorType::ApiKey,
            ]),
            opt_string(),
            opt_string(),
            opt_string(),
        )
            .prop_map(|(id, actor_type, display, ip, user_agent)| Actor {
                id,
                actor_type,
                display,
                ip,
                user_agent,
            });
        let resource = prop::option::of((awkward_string(), awkward_string(), opt_string()).prop_map(
            |(resource_type, id, display)| Resource {
                resource_type,
                id,
                display,
            },
        ));
        let changes = prop::option::of(
            (prop::option::of(json()), prop::option::of(json())).prop_map(|(before, after)| Changes { before, after }),
        );
        let metadata = prop::option::of(
            prop::collection::btree_map(awkward_string(), json(), 0..6)
                .prop_map(|m| m.into_iter().collect::<Map<_, _>>()),
        );
        let trace = prop::option::of(
            (awkward_string(), opt_string()).prop_map(|(traceparent, tracestate)| Trace {
                traceparent,
                tracestate,
            }),
        );
        let source = (awkward_string(), opt_string(), opt_string(), opt_string()).prop_map(
            |(service, version, host, region)| Source {
                service,
                version,
                host,
                region,
            },
        );
        let head = (
            any::<u128>(),
            awkward_string(),
            time(),
            time(),
            prop::sample::select(vec![Category::Audit, Category::Security, Category::Application]),
            awkward_string(),
            prop::sample::select(vec![
                Outcome::Success,
                Outcome::Failure,
                Outcome::Denied,
                Outcome::Error,
                Outcome::Unknown,
            ]),
            opt_string(),
            opt_string(),
            prop_oneof![Just(1u16), any::<u16>()],
        );
        (head, actor, resource, changes, metadata, trace, source).prop_map(
            |(
                (
                    id,
                    tenant_id,
                    occurred_at,
                    received_at,
                    category,
                    action,
                    outcome,
                    correlation_id,
                    causation_id,
                    schema_version,
                ),
                actor,
                resource,
                changes,
                metadata,
                trace,
                source,
            )| Event {
                event_id: uuid::Uuid::from_u128(id),
                tenant_id,
                occurred_at,
                received_at,
                category,
                action,
                outcome,
                actor,
                resource,
                changes,
                metadata,
                correlation_id,
                causation_id,
                trace,
                source,
                schema_version,
            },
        )
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// The direct writer and the `Value` path agree byte for byte, on every form.
        #[test]
        fn the_direct_writer_agrees_with_the_value_path(e in event()) {
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            prop_assert_eq!(show(&e.canonical_bytes()), show(&reference_canonical(&e)));
            prop_assert_eq!(show(&e.hashed_bytes()), show(&reference_hashed(&e)));
            let reference_hash = EventHash(Sha256::digest(reference_hashed(&e)).into());
            prop_assert_eq!(e.compute_hash(), reference_hash);
            let (sealed, reference) = (e.clone().seal(), reference_seal(e));
            prop_assert_eq!(sealed.hash, reference.hash);
            prop_assert_eq!(show(&sealed.record), show(&reference.record));
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// `open` decides every record as the `Value` path did: sealed records
        /// of any event (most of which are not valid events), corrupted ones,
        /// ones spelled otherwise, and ones with a member replaced.
        #[test]
        fn open_agrees_with_the_value_path(
            e in event(),
            pos in any::<prop::sample::Index>(),
            mask in 1u8..=255,
            member in prop::sample::select(vec![
                "action", "actor", "category", "changes", "event_hash", "event_id", "metadata",
                "occurred_at", "received_at", "resource", "schema_version", "source", "tenant_id", "other",
            ]),
            replacement in json(),
        ) {
            let sealed = e.seal();
            same_outcome(&sealed.record)?;
            let mut flipped = sealed.record.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= mask;
            same_outcome(&flipped)?;
            let mut value: Value = serde_json::from_slice(&sealed.record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            same_outcome(&serde_json::to_vec_pretty(&value).unwrap_or_default())?;
            if let Value::Object(map) = &mut value {
                let upper = sealed.hash.to_hex().to_uppercase();
                map.insert("event_hash".into(), Value::String(upper));
                same_outcome(&to_canonical_vec(&Value::Object(map.clone())))?;
                map.insert(member.into(), replacement);
            }
            same_outcome(&to_canonical_vec(&value))?;
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// The size bound is never below the size.
        #[test]
        fn the_length_bound_bounds_the_length(e in event()) {
            prop_assert!(len_bound(&e) >= e.canonical_bytes().len());
        }
    }

    #[test]
    fn a_sealed_event_opens_in_one_pass() {
        let e = Event {
            event_id: uuid::Uuid::from_u128(0x0190_f0b4_5d2e_7c3a_9f1b_2a3c_4d5e_6f70),
            tenant_id: "acme".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            received_at: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 1).unwrap(),
            category: Category::Audit,
            action: "user.login".into(),
            outcome: Outcome::Success,
            actor: Actor {
                id: "u-\u{1f600}\"1\"".into(),
                actor_type: ActorType::User,
                display: None,
                ip: Some("192.0.2.7".into()),
                user_agent: None,
            },
            resource: None,
            changes: Some(Changes {
                before: Some(serde_json::json!({"n": 1.5, "s": "\u{1}"})),
                after: None,
            }),
            metadata: Some(
                serde_json::json!({"\u{ff61}": 1, "\u{1f600}": [true, null]})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
            correlation_id: None,
            causation_id: None,
            trace: None,
            source: Source {
                service: "auth".into(),
                version: None,
                host: None,
                region: None,
            },
            schema_version: crate::SCHEMA_VERSION,
        };
        let sealed = e.seal();
        let opened = SealedEvent::open_canonical(&sealed.record).expect("the fast path opens a sealed record");
        assert_eq!(opened, sealed);
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let cases = [
            Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::nanoseconds(999),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + chrono::TimeDelta::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
        ];
        for t in cases {
            let mut out = Vec::new();
            write_timestamp(&t, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", timestamp::format(&t))
            );
        }
    }
}
