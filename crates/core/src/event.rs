//! The event envelope: one shape for audit, security and application events.
//!
//! `Event` is the accepted, normalised form: what ingest hashes, what travels on
//! Kinesis (as canonical JSON plus `event_hash`) and what lands in Postgres.
//! Clients never deserialize into it directly; `validate` builds it so that every
//! problem in a request is reported at once.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical::to_canonical_object_vec;
use crate::codec;

/// The only schema version this build writes and reads.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_id: Uuid,
    pub tenant_id: String,
    #[serde(with = "timestamp")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub received_at: DateTime<Utc>,
    pub category: Category,
    pub action: String,
    pub outcome: Outcome,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    pub source: Source,
    pub schema_version: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Audit,
    Security,
    Application,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
    Error,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    Service,
    System,
    ApiKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub id: String,
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// W3C Trace Context headers, carried verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// SHA-256 of an event's canonical form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Debug for EventHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl std::fmt::Display for EventHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Category {
    pub const ALL: [&'static str; 3] = ["audit", "security", "application"];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Security => "security",
            Self::Application => "application",
        }
    }
}

impl Outcome {
    pub const ALL: [&'static str; 5] = ["success", "failure", "denied", "error", "unknown"];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Unknown => "unknown",
        }
    }
}

impl ActorType {
    pub const ALL: [&'static str; 4] = ["user", "service", "system", "api_key"];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::System => "system",
            Self::ApiKey => "api_key",
        }
    }
}

impl Event {
    /// The event as a JSON value (the form that is canonicalised and hashed).
    pub fn to_json_value(&self) -> Value {
        // Serialising these plain data types cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// RFC 8785 canonical JSON of every envelope field (everything but `event_hash`):
    /// the Kinesis record without its hash.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CANONICAL_CAPACITY);
        codec::write_event(self, true, None, &mut out);
        out
    }

    /// RFC 8785 canonical JSON of what `event_hash` covers: the event as its
    /// producer sent it (normalised) plus the tenant, i.e. every envelope field
    /// but `received_at`. So a retry of an event (same id, same content)
    /// arriving later gets the hash of the row already stored (a decision of
    /// issue 15); `received_at` is to be bound by the verifiable log instead.
    pub fn hashed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CANONICAL_CAPACITY);
        codec::write_event(self, false, None, &mut out);
        out
    }

    /// SHA-256 over [`Event::hashed_bytes`].
    pub fn compute_hash(&self) -> EventHash {
        EventHash(Sha256::digest(self.hashed_bytes()).into())
    }

    /// Hash the event and produce the record that travels on the stream: the
    /// canonical JSON of the event (`received_at` included) with `event_hash`
    /// added (itself canonical).
    pub fn seal(self) -> SealedEvent {
        // Written once, with a placeholder hash; the hash is taken over the
        // record minus its `event_hash` and `received_at` members (exactly
        // `hashed_bytes`, as both are canonical), then written in place.
        let mut record = Vec::with_capacity(CANONICAL_CAPACITY);
        let layout = codec::write_event(&self, true, Some(HASH_PLACEHOLDER), &mut record);
        let hash = codec::digest_without(&record, &layout);
        if let Some(member) = &layout.event_hash {
            // The member ends with the 64 hex digits and the closing quote.
            let digits = member.end - 1 - HASH_PLACEHOLDER.len()..member.end - 1;
            if let Some(slot) = record.get_mut(digits) {
                // Both are 64 bytes: `encode_to_slice` cannot fail here.
                let _ = hex::encode_to_slice(hash.0, slot);
            }
        }
        SealedEvent {
            event: self,
            hash,
            record,
        }
    }
}

/// Room for a typical event's canonical form, so that writing it rarely grows the buffer.
const CANONICAL_CAPACITY: usize = 1024;

/// Where `seal` writes the hash once it is known (64 hex digits, no escaping).
const HASH_PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A stream record decoded in one pass: the event's members plus `event_hash`.
/// Lenient as serde is (see [`SealedEvent::open_canonical`] for why that is safe).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    event_id: Uuid,
    tenant_id: String,
    #[serde(with = "timestamp")]
    occurred_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    received_at: DateTime<Utc>,
    category: Category,
    action: String,
    outcome: Outcome,
    actor: Actor,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    changes: Option<Changes>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    causation_id: Option<String>,
    #[serde(default)]
    trace: Option<Trace>,
    source: Source,
    schema_version: u16,
    event_hash: String,
}

impl WireRecord {
    fn into_parts(self) -> (Event, String) {
        let event = Event {
            event_id: self.event_id,
            tenant_id: self.tenant_id,
            occurred_at: self.occurred_at,
            received_at: self.received_at,
            category: self.category,
            action: self.action,
            outcome: self.outcome,
            actor: self.actor,
            resource: self.resource,
            changes: self.changes,
            metadata: self.metadata,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            trace: self.trace,
            source: self.source,
            schema_version: self.schema_version,
        };
        (event, self.event_hash)
    }
}

/// The one envelope field `event_hash` leaves out: the server's arrival time,
/// which differs between a first attempt and its retry.
pub const UNHASHED_FIELD: &str = "received_at";

/// An accepted event with its hash and its wire record.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    pub event: Event,
    pub hash: EventHash,
    /// Canonical JSON of the event including `event_hash`: the Kinesis record data.
    pub record: Vec<u8>,
}

/// Why a stream record could not be opened. Such a record is poison: it is
/// set aside (dead-letter queue) rather than retried.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    NotJson(String),
    #[error("record has no event_hash")]
    MissingHash,
    #[error("record event_hash is not 64 hex digits")]
    MalformedHash,
    #[error("record does not match the event schema: {0}")]
    Schema(String),
    #[error("unsupported schema_version {0}")]
    UnsupportedVersion(u16),
    #[error("event_hash mismatch: record says {claimed}, content hashes to {actual}")]
    HashMismatch { claimed: EventHash, actual: EventHash },
}

impl SealedEvent {
    /// Parse a stream record and prove its content matches its `event_hash`.
    pub fn open(record: &[u8]) -> Result<SealedEvent, RecordError> {
        match Self::open_canonical(record) {
            Some(sealed) => Ok(sealed),
            None => Self::open_any(record),
        }
    }

    /// The common case, a record exactly as [`Event::seal`] writes it: decoded
    /// once, straight into the typed event, and accepted when that event written
    /// back (with the record's own `event_hash`) gives the record's bytes and
    /// hashes to the claimed hash. Bytes equal to the canonical form are what
    /// [`SealedEvent::open_any`] requires of the content too, so both accept the
    /// same records; `None` sends every other record, and every error, to
    /// `open_any`, which decides and words them as it always has.
    pub(crate) fn open_canonical(record: &[u8]) -> Option<SealedEvent> {
        // One UTF-8 check of the whole record, not one per string.
        let wire: WireRecord = serde_json::from_str(std::str::from_utf8(record).ok()?).ok()?;
        let (event, claimed_hex) = wire.into_parts();
        if event.schema_version != SCHEMA_VERSION {
            return None;
        }
        let claimed = EventHash::from_hex(&claimed_hex)?;
        let mut written = Vec::with_capacity(record.len());
        let layout = codec::write_event(&event, true, Some(&claimed_hex), &mut written);
        if written != record {
            return None;
        }
        let hash = codec::digest_without(&written, &layout);
        (hash == claimed).then_some(SealedEvent {
            event,
            hash,
            record: written,
        })
    }

    /// Any record: strict parse (duplicate keys refused), then the content's
    /// canonical form checked against the event it decodes to.
    fn open_any(record: &[u8]) -> Result<SealedEvent, RecordError> {
        let value = crate::json::parse_strict(record).map_err(|e| RecordError::NotJson(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(RecordError::Schema("record is not a JSON object".into()));
        };
        let claimed = match map.remove("event_hash") {
            Some(Value::String(h)) => EventHash::from_hex(&h).ok_or(RecordError::MalformedHash)?,
            Some(_) => return Err(RecordError::MalformedHash),
            None => return Err(RecordError::MissingHash),
        };
        // The hash must cover the record's own content, not only the event serde
        // rebuilds from it: deserialising forgives `null` members, other time
        // offsets, extra fractional digits and upper-case UUIDs, so two different
        // records could otherwise both "verify" against one hash.
        let content = to_canonical_object_vec(&map);
        let event: Event =
            serde_json::from_value(Value::Object(map)).map_err(|e| RecordError::Schema(e.to_string()))?;
        if event.schema_version != SCHEMA_VERSION {
            return Err(RecordError::UnsupportedVersion(event.schema_version));
        }
        let actual = event.compute_hash();
        if actual != claimed {
            return Err(RecordError::HashMismatch { claimed, actual });
        }
        // The record must be exactly the canonical form of the event it decodes
        // to, `received_at` included (which the hash does not cover).
        if content != event.canonical_bytes() {
            // Reported as the digest of the record's whole content, which can
            // never equal a hash that leaves `received_at` out.
            let actual = EventHash(Sha256::digest(&content).into());
            return Err(RecordError::HashMismatch { claimed, actual });
        }
        Ok(SealedEvent {
            event,
            hash: actual,
            record: record.to_vec(),
        })
    }
}

/// A deterministic event id for a client's `Idempotency-Key`: the same tenant and
/// key always give the same id, so a retried single-event request is deduplicated.
pub fn event_id_from_idempotency_key(tenant_id: &str, key: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"stele.idempotency.v1\0");
    h.update(tenant_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The event id of event `index` of a batch sent with `Idempotency-Key: key`.
///
/// The input is structured, so no key can forge another event's id: a
/// distinct domain tag (a single event's input starts `stele.idempotency.v1`,
/// this one `stele.idempotency.batch.v1`), then the tenant and the key each
/// length-prefixed, then the index as 8 bytes. (Until issue 18 a batch used
/// the single-event id of `{key}#{index}`, so a single request with key `x#1`
/// got the id of event 1 of batch `x`.)
pub fn event_id_from_idempotency_key_in_batch(tenant_id: &str, key: &str, index: usize) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"stele.idempotency.batch.v1\0");
    for part in [tenant_id, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update((index as u64).to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Postgres keeps microseconds; so does the canonical form, so a row read back
/// hashes to the same value as the event that was accepted.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Timestamps on the wire: RFC 3339, UTC, always six fractional digits.
pub mod timestamp {
    use chrono::{DateTime, SecondsFormat, Timelike, Utc};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// Parse RFC 3339 with any offset; the result is UTC, truncated to microseconds.
    /// A leap second (`:60`) is refused: Postgres would store it as the next
    /// minute, and the row would no longer hash to the accepted event.
    pub fn parse(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .filter(|t| t.nanosecond() < 1_000_000_000)
            .map(|t| super::truncate_to_micros(t.with_timezone(&Utc)))
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(TimestampVisitor)
    }

    /// Parses the string where it lies in the input (no copy); errors read as
    /// those of deserialising a `String` and parsing it.
    struct TimestampVisitor;

    impl Visitor<'_> for TimestampVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            parse(s).ok_or_else(|| E::custom(format!("invalid RFC 3339 timestamp `{s}`")))
        }
    }
}
