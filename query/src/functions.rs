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
