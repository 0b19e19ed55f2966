//! The connector's options and the librdkafka settings derived from them.
//!
//! The connector reads no configuration file: the binary maps its
//! `[kafka]` section onto [`KafkaOptions`]. The librdkafka settings that
//! carry the connector's guarantees (idempotence, acks, in-flight requests,
//! the partitioner, transactions, the buffer bound) are set here and cannot
//! be overridden by pass-through options: such an option is refused with an
//! error naming it.

use std::time::Duration;

use tidefeed_feed::Format;

use super::error::ConnectorError;

/// The connector's guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Idempotent producer; the position advances over the contiguous
    /// prefix of confirmed deliveries. A crash can re-send the unconfirmed
    /// tail (recognisable by its `tidefeed.seq` header).
    AtLeastOnce,
    /// Kafka transactions, with the position committed in Kafka in the same
    /// transaction as the records.
    ExactlyOnce,
}

impl DeliveryMode {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryMode::AtLeastOnce => "at-least-once",
            DeliveryMode::ExactlyOnce => "exactly-once",
        }
    }
}

/// What happens to a record Kafka refuses for good (too large, not
/// authorized, unknown topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalErrorPolicy {
    /// Stop the connector: its position holds before the refused change,
    /// its state is `failed`, the reason is logged and reported.
    Stop,
    /// Send the event key-only to this topic (headers say why and where it
    /// was going), count it, and go on.
    DeadLetter { topic: String },
}

/// Whether the connector creates missing topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreation {
    /// Leave missing topics to the broker (its auto-creation, or an
    /// operator). A topic that stays missing is a terminal error.
    Broker,
    /// Create missing topics with these settings (`None`: the broker's
    /// default).
    Create {
        partitions: Option<u32>,
        replication_factor: Option<u16>,
    },
}

/// Everything the connector needs to know.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// Topic name template: `{table}` is replaced by the table's name;
    /// without it, every table goes to this one topic.
    pub topic: String,
    /// The topic of exactly-once progress records: one partition,
    /// compacted, keyed by `transactional.id`.
    pub progress_topic: String,
    pub format: Format,
    /// A null-value record follows each delete, with the same key.
    pub tombstones: bool,
    pub mode: DeliveryMode,
    pub topic_creation: TopicCreation,
    pub on_terminal_error: TerminalErrorPolicy,
    /// Bytes of records (keys and values, plus a fixed allowance per
    /// record) handed to the producer and not yet confirmed: past this the
    /// connector waits rather than read further.
    pub max_in_flight_bytes: usize,
    /// librdkafka options passed through, applied after the connector's
    /// defaults. Options the connector owns are refused.
    pub librdkafka: Vec<(String, String)>,
    /// The durable consumer the connector reads as.
    pub consumer: String,
    /// Exactly-once: a transaction is committed this long after its first
    /// record (or sooner, when half of `max_in_flight_bytes` is pending).
    pub commit_interval: Duration,
    /// At-least-once: how often the confirmed position is acknowledged to
    /// the engine (its durable consumer), at most.
    pub ack_interval: Duration,
    /// How long start-up operations against the brokers (fencing, reading
    /// the committed position, creating topics) wait before they are
    /// retried.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Pass-through values may be secrets (passwords, keys): names only.
        let librdkafka: Vec<&str> = self.librdkafka.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("progress_topic", &self.progress_topic)
            .field("format", &self.format)
            .field("tombstones", &self.tombstones)
            .field("mode", &self.mode)
            .field("topic_creation", &self.topic_creation)
            .field("on_terminal_error", &self.on_terminal_error)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("librdkafka (names)", &librdkafka)
            .field("consumer", &self.consumer)
            .field("commit_interval", &self.commit_interval)
            .field("ack_interval", &self.ack_interval)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The durable consumer's default name.
pub const DEFAULT_CONSUMER: &str = "kafka-connector";

impl KafkaOptions {
    /// Defaults as in the example configuration: topics `{prefix}.{table}`,
    /// progress topic `{prefix}.__progress` (a table name never starts with
    /// `_`, so no table's topic can take it), native format, tombstones,
    /// at-least-once, topics created with the broker's defaults, `stop` on
    /// terminal errors, 64 MiB in flight.
    pub fn new(brokers: Vec<String>, topic_prefix: &str) -> KafkaOptions {
        KafkaOptions {
            brokers,
            topic: format!("{topic_prefix}.{{table}}"),
            progress_topic: format!("{topic_prefix}.__progress"),
            format: Format::Native,
            tombstones: true,
            mode: DeliveryMode::AtLeastOnce,
            topic_creation: TopicCreation::Create {
                partitions: None,
                replication_factor: None,
            },
            on_terminal_error: TerminalErrorPolicy::Stop,
            max_in_flight_bytes: 64 << 20,
            librdkafka: Vec::new(),
            consumer: DEFAULT_CONSUMER.to_owned(),
            commit_interval: Duration::from_millis(100),
            ack_interval: Duration::from_millis(50),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The `transaction.timeout.ms` the producer uses (librdkafka's default
    /// unless passed through).
    pub(crate) fn transaction_timeout(&self) -> Result<Duration, ConnectorError> {
        match self.passthrough("transaction.timeout.ms") {
            None => Ok(DEFAULT_TRANSACTION_TIMEOUT),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ConnectorError::Option {
                    option: "transaction.timeout.ms".to_owned(),
                    reason: "must be a whole number of milliseconds".to_owned(),
                }),
        }
    }

    fn passthrough(&self, name: &str) -> Option<&str> {
        self.librdkafka
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Checks what the connector itself relies on.
    pub(crate) fn validate(&self) -> Result<(), ConnectorError> {
        let bad = |option: &str, reason: String| {
            Err(ConnectorError::Option {
                option: option.to_owned(),
                reason,
            })
        };
        if self.brokers.is_empty() {
            return bad("brokers", "at least one broker is needed".to_owned());
        }
        if self.max_in_flight_bytes == 0 {
            return bad("max_in_flight_bytes", "must be positive".to_owned());
        }
        if self.consumer.is_empty() {
            return bad("consumer", "must not be empty".to_owned());
        }
        for (name, _) in &self.librdkafka {
            if let Some((_, reason)) = OWNED
                .iter()
                .find(|(owned, _)| owned.eq_ignore_ascii_case(name))
            {
                return bad(name, format!("is set by the connector: {reason}"));
            }
        }
        let topics = [
            ("progress_topic", self.progress_topic.as_str()),
            (
                "on_terminal_error",
                match &self.on_terminal_error {
                    TerminalErrorPolicy::DeadLetter { topic } => topic.as_str(),
                    TerminalErrorPolicy::Stop => "",
                },
            ),
        ];
        for (field, topic) in topics {
            if !topic.is_empty() && !self.topic.contains("{table}") && self.topic == topic {
                return bad(field, format!("{topic:?} is also the topic of every table"));
            }
        }
        if self.mode == DeliveryMode::ExactlyOnce {
            let timeout = self.transaction_timeout()?;
            if timeout < self.commit_interval * 10 {
                return bad(
                    "transaction.timeout.ms",
                    format!(
                        "{} ms leaves too little room for transactions committed every {} ms (at least 10 times the commit interval)",
                        timeout.as_millis(),
                        self.commit_interval.as_millis()
                    ),
                );
            }
        }
        Ok(())
    }

    /// The producer's librdkafka settings, in order (later ones win):
    /// the connector's, then the pass-through options.
    pub(crate) fn producer_settings(
        &self,
        transactional_id: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.brokers.join(",")),
            ("client.id".into(), "tidefeed".into()),
            // Idempotence keeps retries from duplicating or reordering
            // records within a partition; it implies acks=all and at most 5
            // requests in flight per connection, set explicitly here.
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            ("max.in.flight.requests.per.connection".into(), "5".into()),
            // The Java client's partitioner (murmur2 of the key bytes), so
            // a key's partition is stable across restarts and the same as
            // Java producers would choose. Keys are never null here.
            ("partitioner".into(), "murmur2_random".into()),
            // The connector bounds its own buffer by max_in_flight_bytes;
            // librdkafka's bound sits above it and is never the one hit.
            (
                "queue.buffering.max.kbytes".into(),
                (self.max_in_flight_bytes / 1024 * 2 + 1024)
                    .min(i32::MAX as usize)
                    .to_string(),
            ),
            ("queue.buffering.max.messages".into(), "0".into()),
            ("statistics.interval.ms".into(), "1000".into()),
        ];
        match transactional_id {
            None => {
                // Retry until delivered: a record that times out would leave
                // a gap that only a rewind (and duplicates) could fill. A
                // broker outage instead holds the position while changes
                // wait on disk. Pass-through may set a finite timeout.
                settings.push(("message.timeout.ms".into(), "0".into()));
            }
            Some(id) => {
                settings.push(("transactional.id".into(), id.to_owned()));
                // message.timeout.ms follows transaction.timeout.ms.
            }
        }
        settings.extend(self.librdkafka.iter().cloned());
        settings
    }

    /// Settings for the connector's other clients (the admin client and
    /// the progress reader): the brokers and the pass-through options
    /// (security settings apply to every client), minus producer-only
    /// ones, which librdkafka would warn about.
    pub(crate) fn client_settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![
            ("bootstrap.servers".into(), self.brokers.join(",")),
            ("client.id".into(), "tidefeed".into()),
        ];
        settings.extend(
            self.librdkafka
                .iter()
                .filter(|(k, _)| !PRODUCER_ONLY.iter().any(|p| k.eq_ignore_ascii_case(p)))
                .cloned(),
        );
        settings
    }
}

/// librdkafka's default `transaction.timeout.ms`.
pub(crate) const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Options the connector sets itself, and why.
const OWNED: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "the brokers come from the brokers option",
    ),
    (
        "metadata.broker.list",
        "the brokers come from the brokers option",
    ),
    ("enable.idempotence", "the idempotent producer is always on"),
    (
        "transactional.id",
        "exactly-once mode derives it from the data directory",
    ),
    ("acks", "the idempotent producer needs acks=all"),
    (
        "request.required.acks",
        "the idempotent producer needs acks=all",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the idempotent producer keeps it at 5 for per-key order",
    ),
    (
        "max.in.flight",
        "the idempotent producer keeps it at 5 for per-key order",
    ),
    (
        "isolation.level",
        "exactly-once mode reads its progress with read_committed",
    ),
    (
        "delivery.report.only.error",
        "the position advances on delivery reports",
    ),
    (
        "queue.buffering.max.kbytes",
        "the buffer is bounded by max_in_flight_bytes",
    ),
    (
        "partitioner",
        "each key keeps one partition (murmur2, as the Java client) for per-key order",
    ),
];

/// Producer-only options, left out of the admin and consumer clients.
const PRODUCER_ONLY: &[&str] = &[
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "batch.size",
    "batch.num.messages",
    "compression.type",
    "compression.codec",
    "compression.level",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transaction.timeout.ms",
    "retries",
    "message.send.max.retries",
    "sticky.partitioning.linger.ms",
    "enable.gapless.guarantee",
    "request.timeout.ms",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> KafkaOptions {
        KafkaOptions::new(vec!["k1:9092".into(), "k2:9092".into()], "cdc")
    }

    fn get<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_producer_keeps_order_per_key_and_never_times_out_in_at_least_once_mode() {
        let settings = options().producer_settings(None);
        for (key, value) in [
            ("bootstrap.servers", "k1:9092,k2:9092"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("partitioner", "murmur2_random"),
            ("message.timeout.ms", "0"),
            ("queue.buffering.max.messages", "0"),
            ("queue.buffering.max.kbytes", "132096"),
        ] {
            assert_eq!(get(&settings, key), Some(value), "{key}");
        }
        assert_eq!(get(&settings, "transactional.id"), None);
    }

    #[test]
    fn exactly_once_sets_the_transactional_id_and_leaves_the_message_timeout_to_librdkafka() {
        let settings = options().producer_settings(Some("tidefeed-abc"));
        assert_eq!(get(&settings, "transactional.id"), Some("tidefeed-abc"));
        assert_eq!(get(&settings, "message.timeout.ms"), None);
    }

    #[test]
    fn passthrough_options_come_last_and_owned_ones_are_refused() {
        let mut o = options();
        o.librdkafka = vec![
            ("linger.ms".into(), "20".into()),
            ("message.timeout.ms".into(), "5000".into()),
        ];
        o.validate().unwrap();
        let settings = o.producer_settings(None);
        assert_eq!(get(&settings, "linger.ms"), Some("20"));
        assert_eq!(get(&settings, "message.timeout.ms"), Some("5000"));
        assert_eq!(get(&o.client_settings(), "linger.ms"), None);
        for owned in [
            "partitioner",
            "Enable.Idempotence",
            "acks",
            "transactional.id",
        ] {
            o.librdkafka = vec![(owned.into(), "x".into())];
            let error = o.validate().unwrap_err();
            assert!(
                matches!(&error, ConnectorError::Option { option, .. } if option == owned),
                "{error}"
            );
        }
    }

    #[test]
    fn the_transaction_timeout_must_leave_room_for_commits() {
        let mut o = options();
        o.mode = DeliveryMode::ExactlyOnce;
        o.validate().unwrap();
        assert_eq!(
            o.transaction_timeout().unwrap(),
            DEFAULT_TRANSACTION_TIMEOUT
        );
        o.librdkafka = vec![("transaction.timeout.ms".into(), "900".into())];
        let error = o.validate().unwrap_err().to_string();
        assert!(error.contains("transaction.timeout.ms"), "{error}");
        o.librdkafka = vec![("transaction.timeout.ms".into(), "soon".into())];
        assert!(o.validate().is_err());
    }

    #[test]
    fn a_single_topic_may_not_be_the_progress_or_dead_letter_topic() {
        let mut o = options();
        o.topic = "cdc.__progress".into();
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("progress_topic"));
        o.topic = "all".into();
        o.on_terminal_error = TerminalErrorPolicy::DeadLetter {
            topic: "all".into(),
        };
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("on_terminal_error"));
    }
}
