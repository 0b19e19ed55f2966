//! Start-up against a data directory whose metadata files are missing,
//! damaged or stale: it refuses with an error naming the file and changes
//! nothing in the directory (no table file, WAL segment or metadata file
//! is created, truncated or deleted).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tidefeed_engine::{Corruption, Engine, EngineOptions, Error, Mutation, Value};

use crate::common::{account, accounts_schema, events_schema, open};

/// Every file of the directory (but the lock) and its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "LOCK" {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A directory with 40 writes: `flushed` puts them all in table files,
/// otherwise they stay in the WAL. A consumer exists either way.
fn populated(flushed: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_table(accounts_schema()).unwrap();
    for i in 0..40 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i, "o", i))])
            .unwrap();
    }
    engine.create_consumer("audit", Some(0)).unwrap();
    if flushed {
        engine.flush().unwrap();
    }
    engine.close().unwrap();
    dir
}

/// Opens the directory, expecting a refusal that names `file`, and checks
/// that the directory is byte for byte as it was.
fn assert_refused(dir: &Path, file: &str) -> Error {
    let before = snapshot(dir);
    let err = match Engine::open(EngineOptions::new(dir)) {
        Ok(_) => panic!("opened a directory whose {file} is missing or damaged"),
        Err(err) => err,
    };
    match &err {
        Error::Corruption { file: path, .. } => assert!(
            path.ends_with(file),
            "the error names {} instead of {file}: {err}",
            path.display()
        ),
        other => panic!("expected corruption in {file}, got: {other}"),
    }
    assert_eq!(
        snapshot(dir).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "a refused start-up created or deleted files"
    );
    assert!(snapshot(dir) == before, "a refused start-up changed a file");
    err
}

#[test]
fn a_missing_metadata_file_is_damage_not_a_fresh_start() {
    for flushed in [true, false] {
        for file in ["MANIFEST", "catalog.json", "consumers.json"] {
            let dir = populated(flushed);
            fs::remove_file(dir.path().join(file)).unwrap();
            let err = assert_refused(dir.path(), file);
            assert!(
                matches!(
                    &err,
                    Error::Corruption {
                        problem: Corruption::MissingMetadata { .. },
                        ..
                    }
                ),
                "flushed {flushed}, {file}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains("not new") && message.contains("changing nothing"),
                "{message}"
            );
        }
    }
}

#[test]
fn damaged_metadata_files_stop_start_up_and_name_the_file() {
    for (file, garbage) in [
        ("MANIFEST", &b"{\"format_version\": 1, \"next_"[..]),
        ("catalog.json", b"not json"),
        ("consumers.json", b"[1, 2"),
    ] {
        let dir = populated(true);
        fs::write(dir.path().join(file), garbage).unwrap();
        let err = assert_refused(dir.path(), file);
        let expected = match file {
            "MANIFEST" => matches!(
                &err,
                Error::Corruption {
                    problem: Corruption::BadManifest(_),
                    ..
                }
            ),
            "catalog.json" => matches!(
                &err,
                Error::Corruption {
                    problem: Corruption::BadCatalog(_),
                    ..
                }
            ),
            _ => matches!(
                &err,
                Error::Corruption {
                    problem: Corruption::BadConsumers(_),
                    ..
                }
            ),
        };
        assert!(expected, "{file}: {err}");
    }
}

#[test]
fn a_stale_manifest_is_refused_before_any_table_file_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_table(accounts_schema()).unwrap();
    for i in 0..20 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i, "o", i))])
            .unwrap();
    }
    engine.flush().unwrap();
    let old_manifest = fs::read(dir.path().join("MANIFEST")).unwrap();
    for i in 20..40 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i, "o", i))])
            .unwrap();
    }
    engine.flush().unwrap();
    // Merges the first file away, so the old manifest lists a file that
    // no longer exists, and the new files are ones it does not list.
    engine.compact().unwrap();
    engine.close().unwrap();
    drop(engine);
    fs::write(dir.path().join("MANIFEST"), old_manifest).unwrap();
    let err = assert_refused(dir.path(), "");
    assert!(
        matches!(
            &err,
            Error::Corruption {
                problem: Corruption::MissingTableFile,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_stale_catalog_is_refused_instead_of_reusing_a_table_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_table(accounts_schema()).unwrap();
    let old_catalog = fs::read(dir.path().join("catalog.json")).unwrap();
    engine.create_table(events_schema()).unwrap();
    engine
        .write(vec![Mutation::upsert(
            "events",
            vec![
                ("stream".into(), Value::String("s".into())),
                ("n".into(), Value::Int64(1)),
            ],
        )])
        .unwrap();
    engine.flush().unwrap();
    engine.close().unwrap();
    drop(engine);
    fs::write(dir.path().join("catalog.json"), &old_catalog).unwrap();
    let err = assert_refused(dir.path(), "catalog.json");
    assert!(
        matches!(
            &err,
            Error::Corruption {
                problem: Corruption::StaleCatalog {
                    table_id: 2,
                    highest_known: 1
                },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_new_directory_gets_its_metadata_at_once_and_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for file in ["MANIFEST", "catalog.json", "consumers.json"] {
        assert!(dir.path().join(file).exists(), "{file} not created");
    }
    engine.close().unwrap();
    drop(engine);
    let engine = open(dir.path());
    assert_eq!((engine.visible_seq(), engine.tables().len()), (0, 0));
}
