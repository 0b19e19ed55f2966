//! Adversarial checks of the Kafka connector through the real binary:
//! `tidefeed serve` with `TIDEFEED_KAFKA__*` variables, forwarding to
//! librdkafka's mock cluster (it listens on 127.0.0.1 in this test
//! process, so it outlives the server's restarts) or to tansu (for a
//! broker frozen with SIGSTOP).

mod common;
#[path = "../connectors/tests/common/mod.rs"]
mod kafka;
#[path = "../connectors/tests/common/tansu.rs"]
mod tansu;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};

use common::Tidefeed as Server;

/// `tidefeed serve` with these variables, librdkafka's warnings in its log.
fn start(data_dir: &Path, log: &Path, env: &[(&str, &str)]) -> Server {
    let mut env = env.to_vec();
    env.push(("TIDEFEED_LOG", "info,librdkafka=warn"));
    Server::start_with_env(data_dir, log, &env)
}

/// Waits for the process to exit; its exit code and how long it took.
fn wait_exit(server: &mut Server, limit: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    let status = server.wait_timeout(limit).unwrap_or_else(|| {
        panic!(
            "tidefeed did not exit within {limit:?}; log: {}",
            server.log_text()
        )
    });
    (status.code(), start.elapsed())
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn kafka_status(client: &reqwest::Client, server: &Server) -> Value {
    get_json(client, server.url("/v1/status")).await["kafka"].clone()
}

async fn metrics(client: &reqwest::Client, server: &Server) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn create_users(client: &reqwest::Client, server: &Server) {
    let response = client
        .put(server.url("/v1/tables/users"))
        .json(&json!({"columns":[{"name":"id","type":"int64"},{"name":"name","type":"string"}],"primary_key":["id"]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

async fn put_user(client: &reqwest::Client, server: &Server, id: i64, name: &str) -> Option<u64> {
    let response = client
        .put(server.url(&format!("/v1/tables/users/rows/{id}")))
        .json(&json!({"id": id, "name": name}))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["seq"].as_u64()
}

/// Polls `/v1/status` until `kafka` satisfies `done`, or `limit` passes;
/// returns the last `kafka` status seen.
async fn wait_status(
    client: &reqwest::Client,
    server: &Server,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> (bool, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let status = kafka_status(client, server).await;
        if done(&status) {
            return (true, status);
        }
        if Instant::now() >= deadline {
            return (false, status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_kafka(brokers: &str, topics: &[&str], expected: usize) -> Vec<kafka::Record> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        kafka::read_topics(&brokers, &topics, expected, Duration::from_secs(20))
    })
    .await
    .unwrap()
}

fn mock_env(brokers: &str) -> Vec<(&str, &str)> {
    vec![
        ("TIDEFEED_KAFKA__ENABLED", "true"),
        ("TIDEFEED_KAFKA__BROKERS", brokers),
        // The mock cluster has no CreateTopics: the tests create them.
        ("TIDEFEED_KAFKA__CREATE_TOPICS", "false"),
        ("TIDEFEED_KAFKA__LIBRDKAFKA", "{ \"linger.ms\" = 2 }"),
    ]
}

/// `TIDEFEED_KAFKA__*` variables reach the connector (prefix, format,
/// tombstones, pass-through), and each Kafka value is byte for byte what
/// the SSE stream sends for the same seq in the same format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_overrides_reach_the_connector_and_values_are_the_sse_bytes() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("envp.users", 4, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut env = mock_env(&brokers);
    env.extend([
        ("TIDEFEED_KAFKA__TOPIC_PREFIX", "envp"),
        ("TIDEFEED_KAFKA__FORMAT", "debezium"),
        ("TIDEFEED_KAFKA__TOMBSTONES", "false"),
    ]);
    let server = start(&dir.path().join("data"), &dir.path().join("log"), &env);
    let client = reqwest::Client::new();
    create_users(&client, &server).await;
    put_user(&client, &server, 1, "ann \"quoted\" \u{1F600}")
        .await
        .unwrap();
    put_user(&client, &server, 1, "anne").await.unwrap();
    let last = client
        .delete(server.url("/v1/tables/users/rows/1"))
        .send()
        .await
        .unwrap();
    assert!(last.status().is_success());
    let (done, status) = wait_status(&client, &server, Duration::from_secs(20), |s| {
        s["position"] == 3
    })
    .await;
    assert!(done, "{status}");
    assert_eq!(status["mode"], "at-least-once");

    let response = client
        .get(server.url("/v1/changes/stream?since=0&format=debezium"))
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let mut sse: BTreeMap<u64, String> = BTreeMap::new();
    while sse.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if event.event == "message" {
            sse.insert(event.id.parse().unwrap(), event.data);
        }
    }
    let records = read_kafka(&brokers, &["envp.users"], 3).await;
    assert_eq!(
        records.len(),
        3,
        "no tombstone with tombstones = false: {records:#?}"
    );
    for record in &records {
        let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
        assert_eq!(value, sse[&record.seq()], "seq {}", record.seq());
    }
}

/// With a reachable broker and nothing to forward, the connector is
/// healthy: `/v1/status` and `/metrics` should say `running`, not
/// `starting` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connector_with_a_healthy_broker_reports_running() {
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &mock_env(&brokers),
    );
    let client = reqwest::Client::new();
    let (done, status) = wait_status(&client, &server, Duration::from_secs(5), |s| {
        s["state"] == "running"
    })
    .await;
    assert!(done, "{status}");
}

/// A broker address nothing listens on: before any write, the status
/// shows the connector cannot reach Kafka (not `starting`, as if all were
/// well), and the error names the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_shows_in_the_status_before_any_write() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &mock_env(&brokers),
    );
    let client = reqwest::Client::new();
    let (done, status) = wait_status(&client, &server, Duration::from_secs(8), |s| {
        s["state"] == "retrying" && s["error"].is_string()
    })
    .await;
    assert!(done, "{status}");
}

/// The same unreachable broker with writes: within seconds the connector
/// shows `retrying`, the lag and an error naming the connection problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_with_writes_shows_retrying_with_the_error_and_the_lag() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &mock_env(&brokers),
    );
    let client = reqwest::Client::new();
    create_users(&client, &server).await;
    for id in 0..5 {
        put_user(&client, &server, id, "x").await.unwrap();
    }
    let (done, status) = wait_status(&client, &server, Duration::from_secs(10), |s| {
        s["state"] == "retrying" && s["error"].is_string()
    })
    .await;
    assert!(done, "{status}");
    assert_eq!(status["lag_seqs"], 5, "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains(&port.to_string()) || error.contains("onnect"),
        "{error}"
    );
    let text = metrics(&client, &server).await;
    assert!(
        text.contains("tidefeed_kafka_connector_state{state=\"retrying\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tidefeed_kafka_connector_lag_seqs 5"),
        "{text}"
    );
}

/// Runs `tidefeed serve` expecting it to refuse to start: (exit code,
/// stderr).
fn refused(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("tidefeed ready"), "it started: {stdout}");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn kafka_configuration_mistakes_are_refused_at_start_naming_the_keys() {
    let (code, stderr) = refused(&[("TIDEFEED_KAFKA__ENABLED", "true")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("kafka.brokers"), "{stderr}");

    for (option, typed) in [
        ("acks", "kafka.mode"),
        ("ACKS", "kafka.mode"),
        ("enable.idempotence", "kafka.mode"),
        ("transactional.id", "kafka.mode"),
        ("bootstrap.servers", "kafka.brokers"),
        ("queue.buffering.max.kbytes", "kafka.max_in_flight_bytes"),
        ("partitioner", "kafka.topic"),
    ] {
        let passthrough = format!("{{ \"{option}\" = \"1\" }}");
        let (code, stderr) = refused(&[
            ("TIDEFEED_KAFKA__ENABLED", "true"),
            ("TIDEFEED_KAFKA__BROKERS", "127.0.0.1:9"),
            ("TIDEFEED_KAFKA__LIBRDKAFKA", &passthrough),
        ]);
        assert_eq!(code, Some(1), "{option}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(&option.to_lowercase()) && stderr.contains(typed),
            "{option} and {typed} named: {stderr}"
        );
    }

    // An option librdkafka does not know, and a value it refuses.
    for (passthrough, named) in [
        ("{ \"no.such.option\" = 1 }", "no.such.option"),
        ("{ \"linger.ms\" = \"soon\" }", "linger.ms"),
    ] {
        let (code, stderr) = refused(&[
            ("TIDEFEED_KAFKA__ENABLED", "true"),
            ("TIDEFEED_KAFKA__BROKERS", "127.0.0.1:9"),
            ("TIDEFEED_KAFKA__LIBRDKAFKA", passthrough),
        ]);
        assert_eq!(code, Some(1), "{passthrough}: {stderr}");
        assert!(stderr.contains(named), "{passthrough}: {stderr}");
    }
}

/// SIGTERM while writes stream: the clean stop flushes what is in flight
/// and acknowledges it, so a restart sends nothing twice; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_then_restart_loses_nothing_and_sends_nothing_twice() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("tidefeed.users", 3, 1).unwrap();
    // A little latency, so records are in flight when the signal comes.
    mock.broker_round_trip_time(1, Duration::from_millis(30))
        .unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let env = mock_env(&brokers);
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut server = start(&data, &log, &env);
    create_users(&client, &server).await;
    for round in 0..3 {
        let until = Instant::now() + Duration::from_millis(1200);
        let mut id = round * 10_000;
        while Instant::now() < until {
            if let Some(seq) = put_user(&client, &server, id % 53, &format!("n{id}")).await {
                acknowledged.push(seq);
            }
            id += 1;
        }
        // Writes keep coming while the signal lands.
        let writer = {
            let client = client.clone();
            let base = server.base.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10_000 {
                    let response = client
                        .put(format!("{base}/v1/tables/users/rows/{}", i % 53))
                        .json(&json!({"id": i % 53, "name": format!("late{i}")}))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let body: Value = r.json().await.unwrap();
                            seqs.push(body["seq"].as_u64().unwrap());
                        }
                        _ => break,
                    }
                }
                seqs
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal("TERM");
        let (code, _) = wait_exit(&mut server, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{}", server.log_text());
        acknowledged.extend(writer.await.unwrap());
        server = start(&data, &log, &env);
    }
    let head = *acknowledged.iter().max().unwrap();
    let (done, status) = wait_status(&client, &server, Duration::from_secs(30), |s| {
        s["position"].as_u64() >= Some(head)
    })
    .await;
    assert!(done, "{status}");
    let records = read_kafka(&brokers, &["tidefeed.users"], head as usize).await;
    let counts = kafka::event_counts(&records);
    for seq in &acknowledged {
        assert!(counts.contains_key(seq), "acknowledged seq {seq} missing");
    }
    assert_eq!(counts.len() as u64, head, "every seq 1..={head}");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent twice across clean stops: {} seqs, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
}

/// SIGTERM while the broker does not answer (tansu frozen) and the
/// connector lags: the process exits within `shutdown_grace` (plus a
/// little), and a restart after the broker is back forwards everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_frozen_broker_exits_within_the_grace_and_resumes_after() {
    let Some(mut tansu) = tansu::Tansu::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let brokers = tansu.brokers.clone();
    let env = [
        ("TIDEFEED_KAFKA__ENABLED", "true"),
        ("TIDEFEED_KAFKA__BROKERS", brokers.as_str()),
        ("TIDEFEED_KAFKA__TOPIC_PARTITIONS", "2"),
        ("TIDEFEED_KAFKA__TOPIC_REPLICATION_FACTOR", "1"),
        ("TIDEFEED_SERVER__SHUTDOWN_GRACE", "2s"),
    ];
    let client = reqwest::Client::new();
    let mut server = start(&data, &log, &env);
    create_users(&client, &server).await;
    for id in 0..20 {
        put_user(&client, &server, id, "before").await.unwrap();
    }
    let (done, status) = wait_status(&client, &server, Duration::from_secs(30), |s| {
        s["position"] == 20
    })
    .await;
    assert!(done, "{status}");
    tansu.freeze();
    let mut head = 0;
    for id in 0..200 {
        head = put_user(&client, &server, id, "during").await.unwrap();
    }
    let (done, status) = wait_status(&client, &server, Duration::from_secs(10), |s| {
        s["state"] == "retrying"
    })
    .await;
    assert!(done, "{status}");
    server.signal("TERM");
    let (code, took) = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", server.log_text());
    assert!(
        took < Duration::from_millis(3500),
        "exit took {took:?} with shutdown_grace = 2s"
    );
    tansu.thaw();
    let server = start(&data, &log, &env);
    let (done, status) = wait_status(&client, &server, Duration::from_secs(60), |s| {
        s["position"] == head
    })
    .await;
    assert!(done, "{status}");
    let records = read_kafka(&brokers, &["tidefeed.users"], head as usize).await;
    assert_eq!(kafka::event_counts(&records).len() as u64, head);
}

/// A server forwarding to a mock cluster (`tidefeed.users` with
/// `partitions`), with `env` on top of the mock's variables: one write is
/// confirmed, then the broker goes down.
async fn forwarding_then_broker_down(
    partitions: i32,
    env: &[(&str, &str)],
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    tempfile::TempDir,
    Server,
    reqwest::Client,
) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("tidefeed.users", partitions, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut all = mock_env(&brokers);
    all.extend_from_slice(env);
    let server = start(&dir.path().join("data"), &dir.path().join("log"), &all);
    let client = reqwest::Client::new();
    create_users(&client, &server).await;
    put_user(&client, &server, 0, "first").await.unwrap();
    let (done, status) = wait_status(&client, &server, Duration::from_secs(20), |s| {
        s["position"] == 1
    })
    .await;
    assert!(done, "{status}");
    mock.broker_down(1).unwrap();
    (mock, dir, server, client)
}

/// An outage longer than the retention cap: the connector is invalidated
/// loudly in `/v1/status` and `/metrics`, and the error tells an operator
/// what to do to forward again (an action the API offers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_retention_cap_fails_loudly_in_status_and_metrics() {
    let (mock, _dir, server, client) = forwarding_then_broker_down(
        1,
        &[
            ("TIDEFEED_FEED__RETENTION", "0s"),
            ("TIDEFEED_FEED__MAX_RETENTION_BYTES", "64KiB"),
            ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB"),
            ("TIDEFEED_STORAGE__DURABILITY", "async"),
        ],
    )
    .await;
    let note = "z".repeat(2000);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut i = 0;
    let status = loop {
        for _ in 0..50 {
            put_user(&client, &server, i % 400, &note).await.unwrap();
            i += 1;
        }
        let status = kafka_status(&client, &server).await;
        if status["state"] == "failed" {
            break status;
        }
        assert!(Instant::now() < deadline, "{status}");
    };
    assert_eq!(status["invalidated"]["kind"], "retention_cap", "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("max_retention_bytes"), "{error}");
    // How to recover, in terms an operator can act on.
    assert!(
        error.contains("DELETE /v1/consumers/kafka-connector") && error.contains("restart"),
        "{error}"
    );
    let text = metrics(&client, &server).await;
    assert!(
        text.contains("tidefeed_kafka_connector_state{state=\"failed\"} 1"),
        "{text}"
    );
    mock.broker_up(1).unwrap();
}

/// Memory stays bounded while Kafka is down and writes continue: the
/// backlog waits on disk, not in the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_bounded_while_kafka_is_down_and_writes_continue() {
    let (mock, _dir, server, client) = forwarding_then_broker_down(
        2,
        &[
            ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "1MiB"),
            ("TIDEFEED_STORAGE__DURABILITY", "async"),
            ("TIDEFEED_KAFKA__MAX_IN_FLIGHT_BYTES", "1MiB"),
        ],
    )
    .await;
    let note = "m".repeat(8000);
    let mut written = 0u64;
    let write_batch = |n: i64, start: i64| {
        let client = client.clone();
        let base = server.base.clone();
        let note = note.clone();
        async move {
            for i in start..start + n {
                let r = client
                    .put(format!("{base}/v1/tables/users/rows/{}", i % 1000))
                    .json(&json!({"id": i % 1000, "name": note}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }
    };
    // Warm up: 72 MB of rows, each update also keeping its before-image,
    // fill what memory is meant to hold (the 64 MiB block cache with
    // versions read for before-images, memtables, buffers).
    write_batch(9000, 0).await;
    let warm = server.rss_kib();
    // As much again: now the backlog only grows on disk.
    write_batch(9000, 9000).await;
    written += 9000 * 8000;
    let after = server.rss_kib();
    let status = kafka_status(&client, &server).await;
    assert!(status["lag_seqs"].as_u64().unwrap() > 5000, "{status}");
    assert!(
        status["in_flight_bytes"].as_u64().unwrap() <= 1 << 20,
        "{status}"
    );
    eprintln!(
        "RSS {warm} KiB after warm-up, {after} KiB after {} MiB more backlog",
        written >> 20
    );
    // Memory that grew with the backlog would grow by more than the rows
    // written (each also keeps its before-image); allow half of them.
    assert!(
        after < warm + (written >> 10) / 2,
        "RSS grew from {warm} KiB to {after} KiB with {} MiB of backlog",
        written >> 20
    );
    mock.broker_up(1).unwrap();
}
