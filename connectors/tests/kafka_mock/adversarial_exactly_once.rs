//! Adversarial checks of exactly-once mode on the mock cluster: no empty
//! transactions on an idle system; a data directory restored from a copy
//! (same instance file, so the same `transactional.id`) whose log has
//! diverged from what Kafka committed; a batch refused as too large; and
//! the recovery after an operator deleted the connector's consumer.

use std::path::Path;
use std::time::Duration;

use tidefeed_connectors::{ConnectorState, KafkaConnector};
use tidefeed_engine::{Engine, EngineOptions, Mutation};

use crate::common::*;
use crate::exactly_once::{exactly_once, mock};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connector_commits_no_transactions() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the connector running", || {
        connector.status().state == ConnectorState::Running
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(connector.status().transactions_committed, 0);
    let head = write_users(&store.engine, 5, 5).await;
    wait_until(WAIT, "committed", || connector.status().position == head).await;
    let committed = connector.status().transactions_committed;
    // Idle again for many commit intervals.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = connector.status();
    assert_eq!(status.transactions_committed, committed, "{status:?}");
    assert_eq!(status.transactions_aborted, 0, "{status:?}");
    let progress = read(&brokers, &["t.__progress"], committed as usize).await;
    assert_eq!(
        progress.len() as u64,
        committed,
        "one progress record per commit"
    );
    connector.stop(Duration::from_secs(5)).await;
    assert_eq!(
        read(&brokers, &["t.__progress"], committed as usize)
            .await
            .len() as u64,
        committed,
        "a stop with nothing open commits nothing"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn open(dir: &Path) -> Engine {
    Engine::open(EngineOptions::new(dir)).unwrap()
}

async fn forward_until(engine: &Engine, brokers: &str, head: u64) {
    let connector = KafkaConnector::start(engine.clone(), exactly_once(brokers))
        .await
        .unwrap();
    wait_until(WAIT, "committed", || connector.status().position == head).await;
    connector.stop(Duration::from_secs(5)).await;
}

/// A data directory restored from a backup (or copied) keeps its instance
/// file, so its `transactional.id`, while Kafka holds what the original
/// committed after the backup. The restored log then takes the same seqs
/// for different changes. Resuming from the progress committed in Kafka
/// silently skips the restored directory's own changes up to it: they
/// never reach Kafka. At-least-once resends them (its position is in the
/// data directory); exactly-once must at least stop loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_data_directory_never_skips_its_own_changes_silently() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let backup = root.path().join("backup");

    let engine = open(&original);
    engine.create_table(users_schema()).unwrap();
    let backed_up = write_users(&engine, 10, 10).await;
    forward_until(&engine, &brokers, backed_up).await;
    engine.close().unwrap();
    drop(engine);
    copy_dir(&original, &backup);

    // The original goes on, and Kafka commits its seqs 11..=30.
    let engine = open(&original);
    let original_head = write_users(&engine, 20, 10).await;
    forward_until(&engine, &brokers, original_head).await;
    engine.close().unwrap();
    drop(engine);

    // The backup is restored and takes new writes: seqs 11..=40, other
    // changes than the original's 11..=30.
    let engine = open(&backup);
    assert_eq!(engine.visible_seq(), backed_up);
    let mut head = 0;
    for i in 0..30 {
        head = write(
            &engine,
            vec![Mutation::upsert("users", user(1000 + i, "restored"))],
        )
        .await
        .last_seq()
        .unwrap();
    }
    let connector = KafkaConnector::start(engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let settled = tokio::time::timeout(
        Duration::from_secs(20),
        wait_until(WAIT, "the connector to settle", || {
            let s = connector.status();
            s.position == head || s.state == ConnectorState::Failed
        }),
    )
    .await;
    let status = connector.status();
    assert!(settled.is_ok(), "{status:?}");
    if status.state == ConnectorState::Failed {
        // Loud: fine, if it says why.
        let error = status.error.unwrap_or_default();
        assert!(error.contains("restored from an older copy"), "{error}");
        assert_eq!(status.position, backed_up, "{error}");
        return;
    }
    let records = read(&brokers, &["t.users"], head as usize).await;
    let restored: std::collections::BTreeSet<u64> = records
        .iter()
        .filter(|r| !r.is_tombstone() && r.value_json()["after"]["name"] == "restored")
        .map(|r| r.seq())
        .collect();
    let missing: Vec<u64> = (backed_up + 1..=head)
        .filter(|seq| !restored.contains(seq))
        .collect();
    assert!(
        missing.is_empty(),
        "the restored directory's changes {missing:?} never reached Kafka, and the connector is {:?}",
        status.state
    );
    connector.stop(Duration::from_secs(5)).await;
}

/// The exactly-once side of a batch refused as too large (see
/// `adversarial_errors`): the transaction is aborted, and the records are
/// sent again one per batch, so none that fits is dead-lettered; then the
/// connector batches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_in_a_transaction_dead_letters_no_record_that_fits() {
    crate::adversarial_errors::a_batch_refusal_dead_letters_no_record_kafka_takes(
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        tidefeed_connectors::DeliveryMode::ExactlyOnce,
    )
    .await;
}

/// The recovery the invalidation error names, in exactly-once mode: the
/// operator deletes the connector's consumer and restarts. Kafka's
/// progress is then below the retained history (what lay between is gone
/// by the operator's choice); the connector starts at its new consumer's
/// position, the oldest retained change, instead of failing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_deleted_by_the_operator_starts_over_at_the_oldest_retained_change() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut engine_options = EngineOptions::new(dir.path());
    engine_options.history_window = Some(Duration::ZERO);
    let engine = Engine::open(engine_options).unwrap();
    engine.create_table(users_schema()).unwrap();
    let first = write_users(&engine, 10, 10).await;
    forward_until(&engine, &brokers, first).await;

    // Changes the connector never forwards, then the consumer is deleted
    // and history moves past them.
    let skipped = write_users(&engine, 20, 10).await;
    engine.delete_consumer("kafka-connector").unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while engine.low_water() <= first {
        assert!(
            std::time::Instant::now() < deadline,
            "low-water stays at {}",
            engine.low_water()
        );
        engine.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let low_water = engine.low_water();
    assert!(low_water > first && low_water <= skipped);

    let connector = KafkaConnector::start(engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let head = write_users(&engine, 5, 5).await;
    wait_until(WAIT, "forwarding again", || {
        let s = connector.status();
        s.position == head || s.state == ConnectorState::Failed
    })
    .await;
    let status = connector.status();
    assert_eq!(status.position, head, "{status:?}");
    // The first ten, then everything after the new consumer's position.
    let expected = first + (head - low_water);
    let seqs: std::collections::BTreeSet<u64> = read(&brokers, &["t.users"], expected as usize)
        .await
        .iter()
        .map(|r| r.seq())
        .collect();
    assert!(
        (low_water + 1..=head).all(|seq| seqs.contains(&seq)),
        "{seqs:?}"
    );
    connector.stop(Duration::from_secs(5)).await;
}
