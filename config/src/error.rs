use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Each variant names the file,
/// the variable or the field at fault, and none ever shows a secret (a
/// token, a `token_sha256`, a `[kafka.librdkafka]` value): those are
/// reported as `<redacted>` or not at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // NOTE: the underlying errors below are shown in the message and are
    // deliberately not `#[source]`s, so that a report that prints the
    // chain (`{:#}` of anyhow) does not print them twice.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not TOML. Only the position and the parser's message
    /// are kept: the parser's own rendering quotes the offending line,
    /// which may hold a token.
    #[error("config file {} is not valid TOML (line {line}, column {column}): {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Unknown keys, unknown sections and wrongly typed values; the message
    /// ends with the key's path (``in `server.listen` ``).
    #[error("invalid configuration{}: {}", origin_suffix(.origin), one_line(.error))]
    Schema {
        /// The file at fault, or `None` for the environment.
        origin: Option<String>,
        error: toml::de::Error,
    },
    #[error("environment variable {name} does not name a configuration key (expected TIDEFEED_<SECTION>__<KEY>, e.g. TIDEFEED_STORAGE__DURABILITY)")]
    UnknownEnv { name: String },
    /// An environment variable whose text cannot be the key's type.
    #[error("environment variable {name} (for {field}) = {value:?} is invalid: {reason}")]
    Env {
        name: String,
        field: String,
        /// `<redacted>` for keys that may hold secrets.
        value: String,
        reason: String,
    },
    #[error("{field} = {value:?} is invalid: {reason}")]
    Invalid {
        field: String,
        /// The value as written, or `<redacted>` for secrets.
        value: String,
        reason: String,
    },
    /// Two settings that cannot both be given, such as a
    /// `[kafka.librdkafka]` pass-through option the connector sets itself.
    #[error("{field} conflicts with {other}: {reason}")]
    Conflict {
        field: String,
        other: String,
        reason: String,
    },
    #[error("server.listen = {listen} is not a loopback address and [auth] has no tokens, so anyone who can reach it could read and write every table; add [auth] tokens, listen on 127.0.0.1 or [::1], or set server.allow_insecure = true to accept this")]
    InsecureListen { listen: SocketAddr },
}

impl ConfigError {
    /// The configuration key at fault (`server.max_body_bytes`), when the
    /// error is about one key.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Env { field, .. }
            | ConfigError::Invalid { field, .. }
            | ConfigError::Conflict { field, .. } => Some(field),
            ConfigError::InsecureListen { .. } => Some("server.allow_insecure"),
            ConfigError::Read { .. }
            | ConfigError::Parse { .. }
            | ConfigError::Schema { .. }
            | ConfigError::UnknownEnv { .. } => None,
        }
    }
}

/// Stands in for a secret in errors and `Debug` output.
pub(crate) const REDACTED: &str = "<redacted>";

/// `invalid type: string "x", expected u64, in `server.max_streams``: the
/// deserializer puts the key's path on a line of its own.
fn one_line(error: &toml::de::Error) -> String {
    error.to_string().trim_end().replace('\n', ", ")
}

fn origin_suffix(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" in {o}"))
        .unwrap_or_else(|| " from the environment".to_owned())
}
