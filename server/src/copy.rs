//! PostgreSQL COPY support: reading COPY options from the parsed statement, decoding
//! `COPY ... FROM STDIN` data (text, csv and binary formats, arriving in arbitrary chunks) into
//! Arrow record batches, and encoding rows for `COPY ... TO STDOUT` (text and csv).

use std::fmt;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

use crate::pgtext::format_value;

/// The data format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated text with backslash escapes.
    Text,
    /// Comma-separated values with quoting.
    Csv,
    /// PostgreSQL's `PGCOPY` binary format.
    Binary,
}

/// The resolved options of a COPY statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Data format.
    pub format: CopyFormat,
    /// Field separator (text and csv).
    pub delimiter: u8,
    /// The string that stands for NULL (text and csv).
    pub null: String,
    /// Whether the first line is a header (skipped on input, written on output).
    pub header: bool,
    /// Quote character (csv).
    pub quote: u8,
    /// Escape character inside quoted fields (csv).
    pub escape: u8,
}

impl CopyOptions {
    /// PostgreSQL's defaults for the text format: tab delimiter, `\N` for NULL.
    pub fn text() -> Self {
        Self {
            format: CopyFormat::Text,
            delimiter: b'\t',
            null: "\\N".to_string(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    /// PostgreSQL's defaults for the csv format: comma delimiter, unquoted empty string for NULL.
    pub fn csv() -> Self {
        Self {
            format: CopyFormat::Csv,
            delimiter: b',',
            null: String::new(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    /// Options for the binary format.
    pub fn binary() -> Self {
        Self {
            format: CopyFormat::Binary,
            ..Self::text()
        }
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self::text()
    }
}

/// A COPY failure, located like PostgreSQL's error context (line and column) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyError {
    /// 1-based input line (text), record (csv) or tuple (binary) number.
    pub line: Option<u64>,
    /// The column being read when the error occurred.
    pub column: Option<String>,
    /// What went wrong, in PostgreSQL's wording where one exists.
    pub message: String,
}

impl CopyError {
    /// An error not tied to a line or a column.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at_line(line: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    fn at_column(line: u64, column: &str, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some(column.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        // Value errors already name the column in their message; saying it twice reads badly.
        if let Some(column) = &self.column
            && !self.message.contains(&format!("column \"{column}\""))
        {
            write!(f, ", column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CopyError {}

/// Records which options were given, so repeats can be rejected as PostgreSQL does.
#[derive(Default)]
struct GivenOptions {
    format: Option<CopyFormat>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), CopyError> {
    if slot.is_some() {
        return Err(CopyError::new("conflicting or redundant options"));
    }
    *slot = Some(value);
    Ok(())
}

fn unsupported(option: &str) -> CopyError {
    CopyError::new(format!("COPY option {option} is not supported"))
}

/// Resolves a COPY statement's `WITH (...)` options and pre-9.0 legacy options.
pub fn copy_options(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyOptions, CopyError> {
    let mut given = GivenOptions::default();
    for option in options {
        match option {
            CopyOption::Format(name) => {
                let format = match name.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    _ => {
                        return Err(CopyError::new(format!(
                            "COPY format \"{}\" not recognized",
                            name.value
                        )));
                    }
                };
                set_once(&mut given.format, format)?;
            }
            // FREEZE only changes how PostgreSQL writes heap pages; turning it off is a no-op.
            CopyOption::Freeze(false) => {}
            CopyOption::Freeze(true) => return Err(unsupported("FREEZE")),
            CopyOption::Delimiter(c) => set_once(&mut given.delimiter, *c)?,
            CopyOption::Null(s) => set_once(&mut given.null, s.clone())?,
            CopyOption::Header(h) => set_once(&mut given.header, *h)?,
            CopyOption::Quote(c) => set_once(&mut given.quote, *c)?,
            CopyOption::Escape(c) => set_once(&mut given.escape, *c)?,
            CopyOption::ForceQuote(_) => return Err(unsupported("FORCE_QUOTE")),
            CopyOption::ForceNotNull(_) => return Err(unsupported("FORCE_NOT_NULL")),
            CopyOption::ForceNull(_) => return Err(unsupported("FORCE_NULL")),
            CopyOption::Encoding(name) => {
                if !(name.eq_ignore_ascii_case("utf8") || name.eq_ignore_ascii_case("utf-8")) {
                    return Err(CopyError::new(format!(
                        "COPY option ENCODING '{name}' is not supported; only UTF8 is"
                    )));
                }
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => set_once(&mut given.format, CopyFormat::Binary)?,
            CopyLegacyOption::Csv(csv_options) => {
                set_once(&mut given.format, CopyFormat::Csv)?;
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => set_once(&mut given.header, true)?,
                        CopyLegacyCsvOption::Quote(c) => set_once(&mut given.quote, *c)?,
                        CopyLegacyCsvOption::Escape(c) => set_once(&mut given.escape, *c)?,
                        CopyLegacyCsvOption::ForceQuote(_) => {
                            return Err(unsupported("FORCE QUOTE"));
                        }
                        CopyLegacyCsvOption::ForceNotNull(_) => {
                            return Err(unsupported("FORCE NOT NULL"));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => set_once(&mut given.delimiter, *c)?,
            CopyLegacyOption::Null(s) => set_once(&mut given.null, s.clone())?,
            CopyLegacyOption::Header => set_once(&mut given.header, true)?,
            other => return Err(unsupported(&other.to_string())),
        }
    }
    resolve_options(given)
}

fn one_byte(c: char, what: &str) -> Result<u8, CopyError> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(CopyError::new(format!(
            "COPY {what} must be a single one-byte character"
        )))
    }
}

/// Applies PostgreSQL's defaults and consistency checks (ProcessCopyOptions).
fn resolve_options(given: GivenOptions) -> Result<CopyOptions, CopyError> {
    let format = given.format.unwrap_or(CopyFormat::Text);
    let mut options = match format {
        CopyFormat::Text => CopyOptions::text(),
        CopyFormat::Csv => CopyOptions::csv(),
        CopyFormat::Binary => CopyOptions::binary(),
    };
    if format == CopyFormat::Binary {
        if given.delimiter.is_some() {
            return Err(CopyError::new("cannot specify DELIMITER in BINARY mode"));
        }
        if given.null.is_some() {
            return Err(CopyError::new("cannot specify NULL in BINARY mode"));
        }
        if given.header == Some(true) {
            return Err(CopyError::new("cannot specify HEADER in BINARY mode"));
        }
    }
    if format != CopyFormat::Csv {
        if given.quote.is_some() {
            return Err(CopyError::new("COPY QUOTE requires CSV mode"));
        }
        if given.escape.is_some() {
            return Err(CopyError::new("COPY ESCAPE requires CSV mode"));
        }
    }
    if let Some(c) = given.delimiter {
        options.delimiter = one_byte(c, "delimiter")?;
    }
    if let Some(null) = given.null {
        options.null = null;
    }
    if let Some(header) = given.header {
        options.header = header;
    }
    if let Some(c) = given.quote {
        options.quote = one_byte(c, "quote")?;
    }
    // ESCAPE defaults to whatever QUOTE resolved to.
    options.escape = match given.escape {
        Some(c) => one_byte(c, "escape")?,
        None => options.quote,
    };
    if format == CopyFormat::Binary {
        return Ok(options);
    }
    let delimiter = options.delimiter;
    if delimiter == b'\n' || delimiter == b'\r' {
        return Err(CopyError::new(
            "COPY delimiter cannot be newline or carriage return",
        ));
    }
    if options.null.contains(['\n', '\r']) {
        return Err(CopyError::new(
            "COPY null representation cannot use newline or carriage return",
        ));
    }
    // In text mode these characters would be read as part of a backslash escape sequence.
    if format == CopyFormat::Text && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter)
    {
        return Err(CopyError::new(format!(
            "COPY delimiter cannot be \"{}\"",
            char::from(delimiter)
        )));
    }
    if options.null.as_bytes().contains(&delimiter) {
        return Err(CopyError::new(
            "COPY delimiter character must not appear in the NULL specification",
        ));
    }
    if format == CopyFormat::Csv {
        if delimiter == options.quote {
            return Err(CopyError::new("COPY delimiter and quote must be different"));
        }
        if options.null.as_bytes().contains(&options.quote) {
            return Err(CopyError::new(
                "CSV quote character must not appear in the NULL specification",
            ));
        }
    }
    Ok(options)
}

/// Errors unless `options` can be used for `COPY ... TO STDOUT`.
pub fn check_copy_to(options: &CopyOptions) -> Result<(), CopyError> {
    if options.format == CopyFormat::Binary {
        return Err(CopyError::new("COPY TO STDOUT supports text and csv"));
    }
    Ok(())
}

/// Column types COPY FROM can decode into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
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
    fn pg_name(self) -> &'static str {
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
enum Cell {
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
type FieldRange = Option<(usize, usize)>;

/// The target columns and the rows decoded into them since the last batch.
struct Columns {
    fields: Vec<FieldRef>,
    targets: Vec<Target>,
    builders: Vec<ColumnBuilder>,
    /// The row being converted; appended to the builders only once every field parsed, so a
    /// bad value never leaves the columns with different lengths.
    cells: Vec<Cell>,
    rows: usize,
}

impl Columns {
    fn name(&self, col: usize) -> &str {
        self.fields
            .get(col)
            .map(|f| f.name().as_str())
            .unwrap_or("?")
    }

    fn null_cell(&self, col: usize, line: u64) -> Result<Cell, CopyError> {
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

    fn invalid_utf8(&self, col: usize, line: u64) -> CopyError {
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

    /// Converts one binary field from PostgreSQL's binary send format.
    fn binary_cell(
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
        let cell = match target {
            Target::Text => {
                std::str::from_utf8(bytes).map_err(|_| self.invalid_utf8(col, line))?;
                Some(Cell::Text(start, end))
            }
            Target::Int64 => be_int(bytes).map(Cell::Int64),
            Target::UInt64 => be_int(bytes)
                .and_then(|v| u64::try_from(v).ok())
                .map(Cell::UInt64),
            Target::Float64 => {
                let value = match bytes.len() {
                    8 => <[u8; 8]>::try_from(bytes).ok().map(f64::from_be_bytes),
                    4 => <[u8; 4]>::try_from(bytes)
                        .ok()
                        .map(|b| f64::from(f32::from_be_bytes(b))),
                    _ => None,
                };
                value.map(Cell::Float64)
            }
            Target::Boolean => match bytes {
                [b] => Some(Cell::Boolean(*b != 0)),
                _ => None,
            },
            Target::Timestamp => <[u8; 8]>::try_from(bytes)
                .ok()
                .map(i64::from_be_bytes)
                .and_then(pg_timestamp_to_unix_ns)
                .map(Cell::Int64),
        };
        cell.ok_or_else(|| {
            let name = self.name(col);
            CopyError::at_column(
                line,
                name,
                format!(
                    "incorrect binary data format for column \"{name}\" ({}): {} bytes",
                    target.pg_name(),
                    bytes.len()
                ),
            )
        })
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

    fn add_binary_row(
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

/// Where the binary decoder is in the `PGCOPY` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryState {
    Header,
    Tuples,
    Done,
}

const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and header-extension length.
const BINARY_HEADER_LEN: usize = 11 + 4 + 4;
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Days from 0001-01-01 (day 1 in chrono's count) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Decodes `COPY ... FROM STDIN` data, fed in chunks as CopyData messages arrive, into batches.
pub struct CopyDecoder {
    options: CopyOptions,
    schema: SchemaRef,
    columns: Columns,
    null: Vec<u8>,
    /// Received bytes not yet consumed; `start` is the first unconsumed one.
    buf: Vec<u8>,
    start: usize,
    /// Where the search for the end of the current row resumes, so a long row arriving in
    /// many small chunks is not rescanned from its beginning each time.
    scan: usize,
    /// CSV quote state at `scan`.
    in_quote: bool,
    last_was_escape: bool,
    /// Lines (text), records (csv) or tuples (binary) consumed, including a header.
    line: u64,
    rows_total: u64,
    header_pending: bool,
    binary: BinaryState,
    /// End of data seen (`\.`, binary trailer, or `finish`); later input is ignored.
    done: bool,
    /// The first error. The buffered input is in an unknown state after it, so every later
    /// `push` or `finish` reports it again.
    error: Option<CopyError>,
    /// Unescaped field bytes of the current text/csv row.
    arena: Vec<u8>,
    ranges: Vec<FieldRange>,
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

    /// Finds the next complete text line, returning its byte range without the newline. A
    /// backslash quotes the following byte, a newline included, as in PostgreSQL.
    fn next_text_line(&mut self) -> Option<(usize, usize)> {
        let buf = &self.buf;
        let mut i = self.scan;
        while i < buf.len() {
            match buf[i] {
                b'\\' => {
                    if i + 1 >= buf.len() {
                        // The escaped byte has not arrived yet; rescan from the backslash.
                        break;
                    }
                    i += 2;
                }
                b'\n' => {
                    let start = self.start;
                    self.start = i + 1;
                    self.scan = i + 1;
                    return Some((start, i));
                }
                _ => i += 1,
            }
        }
        self.scan = i;
        None
    }

    /// Finds the next complete CSV record (which may span lines inside quotes), tracking quote
    /// state the way PostgreSQL's CopyReadLineText does.
    fn next_csv_record(&mut self) -> Option<(usize, usize)> {
        let quote = self.options.quote;
        // An escape equal to the quote is just the quote toggling twice.
        let escape = (self.options.escape != quote).then_some(self.options.escape);
        let mut i = self.scan;
        while i < self.buf.len() {
            let c = self.buf[i];
            i += 1;
            if self.in_quote && Some(c) == escape {
                self.last_was_escape = !self.last_was_escape;
            }
            if c == quote && !self.last_was_escape {
                self.in_quote = !self.in_quote;
            }
            if Some(c) != escape {
                self.last_was_escape = false;
            }
            if c == b'\n' && !self.in_quote {
                let start = self.start;
                self.start = i;
                self.scan = i;
                self.last_was_escape = false;
                return Some((start, i - 1));
            }
        }
        self.scan = i;
        None
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

    /// Whether the carriage return at `cr` is quoted by a backslash (text format only).
    fn cr_is_escaped(&self, start: usize, cr: usize) -> bool {
        if self.options.format != CopyFormat::Text {
            return false;
        }
        let backslashes = self.buf[start..cr]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 1
    }

    fn decode_binary(&mut self) -> Result<(), CopyError> {
        loop {
            let avail = &self.buf[self.start..];
            match self.binary {
                BinaryState::Header => {
                    let sig_len = BINARY_SIGNATURE.len().min(avail.len());
                    if avail[..sig_len] != BINARY_SIGNATURE[..sig_len] {
                        return Err(CopyError::new("COPY file signature not recognized"));
                    }
                    if avail.len() < BINARY_HEADER_LEN {
                        return Ok(());
                    }
                    let flags = be_i32(avail, 11).unwrap_or(0);
                    let extension = be_i32(avail, 15).unwrap_or(0);
                    if flags & (1 << 16) != 0 {
                        return Err(CopyError::new("invalid COPY file header (WITH OIDS)"));
                    }
                    // Bits 17-31 are critical flags a reader must understand.
                    if (flags as u32) >> 17 != 0 {
                        return Err(CopyError::new(
                            "unrecognized critical flags in COPY file header",
                        ));
                    }
                    let Ok(extension) = usize::try_from(extension) else {
                        return Err(CopyError::new("invalid COPY file header (missing length)"));
                    };
                    let needed = BINARY_HEADER_LEN + extension;
                    if avail.len() < needed {
                        return Ok(());
                    }
                    self.start += needed;
                    self.binary = BinaryState::Tuples;
                }
                BinaryState::Tuples => {
                    let Some(count) = be_i16(avail, 0) else {
                        return Ok(());
                    };
                    if count == -1 {
                        self.start += 2;
                        self.binary = BinaryState::Done;
                        self.done = true;
                        if self.start < self.buf.len() {
                            return Err(CopyError::new("received copy data after EOF marker"));
                        }
                        return Ok(());
                    }
                    let line = self.line + 1;
                    let ncols = self.columns.fields.len();
                    if usize::try_from(count).ok() != Some(ncols) {
                        return Err(CopyError::at_line(
                            line,
                            format!("row field count is {count}, expected {ncols}"),
                        ));
                    }
                    // Locate every field first: a tuple is decoded only once it is complete.
                    self.ranges.clear();
                    let mut offset = 2usize;
                    for _ in 0..ncols {
                        let Some(len) = be_i32(avail, offset) else {
                            return Ok(());
                        };
                        offset += 4;
                        if len == -1 {
                            self.ranges.push(None);
                            continue;
                        }
                        let Ok(len) = usize::try_from(len) else {
                            return Err(CopyError::at_line(line, "invalid field size"));
                        };
                        if avail.len() - offset < len {
                            return Ok(());
                        }
                        self.ranges.push(Some((offset, offset + len)));
                        offset += len;
                    }
                    self.columns.add_binary_row(avail, &self.ranges, line)?;
                    self.line = line;
                    self.rows_total += 1;
                    self.start += offset;
                }
                BinaryState::Done => {
                    if !avail.is_empty() {
                        return Err(CopyError::new("received copy data after EOF marker"));
                    }
                    return Ok(());
                }
            }
        }
    }
}

fn be_i16(bytes: &[u8], at: usize) -> Option<i16> {
    let chunk = bytes.get(at..at.checked_add(2)?)?;
    <[u8; 2]>::try_from(chunk).ok().map(i16::from_be_bytes)
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(chunk).ok().map(i32::from_be_bytes)
}

/// int8, int4 or int2 in network byte order, so clients may send any integer width.
fn be_int(bytes: &[u8]) -> Option<i64> {
    match bytes.len() {
        8 => <[u8; 8]>::try_from(bytes).ok().map(i64::from_be_bytes),
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| i64::from(i32::from_be_bytes(b))),
        2 => <[u8; 2]>::try_from(bytes)
            .ok()
            .map(|b| i64::from(i16::from_be_bytes(b))),
        _ => None,
    }
}

/// Binary timestamps count microseconds from 2000-01-01; Eddy stores nanoseconds from 1970.
fn pg_timestamp_to_unix_ns(micros_since_2000: i64) -> Option<i64> {
    micros_since_2000
        .checked_add(PG_EPOCH_OFFSET_MICROS)?
        .checked_mul(1000)
}

/// Splits a text-format line on the delimiter and undoes backslash escapes into `arena`. A
/// field is NULL when its raw (still escaped) text equals the null string, as in PostgreSQL.
fn split_text(
    line: &[u8],
    delimiter: u8,
    null: &[u8],
    arena: &mut Vec<u8>,
    ranges: &mut Vec<FieldRange>,
) {
    arena.clear();
    ranges.clear();
    let len = line.len();
    let mut i = 0;
    loop {
        let raw_start = i;
        let out_start = arena.len();
        let mut found_delimiter = false;
        while i < len {
            let c = line[i];
            i += 1;
            if c == delimiter {
                found_delimiter = true;
                break;
            }
            if c != b'\\' {
                arena.push(c);
                continue;
            }
            // PostgreSQL drops a backslash that ends the line.
            if i >= len {
                break;
            }
            let c = line[i];
            i += 1;
            match c {
                b'0'..=b'7' => {
                    let mut value = u32::from(c - b'0');
                    for _ in 0..2 {
                        match line.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                value = value * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    // PostgreSQL keeps the low byte of an out-of-range escape like \777.
                    arena.push((value & 0xff) as u8);
                }
                b'x' => match line.get(i).and_then(|&d| hex_digit(d)) {
                    Some(high) => {
                        i += 1;
                        let mut value = high;
                        if let Some(low) = line.get(i).and_then(|&d| hex_digit(d)) {
                            value = value * 16 + low;
                            i += 1;
                        }
                        arena.push(value);
                    }
                    None => arena.push(b'x'),
                },
                b'b' => arena.push(0x08),
                b'f' => arena.push(0x0c),
                b'n' => arena.push(b'\n'),
                b'r' => arena.push(b'\r'),
                b't' => arena.push(b'\t'),
                b'v' => arena.push(0x0b),
                other => arena.push(other),
            }
        }
        let raw_end = if found_delimiter { i - 1 } else { i };
        if &line[raw_start..raw_end] == null {
            arena.truncate(out_start);
            ranges.push(None);
        } else {
            ranges.push(Some((out_start, arena.len())));
        }
        if !found_delimiter {
            return;
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a CSV record into unquoted fields in `arena`, following PostgreSQL's
/// CopyReadAttributesCSV: an unquoted field equal to the null string is NULL, a quoted one
/// never is.
fn split_csv(
    record: &[u8],
    options: &CopyOptions,
    null: &[u8],
    arena: &mut Vec<u8>,
    ranges: &mut Vec<FieldRange>,
) -> Result<(), &'static str> {
    let (delimiter, quote, escape) = (options.delimiter, options.quote, options.escape);
    arena.clear();
    ranges.clear();
    let len = record.len();
    let mut i = 0;
    loop {
        let raw_start = i;
        let out_start = arena.len();
        let mut saw_quote = false;
        let mut found_delimiter = false;
        while i < len {
            let c = record[i];
            i += 1;
            if c == delimiter {
                found_delimiter = true;
                break;
            }
            if c != quote {
                arena.push(c);
                continue;
            }
            saw_quote = true;
            loop {
                if i >= len {
                    return Err("unterminated CSV quoted field");
                }
                let c = record[i];
                i += 1;
                // Tested before the closing quote because escape and quote are usually equal.
                if c == escape
                    && let Some(&next) = record.get(i)
                    && (next == escape || next == quote)
                {
                    arena.push(next);
                    i += 1;
                    continue;
                }
                if c == quote {
                    break;
                }
                arena.push(c);
            }
        }
        let raw_end = if found_delimiter { i - 1 } else { i };
        if !saw_quote && &record[raw_start..raw_end] == null {
            arena.truncate(out_start);
            ranges.push(None);
        } else {
            ranges.push(Some((out_start, arena.len())));
        }
        if !found_delimiter {
            return Ok(());
        }
    }
}

/// float8 input: ordinary numbers plus `NaN`, `Infinity` and `inf` in any case, optionally
/// signed, with surrounding whitespace ignored; overflow is an error as in PostgreSQL.
fn parse_f64(s: &str) -> Option<f64> {
    let t = s.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let v: f64 = t.parse().ok()?;
    // The spelled-out forms were handled above, so a non-finite result here is an overflow.
    v.is_finite().then_some(v)
}

fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["t", "true", "y", "yes", "on", "1"];
    const FALSE: [&str; 6] = ["f", "false", "n", "no", "off", "0"];
    let t = s.trim();
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// A cursor over ASCII input for the timestamp parser.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// A decimal number of `min..=max` digits; consumes nothing when there are too few.
    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.pos;
        let mut value = 0i64;
        let mut count = 0;
        while count < max
            && let Some(c @ b'0'..=b'9') = self.peek()
        {
            value = value * 10 + i64::from(c - b'0');
            self.pos += 1;
            count += 1;
        }
        if count < min {
            self.pos = start;
            return None;
        }
        Some(value)
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fraction]]` (or with `T`) and an optional zone
/// (`Z`, `UTC`, `+HH`, `+HH:MM`, `-HHMM`) into nanoseconds since the Unix epoch, UTC.
pub fn parse_timestamp_ns(s: &str) -> Option<i64> {
    let mut p = Scanner {
        bytes: s.trim().as_bytes(),
        pos: 0,
    };
    let year = p.number(1, 6)?;
    if !p.eat(b'-') {
        return None;
    }
    let month = p.number(1, 2)?;
    if !p.eat(b'-') {
        return None;
    }
    let day = p.number(1, 2)?;
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )?;
    let days = i64::from(Datelike::num_days_from_ce(&date)) - UNIX_EPOCH_DAYS_FROM_CE;

    let mut seconds_of_day = 0i64;
    let mut nanos = 0i64;
    let mut offset_seconds = 0i64;
    if !p.at_end() {
        match p.peek() {
            Some(b' ' | b'T' | b't') => p.pos += 1,
            _ => return None,
        }
        p.skip_spaces();
        let hour = p.number(1, 2)?;
        if !p.eat(b':') {
            return None;
        }
        let minute = p.number(1, 2)?;
        let mut second = 0;
        if p.eat(b':') {
            second = p.number(1, 2)?;
            if p.eat(b'.') {
                let mut digits = 0u32;
                while let Some(c @ b'0'..=b'9') = p.peek() {
                    // Digits past nanoseconds cannot be stored; they are dropped.
                    if digits < 9 {
                        nanos = nanos * 10 + i64::from(c - b'0');
                        digits += 1;
                    }
                    p.pos += 1;
                }
                if digits == 0 {
                    return None;
                }
                nanos *= 10i64.pow(9 - digits);
            }
        }
        // PostgreSQL accepts 24:00:00 (the next midnight) and a leap second 60.
        if hour > 24 || minute > 59 || second > 60 {
            return None;
        }
        if hour == 24 && (minute != 0 || second != 0 || nanos != 0) {
            return None;
        }
        seconds_of_day = hour * 3600 + minute * 60 + second;
        p.skip_spaces();
        if !p.at_end() {
            offset_seconds = parse_zone(&mut p)?;
        }
    }
    if !p.at_end() {
        return None;
    }
    days.checked_mul(86_400)?
        .checked_add(seconds_of_day)?
        .checked_sub(offset_seconds)?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// A zone suffix as seconds east of UTC.
fn parse_zone(p: &mut Scanner<'_>) -> Option<i64> {
    let rest = p.bytes.get(p.pos..)?;
    if rest.eq_ignore_ascii_case(b"z") || rest.eq_ignore_ascii_case(b"utc") {
        p.pos = p.bytes.len();
        return Some(0);
    }
    let sign = match p.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    p.pos += 1;
    let hours = p.number(1, 2)?;
    let minutes = if p.eat(b':') {
        p.number(2, 2)?
    } else {
        p.number(2, 2).unwrap_or(0)
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Appends the CSV (or text) header line naming the schema's columns, if `options.header`.
pub fn encode_header(schema: &Schema, options: &CopyOptions, out: &mut Vec<u8>) {
    if !options.header {
        return;
    }
    let single = schema.fields().len() == 1;
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(options.delimiter);
        }
        match options.format {
            CopyFormat::Csv => push_csv_value(out, field.name(), options, single),
            CopyFormat::Text => push_text_value(out, field.name(), options.delimiter),
            CopyFormat::Binary => {}
        }
    }
    out.push(b'\n');
}

/// Appends one line per row of `batch` in text or csv format (see [`check_copy_to`]; binary
/// appends nothing).
pub fn encode_rows(batch: &RecordBatch, options: &CopyOptions, out: &mut Vec<u8>) {
    if options.format == CopyFormat::Binary {
        return;
    }
    let columns = batch.columns();
    let single = columns.len() == 1;
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(options.delimiter);
            }
            match format_value(column.as_ref(), row) {
                None => out.extend_from_slice(options.null.as_bytes()),
                Some(value) => match options.format {
                    CopyFormat::Csv => push_csv_value(out, &value, options, single),
                    _ => push_text_value(out, &value, options.delimiter),
                },
            }
        }
        out.push(b'\n');
    }
}

/// PostgreSQL's CopyAttributeOutText escaping.
fn push_text_value(out: &mut Vec<u8>, value: &str, delimiter: u8) {
    for &c in value.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            c if c == delimiter => {
                out.push(b'\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// PostgreSQL's CopyAttributeOutCSV: quote a value that would otherwise read back differently
/// (it equals the null string, contains the delimiter, quote or a line break, or is `\.` alone
/// on a line).
fn push_csv_value(out: &mut Vec<u8>, value: &str, options: &CopyOptions, single_column: bool) {
    let bytes = value.as_bytes();
    let needs_quotes = value == options.null
        || (single_column && value == "\\.")
        || bytes
            .iter()
            .any(|&c| c == options.delimiter || c == options.quote || c == b'\n' || c == b'\r');
    if !needs_quotes {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(options.quote);
    for &c in bytes {
        if c == options.quote || c == options.escape {
            out.push(options.escape);
        }
        out.push(c);
    }
    out.push(options.quote);
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Array, AsArray, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{
        Field, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type,
    };
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    const NS_2024: i64 = 1_704_067_200_000_000_000;

    fn field(name: &str, data_type: DataType) -> FieldRef {
        Arc::new(Field::new(name, data_type, true))
    }

    fn five_fields() -> Vec<FieldRef> {
        vec![
            field("name", DataType::Utf8),
            field("temp", DataType::Float64),
            field("n", DataType::Int64),
            field("ok", DataType::Boolean),
            field("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ]
    }

    fn parse_options(sql: &str) -> Result<CopyOptions, CopyError> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        match statements.first() {
            Some(Statement::Copy {
                options,
                legacy_options,
                ..
            }) => copy_options(options, legacy_options),
            other => panic!("not a COPY: {other:?}"),
        }
    }

    fn decode_all(
        options: CopyOptions,
        fields: Vec<FieldRef>,
        data: &[u8],
        chunk: usize,
    ) -> RecordBatch {
        let mut decoder = CopyDecoder::try_new(options, fields).expect("supported types");
        for piece in data.chunks(chunk) {
            decoder.push(piece).expect("push");
        }
        decoder.finish().expect("finish").expect("rows")
    }

    fn decode_err(options: CopyOptions, fields: Vec<FieldRef>, data: &[u8]) -> CopyError {
        let mut decoder = CopyDecoder::try_new(options, fields).expect("supported types");
        match decoder.push(data) {
            Err(e) => e,
            Ok(()) => decoder.finish().expect_err("should fail"),
        }
    }

    #[test]
    fn options_from_statements() {
        let o =
            parse_options("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')")
                .expect("valid");
        assert_eq!(o.format, CopyFormat::Csv);
        assert_eq!(o.delimiter, b';');
        assert!(o.header);
        assert_eq!(o.null, "");
        assert_eq!((o.quote, o.escape), (b'"', b'"'));

        let o = parse_options("COPY t FROM STDIN WITH CSV HEADER").expect("valid");
        assert_eq!(o.format, CopyFormat::Csv);
        assert!(o.header);

        let o = parse_options("COPY t FROM STDIN WITH BINARY").expect("valid");
        assert_eq!(o.format, CopyFormat::Binary);

        let o = parse_options("COPY t FROM STDIN WITH DELIMITER '|' NULL 'nil'").expect("valid");
        assert_eq!(o.format, CopyFormat::Text);
        assert_eq!(o.delimiter, b'|');
        assert_eq!(o.null, "nil");

        let o = parse_options("COPY t FROM STDIN").expect("valid");
        assert_eq!(o, CopyOptions::text());

        let o = parse_options("COPY t FROM STDIN WITH (FORMAT csv, QUOTE '''', ESCAPE '!')")
            .expect("valid");
        assert_eq!((o.quote, o.escape), (b'\'', b'!'));

        let e = parse_options("COPY t TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (a))")
            .expect_err("unsupported");
        assert!(e.message.contains("FORCE_QUOTE"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (ENCODING 'LATIN1')").expect_err("encoding");
        assert!(e.message.contains("ENCODING"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (FORMAT xml)").expect_err("format");
        assert!(e.message.contains("xml"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (QUOTE '\"')").expect_err("quote in text");
        assert!(e.message.contains("CSV"), "{e}");
        let e = parse_options("COPY t FROM STDIN WITH (FORMAT csv, FORMAT text)").expect_err("dup");
        assert!(e.message.contains("redundant"), "{e}");
        assert!(parse_options("COPY t FROM STDIN WITH (ENCODING 'utf8')").is_ok());
    }

    #[test]
    fn text_escapes_and_nulls_byte_by_byte() {
        let data = b"a\\tb\\\\c\t1.5\t-3\tt\t2024-01-01 00:00:00\n\
                     \\N\t\\N\t\\N\t\\N\t\\N\r\n\
                     x\\101\\x42\\n\tNaN\t+7\tno\t2024-01-01T02:00:00+02:00\n\
                     line\\\nbreak\t-Infinity\t 8 \tON\t2024-01-01 00:00:00.5Z";
        let batch = decode_all(CopyOptions::text(), five_fields(), data, 1);
        assert_eq!(batch.num_rows(), 4);
        let names = batch.column(0).as_string::<i32>();
        assert_eq!(names.value(0), "a\tb\\c");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "xAB\n");
        assert_eq!(names.value(3), "line\nbreak");
        let temps = batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(temps.value(0), 1.5);
        assert!(temps.is_null(1));
        assert!(temps.value(2).is_nan());
        assert_eq!(temps.value(3), f64::NEG_INFINITY);
        let ns = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!((ns.value(0), ns.value(2), ns.value(3)), (-3, 7, 8));
        let oks = batch.column(3).as_boolean();
        assert!(oks.value(0) && !oks.value(2) && oks.value(3) && oks.is_null(1));
        let ts = batch.column(4).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(0), NS_2024);
        assert!(ts.is_null(1));
        assert_eq!(ts.value(2), NS_2024);
        assert_eq!(ts.value(3), NS_2024 + 500_000_000);
    }

    #[test]
    fn text_octal_escape_and_custom_null() {
        let mut options = CopyOptions::text();
        options.delimiter = b'|';
        options.null = "nil".to_string();
        let fields = vec![field("a", DataType::Utf8), field("b", DataType::Utf8)];
        let batch = decode_all(options, fields, b"\\101\\|x|nil\n\\N|\n", 3);
        let a = batch.column(0).as_string::<i32>();
        let b = batch.column(1).as_string::<i32>();
        assert_eq!(a.value(0), "A|x");
        assert!(b.is_null(0));
        // With a custom null string, \N is just an escaped N.
        assert_eq!(a.value(1), "N");
        assert_eq!(b.value(1), "");
    }

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
    fn csv_quoted_newlines_and_header() {
        let mut options = CopyOptions::csv();
        options.header = true;
        let fields = vec![
            field("name", DataType::Utf8),
            field("temp", DataType::Float64),
        ];
        let data = b"name,temp\r\n\"multi\nline, with comma\",1\n\"\",\n,2\r\n\"say \"\"hi\"\"\",3";
        for chunk in [1, 3, 1000] {
            let batch = decode_all(options.clone(), fields.clone(), data, chunk);
            assert_eq!(batch.num_rows(), 4);
            let names = batch.column(0).as_string::<i32>();
            let temps = batch.column(1).as_primitive::<Float64Type>();
            assert_eq!(names.value(0), "multi\nline, with comma");
            assert_eq!(temps.value(0), 1.0);
            assert!(names.is_valid(1));
            assert_eq!(names.value(1), "");
            assert!(temps.is_null(1));
            assert!(names.is_null(2));
            assert_eq!(temps.value(2), 2.0);
            assert_eq!(names.value(3), "say \"hi\"");
        }
    }

    #[test]
    fn csv_distinct_escape() {
        let mut options = CopyOptions::csv();
        options.escape = b'\\';
        let fields = vec![field("a", DataType::Utf8), field("b", DataType::Int64)];
        let batch = decode_all(options, fields, b"\"a\\\"b\\\\\",1\n", 1);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "a\"b\\");
    }

    #[test]
    fn csv_errors_count_records() {
        let mut options = CopyOptions::csv();
        options.header = true;
        let fields = vec![
            field("name", DataType::Utf8),
            field("temp", DataType::Float64),
        ];
        let e = decode_err(
            options.clone(),
            fields.clone(),
            b"h1,h2\n\"a\nb\",1\nx,abc\n",
        );
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "invalid input for column \"temp\" (double precision): \"abc\", line 3"
        );
        let e = decode_err(options, fields, b"h1,h2\n\"open,1\n");
        assert_eq!(e.to_string(), "unterminated CSV quoted field, line 2");
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

    fn binary_value(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    fn binary_null(out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    #[test]
    fn binary_round_trip() {
        let mut data = Vec::new();
        data.extend_from_slice(BINARY_SIGNATURE);
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(b"skip");
        // Tuple 1: int8, float4, bool, text, timestamp at the PostgreSQL epoch.
        data.extend_from_slice(&5i16.to_be_bytes());
        binary_value(&mut data, &42i64.to_be_bytes());
        binary_value(&mut data, &2.5f32.to_be_bytes());
        binary_value(&mut data, &[1]);
        binary_value(&mut data, "héllo".as_bytes());
        binary_value(&mut data, &0i64.to_be_bytes());
        // Tuple 2: int4, float8, NULLs.
        data.extend_from_slice(&5i16.to_be_bytes());
        binary_value(&mut data, &(-7i32).to_be_bytes());
        binary_value(&mut data, &0.25f64.to_be_bytes());
        binary_null(&mut data);
        binary_null(&mut data);
        binary_value(&mut data, &1_000_000i64.to_be_bytes());
        data.extend_from_slice(&(-1i16).to_be_bytes());

        let fields = vec![
            field("n", DataType::Int64),
            field("temp", DataType::Float64),
            field("ok", DataType::Boolean),
            field("name", DataType::Utf8),
            field("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ];
        for chunk in [1, 7, data.len()] {
            let batch = decode_all(CopyOptions::binary(), fields.clone(), &data, chunk);
            assert_eq!(batch.num_rows(), 2);
            let n = batch.column(0).as_primitive::<Int64Type>();
            assert_eq!((n.value(0), n.value(1)), (42, -7));
            let t = batch.column(1).as_primitive::<Float64Type>();
            assert_eq!((t.value(0), t.value(1)), (2.5, 0.25));
            assert!(batch.column(2).as_boolean().value(0));
            assert!(batch.column(2).is_null(1));
            let names = batch.column(3).as_string::<i32>();
            assert_eq!(names.value(0), "héllo");
            assert!(names.is_null(1));
            let ts = batch.column(4).as_primitive::<TimestampNanosecondType>();
            assert_eq!(ts.value(0), 946_684_800_000_000_000);
            assert_eq!(ts.value(1), 946_684_801_000_000_000);
        }
    }

    #[test]
    fn binary_errors() {
        let fields = vec![field("u", DataType::UInt64)];
        let e = decode_err(CopyOptions::binary(), fields.clone(), b"NOTPGCOPY");
        assert!(e.message.contains("signature"), "{e}");

        let mut data = Vec::new();
        data.extend_from_slice(BINARY_SIGNATURE);
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&1i16.to_be_bytes());
        binary_value(&mut data, &(-5i64).to_be_bytes());
        let e = decode_err(CopyOptions::binary(), fields.clone(), &data);
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("\"u\""), "{e}");

        let mut data = Vec::new();
        data.extend_from_slice(BINARY_SIGNATURE);
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&2i16.to_be_bytes());
        let e = decode_err(CopyOptions::binary(), fields.clone(), &data);
        assert_eq!(e.to_string(), "row field count is 2, expected 1, line 1");

        // A truncated tuple is an error at CopyDone.
        let mut data = Vec::new();
        data.extend_from_slice(BINARY_SIGNATURE);
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&[0; 3]);
        let e = decode_err(CopyOptions::binary(), fields.clone(), &data);
        assert!(e.message.contains("unexpected EOF"), "{e}");

        // Without a trailer, input ending on a tuple boundary is fine.
        let mut data = Vec::new();
        data.extend_from_slice(BINARY_SIGNATURE);
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&1i16.to_be_bytes());
        binary_value(&mut data, &9i64.to_be_bytes());
        let batch = decode_all(CopyOptions::binary(), fields, &data, 5);
        assert_eq!(batch.column(0).as_primitive::<UInt64Type>().value(0), 9);
    }

    #[test]
    fn timestamps_with_offsets() {
        let cases: &[(&str, i64)] = &[
            ("2024-01-01", NS_2024),
            ("2024-01-01 00:00:00", NS_2024),
            ("2024-01-01T00:00:00Z", NS_2024),
            ("2024-01-01 02:00:00+02", NS_2024),
            ("2024-01-01 02:30:00+02:30", NS_2024),
            ("2023-12-31 19:00:00-0500", NS_2024),
            ("2023-12-31 23:00:00 -01:00", NS_2024),
            ("2024-01-01 00:00:00 UTC", NS_2024),
            ("  2024-01-01 00:00  ", NS_2024),
            ("2023-12-31 24:00:00", NS_2024),
            ("2024-01-01 00:00:00.123456789", NS_2024 + 123_456_789),
            ("2024-01-01 00:00:00.1234567891", NS_2024 + 123_456_789),
            ("2024-01-01T00:00:01.5+00:00", NS_2024 + 1_500_000_000),
            ("1969-12-31 23:59:59", -1_000_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp_ns(text), Some(*want), "{text}");
        }
        for bad in [
            "",
            "1700000000",
            "2024-13-01",
            "2024-02-30",
            "2024-01-01 25:00:00",
            "2024-01-01 24:00:01",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00+",
            "2024-01-01 00:00:00 junk",
            "3000-01-01",
        ] {
            assert_eq!(parse_timestamp_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_f64(" 1.5 "), Some(1.5));
        assert_eq!(parse_f64("INF"), Some(f64::INFINITY));
        assert_eq!(parse_f64("-infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_f64("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_f64("1e400"), None);
        assert_eq!(parse_f64("abc"), None);
        for t in ["t", "TRUE", " yes ", "On", "1", "y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["f", "False", "no", "OFF", "0", "N"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("2"), None);
    }

    fn sample_batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]));
        let names = StringArray::from(vec![Some("a\tb\\c\nd"), None, Some(""), Some("x,\"y\"")]);
        let ns = Int64Array::from(vec![Some(1), Some(2), None, Some(4)]);
        let ts =
            TimestampNanosecondArray::from(vec![Some(NS_2024), None, Some(NS_2024 + 1_500), None]);
        RecordBatch::try_new(schema, vec![Arc::new(names), Arc::new(ns), Arc::new(ts)])
            .expect("valid batch")
    }

    #[test]
    fn encode_text() {
        let batch = sample_batch();
        let mut options = CopyOptions::text();
        options.header = true;
        let mut out = Vec::new();
        check_copy_to(&options).expect("text is fine");
        encode_header(&batch.schema(), &options, &mut out);
        encode_rows(&batch, &options, &mut out);
        let want = "name\tn\tts\n\
                    a\\tb\\\\c\\nd\t1\t2024-01-01 00:00:00\n\
                    \\N\t2\t\\N\n\
                    \t\\N\t2024-01-01 00:00:00.000002\n\
                    x,\"y\"\t4\t\\N\n";
        assert_eq!(String::from_utf8(out).expect("utf8"), want);
    }

    #[test]
    fn encode_csv() {
        let batch = sample_batch();
        let mut options = CopyOptions::csv();
        options.header = true;
        let mut out = Vec::new();
        encode_header(&batch.schema(), &options, &mut out);
        encode_rows(&batch, &options, &mut out);
        let want = "name,n,ts\n\
                    \"a\tb\\c\nd\",1,2024-01-01 00:00:00\n\
                    ,2,\n\
                    \"\",,2024-01-01 00:00:00.000002\n\
                    \"x,\"\"y\"\"\",4,\n";
        assert_eq!(String::from_utf8(out).expect("utf8"), want);

        // A lone \. in a one-column output must be quoted so it does not end the data.
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let one = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["\\."]))])
            .expect("valid batch");
        let mut out = Vec::new();
        encode_rows(&one, &CopyOptions::csv(), &mut out);
        assert_eq!(out, b"\"\\.\"\n");

        assert!(check_copy_to(&CopyOptions::binary()).is_err());
    }

    #[test]
    fn encoded_output_reads_back() {
        let batch = sample_batch();
        let fields: Vec<FieldRef> = batch.schema().fields().iter().cloned().collect();
        for options in [CopyOptions::text(), CopyOptions::csv()] {
            let mut out = Vec::new();
            encode_rows(&batch, &options, &mut out);
            let back = decode_all(options, fields.clone(), &out, 2);
            let names = back.column(0).as_string::<i32>();
            let original = batch.column(0).as_string::<i32>();
            for row in 0..batch.num_rows() {
                assert_eq!(names.is_null(row), original.is_null(row));
                if original.is_valid(row) {
                    assert_eq!(names.value(row), original.value(row));
                }
            }
            // Output keeps microseconds, so 1.5 µs reads back rounded to 2 µs.
            let ts = back.column(2).as_primitive::<TimestampNanosecondType>();
            assert_eq!(ts.value(2), NS_2024 + 2_000);
        }
    }
}
