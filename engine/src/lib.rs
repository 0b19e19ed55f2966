//! tidefeed's storage engine.
//!
//! Rows are written through a single commit thread that owns the commit
//! order: it captures each change's before-image, assigns a global seq,
//! writes the batch to the WAL (one fdatasync shared by every write that
//! arrived while the previous one ran), applies it to the memtable and only
//! then publishes it as visible. Every committed mutation is kept as a
//! change record with its before- and after-image, readable in key order
//! (point reads, range scans, at any retained seq) and in seq order (the
//! change scan the feed is built on).
//!
//! Start with [`Engine::open`]; see `ARCHITECTURE.md` for the invariants.

mod catalog;
mod change;
mod codec;
mod commit;
mod compaction;
mod consumers;
mod datadir;
mod engine;
mod error;
mod fault;
mod flow;
mod flush;
mod fsutil;
mod manifest;
mod memtable;
mod metrics;
mod options;
mod read;
mod retention;
mod schema;
mod sst;
mod state;
mod wal;

/// A position in the global change order. Seq 0 means "before everything";
/// the first committed change has seq 1.
pub type Seq = u64;

pub use catalog::CreateTable;
pub use change::{BatchPosition, Change, ChangeKind};
pub use commit::{Mutation, MutationOp, Outcome, Precondition, WriteResult, MAX_BATCH_OPS};
pub use consumers::{ConsumerInfo, InvalidationReason};
pub use engine::{Engine, KeyRange, Recovery, RowVersion, ScanPage};
pub use error::{Corruption, Error, Result, RowProblem, SchemaProblem, SizeLimit, Stage};
pub use fault::FaultInjector;
pub use metrics::{MetricsSnapshot, GROUP_SIZE_BUCKETS, MAX_LEVELS};
pub use options::{Durability, EngineOptions, Limits, OptionsError};
pub use read::ChangeIter;
pub use schema::{
    Column, ColumnType, NamedValues, Row, Table, TableId, TableSchema, Value, MAX_COLUMNS,
    MAX_JSON_DEPTH, MAX_TIMESTAMP_MICROS, MIN_TIMESTAMP_MICROS,
};
pub use wal::recovery::WalReplay;
