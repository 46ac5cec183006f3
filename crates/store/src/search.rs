//! The read API's search over the hot store: one tenant's events in a time range,
//! filtered by exact column values (and an action prefix), in `(occurred_at,
//! event_id)` order from a keyset position, from the day partitions and the late
//! rows at once. Rows come back as the archive's columns ([`ExportRow`]), so hot
//! and archived events are rebuilt by the same [`crate::event_of`].

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::columns::archived_columns;
use crate::error::{Error, Result};

/// The columns a search may compare for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    ActorId,
    Action,
    Category,
    Outcome,
    ResourceType,
    ResourceId,
    CorrelationId,
    SourceService,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::ActorId => "actor_id",
            Column::Action => "action",
            Column::Category => "category",
            Column::Outcome => "outcome",
            Column::ResourceType => "resource_type",
            Column::ResourceId => "resource_id",
            Column::CorrelationId => "correlation_id",
            Column::SourceService => "source_service",
        }
    }
}

/// One search of the hot store.
#[derive(Debug, Clone)]
pub struct HotSearch {
    pub tenant_id: String,
    /// `occurred_at >= from`
    pub from: DateTime<Utc>,
    /// `occurred_at < to`
    pub to: DateTime<Utc>,
    /// `column = value`, all of them.
    pub equals: Vec<(Column, String)>,
    /// `action` starts with this (the `user.*` filter, as `user.`).
    pub action_prefix: Option<String>,
    /// Only rows strictly after this position in the search's order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Oldest first; newest first when false.
    pub ascending: bool,
    pub limit: usize,
}

/// `LIKE` pattern matching `prefix` literally at the start.
fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl HotSearch {
    /// The statement and its parameters.
    fn sql(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(self.tenant_id.clone()), Box::new(self.from), Box::new(self.to)];
        let mut conds = vec![
            "tenant_id = $1".to_string(),
            "occurred_at >= $2".to_string(),
            "occurred_at < $3".to_string(),
        ];
        let (cmp, dir) = if self.ascending { (">", "ASC") } else { ("<", "DESC") };
        if let Some((at, id)) = self.after {
            params.push(Box::new(at));
            params.push(Box::new(id));
            conds.push(format!(
                "(occurred_at, event_id) {cmp} (${}, ${})",
                params.len() - 1,
                params.len()
            ));
        }
        for (column, value) in &self.equals {
            params.push(Box::new(value.clone()));
            conds.push(format!("{} = ${}", column.name(), params.len()));
        }
        if let Some(prefix) = &self.action_prefix {
            params.push(Box::new(like_prefix(prefix)));
            conds.push(format!("action LIKE ${} ESCAPE '\\'", params.len()));
        }
        params.push(Box::new(self.limit as i64));
        let limit = params.len();
        let columns: Vec<String> = archived_columns().map(|c| c.export_expr()).collect();
        let select = |table: &str| {
            format!(
                "(SELECT tenant_id, {}, occurred_at AS k_at, event_id AS k_id FROM {table} WHERE {} ORDER BY occurred_at {dir}, event_id {dir} LIMIT ${limit})",
                columns.join(", "),
                conds.join(" AND ")
            )
        };
        let sql = format!(
            "SELECT * FROM ({} UNION ALL {}) hot ORDER BY k_at {dir}, k_id {dir} LIMIT ${limit}",
            select("audit_events"),
            select("late_events")
        );
        (sql, params)
    }

    /// The first `limit` matching rows in order, day partitions and late rows together.
    pub async fn run(&self, client: &impl tokio_postgres::GenericClient) -> Result<Vec<tokio_postgres::Row>> {
        let (sql, params) = self.sql();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        client
            .query(&sql, &refs)
            .await
            .map_err(Error::query("searching the hot store"))
    }
}

/// The day partitions attached to `audit_events` now: a day whose partition is
/// not among them is read from the archive.
pub async fn attached_days(client: &impl tokio_postgres::GenericClient) -> Result<Vec<chrono::NaiveDate>> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = 'audit_events' AND p.relnamespace = current_schema()::regnamespace",
            &[],
        )
        .await
        .map_err(Error::query("listing the attached day partitions"))?;
    Ok(rows
        .iter()
        .filter_map(|r| crate::partitions::day_of_partition(r.get(0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_are_literal() {
        assert_eq!(like_prefix("user."), "user.%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn the_statement_numbers_its_parameters_in_order() {
        let s = HotSearch {
            tenant_id: "acme".into(),
            from: Utc::now(),
            to: Utc::now(),
            equals: vec![(Column::ActorId, "u1".into())],
            action_prefix: Some("user.".into()),
            after: Some((Utc::now(), Uuid::nil())),
            ascending: false,
            limit: 10,
        };
        let (sql, params) = s.sql();
        assert_eq!(params.len(), 8);
        assert!(sql.contains("(occurred_at, event_id) < ($4, $5)"), "{sql}");
        assert!(sql.contains("actor_id = $6") && sql.contains("action LIKE $7"), "{sql}");
        assert!(sql.contains("LIMIT $8"), "{sql}");
    }
}
