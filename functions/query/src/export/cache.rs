//! An export reads the same archived day page after page; this keeps the last few
//! objects it fetched, so each archived file is downloaded once per export instead of
//! once per page.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use stele_archiver::store::{ObjectInfo, PendingUpload, StoreResult};
use stele_archiver::ArchiveStore;

/// A read-through cache of whole objects in front of `inner`, at most `max_bytes`
/// in all (the oldest go first). Writes go straight through.
pub struct RecentObjects<S> {
    inner: S,
    max_bytes: usize,
    kept: Mutex<VecDeque<(String, Bytes)>>,
}

impl<S: ArchiveStore> RecentObjects<S> {
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self {
            inner,
            max_bytes,
            kept: Mutex::new(VecDeque::new()),
        }
    }

    fn lookup(&self, key: &str) -> Option<Bytes> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|(k, _)| k == key).map(|(_, b)| b.clone())
    }

    fn keep(&self, key: &str, body: &Bytes) {
        if body.len() > self.max_bytes {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|(k, _)| k != key);
        kept.push_back((key.to_string(), body.clone()));
        let mut total: usize = kept.iter().map(|(_, b)| b.len()).sum();
        while total > self.max_bytes {
            match kept.pop_front() {
                Some((_, b)) => total -= b.len(),
                None => break,
            }
        }
    }
}

impl<S: ArchiveStore> ArchiveStore for RecentObjects<S> {
    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        if let Some(body) = self.lookup(key) {
            return Ok(Some(body));
        }
        let body = self.inner.get(key).await?;
        if let Some(b) = &body {
            self.keep(key, b);
        }
        Ok(body)
    }

    fn create_upload(&self, key: &str) -> impl Future<Output = StoreResult<String>> + Send {
        self.inner.create_upload(key)
    }
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = StoreResult<String>> + Send {
        self.inner.upload_part(key, upload_id, number, body)
    }
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.inner.complete_upload(key, upload_id, parts)
    }
    fn abort_upload(&self, key: &str, upload_id: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.inner.abort_upload(key, upload_id)
    }
    fn list_uploads(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<PendingUpload>>> + Send {
        self.inner.list_uploads(prefix)
    }
    fn put(&self, key: &str, body: Bytes) -> impl Future<Output = StoreResult<()>> + Send {
        self.inner.put(key, body)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> impl Future<Output = StoreResult<Bytes>> + Send {
        self.inner.get_range(key, range)
    }
    fn head(&self, key: &str) -> impl Future<Output = StoreResult<Option<u64>>> + Send {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<ObjectInfo>>> + Send {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_archiver::store::MemoryStore;

    #[tokio::test]
    async fn keeps_recent_objects_within_the_budget() {
        let store = MemoryStore::new();
        store.put("a", Bytes::from_static(b"aaaa")).await.unwrap();
        store.put("b", Bytes::from_static(b"bbbb")).await.unwrap();
        let cached = RecentObjects::new(&store, 6);
        assert_eq!(cached.get("a").await.unwrap().unwrap(), "aaaa");
        // Served from the cache: the store's copy is gone.
        store.delete("a").await.unwrap();
        assert_eq!(cached.get("a").await.unwrap().unwrap(), "aaaa");
        // `b` pushes `a` out (8 bytes > 6).
        assert_eq!(cached.get("b").await.unwrap().unwrap(), "bbbb");
        assert_eq!(cached.get("a").await.unwrap(), None);
    }
}
