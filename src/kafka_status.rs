//! The Kafka connector as a component of the HTTP service: its status in
//! `GET /v1/status` under `"kafka"`, its figures in `/metrics` under
//! `tidefeed_kafka_connector_*`. Lives in the binary because the http
//! crate knows nothing of Kafka.

use serde_json::json;
use tidefeed_connectors::{ConnectorState, StatusHandle};
use tidefeed_http::{Component, Sample, SampleKind};

pub struct KafkaComponent(pub StatusHandle);

impl Component for KafkaComponent {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn status(&self) -> serde_json::Value {
        let s = self.0.status();
        json!({
            "state": s.state.name(),
            "mode": s.mode.name(),
            "consumer": s.consumer,
            "error": s.error,
            "position": s.position,
            "head": s.head,
            "lag_seqs": s.lag_seqs,
            "delivered": s.delivered,
            "retried": s.retried,
            "failed": s.failed,
            "dead_lettered": s.dead_lettered,
            "in_flight_bytes": s.in_flight_bytes,
            "in_flight_records": s.in_flight_records,
            "transactions_committed": s.transactions_committed,
            "transactions_aborted": s.transactions_aborted,
            "invalidated": s.invalidated.map(|reason| json!({
                "kind": reason.kind(),
                "message": reason.to_string(),
            })),
        })
    }

    fn samples(&self) -> Vec<Sample> {
        let s = self.0.status();
        let sample = |name, help, kind, value: u64| Sample {
            name,
            help,
            kind,
            labels: Vec::new(),
            value: value as f64,
        };
        let mut samples: Vec<Sample> = ConnectorState::ALL
            .iter()
            .map(|state| Sample {
                name: "tidefeed_kafka_connector_state",
                help: "1 for the state the Kafka connector is in, 0 for the others.",
                kind: SampleKind::Gauge,
                labels: vec![("state", state.name().to_owned())],
                value: f64::from(u8::from(*state == s.state)),
            })
            .collect();
        samples.extend([
            sample(
                "tidefeed_kafka_connector_position_seq",
                "Every change up to this seq is confirmed by Kafka.",
                SampleKind::Gauge,
                s.position,
            ),
            sample(
                "tidefeed_kafka_connector_lag_seqs",
                "Changes committed and not yet confirmed by Kafka.",
                SampleKind::Gauge,
                s.lag_seqs,
            ),
            sample(
                "tidefeed_kafka_connector_records_delivered_total",
                "Records Kafka confirmed (events, tombstones, dead letters).",
                SampleKind::Counter,
                s.delivered,
            ),
            sample(
                "tidefeed_kafka_connector_retries_total",
                "Retried produce requests, stalls and rebuilt producers or transactions.",
                SampleKind::Counter,
                s.retried,
            ),
            sample(
                "tidefeed_kafka_connector_records_failed_total",
                "Records Kafka refused for good; each followed the terminal-error policy.",
                SampleKind::Counter,
                s.failed,
            ),
            sample(
                "tidefeed_kafka_connector_records_dead_lettered_total",
                "Records sent key-only to the dead-letter topic.",
                SampleKind::Counter,
                s.dead_lettered,
            ),
            sample(
                "tidefeed_kafka_connector_in_flight_bytes",
                "Bytes handed to the producer and not yet confirmed or refused.",
                SampleKind::Gauge,
                s.in_flight_bytes,
            ),
            sample(
                "tidefeed_kafka_connector_in_flight_records",
                "Records handed to the producer and not yet confirmed or refused.",
                SampleKind::Gauge,
                s.in_flight_records,
            ),
        ]);
        for (outcome, count) in [
            ("committed", s.transactions_committed),
            ("aborted", s.transactions_aborted),
        ] {
            samples.push(Sample {
                name: "tidefeed_kafka_connector_transactions_total",
                help: "Kafka transactions (exactly-once mode), by outcome.",
                kind: SampleKind::Counter,
                labels: vec![("outcome", outcome.to_owned())],
                value: count as f64,
            });
        }
        samples
    }
}
