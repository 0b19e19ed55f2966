//! Layering (defaults < file < environment < flags), deserialization into
//! the raw sections, and validation of the whole.

use std::path::Path;

use serde::Deserialize;

use crate::auth::RawAuth;
use crate::feed::RawFeed;
use crate::kafka::RawKafka;
use crate::server::{check_listen_security, RawServer};
use crate::storage::RawStorage;
use crate::{env, Config, ConfigError, Overrides};

/// The embedded defaults: the commented example file.
pub(crate) const DEFAULTS: &str = include_str!("../tidefeed.example.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    server: RawServer,
    storage: RawStorage,
    feed: RawFeed,
    auth: RawAuth,
    kafka: RawKafka,
}

impl RawConfig {
    fn validate(self, overrides: &Overrides) -> Result<Config, ConfigError> {
        let server = self.server.validate(overrides.listen)?;
        let storage = self.storage.validate(overrides.data_dir.clone())?;
        let feed = self.feed.validate()?;
        let auth = self.auth.validate()?;
        let kafka = self.kafka.validate()?;
        check_listen_security(server.listen, auth.is_enabled(), server.allow_insecure)?;
        Ok(Config {
            server,
            storage,
            feed,
            auth,
            kafka,
        })
    }
}

pub(crate) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let text = match file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_owned(),
                error,
            })?,
        ),
    };
    layered(file.zip(text.as_deref()), env, overrides)
}

/// Defaults, then `file` (its path and text), then `env`, then `overrides`.
pub(crate) fn layered(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut table = parse_table(DEFAULTS, Path::new("<embedded defaults>"))?;
    if let Some((path, text)) = file {
        overlay(&mut table, parse_table(text, path)?);
        // Checked before the environment applies, so that an unknown key or
        // a wrongly typed value is reported against the file.
        deserialize(table.clone(), Some(path.display().to_string()))?;
    }
    overlay(&mut table, env::overrides(env)?);
    deserialize(table, None)?.validate(overrides)
}

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: error.message().to_owned(),
        }
    })
}

/// Overlays `upper` onto `lower`, section by section, key by key. Tables
/// merge (so `[kafka.librdkafka]` options add up); any other value,
/// arrays included, replaces the lower one.
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
    RawConfig::deserialize(table).map_err(|error| ConfigError::Schema { origin, error })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::testing::{fields_of, load_env, load_file};
    use crate::Durability;

    #[test]
    fn the_example_file_is_the_defaults() {
        assert_eq!(load_file(crate::example_toml()).unwrap(), Config::default());
        assert_eq!(
            Config::from_toml(crate::example_toml()).unwrap(),
            Config::default()
        );
    }

    /// Every key the raw structs accept is in the environment table and in
    /// the example file, with a comment above it, and nothing else is.
    #[test]
    fn every_accepted_key_is_documented_in_the_example() {
        let example: toml::Table = DEFAULTS.parse().unwrap();
        let sections = fields_of::<RawConfig>();
        assert_eq!(sections, ["server", "storage", "feed", "auth", "kafka"]);
        assert_eq!(
            example.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            sections.iter().copied().collect::<BTreeSet<_>>()
        );
        for section in sections {
            let accepted: BTreeSet<&str> = match section {
                "server" => fields_of::<RawServer>(),
                "storage" => fields_of::<RawStorage>(),
                "feed" => fields_of::<RawFeed>(),
                "auth" => fields_of::<RawAuth>(),
                "kafka" => fields_of::<RawKafka>(),
                other => panic!("untested section {other}"),
            }
            .into_iter()
            .collect();
            let in_env: BTreeSet<&str> = env::KEYS
                .iter()
                .find(|(s, _)| *s == section)
                .map(|(_, keys)| keys.iter().map(|(k, _)| *k).collect())
                .unwrap_or_default();
            let in_example: BTreeSet<&str> = example[section]
                .as_table()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(accepted, in_env, "[{section}] keys vs. environment keys");
            assert_eq!(
                accepted, in_example,
                "[{section}] keys vs. the example file"
            );
        }
        let mut previous = "";
        for line in DEFAULTS.lines() {
            let is_key = line.split_once(" = ").is_some_and(|(key, _)| {
                !key.starts_with('#') && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            if is_key {
                assert!(previous.starts_with('#'), "no comment above {line:?}");
            }
            previous = line;
        }
    }

    /// The ranges the example file states are the ones the code checks.
    #[test]
    fn the_example_states_each_range_as_validated() {
        use std::ops::RangeInclusive;

        use crate::units::{format_duration, format_size};
        use crate::{feed, kafka, server, storage};

        let sizes = |r: RangeInclusive<u64>| {
            format!("{} to {}", format_size(*r.start()), format_size(*r.end()))
        };
        let durations = |r: RangeInclusive<Duration>| {
            format!(
                "{} to {}",
                format_duration(*r.start()),
                format_duration(*r.end())
            )
        };
        let counts = |r: RangeInclusive<u64>| format!("{} to {}", r.start(), r.end());
        let cases = [
            ("max_body_bytes", sizes(server::MAX_BODY_BYTES)),
            ("request_timeout", durations(server::REQUEST_TIMEOUT)),
            ("max_streams", counts(server::MAX_STREAMS)),
            (
                "keep_alive_interval",
                durations(server::KEEP_ALIVE_INTERVAL),
            ),
            ("shutdown_grace", durations(server::SHUTDOWN_GRACE)),
            (
                "async_sync_interval",
                durations(storage::ASYNC_SYNC_INTERVAL),
            ),
            ("wal_segment_size", sizes(storage::WAL_SEGMENT_SIZE)),
            ("memtable_size", sizes(storage::MEMTABLE_SIZE)),
            ("max_key_bytes", sizes(storage::MAX_KEY_BYTES)),
            ("max_row_bytes", sizes(storage::MAX_ROW_BYTES)),
            ("max_batch_bytes", sizes(storage::MAX_BATCH_BYTES)),
            ("retention", durations(feed::RETENTION)),
            ("history_bytes", sizes(feed::HISTORY_BYTES)),
            ("max_retention_bytes", sizes(feed::MAX_RETENTION_BYTES)),
            ("resolved_interval", durations(feed::RESOLVED_INTERVAL)),
            ("max_event_bytes", sizes(feed::MAX_EVENT_BYTES)),
            (
                "consumer_idle_expiry",
                durations(feed::CONSUMER_IDLE_EXPIRY),
            ),
            ("topic_partitions", counts(kafka::TOPIC_PARTITIONS)),
            (
                "topic_replication_factor",
                counts(kafka::TOPIC_REPLICATION_FACTOR),
            ),
            ("max_in_flight_bytes", sizes(kafka::MAX_IN_FLIGHT_BYTES)),
        ];
        let lines: Vec<&str> = DEFAULTS.lines().collect();
        for (key, range) in cases {
            let at = lines
                .iter()
                .position(|line| line.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} is not in the example"));
            assert!(
                lines[at - 1].contains(&format!("{range})"))
                    || lines[at - 1].contains(&format!("{range},")),
                "the comment above {key} should state the range {range}: {:?}",
                lines[at - 1]
            );
        }
    }

    #[test]
    fn defaults_lt_file_lt_env_lt_flags() {
        let file = "[storage]\ndata_dir = \"/from/file\"\ndurability = \"async\"\nasync_sync_interval = \"5ms\"\n\
                    [server]\nlisten = \"127.0.0.1:1\"\nmax_streams = 5\n[feed]\nretention = \"2h\"\n";
        let path = Path::new("tidefeed.toml");
        let none = Overrides::default();
        let config = layered(Some((path, file)), Vec::new(), &none).unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("/from/file"));
        assert_eq!(
            config.storage.durability,
            Durability::Async {
                interval: Duration::from_millis(5)
            }
        );
        assert_eq!(config.server.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(config.server.max_streams, 5);
        assert_eq!(config.feed.retention, Some(Duration::from_secs(7200)));
        // Keys the file leaves out keep their defaults.
        assert_eq!(config.storage.memtable_bytes, 64 << 20);

        let vars = || {
            vec![
                (
                    "TIDEFEED_STORAGE__DATA_DIR".to_owned(),
                    "/from/env".to_owned(),
                ),
                (
                    "TIDEFEED_SERVER__LISTEN".to_owned(),
                    "127.0.0.1:2".to_owned(),
                ),
                ("TIDEFEED_SERVER__MAX_STREAMS".to_owned(), "6".to_owned()),
            ]
        };
        let config = layered(Some((path, file)), vars(), &none).unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.server.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(config.server.max_streams, 6);
        assert_eq!(config.feed.retention, Some(Duration::from_secs(7200)));

        let flags = Overrides {
            listen: Some("127.0.0.1:3".parse().unwrap()),
            data_dir: Some("/from/flag".into()),
        };
        let config = layered(Some((path, file)), vars(), &flags).unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.server.listen, "127.0.0.1:3".parse().unwrap());
        assert_eq!(config.server.max_streams, 6);

        // A flag wins over an invalid value below it, and is itself checked
        // by the insecure-listen rule.
        let config = layered(
            None,
            [("TIDEFEED_SERVER__LISTEN".to_owned(), "nowhere".to_owned())],
            &flags,
        );
        assert_eq!(
            config.unwrap().server.listen,
            "127.0.0.1:3".parse().unwrap()
        );
        let public = Overrides {
            listen: Some("0.0.0.0:7070".parse().unwrap()),
            data_dir: None,
        };
        let error = layered(None, Vec::new(), &public).unwrap_err();
        assert!(
            matches!(error, ConfigError::InsecureListen { .. }),
            "{error}"
        );
    }

    #[test]
    fn arrays_are_replaced_and_passthrough_tables_merge_across_layers() {
        let file = "[kafka]\nbrokers = [\"a:1\", \"b:2\"]\n[kafka.librdkafka]\nlinger.ms = 5\n\"client.id\" = \"file\"\n";
        let vars = vec![
            ("TIDEFEED_KAFKA__BROKERS".to_owned(), "c:3".to_owned()),
            (
                "TIDEFEED_KAFKA__LIBRDKAFKA".to_owned(),
                "{ \"client.id\" = \"env\" }".to_owned(),
            ),
        ];
        let kafka = layered(
            Some((Path::new("f.toml"), file)),
            vars,
            &Overrides::default(),
        )
        .unwrap()
        .kafka;
        assert_eq!(kafka.brokers, ["c:3"]);
        assert_eq!(kafka.librdkafka.get("linger.ms"), Some("5"));
        assert_eq!(kafka.librdkafka.get("client.id"), Some("env"));
    }

    #[test]
    fn unknown_keys_and_sections_are_rejected_by_name_and_file() {
        for (text, name) in [
            ("[storage]\ndurabilty = \"sync\"\n", "durabilty"),
            ("[metrics]\nenabled = true\n", "metrics"),
            ("listen = \"127.0.0.1:7070\"\n", "listen"),
            ("[kafka]\nbroker = \"a:1\"\n", "broker"),
        ] {
            let error = load_file(text).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, ConfigError::Schema { .. })
                    && message.contains(name)
                    && message.contains("tidefeed.toml"),
                "{message}"
            );
        }
    }

    #[test]
    fn unreadable_and_malformed_files_name_the_path_and_position() {
        let error = load(
            Some(Path::new("/nonexistent/tidefeed.toml")),
            Vec::new(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::Read { .. })
                && error.to_string().contains("/nonexistent/tidefeed.toml"),
            "{error}"
        );
        let error = load_file("[server]\nlisten = \"127.0.0.1:7070\"\n[storage\n").unwrap_err();
        assert!(
            matches!(error, ConfigError::Parse { line: 3, .. })
                && error.to_string().contains("tidefeed.toml"),
            "{error:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("real.toml");
        std::fs::write(&path, "[feed]\nretention = \"forever\"\n").unwrap();
        let config = load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config.feed.retention, None);
    }

    #[test]
    fn every_section_validates_even_when_its_feature_is_off() {
        // The connector is disabled by default, yet a bad [kafka] value is
        // reported now rather than on the day it is enabled.
        let error = load_env(&[("TIDEFEED_KAFKA__FORMAT", "avro")]).unwrap_err();
        assert_eq!(error.field(), Some("kafka.format"));
    }
}
