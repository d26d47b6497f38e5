//! pg_catalog with computed relation tables: pg-catalog's schema wrapped so that
//! `pg_namespace`, `pg_class`, `pg_attribute`, `pg_index` and `pg_constraint` are built from
//! Eddy's catalog on every scan, with the OIDs of `super::oids`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int16Array, Int16Builder, Int32Array, Int32Builder,
    ListBuilder, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion_pg_catalog::pg_catalog::oid_field::{kind, oid_field};
use eddy_storage::{Db, TableSchema};

use super::oids::{
    BTREE_AM, DATABASE_OID, DATABASES, DEFAULT_COLLATION, DEFAULT_TABLESPACE, HEAP_AM,
    OTHER_RELATIONS, SUPERUSER_OID, UTF8_ENCODING, hashed_oid, key_columns, namespace_oid,
    table_oid,
};
use crate::cursor::Cursors;
use eddy_query::catalog::SCHEMA;
use eddy_query::computed_table::ComputedTable;
use eddy_query::continuous::ViewRegistry;

/// What the computed tables read.
#[derive(Debug)]
pub(super) struct CatalogState {
    pub(super) catalog: Arc<dyn CatalogProvider>,
    pub(super) db: Db,
    pub(super) views: Arc<ViewRegistry>,
    pub(super) system: HashMap<(i32, String), (i32, i32)>,
}

/// pg-catalog's schema with the relation tables replaced; everything else is pg-catalog's.
#[derive(Debug)]
pub(super) struct PgCatalog {
    pub(super) inner: Arc<dyn SchemaProvider>,
    pub(super) state: Arc<CatalogState>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push(PG_CURSORS.to_string());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(PG_CURSORS) {
            return Ok(Some(Arc::new(pg_cursors())));
        }
        if name.eq_ignore_ascii_case("pg_database") {
            // Fixed rows with fixed OIDs (pg-catalog numbers its databases in the order it
            // meets them), so `pg_database_size(oid)` knows which OID is Eddy's database.
            let rows = pg_database()?;
            let table = ComputedTable::new(rows.schema(), move |_| Ok(rows.clone()));
            return Ok(Some(Arc::new(table.with_table_type(TableType::Base))));
        }
        let Some(which) = RelTable::named(name) else {
            return self.inner.table(name).await;
        };
        // Built afresh on every scan, so new tables show at once.
        let schema = which.build(&Snapshot::default())?.schema();
        let state = self.state.clone();
        let table = ComputedTable::new_async(schema, move |_| {
            let state = state.clone();
            Box::pin(async move {
                let snapshot = state.snapshot(which != RelTable::Namespace).await?;
                which.build(&snapshot)
            })
        });
        Ok(Some(Arc::new(table.with_table_type(TableType::Base))))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(PG_CURSORS) || self.inner.table_exist(name)
    }
}

/// The view of the session's open cursors.
pub(super) const PG_CURSORS: &str = "pg_cursors";

/// `pg_cursors`: the cursors of the session that scans it, found in its config.
fn pg_cursors() -> ComputedTable {
    ComputedTable::new(Cursors::listing_schema(), |state| {
        match state.config().get_extension::<Cursors>() {
            Some(cursors) => cursors
                .listing()
                .map_err(|e| DataFusionError::External(e.into())),
            // A context without sessions (the engine's template) has no cursors.
            None => Ok(RecordBatch::new_empty(Cursors::listing_schema())),
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelTable {
    Namespace,
    Class,
    Attribute,
    Index,
    Constraint,
}

impl RelTable {
    fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pg_namespace" => Self::Namespace,
            "pg_class" => Self::Class,
            "pg_attribute" => Self::Attribute,
            "pg_index" => Self::Index,
            "pg_constraint" => Self::Constraint,
            _ => return None,
        })
    }

    /// The table's rows; its schema is that of the rows of an empty snapshot.
    fn build(self, s: &Snapshot) -> DfResult<RecordBatch> {
        match self {
            Self::Namespace => pg_namespace(s),
            Self::Class => pg_class(s),
            Self::Attribute => pg_attribute(s),
            Self::Index => pg_index(s),
            Self::Constraint => pg_constraint(s),
        }
    }
}

/// The catalog's namespaces and relations at one moment.
#[derive(Default)]
struct Snapshot {
    namespaces: Vec<(i32, String)>,
    rels: Vec<Rel>,
    keys: Vec<PrimaryKey>,
}

/// A `pg_class` row.
struct Rel {
    oid: i32,
    name: String,
    namespace: i32,
    /// `relkind`: `r` table, `v` view, `m` continuous aggregate, `i` index.
    kind: &'static str,
    /// OID of the row type, where pg_type has one.
    row_type: i32,
    columns: Vec<FieldRef>,
    has_index: bool,
}

/// The primary key of an Eddy table, and its index.
struct PrimaryKey {
    table: i32,
    index: i32,
    constraint: i32,
    namespace: i32,
    name: String,
    attnums: Vec<i16>,
    types: Vec<DataType>,
}

impl CatalogState {
    async fn snapshot(&self, with_relations: bool) -> DfResult<Snapshot> {
        let mut snap = Snapshot::default();
        let mut schemas = self.catalog.schema_names();
        schemas.sort();
        let (mut other_namespaces, mut others) = (0, Vec::new());
        for schema_name in schemas {
            let namespace = namespace_oid(&schema_name, &mut other_namespaces);
            snap.namespaces.push((namespace, schema_name.clone()));
            let schema = match self.catalog.schema(&schema_name) {
                Some(s) if with_relations => s,
                _ => continue,
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                let Some(table) = schema.table(&name).await? else {
                    continue; // dropped meanwhile
                };
                let mut rel = Rel {
                    oid: 0,
                    kind: match table.table_type() {
                        TableType::View => "v",
                        _ => "r",
                    },
                    columns: table.schema().fields().iter().cloned().collect(),
                    name,
                    namespace,
                    row_type: 0,
                    has_index: false,
                };
                if schema_name == SCHEMA {
                    if let Some(t) = self.db.catalog().get(&rel.name) {
                        rel.oid = table_oid(&t)?;
                        rel.has_index = true;
                        let key = primary_key(&t, &rel)?;
                        snap.rels.push(rel);
                        snap.rels.push(Rel {
                            oid: key.index,
                            name: key.name.clone(),
                            namespace,
                            kind: "i",
                            row_type: 0,
                            columns: key_fields(&t),
                            has_index: false,
                        });
                        snap.keys.push(key);
                        continue;
                    }
                    if let Some(v) = self.views.get(&rel.name) {
                        rel.oid = hashed_oid(b"view:", &v.def().id.to_le_bytes());
                        rel.kind = "m";
                        snap.rels.push(rel);
                        continue;
                    }
                }
                if let Some(&(oid, row_type)) = self.system.get(&(namespace, rel.name.clone())) {
                    rel.oid = oid;
                    rel.row_type = row_type;
                } else {
                    others.push(snap.rels.len());
                }
                snap.rels.push(rel);
            }
        }
        // Schemas and names were visited sorted, so these are in (schema, name) order.
        for (n, at) in others.into_iter().enumerate() {
            let oid = i32::try_from(n)
                .ok()
                .and_then(|n| OTHER_RELATIONS.checked_add(n))
                .ok_or_else(|| DataFusionError::Execution("too many relations".into()))?;
            if let Some(rel) = snap.rels.get_mut(at) {
                rel.oid = oid;
            }
        }
        Ok(snap)
    }
}

impl CatalogState {
    /// How many relations [`CatalogState::snapshot`] numbers from `OTHER_RELATIONS` (neither
    /// Eddy tables, views nor known system relations), counted the same way without
    /// looking the tables up, for the size functions, which run synchronously.
    pub(super) fn other_relations(&self) -> i32 {
        let mut schemas = self.catalog.schema_names();
        schemas.sort();
        let (mut other_namespaces, mut count) = (0, 0i32);
        for schema_name in schemas {
            let namespace = namespace_oid(&schema_name, &mut other_namespaces);
            let Some(schema) = self.catalog.schema(&schema_name) else {
                continue;
            };
            for name in schema.table_names() {
                let eddy = schema_name == SCHEMA
                    && (self.db.catalog().get(&name).is_some() || self.views.get(&name).is_some());
                if !eddy && !self.system.contains_key(&(namespace, name)) {
                    count = count.saturating_add(1);
                }
            }
        }
        count
    }
}

fn primary_key(t: &TableSchema, rel: &Rel) -> DfResult<PrimaryKey> {
    let columns = key_columns(t);
    let attnums = columns
        .iter()
        .map(|&i| i16::try_from(i + 1))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| DataFusionError::Execution(format!("column number: {e}")))?;
    Ok(PrimaryKey {
        table: rel.oid,
        index: rel.oid + 1,
        constraint: rel.oid + 2,
        namespace: rel.namespace,
        name: format!("{}_pkey", t.name()),
        attnums,
        types: key_fields(t)
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
    })
}

fn key_fields(t: &TableSchema) -> Vec<FieldRef> {
    let fields = t.arrow_schema().fields();
    key_columns(t)
        .into_iter()
        .filter_map(|i| fields.get(i).cloned())
        .collect()
}

/// A PostgreSQL type as pg_attribute describes it.
struct PgType {
    oid: i32,
    /// `attndims`: 1 for arrays.
    dims: i32,
    len: i16,
    by_value: bool,
    align: &'static str,
    storage: &'static str,
}

/// The type arrow-pg reports on the wire for `dt` (so pg_attribute agrees with result
/// column types).
fn pg_type(dt: &DataType) -> PgType {
    use DataType::*;
    let (oid, len, by_value, align, storage, dims) = match dt {
        Boolean => (16, 1, true, "c", "p", 0),
        Int8 | Int16 | UInt8 => (21, 2, true, "s", "p", 0),
        Int32 | UInt16 => (23, 4, true, "i", "p", 0),
        Int64 | UInt32 => (20, 8, true, "d", "p", 0),
        UInt64 | Decimal128(..) => (1700, -1, false, "i", "m", 0),
        Float16 | Float32 => (700, 4, true, "i", "p", 0),
        Float64 => (701, 8, true, "d", "p", 0),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => (17, -1, false, "i", "x", 0),
        Date32 | Date64 => (1082, 4, true, "i", "p", 0),
        Time32(_) | Time64(_) => (1083, 8, true, "d", "p", 0),
        Timestamp(_, None) => (1114, 8, true, "d", "p", 0),
        Timestamp(_, Some(_)) => (1184, 8, true, "d", "p", 0),
        Interval(_) | Duration(_) => (1186, 16, false, "d", "p", 0),
        Dictionary(_, v) => return pg_type(v),
        List(f) | LargeList(f) | FixedSizeList(f, _) => {
            let element = match f.data_type() {
                Boolean => 1000,
                Int8 | Int16 | UInt8 => 1005,
                Int32 | UInt16 => 1007,
                Int64 | UInt32 => 1016,
                UInt64 | Decimal128(..) => 1231,
                Float16 | Float32 => 1021,
                Float64 => 1022,
                Timestamp(_, None) => 1115,
                Timestamp(_, Some(_)) => 1185,
                Date32 | Date64 => 1182,
                Struct(_) => 2287,
                _ => 1009,
            };
            (element, -1, false, "d", "x", 1)
        }
        _ => (25, -1, false, "i", "x", 0), // text, as pg-catalog does
    };
    PgType {
        oid,
        dims,
        len,
        by_value,
        align,
        storage,
    }
}

/// The pg_type name of the type pg_attribute gives a column of type `dt` (`float8`, `text`,
/// `timestamp`, `_int4`), for information_schema's `udt_name`.
pub(crate) fn type_name(dt: &DataType) -> &'static str {
    match pg_type(dt).oid {
        16 => "bool",
        17 => "bytea",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        700 => "float4",
        701 => "float8",
        1000 => "_bool",
        1005 => "_int2",
        1007 => "_int4",
        1016 => "_int8",
        1021 => "_float4",
        1022 => "_float8",
        1082 => "date",
        1083 => "time",
        1114 => "timestamp",
        1115 => "_timestamp",
        1182 => "_date",
        1184 => "timestamptz",
        1185 => "_timestamptz",
        1186 => "interval",
        1231 => "_numeric",
        1700 => "numeric",
        2287 => "_record",
        1009 => "_text",
        _ => "text",
    }
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// The default btree operator class of a key column type (text_ops, timestamp_ops, ...).
fn btree_opclass(dt: &DataType) -> i32 {
    match pg_type(dt).oid {
        25 => 3126,
        1114 => 3128,
        1184 => 3127,
        16 => 10003,
        20 => 3124,
        701 => 3123,
        _ => 0,
    }
}

// Table builders: each column is written beside its field so they cannot drift apart.

fn batch(columns: Vec<(Field, ArrayRef)>) -> DfResult<RecordBatch> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

fn not_null(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, false)
}

fn ints<I: IntoIterator<Item = i32>>(values: I) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(values))
}

fn smallints<I: IntoIterator<Item = i16>>(values: I) -> ArrayRef {
    Arc::new(Int16Array::from_iter_values(values))
}

fn bools<I: IntoIterator<Item = bool>>(values: I) -> ArrayRef {
    Arc::new(BooleanArray::from(values.into_iter().collect::<Vec<_>>()))
}

fn texts<'a, I: IntoIterator<Item = &'a str>>(values: I) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(super) fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(dt, true)))
}

fn nulls(name: &str, dt: DataType, n: usize) -> (Field, ArrayRef) {
    let array = new_null_array(&dt, n);
    (Field::new(name, dt, true), array)
}

fn smallint_lists<'a, I: IntoIterator<Item = &'a [i16]>>(rows: I) -> ArrayRef {
    let mut b = ListBuilder::new(Int16Builder::new());
    for r in rows {
        b.values().append_slice(r);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn int_lists<I: IntoIterator<Item = Vec<i32>>>(rows: I) -> ArrayRef {
    let mut b = ListBuilder::new(Int32Builder::new());
    for r in rows {
        b.values().append_slice(&r);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn pg_namespace(s: &Snapshot) -> DfResult<RecordBatch> {
    let ns = &s.namespaces;
    let n = ns.len();
    batch(vec![
        (
            oid_field("oid", kind::OID, false),
            ints(ns.iter().map(|x| x.0)),
        ),
        (
            not_null("nspname", DataType::Utf8),
            texts(ns.iter().map(|x| x.1.as_str())),
        ),
        (
            not_null("nspowner", DataType::Int32),
            ints(ns.iter().map(|_| SUPERUSER_OID)),
        ),
        // `aclitem[]` in PostgreSQL: psql's `\dn+` reads it with `array_to_string`.
        nulls("nspacl", list_of(DataType::Utf8), n),
        nulls("options", DataType::Utf8, n),
    ])
}

/// pg-catalog's `pg_database` columns (PostgreSQL 16's, with `datlastsysoid`), over
/// [`DATABASES`]: UTF-8, C collation (text compares byte-wise), the default tablespace.
fn pg_database() -> DfResult<RecordBatch> {
    let d = &DATABASES;
    let n = d.len();
    batch(vec![
        (
            oid_field("oid", kind::OID, false),
            ints(d.iter().map(|x| x.0)),
        ),
        (
            not_null("datname", DataType::Utf8),
            texts(d.iter().map(|x| x.1)),
        ),
        (
            not_null("datdba", DataType::Int32),
            ints(d.iter().map(|_| SUPERUSER_OID)),
        ),
        (
            not_null("encoding", DataType::Int32),
            ints(d.iter().map(|_| UTF8_ENCODING)),
        ),
        (
            not_null("datlocprovider", DataType::Utf8),
            texts(d.iter().map(|_| "c")),
        ),
        (
            not_null("datcollate", DataType::Utf8),
            texts(d.iter().map(|_| "C")),
        ),
        (
            not_null("datctype", DataType::Utf8),
            texts(d.iter().map(|_| "C")),
        ),
        (
            not_null("datistemplate", DataType::Boolean),
            bools(d.iter().map(|_| false)),
        ),
        (
            not_null("datallowconn", DataType::Boolean),
            bools(d.iter().map(|_| true)),
        ),
        (
            not_null("datconnlimit", DataType::Int32),
            ints(d.iter().map(|_| -1)),
        ),
        (
            not_null("datlastsysoid", DataType::Int32),
            ints(d.iter().map(|_| DATABASE_OID - 1)),
        ),
        (
            not_null("datfrozenxid", DataType::Int32),
            ints(d.iter().map(|_| 1)),
        ),
        (
            not_null("datminmxid", DataType::Int32),
            ints(d.iter().map(|_| 1)),
        ),
        (
            not_null("dattablespace", DataType::Int32),
            ints(d.iter().map(|_| DEFAULT_TABLESPACE)),
        ),
        nulls("daticulocale", DataType::Utf8, n),
        nulls("daticurules", DataType::Utf8, n),
        nulls("datacl", list_of(DataType::Utf8), n),
    ])
}

/// pg-catalog's `pg_class` columns, plus `relacl` and `reloptions` (SQLAlchemy reads them).
fn pg_class(s: &Snapshot) -> DfResult<RecordBatch> {
    let r = &s.rels;
    let n = r.len();
    batch(vec![
        (
            oid_field("oid", kind::OID, false),
            ints(r.iter().map(|r| r.oid)),
        ),
        (
            not_null("relname", DataType::Utf8),
            texts(r.iter().map(|r| r.name.as_str())),
        ),
        (
            oid_field("relnamespace", kind::REGNAMESPACE, false),
            ints(r.iter().map(|r| r.namespace)),
        ),
        (
            oid_field("reltype", kind::REGTYPE, false),
            ints(r.iter().map(|r| r.row_type)),
        ),
        (
            oid_field("reloftype", kind::REGTYPE, true),
            ints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relowner", DataType::Int32),
            ints(r.iter().map(|_| SUPERUSER_OID)),
        ),
        (
            not_null("relam", DataType::Int32),
            ints(r.iter().map(|r| match r.kind {
                "i" => BTREE_AM,
                "r" | "m" => HEAP_AM,
                _ => 0,
            })),
        ),
        (
            not_null("relfilenode", DataType::Int32),
            ints(r.iter().map(|r| if r.kind == "v" { 0 } else { r.oid })),
        ),
        (
            not_null("reltablespace", DataType::Int32),
            ints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relpages", DataType::Int32),
            ints(r.iter().map(|_| 1)),
        ),
        // -1: never analyzed, as PostgreSQL reports before the first ANALYZE.
        (
            not_null("reltuples", DataType::Float64),
            Arc::new(Float64Array::from(vec![-1.0; n])) as ArrayRef,
        ),
        (
            not_null("relallvisible", DataType::Int32),
            ints(r.iter().map(|_| 0)),
        ),
        (
            oid_field("reltoastrelid", kind::REGCLASS, false),
            ints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relhasindex", DataType::Boolean),
            bools(r.iter().map(|r| r.has_index)),
        ),
        (
            not_null("relisshared", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relpersistence", DataType::Utf8),
            texts(r.iter().map(|_| "p")),
        ),
        (
            not_null("relkind", DataType::Utf8),
            texts(r.iter().map(|r| r.kind)),
        ),
        (
            not_null("relnatts", DataType::Int16),
            smallints(
                r.iter()
                    .map(|r| i16::try_from(r.columns.len()).unwrap_or(i16::MAX)),
            ),
        ),
        (
            not_null("relchecks", DataType::Int16),
            smallints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relhasrules", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relhastriggers", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relhassubclass", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relrowsecurity", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relforcerowsecurity", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            not_null("relispopulated", DataType::Boolean),
            bools(r.iter().map(|_| true)),
        ),
        (
            not_null("relreplident", DataType::Utf8),
            texts(r.iter().map(|r| {
                if matches!(r.kind, "r" | "m") {
                    "d"
                } else {
                    "n"
                }
            })),
        ),
        (
            not_null("relispartition", DataType::Boolean),
            bools(r.iter().map(|_| false)),
        ),
        (
            oid_field("relrewrite", kind::REGCLASS, true),
            ints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relfrozenxid", DataType::Int32),
            ints(r.iter().map(|_| 0)),
        ),
        (
            not_null("relminmxid", DataType::Int32),
            ints(r.iter().map(|_| 0)),
        ),
        nulls("relacl", list_of(DataType::Utf8), n),
        nulls("reloptions", list_of(DataType::Utf8), n),
        nulls("relpartbound", DataType::Utf8, n),
    ])
}

/// pg-catalog's `pg_attribute` columns; index relations list their key columns.
fn pg_attribute(s: &Snapshot) -> DfResult<RecordBatch> {
    let a: Vec<(&Rel, i16, &FieldRef, PgType)> = s
        .rels
        .iter()
        .flat_map(|r| {
            r.columns.iter().enumerate().map(move |(i, f)| {
                let attnum = i16::try_from(i + 1).unwrap_or(i16::MAX);
                (r, attnum, f, pg_type(f.data_type()))
            })
        })
        .collect();
    let n = a.len();
    batch(vec![
        (
            oid_field("attrelid", kind::REGCLASS, false),
            ints(a.iter().map(|x| x.0.oid)),
        ),
        (
            not_null("attname", DataType::Utf8),
            texts(a.iter().map(|x| x.2.name().as_str())),
        ),
        (
            oid_field("atttypid", kind::REGTYPE, false),
            ints(a.iter().map(|x| x.3.oid)),
        ),
        (
            not_null("attstattarget", DataType::Int32),
            ints(a.iter().map(|_| -1)),
        ),
        (
            not_null("attlen", DataType::Int16),
            smallints(a.iter().map(|x| x.3.len)),
        ),
        (
            not_null("attnum", DataType::Int16),
            smallints(a.iter().map(|x| x.1)),
        ),
        (
            not_null("attndims", DataType::Int32),
            ints(a.iter().map(|x| x.3.dims)),
        ),
        (
            not_null("attcacheoff", DataType::Int32),
            ints(a.iter().map(|_| -1)),
        ),
        (
            not_null("atttypmod", DataType::Int32),
            ints(a.iter().map(|_| -1)),
        ),
        (
            not_null("attbyval", DataType::Boolean),
            bools(a.iter().map(|x| x.3.by_value)),
        ),
        (
            not_null("attalign", DataType::Utf8),
            texts(a.iter().map(|x| x.3.align)),
        ),
        (
            not_null("attstorage", DataType::Utf8),
            texts(a.iter().map(|x| x.3.storage)),
        ),
        nulls("attcompression", DataType::Utf8, n),
        (
            not_null("attnotnull", DataType::Boolean),
            bools(a.iter().map(|x| !x.2.is_nullable())),
        ),
        (
            not_null("atthasdef", DataType::Boolean),
            bools(a.iter().map(|_| false)),
        ),
        (
            not_null("atthasmissing", DataType::Boolean),
            bools(a.iter().map(|_| false)),
        ),
        (
            not_null("attidentity", DataType::Utf8),
            texts(a.iter().map(|_| "")),
        ),
        (
            not_null("attgenerated", DataType::Utf8),
            texts(a.iter().map(|_| "")),
        ),
        (
            not_null("attisdropped", DataType::Boolean),
            bools(a.iter().map(|_| false)),
        ),
        (
            not_null("attislocal", DataType::Boolean),
            bools(a.iter().map(|_| true)),
        ),
        (
            not_null("attinhcount", DataType::Int32),
            ints(a.iter().map(|_| 0)),
        ),
        (
            not_null("attcollation", DataType::Int32),
            ints(a.iter().map(|x| {
                if is_text(x.2.data_type()) {
                    DEFAULT_COLLATION
                } else {
                    0
                }
            })),
        ),
        nulls("attacl", DataType::Utf8, n),
        nulls("attoptions", DataType::Utf8, n),
        nulls("attfdwoptions", DataType::Utf8, n),
        nulls("attmissingval", DataType::Utf8, n),
    ])
}

/// PostgreSQL 16's `pg_index`, with the vectors (`indkey`, ...) as arrays.
fn pg_index(s: &Snapshot) -> DfResult<RecordBatch> {
    let k = &s.keys;
    let n = k.len();
    let flag = |name: &str, v: bool| {
        (
            not_null(name, DataType::Boolean),
            bools(k.iter().map(|_| v)),
        )
    };
    let width = |k: &PrimaryKey| i16::try_from(k.attnums.len()).unwrap_or(i16::MAX);
    // Ascending, nulls last: no options.
    let options: Vec<Vec<i16>> = k.iter().map(|k| vec![0; k.attnums.len()]).collect();
    batch(vec![
        (
            oid_field("indexrelid", kind::REGCLASS, false),
            ints(k.iter().map(|k| k.index)),
        ),
        (
            oid_field("indrelid", kind::REGCLASS, false),
            ints(k.iter().map(|k| k.table)),
        ),
        (
            not_null("indnatts", DataType::Int16),
            smallints(k.iter().map(width)),
        ),
        (
            not_null("indnkeyatts", DataType::Int16),
            smallints(k.iter().map(width)),
        ),
        flag("indisunique", true),
        flag("indnullsnotdistinct", false),
        flag("indisprimary", true),
        flag("indisexclusion", false),
        flag("indimmediate", true),
        flag("indisclustered", false),
        flag("indisvalid", true),
        flag("indcheckxmin", false),
        flag("indisready", true),
        flag("indislive", true),
        flag("indisreplident", false),
        (
            not_null("indkey", list_of(DataType::Int16)),
            smallint_lists(k.iter().map(|k| k.attnums.as_slice())),
        ),
        (
            not_null("indcollation", list_of(DataType::Int32)),
            int_lists(k.iter().map(|k| {
                k.types
                    .iter()
                    .map(|t| if is_text(t) { DEFAULT_COLLATION } else { 0 })
                    .collect()
            })),
        ),
        (
            not_null("indclass", list_of(DataType::Int32)),
            int_lists(
                k.iter()
                    .map(|k| k.types.iter().map(btree_opclass).collect()),
            ),
        ),
        (
            not_null("indoption", list_of(DataType::Int16)),
            smallint_lists(options.iter().map(Vec::as_slice)),
        ),
        nulls("indexprs", DataType::Utf8, n),
        nulls("indpred", DataType::Utf8, n),
    ])
}

/// PostgreSQL 16's `pg_constraint`, holding the primary keys.
fn pg_constraint(s: &Snapshot) -> DfResult<RecordBatch> {
    let k = &s.keys;
    let n = k.len();
    let flag = |name: &str, v: bool| {
        (
            not_null(name, DataType::Boolean),
            bools(k.iter().map(|_| v)),
        )
    };
    let oid = |name: &str, f: fn(&PrimaryKey) -> i32| {
        (oid_field(name, kind::OID, false), ints(k.iter().map(f)))
    };
    let letter =
        |name: &str, v: &'static str| (not_null(name, DataType::Utf8), texts(k.iter().map(|_| v)));
    batch(vec![
        oid("oid", |k| k.constraint),
        (
            not_null("conname", DataType::Utf8),
            texts(k.iter().map(|k| k.name.as_str())),
        ),
        (
            oid_field("connamespace", kind::REGNAMESPACE, false),
            ints(k.iter().map(|k| k.namespace)),
        ),
        letter("contype", "p"),
        flag("condeferrable", false),
        flag("condeferred", false),
        flag("convalidated", true),
        oid("conrelid", |k| k.table),
        oid("contypid", |_| 0),
        oid("conindid", |k| k.index),
        oid("conparentid", |_| 0),
        oid("confrelid", |_| 0),
        letter("confupdtype", " "),
        letter("confdeltype", " "),
        letter("confmatchtype", " "),
        flag("conislocal", true),
        (
            not_null("coninhcount", DataType::Int16),
            smallints(k.iter().map(|_| 0)),
        ),
        flag("connoinherit", true),
        (
            Field::new("conkey", list_of(DataType::Int16), true),
            smallint_lists(k.iter().map(|k| k.attnums.as_slice())),
        ),
        nulls("confkey", list_of(DataType::Int16), n),
        nulls("conpfeqop", list_of(DataType::Int32), n),
        nulls("conppeqop", list_of(DataType::Int32), n),
        nulls("conffeqop", list_of(DataType::Int32), n),
        nulls("confdelsetcols", list_of(DataType::Int16), n),
        nulls("conexclop", list_of(DataType::Int32), n),
        nulls("conbin", DataType::Utf8, n),
    ])
}
