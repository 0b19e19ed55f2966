//! A broker outage while writes continue, and injected request errors:
//! nothing lost and, with the idempotent producer, nothing duplicated.
//! The in-flight bound holds while Kafka does not answer.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tidefeed_connectors::{ConnectorState, KafkaConnector};
use tidefeed_engine::Mutation;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_while_writes_continue_loses_nothing_and_duplicates_nothing() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 100, 17).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;

    mock.broker_down(1).unwrap();
    let head = write_users(&store.engine, 400, 17).await;
    wait_until(WAIT, "the connector to report retrying", || {
        connector.status().state == ConnectorState::Retrying
    })
    .await;
    let status = connector.status();
    assert!(status.retried >= 1, "a stall counts as a retry: {status:?}");
    assert!(status.position < head, "{status:?}");
    assert_eq!(status.lag_seqs, head - status.position);
    assert!(status.error.is_some(), "{status:?}");

    mock.broker_up(1).unwrap();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize, "nothing lost");
    assert!(
        counts.values().all(|n| *n == 1),
        "nothing duplicated: {counts:?}"
    );
    let status = connector.stop(Duration::from_secs(5)).await;
    assert_eq!((status.failed, status.lag_seqs), (0, 0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_without_loss_or_duplicates() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 3, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    write_users(&store.engine, 10, 10).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let head = write_users(&store.engine, 300, 10).await;
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize, "nothing lost");
    assert!(
        counts.values().all(|n| *n == 1),
        "nothing duplicated: {counts:?}"
    );
    let status = connector.stop(Duration::from_secs(5)).await;
    assert_eq!(status.failed, 0, "{status:?}");
    assert_eq!(status.state, ConnectorState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_bytes_stay_within_max_in_flight_bytes_while_kafka_does_not_answer() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = options(&brokers);
    const MAX: u64 = 32 << 10;
    options.max_in_flight_bytes = MAX as usize;
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    mock.broker_down(1).unwrap();
    // About 600 bytes a record: 300 KiB in all, ten times the bound.
    for i in 0..500 {
        write(
            &store.engine,
            vec![Mutation::upsert(
                "users",
                user_with_note(i, "n", "x".repeat(400)),
            )],
        )
        .await;
    }
    let head = store.engine.visible_seq();
    let mut peak = 0;
    for _ in 0..50 {
        let status = connector.status();
        peak = peak.max(status.in_flight_bytes);
        assert!(status.in_flight_bytes <= MAX + 2048, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peak > MAX / 2, "the bound was reached: {peak}");
    assert!(connector.status().in_flight_records < 100);
    mock.broker_up(1).unwrap();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    connector.stop(Duration::from_secs(5)).await;
}
