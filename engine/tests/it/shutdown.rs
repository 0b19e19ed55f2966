//! Failures of background work and engine threads stop the engine with
//! their stage and cause, never a hang; close ends stalls and returns; a
//! closed engine touches nothing; stalled writers wake when compaction
//! (not only a flush) makes room.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tidefeed_engine::{Engine, EngineOptions, Error, FaultInjector, Mutation, Stage, Value};

use crate::common::{account, accounts_schema, events_schema, open};

/// Generous: only a hang (the defect) ever comes near it.
const PROMPTLY: Duration = Duration::from_secs(30);

fn with_faults(dir: &std::path::Path) -> (EngineOptions, Arc<FaultInjector>) {
    let faults = Arc::new(FaultInjector::new());
    let mut options = EngineOptions::new(dir);
    options.faults = Some(faults.clone());
    (options, faults)
}

fn upsert(id: i64) -> Vec<Mutation> {
    vec![Mutation::upsert("accounts", account(id, "o", id))]
}

/// Runs `f` on a thread and returns its result, failing if it does not
/// finish within `PROMPTLY`.
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPTLY)
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn assert_poisoned(err: &Error, stage: Stage, cause: &str) {
    match err {
        Error::Poisoned { stage: s, cause: c } => {
            assert_eq!(*s, stage, "{err}");
            assert!(c.to_string().contains(cause), "{err}");
        }
        other => panic!("expected Poisoned at {stage}, got: {other}"),
    }
}

#[test]
fn a_panic_in_the_background_thread_poisons_the_engine_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (mut options, faults) = with_faults(dir.path());
    options.memtable_bytes = 4 << 10;
    options.max_immutable_memtables = 2;
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    faults.panic_background_after(1);
    // Enough writes to need flushes: once flow control waits for one,
    // writers would stall forever if the panic went unnoticed.
    let writer = engine.clone();
    let outcome = promptly("writes after a background panic", move || {
        (0..5000).find_map(|i| writer.write(upsert(i)).err())
    });
    let err = outcome.expect("writes fail once the background thread is gone");
    assert_poisoned(&err, Stage::BackgroundThread, "injected panic");
    let flusher = engine.clone();
    let flushed = promptly("flush", move || flusher.flush());
    assert_poisoned(
        &flushed.unwrap_err(),
        Stage::BackgroundThread,
        "injected panic",
    );
    let closer = engine.clone();
    let closed = promptly("close", move || closer.close());
    assert_poisoned(
        &closed.unwrap_err(),
        Stage::BackgroundThread,
        "injected panic",
    );
}

#[test]
fn a_panic_in_the_commit_thread_poisons_the_engine_and_close_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = with_faults(dir.path());
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    engine.write(upsert(1)).unwrap();
    faults.panic_commit_after(1);
    let err = engine.write(upsert(2)).unwrap_err();
    assert_poisoned(&err, Stage::CommitThread, "panicked");
    let err = engine.write(upsert(3)).unwrap_err();
    assert_poisoned(&err, Stage::CommitThread, "panicked");
    let closer = engine.clone();
    let closed = promptly("close", move || closer.close());
    assert_poisoned(&closed.unwrap_err(), Stage::CommitThread, "injected panic");
    drop(engine);
    let reopened = open(dir.path());
    assert_eq!(reopened.visible_seq(), 1, "the acknowledged write survives");
}

#[test]
fn background_failures_keep_their_stage_and_file() {
    type Arm = fn(&FaultInjector);
    let cases: [(Arm, Stage, &str); 3] = [
        (|f| f.fail_compaction_after(1), Stage::Compaction, "sst"),
        (|f| f.fail_manifest_after(1), Stage::Manifest, "MANIFEST"),
        (
            |f| f.fail_consumers_file_after(1),
            Stage::Consumers,
            "consumers.json",
        ),
    ];
    for (arm, stage, file) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (options, faults) = with_faults(dir.path());
        let engine = Engine::open(options).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        engine.create_consumer("sink", Some(0)).unwrap();
        for i in 0..10 {
            engine.write(upsert(i)).unwrap();
        }
        engine.ack_consumer("sink", 5).unwrap();
        arm(&faults);
        // A full compaction commits a manifest and writes acks first.
        let err = match stage {
            Stage::Compaction => {
                engine.flush().unwrap();
                engine.compact().unwrap_err()
            }
            _ => engine.flush().and_then(|()| engine.compact()).unwrap_err(),
        };
        assert_poisoned(&err, stage, "injected");
        assert!(
            err.to_string().contains(file),
            "{stage}: names {file}: {err}"
        );
        let refused = engine.write(upsert(99)).unwrap_err();
        assert_poisoned(&refused, stage, "injected");
        let _ = engine.close();
    }
}

#[test]
fn close_ends_a_write_stall_and_the_stalled_writes_get_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut options, faults) = with_faults(dir.path());
    options.memtable_bytes = 1 << 10;
    options.max_immutable_memtables = 1;
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    faults.pause_flushes();
    let writer = engine.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0.. {
            if let Err(e) = writer.write(upsert(i)) {
                let _ = tx.send(e);
                return;
            }
        }
    });
    // Wait until the writer is stalled behind the paused flush.
    while engine.metrics().write_stalls == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let closer = engine.clone();
    let closing = std::thread::spawn(move || closer.close());
    let err = rx
        .recv_timeout(PROMPTLY)
        .expect("the stalled write returns");
    assert!(matches!(err, Error::Closed), "{err}");
    // The worker is still held by the paused flush; once it can go on,
    // close completes.
    faults.resume_flushes();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(closing.join().unwrap()));
    rx.recv_timeout(PROMPTLY)
        .expect("close returns")
        .expect("a clean close");
}

#[test]
fn stalled_writers_wake_when_a_compaction_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 2 << 10;
    options.l0_compaction_trigger = 2;
    options.max_l0_files = 2;
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    let writer = engine.clone();
    // Stall waits have no timer: a compaction that did not wake the
    // stalled writer would leave this hanging.
    promptly("1500 writes through L0 stalls", move || {
        for i in 0..1500 {
            writer.write(upsert(i % 300)).unwrap();
        }
    });
    let metrics = engine.metrics();
    assert!(
        metrics.write_stalls > 0 && metrics.compactions > 0,
        "the L0 limit must stall writes: {metrics:?}"
    );
}

#[test]
fn a_closed_engine_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.create_table(accounts_schema()).unwrap();
    a.close().unwrap();

    let b = open(dir.path());
    b.create_table(events_schema()).unwrap();
    b.write(vec![Mutation::upsert(
        "events",
        vec![
            ("stream".into(), Value::String("s".into())),
            ("n".into(), Value::Int64(1)),
        ],
    )])
    .unwrap();
    b.close().unwrap();

    let mut third = accounts_schema();
    third.name = "c".into();
    let closed = |r: &Result<(), Error>| matches!(r, Err(Error::Closed));
    assert!(closed(&a.create_table(third).map(|_| ())));
    assert!(closed(&a.create_consumer("x", None).map(|_| ())));
    assert!(closed(&a.delete_consumer("x")));
    assert!(closed(&a.ack_consumer("x", 0).map(|_| ())));
    assert!(closed(&a.write(upsert(1)).map(|_| ())));
    assert!(closed(&a.flush()));
    assert!(closed(&a.compact()));
    assert!(closed(
        &a.get("accounts", &[Value::Int64(1)], None).map(|_| ())
    ));
    assert!(closed(&a.changes(0, None).map(|_| ())));
    assert!(closed(&a.consumer("x").map(|_| ())));
    drop((a, b));

    let reopened = open(dir.path());
    let names: Vec<String> = reopened
        .tables()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(names, vec!["accounts", "events"]);
    assert_eq!(reopened.visible_seq(), 1);
    assert!(reopened.consumers().is_empty());
}

/// Dropping the last handle on a tokio worker closes the engine without
/// holding the executor: another task on the same one-worker runtime must
/// run meanwhile (here it is the one that lets the close finish).
#[test]
fn dropping_the_engine_on_a_tokio_worker_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (mut options, faults) = with_faults(dir.path());
    options.memtable_bytes = 1 << 10;
    options.max_immutable_memtables = 16;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    faults.pause_flushes();
    // Enough to rotate the memtable (not enough to stall): the flush that
    // starts is held, so closing, which waits for the background thread,
    // cannot finish until the flush is resumed.
    for i in 0..40 {
        engine.write(upsert(i)).unwrap();
    }
    assert!(engine.metrics().memtable_rotations > 0);
    promptly("dropping the engine inside the runtime", move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let releaser = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                faults.resume_flushes();
            });
            tokio::spawn(async move { drop(engine) }).await.unwrap();
            releaser.await.unwrap();
        });
    });
    let reopened = open(dir.path());
    assert_eq!(reopened.visible_seq(), 40);
}
