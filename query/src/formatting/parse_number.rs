//! `to_number(text, template)`: reading a number out of text with a number template, as
//! PostgreSQL's `to_number` does (C locale: `D` reads `.`, `G` reads `,`, `L` skips one
//! character that is not part of a number).
//!
//! PostgreSQL answers a `numeric` whose scale is the number of digits read after the point.
//! Eddy answers a `Decimal128` whose precision and scale come from the template when it is a
//! string literal: the scale is the template's digit positions after the point (plus those
//! after `V`), the precision all its digit positions (at least 1, at most 38; 4 for `RN`). Any
//! other template (a parameter, a column, a cast such as `'99'::text`) gives
//! `Decimal128(38, 10)`. Values are rounded half away from zero to that scale, and a value with
//! more integer digits than the type holds is an error.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Decimal128Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;

use super::columnar::{TemplateCache, strings, utf8};
use super::errors::{internal, invalid, numeric_out_of_range, unsupported};
use super::number_template::{
    AnchoredSign, NumberDesc, NumberKey, NumberNode, NumberTemplate, parse_number_template,
};

/// The precision of `to_number`'s result when the template is not known when planning.
pub(crate) const FALLBACK_PRECISION: u8 = 38;
/// The scale of `to_number`'s result when the template is not known when planning.
pub(crate) const FALLBACK_SCALE: i8 = 10;

/// The C locale's decimal point, which `.` and `D` read.
const DECIMAL_POINT: &[u8] = b".";
/// The C locale's group separator, which `G` reads.
const GROUP_SEPARATOR: &[u8] = b",";
/// Characters that may be part of a number, which `L`, `TH` and unmatched signs do not skip.
const NUMBER_CHARACTERS: &[u8] = b"0123456789.,+-";

/// The `Decimal128` precision and scale `to_number` answers for a literal template (see the
/// module documentation).
pub(crate) fn result_precision_scale(template: &str) -> (u8, i8) {
    let Ok(parsed) = parse_number_template(template) else {
        // The error surfaces when the function runs.
        return (FALLBACK_PRECISION, FALLBACK_SCALE);
    };
    let desc = parsed.desc;
    if desc.roman {
        return (4, 0);
    }
    let scale = (desc.post + desc.shift_digits).clamp(0, 38);
    let precision = (desc.pre + desc.post + desc.shift_digits).clamp(1, 38);
    (
        u8::try_from(precision).unwrap_or(FALLBACK_PRECISION),
        i8::try_from(scale).unwrap_or(FALLBACK_SCALE),
    )
}

/// `to_number(text, template)` for each row, as decimals of the return type.
pub(crate) fn to_number_rows(arrays: &[ArrayRef], return_type: &DataType) -> DfResult<ArrayRef> {
    let DataType::Decimal128(precision, scale) = *return_type else {
        return Err(internal(format!(
            "to_number returns a decimal, not {return_type}"
        )));
    };
    let [texts, templates] = arrays else {
        return Err(internal("to_number takes two arguments"));
    };
    let (texts, templates) = (utf8(texts)?, utf8(templates)?);
    let (texts, templates) = (strings(&texts)?, strings(&templates)?);
    let mut cache = TemplateCache::default();
    let mut out = Vec::with_capacity(texts.len());
    for (text, template) in texts.iter().zip(templates.iter()) {
        // PostgreSQL answers NULL for an empty template too.
        let (Some(text), Some(template)) = (text, template) else {
            out.push(None);
            continue;
        };
        if template.is_empty() {
            out.push(None);
            continue;
        }
        let template = cache.get(template, parse_number_template)?;
        let number = read_number(text, template)?;
        out.push(Some(number.rescale(precision, scale)?));
    }
    Ok(Arc::new(
        Decimal128Array::from(out).with_precision_and_scale(precision, scale)?,
    ))
}

/// A number read from text: `unscaled` × 10^-`scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal {
    unscaled: i128,
    scale: i32,
}

impl Decimal {
    /// The same number with `scale` digits after the point (rounded half away from zero),
    /// failing if it needs more than `precision` digits.
    fn rescale(self, precision: u8, scale: i8) -> DfResult<i128> {
        let overflow = || numeric_out_of_range("numeric field overflow");
        let target = i32::from(scale);
        let value = if target >= self.scale {
            let factor = u32::try_from(target - self.scale)
                .ok()
                .and_then(|e| 10i128.checked_pow(e))
                .ok_or_else(overflow)?;
            self.unscaled.checked_mul(factor).ok_or_else(overflow)?
        } else {
            let divisor = u32::try_from(self.scale - target)
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            match divisor {
                // Anything below 10^-38 rounds to zero.
                None => 0,
                Some(divisor) => {
                    let magnitude = self.unscaled.unsigned_abs();
                    let mut quotient = magnitude / divisor;
                    if (magnitude % divisor) * 2 >= divisor {
                        quotient += 1;
                    }
                    let quotient = i128::try_from(quotient).map_err(|_| overflow())?;
                    if self.unscaled < 0 {
                        -quotient
                    } else {
                        quotient
                    }
                }
            }
        };
        let limit = 10u128
            .checked_pow(u32::from(precision))
            .ok_or_else(overflow)?;
        if value.unsigned_abs() >= limit {
            return Err(overflow());
        }
        Ok(value)
    }
}

/// The state of reading a number through a template, as PostgreSQL's number processor keeps
/// it: the sign found so far (a blank until one is), the digits and point read, and how many
/// digits came before and after the point.
struct NumberReader<'a> {
    text: &'a str,
    pos: usize,
    desc: NumberDesc,
    sign: u8,
    digits: Vec<u8>,
    read_pre: i32,
    read_post: i32,
    read_point: bool,
}

impl NumberReader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn byte_at(&self, i: usize) -> Option<u8> {
        self.text.as_bytes().get(i).copied()
    }

    fn byte(&self) -> Option<u8> {
        self.byte_at(self.pos)
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.text
            .as_bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s))
    }

    /// Skips one character (not one byte).
    fn skip_char(&mut self) {
        if let Some(c) = self.text.get(self.pos..).and_then(|r| r.chars().next()) {
            self.pos += c.len_utf8();
        }
    }

    /// Skips up to `n` characters until one that may be part of a number.
    fn skip_non_number(&mut self, n: usize) {
        for _ in 0..n {
            match self.byte() {
                None => break,
                Some(b) if NUMBER_CHARACTERS.contains(&b) => break,
                Some(_) => self.skip_char(),
            }
        }
    }

    /// A digit position (`9`, `0`) or the point: a sign before the first digit, the digit or
    /// point itself, and a sign just after the last digit.
    fn digit(&mut self, key: NumberKey) {
        if self.at_end() {
            return;
        }
        if self.byte() == Some(b' ') {
            self.pos += 1;
        }
        if self.at_end() {
            return;
        }
        if self.sign == b' '
            && matches!(key, NumberKey::Nine | NumberKey::Zero)
            && self.read_pre + self.read_post == 0
        {
            if self.desc.anchored && self.desc.sign_anchor == AnchoredSign::Before {
                if self.starts_with(b"-") {
                    self.pos += 1;
                    self.sign = b'-';
                } else if self.starts_with(b"+") {
                    self.pos += 1;
                    self.sign = b'+';
                }
            } else if self.byte() == Some(b'-') || (self.desc.brackets && self.byte() == Some(b'<'))
            {
                self.sign = b'-';
                self.pos += 1;
            } else if self.byte() == Some(b'+') {
                self.sign = b'+';
                self.pos += 1;
            }
        }
        if self.at_end() {
            return;
        }
        let mut read = false;
        match self.byte() {
            Some(d) if d.is_ascii_digit() => {
                if self.read_point && self.read_post == self.desc.post {
                    return;
                }
                self.digits.push(d);
                if self.read_point {
                    self.read_post += 1;
                } else {
                    self.read_pre += 1;
                }
                read = true;
            }
            // The caller steps past the point (one byte in the C locale), as past a digit.
            _ if self.desc.decimal && !self.read_point && self.starts_with(DECIMAL_POINT) => {
                self.digits.push(b'.');
                self.read_point = true;
                read = true;
            }
            _ => {}
        }
        if self.at_end() {
            return;
        }
        if self.sign == b' ' && self.read_pre + self.read_post > 0 {
            let next_is_digit = self
                .byte_at(self.pos + 1)
                .is_some_and(|b| b.is_ascii_digit());
            if self.desc.anchored && read && self.pos + 1 < self.text.len() && !next_is_digit {
                // `S` after the number: a sign just after this digit.
                let at = self.pos;
                self.pos += 1;
                if self.starts_with(b"-") {
                    self.sign = b'-';
                } else if self.starts_with(b"+") {
                    self.sign = b'+';
                }
                if self.sign == b' ' {
                    self.pos = at;
                }
            } else if !read && !self.desc.anchored && (self.desc.plus || self.desc.minus) {
                // MI/PL/SG where the template could not place them exactly (`FM9.99MI`).
                if let Some(sign @ (b'-' | b'+')) = self.byte() {
                    self.sign = sign;
                }
            }
        }
    }

    /// `RN`: a Roman numeral from 1 to 3999, whose digits become the number.
    fn roman(&mut self) -> DfResult<()> {
        while self
            .byte()
            .is_some_and(|b| b.is_ascii_whitespace() || b == b'\x0b')
        {
            self.pos += 1;
        }
        let value = roman_value(self.text.get(self.pos..).unwrap_or_default());
        let Some((value, len)) = value else {
            return Err(invalid("invalid Roman numeral"));
        };
        self.pos += len;
        let digits = value.to_string();
        self.desc.pre = i32::try_from(digits.len()).unwrap_or_default();
        self.desc.post = 0;
        self.digits.extend_from_slice(digits.as_bytes());
        Ok(())
    }
}

/// The value of the Roman numeral (up to 15 letters, either case) starting `text`, and how
/// many bytes it takes; `None` unless it is a standard numeral.
fn roman_value(text: &str) -> Option<(u32, usize)> {
    let worth = |c: u8| match c {
        b'I' => 1,
        b'V' => 5,
        b'X' => 10,
        b'L' => 50,
        b'C' => 100,
        b'D' => 500,
        b'M' => 1000,
        _ => 0,
    };
    let letters: Vec<(u8, u32)> = text
        .bytes()
        .map(|b| b.to_ascii_uppercase())
        .map(|b| (b, worth(b)))
        .take_while(|(_, v)| *v > 0)
        .take(15)
        .collect();
    if letters.is_empty() {
        return None;
    }
    let subtractive = |a: u8, b: u8| {
        matches!(
            (a, b),
            (b'I', b'V' | b'X') | (b'X', b'L' | b'C') | (b'C', b'D' | b'M')
        )
    };
    let (mut total, mut repeats, mut last_subtracted) = (0u32, 1, None::<u32>);
    let (mut fives_v, mut fives_l, mut fives_d) = (false, false, false);
    // V, L and D appear at most once, and nothing as large comes after them.
    let mut check_five = |letter: u8, value: u32| -> bool {
        if (fives_v && value >= 5) || (fives_l && value >= 50) || (fives_d && value >= 500) {
            return false;
        }
        match letter {
            b'V' => fives_v = true,
            b'L' => fives_l = true,
            b'D' => fives_d = true,
            _ => {}
        }
        true
    };
    let mut i = 0;
    while let Some(&(letter, value)) = letters.get(i) {
        // Nothing as large as a subtracted numeral may follow the subtraction.
        if last_subtracted.is_some_and(|s| value >= s) {
            return None;
        }
        if !check_five(letter, value) {
            return None;
        }
        match letters.get(i + 1) {
            Some(&(next, next_value)) if value < next_value => {
                if !subtractive(letter, next) || repeats > 1 || !check_five(next, next_value) {
                    return None;
                }
                total += next_value - value;
                last_subtracted = Some(value);
                repeats = 1;
                i += 2;
            }
            Some(&(next, _)) => {
                if next == letter {
                    repeats += 1;
                    if repeats > 3 {
                        return None;
                    }
                } else {
                    repeats = 1;
                }
                total += value;
                i += 1;
            }
            None => {
                total += value;
                i += 1;
            }
        }
    }
    Some((total, letters.len()))
}

/// Reads a number from `text` with a parsed template.
pub(crate) fn read_number(text: &str, template: &NumberTemplate) -> DfResult<Decimal> {
    if template.desc.exponent {
        return Err(unsupported("\"EEEE\" not supported for input"));
    }
    let mut r = NumberReader {
        text,
        pos: 0,
        desc: template.desc,
        sign: b' ',
        digits: Vec::new(),
        read_pre: 0,
        read_post: 0,
        read_point: false,
    };
    let fill = template.desc.fill;
    for node in &template.nodes {
        if r.at_end() {
            break;
        }
        let key = match *node {
            // Each literal in the template skips one character, whatever it is.
            NumberNode::Literal(_) => {
                r.skip_char();
                continue;
            }
            NumberNode::Key(key) => key,
        };
        match key {
            NumberKey::Nine | NumberKey::Zero | NumberKey::Point | NumberKey::LocalePoint => {
                r.digit(key);
            }
            NumberKey::Comma => {
                if fill || r.byte() != Some(b',') {
                    continue;
                }
            }
            NumberKey::Group => {
                // A matching separator (one byte in the C locale) is stepped past below.
                if fill || !r.starts_with(GROUP_SEPARATOR) {
                    continue;
                }
            }
            NumberKey::Currency => {
                r.skip_non_number(1);
                continue;
            }
            NumberKey::Roman { .. } => {
                r.roman()?;
                continue;
            }
            NumberKey::Ordinal { .. } => {
                if !(r.desc.roman || r.desc.decimal) {
                    r.skip_non_number(2);
                }
                continue;
            }
            NumberKey::Minus | NumberKey::Plus | NumberKey::SignAlways => {
                let wanted = match (key, r.byte()) {
                    (NumberKey::Minus | NumberKey::SignAlways, Some(b'-')) => Some(b'-'),
                    (NumberKey::Plus | NumberKey::SignAlways, Some(b'+')) => Some(b'+'),
                    _ => None,
                };
                match wanted {
                    Some(sign) => r.sign = sign,
                    None => {
                        r.skip_non_number(1);
                        continue;
                    }
                }
            }
            NumberKey::Blank
            | NumberKey::C
            | NumberKey::Exponent
            | NumberKey::FillMode
            | NumberKey::Brackets
            | NumberKey::Spell
            | NumberKey::Sign
            | NumberKey::Shift => continue,
        }
        r.pos += 1;
    }
    if r.digits.last() == Some(&b'.') {
        r.digits.pop();
    }
    let shown = || {
        format!(
            "invalid input syntax for type numeric: \"{}{}\"",
            char::from(r.sign),
            String::from_utf8_lossy(&r.digits)
        )
    };
    let digits = String::from_utf8_lossy(&r.digits).into_owned();
    let (int, frac) = digits.split_once('.').unwrap_or((digits.as_str(), ""));
    if int.is_empty() && frac.is_empty() {
        return Err(invalid(shown()));
    }
    // As PostgreSQL's numeric typmod does: no more integer digits than the template has places
    // for (counting those after V).
    let significant = int.trim_start_matches('0').len();
    let places = usize::try_from(r.desc.pre + r.desc.shift_digits).unwrap_or_default();
    if significant > places {
        return Err(numeric_out_of_range("numeric field overflow"));
    }
    let magnitude: i128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| numeric_out_of_range("value overflows numeric format"))?;
    let shift = if r.desc.shift { r.desc.shift_digits } else { 0 };
    let scale = i32::try_from(frac.len())
        .unwrap_or(i32::MAX)
        .saturating_add(shift);
    Ok(Decimal {
        unscaled: if r.sign == b'-' {
            -magnitude
        } else {
            magnitude
        },
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `to_number` as PostgreSQL prints the numeric (scale = digits read), or the error.
    fn to_number(text: &str, template: &str) -> Result<String, String> {
        let message = |e: datafusion::common::DataFusionError| match e {
            datafusion::common::DataFusionError::External(inner) => inner.to_string(),
            other => other.to_string(),
        };
        let template = parse_number_template(template).map_err(message)?;
        let d = read_number(text, &template).map_err(message)?;
        let negative = d.unscaled < 0;
        let digits = d.unscaled.unsigned_abs().to_string();
        let scale = usize::try_from(d.scale).unwrap_or_default();
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        let sign = if negative { "-" } else { "" };
        Ok(if scale == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        })
    }

    fn ok(s: &str) -> Result<String, String> {
        Ok(s.to_string())
    }

    #[test]
    fn postgresql_regression_cases() {
        assert_eq!(to_number("12,454.8-", "99G999D9S"), ok("-12454.8"));
        assert_eq!(to_number("-34,338,492", "99G999G999"), ok("-34338492"));
        assert_eq!(
            to_number("-34,338,492.654,878", "99G999G999D999G999"),
            ok("-34338492.654878")
        );
        assert_eq!(
            to_number("<564646.654564>", "999999.999999PR"),
            ok("-564646.654564")
        );
        assert_eq!(to_number("0.00001-", "9.999999S"), ok("-0.00001"));
        assert_eq!(to_number("5.01-", "FM9.999999S"), ok("-5.01"));
        assert_eq!(to_number("5.01-", "FM9.999999MI"), ok("-5.01"));
        assert_eq!(
            to_number("5 4 4 4 4 8 . 7 8", "9 9 9 9 9 9 . 9 9"),
            ok("544448.78")
        );
        assert_eq!(to_number(".01", "FM9.99"), ok("0.01"));
        assert_eq!(to_number(".0", "99999999.99999999"), ok("0.0"));
        assert_eq!(to_number("0", "99.99"), ok("0"));
        assert_eq!(to_number(".-01", "S99.99"), ok("-0.01"));
        assert_eq!(to_number(".01-", "99.99S"), ok("-0.01"));
        assert_eq!(to_number(" . 0 1-", " 9 9 . 9 9 S"), ok("-0.01"));
        assert_eq!(to_number("34,50", "999,99"), ok("3450"));
        assert_eq!(to_number("123,000", "999G"), ok("123"));
        assert_eq!(to_number("123456", "999G999"), ok("123456"));
        assert_eq!(to_number("$1234.56", "L9,999.99"), ok("1234.56"));
        assert_eq!(to_number("$1234.56", "L99,999.99"), ok("1234.56"));
        assert_eq!(to_number("$1,234.56", "L99,999.99"), ok("1234.56"));
        assert_eq!(to_number("1234.56", "L99,999.99"), ok("1234.56"));
        assert_eq!(to_number("1,234.56", "L99,999.99"), ok("1234.56"));
        assert_eq!(to_number("42nd", "99th"), ok("42"));
        assert_eq!(to_number("123456", "99999V99"), ok("1234.56"));
    }

    #[test]
    fn roman_numerals() {
        assert_eq!(to_number("XIV", "RN"), ok("14"));
        assert_eq!(to_number("  mcmxciv", "RN"), ok("1994"));
        assert_eq!(to_number("MMMCMXCIX", "FMRN"), ok("3999"));
        for bad in ["IIII", "VV", "IL", "XM", "IXI", "CMC", "abc"] {
            assert_eq!(
                to_number(bad, "RN"),
                Err("invalid Roman numeral".to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn fill_mode_commas_do_not_consume_input() {
        // As in PostgreSQL, `,` in fill mode reads nothing, so the comma takes a digit's
        // place and the last digit is left over.
        assert_eq!(to_number("1,234.56", "FM9,999.99"), ok("1234.5"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            to_number("", "999"),
            Err("invalid input syntax for type numeric: \" \"".to_string())
        );
        assert_eq!(
            to_number("abc", "999"),
            Err("invalid input syntax for type numeric: \" \"".to_string())
        );
        assert_eq!(
            to_number("123", "9.99"),
            Err("numeric field overflow".to_string())
        );
        assert_eq!(
            to_number("1", "9.9EEEE"),
            Err("\"EEEE\" not supported for input".to_string())
        );
        assert!(to_number("1", "9.9.9").is_err());
    }

    #[test]
    fn round_trips_with_to_char() {
        use super::super::format_number::{Number, to_char_number};
        for (value, template) in [
            ("-12454.8", "99G999D9S"),
            ("1234.56", "9,999.99"),
            ("1234.56", "FM9999.99"),
            ("-0.25", "S0.99"),
            ("485", "999PR"),
            ("-485", "999PR"),
            ("7", "FM999th"),
        ] {
            let (int, frac) = value.split_once('.').unwrap_or((value, ""));
            let unscaled: i128 = format!("{int}{frac}").parse().unwrap_or_default();
            let number = Number::Numeric {
                unscaled,
                scale: i8::try_from(frac.len()).unwrap_or_default(),
            };
            let parsed = match parse_number_template(template) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            let text = match to_char_number(number, &parsed) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(to_number(&text, template), ok(value), "{value} as {text:?}");
        }
    }

    #[test]
    fn result_types() {
        assert_eq!(result_precision_scale("99G999D9S"), (6, 1));
        assert_eq!(result_precision_scale("FM9.999999S"), (7, 6));
        assert_eq!(result_precision_scale("99999V99"), (7, 2));
        assert_eq!(result_precision_scale("RN"), (4, 0));
        assert_eq!(result_precision_scale("L"), (1, 0));
        assert_eq!(result_precision_scale("9.9.9"), (38, 10));
        let d = Decimal {
            unscaled: 123_456,
            scale: 3,
        };
        assert_eq!(d.rescale(6, 1).ok(), Some(1235));
        assert_eq!(d.rescale(8, 5).ok(), Some(12_345_600));
        assert!(d.rescale(6, 5).is_err());
        assert!(d.rescale(4, 2).is_err());
        let d = Decimal {
            unscaled: -125,
            scale: 1,
        };
        assert_eq!(d.rescale(3, 0).ok(), Some(-13));
    }
}
