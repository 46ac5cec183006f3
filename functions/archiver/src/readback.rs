//! Reading an archived Parquet file back, row by row, as [`ExportRow`]s: the rows are
//! checked with the same [`stele_store::check_row`] as the rows exported from
//! PostgreSQL, so the archiver's verify step and `stele verify` re-hash every row's
//! content on both sides the same way.

use arrow::array::{Array, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter, RowSelection,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use sha2::{Digest, Sha256};
use stele_store::columns::archived_columns;
use stele_store::{CheckedRow, ExportRow, RowProblem};

/// One row of a record batch read from an archive file, columns looked up by name
/// (a file written before a column existed reads it as NULL).
struct BatchRow<'a> {
    tenant: &'a str,
    batch: &'a RecordBatch,
    /// For each archived column (in [`archived_columns`] order), its index in the batch.
    columns: &'a [Option<usize>],
    row: usize,
}

fn wrong(i: usize) -> stele_store::Error {
    stele_store::Error::Config(format!("archive column {i} has an unexpected type"))
}

impl BatchRow<'_> {
    fn column<T: 'static>(&self, i: usize) -> stele_store::Result<Option<&T>> {
        let Some(Some(c)) = self.columns.get(i) else {
            return Ok(None);
        };
        self.batch
            .column(*c)
            .as_any()
            .downcast_ref::<T>()
            .map(Some)
            .ok_or_else(|| wrong(i))
    }
}

impl ExportRow for BatchRow<'_> {
    fn tenant(&self) -> stele_store::Result<&str> {
        Ok(self.tenant)
    }
    fn text(&self, i: usize) -> stele_store::Result<Option<&str>> {
        Ok(self
            .column::<StringArray>(i)?
            .filter(|a| !a.is_null(self.row))
            .map(|a| a.value(self.row)))
    }
    fn micros(&self, i: usize) -> stele_store::Result<Option<i64>> {
        Ok(self
            .column::<TimestampMicrosecondArray>(i)?
            .filter(|a| !a.is_null(self.row))
            .map(|a| a.value(self.row)))
    }
    fn int32(&self, i: usize) -> stele_store::Result<Option<i32>> {
        Ok(self
            .column::<Int32Array>(i)?
            .filter(|a| !a.is_null(self.row))
            .map(|a| a.value(self.row)))
    }
    fn int64(&self, i: usize) -> stele_store::Result<Option<i64>> {
        Ok(self
            .column::<Int64Array>(i)?
            .filter(|a| !a.is_null(self.row))
            .map(|a| a.value(self.row)))
    }
}

/// Why an archive file cannot be checked row by row.
#[derive(Debug, thiserror::Error)]
pub enum ReadbackError {
    #[error("SHA-256 is {actual}, the manifest says {expected}")]
    Sha256 { expected: String, actual: String },
    #[error("footer says {footer} rows, the manifest {manifest}")]
    RowCount { footer: i64, manifest: u64 },
    #[error("not a readable Parquet file: {0}")]
    Parquet(String),
    #[error("row {row}: {problem}")]
    Row { row: u64, problem: RowProblem },
    #[error("row {row}: {source}")]
    Read {
        row: u64,
        #[source]
        source: stele_store::Error,
    },
}

/// Checks one archive file of `tenant`: its bytes against the manifest's SHA-256 and
/// row count, then every row's content against its `event_hash`; each checked row is
/// handed to `push` in file order.
pub fn check_file(
    bytes: Bytes,
    tenant: &str,
    sha256: &str,
    rows: u64,
    mut push: impl FnMut(&CheckedRow),
) -> Result<(), ReadbackError> {
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(ReadbackError::Sha256 {
            expected: sha256.to_string(),
            actual,
        });
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| ReadbackError::Parquet(e.to_string()))?;
    let footer = builder.metadata().file_metadata().num_rows();
    if footer != rows as i64 {
        return Err(ReadbackError::RowCount { footer, manifest: rows });
    }
    let schema = builder.schema().clone();
    let columns: Vec<Option<usize>> = archived_columns().map(|c| schema.index_of(c.name).ok()).collect();
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| ReadbackError::Parquet(e.to_string()))?;
    let mut row_no = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| ReadbackError::Parquet(e.to_string()))?;
        for row in 0..batch.num_rows() {
            let view = BatchRow {
                tenant,
                batch: &batch,
                columns: &columns,
                row,
            };
            match stele_store::check_row(&view) {
                Ok(Ok(checked)) => push(&checked),
                Ok(Err(problem)) => return Err(ReadbackError::Row { row: row_no, problem }),
                Err(source) => return Err(ReadbackError::Read { row: row_no, source }),
            }
            row_no += 1;
        }
    }
    Ok(())
}

/// Every event of an archive file as stored (not checked): for tools that read the
/// archive (and tests that tamper with it).
pub fn read_events(bytes: Bytes, tenant: &str) -> Result<Vec<stele_store::RowEvent>, ReadbackError> {
    read_events_where(bytes, tenant, &EventScan::default(), |_| true, |_| true)
}

/// Which part of an archive file to read, and in which direction.
#[derive(Debug, Clone, Default)]
pub struct EventScan {
    /// Only rows whose `occurred_at` (microseconds) is in `[from, to]`: row groups
    /// whose statistics fall outside are not decoded.
    pub occurred: Option<(i64, i64)>,
    /// From the end of the file (newest first), row group by row group.
    pub reverse: bool,
    /// Stop after the row group in which this many rows were kept.
    pub limit: Option<usize>,
    /// Only rows whose text column (by name) equals the value: that column and
    /// `occurred_at` are decoded first, the others only for the rows that pass
    /// (Parquet's row filter: a selective filter decodes a fraction of the file).
    pub equals: Option<(String, String)>,
}

/// Parquet's row filter for `scan`: the rows of a row group that `occurred` and
/// `equals` select, decided on those columns alone (`None`: nothing to filter on).
fn row_filter(scan: &EventScan, file: &parquet::file::metadata::ParquetMetaData) -> Option<RowFilter> {
    let descr = file.file_metadata().schema_descr();
    let leaf = |name: &str| descr.columns().iter().position(|c| c.name() == name);
    let equals = match &scan.equals {
        Some((column, value)) => Some((column.clone(), value.clone(), leaf(column)?)),
        None => None,
    };
    let occurred = match scan.occurred {
        Some(range) => Some((range, leaf("occurred_at")?)),
        None => None,
    };
    if equals.is_none() && occurred.is_none() {
        return None;
    }
    let leaves: Vec<usize> = equals.iter().map(|e| e.2).chain(occurred.iter().map(|o| o.1)).collect();
    let mask = ProjectionMask::leaves(descr, leaves);
    let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        let mut keep = vec![true; batch.num_rows()];
        // A column in another encoding than this archiver writes is not filtered here:
        // every row is decoded and the caller's own check decides.
        let text = equals
            .as_ref()
            .and_then(|(column, value, _)| Some((batch.column_by_name(column)?.clone(), value)));
        if let Some((column, value)) = &text {
            if let Some(a) = column.as_any().downcast_ref::<StringArray>() {
                for (i, k) in keep.iter_mut().enumerate() {
                    *k &= a.is_valid(i) && a.value(i) == value.as_str();
                }
            }
        }
        if let Some(((from, to), _)) = occurred {
            let at = batch
                .column_by_name("occurred_at")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
            if let Some(a) = at {
                for (i, k) in keep.iter_mut().enumerate() {
                    *k &= a.is_valid(i) && (from..=to).contains(&a.value(i));
                }
            }
        }
        Ok(BooleanArray::from(keep))
    });
    Some(RowFilter::new(vec![Box::new(predicate)]))
}

/// The rows of row group `group` on `occurred_at` pages whose min/max (the page
/// index) can fall in `from..=to`: a file is in time order, so a range within a day
/// decodes only its pages. `None` without a page index: the whole group is read.
fn pages_in_range(
    file: &parquet::file::metadata::ParquetMetaData,
    group: usize,
    leaf: usize,
    (from, to): (i64, i64),
) -> Option<RowSelection> {
    let index = file.page_index_for_row_group(group);
    let ColumnIndexMetaData::INT64(pages) = index.column_index(leaf)? else {
        return None;
    };
    let locations = index.offset_index(leaf)?.page_locations();
    let rows = usize::try_from(file.row_group(group).num_rows()).ok()?;
    let start = |p: usize| locations.get(p).map_or(rows, |l| l.first_row_index as usize);
    let wanted = (0..locations.len())
        .filter(|&p| match (pages.min_value(p), pages.max_value(p)) {
            (Some(&min), Some(&max)) => max >= from && min <= to,
            _ => true, // a page of nulls or without statistics: read it
        })
        .map(|p| start(p)..start(p + 1));
    Some(RowSelection::from_consecutive_ranges(wanted, rows))
}

/// The events of an archive file that `scan` selects, `keep` accepts (it sees each
/// row's columns before the event is rebuilt) and `accept` accepts (the rebuilt
/// event; only these count towards `scan.limit`), in file order or, with
/// `scan.reverse`, in reverse. A tenant's file is in `(occurred_at, event_id)`
/// order, so a time range or a page cursor skips most row groups, and a page reads
/// only the row groups it needs.
pub fn read_events_where(
    bytes: Bytes,
    tenant: &str,
    scan: &EventScan,
    keep: impl Fn(&dyn ExportRow) -> bool,
    accept: impl Fn(&stele_store::RowEvent) -> bool,
) -> Result<Vec<stele_store::RowEvent>, ReadbackError> {
    let parquet_err = |e: parquet::errors::ParquetError| ReadbackError::Parquet(e.to_string());
    // With a time range, the page index too: pages outside it are skipped (below).
    let options = match scan.occurred {
        Some(_) => ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        None => ArrowReaderOptions::new(),
    };
    let meta = ArrowReaderMetadata::load(&bytes, options).map_err(parquet_err)?;
    let schema = meta.schema().clone();
    let columns: Vec<Option<usize>> = archived_columns().map(|c| schema.index_of(c.name).ok()).collect();
    let file = meta.metadata().clone();
    let leaf = file
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "occurred_at");
    let mut groups: Vec<usize> = (0..file.num_row_groups())
        .filter(|&i| {
            let Some((from, to)) = scan.occurred else { return true };
            match leaf.and_then(|l| file.row_group(i).column(l).statistics()) {
                Some(parquet::file::statistics::Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&min), Some(&max)) => max >= from && min <= to,
                    _ => true,
                },
                _ => true, // no statistics: read it
            }
        })
        .collect();
    if scan.reverse {
        groups.reverse();
    }
    let mut out = Vec::new();
    for group in groups {
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
            .with_row_groups(vec![group]);
        if let Some(filter) = row_filter(scan, &file) {
            builder = builder.with_row_filter(filter);
        }
        if let Some(pages) = scan
            .occurred
            .zip(leaf)
            .and_then(|(range, l)| pages_in_range(&file, group, l, range))
        {
            builder = builder.with_row_selection(pages);
        }
        let reader = builder.build().map_err(parquet_err)?;
        let mut kept = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| ReadbackError::Parquet(e.to_string()))?;
            for row in 0..batch.num_rows() {
                let view = BatchRow {
                    tenant,
                    batch: &batch,
                    columns: &columns,
                    row,
                };
                if !keep(&view) {
                    continue;
                }
                let row_no = (out.len() + kept.len()) as u64;
                match stele_store::event_of(&view) {
                    Ok(Ok(e)) if accept(&e) => kept.push(e),
                    Ok(Ok(_)) => {}
                    Ok(Err(problem)) => return Err(ReadbackError::Row { row: row_no, problem }),
                    Err(source) => return Err(ReadbackError::Read { row: row_no, source }),
                }
            }
        }
        if scan.reverse {
            kept.reverse();
        }
        out.extend(kept);
        if scan.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}
