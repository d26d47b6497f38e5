//! Date/time templates (`YYYY-MM-DD HH24:MI:SS`), split into patterns and literal characters
//! the way PostgreSQL splits them, for both `to_char` and `to_timestamp`/`to_date`; and the
//! quoting rules number templates share.
//!
//! Patterns are matched case-sensitively against PostgreSQL's table, longer ones before their
//! prefixes (`HH24` before `HH`): `Month`, `MONTH` and `month` are three patterns, and `Mm` is
//! none (two literal letters).

/// How a name pattern writes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Case {
    /// `MONDAY`
    Upper,
    /// `Monday`
    Capitalized,
    /// `monday`
    Lower,
}

/// Which way of counting days a pattern belongs to; one template may not mix the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum DateMode {
    /// Neither (times, names of the era or meridiem, Julian days).
    #[default]
    Neither,
    /// Years, months and days of the month or year.
    Gregorian,
    /// ISO 8601 years, weeks and days of the week.
    IsoWeek,
}

/// What a date/time pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DateField {
    /// `AD`, `BC`, `A.D.`, `B.C.` and lower case: the era, whichever of the two is written.
    Era { dots: bool, upper: bool },
    /// `AM`, `PM`, `A.M.`, `P.M.` and lower case: the meridiem.
    Meridiem { dots: bool, upper: bool },
    /// `CC`: the century.
    Century,
    /// `DAY`, `Day`, `day`.
    DayName(Case),
    /// `DY`, `Dy`, `dy`.
    DayAbbrev(Case),
    /// `DDD`: the day of the year.
    DayOfYear,
    /// `DD`: the day of the month.
    DayOfMonth,
    /// `D`: the day of the week, Sunday 1.
    DayOfWeek,
    /// `FF1` to `FF6`: that many digits of the fraction of a second.
    Fraction(u8),
    /// `FX`: fixed format from here on (parsing only).
    FixedFormat,
    /// `HH24`.
    Hour24,
    /// `HH`, `HH12`.
    Hour12,
    /// `IDDD`: the day of the ISO year.
    IsoDayOfYear,
    /// `ID`: the ISO day of the week, Monday 1.
    IsoDayOfWeek,
    /// `IW`: the ISO week.
    IsoWeek,
    /// `IYYY`, `IYY`, `IY`, `I`: the last digits of the ISO year.
    IsoYear(u8),
    /// `J`: the Julian day.
    Julian,
    /// `MI`.
    Minute,
    /// `MM`: the month number.
    Month,
    /// `MONTH`, `Month`, `month`.
    MonthName(Case),
    /// `MON`, `Mon`, `mon`.
    MonthAbbrev(Case),
    /// `MS`: milliseconds.
    Millisecond,
    /// `OF`: the offset from UTC.
    Offset,
    /// `Q`: the quarter.
    Quarter,
    /// `RM`, `rm`: the month in Roman numerals.
    RomanMonth { upper: bool },
    /// `SSSS`, `SSSSS`: seconds since midnight.
    SecondsOfDay,
    /// `SS`.
    Second,
    /// `TZH`: hours of the offset from UTC.
    TzHour,
    /// `TZM`: minutes of the offset from UTC.
    TzMinute,
    /// `TZ`, `tz`: the time zone's abbreviation.
    TzName { upper: bool },
    /// `US`: microseconds.
    Microsecond,
    /// `WW`: the week of the year, counted from January 1st.
    WeekOfYear,
    /// `W`: the week of the month, counted from its first day.
    WeekOfMonth,
    /// `Y,YYY`: the year with a comma.
    YearWithComma,
    /// `YYYY`, `YYY`, `YY`, `Y`: the last digits of the year.
    Year(u8),
}

/// A date/time pattern as written in templates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct DateKeyword {
    /// The pattern's spelling, which error messages quote.
    pub name: &'static str,
    /// What it stands for.
    pub field: DateField,
    /// Whether its input is digits, which decides how many digits the pattern before it reads.
    pub is_digit: bool,
    /// Which way of counting days it belongs to.
    pub mode: DateMode,
}

const fn kw(name: &'static str, field: DateField, is_digit: bool, mode: DateMode) -> DateKeyword {
    DateKeyword {
        name,
        field,
        is_digit,
        mode,
    }
}

use Case::{Capitalized, Lower, Upper};
use DateField as F;
use DateMode::{Gregorian as G, IsoWeek as I, Neither as N};

/// PostgreSQL's date/time patterns. Order matters: the first entry that starts the rest of
/// the template wins, so longer patterns come before their prefixes.
static DATE_KEYWORDS: &[DateKeyword] = &[
    kw(
        "A.D.",
        F::Era {
            dots: true,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "A.M.",
        F::Meridiem {
            dots: true,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "AD",
        F::Era {
            dots: false,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "AM",
        F::Meridiem {
            dots: false,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "B.C.",
        F::Era {
            dots: true,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "BC",
        F::Era {
            dots: false,
            upper: true,
        },
        false,
        N,
    ),
    kw("CC", F::Century, true, N),
    kw("DAY", F::DayName(Upper), false, N),
    kw("DDD", F::DayOfYear, true, G),
    kw("DD", F::DayOfMonth, true, G),
    kw("DY", F::DayAbbrev(Upper), false, N),
    kw("Day", F::DayName(Capitalized), false, N),
    kw("Dy", F::DayAbbrev(Capitalized), false, N),
    kw("D", F::DayOfWeek, true, G),
    kw("FF1", F::Fraction(1), true, N),
    kw("FF2", F::Fraction(2), true, N),
    kw("FF3", F::Fraction(3), true, N),
    kw("FF4", F::Fraction(4), true, N),
    kw("FF5", F::Fraction(5), true, N),
    kw("FF6", F::Fraction(6), true, N),
    kw("FX", F::FixedFormat, false, N),
    kw("HH24", F::Hour24, true, N),
    kw("HH12", F::Hour12, true, N),
    kw("HH", F::Hour12, true, N),
    kw("IDDD", F::IsoDayOfYear, true, I),
    kw("ID", F::IsoDayOfWeek, true, I),
    kw("IW", F::IsoWeek, true, I),
    kw("IYYY", F::IsoYear(4), true, I),
    kw("IYY", F::IsoYear(3), true, I),
    kw("IY", F::IsoYear(2), true, I),
    kw("I", F::IsoYear(1), true, I),
    kw("J", F::Julian, true, N),
    kw("MI", F::Minute, true, N),
    kw("MM", F::Month, true, G),
    kw("MONTH", F::MonthName(Upper), false, G),
    kw("MON", F::MonthAbbrev(Upper), false, G),
    kw("MS", F::Millisecond, true, N),
    kw("Month", F::MonthName(Capitalized), false, G),
    kw("Mon", F::MonthAbbrev(Capitalized), false, G),
    kw("OF", F::Offset, false, N),
    kw(
        "P.M.",
        F::Meridiem {
            dots: true,
            upper: true,
        },
        false,
        N,
    ),
    kw(
        "PM",
        F::Meridiem {
            dots: false,
            upper: true,
        },
        false,
        N,
    ),
    kw("Q", F::Quarter, true, N),
    kw("RM", F::RomanMonth { upper: true }, false, G),
    kw("SSSSS", F::SecondsOfDay, true, N),
    kw("SSSS", F::SecondsOfDay, true, N),
    kw("SS", F::Second, true, N),
    kw("TZH", F::TzHour, false, N),
    kw("TZM", F::TzMinute, true, N),
    kw("TZ", F::TzName { upper: true }, false, N),
    kw("US", F::Microsecond, true, N),
    kw("WW", F::WeekOfYear, true, G),
    kw("W", F::WeekOfMonth, true, G),
    kw("Y,YYY", F::YearWithComma, true, G),
    kw("YYYY", F::Year(4), true, G),
    kw("YYY", F::Year(3), true, G),
    kw("YY", F::Year(2), true, G),
    kw("Y", F::Year(1), true, G),
    kw(
        "a.d.",
        F::Era {
            dots: true,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "a.m.",
        F::Meridiem {
            dots: true,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "ad",
        F::Era {
            dots: false,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "am",
        F::Meridiem {
            dots: false,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "b.c.",
        F::Era {
            dots: true,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "bc",
        F::Era {
            dots: false,
            upper: false,
        },
        false,
        N,
    ),
    kw("cc", F::Century, true, N),
    kw("day", F::DayName(Lower), false, N),
    kw("ddd", F::DayOfYear, true, G),
    kw("dd", F::DayOfMonth, true, G),
    kw("dy", F::DayAbbrev(Lower), false, N),
    kw("d", F::DayOfWeek, true, G),
    kw("ff1", F::Fraction(1), true, N),
    kw("ff2", F::Fraction(2), true, N),
    kw("ff3", F::Fraction(3), true, N),
    kw("ff4", F::Fraction(4), true, N),
    kw("ff5", F::Fraction(5), true, N),
    kw("ff6", F::Fraction(6), true, N),
    kw("fx", F::FixedFormat, false, N),
    kw("hh24", F::Hour24, true, N),
    kw("hh12", F::Hour12, true, N),
    kw("hh", F::Hour12, true, N),
    kw("iddd", F::IsoDayOfYear, true, I),
    kw("id", F::IsoDayOfWeek, true, I),
    kw("iw", F::IsoWeek, true, I),
    kw("iyyy", F::IsoYear(4), true, I),
    kw("iyy", F::IsoYear(3), true, I),
    kw("iy", F::IsoYear(2), true, I),
    kw("i", F::IsoYear(1), true, I),
    kw("j", F::Julian, true, N),
    kw("mi", F::Minute, true, N),
    kw("mm", F::Month, true, G),
    kw("month", F::MonthName(Lower), false, G),
    kw("mon", F::MonthAbbrev(Lower), false, G),
    kw("ms", F::Millisecond, true, N),
    kw("of", F::Offset, false, N),
    kw(
        "p.m.",
        F::Meridiem {
            dots: true,
            upper: false,
        },
        false,
        N,
    ),
    kw(
        "pm",
        F::Meridiem {
            dots: false,
            upper: false,
        },
        false,
        N,
    ),
    kw("q", F::Quarter, true, N),
    kw("rm", F::RomanMonth { upper: false }, false, G),
    kw("sssss", F::SecondsOfDay, true, N),
    kw("ssss", F::SecondsOfDay, true, N),
    kw("ss", F::Second, true, N),
    kw("tzh", F::TzHour, false, N),
    kw("tzm", F::TzMinute, true, N),
    kw("tz", F::TzName { upper: false }, false, N),
    kw("us", F::Microsecond, true, N),
    kw("ww", F::WeekOfYear, true, G),
    kw("w", F::WeekOfMonth, true, G),
    kw("y,yyy", F::YearWithComma, true, G),
    kw("yyyy", F::Year(4), true, G),
    kw("yyy", F::Year(3), true, G),
    kw("yy", F::Year(2), true, G),
    kw("y", F::Year(1), true, G),
];

/// Which ordinal suffix `TH` (upper case) or `th` (lower case) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ordinal {
    /// `ST`, `ND`, `RD`, `TH`.
    Upper,
    /// `st`, `nd`, `rd`, `th`.
    Lower,
}

/// The modifiers written around a date/time pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Modifiers {
    /// `FM` before it: no padding (and, when parsing, as many digits as there are).
    pub fill: bool,
    /// `TM` before it: names in the locale's language, which in the C locale is English, and
    /// never padded.
    pub translate: bool,
    /// `TH` or `th` after it: an ordinal suffix.
    pub ordinal: Option<Ordinal>,
}

/// One element of a date/time template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DateNode {
    /// A pattern with its modifiers.
    Field {
        keyword: &'static DateKeyword,
        modifiers: Modifiers,
    },
    /// A character that is copied (`to_char`) or skipped (parsing): letters, digits, and
    /// everything inside double quotes.
    Literal(char),
    /// Punctuation outside quotes; when parsing it matches any one punctuation character.
    Separator(char),
    /// White space outside quotes; when parsing it matches any one space or punctuation.
    Space(char),
}

/// Splits a date/time template into its patterns and literal characters.
pub(crate) fn parse_date_template(template: &str) -> Vec<DateNode> {
    let mut nodes = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let mut modifiers = Modifiers::default();
        if let Some(after) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            modifiers.fill = true;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("TM").or_else(|| rest.strip_prefix("tm")) {
            modifiers.translate = true;
            rest = after;
        }
        if rest.is_empty() {
            break;
        }
        if let Some(keyword) = DATE_KEYWORDS.iter().find(|k| rest.starts_with(k.name)) {
            rest = rest.get(keyword.name.len()..).unwrap_or_default();
            if let Some(after) = rest.strip_prefix("TH") {
                modifiers.ordinal = Some(Ordinal::Upper);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("th") {
                modifiers.ordinal = Some(Ordinal::Lower);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("SP") {
                // Spell mode: accepted and ignored, as PostgreSQL does.
                rest = after;
            }
            nodes.push(DateNode::Field { keyword, modifiers });
        } else {
            rest = take_literal(rest, |c, quoted| {
                nodes.push(if quoted {
                    DateNode::Literal(c)
                } else if is_separator(c) {
                    DateNode::Separator(c)
                } else if is_c_space(c) {
                    DateNode::Space(c)
                } else {
                    DateNode::Literal(c)
                });
            });
        }
    }
    nodes
}

/// Takes the literal text at the start of `rest` (which starts no pattern), hands each of its
/// characters to `emit` with whether it was quoted, and returns what follows. A double-quoted
/// string is literal text in which a backslash quotes the next character; outside quotes, a
/// backslash only quotes a double quote.
pub(crate) fn take_literal(rest: &str, mut emit: impl FnMut(char, bool)) -> &str {
    let mut chars = rest.chars();
    match chars.next() {
        Some('"') => {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some(next) => emit(next, true),
                        None => emit('\\', true),
                    },
                    other => emit(other, true),
                }
            }
            chars.as_str()
        }
        Some('\\') if chars.as_str().starts_with('"') => {
            chars.next();
            emit('"', false);
            chars.as_str()
        }
        Some(c) => {
            emit(c, false);
            chars.as_str()
        }
        None => rest,
    }
}

/// PostgreSQL's separators: printable ASCII that is neither a letter nor a digit nor a space.
pub(crate) fn is_separator(c: char) -> bool {
    c.is_ascii_graphic() && !c.is_ascii_alphanumeric()
}

/// White space as C's `isspace` sees it in the C locale (which, unlike Rust's ASCII white
/// space, includes vertical tab).
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(template: &str) -> Vec<String> {
        parse_date_template(template)
            .into_iter()
            .map(|n| match n {
                DateNode::Field { keyword, modifiers } => {
                    let mut s = String::new();
                    if modifiers.fill {
                        s.push_str("FM");
                    }
                    if modifiers.translate {
                        s.push_str("TM");
                    }
                    s.push_str(keyword.name);
                    match modifiers.ordinal {
                        Some(Ordinal::Upper) => s.push_str("TH"),
                        Some(Ordinal::Lower) => s.push_str("th"),
                        None => {}
                    }
                    format!("<{s}>")
                }
                DateNode::Literal(c) => format!("'{c}'"),
                DateNode::Separator(c) => format!("sep{c}"),
                DateNode::Space(_) => "space".to_string(),
            })
            .collect()
    }

    #[test]
    fn longest_patterns_win() {
        assert_eq!(
            names("YYYY-MM-DD HH24:MI:SS.US"),
            [
                "<YYYY>", "sep-", "<MM>", "sep-", "<DD>", "space", "<HH24>", "sep:", "<MI>",
                "sep:", "<SS>", "sep.", "<US>"
            ]
        );
        assert_eq!(names("HH12HH"), ["<HH12>", "<HH>"]);
        assert_eq!(names("SSSSS"), ["<SSSSS>"]);
        assert_eq!(names("Y,YYY"), ["<Y,YYY>"]);
        assert_eq!(names("IYYYIWID"), ["<IYYY>", "<IW>", "<ID>"]);
    }

    #[test]
    fn case_decides_the_pattern() {
        assert_eq!(names("Month"), ["<Month>"]);
        assert_eq!(names("month"), ["<month>"]);
        // `Mm` is no pattern: `M` is a literal, then `m` is one too.
        assert_eq!(names("Mm"), ["'M'", "'m'"]);
        assert_eq!(names("Dd"), ["<D>", "<d>"]);
    }

    #[test]
    fn modifiers_attach_to_their_pattern() {
        assert_eq!(names("FMDDth"), ["<FMDDth>"]);
        assert_eq!(names("FMMonth"), ["<FMMonth>"]);
        assert_eq!(names("TMDay"), ["<TMDay>"]);
        assert_eq!(names("DDTH"), ["<DDTH>"]);
        // FM before no pattern is dropped.
        assert_eq!(names("FMx"), ["'x'"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(names("\"YYYY\"Y"), ["'Y'", "'Y'", "'Y'", "'Y'", "<Y>"]);
        assert_eq!(names("\"a\\\"b\""), ["'a'", "'\"'", "'b'"]);
        assert_eq!(names("\\\"YY"), ["sep\"", "<YY>"]);
        // A backslash elsewhere is an ordinary separator.
        assert_eq!(
            names("YYYY \\ DD"),
            ["<YYYY>", "space", "sep\\", "space", "<DD>"]
        );
        // An unterminated quote runs to the end.
        assert_eq!(names("\"ab"), ["'a'", "'b'"]);
    }
}
