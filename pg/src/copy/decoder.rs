//! The `COPY ... FROM STDIN` decoder. Data arrives in CopyData chunks of any size, so the
//! decoder keeps at most one partial row buffered, finds complete rows by the rules of the
//! format (the text, csv and binary modules), converts each field to its column's type and
//! appends whole rows to Arrow builders, handing them out as record batches when asked.
//! The column builders live here because all three formats fill them the same way.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef, TimeUnit};

use super::binary::BinaryState;
use super::csv::split_csv;
use super::options::{CopyError, CopyFormat, CopyOptions};
use super::text::split_text;
use super::values::{parse_bool, parse_f64, parse_timestamp_ns};

/// Column types COPY FROM can decode into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Text,
    Float64,
    Int64,
    UInt64,
    Boolean,
    Timestamp,
}

impl Target {
    fn of(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Utf8 => Some(Self::Text),
            DataType::Float64 => Some(Self::Float64),
            DataType::Int64 => Some(Self::Int64),
            DataType::UInt64 => Some(Self::UInt64),
            DataType::Boolean => Some(Self::Boolean),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(Self::Timestamp),
            _ => None,
        }
    }

    /// The PostgreSQL type name users see in error messages.
    pub(super) fn pg_name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Float64 => "double precision",
            Self::Int64 | Self::UInt64 => "bigint",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
        }
    }
}

/// One decoded value awaiting the rest of its row; text refers to a byte range of the row's
/// source buffer so strings are copied only once, into the builder.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cell {
    Null,
    Text(usize, usize),
    Float64(f64),
    Int64(i64),
    UInt64(u64),
    Boolean(bool),
}

enum ColumnBuilder {
    Text(StringBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampNanosecondBuilder),
}

impl ColumnBuilder {
    fn new(target: Target, data_type: &DataType) -> Self {
        match target {
            Target::Text => Self::Text(StringBuilder::new()),
            Target::Float64 => Self::Float64(Float64Builder::new()),
            Target::Int64 => Self::Int64(Int64Builder::new()),
            Target::UInt64 => Self::UInt64(UInt64Builder::new()),
            Target::Boolean => Self::Boolean(BooleanBuilder::new()),
            Target::Timestamp => {
                // Keep the field's time zone so the batch matches the declared schema.
                let tz = match data_type {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Self::Timestamp(TimestampNanosecondBuilder::new().with_timezone_opt(tz))
            }
        }
    }

    /// Cells are produced for this builder's target, so a mismatch cannot occur; a NULL keeps
    /// the column lengths consistent should one ever slip through.
    fn append(&mut self, cell: Cell, source: &[u8]) {
        match self {
            Self::Text(b) => match cell {
                Cell::Text(start, end) => {
                    let bytes = source.get(start..end).unwrap_or_default();
                    b.append_value(std::str::from_utf8(bytes).unwrap_or_default());
                }
                _ => b.append_null(),
            },
            Self::Float64(b) => match cell {
                Cell::Float64(v) => b.append_value(v),
                _ => b.append_null(),
            },
            Self::Int64(b) => match cell {
                Cell::Int64(v) => b.append_value(v),
                _ => b.append_null(),
            },
            Self::UInt64(b) => match cell {
                Cell::UInt64(v) => b.append_value(v),
                _ => b.append_null(),
            },
            Self::Boolean(b) => match cell {
                Cell::Boolean(v) => b.append_value(v),
                _ => b.append_null(),
            },
            Self::Timestamp(b) => match cell {
                Cell::Int64(v) => b.append_value(v),
                _ => b.append_null(),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::UInt64(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// A field of the current row: a byte range of the source, or `None` for NULL.
pub(super) type FieldRange = Option<(usize, usize)>;

/// The target columns and the rows decoded into them since the last batch.
pub(super) struct Columns {
    pub(super) fields: Vec<FieldRef>,
    pub(super) targets: Vec<Target>,
    builders: Vec<ColumnBuilder>,
    /// The row being converted; appended to the builders only once every field parsed, so a
    /// bad value never leaves the columns with different lengths.
    cells: Vec<Cell>,
    rows: usize,
}

impl Columns {
    pub(super) fn name(&self, col: usize) -> &str {
        self.fields
            .get(col)
            .map(|f| f.name().as_str())
            .unwrap_or("?")
    }

    pub(super) fn null_cell(&self, col: usize, line: u64) -> Result<Cell, CopyError> {
        match self.fields.get(col) {
            Some(field) if !field.is_nullable() => Err(CopyError::at_column(
                line,
                field.name(),
                format!(
                    "null value in column \"{}\" violates not-null constraint",
                    field.name()
                ),
            )),
            _ => Ok(Cell::Null),
        }
    }

    fn invalid_value(&self, col: usize, target: Target, value: &str, line: u64) -> CopyError {
        const MAX_SHOWN: usize = 100;
        let shown = match value.char_indices().nth(MAX_SHOWN) {
            Some((cut, _)) => format!("{}...", &value[..cut]),
            None => value.to_string(),
        };
        let name = self.name(col);
        CopyError::at_column(
            line,
            name,
            format!(
                "invalid input for column \"{name}\" ({}): \"{shown}\"",
                target.pg_name()
            ),
        )
    }

    pub(super) fn invalid_utf8(&self, col: usize, line: u64) -> CopyError {
        let name = self.name(col);
        CopyError::at_column(
            line,
            name,
            format!("invalid byte sequence for encoding \"UTF8\" in column \"{name}\""),
        )
    }

    /// Converts one text/csv field (already unescaped into `source`).
    fn text_cell(
        &self,
        col: usize,
        range: FieldRange,
        source: &[u8],
        line: u64,
    ) -> Result<Cell, CopyError> {
        let Some((start, end)) = range else {
            return self.null_cell(col, line);
        };
        let target = self.targets.get(col).copied().unwrap_or(Target::Text);
        let bytes = source.get(start..end).unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|_| self.invalid_utf8(col, line))?;
        let cell = match target {
            Target::Text => Some(Cell::Text(start, end)),
            Target::Float64 => parse_f64(text).map(Cell::Float64),
            Target::Int64 => text.trim().parse::<i64>().ok().map(Cell::Int64),
            Target::UInt64 => text.trim().parse::<u64>().ok().map(Cell::UInt64),
            Target::Boolean => parse_bool(text).map(Cell::Boolean),
            Target::Timestamp => parse_timestamp_ns(text).map(Cell::Int64),
        };
        cell.ok_or_else(|| self.invalid_value(col, target, text, line))
    }

    /// Converts a split text/csv row and appends it; checks the field count first, as
    /// PostgreSQL reports extra fields before any conversion error.
    fn add_text_row(
        &mut self,
        source: &[u8],
        ranges: &[FieldRange],
        line: u64,
    ) -> Result<(), CopyError> {
        let ncols = self.fields.len();
        // A table-less row (no target columns) is an empty line.
        let empty_line = matches!(ranges, [Some((a, b))] if a == b);
        if ranges.len() > ncols && !(ncols == 0 && empty_line) {
            return Err(CopyError::at_line(
                line,
                "extra data after last expected column",
            ));
        }
        self.cells.clear();
        for col in 0..ncols {
            let Some(range) = ranges.get(col) else {
                let name = self.name(col);
                return Err(CopyError::at_column(
                    line,
                    name,
                    format!("missing data for column \"{name}\""),
                ));
            };
            let cell = self.text_cell(col, *range, source, line)?;
            self.cells.push(cell);
        }
        self.commit(source);
        Ok(())
    }

    pub(super) fn add_binary_row(
        &mut self,
        source: &[u8],
        ranges: &[FieldRange],
        line: u64,
    ) -> Result<(), CopyError> {
        self.cells.clear();
        for (col, range) in ranges.iter().enumerate() {
            let cell = self.binary_cell(col, *range, source, line)?;
            self.cells.push(cell);
        }
        self.commit(source);
        Ok(())
    }

    fn commit(&mut self, source: &[u8]) {
        for (builder, cell) in self.builders.iter_mut().zip(self.cells.drain(..)) {
            builder.append(cell, source);
        }
        self.rows += 1;
    }
}

/// Decodes `COPY ... FROM STDIN` data, fed in chunks as CopyData messages arrive, into batches.
pub struct CopyDecoder {
    pub(super) options: CopyOptions,
    schema: SchemaRef,
    pub(super) columns: Columns,
    null: Vec<u8>,
    /// Received bytes not yet consumed; `start` is the first unconsumed one.
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    /// Where the search for the end of the current row resumes, so a long row arriving in
    /// many small chunks is not rescanned from its beginning each time.
    pub(super) scan: usize,
    /// CSV quote state at `scan`.
    pub(super) in_quote: bool,
    pub(super) last_was_escape: bool,
    /// Lines (text), records (csv) or tuples (binary) consumed, including a header.
    pub(super) line: u64,
    pub(super) rows_total: u64,
    header_pending: bool,
    pub(super) binary: BinaryState,
    /// End of data seen (`\.`, binary trailer, or `finish`); later input is ignored.
    pub(super) done: bool,
    /// The first error. The buffered input is in an unknown state after it, so every later
    /// `push` or `finish` reports it again.
    error: Option<CopyError>,
    /// Unescaped field bytes of the current text/csv row.
    arena: Vec<u8>,
    pub(super) ranges: Vec<FieldRange>,
}

impl fmt::Debug for CopyDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyDecoder")
            .field("options", &self.options)
            .field("columns", &self.columns.fields.len())
            .field("rows_buffered", &self.columns.rows)
            .field("rows_total", &self.rows_total)
            .field("done", &self.done)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CopyDecoder {
    /// A decoder for `fields`, the target columns in the COPY column-list order; errors if a
    /// column's type cannot be decoded (so the caller can refuse before CopyInResponse).
    pub fn try_new(options: CopyOptions, fields: Vec<FieldRef>) -> Result<Self, CopyError> {
        let decoder = Self::new(options, fields);
        match &decoder.error {
            Some(e) => Err(e.clone()),
            None => Ok(decoder),
        }
    }

    /// A decoder for `fields`, the target columns in the COPY column-list order. A column of an
    /// unsupported type makes every `push` and `finish` fail; see [`CopyDecoder::try_new`].
    pub fn new(options: CopyOptions, fields: Vec<FieldRef>) -> Self {
        let mut targets = Vec::with_capacity(fields.len());
        let mut builders = Vec::with_capacity(fields.len());
        let mut error = None;
        for field in &fields {
            let Some(target) = Target::of(field.data_type()) else {
                error = Some(CopyError {
                    line: None,
                    column: Some(field.name().clone()),
                    message: format!(
                        "COPY FROM does not support column \"{}\" of type {}",
                        field.name(),
                        field.data_type()
                    ),
                });
                break;
            };
            targets.push(target);
            builders.push(ColumnBuilder::new(target, field.data_type()));
        }
        let schema = Arc::new(Schema::new(fields.clone()));
        let header_pending = options.header && options.format != CopyFormat::Binary;
        Self {
            null: options.null.clone().into_bytes(),
            options,
            schema,
            columns: Columns {
                cells: Vec::with_capacity(fields.len()),
                fields,
                targets,
                builders,
                rows: 0,
            },
            buf: Vec::new(),
            start: 0,
            scan: 0,
            in_quote: false,
            last_was_escape: false,
            line: 0,
            rows_total: 0,
            header_pending,
            binary: BinaryState::Header,
            done: false,
            error,
            arena: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// The schema of the batches this decoder produces.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Feeds the next chunk of COPY data; complete rows are decoded, a partial row is kept.
    pub fn push(&mut self, data: &[u8]) -> Result<(), CopyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.done {
            if self.options.format == CopyFormat::Binary && !data.is_empty() {
                return Err(self.fail(CopyError::new("received copy data after EOF marker")));
            }
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let result = self.decode_available();
        self.compact();
        result.map_err(|e| self.fail(e))
    }

    /// Rows decoded since the last batch was taken.
    pub fn rows_buffered(&self) -> usize {
        self.columns.rows
    }

    /// Rows decoded in total (headers excluded).
    pub fn rows_total(&self) -> u64 {
        self.rows_total
    }

    /// The rows decoded since the last call as a batch of the target schema, `None` if none.
    pub fn take_batch(&mut self) -> Result<Option<RecordBatch>, CopyError> {
        let rows = self.columns.rows;
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = self
            .columns
            .builders
            .iter_mut()
            .map(|b| b.finish())
            .collect();
        self.columns.rows = 0;
        // An explicit row count keeps zero-column COPYs representable.
        let batch_options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &batch_options)
            .map(Some)
            .map_err(|e| CopyError::new(format!("could not build COPY batch: {e}")))
    }

    /// Ends the input (CopyDone): decodes a final unterminated line and returns the last rows.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, CopyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if let Err(e) = self.finish_input() {
            return Err(self.fail(e));
        }
        self.done = true;
        self.buf.clear();
        self.start = 0;
        self.scan = 0;
        self.take_batch()
    }

    fn fail(&mut self, error: CopyError) -> CopyError {
        self.error = Some(error.clone());
        error
    }

    fn finish_input(&mut self) -> Result<(), CopyError> {
        if self.done {
            return Ok(());
        }
        match self.options.format {
            CopyFormat::Text | CopyFormat::Csv => {
                if self.options.format == CopyFormat::Csv && self.in_quote {
                    return Err(CopyError::at_line(
                        self.line + 1,
                        "unterminated CSV quoted field",
                    ));
                }
                if self.start < self.buf.len() {
                    let (start, end) = (self.start, self.buf.len());
                    self.start = end;
                    self.scan = end;
                    self.decode_record(start, end)?;
                }
                Ok(())
            }
            CopyFormat::Binary => match self.binary {
                BinaryState::Header => Err(CopyError::new("COPY file signature not recognized")),
                // PostgreSQL also accepts input that ends at a tuple boundary without a trailer.
                BinaryState::Tuples if self.start < self.buf.len() => Err(CopyError::at_line(
                    self.line + 1,
                    "unexpected EOF in COPY data",
                )),
                BinaryState::Tuples | BinaryState::Done => Ok(()),
            },
        }
    }

    /// Drops consumed bytes so the buffer holds at most one partial row.
    fn compact(&mut self) {
        if self.done {
            self.buf.clear();
            self.start = 0;
            self.scan = 0;
        } else if self.start > 0 {
            self.buf.drain(..self.start);
            self.scan = self.scan.saturating_sub(self.start);
            self.start = 0;
        }
    }

    fn decode_available(&mut self) -> Result<(), CopyError> {
        match self.options.format {
            CopyFormat::Text | CopyFormat::Csv => {
                while !self.done {
                    let next = if self.options.format == CopyFormat::Text {
                        self.next_text_line()
                    } else {
                        self.next_csv_record()
                    };
                    let Some((start, end)) = next else { break };
                    self.decode_record(start, end)?;
                }
                Ok(())
            }
            CopyFormat::Binary => self.decode_binary(),
        }
    }

    /// Decodes the text line or CSV record in `buf[start..end]` (newline excluded).
    fn decode_record(&mut self, start: usize, end: usize) -> Result<(), CopyError> {
        let mut end = end;
        if end > start && self.buf[end - 1] == b'\r' && !self.cr_is_escaped(start, end - 1) {
            end -= 1;
        }
        self.line += 1;
        let line = self.line;
        let record = &self.buf[start..end];
        if record == b"\\." {
            self.done = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        match self.options.format {
            CopyFormat::Csv => split_csv(
                record,
                &self.options,
                &self.null,
                &mut self.arena,
                &mut self.ranges,
            )
            .map_err(|message| CopyError::at_line(line, message))?,
            _ => split_text(
                record,
                self.options.delimiter,
                &self.null,
                &mut self.arena,
                &mut self.ranges,
            ),
        }
        self.columns.add_text_row(&self.arena, &self.ranges, line)?;
        self.rows_total += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Field, Int64Type};

    use super::*;
    use crate::copy::test_support::{decode_all, decode_err, field};

    #[test]
    fn end_of_data_marker() {
        let fields = vec![field("a", DataType::Utf8)];
        let mut decoder = CopyDecoder::try_new(CopyOptions::text(), fields).expect("types");
        decoder
            .push(b"one\ntwo\n\\.\nignored\textra\tfields\n")
            .expect("push");
        decoder.push(b"more ignored\n").expect("ignored");
        let batch = decoder.finish().expect("finish").expect("rows");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(decoder.rows_total(), 2);

        let fields = vec![field("a", DataType::Utf8)];
        let batch = decode_all(CopyOptions::csv(), fields, b"x\n\\.\n", 2);
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn text_errors_name_line_and_column() {
        let fields = vec![field("temp", DataType::Float64)];
        let e = decode_err(CopyOptions::text(), fields, b"1.0\n2\nabc\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.column.as_deref(), Some("temp"));
        assert_eq!(
            e.to_string(),
            "invalid input for column \"temp\" (double precision): \"abc\", line 3"
        );

        let fields = vec![field("a", DataType::Int64)];
        let e = decode_err(CopyOptions::text(), fields, b"1\t2\n");
        assert_eq!(
            e.to_string(),
            "extra data after last expected column, line 1"
        );

        let fields = vec![field("a", DataType::Int64), field("b", DataType::Int64)];
        let e = decode_err(CopyOptions::text(), fields, b"1\t2\n3\n");
        assert_eq!(e.to_string(), "missing data for column \"b\", line 2");

        let fields = vec![Arc::new(Field::new("k", DataType::Int64, false))];
        let e = decode_err(CopyOptions::text(), fields, b"\\N\n");
        assert!(e.message.contains("not-null"), "{e}");

        for (ty, bad, name) in [
            (DataType::Int64, "12x", "bigint"),
            (DataType::UInt64, "-1", "bigint"),
            (DataType::Boolean, "maybe", "boolean"),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                "1700000000",
                "timestamp",
            ),
            (DataType::Float64, "1e400", "double precision"),
        ] {
            let fields = vec![field("c", ty)];
            let e = decode_err(CopyOptions::text(), fields, format!("{bad}\n").as_bytes());
            assert_eq!(
                e.to_string(),
                format!("invalid input for column \"c\" ({name}): \"{bad}\", line 1")
            );
        }

        let fields = vec![field("s", DataType::Utf8)];
        let e = decode_err(CopyOptions::text(), fields, b"\\xff\n");
        assert!(e.message.contains("UTF8"), "{e}");
    }

    #[test]
    fn decoder_is_unusable_after_error() {
        let fields = vec![field("a", DataType::Int64)];
        let mut decoder = CopyDecoder::try_new(CopyOptions::text(), fields).expect("types");
        let e = decoder.push(b"1\nx\n").expect_err("bad value");
        assert_eq!(decoder.push(b"2\n"), Err(e.clone()));
        assert_eq!(decoder.finish().map(|_| ()), Err(e));
    }

    #[test]
    fn unsupported_column_type() {
        let fields = vec![field("n", DataType::Int64), field("d", DataType::Date32)];
        let e = CopyDecoder::try_new(CopyOptions::text(), fields.clone()).expect_err("Date32");
        assert_eq!(e.column.as_deref(), Some("d"));
        let mut decoder = CopyDecoder::new(CopyOptions::text(), fields);
        assert_eq!(decoder.push(b"1\t2024-01-01\n"), Err(e.clone()));
        assert_eq!(decoder.finish().map(|_| ()), Err(e));
    }

    #[test]
    fn batches_are_taken_incrementally() {
        let fields = vec![field("a", DataType::Int64)];
        let mut decoder = CopyDecoder::try_new(CopyOptions::text(), fields).expect("types");
        decoder.push(b"1\n2\n3").expect("push");
        assert_eq!(decoder.rows_buffered(), 2);
        let first = decoder.take_batch().expect("batch").expect("rows");
        assert_eq!(first.num_rows(), 2);
        assert_eq!(decoder.rows_buffered(), 0);
        assert!(decoder.take_batch().expect("batch").is_none());
        let last = decoder.finish().expect("finish").expect("final row");
        assert_eq!(last.column(0).as_primitive::<Int64Type>().value(0), 3);
        assert_eq!(decoder.rows_total(), 3);
    }
}
