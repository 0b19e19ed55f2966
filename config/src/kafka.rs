//! `[kafka]`: the Kafka connector: where changes go, in which format, with
//! which guarantee, and what happens to an event Kafka refuses.
//!
//! `[kafka.librdkafka]` passes options straight to librdkafka. An option
//! that the connector sets itself from a typed key (the brokers, the
//! idempotent producer, transactions, its buffer bound) is rejected with an
//! error naming both, rather than silently winning or losing.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use serde::Deserialize;

use crate::error::REDACTED;
use crate::units::{choice, count_in, invalid, memory_size_in, RawSize, GIB, MIB};
use crate::ConfigError;

/// The validated `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Run the connector.
    pub enabled: bool,
    /// Bootstrap brokers, `host:port` each (non-empty when `enabled`).
    pub brokers: Vec<String>,
    /// The `{prefix}` of topic names.
    pub topic_prefix: String,
    /// Which topic a table's changes go to.
    pub topic: TopicTemplate,
    pub format: EventFormat,
    /// A null-value record follows each delete, so compacted topics drop
    /// the key.
    pub tombstones: bool,
    pub mode: DeliveryMode,
    /// Create missing topics (with `topic_partitions` and
    /// `topic_replication_factor`); `false` leaves them to the broker.
    pub create_topics: bool,
    /// Partitions of created topics; `None`: the broker's default.
    pub topic_partitions: Option<u32>,
    /// Replication factor of created topics; `None`: the broker's default.
    pub topic_replication_factor: Option<u16>,
    pub on_terminal_error: TerminalErrorPolicy,
    /// Bytes of records handed to the producer and not yet confirmed; the
    /// connector waits (backpressure) rather than buffer more.
    pub max_in_flight_bytes: usize,
    /// `[kafka.librdkafka]`, values rendered as strings.
    pub librdkafka: LibrdkafkaOptions,
}

/// A topic name template: `{table}` is replaced by the table's name
/// (`{prefix}` has already been replaced by `topic_prefix`). Without
/// `{table}`, every table's changes go to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(String);

impl TopicTemplate {
    /// The topic of `table`'s changes.
    pub fn topic_for(&self, table: &str) -> String {
        self.0.replace("{table}", table)
    }

    /// The one topic every table goes to, if the template has no `{table}`.
    pub fn single_topic(&self) -> Option<&str> {
        (!self.0.contains("{table}")).then_some(self.0.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The encoding of record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// tidefeed's native event JSON.
    Native,
    /// The Debezium envelope.
    Debezium,
}

/// The connector's guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Idempotent producer; the position advances over confirmed deliveries
    /// only. A crash can re-send the unconfirmed tail.
    AtLeastOnce,
    /// Kafka transactions, with the position committed in the same
    /// transaction as the records.
    ExactlyOnce,
}

/// What the connector does with an event Kafka refuses for good (too
/// large, not authorized, unknown topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalErrorPolicy {
    /// Stop the connector (its position holds, nothing is skipped) and
    /// report the error in status, metrics and the log.
    Stop,
    /// Send the event key-only to this topic, count it, and go on.
    DeadLetter { topic: String },
}

/// `[kafka.librdkafka]` options, each value as librdkafka takes it (a
/// string). `Debug` hides the values of options that may hold secrets
/// (passwords, keys, OAuth configuration).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LibrdkafkaOptions(BTreeMap<String, String>);

impl LibrdkafkaOptions {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for LibrdkafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                (
                    k,
                    if is_sensitive(k) {
                        REDACTED
                    } else {
                        v.as_str()
                    },
                )
            }))
            .finish()
    }
}

/// Options whose values may be secrets.
fn is_sensitive(key: &str) -> bool {
    [
        "password",
        "secret",
        "pem",
        "oauthbearer.config",
        "jaas",
        "key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKafka {
    enabled: bool,
    brokers: Vec<String>,
    topic_prefix: String,
    topic: String,
    format: String,
    tombstones: bool,
    mode: String,
    create_topics: bool,
    topic_partitions: RawCount,
    topic_replication_factor: RawCount,
    on_terminal_error: String,
    dead_letter_topic: String,
    max_in_flight_bytes: RawSize,
    librdkafka: toml::Table,
}

/// A positive count, or `"broker"` for the broker's default.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a whole number or \"broker\"")]
enum RawCount {
    Count(i64),
    Word(String),
}

pub(crate) const TOPIC_PARTITIONS: RangeInclusive<u64> = 1..=100_000;
pub(crate) const TOPIC_REPLICATION_FACTOR: RangeInclusive<u64> = 1..=32;
pub(crate) const MAX_IN_FLIGHT_BYTES: RangeInclusive<u64> = MIB..=4 * GIB;
/// Kafka's limit on topic names.
const MAX_TOPIC_LEN: usize = 249;
/// The longest table name (DESIGN.md section 3).
const MAX_TABLE_NAME: &str = "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt";

/// Pass-through options the connector sets from a typed key; each maps to
/// that key and the reason.
const OWNED_OPTIONS: &[(&str, &str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers", "the brokers are set by kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers", "the brokers are set by kafka.brokers"),
    ("enable.idempotence", "kafka.mode", "the connector always uses the idempotent producer"),
    ("transactional.id", "kafka.mode", "the connector derives a stable transactional.id from the data directory in exactly-once mode"),
    ("acks", "kafka.mode", "the idempotent producer needs acks=all"),
    ("request.required.acks", "kafka.mode", "the idempotent producer needs acks=all"),
    ("max.in.flight.requests.per.connection", "kafka.mode", "the idempotent producer bounds it to keep per-key order"),
    ("max.in.flight", "kafka.mode", "the idempotent producer bounds it to keep per-key order"),
    ("isolation.level", "kafka.mode", "exactly-once mode reads its committed progress with read_committed"),
    ("delivery.report.only.error", "kafka.mode", "the position advances on delivery reports"),
    ("queue.buffering.max.kbytes", "kafka.max_in_flight_bytes", "the connector's buffer is bounded by kafka.max_in_flight_bytes"),
    ("partitioner", "kafka.topic", "each key keeps one partition: the connector partitions by murmur2 of the key, as the Java client does"),
];

impl RawKafka {
    pub(crate) fn validate(self) -> Result<KafkaConfig, ConfigError> {
        for (i, broker) in self.brokers.iter().enumerate() {
            check_broker(broker)
                .map_err(|reason| invalid(&format!("kafka.brokers[{i}]"), broker, reason))?;
        }
        if self.enabled && self.brokers.is_empty() {
            return Err(invalid(
                "kafka.brokers",
                "[]",
                "kafka.enabled = true needs at least one broker (\"host:port\")",
            ));
        }
        if self.topic_prefix.is_empty() {
            return Err(invalid("kafka.topic_prefix", "", "must not be empty"));
        }
        check_topic_part(&self.topic_prefix)
            .map_err(|reason| invalid("kafka.topic_prefix", &self.topic_prefix, reason))?;
        let topic = topic_template("kafka.topic", &self.topic, &self.topic_prefix, true)?;
        let dead_letter_topic = topic_template(
            "kafka.dead_letter_topic",
            &self.dead_letter_topic,
            &self.topic_prefix,
            false,
        )?;
        let format = choice(
            "kafka.format",
            &self.format,
            &[
                ("native", EventFormat::Native),
                ("debezium", EventFormat::Debezium),
            ],
        )?;
        let mode = choice(
            "kafka.mode",
            &self.mode,
            &[
                ("at-least-once", DeliveryMode::AtLeastOnce),
                ("exactly-once", DeliveryMode::ExactlyOnce),
            ],
        )?;
        let stop = choice(
            "kafka.on_terminal_error",
            &self.on_terminal_error,
            &[("stop", true), ("dead-letter", false)],
        )?;
        let on_terminal_error = if stop {
            TerminalErrorPolicy::Stop
        } else if topic.single_topic() == Some(dead_letter_topic.as_str()) {
            return Err(invalid(
                "kafka.dead_letter_topic",
                &self.dead_letter_topic,
                "is the same topic as kafka.topic",
            ));
        } else {
            TerminalErrorPolicy::DeadLetter {
                topic: dead_letter_topic.as_str().to_owned(),
            }
        };
        Ok(KafkaConfig {
            enabled: self.enabled,
            brokers: self.brokers,
            topic_prefix: self.topic_prefix,
            topic,
            format,
            tombstones: self.tombstones,
            mode,
            create_topics: self.create_topics,
            topic_partitions: count_or_broker(
                "kafka.topic_partitions",
                self.topic_partitions,
                TOPIC_PARTITIONS,
            )?
            .map(|n| n as u32),
            topic_replication_factor: count_or_broker(
                "kafka.topic_replication_factor",
                self.topic_replication_factor,
                TOPIC_REPLICATION_FACTOR,
            )?
            .map(|n| n as u16),
            on_terminal_error,
            max_in_flight_bytes: memory_size_in(
                "kafka.max_in_flight_bytes",
                &self.max_in_flight_bytes,
                MAX_IN_FLIGHT_BYTES,
            )?,
            librdkafka: passthrough(self.librdkafka)?,
        })
    }
}

/// `host:port`, with a bracketed IPv6 literal allowed as the host.
fn check_broker(broker: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "must be host:port, such as \"kafka-1:9092\" or \"[::1]:9092\"";
    let (host, port) = broker.rsplit_once(':').ok_or(SHAPE)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(SHAPE)
    }
}

/// Kafka topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_part(text: &str) -> Result<(), &'static str> {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err("may use only letters, digits, '.', '_' and '-' (Kafka topic names)")
    }
}

fn topic_template(
    field: &str,
    text: &str,
    prefix: &str,
    allow_table: bool,
) -> Result<TopicTemplate, ConfigError> {
    let placeholders = if allow_table {
        "{prefix} and {table}"
    } else {
        "{prefix}"
    };
    let resolved = text.replace("{prefix}", prefix);
    let longest = if allow_table {
        resolved.replace("{table}", MAX_TABLE_NAME)
    } else {
        resolved.clone()
    };
    if longest.contains(['{', '}']) {
        return Err(invalid(
            field,
            text,
            format!("the only placeholders are {placeholders}"),
        ));
    }
    check_topic_part(&longest).map_err(|reason| invalid(field, text, reason))?;
    if longest.is_empty() || longest == "." || longest == ".." {
        return Err(invalid(field, text, "is not a topic name"));
    }
    if longest.len() > MAX_TOPIC_LEN {
        return Err(invalid(
            field,
            text,
            format!("Kafka topic names have at most {MAX_TOPIC_LEN} characters, and the longest table name (63) would make this one {}", longest.len()),
        ));
    }
    Ok(TopicTemplate(resolved))
}

fn count_or_broker(
    field: &str,
    raw: RawCount,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    match raw {
        RawCount::Word(word) if word == "broker" => Ok(None),
        RawCount::Word(word) => Err(invalid(
            field,
            word,
            "expected a whole number or \"broker\"",
        )),
        RawCount::Count(n) => match u64::try_from(n) {
            Ok(n) => count_in(field, n, range).map(Some),
            Err(_) => Err(invalid(
                field,
                n,
                format!(
                    "must be between {} and {}, or \"broker\"",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

/// Flattens `[kafka.librdkafka]` (dotted keys such as `linger.ms = 5` are
/// nested tables in TOML) into option names and string values. Values are
/// never quoted in errors: they may be secrets.
fn passthrough(table: toml::Table) -> Result<LibrdkafkaOptions, ConfigError> {
    let mut options = BTreeMap::new();
    flatten(&mut options, "", table)?;
    for key in options.keys() {
        if let Some((owned, typed, reason)) = OWNED_OPTIONS
            .iter()
            .find(|(owned, ..)| owned.eq_ignore_ascii_case(key))
        {
            return Err(ConfigError::Conflict {
                field: format!("kafka.librdkafka.\"{owned}\""),
                other: (*typed).to_owned(),
                reason: (*reason).to_owned(),
            });
        }
    }
    Ok(LibrdkafkaOptions(options))
}

fn flatten(
    out: &mut BTreeMap<String, String>,
    prefix: &str,
    table: toml::Table,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let field = format!("kafka.librdkafka.\"{name}\"");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(invalid(
                &field,
                REDACTED,
                "is not a librdkafka option name (letters, digits, '.', '_', '-')",
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Table(table) => {
                flatten(out, &name, table)?;
                continue;
            }
            // A TOML date-time arrives here as its text already; this arm
            // is for completeness.
            toml::Value::Array(_) | toml::Value::Datetime(_) => {
                return Err(invalid(
                    &field,
                    REDACTED,
                    "must be a string, a number or a boolean",
                ))
            }
        };
        if out.insert(name, text).is_some() {
            return Err(invalid(&field, REDACTED, "is given twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{load_env, load_file, Valid};

    fn kafka(text: &str) -> Result<KafkaConfig, ConfigError> {
        load_file(&format!("[kafka]\n{text}\n")).map(|config| config.kafka)
    }

    #[test]
    fn defaults() {
        let kafka = load_env(&[]).unwrap().kafka;
        assert!(!kafka.enabled);
        assert!(kafka.brokers.is_empty());
        assert_eq!(kafka.topic_prefix, "tidefeed");
        assert_eq!(kafka.topic.topic_for("users"), "tidefeed.users");
        assert_eq!(kafka.topic.single_topic(), None);
        assert_eq!(kafka.format, EventFormat::Native);
        assert!(kafka.tombstones);
        assert_eq!(kafka.mode, DeliveryMode::AtLeastOnce);
        assert!(kafka.create_topics);
        assert_eq!(kafka.topic_partitions, None);
        assert_eq!(kafka.topic_replication_factor, None);
        assert_eq!(kafka.on_terminal_error, TerminalErrorPolicy::Stop);
        assert_eq!(kafka.max_in_flight_bytes, 64 << 20);
        assert!(kafka.librdkafka.is_empty());
    }

    #[test]
    fn valid_values_including_both_bounds() {
        let cases: &[Valid<KafkaConfig>] = &[
            ("ENABLED", "false", |k| !k.enabled),
            ("BROKERS", "a:9092, [::1]:9093,10.0.0.1:1", |k| {
                k.brokers == ["a:9092", "[::1]:9093", "10.0.0.1:1"]
            }),
            ("BROKERS", r#"["b:9092"]"#, |k| k.brokers == ["b:9092"]),
            ("TOPIC_PREFIX", "cdc-prod", |k| {
                k.topic.topic_for("t") == "cdc-prod.t"
            }),
            ("TOPIC", "changes", |k| {
                k.topic.single_topic() == Some("changes")
            }),
            ("TOPIC", "{table}", |k| {
                k.topic.topic_for("users") == "users"
            }),
            ("TOPIC", "{prefix}_all", |k| {
                k.topic.single_topic() == Some("tidefeed_all")
            }),
            ("FORMAT", "debezium", |k| k.format == EventFormat::Debezium),
            ("TOMBSTONES", "false", |k| !k.tombstones),
            ("MODE", "exactly-once", |k| {
                k.mode == DeliveryMode::ExactlyOnce
            }),
            ("CREATE_TOPICS", "false", |k| !k.create_topics),
            ("TOPIC_PARTITIONS", "1", |k| k.topic_partitions == Some(1)),
            ("TOPIC_PARTITIONS", "100000", |k| {
                k.topic_partitions == Some(100_000)
            }),
            ("TOPIC_REPLICATION_FACTOR", "1", |k| {
                k.topic_replication_factor == Some(1)
            }),
            ("TOPIC_REPLICATION_FACTOR", "32", |k| {
                k.topic_replication_factor == Some(32)
            }),
            ("ON_TERMINAL_ERROR", "dead-letter", |k| {
                k.on_terminal_error
                    == TerminalErrorPolicy::DeadLetter {
                        topic: "tidefeed.dead-letter".into(),
                    }
            }),
            ("DEAD_LETTER_TOPIC", "dlq", |k| {
                k.on_terminal_error == TerminalErrorPolicy::Stop
            }),
            ("MAX_IN_FLIGHT_BYTES", "1MiB", |k| {
                k.max_in_flight_bytes == 1 << 20
            }),
            ("MAX_IN_FLIGHT_BYTES", "4GiB", |k| {
                k.max_in_flight_bytes == 4 << 30
            }),
            (
                "LIBRDKAFKA",
                r#"{ "linger.ms" = 5, compression = { type = "zstd" } }"#,
                |k| {
                    k.librdkafka.get("linger.ms") == Some("5")
                        && k.librdkafka.get("compression.type") == Some("zstd")
                },
            ),
        ];
        for (key, value, check) in cases {
            let var = format!("TIDEFEED_KAFKA__{key}");
            let kafka = load_env(&[(&var, value)])
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"))
                .kafka;
            assert!(check(&kafka), "{var}={value}: {kafka:?}");
        }
        let kafka = load_env(&[
            ("TIDEFEED_KAFKA__ENABLED", "true"),
            ("TIDEFEED_KAFKA__BROKERS", "k:9092"),
            ("TIDEFEED_KAFKA__ON_TERMINAL_ERROR", "dead-letter"),
            ("TIDEFEED_KAFKA__DEAD_LETTER_TOPIC", "{prefix}.dlq"),
        ])
        .unwrap()
        .kafka;
        assert!(kafka.enabled);
        assert_eq!(
            kafka.on_terminal_error,
            TerminalErrorPolicy::DeadLetter {
                topic: "tidefeed.dlq".into()
            }
        );
        let error = load_env(&[
            ("TIDEFEED_KAFKA__TOPIC", "{prefix}.dlq"),
            ("TIDEFEED_KAFKA__ON_TERMINAL_ERROR", "dead-letter"),
            ("TIDEFEED_KAFKA__DEAD_LETTER_TOPIC", "{prefix}.dlq"),
        ])
        .unwrap_err();
        assert_eq!(error.field(), Some("kafka.dead_letter_topic"), "{error}");
        assert!(error.to_string().contains("same topic"), "{error}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let long = format!("{{table}}.{}", "x".repeat(190));
        let cases: &[(&str, &str, &str, &str)] = &[
            ("ENABLED", "true", "kafka.brokers", "at least one broker"),
            ("BROKERS", "kafka", "kafka.brokers[0]", "host:port"),
            ("BROKERS", "k:9092,k:0", "kafka.brokers[1]", "host:port"),
            ("BROKERS", "::1:9092", "kafka.brokers[0]", "host:port"),
            ("BROKERS", "k:90920", "kafka.brokers[0]", "host:port"),
            ("TOPIC_PREFIX", "a/b", "kafka.topic_prefix", "letters"),
            ("TOPIC", "{prefix}.{schema}", "kafka.topic", "placeholders"),
            ("TOPIC", "a b", "kafka.topic", "letters"),
            ("TOPIC", "", "kafka.topic", "topic name"),
            ("TOPIC", &long, "kafka.topic", "249"),
            ("TOPIC_PREFIX", "", "kafka.topic_prefix", "empty"),
            (
                "DEAD_LETTER_TOPIC",
                "{table}",
                "kafka.dead_letter_topic",
                "{prefix}",
            ),
            ("FORMAT", "avro", "kafka.format", "\"native\", \"debezium\""),
            (
                "MODE",
                "at-most-once",
                "kafka.mode",
                "\"at-least-once\", \"exactly-once\"",
            ),
            (
                "ON_TERMINAL_ERROR",
                "skip",
                "kafka.on_terminal_error",
                "\"stop\", \"dead-letter\"",
            ),
            (
                "TOPIC_PARTITIONS",
                "0",
                "kafka.topic_partitions",
                "between 1 and 100000",
            ),
            (
                "TOPIC_PARTITIONS",
                "-1",
                "kafka.topic_partitions",
                "\"broker\"",
            ),
            (
                "TOPIC_PARTITIONS",
                "many",
                "kafka.topic_partitions",
                "\"broker\"",
            ),
            (
                "TOPIC_REPLICATION_FACTOR",
                "33",
                "kafka.topic_replication_factor",
                "between 1 and 32",
            ),
            (
                "MAX_IN_FLIGHT_BYTES",
                "1000KiB",
                "kafka.max_in_flight_bytes",
                "between 1MiB and 4GiB",
            ),
            (
                "MAX_IN_FLIGHT_BYTES",
                "5GiB",
                "kafka.max_in_flight_bytes",
                "between 1MiB and 4GiB",
            ),
        ];
        for (key, value, field, reason) in cases {
            let var = format!("TIDEFEED_KAFKA__{key}");
            let error = load_env(&[(&var, value)]).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.field(), Some(*field), "{var}={value}: {message}");
            assert!(message.contains(reason), "{var}={value}: {message}");
        }
    }

    #[test]
    fn wrong_types_are_rejected_naming_the_key() {
        for (text, key) in [
            ("enabled = \"yes\"", "kafka.enabled"),
            ("brokers = \"a:9092\"", "kafka.brokers"),
            ("topic_partitions = true", "kafka.topic_partitions"),
            (
                "topic_replication_factor = 1.5",
                "kafka.topic_replication_factor",
            ),
            ("max_in_flight_bytes = false", "kafka.max_in_flight_bytes"),
            ("librdkafka = \"linger.ms=5\"", "kafka.librdkafka"),
        ] {
            let error = kafka(text).unwrap_err();
            assert!(
                matches!(error, ConfigError::Schema { .. }) && error.to_string().contains(key),
                "{text}: {error}"
            );
        }
        let error = kafka("topic_partitions = true").unwrap_err().to_string();
        assert!(error.contains("a whole number or \"broker\""), "{error}");
    }

    #[test]
    fn passthrough_options_that_a_typed_key_owns_are_conflicts_naming_both() {
        let cases = [
            (
                r#""bootstrap.servers" = "k:9092""#,
                "bootstrap.servers",
                "kafka.brokers",
            ),
            (
                r#"metadata.broker.list = "k:9092""#,
                "metadata.broker.list",
                "kafka.brokers",
            ),
            (
                "enable.idempotence = false",
                "enable.idempotence",
                "kafka.mode",
            ),
            (
                r#""transactional.id" = "mine""#,
                "transactional.id",
                "kafka.mode",
            ),
            ("acks = 1", "acks", "kafka.mode"),
            (
                "queue.buffering.max.kbytes = 1024",
                "queue.buffering.max.kbytes",
                "kafka.max_in_flight_bytes",
            ),
            (r#"partitioner = "random""#, "partitioner", "kafka.topic"),
            (
                r#""Bootstrap.Servers" = "k:9092""#,
                "bootstrap.servers",
                "kafka.brokers",
            ),
        ];
        for (line, option, typed) in cases {
            let error = kafka(&format!("[kafka.librdkafka]\n{line}")).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(&error, ConfigError::Conflict { other, .. } if other == typed),
                "{line}: {message}"
            );
            assert!(
                message.contains(option) && message.contains(typed),
                "{message}"
            );
        }
        let error = load_env(&[(
            "TIDEFEED_KAFKA__LIBRDKAFKA",
            r#"{ "enable.idempotence" = false }"#,
        )])
        .unwrap_err();
        assert!(matches!(error, ConfigError::Conflict { .. }), "{error}");
    }

    #[test]
    fn passthrough_values_are_rendered_as_strings_and_secrets_are_hidden() {
        let config = kafka(
            "[kafka.librdkafka]\nlinger.ms = 5\n\"batch.size\" = 1000000\ncompression.type = \"zstd\"\n\
             \"enable.ssl.certificate.verification\" = false\n\"sticky.partitioning.linger.ms\" = 2.5\n\
             sasl.password = \"hunter2\"\n\"ssl.key.pem\" = \"-----BEGIN hunter3\"",
        )
        .unwrap();
        let options: Vec<(&str, &str)> = config.librdkafka.iter().collect();
        assert_eq!(
            options,
            [
                ("batch.size", "1000000"),
                ("compression.type", "zstd"),
                ("enable.ssl.certificate.verification", "false"),
                ("linger.ms", "5"),
                ("sasl.password", "hunter2"),
                ("ssl.key.pem", "-----BEGIN hunter3"),
                ("sticky.partitioning.linger.ms", "2.5"),
            ]
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter") && shown.contains("\"linger.ms\": \"5\""),
            "{shown}"
        );
        for text in [
            "[kafka.librdkafka]\nsasl.password = [\"hunter2\"]",
            "[kafka.librdkafka]\n\"sasl password\" = \"hunter2\"",
            "[kafka.librdkafka]\nlinger = { ms = 5 }\n\"linger.ms\" = 6",
        ] {
            let error = kafka(text).expect_err(text);
            assert!(
                error
                    .field()
                    .is_some_and(|f| f.starts_with("kafka.librdkafka.")),
                "{error}"
            );
            assert!(
                !error.to_string().contains("hunter") && !format!("{error:?}").contains("hunter")
            );
        }
        let error =
            load_env(&[("TIDEFEED_KAFKA__LIBRDKAFKA", "sasl.password=hunter2")]).unwrap_err();
        assert!(!error.to_string().contains("hunter"), "{error}");
    }
}
