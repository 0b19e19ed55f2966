//! The Kafka connector against librdkafka's in-process mock cluster.
//!
//! `MockCluster` is `!Send`: each test keeps it in its own body (the test
//! thread, which drives the runtime's `block_on`) and hands the connector
//! only its bootstrap address.

#[path = "../common/mod.rs"]
mod common;

mod adversarial_contract;
mod adversarial_errors;
mod adversarial_exactly_once;
mod debezium;
mod exactly_once;
mod forwarding;
mod outage;
mod retention;
mod terminal_errors;
