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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    pub invalidated: Option<String>,
    /// Changes committed after `position` (`visible_seq - position`), as
    /// of the call that returned this; not stored.
    #[serde(skip)]
    pub lag: u64,
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
}

struct State {
    consumers: BTreeMap<String, ConsumerInfo>,
    /// Acks not yet written.
    dirty: bool,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

impl Consumers {
    pub(crate) fn open(data_dir: &Path) -> Result<Consumers> {
        let path = data_dir.join(CONSUMERS_FILE);
        let consumers = match std::fs::read(&path) {
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
        Ok(Consumers {
            path,
            state: Mutex::new(State {
                consumers,
                dirty: false,
            }),
        })
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

    fn write(&self, state: &mut State) -> Result<()> {
        let file = ConsumersFile {
            format_version: CONSUMERS_FORMAT_VERSION,
            consumers: state.consumers.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("consumers serialise");
        fsutil::write_atomically(&self.path, &bytes)?;
        state.dirty = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("consumers lock poisoned")
    }

    /// Creates a consumer at `position`; the caller checked that the
    /// position is retained and not in the future.
    pub(crate) fn create(&self, name: &str, position: Seq, now: i64) -> Result<ConsumerInfo> {
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
        };
        state.consumers.insert(name.to_owned(), info.clone());
        if let Err(e) = self.write(&mut state) {
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
        match &info.invalidated {
            Some(reason) => Err(Error::ConsumerInvalidated {
                name: name.to_owned(),
                reason: reason.clone(),
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
        if let Some(reason) = &info.invalidated {
            return Err(Error::ConsumerInvalidated {
                name: name.to_owned(),
                reason: reason.clone(),
            });
        }
        info.position = info.position.max(seq);
        info.acked_micros = now;
        let info = info.clone();
        state.dirty = true;
        Ok(info)
    }

    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let mut state = self.lock();
        let Some(removed) = state.consumers.remove(name) else {
            return Err(Error::NoSuchConsumer {
                name: name.to_owned(),
            });
        };
        if let Err(e) = self.write(&mut state) {
            state.consumers.insert(name.to_owned(), removed);
            return Err(e);
        }
        Ok(())
    }

    /// The lowest position among valid consumers: how far back retention
    /// must reach for them.
    pub(crate) fn hold(&self) -> Option<(Seq, String)> {
        self.lock()
            .consumers
            .values()
            .filter(|c| c.invalidated.is_none())
            .map(|c| (c.position, c.name.clone()))
            .min()
    }

    /// Valid consumers whose last ack is older than `horizon`.
    pub(crate) fn idle_before(&self, horizon: i64) -> Vec<String> {
        self.lock()
            .consumers
            .values()
            .filter(|c| c.invalidated.is_none() && c.acked_micros < horizon)
            .map(|c| c.name.clone())
            .collect()
    }

    /// Invalidates a consumer, durably, with a reason its next use reports.
    pub(crate) fn invalidate(&self, name: &str, reason: String) -> Result<()> {
        let mut state = self.lock();
        if let Some(info) = state.consumers.get_mut(name) {
            tracing::warn!(consumer = name, %reason, position = info.position, "durable consumer invalidated");
            info.invalidated = Some(reason);
            self.write(&mut state)?;
        }
        Ok(())
    }

    /// Writes pending acks.
    pub(crate) fn persist_acks(&self) -> Result<()> {
        let mut state = self.lock();
        if state.dirty {
            self.write(&mut state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_acks_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        Consumers::initialise(dir.path()).unwrap();
        let consumers = Consumers::open(dir.path()).unwrap();
        assert!(matches!(
            consumers.create("Bad Name", 0, 0),
            Err(Error::InvalidConsumerName { .. })
        ));
        consumers.create("kafka-sink", 5, 1).unwrap();
        assert!(matches!(
            consumers.create("kafka-sink", 9, 1),
            Err(Error::ConsumerExists { .. })
        ));
        assert_eq!(consumers.ack("kafka-sink", 9, 2).unwrap().position, 9);
        assert_eq!(
            consumers.ack("kafka-sink", 3, 3).unwrap().position,
            9,
            "never backwards"
        );
        consumers.create("audit", 7, 1).unwrap();
        assert_eq!(consumers.hold(), Some((7, "audit".to_owned())));
        consumers.invalidate("audit", "idle".into()).unwrap();
        assert_eq!(consumers.hold(), Some((9, "kafka-sink".to_owned())));
        let err = consumers.ack("audit", 10, 4).unwrap_err();
        assert!(
            matches!(&err, Error::ConsumerInvalidated { reason, .. } if reason == "idle"),
            "{err}"
        );

        // Creation and invalidation are written at once (with any pending
        // acks); a lone ack waits for persist_acks.
        drop(consumers);
        let reopened = Consumers::open(dir.path()).unwrap();
        assert_eq!(reopened.get("kafka-sink").unwrap().position, 9);
        assert!(reopened.get("audit").unwrap().invalidated.is_some());
        reopened.ack("kafka-sink", 12, 5).unwrap();
        drop(reopened);
        let reopened = Consumers::open(dir.path()).unwrap();
        assert_eq!(
            reopened.get("kafka-sink").unwrap().position,
            9,
            "an unpersisted ack is lost: safe"
        );
        reopened.ack("kafka-sink", 12, 5).unwrap();
        reopened.persist_acks().unwrap();
        reopened.delete("audit").unwrap();
        drop(reopened);
        let again = Consumers::open(dir.path()).unwrap();
        assert_eq!(again.get("kafka-sink").unwrap().position, 12);
        assert!(matches!(
            again.get("audit"),
            Err(Error::NoSuchConsumer { .. })
        ));
    }
}
