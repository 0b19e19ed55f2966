//! The `tidefeed` binary forwarding to a real Kafka-protocol broker
//! (tansu), killed with SIGKILL mid-stream and restarted, several times:
//! at-least-once loses nothing; duplicates are counted, lie within the
//! unconfirmed window of each kill, and carry the same `tidefeed.seq` and
//! bytes as the first copy.
//!
//! The unconfirmed window of a kill is `(W, V]`: `W` is the connector's
//! position as written in `consumers.json` when the process died (what a
//! restart resumes from), `V` the visible seq the restart recovers.
//!
//! Skipped with a printed reason when tansu is not installed, unless
//! `CI=true`.

#[path = "../connectors/tests/common/mod.rs"]
mod kafka;
#[path = "../connectors/tests/common/tansu.rs"]
mod tansu;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tansu::Tansu;

struct Server {
    child: Child,
    base: String,
    /// The visible seq after recovery, from the readiness line.
    visible_seq: u64,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(data_dir: &Path, log: &Path, brokers: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("TIDEFEED_LOG", "info,librdkafka=warn")
            .env("TIDEFEED_KAFKA__ENABLED", "true")
            .env("TIDEFEED_KAFKA__BROKERS", brokers)
            .env("TIDEFEED_KAFKA__TOPIC_PARTITIONS", "3")
            .env("TIDEFEED_KAFKA__TOPIC_REPLICATION_FACTOR", "1")
            .stdout(Stdio::piped())
            .stderr(File::options().create(true).append(true).open(log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("tidefeed ready"),
            "unexpected first line {line:?}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .unwrap()
                .to_owned()
        };
        Server {
            child,
            base: format!("http://{}", field("listen=")),
            visible_seq: field("visible_seq=").parse().unwrap(),
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "tidefeed did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The connector's durable position as written to disk.
fn written_position(data_dir: &Path) -> u64 {
    let text = std::fs::read_to_string(data_dir.join("consumers.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    file["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kafka-connector")
        .map_or(0, |c| c["position"].as_u64().unwrap())
}

/// Writes rows as fast as one client can until the server goes away or
/// `until` passes; returns the acknowledged seqs.
async fn write_until(
    client: &reqwest::Client,
    base: String,
    first_id: i64,
    until: Instant,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut id = first_id;
    while Instant::now() < until {
        let response = client
            .put(format!("{base}/v1/tables/users/rows/{}", id % 97))
            .json(&json!({"id": id % 97, "name": format!("name-{id}")}))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value = response.json().await.unwrap();
                seqs.push(body["seq"].as_u64().unwrap());
            }
            _ => break,
        }
        id += 1;
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_mid_stream_loses_nothing_and_duplicates_only_the_unconfirmed_window() {
    let Some(tansu) = Tansu::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();
    let mut server = Server::start(&data, &log, &tansu.brokers);
    let created = client
        .put(server.url("/v1/tables/users"))
        .json(&json!({"columns":[{"name":"id","type":"int64"},{"name":"name","type":"string"}],"primary_key":["id"]}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());

    let mut acknowledged = Vec::new();
    let mut windows = Vec::new();
    for (round, millis) in [2600u64, 3300, 2200, 3000].into_iter().enumerate() {
        let killer = async {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        };
        let writer = write_until(
            &client,
            server.base.clone(),
            round as i64 * 100_000,
            Instant::now() + Duration::from_secs(30),
        );
        tokio::pin!(writer);
        tokio::select! {
            seqs = &mut writer => acknowledged.extend(seqs),
            _ = killer => {
                server.kill();
                acknowledged.extend(writer.await);
            }
        }
        let written = written_position(&data);
        server = Server::start(&data, &log, &tansu.brokers);
        assert!(written <= server.visible_seq);
        windows.push((written, server.visible_seq));
    }
    acknowledged.extend(
        write_until(
            &client,
            server.base.clone(),
            900_000,
            Instant::now() + Duration::from_millis(500),
        )
        .await,
    );
    let head = *acknowledged.iter().max().unwrap();
    assert!(head >= server.visible_seq);

    // Let the connector catch up, then stop cleanly.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumer: serde_json::Value = client
            .get(server.url("/v1/consumers/kafka-connector"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if consumer["position"].as_u64() == Some(head) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connector did not catch up: {consumer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Caught up: the service reports the connector in /v1/status and
    // /metrics.
    let status: serde_json::Value = client
        .get(server.url("/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["kafka"]["state"], "running", "{status}");
    assert_eq!(status["kafka"]["position"], head, "{status}");
    assert_eq!(status["kafka"]["lag_seqs"], 0, "{status}");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidefeed_kafka_connector_state{state=\"running\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("tidefeed_kafka_connector_position_seq {head}\n")),
        "{metrics}"
    );
    server.terminate();

    let brokers = tansu.brokers.clone();
    let records = tokio::task::spawn_blocking(move || {
        kafka::read_topics(
            &brokers,
            &["tidefeed.users"],
            head as usize,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let mut copies: BTreeMap<u64, Vec<&kafka::Record>> = BTreeMap::new();
    for record in &records {
        copies.entry(record.seq()).or_default().push(record);
    }
    for seq in 1..=head {
        assert!(copies.contains_key(&seq), "seq {seq} is missing from Kafka");
    }
    for seq in &acknowledged {
        assert!(
            copies.contains_key(seq),
            "acknowledged seq {seq} is missing"
        );
    }
    let mut duplicates = 0;
    for (seq, list) in &copies {
        if list.len() > 1 {
            duplicates += list.len() - 1;
            assert!(
                windows.iter().any(|(w, v)| w < seq && seq <= v),
                "seq {seq} was sent {} times but lies in no unconfirmed window {windows:?}",
                list.len()
            );
            assert!(list
                .iter()
                .all(|r| r.value == list[0].value && r.key == list[0].key));
        }
    }
    assert!(
        windows.iter().all(|(w, _)| *w > 0),
        "every kill came after the connector had written a position: {windows:?}"
    );
    let window_total: u64 = windows.iter().map(|(w, v)| v - w).sum();
    assert!(
        duplicates as u64 <= window_total,
        "{duplicates} duplicates, windows {windows:?}"
    );
    eprintln!(
        "{head} changes, {} acknowledged writes, {} kills; {duplicates} duplicates within unconfirmed windows {windows:?} ({window_total} seqs)",
        acknowledged.len(),
        windows.len()
    );
}
