//! Reading an archived Parquet file back, row by row, as [`ExportRow`]s: the rows are
//! checked with the same [`stele_store::check_row`] as the rows exported from
//! PostgreSQL, so the archiver's verify step and `stele verify` re-hash every row's
//! content on both sides the same way.

use arrow::array::{Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
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
    read_events_where(bytes, tenant, None, |_| true)
}

/// The events of an archive file whose `occurred_at` (in microseconds) lies in
/// `[from, to]` (all of them when `None`) and that `keep` accepts. Row groups whose
/// `occurred_at` statistics fall outside the range are not decoded at all (a
/// tenant's file is in time order, so a time range or a page cursor skips most of
/// it); `keep` sees each remaining row's columns before the event is rebuilt.
pub fn read_events_where(
    bytes: Bytes,
    tenant: &str,
    occurred: Option<(i64, i64)>,
    keep: impl Fn(&dyn ExportRow) -> bool,
) -> Result<Vec<stele_store::RowEvent>, ReadbackError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| ReadbackError::Parquet(e.to_string()))?;
    let schema = builder.schema().clone();
    let columns: Vec<Option<usize>> = archived_columns().map(|c| schema.index_of(c.name).ok()).collect();
    let builder = match occurred {
        None => builder,
        Some((from, to)) => {
            let meta = builder.metadata().clone();
            let leaf = meta
                .file_metadata()
                .schema_descr()
                .columns()
                .iter()
                .position(|c| c.name() == "occurred_at");
            let groups: Vec<usize> = (0..meta.num_row_groups())
                .filter(|&i| {
                    let stats = leaf.and_then(|l| meta.row_group(i).column(l).statistics());
                    match stats {
                        Some(parquet::file::statistics::Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                            (Some(&min), Some(&max)) => max >= from && min <= to,
                            _ => true,
                        },
                        _ => true, // no statistics: read it
                    }
                })
                .collect();
            builder.with_row_groups(groups)
        }
    };
    let reader = builder.build().map_err(|e| ReadbackError::Parquet(e.to_string()))?;
    let mut out = Vec::new();
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
            row_no += 1;
            if !keep(&view) {
                continue;
            }
            match stele_store::event_of(&view) {
                Ok(Ok(e)) => out.push(e),
                Ok(Err(problem)) => {
                    return Err(ReadbackError::Row {
                        row: row_no - 1,
                        problem,
                    })
                }
                Err(source) => {
                    return Err(ReadbackError::Read {
                        row: row_no - 1,
                        source,
                    })
                }
            }
        }
    }
    Ok(out)
}
