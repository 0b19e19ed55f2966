//! tidefeed's configuration: typed values, embedded defaults, loading and
//! validation.
//!
//! Precedence, lowest first: embedded defaults, the TOML file
//! (`--config FILE`), environment variables `TIDEFEED_<SECTION>__<KEY>`,
//! command-line flags ([`Overrides`]). Raw `serde` structs reject unknown
//! keys; one validation step turns them into [`Config`], and every error
//! names the field. Nothing is silently corrected.
//!
//! Sections available: `[server]`, `[storage]`, `[feed]`. Sections of
//! features that have not landed yet (`[auth]`, `[kafka]`) are rejected as
//! unknown rather than accepted and ignored.

mod error;
mod load;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use error::ConfigError;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub feed: FeedConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// How long change history is kept; `None` keeps it until a durable
    /// consumer's acks and the retention cap allow otherwise.
    pub retention: Option<Duration>,
    /// Retained table bytes past which the durable consumer holding the
    /// oldest history is invalidated.
    pub max_retention_bytes: u64,
    /// How often live streams emit resolved watermarks.
    pub resolved_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub wal_segment_bytes: u64,
    pub memtable_bytes: usize,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After fdatasync.
    Sync,
    /// After write(2), with fdatasync at least every `interval`.
    Async { interval: Duration },
}

/// Values from command-line flags; they win over file and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration: defaults, then `file`, then the `TIDEFEED_`
    /// variables among `env`, then `overrides`.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        load::load(file, env, overrides)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::load(None, std::iter::empty(), &Overrides::default())
            .expect("the embedded defaults are valid")
    }
}

/// A commented configuration file with every key at its default.
pub fn example_toml() -> &'static str {
    include_str!("example.toml")
}
