//! Eddy's node: builds the storage engine, continuous aggregates, write path and query engine
//! once, and runs the front ends over them: the HTTP API and line protocol over TCP here, the
//! Postgres wire protocol from `eddy-pg`.

pub mod http;
pub mod ilp_tcp;
pub mod metrics;
pub mod node;

pub use eddy_pg as pg;
