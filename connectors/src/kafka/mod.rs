//! The Kafka connector: a durable consumer of the change feed that
//! forwards every change to Kafka, keyed by primary key, in order per key.
//!
//! [`KafkaConnector::start`] makes sure the durable consumer exists, checks
//! the librdkafka settings, and spawns the connector's task on the current
//! tokio runtime; [`KafkaConnector::stop`] flushes (at-least-once: waits
//! for in-flight records to be confirmed; exactly-once: commits the open
//! transaction) within a grace period and returns the final status.
//! [`KafkaConnector::status`] (or a [`StatusHandle`]) reads the state and
//! counters at any time without waiting.
//!
//! - `at_least_once`: the idempotent producer and the confirmed prefix.
//! - `exactly_once`: transactions, with the position committed in Kafka.
//! - `reader`: the change log as batches of records; `record`: one
//!   change's records; `delivery`: what delivery reports do;
//!   `confirmed`: the contiguous confirmed prefix (pure).
//! - `progress`: the exactly-once progress record and the instance file
//!   that gives a data directory its `transactional.id`.
//! - `topics`: topic creation and broker settings (admin API).

mod at_least_once;
mod confirmed;
mod delivery;
mod error;
mod exactly_once;
mod options;
mod producer;
mod progress;
mod reader;
mod record;
mod status;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use tidefeed_engine::{Change, Engine, InvalidationReason, Seq};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use error::ConnectorError;
pub use options::{
    DeliveryMode, KafkaOptions, TerminalErrorPolicy, TopicCreation, DEFAULT_CONSUMER,
};
pub use progress::{ProgressRecord, INSTANCE_FILE};
pub use status::{ConnectorState, ConnectorStatus, StatusHandle};

use reader::ReadError;
use record::RecordBuilder;
use status::StatusCell;

/// A running connector. Dropping it asks the task to stop at once;
/// [`KafkaConnector::stop`] stops it in order.
pub struct KafkaConnector {
    handle: StatusHandle,
    stop: watch::Sender<Option<StopRequest>>,
    task: Option<JoinHandle<()>>,
}

impl KafkaConnector {
    /// Starts the connector on the current tokio runtime. Fails at once for
    /// options librdkafka refuses and for engine errors; problems with the
    /// brokers show up later, in the status (`retrying`, `failed`).
    ///
    /// On its first start the durable consumer is created at the oldest
    /// retained change, so every change the engine still holds is
    /// forwarded.
    pub async fn start(
        engine: Engine,
        options: KafkaOptions,
    ) -> Result<KafkaConnector, ConnectorError> {
        options.validate()?;
        producer::check_settings(&options, None)?;
        let consumer_engine = engine.clone();
        let name = options.consumer.clone();
        let position =
            tokio::task::spawn_blocking(move || ensure_consumer(&consumer_engine, &name))
                .await
                .expect("creating the consumer does not panic")?;
        let topics = topics::Topics::new(&options)?;
        let status = Arc::new(StatusCell::new(options.mode, &options.consumer));
        status.set_position(position);
        let (stop, stop_rx) = watch::channel(None);
        let sink = Sink {
            engine: engine.clone(),
            options: Arc::new(options),
            status: status.clone(),
            stop: stop_rx,
        };
        tracing::info!(
            mode = sink.options.mode.name(),
            brokers = %sink.options.brokers.join(","),
            topic = %sink.options.topic,
            consumer = %sink.options.consumer,
            position,
            "starting the Kafka connector"
        );
        let task = match sink.options.mode {
            DeliveryMode::AtLeastOnce => tokio::spawn(at_least_once::run(sink, topics)),
            DeliveryMode::ExactlyOnce => tokio::spawn(exactly_once::run(sink, topics)),
        };
        Ok(KafkaConnector {
            handle: StatusHandle {
                cell: status,
                engine,
            },
            stop,
            task: Some(task),
        })
    }

    /// The status now; cheap.
    pub fn status(&self) -> ConnectorStatus {
        self.handle.status()
    }

    /// A handle that reads the status, for the service's `/metrics` and
    /// `GET /v1/status`.
    pub fn status_handle(&self) -> StatusHandle {
        self.handle.clone()
    }

    /// Resolves when the connector's task has ended (it failed, or was
    /// stopped). Cancel-safe.
    pub async fn finished(&mut self) {
        if let Some(task) = &mut self.task {
            let _ = task.await;
            self.task = None;
        }
    }

    /// Stops the connector: no more reading; records in flight get up to
    /// `grace` to be confirmed (exactly-once: the open transaction to
    /// commit), and the position reached is acknowledged to the engine.
    /// Call it before closing the engine.
    pub async fn stop(mut self, grace: Duration) -> ConnectorStatus {
        self.stop.send_replace(Some(StopRequest {
            deadline: Instant::now() + grace,
            abandon: false,
        }));
        if let Some(task) = self.task.take() {
            // The task honours the deadline; the margin covers dropping
            // its producer.
            if tokio::time::timeout(grace + Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the Kafka connector did not stop in time");
            }
        }
        self.status()
    }
}

impl KafkaConnector {
    /// Stops the connector as a crash would, for tests of what a restart
    /// finds: no flush, no commit, no abort, no final acknowledgement.
    /// Records already handed to the producer may or may not reach Kafka.
    pub async fn abandon(mut self) {
        self.stop.send_replace(Some(StopRequest {
            deadline: Instant::now(),
            abandon: true,
        }));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KafkaConnector {
    fn drop(&mut self) {
        self.stop.send_if_modified(|stop| {
            if stop.is_none() {
                *stop = Some(StopRequest {
                    deadline: Instant::now(),
                    abandon: false,
                });
                true
            } else {
                false
            }
        });
    }
}

/// A request to stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopRequest {
    /// Flushing or committing ends by then.
    deadline: Instant,
    /// Stop as a crash would (tests).
    abandon: bool,
}

/// Creates the durable consumer at the oldest retained change if it does
/// not exist yet; returns its position (of a valid one).
fn ensure_consumer(engine: &Engine, name: &str) -> Result<Seq, ConnectorError> {
    use tidefeed_engine::Error;
    loop {
        match engine.consumer(name) {
            Ok(info) => return Ok(info.position),
            Err(Error::NoSuchConsumer { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        match engine.create_consumer(name, Some(engine.low_water())) {
            Ok(info) => {
                tracing::info!(
                    consumer = name,
                    position = info.position,
                    "created the Kafka connector's durable consumer"
                );
                return Ok(info.position);
            }
            // Low-water moved under us, or another caller created it: look
            // again.
            Err(Error::BelowRetention { .. }) | Err(Error::ConsumerExists { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// What the connector's task works with.
#[derive(Clone)]
pub(crate) struct Sink {
    engine: Engine,
    options: Arc<KafkaOptions>,
    status: Arc<StatusCell>,
    /// Set once a stop was asked for.
    stop: watch::Receiver<Option<StopRequest>>,
}

impl Sink {
    fn record_builder(&self) -> RecordBuilder {
        let options = &self.options;
        let dead_letter = match &options.on_terminal_error {
            TerminalErrorPolicy::DeadLetter { topic } => Some(topic.as_str()),
            TerminalErrorPolicy::Stop => None,
        };
        let mut reserved = Vec::new();
        if options.mode == DeliveryMode::ExactlyOnce {
            reserved.push((options.progress_topic.clone(), "progress"));
        }
        if let Some(topic) = dead_letter {
            reserved.push((topic.to_owned(), "dead-letter"));
        }
        RecordBuilder::new(
            &options.topic,
            options.format,
            options.tombstones,
            dead_letter,
            reserved,
        )
    }

    fn stop_request(&self) -> Option<StopRequest> {
        *self.stop.borrow()
    }

    fn stopping(&self) -> bool {
        self.stop_request().is_some()
    }

    fn stop_deadline(&self) -> Instant {
        self.stop_request()
            .map_or_else(Instant::now, |s| s.deadline)
    }

    fn abandoned(&self) -> bool {
        self.stop_request().is_some_and(|s| s.abandon)
    }

    /// Sleeps for `duration`; false if a stop was asked for meanwhile.
    async fn sleep_unless_stopped(&self, duration: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop_requested(&mut stop) => false,
            _ = tokio::time::sleep(duration) => true,
        }
    }

    /// The change with this seq, read off the executor.
    async fn read_change(&self, seq: Seq) -> Result<Change, End> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || -> Result<Change, tidefeed_engine::Error> {
            let mut changes = engine.changes(seq - 1, Some(seq))?;
            match changes.next() {
                Some(change) => change,
                None => Err(tidefeed_engine::Error::FutureSeq {
                    requested: seq,
                    visible: engine.visible_seq(),
                }),
            }
        })
        .await
        .expect("reading a change does not panic")
        .map_err(End::from_engine)
    }

    /// Records how the task ended.
    fn finish(&self, end: End) {
        match end {
            End::Stopped => {
                tracing::info!(
                    position = StatusCell::get(&self.status.position),
                    "Kafka connector stopped"
                );
                self.status.stopped();
            }
            End::Failed {
                reason,
                invalidated,
            } => {
                tracing::error!(%reason, position = StatusCell::get(&self.status.position), "Kafka connector failed; its position holds");
                self.status.failed(reason, invalidated);
            }
            End::Retry(reason) | End::Resend(reason) => {
                // Only reached when a stop cut a retry short.
                tracing::info!(%reason, "Kafka connector stopped while retrying");
                self.status.stopped();
            }
        }
    }
}

/// Resolves once a stop is requested (at once if it already was).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<Option<StopRequest>>) {
    // The guard `wait_for` returns is dropped here, never held across an
    // await of the caller.
    let _ = stop.wait_for(Option::is_some).await;
}

/// How a stretch of the connector's work ended.
#[derive(Debug)]
pub(crate) enum End {
    Stopped,
    /// Final: the connector stops and reports why.
    Failed {
        reason: String,
        invalidated: Option<InvalidationReason>,
    },
    /// Start again from the position after a backoff.
    Retry(String),
    /// Start again from the position at once, with other producer
    /// settings (a batch refused as too large: see `Refusal::alone`); not
    /// a failure.
    Resend(String),
}

impl End {
    fn from_engine(error: tidefeed_engine::Error) -> End {
        use tidefeed_engine::Error;
        match error {
            Error::ConsumerInvalidated { name, reason } => End::Failed {
                reason: format!("the durable consumer {name:?} was invalidated: {reason}; to forward again, delete it (DELETE /v1/consumers/{name}) and restart tidefeed: the connector then starts over at the oldest retained change, and the changes between its old position and that are not forwarded"),
                invalidated: Some(reason),
            },
            Error::Closed => End::Failed {
                reason: "the engine closed under the connector".to_owned(),
                invalidated: None,
            },
            error @ (Error::NoSuchConsumer { .. }
            | Error::BelowRetention { .. }
            | Error::Poisoned { .. }
            | Error::Panicked { .. }) => End::Failed {
                reason: error.to_string(),
                invalidated: None,
            },
            other => End::Retry(other.to_string()),
        }
    }

    fn from_read(error: ReadError) -> End {
        match error {
            ReadError::Closed => End::from_engine(tidefeed_engine::Error::Closed),
            ReadError::Engine(error) => End::from_engine(error),
            ReadError::Build { seq, error } => End::Failed {
                reason: format!("change {seq} cannot be forwarded: {error}"),
                invalidated: None,
            },
        }
    }
}

/// Exponential backoff between retries: 100 ms doubling to 10 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        now
    }

    pub(crate) fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..9).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
    }
}
