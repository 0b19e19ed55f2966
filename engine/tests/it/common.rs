//! Shared helpers for the engine tests.

use std::collections::BTreeMap;
use std::path::Path;

use tidefeed_engine::{
    BatchPosition, ChangeKind, Column, ColumnType, Engine, EngineOptions, Row, Seq, TableSchema,
    Value,
};

pub fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
    }
}

/// `accounts(id int64 pk, owner string, balance int64, note string?)`
pub fn accounts_schema() -> TableSchema {
    TableSchema {
        name: "accounts".into(),
        columns: vec![
            column("id", ColumnType::Int64, false),
            column("owner", ColumnType::String, false),
            column("balance", ColumnType::Int64, false),
            column("note", ColumnType::String, true),
        ],
        primary_key: vec!["id".into()],
    }
}

/// `events(stream string pk, n int64 pk, payload json?)`
pub fn events_schema() -> TableSchema {
    TableSchema {
        name: "events".into(),
        columns: vec![
            column("stream", ColumnType::String, false),
            column("n", ColumnType::Int64, false),
            column("payload", ColumnType::Json, true),
        ],
        primary_key: vec!["stream".into(), "n".into()],
    }
}

pub fn account(id: i64, owner: &str, balance: i64) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("owner".into(), Value::String(owner.into())),
        ("balance".into(), Value::Int64(balance)),
    ]
}

pub fn open(dir: &Path) -> Engine {
    Engine::open(EngineOptions::new(dir)).expect("engine opens")
}

pub fn open_with_tables(dir: &Path) -> Engine {
    let engine = open(dir);
    engine.create_table(accounts_schema()).unwrap();
    engine.create_table(events_schema()).unwrap();
    engine
}

/// A fully decoded change, comparable across engine instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub seq: Seq,
    pub ts_micros: i64,
    pub table: String,
    pub kind: ChangeKind,
    pub key: Vec<Value>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub batch: BatchPosition,
}

pub fn decode(change: &tidefeed_engine::Change) -> Decoded {
    Decoded {
        seq: change.seq(),
        ts_micros: change.ts_micros(),
        table: change.table().name().to_owned(),
        kind: change.kind(),
        key: change.key().unwrap(),
        before: change.before().unwrap(),
        after: change.after().unwrap(),
        batch: change.batch(),
    }
}

pub fn all_changes(engine: &Engine) -> Vec<Decoded> {
    engine
        .changes(0, None)
        .unwrap()
        .map(|change| decode(&change.unwrap()))
        .collect()
}

/// Every row of every table, by table name then key order.
pub fn all_rows(engine: &Engine) -> BTreeMap<String, Vec<(Seq, Row)>> {
    engine
        .tables()
        .iter()
        .map(|table| {
            let page = engine
                .scan(table.name(), &Default::default(), usize::MAX, None)
                .unwrap();
            assert!(page.next.is_none());
            (
                table.name().to_owned(),
                page.rows.into_iter().map(|r| (r.seq, r.row)).collect(),
            )
        })
        .collect()
}

/// Asserts the feed invariants: seqs 1..=visible without gap, kinds that
/// match the images, and per key a chain where each `before` equals the
/// previous `after` (none for the first change and after a delete).
pub fn assert_chain_consistent(changes: &[Decoded], visible: Seq) {
    let seqs: Vec<Seq> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=visible).collect::<Vec<_>>(),
        "seqs are not contiguous"
    );
    let mut last_after: BTreeMap<(String, String), Option<Row>> = BTreeMap::new();
    for change in changes {
        match change.kind {
            ChangeKind::Insert => assert!(change.before.is_none() && change.after.is_some()),
            ChangeKind::Update => assert!(change.before.is_some() && change.after.is_some()),
            ChangeKind::Delete => assert!(change.before.is_some() && change.after.is_none()),
        }
        let key = (change.table.clone(), format!("{:?}", change.key));
        let previous = last_after.get(&key).cloned().flatten();
        assert_eq!(
            change.before, previous,
            "seq {}: before-image does not equal the previous after-image of its key",
            change.seq
        );
        last_after.insert(key, change.after.clone());
    }
    let mut last_ts = i64::MIN;
    for change in changes {
        assert!(
            change.ts_micros >= last_ts,
            "commit timestamps go backwards"
        );
        last_ts = change.ts_micros;
    }
}

/// A writer process for kill -9 tests: the test binary itself, running
/// one ignored helper test that prints `ack <fields...>` per acknowledged
/// write until it is killed.
pub struct ChildWriter {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ChildWriter {
    pub fn spawn(test: &str, dir_env: &str, dir: &Path) -> ChildWriter {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(dir_env, dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        ChildWriter { child, lines }
    }

    /// The next `n` acknowledgements, as their numeric fields.
    pub fn acks(&mut self, n: usize) -> Vec<Vec<i64>> {
        let mut acks = Vec::with_capacity(n);
        while acks.len() < n {
            let line = self.lines.next().expect("child exited early").unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                acks.push(rest.split(' ').map(|f| f.parse().unwrap()).collect());
            }
        }
        acks
    }

    /// SIGKILL: no destructors, no final sync.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Asserts that each acknowledged `(id, seq)` of `accounts` is the row's
/// current version, and that the feed is chain-consistent.
pub fn assert_acknowledged_present(engine: &Engine, acked: &[(i64, Seq)]) {
    for (id, seq) in acked {
        let row = engine.get("accounts", &[Value::Int64(*id)], None).unwrap();
        assert_eq!(
            row.map(|r| r.seq),
            Some(*seq),
            "acknowledged write {id} lost"
        );
    }
    assert_chain_consistent(&all_changes(engine), engine.visible_seq());
}
