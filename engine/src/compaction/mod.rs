//! Leveled compaction that keeps the feed's history.
//!
//! Deciding is pure: [`pick`] chooses a task from a summary of the levels,
//! [`gc::HistoryFilter`] decides which versions survive. The flush worker
//! performs the task (`worker.rs`).
//!
//! Architecture invariant: compaction keeps every version with seq above
//! the low-water mark, tombstones with their before-images included. At or
//! below it, only the newest version of each key survives (the state at
//! low-water), and a surviving tombstone is dropped only when nothing older
//! can exist below the output level.

pub(crate) mod gc;
pub(crate) mod pick;
pub(crate) mod worker;
