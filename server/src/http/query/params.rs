//! The values of a statement's placeholders, as the query API's `params` gives them: a JSON
//! array for `$1`, `$2`, ... or a JSON object for `$name`. JSON has fewer types than SQL, so
//! each value is cast to the type the statement gives its placeholder where it gives one (a
//! string to a timestamp, an integer to a double), and a value that does not convert is an
//! `InvalidParameter` error naming the placeholder.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use eddy_query::{ErrorKind, Prepared, QueryError};
use serde_json::{Map, Value};

/// Values for a statement's placeholders, as the request gives them.
#[derive(Debug)]
pub(super) enum JsonParams {
    /// `[v1, v2, ...]` for `$1`, `$2`, ...
    List(Vec<Value>),
    /// `{"name": v, ...}` for `$name`.
    Map(Map<String, Value>),
}

impl JsonParams {
    /// The parameters of a `params` value; `None` for null or an empty list or object.
    pub(super) fn of(value: Value) -> Result<Option<JsonParams>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Array(values) if values.is_empty() => Ok(None),
            Value::Array(values) => Ok(Some(JsonParams::List(values))),
            Value::Object(values) if values.is_empty() => Ok(None),
            Value::Object(values) => Ok(Some(JsonParams::Map(values))),
            other => Err(format!(
                "\"params\" must be a JSON array (for $1, $2, ...) or object (for $name), \
                 got {other}"
            )),
        }
    }

    /// The values for `prepared`'s placeholders, each cast to the type the statement gives
    /// its placeholder where it gives one (a JSON number for a timestamp, a string for a
    /// double).
    pub(super) fn bind(self, prepared: &Prepared) -> Result<ParamValues, QueryError> {
        let Prepared::Plan(plan, _) = prepared else {
            return Err(QueryError::new(
                ErrorKind::InvalidParameter,
                "parameters apply to queries and INSERT only",
            ));
        };
        let types = plan.get_parameter_types()?;
        let typed = |id: String, value: Value| {
            let target = types.get(&id).cloned().flatten();
            scalar(&id, value, target)
        };
        Ok(match self {
            JsonParams::List(values) => ParamValues::from(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| typed(format!("${}", i + 1), v))
                    .collect::<Result<Vec<ScalarValue>, QueryError>>()?,
            ),
            JsonParams::Map(values) => ParamValues::from(
                values
                    .into_iter()
                    .map(|(name, v)| {
                        let name = name.trim_start_matches('$').to_string();
                        let value = typed(format!("${name}"), v)?;
                        Ok((name, value))
                    })
                    .collect::<Result<Vec<(String, ScalarValue)>, QueryError>>()?,
            ),
        })
    }
}

/// A JSON value as a SQL value of type `target`, or of its own type when there is none.
fn scalar(id: &str, value: Value, target: Option<DataType>) -> Result<ScalarValue, QueryError> {
    let own = match &value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ScalarValue::Int64(Some(i)),
            (None, Some(u)) => ScalarValue::UInt64(Some(u)),
            (None, None) => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            return Err(QueryError::new(
                ErrorKind::InvalidParameter,
                format!(
                    "parameter {id}: arrays and objects are not supported; pass a string, \
                     number, boolean or null"
                ),
            ));
        }
    };
    match target {
        Some(t) if t != own.data_type() => own.cast_to(&t).map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidParameter,
                format!("parameter {id}: {value} is not a value of type {t}: {e}"),
            )
        }),
        _ => Ok(own),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_values_take_the_placeholders_type() {
        let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None);
        let v = scalar("$1", json!("2024-01-01T00:00:00"), Some(ts.clone())).unwrap();
        assert_eq!(
            v,
            ScalarValue::TimestampNanosecond(Some(1_704_067_200_000_000_000), None)
        );
        let v = scalar("$1", json!(2), Some(DataType::Float64)).unwrap();
        assert_eq!(v, ScalarValue::Float64(Some(2.0)));
        assert_eq!(
            scalar("$1", json!(2), None).unwrap(),
            ScalarValue::Int64(Some(2))
        );
        assert_eq!(
            scalar("$1", json!(true), None).unwrap(),
            ScalarValue::Boolean(Some(true))
        );
        let e = scalar("$2", json!("abc"), Some(DataType::Int64)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(e.message.starts_with("parameter $2"), "{}", e.message);
        assert!(scalar("$1", json!([1]), None).is_err());
    }

    #[test]
    fn params_are_a_list_or_an_object() {
        assert!(matches!(
            JsonParams::of(json!([1, "a"])),
            Ok(Some(JsonParams::List(_)))
        ));
        assert!(matches!(
            JsonParams::of(json!({"t": 1})),
            Ok(Some(JsonParams::Map(_)))
        ));
        assert!(matches!(JsonParams::of(json!([])), Ok(None)));
        assert!(matches!(JsonParams::of(Value::Null), Ok(None)));
        assert!(JsonParams::of(json!("x")).is_err());
    }
}
