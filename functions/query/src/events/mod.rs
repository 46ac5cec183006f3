//! `GET /v1/events`: one tenant's events over hot and archived days as one ordered
//! result, paged by a keyset cursor.
//!
//! The hot store is searched first (day partitions and late rows, one statement);
//! the days whose partitions are *not attached after that* are read from the archive.
//! A day the archiver moves meanwhile is therefore seen in at least one place (its
//! archive is verified before the partition is detached), and an event seen in both
//! is served once. Pages are cut by position (`occurred_at`, `event_id`), never by
//! offset, so a day changing place between two pages does not move the cursor.

pub mod cold;
pub mod cursor;
pub mod params;

use chrono::{Duration, NaiveDate};
use futures_util::StreamExt;
use serde_json::Value;
use stele_archiver::ArchiveStore;
use stele_store::search::{Column, HotSearch};
use stele_store::RowEvent;

pub use cursor::{CursorKey, Position};
pub use params::{ActionFilter, EventSearch, Filters, Order, ParamError};

/// Why a search has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The cursor was altered, or made for another query or tenant: `400`.
    #[error("`cursor` is not a cursor of this query: it was altered, or made for other filters or another tenant")]
    BadCursor,
    /// PostgreSQL or S3 could not be read: `503`.
    #[error("{0}")]
    Unavailable(String),
    /// A stored row cannot be rebuilt as an event: `500`.
    #[error("{0}")]
    Unreadable(String),
}

/// One page: events in order, and the cursor of the next page if there is one.
#[derive(Debug)]
pub struct Page {
    pub events: Vec<RowEvent>,
    pub next_cursor: Option<String>,
}

fn position(e: &RowEvent) -> Position {
    Position {
        occurred_at_micros: e.event.occurred_at.timestamp_micros(),
        event_id: e.event.event_id,
    }
}

/// Whether `a` comes before `b` in the search's order.
fn before(order: Order, a: &Position, b: &Position) -> bool {
    match order {
        Order::Desc => a > b,
        Order::Asc => a < b,
    }
}

impl Filters {
    fn hot(&self, tenant: &str, after: Option<Position>, limit: usize) -> HotSearch {
        let mut equals = Vec::new();
        let mut eq = |c: Column, v: &Option<String>| {
            if let Some(v) = v {
                equals.push((c, v.clone()));
            }
        };
        eq(Column::ActorId, &self.actor_id);
        eq(Column::ResourceType, &self.resource_type);
        eq(Column::ResourceId, &self.resource_id);
        eq(Column::CorrelationId, &self.correlation_id);
        eq(Column::SourceService, &self.source_service);
        let name = |v: Value| v.as_str().map(str::to_string);
        eq(
            Column::Category,
            &self.category.and_then(|c| name(serde_json::json!(c))),
        );
        eq(Column::Outcome, &self.outcome.and_then(|o| name(serde_json::json!(o))));
        let mut action_prefix = None;
        match &self.action {
            Some(ActionFilter::Exact(a)) => equals.push((Column::Action, a.clone())),
            Some(ActionFilter::Prefix(p)) => action_prefix = Some(p.clone()),
            None => {}
        }
        HotSearch {
            tenant_id: tenant.to_string(),
            from: self.from,
            to: self.to,
            equals,
            action_prefix,
            after: after.map(|p| (p.occurred_at(), p.event_id)),
            ascending: self.order == Order::Asc,
            limit,
        }
    }

    /// The days the range touches, in the search's order.
    fn days(&self) -> Vec<NaiveDate> {
        let first = self.from.date_naive();
        let last = (self.to - Duration::microseconds(1)).date_naive();
        let mut days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        if self.order == Order::Desc {
            days.reverse();
        }
        days
    }
}

/// Runs one search for `tenant`: the hot store through `client`, archived days
/// through `archive` (bucket store and prefix; `None`: hot only).
pub async fn search<S: ArchiveStore>(
    client: &impl tokio_postgres::GenericClient,
    archive: Option<(&S, &str)>,
    key: &CursorKey,
    tenant: &str,
    search: &EventSearch,
) -> Result<Page, SearchError> {
    let mut attempts = 0;
    loop {
        let (page, duplicates) = search_once(client, archive, key, tenant, search).await?;
        // A day moved from hot to cold while it was read is seen twice; if that
        // left the page short, its true end is unknown: read again (the day is
        // now in one place).
        attempts += 1;
        if duplicates == 0 || page.next_cursor.is_some() || attempts == 3 {
            return Ok(page);
        }
    }
}

async fn search_once<S: ArchiveStore>(
    client: &impl tokio_postgres::GenericClient,
    archive: Option<(&S, &str)>,
    key: &CursorKey,
    tenant: &str,
    search: &EventSearch,
) -> Result<(Page, usize), SearchError> {
    let filters = &search.filters;
    let digest = filters.digest();
    let after = match &search.cursor {
        None => None,
        Some(c) => Some(key.open(tenant, &digest, c).ok_or(SearchError::BadCursor)?),
    };
    // One more than a page: whether there is a next page.
    let want = search.limit + 1;
    let unavailable = |e: stele_store::Error| SearchError::Unavailable(e.to_string());
    let rows = filters
        .hot(tenant, after, want)
        .run(client)
        .await
        .map_err(unavailable)?;
    let mut found: Vec<RowEvent> = Vec::with_capacity(rows.len());
    for row in &rows {
        match stele_store::event_of(row) {
            Ok(Ok(e)) => found.push(e),
            Ok(Err(problem)) => return Err(SearchError::Unreadable(problem.to_string())),
            Err(e) => return Err(SearchError::Unreadable(e.to_string())),
        }
    }
    let attached = stele_store::search::attached_days(client).await.map_err(unavailable)?;

    if let Some((store, prefix)) = archive {
        // Where the hot rows alone already fill the page: archived days wholly past
        // that point cannot contribute.
        let boundary = (found.len() >= want).then(|| position(&found[want - 1]));
        let mut archived = 0usize;
        // The time window of usable archived rows: the range, narrowed by the cursor.
        let (mut lo, mut hi) = (filters.from.timestamp_micros(), filters.to.timestamp_micros() - 1);
        if let Some(a) = &after {
            match filters.order {
                Order::Desc => hi = hi.min(a.occurred_at_micros),
                Order::Asc => lo = lo.max(a.occurred_at_micros),
            }
        }
        let cold_filter = cold::ColdFilter {
            from_micros: lo,
            to_micros: hi,
            actor_id: filters.actor_id.clone(),
            newest_first: filters.order == Order::Desc,
            limit: want,
        };
        // The archived days this page may need, in the search's order: not in
        // PostgreSQL, not wholly before the cursor, not wholly past the hot rows'
        // last position.
        let mut wanted = Vec::new();
        for day in filters.days() {
            if attached.contains(&day) {
                continue;
            }
            let (start, end) = stele_store::partitions::bounds(day);
            let day_first = match filters.order {
                Order::Desc => end.timestamp_micros() - 1,
                Order::Asc => start.timestamp_micros(),
            };
            let past = |p: &Position| match filters.order {
                Order::Desc => day_first < p.occurred_at_micros,
                Order::Asc => day_first > p.occurred_at_micros,
            };
            // Days entirely before the cursor were served already.
            let served = after.as_ref().is_some_and(|a| match filters.order {
                Order::Desc => start.timestamp_micros() > a.occurred_at_micros,
                Order::Asc => end.timestamp_micros() - 1 < a.occurred_at_micros,
            });
            if served {
                continue;
            }
            if boundary.as_ref().is_some_and(past) {
                break;
            }
            wanted.push(day);
        }
        let accept: cold::Accept = {
            let (filters, order) = (filters.clone(), filters.order);
            std::sync::Arc::new(move |e: &RowEvent| {
                filters.matches(&e.event) && after.is_none_or(|a| before(order, &a, &position(e)))
            })
        };
        // Two days at a time (each decoded on its own blocking thread), taken in order;
        // once a page's worth is found the day still in flight is dropped unread.
        let mut reads = futures_util::stream::iter(
            wanted
                .into_iter()
                .map(|day| cold::read_day(store, prefix, tenant, day, &cold_filter, accept.clone())),
        )
        .buffered(2);
        while let Some(events) = reads.next().await {
            let events = events.map_err(|e| SearchError::Unavailable(e.to_string()))?;
            archived += events.len();
            found.extend(events);
            if archived >= want {
                break;
            }
        }
    }

    found.sort_by(|a, b| {
        let (pa, pb) = (position(a), position(b));
        match filters.order {
            Order::Desc => pb.cmp(&pa),
            Order::Asc => pa.cmp(&pb),
        }
    });
    // A day read in both places (moved while we read) is served once.
    let read = found.len();
    found.dedup_by(|a, b| a.event.event_id == b.event.event_id && a.event.occurred_at == b.event.occurred_at);
    let duplicates = read - found.len();
    let next_cursor = if found.len() > search.limit {
        found.truncate(search.limit);
        found.last().map(|last| key.seal(tenant, &digest, position(last)))
    } else {
        None
    };
    Ok((
        Page {
            events: found,
            next_cursor,
        },
        duplicates,
    ))
}

/// An event as the API serves it: its fields as stored, its `event_hash` and its
/// place in the tenant's log.
pub fn event_json(e: &RowEvent) -> Value {
    let mut v = serde_json::to_value(&e.event).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "event_hash".into(),
            e.stored_hash.map_or(Value::Null, |h| Value::String(hex::encode(h.0))),
        );
        obj.insert("leaf_index".into(), e.leaf_index.map_or(Value::Null, Value::from));
    }
    v
}
