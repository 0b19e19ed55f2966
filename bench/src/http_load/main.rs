//! Load tool for the tidefeed HTTP service, side by side with Redis 7
//! (and, for single-row writes, a bare axum server that stores nothing),
//! all driven by this one client with the same concurrency.
//!
//! ```text
//! bench/run-http.sh                  # starts the servers, then runs this
//! http-load --tidefeed ADDR --tidefeed-pid PID --redis ADDR --redis-pid PID \
//!           [--bare ADDR --bare-pid PID] [--seconds 3] [--repeats 3] ...
//! ```
//!
//! Figures (each repeated, interleaving the systems, median [min-max]):
//!
//! - server memory per idle change stream (SSE / `XREAD BLOCK`), measured
//!   first, on fresh server processes: RSS before and after opening N;
//! - durable single-row writes per second (`PUT /v1/tables/t/rows/{id}` /
//!   `XADD`) at 1, 16 and 64 connections, with server CPU per request;
//! - rows per second through `/v1/batch` in 100-row batches (Redis: 100
//!   `XADD`s in one `MULTI`/`EXEC`);
//! - write-ack to delivery latency at fixed write rates with 10
//!   subscribers (SSE / `XREAD BLOCK`), matched by seq (entry id) on this
//!   process's monotonic clock;
//! - events delivered per second in total to 1,000 subscribers.
//!
//! Prints; asserts nothing.

mod http;
mod resp;
mod stats;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{json_request, seq_of, Delivery, HttpConn, SseStream};
use resp::RedisConn;
use stats::{quantile, Spread};

/// ~80 bytes, so that a row is about 110 bytes of JSON.
const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01234567";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tidefeed,
    Redis,
    Bare,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tidefeed => "tidefeed",
            Kind::Redis => "redis",
            Kind::Bare => "bare-axum",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Target {
    kind: Kind,
    addr: SocketAddr,
    pid: u32,
}

struct Args {
    tidefeed: Target,
    redis: Target,
    bare: Option<Target>,
    seconds: f64,
    warmup: f64,
    repeats: usize,
    only: Vec<String>,
    put_conns: Vec<usize>,
    batch_conns: Vec<usize>,
    batch_rows: usize,
    latency_rates: Vec<u64>,
    latency_subscribers: usize,
    latency_writers: usize,
    fanout_subscribers: usize,
    fanout_events: u64,
    idle: usize,
    systems: Vec<String>,
    client_threads: usize,
}

impl Args {
    /// Whether `--systems` includes `kind`.
    fn uses(&self, kind: Kind) -> bool {
        self.systems.iter().any(|s| s == kind.name())
    }
}

fn list<T: std::str::FromStr>(flag: &str, value: &str) -> Vec<T> {
    value
        .split(',')
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{flag}: bad value {v:?}")))
        .collect()
}

fn args() -> Args {
    let mut tidefeed = (None, None);
    let mut redis = (None, None);
    let mut bare = (None, None);
    let mut args = Args {
        tidefeed: Target {
            kind: Kind::Tidefeed,
            addr: "127.0.0.1:7070".parse().unwrap(),
            pid: 0,
        },
        redis: Target {
            kind: Kind::Redis,
            addr: "127.0.0.1:6379".parse().unwrap(),
            pid: 0,
        },
        bare: None,
        seconds: 3.0,
        warmup: 1.0,
        repeats: 3,
        only: Vec::new(),
        put_conns: vec![1, 16, 64],
        batch_conns: vec![1, 16],
        batch_rows: 100,
        latency_rates: vec![1_000, 10_000],
        latency_subscribers: 10,
        latency_writers: 64,
        fanout_subscribers: 1_000,
        fanout_events: 2_000,
        idle: 10_000,
        systems: vec!["tidefeed".into(), "redis".into(), "bare-axum".into()],
        client_threads: 2,
    };
    let usage = "flags: --tidefeed ADDR --tidefeed-pid PID --redis ADDR --redis-pid PID \
        [--bare ADDR --bare-pid PID] [--seconds S] [--warmup S] [--repeats N] \
        [--only idle,put,batch,latency,fanout] [--put-conns 1,16,64] [--batch-conns 1,16] \
        [--batch-rows N] [--latency-rates 1000,10000] [--latency-subscribers N] \
        [--latency-writers N] [--fanout-subscribers N] [--fanout-events N] [--idle N] \
        [--systems tidefeed,redis,bare-axum] \
        [--client-threads N]";
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value; {usage}"));
        let number = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| panic!("{flag} takes a number")) };
        match flag.as_str() {
            "--tidefeed" => tidefeed.0 = Some(value.parse().expect("--tidefeed takes ADDR")),
            "--tidefeed-pid" => tidefeed.1 = Some(number(&value) as u32),
            "--redis" => redis.0 = Some(value.parse().expect("--redis takes ADDR")),
            "--redis-pid" => redis.1 = Some(number(&value) as u32),
            "--bare" => bare.0 = Some(value.parse().expect("--bare takes ADDR")),
            "--bare-pid" => bare.1 = Some(number(&value) as u32),
            "--seconds" => args.seconds = number(&value),
            "--warmup" => args.warmup = number(&value),
            "--repeats" => args.repeats = number(&value) as usize,
            "--only" => args.only = list(&flag, &value),
            "--put-conns" => args.put_conns = list(&flag, &value),
            "--batch-conns" => args.batch_conns = list(&flag, &value),
            "--batch-rows" => args.batch_rows = number(&value) as usize,
            "--latency-rates" => args.latency_rates = list(&flag, &value),
            "--latency-subscribers" => args.latency_subscribers = number(&value) as usize,
            "--latency-writers" => args.latency_writers = number(&value) as usize,
            "--fanout-subscribers" => args.fanout_subscribers = number(&value) as usize,
            "--fanout-events" => args.fanout_events = number(&value) as u64,
            "--idle" => args.idle = number(&value) as usize,
            "--systems" => args.systems = list(&flag, &value),
            "--client-threads" => args.client_threads = number(&value) as usize,
            other => panic!("unknown flag {other}; {usage}"),
        }
    }
    let pid = |(addr, pid): (Option<SocketAddr>, Option<u32>), name: &str| -> (SocketAddr, u32) {
        (
            addr.unwrap_or_else(|| panic!("--{name} ADDR is required; {usage}")),
            pid.unwrap_or_else(|| panic!("--{name}-pid PID is required; {usage}")),
        )
    };
    // A system left out by --systems needs no address.
    if args.uses(Kind::Tidefeed) {
        (args.tidefeed.addr, args.tidefeed.pid) = pid(tidefeed, "tidefeed");
    }
    if args.uses(Kind::Redis) {
        (args.redis.addr, args.redis.pid) = pid(redis, "redis");
    }
    if bare.0.is_some() || bare.1.is_some() {
        let (addr, pid) = pid(bare, "bare");
        args.bare = Some(Target {
            kind: Kind::Bare,
            addr,
            pid,
        });
    }
    args
}

fn row_json(out: &mut Vec<u8>, id: u64) {
    use std::io::Write;
    write!(out, "{{\"id\":{id},\"v\":\"{PAYLOAD}\",\"n\":{}}}", id % 1000).expect("writing to a Vec");
}

/// Writes rows: one per request (PUT / XADD) or many (a batch / a
/// MULTI-EXEC of XADDs).
enum Writer {
    Http {
        conn: HttpConn,
        table: String,
        request: Vec<u8>,
        body: Vec<u8>,
        path: String,
    },
    Redis {
        conn: RedisConn,
        key: String,
        out: Vec<u8>,
    },
}

impl Writer {
    /// `table` is the tidefeed table, or the Redis stream key.
    async fn connect(target: &Target, table: &str) -> io::Result<Writer> {
        Ok(match target.kind {
            Kind::Tidefeed | Kind::Bare => Writer::Http {
                conn: HttpConn::connect(target.addr).await?,
                table: table.to_owned(),
                request: Vec::with_capacity(64 * 1024),
                body: Vec::with_capacity(64 * 1024),
                path: String::new(),
            },
            Kind::Redis => Writer::Redis {
                conn: RedisConn::connect(target.addr).await?,
                key: table.to_owned(),
                out: Vec::with_capacity(64 * 1024),
            },
        })
    }

    /// Writes one row; returns its seq (entry id).
    async fn put(&mut self, id: u64) -> io::Result<u64> {
        match self {
            Writer::Http {
                conn,
                table,
                request,
                body,
                path,
            } => {
                use std::fmt::Write;
                body.clear();
                row_json(body, id);
                path.clear();
                write!(path, "/v1/tables/{table}/rows/{id}").expect("writing to a String");
                json_request(request, "PUT", path, body);
                let response = conn.send_ok(request).await?;
                seq_of(&response).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "a write response without seq")
                })
            }
            Writer::Redis { conn, key, out } => {
                out.clear();
                let id_text = id.to_string();
                let n = (id % 1000).to_string();
                resp::command(
                    out,
                    &[b"XADD", key.as_bytes(), b"*", b"id", id_text.as_bytes(), b"v", PAYLOAD.as_bytes(), b"n", n.as_bytes()],
                );
                conn.write(out).await?;
                conn.read(|reply| match reply {
                    resp::Reply::Bulk(Some(id)) => resp::entry_id(id),
                    other => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("XADD answered {other:?}"),
                    )),
                })
                .await
            }
        }
    }

    /// Writes rows `first..first + rows` atomically.
    async fn batch(&mut self, first: u64, rows: usize) -> io::Result<()> {
        match self {
            Writer::Http {
                conn,
                table,
                request,
                body,
                ..
            } => {
                body.clear();
                body.extend_from_slice(b"{\"ops\":[");
                for id in first..first + rows as u64 {
                    if id != first {
                        body.push(b',');
                    }
                    body.extend_from_slice(b"{\"op\":\"upsert\",\"table\":\"");
                    body.extend_from_slice(table.as_bytes());
                    body.extend_from_slice(b"\",\"row\":");
                    row_json(body, id);
                    body.push(b'}');
                }
                body.extend_from_slice(b"]}");
                json_request(request, "POST", "/v1/batch", body);
                conn.send_ok(request).await?;
                Ok(())
            }
            Writer::Redis { conn, key, out } => {
                out.clear();
                resp::command(out, &[b"MULTI"]);
                for id in first..first + rows as u64 {
                    let id_text = id.to_string();
                    let n = (id % 1000).to_string();
                    resp::command(
                        out,
                        &[b"XADD", key.as_bytes(), b"*", b"id", id_text.as_bytes(), b"v", PAYLOAD.as_bytes(), b"n", n.as_bytes()],
                    );
                }
                resp::command(out, &[b"EXEC"]);
                conn.write(out).await?;
                for _ in 0..rows + 1 {
                    conn.read(|_| Ok(())).await?;
                }
                let mut ids = Vec::with_capacity(rows);
                conn.read(|reply| resp::exec_ids(reply, &mut ids)).await?;
                if ids.len() != rows {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("EXEC returned {} ids for {rows} XADDs", ids.len()),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A live subscriber: an SSE change stream filtered to one table, or a
/// loop of `XREAD BLOCK 0` on one stream key.
enum Subscriber {
    Sse(SseStream),
    Redis {
        conn: RedisConn,
        key: String,
        out: Vec<u8>,
    },
}

impl Subscriber {
    /// Returns once the subscription exists (SSE: the response head has
    /// arrived; Redis: the first `XREAD BLOCK` is sent, from the start of
    /// a fresh key, so an entry written before Redis blocks it is still
    /// read).
    async fn open(target: &Target, table: &str) -> io::Result<Subscriber> {
        Ok(match target.kind {
            Kind::Tidefeed | Kind::Bare => {
                let conn = HttpConn::connect(target.addr).await?;
                Subscriber::Sse(
                    conn.open_stream(&format!("/v1/changes/stream?since=now&tables={table}"))
                        .await?,
                )
            }
            Kind::Redis => {
                let mut conn = RedisConn::connect(target.addr).await?;
                let mut out = Vec::with_capacity(256);
                resp::command(&mut out, &[b"XREAD", b"BLOCK", b"0", b"STREAMS", table.as_bytes(), b"0-0"]);
                conn.write(&out).await?;
                Subscriber::Redis {
                    conn,
                    key: table.to_owned(),
                    out,
                }
            }
        })
    }

    /// The next delivery: the events of one read.
    async fn next(&mut self, delivery: &mut Delivery) -> io::Result<()> {
        match self {
            Subscriber::Sse(stream) => stream.next(delivery).await,
            Subscriber::Redis { conn, key, out } => {
                delivery.seqs.clear();
                let seqs = &mut delivery.seqs;
                conn.read(|reply| resp::xread_ids(reply, seqs)).await?;
                delivery.at = Instant::now();
                let last = *delivery.seqs.last().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "XREAD BLOCK 0 returned nothing")
                })?;
                let last = format!("{}-{}", last >> 20, last & 0xF_FFFF);
                out.clear();
                resp::command(out, &[b"XREAD", b"BLOCK", b"0", b"STREAMS", key.as_bytes(), last.as_bytes()]);
                conn.write(out).await
            }
        }
    }
}

fn new_delivery() -> Delivery {
    Delivery {
        at: Instant::now(),
        seqs: Vec::with_capacity(1024),
    }
}

/// Redis clients blocked in XREAD now (`INFO clients`).
async fn redis_blocked_clients(addr: SocketAddr) -> io::Result<u64> {
    let mut conn = RedisConn::connect(addr).await?;
    let mut out = Vec::new();
    resp::command(&mut out, &[b"INFO", b"clients"]);
    conn.write(&out).await?;
    conn.read(|reply| match reply {
        resp::Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(text)
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("INFO answered {other:?}"))),
    })
    .await
}

/// Waits until at least `n` Redis clients are blocked.
async fn redis_wait_blocked(addr: SocketAddr, n: usize) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while redis_blocked_clients(addr).await? < n as u64 {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("fewer than {n} Redis clients blocked after 60 s")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A tidefeed counter from `/metrics` (0 when absent).
async fn metric(addr: SocketAddr, name: &str) -> io::Result<f64> {
    let mut conn = HttpConn::connect(addr).await?;
    let body = conn
        .send_ok(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

fn own_cpu_seconds() -> f64 {
    stats::cpu_seconds(std::process::id())
}

async fn create_tables(addr: SocketAddr, tables: &[&str]) -> io::Result<()> {
    let mut conn = HttpConn::connect(addr).await?;
    let schema = br#"{"columns":[{"name":"id","type":"int64"},{"name":"v","type":"string"},{"name":"n","type":"int64"}],"primary_key":["id"]}"#;
    let mut request = Vec::new();
    for table in tables {
        json_request(&mut request, "PUT", &format!("/v1/tables/{table}"), schema);
        conn.send_ok(&request).await?;
    }
    Ok(())
}

/// One closed-loop measurement window.
struct Window {
    /// Requests (PUT, XADD, batch) per second.
    requests_per_second: f64,
    /// Server CPU in cores, averaged over the window.
    server_cores: f64,
    client_cores: f64,
    /// tidefeed only: WAL fdatasyncs per 1000 requests.
    fsyncs_per_1000: Option<f64>,
    /// Server CPU by thread name, cores.
    threads: Vec<(String, f64)>,
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Batch(usize),
}

/// `conns` connections, each with one request outstanding, for
/// `warmup + seconds`; counts what completes within the last `seconds`.
async fn closed_loop(target: Target, table: &str, conns: usize, op: Op, warmup: f64, seconds: f64, next_id: Arc<AtomicU64>) -> io::Result<Window> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (stop, done, next_id) = (stop.clone(), done.clone(), next_id.clone());
        let table = table.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut writer = Writer::connect(&target, &table).await?;
            while !stop.load(Ordering::Relaxed) {
                match op {
                    Op::Put => {
                        writer.put(next_id.fetch_add(1, Ordering::Relaxed)).await?;
                    }
                    Op::Batch(rows) => {
                        let first = next_id.fetch_add(rows as u64, Ordering::Relaxed);
                        writer.batch(first, rows).await?;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            io::Result::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let fsyncs_before = match target.kind {
        Kind::Tidefeed => Some(metric(target.addr, "tidefeed_wal_fsyncs_total").await?),
        _ => None,
    };
    let threads_before = stats::thread_cpu_seconds(target.pid);
    let (server_before, client_before) = (stats::cpu_seconds(target.pid), own_cpu_seconds());
    let done_before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let done_after = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (server_after, client_after) = (stats::cpu_seconds(target.pid), own_cpu_seconds());
    let threads_after = stats::thread_cpu_seconds(target.pid);
    let fsyncs_after = match target.kind {
        Kind::Tidefeed => Some(metric(target.addr, "tidefeed_wal_fsyncs_total").await?),
        _ => None,
    };
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a writer task panicked")?;
    }
    let requests = (done_after - done_before) as f64;
    Ok(Window {
        requests_per_second: requests / elapsed,
        server_cores: (server_after - server_before) / elapsed,
        client_cores: (client_after - client_before) / elapsed,
        fsyncs_per_1000: fsyncs_before
            .zip(fsyncs_after)
            .map(|(b, a)| (a - b) * 1000.0 / requests.max(1.0)),
        threads: stats::thread_cpu_delta(&threads_before, &threads_after)
            .into_iter()
            .map(|(name, s)| (name, s / elapsed))
            .collect(),
    })
}

fn show_threads(threads: &[(String, f64)]) -> String {
    threads
        .iter()
        .filter(|(_, cores)| *cores >= 0.01)
        .map(|(name, cores)| format!("{name} {cores:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-system results of repeated windows.
#[derive(Default)]
struct Repeated {
    rate: Vec<f64>,
    server_cores: Vec<f64>,
    client_cores: Vec<f64>,
    /// Server CPU microseconds per row.
    cpu_us: Vec<f64>,
    fsyncs: Vec<f64>,
    last_threads: Vec<(String, f64)>,
}

impl Repeated {
    fn add(&mut self, window: Window, rows_per_request: f64) {
        let rows = window.requests_per_second * rows_per_request;
        self.rate.push(rows);
        self.server_cores.push(window.server_cores);
        self.client_cores.push(window.client_cores);
        self.cpu_us.push(window.server_cores * 1e6 / rows.max(1.0));
        if let Some(f) = window.fsyncs_per_1000 {
            self.fsyncs.push(f);
        }
        self.last_threads = window.threads;
    }
}

fn ratios(a: &[f64], b: &[f64]) -> Spread {
    let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    Spread::of(&r)
}

async fn throughput(args: &Args, op: Op, conns_list: &[usize], next_id: Arc<AtomicU64>) -> io::Result<()> {
    let (what, unit, redis_unit, rows) = match op {
        Op::Put => ("durable single-row writes: PUT /v1/tables/bench/rows/{id} vs XADD", "PUT/s", "XADD/s", 1.0),
        Op::Batch(rows) => ("durable batches: POST /v1/batch vs MULTI + XADD x N + EXEC", "rows/s", "rows/s", rows as f64),
    };
    println!();
    println!(
        "{what} ({} windows of {} s after {} s warm-up, systems interleaved; median [min-max])",
        args.repeats, args.seconds, args.warmup
    );
    let targets: Vec<Target> = [Some(args.tidefeed), Some(args.redis), args.bare.filter(|_| matches!(op, Op::Put))]
        .into_iter()
        .flatten()
        .filter(|t| args.uses(t.kind))
        .collect();
    for &conns in conns_list {
        let mut results: Vec<Repeated> = targets.iter().map(|_| Repeated::default()).collect();
        for _ in 0..args.repeats {
            for (target, result) in targets.iter().zip(results.iter_mut()) {
                let window = closed_loop(*target, "bench", conns, op, args.warmup, args.seconds, next_id.clone()).await?;
                result.add(window, rows);
            }
        }
        println!("  {conns} connections:");
        let of = |kind: Kind| targets.iter().position(|t| t.kind == kind).map(|i| &results[i]);
        for (target, result) in targets.iter().zip(&results) {
            let unit = match target.kind {
                Kind::Redis => redis_unit,
                _ => unit,
            };
            let fsyncs = if result.fsyncs.is_empty() {
                String::new()
            } else {
                format!(
                    ", fsync/1000 rows {}",
                    Spread::of(&result.fsyncs.iter().map(|f| f / rows).collect::<Vec<_>>()).show(1)
                )
            };
            println!(
                "    {:<9} {:>26} {unit:<7} server {:.2} cores, {} us CPU/row{fsyncs}, client {:.2} cores",
                target.kind.name(),
                Spread::of(&result.rate).show(0),
                Spread::of(&result.server_cores).median,
                Spread::of(&result.cpu_us).show(1),
                Spread::of(&result.client_cores).median,
            );
        }
        if let Some(tf) = of(Kind::Tidefeed) {
            for other in [Kind::Redis, Kind::Bare] {
                if let Some(o) = of(other) {
                    println!("    ratio tidefeed/{} {}x", other.name(), ratios(&tf.rate, &o.rate).show(2));
                }
            }
        }
        if conns == *conns_list.iter().max().unwrap_or(&0) {
            for (target, result) in targets.iter().zip(&results) {
                println!("    {} threads (cores, last window): {}", target.kind.name(), show_threads(&result.last_threads));
            }
        }
    }
    Ok(())
}

struct Latency {
    /// Ack to delivery, microseconds, one per (subscriber, event).
    ack_to_delivery: Vec<f64>,
    /// Send to ack of the writes, microseconds.
    write: Vec<f64>,
    /// Deliveries that arrived before the writer had its ack.
    before_ack: usize,
    missing: usize,
    achieved_rate: f64,
}

/// `rate` writes per second from `writers` connections for `seconds`,
/// `subscribers` live subscribers; matches each delivery to its write.
async fn latency_run(target: Target, table: &str, rate: u64, writers: usize, subscribers: usize, seconds: f64, next_id: Arc<AtomicU64>) -> io::Result<Latency> {
    let mut subs = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        subs.push(Subscriber::open(&target, table).await?);
    }
    if target.kind == Kind::Redis {
        redis_wait_blocked(target.addr, subscribers).await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let mut sub_tasks = Vec::new();
    for mut sub in subs {
        let mut stop = stop_rx.clone();
        let received = received.clone();
        sub_tasks.push(tokio::spawn(async move {
            let mut got: Vec<(u64, Instant)> = Vec::new();
            let mut delivery = new_delivery();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    result = sub.next(&mut delivery) => {
                        result?;
                        got.extend(delivery.seqs.iter().map(|&s| (s, delivery.at)));
                        received.fetch_add(delivery.seqs.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            io::Result::Ok(got)
        }));
    }
    let total = (rate as f64 * seconds) as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut writer_tasks = Vec::new();
    for w in 0..writers as u64 {
        let table = table.to_owned();
        let next_id = next_id.clone();
        writer_tasks.push(tokio::spawn(async move {
            let mut writer = Writer::connect(&target, &table).await?;
            let mut acks: Vec<(u64, Instant, Instant)> = Vec::new();
            let mut k = w;
            while k < total {
                let due = start + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let seq = writer.put(next_id.fetch_add(1, Ordering::Relaxed)).await?;
                acks.push((seq, sent, Instant::now()));
                k += writers as u64;
            }
            io::Result::Ok(acks)
        }));
    }
    let mut acks = HashMap::with_capacity(total as usize);
    let mut write = Vec::with_capacity(total as usize);
    let mut last_ack = start;
    for task in writer_tasks {
        for (seq, sent, ack) in task.await.expect("a writer task panicked")? {
            write.push((ack - sent).as_secs_f64() * 1e6);
            last_ack = last_ack.max(ack);
            acks.insert(seq, ack);
        }
    }
    let achieved_rate = total as f64 / (last_ack - start).as_secs_f64();
    let expected = total * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(true);
    let mut ack_to_delivery = Vec::with_capacity(expected as usize);
    let mut before_ack = 0;
    let mut matched = 0;
    for task in sub_tasks {
        for (seq, at) in task.await.expect("a subscriber task panicked")? {
            if let Some(&ack) = acks.get(&seq) {
                matched += 1;
                if at < ack {
                    before_ack += 1;
                    ack_to_delivery.push(0.0);
                } else {
                    ack_to_delivery.push((at - ack).as_secs_f64() * 1e6);
                }
            }
        }
    }
    ack_to_delivery.sort_by(f64::total_cmp);
    write.sort_by(f64::total_cmp);
    Ok(Latency {
        ack_to_delivery,
        write,
        before_ack,
        missing: expected as usize - matched.min(expected as usize),
        achieved_rate,
    })
}

async fn latency(args: &Args, next_id: Arc<AtomicU64>) -> io::Result<()> {
    println!();
    println!(
        "write-ack to delivery latency, {} subscribers (SSE / XREAD BLOCK), writes from {} connections for {} s per run, {} runs (median [min-max] of each run's percentile, microseconds)",
        args.latency_subscribers, args.latency_writers, args.seconds, args.repeats
    );
    let mut run = 0;
    for &rate in &args.latency_rates {
        println!("  {rate} writes/s:");
        let mut rows: Vec<(Kind, Vec<Latency>)> = [Kind::Tidefeed, Kind::Redis]
            .into_iter()
            .filter(|k| args.uses(*k))
            .map(|k| (k, Vec::new()))
            .collect();
        for _ in 0..args.repeats {
            for (kind, results) in rows.iter_mut() {
                run += 1;
                let (target, table) = match kind {
                    Kind::Redis => (args.redis, format!("lat:{run}")),
                    _ => (args.tidefeed, "lat".to_owned()),
                };
                results.push(
                    latency_run(target, &table, rate, args.latency_writers, args.latency_subscribers, args.seconds, next_id.clone())
                        .await?,
                );
            }
        }
        for (kind, results) in &rows {
            let q = |f: &dyn Fn(&Latency) -> f64| Spread::of(&results.iter().map(f).collect::<Vec<_>>());
            let achieved = q(&|l| l.achieved_rate);
            if achieved.median < 0.9 * rate as f64 {
                println!(
                    "    note: {} reached only {:.0} of {rate} writes/s: {} connections with one write each in flight could not go faster (write latency below)",
                    kind.name(),
                    achieved.median,
                    args.latency_writers,
                );
            }
            println!(
                "    {:<9} ack->delivery p50 {} p99 {} p999 {} max {}; write p50 {} p99 {}; rate {}/s; before ack {:.1}%, missing {}",
                kind.name(),
                q(&|l| quantile(&l.ack_to_delivery, 0.5)).show(0),
                q(&|l| quantile(&l.ack_to_delivery, 0.99)).show(0),
                q(&|l| quantile(&l.ack_to_delivery, 0.999)).show(0),
                q(&|l| l.ack_to_delivery.last().copied().unwrap_or(f64::NAN)).show(0),
                q(&|l| quantile(&l.write, 0.5)).show(0),
                q(&|l| quantile(&l.write, 0.99)).show(0),
                q(&|l| l.achieved_rate).show(0),
                100.0 * results.iter().map(|l| l.before_ack).sum::<usize>() as f64
                    / results.iter().map(|l| l.ack_to_delivery.len()).sum::<usize>().max(1) as f64,
                results.iter().map(|l| l.missing).sum::<usize>(),
            );
        }
    }
    Ok(())
}

struct Fanout {
    deliveries_per_second: f64,
    write_seconds: f64,
    total_seconds: f64,
    server_cores: f64,
    client_cores: f64,
}

/// `events` rows written as fast as one connection can, in batches of
/// `batch`, to `subscribers` live subscribers; time from the first write
/// to the last subscriber's last event.
async fn fanout_run(target: Target, table: &str, subscribers: usize, events: u64, batch: usize, next_id: Arc<AtomicU64>) -> io::Result<Fanout> {
    let opened = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opens = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let (opened, table) = (opened.clone(), table.to_owned());
        opens.push(tokio::spawn(async move {
            let _permit = opened.acquire().await.expect("semaphore open");
            Subscriber::open(&target, &table).await
        }));
    }
    let mut subs = Vec::with_capacity(subscribers);
    for open in opens {
        subs.push(open.await.expect("an open task panicked")?);
    }
    if target.kind == Kind::Redis {
        redis_wait_blocked(target.addr, subscribers).await?;
    }
    let mut tasks = Vec::with_capacity(subscribers);
    for mut sub in subs {
        tasks.push(tokio::spawn(async move {
            let mut delivery = new_delivery();
            let mut count = 0;
            while count < events {
                sub.next(&mut delivery).await?;
                count += delivery.seqs.len() as u64;
            }
            io::Result::Ok(delivery.at)
        }));
    }
    let (server_before, client_before) = (stats::cpu_seconds(target.pid), own_cpu_seconds());
    let start = Instant::now();
    let mut writer = Writer::connect(&target, table).await?;
    let mut written = 0;
    while written < events {
        let rows = batch.min((events - written) as usize);
        writer.batch(next_id.fetch_add(rows as u64, Ordering::Relaxed), rows).await?;
        written += rows as u64;
    }
    let write_seconds = start.elapsed().as_secs_f64();
    let mut last = start;
    for task in tasks {
        let finished = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .map_err(|_| io::Error::other("a subscriber did not receive every event within 120 s"))?
            .expect("a subscriber task panicked")?;
        last = last.max(finished);
    }
    let total_seconds = (last - start).as_secs_f64();
    let (server_after, client_after) = (stats::cpu_seconds(target.pid), own_cpu_seconds());
    let wall = start.elapsed().as_secs_f64();
    Ok(Fanout {
        deliveries_per_second: (events * subscribers as u64) as f64 / total_seconds,
        write_seconds,
        total_seconds,
        server_cores: (server_after - server_before) / wall,
        client_cores: (client_after - client_before) / wall,
    })
}

async fn fanout(args: &Args, next_id: Arc<AtomicU64>) -> io::Result<()> {
    println!();
    println!(
        "fan-out: {} subscribers (SSE sockets / XREAD BLOCK), {} events written in batches of 100 on one connection; deliveries = events x subscribers, from the first write to the last delivery ({} runs, median [min-max])",
        args.fanout_subscribers, args.fanout_events, args.repeats
    );
    let mut results: Vec<(Kind, Vec<Fanout>)> = [Kind::Tidefeed, Kind::Redis]
        .into_iter()
        .filter(|k| args.uses(*k))
        .map(|k| (k, Vec::new()))
        .collect();
    let mut run = 0;
    for _ in 0..args.repeats {
        for (kind, list) in results.iter_mut() {
            run += 1;
            let (target, table) = match kind {
                Kind::Redis => (args.redis, format!("fan:{run}")),
                _ => (args.tidefeed, "fan".to_owned()),
            };
            list.push(fanout_run(target, &table, args.fanout_subscribers, args.fanout_events, 100, next_id.clone()).await?);
        }
    }
    for (kind, list) in &results {
        let s = |f: &dyn Fn(&Fanout) -> f64| Spread::of(&list.iter().map(f).collect::<Vec<_>>());
        println!(
            "  {:<9} {} events/s delivered; writes took {} s, all delivered after {} s; server {} cores, client {} cores",
            kind.name(),
            s(&|f| f.deliveries_per_second).show(0),
            s(&|f| f.write_seconds).show(3),
            s(&|f| f.total_seconds).show(3),
            s(&|f| f.server_cores).show(2),
            s(&|f| f.client_cores).show(2),
        );
    }
    if let [(Kind::Tidefeed, tf), (Kind::Redis, rd)] = &results[..] {
        let tf: Vec<f64> = tf.iter().map(|f| f.deliveries_per_second).collect();
        let rd: Vec<f64> = rd.iter().map(|f| f.deliveries_per_second).collect();
        println!("  ratio tidefeed/redis {}x", ratios(&tf, &rd).show(2));
    }
    Ok(())
}

/// Opens `n` idle subscriptions and reports the server's RSS growth.
async fn idle_run(target: Target, n: usize) -> io::Result<(u64, u64, u64)> {
    let before = stats::rss_kib(target.pid);
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opens = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = gate.clone();
        opens.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore open");
            Subscriber::open(&target, "idle").await
        }));
    }
    let mut subs = Vec::with_capacity(n);
    for open in opens {
        subs.push(open.await.expect("an open task panicked")?);
    }
    if target.kind == Kind::Redis {
        redis_wait_blocked(target.addr, n).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = stats::rss_kib(target.pid);
    drop(subs);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::rss_kib(target.pid);
    Ok((before, open, after))
}

async fn idle(args: &Args) -> io::Result<()> {
    println!();
    println!(
        "server memory per idle subscription: {} idle SSE streams / XREAD BLOCK clients, RSS (VmRSS) before and after opening them (bare-axum: an SSE body that only sends keep-alives, no subscription)",
        args.idle
    );
    // bare-axum: the same streams from axum and hyper alone, a floor.
    let systems = [Some(args.tidefeed), Some(args.redis), args.bare];
    for target in systems
        .into_iter()
        .flatten()
        .filter(|t| args.uses(t.kind))
    {
        let (before, open, after) = idle_run(target, args.idle).await?;
        println!(
            "  {:<9} RSS {before} -> {open} KiB with {} open: {:.2} KiB per idle subscription; {after} KiB 2 s after closing them",
            target.kind.name(),
            args.idle,
            (open as f64 - before as f64) / args.idle as f64,
        );
    }
    Ok(())
}

async fn run(args: Args) -> io::Result<()> {
    let wants = |what: &str| args.only.is_empty() || args.only.iter().any(|o| o == what);
    let tidefeed_used = ["put", "batch", "latency", "fanout"].iter().any(|w| wants(w))
        && args.uses(Kind::Tidefeed)
        || (wants("idle") && args.uses(Kind::Tidefeed));
    if tidefeed_used {
        create_tables(args.tidefeed.addr, &["bench", "lat", "fan", "idle"]).await?;
    }
    // Ids keep growing across figures, so every write is an insert.
    let next_id = Arc::new(AtomicU64::new(1));
    println!(
        "http-load: tidefeed {} (pid {}), redis {} (pid {}){}; client: {} tokio worker threads",
        args.tidefeed.addr,
        args.tidefeed.pid,
        args.redis.addr,
        args.redis.pid,
        args.bare
            .map(|b| format!(", bare-axum {} (pid {})", b.addr, b.pid))
            .unwrap_or_default(),
        args.client_threads,
    );
    // First, while the servers are fresh processes.
    if wants("idle") {
        idle(&args).await?;
    }
    if wants("put") {
        throughput(&args, Op::Put, &args.put_conns, next_id.clone()).await?;
    }
    if wants("batch") {
        throughput(&args, Op::Batch(args.batch_rows), &args.batch_conns, next_id.clone()).await?;
    }
    if wants("latency") {
        latency(&args, next_id.clone()).await?;
    }
    if wants("fanout") {
        fanout(&args, next_id.clone()).await?;
    }
    Ok(())
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(error) = runtime.block_on(run(args)) {
        eprintln!("http-load: {error}");
        std::process::exit(1);
    }
}
