//! `ParquetPartWriter`: Arrow record batches in, one Parquet object out by S3
//! multipart upload. Memory is bounded by one row group plus one part buffer,
//! whatever the file's size; the SHA-256 of the file is computed on the way.

use std::io::Write;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ArchiverConfig;
use crate::error::{Error, Step};
use crate::schema;
use crate::store::ArchiveStore;

/// What the manifest records of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartManifest {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub row_groups: u32,
    /// Microseconds since the epoch, UTC.
    pub min_occurred_at_us: Option<i64>,
    pub max_occurred_at_us: Option<i64>,
}

/// The bytes Parquet has written and not yet uploaded, and the running hash.
struct PartSink {
    buf: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Columns whose values are (nearly) unique per row: dictionary encoding
/// only costs CPU and memory there (the dictionary grows to its 1 MiB page
/// limit per column before falling back), so it is off for them.
const NO_DICTIONARY: [&str; 11] = [
    "event_id",
    "occurred_at",
    "received_at",
    "changes",
    "metadata",
    "correlation_id",
    "causation_id",
    "trace_parent",
    "trace_state",
    "event_hash",
    "kinesis_seq",
];

/// The writer properties of every archive file: zstd, row groups of
/// `row_group_rows` (cut earlier past `row_group_bytes`), page statistics,
/// dictionaries only on repetitive columns.
pub fn writer_properties(config: &ArchiverConfig) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    for column in NO_DICTIONARY {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("stele-archiver {}", env!("CARGO_PKG_VERSION")))
        .build()
}

pub struct ParquetPartWriter<'a, S: ArchiveStore> {
    store: &'a S,
    partition: &'a str,
    key: String,
    upload_id: String,
    writer: ArrowWriter<PartSink>,
    parts: Vec<(i32, String)>,
    part_bytes: usize,
    row_group_bytes: usize,
    rows: u64,
    min_us: Option<i64>,
    max_us: Option<i64>,
}

impl<'a, S: ArchiveStore> ParquetPartWriter<'a, S> {
    /// Start the multipart upload of `key`.
    pub async fn create(store: &'a S, partition: &'a str, key: String, config: &ArchiverConfig) -> Result<Self, Error> {
        let sink = PartSink {
            buf: Vec::with_capacity(config.part_bytes + (1 << 20)),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let writer =
            ArrowWriter::try_new(sink, schema::schema(), Some(writer_properties(config))).map_err(|source| {
                Error::Parquet {
                    partition: partition.to_string(),
                    step: Step::Export,
                    source,
                }
            })?;
        let upload_id = store
            .create_upload(&key)
            .await
            .map_err(|e| e.at(partition, Step::Upload))?;
        Ok(Self {
            store,
            partition,
            key,
            upload_id,
            writer,
            parts: Vec::new(),
            part_bytes: config.part_bytes,
            row_group_bytes: config.row_group_bytes,
            rows: 0,
            min_us: None,
            max_us: None,
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn parquet_err(&self, source: parquet::errors::ParquetError) -> Error {
        Error::Parquet {
            partition: self.partition.to_string(),
            step: Step::Export,
            source,
        }
    }

    /// Append a batch (of [`schema::schema`]); uploads a part whenever a part's worth is buffered.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        if let Some(ts) = batch
            .column(schema::col::occurred_at())
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
        {
            for v in ts.iter().flatten() {
                self.min_us = Some(self.min_us.map_or(v, |m| m.min(v)));
                self.max_us = Some(self.max_us.map_or(v, |m| m.max(v)));
            }
        }
        self.writer.write(batch).map_err(|e| self.parquet_err(e))?;
        self.rows += batch.num_rows() as u64;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush().map_err(|e| self.parquet_err(e))?;
        }
        if self.writer.inner().buf.len() >= self.part_bytes {
            self.upload_buffered().await?;
        }
        Ok(())
    }

    async fn upload_buffered(&mut self) -> Result<(), Error> {
        let body = Bytes::from(std::mem::take(&mut self.writer.inner_mut().buf));
        self.writer.inner_mut().buf.reserve(self.part_bytes + (1 << 20));
        let number = self.parts.len() as i32 + 1;
        let etag = self
            .store
            .upload_part(&self.key, &self.upload_id, number, body)
            .await
            .map_err(|e| e.at(self.partition, Step::Upload))?;
        self.parts.push((number, etag));
        Ok(())
    }

    /// Write the footer, upload the rest and complete the upload. On failure
    /// the multipart upload is aborted.
    pub async fn finish(mut self) -> Result<PartManifest, Error> {
        let row_groups = match self.finish_upload().await {
            Ok(n) => n,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        let sink = self.writer.inner_mut();
        let sha256 = hex::encode(std::mem::take(&mut sink.hasher).finalize());
        Ok(PartManifest {
            key: self.key,
            rows: self.rows,
            bytes: sink.bytes,
            sha256,
            row_groups,
            min_occurred_at_us: self.min_us,
            max_occurred_at_us: self.max_us,
        })
    }

    async fn finish_upload(&mut self) -> Result<u32, Error> {
        let meta = self.writer.finish().map_err(|e| self.parquet_err(e))?;
        if !self.writer.inner().buf.is_empty() || self.parts.is_empty() {
            self.upload_buffered().await?;
        }
        self.store
            .complete_upload(&self.key, &self.upload_id, &self.parts)
            .await
            .map_err(|e| e.at(self.partition, Step::Upload))?;
        Ok(meta.num_row_groups() as u32)
    }

    /// Give up on this file: abort the multipart upload (best effort; the next
    /// run aborts whatever is left).
    pub async fn abort(&self) {
        if let Err(e) = self.store.abort_upload(&self.key, &self.upload_id).await {
            tracing::warn!(partition = self.partition, key = %self.key, error = %e, "could not abort a multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::store::MemoryStore;

    fn batch(from: i64, n: usize) -> RecordBatch {
        let cols: Vec<ArrayRef> = schema::schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| -> ArrayRef {
                match f.data_type() {
                    arrow::datatypes::DataType::Timestamp(_, _) => Arc::new(
                        TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|k| (from + k) * 1_000_003))
                            .with_timezone("UTC"),
                    ),
                    arrow::datatypes::DataType::Int32 => Arc::new(Int32Array::from(vec![1; n])),
                    arrow::datatypes::DataType::Int64 => Arc::new(Int64Array::from(vec![1; n])),
                    _ => Arc::new(StringArray::from_iter_values((0..n as i64).map(|k| {
                        format!("{i}-{:x}", ((from + k) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    }))),
                }
            })
            .collect();
        RecordBatch::try_new(schema::schema(), cols).unwrap()
    }

    #[tokio::test]
    async fn a_file_streamed_in_many_parts_is_one_valid_parquet_object_with_its_hash() {
        let store = MemoryStore::new();
        let mut config = ArchiverConfig::new("b");
        config.part_bytes = 64 * 1024; // below S3's minimum: only the fake allows it
        config.row_group_rows = 5_000;
        let mut w = ParquetPartWriter::create(&store, "p", "k/part-00000.parquet".into(), &config)
            .await
            .unwrap();
        for i in 0..12 {
            w.write(&batch(i * 2_000, 2_000)).await.unwrap();
        }
        let part = w.finish().await.unwrap();
        let object = store.get("k/part-00000.parquet").await.unwrap().unwrap();
        assert_eq!(part.rows, 24_000);
        assert_eq!(part.bytes, object.len() as u64);
        assert_eq!(part.sha256, hex::encode(Sha256::digest(&object)));
        assert_eq!(part.row_groups, 5);
        assert_eq!(part.min_occurred_at_us, Some(0));
        assert_eq!(store.pending_uploads(), 0);
        let reader = ParquetRecordBatchReaderBuilder::try_new(object).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 24_000);
        assert_eq!(reader.schema().fields(), schema::schema().fields());
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload() {
        let mut store = MemoryStore::new();
        store.fail_after_parts = Some(1);
        let mut config = ArchiverConfig::new("b");
        config.part_bytes = 16 * 1024;
        config.row_group_rows = 1_024;
        let mut w = ParquetPartWriter::create(&store, "p", "k".into(), &config)
            .await
            .unwrap();
        let mut failed = None;
        for i in 0..20 {
            if let Err(e) = w.write(&batch(i * 1_000, 1_000)).await {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => {
                w.abort().await;
                e
            }
            None => w.finish().await.unwrap_err(),
        };
        assert!(err.to_string().contains("p: upload"), "{err}");
        assert_eq!(store.pending_uploads(), 0);
        assert!(store.keys().is_empty());
    }
}
