//! Eddy's storage engine: a catalog with schema on write, a write-ahead log with group commit,
//! memtables with backpressure, Parquet segments with an atomically replaced manifest, and
//! recovery that replays the WAL and cuts a torn tail.
//!
//! It knows nothing of SQL or the network: callers hand it Arrow batches and read back
//! snapshots that say which files to scan and which rows are in memory.
//!
//! The engine is split by job into private modules (`engine` is the [`Db`] facade; `commit`,
//! `flush`, `retention`, `read` and `recovery` do one job each; `limits` and `format` hold
//! every limit and file-format version). The public modules are the pieces other crates use on
//! their own: file helpers, checksums, dedup, the WAL codec, segment files, schema rules, time
//! helpers, and `check`, the offline verification of a whole data directory (`eddy check`).

pub mod check;
pub mod checksum;
pub mod dedup;
pub mod format;
pub mod fsutil;
pub mod fulltext;
pub mod manifest;
pub mod schema;
pub mod segment;
pub mod segment_tags;
pub mod source;
pub mod tag_index;
pub mod time;
pub mod wal;

mod catalog;
mod commit;
mod compaction;
mod datadir;
mod decoded;
mod engine;
mod error;
mod flush;
mod latest;
mod limits;
mod memtable;
mod merge;
mod metrics;
mod read;
mod recovery;
mod retention;
mod stall;
mod text_index;

pub use catalog::{Catalog, DEFAULT_TIME_COLUMN, IndexDef};
pub use commit::WritePart;
pub use commit::{CommitHook, Prepared as CommitPrepared};
pub use compaction::CompactionOutcome;
pub use decoded::DecodedRowGroup;
pub use engine::{Db, StorageConfig, WalSync};
pub use error::{Result, StorageError};
pub use limits::ROW_GROUP_ROWS_MAX as SEGMENT_ROW_GROUP_ROWS_MAX;
pub use manifest::SegmentMeta;
pub use metrics::StorageMetrics;
pub use read::{KeyFilter, ReadPlan, TableSnapshot};
pub use recovery::RecoveryReport;
pub use schema::{ColumnDef, ColumnKind, FieldType, TableDef, TableSchema};
pub use segment::{SegmentFile, SegmentReader};
pub use source::{SourceDef, SourceOffsets, SourceProgress};
pub use text_index::{text_index_dir, text_root};

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one byte range is what a reader asks for
mod corruption_tests;
#[cfg(test)]
mod disk_full_tests;
#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
