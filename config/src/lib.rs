//! tidefeed's configuration: typed values, embedded defaults, loading and
//! validation.
//!
//! Precedence, lowest first: the embedded defaults (the commented example
//! file `config/tidefeed.example.toml`, which `tidefeed print-config`
//! prints), the TOML file (`--config FILE`), environment variables
//! `TIDEFEED_<SECTION>__<KEY>`, then command-line flags ([`Overrides`]).
//!
//! Every key can be set from the environment. Booleans are `true` or
//! `false`; sizes and durations are written as in the file; lists are
//! comma-separated (`a:9092,b:9092`) or a TOML array (`["a:9092"]`), and
//! the empty string is the empty list; `TIDEFEED_AUTH__TOKENS` is a TOML
//! array of tables and `TIDEFEED_KAFKA__LIBRDKAFKA` a TOML inline table,
//! merged over the file's. Other `TIDEFEED_*` names are errors, except
//! `TIDEFEED_LOG` (the log filter, read by the binary).
//!
//! Raw `serde` structs reject unknown keys and sections; one validation
//! step per section turns them into the typed [`Config`]. Every numeric
//! key has a lower and an upper bound, every error names the field, the
//! value as written and the reason, and nothing is silently corrected.
//! Secrets (tokens, `[kafka.librdkafka]` values that may hold passwords)
//! never appear in errors or `Debug` output.
//!
//! Sections: `[server]` ([`ServerConfig`]), `[storage]`
//! ([`StorageConfig`]), `[feed]` ([`FeedConfig`]), `[auth]`
//! ([`AuthConfig`]), `[kafka]` ([`KafkaConfig`]).

mod auth;
mod env;
mod error;
mod feed;
mod kafka;
mod load;
mod server;
mod storage;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use auth::{sha256, AuthConfig, AuthToken, Scope, Scopes, TokenSecret};
pub use error::ConfigError;
pub use feed::FeedConfig;
pub use kafka::{
    DeliveryMode, EventFormat, KafkaConfig, LibrdkafkaOptions, TerminalErrorPolicy, TopicTemplate,
};
pub use server::{CorsOrigins, ServerConfig};
pub use storage::{Durability, StorageConfig};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub feed: FeedConfig,
    pub auth: AuthConfig,
    pub kafka: KafkaConfig,
}

/// Values from command-line flags; they win over file and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen ADDR`: `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir DIR`: `storage.data_dir`.
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration: defaults, then `file`, then the `TIDEFEED_`
    /// variables among `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        load::load(file, env, overrides)
    }

    /// The defaults overlaid with the TOML `text`, without environment or
    /// flags: for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        load::layered(
            Some((Path::new("<string>"), text)),
            std::iter::empty(),
            &Overrides::default(),
        )
    }
}

impl Default for Config {
    fn default() -> Config {
        load::layered(None, std::iter::empty(), &Overrides::default())
            .expect("the embedded defaults are valid")
    }
}

/// A commented configuration file with every key at its default: the
/// embedded defaults themselves.
pub fn example_toml() -> &'static str {
    load::DEFAULTS
}

#[cfg(test)]
mod testing {
    //! Helpers shared by the sections' tests.

    use std::path::Path;

    use serde::de::{self, Deserialize, Deserializer, Visitor};

    use crate::{load, Config, ConfigError, Overrides};

    /// A table-driven case: a variable's key, its value, and a check of
    /// the section it produced.
    pub(crate) type Valid<T> = (&'static str, &'static str, fn(&T) -> bool);

    /// Defaults plus these environment variables.
    pub(crate) fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        load::layered(None, vars, &Overrides::default())
    }

    /// Defaults plus a file `tidefeed.toml` holding `text`.
    pub(crate) fn load_file(text: &str) -> Result<Config, ConfigError> {
        load::layered(
            Some((Path::new("tidefeed.toml"), text)),
            Vec::new(),
            &Overrides::default(),
        )
    }

    /// The message of the error one variable causes.
    pub(crate) fn env_error(var: &str, value: &str) -> String {
        match load_env(&[(var, value)]) {
            Ok(_) => panic!("{var}={value} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    /// The field names a `#[derive(Deserialize)]` struct accepts, read from
    /// what it asks its deserializer for.
    pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        let mut fields = Vec::new();
        let _ = T::deserialize(FieldRecorder(&mut fields));
        fields
    }

    struct FieldRecorder<'a>(&'a mut Vec<&'static str>);

    impl<'de> Deserializer<'de> for FieldRecorder<'_> {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(de::Error::custom("fields recorded"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
}
