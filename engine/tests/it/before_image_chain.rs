//! Before-images stay exact under concurrent writers hammering a few keys.

use std::sync::Arc;

use tidefeed_engine::{ChangeKind, Engine, EngineOptions, Error, Mutation, Outcome, Value};

use crate::common::{account, accounts_schema, all_changes, assert_chain_consistent};

#[test]
fn every_change_before_image_equals_the_previous_after_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    // Small memtables, so the chain crosses memtable boundaries.
    options.memtable_bytes = 32 << 10;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();

    const HOT_KEYS: i64 = 4;
    const WRITERS: u64 = 16;
    const OPS: u64 = 300;
    let engine = Arc::new(engine);
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
    let committed: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();

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
