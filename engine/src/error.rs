//! The engine's error type. Every variant carries the context an operator or a
//! client needs to act: the file and offset of corruption, the table and column
//! of a rejected row, the seq of a failed precondition.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::schema::ColumnType;
use crate::Seq;

/// Result alias for engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed outside the commit path.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The WAL write or fdatasync of this write's commit group failed. The
    /// write was not acknowledged; whether it reached disk is unknown until the
    /// engine is reopened. The engine is poisoned from here on.
    #[error(
        "{stage} failed, the write's outcome is unknown and the engine is now poisoned: {cause}"
    )]
    CommitFailed {
        stage: Stage,
        #[source]
        cause: Arc<Error>,
    },

    /// An earlier failure stopped the engine (fail-stop): a WAL write or
    /// fdatasync, a flush, a compaction, a manifest or consumers-file
    /// write, or a panic of an engine thread. `cause` keeps the original
    /// error with its file. Reopening the engine recovers every
    /// acknowledged write.
    #[error("the engine stopped after a failure ({stage} failed: {cause}); restart to recover")]
    Poisoned {
        stage: Stage,
        #[source]
        cause: Arc<Error>,
    },

    /// An engine thread panicked (a bug); the engine is poisoned.
    #[error("the {thread} thread panicked: {message}")]
    Panicked {
        thread: &'static str,
        message: String,
    },

    /// On-disk data failed validation. Startup stops rather than guess.
    #[error("corruption in {} at offset {offset}: {problem}", file.display())]
    Corruption {
        file: PathBuf,
        offset: u64,
        problem: Corruption,
    },

    /// Another process (or another `Engine` in this process) holds the data directory.
    #[error("data directory {} is locked by another tidefeed engine", path.display())]
    Locked { path: PathBuf },

    #[error("table {table:?} does not exist")]
    NoSuchTable { table: String },

    #[error("table {table:?} already exists with a different schema")]
    SchemaConflict { table: String },

    #[error("invalid schema for table {table:?}: {problem}")]
    InvalidSchema {
        table: String,
        problem: SchemaProblem,
    },

    #[error("invalid row for table {table:?}, column {column:?}: {problem}")]
    InvalidRow {
        table: String,
        column: String,
        problem: RowProblem,
    },

    /// Patch of a row that does not exist.
    #[error("table {table:?} has no row with that key")]
    RowNotFound { table: String },

    /// A conditional write (`If-Match`, `If-None-Match`) found a version
    /// (or the absence of one) that does not satisfy it.
    #[error("table {table:?}: the write expected {expected}, but the row's current version is {}", match actual { Some(seq) => format!("{seq}"), None => "none (no row)".to_owned() })]
    PreconditionFailed {
        table: String,
        expected: crate::commit::Precondition,
        actual: Option<Seq>,
    },

    /// One operation of a batch failed; the whole batch was rejected and
    /// consumed no seq.
    #[error("batch operation {index} rejected, nothing was written: {source}")]
    InBatch {
        index: usize,
        #[source]
        source: Box<Error>,
    },

    #[error("batch is empty")]
    EmptyBatch,

    #[error("batch has {ops} operations, the limit is {limit}")]
    BatchTooLarge { ops: usize, limit: usize },

    /// A key, row or batch is larger than its configured limit. Nothing
    /// was written.
    #[error("{what} is {size} bytes, more than {} ({limit} bytes)", what.setting())]
    TooLarge {
        what: SizeLimit,
        size: usize,
        limit: usize,
    },

    /// History at or below the low-water mark has been compacted away: a
    /// change scan from `requested` (exclusive) or a read as of `requested`
    /// cannot be served. Never an empty or partial result instead.
    #[error("history below seq {low_water} is no longer retained (requested {requested})")]
    BelowRetention { requested: Seq, low_water: Seq },

    #[error("consumer name {name:?} must be 1 to 64 characters of a-z, 0-9, '_', '-', '.', starting with a letter, digit or '_'")]
    InvalidConsumerName { name: String },
    #[error("consumer {name:?} already exists")]
    ConsumerExists { name: String },
    #[error("consumer {name:?} does not exist")]
    NoSuchConsumer { name: String },
    /// The consumer stopped holding retention; its history may be gone.
    #[error("consumer {name:?} was invalidated: {reason}")]
    ConsumerInvalidated {
        name: String,
        reason: crate::consumers::InvalidationReason,
    },

    /// A read asked for a seq that has not been committed yet.
    #[error("seq {requested} is not yet visible (visible seq is {visible})")]
    FutureSeq { requested: Seq, visible: Seq },

    /// A stored key or row image does not decode against its table. Images
    /// are checksummed on disk, so this indicates a bug, not a disk fault.
    #[error("stored image of table {table:?} at seq {seq} does not decode: {what}")]
    Undecodable {
        table: String,
        seq: Seq,
        what: &'static str,
    },

    /// A committed seq could not be found. The engine keeps every seq it
    /// has published, so this is an invariant violation: report it.
    #[error("committed change {seq} is missing from the engine (an engine bug)")]
    MissingChange { seq: Seq },

    /// `Engine::open` was given options that cannot work together.
    #[error(transparent)]
    InvalidOptions(#[from] crate::options::OptionsError),

    /// The engine was closed; no further operations are possible.
    #[error("the engine is closed")]
    Closed,
}

/// Which size limit a write exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// The encoded primary key.
    Key,
    /// The encoded row (after-image).
    Row,
    /// The batch as logged: keys, before- and after-images.
    Batch,
}

impl SizeLimit {
    /// The name of the limit's setting.
    pub fn setting(self) -> &'static str {
        match self {
            SizeLimit::Key => "max_key_bytes",
            SizeLimit::Row => "max_row_bytes",
            SizeLimit::Batch => "max_batch_bytes",
        }
    }
}

impl std::fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SizeLimit::Key => "the encoded key",
            SizeLimit::Row => "the encoded row",
            SizeLimit::Batch => "the batch (keys, before- and after-images)",
        })
    }
}

/// Which step of the engine's work failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Writing a commit group to the WAL.
    Write,
    /// fdatasync of the WAL.
    Sync,
    /// Sealing a WAL segment and starting the next.
    Rotate,
    /// Writing a memtable to a table file.
    Flush,
    /// Merging table files.
    Compaction,
    /// Committing the manifest.
    Manifest,
    /// Writing `consumers.json`.
    Consumers,
    /// The commit thread panicked.
    CommitThread,
    /// The background (flush and compaction) thread panicked.
    BackgroundThread,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Write => "WAL write",
            Stage::Sync => "WAL fdatasync",
            Stage::Rotate => "WAL segment rotation",
            Stage::Flush => "memtable flush",
            Stage::Compaction => "compaction",
            Stage::Manifest => "manifest commit",
            Stage::Consumers => "consumers file write",
            Stage::CommitThread => "the commit thread",
            Stage::BackgroundThread => "the background thread",
        })
    }
}

/// What exactly is wrong with a corrupt file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("bad magic number (not a tidefeed {expected} file)")]
    BadMagic { expected: &'static str },
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("checksum mismatch in a record that is followed by valid records (not a torn tail)")]
    ChecksumMismatch,
    #[error(
        "record framing is invalid in a record that is followed by valid records (not a torn tail)"
    )]
    BadFrame,
    #[error("sealed segment ends inside a record")]
    TruncatedSealedSegment,
    #[error("record payload does not decode: {0}")]
    BadRecord(&'static str),
    #[error("seq {found} follows seq {previous}: the log has a gap or a repeat")]
    SeqDiscontinuity { previous: Seq, found: Seq },
    #[error("record refers to unknown table id {0}")]
    UnknownTable(u32),
    #[error("row image does not decode: {0}")]
    BadRow(&'static str),
    #[error("{section} checksum mismatch")]
    BlockChecksum { section: &'static str },
    #[error("{section} does not decode: {what}")]
    BadBlock {
        section: &'static str,
        what: &'static str,
    },
    #[error("SSTable footer is invalid: {0}")]
    BadFooter(&'static str),
    #[error("manifest does not parse: {0}")]
    BadManifest(String),
    #[error("manifest refers to a missing table file")]
    MissingTableFile,
    #[error("catalog does not parse: {0}")]
    BadCatalog(String),
    #[error("table files hold rows of table id {table_id}, but the catalog knows tables only up to id {highest_known}: the catalog is older than the data")]
    StaleCatalog { table_id: u32, highest_known: u32 },
    #[error("consumers file does not parse: {0}")]
    BadConsumers(String),
    /// A metadata file is missing from a directory that holds data.
    #[error("the file is missing, but the data directory is not new ({evidence}); refusing to start and changing nothing: restore the file, or move the directory aside to start empty")]
    MissingMetadata { evidence: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    #[error("table name must match [a-z][a-z0-9_]{{0,62}}")]
    BadTableName,
    #[error("column name {0:?} must match [a-z_][a-z0-9_]{{0,62}}")]
    BadColumnName(String),
    #[error("column {0:?} is declared twice")]
    DuplicateColumn(String),
    #[error("a table needs at least one column")]
    NoColumns,
    #[error("a table has at most {limit} columns")]
    TooManyColumns { limit: usize },
    #[error("the primary key is empty")]
    EmptyPrimaryKey,
    #[error("primary key column {0:?} is not a column of the table")]
    UnknownKeyColumn(String),
    #[error("primary key column {0:?} is listed twice")]
    DuplicateKeyColumn(String),
    #[error("primary key column {0:?} is nullable; key columns never are")]
    NullableKeyColumn(String),
    #[error("primary key column {column:?} has type {ty}, which cannot be a key")]
    UnkeyableType { column: String, ty: ColumnType },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("no such column")]
    UnknownColumn,
    #[error("expected a value of type {expected}, got {found}")]
    TypeMismatch {
        expected: ColumnType,
        found: &'static str,
    },
    #[error("the column is not nullable and no value was given")]
    Missing,
    #[error("the column is not nullable")]
    Null,
    #[error("NaN cannot be part of a key")]
    NaNKey,
    #[error("the column is given twice")]
    Duplicate,
    #[error("a key must name exactly the primary key columns; this one is not a key column")]
    NotAKeyColumn,
    #[error("a patch cannot change a primary key column")]
    KeyChange,
    #[error("timestamp is outside the years 0000 to 9999 (RFC 3339)")]
    TimestampOutOfRange,
    #[error("JSON value is nested {depth} levels deep, more than the limit of {limit}")]
    TooDeep { depth: usize, limit: usize },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn invalid_row(table: &str, column: &str, problem: RowProblem) -> Error {
        Error::InvalidRow {
            table: table.to_owned(),
            column: column.to_owned(),
            problem,
        }
    }
}
