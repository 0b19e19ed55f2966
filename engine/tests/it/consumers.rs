//! Durable consumers hold retention, survive restarts, and are invalidated
//! loudly past the retention cap or their idle expiry.

use std::time::Duration;

use tidefeed_engine::{
    Durability, Engine, EngineOptions, Error, FaultInjector, InvalidationReason, Mutation,
};

use crate::common::{account, accounts_schema};

fn options(dir: &std::path::Path) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 8 << 10;
    // Without consumers, everything flushed falls below low-water at once.
    options.history_window = Some(Duration::ZERO);
    options
}

fn write(engine: &Engine, n: i64) {
    for i in 0..n {
        engine
            .write(vec![Mutation::upsert("accounts", account(i % 40, "c", i))])
            .unwrap();
    }
}

#[test]
fn a_consumer_holds_retention_at_its_position_until_it_acks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(options(dir.path())).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    engine.create_consumer("sink", Some(0)).unwrap();
    write(&engine, 1000);
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(engine.low_water(), 0, "the consumer at 0 holds all history");
    assert_eq!(engine.changes(0, None).unwrap().count(), 1000);

    assert_eq!(engine.consumers()[0].lag, 1000, "listed with its lag");
    engine.ack_consumer("sink", 500).unwrap();
    engine.ack_consumer("sink", 200).unwrap();
    assert_eq!(engine.consumer("sink").unwrap().lag, 500);
    assert_eq!(
        engine.consumer("sink").unwrap().position,
        500,
        "acks never move back"
    );
    engine.compact().unwrap();
    assert_eq!(engine.low_water(), 500, "retention follows the ack");
    assert_eq!(engine.changes(500, None).unwrap().count(), 500);
    assert!(matches!(
        engine.changes(499, None),
        Err(Error::BelowRetention { .. })
    ));
    let err = engine.ack_consumer("sink", 5000).unwrap_err();
    assert!(matches!(err, Error::FutureSeq { .. }), "{err}");

    engine.delete_consumer("sink").unwrap();
    engine.compact().unwrap();
    assert_eq!(
        engine.low_water(),
        1000,
        "without consumers the window applies"
    );
    assert!(matches!(
        engine.consumer("sink"),
        Err(Error::NoSuchConsumer { .. })
    ));
}

#[test]
fn consumers_are_created_only_inside_retained_history() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(options(dir.path())).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    write(&engine, 300);
    engine.flush().unwrap();
    engine.compact().unwrap();
    let low_water = engine.low_water();
    assert!(low_water > 0);
    assert!(matches!(
        engine.create_consumer("late", Some(0)),
        Err(Error::BelowRetention { .. })
    ));
    assert!(matches!(
        engine.create_consumer("early", Some(10_000)),
        Err(Error::FutureSeq { .. })
    ));
    let created = engine.create_consumer("now", None).unwrap();
    assert_eq!(created.position, engine.visible_seq());
    assert!(matches!(
        engine.create_consumer("now", None),
        Err(Error::ConsumerExists { .. })
    ));
    assert!(matches!(
        engine.create_consumer("No Spaces", None),
        Err(Error::InvalidConsumerName { .. })
    ));
}

#[test]
fn positions_and_invalidations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(options(dir.path())).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("sink", Some(0)).unwrap();
        write(&engine, 400);
        engine.ack_consumer("sink", 300).unwrap();
        engine.close().unwrap();
    }
    let engine = Engine::open(options(dir.path())).unwrap();
    assert_eq!(
        engine.consumer("sink").unwrap().position,
        300,
        "close writes pending acks"
    );
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(engine.low_water(), 300);
}

#[test]
fn a_consumer_holding_more_than_the_retention_cap_is_invalidated_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.max_retention_bytes = Some(1);
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    engine.create_consumer("dead", Some(0)).unwrap();
    write(&engine, 1000);
    engine.flush().unwrap();
    engine.compact().unwrap();
    let info = engine.consumer("dead").unwrap();
    let reason = info.invalidated.expect("invalidated");
    assert!(
        matches!(reason, InvalidationReason::RetentionCap { held_bytes, max_bytes: 1 } if held_bytes > 1),
        "{reason:?}"
    );
    assert!(engine.low_water() > 0, "it no longer holds retention");
    assert_eq!(engine.metrics().consumers_invalidated, 1);
    let err = engine.ack_consumer("dead", 10).unwrap_err();
    assert!(
        matches!(&err, Error::ConsumerInvalidated { name, .. } if name == "dead"),
        "{err}"
    );
    assert!(err.to_string().contains("max_retention_bytes"), "{err}");
    assert!(matches!(
        engine.consumer_position("dead"),
        Err(Error::ConsumerInvalidated { .. })
    ));
}

#[test]
fn a_consumer_idle_past_its_expiry_is_invalidated() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.consumer_idle_expiry = Some(Duration::from_millis(50));
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    engine.create_consumer("idle", None).unwrap();
    engine.create_consumer("busy", None).unwrap();
    write(&engine, 10);
    std::thread::sleep(Duration::from_millis(120));
    engine.ack_consumer("busy", 10).unwrap();
    engine.compact().unwrap();
    let reason = engine
        .consumer("idle")
        .unwrap()
        .invalidated
        .expect("idle consumer invalidated");
    assert!(
        matches!(reason, InvalidationReason::IdleExpiry { .. }),
        "{reason:?}"
    );
    assert!(reason.to_string().contains("idle expiry"), "{reason}");
    assert!(engine.consumer("busy").unwrap().invalidated.is_none());
}

/// A consumer that has acknowledged everything holds no history: a quiet
/// log (nothing to acknowledge) does not make it idle, however long.
#[test]
fn a_caught_up_consumer_is_never_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.consumer_idle_expiry = Some(Duration::from_millis(50));
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    write(&engine, 10);
    engine.create_consumer("caught-up", None).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    engine.settle().unwrap();
    assert_eq!(engine.consumer("caught-up").unwrap().invalidated, None);
    // Once behind, the expiry counts from when it was last caught up.
    write(&engine, 1);
    std::thread::sleep(Duration::from_millis(120));
    engine.settle().unwrap();
    assert!(matches!(
        engine.consumer("caught-up").unwrap().invalidated,
        Some(InvalidationReason::IdleExpiry { .. })
    ));
}

/// The cap is measured on the history a consumer holds back beyond the
/// window, not on the size of the database: in a database much larger than
/// the cap, a consumer one change behind is fine, and one holding more
/// than the cap of history is invalidated with what it held.
#[test]
fn the_retention_cap_counts_only_the_history_a_consumer_holds_beyond_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.max_retention_bytes = Some(64 << 10);
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    // ~600 KiB of live rows, all flushed: ten times the cap.
    for i in 0..600 {
        let mut row = account(i, "c", i);
        row.push((
            "note".into(),
            tidefeed_engine::Value::String("x".repeat(1000)),
        ));
        engine
            .write(vec![Mutation::upsert("accounts", row)])
            .unwrap();
    }
    engine.flush().unwrap();
    engine.settle().unwrap();
    engine.create_consumer("close-behind", None).unwrap();
    write(&engine, 1);
    engine.flush().unwrap();
    engine.settle().unwrap();
    assert_eq!(
        engine.consumer("close-behind").unwrap().invalidated,
        None,
        "one small change behind in a database larger than the cap"
    );

    // A consumer that stops acking while ~200 KiB more are written holds
    // that much beyond the window: over the cap.
    engine.create_consumer("stuck", None).unwrap();
    for i in 0..200 {
        let mut row = account(i, "d", i);
        row.push((
            "note".into(),
            tidefeed_engine::Value::String("y".repeat(1000)),
        ));
        engine
            .write(vec![Mutation::upsert("accounts", row)])
            .unwrap();
        if i % 50 == 0 {
            engine.flush().unwrap();
        }
    }
    engine.flush().unwrap();
    engine.settle().unwrap();
    let reason = engine.consumer("stuck").unwrap().invalidated;
    assert!(
        matches!(reason, Some(InvalidationReason::RetentionCap { held_bytes, max_bytes }) if held_bytes > max_bytes && max_bytes == 64 << 10),
        "{reason:?}"
    );
}

/// Low-water is committed from written positions only: a crash after the
/// manifest moves but before the acks are written (simulated by a failing
/// consumers-file write) leaves every consumer able to read its history.
#[test]
fn a_lost_ack_only_retains_more() {
    let dir = tempfile::tempdir().unwrap();
    let faults = std::sync::Arc::new(FaultInjector::new());
    {
        let mut options = options(dir.path());
        options.faults = Some(faults.clone());
        let engine = Engine::open(options).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("sink", Some(0)).unwrap();
        write(&engine, 500);
        engine.flush().unwrap();
        engine.ack_consumer("sink", 400).unwrap();
        faults.fail_consumers_file_after(1);
        let err = engine.settle().unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Poisoned {
                    stage: tidefeed_engine::Stage::Consumers,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("consumers.json"),
            "names the file: {err}"
        );
        let _ = engine.close();
    }
    let engine = Engine::open(options(dir.path())).unwrap();
    let position = engine.consumer_position("sink").unwrap();
    assert!(
        position >= engine.low_water(),
        "position {position} below low-water {}",
        engine.low_water()
    );
    assert_eq!(
        engine.changes(position, None).unwrap().count() as u64,
        500 - position
    );
}

/// In async mode an ack may run ahead of what is fdatasynced; the written
/// position never does, and a position found beyond the recovered log (an
/// edited or foreign file) is moved back so no later write is skipped.
#[test]
fn consumer_positions_never_pass_the_durable_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut options = options(dir.path());
        options.durability = Durability::Async {
            interval: Duration::from_secs(3600),
        };
        let engine = Engine::open(options).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("sink", Some(0)).unwrap();
        write(&engine, 10);
        engine.ack_consumer("sink", 10).unwrap();
        engine.settle().unwrap();
        let file = std::fs::read_to_string(dir.path().join("consumers.json")).unwrap();
        let written: serde_json::Value = serde_json::from_str(&file).unwrap();
        assert_eq!(
            written["consumers"][0]["position"], 0,
            "nothing is fdatasynced yet, so the written position stays at 0: {file}"
        );
        engine.close().unwrap();
    }
    // A consumers file that claims more than the log holds.
    let path = dir.path().join("consumers.json");
    let file = std::fs::read_to_string(&path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&file).unwrap();
    edited["consumers"][0]["position"] = 25.into();
    std::fs::write(&path, edited.to_string()).unwrap();
    let engine = Engine::open(options(dir.path())).unwrap();
    assert_eq!(engine.visible_seq(), 10);
    assert_eq!(
        engine.consumer_position("sink").unwrap(),
        10,
        "moved back to the log's head"
    );
    write(&engine, 3);
    let seqs: Vec<u64> = engine
        .changes(engine.consumer_position("sink").unwrap(), None)
        .unwrap()
        .map(|c| c.unwrap().seq())
        .collect();
    assert_eq!(seqs, vec![11, 12, 13], "no later write is skipped");
}

#[test]
fn lag_and_storage_are_measured_in_bytes_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(options(dir.path())).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    engine.create_consumer("sink", Some(0)).unwrap();
    write(&engine, 100);
    let in_memory = engine.consumer("sink").unwrap();
    assert_eq!(in_memory.lag, 100);
    assert!(
        in_memory.lag_bytes > 0,
        "memtable changes after the position"
    );
    assert!(engine.metrics().memtable_bytes > 0);
    engine.flush().unwrap();
    let metrics = engine.metrics();
    assert!(
        metrics.table_bytes > 0 && metrics.table_bytes == metrics.level_bytes.iter().sum::<u64>()
    );
    let flushed = engine.consumer("sink").unwrap().lag_bytes;
    assert!(flushed > 0, "flushed history after the position");
    engine.ack_consumer("sink", 100).unwrap();
    assert_eq!(engine.consumer("sink").unwrap().lag_bytes, 0, "caught up");
}

const CONSUMER_CHILD_DIR_ENV: &str = "TIDEFEED_CONSUMER_CHILD_DIR";

/// The engine of one kill -9 cycle: history collapses as soon as it is
/// flushed, so only the consumer holds it, and flushes and low-water
/// rounds run all the time.
fn crash_options(dir: &std::path::Path) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 4 << 10;
    options.history_window = Some(Duration::ZERO);
    options.l0_compaction_trigger = 2;
    options
}

/// The process the kill -9 test kills: writes, and acks the consumer a
/// few hundred changes behind the head, until killed.
#[test]
#[ignore = "helper process: runs only when spawned by a_consumer_reads_its_history_after_every_kill_9"]
fn consumer_crash_child() {
    let dir = std::env::var(CONSUMER_CHILD_DIR_ENV).expect("spawned by the kill -9 test");
    let engine = Engine::open(crash_options(std::path::Path::new(&dir))).unwrap();
    if engine.table("accounts").is_none() {
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("sink", Some(0)).unwrap();
    }
    for i in 0.. {
        let result = engine
            .write(vec![Mutation::upsert("accounts", account(i % 97, "k", i))])
            .unwrap();
        let seq = result.first_seq().unwrap();
        // Several memtables behind the head, so the consumer (not the
        // window) is what holds low-water, and every round moves it.
        engine
            .ack_consumer("sink", seq.saturating_sub(300))
            .unwrap();
        println!("ack {seq}");
    }
}

/// Kill -9 at random points while a consumer acks as it goes and the
/// background worker moves low-water behind it: after every restart the
/// consumer is valid and can read everything after its position.
#[test]
fn a_consumer_reads_its_history_after_every_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for cycle in 0..12u64 {
        let mut child = crate::common::ChildWriter::spawn(
            "consumers::consumer_crash_child",
            CONSUMER_CHILD_DIR_ENV,
            dir.path(),
        );
        // Vary the kill point: a few hundred to a couple of thousand writes.
        child.acks(200 + (cycle * 7919) as usize % 1800);
        child.kill();
        let engine = Engine::open(crash_options(dir.path())).unwrap();
        let info = engine.consumer("sink").unwrap();
        assert_eq!(info.invalidated, None, "cycle {cycle}: {info:?}");
        assert!(
            info.position >= engine.low_water(),
            "cycle {cycle}: position {} below low-water {}",
            info.position,
            engine.low_water()
        );
        let read = engine.changes(info.position, None).unwrap().count() as u64;
        assert_eq!(read, engine.visible_seq() - info.position, "cycle {cycle}");
        engine.close().unwrap();
    }
}
