//! A subscription ends with `FeedError::Closed`, promptly, when its engine
//! closes: while it waits at the head of the log, and while it catches up
//! on a backlog.

mod common;

use std::time::Duration;

use common::{engine_with_tables, write_rounds};
use tidefeed_feed::{Feed, FeedError, FeedItem, SubscribeOptions};

/// How long "promptly" may take on a busy test machine.
const PROMPTLY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_waiting_at_the_head_gets_closed_when_the_engine_closes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_tables(dir.path(), &["a", "b"]);
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            // No resolved watermark wakes it up while it waits.
            resolved_interval: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
    let waiting = tokio::spawn(async move {
        let item = subscription.next().await;
        (item, subscription)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "nothing to read: it waits at the head"
    );
    let closing = engine.clone();
    tokio::task::spawn_blocking(move || closing.close().unwrap())
        .await
        .unwrap();
    let (item, mut subscription) = tokio::time::timeout(PROMPTLY, waiting)
        .await
        .expect("the subscription ends promptly")
        .unwrap();
    assert!(matches!(item, Err(FeedError::Closed)), "{item:?}");
    // It stays ended.
    let again = tokio::time::timeout(PROMPTLY, subscription.next())
        .await
        .expect("an ended subscription answers at once");
    assert!(matches!(again, Err(FeedError::Closed)), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catching_up_gets_closed_when_the_engine_closes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_tables(dir.path(), &["a", "b"]);
    let setup = engine.clone();
    tokio::task::spawn_blocking(move || write_rounds(&setup, 0, 2000))
        .await
        .unwrap();
    let backlog = engine.visible_seq();
    let feed = Feed::new(engine.clone());
    let mut subscription = feed
        .subscribe(SubscribeOptions {
            since: Some(0),
            ..Default::default()
        })
        .unwrap();
    for _ in 0..10 {
        let item = subscription.next().await.unwrap();
        assert!(matches!(item, FeedItem::Event { .. }), "{item:?}");
    }
    let closing = engine.clone();
    tokio::task::spawn_blocking(move || closing.close().unwrap())
        .await
        .unwrap();
    let mut delivered_after_close = 0u64;
    let ended = tokio::time::timeout(PROMPTLY, async {
        loop {
            match subscription.next().await {
                Ok(_) => delivered_after_close += 1,
                Err(err) => return err,
            }
        }
    })
    .await
    .expect("the subscription ends promptly");
    assert!(matches!(ended, FeedError::Closed), "{ended}");
    assert_eq!(
        delivered_after_close, 0,
        "a closed engine's backlog ({backlog} changes) is not streamed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_closed_engine_fails() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_tables(dir.path(), &["a"]);
    let feed = Feed::new(engine.clone());
    engine.close().unwrap();
    let result = feed.subscribe(SubscribeOptions::default());
    assert!(
        matches!(result, Err(FeedError::Closed)),
        "{:?}",
        result.err()
    );
}
