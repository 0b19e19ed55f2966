//! Durable consumers: named positions in the feed that hold retention.
//!
//! A consumer is created at a position, advanced by acks, and deleted by
//! name. While it is valid, the low-water mark never passes its position,
//! so everything after it stays readable. A consumer that would hold more
//! history than `max_retention_bytes`, or that has not acked for longer
//! than its idle expiry, is invalidated: it stops holding retention, and
//! every later use of it fails with an error saying why. Never silently.
//!
//! Stored in `consumers.json`, replaced atomically. Creation, deletion and
//! invalidation are durable before they return. Acks are kept in memory
//! and written by the background worker (at least once a second, and at
//! close): losing an ack in a crash moves a position back, which retains
//! more history, never less.
//!
//! Architecture invariants:
//! - Retention is held by *written* positions ([`Consumers::hold`]), never
//!   by acks still in memory: the low-water mark the worker commits is at
//!   or below every position a crash could bring back, so a recovered
//!   consumer can always read its own history.
//! - A written position never passes the durable seq (in async mode, acks
//!   of changes not yet fdatasynced are written as the durable seq), so a
//!   recovered position never lies beyond the recovered log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fault::FaultInjector;

use serde::{Deserialize, Serialize};

use crate::error::{Corruption, Error, Result};
use crate::fsutil;
use crate::Seq;

pub(crate) const CONSUMERS_FILE: &str = "consumers.json";
const CONSUMERS_FORMAT_VERSION: u32 = 1;

/// A durable consumer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerInfo {
    pub name: String,
    /// Every change with seq <= position has been acknowledged.
    pub position: Seq,
    pub created_micros: i64,
    /// Time of the last ack (or of creation).
    pub acked_micros: i64,
    /// Why the consumer no longer holds retention, if it was invalidated.
    pub invalidated: Option<InvalidationReason>,
    /// Changes committed after `position` (`visible_seq - position`), as
    /// of the call that returned this; not stored.
    #[serde(skip)]
    pub lag: u64,
    /// Bytes of history after `position`: table-file bytes flushed since
    /// (at flush granularity) plus the memtables if they hold changes
    /// after it. As of the call that returned this; not stored.
    #[serde(skip)]
    pub lag_bytes: u64,
}

/// Why a durable consumer was invalidated: what a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InvalidationReason {
    /// It held more history than `max_retention_bytes` allows, beyond what
    /// the history window keeps anyway.
    RetentionCap { held_bytes: u64, max_bytes: u64 },
    /// It did not ack for longer than the idle expiry.
    IdleExpiry { idle_secs: u64, expiry_secs: u64 },
    /// Its position was found below the low-water mark at start-up (its
    /// file was restored from an older copy): history it needs is gone.
    HistoryLost { position: Seq, low_water: Seq },
}

impl InvalidationReason {
    /// A stable snake_case name, for metrics labels and API error details.
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidationReason::RetentionCap { .. } => "retention_cap",
            InvalidationReason::IdleExpiry { .. } => "idle_expiry",
            InvalidationReason::HistoryLost { .. } => "history_lost",
        }
    }
}

impl std::fmt::Display for InvalidationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidationReason::RetentionCap {
                held_bytes,
                max_bytes,
            } => write!(
                f,
                "it held {held_bytes} bytes of history beyond the retention window, more than max_retention_bytes ({max_bytes})"
            ),
            InvalidationReason::IdleExpiry {
                idle_secs,
                expiry_secs,
            } => write!(
                f,
                "it did not acknowledge for {idle_secs} s, longer than the idle expiry of {expiry_secs} s"
            ),
            InvalidationReason::HistoryLost {
                position,
                low_water,
            } => write!(
                f,
                "its position {position} is below the low-water mark {low_water}: history it needs is no longer retained"
            ),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumersFile {
    format_version: u32,
    consumers: Vec<ConsumerInfo>,
}

pub(crate) struct Consumers {
    path: PathBuf,
    state: Mutex<State>,
    faults: Option<Arc<FaultInjector>>,
}

struct State {
    consumers: BTreeMap<String, ConsumerInfo>,
    /// Each consumer's position as last written to the file.
    written: BTreeMap<String, Seq>,
    /// Acks not yet written.
    dirty: bool,
}

/// 1 to 64 of `a-z 0-9 _ - .`, starting with a letter, digit or `_`, so
/// that every name is a plain URL path segment (never `.` or `..`).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

impl Consumers {
    pub(crate) fn open(data_dir: &Path, faults: Option<Arc<FaultInjector>>) -> Result<Consumers> {
        let path = data_dir.join(CONSUMERS_FILE);
        let consumers: BTreeMap<String, ConsumerInfo> = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: ConsumersFile =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corruption {
                        file: path.clone(),
                        offset: 0,
                        problem: Corruption::BadConsumers(e.to_string()),
                    })?;
                if file.format_version != CONSUMERS_FORMAT_VERSION {
                    return Err(Error::Corruption {
                        file: path,
                        offset: 0,
                        problem: Corruption::UnsupportedVersion {
                            found: file.format_version,
                            supported: CONSUMERS_FORMAT_VERSION,
                        },
                    });
                }
                file.consumers
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect()
            }
            // `datadir::check_metadata` creates the file for a new
            // directory and refuses a damaged one before this runs.
            Err(source) => return Err(Error::Io { path, source }),
        };
        let written = consumers
            .values()
            .map(|c: &ConsumerInfo| (c.name.clone(), c.position))
            .collect();
        Ok(Consumers {
            path,
            faults,
            state: Mutex::new(State {
                consumers,
                written,
                dirty: false,
            }),
        })
    }

    /// Brings positions in line with the recovered log, before the engine
    /// serves anyone: a position beyond the log's head (possible only if
    /// the file outlived the log, e.g. restored from elsewhere) moves back
    /// to the head, so the consumer receives every change the log holds
    /// from there; a valid position below `low_water` is invalidated,
    /// loudly, because history it needs is gone.
    pub(crate) fn reconcile(&self, head: Seq, low_water: Seq) -> Result<()> {
        let mut state = self.lock();
        let mut changed = false;
        for info in state.consumers.values_mut() {
            if info.position > head {
                tracing::warn!(
                    consumer = %info.name,
                    position = info.position,
                    head,
                    "durable consumer position lies beyond the recovered log; moved back to the head"
                );
                info.position = head;
                changed = true;
            }
            if info.invalidated.is_none() && info.position < low_water {
                let reason = InvalidationReason::HistoryLost {
                    position: info.position,
                    low_water,
                };
                tracing::error!(consumer = %info.name, %reason, "durable consumer invalidated");
                info.invalidated = Some(reason);
                changed = true;
            }
        }
        if changed {
            self.write(&mut state, Seq::MAX)?;
        }
        Ok(())
    }

    /// Writes the empty consumers file of a new data directory.
    pub(crate) fn initialise(data_dir: &Path) -> Result<()> {
        let file = ConsumersFile {
            format_version: CONSUMERS_FORMAT_VERSION,
            consumers: Vec::new(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("consumers serialise");
        fsutil::write_atomically(&data_dir.join(CONSUMERS_FILE), &bytes)
    }

    /// Writes every consumer, positions capped at `durable` (see the
    /// module invariants), and records what was written.
    fn write(&self, state: &mut State, durable: Seq) -> Result<()> {
        let consumers: Vec<ConsumerInfo> = state
            .consumers
            .values()
            .map(|c| {
                let mut c = c.clone();
                // Never below what is already written: positions only move
                // forward, and a cap that would move one back is an older
                // durable seq than the one it was written under.
                let floor = state.written.get(&c.name).copied().unwrap_or(0);
                c.position = c.position.min(durable.max(floor));
                c
            })
            .collect();
        let file = ConsumersFile {
            format_version: CONSUMERS_FORMAT_VERSION,
            consumers,
        };
        if let Some(faults) = &self.faults {
            faults
                .before_consumers_file()
                .map_err(Error::io(&self.path))?;
        }
        let bytes = serde_json::to_vec_pretty(&file).expect("consumers serialise");
        fsutil::write_atomically(&self.path, &bytes)?;
        state.written = file
            .consumers
            .iter()
            .map(|c| (c.name.clone(), c.position))
            .collect();
        state.dirty = state
            .consumers
            .values()
            .any(|c| state.written.get(&c.name) != Some(&c.position));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("consumers lock poisoned")
    }

    /// Creates a consumer at `position`; the caller checked that the
    /// position is retained and not in the future. `durable` caps the
    /// written positions (see the module invariants).
    pub(crate) fn create(
        &self,
        name: &str,
        position: Seq,
        now: i64,
        durable: Seq,
    ) -> Result<ConsumerInfo> {
        if !valid_name(name) {
            return Err(Error::InvalidConsumerName {
                name: name.to_owned(),
            });
        }
        let mut state = self.lock();
        if state.consumers.contains_key(name) {
            return Err(Error::ConsumerExists {
                name: name.to_owned(),
            });
        }
        let info = ConsumerInfo {
            name: name.to_owned(),
            position,
            created_micros: now,
            acked_micros: now,
            invalidated: None,
            lag: 0,
            lag_bytes: 0,
        };
        state.consumers.insert(name.to_owned(), info.clone());
        if let Err(e) = self.write(&mut state, durable) {
            state.consumers.remove(name);
            return Err(e);
        }
        Ok(info)
    }

    pub(crate) fn get(&self, name: &str) -> Result<ConsumerInfo> {
        self.lock()
            .consumers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchConsumer {
                name: name.to_owned(),
            })
    }

    /// A valid consumer, or the error that explains why it is not.
    pub(crate) fn get_valid(&self, name: &str) -> Result<ConsumerInfo> {
        let info = self.get(name)?;
        match info.invalidated {
            Some(reason) => Err(Error::ConsumerInvalidated {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(info),
        }
    }

    pub(crate) fn list(&self) -> Vec<ConsumerInfo> {
        self.lock().consumers.values().cloned().collect()
    }

    /// Moves a consumer's position forward to `seq` (acks never move it
    /// back); the caller checked `seq` is not in the future.
    pub(crate) fn ack(&self, name: &str, seq: Seq, now: i64) -> Result<ConsumerInfo> {
        let mut state = self.lock();
        let info = state
            .consumers
            .get_mut(name)
            .ok_or_else(|| Error::NoSuchConsumer {
                name: name.to_owned(),
            })?;
        if let Some(reason) = info.invalidated {
            return Err(Error::ConsumerInvalidated {
                name: name.to_owned(),
                reason,
            });
        }
        info.position = info.position.max(seq);
        info.acked_micros = now;
        let info = info.clone();
        state.dirty = true;
        Ok(info)
    }

    pub(crate) fn delete(&self, name: &str, durable: Seq) -> Result<()> {
        let mut state = self.lock();
        let Some(removed) = state.consumers.remove(name) else {
            return Err(Error::NoSuchConsumer {
                name: name.to_owned(),
            });
        };
        if let Err(e) = self.write(&mut state, durable) {
            state.consumers.insert(name.to_owned(), removed);
            return Err(e);
        }
        Ok(())
    }

    /// The lowest *written* position among valid consumers: how far back
    /// retention must reach for them, whatever a crash brings back.
    #[cfg(test)]
    pub(crate) fn hold(&self) -> Option<(Seq, String)> {
        self.holders().into_iter().min()
    }

    /// Every valid consumer's written position, for the retention decision.
    pub(crate) fn holders(&self) -> Vec<(Seq, String)> {
        let state = self.lock();
        state
            .consumers
            .values()
            .filter(|c| c.invalidated.is_none())
            .map(|c| {
                let written = state.written.get(&c.name).copied().unwrap_or(c.position);
                (written.min(c.position), c.name.clone())
            })
            .collect()
    }

    /// Counts a consumer that has acknowledged everything up to `head` as
    /// active now: with nothing to acknowledge it holds no history, and a
    /// quiet log must not make it look idle. (In memory only: written with
    /// the next ack; after a restart the next round touches it again.)
    pub(crate) fn touch_caught_up(&self, head: Seq, now: i64) {
        let mut state = self.lock();
        for info in state.consumers.values_mut() {
            if info.invalidated.is_none() && info.position >= head {
                info.acked_micros = info.acked_micros.max(now);
            }
        }
    }

    /// Valid consumers whose last ack is older than `horizon`, with the
    /// time of that ack.
    pub(crate) fn idle_before(&self, horizon: i64) -> Vec<(String, i64)> {
        self.lock()
            .consumers
            .values()
            .filter(|c| c.invalidated.is_none() && c.acked_micros < horizon)
            .map(|c| (c.name.clone(), c.acked_micros))
            .collect()
    }

    /// Invalidates a consumer, durably, with a reason its next use reports.
    pub(crate) fn invalidate(
        &self,
        name: &str,
        reason: InvalidationReason,
        durable: Seq,
    ) -> Result<()> {
        let mut state = self.lock();
        if let Some(info) = state.consumers.get_mut(name) {
            tracing::warn!(consumer = name, %reason, position = info.position, "durable consumer invalidated");
            info.invalidated = Some(reason);
            self.write(&mut state, durable)?;
        }
        Ok(())
    }

    /// Writes pending acks, positions capped at `durable`.
    pub(crate) fn persist_acks(&self, durable: Seq) -> Result<()> {
        let mut state = self.lock();
        if state.dirty {
            self.write(&mut state, durable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Seq = Seq::MAX;
    const IDLE: InvalidationReason = InvalidationReason::IdleExpiry {
        idle_secs: 10,
        expiry_secs: 5,
    };

    #[test]
    fn names_are_checked_and_acks_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        Consumers::initialise(dir.path()).unwrap();
        let consumers = Consumers::open(dir.path(), None).unwrap();
        assert!(matches!(
            consumers.create("Bad Name", 0, 0, MAX),
            Err(Error::InvalidConsumerName { .. })
        ));
        consumers.create("kafka-sink", 5, 1, MAX).unwrap();
        assert!(matches!(
            consumers.create("kafka-sink", 9, 1, MAX),
            Err(Error::ConsumerExists { .. })
        ));
        assert_eq!(consumers.ack("kafka-sink", 9, 2).unwrap().position, 9);
        assert_eq!(
            consumers.ack("kafka-sink", 3, 3).unwrap().position,
            9,
            "never backwards"
        );
        consumers.create("audit", 7, 1, MAX).unwrap();
        assert_eq!(consumers.hold(), Some((7, "audit".to_owned())));
        consumers.invalidate("audit", IDLE, MAX).unwrap();
        assert_eq!(consumers.hold(), Some((9, "kafka-sink".to_owned())));
        let err = consumers.ack("audit", 10, 4).unwrap_err();
        assert!(
            matches!(&err, Error::ConsumerInvalidated { reason, .. } if *reason == IDLE),
            "{err}"
        );

        // Creation and invalidation are written at once (with any pending
        // acks); a lone ack waits for persist_acks.
        drop(consumers);
        let reopened = Consumers::open(dir.path(), None).unwrap();
        assert_eq!(reopened.get("kafka-sink").unwrap().position, 9);
        assert!(reopened.get("audit").unwrap().invalidated.is_some());
        reopened.ack("kafka-sink", 12, 5).unwrap();
        drop(reopened);
        let reopened = Consumers::open(dir.path(), None).unwrap();
        assert_eq!(
            reopened.get("kafka-sink").unwrap().position,
            9,
            "an unpersisted ack is lost: safe"
        );
        reopened.ack("kafka-sink", 12, 5).unwrap();
        reopened.persist_acks(MAX).unwrap();
        reopened.delete("audit", MAX).unwrap();
        drop(reopened);
        let again = Consumers::open(dir.path(), None).unwrap();
        assert_eq!(again.get("kafka-sink").unwrap().position, 12);
        assert!(matches!(
            again.get("audit"),
            Err(Error::NoSuchConsumer { .. })
        ));
    }

    #[test]
    fn retention_is_held_by_written_positions_capped_at_the_durable_seq() {
        let dir = tempfile::tempdir().unwrap();
        Consumers::initialise(dir.path()).unwrap();
        let consumers = Consumers::open(dir.path(), None).unwrap();
        consumers.create("sink", 5, 1, MAX).unwrap();
        consumers.ack("sink", 40, 2).unwrap();
        // Acked in memory, not written: retention stays at the written 5.
        assert_eq!(consumers.hold(), Some((5, "sink".to_owned())));
        // Only 30 is durable: the file gets 30, and so does retention.
        consumers.persist_acks(30).unwrap();
        assert_eq!(consumers.hold(), Some((30, "sink".to_owned())));
        assert_eq!(consumers.get("sink").unwrap().position, 40);
        drop(consumers);
        let reopened = Consumers::open(dir.path(), None).unwrap();
        assert_eq!(reopened.get("sink").unwrap().position, 30);
        // Still dirty before the reopen: the next persist writes 40.
        reopened.ack("sink", 40, 3).unwrap();
        reopened.persist_acks(MAX).unwrap();
        assert_eq!(reopened.hold(), Some((40, "sink".to_owned())));
    }

    #[test]
    fn reconciling_moves_positions_back_to_the_log_and_invalidates_lost_ones() {
        let dir = tempfile::tempdir().unwrap();
        Consumers::initialise(dir.path()).unwrap();
        let consumers = Consumers::open(dir.path(), None).unwrap();
        consumers.create("ahead", 10, 1, MAX).unwrap();
        consumers.create("behind", 2, 1, MAX).unwrap();
        consumers.reconcile(5, 3).unwrap();
        assert_eq!(consumers.get("ahead").unwrap().position, 5);
        assert_eq!(consumers.get("ahead").unwrap().invalidated, None);
        assert_eq!(
            consumers.get("behind").unwrap().invalidated,
            Some(InvalidationReason::HistoryLost {
                position: 2,
                low_water: 3
            })
        );
        drop(consumers);
        let reopened = Consumers::open(dir.path(), None).unwrap();
        assert_eq!(reopened.get("ahead").unwrap().position, 5, "durable");
        assert!(reopened.get("behind").unwrap().invalidated.is_some());
    }

    #[test]
    fn names_are_plain_url_path_segments() {
        for bad in [
            ".",
            "..",
            ".hidden",
            "-x",
            "",
            "A",
            "a b",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?} accepted");
        }
        for good in ["a", "kafka-sink", "v1.2", "_x", "0", &"x".repeat(64)] {
            assert!(valid_name(good), "{good:?} rejected");
        }
    }
}
