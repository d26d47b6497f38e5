//! Compatibility path: the engine used to live in one `db` module, and other crates still name
//! a few of its items as `eddy_storage::db::...`. They are re-exported here unchanged; new code
//! uses their homes, [`crate::time`] for time helpers and the crate root for [`KeyFilter`].

pub use crate::read::KeyFilter;
pub use crate::time::{PARTITION_NANOS, describe_span, partition_date, retention_floor, rfc3339};
