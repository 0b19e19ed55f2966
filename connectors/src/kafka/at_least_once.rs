//! At-least-once mode: the idempotent producer, and a position that moves
//! only over the contiguous prefix of changes Kafka confirmed.
//!
//! One *generation* is one producer: it starts at the durable consumer's
//! position, reads the log after it and hands records to the producer,
//! waiting whenever `max_in_flight_bytes` are unconfirmed. Delivery reports
//! move the confirmed prefix; the prefix is acknowledged to the engine
//! (which holds retention there) every `ack_interval`. librdkafka retries
//! retriable errors itself, forever (`message.timeout.ms = 0`), with
//! idempotence keeping each partition free of duplicates and in order; so
//! a broker outage is just a stall, with changes waiting on disk.
//!
//! A generation ends on a stop request (after letting in-flight records
//! settle, within the grace period), on a terminal refusal under the
//! `stop` policy, on a failure of the durable consumer or the engine, or
//! on anything else Kafka reports (a fatal producer error, a timeout
//! passed through): then a new generation starts, after a backoff, from
//! the confirmed position. Re-sending from there can duplicate records
//! that were confirmed after a gap, which is what at-least-once allows;
//! each duplicate carries its `tidefeed.seq`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
use tidefeed_engine::Seq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivery::{classify, Deliveries, ErrorClass, Refusal};
use super::producer::{self, Producer};
use super::reader::{self, Batch};
use super::record::OutRecord;
use super::status::StatusCell;
use super::topics::Topics;
use super::{stop_requested, Backoff, End, Sink, TerminalErrorPolicy};

/// An idle connector still acknowledges this often, so its consumer never
/// looks abandoned while it waits (for changes, or for a broker).
const KEEPALIVE_ACK: Duration = Duration::from_secs(10);
/// Records unconfirmed for this long put the connector in `retrying`
/// (librdkafka keeps retrying underneath).
const STALL: Duration = Duration::from_secs(2);
/// How long a generation ended by a failure waits for records in flight
/// to settle before its producer is dropped.
const FAILURE_DRAIN: Duration = Duration::from_secs(2);

pub(crate) async fn run(sink: Sink, mut topics: Topics) {
    let mut backoff = Backoff::new();
    // Changes up to here go one record per batch (see `Refusal::alone`).
    let mut isolate_until: Option<Seq> = None;
    loop {
        let before = StatusCell::get(&sink.status.position);
        let end = generation(&sink, &mut topics, &mut isolate_until).await;
        if StatusCell::get(&sink.status.position) > before {
            backoff.reset();
        }
        match end {
            End::Retry(reason) => {
                tracing::warn!(%reason, "Kafka connector retrying");
                StatusCell::add(&sink.status.retried, 1);
                sink.status.retrying(reason);
                if !sink.sleep_unless_stopped(backoff.next()).await {
                    sink.finish(End::Stopped);
                    return;
                }
            }
            End::Resend(reason) if !sink.stopping() => {
                tracing::info!(%reason, "Kafka connector starting a new producer");
            }
            end => {
                sink.finish(end);
                return;
            }
        }
    }
}

/// One producer's life; see the module documentation.
async fn generation(sink: &Sink, topics: &mut Topics, isolate_until: &mut Option<Seq>) -> End {
    let position = match sink.engine.consumer_position(&sink.options.consumer) {
        Ok(position) => position,
        Err(error) => return End::from_engine(error),
    };
    sink.status.set_position(position);
    if isolate_until.is_some_and(|until| position >= until) {
        *isolate_until = None;
    }
    let deliveries = Deliveries::new(position, isolate_until.is_some());
    let producer = match producer::create(&sink.options, &sink.status, &deliveries, None) {
        Ok(producer) => producer,
        Err(error) => {
            return End::Failed {
                reason: error.to_string(),
                invalidated: None,
            }
        }
    };
    let cancel_reader = CancellationToken::new();
    let mut batches = reader::spawn(
        sink.engine.clone(),
        sink.record_builder(),
        sink.options.consumer.clone(),
        None,
        position,
        cancel_reader.clone(),
    );
    let mut run = Generation {
        sink,
        topics,
        producer,
        deliveries,
        dead_letters: sink.record_builder(),
        acked: position,
        acked_at: Instant::now(),
        stalled: false,
        isolate_until: *isolate_until,
    };
    let probe = tokio::spawn(probe_brokers(
        run.topics.admin(),
        sink.status.clone(),
        sink.options.brokers.join(","),
        cancel_reader.clone(),
    ));
    let mut stop = sink.stop.clone();
    let mut ack_tick = tokio::time::interval(sink.options.ack_interval);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        if let Some(end) = run.settle_refusals().await {
            break end;
        }
        if run.deliveries.fatal.load(Ordering::SeqCst) {
            break End::Retry(run.fatal_reason());
        }
        if run
            .isolate_until
            .is_some_and(|until| run.deliveries.confirmed() >= until)
        {
            run.isolate_until = None;
            break End::Resend("past the records refused with their batch".to_owned());
        }
        tokio::select! {
            biased;
            _ = stop_requested(&mut stop) => break End::Stopped,
            _ = run.deliveries.wake.notified() => {}
            _ = ack_tick.tick() => {
                if let Err(end) = run.ack(false) {
                    break end;
                }
                run.report_stall();
            }
            batch = batches.recv() => match batch {
                Some(Ok(batch)) => {
                    if let Err(end) = run.produce(batch).await {
                        break end;
                    }
                }
                Some(Err(error)) => break End::from_read(error),
                None => break End::Retry("the change reader stopped".to_owned()),
            },
        }
    };
    cancel_reader.cancel();
    drop(batches);
    *isolate_until = run.isolate_until;
    let _ = probe.await;
    if sink.abandoned() {
        // As a crash would: no drain, no final acknowledgement.
        let Generation { producer, .. } = run;
        retire(producer, &sink.status).await;
        return end;
    }
    let deadline = if sink.stopping() {
        sink.stop_deadline()
    } else {
        Instant::now() + FAILURE_DRAIN
    };
    run.drain(deadline).await;
    let end = match run.ack(true) {
        Err(failed @ End::Failed { .. }) if matches!(end, End::Stopped | End::Retry(_)) => failed,
        _ => end,
    };
    let Generation { producer, .. } = run;
    retire(producer, &sink.status).await;
    end
}

/// How long a probe of the brokers waits for their answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Until the brokers first answer a metadata request, the status of a
/// connector that has not delivered yet says whether they can be reached:
/// `running` when they answer, `retrying` with the error when they do not,
/// as it would be once records stalled. A state anything else set (a
/// delivery, a stall, a retry) is left alone: after a retry the connector
/// is `retrying` until a record is confirmed again.
async fn probe_brokers(
    admin: std::sync::Arc<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>>,
    status: std::sync::Arc<StatusCell>,
    brokers: String,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut owned = false;
    loop {
        let client = admin.clone();
        let probe = tokio::task::spawn_blocking(move || {
            client.inner().fetch_metadata(None, PROBE_TIMEOUT).map(drop)
        });
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = probe => result.expect("fetching metadata does not panic"),
        };
        let answered = result.is_ok();
        status.probed(
            result.map_err(|error| {
                format!(
                    "the Kafka brokers ({brokers}) do not answer: {error}; librdkafka keeps trying"
                )
            }),
            &mut owned,
        );
        if answered {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// Drops a producer off the executor (dropping purges what is left and
/// waits briefly for the purge's reports), keeping its retry count.
async fn retire(producer: Producer, status: &StatusCell) {
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    let retries = status.producer_retries.swap(0, Ordering::Relaxed);
    StatusCell::add(&status.producer_retries_before, retries);
    status.in_flight_bytes.store(0, Ordering::Relaxed);
    status.in_flight_records.store(0, Ordering::Relaxed);
}

struct Generation<'a> {
    sink: &'a Sink,
    topics: &'a mut Topics,
    producer: Producer,
    deliveries: std::sync::Arc<Deliveries>,
    /// Builds dead letters (its own topic cache).
    dead_letters: super::record::RecordBuilder,
    acked: Seq,
    acked_at: Instant,
    /// In a stall (see `report_stall`).
    stalled: bool,
    /// Changes up to here go one record per batch; then a new generation
    /// batches again.
    isolate_until: Option<Seq>,
}

impl Generation<'_> {
    /// Hands a batch to the producer, seq by seq, within the in-flight
    /// bound.
    async fn produce(&mut self, batch: Batch) -> Result<(), End> {
        let records = batch.records;
        let mut i = 0;
        while i < records.len() {
            let seq = records[i].seq;
            let count = records[i..].iter().take_while(|r| r.seq == seq).count();
            let group = &records[i..i + count];
            for record in group {
                self.topics.ensure(&record.topic).await;
            }
            self.deliveries
                .prefix
                .lock()
                .expect("prefix lock")
                .push(seq, count as u32);
            for record in group {
                self.wait_for_room(record.size()).await?;
                self.send(record).await?;
            }
            i += count;
        }
        Ok(())
    }

    /// Waits until `size` more bytes fit in flight (a record always fits
    /// when nothing is in flight), acting on refusals meanwhile.
    async fn wait_for_room(&mut self, size: usize) -> Result<(), End> {
        let max = self.sink.options.max_in_flight_bytes as u64;
        let mut stop = self.sink.stop.clone();
        loop {
            if let Some(end) = self.settle_refusals().await {
                return Err(end);
            }
            if self.deliveries.fatal.load(Ordering::SeqCst) {
                return Err(End::Retry(self.fatal_reason()));
            }
            let in_flight = StatusCell::get(&self.sink.status.in_flight_bytes);
            if in_flight == 0 || in_flight + size as u64 <= max {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => return Err(End::Stopped),
                _ = self.deliveries.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            self.ack(false)?;
            self.report_stall();
        }
    }

    /// Sends one record, waiting out a full librdkafka queue. A record
    /// librdkafka refuses locally is a refusal like any other.
    async fn send(&mut self, record: &OutRecord) -> Result<(), End> {
        let mut stop = self.sink.stop.clone();
        loop {
            match producer::send(&self.producer, &self.sink.status, record) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::select! {
                        biased;
                        _ = stop_requested(&mut stop) => return Err(End::Stopped),
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                    }
                }
                Err(error) => {
                    let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                    let refusal = Refusal {
                        seq: record.seq,
                        code,
                        class: classify(code),
                        topic: record.topic.to_string(),
                        tombstone: record.value.is_none(),
                        dead_letter: record.dead_letter.is_some(),
                        progress: false,
                        alone: true,
                    };
                    self.deliveries
                        .refusals
                        .lock()
                        .expect("refusals lock")
                        .push(refusal);
                    return Ok(());
                }
            }
        }
    }

    /// Acts on records Kafka refused: the terminal-error policy for
    /// terminal ones, a new generation for the rest.
    async fn settle_refusals(&mut self) -> Option<End> {
        let refusals = self.deliveries.take_refusals();
        // A batch refused for good may hold records Kafka takes: each is
        // tried again in a batch of its own before any is dead-lettered
        // or stops the connector.
        if let Some(refusal) = refusals
            .iter()
            .filter(|r| r.maybe_about_the_batch())
            .max_by_key(|r| r.seq)
        {
            tracing::warn!(seq = refusal.seq, topic = %refusal.topic, error = %refusal.code, "Kafka refused a batch; sending each record on its own");
            self.isolate_until = Some(self.isolate_until.unwrap_or(0).max(refusal.seq));
            return Some(End::Resend(format!(
                "Kafka refused a batch holding change {} ({}); sending each record in a batch of its own",
                refusal.seq, refusal.code
            )));
        }
        for refusal in refusals {
            match refusal.class {
                ErrorClass::Purged => {}
                ErrorClass::Retry => {
                    return Some(End::Retry(format!(
                        "Kafka did not take change {} for topic {:?}: {}",
                        refusal.seq, refusal.topic, refusal.code
                    )))
                }
                ErrorClass::Terminal => {
                    if let Some(end) = self.terminal(refusal).await {
                        return Some(end);
                    }
                }
            }
        }
        None
    }

    async fn terminal(&mut self, refusal: Refusal) -> Option<End> {
        StatusCell::add(&self.sink.status.failed, 1);
        tracing::error!(
            seq = refusal.seq,
            topic = %refusal.topic,
            error = %refusal.code,
            tombstone = refusal.tombstone,
            "Kafka refused a record for good"
        );
        let dead_letter_topic = match &self.sink.options.on_terminal_error {
            TerminalErrorPolicy::Stop => {
                return Some(End::Failed {
                    reason: format!(
                        "Kafka refused change {} for topic {:?} for good ({}); on_terminal_error = \"stop\" stopped the connector before it",
                        refusal.seq, refusal.topic, refusal.code
                    ),
                    invalidated: None,
                })
            }
            TerminalErrorPolicy::DeadLetter { topic } => topic.clone(),
        };
        if refusal.dead_letter {
            return Some(End::Failed {
                reason: format!(
                    "the dead-letter topic {:?} refused change {} too ({})",
                    refusal.topic, refusal.seq, refusal.code
                ),
                invalidated: None,
            });
        }
        let change = match self.sink.read_change(refusal.seq).await {
            Ok(change) => change,
            Err(end) => return Some(end),
        };
        let record = match self.dead_letters.dead_letter(
            &change,
            refusal.code.to_string(),
            refusal.tombstone,
        ) {
            Ok(record) => record,
            Err(error) => {
                return Some(End::Failed {
                    reason: format!(
                        "building the dead letter of change {}: {error}",
                        refusal.seq
                    ),
                    invalidated: None,
                })
            }
        };
        self.topics.ensure(&record.topic).await;
        tracing::warn!(
            seq = refusal.seq,
            topic = %refusal.topic,
            dead_letter_topic,
            "sending the change key-only to the dead-letter topic"
        );
        // The dead letter takes the refused record's place in the
        // confirmed prefix: the seq is confirmed once it is delivered.
        self.send(&record).await.err()
    }

    /// Acknowledges the confirmed prefix to the engine, if it moved (or
    /// always, when `force`d, or as a keep-alive).
    fn ack(&mut self, force: bool) -> Result<(), End> {
        let confirmed = self.deliveries.confirmed();
        let now = Instant::now();
        if confirmed > self.acked || force || now - self.acked_at >= KEEPALIVE_ACK {
            self.sink
                .engine
                .ack_consumer(&self.sink.options.consumer, confirmed)
                .map_err(End::from_engine)?;
            self.sink.status.set_position(confirmed);
            self.acked = confirmed;
            self.acked_at = now;
        }
        Ok(())
    }

    /// Waits until every record in flight is confirmed or refused, or the
    /// deadline passes.
    async fn drain(&mut self, deadline: Instant) {
        loop {
            let settled = self
                .deliveries
                .prefix
                .lock()
                .expect("prefix lock")
                .is_settled();
            if settled
                || StatusCell::get(&self.sink.status.in_flight_records) == 0
                || self.deliveries.fatal.load(Ordering::SeqCst)
            {
                return;
            }
            tokio::select! {
                _ = self.deliveries.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Deliveries that stall (brokers away) show as `retrying`, and each
    /// stall counts as a retry (librdkafka retries underneath, without
    /// reporting each attempt); the next confirmation shows `running`
    /// again.
    fn report_stall(&mut self) {
        let stalled = StatusCell::get(&self.sink.status.in_flight_records) > 0
            && self.deliveries.since_confirmed() >= STALL;
        if !stalled {
            self.stalled = false;
            return;
        }
        if !self.stalled {
            self.stalled = true;
            StatusCell::add(&self.sink.status.retried, 1);
        }
        {
            let last_error = self
                .deliveries
                .last_error
                .lock()
                .expect("last error lock")
                .clone();
            self.sink.status.retrying(format!(
                "no record confirmed for {} s; librdkafka keeps retrying{}",
                self.deliveries.since_confirmed().as_secs(),
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ));
        }
    }

    fn fatal_reason(&self) -> String {
        match self.producer.client().fatal_error() {
            Some((code, reason)) => format!("the Kafka producer failed ({code}): {reason}"),
            None => "the Kafka producer failed".to_owned(),
        }
    }
}
