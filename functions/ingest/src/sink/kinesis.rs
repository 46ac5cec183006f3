//! The Kinesis adapter: [`EventSink`] over `PutRecords`, chunked to the
//! service's per-call limits, with the call's errors sorted into retryable and
//! permanent.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use stele_core::limits;

use super::{EventSink, PutResult, Record};

/// Split records into PutRecords calls of at most 500 records and 5 MiB
/// (data plus partition keys, as Kinesis counts).
pub fn chunks(records: &[Record]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        let size = r.data.len() + r.partition_key.len();
        if i > start && (i - start >= limits::MAX_EVENTS_PER_REQUEST || bytes + size > limits::MAX_PUT_RECORDS_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

/// The real sink: Kinesis `PutRecords`.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

/// Errors of the whole call that sending again will not fix.
const PERMANENT_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ValidationException",
    "InvalidArgumentException",
    "AccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSAccessDeniedException",
    "KMSOptInRequired",
];

impl KinesisSink {
    /// `stream` is a stream name or ARN.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    async fn put_chunk(&self, records: &[Record]) -> Vec<PutResult> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.to_vec()))
                .partition_key(&r.partition_key)
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => {
                    let msg = format!("cannot build the record: {e}");
                    return vec![PutResult::failed("InvalidRecord", msg, false); records.len()];
                }
            }
        }
        let mut call = self.client.put_records().set_records(Some(entries));
        call = if self.stream.starts_with("arn:") {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        match call.send().await {
            Ok(out) if out.records().len() == records.len() => out
                .records()
                .iter()
                .map(|e| match (e.error_code(), e.shard_id(), e.sequence_number()) {
                    (None, Some(shard), Some(seq)) => PutResult::Stored {
                        shard_id: shard.to_owned(),
                        sequence_number: seq.to_owned(),
                    },
                    (code, _, _) => PutResult::failed(
                        code.unwrap_or("InternalFailure"),
                        e.error_message().unwrap_or("record not stored"),
                        true,
                    ),
                })
                .collect(),
            Ok(out) => {
                let msg = format!(
                    "PutRecords answered {} entries for {} records",
                    out.records().len(),
                    records.len()
                );
                vec![PutResult::failed("InternalFailure", msg, true); records.len()]
            }
            Err(err) => {
                let code = err.code().unwrap_or("DispatchFailure").to_owned();
                let retryable = !PERMANENT_CODES.contains(&code.as_str());
                let msg = DisplayErrorContext(&err).to_string();
                tracing::warn!(%code, retryable, error = %msg, "PutRecords call failed");
                vec![PutResult::failed(code, msg, retryable); records.len()]
            }
        }
    }
}

impl EventSink for KinesisSink {
    async fn put(&self, records: &[Record]) -> Vec<PutResult> {
        let mut results = Vec::with_capacity(records.len());
        for range in chunks(records) {
            results.extend(self.put_chunk(&records[range]).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(id: &str) -> Record {
        Record {
            partition_key: "t".into(),
            data: Bytes::from(format!("{{\"event_id\":\"{id}\"}}")),
        }
    }

    #[test]
    fn chunks_respect_the_record_and_byte_limits() {
        let small: Vec<Record> = (0..1200).map(|i| rec(&i.to_string())).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, vec![500, 500, 200]);

        let big = Record {
            partition_key: "t".into(),
            data: Bytes::from(vec![b'x'; 60 * 1024]),
        };
        let many = vec![big; 200];
        for range in chunks(&many) {
            let bytes: usize = many[range].iter().map(|r| r.data.len() + 1).sum();
            assert!(bytes <= limits::MAX_PUT_RECORDS_BYTES);
        }
        assert_eq!(chunks(&many).iter().map(|r| r.len()).sum::<usize>(), 200);
    }
}
