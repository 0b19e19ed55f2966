//! A snapshot of current rows hands over to the live stream with nothing
//! lost and nothing twice, while writers run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::{Feed, FeedError, FeedItem, Filter, SubscribeOptions};

fn engine(dir: &std::path::Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 8 << 10;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    for name in ["a", "b"] {
        engine
            .create_table(TableSchema {
                name: name.into(),
                columns: vec![
                    Column {
                        name: "id".into(),
                        ty: ColumnType::Int64,
                        nullable: false,
                    },
                    Column {
                        name: "n".into(),
                        ty: ColumnType::Int64,
                        nullable: false,
                    },
                ],
                primary_key: vec!["id".into()],
            })
            .unwrap();
    }
    engine
}

fn write(engine: &Engine, from: i64, to: i64) {
    for i in from..to {
        let table = if i % 4 == 0 { "b" } else { "a" };
        engine
            .write(vec![Mutation::upsert(
                table,
                vec![
                    ("id".into(), Value::Int64(i % 300)),
                    ("n".into(), Value::Int64(i)),
                ],
            )])
            .unwrap();
        if i % 9 == 0 {
            engine
                .write(vec![Mutation::delete(
                    "a",
                    vec![Value::Int64((i * 7) % 300)],
                )])
                .unwrap();
        }
    }
}

/// Every row of both tables, as the oracle state: (table, id) -> row JSON.
fn current_rows(engine: &Engine) -> BTreeMap<(String, i64), Json> {
    let mut rows = BTreeMap::new();
    for table in ["a", "b"] {
        for row in engine
            .scan(table, &Default::default(), usize::MAX, None)
            .unwrap()
            .rows
        {
            let values = row.row.values();
            let (Value::Int64(id), Value::Int64(n)) = (&values[0], &values[1]) else {
                unreachable!()
            };
            rows.insert(
                (table.to_owned(), *id),
                serde_json::json!({"id": id, "n": n}),
            );
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_rows_then_the_stream_equal_the_final_state_with_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let setup = engine.clone();
    tokio::task::spawn_blocking(move || write(&setup, 0, 2000))
        .await
        .unwrap();

    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            resolved_interval: Duration::from_millis(20),
            ..Default::default()
        })
        .unwrap();
    let snapshot_seq = subscription.position();
    // Writers keep going while the snapshot is read.
    let writer_engine = engine.clone();
    let writer = tokio::task::spawn_blocking(move || write(&writer_engine, 2000, 3500));

    let mut state: BTreeMap<(String, i64), Json> = BTreeMap::new();
    let mut reads = 0;
    let mut change_seqs = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .unwrap()
            .unwrap();
        match item {
            FeedItem::Event { seq, bytes } => {
                let event: Json = serde_json::from_slice(&bytes).unwrap();
                let key = (
                    event["table"].as_str().unwrap().to_owned(),
                    event["key"]["id"].as_i64().unwrap(),
                );
                if event["op"] == "read" {
                    assert!(change_seqs.is_empty(), "snapshot rows come before changes");
                    assert_eq!(
                        seq, snapshot_seq,
                        "every snapshot row is consistent at one seq"
                    );
                    assert!(
                        state.insert(key, event["after"].clone()).is_none(),
                        "a row twice in the snapshot"
                    );
                    reads += 1;
                } else {
                    assert!(
                        seq > snapshot_seq,
                        "a change at or before the snapshot was sent again"
                    );
                    change_seqs.push(seq);
                    match event["after"].clone() {
                        Json::Null => state.remove(&key),
                        after => state.insert(key, after),
                    };
                }
            }
            FeedItem::Resolved { seq } => {
                if writer.is_finished() && seq == engine.visible_seq() {
                    break;
                }
            }
        }
    }
    writer.await.unwrap();
    assert!(reads > 100, "the snapshot had rows ({reads})");
    assert_eq!(
        change_seqs,
        (snapshot_seq + 1..=engine.visible_seq()).collect::<Vec<_>>(),
        "no change lost or twice"
    );
    assert_eq!(
        state,
        current_rows(&engine),
        "snapshot + stream = the final state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_follows_the_table_filter_and_needs_no_position() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let setup = engine.clone();
    tokio::task::spawn_blocking(move || write(&setup, 0, 400))
        .await
        .unwrap();
    let feed = Feed::new(engine.clone());
    let err = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            since: Some(0),
            ..Default::default()
        })
        .err()
        .unwrap();
    assert!(matches!(err, FeedError::SnapshotWithPosition), "{err}");

    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            filter: Filter {
                tables: ["b".to_owned()].into(),
                ops: Default::default(),
            },
            resolved_interval: Duration::from_millis(20),
            ..Default::default()
        })
        .unwrap();
    let expected = current_rows(&engine)
        .keys()
        .filter(|(t, _)| t == "b")
        .count();
    let mut reads = 0;
    while let FeedItem::Event { bytes, .. } = subscription.next().await.unwrap() {
        let event: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(event["table"], "b");
        assert_eq!(event["op"], "read");
        reads += 1;
    }
    assert_eq!(reads, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_at_the_low_water_mark_needs_no_history_below_it() {
    let dir = tempfile::tempdir().unwrap();
    // The tables of `engine()`, with no history window.
    let engine = {
        let mut options = EngineOptions::new(dir.path());
        options.history_window = Some(Duration::ZERO);
        let engine = Engine::open(options).unwrap();
        for name in ["a", "b"] {
            engine
                .create_table(TableSchema {
                    name: name.into(),
                    columns: vec![
                        Column {
                            name: "id".into(),
                            ty: ColumnType::Int64,
                            nullable: false,
                        },
                        Column {
                            name: "n".into(),
                            ty: ColumnType::Int64,
                            nullable: false,
                        },
                    ],
                    primary_key: vec!["id".into()],
                })
                .unwrap();
        }
        engine
    };
    let setup = engine.clone();
    tokio::task::spawn_blocking(move || {
        write(&setup, 0, 400);
        setup.flush().unwrap();
        setup.compact().unwrap();
    })
    .await
    .unwrap();
    // No history is kept: low-water reaches the head once the flushed
    // changes are checkpointed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.low_water() < engine.visible_seq() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "low-water never reached the head"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let head = engine.visible_seq();
    assert_eq!(engine.low_water(), head);

    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(subscription.position(), head);
    let mut rows = BTreeMap::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .unwrap()
            .unwrap()
        {
            FeedItem::Event { seq, bytes } => {
                assert_eq!(seq, head);
                let event: Json = serde_json::from_slice(&bytes).unwrap();
                rows.insert(
                    (
                        event["table"].as_str().unwrap().to_owned(),
                        event["key"]["id"].as_i64().unwrap(),
                    ),
                    event["after"].clone(),
                );
            }
            FeedItem::Resolved { seq } => {
                assert_eq!(seq, head, "the snapshot ends with Resolved at S");
                break;
            }
        }
    }
    assert_eq!(rows, current_rows(&engine));
    assert!(!rows.is_empty());
}
