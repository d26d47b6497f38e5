//! Eddy's storage engine: a catalog with schema on write, a write-ahead log with group commit,
//! memtables with backpressure, Parquet segments with an atomically replaced manifest, and
//! recovery that replays the WAL and cuts a torn tail.
//!
//! It knows nothing of SQL or the network: callers hand it Arrow batches and read back
//! snapshots that say which files to scan and which rows are in memory.

pub mod catalog;
pub mod db;
pub mod dedup;
pub mod error;
pub mod fsutil;
pub mod latest;
pub mod manifest;
pub mod memtable;
pub mod schema;
pub mod segment;
pub mod tag_index;
pub mod wal;

pub use catalog::{Catalog, DEFAULT_TIME_COLUMN};
pub use db::{
    CommitHook, Db, Prepared as CommitPrepared, ReadPlan, RecoveryReport, StorageConfig,
    TableSnapshot, WalSync,
};
pub use error::{Result, StorageError};
pub use schema::{ColumnDef, ColumnKind, FieldType, TableDef, TableSchema};
pub use segment::SegmentFile;

#[cfg(test)]
mod tests;
