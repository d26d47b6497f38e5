//! End-to-end tests: each starts the real server and talks to it over real sockets with real
//! clients (HTTP, tokio-postgres, psql).

mod cli;
mod common;
mod continuous;
mod durability;
mod ingest;
mod pruning;
mod sql;
