//! Raw configuration (as written) and its validation into [`Config`].

use std::path::Path;

use serde::Deserialize;

use crate::units::{parse_bytes, parse_duration};
use crate::{Config, ConfigError, Durability, FeedConfig, Overrides, ServerConfig, StorageConfig};

const ENV_PREFIX: &str = "TIDEFEED_";
const DEFAULTS: &str = include_str!("example.toml");
const MIN_SIZE: u64 = 64 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    feed: RawFeed,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    retention: Option<String>,
    max_retention_bytes: Option<SizeValue>,
    resolved_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<String>,
    durability: Option<String>,
    async_sync_interval: Option<String>,
    wal_segment_size: Option<SizeValue>,
    memtable_size: Option<SizeValue>,
}

/// A size written as a string with a unit or as a plain integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Keys each section accepts from the environment.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("server", &["listen"]),
    (
        "storage",
        &[
            "data_dir",
            "durability",
            "async_sync_interval",
            "wal_segment_size",
            "memtable_size",
        ],
    ),
    (
        "feed",
        &["retention", "max_retention_bytes", "resolved_interval"],
    ),
];

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// Overlays `upper` onto `lower`, section by section, key by key.
fn overlay(lower: &mut toml::Table, upper: toml::Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(lower)), toml::Value::Table(upper)) => overlay(lower, upper),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

fn deserialize(table: toml::Table, origin: Option<String>) -> Result<RawConfig, ConfigError> {
    RawConfig::deserialize(table).map_err(|source| ConfigError::Schema { origin, source })
}

pub(crate) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut table = parse_table(DEFAULTS, Path::new("<embedded defaults>"))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let from_file = parse_table(&text, path)?;
        // Checked on its own first, so an unknown key is reported against the file.
        deserialize(from_file.clone(), Some(path.display().to_string()))?;
        overlay(&mut table, from_file);
    }

    let mut from_env = toml::Table::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest == "LOG" {
            // TIDEFEED_LOG is the log filter, read by the binary.
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let known = lower.split_once("__").and_then(|(section, key)| {
            ENV_KEYS
                .iter()
                .find(|(s, keys)| *s == section && keys.contains(&key))
                .map(|_| (section.to_owned(), key.to_owned()))
        });
        let Some((section, key)) = known else {
            return Err(ConfigError::UnknownEnv { name });
        };
        let section = from_env
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section) = section else {
            unreachable!("sections are tables")
        };
        section.insert(key, toml::Value::String(value));
    }
    overlay(&mut table, from_env);

    let raw = deserialize(table, None)?;
    validate(raw, overrides)
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn size(field: &'static str, value: Option<SizeValue>) -> Result<u64, ConfigError> {
    let (bytes, text) = match value.expect("defaults supply every key") {
        SizeValue::Bytes(n) => (n, n.to_string()),
        SizeValue::Text(text) => (
            parse_bytes(&text).map_err(|e| invalid(field, &text, e))?,
            text,
        ),
    };
    if bytes < MIN_SIZE {
        return Err(invalid(field, &text, "must be at least 64KiB"));
    }
    Ok(bytes)
}

fn validate(raw: RawConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
    let listen_text = raw.server.listen.expect("defaults supply every key");
    let listen = match overrides.listen {
        Some(addr) => addr,
        None => listen_text.parse().map_err(|e| {
            invalid(
                "server.listen",
                &listen_text,
                format!("not a socket address: {e}"),
            )
        })?,
    };

    let storage = raw.storage;
    let data_dir = match &overrides.data_dir {
        Some(dir) => dir.clone(),
        None => storage.data_dir.expect("defaults supply every key").into(),
    };
    if data_dir.as_os_str().is_empty() {
        return Err(invalid("storage.data_dir", "", "must not be empty"));
    }
    let interval_text = storage
        .async_sync_interval
        .expect("defaults supply every key");
    let interval = parse_duration(&interval_text)
        .map_err(|e| invalid("storage.async_sync_interval", &interval_text, e))?;
    if interval.is_zero() || interval > std::time::Duration::from_secs(60) {
        return Err(invalid(
            "storage.async_sync_interval",
            &interval_text,
            "must be between 1ms and 60s",
        ));
    }
    let durability_text = storage.durability.expect("defaults supply every key");
    let durability = match durability_text.as_str() {
        "sync" => Durability::Sync,
        "async" => Durability::Async { interval },
        _ => {
            return Err(invalid(
                "storage.durability",
                &durability_text,
                "expected \"sync\" or \"async\"",
            ))
        }
    };
    let feed = raw.feed;
    let retention_text = feed.retention.expect("defaults supply every key");
    let retention = match retention_text.as_str() {
        "forever" => None,
        text => Some(
            parse_duration(text)
                .map_err(|e| invalid("feed.retention", text, format!("{e}, or \"forever\"")))?,
        ),
    };
    let max_retention_bytes = size("feed.max_retention_bytes", feed.max_retention_bytes)?;
    let resolved_text = feed.resolved_interval.expect("defaults supply every key");
    let resolved_interval = parse_duration(&resolved_text)
        .map_err(|e| invalid("feed.resolved_interval", &resolved_text, e))?;
    if resolved_interval.is_zero() {
        return Err(invalid(
            "feed.resolved_interval",
            &resolved_text,
            "must be at least 1ms",
        ));
    }
    let wal_segment_bytes = size("storage.wal_segment_size", storage.wal_segment_size)?;
    let memtable_bytes = size("storage.memtable_size", storage.memtable_size)?;
    Ok(Config {
        server: ServerConfig { listen },
        storage: StorageConfig {
            data_dir,
            durability,
            wal_segment_bytes,
            memtable_bytes: usize::try_from(memtable_bytes).map_err(|_| {
                invalid(
                    "storage.memtable_size",
                    &memtable_bytes.to_string(),
                    "too large",
                )
            })?,
        },
        feed: FeedConfig {
            retention,
            max_retention_bytes,
            resolved_interval,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_with(
        file: Option<&str>,
        vars: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidefeed.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        load(file.map(|_| path.as_path()), env(vars), overrides)
    }

    fn field_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other}"),
        }
    }

    #[test]
    fn defaults_match_the_design_contract() {
        let config = Config::default();
        assert_eq!(config.server.listen, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(
            config.storage.data_dir,
            std::path::PathBuf::from("./tidefeed-data")
        );
        assert_eq!(config.storage.durability, Durability::Sync);
        assert_eq!(config.storage.wal_segment_bytes, 64 << 20);
        assert_eq!(config.storage.memtable_bytes, 64 << 20);
        assert_eq!(
            config.feed.retention,
            Some(std::time::Duration::from_secs(24 * 3600))
        );
        assert_eq!(config.feed.max_retention_bytes, 64 << 30);
        assert_eq!(
            config.feed.resolved_interval,
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn every_feed_knob_changes_the_result() {
        let vars = [
            ("TIDEFEED_FEED__RETENTION", "forever"),
            ("TIDEFEED_FEED__MAX_RETENTION_BYTES", "1GiB"),
            ("TIDEFEED_FEED__RESOLVED_INTERVAL", "250ms"),
        ];
        let feed = load_with(None, &vars, &Overrides::default()).unwrap().feed;
        assert_eq!(feed.retention, None);
        assert_eq!(feed.max_retention_bytes, 1 << 30);
        assert_eq!(feed.resolved_interval, Duration::from_millis(250));
        let feed = load_with(
            Some("[feed]\nretention = \"2h\"\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap()
        .feed;
        assert_eq!(feed.retention, Some(Duration::from_secs(7200)));
        for (var, value, field) in [
            ("TIDEFEED_FEED__RETENTION", "always", "feed.retention"),
            (
                "TIDEFEED_FEED__RESOLVED_INTERVAL",
                "0s",
                "feed.resolved_interval",
            ),
            (
                "TIDEFEED_FEED__MAX_RETENTION_BYTES",
                "lots",
                "feed.max_retention_bytes",
            ),
        ] {
            assert_eq!(
                field_of(load_with(None, &[(var, value)], &Overrides::default()).unwrap_err()),
                field
            );
        }
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        assert_eq!(
            load_with(Some(crate::example_toml()), &[], &Overrides::default()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn file_then_env_then_flags_take_precedence() {
        let file = "[storage]\ndata_dir = \"/from/file\"\ndurability = \"async\"\nasync_sync_interval = \"5ms\"\n[server]\nlisten = \"127.0.0.1:1\"\n";
        let config = load_with(Some(file), &[], &Overrides::default()).unwrap();
        assert_eq!(
            config.storage.data_dir,
            std::path::PathBuf::from("/from/file")
        );
        assert_eq!(
            config.storage.durability,
            Durability::Async {
                interval: Duration::from_millis(5)
            }
        );
        assert_eq!(config.server.listen, "127.0.0.1:1".parse().unwrap());

        let vars = [
            ("TIDEFEED_STORAGE__DATA_DIR", "/from/env"),
            ("TIDEFEED_SERVER__LISTEN", "127.0.0.1:2"),
        ];
        let config = load_with(Some(file), &vars, &Overrides::default()).unwrap();
        assert_eq!(
            config.storage.data_dir,
            std::path::PathBuf::from("/from/env")
        );
        assert_eq!(config.server.listen, "127.0.0.1:2".parse().unwrap());

        let flags = Overrides {
            listen: Some("127.0.0.1:3".parse().unwrap()),
            data_dir: Some("/from/flag".into()),
        };
        let config = load_with(Some(file), &vars, &flags).unwrap();
        assert_eq!(
            config.storage.data_dir,
            std::path::PathBuf::from("/from/flag")
        );
        assert_eq!(config.server.listen, "127.0.0.1:3".parse().unwrap());
    }

    #[test]
    fn every_storage_knob_changes_the_result() {
        let vars = [
            ("TIDEFEED_STORAGE__DURABILITY", "async"),
            ("TIDEFEED_STORAGE__ASYNC_SYNC_INTERVAL", "2s"),
            ("TIDEFEED_STORAGE__WAL_SEGMENT_SIZE", "1MiB"),
            ("tidefeed_storage__memtable_size", "ignored: not our prefix"),
            ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "512KiB"),
        ];
        let storage = load_with(None, &vars, &Overrides::default())
            .unwrap()
            .storage;
        assert_eq!(
            storage.durability,
            Durability::Async {
                interval: Duration::from_secs(2)
            }
        );
        assert_eq!(storage.wal_segment_bytes, 1 << 20);
        assert_eq!(storage.memtable_bytes, 512 << 10);
        let storage = load_with(
            Some("[storage]\nwal_segment_size = 131072\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap()
        .storage;
        assert_eq!(storage.wal_segment_bytes, 131_072);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let none = Overrides::default();
        let cases: &[(&str, &str, &str)] = &[
            (
                "TIDEFEED_STORAGE__DURABILITY",
                "sometimes",
                "storage.durability",
            ),
            (
                "TIDEFEED_STORAGE__ASYNC_SYNC_INTERVAL",
                "0ms",
                "storage.async_sync_interval",
            ),
            (
                "TIDEFEED_STORAGE__ASYNC_SYNC_INTERVAL",
                "soon",
                "storage.async_sync_interval",
            ),
            (
                "TIDEFEED_STORAGE__WAL_SEGMENT_SIZE",
                "1KiB",
                "storage.wal_segment_size",
            ),
            (
                "TIDEFEED_STORAGE__MEMTABLE_SIZE",
                "64MB",
                "storage.memtable_size",
            ),
            ("TIDEFEED_SERVER__LISTEN", "localhost", "server.listen"),
            ("TIDEFEED_STORAGE__DATA_DIR", "", "storage.data_dir"),
        ];
        for (var, value, field) in cases {
            let err = load_with(None, &[(var, value)], &none).unwrap_err();
            let message = err.to_string();
            assert_eq!(field_of(err), *field, "{var}={value}");
            assert!(
                message.contains(field) && message.contains(value),
                "{message}"
            );
        }
    }

    #[test]
    fn unknown_keys_sections_and_variables_are_rejected_by_name() {
        let none = Overrides::default();
        let err = load_with(Some("[storage]\ndurabilty = \"sync\"\n"), &[], &none).unwrap_err();
        assert!(
            matches!(err, ConfigError::Schema { .. }) && err.to_string().contains("durabilty"),
            "{err}"
        );
        let err = load_with(Some("[kafka]\nenabled = true\n"), &[], &none).unwrap_err();
        assert!(err.to_string().contains("kafka"), "{err}");
        let err = load_with(Some("[auth]\ntokens = []\n"), &[], &none).unwrap_err();
        assert!(err.to_string().contains("auth"), "{err}");
        let err = load_with(None, &[("TIDEFEED_STORAGE__DURABILTY", "sync")], &none).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownEnv { name } if name == "TIDEFEED_STORAGE__DURABILTY"),
            "{err}"
        );
        let err = load_with(None, &[("TIDEFEED_KAFKA__ENABLED", "true")], &none).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownEnv { .. }));
        assert!(load_with(None, &[("TIDEFEED_LOG", "debug")], &none).is_ok());
    }

    #[test]
    fn unreadable_and_malformed_files_name_the_path() {
        let err = load(
            Some(Path::new("/nonexistent/tidefeed.toml")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Read { .. })
                && err.to_string().contains("/nonexistent/tidefeed.toml")
        );
        let err = load_with(Some("[storage\n"), &[], &Overrides::default()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse { .. }) && err.to_string().contains("tidefeed.toml"),
            "{err}"
        );
    }
}
