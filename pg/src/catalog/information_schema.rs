//! `information_schema` as PostgreSQL clients read it. DataFusion's own provider builds most
//! tables. `columns` gets PostgreSQL's type names in `data_type` (`double precision`, `text`,
//! where DataFusion prints `Float64`, `Utf8`) and the `udt_*`, `is_identity` and
//! `is_generated` columns; Grafana's query builder, Metabase and psycopg-based tools match on
//! them. `table_constraints` and `key_column_usage` list each table's primary key (its tags
//! and time), which Metabase's sync and DBeaver read.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use eddy_storage::Db;

use eddy_query::catalog::{DATABASE, SCHEMA};
use eddy_query::computed_table::ComputedTable;

/// The `information_schema` schema of the `eddy` catalog.
#[derive(Debug)]
pub struct PgInformationSchema {
    inner: InformationSchemaProvider,
    db: Db,
}

impl PgInformationSchema {
    /// The schema over every catalog of `catalogs`; primary keys come from `db`'s tables.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>, db: Db) -> Self {
        Self {
            inner: InformationSchemaProvider::new(catalogs),
            db,
        }
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(KeyTable::ALL.iter().map(|k| k.name().to_string()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(which) = KeyTable::named(name) {
            let db = self.db.clone();
            return Ok(Some(Arc::new(ComputedTable::new(
                which.schema(),
                move |_| which.build(&db),
            ))));
        }
        let Some(t) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if name == "columns" {
            return Ok(Some(Arc::new(PgColumns { inner: t })));
        }
        Ok(Some(t))
    }

    fn table_exist(&self, name: &str) -> bool {
        KeyTable::named(name).is_some() || self.inner.table_exist(name)
    }
}

/// `information_schema.columns` with PostgreSQL type names.
#[derive(Debug)]
struct PgColumns {
    inner: Arc<dyn TableProvider>,
}

/// The columns PostgreSQL's `information_schema.columns` has and DataFusion's lacks, after
/// DataFusion's.
const EXTRA_COLUMNS: [&str; 5] = [
    "udt_catalog",
    "udt_schema",
    "udt_name",
    "is_identity",
    "is_generated",
];

#[async_trait]
impl TableProvider for PgColumns {
    fn schema(&self) -> SchemaRef {
        let inner = self.inner.schema();
        let mut fields: Vec<Field> = inner
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(cardinal(f.data_type())))
            .collect();
        fields.extend(
            EXTRA_COLUMNS
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, false)),
        );
        Arc::new(Schema::new(fields))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let schema = self.schema();
        let col = self.inner.schema().index_of("data_type")?;
        let position = self.inner.schema().index_of("ordinal_position")?;
        let batches = batches
            .into_iter()
            .map(|b| {
                let names = datafusion::common::cast::as_string_array(b.column(col))?;
                let types: Vec<Option<DataType>> = names
                    .iter()
                    .map(|n| n.and_then(|n| n.parse::<DataType>().ok()))
                    .collect();
                let pg: StringArray = names.iter().map(|n| n.map(pg_type_name)).collect();
                let udt: StringArray = types
                    .iter()
                    .map(|t| t.as_ref().map(crate::catalog::type_name))
                    .collect();
                let same =
                    |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; b.num_rows()])) };
                let mut cols = b
                    .columns()
                    .iter()
                    .map(|c| Ok(cast(c, &cardinal(c.data_type()))?))
                    .collect::<DfResult<Vec<ArrayRef>>>()?;
                cols[col] = Arc::new(pg);
                // DataFusion counts positions from 0, PostgreSQL from 1.
                cols[position] = datafusion::arrow::compute::kernels::numeric::add(
                    &cols[position],
                    &Int32Array::new_scalar(1),
                )?;
                cols.extend([
                    same(DATABASE),
                    same("pg_catalog"),
                    Arc::new(udt),
                    same("NO"),
                    same("NEVER"),
                ]);
                Ok(RecordBatch::try_new(schema.clone(), cols)?)
            })
            .collect::<DfResult<Vec<_>>>()?;
        MemTable::try_new(schema, vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// PostgreSQL's type for a column of DataFusion's `columns`: its counts and positions
/// (`ordinal_position`, `character_maximum_length`, ...) are `cardinal_number`, an `integer`,
/// where DataFusion has unsigned 64-bit integers (which PostgreSQL clients see as `numeric`).
fn cardinal(t: &DataType) -> DataType {
    match t {
        DataType::UInt64 | DataType::UInt32 => DataType::Int32,
        other => other.clone(),
    }
}

/// The key tables Eddy adds to DataFusion's information_schema.
#[derive(Debug, Clone, Copy)]
enum KeyTable {
    /// `table_constraints`: one `PRIMARY KEY` row per table.
    Constraints,
    /// `key_column_usage`: one row per primary-key column.
    KeyColumns,
}

impl KeyTable {
    const ALL: [KeyTable; 2] = [KeyTable::Constraints, KeyTable::KeyColumns];

    fn name(self) -> &'static str {
        match self {
            KeyTable::Constraints => "table_constraints",
            KeyTable::KeyColumns => "key_column_usage",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn schema(self) -> SchemaRef {
        let text = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
        let mut fields = vec![
            text("constraint_catalog", false),
            text("constraint_schema", false),
            text("constraint_name", false),
            text("table_catalog", false),
            text("table_schema", false),
            text("table_name", false),
        ];
        match self {
            KeyTable::Constraints => fields.extend([
                text("constraint_type", false),
                text("is_deferrable", false),
                text("initially_deferred", false),
                text("enforced", false),
                text("nulls_distinct", true),
            ]),
            KeyTable::KeyColumns => fields.extend([
                text("column_name", false),
                Field::new("ordinal_position", DataType::Int32, false),
                Field::new("position_in_unique_constraint", DataType::Int32, true),
            ]),
        }
        Arc::new(Schema::new(fields))
    }

    /// The rows for the tables as they are now, by table name (and key position).
    fn build(self, db: &Db) -> DfResult<RecordBatch> {
        let mut tables = db.catalog().tables();
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        // (table, key column, position): one row per constraint or per key column.
        let mut rows: Vec<(String, Option<String>, i32)> = Vec::new();
        for t in &tables {
            match self {
                KeyTable::Constraints => rows.push((t.name().to_string(), None, 0)),
                KeyTable::KeyColumns => {
                    let fields = t.arrow_schema().fields();
                    for (n, i) in crate::catalog::key_columns(t).into_iter().enumerate() {
                        if let Some(f) = fields.get(i) {
                            let n = i32::try_from(n + 1).unwrap_or(i32::MAX);
                            rows.push((t.name().to_string(), Some(f.name().clone()), n));
                        }
                    }
                }
            }
        }
        let same = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; rows.len()])) };
        let tables: ArrayRef = Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        ));
        let constraints: ArrayRef = Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| format!("{}_pkey", r.0)),
        ));
        let mut columns = vec![
            same(DATABASE),
            same(SCHEMA),
            constraints,
            same(DATABASE),
            same(SCHEMA),
            tables,
        ];
        match self {
            KeyTable::Constraints => columns.extend([
                same("PRIMARY KEY"),
                same("NO"),
                same("NO"),
                same("YES"),
                new_null_array(&DataType::Utf8, rows.len()),
            ]),
            KeyTable::KeyColumns => columns.extend([
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone()))) as ArrayRef,
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
                new_null_array(&DataType::Int32, rows.len()),
            ]),
        }
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// PostgreSQL's `information_schema` name of the type DataFusion prints as `arrow`.
fn pg_type_name(arrow: &str) -> String {
    let Ok(t) = arrow.parse::<DataType>() else {
        return arrow.to_string();
    };
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_) | DataType::Duration(TimeUnit::Nanosecond) => "interval",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "ARRAY",
        DataType::Dictionary(_, v) => return pg_type_name(&v.to_string()),
        _ => return arrow.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::pg_type_name;

    #[test]
    fn arrow_names_become_postgresql_names() {
        for (arrow, pg) in [
            ("Timestamp(ns)", "timestamp without time zone"),
            ("Timestamp(Nanosecond, None)", "timestamp without time zone"),
            ("Float64", "double precision"),
            ("Utf8", "text"),
            ("Int64", "bigint"),
            ("Boolean", "boolean"),
        ] {
            assert_eq!(pg_type_name(arrow), pg, "{arrow}");
        }
    }
}
