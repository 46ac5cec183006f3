//! Stream record → event. A record that cannot be opened is poison: it is
//! dead-lettered with its reason and never blocks the shard.

use serde::Serialize;
use serde_json::Value;
use stele_core::{Event, EventHash, RecordError, SealedEvent};

/// Why a record is set aside instead of written. The snake_case names are
/// stable: they appear in dead letters and may be alerted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoisonCode {
    NotJson,
    MissingHash,
    MalformedHash,
    Schema,
    UnsupportedVersion,
    HashMismatch,
    /// A string holds U+0000, which Postgres `text`/`jsonb` cannot store.
    NulCharacter,
    /// The event id is already stored for this tenant with other content
    /// (found when the record is written, not when it is decoded).
    Conflict,
}

impl PoisonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::MissingHash => "missing_hash",
            Self::MalformedHash => "malformed_hash",
            Self::Schema => "schema",
            Self::UnsupportedVersion => "unsupported_version",
            Self::HashMismatch => "hash_mismatch",
            Self::NulCharacter => "nul_character",
            Self::Conflict => "conflict",
        }
    }
}

/// A poison record's reason: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub code: PoisonCode,
    pub reason: String,
    /// For [`PoisonCode::Conflict`]: the record's hash and the stored one.
    pub conflict: Option<ConflictHashes>,
}

/// The two hashes of an id conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictHashes {
    /// The dead-lettered record's hash (what its sender's 202 named).
    pub event_hash: EventHash,
    /// The hash of the row stored under the same tenant and event id.
    pub stored_event_hash: EventHash,
}

impl Poison {
    /// A record whose (tenant, event id) is already stored with `stored` as
    /// its hash.
    pub fn conflict(event: &Event, event_hash: EventHash, stored_event_hash: EventHash) -> Self {
        Poison {
            code: PoisonCode::Conflict,
            reason: format!(
                "event_id {} is already stored for tenant {:?} with other content (stored event_hash {}, this record's {}); not stored",
                event.event_id, event.tenant_id, stored_event_hash, event_hash
            ),
            conflict: Some(ConflictHashes {
                event_hash,
                stored_event_hash,
            }),
        }
    }
}

impl From<RecordError> for Poison {
    fn from(e: RecordError) -> Self {
        let code = match e {
            RecordError::NotJson(_) => PoisonCode::NotJson,
            RecordError::MissingHash => PoisonCode::MissingHash,
            RecordError::MalformedHash => PoisonCode::MalformedHash,
            RecordError::Schema(_) => PoisonCode::Schema,
            RecordError::UnsupportedVersion(_) => PoisonCode::UnsupportedVersion,
            RecordError::HashMismatch { .. } => PoisonCode::HashMismatch,
        };
        Poison {
            code,
            reason: e.to_string(),
            conflict: None,
        }
    }
}

/// Open a record (canonical JSON with `event_hash`) and re-check its hash;
/// also refuse what Postgres could not store, so one bad record can never
/// fail a whole batch over and over.
pub fn open_record(data: &[u8]) -> Result<(Event, EventHash), Poison> {
    let sealed = SealedEvent::open(data)?;
    if let Some(field) = nul_field(&sealed.event) {
        return Err(Poison {
            code: PoisonCode::NulCharacter,
            reason: format!("{field} contains a NUL character (U+0000), which PostgreSQL cannot store"),
            conflict: None,
        });
    }
    Ok((sealed.event, sealed.hash))
}

/// The shard of a Kinesis `eventID` (`shardId-000000000000:4959…`).
pub fn shard_of(event_id: Option<&str>) -> Option<&str> {
    let id = event_id?;
    Some(id.split_once(':').map_or(id, |(shard, _)| shard))
}

fn nul_field(e: &Event) -> Option<&'static str> {
    let has = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has);
    let fields: [(&'static str, bool); 19] = [
        ("tenant_id", has(&e.tenant_id)),
        ("action", has(&e.action)),
        ("actor.id", has(&e.actor.id)),
        ("actor.display", opt(&e.actor.display)),
        ("actor.ip", opt(&e.actor.ip)),
        ("actor.user_agent", opt(&e.actor.user_agent)),
        (
            "resource.type",
            e.resource.as_ref().is_some_and(|r| has(&r.resource_type)),
        ),
        ("resource.id", e.resource.as_ref().is_some_and(|r| has(&r.id))),
        ("resource.display", e.resource.as_ref().is_some_and(|r| opt(&r.display))),
        (
            "changes",
            e.changes.as_ref().is_some_and(|c| {
                c.before.as_ref().is_some_and(json_has_nul) || c.after.as_ref().is_some_and(json_has_nul)
            }),
        ),
        (
            "metadata",
            e.metadata
                .as_ref()
                .is_some_and(|m| m.iter().any(|(k, v)| has(k) || json_has_nul(v))),
        ),
        ("correlation_id", opt(&e.correlation_id)),
        ("causation_id", opt(&e.causation_id)),
        (
            "trace.traceparent",
            e.trace.as_ref().is_some_and(|t| has(&t.traceparent)),
        ),
        ("trace.tracestate", e.trace.as_ref().is_some_and(|t| opt(&t.tracestate))),
        ("source.service", has(&e.source.service)),
        ("source.version", opt(&e.source.version)),
        ("source.host", opt(&e.source.host)),
        ("source.region", opt(&e.source.region)),
    ];
    fields.iter().find(|(_, bad)| *bad).map(|(name, _)| *name)
}

fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use stele_core::{validate_event, Context, TimeWindow};

    fn sealed(body: Value) -> SealedEvent {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let ctx = Context {
            tenant_id: "t1",
            now,
            window: TimeWindow::default(),
            id_if_missing: None,
        };
        validate_event(&body, &ctx).expect("valid event").seal()
    }

    fn body() -> Value {
        json!({
            "occurred_at": "2026-03-01T11:59:00Z",
            "category": "audit",
            "action": "user.login",
            "outcome": "success",
            "actor": {"id": "u1", "type": "user"},
            "source": {"service": "auth"}
        })
    }

    #[test]
    fn a_sealed_record_opens_with_its_hash() {
        let s = sealed(body());
        let (event, hash) = open_record(&s.record).unwrap();
        assert_eq!(event, s.event);
        assert_eq!(hash, s.hash);
    }

    #[test]
    fn a_record_changed_after_sealing_is_a_hash_mismatch() {
        let s = sealed(body());
        let tampered = String::from_utf8(s.record)
            .unwrap()
            .replace("user.login", "user.logout");
        let poison = open_record(tampered.as_bytes()).unwrap_err();
        assert_eq!(poison.code, PoisonCode::HashMismatch);
        assert!(poison.reason.contains("mismatch"), "{}", poison.reason);
    }

    #[test]
    fn bytes_that_are_not_json_are_poison() {
        assert_eq!(open_record(b"\xff\x00garbage").unwrap_err().code, PoisonCode::NotJson);
        assert_eq!(open_record(b"").unwrap_err().code, PoisonCode::NotJson);
    }

    #[test]
    fn a_record_without_a_hash_is_poison() {
        let s = sealed(body());
        let mut v: Value = serde_json::from_slice(&s.record).unwrap();
        v.as_object_mut().unwrap().remove("event_hash");
        let poison = open_record(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(poison.code, PoisonCode::MissingHash);
    }

    #[test]
    fn a_nul_inside_metadata_is_poison_even_with_a_valid_hash() {
        // Ingest rejects NUL; a record from another producer may still carry one.
        let s = sealed(body());
        let mut event = s.event.clone();
        let mut meta = serde_json::Map::new();
        meta.insert("k".into(), json!(["ok", "bad\u{0}"]));
        event.metadata = Some(meta);
        let record = event.seal().record;
        let poison = open_record(&record).unwrap_err();
        assert_eq!(poison.code, PoisonCode::NulCharacter);
        assert!(poison.reason.starts_with("metadata"), "{}", poison.reason);
    }

    #[test]
    fn the_shard_is_the_part_of_the_event_id_before_the_colon() {
        assert_eq!(
            shard_of(Some("shardId-000000000003:4959")),
            Some("shardId-000000000003")
        );
        assert_eq!(shard_of(Some("noseparator")), Some("noseparator"));
        assert_eq!(shard_of(None), None);
    }
}
