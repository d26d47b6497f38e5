//! Schema on write for line protocol: checks parsed lines against the catalog and builds one
//! Arrow batch per table.
//!
//! Each line is checked against the column kinds known so far (the catalog's, then those seen
//! earlier in the request) before any of it is appended, so a line that conflicts is rejected
//! whole with its line number and reason while good lines go on. Lines from one producer
//! usually repeat the same keys in the same order; the builder remembers the previous line's
//! column order and only falls back to a hash lookup when a key differs.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampNanosecondArray, UInt64Builder,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::schema::time_data_type;
use eddy_storage::{Catalog, ColumnDef, ColumnKind, FieldType, TableSchema};

use super::{Line, LineError, ParsedLines, Value, unescape_string};

/// The rows of one table built from a request.
#[derive(Debug)]
pub struct TableRows {
    /// Table name.
    pub table: String,
    /// Columns the rows use (tags and fields), for schema on write.
    pub columns: Vec<ColumnDef>,
    /// Line number of each row.
    pub lines: Vec<usize>,
    builder: TableBuilder,
}

impl TableRows {
    /// Builds the Arrow batch, naming the time column as the table does.
    pub fn into_batch(mut self, schema: &TableSchema) -> Result<RecordBatch, String> {
        self.builder.finish(schema.time_column())
    }
}

/// The lines of a request sorted into tables.
#[derive(Debug, Default)]
pub struct LineBatches {
    /// Rows per table, in order of first appearance.
    pub tables: Vec<TableRows>,
    /// Rejected lines, the parser's and this step's, in line order.
    pub errors: Vec<LineError>,
    /// Number of lines accepted.
    pub lines_ok: usize,
}

#[derive(Debug)]
enum ColData {
    Tag(StringBuilder),
    Float(Float64Builder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

#[derive(Debug)]
struct Column {
    name: String,
    kind: ColumnKind,
    data: ColData,
    len: usize,
}

impl Column {
    fn new(name: &str, kind: ColumnKind) -> Self {
        let data = match kind {
            ColumnKind::Field(FieldType::Float) => ColData::Float(Float64Builder::new()),
            ColumnKind::Field(FieldType::Integer) => ColData::Int(Int64Builder::new()),
            ColumnKind::Field(FieldType::UInteger) => ColData::UInt(UInt64Builder::new()),
            ColumnKind::Field(FieldType::String) => ColData::Str(StringBuilder::new()),
            ColumnKind::Field(FieldType::Boolean) => ColData::Bool(BooleanBuilder::new()),
            ColumnKind::Tag | ColumnKind::Time => ColData::Tag(StringBuilder::new()),
        };
        Self {
            name: name.to_string(),
            kind,
            data,
            len: 0,
        }
    }

    fn pad_to(&mut self, rows: usize) {
        let n = rows - self.len;
        if n == 0 {
            return;
        }
        match &mut self.data {
            ColData::Tag(b) | ColData::Str(b) => (0..n).for_each(|_| b.append_null()),
            ColData::Float(b) => b.append_nulls(n),
            ColData::Int(b) => b.append_nulls(n),
            ColData::UInt(b) => b.append_nulls(n),
            ColData::Bool(b) => b.append_nulls(n),
        }
        self.len = rows;
    }

    fn append_tag(&mut self, rows: usize, v: &str) {
        self.pad_to(rows);
        if let ColData::Tag(b) = &mut self.data {
            b.append_value(v);
        }
        self.len += 1;
    }

    fn append_field(&mut self, rows: usize, v: &Value) {
        self.pad_to(rows);
        match (&mut self.data, v) {
            (ColData::Float(b), Value::Float(x)) => b.append_value(*x),
            (ColData::Int(b), Value::Int(x)) => b.append_value(*x),
            (ColData::UInt(b), Value::UInt(x)) => b.append_value(*x),
            (ColData::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (ColData::Str(b), Value::Str(s)) => b.append_value(s),
            (ColData::Str(b), Value::EscapedStr(s)) => b.append_value(unescape_string(s)),
            _ => {}
        }
        self.len += 1;
    }

    fn finish(&mut self) -> ArrayRef {
        match &mut self.data {
            ColData::Tag(b) | ColData::Str(b) => Arc::new(b.finish()),
            ColData::Float(b) => Arc::new(b.finish()),
            ColData::Int(b) => Arc::new(b.finish()),
            ColData::UInt(b) => Arc::new(b.finish()),
            ColData::Bool(b) => Arc::new(b.finish()),
        }
    }
}

#[derive(Debug)]
struct TableBuilder {
    known: Option<Arc<TableSchema>>,
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    /// Column index of each key of the previous line, tags then fields.
    last_layout: Vec<usize>,
    times: Vec<i64>,
}

impl TableBuilder {
    fn new(known: Option<Arc<TableSchema>>) -> Self {
        Self {
            known,
            columns: Vec::new(),
            index: HashMap::new(),
            last_layout: Vec::new(),
            times: Vec::new(),
        }
    }

    /// Finds (or plans) the column for the `pos`-th key of a line; `Err` names a conflict.
    fn resolve(&mut self, pos: usize, name: &str, kind: ColumnKind) -> Result<usize, String> {
        if let Some(&i) = self.last_layout.get(pos)
            && self.columns[i].name == name
        {
            return self.check(i, kind);
        }
        let i = match self.index.get(name) {
            Some(&i) => self.check(i, kind)?,
            None => {
                let kind = match self.known.as_ref().and_then(|t| t.column(name)) {
                    Some((_, c)) if c.kind == kind => kind,
                    Some((_, c)) => {
                        return Err(conflict(name, c.kind, kind));
                    }
                    None => {
                        eddy_storage::schema::validate_name(name)
                            .map_err(|r| format!("key \"{name}\": {r}"))?;
                        let known = self.known.as_ref().map_or(1, |t| t.columns().len());
                        if known + self.columns.len() >= eddy_storage::schema::COLUMNS_PER_TABLE_MAX
                        {
                            return Err(format!(
                                "key \"{name}\" would exceed the limit of {} columns per table",
                                eddy_storage::schema::COLUMNS_PER_TABLE_MAX
                            ));
                        }
                        kind
                    }
                };
                self.columns.push(Column::new(name, kind));
                let i = self.columns.len() - 1;
                self.index.insert(name.to_string(), i);
                i
            }
        };
        if pos < self.last_layout.len() {
            self.last_layout[pos] = i;
        } else {
            self.last_layout.push(i);
        }
        Ok(i)
    }

    fn check(&mut self, i: usize, kind: ColumnKind) -> Result<usize, String> {
        let have = self.columns[i].kind;
        if have == kind {
            return Ok(i);
        }
        // A column planned by a line that was then rejected holds no value and is not in the
        // catalog: it takes the kind of the first line that really writes it.
        let name = &self.columns[i].name;
        let in_catalog = self
            .known
            .as_ref()
            .is_some_and(|t| t.column(name).is_some());
        if self.columns[i].len == 0 && !in_catalog {
            self.columns[i] = Column::new(&name.clone(), kind);
            return Ok(i);
        }
        Err(conflict(&self.columns[i].name, have, kind))
    }

    fn add(&mut self, line: &Line) -> Result<(), String> {
        let rows = self.times.len();
        let mut slots = Vec::with_capacity(line.tags.len() + line.fields.len());
        for (pos, (k, _)) in line.tags.iter().enumerate() {
            slots.push(self.resolve(pos, k, ColumnKind::Tag)?);
        }
        let base = line.tags.len();
        for (pos, (k, v)) in line.fields.iter().enumerate() {
            slots.push(self.resolve(base + pos, k, ColumnKind::Field(v.field_type()))?);
        }
        // A key given twice in one line would write one cell twice.
        for (n, &s) in slots.iter().enumerate() {
            if slots[..n].contains(&s) {
                return Err(format!(
                    "key \"{}\" appears more than once",
                    self.columns[s].name
                ));
            }
        }
        for ((_, v), &s) in line.tags.iter().zip(&slots) {
            self.columns[s].append_tag(rows, v);
        }
        for ((_, v), &s) in line.fields.iter().zip(&slots[base..]) {
            self.columns[s].append_field(rows, v);
        }
        self.times.push(line.time_ns);
        Ok(())
    }

    fn column_defs(&self) -> Vec<ColumnDef> {
        self.columns
            .iter()
            .filter(|c| c.len > 0)
            .map(|c| ColumnDef::new(c.name.clone(), c.kind))
            .collect()
    }

    fn finish(&mut self, time_column: &str) -> Result<RecordBatch, String> {
        let rows = self.times.len();
        let mut fields = vec![Field::new(time_column, time_data_type(), false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(TimestampNanosecondArray::from(
            std::mem::take(&mut self.times),
        ))];
        for c in &mut self.columns {
            if c.len == 0 {
                continue;
            }
            c.pad_to(rows);
            fields.push(Field::new(&c.name, c.kind.data_type(), true));
            arrays.push(c.finish());
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
    }
}

fn conflict(name: &str, have: ColumnKind, got: ColumnKind) -> String {
    format!(
        "column \"{name}\" is {}, but this line writes it as {}",
        have.describe(),
        got.describe()
    )
}

/// Checks parsed lines against the catalog and the lines before them, and sorts the good ones
/// into one batch builder per table. A line whose measurement name is invalid, whose keys
/// conflict with known column kinds, or that names a key twice is rejected whole.
pub fn build(parsed: ParsedLines<'_>, catalog: &Catalog) -> LineBatches {
    let ParsedLines {
        lines,
        errors: syntax_errors,
    } = parsed;
    let mut errors = Vec::new();
    let mut lines_ok = 0;
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut builders: Vec<TableBuilder> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut lines_of: Vec<Vec<usize>> = Vec::new();
    for line in &lines {
        let fail = |message: String| LineError {
            line: line.line,
            message,
        };
        let ti = match by_name.get(line.measurement.as_ref()) {
            Some(&i) => i,
            None => {
                let name = line.measurement.to_string();
                if let Err(r) = eddy_storage::schema::validate_name(&name) {
                    errors.push(fail(format!("measurement: {r}")));
                    continue;
                }
                builders.push(TableBuilder::new(catalog.get(&name)));
                by_name.insert(name.clone(), builders.len() - 1);
                names.push(name);
                lines_of.push(Vec::new());
                builders.len() - 1
            }
        };
        match builders[ti].add(line) {
            Ok(()) => {
                lines_of[ti].push(line.line);
                lines_ok += 1;
            }
            Err(m) => errors.push(fail(m)),
        }
    }
    let mut tables = Vec::new();
    for ((builder, table), lines) in builders.into_iter().zip(names).zip(lines_of) {
        if lines.is_empty() {
            continue;
        }
        tables.push(TableRows {
            table,
            columns: builder.column_defs(),
            lines,
            builder,
        });
    }
    LineBatches {
        tables,
        errors: merge_by_line(syntax_errors, errors),
        lines_ok,
    }
}

/// Merges two lists of errors, each in line order, into one in line order.
fn merge_by_line(a: Vec<LineError>, b: Vec<LineError>) -> Vec<LineError> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.line <= y.line,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Float64Array, Int64Array};

    use super::*;
    use crate::lineproto::{Precision, parse};

    fn catalog(dir: &tempfile::TempDir) -> Catalog {
        Catalog::open(dir.path()).expect("catalog")
    }

    #[test]
    fn rejects_conflicting_lines_and_merges_errors_in_line_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"m f=1 1\nbad\nm f=1i 2\nm f=2 3\nm,f=x g=1 4";
        let built = build(parse(body, Precision::Nanosecond, 0), &catalog(&dir));
        let float = ColumnKind::Field(FieldType::Float);
        let int = ColumnKind::Field(FieldType::Integer);
        let lines: Vec<usize> = built.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert!(built.errors[0].message.contains("missing fields"));
        assert_eq!(built.errors[1].message, conflict("f", float, int));
        assert_eq!(
            built.errors[2].message,
            conflict("f", float, ColumnKind::Tag)
        );
        assert_eq!(built.lines_ok, 2);
        assert_eq!(built.tables.len(), 1);
        assert_eq!(built.tables[0].lines, vec![1, 4]);
    }

    #[test]
    fn checks_kinds_against_the_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = catalog(&dir);
        cat.ensure_columns(
            "m",
            &[ColumnDef::new("f", ColumnKind::Field(FieldType::Integer))],
        )
        .expect("schema");
        let built = build(parse(b"m f=1.5\nm f=2i", Precision::Nanosecond, 7), &cat);
        assert_eq!(built.errors.len(), 1);
        assert_eq!(built.errors[0].line, 1);
        assert_eq!(
            built.errors[0].message,
            conflict(
                "f",
                ColumnKind::Field(FieldType::Integer),
                ColumnKind::Field(FieldType::Float)
            )
        );
        assert_eq!(built.tables[0].lines, vec![2]);
    }

    #[test]
    fn builds_one_batch_per_table_with_missing_cells_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = catalog(&dir);
        let body = b"m,h=a f=1 10\nn g=3i 5\nm,h=b g=2i 20";
        let built = build(parse(body, Precision::Nanosecond, 0), &cat);
        assert!(built.errors.is_empty());
        let names: Vec<&str> = built.tables.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, vec!["m", "n"]);
        let rows = built.tables.into_iter().next().expect("m");
        let schema = cat
            .ensure_columns(&rows.table, &rows.columns)
            .expect("schema");
        let batch = rows.into_batch(&schema).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let f = batch
            .column_by_name("f")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
            .expect("f");
        assert_eq!(f.value(0), 1.0);
        assert!(f.is_null(1));
        let g = batch
            .column_by_name("g")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .expect("g");
        assert!(g.is_null(0));
        assert_eq!(g.value(1), 2);
    }
}
