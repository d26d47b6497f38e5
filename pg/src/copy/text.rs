//! COPY's text format on input: where a line ends (a backslash quotes the next byte, a
//! newline included) and how a line splits into fields on the delimiter, undoing backslash
//! escapes (`\t`, octal `\101`, hex `\x41`, ...). It quotes differently from CSV, so the
//! two formats are kept apart; the field values themselves are parsed by `values`.

use super::decoder::{CopyDecoder, FieldRange};
use super::options::CopyFormat;

impl CopyDecoder {
    /// Finds the next complete text line, returning its byte range without the newline. A
    /// backslash quotes the following byte, a newline included, as in PostgreSQL.
    pub(super) fn next_text_line(&mut self) -> Option<(usize, usize)> {
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

    /// Whether the carriage return at `cr` is quoted by a backslash (text format only).
    pub(super) fn cr_is_escaped(&self, start: usize, cr: usize) -> bool {
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
}

/// Splits a text-format line on the delimiter and undoes backslash escapes into `arena`. A
/// field is NULL when its raw (still escaped) text equals the null string, as in PostgreSQL.
pub(super) fn split_text(
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        DataType, FieldRef, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType,
    };

    use crate::copy::CopyOptions;
    use crate::copy::test_support::{NS_2024, decode_all, field};

    fn five_fields() -> Vec<FieldRef> {
        vec![
            field("name", DataType::Utf8),
            field("temp", DataType::Float64),
            field("n", DataType::Int64),
            field("ok", DataType::Boolean),
            field("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ]
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
}
