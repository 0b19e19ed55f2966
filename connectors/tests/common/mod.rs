//! Helpers shared by the connector's test suites: a store in a temporary
//! directory, tables and rows, connector options, and a Kafka reader that
//! returns every record of some topics.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tidefeed_connectors::{KafkaOptions, TopicCreation};
use tidefeed_engine::{
    Column, ColumnType, Engine, EngineOptions, Mutation, NamedValues, Seq, TableSchema, Value,
    WriteResult,
};

pub struct Store {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
}

impl Store {
    pub fn new() -> Store {
        Store::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut EngineOptions)) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = EngineOptions::new(dir.path());
        configure(&mut options);
        let engine = Engine::open(options).expect("engine opens");
        engine.create_table(users_schema()).unwrap();
        engine.create_table(orders_schema()).unwrap();
        Store { engine, dir }
    }
}

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
    }
}

/// `users(id int64 pk, name string, note string?)`
pub fn users_schema() -> TableSchema {
    TableSchema {
        name: "users".into(),
        columns: vec![
            column("id", ColumnType::Int64, false),
            column("name", ColumnType::String, false),
            column("note", ColumnType::String, true),
        ],
        primary_key: vec!["id".into()],
    }
}

/// `orders(region string pk, id int64 pk, amount float64)`
pub fn orders_schema() -> TableSchema {
    TableSchema {
        name: "orders".into(),
        columns: vec![
            column("region", ColumnType::String, false),
            column("id", ColumnType::Int64, false),
            column("amount", ColumnType::Float64, false),
        ],
        primary_key: vec!["region".into(), "id".into()],
    }
}

pub fn user(id: i64, name: &str) -> NamedValues {
    vec![
        ("id".into(), Value::Int64(id)),
        ("name".into(), Value::String(name.into())),
    ]
}

pub fn user_with_note(id: i64, name: &str, note: String) -> NamedValues {
    let mut row = user(id, name);
    row.push(("note".into(), Value::String(note)));
    row
}

pub fn order(region: &str, id: i64, amount: f64) -> NamedValues {
    vec![
        ("region".into(), Value::String(region.into())),
        ("id".into(), Value::Int64(id)),
        ("amount".into(), Value::Float64(amount)),
    ]
}

pub async fn write(engine: &Engine, batch: Vec<Mutation>) -> WriteResult {
    engine.write_async(batch).await.expect("write commits")
}

pub async fn upsert_user(engine: &Engine, id: i64, name: &str) -> WriteResult {
    write(engine, vec![Mutation::upsert("users", user(id, name))]).await
}

/// Writes `n` upserts over `keys` user ids, one write each; returns the
/// last seq.
pub async fn write_users(engine: &Engine, n: usize, keys: i64) -> Seq {
    let mut last = 0;
    for i in 0..n {
        let result = upsert_user(engine, i as i64 % keys, &format!("name-{i}")).await;
        last = last.max(result.last_seq().expect("an upsert takes a seq"));
    }
    last
}

/// Logs to the test's output when `TEST_LOG` is set (e.g.
/// `TEST_LOG=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Options for tests: topics `t.{table}`, quick commits and timeouts,
/// topics left to the broker (the mock cluster has no CreateTopics).
pub fn options(brokers: &str) -> KafkaOptions {
    init_logging();
    let mut options = KafkaOptions::new(vec![brokers.to_owned()], "t");
    options.topic_creation = TopicCreation::Broker;
    options.commit_interval = Duration::from_millis(50);
    options.request_timeout = Duration::from_secs(10);
    options.librdkafka = vec![("linger.ms".into(), "2".into())];
    options
}

/// Polls `condition` every 20 ms until it holds; panics after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One record as a Kafka consumer sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn seq(&self) -> Seq {
        self.headers["tidefeed.seq"]
            .parse()
            .expect("numeric tidefeed.seq")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn key_json(&self) -> serde_json::Value {
        serde_json::from_slice(self.key.as_deref().expect("a key")).expect("JSON key")
    }

    pub fn value_json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().expect("a value")).expect("JSON value")
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Reads every record of `topics` (all partitions, from the beginning,
/// `read_committed`) until at least `expected` have arrived and no more
/// come for a short while, or `timeout` passes. Blocking.
pub fn read_topics(
    brokers: &str,
    topics: &[&str],
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidefeed-tests")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        for partition in 0..partitions as i32 {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let mut headers = BTreeMap::new();
                if let Some(list) = message.headers() {
                    for header in list.iter() {
                        headers.insert(
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                records.push(Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp: message.timestamp().to_millis(),
                });
                quiet_since = Instant::now();
            }
            Some(Err(error)) => eprintln!("test consumer: {error}"),
            None => {
                if records.len() >= expected && quiet_since.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
        }
    }
    records
}

/// Reads in a blocking task.
pub async fn read(brokers: &str, topics: &[&str], expected: usize) -> Vec<Record> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        read_topics(&brokers, &topics, expected, Duration::from_secs(30))
    })
    .await
    .unwrap()
}

/// The partition the Java client's default partitioner (and librdkafka's
/// `murmur2`) gives `key` among `partitions`.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = key.len();
    let mut h: u32 = SEED ^ length as u32;
    let chunks = length / 4;
    for i in 0..chunks {
        let mut k = u32::from_le_bytes(key[i * 4..i * 4 + 4].try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = &key[chunks * 4..];
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

/// Records of data topics grouped by seq: how many times each seq's
/// event (non-tombstone) arrived.
pub fn event_counts(records: &[Record]) -> BTreeMap<Seq, usize> {
    let mut counts = BTreeMap::new();
    for record in records.iter().filter(|r| !r.is_tombstone()) {
        *counts.entry(record.seq()).or_insert(0) += 1;
    }
    counts
}
