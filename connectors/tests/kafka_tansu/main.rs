//! The Kafka connector against a real Kafka-protocol broker (tansu, in
//! memory), for what the mock cannot show: topics created through the
//! admin API, and a broker that stops answering (SIGSTOP) and comes back
//! (SIGCONT) with its log intact.
//!
//! Skipped with a printed reason when tansu is not installed, unless
//! `CI=true` (see `common/tansu.rs`).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/tansu.rs"]
mod tansu;

use std::time::Duration;

use common::*;
use tansu::Tansu;
use tidefeed_connectors::{ConnectorState, KafkaConnector, KafkaOptions, TopicCreation};
use tidefeed_engine::{Mutation, Value};

const WAIT: Duration = Duration::from_secs(60);

fn real_broker_options(tansu: &Tansu) -> KafkaOptions {
    let mut options = options(&tansu.brokers);
    options.topic_creation = TopicCreation::Create {
        partitions: Some(3),
        replication_factor: Some(1),
    };
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_arrives_once_on_created_topics_on_its_key_partition() {
    let Some(tansu) = Tansu::start() else { return };
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), real_broker_options(&tansu))
        .await
        .unwrap();
    for id in 0..30 {
        upsert_user(&store.engine, id, "first").await;
    }
    for id in 0..30 {
        upsert_user(&store.engine, id, "second").await;
    }
    for id in 0..10 {
        write(
            &store.engine,
            vec![Mutation::delete("users", vec![Value::Int64(id)])],
        )
        .await;
    }
    write(
        &store.engine,
        vec![Mutation::upsert("orders", order("eu", 1, 2.5))],
    )
    .await;
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;

    let records = read(&tansu.brokers, &["t.users", "t.orders"], head as usize + 10).await;
    assert_eq!(
        records.len(),
        head as usize + 10,
        "every change and 10 tombstones"
    );
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let mut partitions = std::collections::BTreeSet::new();
    for record in &records {
        let key = record.key.as_deref().unwrap();
        assert_eq!(record.partition, murmur2_partition(key, 3), "{record:?}");
        partitions.insert(record.partition);
        assert_eq!(
            record.topic,
            format!("t.{}", record.header("tidefeed.table").unwrap())
        );
    }
    assert_eq!(
        partitions.len(),
        3,
        "the created topic has the configured 3 partitions"
    );
    // Per key, offsets follow seqs.
    let mut by_key: std::collections::BTreeMap<Vec<u8>, Vec<&Record>> = Default::default();
    for record in records.iter().filter(|r| r.topic == "t.users") {
        by_key
            .entry(record.key.clone().unwrap())
            .or_default()
            .push(record);
    }
    for list in by_key.values_mut() {
        list.sort_by_key(|r| r.offset);
        assert!(
            list.windows(2).all(|w| w[0].seq() <= w[1].seq()),
            "{list:?}"
        );
    }
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_thawed_again_loses_nothing_and_duplicates_nothing() {
    let Some(mut tansu) = Tansu::start() else {
        return;
    };
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), real_broker_options(&tansu))
        .await
        .unwrap();
    let first = write_users(&store.engine, 100, 23).await;
    wait_until(WAIT, "the first writes confirmed", || {
        connector.status().position == first
    })
    .await;

    tansu.freeze();
    let head = write_users(&store.engine, 400, 23).await;
    wait_until(WAIT, "the connector to report retrying", || {
        connector.status().state == ConnectorState::Retrying
    })
    .await;
    let status = connector.status();
    assert!(status.position < head && status.lag_seqs > 0, "{status:?}");
    tansu.thaw();

    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&tansu.brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize, "nothing lost");
    assert!(
        counts.values().all(|n| *n == 1),
        "nothing duplicated: {counts:?}"
    );
    let status = connector.stop(Duration::from_secs(5)).await;
    assert_eq!(status.state, ConnectorState::Stopped);
}
