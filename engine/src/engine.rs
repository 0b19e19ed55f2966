//! The engine handle: opening (with recovery), writes, reads, change scans
//! and an ordered shutdown.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::catalog::{Catalog, CreateTable};
use crate::codec::{key, row};
use crate::commit::request::{prepare, Mutation, WriteResult};
use crate::commit::thread::{CommitThread, Request};
use crate::error::{Error, Result};
use crate::memtable::Memtable;
use crate::metrics::{EngineMetrics, MetricsSnapshot};
use crate::options::EngineOptions;
use crate::read::merge::{LatestAt, MergeIter, VersionSource};
use crate::read::ChangeIter;
use crate::schema::{Row, Table, TableSchema, Value};
use crate::state::LsmState;
use crate::wal::recovery::{self, WalReplay};
use crate::wal::writer::WalWriter;
use crate::wal::WAL_DIR;
use crate::Seq;

const LOCK_FILE: &str = "LOCK";

/// State shared by the handle, the readers and the commit thread.
pub(crate) struct Shared {
    pub catalog: Catalog,
    state: RwLock<Arc<LsmState>>,
    /// Highest seq such that every seq <= it is applied and readable.
    visible_seq: AtomicU64,
    visible_tx: watch::Sender<Seq>,
    pub metrics: Arc<EngineMetrics>,
}

impl Shared {
    pub(crate) fn state(&self) -> Arc<LsmState> {
        self.state.read().expect("state lock poisoned").clone()
    }

    pub(crate) fn replace_state(&self, next: LsmState) {
        *self.state.write().expect("state lock poisoned") = Arc::new(next);
    }

    pub(crate) fn publish_visible(&self, seq: Seq) {
        self.visible_seq.store(seq, Ordering::Release);
        self.visible_tx.send_replace(seq);
    }

    fn visible(&self) -> Seq {
        self.visible_seq.load(Ordering::Acquire)
    }
}

/// A row as stored, with the seq of its last change (its version, the
/// HTTP ETag).
#[derive(Debug, Clone, PartialEq)]
pub struct RowVersion {
    pub seq: Seq,
    pub row: Row,
}

/// One page of a key-range scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPage {
    pub rows: Vec<RowVersion>,
    /// Key of the first row after this page, to start the next page from.
    pub next: Option<Vec<Value>>,
}

/// Bounds of a key-range scan: `start` inclusive, `end` exclusive. Either
/// may be a prefix of the primary key (leading columns only).
#[derive(Debug, Clone, Default)]
pub struct KeyRange {
    pub start: Option<Vec<Value>>,
    pub end: Option<Vec<Value>>,
}

/// What `open` found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub tables: usize,
    pub wal: WalReplay,
}

struct Running {
    requests: Sender<Request>,
    thread: JoinHandle<Result<()>>,
    /// Holds the data directory lock while the engine runs.
    _lock: File,
}

/// A handle to an open engine. Cheap to clone; all clones share one engine.
///
/// Architecture invariant: the engine does no network I/O and knows no wire
/// format; it stores typed rows and hands out typed changes.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
    /// A clone of the request sender, so writers need not take the mutex.
    requests: Sender<Request>,
    data_dir: PathBuf,
    recovery: Recovery,
}

impl Engine {
    /// Opens (creating if needed) the engine in `options.data_dir`, replays
    /// the WAL and starts the commit thread.
    pub fn open(options: EngineOptions) -> Result<Engine> {
        let dir = options.data_dir.clone();
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source: e,
                })
            }
        }

        let catalog = Catalog::open(&dir)?;
        let catalog_snapshot = catalog.snapshot();
        let wal_dir = dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).map_err(Error::io(&wal_dir))?;

        // Replay into memtables of the configured size, as the commit
        // thread would have built them.
        let mut memtables: Vec<Arc<Memtable>> = vec![Arc::new(Memtable::new(1))];
        let mut last_ts = 0;
        let wal = recovery::replay(&wal_dir, 0, |records| {
            let active = memtables.last().expect("one memtable").clone();
            let active = if active.approx_bytes() >= options.memtable_bytes {
                let fresh = Arc::new(Memtable::new(records[0].seq));
                memtables.push(fresh.clone());
                fresh
            } else {
                active
            };
            for record in records {
                let table = key::table_of(&record.key).unwrap_or_default();
                if catalog_snapshot.by_id(table).is_none() {
                    return Err(Error::Corruption {
                        file: wal_dir.clone(),
                        offset: 0,
                        problem: crate::error::Corruption::UnknownTable(table),
                    });
                }
                last_ts = record.ts_micros;
                active.insert(Arc::new(record));
            }
            Ok(())
        })?;
        let recovery = Recovery {
            tables: catalog_snapshot.tables().len(),
            wal: wal.clone(),
        };
        tracing::info!(
            dir = %dir.display(),
            tables = recovery.tables,
            last_seq = wal.last_seq,
            batches = wal.batches,
            torn_bytes = wal.torn_bytes,
            "engine recovered"
        );

        let metrics = Arc::new(EngineMetrics::default());
        let writer = WalWriter::create(
            &wal_dir,
            wal.next_segment_id,
            options.wal_segment_bytes,
            options.faults.clone(),
            metrics.clone(),
        )?;
        let (visible_tx, _) = watch::channel(wal.last_seq);
        let shared = Arc::new(Shared {
            catalog,
            state: RwLock::new(Arc::new(LsmState { memtables })),
            visible_seq: AtomicU64::new(wal.last_seq),
            visible_tx,
            metrics,
        });
        let committer = CommitThread {
            shared: shared.clone(),
            wal: writer,
            durability: options.durability,
            memtable_bytes: options.memtable_bytes,
            max_group_requests: options.max_group_requests.max(1),
            next_seq: wal.last_seq + 1,
            last_ts_micros: last_ts,
        };
        let (requests, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tidefeed-commit".into())
            .spawn(move || committer.run(receiver))
            .map_err(Error::io(&dir))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                shared,
                running: Mutex::new(Some(Running {
                    requests: requests.clone(),
                    thread,
                    _lock: lock,
                })),
                requests,
                data_dir: dir,
                recovery,
            }),
        })
    }

    /// What `open` recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// Creates a table, durably. Creating a table that exists with the
    /// identical schema succeeds with [`CreateTable::Exists`].
    pub fn create_table(&self, schema: TableSchema) -> Result<CreateTable> {
        self.inner.shared.catalog.create(schema)
    }

    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.inner.shared.catalog.snapshot().by_name(name).cloned()
    }

    /// All tables, in creation order.
    pub fn tables(&self) -> Vec<Arc<Table>> {
        self.inner.shared.catalog.snapshot().tables()
    }

    fn submit(&self, batch: Vec<Mutation>) -> Result<oneshot::Receiver<Result<WriteResult>>> {
        let ops = prepare(&self.inner.shared.catalog.snapshot(), batch)?;
        let (reply, receiver) = oneshot::channel();
        self.inner
            .requests
            .send(Request::Write { ops, reply })
            .map_err(|_| Error::Closed)?;
        Ok(receiver)
    }

    /// Commits an atomic batch and waits until it is durable under the
    /// configured mode. Blocks the calling thread; from async code use
    /// [`Engine::write_async`].
    pub fn write(&self, batch: Vec<Mutation>) -> Result<WriteResult> {
        self.submit(batch)?
            .blocking_recv()
            .map_err(|_| Error::Closed)?
    }

    /// [`Engine::write`] for async callers. Validation runs on the calling
    /// task; waiting for durability does not block the executor.
    pub async fn write_async(&self, batch: Vec<Mutation>) -> Result<WriteResult> {
        self.submit(batch)?.await.map_err(|_| Error::Closed)?
    }

    /// The highest seq readers can see. Every seq at or below it is applied.
    pub fn visible_seq(&self) -> Seq {
        self.inner.shared.visible()
    }

    /// A receiver that changes whenever `visible_seq` advances.
    pub fn watch_visible(&self) -> watch::Receiver<Seq> {
        self.inner.shared.visible_tx.subscribe()
    }

    fn read_seq(&self, at: Option<Seq>) -> Result<Seq> {
        let visible = self.visible_seq();
        match at {
            Some(requested) if requested > visible => Err(Error::FutureSeq { requested, visible }),
            Some(requested) => Ok(requested),
            None => Ok(visible),
        }
    }

    fn table_or_err(&self, name: &str) -> Result<Arc<Table>> {
        self.table(name).ok_or_else(|| Error::NoSuchTable {
            table: name.to_owned(),
        })
    }

    /// The row with this key (values in primary-key order) as of `at`
    /// (default: the visible seq).
    pub fn get(&self, table: &str, key: &[Value], at: Option<Seq>) -> Result<Option<RowVersion>> {
        let at = self.read_seq(at)?;
        let table = self.table_or_err(table)?;
        table.check_key(key)?;
        let encoded = Bytes::from(key::encode(table.id(), key));
        let state = self.inner.shared.state();
        match state.get(&encoded, at) {
            Some(record) => match &record.after {
                Some(after) => Ok(Some(RowVersion {
                    seq: record.seq,
                    row: decode_row(&table, record.seq, after)?,
                })),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Up to `limit` rows in key order within `range`, as of `at`.
    pub fn scan(
        &self,
        table: &str,
        range: &KeyRange,
        limit: usize,
        at: Option<Seq>,
    ) -> Result<ScanPage> {
        let at = self.read_seq(at)?;
        let table = self.table_or_err(table)?;
        let start = match &range.start {
            Some(prefix) => {
                table.check_key_prefix(prefix)?;
                Bytes::from(key::encode(table.id(), prefix))
            }
            None => Bytes::copy_from_slice(&key::table_prefix(table.id())),
        };
        let end = match &range.end {
            Some(prefix) => {
                table.check_key_prefix(prefix)?;
                Some(Bytes::from(key::encode(table.id(), prefix)))
            }
            None => table
                .id()
                .checked_add(1)
                .map(|next| Bytes::copy_from_slice(&key::table_prefix(next))),
        };
        let state = self.inner.shared.state();
        let sources: Vec<VersionSource<'_>> = state
            .memtables
            .iter()
            .map(|m| Box::new(m.range(&start, end.as_ref())) as VersionSource<'_>)
            .collect();
        let mut live = LatestAt::new(MergeIter::new(sources), at);
        let mut rows = Vec::with_capacity(limit.min(1024));
        for record in live.by_ref().take(limit) {
            let after = record.after.as_ref().expect("LatestAt yields live rows");
            rows.push(RowVersion {
                seq: record.seq,
                row: decode_row(&table, record.seq, after)?,
            });
        }
        let next = match live.next() {
            Some(record) => {
                Some(
                    key::decode(&table, &record.key).map_err(|what| Error::Undecodable {
                        table: table.name().to_owned(),
                        seq: record.seq,
                        what,
                    })?,
                )
            }
            None => None,
        };
        Ok(ScanPage { rows, next })
    }

    /// Committed changes with seq in `(since, upto]` (`upto` defaults to the
    /// visible seq), in seq order.
    pub fn changes(&self, since: Seq, upto: Option<Seq>) -> Result<ChangeIter> {
        let upto = self.read_seq(upto)?;
        // The state is taken after the visible seq was read, and the catalog
        // after that, so every change up to `upto` is in the state and its
        // table is in the catalog.
        let state = self.inner.shared.state();
        let catalog = self.inner.shared.catalog.snapshot();
        Ok(ChangeIter::new(state, catalog, since, upto.max(since)))
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// Stops the commit thread after it has committed every write already
    /// submitted, syncs and seals the WAL, and releases the data directory.
    /// Later writes fail with [`Error::Closed`]. Returns the WAL's final
    /// status: an error if the engine was poisoned or the final sync failed.
    pub fn close(&self) -> Result<()> {
        self.inner.stop()
    }
}

impl Inner {
    fn stop(&self) -> Result<()> {
        let Some(running) = self.running.lock().expect("engine lock poisoned").take() else {
            return Ok(());
        };
        let _ = running.requests.send(Request::Shutdown);
        match running.thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "engine shutdown on drop failed");
        }
    }
}

fn decode_row(table: &Table, seq: Seq, bytes: &[u8]) -> Result<Row> {
    row::decode(table.columns(), bytes).map_err(|what| Error::Undecodable {
        table: table.name().to_owned(),
        seq,
        what,
    })
}
