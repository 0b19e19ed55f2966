/// Errors of the feed crate.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A JSON value does not fit its column.
    #[error("invalid value for table {table:?}, column {column:?}: {problem}")]
    InvalidValue {
        table: String,
        column: String,
        problem: JsonProblem,
    },
    /// A row or key must be a JSON object.
    #[error("a row of table {table:?} must be a JSON object")]
    NotAnObject { table: String },
    #[error(transparent)]
    Engine(#[from] tidefeed_engine::Error),
    /// A snapshot is consistent at the current head, so it cannot start
    /// from a given position.
    #[error("a snapshot starts at the current head; it cannot be combined with a start position")]
    SnapshotWithPosition,
    /// A consumer's stream starts at the consumer's position.
    #[error("a consumer's stream starts at its acknowledged position; it cannot take a start position or a snapshot")]
    ConsumerWithPosition,
    /// A stored value has no JSON form: a timestamp outside years
    /// 0000-9999, which RFC 3339 cannot write (the engine refuses such
    /// values at write time).
    #[error("event {seq} of table {table:?} cannot be encoded: {field}: {problem}")]
    Unencodable {
        seq: tidefeed_engine::Seq,
        table: String,
        /// The column, or `ts` for the commit time.
        field: String,
        problem: crate::time::TimestampError,
    },
    /// The engine closed under a live subscription.
    #[error("the feed is closed")]
    Closed,
}

/// Why a JSON value does not fit a column type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonProblem {
    #[error("expected an integer between -2^63 and 2^63-1")]
    ExpectedInteger,
    #[error("expected a number (or \"NaN\", \"Infinity\", \"-Infinity\")")]
    ExpectedNumber,
    #[error("expected true or false")]
    ExpectedBool,
    #[error("expected a string")]
    ExpectedString,
    #[error("expected base64 (RFC 4648, padded): {0}")]
    BadBase64(crate::base64::DecodeError),
    #[error("expected an RFC 3339 timestamp: {0}")]
    BadTimestamp(crate::time::TimestampError),
}
