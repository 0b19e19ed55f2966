//! Exactly-once mode on the mock cluster, by what the mock can show: it
//! keeps no transaction markers (a `read_committed` consumer sees aborted
//! and open transactions' records too) and its InitProducerId hands each
//! caller a fresh producer id instead of fencing the previous one. So
//! these tests read the committed transactions from the progress records,
//! show that restarts resume from them, and inject the broker's fencing
//! answer. That aborted records stay hidden from consumers rests on
//! brokers with transaction markers (Apache Kafka, Redpanda).

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tidefeed_connectors::{
    ConnectorState, DeliveryMode, KafkaConnector, KafkaOptions, ProgressRecord, INSTANCE_FILE,
};
use tidefeed_engine::Seq;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn exactly_once(brokers: &str) -> KafkaOptions {
    let mut options = options(brokers);
    options.mode = DeliveryMode::ExactlyOnce;
    options
}

/// A mock cluster with the data topic (2 partitions) and the progress topic.
pub(crate) fn mock() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t.users", 2, 1).unwrap();
    mock.create_topic("t.__progress", 1, 1).unwrap();
    mock
}

/// The progress records, in commit order.
async fn progress(brokers: &str, at_least: usize) -> Vec<ProgressRecord> {
    let mut records = read(brokers, &["t.__progress"], at_least).await;
    records.sort_by_key(|r| r.offset);
    records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect()
}

/// Every seq from 1 to `head` lies in exactly one committed transaction:
/// the progress records' ranges follow each other without gap or overlap.
fn assert_partition(progress: &[ProgressRecord], head: Seq) {
    let mut next = 1;
    for record in progress {
        assert_eq!(record.first_seq, next, "{progress:?}");
        assert!(record.seq >= record.first_seq, "{progress:?}");
        next = record.seq + 1;
    }
    assert_eq!(next, head + 1, "{progress:?}");
}

async fn write_in_bursts(store: &Store, bursts: usize, each: usize) -> Seq {
    let mut head = 0;
    for _ in 0..bursts {
        head = write_users(&store.engine, each, 13).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seq_lies_in_exactly_one_committed_transaction_with_its_progress_record() {
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
    let head = write_in_bursts(&store, 4, 60).await;
    wait_until(WAIT, "every change committed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    assert!(status.transactions_committed >= 2, "{status:?}");
    assert_eq!(status.transactions_aborted, 0);

    let progress = progress(&brokers, status.transactions_committed as usize).await;
    assert_eq!(progress.len() as u64, status.transactions_committed);
    assert_partition(&progress, head);
    assert!(progress
        .iter()
        .all(|p| p.instance_id == progress[0].instance_id));
    let instance = std::fs::read_to_string(store.dir.path().join(INSTANCE_FILE)).unwrap();
    assert!(instance.contains(&progress[0].instance_id), "{instance}");

    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    wait_until(WAIT, "the position acknowledged to the engine", || {
        store.engine.consumer("kafka-connector").unwrap().position == head
    })
    .await;
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_progress_committed_in_kafka() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let first = write_users(&store.engine, 50, 13).await;
    wait_until(WAIT, "the first changes committed", || {
        connector.status().position == first
    })
    .await;
    connector.stop(Duration::from_secs(5)).await;

    // Move the engine's copy of the position back to the start: if the
    // restart trusted it rather than Kafka, everything would go again.
    store.engine.delete_consumer("kafka-connector").unwrap();
    store
        .engine
        .create_consumer("kafka-connector", Some(0))
        .unwrap();
    let head = write_users(&store.engine, 30, 13).await;
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the rest committed", || {
        connector.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(
        counts.values().all(|n| *n == 1),
        "resumed at {first}, not 0: {counts:?}"
    );
    let status = connector.status();
    assert_partition(
        &progress(&brokers, status.transactions_committed as usize).await,
        head,
    );
    assert_eq!(
        store.engine.consumer("kafka-connector").unwrap().position,
        head
    );
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_produce_and_commit_resends_only_the_uncommitted_tail() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let committed = write_users(&store.engine, 40, 13).await;
    wait_until(WAIT, "the first changes committed", || {
        connector.status().position == committed
    })
    .await;
    connector.stop(Duration::from_secs(5)).await;

    // This instance delivers its records but dies before it commits.
    let mut slow = exactly_once(&brokers);
    slow.commit_interval = Duration::from_secs(5);
    let connector = KafkaConnector::start(store.engine.clone(), slow)
        .await
        .unwrap();
    let head = write_users(&store.engine, 25, 13).await;
    wait_until(WAIT, "the open transaction's records delivered", || {
        connector.status().delivered == head - committed
    })
    .await;
    assert_eq!(connector.status().transactions_committed, 0);
    connector.abandon().await;

    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the tail committed", || {
        connector.status().position == head
    })
    .await;
    let records = read(
        &brokers,
        &["t.users"],
        head as usize + (head - committed) as usize,
    )
    .await;
    let counts = event_counts(&records);
    for seq in 1..=head {
        // The mock shows the dead instance's uncommitted copy too; a broker
        // with transaction markers hides it from read_committed consumers.
        let expected = if seq <= committed { 1 } else { 2 };
        assert_eq!(counts.get(&seq), Some(&expected), "seq {seq}: {counts:?}");
    }
    let progress = progress(&brokers, 2).await;
    assert_partition(&progress, head);
    assert_eq!(
        progress.last().unwrap().first_seq,
        committed + 1,
        "the tail, re-sent in one transaction"
    );
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_instance_stops_loudly_and_its_successor_resumes_from_the_committed_progress() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let first = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let committed = write_users(&store.engine, 20, 13).await;
    wait_until(WAIT, "the first changes committed", || {
        first.status().position == committed
    })
    .await;
    // The answer a broker gives a producer whose transactional.id a newer
    // instance has taken over (the mock does not fence by itself).
    mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let head = write_users(&store.engine, 10, 13).await;
    wait_until(WAIT, "the fenced instance to stop", || {
        first.status().state == ConnectorState::Failed
    })
    .await;
    let status = first.status();
    assert_eq!(status.position, committed, "{status:?}");
    assert!(
        status.error.as_deref().unwrap().contains("took over"),
        "{status:?}"
    );

    let second = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the successor to commit the rest", || {
        second.status().position == head
    })
    .await;
    let records = read(&brokers, &["t.users"], head as usize).await;
    assert_eq!(event_counts(&records).len(), head as usize, "nothing lost");
    let progress = progress(&brokers, 2).await;
    assert_partition(&progress, head);
    second.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_timeout_the_brokers_refuse_stops_the_connector_naming_the_option() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT],
    );
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    wait_until(WAIT, "the connector to stop", || {
        connector.status().state == ConnectorState::Failed
    })
    .await;
    let error = connector.status().error.unwrap();
    assert!(error.contains("transaction.timeout.ms"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_aborts_its_transaction_and_is_sent_again_as_a_dead_letter() {
    let mock = mock();
    mock.create_topic("t.dead-letter", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let mut options = exactly_once(&brokers);
    options.on_terminal_error = tidefeed_connectors::TerminalErrorPolicy::DeadLetter {
        topic: "t.dead-letter".into(),
    };
    let connector = KafkaConnector::start(store.engine.clone(), options)
        .await
        .unwrap();
    let committed = write_users(&store.engine, 10, 13).await;
    wait_until(WAIT, "the first changes committed", || {
        connector.status().position == committed
    })
    .await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let head = write_users(&store.engine, 10, 13).await;
    wait_until(WAIT, "every change committed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    assert!(status.transactions_aborted >= 1, "{status:?}");
    assert!(
        status.failed >= 1 && status.dead_lettered >= 1,
        "{status:?}"
    );
    assert_partition(&progress(&brokers, 2).await, head);
    let data = read(&brokers, &["t.users"], 1).await;
    let dead = read(&brokers, &["t.dead-letter"], 1).await;
    assert!(dead.iter().all(|r| r.value_json()["truncated"] == true));
    let mut seen = event_counts(&data);
    for record in &dead {
        *seen.entry(record.seq()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        head as usize,
        "every change on the data topic or dead-lettered"
    );
    connector.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_holds_the_commit_and_nothing_is_lost_or_committed_twice() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let store = Store::new();
    let connector = KafkaConnector::start(store.engine.clone(), exactly_once(&brokers))
        .await
        .unwrap();
    let committed = write_users(&store.engine, 50, 13).await;
    wait_until(WAIT, "the first changes committed", || {
        connector.status().position == committed
    })
    .await;
    mock.broker_down(1).unwrap();
    let head = write_users(&store.engine, 100, 13).await;
    wait_until(WAIT, "the connector to report retrying", || {
        connector.status().state == ConnectorState::Retrying
    })
    .await;
    assert_eq!(connector.status().position, committed);
    mock.broker_up(1).unwrap();
    wait_until(WAIT, "every change committed", || {
        connector.status().position == head
    })
    .await;
    let status = connector.status();
    assert_eq!(status.state, ConnectorState::Running, "{status:?}");
    assert_eq!(status.transactions_aborted, 0, "{status:?}");
    assert_partition(&progress(&brokers, 2).await, head);
    let records = read(&brokers, &["t.users"], head as usize).await;
    let counts = event_counts(&records);
    assert_eq!(counts.len(), head as usize);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    connector.stop(Duration::from_secs(5)).await;
}
