//! Readers racing flushes and compactions never see a duplicate, a gap,
//! or a deleted row coming back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tidefeed_engine::{Engine, EngineOptions, Mutation, Value};

use crate::common::{account, accounts_schema};

fn busy_engine(dir: &std::path::Path) -> Arc<Engine> {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 4 << 10;
    options.table_file_bytes = 8 << 10;
    options.level_base_bytes = 32 << 10;
    options.l0_compaction_trigger = 2;
    options.history_window = None;
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    engine
}

#[test]
fn change_scans_racing_flush_and_compaction_have_no_duplicate_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..8_000i64 {
                engine
                    .write(vec![Mutation::upsert("accounts", account(i % 300, "r", i))])
                    .unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut scans = 0;
                let mut state = r + 1;
                while scans < 50 || !stop.load(Ordering::Relaxed) {
                    let visible = engine.visible_seq();
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let since = if visible == 0 {
                        0
                    } else {
                        (state >> 33) % visible
                    };
                    let mut expected = since + 1;
                    for change in engine.changes(since, Some(visible)).unwrap() {
                        assert_eq!(change.unwrap().seq(), expected, "duplicate or gap");
                        expected += 1;
                    }
                    assert_eq!(expected, visible + 1, "scan ended early");
                    let page = engine
                        .scan("accounts", &Default::default(), usize::MAX, Some(visible))
                        .unwrap();
                    let keys: Vec<_> = page
                        .rows
                        .iter()
                        .map(|r| r.row.values()[0].clone())
                        .collect();
                    let mut sorted = keys.clone();
                    sorted.dedup();
                    assert_eq!(keys, sorted, "a key appears twice in one scan");
                    scans += 1;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let metrics = engine.metrics();
    assert!(
        metrics.flushes > 5 && metrics.compactions > 0,
        "{metrics:?}"
    );
}

#[test]
fn a_deleted_row_never_comes_back_while_it_is_flushed_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = busy_engine(dir.path());
    let deleted_at = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<i64, u64>::new(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (engine, deleted_at, stop) = (engine.clone(), deleted_at.clone(), stop.clone());
        std::thread::spawn(move || {
            for id in 0..600i64 {
                engine
                    .write(vec![Mutation::upsert(
                        "accounts",
                        account(id, "doomed", id),
                    )])
                    .unwrap();
                let result = engine
                    .write(vec![Mutation::delete("accounts", vec![Value::Int64(id)])])
                    .unwrap();
                deleted_at
                    .lock()
                    .unwrap()
                    .insert(id, result.first_seq().unwrap());
                if id % 50 == 0 {
                    engine.flush().unwrap();
                }
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut checks = 0u64;
    while !stop.load(Ordering::Relaxed) || checks == 0 {
        let snapshot: Vec<(i64, u64)> = deleted_at
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        for (id, seq) in snapshot {
            assert!(
                engine
                    .get("accounts", &[Value::Int64(id)], None)
                    .unwrap()
                    .is_none(),
                "row {id} deleted at seq {seq} came back"
            );
            checks += 1;
        }
    }
    writer.join().unwrap();
    engine.compact().unwrap();
    let page = engine
        .scan("accounts", &Default::default(), usize::MAX, None)
        .unwrap();
    assert!(
        page.rows.is_empty(),
        "deleted rows reappeared after compaction"
    );
    assert!(checks > 0);
}
