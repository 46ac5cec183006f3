//! The partition manager: the single place that knows partition names and
//! bounds. `audit_events` has one partition per UTC day of `occurred_at`,
//! named `audit_events_pYYYYMMDD`, bounds `[day 00:00 UTC, next day 00:00 UTC)`.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The partitioned parent table.
pub const PARENT_TABLE: &str = "audit_events";

/// Advisory lock key serialising partition DDL between writers and the archiver.
const PARTITION_LOCK_KEY: i64 = 0x7374656c6570;

/// A day partition as it exists in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayPartition {
    pub name: String,
    pub day: NaiveDate,
    /// Inclusive lower bound (the day's midnight UTC).
    pub lower: DateTime<Utc>,
    /// Exclusive upper bound (the next midnight UTC).
    pub upper: DateTime<Utc>,
}

/// What [`ensure_days`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsureOutcome {
    /// Days whose partition this call created.
    pub created: Vec<NaiveDate>,
    /// Days that are archived (or being archived): no partition is made for
    /// them; their rows go to `late_events`, which the archiver adds to the
    /// day's archive as a supplement.
    pub closed: Vec<NaiveDate>,
}

/// `audit_events_p20261125` for 2026-11-25.
pub fn partition_name(day: NaiveDate) -> String {
    format!("{PARENT_TABLE}_p{}", day.format("%Y%m%d"))
}

/// The day a partition name stands for, if it is one of ours.
pub fn day_of_partition(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(PARENT_TABLE)?.strip_prefix("_p")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// The UTC day a timestamp falls in (= its partition).
pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Bounds of a day's partition.
pub fn bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    (midnight(day), midnight(day.succ_opt().unwrap_or(day)))
}

/// Make sure a partition exists for every day in `days` (duplicates are fine),
/// except days that the archiver has taken (a row in `archive_jobs`): those are
/// reported as closed and never re-created, so an archived day cannot silently
/// grow a second, unarchived copy (its late rows go to `late_events`).
pub async fn ensure_days(client: &Client, days: &[NaiveDate]) -> Result<EnsureOutcome> {
    let mut wanted: Vec<NaiveDate> = days.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut outcome = EnsureOutcome::default();
    if wanted.is_empty() {
        return Ok(outcome);
    }
    let existing: Vec<NaiveDate> = list(client).await?.into_iter().map(|p| p.day).collect();
    let closed = closed_days(client, &wanted).await?;
    let missing: Vec<NaiveDate> = wanted
        .iter()
        .copied()
        .filter(|d| !existing.contains(d) && !closed.contains(d))
        .collect();
    outcome.closed = closed;
    if missing.is_empty() {
        return Ok(outcome);
    }

    client
        .batch_execute("BEGIN")
        .await
        .map_err(Error::query("begin partition DDL"))?;
    let created = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK_KEY])
            .await?;
        let mut created = Vec::new();
        for day in &missing {
            // Re-checked under the lock: another writer may have just made it.
            let exists = client
                .query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&partition_name(*day)])
                .await?
                .is_some();
            if exists {
                continue;
            }
            // Through the migration's SECURITY DEFINER function (0006_roles.sql):
            // every partition is owned by stele_partition_owner, whoever asks, so
            // the archiver can detach and drop what the writer made, and the
            // writer needs no ownership of audit_events. It makes the same name
            // and bounds as `partition_name` and `bounds`, and none for a closed day.
            let made: bool = client
                .query_one("SELECT stele_create_day_partition($1)", &[day])
                .await?
                .get(0);
            if made {
                created.push(*day);
            }
        }
        Ok::<_, tokio_postgres::Error>(created)
    }
    .await;
    match created {
        Ok(created) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(Error::query("commit partition DDL"))?;
            if !created.is_empty() {
                tracing::info!(days = ?created, "created day partitions");
            }
            outcome.created = created;
            Ok(outcome)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Error::Query {
                what: "creating day partitions",
                source: e,
            })
        }
    }
}

/// Ensure partitions for every day from `from` to `to`, inclusive.
pub async fn ensure_range(client: &Client, from: NaiveDate, to: NaiveDate) -> Result<EnsureOutcome> {
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    ensure_days(client, &days).await
}

/// Days among `days` that the archiver has started on or finished.
pub async fn closed_days(client: &Client, days: &[NaiveDate]) -> Result<Vec<NaiveDate>> {
    let rows = client
        .query(
            "SELECT day FROM archive_jobs WHERE day = ANY($1) ORDER BY day",
            &[&days],
        )
        .await
        .map_err(Error::query("reading archive_jobs"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every day partition attached to `audit_events`, oldest first, with the
/// bounds read from the catalog (not inferred from the name).
pub async fn list(client: &Client) -> Result<Vec<DayPartition>> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = $1
              ORDER BY c.relname",
            &[&PARENT_TABLE],
        )
        .await
        .map_err(Error::query("listing partitions"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let bound: String = row.get(1);
        let (Some(day), Some((lower, upper))) = (day_of_partition(&name), parse_bound(&bound)) else {
            tracing::warn!(partition = %name, bound = %bound, "ignoring a partition stele did not make");
            continue;
        };
        out.push(DayPartition {
            name,
            day,
            lower,
            upper,
        });
    }
    Ok(out)
}

/// Parse `FOR VALUES FROM ('2026-11-25 00:00:00+00') TO ('2026-11-26 00:00:00+00')`.
fn parse_bound(expr: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut quoted = expr.split('\'').skip(1).step_by(2);
    let parse = |s: &str| {
        DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z")
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let lower = parse(quoted.next()?)?;
    let upper = parse(quoted.next()?)?;
    Some((lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_days_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        assert_eq!(partition_name(day), "audit_events_p20260228");
        assert_eq!(day_of_partition("audit_events_p20260228"), Some(day));
        assert_eq!(day_of_partition("audit_events_default"), None);
        assert_eq!(day_of_partition("other_p20260228"), None);
    }

    #[test]
    fn bounds_cover_one_utc_day() {
        let (lower, upper) = bounds(NaiveDate::from_ymd_opt(2024, 2, 28).unwrap());
        assert_eq!(lower.to_rfc3339(), "2024-02-28T00:00:00+00:00");
        assert_eq!(upper.to_rfc3339(), "2024-02-29T00:00:00+00:00");
    }

    #[test]
    fn catalog_bound_expressions_parse() {
        let (lower, upper) =
            parse_bound("FOR VALUES FROM ('2026-11-25 00:00:00+00') TO ('2026-11-26 00:00:00+00')").unwrap();
        assert_eq!(lower.to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert_eq!(upper.to_rfc3339(), "2026-11-26T00:00:00+00:00");
    }
}
