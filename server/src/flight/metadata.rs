//! The Flight SQL metadata commands: what the server is (`GetSqlInfo`), what it holds
//! (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`, `GetPrimaryKeys`, the
//! foreign-key commands) and which types it has (`GetXdbcTypeInfo`). The answers are built
//! with arrow-flight's builders, which give exactly the spec's schemas and apply the spec's
//! filters (`LIKE` patterns, sorting).
//!
//! Eddy has one catalog, `eddy`, with one schema, `public`. Table types are those of the
//! SQL standard's `information_schema` (what Grafana's Flight SQL data source asks for):
//! `BASE TABLE` for the storage tables, `VIEW` for continuous aggregates, `SYSTEM TABLE` for
//! the computed `eddy_*` tables. A table's primary key is its tags, then its time column, as
//! `CREATE TABLE ... PRIMARY KEY (tags..., time)` declares it; views have none. There are no
//! foreign keys.

use std::sync::Arc;

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, Nullable, Searchable, SqlInfo,
    SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    SqlTransactionIsolationLevel, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray, UInt8Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_query::QueryEngine;
use eddy_query::catalog::{DATABASE, SCHEMA, VIEWS_TABLE};
use eddy_query::running::QUERIES_TABLE;
use eddy_query::segments::{INDEXES_TABLE, SEGMENTS_TABLE};
use eddy_query::sources::SOURCES_TABLE;
use eddy_storage::ColumnKind;
use tonic::Status;

/// The table type of storage tables.
pub(super) const BASE_TABLE: &str = "BASE TABLE";
/// The table type of continuous aggregates.
pub(super) const VIEW: &str = "VIEW";
/// The table type of the computed `eddy_*` tables.
pub(super) const SYSTEM_TABLE: &str = "SYSTEM TABLE";

/// The computed system tables (the storage table `eddy_dead_letters` is a base table).
pub(super) const SYSTEM_TABLES: [&str; 5] = [
    VIEWS_TABLE,
    QUERIES_TABLE,
    SOURCES_TABLE,
    SEGMENTS_TABLE,
    INDEXES_TABLE,
];

/// The Arrow version the server speaks (arrow-rs; Eddy moves with DataFusion's).
const ARROW_VERSION: &str = "59";

/// An arrow-flight builder's error as a status.
fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot build the metadata answer: {e}"))
}

/// What `GetSqlInfo` answers: the server, its SQL dialect and its limits.
pub(super) fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "eddy");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, ARROW_VERSION);
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    // Prepared statements do not time out (the oldest are forgotten past a count instead).
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    // Unquoted names fold to lower case, as in PostgreSQL.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    // Quoted names keep their case; the enumeration has no value for "as written".
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlMaxColumnsInTable,
        eddy_storage::schema::COLUMNS_PER_TABLE_MAX as i64,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i32,
    );
    // Several parameter rows bound to a prepared update run it once per row.
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.build().map_err(internal)
}

/// What `GetXdbcTypeInfo` answers: the types a `CREATE TABLE` column may have.
pub(super) fn xdbc_type_info() -> Result<XdbcTypeInfoData, Status> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let number =
        |name: &str, data_type: XdbcDataType, size: i32, radix: i32, unsigned: bool| XdbcTypeInfo {
            type_name: name.to_string(),
            data_type,
            column_size: Some(size),
            nullable: Nullable::NullabilityNullable,
            searchable: Searchable::Basic,
            unsigned_attribute: Some(unsigned),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.to_string()),
            sql_data_type: data_type,
            num_prec_radix: Some(radix),
            ..Default::default()
        };
    b.append(number("BIGINT", XdbcDataType::XdbcBigint, 19, 10, false));
    b.append(number(
        "BIGINT UNSIGNED",
        XdbcDataType::XdbcBigint,
        20,
        10,
        true,
    ));
    b.append(number(
        "DOUBLE PRECISION",
        XdbcDataType::XdbcDouble,
        53,
        2,
        false,
    ));
    b.append(XdbcTypeInfo {
        type_name: "BOOLEAN".into(),
        data_type: XdbcDataType::XdbcBit,
        column_size: Some(1),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Basic,
        local_type_name: Some("BOOLEAN".into()),
        sql_data_type: XdbcDataType::XdbcBit,
        ..Default::default()
    });
    b.append(XdbcTypeInfo {
        type_name: "TEXT".into(),
        data_type: XdbcDataType::XdbcVarchar,
        literal_prefix: Some("'".into()),
        literal_suffix: Some("'".into()),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: true,
        searchable: Searchable::Full,
        local_type_name: Some("TEXT".into()),
        sql_data_type: XdbcDataType::XdbcVarchar,
        ..Default::default()
    });
    b.append(XdbcTypeInfo {
        type_name: "TIMESTAMP".into(),
        data_type: XdbcDataType::XdbcTimestamp,
        // 2024-01-01 00:00:00.000000000
        column_size: Some(29),
        literal_prefix: Some("TIMESTAMP '".into()),
        literal_suffix: Some("'".into()),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Basic,
        local_type_name: Some("TIMESTAMP".into()),
        minimum_scale: Some(0),
        maximum_scale: Some(9),
        sql_data_type: XdbcDataType::XdbcDatetime,
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ..Default::default()
    });
    b.build().map_err(internal)
}

/// `GetCatalogs`: the one database.
pub(super) fn catalogs() -> Result<RecordBatch, Status> {
    let mut b = GetCatalogsBuilder::new();
    b.append(DATABASE);
    b.build().map_err(internal)
}

/// The schema of the `GetCatalogs` answer.
pub(super) fn catalogs_schema() -> SchemaRef {
    GetCatalogsBuilder::new().schema()
}

/// `GetDbSchemas`: the one schema, if the filters match it.
pub(super) fn db_schemas(cmd: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    b.append(DATABASE, SCHEMA);
    b.build().map_err(internal)
}

/// `GetTableTypes`.
pub(super) fn table_types() -> Result<RecordBatch, Status> {
    let mut b = arrow_flight::sql::CommandGetTableTypes {}.into_builder();
    for t in [BASE_TABLE, SYSTEM_TABLE, VIEW] {
        b.append(t);
    }
    b.build().map_err(internal)
}

/// The schema of the `GetTableTypes` answer.
pub(super) fn table_types_schema() -> SchemaRef {
    arrow_flight::sql::CommandGetTableTypes {}
        .into_builder()
        .schema()
}

/// Every table a client may query, with its type, in no particular order.
pub(super) fn listed(engine: &QueryEngine) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = engine
        .db()
        .catalog()
        .names()
        .into_iter()
        .map(|n| (n, BASE_TABLE))
        .collect();
    out.extend(
        engine
            .views()
            .list()
            .iter()
            .map(|v| (v.name().to_string(), VIEW)),
    );
    out.extend(SYSTEM_TABLES.iter().map(|n| (n.to_string(), SYSTEM_TABLE)));
    out
}

/// The Arrow schema a query of table `name` answers, as the SQL engine sees it; `None` when
/// there is no such table (any more).
pub(super) async fn table_schema(engine: &QueryEngine, name: &str) -> Option<SchemaRef> {
    let session = engine.session();
    let schema = session.context().catalog(DATABASE)?.schema(SCHEMA)?;
    let table = schema.table(name).await.ok().flatten()?;
    Some(table.schema())
}

/// `GetTables`, with each table's Arrow schema when the command asks for it.
pub(super) async fn tables(
    engine: &QueryEngine,
    cmd: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let include_schema = cmd.include_schema;
    let mut b = cmd.into_builder();
    let mut listed = listed(engine);
    listed.sort();
    let empty = Schema::empty();
    for (name, kind) in listed {
        if include_schema {
            // A table dropped while listing is left out.
            let Some(schema) = table_schema(engine, &name).await else {
                continue;
            };
            b.append(DATABASE, SCHEMA, &name, kind, &schema)
                .map_err(internal)?;
        } else {
            b.append(DATABASE, SCHEMA, &name, kind, &empty)
                .map_err(internal)?;
        }
    }
    b.build().map_err(internal)
}

/// The schema of the `GetTables` answer.
pub(super) fn tables_schema(cmd: &CommandGetTables) -> SchemaRef {
    cmd.clone().into_builder().schema()
}

/// The schema of the `GetPrimaryKeys` answer (the spec's).
pub(super) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Whether a command's optional catalog and schema name Eddy's.
fn ours(catalog: Option<&str>, schema: Option<&str>) -> bool {
    catalog.is_none_or(|c| c == DATABASE) && schema.is_none_or(|s| s == SCHEMA)
}

/// `GetPrimaryKeys`: a storage table's tags, then its time column.
pub(super) fn primary_keys(
    engine: &QueryEngine,
    cmd: &CommandGetPrimaryKeys,
) -> Result<RecordBatch, Status> {
    let mut columns: Vec<String> = Vec::new();
    if ours(cmd.catalog.as_deref(), cmd.db_schema.as_deref())
        && let Some(table) = engine.db().catalog().get(&cmd.table)
    {
        columns.extend(
            table
                .tag_indices()
                .iter()
                .map(|&i| table.columns()[i].name.clone()),
        );
        columns.extend(
            table
                .columns()
                .iter()
                .filter(|c| c.kind == ColumnKind::Time)
                .map(|c| c.name.clone()),
        );
    }
    let n = columns.len();
    let key_name = format!("{}_pkey", cmd.table);
    let sequence: Vec<i32> = (1..=n)
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![DATABASE; n])),
        Arc::new(StringArray::from(vec![SCHEMA; n])),
        Arc::new(StringArray::from(vec![cmd.table.as_str(); n])),
        Arc::new(StringArray::from(columns)),
        Arc::new(StringArray::from(vec![key_name.as_str(); n])),
        Arc::new(Int32Array::from(sequence)),
    ];
    RecordBatch::try_new(primary_keys_schema(), arrays).map_err(internal)
}

/// The schema of the foreign-key answers (`GetExportedKeys`, `GetImportedKeys`,
/// `GetCrossReference`; the spec's).
pub(super) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// A foreign-key answer: always empty (Eddy has no foreign keys).
pub(super) fn foreign_keys() -> Result<RecordBatch, Status> {
    let schema = foreign_keys_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int32 => Arc::new(Int32Array::from(Vec::<i32>::new())) as ArrayRef,
            DataType::UInt8 => Arc::new(UInt8Array::from(Vec::<u8>::new())) as ArrayRef,
            _ => Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef,
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_answers_build_with_the_spec_schemas() {
        let info = sql_info().expect("sql info");
        let batch = info.record_batch([0u32, 504]).expect("filtered");
        assert_eq!(batch.num_rows(), 2);
        let types = xdbc_type_info().expect("xdbc");
        assert_eq!(types.record_batch(None).expect("all").num_rows(), 6);
        assert_eq!(catalogs().expect("catalogs").num_rows(), 1);
        assert_eq!(table_types().expect("types").num_rows(), 3);
        let keys = foreign_keys().expect("foreign keys");
        assert_eq!(keys.num_rows(), 0);
        assert_eq!(keys.schema(), foreign_keys_schema());
        let schemas = db_schemas(CommandGetDbSchemas {
            catalog: Some("other".into()),
            db_schema_filter_pattern: None,
        })
        .expect("schemas");
        assert_eq!(schemas.num_rows(), 0);
    }
}
