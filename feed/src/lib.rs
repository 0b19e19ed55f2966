//! tidefeed's change feed: change events, cursors, live subscriptions,
//! filters, retention with durable consumers, and the wire encodings
//! (native JSON, Debezium envelope).
//!
//! Status: not implemented yet; it arrives with issue [3/6]. The engine's
//! seq-ordered change scan ([`tidefeed_engine::Engine::changes`]) is what
//! this crate builds on. Nothing here pretends to work.
