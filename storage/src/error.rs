//! Typed errors of the storage engine, each carrying the context a user or operator needs.
//!
//! One enum for the whole crate: callers map its variants to their own codes (SQLSTATE, HTTP
//! status) once, at the edge, so every variant names what went wrong in neutral terms.

use std::path::PathBuf;

/// Errors returned by the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation on a file of the data directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A table named in a request does not exist.
    #[error("table \"{0}\" does not exist")]
    TableNotFound(String),
    /// A table of that name exists already.
    #[error("table \"{0}\" already exists")]
    TableExists(String),
    /// A value's type does not match the column's type in the table schema.
    #[error("column \"{column}\" of table \"{table}\" is {expected}, got {found}")]
    TypeConflict {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The column's type in the catalog.
        expected: String,
        /// The type that was written.
        found: String,
    },
    /// A schema or definition is not acceptable (bad names, missing time column, ...).
    #[error("invalid schema for table \"{table}\": {reason}")]
    InvalidSchema {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// Rows older than what the table keeps (their days were already dropped).
    #[error(
        "table \"{table}\" keeps {retention}: rows before {floor} are rejected (the oldest written was {oldest})"
    )]
    BeyondRetention {
        /// The table.
        table: String,
        /// Its retention, for humans.
        retention: String,
        /// First instant still kept (RFC 3339).
        floor: String,
        /// Oldest row of the write (RFC 3339).
        oldest: String,
    },
    /// A configured limit was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// Data on disk failed its checksum or could not be decoded.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The files of the data directory do not agree with each other (a missing manifest or
    /// catalog, a manifest older than the WAL, a segment the manifest names but the disk lacks):
    /// the engine refuses to open rather than guess, because guessing loses data.
    #[error("{path}: {reason}")]
    Inconsistent {
        /// The file that is missing or disagrees.
        path: PathBuf,
        /// What disagrees, and what to do about it.
        reason: String,
    },
    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A Parquet operation failed.
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// A file of the data directory was written by a newer Eddy in a format this one cannot
    /// read; refused rather than misread (see `format.rs`).
    #[error(
        "{path} was written by a newer Eddy (format version {found}, this Eddy reads up to {supported})"
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format version the file declares.
        found: u32,
        /// The newest format version of that file kind this Eddy reads.
        supported: u32,
    },
    /// The engine is shutting down or its background writer stopped.
    #[error("storage engine is shut down: {0}")]
    ShutDown(String),
}

/// Result type of the storage engine.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            path: path.into(),
            source,
        })
    }
}
