//! Eddy's node: builds the storage engine, continuous aggregates, write path and query engine
//! once, and runs the front ends over them: the HTTP API, Arrow Flight SQL and line protocol
//! over TCP here, the Postgres wire protocol from `eddy-pg`.

/// Arrow Flight SQL: queries as Arrow batches over gRPC, metadata commands, bulk ingest.
mod cancel;
pub mod flight;
pub mod http;
pub mod ilp_tcp;
pub mod metrics;
pub mod node;

pub use eddy_pg as pg;
