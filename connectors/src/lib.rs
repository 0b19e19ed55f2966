//! tidefeed's Kafka sink (rdkafka) and its checkpointing.
//!
//! Status: not implemented yet; it arrives with issue [5/6]. Nothing here
//! pretends to work.
