//! COPY's CSV format on input: where a record ends (a quoted field may span lines) and how a
//! record splits into fields, with PostgreSQL's quote, escape and NULL rules, so that what
//! PostgreSQL writes with `COPY ... TO ... CSV` reads back unchanged. It quotes differently
//! from the text format, so the two are kept apart; field values are parsed by `values`.

use super::decoder::{CopyDecoder, FieldRange};
use super::options::CopyOptions;

impl CopyDecoder {
    /// Finds the next complete CSV record (which may span lines inside quotes), tracking quote
    /// state the way PostgreSQL's CopyReadLineText does.
    pub(super) fn next_csv_record(&mut self) -> Option<(usize, usize)> {
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
}

/// Splits a CSV record into unquoted fields in `arena`, following PostgreSQL's
/// CopyReadAttributesCSV: an unquoted field equal to the null string is NULL, a quoted one
/// never is.
pub(super) fn split_csv(
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float64Type};

    use crate::copy::CopyOptions;
    use crate::copy::test_support::{decode_all, decode_err, field};

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
}
