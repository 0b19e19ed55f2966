//! The low-water mark: a pure decision over the retention policy.
//!
//! Every change with seq above low-water is kept (with its before-image)
//! through flush and compaction; below it, history collapses. For now the
//! policy is a time window measured against flush checkpoints; durable
//! consumers join it with the change feed (issue [3/6]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Seq;

/// Taken at each flush: the commit time of the flushed memtable's last
/// change, its seq, and the total bytes flushed so far (a measure of how
/// much history lies between two checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checkpoint {
    pub ts_micros: i64,
    pub seq: Seq,
    pub flushed_bytes: u64,
}

/// How much history to keep. Both bounds apply when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Window {
    pub time: Option<Duration>,
    pub bytes: Option<u64>,
}

/// The low-water mark the window allows, never below `current`. With no
/// bound, history is kept forever (durable consumers and the retention
/// cap act elsewhere).
pub(crate) fn low_water(
    current: Seq,
    checkpoints: &[Checkpoint],
    now_micros: i64,
    window: Window,
) -> Seq {
    let by_time = window.time.map(|time| {
        let horizon =
            now_micros.saturating_sub(i64::try_from(time.as_micros()).unwrap_or(i64::MAX));
        checkpoints
            .iter()
            .filter(|c| c.ts_micros <= horizon)
            .map(|c| c.seq)
            .max()
            .unwrap_or(0)
    });
    let by_bytes = window.bytes.zip(checkpoints.last()).map(|(bytes, latest)| {
        // The oldest checkpoint after which at most `bytes` were flushed.
        checkpoints
            .iter()
            .find(|c| latest.flushed_bytes - c.flushed_bytes <= bytes)
            .map_or(0, |c| c.seq)
    });
    current.max(by_time.unwrap_or(0)).max(by_bytes.unwrap_or(0))
}

/// Checkpoints still needed: those above low-water, plus the newest at or
/// below it.
pub(crate) fn prune(checkpoints: &mut Vec<Checkpoint>, low_water: Seq) {
    let first_above = checkpoints.partition_point(|c| c.seq <= low_water);
    checkpoints.drain(..first_above.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps() -> Vec<Checkpoint> {
        [(100, 10, 1000), (200, 20, 3000), (300, 30, 3500)]
            .into_iter()
            .map(|(ts_micros, seq, flushed_bytes)| Checkpoint {
                ts_micros,
                seq,
                flushed_bytes,
            })
            .collect()
    }

    fn time(micros: u64) -> Window {
        Window {
            time: Some(Duration::from_micros(micros)),
            bytes: None,
        }
    }

    fn bytes(bytes: u64) -> Window {
        Window {
            time: None,
            bytes: Some(bytes),
        }
    }

    #[test]
    fn low_water_follows_the_time_window_and_never_moves_back() {
        let checkpoints = cps();
        assert_eq!(low_water(0, &checkpoints, 320, time(150)), 10);
        assert_eq!(low_water(0, &checkpoints, 450, time(150)), 30);
        assert_eq!(
            low_water(25, &checkpoints, 320, time(150)),
            25,
            "never backwards"
        );
        assert_eq!(
            low_water(0, &checkpoints, 1_000_000, Window::default()),
            0,
            "no bound keeps everything"
        );
        assert_eq!(low_water(0, &checkpoints, 300, time(0)), 30);
        assert_eq!(low_water(0, &[], 300, time(0)), 0);
    }

    #[test]
    fn the_bytes_window_keeps_at_most_that_much_flushed_history() {
        let checkpoints = cps();
        // After seq 10: 2500 bytes; after 20: 500; after 30: 0.
        assert_eq!(low_water(0, &checkpoints, 0, bytes(3000)), 10);
        assert_eq!(low_water(0, &checkpoints, 0, bytes(2499)), 20);
        assert_eq!(low_water(0, &checkpoints, 0, bytes(500)), 20);
        assert_eq!(low_water(0, &checkpoints, 0, bytes(0)), 30);
        // Both bounds: the stricter wins.
        let both = Window {
            time: Some(Duration::from_micros(1000)),
            bytes: Some(500),
        };
        assert_eq!(low_water(0, &checkpoints, 400, both), 20);
    }

    #[test]
    fn pruning_keeps_the_checkpoint_at_low_water() {
        let mut checkpoints = cps();
        prune(&mut checkpoints, 25);
        assert_eq!(
            checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![20, 30]
        );
        prune(&mut checkpoints, 5);
        assert_eq!(checkpoints.len(), 2);
    }
}
