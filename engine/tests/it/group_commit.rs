//! Concurrent writers share fdatasyncs; a lone writer never waits.

use std::sync::Arc;

use tidefeed_engine::{Engine, Mutation};

use crate::common::{account, open_with_tables};

#[test]
fn sixty_four_concurrent_sync_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open_with_tables(dir.path()));
    const WRITERS: i64 = 64;
    const PER_WRITER: i64 = 100;
    let barrier = Arc::new(std::sync::Barrier::new(WRITERS as usize));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine: Arc<Engine> = engine.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_WRITER {
                    let id = w * PER_WRITER + i;
                    engine
                        .write(vec![Mutation::upsert("accounts", account(id, "g", id))])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let metrics = engine.metrics();
    let writes = (WRITERS * PER_WRITER) as u64;
    assert_eq!(metrics.committed_changes, writes);
    println!(
        "{writes} sync writes, {} fdatasyncs, {} commit groups",
        metrics.wal_syncs, metrics.commit_groups
    );
    assert!(
        metrics.wal_syncs * 4 < writes,
        "{} fdatasyncs for {writes} writes: writers are not sharing syncs",
        metrics.wal_syncs
    );
    assert_eq!(
        metrics.wal_syncs, metrics.commit_groups,
        "one fdatasync per group in sync mode"
    );
}

#[test]
fn a_lone_writer_gets_one_sync_per_write() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    for id in 0..50 {
        engine
            .write(vec![Mutation::upsert("accounts", account(id, "solo", id))])
            .unwrap();
    }
    let metrics = engine.metrics();
    assert_eq!(
        metrics.wal_syncs, 50,
        "each acknowledged sync write was fdatasynced"
    );
    assert_eq!(metrics.commit_groups, 50);
}
