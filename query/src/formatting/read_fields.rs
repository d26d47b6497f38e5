//! Reading the fields a date/time template names out of text, as PostgreSQL's
//! `to_timestamp` reads them: leading spaces and spaces around fields are skipped; a separator
//! in the template matches any one space or punctuation character (exactly one character in
//! `FX` mode); a number reads its pattern's width unless `FM` is given or what follows it is
//! not a digit, in which case it reads all its digits (so `YYYY` takes five digits before a
//! `-`); names match without regard to case; and a field given twice must agree with itself.

use datafusion::common::Result as DfResult;

use super::errors::{datetime_out_of_range, invalid};
use super::format_datetime::{
    DAY_ABBREVIATIONS, DAY_NAMES, MONTH_ABBREVIATIONS, MONTH_NAMES, ROMAN_MONTHS,
};
use super::template::{DateField, DateMode, DateNode, Modifiers, is_c_space, is_separator};

/// Time zone abbreviations `TZ` reads, with their offsets east of UTC in seconds: the common
/// fixed ones of PostgreSQL's default set. Matched without regard to case, longest first.
pub(crate) const ZONE_ABBREVIATIONS: &[(&str, i32)] = &[
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("ZULU", 0),
    ("WET", 0),
    ("WEST", 3600),
    ("BST", 3600),
    ("CET", 3600),
    ("CEST", 7200),
    ("MET", 3600),
    ("MEST", 7200),
    ("EET", 7200),
    ("EEST", 10_800),
    ("MSK", 10_800),
    ("IST", 7200),
    ("JST", 32_400),
    ("KST", 32_400),
    ("HKT", 28_800),
    ("AWST", 28_800),
    ("ACST", 34_200),
    ("ACDT", 37_800),
    ("AEST", 36_000),
    ("AEDT", 39_600),
    ("NZST", 43_200),
    ("NZDT", 46_800),
    ("AST", -14_400),
    ("ADT", -10_800),
    ("EST", -18_000),
    ("EDT", -14_400),
    ("CST", -21_600),
    ("CDT", -18_000),
    ("MST", -25_200),
    ("MDT", -21_600),
    ("PST", -28_800),
    ("PDT", -25_200),
    ("AKST", -32_400),
    ("AKDT", -28_800),
    ("HST", -36_000),
];

const MERIDIEMS: [&str; 4] = ["am", "pm", "AM", "PM"];
const MERIDIEMS_DOTTED: [&str; 4] = ["a.m.", "p.m.", "A.M.", "P.M."];
const ERAS: [&str; 4] = ["ad", "bc", "AD", "BC"];
const ERAS_DOTTED: [&str; 4] = ["a.d.", "b.c.", "A.D.", "B.C."];

/// The fields read from the text, as PostgreSQL collects them before building a date: zero
/// means not given.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Gregorian or ISO week patterns, whichever the template used.
    pub(crate) mode: DateMode,
    /// `HH`, `HH12`, `HH24`.
    pub(crate) hour: i32,
    /// 1 for PM.
    pub(crate) pm: i32,
    /// `MI`.
    pub(crate) minute: i32,
    /// `SS`.
    pub(crate) second: i32,
    /// `SSSS`.
    pub(crate) seconds_of_day: i32,
    /// The day of the week, Sunday 1 (`D`, `ID`, names).
    pub(crate) weekday: i32,
    /// `DD` (and `W`, as the week's first day).
    pub(crate) day: i32,
    /// `DDD`, `IDDD` (and `WW`, as the week's first day).
    pub(crate) day_of_year: i32,
    /// `MM`, names, `RM`.
    pub(crate) month: i32,
    /// `MS`, scaled to milliseconds.
    pub(crate) millis: i32,
    /// The year in any of its patterns.
    pub(crate) year: i32,
    /// 1 for BC.
    pub(crate) bc: i32,
    /// `WW`, `IW`.
    pub(crate) week: i32,
    /// `W`.
    pub(crate) week_of_month: i32,
    /// `CC`.
    pub(crate) century: i32,
    /// `J`.
    pub(crate) julian: i32,
    /// `US`, `FFn`, scaled to microseconds.
    pub(crate) micros: i32,
    /// How many digits the year's pattern had (`YY` is 2), which decides whether `CC` applies.
    pub(crate) year_digits: i32,
    /// A twelve-hour clock pattern or a meridiem was given.
    pub(crate) twelve_hour: bool,
    /// The sign of `TZH`/`TZM`/`OF`, 0 when none was given.
    pub(crate) tz_sign: i32,
    /// `TZH`.
    pub(crate) tz_hours: i32,
    /// `TZM`.
    pub(crate) tz_minutes: i32,
    /// The `n` of `FFn`, the fractional digits to keep.
    pub(crate) fraction_digits: i32,
    /// The offset east of UTC of a `TZ` abbreviation, in seconds.
    pub(crate) zone_offset: Option<i32>,
}

impl Fields {
    fn set_mode(&mut self, mode: DateMode) -> DfResult<()> {
        if mode == DateMode::Neither {
            return Ok(());
        }
        if self.mode == DateMode::Neither {
            self.mode = mode;
        } else if self.mode != mode {
            return Err(invalid("invalid combination of date conventions"));
        }
        Ok(())
    }
}

/// Sets a field, refusing a second, different value for it.
fn set(field: &mut i32, value: i32, name: &str) -> DfResult<()> {
    if *field != 0 && *field != value {
        return Err(invalid(format!(
            "conflicting values for \"{name}\" field in formatting string"
        )));
    }
    *field = value;
    Ok(())
}

/// Years given with fewer than four digits are taken near 2020: 70 is 1970, 69 is 2069.
fn near_2020(year: i32) -> i32 {
    match year {
        ..70 => year + 2000,
        70..100 => year + 1900,
        100..520 => year + 2000,
        520..1000 => year + 1000,
        _ => year,
    }
}

/// C's `strtol` in base 10 on `bytes` from `start`: spaces, a sign, digits. Answers the value
/// (`None` if it overflows) and where the digits end, or `start` when there are none.
fn strtol(bytes: &[u8], start: usize) -> (Option<i64>, usize) {
    let mut i = start;
    while bytes.get(i).is_some_and(|b| is_c_space(char::from(*b))) {
        i += 1;
    }
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    let mut value: Option<i64> = Some(0);
    while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        let digit = i64::from(d - b'0');
        value = value.and_then(|v| v.checked_mul(10)).and_then(|v| {
            if negative {
                v.checked_sub(digit)
            } else {
                v.checked_add(digit)
            }
        });
        i += 1;
    }
    if i == digits_start {
        return (Some(0), start);
    }
    (value, i)
}

/// Reads fields out of the text, node by node.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    nodes: &'a [DateNode],
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Skips one character (not one byte).
    fn skip_char(&mut self) {
        if let Some(c) = self.rest().chars().next() {
            self.pos += c.len_utf8();
        }
    }

    /// Skips spaces, answering how many.
    fn skip_spaces(&mut self) -> i32 {
        let mut skipped = 0;
        while self.peek().is_some_and(|b| is_c_space(char::from(b))) {
            self.pos += 1;
            skipped += 1;
        }
        skipped
    }

    /// Skips the two characters of an ordinal suffix the template asks for (`1st`).
    fn skip_ordinal(&mut self, modifiers: &Modifiers) {
        if modifiers.ordinal.is_some() {
            self.skip_char();
            self.skip_char();
        }
    }

    /// Whether the node after `index` cannot be part of a number, so that the number at
    /// `index` may take all its digits.
    fn next_is_separator(&self, index: usize) -> bool {
        if let Some(DateNode::Field { modifiers, .. }) = self.nodes.get(index)
            && modifiers.ordinal.is_some()
        {
            return true;
        }
        match self.nodes.get(index + 1) {
            None => true,
            Some(DateNode::Field { keyword, .. }) => !keyword.is_digit,
            Some(DateNode::Literal(c) | DateNode::Separator(c) | DateNode::Space(c)) => {
                !c.is_ascii_digit()
            }
        }
    }

    /// Reads an integer for the node at `index`: `width` characters, or as many digits as
    /// there are in fill mode or before a non-digit. Answers the value and the characters
    /// consumed (spaces included).
    fn integer(&mut self, index: usize, width: usize, name: &str) -> DfResult<(i32, usize)> {
        let init = self.pos;
        self.skip_spaces();
        let bytes = self.bytes();
        let remaining = bytes.len().saturating_sub(self.pos);
        let copy = bytes
            .get(self.pos..self.pos + width.min(remaining))
            .unwrap_or_default();
        let shown = String::from_utf8_lossy(copy).into_owned();
        let fill = matches!(
            self.nodes.get(index),
            Some(DateNode::Field { modifiers, .. }) if modifiers.fill
        );
        let value = if fill || self.next_is_separator(index) {
            let (value, end) = strtol(bytes, init);
            self.pos = end;
            value
        } else {
            if remaining < width {
                return Err(invalid(format!(
                    "source string too short for \"{name}\" formatting field"
                )));
            }
            let (value, used) = strtol(copy, 0);
            if used > 0 && used < width {
                return Err(invalid(format!("invalid value \"{shown}\" for \"{name}\"")));
            }
            self.pos += used;
            value
        };
        if self.pos == init {
            return Err(invalid(format!("invalid value \"{shown}\" for \"{name}\"")));
        }
        let value = value.and_then(|v| i32::try_from(v).ok()).ok_or_else(|| {
            datetime_out_of_range(format!(
                "value for \"{name}\" in source string is out of range"
            ))
        })?;
        Ok((value, self.pos - init))
    }

    /// Reads an integer into `field`, refusing a conflicting earlier value.
    fn integer_into(
        &mut self,
        field: &mut i32,
        index: usize,
        width: usize,
        name: &str,
    ) -> DfResult<usize> {
        let (value, used) = self.integer(index, width, name)?;
        set(field, value, name)?;
        Ok(used)
    }

    /// Matches one of `words` at the current position, ignoring case; answers its index.
    fn word(&mut self, words: &[&str], name: &str) -> DfResult<usize> {
        let rest = self.rest().as_bytes();
        for (i, word) in words.iter().enumerate() {
            if rest
                .get(..word.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(word.as_bytes()))
            {
                self.pos += word.len();
                return Ok(i);
            }
        }
        let shown: String = self
            .rest()
            .chars()
            .take_while(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c'))
            .collect();
        Err(invalid(format!("invalid value \"{shown}\" for \"{name}\"")))
    }

    /// The sign before `TZH` or `OF`: an explicit `+`, `-` or space, else a `-` just skipped
    /// as a separator.
    fn zone_sign(&mut self, extra_skip: i32) -> i32 {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                -1
            }
            Some(b'+' | b' ') => {
                self.pos += 1;
                1
            }
            _ => {
                let before = self.pos.checked_sub(1).and_then(|i| self.bytes().get(i));
                if extra_skip > 0 && before == Some(&b'-') {
                    -1
                } else {
                    1
                }
            }
        }
    }

    /// `OF` (and `TZ` given as an offset): hours, and minutes after a colon.
    fn offset(
        &mut self,
        f: &mut Fields,
        index: usize,
        name: &str,
        extra_skip: i32,
    ) -> DfResult<()> {
        f.tz_sign = self.zone_sign(extra_skip);
        self.integer_into(&mut f.tz_hours, index, 2, name)?;
        if self.peek() == Some(b':') {
            self.pos += 1;
            self.integer_into(&mut f.tz_minutes, index, 2, name)?;
        }
        Ok(())
    }

    /// `Y,YYY`: thousands, a comma, then up to three digits.
    fn year_with_comma(&mut self, name: &str) -> DfResult<i32> {
        let bytes = self.rest().as_bytes();
        let invalid_value = || invalid(format!("invalid value \"{}\" for \"{name}\"", self.rest()));
        let (thousands, after) = match strtol(bytes, 0) {
            (Some(v), end) if end > 0 => (v, end),
            _ => return Err(invalid_value()),
        };
        if bytes.get(after) != Some(&b',') {
            return Err(invalid_value());
        }
        // Up to three characters (a sign counts) after any spaces, as scanf's `%03d` reads.
        let mut start = after + 1;
        while bytes.get(start).is_some_and(|b| is_c_space(char::from(*b))) {
            start += 1;
        }
        let window = bytes
            .get(start..(start + 3).min(bytes.len()))
            .unwrap_or_default();
        let (years, used) = match strtol(window, 0) {
            (Some(v), used) if used > 0 => (v, used),
            _ => return Err(invalid_value()),
        };
        let year = thousands
            .checked_mul(1000)
            .and_then(|t| t.checked_add(years))
            .and_then(|y| i32::try_from(y).ok())
            .ok_or_else(|| {
                datetime_out_of_range(format!(
                    "value for \"{name}\" in source string is out of range"
                ))
            })?;
        self.pos += start + used;
        Ok(year)
    }
}

/// Reads every field the template names out of `text`.
pub(crate) fn read_fields(text: &str, nodes: &[DateNode]) -> DfResult<Fields> {
    let mut f = Fields::default();
    let mut r = Reader {
        text,
        pos: 0,
        nodes,
    };
    let mut fixed = false;
    // Spaces skipped beyond those the template asked for, which a literal then need not skip.
    let mut extra_skip: i32 = 0;
    for (index, node) in nodes.iter().enumerate() {
        if r.at_end() {
            break;
        }
        let is_field = matches!(node, DateNode::Field { .. });
        let is_fx = matches!(
            node,
            DateNode::Field { keyword, .. } if keyword.field == DateField::FixedFormat
        );
        if !fixed && !is_fx && (is_field || index == 0) {
            extra_skip += r.skip_spaces();
        }
        let (keyword, modifiers) = match node {
            DateNode::Space(_) | DateNode::Separator(_) => {
                if fixed {
                    r.skip_char();
                } else {
                    extra_skip -= 1;
                    if r.peek()
                        .is_some_and(|b| is_c_space(char::from(b)) || is_separator(char::from(b)))
                    {
                        r.pos += 1;
                        extra_skip += 1;
                    }
                }
                continue;
            }
            DateNode::Literal(_) => {
                // A literal consumes one character, whatever it is, unless spaces were
                // skipped in its place.
                if !fixed && extra_skip > 0 {
                    extra_skip -= 1;
                } else {
                    r.skip_char();
                }
                continue;
            }
            DateNode::Field { keyword, modifiers } => (*keyword, *modifiers),
        };
        f.set_mode(keyword.mode)?;
        let name = keyword.name;
        let key_width = name.len();
        match keyword.field {
            DateField::FixedFormat => fixed = true,
            DateField::Meridiem { dots, .. } => {
                let i = r.word(if dots { &MERIDIEMS_DOTTED } else { &MERIDIEMS }, name)?;
                set(&mut f.pm, i32::from(i % 2 == 1), name)?;
                f.twelve_hour = true;
            }
            DateField::Hour12 => {
                r.integer_into(&mut f.hour, index, 2, name)?;
                f.twelve_hour = true;
                r.skip_ordinal(&modifiers);
            }
            DateField::Hour24 => {
                r.integer_into(&mut f.hour, index, 2, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Minute => {
                r.integer_into(&mut f.minute, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Second => {
                r.integer_into(&mut f.second, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Millisecond => {
                let used = r.integer_into(&mut f.millis, index, 3, name)?;
                // 5 and 50 are both half a second, 050 a twentieth.
                f.millis *= match used {
                    1 => 100,
                    2 => 10,
                    _ => 1,
                };
                r.skip_ordinal(&modifiers);
            }
            DateField::Fraction(_) | DateField::Microsecond => {
                let width = match keyword.field {
                    DateField::Fraction(digits) => {
                        f.fraction_digits = i32::from(digits);
                        usize::from(digits)
                    }
                    _ => 6,
                };
                let used = r.integer_into(&mut f.micros, index, width, name)?;
                let scale = u32::try_from(6usize.saturating_sub(used.max(1))).unwrap_or(0);
                f.micros = f.micros.checked_mul(10i32.pow(scale)).ok_or_else(|| {
                    datetime_out_of_range(format!(
                        "value for \"{name}\" in source string is out of range"
                    ))
                })?;
                r.skip_ordinal(&modifiers);
            }
            DateField::SecondsOfDay => {
                r.integer_into(&mut f.seconds_of_day, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::TzName { .. } => {
                if let Some((len, offset)) = zone_abbreviation(r.rest()) {
                    f.zone_offset = Some(offset);
                    // An abbreviation overrides any TZH/TZM read before it.
                    f.tz_sign = 0;
                    r.pos += len;
                } else if r.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                    return Err(invalid(format!(
                        "invalid value \"{}\" for \"{name}\"",
                        r.rest()
                    )));
                } else {
                    r.offset(&mut f, index, name, extra_skip)?;
                }
            }
            DateField::Offset => r.offset(&mut f, index, name, extra_skip)?,
            DateField::TzHour => {
                f.tz_sign = r.zone_sign(extra_skip);
                r.integer_into(&mut f.tz_hours, index, 2, name)?;
            }
            DateField::TzMinute => {
                if f.tz_sign == 0 {
                    f.tz_sign = 1;
                }
                r.integer_into(&mut f.tz_minutes, index, 2, name)?;
            }
            DateField::Era { dots, .. } => {
                let i = r.word(if dots { &ERAS_DOTTED } else { &ERAS }, name)?;
                set(&mut f.bc, i32::from(i % 2 == 1), name)?;
            }
            DateField::MonthName(_) | DateField::MonthAbbrev(_) => {
                let names: &[&str] = if matches!(keyword.field, DateField::MonthName(_)) {
                    &MONTH_NAMES
                } else {
                    &MONTH_ABBREVIATIONS
                };
                let i = r.word(names, name)?;
                set(&mut f.month, i32::try_from(i).unwrap_or(0) + 1, name)?;
            }
            DateField::Month => {
                r.integer_into(&mut f.month, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::DayName(_) | DateField::DayAbbrev(_) => {
                let names: &[&str] = if matches!(keyword.field, DateField::DayName(_)) {
                    &DAY_NAMES
                } else {
                    &DAY_ABBREVIATIONS
                };
                let i = i32::try_from(r.word(names, name)?).unwrap_or(0);
                // As PostgreSQL does, the check compares the 0-based index with the 1-based
                // day stored.
                set(&mut f.weekday, i, name)?;
                f.weekday += 1;
            }
            DateField::DayOfYear => {
                r.integer_into(&mut f.day_of_year, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::IsoDayOfYear => {
                r.integer_into(&mut f.day_of_year, index, 3, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::DayOfMonth => {
                r.integer_into(&mut f.day, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::DayOfWeek => {
                r.integer_into(&mut f.weekday, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::IsoDayOfWeek => {
                r.integer_into(&mut f.weekday, index, 1, name)?;
                // Monday 1 to Sunday 7 becomes Sunday 1 to Saturday 7.
                f.weekday = f.weekday.checked_add(1).filter(|d| *d <= 7).unwrap_or(1);
                r.skip_ordinal(&modifiers);
            }
            DateField::WeekOfYear | DateField::IsoWeek => {
                r.integer_into(&mut f.week, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Quarter => {
                // Read and ignored: a quarter names no one date.
                r.integer(index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Century => {
                r.integer_into(&mut f.century, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::YearWithComma => {
                let year = r.year_with_comma(name)?;
                set(&mut f.year, year, name)?;
                f.year_digits = 4;
                r.skip_ordinal(&modifiers);
            }
            DateField::Year(digits) | DateField::IsoYear(digits) => {
                let used = r.integer_into(&mut f.year, index, key_width, name)?;
                if digits < 4 && used < 4 {
                    f.year = near_2020(f.year);
                }
                f.year_digits = i32::from(digits);
                r.skip_ordinal(&modifiers);
            }
            DateField::RomanMonth { .. } => {
                let i = i32::try_from(r.word(&ROMAN_MONTHS, name)?).unwrap_or(0);
                set(&mut f.month, 12 - i, name)?;
            }
            DateField::WeekOfMonth => {
                r.integer_into(&mut f.week_of_month, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
            DateField::Julian => {
                r.integer_into(&mut f.julian, index, key_width, name)?;
                r.skip_ordinal(&modifiers);
            }
        }
        if !fixed {
            extra_skip = r.skip_spaces();
        }
    }
    Ok(f)
}

/// The longest abbreviation in [`ZONE_ABBREVIATIONS`] that starts `text`, ignoring case: its
/// length and offset.
fn zone_abbreviation(text: &str) -> Option<(usize, i32)> {
    let bytes = text.as_bytes();
    ZONE_ABBREVIATIONS
        .iter()
        .filter(|(abbrev, _)| {
            bytes
                .get(..abbrev.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(abbrev.as_bytes()))
        })
        .max_by_key(|(abbrev, _)| abbrev.len())
        .map(|(abbrev, offset)| (abbrev.len(), *offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_abbreviations_match_the_longest() {
        assert_eq!(zone_abbreviation("cest rest"), Some((4, 7200)));
        assert_eq!(zone_abbreviation("UTC"), Some((3, 0)));
        assert_eq!(zone_abbreviation("+05"), None);
    }

    #[test]
    fn strtol_reads_like_c() {
        assert_eq!(strtol(b"  -12x", 0), (Some(-12), 5));
        assert_eq!(strtol(b"+7", 0), (Some(7), 2));
        assert_eq!(strtol(b"x", 0), (Some(0), 0));
        assert_eq!(strtol(b" -", 0), (Some(0), 0));
        assert_eq!(strtol(b"99999999999999999999", 0).0, None);
    }

    #[test]
    fn two_digit_years_are_taken_near_2020() {
        assert_eq!(near_2020(69), 2069);
        assert_eq!(near_2020(70), 1970);
        assert_eq!(near_2020(519), 2519);
        assert_eq!(near_2020(520), 1520);
    }
}
