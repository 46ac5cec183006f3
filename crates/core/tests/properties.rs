//! Property tests of the canonical form, the event hash and `SealedEvent::open`.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use stele_core::canonical::{to_canonical_string, to_canonical_vec};
use stele_core::json::parse_strict;
use stele_core::{validate_event, Context, Event, RecordError, SealedEvent, TimeWindow};

const TENANT: &str = "tenant-p";

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

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- arbitrary JSON

/// Any Unicode scalar values, control characters and astral planes included.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,6}",
        prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        // Characters around the UTF-16 / UTF-8 sort-order difference.
        prop::collection::vec(
            prop::sample::select(vec![
                'a',
                '\u{7f}',
                '\u{80}',
                '\u{ff61}',
                '\u{1f600}',
                '\u{10ffff}',
                '"',
                '\\',
                '\u{1}'
            ]),
            0..5
        )
        .prop_map(String::from_iter),
    ]
}

fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any_string(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How to re-serialise a value: key order, whitespace, string and number spelling.
#[derive(Debug, Clone)]
struct Style {
    seed: u64,
    pretty: bool,
    escape_all: bool,
}

fn any_style() -> impl Strategy<Value = Style> {
    (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(seed, pretty, escape_all)| Style {
        seed,
        pretty,
        escape_all,
    })
}

struct Writer {
    rng: u64,
    style: Style,
    out: String,
}

impl Writer {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic from the generated seed, so failures shrink.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn ws(&mut self) {
        if self.style.pretty {
            let n = self.next() % 3;
            for _ in 0..n {
                let c = [' ', '\n', '\t', '\r'][(self.next() % 4) as usize];
                self.out.push(c);
            }
        }
    }

    fn string(&mut self, s: &str) {
        if self.style.escape_all {
            self.out.push('"');
            for unit in s.encode_utf16() {
                self.out.push_str(&format!("\\u{unit:04X}"));
            }
            self.out.push('"');
        } else {
            self.out.push_str(&serde_json::to_string(s).unwrap());
        }
    }

    fn value(&mut self, v: &Value) {
        self.ws();
        match v {
            Value::Null | Value::Bool(_) => self.out.push_str(&v.to_string()),
            Value::Number(n) => {
                let spelled = match n.as_f64() {
                    Some(f) if n.is_f64() && self.next() & 1 == 0 => format!("{f:e}"),
                    Some(f) if n.is_f64() && f.abs() < 1e15 && f.fract() == 0.0 => {
                        format!("{f:.1}")
                    }
                    _ => n.to_string(),
                };
                self.out.push_str(&spelled);
            }
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(item);
                    self.ws();
                }
                self.out.push(']');
            }
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                // Fisher-Yates with the generated seed.
                for i in (1..members.len()).rev() {
                    let j = (self.next() % (i as u64 + 1)) as usize;
                    members.swap(i, j);
                }
                self.out.push('{');
                for (i, (k, item)) in members.into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.string(k);
                    self.ws();
                    self.out.push(':');
                    self.value(item);
                    self.ws();
                }
                self.out.push('}');
            }
        }
    }
}

fn restyle(v: &Value, style: &Style) -> String {
    let mut w = Writer {
        rng: style.seed | 1,
        style: style.clone(),
        out: String::new(),
    };
    w.value(v);
    w.ws();
    w.out
}

proptest! {
    #![proptest_config(config())]

    /// Key order, whitespace, escapes and number spelling do not change the canonical bytes.
    #[test]
    fn canonical_form_ignores_key_order_and_whitespace(v in any_json(), style in any_style()) {
        let text = restyle(&v, &style);
        let reparsed = parse_strict(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(to_canonical_vec(&reparsed), to_canonical_vec(&v), "text: {}", text);
    }

    /// canonical → parse → canonical is a fixed point, and the output is valid UTF-8 JSON
    /// without insignificant whitespace.
    #[test]
    fn canonical_form_is_a_fixed_point(v in any_json()) {
        let once = to_canonical_vec(&v);
        let text = String::from_utf8(once.clone()).expect("canonical form is UTF-8");
        let reparsed = parse_strict(&once).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(to_canonical_vec(&reparsed), once);
        let plain: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(to_canonical_string(&plain), text);
    }

    /// Object members come out sorted by UTF-16 code units, at every level.
    #[test]
    fn canonical_members_are_sorted_by_utf16(m in prop::collection::btree_map(any_string(), any::<u8>(), 0..8)) {
        let v = Value::Object(m.iter().map(|(k, n)| (k.clone(), json!(n))).collect());
        let back: Vec<String> = {
            // Read the keys back in document order.
            let text = to_canonical_string(&v);
            let mut de = serde_json::Deserializer::from_str(&text);
            let ordered: OrderedKeys = serde::Deserialize::deserialize(&mut de).unwrap();
            ordered.0
        };
        let mut want: Vec<String> = m.keys().cloned().collect();
        want.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        prop_assert_eq!(back, want);
    }
}

/// The keys of a JSON object in document order (serde_json's `Map` would re-sort them).
struct OrderedKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for OrderedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<OrderedKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = a.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(OrderedKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------- valid events

fn text(max: usize) -> impl Strategy<Value = String> {
    // Non-control characters (so no NUL), at least one letter so it is never blank.
    proptest::string::string_regex(&format!("[a-zA-Z0-9][\\PC]{{0,{}}}", max - 1)).unwrap()
}

fn opt<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

/// JSON that validation accepts inside `changes`/`metadata`: no NUL, exact integers.
fn free_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-9_007_199_254_740_992i64..=9_007_199_254_740_992).prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        // Integral doubles (5.0, -0.0) read back from canonical JSON as integers.
        (-1000i32..1000).prop_map(|i| Value::from(f64::from(i))),
        Just(Value::from(-0.0f64)),
        "[^\\x00]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[^\\x00]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn traceparent() -> impl Strategy<Value = String> {
    ("[0-9a-f]{32}", "[0-9a-f]{16}", "[0-9a-f]{2}")
        .prop_filter("ids are not all zero", |(t, p, _)| {
            t.bytes().any(|b| b != b'0') && p.bytes().any(|b| b != b'0')
        })
        .prop_map(|(t, p, f)| format!("00-{t}-{p}-{f}"))
}

/// A client event that validation must accept, as JSON.
fn valid_input() -> impl Strategy<Value = Value> {
    let when = (-72 * 3600i64 + 1..5 * 60, 0u32..1_000_000_000, -14 * 60i32..=14 * 60).prop_map(
        |(secs, nanos, offset_min)| {
            let t = now() + TimeDelta::seconds(secs) + TimeDelta::nanoseconds(nanos.into());
            let t = t.min(now() + TimeDelta::minutes(5));
            let tz = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            t.with_timezone(&tz)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
        },
    );
    let actor = (
        text(40),
        prop::sample::select(vec!["user", "service", "system", "api_key"]),
        opt(text(40)),
        opt(any::<std::net::IpAddr>().prop_map(|ip| ip.to_string())),
        opt(text(80)),
    )
        .prop_map(|(id, ty, display, ip, ua)| {
            let mut m = Map::new();
            m.insert("id".into(), json!(id));
            m.insert("type".into(), json!(ty));
            put(&mut m, "display", display);
            put(&mut m, "ip", ip);
            put(&mut m, "user_agent", ua);
            Value::Object(m)
        });
    let resource = opt((text(20), text(40), opt(text(40))).prop_map(|(ty, id, display)| {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("id".into(), json!(id));
        put(&mut m, "display", display);
        Value::Object(m)
    }));
    let changes = opt((opt(free_json(3)), opt(free_json(3))).prop_map(|(b, a)| {
        let mut m = Map::new();
        put(&mut m, "before", b);
        put(&mut m, "after", a);
        Value::Object(m)
    }));
    let metadata = opt(prop::collection::btree_map("[a-z_]{1,40}", free_json(1), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect())));
    let trace = opt((traceparent(), opt("[a-z]{1,8}=[a-z0-9]{1,8}")).prop_map(|(tp, ts)| {
        let mut m = Map::new();
        m.insert("traceparent".into(), json!(tp));
        put(&mut m, "tracestate", ts);
        Value::Object(m)
    }));
    let source = (
        text(30),
        opt("[0-9]{1,3}\\.[0-9]{1,3}"),
        opt(text(30)),
        opt("[a-z]{2}-[a-z]{4,9}-[1-3]"),
    )
        .prop_map(|(service, version, host, region)| {
            let mut m = Map::new();
            m.insert("service".into(), json!(service));
            put(&mut m, "version", version);
            put(&mut m, "host", host);
            put(&mut m, "region", region);
            Value::Object(m)
        });
    let head = (
        opt(any::<u128>().prop_filter("not nil", |n| *n != 0)),
        any::<bool>(),
        when,
        prop::sample::select(vec!["audit", "security", "application"]),
        "[a-z0-9_-]{1,12}(\\.[a-z0-9_-]{1,12}){1,3}",
        prop::sample::select(vec!["success", "failure", "denied", "error", "unknown"]),
        opt(text(40)),
        opt(text(40)),
        any::<bool>(),
    );
    (head, actor, resource, changes, metadata, trace, source).prop_map(
        |(
            (id, with_tenant, when, category, action, outcome, corr, cause, with_version),
            actor,
            resource,
            changes,
            metadata,
            trace,
            source,
        )| {
            let mut m = Map::new();
            put(&mut m, "event_id", id.map(|n| uuid::Uuid::from_u128(n).to_string()));
            if with_tenant {
                m.insert("tenant_id".into(), json!(TENANT));
            }
            m.insert("occurred_at".into(), json!(when));
            m.insert("category".into(), json!(category));
            m.insert("action".into(), json!(action));
            m.insert("outcome".into(), json!(outcome));
            m.insert("actor".into(), actor);
            put(&mut m, "resource", resource);
            put(&mut m, "changes", changes);
            put(&mut m, "metadata", metadata);
            put(&mut m, "correlation_id", corr);
            put(&mut m, "causation_id", cause);
            put(&mut m, "trace", trace);
            m.insert("source".into(), source);
            if with_version {
                m.insert("schema_version".into(), json!(1));
            }
            Value::Object(m)
        },
    )
}

fn put<T: serde::Serialize>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), serde_json::to_value(v).unwrap());
    }
}

fn valid_event() -> impl Strategy<Value = Event> {
    valid_input().prop_map(|v| match validate_event(&v, &ctx()) {
        Ok(e) => e,
        Err(p) => panic!("generated input was refused: {p:?}\n{v}"),
    })
}

/// Every way to change exactly one hashed field of an event (each gives a
/// different event). `received_at` is not hashed; see
/// `received_at_is_outside_the_hash`.
fn single_field_changes(e: &Event) -> Vec<(&'static str, Event)> {
    fn with(e: &Event, f: impl FnOnce(&mut Event)) -> Event {
        let mut c = e.clone();
        f(&mut c);
        c
    }
    fn toggle(s: &Option<String>) -> Option<String> {
        match s {
            Some(_) => None,
            None => Some("x".into()),
        }
    }
    fn edit(s: &str) -> String {
        format!("{s}x")
    }
    use stele_core::{ActorType, Category, Changes, Outcome, Resource, Trace};
    vec![
        (
            "event_id",
            with(e, |c| c.event_id = uuid::Uuid::from_u128(c.event_id.as_u128() ^ 1)),
        ),
        ("tenant_id", with(e, |c| c.tenant_id = edit(&c.tenant_id))),
        ("occurred_at", with(e, |c| c.occurred_at += TimeDelta::microseconds(1))),
        (
            "category",
            with(e, |c| {
                c.category = if c.category == Category::Audit {
                    Category::Security
                } else {
                    Category::Audit
                }
            }),
        ),
        ("action", with(e, |c| c.action = edit(&c.action))),
        (
            "outcome",
            with(e, |c| {
                c.outcome = if c.outcome == Outcome::Success {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            }),
        ),
        ("actor.id", with(e, |c| c.actor.id = edit(&c.actor.id))),
        (
            "actor.type",
            with(e, |c| {
                c.actor.actor_type = if c.actor.actor_type == ActorType::User {
                    ActorType::ApiKey
                } else {
                    ActorType::User
                }
            }),
        ),
        ("actor.display", with(e, |c| c.actor.display = toggle(&c.actor.display))),
        ("actor.ip", with(e, |c| c.actor.ip = toggle(&c.actor.ip))),
        (
            "actor.user_agent",
            with(e, |c| c.actor.user_agent = toggle(&c.actor.user_agent)),
        ),
        (
            "resource",
            with(e, |c| {
                c.resource = match &c.resource {
                    Some(_) => None,
                    None => Some(Resource {
                        resource_type: "t".into(),
                        id: "i".into(),
                        display: None,
                    }),
                }
            }),
        ),
        (
            "resource.id",
            with(e, |c| {
                if let Some(r) = &mut c.resource {
                    r.id = edit(&r.id)
                } else {
                    c.resource = Some(Resource {
                        resource_type: "t".into(),
                        id: "j".into(),
                        display: None,
                    })
                }
            }),
        ),
        (
            "changes",
            with(e, |c| {
                c.changes = match &c.changes {
                    Some(_) => None,
                    None => Some(Changes {
                        before: None,
                        after: None,
                    }),
                }
            }),
        ),
        (
            "changes.after",
            with(e, |c| {
                let ch = c.changes.get_or_insert(Changes {
                    before: None,
                    after: None,
                });
                ch.after = Some(json!(["changed", ch.after.take()]));
            }),
        ),
        (
            "metadata",
            with(e, |c| {
                c.metadata = match &c.metadata {
                    Some(_) => None,
                    None => Some(Map::new()),
                }
            }),
        ),
        (
            "metadata key",
            with(e, |c| {
                c.metadata
                    .get_or_insert_with(Map::new)
                    .insert("zz_new_key_zz".repeat(2), json!(1));
            }),
        ),
        (
            "correlation_id",
            with(e, |c| c.correlation_id = toggle(&c.correlation_id)),
        ),
        ("causation_id", with(e, |c| c.causation_id = toggle(&c.causation_id))),
        (
            "trace",
            with(e, |c| {
                c.trace = match &c.trace {
                    Some(_) => None,
                    None => Some(Trace {
                        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                        tracestate: None,
                    }),
                }
            }),
        ),
        (
            "source.service",
            with(e, |c| c.source.service = edit(&c.source.service)),
        ),
        (
            "source.version",
            with(e, |c| c.source.version = toggle(&c.source.version)),
        ),
        ("source.host", with(e, |c| c.source.host = toggle(&c.source.host))),
        ("source.region", with(e, |c| c.source.region = toggle(&c.source.region))),
        ("schema_version", with(e, |c| c.schema_version += 1)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Event → seal → open gives back the same event, hash and bytes.
    #[test]
    fn seal_then_open_round_trips(e in valid_event()) {
        let sealed = e.clone().seal();
        prop_assert_eq!(sealed.hash, e.compute_hash());
        let opened = SealedEvent::open(&sealed.record)
            .map_err(|err| TestCaseError::fail(format!("{err}")))?;
        prop_assert_eq!(&opened.event, &e);
        prop_assert_eq!(opened.hash, sealed.hash);
        prop_assert_eq!(&opened.record, &sealed.record);
        // The record is canonical JSON of the event plus event_hash, and the hash
        // is over the record minus event_hash and received_at.
        let mut v = parse_strict(&sealed.record).unwrap();
        prop_assert_eq!(to_canonical_vec(&v), sealed.record.clone());
        v.as_object_mut().unwrap().remove("event_hash");
        prop_assert_eq!(to_canonical_vec(&v), e.canonical_bytes());
        let received_at = v.as_object_mut().unwrap().remove("received_at");
        prop_assert_eq!(received_at, e.to_json_value().get("received_at").cloned());
        prop_assert_eq!(to_canonical_vec(&v), e.hashed_bytes());
        // The accepted event is a fixed point of validation of its own envelope.
        let mut again = e.to_json_value();
        again.as_object_mut().unwrap().remove("received_at");
        prop_assert_eq!(validate_event(&again, &ctx()).map_err(|p| TestCaseError::fail(format!("{p:?}")))?, e);
    }

    /// Changing any single field changes the hash.
    #[test]
    fn any_single_field_change_changes_the_hash(e in valid_event()) {
        let h = e.compute_hash();
        for (field, changed) in single_field_changes(&e) {
            prop_assert_ne!(&changed, &e, "{} mutation was a no-op", field);
            prop_assert_ne!(changed.compute_hash(), h, "{} did not change the hash", field);
        }
    }

    /// The same event received at another time (a retry) has the same hash, and
    /// its record carries its own `received_at` and opens.
    #[test]
    fn received_at_is_outside_the_hash(e in valid_event(), later in 1i64..10_000_000_000) {
        let mut retry = e.clone();
        retry.received_at += TimeDelta::microseconds(later);
        prop_assert_eq!(retry.compute_hash(), e.compute_hash());
        let (first, again) = (e.clone().seal(), retry.clone().seal());
        prop_assert_eq!(again.hash, first.hash);
        prop_assert_ne!(&again.record, &first.record);
        let opened = SealedEvent::open(&again.record).map_err(|err| TestCaseError::fail(format!("{err}")))?;
        prop_assert_eq!(opened.event.received_at, retry.received_at);
        prop_assert_eq!(opened.hash, first.hash);
    }

    /// A record whose content was altered but which keeps its old hash is refused.
    #[test]
    fn open_refuses_altered_content(e in valid_event()) {
        let sealed = e.clone().seal();
        for (field, changed) in single_field_changes(&e) {
            let mut v = changed.to_json_value();
            v.as_object_mut().unwrap().insert("event_hash".into(), json!(sealed.hash.to_hex()));
            let err = SealedEvent::open(&to_canonical_vec(&v)).unwrap_err();
            if field == "schema_version" {
                prop_assert!(matches!(err, RecordError::UnsupportedVersion(2)), "{}: {:?}", field, err);
            } else {
                prop_assert!(
                    matches!(err, RecordError::HashMismatch { claimed, .. } if claimed == sealed.hash),
                    "{}: {:?}", field, err
                );
            }
        }
    }

    /// Flipping bits anywhere in a record never panics and never yields a different event.
    #[test]
    fn open_never_accepts_a_corrupted_record(e in valid_event(), pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let sealed = e.seal();
        let mut bytes = sealed.record.clone();
        let i = pos.index(bytes.len());
        bytes[i] ^= mask;
        if let Ok(opened) = SealedEvent::open(&bytes) {
            // Only a change that does not touch the content can pass (e.g. the case
            // of one hex digit of event_hash), or one of `received_at`, which the
            // hash leaves out by design (the verifiable log binds it instead).
            let mut opened_event = opened.event;
            opened_event.received_at = sealed.event.received_at;
            prop_assert_eq!(opened_event, sealed.event);
            prop_assert_eq!(opened.hash, sealed.hash);
        }
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn open_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = SealedEvent::open(&bytes);
    }

    /// Arbitrary JSON values and JSON-looking objects never panic either.
    #[test]
    fn open_and_validate_never_panic_on_arbitrary_json(v in any_json(), hash in "[0-9a-f]{64}") {
        let _ = validate_event(&v, &ctx());
        let _ = SealedEvent::open(&to_canonical_vec(&v));
        if let Value::Object(mut m) = v {
            m.insert("event_hash".into(), json!(hash));
            let _ = SealedEvent::open(&to_canonical_vec(&Value::Object(m)));
        }
    }

    /// Validation of mutated valid events never panics, whatever field is replaced.
    #[test]
    fn validate_never_panics_on_mutated_events(input in valid_input(), field in prop::sample::select(vec![
        "event_id", "tenant_id", "occurred_at", "category", "action", "outcome", "actor",
        "resource", "changes", "metadata", "correlation_id", "causation_id", "trace", "source",
        "schema_version", "received_at", "event_hash", "other",
    ]), replacement in any_json()) {
        let mut v = input;
        v.as_object_mut().unwrap().insert(field.to_owned(), replacement);
        if let Err(problems) = validate_event(&v, &ctx()) {
            prop_assert!(!problems.is_empty());
        }
    }
}

type Alter = fn(&mut Map<String, Value>);

#[test]
fn open_refuses_records_that_deserialize_to_the_same_event_but_differ() {
    let e = validate_event(
        &json!({
            "event_id": "0190f0b4-5d2e-7c3a-9f1b-2a3c4d5e6f70",
            "occurred_at": "2026-11-25T11:00:00Z",
            "category": "audit", "action": "a.b", "outcome": "success",
            "actor": {"id": "u", "type": "user"}, "source": {"service": "s"}
        }),
        &ctx(),
    )
    .unwrap();
    let sealed = e.seal();
    let record: Value = parse_strict(&sealed.record).unwrap();
    let variants: Vec<(&str, Alter)> = vec![
        ("null optional member", |m| {
            m.insert("resource".into(), Value::Null);
        }),
        ("timestamp with an offset", |m| {
            m.insert("occurred_at".into(), json!("2026-11-25T12:00:00+01:00"));
        }),
        ("timestamp without fraction", |m| {
            m.insert("occurred_at".into(), json!("2026-11-25T11:00:00Z"));
        }),
        ("timestamp with nanoseconds", |m| {
            m.insert("occurred_at".into(), json!("2026-11-25T11:00:00.000000999Z"));
        }),
        ("received_at without fraction", |m| {
            m.insert("received_at".into(), json!("2026-11-25T12:00:00Z"));
        }),
        ("upper-case UUID", |m| {
            m.insert("event_id".into(), json!("0190F0B4-5D2E-7C3A-9F1B-2A3C4D5E6F70"));
        }),
    ];
    for (name, alter) in variants {
        let mut m = record.as_object().unwrap().clone();
        alter(&mut m);
        let bytes = to_canonical_vec(&Value::Object(m));
        match SealedEvent::open(&bytes) {
            Err(RecordError::HashMismatch { claimed, .. }) => assert_eq!(claimed, sealed.hash, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Whitespace and key order are not content: they still open.
    let pretty = serde_json::to_vec_pretty(&record).unwrap();
    assert_eq!(SealedEvent::open(&pretty).unwrap().event, sealed.event);
}

/// A client retrying an event (same id, same content) gets, in its `202`, the
/// hash of the row already stored, although the retry arrives later; the same
/// content sent by another tenant is another event with another hash.
#[test]
fn a_retry_gets_the_stored_hash_and_another_tenant_another_hash() {
    let body = json!({
        "event_id": "0190f0b4-5d2e-7c3a-9f1b-2a3c4d5e6f70",
        "occurred_at": "2026-11-25T11:00:00Z",
        "category": "audit", "action": "document.read", "outcome": "success",
        "actor": {"id": "u-1", "type": "user"}, "source": {"service": "billing"}
    });
    let at = |tenant_id, now| Context {
        tenant_id,
        now,
        ..ctx()
    };
    let first = validate_event(&body, &at(TENANT, now())).unwrap().seal();
    let retry = validate_event(&body, &at(TENANT, now() + TimeDelta::seconds(5)))
        .unwrap()
        .seal();
    assert_ne!(first.event.received_at, retry.event.received_at);
    assert_eq!(retry.hash, first.hash, "a retry's receipt names the stored hash");
    let other = validate_event(&body, &at("tenant-q", now())).unwrap().seal();
    assert_ne!(other.hash, first.hash, "the tenant is hashed");
}

#[test]
fn open_reports_each_kind_of_bad_record() {
    let e = validate_event(
        &json!({
            "occurred_at": "2026-11-25T11:00:00Z",
            "category": "audit", "action": "a.b", "outcome": "success",
            "actor": {"id": "u", "type": "user"}, "source": {"service": "s"}
        }),
        &ctx(),
    )
    .unwrap();
    let record: Value = parse_strict(&e.seal().record).unwrap();
    let with = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut m = record.as_object().unwrap().clone();
        f(&mut m);
        SealedEvent::open(&to_canonical_vec(&Value::Object(m))).unwrap_err()
    };
    assert!(matches!(SealedEvent::open(b"\xff"), Err(RecordError::NotJson(_))));
    assert!(matches!(SealedEvent::open(b"[]"), Err(RecordError::Schema(_))));
    assert!(matches!(
        with(&|m| {
            m.remove("event_hash");
        }),
        RecordError::MissingHash
    ));
    assert!(matches!(
        with(&|m| {
            m.insert("event_hash".into(), json!("abc"));
        }),
        RecordError::MalformedHash
    ));
    assert!(matches!(
        with(&|m| {
            m.insert("event_hash".into(), json!(1));
        }),
        RecordError::MalformedHash
    ));
    assert!(matches!(
        with(&|m| {
            m.insert("extra".into(), json!(1));
        }),
        RecordError::Schema(_)
    ));
    assert!(matches!(
        with(&|m| {
            m.remove("actor");
        }),
        RecordError::Schema(_)
    ));
    assert!(matches!(
        with(&|m| {
            m.insert("schema_version".into(), json!(2));
        }),
        RecordError::UnsupportedVersion(2)
    ));
    let dup = String::from_utf8(to_canonical_vec(&record))
        .unwrap()
        .replacen('{', "{\"action\":\"x.y\",", 1);
    assert!(matches!(
        SealedEvent::open(dup.as_bytes()),
        Err(RecordError::NotJson(_))
    ));
}
