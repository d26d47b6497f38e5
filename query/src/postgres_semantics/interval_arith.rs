//! `interval * number`, `number * interval` and `interval / number`, computed as PostgreSQL's
//! `interval_mul` and `interval_div` compute them. Superset's 5/10/15/30-minute time grains are
//! `DATE_TRUNC('hour', time) + INTERVAL '5 minutes' * FLOOR(EXTRACT(MINUTE FROM time) / 5)`;
//! DataFusion has no kernel for an interval times a number and refuses the query while planning
//! it, so the planner turns the operator into a call of one of these functions.
//!
//! PostgreSQL multiplies months, days and time separately. A fraction of a month is carried
//! down into days (30 days a month) and a fraction of a day into time (24 hours a day), never
//! up, so `interval '1 month' * 1.5` is `1 mon 15 days` and `interval '1 day' / 4` is
//! `06:00:00`. A result a field cannot hold is an error, never a wrapped value.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility, cast,
};

use super::sql_error;
use crate::error::ErrorKind;

/// The interval type the functions take and return (the one SQL interval literals have).
const MONTH_DAY_NANO: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

/// PostgreSQL's conversion factors for carrying fractions down.
const DAYS_PER_MONTH: f64 = 30.0;
const SECONDS_PER_DAY: f64 = 86_400.0;
const NANOS_PER_SECOND: f64 = 1e9;

/// Which of PostgreSQL's two functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalOp {
    /// `interval_mul(interval, factor)`.
    Mul,
    /// `interval_div(interval, divisor)`.
    Div,
}

/// `interval_mul` or `interval_div`: an interval scaled by a number (an `Int64`, computed
/// exactly, or a `Float64`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalScale {
    op: IntervalOp,
    signature: Signature,
}

impl IntervalScale {
    /// The function for `op`.
    pub fn udf(op: IntervalOp) -> Arc<ScalarUDF> {
        let takes = |factor: DataType| TypeSignature::Exact(vec![MONTH_DAY_NANO, factor]);
        Arc::new(ScalarUDF::new_from_impl(Self {
            op,
            signature: Signature::one_of(
                vec![takes(DataType::Int64), takes(DataType::Float64)],
                Volatility::Immutable,
            ),
        }))
    }

    fn wrong_arguments(&self) -> DataFusionError {
        DataFusionError::Internal(format!("{} called with the wrong arguments", self.name()))
    }

    /// The function over arrays of equal length: intervals, and Int64 or Float64 factors.
    fn compute(&self, intervals: &ArrayRef, factors: &ArrayRef) -> DfResult<ArrayRef> {
        let intervals = intervals
            .as_primitive_opt::<IntervalMonthDayNanoType>()
            .ok_or_else(|| self.wrong_arguments())?;
        let values: Vec<Option<IntervalMonthDayNano>> =
            if let Some(ints) = factors.as_primitive_opt::<Int64Type>() {
                intervals
                    .iter()
                    .zip(ints.iter())
                    .map(|pair| match pair {
                        (Some(v), Some(k)) => self.op.by_integer(v, k).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<DfResult<_>>()?
            } else if let Some(floats) = factors.as_primitive_opt::<Float64Type>() {
                intervals
                    .iter()
                    .zip(floats.iter())
                    .map(|pair| match pair {
                        (Some(v), Some(f)) => self.op.by_float(v, f).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<DfResult<_>>()?
            } else {
                return Err(self.wrong_arguments());
            };
        Ok(Arc::new(IntervalMonthDayNanoArray::from(values)))
    }
}

impl ScalarUDFImpl for IntervalScale {
    fn name(&self) -> &str {
        match self.op {
            IntervalOp::Mul => "interval_mul",
            IntervalOp::Div => "interval_div",
        }
    }

    // Named as the operator it stands for, as DataFusion would name `a * b`.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        let [interval, factor] = args else {
            return Err(self.wrong_arguments());
        };
        let op = match self.op {
            IntervalOp::Mul => "*",
            IntervalOp::Div => "/",
        };
        Ok(format!(
            "{} {op} {}",
            interval.schema_name(),
            factor.schema_name()
        ))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(MONTH_DAY_NANO)
    }

    // Nullable when an operand is, as the operator is.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), MONTH_DAY_NANO, nullable)))
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [interval, factor] = args.args.as_slice() else {
            return Err(self.wrong_arguments());
        };
        let scalar = matches!(
            (interval, factor),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar { 1 } else { args.number_rows };
        let result = self.compute(&interval.to_array(rows)?, &factor.to_array(rows)?)?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                result.as_ref(),
                0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

impl IntervalOp {
    fn by_integer(self, v: IntervalMonthDayNano, k: i64) -> DfResult<IntervalMonthDayNano> {
        match self {
            IntervalOp::Mul => multiply_exact(v, k).ok_or_else(out_of_range),
            IntervalOp::Div => self.by_float(v, k as f64),
        }
    }

    fn by_float(self, v: IntervalMonthDayNano, f: f64) -> DfResult<IntervalMonthDayNano> {
        match self {
            IntervalOp::Mul => scale(v, |x| x * f),
            IntervalOp::Div if f == 0.0 => {
                Err(sql_error(ErrorKind::DivisionByZero, "division by zero"))
            }
            IntervalOp::Div => scale(v, |x| x / f),
        }
    }
}

/// Plans `interval * number`, `number * interval` and `interval / number` as calls of `mul`
/// and `div`; other operators and operand types come back as they were.
pub fn plan(
    expr: RawBinaryExpr,
    schema: &DFSchema,
    mul: &Arc<ScalarUDF>,
    div: &Arc<ScalarUDF>,
) -> DfResult<PlannerResult<RawBinaryExpr>> {
    let udf = match expr.op {
        BinaryOperator::Multiply => mul,
        BinaryOperator::Divide => div,
        _ => return Ok(PlannerResult::Original(expr)),
    };
    // An operand whose type cannot be told is left to DataFusion, which reports it.
    let (Ok(left_type), Ok(right_type)) = (expr.left.get_type(schema), expr.right.get_type(schema))
    else {
        return Ok(PlannerResult::Original(expr));
    };
    let is_interval = |t: &DataType| matches!(t, DataType::Interval(_));
    let interval_first = is_interval(&left_type) && right_type.is_numeric();
    let interval_second =
        expr.op == BinaryOperator::Multiply && left_type.is_numeric() && is_interval(&right_type);
    let RawBinaryExpr { op, left, right } = expr;
    let (interval, interval_type, factor, factor_type) = if interval_first {
        (left, left_type, right, right_type)
    } else if interval_second {
        (right, right_type, left, left_type)
    } else {
        return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
    };
    let interval = if interval_type == MONTH_DAY_NANO {
        interval
    } else {
        cast(interval, MONTH_DAY_NANO)
    };
    // PostgreSQL computes in float8; an integer factor is kept exact, which gives the same
    // answer wherever float8 holds the products exactly (and the right one where it does not).
    let wanted = if factor_type.is_integer() && factor_type != DataType::UInt64 {
        DataType::Int64
    } else {
        DataType::Float64
    };
    let factor = if factor_type == wanted {
        factor
    } else {
        cast(factor, wanted)
    };
    Ok(PlannerResult::Planned(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::clone(udf), vec![interval, factor]),
    )))
}

fn out_of_range() -> DataFusionError {
    sql_error(ErrorKind::DatetimeOutOfRange, "interval out of range")
}

/// `v * k` field by field, or `None` when a field overflows.
fn multiply_exact(v: IntervalMonthDayNano, k: i64) -> Option<IntervalMonthDayNano> {
    let months = i32::try_from(i64::from(v.months).checked_mul(k)?).ok()?;
    let days = i32::try_from(i64::from(v.days).checked_mul(k)?).ok()?;
    let nanoseconds = v.nanoseconds.checked_mul(k)?;
    Some(IntervalMonthDayNano::new(months, days, nanoseconds))
}

/// PostgreSQL's interval_mul and interval_div with `f` the scaling (`x * factor` or
/// `x / factor`), step by step as PostgreSQL takes them so that the answers agree, including
/// its rounding of the carried fractions to microseconds (which removes float noise such as
/// `1/3 * 86400 = 28800.000000000004`). The time part keeps nanoseconds.
fn scale(v: IntervalMonthDayNano, f: impl Fn(f64) -> f64) -> DfResult<IntervalMonthDayNano> {
    let months_exact = f(f64::from(v.months));
    let months = to_i32(months_exact)?;
    let days_exact = f(f64::from(v.days));
    let mut days = to_i32(days_exact)?;
    let month_remainder_days = round_to_micros((months_exact - f64::from(months)) * DAYS_PER_MONTH);
    let mut seconds_remainder = round_to_micros(
        (days_exact - f64::from(days) + month_remainder_days - month_remainder_days.trunc())
            * SECONDS_PER_DAY,
    );
    // The carried fractions can add up to a day or more.
    if seconds_remainder.abs() >= SECONDS_PER_DAY {
        let whole_days = (seconds_remainder / SECONDS_PER_DAY).trunc();
        days = days
            .checked_add(whole_days as i32)
            .ok_or_else(out_of_range)?;
        seconds_remainder -= whole_days * SECONDS_PER_DAY;
    }
    days = days
        .checked_add(month_remainder_days.trunc() as i32)
        .ok_or_else(out_of_range)?;
    let nanoseconds =
        (f(v.nanoseconds as f64) + seconds_remainder * NANOS_PER_SECOND).round_ties_even();
    Ok(IntervalMonthDayNano::new(
        months,
        days,
        to_i64(nanoseconds)?,
    ))
}

/// PostgreSQL's TSROUND: to the nearest microsecond (of whatever unit `x` counts).
fn round_to_micros(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

/// `x` truncated, if an i32 holds it (NaN fails both comparisons).
fn to_i32(x: f64) -> DfResult<i32> {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        Ok(x as i32)
    } else {
        Err(out_of_range())
    }
}

/// `x` truncated, if an i64 holds it (NaN fails both comparisons).
fn to_i64(x: f64) -> DfResult<i64> {
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        Ok(x as i64)
    } else {
        Err(out_of_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn iv(months: i32, days: i32, nanoseconds: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, nanoseconds)
    }

    #[test]
    fn multiplies_as_postgres() {
        let mul = |v, f| IntervalOp::Mul.by_float(v, f).expect("in range");
        assert_eq!(mul(iv(1, 0, 0), 1.5), iv(1, 15, 0));
        assert_eq!(mul(iv(0, 1, 2 * HOUR), 0.5), iv(0, 0, 13 * HOUR));
        assert_eq!(
            mul(iv(0, 0, 5 * 60_000_000_000), 2.5),
            iv(0, 0, 750_000_000_000)
        );
        // 0.1 month is 3 days, not 2 days 23:59:59.999999.
        assert_eq!(mul(iv(1, 0, 0), 0.1), iv(0, 3, 0));
        assert_eq!(mul(iv(1, 1, HOUR), -2.0), iv(-2, -2, -2 * HOUR));
        assert_eq!(
            IntervalOp::Mul
                .by_integer(iv(1, 2, 3), 4)
                .expect("in range"),
            iv(4, 8, 12)
        );
    }

    #[test]
    fn divides_as_postgres() {
        let div = |v, f| IntervalOp::Div.by_float(v, f).expect("in range");
        assert_eq!(div(iv(0, 1, 0), 4.0), iv(0, 0, 6 * HOUR));
        assert_eq!(div(iv(0, 1, 0), 3.0), iv(0, 0, 8 * HOUR));
        assert_eq!(div(iv(1, 0, 0), 2.0), iv(0, 15, 0));
        assert_eq!(
            IntervalOp::Div
                .by_integer(iv(3, 0, 0), 2)
                .expect("in range"),
            iv(1, 15, 0)
        );
    }

    #[test]
    fn overflow_and_division_by_zero_are_errors() {
        let kind = |r: DfResult<IntervalMonthDayNano>| match r {
            Err(DataFusionError::External(e)) => {
                e.downcast_ref::<crate::error::QueryError>().map(|q| q.kind)
            }
            _ => None,
        };
        assert_eq!(
            kind(IntervalOp::Mul.by_integer(iv(0, 2, 0), i64::MAX)),
            Some(ErrorKind::DatetimeOutOfRange)
        );
        assert_eq!(
            kind(IntervalOp::Mul.by_float(iv(0, 0, HOUR), 1e300)),
            Some(ErrorKind::DatetimeOutOfRange)
        );
        assert_eq!(
            kind(IntervalOp::Mul.by_float(iv(0, 0, HOUR), f64::NAN)),
            Some(ErrorKind::DatetimeOutOfRange)
        );
        assert_eq!(
            kind(IntervalOp::Div.by_integer(iv(0, 1, 0), 0)),
            Some(ErrorKind::DivisionByZero)
        );
        assert_eq!(
            kind(IntervalOp::Div.by_float(iv(0, 1, 0), 0.0)),
            Some(ErrorKind::DivisionByZero)
        );
    }
}
