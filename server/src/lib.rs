//! Eddy's front ends: the Postgres wire protocol and the HTTP API with line-protocol ingestion.

pub mod copy;
pub mod http;
pub mod lineproto;
pub mod pg;
pub mod pgtext;
