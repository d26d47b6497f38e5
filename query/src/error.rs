//! Query errors carrying a PostgreSQL SQLSTATE, so every front end reports them the same way.

use datafusion::error::DataFusionError;
use eddy_storage::StorageError;

/// An error from planning or running a statement, with its SQLSTATE.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// Five-character PostgreSQL error code.
    pub sqlstate: &'static str,
    /// Message naming what was wrong.
    pub message: String,
}

/// Result type of the query layer.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
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

/// The SQLSTATE of a storage error.
pub fn storage_sqlstate(e: &StorageError) -> &'static str {
    match e {
        StorageError::TableNotFound(_) => "42P01",
        StorageError::TableExists(_) => "42P07",
        StorageError::TypeConflict { .. } => "42804",
        StorageError::InvalidSchema { reason, .. } if reason.contains("may not be null") => "23502",
        StorageError::InvalidSchema { .. } => "42P16",
        StorageError::LimitExceeded(_) => "54000",
        StorageError::BeyondRetention { .. } => "23514",
        StorageError::ShutDown(_) => "57P01",
        StorageError::Io { .. } => "58030",
        StorageError::Corrupt { .. } => "XX001",
        StorageError::Arrow(_) | StorageError::Parquet(_) => "XX000",
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        Self::new(storage_sqlstate(&e), e.to_string())
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        DataFusionError::from(e).into()
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(se) = inner.downcast_ref::<StorageError>() {
                return QueryError::new(storage_sqlstate(se), se.to_string());
            }
            if let Some(qe) = inner.downcast_ref::<QueryError>() {
                return qe.clone();
            }
        }
        let message = root.message().to_string();
        let sqlstate = match root {
            DataFusionError::SQL(..) => "42601",
            DataFusionError::NotImplemented(_) => "0A000",
            DataFusionError::SchemaError(se, _) => {
                use datafusion::common::SchemaError;
                match se.as_ref() {
                    SchemaError::FieldNotFound { .. } => "42703",
                    SchemaError::AmbiguousReference { .. } => "42702",
                    SchemaError::DuplicateQualifiedField { .. }
                    | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
                }
            }
            DataFusionError::Plan(m) => {
                if m.contains("not found") && m.contains("table") {
                    "42P01"
                } else if m.contains("No field named") {
                    "42703"
                } else if m.contains("Invalid function") || m.contains("No function matches") {
                    "42883"
                } else {
                    "42000"
                }
            }
            DataFusionError::ArrowError(..) => "22000",
            DataFusionError::ResourcesExhausted(_) => "53200",
            DataFusionError::Execution(m) if m.contains("cancel") => "57014",
            DataFusionError::Execution(_) => "22000",
            _ => "XX000",
        };
        let message = if sqlstate == "53200" {
            format!("{message} (all running queries together may use query_memory_bytes_max)")
        } else {
            message
        };
        QueryError::new(sqlstate, message)
    }
}
