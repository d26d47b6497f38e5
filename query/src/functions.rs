//! Time-series SQL functions (`time_bucket` with TimescaleDB's signature beside `date_bin`, `first`, `last`), and
//! bounded versions of the built-ins that would allocate whatever length they are asked for.

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

/// Replaces `lpad`, `rpad` and `repeat` with versions that refuse to build a value larger than
/// [`VALUE_BYTES_MAX`](crate::limits::VALUE_BYTES_MAX): the built-in ones allocate whatever
/// length they are asked for (`lpad('x', 2147483647)` grew the server by gigabytes), and the
/// allocation happens before the query memory pool could refuse it.
pub fn register_bounded_string_functions(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::functions::{string, unicode};
    for (inner, kind) in [
        (unicode::lpad(), BoundedKind::Pad),
        (unicode::rpad(), BoundedKind::Pad),
        (string::repeat(), BoundedKind::Repeat),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(BoundedLength { inner, kind }));
    }
}

/// How a bounded function's result length follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum BoundedKind {
    /// `lpad(s, n [, fill])`, `rpad`: `n` characters.
    Pad,
    /// `repeat(s, n)`: `n` times `s`.
    Repeat,
}

/// The `ScalarUDFImpl` methods of a wrapper around a registered function (a field `inner:
/// Arc<ScalarUDF>`) that keep its name, signature and types: the wrappers change only how it
/// runs (`invoke_with_args`, and `with_updated_config` to rebuild themselves).
macro_rules! delegate_to_inner {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn aliases(&self) -> &[String] {
            self.inner.aliases()
        }

        fn signature(&self) -> &datafusion::logical_expr::Signature {
            self.inner.signature()
        }

        fn return_type(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
            self.inner.return_type(arg_types)
        }

        // The wrapped function's field, so its results compare like the original's.
        fn return_field_from_args(
            &self,
            args: datafusion::logical_expr::ReturnFieldArgs,
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
            self.inner.return_field_from_args(args)
        }

        fn coerce_types(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
            self.inner.coerce_types(arg_types)
        }

        fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
            self.inner.documentation()
        }
    };
}
pub(crate) use delegate_to_inner;

/// A built-in string function with its result length checked before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedLength {
    inner: Arc<ScalarUDF>,
    kind: BoundedKind,
}

impl ScalarUDFImpl for BoundedLength {
    delegate_to_inner!();

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        let limit = crate::limits::VALUE_BYTES_MAX as u128;
        let count = args.args.get(1).map(max_integer).transpose()?.flatten();
        let per = match self.kind {
            // A character may take four bytes in UTF-8.
            BoundedKind::Pad => 4,
            BoundedKind::Repeat => match args.args.first() {
                Some(s) => max_length(s)?.max(1),
                None => 1,
            },
        };
        if let Some(n) = count
            && n > 0
            && (n as u128) * (per as u128) > limit
        {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::QueryError::new(
                    crate::error::ErrorKind::LimitExceeded,
                    format!(
                        "requested length too large: {}(..., {n}) would build a value over {} MiB, the most one value may hold",
                        self.inner.name(),
                        crate::limits::VALUE_BYTES_MAX >> 20
                    ),
                ),
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

/// The largest integer of an argument (a constant or a column).
fn max_integer(v: &datafusion::logical_expr::ColumnarValue) -> DfResult<Option<i64>> {
    use datafusion::arrow::compute::{cast, max};
    use datafusion::arrow::datatypes::Int64Type;
    let array = v.to_array(1)?;
    let array = cast(&array, &DataType::Int64)?;
    Ok(max(array
        .as_any()
        .downcast_ref::<datafusion::arrow::array::PrimitiveArray<Int64Type>>()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("length is not an integer".into())
        })?))
}

/// The longest string of an argument, in bytes.
fn max_length(v: &datafusion::logical_expr::ColumnarValue) -> DfResult<usize> {
    use datafusion::arrow::compute::kernels::length::length;
    let array = v.to_array(1)?;
    let lengths = datafusion::arrow::compute::cast(&length(&array)?, &DataType::Int64)?;
    Ok(
        max_integer(&datafusion::logical_expr::ColumnarValue::Array(lengths))?
            .unwrap_or(0)
            .max(0) as usize,
    )
}
