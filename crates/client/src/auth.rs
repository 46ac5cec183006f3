//! Bearer tokens. The API's authorizer derives the tenant from the token, so
//! the token is the only tenant a client ever sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::AuthError;

/// What [`TokenProvider::token`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, AuthError>> + Send + 'a>>;

/// Where the client gets the bearer token for each request.
pub trait TokenProvider: Send + Sync + 'static {
    /// The token to send now. Called once per request; cache inside if fetching is costly.
    fn token(&self) -> TokenFuture<'_>;

    /// The API answered `401` to the last token: forget any cached one so the
    /// next [`TokenProvider::token`] fetches a fresh one.
    fn invalidate(&self) {}
}

/// One token for the client's lifetime.
#[derive(Clone)]
pub struct StaticToken(Arc<str>);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(…)")
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.0.to_string();
        Box::pin(async move { Ok(token) })
    }
}

/// A token fetched by a closure (e.g. an OAuth client-credentials call) and
/// reused until `ttl` has passed or the API answered `401`.
pub struct RefreshingToken<F> {
    fetch: F,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl<F, Fut> RefreshingToken<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, AuthError>> + Send + 'static,
{
    pub fn new(ttl: Duration, fetch: F) -> Self {
        Self {
            fetch,
            ttl,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl<F, Fut> TokenProvider for RefreshingToken<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, AuthError>> + Send + 'static,
{
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            // Held across the fetch so concurrent callers wait for one refresh.
            let mut cached = self.cached.lock().await;
            if let Some((token, at)) = cached.as_ref() {
                if at.elapsed() < self.ttl {
                    return Ok(token.clone());
                }
            }
            let token = (self.fetch)().await?;
            *cached = Some((token.clone(), Instant::now()));
            Ok(token)
        })
    }

    fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.try_lock() {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_refreshing_token_is_cached_until_invalidated() {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let provider = RefreshingToken::new(Duration::from_secs(3600), move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("t{n}")) }
        });
        assert_eq!(provider.token().await.unwrap(), "t0");
        assert_eq!(provider.token().await.unwrap(), "t0");
        provider.invalidate();
        assert_eq!(provider.token().await.unwrap(), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_is_an_error_not_a_stale_token() {
        let provider = RefreshingToken::new(Duration::ZERO, || async { Err(AuthError::new("idp down")) });
        assert!(provider.token().await.is_err());
    }
}
