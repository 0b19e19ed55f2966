//! Adversarial probes of the real binary: secrets never reach the log
//! (even at trace level), SIGTERM with clients that do not cooperate
//! (a stalled stream reader, a slow upload, idle keep-alive connections),
//! SIGKILL under concurrent HTTP writers, and environment overrides that
//! must change behaviour.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sse::Sse;
use futures_util::StreamExt;
use serde_json::{json, Value as Json};

const PATIENCE: Duration = Duration::from_secs(30);
const SECRET: &str = "tf-secret-4a1b2c3d4e5f60718293";
const WRONG: &str = "tf-wrong-99887766554433221100";

/// `tidefeed serve` with extra arguments and environment.
struct Proc {
    child: Child,
    base: String,
    log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn start(data: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidefeed"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .env_remove("TIDEFEED_LOG")
            .stdout(Stdio::piped())
            .stderr(File::create(log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("tidefeed ready"),
            "{line:?}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .unwrap()
            .to_owned();
        Proc {
            child,
            base: format!("http://{addr}"),
            log: log.to_owned(),
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_exit(mut proc: Proc, limit: Duration) -> (Option<ExitStatus>, Duration, Proc) {
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let status = proc.wait_timeout(limit);
        (status, started.elapsed(), proc)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let config = dir.path().join("tidefeed.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntokens = [{{ token = \"{SECRET}\", scopes = [\"read\", \"write\", \"admin\"] }}]\n"
        ),
    )
    .unwrap();
    let proc = Proc::start(
        &data,
        &log,
        &["--config", config.to_str().unwrap()],
        &[("TIDEFEED_LOG", "trace")],
    );
    let client = reqwest::Client::new();
    let auth = format!("Bearer {SECRET}");
    let response = client
        .put(proc.url("/v1/tables/t"))
        .header("authorization", &auth)
        .json(&json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut stream = Sse::new(
        client
            .get(proc.url(&format!("/v1/changes/stream?since=0&access_token={SECRET}")))
            .send()
            .await
            .unwrap(),
    );
    let response = client
        .put(proc.url("/v1/tables/t/rows/1"))
        .header("authorization", &auth)
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    loop {
        let event = stream.next(PATIENCE).await.unwrap();
        if event.event == "message" {
            break;
        }
    }
    // Failures of every kind, with secrets in every place they can go.
    for url in [
        format!("/v1/changes?since=0&access_token={SECRET}"),
        format!("/v1/changes?since=x&access_token={SECRET}"),
        format!("/v1/changes/stream?since=999&access_token={SECRET}"),
        format!("/v1/changes/stream?access_token={WRONG}"),
        format!("/v1/nope/{SECRET}?access_token={SECRET}"),
        format!("/v1/tables/{SECRET}?access_token={SECRET}"),
        format!("/v1/tables/t/rows/{SECRET}"),
    ] {
        let _ = client
            .get(proc.url(&url))
            .header("authorization", &auth)
            .send()
            .await;
        let _ = client.get(proc.url(&url)).send().await;
        let _ = client
            .get(proc.url(&url))
            .header("authorization", format!("Bearer {WRONG}"))
            .send()
            .await;
    }
    drop(stream);
    proc.signal("TERM");
    let (status, _, proc) = wait_exit(proc, PATIENCE).await;
    assert!(status.is_some_and(|s| s.success()), "{}", proc.log_text());
    let text = proc.log_text();
    assert!(text.len() > 100, "the log is written: {text}");
    assert!(!text.contains(SECRET), "the token is in the log:\n{text}");
    assert!(
        !text.contains(WRONG),
        "a presented token is in the log:\n{text}"
    );
}

/// SIGTERM while clients misbehave: a stream whose reader stopped reading
/// (its socket buffers full), a slow upload, an idle keep-alive
/// connection. The process still exits 0 within the grace period, and
/// everything acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_uncooperative_clients_exits_0_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let env = [("TIDEFEED_SERVER__SHUTDOWN_GRACE", "2s")];
    let proc = Proc::start(&data, &log, &[], &env);
    let client = reqwest::Client::new();
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // A stalled reader: opened, never read.
    let stalled = client
        .get(proc.url("/v1/changes/stream?since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    let payload = "v".repeat(16 * 1024);
    let mut last = 0;
    for id in 0..600 {
        let response = client
            .put(proc.url(&format!("/v1/tables/t/rows/{id}")))
            .json(&json!({"id": id, "v": payload}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Json = response.json().await.unwrap();
        last = body["seq"].as_u64().unwrap();
    }
    // An idle keep-alive connection (the client's pool holds it).
    let response = client.get(proc.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // A slow upload in progress.
    let slow_client = reqwest::Client::new();
    let slow_url = proc.url("/v1/tables/t/rows/9999");
    let slow = tokio::spawn(async move {
        let body = br#"{"id":9999,"v":"slow"}"#.to_vec();
        let stream = futures_util::stream::unfold(0usize, move |i| {
            let body = body.clone();
            async move {
                if i >= body.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok::<Vec<u8>, std::io::Error>(vec![body[i]]), i + 1))
            }
        });
        slow_client
            .put(slow_url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proc.signal("TERM");
    let (status, took, proc) = wait_exit(proc, Duration::from_secs(20)).await;
    let status =
        status.unwrap_or_else(|| panic!("still running after 20 s; log: {}", proc.log_text()));
    assert!(
        status.success(),
        "exit {status:?}; log: {}",
        proc.log_text()
    );
    assert!(
        took < Duration::from_secs(2 + 8),
        "took {took:?} with a 2 s grace; log: {}",
        proc.log_text()
    );
    drop(stalled);
    let _ = slow.await;
    drop(proc);
    let proc = Proc::start(&data, &log, &[], &[]);
    let response = client
        .get(proc.url(&format!("/v1/changes?since={}", last - 1)))
        .send()
        .await
        .unwrap();
    let page: Json = response.json().await.unwrap();
    assert_eq!(page["changes"][0]["seq"], last, "{page}");
}

/// Concurrent HTTP writers, SIGKILL, restart: every acknowledged write is
/// in the feed exactly once at the seq it was acknowledged with, with the
/// values it wrote, and the before-images chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_http_writes_survive_sigkill_exactly_once() {
    writes_survive_sigkill(&[]).await;
}

/// In `async` durability a write is acknowledged after write(2): a process
/// crash (not a power loss) loses none of them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_durability_writes_survive_a_process_kill() {
    writes_survive_sigkill(&[("TIDEFEED_STORAGE__DURABILITY", "async")]).await;
}

async fn writes_survive_sigkill(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeMap<u64, (i64, String)>>> = Arc::default();
    for round in 0..3 {
        let mut proc = Proc::start(&data, &log, &[], env);
        if round == 0 {
            let response = client
                .put(proc.url("/v1/tables/t"))
                .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string"}], "primary_key": ["id"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for writer in 0..6i64 {
            let client = client.clone();
            let base = proc.base.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = (writer * 7 + i) % 11;
                    let value = format!("r{round}w{writer}i{i}");
                    let result = if i % 4 == 0 {
                        client
                            .post(format!("{base}/v1/batch"))
                            .json(&json!({"ops": [
                                {"op": "upsert", "table": "t", "row": {"id": id, "v": value}},
                                {"op": "upsert", "table": "t", "row": {"id": id + 100, "v": value}},
                            ]}))
                            .send()
                            .await
                    } else {
                        client
                            .put(format!("{base}/v1/tables/t/rows/{id}"))
                            .json(&json!({"id": id, "v": value}))
                            .send()
                            .await
                    };
                    let Ok(response) = result else { break };
                    if response.status() != 200 {
                        break;
                    }
                    let Ok(body) = response.json::<Json>().await else {
                        break;
                    };
                    let mut acked = acked.lock().unwrap();
                    if let Some(results) = body["results"].as_array() {
                        acked.insert(results[0]["seq"].as_u64().unwrap(), (id, value.clone()));
                        acked.insert(results[1]["seq"].as_u64().unwrap(), (id + 100, value));
                    } else {
                        acked.insert(body["seq"].as_u64().unwrap(), (id, value));
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
    }
    let proc = Proc::start(&data, &log, &[], env);
    let mut events = Vec::new();
    let mut since = 0;
    loop {
        let page: Json = client
            .get(proc.url(&format!("/v1/changes?since={since}&limit=1000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        events.extend(page["changes"].as_array().unwrap().iter().cloned());
        let next = page["next"].as_u64().unwrap();
        if next == since {
            break;
        }
        since = next;
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seqs without gaps or repeats"
    );
    let by_seq: BTreeMap<u64, &Json> = events
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 50,
        "the test wrote too little: {}",
        acked.len()
    );
    for (seq, (id, value)) in acked.iter() {
        let event = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} lost"));
        assert_eq!(event["key"], json!({"id": id}), "{event}");
        assert_eq!(event["after"]["v"], json!(value), "{event}");
    }
    let mut last: BTreeMap<String, Json> = BTreeMap::new();
    for event in &events {
        let key = event["key"].to_string();
        assert_eq!(
            event["before"],
            last.get(&key).cloned().unwrap_or(Json::Null),
            "chain at {event}"
        );
        last.insert(key, event["after"].clone());
    }
    let unique: BTreeSet<u64> = acked.keys().copied().collect();
    assert_eq!(unique.len(), acked.len());
}

/// `TIDEFEED_<SECTION>__<KEY>` variables change what the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_change_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(
        &data,
        &log,
        &[],
        &[
            ("TIDEFEED_SERVER__MAX_STREAMS", "1"),
            ("TIDEFEED_SERVER__MAX_BODY_BYTES", "1KiB"),
            (
                "TIDEFEED_SERVER__CORS_ALLOWED_ORIGINS",
                "http://app.example",
            ),
            ("TIDEFEED_SERVER__KEEP_ALIVE_INTERVAL", "200ms"),
            ("TIDEFEED_FEED__MAX_EVENT_BYTES", "1KiB"),
        ],
    );
    let client = reqwest::Client::new();
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string", "nullable": true}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Body limit.
    let response = client
        .put(proc.url("/v1/tables/t/rows/1"))
        .json(&json!({"id": 1, "v": "x".repeat(2000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Streams: one at a time; keep-alive comments every 200 ms.
    let first = client
        .get(proc.url("/v1/changes/stream"))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let second = client
        .get(proc.url("/v1/changes/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    let mut body = first.bytes_stream();
    let started = Instant::now();
    let mut text = String::new();
    while !text.contains(": keep-alive") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a keep-alive within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(body);
    // Event size: a 900-byte row encodes past 1 KiB as an event.
    let response = client
        .put(proc.url("/v1/tables/t/rows/2"))
        .json(&json!({"id": 2, "v": "y".repeat(900)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Json = client
        .get(proc.url("/v1/changes?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["changes"][0]["truncated"], true, "{page}");
}

/// SIGTERM while writers are busy: the process exits 0, and every write
/// it acknowledged is there after a restart, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_concurrent_writers_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(
        &data,
        &log,
        &[],
        &[("TIDEFEED_SERVER__SHUTDOWN_GRACE", "2s")],
    );
    let client = reqwest::Client::new();
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let acked: Arc<Mutex<Vec<(u64, i64, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..6i64 {
        let client = client.clone();
        let base = proc.base.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100_000i64 {
                let id = (writer * 13 + i) % 17;
                let value = format!("w{writer}i{i}");
                let Ok(response) = client
                    .put(format!("{base}/v1/tables/t/rows/{id}"))
                    .json(&json!({"id": id, "v": value}))
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != 200 {
                    assert_eq!(response.status(), 503, "only shutting down refuses");
                    break;
                }
                let Ok(body) = response.json::<Json>().await else {
                    break;
                };
                acked
                    .lock()
                    .unwrap()
                    .push((body["seq"].as_u64().unwrap(), id, value));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    proc.signal("TERM");
    let (status, took, proc) = wait_exit(proc, Duration::from_secs(20)).await;
    let status = status.unwrap_or_else(|| panic!("still running; log: {}", proc.log_text()));
    assert!(
        status.success(),
        "exit {status:?}; log: {}",
        proc.log_text()
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("writers finish once the server is gone")
            .unwrap();
    }
    drop(proc);
    let proc = Proc::start(&data, &log, &[], &[]);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "{}", acked.len());
    let max = acked.iter().map(|a| a.0).max().unwrap();
    let mut events = BTreeMap::new();
    let mut since = 0;
    while since < max {
        let page: Json = client
            .get(proc.url(&format!("/v1/changes?since={since}&limit=1000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for event in page["changes"].as_array().unwrap() {
            assert!(events
                .insert(event["seq"].as_u64().unwrap(), event.clone())
                .is_none());
        }
        let next = page["next"].as_u64().unwrap();
        assert!(
            next > since,
            "the log ends at {since}, before acknowledged seq {max}"
        );
        since = next;
    }
    for (seq, id, value) in acked {
        let event = &events[&seq];
        assert_eq!(event["key"], json!({"id": id}));
        assert_eq!(event["after"]["v"], json!(value));
    }
}

/// `curl -N` reads the stream as it comes, and resumes with a
/// Last-Event-ID header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_and_resumes_the_stream() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: no curl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(&data, &log, &[], &[]);
    let client = reqwest::Client::new();
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for id in 1..=4 {
        let response = client
            .put(proc.url(&format!("/v1/tables/t/rows/{id}")))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let url = proc.url("/v1/changes/stream?since=0");
    let resume_url = proc.url("/v1/changes/stream");
    let (first, resumed) = tokio::task::spawn_blocking(move || {
        let first = Command::new("curl")
            .args(["-sN", "--max-time", "2", &url])
            .output()
            .unwrap();
        let resumed = Command::new("curl")
            .args([
                "-sN",
                "--max-time",
                "2",
                "-H",
                "Last-Event-ID: 2",
                &resume_url,
            ])
            .output()
            .unwrap();
        (first, resumed)
    })
    .await
    .unwrap();
    let first = String::from_utf8(first.stdout).unwrap();
    let resumed = String::from_utf8(resumed.stdout).unwrap();
    for id in 1..=4 {
        assert!(first.contains(&format!("id: {id}\ndata: {{")), "{first}");
    }
    // The resumed stream opens with `resolved` at 2, then changes 3 and 4:
    // change 2 itself (`{"seq":2,"ts":..`) is not sent again.
    assert!(resumed.starts_with("event: resolved\nid: 2\n"), "{resumed}");
    assert!(!resumed.contains("id: 2\ndata: {\"seq\":2,"), "{resumed}");
    assert!(
        resumed.contains("id: 3\ndata") && resumed.contains("id: 4\ndata"),
        "{resumed}"
    );
}

/// The log written to a file (or journald, or a pipe) is plain text:
/// no terminal colour escapes an operator must strip to grep it.
#[test]
fn the_log_is_plain_text_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(&data, &log, &[], &[]);
    proc.signal("TERM");
    let mut proc = proc;
    assert!(proc.wait_timeout(PATIENCE).is_some_and(|s| s.success()));
    let text = proc.log_text();
    assert!(text.contains("storage engine ready"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log: {text:?}"
    );
}

/// A clean restart resumes durable consumers exactly where they were
/// acknowledged (a lost ack may only retain more after a crash, never on
/// SIGTERM); after SIGKILL the position is between creation and the ack,
/// and streaming as the consumer delivers everything after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_resume_after_sigterm_exactly_and_after_sigkill_safely() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();
    let proc = Proc::start(&data, &log, &[], &[]);
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .put(proc.url("/v1/consumers/c"))
        .json(&json!({"position": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for id in 1..=10 {
        let response = client
            .put(proc.url(&format!("/v1/tables/t/rows/{id}")))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = client
        .post(proc.url("/v1/consumers/c/ack"))
        .json(&json!({"seq": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    proc.signal("TERM");
    let (status, _, proc) = wait_exit(proc, PATIENCE).await;
    assert!(status.is_some_and(|s| s.success()));
    drop(proc);
    let mut proc = Proc::start(&data, &log, &[], &[]);
    let consumer: Json = client
        .get(proc.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(consumer["position"], 7, "after SIGTERM: {consumer}");
    // Ack further, then SIGKILL.
    let response = client
        .post(proc.url("/v1/consumers/c/ack"))
        .json(&json!({"seq": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    drop(proc);
    let proc = Proc::start(&data, &log, &[], &[]);
    let consumer: Json = client
        .get(proc.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let position = consumer["position"].as_u64().unwrap();
    assert!((7..=9).contains(&position), "after SIGKILL: {consumer}");
    let mut stream = Sse::new(
        client
            .get(proc.url("/v1/changes/stream?consumer=c"))
            .send()
            .await
            .unwrap(),
    );
    let mut next = position + 1;
    while next <= 10 {
        let event = stream.next(PATIENCE).await.expect("open");
        if event.event == "message" {
            assert_eq!(event.id, next.to_string());
            next += 1;
        }
    }
}

/// Listening beyond loopback: allowed with `allow_insecure` or with
/// tokens from the environment (as TOML), and then the tokens are
/// enforced; health and metrics token options come through the
/// environment too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_listen_and_tokens_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();
    let start_on_any = |data: &Path, env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidefeed"));
        command
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(data)
            .env_remove("TIDEFEED_LOG")
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (child, line, stdout)
    };
    // allow_insecure.
    let (mut child, line, _out) = start_on_any(
        &dir.path().join("a"),
        &[("TIDEFEED_SERVER__ALLOW_INSECURE", "true")],
    );
    assert!(
        line.starts_with("tidefeed ready: listen=0.0.0.0:"),
        "{line:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Tokens from the environment; health needs one too.
    let (mut child, line, _out) = start_on_any(
        &dir.path().join("b"),
        &[
            (
                "TIDEFEED_AUTH__TOKENS",
                "[{ token = \"envtoken\", scopes = [\"read\"] }]",
            ),
            ("TIDEFEED_SERVER__HEALTH_REQUIRE_TOKEN", "true"),
        ],
    );
    assert!(
        line.starts_with("tidefeed ready: listen=0.0.0.0:"),
        "{line:?} {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen=0.0.0.0:"))
        .unwrap()
        .to_owned();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(
        client.get(url("/v1/tables")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        client.get(url("/healthz")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        client.get(url("/metrics")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        client
            .get(url("/v1/tables"))
            .bearer_auth("envtoken")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(url("/healthz"))
            .bearer_auth("envtoken")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("envtoken"), "{text}");
}

/// Idle keep-alive connections and finished streams do not hold shutdown
/// to the grace period (10 s by default): SIGTERM exits promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_connections_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(&data, &log, &[], &[]);
    let clients: Vec<reqwest::Client> = (0..5).map(|_| reqwest::Client::new()).collect();
    for client in &clients {
        assert_eq!(
            client
                .get(proc.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // An open stream that reads along.
    let mut stream = Sse::new(
        clients[0]
            .get(proc.url("/v1/changes/stream"))
            .send()
            .await
            .unwrap(),
    );
    let opening = stream.next(PATIENCE).await.expect("the opening event");
    assert_eq!(opening.event, "resolved");
    proc.signal("TERM");
    let event = stream.next(PATIENCE).await.expect("the error event");
    assert_eq!(event.event, "error");
    let (status, took, proc) = wait_exit(proc, PATIENCE).await;
    assert!(status.is_some_and(|s| s.success()), "{}", proc.log_text());
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}; log: {}",
        proc.log_text()
    );
}

/// A second server on the same data directory refuses to start, saying
/// why, and the first one keeps serving untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let proc = Proc::start(&data, &log, &[], &[]);
    let client = reqwest::Client::new();
    let response = client
        .put(proc.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let output = Command::new(env!("CARGO_BIN_EXE_tidefeed"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("TIDEFEED_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "it announced readiness");
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(
        stderr.contains("lock") || stderr.contains("in use"),
        "{stderr}"
    );
    let response = client
        .put(proc.url("/v1/tables/t/rows/1"))
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Retention at zero, small memtables (so flushes and low-water moves
/// happen), a durable consumer acking as it reads, and SIGKILL again and
/// again: after every restart the consumer is valid and reads on from its
/// position, without `history_lost` and without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_survives_repeated_sigkill_with_zero_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let env = [
        ("TIDEFEED_FEED__RETENTION", "0s"),
        ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB"),
        ("TIDEFEED_FEED__RESOLVED_INTERVAL", "50ms"),
    ];
    let client = reqwest::Client::new();
    let payload = "p".repeat(2000);
    let mut delivered: Vec<u64> = Vec::new();
    for round in 0..6 {
        let mut proc = Proc::start(&data, &log, &[], &env);
        if round == 0 {
            let response = client
                .put(proc.url("/v1/tables/t"))
                .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "string"}], "primary_key": ["id"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let response = client
                .put(proc.url("/v1/consumers/c"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        let info: Json = client
            .get(proc.url("/v1/consumers/c"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["invalidated"], Json::Null, "round {round}: {info}");
        let position = info["position"].as_u64().unwrap();
        // What was delivered after the last durable ack comes again.
        delivered.retain(|&seq| seq <= position);
        for i in 0..150 {
            let response = client
                .put(proc.url(&format!("/v1/tables/t/rows/{}", i % 40)))
                .json(&json!({"id": i % 40, "v": payload}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let response = client
            .get(proc.url("/v1/changes/stream?consumer=c"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "round {round}: {}",
            response.text().await.unwrap()
        );
        let mut stream = Sse::new(response);
        let head = 150 * (round + 1) as u64;
        while delivered.last().copied().unwrap_or(position) < head {
            let event = stream.next(PATIENCE).await.expect("open");
            assert_ne!(event.event, "error", "round {round}: {}", event.data);
            if event.event == "message" {
                let seq: u64 = event.id.parse().unwrap();
                let expected = delivered.last().copied().unwrap_or(position) + 1;
                assert_eq!(seq, expected, "round {round}: a gap or repeat");
                delivered.push(seq);
                if seq.is_multiple_of(25) {
                    let response = client
                        .post(proc.url("/v1/consumers/c/ack"))
                        .json(&json!({"seq": seq}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            }
        }
        drop(stream);
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
    }
}
