//! Topic creation and the broker settings the connector checks, through
//! Kafka's admin API.
//!
//! A topic is created the first time the connector is about to write to
//! it (when creation is on); one that exists already is fine. A creation
//! the broker refuses (no permission, an API it lacks) is logged and left
//! to the broker: if the topic stays missing, producing to it fails with
//! a terminal error and the policy decides, so nothing is skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::error::ConnectorError;
use super::options::{KafkaOptions, TopicCreation};

pub(crate) struct Topics {
    admin: Arc<AdminClient<DefaultClientContext>>,
    creation: TopicCreation,
    /// Topics known to exist, or whose creation was attempted.
    known: HashSet<String>,
    /// The topic `ensure` last saw.
    last: Option<Arc<str>>,
    timeout: Duration,
}

impl Topics {
    pub(crate) fn new(options: &KafkaOptions) -> Result<Topics, ConnectorError> {
        let mut config = ClientConfig::new();
        for (key, value) in options.client_settings() {
            config.set(key, value);
        }
        let admin = config.create().map_err(|source| ConnectorError::Client {
            client: "admin client",
            source,
        })?;
        Ok(Topics {
            admin: Arc::new(admin),
            creation: options.topic_creation,
            known: HashSet::new(),
            last: None,
            timeout: options.request_timeout,
        })
    }

    /// The admin client, for a task that checks the brokers answer.
    pub(crate) fn admin(&self) -> Arc<AdminClient<DefaultClientContext>> {
        self.admin.clone()
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Makes sure a table's topic exists, when creation is on. Returns
    /// quickly for topics already seen.
    pub(crate) async fn ensure(&mut self, topic: &Arc<str>) {
        // Consecutive records mostly share a topic (the same shared name).
        if self
            .last
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, topic))
        {
            return;
        }
        if self.known.contains(&**topic) {
            self.last = Some(topic.clone());
            return;
        }
        if let TopicCreation::Create {
            partitions,
            replication_factor,
        } = self.creation
        {
            self.create(
                topic,
                partitions.map_or(-1, |p| p as i32),
                replication_factor.map_or(-1, i32::from),
                &[],
            )
            .await;
        }
        self.known.insert(topic.to_string());
        self.last = Some(topic.clone());
    }

    /// Creates the exactly-once progress topic, when creation is on: one
    /// partition (one total order of progress records), compacted (only
    /// the latest record per instance matters), replicated like the data
    /// topics. Left to the broker, it must be created so by an operator
    /// (the connector writes to and reads from its partition 0 only).
    pub(crate) async fn ensure_progress(&mut self, topic: &str) {
        if self.known.contains(topic) {
            return;
        }
        let replication = match self.creation {
            TopicCreation::Create {
                replication_factor, ..
            } => replication_factor.map_or(-1, i32::from),
            TopicCreation::Broker => {
                self.known.insert(topic.to_owned());
                return;
            }
        };
        self.create(topic, 1, replication, &[("cleanup.policy", "compact")])
            .await;
        self.known.insert(topic.to_owned());
    }

    async fn create(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
        config: &[(&str, &str)],
    ) {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (key, value) in config {
            new = new.set(key, value);
        }
        match self
            .admin
            .create_topics([&new], &self.admin_options())
            .await
        {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    tracing::info!(topic, partitions, replication, "created Kafka topic")
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
                Some(Err((_, code))) => tracing::warn!(
                    topic,
                    error = %code,
                    "could not create the Kafka topic; leaving it to the broker"
                ),
                None => {}
            },
            Err(error) => tracing::warn!(
                topic,
                %error,
                "could not create the Kafka topic; leaving it to the broker"
            ),
        }
    }

    /// The brokers' `transaction.max.timeout.ms`, if a broker says.
    pub(crate) async fn transaction_max_timeout(&self) -> Option<Duration> {
        let admin = self.admin.clone();
        let timeout = self.timeout;
        // Metadata is fetched synchronously by librdkafka; keep it off the
        // executor.
        let broker = {
            let metadata =
                tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
                    .await
                    .ok()?;
            match metadata {
                Ok(metadata) => metadata.brokers().first().map(|b| b.id())?,
                Err(error) => {
                    tracing::debug!(%error, "no broker metadata for transaction.max.timeout.ms");
                    return None;
                }
            }
        };
        let resource = ResourceSpecifier::Broker(broker);
        let described = self
            .admin
            .describe_configs([&resource], &self.admin_options())
            .await;
        let value = match described {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(config)) => config
                    .get("transaction.max.timeout.ms")
                    .and_then(|entry| entry.value.clone()),
                Some(Err(code)) => {
                    tracing::debug!(error = %code, "brokers did not describe their configuration");
                    None
                }
                None => None,
            },
            Err(error) => {
                tracing::debug!(%error, "brokers did not describe their configuration");
                None
            }
        }?;
        value.parse::<u64>().ok().map(Duration::from_millis)
    }
}
