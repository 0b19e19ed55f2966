//! History below the low-water mark is refused loudly; history above it
//! survives every compaction.

use std::time::Duration;

use tidefeed_engine::{Engine, EngineOptions, Error, Mutation, Value};

use crate::common::{account, accounts_schema, all_rows};

const WINDOW: Duration = Duration::from_secs(3);

/// (seq, key, before, after) of one change.
type History = Vec<(u64, Vec<Value>, Option<Vec<Value>>, Option<Vec<Value>>)>;

#[test]
fn below_low_water_is_an_error_and_above_it_history_is_intact_after_full_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = Some(WINDOW);
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();

    // Old history: flushed, then left to age out of the window.
    for i in 0..2000i64 {
        engine
            .write(vec![Mutation::upsert(
                "accounts",
                account(i % 50, "old", i),
            )])
            .unwrap();
    }
    engine.flush().unwrap();
    assert_eq!(
        engine.low_water(),
        0,
        "nothing is older than the window yet"
    );
    std::thread::sleep(WINDOW + Duration::from_millis(200));
    engine.compact().unwrap();
    let low_water = engine.low_water();
    assert_eq!(low_water, 2000, "the aged-out flush moved low-water");

    // New history above low-water, flushed into table files, with deletes.
    for i in 0..300i64 {
        engine
            .write(vec![Mutation::upsert(
                "accounts",
                account(i % 60, "new", i),
            )])
            .unwrap();
        if i % 10 == 0 {
            engine
                .write(vec![Mutation::delete(
                    "accounts",
                    vec![Value::Int64(i % 60)],
                )])
                .unwrap();
        }
    }
    engine.flush().unwrap();
    assert!(engine.metrics().flushed_seq > low_water);

    let err = engine.changes(0, None).err().expect("below low-water");
    assert!(
        matches!(err, Error::BelowRetention { requested: 0, low_water: lw } if lw == low_water),
        "{err}"
    );
    let err = engine
        .get("accounts", &[Value::Int64(1)], Some(low_water - 1))
        .unwrap_err();
    assert!(matches!(err, Error::BelowRetention { .. }), "{err}");

    let collect = |engine: &Engine| -> History {
        engine
            .changes(low_water, None)
            .unwrap()
            .map(|c| {
                let c = c.unwrap();
                (
                    c.seq(),
                    c.key().unwrap(),
                    c.before().unwrap().map(|r| r.into_values()),
                    c.after().unwrap().map(|r| r.into_values()),
                )
            })
            .collect()
    };
    let history = collect(&engine);
    assert_eq!(history.len() as u64, engine.visible_seq() - low_water);
    let rows = all_rows(&engine);
    let state_at_low_water = engine
        .scan("accounts", &Default::default(), usize::MAX, Some(low_water))
        .unwrap();
    assert_eq!(state_at_low_water.rows.len(), 50);

    engine.compact().unwrap();
    assert_eq!(
        engine.low_water(),
        low_water,
        "the new flushes are inside the window"
    );
    assert_eq!(
        collect(&engine),
        history,
        "history above low-water survives full compaction"
    );
    assert_eq!(all_rows(&engine), rows);
    assert_eq!(
        engine
            .scan("accounts", &Default::default(), usize::MAX, Some(low_water))
            .unwrap(),
        state_at_low_water,
        "reads at low-water still see the state at low-water"
    );

    // The mark is durable.
    drop(engine);
    let engine = crate::common::open(dir.path());
    assert!(engine.low_water() >= low_water);
    assert!(matches!(
        engine.changes(1, None),
        Err(Error::BelowRetention { .. })
    ));
}

#[test]
fn a_window_of_forever_keeps_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    for i in 0..1500i64 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i % 10, "x", i))])
            .unwrap();
    }
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(engine.low_water(), 0);
    assert_eq!(engine.changes(0, None).unwrap().count(), 1500);
}

#[test]
fn a_bytes_window_keeps_at_most_that_much_flushed_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.history_window = None;
    options.history_bytes = Some(40 << 10);
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    for i in 0..4000i64 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i % 50, "b", i))])
            .unwrap();
    }
    engine.flush().unwrap();
    engine.compact().unwrap();
    let metrics = engine.metrics();
    let low_water = engine.low_water();
    assert!(
        low_water > 0 && low_water < metrics.flushed_seq,
        "low-water {low_water}, flushed {}",
        metrics.flushed_seq
    );
    assert!(matches!(
        engine.changes(0, None),
        Err(Error::BelowRetention { .. })
    ));
    let retained = engine.changes(low_water, None).unwrap().count();
    assert!(
        retained > 100,
        "recent history is kept ({retained} changes)"
    );
    assert!(
        metrics.flushed_bytes > 3 * (40 << 10),
        "more was flushed ({}) than the window keeps",
        metrics.flushed_bytes
    );
}
