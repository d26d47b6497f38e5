//! Eddy's node: builds the storage engine, continuous aggregates, write path and query engine
//! once, and runs the front ends over them: the HTTP API here, the Postgres wire protocol from
//! `eddy-pg`.

pub mod http;
pub mod metrics;
pub mod node;

pub use eddy_pg as pg;
