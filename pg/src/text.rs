//! PostgreSQL's text output format for Arrow values, so that results and COPY TO output read
//! exactly as a PostgreSQL server would print them (`t`/`f`, shortest round-trip floats with
//! PostgreSQL's exponent rule, `YYYY-MM-DD HH:MM:SS[.ffffff]` timestamps, `\x` bytea).

use std::fmt::Write as _;

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
    if row >= array.len() || array.is_null(row) || matches!(array.data_type(), DataType::Null) {
        return None;
    }
    // Any downcast that does not match (it cannot, given the data type) or any value outside
    // the calendar we can print falls back to Arrow's own display rather than failing.
    let formatted = match array.data_type() {
        DataType::Utf8 => array
            .as_string_opt::<i32>()
            .map(|a| a.value(row).to_string()),
        DataType::LargeUtf8 => array
            .as_string_opt::<i64>()
            .map(|a| a.value(row).to_string()),
        DataType::Utf8View => array.as_string_view_opt().map(|a| a.value(row).to_string()),
        DataType::Boolean => array
            .as_boolean_opt()
            .map(|a| (if a.value(row) { "t" } else { "f" }).to_string()),
        DataType::Int8 => primitive::<Int8Type>(array, row).map(|v| v.to_string()),
        DataType::Int16 => primitive::<Int16Type>(array, row).map(|v| v.to_string()),
        DataType::Int32 => primitive::<Int32Type>(array, row).map(|v| v.to_string()),
        DataType::Int64 => primitive::<Int64Type>(array, row).map(|v| v.to_string()),
        DataType::UInt8 => primitive::<UInt8Type>(array, row).map(|v| v.to_string()),
        DataType::UInt16 => primitive::<UInt16Type>(array, row).map(|v| v.to_string()),
        DataType::UInt32 => primitive::<UInt32Type>(array, row).map(|v| v.to_string()),
        DataType::UInt64 => primitive::<UInt64Type>(array, row).map(|v| v.to_string()),
        DataType::Float32 => primitive::<Float32Type>(array, row).map(format_f32),
        DataType::Float64 => primitive::<Float64Type>(array, row).map(format_f64),
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
            micros.and_then(|m| format_timestamp_micros(m, with_tz))
        }
        DataType::Date32 => {
            primitive::<Date32Type>(array, row).and_then(|d| format_date(i64::from(d)))
        }
        DataType::Date64 => primitive::<Date64Type>(array, row)
            .and_then(|ms| format_date(ms.div_euclid(86_400_000))),
        DataType::Time32(TimeUnit::Second) => primitive::<Time32SecondType>(array, row)
            .map(|v| format_time_micros(i128::from(v) * MICROS_PER_SECOND)),
        DataType::Time32(TimeUnit::Millisecond) => primitive::<Time32MillisecondType>(array, row)
            .map(|v| format_time_micros(i128::from(v) * 1000)),
        DataType::Time64(TimeUnit::Microsecond) => {
            primitive::<Time64MicrosecondType>(array, row).map(|v| format_time_micros(v.into()))
        }
        DataType::Time64(TimeUnit::Nanosecond) => primitive::<Time64NanosecondType>(array, row)
            .map(|v| format_time_micros(nanos_to_micros(v))),
        DataType::Binary => array
            .as_binary_opt::<i32>()
            .map(|a| format_bytea(a.value(row))),
        DataType::LargeBinary => array
            .as_binary_opt::<i64>()
            .map(|a| format_bytea(a.value(row))),
        DataType::BinaryView => array
            .as_binary_view_opt()
            .map(|a| format_bytea(a.value(row))),
        DataType::FixedSizeBinary(_) => array
            .as_fixed_size_binary_opt()
            .map(|a| format_bytea(a.value(row))),
        _ => None,
    };
    Some(formatted.unwrap_or_else(|| arrow_display(array, row)))
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Option<T::Native> {
    array.as_primitive_opt::<T>().map(|a| a.value(row))
}

/// Arrow's display covers decimals, intervals and nested types well enough for PostgreSQL clients.
fn arrow_display(array: &dyn Array, row: usize) -> String {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(array, &options) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(e) => format!("<unprintable {}: {e}>", array.data_type()),
    }
}

/// PostgreSQL keeps microseconds and rounds to the nearest one (ties toward +infinity here).
fn nanos_to_micros(nanos: i64) -> i128 {
    (i128::from(nanos) + 500).div_euclid(1000)
}

/// Formats a float8 as PostgreSQL 12+ does (`extra_float_digits` = 1): shortest round-trip digits.
pub fn format_f64(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return (if v > 0.0 { "Infinity" } else { "-Infinity" }).to_string();
    }
    // PostgreSQL switches to exponent form at DBL_DIG (15) decimal digits before the point.
    shortest_to_pg(&format!("{v:e}"), 15)
}

/// Formats a float4 as PostgreSQL 12+ does: shortest round-trip digits, exponent from 6 digits.
pub fn format_f32(v: f32) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return (if v > 0.0 { "Infinity" } else { "-Infinity" }).to_string();
    }
    // FLT_DIG is 6.
    shortest_to_pg(&format!("{v:e}"), 6)
}

/// Rewrites Rust's shortest `{:e}` output (`-1.25e-7`) into PostgreSQL's layout: exponent form
/// `d.ddde±XX` when the decimal exponent is below -4 or at least `upper`, plain decimal otherwise.
fn shortest_to_pg(sci: &str, upper: i32) -> String {
    let Some((mantissa, exponent)) = sci.split_once('e') else {
        return sci.to_string();
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return sci.to_string();
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if exponent < -4 || exponent >= upper {
        out.push_str(mantissa);
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exponent.unsigned_abs());
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

/// The date for `days` since 1970-01-01, or `None` outside chrono's calendar.
fn date_from_unix_days(days: i64) -> Option<NaiveDate> {
    let ce_days = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce_days)
}

/// Writes `YYYY-MM-DD`, returning whether the year is BC (PostgreSQL appends ` BC` at the very end).
fn push_date(out: &mut String, date: NaiveDate) -> bool {
    let year = date.year();
    // chrono's year 0 is 1 BC.
    let (shown, bc) = if year <= 0 {
        (1 - i64::from(year), true)
    } else {
        (i64::from(year), false)
    };
    let _ = write!(out, "{:04}-{:02}-{:02}", shown, date.month(), date.day());
    bc
}

/// Writes `HH:MM:SS[.ffffff]` with trailing fraction zeros trimmed, as PostgreSQL does.
fn push_time(out: &mut String, micros_of_day: i128) {
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
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
}

fn format_date(days: i64) -> Option<String> {
    let date = date_from_unix_days(days)?;
    let mut out = String::with_capacity(13);
    if push_date(&mut out, date) {
        out.push_str(" BC");
    }
    Some(out)
}

fn format_time_micros(micros: i128) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, micros);
    out
}

/// `timestamptz` values are shown in UTC, the session time zone Eddy reports.
fn format_timestamp_micros(micros: i128, with_tz: bool) -> Option<String> {
    let micros_per_day = SECONDS_PER_DAY * MICROS_PER_SECOND;
    let days = i64::try_from(micros.div_euclid(micros_per_day)).ok()?;
    let micros_of_day = micros.rem_euclid(micros_per_day);
    let date = date_from_unix_days(days)?;
    let mut out = String::with_capacity(32);
    let bc = push_date(&mut out, date);
    out.push(' ');
    push_time(&mut out, micros_of_day);
    if with_tz {
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
    Some(out)
}

/// bytea's default `hex` output.
fn format_bytea(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
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
}
