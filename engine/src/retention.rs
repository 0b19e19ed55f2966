//! The low-water mark: a pure decision over the retention policy.
//!
//! Every change with seq above low-water is kept (with its before-image)
//! through flush and compaction; below it, history collapses. The history
//! window (time and/or bytes, measured against flush checkpoints) sets
//! where low-water may go; valid durable consumers hold it back at their
//! written positions; a consumer that would hold more than the retention
//! cap of history *beyond the window* is invalidated instead.

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

/// Bytes flushed for the seqs in `(from, to]`, at flush granularity: the
/// history a reader at `from` holds back beyond `to`.
pub(crate) fn history_bytes(checkpoints: &[Checkpoint], from: Seq, to: Seq) -> u64 {
    // Cumulative bytes flushed up to the newest checkpoint at or below
    // `seq`. Pruning keeps the newest checkpoint at or below low-water,
    // and both ends are at or above it, so the answer is never inflated
    // by checkpoints that were pruned away.
    let cumulative = |seq: Seq| {
        checkpoints
            .iter()
            .rev()
            .find(|c| c.seq <= seq)
            .map_or(0, |c| c.flushed_bytes)
    };
    cumulative(to).saturating_sub(cumulative(from))
}

/// Where low-water goes, given what the window allows and the written
/// positions of valid durable consumers (any order), and which consumers
/// are invalidated on the way because each held more than `cap` bytes of
/// history beyond the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub low_water: Seq,
    /// (consumer, bytes of history it held beyond the window).
    pub invalidate: Vec<(String, u64)>,
}

pub(crate) fn decide(
    current: Seq,
    window: Seq,
    holders: &[(Seq, String)],
    checkpoints: &[Checkpoint],
    cap: Option<u64>,
) -> Decision {
    let mut holders: Vec<&(Seq, String)> = holders.iter().collect();
    holders.sort();
    let mut invalidate = Vec::new();
    for (position, name) in holders {
        if *position >= window {
            break;
        }
        let held = history_bytes(checkpoints, *position, window);
        if cap.is_some_and(|cap| held > cap) {
            invalidate.push((name.clone(), held));
            continue;
        }
        // Consumers are created at or above low-water and written
        // positions only move forward; `max` keeps low-water monotonic
        // whatever a caller passes.
        return Decision {
            low_water: (*position).max(current),
            invalidate,
        };
    }
    Decision {
        low_water: window.max(current),
        invalidate,
    }
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

    fn holders(list: &[(Seq, &str)]) -> Vec<(Seq, String)> {
        list.iter().map(|(s, n)| (*s, n.to_string())).collect()
    }

    #[test]
    fn consumers_are_capped_by_the_history_they_hold_beyond_the_window() {
        let checkpoints = cps();
        // Flushed through 10: 1000 bytes, through 20: 3000, through 30: 3500.
        assert_eq!(history_bytes(&checkpoints, 10, 30), 2500);
        assert_eq!(history_bytes(&checkpoints, 25, 30), 500);
        assert_eq!(history_bytes(&checkpoints, 30, 30), 0);
        assert_eq!(history_bytes(&checkpoints, 0, 10), 1000);

        type Case<'a> = (&'a [(Seq, &'a str)], Option<u64>, Seq, &'a [(&'a str, u64)]);
        let table: &[Case<'_>] = &[
            // No consumers: the window.
            (&[], Some(1), 30, &[]),
            // A consumer behind the window holds it, under the cap.
            (&[(12, "a")], Some(2500), 12, &[]),
            // Over the cap: invalidated, the next one holds.
            (&[(5, "a"), (22, "b")], Some(1000), 22, &[("a", 3500)]),
            // Both over: the window wins.
            (
                &[(5, "a"), (12, "b")],
                Some(400),
                30,
                &[("a", 3500), ("b", 2500)],
            ),
            // No cap: whatever they hold.
            (&[(5, "a")], None, 5, &[]),
            // Ahead of the window: holds nothing, never invalidated.
            (&[(35, "a")], Some(0), 30, &[]),
        ];
        for (list, cap, low_water, invalidated) in table {
            let decision = decide(0, 30, &holders(list), &checkpoints, *cap);
            assert_eq!(decision.low_water, *low_water, "{list:?} cap {cap:?}");
            let expected: Vec<(String, u64)> = invalidated
                .iter()
                .map(|(n, b)| (n.to_string(), *b))
                .collect();
            assert_eq!(decision.invalidate, expected, "{list:?} cap {cap:?}");
        }
        // A database far larger than the cap does not matter: only
        // history beyond the window counts.
        let one_change_behind = decide(0, 30, &holders(&[(29, "a")]), &checkpoints, Some(600));
        assert_eq!(one_change_behind.low_water, 29);
        assert!(one_change_behind.invalidate.is_empty());
        // Never backwards.
        assert_eq!(decide(31, 30, &[], &checkpoints, None).low_water, 31);
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
