//! Fault injection for the WAL and flushes, so tests can prove fail-stop behaviour
//! without a failing disk. Production code carries one relaxed atomic load
//! per write and per sync when an injector is installed, nothing otherwise.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Arms failures of upcoming WAL operations.
///
/// A countdown of `n` makes the n-th following operation of that kind fail
/// (1 = the next one); 0 means disarmed.
#[derive(Debug, Default)]
pub struct FaultInjector {
    sync_countdown: AtomicU64,
    write_countdown: AtomicU64,
    flush_countdown: AtomicU64,
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

    fn fire(countdown: &AtomicU64, what: &str) -> io::Result<()> {
        let previous = countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .unwrap_or(0);
        if previous == 1 {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        Ok(())
    }

    pub(crate) fn before_sync(&self) -> io::Result<()> {
        Self::fire(&self.sync_countdown, "fdatasync")
    }

    pub(crate) fn before_write(&self) -> io::Result<()> {
        Self::fire(&self.write_countdown, "write")
    }

    pub(crate) fn before_flush(&self) -> io::Result<()> {
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
