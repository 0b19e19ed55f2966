//! The commit path (DESIGN.md section 4).
//!
//! Writers validate and encode their rows on their own thread
//! ([`request::prepare`]), then hand the prepared batch to the single commit
//! thread ([`thread`]). That thread owns the commit order: it resolves
//! before-images against the current state plus the earlier requests of the
//! same group ([`resolve`]), assigns seqs, writes one WAL frame per batch,
//! fdatasyncs once per group, applies to the memtable, publishes
//! `visible_seq`, and only then replies.

pub(crate) mod request;
pub(crate) mod resolve;
pub(crate) mod thread;

pub use request::{Mutation, MutationOp, Outcome, Precondition, WriteResult, MAX_BATCH_OPS};
