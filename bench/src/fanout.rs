//! Feed fan-out at the feed level (no sockets): N live subscribers each
//! receive every event of a write burst; events delivered per second in
//! total, and the memory an idle subscriber costs.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml --bin fanout
//! ```
//!
//! Prints; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidefeed_engine::{Column, ColumnType, Durability, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::{Feed, FeedItem, SubscribeOptions};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn engine(dir: &std::path::Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.durability = Durability::Async {
        interval: Duration::from_millis(100),
    };
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    engine
        .create_table(TableSchema {
            name: "t".into(),
            columns: vec![
                Column { name: "id".into(), ty: ColumnType::Int64, nullable: false },
                Column { name: "v".into(), ty: ColumnType::String, nullable: false },
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    engine
}

async fn burst(engine: &Engine, start: i64, events: i64) {
    let mut i = start;
    while i < start + events {
        let batch = (i..(i + 100).min(start + events))
            .map(|n| {
                Mutation::upsert(
                    "t",
                    vec![("id".into(), Value::Int64(n % 10_000)), ("v".into(), Value::String(format!("value {n}")))],
                )
            })
            .collect::<Vec<_>>();
        i += batch.len() as i64;
        engine.write_async(batch).await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = tempfile::tempdir().unwrap();
    // Measured first, in a fresh process, so freed memory of the other
    // cases cannot hide the cost.
    // Memory per idle subscriber: 10,000 subscriptions waiting at the head.
    let dir = base.path().join("idle");
    let idle_engine = engine(&dir);
    let idle_feed = Feed::new(idle_engine.clone());
    burst(&idle_engine, 0, 1000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let idle: Vec<_> = (0..10_000)
        .map(|_| {
            let mut subscription = idle_feed.subscribe(SubscribeOptions::default()).unwrap();
            tokio::spawn(async move {
                let _ = subscription.next().await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "10000 idle subscribers (each a task waiting in next()): RSS {} -> {} KiB, {:.2} KiB per idle subscriber",
        before,
        after,
        (after.saturating_sub(before)) as f64 / 10_000.0
    );
    for task in idle {
        task.abort();
    }
    idle_engine.close().unwrap();
    println!("fanout: every subscriber receives every event of a burst (native JSON, no filter)");
    println!("{:>12} {:>10} {:>14} {:>10} {:>22}", "subscribers", "events", "deliveries", "seconds", "delivered events/s");
    for subscribers in [1usize, 100, 1_000, 10_000] {
        let dir = base.path().join(format!("n{subscribers}"));
        let engine = engine(&dir);
        let feed = Feed::new(engine.clone());
        // About 4M deliveries per case.
        let events = (4_000_000 / subscribers as i64).clamp(400, 200_000);
        let start_gate = Arc::new(tokio::sync::Barrier::new(subscribers + 1));
        let tasks: Vec<_> = (0..subscribers)
            .map(|_| {
                let mut subscription = feed.subscribe(SubscribeOptions::default()).unwrap();
                let gate = start_gate.clone();
                tokio::spawn(async move {
                    gate.wait().await;
                    let mut received = 0i64;
                    while received < events {
                        if let FeedItem::Event { .. } = subscription.next().await.unwrap() {
                            received += 1;
                        }
                    }
                })
            })
            .collect();
        start_gate.wait().await;
        let start = Instant::now();
        burst(&engine, 0, events).await;
        for task in tasks {
            task.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let deliveries = events as f64 * subscribers as f64;
        println!(
            "{subscribers:>12} {events:>10} {deliveries:>14.0} {secs:>10.2} {:>22.0}",
            deliveries / secs
        );
        drop(feed);
        engine.close().unwrap();
    }

}
