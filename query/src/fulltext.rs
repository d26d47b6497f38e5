//! `matches(column, 'query')`: full-text search with tantivy's query syntax.
//!
//! The function itself is evaluated on every row that reaches it, with the same tokenizer and
//! query semantics as the segments' full-text indexes (`eddy_storage::fulltext`), so it is
//! right for rows in memory, for segments without an index and with no index declared at all.
//! The scan (`table.rs`) uses a segment's index to read only the rows it names; the function
//! then confirms them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{ErrorKind, QueryError};

/// The name the function is called by.
pub const MATCHES: &str = "matches";

/// `matches(text, query)`: whether `text` matches the tantivy query (`error AND "disk
/// full"`); a null text never matches.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Matches {
    signature: Signature,
}

impl Matches {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Matches {
            signature: Signature::string(2, Volatility::Immutable),
        })
    }
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::InvalidParameter,
        message,
    )))
}

impl ScalarUDFImpl for Matches {
    fn name(&self) -> &str {
        MATCHES
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [text, query] = args.args.as_slice() else {
            return Err(invalid("matches(text, query) takes two arguments".into()));
        };
        let query = match query {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(q) | ScalarValue::LargeUtf8(q) | ScalarValue::Utf8View(q),
            ) => q.clone(),
            ColumnarValue::Scalar(other) if other.is_null() => None,
            _ => {
                return Err(invalid(
                    "the query of matches(text, query) must be a constant text".into(),
                ));
            }
        };
        let Some(query) = query else {
            // A null query matches nothing, like any comparison with null.
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
        };
        let texts: ArrayRef = match text {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
        };
        let texts = if texts.data_type() == &DataType::Utf8 {
            texts
        } else {
            cast(&texts, &DataType::Utf8)?
        };
        let strings = texts.as_string::<i32>();
        let matched = eddy_storage::fulltext::matches_values(
            (0..strings.len()).map(|i| strings.is_valid(i).then(|| strings.value(i))),
            &query,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let out: ArrayRef = Arc::new(BooleanArray::from(matched));
        Ok(match text {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

/// The `matches(column, 'query')` conjuncts among a scan's filters, as (column, query).
pub fn text_predicates(filters: &[Expr]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in filters {
        for e in datafusion::logical_expr::utils::split_conjunction(f) {
            let Expr::ScalarFunction(call) = e else {
                continue;
            };
            if call.name() != MATCHES {
                continue;
            }
            if let [Expr::Column(c), Expr::Literal(v, _)] = call.args.as_slice()
                && let ScalarValue::Utf8(Some(q))
                | ScalarValue::LargeUtf8(Some(q))
                | ScalarValue::Utf8View(Some(q)) = v
            {
                out.push((c.name.clone(), q.clone()));
            }
        }
    }
    out
}
