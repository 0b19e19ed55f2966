//! Adversarial checks of error handling: refusals Kafka will repeat
//! forever must follow the terminal-error policy rather than loop, a
//! refusal of a whole produce request must not dead-letter records that
//! fit, a slow broker keeps the in-flight bound, and a clean stop with
//! records in flight leaves nothing to send twice.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tidefeed_connectors::{
    ConnectorState, DeliveryMode, KafkaConnector, KafkaOptions, TerminalErrorPolicy,
};
use tidefeed_engine::Mutation;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

fn dead_letter(mut options: KafkaOptions) -> KafkaOptions {
    options.on_terminal_error = TerminalErrorPolicy::DeadLetter {
        topic: "t.dead-letter".into(),
    };
    options
}

/// A broker that bounds record timestamps (`message.timestamp.
/// difference.max.ms`, `log.message.timestamp.before.max.ms`) refuses a
/// backlog's old commit times with INVALID_TIMESTAMP, on every attempt:
/// the record's timestamp is its commit time and never changes. That is a
/// refusal for good, so the `stop` policy must stop the connector before
/// the change, naming it, instead of rebuilding its producer and sending
/// the same records again forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_the_broker_refuses_for_good_follows_the_stop_policy() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 3, 3).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;
    // The broker refuses every later produce request the same way.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP; 200],
    );
    write_users(&store.engine, 3, 3).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        wait_until(WAIT, "the connector to stop", || {
            connector.status().state == ConnectorState::Failed
        }),
    )
    .await;
    let status = connector.status();
    assert!(
        outcome.is_ok(),
        "still {:?} after 15 s with {} retries: {status:?}",
        status.state,
        status.retried
    );
    assert_eq!(status.position, first, "{status:?}");
    assert!(status.failed >= 1, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains(&format!("change {}", first + 1)), "{error}");
}

/// A broker refuses a whole produce request with MESSAGE_TOO_LARGE when
/// the *batch* is over its limit (a topic's `max.message.bytes` below
/// the producer's batch size), though each record in it fits. Records
/// that fit must not be dead-lettered (they are not "too large"): they
/// belong on their topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_dead_letters_no_record_that_fits() {
    a_batch_refusal_dead_letters_no_record_kafka_takes(
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        DeliveryMode::AtLeastOnce,
    )
    .await;
}

/// The same with INVALID_TIMESTAMP: a broker validating timestamps refuses
/// the whole batch when one record is out of bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_one_timestamp_dead_letters_no_record_kafka_takes() {
    a_batch_refusal_dead_letters_no_record_kafka_takes(
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP,
        DeliveryMode::AtLeastOnce,
    )
    .await;
}

/// One produce request of 50 small records refused with `error` once:
/// none is dead-lettered, all arrive, and batching resumes afterwards
/// (exactly-once: after aborting the transaction).
pub(crate) async fn a_batch_refusal_dead_letters_no_record_kafka_takes(
    error: RDKafkaRespErr,
    mode: DeliveryMode,
) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    mock.create_topic("t.__progress", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = dead_letter(options(&brokers));
    options.mode = mode;
    options.librdkafka = vec![("linger.ms".into(), "50".into())];
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    let first = write_users(&store.engine, 2, 2).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;
    mock.request_errors(RDKafkaApiKey::Produce, &[error]);
    // One write of 50 small rows: one produce request.
    let batch = (0..50)
        .map(|i| Mutation::upsert("users", user(i, "small")))
        .collect();
    write(&store.engine, batch).await;
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    let data = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&data);
    assert_eq!(
        status.dead_lettered,
        0,
        "{} records dead-lettered, {} of {head} changes on the data topic: {status:?}",
        status.dead_lettered,
        counts.len()
    );
    assert_eq!(counts.len(), head as usize);
    if mode == DeliveryMode::ExactlyOnce {
        assert!(status.transactions_aborted >= 1, "{status:?}");
    }
    // Batching again afterwards: later changes still arrive.
    let later = write_users(&store.engine, 5, 5).await;
    wait_until(WAIT, "later changes confirmed", || {
        connector.status().position == later
    })
    .await;
    assert_eq!(connector.status().dead_lettered, 0);
    connector.stop(Duration::from_secs(5)).await;
}

/// A record the broker refuses for its timestamp, with the batch and on
/// its own, goes to the dead-letter topic (timestamped when it is sent,
/// so a broker-wide timestamp bound does not refuse it too), and the
/// stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_for_its_timestamp_is_dead_lettered_and_the_stream_goes_on() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), dead_letter(options(&brokers)))
        .await
        .unwrap();
    let first = write_users(&store.engine, 1, 1).await;
    wait_until(WAIT, "the first write confirmed", || {
        connector.status().position == first
    })
    .await;
    // Refused in its batch, then on its own.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP; 2],
    );
    let refused = write(
        &store.engine,
        vec![Mutation::upsert("users", user(7, "late"))],
    )
    .await
    .last_seq()
    .unwrap();
    wait_until(WAIT, "the refused change passed", || {
        connector.status().position == refused
    })
    .await;
    let later = write_users(&store.engine, 3, 3).await;
    wait_until(WAIT, "later changes confirmed", || {
        connector.status().position == later
    })
    .await;
    let status = connector.status();
    assert_eq!(status.dead_lettered, 1, "{status:?}");
    assert_eq!(status.state, ConnectorState::Running, "{status:?}");
    let dead = read(&brokers, &["t.dead-letter"], 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].seq(), refused);
    connector.stop(Duration::from_secs(5)).await;
}

/// A slow broker (half a second per request): the in-flight bound holds,
/// and every change still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_keeps_in_flight_bytes_within_the_bound() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = options(&brokers);
    const MAX: u64 = 16 << 10;
    options.max_in_flight_bytes = MAX as usize;
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    mock.broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    let mut peak = 0;
    for i in 0..200 {
        write(
            &store.engine,
            vec![Mutation::upsert(
                "users",
                user_with_note(i, "n", "y".repeat(300)),
            )],
        )
        .await;
        let status = connector.status();
        peak = peak.max(status.in_flight_bytes);
        assert!(status.in_flight_bytes <= MAX, "{status:?}");
    }
    let head = store.engine.visible_seq();
    let deadline = std::time::Instant::now() + WAIT;
    while connector.status().position < head {
        let status = connector.status();
        peak = peak.max(status.in_flight_bytes);
        assert!(status.in_flight_bytes <= MAX, "{status:?}");
        assert!(std::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(peak > MAX / 2, "the bound was reached: {peak}");
    mock.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(counts.values().all(|n| *n == 1));
    connector.stop(Duration::from_secs(5)).await;
}

/// A clean stop with records in flight on a slow broker waits for their
/// confirmations (within the grace period) and acknowledges them: a
/// restart then sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_with_records_in_flight_leaves_nothing_to_send_twice() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 3, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    mock.broker_round_trip_time(1, Duration::from_millis(400))
        .unwrap();
    let first = write_users(&store.engine, 200, 31).await;
    wait_until(WAIT, "records in flight", || {
        connector.status().in_flight_records > 0
    })
    .await;
    let status = connector.stop(Duration::from_secs(10)).await;
    assert_eq!(status.state, ConnectorState::Stopped, "{status:?}");
    // The stop may come before the reader reached the head; what was
    // handed over has settled and is acknowledged.
    assert!(status.position <= first, "{status:?}");
    assert_eq!(status.in_flight_records, 0, "{status:?}");
    assert_eq!(
        store.engine.consumer("kafka-connector").unwrap().position,
        status.position
    );
    mock.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let head = write_users(&store.engine, 50, 31).await;
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the rest confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice after a clean stop: {twice:?}");
    connector.stop(Duration::from_secs(5)).await;
}
