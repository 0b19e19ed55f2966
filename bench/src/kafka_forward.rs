//! Kafka connector throughput and latency, beside a raw rdkafka producer.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml --bin kafka-forward [-- --changes N --broker mock|tansu|both]
//! ```
//!
//! For each broker (librdkafka's in-process mock cluster, and tansu when
//! `scripts/tansu.sh install` has installed it), on the same machine and
//! in the same run:
//! - changes/s forwarded by the connector from a backlog of N changes
//!   (default 200,000 upserts of ~100-byte rows over 50,000 keys), in
//!   at-least-once and exactly-once modes;
//! - changes/s of a raw rdkafka producer (same settings: idempotent,
//!   acks=all, murmur2 partitioner) sending the same keys, values and
//!   headers, pre-encoded, from memory;
//! - the ratios;
//! - write-acknowledged to Kafka-consumed latency (p50, p99) at a steady
//!   1,000 writes/s, at-least-once.
//!
//! Prints; asserts nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tidefeed_connectors::{DeliveryMode, KafkaConnector, KafkaOptions, TopicCreation};
use tidefeed_engine::{
    Column, ColumnType, Durability, Engine, EngineOptions, Mutation, TableSchema, Value,
};
use tidefeed_feed::json::JsonKey;
use tidefeed_feed::{ChangeEvent, Format};

const KEYS: i64 = 50_000;
const PARTITIONS: i32 = 6;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("TIDEFEED_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("tidefeed-tools"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/tidefeed-tools"))
        })?;
    let path = cache.join("tansu-0.6.0/bin/tansu");
    path.is_file().then_some(path)
}

struct TansuProcess(std::process::Child);

impl Drop for TansuProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tansu(binary: &Path) -> (TansuProcess, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = std::process::Command::new(binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (TansuProcess(child), format!("127.0.0.1:{port}"))
}

fn schema() -> TableSchema {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    TableSchema {
        name: "bench".into(),
        columns: vec![
            column("id", ColumnType::Int64),
            column("n", ColumnType::Int64),
            column("payload", ColumnType::String),
        ],
        primary_key: vec!["id".into()],
    }
}

fn row(i: i64) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(i.wrapping_mul(7919) % KEYS)),
        ("n".into(), Value::Int64(i)),
        ("payload".into(), Value::String(format!("{i:0>64}"))),
    ]
}

fn open(dir: &Path, durability: Durability) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.durability = durability;
    options.history_window = None;
    let engine = Engine::open(options).unwrap();
    engine.create_table(schema()).unwrap();
    engine
}

/// Writes `changes` upserts in batches of 100 (async durability: loading
/// is not what is measured).
fn load(engine: &Engine, changes: u64) {
    let mut i = 0i64;
    while (i as u64) < changes {
        let n = 100.min(changes as i64 - i);
        let batch = (i..i + n)
            .map(|j| Mutation::upsert("bench", row(j)))
            .collect();
        engine.write(batch).unwrap();
        i += n;
    }
}

fn connector_options(
    brokers: &str,
    prefix: &str,
    mode: DeliveryMode,
    consumer: &str,
) -> KafkaOptions {
    let mut options = KafkaOptions::new(vec![brokers.to_owned()], prefix);
    options.mode = mode;
    options.consumer = consumer.to_owned();
    // Topics are created by the bench beforehand (the mock cluster has no
    // CreateTopics: creating through the admin API would wait for a timeout).
    options.topic_creation = TopicCreation::Broker;
    options
}

/// A fresh connector forwarding the whole backlog: (seconds from start
/// to the first record handed to the producer, changes/s from then until
/// the last change is confirmed). Start-up (connecting; exactly-once:
/// fencing and reading the committed progress) is reported apart, as the
/// raw producer is timed warm, from its first send to its last
/// confirmation.
fn forward(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    options: KafkaOptions,
) -> (f64, f64) {
    let head = engine.visible_seq();
    runtime.block_on(async {
        let start = Instant::now();
        let connector = KafkaConnector::start(engine.clone(), options)
            .await
            .unwrap();
        let mut first: Option<(Instant, u64)> = None;
        loop {
            let status = connector.status();
            assert!(status.state.name() != "failed", "{status:?}");
            if first.is_none() && (status.in_flight_records > 0 || status.position > 0) {
                first = Some((Instant::now(), status.position));
            }
            if status.position >= head {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (t0, p0) = first.unwrap();
        let startup = (t0 - start).as_secs_f64();
        let rate = (head - p0) as f64 / t0.elapsed().as_secs_f64();
        connector.stop(Duration::from_secs(5)).await;
        (startup, rate)
    })
}

/// The records the connector would send, pre-encoded.
struct Prepared {
    key: Vec<u8>,
    value: Vec<u8>,
    seq: String,
    batch: String,
    ts: i64,
}

fn prepare(engine: &Engine) -> Vec<Prepared> {
    engine
        .changes(0, None)
        .unwrap()
        .map(|change| {
            let change = change.unwrap();
            let event = ChangeEvent::from_change(&change).unwrap();
            let value = tidefeed_feed::encode(&event, Format::Native)
                .unwrap()
                .to_vec();
            let key = serde_json::to_vec(&JsonKey {
                table: &event.table,
                key: &event.key,
            })
            .unwrap();
            let b = event.batch.unwrap();
            Prepared {
                key,
                value,
                seq: event.seq.to_string(),
                batch: format!(
                    r#"{{"first_seq":{},"index":{},"size":{}}}"#,
                    b.first_seq, b.index, b.size
                ),
                ts: event.ts_micros / 1000,
            }
        })
        .collect()
}

/// Changes/s of a warm raw producer with the connector's settings sending
/// and confirming every prepared record; with `transactional`, in
/// transactions committed every 100 ms.
fn raw(brokers: &str, topic: &str, records: &[Prepared], transactional: Option<&str>) -> f64 {
    let mut config = ClientConfig::new();
    if let Some(id) = transactional {
        config.set("transactional.id", id);
    } else {
        config.set("message.timeout.ms", "0");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.kbytes", "132096")
        .set("queue.buffering.max.messages", "0")
        .create()
        .unwrap();
    let mut began = None;
    if transactional.is_some() {
        producer.init_transactions(Duration::from_secs(30)).unwrap();
    }
    // Warm: connected, metadata known.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let start = Instant::now();
    for record in records {
        if transactional.is_some() && began.is_none() {
            producer.begin_transaction().unwrap();
            began = Some(Instant::now());
        }
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: "tidefeed.seq",
                value: Some(record.seq.as_bytes()),
            })
            .insert(Header {
                key: "tidefeed.table",
                value: Some("bench".as_bytes()),
            })
            .insert(Header {
                key: "tidefeed.op",
                value: Some("update".as_bytes()),
            })
            .insert(Header {
                key: "tidefeed.batch",
                value: Some(record.batch.as_bytes()),
            });
        let mut base = BaseRecord::to(topic)
            .key(&record.key[..])
            .payload(&record.value[..])
            .timestamp(record.ts)
            .headers(headers);
        loop {
            match producer.send(base) {
                Ok(()) => break,
                Err((_, back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        if began.is_some_and(|b| b.elapsed() >= Duration::from_millis(100)) {
            producer
                .commit_transaction(Duration::from_secs(60))
                .unwrap();
            began = None;
        }
    }
    if began.is_some() {
        producer
            .commit_transaction(Duration::from_secs(60))
            .unwrap();
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    records.len() as f64 / start.elapsed().as_secs_f64()
}

fn consumer(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::End).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Write-acknowledged to consumed latency at 1,000 writes/s, at-least-once.
fn latency(
    runtime: &tokio::runtime::Runtime,
    brokers: &str,
    label: &str,
    create_topic: &dyn Fn(&str),
) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), Durability::Sync);
    let prefix = format!("{label}-lat");
    let topic = format!("{prefix}.bench");
    create_topic(&topic);
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let received: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    runtime.block_on(async {
        let connector = KafkaConnector::start(
            engine.clone(),
            connector_options(brokers, &prefix, DeliveryMode::AtLeastOnce, "lat"),
        )
        .await
        .unwrap();
        // Warm up: the topic exists and the producer is connected.
        engine
            .write_async(vec![Mutation::upsert("bench", row(-1))])
            .await
            .unwrap();
        while connector.status().position < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (brokers, topic, received, stop) = (
                brokers.to_owned(),
                topic.clone(),
                received.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let consumer = consumer(&brokers, &topic);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(10)) {
                        let now = Instant::now();
                        if let Some(seq) = message
                            .headers()
                            .and_then(|h| h.iter().find(|h| h.key == "tidefeed.seq"))
                            .and_then(|h| {
                                std::str::from_utf8(h.value.unwrap())
                                    .ok()?
                                    .parse::<u64>()
                                    .ok()
                            })
                        {
                            received.lock().unwrap().entry(seq).or_insert(now);
                        }
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let writes = 3000;
        let start = Instant::now();
        for i in 0..writes {
            let due = start + Duration::from_millis(i);
            tokio::time::sleep_until(due.into()).await;
            let result = engine
                .write_async(vec![Mutation::upsert("bench", row(i as i64))])
                .await
                .unwrap();
            acked
                .lock()
                .unwrap()
                .insert(result.last_seq().unwrap(), Instant::now());
        }
        let head = engine.visible_seq();
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.lock().unwrap().len() < head as usize - 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        connector.stop(Duration::from_secs(5)).await;
    });
    let acked = acked.lock().unwrap();
    let received = received.lock().unwrap();
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|(seq, at)| received.get(seq).map(|r| r.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    if latencies.is_empty() {
        println!("  latency: nothing consumed");
        return;
    }
    println!(
        "  write-ack -> consumed latency at 1,000 writes/s: p50 {:.2} ms, p99 {:.2} ms ({} of {} writes seen)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len(),
        acked.len()
    );
}

fn run(label: &str, brokers: &str, changes: u64, create_topic: &dyn Fn(&str)) {
    println!("== {label} ({brokers})");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        Durability::Async {
            interval: Duration::from_millis(200),
        },
    );
    load(&engine, changes);
    let records = prepare(&engine);
    let bytes: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();
    println!(
        "  {changes} changes, {:.0} bytes of key and value each on average",
        bytes as f64 / changes as f64
    );

    // Each measurement three times, interleaved (the machine is shared);
    // the median of each is reported.
    let eos = label == "mock";
    let commit_interval =
        arg("--commit-interval").map(|ms| Duration::from_millis(ms.parse().unwrap()));
    let (mut raws, mut alos, mut eoss, mut raw_txns) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        create_topic(&format!("{label}-raw{round}.bench"));
        raws.push(raw(
            brokers,
            &format!("{label}-raw{round}.bench"),
            &records,
            None,
        ));
        if eos {
            create_topic(&format!("{label}-rawtxn{round}.bench"));
            raw_txns.push(raw(
                brokers,
                &format!("{label}-rawtxn{round}.bench"),
                &records,
                Some(&format!("bench-raw-{round}")),
            ));
        }
        create_topic(&format!("{label}-alo{round}.bench"));
        let options = connector_options(
            brokers,
            &format!("{label}-alo{round}"),
            DeliveryMode::AtLeastOnce,
            &format!("alo{round}"),
        );
        alos.push(forward(&runtime, &engine, options));
        if eos {
            create_topic(&format!("{label}-eos{round}.bench"));
            create_topic(&format!("{label}-eos{round}.__progress"));
            let mut options = connector_options(
                brokers,
                &format!("{label}-eos{round}"),
                DeliveryMode::ExactlyOnce,
                &format!("eos{round}"),
            );
            if let Some(interval) = commit_interval {
                options.commit_interval = interval;
            }
            eoss.push(forward(&runtime, &engine, options));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw_rate = median(raws);
    let alo_start = median(alos.iter().map(|(s, _)| *s).collect());
    let alo_rate = median(alos.iter().map(|(_, r)| *r).collect());
    println!("  (medians of 3 runs each; each from its first record handed to librdkafka to its last confirmation)");
    println!("  raw rdkafka producer:         {raw_rate:>9.0} changes/s");
    println!(
        "  connector, at-least-once:     {alo_rate:>9.0} changes/s  ({:.2}x the raw producer; first record sent {:.0} ms after start)",
        alo_rate / raw_rate,
        alo_start * 1e3
    );
    if eos {
        let raw_txn_rate = median(raw_txns);
        let eos_start = median(eoss.iter().map(|(s, _)| *s).collect());
        let eos_rate = median(eoss.iter().map(|(_, r)| *r).collect());
        println!(
            "  connector, exactly-once:      {eos_rate:>9.0} changes/s  ({:.2}x the raw producer, {:.2}x at-least-once: {:+.1}% time; first record sent {:.0} ms after start)",
            eos_rate / raw_rate,
            eos_rate / alo_rate,
            (alo_rate / eos_rate - 1.0) * 100.0,
            eos_start * 1e3
        );
        println!(
            "  raw transactional producer (commits every 100 ms): {raw_txn_rate:>9.0} changes/s ({:.2}x the raw producer)",
            raw_txn_rate / raw_rate
        );
    } else {
        println!(
            "  connector, exactly-once: not measured (tansu 0.6.0 drops the connection on EndTxn)"
        );
    }
    drop(records);
    latency(&runtime, brokers, label, create_topic);
}

fn main() {
    let changes: u64 = arg("--changes").map_or(200_000, |n| n.parse().unwrap());
    let broker = arg("--broker").unwrap_or_else(|| "both".into());
    println!(
        "kafka-forward: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if broker == "mock" || broker == "both" {
        let mock = MockCluster::new(1).unwrap();
        let brokers = mock.bootstrap_servers();
        run("mock", &brokers, changes, &|topic| {
            let partitions = if topic.ends_with("__progress") {
                1
            } else {
                PARTITIONS
            };
            mock.create_topic(topic, partitions, 1).unwrap();
        });
    }
    if broker == "tansu" || broker == "both" {
        match tansu_binary() {
            Some(binary) => {
                let (_tansu, brokers) = start_tansu(&binary);
                let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
                    ClientConfig::new()
                        .set("bootstrap.servers", &brokers)
                        .create()
                        .unwrap();
                let admin_runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                run("tansu", &brokers, changes, &|topic| {
                    let partitions = if topic.ends_with("__progress") {
                        1
                    } else {
                        PARTITIONS
                    };
                    let new = rdkafka::admin::NewTopic::new(
                        topic,
                        partitions,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    );
                    let _ = admin_runtime.block_on(
                        admin.create_topics([&new], &rdkafka::admin::AdminOptions::new()),
                    );
                });
            }
            None => println!("== tansu: not installed (scripts/tansu.sh install); skipped"),
        }
    }
}
