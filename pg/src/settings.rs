//! PostgreSQL's session settings: what `SET` stores, what `SHOW` and `current_setting()`
//! answer (the session's value, else Eddy's default), and the timeouts PostgreSQL reads in
//! its own units.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use parking_lot::Mutex;

use crate::error::{PgError, Result};

/// The PostgreSQL version Eddy reports to clients.
pub const PG_SERVER_VERSION: &str = "16.6";
/// [`PG_SERVER_VERSION`] as `server_version_num`.
pub const PG_SERVER_VERSION_NUM: &str = "160006";

/// Settings a session changed with `SET`, by lower-case name.
pub type SessionVars = Arc<Mutex<HashMap<String, String>>>;

/// The session variable holding the logged-in user, as PostgreSQL names it.
pub const SESSION_AUTHORIZATION: &str = "session_authorization";

/// The value of a PostgreSQL setting as a session sees it: what it `SET`, else Eddy's default.
pub fn setting(vars: &SessionVars, name: &str) -> Option<String> {
    let name = name.to_lowercase();
    if let Some(v) = vars.lock().get(&name) {
        return Some(v.clone());
    }
    Some(
        match name.as_str() {
            "server_version" => PG_SERVER_VERSION,
            "server_version_num" => PG_SERVER_VERSION_NUM,
            "timezone" | "time zone" => "UTC",
            "client_encoding" | "server_encoding" => "UTF8",
            "datestyle" => "ISO, MDY",
            "intervalstyle" => "postgres",
            "integer_datetimes" => "on",
            "standard_conforming_strings" => "on",
            "search_path" => "\"$user\", public",
            "transaction isolation level" | "transaction_isolation" => "read committed",
            "default_transaction_isolation" => "read committed",
            "default_transaction_read_only" | "transaction_read_only" => "off",
            "is_superuser" => "on",
            SESSION_AUTHORIZATION => "eddy",
            "max_identifier_length" => "63",
            "max_index_keys" => "32",
            "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric"
            | "lc_time" => "C",
            "application_name" => "",
            // SQLAlchemy's get_table_options compares pg_am.amname with it.
            "default_table_access_method" => "heap",
            "extra_float_digits" => "1",
            "bytea_output" => "hex",
            "block_size" => "8192",
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
            _ => return None,
        }
        .to_string(),
    )
}

/// Whether setting `name` is a timeout in milliseconds.
pub(crate) fn is_timeout(name: &str) -> bool {
    matches!(
        name,
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout"
    )
}

/// A timeout setting's value as PostgreSQL reads it, in whole milliseconds (rounded):
/// milliseconds, or a number with a unit (`us`, `ms`, `s`, `min`, `h`, `d`); 0 means no limit.
pub(crate) fn timeout_millis(name: &str, value: &str) -> Result<u64> {
    let invalid = || {
        PgError::new(
            "22023",
            format!(
                "invalid value for parameter \"{name}\": \"{value}\" (expected milliseconds, or a number with a unit: us, ms, s, min, h, d)"
            ),
        )
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let ms_per_unit = match unit.trim().to_lowercase().as_str() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let ms = (number * ms_per_unit).round();
    if !ms.is_finite() || ms > i32::MAX as f64 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

/// A millisecond setting as PostgreSQL shows it: in the largest unit that divides it exactly.
pub(crate) fn show_millis(ms: u64) -> String {
    if ms == 0 {
        return "0".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `SET name = value` / `SET name TO value` as (lower-case name, value without quotes).
pub(crate) fn parse_set(text: &str) -> Option<(String, String)> {
    let rest = text
        .trim()
        .strip_prefix("SET ")
        .or_else(|| text.trim().strip_prefix("set "))?;
    let rest = rest
        .trim_start()
        .strip_prefix("SESSION ")
        .or_else(|| rest.trim_start().strip_prefix("LOCAL "))
        .unwrap_or(rest);
    let (name, value) = if let Some((n, v)) = rest.split_once('=') {
        (n, v)
    } else if let Some((n, v)) = rest.split_once(" TO ") {
        (n, v)
    } else {
        return None;
    };
    let value = value
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .to_string();
    let name = name.trim().to_lowercase();
    if name.is_empty() || value.is_empty() && name.contains(' ') {
        return None;
    }
    Some((name, value))
}

/// `current_setting(name)`: the session's value of a PostgreSQL setting (what it `SET`, else
/// Eddy's default); an unknown name is an error, as in PostgreSQL.
pub fn current_setting_udf(vars: SessionVars) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let lookup = |name: Option<&str>| -> DfResult<Option<String>> {
                let Some(name) = name else { return Ok(None) };
                setting(&vars, name).map(Some).ok_or_else(|| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "unrecognized configuration parameter \"{name}\""
                    ))
                })
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => Ok(ColumnarValue::Scalar(
                    ScalarValue::Utf8(lookup(v.as_deref())?),
                )),
                ColumnarValue::Array(a) => {
                    let names = datafusion::common::cast::as_string_array(a)?;
                    let values = names
                        .iter()
                        .map(lookup)
                        .collect::<DfResult<datafusion::arrow::array::StringArray>>()?;
                    Ok(ColumnarValue::Array(Arc::new(values)))
                }
                other => Err(datafusion::error::DataFusionError::Execution(format!(
                    "current_setting takes a setting name, got {other:?}"
                ))),
            }
        }),
    )
}

/// `session_user` (and `current_user` and `user`, which pg-catalog and Eddy's rewrite turn
/// into it): the user the session logged in as. pg-catalog's own answers `postgres` always.
pub fn session_user_udf(vars: SessionVars) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "session_user",
        vec![],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| {
            let user = setting(&vars, SESSION_AUTHORIZATION);
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                user.unwrap_or_else(|| "eddy".to_string()),
            ))))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_set, show_millis, timeout_millis};

    #[test]
    fn timeouts_read_and_show_as_postgresql_does() {
        for (value, ms, shown) in [
            ("250", 250, "250ms"),
            ("5000", 5_000, "5s"),
            ("1.5s", 1_500, "1500ms"),
            ("3min", 180_000, "3min"),
            ("0.4", 0, "0"),
            ("2500us", 3, "3ms"),
            ("1d", 86_400_000, "1d"),
        ] {
            let got = timeout_millis("statement_timeout", value).expect(value);
            assert_eq!((got, show_millis(got).as_str()), (ms, shown), "{value}");
        }
        for bad in ["-1", "soon", "5 weeks", "1e10"] {
            let e = timeout_millis("lock_timeout", bad).expect_err(bad);
            assert!(e.message.contains("lock_timeout"), "{e}");
        }
    }

    #[test]
    fn set_statements_parse() {
        assert_eq!(
            parse_set("SET extra_float_digits = 3"),
            Some(("extra_float_digits".into(), "3".into()))
        );
        assert_eq!(
            parse_set("SET application_name TO 'psql'"),
            Some(("application_name".into(), "psql".into()))
        );
    }
}
