//! Helpers shared by the feed's behaviour tests: engines with small
//! memtables (so reads cross table files), a two-column table, a writer
//! workload, and a seeded RNG.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;

use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};

/// A table `name(id int64 key, n int64)`.
pub fn id_n_table(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
            Column {
                name: "n".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
        ],
        primary_key: vec!["id".into()],
    }
}

/// Options with small memtables and files, so changes are spread over
/// memtables and several levels of table files while writers run.
pub fn small_options(dir: &Path) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.memtable_bytes = 8 << 10;
    options.l0_compaction_trigger = 2;
    options.level_base_bytes = 32 << 10;
    options.table_file_bytes = 16 << 10;
    options.history_window = None;
    options
}

/// An engine over `dir` with the `id_n_table`s `tables`.
pub fn engine_with_tables(dir: &Path, tables: &[&str]) -> Engine {
    let engine = Engine::open(small_options(dir)).unwrap();
    for name in tables {
        engine.create_table(id_n_table(name)).unwrap();
    }
    engine
}

pub fn row(id: i64, n: i64) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("n".into(), Value::Int64(n)),
    ]
}

/// Writes rounds `from..to` of upserts over 300 keys of `a` and `b`, with
/// deletes and two-table batches mixed in.
pub fn write_rounds(engine: &Engine, from: i64, to: i64) {
    for i in from..to {
        let table = if i % 4 == 0 { "b" } else { "a" };
        engine
            .write(vec![Mutation::upsert(table, row(i % 300, i))])
            .unwrap();
        if i % 9 == 0 {
            // The key may be absent: a delete of a missing key is a no-op.
            engine
                .write(vec![Mutation::delete(
                    "a",
                    vec![Value::Int64((i * 7) % 300)],
                )])
                .unwrap();
        }
        if i % 13 == 0 {
            engine
                .write(vec![
                    Mutation::upsert("b", row(i % 17, -i)),
                    Mutation::upsert("a", row(i % 300, -i)),
                ])
                .unwrap();
        }
    }
}

/// xorshift64*: a small seeded RNG, so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
