//! `to_char` of dates, times, timestamps and intervals with PostgreSQL's date/time patterns.
//!
//! Values are taken to microseconds (PostgreSQL's resolution; nanoseconds round to the
//! nearest, as Eddy's Postgres wire format does) in the session time zone, which in Eddy is
//! always UTC. Timestamps with a time zone and dates (which PostgreSQL formats as `timestamptz`)
//! show `UTC` for `TZ`; timestamps without one show nothing for `TZ` and `+00` for `TZH`/`OF`,
//! as in PostgreSQL. Times and durations are formatted as intervals, as PostgreSQL formats
//! `time`.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, IntervalDayTimeType, IntervalMonthDayNanoType,
    IntervalUnit, IntervalYearMonthType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::Result as DfResult;

use super::calendar::{
    UNIX_EPOCH_JULIAN, civil_from_days, days_from_civil, iso_day_of_year, iso_week, iso_year,
    weekday,
};
use super::columnar::{TemplateCache, primitive_at};
use super::errors::{internal, invalid};
use super::ordinal::ordinal_suffix;
use super::template::{Case, DateField, DateNode, Modifiers, Ordinal, parse_date_template};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i128 = 86_400_000_000;

/// Full month names, January first.
pub(crate) const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Month abbreviations, January first.
pub(crate) const MONTH_ABBREVIATIONS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Full day names, Sunday first.
pub(crate) const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Day abbreviations, Sunday first.
pub(crate) const DAY_ABBREVIATIONS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Months in Roman numerals, December first (so that, when parsing, `VIII` is tried before
/// `V`).
pub(crate) const ROMAN_MONTHS: [&str; 12] = [
    "XII", "XI", "X", "IX", "VIII", "VII", "VI", "V", "IV", "III", "II", "I",
];

/// The time zone Eddy's sessions are in.
const SESSION_ZONE: &str = "UTC";

/// The fields of a timestamp (or of an interval) that patterns show: PostgreSQL's broken-down
/// time. Years are astronomical (0 is 1 BC) for timestamps and plain counts for intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moment {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micros: i64,
    weekday: i64,
    day_of_year: i64,
    offset_seconds: i64,
    zone: Option<&'static str>,
    interval: bool,
}

impl Moment {
    /// The moment `micros` microseconds after 1970-01-01 00:00 UTC, shown in UTC; `zoned`
    /// when its type carries a time zone, so that `TZ` names the session's.
    pub(crate) fn at(micros: i128, zoned: bool) -> DfResult<Self> {
        let days = i64::try_from(micros.div_euclid(MICROS_PER_DAY))
            .map_err(|_| internal("timestamp beyond any calendar"))?;
        let of_day = i64::try_from(micros.rem_euclid(MICROS_PER_DAY))
            .map_err(|_| internal("time of day out of range"))?;
        let (year, month, day) = civil_from_days(days);
        Ok(Self {
            year,
            month,
            day,
            hour: of_day / (3600 * MICROS_PER_SECOND),
            minute: of_day / (60 * MICROS_PER_SECOND) % 60,
            second: of_day / MICROS_PER_SECOND % 60,
            micros: of_day % MICROS_PER_SECOND,
            weekday: weekday(days),
            day_of_year: days - days_from_civil(year, 1, 1) + 1,
            offset_seconds: 0,
            zone: zoned.then_some(SESSION_ZONE),
            interval: false,
        })
    }

    /// An interval of `months`, `days` and `micros`, broken down as PostgreSQL does: whole
    /// years out of the months, hours that may pass 23, every field keeping the sign.
    pub(crate) fn interval(months: i64, days: i64, micros: i64) -> Self {
        let hour = micros / (3600 * MICROS_PER_SECOND);
        let rest = micros - hour * 3600 * MICROS_PER_SECOND;
        let minute = rest / (60 * MICROS_PER_SECOND);
        let rest = rest - minute * 60 * MICROS_PER_SECOND;
        let year = months / 12;
        let month = months % 12;
        Self {
            year,
            month,
            day: days,
            hour,
            minute,
            second: rest / MICROS_PER_SECOND,
            micros: rest % MICROS_PER_SECOND,
            weekday: 0,
            // What DDD shows: an approximate span in days, 30 to the month.
            day_of_year: (year * 12 + month) * 30 + days,
            offset_seconds: 0,
            zone: None,
            interval: true,
        }
    }

    /// The year as written: BC years count from 1 for timestamps; intervals keep theirs.
    fn shown_year(&self, year: i64) -> i64 {
        if self.interval || year > 0 {
            year
        } else {
            1 - year
        }
    }

    /// The day this moment's date fields name, counted from 1970-01-01.
    fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }
}

/// Whether `to_char` formats values of this type with date/time patterns.
pub(crate) fn is_temporal(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_)
            | DataType::Interval(_)
    )
}

/// `to_char(value, template)` for each row of a date, time, timestamp, duration or interval.
pub(crate) fn to_char_temporal(values: &ArrayRef, templates: &StringArray) -> DfResult<ArrayRef> {
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    let mut cache = TemplateCache::default();
    for row in 0..values.len() {
        let template = templates.value(row);
        // PostgreSQL answers NULL for an empty template.
        if values.is_null(row) || templates.is_null(row) || template.is_empty() {
            out.append_null();
            continue;
        }
        let moment = moment_at(values, row)?;
        let nodes = cache.get(template, |t| Ok(parse_date_template(t)))?;
        out.append_value(format_moment(nodes, &moment)?);
    }
    Ok(Arc::new(out.finish()))
}

/// Rounds nanoseconds to microseconds, half up, as Eddy's wire format shows them.
fn nanos_to_micros(nanos: i64) -> i128 {
    (i128::from(nanos) + 500).div_euclid(1000)
}

fn moment_at(values: &ArrayRef, row: usize) -> DfResult<Moment> {
    let micros = |v: i64, unit: &TimeUnit| match unit {
        TimeUnit::Second => i128::from(v) * 1_000_000,
        TimeUnit::Millisecond => i128::from(v) * 1000,
        TimeUnit::Microsecond => i128::from(v),
        TimeUnit::Nanosecond => nanos_to_micros(v),
    };
    // Times and durations are intervals: no months, and (durations) whole days apart.
    let span = |micros: i128| {
        let days = micros / MICROS_PER_DAY;
        let rest = micros % MICROS_PER_DAY;
        match (i64::try_from(days), i64::try_from(rest)) {
            (Ok(days), Ok(rest)) => Ok(Moment::interval(0, days, rest)),
            _ => Err(internal("duration out of range")),
        }
    };
    match values.data_type() {
        DataType::Timestamp(unit, zone) => {
            let v = match unit {
                TimeUnit::Second => primitive_at::<TimestampSecondType>(values, row)?,
                TimeUnit::Millisecond => primitive_at::<TimestampMillisecondType>(values, row)?,
                TimeUnit::Microsecond => primitive_at::<TimestampMicrosecondType>(values, row)?,
                TimeUnit::Nanosecond => primitive_at::<TimestampNanosecondType>(values, row)?,
            };
            Moment::at(micros(v, unit), zone.is_some())
        }
        DataType::Date32 => {
            let days = primitive_at::<Date32Type>(values, row)?;
            Moment::at(i128::from(days) * MICROS_PER_DAY, true)
        }
        DataType::Date64 => {
            let millis = primitive_at::<Date64Type>(values, row)?;
            Moment::at(micros(millis, &TimeUnit::Millisecond), true)
        }
        DataType::Time32(TimeUnit::Second) => {
            let v = primitive_at::<Time32SecondType>(values, row)?;
            span(micros(i64::from(v), &TimeUnit::Second))
        }
        DataType::Time32(_) => {
            let v = primitive_at::<Time32MillisecondType>(values, row)?;
            span(micros(i64::from(v), &TimeUnit::Millisecond))
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            let v = primitive_at::<Time64NanosecondType>(values, row)?;
            span(micros(v, &TimeUnit::Nanosecond))
        }
        DataType::Time64(_) => {
            let v = primitive_at::<Time64MicrosecondType>(values, row)?;
            span(micros(v, &TimeUnit::Microsecond))
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => primitive_at::<DurationSecondType>(values, row)?,
                TimeUnit::Millisecond => primitive_at::<DurationMillisecondType>(values, row)?,
                TimeUnit::Microsecond => primitive_at::<DurationMicrosecondType>(values, row)?,
                TimeUnit::Nanosecond => primitive_at::<DurationNanosecondType>(values, row)?,
            };
            span(micros(v, unit))
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let months = primitive_at::<IntervalYearMonthType>(values, row)?;
            Ok(Moment::interval(i64::from(months), 0, 0))
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = primitive_at::<IntervalDayTimeType>(values, row)?;
            Ok(Moment::interval(
                0,
                i64::from(v.days),
                i64::from(v.milliseconds) * 1000,
            ))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = primitive_at::<IntervalMonthDayNanoType>(values, row)?;
            let micros = i64::try_from(nanos_to_micros(v.nanoseconds))
                .map_err(|_| internal("interval out of range"))?;
            Ok(Moment::interval(
                i64::from(v.months),
                i64::from(v.days),
                micros,
            ))
        }
        other => Err(internal(format!(
            "to_char cannot format {other} as a date or time"
        ))),
    }
}

/// Formats one moment with a parsed template.
pub(crate) fn format_moment(nodes: &[DateNode], moment: &Moment) -> DfResult<String> {
    let mut out = String::new();
    for node in nodes {
        match node {
            DateNode::Literal(c) | DateNode::Separator(c) | DateNode::Space(c) => out.push(*c),
            DateNode::Field { keyword, modifiers } => {
                field(&mut out, keyword.field, modifiers, moment)?;
            }
        }
    }
    Ok(out)
}

/// Patterns that name a calendar date make no sense for an interval.
fn not_for_interval(m: &Moment) -> DfResult<()> {
    if m.interval {
        return Err(invalid(
            "invalid format specification for an interval value",
        ));
    }
    Ok(())
}

/// Writes a number zero-padded to `width` (which counts a minus sign, as C's `%0*d` does),
/// or unpadded in fill mode, then its ordinal suffix if asked for.
fn number(out: &mut String, value: i64, width: usize, modifiers: &Modifiers) -> DfResult<()> {
    let width = if modifiers.fill { 0 } else { width };
    let start = out.len();
    let _ = write!(out, "{value:0width$}");
    suffix(out, start, modifiers)
}

/// Appends the ordinal suffix of what was written since `start`, if asked for.
fn suffix(out: &mut String, start: usize, modifiers: &Modifiers) -> DfResult<()> {
    if let Some(ordinal) = modifiers.ordinal {
        let written = out.get(start..).unwrap_or_default();
        let suffix = ordinal_suffix(written, ordinal == Ordinal::Upper)?;
        out.push_str(suffix);
    }
    Ok(())
}

/// Two digits for non-negative values, three (with the minus sign) for negative ones.
fn width_2(value: i64) -> usize {
    if value >= 0 { 2 } else { 3 }
}

/// A name in the pattern's case, padded to 9 characters unless `FM` or `TM` is given.
fn name(out: &mut String, name: &str, case: Case, modifiers: &Modifiers, pad: bool) {
    let cased = match case {
        Case::Upper => name.to_ascii_uppercase(),
        Case::Capitalized => name.to_string(),
        Case::Lower => name.to_ascii_lowercase(),
    };
    if pad && !modifiers.fill && !modifiers.translate {
        let _ = write!(out, "{cased:<9}");
    } else {
        out.push_str(&cased);
    }
}

fn field(out: &mut String, field: DateField, modifiers: &Modifiers, m: &Moment) -> DfResult<()> {
    let pm = m.hour % 24 >= 12;
    match field {
        DateField::Meridiem { dots, upper } => {
            let text = match (pm, dots) {
                (false, false) => "am",
                (true, false) => "pm",
                (false, true) => "a.m.",
                (true, true) => "p.m.",
            };
            out.push_str(&if upper {
                text.to_ascii_uppercase()
            } else {
                text.to_string()
            });
        }
        DateField::Hour12 => {
            let hour = match m.hour % 12 {
                0 => 12,
                h => h,
            };
            number(out, hour, width_2(m.hour), modifiers)?;
        }
        DateField::Hour24 => number(out, m.hour, width_2(m.hour), modifiers)?,
        DateField::Minute => number(out, m.minute, width_2(m.minute), modifiers)?,
        DateField::Second => number(out, m.second, width_2(m.second), modifiers)?,
        DateField::Fraction(digits) => fraction(out, m, digits, modifiers)?,
        DateField::Millisecond => fraction(out, m, 3, modifiers)?,
        DateField::Microsecond => fraction(out, m, 6, modifiers)?,
        DateField::SecondsOfDay => {
            let start = out.len();
            let _ = write!(out, "{}", m.hour * 3600 + m.minute * 60 + m.second);
            suffix(out, start, modifiers)?;
        }
        DateField::TzName { upper } => {
            not_for_interval(m)?;
            if let Some(zone) = m.zone {
                out.push_str(&if upper {
                    zone.to_string()
                } else {
                    zone.to_ascii_lowercase()
                });
            }
        }
        DateField::TzHour => {
            not_for_interval(m)?;
            let sign = if m.offset_seconds >= 0 { '+' } else { '-' };
            let _ = write!(out, "{sign}{:02}", m.offset_seconds.abs() / 3600);
        }
        DateField::TzMinute => {
            not_for_interval(m)?;
            let _ = write!(out, "{:02}", m.offset_seconds.abs() % 3600 / 60);
        }
        DateField::Offset => {
            not_for_interval(m)?;
            let sign = if m.offset_seconds >= 0 { '+' } else { '-' };
            let width = if modifiers.fill { 0 } else { 2 };
            let hours = m.offset_seconds.abs() / 3600;
            let _ = write!(out, "{sign}{hours:0width$}");
            let minutes = m.offset_seconds.abs() % 3600 / 60;
            if minutes != 0 {
                let _ = write!(out, ":{minutes:02}");
            }
        }
        DateField::Era { dots, upper } => {
            not_for_interval(m)?;
            let text = match (m.year <= 0, dots) {
                (false, false) => "ad",
                (true, false) => "bc",
                (false, true) => "a.d.",
                (true, true) => "b.c.",
            };
            out.push_str(&if upper {
                text.to_ascii_uppercase()
            } else {
                text.to_string()
            });
        }
        DateField::MonthName(case) | DateField::MonthAbbrev(case) => {
            not_for_interval(m)?;
            let index = usize::try_from(m.month - 1).ok();
            let full = matches!(field, DateField::MonthName(_));
            let table: &[&str] = if full {
                &MONTH_NAMES
            } else {
                &MONTH_ABBREVIATIONS
            };
            if let Some(text) = index.and_then(|i| table.get(i)) {
                name(out, text, case, modifiers, full);
            }
        }
        DateField::DayName(case) | DateField::DayAbbrev(case) => {
            not_for_interval(m)?;
            let full = matches!(field, DateField::DayName(_));
            let table: &[&str] = if full { &DAY_NAMES } else { &DAY_ABBREVIATIONS };
            if let Some(text) = usize::try_from(m.weekday).ok().and_then(|i| table.get(i)) {
                name(out, text, case, modifiers, full);
            }
        }
        DateField::Month => number(out, m.month, width_2(m.month), modifiers)?,
        DateField::DayOfYear => number(out, m.day_of_year, 3, modifiers)?,
        DateField::IsoDayOfYear => number(out, iso_day_of_year(m.days()), 3, modifiers)?,
        DateField::DayOfMonth => number(out, m.day, 2, modifiers)?,
        DateField::DayOfWeek => {
            not_for_interval(m)?;
            number(out, m.weekday + 1, 0, modifiers)?;
        }
        DateField::IsoDayOfWeek => {
            not_for_interval(m)?;
            let day = if m.weekday == 0 { 7 } else { m.weekday };
            number(out, day, 0, modifiers)?;
        }
        DateField::WeekOfYear => number(out, (m.day_of_year - 1) / 7 + 1, 2, modifiers)?,
        DateField::IsoWeek => number(out, iso_week(m.days()), 2, modifiers)?,
        DateField::Quarter => {
            if m.month != 0 {
                number(out, (m.month - 1) / 3 + 1, 0, modifiers)?;
            }
        }
        DateField::Century => {
            let century = if m.interval {
                m.year / 100
            } else if m.year > 0 {
                (m.year - 1) / 100 + 1
            } else {
                // The 6th century BC is 600 BC to 501 BC.
                m.year / 100 - 1
            };
            let width = if (-99..=99).contains(&century) {
                width_2(century)
            } else {
                0
            };
            number(out, century, width, modifiers)?;
        }
        DateField::YearWithComma => {
            let year = m.shown_year(m.year);
            let thousands = year / 1000;
            let start = out.len();
            let _ = write!(out, "{thousands},{:03}", year - thousands * 1000);
            suffix(out, start, modifiers)?;
        }
        DateField::Year(digits) | DateField::IsoYear(digits) => {
            let calendar_year = m.shown_year(m.year);
            let year = if matches!(field, DateField::Year(_)) {
                calendar_year
            } else {
                m.shown_year(iso_year(m.days()))
            };
            // The width follows the calendar year's sign, even for the ISO year.
            let negative = usize::from(calendar_year < 0);
            match digits {
                4 => number(out, year, 4 + negative, modifiers)?,
                3 => number(out, year % 1000, 3 + negative, modifiers)?,
                2 => number(out, year % 100, 2 + negative, modifiers)?,
                _ => {
                    let start = out.len();
                    let _ = write!(out, "{}", year % 10);
                    suffix(out, start, modifiers)?;
                }
            }
        }
        DateField::RomanMonth { upper } => {
            if m.month != 0 || m.year != 0 {
                // The table runs from December down to January.
                let index = if m.month == 0 {
                    if m.year >= 0 { 0 } else { 11 }
                } else if m.month < 0 {
                    -(m.month + 1)
                } else {
                    12 - m.month
                };
                if let Some(numeral) = usize::try_from(index)
                    .ok()
                    .and_then(|i| ROMAN_MONTHS.get(i))
                {
                    let numeral = if upper {
                        numeral.to_string()
                    } else {
                        numeral.to_ascii_lowercase()
                    };
                    if modifiers.fill {
                        out.push_str(&numeral);
                    } else {
                        let _ = write!(out, "{numeral:<4}");
                    }
                }
            }
        }
        DateField::WeekOfMonth => number(out, (m.day - 1) / 7 + 1, 0, modifiers)?,
        DateField::Julian => number(out, m.days() + UNIX_EPOCH_JULIAN, 0, modifiers)?,
        DateField::FixedFormat => {}
    }
    Ok(())
}

/// `FF1`..`FF6`, `MS`, `US`: the first `digits` digits of the microseconds, always padded.
fn fraction(out: &mut String, m: &Moment, digits: u8, modifiers: &Modifiers) -> DfResult<()> {
    let divisor = 10i64.pow(6u32.saturating_sub(u32::from(digits)));
    let width = usize::from(digits);
    let start = out.len();
    let _ = write!(out, "{:0width$}", m.micros / divisor);
    suffix(out, start, modifiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> i128 {
        let days = i128::from(days_from_civil(y, mo, d));
        days * MICROS_PER_DAY + i128::from(((h * 60 + mi) * 60 + s) * MICROS_PER_SECOND + us)
    }

    fn fmt(m: &Moment, template: &str) -> String {
        match format_moment(&parse_date_template(template), m) {
            Ok(s) => s,
            Err(e) => panic!("{template}: {e}"),
        }
    }

    fn ts(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> Moment {
        match Moment::at(micros(y, mo, d, h, mi, s, us), false) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn superset_templates() {
        let m = ts(2023, 11, 14, 0, 0, 0, 0);
        assert_eq!(
            fmt(&m, "YYYY-MM-DD HH24:MI:SS.US"),
            "2023-11-14 00:00:00.000000"
        );
        assert_eq!(fmt(&m, "YYYY-MM-DD"), "2023-11-14");
        let m = ts(2023, 11, 14, 9, 5, 7, 123_456);
        assert_eq!(fmt(&m, "YYYY-MM-DD HH24:MI:SS"), "2023-11-14 09:05:07");
        assert_eq!(
            fmt(&m, "YYYY-MM-DD HH24:MI:SS.US"),
            "2023-11-14 09:05:07.123456"
        );
        assert_eq!(fmt(&m, "HH24:MI:SS.MS"), "09:05:07.123");
        assert_eq!(
            fmt(&m, "SS.FF1 SS.FF2 SS.FF4 SS.FF5"),
            "07.1 07.12 07.1234 07.12345"
        );
    }

    #[test]
    fn documentation_examples() {
        let m = ts(2002, 4, 20, 17, 31, 12, 660_000);
        assert_eq!(fmt(&m, "HH12:MI:SS"), "05:31:12");
        // 2023-10-31 was a Tuesday.
        let m = ts(2023, 10, 31, 5, 39, 18, 0);
        assert_eq!(fmt(&m, "Day, DD  HH12:MI:SS"), "Tuesday  , 31  05:39:18");
        assert_eq!(fmt(&m, "FMDay, FMDD  HH12:MI:SS"), "Tuesday, 31  05:39:18");
        let m = ts(2023, 10, 6, 5, 39, 18, 0);
        assert_eq!(fmt(&m, "FMDD"), "6");
        let interval = Moment::interval(0, 0, (15 * 3600 + 2 * 60 + 12) * MICROS_PER_SECOND);
        assert_eq!(fmt(&interval, "HH24:MI:SS"), "15:02:12");
    }

    #[test]
    fn regression_suite_fields() {
        let m = ts(1997, 2, 10, 17, 32, 1, 0);
        assert_eq!(
            fmt(&m, "DAY Day day DY Dy dy MONTH Month month RM MON Mon mon"),
            "MONDAY    Monday    monday    MON Mon mon FEBRUARY  February  february  II   FEB Feb feb"
        );
        assert_eq!(
            fmt(&m, "FMDAY FMDay FMday FMMONTH FMMonth FMmonth FMRM"),
            "MONDAY Monday monday FEBRUARY February february II"
        );
        assert_eq!(
            fmt(&m, "Y,YYY YYYY YYY YY Y CC Q MM WW DDD DD D J"),
            "1,997 1997 997 97 7 20 1 02 06 041 10 2 2450490"
        );
        assert_eq!(
            fmt(
                &m,
                "FMY,YYY FMYYYY FMYYY FMYY FMY FMCC FMQ FMMM FMWW FMDDD FMDD FMD FMJ"
            ),
            "1,997 1997 997 97 7 20 1 2 6 41 10 2 2450490"
        );
        assert_eq!(fmt(&m, "HH HH12 HH24 MI SS SSSS"), "05 05 17 32 01 63121");
        assert_eq!(
            fmt(
                &m,
                "\"HH:MI:SS is\" HH:MI:SS \"\\\"text between quote marks\\\"\""
            ),
            "HH:MI:SS is 05:32:01 \"text between quote marks\""
        );
        assert_eq!(
            fmt(&m, "HH24--text--MI--text--SS"),
            "17--text--32--text--01"
        );
        assert_eq!(fmt(&m, "YYYYTH YYYYth Jth"), "1997TH 1997th 2450490th");
        assert_eq!(
            fmt(
                &m,
                "YYYY A.D. YYYY a.d. YYYY bc HH:MI:SS P.M. HH:MI:SS p.m. HH:MI:SS pm"
            ),
            "1997 A.D. 1997 a.d. 1997 ad 05:32:01 P.M. 05:32:01 p.m. 05:32:01 pm"
        );
        assert_eq!(
            fmt(&m, "IYYY IYY IY I IW IDDD ID"),
            "1997 997 97 7 07 043 1"
        );
        assert_eq!(
            fmt(&m, "FMIYYY FMIYY FMIY FMI FMIW FMIDDD FMID"),
            "1997 997 97 7 7 43 1"
        );
    }

    #[test]
    fn twelve_hour_clock_and_meridiem() {
        let midnight = ts(2024, 3, 1, 0, 15, 0, 0);
        assert_eq!(fmt(&midnight, "HH12:MI AM"), "12:15 AM");
        let noon = ts(2024, 3, 1, 12, 0, 0, 0);
        assert_eq!(fmt(&noon, "HH:MI pm a.m."), "12:00 pm p.m.");
        let evening = ts(2024, 3, 1, 23, 59, 0, 0);
        assert_eq!(fmt(&evening, "FMHH12 A.M."), "11 P.M.");
    }

    #[test]
    fn ordinals_quarters_and_weeks() {
        let m = ts(2024, 3, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "DDth DDTH FMDDth Q Qth W"), "01st 01ST 1st 1 1st 1");
        let m = ts(2024, 3, 22, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "FMDDth W WW"), "22nd 4 12");
        let m = ts(2023, 11, 14, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "Q"), "4");
        // ISO weeks at year boundaries.
        let m = ts(2005, 1, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "IYYY-IW-ID YYYY-WW-D"), "2004-53-6 2005-01-7");
        let m = ts(2008, 12, 29, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "IYYY-IW-ID"), "2009-01-1");
        let m = ts(2000, 1, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "J"), "2451545");
    }

    #[test]
    fn zones() {
        let naive = ts(2024, 3, 1, 12, 0, 0, 0);
        assert_eq!(
            fmt(&naive, "[TZ] [tz] TZH:TZM OF FMOF"),
            "[] [] +00:00 +00 +0"
        );
        let zoned = match Moment::at(micros(2024, 3, 1, 12, 0, 0, 0), true) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(fmt(&zoned, "HH24:MI TZ tz OF"), "12:00 UTC utc +00");
    }

    #[test]
    fn translation_mode_is_english_unpadded() {
        let m = ts(1997, 2, 10, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "TMDay TMMonth TMmon|"), "Monday February feb|");
        assert_eq!(fmt(&m, "TMDAY|"), "MONDAY|");
    }

    #[test]
    fn bc_years_and_centuries() {
        // 1 BC is year 0.
        let m = ts(0, 3, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "YYYY BC CC"), "0001 BC -01");
        let m = ts(2000, 3, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "CC"), "20");
        let m = ts(2001, 3, 1, 0, 0, 0, 0);
        assert_eq!(fmt(&m, "CC"), "21");
    }

    #[test]
    fn intervals() {
        let long = Moment::interval(14, 3, (40 * 3600 + 5 * 60 + 6) * MICROS_PER_SECOND + 7000);
        assert_eq!(
            fmt(&long, "YYYY MM DD HH24 HH12 MI SS MS DDD"),
            "0001 02 03 40 04 05 06 007 423"
        );
        let negative = Moment::interval(0, 0, -(5 * 3600 + 30 * 60) * MICROS_PER_SECOND);
        assert_eq!(fmt(&negative, "HH24:MI"), "-05:-30");
        assert!(format_moment(&parse_date_template("Day"), &long).is_err());
        assert!(format_moment(&parse_date_template("TZ"), &long).is_err());
        assert_eq!(fmt(&Moment::interval(0, 0, 0), "Q|RM|"), "||");
        assert_eq!(fmt(&Moment::interval(12, 0, 0), "RM"), "XII ");
    }

    #[test]
    fn nanoseconds_round_to_microseconds() {
        assert_eq!(nanos_to_micros(1_499), 1);
        assert_eq!(nanos_to_micros(1_500), 2);
        assert_eq!(nanos_to_micros(-1_000), -1);
    }
}
