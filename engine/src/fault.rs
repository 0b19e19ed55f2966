//! Fault injection for the WAL, flushes, compactions, metadata writes and
//! engine threads, so tests can prove fail-stop behaviour without a
//! failing disk or a real bug. Production code carries one atomic load per
//! hook when an injector is installed, nothing otherwise.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Arms failures of upcoming WAL operations.
///
/// A countdown of `n` makes the n-th following operation of that kind fail
/// (1 = the next one); 0 means disarmed.
#[derive(Debug, Default)]
pub struct FaultInjector {
    sync_countdown: AtomicU64,
    write_countdown: AtomicU64,
    flush_countdown: AtomicU64,
    compaction_countdown: AtomicU64,
    manifest_countdown: AtomicU64,
    consumers_countdown: AtomicU64,
    background_panic_countdown: AtomicU64,
    commit_panic_countdown: AtomicU64,
    /// While set, flushes wait before writing their table file.
    flushes_paused: Mutex<bool>,
    flushes_resumed: Condvar,
    any_paused: AtomicBool,
}

impl FaultInjector {
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Makes the `n`-th WAL fdatasync from now fail with an I/O error.
    pub fn fail_sync_after(&self, n: u64) {
        self.sync_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the `n`-th WAL write from now fail with an I/O error.
    pub fn fail_write_after(&self, n: u64) {
        self.write_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the `n`-th memtable flush from now fail with an I/O error.
    pub fn fail_flush_after(&self, n: u64) {
        self.flush_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the `n`-th compaction from now fail with an I/O error.
    pub fn fail_compaction_after(&self, n: u64) {
        self.compaction_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the `n`-th manifest commit from now fail with an I/O error.
    pub fn fail_manifest_after(&self, n: u64) {
        self.manifest_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the `n`-th write of `consumers.json` from now fail.
    pub fn fail_consumers_file_after(&self, n: u64) {
        self.consumers_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the background thread panic at the start of its `n`-th round
    /// of work from now.
    pub fn panic_background_after(&self, n: u64) {
        self.background_panic_countdown.store(n, Ordering::SeqCst);
    }

    /// Makes the commit thread panic on the `n`-th commit group from now.
    pub fn panic_commit_after(&self, n: u64) {
        self.commit_panic_countdown.store(n, Ordering::SeqCst);
    }

    /// Holds every flush before it writes its table file until
    /// [`FaultInjector::resume_flushes`], so a test can fill the memtable
    /// backlog and stall writes.
    pub fn pause_flushes(&self) {
        *self.flushes_paused.lock().expect("fault lock poisoned") = true;
        self.any_paused.store(true, Ordering::SeqCst);
    }

    pub fn resume_flushes(&self) {
        *self.flushes_paused.lock().expect("fault lock poisoned") = false;
        self.flushes_resumed.notify_all();
    }

    fn fires(countdown: &AtomicU64) -> bool {
        countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .unwrap_or(0)
            == 1
    }

    fn fire(countdown: &AtomicU64, what: &str) -> io::Result<()> {
        if Self::fires(countdown) {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        Ok(())
    }

    pub(crate) fn before_compaction(&self) -> io::Result<()> {
        Self::fire(&self.compaction_countdown, "compaction")
    }

    pub(crate) fn before_manifest(&self) -> io::Result<()> {
        Self::fire(&self.manifest_countdown, "manifest")
    }

    pub(crate) fn before_consumers_file(&self) -> io::Result<()> {
        Self::fire(&self.consumers_countdown, "consumers file")
    }

    pub(crate) fn before_background_round(&self) {
        if Self::fires(&self.background_panic_countdown) {
            panic!("injected panic in the background thread");
        }
    }

    pub(crate) fn before_commit_group(&self) {
        if Self::fires(&self.commit_panic_countdown) {
            panic!("injected panic in the commit thread");
        }
    }

    pub(crate) fn before_sync(&self) -> io::Result<()> {
        Self::fire(&self.sync_countdown, "fdatasync")
    }

    pub(crate) fn before_write(&self) -> io::Result<()> {
        Self::fire(&self.write_countdown, "write")
    }

    pub(crate) fn before_flush(&self) -> io::Result<()> {
        if self.any_paused.load(Ordering::SeqCst) {
            let mut paused = self.flushes_paused.lock().expect("fault lock poisoned");
            while *paused {
                paused = self
                    .flushes_resumed
                    .wait(paused)
                    .expect("fault lock poisoned");
            }
        }
        Self::fire(&self.flush_countdown, "flush")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_fires_once_on_the_nth_operation() {
        let faults = FaultInjector::new();
        assert!(faults.before_sync().is_ok());
        faults.fail_sync_after(2);
        assert!(faults.before_sync().is_ok());
        assert!(faults.before_sync().is_err());
        assert!(faults.before_sync().is_ok());
        assert!(faults.before_write().is_ok());
    }
}
