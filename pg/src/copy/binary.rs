//! COPY's binary (`PGCOPY`) format on input: the file signature and header, tuples of
//! length-prefixed big-endian fields, and PostgreSQL's binary send format of each value
//! (integers of any width, float4 or float8, bool, text, timestamps counted in microseconds
//! from 2000-01-01). Beyond the decoder's buffer and the column builders it shares nothing
//! with the text formats, so it stands alone.

use super::decoder::{Cell, Columns, CopyDecoder, FieldRange, Target};
use super::options::CopyError;

/// Where the binary decoder is in the `PGCOPY` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinaryState {
    Header,
    Tuples,
    Done,
}

const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and header-extension length.
const BINARY_HEADER_LEN: usize = 11 + 4 + 4;
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

impl CopyDecoder {
    pub(super) fn decode_binary(&mut self) -> Result<(), CopyError> {
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

impl Columns {
    /// Converts one binary field from PostgreSQL's binary send format.
    pub(super) fn binary_cell(
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
    };

    use super::*;
    use crate::copy::CopyOptions;
    use crate::copy::test_support::{decode_all, decode_err, field};

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
}
