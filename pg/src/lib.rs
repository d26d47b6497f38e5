//! Everything PostgreSQL: the wire protocol (pgwire) with authentication and TLS, COPY,
//! cursors and portals, `pg_catalog` and `information_schema` for client introspection, the
//! rewrites clients' SQL needs, session settings (`SET`/`SHOW`), advisory locks, text value
//! encoding, and the mapping of the query core's neutral error kinds to SQLSTATEs.
//!
//! It sits on the protocol-neutral query core and the one write path; nothing below it knows
//! PostgreSQL.

mod activity;
mod advisory;
mod auth;
mod cancel;
pub mod catalog;
pub mod copy;
pub mod cursor;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod params;
mod portal;
pub mod session;
pub mod settings;
pub mod text;
mod wire;

pub use auth::{AuthMethod, PgConfig};
pub use error::{PgError, sqlstate};
pub use metrics::PgMetrics;
pub use session::PgSession;
pub use wire::{PgConnection, PgFrontEnd};
