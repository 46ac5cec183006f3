//! The typed event builder. An [`Event`] gets its `event_id` (UUIDv7) when it is
//! built, so every retry of the batch that carries it repeats the same id and
//! the store's `ON CONFLICT DO NOTHING` keeps one copy.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use stele_core::{validate_event, Context, Problem, TimeWindow};
use uuid::Uuid;

pub use stele_core::{ActorType, Category, Outcome};

/// Who did it.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    id: String,
    actor_type: ActorType,
    display: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Actor {
    pub fn new(actor_type: ActorType, id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            actor_type,
            display: None,
            ip: None,
            user_agent: None,
        }
    }

    pub fn user(id: impl Into<String>) -> Self {
        Self::new(ActorType::User, id)
    }

    pub fn service(id: impl Into<String>) -> Self {
        Self::new(ActorType::Service, id)
    }

    pub fn system(id: impl Into<String>) -> Self {
        Self::new(ActorType::System, id)
    }

    pub fn api_key(id: impl Into<String>) -> Self {
        Self::new(ActorType::ApiKey, id)
    }

    /// A human-readable name, e.g. an e-mail address.
    pub fn display(mut self, display: impl Into<String>) -> Self {
        self.display = Some(display.into());
        self
    }

    /// The client IP address the action came from (IPv4 or IPv6 text).
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("type".into(), Value::String(self.actor_type.as_str().into()));
        put(&mut m, "display", &self.display);
        put(&mut m, "ip", &self.ip);
        put(&mut m, "user_agent", &self.user_agent);
        Value::Object(m)
    }
}

/// What it was done to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    resource_type: String,
    id: String,
    display: Option<String>,
}

impl Resource {
    pub fn new(resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            resource_type: resource_type.into(),
            id: id.into(),
            display: None,
        }
    }

    pub fn display(mut self, display: impl Into<String>) -> Self {
        self.display = Some(display.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.resource_type.clone()));
        m.insert("id".into(), Value::String(self.id.clone()));
        put(&mut m, "display", &self.display);
        Value::Object(m)
    }
}

/// The emitting service. The client fills it from its configuration when an
/// event does not carry its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    service: String,
    version: Option<String>,
    host: Option<String>,
    region: Option<String>,
}

impl Source {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            version: None,
            host: None,
            region: None,
        }
    }

    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("service".into(), Value::String(self.service.clone()));
        put(&mut m, "version", &self.version);
        put(&mut m, "host", &self.host);
        put(&mut m, "region", &self.region);
        Value::Object(m)
    }
}

/// One audit, security or application event, built with chained calls:
///
/// ```
/// use stele_client::{Actor, Event, Outcome, Resource};
///
/// let event = Event::audit("document.delete")
///     .actor(Actor::user("u-42").display("ada@example.com"))
///     .resource(Resource::new("document", "doc-7"))
///     .outcome(Outcome::Denied)
///     .metadata("reason", "retention lock")
///     .correlation_id("req-9f2c");
/// assert_eq!(event.action(), "document.delete");
/// ```
///
/// Nothing is checked while building (a builder that fails halfway would be
/// awkward to use); [`Event::validate`] and the client apply the server's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    category: Category,
    action: String,
    outcome: Outcome,
    actor: Option<Actor>,
    resource: Option<Resource>,
    changes: Option<(Value, Value)>,
    metadata: Map<String, Value>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    trace: Option<(String, Option<String>)>,
    source: Option<Source>,
}

impl Event {
    /// A new event, `occurred_at` now and outcome `success` until told otherwise.
    pub fn new(category: Category, action: impl Into<String>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            category,
            action: action.into(),
            outcome: Outcome::Success,
            actor: None,
            resource: None,
            changes: None,
            metadata: Map::new(),
            correlation_id: None,
            causation_id: None,
            trace: None,
            source: None,
        }
    }

    pub fn audit(action: impl Into<String>) -> Self {
        Self::new(Category::Audit, action)
    }

    pub fn security(action: impl Into<String>) -> Self {
        Self::new(Category::Security, action)
    }

    pub fn application(action: impl Into<String>) -> Self {
        Self::new(Category::Application, action)
    }

    // Shortcuts for the security events every service emits.

    /// `security` `user.login` `success` by the user.
    pub fn login_succeeded(user_id: impl Into<String>) -> Self {
        Self::security("user.login").actor(Actor::user(user_id))
    }

    /// `security` `user.login` `failure` by the user (wrong password, unknown user…).
    pub fn login_failed(user_id: impl Into<String>) -> Self {
        Self::security("user.login")
            .actor(Actor::user(user_id))
            .outcome(Outcome::Failure)
    }

    /// `security` `user.logout` `success`.
    pub fn logout(user_id: impl Into<String>) -> Self {
        Self::security("user.logout").actor(Actor::user(user_id))
    }

    /// `security` `mfa.challenge` with the given outcome.
    pub fn mfa_challenge(user_id: impl Into<String>, outcome: Outcome) -> Self {
        Self::security("mfa.challenge")
            .actor(Actor::user(user_id))
            .outcome(outcome)
    }

    /// `security` `password.change` `success`; the user is both actor and resource.
    pub fn password_changed(user_id: impl Into<String>) -> Self {
        let user_id = user_id.into();
        Self::security("password.change")
            .resource(Resource::new("user", user_id.clone()))
            .actor(Actor::user(user_id))
    }

    /// `security` `access.check` `denied`: the actor was refused the resource.
    pub fn access_denied(actor: Actor, resource: Resource) -> Self {
        Self::security("access.check")
            .actor(actor)
            .resource(resource)
            .outcome(Outcome::Denied)
    }

    /// `audit` `role.grant`: `actor` gave `role` to the user `to_user`.
    pub fn role_granted(actor: Actor, role: impl Into<String>, to_user: impl Into<String>) -> Self {
        Self::audit("role.grant")
            .actor(actor)
            .resource(Resource::new("user", to_user))
            .metadata("role", role.into())
    }

    /// `audit` `role.revoke`: `actor` took `role` from the user `from_user`.
    pub fn role_revoked(actor: Actor, role: impl Into<String>, from_user: impl Into<String>) -> Self {
        Self::audit("role.revoke")
            .actor(actor)
            .resource(Resource::new("user", from_user))
            .metadata("role", role.into())
    }

    /// `security` `api_key.create`.
    pub fn api_key_created(actor: Actor, key_id: impl Into<String>) -> Self {
        Self::security("api_key.create")
            .actor(actor)
            .resource(Resource::new("api_key", key_id))
    }

    /// `security` `api_key.revoke`.
    pub fn api_key_revoked(actor: Actor, key_id: impl Into<String>) -> Self {
        Self::security("api_key.revoke")
            .actor(actor)
            .resource(Resource::new("api_key", key_id))
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// One metadata member (≤ 50 keys, key ≤ 40 chars, value ≤ 500 chars).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The state before and after; `Value::Null` for a side that does not exist
    /// (before a create, after a delete).
    pub fn changes(mut self, before: impl Into<Value>, after: impl Into<Value>) -> Self {
        self.changes = Some((before.into(), after.into()));
        self
    }

    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// W3C Trace Context of the request that caused the event.
    pub fn trace(mut self, traceparent: impl Into<String>, tracestate: Option<String>) -> Self {
        self.trace = Some((traceparent.into(), tracestate));
        self
    }

    /// When it happened, if not now (at most 72 h ago by default).
    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = at;
        self
    }

    /// Replace the generated id, e.g. with one derived from the caller's own
    /// idempotency key, so that emitting the same fact twice stores it once.
    pub fn event_id(mut self, id: Uuid) -> Self {
        self.event_id = id;
        self
    }

    /// Override the client's configured source for this event.
    pub fn source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    pub fn id(&self) -> Uuid {
        self.event_id
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub(crate) fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// The JSON the API receives.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event_id".into(), Value::String(self.event_id.to_string()));
        m.insert(
            "occurred_at".into(),
            Value::String(stele_core::event::timestamp::format(&self.occurred_at)),
        );
        m.insert("category".into(), Value::String(self.category.as_str().into()));
        m.insert("action".into(), Value::String(self.action.clone()));
        m.insert("outcome".into(), Value::String(self.outcome.as_str().into()));
        if let Some(actor) = &self.actor {
            m.insert("actor".into(), actor.to_json());
        }
        if let Some(resource) = &self.resource {
            m.insert("resource".into(), resource.to_json());
        }
        if let Some((before, after)) = &self.changes {
            let mut c = Map::new();
            if !before.is_null() {
                c.insert("before".into(), before.clone());
            }
            if !after.is_null() {
                c.insert("after".into(), after.clone());
            }
            m.insert("changes".into(), Value::Object(c));
        }
        if !self.metadata.is_empty() {
            m.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        put(&mut m, "correlation_id", &self.correlation_id);
        put(&mut m, "causation_id", &self.causation_id);
        if let Some((parent, state)) = &self.trace {
            let mut t = Map::new();
            t.insert("traceparent".into(), Value::String(parent.clone()));
            put(&mut t, "tracestate", state);
            m.insert("trace".into(), Value::Object(t));
        }
        if let Some(source) = &self.source {
            m.insert("source".into(), source.to_json());
        }
        Value::Object(m)
    }

    /// Check the event by the server's own rules (`stele_core::validate_event`),
    /// with this machine's clock and the default time window. Every problem is
    /// reported, each with its path and code.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        validate_json(&self.to_json())
    }
}

/// The server's rules applied to an event's JSON. The tenant comes from the
/// bearer token at the server; the body carries none, so any tenant fits here.
pub(crate) fn validate_json(value: &Value) -> Result<(), Vec<Problem>> {
    let ctx = Context {
        tenant_id: "client",
        now: Utc::now(),
        window: TimeWindow::default(),
        id_if_missing: None,
    };
    validate_event(value, &ctx).map(|_| ())
}

/// Fill the configured source into an event's JSON when it has none.
pub(crate) fn json_with_source(event: &Event, source: &Source) -> Value {
    let mut value = event.to_json();
    if !event.has_source() {
        if let Value::Object(m) = &mut value {
            m.insert("source".into(), source.to_json());
        }
    }
    value
}

fn put(m: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        m.insert(key.into(), Value::String(v.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stele_core::Code;

    #[test]
    fn a_complete_event_passes_the_server_rules() {
        let e = Event::audit("document.update")
            .actor(Actor::user("u-1").display("Ada").ip("192.0.2.1").user_agent("ua"))
            .resource(Resource::new("document", "d-1").display("Plan"))
            .outcome(Outcome::Success)
            .metadata("plan", "enterprise")
            .metadata("seats", 25)
            .changes(json!({"title": "a"}), json!({"title": "b"}))
            .correlation_id("c-1")
            .causation_id("c-0")
            .trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)
            .source(Source::new("docs").version("1.0").host("h").region("eu-west-1"));
        assert_eq!(e.validate(), Ok(()));
        let v = e.to_json();
        assert_eq!(v["actor"]["type"], "user");
        assert_eq!(v["changes"]["after"]["title"], "b");
        assert_eq!(v["event_id"], e.id().to_string());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let e = Event::audit("Not An Action").metadata("k", "v".repeat(501));
        let problems = e.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"action"), "{paths:?}");
        assert!(paths.contains(&"actor"), "{paths:?}");
        assert!(paths.contains(&"source"), "{paths:?}");
        assert!(paths.contains(&"metadata.k"), "{paths:?}");
    }

    #[test]
    fn an_event_far_in_the_past_is_refused_as_too_old() {
        let e = Event::login_succeeded("u")
            .source(Source::new("s"))
            .occurred_at(Utc::now() - chrono::TimeDelta::days(10));
        let problems = e.validate().unwrap_err();
        assert_eq!(problems[0].code, Code::TooOld);
    }

    #[test]
    fn security_shortcuts_build_valid_events() {
        let admin = || Actor::user("admin");
        let events = [
            Event::login_succeeded("u"),
            Event::login_failed("u"),
            Event::logout("u"),
            Event::mfa_challenge("u", Outcome::Failure),
            Event::password_changed("u"),
            Event::access_denied(admin(), Resource::new("document", "d")),
            Event::role_granted(admin(), "editor", "u"),
            Event::role_revoked(admin(), "editor", "u"),
            Event::api_key_created(Actor::service("ci"), "k-1"),
            Event::api_key_revoked(admin(), "k-1"),
        ];
        for e in events {
            let v = json_with_source(&e, &Source::new("svc"));
            assert_eq!(validate_json(&v), Ok(()), "{v}");
        }
    }

    #[test]
    fn the_id_is_fixed_when_built_and_kept_by_clones() {
        let e = Event::logout("u");
        let again = e.clone();
        assert_eq!(e.id(), again.id());
        assert_eq!(e.id().get_version_num(), 7);
        assert_ne!(Event::logout("u").id(), e.id());
    }

    #[test]
    fn a_configured_source_does_not_override_the_events_own() {
        let own = Event::logout("u").source(Source::new("own"));
        assert_eq!(json_with_source(&own, &Source::new("cfg"))["source"]["service"], "own");
        let none = Event::logout("u");
        assert_eq!(json_with_source(&none, &Source::new("cfg"))["source"]["service"], "cfg");
    }
}
