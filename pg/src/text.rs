//! PostgreSQL's text output format for Arrow values, so that results and COPY TO output read
//! exactly as a PostgreSQL server would print them (`t`/`f`, shortest round-trip floats with
//! PostgreSQL's exponent rule, `YYYY-MM-DD HH:MM:SS[.ffffff]` timestamps, `\x` bytea).

use std::fmt::{self, Write as _};

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use eddy_storage::time::UNIX_EPOCH_DAYS_FROM_CE;
const MICROS_PER_SECOND: i128 = 1_000_000;
const SECONDS_PER_DAY: i128 = 86_400;

/// Formats `array[row]` as PostgreSQL's text output would, or `None` when the value is NULL.
pub fn format_value(array: &dyn Array, row: usize) -> Option<String> {
    let mut out = String::new();
    write_value(array, row, &mut out).then_some(out)
}

/// Writes `array[row]` as PostgreSQL's text output would; `false`, with nothing written, when
/// the value is NULL. Allocates nothing for the types PostgreSQL's layout is known for, so a
/// result of many rows can be written straight into the wire buffer.
pub fn write_value<W: fmt::Write>(array: &dyn Array, row: usize, out: &mut W) -> bool {
    if row >= array.len() || array.is_null(row) || matches!(array.data_type(), DataType::Null) {
        return false;
    }
    // Any downcast that does not match (it cannot, given the data type) or any value outside
    // the calendar we can print falls back to Arrow's own display rather than failing.
    if !write_known(array, row, out) {
        write_arrow_display(array, row, out);
    }
    true
}

/// Whether [`write_value`] prints `data_type` itself rather than through Arrow's display.
pub fn prints_natively(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(..)
            | DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
            | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond)
    )
}

/// Writes a non-null value of a type whose PostgreSQL layout is known; `false`, with nothing
/// written, for any other type or a value that cannot be printed that way.
fn write_known<W: fmt::Write>(array: &dyn Array, row: usize, out: &mut W) -> bool {
    match array.data_type() {
        DataType::Utf8 => array
            .as_string_opt::<i32>()
            .map(|a| out.write_str(a.value(row)))
            .is_some(),
        DataType::LargeUtf8 => array
            .as_string_opt::<i64>()
            .map(|a| out.write_str(a.value(row)))
            .is_some(),
        DataType::Utf8View => array
            .as_string_view_opt()
            .map(|a| out.write_str(a.value(row)))
            .is_some(),
        DataType::Boolean => array
            .as_boolean_opt()
            .map(|a| out.write_str(if a.value(row) { "t" } else { "f" }))
            .is_some(),
        DataType::Int8 => display::<Int8Type, W>(array, row, out),
        DataType::Int16 => display::<Int16Type, W>(array, row, out),
        DataType::Int32 => display::<Int32Type, W>(array, row, out),
        DataType::Int64 => display::<Int64Type, W>(array, row, out),
        DataType::UInt8 => display::<UInt8Type, W>(array, row, out),
        DataType::UInt16 => display::<UInt16Type, W>(array, row, out),
        DataType::UInt32 => display::<UInt32Type, W>(array, row, out),
        DataType::UInt64 => display::<UInt64Type, W>(array, row, out),
        DataType::Float32 => primitive::<Float32Type>(array, row)
            .map(|v| write_f32(v, out))
            .is_some(),
        DataType::Float64 => primitive::<Float64Type>(array, row)
            .map(|v| write_f64(v, out))
            .is_some(),
        DataType::Timestamp(unit, tz) => {
            let with_tz = tz.is_some();
            let micros = match unit {
                TimeUnit::Second => primitive::<TimestampSecondType>(array, row)
                    .map(|v| i128::from(v) * MICROS_PER_SECOND),
                TimeUnit::Millisecond => {
                    primitive::<TimestampMillisecondType>(array, row).map(|v| i128::from(v) * 1000)
                }
                TimeUnit::Microsecond => {
                    primitive::<TimestampMicrosecondType>(array, row).map(i128::from)
                }
                TimeUnit::Nanosecond => {
                    primitive::<TimestampNanosecondType>(array, row).map(nanos_to_micros)
                }
            };
            micros.is_some_and(|m| write_timestamp_micros(m, with_tz, out))
        }
        DataType::Date32 => {
            primitive::<Date32Type>(array, row).is_some_and(|d| write_date(i64::from(d), out))
        }
        DataType::Date64 => primitive::<Date64Type>(array, row)
            .is_some_and(|ms| write_date(ms.div_euclid(86_400_000), out)),
        DataType::Time32(TimeUnit::Second) => primitive::<Time32SecondType>(array, row)
            .map(|v| push_time(out, i128::from(v) * MICROS_PER_SECOND))
            .is_some(),
        DataType::Time32(TimeUnit::Millisecond) => primitive::<Time32MillisecondType>(array, row)
            .map(|v| push_time(out, i128::from(v) * 1000))
            .is_some(),
        DataType::Time64(TimeUnit::Microsecond) => primitive::<Time64MicrosecondType>(array, row)
            .map(|v| push_time(out, v.into()))
            .is_some(),
        DataType::Time64(TimeUnit::Nanosecond) => primitive::<Time64NanosecondType>(array, row)
            .map(|v| push_time(out, nanos_to_micros(v)))
            .is_some(),
        DataType::Binary => array
            .as_binary_opt::<i32>()
            .map(|a| write_bytea(a.value(row), out))
            .is_some(),
        DataType::LargeBinary => array
            .as_binary_opt::<i64>()
            .map(|a| write_bytea(a.value(row), out))
            .is_some(),
        DataType::BinaryView => array
            .as_binary_view_opt()
            .map(|a| write_bytea(a.value(row), out))
            .is_some(),
        DataType::FixedSizeBinary(_) => array
            .as_fixed_size_binary_opt()
            .map(|a| write_bytea(a.value(row), out))
            .is_some(),
        _ => false,
    }
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Option<T::Native> {
    array.as_primitive_opt::<T>().map(|a| a.value(row))
}

/// Integers print as their decimal digits.
fn display<T: ArrowPrimitiveType, W: fmt::Write>(array: &dyn Array, row: usize, out: &mut W) -> bool
where
    T::Native: itoa::Integer,
{
    primitive::<T>(array, row)
        .map(|v| out.write_str(itoa::Buffer::new().format(v)))
        .is_some()
}

/// Arrow's display covers decimals, intervals and nested types well enough for PostgreSQL clients.
fn write_arrow_display<W: fmt::Write>(array: &dyn Array, row: usize, out: &mut W) {
    let options = FormatOptions::default();
    let _ = match ArrayFormatter::try_new(array, &options) {
        Ok(formatter) => write!(out, "{}", formatter.value(row)),
        Err(e) => write!(out, "<unprintable {}: {e}>", array.data_type()),
    };
}

/// PostgreSQL keeps microseconds and rounds to the nearest one (ties toward +infinity here).
fn nanos_to_micros(nanos: i64) -> i128 {
    (i128::from(nanos) + 500).div_euclid(1000)
}

/// Formats a float8 as PostgreSQL 12+ does (`extra_float_digits` = 1): shortest round-trip digits.
pub fn format_f64(v: f64) -> String {
    let mut out = String::new();
    write_f64(v, &mut out);
    out
}

/// Formats a float4 as PostgreSQL 12+ does: shortest round-trip digits, exponent from 6 digits.
pub fn format_f32(v: f32) -> String {
    let mut out = String::new();
    write_f32(v, &mut out);
    out
}

/// Writes a float8 as [`format_f64`] formats it.
fn write_f64<W: fmt::Write>(v: f64, out: &mut W) {
    // PostgreSQL switches to exponent form at DBL_DIG (15) decimal digits before the point.
    write_float(
        v.is_nan(),
        v.is_infinite(),
        v > 0.0,
        format_args!("{v:e}"),
        15,
        out,
    );
}

/// Writes a float4 as [`format_f32`] formats it.
fn write_f32<W: fmt::Write>(v: f32, out: &mut W) {
    // FLT_DIG is 6.
    write_float(
        v.is_nan(),
        v.is_infinite(),
        v > 0.0,
        format_args!("{v:e}"),
        6,
        out,
    );
}

/// Writes a float given its class and Rust's shortest `{:e}` text, in PostgreSQL's layout.
fn write_float<W: fmt::Write>(
    nan: bool,
    infinite: bool,
    positive: bool,
    sci: fmt::Arguments<'_>,
    upper: i32,
    out: &mut W,
) {
    if nan {
        let _ = out.write_str("NaN");
    } else if infinite {
        let _ = out.write_str(if positive { "Infinity" } else { "-Infinity" });
    } else {
        let mut text = StackText::default();
        let _ = text.write_fmt(sci);
        let mut pg = StackText::default();
        shortest_to_pg(text.as_str(), upper, &mut pg);
        let _ = out.write_str(pg.as_str());
    }
}

/// Room for the text of one value on the stack, so it reaches the output in one write: the
/// longest float (`-2.2250738585072014e-308`) is 24 bytes, the longest timestamp
/// (`262143-12-31 23:59:59.999999+00 BC`) 34.
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// Appends `v` in decimal, zero-padded to `width` digits.
    fn push_padded(&mut self, v: u64, width: usize) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(v);
        for _ in digits.len()..width {
            let _ = self.write_char('0');
        }
        let _ = self.write_str(digits);
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let Some(room) = self.bytes.get_mut(self.len..end) else {
            return Err(fmt::Error);
        };
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Rewrites Rust's shortest `{:e}` output (`-1.25e-7`) into PostgreSQL's layout: exponent form
/// `d.ddde±XX` when the decimal exponent is below -4 or at least `upper`, plain decimal otherwise.
fn shortest_to_pg<W: fmt::Write>(sci: &str, upper: i32, out: &mut W) {
    let Some((mantissa, exponent)) = sci.split_once('e') else {
        let _ = out.write_str(sci);
        return;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        let _ = out.write_str(sci);
        return;
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits = StackText::default();
    for part in mantissa.split('.') {
        let _ = digits.write_str(part);
    }
    let digits = digits.as_str();
    if negative {
        let _ = out.write_char('-');
    }
    let _ = if exponent < -4 || exponent >= upper {
        write!(
            out,
            "{mantissa}e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.unsigned_abs()
        )
    } else if exponent < 0 {
        write!(
            out,
            "0.{:0>width$}{digits}",
            "",
            width = (-exponent - 1) as usize
        )
    } else {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            write!(out, "{digits:0<int_len$}")
        } else {
            write!(out, "{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
}

/// The date for `days` since 1970-01-01, or `None` outside chrono's calendar.
fn date_from_unix_days(days: i64) -> Option<NaiveDate> {
    let ce_days = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce_days)
}

/// Writes `YYYY-MM-DD`, returning whether the year is BC (PostgreSQL appends ` BC` at the very end).
fn push_date(out: &mut StackText, date: NaiveDate) -> bool {
    let year = date.year();
    // chrono's year 0 is 1 BC.
    let (shown, bc) = if year <= 0 {
        (1 - i64::from(year), true)
    } else {
        (i64::from(year), false)
    };
    out.push_padded(shown.unsigned_abs(), 4);
    let _ = out.write_char('-');
    out.push_padded(u64::from(date.month()), 2);
    let _ = out.write_char('-');
    out.push_padded(u64::from(date.day()), 2);
    bc
}

/// Writes `HH:MM:SS[.ffffff]` with trailing fraction zeros trimmed, as PostgreSQL does.
fn push_time<W: fmt::Write>(out: &mut W, micros_of_day: i128) {
    if micros_of_day < 0 {
        // Not a time of day (a negative time64): printed as ever, with signed fields.
        let secs = micros_of_day.div_euclid(MICROS_PER_SECOND);
        let frac = micros_of_day.rem_euclid(MICROS_PER_SECOND);
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        if frac != 0 {
            let fraction = format!("{frac:06}");
            let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
        }
        return;
    }
    let mut text = StackText::default();
    push_time_text(&mut text, micros_of_day);
    let _ = out.write_str(text.as_str());
}

/// [`push_time`] of a time that is not negative, into a stack buffer.
fn push_time_text(out: &mut StackText, micros_of_day: i128) {
    let secs = u64::try_from(micros_of_day.div_euclid(MICROS_PER_SECOND)).unwrap_or(u64::MAX);
    let mut frac = u64::try_from(micros_of_day.rem_euclid(MICROS_PER_SECOND)).unwrap_or(0);
    out.push_padded(secs / 3600, 2);
    let _ = out.write_char(':');
    out.push_padded((secs / 60) % 60, 2);
    let _ = out.write_char(':');
    out.push_padded(secs % 60, 2);
    if frac != 0 {
        let mut width = 6;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let _ = out.write_char('.');
        out.push_padded(frac, width);
    }
}

/// Writes the date `days` after 1970-01-01; `false`, with nothing written, outside the calendar.
fn write_date<W: fmt::Write>(days: i64, out: &mut W) -> bool {
    let Some(date) = date_from_unix_days(days) else {
        return false;
    };
    let mut text = StackText::default();
    if push_date(&mut text, date) {
        let _ = text.write_str(" BC");
    }
    let _ = out.write_str(text.as_str());
    true
}

/// `timestamptz` values are shown in UTC, the session time zone Eddy reports; `false`, with
/// nothing written, outside the calendar.
fn write_timestamp_micros<W: fmt::Write>(micros: i128, with_tz: bool, out: &mut W) -> bool {
    let micros_per_day = SECONDS_PER_DAY * MICROS_PER_SECOND;
    let Ok(days) = i64::try_from(micros.div_euclid(micros_per_day)) else {
        return false;
    };
    let micros_of_day = micros.rem_euclid(micros_per_day);
    let Some(date) = date_from_unix_days(days) else {
        return false;
    };
    let mut text = StackText::default();
    let bc = push_date(&mut text, date);
    let _ = text.write_char(' ');
    push_time_text(&mut text, micros_of_day);
    if with_tz {
        let _ = text.write_str("+00");
    }
    if bc {
        let _ = text.write_str(" BC");
    }
    let _ = out.write_str(text.as_str());
    true
}

/// bytea's default `hex` output.
fn write_bytea<W: fmt::Write>(bytes: &[u8], out: &mut W) {
    let _ = out.write_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
        Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, IntervalDayTimeArray,
        LargeStringArray, StringArray, StringViewArray, Time64MicrosecondArray,
        Time64NanosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
        TimestampNanosecondArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array,
        UInt64Array,
    };
    use datafusion::arrow::datatypes::IntervalDayTime;

    use super::*;

    fn one(array: ArrayRef) -> Option<String> {
        format_value(array.as_ref(), 0)
    }

    #[test]
    fn strings_as_is() {
        assert_eq!(
            one(Arc::new(StringArray::from(vec!["a\tb"]))).as_deref(),
            Some("a\tb")
        );
        assert_eq!(
            one(Arc::new(LargeStringArray::from(vec!["x"]))).as_deref(),
            Some("x")
        );
        assert_eq!(
            one(Arc::new(StringViewArray::from(vec!["view"]))).as_deref(),
            Some("view")
        );
    }

    #[test]
    fn nulls_are_none() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(1)]));
        assert_eq!(format_value(a.as_ref(), 0), None);
        assert_eq!(format_value(a.as_ref(), 1).as_deref(), Some("1"));
        let n: ArrayRef = Arc::new(datafusion::arrow::array::NullArray::new(1));
        assert_eq!(format_value(n.as_ref(), 0), None);
    }

    #[test]
    fn booleans() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        assert_eq!(format_value(a.as_ref(), 0).as_deref(), Some("t"));
        assert_eq!(format_value(a.as_ref(), 1).as_deref(), Some("f"));
    }

    #[test]
    fn integers() {
        assert_eq!(
            one(Arc::new(Int8Array::from(vec![-8]))).as_deref(),
            Some("-8")
        );
        assert_eq!(
            one(Arc::new(Int16Array::from(vec![16]))).as_deref(),
            Some("16")
        );
        assert_eq!(
            one(Arc::new(Int32Array::from(vec![-32]))).as_deref(),
            Some("-32")
        );
        assert_eq!(
            one(Arc::new(Int64Array::from(vec![i64::MIN]))).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(
            one(Arc::new(UInt8Array::from(vec![255]))).as_deref(),
            Some("255")
        );
        assert_eq!(
            one(Arc::new(UInt16Array::from(vec![7]))).as_deref(),
            Some("7")
        );
        assert_eq!(
            one(Arc::new(UInt32Array::from(vec![9]))).as_deref(),
            Some("9")
        );
        assert_eq!(
            one(Arc::new(UInt64Array::from(vec![u64::MAX]))).as_deref(),
            Some("18446744073709551615")
        );
    }

    #[test]
    fn float8_like_postgres() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (1e20, "1e+20"),
            (123456789012345680000.0, "1.2345678901234568e+20"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (0.00012345, "0.00012345"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1e100, "1e+100"),
            (-1.5e-300, "-1.5e-300"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, want) in cases {
            let a: ArrayRef = Arc::new(Float64Array::from(vec![*v]));
            assert_eq!(one(a).as_deref(), Some(*want), "{v}");
        }
    }

    #[test]
    fn float4_like_postgres() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (1e-5, "1e-05"),
            (-0.0, "-0"),
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
        ];
        for (v, want) in cases {
            let a: ArrayRef = Arc::new(Float32Array::from(vec![*v]));
            assert_eq!(one(a).as_deref(), Some(*want), "{v}");
        }
    }

    #[test]
    fn timestamps_without_zone() {
        // 2024-03-01 12:34:56 UTC
        let base_s = 1_709_296_496_i64;
        let a: ArrayRef = Arc::new(TimestampSecondArray::from(vec![base_s]));
        assert_eq!(one(a).as_deref(), Some("2024-03-01 12:34:56"));
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![base_s * 1000 + 500]));
        assert_eq!(one(a).as_deref(), Some("2024-03-01 12:34:56.5"));
        let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            base_s * 1_000_000 + 120,
        ]));
        assert_eq!(one(a).as_deref(), Some("2024-03-01 12:34:56.00012"));
        let ns = base_s * 1_000_000_000;
        let a: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            ns + 1_499,
            ns + 1_500,
            ns + 999_999_999,
            ns,
        ]));
        assert_eq!(
            format_value(a.as_ref(), 0).as_deref(),
            Some("2024-03-01 12:34:56.000001")
        );
        assert_eq!(
            format_value(a.as_ref(), 1).as_deref(),
            Some("2024-03-01 12:34:56.000002")
        );
        assert_eq!(
            format_value(a.as_ref(), 2).as_deref(),
            Some("2024-03-01 12:34:57")
        );
        assert_eq!(
            format_value(a.as_ref(), 3).as_deref(),
            Some("2024-03-01 12:34:56")
        );
        let before_epoch: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![-1_000]));
        assert_eq!(
            one(before_epoch).as_deref(),
            Some("1969-12-31 23:59:59.999999")
        );
    }

    #[test]
    fn timestamps_with_zone_are_utc() {
        let a: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![1_709_296_496_250_000_000]).with_timezone("+02:00"),
        );
        assert_eq!(one(a).as_deref(), Some("2024-03-01 12:34:56.25+00"));
        let a: ArrayRef = Arc::new(TimestampSecondArray::from(vec![0]).with_timezone("UTC"));
        assert_eq!(one(a).as_deref(), Some("1970-01-01 00:00:00+00"));
    }

    #[test]
    fn dates_and_times() {
        let a: ArrayRef = Arc::new(Date32Array::from(vec![19_783, -1]));
        assert_eq!(format_value(a.as_ref(), 0).as_deref(), Some("2024-03-01"));
        assert_eq!(format_value(a.as_ref(), 1).as_deref(), Some("1969-12-31"));
        let a: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![
            (13 * 3600 + 5 * 60 + 9) * 1_000_000 + 100,
            0,
        ]));
        assert_eq!(
            format_value(a.as_ref(), 0).as_deref(),
            Some("13:05:09.0001")
        );
        assert_eq!(format_value(a.as_ref(), 1).as_deref(), Some("00:00:00"));
        let a: ArrayRef = Arc::new(Time64NanosecondArray::from(vec![3_600_000_000_000 + 2_000]));
        assert_eq!(one(a).as_deref(), Some("01:00:00.000002"));
    }

    #[test]
    fn bc_dates() {
        // 0000-01-01 in chrono's proleptic calendar is 1 BC.
        let days = -719_528;
        let a: ArrayRef = Arc::new(Date32Array::from(vec![days]));
        assert_eq!(one(a).as_deref(), Some("0001-01-01 BC"));
    }

    #[test]
    fn decimals_binary_intervals() {
        let a: ArrayRef = Arc::new(
            Decimal128Array::from(vec![12345_i128])
                .with_precision_and_scale(10, 2)
                .expect("valid precision"),
        );
        assert_eq!(one(a).as_deref(), Some("123.45"));
        let a: ArrayRef = Arc::new(BinaryArray::from(vec![&[0xde_u8, 0xad, 0x01][..]]));
        assert_eq!(one(a).as_deref(), Some("\\xdead01"));
        let a: ArrayRef = Arc::new(IntervalDayTimeArray::from(vec![IntervalDayTime::new(1, 0)]));
        let shown = one(a).expect("not null");
        assert!(!shown.is_empty());
    }

    /// The allocating formatter this module used before it wrote into buffers, kept as the
    /// oracle: the layout PostgreSQL clients saw must not change.
    fn reference_float(sci: &str, upper: i32) -> String {
        let (mantissa, exponent) = sci.split_once('e').expect("exponent");
        let exponent: i32 = exponent.parse().expect("exponent");
        let (negative, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, mantissa),
        };
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let mut out = String::new();
        if negative {
            out.push('-');
        }
        if exponent < -4 || exponent >= upper {
            out.push_str(mantissa);
            out.push('e');
            out.push(if exponent < 0 { '-' } else { '+' });
            out.push_str(&format!("{:02}", exponent.unsigned_abs()));
        } else if exponent < 0 {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
        out
    }

    #[test]
    fn floats_match_the_reference_layout_and_read_back_exactly() {
        // Every exponent, sign and digit count: a deterministic walk over bit patterns.
        let mut bits: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000u64 {
            bits = bits.rotate_left(17) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let v = f64::from_bits(bits);
            if !v.is_finite() {
                continue;
            }
            let got = format_f64(v);
            assert_eq!(got, reference_float(&format!("{v:e}"), 15), "{v:e}");
            assert_eq!(
                got.parse::<f64>().map(f64::to_bits),
                Ok(v.to_bits()),
                "{got}"
            );
            let w = f32::from_bits(bits as u32);
            if w.is_finite() {
                let got = format_f32(w);
                assert_eq!(got, reference_float(&format!("{w:e}"), 6), "{w:e}");
                assert_eq!(
                    got.parse::<f32>().map(f32::to_bits),
                    Ok(w.to_bits()),
                    "{got}"
                );
            }
        }
        for v in [
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
            -2.2250738585072014e-308,
        ] {
            assert_eq!(
                format_f64(v),
                reference_float(&format!("{v:e}"), 15),
                "{v:e}"
            );
        }
    }

    #[test]
    fn writing_into_wire_bytes_gives_the_formatted_text() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ünï")])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None])),
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(-1e-7),
                Some(1e300),
            ])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_709_296_496_000_000_123),
                Some(i64::MIN),
                None,
            ])),
            Arc::new(Time64NanosecondArray::from(vec![
                Some(1),
                Some(86_399_999_999_999),
                Some(-1_500_000_000),
                Some(i64::MAX),
                None,
            ])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), None, Some(0)])),
            Arc::new(Int8Array::from(vec![Some(i8::MIN), None, Some(7)])),
            Arc::new(Date32Array::from(vec![
                Some(i32::MAX),
                Some(-800_000),
                None,
            ])),
            Arc::new(Decimal128Array::from(vec![Some(12345), None, Some(-1)])),
        ];
        for a in &arrays {
            for row in 0..a.len() {
                let mut wire = bytes::BytesMut::new();
                let written = write_value(a.as_ref(), row, &mut wire);
                let formatted = format_value(a.as_ref(), row);
                assert_eq!(
                    written,
                    formatted.is_some(),
                    "{:?} row {row}",
                    a.data_type()
                );
                assert_eq!(
                    std::str::from_utf8(&wire).expect("utf-8"),
                    formatted.as_deref().unwrap_or(""),
                    "{:?} row {row}",
                    a.data_type()
                );
            }
        }
    }
}
