//! The `ArchiveStore` port: what the archiver needs from object storage. The
//! S3 adapter is in [`crate::s3`]; `MemoryStore` (feature `testing`) serves unit tests.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;

use crate::error::StoreError;

/// An object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A multipart upload that was started and not completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Object storage as the archiver uses it: parts go up by multipart upload
/// (never a whole file in memory), the manifest by one put, and verification
/// reads back with ranged gets.
pub trait ArchiveStore: Send + Sync {
    fn create_upload(&self, key: &str) -> impl Future<Output = StoreResult<String>> + Send;
    /// Upload part `number` (1-based); returns its ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = StoreResult<String>> + Send;
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn abort_upload(&self, key: &str, upload_id: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Unfinished multipart uploads whose key starts with `prefix`.
    fn list_uploads(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<PendingUpload>>> + Send;
    fn put(&self, key: &str, body: Bytes) -> impl Future<Output = StoreResult<()>> + Send;
    /// The whole object, or `None` if there is none.
    fn get(&self, key: &str) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;
    fn get_range(&self, key: &str, range: Range<u64>) -> impl Future<Output = StoreResult<Bytes>> + Send;
    fn head(&self, key: &str) -> impl Future<Output = StoreResult<Option<u64>>> + Send;
    fn list(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<ObjectInfo>>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = StoreResult<()>> + Send;
}

impl<S: ArchiveStore> ArchiveStore for &S {
    fn create_upload(&self, key: &str) -> impl Future<Output = StoreResult<String>> + Send {
        (**self).create_upload(key)
    }
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = StoreResult<String>> + Send {
        (**self).upload_part(key, upload_id, number, body)
    }
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).complete_upload(key, upload_id, parts)
    }
    fn abort_upload(&self, key: &str, upload_id: &str) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).abort_upload(key, upload_id)
    }
    fn list_uploads(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<PendingUpload>>> + Send {
        (**self).list_uploads(prefix)
    }
    fn put(&self, key: &str, body: Bytes) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).put(key, body)
    }
    fn get(&self, key: &str) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> impl Future<Output = StoreResult<Bytes>> + Send {
        (**self).get_range(key, range)
    }
    fn head(&self, key: &str) -> impl Future<Output = StoreResult<Option<u64>>> + Send {
        (**self).head(key)
    }
    fn list(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<ObjectInfo>>> + Send {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).delete(key)
    }
}

#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryStore;

#[cfg(any(test, feature = "testing"))]
mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct MemoryState {
        objects: BTreeMap<String, Bytes>,
        /// upload id → (key, parts by number)
        uploads: BTreeMap<String, (String, BTreeMap<i32, Bytes>)>,
        next_id: u64,
        parts_uploaded: u64,
    }

    /// In-memory object store for unit tests. `fail_after_parts` makes every
    /// `upload_part` after that many fail, as a broken network would.
    #[derive(Default)]
    pub struct MemoryStore {
        state: Mutex<MemoryState>,
        pub fail_after_parts: Option<u64>,
    }

    impl MemoryStore {
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        pub fn keys(&self) -> Vec<String> {
            self.lock().objects.keys().cloned().collect()
        }

        pub fn pending_uploads(&self) -> usize {
            self.lock().uploads.len()
        }
    }

    impl ArchiveStore for MemoryStore {
        async fn create_upload(&self, key: &str) -> StoreResult<String> {
            let mut s = self.lock();
            s.next_id += 1;
            let id = format!("upload-{}", s.next_id);
            s.uploads.insert(id.clone(), (key.to_string(), BTreeMap::new()));
            Ok(id)
        }

        async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> StoreResult<String> {
            let mut s = self.lock();
            if self.fail_after_parts.is_some_and(|n| s.parts_uploaded >= n) {
                return Err(StoreError::new("UploadPart", key, "injected failure"));
            }
            s.parts_uploaded += 1;
            let (_, parts) = s
                .uploads
                .get_mut(upload_id)
                .ok_or_else(|| StoreError::new("UploadPart", key, "NoSuchUpload"))?;
            parts.insert(number, body);
            Ok(format!("etag-{number}"))
        }

        async fn complete_upload(&self, key: &str, upload_id: &str, parts: &[(i32, String)]) -> StoreResult<()> {
            let mut s = self.lock();
            let (k, stored) = s
                .uploads
                .remove(upload_id)
                .ok_or_else(|| StoreError::new("CompleteMultipartUpload", key, "NoSuchUpload"))?;
            let mut body = Vec::new();
            for (n, _) in parts {
                let part = stored
                    .get(n)
                    .ok_or_else(|| StoreError::new("CompleteMultipartUpload", key, "InvalidPart"))?;
                body.extend_from_slice(part);
            }
            s.objects.insert(k, Bytes::from(body));
            Ok(())
        }

        async fn abort_upload(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
            self.lock().uploads.remove(upload_id);
            Ok(())
        }

        async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
            Ok(self
                .lock()
                .uploads
                .iter()
                .filter(|(_, (k, _))| k.starts_with(prefix))
                .map(|(id, (k, _))| PendingUpload {
                    key: k.clone(),
                    upload_id: id.clone(),
                })
                .collect())
        }

        async fn put(&self, key: &str, body: Bytes) -> StoreResult<()> {
            self.lock().objects.insert(key.to_string(), body);
            Ok(())
        }

        async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
            Ok(self.lock().objects.get(key).cloned())
        }

        async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
            let s = self.lock();
            let obj = s
                .objects
                .get(key)
                .ok_or_else(|| StoreError::new("GetObject", key, "NoSuchKey"))?;
            let (start, end) = (range.start as usize, (range.end as usize).min(obj.len()));
            if start > end {
                return Err(StoreError::new("GetObject", key, "InvalidRange"));
            }
            Ok(obj.slice(start..end))
        }

        async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
            Ok(self.lock().objects.get(key).map(|b| b.len() as u64))
        }

        async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
            Ok(self
                .lock()
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| ObjectInfo {
                    key: k.clone(),
                    size: v.len() as u64,
                })
                .collect())
        }

        async fn delete(&self, key: &str) -> StoreResult<()> {
            self.lock().objects.remove(key);
            Ok(())
        }
    }
}
