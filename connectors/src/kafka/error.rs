//! The connector's error type.

use std::path::PathBuf;

use rdkafka::error::KafkaError;
use tidefeed_engine::Seq;

/// Why the connector could not start, or why it stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// An option the connector cannot work with.
    #[error("kafka option {option}: {reason}")]
    Option { option: String, reason: String },
    /// librdkafka refused a setting or could not create a client.
    #[error("creating the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Engine(#[from] tidefeed_engine::Error),
    #[error(transparent)]
    Feed(#[from] tidefeed_feed::FeedError),
    /// The connector's instance file in the data directory.
    #[error("{}: {problem}", path.display())]
    InstanceFile { path: PathBuf, problem: String },
    /// Exactly-once: the progress committed in Kafka does not fit this
    /// data directory.
    #[error("the progress committed in Kafka ({committed}) {problem}")]
    Progress { committed: Seq, problem: String },
    /// A Kafka operation failed.
    #[error("{operation}: {source}")]
    Kafka {
        operation: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A Kafka operation did not finish in time.
    #[error("{operation} did not finish within {seconds} s")]
    TimedOut {
        operation: &'static str,
        seconds: u64,
    },
}
