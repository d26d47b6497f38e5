//! The English ordinal suffix (`1st`, `12th`, `22nd`) the `TH`/`th` modifiers append.

use datafusion::common::Result as DfResult;

use super::errors::invalid;

/// The suffix for the number written as `number`, upper case (`ST`) or lower (`st`). Numbers
/// ending in 11, 12 and 13 take `th`, as do all but those ending in 1, 2 and 3.
pub(crate) fn ordinal_suffix(number: &str, upper: bool) -> DfResult<&'static str> {
    let mut digits = number.bytes().rev();
    let last = digits.next().filter(u8::is_ascii_digit);
    let Some(last) = last else {
        return Err(invalid(format!("\"{number}\" is not a number")));
    };
    let teen = digits.next() == Some(b'1');
    let (lower_case, upper_case) = match last {
        b'1' if !teen => ("st", "ST"),
        b'2' if !teen => ("nd", "ND"),
        b'3' if !teen => ("rd", "RD"),
        _ => ("th", "TH"),
    };
    Ok(if upper { upper_case } else { lower_case })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let th = |n: &str| ordinal_suffix(n, false).ok();
        assert_eq!(th("1"), Some("st"));
        assert_eq!(th("2"), Some("nd"));
        assert_eq!(th("3"), Some("rd"));
        assert_eq!(th("4"), Some("th"));
        assert_eq!(th("11"), Some("th"));
        assert_eq!(th("12"), Some("th"));
        assert_eq!(th("113"), Some("th"));
        assert_eq!(th("21"), Some("st"));
        assert_eq!(th("482"), Some("nd"));
        assert_eq!(th("-1"), Some("st"));
        assert_eq!(ordinal_suffix("23", true).ok(), Some("RD"));
        assert!(ordinal_suffix("nan", false).is_err());
        assert!(ordinal_suffix("", false).is_err());
    }
}
