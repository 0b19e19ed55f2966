//! tidefeed's connectors: today, the Kafka sink.
//!
//! [`KafkaConnector`] is a durable consumer of the change feed that
//! forwards every committed change to Kafka: one topic per table (by
//! template) or one topic, key = the JSON object of the primary key,
//! value = the event (native or Debezium), a null-value tombstone after a
//! delete, headers `tidefeed.seq`, `tidefeed.table`, `tidefeed.op` and
//! `tidefeed.batch`. A key always lands on the same partition (murmur2 of
//! the key bytes, as the Java client), in seq order.
//!
//! Guarantees, by [`DeliveryMode`]:
//! - at-least-once: the idempotent producer; the connector's position
//!   advances only over changes Kafka confirmed, so a crash or an outage
//!   loses nothing, and a restart re-sends at most the unconfirmed window
//!   (each duplicate recognisable by its `tidefeed.seq`);
//! - exactly-once: Kafka transactions with the position committed in
//!   Kafka in the same transaction; a `read_committed` consumer sees each
//!   change once, on brokers that implement transaction markers.
//!
//! The connector holds retention at its position (a broker outage keeps
//! the backlog on disk, up to the engine's retention cap, which then
//! invalidates it loudly), bounds the bytes it has in flight, and follows
//! an explicit policy for records Kafka refuses for good. Its state and
//! counters are a plain [`ConnectorStatus`] for the service to export.
//!
//! The crate depends on the engine and the feed, and on nothing of HTTP or
//! of configuration files: the binary maps its `[kafka]` section onto
//! [`KafkaOptions`].

mod kafka;

pub use kafka::{
    ConnectorError, ConnectorState, ConnectorStatus, DeliveryMode, KafkaConnector, KafkaOptions,
    ProgressRecord, StatusHandle, TerminalErrorPolicy, TopicCreation, DEFAULT_CONSUMER,
    INSTANCE_FILE,
};
