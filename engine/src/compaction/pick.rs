//! Choosing the next compaction: a pure function of the levels and limits.

use bytes::Bytes;

/// What the picker needs to know of one table file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSummary {
    pub id: u64,
    pub bytes: u64,
    pub smallest: Bytes,
    pub largest: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactionLimits {
    /// L0 files that trigger an L0 -> L1 compaction.
    pub l0_trigger: usize,
    /// Target size of L1; each deeper level is `ratio` times larger.
    pub level_base_bytes: u64,
    pub ratio: u64,
    pub max_levels: usize,
}

/// Merge the files `inputs` (from any levels) into `output_level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub inputs: Vec<u64>,
    pub output_level: usize,
    /// No level below the output holds files overlapping the task's keys.
    pub bottom: bool,
}

fn key_range(files: &[&FileSummary]) -> Option<(Bytes, Bytes)> {
    let smallest = files.iter().map(|f| &f.smallest).min()?.clone();
    let largest = files.iter().map(|f| &f.largest).max()?.clone();
    Some((smallest, largest))
}

fn overlaps(file: &FileSummary, (lo, hi): &(Bytes, Bytes)) -> bool {
    file.smallest <= *hi && file.largest >= *lo
}

fn task(levels: &[Vec<FileSummary>], level: usize, upper: Vec<&FileSummary>) -> Task {
    let upper_range = key_range(&upper).expect("a task has inputs");
    let mut inputs = upper;
    inputs.extend(
        levels
            .get(level + 1)
            .into_iter()
            .flatten()
            .filter(|f| overlaps(f, &upper_range)),
    );
    // NOTE: the overlapping files of the output level are merged whole, so
    // the task covers their keys too, which may reach beyond the upper
    // inputs' range. Example: the upper input covers `m..n`, the L2 file
    // it overlaps covers `a..z` and holds a tombstone for `b`, and L3 holds
    // an old version of `b`. Judged by `m..n` alone the task would look
    // like the bottom and drop the tombstone, and `b` would come back.
    // Bottom is therefore judged by the key range of *all* inputs.
    let range = key_range(&inputs).expect("a task has inputs");
    let bottom = levels
        .iter()
        .skip(level + 2)
        .all(|deeper| deeper.iter().all(|f| !overlaps(f, &range)));
    Task {
        inputs: inputs.iter().map(|f| f.id).collect(),
        output_level: level + 1,
        bottom,
    }
}

/// Everything into one bottom level (at least L1), collapsing all history
/// at or below low-water.
pub(crate) fn full(levels: &[Vec<FileSummary>]) -> Option<Task> {
    let inputs: Vec<u64> = levels.iter().flatten().map(|f| f.id).collect();
    if inputs.is_empty() {
        return None;
    }
    let deepest = levels
        .iter()
        .rposition(|l| !l.is_empty())
        .unwrap_or(0)
        .max(1);
    Some(Task {
        inputs,
        output_level: deepest,
        bottom: true,
    })
}

/// The most urgent compaction, if any level is over its limit. `levels[0]`
/// is L0 (oldest first); deeper levels are sorted by key.
pub(crate) fn pick(levels: &[Vec<FileSummary>], limits: CompactionLimits) -> Option<Task> {
    if levels
        .first()
        .is_some_and(|l0| l0.len() >= limits.l0_trigger.max(1))
    {
        // All of L0: its files overlap each other, and taking them all keeps
        // every version in a level newer than every version below it.
        return Some(task(levels, 0, levels[0].iter().collect()));
    }
    let mut target = limits.level_base_bytes;
    for level in 1..limits.max_levels.saturating_sub(1) {
        let files = levels.get(level)?;
        let size: u64 = files.iter().map(|f| f.bytes).sum();
        if size > target {
            // The file with the lowest id has waited longest.
            let oldest = files
                .iter()
                .min_by_key(|f| f.id)
                .expect("a level over its size has files");
            return Some(task(levels, level, vec![oldest]));
        }
        target = target.saturating_mul(limits.ratio);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u64, bytes: u64, lo: &'static str, hi: &'static str) -> FileSummary {
        FileSummary {
            id,
            bytes,
            smallest: Bytes::from_static(lo.as_bytes()),
            largest: Bytes::from_static(hi.as_bytes()),
        }
    }

    const LIMITS: CompactionLimits = CompactionLimits {
        l0_trigger: 2,
        level_base_bytes: 100,
        ratio: 10,
        max_levels: 4,
    };

    #[test]
    fn l0_compacts_whole_into_the_overlapping_part_of_l1() {
        let levels = vec![
            vec![f(5, 10, "c", "f"), f(6, 10, "d", "e")],
            vec![f(1, 50, "a", "b"), f(2, 50, "c", "d"), f(3, 50, "e", "z")],
            vec![f(4, 50, "x", "y")],
        ];
        let task = pick(&levels, LIMITS).unwrap();
        assert_eq!(task.output_level, 1);
        assert_eq!(task.inputs, vec![5, 6, 2, 3]);
        assert!(
            !task.bottom,
            "L1's e..z is merged whole and overlaps L2's x..y, though c..f does not"
        );
        let full = full(&levels).unwrap();
        assert_eq!(
            (full.inputs.len(), full.output_level, full.bottom),
            (6, 2, true)
        );
    }

    #[test]
    fn levels_over_their_target_push_their_oldest_file_down() {
        let levels = vec![
            vec![f(9, 10, "a", "z")],
            vec![f(3, 60, "a", "m"), f(2, 60, "n", "z")],
            vec![f(1, 10, "o", "p")],
            vec![f(0, 10, "a", "b")],
        ];
        let task = pick(&levels, LIMITS).unwrap();
        assert_eq!((task.output_level, task.inputs.clone()), (2, vec![2, 1]));
        assert!(task.bottom);
        let not_bottom = vec![
            vec![],
            vec![f(3, 200, "a", "m")],
            vec![],
            vec![f(0, 10, "a", "b")],
        ];
        assert!(!pick(&not_bottom, LIMITS).unwrap().bottom);
    }

    #[test]
    fn nothing_to_do_below_the_limits() {
        let levels = vec![
            vec![f(1, 10, "a", "b")],
            vec![f(2, 100, "a", "z")],
            vec![f(3, 1000, "a", "z")],
        ];
        assert_eq!(pick(&levels, LIMITS), None);
        assert_eq!(pick(&[], LIMITS), None);
        assert_eq!(full(&[vec![], vec![]]), None);
    }

    /// A tiny deterministic generator, so the model test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn key(n: u64) -> Bytes {
        Bytes::from(format!("{n:03}"))
    }

    /// Random level shapes: L0 files overlap freely, deeper levels hold
    /// sorted, disjoint files.
    fn random_levels(rng: &mut Rng, next_id: &mut u64) -> Vec<Vec<FileSummary>> {
        let mut levels = Vec::new();
        for level in 0..5 {
            let mut files = Vec::new();
            let mut lo = rng.below(20);
            for _ in 0..rng.below(if level == 0 { 4 } else { 6 }) {
                if level == 0 {
                    lo = rng.below(100);
                }
                let hi = lo + rng.below(30);
                if hi >= 1000 {
                    break;
                }
                *next_id += 1;
                files.push(FileSummary {
                    id: *next_id,
                    bytes: 10 + rng.below(400),
                    smallest: key(lo),
                    largest: key(hi),
                });
                lo = hi + 1 + rng.below(30);
            }
            levels.push(files);
        }
        levels
    }

    #[test]
    fn a_bottom_task_has_no_deeper_file_overlapping_any_of_its_inputs() {
        let limits = CompactionLimits {
            l0_trigger: 2,
            level_base_bytes: 100,
            ratio: 2,
            max_levels: 6,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut next_id = 0;
        let (mut tasks, mut bottoms, mut not_bottoms) = (0, 0, 0);
        for _ in 0..20_000 {
            let levels = random_levels(&mut rng, &mut next_id);
            let Some(task) = pick(&levels, limits) else {
                continue;
            };
            tasks += 1;
            let inputs: Vec<&FileSummary> = levels
                .iter()
                .flatten()
                .filter(|f| task.inputs.contains(&f.id))
                .collect();
            assert_eq!(inputs.len(), task.inputs.len(), "inputs exist");
            let range = key_range(&inputs).unwrap();
            let deeper_overlap = levels
                .iter()
                .skip(task.output_level + 1)
                .flatten()
                .any(|f| overlaps(f, &range));
            assert_eq!(
                task.bottom, !deeper_overlap,
                "task {task:?} over levels {levels:?}"
            );
            // Every file of the output level that overlaps an input is an
            // input too, or the level would hold two versions' orders.
            let output_level = levels.get(task.output_level).map_or(&[][..], |l| &l[..]);
            for f in output_level {
                let hits = inputs
                    .iter()
                    .filter(|i| !output_level.contains(i))
                    .any(|i| overlaps(f, &(i.smallest.clone(), i.largest.clone())));
                assert!(!hits || task.inputs.contains(&f.id), "{task:?} {levels:?}");
            }
            if task.bottom {
                bottoms += 1;
            } else {
                not_bottoms += 1;
            }
        }
        assert!(
            tasks > 1000 && bottoms > 100 && not_bottoms > 100,
            "{tasks} {bottoms} {not_bottoms}"
        );
    }
}
