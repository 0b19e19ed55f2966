//! Memtables reach L0 table files; the WAL shrinks; restarts read the
//! files back without duplicating anything; failures stop the engine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidefeed_engine::{Engine, EngineOptions, Error, FaultInjector, Mutation, Stage, Value};

use crate::common::{
    account, accounts_schema, all_changes, all_rows, assert_acknowledged_present,
    assert_chain_consistent, events_schema, ChildWriter,
};

pub fn small_options(dir: &Path) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 16 << 10;
    options.wal_segment_bytes = 16 << 10;
    options
}

fn workload(engine: &Engine, rounds: i64) {
    for i in 0..rounds {
        let id = i % 97;
        engine
            .write(vec![Mutation::upsert("accounts", account(id, "f", i))])
            .unwrap();
        if i % 5 == 0 {
            engine
                .write(vec![Mutation::delete(
                    "accounts",
                    vec![Value::Int64((id * 7) % 97)],
                )])
                .unwrap();
        }
        if i % 3 == 0 {
            // The key may have just been deleted above.
            let patched = engine.write(vec![Mutation::patch(
                "accounts",
                vec![Value::Int64(id)],
                vec![("note".into(), Value::String(format!("n{i}")))],
            )]);
            assert!(
                matches!(patched, Ok(_) | Err(Error::RowNotFound { .. })),
                "{patched:?}"
            );
        }
    }
}

fn wait_for_flushes(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.metrics().immutable_memtables > 0 {
        assert!(Instant::now() < deadline, "flushes did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal")).unwrap().count()
}

#[test]
fn flushed_history_reads_back_identically_after_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, changes, flushed_seq) = {
        let engine = Engine::open(small_options(dir.path())).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        workload(&engine, 3000);
        wait_for_flushes(&engine);
        let metrics = engine.metrics();
        assert!(
            metrics.flushes >= 5 && metrics.compactions >= 1,
            "{metrics:?}"
        );
        assert!(metrics.flushed_seq > 0);
        let changes = all_changes(&engine);
        assert_chain_consistent(&changes, engine.visible_seq());
        (all_rows(&engine), changes, metrics.flushed_seq)
    };
    assert!(
        wal_segments(dir.path()) < 10,
        "WAL segments covered by table files are deleted ({} remain)",
        wal_segments(dir.path())
    );

    let engine = Engine::open(small_options(dir.path())).unwrap();
    assert!(engine.metrics().flushed_seq >= flushed_seq);
    assert_eq!(all_rows(&engine), rows);
    assert_eq!(
        all_changes(&engine),
        changes,
        "the change scan is identical: no duplicate, no gap"
    );
    // Reads as of a seq inside flushed history.
    let at = changes[changes.len() / 3].seq;
    let expected = changes
        .iter()
        .rfind(|c| c.seq <= at && c.key == vec![Value::Int64(5)])
        .and_then(|c| c.after.clone());
    assert_eq!(
        engine
            .get("accounts", &[Value::Int64(5)], Some(at))
            .unwrap()
            .map(|r| r.row),
        expected
    );
}

#[test]
fn a_table_file_without_a_manifest_entry_is_removed_and_a_missing_one_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(small_options(dir.path())).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        workload(&engine, 1000);
        wait_for_flushes(&engine);
    }
    // A crash between writing a table file and committing the manifest
    // leaves an orphan.
    let orphan = dir.path().join("sst/9999999999.sst");
    std::fs::write(&orphan, b"half-written").unwrap();
    let changes = {
        let engine = Engine::open(small_options(dir.path())).unwrap();
        assert!(!orphan.exists());
        all_changes(&engine)
    };
    let first = std::fs::read_dir(dir.path().join("sst"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    let err = Engine::open(small_options(dir.path()))
        .err()
        .expect("a listed file is missing");
    assert!(
        matches!(&err, Error::Corruption { file, .. } if *file == first),
        "{err}"
    );
    assert!(!changes.is_empty());
}

#[test]
fn a_failed_flush_stops_writes_and_a_restart_recovers_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let mut options = small_options(dir.path());
    options.faults = Some(faults.clone());
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    faults.fail_flush_after(2);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..20_000i64 {
        match engine.write(vec![Mutation::upsert("accounts", account(i, "x", i))]) {
            Ok(result) => acked.push((i, result.first_seq().unwrap())),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("writes stop after the flush failure");
    assert!(
        matches!(
            err,
            Error::Poisoned {
                stage: Stage::Flush,
                ..
            }
        ),
        "{err}"
    );
    assert!(engine.close().is_err());
    drop(engine);

    let engine = Engine::open(small_options(dir.path())).unwrap();
    assert_acknowledged_present(&engine, &acked);
}

#[test]
fn writers_stall_while_memtables_wait_for_flush_so_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_options(dir.path());
    options.max_immutable_memtables = 1;
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    engine.create_table(events_schema()).unwrap();
    let writers: Vec<_> = (0..8i64)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                for i in 0..400 {
                    let id = w * 1000 + i;
                    engine
                        .write(vec![Mutation::upsert("accounts", account(id, "s", id))])
                        .unwrap();
                    peak = peak.max(engine.metrics().immutable_memtables);
                }
                peak
            })
        })
        .collect();
    let peak = writers
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap();
    let metrics = engine.metrics();
    assert!(
        peak <= 2,
        "at most the stall limit plus the one being rotated: {peak}"
    );
    assert!(
        metrics.write_stalls > 0,
        "writes waited for flushes: {metrics:?}"
    );
    assert_eq!(metrics.committed_changes, 3200);
}

const CHILD_DIR_ENV: &str = "TIDEFEED_FLUSH_CRASH_CHILD_DIR";

#[test]
#[ignore = "helper process: runs only when spawned by kill_9_while_flushing_loses_nothing_and_duplicates_nothing"]
fn flush_crash_child_writer() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("spawned by the kill -9 test");
    let engine = Arc::new(Engine::open(small_options(Path::new(&dir))).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    let threads: Vec<_> = (0..4i64)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = (i * 4 + t) % 5000;
                    let result = engine
                        .write(vec![Mutation::upsert("accounts", account(id, "crash", i))])
                        .unwrap();
                    println!("ack {} {} {}", result.first_seq().unwrap(), id, i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill_9_while_flushing_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        ChildWriter::spawn("flush::flush_crash_child_writer", CHILD_DIR_ENV, dir.path());
    // The newest acknowledged write per key, by seq.
    let mut acked = std::collections::HashMap::new();
    for ack in child.acks(6000) {
        let entry = acked.entry(ack[1]).or_insert((0, 0));
        if ack[0] > entry.0 {
            *entry = (ack[0], ack[2]);
        }
    }
    child.kill();

    let engine = Engine::open(small_options(dir.path())).unwrap();
    assert!(
        engine.metrics().flushed_seq > 0,
        "the child flushed before it died"
    );
    let changes = all_changes(&engine);
    assert_chain_consistent(&changes, engine.visible_seq());
    for (id, (seq, i)) in &acked {
        let row = engine
            .get("accounts", &[Value::Int64(*id)], None)
            .unwrap()
            .expect("acknowledged row");
        assert!(
            row.seq >= *seq as u64,
            "key {id}: acknowledged seq {seq} lost (found {})",
            row.seq
        );
        if row.seq == *seq as u64 {
            assert_eq!(row.row.values()[2], Value::Int64(*i));
        }
    }
}

/// Offset of a table file's first log block, read from its footer and seq
/// directory (format in `engine/src/sst/mod.rs`).
fn first_log_block_offset(bytes: &[u8]) -> usize {
    let footer = &bytes[bytes.len() - 76..];
    let dir_offset = u64::from_le_bytes(footer[12..20].try_into().unwrap()) as usize;
    // Directory entry: u64 first seq, then a varint offset.
    let mut offset = 0usize;
    for (i, byte) in bytes[dir_offset + 8..].iter().enumerate() {
        offset |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    offset
}

#[test]
fn a_corrupted_table_block_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(small_options(dir.path())).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        workload(&engine, 300);
        engine.flush().unwrap();
    }
    let file = std::fs::read_dir(dir.path().join("sst"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let log_offset = first_log_block_offset(&bytes);
    bytes[50] ^= 0x20;
    bytes[log_offset + 50] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let engine = Engine::open(small_options(dir.path())).unwrap();
    let from_scan = engine
        .scan("accounts", &Default::default(), usize::MAX, None)
        .unwrap_err();
    let from_feed = engine
        .changes(0, None)
        .unwrap()
        .find_map(Result::err)
        .expect("the damage is found");
    for (err, expected) in [(from_scan, 0), (from_feed, log_offset as u64)] {
        match &err {
            Error::Corruption {
                file: f, offset, ..
            } => {
                assert_eq!(f, &file);
                assert_eq!(*offset, expected, "{err}");
            }
            other => panic!("expected corruption, got {other}"),
        }
    }
}

#[test]
fn wal_segments_already_covered_by_table_files_are_not_replayed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let changes = {
        // Nothing flushes until asked; the WAL rotates into several segments.
        let mut options = small_options(dir.path());
        options.memtable_bytes = 4 << 20;
        let engine = Engine::open(options).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        workload(&engine, 500);
        assert!(wal_segments(dir.path()) > 2);
        // Keep the WAL as it is before the flush deletes segments.
        for entry in std::fs::read_dir(dir.path().join("wal")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), saved.path().join(entry.file_name())).unwrap();
        }
        engine.flush().unwrap();
        all_changes(&engine)
    };
    // A crash after the manifest commit but before the WAL cleanup leaves
    // segments whose changes are already in table files.
    let mut restored = 0;
    for entry in std::fs::read_dir(saved.path()).unwrap() {
        let entry = entry.unwrap();
        let target = dir.path().join("wal").join(entry.file_name());
        if !target.exists() {
            std::fs::copy(entry.path(), target).unwrap();
            restored += 1;
        }
    }
    assert!(restored > 0, "the flush deleted covered segments");
    let engine = Engine::open(small_options(dir.path())).unwrap();
    assert_eq!(all_changes(&engine), changes, "no change appears twice");
    drop(engine);
    assert!(
        wal_segments(dir.path()) <= 3,
        "covered segments were deleted at startup"
    );
}
