//! DDL for time-series tables: `CREATE TABLE` (the primary key names the tags and the time
//! column) and `CREATE INDEX ... USING fulltext`.

use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, DataType as SqlType, Expr as SqlExpr, Ident, ObjectName,
    ObjectNamePart, TableConstraint,
};
use eddy_storage::{ColumnDef, ColumnKind, FieldType, TableDef};

use crate::catalog::{DATABASE, SCHEMA};
use crate::error::{ErrorKind, QueryError, Result};

/// Normalizes an identifier as PostgreSQL does: unquoted names fold to lower case.
pub fn ident_name(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

/// The table name of a possibly qualified object name (`cpu`, `public.cpu`, `eddy.public.cpu`).
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Ok(ident_name(id)),
            other => Err(QueryError::new(
                ErrorKind::Syntax,
                format!("unsupported name part {other}"),
            )),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == SCHEMA => Ok(t.clone()),
        [d, s, t] if d == DATABASE && s == SCHEMA => Ok(t.clone()),
        _ => Err(QueryError::new(
            ErrorKind::SchemaNotFound,
            format!(
                "schema of \"{name}\" does not exist; Eddy has one schema, {DATABASE}.{SCHEMA}"
            ),
        )),
    }
}

/// Translates a `CREATE TABLE` statement into a table definition.
///
/// The time column is the `TIMESTAMP` column of the primary key (or the only `TIMESTAMP`
/// column when there is no primary key); the other key columns are tags and must be text.
pub fn table_def(ct: &CreateTable) -> Result<TableDef> {
    let name = table_name(&ct.name)?;
    if ct.query.is_some() {
        return Err(QueryError::unsupported(format!(
            "CREATE TABLE {name} AS SELECT is not supported; create the table, then INSERT INTO {name} SELECT ..."
        )));
    }
    if ct.columns.is_empty() {
        return Err(QueryError::new(
            ErrorKind::InvalidDefinition,
            format!("table \"{name}\" needs at least a time column"),
        ));
    }
    let mut key: Vec<String> = Vec::new();
    for c in &ct.constraints {
        if let TableConstraint::PrimaryKey(pk) = c {
            for ic in &pk.columns {
                match &ic.column.expr {
                    SqlExpr::Identifier(id) => key.push(ident_name(id)),
                    other => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidDefinition,
                            format!("primary key of \"{name}\" must list columns, found {other}"),
                        ));
                    }
                }
            }
        }
    }
    for c in &ct.columns {
        if c.options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
        {
            key.push(ident_name(&c.name));
        }
    }
    let col_names: Vec<String> = ct.columns.iter().map(|c| ident_name(&c.name)).collect();
    for k in &key {
        if !col_names.contains(k) {
            return Err(QueryError::new(
                ErrorKind::ColumnNotFound,
                format!("primary key column \"{k}\" of table \"{name}\" is not defined"),
            ));
        }
    }
    let is_time = |t: &SqlType| matches!(t, SqlType::Timestamp(..) | SqlType::Datetime(_));
    let timestamps: Vec<&String> = ct
        .columns
        .iter()
        .zip(&col_names)
        .filter(|(c, _)| is_time(&c.data_type))
        .map(|(_, n)| n)
        .collect();
    let time_col = match timestamps.as_slice() {
        [] => {
            return Err(QueryError::new(
                ErrorKind::InvalidDefinition,
                format!("table \"{name}\" needs a TIMESTAMP column for time"),
            ));
        }
        [one] => (*one).clone(),
        many => {
            let in_key: Vec<&&String> = many.iter().filter(|n| key.contains(n)).collect();
            match in_key.as_slice() {
                [one] => (**one).clone(),
                _ => {
                    return Err(QueryError::new(
                        ErrorKind::InvalidDefinition,
                        format!(
                            "table \"{name}\" has several TIMESTAMP columns; put exactly one in the PRIMARY KEY to make it the time column"
                        ),
                    ));
                }
            }
        }
    };
    let mut columns = Vec::with_capacity(ct.columns.len());
    for (c, n) in ct.columns.iter().zip(&col_names) {
        let kind = if *n == time_col {
            ColumnKind::Time
        } else if key.contains(n) {
            if !is_text(&c.data_type) {
                return Err(QueryError::new(
                    ErrorKind::InvalidDefinition,
                    format!(
                        "primary key column \"{n}\" of table \"{name}\" is {}; key columns other than time are tags and must be TEXT",
                        c.data_type
                    ),
                ));
            }
            ColumnKind::Tag
        } else if is_time(&c.data_type) {
            return Err(QueryError::unsupported(format!(
                "column \"{n}\" of table \"{name}\": only one TIMESTAMP column per table is supported"
            )));
        } else {
            ColumnKind::Field(field_type(&c.data_type).ok_or_else(|| {
                QueryError::unsupported(format!(
                    "column \"{n}\" of table \"{name}\" has type {}; supported field types are DOUBLE PRECISION, BIGINT, BIGINT UNSIGNED, TEXT and BOOLEAN",
                    c.data_type
                ))
            })?)
        };
        columns.push(ColumnDef::new(n.clone(), kind));
    }
    Ok(TableDef {
        id: 0,
        name,
        columns,
        retention_ns: None,
    })
}

fn is_text(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::Text
            | SqlType::String(_)
            | SqlType::Varchar(_)
            | SqlType::CharacterVarying(_)
            | SqlType::Char(_)
            | SqlType::Character(_)
    )
}

fn field_type(t: &SqlType) -> Option<FieldType> {
    Some(match t {
        SqlType::Double(_)
        | SqlType::DoublePrecision
        | SqlType::Float(_)
        | SqlType::Float8
        | SqlType::Float64
        | SqlType::Real
        | SqlType::Float4 => FieldType::Float,
        SqlType::BigInt(_)
        | SqlType::Int(_)
        | SqlType::Integer(_)
        | SqlType::SmallInt(_)
        | SqlType::Int2(_)
        | SqlType::Int4(_)
        | SqlType::Int8(_)
        | SqlType::Int64 => FieldType::Integer,
        SqlType::BigIntUnsigned(_) | SqlType::UBigInt | SqlType::UInt64 => FieldType::UInteger,
        SqlType::Boolean | SqlType::Bool => FieldType::Boolean,
        t if is_text(t) => FieldType::String,
        _ => return None,
    })
}

/// `CREATE INDEX [IF NOT EXISTS] [name] ON table USING fulltext (column)`: Eddy's only kind
/// of declared index (tags are indexed in every segment without asking). Without a name the
/// index is called `<table>_<column>_fts`, as PostgreSQL names `<table>_<column>_idx`.
pub fn create_index(
    ci: &datafusion::sql::sqlparser::ast::CreateIndex,
) -> Result<crate::engine::Prepared> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, IndexType};
    let usage = "CREATE INDEX name ON table USING fulltext (column)";
    match &ci.using {
        Some(IndexType::Custom(m)) if m.value.eq_ignore_ascii_case("fulltext") => {}
        other => {
            let method = other
                .as_ref()
                .map_or("btree".to_string(), |m| m.to_string());
            return Err(QueryError::unsupported(format!(
                "index method \"{method}\" is not supported: Eddy's indexes are full-text ({usage}); every tag is indexed in every segment already"
            )));
        }
    }
    if ci.unique
        || ci.predicate.is_some()
        || !ci.include.is_empty()
        || !ci.with.is_empty()
        || ci.nulls_distinct.is_some()
    {
        return Err(QueryError::unsupported(format!(
            "a full-text index takes no UNIQUE, WHERE, INCLUDE, NULLS or WITH: {usage}"
        )));
    }
    let table = table_name(&ci.table_name)?;
    let [column] = ci.columns.as_slice() else {
        return Err(QueryError::unsupported(format!(
            "a full-text index covers exactly one column: {usage}"
        )));
    };
    let column = match &column.column.expr {
        SqlExpr::Identifier(id) => ident_name(id),
        other => {
            return Err(QueryError::unsupported(format!(
                "a full-text index covers a column, not the expression {other}: {usage}"
            )));
        }
    };
    let name = match &ci.name {
        Some(n) => table_name(n)?,
        None => format!("{table}_{column}_fts"),
    };
    Ok(crate::engine::Prepared::CreateIndex {
        name,
        table,
        column,
        if_not_exists: ci.if_not_exists,
    })
}
