//! Durable write throughput of the tidefeed engine beside the disk's raw
//! fdatasync rate and beside fjall, on the same machine in one run.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml --bin engine-write [-- --seconds N --dir DIR]
//! ```
//!
//! Every figure is an acknowledged-durable put: tidefeed in `sync` mode
//! acknowledges after its group's fdatasync; fjall is given the same
//! guarantee by `persist(PersistMode::SyncData)` after each insert. Rows are
//! ~100 bytes. The benchmark prints; it asserts nothing.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tidefeed_engine::{Column, ColumnType, Durability, Engine, EngineOptions, Mutation, TableSchema, Value};

const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789";

struct Args {
    seconds: f64,
    dir: PathBuf,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 3.0,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds takes a number"),
            "--dir" => args.dir = value.into(),
            other => panic!("unknown flag {other}; flags: --seconds N, --dir DIR"),
        }
    }
    args
}

/// Runs `writers` threads calling `put(writer, i)` until the deadline;
/// returns acknowledged puts per second.
fn drive(writers: usize, seconds: f64, put: impl Fn(usize, u64) + Send + Sync + 'static) -> f64 {
    let put = Arc::new(put);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(writers + 1));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (put, stop, done, barrier) = (put.clone(), stop.clone(), done.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    put(w, i);
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Appends of 128 bytes, each followed by fdatasync. `prefilled` overwrites
/// a zero-filled file instead of growing one, as tidefeed's WAL does.
fn raw_fdatasync(dir: &Path, seconds: f64, prefilled: bool) -> f64 {
    let path = dir.join(if prefilled { "raw-prefilled" } else { "raw-append" });
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    if prefilled {
        file.write_all_at(&vec![0u8; 64 << 20], 0).unwrap();
        file.sync_all().unwrap();
    }
    let record = [0xA5u8; 128];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all_at(&record, n * 128).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

fn row(writer: usize, i: u64) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(((writer as i64) << 40) | i as i64)),
        ("payload".into(), Value::String(PAYLOAD.into())),
    ]
}

struct TidefeedRun {
    puts_per_sec: f64,
    syncs_per_1000: f64,
}

fn tidefeed(dir: &Path, writers: usize, seconds: f64, durability: Durability) -> TidefeedRun {
    let data = tempfile::tempdir_in(dir).unwrap();
    let mut options = EngineOptions::new(data.path());
    options.durability = durability;
    // Keep the whole run in memory: flushed levels arrive with issue [2/6].
    options.memtable_bytes = 1 << 30;
    let engine = Engine::open(options).unwrap();
    engine
        .create_table(TableSchema {
            name: "bench".into(),
            columns: vec![
                Column { name: "id".into(), ty: ColumnType::Int64, nullable: false },
                Column { name: "payload".into(), ty: ColumnType::String, nullable: false },
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    let writer_engine = engine.clone();
    let puts_per_sec = drive(writers, seconds, move |w, i| {
        writer_engine.write(vec![Mutation::upsert("bench", row(w, i))]).unwrap();
    });
    let metrics = engine.metrics();
    engine.close().unwrap();
    TidefeedRun {
        puts_per_sec,
        syncs_per_1000: metrics.wal_syncs as f64 * 1000.0 / metrics.committed_changes.max(1) as f64,
    }
}

fn fjall(dir: &Path, writers: usize, seconds: f64) -> f64 {
    let data = tempfile::tempdir_in(dir).unwrap();
    let db = fjall::Database::builder(data.path()).open().unwrap();
    let items = db.keyspace("bench", fjall::KeyspaceCreateOptions::default).unwrap();
    let value = format!("{{\"payload\":\"{PAYLOAD}\"}}");
    let db2 = db.clone();
    drive(writers, seconds, move |w, i| {
        let key = (((w as u64) << 40) | i).to_be_bytes();
        items.insert(key, value.as_bytes()).unwrap();
        db2.persist(fjall::PersistMode::SyncData).unwrap();
    })
}

fn main() {
    let Args { seconds, dir } = args();
    println!("engine-write: {seconds} s per case, data under {}", dir.display());
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!();

    let raw_append = raw_fdatasync(&dir, seconds, false);
    let raw_prefilled = raw_fdatasync(&dir, seconds, true);
    println!("raw 128 B write + fdatasync, growing file:      {raw_append:>10.0} /s ({:.0} us)", 1e6 / raw_append);
    println!("raw 128 B write + fdatasync, zero-filled file:  {raw_prefilled:>10.0} /s ({:.0} us)", 1e6 / raw_prefilled);
    println!();
    println!("{:<10} {:>8} {:>14} {:>12} {:>14} {:>12}", "mode", "writers", "tidefeed put/s", "fsync/1000", "fjall put/s", "ratio");
    let mut single_sync = 0.0;
    for writers in [1, 8, 64] {
        let ours = tidefeed(&dir, writers, seconds, Durability::Sync);
        let theirs = fjall(&dir, writers, seconds);
        if writers == 1 {
            single_sync = ours.puts_per_sec;
        }
        println!(
            "{:<10} {:>8} {:>14.0} {:>12.1} {:>14.0} {:>11.2}x",
            "sync",
            writers,
            ours.puts_per_sec,
            ours.syncs_per_1000,
            theirs,
            ours.puts_per_sec / theirs
        );
    }
    for writers in [1, 8, 64] {
        let ours = tidefeed(
            &dir,
            writers,
            seconds,
            Durability::Async {
                interval: Duration::from_millis(100),
            },
        );
        println!(
            "{:<10} {:>8} {:>14.0} {:>12.1} {:>14} {:>12}",
            "async", writers, ours.puts_per_sec, ours.syncs_per_1000, "-", "-"
        );
    }
    println!();
    println!(
        "one sync writer vs raw fdatasync: {:.0}% of the growing-file rate, {:.0}% of the zero-filled rate",
        100.0 * single_sync / raw_append,
        100.0 * single_sync / raw_prefilled
    );
}
