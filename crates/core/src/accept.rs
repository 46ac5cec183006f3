//! One pass from request text to accepted events, for the common case.
//!
//! The general path parses a body into a `serde_json::Value` tree and walks it
//! ([`crate::validate`]), so that every problem is found and reported with its
//! path. Most bodies have none: here their envelope is decoded straight into
//! typed fields, strings borrowed from the body, and checked by the same rules.
//! Anything this path does not accept outright (a problem, a duplicate key, an
//! escaped string, a shape it does not know) makes it answer `None`, and the
//! caller runs the general path, which decides and reports as it always has.
//! A differential test holds the two together: whatever this path accepts,
//! the general path accepts as the same event.

use std::marker::PhantomData;
use std::net::IpAddr;

use serde::de::{value::MapAccessDeserializer, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Map;
use uuid::Uuid;

use crate::event::{timestamp, truncate_to_micros, Actor, Event, Resource, Source, Trace, SCHEMA_VERSION};
use crate::json::StrictValue;
use crate::limits;
use crate::validate::{
    is_action, is_traceparent, parse_actor_type, parse_category, parse_outcome, Context, ProblemList, Walker,
};

/// The events of a request body (one event, or `{"events": [...]}` with 1 to
/// `max_events` of them), each validated with `ctx(index)` (`None`: a single
/// event), when every one of them is valid as it stands; `None` otherwise.
pub fn accept_events<'c>(
    body: &[u8],
    max_events: usize,
    ctx: impl Fn(Option<usize>) -> Context<'c>,
) -> Option<Vec<Event>> {
    let text = std::str::from_utf8(body).ok()?;
    if let Ok(MapOnly(event)) = serde_json::from_str::<MapOnly<WireEvent>>(text) {
        return Some(vec![accept(event, &ctx(None))?]);
    }
    let MapOnly(batch) = serde_json::from_str::<MapOnly<WireBatch>>(text).ok()?;
    if batch.events.is_empty() || batch.events.len() > max_events {
        return None;
    }
    batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, MapOnly(event))| accept(event, &ctx(Some(i))))
        .collect()
}

/// A JSON object decoded as `T`. Serde's derived structs also take arrays
/// (members by position), which the general path refuses.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(ObjectVisitor(PhantomData)).map(MapOnly)
    }
}

// Serde refuses an unknown or repeated member of these, and a string with an
// escape in it (it cannot be borrowed); `null` reads as absent, as it does on
// the general path.

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch<'a> {
    #[serde(borrow)]
    events: Vec<MapOnly<WireEvent<'a>>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a str>,
    #[serde(borrow, default)]
    tenant_id: Option<&'a str>,
    #[serde(borrow, default)]
    occurred_at: Option<&'a str>,
    #[serde(borrow, default)]
    category: Option<&'a str>,
    #[serde(borrow, default)]
    action: Option<&'a str>,
    #[serde(borrow, default)]
    outcome: Option<&'a str>,
    #[serde(borrow, default)]
    actor: Option<MapOnly<WireActor<'a>>>,
    #[serde(borrow, default)]
    resource: Option<MapOnly<WireResource<'a>>>,
    #[serde(default)]
    changes: Option<StrictValue>,
    #[serde(default)]
    metadata: Option<StrictValue>,
    #[serde(borrow, default)]
    correlation_id: Option<&'a str>,
    #[serde(borrow, default)]
    causation_id: Option<&'a str>,
    #[serde(borrow, default)]
    trace: Option<MapOnly<WireTrace<'a>>>,
    #[serde(borrow, default)]
    source: Option<MapOnly<WireSource<'a>>>,
    #[serde(default)]
    schema_version: Option<StrictValue>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireActor<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default, rename = "type")]
    actor_type: Option<&'a str>,
    #[serde(borrow, default)]
    display: Option<&'a str>,
    #[serde(borrow, default)]
    ip: Option<&'a str>,
    #[serde(borrow, default)]
    user_agent: Option<&'a str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResource<'a> {
    #[serde(borrow, default, rename = "type")]
    resource_type: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    display: Option<&'a str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTrace<'a> {
    #[serde(borrow, default)]
    traceparent: Option<&'a str>,
    #[serde(borrow, default)]
    tracestate: Option<&'a str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSource<'a> {
    #[serde(borrow, default)]
    service: Option<&'a str>,
    #[serde(borrow, default)]
    version: Option<&'a str>,
    #[serde(borrow, default)]
    host: Option<&'a str>,
    #[serde(borrow, default)]
    region: Option<&'a str>,
}

/// A string the general path's `string_value` lets through: no NUL, at most
/// `max_chars` characters.
fn clean(s: &str, max_chars: usize) -> Option<String> {
    let fits = s.len() <= max_chars || s.chars().count() <= max_chars;
    (fits && !s.contains('\0')).then(|| s.to_owned())
}

/// A required string: clean and not blank.
fn required(s: Option<&str>, max_chars: usize) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).and_then(|s| clean(s, max_chars))
}

/// An optional string: absent, or clean. `None` when present and not clean.
fn optional(s: Option<&str>, max_chars: usize) -> Option<Option<String>> {
    match s {
        None => Some(None),
        Some(s) => clean(s, max_chars).map(Some),
    }
}

/// The event, when the general path would accept `wire` with no problem.
fn accept(wire: WireEvent<'_>, ctx: &Context<'_>) -> Option<Event> {
    let event_id = match wire.event_id {
        None => ctx.id_if_missing.unwrap_or_else(Uuid::now_v7),
        Some(s) => Uuid::parse_str(s).ok().filter(|id| !id.is_nil())?,
    };
    if wire.tenant_id.is_some_and(|t| t != ctx.tenant_id) {
        return None;
    }
    let occurred_at = timestamp::parse(&required(wire.occurred_at, 64)?)?;
    if occurred_at < ctx.now - ctx.window.max_lateness || occurred_at > ctx.now + ctx.window.max_skew {
        return None;
    }
    let category = parse_category(wire.category?)?;
    let action = required(wire.action, limits::MAX_ACTION_CHARS).filter(|a| is_action(a))?;
    let outcome = parse_outcome(wire.outcome?)?;

    let MapOnly(actor) = wire.actor?;
    let actor = Actor {
        id: required(actor.id, limits::MAX_ID_CHARS)?,
        actor_type: parse_actor_type(actor.actor_type?)?,
        display: optional(actor.display, limits::MAX_DISPLAY_CHARS)?,
        ip: match optional(actor.ip, 64)? {
            Some(ip) if ip.parse::<IpAddr>().is_err() => return None,
            ip => ip,
        },
        user_agent: optional(actor.user_agent, limits::MAX_USER_AGENT_CHARS)?,
    };
    let resource = match wire.resource {
        None => None,
        Some(MapOnly(r)) => Some(Resource {
            resource_type: required(r.resource_type, limits::MAX_ID_CHARS)?,
            id: required(r.id, limits::MAX_ID_CHARS)?,
            display: optional(r.display, limits::MAX_DISPLAY_CHARS)?,
        }),
    };
    let trace = match wire.trace {
        None => None,
        Some(MapOnly(t)) => Some(Trace {
            traceparent: required(t.traceparent, 55).filter(|tp| is_traceparent(tp))?,
            tracestate: optional(t.tracestate, 512)?,
        }),
    };
    let MapOnly(source) = wire.source?;
    let source = Source {
        service: required(source.service, limits::MAX_ID_CHARS)?,
        version: optional(source.version, 64)?,
        host: optional(source.host, limits::MAX_DISPLAY_CHARS)?,
        region: optional(source.region, 64)?,
    };
    if let Some(StrictValue(v)) = &wire.schema_version {
        if v.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
            return None;
        }
    }

    // `changes` and `metadata` are free-form: the general path's own checks
    // run on them (with a list that keeps nothing: any problem means `None`).
    let mut problems = ProblemList::new(0);
    let mut walker = Walker::new(&mut problems, None);
    let mut free = Map::new();
    for (name, value) in [("changes", wire.changes), ("metadata", wire.metadata)] {
        if let Some(StrictValue(v)) = value {
            free.insert(name.to_owned(), v);
        }
    }
    let changes = walker.changes(&free)?;
    let metadata = walker.metadata(&free)?;
    if !problems.is_empty() {
        return None;
    }

    let event = Event {
        event_id,
        tenant_id: ctx.tenant_id.to_owned(),
        occurred_at,
        received_at: truncate_to_micros(ctx.now),
        category,
        action,
        outcome,
        actor,
        resource,
        changes,
        metadata,
        correlation_id: optional(wire.correlation_id, limits::MAX_ID_CHARS)?,
        causation_id: optional(wire.causation_id, limits::MAX_ID_CHARS)?,
        trace,
        source,
        schema_version: SCHEMA_VERSION,
    };
    let fits = crate::codec::len_bound(&event) <= limits::MAX_EVENT_BYTES
        || event.canonical_bytes().len() <= limits::MAX_EVENT_BYTES;
    fits.then_some(event)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::validate::{validate_event_into, TimeWindow};

    fn ctx(index: Option<usize>) -> Context<'static> {
        Context {
            tenant_id: "tenant-p",
            now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            window: TimeWindow::default(),
            id_if_missing: Some(Uuid::from_u128(1000 + index.map_or(0, |i| i as u128 + 1))),
        }
    }

    /// The general path's verdict on a body: its events when it accepts them all.
    fn general(body: &[u8], max_events: usize) -> Option<Vec<Event>> {
        let Value::Object(mut obj) = crate::json::parse_strict(body).ok()? else {
            return None;
        };
        let mut problems = ProblemList::new(limits::MAX_PROBLEMS_LISTED);
        let events = match obj.remove("events") {
            None => vec![validate_event_into(
                &Value::Object(obj),
                &ctx(None),
                None,
                &mut problems,
            )],
            Some(Value::Array(values)) if obj.is_empty() && !values.is_empty() && values.len() <= max_events => values
                .iter()
                .enumerate()
                .map(|(i, v)| validate_event_into(v, &ctx(Some(i)), Some(i), &mut problems))
                .collect(),
            Some(_) => return None,
        };
        if !problems.is_empty() {
            return None;
        }
        events.into_iter().collect()
    }

    /// Ways to spell a body that the typed decoder must not read differently.
    fn spellings(v: &Value) -> Vec<String> {
        let plain = v.to_string();
        let mut out = vec![
            plain.clone(),
            serde_json::to_string_pretty(v).unwrap_or_default(),
            json!({ "events": [v, v] }).to_string(),
            json!({ "events": [v], "other": 1 }).to_string(),
            json!({ "events": [] }).to_string(),
            json!([v]).to_string(),
            // Repeated members, at the top and inside objects.
            plain.replacen('{', r#"{"action":"x.y","#, 1),
            plain.replacen(r#""actor":{"#, r#""actor":{"id":"dup","#, 1),
            plain.replacen(r#""metadata":{"#, r#""metadata":{"k":1,"k":2,"#, 1),
            plain.replacen(r#""source":{"#, r#""source":{"service":"s","#, 1),
            // An escaped string, a trailing character.
            plain.replacen(r#""user""#, r#""\u0075ser""#, 1),
            format!("{plain} x"),
        ];
        if let Value::Object(m) = v {
            for name in ["actor", "source", "resource", "trace", "changes", "metadata"] {
                if let Some(Value::Object(inner)) = m.get(name) {
                    // The object as an array of its values: serde's structs would take it.
                    let mut changed = m.clone();
                    changed.insert(name.into(), Value::Array(inner.values().cloned().collect()));
                    out.push(Value::Object(changed).to_string());
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the one-pass path accepts, the general path accepts as the same events.
        #[test]
        fn what_one_pass_accepts_the_general_path_accepts_alike(v in crate::validate::tests::input()) {
            for body in spellings(&v) {
                if let Some(events) = accept_events(body.as_bytes(), 3, ctx) {
                    prop_assert_eq!(Some(events), general(body.as_bytes(), 3), "{}", body);
                }
            }
        }
    }

    /// The one-pass path does take the common case: a valid event, alone or in a batch.
    #[test]
    fn valid_events_are_accepted_in_one_pass() {
        let event = json!({
            "occurred_at": "2026-11-25T11:59:00.123456789+01:00",
            "category": "audit", "action": "user.login", "outcome": "success",
            "actor": {"id": "u-1", "type": "user", "ip": "192.0.2.7", "display": null},
            "resource": {"type": "doc", "id": "d-1"},
            "changes": {"before": {"n": 5.0}, "after": {"n": [1, 2.5, -0.0]}},
            "metadata": {"plan": "pro", "seats": 250, "beta": true},
            "trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "source": {"service": "auth", "region": "eu-west-1"},
            "schema_version": 1,
            "tenant_id": "tenant-p",
        });
        for body in [event.to_string(), json!({ "events": [event, event] }).to_string()] {
            let fast = accept_events(body.as_bytes(), 3, ctx).expect("accepted in one pass");
            assert_eq!(Some(fast), general(body.as_bytes(), 3));
        }
        // Four events are over the limit of three given here.
        let four = json!({ "events": [event, event, event, event] }).to_string();
        assert_eq!(accept_events(four.as_bytes(), 3, ctx), None);
    }
}
