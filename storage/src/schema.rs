//! The data model: tables of a time column, tag columns (the series key) and typed field columns.
//!
//! A [`TableDef`] is what is persisted; a [`TableSchema`] is the validated, immutable form the
//! engine shares (`Arc`), with the Arrow schema and column roles derived once, so the write
//! and read paths never re-derive them per batch.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::limits::NAME_BYTES_MAX;

pub use crate::limits::COLUMNS_PER_TABLE_MAX;

/// The type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// 64-bit float.
    Float,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer.
    UInteger,
    /// UTF-8 string.
    String,
    /// Boolean.
    Boolean,
}

impl FieldType {
    /// The Arrow type that stores this field type.
    pub fn data_type(self) -> DataType {
        match self {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::UInteger => DataType::UInt64,
            FieldType::String => DataType::Utf8,
            FieldType::Boolean => DataType::Boolean,
        }
    }

    /// The field type stored as `dt`, if any.
    pub fn from_data_type(dt: &DataType) -> Option<FieldType> {
        Some(match dt {
            DataType::Float64 => FieldType::Float,
            DataType::Int64 => FieldType::Integer,
            DataType::UInt64 => FieldType::UInteger,
            DataType::Utf8 => FieldType::String,
            DataType::Boolean => FieldType::Boolean,
            _ => return None,
        })
    }

    /// A user-facing name of the type, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::UInteger => "unsigned integer",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }
}

/// What role a column plays in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "type")]
pub enum ColumnKind {
    /// The table's one timestamp column (nanoseconds, UTC); part of the primary key.
    Time,
    /// A string column that is part of the series key.
    Tag,
    /// A value column.
    Field(FieldType),
}

impl ColumnKind {
    /// The Arrow type of a column of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Time => time_data_type(),
            ColumnKind::Tag => DataType::Utf8,
            ColumnKind::Field(t) => t.data_type(),
        }
    }

    /// A user-facing description of the kind, as used in error messages.
    pub fn describe(self) -> String {
        match self {
            ColumnKind::Time => "the time column".to_string(),
            ColumnKind::Tag => "a tag".to_string(),
            ColumnKind::Field(t @ (FieldType::Integer | FieldType::UInteger)) => {
                format!("an {} field", t.name())
            }
            ColumnKind::Field(t) => format!("a {} field", t.name()),
        }
    }
}

/// The Arrow type of time columns.
pub fn time_data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

/// One column of a table definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Role and type.
    #[serde(flatten)]
    pub kind: ColumnKind,
}

impl ColumnDef {
    /// A column definition.
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// The persisted definition of a table: its columns in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Unique id of this incarnation of the table; a table dropped and created again gets a
    /// new id, so WAL records of the old one are never replayed into the new one.
    #[serde(default)]
    pub id: u64,
    /// Table name.
    pub name: String,
    /// Columns in schema order; exactly one is the time column.
    pub columns: Vec<ColumnDef>,
    /// How long rows are kept, in nanoseconds; whole days of data older than this are
    /// dropped. `None` keeps everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ns: Option<i64>,
}

/// A table definition with its derived Arrow schema and column roles, shared read-only.
#[derive(Debug)]
pub struct TableSchema {
    def: TableDef,
    arrow: SchemaRef,
    time_index: usize,
    tag_indices: Vec<usize>,
    by_name: HashMap<String, usize>,
}

impl TableSchema {
    /// Validates a definition and derives the Arrow schema.
    pub fn new(def: TableDef) -> Result<Self> {
        let invalid = |reason: String| StorageError::InvalidSchema {
            table: def.name.clone(),
            reason,
        };
        validate_name(&def.name).map_err(|r| invalid(format!("table name: {r}")))?;
        if def.columns.len() > COLUMNS_PER_TABLE_MAX {
            return Err(StorageError::LimitExceeded(format!(
                "table \"{}\" would have {} columns; the maximum is {COLUMNS_PER_TABLE_MAX}",
                def.name,
                def.columns.len()
            )));
        }
        let mut by_name = HashMap::with_capacity(def.columns.len());
        let mut time_index = None;
        let mut tag_indices = Vec::new();
        let mut fields = Vec::with_capacity(def.columns.len());
        for (i, c) in def.columns.iter().enumerate() {
            validate_name(&c.name).map_err(|r| invalid(format!("column \"{}\": {r}", c.name)))?;
            if by_name.insert(c.name.clone(), i).is_some() {
                return Err(invalid(format!("column \"{}\" appears twice", c.name)));
            }
            match c.kind {
                ColumnKind::Time => {
                    if time_index.replace(i).is_some() {
                        return Err(invalid("more than one time column".to_string()));
                    }
                }
                ColumnKind::Tag => tag_indices.push(i),
                ColumnKind::Field(_) => {}
            }
            let nullable = c.kind != ColumnKind::Time;
            fields.push(Field::new(&c.name, c.kind.data_type(), nullable));
        }
        let time_index = time_index.ok_or_else(|| invalid("no time column".to_string()))?;
        Ok(Self {
            arrow: Arc::new(Schema::new(fields)),
            def,
            time_index,
            tag_indices,
            by_name,
        })
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The persisted definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The Arrow schema of the table (column order of the definition).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Index of the time column.
    pub fn time_index(&self) -> usize {
        self.time_index
    }

    /// Name of the time column.
    pub fn time_column(&self) -> &str {
        &self.def.columns[self.time_index].name
    }

    /// Indices of the tag columns, in schema order.
    pub fn tag_indices(&self) -> &[usize] {
        &self.tag_indices
    }

    /// The column of that name, with its index.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDef)> {
        self.by_name.get(name).map(|&i| (i, &self.def.columns[i]))
    }

    /// All columns.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.def.columns
    }
}

/// Checks that a table or column name is usable; returns the reason when not.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".to_string());
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(format!("name is longer than {NAME_BYTES_MAX} bytes"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("name contains a control character".to_string());
    }
    Ok(())
}

/// Encodes a table name as a directory name: ASCII letters, digits, `_` and `-` stay, every
/// other byte becomes `.XX` (hex), so any valid name maps to one distinct directory that needs
/// no escaping in a path or URL (`%` would be decoded again by object-store paths).
pub(crate) fn dir_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    out
}
