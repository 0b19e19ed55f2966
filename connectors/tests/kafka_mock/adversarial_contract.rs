//! Adversarial checks of the record contract (DESIGN.md sections 8 and 9):
//! exact key bytes for every key type, values byte-identical to the feed's
//! own encoding in both formats, the partition as the Java client's
//! murmur2 would choose it, and dead letters a Debezium consumer can read.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidefeed_connectors::{KafkaConnector, KafkaOptions, TerminalErrorPolicy};
use tidefeed_engine::{Column, ColumnType, Mutation, NamedValues, TableSchema, Value};
use tidefeed_feed::{Filter, Format};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// `kinds`: a primary key over every keyable type, declared in an order
/// different from the columns', plus a non-key column.
fn kinds_schema() -> TableSchema {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    TableSchema {
        name: "kinds".into(),
        columns: vec![
            column("s", ColumnType::String),
            column("b", ColumnType::Bytes),
            column("ts", ColumnType::Timestamp),
            column("f", ColumnType::Float64),
            column("flag", ColumnType::Bool),
            column("n", ColumnType::Int64),
            Column {
                name: "v".into(),
                ty: ColumnType::String,
                nullable: true,
            },
        ],
        primary_key: vec![
            "n".into(),
            "s".into(),
            "b".into(),
            "ts".into(),
            "f".into(),
            "flag".into(),
        ],
    }
}

const STRANGE: &str = "q\"\\\n\u{1}\u{7f}é😀</script>";
/// 2025-11-24T16:00:00.123456Z
const TS: i64 = 1_764_000_000_123_456;

fn kinds_row(n: i64, f: f64, v: &str) -> NamedValues {
    vec![
        ("s".into(), Value::String(STRANGE.into())),
        ("b".into(), Value::Bytes(vec![0, 1, 2, 255])),
        ("ts".into(), Value::Timestamp(TS)),
        ("f".into(), Value::Float64(f)),
        ("flag".into(), Value::Bool(true)),
        ("n".into(), Value::Int64(n)),
        ("v".into(), Value::String(v.into())),
    ]
}

fn kinds_key(n: i64, f: f64) -> Vec<Value> {
    vec![
        Value::Int64(n),
        Value::String(STRANGE.into()),
        Value::Bytes(vec![0, 1, 2, 255]),
        Value::Timestamp(TS),
        Value::Float64(f),
        Value::Bool(true),
    ]
}

/// The key as the contract's JSON object of the primary key, in key
/// order, with serde_json's escaping.
fn expected_key(n: i64, f: &str) -> Vec<u8> {
    format!(
        r#"{{"n":{n},"s":"q\"\\\n\u0001{}é😀</script>","b":"AAEC/w==","ts":"2025-11-24T16:00:00.123456Z","f":{f},"flag":true}}"#,
        '\u{7f}'
    )
    .into_bytes()
}

async fn kinds_workload(store: &Store) {
    store.engine.create_table(kinds_schema()).unwrap();
    let engine = &store.engine;
    let big = -9_007_199_254_740_993; // beyond 2^53
                                      // -0.0 and 0.0 are the same key (the key codec folds -0.0 into 0.0):
                                      // one row, one Kafka key, one partition.
    write(
        engine,
        vec![Mutation::upsert("kinds", kinds_row(big, -0.0, "a"))],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("kinds", kinds_row(big, 0.0, "b"))],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("kinds", kinds_row(1, f64::INFINITY, "c"))],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("kinds", kinds_row(2, -1.5e-7, "d"))],
    )
    .await;
    write(
        engine,
        vec![Mutation::delete("kinds", kinds_key(big, -0.0))],
    )
    .await;
    write(
        engine,
        vec![Mutation::upsert("kinds", kinds_row(1, f64::INFINITY, "e"))],
    )
    .await;
}

async fn forward_kinds(format: Format) -> (Store, Vec<Record>, HashMap<u64, Vec<u8>>) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.kinds", 7, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = options(&brokers);
    options.format = format;
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    kinds_workload(&store).await;
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.kinds"], head as usize + 1).await;
    let encoded: HashMap<u64, Vec<u8>> =
        tidefeed_feed::read_page(&store.engine, 0, 100, &Filter::default(), format)
            .unwrap()
            .events
            .into_iter()
            .map(|(seq, bytes)| (seq, bytes.to_vec()))
            .collect();
    connector.stop(Duration::from_secs(5)).await;
    (store, records, encoded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_the_exact_json_object_of_the_primary_key_for_every_key_type() {
    let (_store, records, encoded) = forward_kinds(Format::Native).await;
    assert_eq!(
        records.len(),
        7,
        "6 changes and one tombstone: {records:#?}"
    );
    let big = -9_007_199_254_740_993;
    let expected: HashMap<u64, Vec<u8>> = [
        (1, expected_key(big, "0.0")),
        (2, expected_key(big, "0.0")),
        (3, expected_key(1, "\"Infinity\"")),
        (4, expected_key(2, "-1.5e-7")),
        (5, expected_key(big, "0.0")),
        (6, expected_key(1, "\"Infinity\"")),
    ]
    .into_iter()
    .collect();
    for record in &records {
        let seq = record.seq();
        let key = record.key.as_deref().unwrap();
        assert_eq!(
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(&expected[&seq]),
            "seq {seq}"
        );
        assert_eq!(record.partition, murmur2_partition(key, 7), "seq {seq}");
        let event: serde_json::Value = serde_json::from_slice(&encoded[&seq]).unwrap();
        assert_eq!(record.key_json(), event["key"], "seq {seq}");
        if !record.is_tombstone() {
            assert_eq!(
                record.value.as_deref().unwrap(),
                &encoded[&seq][..],
                "seq {seq}: the value is the feed's bytes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_values_are_byte_identical_to_the_feeds_debezium_encoding() {
    let (_store, records, encoded) = forward_kinds(Format::Debezium).await;
    assert_eq!(records.len(), 7, "{records:#?}");
    for record in records.iter().filter(|r| !r.is_tombstone()) {
        let seq = record.seq();
        assert_eq!(
            String::from_utf8_lossy(record.value.as_deref().unwrap()),
            String::from_utf8_lossy(&encoded[&seq]),
            "seq {seq}"
        );
        let envelope = record.value_json();
        assert_eq!(envelope["source"]["seq"], seq);
        assert_eq!(envelope["source"]["snapshot"], "false");
        assert!(envelope["source"]["ts_ms"].is_i64());
        assert_eq!(
            Some(envelope["ts_ms"].as_i64().unwrap()),
            record.timestamp,
            "the record timestamp is the commit time, as ts_ms"
        );
    }
}

/// Known answers of the Java client's `Utils.murmur2` (Kafka's
/// `UtilsTest.testMurmur2`), through `toPositive(h) % partitions`: the
/// reference the suites' partition checks rely on is itself right.
#[test]
fn the_murmur2_reference_agrees_with_the_java_clients_known_answers() {
    let cases: &[(&str, i32)] = &[
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];
    for (key, java) in cases {
        let positive = (*java as u32) & 0x7fff_ffff;
        for partitions in [1, 2, 3, 7, 100, 1_000_003] {
            assert_eq!(
                murmur2_partition(key.as_bytes(), partitions),
                (positive % partitions as u32) as i32,
                "{key:?} over {partitions}"
            );
        }
    }
}

/// Many keys over many partitions: each key on the partition the Java
/// client would choose, and its records in seq order there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_land_on_the_java_partition_in_seq_order() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic("t.users", 16, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), options(&brokers))
        .await
        .unwrap();
    // Batches of 10 over 211 keys, so records of one key are spread over
    // many produce requests.
    for round in 0..30 {
        let batch = (0..10)
            .map(|i| {
                let id = (round * 10 + i) % 211;
                Mutation::upsert("users", user(id, &format!("r{round}-{i}")))
            })
            .collect();
        write(&store.engine, batch).await;
    }
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    assert_eq!(records.len(), head as usize);
    let mut by_key: HashMap<Vec<u8>, Vec<&Record>> = HashMap::new();
    for record in &records {
        let key = record.key.clone().unwrap();
        assert_eq!(record.partition, murmur2_partition(&key, 16));
        by_key.entry(key).or_default().push(record);
    }
    assert_eq!(by_key.len(), 211);
    for list in by_key.values_mut() {
        list.sort_by_key(|r| r.offset);
        assert!(list.windows(2).all(|w| w[0].seq() < w[1].seq()));
    }
    connector.stop(Duration::from_secs(5)).await;
}

fn debezium_dead_letter(brokers: &str) -> KafkaOptions {
    let mut options = options(brokers);
    options.format = Format::Debezium;
    options.on_terminal_error = TerminalErrorPolicy::DeadLetter {
        topic: "t.dead-letter".into(),
    };
    options
        .librdkafka
        .push(("message.max.bytes".into(), "10000".into()));
    options
}

/// A key-only dead letter in Debezium form still satisfies a Debezium
/// consumer: `op`, a `before` for u and d and an `after` for c and u
/// (holding the key columns), `source` with seq, table and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_dead_letters_are_envelopes_a_debezium_consumer_accepts() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 1, 1).unwrap();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), debezium_dead_letter(&brokers))
        .await
        .unwrap();
    let big = || user_with_note(7, "big", "x".repeat(20_000));
    write(&store.engine, vec![Mutation::upsert("users", big())]).await; // c
    let mut bigger = big();
    bigger[1].1 = Value::String("bigger".into());
    write(&store.engine, vec![Mutation::upsert("users", bigger)]).await; // u
    write(
        &store.engine,
        vec![Mutation::delete("users", vec![Value::Int64(7)])],
    )
    .await; // d (its before-image is too large too)
    let head = store.engine.visible_seq();
    wait_until(WAIT, "every change confirmed", || {
        connector.status().position == head
    })
    .await;
    let dead = read(&brokers, &["t.dead-letter"], 3).await;
    let data = read(&brokers, &["t.users"], 1).await;
    // The delete's tombstone is small: it goes to the data topic.
    assert!(data.iter().all(|r| r.is_tombstone()), "{data:#?}");
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let mut ops = Vec::new();
    for record in &dead {
        assert_eq!(record.key_json(), serde_json::json!({"id": 7}));
        let envelope = record.value_json();
        let op = envelope["op"].as_str().expect("op").to_owned();
        let key_image = serde_json::json!({"id": 7});
        match op.as_str() {
            "c" => assert_eq!(envelope["after"], key_image, "{envelope}"),
            "u" => {
                assert_eq!(envelope["before"], key_image, "{envelope}");
                assert_eq!(envelope["after"], key_image, "{envelope}");
            }
            "d" => assert_eq!(envelope["before"], key_image, "{envelope}"),
            other => panic!("op {other}"),
        }
        assert_eq!(envelope["source"]["seq"], record.seq(), "{envelope}");
        assert_eq!(envelope["source"]["table"], "users", "{envelope}");
        assert_eq!(envelope["source"]["key"], key_image, "{envelope}");
        assert!(envelope["ts_ms"].is_i64(), "{envelope}");
        ops.push(op);
    }
    assert_eq!(ops, ["c", "u", "d"]);
    let status = connector.status();
    assert_eq!((status.failed, status.dead_lettered), (3, 3), "{status:?}");
    connector.stop(Duration::from_secs(5)).await;
}
