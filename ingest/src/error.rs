//! The error of the write path: a storage failure, with the table it happened on.
//!
//! Its message is the storage error's own, so front ends that show it (HTTP, Postgres) say
//! exactly what they said when they wrote to storage directly; [`IngestError::storage_error`]
//! gives the storage error back for mapping to a protocol's codes.

use eddy_storage::StorageError;

/// Why a write failed as a whole (lines rejected one by one are not errors; see
/// [`crate::LineOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The storage engine refused or failed the write.
    #[error("{source}")]
    Storage {
        /// The table written to.
        table: String,
        /// What storage said.
        #[source]
        source: StorageError,
    },
}

impl IngestError {
    /// A storage error on `table`.
    pub fn storage(table: impl Into<String>, source: StorageError) -> Self {
        IngestError::Storage {
            table: table.into(),
            source,
        }
    }

    /// The table the write went to.
    pub fn table(&self) -> &str {
        match self {
            IngestError::Storage { table, .. } => table,
        }
    }

    /// The storage error inside.
    pub fn storage_error(&self) -> &StorageError {
        match self {
            IngestError::Storage { source, .. } => source,
        }
    }

    /// The storage error inside, by value.
    pub fn into_storage_error(self) -> StorageError {
        match self {
            IngestError::Storage { source, .. } => source,
        }
    }
}
