//! Exactly-once mode: Kafka transactions, with the position committed in
//! Kafka inside each transaction (see `progress`).
//!
//! A *session* is one transactional producer. It starts by fencing
//! (`init_transactions`), then reads the committed position (in this
//! process, after the first session, the position it committed itself),
//! then reads the log after it. A transaction begins with its first record
//! (no empty transactions) and is committed `commit_interval` later, or
//! sooner when half of `max_in_flight_bytes` is in flight, with the
//! progress record as its last record. After a commit the position is
//! acknowledged to the engine's durable consumer, which holds retention.
//!
//! Errors, as librdkafka documents them:
//! - retriable (a commit that timed out, brokers away): the same commit is
//!   retried with backoff;
//! - abortable (a record refused, a transaction the coordinator gave up):
//!   the transaction is aborted and the session starts again from the
//!   committed position; refused changes are then sent as dead letters,
//!   or stop the connector, as the policy says;
//! - fatal: a fenced producer (another instance with this data
//!   directory's `transactional.id` took over) stops the connector; any
//!   other fatal error starts a new session with a new producer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use tidefeed_engine::Seq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivery::{Deliveries, ErrorClass, PROGRESS_OPAQUE};
use super::producer::{self, Producer};
use super::progress::{self, ChangeMark, Instance, ProgressRecord};
use super::reader::{self, Batch, DeadLetters};
use super::record::OutRecord;
use super::status::StatusCell;
use super::topics::Topics;
use super::{stop_requested, Backoff, End, Sink, TerminalErrorPolicy};

/// A commit that takes longer shows the connector as `retrying`.
const COMMIT_STALL: Duration = Duration::from_secs(2);

pub(crate) async fn run(sink: Sink, mut topics: Topics) {
    let data_dir = sink.engine.data_dir().to_owned();
    let instance = match tokio::task::spawn_blocking(move || Instance::load_or_create(&data_dir))
        .await
        .expect("the instance file does not panic")
    {
        Ok(instance) => instance,
        Err(error) => {
            sink.finish(End::Failed {
                reason: error.to_string(),
                invalidated: None,
            });
            return;
        }
    };
    let transactional_id = instance.transactional_id();
    tracing::info!(transactional_id, progress_topic = %sink.options.progress_topic, "Kafka connector in exactly-once mode");
    let dead_letters = DeadLetters::default();
    // The position this process committed, once it has: later sessions
    // start there rather than read it back.
    let mut committed: Option<Seq> = None;
    // Changes up to here go one record per batch (see `Refusal::alone`).
    let mut isolate_until: Option<Seq> = None;
    let mut backoff = Backoff::new();
    loop {
        let before = committed;
        let end = session(
            &sink,
            &mut topics,
            &instance,
            &transactional_id,
            &dead_letters,
            &mut committed,
            &mut isolate_until,
        )
        .await;
        if committed != before {
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

fn failed(reason: impl Into<String>) -> End {
    End::Failed {
        reason: reason.into(),
        invalidated: None,
    }
}

/// How to read a transactional error.
fn transaction_error(operation: &str, error: &KafkaError) -> (Option<RDKafkaError>, String) {
    let text = format!("{operation}: {error}");
    match error {
        KafkaError::Transaction(e) => (Some(e.clone()), text),
        _ => (None, text),
    }
}

fn is_fenced(error: &RDKafkaError) -> bool {
    matches!(
        error.code(),
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("librdkafka calls do not panic")
}

async fn session(
    sink: &Sink,
    topics: &mut Topics,
    instance: &Instance,
    transactional_id: &str,
    dead_letters: &DeadLetters,
    committed: &mut Option<Seq>,
    isolate_until: &mut Option<Seq>,
) -> End {
    let options = &sink.options;
    let transaction_timeout = match options.transaction_timeout() {
        Ok(timeout) => timeout,
        Err(error) => return failed(error.to_string()),
    };
    if let Some(max) = topics.transaction_max_timeout().await {
        if transaction_timeout > max {
            return failed(format!(
                "transaction.timeout.ms ({}) is more than the brokers allow (transaction.max.timeout.ms = {}): lower it in [kafka.librdkafka]",
                transaction_timeout.as_millis(),
                max.as_millis()
            ));
        }
    }
    topics.ensure_progress(&options.progress_topic).await;
    if isolate_until
        .zip(*committed)
        .is_some_and(|(until, at)| at >= until)
    {
        *isolate_until = None;
    }
    let deliveries = Deliveries::new(0, isolate_until.is_some());
    let producer =
        match producer::create(options, &sink.status, &deliveries, Some(transactional_id)) {
            Ok(producer) => Arc::new(producer),
            Err(error) => return failed(error.to_string()),
        };
    // Fence first: once this returns, no earlier producer of this
    // transactional.id can commit anything, and its open transaction is
    // resolved, so the committed position read next is final.
    let init = {
        let producer = producer.clone();
        let timeout = options.request_timeout;
        blocking(move || producer.init_transactions(timeout)).await
    };
    if let Err(error) = init {
        let (txn, text) =
            transaction_error("fencing earlier instances (init_transactions)", &error);
        let end = match txn {
            Some(e) if e.code() == RDKafkaErrorCode::InvalidTransactionTimeout => failed(format!(
                "{text}: transaction.timeout.ms ({}) is more than the brokers allow",
                transaction_timeout.as_millis()
            )),
            Some(e) if e.is_fatal() && is_fenced(&e) => failed(text),
            _ => End::Retry(text),
        };
        retire(producer, &sink.status).await;
        return end;
    }
    tracing::debug!(
        transactional_id,
        "fenced earlier instances (init_transactions)"
    );
    let position = match *committed {
        Some(position) => position,
        None => {
            let read_options = options.clone();
            let id = transactional_id.to_owned();
            let timeout = options.request_timeout;
            let record =
                match blocking(move || progress::read_committed(&read_options, &id, timeout)).await
                {
                    Ok(record) => record,
                    Err(error) => {
                        retire(producer, &sink.status).await;
                        return End::Retry(error.to_string());
                    }
                };
            match resume_position(sink, record).await {
                Ok(position) => position,
                Err(end) => {
                    retire(producer, &sink.status).await;
                    return end;
                }
            }
        }
    };
    *committed = Some(position);
    sink.status.set_position(position);
    sink.status.running();
    let cancel_reader = CancellationToken::new();
    let batches = reader::spawn(
        sink.engine.clone(),
        sink.record_builder(),
        options.consumer.clone(),
        Some(dead_letters.clone()),
        position,
        cancel_reader.clone(),
    );
    let mut run = Session {
        sink,
        topics,
        producer: producer.clone(),
        deliveries,
        instance,
        transactional_id,
        dead_letters,
        transaction_timeout,
        position,
        open: None,
        isolate_until: *isolate_until,
    };
    let end = run.serve(batches).await;
    cancel_reader.cancel();
    *committed = Some(run.position);
    *isolate_until = run.isolate_until;
    drop(run);
    retire(producer, &sink.status).await;
    end
}

/// Where a new session starts: the committed progress, checked against
/// this data directory's log; without one, the durable consumer's
/// position.
async fn resume_position(sink: &Sink, record: Option<ProgressRecord>) -> Result<Seq, End> {
    let engine = &sink.engine;
    let name = &sink.options.consumer;
    let consumer = engine.consumer(name).map_err(End::from_engine)?;
    if let Some(reason) = consumer.invalidated {
        return Err(End::from_engine(
            tidefeed_engine::Error::ConsumerInvalidated {
                name: name.clone(),
                reason,
            },
        ));
    }
    let Some(record) = record else {
        tracing::info!(
            position = consumer.position,
            "no committed progress in Kafka: starting at the durable consumer's position"
        );
        return Ok(consumer.position);
    };
    let visible = engine.visible_seq();
    if record.seq > visible {
        return Err(failed(format!(
            "the progress committed in Kafka ({}) is ahead of this data directory's log (visible seq {visible}): was the data directory restored from an older copy? Its changes after seq {} would never reach Kafka",
            record.seq, consumer.position
        )));
    }
    // The durable consumer is acknowledged only after a commit, so it is
    // never ahead of Kafka's progress, unless an operator deleted an
    // invalidated consumer (whose history is gone) and the connector
    // created it again at the oldest retained change.
    if record.seq < consumer.position {
        tracing::warn!(
            committed = record.seq,
            consumer_position = consumer.position,
            "the durable consumer is ahead of the progress committed in Kafka (was it deleted and created again?)"
        );
        if record.seq < engine.low_water() {
            tracing::warn!(
                position = consumer.position,
                "changes after the committed progress are gone: starting at the durable consumer's position"
            );
            return Ok(consumer.position);
        }
    }
    let low_water = engine.low_water();
    if record.seq < low_water {
        return Err(failed(format!(
            "the progress committed in Kafka ({}) is below the retained history (low-water {low_water}): changes in between are gone",
            record.seq
        )));
    }
    // Kafka ahead of the durable consumer is what a crash between a commit
    // and its acknowledgement leaves; it is also what a data directory
    // restored from an older copy shows, when the seqs after the copy
    // name other changes here than the ones Kafka holds. The consumer
    // holds retention at its position, so change `record.seq` is here.
    if let Some(mark) = record
        .last
        .as_ref()
        .filter(|_| record.seq > consumer.position)
    {
        let change = sink.read_change(record.seq).await?;
        let mut records = Vec::new();
        sink.record_builder()
            .records(&change, &mut records)
            .map_err(|error| failed(format!("change {}: {error}", record.seq)))?;
        let here = records.first().map(ChangeMark::of);
        if here.as_ref() != Some(mark) {
            return Err(failed(format!(
                "the progress committed in Kafka ({}) is for another log: Kafka's change {} is {mark:?}, this data directory's is {here:?}. Was the data directory restored from an older copy? Its changes after seq {} would never reach Kafka. Forward them by other means, or remove this data directory's instance file ({}) to forward as a new instance from the durable consumer's position",
                record.seq,
                record.seq,
                consumer.position,
                progress::INSTANCE_FILE,
            )));
        }
    }
    engine
        .ack_consumer(name, record.seq)
        .map_err(End::from_engine)?;
    tracing::info!(
        position = record.seq,
        first_seq = record.first_seq,
        "resuming from the progress committed in Kafka"
    );
    Ok(record.seq)
}

/// Drops a producer off the executor, keeping its retry count.
async fn retire(producer: Arc<Producer>, status: &StatusCell) {
    blocking(move || drop(producer)).await;
    let retries = status.producer_retries.swap(0, Ordering::Relaxed);
    StatusCell::add(&status.producer_retries_before, retries);
    status.in_flight_bytes.store(0, Ordering::Relaxed);
    status.in_flight_records.store(0, Ordering::Relaxed);
}

/// The open transaction.
struct Open {
    first: Seq,
    last: Seq,
    /// Change `last`: commit time, table, op.
    last_mark: (i64, Arc<str>, tidefeed_feed::EventOp),
    began: Instant,
}

struct Session<'a> {
    sink: &'a Sink,
    topics: &'a mut Topics,
    producer: Arc<Producer>,
    deliveries: Arc<Deliveries>,
    instance: &'a Instance,
    transactional_id: &'a str,
    dead_letters: &'a DeadLetters,
    transaction_timeout: Duration,
    /// Committed in Kafka up to here.
    position: Seq,
    open: Option<Open>,
    /// Changes up to here go one record per batch; then a new session
    /// batches again.
    isolate_until: Option<Seq>,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        mut batches: tokio::sync::mpsc::Receiver<Result<Batch, reader::ReadError>>,
    ) -> End {
        let mut stop = self.sink.stop.clone();
        let mut tick = tokio::time::interval(
            self.sink
                .options
                .commit_interval
                .min(Duration::from_millis(50)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(end) = self.check_producer().await {
                return end;
            }
            if self
                .isolate_until
                .is_some_and(|until| self.position >= until)
                && !self.sink.stopping()
            {
                // Past the refused batch: a new producer batches again.
                if let Err(end) = self.commit().await {
                    return end;
                }
                self.isolate_until = None;
                return End::Resend("past the records refused with their batch".to_owned());
            }
            tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => return self.shut_down().await,
                _ = self.deliveries.wake.notified() => {}
                _ = tick.tick() => {
                    if let Err(end) = self.commit_if_due().await {
                        return end;
                    }
                }
                batch = batches.recv() => match batch {
                    Some(Ok(batch)) => {
                        if let Err(end) = self.produce(batch).await {
                            return end;
                        }
                    }
                    Some(Err(error)) => {
                        let end = End::from_read(error);
                        self.abort().await;
                        return end;
                    }
                    None => return End::Retry("the change reader stopped".to_owned()),
                },
            }
        }
    }

    /// Refusals and fatal errors: an abortable transaction is aborted at
    /// once rather than at its commit.
    async fn check_producer(&mut self) -> Option<End> {
        // Checked whenever anything was reported: the fatal error may
        // reach the records' delivery reports before the error callback.
        if let Some(end) = self.fatal() {
            return Some(end);
        }
        let refusals = self.deliveries.take_refusals();
        if refusals.iter().all(|r| r.class == ErrorClass::Purged) {
            return None;
        }
        let end = self.refused(refusals);
        self.abort().await;
        Some(end)
    }

    /// The producer's fatal error, if it has one: being fenced is final,
    /// anything else starts a new session with a new producer.
    fn fatal(&self) -> Option<End> {
        let (code, reason) = self.producer.client().fatal_error()?;
        let reason = format!("the Kafka producer failed ({code}): {reason}");
        Some(
            if matches!(
                code,
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::Fenced
            ) {
                failed(format!(
                    "{reason}: another instance with this data directory's transactional.id took over"
                ))
            } else {
                End::Retry(reason)
            },
        )
    }

    /// What refused records mean for the next session.
    fn refused(&mut self, refusals: Vec<super::delivery::Refusal>) -> End {
        let mut retry = None;
        for refusal in refusals {
            match refusal.class {
                ErrorClass::Purged => {}
                ErrorClass::Retry => {
                    retry.get_or_insert_with(|| {
                        format!(
                            "Kafka did not take a record for topic {:?}: {}",
                            refusal.topic, refusal.code
                        )
                    });
                }
                ErrorClass::Terminal if refusal.maybe_about_the_batch() => {
                    // The batch may be what was refused: the record is
                    // tried again in a batch of its own first.
                    tracing::warn!(seq = refusal.seq, topic = %refusal.topic, error = %refusal.code, "Kafka refused a batch; sending each record on its own");
                    self.isolate_until = Some(self.isolate_until.unwrap_or(0).max(refusal.seq));
                    retry.get_or_insert_with(|| {
                        format!(
                            "Kafka refused a batch holding change {} ({}); sending each record in a batch of its own",
                            refusal.seq, refusal.code
                        )
                    });
                }
                ErrorClass::Terminal if refusal.progress => {
                    return failed(format!(
                        "the progress topic {:?} refused the progress record for good ({})",
                        refusal.topic, refusal.code
                    ))
                }
                ErrorClass::Terminal => {
                    StatusCell::add(&self.sink.status.failed, 1);
                    tracing::error!(seq = refusal.seq, topic = %refusal.topic, error = %refusal.code, "Kafka refused a record for good");
                    match &self.sink.options.on_terminal_error {
                        TerminalErrorPolicy::Stop => {
                            return failed(format!(
                                "Kafka refused change {} for topic {:?} for good ({}); on_terminal_error = \"stop\" stopped the connector before it",
                                refusal.seq, refusal.topic, refusal.code
                            ))
                        }
                        TerminalErrorPolicy::DeadLetter { .. } if refusal.dead_letter => {
                            return failed(format!(
                                "the dead-letter topic {:?} refused change {} too ({})",
                                refusal.topic, refusal.seq, refusal.code
                            ))
                        }
                        TerminalErrorPolicy::DeadLetter { topic } => {
                            tracing::warn!(seq = refusal.seq, dead_letter_topic = %topic, "the change will be sent key-only to the dead-letter topic");
                            self.dead_letters
                                .lock()
                                .expect("dead letters lock")
                                .insert(refusal.seq, refusal.code.to_string());
                        }
                    }
                }
            }
        }
        End::Retry(retry.unwrap_or_else(|| {
            "the transaction held refused records; sending them as dead letters".to_owned()
        }))
    }

    async fn produce(&mut self, batch: Batch) -> Result<(), End> {
        let max = self.sink.options.max_in_flight_bytes as u64;
        for (i, record) in batch.records.iter().enumerate() {
            self.topics.ensure(&record.topic).await;
            let in_flight = StatusCell::get(&self.sink.status.in_flight_bytes);
            // A commit never splits an event from its tombstone.
            let starts_seq = i == 0 || batch.records[i - 1].seq != record.seq;
            if self.open.is_some() && in_flight + record.size() as u64 > max / 2 && starts_seq {
                self.commit().await?;
            }
            self.begin_if_needed(record)?;
            self.send(record).await?;
            if let Some(open) = &mut self.open {
                if open.last != record.seq {
                    open.last = record.seq;
                    open.last_mark = (record.ts_micros, record.table.clone(), record.op);
                }
            }
        }
        Ok(())
    }

    fn begin_if_needed(&mut self, record: &OutRecord) -> Result<(), End> {
        if self.open.is_some() {
            return Ok(());
        }
        if let Err(error) = self.producer.begin_transaction() {
            let (txn, text) = transaction_error("beginning a transaction", &error);
            return Err(match txn {
                Some(e) if e.is_fatal() && is_fenced(&e) => failed(text),
                _ => End::Retry(text),
            });
        }
        self.open = Some(Open {
            first: record.seq,
            last: record.seq,
            last_mark: (record.ts_micros, record.table.clone(), record.op),
            began: Instant::now(),
        });
        Ok(())
    }

    async fn send(&mut self, record: &OutRecord) -> Result<(), End> {
        let mut stop = self.sink.stop.clone();
        loop {
            match producer::send(&self.producer, &self.sink.status, record) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::select! {
                        biased;
                        _ = stop_requested(&mut stop) => return Err(self.shut_down().await),
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                    }
                }
                Err(error) => {
                    if let Some(end) = self.fatal() {
                        return Err(end);
                    }
                    let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                    let refusal = super::delivery::Refusal {
                        seq: record.seq,
                        code,
                        class: super::delivery::classify(code),
                        topic: record.topic.to_string(),
                        tombstone: record.value.is_none(),
                        dead_letter: record.dead_letter.is_some(),
                        progress: false,
                        alone: true,
                    };
                    let end = self.refused(vec![refusal]);
                    self.abort().await;
                    return Err(end);
                }
            }
        }
    }

    async fn commit_if_due(&mut self) -> Result<(), End> {
        match &self.open {
            Some(open) if open.began.elapsed() >= self.sink.options.commit_interval => {
                self.commit().await
            }
            _ => Ok(()),
        }
    }

    /// Commits the open transaction with its progress record; retries a
    /// retriable failure, aborts on an abortable one.
    async fn commit(&mut self) -> Result<(), End> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let (ts_micros, table, op) = &open.last_mark;
        let record = ProgressRecord {
            seq: open.last,
            first_seq: open.first,
            instance_id: self.instance.id.clone(),
            last: Some(ChangeMark {
                ts_micros: *ts_micros,
                table: table.to_string(),
                op: op.name().to_owned(),
            }),
        };
        let value = serde_json::to_vec(&record).expect("progress records serialise");
        let progress = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
            &self.sink.options.progress_topic,
            PROGRESS_OPAQUE,
        )
        .partition(0)
        .key(self.transactional_id.as_bytes())
        .payload(&value[..]);
        self.deliveries
            .progress_pending
            .store(true, Ordering::SeqCst);
        if let Err((error, _)) = self.producer.send(progress) {
            self.deliveries
                .progress_pending
                .store(false, Ordering::SeqCst);
            let text = format!("sending the progress record: {error}");
            self.abort().await;
            return Err(End::Retry(text));
        }
        self.await_deliveries().await;
        let mut backoff = Backoff::new();
        loop {
            let producer = self.producer.clone();
            let timeout = self.operation_timeout();
            let mut commit =
                tokio::task::spawn_blocking(move || producer.commit_transaction(timeout));
            // A commit blocks until Kafka confirms every record: one that
            // waits long (brokers away) shows as `retrying` meanwhile.
            let result = tokio::select! {
                result = &mut commit => result,
                _ = tokio::time::sleep(COMMIT_STALL) => {
                    self.sink.status.retrying(format!(
                        "a transaction commit has waited for Kafka for more than {} s",
                        COMMIT_STALL.as_secs()
                    ));
                    commit.await
                }
            }
            .expect("librdkafka calls do not panic");
            match result {
                Ok(()) => break,
                Err(error) => {
                    let (txn, text) = transaction_error("committing a transaction", &error);
                    match txn {
                        Some(e) if e.is_fatal() => {
                            return Err(if is_fenced(&e) {
                                failed(text)
                            } else {
                                End::Retry(text)
                            })
                        }
                        Some(e) if e.txn_requires_abort() => {
                            let refusals = self.deliveries.take_refusals();
                            let end = if refusals.iter().any(|r| r.class != ErrorClass::Purged) {
                                self.refused(refusals)
                            } else {
                                End::Retry(text)
                            };
                            self.abort().await;
                            return Err(end);
                        }
                        // Retriable (the documented case), or a flush that
                        // timed out before the commit was even sent: the
                        // same commit again, unless a stop's deadline has
                        // passed.
                        _ => {
                            StatusCell::add(&self.sink.status.retried, 1);
                            self.sink.status.retrying(text.clone());
                            tracing::warn!(reason = %text, "retrying the commit");
                            let stopping = self.sink.stopping();
                            if stopping && Instant::now() >= self.sink.stop_deadline() {
                                return Err(End::Stopped);
                            }
                            tokio::time::sleep(backoff.next()).await;
                        }
                    }
                }
            }
        }
        self.position = open.last;
        self.sink.status.set_position(open.last);
        StatusCell::add(&self.sink.status.transactions_committed, 1);
        self.sink.status.running();
        self.sink
            .engine
            .ack_consumer(&self.sink.options.consumer, open.last)
            .map_err(End::from_engine)?;
        Ok(())
    }

    /// Waits (without blocking a thread) until every record of the
    /// transaction has its delivery report, or a refusal or fatal error
    /// turns up, or a stop's deadline passes. The commit that follows
    /// then finds nothing to flush: librdkafka's flush in
    /// `commit_transaction` would otherwise poll in 100 ms steps.
    async fn await_deliveries(&self) {
        let started = Instant::now();
        let mut reported = false;
        loop {
            let settled = StatusCell::get(&self.sink.status.in_flight_records) == 0
                && !self.deliveries.progress_pending.load(Ordering::SeqCst);
            let trouble = self.deliveries.fatal.load(Ordering::SeqCst)
                || !self
                    .deliveries
                    .refusals
                    .lock()
                    .expect("refusals lock")
                    .is_empty();
            if settled || trouble {
                return;
            }
            let stopping = self.sink.stopping();
            if stopping && Instant::now() >= self.sink.stop_deadline() {
                return;
            }
            if !reported && started.elapsed() >= COMMIT_STALL {
                reported = true;
                StatusCell::add(&self.sink.status.retried, 1);
                self.sink.status.retrying(format!(
                    "a transaction's records have waited for Kafka for more than {} s; librdkafka keeps retrying{}",
                    COMMIT_STALL.as_secs(),
                    self.deliveries
                        .last_error
                        .lock()
                        .expect("last error lock")
                        .as_ref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ));
            }
            tokio::select! {
                _ = self.deliveries.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// How long a commit or an abort may block: the transaction timeout,
    /// or what is left of a stop's grace period (at least a second).
    fn operation_timeout(&self) -> Duration {
        if self.sink.stopping() {
            let left = self
                .sink
                .stop_deadline()
                .saturating_duration_since(Instant::now());
            left.clamp(Duration::from_secs(1), self.transaction_timeout)
        } else {
            self.transaction_timeout
        }
    }

    /// Aborts the open transaction, if any. Its records are never seen by
    /// `read_committed` consumers (on brokers with transaction markers).
    async fn abort(&mut self) {
        if self.open.take().is_none() {
            return;
        }
        StatusCell::add(&self.sink.status.transactions_aborted, 1);
        let producer = self.producer.clone();
        let timeout = self.operation_timeout();
        if let Err(error) = blocking(move || producer.abort_transaction(timeout)).await {
            tracing::warn!(%error, "aborting a transaction failed; the next session's fencing ends it");
        }
    }

    /// A stop: commit what is open, within the deadline.
    async fn shut_down(&mut self) -> End {
        if self.sink.abandoned() {
            // As a crash would: nothing committed, nothing aborted.
            self.open = None;
            return End::Stopped;
        }
        if self.open.is_some() {
            if let Err(end) = self.commit().await {
                return match end {
                    End::Stopped => End::Stopped,
                    other => other,
                };
            }
        }
        End::Stopped
    }
}
