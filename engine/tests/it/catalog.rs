//! Tables are created durably, idempotently, and validated.

use tidefeed_engine::{ColumnType, CreateTable, Error, SchemaProblem};

use crate::common::{accounts_schema, column, open};

#[test]
fn tables_survive_a_restart_and_creation_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        assert!(matches!(
            engine.create_table(accounts_schema()).unwrap(),
            CreateTable::Created(_)
        ));
        assert!(matches!(
            engine.create_table(accounts_schema()).unwrap(),
            CreateTable::Exists(_)
        ));
        let mut different = accounts_schema();
        different
            .columns
            .push(column("extra", ColumnType::Bool, true));
        let err = engine.create_table(different).unwrap_err();
        assert!(
            matches!(&err, Error::SchemaConflict { table } if table == "accounts"),
            "{err}"
        );
    }
    let engine = open(dir.path());
    let table = engine.table("accounts").expect("table persisted");
    assert_eq!(table.schema(), &accounts_schema());
    assert_eq!(engine.tables().len(), 1);
}

#[test]
fn invalid_schemas_name_the_offending_column() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let mut schema = accounts_schema();
    schema.columns[0].nullable = true;
    let err = engine.create_table(schema).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSchema { problem: SchemaProblem::NullableKeyColumn(c), .. } if c == "id"),
        "{err}"
    );
    assert!(err.to_string().contains("\"id\""), "{err}");
    assert!(engine.tables().is_empty());
}

#[test]
fn a_data_directory_opens_in_one_engine_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let err = tidefeed_engine::Engine::open(tidefeed_engine::EngineOptions::new(dir.path()))
        .err()
        .unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    engine.close().unwrap();
    drop(engine);
    open(dir.path());
}

#[test]
fn a_corrupt_catalog_stops_startup_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).create_table(accounts_schema()).unwrap();
    std::fs::write(dir.path().join("catalog.json"), b"{ not json").unwrap();
    let err = tidefeed_engine::Engine::open(tidefeed_engine::EngineOptions::new(dir.path()))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Corruption { file, .. } if file.ends_with("catalog.json")),
        "{err}"
    );
}
