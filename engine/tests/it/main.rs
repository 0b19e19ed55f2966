//! Engine behaviour tests, one module per behaviour, compiled into a single
//! test binary to keep link time down.

mod batches;
mod before_image_chain;
mod catalog;
mod common;
mod consumers;
mod crash_recovery;
mod fail_stop;
mod flush;
mod group_commit;
mod limits;
mod metadata;
mod oracle;
mod races;
mod reads;
mod retention;
mod shutdown;
mod wal_fixtures;
