//! `COPY ... TO STDOUT` encoding: a header line and one line per row in text or CSV, each
//! value printed as PostgreSQL prints it and escaped or quoted so that COPY FROM, ours or
//! PostgreSQL's, reads it back unchanged. Output is a separate job from input and needs none
//! of the decoder's state; binary output is refused when the options are checked.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;

use super::options::{CopyFormat, CopyOptions};
use crate::text::format_value;

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

/// Appends one line per row of `batch` in text or csv format (see
/// [`check_copy_to`](super::check_copy_to); binary appends nothing).
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
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Array, AsArray, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{
        DataType, Field, FieldRef, TimeUnit, TimestampNanosecondType,
    };

    use super::*;
    use crate::copy::check_copy_to;
    use crate::copy::test_support::{NS_2024, decode_all};

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
