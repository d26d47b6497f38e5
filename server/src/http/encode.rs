//! The result formats of `/api/v3/query_sql`: JSON, JSON lines, CSV, Arrow IPC stream and
//! Parquet are encoded one record batch at a time, so a result of any size streams out in
//! memory bounded by a batch (a row group for Parquet); the pretty table is the one format that
//! needs every row first, so it is limited to [`PRETTY_ROWS_MAX`] rows.
//!
//! Each encoder writes into a `Vec<u8>` it owns and hands back what that buffer holds after
//! every batch; the Arrow writers keep their state (the JSON array's commas, the CSV header,
//! the IPC dictionaries, the Parquet row groups and footer offsets) across those hand-offs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::Writer as JsonWriter;
use datafusion::arrow::json::writer::{JsonArray, JsonFormat, LineDelimited};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use eddy_query::{ErrorKind, QueryError};

/// Most rows the `pretty` format prints: the table is laid out only once every row is known,
/// so the rows are held in memory; larger results are refused.
pub(super) const PRETTY_ROWS_MAX: usize = 100_000;

/// Most rows in one Parquet row group: a row group is held in memory until it is complete, so
/// this bounds what a Parquet response holds (with [`PARQUET_ROW_GROUP_BYTES_MAX`]).
pub(super) const PARQUET_ROW_GROUP_ROWS_MAX: usize = 65_536;

/// Most encoded bytes in one Parquet row group, for rows wide enough that
/// [`PARQUET_ROW_GROUP_ROWS_MAX`] of them would be large.
pub(super) const PARQUET_ROW_GROUP_BYTES_MAX: usize = 64 << 20;

/// A result format of the query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// A JSON array of row objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one line per row.
    Csv,
    /// Arrow's text table.
    Pretty,
    /// A Parquet file.
    Parquet,
    /// The Arrow IPC stream format.
    Arrow,
}

impl Format {
    /// Every format, in the order errors list them.
    const ALL: [Format; 6] = [
        Format::Json,
        Format::Jsonl,
        Format::Csv,
        Format::Pretty,
        Format::Parquet,
        Format::Arrow,
    ];

    /// The name the `format` parameter gives.
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Pretty => "pretty",
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }

    /// The `Content-Type` of a response in this format.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv",
            Format::Pretty => "text/plain; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    /// The format a `format` parameter names, in any case.
    fn parse(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The format of the first media type of an `Accept` header that is one of the formats'
    /// (quality values are not weighed); `None` for any other header, `*/*` included.
    fn from_accept(accept: &str) -> Option<Format> {
        accept.split(',').find_map(|item| {
            let media = item.split(';').next().unwrap_or("").trim();
            let media = media.to_ascii_lowercase();
            match media.as_str() {
                "application/json" => Some(Format::Json),
                "application/jsonl" | "application/x-ndjson" => Some(Format::Jsonl),
                "text/csv" => Some(Format::Csv),
                "text/plain" => Some(Format::Pretty),
                "application/vnd.apache.parquet" => Some(Format::Parquet),
                "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
                _ => None,
            }
        })
    }

    /// The format a request asks for: its `format` parameter, else its `Accept` header, else
    /// JSON. The error lists the valid names.
    pub(super) fn of_request(format: Option<&str>, headers: &HeaderMap) -> Result<Format, String> {
        match format.filter(|f| !f.trim().is_empty()) {
            Some(name) => Format::parse(name).ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format \"{name}\": use one of {}", names.join(", "))
            }),
            None => Ok(headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .and_then(Format::from_accept)
                .unwrap_or(Format::Json)),
        }
    }
}

/// Encodes a result batch by batch.
pub(super) trait Encoder: Send {
    /// The bytes `batch` adds to the response (possibly none yet: a Parquet row group is sent
    /// when it is complete, the pretty table at the end).
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError>;

    /// The bytes that end the response (a closing bracket, a footer, the pretty table).
    fn finish(&mut self) -> Result<Bytes, QueryError>;
}

/// An encoder of `format` for batches of `schema`.
pub(super) fn encoder(format: Format, schema: &SchemaRef) -> Result<Box<dyn Encoder>, QueryError> {
    Ok(match format {
        Format::Json => Box::new(Json::<JsonArray>(JsonWriter::new(Vec::new()))),
        Format::Jsonl => Box::new(Json::<LineDelimited>(JsonWriter::new(Vec::new()))),
        Format::Csv => Box::new(Csv {
            schema: schema.clone(),
            buf: Vec::new(),
            started: false,
        }),
        Format::Arrow => {
            let writer = StreamWriter::try_new(Vec::new(), schema).map_err(cannot_encode)?;
            Box::new(Ipc(writer))
        }
        Format::Parquet => Box::new(Parquet::new(schema).map_err(cannot_encode)?),
        Format::Pretty => Box::new(Pretty {
            schema: schema.clone(),
            batches: Vec::new(),
            rows: 0,
        }),
    })
}

/// A result the format cannot hold (a type arrow's writer for it does not support).
fn cannot_encode(e: ArrowError) -> QueryError {
    QueryError::new(
        ErrorKind::Unsupported,
        format!("the result cannot be encoded in the requested format: {e}"),
    )
}

/// Takes what `buf` holds, leaving it empty for the writer to go on.
fn take(buf: &mut Vec<u8>) -> Bytes {
    Bytes::from(std::mem::take(buf))
}

/// JSON through arrow-json: timestamps as ISO 8601 text, nulls left out of their row.
struct Json<F: JsonFormat>(JsonWriter<Vec<u8>, F>);

impl<F: JsonFormat + Send> Encoder for Json<F> {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        // The writer remembers that rows were written, so the next batch starts with a comma.
        self.0.write(batch).map_err(cannot_encode)?;
        Ok(take(self.0.get_mut()))
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        self.0.finish().map_err(cannot_encode)?;
        Ok(take(self.0.get_mut()))
    }
}

/// CSV through arrow-csv: quoted only where needed (RFC 4180), nulls as empty fields.
struct Csv {
    schema: SchemaRef,
    buf: Vec<u8>,
    /// The header has been written.
    started: bool,
}

impl Encoder for Csv {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        // arrow-csv's writer cannot give its buffer back without ending, so each batch gets a
        // writer of its own, and only the first writes the header.
        let mut writer = CsvWriterBuilder::new()
            .with_header(!self.started)
            .build(&mut self.buf);
        writer.write(batch).map_err(cannot_encode)?;
        drop(writer);
        self.started = true;
        Ok(take(&mut self.buf))
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        if !self.started {
            // No rows: the header alone.
            return self.batch(&RecordBatch::new_empty(self.schema.clone()));
        }
        Ok(Bytes::new())
    }
}

/// The Arrow IPC stream format: the schema, then one message per batch, then the end marker.
struct Ipc(StreamWriter<Vec<u8>>);

impl Encoder for Ipc {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        self.0.write(batch).map_err(cannot_encode)?;
        Ok(take(self.0.get_mut()))
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        self.0.finish().map_err(cannot_encode)?;
        Ok(take(self.0.get_mut()))
    }
}

/// A Parquet file, sent a row group at a time; the footer, which locates the row groups,
/// comes last.
struct Parquet(ArrowWriter<Vec<u8>>);

impl Parquet {
    fn new(schema: &SchemaRef) -> Result<Parquet, ArrowError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS_MAX))
            .set_max_row_group_bytes(Some(PARQUET_ROW_GROUP_BYTES_MAX))
            .build();
        Ok(Parquet(ArrowWriter::try_new(
            Vec::new(),
            Arc::clone(schema),
            Some(props),
        )?))
    }

    /// What the writer has written so far. The writer counts offsets itself, so taking its
    /// bytes away does not change where it thinks they are.
    fn written(&mut self) -> Result<Bytes, ArrowError> {
        // Through the writer's own buffer first, so a finished row group goes out whole.
        self.0.sync()?;
        Ok(take(self.0.inner_mut()))
    }
}

impl Encoder for Parquet {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        self.0.write(batch).map_err(|e| cannot_encode(e.into()))?;
        self.written().map_err(cannot_encode)
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        self.0.finish().map_err(|e| cannot_encode(e.into()))?;
        self.written().map_err(cannot_encode)
    }
}

/// Arrow's text table: laid out once every row is known, so the rows are held, at most
/// [`PRETTY_ROWS_MAX`] of them.
struct Pretty {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Encoder for Pretty {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        self.rows = self.rows.saturating_add(batch.num_rows());
        if self.rows > PRETTY_ROWS_MAX {
            return Err(QueryError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "the result has more than {PRETTY_ROWS_MAX} rows, the most the pretty format \
                     lays out; add a LIMIT, or use format csv, jsonl, arrow or parquet, which \
                     stream"
                ),
            ));
        }
        self.batches.push(batch.clone());
        Ok(Bytes::new())
    }

    fn finish(&mut self) -> Result<Bytes, QueryError> {
        // With the schema, a result without rows still shows its header.
        let table = pretty_format_batches_with_schema(
            self.schema.clone(),
            &std::mem::take(&mut self.batches),
        )
        .map_err(cannot_encode)?;
        Ok(Bytes::from(format!("{table}\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn batch(rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn encode(format: Format, batches: &[RecordBatch]) -> Vec<u8> {
        let mut e = encoder(format, &batches[0].schema()).unwrap();
        let mut out = Vec::new();
        for b in batches {
            out.extend_from_slice(&e.batch(b).unwrap());
        }
        out.extend_from_slice(&e.finish().unwrap());
        out
    }

    const T0: i64 = 1_704_067_200_000_000_000;

    #[test]
    fn json_spans_batches_as_one_array() {
        let a = batch(&[("a,\"x\"", T0, Some(1.5))]);
        let b = batch(&[("b", T0 + 1_000_000, None)]);
        let out = String::from_utf8(encode(Format::Json, &[a.clone(), b.clone()])).unwrap();
        let want = concat!(
            r#"[{"host":"a,\"x\"","time":"2024-01-01T00:00:00","v":1.5},"#,
            r#"{"host":"b","time":"2024-01-01T00:00:00.001"}]"#
        );
        assert_eq!(out, want);
        let lines = String::from_utf8(encode(Format::Jsonl, &[a.clone(), b.clone()])).unwrap();
        assert_eq!(lines.lines().count(), 2);
        let csv = String::from_utf8(encode(Format::Csv, &[a, b])).unwrap();
        assert_eq!(
            csv,
            "host,time,v\n\"a,\"\"x\"\"\",2024-01-01T00:00:00,1.5\nb,2024-01-01T00:00:00.001,\n"
        );
    }

    #[test]
    fn no_rows_is_still_a_document() {
        let empty = RecordBatch::new_empty(batch(&[]).schema());
        assert_eq!(encode(Format::Json, std::slice::from_ref(&empty)), b"[]");
        assert_eq!(encode(Format::Jsonl, std::slice::from_ref(&empty)), b"");
        assert_eq!(
            encode(Format::Csv, std::slice::from_ref(&empty)),
            b"host,time,v\n"
        );
        let pretty = String::from_utf8(encode(Format::Pretty, &[empty])).unwrap();
        assert!(pretty.contains("| host | time | v |"), "{pretty}");
    }

    #[test]
    fn formats_by_parameter_then_accept_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(Format::of_request(None, &headers), Ok(Format::Json));
        headers.insert(
            header::ACCEPT,
            "text/html;q=0.9, application/vnd.apache.arrow.stream"
                .parse()
                .unwrap(),
        );
        assert_eq!(Format::of_request(None, &headers), Ok(Format::Arrow));
        assert_eq!(Format::of_request(Some("CSV"), &headers), Ok(Format::Csv));
        let err = Format::of_request(Some("xml"), &headers).unwrap_err();
        assert!(
            err.contains("json, jsonl, csv, pretty, parquet, arrow"),
            "{err}"
        );
    }
}
