//! Write flow control: a pure decision over the engine's backlog, acted on
//! by the commit thread. Memory stays bounded because writes stall when
//! immutable memtables wait for flushing.

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
}

pub(crate) fn decide(immutable_memtables: usize, limits: FlowLimits) -> Pressure {
    let stall_at = limits.max_immutable.max(1);
    let slow_at = stall_at.div_ceil(2).max(1);
    if immutable_memtables >= stall_at {
        Pressure::Stall
    } else if immutable_memtables >= slow_at && stall_at > 1 {
        // Delay grows with the backlog: 1 ms at the first step, more as
        // the stall point nears.
        Pressure::Slow(Duration::from_millis(
            (immutable_memtables - slow_at + 1) as u64,
        ))
    } else {
        Pressure::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_slow_then_stall_as_the_backlog_grows() {
        let limits = FlowLimits { max_immutable: 4 };
        let decisions: Vec<_> = (0..6).map(|n| decide(n, limits)).collect();
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
        assert_eq!(decide(0, FlowLimits { max_immutable: 1 }), Pressure::Normal);
        assert_eq!(decide(1, FlowLimits { max_immutable: 1 }), Pressure::Stall);
    }
}
