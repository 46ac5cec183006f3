//! Where an export's bytes go. Lambda answers at most 6 MB (the whole response, its
//! body JSON-escaped inside it), so a small export is the response itself and a large
//! one is written to the archive bucket under `_exports/` and handed back as a
//! presigned URL. The bytes are streamed: at most one part (8 MiB) is held in memory.

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectLockMode};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The largest response body served inline, measured as it travels: JSON-escaped
/// inside Lambda's response document. 5 000 000 bytes leaves room under Lambda's
/// 6 MB limit for the headers and the envelope.
pub const INLINE_MAX_ESCAPED: usize = 5_000_000;
/// Where exports are written in the bucket; Terraform expires this prefix after a day.
pub const EXPORT_PREFIX: &str = "_exports";
/// Each multipart part (S3's minimum is 5 MiB, but for the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Where large exports go and how they are handed out.
#[derive(Debug, Clone)]
pub struct ExportBucket {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// The Object Lock mode of the bucket, when it has Object Lock: exports then carry
    /// their own one-day retention instead of the archive's years-long default, so the
    /// prefix's expiry can delete them.
    pub lock_mode: Option<String>,
    /// How long the presigned URL is valid.
    pub url_ttl: Duration,
}

impl ExportBucket {
    /// A one-day Object Lock retention, when the bucket has Object Lock.
    fn retention(&self) -> Option<(ObjectLockMode, aws_sdk_s3::primitives::DateTime)> {
        let mode = self.lock_mode.as_deref()?;
        let until = Utc::now() + chrono::Duration::days(1);
        Some((
            ObjectLockMode::from(mode),
            aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()),
        ))
    }

    /// A presigned `GET` of `key` that downloads as `filename`, and when it expires.
    pub async fn presign(&self, key: &str, filename: &str) -> Result<(String, DateTime<Utc>), BucketError> {
        let presigning = PresigningConfig::expires_in(self.url_ttl).map_err(|e| BucketError::new(key, e))?;
        let url = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{filename}\""))
            .presigned(presigning)
            .await
            .map_err(|e| BucketError::new(key, e))?;
        let expires_at = Utc::now() + chrono::Duration::from_std(self.url_ttl).unwrap_or_default();
        Ok((url.uri().to_string(), expires_at))
    }

    /// Writes a small object under [`EXPORT_PREFIX`] (an export's status), with the
    /// exports' one-day retention.
    pub async fn put_small(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), BucketError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        if let Some((mode, until)) = self.retention() {
            req = req.object_lock_mode(mode).object_lock_retain_until_date(until);
        }
        req.send().await.map_err(|e| BucketError::new(key, e))?;
        Ok(())
    }

    /// Reads a small object; `None` when there is no such key.
    pub async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>, BucketError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(BucketError::new(key, e)),
        };
        let body = out.body.collect().await.map_err(|e| BucketError::new(key, e))?;
        Ok(Some(body.into_bytes().to_vec()))
    }
}

/// An S3 request on the export bucket failed.
#[derive(Debug, thiserror::Error)]
#[error("s3 object {key}: {reason}")]
pub struct BucketError {
    pub key: String,
    pub reason: String,
}

impl BucketError {
    fn new(key: &str, e: impl std::error::Error) -> Self {
        Self {
            key: key.to_owned(),
            reason: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }
    }
}

/// An export as delivered.
#[derive(Debug)]
pub enum Delivered {
    /// Small enough to be the response.
    Inline(Vec<u8>),
    /// Written to the bucket: a presigned `GET` of it.
    Url {
        url: String,
        key: String,
        bytes: u64,
        expires_at: DateTime<Utc>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the export is larger than a response can carry and no archive bucket is configured to hold it")]
    NoBucket,
    #[error("writing the export to s3://{bucket}/{key}: {reason}")]
    S3 {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("the export could not be finished within the request's time ({written} bytes written)")]
    OutOfTime { written: u64 },
}

struct Upload {
    id: String,
    parts: Vec<CompletedPart>,
}

/// Collects an export's bytes; switches to a multipart upload once they outgrow a
/// response. [`Spool::finish`] delivers them, [`Spool::abandon`] cleans up.
pub struct Spool {
    target: Option<ExportBucket>,
    key: String,
    filename: String,
    content_type: &'static str,
    inline_max_escaped: usize,
    buf: Vec<u8>,
    written: u64,
    upload: Option<Upload>,
    deadline: Option<std::time::Instant>,
}

/// The length of `body` once JSON-escaped as a string (Lambda's response is JSON).
fn escaped_len(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(body);
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
        + 2
}

impl Spool {
    /// `key`: the object's name under [`EXPORT_PREFIX`] should it be uploaded.
    pub fn new(
        target: Option<ExportBucket>,
        key: String,
        filename: String,
        content_type: &'static str,
        inline_max_escaped: usize,
    ) -> Self {
        Self {
            target,
            key,
            filename,
            content_type,
            inline_max_escaped,
            buf: Vec::new(),
            written: 0,
            upload: None,
            deadline: None,
        }
    }

    /// Refuse to go on past `deadline` (the invocation's end, less a margin to answer):
    /// an export that cannot finish fails with a clear error instead of a timeout.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn s3_error(&self, bucket: &ExportBucket, e: impl std::error::Error) -> SpoolError {
        SpoolError::S3 {
            bucket: bucket.bucket.clone(),
            key: self.key.clone(),
            reason: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }
    }

    /// Appends `bytes`; uploads a part whenever a whole one is held.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        if self.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(SpoolError::OutOfTime { written: self.written });
        }
        self.buf.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        // Escaping never shrinks: past this many raw bytes the export cannot be inline.
        if self.upload.is_none() && self.buf.len() <= self.inline_max_escaped {
            return Ok(());
        }
        if self.upload.is_none() {
            let bucket = self.target.clone().ok_or(SpoolError::NoBucket)?;
            let mut req = bucket
                .client
                .create_multipart_upload()
                .bucket(&bucket.bucket)
                .key(&self.key)
                .content_type(self.content_type);
            if let Some((mode, until)) = bucket.retention() {
                req = req.object_lock_mode(mode).object_lock_retain_until_date(until);
            }
            let out = req.send().await.map_err(|e| self.s3_error(&bucket, e))?;
            let id = out.upload_id().unwrap_or_default().to_string();
            self.upload = Some(Upload { id, parts: Vec::new() });
        }
        while self.buf.len() >= PART_BYTES {
            let rest = self.buf.split_off(PART_BYTES);
            let part = std::mem::replace(&mut self.buf, rest);
            self.upload_part(part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), SpoolError> {
        let bucket = self.target.clone().ok_or(SpoolError::NoBucket)?;
        let Some(upload) = &self.upload else {
            return Ok(());
        };
        let number = upload.parts.len() as i32 + 1;
        let out = bucket
            .client
            .upload_part()
            .bucket(&bucket.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| self.s3_error(&bucket, e))?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        if let Some(upload) = &mut self.upload {
            upload
                .parts
                .push(CompletedPart::builder().part_number(number).e_tag(etag).build());
        }
        Ok(())
    }

    /// Delivers the export: inline, or completed in the bucket with a presigned URL.
    pub async fn finish(mut self) -> Result<Delivered, SpoolError> {
        if self.upload.is_none() && escaped_len(&self.buf) <= self.inline_max_escaped {
            return Ok(Delivered::Inline(std::mem::take(&mut self.buf)));
        }
        let bucket = self.target.clone().ok_or(SpoolError::NoBucket)?;
        if self.upload.is_some() {
            let last = std::mem::take(&mut self.buf);
            if !last.is_empty() {
                self.upload_part(last).await?;
            }
            let upload = self.upload.take().unwrap_or(Upload {
                id: String::new(),
                parts: Vec::new(),
            });
            bucket
                .client
                .complete_multipart_upload()
                .bucket(&bucket.bucket)
                .key(&self.key)
                .upload_id(&upload.id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(upload.parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.s3_error(&bucket, e))?;
        } else {
            // Larger than a response once escaped, smaller than a part: one PUT.
            let mut req = bucket
                .client
                .put_object()
                .bucket(&bucket.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .body(ByteStream::from(std::mem::take(&mut self.buf)));
            if let Some((mode, until)) = bucket.retention() {
                req = req.object_lock_mode(mode).object_lock_retain_until_date(until);
            }
            req.send().await.map_err(|e| self.s3_error(&bucket, e))?;
        }
        let (url, expires_at) = bucket
            .presign(&self.key, &self.filename)
            .await
            .map_err(|e| SpoolError::S3 {
                bucket: bucket.bucket.clone(),
                key: e.key,
                reason: e.reason,
            })?;
        Ok(Delivered::Url {
            url,
            key: self.key.clone(),
            bytes: self.written,
            expires_at,
        })
    }

    /// After a failure: aborts an upload in progress (best effort; the bucket's
    /// lifecycle rule removes what is left after a day).
    pub async fn abandon(self) {
        if let (Some(bucket), Some(upload)) = (&self.target, &self.upload) {
            let _ = bucket
                .client
                .abort_multipart_upload()
                .bucket(&bucket.bucket)
                .key(&self.key)
                .upload_id(&upload.id)
                .send()
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_measured_as_json_does_it() {
        for s in ["plain", "a \"quoted\" line\n", "tab\there", "\u{1}ctl", "ünïcødé"] {
            assert_eq!(
                escaped_len(s.as_bytes()),
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[tokio::test]
    async fn small_exports_are_inline_and_large_ones_need_a_bucket() {
        let mut spool = Spool::new(None, "k".into(), "f".into(), "text/csv", 100);
        spool.write(b"a,b\r\n").await.unwrap();
        match spool.finish().await.unwrap() {
            Delivered::Inline(b) => assert_eq!(b, b"a,b\r\n"),
            other => panic!("{other:?}"),
        }
        let mut spool = Spool::new(None, "k".into(), "f".into(), "text/csv", 100);
        // 60 raw bytes, 120 escaped: over the limit only once escaped.
        let quotes = [b'"'; 60];
        assert!(spool.write(&quotes).await.is_ok());
        assert!(matches!(spool.finish().await, Err(SpoolError::NoBucket)));
    }
}
