//! End-to-end tests of the HTTP service: a real listener on 127.0.0.1:0,
//! a real HTTP client, SSE read by a real SSE parser. One module per
//! behaviour, one test binary.

mod adversarial_auth;
mod adversarial_concurrency;
mod adversarial_core;
mod adversarial_fuzz;
mod adversarial_ops;
mod adversarial_rows;
mod adversarial_sse;
mod adversarial_wire;
mod auth;
mod bad_input;
mod batch;
mod browser;
mod changes_pull;
mod common;
mod consumers;
mod limits;
mod metrics;
mod rows;
mod sse;
mod tables;
