//! What the connector reports: its state and counters, shared between the
//! connector's task, librdkafka's delivery callbacks and whoever reads the
//! status (the service's `/metrics` and `GET /v1/status`).
//!
//! Counters are relaxed atomics; the state and the last error sit behind a
//! mutex that is held only to copy or replace them. Reading a status never
//! waits on Kafka.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tidefeed_engine::{Engine, InvalidationReason, Seq};

use super::options::DeliveryMode;

/// Where the connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorState {
    /// Connecting, creating topics, reading its committed position
    /// (exactly-once mode: fencing earlier instances first).
    Starting,
    /// Forwarding changes.
    Running,
    /// A retriable failure (broker unreachable, a transaction to retry, a
    /// producer to rebuild): the connector retries with backoff and its
    /// position holds. Changes keep accumulating on disk, within the
    /// retention cap.
    Retrying,
    /// Stopped by its owner (shutdown).
    Stopped,
    /// Stopped by a failure it cannot get past on its own: a terminal error
    /// under the `stop` policy, an invalidated durable consumer, a fenced
    /// producer, the engine closing. Its position holds; nothing was
    /// skipped. The reason is in [`ConnectorStatus::error`].
    Failed,
}

impl ConnectorState {
    /// A stable lower-case name, for metrics labels and status bodies.
    pub fn name(self) -> &'static str {
        match self {
            ConnectorState::Starting => "starting",
            ConnectorState::Running => "running",
            ConnectorState::Retrying => "retrying",
            ConnectorState::Stopped => "stopped",
            ConnectorState::Failed => "failed",
        }
    }

    /// Every state, for exporting one gauge per state.
    pub const ALL: [ConnectorState; 5] = [
        ConnectorState::Starting,
        ConnectorState::Running,
        ConnectorState::Retrying,
        ConnectorState::Stopped,
        ConnectorState::Failed,
    ];
}

/// A point-in-time copy of the connector's state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStatus {
    pub state: ConnectorState,
    pub mode: DeliveryMode,
    /// The durable consumer the connector reads as.
    pub consumer: String,
    /// Why the connector is `Failed` or `Retrying` (the last such reason).
    pub error: Option<String>,
    /// Every change up to here is confirmed by Kafka: acknowledged by the
    /// brokers (at-least-once) or committed in a transaction
    /// (exactly-once).
    pub position: Seq,
    /// The engine's visible seq when this status was taken.
    pub head: Seq,
    /// Changes committed to the engine and not yet confirmed by Kafka
    /// (`head - position`).
    pub lag_seqs: u64,
    /// Records Kafka confirmed (events, tombstones and dead letters; the
    /// progress records of exactly-once mode are not counted).
    pub delivered: u64,
    /// Retries: requests librdkafka retried after transport errors (its
    /// statistics' `txretries`), stalls (records unconfirmed for 2 s while
    /// librdkafka retries: it re-queues records refused with retriable
    /// errors without reporting each attempt), and the connector's own
    /// retries (rebuilt producers, retried or aborted transactions).
    pub retried: u64,
    /// Records Kafka refused for good (too large, not authorized, unknown
    /// topic); each then followed the terminal-error policy.
    pub failed: u64,
    /// Records sent key-only to the dead-letter topic instead.
    pub dead_lettered: u64,
    /// Bytes handed to the producer and not yet confirmed or refused.
    pub in_flight_bytes: u64,
    /// Records handed to the producer and not yet confirmed or refused.
    pub in_flight_records: u64,
    /// Exactly-once mode: transactions committed and aborted.
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Set when the engine invalidated the connector's durable consumer
    /// (its outage outlasted the retention cap, say): the connector is
    /// `Failed` and must be reset by an operator.
    pub invalidated: Option<InvalidationReason>,
}

/// The connector's shared status, updated in place.
#[derive(Debug)]
pub(crate) struct StatusCell {
    pub mode: DeliveryMode,
    pub consumer: String,
    inner: Mutex<Inner>,
    /// Whether `inner.state` is `Running`: lets the delivery path skip the
    /// lock when nothing changes.
    is_running: AtomicBool,
    pub position: AtomicU64,
    pub delivered: AtomicU64,
    /// The connector's own retries; librdkafka's are in `producer_retries`.
    pub retried: AtomicU64,
    /// Produce-request retries reported by the current producer's
    /// statistics, and by the producers before it.
    pub producer_retries: AtomicU64,
    pub producer_retries_before: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub in_flight_bytes: AtomicU64,
    pub in_flight_records: AtomicU64,
    pub transactions_committed: AtomicU64,
    pub transactions_aborted: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    state: ConnectorState,
    error: Option<String>,
    invalidated: Option<InvalidationReason>,
}

impl StatusCell {
    pub(crate) fn new(mode: DeliveryMode, consumer: &str) -> StatusCell {
        StatusCell {
            mode,
            consumer: consumer.to_owned(),
            inner: Mutex::new(Inner {
                state: ConnectorState::Starting,
                error: None,
                invalidated: None,
            }),
            is_running: AtomicBool::new(false),
            position: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            producer_retries: AtomicU64::new(0),
            producer_retries_before: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            in_flight_bytes: AtomicU64::new(0),
            in_flight_records: AtomicU64::new(0),
            transactions_committed: AtomicU64::new(0),
            transactions_aborted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The guarded data is plain values, valid whatever a panicking
        // holder was doing.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters `Running` and clears the error, unless the connector has
    /// already failed or stopped (those are final).
    pub(crate) fn running(&self) {
        if self.is_running.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.lock();
        if matches!(
            inner.state,
            ConnectorState::Starting | ConnectorState::Retrying
        ) {
            inner.state = ConnectorState::Running;
            inner.error = None;
            self.is_running.store(true, Ordering::Relaxed);
        }
    }

    /// What a probe of the brokers found, before any delivery: moves
    /// `Starting`, or a `Retrying` the probe set itself (`owned`), to
    /// `Running` or to `Retrying` with the reason, in one step under the
    /// lock; a state anything else set is left alone.
    pub(crate) fn probed(&self, outcome: Result<(), String>, owned: &mut bool) {
        let mut inner = self.lock();
        let probes = inner.state == ConnectorState::Starting
            || (*owned && inner.state == ConnectorState::Retrying);
        if !probes {
            *owned = false;
            return;
        }
        match outcome {
            Ok(()) => {
                inner.state = ConnectorState::Running;
                inner.error = None;
                self.is_running.store(true, Ordering::Relaxed);
                *owned = false;
            }
            Err(reason) => {
                inner.state = ConnectorState::Retrying;
                inner.error = Some(reason);
                self.is_running.store(false, Ordering::Relaxed);
                *owned = true;
            }
        }
    }

    /// Enters `Retrying` with the reason, unless final.
    pub(crate) fn retrying(&self, reason: String) {
        let mut inner = self.lock();
        if !matches!(
            inner.state,
            ConnectorState::Failed | ConnectorState::Stopped
        ) {
            inner.state = ConnectorState::Retrying;
            inner.error = Some(reason);
            self.is_running.store(false, Ordering::Relaxed);
        }
    }

    /// Enters `Failed` (final) with the reason.
    pub(crate) fn failed(&self, reason: String, invalidated: Option<InvalidationReason>) {
        let mut inner = self.lock();
        inner.state = ConnectorState::Failed;
        inner.error = Some(reason);
        self.is_running.store(false, Ordering::Relaxed);
        if invalidated.is_some() {
            inner.invalidated = invalidated;
        }
    }

    /// Enters `Stopped`, unless it failed first.
    pub(crate) fn stopped(&self) {
        let mut inner = self.lock();
        if inner.state != ConnectorState::Failed {
            inner.state = ConnectorState::Stopped;
        }
        self.is_running.store(false, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn set_position(&self, position: Seq) {
        self.position.fetch_max(position, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, head: Seq) -> ConnectorStatus {
        let inner = self.lock();
        let position = StatusCell::get(&self.position);
        ConnectorStatus {
            state: inner.state,
            mode: self.mode,
            consumer: self.consumer.clone(),
            error: inner.error.clone(),
            position,
            head,
            lag_seqs: head.saturating_sub(position),
            delivered: StatusCell::get(&self.delivered),
            retried: StatusCell::get(&self.retried)
                + StatusCell::get(&self.producer_retries)
                + StatusCell::get(&self.producer_retries_before),
            failed: StatusCell::get(&self.failed),
            dead_lettered: StatusCell::get(&self.dead_lettered),
            in_flight_bytes: StatusCell::get(&self.in_flight_bytes),
            in_flight_records: StatusCell::get(&self.in_flight_records),
            transactions_committed: StatusCell::get(&self.transactions_committed),
            transactions_aborted: StatusCell::get(&self.transactions_aborted),
            invalidated: inner.invalidated,
        }
    }
}

/// A cheap, cloneable handle on a connector's status: what the service
/// keeps to answer `/metrics` and `GET /v1/status`. It outlives the
/// connector (the last status stays readable).
#[derive(Clone)]
pub struct StatusHandle {
    pub(crate) cell: Arc<StatusCell>,
    pub(crate) engine: Engine,
}

impl StatusHandle {
    /// The status now. Takes one short lock; never waits on Kafka or disk.
    pub fn status(&self) -> ConnectorStatus {
        self.cell.snapshot(self.engine.visible_seq())
    }
}

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatusHandle").field(&self.status()).finish()
    }
}
