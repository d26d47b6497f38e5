//! Time and duration helpers shared by the engine and its callers: the clock, partition
//! arithmetic, human-readable spans and timestamps, and the one parser of spans.
//!
//! They live together so that every front end formats a retention, a floor or a partition the
//! same way, and so that a span typed on the command line and one given in SQL (`'90 days'`)
//! go through one parser with one set of error texts.

use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::arrow::datatypes::TimestampNanosecondType;
use datafusion::arrow::temporal_conversions::as_datetime;

pub use crate::limits::PARTITION_NANOS;

/// Days from 0001-01-01 (day 1 of the Common Era, as `chrono`'s `num_days_from_ce` counts) to
/// the Unix epoch 1970-01-01: converts between the two day numberings.
pub const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

const NANOS_PER_MICRO: i64 = 1_000;
const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// The current wall-clock time in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The start of the oldest day a table with `retention_ns` keeps at `now`: whole days
/// (partitions) are dropped once their end is older than the retention.
pub fn retention_floor(now: i64, retention_ns: i64) -> i64 {
    now.saturating_sub(retention_ns).div_euclid(PARTITION_NANOS) * PARTITION_NANOS
}

/// A span in the largest whole unit that fits (`7 days`, `36 hours`).
pub fn describe_span(ns: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (NANOS_PER_DAY, "days"),
        (NANOS_PER_HOUR, "hours"),
        (NANOS_PER_MINUTE, "minutes"),
        (NANOS_PER_SECOND, "seconds"),
    ];
    for (unit, name) in UNITS {
        if ns >= unit && ns % unit == 0 {
            return format!("{} {name}", ns / unit);
        }
    }
    format!("{ns} ns")
}

/// A nanosecond timestamp as RFC 3339 (UTC).
pub fn rfc3339(ns: i64) -> String {
    match as_datetime::<TimestampNanosecondType>(ns) {
        Some(dt) => format!("{}", dt.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        None => format!("{ns} ns"),
    }
}

/// `YYYY-MM-DD` of a partition (days since the Unix epoch).
pub fn partition_date(days: i64) -> String {
    // Howard Hinnant's civil-from-days algorithm; 719_468 shifts the epoch to 0000-03-01 so
    // that leap days fall at the end of its years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a positive span into nanoseconds, in either of the two forms Eddy accepts:
/// - compact, as on the command line: a whole number and a unit written together (`500ms`,
///   `10s`, `30m`, `2h`, `100us`, `5ns`); a bare number is seconds;
/// - an interval, as in SQL and retention settings: `90 days`, `12 hours`, `1 day 2 hours`,
///   `1.5h`, `2 weeks`. Months and years are refused: their length in nanoseconds varies.
///
/// Text without spaces is read in the compact form first, so `90` is 90 seconds (an SQL
/// interval would read it as months). Errors are the texts a user sees, without a prefix, so
/// callers can say which setting they belong to.
pub fn parse_span_ns(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.contains(char::is_whitespace) {
        return parse_interval_ns(s);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let Ok(n) = n.parse::<i64>() else {
        return Err(format!(
            "invalid interval \"{s}\": expected a number and a unit, e.g. 10s"
        ));
    };
    let mult = match unit {
        "ns" => 1,
        "us" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" | "" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        // Not a compact unit, but maybe an interval written without spaces (`7d`, `1.5h`).
        _ => {
            return parse_interval_ns(s).map_err(|e| {
                if e == INTERVAL_NOT_POSITIVE || e == MONTHS_REFUSED {
                    e
                } else {
                    format!("invalid interval unit \"{unit}\": use ns, us, ms, s, m or h")
                }
            });
        }
    };
    let ns = n
        .checked_mul(mult)
        .ok_or_else(|| format!("interval \"{s}\" is too long"))?;
    if ns <= 0 {
        return Err(INTERVAL_NOT_POSITIVE.into());
    }
    Ok(ns)
}

const INTERVAL_NOT_POSITIVE: &str = "interval must be positive";
const MONTHS_REFUSED: &str = "give a fixed span such as '90 days', not months";

/// The interval form of [`parse_span_ns`].
fn parse_interval_ns(s: &str) -> Result<i64, String> {
    let v =
        parse_interval_month_day_nano(s).map_err(|e| format!("invalid interval \"{s}\": {e}"))?;
    if v.months != 0 {
        return Err(MONTHS_REFUSED.into());
    }
    let ns = i64::from(v.days)
        .saturating_mul(NANOS_PER_DAY)
        .saturating_add(v.nanoseconds);
    if ns <= 0 {
        return Err(INTERVAL_NOT_POSITIVE.into());
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_spans_as_on_the_command_line() {
        assert_eq!(parse_span_ns("10s"), Ok(10 * NANOS_PER_SECOND));
        assert_eq!(parse_span_ns("500ms"), Ok(500 * NANOS_PER_MILLI));
        assert_eq!(parse_span_ns("2h"), Ok(2 * NANOS_PER_HOUR));
        assert_eq!(parse_span_ns("30m"), Ok(30 * NANOS_PER_MINUTE));
        assert_eq!(parse_span_ns("100us"), Ok(100_000));
        assert_eq!(parse_span_ns("5ns"), Ok(5));
        assert_eq!(parse_span_ns("90"), Ok(90 * NANOS_PER_SECOND));
        assert_eq!(parse_span_ns(" 7s "), Ok(7 * NANOS_PER_SECOND));
    }

    #[test]
    fn compact_errors_keep_the_command_line_texts() {
        assert_eq!(
            parse_span_ns("abc"),
            Err("invalid interval \"abc\": expected a number and a unit, e.g. 10s".into())
        );
        assert_eq!(
            parse_span_ns(""),
            Err("invalid interval \"\": expected a number and a unit, e.g. 10s".into())
        );
        assert_eq!(
            parse_span_ns("10x"),
            Err("invalid interval unit \"x\": use ns, us, ms, s, m or h".into())
        );
        assert_eq!(parse_span_ns("0s"), Err("interval must be positive".into()));
        assert!(parse_span_ns("99999999999999h").is_err());
    }

    #[test]
    fn interval_spans_as_in_retention() {
        assert_eq!(parse_span_ns("90 days"), Ok(90 * NANOS_PER_DAY));
        assert_eq!(parse_span_ns("12 hours"), Ok(12 * NANOS_PER_HOUR));
        assert_eq!(
            parse_span_ns("1 day 2 hours"),
            Ok(NANOS_PER_DAY + 2 * NANOS_PER_HOUR)
        );
        assert_eq!(parse_span_ns("7d"), Ok(7 * NANOS_PER_DAY));
        assert_eq!(parse_span_ns("1 week"), Ok(7 * NANOS_PER_DAY));
    }

    #[test]
    fn interval_errors() {
        assert_eq!(
            parse_span_ns("3 months"),
            Err("give a fixed span such as '90 days', not months".into())
        );
        assert_eq!(
            parse_span_ns("1 year"),
            Err("give a fixed span such as '90 days', not months".into())
        );
        assert_eq!(
            parse_span_ns("0 days"),
            Err("interval must be positive".into())
        );
        assert_eq!(
            parse_span_ns("-2 days"),
            Err("interval must be positive".into())
        );
        let e = parse_span_ns("ten days").expect_err("not a number");
        assert!(e.starts_with("invalid interval \"ten days\""), "{e}");
    }

    #[test]
    fn spans_and_dates_read_back() {
        assert_eq!(describe_span(7 * NANOS_PER_DAY), "7 days");
        assert_eq!(describe_span(36 * NANOS_PER_HOUR), "36 hours");
        assert_eq!(describe_span(1500), "1500 ns");
        assert_eq!(partition_date(0), "1970-01-01");
        assert_eq!(partition_date(-1), "1969-12-31");
        assert_eq!(partition_date(19_000), "2022-01-08");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // One day kept at 00:00:00.000000005 of day 1: day 0 is still (partly) inside it.
        assert_eq!(retention_floor(PARTITION_NANOS + 5, PARTITION_NANOS), 0);
    }
}
