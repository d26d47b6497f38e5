//! Eddy's query layer: a DataFusion session over Eddy tables, time-series functions and the
//! SQL statements that manage tables. It knows nothing of the network.

pub mod catalog;
pub mod computed_table;
pub mod continuous;
pub mod cursor;
pub mod ddl;
pub mod engine;
pub mod error;
pub mod functions;
pub mod information_schema;
pub mod latest;
pub mod pg_compat;
pub mod table;

pub use engine::{
    Output, PG_SERVER_VERSION, Prepared, QueryEngine, QuerySession, Statement, parse,
};
pub use error::{QueryError, Result};
