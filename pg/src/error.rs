//! Errors as PostgreSQL clients see them: a SQLSTATE and a message. The query core's neutral
//! error kinds are mapped to SQLSTATEs here and nowhere else.

use datafusion::error::DataFusionError;
use eddy_query::{ErrorKind, QueryError};

/// An error with its PostgreSQL SQLSTATE.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PgError {
    /// Five-character PostgreSQL error code.
    pub sqlstate: &'static str,
    /// Message naming what was wrong.
    pub message: String,
}

/// Result type of the Postgres front end.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

impl PgError {
    /// An error with an explicit SQLSTATE.
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
        }
    }

    /// A feature Eddy does not support (SQLSTATE 0A000).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new("0A000", message)
    }
}

/// The SQLSTATE of a neutral error kind.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Syntax => "42601",
        ErrorKind::TableNotFound => "42P01",
        ErrorKind::ColumnNotFound => "42703",
        ErrorKind::FunctionNotFound => "42883",
        ErrorKind::SchemaNotFound => "3F000",
        ErrorKind::ObjectNotFound => "42704",
        ErrorKind::AmbiguousColumn => "42702",
        ErrorKind::DuplicateColumn => "42701",
        ErrorKind::AlreadyExists => "42P07",
        ErrorKind::HasDependents => "2BP01",
        ErrorKind::TypeMismatch => "42804",
        ErrorKind::NullValue => "23502",
        ErrorKind::InvalidDefinition => "42P16",
        ErrorKind::BeyondRetention => "23514",
        ErrorKind::InvalidParameter => "22023",
        ErrorKind::InvalidData => "22000",
        ErrorKind::InvalidTextRepresentation => "22P02",
        ErrorKind::DivisionByZero => "22012",
        ErrorKind::InvalidEscapeSequence => "22025",
        ErrorKind::NumericOutOfRange => "22003",
        ErrorKind::DatetimeOutOfRange => "22008",
        ErrorKind::Grouping => "42803",
        ErrorKind::Plan => "42000",
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::Unsupported => "0A000",
        ErrorKind::LimitExceeded => "54000",
        ErrorKind::TooComplex => "54001",
        ErrorKind::ResourcesExhausted => "53200",
        ErrorKind::Cancelled => "57014",
        ErrorKind::ShuttingDown => "57P01",
        ErrorKind::Io => "58030",
        ErrorKind::DiskFull => "53100",
        ErrorKind::Corrupt => "XX001",
        ErrorKind::Internal => "XX000",
    }
}

impl From<QueryError> for PgError {
    fn from(e: QueryError) -> Self {
        Self::new(sqlstate(e.kind), e.message)
    }
}

impl From<DataFusionError> for PgError {
    fn from(e: DataFusionError) -> Self {
        if let DataFusionError::External(inner) = e.find_root()
            && let Some(pe) = inner.downcast_ref::<PgError>()
        {
            return pe.clone();
        }
        QueryError::from(e).into()
    }
}

impl From<datafusion::arrow::error::ArrowError> for PgError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::from(e).into()
    }
}

impl From<eddy_storage::StorageError> for PgError {
    fn from(e: eddy_storage::StorageError) -> Self {
        QueryError::from(e).into()
    }
}

impl From<eddy_ingest::IngestError> for PgError {
    fn from(e: eddy_ingest::IngestError) -> Self {
        QueryError::from(e).into()
    }
}
