//! End-to-end tests: each starts the real server and talks to it over real sockets with real
//! clients (HTTP, tokio-postgres, psql, and the drivers in tests/clients/).

mod chaos;
mod cli;
mod clients;
mod common;
mod compaction;
mod connections;
mod continuous;
mod corruption;
mod dbeaver;
mod disk_full;
mod durability;
mod flight;
mod flight_clients;
mod formats;
mod fuzz_corpus;
mod grafana;
mod http_auth;
mod http_limits;
mod http_query;
mod ilp_tcp;
mod ingest;
mod latest;
mod limits;
mod malformed_pg;
mod metabase;
mod metrics;
mod npgsql;
mod overflow;
mod pg_raw;
mod pgwire;
mod pruning;
mod psql_meta;
mod sources_kafka;
mod sources_mqtt;
mod sql;
