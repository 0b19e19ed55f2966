//! `[server]`: the HTTP service's address, limits, timeouts and CORS, and
//! the rule that keeps an unauthenticated server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{
    count_in, duration_in, invalid, memory_size_in, ms, secs, RawDuration, RawSize, GIB, HOUR, KIB,
    TEN_MINUTES,
};
use crate::ConfigError;

/// The validated `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the HTTP service listens. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Listen on a non-loopback address although `[auth]` has no tokens.
    pub allow_insecure: bool,
    /// Which browser origins may call the API.
    pub cors_allowed_origins: CorsOrigins,
    /// Largest request body accepted (413 `payload_too_large` beyond).
    pub max_body_bytes: usize,
    /// Deadline for a whole request and its response. Not applied to
    /// streams (`/v1/changes/stream`), which live until the client leaves
    /// or the server shuts down.
    pub request_timeout: Duration,
    /// Concurrent SSE streams; one more is refused with 503
    /// `too_many_streams`.
    pub max_streams: usize,
    /// How often an idle SSE stream sends a keep-alive comment.
    pub keep_alive_interval: Duration,
    /// On SIGINT/SIGTERM, how long open requests and streams get to finish
    /// before they are cut.
    pub shutdown_grace: Duration,
    /// `/metrics` requires a valid token when `[auth]` has tokens.
    pub metrics_require_token: bool,
    /// `/healthz` and `/readyz` require a valid token when `[auth]` has
    /// tokens.
    pub health_require_token: bool,
}

/// Allowed CORS origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: browsers allow only same-origin pages.
    Disabled,
    /// `"*"`: any origin.
    Any,
    /// Exactly these origins (`scheme://host[:port]`, as browsers send them
    /// in `Origin`).
    Only(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    listen: String,
    allow_insecure: bool,
    cors_allowed_origins: Vec<String>,
    max_body_bytes: RawSize,
    request_timeout: RawDuration,
    max_streams: u64,
    keep_alive_interval: RawDuration,
    shutdown_grace: RawDuration,
    metrics_require_token: bool,
    health_require_token: bool,
}

pub(crate) const MAX_BODY_BYTES: std::ops::RangeInclusive<u64> = KIB..=GIB;
pub(crate) const REQUEST_TIMEOUT: std::ops::RangeInclusive<Duration> = ms(10)..=HOUR;
pub(crate) const MAX_STREAMS: std::ops::RangeInclusive<u64> = 1..=1_000_000;
pub(crate) const KEEP_ALIVE_INTERVAL: std::ops::RangeInclusive<Duration> = ms(100)..=HOUR;
pub(crate) const SHUTDOWN_GRACE: std::ops::RangeInclusive<Duration> = secs(0)..=TEN_MINUTES;

impl RawServer {
    pub(crate) fn validate(
        self,
        listen_flag: Option<SocketAddr>,
    ) -> Result<ServerConfig, ConfigError> {
        let listen = match listen_flag {
            Some(addr) => addr,
            None => self.listen.parse().map_err(|e| {
                invalid(
                    "server.listen",
                    &self.listen,
                    format!("not a socket address such as 127.0.0.1:7070 or [::1]:7070: {e}"),
                )
            })?,
        };
        Ok(ServerConfig {
            listen,
            allow_insecure: self.allow_insecure,
            cors_allowed_origins: cors_origins(self.cors_allowed_origins)?,
            max_body_bytes: memory_size_in(
                "server.max_body_bytes",
                &self.max_body_bytes,
                MAX_BODY_BYTES,
            )?,
            request_timeout: duration_in(
                "server.request_timeout",
                &self.request_timeout,
                REQUEST_TIMEOUT,
            )?,
            max_streams: count_in("server.max_streams", self.max_streams, MAX_STREAMS)? as usize,
            keep_alive_interval: duration_in(
                "server.keep_alive_interval",
                &self.keep_alive_interval,
                KEEP_ALIVE_INTERVAL,
            )?,
            shutdown_grace: duration_in(
                "server.shutdown_grace",
                &self.shutdown_grace,
                SHUTDOWN_GRACE,
            )?,
            metrics_require_token: self.metrics_require_token,
            health_require_token: self.health_require_token,
        })
    }
}

fn cors_origins(origins: Vec<String>) -> Result<CorsOrigins, ConfigError> {
    const FIELD: &str = "server.cors_allowed_origins";
    if origins.is_empty() {
        return Ok(CorsOrigins::Disabled);
    }
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(invalid(
                FIELD,
                format!("{origins:?}"),
                "\"*\" allows every origin and cannot be combined with others",
            ));
        }
        return Ok(CorsOrigins::Any);
    }
    for (i, origin) in origins.iter().enumerate() {
        if let Err(reason) = check_origin(origin) {
            return Err(invalid(&format!("{FIELD}[{i}]"), origin, reason));
        }
        if origins[..i].contains(origin) {
            return Err(invalid(&format!("{FIELD}[{i}]"), origin, "is listed twice"));
        }
    }
    Ok(CorsOrigins::Only(origins))
}

/// An origin as a browser sends it: `http` or `https`, a host, an optional
/// port, nothing else (no path, not even a trailing `/`), lowercase.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "must be an origin such as \"https://app.example.com\" or \"http://localhost:3000\" (scheme, host and optional port; no path, no trailing /), or \"*\"";
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(SHAPE)?;
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal's colons are inside brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.[]:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(SHAPE)
    }
}

/// Refuses a non-loopback listen address when no token protects it, unless
/// `allow_insecure`. Loopback means 127.0.0.0/8, `::1` and `::ffff:127.x.y.z`;
/// the unspecified addresses (`0.0.0.0`, `::`) listen on every interface and
/// are not loopback.
pub(crate) fn check_listen_security(
    listen: SocketAddr,
    has_tokens: bool,
    allow_insecure: bool,
) -> Result<(), ConfigError> {
    if has_tokens || allow_insecure || listen.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(ConfigError::InsecureListen { listen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{env_error, load_env, load_file, Valid};
    use crate::units::MINUTE;

    #[test]
    fn defaults() {
        let server = load_env(&[]).unwrap().server;
        assert_eq!(server.listen, "127.0.0.1:7070".parse().unwrap());
        assert!(!server.allow_insecure);
        assert_eq!(server.cors_allowed_origins, CorsOrigins::Disabled);
        assert_eq!(server.max_body_bytes, 8 << 20);
        assert_eq!(server.request_timeout, secs(30));
        assert_eq!(server.max_streams, 10_000);
        assert_eq!(server.keep_alive_interval, secs(15));
        assert_eq!(server.shutdown_grace, secs(10));
        assert!(server.metrics_require_token);
        assert!(!server.health_require_token);
    }

    #[test]
    fn valid_values_including_both_bounds() {
        let cases: &[Valid<ServerConfig>] = &[
            ("LISTEN", "0.0.0.0:80", |s| {
                s.listen == "0.0.0.0:80".parse().unwrap()
            }),
            ("LISTEN", "[::1]:0", |s| {
                s.listen == "[::1]:0".parse().unwrap()
            }),
            ("MAX_BODY_BYTES", "1KiB", |s| s.max_body_bytes == 1024),
            ("MAX_BODY_BYTES", "1GiB", |s| s.max_body_bytes == 1 << 30),
            ("MAX_BODY_BYTES", "65536", |s| s.max_body_bytes == 65536),
            ("REQUEST_TIMEOUT", "10ms", |s| s.request_timeout == ms(10)),
            ("REQUEST_TIMEOUT", "1h", |s| s.request_timeout == HOUR),
            ("MAX_STREAMS", "1", |s| s.max_streams == 1),
            ("MAX_STREAMS", "1000000", |s| s.max_streams == 1_000_000),
            ("KEEP_ALIVE_INTERVAL", "100ms", |s| {
                s.keep_alive_interval == ms(100)
            }),
            ("KEEP_ALIVE_INTERVAL", "1h", |s| {
                s.keep_alive_interval == HOUR
            }),
            ("SHUTDOWN_GRACE", "0s", |s| s.shutdown_grace.is_zero()),
            ("SHUTDOWN_GRACE", "10m", |s| s.shutdown_grace == 10 * MINUTE),
            ("ALLOW_INSECURE", "true", |s| s.allow_insecure),
            ("METRICS_REQUIRE_TOKEN", "false", |s| {
                !s.metrics_require_token
            }),
            ("HEALTH_REQUIRE_TOKEN", "true", |s| s.health_require_token),
            ("CORS_ALLOWED_ORIGINS", "*", |s| {
                s.cors_allowed_origins == CorsOrigins::Any
            }),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example, http://localhost:3000",
                |s| {
                    s.cors_allowed_origins
                        == CorsOrigins::Only(vec![
                            "https://a.example".into(),
                            "http://localhost:3000".into(),
                        ])
                },
            ),
            ("CORS_ALLOWED_ORIGINS", r#"["http://[::1]:8080"]"#, |s| {
                s.cors_allowed_origins == CorsOrigins::Only(vec!["http://[::1]:8080".into()])
            }),
            ("CORS_ALLOWED_ORIGINS", "", |s| {
                s.cors_allowed_origins == CorsOrigins::Disabled
            }),
        ];
        for (key, value, check) in cases {
            let var = format!("TIDEFEED_SERVER__{key}");
            // Non-loopback addresses need the opt-out; it is tested on its own below.
            let server = load_env(&[(&var, value), ("TIDEFEED_SERVER__ALLOW_INSECURE", "true")])
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"))
                .server;
            assert!(check(&server), "{var}={value}: {server:?}");
        }
    }

    #[test]
    fn invalid_values_name_the_field_the_value_and_the_range() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "LISTEN",
                "localhost:7070",
                "server.listen",
                "socket address",
            ),
            ("LISTEN", "127.0.0.1", "server.listen", "socket address"),
            (
                "MAX_BODY_BYTES",
                "1023",
                "server.max_body_bytes",
                "between 1KiB and 1GiB",
            ),
            (
                "MAX_BODY_BYTES",
                "2GiB",
                "server.max_body_bytes",
                "between 1KiB and 1GiB",
            ),
            ("MAX_BODY_BYTES", "big", "server.max_body_bytes", "unit"),
            (
                "REQUEST_TIMEOUT",
                "9ms",
                "server.request_timeout",
                "between 10ms and 1h",
            ),
            (
                "REQUEST_TIMEOUT",
                "100years",
                "server.request_timeout",
                "between 10ms and 1h",
            ),
            ("REQUEST_TIMEOUT", "30", "server.request_timeout", "unit"),
            (
                "MAX_STREAMS",
                "0",
                "server.max_streams",
                "between 1 and 1000000",
            ),
            (
                "MAX_STREAMS",
                "1000001",
                "server.max_streams",
                "between 1 and 1000000",
            ),
            (
                "KEEP_ALIVE_INTERVAL",
                "99ms",
                "server.keep_alive_interval",
                "between 100ms and 1h",
            ),
            (
                "KEEP_ALIVE_INTERVAL",
                "2h",
                "server.keep_alive_interval",
                "between 100ms and 1h",
            ),
            (
                "SHUTDOWN_GRACE",
                "11m",
                "server.shutdown_grace",
                "between 0s and 10m",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "*,https://a.example",
                "server.cors_allowed_origins",
                "\"*\"",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example/",
                "server.cors_allowed_origins[0]",
                "trailing",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "a.example",
                "server.cors_allowed_origins[0]",
                "scheme",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://A.example",
                "server.cors_allowed_origins[0]",
                "scheme",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "http://a:0",
                "server.cors_allowed_origins[0]",
                "port",
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                "http://a,http://a",
                "server.cors_allowed_origins[1]",
                "twice",
            ),
        ];
        for (key, value, field, reason) in cases {
            let var = format!("TIDEFEED_SERVER__{key}");
            let error = load_env(&[(&var, value)]).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.field(), Some(*field), "{var}={value}: {message}");
            assert!(message.contains(reason), "{var}={value}: {message}");
        }
    }

    #[test]
    fn wrong_types_are_rejected_naming_the_key() {
        for (text, key) in [
            ("allow_insecure = \"yes\"", "server.allow_insecure"),
            ("max_streams = \"many\"", "server.max_streams"),
            ("max_streams = -1", "server.max_streams"),
            ("max_body_bytes = true", "server.max_body_bytes"),
            ("max_body_bytes = -5", "server.max_body_bytes"),
            ("request_timeout = 30", "server.request_timeout"),
            (
                "cors_allowed_origins = \"*\"",
                "server.cors_allowed_origins",
            ),
            ("listen = 7070", "server.listen"),
        ] {
            let error = load_file(&format!("[server]\n{text}\n")).unwrap_err();
            assert!(
                matches!(error, ConfigError::Schema { .. }) && error.to_string().contains(key),
                "{text}: {error}"
            );
        }
        for (key, value) in [
            ("ALLOW_INSECURE", "yes"),
            ("MAX_STREAMS", "many"),
            ("MAX_STREAMS", "-1"),
        ] {
            let var = format!("TIDEFEED_SERVER__{key}");
            let error = env_error(&var, value);
            assert!(error.contains(&var) && error.contains(value), "{error}");
        }
    }

    #[test]
    fn non_loopback_without_tokens_needs_allow_insecure() {
        let cases = [
            ("127.0.0.1:7070", true),
            ("127.1.2.3:7070", true),
            ("[::1]:7070", true),
            ("[::ffff:127.0.0.1]:7070", true),
            ("0.0.0.0:7070", false),
            ("192.168.1.10:7070", false),
            ("[::]:7070", false),
            ("[2001:db8::1]:7070", false),
            ("[::ffff:10.0.0.1]:7070", false),
        ];
        for (listen, loopback) in cases {
            let addr: SocketAddr = listen.parse().unwrap();
            let refused = check_listen_security(addr, false, false);
            assert_eq!(refused.is_ok(), loopback, "{listen}");
            if let Err(error) = refused {
                assert_eq!(error.field(), Some("server.allow_insecure"));
                assert!(error.to_string().contains(&addr.to_string()), "{error}");
            }
            assert!(
                check_listen_security(addr, true, false).is_ok(),
                "{listen} with tokens"
            );
            assert!(
                check_listen_security(addr, false, true).is_ok(),
                "{listen} allowed"
            );
        }
    }

    #[test]
    fn the_listen_rule_applies_to_the_loaded_config() {
        let error = load_env(&[("TIDEFEED_SERVER__LISTEN", "0.0.0.0:7070")]).unwrap_err();
        assert!(
            matches!(error, ConfigError::InsecureListen { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("server.allow_insecure"));
        let with_token = "[server]\nlisten = \"[::]:7070\"\n[auth]\ntokens = [{ token = \"t0k3n\", scopes = [\"read\"] }]\n";
        assert!(load_file(with_token).is_ok());
    }
}
