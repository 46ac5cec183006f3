//! `GET /v1/events`: the query string, checked parameter by parameter. Every
//! refusal names the parameter; no query reaches storage without a bounded range.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use stele_core::event::{Category, Outcome};
use stele_core::Event;

/// The longest `from`..`to` range one query may cover: no query scans unbounded history.
pub const MAX_RANGE_DAYS: i64 = 31;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;
/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 100;

/// A refused parameter: its name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{param}`: {message}")]
pub struct ParamError {
    pub param: &'static str,
    pub message: String,
}

fn refuse(param: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        param,
        message: message.into(),
    }
}

/// Newest first (the default) or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Desc,
    Asc,
}

/// `action=a.b` matches exactly; `action=a.*` matches `a.` and anything after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    Exact(String),
    Prefix(String),
}

/// The filters of one search, as the tenant asked (the tenant is not a parameter:
/// it comes from the authorizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// `occurred_at >= from`
    pub from: DateTime<Utc>,
    /// `occurred_at < to`
    pub to: DateTime<Utc>,
    pub actor_id: Option<String>,
    pub action: Option<ActionFilter>,
    pub category: Option<Category>,
    pub outcome: Option<Outcome>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub correlation_id: Option<String>,
    pub source_service: Option<String>,
    pub order: Order,
}

/// A parsed request: filters, page size and the raw cursor (checked against the
/// filters by [`crate::events::cursor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSearch {
    pub filters: Filters,
    pub limit: usize,
    pub cursor: Option<String>,
}

const KNOWN: &[&str] = &[
    "from",
    "to",
    "actor_id",
    "action",
    "category",
    "outcome",
    "resource_type",
    "resource_id",
    "correlation_id",
    "source_service",
    "order",
    "limit",
    "cursor",
];

fn time(param: &'static str, value: &str) -> Result<DateTime<Utc>, ParamError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            refuse(
                param,
                format!("`{value}` is not an RFC 3339 time (e.g. 2026-03-01T00:00:00Z): {e}"),
            )
        })
}

fn text(param: &'static str, value: &str) -> Result<String, ParamError> {
    if value.is_empty() || value.len() > 256 {
        return Err(refuse(param, "must be 1 to 256 bytes"));
    }
    Ok(value.to_string())
}

impl EventSearch {
    /// Parses the query string's parameters (`first` gives a parameter's value;
    /// `names` lists every parameter present, so unknown ones are refused).
    pub fn parse<'a>(
        first: impl Fn(&str) -> Option<&'a str>,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParamError> {
        for name in names {
            if !KNOWN.contains(&name) {
                return Err(ParamError {
                    param: "query",
                    message: format!("unknown parameter `{name}`; known: {}", KNOWN.join(", ")),
                });
            }
        }
        let from = time(
            "from",
            first("from").ok_or_else(|| refuse("from", "is required (RFC 3339)"))?,
        )?;
        let to = time("to", first("to").ok_or_else(|| refuse("to", "is required (RFC 3339)"))?)?;
        if to <= from {
            return Err(refuse("to", "must be later than `from`"));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(refuse(
                "to",
                format!(
                    "the range may span at most {MAX_RANGE_DAYS} days; page through longer periods one range at a time"
                ),
            ));
        }
        let opt = |p: &'static str| first(p).map(|v| text(p, v)).transpose();
        let action = match first("action") {
            None => None,
            Some(v) => {
                let v = text("action", v)?;
                match v.strip_suffix(".*") {
                    Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => {
                        Some(ActionFilter::Prefix(format!("{prefix}.")))
                    }
                    _ if v.contains('*') => {
                        return Err(refuse(
                            "action",
                            "an exact action, or a prefix ending in `.*` (e.g. `user.*`)",
                        ))
                    }
                    _ => Some(ActionFilter::Exact(v)),
                }
            }
        };
        let category = first("category")
            .map(|v| {
                serde_json::from_value::<Category>(serde_json::Value::String(v.into()))
                    .map_err(|_| refuse("category", format!("`{v}` is not one of audit, security, application")))
            })
            .transpose()?;
        let outcome = first("outcome")
            .map(|v| {
                serde_json::from_value::<Outcome>(serde_json::Value::String(v.into())).map_err(|_| {
                    refuse(
                        "outcome",
                        format!("`{v}` is not one of success, failure, denied, error, unknown"),
                    )
                })
            })
            .transpose()?;
        let (resource_type, resource_id) = (opt("resource_type")?, opt("resource_id")?);
        if resource_id.is_some() && resource_type.is_none() {
            return Err(refuse("resource_id", "needs `resource_type` (ids are unique per type)"));
        }
        let order = match first("order") {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(v) => return Err(refuse("order", format!("`{v}` is not `desc` (newest first) or `asc`"))),
        };
        let limit = match first("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) && !v.starts_with('+') => n,
                _ => {
                    return Err(refuse(
                        "limit",
                        format!("`{v}` is not a page size from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        let cursor = first("cursor").map(str::to_string);
        Ok(EventSearch {
            filters: Filters {
                from,
                to,
                actor_id: opt("actor_id")?,
                action,
                category,
                outcome,
                resource_type,
                resource_id,
                correlation_id: opt("correlation_id")?,
                source_service: opt("source_service")?,
                order,
            },
            limit,
            cursor,
        })
    }
}

impl Filters {
    /// Whether a stored event passes every filter (the archived rows' filter; the
    /// hot rows get the same conditions in SQL, [`crate::events::hot`]).
    pub fn matches(&self, e: &Event) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        e.occurred_at >= self.from
            && e.occurred_at < self.to
            && eq(&self.actor_id, Some(&e.actor.id))
            && match &self.action {
                None => true,
                Some(ActionFilter::Exact(a)) => &e.action == a,
                Some(ActionFilter::Prefix(p)) => e.action.starts_with(p.as_str()),
            }
            && self.category.is_none_or(|c| c == e.category)
            && self.outcome.is_none_or(|o| o == e.outcome)
            && eq(
                &self.resource_type,
                e.resource.as_ref().map(|r| r.resource_type.as_str()),
            )
            && eq(&self.resource_id, e.resource.as_ref().map(|r| r.id.as_str()))
            && eq(&self.correlation_id, e.correlation_id.as_deref())
            && eq(&self.source_service, Some(&e.source.service))
    }

    /// A digest of the filters: a cursor is only valid for the query that made it.
    pub fn digest(&self) -> [u8; 32] {
        let canon = serde_json::json!([
            self.from.timestamp_micros(),
            self.to.timestamp_micros(),
            self.actor_id,
            self.action.as_ref().map(|a| match a {
                ActionFilter::Exact(a) => format!("={a}"),
                ActionFilter::Prefix(p) => format!("^{p}"),
            }),
            self.category,
            self.outcome,
            self.resource_type,
            self.resource_id,
            self.correlation_id,
            self.source_service,
            self.order == Order::Asc,
        ]);
        Sha256::digest(canon.to_string().as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(q: &[(&'static str, &'static str)]) -> Result<EventSearch, ParamError> {
        let map: HashMap<&str, &str> = q.iter().copied().collect();
        EventSearch::parse(|k| map.get(k).copied(), q.iter().map(|(k, _)| *k))
    }

    const RANGE: [(&str, &str); 2] = [("from", "2026-03-01T00:00:00Z"), ("to", "2026-03-02T00:00:00Z")];

    #[test]
    fn a_range_is_required_and_bounded() {
        assert_eq!(parse(&[]).unwrap_err().param, "from");
        assert_eq!(parse(&RANGE[..1]).unwrap_err().param, "to");
        assert_eq!(parse(&[("from", "yesterday"), RANGE[1]]).unwrap_err().param, "from");
        assert_eq!(
            parse(&[("from", "2026-03-02T00:00:00Z"), ("to", "2026-03-01T00:00:00Z")])
                .unwrap_err()
                .param,
            "to"
        );
        let err = parse(&[("from", "2026-01-01T00:00:00Z"), ("to", "2026-03-01T00:00:00Z")]).unwrap_err();
        assert!(err.message.contains("at most 31 days"), "{err}");
        let ok = parse(&RANGE).unwrap();
        assert_eq!((ok.limit, ok.filters.order), (DEFAULT_LIMIT, Order::Desc));
    }

    #[test]
    fn each_bad_parameter_is_named() {
        for (q, param) in [
            (("limit", "0"), "limit"),
            (("limit", "1001"), "limit"),
            (("limit", "x"), "limit"),
            (("order", "up"), "order"),
            (("category", "audits"), "category"),
            (("outcome", "ok"), "outcome"),
            (("action", "*"), "action"),
            (("action", "user.*.x"), "action"),
            (("resource_id", "r1"), "resource_id"),
            (("actor_id", ""), "actor_id"),
            (("tenant_id", "other"), "query"),
        ] {
            let err = parse(&[RANGE[0], RANGE[1], q]).unwrap_err();
            assert_eq!(err.param, param, "{q:?}: {err}");
        }
    }

    #[test]
    fn action_prefixes_end_at_a_dot() {
        let f = parse(&[RANGE[0], RANGE[1], ("action", "user.*")]).unwrap().filters;
        assert_eq!(f.action, Some(ActionFilter::Prefix("user.".into())));
        let f = parse(&[RANGE[0], RANGE[1], ("action", "user.login")]).unwrap().filters;
        assert_eq!(f.action, Some(ActionFilter::Exact("user.login".into())));
    }

    #[test]
    fn digests_differ_by_filter() {
        let a = parse(&RANGE).unwrap().filters;
        let b = parse(&[RANGE[0], RANGE[1], ("actor_id", "u1")]).unwrap().filters;
        let c = parse(&[RANGE[0], RANGE[1], ("order", "asc")]).unwrap().filters;
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest(), parse(&RANGE).unwrap().filters.digest());
    }
}
