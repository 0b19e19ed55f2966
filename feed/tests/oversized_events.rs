//! Events over the feed's maximum size are sent key-only, flagged and
//! counted: never dropped, never silently cut.

use std::time::Duration;

use serde_json::{json, Value as Json};
use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::{Feed, FeedItem, Filter, Format, SubscribeOptions};

fn docs(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(EngineOptions::new(dir)).unwrap();
    engine
        .create_table(TableSchema {
            name: "docs".into(),
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
        })
        .unwrap();
    engine
}

fn doc(id: i64, body_len: usize) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("body".into(), Value::String("x".repeat(body_len))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_events_are_sent_key_only_flagged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = docs(dir.path());
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        writer
            .write(vec![Mutation::upsert("docs", doc(1, 10))])
            .unwrap();
        writer
            .write(vec![Mutation::upsert("docs", doc(2, 5000))])
            .unwrap();
        writer
            .write(vec![Mutation::upsert("docs", doc(3, 20))])
            .unwrap();
    })
    .await
    .unwrap();
    let feed = Feed::with_max_event_bytes(engine.clone(), 1000);

    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            format: Format::Native,
            resolved_interval: Duration::from_secs(60),
            ..Default::default()
        })
        .unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        if let FeedItem::Event { bytes, .. } = subscription.next().await.unwrap() {
            events.push(serde_json::from_slice::<Json>(&bytes).unwrap());
        }
    }
    assert_eq!(events[0]["after"]["body"], json!("x".repeat(10)));
    assert!(
        events[0].get("truncated").is_none(),
        "normal events carry no flag"
    );
    assert_eq!(events[1]["seq"], 2, "the oversized event is not dropped");
    assert_eq!(events[1]["truncated"], true);
    assert_eq!(events[1]["key"], json!({"id": 2}));
    assert_eq!(events[1]["op"], "insert");
    assert_eq!(events[1]["after"], Json::Null);
    assert_eq!(events[2]["after"]["body"], json!("x".repeat(20)));
    assert_eq!(feed.oversized_events(), 1);

    // The pull API applies the same policy; Debezium carries the key in
    // source and as the images it has.
    let page = feed
        .read_page(1, 1, &Filter::default(), Format::Debezium)
        .unwrap();
    let envelope: Json = serde_json::from_slice(&page.events[0].1).unwrap();
    assert_eq!(envelope["truncated"], true);
    assert_eq!(envelope["source"]["key"], json!({"id": 2}));
    assert_eq!(
        envelope["after"],
        json!({"id": 2}),
        "Debezium consumers need an after image: the key columns"
    );
    assert_eq!(feed.oversized_events(), 2, "counted once per encoding");
}
