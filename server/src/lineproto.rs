//! InfluxDB line protocol to Arrow: parses a request body into one columnar batch per table.
//!
//! Each line is parsed completely and checked against the column types known so far (the
//! catalog's, then those seen earlier in the request) before any of it is appended, so a bad
//! line is rejected whole with its line number and reason while good lines go on. Lines from
//! one producer usually repeat the same keys in the same order; the builder remembers the
//! previous line's column order and only falls back to a hash lookup when a key differs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampNanosecondArray, UInt64Builder,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::schema::time_data_type;
use eddy_storage::{Catalog, ColumnDef, ColumnKind, DEFAULT_TIME_COLUMN, FieldType, TableSchema};

/// Longest accepted line, in bytes.
pub const LINE_BYTES_MAX: usize = 1024 * 1024;

/// Unit of the timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (default).
    Nanosecond,
    /// Microseconds.
    Microsecond,
    /// Milliseconds.
    Millisecond,
    /// Seconds.
    Second,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
}

impl Precision {
    /// Parses the `precision` parameter of the InfluxDB write APIs.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" | "nanosecond" => Precision::Nanosecond,
            "u" | "us" | "µ" | "µs" | "microsecond" => Precision::Microsecond,
            "ms" | "millisecond" => Precision::Millisecond,
            "s" | "second" => Precision::Second,
            "m" | "minute" => Precision::Minute,
            "h" | "hour" => Precision::Hour,
            _ => return None,
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line: usize,
    /// Why it was rejected.
    pub message: String,
}

/// The rows of one table parsed from a request.
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

/// The outcome of parsing a request body.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Rows per table, in order of first appearance.
    pub tables: Vec<TableRows>,
    /// Rejected lines, in order.
    pub errors: Vec<LineError>,
    /// Number of lines accepted.
    pub lines_ok: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(&'a str),
    EscapedStr(&'a str),
}

impl Value<'_> {
    fn field_type(&self) -> FieldType {
        match self {
            Value::Float(_) => FieldType::Float,
            Value::Int(_) => FieldType::Integer,
            Value::UInt(_) => FieldType::UInteger,
            Value::Bool(_) => FieldType::Boolean,
            Value::Str(_) | Value::EscapedStr(_) => FieldType::String,
        }
    }
}

#[derive(Debug)]
struct Line<'a> {
    measurement: Cow<'a, str>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, Value<'a>)>,
    time: Option<i64>,
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

    fn add(&mut self, line: &Line, time: i64) -> Result<(), String> {
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
        self.times.push(time);
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

/// Parses a whole request body. `now` is the time given to lines without a timestamp.
pub fn parse(body: &[u8], precision: Precision, now: i64, catalog: &Catalog) -> Parsed {
    let mut out = Parsed::default();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut builders: Vec<TableBuilder> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut lines_of: Vec<Vec<usize>> = Vec::new();
    for (idx, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let trimmed = trim_start(raw);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        let fail = |message: String| LineError {
            line: line_no,
            message,
        };
        if raw.len() > LINE_BYTES_MAX {
            out.errors.push(fail(format!(
                "line is {} bytes; the maximum is {LINE_BYTES_MAX}",
                raw.len()
            )));
            continue;
        }
        let text = match std::str::from_utf8(trimmed) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(fail(format!("invalid UTF-8: {e}")));
                continue;
            }
        };
        let line = match parse_line(text) {
            Ok(l) => l,
            Err(m) => {
                out.errors.push(fail(m));
                continue;
            }
        };
        let time = match line.time {
            Some(t) => match t.checked_mul(precision.nanos()) {
                Some(t) => t,
                None => {
                    out.errors.push(fail(format!(
                        "timestamp {t} is out of range for precision {precision:?}"
                    )));
                    continue;
                }
            },
            None => now,
        };
        let ti = match by_name.get(line.measurement.as_ref()) {
            Some(&i) => i,
            None => {
                let name = line.measurement.to_string();
                if let Err(r) = eddy_storage::schema::validate_name(&name) {
                    out.errors.push(fail(format!("measurement: {r}")));
                    continue;
                }
                builders.push(TableBuilder::new(catalog.get(&name)));
                by_name.insert(name.clone(), builders.len() - 1);
                names.push(name);
                lines_of.push(Vec::new());
                builders.len() - 1
            }
        };
        match builders[ti].add(&line, time) {
            Ok(()) => {
                lines_of[ti].push(line_no);
                out.lines_ok += 1;
            }
            Err(m) => out.errors.push(fail(m)),
        }
    }
    for ((builder, table), lines) in builders.into_iter().zip(names).zip(lines_of) {
        if lines.is_empty() {
            continue;
        }
        out.tables.push(TableRows {
            table,
            columns: builder.column_defs(),
            lines,
            builder,
        });
    }
    out
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Index of the first unescaped byte of `stops` at or after `from`, and whether a backslash
/// was seen on the way.
fn scan(s: &[u8], from: usize, stops: &[u8]) -> (usize, bool) {
    let mut i = from;
    let mut escaped = false;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' && i + 1 < s.len() {
            escaped = true;
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            return (i, escaped);
        }
        i += 1;
    }
    (s.len(), escaped)
}

fn unescape<'a>(s: &'a str, escaped: bool, specials: &[u8]) -> Cow<'a, str> {
    if !escaped {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && specials.contains(&b[i + 1]) {
            out.push_str(&s[start..i]);
            start = i + 1;
            i += 2;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[start..]);
    Cow::Owned(out)
}

fn unescape_string(s: &str) -> String {
    unescape(s, true, b"\"\\").into_owned()
}

fn parse_line(text: &str) -> Result<Line<'_>, String> {
    let s = text.as_bytes();
    // Measurement.
    let (m_end, m_esc) = scan(s, 0, b", ");
    if m_end == 0 {
        return Err("missing measurement".into());
    }
    let measurement = unescape(&text[..m_end], m_esc, b", \\");
    let mut pos = m_end;
    let mut tags = Vec::new();
    if pos < s.len() && s[pos] == b',' {
        loop {
            pos += 1;
            let (k_end, k_esc) = scan(s, pos, b"=, ");
            if k_end == pos {
                return Err(format!("empty tag key at column {}", pos + 1));
            }
            if k_end >= s.len() || s[k_end] != b'=' {
                return Err(format!(
                    "tag key \"{}\" has no '=' and value at column {}",
                    &text[pos..k_end],
                    k_end + 1
                ));
            }
            let key = unescape(&text[pos..k_end], k_esc, b",= \\");
            let v_start = k_end + 1;
            let (v_end, v_esc) = scan(s, v_start, b", =");
            if v_end < s.len() && s[v_end] == b'=' {
                return Err(format!(
                    "unescaped '=' in value of tag \"{key}\" at column {}",
                    v_end + 1
                ));
            }
            if v_end == v_start {
                return Err(format!("tag \"{key}\" has an empty value"));
            }
            let value = unescape(&text[v_start..v_end], v_esc, b",= \\");
            if key == DEFAULT_TIME_COLUMN {
                return Err("\"time\" is reserved and cannot be a tag key".into());
            }
            tags.push((key, value));
            pos = v_end;
            if pos >= s.len() || s[pos] == b' ' {
                break;
            }
        }
    }
    if pos >= s.len() {
        return Err("missing fields".into());
    }
    // One or more spaces separate measurement+tags from fields.
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let mut fields = Vec::new();
    loop {
        let (k_end, k_esc) = scan(s, pos, b"=, ");
        if k_end == pos {
            return Err(format!("empty field key at column {}", pos + 1));
        }
        if k_end >= s.len() || s[k_end] != b'=' {
            return Err(format!(
                "field \"{}\" has no '=' and value at column {}",
                &text[pos..k_end],
                k_end + 1
            ));
        }
        let key = unescape(&text[pos..k_end], k_esc, b",= \\");
        if key == DEFAULT_TIME_COLUMN {
            return Err("\"time\" is reserved and cannot be a field key".into());
        }
        let v_start = k_end + 1;
        let (value, v_end) = if v_start < s.len() && s[v_start] == b'"' {
            let mut i = v_start + 1;
            let mut esc = false;
            loop {
                if i >= s.len() {
                    return Err(format!("unterminated string value of field \"{key}\""));
                }
                match s[i] {
                    b'\\' if i + 1 < s.len() => {
                        esc = true;
                        i += 2;
                    }
                    b'"' => break,
                    _ => i += 1,
                }
            }
            let inner = &text[v_start + 1..i];
            let v = if esc {
                Value::EscapedStr(inner)
            } else {
                Value::Str(inner)
            };
            (v, i + 1)
        } else {
            let (v_end, _) = scan(s, v_start, b", ");
            let raw = &text[v_start..v_end];
            (
                parse_value(raw).map_err(|m| format!("field \"{key}\": {m}"))?,
                v_end,
            )
        };
        fields.push((key, value));
        pos = v_end;
        if pos >= s.len() || s[pos] == b' ' {
            break;
        }
        if s[pos] != b',' {
            return Err(format!(
                "unexpected character after value at column {}",
                pos + 1
            ));
        }
        pos += 1;
    }
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let time = if pos < s.len() {
        let ts = text[pos..].trim_end();
        Some(ts.parse::<i64>().map_err(|_| {
            format!(
                "invalid timestamp \"{ts}\" at column {}: expected an integer",
                pos + 1
            )
        })?)
    } else {
        None
    };
    Ok(Line {
        measurement,
        tags,
        fields,
        time,
    })
}

fn parse_value(raw: &str) -> Result<Value<'static>, String> {
    if raw.is_empty() {
        return Err("missing value".into());
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(n) = raw.strip_suffix('i') {
        return n
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("invalid integer \"{raw}\""));
    }
    if let Some(n) = raw.strip_suffix('u') {
        return n
            .parse::<u64>()
            .map(Value::UInt)
            .map_err(|_| format!("invalid unsigned integer \"{raw}\""));
    }
    let first = raw.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Err(format!(
            "invalid value \"{raw}\": strings must be double-quoted"
        ));
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Float(v)),
        _ => Err(format!("invalid float \"{raw}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_types_and_escapes() {
        let l = parse_line(r#"my\ meas,t\=a=x\,y\ z f=1.5,i=-3i,u=7u,b=t,s="a \"q\" \\ b" 123"#)
            .unwrap();
        assert_eq!(l.measurement, "my meas");
        assert_eq!(l.tags[0].0, "t=a");
        assert_eq!(l.tags[0].1, "x,y z");
        assert_eq!(l.fields[0].1, Value::Float(1.5));
        assert_eq!(l.fields[1].1, Value::Int(-3));
        assert_eq!(l.fields[2].1, Value::UInt(7));
        assert_eq!(l.fields[3].1, Value::Bool(true));
        match l.fields[4].1 {
            Value::EscapedStr(s) => assert_eq!(unescape_string(s), r#"a "q" \ b"#),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.time, Some(123));
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        assert!(parse_line("m").unwrap_err().contains("missing fields"));
        assert!(parse_line("m f=abc").unwrap_err().contains("double-quoted"));
        assert!(
            parse_line("m f=1 notatime")
                .unwrap_err()
                .contains("invalid timestamp")
        );
        assert!(
            parse_line("m f=\"open")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(parse_line("m,t f=1").unwrap_err().contains("no '='"));
        assert!(
            parse_line("m f=1.5i")
                .unwrap_err()
                .contains("invalid integer")
        );
        assert!(parse_line("m f=1i2").unwrap_err().contains("invalid float"));
    }
}
