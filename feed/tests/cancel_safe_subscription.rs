//! `Subscription::next` is cancel-safe: a caller may drop its future at any
//! point (a `select!` with a keep-alive timer, a timeout, shutdown), and
//! the stream it then reads is still exactly the expected events, once
//! each, in order. Driven with random timeouts and with futures polled once
//! and dropped, in snapshot, catch-up and live mode, while writers run.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{engine_with_tables, write_rounds, Rng};
use serde_json::Value as Json;
use tidefeed_engine::{Engine, Mutation, Seq, Value};
use tidefeed_feed::{
    read_page, Feed, FeedError, FeedItem, Filter, Format, SubscribeOptions, Subscription,
};

const SEEDS: [u64; 4] = [1, 7, 42, 2026];

/// One call of `next`, cancelled or not, as the seeded RNG decides:
/// polled once and dropped, raced against a tiny random timeout, or
/// awaited a while. `None` when the future was dropped before it finished.
async fn next_or_cancel(
    subscription: &mut Subscription,
    rng: &mut Rng,
) -> Option<Result<FeedItem, FeedError>> {
    match rng.below(5) {
        0 | 1 => {
            tokio::select! {
                biased;
                item = subscription.next() => Some(item),
                () = std::future::ready(()) => None,
            }
        }
        2 | 3 => tokio::time::timeout(Duration::from_micros(rng.below(2000)), subscription.next())
            .await
            .ok(),
        // A longer wait, which the writers' last change may not end: the
        // caller's deadline is what tells a stall.
        _ => tokio::time::timeout(Duration::from_millis(200), subscription.next())
            .await
            .ok(),
    }
}

/// Reads until every change up to the writers' final seq has arrived (the
/// writer must be finished for that seq to be final). Returns the
/// snapshot rows and the changes, in arrival order.
async fn read_to_the_end(
    engine: &Engine,
    subscription: &mut Subscription,
    writer: &tokio::task::JoinHandle<()>,
    rng: &mut Rng,
) -> (Vec<(Seq, Json)>, Vec<(Seq, Json)>) {
    let (mut reads, mut changes) = (Vec::new(), Vec::<(Seq, Json)>::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never ended"
        );
        if writer.is_finished() {
            let last = changes.last().map(|(seq, _)| *seq);
            if last == Some(engine.visible_seq()) {
                return (reads, changes);
            }
        }
        let Some(item) = next_or_cancel(subscription, rng).await else {
            continue;
        };
        if let FeedItem::Event { seq, bytes } = item.unwrap() {
            let event: Json = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(event["seq"].as_u64(), Some(seq));
            if event["op"] == "read" {
                assert!(changes.is_empty(), "a snapshot row after a change");
                reads.push((seq, event));
            } else {
                changes.push((seq, event));
            }
        }
    }
}

/// The changes the log holds in `(since, upto]`, as a fresh reader sees them.
fn expected_changes(engine: &Engine, since: Seq, upto: Seq) -> Vec<(Seq, Json)> {
    let mut out = Vec::new();
    let mut position = since;
    while position < upto {
        let page = read_page(engine, position, 512, &Filter::default(), Format::Native).unwrap();
        for (seq, bytes) in page.events {
            if seq <= upto {
                out.push((seq, serde_json::from_slice(&bytes).unwrap()));
            }
        }
        position = page.next;
    }
    out
}

fn assert_same_changes(got: &[(Seq, Json)], expected: &[(Seq, Json)], seed: u64) {
    let seqs = |events: &[(Seq, Json)]| events.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(
        seqs(got),
        seqs(expected),
        "seed {seed}: every change once, in order"
    );
    assert!(
        got == expected,
        "seed {seed}: the events are the log's changes"
    );
}

fn writer(engine: &Engine, from: i64, to: i64) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || write_rounds(&engine, from, to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_under_random_cancellation_delivers_every_change_once_in_order() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_tables(dir.path(), &["a", "b"]);
        writer(&engine, 0, 1500).await.unwrap();
        let feed = Feed::new(engine.clone());
        let mut subscription = feed
            .subscribe(SubscribeOptions {
                since: Some(0),
                resolved_interval: Duration::from_millis(5),
                ..Default::default()
            })
            .unwrap();
        let writing = writer(&engine, 1500, 2000);
        let mut rng = Rng::new(seed);
        let (reads, changes) =
            read_to_the_end(&engine, &mut subscription, &writing, &mut rng).await;
        assert!(reads.is_empty());
        assert_same_changes(
            &changes,
            &expected_changes(&engine, 0, engine.visible_seq()),
            seed,
        );
        engine.close().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reads_under_random_cancellation_deliver_every_change_once_in_order() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_tables(dir.path(), &["a", "b"]);
        writer(&engine, 0, 100).await.unwrap();
        let feed = Feed::new(engine.clone());
        let mut subscription = feed
            .subscribe(SubscribeOptions {
                resolved_interval: Duration::from_millis(5),
                ..Default::default()
            })
            .unwrap();
        let start = subscription.position();
        let writing = writer(&engine, 100, 900);
        let mut rng = Rng::new(seed);
        let (_, changes) = read_to_the_end(&engine, &mut subscription, &writing, &mut rng).await;
        assert_same_changes(
            &changes,
            &expected_changes(&engine, start, engine.visible_seq()),
            seed,
        );
        engine.close().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_under_random_cancellation_sends_each_row_once_then_every_change() {
    for seed in SEEDS {
        let dir = tempfile::tempdir().unwrap();
        // `c` stays empty: a trailing empty table ends the snapshot too.
        let engine = engine_with_tables(dir.path(), &["a", "b", "c"]);
        // Rows beyond the writers' keys, so the snapshot spans pages.
        for first in (1000..1700).step_by(100) {
            let batch = (first..first + 100)
                .map(|id| Mutation::upsert("a", common::row(id, id)))
                .collect();
            engine.write_async(batch).await.unwrap();
        }
        writer(&engine, 0, 1200).await.unwrap();
        let feed = Feed::new(engine.clone());
        let mut subscription = feed
            .subscribe(SubscribeOptions {
                snapshot: true,
                resolved_interval: Duration::from_millis(5),
                ..Default::default()
            })
            .unwrap();
        let at = subscription.position();
        let writing = writer(&engine, 1200, 1700);
        let mut rng = Rng::new(seed);
        let (reads, changes) =
            read_to_the_end(&engine, &mut subscription, &writing, &mut rng).await;

        let mut expected_rows = BTreeMap::new();
        for table in ["a", "b", "c"] {
            let page = engine
                .scan(table, &Default::default(), usize::MAX, Some(at))
                .unwrap();
            for version in page.rows {
                let values = version.row.values();
                let (Value::Int64(id), Value::Int64(n)) = (&values[0], &values[1]) else {
                    unreachable!("id and n are int64")
                };
                expected_rows.insert(
                    (table.to_owned(), *id),
                    serde_json::json!({"id": id, "n": n}),
                );
            }
        }
        assert!(
            expected_rows.len() > 3 * 256,
            "the snapshot spans several pages"
        );
        let mut got_rows = BTreeMap::new();
        for (seq, event) in &reads {
            assert_eq!(
                *seq, at,
                "seed {seed}: snapshot rows carry the snapshot seq"
            );
            let key = (
                event["table"].as_str().unwrap().to_owned(),
                event["key"]["id"].as_i64().unwrap(),
            );
            assert!(
                got_rows
                    .insert(key.clone(), event["after"].clone())
                    .is_none(),
                "seed {seed}: row {key:?} twice in the snapshot"
            );
        }
        assert_eq!(
            got_rows, expected_rows,
            "seed {seed}: the rows as of the snapshot seq"
        );
        assert_same_changes(
            &changes,
            &expected_changes(&engine, at, engine.visible_seq()),
            seed,
        );
        engine.close().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_polled_once_and_dropped_first_still_reads_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_tables(dir.path(), &["a", "b"]);
    for first in (0..1000).step_by(100) {
        let batch = (first..first + 100)
            .map(|id| Mutation::upsert(if id % 3 == 0 { "b" } else { "a" }, common::row(id, id)))
            .collect();
        engine.write_async(batch).await.unwrap();
    }
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            snapshot: true,
            ..Default::default()
        })
        .unwrap();
    let mut ids = Vec::new();
    loop {
        // Every call is first polled once and dropped if it is not ready:
        // that poll starts whatever read is due.
        let polled_once = tokio::select! {
            biased;
            item = subscription.next() => Some(item),
            () = std::future::ready(()) => None,
        };
        let item = match polled_once {
            Some(item) => item,
            None => tokio::time::timeout(Duration::from_secs(30), subscription.next())
                .await
                .unwrap(),
        };
        match item.unwrap() {
            FeedItem::Event { bytes, .. } => {
                let event: Json = serde_json::from_slice(&bytes).unwrap();
                ids.push(event["key"]["id"].as_i64().unwrap());
                assert!(ids.len() <= 1000, "rows were sent twice");
            }
            FeedItem::Resolved { .. } => break,
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}
