//! The proleptic Gregorian calendar PostgreSQL uses, on days counted from 1970-01-01: civil
//! dates, Julian day numbers and ISO 8601 week dates.

/// The Julian day number of 1970-01-01.
pub(crate) const UNIX_EPOCH_JULIAN: i64 = 2_440_588;

/// Days since 1970-01-01 of a year, month and day. Months outside 1..=12 carry into the year
/// and days past the month's end into the next months, as a date's fields do in arithmetic.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year + (month - 1).div_euclid(12);
    let month = (month - 1).rem_euclid(12) + 1;
    // Years start in March here, so the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year, month (1..=12) and day (1..=31) of a day counted from 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether a year (astronomical numbering: 0 is 1 BC) has 366 days.
pub(crate) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days of a month (1..=12) of a year.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day of the week, 0 for Sunday to 6 for Saturday (1970-01-01 was a Thursday).
pub(crate) fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The Monday that starts week 1 of an ISO year: the week holding January 4th.
pub(crate) fn iso_year_start(iso_year: i64) -> i64 {
    let january_4 = days_from_civil(iso_year, 1, 4);
    january_4 - (weekday(january_4) + 6) % 7
}

/// The ISO year a day belongs to, which differs from its calendar year in the first and last
/// days of some years.
pub(crate) fn iso_year(days: i64) -> i64 {
    let (year, _, _) = civil_from_days(days);
    if days < iso_year_start(year) {
        year - 1
    } else if days >= iso_year_start(year + 1) {
        year + 1
    } else {
        year
    }
}

/// The ISO week (1..=53) of a day.
pub(crate) fn iso_week(days: i64) -> i64 {
    (days - iso_year_start(iso_year(days))).div_euclid(7) + 1
}

/// The day of the ISO year (1..=371) of a day.
pub(crate) fn iso_day_of_year(days: i64) -> i64 {
    days - iso_year_start(iso_year(days)) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(2000, 1, 1) + UNIX_EPOCH_JULIAN, 2_451_545);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        for days in [-800_000, -719_528, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        // Fields past their range carry, as in PostgreSQL's date arithmetic.
        assert_eq!(days_from_civil(2016, 2, 30), days_from_civil(2016, 3, 1));
        assert_eq!(days_from_civil(2016, 13, 1), days_from_civil(2017, 1, 1));
        assert_eq!(days_from_civil(2016, 0, 1), days_from_civil(2015, 12, 1));
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert!(is_leap(2000) && is_leap(2016) && is_leap(0) && is_leap(-4));
        assert!(!is_leap(1900) && !is_leap(2015));
        assert_eq!(days_in_month(2016, 2), 29);
        assert_eq!(days_in_month(2015, 2), 28);
        assert_eq!(days_in_month(2015, 4), 30);
    }

    #[test]
    fn iso_weeks() {
        // 2005-01-01 is a Saturday in week 53 of 2004; 2008-12-29 a Monday in week 1 of 2009.
        let d = days_from_civil(2005, 1, 1);
        assert_eq!((iso_year(d), iso_week(d), weekday(d)), (2004, 53, 6));
        let d = days_from_civil(2008, 12, 29);
        assert_eq!((iso_year(d), iso_week(d), weekday(d)), (2009, 1, 1));
        let d = days_from_civil(2006, 1, 1);
        assert_eq!(
            (iso_year(d), iso_week(d), iso_day_of_year(d)),
            (2005, 52, 364)
        );
        assert_eq!(iso_year_start(2006), days_from_civil(2006, 1, 2));
    }
}
