//! `stele query`: a tenant's events, hot and archived, with the read API's filters:
//! through the API (`--endpoint` and a token with the read scope) or straight from a
//! database and an archive bucket (the same search the query function runs). A table
//! for people, NDJSON or CSV (the export formats of `GET /v1/events/export`) for pipes
//! and files; a progress bar on stderr for long exports (the share of the time range read).

use std::io::{IsTerminal, Write};

use serde_json::Value;
use stele_query::events::{self, CursorKey, EventSearch};
use stele_query::export::{cache::RecentObjects, Format};

use stele::local::aws;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The tenant (direct mode; through the API it is the token's).
    #[arg(long)]
    tenant: Option<String>,
    /// `occurred_at >= from` (RFC 3339).
    #[arg(long)]
    from: String,
    /// `occurred_at < to` (RFC 3339), at most 31 days after `from`.
    #[arg(long)]
    to: String,
    #[arg(long)]
    actor_id: Option<String>,
    /// An exact action, or a prefix ending in `.*`.
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long)]
    resource_id: Option<String>,
    #[arg(long)]
    correlation_id: Option<String>,
    #[arg(long)]
    source_service: Option<String>,
    /// Oldest first (default: newest first).
    #[arg(long)]
    asc: bool,
    /// Stop after this many events (default: all).
    #[arg(long)]
    max: Option<usize>,
    /// `table`, `ndjson` or `csv` (default: a table on a terminal, NDJSON otherwise).
    #[arg(long)]
    format: Option<String>,
    /// The API (e.g. `stele dev`'s http://127.0.0.1:8080).
    #[arg(long, env = "STELE_ENDPOINT", conflicts_with = "database_url")]
    endpoint: Option<String>,
    /// A bearer token with the read scope (with `--endpoint`).
    #[arg(long, env = "STELE_TOKEN")]
    token: Option<String>,
    /// Direct mode: the database (hot days) ...
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// ... and the archive bucket (archived days).
    #[arg(long, env = "STELE_ARCHIVE_BUCKET")]
    bucket: Option<String>,
    #[arg(long, default_value = "audit")]
    prefix: String,
    /// S3 endpoint (LocalStack's for `stele dev`); absent: AWS from the environment.
    #[arg(long, env = "STELE_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
}

const PAGE: usize = 1000;

impl QueryArgs {
    /// The search's parameters, as the API takes them.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![("from", self.from.clone()), ("to", self.to.clone())];
        for (name, value) in [
            ("actor_id", &self.actor_id),
            ("action", &self.action),
            ("category", &self.category),
            ("outcome", &self.outcome),
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("correlation_id", &self.correlation_id),
            ("source_service", &self.source_service),
        ] {
            if let Some(v) = value {
                p.push((name, v.clone()));
            }
        }
        if self.asc {
            p.push(("order", "asc".into()));
        }
        p.push(("limit", PAGE.to_string()));
        p
    }
}

/// RFC 3986 percent-encoding of a query value (everything but unreserved bytes).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where pages come from.
enum Source {
    Api(stele_client::Client),
    Direct {
        client: Box<tokio_postgres::Client>,
        /// Archived files are kept between pages: each is fetched once per run.
        store: Option<RecentObjects<stele_archiver::S3Store>>,
        prefix: String,
        tenant: String,
        key: CursorKey,
    },
}

impl Source {
    async fn page(
        &self,
        params: &[(&'static str, String)],
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), String> {
        let mut params = params.to_vec();
        if let Some(c) = cursor {
            params.push(("cursor", c.to_string()));
        }
        match self {
            Source::Api(client) => {
                let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
                let page = client.search_page(&query.join("&")).await.map_err(|e| e.to_string())?;
                Ok((page.events, page.next_cursor))
            }
            Source::Direct {
                client,
                store,
                prefix,
                tenant,
                key,
            } => {
                let search = EventSearch::parse(
                    |k| params.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str()),
                    params.iter().map(|(k, _)| *k),
                )
                .map_err(|e| e.to_string())?;
                let archive = store.as_ref().map(|s| (s, prefix.as_str()));
                let page = events::search(&**client, archive, key, tenant, &search)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((page.events.iter().map(events::event_json).collect(), page.next_cursor))
            }
        }
    }
}

fn cell(v: &Value, path: &[&str]) -> String {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How much of `from..to` is behind an event at `at`, from 0 to 1 (pages run newest first
/// unless `asc`); `None` if a time does not parse.
fn range_done(from: &str, to: &str, at: &str, asc: bool) -> Option<f64> {
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros() as f64)
    };
    let (from, to, at) = (t(from)?, t(to)?, t(at)?);
    let span = (to - from).max(1.0);
    let done = if asc { at - from } else { to - at } / span;
    Some(done.clamp(0.0, 1.0))
}

/// `[#########...........]  45%  123456 events  35012/s`
fn progress_line(done: Option<f64>, events: usize, elapsed: std::time::Duration) -> String {
    let rate = events as f64 / elapsed.as_secs_f64().max(0.001);
    match done {
        Some(d) => {
            let filled = (d * 30.0).round() as usize;
            format!(
                "[{}{}] {:>3.0}%  {events} events  {rate:.0}/s",
                "#".repeat(filled),
                ".".repeat(30 - filled.min(30)),
                d * 100.0
            )
        }
        None => format!("{events} events  {rate:.0}/s"),
    }
}

pub async fn run(args: QueryArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let source = match (&args.endpoint, &args.database_url) {
        (Some(endpoint), _) => {
            let token = args
                .token
                .clone()
                .ok_or("--endpoint needs --token (or STELE_TOKEN) with the read scope")?;
            Source::Api(stele_client::Client::builder(endpoint.clone()).token(token).build()?)
        }
        (None, Some(url)) => {
            let tenant = args.tenant.clone().ok_or("--database-url needs --tenant")?;
            stele_core::check_tenant_id(&tenant).map_err(|e| format!("--tenant: {e}"))?;
            let client = stele_store::connect(&stele_store::StoreConfig::new(url.clone())).await?;
            let store = match &args.bucket {
                Some(bucket) => {
                    let sdk = match &args.aws_endpoint {
                        Some(endpoint) => aws::sdk_config(endpoint).await,
                        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
                    };
                    let s3 = stele_archiver::S3Store::new(aws::s3_client(&sdk), bucket.clone());
                    Some(RecentObjects::new(s3, 256 << 20))
                }
                None => None,
            };
            Source::Direct {
                client: Box::new(client),
                store,
                prefix: args.prefix.clone(),
                tenant,
                key: CursorKey::random(),
            }
        }
        (None, None) => return Err("give --endpoint (and --token), or --database-url (and --tenant, --bucket)".into()),
    };
    // `None`: a table.
    let format = match args.format.as_deref() {
        Some("table") => None,
        Some(other) => Some(Format::parse(other).ok_or(format!("--format {other}: use table, ndjson or csv"))?),
        None if std::io::stdout().is_terminal() => None,
        None => Some(Format::Ndjson),
    };
    let table = format.is_none();
    let progress = std::io::stderr().is_terminal() && !table;
    let params = args.params();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(f) = format {
        out.write_all(&f.header())?;
    }
    if table {
        writeln!(
            out,
            "{:<27} {:<36} {:<24} {:<10} {:<20} resource",
            "occurred_at", "event_id", "action", "outcome", "actor"
        )?;
    }
    let (mut cursor, mut shown) = (None::<String>, 0usize);
    let started = std::time::Instant::now();
    loop {
        let (events, next) = source.page(&params, cursor.as_deref()).await?;
        for e in &events {
            if args.max.is_some_and(|m| shown >= m) {
                break;
            }
            if let Some(f) = format {
                let mut line = Vec::new();
                f.write_json(e, &mut line);
                out.write_all(&line)?;
            } else {
                let resource = [cell(e, &["resource", "type"]), cell(e, &["resource", "id"])].join("/");
                writeln!(
                    out,
                    "{:<27} {:<36} {:<24} {:<10} {:<20} {}",
                    cell(e, &["occurred_at"]),
                    cell(e, &["event_id"]),
                    cell(e, &["action"]),
                    cell(e, &["outcome"]),
                    cell(e, &["actor", "id"]),
                    if resource == "/" { String::new() } else { resource }
                )?;
            }
            shown += 1;
        }
        if progress {
            let done = events
                .last()
                .and_then(|e| e["occurred_at"].as_str())
                .and_then(|at| range_done(&args.from, &args.to, at, args.asc));
            eprint!("\r\x1b[2K{}", progress_line(done, shown, started.elapsed()));
            let _ = std::io::stderr().flush();
        }
        match next {
            Some(c) if args.max.is_none_or(|m| shown < m) => cursor = Some(c),
            _ => break,
        }
    }
    out.flush()?;
    if progress {
        eprintln!();
    }
    if table {
        eprintln!("{shown} events");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_the_pages_through_the_range() {
        let (from, to) = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
        assert_eq!(range_done(from, to, "2026-01-01T18:00:00Z", false), Some(0.25));
        assert_eq!(range_done(from, to, "2026-01-01T18:00:00Z", true), Some(0.75));
        assert_eq!(range_done(from, to, "not a time", true), None);
        let line = progress_line(Some(0.5), 100, std::time::Duration::from_secs(2));
        assert_eq!(
            line,
            format!("[{}{}]  50%  100 events  50/s", "#".repeat(15), ".".repeat(15))
        );
    }
}
