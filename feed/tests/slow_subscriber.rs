//! A subscriber far slower than the writers: writers are not held back,
//! the subscriber holds at most one batch, and it still gets everything,
//! exactly once, in order.

use std::time::{Duration, Instant};

use tidefeed_engine::{
    Column, ColumnType, Durability, Engine, EngineOptions, Mutation, TableSchema, Value,
};
use tidefeed_feed::{Feed, FeedItem, SubscribeOptions, BATCH_EVENTS};

const EVENTS: i64 = 6000;

fn engine(dir: &std::path::Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.durability = Durability::Async {
        interval: Duration::from_millis(50),
    };
    options.memtable_bytes = 16 << 10;
    options.l0_compaction_trigger = 2;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    engine
        .create_table(TableSchema {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
                Column {
                    name: "v".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    engine
}

/// Writes EVENTS upserts from a plain thread; returns the time it took.
fn write_all(engine: &Engine) -> Duration {
    let start = Instant::now();
    for i in 0..EVENTS {
        engine
            .write(vec![Mutation::upsert(
                "t",
                vec![
                    ("id".into(), Value::Int64(i % 500)),
                    ("v".into(), Value::Int64(i)),
                ],
            )])
            .unwrap();
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_100x_slower_than_the_writers_does_not_slow_them_and_gets_everything() {
    let alone_dir = tempfile::tempdir().unwrap();
    let alone = engine(alone_dir.path());
    let alone_writer = alone.clone();
    let without = tokio::task::spawn_blocking(move || write_all(&alone_writer))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            ..Default::default()
        })
        .unwrap();
    let writer_engine = engine.clone();
    let writer = tokio::task::spawn_blocking(move || write_all(&writer_engine));

    // While the writers run, take one event per writer-pace * 100.
    let pace = without / EVENTS as u32 * 100;
    let mut seqs = Vec::new();
    let mut max_buffered = 0;
    while !writer.is_finished() {
        if let FeedItem::Event { seq, .. } = subscription.next().await.unwrap() {
            seqs.push(seq);
        }
        max_buffered = max_buffered.max(subscription.buffered());
        tokio::time::sleep(pace).await;
    }
    let with = writer.await.unwrap();
    let behind = engine.visible_seq() - subscription.position();
    // Then catch up at full speed, through flushed and compacted history.
    while seqs.last().copied() != Some(engine.visible_seq()) {
        if let FeedItem::Event { seq, .. } = subscription.next().await.unwrap() {
            seqs.push(seq);
        }
        max_buffered = max_buffered.max(subscription.buffered());
    }

    println!(
        "writers: {EVENTS} writes in {without:?} without a subscriber, {with:?} with one reading 100x slower; \
         it was {behind} changes behind when writes ended; it buffered at most {max_buffered} events"
    );
    assert!(
        behind > EVENTS as u64 / 2,
        "the subscriber really was slow ({behind} behind)"
    );
    assert_eq!(
        seqs,
        (1..=engine.visible_seq()).collect::<Vec<_>>(),
        "everything, exactly once, in order"
    );
    assert!(
        max_buffered <= BATCH_EVENTS,
        "a subscriber holds at most one batch ({max_buffered})"
    );
    let metrics = engine.metrics();
    assert!(
        metrics.flushes > 0,
        "the backlog was read back from table files: {metrics:?}"
    );
}
