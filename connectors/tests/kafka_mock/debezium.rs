//! Debezium-format values parse as Debezium envelopes.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidefeed_connectors::KafkaConnector;
use tidefeed_engine::{Mutation, Value};
use tidefeed_feed::Format;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_values_are_debezium_envelopes_and_deletes_are_followed_by_tombstones() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = options(&brokers);
    options.format = Format::Debezium;
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    upsert_user(&store.engine, 1, "ann").await;
    upsert_user(&store.engine, 1, "anne").await;
    upsert_user(&store.engine, 2, "bob").await;
    write(
        &store.engine,
        vec![Mutation::delete("users", vec![Value::Int64(2)])],
    )
    .await;
    let head = store.engine.visible_seq();
    wait_until(Duration::from_secs(30), "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], 5).await;
    assert_eq!(records.len(), 5);
    let mut ops = Vec::new();
    for record in records.iter().filter(|r| !r.is_tombstone()) {
        let envelope = record.value_json();
        let op = envelope["op"].as_str().unwrap();
        ops.push((record.seq(), op.to_owned()));
        assert!(envelope["ts_ms"].is_i64(), "{envelope}");
        let source = &envelope["source"];
        assert_eq!(source["name"], "tidefeed");
        assert_eq!(source["table"], "users");
        assert_eq!(source["seq"], record.seq());
        assert_eq!(source["snapshot"], "false");
        let expected_op = match record.header("tidefeed.op").unwrap() {
            "insert" => "c",
            "update" => "u",
            "delete" => "d",
            other => panic!("op {other}"),
        };
        assert_eq!(op, expected_op);
        match op {
            "c" => assert!(envelope["before"].is_null() && envelope["after"].is_object()),
            "u" => assert!(envelope["before"].is_object() && envelope["after"].is_object()),
            "d" => assert!(envelope["before"].is_object() && envelope["after"].is_null()),
            _ => unreachable!(),
        }
        assert_eq!(
            record.key_json()["id"],
            envelope["before"]
                .get("id")
                .or(envelope["after"].get("id"))
                .cloned()
                .unwrap()
        );
    }
    ops.sort();
    let ops: Vec<&str> = ops.iter().map(|(_, op)| op.as_str()).collect();
    assert_eq!(ops, ["c", "u", "c", "d"]);
    let tombstone = records.iter().find(|r| r.is_tombstone()).unwrap();
    assert_eq!(tombstone.key_json(), serde_json::json!({"id": 2}));
    connector.stop(Duration::from_secs(5)).await;
}
