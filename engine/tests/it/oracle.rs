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

/// How the engine under test is shaped.
#[derive(Clone, Copy, Debug)]
struct Shape {
    memtable_bytes: usize,
    table_file_bytes: u64,
    level_base_bytes: u64,
    /// `None` keeps all history; `Some(0)` collapses history at every
    /// flush, so tombstones at level boundaries and partial compactions
    /// below low-water happen all the time.
    history_window: Option<std::time::Duration>,
    /// Rows with a large note, so single keys fill files and levels.
    big_rows: bool,
    /// Distinct ids the workload writes at random.
    keys: u64,
    /// Write in phases, each to its own cluster of `keys` ids far from the
    /// others, with some writes (and deletes) going back to earlier
    /// clusters. Deeper levels then cover old clusters and leave holes
    /// where new data lands, while files spanning a hole's edge hold
    /// tombstones of old ids: the shape in which a compaction can misjudge
    /// whether it is the bottom for a tombstone.
    clusters: bool,
}

/// Roomy levels, full compactions now and then (the original shape).
const ROOMY: Shape = Shape {
    memtable_bytes: 8 << 10,
    table_file_bytes: 16 << 10,
    level_base_bytes: 64 << 10,
    history_window: None,
    big_rows: false,
    keys: 40,
    clusters: false,
};

/// Tiny memtables, files and levels: every flush triggers partial
/// compactions down several levels.
const TINY: Shape = Shape {
    memtable_bytes: 2 << 10,
    table_file_bytes: 1 << 10,
    level_base_bytes: 1 << 10,
    history_window: Some(std::time::Duration::ZERO),
    big_rows: true,
    keys: 60,
    clusters: true,
};

fn run(seed: u64, ops: usize) {
    run_shaped(seed, ops, ROOMY)
}

fn run_shaped(seed: u64, ops: usize, shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = shape.memtable_bytes;
    options.table_file_bytes = shape.table_file_bytes;
    options.level_base_bytes = shape.level_base_bytes;
    options.l0_compaction_trigger = 2;
    options.history_window = shape.history_window;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();

    let mut rng = Rng(seed | 1);
    let mut state: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let mut log: Vec<Logged> = Vec::new();
    let mut next_seq = 1;
    // Ids a cluster workload may have written so far (exclusive bound).
    let mut id_bound = shape.keys;
    for step in 0..ops {
        let cluster = (step / 200) as u64;
        // A batch of 1-3 operations on a small key space.
        let size = 1 + rng.below(3) as usize;
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        let mut shadow = state.clone();
        let mut valid = true;
        for _ in 0..size {
            let id = if shape.clusters {
                let cluster = if rng.below(10) < 7 {
                    cluster
                } else {
                    rng.below(cluster + 1)
                };
                id_bound = id_bound.max((cluster + 1) * 1000);
                (cluster * 1000 + rng.below(shape.keys)) as i64
            } else {
                rng.below(shape.keys) as i64
            };
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
                    let note = if shape.big_rows && rng.below(4) == 0 {
                        format!("n{step}").repeat(200)
                    } else {
                        format!("n{step}")
                    };
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
            3 if shape.history_window.is_none() => engine.compact().unwrap(),
            3 => engine.settle().unwrap(),
            _ => {}
        }
        if shape.history_window.is_some() {
            // History collapses: check the head against the oracle as we
            // go, since earlier seqs are no longer readable.
            if step % 50 == 49 {
                check_head(&engine, &state, id_bound as i64, seed, step);
            }
        }
    }
    if shape.history_window.is_some() {
        engine.flush().unwrap();
        check_head(&engine, &state, id_bound as i64, seed, ops);
        // Every deleted key stays deleted: deleting it again is a no-op.
        for &id in &checked_ids(id_bound, shape.keys) {
            if !state.contains_key(&id) {
                let result = engine
                    .write(vec![Mutation::delete("accounts", vec![Value::Int64(id)])])
                    .unwrap();
                assert_eq!(
                    result.outcomes,
                    vec![tidefeed_engine::Outcome::NoOp],
                    "seed {seed}: deleted id {id} came back"
                );
            }
        }
        let metrics = engine.metrics();
        assert!(
            metrics.flushes > 20 && metrics.compactions > 20,
            "seed {seed}: the tiny shape must compact often: {metrics:?}"
        );
        drop(engine);
        let engine = crate::common::open(dir.path());
        check_head(&engine, &state, id_bound as i64, seed, ops + 1);
        return;
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

/// Ids below `bound` that a workload may have written: the first `per`
/// of every thousand.
fn checked_ids(bound: u64, per: u64) -> Vec<i64> {
    (0..bound)
        .filter(|id| id % 1000 < per)
        .map(|id| id as i64)
        .collect()
}

/// The rows at the head, by scan and by point reads, equal the oracle's.
fn check_head(
    engine: &Engine,
    state: &BTreeMap<i64, Vec<Value>>,
    keys: i64,
    seed: u64,
    step: usize,
) {
    let page = engine
        .scan("accounts", &Default::default(), usize::MAX, None)
        .unwrap();
    let got: BTreeMap<i64, Vec<Value>> = page
        .rows
        .into_iter()
        .map(|r| match r.row.values()[0] {
            Value::Int64(id) => (id, r.row.into_values()),
            _ => unreachable!(),
        })
        .collect();
    let differing: Vec<_> = got
        .keys()
        .chain(state.keys())
        .filter(|id| got.get(id) != state.get(id))
        .map(|id| (id, got.get(id), state.get(id)))
        .take(3)
        .collect();
    assert!(
        differing.is_empty(),
        "seed {seed} step {step}: scan at the head differs from the oracle \
         (id, engine, oracle): {differing:?}"
    );
    for id in checked_ids(keys as u64, 1000) {
        let point = engine.get("accounts", &[Value::Int64(id)], None).unwrap();
        assert_eq!(
            point.map(|r| r.row.into_values()).as_ref(),
            state.get(&id),
            "seed {seed} step {step}: get {id} at the head"
        );
    }
}

#[test]
fn tiny_levels_with_collapsing_history_never_resurrect_deleted_rows() {
    for seed in [3, 11, 99] {
        run_shaped(seed, 1000, TINY);
    }
}

#[test]
fn tiny_levels_keeping_all_history_match_the_oracle() {
    for seed in [5, 17] {
        run_shaped(
            seed,
            800,
            Shape {
                history_window: None,
                keys: 80,
                ..TINY
            },
        );
    }
}

/// The reproduction of a partial compaction that judged "bottom" by the
/// upper input's key range only: the lower file merged whole reaches
/// further, its tombstone for id 1 was dropped, and an older id 1 one
/// level deeper came back.
#[test]
fn a_tombstone_in_a_wider_lower_file_is_kept_while_a_deeper_level_holds_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.history_window = Some(std::time::Duration::ZERO);
    options.l0_compaction_trigger = 1;
    options.level_base_bytes = 4 << 10;
    options.table_file_bytes = 1 << 10;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    let big = "x".repeat(6 << 10);
    let mut two = account(2, "o", 0);
    two.push(("note".into(), Value::String(big)));
    engine
        .write(vec![
            Mutation::upsert("accounts", account(1, "o", 1)),
            Mutation::upsert("accounts", two),
        ])
        .unwrap();
    engine.flush().unwrap();
    engine
        .write(vec![
            Mutation::delete("accounts", vec![Value::Int64(1)]),
            Mutation::upsert("accounts", account(100, "o", 100)),
        ])
        .unwrap();
    engine.flush().unwrap();
    engine
        .write(vec![Mutation::upsert("accounts", account(50, "o", 50))])
        .unwrap();
    engine.flush().unwrap();
    engine.settle().unwrap();

    assert_eq!(
        engine.get("accounts", &[Value::Int64(1)], None).unwrap(),
        None
    );
    let ids: Vec<Value> = engine
        .scan("accounts", &Default::default(), usize::MAX, None)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.row.values()[0].clone())
        .collect();
    assert_eq!(
        ids,
        vec![Value::Int64(2), Value::Int64(50), Value::Int64(100)]
    );
    let again = engine
        .write(vec![Mutation::delete("accounts", vec![Value::Int64(1)])])
        .unwrap();
    assert_eq!(again.outcomes, vec![tidefeed_engine::Outcome::NoOp]);
}

#[test]
fn random_workloads_through_flushes_and_compactions_match_the_oracle() {
    for seed in [1, 7, 42, 1234] {
        run(seed, 1200);
    }
}
