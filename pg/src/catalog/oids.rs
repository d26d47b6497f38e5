//! OIDs of the objects in the computed catalog tables. PostgreSQL clients cache them (pgjdbc,
//! pooled DBeaver sessions), so they derive from what Eddy persists rather than from the
//! order catalog queries ran in.

use datafusion::error::{DataFusionError, Result as DfResult};
use eddy_storage::TableSchema;

use eddy_query::catalog::SCHEMA;

const PG_CATALOG_NAMESPACE: i32 = 11;
const PUBLIC_NAMESPACE: i32 = 2200;
/// The namespace OID pg-catalog's static `pg_type` rows give `information_schema`.
const INFORMATION_SCHEMA_NAMESPACE: i32 = 13283;
/// Other schemas, numbered by name order.
const OTHER_NAMESPACES: i32 = 13900;
/// Relations that are neither Eddy tables, views nor known system relations (`eddy_views`,
/// DataFusion-only information_schema tables), numbered by (schema, name) order. They are
/// fixed per Eddy build, so the numbers are too.
pub(super) const OTHER_RELATIONS: i32 = 14000;
/// PostgreSQL's first OID for user objects; table `id` has OIDs `16384 + 4 * id` (table)
/// `+ 1` (primary key index) and `+ 2` (primary key constraint).
const FIRST_USER_OID: i32 = 16384;
/// Continuous aggregates (their ids are timestamps) and tables without an id hash into
/// `[2^30, 2^31)` in steps of 4.
const HASHED_OIDS: i32 = 1 << 30;
pub(super) const SUPERUSER_OID: i32 = 10;
/// `pg_database` OIDs: Eddy's one database has the first user OID, as the first database
/// created in a PostgreSQL cluster does, and `postgres` has PostgreSQL's OID for it.
pub(super) const DATABASE_OID: i32 = FIRST_USER_OID;
pub(super) const POSTGRES_DATABASE_OID: i32 = 5;
/// The databases `pg_database` lists: Eddy's, and `postgres`, which tools expect to find
/// (a connection to any database name reaches Eddy's one database).
pub(super) const DATABASES: [(i32, &str); 2] = [
    (DATABASE_OID, eddy_query::catalog::DATABASE),
    (POSTGRES_DATABASE_OID, "postgres"),
];
pub(super) const HEAP_AM: i32 = 2;
pub(super) const BTREE_AM: i32 = 403;
pub(super) const DEFAULT_COLLATION: i32 = 100;
/// `pg_default`, the tablespace pg-catalog's `pg_tablespace` lists first.
pub(super) const DEFAULT_TABLESPACE: i32 = 1663;
/// PostgreSQL's number for the UTF8 encoding (`pg_database.encoding`).
pub(super) const UTF8_ENCODING: i32 = 6;

/// OID of an Eddy table; its primary key index and constraint have the next two.
pub(super) fn table_oid(t: &TableSchema) -> DfResult<i32> {
    let id = t.def().id;
    if id == 0 {
        // Catalogs written before tables had ids.
        return Ok(hashed_oid(b"table:", t.name().as_bytes()));
    }
    i64::try_from(id)
        .ok()
        .and_then(|id| id.checked_mul(4))
        .and_then(|o| o.checked_add(i64::from(FIRST_USER_OID)))
        .and_then(|o| i32::try_from(o).ok())
        .filter(|o| *o < HASHED_OIDS)
        .ok_or_else(|| {
            DataFusionError::Execution(format!(
                "table \"{}\" has id {id}, beyond what maps to a PostgreSQL OID",
                t.name()
            ))
        })
}

/// FNV-1a of `kind` and `key` into `[HASHED_OIDS, 2^31)`, a multiple of 4.
pub(super) fn hashed_oid(kind: &[u8], key: &[u8]) -> i32 {
    let hash = kind
        .iter()
        .chain(key)
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    // Below 2^28, so the cast is lossless and the sum stays below 2^31.
    HASHED_OIDS + 4 * (hash % (1 << 28)) as i32
}

pub(super) fn namespace_oid(name: &str, others: &mut i32) -> i32 {
    match name {
        "pg_catalog" => PG_CATALOG_NAMESPACE,
        SCHEMA => PUBLIC_NAMESPACE,
        "information_schema" => INFORMATION_SCHEMA_NAMESPACE,
        _ => {
            *others += 1;
            OTHER_NAMESPACES + *others
        }
    }
}

/// The primary key of an Eddy table: its tags in schema order, then the time column.
pub(crate) fn key_columns(t: &TableSchema) -> Vec<usize> {
    let mut k = t.tag_indices().to_vec();
    k.push(t.time_index());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_stable_and_disjoint() {
        let seven = 7u64.to_le_bytes();
        assert_eq!(hashed_oid(b"view:", &seven), hashed_oid(b"view:", &seven));
        assert_ne!(hashed_oid(b"view:", &seven), hashed_oid(b"table:", &seven));
        let h = hashed_oid(b"view:", &u64::MAX.to_le_bytes());
        assert!(h >= HASHED_OIDS && h % 4 == 0 && h.checked_add(3).is_some());
    }
}
