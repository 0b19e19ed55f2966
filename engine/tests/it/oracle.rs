//! Seeded random workloads through flushes and compactions, checked
//! against an in-memory oracle: reads at random seqs and the whole change
//! scan must equal the oracle exactly.

use std::collections::BTreeMap;

use tidefeed_engine::{ChangeKind, Engine, EngineOptions, Error, Mutation, Row, Seq, Value};

use crate::common::{account, accounts_schema, all_changes, Decoded};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The oracle's record of one change.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    seq: Seq,
    kind: ChangeKind,
    id: i64,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
}

fn row_values(id: i64, owner: &str, balance: i64, note: Option<&str>) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::String(owner.into()),
        Value::Int64(balance),
        note.map_or(Value::Null, |n| Value::String(n.into())),
    ]
}

/// The oracle's state at `seq`, replayed from its log.
fn state_at(log: &[Logged], seq: Seq) -> BTreeMap<i64, Vec<Value>> {
    let mut state = BTreeMap::new();
    for change in log.iter().take_while(|c| c.seq <= seq) {
        match &change.after {
            Some(row) => state.insert(change.id, row.clone()),
            None => state.remove(&change.id),
        };
    }
    state
}

fn run(seed: u64, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 8 << 10;
    options.table_file_bytes = 16 << 10;
    options.level_base_bytes = 64 << 10;
    options.l0_compaction_trigger = 2;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();

    let mut rng = Rng(seed | 1);
    let mut state: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let mut log: Vec<Logged> = Vec::new();
    let mut next_seq = 1;
    for step in 0..ops {
        // A batch of 1-3 operations on a small key space.
        let size = 1 + rng.below(3) as usize;
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        let mut shadow = state.clone();
        let mut valid = true;
        for _ in 0..size {
            let id = rng.below(40) as i64;
            match rng.below(10) {
                0..=4 => {
                    let balance = rng.below(1000) as i64;
                    batch.push(Mutation::upsert("accounts", account(id, "o", balance)));
                    let after = row_values(id, "o", balance, None);
                    let before = shadow.insert(id, after.clone());
                    let kind = if before.is_some() {
                        ChangeKind::Update
                    } else {
                        ChangeKind::Insert
                    };
                    expected.push((kind, id, before, Some(after)));
                }
                5..=7 => {
                    let note = format!("n{step}");
                    batch.push(Mutation::patch(
                        "accounts",
                        vec![Value::Int64(id)],
                        vec![("note".into(), Value::String(note.clone()))],
                    ));
                    match shadow.get(&id).cloned() {
                        Some(before) => {
                            let mut after = before.clone();
                            after[3] = Value::String(note);
                            shadow.insert(id, after.clone());
                            expected.push((ChangeKind::Update, id, Some(before), Some(after)));
                        }
                        None => valid = false,
                    }
                }
                _ => {
                    batch.push(Mutation::delete("accounts", vec![Value::Int64(id)]));
                    if let Some(before) = shadow.remove(&id) {
                        expected.push((ChangeKind::Delete, id, Some(before), None));
                    }
                }
            }
        }
        match engine.write(batch) {
            Ok(result) => {
                assert!(
                    valid,
                    "seed {seed} step {step}: a patch of a missing row was accepted"
                );
                assert_eq!(
                    result
                        .outcomes
                        .iter()
                        .filter(|o| !matches!(o, tidefeed_engine::Outcome::NoOp))
                        .count(),
                    expected.len()
                );
                for (kind, id, before, after) in expected {
                    log.push(Logged {
                        seq: next_seq,
                        kind,
                        id,
                        before,
                        after,
                    });
                    next_seq += 1;
                }
                state = shadow;
            }
            Err(e) => {
                assert!(!valid, "seed {seed} step {step}: unexpected error {e}");
                assert!(
                    matches!(e, Error::RowNotFound { .. } | Error::InBatch { .. }),
                    "{e}"
                );
            }
        }
        match rng.below(100) {
            0..=2 => engine.flush().unwrap(),
            3 => engine.compact().unwrap(),
            _ => {}
        }
    }
    engine.flush().unwrap();
    let metrics = engine.metrics();
    assert!(
        metrics.flushes > 3 && metrics.compactions > 1,
        "seed {seed}: {metrics:?}"
    );
    assert_eq!(engine.visible_seq(), next_seq - 1);

    // The change scan equals the oracle's op log exactly.
    let to_logged = |c: &Decoded| Logged {
        seq: c.seq,
        kind: c.kind,
        id: match c.key[0] {
            Value::Int64(id) => id,
            _ => unreachable!(),
        },
        before: c.before.clone().map(Row::into_values),
        after: c.after.clone().map(Row::into_values),
    };
    let scanned: Vec<Logged> = all_changes(&engine).iter().map(to_logged).collect();
    assert_eq!(
        scanned, log,
        "seed {seed}: change scan differs from the oracle"
    );

    // Reads at random seqs equal the oracle's state at that seq.
    for _ in 0..40 {
        let at = rng.below(next_seq);
        let expected = state_at(&log, at);
        let page = engine
            .scan("accounts", &Default::default(), usize::MAX, Some(at))
            .unwrap();
        let got: BTreeMap<i64, Vec<Value>> = page
            .rows
            .into_iter()
            .map(|r| match r.row.values()[0] {
                Value::Int64(id) => (id, r.row.into_values()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, expected, "seed {seed}: scan as of {at}");
        let id = rng.below(40) as i64;
        let point = engine
            .get("accounts", &[Value::Int64(id)], Some(at))
            .unwrap();
        assert_eq!(
            point.map(|r| r.row.into_values()),
            expected.get(&id).cloned(),
            "seed {seed}: get {id} as of {at}"
        );
    }

    // And all of it again after a restart.
    drop(engine);
    let engine = crate::common::open(dir.path());
    let rescanned: Vec<Logged> = all_changes(&engine).iter().map(to_logged).collect();
    assert_eq!(
        rescanned, log,
        "seed {seed}: change scan differs after restart"
    );
}

#[test]
fn random_workloads_through_flushes_and_compactions_match_the_oracle() {
    for seed in [1, 7, 42, 1234] {
        run(seed, 1200);
    }
}
