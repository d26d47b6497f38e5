//! Field values of COPY's text and CSV input: float8 with PostgreSQL's spellings of NaN and
//! infinity, PostgreSQL's boolean words, and ISO 8601 style timestamps with an optional
//! zone. Both formats read a field's text the same way once it is unescaped or unquoted, so
//! the parsers live here rather than in either format.

use chrono::{Datelike, NaiveDate};

use eddy_storage::time::UNIX_EPOCH_DAYS_FROM_CE;

/// float8 input: ordinary numbers plus `NaN`, `Infinity` and `inf` in any case, optionally
/// signed, with surrounding whitespace ignored; overflow is an error as in PostgreSQL.
pub(super) fn parse_f64(s: &str) -> Option<f64> {
    let t = s.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let v: f64 = t.parse().ok()?;
    // The spelled-out forms were handled above, so a non-finite result here is an overflow.
    v.is_finite().then_some(v)
}

pub(super) fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["t", "true", "y", "yes", "on", "1"];
    const FALSE: [&str; 6] = ["f", "false", "n", "no", "off", "0"];
    let t = s.trim();
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// A cursor over ASCII input for the timestamp parser.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// A decimal number of `min..=max` digits; consumes nothing when there are too few.
    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.pos;
        let mut value = 0i64;
        let mut count = 0;
        while count < max
            && let Some(c @ b'0'..=b'9') = self.peek()
        {
            value = value * 10 + i64::from(c - b'0');
            self.pos += 1;
            count += 1;
        }
        if count < min {
            self.pos = start;
            return None;
        }
        Some(value)
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fraction]]` (or with `T`) and an optional zone
/// (`Z`, `UTC`, `+HH`, `+HH:MM`, `-HHMM`) into nanoseconds since the Unix epoch, UTC.
pub(super) fn parse_timestamp_ns(s: &str) -> Option<i64> {
    let mut p = Scanner {
        bytes: s.trim().as_bytes(),
        pos: 0,
    };
    let year = p.number(1, 6)?;
    if !p.eat(b'-') {
        return None;
    }
    let month = p.number(1, 2)?;
    if !p.eat(b'-') {
        return None;
    }
    let day = p.number(1, 2)?;
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )?;
    let days = i64::from(Datelike::num_days_from_ce(&date)) - UNIX_EPOCH_DAYS_FROM_CE;

    let mut seconds_of_day = 0i64;
    let mut nanos = 0i64;
    let mut offset_seconds = 0i64;
    if !p.at_end() {
        match p.peek() {
            Some(b' ' | b'T' | b't') => p.pos += 1,
            _ => return None,
        }
        p.skip_spaces();
        let hour = p.number(1, 2)?;
        if !p.eat(b':') {
            return None;
        }
        let minute = p.number(1, 2)?;
        let mut second = 0;
        if p.eat(b':') {
            second = p.number(1, 2)?;
            if p.eat(b'.') {
                let mut digits = 0u32;
                while let Some(c @ b'0'..=b'9') = p.peek() {
                    // Digits past nanoseconds cannot be stored; they are dropped.
                    if digits < 9 {
                        nanos = nanos * 10 + i64::from(c - b'0');
                        digits += 1;
                    }
                    p.pos += 1;
                }
                if digits == 0 {
                    return None;
                }
                nanos *= 10i64.pow(9 - digits);
            }
        }
        // PostgreSQL accepts 24:00:00 (the next midnight) and a leap second 60.
        if hour > 24 || minute > 59 || second > 60 {
            return None;
        }
        if hour == 24 && (minute != 0 || second != 0 || nanos != 0) {
            return None;
        }
        seconds_of_day = hour * 3600 + minute * 60 + second;
        p.skip_spaces();
        if !p.at_end() {
            offset_seconds = parse_zone(&mut p)?;
        }
    }
    if !p.at_end() {
        return None;
    }
    days.checked_mul(86_400)?
        .checked_add(seconds_of_day)?
        .checked_sub(offset_seconds)?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// A zone suffix as seconds east of UTC.
fn parse_zone(p: &mut Scanner<'_>) -> Option<i64> {
    let rest = p.bytes.get(p.pos..)?;
    if rest.eq_ignore_ascii_case(b"z") || rest.eq_ignore_ascii_case(b"utc") {
        p.pos = p.bytes.len();
        return Some(0);
    }
    let sign = match p.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    p.pos += 1;
    let hours = p.number(1, 2)?;
    let minutes = if p.eat(b':') {
        p.number(2, 2)?
    } else {
        p.number(2, 2).unwrap_or(0)
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::test_support::NS_2024;

    #[test]
    fn timestamps_with_offsets() {
        let cases: &[(&str, i64)] = &[
            ("2024-01-01", NS_2024),
            ("2024-01-01 00:00:00", NS_2024),
            ("2024-01-01T00:00:00Z", NS_2024),
            ("2024-01-01 02:00:00+02", NS_2024),
            ("2024-01-01 02:30:00+02:30", NS_2024),
            ("2023-12-31 19:00:00-0500", NS_2024),
            ("2023-12-31 23:00:00 -01:00", NS_2024),
            ("2024-01-01 00:00:00 UTC", NS_2024),
            ("  2024-01-01 00:00  ", NS_2024),
            ("2023-12-31 24:00:00", NS_2024),
            ("2024-01-01 00:00:00.123456789", NS_2024 + 123_456_789),
            ("2024-01-01 00:00:00.1234567891", NS_2024 + 123_456_789),
            ("2024-01-01T00:00:01.5+00:00", NS_2024 + 1_500_000_000),
            ("1969-12-31 23:59:59", -1_000_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp_ns(text), Some(*want), "{text}");
        }
        for bad in [
            "",
            "1700000000",
            "2024-13-01",
            "2024-02-30",
            "2024-01-01 25:00:00",
            "2024-01-01 24:00:01",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00+",
            "2024-01-01 00:00:00 junk",
            "3000-01-01",
        ] {
            assert_eq!(parse_timestamp_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_f64(" 1.5 "), Some(1.5));
        assert_eq!(parse_f64("INF"), Some(f64::INFINITY));
        assert_eq!(parse_f64("-infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_f64("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_f64("1e400"), None);
        assert_eq!(parse_f64("abc"), None);
        for t in ["t", "TRUE", " yes ", "On", "1", "y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["f", "False", "no", "OFF", "0", "N"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("2"), None);
    }
}
