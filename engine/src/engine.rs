//! The engine handle: opening (with recovery), writes, reads, change scans
//! and an ordered shutdown.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::catalog::{Catalog, CreateTable};
use crate::codec::{key, row};
use crate::commit::request::{prepare, Mutation, WriteResult};
use crate::commit::thread::{CommitThread, Request};
use crate::compaction::pick::CompactionLimits;
use crate::consumers::{ConsumerInfo, Consumers};
use crate::error::{Error, Result, Stage};
use crate::flow::FlowLimits;
use crate::flush::{BackgroundConfig, FlushSignal, FlushWorker};
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::metrics::{EngineMetrics, MetricsSnapshot};
use crate::options::EngineOptions;
use crate::read::merge::{LatestAt, MergeIter, VersionSource};
use crate::read::ChangeIter;
use crate::schema::{Row, Table, TableSchema, Value};
use crate::sst::cache::BlockCache;
use crate::sst::reader::SstReader;
use crate::sst::{sst_path, SST_DIR};
use crate::state::{LsmState, TableFile};
use crate::wal::recovery::{self, WalReplay};
use crate::wal::segments::SealedSegments;
use crate::wal::writer::WalWriter;
use crate::wal::WAL_DIR;
use crate::Seq;

const LOCK_FILE: &str = "LOCK";

/// A failure that stopped the engine: the stage and the original error.
type Failure = (Stage, Arc<Error>);

/// State shared by the handle, the readers, the commit thread and the
/// flush worker.
pub(crate) struct Shared {
    pub catalog: Catalog,
    state: RwLock<Arc<LsmState>>,
    /// Highest seq such that every seq <= it is applied and readable.
    visible_seq: AtomicU64,
    /// The visible seq and the commit time of the change with that seq
    /// (0 before the first change), updated together.
    head: Mutex<(Seq, i64)>,
    visible_tx: watch::Sender<Seq>,
    /// Becomes `true` when the engine starts closing.
    closed_tx: watch::Sender<bool>,
    /// Held (shared) by operations that write metadata files, and taken
    /// (exclusive) to start closing, so no such write runs once closing
    /// has begun (after which the directory lock is released).
    lifecycle: RwLock<()>,
    /// Highest seq known to be on stable storage (fdatasynced). Equal to
    /// the visible seq in sync mode; behind it by up to the sync interval
    /// in async mode.
    durable_seq: AtomicU64,
    pub metrics: Arc<EngineMetrics>,
    /// Set when the WAL, background work or an engine thread fails; writes
    /// are refused from then on. The first failure wins.
    failure: Mutex<Option<Failure>>,
    /// Counts events that can end a write stall or a wait for a flush:
    /// flushes, compactions, a failure, the start of shutdown. Waiters
    /// check their condition while holding it, so none is missed.
    progress: Mutex<u64>,
    progressed: Condvar,
    pub consumers: Consumers,
    /// Held while low-water moves and while a consumer is created, so a
    /// consumer can never be created at a position retention is dropping.
    pub retention: Mutex<()>,
    /// The flush checkpoints of the committed manifest, for measuring
    /// history in bytes (consumer lag).
    checkpoints: Mutex<Arc<Vec<crate::retention::Checkpoint>>>,
}

impl Shared {
    pub(crate) fn checkpoints(&self) -> Arc<Vec<crate::retention::Checkpoint>> {
        self.checkpoints
            .lock()
            .expect("checkpoints lock poisoned")
            .clone()
    }

    pub(crate) fn set_checkpoints(&self, checkpoints: Vec<crate::retention::Checkpoint>) {
        *self.checkpoints.lock().expect("checkpoints lock poisoned") = Arc::new(checkpoints);
    }

    pub(crate) fn state(&self) -> Arc<LsmState> {
        self.state.read().expect("state lock poisoned").clone()
    }

    /// Replaces the state with `change(current)` if that returns one.
    /// Returns whether it did.
    pub(crate) fn update_state(&self, change: impl FnOnce(&LsmState) -> Option<LsmState>) -> bool {
        let mut guard = self.state.write().expect("state lock poisoned");
        match change(&guard) {
            Some(next) => {
                *guard = Arc::new(next);
                true
            }
            None => false,
        }
    }

    /// Publishes `seq` (committed at `ts_micros`) as visible.
    ///
    /// NOTE: the atomic is stored before the watch is sent, so the atomic
    /// is never behind the watch: a task woken by the watch and reading
    /// at the watched seq never gets `FutureSeq`.
    pub(crate) fn publish_visible(&self, seq: Seq, ts_micros: i64) {
        *self.head.lock().expect("head lock poisoned") = (seq, ts_micros);
        self.visible_seq.store(seq, Ordering::Release);
        self.visible_tx.send_replace(seq);
    }

    pub(crate) fn visible(&self) -> Seq {
        self.visible_seq.load(Ordering::Acquire)
    }

    pub(crate) fn set_durable(&self, seq: Seq) {
        self.durable_seq.fetch_max(seq, Ordering::AcqRel);
    }

    pub(crate) fn durable(&self) -> Seq {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Records a failure that stops the engine (the first one wins) and
    /// wakes every waiter. Returns the error later operations report.
    pub(crate) fn poison(&self, stage: Stage, cause: Arc<Error>) -> Error {
        let (stage, cause) = self
            .failure
            .lock()
            .expect("failure lock poisoned")
            .get_or_insert((stage, cause))
            .clone();
        // Wake a stalled commit thread so it refuses its writes.
        self.notify_progress();
        Error::Poisoned { stage, cause }
    }

    /// Records a panic of an engine thread. A panic poisons the engine
    /// twice: first from a guard dropped while the thread unwinds (before
    /// the writers' reply channels are dropped, so they see the failure
    /// rather than `Closed`), without the panic's message; then with the
    /// message once the panic is caught, which replaces the first.
    pub(crate) fn poison_panic(&self, stage: Stage, thread: &'static str, message: Option<String>) {
        let error = Arc::new(Error::Panicked {
            thread,
            message: message
                .clone()
                .unwrap_or_else(|| "(the message follows in the log)".to_owned()),
        });
        {
            let mut failure = self.failure.lock().expect("failure lock poisoned");
            let replace = match &*failure {
                None => true,
                Some((_, cause)) => {
                    message.is_some()
                        && matches!(&**cause, Error::Panicked { thread: t, .. } if *t == thread)
                }
            };
            if replace {
                *failure = Some((stage, error));
            }
        }
        self.notify_progress();
    }

    /// The error that describes the failure that stopped the engine.
    pub(crate) fn poisoned(&self) -> Option<Error> {
        self.failure
            .lock()
            .expect("failure lock poisoned")
            .clone()
            .map(|(stage, cause)| Error::Poisoned { stage, cause })
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.failure
            .lock()
            .expect("failure lock poisoned")
            .is_some()
    }

    /// Whether the engine has started closing.
    pub(crate) fn is_closing(&self) -> bool {
        *self.closed_tx.borrow()
    }

    /// Runs `op` unless the engine is closing; closing waits for it.
    pub(crate) fn while_open<T>(&self, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let _open = self.lifecycle.read().expect("lifecycle lock poisoned");
        if self.is_closing() {
            return Err(Error::Closed);
        }
        op()
    }

    /// The error for an operation that found the engine's threads gone:
    /// the failure that stopped it, else `Closed`.
    pub(crate) fn gone(&self) -> Error {
        self.poisoned().unwrap_or(Error::Closed)
    }

    pub(crate) fn progress(&self) -> MutexGuard<'_, u64> {
        self.progress.lock().expect("progress lock poisoned")
    }

    /// Waits until something that may end a stall happens. Callers check
    /// their condition while holding `progress`, so no wake-up is lost.
    pub(crate) fn wait_for_progress<'a>(
        &self,
        progress: MutexGuard<'a, u64>,
    ) -> MutexGuard<'a, u64> {
        self.progressed
            .wait(progress)
            .expect("progress lock poisoned")
    }

    pub(crate) fn notify_progress(&self) {
        *self.progress() += 1;
        self.progressed.notify_all();
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
    commit: JoinHandle<Result<()>>,
    flush_signal: Sender<FlushSignal>,
    flush: JoinHandle<()>,
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
    limits: crate::options::Limits,
}

impl Engine {
    /// Opens (creating if needed) the engine in `options.data_dir`, replays
    /// the WAL and starts the commit thread.
    pub fn open(options: EngineOptions) -> Result<Engine> {
        options.validate()?;
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

        // Before anything in the directory is created, changed or deleted.
        let manifest = crate::datadir::check_metadata(&dir)?;
        let catalog = Catalog::open(&dir)?;
        let catalog_snapshot = catalog.snapshot();
        let consumers = Consumers::open(&dir, options.faults.clone())?;
        check_catalog_covers(&dir, &manifest, &catalog_snapshot)?;

        let sst_dir = dir.join(SST_DIR);
        fs::create_dir_all(&sst_dir).map_err(Error::io(&sst_dir))?;
        let cache = Arc::new(BlockCache::new(options.block_cache_bytes));
        let levels = open_table_files(&sst_dir, &manifest, &cache)?;

        let wal_dir = dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).map_err(Error::io(&wal_dir))?;
        // Replay what is not flushed into memtables of the configured
        // size, as the commit thread would have built them.
        let mut memtables: Vec<Arc<Memtable>> =
            vec![Arc::new(Memtable::new(manifest.flushed_seq + 1))];
        let mut last_ts = 0;
        let wal = recovery::replay(&wal_dir, manifest.flushed_seq, |records| {
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
        delete_unlisted_table_files(&sst_dir, &manifest)?;
        consumers.reconcile(wal.last_seq, manifest.low_water)?;
        let sealed = Arc::new(SealedSegments::new(wal_dir.clone(), wal.sealed.clone()));
        // A crash between a manifest commit and the WAL cleanup leaves
        // segments the manifest already covers.
        sealed.delete_through(manifest.flushed_seq)?;
        let recovery = Recovery {
            tables: catalog_snapshot.tables().len(),
            wal: wal.clone(),
        };
        tracing::info!(
            dir = %dir.display(),
            tables = recovery.tables,
            flushed_seq = manifest.flushed_seq,
            table_files = levels.iter().map(Vec::len).sum::<usize>(),
            low_water = manifest.low_water,
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
            sealed.clone(),
            wal.last_seq,
        )?;
        let (visible_tx, _) = watch::channel(wal.last_seq);
        let head_ts = if wal.batches > 0 {
            last_ts
        } else {
            // Everything is flushed: the newest checkpoint is the flush of
            // the last change (checkpoints at or below low-water are
            // pruned down to the newest one, never all of them).
            manifest.checkpoints.last().map_or(0, |c| c.ts_micros)
        };
        let (closed_tx, _) = watch::channel(false);
        let has_immutable = memtables.len() > 1;
        let shared = Arc::new(Shared {
            catalog,
            state: RwLock::new(Arc::new(LsmState {
                memtables,
                levels,
                flushed_seq: manifest.flushed_seq,
                low_water: manifest.low_water,
            })),
            visible_seq: AtomicU64::new(wal.last_seq),
            head: Mutex::new((wal.last_seq, head_ts)),
            visible_tx,
            closed_tx,
            lifecycle: RwLock::new(()),
            durable_seq: AtomicU64::new(wal.last_seq),
            metrics,
            failure: Mutex::new(None),
            progress: Mutex::new(0),
            progressed: Condvar::new(),
            consumers,
            retention: Mutex::new(()),
            checkpoints: Mutex::new(Arc::new(manifest.checkpoints.clone())),
        });

        let (flush_signal, flush_signals) = mpsc::channel();
        let flusher = FlushWorker {
            shared: shared.clone(),
            data_dir: dir.clone(),
            sst_dir,
            manifest,
            sealed,
            faults: options.faults.clone(),
            config: BackgroundConfig {
                history_window: options.history_window,
                history_bytes: options.history_bytes,
                limits: CompactionLimits {
                    l0_trigger: options.l0_compaction_trigger,
                    level_base_bytes: options.level_base_bytes,
                    ratio: 10,
                    max_levels: 7,
                },
                table_file_bytes: options.table_file_bytes,
                max_retention_bytes: options.max_retention_bytes,
                consumer_idle_expiry: options.consumer_idle_expiry,
            },
            cache,
        };
        let flush = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tidefeed-flush".into())
                .spawn(move || {
                    guard_panics(&shared, Stage::BackgroundThread, "background", || {
                        flusher.run(flush_signals)
                    });
                })
                .map_err(Error::io(&dir))?
        };
        if has_immutable {
            let _ = flush_signal.send(FlushSignal::Work);
        }

        let committer = CommitThread {
            shared: shared.clone(),
            wal: writer,
            durability: options.durability,
            memtable_bytes: options.memtable_bytes,
            max_group_requests: options.max_group_requests,
            limits: options.limits,
            flow: FlowLimits {
                max_immutable: options.max_immutable_memtables,
                max_l0_files: options.max_l0_files,
            },
            flush: flush_signal.clone(),
            next_seq: wal.last_seq + 1,
            last_ts_micros: head_ts,
            faults: options.faults.clone(),
        };
        let (requests, receiver) = mpsc::channel();
        let commit_shared = shared.clone();
        let commit = match std::thread::Builder::new()
            .name("tidefeed-commit".into())
            .spawn(move || {
                guard_panics(&commit_shared, Stage::CommitThread, "commit", || {
                    committer.run(receiver)
                })
                .unwrap_or_else(|| Err(commit_shared.gone()))
            }) {
            Ok(commit) => commit,
            Err(e) => {
                let _ = flush_signal.send(FlushSignal::Shutdown);
                let _ = flush.join();
                return Err(Error::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                shared,
                running: Mutex::new(Some(Running {
                    requests: requests.clone(),
                    commit,
                    flush_signal,
                    flush,
                    _lock: lock,
                })),
                requests,
                data_dir: dir,
                recovery,
                limits: options.limits,
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
        let shared = &self.inner.shared;
        shared.while_open(|| shared.catalog.create(schema))
    }

    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.inner.shared.catalog.snapshot().by_name(name).cloned()
    }

    /// All tables, in creation order.
    pub fn tables(&self) -> Vec<Arc<Table>> {
        self.inner.shared.catalog.snapshot().tables()
    }

    fn submit(&self, batch: Vec<Mutation>) -> Result<oneshot::Receiver<Result<WriteResult>>> {
        let shared = &self.inner.shared;
        if shared.is_closing() {
            return Err(shared.gone());
        }
        let ops = prepare(&shared.catalog.snapshot(), batch, &self.inner.limits)?;
        let (reply, receiver) = oneshot::channel();
        self.inner
            .requests
            .send(Request::Write { ops, reply })
            .map_err(|_| shared.gone())?;
        Ok(receiver)
    }

    /// Commits an atomic batch and waits until it is durable under the
    /// configured mode. Blocks the calling thread.
    ///
    /// # Panics
    ///
    /// If called from inside a tokio runtime (the reply channel's blocking
    /// receive refuses to block an executor thread); async code uses
    /// [`Engine::write_async`].
    pub fn write(&self, batch: Vec<Mutation>) -> Result<WriteResult> {
        self.submit(batch)?
            .blocking_recv()
            .map_err(|_| self.inner.shared.gone())?
    }

    /// [`Engine::write`] for async callers. Validation runs on the calling
    /// task; waiting for durability does not block the executor.
    pub async fn write_async(&self, batch: Vec<Mutation>) -> Result<WriteResult> {
        self.submit(batch)?
            .await
            .map_err(|_| self.inner.shared.gone())?
    }

    /// The highest seq readers can see. Every seq at or below it is applied.
    pub fn visible_seq(&self) -> Seq {
        self.inner.shared.visible()
    }

    /// A receiver that changes whenever `visible_seq` advances. It is a
    /// wake-up signal: [`Engine::visible_seq`] is never behind it.
    pub fn watch_visible(&self) -> watch::Receiver<Seq> {
        self.inner.shared.visible_tx.subscribe()
    }

    /// The visible seq and the commit time (microseconds since the Unix
    /// epoch) of the change with that seq, read together; `(0, 0)` for an
    /// empty log.
    pub fn visible_head(&self) -> (Seq, i64) {
        *self.inner.shared.head.lock().expect("head lock poisoned")
    }

    /// A receiver whose value becomes `true` when the engine starts
    /// closing (it never goes back). Long-lived readers such as live
    /// subscriptions select on it to end promptly.
    pub fn watch_closed(&self) -> watch::Receiver<bool> {
        self.inner.shared.closed_tx.subscribe()
    }

    /// Whether [`Engine::close`] has been called (or the last handle dropped).
    pub fn is_closed(&self) -> bool {
        *self.inner.shared.closed_tx.borrow()
    }

    /// The seq a read runs at, and the state it reads: `at` must lie in
    /// `[low_water, visible_seq]`. The state is taken after the visible seq
    /// is read, so it holds every change up to it.
    fn read_at(&self, at: Option<Seq>) -> Result<(Seq, Arc<LsmState>)> {
        if self.inner.shared.is_closing() {
            return Err(Error::Closed);
        }
        let visible = self.visible_seq();
        let state = self.inner.shared.state();
        let at = match at {
            Some(requested) if requested > visible => {
                return Err(Error::FutureSeq { requested, visible })
            }
            Some(requested) => requested,
            None => visible,
        };
        if at < state.low_water {
            return Err(Error::BelowRetention {
                requested: at,
                low_water: state.low_water,
            });
        }
        Ok((at, state))
    }

    fn table_or_err(&self, name: &str) -> Result<Arc<Table>> {
        self.table(name).ok_or_else(|| Error::NoSuchTable {
            table: name.to_owned(),
        })
    }

    /// The row with this key (values in primary-key order) as of `at`
    /// (default: the visible seq).
    pub fn get(&self, table: &str, key: &[Value], at: Option<Seq>) -> Result<Option<RowVersion>> {
        let (at, state) = self.read_at(at)?;
        let table = self.table_or_err(table)?;
        table.check_key(key)?;
        let encoded = Bytes::from(key::encode(table.id(), key));
        match state.get(&encoded, at)? {
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
        self.scan_within(table, range, limit, usize::MAX, at)
    }

    /// [`Engine::scan`], stopping once the page holds `max_bytes` of
    /// stored rows (it always holds at least one row when one is in
    /// range); `next` says where the following page starts.
    pub fn scan_within(
        &self,
        table: &str,
        range: &KeyRange,
        limit: usize,
        max_bytes: usize,
        at: Option<Seq>,
    ) -> Result<ScanPage> {
        let (at, state) = self.read_at(at)?;
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
        let mut sources: Vec<VersionSource<'_>> = state
            .memtables
            .iter()
            .map(|m| Box::new(m.range(&start, end.as_ref()).map(Ok)) as VersionSource<'_>)
            .collect();
        for file in state
            .files()
            .filter(|f| f.reader.min_seq() <= at && f.overlaps(&start, end.as_deref()))
        {
            sources.push(Box::new(
                file.reader
                    .range(start.clone(), end.clone())
                    .map(|r| r.map(Arc::new)),
            ));
        }
        let mut live = LatestAt::new(MergeIter::new(sources), at);
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0;
        for record in live.by_ref().take(limit) {
            let record = record?;
            let after = record.after.as_ref().expect("LatestAt yields live rows");
            bytes += after.len();
            rows.push(RowVersion {
                seq: record.seq,
                row: decode_row(&table, record.seq, after)?,
            });
            if bytes >= max_bytes {
                break;
            }
        }
        let next = match live.next().transpose()? {
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
        let (upto, state) = self.read_at(upto)?;
        if since > upto {
            // A position the log never reached: an empty answer would hide
            // the mistake (a stale position from another directory, say).
            return Err(Error::FutureSeq {
                requested: since,
                visible: self.visible_seq(),
            });
        }
        if since < state.low_water {
            return Err(Error::BelowRetention {
                requested: since,
                low_water: state.low_water,
            });
        }
        // The catalog is taken after the state, so every change up to
        // `upto` has its table in it.
        let catalog = self.inner.shared.catalog.snapshot();
        Ok(ChangeIter::new(state, catalog, since, upto.max(since)))
    }

    /// Creates a durable consumer at `position` (default: the visible
    /// seq). While it is valid, retention keeps every change after its
    /// position.
    pub fn create_consumer(&self, name: &str, position: Option<Seq>) -> Result<ConsumerInfo> {
        let shared = &self.inner.shared;
        shared.while_open(|| {
            let _retention = shared.retention.lock().expect("retention lock poisoned");
            let (position, state) = self.read_at(position)?;
            debug_assert!(position >= state.low_water);
            shared
                .consumers
                .create(name, position, now_micros(), shared.durable())
        })
    }

    /// The consumer, whether valid or invalidated (with the reason).
    pub fn consumer(&self, name: &str) -> Result<ConsumerInfo> {
        if self.inner.shared.is_closing() {
            return Err(Error::Closed);
        }
        Ok(self.with_lag(self.inner.shared.consumers.get(name)?))
    }

    fn with_lag(&self, mut info: ConsumerInfo) -> ConsumerInfo {
        let visible = self.visible_seq();
        info.lag = visible.saturating_sub(info.position);
        // Flushed history after the position (at flush granularity), plus
        // the memtables if they hold changes after it.
        let state = self.inner.shared.state();
        let checkpoints = self.inner.shared.checkpoints();
        let flushed =
            crate::retention::history_bytes(&checkpoints, info.position, state.flushed_seq);
        let unflushed = if visible > info.position.max(state.flushed_seq) {
            state
                .memtables
                .iter()
                .map(|m| m.approx_bytes() as u64)
                .sum()
        } else {
            0
        };
        info.lag_bytes = flushed + unflushed;
        info
    }

    /// A valid consumer's position; for an invalidated one, the error that
    /// says why (its history may be gone).
    pub fn consumer_position(&self, name: &str) -> Result<Seq> {
        if self.inner.shared.is_closing() {
            return Err(Error::Closed);
        }
        Ok(self.inner.shared.consumers.get_valid(name)?.position)
    }

    /// Every consumer, by name, with its lag.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        self.inner
            .shared
            .consumers
            .list()
            .into_iter()
            .map(|c| self.with_lag(c))
            .collect()
    }

    /// Acknowledges every change up to `seq` for the consumer. Acks never
    /// move a position back. Fails for an invalidated consumer, saying why.
    pub fn ack_consumer(&self, name: &str, seq: Seq) -> Result<ConsumerInfo> {
        let visible = self.visible_seq();
        if seq > visible {
            return Err(Error::FutureSeq {
                requested: seq,
                visible,
            });
        }
        let shared = &self.inner.shared;
        shared.while_open(|| shared.consumers.ack(name, seq, now_micros()))
    }

    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        let shared = &self.inner.shared;
        shared.while_open(|| shared.consumers.delete(name, shared.durable()))
    }

    /// Every change with seq above this is retained.
    pub fn low_water(&self) -> Seq {
        self.inner.shared.state().low_water
    }

    /// Makes every write committed so far part of a table file: rotates the
    /// active memtable and waits for the flush. For tests and operations.
    pub fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        if shared.is_closing() {
            return Err(shared.gone());
        }
        let (reply, done) = mpsc::channel();
        self.inner
            .requests
            .send(Request::Rotate(reply))
            .map_err(|_| shared.gone())?;
        let target = done.recv().map_err(|_| shared.gone())?;
        let mut progress = shared.progress();
        while shared.state().flushed_seq < target {
            if let Some(error) = shared.poisoned() {
                return Err(error);
            }
            if shared.is_closing() {
                // The worker that would flush is stopping.
                return Err(Error::Closed);
            }
            progress = shared.wait_for_progress(progress);
        }
        Ok(())
    }

    /// Compacts every table file into one bottom level, collapsing history
    /// at or below the low-water mark. Memtables are not flushed by it.
    pub fn compact(&self) -> Result<()> {
        self.background_round(FlushSignal::CompactAll)
    }

    /// Runs one round of background work now and waits for it: flushes
    /// waiting memtables, moves the low-water mark (invalidating consumers
    /// as the retention rules say) and compacts every level over its limit.
    /// Background work runs on its own anyway; this makes its effects
    /// deterministic for tests and operations.
    pub fn settle(&self) -> Result<()> {
        self.background_round(FlushSignal::Settle)
    }

    fn background_round(&self, signal: fn(mpsc::Sender<Result<()>>) -> FlushSignal) -> Result<()> {
        let (reply, done) = mpsc::channel();
        let running = self.inner.running.lock().expect("engine lock poisoned");
        let sender = running.as_ref().ok_or(Error::Closed)?.flush_signal.clone();
        drop(running);
        let shared = &self.inner.shared;
        sender.send(signal(reply)).map_err(|_| shared.gone())?;
        match done.recv() {
            Ok(result) => result,
            Err(_) => Err(self.inner.shared.gone()),
        }
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let state = self.inner.shared.state();
        let mut level_bytes = [0; crate::metrics::MAX_LEVELS];
        for (slot, level) in level_bytes.iter_mut().zip(&state.levels) {
            *slot = level.iter().map(|f| f.bytes).sum();
        }
        MetricsSnapshot {
            immutable_memtables: state.immutable_count() as u64,
            l0_files: state.levels[0].len() as u64,
            table_files: state.files().count() as u64,
            flushed_seq: state.flushed_seq,
            low_water: state.low_water,
            memtable_bytes: state
                .memtables
                .iter()
                .map(|m| m.approx_bytes() as u64)
                .sum(),
            table_bytes: level_bytes.iter().sum(),
            level_bytes,
            ..self.inner.shared.metrics.snapshot()
        }
    }

    /// The failure that stopped the engine, if one did (a failed WAL
    /// write or sync, flush, compaction, metadata write or a panicked
    /// engine thread). Readiness checks use it.
    pub fn failure(&self) -> Option<Error> {
        self.inner.shared.poisoned()
    }

    /// Stops the commit thread after it has committed every write already
    /// submitted, syncs and seals the WAL, stops the flush worker, and
    /// releases the data directory.
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
        // From here on, operations are refused; a stalled commit thread
        // wakes up and refuses its stalled writes.
        {
            let _closing = self
                .shared
                .lifecycle
                .write()
                .expect("lifecycle lock poisoned");
            self.shared.closed_tx.send_replace(true);
        }
        self.shared.notify_progress();
        // The commit thread first: it commits everything already
        // submitted (unless stalled). Then the background worker, which
        // writes pending consumer acks. Panics were turned into a poisoned
        // engine inside the threads, so joining cannot fail.
        let _ = running.requests.send(Request::Shutdown);
        let committed = running
            .commit
            .join()
            .unwrap_or_else(|_| Err(self.shared.gone()));
        let _ = running.flush_signal.send(FlushSignal::Shutdown);
        let _ = running.flush.join();
        // The lock is released (by dropping it) only after both threads
        // are gone: nothing of this engine writes to the directory after
        // another engine may have opened it.
        drop(running._lock);
        match (committed, self.shared.poisoned()) {
            (Err(error), _) => Err(error),
            (Ok(()), Some(error)) => Err(error),
            (Ok(()), None) => Ok(()),
        }
    }
}

impl Drop for Inner {
    /// Dropping the last handle closes the engine, which joins its threads.
    /// On a worker of a multi-threaded tokio runtime that blocking is moved
    /// off the executor (`block_in_place`), so the runtime's other tasks
    /// keep running meanwhile.
    fn drop(&mut self) {
        let stop = || {
            if let Err(error) = self.stop() {
                tracing::error!(%error, "engine shutdown on drop failed");
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(stop),
            _ => stop(),
        }
    }
}

/// Runs an engine thread's body; a panic poisons the engine with the
/// panic's message (so writers get an error, not a hang) instead of
/// unwinding into `close`. Returns `None` after a panic.
fn guard_panics<T>(
    shared: &Shared,
    stage: Stage,
    thread: &'static str,
    body: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
            tracing::error!(thread, %message, "an engine thread panicked; the engine is poisoned");
            shared.poison_panic(stage, thread, Some(message));
            None
        }
    }
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn decode_row(table: &Table, seq: Seq, bytes: &[u8]) -> Result<Row> {
    row::decode(table.columns(), bytes).map_err(|what| Error::Undecodable {
        table: table.name().to_owned(),
        seq,
        what,
    })
}

/// Every table a table file holds rows of must be in the catalog. Tables
/// get increasing ids and are never dropped, so a catalog whose highest id
/// is below a table file's is stale (an older copy restored over a newer
/// one); trusting it would give a new table the old table's id and rows.
/// (Records in the WAL are checked one by one during replay.)
fn check_catalog_covers(
    dir: &std::path::Path,
    manifest: &Manifest,
    catalog: &crate::catalog::CatalogSnapshot,
) -> Result<()> {
    let highest_known = catalog.tables().last().map_or(0, |t| t.id());
    let highest_stored = manifest
        .levels
        .iter()
        .flatten()
        .filter_map(|f| key::table_of(&f.largest_key))
        .max()
        .unwrap_or(0);
    if highest_stored > highest_known {
        return Err(Error::Corruption {
            file: dir.join(crate::catalog::CATALOG_FILE),
            offset: 0,
            problem: crate::error::Corruption::StaleCatalog {
                table_id: highest_stored,
                highest_known,
            },
        });
    }
    Ok(())
}

/// Deletes table files the manifest does not list: outputs of a flush or
/// compaction that crashed before its manifest commit, or inputs of a
/// committed compaction that were still pinned. Called only once the
/// manifest, its files and the WAL have all checked out, so a manifest
/// that does not belong with the directory's files stops start-up before
/// any file is deleted.
fn delete_unlisted_table_files(sst_dir: &std::path::Path, manifest: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<PathBuf> = manifest
        .levels
        .iter()
        .flatten()
        .map(|f| sst_path(sst_dir, f.id))
        .collect();
    for entry in fs::read_dir(sst_dir).map_err(Error::io(sst_dir))? {
        let path = entry.map_err(Error::io(sst_dir))?.path();
        if !listed.contains(&path) {
            tracing::warn!(file = %path.display(), "deleting a table file no manifest refers to");
            fs::remove_file(&path).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

/// Opens the table files the manifest lists, level by level.
fn open_table_files(
    sst_dir: &std::path::Path,
    manifest: &Manifest,
    cache: &Arc<BlockCache>,
) -> Result<Vec<Vec<Arc<TableFile>>>> {
    let open = |entry: &crate::manifest::FileEntry| -> Result<Arc<TableFile>> {
        let path = sst_path(sst_dir, entry.id);
        if !path.exists() {
            return Err(Error::Corruption {
                file: path,
                offset: 0,
                problem: crate::error::Corruption::MissingTableFile,
            });
        }
        let reader = SstReader::open(&path, Some((entry.id, cache.clone())))?;
        if (reader.min_seq(), reader.max_seq(), reader.entries())
            != (entry.min_seq, entry.max_seq, entry.entries)
        {
            return Err(Error::Corruption {
                file: path,
                offset: 0,
                problem: crate::error::Corruption::BadFooter(
                    "table file does not match its manifest entry",
                ),
            });
        }
        Ok(Arc::new(TableFile {
            id: entry.id,
            reader: Arc::new(reader),
            smallest: Bytes::from(entry.smallest_key.clone()),
            largest: Bytes::from(entry.largest_key.clone()),
            bytes: entry.file_bytes,
        }))
    };
    manifest
        .levels
        .iter()
        .map(|level| level.iter().map(open).collect())
        .collect()
}
