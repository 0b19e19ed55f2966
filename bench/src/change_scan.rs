//! Change-scan throughput from flushed levels, point reads after
//! compaction beside fjall, and write amplification.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml --bin change-scan [-- --changes N --dir DIR]
//! ```
//!
//! Loads N changes (default 5,000,000; upserts over 1M keys, so most are
//! updates carrying before-images), flushes and fully compacts them, then
//! scans them in seq order in a fresh process, printing changes/s and the
//! resident set size at points through the scan (it must not grow with the
//! backlog). Prints; asserts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidefeed_engine::{Column, ColumnType, Durability, Engine, EngineOptions, Mutation, TableSchema, Value};

const KEYS: u64 = 1_000_000;
const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";

fn options(dir: &Path) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.durability = Durability::Async {
        interval: Duration::from_millis(200),
    };
    options.history_window = None;
    options
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn key_of(i: u64) -> i64 {
    // A multiplicative hash spreads consecutive writes over the key space.
    ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % KEYS) as i64
}

fn load(dir: &Path, changes: u64) {
    let engine = Engine::open(options(dir)).unwrap();
    engine
        .create_table(TableSchema {
            name: "bench".into(),
            columns: vec![
                Column { name: "id".into(), ty: ColumnType::Int64, nullable: false },
                Column { name: "n".into(), ty: ColumnType::Int64, nullable: false },
                Column { name: "payload".into(), ty: ColumnType::String, nullable: false },
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    let start = Instant::now();
    let mut i = 0;
    while i < changes {
        let batch: Vec<Mutation> = (i..(i + 500).min(changes))
            .map(|n| {
                Mutation::upsert(
                    "bench",
                    vec![
                        ("id".into(), Value::Int64(key_of(n))),
                        ("n".into(), Value::Int64(n as i64)),
                        ("payload".into(), Value::String(PAYLOAD.into())),
                    ],
                )
            })
            .collect();
        i += batch.len() as u64;
        engine.write(batch).unwrap();
    }
    let loaded = start.elapsed();
    engine.flush().unwrap();
    let flushed = start.elapsed();
    engine.compact().unwrap();
    let compacted = start.elapsed();
    let m = engine.metrics();
    println!(
        "loaded {changes} changes in {:.1} s ({:.0}/s, async mode, batches of 500); flushed at {:.1} s; full compaction done at {:.1} s",
        loaded.as_secs_f64(),
        changes as f64 / loaded.as_secs_f64(),
        flushed.as_secs_f64(),
        compacted.as_secs_f64()
    );
    let written = m.wal_bytes + m.flushed_bytes + m.compacted_bytes;
    println!(
        "bytes written: WAL {:.0} MiB, flushes {:.0} MiB, compactions {:.0} MiB; write amplification {:.2}x of the WAL bytes",
        m.wal_bytes as f64 / 1048576.0,
        m.flushed_bytes as f64 / 1048576.0,
        m.compacted_bytes as f64 / 1048576.0,
        written as f64 / m.wal_bytes as f64
    );
    engine.close().unwrap();
}

fn scan(dir: &Path) {
    let engine = Engine::open(options(dir)).unwrap();
    let visible = engine.visible_seq();
    let m = engine.metrics();
    println!(
        "scan process: {} table files, flushed_seq {}, RSS after open {} MiB",
        m.table_files,
        m.flushed_seq,
        rss_kib() / 1024
    );
    for decode in [false, true] {
        let start = Instant::now();
        let mut n = 0u64;
        let mut checksum = 0u64;
        let mut rss_points = Vec::new();
        for change in engine.changes(0, None).unwrap() {
            let change = change.unwrap();
            checksum = checksum.wrapping_add(change.seq());
            if decode {
                let after = change.after().unwrap();
                checksum = checksum.wrapping_add(after.map_or(0, |r| r.values().len() as u64));
            }
            n += 1;
            if n % (visible / 5).max(1) == 0 {
                rss_points.push(format!("{}M: {} MiB", n / 1_000_000, rss_kib() / 1024));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(n, visible);
        println!(
            "change scan ({}) of {n} changes from table files: {:.2} s, {:.0} changes/s; RSS at {}",
            if decode { "decoding after-images" } else { "raw records" },
            secs,
            n as f64 / secs,
            rss_points.join(", ")
        );
        std::hint::black_box(checksum);
    }

    // Point reads after compaction, beside fjall holding the same rows.
    let fjall_dir = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
    let db = fjall::Database::builder(fjall_dir.path()).open().unwrap();
    let items = db.keyspace("bench", fjall::KeyspaceCreateOptions::default).unwrap();
    let mut rows = 0;
    let page_size = 100_000;
    let mut range = tidefeed_engine::KeyRange::default();
    loop {
        let page = engine.scan("bench", &range, page_size, None).unwrap();
        for row in &page.rows {
            let Value::Int64(id) = row.row.values()[0] else { unreachable!() };
            let value = format!("{{\"n\":{:?},\"payload\":\"{PAYLOAD}\"}}", row.row.values()[1]);
            items.insert(id.to_be_bytes(), value.as_bytes()).unwrap();
            rows += 1;
        }
        match page.next {
            Some(next) => range.start = Some(next),
            None => break,
        }
    }
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    println!("{rows} live rows copied into fjall");
    let reads = |f: &mut dyn FnMut(i64) -> bool| {
        let start = Instant::now();
        let mut n = 0u64;
        let mut found = 0u64;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..1000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                found += u64::from(f((state % KEYS) as i64));
                n += 1;
            }
        }
        (n as f64 / start.elapsed().as_secs_f64(), found as f64 / n as f64)
    };
    let (ours, hit) = reads(&mut |id| engine.get("bench", &[Value::Int64(id)], None).unwrap().is_some());
    let (theirs, _) = reads(&mut |id| items.get(id.to_be_bytes()).unwrap().is_some());
    println!(
        "point reads, one thread, {:.0}% hits: tidefeed {ours:.0}/s, fjall {theirs:.0}/s, ratio {:.2}x",
        hit * 100.0,
        ours / theirs
    );
    engine.close().unwrap();
}

fn main() {
    let mut changes = 5_000_000u64;
    let mut base = std::env::temp_dir();
    let mut scan_only: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--changes" => changes = value.parse().expect("--changes takes a number"),
            "--dir" => base = value.into(),
            "--scan-only" => scan_only = Some(value.into()),
            other => panic!("unknown flag {other}; flags: --changes N, --dir DIR"),
        }
    }
    if let Some(dir) = scan_only {
        scan(&dir);
        return;
    }
    let work = tempfile::tempdir_in(&base).unwrap();
    let data = work.path().join("data");
    load(&data, changes);
    // Scan in a fresh process so its RSS reflects the scan alone.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--scan-only")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
}
