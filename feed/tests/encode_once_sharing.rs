//! Subscribers of one feed share each event's encoding while it is in the
//! feed's cache, and the cache's byte bound decides what is shared.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::engine_with_tables;
use tidefeed_engine::{Mutation, Value};
use tidefeed_feed::{EncodedEvent, Feed, FeedItem, FeedOptions, SubscribeOptions};

/// The first `count` events two subscriptions from 0 receive.
async fn two_readers(feed: &Feed, count: usize) -> (Vec<EncodedEvent>, Vec<EncodedEvent>) {
    let read = || async {
        let mut subscription = feed
            .subscribe(SubscribeOptions {
                since: Some(0),
                resolved_interval: Duration::from_secs(3600),
                ..Default::default()
            })
            .unwrap();
        let mut events = Vec::new();
        while events.len() < count {
            if let FeedItem::Event { bytes, .. } = subscription.next().await.unwrap() {
                events.push(bytes);
            }
        }
        events
    };
    let first = read().await;
    let second = read().await;
    (first, second)
}

fn shared(first: &[EncodedEvent], second: &[EncodedEvent]) -> usize {
    first
        .iter()
        .zip(second)
        .inspect(|(a, b)| assert_eq!(a, b, "the same event bytes either way"))
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_byte_bound_decides_what_is_encoded_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_tables(dir.path(), &["a"]);
    let batch = (0..50)
        .map(|id| {
            Mutation::upsert(
                "a",
                vec![
                    ("id".into(), Value::Int64(id)),
                    ("n".into(), Value::Int64(id)),
                ],
            )
        })
        .collect();
    engine.write_async(batch).await.unwrap();

    let default = Feed::new(engine.clone());
    let (first, second) = two_readers(&default, 50).await;
    assert_eq!(shared(&first, &second), 50, "every event encoded once");

    let none = Feed::with_options(
        engine.clone(),
        FeedOptions {
            shared_encoding_bytes: 0,
            ..FeedOptions::default()
        },
    );
    let (first, second) = two_readers(&none, 50).await;
    assert_eq!(
        shared(&first, &second),
        0,
        "a zero-byte cache shares nothing"
    );

    // Room for about one small event per shard: only a few stay shared.
    let tiny = Feed::with_options(
        engine.clone(),
        FeedOptions {
            shared_encoding_bytes: 16 * 400,
            ..FeedOptions::default()
        },
    );
    let (first, second) = two_readers(&tiny, 50).await;
    let kept = shared(&first, &second);
    assert!(kept > 0 && kept <= 16 * 2, "{kept} events shared");
}
