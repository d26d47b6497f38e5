//! Query errors with a protocol-neutral kind. Each front end maps the kind to its own codes in
//! one place (the Postgres front end to SQLSTATEs, HTTP to statuses, Flight to gRPC codes), so
//! the query core never speaks any one protocol.
//!
//! The kinds are as fine as the distinctions clients act on (a missing table is not a missing
//! column), which is why there are more than a handful.

use datafusion::error::DataFusionError;
use eddy_ingest::IngestError;
use eddy_storage::StorageError;

/// What went wrong, independent of any wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The statement text does not parse, or a clause is malformed.
    Syntax,
    /// A table or view named by the statement does not exist.
    TableNotFound,
    /// A column named by the statement does not exist.
    ColumnNotFound,
    /// A function named by the statement does not exist for these arguments.
    FunctionNotFound,
    /// A schema named by the statement does not exist.
    SchemaNotFound,
    /// Another object named by the statement (a stream source) does not exist.
    ObjectNotFound,
    /// A column reference matches more than one column.
    AmbiguousColumn,
    /// A column name is given twice.
    DuplicateColumn,
    /// The object to create already exists.
    AlreadyExists,
    /// Other objects depend on the object to drop.
    HasDependents,
    /// A value's type is not the column's.
    TypeMismatch,
    /// A required value is missing (a null time).
    NullValue,
    /// A table definition is invalid.
    InvalidDefinition,
    /// Rows fall before what the table keeps.
    BeyondRetention,
    /// An option or argument value is invalid.
    InvalidParameter,
    /// Data cannot be computed or converted.
    InvalidData,
    /// Text cannot be read as a value of the type it must have (`'maybe'` as a boolean).
    InvalidTextRepresentation,
    /// A division by zero.
    DivisionByZero,
    /// A `LIKE` pattern or escape string is malformed (a pattern ending in its escape).
    InvalidEscapeSequence,
    /// A number does not fit its type (integer overflow, a cast to a narrower integer).
    NumericOutOfRange,
    /// A date or time is outside what a timestamp holds.
    DatetimeOutOfRange,
    /// An aggregate or GROUP BY is used wrongly.
    Grouping,
    /// The statement needs a planning feature that is not there.
    Plan,
    /// The statement would reach what clients may not (the server's file system).
    PermissionDenied,
    /// Eddy does not support this.
    Unsupported,
    /// A configured limit was reached.
    LimitExceeded,
    /// The statement nests too deep to plan.
    TooComplex,
    /// The query memory pool is exhausted.
    ResourcesExhausted,
    /// The statement was cancelled.
    Cancelled,
    /// The server is shutting down or stopped writing.
    ShuttingDown,
    /// A file could not be read or written.
    Io,
    /// The disk (or the quota) under the data directory is full: the write was refused, and
    /// writes resume by themselves once space is freed.
    DiskFull,
    /// A file read back is damaged.
    Corrupt,
    /// A bug or an unexpected state.
    Internal,
}

/// An error from planning or running a statement: its kind and a message naming what was
/// wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Message naming what was wrong.
    pub message: String,
}

/// Result type of the query layer.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    /// An error of a kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A feature Eddy does not support.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// A bug or an unexpected state.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// The kind of a storage error.
pub fn storage_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::TableNotFound(_) => ErrorKind::TableNotFound,
        StorageError::TableExists(_)
        | StorageError::SourceExists(_)
        | StorageError::IndexExists(_) => ErrorKind::AlreadyExists,
        StorageError::SourceNotFound(_) | StorageError::IndexNotFound(_) => {
            ErrorKind::ObjectNotFound
        }
        StorageError::InvalidQuery(_) => ErrorKind::InvalidParameter,
        StorageError::TypeConflict { .. } => ErrorKind::TypeMismatch,
        StorageError::InvalidSchema { reason, .. } if reason.contains("may not be null") => {
            ErrorKind::NullValue
        }
        StorageError::InvalidSchema { .. } => ErrorKind::InvalidDefinition,
        StorageError::LimitExceeded(_) => ErrorKind::LimitExceeded,
        StorageError::BeyondRetention { .. } => ErrorKind::BeyondRetention,
        StorageError::ShutDown(_) => ErrorKind::ShuttingDown,
        StorageError::Io { .. } => ErrorKind::Io,
        StorageError::DiskFull { .. } => ErrorKind::DiskFull,
        StorageError::Corrupt { .. } | StorageError::Inconsistent { .. } => ErrorKind::Corrupt,
        StorageError::UnsupportedFormat { .. } => ErrorKind::Unsupported,
        StorageError::Arrow(_) | StorageError::Parquet(_) => ErrorKind::Internal,
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        Self::new(storage_kind(&e), e.to_string())
    }
}

impl From<eddy_ingest::sources::SourceError> for QueryError {
    fn from(e: eddy_ingest::sources::SourceError) -> Self {
        use eddy_ingest::sources::SourceError;
        match e {
            SourceError::Invalid(m) => Self::new(ErrorKind::InvalidParameter, m),
            SourceError::Storage(s) => s.into(),
        }
    }
}

impl From<IngestError> for QueryError {
    fn from(e: IngestError) -> Self {
        Self::new(storage_kind(e.storage_error()), e.to_string())
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        DataFusionError::from(e).into()
    }
}

/// A damaged file anywhere in an error's chain of sources: a segment that failed its checksum
/// reaches DataFusion inside `ParquetError::External`, possibly wrapped again (`Context`,
/// `Shared`, `ArrowError::ExternalError`), which `find_root` does not look through.
fn corrupt_source(e: &DataFusionError) -> Option<&StorageError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(se) = err.downcast_ref::<StorageError>()
            && storage_kind(se) == ErrorKind::Corrupt
        {
            return Some(se);
        }
        next = err.source();
    }
    None
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        if let Some(se) = corrupt_source(&e) {
            return QueryError::new(ErrorKind::Corrupt, se.to_string());
        }
        let root = e.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(se) = inner.downcast_ref::<StorageError>() {
                return QueryError::new(storage_kind(se), se.to_string());
            }
            if let Some(ie) = inner.downcast_ref::<IngestError>() {
                return QueryError::new(storage_kind(ie.storage_error()), ie.to_string());
            }
            if let Some(qe) = inner.downcast_ref::<QueryError>() {
                return qe.clone();
            }
        }
        if let Some(qe) = crate::overflow::out_of_range(root) {
            return qe;
        }
        let message = root.message().to_string();
        let kind = match root {
            // The parser's own bound on nested parentheses and subqueries.
            DataFusionError::SQL(..)
                if message.to_lowercase().contains("recursion limit")
                    || message.contains("RecursionLimitExceeded") =>
            {
                ErrorKind::TooComplex
            }
            DataFusionError::SQL(..) => ErrorKind::Syntax,
            DataFusionError::NotImplemented(_) => ErrorKind::Unsupported,
            DataFusionError::SchemaError(se, _) => {
                use datafusion::common::SchemaError;
                match se.as_ref() {
                    SchemaError::FieldNotFound { .. } => ErrorKind::ColumnNotFound,
                    SchemaError::AmbiguousReference { .. } => ErrorKind::AmbiguousColumn,
                    SchemaError::DuplicateQualifiedField { .. }
                    | SchemaError::DuplicateUnqualifiedField { .. } => ErrorKind::DuplicateColumn,
                }
            }
            DataFusionError::Plan(m) => {
                if m.contains("not found") && m.contains("table") {
                    ErrorKind::TableNotFound
                } else if m.contains("No field named") {
                    ErrorKind::ColumnNotFound
                } else if m.contains("Invalid function") || m.contains("No function matches") {
                    ErrorKind::FunctionNotFound
                } else {
                    ErrorKind::Plan
                }
            }
            DataFusionError::ArrowError(e, _)
                if matches!(
                    e.as_ref(),
                    datafusion::arrow::error::ArrowError::DivideByZero
                ) =>
            {
                ErrorKind::DivisionByZero
            }
            DataFusionError::ArrowError(..) => ErrorKind::InvalidData,
            DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
            DataFusionError::Execution(m) if m.contains("cancel") => ErrorKind::Cancelled,
            DataFusionError::Execution(_) => ErrorKind::InvalidData,
            _ => ErrorKind::Internal,
        };
        let message = if kind == ErrorKind::ResourcesExhausted {
            format!("{message} (all running queries together may use query_memory_bytes_max)")
        } else {
            message
        };
        QueryError::new(kind, message)
    }
}
