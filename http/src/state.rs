//! What every handler shares: the engine, the feed, options, tokens,
//! metrics, the stream limit and the shutdown signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tidefeed_engine::{Engine, Error as EngineError, Mutation, Table, WriteResult};
use tidefeed_feed::Feed;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::component::Component;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::ServerOptions;

/// The service's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    feed: Feed,
    options: ServerOptions,
    auth: Authenticator,
    metrics: Metrics,
    /// One permit per open change stream.
    streams: Arc<Semaphore>,
    /// Cancelled when shutdown begins: the listener stops accepting and
    /// open streams end with an `error` event.
    shutdown: CancellationToken,
    started: Instant,
    /// Set once a write found the engine failed (poisoned by a storage
    /// fault): the process stays up to answer, but is not ready.
    engine_failed: AtomicBool,
    /// Other parts of the process reported in `/v1/status` and `/metrics`.
    components: Vec<Arc<dyn Component>>,
}

impl AppState {
    /// The state for a server over `engine`. The feed is built here with
    /// the options' maximum event size.
    pub fn new(engine: Engine, options: ServerOptions) -> AppState {
        AppState::with_components(engine, options, Vec::new())
    }

    /// [`AppState::new`], also reporting on `components` (the Kafka
    /// connector, say).
    pub fn with_components(
        engine: Engine,
        options: ServerOptions,
        components: Vec<Arc<dyn Component>>,
    ) -> AppState {
        let feed = Feed::with_max_event_bytes(engine.clone(), options.max_event_bytes);
        AppState {
            inner: Arc::new(Inner {
                auth: Authenticator::new(&options.tokens),
                streams: Arc::new(Semaphore::new(options.max_streams)),
                feed,
                engine,
                options,
                metrics: Metrics::new(),
                shutdown: CancellationToken::new(),
                started: Instant::now(),
                engine_failed: AtomicBool::new(false),
                components,
            }),
        }
    }

    pub(crate) fn components(&self) -> &[Arc<dyn Component>] {
        &self.inner.components
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn streams(&self) -> &Arc<Semaphore> {
        &self.inner.streams
    }

    /// Change streams open now.
    pub(crate) fn open_streams(&self) -> usize {
        self.inner.options.max_streams - self.inner.streams.available_permits()
    }

    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// The signal that shutdown has begun.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Commits a batch without blocking the executor, noting a failed
    /// engine for `/readyz`.
    pub(crate) async fn write(&self, batch: Vec<Mutation>) -> Result<WriteResult, ApiError> {
        match self.engine().write_async(batch).await {
            Ok(result) => Ok(result),
            Err(error) => {
                if matches!(
                    error,
                    EngineError::Poisoned { .. } | EngineError::CommitFailed { .. }
                ) {
                    self.inner.engine_failed.store(true, Ordering::Relaxed);
                }
                Err(error.into())
            }
        }
    }

    /// Whether the engine has failed: a write found it so, or the engine
    /// reports a failure of its own (background work, a panicked thread).
    pub(crate) fn engine_failed(&self) -> bool {
        self.inner.engine_failed.load(Ordering::Relaxed) || self.engine().failure().is_some()
    }

    /// A table named in a path: the name must be valid, and the table
    /// must exist.
    pub(crate) fn table(&self, name: &str) -> Result<Arc<Table>, ApiError> {
        if !valid_table_name(name) {
            return Err(ApiError::BadTableName {
                table: name.to_owned(),
            });
        }
        self.engine().table(name).ok_or_else(|| {
            ApiError::Engine(tidefeed_engine::Error::NoSuchTable {
                table: name.to_owned(),
            })
        })
    }
}

/// `[a-z][a-z0-9_]{0,62}` (DESIGN.md section 3).
pub(crate) fn valid_table_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 63
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_contract() {
        for good in ["a", "users", "a_1", &"a".repeat(63)] {
            assert!(valid_table_name(good), "{good}");
        }
        for bad in ["", "A", "1a", "_a", "a-b", "a.b", "é", &"a".repeat(64)] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }
}
