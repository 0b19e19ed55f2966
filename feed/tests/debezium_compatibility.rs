//! What Debezium consumers require of the envelope: the last snapshot row
//! is marked `source.snapshot = "last"` (other snapshot rows "true",
//! changes "false"), and key-only (oversized) events still carry non-null
//! images where Debezium expects them: `before` for u and d, `after` for
//! c, u and r.

use std::time::Duration;

use serde_json::{json, Value as Json};
use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::{
    encode_bounded, ChangeEvent, Feed, FeedItem, Filter, Format, SubscribeOptions,
};

fn docs_table(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
            Column {
                name: "body".into(),
                ty: ColumnType::String,
                nullable: false,
            },
        ],
        primary_key: vec!["id".into()],
    }
}

fn doc(id: i64, body: &str) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("body".into(), Value::String(body.into())),
    ]
}

/// Reads a Debezium snapshot to its end; returns the envelopes.
async fn snapshot_envelopes(feed: &Feed, tables: &[&str]) -> Vec<Json> {
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            format: Format::Debezium,
            filter: Filter {
                tables: tables.iter().map(|t| (*t).to_owned()).collect(),
                ops: Default::default(),
            },
            resolved_interval: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
    let mut envelopes = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .unwrap()
            .unwrap()
        {
            FeedItem::Event { bytes, .. } => {
                envelopes.push(serde_json::from_slice(&bytes).unwrap())
            }
            FeedItem::Resolved { .. } => return envelopes,
        }
    }
}

fn markers(envelopes: &[Json]) -> Vec<&str> {
    envelopes
        .iter()
        .map(|e| e["source"]["snapshot"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_snapshot_row_is_marked_last_even_before_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    // Tables are snapshotted in name order; `c` and `d` stay empty.
    for name in ["a", "b", "c", "d"] {
        engine.create_table(docs_table(name)).unwrap();
    }
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        // 600 rows in `a` span several snapshot pages; `b` has one row.
        for id in 0..600 {
            writer
                .write(vec![Mutation::upsert("a", doc(id, "x"))])
                .unwrap();
        }
        writer
            .write(vec![Mutation::upsert("b", doc(1, "y"))])
            .unwrap();
    })
    .await
    .unwrap();
    let feed = Feed::new(engine.clone());

    let all = snapshot_envelopes(&feed, &[]).await;
    assert_eq!(all.len(), 601);
    let mut expected = vec!["true"; 600];
    expected.push("last");
    assert_eq!(
        markers(&all),
        expected,
        "only the very last row is \"last\""
    );
    assert_eq!(all[600]["source"]["table"], "b");
    assert_eq!(all[600]["op"], "r");
    assert_eq!(all[600]["before"], Json::Null);
    assert_eq!(all[600]["after"], json!({"id": 1, "body": "y"}));

    // A page boundary at the very end: exactly one page of rows.
    let only_a: Vec<Json> = snapshot_envelopes(&feed, &["a", "c"]).await;
    assert_eq!(only_a.len(), 600);
    assert_eq!(markers(&only_a).iter().filter(|m| **m == "last").count(), 1);
    assert_eq!(markers(&only_a)[599], "last");

    // One row in all: it is the last one.
    let one = snapshot_envelopes(&feed, &["b", "c", "d"]).await;
    assert_eq!(markers(&one), ["last"]);
    // No rows at all: nothing to mark, the snapshot just ends.
    assert!(snapshot_envelopes(&feed, &["c", "d"]).await.is_empty());

    // Changes after the snapshot are "false".
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            format: Format::Debezium,
            filter: Filter {
                tables: ["b".to_owned()].into(),
                ops: Default::default(),
            },
            resolved_interval: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || writer.write(vec![Mutation::upsert("b", doc(2, "z"))]))
        .await
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let FeedItem::Event { bytes, .. } = subscription.next().await.unwrap() {
            seen.push(serde_json::from_slice::<Json>(&bytes).unwrap());
        }
    }
    assert_eq!(markers(&seen), ["last", "false"]);
    assert_eq!(seen[1]["op"], "c");
}

#[test]
fn key_only_debezium_envelopes_keep_the_images_consumers_require() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    engine.create_table(docs_table("docs")).unwrap();
    let big = "x".repeat(4000);
    engine
        .write(vec![Mutation::upsert("docs", doc(7, &big))])
        .unwrap();
    engine
        .write(vec![Mutation::upsert("docs", doc(7, &big))])
        .unwrap();
    engine
        .write(vec![Mutation::delete("docs", vec![Value::Int64(7)])])
        .unwrap();
    let events: Vec<ChangeEvent> = engine
        .changes(0, None)
        .unwrap()
        .map(|c| ChangeEvent::from_change(&c.unwrap()).unwrap())
        .collect();
    let key = json!({"id": 7});
    let expected = [
        ("c", Json::Null, key.clone()),
        ("u", key.clone(), key.clone()),
        ("d", key.clone(), Json::Null),
    ];
    for (event, (op, before, after)) in events.iter().zip(expected) {
        let (bytes, truncated) = encode_bounded(event, Format::Debezium, 1000).unwrap();
        assert!(truncated);
        let ts_ms = event.ts_micros.div_euclid(1000);
        assert_eq!(
            serde_json::from_slice::<Json>(&bytes).unwrap(),
            json!({"before": before, "after": after,
                   "source": {"name": "tidefeed", "table": "docs", "seq": event.seq,
                              "ts_ms": ts_ms, "snapshot": "false", "key": key},
                   "op": op, "ts_ms": ts_ms, "truncated": true}),
            "{op}"
        );
    }
    // A key-only snapshot row has an `after` too.
    let table = engine.table("docs").unwrap();
    engine
        .write(vec![Mutation::upsert("docs", doc(8, &big))])
        .unwrap();
    let current = engine
        .get("docs", &[Value::Int64(8)], None)
        .unwrap()
        .unwrap();
    let read = ChangeEvent::snapshot_read(table, current.row, engine.visible_seq(), 5_000);
    let (bytes, truncated) = encode_bounded(&read, Format::Debezium, 1000).unwrap();
    assert!(truncated);
    let envelope: Json = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(envelope["op"], "r");
    assert_eq!(envelope["before"], Json::Null);
    assert_eq!(envelope["after"], json!({"id": 8}));
    assert_eq!(envelope["source"]["key"], json!({"id": 8}));
    // The native key-only form keeps null images: `key` already carries it.
    let (native, _) = encode_bounded(&events[1], Format::Native, 1000).unwrap();
    let native: Json = serde_json::from_slice(&native).unwrap();
    assert_eq!(native["before"], Json::Null);
    assert_eq!(native["after"], Json::Null);
    assert_eq!(native["key"], key);
    assert_eq!(native["truncated"], true);
}
