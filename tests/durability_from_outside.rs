//! Durability and change-feed promises checked from outside, through the
//! binary: concurrent HTTP writers (single ops and atomic batches across
//! tables), SIGKILL at seeded random moments, restart on the same data
//! directory, and then:
//!
//! - every answered write is readable with its value, and is in the feed
//!   exactly once at the seq it was answered with;
//! - an unanswered write (single or batch) is wholly present or wholly
//!   absent;
//! - seqs are contiguous, before-images chain per key, the SSE stream and
//!   the pull feed agree, and an event a live subscriber saw before the kill
//!   is the same event after it;
//! - durable consumers resume at or before their last acknowledgement and
//!   never skip, with zero retention and small memtables;
//! - reading below the low-water mark is 410 `history_lost`, never a page
//!   that silently starts later.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Tidefeed;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value as Json};

const KEYS_PER_WRITER: i64 = 8;
const WRITERS: i64 = 6;
const PAD: usize = 300;
/// Pad of the ops of a big batch: 16 of them are well over 64 KiB.
const BIG_PAD: usize = 8000;

/// splitmix64: small, seeded, good enough to pick ops and kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (table, id): table `a` is keyed by int64 `id`, table `b` by string `k`.
type Key = (&'static str, i64);

fn key_json(key: Key) -> Json {
    match key.0 {
        "a" => json!({"id": key.1}),
        _ => json!({"k": format!("k{}", key.1)}),
    }
}

fn key_path(key: Key) -> String {
    match key.0 {
        "a" => format!("/v1/tables/a/rows/{}", key.1),
        _ => format!("/v1/tables/b/rows/k{}", key.1),
    }
}

fn key_name(table: &str, key: &Json) -> String {
    format!("{table}/{key}")
}

fn full_row(key: Key, v: &str, pad: usize) -> Json {
    let mut row = key_json(key);
    row["v"] = json!(v);
    row["pad"] = json!("x".repeat(pad));
    row
}

#[derive(Clone, Debug)]
enum Op {
    /// Key, value, pad length.
    Upsert(Key, String, usize),
    Patch(Key, String),
    Delete(Key),
}

impl Op {
    fn key(&self) -> Key {
        match self {
            Op::Upsert(k, ..) | Op::Patch(k, _) | Op::Delete(k) => *k,
        }
    }
    /// The value after the op.
    fn after(&self) -> Option<String> {
        match self {
            Op::Upsert(_, v, _) | Op::Patch(_, v) => Some(v.clone()),
            Op::Delete(_) => None,
        }
    }
    /// The op kind the feed must show, given whether the key existed.
    fn kind(&self, existed: bool) -> &'static str {
        match self {
            Op::Upsert(..) if !existed => "insert",
            Op::Upsert(..) | Op::Patch(..) => "update",
            Op::Delete(_) => "delete",
        }
    }
    fn batch_json(&self) -> Json {
        match self {
            Op::Upsert(k, v, pad) => {
                json!({"op": "upsert", "table": k.0, "row": full_row(*k, v, *pad)})
            }
            Op::Patch(k, v) => {
                json!({"op": "patch", "table": k.0, "key": key_json(*k), "row": {"v": v}})
            }
            Op::Delete(k) => json!({"op": "delete", "table": k.0, "key": key_json(*k)}),
        }
    }
}

#[derive(Debug)]
enum Outcome {
    /// The seqs the server answered with, one per op.
    Acked(Vec<(u64, String)>),
    /// No answer: the connection died.
    Unanswered,
    /// Answered 503 `shutting_down`: must not have happened.
    Refused,
}

#[derive(Debug)]
struct Attempt {
    ops: Vec<Op>,
    outcome: Outcome,
}

/// The state the test believes in: current values and, per key, the list
/// of (op kind, after value) the feed must show.
#[derive(Default)]
struct Model {
    state: HashMap<Key, Option<String>>,
    history: HashMap<Key, Vec<(&'static str, Option<String>)>>,
    /// seq -> (key, kind, after) for every answered op.
    acked: BTreeMap<u64, (Key, &'static str, Option<String>)>,
    /// (first, last) seqs of every answered batch.
    batches: Vec<(u64, u64)>,
    answered: usize,
}

impl Model {
    fn current(&self, key: Key) -> Option<String> {
        self.state.get(&key).cloned().flatten()
    }
    fn apply(&mut self, ops: &[Op], seqs: Option<&[(u64, String)]>) {
        for (i, op) in ops.iter().enumerate() {
            let key = op.key();
            let kind = op.kind(self.current(key).is_some());
            if let Some(seqs) = seqs {
                assert_eq!(
                    seqs[i].1, kind,
                    "the answered op kind of {op:?} (seq {})",
                    seqs[i].0
                );
                self.acked.insert(seqs[i].0, (key, kind, op.after()));
            }
            self.history
                .entry(key)
                .or_default()
                .push((kind, op.after()));
            self.state.insert(key, op.after());
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn data_paths(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.path().join("data"), dir.path().join("tidefeed.log"))
}

async fn create_tables(client: &reqwest::Client, server: &Tidefeed) {
    for (table, key_col, key_type) in [("a", "id", "int64"), ("b", "k", "string")] {
        let response = client
            .put(server.url(&format!("/v1/tables/{table}")))
            .json(&json!({"columns": [
                {"name": key_col, "type": key_type},
                {"name": "v", "type": "string"},
                {"name": "pad", "type": "string", "nullable": true}],
                "primary_key": [key_col]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

async fn status(client: &reqwest::Client, server: &Tidefeed) -> Json {
    client
        .get(server.url("/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One writer: sequential ops on its own keys until the first failure.
async fn writer(
    client: reqwest::Client,
    base: String,
    (seed, tag, w): (u64, String, i64),
    mut local: HashMap<Key, Option<String>>,
    stop: Arc<AtomicBool>,
    big_every: Option<u64>,
) -> Vec<Attempt> {
    let mut rng = Rng(seed ^ (w as u64).wrapping_mul(0x1234_5678_9abc));
    let mut attempts = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let big = big_every.is_some_and(|every| rng.below(every) == 0);
        let n = if big {
            2 * KEYS_PER_WRITER as usize
        } else if rng.below(10) < 3 {
            2 + rng.below(3) as usize
        } else {
            1
        };
        let pad = if big { BIG_PAD } else { PAD };
        let mut ops: Vec<Op> = Vec::new();
        while ops.len() < n {
            let table = if rng.below(2) == 0 { "a" } else { "b" };
            let key: Key = (table, w * 100 + rng.below(KEYS_PER_WRITER as u64) as i64);
            if ops.iter().any(|op| op.key() == key) {
                continue;
            }
            let v = format!("{tag}w{w}i{i}o{}", ops.len());
            let exists = local.get(&key).cloned().flatten().is_some();
            let op = match (exists, rng.below(4)) {
                (false, _) | (true, 0) => Op::Upsert(key, v, pad),
                (true, 1) => Op::Patch(key, v),
                (true, 2) => Op::Delete(key),
                (true, _) => Op::Upsert(key, v, pad),
            };
            ops.push(op);
        }
        let request = if ops.len() > 1 {
            client
                .post(format!("{base}/v1/batch"))
                .json(&json!({"ops": ops.iter().map(Op::batch_json).collect::<Vec<_>>()}))
        } else {
            let url = format!("{base}{}", key_path(ops[0].key()));
            match &ops[0] {
                Op::Upsert(k, v, pad) => client.put(url).json(&full_row(*k, v, *pad)),
                Op::Patch(_, v) => client.patch(url).json(&json!({"v": v})),
                Op::Delete(_) => client.delete(url),
            }
        };
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.text().await {
                    Ok(text) => Some((status, text)),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let Some((status, text)) = answer else {
            attempts.push(Attempt {
                ops,
                outcome: Outcome::Unanswered,
            });
            break;
        };
        if status == 503 && text.contains("shutting_down") {
            attempts.push(Attempt {
                ops,
                outcome: Outcome::Refused,
            });
            break;
        }
        assert_eq!(status, 200, "writer {w}: {ops:?} refused: {text}");
        let body: Json = serde_json::from_str(&text).unwrap();
        let seqs: Vec<(u64, String)> = if ops.len() > 1 {
            let results = body["results"].as_array().unwrap();
            assert_eq!(results.len(), ops.len(), "{body}");
            let seqs: Vec<_> = results
                .iter()
                .map(|r| {
                    (
                        r["seq"].as_u64().unwrap(),
                        r["op"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(body["first_seq"].as_u64(), Some(seqs[0].0), "{body}");
            assert_eq!(
                body["last_seq"].as_u64(),
                Some(seqs.last().unwrap().0),
                "{body}"
            );
            seqs
        } else {
            vec![(
                body["seq"].as_u64().unwrap(),
                body["op"].as_str().unwrap().to_owned(),
            )]
        };
        for op in &ops {
            local.insert(op.key(), op.after());
        }
        attempts.push(Attempt {
            ops,
            outcome: Outcome::Acked(seqs),
        });
    }
    attempts
}

/// A live subscriber: `since=0`, collects every change event it sees and
/// checks that the ids it sees are contiguous.
async fn live_subscriber(url: String, seen: Arc<Mutex<BTreeMap<u64, Json>>>) {
    let client = client();
    let Ok(response) = client.get(url).send().await else {
        return;
    };
    if response.status() != 200 {
        return;
    }
    let mut events = response.bytes_stream().eventsource();
    let mut last = 0u64;
    while let Some(Ok(event)) = events.next().await {
        if event.event == "error" {
            assert!(event.data.contains("shutting_down"), "{}", event.data);
            return;
        }
        if event.event != "message" {
            continue;
        }
        let seq: u64 = event.id.parse().unwrap();
        assert_eq!(seq, last + 1, "live stream: gap or repeat");
        last = seq;
        let data: Json = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["seq"].as_u64(), Some(seq));
        seen.lock().unwrap().insert(seq, data);
    }
}

/// What a filtered live subscriber saw: its change events and the
/// resolved watermarks, in order of arrival.
#[derive(Default)]
struct Filtered {
    events: Vec<Json>,
    /// (resolved seq, how many events had arrived before it).
    resolved: Vec<(u64, usize)>,
}

const FILTER: &str = "tables=b&ops=update,delete";

/// A live subscriber with a filter, from `since=0`.
async fn filtered_subscriber(url: String, seen: Arc<Mutex<Filtered>>) {
    let client = client();
    let Ok(response) = client.get(url).send().await else {
        return;
    };
    if response.status() != 200 {
        return;
    }
    let mut events = response.bytes_stream().eventsource();
    while let Some(Ok(event)) = events.next().await {
        let mut seen = seen.lock().unwrap();
        match event.event.as_str() {
            "error" => {
                assert!(event.data.contains("shutting_down"), "{}", event.data);
                return;
            }
            "resolved" => {
                let data: Json = serde_json::from_str(&event.data).unwrap();
                let seq = data["seq"].as_u64().unwrap();
                assert_eq!(event.id, seq.to_string(), "resolved id");
                let n = seen.events.len();
                seen.resolved.push((seq, n));
            }
            "message" => {
                let data: Json = serde_json::from_str(&event.data).unwrap();
                seen.events.push(data);
            }
            _ => {}
        }
    }
}

/// After a restart: for every writer's unanswered attempt, GET its keys and
/// decide whether it was applied; all of its ops or none.
async fn resolve_unanswered(
    client: &reqwest::Client,
    server: &Tidefeed,
    model: &mut Model,
    pending: Vec<Vec<Op>>,
) -> (usize, usize) {
    let (mut applied, mut absent) = (0, 0);
    for ops in pending {
        let before: Vec<Option<String>> = ops.iter().map(|op| model.current(op.key())).collect();
        let after: Vec<Option<String>> = ops.iter().map(Op::after).collect();
        let mut now = Vec::new();
        for op in &ops {
            now.push(get_value(client, server, op.key()).await);
        }
        if now == after {
            model.apply(&ops, None);
            applied += 1;
        } else if now == before {
            absent += 1;
        } else {
            panic!(
                "an unanswered write is partly applied: {ops:?}\nbefore {before:?}\nafter {after:?}\nnow {now:?}"
            );
        }
    }
    (applied, absent)
}

/// A write answered 503 `shutting_down` left nothing behind.
async fn check_refused(
    client: &reqwest::Client,
    server: &Tidefeed,
    model: &Model,
    refused: Vec<Vec<Op>>,
) {
    for ops in refused {
        for op in &ops {
            assert_eq!(
                get_value(client, server, op.key()).await,
                model.current(op.key()),
                "a write refused with 503 shutting_down was applied: {ops:?}"
            );
        }
    }
}

async fn get_value(client: &reqwest::Client, server: &Tidefeed, key: Key) -> Option<String> {
    let response = client.get(server.url(&key_path(key))).send().await.unwrap();
    match response.status().as_u16() {
        404 => None,
        200 => {
            let row: Json = response.json().await.unwrap();
            let pad = row["pad"].as_str().unwrap();
            assert!(pad.bytes().all(|b| b == b'x'), "{key:?}: {row}");
            Some(row["v"].as_str().unwrap().to_owned())
        }
        other => panic!("GET {key:?}: {other}: {}", response.text().await.unwrap()),
    }
}

/// One writer task per writer id, each on its own keys (their current
/// values from the model), until `stop`.
fn spawn_writers(
    client: &reqwest::Client,
    server: &Tidefeed,
    model: &Model,
    (seed, round): (u64, usize),
    stop: &Arc<AtomicBool>,
    big_every: Option<u64>,
) -> Vec<tokio::task::JoinHandle<Vec<Attempt>>> {
    (0..WRITERS)
        .map(|w| {
            let local: HashMap<Key, Option<String>> = model
                .state
                .iter()
                .filter(|(k, _)| k.1 / 100 == w)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            tokio::spawn(writer(
                client.clone(),
                server.base.clone(),
                (
                    seed.wrapping_add(round as u64 * 7919),
                    format!("s{seed}r{round}"),
                    w,
                ),
                local,
                stop.clone(),
                big_every,
            ))
        })
        .collect()
}

/// Every key's current value equals the model.
async fn check_state(client: &reqwest::Client, server: &Tidefeed, model: &Model, when: &str) {
    for w in 0..WRITERS {
        for table in ["a", "b"] {
            for i in 0..KEYS_PER_WRITER {
                let key = (table, w * 100 + i);
                assert_eq!(
                    get_value(client, server, key).await,
                    model.current(key),
                    "{when}: the value of {key:?}"
                );
            }
        }
    }
}

/// Pulls the whole feed from `since=0`.
async fn pull_all(client: &reqwest::Client, server: &Tidefeed) -> Vec<Json> {
    let mut events = Vec::new();
    let mut since = 0u64;
    loop {
        let response = client
            .get(server.url(&format!("/v1/changes?since={since}&limit=500")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let page: Json = response.json().await.unwrap();
        let changes = page["changes"].as_array().unwrap();
        if let Some(first) = changes.first() {
            assert_eq!(first["seq"].as_u64(), Some(since + 1), "a page skips");
        }
        events.extend(changes.iter().cloned());
        let next = page["next"].as_u64().unwrap();
        if changes.is_empty() {
            break;
        }
        since = next;
    }
    events
}

/// Reads the SSE stream from `since=0` up to `head`.
async fn sse_all(client: &reqwest::Client, server: &Tidefeed, head: u64) -> Vec<Json> {
    let response = client
        .get(server.url("/v1/changes/stream?since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while (events.len() as u64) < head {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("well-formed");
        assert_ne!(event.event, "error", "{}", event.data);
        if event.event == "message" {
            let data: Json = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["seq"].to_string(), event.id);
            events.push(data);
        }
    }
    events
}

/// The feed (events with seqs 1..=head) against the model.
fn check_feed(events: &[Json], model: &Model, what: &str) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{what}: seqs contiguous from 1, no repeats"
    );
    // Chains.
    let mut last: HashMap<String, Json> = HashMap::new();
    let mut per_key: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    for event in events {
        let table = event["table"].as_str().unwrap();
        let name = key_name(table, &event["key"]);
        assert_eq!(
            event["before"],
            last.get(&name).cloned().unwrap_or(Json::Null),
            "{what}: before-image chain broken at {event}"
        );
        last.insert(name.clone(), event["after"].clone());
        per_key.entry(name).or_default().push((
            event["op"].as_str().unwrap().to_owned(),
            event["after"]["v"].as_str().map(str::to_owned),
        ));
    }
    // Every key's history, in order, exactly.
    let mut expected: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    for (key, list) in &model.history {
        expected.insert(
            key_name(key.0, &key_json(*key)),
            list.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }
    for (name, want) in &expected {
        let got = per_key.get(name).cloned().unwrap_or_default();
        assert_eq!(&got, want, "{what}: the changes of {name}");
    }
    for name in per_key.keys() {
        assert!(
            expected.contains_key(name),
            "{what}: changes of unknown key {name}"
        );
    }
    // Answered seqs carry what was answered.
    for (seq, (key, kind, after)) in &model.acked {
        let event = events
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("{what}: answered seq {seq} lost"));
        assert_eq!(event["table"], json!(key.0), "{what}: {event}");
        assert_eq!(event["key"], key_json(*key), "{what}: {event}");
        assert_eq!(event["op"], json!(kind), "{what}: {event}");
        assert_eq!(
            event["after"]["v"].as_str().map(str::to_owned),
            *after,
            "{what}: {event}"
        );
    }
    for (first, last) in &model.batches {
        for seq in *first..=*last {
            let batch = &events[seq as usize - 1]["batch"];
            assert_eq!(
                batch,
                &json!({"first_seq": first, "index": seq - first, "size": last - first + 1}),
                "{what}: batch position of seq {seq}"
            );
        }
    }
}

struct Workload {
    seed: u64,
    rounds: usize,
    env: Vec<(&'static str, &'static str)>,
    /// Create a consumer at 0 before any write (holds all history).
    holder: bool,
    /// Kill after a delay in [min, min + spread) ms; every other round
    /// kills almost at once (within `quick` ms) when `quick` is set.
    min_ms: u64,
    spread_ms: u64,
    quick: Option<u64>,
    /// One in this many writes is a batch of 16 ops of 8 KB rows.
    big_every: Option<u64>,
    /// SIGTERM first, then SIGKILL within this many ms (mid-shutdown).
    term_first: Option<u64>,
}

/// Writers + live subscriber + SIGKILL at a random moment, `rounds` times;
/// after every restart the state and the unanswered writes are checked,
/// at the end the pull feed and the SSE stream.
async fn run_workload(workload: Workload) {
    let Workload {
        seed,
        rounds,
        env,
        holder,
        min_ms,
        spread_ms,
        quick,
        big_every,
        term_first,
    } = workload;
    let mut env = env;
    env.push(("TIDEFEED_FEED__RESOLVED_INTERVAL", "20ms"));
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let live_seen: Arc<Mutex<BTreeMap<u64, Json>>> = Arc::default();
    let mut pending: Vec<Vec<Op>> = Vec::new();
    let (mut applied, mut absent) = (0, 0);
    let mut refused: Vec<Vec<Op>> = Vec::new();
    let mut filtered_rounds: Vec<Filtered> = Vec::new();
    for round in 0..rounds {
        let mut server = Tidefeed::start_with_env(&data, &log, &env);
        if round == 0 {
            create_tables(&client, &server).await;
            if holder {
                let response = client
                    .put(server.url("/v1/consumers/holder"))
                    .json(&json!({"position": 0}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        }
        check_refused(&client, &server, &model, std::mem::take(&mut refused)).await;
        let (a, b) =
            resolve_unanswered(&client, &server, &mut model, std::mem::take(&mut pending)).await;
        applied += a;
        absent += b;
        check_state(
            &client,
            &server,
            &model,
            &format!("seed {seed} round {round}"),
        )
        .await;
        let live_seen_now = Arc::new(Mutex::new(BTreeMap::new()));
        let subscriber = tokio::spawn(live_subscriber(
            server.url("/v1/changes/stream?since=0"),
            live_seen_now.clone(),
        ));
        let filtered_now: Arc<Mutex<Filtered>> = Arc::default();
        let filtered_task = tokio::spawn(filtered_subscriber(
            server.url(&format!("/v1/changes/stream?since=0&{FILTER}")),
            filtered_now.clone(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = spawn_writers(&client, &server, &model, (seed, round), &stop, big_every);
        let delay = match quick {
            Some(quick) if round % 2 == 1 => rng.below(quick),
            _ => min_ms + rng.below(spread_ms),
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if let Some(grace) = term_first {
            server.signal("TERM");
            tokio::time::sleep(Duration::from_millis(rng.below(grace))).await;
        }
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for handle in writers {
            let attempts = handle.await.expect("writer task");
            for attempt in attempts {
                match attempt.outcome {
                    Outcome::Acked(seqs) => {
                        model.answered += 1;
                        if seqs.len() > 1 {
                            model.batches.push((seqs[0].0, seqs.last().unwrap().0));
                        }
                        model.apply(&attempt.ops, Some(&seqs));
                    }
                    Outcome::Unanswered => pending.push(attempt.ops),
                    Outcome::Refused => refused.push(attempt.ops),
                }
            }
        }
        // The subscriber ends when the connection does; a panic in it is a
        // failure.
        tokio::time::timeout(Duration::from_secs(10), subscriber)
            .await
            .expect("subscriber ends after the kill")
            .expect("live subscriber saw a gap or an error");
        tokio::time::timeout(Duration::from_secs(10), filtered_task)
            .await
            .expect("filtered subscriber ends after the kill")
            .expect("filtered subscriber failed");
        filtered_rounds.push(std::mem::take(&mut *filtered_now.lock().unwrap()));
        // An event seen live must be the same event after every restart:
        // keep the first sighting.
        let mut all = live_seen.lock().unwrap();
        for (seq, event) in std::mem::take(&mut *live_seen_now.lock().unwrap()) {
            all.entry(seq).or_insert(event);
        }
    }
    let server = Tidefeed::start_with_env(&data, &log, &env);
    check_refused(&client, &server, &model, refused).await;
    let (a, b) = resolve_unanswered(&client, &server, &mut model, pending).await;
    applied += a;
    absent += b;
    check_state(&client, &server, &model, &format!("seed {seed} final")).await;
    assert!(
        model.answered > 100,
        "seed {seed}: the test wrote too little ({} answered)",
        model.answered
    );
    let head = status(&client, &server).await["visible_seq"]
        .as_u64()
        .unwrap();
    let events = pull_all(&client, &server).await;
    assert_eq!(
        events.len() as u64,
        head,
        "seed {seed}: pull feed up to head"
    );
    check_feed(&events, &model, &format!("seed {seed} pull"));
    for (seq, seen) in live_seen.lock().unwrap().iter() {
        assert_eq!(
            events.get(*seq as usize - 1),
            Some(seen),
            "seed {seed}: an event a live subscriber saw before a kill changed or vanished"
        );
    }
    // A resolved watermark N promised every matching event <= N: after the
    // kill, exactly those are the matching events <= N of the feed.
    let matching: Vec<&Json> = events
        .iter()
        .filter(|e| e["table"] == "b" && (e["op"] == "update" || e["op"] == "delete"))
        .collect();
    let mut resolved_checked = 0;
    for (round, filtered) in filtered_rounds.iter().enumerate() {
        for (i, event) in filtered.events.iter().enumerate() {
            assert_eq!(
                events.get(event["seq"].as_u64().unwrap() as usize - 1),
                Some(event),
                "seed {seed} round {round}: filtered event {i} differs after the kill"
            );
        }
        for &(resolved, delivered) in &filtered.resolved {
            assert!(
                resolved <= head,
                "seed {seed} round {round}: resolved {resolved} beyond the recovered head {head}"
            );
            let want: Vec<&Json> = matching
                .iter()
                .copied()
                .filter(|e| e["seq"].as_u64().unwrap() <= resolved)
                .collect();
            let got: Vec<&Json> = filtered.events[..delivered].iter().collect();
            assert_eq!(
                got.len(),
                want.len(),
                "seed {seed} round {round}: resolved {resolved} after {delivered} filtered events"
            );
            assert_eq!(got, want, "seed {seed} round {round}: resolved {resolved}");
            resolved_checked += 1;
        }
    }
    // ETags and as_of reads agree with the feed.
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for event in &events {
        last_seq.insert(
            key_name(event["table"].as_str().unwrap(), &event["key"]),
            event["seq"].as_u64().unwrap(),
        );
    }
    let low_water = status(&client, &server).await["low_water"]
        .as_u64()
        .unwrap();
    for (key, _) in model.state.iter().filter(|(_, v)| v.is_some()) {
        let response = client
            .get(server.url(&key_path(*key)))
            .send()
            .await
            .unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let want = last_seq[&key_name(key.0, &key_json(*key))];
        assert_eq!(etag, format!("\"{want}\""), "seed {seed}: ETag of {key:?}");
    }
    let mut as_of_checked = 0;
    for (seq, (key, _, after)) in model.acked.iter().step_by(97) {
        if *seq < low_water {
            continue;
        }
        let response = client
            .get(server.url(&format!("{}?as_of={seq}", key_path(*key))))
            .send()
            .await
            .unwrap();
        let got = match response.status().as_u16() {
            404 => None,
            200 => {
                let row: Json = response.json().await.unwrap();
                row["v"].as_str().map(str::to_owned)
            }
            other => panic!("as_of={seq}: {other} {}", response.text().await.unwrap()),
        };
        assert_eq!(&got, after, "seed {seed}: {key:?} as_of={seq}");
        as_of_checked += 1;
    }
    // A snapshot after the kills: the recovered rows at the head, then a
    // resolved event at it.
    let response = client
        .get(server.url("/v1/changes/stream?snapshot=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut snapshot = response.bytes_stream().eventsource();
    let mut rows: HashMap<Key, Option<String>> = HashMap::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), snapshot.next())
            .await
            .expect("snapshot in time")
            .expect("open")
            .expect("well-formed");
        if event.event == "resolved" {
            assert_eq!(event.id, head.to_string(), "seed {seed}: snapshot seq");
            break;
        }
        assert_eq!(event.event, "message", "{}", event.data);
        let data: Json = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["op"], "read", "{data}");
        assert_eq!(data["seq"].as_u64(), Some(head), "{data}");
        let table: &'static str = if data["table"] == "a" { "a" } else { "b" };
        let id = match table {
            "a" => data["key"]["id"].as_i64().unwrap(),
            _ => data["key"]["k"].as_str().unwrap()[1..].parse().unwrap(),
        };
        let v = data["after"]["v"].as_str().map(str::to_owned);
        assert!(
            rows.insert((table, id), v).is_none(),
            "seed {seed}: a row twice: {data}"
        );
    }
    drop(snapshot);
    let live: HashMap<Key, Option<String>> = model
        .state
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(
        rows, live,
        "seed {seed}: the snapshot equals the recovered rows"
    );
    let streamed = sse_all(&client, &server, head).await;
    assert_eq!(
        streamed, events,
        "seed {seed}: the SSE stream equals the pull feed"
    );
    eprintln!(
        "seed {seed}: {} answered, {} events, unanswered applied {applied} absent {absent}, live saw {}, resolved checked {resolved_checked}, as_of checked {as_of_checked}, low-water {low_water}",
        model.answered,
        events.len(),
        live_seen.lock().unwrap().len()
    );
    assert!(
        resolved_checked > 0,
        "seed {seed}: no resolved watermark seen"
    );
}

const SLOW: Workload = Workload {
    seed: 0,
    rounds: 0,
    env: Vec::new(),
    holder: false,
    min_ms: 150,
    spread_ms: 1200,
    quick: None,
    big_every: None,
    term_first: None,
};

const SMALL: (&str, &str) = ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB");
const ASYNC: (&str, &str) = ("TIDEFEED_STORAGE__DURABILITY", "async");
const ZERO_RETENTION: (&str, &str) = ("TIDEFEED_FEED__RETENTION", "0s");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_sigkill_seed_1() {
    run_workload(Workload {
        seed: 1,
        rounds: 4,
        env: vec![SMALL],
        holder: false,
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_sigkill_seed_2() {
    run_workload(Workload {
        seed: 2,
        rounds: 4,
        env: vec![SMALL],
        holder: false,
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_sigkill_seed_3_default_memtable() {
    run_workload(Workload {
        seed: 3,
        rounds: 4,
        env: vec![],
        holder: false,
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_sigkill_seed_4() {
    run_workload(Workload {
        seed: 4,
        rounds: 4,
        env: vec![SMALL, ASYNC],
        holder: false,
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_sigkill_seed_5() {
    run_workload(Workload {
        seed: 5,
        rounds: 4,
        env: vec![SMALL, ASYNC],
        holder: false,
        ..SLOW
    })
    .await;
}

/// Zero retention, but a consumer at 0 holds everything: the full feed
/// survives flushes, compactions and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_retention_held_by_consumer_seed_6() {
    run_workload(Workload {
        seed: 6,
        rounds: 4,
        env: vec![SMALL, ZERO_RETENTION],
        holder: true,
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_retention_held_by_consumer_async_seed_7() {
    run_workload(Workload {
        seed: 7,
        rounds: 4,
        env: vec![SMALL, ZERO_RETENTION, ASYNC],
        holder: true,
        ..SLOW
    })
    .await;
}

/// What a durable consumer's reader knows across kills.
#[derive(Default)]
struct ConsumerLog {
    /// Every change delivered, by seq, first delivery kept.
    delivered: BTreeMap<u64, Json>,
    /// The highest seq of any ack sent (answered or not).
    max_attempted_ack: u64,
    /// The highest seq of an ack answered 200.
    max_answered_ack: u64,
    /// The last id received on the stream (for Last-Event-ID).
    last_id: u64,
}

/// Reads as consumer `c` from `start` + 1, acking every few events, until
/// the connection dies or `head` is reached (when `head` is set).
async fn consumer_reader(
    base: String,
    log: Arc<Mutex<ConsumerLog>>,
    start: u64,
    last_event_id: Option<u64>,
    seed: u64,
    head: Option<u64>,
) {
    let client = client();
    let mut rng = Rng(seed);
    let mut request = client.get(format!("{base}/v1/changes/stream?consumer=c"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let Ok(response) = request.send().await else {
        return;
    };
    let status = response.status();
    if status != 200 {
        let text = response.text().await.unwrap_or_default();
        panic!("consumer stream refused: {status} {text}");
    }
    let mut events = response.bytes_stream().eventsource();
    let mut expected = start + 1;
    let mut until_ack = 1 + rng.below(40);
    loop {
        if head.is_some_and(|head| expected > head) {
            return;
        }
        let next = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event in time");
        let Some(Ok(event)) = next else { return };
        assert_ne!(event.event, "error", "consumer stream: {}", event.data);
        if event.event != "message" {
            continue;
        }
        let seq: u64 = event.id.parse().unwrap();
        assert_eq!(seq, expected, "consumer stream: a gap or repeat");
        expected += 1;
        let data: Json = serde_json::from_str(&event.data).unwrap();
        {
            let mut log = log.lock().unwrap();
            log.last_id = seq;
            if let Some(earlier) = log.delivered.get(&seq) {
                assert_eq!(
                    earlier, &data,
                    "seq {seq} delivered twice with different contents"
                );
            } else {
                log.delivered.insert(seq, data);
            }
        }
        until_ack = until_ack.saturating_sub(1);
        // The final read (to `head`) does not ack: it keeps history for the
        // checks that follow.
        if until_ack == 0 && head.is_none() {
            until_ack = 1 + rng.below(40);
            {
                let mut log = log.lock().unwrap();
                log.max_attempted_ack = log.max_attempted_ack.max(seq);
            }
            let Ok(response) = client
                .post(format!("{base}/v1/consumers/c/ack"))
                .json(&json!({ "seq": seq }))
                .send()
                .await
            else {
                return;
            };
            if response.status() != 200 {
                // Only a dead connection may stop an ack.
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                panic!("ack {seq} refused: {status} {text}");
            }
            let mut log = log.lock().unwrap();
            log.max_answered_ack = log.max_answered_ack.max(seq);
        }
    }
}

async fn consumer_info(client: &reqwest::Client, server: &Tidefeed) -> Json {
    let response = client
        .get(server.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A durable consumer with zero retention and small memtables, reading
/// and acking while writers write, SIGKILLed at random moments: after each
/// restart it is valid, its position is no later than its last ack sent,
/// its stream resumes there (or after Last-Event-ID) without a gap, and
/// what it receives over all rounds is the whole feed, exactly.
async fn run_consumer_workload(seed: u64, rounds: usize, env: Vec<(&'static str, &'static str)>) {
    let dir = tempfile::tempdir().unwrap();
    let (data, log_path) = data_paths(&dir);
    let client = client();
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut pending: Vec<Vec<Op>> = Vec::new();
    let log: Arc<Mutex<ConsumerLog>> = Arc::default();
    for round in 0..rounds {
        let mut server = Tidefeed::start_with_env(&data, &log_path, &env);
        if round == 0 {
            create_tables(&client, &server).await;
            let response = client
                .put(server.url("/v1/consumers/c"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        resolve_unanswered(&client, &server, &mut model, std::mem::take(&mut pending)).await;
        check_state(
            &client,
            &server,
            &model,
            &format!("seed {seed} round {round}"),
        )
        .await;
        let info = consumer_info(&client, &server).await;
        assert_eq!(
            info["invalidated"],
            Json::Null,
            "seed {seed} round {round}: {info}"
        );
        let position = info["position"].as_u64().unwrap();
        let (attempted, answered, last_id) = {
            let log = log.lock().unwrap();
            (log.max_attempted_ack, log.max_answered_ack, log.last_id)
        };
        assert!(
            position <= attempted,
            "seed {seed} round {round}: position {position} beyond every ack sent ({attempted})"
        );
        // No Last-Event-ID, a later one (the stream goes on after it), or
        // an earlier one (the consumer's position wins).
        let (start, last_event_id) = match rng.below(3) {
            0 if last_id > position => (last_id, Some(last_id)),
            1 if position > 0 => (position, Some(position / 2)),
            _ => (position, None),
        };
        eprintln!(
            "seed {seed} round {round}: position {position}, answered ack {answered}, last id {last_id}, resume from {start}"
        );
        let reader = tokio::spawn(consumer_reader(
            server.base.clone(),
            log.clone(),
            start,
            last_event_id,
            seed ^ round as u64,
            None,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = spawn_writers(&client, &server, &model, (seed, round), &stop, None);
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1000))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for handle in writers {
            for attempt in handle.await.expect("writer task") {
                match attempt.outcome {
                    Outcome::Acked(seqs) => {
                        model.answered += 1;
                        if seqs.len() > 1 {
                            model.batches.push((seqs[0].0, seqs.last().unwrap().0));
                        }
                        model.apply(&attempt.ops, Some(&seqs));
                    }
                    Outcome::Unanswered => pending.push(attempt.ops),
                    Outcome::Refused => panic!("refused without a shutdown"),
                }
            }
        }
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("reader ends after the kill")
            .expect("consumer reader failed");
    }
    // Final: read to the head as the consumer.
    let server = Tidefeed::start_with_env(&data, &log_path, &env);
    resolve_unanswered(&client, &server, &mut model, pending).await;
    check_state(&client, &server, &model, &format!("seed {seed} final")).await;
    let info = consumer_info(&client, &server).await;
    assert_eq!(info["invalidated"], Json::Null, "{info}");
    let position = info["position"].as_u64().unwrap();
    assert!(position <= log.lock().unwrap().max_attempted_ack);
    let st = status(&client, &server).await;
    let head = st["visible_seq"].as_u64().unwrap();
    assert!(
        st["low_water"].as_u64().unwrap() <= position,
        "low-water passed a valid consumer: {st} {info}"
    );
    consumer_reader(
        server.base.clone(),
        log.clone(),
        position,
        None,
        seed,
        Some(head),
    )
    .await;
    let events: Vec<Json> = log.lock().unwrap().delivered.values().cloned().collect();
    assert_eq!(events.len() as u64, head, "seed {seed}: delivered 1..=head");
    check_feed(&events, &model, &format!("seed {seed} consumer"));
    // Reads at and above the low-water mark are exact, after compactions
    // collapsed everything below it.
    let low_water = status(&client, &server).await["low_water"]
        .as_u64()
        .unwrap();
    let mut at: HashMap<Key, Option<String>> = HashMap::new();
    let mut as_of_checked = 0;
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        let table: &'static str = if event["table"] == "a" { "a" } else { "b" };
        let id = match table {
            "a" => event["key"]["id"].as_i64().unwrap(),
            _ => event["key"]["k"].as_str().unwrap()[1..].parse().unwrap(),
        };
        let v = event["after"]["v"].as_str().map(str::to_owned);
        if v.is_some() {
            at.insert((table, id), v);
        } else {
            at.remove(&(table, id));
        }
        if seq >= low_water && (seq == low_water || seq == head || seq.is_multiple_of(37)) {
            assert_eq!(
                scan_all_as_of(&client, &server, Some(seq)).await,
                at,
                "seed {seed}: rows as_of={seq} (low-water {low_water})"
            );
            as_of_checked += 1;
        }
    }
    assert!(
        as_of_checked >= 2,
        "seed {seed}: {as_of_checked} as_of scans"
    );
    eprintln!("seed {seed}: {as_of_checked} as_of scans from low-water {low_water} to {head}");
    assert!(model.answered > 100, "seed {seed}: wrote too little");
    assert!(
        st["flushed_seq"].as_u64().unwrap() > 0,
        "seed {seed}: no flush happened: {st}"
    );
    eprintln!(
        "seed {seed}: {} answered, {head} events, position {position}, status {st}",
        model.answered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_zero_retention_sync_seed_11() {
    run_consumer_workload(11, 5, vec![SMALL, ZERO_RETENTION]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_zero_retention_sync_seed_12() {
    run_consumer_workload(12, 5, vec![SMALL, ZERO_RETENTION]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_zero_retention_async_seed_13() {
    run_consumer_workload(13, 5, vec![SMALL, ZERO_RETENTION, ASYNC]).await;
}

const SMALL_WAL: (&str, &str) = ("TIDEFEED_STORAGE__WAL_SEGMENT_SIZE", "64KiB");
const LAZY_SYNC: (&str, &str) = ("TIDEFEED_STORAGE__ASYNC_SYNC_INTERVAL", "1m");

/// Small WAL segments and memtables: segment rollover, flushes and WAL
/// deletion under kills, half of them right after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_small_wal_segments_quick_kills_seed_21() {
    run_workload(Workload {
        seed: 21,
        rounds: 8,
        env: vec![SMALL, SMALL_WAL],
        quick: Some(40),
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_small_wal_segments_quick_kills_seed_22() {
    run_workload(Workload {
        seed: 22,
        rounds: 8,
        env: vec![SMALL, SMALL_WAL, ZERO_RETENTION],
        holder: true,
        quick: Some(40),
        ..SLOW
    })
    .await;
}

/// Async with an fdatasync only every minute: everything answered sits in
/// the page cache only, and a process kill must lose none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_lazy_sync_small_wal_seed_23() {
    run_workload(Workload {
        seed: 23,
        rounds: 6,
        env: vec![SMALL, SMALL_WAL, ASYNC, LAZY_SYNC],
        quick: Some(40),
        ..SLOW
    })
    .await;
}

/// A `history_lost` answer: 410 with the code, `requested` and `low_water`.
fn assert_history_lost(
    status: reqwest::StatusCode,
    body: &Json,
    requested: u64,
    what: &str,
) -> u64 {
    assert_eq!(status, 410, "{what}: {body}");
    assert_eq!(body["error"]["code"], "history_lost", "{what}: {body}");
    assert_eq!(
        body["error"]["requested"].as_u64(),
        Some(requested),
        "{what}: {body}"
    );
    let low_water = body["error"]["low_water"].as_u64().unwrap();
    assert!(low_water > requested, "{what}: {body}");
    low_water
}

/// Follows the pull feed from 0 with zero retention while writers run:
/// every page starts right after `since`, or is 410 `history_lost` naming
/// a later low-water mark; never a page that starts later.
async fn pull_follower(base: String, lost: Arc<Mutex<u64>>) {
    let client = client();
    let mut since = 0u64;
    loop {
        let Ok(response) = client
            .get(format!("{base}/v1/changes?since={since}&limit=100"))
            .send()
            .await
        else {
            return;
        };
        let status = response.status();
        let Ok(text) = response.text().await else {
            return;
        };
        let body: Json = serde_json::from_str(&text).unwrap();
        if status == 410 {
            since = assert_history_lost(status, &body, since, "pull follower");
            *lost.lock().unwrap() += 1;
            continue;
        }
        assert_eq!(status, 200, "{body}");
        let changes = body["changes"].as_array().unwrap();
        let next = body["next"].as_u64().unwrap();
        for (i, change) in changes.iter().enumerate() {
            assert_eq!(
                change["seq"].as_u64(),
                Some(since + 1 + i as u64),
                "pull follower: a page skipped from since={since}"
            );
        }
        assert_eq!(
            next,
            since + changes.len() as u64,
            "pull follower: next skips: {text}"
        );
        since = next;
        if changes.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Opens streams at or below the low-water mark while writers run: a 410
/// before any event, or a first event right after `since` (or an error
/// event), never a stream that starts later.
async fn stream_prober(base: String, lost: Arc<Mutex<u64>>) {
    let client = client();
    loop {
        let Ok(response) = client.get(format!("{base}/v1/status")).send().await else {
            return;
        };
        let Ok(st) = response.json::<Json>().await else {
            return;
        };
        let low_water = st["low_water"].as_u64().unwrap();
        for since in [0, low_water.saturating_sub(1), low_water] {
            let Ok(response) = client
                .get(format!("{base}/v1/changes/stream?since={since}"))
                .send()
                .await
            else {
                return;
            };
            let status = response.status();
            if status != 200 {
                let Ok(text) = response.text().await else {
                    return;
                };
                let body: Json = serde_json::from_str(&text).unwrap();
                assert_history_lost(status, &body, since, "stream prober");
                *lost.lock().unwrap() += 1;
                continue;
            }
            assert!(
                since >= low_water || since == 0 && low_water == 0,
                "a stream below low-water {low_water} opened at {since}"
            );
            let mut events = response.bytes_stream().eventsource();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
                let Ok(Some(Ok(event))) = next else { break };
                if event.event == "error" {
                    break;
                }
                if event.event == "message" {
                    assert_eq!(
                        event.id,
                        (since + 1).to_string(),
                        "stream prober: a stream from since={since} started later"
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Zero retention, no consumer, small memtables: the low-water mark moves
/// with the flushes, and reads below it are 410 `history_lost` (pull,
/// stream, consumer creation, `as_of` reads), before and after SIGKILLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn below_low_water_is_history_lost_across_kills() {
    let seed = 31;
    let env = vec![
        SMALL,
        ZERO_RETENTION,
        ("TIDEFEED_FEED__RESOLVED_INTERVAL", "50ms"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut pending: Vec<Vec<Op>> = Vec::new();
    let lost: Arc<Mutex<u64>> = Arc::default();
    let mut restart_checks = 0;
    for round in 0..5 {
        let mut server = Tidefeed::start_with_env(&data, &log, &env);
        if round == 0 {
            create_tables(&client, &server).await;
        }
        resolve_unanswered(&client, &server, &mut model, std::mem::take(&mut pending)).await;
        check_state(&client, &server, &model, &format!("round {round}")).await;
        let st = status(&client, &server).await;
        let low_water = st["low_water"].as_u64().unwrap();
        if low_water > 1 {
            restart_checks += 1;
            let response = client
                .get(server.url("/v1/changes?since=0"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert_history_lost(
                status,
                &response.json().await.unwrap(),
                0,
                "pull after restart",
            );
            let response = client
                .put(server.url(&format!("/v1/consumers/late{round}")))
                .json(&json!({"position": 0}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert_history_lost(
                status,
                &response.json().await.unwrap(),
                0,
                "consumer below low-water",
            );
            // An as_of read below low-water of a row that existed then.
            let (seq, (key, _, _)) = model
                .acked
                .iter()
                .find(|(seq, (_, _, after))| **seq < low_water && after.is_some())
                .expect("an answered upsert below low-water");
            let response = client
                .get(server.url(&format!("{}?as_of={seq}", key_path(*key))))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Json = response.json().await.unwrap();
            assert_eq!(
                status, 410,
                "as_of={seq} below low-water {low_water}: {body}"
            );
            assert_eq!(body["error"]["code"], "history_lost", "{body}");
            // At the low-water mark itself: readable, starting right after.
            let response = client
                .get(server.url(&format!("/v1/changes?since={low_water}&limit=5")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let page: Json = response.json().await.unwrap();
            if let Some(first) = page["changes"].as_array().unwrap().first() {
                assert_eq!(first["seq"].as_u64(), Some(low_water + 1), "{page}");
            }
        }
        let follower = tokio::spawn(pull_follower(server.base.clone(), lost.clone()));
        let prober = tokio::spawn(stream_prober(server.base.clone(), lost.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = spawn_writers(&client, &server, &model, (seed, round), &stop, None);
        tokio::time::sleep(Duration::from_millis(400 + rng.below(800))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for handle in writers {
            for attempt in handle.await.expect("writer task") {
                match attempt.outcome {
                    Outcome::Acked(seqs) => {
                        model.answered += 1;
                        model.apply(&attempt.ops, Some(&seqs));
                    }
                    Outcome::Unanswered => pending.push(attempt.ops),
                    Outcome::Refused => panic!("refused without a shutdown"),
                }
            }
        }
        for task in [follower, prober] {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("pollers end after the kill")
                .expect("a poller found a silent skip");
        }
    }
    let lost = *lost.lock().unwrap();
    eprintln!("410s seen while running: {lost}, restart checks: {restart_checks}");
    assert!(lost > 0, "the low-water mark never moved past a reader");
    assert!(
        restart_checks > 0,
        "the low-water mark was never above 1 after a restart"
    );
}

/// Batches of 16 rows of 8 KB (well over a 64 KiB WAL segment and
/// memtable) mixed with small writes, killed at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_batches_over_segment_and_memtable_seed_41() {
    run_workload(Workload {
        seed: 41,
        rounds: 5,
        env: vec![SMALL, SMALL_WAL],
        big_every: Some(8),
        quick: Some(40),
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_batches_async_seed_42() {
    run_workload(Workload {
        seed: 42,
        rounds: 5,
        env: vec![SMALL, SMALL_WAL, ASYNC, LAZY_SYNC],
        big_every: Some(8),
        ..SLOW
    })
    .await;
}

/// SIGTERM under load, then SIGKILL in the middle of the graceful
/// shutdown (while it syncs, flushes, writes metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_graceful_shutdown_seed_43() {
    run_workload(Workload {
        seed: 43,
        rounds: 6,
        env: vec![SMALL, SMALL_WAL],
        big_every: Some(20),
        term_first: Some(60),
        ..SLOW
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_graceful_shutdown_async_seed_44() {
    run_workload(Workload {
        seed: 44,
        rounds: 6,
        env: vec![SMALL, ASYNC, ZERO_RETENTION],
        holder: true,
        big_every: Some(20),
        term_first: Some(60),
        ..SLOW
    })
    .await;
}

async fn put_row(client: &reqwest::Client, server: &Tidefeed, id: i64, pad: usize) -> u64 {
    let response = client
        .put(server.url(&format!("/v1/tables/a/rows/{id}")))
        .json(&full_row(("a", id), &format!("v{id}"), pad))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Json>().await.unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// Tables and consumers created just before a SIGKILL are there after it:
/// a consumer answered 201 holds history from its position even though
/// the process died right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_tables_and_consumers_survive_an_immediate_sigkill() {
    let env = [SMALL, ZERO_RETENTION];
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut server = Tidefeed::start_with_env(&data, &log, &env);
    create_tables(&client, &server).await;
    server.kill();
    let mut server = Tidefeed::start_with_env(&data, &log, &env);
    let tables: Json = client
        .get(server.url("/v1/tables"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tables["tables"].as_array().unwrap().len(), 2, "{tables}");
    let mut last = 0;
    for id in 0..20 {
        last = put_row(&client, &server, id, 100).await;
    }
    let response = client
        .put(server.url("/v1/consumers/c"))
        .json(&json!({"position": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    server.kill();
    let mut server = Tidefeed::start_with_env(&data, &log, &env);
    let info = consumer_info(&client, &server).await;
    assert_eq!(info["position"].as_u64(), Some(10), "{info}");
    // Plenty of writes and flushes; the consumer holds seq 11 onwards.
    for id in 0..400 {
        put_row(&client, &server, id % 50, 1000).await;
    }
    let st = status(&client, &server).await;
    assert!(st["flushed_seq"].as_u64().unwrap() > last, "{st}");
    assert!(st["low_water"].as_u64().unwrap() <= 10, "{st}");
    // A consumer created at the head right before the kill.
    let response = client
        .put(server.url("/v1/consumers/d"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let d: Json = response.json().await.unwrap();
    server.kill();
    let server = Tidefeed::start_with_env(&data, &log, &env);
    let response = client
        .get(server.url("/v1/consumers/d"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "consumer d lost after SIGKILL");
    let d_now: Json = response.json().await.unwrap();
    assert_eq!(d_now["position"], d["position"]);
    let response = client
        .get(server.url("/v1/changes?since=10&limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Json = response.json().await.unwrap();
    assert_eq!(page["changes"][0]["seq"].as_u64(), Some(11), "{page}");
}

/// A consumer that holds more than `max_retention_bytes` is invalidated;
/// after a SIGKILL it stays invalidated (or, if it came back valid, its
/// history is all there): never a valid consumer whose stream skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidated_consumer_stays_invalidated_after_sigkill() {
    let env = [
        SMALL,
        ZERO_RETENTION,
        ("TIDEFEED_FEED__MAX_RETENTION_BYTES", "64KiB"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut server = Tidefeed::start_with_env(&data, &log, &env);
    create_tables(&client, &server).await;
    let response = client
        .put(server.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // A stream as the consumer, not read yet.
    let held = client
        .get(server.url("/v1/changes/stream?consumer=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let mut invalidated = Json::Null;
    for round in 0..100 {
        for id in 0..20 {
            put_row(&client, &server, round * 20 + id, 2000).await;
        }
        let info = consumer_info(&client, &server).await;
        if !info["invalidated"].is_null() {
            invalidated = info;
            break;
        }
    }
    assert!(!invalidated.is_null(), "never invalidated");
    assert_eq!(
        invalidated["invalidated"]["kind"], "retention_cap",
        "{invalidated}"
    );
    // The held stream: contiguous from 1, and if it ends, with an error.
    let head = status(&client, &server).await["visible_seq"]
        .as_u64()
        .unwrap();
    let mut events = held.bytes_stream().eventsource();
    let mut expected = 1;
    let mut ended_with_error = false;
    while expected <= head {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time");
        let Some(Ok(event)) = next else { break };
        match event.event.as_str() {
            "message" => {
                assert_eq!(event.id, expected.to_string(), "the held stream skipped");
                expected += 1;
            }
            "error" => {
                ended_with_error = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        expected > head || ended_with_error,
        "the held stream ended at {expected} of {head} without an error event"
    );
    eprintln!("invalidated: {invalidated}; held stream read to {expected} of {head}, error: {ended_with_error}");
    drop(events);
    server.kill();
    let server = Tidefeed::start_with_env(&data, &log, &env);
    let info = consumer_info(&client, &server).await;
    let st = status(&client, &server).await;
    eprintln!("after restart: {info} {st}");
    if info["invalidated"].is_null() {
        let position = info["position"].as_u64().unwrap();
        assert!(
            st["low_water"].as_u64().unwrap() <= position,
            "a valid consumer after restart whose history is gone: {info} {st}"
        );
    } else {
        let response = client
            .get(server.url("/v1/changes/stream?consumer=c"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Json = response.json().await.unwrap();
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["error"]["code"], "consumer_invalidated", "{body}");
        let response = client
            .post(server.url("/v1/consumers/c/ack"))
            .json(&json!({"seq": 1}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Json = response.json().await.unwrap();
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["error"]["code"], "consumer_invalidated", "{body}");
    }
}

/// A stream reading as a consumer ends with an error event when the
/// consumer is deleted, even if one is created again under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_of_a_deleted_and_recreated_consumer_ends_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let server = Tidefeed::start_with_env(&data, &log, &[]);
    create_tables(&client, &server).await;
    let response = client
        .put(server.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .get(server.url("/v1/changes/stream?consumer=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.bytes_stream().eventsource();
    put_row(&client, &server, 1, 10).await;
    let response = client
        .delete(server.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = client
        .put(server.url("/v1/consumers/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    put_row(&client, &server, 2, 10).await;
    let mut seqs = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the stream ends in time");
        let Some(Ok(event)) = next else {
            panic!("the stream ended without an error event after {seqs:?}");
        };
        match event.event.as_str() {
            "message" => seqs.push(event.id),
            "error" => break,
            _ => {}
        }
    }
    assert!(seqs.len() <= 2, "{seqs:?}");
}

/// Zero retention and no consumer: a stream opened at 0 that is not read
/// while history is flushed and collapsed either delivers every event from
/// 1 on or ends with an error event; never a silent jump.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_stream_under_zero_retention_never_jumps() {
    let env = [SMALL, ZERO_RETENTION];
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let server = Tidefeed::start_with_env(&data, &log, &env);
    create_tables(&client, &server).await;
    put_row(&client, &server, 0, 10).await;
    let mut streams = Vec::new();
    for query in ["since=0", "since=0&tables=a", "since=1&ops=update"] {
        let response = client
            .get(server.url(&format!("/v1/changes/stream?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        streams.push((query, response.bytes_stream().eventsource()));
    }
    for i in 0..600 {
        put_row(&client, &server, i % 60, 2000).await;
    }
    let st = status(&client, &server).await;
    let head = st["visible_seq"].as_u64().unwrap();
    assert!(st["low_water"].as_u64().unwrap() > 100, "{st}");
    for (query, mut events) in streams {
        let mut previous = if query.starts_with("since=1") { 1 } else { 0 };
        let mut outcome = "head";
        while previous < head {
            let next = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("an event in time");
            let Some(Ok(event)) = next else {
                outcome = "ended";
                break;
            };
            match event.event.as_str() {
                "message" => {
                    let seq: u64 = event.id.parse().unwrap();
                    let data: Json = serde_json::from_str(&event.data).unwrap();
                    // Unfiltered seqs are contiguous; for filtered ones, the
                    // skipped seqs must be ones the filter excludes.
                    // Updates: seq 2 (row 0 again), then 62 onwards.
                    let expected = match (query, previous) {
                        ("since=1&ops=update", 0..=1) => 2,
                        ("since=1&ops=update", 2..=61) => 62,
                        _ => previous + 1,
                    };
                    assert_eq!(
                        seq, expected,
                        "{query}: jumped from {previous}: {} {}",
                        data["op"], data["key"]
                    );
                    previous = seq;
                }
                "resolved" => {
                    let seq: u64 = event.id.parse().unwrap();
                    previous = previous.max(seq);
                }
                "error" => {
                    outcome = "error";
                    break;
                }
                _ => {}
            }
        }
        eprintln!("{query}: {outcome} at {previous} of {head}");
        assert_ne!(
            outcome, "ended",
            "{query}: ended without an error event at {previous}"
        );
    }
}

/// Every live row, by a full range scan of both tables.
async fn scan_all(client: &reqwest::Client, server: &Tidefeed) -> HashMap<Key, Option<String>> {
    scan_all_as_of(client, server, None).await
}

/// [`scan_all`] at `as_of`.
async fn scan_all_as_of(
    client: &reqwest::Client,
    server: &Tidefeed,
    as_of: Option<u64>,
) -> HashMap<Key, Option<String>> {
    let mut rows = HashMap::new();
    for table in ["a", "b"] {
        let mut next: Option<String> = None;
        loop {
            let mut request = client
                .get(server.url(&format!("/v1/tables/{table}/rows")))
                .query(&[("limit", "1000")]);
            if let Some(as_of) = as_of {
                request = request.query(&[("as_of", as_of.to_string())]);
            }
            if let Some(next) = &next {
                request = request.query(&[("next", next)]);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "scan as_of {as_of:?}");
            let page: Json = response.json().await.unwrap();
            for row in page["rows"].as_array().unwrap() {
                let id = match table {
                    "a" => row["id"].as_i64().unwrap(),
                    _ => row["k"].as_str().unwrap()[1..].parse().unwrap(),
                };
                let v = row["v"].as_str().map(str::to_owned);
                let name: &'static str = if table == "a" { "a" } else { "b" };
                assert!(
                    rows.insert((name, id), v).is_none(),
                    "a row twice in a scan: {row}"
                );
            }
            match page["next"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => break,
            }
        }
    }
    rows
}

/// ~25 MB of WAL written with the default 64 MiB memtable (no flush), then
/// recovered with 64 KiB memtables (recovery must flush many times) and
/// SIGKILLed again and again in the middle of that recovery, before the
/// server is even ready: at the end the feed is the history, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_recovery_with_a_smaller_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut rng = Rng(51);
    let mut model = Model::default();
    let mut server = Tidefeed::start_with_env(&data, &log, &[]);
    create_tables(&client, &server).await;
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let client = client.clone();
        let base = server.base.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(w + 510);
            let mut done = Vec::new();
            for b in 0..60 {
                let ops: Vec<Op> = (0..50)
                    .map(|i| {
                        let table = if i % 2 == 0 { "a" } else { "b" };
                        let id = (w * 1000 + rng.below(400)) as i64;
                        ((table, id), format!("w{w}b{b}i{i}"))
                    })
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .map(|((table, id), v)| {
                        let table: &'static str = if table == "a" { "a" } else { "b" };
                        Op::Upsert((table, id), v, 4000)
                    })
                    .collect();
                let response = client
                    .post(format!("{base}/v1/batch"))
                    .json(&json!({"ops": ops.iter().map(Op::batch_json).collect::<Vec<_>>()}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let body: Json = response.json().await.unwrap();
                let seqs: Vec<(u64, String)> = body["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["seq"].as_u64().unwrap(),
                            r["op"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                done.push((ops, seqs));
            }
            done
        }));
    }
    let mut all = Vec::new();
    for handle in writers {
        all.extend(handle.await.unwrap());
    }
    // Apply in seq order: writers' keys are disjoint, so any order of whole
    // batches by seq is the commit order.
    all.sort_by_key(|(_, seqs)| seqs[0].0);
    for (ops, seqs) in &all {
        model.answered += 1;
        model.batches.push((seqs[0].0, seqs.last().unwrap().0));
        model.apply(ops, Some(seqs));
    }
    let st = status(&client, &server).await;
    assert_eq!(st["flushed_seq"].as_u64(), Some(0), "{st}");
    server.kill();
    // Kill the recovery at random moments, ready or not.
    let mut ready_count = 0;
    for attempt in 0..8 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidefeed"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("TIDEFEED_LOG")
            .env(SMALL.0, SMALL.1)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join(format!("recovery{attempt}.log"))).unwrap(),
            )
            .spawn()
            .unwrap();
        // Even attempts: mid-replay; odd ones: around the flushes of the
        // replayed memtable once ready.
        let delay = if attempt % 2 == 0 {
            5 + rng.below(120)
        } else {
            100 + rng.below(700)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if child.try_wait().unwrap().is_some() {
            let text = std::fs::read_to_string(dir.path().join(format!("recovery{attempt}.log")))
                .unwrap_or_default();
            panic!("recovery attempt {attempt} exited by itself: {text}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let text = std::fs::read_to_string(dir.path().join(format!("recovery{attempt}.log")))
            .unwrap_or_default();
        if text.contains("ready") || text.contains("listening") {
            ready_count += 1;
        }
    }
    let server = Tidefeed::start_with_env(&data, &log, &[SMALL]);
    let st = status(&client, &server).await;
    eprintln!("after the interrupted recoveries ({ready_count} got ready): {st}");
    let head = st["visible_seq"].as_u64().unwrap();
    let events = pull_all(&client, &server).await;
    assert_eq!(events.len() as u64, head);
    check_feed(&events, &model, "after interrupted recoveries");
    let live: HashMap<Key, Option<String>> = model
        .state
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(scan_all(&client, &server).await, live, "the scanned rows");
}

/// What happened to one write on a hot key.
#[derive(Debug)]
enum HotWrite {
    /// Answered: seq, op kind answered, table, id, value (None: delete).
    Acked(u64, String, &'static str, i64, Option<String>),
    /// Answered 404: the value must never appear.
    NotFound(String),
    /// No answer: all values of the request appear, or none.
    Unanswered(Vec<String>),
}

/// Writers that fight over a handful of hot keys (so before-images are
/// resolved inside commit groups), SIGKILLed at random: the feed chains,
/// every answered seq carries its write and its answered op kind, a 404
/// patch left nothing, an unanswered batch is all there or not at all, and
/// the recovered rows are the last afters of the feed.
async fn run_hot_keys(seed: u64, env: Vec<(&'static str, &'static str)>) {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut rng = Rng(seed);
    let mut writes: Vec<HotWrite> = Vec::new();
    for round in 0..5 {
        let mut server = Tidefeed::start_with_env(&data, &log, &env);
        if round == 0 {
            create_tables(&client, &server).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let client = client.clone();
            let base = server.base.clone();
            let stop = stop.clone();
            let mut rng = Rng(seed * 1000 + round * 10 + w);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let table: &'static str = if rng.below(2) == 0 { "a" } else { "b" };
                    let id = rng.below(4) as i64;
                    let key = (table, id);
                    let v = format!("s{seed}r{round}w{w}i{i}");
                    let choice = rng.below(10);
                    let (request, values, op): (_, Vec<String>, Option<Op>) = match choice {
                        0..=3 => (
                            client
                                .put(format!("{base}{}", key_path(key)))
                                .json(&full_row(key, &v, PAD)),
                            vec![v.clone()],
                            Some(Op::Upsert(key, v.clone(), PAD)),
                        ),
                        4..=5 => (
                            client
                                .patch(format!("{base}{}", key_path(key)))
                                .json(&json!({"v": v})),
                            vec![v.clone()],
                            Some(Op::Patch(key, v.clone())),
                        ),
                        6 => (
                            client.delete(format!("{base}{}", key_path(key))),
                            vec![],
                            Some(Op::Delete(key)),
                        ),
                        _ => {
                            // A batch of upserts over both tables' hot keys.
                            let ops: Vec<Op> = (0..3)
                                .map(|j| {
                                    let table: &'static str = if j % 2 == 0 { "a" } else { "b" };
                                    Op::Upsert((table, (id + j) % 4 + 10 * j), format!("{v}o{j}"), PAD)
                                })
                                .collect();
                            let values = ops.iter().filter_map(Op::after).collect();
                            (
                                client.post(format!("{base}/v1/batch")).json(
                                    &json!({"ops": ops.iter().map(Op::batch_json).collect::<Vec<_>>()}),
                                ),
                                values,
                                None,
                            )
                        }
                    };
                    let answer = match request.send().await {
                        Ok(response) => {
                            let status = response.status();
                            response.text().await.ok().map(|text| (status, text))
                        }
                        Err(_) => None,
                    };
                    let Some((status, text)) = answer else {
                        out.push(HotWrite::Unanswered(values));
                        break;
                    };
                    let body: Json = serde_json::from_str(&text).unwrap();
                    if status == 404 {
                        assert_eq!(body["error"]["code"], "row_not_found", "{body}");
                        if let Some(v) = values.first() {
                            out.push(HotWrite::NotFound(v.clone()));
                        }
                        continue;
                    }
                    assert_eq!(status, 200, "{body}");
                    match op {
                        Some(op) => out.push(HotWrite::Acked(
                            body["seq"].as_u64().unwrap(),
                            body["op"].as_str().unwrap().to_owned(),
                            op.key().0,
                            op.key().1,
                            op.after(),
                        )),
                        None => {
                            for (j, r) in body["results"].as_array().unwrap().iter().enumerate() {
                                let j = j as i64;
                                let table: &'static str = if j % 2 == 0 { "a" } else { "b" };
                                out.push(HotWrite::Acked(
                                    r["seq"].as_u64().unwrap(),
                                    r["op"].as_str().unwrap().to_owned(),
                                    table,
                                    (id + j) % 4 + 10 * j,
                                    Some(values[j as usize].clone()),
                                ));
                            }
                        }
                    }
                }
                out
            }));
        }
        tokio::time::sleep(Duration::from_millis(200 + rng.below(900))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            writes.extend(task.await.expect("hot writer"));
        }
    }
    let server = Tidefeed::start_with_env(&data, &log, &env);
    let head = status(&client, &server).await["visible_seq"]
        .as_u64()
        .unwrap();
    let events = pull_all(&client, &server).await;
    assert_eq!(events.len() as u64, head);
    // Contiguity, chains, op kinds from the images.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "seed {seed}: contiguous"
    );
    let mut last: HashMap<String, Json> = HashMap::new();
    let mut values: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let name = key_name(event["table"].as_str().unwrap(), &event["key"]);
        let before = last.get(&name).cloned().unwrap_or(Json::Null);
        assert_eq!(
            event["before"], before,
            "seed {seed}: chain at seq {}",
            event["seq"]
        );
        let expected_op = match (before.is_null(), event["after"].is_null()) {
            (true, false) => "insert",
            (false, false) => "update",
            (false, true) => "delete",
            (true, true) => panic!("seed {seed}: a delete of nothing: {event}"),
        };
        assert_eq!(event["op"], expected_op, "seed {seed}: {event}");
        last.insert(name, event["after"].clone());
        // Every upsert and patch writes a value of its own.
        if let Some(v) = event["after"]["v"].as_str() {
            assert!(
                values
                    .insert(v.to_owned(), event["seq"].as_u64().unwrap())
                    .is_none(),
                "seed {seed}: value {v} written twice"
            );
        }
    }
    let (mut acked, mut unanswered_applied, mut unanswered_absent) = (0, 0, 0);
    for write in &writes {
        match write {
            HotWrite::Acked(seq, kind, table, id, after) => {
                acked += 1;
                let event = &events[*seq as usize - 1];
                assert_eq!(
                    event["table"],
                    json!(table),
                    "seed {seed}: seq {seq}: {event}"
                );
                assert_eq!(
                    event["key"],
                    key_json((table, *id)),
                    "seed {seed}: seq {seq}"
                );
                assert_eq!(&event["op"], kind, "seed {seed}: answered op of seq {seq}");
                assert_eq!(
                    event["after"]["v"].as_str().map(str::to_owned),
                    *after,
                    "seed {seed}: seq {seq}"
                );
            }
            HotWrite::NotFound(v) => {
                assert!(
                    !values.contains_key(v),
                    "seed {seed}: a 404 write {v} is in the feed"
                );
            }
            HotWrite::Unanswered(vs) if !vs.is_empty() => {
                let present = vs.iter().filter(|v| values.contains_key(*v)).count();
                assert!(
                    present == 0 || present == vs.len(),
                    "seed {seed}: an unanswered write is partly there: {vs:?}"
                );
                if present == 0 {
                    unanswered_absent += 1;
                } else {
                    unanswered_applied += 1;
                }
            }
            HotWrite::Unanswered(_) => {}
        }
    }
    // The recovered rows are the last afters.
    for (name, after) in &last {
        let (table, key) = name.split_once('/').unwrap();
        let key: Json = serde_json::from_str(key).unwrap();
        let path = match table {
            "a" => format!("/v1/tables/a/rows/{}", key["id"]),
            _ => format!("/v1/tables/b/rows/{}", key["k"].as_str().unwrap()),
        };
        let response = client.get(server.url(&path)).send().await.unwrap();
        if after.is_null() {
            assert_eq!(response.status(), 404, "seed {seed}: {name}");
        } else {
            assert_eq!(response.status(), 200, "seed {seed}: {name}");
            let row: Json = response.json().await.unwrap();
            assert_eq!(&row, after, "seed {seed}: {name}");
        }
    }
    eprintln!(
        "seed {seed}: {acked} answered, {head} events, unanswered applied {unanswered_applied} absent {unanswered_absent}"
    );
    assert!(acked > 100, "seed {seed}: too few writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_keys_sync_seed_61() {
    run_hot_keys(61, vec![SMALL]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_keys_async_seed_62() {
    run_hot_keys(62, vec![SMALL, ASYNC]).await;
}

/// Pull pages in both encodings are the same bytes before and after a
/// SIGKILL (and a switch from async to sync durability), and ETags taken
/// before the kill still drive `If-Match` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_and_etags_are_the_same_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = data_paths(&dir);
    let client = client();
    let mut server = Tidefeed::start_with_env(&data, &log, &[SMALL, ASYNC]);
    create_tables(&client, &server).await;
    for i in 0..300 {
        put_row(&client, &server, i % 40, 1500).await;
    }
    for id in 0..5 {
        let response = client
            .delete(server.url(&format!("/v1/tables/a/rows/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    async fn pages(client: &reqwest::Client, server: &Tidefeed) -> Vec<String> {
        let mut out = Vec::new();
        for format in ["native", "debezium"] {
            for since in [0, 57, 250] {
                let response = client
                    .get(server.url(&format!(
                        "/v1/changes?since={since}&limit=60&format={format}"
                    )))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let mut page: Json = response.json().await.unwrap();
                // `resolved` is the head, which a restart may not keep.
                page["resolved"] = Json::Null;
                out.push(page.to_string());
            }
        }
        out
    }
    let before = pages(&client, &server).await;
    let mut etags = Vec::new();
    for id in 5..10 {
        let response = client
            .get(server.url(&format!("/v1/tables/a/rows/{id}")))
            .send()
            .await
            .unwrap();
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    server.kill();
    let server = Tidefeed::start_with_env(&data, &log, &[SMALL]);
    let after = pages(&client, &server).await;
    assert_eq!(before, after, "pages changed across the kill");
    for (i, etag) in etags.iter().enumerate() {
        let id = 5 + i as i64;
        let response = client
            .put(server.url(&format!("/v1/tables/a/rows/{id}")))
            .header("If-Match", etag)
            .json(&full_row(("a", id), "matched", 10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "If-Match {etag} after restart");
        let response = client
            .put(server.url(&format!("/v1/tables/a/rows/{id}")))
            .header("If-Match", etag)
            .json(&full_row(("a", id), "stale", 10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 412, "a stale If-Match {etag}");
    }
}
