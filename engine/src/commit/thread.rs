//! The commit thread: the single owner of the commit order.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::change::ChangeRecord;
use crate::commit::request::{PreparedOp, WriteResult};
use crate::commit::resolve::{resolve_batch, Current, Overlay};
use crate::engine::Shared;
use crate::error::{Error, Result, Stage};
use crate::fault::FaultInjector;
use crate::flow::{self, Backlog, FlowLimits, Pressure};
use crate::flush::FlushSignal;
use crate::options::{Durability, Limits};
use crate::wal::format::encode_batch;
use crate::wal::writer::WalWriter;
use crate::Seq;

pub(crate) type Reply = oneshot::Sender<Result<WriteResult>>;

pub(crate) enum Request {
    Write {
        ops: Vec<PreparedOp>,
        reply: Reply,
    },
    /// Make the active memtable immutable (if it holds anything) and
    /// answer with the last committed seq.
    Rotate(Sender<Seq>),
    /// Finish what was received before, sync and seal the WAL, stop.
    Shutdown,
}

pub(crate) struct CommitThread {
    pub shared: Arc<Shared>,
    pub wal: WalWriter,
    pub durability: Durability,
    pub memtable_bytes: usize,
    pub max_group_requests: usize,
    pub limits: Limits,
    pub flow: FlowLimits,
    /// Wakes the flush worker when a memtable becomes immutable.
    pub flush: Sender<FlushSignal>,
    /// The seq the next change will get.
    pub next_seq: Seq,
    pub last_ts_micros: i64,
    /// Test hook: injected panics.
    pub faults: Option<Arc<FaultInjector>>,
}

/// Poisons the engine if the commit thread unwinds. Declared after the
/// group of pending replies, so it is dropped (and the engine poisoned)
/// before those replies are: their writers then see the failure.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison_panic(Stage::CommitThread, "commit", None);
        }
    }
}

impl CommitThread {
    /// Runs until `Shutdown` or until every sender is gone. Returns the
    /// result of the final sync, or the failure that stopped the engine.
    pub(crate) fn run(mut self, requests: Receiver<Request>) -> Result<()> {
        // Time of the oldest write not yet fdatasynced (async mode only).
        let mut unsynced_since: Option<Instant> = None;
        let mut group = Vec::with_capacity(self.max_group_requests);
        let shared = self.shared.clone();
        let _guard = PanicGuard(&shared);
        let mut shutdown = false;
        while !shutdown {
            let first = match (self.durability, unsynced_since) {
                (Durability::Async { interval }, Some(since)) => {
                    match requests.recv_timeout(interval.saturating_sub(since.elapsed())) {
                        Ok(request) => Some(request),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
            };
            group.clear();
            // Everything that arrived while the previous group was syncing
            // forms this group: batching without timers.
            for request in first
                .into_iter()
                .chain(std::iter::from_fn(|| requests.try_recv().ok()))
            {
                match request {
                    Request::Write { ops, reply } => group.push((ops, reply)),
                    Request::Rotate(reply) => {
                        self.rotate_memtable(0);
                        let _ = reply.send(self.next_seq - 1);
                    }
                    Request::Shutdown => {
                        shutdown = true;
                        break;
                    }
                }
                if group.len() >= self.max_group_requests {
                    break;
                }
            }
            if !group.is_empty() && !self.shared.is_poisoned() && !self.apply_flow_control() {
                // Closing while stalled: the stalled writes are refused.
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Err(Error::Closed));
                }
            }
            if self.shared.is_poisoned() {
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Err(self.shared.gone()));
                }
            } else if !group.is_empty() {
                if let Err((stage, cause)) = self.commit_group(&mut group, &mut unsynced_since) {
                    tracing::error!(%stage, error = %cause, "WAL failure; the engine is poisoned and accepts no more writes");
                    self.shared.poison(stage, cause);
                }
            }
            if let (Durability::Async { interval }, Some(since), false) =
                (self.durability, unsynced_since, self.shared.is_poisoned())
            {
                if shutdown || since.elapsed() >= interval {
                    match self.wal.sync() {
                        Ok(()) => {
                            unsynced_since = None;
                            self.shared.set_durable(self.next_seq - 1);
                        }
                        Err((stage, error)) => {
                            tracing::error!(%stage, %error, "background WAL sync failed; the engine is poisoned");
                            self.shared.poison(stage, Arc::new(error));
                        }
                    }
                }
            }
        }
        if let Some(error) = self.shared.poisoned() {
            return Err(error);
        }
        self.wal
            .close()
            .map_err(|(stage, error)| Error::CommitFailed {
                stage,
                cause: Arc::new(error),
            })
    }

    fn now_micros(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        // Commit timestamps never go backwards, even if the clock does.
        self.last_ts_micros = self.last_ts_micros.max(now);
        self.last_ts_micros
    }

    /// Commits one group. Requests that fail validation are answered at
    /// once; the rest share one WAL write and at most one fdatasync.
    fn commit_group(
        &mut self,
        group: &mut Vec<(Vec<PreparedOp>, Reply)>,
        unsynced_since: &mut Option<Instant>,
    ) -> Result<(), (Stage, Arc<Error>)> {
        if let Some(faults) = &self.faults {
            faults.before_commit_group();
        }
        self.maybe_rotate_memtable();
        let state = self.shared.state();
        let ts = self.now_micros();
        let mut overlay = Overlay::new();
        let mut lookup = |key: &bytes::Bytes| {
            Ok(state.get(key, Seq::MAX)?.map(|record| Current {
                seq: record.seq,
                row: record.after.clone(),
            }))
        };
        let mut frames = Vec::new();
        let mut accepted: Vec<(Vec<Arc<ChangeRecord>>, WriteResult, Reply)> =
            Vec::with_capacity(group.len());
        let mut next_seq = self.next_seq;
        for (ops, reply) in group.drain(..) {
            match resolve_batch(&ops, next_seq, ts, &mut overlay, &mut lookup, &self.limits) {
                Ok(resolved) => {
                    // A batch of no-op deletes has no frame, but its answer may
                    // rest on an earlier batch of this group, so it is given
                    // only once that batch is durable.
                    if !resolved.records.is_empty() {
                        next_seq += resolved.records.len() as Seq;
                        encode_batch(&mut frames, &resolved.records);
                    }
                    accepted.push((resolved.records, resolved.result, reply));
                }
                Err(e) => {
                    self.shared.metrics.rejected_batches.add(1);
                    let _ = reply.send(Err(e));
                }
            }
        }
        if frames.is_empty() {
            for (_, result, reply) in accepted {
                let _ = reply.send(Ok(result));
            }
            return Ok(());
        }

        let durable = self
            .wal
            .append(&frames, next_seq - 1)
            .and_then(|()| match self.durability {
                Durability::Sync => self.wal.sync(),
                Durability::Async { .. } => {
                    unsynced_since.get_or_insert_with(Instant::now);
                    Ok(())
                }
            });
        if let Err((stage, error)) = durable {
            let cause = Arc::new(error);
            for (_, _, reply) in accepted {
                let _ = reply.send(Err(Error::CommitFailed {
                    stage,
                    cause: cause.clone(),
                }));
            }
            return Err((stage, cause));
        }

        if self.durability == Durability::Sync {
            self.shared.set_durable(next_seq - 1);
        }
        let active = state.active().clone();
        let metrics = &self.shared.metrics;
        metrics.commit_groups.add(1);
        metrics.record_group(accepted.len());
        metrics.committed_batches.add(accepted.len() as u64);
        metrics.committed_changes.add(next_seq - self.next_seq);
        for (records, _, _) in &accepted {
            for record in records {
                active.insert(record.clone());
            }
        }
        self.next_seq = next_seq;
        // Every seq up to next_seq - 1 is applied: publishing it exposes no gap.
        self.shared.publish_visible(next_seq - 1, ts);
        for (_, result, reply) in accepted {
            let _ = reply.send(Ok(result));
        }
        Ok(())
    }

    fn maybe_rotate_memtable(&mut self) {
        self.rotate_memtable(self.memtable_bytes);
    }

    /// Rotates the active memtable if it holds at least `limit` bytes and
    /// is not empty.
    fn rotate_memtable(&mut self, limit: usize) {
        // Checked on a snapshot first: the state's write lock is taken only
        // when there is something to rotate, not once per group.
        let active = self.shared.state().active().clone();
        if active.approx_bytes() < limit || active.is_empty() {
            return;
        }
        let next_seq = self.next_seq;
        let rotated = self.shared.update_state(|state| {
            (state.active().approx_bytes() >= limit && !state.active().is_empty())
                .then(|| state.with_new_active(next_seq))
        });
        if rotated {
            self.shared.metrics.memtable_rotations.add(1);
            // The worker may be gone only during shutdown, when the WAL
            // still holds everything: nothing is lost by not flushing.
            let _ = self.flush.send(FlushSignal::Work);
        }
    }

    /// Slows or stalls before a group while flushes fall behind, so memory
    /// stays bounded. A stall ends when a flush completes or background
    /// work fails (the group is then refused).
    ///
    /// Returns `false` if the engine started closing during a stall: the
    /// group is then refused rather than committed behind a flush that
    /// will not come.
    fn apply_flow_control(&self) -> bool {
        let mut stalled = false;
        let mut progress = self.shared.progress();
        loop {
            let state = self.shared.state();
            let backlog = Backlog {
                immutable_memtables: state.immutable_count(),
                l0_files: state.levels[0].len(),
            };
            drop(state);
            match flow::decide(backlog, self.flow) {
                Pressure::Normal => return true,
                Pressure::Slow(delay) => {
                    drop(progress);
                    std::thread::sleep(delay);
                    return true;
                }
                // The group is refused with the failure.
                Pressure::Stall if self.shared.is_poisoned() => return true,
                Pressure::Stall if self.shared.is_closing() => return false,
                Pressure::Stall => {
                    if !stalled {
                        stalled = true;
                        self.shared.metrics.write_stalls.add(1);
                        tracing::warn!(?backlog, "writes stalled: flush or compaction is behind");
                    }
                    // Woken by every flush, compaction, failure and the
                    // start of shutdown; the condition is re-checked.
                    progress = self.shared.wait_for_progress(progress);
                }
            }
        }
    }
}
