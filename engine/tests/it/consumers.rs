//! Durable consumers hold retention, survive restarts, and are invalidated
//! loudly past the retention cap or their idle expiry.

use std::time::Duration;

use tidefeed_engine::{Engine, EngineOptions, Error, Mutation};

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
    assert!(reason.contains("max_retention_bytes"), "{reason}");
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
    assert!(reason.contains("idle"), "{reason}");
    assert!(engine.consumer("busy").unwrap().invalidated.is_none());
}
