//! Live subscriptions: every change exactly once, in order, while writers,
//! flushes and compactions run; filters; resolved watermarks; a loud error
//! below retention.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value as Json;
use tidefeed_engine::{
    Column, ColumnType, Engine, EngineOptions, Error, Mutation, TableSchema, Value,
};
use tidefeed_feed::{EventOp, Feed, FeedError, FeedItem, Filter, Format, SubscribeOptions};

fn table(name: &str) -> TableSchema {
    TableSchema {
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
    }
}

fn busy_engine(dir: &std::path::Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 8 << 10;
    options.l0_compaction_trigger = 2;
    options.level_base_bytes = 32 << 10;
    options.table_file_bytes = 16 << 10;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    for name in ["a", "b"] {
        engine.create_table(table(name)).unwrap();
    }
    engine
}

fn row(id: i64, n: i64) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("n".into(), Value::Int64(n)),
    ]
}

/// Writes `count` rounds of upserts, deletes and two-table batches.
fn write_rounds(engine: &Engine, count: i64) {
    for i in 0..count {
        engine
            .write(vec![Mutation::upsert("a", row(i % 50, i))])
            .unwrap();
        if i % 5 == 0 {
            engine
                .write(vec![Mutation::delete(
                    "a",
                    vec![Value::Int64((i * 3) % 50)],
                )])
                .unwrap();
        }
        if i % 7 == 0 {
            engine
                .write(vec![
                    Mutation::upsert("b", row(i % 10, i)),
                    Mutation::upsert("a", row(i % 50, -i)),
                ])
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_from_zero_gets_every_change_once_in_order_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            ..Default::default()
        })
        .unwrap();
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || write_rounds(&engine, 1500))
    };
    let mut events: Vec<Json> = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("the subscription keeps up")
            .unwrap();
        if let FeedItem::Event { seq, bytes } = item {
            let json: Json = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["seq"].as_u64(), Some(seq));
            events.push(json);
        }
        if writer.is_finished() && subscription.position() == engine.visible_seq() && {
            // Drain what the last batch holds.
            events.last().and_then(|e| e["seq"].as_u64()) == Some(engine.visible_seq())
        } {
            break;
        }
    }
    writer.join().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=engine.visible_seq()).collect::<Vec<_>>(),
        "every change once, in order"
    );
    let metrics = engine.metrics();
    assert!(
        metrics.flushes > 2 && metrics.compactions > 0,
        "{metrics:?}"
    );
    // Chain-consistent per key.
    let mut last: HashMap<(String, String), Json> = HashMap::new();
    for e in &events {
        let key = (
            e["table"].as_str().unwrap().to_owned(),
            e["key"].to_string(),
        );
        let previous = last.get(&key).cloned().unwrap_or(Json::Null);
        assert_eq!(
            e["before"], previous,
            "seq {}: before-image breaks the chain",
            e["seq"]
        );
        last.insert(key, e["after"].clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_filtered_subscriptions_each_get_exactly_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let feed = Feed::new(engine.clone());
    let filters: Vec<Filter> = (0..1000)
        .map(|i| Filter {
            tables: match i % 3 {
                0 => HashSet::new(),
                1 => HashSet::from(["a".to_owned()]),
                _ => HashSet::from(["b".to_owned()]),
            },
            ops: match i % 4 {
                0 => HashSet::new(),
                1 => HashSet::from([EventOp::Insert]),
                2 => HashSet::from([EventOp::Update, EventOp::Delete]),
                _ => HashSet::from([EventOp::Delete]),
            },
        })
        .collect();
    let mut subscriptions: Vec<_> = filters
        .iter()
        .map(|filter| {
            feed.subscribe(SubscribeOptions {
                since: Some(0),
                filter: filter.clone(),
                format: Format::Native,
                resolved_interval: Duration::from_millis(100),
                snapshot: false,
                consumer: None,
            })
            .unwrap()
        })
        .collect();
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || write_rounds(&writer, 300))
        .await
        .unwrap();
    let head = engine.visible_seq();
    let all: Vec<Json> = tidefeed_feed::read_page(
        &engine,
        0,
        usize::MAX / 64,
        &Filter::default(),
        Format::Native,
    )
    .unwrap()
    .events
    .iter()
    .map(|(_, b)| serde_json::from_slice(b).unwrap())
    .collect();
    assert_eq!(all.len() as u64, head);

    let tasks: Vec<_> = subscriptions
        .drain(..)
        .map(|mut subscription| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                // Resolved at the head means every matching event is in.
                loop {
                    match tokio::time::timeout(Duration::from_secs(60), subscription.next()).await {
                        Ok(Ok(FeedItem::Event { seq, .. })) => seqs.push(seq),
                        Ok(Ok(FeedItem::Resolved { seq })) if seq == head => return seqs,
                        Ok(Ok(FeedItem::Resolved { .. })) => {}
                        Ok(Err(e)) => panic!("{e}"),
                        Err(_) => panic!("stalled at {}", subscription.position()),
                    }
                }
            })
        })
        .collect();
    for (task, filter) in tasks.into_iter().zip(&filters) {
        let got = task.await.unwrap();
        let expected: Vec<u64> = all
            .iter()
            .filter(|e| {
                let op = match e["op"].as_str().unwrap() {
                    "insert" => EventOp::Insert,
                    "update" => EventOp::Update,
                    _ => EventOp::Delete,
                };
                filter.matches(e["table"].as_str().unwrap(), op)
            })
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(got, expected, "filter {filter:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_watermarks_let_an_idle_filtered_subscriber_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: None,
            filter: Filter {
                tables: HashSet::from(["b".to_owned()]),
                ops: HashSet::from([EventOp::Delete]),
            },
            format: Format::Debezium,
            resolved_interval: Duration::from_millis(50),
            snapshot: false,
            consumer: None,
        })
        .unwrap();
    assert_eq!(
        subscription.position(),
        0,
        "`since: None` starts at the head"
    );
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..100 {
            writer
                .write(vec![Mutation::upsert("a", row(i, i))])
                .unwrap();
        }
    })
    .await
    .unwrap();
    let head = engine.visible_seq();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap()
            .unwrap()
        {
            FeedItem::Event { seq, .. } => panic!("no event passes the filter, got seq {seq}"),
            FeedItem::Resolved { seq } if seq == head => break,
            FeedItem::Resolved { seq } => assert!(seq < head),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_below_retention_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = Some(Duration::ZERO);
    let engine = Engine::open(options).unwrap();
    engine.create_table(table("a")).unwrap();
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..400 {
            writer
                .write(vec![Mutation::upsert("a", row(i, i))])
                .unwrap();
        }
        writer.flush().unwrap();
        writer.compact().unwrap();
    })
    .await
    .unwrap();
    let low_water = engine.low_water();
    assert!(low_water > 0);
    let feed = Feed::new(engine);
    let err = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            ..Default::default()
        })
        .err()
        .expect("below retention");
    assert!(
        matches!(err, FeedError::Engine(Error::BelowRetention { requested: 0, low_water: lw }) if lw == low_water),
        "{err}"
    );
    assert!(feed
        .subscribe(SubscribeOptions {
            since: Some(low_water),
            ..Default::default()
        })
        .is_ok());
    let ahead = feed.engine().visible_seq() + 1;
    let err = feed
        .subscribe(SubscribeOptions {
            since: Some(ahead),
            ..Default::default()
        })
        .err()
        .expect("ahead of the log");
    assert!(
        matches!(err, FeedError::Engine(Error::FutureSeq { requested, .. }) if requested == ahead),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stream_starts_at_its_position_and_ends_loudly_when_invalidated() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = Some(Duration::ZERO);
    options.max_retention_bytes = Some(1);
    let engine = Engine::open(options).unwrap();
    engine.create_table(table("a")).unwrap();
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            writer
                .write(vec![Mutation::upsert("a", row(i, i))])
                .unwrap();
        }
    })
    .await
    .unwrap();
    engine.create_consumer("sink", Some(10)).unwrap();
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            consumer: Some("sink".into()),
            ..Default::default()
        })
        .unwrap();
    match subscription.next().await.unwrap() {
        FeedItem::Event { seq, .. } => assert_eq!(seq, 11, "starts after the consumer's position"),
        other => panic!("expected an event, got {other:?}"),
    }
    // A reader that saw events past the ack (an EventSource's
    // Last-Event-ID) goes on after them; an earlier `since` does not move
    // it back below the ack.
    for (since, first) in [(0, 11), (15, 16)] {
        let mut resumed = feed
            .subscribe(SubscribeOptions {
                consumer: Some("sink".into()),
                since: Some(since),
                ..Default::default()
            })
            .unwrap();
        match resumed.next().await.unwrap() {
            FeedItem::Event { seq, .. } => assert_eq!(seq, first, "since {since}"),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert!(matches!(
        feed.subscribe(SubscribeOptions {
            consumer: Some("sink".into()),
            snapshot: true,
            ..Default::default()
        }),
        Err(FeedError::ConsumerWithPosition)
    ));
    assert_eq!(
        engine.consumer_position("sink").unwrap(),
        10,
        "reading moved nothing"
    );

    // History grows past the cap: the consumer is invalidated, and the
    // stream says so on its next read instead of skipping ahead.
    let writer = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..1000 {
            writer
                .write(vec![Mutation::upsert("a", row(i % 30, i))])
                .unwrap();
        }
        writer.flush().unwrap();
        writer.compact().unwrap();
    })
    .await
    .unwrap();
    let err = loop {
        match subscription.next().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&err, FeedError::Engine(Error::ConsumerInvalidated { name, .. }) if name == "sink"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_at_the_visible_seq_never_fails_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.durability = tidefeed_engine::Durability::Async {
        interval: Duration::from_millis(50),
    };
    let engine = Engine::open(options).unwrap();
    engine.create_table(table("a")).unwrap();
    let feed = Feed::new(engine.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    engine
                        .write(vec![Mutation::upsert("a", row(w * 1000 + i % 100, i))])
                        .unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut attempts = 0u64;
    // Until the writers have committed a few thousand changes meanwhile.
    while engine.visible_seq() < 3000 && started.elapsed() < Duration::from_secs(30) {
        let since = engine.visible_seq();
        let subscription = feed.subscribe(SubscribeOptions {
            since: Some(since),
            ..Default::default()
        });
        match subscription {
            Ok(subscription) => assert_eq!(subscription.position(), since),
            Err(err) => panic!("subscribe(since = visible_seq {since}) failed: {err}"),
        }
        attempts += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(
        engine.visible_seq() >= 3000,
        "the writers ran during the attempts"
    );
    assert!(attempts > 1000, "{attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_resolved_intervals_never_panic_and_never_fire() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let feed = Feed::new(engine.clone());
    for interval in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(1 << 40),
    ] {
        let mut subscription = feed
            .subscribe(SubscribeOptions {
                since: Some(engine.visible_seq()),
                resolved_interval: interval,
                ..Default::default()
            })
            .unwrap();
        let writer = engine.clone();
        tokio::task::spawn_blocking(move || writer.write(vec![Mutation::upsert("a", row(1, 1))]))
            .await
            .unwrap()
            .unwrap();
        let item = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the change arrives")
            .unwrap();
        assert!(matches!(item, FeedItem::Event { .. }), "{item:?}");
        // Nothing more to send, and the watermark is not due for ages.
        let idle = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
        assert!(idle.is_err(), "{interval:?}: {idle:?}");
    }
}
