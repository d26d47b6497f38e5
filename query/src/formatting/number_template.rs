//! Number templates (`99G999D9S`) for `to_char` of numbers and `to_number`: their patterns, and
//! the description PostgreSQL derives from them (digits before and after the point, where the
//! sign goes, fill mode) with its rules for which patterns combine.

use datafusion::common::Result as DfResult;

use super::errors::template_syntax;
use super::template::take_literal;

/// A number pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NumberKey {
    /// `,`: a group separator.
    Comma,
    /// `.`: the decimal point.
    Point,
    /// `0`: a digit, zero-padded.
    Zero,
    /// `9`: a digit, blank-padded.
    Nine,
    /// `B`: accepted, no effect.
    Blank,
    /// `C`: accepted, no effect.
    C,
    /// `D`: the locale's decimal point.
    LocalePoint,
    /// `EEEE`: scientific notation.
    Exponent,
    /// `FM`: fill mode, no padding.
    FillMode,
    /// `G`: the locale's group separator.
    Group,
    /// `L`: the locale's currency symbol.
    Currency,
    /// `MI`: a minus sign if negative.
    Minus,
    /// `PL`: a plus sign if positive.
    Plus,
    /// `PR`: negative values in angle brackets.
    Brackets,
    /// `RN`, `rn`: Roman numerals.
    Roman { upper: bool },
    /// `SG`: a plus or minus sign.
    SignAlways,
    /// `SP`: accepted, no effect.
    Spell,
    /// `S`: the sign, anchored to the number.
    Sign,
    /// `TH`, `th`: an ordinal suffix.
    Ordinal { upper: bool },
    /// `V`: shift the point by the digits that follow.
    Shift,
}

/// PostgreSQL's number patterns; the first that starts the rest of the template wins.
static NUMBER_KEYWORDS: &[(&str, NumberKey)] = &[
    (",", NumberKey::Comma),
    (".", NumberKey::Point),
    ("0", NumberKey::Zero),
    ("9", NumberKey::Nine),
    ("B", NumberKey::Blank),
    ("C", NumberKey::C),
    ("D", NumberKey::LocalePoint),
    ("EEEE", NumberKey::Exponent),
    ("FM", NumberKey::FillMode),
    ("G", NumberKey::Group),
    ("L", NumberKey::Currency),
    ("MI", NumberKey::Minus),
    ("PL", NumberKey::Plus),
    ("PR", NumberKey::Brackets),
    ("RN", NumberKey::Roman { upper: true }),
    ("SG", NumberKey::SignAlways),
    ("SP", NumberKey::Spell),
    ("S", NumberKey::Sign),
    ("TH", NumberKey::Ordinal { upper: true }),
    ("V", NumberKey::Shift),
    ("b", NumberKey::Blank),
    ("c", NumberKey::C),
    ("d", NumberKey::LocalePoint),
    ("eeee", NumberKey::Exponent),
    ("fm", NumberKey::FillMode),
    ("g", NumberKey::Group),
    ("l", NumberKey::Currency),
    ("mi", NumberKey::Minus),
    ("pl", NumberKey::Plus),
    ("pr", NumberKey::Brackets),
    ("rn", NumberKey::Roman { upper: false }),
    ("sg", NumberKey::SignAlways),
    ("sp", NumberKey::Spell),
    ("s", NumberKey::Sign),
    ("th", NumberKey::Ordinal { upper: false }),
    ("v", NumberKey::Shift),
];

/// One element of a number template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberNode {
    /// A pattern.
    Key(NumberKey),
    /// Any other character: copied by `to_char`, skipped (one input character) by `to_number`.
    Literal(char),
}

/// Where the `S` pattern puts the sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AnchoredSign {
    /// No `S`.
    #[default]
    None,
    /// Before the number.
    Before,
    /// After the number.
    After,
}

/// What a number template says about the number as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NumberDesc {
    /// Digit positions before the point.
    pub pre: i32,
    /// Digit positions after the point.
    pub post: i32,
    /// Where `S` puts the sign.
    pub sign_anchor: AnchoredSign,
    /// Digit positions before `S`, when `S` comes first.
    pub pre_before_sign: i32,
    /// Digits after `V`.
    pub shift_digits: i32,
    /// Position (counted from 1) of the first `0` before the point, 0 if none.
    pub zero_start: i32,
    /// Digit positions up to and including the last `0`.
    pub zero_end: i32,
    /// `.` or `D` seen.
    pub decimal: bool,
    /// `D` seen.
    pub locale_decimal: bool,
    /// `0` seen before the point.
    pub zero: bool,
    /// `B` before any digit.
    pub blank: bool,
    /// `FM`.
    pub fill: bool,
    /// `S`.
    pub anchored: bool,
    /// `PR`.
    pub brackets: bool,
    /// `MI` or `SG`.
    pub minus: bool,
    /// `PL` or `SG`.
    pub plus: bool,
    /// `RN`.
    pub roman: bool,
    /// `V`.
    pub shift: bool,
    /// `PL` after the point.
    pub plus_after_point: bool,
    /// `MI` after the point.
    pub minus_after_point: bool,
    /// `EEEE`.
    pub exponent: bool,
}

impl NumberDesc {
    /// Whether anything but `RN` and `FM` is set, which `RN` does not allow.
    fn beyond_roman(&self) -> bool {
        self.decimal
            || self.locale_decimal
            || self.zero
            || self.blank
            || self.anchored
            || self.brackets
            || self.minus
            || self.plus
            || self.shift
            || self.plus_after_point
            || self.minus_after_point
            || self.exponent
    }

    /// Takes one pattern into account, refusing the combinations PostgreSQL refuses.
    fn add(&mut self, key: NumberKey) -> DfResult<()> {
        if self.exponent && key != NumberKey::Exponent {
            return Err(template_syntax("\"EEEE\" must be the last pattern used"));
        }
        match key {
            NumberKey::Nine => {
                if self.brackets {
                    return Err(template_syntax("\"9\" must be ahead of \"PR\""));
                }
                if self.shift {
                    self.shift_digits += 1;
                } else if self.decimal {
                    self.post += 1;
                } else {
                    self.pre += 1;
                }
            }
            NumberKey::Zero => {
                if self.brackets {
                    return Err(template_syntax("\"0\" must be ahead of \"PR\""));
                }
                if !self.zero && !self.decimal {
                    self.zero = true;
                    self.zero_start = self.pre + 1;
                }
                if self.decimal {
                    self.post += 1;
                } else {
                    self.pre += 1;
                }
                self.zero_end = self.pre + self.post;
            }
            NumberKey::Blank => {
                if self.pre == 0 && self.post == 0 && !self.zero {
                    self.blank = true;
                }
            }
            NumberKey::LocalePoint | NumberKey::Point => {
                if key == NumberKey::LocalePoint {
                    self.locale_decimal = true;
                }
                if self.decimal {
                    return Err(template_syntax("multiple decimal points"));
                }
                if self.shift {
                    return Err(template_syntax(
                        "cannot use \"V\" and decimal point together",
                    ));
                }
                self.decimal = true;
            }
            NumberKey::FillMode => self.fill = true,
            NumberKey::Sign => {
                if self.anchored {
                    return Err(template_syntax("cannot use \"S\" twice"));
                }
                if self.plus || self.minus || self.brackets {
                    return Err(template_syntax(
                        "cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together",
                    ));
                }
                if !self.decimal {
                    self.sign_anchor = AnchoredSign::Before;
                    self.pre_before_sign = self.pre;
                    self.anchored = true;
                } else if self.sign_anchor == AnchoredSign::None {
                    self.sign_anchor = AnchoredSign::After;
                    self.anchored = true;
                }
            }
            NumberKey::Minus => {
                if self.anchored {
                    return Err(template_syntax("cannot use \"S\" and \"MI\" together"));
                }
                self.minus = true;
                if self.decimal {
                    self.minus_after_point = true;
                }
            }
            NumberKey::Plus => {
                if self.anchored {
                    return Err(template_syntax("cannot use \"S\" and \"PL\" together"));
                }
                self.plus = true;
                if self.decimal {
                    self.plus_after_point = true;
                }
            }
            NumberKey::SignAlways => {
                if self.anchored {
                    return Err(template_syntax("cannot use \"S\" and \"SG\" together"));
                }
                self.minus = true;
                self.plus = true;
            }
            NumberKey::Brackets => {
                if self.anchored || self.plus || self.minus {
                    return Err(template_syntax(
                        "cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together",
                    ));
                }
                self.brackets = true;
            }
            NumberKey::Roman { .. } => {
                if self.roman {
                    return Err(template_syntax("cannot use \"RN\" twice"));
                }
                self.roman = true;
            }
            NumberKey::Shift => {
                if self.decimal {
                    return Err(template_syntax(
                        "cannot use \"V\" and decimal point together",
                    ));
                }
                self.shift = true;
            }
            NumberKey::Exponent => {
                if self.exponent {
                    return Err(template_syntax("cannot use \"EEEE\" twice"));
                }
                if self.blank
                    || self.fill
                    || self.anchored
                    || self.brackets
                    || self.minus
                    || self.plus
                    || self.roman
                    || self.shift
                {
                    return Err(template_syntax(
                        "\"EEEE\" is incompatible with other formats",
                    ));
                }
                self.exponent = true;
            }
            NumberKey::Comma
            | NumberKey::C
            | NumberKey::Group
            | NumberKey::Currency
            | NumberKey::Spell
            | NumberKey::Ordinal { .. } => {}
        }
        if self.roman && self.beyond_roman() {
            return Err(template_syntax("\"RN\" is incompatible with other formats"));
        }
        Ok(())
    }
}

/// A parsed number template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NumberTemplate {
    /// Its patterns and literal characters, in order.
    pub nodes: Vec<NumberNode>,
    /// What it says about the number as a whole.
    pub desc: NumberDesc,
}

/// Parses a number template, failing as PostgreSQL does on patterns that do not combine.
pub(crate) fn parse_number_template(template: &str) -> DfResult<NumberTemplate> {
    let mut nodes = Vec::new();
    let mut desc = NumberDesc::default();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some((name, key)) = NUMBER_KEYWORDS.iter().find(|(n, _)| rest.starts_with(n)) {
            rest = rest.get(name.len()..).unwrap_or_default();
            desc.add(*key)?;
            nodes.push(NumberNode::Key(*key));
        } else {
            rest = take_literal(rest, |c, _| nodes.push(NumberNode::Literal(c)));
        }
    }
    Ok(NumberTemplate { nodes, desc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(template: &str) -> NumberDesc {
        match parse_number_template(template) {
            Ok(t) => t.desc,
            Err(e) => panic!("{template}: {e}"),
        }
    }

    fn refused(template: &str) -> String {
        match parse_number_template(template) {
            Ok(_) => panic!("{template} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn digits_before_and_after_the_point() {
        let d = desc("99G999D9S");
        assert_eq!((d.pre, d.post), (5, 1));
        assert!(d.decimal && d.locale_decimal && d.anchored);
        assert_eq!(d.sign_anchor, AnchoredSign::After);
        let d = desc("9990999.9");
        assert_eq!((d.pre, d.post, d.zero_start, d.zero_end), (7, 1, 4, 4));
        let d = desc("99V999");
        assert_eq!((d.pre, d.post, d.shift_digits), (2, 0, 3));
        let d = desc("S999");
        assert_eq!(
            (d.sign_anchor, d.pre_before_sign),
            (AnchoredSign::Before, 0)
        );
    }

    #[test]
    fn quoted_text_is_literal() {
        let t = match parse_number_template("\"Pre:\"9") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            t.nodes,
            [
                NumberNode::Literal('P'),
                NumberNode::Literal('r'),
                NumberNode::Literal('e'),
                NumberNode::Literal(':'),
                NumberNode::Key(NumberKey::Nine)
            ]
        );
    }

    #[test]
    fn patterns_that_do_not_combine() {
        assert!(refused("9.9.9").contains("multiple decimal points"));
        assert!(refused("9V9.9").contains("\"V\" and decimal point"));
        assert!(refused("S9S").contains("cannot use \"S\" twice"));
        assert!(refused("S9MI").contains("\"S\" and \"MI\""));
        assert!(refused("9PR9").contains("\"9\" must be ahead of \"PR\""));
        assert!(refused("9.99EEEE9").contains("\"EEEE\" must be the last pattern used"));
        assert!(refused("FM9.99EEEE").contains("\"EEEE\" is incompatible"));
        assert!(refused("RN.").contains("\"RN\" is incompatible"));
        assert!(parse_number_template("FMRN").is_ok());
    }
}
