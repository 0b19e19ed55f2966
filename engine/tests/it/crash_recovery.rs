//! Recovery reproduces exactly what was acknowledged: rows, seqs, ops and
//! before-images.

use std::sync::Arc;
use std::time::Duration;

use tidefeed_engine::{Durability, Engine, EngineOptions, Mutation, Value};

use crate::common::{
    account, all_changes, all_rows, assert_chain_consistent, open, open_with_tables, ChildWriter,
};

fn mixed_workload(engine: &Engine) {
    for i in 0..200i64 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i % 37, "o", i))])
            .unwrap();
        if i % 7 == 0 {
            engine
                .write(vec![Mutation::delete(
                    "accounts",
                    vec![Value::Int64(i % 37)],
                )])
                .unwrap();
        }
        if i % 11 == 0 {
            engine
                .write(vec![
                    Mutation::upsert(
                        "events",
                        vec![
                            ("stream".into(), Value::String(format!("s{}", i % 3))),
                            ("n".into(), Value::Int64(i)),
                        ],
                    ),
                    Mutation::patch(
                        "accounts",
                        vec![Value::Int64(i % 37)],
                        vec![("note".into(), Value::Null)],
                    ),
                ])
                .ok();
        }
    }
}

#[test]
fn dropping_without_close_then_reopening_gives_identical_rows_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, changes) = {
        let engine = open_with_tables(dir.path());
        mixed_workload(&engine);
        (all_rows(&engine), all_changes(&engine))
        // Dropped here without close().
    };
    let engine = open(dir.path());
    assert_eq!(all_rows(&engine), rows);
    assert_eq!(all_changes(&engine), changes);
    assert_chain_consistent(&changes, engine.visible_seq());
    assert_eq!(engine.recovery().wal.last_seq, changes.len() as u64);

    // Writing continues at the next seq, and survives another restart.
    let next = engine
        .write(vec![Mutation::upsert("accounts", account(1000, "n", 1))])
        .unwrap();
    assert_eq!(next.first_seq(), Some(changes.len() as u64 + 1));
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(engine.visible_seq(), changes.len() as u64 + 1);
    assert_eq!(engine.recovery().wal.segments, 2);
}

#[test]
fn async_mode_recovers_everything_after_an_orderly_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.durability = Durability::Async {
        interval: Duration::from_millis(50),
    };
    let engine = Engine::open(options).unwrap();
    engine
        .create_table(crate::common::accounts_schema())
        .unwrap();
    engine.create_table(crate::common::events_schema()).unwrap();
    mixed_workload(&engine);
    let changes = all_changes(&engine);
    let syncs = engine.metrics().wal_syncs;
    assert!(
        syncs < changes.len() as u64 / 10,
        "async mode syncs on an interval, not per write ({syncs} syncs)"
    );
    engine.close().unwrap();
    drop(engine);
    assert_eq!(all_changes(&open(dir.path())), changes);
}

#[test]
fn wal_rotation_spreads_the_log_over_segments_and_recovers_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.wal_segment_bytes = 2 << 10;
    let changes = {
        let engine = Engine::open(options).unwrap();
        engine
            .create_table(crate::common::accounts_schema())
            .unwrap();
        engine.create_table(crate::common::events_schema()).unwrap();
        mixed_workload(&engine);
        assert!(engine.metrics().wal_rotations > 3);
        all_changes(&engine)
    };
    let engine = open(dir.path());
    assert!(engine.recovery().wal.segments > 4);
    assert_eq!(all_changes(&engine), changes);
}

const CHILD_DIR_ENV: &str = "TIDEFEED_CRASH_CHILD_DIR";

/// The writer process for the kill -9 test: writes until killed, printing
/// each acknowledged write as `ack <seq> <id>`.
#[test]
#[ignore = "helper process: runs only when spawned by kill_9_during_writes_loses_no_acknowledged_write"]
fn crash_child_writer() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("spawned by the kill -9 test");
    let engine = Arc::new(open_with_tables(std::path::Path::new(&dir)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = i * 4 + t;
                    let result = engine
                        .write(vec![Mutation::upsert(
                            "accounts",
                            account(id, "crash", id * 10),
                        )])
                        .unwrap();
                    println!("ack {} {}", result.first_seq().unwrap(), id);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildWriter::spawn(
        "crash_recovery::crash_child_writer",
        CHILD_DIR_ENV,
        dir.path(),
    );
    let acked: Vec<(u64, i64)> = child
        .acks(3000)
        .iter()
        .map(|a| (a[0] as u64, a[1]))
        .collect();
    child.kill();

    let engine = open(dir.path());
    let changes = all_changes(&engine);
    assert_chain_consistent(&changes, engine.visible_seq());
    for (seq, id) in &acked {
        let row = engine
            .get("accounts", &[Value::Int64(*id)], None)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {id} (seq {seq}) is lost"));
        assert_eq!(row.seq, *seq);
        assert_eq!(row.row.values()[2], Value::Int64(id * 10));
        let change = &changes[*seq as usize - 1];
        assert_eq!(
            change.key,
            vec![Value::Int64(*id)],
            "seq {seq} appears once, for its own write"
        );
    }
}
