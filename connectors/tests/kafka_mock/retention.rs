//! The connector's position holds retention; its lag shows in the status
//! and on the durable consumer; an outage past the retention cap
//! invalidates it loudly.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidefeed_connectors::{ConnectorState, KafkaConnector};
use tidefeed_engine::{Engine, InvalidationReason};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

async fn flush_and_compact(engine: &Engine) {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.flush().unwrap();
        engine.compact().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_holds_retention_through_an_outage_and_the_lag_is_visible() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::with(|o| {
        o.memtable_bytes = 8 << 10;
        // Without a consumer, everything flushed would leave history.
        o.history_window = Some(Duration::ZERO);
    });
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 50, 7).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;
    // Acknowledgements reach the engine every ack_interval.
    wait_until(WAIT, "the position acknowledged", || {
        store.engine.consumer("kafka-connector").unwrap().position == first
    })
    .await;

    mock.broker_down(1).unwrap();
    let head = write_users(&store.engine, 500, 7).await;
    flush_and_compact(&store.engine).await;
    let low_water = store.engine.low_water();
    assert!(
        low_water <= first,
        "retention held at the position: {low_water} > {first}"
    );
    let status = connector.status();
    assert_eq!(status.position, first);
    assert_eq!(status.lag_seqs, head - first);
    assert_eq!(
        store.engine.consumer("kafka-connector").unwrap().lag,
        head - first
    );

    mock.broker_up(1).unwrap();
    wait_until(WAIT, "the backlog forwarded", || {
        connector.status().position == head
    })
    .await;
    assert_eq!(connector.status().lag_seqs, 0);
    let records = read(&brokers, &["t.users"], head as usize).await;
    assert_eq!(
        event_counts(&records).len(),
        head as usize,
        "the backlog came from disk, whole"
    );
    wait_until(WAIT, "the position acknowledged", || {
        store.engine.consumer("kafka-connector").unwrap().position == head
    })
    .await;
    flush_and_compact(&store.engine).await;
    assert!(
        store.engine.low_water() > low_water,
        "retention moves on with the position"
    );
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retention_cap_invalidates_the_connector_loudly() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::with(|o| {
        o.memtable_bytes = 8 << 10;
        o.history_window = Some(Duration::ZERO);
        o.max_retention_bytes = Some(16 << 10);
    });
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 20, 7).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;

    mock.broker_down(1).unwrap();
    write_users(&store.engine, 2000, 500).await;
    flush_and_compact(&store.engine).await;
    let engine = store.engine.clone();
    tokio::task::spawn_blocking(move || engine.settle().unwrap())
        .await
        .unwrap();
    let info = store.engine.consumer("kafka-connector").unwrap();
    assert!(
        matches!(
            info.invalidated,
            Some(InvalidationReason::RetentionCap { .. })
        ),
        "{info:?}"
    );
    wait_until(WAIT, "the connector to fail", || {
        connector.status().state == ConnectorState::Failed
    })
    .await;
    let status = connector.status();
    assert!(
        matches!(
            status.invalidated,
            Some(InvalidationReason::RetentionCap { .. })
        ),
        "{status:?}"
    );
    let error = status.error.unwrap();
    assert!(
        error.contains("invalidated") && error.contains("max_retention_bytes"),
        "{error}"
    );
    assert!(status.position >= first);
    mock.broker_up(1).unwrap();
}
