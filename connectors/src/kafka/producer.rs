//! The producer: created from the options with the delivery context, and
//! the one way records are handed to it.

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::delivery::{Context, Deliveries};
use super::error::ConnectorError;
use super::options::KafkaOptions;
use super::record::OutRecord;
use super::status::StatusCell;

pub(crate) type Producer = ThreadedProducer<Context>;

fn config(settings: Vec<(String, String)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(key, value);
    }
    config
}

/// Checks every setting with librdkafka without creating a client, so a
/// misspelt or invalid pass-through option fails start-up.
pub(crate) fn check_settings(
    options: &KafkaOptions,
    transactional_id: Option<&str>,
) -> Result<(), ConnectorError> {
    config(options.producer_settings(transactional_id))
        .create_native_config()
        .map(drop)
        .map_err(|source| ConnectorError::Client {
            client: "producer",
            source,
        })
}

pub(crate) fn create(
    options: &KafkaOptions,
    status: &Arc<StatusCell>,
    deliveries: &Arc<Deliveries>,
    transactional_id: Option<&str>,
) -> Result<Producer, ConnectorError> {
    let context = Context {
        status: status.clone(),
        deliveries: deliveries.clone(),
        dead_letter_topic: match &options.on_terminal_error {
            super::TerminalErrorPolicy::DeadLetter { topic } => Some(topic.clone()),
            super::TerminalErrorPolicy::Stop => None,
        },
        track_prefix: transactional_id.is_none(),
    };
    let mut settings = options.producer_settings(transactional_id);
    if deliveries.one_record_batches {
        // Every record in a batch of its own, so a refusal as too large
        // is about that record (set last: it wins over pass-through).
        settings.push(("batch.num.messages".into(), "1".into()));
        settings.push(("linger.ms".into(), "0".into()));
    }
    config(settings)
        .create_with_context(context)
        .map_err(|source| ConnectorError::Client {
            client: "producer",
            source,
        })
}

/// A record's Kafka timestamp: the change's commit time, except for a
/// dead letter, which is timestamped when it is sent (the commit time may
/// be what the broker refused; the event in it keeps the commit time).
fn timestamp_ms(record: &OutRecord) -> i64 {
    if record.dead_letter.is_none() {
        return record.timestamp_ms();
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Hands a record to the producer, counting it in flight. On failure the
/// record is not in flight and the error is librdkafka's (a full queue,
/// or a record it refuses locally, such as one over `message.max.bytes`).
pub(crate) fn send(
    producer: &Producer,
    status: &StatusCell,
    record: &OutRecord,
) -> Result<(), KafkaError> {
    let size = record.size() as u64;
    // Counted before the send, so a delivery report that comes back at
    // once never finds the count lower than its own record.
    StatusCell::add(&status.in_flight_bytes, size);
    StatusCell::add(&status.in_flight_records, 1);
    let mut base = BaseRecord::with_opaque_to(&record.topic, record.seq as usize)
        .key(&record.key[..])
        .timestamp(timestamp_ms(record))
        .headers(record.headers());
    if let Some(value) = &record.value {
        base = base.payload(&value[..]);
    }
    match producer.send(base) {
        Ok(()) => Ok(()),
        Err((error, _)) => {
            StatusCell::sub(&status.in_flight_bytes, size);
            StatusCell::sub(&status.in_flight_records, 1);
            Err(error)
        }
    }
}
