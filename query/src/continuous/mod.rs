//! Continuous aggregates: materialized views kept equal to their defining query as data
//! arrives, by merging DataFusion accumulator states instead of re-scanning raw data.
//!
//! The defining query is planned once against a placeholder source. Its aggregate gives three
//! plans that share one set of accumulators:
//! - `Partial` over each committed write batch (derived before the WAL append, merged into the
//!   view's state by the committer in sequence order, so a read after an acknowledgement sees
//!   the write);
//! - `PartialReduce` to compact accumulated states;
//! - `Final` (and the query's projection) to answer reads.
//!
//! A write that may overwrite an existing key (its time is not newer than the newest time of its
//! series) cannot be merged without counting twice: its bucket is marked dirty and recomputed
//! from the raw rows of that bucket at the next read. A view over a view recomputes the buckets
//! that writes below it touched, from the upstream view's rows.
//!
//! State lives in memory, in chunks of buckets, and is checkpointed to Parquet files when the
//! storage engine flushes; the WAL is kept from the checkpoint's position on, so a restart
//! loads the checkpoint and recomputes only the buckets written after it.

mod checkpoint;
mod registry;
mod shape;
mod state;
mod table;
mod view;

use datafusion::error::DataFusionError;

use crate::error::QueryError;

pub use checkpoint::CHECKPOINT_FORMAT_VERSION;
pub use registry::{VIEWS_FORMAT_VERSION, ViewRegistry};
pub use state::OVERWRITE_WINDOW_NS;
pub use table::{ViewTable, views_table};
pub use view::{ContinuousAggregate, ViewDef, ViewSource, ViewStatus, parse_retention};

fn df_err(e: DataFusionError) -> QueryError {
    e.into()
}
