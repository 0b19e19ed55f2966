//! Every change arrives once, on its table's topic, on its key's
//! partition, with key, value, headers and tombstones as specified, in seq
//! order per key.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidefeed_connectors::{ConnectorState, KafkaConnector};
use tidefeed_engine::{Mutation, Value};
use tidefeed_feed::{Filter, Format};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// A mixed workload: inserts, updates, patches, deletes and an atomic
/// batch across both tables. Returns the number of deletes.
async fn workload(store: &Store) -> usize {
    let engine = &store.engine;
    for id in 1..=5 {
        upsert_user(engine, id, &format!("user {id}")).await;
    }
    upsert_user(engine, 1, "renamed").await;
    write(
        engine,
        vec![Mutation::patch(
            "users",
            vec![Value::Int64(2)],
            vec![("note".into(), Value::String("patched".into()))],
        )],
    )
    .await;
    write(
        engine,
        vec![Mutation::delete("users", vec![Value::Int64(3)])],
    )
    .await;
    write(
        engine,
        vec![
            Mutation::upsert("users", user(6, "six")),
            Mutation::upsert("orders", order("eu", 1, 9.5)),
            Mutation::delete("users", vec![Value::Int64(4)]),
        ],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("orders", order("us", 1, 1.0))],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("orders", order("eu", 1, 10.25))],
    )
    .await;
    write(
        engine,
        vec![Mutation::delete(
            "orders",
            vec![Value::String("eu".into()), Value::Int64(1)],
        )],
    )
    .await;
    upsert_user(engine, 3, "back again").await;
    3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_arrives_once_on_its_key_partition_with_headers_and_tombstones_in_seq_order() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 3, 1).unwrap();
    mock.create_topic("t.orders", 3, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    let deletes = workload(&store).await;
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;

    let records = read(&brokers, &["t.users", "t.orders"], head as usize + deletes).await;
    assert_eq!(records.len(), head as usize + deletes, "{records:#?}");
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    assert_eq!(*counts.keys().next().unwrap(), 1);

    // The value is the feed's own encoding of the change.
    let page = store.engine.changes(0, None).unwrap().count();
    assert_eq!(page as u64, head);
    let encoded: HashMap<u64, Vec<u8>> = tidefeed_feed::read_page(
        &store.engine,
        0,
        head as usize,
        &Filter::default(),
        Format::Native,
    )
    .unwrap()
    .events
    .into_iter()
    .map(|(seq, bytes)| (seq, bytes.to_vec()))
    .collect();
    let mut tombstones = 0;
    for record in &records {
        let seq = record.seq();
        let event: serde_json::Value = serde_json::from_slice(&encoded[&seq]).unwrap();
        let table = event["table"].as_str().unwrap();
        assert_eq!(record.topic, format!("t.{table}"));
        assert_eq!(record.header("tidefeed.table"), Some(table));
        assert_eq!(record.header("tidefeed.op"), event["op"].as_str());
        let batch: serde_json::Value =
            serde_json::from_str(record.header("tidefeed.batch").unwrap()).unwrap();
        assert_eq!(batch, event["batch"]);
        assert_eq!(
            record.key_json(),
            event["key"],
            "the key is the JSON object of the primary key"
        );
        let key = record.key.as_deref().unwrap();
        assert_eq!(
            record.partition,
            murmur2_partition(key, 3),
            "murmur2 of the key, as the Java client"
        );
        assert!(record.timestamp.is_some_and(|ts| ts > 1_700_000_000_000));
        if record.is_tombstone() {
            tombstones += 1;
            assert_eq!(event["op"], "delete");
        } else {
            assert_eq!(record.value.as_deref().unwrap(), &encoded[&seq][..]);
        }
    }
    assert_eq!(tombstones, deletes);

    // Per key, in partition order: seqs never go back, and a tombstone
    // directly follows its delete.
    let mut by_key: BTreeMap<(String, Vec<u8>), Vec<&Record>> = BTreeMap::new();
    for record in &records {
        by_key
            .entry((record.topic.clone(), record.key.clone().unwrap()))
            .or_default()
            .push(record);
    }
    for ((topic, key), mut list) in by_key {
        list.sort_by_key(|r| r.offset);
        assert!(
            list.iter().all(|r| r.partition == list[0].partition),
            "{topic} {key:?}: one partition"
        );
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.is_tombstone() {
                assert_eq!(a.seq(), b.seq(), "a tombstone follows its delete");
                assert!(!a.is_tombstone());
            } else {
                assert!(
                    a.seq() < b.seq(),
                    "{topic} {key:?}: {} then {}",
                    a.seq(),
                    b.seq()
                );
            }
        }
    }

    let status = connector.status();
    assert_eq!(status.state, ConnectorState::Running, "{status:?}");
    assert_eq!(status.delivered, records.len() as u64);
    assert_eq!(
        (status.failed, status.dead_lettered, status.lag_seqs),
        (0, 0, 0)
    );
    let status = connector.stop(Duration::from_secs(5)).await;
    assert_eq!(status.state, ConnectorState::Stopped);
    assert_eq!(
        store.engine.consumer("kafka-connector").unwrap().position,
        head,
        "the position is acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_table_sends_every_table_to_one_topic_and_tombstones_can_be_off() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("all-changes", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = options(&brokers);
    options.topic = "all-changes".into();
    options.tombstones = false;
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    workload(&store).await;
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["all-changes"], head as usize).await;
    assert_eq!(records.len(), head as usize, "no tombstones");
    assert!(records.iter().all(|r| !r.is_tombstone()));
    let tables: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.header("tidefeed.table"))
        .collect();
    assert_eq!(tables.into_iter().collect::<Vec<_>>(), ["orders", "users"]);
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_forwards_the_retained_history_and_a_restart_resumes_at_the_position() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let before = write_users(&store.engine, 20, 5).await;
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "history forwarded", || {
        connector.status().position == before
    })
    .await;
    connector.stop(Duration::from_secs(5)).await;
    let head = write_users(&store.engine, 30, 5).await;
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the rest forwarded", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(
        counts.values().all(|n| *n == 1),
        "a clean stop and restart send nothing twice: {counts:?}"
    );
    connector.stop(Duration::from_secs(5)).await;
}
