//! End-to-end tests: each starts the real server and talks to it over real sockets with real
//! clients (HTTP, tokio-postgres, psql, and the drivers in tests/clients/).

mod cli;
mod clients;
mod common;
mod continuous;
mod dbeaver;
mod durability;
mod formats;
mod grafana;
mod ingest;
mod latest;
mod metabase;
mod npgsql;
mod pgwire;
mod pruning;
mod sql;
