//! Records Kafka refuses for good (too large, not authorized) follow the
//! configured policy: stop with the position before them, or go key-only
//! to the dead-letter topic. Never skipped silently.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tidefeed_connectors::{ConnectorState, KafkaConnector, KafkaOptions, TerminalErrorPolicy};
use tidefeed_engine::{Mutation, Seq};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

fn dead_letter(mut options: KafkaOptions) -> KafkaOptions {
    options.on_terminal_error = TerminalErrorPolicy::DeadLetter {
        topic: "t.dead-letter".into(),
    };
    options
}

/// Small users, one too large for `message.max.bytes = 10000`, more small
/// ones. Returns (the large one's seq, the head).
async fn write_with_one_oversized(store: &Store) -> (Seq, Seq) {
    write_users(&store.engine, 5, 5).await;
    let big = write(
        &store.engine,
        vec![Mutation::upsert(
            "users",
            user_with_note(100, "big", "x".repeat(20_000)),
        )],
    )
    .await
    .last_seq()
    .unwrap();
    let head = write_users(&store.engine, 5, 5).await;
    (big, head)
}

fn small_messages(mut options: KafkaOptions) -> KafkaOptions {
    options
        .librdkafka
        .push(("message.max.bytes".into(), "10000".into()));
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_stops_the_connector_before_it_under_the_stop_policy() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), small_messages(options(&brokers)))
        .await
        .unwrap();
    let (big, _) = write_with_one_oversized(&store).await;
    wait_until(WAIT, "the connector to stop", || {
        connector.status().state == ConnectorState::Failed
    })
    .await;
    let status = connector.status();
    assert_eq!(status.position, big - 1, "nothing skipped: {status:?}");
    assert_eq!(status.failed, 1);
    let error = status.error.unwrap();
    assert!(
        error.contains(&format!("change {big}"))
            && error.contains("too large")
            && error.contains("stop"),
        "{error}"
    );
    assert_eq!(
        store.engine.consumer("kafka-connector").unwrap().position,
        big - 1,
        "the durable position holds before the refused change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_goes_key_only_to_the_dead_letter_topic_and_the_rest_flows() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(
        store.engine.clone(),
        dead_letter(small_messages(options(&brokers))),
    )
    .await
    .unwrap();
    let (big, head) = write_with_one_oversized(&store).await;
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    assert_eq!((status.failed, status.dead_lettered), (1, 1), "{status:?}");
    assert_eq!(status.state, ConnectorState::Running);

    let data = read(&brokers, &["t.users"], head as usize - 1).await;
    let counts = event_counts(&data);
    assert_eq!(counts.len(), head as usize - 1);
    assert!(!counts.contains_key(&big));
    let dead = read(&brokers, &["t.dead-letter"], 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let record = &dead[0];
    assert_eq!(record.seq(), big);
    assert_eq!(record.key_json(), serde_json::json!({"id": 100}));
    let value = record.value_json();
    assert_eq!(value["truncated"], true, "key-only: {value}");
    assert_eq!(value["key"], serde_json::json!({"id": 100}));
    assert!(value["after"].is_null());
    assert_eq!(record.header("tidefeed.topic"), Some("t.users"));
    assert!(record
        .header("tidefeed.error")
        .unwrap()
        .contains("too large"));
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_failure_stops_the_connector_under_the_stop_policy() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 5, 5).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    write_users(&store.engine, 5, 5).await;
    wait_until(WAIT, "the connector to stop", || {
        connector.status().state == ConnectorState::Failed
    })
    .await;
    let status = connector.status();
    assert_eq!(status.position, first, "nothing skipped: {status:?}");
    assert!(status.failed >= 1);
    assert!(status.error.unwrap().contains("Authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_failure_sends_the_refused_changes_to_the_dead_letter_topic() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), dead_letter(options(&brokers)))
        .await
        .unwrap();
    let first = write_users(&store.engine, 5, 5).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let head = write_users(&store.engine, 20, 5).await;
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    assert!(status.failed >= 1, "{status:?}");
    assert_eq!(status.failed, status.dead_lettered, "{status:?}");
    let data = read(&brokers, &["t.users"], 1).await;
    let dead = read(&brokers, &["t.dead-letter"], status.dead_lettered as usize).await;
    assert_eq!(dead.len() as u64, status.dead_lettered);
    assert!(dead.iter().all(|r| r
        .header("tidefeed.error")
        .unwrap()
        .contains("Authorization")));
    // Every change is on the data topic or dead-lettered; none is lost.
    let mut seen = event_counts(&data);
    for record in &dead {
        *seen.entry(record.seq()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), head as usize, "{seen:?}");
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_that_is_not_created_stops_the_connector_under_the_stop_policy() {
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    // The brokers say the topic does not exist (and create none).
    mock.topic_error(
        "t.users",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    let store = Store::new();
    let mut options = options(&brokers);
    options
        .librdkafka
        .push(("topic.metadata.propagation.max.ms".into(), "500".into()));
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    write_users(&store.engine, 3, 3).await;
    wait_until(WAIT, "the connector to stop", || {
        connector.status().state == ConnectorState::Failed
    })
    .await;
    let status = connector.status();
    assert_eq!(status.position, 0, "nothing skipped: {status:?}");
    assert!(status.failed >= 1);
    let error = status.error.unwrap();
    assert!(
        error.contains("change 1") && error.contains("t.users"),
        "{error}"
    );
}
