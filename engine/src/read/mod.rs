//! Read paths: point reads and key-range scans at a seq ([`merge`]), and the
//! seq-ordered change scan ([`changes`]).

pub(crate) mod changes;
pub(crate) mod merge;

pub use changes::ChangeIter;
