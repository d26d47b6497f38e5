//! Eddy's query layer: a DataFusion session over Eddy tables, time-series functions,
//! continuous aggregates and the SQL statements that manage tables. It knows nothing of the
//! network or of any one wire protocol: errors carry a neutral [`ErrorKind`], statements
//! answer rows or a [`Completion`], and each front end encodes both its own way.

pub mod catalog;
pub mod complexity;
pub mod computed_table;
pub mod continuous;
pub mod ddl;
pub mod decoded_scan;
pub mod engine;
pub mod error;
pub mod executor;
mod formatting;
pub mod fulltext;
pub mod functions;
pub mod latest;
pub mod limits;
pub mod metrics;
pub mod naming;
pub mod overflow;
pub mod postgres_semantics;
pub mod run_aggregate;
pub mod running;
pub mod segments;
pub mod sources;
pub mod table;
#[cfg(test)]
mod test_support;

pub use engine::{
    Completion, Output, Prepared, QueryEngine, QuerySession, RowStream, Statement, parse,
};
pub use error::{ErrorKind, QueryError, Result};
