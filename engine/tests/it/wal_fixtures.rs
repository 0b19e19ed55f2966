//! Recovery from checked-in WAL files: a torn tail is cut off, corruption
//! before the tail stops startup with the file and offset named.

use std::fs;
use std::path::{Path, PathBuf};

use tidefeed_engine::{Corruption, Engine, EngineOptions, Error, Mutation, Value};

use crate::common::{account, accounts_schema, all_changes, assert_chain_consistent};

const BATCHES: i64 = 10;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Offsets of the frames of a segment, read from their length fields.
fn frame_offsets(segment: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 16;
    while pos + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if len == 0 || pos + 8 + len > segment.len() {
            break;
        }
        offsets.push(pos);
        pos += 8 + len;
    }
    offsets
}

const SEGMENT: &str = "wal/0000000001.log";

/// Writes the fixtures. Run by hand after a deliberate format change:
/// `cargo test -p tidefeed-engine --test it regenerate_wal_fixtures -- --ignored`
#[test]
#[ignore = "regenerates the checked-in WAL fixtures; run by hand after a format change"]
fn regenerate_wal_fixtures() {
    for name in ["wal_torn_tail", "wal_corrupt_middle"] {
        let dir = fixture(name);
        let _ = fs::remove_dir_all(&dir);
        let engine = Engine::open(EngineOptions::new(&dir)).unwrap();
        engine.create_table(accounts_schema()).unwrap();
        for i in 0..BATCHES {
            engine
                .write(vec![
                    Mutation::upsert("accounts", account(i, "fixture", i)),
                    Mutation::patch(
                        "accounts",
                        vec![Value::Int64(i)],
                        vec![("note".into(), Value::String("n".into()))],
                    ),
                ])
                .unwrap();
        }
        engine.close().unwrap();
        drop(engine);
        fs::remove_file(dir.join("LOCK")).unwrap();
        let path = dir.join(SEGMENT);
        let mut bytes = fs::read(&path).unwrap();
        let offsets = frame_offsets(&bytes);
        assert_eq!(offsets.len(), BATCHES as usize);
        if name == "wal_torn_tail" {
            // Half of a frame, as a crash during its write leaves it.
            let partial = bytes[offsets[1]..offsets[1] + 20].to_vec();
            bytes.extend_from_slice(&partial);
        } else {
            bytes[offsets[2] + 20] ^= 0x40;
            fs::write(dir.join("expected_offset"), offsets[2].to_string()).unwrap();
        }
        fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn a_torn_tail_is_truncated_and_everything_before_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("wal_torn_tail"), dir.path());
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    let torn = engine.recovery().wal.torn_bytes;
    assert!(
        torn > 8 && torn <= 20,
        "the 20-byte partial frame is discarded ({torn} bytes)"
    );
    assert_eq!(engine.visible_seq(), BATCHES as u64 * 2);
    let changes = all_changes(&engine);
    assert_chain_consistent(&changes, engine.visible_seq());
    let last = engine
        .get("accounts", &[Value::Int64(BATCHES - 1)], None)
        .unwrap()
        .unwrap();
    assert_eq!(last.row.values()[3], Value::String("n".into()));

    // The cut is durable: a second restart finds a clean log.
    engine
        .write(vec![Mutation::upsert("accounts", account(99, "after", 1))])
        .unwrap();
    drop(engine);
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    assert_eq!(engine.recovery().wal.torn_bytes, 0);
    assert_eq!(engine.visible_seq(), BATCHES as u64 * 2 + 1);
}

#[test]
fn a_corrupted_record_before_the_tail_stops_startup_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("wal_corrupt_middle"), dir.path());
    let expected: u64 = fs::read_to_string(dir.path().join("expected_offset"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let err = Engine::open(EngineOptions::new(dir.path()))
        .err()
        .expect("startup must fail");
    match &err {
        Error::Corruption {
            file,
            offset,
            problem,
        } => {
            assert!(file.ends_with(SEGMENT), "{err}");
            assert_eq!(*offset, expected);
            assert_eq!(*problem, Corruption::ChecksumMismatch);
        }
        other => panic!("expected Corruption, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("0000000001.log") && message.contains(&expected.to_string()),
        "{message}"
    );
    // Nothing was modified: the evidence stays for the operator.
    assert_eq!(
        fs::read(dir.path().join(SEGMENT)).unwrap(),
        fs::read(fixture("wal_corrupt_middle").join(SEGMENT)).unwrap()
    );
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("wal_torn_tail"), dir.path());
    // A later segment makes segment 1 sealed: its torn-looking end is now
    // damage to acknowledged data.
    fs::copy(
        dir.path().join(SEGMENT),
        dir.path().join("wal/0000000002.log"),
    )
    .unwrap();
    let err = Engine::open(EngineOptions::new(dir.path()))
        .err()
        .expect("startup must fail");
    assert!(
        matches!(&err, Error::Corruption { file, problem: Corruption::TruncatedSealedSegment, .. } if file.ends_with(SEGMENT)),
        "{err}"
    );
}

/// The last frame's row holds a copy of an earlier WAL frame (a `bytes`
/// column can hold anything). Cut at every byte of that last frame, or
/// zeroed from every byte on as a crash into preallocated space leaves it,
/// the log must recover as a torn tail: the earlier frames, nothing lost,
/// never "corruption followed by valid records".
#[test]
fn a_torn_tail_whose_lost_bytes_look_like_frames_is_still_a_torn_tail() {
    let source = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(EngineOptions::new(source.path())).unwrap();
        engine
            .create_table(tidefeed_engine::TableSchema {
                name: "blobs".into(),
                columns: vec![
                    crate::common::column("id", tidefeed_engine::ColumnType::Int64, false),
                    crate::common::column("data", tidefeed_engine::ColumnType::Bytes, true),
                ],
                primary_key: vec!["id".into()],
            })
            .unwrap();
        let blob = |id: i64, data: Vec<u8>| {
            vec![Mutation::upsert(
                "blobs",
                vec![
                    ("id".into(), Value::Int64(id)),
                    ("data".into(), Value::Bytes(data)),
                ],
            )]
        };
        for i in 0..3 {
            engine.write(blob(i, vec![i as u8; 40])).unwrap();
        }
        engine.close().unwrap();
        drop(engine);
        let segment = fs::read(wal_segment(source.path())).unwrap();
        let offsets = frame_offsets(&segment);
        // Frames 2 and 3 verbatim, twice: copies of history.
        let copy = segment[offsets[1]..].to_vec();
        let engine = Engine::open(EngineOptions::new(source.path())).unwrap();
        engine
            .write(blob(9, [copy.clone(), copy].concat()))
            .unwrap();
        engine.close().unwrap();
    }
    let path = wal_segment(source.path());
    let segment = fs::read(&path).unwrap();
    let offsets = frame_offsets(&segment);
    let last = *offsets.last().unwrap();
    for cut in last + 1..segment.len() {
        for zero_filled in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(source.path(), dir.path());
            let _ = fs::remove_file(dir.path().join("LOCK"));
            let mut torn = segment[..cut].to_vec();
            if zero_filled {
                torn.resize(segment.len() + 4096, 0);
            }
            fs::write(wal_segment(dir.path()), &torn).unwrap();
            let engine = Engine::open(EngineOptions::new(dir.path())).unwrap_or_else(|e| {
                panic!("cut at {cut} (zero-filled: {zero_filled}) refused: {e}")
            });
            assert_eq!(engine.visible_seq(), 3, "cut at {cut}");
            assert_eq!(engine.get("blobs", &[Value::Int64(9)], None).unwrap(), None);
        }
    }
}

/// The newest WAL segment of a data directory.
fn wal_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment")
}
