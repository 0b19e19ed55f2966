use std::path::PathBuf;

/// Why a configuration could not be loaded. Each variant names the file,
/// the variable or the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// Unknown keys, unknown sections and wrongly typed values.
    #[error("invalid configuration{}: {source}", origin_suffix(.origin))]
    Schema {
        origin: Option<String>,
        #[source]
        source: toml::de::Error,
    },
    #[error("environment variable {name} does not name a configuration key (expected TIDEFEED_<SECTION>__<KEY>, e.g. TIDEFEED_STORAGE__DURABILITY)")]
    UnknownEnv { name: String },
    #[error("{field} = {value:?} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn origin_suffix(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" in {o}"))
        .unwrap_or_default()
}
