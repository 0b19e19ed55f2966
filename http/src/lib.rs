//! tidefeed's HTTP service: the REST API, server-sent change streams,
//! `/metrics`, health endpoints, auth and limits (DESIGN.md sections 7
//! and 9 are the contract).
//!
//! - [`router`] builds the axum router over an [`AppState`] (engine, feed,
//!   [`ServerOptions`]); [`serve`] runs it on a bound listener until a
//!   shutdown signal, then ends open streams with an `error` event and
//!   waits up to `shutdown_grace` for requests in flight.
//! - Every failure is an `ApiError`; its one `parts` method decides the
//!   status and the stable error code, for JSON responses and SSE `error`
//!   events alike. Extractors (`extract`) turn malformed bodies, paths,
//!   queries and headers into those errors.
//! - The route table (`routes`) lists every route with the scope it
//!   needs; the same list builds the router and checks the OpenAPI
//!   document (`openapi`).
//! - Blocking engine work (reads that may touch table files, file writes)
//!   runs on the blocking pool; writes use `Engine::write_async`.
//!
//! This crate reads no configuration file: the binary maps its
//! configuration to [`ServerOptions`].

mod auth;
mod component;
mod error;
mod extract;
mod key;
mod metrics;
mod model;
mod openapi;
mod options;
mod params;
mod routes;
mod sse;
mod state;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use component::{Component, Sample, SampleKind};
pub use error::ApiError;
pub use options::{OptionsError, Scope, ServerOptions, TokenRule, TokenSecret};
pub use routes::router;
pub use state::AppState;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("the listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection closed within the grace period.
    Drained,
    /// Connections were still open when the grace period ran out; they
    /// were dropped.
    GraceExpired,
}

/// The largest buffer a connection reads a request's head into: request
/// lines and headers beyond it are refused (431). It also bounds what an
/// idle connection holds, with a change stream open for hours.
const MAX_REQUEST_HEAD_BYTES: usize = 8 << 10;

/// Accepts connections until `shutdown` is cancelled, then asks each open
/// connection to finish (`graceful_shutdown`: the request in flight
/// completes, streams end on the same signal) and returns once all are
/// gone. One router serves every connection (a clone is a reference
/// count); hyper's http1 connection keeps small buffers, so an idle
/// stream costs little memory.
async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait and retry
                // rather than stop serving.
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
            _ = shutdown.cancelled() => break,
        };
        // Events and responses are small writes that must leave at once:
        // Nagle's algorithm would hold one behind the previous one's ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on a connection");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_REQUEST_HEAD_BYTES)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE: out of descriptors
}

/// Serves the API on `listener` until `shutdown` completes, then, in
/// order: stops accepting connections, ends open change streams with an
/// `error` event (`shutting_down`), and waits up to `shutdown_grace` for
/// requests in flight. The engine stays open; its owner closes it after.
///
/// Refuses to serve a listener bound beyond loopback without tokens
/// unless `allow_insecure` ([`ServerOptions::validate`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, ServeError> {
    let addr: SocketAddr = listener.local_addr()?;
    state.options().validate(addr)?;
    let token = state.shutdown_token().clone();
    let grace = state.options().shutdown_grace;
    let app = router(state.clone());
    let accept = accept_loop(listener, app, token.clone());
    let mut server = tokio::spawn(accept);
    tokio::select! {
        _ = shutdown => {}
        _ = token.cancelled() => {}
        finished = &mut server => {
            // The server ended by itself: a listener error.
            token.cancel();
            return match finished {
                Ok(result) => result.map(|()| Stopped::Drained).map_err(ServeError::Io),
                Err(join) => Err(ServeError::Io(std::io::Error::other(join))),
            };
        }
    }
    tracing::info!(?grace, "stopped accepting connections; ending open streams");
    token.cancel();
    match tokio::time::timeout(grace, &mut server).await {
        Ok(Ok(result)) => result.map(|()| Stopped::Drained).map_err(ServeError::Io),
        Ok(Err(join)) => Err(ServeError::Io(std::io::Error::other(join))),
        Err(_) => {
            server.abort();
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; dropping them"
            );
            Ok(Stopped::GraceExpired)
        }
    }
}
