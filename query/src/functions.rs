//! Time-series SQL functions: `time_bucket` with TimescaleDB's signature beside `date_bin`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// TimescaleDB's default origin for `time_bucket`: Monday 2000-01-03 00:00:00 UTC, so weekly
/// buckets start on Mondays. Buckets that divide a day align to midnight either way.
pub const TIME_BUCKET_ORIGIN_NS: i64 = 946_857_600_000_000_000;

/// `time_bucket(width, ts [, origin])`: the start of the `width`-wide bucket holding `ts`.
/// It is `date_bin` with TimescaleDB's default origin, and is rewritten to `date_bin` during
/// planning so both share one implementation and one set of optimizations.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    date_bin: Arc<ScalarUDF>,
}

impl TimeBucket {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(TimeBucket {
            date_bin: datafusion::functions::datetime::date_bin(),
        })
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        self.date_bin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.date_bin.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if args.args.len() == 3 {
            return self.date_bin.invoke_with_args(args);
        }
        Err(datafusion::error::DataFusionError::Internal(
            "time_bucket should have been rewritten to date_bin during planning".into(),
        ))
    }

    fn simplify(
        &self,
        mut args: Vec<Expr>,
        _info: &SimplifyContext,
    ) -> DfResult<ExprSimplifyResult> {
        if args.len() == 2 {
            args.push(Expr::Literal(
                ScalarValue::TimestampNanosecond(Some(TIME_BUCKET_ORIGIN_NS), None),
                None,
            ));
        }
        Ok(ExprSimplifyResult::Simplified(self.date_bin.call(args)))
    }
}

/// `first(value, time)` / `last(value, time)`: the value at the earliest / latest time of the
/// group, as in TimescaleDB. Rewritten during planning to DataFusion's
/// `first_value(value ORDER BY time)` / `last_value(value ORDER BY time)`, so they share those
/// accumulators (and are mergeable in continuous aggregates).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FirstLast {
    last: bool,
    signature: Signature,
}

impl FirstLast {
    /// `first(value, time)`.
    pub fn first() -> datafusion::logical_expr::AggregateUDF {
        datafusion::logical_expr::AggregateUDF::new_from_impl(FirstLast {
            last: false,
            signature: Signature::any(2, datafusion::logical_expr::Volatility::Immutable),
        })
    }

    /// `last(value, time)`.
    pub fn last() -> datafusion::logical_expr::AggregateUDF {
        datafusion::logical_expr::AggregateUDF::new_from_impl(FirstLast {
            last: true,
            signature: Signature::any(2, datafusion::logical_expr::Volatility::Immutable),
        })
    }
}

impl datafusion::logical_expr::AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        if self.last { "last" } else { "first" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(
        &self,
        _args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> DfResult<Box<dyn datafusion::logical_expr::Accumulator>> {
        Err(datafusion::error::DataFusionError::Internal(format!(
            "{}() should have been rewritten to {}_value(... ORDER BY ...) during planning",
            self.name(),
            self.name()
        )))
    }

    fn simplify(
        &self,
    ) -> Option<datafusion::logical_expr::function::AggregateFunctionSimplification> {
        let last = self.last;
        Some(Box::new(move |agg, _ctx| {
            use datafusion::logical_expr::ExprFunctionExt;
            let mut args = agg.params.args.into_iter();
            let (Some(value), Some(time)) = (args.next(), args.next()) else {
                return Err(datafusion::error::DataFusionError::Plan(
                    "first/last take (value, time)".into(),
                ));
            };
            let udaf = if last {
                datafusion::functions_aggregate::first_last::last_value_udaf()
            } else {
                datafusion::functions_aggregate::first_last::first_value_udaf()
            };
            let mut builder = udaf
                .call(vec![value])
                .order_by(vec![time.sort(true, false)]);
            if let Some(f) = agg.params.filter {
                builder = builder.filter(*f);
            }
            builder.build()
        }))
    }
}

/// `version()`: what PostgreSQL prints, so clients that parse it (`PostgreSQL X.Y ...`) accept
/// Eddy, followed by Eddy's own version.
pub fn version_udf() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {} (Eddy {}) on {}-linux, compiled by rustc, 64-bit",
        crate::engine::PG_SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    datafusion::logical_expr::create_udf(
        "version",
        vec![],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}

/// `current_setting(name)`: the session's value of a PostgreSQL setting (what it `SET`, else
/// Eddy's default); an unknown name is an error, as in PostgreSQL.
pub fn current_setting_udf(vars: crate::engine::SessionVars) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let lookup = |name: Option<&str>| -> DfResult<Option<String>> {
                let Some(name) = name else { return Ok(None) };
                crate::engine::setting(&vars, name)
                    .map(Some)
                    .ok_or_else(|| {
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
pub fn session_user_udf(vars: crate::engine::SessionVars) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "session_user",
        vec![],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| {
            let user = crate::engine::setting(&vars, crate::engine::SESSION_AUTHORIZATION);
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                user.unwrap_or_else(|| "eddy".to_string()),
            ))))
        }),
    )
}

/// `pg_get_serial_sequence(table, column)`: always NULL, Eddy has no sequences (SQLAlchemy
/// asks it for every column it reflects).
pub fn pg_get_serial_sequence_udf() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        datafusion::logical_expr::Volatility::Immutable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}
