//! What the service is told by its owner: listen address, limits, timeouts,
//! CORS and tokens. The binary builds these from its configuration; this
//! crate depends on no configuration format.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// Everything the HTTP service needs to know. [`ServerOptions::default`]
/// gives the documented defaults (DESIGN.md section 9).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The address the binary binds. [`crate::serve`] checks the bound
    /// address of its listener, not this field.
    pub listen: SocketAddr,
    /// Allows listening beyond loopback without any token.
    pub allow_insecure: bool,
    /// Origins browsers may call from (`Access-Control-Allow-Origin`);
    /// `"*"` allows any. Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// The largest request body accepted (413 `payload_too_large` beyond).
    pub max_body_bytes: usize,
    /// Time a request may take until its response starts (408
    /// `request_timeout`). A change stream's body is not limited by it.
    pub request_timeout: Duration,
    /// Change streams open at once (503 `too_many_streams` beyond).
    pub max_streams: usize,
    /// A stream that sent nothing for this long sends a comment line.
    pub keep_alive_interval: Duration,
    /// How long shutdown waits for open requests and streams to end.
    pub shutdown_grace: Duration,
    /// How often live streams send resolved watermarks.
    pub resolved_interval: Duration,
    /// Events encoded larger than this are sent key-only, flagged
    /// `"truncated": true`, and counted.
    pub max_event_bytes: usize,
    /// Accepted bearer tokens. Empty: no authentication at all, which is
    /// allowed only on loopback addresses unless `allow_insecure`.
    pub tokens: Vec<TokenRule>,
    /// Whether `/metrics` needs a token with the `read` scope.
    pub metrics_require_token: bool,
    /// Whether `/healthz` and `/readyz` need a token with the `read` scope.
    pub health_require_token: bool,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7070)),
            allow_insecure: false,
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(30),
            max_streams: 1024,
            keep_alive_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            resolved_interval: Duration::from_secs(1),
            max_event_bytes: tidefeed_feed::DEFAULT_MAX_EVENT_BYTES,
            tokens: Vec::new(),
            metrics_require_token: true,
            health_require_token: false,
        }
    }
}

/// One accepted bearer token and what it may do.
#[derive(Clone)]
pub struct TokenRule {
    pub secret: TokenSecret,
    pub scopes: Vec<Scope>,
    /// Limits the token to these tables; `None` allows every table.
    pub tables: Option<Vec<String>>,
}

/// How a token is known to the server.
#[derive(Clone)]
pub enum TokenSecret {
    /// The token itself (`token = ".."`).
    Plain(String),
    /// The SHA-256 digest of the token (`token_sha256 = "<64 hex digits>"`),
    /// so the configuration holds no secret.
    Sha256([u8; 32]),
}

impl TokenSecret {
    /// Parses the hex form of `token_sha256`.
    pub fn sha256_hex(hex: &str) -> Result<TokenSecret, String> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(format!(
                "a SHA-256 digest is 64 hex digits, got {} characters",
                hex.len()
            ));
        }
        // Checked byte by byte first: slicing non-ASCII text at digit pairs
        // could split a character, and `from_str_radix` accepts a sign.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a SHA-256 digest is 64 hex digits".to_owned());
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let digit = |b: u8| (b as char).to_digit(16).expect("checked above") as u8;
            *byte = digit(pair[0]) << 4 | digit(pair[1]);
        }
        Ok(TokenSecret::Sha256(digest))
    }
}

/// Secrets are never printed, not even in debug output.
impl fmt::Debug for TokenRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRule")
            .field("secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("tables", &self.tables)
            .finish()
    }
}

/// What a token may do. Scopes are independent: `admin` does not imply
/// `write`, nor `write` `read`; a token lists every scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read rows, tables, changes and streams; ack durable consumers.
    Read,
    /// Upsert, patch and delete rows; batches.
    Write,
    /// Create tables; create and delete durable consumers.
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}; expected \"read\", \"write\" or \"admin\""
            )),
        }
    }
}

/// Why the options cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("refusing to listen on {addr} without any token: it is reachable beyond this machine; configure [auth] tokens or set [server] allow_insecure = true")]
    InsecureListen { addr: SocketAddr },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("token number {index} has no scopes")]
    NoScopes { index: usize },
    #[error("token number {index} is empty")]
    EmptyToken { index: usize },
}

impl ServerOptions {
    /// Checks the options on their own and against the address the server
    /// is bound to: listening beyond loopback needs tokens or
    /// `allow_insecure`.
    pub fn validate(&self, bound: SocketAddr) -> Result<(), OptionsError> {
        if self.tokens.is_empty() && !self.allow_insecure && !bound.ip().is_loopback() {
            return Err(OptionsError::InsecureListen { addr: bound });
        }
        let positive = [
            ("max_body_bytes", self.max_body_bytes == 0),
            ("max_streams", self.max_streams == 0),
            ("max_event_bytes", self.max_event_bytes == 0),
            ("request_timeout", self.request_timeout.is_zero()),
            ("keep_alive_interval", self.keep_alive_interval.is_zero()),
            ("resolved_interval", self.resolved_interval.is_zero()),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(OptionsError::Zero { field });
        }
        for (index, rule) in self.tokens.iter().enumerate() {
            if rule.scopes.is_empty() {
                return Err(OptionsError::NoScopes { index });
            }
            if matches!(&rule.secret, TokenSecret::Plain(token) if token.is_empty()) {
                return Err(OptionsError::EmptyToken { index });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenRule {
        TokenRule {
            secret: TokenSecret::Plain("s3cret".into()),
            scopes: vec![Scope::Read],
            tables: None,
        }
    }

    #[test]
    fn listening_beyond_loopback_needs_tokens_or_allow_insecure() {
        let open: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        let lan: SocketAddr = "192.0.2.10:7070".parse().unwrap();
        let v6: SocketAddr = "[::]:7070".parse().unwrap();
        let options = ServerOptions::default();
        for addr in [open, lan, v6] {
            assert!(
                matches!(
                    options.validate(addr),
                    Err(OptionsError::InsecureListen { .. })
                ),
                "{addr}"
            );
        }
        assert!(options.validate("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(options.validate("[::1]:0".parse().unwrap()).is_ok());
        let with_token = ServerOptions {
            tokens: vec![token()],
            ..ServerOptions::default()
        };
        assert!(with_token.validate(open).is_ok());
        let insecure = ServerOptions {
            allow_insecure: true,
            ..ServerOptions::default()
        };
        assert!(insecure.validate(open).is_ok());
    }

    #[test]
    fn zero_limits_and_empty_tokens_are_refused() {
        let local = "127.0.0.1:0".parse().unwrap();
        let options = ServerOptions {
            max_streams: 0,
            ..ServerOptions::default()
        };
        assert!(matches!(
            options.validate(local),
            Err(OptionsError::Zero {
                field: "max_streams"
            })
        ));
        let options = ServerOptions {
            tokens: vec![TokenRule {
                scopes: vec![],
                ..token()
            }],
            ..ServerOptions::default()
        };
        assert!(matches!(
            options.validate(local),
            Err(OptionsError::NoScopes { index: 0 })
        ));
    }

    #[test]
    fn sha256_digests_parse_from_hex_and_never_print() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert!(matches!(
            TokenSecret::sha256_hex(hex),
            Ok(TokenSecret::Sha256(d)) if d[0] == 0x9f && d[31] == 0x08
        ));
        assert!(TokenSecret::sha256_hex("abc").is_err());
        assert!(TokenSecret::sha256_hex(&"zz".repeat(32)).is_err());
        // 64 bytes of non-ASCII text, and signs that from_str_radix takes.
        assert!(TokenSecret::sha256_hex(&"é".repeat(32)).is_err());
        assert!(TokenSecret::sha256_hex(&"+f".repeat(32)).is_err());
        assert!(!format!("{:?}", token()).contains("s3cret"));
    }
}
