//! Exactly-once progress: the record committed in Kafka with each
//! transaction, how it is read back, and the instance file that gives a
//! data directory its stable `transactional.id`.
//!
//! Every transaction ends with one progress record on partition 0 of the
//! progress topic (one partition, compacted), keyed by the connector's
//! `transactional.id`: `{"seq":N,"first_seq":F,"instance_id":".."}` says
//! that this transaction holds the changes `F..=N` and that every change
//! up to `N` is committed. Because the record is in the transaction, it is
//! committed exactly when the records are, and a `read_committed`
//! consumer sees it exactly then.
//!
//! At start-up the connector first calls `init_transactions`, which fences
//! any earlier producer with the same `transactional.id` (a zombie of this
//! data directory) and completes or aborts its open transaction; only then
//! does it read the latest progress record with `read_committed`, so the
//! position it resumes from can no longer change under it.
//!
//! NOTE: this relies on the broker hiding aborted records from
//! `read_committed` consumers (transaction markers: Apache Kafka,
//! Redpanda). On a broker that does not, a progress record of an aborted
//! transaction would be taken as committed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tidefeed_engine::Seq;

use super::error::ConnectorError;
use super::options::KafkaOptions;
use super::record::OutRecord;

/// The connector's file in the data directory.
pub const INSTANCE_FILE: &str = "kafka-connector.json";
const INSTANCE_FORMAT_VERSION: u32 = 1;

/// One committed transaction's progress record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// Every change up to here is committed in Kafka.
    pub seq: Seq,
    /// The first change in this transaction.
    pub first_seq: Seq,
    /// The data directory's instance id.
    pub instance_id: String,
    /// Change `seq` as this data directory's log holds it (absent in
    /// records written before marks were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ChangeMark>,
}

/// What tells one change from another with the same seq in another log:
/// a restored copy of a data directory gives the seqs after the copy to
/// new changes, committed at other times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMark {
    /// Commit time, microseconds since the Unix epoch.
    pub ts_micros: i64,
    pub table: String,
    /// `insert`, `update` or `delete`.
    pub op: String,
}

impl ChangeMark {
    pub(crate) fn of(record: &OutRecord) -> ChangeMark {
        ChangeMark {
            ts_micros: record.ts_micros,
            table: record.table.to_string(),
            op: record.op.name().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceFile {
    format_version: u32,
    instance_id: String,
}

/// The data directory's identity for Kafka.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub id: String,
}

impl Instance {
    /// Its `transactional.id`: stable for the data directory, so a
    /// restarted tidefeed fences its predecessor and resumes its
    /// transactions.
    pub(crate) fn transactional_id(&self) -> String {
        format!("tidefeed-{}", self.id)
    }

    /// Reads the instance file, creating it (durably) with a new random id
    /// the first time. Blocking.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Instance, ConnectorError> {
        let path = data_dir.join(INSTANCE_FILE);
        let problem = |problem: String| ConnectorError::InstanceFile {
            path: path.clone(),
            problem,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: InstanceFile = serde_json::from_slice(&bytes)
                    .map_err(|e| problem(format!("unreadable: {e}")))?;
                if file.format_version != INSTANCE_FORMAT_VERSION {
                    return Err(problem(format!(
                        "format version {} is not supported (expected {INSTANCE_FORMAT_VERSION})",
                        file.format_version
                    )));
                }
                if file.instance_id.is_empty()
                    || !file
                        .instance_id
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b'-')
                {
                    return Err(problem("the instance id is not a UUID".to_owned()));
                }
                Ok(Instance {
                    id: file.instance_id,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = random_uuid().map_err(|e| problem(format!("no randomness: {e}")))?;
                let file = InstanceFile {
                    format_version: INSTANCE_FORMAT_VERSION,
                    instance_id: id.clone(),
                };
                let bytes = serde_json::to_vec_pretty(&file).expect("instance file serialises");
                write_atomically(&path, &bytes).map_err(|e| problem(e.to_string()))?;
                tracing::info!(path = %path.display(), instance_id = %id, "created the Kafka connector's instance file");
                Ok(Instance { id })
            }
            Err(e) => Err(problem(e.to_string())),
        }
    }
}

/// A random (version 4) UUID from the kernel's random source.
fn random_uuid() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Write to a temporary file, fsync, rename over, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The latest committed progress record of `transactional_id`, read with
/// `read_committed` from the start of partition 0 of the progress topic to
/// its end. `None` if there is none (or no such topic yet). Blocking.
pub(crate) fn read_committed(
    options: &KafkaOptions,
    transactional_id: &str,
    timeout: Duration,
) -> Result<Option<ProgressRecord>, ConnectorError> {
    let mut config = ClientConfig::new();
    for (key, value) in options.client_settings() {
        config.set(key, value);
    }
    config
        .set("group.id", format!("{transactional_id}.progress"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // The end of the partition is found by a fetch that returns
        // nothing: do not let the broker hold it for long.
        .set("fetch.wait.max.ms", "20")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = config.create().map_err(|source| ConnectorError::Client {
        client: "progress reader",
        source,
    })?;
    // An empty partition (a first start) needs no reading.
    match consumer.fetch_watermarks(&options.progress_topic, 0, timeout) {
        Ok((low, high)) if high <= low => return Ok(None),
        Ok(_) => {}
        Err(error)
            if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
        {
            tracing::info!(topic = %options.progress_topic, "no progress topic yet: nothing committed");
            return Ok(None);
        }
        Err(error) => tracing::debug!(%error, "no watermarks for the progress topic; reading it"),
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&options.progress_topic, 0, Offset::Beginning)
        .map_err(|source| ConnectorError::Kafka {
            operation: "reading the committed progress",
            source,
        })?;
    consumer
        .assign(&assignment)
        .map_err(|source| ConnectorError::Kafka {
            operation: "reading the committed progress",
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let mut latest: Option<ProgressRecord> = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                if message.key() != Some(transactional_id.as_bytes()) {
                    continue;
                }
                // A compacted topic may keep a null value for a deleted
                // key; nothing to resume from then.
                let Some(payload) = message.payload() else {
                    latest = None;
                    continue;
                };
                let record: ProgressRecord =
                    serde_json::from_slice(payload).map_err(|e| ConnectorError::Progress {
                        committed: 0,
                        problem: format!(
                            "at offset {} of {:?} is not a progress record: {e}",
                            message.offset(),
                            options.progress_topic
                        ),
                    })?;
                latest = Some(record);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(latest),
            Some(Err(error))
                if error.rdkafka_error_code()
                    == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                tracing::info!(topic = %options.progress_topic, "no progress topic yet: nothing committed");
                return Ok(None);
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "reading the committed progress");
            }
        }
    }
    Err(ConnectorError::TimedOut {
        operation: "reading the committed progress",
        seconds: timeout.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::load_or_create(dir.path()).unwrap();
        let again = Instance::load_or_create(dir.path()).unwrap();
        assert_eq!(first.id, again.id);
        assert_eq!(first.id.len(), 36);
        assert_eq!(first.id.as_bytes()[14], b'4', "{}", first.id);
        assert!(again.transactional_id().starts_with("tidefeed-"));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Instance::load_or_create(other.path()).unwrap().id, first.id);
    }

    #[test]
    fn a_damaged_instance_file_stops_start_up_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "{",
            r#"{"format_version":2,"instance_id":"ab"}"#,
            r#"{"format_version":1,"instance_id":"not a uuid"}"#,
        ] {
            std::fs::write(dir.path().join(INSTANCE_FILE), text).unwrap();
            let error = Instance::load_or_create(dir.path())
                .unwrap_err()
                .to_string();
            assert!(error.contains(INSTANCE_FILE), "{error}");
        }
    }

    #[test]
    fn progress_records_round_trip_as_json() {
        let record = ProgressRecord {
            seq: 42,
            first_seq: 40,
            instance_id: "x".into(),
            last: Some(ChangeMark {
                ts_micros: 1_700_000_000_123_456,
                table: "users".into(),
                op: "update".into(),
            }),
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"seq":42,"first_seq":40,"instance_id":"x","last":{"ts_micros":1700000000123456,"table":"users","op":"update"}}"#
        );
        assert_eq!(
            serde_json::from_str::<ProgressRecord>(&json).unwrap(),
            record
        );
        // Records written before marks were still read.
        let old: ProgressRecord =
            serde_json::from_str(r#"{"seq":42,"first_seq":40,"instance_id":"x"}"#).unwrap();
        assert_eq!(old.last, None);
    }
}
