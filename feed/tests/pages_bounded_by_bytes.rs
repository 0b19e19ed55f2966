//! Pages and subscription batches are bounded by bytes as well as by
//! count: large events cannot make one page or one lagging subscriber hold
//! `limit` times the largest event.

use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::{Feed, FeedItem, Filter, Format, SubscribeOptions, BATCH_BYTES, PAGE_BYTES};

const ROWS: i64 = 24;
const ROW_BYTES: usize = 900 << 10;

fn engine_with_big_rows(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(EngineOptions::new(dir)).unwrap();
    engine
        .create_table(TableSchema {
            name: "blobs".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
                Column {
                    name: "text".into(),
                    ty: ColumnType::String,
                    nullable: false,
                },
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    for id in 0..ROWS {
        engine
            .write(vec![Mutation::upsert(
                "blobs",
                vec![
                    ("id".into(), Value::Int64(id)),
                    ("text".into(), Value::String("t".repeat(ROW_BYTES))),
                ],
            )])
            .unwrap();
    }
    engine
}

#[test]
fn a_pull_page_of_large_events_stops_at_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_big_rows(dir.path());
    let feed = Feed::new(engine.clone());
    let mut since = 0;
    let mut seqs = Vec::new();
    let mut pages = 0;
    while since < engine.visible_seq() {
        let page = feed
            .read_page(since, 1000, &Filter::default(), Format::Native)
            .unwrap();
        let bytes: usize = page.events.iter().map(|(_, e)| e.len()).sum();
        assert!(!page.events.is_empty());
        assert!(
            bytes < PAGE_BYTES + 2 * ROW_BYTES,
            "a page of {} events holds {bytes} bytes",
            page.events.len()
        );
        seqs.extend(page.events.iter().map(|(seq, _)| *seq));
        since = page.next;
        pages += 1;
    }
    assert_eq!(
        seqs,
        (1..=ROWS as u64).collect::<Vec<_>>(),
        "each event once"
    );
    assert!(
        pages >= 3,
        "{pages} pages for {ROWS} events of ~{ROW_BYTES} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_holds_one_byte_budget_of_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tokio::task::block_in_place(|| engine_with_big_rows(dir.path()));
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            ..SubscribeOptions::default()
        })
        .unwrap();
    let mut received = 0;
    let mut most_held = 0;
    while received < ROWS {
        match subscription.next().await.unwrap() {
            FeedItem::Event { .. } => received += 1,
            FeedItem::Resolved { .. } => {}
        }
        most_held = most_held.max(subscription.buffered());
    }
    let per_batch = BATCH_BYTES / ROW_BYTES + 1;
    assert!(
        most_held < per_batch,
        "held {most_held} events of ~{ROW_BYTES} bytes at once (budget {BATCH_BYTES})"
    );
}
