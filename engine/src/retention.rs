//! The low-water mark: a pure decision over the retention policy.
//!
//! Every change with seq above low-water is kept (with its before-image)
//! through flush and compaction; below it, history collapses. For now the
//! policy is a time window measured against flush checkpoints; durable
//! consumers join it with the change feed (issue [3/6]).

use std::time::Duration;

use crate::Seq;

/// The highest checkpointed seq whose commit time is older than `window`,
/// never below `current`. `None` keeps history forever.
pub(crate) fn low_water(
    current: Seq,
    checkpoints: &[(i64, Seq)],
    now_micros: i64,
    window: Option<Duration>,
) -> Seq {
    let Some(window) = window else {
        return current;
    };
    let horizon = now_micros.saturating_sub(i64::try_from(window.as_micros()).unwrap_or(i64::MAX));
    checkpoints
        .iter()
        .filter(|(ts, _)| *ts <= horizon)
        .map(|&(_, seq)| seq)
        .max()
        .unwrap_or(0)
        .max(current)
}

/// Checkpoints still needed: those above low-water, plus the newest at or
/// below it.
pub(crate) fn prune(checkpoints: &mut Vec<(i64, Seq)>, low_water: Seq) {
    let first_above = checkpoints.partition_point(|&(_, seq)| seq <= low_water);
    checkpoints.drain(..first_above.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_water_follows_the_window_and_never_moves_back() {
        let checkpoints = [(100, 10), (200, 20), (300, 30)];
        let window = Some(Duration::from_micros(150));
        assert_eq!(low_water(0, &checkpoints, 320, window), 10);
        assert_eq!(low_water(0, &checkpoints, 450, window), 30);
        assert_eq!(
            low_water(25, &checkpoints, 320, window),
            25,
            "never backwards"
        );
        assert_eq!(
            low_water(0, &checkpoints, 1_000_000, None),
            0,
            "no window keeps everything"
        );
        assert_eq!(low_water(0, &checkpoints, 300, Some(Duration::ZERO)), 30);
        assert_eq!(low_water(0, &[], 300, Some(Duration::ZERO)), 0);
    }

    #[test]
    fn pruning_keeps_the_checkpoint_at_low_water() {
        let mut checkpoints = vec![(100, 10), (200, 20), (300, 30)];
        prune(&mut checkpoints, 25);
        assert_eq!(checkpoints, vec![(200, 20), (300, 30)]);
        prune(&mut checkpoints, 5);
        assert_eq!(checkpoints, vec![(200, 20), (300, 30)]);
    }
}
