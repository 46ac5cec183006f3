//! `GET /v1/events/export`: every event a search matches, as NDJSON or CSV, in one
//! answer: inline when it fits a Lambda response, else a presigned URL of a file the
//! export wrote to the archive bucket ([`spool`]).
//!
//! An export is the search of `GET /v1/events` run to its end, in large pages: the
//! same filters, the same hot/archived split and the same handling of a day that
//! moves to the archive while it is read, so an export and the pages of a search
//! agree row for row. Archived files are fetched once per export ([`cache`]).

pub mod cache;
pub mod format;
pub mod jobs;
pub mod spool;

use stele_archiver::ArchiveStore;

use crate::events::{self, CursorKey, EventSearch, Filters, ParamError, SearchError};
pub use format::Format;

/// Rows per internal page: large enough that a page is a few index scans or one
/// archived row group, small enough to hold (about 20 MB of events).
pub const EXPORT_PAGE: usize = 20_000;
/// The archived files kept between pages (an archived day is one or a few files).
const CACHED_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;

/// A parsed export request: the search filters (no `limit`, no `cursor`) and a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub filters: Filters,
    pub format: Format,
}

impl ExportRequest {
    /// The query string of `GET /v1/events/export`: the filters of `GET /v1/events`
    /// and `format`; refusals name the parameter.
    pub fn parse<'a>(
        first: impl Fn(&str) -> Option<&'a str>,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParamError> {
        let names: Vec<&str> = names.into_iter().collect();
        for paging in ["limit", "cursor"] {
            if names.contains(&paging) {
                return Err(ParamError {
                    param: paging,
                    message: "an export has no pages: it holds every event of the range".into(),
                });
            }
        }
        let format = match first("format") {
            None => Format::Ndjson,
            Some(v) => Format::parse(v).ok_or_else(|| ParamError {
                param: "format",
                message: format!("`{v}` is not `ndjson` or `csv`"),
            })?,
        };
        let search = EventSearch::parse(&first, names.into_iter().filter(|n| *n != "format"))?;
        Ok(Self {
            filters: search.filters,
            format,
        })
    }
}

/// Why an export stopped: the search, or the output (`E`).
#[derive(Debug, thiserror::Error)]
pub enum ExportError<E: std::error::Error> {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Output(E),
}

/// Where [`run`] writes: the response spool, a file, stdout.
pub trait ExportOutput {
    type Error: std::error::Error;
    fn write(&mut self, bytes: &[u8]) -> impl std::future::Future<Output = Result<(), Self::Error>>;
}

impl ExportOutput for spool::Spool {
    type Error = spool::SpoolError;
    async fn write(&mut self, bytes: &[u8]) -> Result<(), spool::SpoolError> {
        spool::Spool::write(self, bytes).await
    }
}

/// Writes every event of `tenant` that `filters` match to `out` in `format`, in the
/// filters' order; `progress` hears the running count after each page. Returns how
/// many events were written.
pub async fn run<S: ArchiveStore, O: ExportOutput>(
    client: &impl tokio_postgres::GenericClient,
    archive: Option<(&S, &str)>,
    tenant: &str,
    filters: &Filters,
    format: Format,
    out: &mut O,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError<O::Error>> {
    // The pages' cursors never leave this function: a key of its own.
    let key = CursorKey::random();
    let cached = archive.map(|(store, prefix)| (cache::RecentObjects::new(store, CACHED_ARCHIVE_BYTES), prefix));
    let archive = cached.as_ref().map(|(store, prefix)| (store, *prefix));
    out.write(&format.header()).await.map_err(ExportError::Output)?;
    let mut search = EventSearch {
        filters: filters.clone(),
        limit: EXPORT_PAGE,
        cursor: None,
    };
    let mut count = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    loop {
        let page = events::search(client, archive, &key, tenant, &search).await?;
        for e in &page.events {
            format.write(e, &mut buf);
            if buf.len() >= 1 << 20 {
                out.write(&buf).await.map_err(ExportError::Output)?;
                buf.clear();
            }
        }
        count += page.events.len() as u64;
        progress(count);
        match page.next_cursor {
            Some(c) => search.cursor = Some(c),
            None => break,
        }
    }
    out.write(&buf).await.map_err(ExportError::Output)?;
    Ok(count)
}

/// Runs an export of `request` into `spool` and delivers it (inline or in the
/// bucket); on failure an upload in progress is abandoned. Returns the event count.
pub async fn deliver<S: ArchiveStore>(
    client: &impl tokio_postgres::GenericClient,
    archive: Option<(&S, &str)>,
    tenant: &str,
    request: &ExportRequest,
    mut spool: spool::Spool,
) -> Result<(u64, spool::Delivered), ExportError<spool::SpoolError>> {
    match run(
        client,
        archive,
        tenant,
        &request.filters,
        request.format,
        &mut spool,
        |_| {},
    )
    .await
    {
        Ok(count) => Ok((count, spool.finish().await.map_err(ExportError::Output)?)),
        Err(e) => {
            spool.abandon().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<ExportRequest, ParamError> {
        ExportRequest::parse(
            |k| q.iter().find(|(n, _)| *n == k).map(|(_, v)| *v),
            q.iter().map(|(n, _)| *n),
        )
    }

    #[test]
    fn takes_the_search_filters_and_a_format() {
        let range = [("from", "2026-02-01T00:00:00Z"), ("to", "2026-02-02T00:00:00Z")];
        let r = parse(&range).unwrap();
        assert_eq!(r.format, Format::Ndjson);
        let r = parse(&[range[0], range[1], ("format", "csv"), ("actor_id", "u1")]).unwrap();
        assert_eq!((r.format, r.filters.actor_id.as_deref()), (Format::Csv, Some("u1")));
        let e = parse(&[range[0], range[1], ("format", "xml")]).unwrap_err();
        assert_eq!(e.param, "format");
        let e = parse(&[range[0], range[1], ("limit", "10")]).unwrap_err();
        assert_eq!(e.param, "limit");
        let e = parse(&[range[0], range[1], ("cursor", "x")]).unwrap_err();
        assert_eq!(e.param, "cursor");
        let e = parse(&[range[0]]).unwrap_err();
        assert_eq!(e.param, "to");
        let e = parse(&[range[0], range[1], ("colour", "red")]).unwrap_err();
        assert_eq!(e.param, "query");
    }
}
