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
    /// A file of the data directory could not be written because its file system is full or
    /// the user's disk quota is exhausted. Nothing acknowledged was lost: the write that met it
    /// is refused, and writes resume by themselves once space is freed.
    #[error(
        "disk full: cannot write {path}: {source} (free space on its file system; writes resume by themselves)"
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The underlying error (`ENOSPC` or `EDQUOT`).
        source: std::io::Error,
    },
    /// A table named in a request does not exist.
    #[error("table \"{0}\" does not exist")]
    TableNotFound(String),
    /// A table of that name exists already.
    #[error("table \"{0}\" already exists")]
    TableExists(String),
    /// A source named in a request does not exist.
    #[error("source \"{0}\" does not exist")]
    SourceNotFound(String),
    /// A source of that name exists already.
    #[error("source \"{0}\" already exists")]
    SourceExists(String),
    /// An index named in a request does not exist.
    #[error("index \"{0}\" does not exist")]
    IndexNotFound(String),
    /// An index of that name exists already.
    #[error("index \"{0}\" already exists")]
    IndexExists(String),
    /// A full-text query is not valid tantivy query syntax.
    #[error("invalid full-text query: {0}")]
    InvalidQuery(String),
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
        self.map_err(|source| io_error(path.into(), source))
    }
}

/// `ENOSPC`: no space left on the device (28 on Linux, the BSDs and macOS alike).
const ENOSPC: i32 = 28;
/// `EDQUOT`: the disk quota is exhausted (122 on Linux, 69 on the BSDs and macOS).
#[cfg(target_os = "linux")]
const EDQUOT: i32 = 122;
#[cfg(not(target_os = "linux"))]
const EDQUOT: i32 = 69;

/// An I/O error on `path`: [`StorageError::DiskFull`] when the file system is out of space,
/// so that every caller can tell "free some space" from a broken disk without looking inside.
pub(crate) fn io_error(path: PathBuf, source: std::io::Error) -> StorageError {
    if is_disk_full(&source) {
        StorageError::DiskFull { path, source }
    } else {
        StorageError::Io { path, source }
    }
}

/// Whether an I/O error says the file system (or the quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// The out-of-space OS error code somewhere in an error's chain of sources (Parquet and Arrow
/// wrap the writer's `io::Error` in their own errors, sometimes more than once).
pub(crate) fn disk_full_code(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if is_disk_full(io) {
                return io.raw_os_error();
            }
            // `io::Error::other(inner)` hides `inner` from `source()`; `get_ref` reaches it.
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        next = err.source();
    }
    None
}

impl StorageError {
    /// Whether this is [`StorageError::DiskFull`].
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    /// This error as [`StorageError::DiskFull`] on `path` if a full disk caused it anywhere in
    /// its chain (a Parquet or Arrow writer's I/O error), otherwise unchanged.
    pub(crate) fn or_disk_full(self, path: &std::path::Path) -> StorageError {
        if self.is_disk_full() {
            return self;
        }
        let code = match &self {
            StorageError::Parquet(e) => disk_full_code(e),
            StorageError::Arrow(e) => disk_full_code(e),
            _ => None,
        };
        match code {
            Some(code) => StorageError::DiskFull {
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(code),
            },
            None => self,
        }
    }
}
