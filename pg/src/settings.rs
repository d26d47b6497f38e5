//! PostgreSQL's session settings: what `SET` and `set_config()` store, what `SHOW` and
//! `current_setting()` answer (the session's value, else Eddy's default), what `RESET` and
//! `DISCARD ALL` keep (the user the session logged in as), and the timeouts PostgreSQL reads
//! in its own units.

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

/// A session's settings: what it changed (`SET`, `set_config`), by lower-case name, the user
/// it logged in as, which no `RESET` changes, and whether a transaction block (`BEGIN`) is
/// open, which `SET LOCAL` values last for.
#[derive(Debug, Default)]
pub struct Vars {
    changed: HashMap<String, String>,
    login_user: Option<String>,
    in_block: bool,
    /// What `SET LOCAL` changed in the open block, with the values to restore at its end.
    saved: HashMap<String, Option<String>>,
}

/// A session's settings, shared with its functions (`current_setting`, `set_config`).
pub type SessionVars = Arc<Mutex<Vars>>;

/// The setting holding the session's user, as PostgreSQL names it (`SET SESSION
/// AUTHORIZATION`, `SHOW session_authorization`, `session_user`).
pub const SESSION_AUTHORIZATION: &str = "session_authorization";

/// Settings `RESET ALL` leaves alone, as PostgreSQL does (`GUC_NO_RESET_ALL`): their own
/// commands reset them (`SET SESSION AUTHORIZATION DEFAULT`, `RESET ROLE`; `DISCARD ALL`).
const KEPT_BY_RESET_ALL: [&str; 2] = [SESSION_AUTHORIZATION, "role"];

impl Vars {
    /// The value the session gave `name` (lower case), if it changed it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.changed.get(name).map(String::as_str)
    }

    /// Gives `name` (lower case) a value for the rest of the session (also after the open
    /// block ends, as a `SET` after a `SET LOCAL` does in PostgreSQL).
    pub fn set(&mut self, name: String, value: String) {
        self.saved.remove(&name);
        self.changed.insert(name, value);
    }

    /// `SET LOCAL` (`None`: back to the default): lasts until the open transaction block ends.
    /// Outside one it has no effect, as in PostgreSQL, where the statement is the whole
    /// transaction; returns whether it took effect.
    pub fn set_local(&mut self, name: String, value: Option<String>) -> bool {
        if !self.in_block {
            return false;
        }
        if !self.saved.contains_key(&name) {
            let old = self.changed.get(&name).cloned();
            self.saved.insert(name.clone(), old);
        }
        match value {
            Some(v) => self.changed.insert(name, v),
            None => self.changed.remove(&name),
        };
        true
    }

    /// `RESET name`: back to the default (the logged-in user for `session_authorization`).
    pub fn reset(&mut self, name: &str) {
        self.saved.remove(name);
        self.changed.remove(name);
    }

    /// `RESET ALL`: every setting back to its default but those PostgreSQL keeps.
    pub fn reset_all(&mut self) {
        let kept = |name: &String| KEPT_BY_RESET_ALL.contains(&name.as_str());
        self.changed.retain(|name, _| kept(name));
        self.saved.retain(|name, _| kept(name));
    }

    /// `DISCARD ALL` (`SET SESSION AUTHORIZATION DEFAULT; RESET ALL`): every setting back to
    /// its default, the session's user back to the one that logged in.
    pub fn discard_all(&mut self) {
        self.changed.clear();
        self.saved.clear();
    }

    /// `BEGIN`: a transaction block is open.
    pub fn begin(&mut self) {
        self.in_block = true;
    }

    /// `COMMIT` or `ROLLBACK`: the block ends, and with it what `SET LOCAL` changed.
    pub fn end_transaction(&mut self) {
        self.in_block = false;
        for (name, old) in std::mem::take(&mut self.saved) {
            match old {
                Some(v) => self.changed.insert(name, v),
                None => self.changed.remove(&name),
            };
        }
    }

    /// Whether a transaction block (`BEGIN`) is open.
    pub fn in_block(&self) -> bool {
        self.in_block
    }

    /// Records the user the session logged in as; the first call wins.
    pub fn log_in(&mut self, user: &str) {
        if self.login_user.is_none() {
            self.login_user = Some(user.to_string());
        }
    }
}

/// The value of a PostgreSQL setting as a session sees it: what it `SET`, else Eddy's default.
pub fn setting(vars: &SessionVars, name: &str) -> Option<String> {
    let name = name.to_lowercase();
    {
        let vars = vars.lock();
        if let Some(v) = vars.get(&name) {
            return Some(v.to_string());
        }
        if name == SESSION_AUTHORIZATION
            && let Some(user) = &vars.login_user
        {
            return Some(user.clone());
        }
    }
    default_setting(&name).map(str::to_string)
}

/// Eddy's default for a setting (by lower-case name), if it knows the setting.
fn default_setting(name: &str) -> Option<&'static str> {
    Some(match name {
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
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => "C",
        "application_name" => "",
        // SQLAlchemy's get_table_options compares pg_am.amname with it.
        "default_table_access_method" => "heap",
        "extra_float_digits" => "1",
        "bytea_output" => "hex",
        "block_size" => "8192",
        // Eddy compiles no queries; asyncpg turns JIT off around its introspection when on.
        "jit" => "off",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        _ => return None,
    })
}

/// `name`'s value as `SET name = value` stores it: a timeout is checked and kept as
/// PostgreSQL shows it (`5000` is `5s`); anything else as given.
pub(crate) fn normalize(name: &str, value: &str) -> Result<String> {
    if is_timeout(name) {
        return Ok(show_millis(timeout_millis(name, value)?));
    }
    Ok(value.to_string())
}

/// Sets `name` for the rest of the session as `SET` does; returns the value as `SHOW` and
/// `current_setting` show it.
pub(crate) fn assign(vars: &SessionVars, name: &str, value: &str) -> Result<String> {
    let name = name.trim().to_lowercase();
    let value = normalize(&name, value)?;
    vars.lock().set(name, value.clone());
    Ok(value)
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

/// `current_setting(name [, missing_ok])`: the session's value of a PostgreSQL setting (what
/// it `SET`, else Eddy's default); an unknown name is an error (42704), or NULL with
/// `missing_ok`, as in PostgreSQL.
pub fn current_setting_udf(vars: SessionVars) -> ScalarUDF {
    use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
    ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        ),
        vars,
    })
}

/// `current_setting` of one session.
#[derive(Debug)]
struct CurrentSetting {
    signature: datafusion::logical_expr::Signature,
    vars: SessionVars,
}

impl PartialEq for CurrentSetting {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.vars, &other.vars)
    }
}

impl Eq for CurrentSetting {}

impl std::hash::Hash for CurrentSetting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.vars), state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{Array, StringArray};
        use datafusion::common::cast::{as_boolean_array, as_string_array};
        let lookup = |name: Option<&str>, missing_ok: Option<bool>| -> DfResult<Option<String>> {
            let Some(name) = name else { return Ok(None) };
            match setting(&self.vars, name) {
                Some(value) => Ok(Some(value)),
                None if missing_ok == Some(true) => Ok(None),
                None => Err(datafusion::error::DataFusionError::External(Box::new(
                    PgError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ),
                ))),
            }
        };
        match args.args.as_slice() {
            [ColumnarValue::Scalar(ScalarValue::Utf8(name))] => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(lookup(name.as_deref(), None)?),
            )),
            [
                ColumnarValue::Scalar(ScalarValue::Utf8(name)),
                ColumnarValue::Scalar(ScalarValue::Boolean(missing_ok)),
            ] => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(
                name.as_deref(),
                *missing_ok,
            )?))),
            [name, rest @ ..] if rest.len() <= 1 => {
                let rows = args.number_rows;
                let names = name.to_array(rows)?;
                let names = as_string_array(&names)?;
                let missing_ok = match rest {
                    [flag] => Some(flag.to_array(rows)?),
                    _ => None,
                };
                let missing_ok = missing_ok
                    .as_ref()
                    .map(|a| as_boolean_array(a))
                    .transpose()?;
                let values = (0..rows)
                    .map(|i| {
                        let name = (!names.is_null(i)).then(|| names.value(i));
                        let ok = missing_ok.and_then(|a| (!a.is_null(i)).then(|| a.value(i)));
                        lookup(name, ok)
                    })
                    .collect::<DfResult<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            other => Err(datafusion::error::DataFusionError::Execution(format!(
                "current_setting takes a setting name, got {other:?}"
            ))),
        }
    }
}

/// `set_config(name, value, is_local)`: sets a setting as `SET` does and returns its new value
/// as `current_setting` shows it. A NULL value resets it (the result is then its default).
///
/// `is_local = true` is `SET LOCAL`: the value lasts until the end of the transaction. Eddy has
/// no multi-statement transactions but tracks `BEGIN`: inside `BEGIN ... COMMIT/ROLLBACK` the
/// value lasts until `COMMIT` or `ROLLBACK`; outside, the statement is the whole transaction,
/// as in PostgreSQL, so the function returns the value (checked as `SET` checks it) and the
/// setting is unchanged afterwards. Settings of DataFusion itself (`datafusion.*`) are changed
/// with `SET` only.
pub fn set_config_udf(vars: SessionVars) -> ScalarUDF {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::common::cast::{as_boolean_array, as_string_array};
    let one = move |name: Option<&str>, value: Option<&str>, local: Option<bool>| {
        set_config(&vars, name, value, local.unwrap_or(false))
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    };
    datafusion::logical_expr::create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let scalar_text = |v: &ColumnarValue| match v {
                ColumnarValue::Scalar(ScalarValue::Utf8(s)) => Some(s.clone()),
                _ => None,
            };
            if let [
                name,
                value,
                ColumnarValue::Scalar(ScalarValue::Boolean(local)),
            ] = args
                && let (Some(name), Some(value)) = (scalar_text(name), scalar_text(value))
            {
                return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(one(
                    name.as_deref(),
                    value.as_deref(),
                    *local,
                )?)));
            }
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let [name, value, local] = args else {
                return Err(datafusion::error::DataFusionError::Execution(
                    "set_config takes (name, value, is_local)".to_string(),
                ));
            };
            let (name, value, local) = (
                name.to_array(rows)?,
                value.to_array(rows)?,
                local.to_array(rows)?,
            );
            let (name, value, local) = (
                as_string_array(&name)?,
                as_string_array(&value)?,
                as_boolean_array(&local)?,
            );
            let out = (0..rows)
                .map(|i| {
                    let n = (!name.is_null(i)).then(|| name.value(i));
                    let v = (!value.is_null(i)).then(|| value.value(i));
                    let l = (!local.is_null(i)).then(|| local.value(i));
                    one(n, v, l)
                })
                .collect::<DfResult<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
    .with_aliases(["pg_catalog.set_config"])
}

/// One `set_config` call; see [`set_config_udf`].
fn set_config(
    vars: &SessionVars,
    name: Option<&str>,
    value: Option<&str>,
    local: bool,
) -> Result<Option<String>> {
    let Some(name) = name else {
        return Err(PgError::new("22004", "SET requires parameter name"));
    };
    let name = name.trim().to_lowercase();
    if name.starts_with("datafusion.") {
        return Err(PgError::unsupported(format!(
            "set_config cannot change \"{name}\"; use SET {name} = ..."
        )));
    }
    match (value, local) {
        (Some(value), false) => assign(vars, &name, value).map(Some),
        (Some(value), true) => {
            let value = normalize(&name, value)?;
            vars.lock().set_local(name, Some(value.clone()));
            Ok(Some(value))
        }
        (None, false) => {
            vars.lock().reset(&name);
            Ok(setting(vars, &name))
        }
        (None, true) => {
            let shown = default_setting(&name).map(str::to_string);
            vars.lock().set_local(name, None);
            Ok(shown)
        }
    }
}

/// `SET LOCAL name = value`; see [`Vars::set_local`].
pub(crate) fn assign_local(vars: &SessionVars, name: &str, value: &str) -> Result<()> {
    let name = name.trim().to_lowercase();
    let value = normalize(&name, value)?;
    vars.lock().set_local(name, Some(value));
    Ok(())
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
    use super::{
        SESSION_AUTHORIZATION, SessionVars, assign, parse_set, set_config, setting, show_millis,
        timeout_millis,
    };

    fn logged_in(user: &str) -> SessionVars {
        let vars = SessionVars::default();
        vars.lock().log_in(user);
        vars
    }

    #[test]
    fn reset_all_keeps_the_logged_in_user() {
        let vars = logged_in("alice");
        vars.lock().log_in("mallory");
        assert_eq!(
            setting(&vars, SESSION_AUTHORIZATION).as_deref(),
            Some("alice")
        );
        assign(&vars, "application_name", "app").unwrap();
        assign(&vars, "statement_timeout", "5000").unwrap();
        vars.lock().reset_all();
        assert_eq!(setting(&vars, "application_name").as_deref(), Some(""));
        assert_eq!(setting(&vars, "statement_timeout").as_deref(), Some("0"));
        assert_eq!(
            setting(&vars, SESSION_AUTHORIZATION).as_deref(),
            Some("alice")
        );
        // SET SESSION AUTHORIZATION survives RESET ALL, not DISCARD ALL.
        assign(&vars, SESSION_AUTHORIZATION, "bob").unwrap();
        vars.lock().reset_all();
        assert_eq!(
            setting(&vars, SESSION_AUTHORIZATION).as_deref(),
            Some("bob")
        );
        vars.lock().discard_all();
        assert_eq!(
            setting(&vars, SESSION_AUTHORIZATION).as_deref(),
            Some("alice")
        );
        assert_eq!(setting(&vars, "no_such_setting"), None);
    }

    #[test]
    fn set_config_sets_like_set_and_answers_like_current_setting() {
        let vars = logged_in("eddy");
        let set = |name, value, local| set_config(&vars, Some(name), value, local);
        let shown = |name| setting(&vars, name);
        let ok = |r: crate::error::Result<Option<String>>| r.expect("set_config");
        assert_eq!(
            ok(set("Statement_Timeout", Some("5000"), false)).as_deref(),
            Some("5s")
        );
        assert_eq!(shown("statement_timeout").as_deref(), Some("5s"));
        assert_eq!(
            ok(set("myapp.tenant", Some("42"), false)).as_deref(),
            Some("42")
        );
        assert_eq!(shown("myapp.tenant").as_deref(), Some("42"));
        // is_local outside a transaction block: the value is checked and returned, the
        // session keeps its own.
        assert_eq!(
            ok(set("statement_timeout", Some("1min"), true)).as_deref(),
            Some("1min")
        );
        assert_eq!(shown("statement_timeout").as_deref(), Some("5s"));
        // Inside one, it lasts until the block ends.
        vars.lock().begin();
        assert_eq!(
            ok(set("statement_timeout", Some("1min"), true)).as_deref(),
            Some("1min")
        );
        assert_eq!(
            ok(set("myapp.tenant", Some("7"), true)).as_deref(),
            Some("7")
        );
        assert_eq!(ok(set("myapp.new", Some("n"), true)).as_deref(), Some("n"));
        assert_eq!(shown("statement_timeout").as_deref(), Some("1min"));
        assert_eq!(shown("myapp.tenant").as_deref(), Some("7"));
        vars.lock().end_transaction();
        assert_eq!(shown("statement_timeout").as_deref(), Some("5s"));
        assert_eq!(shown("myapp.tenant").as_deref(), Some("42"));
        assert_eq!(shown("myapp.new"), None);
        // A session-level SET after SET LOCAL outlasts the block.
        vars.lock().begin();
        ok(set("application_name", Some("local"), true));
        ok(set("application_name", Some("session"), false));
        vars.lock().end_transaction();
        assert_eq!(shown("application_name").as_deref(), Some("session"));
        // Invalid values are refused either way, and change nothing.
        assert_eq!(
            set("lock_timeout", Some("soon"), true)
                .unwrap_err()
                .sqlstate,
            "22023"
        );
        assert_eq!(
            set("statement_timeout", Some("soon"), false)
                .unwrap_err()
                .sqlstate,
            "22023"
        );
        assert_eq!(shown("statement_timeout").as_deref(), Some("5s"));
        // NULL resets.
        assert_eq!(
            ok(set("statement_timeout", None, false)).as_deref(),
            Some("0")
        );
        assert_eq!(ok(set("myapp.tenant", None, false)), None);
        let no_name = set_config(&vars, None, Some("x"), false).unwrap_err();
        assert_eq!(no_name.sqlstate, "22004");
        let datafusion = set("datafusion.execution.batch_size", Some("1"), false).unwrap_err();
        assert_eq!(datafusion.sqlstate, "0A000");
    }

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
