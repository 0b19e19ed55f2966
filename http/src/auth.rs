//! Bearer tokens, scopes and table limits.
//!
//! A presented token is hashed with SHA-256 and its digest compared with
//! every configured digest in constant time (`subtle`), so neither the
//! comparison nor the configuration (`token_sha256`) reveals a secret.
//! With no tokens configured, authentication is off (allowed only on
//! loopback unless `allow_insecure`; see [`crate::ServerOptions::validate`]).
//!
//! Every route declares the [`Access`] it needs; the middleware checks it
//! before the handler runs and hands the handler a [`Principal`], which
//! handlers use for the tables named in bodies and query strings (batches,
//! change filters). The `access_token` query parameter is read only on
//! stream routes, where a browser `EventSource` cannot set headers; it is
//! never logged.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::options::{Scope, TokenRule, TokenSecret};
use crate::state::AppState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A token with this scope (when tokens are configured).
    Scope(Scope),
    /// `/metrics`: `read` when `metrics_require_token`, else open.
    Metrics,
    /// `/healthz`, `/readyz`: `read` when `health_require_token`, else open.
    Health,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    scopes: BTreeSet<Scope>,
    /// `None`: every table.
    tables: Option<Arc<BTreeSet<String>>>,
}

impl Principal {
    /// The caller when authentication is off: everything is allowed.
    fn unrestricted() -> Principal {
        Principal {
            scopes: [Scope::Read, Scope::Write, Scope::Admin].into(),
            tables: None,
        }
    }

    fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the {scope} scope this route needs"
            )))
        }
    }

    pub fn may_use_table(&self, table: &str) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|tables| tables.contains(table))
    }

    /// Refuses a table outside the token's tables.
    pub fn require_table(&self, table: &str) -> Result<(), ApiError> {
        if self.may_use_table(table) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token may not use table {table:?}"
            )))
        }
    }

    /// Refuses a token limited to tables. Durable consumers span every
    /// table: a token that may see only some of them must not create,
    /// move or delete one, or it could make others skip changes.
    pub fn require_every_table(&self) -> Result<(), ApiError> {
        match &self.tables {
            None => Ok(()),
            Some(_) => Err(ApiError::Forbidden(
                "this token is limited to tables; durable consumers span every table, so creating, acknowledging or deleting one needs a token without a table limit".to_owned(),
            )),
        }
    }

    /// Refuses a change filter that could show tables outside the
    /// token's: a token limited to tables must name them (`tables=`).
    pub fn require_filter(&self, filter: &BTreeSet<String>) -> Result<(), ApiError> {
        let Some(allowed) = &self.tables else {
            return Ok(());
        };
        if filter.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "this token is limited to tables {}; name them with tables=",
                allowed.iter().cloned().collect::<Vec<_>>().join(",")
            )));
        }
        filter
            .iter()
            .try_for_each(|table| self.require_table(table))
    }
}

/// The configured tokens, as digests.
pub struct Authenticator {
    rules: Vec<([u8; 32], Principal)>,
}

impl Authenticator {
    pub fn new(rules: &[TokenRule]) -> Authenticator {
        Authenticator {
            rules: rules
                .iter()
                .map(|rule| {
                    let digest = match &rule.secret {
                        TokenSecret::Plain(token) => Sha256::digest(token.as_bytes()).into(),
                        TokenSecret::Sha256(digest) => *digest,
                    };
                    let principal = Principal {
                        scopes: rule.scopes.iter().copied().collect(),
                        tables: rule
                            .tables
                            .as_ref()
                            .map(|tables| Arc::new(tables.iter().cloned().collect())),
                    };
                    (digest, principal)
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The principal of `token`. Every configured digest is compared, in
    /// constant time, whatever matches first.
    fn authenticate(&self, token: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (candidate, principal) in &self.rules {
            if bool::from(candidate.ct_eq(&digest)) && found.is_none() {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// The route's access requirement, for the middleware.
#[derive(Clone)]
pub struct RouteAccess {
    pub state: AppState,
    pub access: Access,
    /// Whether `?access_token=` is accepted (stream routes).
    pub query_token: bool,
}

/// Checks the token, the route's scope and a `{table}` in the path, then
/// runs the handler with the [`Principal`] in the request's extensions.
pub async fn authorize(
    State(route): State<RouteAccess>,
    mut request: Request,
    next: Next,
) -> Response {
    match check(&route, &mut request).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn check(route: &RouteAccess, request: &mut Request) -> Result<Principal, ApiError> {
    let auth = route.state.authenticator();
    let options = route.state.options();
    let scope = match route.access {
        Access::Scope(scope) => Some(scope),
        Access::Metrics => options.metrics_require_token.then_some(Scope::Read),
        Access::Health => options.health_require_token.then_some(Scope::Read),
    };
    let (Some(scope), true) = (scope, auth.enabled()) else {
        return Ok(Principal::unrestricted());
    };
    let token = bearer(request)
        .or_else(|| route.query_token.then(|| query_token(request)).flatten())
        .ok_or(ApiError::Unauthorized)?;
    let principal = auth.authenticate(&token).ok_or(ApiError::Unauthorized)?;
    principal.require_scope(scope)?;
    // The path's parameters, only when a token's tables must be checked
    // against them.
    let params = request
        .extract_parts::<Result<RawPathParams, RawPathParamsRejection>>()
        .await
        .unwrap_or_else(|never| match never {});
    match &params {
        Ok(params) => {
            if let Some((_, table)) = params.iter().find(|(name, _)| *name == "table") {
                principal.require_table(table)?;
            }
        }
        // Parameters that are not UTF-8 cannot name a table the token may
        // use; the error names the parameter as the handler would.
        Err(RawPathParamsRejection::InvalidUtf8InPathParam(error)) => {
            let text = error.body_text();
            return Err(if text.contains("`table`") {
                ApiError::BadTableName {
                    table: "<not UTF-8>".into(),
                }
            } else if text.contains("`key`") {
                ApiError::BadKey("the key in the path is not UTF-8 once percent-decoded".into())
            } else {
                ApiError::BadPath(text)
            });
        }
        Err(_) => {}
    }
    Ok(principal)
}

fn bearer(request: &Request) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(request: &Request) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenParam {
        access_token: Option<String>,
    }
    axum::extract::Query::<TokenParam>::try_from_uri(request.uri())
        .ok()?
        .0
        .access_token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(secret: TokenSecret, scopes: &[Scope], tables: Option<&[&str]>) -> TokenRule {
        TokenRule {
            secret,
            scopes: scopes.to_vec(),
            tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn plain_and_sha256_tokens_authenticate_and_others_do_not() {
        let digest: [u8; 32] = Sha256::digest(b"hashed").into();
        let auth = Authenticator::new(&[
            rule(TokenSecret::Plain("plain".into()), &[Scope::Read], None),
            rule(
                TokenSecret::Sha256(digest),
                &[Scope::Write],
                Some(&["users"]),
            ),
        ]);
        let plain = auth.authenticate("plain").unwrap();
        assert!(plain.require_scope(Scope::Read).is_ok());
        assert!(plain.require_scope(Scope::Write).is_err());
        let hashed = auth.authenticate("hashed").unwrap();
        assert!(hashed.require_scope(Scope::Write).is_ok());
        assert!(hashed.require_table("users").is_ok());
        assert!(hashed.require_table("orders").is_err());
        assert!(auth.authenticate("plai").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn a_table_limited_token_must_filter_within_its_tables() {
        let limited = Principal {
            scopes: [Scope::Read].into(),
            tables: Some(Arc::new(["a".to_owned(), "b".to_owned()].into())),
        };
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        assert!(limited.require_filter(&set(&[])).is_err());
        assert!(limited.require_filter(&set(&["a"])).is_ok());
        assert!(limited.require_filter(&set(&["a", "c"])).is_err());
        assert!(Principal::unrestricted().require_filter(&set(&[])).is_ok());
    }
}
