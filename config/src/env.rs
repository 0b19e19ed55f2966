//! Environment overrides: `TIDEFEED_<SECTION>__<KEY>=value`.
//!
//! Every key of every section can be set this way; the variable's text is
//! read as the key's type:
//!
//! - booleans: `true` or `false`;
//! - whole numbers: decimal digits;
//! - sizes and durations: the same text as in the file (`64MiB`, `30s`);
//! - lists of strings: a TOML inline array (`["a:9092", "b:9092"]`) or
//!   comma-separated items (`a:9092,b:9092`, whitespace around items
//!   trimmed); the empty string is the empty list;
//! - `TIDEFEED_AUTH__TOKENS`: a TOML inline array of tables, as in the file;
//! - `TIDEFEED_KAFKA__LIBRDKAFKA`: a TOML inline table, merged key by key
//!   over the file's `[kafka.librdkafka]`.
//!
//! A variable that starts with `TIDEFEED_` and names no key is an error
//! (a typo must not be ignored), except `TIDEFEED_LOG`, the log filter.

use crate::error::REDACTED;
use crate::ConfigError;

const PREFIX: &str = "TIDEFEED_";

/// How a variable's text becomes the key's TOML value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnvKind {
    /// As is (also sizes and durations, which are parsed later).
    Text,
    Bool,
    /// A whole number, or a word such as `"broker"`.
    IntegerOrText,
    /// A whole number from 0 to 2^32 - 1 (larger ones are out of every
    /// integer key's range anyway).
    Integer,
    List,
    /// A TOML value; may hold secrets, so it is never quoted in errors.
    SecretToml,
}

/// Every key the loader accepts, by section. A test checks this against
/// the raw structs and the example file.
pub(crate) const KEYS: &[(&str, &[(&str, EnvKind)])] = {
    use EnvKind::*;
    &[
        (
            "server",
            &[
                ("listen", Text),
                ("allow_insecure", Bool),
                ("cors_allowed_origins", List),
                ("max_body_bytes", Text),
                ("request_timeout", Text),
                ("max_streams", Integer),
                ("keep_alive_interval", Text),
                ("shutdown_grace", Text),
                ("metrics_require_token", Bool),
                ("health_require_token", Bool),
            ],
        ),
        (
            "storage",
            &[
                ("data_dir", Text),
                ("durability", Text),
                ("async_sync_interval", Text),
                ("wal_segment_size", Text),
                ("memtable_size", Text),
                ("max_key_bytes", Text),
                ("max_row_bytes", Text),
                ("max_batch_bytes", Text),
            ],
        ),
        (
            "feed",
            &[
                ("retention", Text),
                ("history_bytes", Text),
                ("max_retention_bytes", Text),
                ("resolved_interval", Text),
                ("max_event_bytes", Text),
                ("consumer_idle_expiry", Text),
            ],
        ),
        ("auth", &[("tokens", SecretToml)]),
        (
            "kafka",
            &[
                ("enabled", Bool),
                ("brokers", List),
                ("topic_prefix", Text),
                ("topic", Text),
                ("format", Text),
                ("tombstones", Bool),
                ("mode", Text),
                ("create_topics", Bool),
                ("topic_partitions", IntegerOrText),
                ("topic_replication_factor", IntegerOrText),
                ("on_terminal_error", Text),
                ("dead_letter_topic", Text),
                ("max_in_flight_bytes", Text),
                ("librdkafka", SecretToml),
            ],
        ),
    ]
};

/// The `TIDEFEED_` variables among `vars`, as a table of sections.
pub(crate) fn overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut table = toml::Table::new();
    for (name, text) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if rest == "LOG" {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let found = lower.split_once("__").and_then(|(section, key)| {
            let (section, keys) = KEYS.iter().find(|(s, _)| *s == section)?;
            let (key, kind) = keys.iter().find(|(k, _)| *k == key)?;
            Some((*section, *key, *kind))
        });
        let Some((section, key, kind)) = found else {
            return Err(ConfigError::UnknownEnv { name });
        };
        let value = value_of(&text, kind).map_err(|reason| ConfigError::Env {
            field: format!("{section}.{key}"),
            value: if kind == EnvKind::SecretToml {
                REDACTED.to_owned()
            } else {
                text.clone()
            },
            name: name.clone(),
            reason,
        })?;
        let toml::Value::Table(section) = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        else {
            unreachable!("only sections are inserted at the top level")
        };
        section.insert(key.to_owned(), value);
    }
    Ok(table)
}

fn value_of(text: &str, kind: EnvKind) -> Result<toml::Value, String> {
    match kind {
        EnvKind::Text => Ok(toml::Value::String(text.to_owned())),
        EnvKind::Bool => match text {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err("expected true or false".to_owned()),
        },
        EnvKind::Integer => text
            .parse::<u32>()
            .map(|n| toml::Value::Integer(n.into()))
            .map_err(|_| "expected a whole number".to_owned()),
        EnvKind::IntegerOrText => Ok(text
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(text.to_owned()))),
        EnvKind::List => list(text),
        EnvKind::SecretToml => toml_value(text),
    }
}

fn list(text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    if text.starts_with('[') {
        return match toml_value(text)? {
            array @ toml::Value::Array(_) => Ok(array),
            _ => Err(
                "expected a TOML array such as [\"a\", \"b\"] or comma-separated items".to_owned(),
            ),
        };
    }
    if text.is_empty() {
        return Ok(toml::Value::Array(Vec::new()));
    }
    text.split(',')
        .map(|item| match item.trim() {
            "" => Err("has an empty item between commas".to_owned()),
            item => Ok(toml::Value::String(item.to_owned())),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(toml::Value::Array)
}

/// One TOML value (an inline array or table, a string, ...). The parser's
/// message is kept, never its rendering of the input.
fn toml_value(text: &str) -> Result<toml::Value, String> {
    let mut table = format!("value = {text}")
        .parse::<toml::Table>()
        .map_err(|error| format!("not a TOML value: {}", error.message()))?;
    match (table.remove("value"), table.is_empty()) {
        (Some(value), true) => Ok(value),
        _ => Err("not a single TOML value".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{env_error, load_env};

    #[test]
    fn lists_are_comma_separated_or_toml_arrays() {
        let array = |items: &[&str]| {
            toml::Value::Array(
                items
                    .iter()
                    .map(|s| toml::Value::String((*s).into()))
                    .collect(),
            )
        };
        assert_eq!(list("a:1, b:2 ,c:3"), Ok(array(&["a:1", "b:2", "c:3"])));
        assert_eq!(list(" [\"a,1\", 'b'] "), Ok(array(&["a,1", "b"])));
        assert_eq!(list(""), Ok(array(&[])));
        assert_eq!(list("[]"), Ok(array(&[])));
        assert_eq!(list("single"), Ok(array(&["single"])));
        assert!(list("a,,b").unwrap_err().contains("empty item"));
        assert!(list("a,").is_err());
        assert!(list("[\"a\"").is_err());
        assert!(list("[1] \nother = 2").is_err());
    }

    #[test]
    fn scalar_variables_parse_as_their_key_type() {
        for (var, value, reason) in [
            ("TIDEFEED_SERVER__ALLOW_INSECURE", "yes", "true or false"),
            ("TIDEFEED_SERVER__ALLOW_INSECURE", "TRUE", "true or false"),
            ("TIDEFEED_KAFKA__TOMBSTONES", "1", "true or false"),
            ("TIDEFEED_SERVER__MAX_STREAMS", "10k", "whole number"),
            ("TIDEFEED_KAFKA__BROKERS", "a,,b", "empty item"),
            ("TIDEFEED_KAFKA__BROKERS", "[1", "TOML"),
        ] {
            let message = env_error(var, value);
            assert!(
                message.contains(var) && message.contains(value) && message.contains(reason),
                "{message}"
            );
        }
        let config = load_env(&[
            ("TIDEFEED_SERVER__MAX_STREAMS", "7"),
            ("TIDEFEED_SERVER__HEALTH_REQUIRE_TOKEN", "true"),
            ("TIDEFEED_KAFKA__BROKERS", "a:1,b:2"),
            ("TIDEFEED_KAFKA__TOPIC_PARTITIONS", "broker"),
        ])
        .unwrap();
        assert_eq!(config.server.max_streams, 7);
        assert!(config.server.health_require_token);
        assert_eq!(config.kafka.brokers, ["a:1", "b:2"]);
    }

    #[test]
    fn unknown_variables_are_errors_except_the_log_filter() {
        for name in [
            "TIDEFEED_STORAGE__DURABILTY",
            "TIDEFEED_STORAGE_DURABILITY",
            "TIDEFEED_NOPE__LISTEN",
            "TIDEFEED_SERVER",
            "TIDEFEED_KAFKA__LIBRDKAFKA__LINGER_MS",
        ] {
            let error = load_env(&[(name, "x")]).unwrap_err();
            assert!(
                matches!(&error, ConfigError::UnknownEnv { name: n } if n == name),
                "{error}"
            );
        }
        assert!(load_env(&[("TIDEFEED_LOG", "debug")]).is_ok());
        assert!(load_env(&[("tidefeed_server__listen", "not ours"), ("OTHER", "x")]).is_ok());
        // Names are case-insensitive after the prefix.
        let config = load_env(&[("TIDEFEED_server__Max_Streams", "9")]).unwrap();
        assert_eq!(config.server.max_streams, 9);
    }

    #[test]
    fn secret_values_are_never_quoted() {
        for (var, value) in [
            ("TIDEFEED_AUTH__TOKENS", "[{ token = \"hunter2\" "),
            ("TIDEFEED_AUTH__TOKENS", "hunter2"),
            (
                "TIDEFEED_AUTH__TOKENS",
                "{ token = \"hunter2\", scopes = [\"read\"] }",
            ),
            ("TIDEFEED_KAFKA__LIBRDKAFKA", "sasl.password=hunter2"),
            (
                "TIDEFEED_KAFKA__LIBRDKAFKA",
                "{ \"sasl.password\" = [\"hunter2\"] }",
            ),
        ] {
            let error = load_env(&[(var, value)]).unwrap_err();
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
        }
    }
}
