//! Kafka records from committed changes: which topic, key, value and
//! headers each change becomes.
//!
//! A change becomes one record: key = the JSON object of its primary key
//! (`{"id":7}`), value = the event in the configured format, headers
//! `tidefeed.seq`, `tidefeed.table`, `tidefeed.op` and `tidefeed.batch`
//! (`{"first_seq":41,"index":1,"size":2}`), timestamp = the commit time. A
//! delete is followed, when tombstones are on, by a second record with
//! the same key, headers and a null value, so a compacted topic drops the
//! key. The key bytes are the partitioner's input: one key, one
//! partition.
//!
//! Each event is encoded once, here, for the connector's one format.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};
use tidefeed_engine::{BatchPosition, Change, Seq};
use tidefeed_feed::json::JsonKey;
use tidefeed_feed::{
    encode, encode_bounded, ChangeEvent, EncodedEvent, EventOp, FeedError, Format,
};

/// A fixed allowance per record for headers and framing, in the in-flight
/// byte count.
pub(crate) const RECORD_OVERHEAD: usize = 128;

/// One record to hand to the producer.
#[derive(Debug, Clone)]
pub(crate) struct OutRecord {
    pub seq: Seq,
    pub topic: Arc<str>,
    pub key: Vec<u8>,
    /// `None` for a tombstone.
    pub value: Option<EncodedEvent>,
    pub table: Arc<str>,
    pub op: EventOp,
    pub batch: Option<BatchPosition>,
    /// Commit time, microseconds since the Unix epoch.
    pub ts_micros: i64,
    /// Set on a dead letter: why, and where the record was going.
    pub dead_letter: Option<DeadLetterInfo>,
}

#[derive(Debug, Clone)]
pub(crate) struct DeadLetterInfo {
    pub error: String,
    pub original_topic: String,
    /// The refused record was the tombstone after a delete.
    pub tombstone: bool,
}

impl OutRecord {
    /// The record's Kafka timestamp: the commit time in milliseconds.
    pub(crate) fn timestamp_ms(&self) -> i64 {
        self.ts_micros.div_euclid(1000)
    }

    /// What this record counts for in the in-flight bound.
    pub(crate) fn size(&self) -> usize {
        record_size(self.key.len(), self.value.as_ref().map_or(0, |v| v.len()))
    }

    pub(crate) fn headers(&self) -> OwnedHeaders {
        use std::io::Write as _;
        // Header values are copied by librdkafka: format them on the stack.
        let mut seq = [0u8; 20];
        let mut cursor = std::io::Cursor::new(&mut seq[..]);
        write!(cursor, "{}", self.seq).expect("a u64 fits in 20 bytes");
        let seq_len = cursor.position() as usize;
        let mut headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header {
                key: "tidefeed.seq",
                value: Some(&seq[..seq_len]),
            })
            .insert(Header {
                key: "tidefeed.table",
                value: Some(self.table.as_bytes()),
            })
            .insert(Header {
                key: "tidefeed.op",
                value: Some(self.op.name().as_bytes()),
            });
        if let Some(batch) = self.batch {
            let mut text = [0u8; 80];
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            write!(
                cursor,
                r#"{{"first_seq":{},"index":{},"size":{}}}"#,
                batch.first_seq, batch.index, batch.size
            )
            .expect("a batch position fits in 80 bytes");
            let len = cursor.position() as usize;
            headers = headers.insert(Header {
                key: "tidefeed.batch",
                value: Some(&text[..len]),
            });
        }
        if let Some(dead) = &self.dead_letter {
            headers = headers
                .insert(Header {
                    key: "tidefeed.error",
                    value: Some(dead.error.as_bytes()),
                })
                .insert(Header {
                    key: "tidefeed.topic",
                    value: Some(dead.original_topic.as_bytes()),
                });
            if dead.tombstone {
                headers = headers.insert(Header {
                    key: "tidefeed.tombstone",
                    value: Some(b"true".as_slice()),
                });
            }
        }
        headers
    }
}

/// The in-flight size of a record with these key and value lengths (the
/// delivery callback computes it again from the delivered message).
pub(crate) fn record_size(key: usize, value: usize) -> usize {
    key + value + RECORD_OVERHEAD
}

/// Why a change could not become records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Engine(#[from] tidefeed_engine::Error),
    /// The key has no JSON form.
    #[error("the key of change {seq} cannot be written as JSON: {source}")]
    Key {
        seq: Seq,
        #[source]
        source: serde_json::Error,
    },
    /// A table's topic would be one the connector keeps for itself.
    #[error("table {table:?} would go to topic {topic:?}, which is the connector's {role} topic")]
    TopicCollision {
        table: String,
        topic: String,
        role: &'static str,
    },
}

/// Turns changes into records: the topic template, the format and the
/// tombstone setting, with a cache of topic names by table.
#[derive(Debug)]
pub(crate) struct RecordBuilder {
    template: String,
    format: Format,
    tombstones: bool,
    /// Topics a table may not use: (topic, role).
    reserved: Vec<(String, &'static str)>,
    dead_letter_topic: Option<Arc<str>>,
    topics: HashMap<String, (Arc<str>, Arc<str>)>,
}

impl RecordBuilder {
    pub(crate) fn new(
        template: &str,
        format: Format,
        tombstones: bool,
        dead_letter_topic: Option<&str>,
        reserved: Vec<(String, &'static str)>,
    ) -> RecordBuilder {
        RecordBuilder {
            template: template.to_owned(),
            format,
            tombstones,
            reserved,
            dead_letter_topic: dead_letter_topic.map(Arc::from),
            topics: HashMap::new(),
        }
    }

    /// The topic of `table`'s changes and the table's name, shared.
    fn topic_for(&mut self, table: &str) -> Result<(Arc<str>, Arc<str>), BuildError> {
        if let Some(found) = self.topics.get(table) {
            return Ok(found.clone());
        }
        let topic = self.template.replace("{table}", table);
        if let Some((_, role)) = self.reserved.iter().find(|(t, _)| *t == topic) {
            return Err(BuildError::TopicCollision {
                table: table.to_owned(),
                topic,
                role,
            });
        }
        let entry = (Arc::<str>::from(topic), Arc::<str>::from(table));
        self.topics.insert(table.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Appends the records of `change` (the event, then its tombstone if
    /// any) and returns how many.
    pub(crate) fn records(
        &mut self,
        change: &Change,
        out: &mut Vec<OutRecord>,
    ) -> Result<u32, BuildError> {
        let event = ChangeEvent::from_change(change)?;
        let value = encode(&event, self.format)?;
        let key = key_json(&event)?;
        let (topic, table) = self.topic_for(event.table.name())?;
        let record = OutRecord {
            seq: event.seq,
            topic,
            key,
            value: Some(value),
            table,
            op: event.op,
            batch: event.batch,
            ts_micros: event.ts_micros,
            dead_letter: None,
        };
        if self.tombstones && event.op == EventOp::Delete {
            let tombstone = OutRecord {
                value: None,
                ..record.clone()
            };
            out.push(record);
            out.push(tombstone);
            Ok(2)
        } else {
            out.push(record);
            Ok(1)
        }
    }

    /// The dead letter of a refused record of `change`: to the dead-letter
    /// topic, same key, the event key-only (as the feed's oversized policy
    /// writes it, flagged `"truncated": true`), headers naming the error
    /// and the original topic.
    pub(crate) fn dead_letter(
        &mut self,
        change: &Change,
        error: String,
        tombstone: bool,
    ) -> Result<OutRecord, BuildError> {
        let dead_letter_topic = self
            .dead_letter_topic
            .clone()
            .expect("dead letters are built only under the dead-letter policy");
        let event = ChangeEvent::from_change(change)?;
        let (value, _) = encode_bounded(&event, self.format, 0)?;
        let key = key_json(&event)?;
        let (topic, table) = self.topic_for(event.table.name())?;
        Ok(OutRecord {
            seq: event.seq,
            topic: dead_letter_topic,
            key,
            value: Some(value),
            table,
            op: event.op,
            batch: event.batch,
            ts_micros: event.ts_micros,
            dead_letter: Some(DeadLetterInfo {
                error,
                original_topic: topic.to_string(),
                tombstone,
            }),
        })
    }
}

fn key_json(event: &ChangeEvent) -> Result<Vec<u8>, BuildError> {
    serde_json::to_vec(&JsonKey {
        table: &event.table,
        key: &event.key,
    })
    .map_err(|source| BuildError::Key {
        seq: event.seq,
        source,
    })
}
