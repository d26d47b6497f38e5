//! `to_char` of numbers: integers, floats and decimals written to a number template, in the C
//! locale (`D` is `.`, `G` is `,`, `L` is a space, the signs are `-` and `+`), with PostgreSQL's
//! rules for signs, padding, fill mode and `#` when the integer digits do not fit.
//!
//! Each arrow type keeps the semantics of the PostgreSQL type it stands for: small integers
//! are `integer`, `Int64` and `UInt32` are `bigint`, `Float32` is `real` (6 significant
//! digits), `Float64` is `double precision` (15), and decimals and `UInt64` are `numeric`.

use std::iter::repeat_n;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::Result as DfResult;

use super::columnar::{TemplateCache, primitive_at};
use super::errors::{internal, numeric_out_of_range};
use super::number_template::{
    AnchoredSign, NumberDesc, NumberKey, NumberNode, NumberTemplate, parse_number_template,
};
use super::ordinal::ordinal_suffix;

/// The C locale's decimal point, for both `.` and `D`.
const DECIMAL_POINT: &[u8] = b".";
/// The C locale's group separator (PostgreSQL's fallback when the locale has none).
const GROUP_SEPARATOR: &[u8] = b",";
/// The C locale's currency symbol, which PostgreSQL writes as a blank.
const CURRENCY: &[u8] = b" ";

/// A number to format, tagged with the PostgreSQL type whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// `integer`.
    Int4(i32),
    /// `bigint`.
    Int8(i64),
    /// `real`.
    Float4(f32),
    /// `double precision`.
    Float8(f64),
    /// `numeric`: `unscaled` × 10^-`scale`.
    Numeric { unscaled: i128, scale: i8 },
}

/// Whether `to_char` formats values of this type as numbers.
pub(crate) fn is_number(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
    )
}

/// `to_char(number, template)` for each row.
pub(crate) fn to_char_numbers(values: &ArrayRef, templates: &StringArray) -> DfResult<ArrayRef> {
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 8);
    let mut cache = TemplateCache::default();
    for row in 0..values.len() {
        if values.is_null(row) || templates.is_null(row) {
            out.append_null();
            continue;
        }
        let template = templates.value(row);
        if template.is_empty() {
            out.append_value("");
            continue;
        }
        let number = number_at(values, row)?;
        let template = cache.get(template, parse_number_template)?;
        out.append_value(to_char_number(number, template)?);
    }
    Ok(Arc::new(out.finish()))
}

fn number_at(values: &ArrayRef, row: usize) -> DfResult<Number> {
    Ok(match values.data_type() {
        DataType::Int8 => Number::Int4(i32::from(primitive_at::<Int8Type>(values, row)?)),
        DataType::Int16 => Number::Int4(i32::from(primitive_at::<Int16Type>(values, row)?)),
        DataType::Int32 => Number::Int4(primitive_at::<Int32Type>(values, row)?),
        DataType::UInt8 => Number::Int4(i32::from(primitive_at::<UInt8Type>(values, row)?)),
        DataType::UInt16 => Number::Int4(i32::from(primitive_at::<UInt16Type>(values, row)?)),
        DataType::Int64 => Number::Int8(primitive_at::<Int64Type>(values, row)?),
        DataType::UInt32 => Number::Int8(i64::from(primitive_at::<UInt32Type>(values, row)?)),
        DataType::UInt64 => Number::Numeric {
            unscaled: i128::from(primitive_at::<UInt64Type>(values, row)?),
            scale: 0,
        },
        DataType::Float32 => Number::Float4(primitive_at::<Float32Type>(values, row)?),
        DataType::Float64 => Number::Float8(primitive_at::<Float64Type>(values, row)?),
        DataType::Decimal128(_, scale) => Number::Numeric {
            unscaled: primitive_at::<Decimal128Type>(values, row)?,
            scale: *scale,
        },
        other => {
            return Err(internal(format!(
                "to_char cannot format {other} as a number"
            )));
        }
    })
}

/// The digits to lay out: the number's text without its sign (or `#`s when it does not fit,
/// or the Roman numeral, or the whole scientific notation), the blanks it needs in front to
/// fill the template's digit positions, and its sign (`+`, `-`, or 0 when signless).
struct Digits {
    text: Vec<u8>,
    pre_spaces: i32,
    sign: u8,
}

/// Formats one number with a parsed template.
pub(crate) fn to_char_number(value: Number, template: &NumberTemplate) -> DfResult<String> {
    let mut desc = template.desc;
    let digits = if desc.roman {
        Digits {
            text: roman(roman_value(value)).into_bytes(),
            pre_spaces: 0,
            sign: 0,
        }
    } else if desc.exponent {
        // The notation is the whole answer: the template's other text is not written.
        return Ok(scientific(value, &desc));
    } else {
        positional(value, &mut desc)?
    };
    Layout::new(desc, digits).render(&template.nodes)
}

/// The integer a Roman numeral shows: rounded, and too large for any numeral when it does
/// not fit an `integer`.
fn roman_value(value: Number) -> i64 {
    let beyond = i64::from(i32::MAX);
    let from_float = |v: f64| {
        let v = v.round_ties_even();
        if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
            // In range, so the conversion is exact.
            v as i64
        } else {
            beyond
        }
    };
    match value {
        Number::Int4(v) => i64::from(v),
        Number::Int8(v) if i32::try_from(v).is_ok() => v,
        Number::Int8(_) => beyond,
        Number::Float4(v) => from_float(f64::from(v)),
        Number::Float8(v) => from_float(v),
        Number::Numeric { unscaled, scale } => {
            let (int, frac) = split_decimal(unscaled.unsigned_abs(), i64::from(scale));
            round_fixed(&int, &frac, 0)
                .parse::<i64>()
                .ok()
                .map(|v| if unscaled < 0 { -v } else { v })
                .filter(|v| i32::try_from(*v).is_ok())
                .unwrap_or(beyond)
        }
    }
}

/// An integer from 1 to 3999 in Roman numerals, else 15 `#`s.
fn roman(value: i64) -> String {
    const ONES: [&str; 10] = ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"];
    const TENS: [&str; 10] = ["", "X", "XX", "XXX", "XL", "L", "LX", "LXX", "LXXX", "XC"];
    const HUNDREDS: [&str; 10] = ["", "C", "CC", "CCC", "CD", "D", "DC", "DCC", "DCCC", "CM"];
    if !(1..=3999).contains(&value) {
        return "#".repeat(15);
    }
    let digit = |table: &[&'static str; 10], d: i64| {
        usize::try_from(d % 10)
            .ok()
            .and_then(|i| table.get(i).copied())
            .unwrap_or_default()
    };
    let mut out = "M".repeat(usize::try_from(value / 1000).unwrap_or_default());
    out.push_str(digit(&HUNDREDS, value / 100));
    out.push_str(digit(&TENS, value / 10));
    out.push_str(digit(&ONES, value));
    out
}

/// `EEEE`: scientific notation with `post` digits after the point, a blank or `-` in front.
fn scientific(value: Number, desc: &NumberDesc) -> String {
    let post = usize::try_from(desc.post).unwrap_or_default();
    match value {
        // PostgreSQL goes through C's printf for these, which rounds ties to even.
        Number::Int4(v) => c_scientific(f64::from(v), post),
        Number::Float4(v) if f32::is_finite(v) => c_scientific(f64::from(v), post),
        Number::Float8(v) if v.is_finite() => c_scientific(v, post),
        Number::Float4(_) | Number::Float8(_) => {
            // Room for a sign, the point, `e`, the exponent's sign and two digits.
            let len = usize::try_from(desc.pre + desc.post + 6).unwrap_or(6);
            let mut text = vec![b'#'; len];
            if let Some(first) = text.first_mut() {
                *first = b' ';
            }
            if let Some(point) = usize::try_from(desc.pre + 1)
                .ok()
                .and_then(|i| text.get_mut(i))
            {
                *point = b'.';
            }
            String::from_utf8_lossy(&text).into_owned()
        }
        // These go through numeric, which rounds ties away from zero.
        Number::Int8(v) => numeric_scientific(i128::from(v), 0, post),
        Number::Numeric { unscaled, scale } => numeric_scientific(unscaled, scale, post),
    }
}

/// C's `%+.*e` with the plus sign written as a blank.
fn c_scientific(value: f64, post: usize) -> String {
    let text = format!("{value:.post$e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or_default();
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ('-', m),
        None => (' ', mantissa),
    };
    format!("{sign}{mantissa}e{exponent:+03}")
}

/// PostgreSQL's scientific notation of a numeric: the exponent is that of the unrounded value,
/// so 9.999 with one digit is `10.0e+00`, as PostgreSQL writes it.
fn numeric_scientific(unscaled: i128, scale: i8, post: usize) -> String {
    let sign = if unscaled < 0 { '-' } else { ' ' };
    let digits = unscaled.unsigned_abs().to_string();
    let (significand, exponent) = if unscaled == 0 {
        (round_fixed("0", "", post), 0)
    } else {
        let exponent = i64::try_from(digits.len()).unwrap_or_default() - 1 - i64::from(scale);
        let (first, rest) = digits.split_at_checked(1).unwrap_or((digits.as_str(), ""));
        (round_fixed(first, rest, post), exponent)
    };
    format!("{sign}{significand}e{exponent:+03}")
}

/// The digits for the positional patterns (`9`, `0`, `.`): rounded to the template's places
/// after the point, padded or replaced by `#`s to fit the places before it. `V` shifts the
/// value and counts its digits as integer places.
fn positional(value: Number, desc: &mut NumberDesc) -> DfResult<Digits> {
    match value {
        Number::Int4(v) => integer(i128::from(v), desc, i128::from(i32::MAX), "integer"),
        Number::Int8(v) => integer(i128::from(v), desc, i128::from(i64::MAX), "bigint"),
        Number::Float4(v) => {
            let v = if desc.shift {
                desc.pre += desc.shift_digits;
                v * 10f32.powi(desc.shift_digits)
            } else {
                v
            };
            Ok(float(f64::from(v), desc, 6))
        }
        Number::Float8(v) => {
            let v = if desc.shift {
                desc.pre += desc.shift_digits;
                v * 10f64.powi(desc.shift_digits)
            } else {
                v
            };
            Ok(float(v, desc, 15))
        }
        Number::Numeric { unscaled, scale } => {
            let mut scale = i64::from(scale);
            if desc.shift {
                scale -= i64::from(desc.shift_digits);
                desc.pre += desc.shift_digits;
            }
            let (int, frac) = split_decimal(unscaled.unsigned_abs(), scale);
            let text = round_fixed(&int, &frac, usize::try_from(desc.post).unwrap_or_default());
            // Numeric has no negative zero: -0.001 rounded to two places is 0.00.
            let negative = unscaled < 0 && text.bytes().any(|b| (b'1'..=b'9').contains(&b));
            Ok(fit(text, if negative { b'-' } else { b'+' }, desc))
        }
    }
}

fn integer(value: i128, desc: &mut NumberDesc, max: i128, type_name: &str) -> DfResult<Digits> {
    let value = if desc.shift {
        let shifted = u32::try_from(desc.shift_digits)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .and_then(|f| value.checked_mul(f))
            .filter(|v| (-max - 1..=max).contains(v));
        desc.pre += desc.shift_digits;
        shifted.ok_or_else(|| numeric_out_of_range(format!("{type_name} out of range")))?
    } else {
        value
    };
    let mut text = value.unsigned_abs().to_string();
    if desc.post > 0 {
        text.push('.');
        text.extend(repeat_n(
            '0',
            usize::try_from(desc.post).unwrap_or_default(),
        ));
    }
    Ok(fit(text, if value < 0 { b'-' } else { b'+' }, desc))
}

/// A float as C's `printf` writes it, keeping at most `max_digits` significant digits
/// (`FLT_DIG`/`DBL_DIG`) by cutting places after the point.
fn float(value: f64, desc: &mut NumberDesc, max_digits: i32) -> Digits {
    let whole = i32::try_from(c_fixed(value.abs(), 0).len()).unwrap_or(i32::MAX);
    if whole >= max_digits {
        desc.post = 0;
    } else if whole.saturating_add(desc.post) > max_digits {
        desc.post = max_digits - whole;
    }
    let text = c_fixed(value, usize::try_from(desc.post).unwrap_or_default());
    if let Some(unsigned) = text.strip_prefix('-') {
        return fit(unsigned.to_string(), b'-', desc);
    }
    fit(text, b'+', desc)
}

/// C's `%.*f`: fixed notation, ties to even, `nan` and `inf` in lower case.
fn c_fixed(value: f64, places: usize) -> String {
    if value.is_nan() {
        if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string()
    } else if value.is_infinite() {
        if value < 0.0 { "-inf" } else { "inf" }.to_string()
    } else {
        format!("{value:.places$}")
    }
}

/// Pads an unsigned number's text to the template's integer places, or replaces it by `#`s
/// (with the point where the template has it) when it has more integer digits than places.
fn fit(text: String, sign: u8, desc: &NumberDesc) -> Digits {
    let integer_digits = i32::try_from(text.find('.').unwrap_or(text.len())).unwrap_or(i32::MAX);
    if integer_digits < desc.pre {
        Digits {
            text: text.into_bytes(),
            pre_spaces: desc.pre - integer_digits,
            sign,
        }
    } else if integer_digits > desc.pre {
        let len = usize::try_from(desc.pre + desc.post + 1).unwrap_or(1);
        let mut hashes = vec![b'#'; len];
        if let Some(point) = usize::try_from(desc.pre)
            .ok()
            .and_then(|i| hashes.get_mut(i))
        {
            *point = b'.';
        }
        Digits {
            text: hashes,
            pre_spaces: 0,
            sign,
        }
    } else {
        Digits {
            text: text.into_bytes(),
            pre_spaces: 0,
            sign,
        }
    }
}

/// The integer and fraction digits of `abs` × 10^-`scale`, without leading zeros (but `0`).
pub(crate) fn split_decimal(abs: u128, scale: i64) -> (String, String) {
    let digits = abs.to_string();
    if scale <= 0 {
        if abs == 0 {
            return ("0".to_string(), String::new());
        }
        let zeros = usize::try_from(-scale).unwrap_or_default();
        return (digits + &"0".repeat(zeros), String::new());
    }
    let scale = usize::try_from(scale).unwrap_or_default();
    match digits.len().checked_sub(scale).filter(|n| *n > 0) {
        Some(n) => {
            let (int, frac) = digits.split_at_checked(n).unwrap_or((digits.as_str(), ""));
            (int.to_string(), frac.to_string())
        }
        None => (
            "0".to_string(),
            "0".repeat(scale.saturating_sub(digits.len())) + &digits,
        ),
    }
}

/// `int.frac` rounded half away from zero to `places` digits after the point (numeric's
/// rounding), with exactly that many; no point when `places` is 0.
pub(crate) fn round_fixed(int: &str, frac: &str, places: usize) -> String {
    let mut digits: Vec<u8> = int.bytes().collect();
    digits.extend(frac.bytes().chain(repeat_n(b'0', places)).take(places));
    if frac.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        let mut carry = true;
        for d in digits.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                carry = false;
                break;
            }
        }
        if carry {
            digits.insert(0, b'1');
        }
    }
    let int_len = digits.len().saturating_sub(places);
    let (int, frac) = digits
        .split_at_checked(int_len)
        .unwrap_or((digits.as_slice(), &[][..]));
    let mut out = String::from_utf8_lossy(int).into_owned();
    if places > 0 {
        out.push('.');
        out.push_str(&String::from_utf8_lossy(frac));
    }
    out
}

/// The state of writing a number's digits into a template, as PostgreSQL's number processor
/// keeps it: how many digit positions are done, whether the sign is out, and which digit is
/// next. The output is bytes because, as in PostgreSQL, running out of digits writes a NUL
/// that ends the answer.
struct Layout {
    desc: NumberDesc,
    number: Vec<u8>,
    next: usize,
    out: Vec<u8>,
    sign: u8,
    sign_written: bool,
    digit_positions: i32,
    in_number: bool,
    position: i32,
    pre_spaces: i32,
    last_relevant: Option<usize>,
}

impl Layout {
    fn new(mut desc: NumberDesc, digits: Digits) -> Self {
        let Digits {
            text: number,
            pre_spaces,
            sign,
        } = digits;
        if desc.zero_start > 0 {
            desc.zero_start -= 1;
        }
        let sign_written = if desc.plus || desc.minus {
            // MI, PL and SG write the sign themselves; a lone PL leaves room for a minus.
            !desc.plus || desc.minus
        } else {
            if sign != b'-' && desc.fill {
                desc.brackets = false;
            }
            if desc.sign_anchor == AnchoredSign::Before && desc.pre == desc.pre_before_sign {
                desc.sign_anchor = AnchoredSign::After;
            }
            sign == b'+' && desc.fill && !desc.anchored
        };
        let mut digit_positions = desc.post + desc.pre - 1;
        let mut last_relevant = None;
        if desc.fill && desc.decimal {
            last_relevant = last_relevant_decimal(&number);
            // Zeros in the template keep their digits even in fill mode.
            if let Some(relevant) = last_relevant
                && desc.zero_end > pre_spaces
            {
                let last = i32::try_from(number.len()).unwrap_or(i32::MAX) - 1;
                let last_zero = last.min(desc.zero_end - pre_spaces);
                if let Ok(last_zero) = usize::try_from(last_zero)
                    && relevant < last_zero
                {
                    last_relevant = Some(last_zero);
                }
            }
        }
        if !sign_written && pre_spaces == 0 {
            digit_positions += 1;
        }
        Self {
            desc,
            number,
            next: 0,
            out: Vec::new(),
            sign,
            sign_written,
            digit_positions,
            in_number: false,
            position: 0,
            pre_spaces,
            last_relevant,
        }
    }

    /// The digit at `i`, or NUL past the end as in a C string.
    fn at(&self, i: usize) -> u8 {
        self.number.get(i).copied().unwrap_or(0)
    }

    fn last_relevant_is_point(&self) -> bool {
        self.last_relevant.is_some_and(|i| self.at(i) == b'.')
    }

    fn render(mut self, nodes: &[NumberNode]) -> DfResult<String> {
        for node in nodes {
            match *node {
                NumberNode::Literal(c) => {
                    let mut buf = [0; 4];
                    self.out
                        .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                NumberNode::Key(key) => self.key(key)?,
            }
        }
        // A NUL written for a missing digit ends the text, as it does in PostgreSQL.
        let end = self
            .out
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.out.len());
        self.out.truncate(end);
        Ok(String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn key(&mut self, key: NumberKey) -> DfResult<()> {
        let fill = self.desc.fill;
        match key {
            NumberKey::Nine | NumberKey::Zero | NumberKey::Point | NumberKey::LocalePoint => {
                self.digit(key);
            }
            NumberKey::Comma | NumberKey::Group => {
                let separator = if key == NumberKey::Comma {
                    b",".as_slice()
                } else {
                    GROUP_SEPARATOR
                };
                if self.in_number {
                    self.out.extend_from_slice(separator);
                } else if !fill {
                    self.out.extend(repeat_n(b' ', separator.len()));
                }
            }
            NumberKey::Currency => self.out.extend_from_slice(CURRENCY),
            NumberKey::Roman { upper } => {
                let numeral = self.number.get(self.next..).unwrap_or_default();
                let numeral = if upper {
                    numeral.to_vec()
                } else {
                    numeral.to_ascii_lowercase()
                };
                if !fill {
                    self.out
                        .extend(repeat_n(b' ', 15usize.saturating_sub(numeral.len())));
                }
                self.out.extend_from_slice(&numeral);
            }
            NumberKey::Ordinal { upper } => {
                if !(self.desc.roman
                    || self.number.first() == Some(&b'#')
                    || self.sign == b'-'
                    || self.desc.decimal)
                {
                    let number = String::from_utf8_lossy(&self.number).into_owned();
                    self.out
                        .extend_from_slice(ordinal_suffix(&number, upper)?.as_bytes());
                }
            }
            NumberKey::Minus => {
                if self.sign == b'-' {
                    self.out.push(b'-');
                } else if !fill {
                    self.out.push(b' ');
                }
            }
            NumberKey::Plus => {
                if self.sign == b'+' {
                    self.out.push(b'+');
                } else if !fill {
                    self.out.push(b' ');
                }
            }
            NumberKey::SignAlways => self.out.push(self.sign),
            NumberKey::Blank
            | NumberKey::C
            | NumberKey::Exponent
            | NumberKey::FillMode
            | NumberKey::Brackets
            | NumberKey::Spell
            | NumberKey::Sign
            | NumberKey::Shift => {}
        }
        Ok(())
    }

    /// One digit position (`9`, `0`) or the point: a blank, a zero, a digit or the point, with
    /// the sign before the first digit written and the closing sign after the last.
    fn digit(&mut self, key: NumberKey) {
        if self.desc.roman {
            return;
        }
        self.in_number = false;
        let fill = self.desc.fill;
        // A lone zero before the point is a blank (`0.1` with `9.9` is ` .1`).
        let zero_before_point = !self.desc.zero
            && self.next == 0
            && self.number.first() == Some(&b'0')
            && self.desc.post != 0;
        if !self.sign_written
            && (self.position >= self.pre_spaces
                || (self.desc.zero && self.desc.zero_start == self.position))
            && (!zero_before_point || self.last_relevant_is_point())
        {
            self.write_sign();
        }
        if self.position < self.pre_spaces
            && (self.desc.zero_start > self.position || !self.desc.zero)
        {
            if !fill {
                self.out.push(b' ');
            }
        } else if self.desc.zero
            && self.position < self.pre_spaces
            && self.desc.zero_start <= self.position
        {
            self.out.push(b'0');
            self.in_number = true;
        } else {
            let current = self.at(self.next);
            if current == b'.' {
                if !self.last_relevant_is_point() || fill {
                    self.out.extend_from_slice(DECIMAL_POINT);
                }
            } else if self
                .last_relevant
                .is_some_and(|relevant| self.next > relevant && key != NumberKey::Zero)
            {
                // Fill mode drops trailing zeros after the point.
            } else if zero_before_point {
                if !fill {
                    self.out.push(b' ');
                } else if self.last_relevant_is_point() {
                    self.out.push(b'0');
                }
            } else {
                self.out.push(current);
                self.in_number = true;
            }
            if current != 0 {
                self.next += 1;
            }
        }
        let mut end =
            self.digit_positions + i32::from(self.pre_spaces > 0) + i32::from(self.desc.decimal);
        if self.last_relevant == Some(self.next) {
            end = self.position;
        }
        if self.position + 1 == end {
            if self.sign_written && self.desc.brackets {
                self.out.push(if self.sign == b'+' { b' ' } else { b'>' });
            } else if self.desc.anchored && self.desc.sign_anchor == AnchoredSign::After {
                self.out.push(if self.sign == b'-' { b'-' } else { b'+' });
            }
        }
        self.position += 1;
    }

    /// The sign in front of the number, in the template's style.
    fn write_sign(&mut self) {
        if self.desc.anchored {
            if self.desc.sign_anchor == AnchoredSign::Before {
                self.out.push(if self.sign == b'-' { b'-' } else { b'+' });
                self.sign_written = true;
            }
        } else if self.desc.brackets {
            self.out.push(if self.sign == b'+' { b' ' } else { b'<' });
            self.sign_written = true;
        } else if self.sign == b'+' {
            if !self.desc.fill {
                self.out.push(b' ');
            }
            self.sign_written = true;
        } else if self.sign == b'-' {
            self.out.push(b'-');
            self.sign_written = true;
        }
    }
}

/// The last digit after the point that is not a trailing zero, or the point itself.
fn last_relevant_decimal(number: &[u8]) -> Option<usize> {
    let point = number.iter().position(|b| *b == b'.')?;
    let after = number.get(point + 1..).unwrap_or_default();
    Some(
        after
            .iter()
            .rposition(|d| *d != b'0')
            .map_or(point, |i| point + 1 + i),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(value: Number, template: &str) -> String {
        let template = match parse_number_template(template) {
            Ok(t) => t,
            Err(e) => panic!("{template}: {e}"),
        };
        match to_char_number(value, &template) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn numeric(text: &str) -> Number {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let unscaled: i128 = format!("{int}{frac}").parse().unwrap_or_default();
        let scale = i8::try_from(frac.len()).unwrap_or_default();
        Number::Numeric { unscaled, scale }
    }

    #[test]
    fn examples_from_the_postgresql_documentation() {
        assert_eq!(fmt(numeric("-0.1"), "99.99"), "  -.10");
        assert_eq!(fmt(numeric("-0.1"), "FM9.99"), "-.1");
        assert_eq!(fmt(numeric("-0.1"), "FM90.99"), "-0.1");
        assert_eq!(fmt(numeric("0.1"), "0.9"), " 0.1");
        assert_eq!(fmt(Number::Int4(12), "9990999.9"), "    0012.0");
        assert_eq!(fmt(Number::Int4(12), "FM9990999.9"), "0012.");
        assert_eq!(fmt(Number::Int4(485), "999"), " 485");
        assert_eq!(fmt(Number::Int4(-485), "999"), "-485");
        assert_eq!(fmt(Number::Int4(485), "9 9 9"), " 4 8 5");
        assert_eq!(fmt(Number::Int4(1485), "9,999"), " 1,485");
        assert_eq!(fmt(Number::Int4(1485), "9G999"), " 1,485");
        assert_eq!(fmt(numeric("148.5"), "999.999"), " 148.500");
        assert_eq!(fmt(numeric("148.5"), "FM999.999"), "148.5");
        assert_eq!(fmt(numeric("148.5"), "FM999.990"), "148.500");
        assert_eq!(fmt(numeric("148.5"), "999D999"), " 148.500");
        assert_eq!(fmt(numeric("3148.5"), "9G999D999"), " 3,148.500");
        assert_eq!(fmt(Number::Int4(-485), "999S"), "485-");
        assert_eq!(fmt(Number::Int4(-485), "999MI"), "485-");
        assert_eq!(fmt(Number::Int4(485), "999MI"), "485 ");
        assert_eq!(fmt(Number::Int4(485), "FM999MI"), "485");
        assert_eq!(fmt(Number::Int4(485), "SG999"), "+485");
        assert_eq!(fmt(Number::Int4(-485), "SG999"), "-485");
        assert_eq!(fmt(Number::Int4(-485), "9SG99"), "4-85");
        assert_eq!(fmt(Number::Int4(-485), "999PR"), "<485>");
        assert_eq!(fmt(Number::Int4(485), "RN"), "        CDLXXXV");
        assert_eq!(fmt(Number::Int4(485), "FMRN"), "CDLXXXV");
        assert_eq!(fmt(numeric("5.2"), "FMRN"), "V");
        assert_eq!(fmt(Number::Int4(482), "999th"), " 482nd");
        assert_eq!(
            fmt(Number::Int4(485), "\"Good number:\"999"),
            "Good number: 485"
        );
        assert_eq!(
            fmt(numeric("485.8"), "\"Pre:\"999\" Post:\" .999"),
            "Pre: 485 Post: .800"
        );
        assert_eq!(fmt(Number::Int4(12), "99V999"), " 12000");
        assert_eq!(fmt(numeric("12.4"), "99V999"), " 12400");
        assert_eq!(fmt(numeric("12.45"), "99V9"), " 125");
        assert_eq!(fmt(numeric("0.0004859"), "9.99EEEE"), " 4.86e-04");
        assert_eq!(fmt(Number::Int4(125), "999"), " 125");
        assert_eq!(fmt(Number::Float4(125.8), "999D9"), " 125.8");
        assert_eq!(fmt(numeric("-125.8"), "999D99S"), "125.80-");
    }

    #[test]
    fn signs() {
        // The documentation's `+485` is wrong: a lone PL leaves the sign position blank.
        assert_eq!(fmt(Number::Int4(485), "PL999"), "+ 485");
        assert_eq!(fmt(Number::Int4(-485), "PL999"), " -485");
        assert_eq!(fmt(Number::Int4(485), "999PR"), " 485 ");
        assert_eq!(fmt(Number::Int4(485), "FM999PR"), "485");
        assert_eq!(fmt(Number::Int4(-5), "S999"), "  -5");
        assert_eq!(fmt(Number::Int4(5), "S999"), "  +5");
        assert_eq!(fmt(Number::Int4(-5), "MI999"), "-  5");
        assert_eq!(fmt(Number::Int4(0), "9"), " 0");
        assert_eq!(
            fmt(Number::Int8(-9_000_000_000), "FM9999999999"),
            "-9000000000"
        );
    }

    #[test]
    fn overflow_of_the_digit_positions_gives_hashes() {
        assert_eq!(fmt(Number::Int4(12345), "999"), " ###");
        assert_eq!(fmt(numeric("12345.6"), "999.99"), " ###.##");
        assert_eq!(fmt(Number::Float8(-1234.5), "99.9"), "-##.#");
        assert_eq!(fmt(Number::Int4(4000), "RN"), "###############");
    }

    #[test]
    fn floats_keep_their_significant_digits() {
        assert_eq!(fmt(Number::Float8(0.125), "9.99"), "  .12");
        assert_eq!(fmt(numeric("0.125"), "9.99"), "  .13");
        // Digits beyond DBL_DIG (FLT_DIG) are cut, and the answer ends where they run out.
        assert_eq!(
            fmt(Number::Float8(1.0 / 3.0), "9.9999999999999999"),
            "  .33333333333333"
        );
        assert_eq!(fmt(Number::Float4(1.0 / 3.0), "9.9999999"), "  .33333");
        assert_eq!(fmt(Number::Float8(1234.5678), "FM9999.99"), "1234.57");
        assert_eq!(fmt(Number::Float8(-0.0004859), "9.99EEEE"), "-4.86e-04");
        assert_eq!(fmt(Number::Float8(f64::NAN), "9.99EEEE"), " #.######");
        assert_eq!(fmt(Number::Int4(125), "9.9EEEE"), " 1.2e+02");
        assert_eq!(fmt(Number::Int8(125), "9.9EEEE"), " 1.3e+02");
        assert_eq!(fmt(numeric("9.999"), "9.99EEEE"), " 10.00e+00");
        assert_eq!(fmt(numeric("0"), "9.99EEEE"), " 0.00e+00");
    }

    #[test]
    fn literal_text_and_ordinals() {
        assert_eq!(fmt(numeric("100"), "foo999"), "foo 100");
        assert_eq!(fmt(numeric("100"), "f\"ool\"999"), "fool 100");
        assert_eq!(fmt(numeric("100"), "FM999.9"), "100.");
        // No digit places after the point: PostgreSQL leaves the point out.
        assert_eq!(fmt(numeric("100"), "FM999."), "100");
        assert_eq!(fmt(numeric("100"), "FM999"), "100");
        assert_eq!(fmt(Number::Int4(7), "99%"), "  7%");
        assert_eq!(fmt(Number::Int4(11), "99th"), " 11th");
        assert_eq!(fmt(Number::Int4(23), "FM99TH"), "23RD");
        // No suffix for negative or fractional numbers.
        assert_eq!(fmt(Number::Int4(-1), "99th"), " -1");
        assert_eq!(fmt(numeric("1.5"), "9.9th"), " 1.5");
    }

    #[test]
    fn decimal_helpers() {
        assert_eq!(split_decimal(125, 1), ("12".to_string(), "5".to_string()));
        assert_eq!(split_decimal(5, 3), ("0".to_string(), "005".to_string()));
        assert_eq!(split_decimal(12, -2), ("1200".to_string(), String::new()));
        assert_eq!(round_fixed("9", "995", 2), "10.00");
        assert_eq!(round_fixed("1", "2", 3), "1.200");
        assert_eq!(round_fixed("0", "5", 0), "1");
        assert_eq!(roman(1994), "MCMXCIV");
        assert_eq!(roman(3999), "MMMCMXCIX");
    }
}
