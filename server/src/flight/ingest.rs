//! Bulk ingest: `DoPut` with `CommandStatementIngest` (ADBC's `adbc_ingest`, arrow-rs's
//! `execute_ingest`), or a plain Flight `DoPut` whose descriptor is a path naming the table.
//!
//! Batches are written through the one write path as they arrive, gathered into writes of up
//! to 64k rows or 16 MiB, with one write in flight while the next rows are read, so memory
//! holds two such writes whatever the upload's size, and the final answer (sent after every
//! write is durable) counts rows that are all durable. An error stops the
//! upload; the batches before it stay written (there are no transactions).
//!
//! A table created by an upload follows `CREATE TABLE`'s rules, with the Arrow schema as the
//! column list: the time column is the timestamp column named `time`, or the only timestamp
//! column (or the one the `time_column` option names); tags are the columns the `tags` option
//! lists (comma-separated), else the dictionary-encoded string columns (pandas categoricals,
//! Arrow `dictionary<string>`), because that is how Arrow marks a column of few repeated
//! values; every other column is a field. Rows with the same tags and time replace each
//! other, so a table without tags keeps one row per instant: create it with SQL first
//! (`PRIMARY KEY (host, time)`) when its series are not dictionary-encoded.
//!
//! Columns of an existing table take the upload's values converted to the column's type where
//! the type says the same thing: any integer or float into a float field, any integer into
//! an integer field (a value out of its range is an error, never wrapped or dropped), any
//! timestamp unit or time zone into the time column (UTC), any string encoding into text. A
//! column the table lacks is added as a field, as line protocol adds fields. Other types are
//! refused with an error naming the column and both types.

use std::sync::Arc;

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_ingest::Ingest;
use eddy_query::QueryError;
use eddy_query::catalog::{DATABASE, SCHEMA};
use eddy_query::continuous::ViewRegistry;
use eddy_storage::{ColumnDef, ColumnKind, FieldType, StorageError, TableDef, TableSchema};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use super::metadata::SYSTEM_TABLES;
use super::status::query_status;

/// What to do when the table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfMissing {
    Create,
    Fail,
}

/// What to do when the table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfExists {
    Fail,
    Append,
    Replace,
}

/// The table an upload goes to, and how.
#[derive(Debug, Clone)]
pub(super) struct Target {
    table: String,
    if_missing: IfMissing,
    if_exists: IfExists,
    /// The `time_column` option.
    time_column: Option<String>,
    /// The `tags` option.
    tags: Option<Vec<String>>,
}

impl Target {
    /// The target of a `CommandStatementIngest`. Unspecified options create a missing table
    /// and append to an existing one, as line protocol does.
    pub(super) fn of_command(cmd: &CommandStatementIngest) -> Result<Target, Status> {
        if cmd.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "transactions are not supported: every batch commits as it arrives",
            ));
        }
        if cmd.temporary {
            return Err(Status::unimplemented("temporary tables are not supported"));
        }
        check_namespace(cmd.catalog.as_deref(), cmd.schema.as_deref())?;
        let options = cmd.table_definition_options.unwrap_or_default();
        let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
            Ok(TableNotExistOption::Fail) => IfMissing::Fail,
            Ok(TableNotExistOption::Create | TableNotExistOption::Unspecified) => IfMissing::Create,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown if_not_exist option {}",
                    options.if_not_exist
                )));
            }
        };
        let if_exists = match TableExistsOption::try_from(options.if_exists) {
            Ok(TableExistsOption::Fail) => IfExists::Fail,
            Ok(TableExistsOption::Append | TableExistsOption::Unspecified) => IfExists::Append,
            Ok(TableExistsOption::Replace) => IfExists::Replace,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown if_exists option {}",
                    options.if_exists
                )));
            }
        };
        let mut time_column = None;
        let mut tags = None;
        for (key, value) in &cmd.options {
            match key.as_str() {
                "time_column" => time_column = Some(value.trim().to_string()),
                "tags" => {
                    tags = Some(
                        value
                            .split(',')
                            .map(|t| t.trim().to_string())
                            .filter(|t| !t.is_empty())
                            .collect(),
                    );
                }
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown ingest option \"{other}\"; the options are time_column and tags"
                    )));
                }
            }
        }
        Ok(Target {
            table: name_of(&cmd.table)?,
            if_missing,
            if_exists,
            time_column,
            tags,
        })
    }

    /// The target of a plain Flight `DoPut` to a path: `[table]`, `[schema, table]` or
    /// `[catalog, schema, table]`; a missing table is created, an existing one appended to.
    pub(super) fn of_path(path: &[String]) -> Result<Target, Status> {
        Ok(Target {
            table: path_table(path)?,
            if_missing: IfMissing::Create,
            if_exists: IfExists::Append,
            time_column: None,
            tags: None,
        })
    }
}

/// The table a path descriptor names: `[table]`, `[schema, table]` or
/// `[catalog, schema, table]`.
pub(super) fn path_table(path: &[String]) -> Result<String, Status> {
    let table = match path {
        [t] => t,
        [s, t] => {
            check_namespace(None, Some(s))?;
            t
        }
        [c, s, t] => {
            check_namespace(Some(c), Some(s))?;
            t
        }
        _ => {
            return Err(Status::invalid_argument(format!(
                "a path names a table as [table], [schema, table] or [catalog, schema, table]; \
                 got {} parts",
                path.len()
            )));
        }
    };
    name_of(table)
}

/// Refuses a catalog or schema other than Eddy's one.
fn check_namespace(catalog: Option<&str>, schema: Option<&str>) -> Result<(), Status> {
    if let Some(c) = catalog.filter(|c| !c.is_empty() && *c != DATABASE) {
        return Err(Status::not_found(format!(
            "catalog \"{c}\" does not exist; Eddy has one, \"{DATABASE}\""
        )));
    }
    if let Some(s) = schema.filter(|s| !s.is_empty() && *s != SCHEMA) {
        return Err(Status::not_found(format!(
            "schema \"{s}\" does not exist; Eddy has one, \"{SCHEMA}\""
        )));
    }
    Ok(())
}

/// A table name as given (an Arrow name is exact, like a quoted SQL identifier).
fn name_of(table: &str) -> Result<String, Status> {
    if table.is_empty() {
        return Err(Status::invalid_argument(
            "the ingest command names no table",
        ));
    }
    Ok(table.to_string())
}

/// The write path and the views an upload needs.
#[derive(Clone)]
pub(super) struct Uploads {
    /// The write path, its writes counted as Flight's.
    pub ingest: Ingest,
    /// The continuous aggregates (a replaced table must have none).
    pub views: Arc<ViewRegistry>,
}

/// Rows gathered before they are written as one batch: fewer, larger writes share WAL framing
/// and fsyncs (an ADBC upload arrives in batches of a few thousand rows).
const UPLOAD_WRITE_ROWS: usize = 64 * 1024;

/// Bytes gathered before they are written as one batch, whatever their rows.
const UPLOAD_WRITE_BYTES: usize = 16 * 1024 * 1024;

/// Writes an upload's batches in order, one write in flight while the next rows are read and
/// decoded, so decoding and the write path (WAL encoding, fsync, memtable) overlap. Memory
/// holds the rows being gathered plus the one write in flight.
struct WriteBehind {
    ingest: Ingest,
    gathered: Vec<RecordBatch>,
    gathered_rows: usize,
    gathered_bytes: usize,
    table: Option<Arc<TableSchema>>,
    in_flight: Option<tokio::task::JoinHandle<Result<u64, Status>>>,
    written: u64,
}

impl WriteBehind {
    fn new(ingest: Ingest) -> Self {
        Self {
            ingest,
            gathered: Vec::new(),
            gathered_rows: 0,
            gathered_bytes: 0,
            table: None,
            in_flight: None,
            written: 0,
        }
    }

    /// Adds a batch (conformed to `table`); writes what was gathered when it is large enough
    /// or when the batch's shape differs from it (a column was added meanwhile).
    async fn push(&mut self, table: &Arc<TableSchema>, batch: RecordBatch) -> Result<(), Status> {
        let same = self.gathered.first().is_none_or(|first| {
            first.schema() == batch.schema()
                && self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table))
        });
        if !same {
            self.submit().await?;
        }
        self.gathered_rows += batch.num_rows();
        // The bytes the batch's rows hold: a batch decoded from a message shares one buffer
        // among its columns, which `get_array_memory_size` would count once per column.
        self.gathered_bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        self.gathered.push(batch);
        self.table = Some(table.clone());
        if self.gathered_rows >= UPLOAD_WRITE_ROWS || self.gathered_bytes >= UPLOAD_WRITE_BYTES {
            self.submit().await?;
        }
        Ok(())
    }

    /// Waits for the write in flight, then hands the gathered rows to the write path.
    async fn submit(&mut self) -> Result<(), Status> {
        self.wait().await?;
        let (Some(first), Some(table)) = (self.gathered.first(), self.table.clone()) else {
            return Ok(());
        };
        let batch = datafusion::arrow::compute::concat_batches(&first.schema(), &self.gathered)
            .map_err(|e| Status::internal(format!("cannot gather uploaded batches: {e}")))?;
        self.gathered.clear();
        self.gathered_rows = 0;
        self.gathered_bytes = 0;
        let ingest = self.ingest.clone();
        self.in_flight = Some(tokio::spawn(async move {
            ingest
                .write_batch(&table, batch)
                .await
                .map_err(|e| query_status(&QueryError::from(e)))
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), Status> {
        if let Some(write) = self.in_flight.take() {
            self.written += write
                .await
                .map_err(|e| Status::internal(format!("an upload's write failed: {e}")))??;
        }
        Ok(())
    }

    /// Writes what is left and waits for every write; returns the rows written.
    async fn finish(mut self) -> Result<u64, Status> {
        self.submit().await?;
        self.wait().await?;
        Ok(self.written)
    }
}

impl Uploads {
    /// Writes every batch of `data` to the target's table; returns the rows written.
    pub(super) async fn ingest<S>(&self, target: &Target, data: S) -> Result<u64, Status>
    where
        S: Stream<Item = Result<FlightData, Status>> + Send + 'static,
    {
        // Messages that carry only the descriptor (no Arrow message) are not data.
        let data = data
            .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
            .map_err(FlightError::from);
        let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
        let mut table: Option<Arc<TableSchema>> = None;
        let mut writes = WriteBehind::new(self.ingest.clone());
        let read = async {
            loop {
                let batch = match batches.next().await {
                    Some(Ok(batch)) => Some(batch),
                    Some(Err(e)) => return Err(decode_status(e)),
                    None => None,
                };
                let schema = match &table {
                    Some(t) => t.clone(),
                    None => {
                        let Some(upload) = batches.schema().cloned() else {
                            return Err(Status::invalid_argument(
                                "the upload holds no Arrow schema (send at least the schema \
                                 message)",
                            ));
                        };
                        self.prepare_table(target, &upload)?
                    }
                };
                let Some(batch) = batch else {
                    break;
                };
                if batch.num_rows() == 0 {
                    table = Some(schema);
                    continue;
                }
                let (schema, batch) = self.conform(schema, &batch)?;
                writes.push(&schema, batch).await?;
                table = Some(schema);
            }
            Ok(())
        }
        .await;
        // Whatever stopped the upload, the batches read before it are written (as they would
        // have been one by one) and the write in flight ends first, so the answer is the last
        // thing to happen.
        let written = writes.finish().await;
        read?;
        written
    }

    /// The table to write to, created (or replaced) as the target says.
    fn prepare_table(&self, target: &Target, upload: &Schema) -> Result<Arc<TableSchema>, Status> {
        let name = &target.table;
        let catalog = self.ingest.catalog();
        if SYSTEM_TABLES.contains(&name.as_str()) {
            return Err(Status::permission_denied(format!(
                "\"{name}\" is a system table; it cannot be written"
            )));
        }
        if self.views.get(name).is_some() {
            return Err(Status::failed_precondition(format!(
                "\"{name}\" is a materialized view; uploads write tables"
            )));
        }
        if let Some(existing) = catalog.get(name) {
            match target.if_exists {
                IfExists::Append => return Ok(existing),
                IfExists::Fail => {
                    return Err(Status::already_exists(format!(
                        "table \"{name}\" already exists (ingest mode create; use append or \
                         create_append to add rows to it)"
                    )));
                }
                IfExists::Replace => {
                    let dependents = self.views.dependents(name);
                    if !dependents.is_empty() {
                        return Err(Status::failed_precondition(format!(
                            "cannot replace table \"{name}\": materialized view(s) {} depend \
                             on it; drop them first",
                            dependents.join(", ")
                        )));
                    }
                    match self.ingest.db().drop_table(name) {
                        Ok(()) | Err(StorageError::TableNotFound(_)) => {}
                        Err(e) => return Err(storage_status(e)),
                    }
                }
            }
        } else if target.if_missing == IfMissing::Fail {
            return Err(Status::not_found(format!(
                "table \"{name}\" does not exist (ingest mode append; use create or \
                 create_append to create it)"
            )));
        }
        let def = table_def(name, upload, target)?;
        match catalog.create_table(def, false) {
            Ok(t) => Ok(t),
            // Created by another writer meanwhile.
            Err(StorageError::TableExists(_)) if target.if_exists == IfExists::Append => {
                catalog.get(name).ok_or_else(|| {
                    Status::aborted(format!("table \"{name}\" was dropped during the upload"))
                })
            }
            Err(e) => Err(storage_status(e)),
        }
    }

    /// `batch` in the table's column types, with the columns the table lacks added to it.
    fn conform(
        &self,
        table: Arc<TableSchema>,
        batch: &RecordBatch,
    ) -> Result<(Arc<TableSchema>, RecordBatch), Status> {
        let upload = batch.schema();
        let mut missing = Vec::new();
        for f in upload.fields() {
            if table.column(f.name()).is_none() {
                let kind = field_kind(table.name(), f.name(), f.data_type())?;
                missing.push(ColumnDef::new(f.name().clone(), kind));
            }
        }
        let table = if missing.is_empty() {
            table
        } else {
            self.ingest
                .catalog()
                .ensure_columns(table.name(), &missing)
                .map_err(storage_status)?
        };
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut fields = Vec::with_capacity(upload.fields().len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(upload.fields().len());
        for (f, column) in upload.fields().iter().zip(batch.columns()) {
            let Some((_, def)) = table.column(f.name()) else {
                return Err(Status::aborted(format!(
                    "column \"{}\" of table \"{}\" was dropped during the upload",
                    f.name(),
                    table.name()
                )));
            };
            let want = def.kind.data_type();
            let column = if column.data_type() == &want {
                column.clone()
            } else if converts(column.data_type(), def.kind) {
                cast_with_options(column, &want, &options).map_err(|e| {
                    Status::invalid_argument(format!(
                        "column \"{}\" of table \"{}\": a value of the upload's {} does not \
                         fit {} ({want}): {e}",
                        f.name(),
                        table.name(),
                        column.data_type(),
                        def.kind.describe()
                    ))
                })?
            } else {
                return Err(mismatch(
                    table.name(),
                    f.name(),
                    def.kind,
                    column.data_type(),
                ));
            };
            fields.push(Field::new(f.name(), want, true));
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Status::invalid_argument(format!("invalid batch: {e}")))?;
        Ok((table, batch))
    }
}

/// The error for a column whose upload type cannot become the table's.
fn mismatch(table: &str, column: &str, kind: ColumnKind, found: &DataType) -> Status {
    Status::invalid_argument(format!(
        "column \"{column}\" of table \"{table}\" is {} ({}); the upload has {found}, which \
         cannot be converted to it",
        kind.describe(),
        kind.data_type()
    ))
}

/// Whether values of type `from` may be converted to values of a column of `kind` (a value
/// that does not fit is then an error of its own).
fn converts(from: &DataType, kind: ColumnKind) -> bool {
    use DataType as D;
    if matches!(from, D::Null) {
        return true;
    }
    match kind {
        ColumnKind::Time => matches!(from, D::Timestamp(..) | D::Date32 | D::Date64),
        ColumnKind::Tag | ColumnKind::Field(FieldType::String) => is_string(from),
        ColumnKind::Field(FieldType::Float) => from.is_integer() || from.is_floating(),
        ColumnKind::Field(FieldType::Integer) => from.is_integer(),
        ColumnKind::Field(FieldType::UInteger) => from.is_integer(),
        ColumnKind::Field(FieldType::Boolean) => matches!(from, D::Boolean),
    }
}

/// Whether `t` holds text (in any of Arrow's encodings).
fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

/// The field type of a column added to `table` from an upload of type `t`.
fn field_kind(table: &str, column: &str, t: &DataType) -> Result<ColumnKind, Status> {
    use DataType as D;
    let field = match t {
        D::Float16 | D::Float32 | D::Float64 => FieldType::Float,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => FieldType::Integer,
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => FieldType::UInteger,
        D::Boolean => FieldType::Boolean,
        t if is_string(t) => FieldType::String,
        D::Timestamp(..) => {
            return Err(Status::invalid_argument(format!(
                "column \"{column}\" of table \"{table}\" is a second timestamp column \
                 ({t}); a table has one time column"
            )));
        }
        other => {
            return Err(Status::unimplemented(format!(
                "column \"{column}\" of table \"{table}\" has type {other}; supported field \
                 types are floats, integers, unsigned integers, strings and booleans"
            )));
        }
    };
    Ok(ColumnKind::Field(field))
}

/// A table definition from an upload's Arrow schema (see the module's rules).
fn table_def(name: &str, upload: &Schema, target: &Target) -> Result<TableDef, Status> {
    let timestamps: Vec<&str> = upload
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Timestamp(..)))
        .map(|f| f.name().as_str())
        .collect();
    let time = match &target.time_column {
        Some(t) => {
            let Ok(f) = upload.field_with_name(t) else {
                return Err(Status::invalid_argument(format!(
                    "time_column \"{t}\" is not a column of the upload"
                )));
            };
            if !matches!(f.data_type(), DataType::Timestamp(..)) {
                return Err(Status::invalid_argument(format!(
                    "time_column \"{t}\" has type {}, not a timestamp",
                    f.data_type()
                )));
            }
            t.as_str()
        }
        None => match timestamps.as_slice() {
            [] => {
                return Err(Status::invalid_argument(format!(
                    "table \"{name}\" needs a timestamp column for time; the upload has none"
                )));
            }
            [one] => *one,
            many if many.contains(&"time") => "time",
            many => {
                return Err(Status::invalid_argument(format!(
                    "the upload has several timestamp columns ({}); name the time column \
                     \"time\" or pass the time_column option",
                    many.join(", ")
                )));
            }
        },
    };
    let tags: Vec<String> = match &target.tags {
        Some(tags) => tags.clone(),
        None => upload
            .fields()
            .iter()
            .filter(|f| {
                matches!(f.data_type(), DataType::Dictionary(..)) && is_string(f.data_type())
            })
            .map(|f| f.name().clone())
            .collect(),
    };
    for t in &tags {
        match upload.field_with_name(t) {
            Ok(f) if is_string(f.data_type()) => {}
            Ok(f) => {
                return Err(Status::invalid_argument(format!(
                    "tag \"{t}\" has type {}; tags are text",
                    f.data_type()
                )));
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "tag \"{t}\" is not a column of the upload"
                )));
            }
        }
    }
    let mut columns = Vec::with_capacity(upload.fields().len());
    for f in upload.fields() {
        let kind = if f.name() == time {
            ColumnKind::Time
        } else if tags.contains(f.name()) {
            ColumnKind::Tag
        } else {
            field_kind(name, f.name(), f.data_type())?
        };
        columns.push(ColumnDef::new(f.name().clone(), kind));
    }
    Ok(TableDef {
        id: 0,
        name: name.to_string(),
        columns,
        retention_ns: None,
    })
}

/// The status of a storage error (kind mapped as for queries).
fn storage_status(e: StorageError) -> Status {
    query_status(&QueryError::from(e))
}

/// The status of an error reading the upload: the client's own status as it is, anything
/// else a malformed upload.
fn decode_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("cannot read the uploaded Arrow data: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    fn target() -> Target {
        Target::of_path(&["t".to_string()]).expect("path")
    }

    fn dict() -> DataType {
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
    }

    #[test]
    fn an_upload_schema_becomes_a_table_as_create_table_would_make_it() {
        let upload = Schema::new(vec![
            Field::new("host", dict(), true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("usage", DataType::Float32, true),
            Field::new("n", DataType::Int32, true),
            Field::new("note", DataType::LargeUtf8, true),
        ]);
        let def = table_def("cpu", &upload, &target()).expect("def");
        let kinds: Vec<ColumnKind> = def.columns.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ColumnKind::Tag,
                ColumnKind::Time,
                ColumnKind::Field(FieldType::Float),
                ColumnKind::Field(FieldType::Integer),
                ColumnKind::Field(FieldType::String),
            ]
        );
        // Options name the time column and the tags.
        let mut t = target();
        t.tags = Some(vec!["note".into()]);
        let def = table_def("cpu", &upload, &t).expect("def");
        assert_eq!(def.columns[0].kind, ColumnKind::Field(FieldType::String));
        assert_eq!(def.columns[4].kind, ColumnKind::Tag);
        t.tags = Some(vec!["usage".into()]);
        assert!(table_def("cpu", &upload, &t).is_err(), "a float tag");
    }

    #[test]
    fn the_time_column_must_be_clear() {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let none = Schema::new(vec![Field::new("v", DataType::Float64, true)]);
        assert!(table_def("t", &none, &target()).is_err());
        let two = Schema::new(vec![
            Field::new("a", ts.clone(), true),
            Field::new("b", ts.clone(), true),
        ]);
        let e = table_def("t", &two, &target()).expect_err("two timestamps");
        assert!(e.message().contains("a, b"), "{}", e.message());
        let mut t = target();
        t.time_column = Some("b".into());
        let def = table_def("t", &two, &t).expect_err("b is time, a is a second timestamp");
        assert!(def.message().contains("\"a\""), "{}", def.message());
    }

    #[test]
    fn conversions_never_change_a_value() {
        assert!(converts(
            &DataType::Int32,
            ColumnKind::Field(FieldType::Float)
        ));
        assert!(converts(
            &DataType::UInt8,
            ColumnKind::Field(FieldType::Integer)
        ));
        assert!(!converts(
            &DataType::Float64,
            ColumnKind::Field(FieldType::Integer)
        ));
        assert!(!converts(
            &DataType::Utf8,
            ColumnKind::Field(FieldType::Float)
        ));
        assert!(converts(&dict(), ColumnKind::Tag));
        assert!(converts(
            &DataType::Timestamp(TimeUnit::Millisecond, Some("+01:00".into())),
            ColumnKind::Time
        ));
        assert!(!converts(&DataType::Int64, ColumnKind::Time));
        let e = mismatch(
            "w",
            "temp",
            ColumnKind::Field(FieldType::Float),
            &DataType::Utf8,
        );
        assert!(
            e.message().contains("\"temp\"")
                && e.message().contains("Float64")
                && e.message().contains("Utf8"),
            "{}",
            e.message()
        );
    }
}
