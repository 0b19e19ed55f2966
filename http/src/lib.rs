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

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

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
    // Events and responses are small writes that must leave at once:
    // Nagle's algorithm would hold one behind the previous one's ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on a connection");
        }
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .into_future();
    let mut server = tokio::spawn(server);
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
