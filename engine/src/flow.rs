//! Write flow control: a pure decision over the engine's backlog, acted on
//! by the commit thread. Memory stays bounded because writes stall when
//! immutable memtables wait for flushing, and read cost stays bounded
//! because writes stall when L0 files wait for compaction.

use std::time::Duration;

/// What the commit thread does before committing the next group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pressure {
    Normal,
    /// Delay each group by this much, to let background work catch up.
    Slow(Duration),
    /// Commit nothing until the backlog shrinks.
    Stall,
}

/// Limits of the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowLimits {
    /// Immutable memtables waiting for flush at which writes stall.
    pub max_immutable: usize,
    /// L0 files at which writes stall; from half of it on, they slow.
    pub max_l0_files: usize,
}

/// The backlog right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backlog {
    pub immutable_memtables: usize,
    pub l0_files: usize,
}

/// Slow from half the limit on (1 ms more per step), stall at the limit.
fn pressure(count: usize, limit: usize) -> Pressure {
    let stall_at = limit.max(1);
    let slow_at = stall_at.div_ceil(2).max(1);
    if count >= stall_at {
        Pressure::Stall
    } else if count >= slow_at && stall_at > 1 {
        Pressure::Slow(Duration::from_millis((count - slow_at + 1) as u64))
    } else {
        Pressure::Normal
    }
}

pub(crate) fn decide(backlog: Backlog, limits: FlowLimits) -> Pressure {
    let memtables = pressure(backlog.immutable_memtables, limits.max_immutable);
    let l0 = pressure(backlog.l0_files, limits.max_l0_files);
    match (memtables, l0) {
        (Pressure::Stall, _) | (_, Pressure::Stall) => Pressure::Stall,
        (Pressure::Slow(a), Pressure::Slow(b)) => Pressure::Slow(a.max(b)),
        (Pressure::Slow(d), Pressure::Normal) | (Pressure::Normal, Pressure::Slow(d)) => {
            Pressure::Slow(d)
        }
        (Pressure::Normal, Pressure::Normal) => Pressure::Normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(immutable_memtables: usize, l0_files: usize) -> Backlog {
        Backlog {
            immutable_memtables,
            l0_files,
        }
    }

    #[test]
    fn writes_slow_then_stall_as_the_backlog_grows() {
        let limits = FlowLimits {
            max_immutable: 4,
            max_l0_files: 20,
        };
        let decisions: Vec<_> = (0..6).map(|n| decide(backlog(n, 0), limits)).collect();
        assert_eq!(
            decisions,
            vec![
                Pressure::Normal,
                Pressure::Normal,
                Pressure::Slow(Duration::from_millis(1)),
                Pressure::Slow(Duration::from_millis(2)),
                Pressure::Stall,
                Pressure::Stall,
            ]
        );
        let one = FlowLimits {
            max_immutable: 1,
            max_l0_files: 20,
        };
        assert_eq!(decide(backlog(0, 0), one), Pressure::Normal);
        assert_eq!(decide(backlog(1, 0), one), Pressure::Stall);
    }

    #[test]
    fn l0_files_waiting_for_compaction_slow_and_stall_writes_too() {
        let limits = FlowLimits {
            max_immutable: 4,
            max_l0_files: 20,
        };
        assert_eq!(decide(backlog(0, 9), limits), Pressure::Normal);
        assert_eq!(
            decide(backlog(0, 10), limits),
            Pressure::Slow(Duration::from_millis(1))
        );
        assert_eq!(
            decide(backlog(3, 12), limits),
            Pressure::Slow(Duration::from_millis(3))
        );
        assert_eq!(decide(backlog(0, 20), limits), Pressure::Stall);
        assert_eq!(decide(backlog(4, 0), limits), Pressure::Stall);
    }
}
