//! A failed WAL write or fdatasync stops the engine; a restart recovers
//! every acknowledged write.

use std::sync::Arc;

use tidefeed_engine::{Engine, EngineOptions, Error, FaultInjector, Mutation, Stage, Value};

use crate::common::{account, accounts_schema, assert_acknowledged_present, open};

fn run_until_poisoned(arm: impl FnOnce(&FaultInjector), expected: Stage) {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let mut options = EngineOptions::new(dir.path());
    options.faults = Some(faults.clone());
    let engine = Arc::new(Engine::open(options).unwrap());
    engine.create_table(accounts_schema()).unwrap();
    for i in 0..20 {
        engine
            .write(vec![Mutation::upsert("accounts", account(i, "before", i))])
            .unwrap();
    }
    arm(&faults);

    let writers: Vec<_> = (0..8i64)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut errors = Vec::new();
                for i in 0..50 {
                    let id = 100 + w * 100 + i;
                    match engine.write(vec![Mutation::upsert(
                        "accounts",
                        account(id, "during", id),
                    )]) {
                        Ok(result) => acked.push((id, result.first_seq().unwrap())),
                        Err(e) => errors.push(e),
                    }
                }
                (acked, errors)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for w in writers {
        let (a, e) = w.join().unwrap();
        acked.extend(a);
        errors.extend(e);
    }
    let failed_at = errors
        .iter()
        .filter(|e| matches!(e, Error::CommitFailed { stage, .. } if *stage == expected))
        .count();
    assert!(
        failed_at >= 1,
        "the failing group reports CommitFailed: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, Error::CommitFailed { .. } | Error::Poisoned { .. })),
        "{errors:?}"
    );
    // Later writes are refused, loudly, without retrying.
    let err = engine
        .write(vec![Mutation::upsert("accounts", account(1, "after", 1))])
        .unwrap_err();
    assert!(
        matches!(err, Error::Poisoned { stage, .. } if stage == expected),
        "{err}"
    );
    assert!(err.to_string().contains("restart"), "{err}");
    assert!(engine.close().is_err(), "close reports the poisoning");
    drop(engine);

    let engine = open(dir.path());
    for i in 0..20 {
        assert!(engine
            .get("accounts", &[Value::Int64(i)], None)
            .unwrap()
            .is_some());
    }
    assert_acknowledged_present(&engine, &acked);
    engine
        .write(vec![Mutation::upsert("accounts", account(1, "after", 1))])
        .unwrap();
}

#[test]
fn an_injected_fsync_error_poisons_the_engine_and_reopen_recovers_acknowledged_writes() {
    run_until_poisoned(|faults| faults.fail_sync_after(5), Stage::Sync);
}

#[test]
fn an_injected_write_error_poisons_the_engine_and_reopen_recovers_acknowledged_writes() {
    run_until_poisoned(|faults| faults.fail_write_after(5), Stage::Write);
}
