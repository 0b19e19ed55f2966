//! `[auth]`: bearer tokens, their scopes and the tables they may touch.
//!
//! A token is written either in clear (`token`) or as the hex SHA-256 of
//! its text (`token_sha256`), which keeps the secret out of the file. No
//! secret ever appears in an error or in `Debug` output.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::REDACTED;
use crate::units::invalid;
use crate::ConfigError;

/// The validated `[auth]` section. With no tokens, authentication is off
/// (and the server must stay on loopback unless `server.allow_insecure`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub tokens: Vec<AuthToken>,
}

impl AuthConfig {
    /// Whether requests must carry a token.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// One accepted bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken {
    pub secret: TokenSecret,
    pub scopes: Scopes,
    /// The tables the token may touch; `None`: every table.
    pub tables: Option<Vec<String>>,
}

/// A token's secret, in clear or as its SHA-256. `Debug` never shows it.
///
/// To authenticate a request, hash the presented token with [`sha256`]
/// and compare it with [`TokenSecret::digest`] in constant time: that
/// treats both forms alike. (`PartialEq` is plain equality, meant for
/// comparing configurations, not for authentication.)
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    Plain(String),
    Sha256([u8; 32]),
}

impl TokenSecret {
    /// The SHA-256 of the token's text.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            TokenSecret::Plain(text) => sha256(text),
            TokenSecret::Sha256(digest) => *digest,
        }
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSecret::Plain(_) => write!(f, "Plain({REDACTED})"),
            TokenSecret::Sha256(_) => write!(f, "Sha256({REDACTED})"),
        }
    }
}

/// SHA-256 of a token's text, as `token_sha256` holds it
/// (`printf %s "$TOKEN" | sha256sum`).
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read rows, tables and changes (including streams).
    Read,
    /// Write rows and create tables.
    Write,
    /// Manage durable consumers and other administrative routes.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// A non-empty set of scopes. Scopes do not imply one another: a token
/// has exactly the scopes it lists.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes {
    bits: u8,
}

impl Scopes {
    fn bit(scope: Scope) -> u8 {
        1 << scope as u8
    }

    /// The set of `scopes` (for code that builds an [`AuthToken`] itself,
    /// such as tests; the loader rejects an empty set).
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes {
            bits: scopes
                .iter()
                .fold(0, |bits, scope| bits | Scopes::bit(*scope)),
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.bits & Scopes::bit(scope) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    /// Taken as any TOML value so that a wrongly typed secret is reported
    /// by us, redacted, rather than quoted by the deserializer.
    token: Option<toml::Value>,
    token_sha256: Option<toml::Value>,
    scopes: Vec<String>,
    tables: Option<Vec<String>>,
}

impl RawAuth {
    pub(crate) fn validate(self) -> Result<AuthConfig, ConfigError> {
        let mut tokens: Vec<AuthToken> = Vec::with_capacity(self.tokens.len());
        for (i, raw) in self.tokens.into_iter().enumerate() {
            let field = format!("auth.tokens[{i}]");
            let token = raw.validate(&field)?;
            if let Some(j) = tokens
                .iter()
                .position(|t| t.secret.digest() == token.secret.digest())
            {
                return Err(invalid(
                    &field,
                    REDACTED,
                    format!("is the same token as auth.tokens[{j}]; list each token once, with all its scopes"),
                ));
            }
            tokens.push(token);
        }
        Ok(AuthConfig { tokens })
    }
}

impl RawToken {
    fn validate(self, field: &str) -> Result<AuthToken, ConfigError> {
        let secret = match (self.token, self.token_sha256) {
            (Some(token), None) => {
                let field = format!("{field}.token");
                let toml::Value::String(text) = token else {
                    return Err(invalid(&field, REDACTED, "must be a string"));
                };
                check_token_text(&text).map_err(|reason| invalid(&field, REDACTED, reason))?;
                TokenSecret::Plain(text)
            }
            (None, Some(hash)) => {
                let field = format!("{field}.token_sha256");
                let toml::Value::String(hex) = hash else {
                    return Err(invalid(&field, REDACTED, "must be a string"));
                };
                TokenSecret::Sha256(
                    parse_sha256(&hex).ok_or_else(|| {
                        invalid(&field, REDACTED, "must be 64 hexadecimal digits (the SHA-256 of the token, as sha256sum prints it)")
                    })?,
                )
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    field,
                    REDACTED,
                    "has both token and token_sha256; give exactly one",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    field,
                    "{ .. }",
                    "has neither token nor token_sha256; give exactly one",
                ))
            }
        };
        Ok(AuthToken {
            secret,
            scopes: scopes(&format!("{field}.scopes"), &self.scopes)?,
            tables: match self.tables {
                None => None,
                Some(tables) => Some(tables_of(&format!("{field}.tables"), tables)?),
            },
        })
    }
}

/// RFC 6750 `b64token`: what an `Authorization: Bearer` header can carry.
fn check_token_text(text: &str) -> Result<(), &'static str> {
    let body = text.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be non-empty and use only letters, digits and - . _ ~ + / (then optional = padding), as a bearer token can")
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        // from_str_radix accepts a leading '+'; hex digits only.
        if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

fn scopes(field: &str, names: &[String]) -> Result<Scopes, ConfigError> {
    if names.is_empty() {
        return Err(invalid(
            field,
            "[]",
            "must list at least one of \"read\", \"write\", \"admin\"",
        ));
    }
    let mut bits = 0u8;
    for name in names {
        let scope = Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| invalid(field, name, "expected \"read\", \"write\" or \"admin\""))?;
        if bits & Scopes::bit(scope) != 0 {
            return Err(invalid(field, name, "is listed twice"));
        }
        bits |= Scopes::bit(scope);
    }
    Ok(Scopes { bits })
}

fn tables_of(field: &str, tables: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if tables.is_empty() {
        return Err(invalid(
            field,
            "[]",
            "must name at least one table; leave tables out to allow every table",
        ));
    }
    for (i, table) in tables.iter().enumerate() {
        if !is_table_name(table) {
            return Err(invalid(
                field,
                table,
                "is not a table name ([a-z][a-z0-9_]{0,62})",
            ));
        }
        if tables[..i].contains(table) {
            return Err(invalid(field, table, "is listed twice"));
        }
    }
    Ok(tables)
}

/// `[a-z][a-z0-9_]{0,62}`, the table names of DESIGN.md section 3.
pub(crate) fn is_table_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{load_env, load_file};

    const HASH_OF_S3CRET: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

    fn auth(text: &str) -> Result<AuthConfig, ConfigError> {
        load_file(&format!("[auth]\n{text}\n")).map(|config| config.auth)
    }

    #[test]
    fn no_tokens_by_default() {
        let auth = load_env(&[]).unwrap().auth;
        assert!(!auth.is_enabled());
    }

    #[test]
    fn tokens_in_clear_and_hashed() {
        let auth = auth(&format!(
            "tokens = [\n  {{ token = \"s3cret\", scopes = [\"read\", \"write\"], tables = [\"users\", \"t_2\"] }},\n  {{ token_sha256 = \"{}\", scopes = [\"admin\"] }},\n]",
            "AB".repeat(32)
        ))
        .unwrap();
        assert!(auth.is_enabled());
        let [clear, hashed] = &auth.tokens[..] else {
            panic!("{auth:?}")
        };
        assert_eq!(clear.secret, TokenSecret::Plain("s3cret".into()));
        assert_eq!(
            clear.secret.digest().to_vec(),
            parse_sha256(HASH_OF_S3CRET).unwrap().to_vec()
        );
        assert!(clear.scopes.contains(Scope::Read) && clear.scopes.contains(Scope::Write));
        assert!(!clear.scopes.contains(Scope::Admin));
        assert_eq!(
            clear.tables,
            Some(vec!["users".to_owned(), "t_2".to_owned()])
        );
        assert_eq!(hashed.secret, TokenSecret::Sha256([0xab; 32]));
        assert_eq!(hashed.scopes.iter().collect::<Vec<_>>(), [Scope::Admin]);
        assert_eq!(hashed.scopes, Scopes::of(&[Scope::Admin]));
        assert_eq!(clear.scopes, Scopes::of(&[Scope::Write, Scope::Read]));
        assert_eq!(hashed.tables, None);
    }

    #[test]
    fn tokens_from_the_environment_are_a_toml_array() {
        let auth = load_env(&[(
            "TIDEFEED_AUTH__TOKENS",
            r#"[{ token = "from-env", scopes = ["read"] }]"#,
        )])
        .unwrap()
        .auth;
        assert_eq!(auth.tokens[0].secret, TokenSecret::Plain("from-env".into()));
        let error = load_env(&[("TIDEFEED_AUTH__TOKENS", "from-env")]).unwrap_err();
        assert!(!error.to_string().contains("from-env"), "{error}");
        assert!(
            error.to_string().contains("TIDEFEED_AUTH__TOKENS"),
            "{error}"
        );
    }

    #[test]
    fn invalid_tokens_name_the_field() {
        let hash = HASH_OF_S3CRET;
        let cases: &[(String, &str, &str)] = &[
            (r#"tokens = [{ scopes = ["read"] }]"#.into(), "auth.tokens[0]", "neither"),
            (format!(r#"tokens = [{{ token = "s3cret", token_sha256 = "{hash}", scopes = ["read"] }}]"#), "auth.tokens[0]", "both"),
            (r#"tokens = [{ token = "", scopes = ["read"] }]"#.into(), "auth.tokens[0].token", "non-empty"),
            (r#"tokens = [{ token = "has space", scopes = ["read"] }]"#.into(), "auth.tokens[0].token", "letters"),
            (r#"tokens = [{ token = 12345, scopes = ["read"] }]"#.into(), "auth.tokens[0].token", "string"),
            (r#"tokens = [{ token_sha256 = "abc", scopes = ["read"] }]"#.into(), "auth.tokens[0].token_sha256", "64 hexadecimal"),
            (format!(r#"tokens = [{{ token_sha256 = "{}", scopes = ["read"] }}]"#, "g".repeat(64)), "auth.tokens[0].token_sha256", "64 hexadecimal"),
            (format!(r#"tokens = [{{ token_sha256 = "{}", scopes = ["read"] }}]"#, "+1".repeat(32)), "auth.tokens[0].token_sha256", "64 hexadecimal"),
            (r#"tokens = [{ token = "a", scopes = [] }]"#.into(), "auth.tokens[0].scopes", "at least one"),
            (r#"tokens = [{ token = "a", scopes = ["root"] }]"#.into(), "auth.tokens[0].scopes", "\"admin\""),
            (r#"tokens = [{ token = "a", scopes = ["read", "read"] }]"#.into(), "auth.tokens[0].scopes", "twice"),
            (r#"tokens = [{ token = "a", scopes = ["read"], tables = [] }]"#.into(), "auth.tokens[0].tables", "leave tables out"),
            (r#"tokens = [{ token = "a", scopes = ["read"], tables = ["Users"] }]"#.into(), "auth.tokens[0].tables", "table name"),
            (r#"tokens = [{ token = "a", scopes = ["read"], tables = ["1t"] }]"#.into(), "auth.tokens[0].tables", "table name"),
            (format!(r#"tokens = [{{ token = "a", scopes = ["read"], tables = ["{}"] }}]"#, "t".repeat(64)), "auth.tokens[0].tables", "table name"),
            (r#"tokens = [{ token = "a", scopes = ["read"], tables = ["t", "t"] }]"#.into(), "auth.tokens[0].tables", "twice"),
            (r#"tokens = [{ token = "a", scopes = ["read"] }, { token = "b", scopes = ["read"] }, { token = "a", scopes = ["write"] }]"#.into(), "auth.tokens[2]", "auth.tokens[0]"),
            (format!(r#"tokens = [{{ token_sha256 = "{hash}", scopes = ["read"] }}, {{ token = "s3cret", scopes = ["write"] }}]"#), "auth.tokens[1]", "auth.tokens[0]"),
        ];
        for (text, field, reason) in cases {
            let error = auth(text).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.field(), Some(*field), "{text}: {message}");
            assert!(message.contains(reason), "{text}: {message}");
        }
        for (text, key) in [
            (
                r#"tokens = [{ token = "a", scopes = ["read"], scope = "x" }]"#,
                "scope",
            ),
            (r#"tokens = [{ token = "a", scopes = "read" }]"#, "scopes"),
            (
                r#"tokens = [{ token = "a", scopes = ["read"], tables = "users" }]"#,
                "tables",
            ),
            (
                r#"tokens = { token = "a", scopes = ["read"] }"#,
                "auth.tokens",
            ),
        ] {
            let error = auth(text).unwrap_err();
            assert!(
                matches!(error, ConfigError::Schema { .. }) && error.to_string().contains(key),
                "{error}"
            );
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug_output() {
        let hash = HASH_OF_S3CRET;
        for text in [
            r#"tokens = [{ token = "s3cret", scopes = ["sudo"] }]"#.to_owned(),
            r#"tokens = [{ token = "s3cret with space", scopes = ["read"] }]"#.to_owned(),
            r#"tokens = [{ token = "s3cret", scopes = ["read"] }, { token = "s3cret", scopes = ["read"] }]"#.to_owned(),
            format!(r#"tokens = [{{ token = "s3cret", token_sha256 = "{hash}", scopes = ["read"] }}]"#),
            r#"tokens = [{ token_sha256 = "s3cret", scopes = ["read"] }]"#.to_owned(),
            r#"tokens = [{ token = 123456789, scopes = ["read"] }]"#.to_owned(),
            r#"tokens = [{ token = "s3cret", scopes = ["read"] "#.to_owned(),
        ] {
            let error = auth(&text).unwrap_err();
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains("s3cret") && !shown.contains("123456789"), "{shown}");
            }
        }
        let config = load_file(&format!(
            "[auth]\ntokens = [{{ token = \"s3cret\", scopes = [\"read\"] }}, {{ token_sha256 = \"{hash}0\", scopes = [\"read\"] }}]\n"
        ));
        assert!(config.is_err());
        let config = load_file(&format!(
            "[auth]\ntokens = [{{ token = \"s3cret\", scopes = [\"read\"] }}, {{ token_sha256 = \"{}\", scopes = [\"read\"] }}]\n",
            "ab".repeat(32)
        ))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("abab"),
            "{shown}"
        );
        assert!(
            shown.contains("Plain(<redacted>)") && shown.contains("{\"read\"}"),
            "{shown}"
        );
    }

    #[test]
    fn table_names() {
        for good in ["a", "users", "t_1", &format!("a{}", "b".repeat(62))] {
            assert!(is_table_name(good), "{good}");
        }
        for bad in [
            "",
            "A",
            "_a",
            "1a",
            "a-b",
            "é",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }
}
