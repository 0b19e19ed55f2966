//! The producer's context: what happens when Kafka confirms or refuses a
//! record, how errors are classified, and librdkafka's logs, errors and
//! statistics.
//!
//! Delivery reports arrive on librdkafka's polling thread. Each updates
//! the in-flight count, the counters and (at-least-once) the confirmed
//! prefix, records a refusal for the connector's task to act on, and wakes
//! that task. Nothing here blocks or sends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tidefeed_engine::Seq;
use tokio::sync::Notify;

use super::confirmed::ConfirmedPrefix;
use super::record::record_size;
use super::status::StatusCell;

/// The delivery opaque of exactly-once progress records, which are not
/// changes.
pub(crate) const PROGRESS_OPAQUE: usize = usize::MAX;

/// What a refusal means for the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Kafka will never take this record as it is (too large, not
    /// authorized, no such topic, invalid, a timestamp the broker's
    /// bounds refuse): the terminal-error policy decides. Sending it again
    /// would only be refused again: the record (its timestamp included,
    /// the change's commit time) never changes.
    Terminal,
    /// The producer purged the record (shutdown, abort, rebuild): no
    /// verdict on the record itself.
    Purged,
    /// Anything else that reaches a delivery report (librdkafka retries
    /// retriable errors itself until `message.timeout.ms`): the connector
    /// rebuilds its producer and resends from its position.
    Retry,
}

/// Classifies a delivery or produce error code.
pub(crate) fn classify(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode::*;
    match code {
        MessageSizeTooLarge
        | MessageBatchTooLarge
        | InvalidMessageSize
        | InvalidRecord
        | InvalidMessage
        | InvalidTimestamp
        | InvalidRequiredAcks
        | TopicAuthorizationFailed
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed
        | UnknownTopicOrPartition
        | UnknownTopic
        | UnknownPartition
        | InvalidTopic
        | PolicyViolation
        | SaslAuthenticationFailed
        | Authentication => ErrorClass::Terminal,
        PurgeQueue | PurgeInflight => ErrorClass::Purged,
        _ => ErrorClass::Retry,
    }
}

/// A record Kafka did not take.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub seq: Seq,
    pub code: RDKafkaErrorCode,
    pub class: ErrorClass,
    pub topic: String,
    /// The refused record was a tombstone (null value).
    pub tombstone: bool,
    /// The refused record was a dead letter.
    pub dead_letter: bool,
    /// An exactly-once progress record.
    pub progress: bool,
    /// The refusal is about this record alone: librdkafka refused it
    /// before sending, or it travelled in a batch of its own. A broker
    /// refuses a whole batch as too large when the batch is over its
    /// limit, though each record in it may fit.
    pub alone: bool,
}

impl Refusal {
    /// A refusal for good that may be about the batch the record travelled
    /// in rather than the record: a batch over the broker's size limit, or
    /// one whose validation failed on another record (a broker refuses the
    /// whole batch when one record's timestamp or form is out of bounds).
    /// The record must be tried again on its own before the terminal-error
    /// policy applies to it.
    pub(crate) fn maybe_about_the_batch(&self) -> bool {
        !self.alone
            && self.class == ErrorClass::Terminal
            && matches!(
                self.code,
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::MessageBatchTooLarge
                    | RDKafkaErrorCode::InvalidTimestamp
                    | RDKafkaErrorCode::InvalidRecord
            )
    }
}

/// What one producer's deliveries feed: created with the producer, so a
/// late report from a replaced producer never touches its successor's
/// bookkeeping.
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// At-least-once: the confirmed prefix (exactly-once positions come
    /// from committed transactions instead).
    pub prefix: Mutex<ConfirmedPrefix>,
    pub refusals: Mutex<Vec<Refusal>>,
    /// Woken on every report and on fatal errors.
    pub wake: Notify,
    /// librdkafka raised a fatal error: the producer is unusable.
    pub fatal: AtomicBool,
    /// Exactly-once: a progress record was sent and has no delivery
    /// report yet.
    pub progress_pending: AtomicBool,
    /// When a record was last confirmed, as milliseconds after `epoch`.
    confirmed_at: AtomicU64,
    epoch: std::time::Instant,
    /// The last client-level error librdkafka reported (a broker down,
    /// say), for the status while deliveries stall.
    pub last_error: Mutex<Option<String>>,
    /// The producer sends every record in a batch of its own (see
    /// [`Refusal::alone`]).
    pub one_record_batches: bool,
}

impl Deliveries {
    pub(crate) fn new(position: Seq, one_record_batches: bool) -> Arc<Deliveries> {
        Arc::new(Deliveries {
            one_record_batches,
            prefix: Mutex::new(ConfirmedPrefix::new(position)),
            refusals: Mutex::new(Vec::new()),
            wake: Notify::new(),
            fatal: AtomicBool::new(false),
            progress_pending: AtomicBool::new(false),
            confirmed_at: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            last_error: Mutex::new(None),
        })
    }

    fn touch(&self) {
        self.confirmed_at
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since a record was last confirmed (or since this
    /// producer started).
    pub(crate) fn since_confirmed(&self) -> std::time::Duration {
        let at = std::time::Duration::from_millis(self.confirmed_at.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(at)
    }

    pub(crate) fn take_refusals(&self) -> Vec<Refusal> {
        std::mem::take(&mut *self.refusals.lock().expect("refusals lock"))
    }

    pub(crate) fn confirmed(&self) -> Seq {
        self.prefix.lock().expect("prefix lock").confirmed()
    }
}

/// The producer context.
pub(crate) struct Context {
    pub status: Arc<StatusCell>,
    pub deliveries: Arc<Deliveries>,
    pub dead_letter_topic: Option<String>,
    /// At-least-once: deliveries move the confirmed prefix.
    pub track_prefix: bool,
}

impl ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            Warning => tracing::warn!(target: "librdkafka", facility = fac, "{message}"),
            Notice | Info => tracing::info!(target: "librdkafka", facility = fac, "{message}"),
            Debug => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "Kafka producer hit a fatal error");
            self.deliveries.fatal.store(true, Ordering::SeqCst);
            self.deliveries.wake.notify_one();
            return;
        }
        tracing::warn!(%error, reason, "Kafka client error");
        *self.deliveries.last_error.lock().expect("last error lock") =
            Some(format!("{error}: {reason}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            brokers: std::collections::HashMap<String, Broker>,
        }
        #[derive(serde::Deserialize)]
        struct Broker {
            #[serde(default)]
            txretries: u64,
        }
        if let Ok(stats) = serde_json::from_slice::<Stats>(statistics) {
            let retries = stats.brokers.values().map(|b| b.txretries).sum();
            self.status
                .producer_retries
                .store(retries, Ordering::Relaxed);
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (message, error) = match result {
            Ok(message) => (message, None),
            Err((error, message)) => (message, Some(error)),
        };
        if opaque == PROGRESS_OPAQUE {
            self.deliveries
                .progress_pending
                .store(false, Ordering::SeqCst);
            self.deliveries.wake.notify_one();
            if let Some(error) = error {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                self.refuse(Refusal {
                    seq: 0,
                    code,
                    class: classify(code),
                    topic: message.topic().to_owned(),
                    tombstone: false,
                    dead_letter: false,
                    progress: true,
                    alone: true,
                });
            }
            return;
        }
        let seq = opaque as Seq;
        let size = record_size(
            message.key().map_or(0, <[u8]>::len),
            message.payload().map_or(0, <[u8]>::len),
        ) as u64;
        StatusCell::sub(&self.status.in_flight_bytes, size);
        StatusCell::sub(&self.status.in_flight_records, 1);
        let dead_letter = self.dead_letter_topic.as_deref() == Some(message.topic());
        match error {
            None => {
                StatusCell::add(&self.status.delivered, 1);
                self.deliveries.touch();
                if dead_letter {
                    StatusCell::add(&self.status.dead_lettered, 1);
                }
                if self.track_prefix {
                    let mut prefix = self.deliveries.prefix.lock().expect("prefix lock");
                    if prefix.confirm(seq) {
                        self.status.set_position(prefix.confirmed());
                    }
                }
                self.status.running();
                self.deliveries.wake.notify_one();
            }
            Some(error) => {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                self.refuse(Refusal {
                    seq,
                    code,
                    class: classify(code),
                    topic: message.topic().to_owned(),
                    tombstone: message.payload().is_none(),
                    dead_letter,
                    progress: false,
                    alone: self.deliveries.one_record_batches,
                });
            }
        }
    }
}

impl Context {
    fn refuse(&self, refusal: Refusal) {
        self.deliveries
            .refusals
            .lock()
            .expect("refusals lock")
            .push(refusal);
        self.deliveries.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_what_the_connector_can_do_about_them() {
        use RDKafkaErrorCode::*;
        for (code, class) in [
            (MessageSizeTooLarge, ErrorClass::Terminal),
            (TopicAuthorizationFailed, ErrorClass::Terminal),
            (ClusterAuthorizationFailed, ErrorClass::Terminal),
            (UnknownTopicOrPartition, ErrorClass::Terminal),
            (UnknownTopic, ErrorClass::Terminal),
            (InvalidRecord, ErrorClass::Terminal),
            (InvalidTimestamp, ErrorClass::Terminal),
            (UnsupportedForMessageFormat, ErrorClass::Retry),
            (PurgeQueue, ErrorClass::Purged),
            (PurgeInflight, ErrorClass::Purged),
            (MessageTimedOut, ErrorClass::Retry),
            (NotEnoughReplicas, ErrorClass::Retry),
            (OutOfOrderSequenceNumber, ErrorClass::Retry),
            (Fatal, ErrorClass::Retry),
        ] {
            assert_eq!(classify(code), class, "{code:?}");
        }
    }
}
