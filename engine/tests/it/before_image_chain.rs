//! Before-images stay exact under concurrent writers hammering a few keys.

use std::sync::Arc;

use tidefeed_engine::{ChangeKind, Engine, EngineOptions, Error, Mutation, Outcome, Value};

use crate::common::{account, accounts_schema, all_changes, assert_chain_consistent};

const HOT_KEYS: i64 = 4;
const WRITERS: u64 = 16;
const OPS: u64 = 300;

/// 16 writers hammering 4 hot keys with upserts, patches, deletes and
/// 3-op batches. Returns the number of committed changes.
fn hammer(engine: &Arc<Engine>) -> u64 {
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut committed = 0u64;
                let mut state = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for op in 0..OPS {
                    // xorshift: a deterministic op mix per writer.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = (state % HOT_KEYS as u64) as i64;
                    let other = (key + 1) % HOT_KEYS;
                    let balance = (writer * 1000 + op) as i64;
                    let batch = match state % 5 {
                        0 | 1 => vec![Mutation::upsert("accounts", account(key, "w", balance))],
                        2 => vec![Mutation::patch(
                            "accounts",
                            vec![Value::Int64(key)],
                            vec![("balance".into(), Value::Int64(balance))],
                        )],
                        3 => vec![Mutation::delete("accounts", vec![Value::Int64(key)])],
                        _ => vec![
                            Mutation::upsert("accounts", account(key, "batch", balance)),
                            Mutation::patch(
                                "accounts",
                                vec![Value::Int64(key)],
                                vec![("note".into(), Value::String(format!("w{writer}")))],
                            ),
                            Mutation::delete("accounts", vec![Value::Int64(other)]),
                        ],
                    };
                    match engine.write(batch) {
                        Ok(result) => {
                            committed += result
                                .outcomes
                                .iter()
                                .filter(|o| matches!(o, Outcome::Committed { .. }))
                                .count() as u64
                        }
                        // Patching a key another writer just deleted.
                        Err(Error::RowNotFound { .. }) => {}
                        Err(e) => panic!("unexpected write error: {e}"),
                    }
                }
                committed
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn every_change_before_image_equals_the_previous_after_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    // Small memtables, so the chain crosses memtable boundaries.
    options.memtable_bytes = 32 << 10;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    let engine = Arc::new(engine);
    let committed = hammer(&engine);

    let visible = engine.visible_seq();
    assert_eq!(visible, committed, "every committed op has exactly one seq");
    let changes = all_changes(&engine);
    assert_chain_consistent(&changes, visible);
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Delete));
    assert!(changes.iter().any(|c| c.batch.size == 3));
    assert!(
        engine.metrics().memtable_rotations > 0,
        "the workload should span several memtables"
    );
    engine.close().unwrap();
    assert!(
        engine.metrics().flushes > 0,
        "the chain should be read back partly from flushed table files"
    );

    // The chain also survives a restart.
    drop(engine);
    let reopened = Engine::open(EngineOptions::new(dir.path())).unwrap();
    assert_eq!(all_changes(&reopened), changes);
}

/// The same workload over tiny memtables, files and levels with history
/// collapsing as soon as it is flushed: before-images are looked up in
/// files that partial compactions keep rewriting, with tombstones
/// dropped at the bottom. A durable consumer tails the feed (holding
/// retention only at its own position) and checks the chain as it goes.
#[test]
fn before_images_stay_exact_while_history_collapses_under_partial_compactions() {
    for seed_shift in [0u64, 1] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = EngineOptions::new(dir.path());
        options.memtable_bytes = 1 << 10;
        options.table_file_bytes = 512;
        options.level_base_bytes = (1 << 10) << seed_shift;
        options.l0_compaction_trigger = 2;
        options.history_window = Some(std::time::Duration::ZERO);
        let engine = Arc::new(Engine::open(options).unwrap());
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("chain", Some(0)).unwrap();

        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tail = {
            let (engine, done) = (engine.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut position = 0;
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::Acquire);
                    let batch: Vec<_> = engine
                        .changes(position, None)
                        .unwrap()
                        .map(|c| crate::common::decode(&c.unwrap()))
                        .collect();
                    if let Some(last) = batch.last() {
                        position = last.seq;
                        engine.ack_consumer("chain", position).unwrap();
                    }
                    seen.extend(batch);
                    if finished && position == engine.visible_seq() {
                        return seen;
                    }
                    std::thread::yield_now();
                }
            })
        };
        let committed = hammer(&engine);
        done.store(true, std::sync::atomic::Ordering::Release);
        let seen = tail.join().unwrap();
        assert_eq!(engine.visible_seq(), committed);
        assert_chain_consistent(&seen, committed);
        engine.settle().unwrap();
        let metrics = engine.metrics();
        assert!(
            metrics.flushes > 10 && metrics.compactions > 5 && metrics.low_water > 0,
            "the tiny shape must flush, compact and collapse history: {metrics:?}"
        );
    }
}
